/*
 * keyward-ca: CMP's records in keyward-ca.db (cmp_store.h's SQLite
 * backend, for a CA without ca.conf's database =), in tables of their own
 * on a connection of their own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ca/cmp_store.h"
#include "ca/db_backend.h"

struct sq {
	struct cmp_db base;
	sqlite3 *db;
	sqlite3_stmt *get, *put, *del, *seen, *prune, *state;
};

const char ca_cmp_sqlite_schema[] =
	"CREATE TABLE IF NOT EXISTS cmp_secrets ("
	" template TEXT PRIMARY KEY, iv BLOB NOT NULL, sealed BLOB NOT NULL, created INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS cmp_seen (id BLOB PRIMARY KEY, expires INTEGER NOT NULL);";

/*
 * Waits for another writer (the issuance's commit) in steps of 200 µs, up to
 * 30 s: SQLite's own handler sleeps up to 100 ms at a time, far longer than
 * a commit, and the requests behind this one would queue up for nothing.
 */
static int busy(void *arg, int n)
{
	(void)arg;
	if (n >= 150000)
		return 0;
	usleep(200);
	return 1;
}

static int fail(struct sq *s, const char *what)
{
	return ca_error("database: %s: %s", what, sqlite3_errmsg(s->db));
}

static void sq_close(struct cmp_db *b)
{
	struct sq *s = (struct sq *)b;

	if (!s)
		return;
	sqlite3_finalize(s->get);
	sqlite3_finalize(s->put);
	sqlite3_finalize(s->del);
	sqlite3_finalize(s->seen);
	sqlite3_finalize(s->prune);
	sqlite3_finalize(s->state);
	sqlite3_close(s->db);
	free(s);
}

static const struct cmp_db_ops sq_ops;

int cmp_db_sqlite_open(const char *path, struct cmp_db **out)
{
	static const struct {
		size_t off;
		const char *sql;
	} stmts[] = {
		{offsetof(struct sq, get), "SELECT iv, sealed FROM cmp_secrets WHERE template = ?"},
		{offsetof(struct sq, put), "INSERT OR REPLACE INTO cmp_secrets VALUES (?, ?, ?, ?)"},
		{offsetof(struct sq, del), "DELETE FROM cmp_secrets WHERE template = ?"},
		{offsetof(struct sq, seen), "INSERT OR IGNORE INTO cmp_seen VALUES (?, ?)"},
		{offsetof(struct sq, prune), "DELETE FROM cmp_seen WHERE expires < ?"},
		{offsetof(struct sq, state), "SELECT status, serial FROM requests WHERE id = ?"},
	};
	struct sq *s = calloc(1, sizeof *s);

	*out = NULL;
	if (!s)
		return ca_error("out of memory");
	s->base.ops = &sq_ops;
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		ca_error("cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_handler(s->db, busy, NULL);
	/*
	 * NORMAL: the replay record need not survive a power loss (the
	 * messageTime window covers most of it); put checkpoints before it
	 * says a secret is stored.
	 */
	if (sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->db, ca_cmp_sqlite_schema, NULL, NULL, NULL) != SQLITE_OK) {
		fail(s, path);
		goto fail;
	}
	for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++)
		if (sqlite3_prepare_v3(s->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
				       (sqlite3_stmt **)((char *)s + stmts[i].off), NULL) != SQLITE_OK) {
			fail(s, stmts[i].sql);
			goto fail;
		}
	*out = &s->base;
	return 0;
fail:
	sq_close(&s->base);
	return -1;
}

