/*
 * keyward-ca: the interface under ACME's records (acme.h's acme_db_*,
 * acme_nonce_*, acme_account_*, acme_order_*, acme_authz_*, acme_eab_*).
 * acme_db.c holds the API and chooses the backend the CA's database has:
 * keyward-ca.db (acme_db_sqlite.c) or PostgreSQL (acme_db_pg.c). Random
 * values (nonces, tokens) are drawn in acme_db.c and stored here. The
 * contract, whichever backend: a nonce is used once in all processes
 * (one statement deletes it), a kid binds one account, an order and its
 * authorizations are stored whole or not at all, and the sweep runs in
 * one transaction.
 */
#ifndef KW_CA_ACME_DB_BACKEND_H
#define KW_CA_ACME_DB_BACKEND_H

#include "ca/acme.h"

#define ACME_NONCES_MAX 200000 /* live nonces kept; beyond, the oldest go (a flood of newNonce costs its sender) */
#define ACME_SWEEP_EVERY 256   /* nonces one process stores between its sweeps */

struct acme_db_ops {
	void (*close)(struct acme_db *db);
	int (*nonce_new)(struct acme_db *db, const char *nonce, time_t now, unsigned lifetime);
	int (*nonce_use)(struct acme_db *db, const char *nonce, time_t now);
	int (*account_find)(struct acme_db *db, const char *template_name, const char *thumb, struct acme_account *a);
	int (*account_get)(struct acme_db *db, long long id, struct acme_account *a);
	int (*account_insert)(struct acme_db *db, struct acme_account *a);
	int (*account_set_status)(struct acme_db *db, long long id, const char *status);
	int (*account_set_contact)(struct acme_db *db, long long id, const char *contact);
	int (*account_set_key)(struct acme_db *db, long long id, const char *thumb, const char *jwk);
	long long (*accounts_since)(struct acme_db *db, const char *remote, time_t since);
	long long (*orders_pending)(struct acme_db *db, long long account, time_t now);
	long (*orders_of)(struct acme_db *db, long long account, time_t now, long long *ids, size_t max);
	int (*eab_insert)(struct acme_db *db, const char *template_name, const char *kid, const unsigned char *iv,
			  const unsigned char *sealed, size_t len);
	int (*eab_sealed)(struct acme_db *db, const char *template_name, const char *kid,
			  unsigned char iv[ACME_EAB_IV_LEN], unsigned char sealed[ACME_EAB_SEALED_MAX], size_t *len);
	/* NULL where no keyward-ca ever stored EAB keys in plain (PostgreSQL) */
	int (*eab_migrate)(struct acme_db *db, acme_eab_seal_fn seal, void *arg);
	/* tokens[i]: authorization i's token (n at most ACME_IDS_MAX) */
	int (*order_insert)(struct acme_db *db, struct acme_order *o, const char *const *names,
			    const char (*tokens)[ACME_NONCE_LEN + 1], size_t n);
	int (*order_get)(struct acme_db *db, long long id, struct acme_order *o);
	int (*order_by_serial)(struct acme_db *db, const char *serial, struct acme_order *o);
	int (*order_set)(struct acme_db *db, long long id, const char *status, const char *serial, const char *error);
	int (*order_move)(struct acme_db *db, long long id, const char *from, const char *to);
	int (*authz_get)(struct acme_db *db, long long id, struct acme_authz *a);
	int (*authz_try)(struct acme_db *db, long long id, const char *type);
	int (*authz_try_undo)(struct acme_db *db, long long id, const char *type);
	int (*authz_settle)(struct acme_db *db, long long id, const char *type, const char *status,
			    const char *error_type, const char *error);
	int (*authz_set_status)(struct acme_db *db, long long id, const char *status);
};

/* Every backend's handle starts with this. */
struct acme_db {
	const struct acme_db_ops *ops;
};

/* acme_db_sqlite.c: ACME's tables in the SQLite database at path (made if missing). */
int acme_db_sqlite_open(const char *path, struct acme_db **out);
/* acme_db_pg.c: ACME's tables in the CA's PostgreSQL database at url (made on first open). */
int acme_db_pg_open(const char *url, struct acme_db **out);

#endif
