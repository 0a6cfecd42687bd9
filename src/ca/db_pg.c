/*
 * keyward-ca: the CA database on PostgreSQL (ca.conf's database =
 * postgresql://...), behind the same API as keyward-ca.db (db_backend.h),
 * so several `serve` processes answer OCSP from one database and several
 * processes issue into it, on one host or several. One PostgreSQL
 * database holds one CA: its tables (meta, certs, requests, crls, audit
 * and ca_writer) are made by setup, in the connection's search_path.
 *
 * What the database guarantees, whichever process writes:
 *  - one writer at a time: begin() locks ca_writer's one row (SELECT ...
 *    FOR UPDATE), as SQLite's BEGIN IMMEDIATE locks the file; so a CRL
 *    number (above MAX(crls.number)) and a revocation's change_seq (above
 *    MAX(certs.change_seq)) read in a transaction are above every one
 *    committed before, and audit ids (a sequence taken under the lock)
 *    follow commit order;
 *  - serials are certs' primary key (crls.number too): a duplicate fails
 *    its whole transaction, reported, never stored twice;
 *  - each change with its audit record is one transaction: whole or absent;
 *  - commit() bumps ca_writer.generation, which the OCSP responders poll
 *    (db_status_pg.c) to notice another process's change.
 * Statements are prepared once per connection (db_pgconn.c); issuance
 * inserts a batch in one transaction as on SQLite.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ca/db_backend.h"
#include "ca/db_pg.h"

/* meta's key for the schema's version: forward migrations go by it */

const char ca_db_pg_schema[] =
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS ca_writer (id INTEGER PRIMARY KEY CHECK (id = 1), generation BIGINT NOT NULL);"
	"INSERT INTO ca_writer (id, generation) VALUES (1, 0) ON CONFLICT DO NOTHING;"
	/* id: insertion order, as SQLite's rowid (the responders' mark walks it) */
	"CREATE TABLE IF NOT EXISTS certs ("
	" id BIGSERIAL UNIQUE, serial TEXT PRIMARY KEY, subject TEXT NOT NULL, template TEXT NOT NULL,"
	" not_before BIGINT NOT NULL, not_after BIGINT NOT NULL,"
	" status TEXT NOT NULL CHECK (status IN ('issued', 'revoked')),"
	" revoked_at BIGINT NOT NULL DEFAULT 0, reason BIGINT NOT NULL DEFAULT -1,"
	" changed_at BIGINT NOT NULL DEFAULT 0, request_id BIGINT NOT NULL DEFAULT 0, der BYTEA NOT NULL,"
	" invalid_at BIGINT NOT NULL DEFAULT 0, change_seq BIGINT NOT NULL DEFAULT 0);"
	"CREATE INDEX IF NOT EXISTS certs_revoked ON certs (status, serial, revoked_at, reason);"
	"CREATE INDEX IF NOT EXISTS certs_changed ON certs (changed_at);"
	"CREATE INDEX IF NOT EXISTS certs_change_seq ON certs (change_seq);"
	"CREATE TABLE IF NOT EXISTS requests ("
	" id BIGSERIAL PRIMARY KEY, csr BYTEA NOT NULL, template TEXT NOT NULL,"
	" status TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'denied')),"
	" submitted BIGINT NOT NULL, serial TEXT NOT NULL DEFAULT '');"
	"CREATE TABLE IF NOT EXISTS crls ("
	" number BIGINT PRIMARY KEY, delta BIGINT NOT NULL, base BIGINT NOT NULL,"
	" this_update BIGINT NOT NULL, next_update BIGINT NOT NULL, seq BIGINT NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS audit ("
	" id BIGSERIAL PRIMARY KEY, time BIGINT NOT NULL, uid BIGINT NOT NULL,"
	" event TEXT NOT NULL, detail TEXT NOT NULL);";

#define CERT_COLUMNS "serial, subject, template, not_before, not_after, status, revoked_at, reason, request_id"

