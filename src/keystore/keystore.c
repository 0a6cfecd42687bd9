/*
 * The keystore's policy, independent of the backend: the master key and
 * its unlock methods, sealing of private keys with the associated data
 * that binds every policy field, the attribute rules (one-way extractable
 * and modifiable, owner/name changes only while modifiable), partitions,
 * enrollment and the hash-chained audit log.
 *
 * One mutex guards the backend connection and the master key. Every
 * mutation runs as one backend transaction, rolled back on any error, so
 * a failed call leaves the store as it was.
 */
#include "keystore/keystore.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "keystore/backend.h"
#include "keystore/backup.h"
#include "keystore/master.h"
#include "keystore/seal.h"

#define AAD_VERSION 1
#define AAD_MAX 256
#define AUDIT_FIELD_MAX 65536
#define SUBJECT_MAX 1024
#define LIST_LIMIT_MAX 1000

static const char MK_AAD[] = "keyward master key v1";
static const char CHECK_AAD[] = "keyward master key check v1";
static const char CHECK_TEXT[] = "keyward: this is the master key";

struct kw_keystore {
	pthread_mutex_t mu;
	struct kw_backend *b;
	unsigned char *mk; /* secure heap; NULL while locked */
	char method[32];   /* "passphrase", "shamir 2-of-3", "dev", "" */
};

/* ---- small helpers ---- */

void kw_object_row_cleanup(struct kw_object_row *row)
{
	if (!row)
		return;
	free(row->value);
	row->value = NULL;
	row->value_len = 0;
}

void kw_object_rows_free(struct kw_object_row *rows, size_t n)
{
	if (!rows)
		return;
	for (size_t i = 0; i < n; i++)
		kw_object_row_cleanup(&rows[i]);
	free(rows);
}

void kw_sealed_cleanup(struct kw_sealed *s)
{
	if (!s)
		return;
	free(s->spki);
	free(s->wrapped_dek);
	free(s->sealed);
	memset(s, 0, sizeof *s);
}

static void lock(struct kw_keystore *ks)
{
	pthread_mutex_lock(&ks->mu);
}

static void unlock(struct kw_keystore *ks)
{
	pthread_mutex_unlock(&ks->mu);
}

static int64_t now(void)
{
	return (int64_t)time(NULL);
}

static kw_rv finish(struct kw_backend *b, kw_rv rv)
{
	if (rv)
		b->ops->rollback(b);
	else
		rv = b->ops->commit(b);
	return rv;
}

static void part_name_locked(struct kw_keystore *ks, uint64_t pid, char name[KW_PARTITION_NAME_MAX + 1])
{
	struct kw_partition_info info;
	char saved[1024];

	/* keep the caller's message: this lookup only decorates it */
	snprintf(saved, sizeof saved, "%s", kw_last_error());
	if (ks->b->ops->partition_get(ks->b, NULL, pid, &info, NULL, NULL) == KW_OK)
		snprintf(name, KW_PARTITION_NAME_MAX + 1, "%s", info.name);
	else
		snprintf(name, KW_PARTITION_NAME_MAX + 1, "#%" PRIu64, pid);
	kw_error_set(KW_OK, "%s", saved);
}

static kw_rv check_text(const char *what, const char *s, size_t max, bool forbid_double_underscore)
{
	size_t len;

	if (!s || !*s)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: the %s is empty", what);
	len = strlen(s);
	if (len > max)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: the %s is %zu characters long, the maximum is %zu", what,
				    len, max);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c > 0x7e)
			return kw_error_set(KW_ERR_ARGUMENTS,
					    "store: the %s \"%.*s...\" has a non-printable character at position %zu",
					    what, (int)(i < 40 ? i : 40), s, i + 1);
	}
	if (forbid_double_underscore && strstr(s, "__"))
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "store: the %s \"%s\" contains \"__\", which separates owner and name", what, s);
	return KW_OK;
}

static kw_rv check_owner(const char *owner)
{
	return check_text("owner", owner, KW_OWNER_MAX, true);
}

static kw_rv check_name(const char *name)
{
	return check_text("object name", name, KW_NAME_MAX, false);
}

static kw_rv check_partition_name(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	if (len < 1 || len > KW_PARTITION_NAME_MAX)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: a partition name has 1 to %d characters",
				    KW_PARTITION_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return kw_error_set(KW_ERR_ARGUMENTS,
					    "store: partition name \"%s\": only letters, digits, '.', '_' and '-' are allowed",
					    name);
	}
	return KW_OK;
}

static kw_rv random_id(uint64_t *out)
{
	uint64_t v = 0;

	do {
		if (RAND_bytes((unsigned char *)&v, sizeof v) != 1)
			return kw_error_set(KW_ERR_CRYPTO, "store: no random bytes for an object id");
		v &= INT64_MAX;
	} while (v == 0);
	*out = v;
	return KW_OK;
}

/* ---- keys ---- */

static kw_rv describe_key(EVP_PKEY *pkey, enum kw_key_type *type, unsigned *bits, char curve[KW_CURVE_MAX])
{
	char group[64] = "";
	size_t glen = 0;

	curve[0] = '\0';
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		*type = KW_KEY_RSA;
		*bits = (unsigned)EVP_PKEY_get_bits(pkey);
		return KW_OK;
	case EVP_PKEY_EC:
		*type = KW_KEY_EC;
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen) != 1)
			return kw_error_set(KW_ERR_KEY_TYPE, "store: EC key without a named curve");
		if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) {
			snprintf(curve, KW_CURVE_MAX, "P-256");
			*bits = 256;
		} else if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0) {
			snprintf(curve, KW_CURVE_MAX, "P-384");
			*bits = 384;
		} else if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0) {
			snprintf(curve, KW_CURVE_MAX, "P-521");
			*bits = 521;
		} else {
			return kw_error_set(KW_ERR_KEY_TYPE, "store: EC curve %s is not supported", group);
		}
		return KW_OK;
	case EVP_PKEY_ED25519:
		*type = KW_KEY_ED25519;
		*bits = 256;
		snprintf(curve, KW_CURVE_MAX, "Ed25519");
		return KW_OK;
	default:
		return kw_error_set(KW_ERR_KEY_TYPE, "store: key type %s is not supported",
				    EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "(unknown)");
	}
}

static kw_rv spki_der(EVP_PKEY *pkey, unsigned char **out, size_t *len)
{
	unsigned char *buf = NULL;
	int n = i2d_PUBKEY(pkey, &buf);

	if (n <= 0)
		return kw_error_set(KW_ERR_CRYPTO, "store: cannot encode the public key");
	*out = malloc((size_t)n);
	if (!*out) {
		OPENSSL_free(buf);
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
	}
	memcpy(*out, buf, (size_t)n);
	OPENSSL_free(buf);
	*len = (size_t)n;
	return KW_OK;
}

/* PKCS#8 DER of the private key in a malloc'd buffer the caller wipes. */
static kw_rv pkcs8_der(EVP_PKEY *pkey, unsigned char **out, size_t *len)
{
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pkey);
	unsigned char *buf = NULL, *p;
	int n;

	*out = NULL;
	if (!p8)
		return kw_error_set(KW_ERR_KEY_TYPE, "store: the key has no private half to store");
	n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
	if (n > 0)
		buf = malloc((size_t)n);
	if (n <= 0 || !buf) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		return n <= 0 ? kw_error_set(KW_ERR_CRYPTO, "store: cannot encode the private key")
			      : kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
	}
	p = buf;
	if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != n) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		OPENSSL_cleanse(buf, (size_t)n);
		free(buf);
		return kw_error_set(KW_ERR_CRYPTO, "store: cannot encode the private key");
	}
	PKCS8_PRIV_KEY_INFO_free(p8); /* its free callback wipes the key octets */
	*out = buf;
	*len = (size_t)n;
	return KW_OK;
}

/* ---- associated data ---- */

struct enc {
	unsigned char *p;
	size_t len, cap;
	bool overflow;
};

static void enc_bytes(struct enc *e, const void *data, size_t n)
{
	unsigned char l[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
			      (unsigned char)n};

	if (e->overflow || e->cap - e->len < 4 + n) {
		e->overflow = true;
		return;
	}
	memcpy(e->p + e->len, l, 4);
	memcpy(e->p + e->len + 4, data, n);
	e->len += 4 + n;
}

static void enc_u64(struct enc *e, uint64_t v)
{
	unsigned char b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (56 - 8 * i));
	enc_bytes(e, b, 8);
}

static void enc_u32(struct enc *e, uint32_t v)
{
	unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
			      (unsigned char)v};

	enc_bytes(e, b, 4);
}

static void enc_bool(struct enc *e, bool v)
{
	unsigned char b = v ? 1 : 0;

	enc_bytes(e, &b, 1);
}

/*
 * version byte, then each field as a 4-byte big-endian length and its
 * bytes: partition, id, class, key type, bits, curve, extractable,
 * modifiable, sensitive, never_extractable, always_sensitive, usages,
 * SHA-256(SPKI). Owner and name are deliberately not bound: they are a
 * namespace and change while the key is modifiable; nor is the CKA_ID, an
 * identifier like the name. A secret key has no public key: its SPKI is
 * taken as empty, so SHA-256("") is bound in its place (its class, bound
 * too, keeps the two kinds of row apart).
 */
static kw_rv aad_build(const struct kw_object_row *r, const unsigned char *spki, size_t spki_len,
		       unsigned char out[AAD_MAX], size_t *len)
{
	unsigned char h[SHA256_DIGEST_LENGTH];
	struct enc e = {out, 1, AAD_MAX, false};

	out[0] = AAD_VERSION;
	SHA256(spki ? spki : (const unsigned char *)"", spki ? spki_len : 0, h);
	enc_u64(&e, r->partition_id);
	enc_u64(&e, r->id);
	enc_u32(&e, (uint32_t)r->cls);
	enc_u32(&e, (uint32_t)r->key_type);
	enc_u32(&e, r->bits);
	enc_bytes(&e, r->curve, strnlen(r->curve, KW_CURVE_MAX));
	enc_bool(&e, r->extractable);
	enc_bool(&e, r->modifiable);
	enc_bool(&e, r->sensitive);
	enc_bool(&e, r->never_extractable);
	enc_bool(&e, r->always_sensitive);
	enc_u32(&e, r->usages);
	enc_bytes(&e, h, sizeof h);
	if (e.overflow)
		return kw_error_set(KW_ERR_GENERAL, "store: associated data too long");
	*len = e.len;
	return KW_OK;
}

/*
 * Seals key bytes (a private key's PKCS#8 DER, a secret key's raw bytes)
 * under the row's associated data; spki NULL for a secret key.
 */
static kw_rv seal_bytes_locked(struct kw_keystore *ks, const struct kw_object_row *r, const unsigned char *key,
			       size_t key_len, const unsigned char *spki, size_t spki_len, struct kw_sealed *out)
{
	unsigned char aad[AAD_MAX];
	size_t aad_len;
	kw_rv rv;

	memset(out, 0, sizeof *out);
	rv = aad_build(r, spki, spki_len, aad, &aad_len);
	if (rv)
		return rv;
	if (spki) {
		out->spki = malloc(spki_len);
		if (!out->spki)
			return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
		memcpy(out->spki, spki, spki_len);
		out->spki_len = spki_len;
	}
	rv = kw_seal_key(ks->mk, aad, aad_len, key, key_len, out);
	if (rv)
		kw_sealed_cleanup(out);
	return rv;
}

static kw_rv seal_row_locked(struct kw_keystore *ks, const struct kw_object_row *r, EVP_PKEY *pkey,
			     const unsigned char *spki, size_t spki_len, struct kw_sealed *out)
{
	unsigned char *der = NULL;
	size_t der_len = 0;
	kw_rv rv;

	memset(out, 0, sizeof *out);
	rv = pkcs8_der(pkey, &der, &der_len);
	if (rv)
		return rv;
	rv = seal_bytes_locked(ks, r, der, der_len, spki, spki_len, out);
	OPENSSL_cleanse(der, der_len);
	free(der);
	return rv;
}

static kw_rv tampered_locked(struct kw_keystore *ks, const struct kw_object_row *r, const char *why)
{
	char pname[KW_PARTITION_NAME_MAX + 1];

	part_name_locked(ks, r->partition_id, pname);
	kw_log(KW_LOG_ERROR, "store: object 0x%" PRIx64 " of partition '%s' failed authentication: %s", r->id, pname,
	       why);
	return kw_error_set(KW_ERR_TAMPERED, "store: object 0x%" PRIx64 " of partition '%s' failed authentication: %s",
			    r->id, pname, why);
}

/*
 * Unseals a private-key row: both GCM layers under the row's associated
 * data, then the key's public half against the stored SPKI and the pair's
 * public row.
 */
static kw_rv unseal_row_locked(struct kw_keystore *ks, const struct kw_object_row *r, const struct kw_sealed *s,
			       EVP_PKEY **out)
{
	unsigned char aad[AAD_MAX], *der = NULL, *spki = NULL;
	const unsigned char *p;
	size_t aad_len, der_len = 0, spki_len = 0;
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	EVP_PKEY *pkey = NULL;
	struct kw_object_row pub;
	kw_rv rv;

	*out = NULL;
	memset(&pub, 0, sizeof pub);
	if (!s->spki || !s->sealed || !s->wrapped_dek)
		return tampered_locked(ks, r, "the sealed key material is missing");
	rv = aad_build(r, s->spki, s->spki_len, aad, &aad_len);
	if (rv)
		return rv;
	rv = kw_unseal_key(ks->mk, aad, aad_len, s, &der, &der_len);
	if (rv == KW_ERR_TAMPERED)
		return tampered_locked(ks, r, "the row was modified outside keywardd");
	if (rv)
		return rv;
	p = der;
	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der_len);
	if (p8)
		pkey = EVP_PKCS82PKEY(p8);
	PKCS8_PRIV_KEY_INFO_free(p8);
	OPENSSL_cleanse(der, der_len);
	free(der);
	if (!pkey)
		return tampered_locked(ks, r, "the sealed private key does not decode");
	rv = spki_der(pkey, &spki, &spki_len);
	if (rv)
		goto out;
	if (spki_len != s->spki_len || CRYPTO_memcmp(spki, s->spki, spki_len) != 0) {
		rv = tampered_locked(ks, r, "the private key does not match its stored public key");
		goto out;
	}
	if (r->pair_id) {
		rv = ks->b->ops->object_get(ks->b, r->partition_id, r->pair_id, &pub, NULL);
		if (rv == KW_ERR_NOT_FOUND) {
			rv = tampered_locked(ks, r, "its public half is missing (deleted outside keywardd)");
			goto out;
		}
		if (rv)
			goto out;
		if (pub.cls != KW_CLASS_PUBLIC_KEY || pub.pair_id != r->id || pub.key_type != r->key_type ||
		    pub.bits != r->bits || strcmp(pub.curve, r->curve) != 0 || pub.value_len != spki_len ||
		    CRYPTO_memcmp(pub.value, spki, spki_len) != 0) {
			rv = tampered_locked(ks, r, "its public half does not match the private key");
			goto out;
		}
	}
	*out = pkey;
	pkey = NULL;
out:
	kw_object_row_cleanup(&pub);
	free(spki);
	EVP_PKEY_free(pkey);
	return rv;
}

/* Unseals a secret-key row: its bytes in *key (malloc'd; the caller wipes and frees). */
static kw_rv unseal_secret_locked(struct kw_keystore *ks, const struct kw_object_row *r, const struct kw_sealed *s,
				  unsigned char **key, size_t *key_len)
{
	unsigned char aad[AAD_MAX], *bytes = NULL;
	size_t aad_len, len = 0;
	kw_rv rv;

	*key = NULL;
	*key_len = 0;
	if (!s->sealed || !s->wrapped_dek)
		return tampered_locked(ks, r, "the sealed key material is missing");
	rv = aad_build(r, NULL, 0, aad, &aad_len);
	if (rv)
		return rv;
	rv = kw_unseal_key(ks->mk, aad, aad_len, s, &bytes, &len);
	if (rv == KW_ERR_TAMPERED)
		return tampered_locked(ks, r, "the row was modified outside keywardd");
	if (rv)
		return rv;
	if (r->key_type != KW_KEY_AES || len * 8 != r->bits) {
		OPENSSL_cleanse(bytes, len);
		free(bytes);
		return tampered_locked(ks, r, "the sealed secret key does not have the length its row says");
	}
	*key = bytes;
	*key_len = len;
	return KW_OK;
}

static kw_rv need_unlocked(struct kw_keystore *ks)
{
	if (ks->mk)
		return KW_OK;
	if (!ks->method[0])
		return kw_error_set(KW_ERR_STORE_LOCKED, "store: the HSM is not initialized (keyward-admin init)");
	return kw_error_set(KW_ERR_STORE_LOCKED, "store: the HSM is locked (unlock it with keyward-admin unlock)");
}

