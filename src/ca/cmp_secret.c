/*
 * keyward-ca: CMP's shared secrets and replay record (cmp.h), in tables of
 * keyward-ca.db reached on a connection of their own.
 *
 * A template's secret is what a client proves it knows with PBM (RFC 4210
 * 5.1.3.1): the MAC's key is derived from the secret itself, so the CA
 * needs the plain secret each time it checks one, and a hash of it would
 * not do. It is kept sealed: AES-256-GCM under a secret key made on the
 * CA's token, not extractable and sensitive, so the database, a backup of
 * it or a config export holds only ciphertext, and unsealing takes the
 * HSM. The key is labelled "<CA file name>.cmp-seal" beside the CA key; a
 * move to another server moves it with the CA key (or the secrets are
 * made again). The AEAD's associated data binds each row to its template
 * and to the CA's key, so a row copied to another template or another CA
 * does not unseal. Plain secrets live in buffers the caller wipes.
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
#include "ca/p11raw.h"

#define IV_LEN 12
#define TAG_LEN 16

struct cmp_store {
	sqlite3 *db;
	sqlite3_stmt *get, *put, *del, *seen, *prune, *state;
	struct ca_p11 p11; /* the token, for the seal key; opened when first needed */
	CK_OBJECT_HANDLE key;
	char key_fp[65]; /* the CA key's fingerprint: in the associated data */
	char label[CA_NAME_MAX + 16];
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
	ca_p11_close(&s->p11);
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
	char path[CA_PATH_MAX + 32], fname[CA_NAME_MAX + 1];
	struct cmp_store *s = calloc(1, sizeof *s);
	EVP_PKEY *pub;

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
	if (!(pub = ca_cert_public_key(c)))
		goto fail;
	if (ca_key_fingerprint(pub, s->key_fp)) {
		EVP_PKEY_free(pub);
		goto fail;
	}
	EVP_PKEY_free(pub);
	ca_file_name(c->name, fname, sizeof fname);
	snprintf(s->label, sizeof s->label, "%s.cmp-seal", fname);
	*out = s;
	return 0;
fail:
	cmp_store_close(s);
	return -1;
}

int cmp_store_token(struct ca *ca, struct cmp_store *s)
{
	return s->p11.open ? 0 : ca_open_key(ca) || ca_p11_open(ca_config(ca), &s->p11, NULL) ? -1 : 0;
}

/* The seal key, on the CA's token (logged in by the caller's ca_open_key), made if create and missing. */
static int seal_key(struct ca *ca, struct cmp_store *s, bool create)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG len = 32;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, s->label, strlen(s->label)}};
	CK_ATTRIBUTE make[] = {
		{CKA_CLASS, &cls, sizeof cls},	   {CKA_KEY_TYPE, &kt, sizeof kt},
		{CKA_VALUE_LEN, &len, sizeof len}, {CKA_TOKEN, &yes, sizeof yes},
		{CKA_PRIVATE, &yes, sizeof yes},   {CKA_SENSITIVE, &yes, sizeof yes},
		{CKA_EXTRACTABLE, &no, sizeof no}, {CKA_ENCRYPT, &yes, sizeof yes},
		{CKA_DECRYPT, &yes, sizeof yes},   {CKA_LABEL, s->label, strlen(s->label)},
	};
	CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0;
	CK_RV rv;

	if (s->key)
		return 0;
	if (cmp_store_token(ca, s))
		return -1;
	if ((rv = s->p11.f->C_FindObjectsInit(s->p11.s, find, 2)) != CKR_OK)
		return ca_p11_fail("C_FindObjectsInit", rv);
	rv = s->p11.f->C_FindObjects(s->p11.s, found, 2, &n);
	s->p11.f->C_FindObjectsFinal(s->p11.s);
	if (rv != CKR_OK)
		return ca_p11_fail("C_FindObjects", rv);
	if (n > 1)
		return ca_error(
			"the token holds two keys labelled %s: remove the one not made by keyward-ca cmp-secret",
			s->label);
	if (n == 1) {
		s->key = found[0];
		return 0;
	}
	if (!create)
		return ca_fail(CA_ERR_NOT_FOUND,
			       "no key %s on the token to unseal CMP secrets with (make a secret with keyward-ca "
			       "cmp-secret, or move the key here with the CA key)",
			       s->label);
	if ((rv = s->p11.f->C_GenerateKey(s->p11.s, &gen, make, sizeof make / sizeof make[0], &s->key)) != CKR_OK)
		return ca_p11_fail("C_GenerateKey (the CMP seal key, AES-256)", rv);
	return 0;
}