enum {
	S_LOCK,
	S_BUMP,
	S_AUDIT,
	S_INSERT_CERT,
	S_GET_CERT,
	S_SET_REVOCATION,
	S_INSERT_REQUEST,
	S_GET_REQUEST,
	S_SET_REQUEST,
	S_EACH_CERT,
	S_EACH_REQUEST,
	S_EACH_AUDIT,
	S_COUNTS,
	S_REVOKED_DELTA,
	S_REVOKED_FULL,
	S_NEXT_CRL,
	S_LAST_BASE,
	S_RECORD_CRL,
	S_GET_META,
	S_SET_META,
	S_DELETE_META,
	S_MAX_CRL,
	S_CHECK,
	S_N
};

static const char *const statements[S_N] = {
	[S_LOCK] = "SELECT generation FROM ca_writer WHERE id = 1 FOR UPDATE",
	[S_BUMP] = "UPDATE ca_writer SET generation = generation + 1 WHERE id = 1",
	[S_AUDIT] = "INSERT INTO audit (time, uid, event, detail) VALUES ($1, $2, $3, $4)",
	[S_INSERT_CERT] =
		"INSERT INTO certs (serial, subject, template, not_before, not_after, status, request_id, der)"
		" VALUES ($1, $2, $3, $4, $5, 'issued', $6, $7)",
	[S_GET_CERT] = "SELECT " CERT_COLUMNS ", der FROM certs WHERE serial = $1",
	[S_SET_REVOCATION] =
		"UPDATE certs SET status = $1, revoked_at = $2, reason = $3, changed_at = $4, invalid_at = $5,"
		" change_seq = (SELECT COALESCE(MAX(change_seq), 0) + 1 FROM certs) WHERE serial = $6",
	[S_INSERT_REQUEST] =
		"INSERT INTO requests (csr, template, status, submitted) VALUES ($1, $2, $3, $4) RETURNING id",
	[S_GET_REQUEST] = "SELECT csr, template, status FROM requests WHERE id = $1",
	[S_SET_REQUEST] = "UPDATE requests SET status = $1, serial = $2 WHERE id = $3",
	[S_EACH_CERT] = "SELECT " CERT_COLUMNS " FROM certs ORDER BY not_before, serial",
	[S_EACH_REQUEST] = "SELECT id, template, status, submitted FROM requests WHERE status != 'issued' ORDER BY id",
	[S_EACH_AUDIT] = "SELECT id, time, uid, event, detail FROM audit ORDER BY id",
	[S_COUNTS] = "SELECT (SELECT COUNT(*) FROM certs WHERE status = 'issued' AND not_after >= $1),"
		     " (SELECT COUNT(*) FROM certs WHERE status = 'revoked'),"
		     " (SELECT COUNT(*) FROM certs WHERE status = 'issued' AND not_after < $1),"
		     " (SELECT COUNT(*) FROM requests WHERE status = 'pending'),"
		     " (SELECT COALESCE(MAX(number), 0) FROM crls WHERE delta = 0),"
		     " (SELECT COALESCE(MAX(number), 0) FROM crls WHERE delta = 1),"
		     " (SELECT COALESCE(MAX(this_update), 0) FROM crls)",
	[S_REVOKED_DELTA] = "SELECT serial, revoked_at, reason, invalid_at FROM certs WHERE change_seq > $1"
			    " AND (status = 'revoked' OR reason = 8)",
	[S_REVOKED_FULL] = "SELECT serial, revoked_at, reason, invalid_at FROM certs WHERE status = 'revoked'",
	[S_NEXT_CRL] =
		"SELECT GREATEST(COALESCE((SELECT MAX(number) FROM crls), 0),"
		" COALESCE((SELECT CAST(value AS BIGINT) FROM meta WHERE key = '" CA_META_CRL_FLOOR "'), 0)) + 1",
	[S_LAST_BASE] = "SELECT number, this_update, seq FROM crls WHERE delta = 0 ORDER BY number DESC LIMIT 1",
	[S_RECORD_CRL] = "INSERT INTO crls (number, delta, base, this_update, next_update, seq)"
			 " VALUES ($1, $2, $3, $4, $5, (SELECT COALESCE(MAX(change_seq), 0) FROM certs))",
	[S_GET_META] = "SELECT value FROM meta WHERE key = $1",
	[S_SET_META] =
		"INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
	[S_DELETE_META] = "DELETE FROM meta WHERE key = $1",
	[S_MAX_CRL] = "SELECT COALESCE(MAX(number), 0) FROM crls",
	[S_CHECK] = "SELECT (SELECT COUNT(*) FROM ca_writer), (SELECT COUNT(*) FROM certs WHERE der = ''::bytea)",
};

