/*
 * keyward-ca: the interface under CMP's records (cmp_secret.c): the
 * sealed per-template secrets, the replay record and the requests' state,
 * in the CA's database: keyward-ca.db (cmp_store_sqlite.c) or PostgreSQL
 * (cmp_store_pg.c). Sealing stays above (cmp_secret.c): a backend only
 * ever sees sealed bytes. The contract: a transactionID is recorded once
 * in all processes on the database (the second insert changes nothing),
 * and a secret put is durable when put returns.
 */
#ifndef KW_CA_CMP_STORE_H
#define KW_CA_CMP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "ca/cmp.h"
#include "ca/seal.h"

#define CMP_SEALED_MAX (CMP_SECRET_MAX + CA_SEAL_TAG)

struct cmp_db;
struct cmp_db_ops {
	void (*close)(struct cmp_db *db);
	/* tmpl's sealed secret: 0, 1 none, -1 error (CA_ERR_CONFLICT: not of the sizes a seal has) */
	int (*get)(struct cmp_db *db, const char *tmpl, unsigned char iv[CA_SEAL_IV],
		   unsigned char sealed[CMP_SEALED_MAX], size_t *len);
	/* stores (replacing) tmpl's sealed secret, durably */
	int (*put)(struct cmp_db *db, const char *tmpl, const unsigned char iv[CA_SEAL_IV], const unsigned char *sealed,
		   size_t len, time_t created);
	int (*del)(struct cmp_db *db, const char *tmpl, bool *removed);
	/* 0 recorded now, 1 recorded before, -1 error */
	int (*seen)(struct cmp_db *db, const unsigned char *id, size_t len, time_t expires);
	int (*prune)(struct cmp_db *db, time_t now);
	/* request id's status and serial: 0, 1 no such request, -1 error */
	int (*state)(struct cmp_db *db, long long id, char *status, size_t ssize, char *serial, size_t size);
};

/* Every backend's handle starts with this. */
struct cmp_db {
	const struct cmp_db_ops *ops;
};

/* cmp_store_sqlite.c: the tables in keyward-ca.db at path (made if missing). */
int cmp_db_sqlite_open(const char *path, struct cmp_db **out);
/* cmp_store_pg.c: the tables in the CA's PostgreSQL database (made on first open). */
int cmp_db_pg_open(const char *url, struct cmp_db **out);

#endif
