/*
 * The associated data that binds a sealed key to every policy field of its
 * row, and the sealing glue over seal.c: sealing a private or secret key
 * under its row, unsealing it with every check (both GCM layers, the public
 * half), and reporting a row that fails as tampered.
 */
#include "keystore/keystore.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "common/log.h"
#include "keystore/backend.h"
#include "keystore/internal.h"
#include "keystore/seal.h"

#define AAD_VERSION 1

kw_rv kw_spki_der(EVP_PKEY *pkey, unsigned char **out, size_t *len)
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
kw_rv kw_pkcs8_der(EVP_PKEY *pkey, unsigned char **out, size_t *len)
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
kw_rv kw_aad_build(const struct kw_object_row *r, const unsigned char *spki, size_t spki_len,
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
kw_rv kw_seal_bytes_locked(struct kw_keystore *ks, const struct kw_object_row *r, const unsigned char *key,
			   size_t key_len, const unsigned char *spki, size_t spki_len, struct kw_sealed *out)
{
	unsigned char aad[AAD_MAX];
	size_t aad_len;
	kw_rv rv;

	memset(out, 0, sizeof *out);
	rv = kw_aad_build(r, spki, spki_len, aad, &aad_len);
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

kw_rv kw_seal_row_locked(struct kw_keystore *ks, const struct kw_object_row *r, EVP_PKEY *pkey,
			 const unsigned char *spki, size_t spki_len, struct kw_sealed *out)
{
	unsigned char *der = NULL;
	size_t der_len = 0;
	kw_rv rv;

	memset(out, 0, sizeof *out);
	rv = kw_pkcs8_der(pkey, &der, &der_len);
	if (rv)
		return rv;
	rv = kw_seal_bytes_locked(ks, r, der, der_len, spki, spki_len, out);
	OPENSSL_cleanse(der, der_len);
	free(der);
	return rv;
}

kw_rv kw_tampered_locked(struct kw_keystore *ks, const struct kw_object_row *r, const char *why)
{
	char pname[KW_PARTITION_NAME_MAX + 1];

	kw_part_name_locked(ks, r->partition_id, pname);
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
kw_rv kw_unseal_row_locked(struct kw_keystore *ks, const struct kw_object_row *r, const struct kw_sealed *s,
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
		return kw_tampered_locked(ks, r, "the sealed key material is missing");
	rv = kw_aad_build(r, s->spki, s->spki_len, aad, &aad_len);
	if (rv)
		return rv;
	rv = kw_unseal_key(ks->mk, aad, aad_len, s, &der, &der_len);
	if (rv == KW_ERR_TAMPERED)
		return kw_tampered_locked(ks, r, "the row was modified outside keywardd");
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
		return kw_tampered_locked(ks, r, "the sealed private key does not decode");
	rv = kw_spki_der(pkey, &spki, &spki_len);
	if (rv)
		goto out;
	if (spki_len != s->spki_len || CRYPTO_memcmp(spki, s->spki, spki_len) != 0) {
		rv = kw_tampered_locked(ks, r, "the private key does not match its stored public key");
		goto out;
	}
	if (r->pair_id) {
		rv = ks->b->ops->object_get(ks->b, r->partition_id, r->pair_id, &pub, NULL);
		if (rv == KW_ERR_NOT_FOUND) {
			rv = kw_tampered_locked(ks, r, "its public half is missing (deleted outside keywardd)");
			goto out;
		}
		if (rv)
			goto out;
		if (pub.cls != KW_CLASS_PUBLIC_KEY || pub.pair_id != r->id || pub.key_type != r->key_type ||
		    pub.bits != r->bits || strcmp(pub.curve, r->curve) != 0 || pub.value_len != spki_len ||
		    CRYPTO_memcmp(pub.value, spki, spki_len) != 0) {
			rv = kw_tampered_locked(ks, r, "its public half does not match the private key");
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
kw_rv kw_unseal_secret_locked(struct kw_keystore *ks, const struct kw_object_row *r, const struct kw_sealed *s,
			      unsigned char **key, size_t *key_len)
{
	unsigned char aad[AAD_MAX], *bytes = NULL;
	size_t aad_len, len = 0;
	kw_rv rv;

	*key = NULL;
	*key_len = 0;
	if (!s->sealed || !s->wrapped_dek)
		return kw_tampered_locked(ks, r, "the sealed key material is missing");
	rv = kw_aad_build(r, NULL, 0, aad, &aad_len);
	if (rv)
		return rv;
	rv = kw_unseal_key(ks->mk, aad, aad_len, s, &bytes, &len);
	if (rv == KW_ERR_TAMPERED)
		return kw_tampered_locked(ks, r, "the row was modified outside keywardd");
	if (rv)
		return rv;
	if (!kw_secret_len_ok(r->key_type, len) || len * 8 != r->bits) {
		OPENSSL_cleanse(bytes, len);
		free(bytes);
		return kw_tampered_locked(ks, r, "the sealed secret key does not have the length its row says");
	}
	*key = bytes;
	*key_len = len;
	return KW_OK;
}