struct pg_db {
	struct ca_db base;
	struct ca_pg pg;
};

static struct ca_pg *pg(struct ca_db *b)
{
	return &((struct pg_db *)b)->pg;
}

static void pg_close(struct ca_db *b)
{
	ca_pg_disconnect(pg(b));
	free(b);
}

static void pg_rollback(struct ca_db *b)
{
	ca_pg_rollback(pg(b));
}

static int pg_begin(struct ca_db *b)
{
	struct ca_pg *p = pg(b);

	if (ca_pg_exec(p, "BEGIN", "begin"))
		return -1;
	p->in_tx = true;
	/* the database's one writer until commit or rollback, whichever process or host this is */
	if (ca_pg_run(p, S_LOCK, NULL, "waiting for the writer lock", NULL)) {
		ca_pg_rollback(p);
		return -1;
	}
	return 0;
}

static int pg_commit(struct ca_db *b)
{
	struct ca_pg *p = pg(b);
	int rc = ca_pg_run(p, S_BUMP, NULL, "commit", NULL) || ca_pg_commit(p, "commit") ? -1 : 0;

	p->in_tx = rc != 0; /* a failed commit is rolled back by the caller */
	return rc;
}

/* Runs statement i, which returns no rows. */
static int change(struct ca_db *b, int i, const struct ca_pg_args *a, const char *what)
{
	return ca_pg_run(pg(b), (size_t)i, a, what, NULL);
}

static int pg_audit(struct ca_db *b, const char *event, const char *detail)
{
	struct ca_pg_args a = {0};

	ca_pg_int(&a, (long long)time(NULL));
	ca_pg_int(&a, (long long)getuid());
	ca_pg_text(&a, event);
	ca_pg_text(&a, detail);
	return change(b, S_AUDIT, &a, "audit");
}

static int pg_insert_cert(struct ca_db *b, const struct ca_db_cert *r, const unsigned char *der, size_t der_len)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, r->serial);
	ca_pg_text(&a, r->subject);
	ca_pg_text(&a, r->template_name);
	ca_pg_int(&a, (long long)r->not_before);
	ca_pg_int(&a, (long long)r->not_after);
	ca_pg_int(&a, r->request_id);
	ca_pg_blob(&a, der, der_len);
	return change(b, S_INSERT_CERT, &a, "insert certificate");
}

static void row_of(const PGresult *r, int i, struct ca_db_cert *c)
{
	memset(c, 0, sizeof *c);
	ca_pg_text_at(c->serial, sizeof c->serial, r, i, 0);
	ca_pg_text_at(c->subject, sizeof c->subject, r, i, 1);
	ca_pg_text_at(c->template_name, sizeof c->template_name, r, i, 2);
	c->not_before = (time_t)ca_pg_int_at(r, i, 3);
	c->not_after = (time_t)ca_pg_int_at(r, i, 4);
	ca_pg_text_at(c->status, sizeof c->status, r, i, 5);
	c->revoked_at = (time_t)ca_pg_int_at(r, i, 6);
	c->reason = (int)ca_pg_int_at(r, i, 7);
	c->request_id = ca_pg_int_at(r, i, 8);
}