/* The associated data: what a sealed secret is for. */
static int aad_of(const struct cmp_store *s, const char *tmpl, unsigned char *out, size_t size)
{
	int n = snprintf((char *)out, size, "keyward-ca cmp secret v1|%s|%s", s->key_fp, tmpl);

	return n < 0 || (size_t)n >= size ? ca_usage_error("template name too long") : n;
}

/* One GCM operation on the token: encrypt (in n bytes, out n + TAG_LEN) or decrypt. */
static int gcm(struct cmp_store *s, bool encrypt, const unsigned char *iv, const unsigned char *aad, size_t aad_len,
	       const unsigned char *in, size_t n, unsigned char *out, size_t *out_len)
{
	CK_GCM_PARAMS g = {(unsigned char *)iv, IV_LEN, IV_LEN * 8, (unsigned char *)aad, aad_len, TAG_LEN * 8};
	CK_MECHANISM m = {CKM_AES_GCM, &g, sizeof g};
	CK_ULONG len = *out_len;
	CK_RV rv;

	rv = encrypt ? s->p11.f->C_EncryptInit(s->p11.s, &m, s->key) : s->p11.f->C_DecryptInit(s->p11.s, &m, s->key);
	if (rv != CKR_OK)
		return ca_p11_fail(encrypt ? "C_EncryptInit (AES-GCM)" : "C_DecryptInit (AES-GCM)", rv);
	rv = encrypt ? s->p11.f->C_Encrypt(s->p11.s, (unsigned char *)in, n, out, &len)
		     : s->p11.f->C_Decrypt(s->p11.s, (unsigned char *)in, n, out, &len);
	if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE)
		return ca_fail(CA_ERR_CONFLICT, "the sealed CMP secret does not unseal: it was altered, or sealed "
						"for another template or CA (make a new one with cmp-secret)");
	if (rv != CKR_OK)
		return ca_p11_fail(encrypt ? "C_Encrypt (AES-GCM)" : "C_Decrypt (AES-GCM)", rv);
	*out_len = len;
	return 0;
}

int cmp_secret_new(struct ca *ca, struct cmp_store *s, const char *tmpl, char *out, size_t size)
{
	unsigned char raw[24], iv[IV_LEN], aad[CA_NAME_MAX + 128], sealed[CMP_SECRET_MAX + TAG_LEN];
	size_t sealed_len = sizeof sealed, secret_len;
	int aad_len, rc = -1;

	if (!ca_template_named(ca, tmpl))
		return ca_fail(CA_ERR_NOT_FOUND, "no template \"%s\"", tmpl);
	if (size < CMP_SECRET_MAX + 1)
		return ca_usage_error("cmp_secret_new: buffer too small");
	if ((aad_len = aad_of(s, tmpl, aad, sizeof aad)) < 0)
		return -1;
	/* 192 random bits, printable without quoting: base64url, unpadded (32 characters) */
	if (RAND_bytes(raw, sizeof raw) != 1 || RAND_bytes(iv, sizeof iv) != 1)
		return ca_error("no random bytes");
	EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
	OPENSSL_cleanse(raw, sizeof raw);
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	secret_len = strlen(out);
	if (ca_check_active(ca, "makes CMP secrets") || seal_key(ca, s, true) ||
	    gcm(s, true, iv, aad, (size_t)aad_len, (unsigned char *)out, secret_len, sealed, &sealed_len))
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
			s->label) ||
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
	unsigned char iv[IV_LEN], aad[CA_NAME_MAX + 128], sealed[CMP_SECRET_MAX + TAG_LEN];
	size_t sealed_len, n = CMP_SECRET_MAX;
	int aad_len, step, rc = -1;

	*len = 0;
	if ((aad_len = aad_of(s, tmpl, aad, sizeof aad)) < 0)
		return -1;
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
	if (sqlite3_column_bytes(s->get, 0) != IV_LEN || sealed_len <= TAG_LEN || sealed_len > sizeof sealed) {
		rc = ca_fail(CA_ERR_CONFLICT, "the sealed CMP secret of template %s is damaged", tmpl);
		goto out;
	}
	memcpy(iv, sqlite3_column_blob(s->get, 0), IV_LEN);
	memcpy(sealed, sqlite3_column_blob(s->get, 1), sealed_len);
	sqlite3_reset(s->get);
	if (seal_key(ca, s, false) || gcm(s, false, iv, aad, (size_t)aad_len, sealed, sealed_len, secret, &n))
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
