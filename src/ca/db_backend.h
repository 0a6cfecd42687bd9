/*
 * keyward-ca: the interface under the database API (ca.h's ca_db_*).
 * db.c holds the API and chooses a backend from ca.conf's database
 * (empty: keyward-ca.db, SQLite, db_sqlite.c; postgresql://...: db_pg.c);
 * each backend fills this table. The API's semantics are the backends'
 * contract: every change runs between begin and commit, and begin makes
 * the transaction the database's only writer until it ends (SQLite's
 * BEGIN IMMEDIATE; PostgreSQL's row lock on ca_writer), so a CRL number
 * or a revocation's change_seq read inside it and written back is above
 * every one before it, whichever process wrote those.
 */
#ifndef KW_CA_DB_BACKEND_H
#define KW_CA_DB_BACKEND_H

#include "ca/ca.h"

struct ca_db_ops {
	void (*close)(struct ca_db *db);
	int (*begin)(struct ca_db *db);
	int (*commit)(struct ca_db *db);
	void (*rollback)(struct ca_db *db);
	int (*audit)(struct ca_db *db, const char *event, const char *detail);
	int (*insert_cert)(struct ca_db *db, const struct ca_db_cert *row, const unsigned char *der, size_t der_len);
	int (*get_cert)(struct ca_db *db, const char *serial, struct ca_db_cert *row, unsigned char **der,
			size_t *der_len);
	int (*set_revocation)(struct ca_db *db, const char *serial, const char *status, time_t when, int reason,
			      time_t invalid_at);
	long long (*insert_request)(struct ca_db *db, const unsigned char *csr, size_t len, const char *template_name,
				    const char *status);
	int (*get_request)(struct ca_db *db, long long id, unsigned char **csr, size_t *len, char *template_name,
			   size_t tsize, char *status, size_t ssize);
	int (*set_request)(struct ca_db *db, long long id, const char *status, const char *serial);
	int (*each_cert)(struct ca_db *db, int (*fn)(void *arg, const struct ca_db_cert *c), void *arg);
	int (*each_request)(struct ca_db *db, int (*fn)(void *arg, const struct ca_pending *r), void *arg);
	int (*each_audit)(struct ca_db *db, int (*fn)(void *arg, const struct ca_audit_row *r), void *arg);
	int (*counts)(struct ca_db *db, time_t now, struct ca_status *st);
	int (*each_revoked)(struct ca_db *db, bool delta, long long seq,
			    int (*fn)(void *arg, const char *serial, time_t when, int reason, time_t invalid_at),
			    void *arg);
	int (*next_crl_number)(struct ca_db *db, long long *number);
	int (*last_base_crl)(struct ca_db *db, long long *number, time_t *when, long long *seq);
	int (*record_crl)(struct ca_db *db, long long number, bool delta, long long base, time_t this_update,
			  time_t next_update);
	int (*get_meta)(struct ca_db *db, const char *key, char **value);
	int (*set_meta)(struct ca_db *db, const char *key, const char *value);
	int (*delete_meta)(struct ca_db *db, const char *key);
	int (*backup)(struct ca_db *db, const char *path);
	int (*check)(struct ca_db *db);
	long long (*max_crl)(struct ca_db *db);
	/* The session refuses writes from now on (SQLite's query_only; PostgreSQL's default_transaction_read_only). */
	int (*read_only)(struct ca_db *db);
	/* 0: the database takes writes; 1 (saying why): it cannot (a hot standby, a read-only file); -1: error. */
	int (*writable)(struct ca_db *db);
};

/* Every backend's handle starts with this. */
struct ca_db {
	const struct ca_db_ops *ops;
	bool read_only; /* ca_db_read_only: begin refuses, saying so */
};

/* db_sqlite.c: path's SQLite database (made, with the schema, when create). */
int ca_db_sqlite_open(const char *path, bool create, struct ca_db **out);
/* The SQLite schema: what db_pg.c's backup writes into a new file. */
extern const char ca_db_sqlite_schema[];
/*
 * ACME's and CMP's tables on each side (acme_db_*.c, cmp_store_*.c): what
 * a PostgreSQL CA's backup writes beside the CA's, and its restore makes.
 */
extern const char ca_acme_sqlite_schema[], ca_acme_pg_schema[], ca_cmp_sqlite_schema[], ca_cmp_pg_schema[];
#define CA_ACME_PG_SCHEMA_KEY "acme.schema_version"
#define CA_ACME_PG_SCHEMA_VERSION 1
#define CA_CMP_PG_SCHEMA_KEY "cmp.schema_version"
#define CA_CMP_PG_SCHEMA_VERSION 1
/* db_pg.c: the PostgreSQL database at url (its tables made on first open). */
int ca_db_pg_open(const char *url, bool create, struct ca_db **out);
/*
 * db_pgrestore.c: the rows of from (a SQLite CA database, checked and made
 * this CA's) into url's database in one transaction under the writer lock,
 * replacing this CA's rows or filling an empty database; another CA's, or
 * this CA retired (unless force), refused. *floor: CRL numbers continue
 * above it, raised to the database's own. kept (or NULL): where the rows
 * replaced are written first, as a backup file.
 */
int ca_db_pg_restore(const char *url, const char *from, bool force, const char *kept, long long *floor);

#endif