/* ---- opening ---- */

static kw_rv meta_get_text(struct kw_backend *b, const char *key, char *buf, size_t cap)
{
	unsigned char *val = NULL;
	size_t len = 0;
	kw_rv rv = b->ops->meta_get(b, key, &val, &len);

	if (rv)
		return rv;
	snprintf(buf, cap, "%.*s", (int)(len < cap ? len : cap - 1), (const char *)val);
	free(val);
	return KW_OK;
}

static kw_rv meta_get_u64(struct kw_backend *b, const char *key, uint64_t *v)
{
	char buf[32], *end;
	kw_rv rv = meta_get_text(b, key, buf, sizeof buf);

	if (rv)
		return rv;
	*v = strtoull(buf, &end, 10);
	if (end == buf || *end)
		return kw_error_set(KW_ERR_STORE, "store: meta %s is not a number", key);
	return KW_OK;
}

static kw_rv meta_put_u64(struct kw_backend *b, const char *key, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof buf, "%" PRIu64, v);
	return b->ops->meta_put(b, key, buf, strlen(buf));
}

static kw_rv meta_put_text(struct kw_backend *b, const char *key, const char *v)
{
	return b->ops->meta_put(b, key, v, strlen(v));
}

static kw_rv load_method_locked(struct kw_keystore *ks)
{
	char m[32];
	uint64_t t = 0, n = 0;
	kw_rv rv = meta_get_text(ks->b, "mk.method", m, sizeof m);

	ks->method[0] = '\0';
	if (rv == KW_ERR_NOT_FOUND)
		return KW_OK;
	if (rv)
		return rv;
	if (strcmp(m, "shamir") == 0) {
		rv = meta_get_u64(ks->b, "mk.threshold", &t);
		if (!rv)
			rv = meta_get_u64(ks->b, "mk.shares", &n);
		if (rv == KW_ERR_NOT_FOUND)
			return kw_error_set(KW_ERR_STORE, "store: Shamir master key without threshold/shares in meta");
		if (rv)
			return rv;
		snprintf(ks->method, sizeof ks->method, "shamir %" PRIu64 "-of-%" PRIu64, t, n);
	} else {
		snprintf(ks->method, sizeof ks->method, "%s", m);
	}
	return KW_OK;
}