/* A bytea column, malloc'd (one byte more, for a caller's NUL); NULL out of memory. */
static unsigned char *blob_at(const PGresult *r, int row, int col, size_t *len)
{
	size_t n = (size_t)PQgetlength(r, row, col);
	unsigned char *p = malloc(n + 1);

	if (p)
		memcpy(p, PQgetvalue(r, row, col), n);
	*len = n;
	return p;
}

static int pg_get_cert(struct ca_db *b, const char *serial, struct ca_db_cert *row, unsigned char **der,
		       size_t *der_len)
{
	struct ca_pg_args a = {0};
	PGresult *r;
	int rc = 1;

	ca_pg_text(&a, serial);
	if (ca_pg_run(pg(b), S_GET_CERT, &a, "read certificate", &r))
		return -1;
	if (PQntuples(r) == 1) {
		row_of(r, 0, row);
		rc = 0;
		if (der && !(*der = blob_at(r, 0, 9, der_len)))
			rc = ca_error("out of memory");
	}
	PQclear(r);
	return rc;
}

static int pg_set_revocation(struct ca_db *b, const char *serial, const char *status, time_t when, int reason,
			     time_t invalid_at)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, status);
	ca_pg_int(&a, (long long)when);
	ca_pg_int(&a, reason);
	ca_pg_int(&a, (long long)time(NULL));
	ca_pg_int(&a, (long long)invalid_at);
	ca_pg_text(&a, serial);
	return change(b, S_SET_REVOCATION, &a, "revocation");
}

static long long pg_insert_request(struct ca_db *b, const unsigned char *csr, size_t len, const char *template_name,
				   const char *status)
{
	struct ca_pg_args a = {0};
	PGresult *r;
	long long id;

	ca_pg_blob(&a, csr, len);
	ca_pg_text(&a, template_name);
	ca_pg_text(&a, status);
	ca_pg_int(&a, (long long)time(NULL));
	if (ca_pg_run(pg(b), S_INSERT_REQUEST, &a, "insert request", &r))
		return -1;
	id = ca_pg_int_at(r, 0, 0);
	PQclear(r);
	return id;
}

static int pg_get_request(struct ca_db *b, long long id, unsigned char **csr, size_t *len, char *template_name,
			  size_t tsize, char *status, size_t ssize)
{
	struct ca_pg_args a = {0};
	PGresult *r;
	int rc = 1;

	ca_pg_int(&a, id);
	if (ca_pg_run(pg(b), S_GET_REQUEST, &a, "read request", &r))
		return -1;
	if (PQntuples(r) == 1) {
		rc = (*csr = blob_at(r, 0, 0, len)) ? 0 : ca_error("out of memory");
		ca_pg_text_at(template_name, tsize, r, 0, 1);
		ca_pg_text_at(status, ssize, r, 0, 2);
	}
	PQclear(r);
	return rc;
}

static int pg_set_request(struct ca_db *b, long long id, const char *status, const char *serial)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, status);
	ca_pg_text(&a, serial ? serial : "");
	ca_pg_int(&a, id);
	return change(b, S_SET_REQUEST, &a, "update request");
}

static int pg_each_cert(struct ca_db *b, int (*fn)(void *arg, const struct ca_db_cert *c), void *arg)
{
	struct ca_db_cert c;
	PGresult *r;
	int rc = 0;

	if (ca_pg_run(pg(b), S_EACH_CERT, NULL, "list certificates", &r))
		return -1;
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		row_of(r, i, &c);
		rc = fn(arg, &c) ? -1 : 0;
	}
	PQclear(r);
	return rc;
}

static int pg_each_request(struct ca_db *b, int (*fn)(void *arg, const struct ca_pending *r), void *arg)
{
	struct ca_pending p;
	PGresult *r;
	int rc = 0;

	if (ca_pg_run(pg(b), S_EACH_REQUEST, NULL, "list requests", &r))
		return -1;
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		memset(&p, 0, sizeof p);
		p.id = ca_pg_int_at(r, i, 0);
		ca_pg_text_at(p.template_name, sizeof p.template_name, r, i, 1);
		ca_pg_text_at(p.status, sizeof p.status, r, i, 2);
		p.submitted = (time_t)ca_pg_int_at(r, i, 3);
		rc = fn(arg, &p) ? -1 : 0;
	}
	PQclear(r);
	return rc;
}

