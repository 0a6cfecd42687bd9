/*
 * keyward-ca: CMP's shared secrets and replay record (cmp.h), in tables of
 * keyward-ca.db reached on a connection of their own.
 *
 * A template's secret is what a client proves it knows with PBM (RFC 4210
 * 5.1.3.1): the MAC's key is derived from the secret itself, so the CA
 * needs the plain secret each time it checks one, and a hash of it would
 * not do. It is kept sealed by the CA's token (seal.c), its associated
 * data binding it to its template and to the CA's key.
 *
 * The replay record holds each transactionID that began a transaction,
 * until its message could no longer be taken for fresh (cmp.c checks the
 * messageTime); a second message with one is a replay.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include "ca/cmp.h"
#include "ca/seal.h"

struct cmp_store {
	sqlite3 *db;
	sqlite3_stmt *get, *put, *del, *seen, *prune, *state;
	struct ca_seal seal;
	long long inserts;
};

static const char schema[] =
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

static int fail(struct cmp_store *s, const char *what)
{
	return ca_error("database: %s: %s", what, sqlite3_errmsg(s->db));
}

void cmp_store_close(struct cmp_store *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->get);
	sqlite3_finalize(s->put);
	sqlite3_finalize(s->del);
	sqlite3_finalize(s->seen);
	sqlite3_finalize(s->prune);
	sqlite3_finalize(s->state);
	sqlite3_close(s->db);
	ca_seal_cleanup(&s->seal);
	free(s);
}

int cmp_store_open(struct ca *ca, struct cmp_store **out)
{
	static const struct {
		size_t off;
		const char *sql;
	} stmts[] = {
		{offsetof(struct cmp_store, get), "SELECT iv, sealed FROM cmp_secrets WHERE template = ?"},
		{offsetof(struct cmp_store, put), "INSERT OR REPLACE INTO cmp_secrets VALUES (?, ?, ?, ?)"},
		{offsetof(struct cmp_store, del), "DELETE FROM cmp_secrets WHERE template = ?"},
		{offsetof(struct cmp_store, seen), "INSERT OR IGNORE INTO cmp_seen VALUES (?, ?)"},
		{offsetof(struct cmp_store, prune), "DELETE FROM cmp_seen WHERE expires < ?"},
		{offsetof(struct cmp_store, state), "SELECT status, serial FROM requests WHERE id = ?"},
	};
	const struct ca_conf *c = ca_config(ca);
	char path[CA_PATH_MAX + 32];
	struct cmp_store *s = calloc(1, sizeof *s);

	*out = NULL;
	/* its tables live in keyward-ca.db: not ported to PostgreSQL yet */
	if (!ca_db_is_sqlite(c)) {
		free(s);
		return ca_db_sqlite_only("CMP");
	}
	if (!s)
		return ca_error("out of memory");
	ca_path(c, "keyward-ca.db", path, sizeof path);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		ca_error("cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_handler(s->db, busy, NULL);
	/*
	 * NORMAL: the replay record need not survive a power loss (the
	 * messageTime window covers most of it); the secrets are written by
	 * cmp-secret, which checkpoints before it says a secret is made.
	 */
	if (sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		fail(s, path);
		goto fail;
	}
	for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++)
		if (sqlite3_prepare_v3(s->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
				       (sqlite3_stmt **)((char *)s + stmts[i].off), NULL) != SQLITE_OK) {
			fail(s, stmts[i].sql);
			goto fail;
		}
	if (ca_seal_init(ca, &s->seal))
		goto fail;
	*out = s;
	return 0;
fail:
	cmp_store_close(s);
	return -1;
}

int cmp_store_token(struct ca *ca, struct cmp_store *s)
{
	return ca_seal_token(ca, &s->seal);
}

/* What the seal's associated data calls a CMP secret: never changed, or the secrets made before do not unseal. */
static const struct ca_seal_kind kind = {"keyward-ca cmp secret v1", "CMP secret", "keyward-ca cmp-secret TEMPLATE"};

int cmp_secret_new(struct ca *ca, struct cmp_store *s, const char *tmpl, char *out, size_t size)
{
	unsigned char raw[24], iv[CA_SEAL_IV], sealed[CMP_SECRET_MAX + CA_SEAL_TAG];
	size_t sealed_len = sizeof sealed, secret_len;
	int rc = -1;

	if (!ca_template_named(ca, tmpl))
		return ca_fail(CA_ERR_NOT_FOUND, "no template \"%s\"", tmpl);
	if (size < CMP_SECRET_MAX + 1)
		return ca_usage_error("cmp_secret_new: buffer too small");
	/* 192 random bits, printable without quoting: base64url, unpadded (32 characters) */
	if (RAND_bytes(raw, sizeof raw) != 1)
		return ca_error("no random bytes");
	EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
	OPENSSL_cleanse(raw, sizeof raw);
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	secret_len = strlen(out);
	if (ca_check_active(ca, "makes CMP secrets") ||
	    ca_seal(ca, &s->seal, &kind, tmpl, (unsigned char *)out, secret_len, iv, sealed, &sealed_len))
		goto out;
	sqlite3_reset(s->put);
	sqlite3_bind_text(s->put, 1, tmpl, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s->put, 2, iv, sizeof iv, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s->put, 3, sealed, (int)sealed_len, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s->put, 4, (long long)time(NULL));
	if (sqlite3_step(s->put) != SQLITE_DONE) {
		fail(s, "storing the sealed CMP secret");
		goto out;
	}
	/* on disk before it is printed: a secret handed out but lost would lock its clients out */
	if (sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_FULL, NULL, NULL) != SQLITE_OK) {
		fail(s, "checkpoint");
		goto out;
	}
	if (ca_db_begin(ca->db))
		goto out;
	if (ca_db_audit(ca->db, "cmp-secret", "new CMP shared secret for template %s (sealed under %s)", tmpl,
			s->seal.label) ||
	    ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		goto out;
	}
	rc = 0;
