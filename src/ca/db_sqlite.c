/*
 * keyward-ca: the database in keyward-ca.db (SQLite, WAL, synchronous=FULL:
 * a certificate the CLI reported issued survives a crash or power loss).
 * Every change runs in BEGIN IMMEDIATE ... COMMIT, so two processes on one
 * CA take turns (busy timeout) and each change, with its audit record, is
 * whole or absent.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ca/db_backend.h"

struct sq_db {
	struct ca_db base;
	sqlite3 *db;
	/* issuance's statements, prepared once: preparing costs about as much as running them */
	sqlite3_stmt *insert_cert, *insert_audit;
};

const char ca_db_sqlite_schema[] =
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS certs ("
	" serial TEXT PRIMARY KEY, subject TEXT NOT NULL, template TEXT NOT NULL,"
	" not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,"
	" status TEXT NOT NULL CHECK (status IN ('issued', 'revoked')),"
	" revoked_at INTEGER NOT NULL DEFAULT 0, reason INTEGER NOT NULL DEFAULT -1,"
	" changed_at INTEGER NOT NULL DEFAULT 0," /* the revocation state's last change (time) */
	" request_id INTEGER NOT NULL DEFAULT 0, der BLOB NOT NULL,"
	" invalid_at INTEGER NOT NULL DEFAULT 0,"  /* a backdated revocation's date: the CRL's invalidityDate */
	" change_seq INTEGER NOT NULL DEFAULT 0);" /* the revocation state's last change (order): deltas select on it */
	/* covering: a full CRL reads the index alone */
	"CREATE INDEX IF NOT EXISTS certs_revoked ON certs (status, serial, revoked_at, reason);"
	"CREATE INDEX IF NOT EXISTS certs_changed ON certs (changed_at);"
	"CREATE TABLE IF NOT EXISTS requests ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, csr BLOB NOT NULL, template TEXT NOT NULL,"
	" status TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'denied')),"
	" submitted INTEGER NOT NULL, serial TEXT NOT NULL DEFAULT '');"
	"CREATE TABLE IF NOT EXISTS crls ("
	" number INTEGER PRIMARY KEY, delta INTEGER NOT NULL, base INTEGER NOT NULL,"
	" this_update INTEGER NOT NULL, next_update INTEGER NOT NULL,"
	" seq INTEGER NOT NULL DEFAULT 0);" /* a full CRL: the last change_seq it holds */
	"CREATE TABLE IF NOT EXISTS audit ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, uid INTEGER NOT NULL,"
	" event TEXT NOT NULL, detail TEXT NOT NULL);";

static struct sq_db *sq(struct ca_db *b)
{
	return (struct sq_db *)b;
}

static int db_fail(struct sq_db *db, const char *what)
{
	return ca_error("database: %s: %s", what, sqlite3_errmsg(db->db));
}

/*
 * A database made before certs.invalid_at, certs.change_seq and crls.seq:
 * the columns added, past changes numbered in time order, and each full
 * CRL given the changes made before its second (as deltas chose them then).
 */
static const char migrate_seq[] =
	"ALTER TABLE certs ADD COLUMN invalid_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE certs ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE crls ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
	"UPDATE certs SET change_seq = (SELECT COUNT(*) FROM certs c2 WHERE c2.changed_at > 0 AND"
	" (c2.changed_at < certs.changed_at OR (c2.changed_at = certs.changed_at AND c2.rowid <= certs.rowid)))"
	" WHERE changed_at > 0;"
	"UPDATE crls SET seq = (SELECT COALESCE(MAX(change_seq), 0) FROM certs"
	" WHERE changed_at > 0 AND changed_at < crls.this_update) WHERE delta = 0;";

static int migrate(struct sq_db *db)
{
	sqlite3_stmt *st = NULL;
	int rc, have;

	if (sqlite3_prepare_v2(db->db, "SELECT COUNT(*) FROM pragma_table_info('certs') WHERE name = 'change_seq'", -1,
			       &st, NULL) != SQLITE_OK)
		return db_fail(db, "schema");
	rc = sqlite3_step(st);
	have = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	if (have < 0)
		return db_fail(db, "schema");
	if (have)
		return 0;
	if (sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(db, "schema upgrade");
	if (sqlite3_exec(db->db, migrate_seq, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_fail(db, "schema upgrade");
		sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

static void sq_close(struct ca_db *b)
{
	struct sq_db *db = sq(b);
	if (!db)
		return;
	sqlite3_finalize(db->insert_cert);
	sqlite3_finalize(db->insert_audit);
	sqlite3_close(db->db);
	free(db);
}

static int sq_begin(struct ca_db *b)
{
	struct sq_db *db = sq(b);
	return sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : db_fail(db, "begin");
}

static int sq_commit(struct ca_db *b)
{
	struct sq_db *db = sq(b);
	return sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : db_fail(db, "commit");
}

static void sq_rollback(struct ca_db *b)
{
	struct sq_db *db = sq(b);
	sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Binds the arguments: 'i' int64, 't' text, 'b' blob (pointer, size_t); copies, as they may be gone by step. */
static void bind(sqlite3_stmt *st, const char *types, va_list ap)
{
	for (int i = 0; types[i]; i++) {
		if (types[i] == 'i') {
			sqlite3_bind_int64(st, i + 1, va_arg(ap, long long));
		} else if (types[i] == 't') {
			sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
		} else {
			const void *p = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);

			sqlite3_bind_blob(st, i + 1, p, (int)n, SQLITE_TRANSIENT);
		}
	}
}

/* Prepares sql, binding the arguments (as bind()). */
static sqlite3_stmt *prepare(struct sq_db *db, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;

	if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK) {
		db_fail(db, sql);
		return NULL;
	}
	va_start(ap, types);
	bind(st, types, ap);
	va_end(ap);
	return st;
}

/* Runs sql, which returns no rows, through the statement kept in *kept (prepared the first time). */
static int run_kept(struct sq_db *db, sqlite3_stmt **kept, const char *what, const char *sql, const char *types, ...)
{
	va_list ap;
	int rc;

	if (!*kept && sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, kept, NULL) != SQLITE_OK)
		return db_fail(db, sql);
	va_start(ap, types);
	bind(*kept, types, ap);
	va_end(ap);
	rc = sqlite3_step(*kept);
	sqlite3_reset(*kept);
	sqlite3_clear_bindings(*kept);
	return rc == SQLITE_DONE ? 0 : db_fail(db, what);
}

/* Runs a statement that returns no rows. */
static int run(struct sq_db *db, sqlite3_stmt *st, const char *what)
{
	int rc;

	if (!st)
		return -1;
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(db, what);
	return 0;
}

static int sq_audit(struct ca_db *b, const char *event, const char *detail)
{
	struct sq_db *db = sq(b);

	return run_kept(db, &db->insert_audit, "audit",
			"INSERT INTO audit (time, uid, event, detail) VALUES (?, ?, ?, ?)", "iitt",
			(long long)time(NULL), (long long)getuid(), event, detail);
}

static int sq_insert_cert(struct ca_db *b, const struct ca_db_cert *r, const unsigned char *der, size_t der_len)
{
	struct sq_db *db = sq(b);
	return run_kept(db, &db->insert_cert, "insert certificate",
			"INSERT INTO certs (serial, subject, template, not_before, not_after, status, request_id, der)"
			" VALUES (?, ?, ?, ?, ?, 'issued', ?, ?)",
			"tttiiib", r->serial, r->subject, r->template_name, (long long)r->not_before,
			(long long)r->not_after, r->request_id, der, der_len);
}

static void row_of(sqlite3_stmt *st, struct ca_db_cert *r)
{
	memset(r, 0, sizeof *r);
	snprintf(r->serial, sizeof r->serial, "%s", (const char *)sqlite3_column_text(st, 0));
	snprintf(r->subject, sizeof r->subject, "%s", (const char *)sqlite3_column_text(st, 1));
	snprintf(r->template_name, sizeof r->template_name, "%s", (const char *)sqlite3_column_text(st, 2));
	r->not_before = (time_t)sqlite3_column_int64(st, 3);
	r->not_after = (time_t)sqlite3_column_int64(st, 4);
	snprintf(r->status, sizeof r->status, "%s", (const char *)sqlite3_column_text(st, 5));
	r->revoked_at = (time_t)sqlite3_column_int64(st, 6);
	r->reason = sqlite3_column_int(st, 7);
	r->request_id = sqlite3_column_int64(st, 8);
}

#define CERT_COLUMNS "serial, subject, template, not_before, not_after, status, revoked_at, reason, request_id"

static int sq_get_cert(struct ca_db *b, const char *serial, struct ca_db_cert *row, unsigned char **der,
		       size_t *der_len)
{
	struct sq_db *db = sq(b);
	sqlite3_stmt *st = prepare(db, "SELECT " CERT_COLUMNS ", der FROM certs WHERE serial = ?", "t", serial);
	int rc;

	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		row_of(st, row);
		if (der) {
			int n = sqlite3_column_bytes(st, 9);

			*der = malloc((size_t)n);
			if (*der)
				memcpy(*der, sqlite3_column_blob(st, 9), (size_t)n);
			*der_len = (size_t)n;
		}
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return der && !*der ? ca_error("out of memory") : 0;
	return rc == SQLITE_DONE ? 1 : db_fail(db, "read certificate");
}

static int sq_set_revocation(struct ca_db *b, const char *serial, const char *status, time_t when, int reason,
			     time_t invalid_at)
{
	struct sq_db *db = sq(b);
	return run(db,
		   prepare(db,
			   "UPDATE certs SET status = ?, revoked_at = ?, reason = ?, changed_at = ?, invalid_at = ?,"
			   " change_seq = (SELECT COALESCE(MAX(change_seq), 0) + 1 FROM certs) WHERE serial = ?",
			   "tiiiit", status, (long long)when, (long long)reason, (long long)time(NULL),
			   (long long)invalid_at, serial),
		   "revocation");
}

static long long sq_insert_request(struct ca_db *b, const unsigned char *csr, size_t len, const char *template_name,
				   const char *status)
{
	struct sq_db *db = sq(b);
	if (run(db,
		prepare(db, "INSERT INTO requests (csr, template, status, submitted) VALUES (?, ?, ?, ?)", "btti", csr,
			len, template_name, status, (long long)time(NULL)),
		"insert request"))
		return -1;
	return sqlite3_last_insert_rowid(db->db);
}

static int sq_get_request(struct ca_db *b, long long id, unsigned char **csr, size_t *len, char *template_name,
			  size_t tsize, char *status, size_t ssize)
{
	struct sq_db *db = sq(b);
	sqlite3_stmt *st = prepare(db, "SELECT csr, template, status FROM requests WHERE id = ?", "i", id);
	int rc;

	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		int n = sqlite3_column_bytes(st, 0);

		*csr = malloc((size_t)n + 1);
		if (*csr)
			memcpy(*csr, sqlite3_column_blob(st, 0), (size_t)n);
		*len = (size_t)n;
		snprintf(template_name, tsize, "%s", (const char *)sqlite3_column_text(st, 1));
		snprintf(status, ssize, "%s", (const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return *csr ? 0 : ca_error("out of memory");
	return rc == SQLITE_DONE ? 1 : db_fail(db, "read request");
}

static int sq_set_request(struct ca_db *b, long long id, const char *status, const char *serial)
{
	struct sq_db *db = sq(b);
	return run(db,
		   prepare(db, "UPDATE requests SET status = ?, serial = ? WHERE id = ?", "tti", status,
			   serial ? serial : "", id),
		   "update request");
}

static int sq_each_cert(struct ca_db *b, int (*fn)(void *arg, const struct ca_db_cert *c), void *arg)
{
	struct sq_db *db = sq(b);
	sqlite3_stmt *st = prepare(db, "SELECT " CERT_COLUMNS " FROM certs ORDER BY not_before, serial", "");
	struct ca_db_cert r;
	int rc;

	if (!st)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_of(st, &r);
		if (fn(arg, &r)) {
			sqlite3_finalize(st);
			return -1;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail(db, "list certificates");
}

static int sq_each_request(struct ca_db *b, int (*fn)(void *arg, const struct ca_pending *r), void *arg)
{
	struct sq_db *db = sq(b);
	sqlite3_stmt *st = prepare(
		db, "SELECT id, template, status, submitted FROM requests WHERE status != 'issued' ORDER BY id", "");
	struct ca_pending r;
	int rc;

	if (!st)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&r, 0, sizeof r);
		r.id = sqlite3_column_int64(st, 0);
		snprintf(r.template_name, sizeof r.template_name, "%s", (const char *)sqlite3_column_text(st, 1));
		snprintf(r.status, sizeof r.status, "%s", (const char *)sqlite3_column_text(st, 2));
		r.submitted = (time_t)sqlite3_column_int64(st, 3);
		if (fn(arg, &r)) {
			sqlite3_finalize(st);
			return -1;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail(db, "list requests");
}

static int sq_each_audit(struct ca_db *b, int (*fn)(void *arg, const struct ca_audit_row *r), void *arg)
{
	struct sq_db *db = sq(b);
	sqlite3_stmt *st = prepare(db, "SELECT id, time, uid, event, detail FROM audit ORDER BY id", "");
	struct ca_audit_row r;
	int rc;

	if (!st)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r.id = sqlite3_column_int64(st, 0);
		r.time = (time_t)sqlite3_column_int64(st, 1);
		r.uid = sqlite3_column_int64(st, 2);
		r.event = (const char *)sqlite3_column_text(st, 3);
		r.detail = (const char *)sqlite3_column_text(st, 4);
		if (fn(arg, &r)) {
			sqlite3_finalize(st);
			return -1;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail(db, "read the audit log");
}

static int sq_counts(struct ca_db *b, time_t now, struct ca_status *st_out)
{
	struct sq_db *db = sq(b);
	sqlite3_stmt *st = prepare(db,
				   "SELECT (SELECT COUNT(*) FROM certs WHERE status = 'issued' AND not_after >= ?),"
				   " (SELECT COUNT(*) FROM certs WHERE status = 'revoked'),"
				   " (SELECT COUNT(*) FROM certs WHERE status = 'issued' AND not_after < ?),"
				   " (SELECT COUNT(*) FROM requests WHERE status = 'pending'),"
				   " (SELECT COALESCE(MAX(number), 0) FROM crls WHERE delta = 0),"
				   " (SELECT COALESCE(MAX(number), 0) FROM crls WHERE delta = 1),"
				   " (SELECT COALESCE(MAX(this_update), 0) FROM crls)",
				   "ii", (long long)now, (long long)now);
	int rc;

	if (!st)
		return -1;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		st_out->issued = sqlite3_column_int64(st, 0);
		st_out->revoked = sqlite3_column_int64(st, 1);
		st_out->expired = sqlite3_column_int64(st, 2);
		st_out->pending = sqlite3_column_int64(st, 3);
		st_out->last_crl = sqlite3_column_int64(st, 4);
		st_out->last_delta_crl = sqlite3_column_int64(st, 5);
		st_out->last_crl_time = (time_t)sqlite3_column_int64(st, 6);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_fail(db, "count certificates");
}

static int sq_each_revoked(struct ca_db *b, bool delta, long long seq,
			   int (*fn)(void *arg, const char *serial, time_t when, int reason, time_t invalid_at),
			   void *arg)
{
	struct sq_db *db = sq(b);
	/*
	 * A delta lists what changed after its base was made, whatever date a
	 * revocation carries (it may be backdated): revocations, and holds
	 * taken back (reason removeFromCRL, kept by unrevoke). Changes are
	 * numbered in commit order (change_seq) and a full CRL records the
	 * last it holds, so a delta never repeats its base.
	 */
	sqlite3_stmt *st =
		delta ? prepare(db,
				"SELECT serial, revoked_at, reason, invalid_at FROM certs WHERE change_seq > ?"
				" AND (status = 'revoked' OR reason = 8)",
				"i", seq)
		      : prepare(db, "SELECT serial, revoked_at, reason, invalid_at FROM certs WHERE status = 'revoked'",
				"");
	int rc;

	if (!st)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (fn(arg, (const char *)sqlite3_column_text(st, 0), (time_t)sqlite3_column_int64(st, 1),
		       sqlite3_column_int(st, 2), (time_t)sqlite3_column_int64(st, 3))) {
			sqlite3_finalize(st);
			return -1;
		}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail(db, "list revocations");
}

static int sq_get_meta(struct ca_db *b, const char *key, char **value)
{
	struct sq_db *db = sq(b);
	sqlite3_stmt *st = prepare(db, "SELECT value FROM meta WHERE key = ?", "t", key);
	int rc;

	*value = NULL;
	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && !(*value = strdup((const char *)sqlite3_column_text(st, 0))))
		rc = SQLITE_NOMEM;
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? 1 : rc == SQLITE_NOMEM ? ca_error("out of memory") : db_fail(db, "read meta");
}

static int sq_set_meta(struct ca_db *b, const char *key, const char *value)
{
	struct sq_db *db = sq(b);
	return run(db, prepare(db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", "tt", key, value), "meta");
}

static int sq_next_crl_number(struct ca_db *b, long long *number)
{
	struct sq_db *db = sq(b);
	/* above every CRL this database published, and above the floor a restore set (CRLs published elsewhere) */
	sqlite3_stmt *st = prepare(db,
				   "SELECT MAX(COALESCE((SELECT MAX(number) FROM crls), 0),"
				   " COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = '" CA_META_CRL_FLOOR
				   "'), 0)) + 1",
				   "");
	int rc;

	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*number = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_fail(db, "CRL number");
}

static int sq_last_base_crl(struct ca_db *b, long long *number, time_t *when, long long *seq)
{
	struct sq_db *db = sq(b);
	sqlite3_stmt *st = prepare(
		db, "SELECT number, this_update, seq FROM crls WHERE delta = 0 ORDER BY number DESC LIMIT 1", "");
	int rc;

	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*number = sqlite3_column_int64(st, 0);
		*when = (time_t)sqlite3_column_int64(st, 1);
		*seq = sqlite3_column_int64(st, 2);
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? 1 : db_fail(db, "last CRL");
}

static int sq_record_crl(struct ca_db *b, long long number, bool delta, long long base, time_t this_update,
			 time_t next_update)
{
	struct sq_db *db = sq(b);
	return run(db,
		   prepare(db,
			   "INSERT INTO crls (number, delta, base, this_update, next_update, seq)"
			   " VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(change_seq), 0) FROM certs))",
			   "iiiii", number, (long long)delta, base, (long long)this_update, (long long)next_update),
		   "record CRL");
}

static int sq_backup(struct ca_db *b, const char *path)
{
	struct sq_db *db = sq(b);
	sqlite3 *dest = NULL;
	sqlite3_backup *bk;
	int rc;

	/* the online backup API: a consistent copy while other processes go on issuing */
	if (sqlite3_open_v2(path, &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		rc = ca_error("cannot create %s: %s", path, dest ? sqlite3_errmsg(dest) : "out of memory");
		sqlite3_close(dest);
		return rc;
	}
	if (!(bk = sqlite3_backup_init(dest, "main", db->db, "main"))) {
		rc = ca_error("cannot back up to %s: %s", path, sqlite3_errmsg(dest));
		sqlite3_close(dest);
		return rc;
	}
	while ((rc = sqlite3_backup_step(bk, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED)
		sqlite3_sleep(50);
	sqlite3_backup_finish(bk);
	if (rc != SQLITE_DONE) {
		rc = ca_error("backup to %s failed: %s", path, sqlite3_errstr(rc));
		sqlite3_close(dest);
		return rc;
	}
	/* one self-contained file: no -wal beside it */
	rc = sqlite3_exec(dest, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) == SQLITE_OK
		     ? 0
		     : ca_error("backup %s: %s", path, sqlite3_errmsg(dest));
	sqlite3_close(dest);
	return rc;
}

static int sq_check(struct ca_db *b)
{
	struct sq_db *db = sq(b);
	sqlite3_stmt *st = prepare(db, "PRAGMA integrity_check", "");
	char first[200] = "";
	int rc;

	if (!st)
		return -1;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		snprintf(first, sizeof first, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return db_fail(db, "integrity check");
	return strcmp(first, "ok") ? ca_error("the database is damaged: %s", first) : 0;
}

static long long sq_max_crl(struct ca_db *b)
{
	struct sq_db *db = sq(b);
	sqlite3_stmt *st = prepare(db, "SELECT COALESCE(MAX(number), 0) FROM crls", "");
	long long n = -1;

	if (st && sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

static int sq_delete_meta(struct ca_db *b, const char *key)
{
	struct sq_db *db = sq(b);
	return run(db, prepare(db, "DELETE FROM meta WHERE key = ?", "t", key), "meta");
}

static int sq_read_only(struct ca_db *b)
{
	struct sq_db *db = sq(b);

	return sqlite3_exec(db->db, "PRAGMA query_only = ON", NULL, NULL, NULL) == SQLITE_OK ? 0
											     : db_fail(db, "read only");
}

static int sq_writable(struct ca_db *b)
{
	struct sq_db *db = sq(b);

	if (sqlite3_db_readonly(db->db, "main") == 1)
		return ca_error("%s is read-only (the file or its directory)", sqlite3_db_filename(db->db, "main")), 1;
	return 0;
}

static const struct ca_db_ops sqlite_ops = {
	.close = sq_close,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.audit = sq_audit,
	.insert_cert = sq_insert_cert,
	.get_cert = sq_get_cert,
	.set_revocation = sq_set_revocation,
	.insert_request = sq_insert_request,
	.get_request = sq_get_request,
	.set_request = sq_set_request,
	.each_cert = sq_each_cert,
	.each_request = sq_each_request,
	.each_audit = sq_each_audit,
	.counts = sq_counts,
	.each_revoked = sq_each_revoked,
	.next_crl_number = sq_next_crl_number,
	.last_base_crl = sq_last_base_crl,
	.record_crl = sq_record_crl,
	.get_meta = sq_get_meta,
	.set_meta = sq_set_meta,
	.delete_meta = sq_delete_meta,
	.backup = sq_backup,
	.check = sq_check,
	.max_crl = sq_max_crl,
	.read_only = sq_read_only,
	.writable = sq_writable,
};

int ca_db_sqlite_open(const char *path, bool create, struct ca_db **out)
{
	struct sq_db *db = calloc(1, sizeof *db);
	int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);

	*out = NULL;
	if (!db)
		return ca_error("out of memory");
	db->base.ops = &sqlite_ops;
	if (!create && access(path, F_OK) != 0) {
		free(db);
		return ca_error("%s: %s", path, strerror(errno));
	}
	if (create) {
		/*
		 * made here first, 0600 whatever the umask and the directory: it
		 * holds the CA's records, and SQLite gives its -wal and -shm files
		 * the database file's mode
		 */
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

		if (fd < 0 || close(fd) != 0) {
			ca_error("cannot create %s: %s", path, strerror(errno));
			free(db);
			return -1;
		}
	}
	if (sqlite3_open_v2(path, &db->db, flags, NULL) != SQLITE_OK) {
		ca_error("cannot open %s: %s", path, db->db ? sqlite3_errmsg(db->db) : "out of memory");
		sq_close(&db->base);
		return -1;
	}
	sqlite3_busy_timeout(db->db, 30000);
	if (sqlite3_exec(db->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", NULL,
			 NULL, NULL) != SQLITE_OK ||
	    (create && sqlite3_exec(db->db, ca_db_sqlite_schema, NULL, NULL, NULL) != SQLITE_OK)) {
		db_fail(db, path);
		sq_close(&db->base);
		return -1;
	}
	if (!create && migrate(db)) {
		sq_close(&db->base);
		return -1;
	}
	*out = &db->base;
	return 0;
}
