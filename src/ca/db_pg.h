/*
 * keyward-ca: what the CA database's PostgreSQL files share (db_pg.c,
 * db_status_pg.c, db_pgbackup.c, and the stores beside it: db_pgstore.c,
 * acme_db_pg.c, cmp_store_pg.c): a connection with its statements,
 * prepared once per connection (PQprepare) the first time each runs, and
 * messages that name the server as postgresql://HOST:PORT/DB, never with
 * a password (ca.conf refuses one, but PGPASSWORD or a service file may
 * add one, and libpq's own messages are not repeated with the URL).
 *
 * Parameters go as text (integers printed) or binary (bytea); results
 * come back binary: integers are BIGINT (8 bytes), counts too.
 */
#ifndef KW_CA_DB_PG_H
#define KW_CA_DB_PG_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#define CA_PG_STMTS_MAX 32
#define CA_PG_ARGS_MAX 8

struct ca_pg {
	PGconn *conn;
	char where[320];	/* postgresql://HOST:PORT/DB, for messages */
	const char *const *sql; /* the statements, by index */
	size_t n_sql;
	bool prepared[CA_PG_STMTS_MAX];
	bool in_tx;
	bool read_only; /* ca_pg_read_only: the session said so again after every reconnect */
};

struct ca_pg_args {
	int n;
	const char *val[CA_PG_ARGS_MAX];
	int len[CA_PG_ARGS_MAX];
	int fmt[CA_PG_ARGS_MAX];
	char num[CA_PG_ARGS_MAX][24];
};

void ca_pg_int(struct ca_pg_args *a, long long v);
void ca_pg_text(struct ca_pg_args *a, const char *s);
void ca_pg_blob(struct ca_pg_args *a, const void *p, size_t len);

/* Connects to url, with the statements sql[0..n) for ca_pg_run; -1 saying where and why. */
int ca_pg_connect(struct ca_pg *p, const char *url, const char *const *sql, size_t n);
void ca_pg_disconnect(struct ca_pg *p);
/* Records the failure of what (res: its result, or NULL for the connection's): -1. */
int ca_pg_fail(struct ca_pg *p, const PGresult *res, const char *what);
/* Runs statement i with a (may be NULL); *res (when res is not NULL) is the result, for PQclear. 0 or -1. */
int ca_pg_run(struct ca_pg *p, size_t i, const struct ca_pg_args *a, const char *what, PGresult **res);
/* ca_pg_run counting: the rows statement i changed or returned (*res kept when res is not NULL), or -1. */
long long ca_pg_rows(struct ca_pg *p, size_t i, const struct ca_pg_args *a, const char *what, PGresult **res);
/* Runs sql (no parameters; several statements allowed): 0 or -1. */
int ca_pg_exec(struct ca_pg *p, const char *sql, const char *what);
/* Ends p's transaction keeping nothing, quietly (the error that ended it is the one to show). */
void ca_pg_rollback(struct ca_pg *p);
/* Every transaction of p's session read-only from now on, a reconnected one too: 0, or -1 saying why. */
int ca_pg_read_only(struct ca_pg *p, const char *what);
/* COMMIT: 0, or -1 saying why; a connection that broke before the answer: the outcome is unknown, said so. */
int ca_pg_commit(struct ca_pg *p, const char *what);
/* Ends p's transaction: committed if rc is 0 (what names a failed commit), else rolled back. rc, or -1. */
int ca_pg_end(struct ca_pg *p, int rc, const char *what);
/* A column of a binary result: an integer (0 if NULL); text into dst (cut at cap). */
long long ca_pg_int_at(const PGresult *r, int row, int col);
void ca_pg_text_at(char *dst, size_t cap, const PGresult *r, int row, int col);

/* meta's key for the schema's version: forward migrations go by it */
#define CA_PG_SCHEMA_KEY "db.schema_version"
#define CA_PG_SCHEMA_VERSION 1
#define CA_PG_SCHEMA_VERSION_TEXT "1"
/* the advisory lock under which the tables are made (db_pg.c) or filled by a restore (db_pgrestore.c) */
#define CA_PG_SCHEMA_LOCK "1801812344"
/* The tables (CREATE ... IF NOT EXISTS: run again, it changes nothing). */
extern const char ca_db_pg_schema[];
/*
 * db_pgstore.c: connects to url for a store beside the CA's tables (sql as
 * for ca_pg_connect) and makes its tables (schema) unless meta's key holds
 * its version already; a newer version is refused. 0, or -1 disconnected.
 */
int ca_pg_store_open(struct ca_pg *p, const char *url, const char *const *sql, size_t n, const char *key, int version,
		     const char *schema);

/* db_pgbackup.c: every row of p's CA tables into a new SQLite file at path, as one consistent snapshot. */
int ca_pg_backup(struct ca_pg *p, const char *path);

#endif