static int pg_each_audit(struct ca_db *b, int (*fn)(void *arg, const struct ca_audit_row *r), void *arg)
{
	struct ca_audit_row a;
	PGresult *r;
	int rc = 0;

	if (ca_pg_run(pg(b), S_EACH_AUDIT, NULL, "read the audit log", &r))
		return -1;
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		a.id = ca_pg_int_at(r, i, 0);
		a.time = (time_t)ca_pg_int_at(r, i, 1);
		a.uid = ca_pg_int_at(r, i, 2);
		a.event = PQgetvalue(r, i, 3); /* binary text: NUL-terminated all the same */
		a.detail = PQgetvalue(r, i, 4);
		rc = fn(arg, &a) ? -1 : 0;
	}
	PQclear(r);
	return rc;
}

static int pg_counts(struct ca_db *b, time_t now, struct ca_status *st)
{
	struct ca_pg_args a = {0};
	PGresult *r;

	ca_pg_int(&a, (long long)now);
	if (ca_pg_run(pg(b), S_COUNTS, &a, "count certificates", &r))
		return -1;
	st->issued = ca_pg_int_at(r, 0, 0);
	st->revoked = ca_pg_int_at(r, 0, 1);
	st->expired = ca_pg_int_at(r, 0, 2);
	st->pending = ca_pg_int_at(r, 0, 3);
	st->last_crl = ca_pg_int_at(r, 0, 4);
	st->last_delta_crl = ca_pg_int_at(r, 0, 5);
	st->last_crl_time = (time_t)ca_pg_int_at(r, 0, 6);
	PQclear(r);
	return 0;
}

static int pg_each_revoked(struct ca_db *b, bool delta, long long seq,
			   int (*fn)(void *arg, const char *serial, time_t when, int reason, time_t invalid_at),
			   void *arg)
{
	/* as on SQLite (db_sqlite.c): a delta lists the changes numbered after its base's last */
	struct ca_pg_args a = {0};
	PGresult *r;
	int rc = 0;

	ca_pg_int(&a, seq);
	if (ca_pg_run(pg(b), delta ? S_REVOKED_DELTA : S_REVOKED_FULL, delta ? &a : NULL, "list revocations", &r))
		return -1;
	for (int i = 0; !rc && i < PQntuples(r); i++)
		rc = fn(arg, PQgetvalue(r, i, 0), (time_t)ca_pg_int_at(r, i, 1), (int)ca_pg_int_at(r, i, 2),
			(time_t)ca_pg_int_at(r, i, 3))
			     ? -1
			     : 0;
	PQclear(r);
	return rc;
}

/* One integer from statement i (no parameters) into *out: 0, 1 (no row), -1. */
static int one_int(struct ca_db *b, int i, const char *what, long long *out)
{
	PGresult *r;
	int rc = 1;

	if (ca_pg_run(pg(b), (size_t)i, NULL, what, &r))
		return -1;
	if (PQntuples(r) == 1) {
		*out = ca_pg_int_at(r, 0, 0);
		rc = 0;
	}
	PQclear(r);
	return rc;
}

static int pg_next_crl_number(struct ca_db *b, long long *number)
{
	/* inside the caller's transaction, under the writer lock: no other issuer takes the same number */
	return one_int(b, S_NEXT_CRL, "CRL number", number) ? -1 : 0;
}

static int pg_last_base_crl(struct ca_db *b, long long *number, time_t *when, long long *seq)
{
	PGresult *r;
	int rc = 1;

	if (ca_pg_run(pg(b), S_LAST_BASE, NULL, "last CRL", &r))
		return -1;
	if (PQntuples(r) == 1) {
		*number = ca_pg_int_at(r, 0, 0);
		*when = (time_t)ca_pg_int_at(r, 0, 1);
		*seq = ca_pg_int_at(r, 0, 2);
		rc = 0;
	}
	PQclear(r);
	return rc;
}