static kw_rv audit_key_locked(struct kw_keystore *ks, const char *event, const struct kw_object_row *r);
static kw_rv audit_change_locked(struct kw_keystore *ks, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

kw_rv kw_keystore_open(const char *url, uint64_t max_bytes, struct kw_keystore **out)
{
	struct kw_keystore *ks;
	const char *path = url;
	kw_rv rv;

	if (!url || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no store URL given");
	*out = NULL;
	if (strncmp(url, "sqlite:", 7) == 0) {
		path = url + 7;
		if (strncmp(path, "//", 2) == 0)
			path += 2;
	} else if (strncmp(url, "postgres", 8) == 0) {
		return kw_error_set(KW_ERR_CONFIG, "store %s: the PostgreSQL backend is not built yet", url);
	}
	if (!*path)
		return kw_error_set(KW_ERR_CONFIG, "store: empty path in store URL \"%s\"", url);
	ks = calloc(1, sizeof *ks);
	if (!ks)
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
	if (pthread_mutex_init(&ks->mu, NULL) != 0) {
		free(ks);
		return kw_error_set(KW_ERR_NO_MEMORY, "store: cannot create a mutex");
	}
	rv = kw_sqlite_open(path, max_bytes, &ks->b);
	if (!rv)
		rv = load_method_locked(ks);
	if (rv) {
		kw_keystore_free(ks);
		return rv;
	}
	*out = ks;
	return KW_OK;
}

static void wipe_mk_locked(struct kw_keystore *ks)
{
	if (ks->mk) {
		OPENSSL_secure_clear_free(ks->mk, KW_MASTER_KEY_LEN);
		ks->mk = NULL;
	}
}

void kw_keystore_free(struct kw_keystore *ks)
{
	if (!ks)
		return;
	wipe_mk_locked(ks);
	if (ks->b)
		ks->b->ops->close(ks->b);
	pthread_mutex_destroy(&ks->mu);
	free(ks);
}

/* ---- master key ---- */

bool kw_keystore_initialized(struct kw_keystore *ks)
{
	bool r;

	lock(ks);
	r = ks->method[0] != '\0';
	unlock(ks);
	return r;
}

bool kw_keystore_locked(struct kw_keystore *ks)
{
	bool r;

	lock(ks);
	r = ks->mk == NULL;
	unlock(ks);
	return r;
}

const char *kw_keystore_unlock_method(struct kw_keystore *ks)
{
	/* written only by init, which happens once per store */
	return ks->method;
}

static kw_rv set_mk_locked(struct kw_keystore *ks, const unsigned char key[KW_MASTER_KEY_LEN])
{
	if (!ks->mk) {
		ks->mk = OPENSSL_secure_malloc(KW_MASTER_KEY_LEN);
		if (!ks->mk)
			return kw_error_set(KW_ERR_NO_MEMORY, "store: out of secure memory for the master key");
	}
	memcpy(ks->mk, key, KW_MASTER_KEY_LEN);
	return KW_OK;
}

static kw_rv not_initialized_check_locked(struct kw_keystore *ks)
{
	if (ks->method[0])
		return kw_error_set(KW_ERR_ALREADY_INITIALIZED, "store: the HSM already has a master key (%s)",
				    ks->method);
	return KW_OK;
}

kw_rv kw_keystore_init_passphrase(struct kw_keystore *ks, const char *passphrase)
{
	unsigned char mk[KW_MASTER_KEY_LEN], kek[KW_MASTER_KEY_LEN], salt[KW_SALT_LEN];
	unsigned char *wrapped = NULL;
	size_t wrapped_len = 0;
	uint64_t n = kw_master_kdf_n();
	char params[64];
	kw_rv rv;

	if (!ks || !passphrase || !*passphrase)
		return kw_error_set(KW_ERR_ARGUMENTS, "init: the passphrase is empty");
	lock(ks);
	rv = not_initialized_check_locked(ks);
	if (rv)
		goto out;
	if (RAND_bytes(mk, sizeof mk) != 1 || RAND_bytes(salt, sizeof salt) != 1) {
		rv = kw_error_set(KW_ERR_CRYPTO, "init: no random bytes for the master key");
		goto out;
	}
	rv = kw_master_kdf(passphrase, salt, sizeof salt, n, KW_SCRYPT_R, KW_SCRYPT_P, kek);
	if (rv)
		goto out;
	rv = kw_gcm_seal(kek, (const unsigned char *)MK_AAD, sizeof MK_AAD - 1, mk, sizeof mk, &wrapped, &wrapped_len);
	if (rv)
		goto out;
	snprintf(params, sizeof params, "%" PRIu64 " %u %u", n, KW_SCRYPT_R, KW_SCRYPT_P);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = meta_put_text(ks->b, "mk.method", "passphrase");
	if (!rv)
		rv = ks->b->ops->meta_put(ks->b, "mk.salt", salt, sizeof salt);
	if (!rv)
		rv = meta_put_text(ks->b, "mk.scrypt", params);
	if (!rv)
		rv = ks->b->ops->meta_put(ks->b, "mk.wrapped", wrapped, wrapped_len);
	rv = finish(ks->b, rv);
	if (rv)
		goto out;
	snprintf(ks->method, sizeof ks->method, "passphrase");
	rv = set_mk_locked(ks, mk);
	kw_debug(KW_DEBUG_STORE, "store: master key created, sealed under a passphrase (scrypt N=%" PRIu64 ")", n);
out:
	unlock(ks);
	OPENSSL_cleanse(mk, sizeof mk);
	OPENSSL_cleanse(kek, sizeof kek);
	free(wrapped);
	return rv;
}

kw_rv kw_keystore_init_shamir(struct kw_keystore *ks, unsigned shares, unsigned threshold, char ***shares_out)
{
	unsigned char mk[KW_MASTER_KEY_LEN], *check = NULL;
	size_t check_len = 0;
	char **texts = NULL;
	kw_rv rv;

	if (!ks || !shares_out)
		return kw_error_set(KW_ERR_ARGUMENTS, "init: no place for the shares");
	*shares_out = NULL;
	lock(ks);
	rv = not_initialized_check_locked(ks);
	if (rv)
		goto out;
	if (RAND_bytes(mk, sizeof mk) != 1) {
		rv = kw_error_set(KW_ERR_CRYPTO, "init: no random bytes for the master key");
		goto out;
	}
	rv = kw_shamir_split(mk, shares, threshold, &texts);
	if (rv)
		goto out;
	rv = kw_gcm_seal(mk, (const unsigned char *)CHECK_AAD, sizeof CHECK_AAD - 1, (const unsigned char *)CHECK_TEXT,
			 sizeof CHECK_TEXT - 1, &check, &check_len);
	if (rv)
		goto out;
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = meta_put_text(ks->b, "mk.method", "shamir");
	if (!rv)
		rv = meta_put_u64(ks->b, "mk.threshold", threshold);
	if (!rv)
		rv = meta_put_u64(ks->b, "mk.shares", shares);
	if (!rv)
		rv = ks->b->ops->meta_put(ks->b, "mk.check", check, check_len);
	rv = finish(ks->b, rv);
	if (rv)
		goto out;
	snprintf(ks->method, sizeof ks->method, "shamir %u-of-%u", threshold, shares);
	rv = set_mk_locked(ks, mk);
	if (rv)
		goto out;
	*shares_out = texts;
	texts = NULL;
	kw_debug(KW_DEBUG_STORE, "store: master key created, split %u-of-%u", threshold, shares);
out:
	unlock(ks);
	if (texts)
		kw_keystore_shares_free(texts, shares);
	OPENSSL_cleanse(mk, sizeof mk);
	free(check);
	return rv;
}

void kw_keystore_shares_free(char **shares, unsigned n)
{
	if (!shares)
		return;
	for (unsigned i = 0; i < n; i++) {
		if (shares[i]) {
			OPENSSL_cleanse(shares[i], strlen(shares[i]));
			free(shares[i]);
		}
	}
	free(shares);
}

kw_rv kw_keystore_init_dev(struct kw_keystore *ks)
{
	unsigned char mk[KW_MASTER_KEY_LEN];
	kw_rv rv;

	if (!ks)
		return kw_error_set(KW_ERR_ARGUMENTS, "init: no store");
	lock(ks);
	rv = not_initialized_check_locked(ks);
	if (rv)
		goto out;
	if (RAND_bytes(mk, sizeof mk) != 1) {
		rv = kw_error_set(KW_ERR_CRYPTO, "init: no random bytes for the master key");
		goto out;
	}
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = finish(ks->b, meta_put_text(ks->b, "mk.method", "dev"));
	if (rv)
		goto out;
	snprintf(ks->method, sizeof ks->method, "dev");
	rv = set_mk_locked(ks, mk);
	kw_debug(KW_DEBUG_STORE, "store: development master key created (in memory only)");
out:
	unlock(ks);
	OPENSSL_cleanse(mk, sizeof mk);
	return rv;
}

static kw_rv method_check_locked(struct kw_keystore *ks, const char *want)
{
	if (!ks->method[0])
		return kw_error_set(KW_ERR_NOT_INITIALIZED, "unlock: the HSM is not initialized (keyward-admin init)");
	if (strcmp(ks->method, "dev") == 0)
		return kw_error_set(KW_ERR_AUTH,
				    "unlock: this store was created in development mode; its master key lived only "
				    "in memory and is gone, so the store cannot be unlocked (start with a fresh store)");
	if (strncmp(ks->method, want, strlen(want)) != 0)
		return kw_error_set(KW_ERR_ARGUMENTS, "unlock: this store is unlocked with %s, not with a %s",
				    ks->method, want);
	return KW_OK;
}

kw_rv kw_keystore_unlock_passphrase(struct kw_keystore *ks, const char *passphrase)
{
	unsigned char salt[KW_SALT_LEN], kek[KW_MASTER_KEY_LEN], *salt_v = NULL, *wrapped = NULL, *mk = NULL;
	size_t salt_len = 0, wrapped_len = 0, mk_len = 0;
	unsigned long long n = 0;
	unsigned r = 0, p = 0;
	char params[64];
	kw_rv rv;

	if (!ks || !passphrase)
		return kw_error_set(KW_ERR_ARGUMENTS, "unlock: no passphrase given");
	lock(ks);
	rv = method_check_locked(ks, "passphrase");
	if (!rv)
		rv = ks->b->ops->meta_get(ks->b, "mk.salt", &salt_v, &salt_len);
	if (!rv)
		rv = ks->b->ops->meta_get(ks->b, "mk.wrapped", &wrapped, &wrapped_len);
	if (!rv)
		rv = meta_get_text(ks->b, "mk.scrypt", params, sizeof params);
	unlock(ks);
	if (rv == KW_ERR_NOT_FOUND)
		rv = kw_error_set(KW_ERR_STORE, "unlock: the store's master-key record is incomplete");
	if (rv)
		goto out;
	if (salt_len != sizeof salt || sscanf(params, "%llu %u %u", &n, &r, &p) != 3) {
		rv = kw_error_set(KW_ERR_STORE, "unlock: the store's master-key record is damaged");
		goto out;
	}
	memcpy(salt, salt_v, sizeof salt);
	/* the KDF is slow on purpose: run it without holding the store */
	rv = kw_master_kdf(passphrase, salt, sizeof salt, n, r, p, kek);
	if (rv)
		goto out;
	rv = kw_gcm_open(kek, (const unsigned char *)MK_AAD, sizeof MK_AAD - 1, wrapped, wrapped_len, &mk, &mk_len);
	if (rv == KW_ERR_TAMPERED || (!rv && mk_len != KW_MASTER_KEY_LEN)) {
		rv = kw_error_set(KW_ERR_AUTH, "unlock: wrong passphrase");
		goto out;
	}
	if (rv)
		goto out;
	lock(ks);
	rv = set_mk_locked(ks, mk);
	unlock(ks);
	if (!rv)
		kw_debug(KW_DEBUG_STORE, "store: unlocked with the passphrase");
out:
	OPENSSL_cleanse(kek, sizeof kek);
	if (mk) {
		OPENSSL_cleanse(mk, mk_len);
		free(mk);
	}
	free(salt_v);
	free(wrapped);
	return rv;
}

kw_rv kw_keystore_unlock_shares(struct kw_keystore *ks, const char *const *shares, size_t count)
{
	unsigned char mk[KW_MASTER_KEY_LEN], *check = NULL, *text = NULL;
	size_t check_len = 0, text_len = 0;
	uint64_t threshold = 0, total = 0;
	kw_rv rv;

	if (!ks || (!shares && count))
		return kw_error_set(KW_ERR_ARGUMENTS, "unlock: no shares given");
	lock(ks);
	rv = method_check_locked(ks, "shamir");
	if (!rv)
		rv = meta_get_u64(ks->b, "mk.threshold", &threshold);
	if (!rv)
		rv = meta_get_u64(ks->b, "mk.shares", &total);
	if (!rv)
		rv = ks->b->ops->meta_get(ks->b, "mk.check", &check, &check_len);
	if (rv == KW_ERR_NOT_FOUND)
		rv = kw_error_set(KW_ERR_STORE, "unlock: the store's master-key record is incomplete");
	if (rv)
		goto out;
	if (threshold < 2 || threshold > total || total > 255) {
		rv = kw_error_set(KW_ERR_STORE, "unlock: the store's Shamir parameters are damaged");
		goto out;
	}
	rv = kw_shamir_combine(shares, count, (unsigned)threshold, (unsigned)total, mk);
	if (rv)
		goto out;
	rv = kw_gcm_open(mk, (const unsigned char *)CHECK_AAD, sizeof CHECK_AAD - 1, check, check_len, &text,
			 &text_len);
	if (rv == KW_ERR_TAMPERED) {
		rv = kw_error_set(KW_ERR_AUTH,
				  "unlock: the %zu shares do not recombine to this store's master key "
				  "(a wrong or corrupted share, or shares of another store)",
				  count);
		goto out;
	}
	if (rv)
		goto out;
	rv = set_mk_locked(ks, mk);
	if (!rv)
		kw_debug(KW_DEBUG_STORE, "store: unlocked with %zu shares", count);
out:
	unlock(ks);
	OPENSSL_cleanse(mk, sizeof mk);
	free(text);
	free(check);
	return rv;
}

void kw_keystore_lock(struct kw_keystore *ks)
{
	if (!ks)
		return;
	lock(ks);
	wipe_mk_locked(ks);
	unlock(ks);
	kw_debug(KW_DEBUG_STORE, "store: locked");
}

/* ---- partitions ---- */

kw_rv kw_keystore_partition_create(struct kw_keystore *ks, const char *name,
				   const unsigned char setup_hash[KW_SETUP_HASH_LEN], uint64_t *id_out)
{
	uint64_t id = 0;
	kw_rv rv;

	rv = check_partition_name(name);
	if (rv)
		return rv;
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (!rv) {
		rv = ks->b->ops->partition_insert(ks->b, name, setup_hash, now(), &id);
		if (rv == KW_ERR_EXISTS)
			kw_error_set(rv, "store: partition '%s' already exists", name);
		rv = finish(ks->b, rv);
	}
	unlock(ks);
	if (!rv && id_out)
		*id_out = id;
	return rv;
}

kw_rv kw_keystore_partition_get(struct kw_keystore *ks, const char *name, struct kw_partition_info *out)
{
	kw_rv rv;

	if (!name || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no partition name given");
	lock(ks);
	rv = ks->b->ops->partition_get(ks->b, name, 0, out, NULL, NULL);
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_partition_name(struct kw_keystore *ks, uint64_t id, char name[KW_PARTITION_NAME_MAX + 1])
{
	struct kw_partition_info info;
	kw_rv rv;

	lock(ks);
	rv = ks->b->ops->partition_get(ks->b, NULL, id, &info, NULL, NULL);
	unlock(ks);
	if (!rv)
		snprintf(name, KW_PARTITION_NAME_MAX + 1, "%s", info.name);
	return rv;
}

kw_rv kw_keystore_partition_list(struct kw_keystore *ks, struct kw_partition_info **out, size_t *n)
{
	kw_rv rv;

	lock(ks);
	rv = ks->b->ops->partition_list(ks->b, out, n);
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_partition_set_setup(struct kw_keystore *ks, uint64_t id,
				      const unsigned char setup_hash[KW_SETUP_HASH_LEN])
{
	kw_rv rv;

	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (!rv)
		rv = finish(ks->b, ks->b->ops->partition_set_setup(ks->b, id, setup_hash));
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_partition_delete(struct kw_keystore *ks, const char *name, struct kw_partition_info *out)
{
	struct kw_partition_info info;
	kw_rv rv;

	if (!name)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no partition name given");
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (!rv) {
		rv = ks->b->ops->partition_get(ks->b, name, 0, &info, NULL, NULL);
		if (!rv)
			rv = ks->b->ops->partition_delete(ks->b, info.id);
		rv = finish(ks->b, rv);
	}
	unlock(ks);
	if (!rv && out)
		*out = info;
	return rv;
}

kw_rv kw_keystore_enroll(struct kw_keystore *ks, uint64_t partition_id,
			 const unsigned char setup_hash[KW_SETUP_HASH_LEN],
			 const unsigned char fingerprint[KW_FINGERPRINT_LEN], const char *subject)
{
	struct kw_partition_info info;
	unsigned char stored[KW_SETUP_HASH_LEN];
	bool has = false;
	kw_rv rv;

	if (!setup_hash || !fingerprint || !subject || strlen(subject) > SUBJECT_MAX)
		return kw_error_set(KW_ERR_ARGUMENTS, "enroll: setup password hash, fingerprint and subject are needed");
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = ks->b->ops->partition_get(ks->b, NULL, partition_id, &info, stored, &has);
	if (rv)
		goto done;
	if (!has) {
		rv = kw_error_set(KW_ERR_AUTH,
				  "enroll: partition '%s' has no pending setup password (already used? "
				  "set a new one with keyward-admin)",
				  info.name);
		goto done;
	}
	if (CRYPTO_memcmp(stored, setup_hash, KW_SETUP_HASH_LEN) != 0) {
		rv = kw_error_set(KW_ERR_AUTH, "enroll: wrong setup password for partition '%s'", info.name);
		goto done;
	}
	rv = ks->b->ops->partition_set_setup(ks->b, partition_id, NULL);
	if (rv)
		goto done;
	rv = ks->b->ops->credential_insert(ks->b, fingerprint, partition_id, subject, now());
	if (rv == KW_ERR_EXISTS)
		kw_error_set(rv, "enroll: this client certificate is already enrolled");
done:
	rv = finish(ks->b, rv);
out:
	unlock(ks);
	OPENSSL_cleanse(stored, sizeof stored);
	return rv;
}

kw_rv kw_keystore_credential_find(struct kw_keystore *ks, const unsigned char fingerprint[KW_FINGERPRINT_LEN],
				  uint64_t *partition_id)
{
	kw_rv rv;

	if (!fingerprint || !partition_id)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no fingerprint given");
	lock(ks);
	rv = ks->b->ops->credential_find(ks->b, fingerprint, partition_id);
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_credential_list(struct kw_keystore *ks, const char *partition, struct kw_credential_info **out,
				  size_t *n)
{
	kw_rv rv;

	if (!out || !n)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: credential list: nowhere to put it");
	lock(ks);
	rv = ks->b->ops->credential_list(ks->b, partition && partition[0] ? partition : NULL, out, n);
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_credential_revoke(struct kw_keystore *ks, const unsigned char fingerprint[KW_FINGERPRINT_LEN])
{
	kw_rv rv;

	if (!fingerprint)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no fingerprint given");
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (!rv)
		rv = finish(ks->b, ks->b->ops->credential_revoke(ks->b, fingerprint, now()));
	unlock(ks);
	return rv;
}

/* ---- objects ---- */

static kw_rv partition_exists_locked(struct kw_keystore *ks, uint64_t pid)
{
	struct kw_partition_info info;

	return ks->b->ops->partition_get(ks->b, NULL, pid, &info, NULL, NULL);
}

static bool is_key_class(enum kw_class cls)
{
	return cls == KW_CLASS_PRIVATE_KEY || cls == KW_CLASS_PUBLIC_KEY || cls == KW_CLASS_SECRET_KEY;
}

static bool is_sealed_class(enum kw_class cls)
{
	return cls == KW_CLASS_PRIVATE_KEY || cls == KW_CLASS_SECRET_KEY;
}

static kw_rv check_ckaid(const unsigned char *ckaid, size_t len)
{
	if (len > KW_CKAID_MAX)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "store: a CKA_ID is %zu bytes long, the maximum is %d", len,
				    KW_CKAID_MAX);
	if (len && !ckaid)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: CKA_ID length %zu without its bytes", len);
	return KW_OK;
}

kw_rv kw_keystore_default_ckaid(const unsigned char *spki, size_t spki_len, unsigned char out[KW_CKAID_DEFAULT_LEN])
{
	const unsigned char *p = spki, *bits = NULL;
	X509_PUBKEY *pub;
	int bits_len = 0;
	kw_rv rv = KW_OK;

	if (!spki || !spki_len || spki_len > LONG_MAX)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no public key for a CKA_ID");
	pub = d2i_X509_PUBKEY(NULL, &p, (long)spki_len);
	if (!pub || p != spki + spki_len || X509_PUBKEY_get0_param(NULL, &bits, &bits_len, NULL, pub) != 1 ||
	    !bits || bits_len <= 0)
		rv = kw_error_openssl(KW_ERR_CRYPTO, "store: the public key does not decode (for its CKA_ID)");
	else
		SHA1(bits, (size_t)bits_len, out);
	X509_PUBKEY_free(pub);
	return rv;
}

/*
 * Keys (private, public, secret) share one namespace per owner: EXISTS if
 * owner has a key named name other than skip1/skip2. Certificates and
 * data objects are no conflict. Inside a transaction.
 */
static kw_rv key_name_free_locked(struct kw_keystore *ks, uint64_t pid, const char *owner, const char *name,
				  uint64_t skip1, uint64_t skip2)
{
	struct kw_object_row *rows = NULL;
	char pname[KW_PARTITION_NAME_MAX + 1];
	size_t n = 0;
	kw_rv rv;

	rv = ks->b->ops->object_list(ks->b, pid, owner, name, KW_CLASS_ANY, 0, 0, &rows, &n);
	for (size_t i = 0; !rv && i < n; i++) {
		if (is_key_class(rows[i].cls) && rows[i].id != skip1 && rows[i].id != skip2) {
			part_name_locked(ks, pid, pname);
			rv = kw_error_set(KW_ERR_EXISTS,
					  "store: a key named \"%s\" already exists under owner %s in partition '%s'", name,
					  owner, pname);
		}
	}
	kw_object_rows_free(rows, n);
	return rv;
}

kw_rv kw_keystore_keypair_rows(const struct kw_keygen *spec, EVP_PKEY *pkey, struct kw_object_row *priv,
			       struct kw_object_row *pub)
{
	struct kw_object_row pr, pu;
	unsigned char *spki = NULL;
	size_t spki_len = 0;
	kw_rv rv;

	memset(&pr, 0, sizeof pr);
	if (!spec || !pkey || !priv || !pub)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: a key pair needs a spec, a key and output rows");
	memset(priv, 0, sizeof *priv);
	memset(pub, 0, sizeof *pub);
	rv = check_owner(spec->owner);
	if (!rv)
		rv = check_name(spec->name);
	if (!rv)
		rv = check_ckaid(spec->ckaid, spec->ckaid_len);
	if (!rv)
		rv = describe_key(pkey, &pr.key_type, &pr.bits, pr.curve);
	if (!rv)
		rv = spki_der(pkey, &spki, &spki_len);
	if (!rv && spec->ckaid_len) {
		memcpy(pr.ckaid, spec->ckaid, spec->ckaid_len);
		pr.ckaid_len = spec->ckaid_len;
	} else if (!rv) {
		rv = kw_keystore_default_ckaid(spki, spki_len, pr.ckaid);
		pr.ckaid_len = KW_CKAID_DEFAULT_LEN;
	}
	if (rv) {
		free(spki);
		return rv;
	}
	snprintf(pr.owner, sizeof pr.owner, "%s", spec->owner);
	snprintf(pr.name, sizeof pr.name, "%s", spec->name);
	pr.cls = KW_CLASS_PRIVATE_KEY;
	pr.sensitive = true;
	pr.extractable = spec->extractable;
	pr.modifiable = spec->modifiable;
	pr.never_extractable = !spec->extractable;
	pr.always_sensitive = true;
	pr.usages = spec->usages;
	pr.created = now();

	pu = (struct kw_object_row){.cls = KW_CLASS_PUBLIC_KEY, .key_type = pr.key_type, .bits = pr.bits,
				    .value = spki, .value_len = spki_len, .sensitive = false, .extractable = true,
				    .modifiable = spec->modifiable, .usages = spec->usages, .created = pr.created};
	memcpy(pu.owner, pr.owner, sizeof pu.owner);
	memcpy(pu.name, pr.name, sizeof pu.name);
	memcpy(pu.curve, pr.curve, sizeof pu.curve);
	memcpy(pu.ckaid, pr.ckaid, sizeof pu.ckaid);
	pu.ckaid_len = pr.ckaid_len;
	*priv = pr;
	*pub = pu;
	return KW_OK;
}

kw_rv kw_keystore_put_keypair(struct kw_keystore *ks, uint64_t partition_id, const struct kw_keygen *spec,
			      EVP_PKEY *pkey, struct kw_object_row *priv, struct kw_object_row *pub)
{
	struct kw_object_row pr, pu;
	struct kw_sealed sealed;
	unsigned char *spki = NULL;
	size_t spki_len = 0;
	char pname[KW_PARTITION_NAME_MAX + 1];
	kw_rv rv;

	memset(&pr, 0, sizeof pr);
	memset(&pu, 0, sizeof pu);
	memset(&sealed, 0, sizeof sealed);
	if (!ks || !spec || !pkey || !priv || !pub)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: put_keypair needs a spec, a key and output rows");
	memset(priv, 0, sizeof *priv);
	memset(pub, 0, sizeof *pub);
	rv = kw_keystore_keypair_rows(spec, pkey, &pr, &pu);
	if (rv)
		return rv;
	spki = pu.value; /* freed at out unless it is handed to *pub */
	spki_len = pu.value_len;

	lock(ks);
	rv = need_unlocked(ks);
	if (!rv)
		rv = partition_exists_locked(ks, partition_id);
	if (!rv)
		rv = random_id(&pr.id);
	if (!rv)
		do
			rv = random_id(&pu.id);
		while (!rv && pu.id == pr.id);
	if (rv)
		goto out;
	pr.partition_id = pu.partition_id = partition_id;
	pr.pair_id = pu.id;
	pu.pair_id = pr.id;

	rv = seal_row_locked(ks, &pr, pkey, spki, spki_len, &sealed);
	if (rv)
		goto out;
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = key_name_free_locked(ks, partition_id, pr.owner, pr.name, 0, 0);
	if (!rv)
		rv = ks->b->ops->object_insert(ks->b, &pu, NULL);
	if (!rv)
		rv = ks->b->ops->object_insert(ks->b, &pr, &sealed);
	if (rv == KW_ERR_EXISTS) {
		part_name_locked(ks, partition_id, pname);
		kw_error_set(rv, "store: a key named \"%s\" already exists under owner %s in partition '%s'", pr.name,
			     pr.owner, pname);
	}
	if (!rv)
		rv = audit_key_locked(ks, "key.generate", &pr);
	rv = finish(ks->b, rv);
	if (rv)
		goto out;
	*priv = pr;
	*pub = pu;
	spki = NULL; /* now pub->value */
	kw_debug(KW_DEBUG_STORE, "store: key pair 0x%" PRIx64 "/0x%" PRIx64 " \"%s\" stored under %s", pr.id, pu.id,
		 pr.name, pr.owner);
out:
	unlock(ks);
	kw_sealed_cleanup(&sealed);
	free(spki);
	return rv;
}

static kw_rv not_found_locked(struct kw_keystore *ks, uint64_t pid, uint64_t id)
{
	char pname[KW_PARTITION_NAME_MAX + 1];

	part_name_locked(ks, pid, pname);
	return kw_error_set(KW_ERR_NOT_FOUND, "store: no object 0x%" PRIx64 " in partition '%s'", id, pname);
}

kw_rv kw_keystore_get(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, struct kw_object_row *out)
{
	kw_rv rv;

	if (!out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output row");
	memset(out, 0, sizeof *out);
	lock(ks);
	rv = ks->b->ops->object_get(ks->b, partition_id, id, out, NULL);
	if (rv == KW_ERR_NOT_FOUND)
		rv = not_found_locked(ks, partition_id, id);
	unlock(ks);
	return rv;
}

static int class_rank(enum kw_class cls)
{
	switch (cls) {
	case KW_CLASS_PRIVATE_KEY: return 0;
	case KW_CLASS_SECRET_KEY: return 1;
	case KW_CLASS_PUBLIC_KEY: return 2;
	case KW_CLASS_CERTIFICATE: return 3;
	case KW_CLASS_DATA: return 4;
	default: return 5;
	}
}

kw_rv kw_keystore_find(struct kw_keystore *ks, uint64_t partition_id, const char *owner, const char *name,
		       enum kw_class cls, struct kw_object_row *out)
{
	struct kw_object_row *rows = NULL;
	char pname[KW_PARTITION_NAME_MAX + 1];
	size_t n = 0, best = 0;
	kw_rv rv;

	if (!out || !owner || !name)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: find needs an owner and a name");
	memset(out, 0, sizeof *out);
	lock(ks);
	rv = ks->b->ops->object_list(ks->b, partition_id, owner, name, cls, 0, 0, &rows, &n);
	if (rv)
		goto out;
	if (n == 0) {
		part_name_locked(ks, partition_id, pname);
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no object \"%s\" under owner %s in partition '%s'", name,
				  owner, pname);
		goto out;
	}
	for (size_t i = 1; i < n; i++) /* private key first, then secret, public, certificate, data */
		if (class_rank(rows[i].cls) < class_rank(rows[best].cls))
			best = i;
	*out = rows[best];
	rows[best].value = NULL;
out:
	unlock(ks);
	kw_object_rows_free(rows, n);
	return rv;
}

kw_rv kw_keystore_list(struct kw_keystore *ks, uint64_t partition_id, const char *owner, const char *name,
		       uint64_t after_id, unsigned limit, struct kw_object_row **rows, size_t *n, bool *more)
{
	struct kw_object_row *r = NULL;
	size_t cnt = 0;
	kw_rv rv;

	if (!rows || !n)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output for the list");
	*rows = NULL;
	*n = 0;
	if (more)
		*more = false;
	if (limit == 0 || limit > LIST_LIMIT_MAX)
		limit = LIST_LIMIT_MAX;
	lock(ks);
	rv = ks->b->ops->object_list(ks->b, partition_id, owner, name, KW_CLASS_ANY, after_id, limit + 1, &r, &cnt);
	unlock(ks);
	if (rv)
		return rv;
	if (cnt > limit) {
		kw_object_row_cleanup(&r[limit]);
		cnt = limit;
		if (more)
			*more = true;
	}
	*rows = r;
	*n = cnt;
	return KW_OK;
}

static kw_rv get_sealed_locked(struct kw_keystore *ks, uint64_t pid, uint64_t id, struct kw_object_row *row,
			       struct kw_sealed *s)
{
	kw_rv rv = ks->b->ops->object_get(ks->b, pid, id, row, s);

	if (rv == KW_ERR_NOT_FOUND)
		rv = not_found_locked(ks, pid, id);
	return rv;
}

kw_rv kw_keystore_load_private(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, EVP_PKEY **out)
{
	struct kw_object_row row;
	struct kw_sealed s;
	kw_rv rv;

	if (!out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output key");
	*out = NULL;
	memset(&row, 0, sizeof row);
	memset(&s, 0, sizeof s);
	lock(ks);
	rv = need_unlocked(ks);
	if (!rv)
		rv = get_sealed_locked(ks, partition_id, id, &row, &s);
	if (rv)
		goto out;
	if (row.cls != KW_CLASS_PRIVATE_KEY) {
		rv = kw_error_set(KW_ERR_KEY_TYPE, "store: object 0x%" PRIx64 " (\"%s\") is not a private key", id,
				  row.name);
		goto out;
	}
	rv = unseal_row_locked(ks, &row, &s, out);
out:
	unlock(ks);
	kw_object_row_cleanup(&row);
	kw_sealed_cleanup(&s);
	return rv;
}

/* Deletes rows[i] for every i with del[i], clearing survivors' pair_id; inside a transaction. */
static kw_rv delete_rows_locked(struct kw_keystore *ks, uint64_t pid, const struct kw_object_row *rows, size_t n)
{
	struct kw_object_row pair;
	kw_rv rv;

	for (size_t i = 0; i < n; i++) {
		rv = ks->b->ops->object_delete(ks->b, pid, rows[i].id);
		if (rv)
			return rv;
	}
	for (size_t i = 0; i < n; i++) {
		if (!rows[i].pair_id)
			continue;
		rv = ks->b->ops->object_get(ks->b, pid, rows[i].pair_id, &pair, NULL);
		if (rv == KW_ERR_NOT_FOUND) /* deleted too, or already gone */
			continue;
		if (rv)
			return rv;
		if (pair.pair_id == rows[i].id) {
			pair.pair_id = 0;
			rv = ks->b->ops->object_update(ks->b, &pair, NULL);
		}
		kw_object_row_cleanup(&pair);
		if (rv)
			return rv;
	}
	return KW_OK;
}

kw_rv kw_keystore_delete(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, const char *owner,
			 const char *name, enum kw_class cls, unsigned *deleted)
{
	struct kw_object_row *rows = NULL;
	char pname[KW_PARTITION_NAME_MAX + 1];
	size_t n = 0;
	kw_rv rv;

	if (deleted)
		*deleted = 0;
	if (!id && (!owner || !name))
		return kw_error_set(KW_ERR_ARGUMENTS, "store: delete needs an object id, or an owner and a name");
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	if (id) {
		rows = calloc(1, sizeof *rows);
		if (!rows) {
			rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
			goto done;
		}
		rv = ks->b->ops->object_get(ks->b, partition_id, id, rows, NULL);
		if (rv == KW_ERR_NOT_FOUND)
			rv = not_found_locked(ks, partition_id, id);
		if (rv)
			goto done;
		n = 1;
	} else {
		rv = ks->b->ops->object_list(ks->b, partition_id, owner, name, cls, 0, 0, &rows, &n);
		if (rv)
			goto done;
		if (n == 0) {
			part_name_locked(ks, partition_id, pname);
			rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no object \"%s\" under owner %s in partition '%s'",
					  name, owner, pname);
			goto done;
		}
	}
	rv = delete_rows_locked(ks, partition_id, rows, n);
done:
	rv = finish(ks->b, rv);
	/*
	 * A deletion is how room is made in a full store, so its record is
	 * written after it commits, in a transaction of its own; if even that
	 * fails, the error log says so.
	 */
	if (!rv && n) {
		kw_rv arv = ks->b->ops->begin(ks->b);
		if (!arv)
			arv = finish(ks->b, audit_change_locked(ks, "key.delete", "%s/%s (0x%" PRIx64 "%s): %zu object%s",
							       rows[0].owner, rows[0].name, rows[0].id,
							       n > 1 ? " and its pair" : "", n, n == 1 ? "" : "s"));
		if (arv)
			kw_log(KW_LOG_ERROR, "audit: the deletion of %s/%s is done but not recorded: %s", rows[0].owner,
			       rows[0].name, kw_last_error());
	}
	if (!rv && deleted)
		*deleted = (unsigned)n;
	if (!rv)
		kw_debug(KW_DEBUG_STORE, "store: deleted %zu object(s)", n);
out:
	unlock(ks);
	kw_object_rows_free(rows, n ? n : (rows ? 1 : 0));
	return rv;
}

/*
 * Reseals a private- or secret-key row under its (new) fields and writes
 * new_row; old_row has the fields it was sealed under. With insert, new_row
 * is a new row (a copy) rather than an update.
 */
static kw_rv reseal_locked(struct kw_keystore *ks, const struct kw_object_row *old_row,
			   const struct kw_sealed *old_s, const struct kw_object_row *new_row, bool insert)
{
	EVP_PKEY *pkey = NULL;
	unsigned char *key = NULL;
	size_t key_len = 0;
	struct kw_sealed s;
	kw_rv rv;

	memset(&s, 0, sizeof s);
	if (old_row->cls == KW_CLASS_SECRET_KEY) {
		rv = unseal_secret_locked(ks, old_row, old_s, &key, &key_len);
		if (!rv)
			rv = seal_bytes_locked(ks, new_row, key, key_len, NULL, 0, &s);
	} else {
		rv = unseal_row_locked(ks, old_row, old_s, &pkey);
		if (!rv)
			rv = seal_row_locked(ks, new_row, pkey, old_s->spki, old_s->spki_len, &s);
	}
	if (!rv)
		rv = insert ? ks->b->ops->object_insert(ks->b, new_row, &s) : ks->b->ops->object_update(ks->b, new_row, &s);
	EVP_PKEY_free(pkey);
	if (key) {
		OPENSSL_cleanse(key, key_len);
		free(key);
	}
	kw_sealed_cleanup(&s);
	return rv;
}

kw_rv kw_keystore_set_attributes(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, int extractable,
				 int modifiable, const char *new_name)
{
	struct kw_attr_change chg = {.extractable = extractable, .modifiable = modifiable, .new_name = new_name};

	return kw_keystore_modify(ks, partition_id, id, &chg);
}

kw_rv kw_keystore_modify(struct kw_keystore *ks, uint64_t partition_id, uint64_t id,
			 const struct kw_attr_change *chg)
{
	struct kw_object_row row, nrow, pair;
	struct kw_sealed s;
	bool rename, has_pair = false, changed, reid;
	const char *new_name;
	char pname[KW_PARTITION_NAME_MAX + 1];
	kw_rv rv;

	memset(&row, 0, sizeof row);
	memset(&pair, 0, sizeof pair);
	memset(&s, 0, sizeof s);
	if (!chg)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no change given");
	new_name = chg->new_name;
	if (chg->extractable < -1 || chg->extractable > 1 || chg->modifiable < -1 || chg->modifiable > 1)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: extractable/modifiable must be -1, 0 or 1");
	if (new_name) {
		rv = check_name(new_name);
		if (rv)
			return rv;
	}
	if (chg->set_ckaid && (rv = check_ckaid(chg->ckaid, chg->ckaid_len)))
		return rv;
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = get_sealed_locked(ks, partition_id, id, &row, &s);
	if (rv)
		goto done;
	if (row.pair_id) {
		rv = ks->b->ops->object_get(ks->b, partition_id, row.pair_id, &pair, NULL);
		if (rv == KW_ERR_NOT_FOUND)
			rv = KW_OK;
		else if (rv)
			goto done;
		else
			has_pair = true;
	}
	/* one-way rules first */
	if (chg->extractable == 1 && !row.extractable) {
		rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
				  "store: object 0x%" PRIx64 " (\"%s\"): extractable may go from true to false, never back",
				  id, row.name);
		goto done;
	}
	if (chg->modifiable == 1 && !row.modifiable) {
		rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
				  "store: object 0x%" PRIx64 " (\"%s\"): modifiable may go from true to false, never back",
				  id, row.name);
		goto done;
	}
	rename = new_name && strcmp(new_name, row.name) != 0;
	reid = chg->set_ckaid &&
	       (chg->ckaid_len != row.ckaid_len || (chg->ckaid_len && memcmp(chg->ckaid, row.ckaid, chg->ckaid_len)) ||
		(has_pair && (chg->ckaid_len != pair.ckaid_len ||
			      (chg->ckaid_len && memcmp(chg->ckaid, pair.ckaid, chg->ckaid_len)))));
	if ((rename || reid) && (!row.modifiable || (has_pair && !pair.modifiable))) {
		rv = kw_error_set(KW_ERR_NOT_MODIFIABLE,
				  "store: object 0x%" PRIx64 " (\"%s\" under owner %s) is not modifiable: its %s cannot change",
				  id, row.name, row.owner, rename ? "name" : "CKA_ID");
		goto done;
	}
	if (rename && is_key_class(row.cls)) {
		rv = key_name_free_locked(ks, partition_id, row.owner, new_name, row.id, has_pair ? pair.id : 0);
		if (rv)
			goto done;
	}
	nrow = row; /* shares row.value, which only row frees */
	if (chg->extractable == 0)
		nrow.extractable = false;
	if (chg->modifiable == 0)
		nrow.modifiable = false;
	if (rename)
		snprintf(nrow.name, sizeof nrow.name, "%s", new_name);
	if (reid) {
		if (chg->ckaid_len)
			memcpy(nrow.ckaid, chg->ckaid, chg->ckaid_len);
		nrow.ckaid_len = chg->ckaid_len;
	}
	changed = nrow.extractable != row.extractable || nrow.modifiable != row.modifiable;
	if (!changed && !rename && !reid)
		goto done;
	if (is_sealed_class(row.cls) && changed) {
		rv = need_unlocked(ks);
		if (!rv)
			rv = reseal_locked(ks, &row, &s, &nrow, false);
	} else {
		rv = ks->b->ops->object_update(ks->b, &nrow, NULL);
	}
	if (rv == KW_ERR_EXISTS)
		goto exists;
	if (rv)
		goto done;
	if ((rename || reid) && has_pair) {
		if (rename)
			snprintf(pair.name, sizeof pair.name, "%s", new_name);
		if (reid) {
			memcpy(pair.ckaid, nrow.ckaid, sizeof pair.ckaid);
			pair.ckaid_len = nrow.ckaid_len;
		}
		rv = ks->b->ops->object_update(ks->b, &pair, NULL);
		if (rv == KW_ERR_EXISTS)
			goto exists;
	}
	if (!rv)
		rv = audit_change_locked(ks, "key.set_attributes",
					 "%s/%s (0x%" PRIx64 "): extractable %d, modifiable %d%s%s%s", row.owner, nrow.name,
					 row.id, nrow.extractable, nrow.modifiable, rename ? ", renamed from " : "",
					 rename ? row.name : "", reid ? ", CKA_ID changed" : "");
	goto done;
exists:
	part_name_locked(ks, partition_id, pname);
	rv = kw_error_set(KW_ERR_EXISTS, "store: owner %s already has an object named \"%s\" in partition '%s'",
			  row.owner, new_name, pname);
done:
	rv = finish(ks->b, rv);
out:
	unlock(ks);
	kw_object_row_cleanup(&row);
	kw_object_row_cleanup(&pair);
	kw_sealed_cleanup(&s);
	return rv;
}

kw_rv kw_keystore_change_owner(struct kw_keystore *ks, uint64_t partition_id, const char *name,
			       const char *old_owner, const char *new_owner, struct kw_object_row **moved,
			       size_t *n)
{
	struct kw_object_row *rows = NULL, *all = NULL, *taken = NULL;
	size_t cnt = 0, nall = 0, ntaken = 0;
	char pname[KW_PARTITION_NAME_MAX + 1], owners[512];
	size_t off = 0;
	kw_rv rv;

	if (moved)
		*moved = NULL;
	if (n)
		*n = 0;
	rv = check_name(name);
	if (!rv)
		rv = check_owner(old_owner);
	if (!rv)
		rv = check_owner(new_owner);
	if (rv)
		return rv;
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	part_name_locked(ks, partition_id, pname);
	rv = ks->b->ops->object_list(ks->b, partition_id, old_owner, name, KW_CLASS_ANY, 0, 0, &rows, &cnt);
	if (rv)
		goto done;
	if (cnt == 0) {
		rv = ks->b->ops->object_list(ks->b, partition_id, NULL, name, KW_CLASS_ANY, 0, 0, &all, &nall);
		if (rv)
			goto done;
		owners[0] = '\0';
		for (size_t i = 0; i < nall; i++) {
			bool seen = false;

			for (size_t j = 0; j < i && !seen; j++)
				seen = strcmp(all[j].owner, all[i].owner) == 0;
			if (!seen && off < sizeof owners)
				off += (size_t)snprintf(owners + off, sizeof owners - off, "%s%s", off ? ", " : "",
							all[i].owner);
		}
		rv = kw_error_set(KW_ERR_NOT_FOUND,
				  "store: no object \"%s\" under owner %s in partition '%s' (owners with that name: %s)",
				  name, old_owner, pname, nall ? owners : "none");
		goto done;
	}
	rv = ks->b->ops->object_list(ks->b, partition_id, new_owner, name, KW_CLASS_ANY, 0, 0, &taken, &ntaken);
	if (rv)
		goto done;
	if (ntaken) {
		rv = kw_error_set(KW_ERR_EXISTS,
				  "store: owner %s already has an object named \"%s\" in partition '%s'; "
				  "delete or rename it first",
				  new_owner, name, pname);
		goto done;
	}
	for (size_t i = 0; i < cnt; i++) {
		if (!rows[i].modifiable) {
			rv = kw_error_set(KW_ERR_NOT_MODIFIABLE,
					  "store: object 0x%" PRIx64 " (\"%s\" under owner %s) is not modifiable; "
					  "its owner cannot change",
					  rows[i].id, name, old_owner);
			goto done;
		}
	}
	for (size_t i = 0; i < cnt && !rv; i++) {
		snprintf(rows[i].owner, sizeof rows[i].owner, "%s", new_owner);
		rv = ks->b->ops->object_update(ks->b, &rows[i], NULL);
	}
	if (rv == KW_ERR_EXISTS)
		rv = kw_error_set(KW_ERR_EXISTS, "store: owner %s already has an object named \"%s\"", new_owner, name);
	if (!rv)
		rv = audit_change_locked(ks, "key.change_owner", "%s: %s -> %s (%zu object%s)", name, old_owner,
					 new_owner, cnt, cnt == 1 ? "" : "s");
done:
	rv = finish(ks->b, rv);
out:
	unlock(ks);
	kw_object_rows_free(all, nall);
	kw_object_rows_free(taken, ntaken);
	if (!rv) {
		kw_debug(KW_DEBUG_STORE, "store: moved %zu object(s) \"%s\" from %s to %s", cnt, name, old_owner,
			 new_owner);
		if (moved) {
			*moved = rows;
			rows = NULL;
		}
		if (n)
			*n = cnt;
	}
	kw_object_rows_free(rows, cnt);
	return rv;
}

/* ---- secret keys, certificates, data objects, export, copy ---- */

kw_rv kw_keystore_put_secret(struct kw_keystore *ks, uint64_t partition_id, const struct kw_keygen *spec,
			     const unsigned char *key, size_t key_len, struct kw_object_row *out)
{
	struct kw_object_row r;
	struct kw_sealed sealed;
	char pname[KW_PARTITION_NAME_MAX + 1];
	kw_rv rv;

	memset(&r, 0, sizeof r);
	memset(&sealed, 0, sizeof sealed);
	if (!ks || !spec || !key || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: put_secret needs a spec, a key and an output row");
	memset(out, 0, sizeof *out);
	if (key_len != 16 && key_len != 24 && key_len != 32)
		return kw_error_set(KW_ERR_KEY_SIZE, "store: AES keys are 128, 192 or 256 bits, not %zu", key_len * 8);
	rv = check_owner(spec->owner);
	if (!rv)
		rv = check_name(spec->name);
	if (!rv)
		rv = check_ckaid(spec->ckaid, spec->ckaid_len);
	if (rv)
		return rv;
	lock(ks);
	rv = need_unlocked(ks);
	if (!rv)
		rv = partition_exists_locked(ks, partition_id);
	if (!rv)
		rv = random_id(&r.id);
	if (rv)
		goto out;
	r.partition_id = partition_id;
	snprintf(r.owner, sizeof r.owner, "%s", spec->owner);
	snprintf(r.name, sizeof r.name, "%s", spec->name);
	r.cls = KW_CLASS_SECRET_KEY;
	r.key_type = KW_KEY_AES;
	r.bits = (unsigned)key_len * 8;
	r.sensitive = true;
	r.extractable = spec->extractable;
	r.modifiable = spec->modifiable;
	r.never_extractable = !spec->extractable;
	r.always_sensitive = true;
	r.usages = spec->usages;
	r.created = now();
	if (spec->ckaid_len)
		memcpy(r.ckaid, spec->ckaid, spec->ckaid_len);
	r.ckaid_len = spec->ckaid_len;
	rv = seal_bytes_locked(ks, &r, key, key_len, NULL, 0, &sealed);
	if (rv)
		goto out;
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = key_name_free_locked(ks, partition_id, r.owner, r.name, 0, 0);
	if (!rv)
		rv = ks->b->ops->object_insert(ks->b, &r, &sealed);
	if (rv == KW_ERR_EXISTS) {
		part_name_locked(ks, partition_id, pname);
		kw_error_set(rv, "store: a key named \"%s\" already exists under owner %s in partition '%s'", r.name,
			     r.owner, pname);
	}
	if (!rv)
		rv = audit_key_locked(ks, "key.generate", &r);
	rv = finish(ks->b, rv);
	if (rv)
		goto out;
	*out = r;
	kw_debug(KW_DEBUG_STORE, "store: secret key 0x%" PRIx64 " \"%s\" stored under %s", r.id, r.name, r.owner);
out:
	unlock(ks);
	kw_sealed_cleanup(&sealed);
	return rv;
}

kw_rv kw_keystore_object_row(const struct kw_objspec *spec, struct kw_object_row *out)
{
	struct kw_object_row r;
	const char *what, *app;
	kw_rv rv;

	memset(&r, 0, sizeof r);
	if (!spec || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: an object needs a spec and an output row");
	memset(out, 0, sizeof *out);
	if (spec->cls != KW_CLASS_CERTIFICATE && spec->cls != KW_CLASS_DATA)
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "store: only certificates and data objects are created this way (class %d); keys "
				    "are generated on the HSM",
				    (int)spec->cls);
	what = spec->cls == KW_CLASS_CERTIFICATE ? "certificate" : "data object";
	app = spec->application && spec->application[0] ? spec->application : NULL;
	rv = check_owner(spec->owner);
	if (!rv)
		rv = check_name(spec->name);
	if (!rv)
		rv = check_ckaid(spec->ckaid, spec->ckaid_len);
	if (rv)
		return rv;
	if (spec->value_len && !spec->value)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: %s \"%s\": value length %zu without its bytes", what,
				    spec->name, spec->value_len);
	if (spec->value_len > KW_OBJECT_VALUE_MAX)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "store: %s \"%s\": the value is %zu bytes, at most %d", what,
				    spec->name, spec->value_len, KW_OBJECT_VALUE_MAX);
	if (spec->cls == KW_CLASS_CERTIFICATE) {
		const unsigned char *p = spec->value;
		X509 *x = spec->value_len ? d2i_X509(NULL, &p, (long)spec->value_len) : NULL;
		bool whole = x && p == spec->value + spec->value_len;

		X509_free(x);
		/* leave no error on the thread's queue: a later SSL_read there would take it for its own */
		ERR_clear_error();
		if (!whole)
			return kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
					    "store: certificate \"%s\": the value is not one DER-encoded X.509 certificate "
					    "(%zu bytes%s)",
					    spec->name, spec->value_len,
					    x ? ", with bytes after the certificate" : "");
		if (app)
			return kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
					    "store: certificate \"%s\": only data objects have an application", spec->name);
	}
	if (app && (rv = check_text("application", app, KW_APPLICATION_MAX, false)))
		return rv;

	snprintf(r.owner, sizeof r.owner, "%s", spec->owner);
	snprintf(r.name, sizeof r.name, "%s", spec->name);
	r.cls = spec->cls;
	r.key_type = KW_KEY_NONE;
	r.extractable = true;
	r.modifiable = spec->modifiable;
	r.created = now();
	if (spec->ckaid_len)
		memcpy(r.ckaid, spec->ckaid, spec->ckaid_len);
	r.ckaid_len = spec->ckaid_len;
	snprintf(r.application, sizeof r.application, "%s", app ? app : "");
	if (spec->value_len) {
		r.value = malloc(spec->value_len);
		if (!r.value)
			return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
		memcpy(r.value, spec->value, spec->value_len);
		r.value_len = spec->value_len;
	}
	*out = r;
	return KW_OK;
}

kw_rv kw_keystore_put_object(struct kw_keystore *ks, uint64_t partition_id, const struct kw_objspec *spec,
			     struct kw_object_row *out)
{
	struct kw_object_row r;
	const char *what;
	char pname[KW_PARTITION_NAME_MAX + 1];
	kw_rv rv;

	memset(&r, 0, sizeof r);
	if (!ks || !spec || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: put_object needs a spec and an output row");
	rv = kw_keystore_object_row(spec, &r);
	if (rv)
		return rv;
	what = spec->cls == KW_CLASS_CERTIFICATE ? "certificate" : "data object";
	r.partition_id = partition_id;
	lock(ks);
	rv = partition_exists_locked(ks, partition_id);
	if (!rv)
		rv = random_id(&r.id);
	if (rv)
		goto out;
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = ks->b->ops->object_insert(ks->b, &r, NULL);
	if (rv == KW_ERR_EXISTS) {
		part_name_locked(ks, partition_id, pname);
		kw_error_set(rv, "store: a %s named \"%s\" already exists under owner %s in partition '%s'", what, r.name,
			     r.owner, pname);
	}
	if (!rv)
		rv = audit_change_locked(ks, "object.create", "%s/%s (0x%" PRIx64 "): %s of %zu bytes", r.owner, r.name,
					 r.id, what, r.value_len);
	rv = finish(ks->b, rv);
	if (rv)
		goto out;
	*out = r;
	r.value = NULL;
	kw_debug(KW_DEBUG_STORE, "store: %s 0x%" PRIx64 " \"%s\" stored under %s", what, out->id, out->name,
		 out->owner);
out:
	unlock(ks);
	kw_object_row_cleanup(&r);
	return rv;
}

kw_rv kw_keystore_load_secret(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, unsigned char **key,
			      size_t *len, struct kw_object_row *row_out)
{
	struct kw_object_row row;
	struct kw_sealed s;
	kw_rv rv;

	if (!key || !len)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output for the secret key");
	*key = NULL;
	*len = 0;
	memset(&row, 0, sizeof row);
	memset(&s, 0, sizeof s);
	lock(ks);
	rv = need_unlocked(ks);
	if (!rv)
		rv = get_sealed_locked(ks, partition_id, id, &row, &s);
	if (rv)
		goto out;
	if (row.cls != KW_CLASS_SECRET_KEY) {
		rv = kw_error_set(KW_ERR_KEY_TYPE, "store: object 0x%" PRIx64 " (\"%s\" under owner %s) is not a secret key",
				  id, row.name, row.owner);
		goto out;
	}
	rv = unseal_secret_locked(ks, &row, &s, key, len);
out:
	unlock(ks);
	kw_sealed_cleanup(&s);
	if (!rv && row_out) {
		*row_out = row;
		row.value = NULL;
	}
	kw_object_row_cleanup(&row);
	return rv;
}

kw_rv kw_keystore_export_key(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, unsigned char **out,
			     size_t *len, struct kw_object_row *row_out)
{
	struct kw_object_row row;
	struct kw_sealed s;
	EVP_PKEY *pkey = NULL;
	kw_rv rv;

	if (!out || !len)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output for the key");
	*out = NULL;
	*len = 0;
	memset(&row, 0, sizeof row);
	memset(&s, 0, sizeof s);
	lock(ks);
	rv = need_unlocked(ks);
	if (!rv)
		rv = get_sealed_locked(ks, partition_id, id, &row, &s);
	if (rv)
		goto out;
	if (!is_sealed_class(row.cls)) {
		rv = kw_error_set(KW_ERR_KEY_TYPE,
				  "store: object 0x%" PRIx64 " (\"%s\" under owner %s) is not a private or secret key: "
				  "only those are wrapped",
				  id, row.name, row.owner);
		goto out;
	}
	/* the flag is also bound into the row's associated data: unsealing re-checks it */
	if (!row.extractable) {
		rv = kw_error_set(KW_ERR_UNEXTRACTABLE,
				  "store: key %s/%s (0x%" PRIx64 ") is not extractable: it can never leave the HSM",
				  row.owner, row.name, id);
		goto out;
	}
	if (row.cls == KW_CLASS_SECRET_KEY) {
		rv = unseal_secret_locked(ks, &row, &s, out, len);
	} else {
		rv = unseal_row_locked(ks, &row, &s, &pkey);
		if (!rv)
			rv = pkcs8_der(pkey, out, len);
	}
out:
	unlock(ks);
	EVP_PKEY_free(pkey);
	kw_sealed_cleanup(&s);
	if (!rv && row_out) {
		*row_out = row;
		row.value = NULL;
	}
	kw_object_row_cleanup(&row);
	return rv;
}

/* One copied row: src's fields under a new id and name, the one-way rules applied. */
static kw_rv copy_row(const struct kw_object_row *src, uint64_t new_id, const char *new_name, int extractable,
		      int modifiable, struct kw_object_row *dst)
{
	/* a public key, a certificate or data object is public: its extractable stays as it is */
	bool secret = is_sealed_class(src->cls);

	if (secret && extractable == 1 && !src->extractable)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
				    "store: object 0x%" PRIx64 " (\"%s\") is not extractable: a copy of it cannot be either",
				    src->id, src->name);
	if (modifiable == 1 && !src->modifiable)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
				    "store: object 0x%" PRIx64 " (\"%s\") is not modifiable: a copy of it cannot be either",
				    src->id, src->name);
	*dst = *src;
	dst->value = NULL;
	dst->value_len = 0;
	dst->id = new_id;
	snprintf(dst->name, sizeof dst->name, "%s", new_name);
	if (secret && extractable == 0)
		dst->extractable = false;
	if (modifiable == 0)
		dst->modifiable = false;
	/* the copy's history includes the source's: never_extractable, always_sensitive carry over */
	dst->never_extractable = src->never_extractable && !dst->extractable;
	dst->always_sensitive = src->always_sensitive;
	dst->created = now();
	if (src->value_len) {
		dst->value = malloc(src->value_len);
		if (!dst->value)
			return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
		memcpy(dst->value, src->value, src->value_len);
		dst->value_len = src->value_len;
	}
	return KW_OK;
}

kw_rv kw_keystore_copy(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, const char *new_name,
		       int extractable, int modifiable, struct kw_object_row **rows_out, size_t *n_out)
{
	struct kw_object_row src[2], *copies = NULL;
	struct kw_sealed s;
	char pname[KW_PARTITION_NAME_MAX + 1];
	size_t n = 0;
	uint64_t ids[2] = {0, 0};
	kw_rv rv;

	memset(src, 0, sizeof src);
	memset(&s, 0, sizeof s);
	if (!rows_out || !n_out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output for the copy");
	*rows_out = NULL;
	*n_out = 0;
	if (extractable < -1 || extractable > 1 || modifiable < -1 || modifiable > 1)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: extractable/modifiable must be -1, 0 or 1");
	rv = check_name(new_name);
	if (rv)
		return rv;
	copies = calloc(2, sizeof *copies);
	if (!copies)
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	/* src[0]: the row to copy, with its sealed material if any; src[1]: its pair half */
	rv = ks->b->ops->object_get(ks->b, partition_id, id, &src[0], NULL);
	if (rv == KW_ERR_NOT_FOUND)
		rv = not_found_locked(ks, partition_id, id);
	if (rv)
		goto done;
	n = 1;
	if (src[0].pair_id) {
		/* either half names the pair: copy from its private half */
		uint64_t priv_id = src[0].cls == KW_CLASS_PUBLIC_KEY ? src[0].pair_id : src[0].id;
		uint64_t pub_id = src[0].cls == KW_CLASS_PUBLIC_KEY ? src[0].id : src[0].pair_id;

		kw_object_row_cleanup(&src[0]);
		rv = get_sealed_locked(ks, partition_id, priv_id, &src[0], &s);
		if (!rv)
			rv = ks->b->ops->object_get(ks->b, partition_id, pub_id, &src[1], NULL);
		if (rv == KW_ERR_NOT_FOUND)
			rv = tampered_locked(ks, &src[0], "its pair half is missing (deleted outside keywardd)");
		if (rv)
			goto done;
		n = 2;
	} else if (is_sealed_class(src[0].cls)) {
		kw_object_row_cleanup(&src[0]);
		rv = get_sealed_locked(ks, partition_id, id, &src[0], &s);
		if (rv)
			goto done;
	}
	if (is_key_class(src[0].cls))
		rv = key_name_free_locked(ks, partition_id, src[0].owner, new_name, 0, 0);
	if (!rv)
		rv = random_id(&ids[0]);
	while (!rv && n == 2 && (ids[1] == 0 || ids[1] == ids[0]))
		rv = random_id(&ids[1]);
	for (size_t i = 0; i < n && !rv; i++)
		rv = copy_row(&src[i], ids[i], new_name, extractable, modifiable, &copies[i]);
	if (rv)
		goto done;
	if (n == 2) {
		copies[0].pair_id = ids[1];
		copies[1].pair_id = ids[0];
	}
	/* public half first, as put_keypair: the private row's checks then find it */
	if (n == 2)
		rv = ks->b->ops->object_insert(ks->b, &copies[1], NULL);
	if (!rv && is_sealed_class(src[0].cls)) {
		rv = need_unlocked(ks);
		if (!rv)
			rv = reseal_locked(ks, &src[0], &s, &copies[0], true);
	} else if (!rv) {
		rv = ks->b->ops->object_insert(ks->b, &copies[0], NULL);
	}
	if (rv == KW_ERR_EXISTS) {
		part_name_locked(ks, partition_id, pname);
		kw_error_set(rv, "store: owner %s already has an object named \"%s\" of that class in partition '%s'",
			     src[0].owner, new_name, pname);
	}
	if (!rv)
		rv = audit_change_locked(ks, "object.copy", "%s/%s (0x%" PRIx64 ") copied as %s (0x%" PRIx64 "%s)",
					 src[0].owner, src[0].name, src[0].id, new_name, copies[0].id,
					 n == 2 ? " and its pair" : "");
done:
	rv = finish(ks->b, rv);
out:
	unlock(ks);
	kw_object_row_cleanup(&src[0]);
	kw_object_row_cleanup(&src[1]);
	kw_sealed_cleanup(&s);
	if (rv) {
		kw_object_rows_free(copies, 2);
		return rv;
	}
	kw_debug(KW_DEBUG_STORE, "store: copied 0x%" PRIx64 " as \"%s\" (%zu object%s)", id, new_name, n,
		 n == 1 ? "" : "s");
	*rows_out = copies;
	*n_out = n;
	return KW_OK;
}

/* ---- audit ---- */

static kw_rv audit_hash(const unsigned char prev[KW_HASH_LEN], const struct kw_audit_rec *r,
			unsigned char out[KW_HASH_LEN])
{
	const char *fields[4] = {r->partition, r->actor, r->event, r->detail};
	unsigned char hdr[17];
	struct kw_buf b;
	kw_rv rv = KW_OK;

	kw_buf_init(&b, 4 * (AUDIT_FIELD_MAX + 4) + sizeof hdr);
	hdr[0] = 1; /* encoding version */
	for (int i = 0; i < 8; i++) {
		hdr[1 + i] = (unsigned char)(r->seq >> (56 - 8 * i));
		hdr[9 + i] = (unsigned char)((uint64_t)r->time >> (56 - 8 * i));
	}
	rv = kw_buf_append(&b, prev, KW_HASH_LEN);
	if (!rv)
		rv = kw_buf_append(&b, hdr, sizeof hdr);
	for (int i = 0; i < 4 && !rv; i++) {
		size_t len = strlen(fields[i]);
		unsigned char l[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
				      (unsigned char)(len >> 8), (unsigned char)len};

		rv = kw_buf_append(&b, l, 4);
		if (!rv)
			rv = kw_buf_append(&b, fields[i], len);
	}
	if (rv == KW_ERR_DATA_LEN)
		rv = kw_error_set(KW_ERR_DATA_LEN, "audit: record %" PRIu64 " is too long", r->seq);
	else if (rv)
		rv = kw_error_set(rv, "audit: out of memory");
	else
		SHA256(b.data, b.len, out);
	kw_buf_cleanup(&b);
	return rv;
}

static kw_rv audit_head_locked(struct kw_keystore *ks, uint64_t *seq, unsigned char hash[KW_HASH_LEN])
{
	unsigned char *h = NULL;
	size_t len = 0;
	kw_rv rv;

	*seq = 0;
	memset(hash, 0, KW_HASH_LEN);
	rv = meta_get_u64(ks->b, "audit.seq", seq);
	if (rv == KW_ERR_NOT_FOUND)
		return KW_OK;
	if (rv)
		return rv;
	rv = ks->b->ops->meta_get(ks->b, "audit.hash", &h, &len);
	if (rv == KW_ERR_NOT_FOUND || (!rv && len != KW_HASH_LEN))
		rv = kw_error_set(KW_ERR_STORE, "audit: the head hash in meta is missing or damaged");
	if (!rv)
		memcpy(hash, h, KW_HASH_LEN);
	free(h);
	return rv;
}

/* The last archived record (0 and zeros when nothing was archived). */
static kw_rv audit_base_locked(struct kw_keystore *ks, uint64_t *seq, unsigned char hash[KW_HASH_LEN])
{
	unsigned char *h = NULL;
	size_t len = 0;
	kw_rv rv;

	*seq = 0;
	memset(hash, 0, KW_HASH_LEN);
	rv = meta_get_u64(ks->b, "audit.base_seq", seq);
	if (rv == KW_ERR_NOT_FOUND)
		return KW_OK;
	if (rv)
		return rv;
	rv = ks->b->ops->meta_get(ks->b, "audit.base_hash", &h, &len);
	if (rv == KW_ERR_NOT_FOUND || (!rv && len != KW_HASH_LEN))
		rv = kw_error_set(KW_ERR_STORE, "audit: the archived base hash in meta is missing or damaged");
	if (!rv)
		memcpy(hash, h, KW_HASH_LEN);
	free(h);
	return rv;
}

/* Appends one record inside the caller's open transaction (caller holds the lock). */
static kw_rv audit_append_locked(struct kw_keystore *ks, const char *partition, const char *actor, const char *event,
				 const char *detail)
{
	struct kw_audit_rec r;
	uint64_t seq;
	kw_rv rv;

	if (!partition)
		partition = "";
	if (!detail)
		detail = "";
	if (!actor || !event || !*event)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit: a record needs an actor and an event");
	if (strlen(partition) > AUDIT_FIELD_MAX || strlen(actor) > AUDIT_FIELD_MAX || strlen(event) > AUDIT_FIELD_MAX ||
	    strlen(detail) > AUDIT_FIELD_MAX)
		return kw_error_set(KW_ERR_DATA_LEN, "audit: a field is longer than %d bytes", AUDIT_FIELD_MAX);
	memset(&r, 0, sizeof r);
	r.partition = (char *)partition;
	r.actor = (char *)actor;
	r.event = (char *)event;
	r.detail = (char *)detail;
	r.time = now();
	rv = audit_head_locked(ks, &seq, r.prev_hash);
	if (rv)
		return rv;
	r.seq = seq + 1;
	rv = audit_hash(r.prev_hash, &r, r.hash);
	if (!rv)
		rv = ks->b->ops->audit_insert(ks->b, &r);
	if (rv == KW_ERR_EXISTS)
		rv = kw_error_set(KW_ERR_STORE, "audit: record %" PRIu64 " already exists past the head in meta",
				  r.seq);
	if (!rv)
		rv = meta_put_u64(ks->b, "audit.seq", r.seq);
	if (!rv)
		rv = ks->b->ops->meta_put(ks->b, "audit.hash", r.hash, KW_HASH_LEN);
	return rv;
}

kw_rv kw_keystore_audit(struct kw_keystore *ks, const char *partition, const char *actor, const char *event,
			const char *detail)
{
	kw_rv rv;

	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (!rv)
		rv = finish(ks->b, audit_append_locked(ks, partition, actor, event, detail));
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_audit_head(struct kw_keystore *ks, uint64_t *seq, unsigned char hash[KW_AUDIT_HASH_LEN])
{
	kw_rv rv;

	lock(ks);
	rv = audit_head_locked(ks, seq, hash);
	unlock(ks);
	return rv;
}

/* Whom the calling thread's mutations are done for (kw_keystore_set_actor). */
static _Thread_local char actor_partition[KW_PARTITION_NAME_MAX + 1];
static _Thread_local char actor_name[160];

void kw_keystore_set_actor(const char *partition, const char *actor)
{
	snprintf(actor_partition, sizeof actor_partition, "%s", partition ? partition : "");
	snprintf(actor_name, sizeof actor_name, "%s", actor ? actor : "");
}

/*
 * The audit record of a change, written in the change's own transaction:
 * if it cannot be written, the change is rolled back with it.
 */
static kw_rv audit_change_locked(struct kw_keystore *ks, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static kw_rv audit_change_locked(struct kw_keystore *ks, const char *event, const char *fmt, ...)
{
	char detail[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	return audit_append_locked(ks, actor_partition, actor_name[0] ? actor_name : "keystore", event, detail);
}

static const char *type_text(const struct kw_object_row *r)
{
	switch (r->key_type) {
	case KW_KEY_RSA: return "RSA";
	case KW_KEY_EC: return "EC";
	case KW_KEY_ED25519: return "Ed25519";
	case KW_KEY_AES: return "AES";
	default: return "-";
	}
}

/* "owner/name (0xID): RSA 2048, usages 0x3, extractable, not modifiable" */
static kw_rv audit_key_locked(struct kw_keystore *ks, const char *event, const struct kw_object_row *r)
{
	return audit_change_locked(ks, event, "%s/%s (0x%" PRIx64 "): %s %u%s%s, usages 0x%x%s%s", r->owner, r->name,
				   r->id, type_text(r), r->bits, r->curve[0] ? " " : "", r->curve, r->usages,
				   r->extractable ? ", extractable" : "", r->modifiable ? "" : ", not modifiable");
}

struct verify_ctx {
	struct kw_audit_report *rep;
	uint64_t next;
	uint64_t last_seq;
	unsigned char prev[KW_HASH_LEN];
	bool bad;
	uint64_t expect_seq; /* 0: no saved head to check */
	const unsigned char *expect_hash;
	bool expect_found;
};

static void report_bad(struct verify_ctx *c, uint64_t seq, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void report_bad(struct verify_ctx *c, uint64_t seq, const char *fmt, ...)
{
	va_list ap;

	c->bad = true;
	c->rep->ok = false;
	c->rep->first_bad = seq;
	va_start(ap, fmt);
	vsnprintf(c->rep->problem, sizeof c->rep->problem, fmt, ap);
	va_end(ap);
}

static kw_rv verify_cb(void *ctx, const struct kw_audit_rec *r)
{
	struct verify_ctx *c = ctx;
	unsigned char h[KW_HASH_LEN];
	kw_rv rv;

	c->rep->records++;
	c->last_seq = r->seq;
	if (c->bad)
		return KW_OK;
	if (r->seq != c->next) {
		if (r->seq == c->next + 1)
			report_bad(c, c->next, "record %" PRIu64 " missing", c->next);
		else
			report_bad(c, c->next, "records %" PRIu64 " to %" PRIu64 " missing", c->next, r->seq - 1);
		return KW_OK;
	}
	if (CRYPTO_memcmp(r->prev_hash, c->prev, KW_HASH_LEN) != 0) {
		report_bad(c, r->seq,
			   "record %" PRIu64 ": chain broken (the record before it was altered, or records were reordered)",
			   r->seq);
		return KW_OK;
	}
	rv = audit_hash(c->prev, r, h);
	if (rv)
		return rv;
	if (CRYPTO_memcmp(h, r->hash, KW_HASH_LEN) != 0) {
		report_bad(c, r->seq, "record %" PRIu64 ": hash mismatch (altered)", r->seq);
		return KW_OK;
	}
	if (c->expect_seq && r->seq == c->expect_seq) {
		c->expect_found = true;
		if (CRYPTO_memcmp(h, c->expect_hash, KW_HASH_LEN) != 0) {
			report_bad(c, r->seq,
				   "record %" PRIu64 " differs from the saved head: the log was rewritten from there on",
				   r->seq);
			return KW_OK;
		}
	}
	memcpy(c->prev, r->hash, KW_HASH_LEN);
	c->next++;
	return KW_OK;
}

kw_rv kw_keystore_audit_verify(struct kw_keystore *ks, struct kw_audit_report *out)
{
	return kw_keystore_audit_verify_head(ks, 0, NULL, out);
}

kw_rv kw_keystore_audit_verify_head(struct kw_keystore *ks, uint64_t expect_seq,
				    const unsigned char expect_hash[KW_AUDIT_HASH_LEN], struct kw_audit_report *out)
{
	struct verify_ctx c;
	unsigned char head_hash[KW_HASH_LEN];
	uint64_t head = 0;
	kw_rv rv;

	if (!out)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit: no report given");
	memset(out, 0, sizeof *out);
	memset(&c, 0, sizeof c);
	if (expect_seq && !expect_hash)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit: a saved head needs its hash");
	out->ok = true;
	c.rep = out;
	c.next = 1;
	c.expect_seq = expect_seq;
	c.expect_hash = expect_hash;
	lock(ks);
	rv = ks->b->ops->begin(ks->b); /* one consistent view of log and head */
	if (rv)
		goto out;
	rv = audit_head_locked(ks, &head, head_hash);
	if (!rv)
		rv = audit_base_locked(ks, &out->base_seq, out->base_hash);
	if (!rv) {
		/* the chain in the store goes on from the last archived record */
		c.next = out->base_seq + 1;
		memcpy(c.prev, out->base_hash, KW_HASH_LEN);
		c.last_seq = out->base_seq;
		rv = ks->b->ops->audit_foreach(ks->b, verify_cb, &c);
	}
	ks->b->ops->rollback(ks->b);
	if (rv)
		goto out;
	out->head_seq = head;
	memcpy(out->head_hash, head_hash, KW_HASH_LEN);
	if (c.bad)
		goto out;
	if (expect_seq && expect_seq == out->base_seq)
		c.expect_found = CRYPTO_memcmp(expect_hash, out->base_hash, KW_HASH_LEN) == 0;
	if (expect_seq && expect_seq < out->base_seq)
		report_bad(&c, expect_seq,
			   "the saved head, record %" PRIu64 ", is archived (the store starts after %" PRIu64
			   "): check it in the archives",
			   expect_seq, out->base_seq);
	else if (expect_seq && expect_seq == out->base_seq && !c.expect_found)
		report_bad(&c, expect_seq,
			   "record %" PRIu64 " differs from the saved head: the log was rewritten from there on",
			   expect_seq);
	else if (expect_seq && !c.expect_found)
		report_bad(&c, expect_seq,
			   "the saved head, record %" PRIu64 ", is not in the log (it ends at %" PRIu64
			   "): the log was cut back or rewritten",
			   expect_seq, c.last_seq);
	else if (c.last_seq < head)
		report_bad(&c, c.last_seq + 1, "log ends at %" PRIu64 " but head says %" PRIu64, c.last_seq, head);
	else if (c.last_seq > head)
		report_bad(&c, head + 1, "record %" PRIu64 " is past the head (%" PRIu64 "): written outside keywardd",
			   head + 1, head);
	else if (head && CRYPTO_memcmp(c.prev, head_hash, KW_HASH_LEN) != 0)
		report_bad(&c, head, "record %" PRIu64 ": differs from the head hash (replaced)", head);
out:
	unlock(ks);
	if (rv)
		out->ok = false;
	return rv;
}

/* ---- audit archives ---- */

static void hex_put(FILE *f, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
}

struct archive_ctx {
	FILE *f;
	uint64_t upto;
	uint64_t n;
	unsigned char last_hash[KW_HASH_LEN];
};

static kw_rv archive_cb(void *ctx, const struct kw_audit_rec *r)
{
	struct archive_ctx *a = ctx;
	const char *fields[4] = {r->partition, r->actor, r->event, r->detail};

	if (r->seq > a->upto)
		return KW_OK; /* past the cut: stays in the store */
	fprintf(a->f, "%" PRIu64 " %" PRId64 " ", r->seq, r->time);
	hex_put(a->f, r->prev_hash, KW_HASH_LEN);
	fputc(' ', a->f);
	hex_put(a->f, r->hash, KW_HASH_LEN);
	for (int i = 0; i < 4; i++) {
		fputc(' ', a->f);
		fputc('x', a->f); /* keeps an empty field a field */
		hex_put(a->f, (const unsigned char *)fields[i], strlen(fields[i]));
	}
	fputc('\n', a->f);
	memcpy(a->last_hash, r->hash, KW_HASH_LEN);
	a->n++;
	return KW_OK;
}

static kw_rv sync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	kw_rv rv = KW_OK;

	if (fd < 0 || fsync(fd) != 0)
		rv = kw_error_set(KW_ERR_STORE, "audit archive %s: cannot sync: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return rv;
}

kw_rv kw_keystore_audit_archive(struct kw_keystore *ks, const char *dir, uint64_t keep, uint64_t *archived,
				char *file, size_t size)
{
	struct archive_ctx a;
	unsigned char head_hash[KW_HASH_LEN], base_hash[KW_HASH_LEN];
	uint64_t head = 0, base = 0;
	char tmp[PATH_MAX + 8], path[PATH_MAX], hex[2 * KW_HASH_LEN + 1];
	bool written = false;
	kw_rv rv;

	if (archived)
		*archived = 0;
	if (file && size)
		file[0] = '\0';
	if (!dir || !*dir)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit archive: no directory given");
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return kw_error_set(KW_ERR_STORE, "audit archive %s: cannot create: %s", dir, strerror(errno));
	memset(&a, 0, sizeof a);
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out_unlocked_tx;
	rv = audit_head_locked(ks, &head, head_hash);
	if (!rv)
		rv = audit_base_locked(ks, &base, base_hash);
	if (rv || head - base <= keep)
		goto out;
	a.upto = head - keep;
	snprintf(path, sizeof path, "%s/%020" PRIu64 "-%020" PRIu64 ".audit", dir, base + 1, a.upto);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	a.f = fopen(tmp, "wxe");
	if (!a.f) {
		rv = kw_error_set(KW_ERR_STORE, "audit archive %s: cannot create: %s", tmp, strerror(errno));
		goto out;
	}
	rv = ks->b->ops->audit_foreach(ks->b, archive_cb, &a);
	if (!rv && a.n != a.upto - base)
		rv = kw_error_set(KW_ERR_STORE, "audit archive: the store holds %" PRIu64 " records from %" PRIu64
				  " to %" PRIu64 ", not %" PRIu64 ": run audit verify",
				  a.n, base + 1, a.upto, a.upto - base);
	if (fflush(a.f) != 0 || fsync(fileno(a.f)) != 0)
		rv = rv ? rv : kw_error_set(KW_ERR_STORE, "audit archive %s: cannot write: %s", tmp, strerror(errno));
	fclose(a.f);
	if (!rv && rename(tmp, path) != 0)
		rv = kw_error_set(KW_ERR_STORE, "audit archive %s: cannot rename: %s", path, strerror(errno));
	if (rv) {
		unlink(tmp);
		goto out;
	}
	written = true;
	rv = sync_path(dir, O_RDONLY | O_DIRECTORY);
	/* the records leave the store only in the transaction that records where they went */
	if (!rv)
		rv = ks->b->ops->audit_delete_upto(ks->b, a.upto);
	if (!rv)
		rv = meta_put_u64(ks->b, "audit.base_seq", a.upto);
	if (!rv)
		rv = ks->b->ops->meta_put(ks->b, "audit.base_hash", a.last_hash, KW_HASH_LEN);
	if (!rv) {
		char detail[PATH_MAX + 200];

		for (int i = 0; i < KW_HASH_LEN; i++)
			sprintf(hex + 2 * i, "%02x", a.last_hash[i]);
		snprintf(detail, sizeof detail, "records %" PRIu64 " to %" PRIu64 " archived to %s (last hash %s)",
			 base + 1, a.upto, path, hex);
		rv = audit_append_locked(ks, "", "keywardd", "audit.archive", detail);
	}
out:
	rv = finish(ks->b, rv);
	if (rv && written)
		unlink(path); /* the records stayed in the store */
	if (!rv && a.n) {
		if (archived)
			*archived = a.n;
		if (file && size)
			snprintf(file, size, "%s", path);
	}
out_unlocked_tx:
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_audit_count(struct kw_keystore *ks, uint64_t *records)
{
	unsigned char h[KW_HASH_LEN];
	uint64_t head = 0, base = 0;
	kw_rv rv;

	*records = 0;
	lock(ks);
	rv = audit_head_locked(ks, &head, h);
	if (!rv)
		rv = audit_base_locked(ks, &base, h);
	unlock(ks);
	if (!rv)
		*records = head - base;
	return rv;
}

static bool hex_get(const char *text, size_t len, unsigned char *out)
{
	for (size_t i = 0; i < len; i++) {
		unsigned v;
		if (!isxdigit((unsigned char)text[2 * i]) || !isxdigit((unsigned char)text[2 * i + 1]) ||
		    sscanf(text + 2 * i, "%2x", &v) != 1)
			return false;
		out[i] = (unsigned char)v;
	}
	return true;
}

/* One archive line into r (fields malloc'd into store, 4 * (AUDIT_FIELD_MAX + 1) bytes). */
static bool parse_archive_line(char *line, struct kw_audit_rec *r, char *store)
{
	char *tok[8], *save = NULL;
	int n = 0;

	for (char *t = strtok_r(line, " \n", &save); t && n < 8; t = strtok_r(NULL, " \n", &save))
		tok[n++] = t;
	if (n != 8 || strtok_r(NULL, " \n", &save))
		return false;
	memset(r, 0, sizeof *r);
	r->seq = strtoull(tok[0], NULL, 10);
	r->time = strtoll(tok[1], NULL, 10);
	if (strlen(tok[2]) != 2 * KW_HASH_LEN || strlen(tok[3]) != 2 * KW_HASH_LEN ||
	    !hex_get(tok[2], KW_HASH_LEN, r->prev_hash) || !hex_get(tok[3], KW_HASH_LEN, r->hash))
		return false;
	char **fields[4] = {&r->partition, &r->actor, &r->event, &r->detail};
	for (int i = 0; i < 4; i++) {
		size_t len = strlen(tok[4 + i]);
		char *dst = store + i * (AUDIT_FIELD_MAX + 1);
		if (tok[4 + i][0] != 'x' || (len - 1) % 2 || (len - 1) / 2 > AUDIT_FIELD_MAX ||
		    !hex_get(tok[4 + i] + 1, (len - 1) / 2, (unsigned char *)dst))
			return false;
		dst[(len - 1) / 2] = '\0';
		*fields[i] = dst;
	}
	return true;
}

static int archive_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

kw_rv kw_audit_archives_verify(const char *dir, struct kw_audit_report *out)
{
	struct verify_ctx c;
	struct dirent *de;
	char **names = NULL, *line = NULL, *store = NULL, path[PATH_MAX];
	size_t n_names = 0, cap = 0, line_cap = 0;
	DIR *d;
	kw_rv rv = KW_OK;

	if (!dir || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit archives: no directory or report given");
	memset(out, 0, sizeof *out);
	memset(&c, 0, sizeof c);
	out->ok = true;
	c.rep = out;
	c.next = 1;
	d = opendir(dir);
	if (!d)
		return kw_error_set(KW_ERR_STORE, "audit archives %s: cannot open: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 7 || strcmp(de->d_name + len - 6, ".audit") != 0)
			continue;
		if (n_names == cap) {
			char **more = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *names);
			if (!more) {
				rv = kw_error_set(KW_ERR_NO_MEMORY, "audit archives: out of memory");
				break;
			}
			names = more;
		}
		if (!(names[n_names] = strdup(de->d_name))) {
			rv = kw_error_set(KW_ERR_NO_MEMORY, "audit archives: out of memory");
			break;
		}
		n_names++;
	}
	closedir(d);
	if (!rv && !(store = malloc(4 * (AUDIT_FIELD_MAX + 1))))
		rv = kw_error_set(KW_ERR_NO_MEMORY, "audit archives: out of memory");
	if (names)
		qsort(names, n_names, sizeof *names, archive_name_cmp);
	for (size_t i = 0; i < n_names && !rv && !c.bad; i++) {
		FILE *f;
		ssize_t got;
		unsigned long lineno = 0;

		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (!(f = fopen(path, "re"))) {
			rv = kw_error_set(KW_ERR_STORE, "audit archive %s: cannot open: %s", path, strerror(errno));
			break;
		}
		while (!rv && !c.bad && (got = getline(&line, &line_cap, f)) > 0) {
			struct kw_audit_rec r;

			lineno++;
			if ((size_t)got > 8 * (2 * AUDIT_FIELD_MAX + 40) || !parse_archive_line(line, &r, store)) {
				report_bad(&c, c.next, "%s line %lu: not an archived audit record", names[i], lineno);
				break;
			}
			rv = verify_cb(&c, &r);
			if (c.bad)
				snprintf(out->problem + strlen(out->problem), sizeof out->problem - strlen(out->problem),
					 " (%s line %lu)", names[i], lineno);
		}
		fclose(f);
	}
	free(line);
	free(store);
	for (size_t i = 0; i < n_names; i++)
		free(names[i]);
	free(names);
	if (rv) {
		out->ok = false;
		return rv;
	}
	if (!c.bad) {
		out->head_seq = c.next - 1;
		memcpy(out->head_hash, c.prev, KW_HASH_LEN);
	}
	return KW_OK;
}

/* ---- backup and restore ---- */

static const char BACKUP_ID_TEXT[] = "keyward backup id v1";

static kw_rv key_id_locked(struct kw_keystore *ks, unsigned char id[KW_BACKUP_KEY_ID_LEN])
{
	unsigned int n = 0;
	kw_rv rv = need_unlocked(ks);

	if (rv)
		return rv;
	if (!HMAC(EVP_sha256(), ks->mk, KW_MASTER_KEY_LEN, (const unsigned char *)BACKUP_ID_TEXT,
		  sizeof BACKUP_ID_TEXT - 1, id, &n) ||
	    n != KW_BACKUP_KEY_ID_LEN)
		return kw_error_set(KW_ERR_CRYPTO, "store: cannot compute the master-key id");
	return KW_OK;
}

kw_rv kw_keystore_key_id(struct kw_keystore *ks, unsigned char id[KW_BACKUP_KEY_ID_LEN])
{
	kw_rv rv;

	lock(ks);
	rv = key_id_locked(ks, id);
	unlock(ks);
	return rv;
}

static kw_rv schema_locked(struct kw_keystore *ks, uint32_t *schema)
{
	uint64_t v = 0;
	kw_rv rv = meta_get_u64(ks->b, "schema_version", &v);

	if (rv == KW_ERR_NOT_FOUND)
		return kw_error_set(KW_ERR_STORE, "store: meta has no schema version");
	if (!rv && v > UINT32_MAX)
		rv = kw_error_set(KW_ERR_STORE, "store: bad schema version");
	*schema = (uint32_t)v;
	return rv;
}

/* The partitions of a backup of `scope` ("" for all) into b. */
static kw_rv backup_partitions_locked(struct kw_keystore *ks, const char *scope, struct kw_backup *b)
{
	struct kw_partition_info *parts = NULL, one;
	size_t n = 0;
	kw_rv rv;

	if (scope[0]) {
		rv = ks->b->ops->partition_get(ks->b, scope, 0, &one, NULL, NULL);
		if (rv == KW_ERR_NOT_FOUND)
			return kw_error_set(KW_ERR_NOT_FOUND,
					    "backup: there is no partition \"%s\" (keyward-admin "
					    "partition list)",
					    scope);
		if (rv)
			return rv;
		parts = malloc(sizeof *parts);
		if (!parts)
			return kw_error_set(KW_ERR_NO_MEMORY, "backup: out of memory");
		parts[0] = one;
		n = 1;
	} else if ((rv = ks->b->ops->partition_list(ks->b, &parts, &n))) {
		return rv;
	}
	for (size_t i = 0; !rv && i < n; i++) {
		struct kw_backup_partition *p = kw_backup_add_partition(b);
		struct kw_partition_info info;

		if (!p) {
			rv = kw_error_set(KW_ERR_DATA_LEN, "backup: more than %u partitions", KW_BACKUP_PARTITIONS_MAX);
			break;
		}
		rv = ks->b->ops->partition_get(ks->b, NULL, parts[i].id, &info, p->setup_hash, &p->has_setup);
		if (!rv) {
			snprintf(p->name, sizeof p->name, "%s", info.name);
			p->source_id = info.id;
			if (!p->has_setup)
				memset(p->setup_hash, 0, sizeof p->setup_hash);
		}
	}
	free(parts);
	return rv;
}

static int backup_partition_index(const struct kw_backup *b, const char *name)
{
	for (size_t i = 0; i < b->n_partitions; i++)
		if (strcmp(b->partitions[i].name, name) == 0)
			return (int)i;
	return -1;
}

static kw_rv backup_credentials_locked(struct kw_keystore *ks, struct kw_backup *b)
{
	struct kw_credential_info *creds = NULL;
	size_t n = 0;
	kw_rv rv = ks->b->ops->credential_list(ks->b, b->scope[0] ? b->scope : NULL, &creds, &n);

	for (size_t i = 0; !rv && i < n; i++) {
		int at = backup_partition_index(b, creds[i].partition);
		struct kw_backup_credential *c;

		if (at < 0)
			continue;
		if (!(c = kw_backup_add_credential(b))) {
			rv = kw_error_set(KW_ERR_DATA_LEN, "backup: more than %u credentials",
					  KW_BACKUP_CREDENTIALS_MAX);
			break;
		}
		memcpy(c->fingerprint, creds[i].fingerprint, sizeof c->fingerprint);
		c->partition = (uint32_t)at;
		snprintf(c->subject, sizeof c->subject, "%s", creds[i].subject);
		c->created = creds[i].created;
		c->revoked = creds[i].revoked;
	}
	free(creds);
	return rv;
}

static kw_rv backup_objects_locked(struct kw_keystore *ks, struct kw_backup *b, unsigned *keys)
{
	kw_rv rv = KW_OK;

	for (size_t p = 0; !rv && p < b->n_partitions; p++) {
		uint64_t pid = b->partitions[p].source_id;
		struct kw_object_row *rows = NULL;
		size_t n = 0;

		rv = ks->b->ops->object_list(ks->b, pid, NULL, NULL, KW_CLASS_ANY, 0, 0, &rows, &n);
		for (size_t i = 0; !rv && i < n; i++) {
			struct kw_backup_object *o = kw_backup_add_object(b);

			if (!o) {
				rv = kw_error_set(KW_ERR_DATA_LEN, "backup: more than %u objects",
						  KW_BACKUP_OBJECTS_MAX);
				break;
			}
			o->partition = (uint32_t)p;
			if (is_sealed_class(rows[i].cls)) {
				/* the sealed columns, exactly as stored: never unsealed here */
				rv = ks->b->ops->object_get(ks->b, pid, rows[i].id, &o->row, &o->sealed);
				(*keys)++;
			} else {
				o->row = rows[i];
				rows[i].value = NULL; /* moved */
				rows[i].value_len = 0;
			}
		}
		kw_object_rows_free(rows, n);
	}
	return rv;
}

kw_rv kw_keystore_backup(struct kw_keystore *ks, const char *partition, unsigned char **out, size_t *len,
			 struct kw_backup_summary *sum)
{
	struct kw_backup *b = kw_backup_new(partition);
	char id_hex[2 * KW_BACKUP_KEY_ID_LEN + 1];
	unsigned keys = 0;
	kw_rv rv;

	*out = NULL;
	*len = 0;
	memset(sum, 0, sizeof *sum);
	if (!b)
		return kw_error_set(KW_ERR_NO_MEMORY, "backup: out of memory");
	b->created = now();
	lock(ks);
	rv = key_id_locked(ks, b->key_id);
	if (rv)
		goto unlocked;
	/* one transaction: the snapshot is consistent, and its audit record goes with it */
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto unlocked;
	rv = schema_locked(ks, &b->schema);
	if (!rv)
		rv = audit_head_locked(ks, &b->audit_seq, b->audit_hash);
	if (!rv)
		rv = backup_partitions_locked(ks, b->scope, b);
	if (!rv)
		rv = backup_credentials_locked(ks, b);
	if (!rv)
		rv = backup_objects_locked(ks, b, &keys);
	if (!rv)
		rv = kw_backup_encode(b, out, len);
	if (!rv) {
		kw_backup_hex(b->key_id, 8, id_hex);
		rv = audit_change_locked(ks, "hsm.backup",
					 "%s: %zu partition%s, %zu credential%s, %zu object%s (%u sealed key%s), "
					 "audit head %" PRIu64 ", master-key id %s, %zu bytes",
					 b->scope[0] ? b->scope : "every partition", b->n_partitions,
					 b->n_partitions == 1 ? "" : "s", b->n_credentials,
					 b->n_credentials == 1 ? "" : "s", b->n_objects, b->n_objects == 1 ? "" : "s",
					 keys, keys == 1 ? "" : "s", b->audit_seq, id_hex, *len);
	}
	rv = finish(ks->b, rv);
unlocked:
	unlock(ks);
	if (rv) {
		free(*out);
		*out = NULL;
		*len = 0;
	} else {
		sum->partitions = (unsigned)b->n_partitions;
		sum->credentials = (unsigned)b->n_credentials;
		sum->objects = (unsigned)b->n_objects;
		sum->keys = keys;
		sum->audit_seq = b->audit_seq;
		memcpy(sum->key_id, b->key_id, sizeof sum->key_id);
	}
	kw_backup_free(b);
	return rv;
}

/* ---- restore ---- */

struct id_index {
	uint64_t id;
	size_t at;
};

static int id_index_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct id_index *)a)->id, y = ((const struct id_index *)b)->id;

	return x < y ? -1 : x > y;
}

/* The backup's object with this id, or NULL. */
static const struct kw_backup_object *backup_object(const struct kw_backup *b, const struct id_index *idx, uint64_t id)
{
	struct id_index key = {id, 0}, *hit;

	hit = bsearch(&key, idx, b->n_objects, sizeof *idx, id_index_cmp);
	return hit ? &b->objects[hit->at] : NULL;
}

static kw_rv backup_refused(const struct kw_backup *b, const struct kw_backup_object *o, kw_rv rv, const char *why)
{
	return kw_error_set(rv,
			    "restore: object 0x%" PRIx64 " (%s/%s) of partition '%s' in the backup %s; nothing was "
			    "restored",
			    o->row.id, o->row.owner, o->row.name, b->partitions[o->partition].name, why);
}

/*
 * Unseals a key of the backup under its row as it was at the source (so
 * under the source's partition id) and checks it as unseal_row_locked
 * does: *plain (the caller wipes and frees it) is a private key's PKCS#8
 * DER or a secret key's bytes.
 */
static kw_rv backup_unseal_locked(struct kw_keystore *ks, const struct kw_backup *b, const struct id_index *idx,
				  const struct kw_backup_object *o, unsigned char **plain, size_t *plain_len)
{
	const struct kw_object_row *r = &o->row;
	unsigned char aad[AAD_MAX], *der = NULL, *spki = NULL;
	size_t aad_len, der_len = 0, spki_len = 0;
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	EVP_PKEY *pkey = NULL;
	const unsigned char *p;
	const struct kw_backup_object *pub;
	kw_rv rv;

	*plain = NULL;
	*plain_len = 0;
	rv = aad_build(r, r->cls == KW_CLASS_PRIVATE_KEY ? o->sealed.spki : NULL,
		       r->cls == KW_CLASS_PRIVATE_KEY ? o->sealed.spki_len : 0, aad, &aad_len);
	if (rv)
		return rv;
	rv = kw_unseal_key(ks->mk, aad, aad_len, &o->sealed, &der, &der_len);
	if (rv == KW_ERR_TAMPERED)
		return backup_refused(b, o, KW_ERR_TAMPERED,
				      "does not unseal under this HSM's master key: its row or sealed key was altered");
	if (rv)
		return rv;
	if (r->cls == KW_CLASS_SECRET_KEY) {
		if (r->key_type != KW_KEY_AES || der_len * 8 != r->bits)
			rv = backup_refused(b, o, KW_ERR_TAMPERED,
					    "has a secret key of another length than its row says");
		goto out;
	}
	p = der;
	if ((p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der_len)))
		pkey = EVP_PKCS82PKEY(p8);
	PKCS8_PRIV_KEY_INFO_free(p8);
	if (!pkey) {
		rv = backup_refused(b, o, KW_ERR_TAMPERED, "holds a sealed private key that does not decode");
		goto out;
	}
	rv = spki_der(pkey, &spki, &spki_len);
	if (rv)
		goto out;
	if (spki_len != o->sealed.spki_len || CRYPTO_memcmp(spki, o->sealed.spki, spki_len) != 0) {
		rv = backup_refused(b, o, KW_ERR_TAMPERED, "holds a private key that does not match its public key");
		goto out;
	}
	if (r->pair_id) {
		pub = backup_object(b, idx, r->pair_id);
		if (!pub || pub->partition != o->partition || pub->row.cls != KW_CLASS_PUBLIC_KEY ||
		    pub->row.pair_id != r->id || pub->row.value_len != spki_len ||
		    CRYPTO_memcmp(pub->row.value, spki, spki_len) != 0) {
			rv = backup_refused(b, o, KW_ERR_TAMPERED, "has no matching public half");
			goto out;
		}
	}
out:
	EVP_PKEY_free(pkey);
	free(spki);
	if (rv) {
		OPENSSL_cleanse(der, der_len);
		free(der);
		return rv;
	}
	*plain = der;
	*plain_len = der_len;
	return KW_OK;
}

/*
 * The checks a row of this class passes when it is made here (names,
 * CKA_ID, a certificate's DER, a data object's size, a public key's
 * SPKI), for the rows a backup brings: only sealed rows are authenticated
 * by the master key, the others are taken only if they could have been
 * made here.
 */
static kw_rv restore_check_row(const struct kw_backup *b, const struct kw_backup_object *o)
{
	const struct kw_object_row *r = &o->row;
	char why[400];
	kw_rv rv;

	if (r->cls == KW_CLASS_CERTIFICATE || r->cls == KW_CLASS_DATA) {
		struct kw_objspec spec = {.owner = r->owner,
					  .name = r->name,
					  .cls = r->cls,
					  .value = r->value,
					  .value_len = r->value_len,
					  .ckaid = r->ckaid,
					  .ckaid_len = r->ckaid_len,
					  .application = r->application,
					  .modifiable = r->modifiable};
		struct kw_object_row checked;

		rv = kw_keystore_object_row(&spec, &checked);
		kw_object_row_cleanup(&checked);
		if (!rv && (r->key_type != KW_KEY_NONE || r->usages || r->sensitive || r->pair_id))
			rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "a certificate or data object with key attributes");
	} else {
		rv = check_owner(r->owner);
		if (!rv)
			rv = check_name(r->name);
		if (!rv)
			rv = check_ckaid(r->ckaid, r->ckaid_len);
		if (!rv && r->application[0])
			rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "a key with an application");
		if (!rv && r->cls == KW_CLASS_PUBLIC_KEY) {
			const unsigned char *p = r->value;
			EVP_PKEY *pub = r->value_len && r->value_len <= KW_OBJECT_VALUE_MAX
						? d2i_PUBKEY(NULL, &p, (long)r->value_len)
						: NULL;

			if (!pub || p != r->value + r->value_len)
				rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "a public key that is not one DER SPKI");
			EVP_PKEY_free(pub);
			ERR_clear_error();
		} else if (!rv && r->value_len) {
			rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "a sealed key's row with a value");
		}
	}
	if (!rv)
		return KW_OK;
	snprintf(why, sizeof why, "could not be made here: %s", kw_last_error());
	return backup_refused(b, o, KW_ERR_ATTRIBUTE_VALUE, why);
}

