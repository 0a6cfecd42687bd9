/* AES-256-GCM seal/unseal and the two-layer (data key, master key) sealing of private keys. */
#include "keystore/seal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/error.h"

void kw_sealed_cleanup(struct kw_sealed *s)
{
	if (!s)
		return;
	free(s->spki);
	free(s->wrapped_dek);
	free(s->sealed);
	memset(s, 0, sizeof *s);
}

kw_rv kw_gcm_seal(const unsigned char key[KW_AES_KEY_LEN], const unsigned char *aad, size_t aad_len,
		  const unsigned char *pt, size_t pt_len, unsigned char **out, size_t *out_len)
{
	EVP_CIPHER_CTX *ctx = NULL;
	unsigned char *buf = NULL;
	size_t total;
	int len = 0, fin = 0;
	kw_rv rv = KW_OK;

	*out = NULL;
	*out_len = 0;
	if (pt_len > INT_MAX - 64 || aad_len > INT_MAX)
		return kw_error_set(KW_ERR_DATA_LEN, "store: data too long to seal");
	total = KW_GCM_NONCE_LEN + pt_len + KW_GCM_TAG_LEN;
	buf = malloc(total);
	ctx = EVP_CIPHER_CTX_new();
	if (!buf || !ctx) {
		rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory sealing");
		goto out;
	}
	if (RAND_bytes(buf, KW_GCM_NONCE_LEN) != 1 ||
	    EVP_EncryptInit_ex2(ctx, EVP_aes_256_gcm(), key, buf, NULL) != 1 ||
	    (aad_len && EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1) ||
	    EVP_EncryptUpdate(ctx, buf + KW_GCM_NONCE_LEN, &len, pt, (int)pt_len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, buf + KW_GCM_NONCE_LEN + len, &fin) != 1 ||
	    (size_t)(len + fin) != pt_len ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, KW_GCM_TAG_LEN, buf + KW_GCM_NONCE_LEN + pt_len) != 1) {
		rv = kw_error_set(KW_ERR_CRYPTO, "store: AES-256-GCM sealing failed");
		goto out;
	}
	*out = buf;
	*out_len = total;
	buf = NULL;
out:
	EVP_CIPHER_CTX_free(ctx);
	if (buf) {
		OPENSSL_cleanse(buf, total);
		free(buf);
	}
	return rv;
}

kw_rv kw_gcm_open(const unsigned char key[KW_AES_KEY_LEN], const unsigned char *aad, size_t aad_len,
		  const unsigned char *in, size_t in_len, unsigned char **pt, size_t *pt_len)
{
	EVP_CIPHER_CTX *ctx = NULL;
	unsigned char *buf = NULL, tag[KW_GCM_TAG_LEN];
	size_t ct_len;
	int len = 0, fin = 0;
	kw_rv rv = KW_OK;

	*pt = NULL;
	*pt_len = 0;
	if (!in || in_len < KW_GCM_NONCE_LEN + KW_GCM_TAG_LEN || in_len > INT_MAX || aad_len > INT_MAX)
		return KW_ERR_TAMPERED;
	ct_len = in_len - KW_GCM_NONCE_LEN - KW_GCM_TAG_LEN;
	buf = malloc(ct_len ? ct_len : 1);
	ctx = EVP_CIPHER_CTX_new();
	if (!buf || !ctx) {
		rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory unsealing");
		goto out;
	}
	memcpy(tag, in + in_len - KW_GCM_TAG_LEN, KW_GCM_TAG_LEN);
	if (EVP_DecryptInit_ex2(ctx, EVP_aes_256_gcm(), key, in, NULL) != 1 ||
	    (aad_len && EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1) ||
	    EVP_DecryptUpdate(ctx, buf, &len, in + KW_GCM_NONCE_LEN, (int)ct_len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KW_GCM_TAG_LEN, tag) != 1) {
		rv = kw_error_set(KW_ERR_CRYPTO, "store: AES-256-GCM unsealing failed");
		goto out;
	}
	if (EVP_DecryptFinal_ex(ctx, buf + len, &fin) != 1) {
		rv = KW_ERR_TAMPERED;
		goto out;
	}
	*pt = buf;
	*pt_len = ct_len;
	buf = NULL;
out:
	EVP_CIPHER_CTX_free(ctx);
	if (buf) {
		OPENSSL_cleanse(buf, ct_len);
		free(buf);
	}
	return rv;
}

kw_rv kw_seal_key(const unsigned char mk[KW_AES_KEY_LEN], const unsigned char *aad, size_t aad_len,
		  const unsigned char *der, size_t der_len, struct kw_sealed *s)
{
	unsigned char dek[KW_AES_KEY_LEN];
	kw_rv rv;

	if (RAND_bytes(dek, sizeof dek) != 1)
		return kw_error_set(KW_ERR_CRYPTO, "store: no random bytes for a data key");
	rv = kw_gcm_seal(dek, aad, aad_len, der, der_len, &s->sealed, &s->sealed_len);
	if (!rv)
		rv = kw_gcm_seal(mk, aad, aad_len, dek, sizeof dek, &s->wrapped_dek, &s->wrapped_dek_len);
	if (rv) {
		free(s->sealed);
		s->sealed = NULL;
		s->sealed_len = 0;
	}
	OPENSSL_cleanse(dek, sizeof dek);
	return rv;
}

kw_rv kw_unseal_key(const unsigned char mk[KW_AES_KEY_LEN], const unsigned char *aad, size_t aad_len,
		    const struct kw_sealed *s, unsigned char **der, size_t *der_len)
{
	unsigned char *dek = NULL;
	size_t dek_len = 0;
	kw_rv rv;

	rv = kw_gcm_open(mk, aad, aad_len, s->wrapped_dek, s->wrapped_dek_len, &dek, &dek_len);
	if (rv)
		return rv;
	if (dek_len != KW_AES_KEY_LEN)
		rv = KW_ERR_TAMPERED;
	else
		rv = kw_gcm_open(dek, aad, aad_len, s->sealed, s->sealed_len, der, der_len);
	OPENSSL_cleanse(dek, dek_len);
	free(dek);
	return rv;
}
