/*
 * keyward-ca: certificate states for the OCSP responder (db_status.h), on
 * a connection of its own, statements prepared once: from keyward-ca.db
 * here, or from ca.conf's PostgreSQL database (db_status_pg.c).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ocsp.h>
#include <sqlite3.h>

#include "ca/db_status.h"
#include "ca/db_status_pg.h"

struct ca_status_db {
	struct ca_status_pg *pg; /* when the database is PostgreSQL: the rest is unused */
	sqlite3 *db;
	sqlite3_stmt *get, *version, *mark, *changes, *each, *ping;
};

static int fail(struct ca_status_db *s, const char *what)
{
	return ca_error("database: %s: %s", what, sqlite3_errmsg(s->db));
}

void ca_status_close(struct ca_status_db *s)
{
	if (!s)
		return;
	ca_status_pg_close(s->pg);
	sqlite3_finalize(s->get);
	sqlite3_finalize(s->version);
	sqlite3_finalize(s->mark);
	sqlite3_finalize(s->changes);
	sqlite3_finalize(s->each);
	sqlite3_finalize(s->ping);
	sqlite3_close(s->db);
	free(s);
}

int ca_status_open(const struct ca_conf *c, struct ca_status_db **out)
{
	static const struct {
		size_t off;
		const char *sql;
	} stmts[] = {
		{offsetof(struct ca_status_db, get),
		 "SELECT status, revoked_at, reason, invalid_at FROM certs WHERE serial = ?"},
		{offsetof(struct ca_status_db, version), "PRAGMA data_version"},
		{offsetof(struct ca_status_db, mark),
		 "SELECT COALESCE(MAX(rowid), 0), COALESCE(MAX(changed_at), 0) FROM certs"},
		{offsetof(struct ca_status_db, changes), "SELECT rowid, serial, changed_at FROM certs WHERE rowid > ? "
							 "OR (changed_at > 0 AND changed_at >= ?) ORDER BY rowid"},
		{offsetof(struct ca_status_db, each), "SELECT serial FROM certs WHERE not_after >= ? ORDER BY rowid"},
		{offsetof(struct ca_status_db, ping), "SELECT COUNT(*) FROM meta"},
	};
	char path[CA_PATH_MAX + 32];
	struct ca_status_db *s = calloc(1, sizeof *s);

	*out = NULL;
	if (!s)
		return ca_error("out of memory");
	if (c->database[0]) {
		if (ca_status_pg_open(c->database, &s->pg)) {
			free(s);
			return -1;
		}
		*out = s;
		return 0;
	}
	ca_path(c, "keyward-ca.db", path, sizeof path);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		ca_error("cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
		ca_status_close(s);
		return -1;
	}
	sqlite3_busy_timeout(s->db, 5000);
	if (sqlite3_exec(s->db, "PRAGMA query_only=ON", NULL, NULL, NULL) != SQLITE_OK) {
		fail(s, path);
		ca_status_close(s);
		return -1;
	}
	for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++)
		if (sqlite3_prepare_v3(s->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
				       (sqlite3_stmt **)((char *)s + stmts[i].off), NULL) != SQLITE_OK) {
			fail(s, stmts[i].sql);
			ca_status_close(s);
			return -1;
		}
	*out = s;
	return 0;
}

int ca_status_get(struct ca_status_db *s, const char *serial, struct ocsp_status *st)
{
	int rc;

	if (s->pg)
		return ca_status_pg_get(s->pg, serial, st);
	st->status = V_OCSP_CERTSTATUS_UNKNOWN;
	st->revoked_at = 0;
	st->reason = -1;
	st->invalid_at = 0;
	sqlite3_bind_text(s->get, 1, serial, -1, SQLITE_STATIC);
	rc = sqlite3_step(s->get);
	if (rc == SQLITE_ROW) {
		const char *status = (const char *)sqlite3_column_text(s->get, 0);

		if (status && !strcmp(status, "revoked")) {
			st->status = V_OCSP_CERTSTATUS_REVOKED;
			st->revoked_at = (time_t)sqlite3_column_int64(s->get, 1);
			st->reason = sqlite3_column_int(s->get, 2);
			st->invalid_at = (time_t)sqlite3_column_int64(s->get, 3);
		} else {
			st->status = V_OCSP_CERTSTATUS_GOOD; /* issued, or a hold taken back */
		}
	}
	sqlite3_reset(s->get);
	sqlite3_clear_bindings(s->get);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(s, "certificate status");
}

static int one_row(struct ca_status_db *s, sqlite3_stmt *st, const char *what, long long *a, long long *b)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW) {
		*a = sqlite3_column_int64(st, 0);
		if (b)
			*b = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : fail(s, what);
}

int ca_status_ping(struct ca_status_db *s)
{
	long long n;

	if (s->pg)
		return ca_status_pg_ping(s->pg);
	return one_row(s, s->ping, "ping", &n, NULL);
}

int ca_status_version(struct ca_status_db *s, long long *version)
{
	if (s->pg)
		return ca_status_pg_version(s->pg, version);
	return one_row(s, s->version, "data_version", version, NULL);
}

int ca_status_mark(struct ca_status_db *s, struct ca_status_mark *m)
{
	if (s->pg)
		return ca_status_pg_mark(s->pg, m);
	return one_row(s, s->mark, "mark", &m->rowid, &m->changed_at);
}

int ca_status_changes(struct ca_status_db *s, struct ca_status_mark *m, int (*fn)(void *arg, const char *serial),
		      void *arg)
{
	struct ca_status_mark next = *m;
	int rc;

	if (s->pg)
		return ca_status_pg_changes(s->pg, m, fn, arg);
	/* one read transaction: the walk and the new mark see the same database */
	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return fail(s, "begin");
	sqlite3_bind_int64(s->changes, 1, m->rowid);
	sqlite3_bind_int64(s->changes, 2, m->changed_at);
	while ((rc = sqlite3_step(s->changes)) == SQLITE_ROW) {
		long long rowid = sqlite3_column_int64(s->changes, 0), changed = sqlite3_column_int64(s->changes, 2);

		if (rowid > next.rowid)
			next.rowid = rowid;
		if (changed > next.changed_at)
			next.changed_at = changed;
		if (fn(arg, (const char *)sqlite3_column_text(s->changes, 1))) {
			rc = SQLITE_ABORT;
			break;
		}
	}
	sqlite3_reset(s->changes);
	sqlite3_clear_bindings(s->changes);
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (rc == SQLITE_ABORT)
		return -1;
	if (rc != SQLITE_DONE)
		return fail(s, "changes");
	*m = next;
	return 0;
}

int ca_status_each(struct ca_status_db *s, time_t now, int (*fn)(void *arg, const char *serial), void *arg)
{
	int rc;

	if (s->pg)
		return ca_status_pg_each(s->pg, now, fn, arg);
	sqlite3_bind_int64(s->each, 1, (long long)now);
	while ((rc = sqlite3_step(s->each)) == SQLITE_ROW)
		if (fn(arg, (const char *)sqlite3_column_text(s->each, 0))) {
			rc = SQLITE_ABORT;
			break;
		}
	sqlite3_reset(s->each);
	sqlite3_clear_bindings(s->each);
	if (rc == SQLITE_ABORT)
		return -1;
	return rc == SQLITE_DONE ? 0 : fail(s, "certificates");
}