static int sq_get(struct cmp_db *b, const char *tmpl, unsigned char iv[CA_SEAL_IV],
		  unsigned char sealed[CMP_SEALED_MAX], size_t *len)
{
	struct sq *s = (struct sq *)b;
	size_t n;
	int step, rc;

	sqlite3_reset(s->get);
	sqlite3_bind_text(s->get, 1, tmpl, -1, SQLITE_TRANSIENT);
	step = sqlite3_step(s->get);
	if (step == SQLITE_DONE) {
		rc = 1;
	} else if (step != SQLITE_ROW) {
		rc = fail(s, "reading the CMP secret");
	} else if (n = (size_t)sqlite3_column_bytes(s->get, 1),
		   sqlite3_column_bytes(s->get, 0) != CA_SEAL_IV || n <= CA_SEAL_TAG || n > CMP_SEALED_MAX) {
		rc = ca_fail(CA_ERR_CONFLICT, "the sealed CMP secret of template %s is damaged", tmpl);
	} else {
		memcpy(iv, sqlite3_column_blob(s->get, 0), CA_SEAL_IV);
		memcpy(sealed, sqlite3_column_blob(s->get, 1), n);
		*len = n;
		rc = 0;
	}
	sqlite3_reset(s->get);
	return rc;
}

static int sq_put(struct cmp_db *b, const char *tmpl, const unsigned char iv[CA_SEAL_IV], const unsigned char *sealed,
		  size_t len, time_t created)
{
	struct sq *s = (struct sq *)b;
	int rc = 0;

	sqlite3_reset(s->put);
	sqlite3_bind_text(s->put, 1, tmpl, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s->put, 2, iv, CA_SEAL_IV, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s->put, 3, sealed, (int)len, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s->put, 4, (long long)created);
	if (sqlite3_step(s->put) != SQLITE_DONE)
		rc = fail(s, "storing the sealed CMP secret");
	sqlite3_reset(s->put);
	/* on disk before it is printed: a secret handed out but lost would lock its clients out */
	if (!rc && sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_FULL, NULL, NULL) != SQLITE_OK)
		rc = fail(s, "checkpoint");
	return rc;
}

static int sq_del(struct cmp_db *b, const char *tmpl, bool *removed)
{
	struct sq *s = (struct sq *)b;
	int rc = 0;

	sqlite3_reset(s->del);
	sqlite3_bind_text(s->del, 1, tmpl, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s->del) != SQLITE_DONE)
		rc = fail(s, "removing the CMP secret");
	else
		*removed = sqlite3_changes(s->db) > 0;
	sqlite3_reset(s->del);
	return rc;
}

static int sq_seen(struct cmp_db *b, const unsigned char *id, size_t len, time_t expires)
{
	struct sq *s = (struct sq *)b;
	int rc;

	sqlite3_reset(s->seen);
	sqlite3_bind_blob(s->seen, 1, id, (int)len, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s->seen, 2, (long long)expires);
	rc = sqlite3_step(s->seen);
	sqlite3_reset(s->seen);
	if (rc != SQLITE_DONE)
		return fail(s, "the CMP replay record");
	return sqlite3_changes(s->db) > 0 ? 0 : 1;
}

static int sq_prune(struct cmp_db *b, time_t now)
{
	struct sq *s = (struct sq *)b;
	int rc = 0;

	sqlite3_reset(s->prune);
	sqlite3_bind_int64(s->prune, 1, (long long)now);
	if (sqlite3_step(s->prune) != SQLITE_DONE)
		rc = fail(s, "pruning the CMP replay record");
	sqlite3_reset(s->prune);
	return rc;
}

static int sq_state(struct cmp_db *b, long long id, char *status, size_t ssize, char *serial, size_t size)
{
	struct sq *s = (struct sq *)b;
	int step, rc;

	sqlite3_reset(s->state);
	sqlite3_bind_int64(s->state, 1, id);
	step = sqlite3_step(s->state);
	if (step == SQLITE_ROW) {
		snprintf(status, ssize, "%s", (const char *)sqlite3_column_text(s->state, 0));
		snprintf(serial, size, "%s", (const char *)sqlite3_column_text(s->state, 1));
		rc = 0;
	} else {
		rc = step == SQLITE_DONE ? 1 : fail(s, "reading a request's state");
	}
	sqlite3_reset(s->state);
	return rc;
}

static const struct cmp_db_ops sq_ops = {
	.close = sq_close,
	.get = sq_get,
	.put = sq_put,
	.del = sq_del,
	.seen = sq_seen,
	.prune = sq_prune,
	.state = sq_state,
};
