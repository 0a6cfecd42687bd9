/*
 * keyward-ca: CMP's shared secrets and replay record (cmp.h), in tables of
 * the CA's database (cmp_store.h: keyward-ca.db, or the PostgreSQL one of
 * ca.conf's database =, shared by every serve on it) reached on a
 * connection of their own.
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

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ca/cmp.h"
#include "ca/cmp_store.h"
#include "ca/seal.h"

struct cmp_store {
	struct cmp_db *db;
	struct ca_seal seal;
	long long inserts;
};

void cmp_store_close(struct cmp_store *s)
{
	if (!s)
		return;
	if (s->db)
		s->db->ops->close(s->db);
	ca_seal_cleanup(&s->seal);
	free(s);
}

int cmp_store_open(struct ca *ca, struct cmp_store **out)
{
	const struct ca_conf *c = ca_config(ca);
	char path[CA_PATH_MAX + 32];
	struct cmp_store *s = calloc(1, sizeof *s);
	int rc;

	*out = NULL;
	if (!s)
		return ca_error("out of memory");
	if (ca_db_is_sqlite(c)) {
		ca_path(c, "keyward-ca.db", path, sizeof path);
		rc = cmp_db_sqlite_open(path, &s->db);
	} else {
		rc = cmp_db_pg_open(c->database, &s->db);
	}
	if (rc || ca_seal_init(ca, &s->seal)) {
		cmp_store_close(s);
		return -1;
	}
	*out = s;
	return 0;
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
	/* durable before it is printed: a secret handed out but lost would lock its clients out */
	if (s->db->ops->put(s->db, tmpl, iv, sealed, sealed_len, time(NULL)))
		goto out;
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
	if (rc)
		OPENSSL_cleanse(out, size);
	return rc;
}

int cmp_secret_remove(struct ca *ca, struct cmp_store *s, const char *tmpl, bool *removed)
{
	*removed = false;
	if (s->db->ops->del(s->db, tmpl, removed))
		return -1;
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
	unsigned char iv[CA_SEAL_IV], sealed[CMP_SEALED_MAX];
	size_t sealed_len = 0, n = CMP_SECRET_MAX;
	int rc;

	*len = 0;
	rc = s->db->ops->get(s->db, tmpl, iv, sealed, &sealed_len);
	if (rc) {
		if (rc == 1)
			rc = ca_fail(CA_ERR_NOT_FOUND,
				     "template %s has no CMP secret (keyward-ca cmp-secret %s makes one)", tmpl, tmpl);
		goto out;
	}
	rc = -1;
	if (ca_unseal(ca, &s->seal, &kind, tmpl, iv, sealed, sealed_len, secret, &n))
		goto out;
	*len = n;
	rc = 0;
out:
	if (rc)
		OPENSSL_cleanse(secret, CMP_SECRET_MAX);
	return rc;
}

int cmp_seen(struct cmp_store *s, const unsigned char *id, size_t len, time_t expires, time_t now)
{
	/* old rows go now and then, not on every message */
	if (++s->inserts % 256 == 1 && s->db->ops->prune(s->db, now))
		return -1;
	return s->db->ops->seen(s->db, id, len, expires);
}

int cmp_request_state(struct cmp_store *s, pthread_mutex_t *lock, long long id, char *status, size_t ssize,
		      char *serial, size_t size)
{
	int rc;

	pthread_mutex_lock(lock);
	rc = s->db->ops->state(s->db, id, status, ssize, serial, size);
	pthread_mutex_unlock(lock);
	return rc == 1 ? ca_fail(CA_ERR_NOT_FOUND, "no request %lld", id) : rc;
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