static bool same_bytes(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The first field in which two rows differ (partition and id aside), or NULL. */
static const char *row_difference(const struct kw_object_row *a, const struct kw_object_row *b)
{
	if (strcmp(a->owner, b->owner) != 0)
		return "owner";
	if (strcmp(a->name, b->name) != 0)
		return "name";
	if (a->cls != b->cls || a->key_type != b->key_type || a->bits != b->bits || strcmp(a->curve, b->curve) != 0)
		return "type";
	if (a->sensitive != b->sensitive || a->extractable != b->extractable || a->modifiable != b->modifiable ||
	    a->never_extractable != b->never_extractable || a->always_sensitive != b->always_sensitive ||
	    a->usages != b->usages)
		return "attributes";
	if (a->pair_id != b->pair_id)
		return "pair";
	if (a->created != b->created)
		return "creation time";
	if (!same_bytes(a->ckaid, a->ckaid_len, b->ckaid, b->ckaid_len))
		return "CKA_ID";
	if (strcmp(a->application, b->application) != 0)
		return "application";
	if (!same_bytes(a->value, a->value_len, b->value, b->value_len))
		return "value";
	return NULL;
}

struct restore_plan {
	struct kw_backup *b;
	struct id_index *idx;
	uint64_t *target_pid;		/* per backup partition */
	struct kw_partition_info *here; /* the partitions before the restore */
	size_t n_here;
};

static kw_rv restore_partitions_locked(struct kw_keystore *ks, struct restore_plan *pl, struct kw_restore_summary *sum)
{
	for (size_t i = 0; i < pl->b->n_partitions; i++) {
		const struct kw_backup_partition *p = &pl->b->partitions[i];
		struct kw_partition_info info;
		kw_rv rv = ks->b->ops->partition_get(ks->b, p->name, 0, &info, NULL, NULL);

		if (rv == KW_OK) {
			pl->target_pid[i] = info.id;
			sum->partitions_kept++;
			continue;
		}
		if (rv != KW_ERR_NOT_FOUND)
			return rv;
		if ((rv = check_partition_name(p->name)))
			return rv;
		rv = ks->b->ops->partition_insert(ks->b, p->name, p->has_setup ? p->setup_hash : NULL, now(),
						  &pl->target_pid[i]);
		if (rv)
			return rv;
		sum->partitions_created++;
	}
	return KW_OK;
}

static kw_rv restore_credentials_locked(struct kw_keystore *ks, struct restore_plan *pl, struct kw_restore_summary *sum)
{
	struct kw_credential_info *creds = NULL;
	size_t n = 0;
	kw_rv rv = ks->b->ops->credential_list(ks->b, NULL, &creds, &n);

	for (size_t i = 0; !rv && i < pl->b->n_credentials; i++) {
		const struct kw_backup_credential *c = &pl->b->credentials[i];
		const char *pname = pl->b->partitions[c->partition].name;
		const struct kw_credential_info *found = NULL;
		char hex[17];

		for (size_t j = 0; j < n && !found; j++)
			if (memcmp(creds[j].fingerprint, c->fingerprint, KW_FINGERPRINT_LEN) == 0)
				found = &creds[j];
		if (found && strcmp(found->partition, pname) == 0) {
			/* a revocation in the backup carries over; restoring never lifts one */
			if (c->revoked && !found->revoked &&
			    (rv = ks->b->ops->credential_revoke(ks->b, c->fingerprint, c->revoked)))
				break;
			sum->credentials_kept++;
			continue;
		}
		kw_backup_hex(c->fingerprint, 8, hex);
		if (found) {
			rv = kw_error_set(
				KW_ERR_EXISTS,
				"restore: client credential %s (%s) belongs to partition '%s' here but to '%s' in "
				"the backup; nothing was restored",
				hex, c->subject, found->partition, pname);
			break;
		}
		rv = ks->b->ops->credential_insert(ks->b, c->fingerprint, pl->target_pid[c->partition], c->subject,
						   c->created);
		if (!rv && c->revoked)
			rv = ks->b->ops->credential_revoke(ks->b, c->fingerprint, c->revoked);
		if (!rv)
			sum->credentials_added++;
	}
	free(creds);
	return rv;
}

/*
 * Whether the object id is here already: KW_OK with *found set and, if so,
 * KW_OK when it is identical to the backup's, KW_ERR_EXISTS (saying how it
 * differs) when not.
 */
static kw_rv restore_existing_locked(struct kw_keystore *ks, struct restore_plan *pl, const struct kw_backup_object *o,
				     const unsigned char *plain, size_t plain_len, bool *found)
{
	struct kw_object_row ex;
	struct kw_sealed exs;
	const char *diff = NULL;
	char why[200];
	kw_rv rv = KW_ERR_NOT_FOUND;
	size_t at = 0;

	*found = false;
	memset(&ex, 0, sizeof ex);
	memset(&exs, 0, sizeof exs);
	for (at = 0; at < pl->n_here && rv == KW_ERR_NOT_FOUND; at++)
		rv = ks->b->ops->object_get(ks->b, pl->here[at].id, o->row.id, &ex, &exs);
	if (rv == KW_ERR_NOT_FOUND)
		return KW_OK;
	if (rv)
		return rv;
	*found = true;
	at--;
	if (pl->here[at].id != pl->target_pid[o->partition])
		diff = "partition";
	else
		diff = row_difference(&ex, &o->row);
	if (!diff && o->row.cls == KW_CLASS_PRIVATE_KEY &&
	    !same_bytes(exs.spki, exs.spki_len, o->sealed.spki, o->sealed.spki_len))
		diff = "key";
	if (!diff && o->row.cls == KW_CLASS_SECRET_KEY) {
		unsigned char *bytes = NULL;
		size_t len = 0;

		rv = unseal_secret_locked(ks, &ex, &exs, &bytes, &len);
		if (!rv && (len != plain_len || CRYPTO_memcmp(bytes, plain, len) != 0))
			diff = "key";
		if (bytes) {
			OPENSSL_cleanse(bytes, len);
			free(bytes);
		}
	}
	if (!rv && diff) {
		snprintf(why, sizeof why, "exists on this HSM (in partition '%s') and differs in its %s",
			 pl->here[at].name, diff);
		rv = backup_refused(pl->b, o, KW_ERR_EXISTS, why);
	}
	kw_object_row_cleanup(&ex);
	kw_sealed_cleanup(&exs);
	return rv;
}

/* KW_ERR_EXISTS when another object here takes o's owner and name (any key for a key, else its class). */
static kw_rv restore_name_free_locked(struct kw_keystore *ks, struct restore_plan *pl, const struct kw_backup_object *o)
{
	struct kw_object_row *rows = NULL;
	size_t n = 0;
	kw_rv rv = ks->b->ops->object_list(ks->b, pl->target_pid[o->partition], o->row.owner, o->row.name, KW_CLASS_ANY,
					   0, 0, &rows, &n);

	for (size_t i = 0; !rv && i < n; i++) {
		const struct kw_object_row *r = &rows[i];

		if (r->id == o->row.id || (o->row.pair_id && r->id == o->row.pair_id))
			continue;
		if (r->cls == o->row.cls || (is_key_class(r->cls) && is_key_class(o->row.cls))) {
			char why[120];
			snprintf(why, sizeof why, "has the name of object 0x%" PRIx64 " on this HSM", r->id);
			rv = backup_refused(pl->b, o, KW_ERR_EXISTS, why);
		}
	}
	kw_object_rows_free(rows, n);
	return rv;
}

static kw_rv restore_objects_locked(struct kw_keystore *ks, struct restore_plan *pl, struct kw_restore_summary *sum)
{
	kw_rv rv = KW_OK;

	for (size_t i = 0; !rv && i < pl->b->n_objects; i++) {
		const struct kw_backup_object *o = &pl->b->objects[i];
		struct kw_object_row row = o->row;
		struct kw_sealed fresh;
		unsigned char *plain = NULL;
		size_t plain_len = 0;
		bool sealed = is_sealed_class(o->row.cls), found = false;

		memset(&fresh, 0, sizeof fresh);
		row.partition_id = pl->target_pid[o->partition];
		if (sealed)
			rv = backup_unseal_locked(ks, pl->b, pl->idx, o, &plain, &plain_len);
		if (!rv)
			rv = restore_existing_locked(ks, pl, o, plain, plain_len, &found);
		if (!rv && found)
			sum->objects_kept++;
		if (!rv && !found)
			rv = restore_name_free_locked(ks, pl, o);
		if (!rv && !found && sealed && row.partition_id != o->row.partition_id) {
			/* the partition id is bound into the associated data: rebind it, inside the HSM */
			rv = seal_bytes_locked(ks, &row, plain, plain_len,
					       o->row.cls == KW_CLASS_PRIVATE_KEY ? o->sealed.spki : NULL,
					       o->sealed.spki_len, &fresh);
			if (!rv)
				sum->keys_resealed++;
		}
		if (!rv && !found) {
			rv = ks->b->ops->object_insert(ks->b, &row,
						       !sealed	      ? NULL
						       : fresh.sealed ? &fresh
								      : &o->sealed);
			if (rv == KW_ERR_EXISTS)
				rv = backup_refused(pl->b, o, KW_ERR_EXISTS, "collides with an object on this HSM");
			if (!rv)
				sum->objects_added++;
		}
		kw_sealed_cleanup(&fresh);
		if (plain) {
			OPENSSL_cleanse(plain, plain_len);
			free(plain);
		}
	}
	return rv;
}

kw_rv kw_keystore_restore(struct kw_keystore *ks, const unsigned char *buf, size_t len, struct kw_restore_summary *sum)
{
	struct restore_plan pl;
	unsigned char mine[KW_BACKUP_KEY_ID_LEN];
	char theirs_hex[17], mine_hex[17];
	uint32_t schema = 0;
	kw_rv rv;

	memset(&pl, 0, sizeof pl);
	memset(sum, 0, sizeof *sum);
	rv = kw_backup_decode(buf, len, &pl.b);
	if (rv)
		return rv;
	sum->created = pl.b->created;
	pl.idx = calloc(pl.b->n_objects ? pl.b->n_objects : 1, sizeof *pl.idx);
	pl.target_pid = calloc(pl.b->n_partitions ? pl.b->n_partitions : 1, sizeof *pl.target_pid);
	if (!pl.idx || !pl.target_pid) {
		rv = kw_error_set(KW_ERR_NO_MEMORY, "restore: out of memory");
		goto out;
	}
	for (size_t i = 0; i < pl.b->n_objects; i++) {
		pl.idx[i].id = pl.b->objects[i].row.id;
		pl.idx[i].at = i;
	}
	qsort(pl.idx, pl.b->n_objects, sizeof *pl.idx, id_index_cmp);
	lock(ks);
	rv = key_id_locked(ks, mine);
	if (!rv && CRYPTO_memcmp(mine, pl.b->key_id, sizeof mine) != 0) {
		kw_backup_hex(pl.b->key_id, 8, theirs_hex);
		kw_backup_hex(mine, 8, mine_hex);
		rv = kw_error_set(KW_ERR_AUTH,
				  "restore: the backup was sealed under another master key (its master-key id %s, this "
				  "HSM's %s): restore it into an HSM that holds the same master key; nothing was "
				  "restored",
				  theirs_hex, mine_hex);
	}
	if (!rv)
		rv = schema_locked(ks, &schema);
	if (!rv && pl.b->schema > schema)
		rv = kw_error_set(KW_ERR_VERSION,
				  "restore: the backup comes from a newer keystore (schema %" PRIu32
				  ", this keywardd has %" PRIu32 "): upgrade keywardd first; nothing was restored",
				  pl.b->schema, schema);
	/* every row must be one this HSM could have made, every sealed key authenticate, before anything is written */
	for (size_t i = 0; !rv && i < pl.b->n_objects; i++) {
		unsigned char *plain = NULL;
		size_t plain_len = 0;

		rv = restore_check_row(pl.b, &pl.b->objects[i]);
		if (rv || !is_sealed_class(pl.b->objects[i].row.cls))
			continue;
		rv = backup_unseal_locked(ks, pl.b, pl.idx, &pl.b->objects[i], &plain, &plain_len);
		if (plain) {
			OPENSSL_cleanse(plain, plain_len);
			free(plain);
		}
	}
	if (!rv)
		rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto unlocked;
	rv = ks->b->ops->partition_list(ks->b, &pl.here, &pl.n_here);
	if (!rv)
		rv = restore_partitions_locked(ks, &pl, sum);
	if (!rv)
		rv = restore_credentials_locked(ks, &pl, sum);
	if (!rv)
		rv = restore_objects_locked(ks, &pl, sum);
	if (!rv) {
		kw_backup_hex(pl.b->key_id, 8, theirs_hex);
		rv = audit_change_locked(
			ks, "hsm.restore",
			"backup of %s taken at %" PRId64 " (source audit head %" PRIu64
			", master-key id %s): partitions "
			"%u created, %u kept; credentials %u added, %u kept; objects %u added, %u identical kept; %u "
			"keys resealed",
			pl.b->scope[0] ? pl.b->scope : "every partition", pl.b->created, pl.b->audit_seq, theirs_hex,
			sum->partitions_created, sum->partitions_kept, sum->credentials_added, sum->credentials_kept,
			sum->objects_added, sum->objects_kept, sum->keys_resealed);
	}
	rv = finish(ks->b, rv);
unlocked:
	unlock(ks);
out:
	OPENSSL_cleanse(mine, sizeof mine);
	free(pl.here);
	free(pl.idx);
	free(pl.target_pid);
	kw_backup_free(pl.b);
	return rv;
}