static int pg_record_crl(struct ca_db *b, long long number, bool delta, long long base, time_t this_update,
			 time_t next_update)
{
	struct ca_pg_args a = {0};

	ca_pg_int(&a, number);
	ca_pg_int(&a, delta);
	ca_pg_int(&a, base);
	ca_pg_int(&a, (long long)this_update);
	ca_pg_int(&a, (long long)next_update);
	return change(b, S_RECORD_CRL, &a, "record CRL");
}

static int pg_get_meta(struct ca_db *b, const char *key, char **value)
{
	struct ca_pg_args a = {0};
	PGresult *r;
	int rc = 1;

	*value = NULL;
	ca_pg_text(&a, key);
	if (ca_pg_run(pg(b), S_GET_META, &a, "read meta", &r))
		return -1;
	if (PQntuples(r) == 1)
		rc = (*value = strndup(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0))) ? 0
											   : ca_error("out of memory");
	PQclear(r);
	return rc;
}

static int pg_set_meta(struct ca_db *b, const char *key, const char *value)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, key);
	ca_pg_text(&a, value);
	return change(b, S_SET_META, &a, "meta");
}

static int pg_delete_meta(struct ca_db *b, const char *key)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, key);
	return change(b, S_DELETE_META, &a, "meta");
}

static int pg_backup(struct ca_db *b, const char *path)
{
	return ca_pg_backup(pg(b), path);
}

static int pg_check(struct ca_db *b)
{
	PGresult *r;
	int rc;

	/* PostgreSQL checks its own pages; what is checked here is that the CA's tables are whole */
	if (ca_pg_run(pg(b), S_CHECK, NULL, "check", &r))
		return -1;
	if (ca_pg_int_at(r, 0, 0) != 1)
		rc = ca_error("database %s: ca_writer holds %lld rows, not 1", pg(b)->where, ca_pg_int_at(r, 0, 0));
	else if (ca_pg_int_at(r, 0, 1))
		rc = ca_error("database %s: %lld certificates without their DER", pg(b)->where, ca_pg_int_at(r, 0, 1));
	else
		rc = 0;
	PQclear(r);
	return rc;
}

static long long pg_max_crl(struct ca_db *b)
{
	long long n = -1;

	return one_int(b, S_MAX_CRL, "CRL number", &n) ? -1 : n;
}

static int first_row(struct ca_pg *p, const char *sql, const char *what, char *out, size_t size);

static int pg_read_only(struct ca_db *b)
{
	return ca_pg_read_only(pg(b), "read only");
}

static int pg_writable(struct ca_db *b)
{
	struct ca_pg *p = pg(b);
	char v[16];
	int found;

	/* a hot standby answers every write "cannot execute ... in a read-only transaction" */
	if ((found = first_row(p, "SELECT pg_is_in_recovery()::text || current_setting('transaction_read_only')",
			       "asking whether the server takes writes", v, sizeof v)) < 0)
		return -1;
	if (found && !strncmp(v, "true", 4))
		return ca_error("database %s is a hot standby (pg_is_in_recovery() is true): it takes no writes",
				p->where),
		       1;
	if (found && strcmp(v, "falseoff"))
		return ca_error("database %s takes no writes (transaction_read_only is on)", p->where), 1;
	return 0;
}