out:
	sqlite3_reset(s->put);
	if (rc)
		OPENSSL_cleanse(out, size);
	return rc;
}

int cmp_secret_remove(struct ca *ca, struct cmp_store *s, const char *tmpl, bool *removed)
{
	*removed = false;
	sqlite3_reset(s->del);
	sqlite3_bind_text(s->del, 1, tmpl, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s->del) != SQLITE_DONE) {
		sqlite3_reset(s->del);
		return fail(s, "removing the CMP secret");
	}
	*removed = sqlite3_changes(s->db) > 0;
	sqlite3_reset(s->del);
	if (!*removed)
		return 0;
	if (ca_db_begin(ca->db))
		return -1;
	if (ca_db_audit(ca->db, "cmp-secret", "CMP shared secret of template %s removed", tmpl) ||
	    ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		return -1;
	}
	return 0;
}

int cmp_secret_get(struct ca *ca, struct cmp_store *s, const char *tmpl, unsigned char *secret, size_t *len)
{
	unsigned char iv[CA_SEAL_IV], sealed[CMP_SECRET_MAX + CA_SEAL_TAG];
	size_t sealed_len, n = CMP_SECRET_MAX;
	int step, rc = -1;

	*len = 0;
	sqlite3_reset(s->get);
	sqlite3_bind_text(s->get, 1, tmpl, -1, SQLITE_TRANSIENT);
	step = sqlite3_step(s->get);
	if (step == SQLITE_DONE) {
		rc = ca_fail(CA_ERR_NOT_FOUND, "template %s has no CMP secret (keyward-ca cmp-secret %s makes one)",
			     tmpl, tmpl);
		goto out;
	}
	if (step != SQLITE_ROW) {
		fail(s, "reading the CMP secret");
		goto out;
	}
	sealed_len = (size_t)sqlite3_column_bytes(s->get, 1);
	if (sqlite3_column_bytes(s->get, 0) != CA_SEAL_IV || sealed_len <= CA_SEAL_TAG || sealed_len > sizeof sealed) {
		rc = ca_fail(CA_ERR_CONFLICT, "the sealed CMP secret of template %s is damaged", tmpl);
		goto out;
	}
	memcpy(iv, sqlite3_column_blob(s->get, 0), CA_SEAL_IV);
	memcpy(sealed, sqlite3_column_blob(s->get, 1), sealed_len);
	sqlite3_reset(s->get);
	if (ca_unseal(ca, &s->seal, &kind, tmpl, iv, sealed, sealed_len, secret, &n))
		goto out;
	*len = n;
	rc = 0;
out:
	sqlite3_reset(s->get);
	if (rc)
		OPENSSL_cleanse(secret, CMP_SECRET_MAX);
	return rc;
}

int cmp_seen(struct cmp_store *s, const unsigned char *id, size_t len, time_t expires, time_t now)
{
	int rc;

	/* old rows go now and then, not on every message */
	if (++s->inserts % 256 == 1) {
		sqlite3_reset(s->prune);
		sqlite3_bind_int64(s->prune, 1, (long long)now);
		if (sqlite3_step(s->prune) != SQLITE_DONE) {
			sqlite3_reset(s->prune);
			return fail(s, "pruning the CMP replay record");
		}
		sqlite3_reset(s->prune);
	}
	sqlite3_reset(s->seen);
	sqlite3_bind_blob(s->seen, 1, id, (int)len, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s->seen, 2, (long long)expires);
	rc = sqlite3_step(s->seen);
	sqlite3_reset(s->seen);
	if (rc != SQLITE_DONE)
		return fail(s, "the CMP replay record");
	return sqlite3_changes(s->db) > 0 ? 0 : 1;
}

int cmp_request_state(struct cmp_store *s, pthread_mutex_t *lock, long long id, char *status, size_t ssize,
		      char *serial, size_t size)
{
	int step, rc = -1;

	pthread_mutex_lock(lock);
	sqlite3_reset(s->state);
	sqlite3_bind_int64(s->state, 1, id);
	step = sqlite3_step(s->state);
	if (step == SQLITE_ROW) {
		snprintf(status, ssize, "%s", (const char *)sqlite3_column_text(s->state, 0));
		snprintf(serial, size, "%s", (const char *)sqlite3_column_text(s->state, 1));
		rc = 0;
	} else if (step == SQLITE_DONE) {
		rc = ca_fail(CA_ERR_NOT_FOUND, "no request %lld", id);
	} else {
		fail(s, "reading a request's state");
	}
	sqlite3_reset(s->state);
	pthread_mutex_unlock(lock);
	return rc;
}

int ca_cmp_secret_new(struct ca *ca, const char *tmpl, char *out, size_t size)
{
	struct cmp_store *s;
	int rc;

	if (cmp_store_open(ca, &s))
		return -1;
	rc = cmp_secret_new(ca, s, tmpl, out, size);
	cmp_store_close(s);
	return rc;
}

int ca_cmp_secret_remove(struct ca *ca, const char *tmpl, bool *removed)
{
	struct cmp_store *s;
	int rc;

	*removed = false;
	if (cmp_store_open(ca, &s))
		return -1;
	rc = cmp_secret_remove(ca, s, tmpl, removed);
	cmp_store_close(s);
	return rc;
}