static const struct ca_db_ops pg_ops = {
	.close = pg_close,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.audit = pg_audit,
	.insert_cert = pg_insert_cert,
	.get_cert = pg_get_cert,
	.set_revocation = pg_set_revocation,
	.insert_request = pg_insert_request,
	.get_request = pg_get_request,
	.set_request = pg_set_request,
	.each_cert = pg_each_cert,
	.each_request = pg_each_request,
	.each_audit = pg_each_audit,
	.counts = pg_counts,
	.each_revoked = pg_each_revoked,
	.next_crl_number = pg_next_crl_number,
	.last_base_crl = pg_last_base_crl,
	.record_crl = pg_record_crl,
	.get_meta = pg_get_meta,
	.set_meta = pg_set_meta,
	.delete_meta = pg_delete_meta,
	.backup = pg_backup,
	.check = pg_check,
	.max_crl = pg_max_crl,
	.read_only = pg_read_only,
	.writable = pg_writable,
};

/*
 * The schema: made when create (setup) and the database holds no CA yet,
 * under an advisory lock so two first opens do not race; a database
 * without it, or with a newer version, is refused.
 */
/* The first row of sql's one-column text result: 1 (a row), 0 (none), -1 (failed). */
static int first_row(struct ca_pg *p, const char *sql, const char *what, char *out, size_t size)
{
	PGresult *r = PQexec(p->conn, sql);
	int rc;

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = ca_pg_fail(p, r, what);
	else if ((rc = PQntuples(r) > 0))
		ca_pg_text_at(out, size, r, 0, 0);
	PQclear(r);
	return rc;
}

static int schema_open(struct pg_db *db, bool create)
{
	struct ca_pg *p = &db->pg;
	char *version = NULL, v[64];
	int rc = -1, found;

	if (ca_pg_exec(p, "SET client_min_messages = warning", "configuring the session") ||
	    ca_pg_exec(p, "BEGIN", "begin"))
		return -1;
	p->in_tx = true;
	if (ca_pg_exec(p, "SELECT pg_advisory_xact_lock(" CA_PG_SCHEMA_LOCK ")", "waiting for the schema lock") ||
	    (create && ca_pg_exec(p, ca_db_pg_schema, "making the tables")))
		goto out;
	if ((found = first_row(p, "SELECT to_regclass('meta') IS NOT NULL AND to_regclass('ca_writer') IS NOT NULL",
			       "schema", v, sizeof v)) < 0)
		goto out;
	if (!found || strcmp(v, "t")) {
		ca_error("database %s holds no keyward-ca tables: keyward-ca setup --database makes them", p->where);
		goto out;
	}
	if (pg_get_meta(&db->base, CA_PG_SCHEMA_KEY, &version) < 0)
		goto out;
	if (create) {
		/* setup on a database that already holds a CA would merge two CAs' records */
		if ((found = first_row(p, "SELECT key FROM meta WHERE key <> '" CA_PG_SCHEMA_KEY "' LIMIT 1", "schema",
				       v, sizeof v)) != 0) {
			if (found > 0)
				ca_error(
					"database %s already holds a CA's records: each CA needs a database of its own",
					p->where);
			goto out;
		}
		if (!version && pg_set_meta(&db->base, CA_PG_SCHEMA_KEY, CA_PG_SCHEMA_VERSION_TEXT))
			goto out;
	} else if (!version) {
		ca_error("database %s has no schema version (meta %s): not a keyward-ca database", p->where,
			 CA_PG_SCHEMA_KEY);
		goto out;
	} else if (atoi(version) != CA_PG_SCHEMA_VERSION) {
		ca_error("database %s has schema version %s; this keyward-ca knows %d: use a newer keyward-ca",
			 p->where, version, CA_PG_SCHEMA_VERSION);
		goto out;
	}
	rc = 0;
out:
	rc = ca_pg_end(p, rc, "making the tables");
	free(version);
	return rc;
}

int ca_db_pg_open(const char *url, bool create, struct ca_db **out)
{
	struct pg_db *db = calloc(1, sizeof *db);

	*out = NULL;
	if (!db)
		return ca_error("out of memory");
	db->base.ops = &pg_ops;
	if (ca_pg_connect(&db->pg, url, statements, S_N)) {
		free(db);
		return -1;
	}
	if (schema_open(db, create)) {
		pg_close(&db->base);
		return -1;
	}
	*out = &db->base;
	return 0;
}
