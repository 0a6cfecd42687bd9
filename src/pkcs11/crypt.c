/*
 * keyward-pkcs11.so: decryption, encryption and digests.
 *
 * Decryption (RSA: PKCS#1 v1.5, OAEP, raw X.509) needs the private key,
 * so it runs on the HSM: C_Decrypt sends the ciphertext and the key's id
 * in one request. Encryption with a public key and digests need no secret
 * and run here with OpenSSL, as verification does.
 *
 * Single-part and multi-part calls both work; RSA takes one block, so the
 * parts are gathered (at most P11_RAW_DATA_MAX bytes) and handled at the end.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "p11.h"

void p11_crypt_cleanup(struct p11_crypt *op)
{
	EVP_PKEY_CTX_free(op->pctx);
	EVP_MD_CTX_free(op->mdctx);
	OPENSSL_cleanse(op, sizeof *op);
}

/* The RSA mechanism m (PKCS, X_509 or OAEP with its parameters) into kwm, the OAEP label into op->label. */
static CK_RV rsa_mechanism(struct p11_crypt *op, CK_MECHANISM_PTR m, CK_FLAGS need, struct kw_mechanism *kwm)
{
	enum kw_key_type kt;
	enum kw_hash hash;
	CK_RV rv;

	memset(kwm, 0, sizeof *kwm);
	if ((rv = p11_mechanism_of(m->mechanism, need, &kt, &kwm->mech, &hash)))
		return rv;
	if (kwm->mech != KW_MECH_RSA_OAEP)
		return m->pParameter || m->ulParameterLen ? CKR_MECHANISM_PARAM_INVALID : CKR_OK;
	{
		CK_RSA_PKCS_OAEP_PARAMS *pp = m->pParameter;

		if (!pp || m->ulParameterLen != sizeof *pp)
			return CKR_MECHANISM_PARAM_INVALID;
		kwm->hash = p11_hash_from_ckm(pp->hashAlg);
		kwm->mgf1_hash = p11_hash_from_mgf(pp->mgf);
		if (!kwm->hash || !kwm->mgf1_hash)
			return CKR_MECHANISM_PARAM_INVALID;
		if (pp->source && pp->source != CKZ_DATA_SPECIFIED)
			return CKR_MECHANISM_PARAM_INVALID;
		if (pp->ulSourceDataLen) {
			if (!pp->pSourceData || pp->ulSourceDataLen > sizeof op->label)
				return CKR_MECHANISM_PARAM_INVALID;
			memcpy(op->label, pp->pSourceData, pp->ulSourceDataLen);
			kwm->label = op->label;
			kwm->label_len = pp->ulSourceDataLen;
		}
	}
	return CKR_OK;
}

CK_RV p11_decrypt_init_locked(struct p11_crypt *op, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	const kw_object *o = p11_object_get_locked(key);
	CK_RV rv;

	memset(op, 0, sizeof *op);
	if (!o)
		return CKR_KEY_HANDLE_INVALID;
	if ((rv = rsa_mechanism(op, m, CKF_DECRYPT, &op->kwm))) {
		p11_crypt_cleanup(op);
		return rv;
	}
	if (kw_object_class(o) != KW_CLASS_PRIVATE_KEY || kw_object_key_type(o) != KW_KEY_RSA) {
		p11_crypt_cleanup(op);
		return CKR_KEY_TYPE_INCONSISTENT;
	}
	/* raw RSA decryption is raw RSA signing: keywardd wants both usages, refuse here first */
	if (!(kw_object_usages(o) & KW_USAGE_DECRYPT) ||
	    (op->kwm.mech == KW_MECH_RSA_RAW && !(kw_object_usages(o) & KW_USAGE_SIGN))) {
		p11_crypt_cleanup(op);
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	}
	op->key_id = kw_object_id(o);
	op->out_max = (kw_object_bits(o) + 7) / 8;
	op->active = 1;
	return CKR_OK;
}

CK_RV p11_crypt_update(struct p11_crypt *op, const unsigned char *in, size_t len)
{
	if (len > sizeof op->buf - op->len)
		return CKR_DATA_LEN_RANGE;
	if (len)
		memcpy(op->buf + op->len, in, len);
	op->len += len;
	return CKR_OK;
}

CK_RV p11_decrypt_final(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	unsigned char in[P11_RAW_DATA_MAX], plain[P11_RAW_DATA_MAX], label[P11_RAW_DATA_MAX];
	struct p11_session *s;
	struct kw_mechanism kwm;
	uint64_t key_id;
	size_t in_len, plain_len = sizeof plain;
	kw_client *c;
	kw_rv krv;
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&p11.lock);
	if (!(s = p11_session_get_locked(h)))
		rv = CKR_SESSION_HANDLE_INVALID;
	else if (!s->decrypt.active)
		rv = CKR_OPERATION_NOT_INITIALIZED;
	else if (s->decrypt.len != s->decrypt.out_max)
		rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
	else if (!out) {
		/* the size query: the plaintext is at most the modulus long */
		*out_len = s->decrypt.out_max;
		pthread_mutex_unlock(&p11.lock);
		return CKR_OK;
	}
	if (rv) {
		if (s && rv != CKR_OPERATION_NOT_INITIALIZED)
			p11_crypt_cleanup(&s->decrypt);
		pthread_mutex_unlock(&p11.lock);
		return rv;
	}
	in_len = s->decrypt.len;
	memcpy(in, s->decrypt.buf, in_len);
	kwm = s->decrypt.kwm;
	if (kwm.label) {
		memcpy(label, kwm.label, kwm.label_len);
		kwm.label = label;
	}
	key_id = s->decrypt.key_id;
	c = p11_client_for_locked(key_id);
	pthread_mutex_unlock(&p11.lock);

	/* the HSM request runs unlocked, as signing does */
	krv = kw_decrypt(c, key_id, &kwm, in, in_len, plain, &plain_len);
	if (krv)
		rv = p11_ckr(krv, "decrypting");
	else if (*out_len < plain_len)
		rv = CKR_BUFFER_TOO_SMALL;
	else
		memcpy(out, plain, plain_len);
	if (!krv)
		*out_len = plain_len;
	OPENSSL_cleanse(plain, sizeof plain);
	OPENSSL_cleanse(in, sizeof in);
	/* a buffer too small keeps the operation for the next call; anything else ends it */
	pthread_mutex_lock(&p11.lock);
	if (rv != CKR_BUFFER_TOO_SMALL && (s = p11_session_get_locked(h)))
		p11_crypt_cleanup(&s->decrypt);
	pthread_mutex_unlock(&p11.lock);
	return rv;
}

CK_RV p11_encrypt_init_locked(struct p11_crypt *op, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	const kw_object *o = p11_object_get_locked(key);
	const unsigned char *spki, *p;
	size_t spki_len = 0;
	EVP_PKEY *pub = NULL;
	int padding, ok;
	CK_RV rv;

	memset(op, 0, sizeof *op);
	if (!o)
		return CKR_KEY_HANDLE_INVALID;
	if ((rv = rsa_mechanism(op, m, CKF_ENCRYPT, &op->kwm)))
		goto fail;
	rv = CKR_KEY_TYPE_INCONSISTENT;
	if (kw_object_key_type(o) != KW_KEY_RSA || kw_object_class(o) == KW_CLASS_SECRET_KEY)
		goto fail;
	rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
	if (!(kw_object_usages(o) & KW_USAGE_DECRYPT))
		goto fail;
	rv = CKR_KEY_HANDLE_INVALID;
	spki = p11_public_key_locked(o, &spki_len);
	p = spki;
	if (!spki || !(pub = d2i_PUBKEY(NULL, &p, (long)spki_len)))
		goto fail;
	padding = op->kwm.mech == KW_MECH_RSA_OAEP    ? RSA_PKCS1_OAEP_PADDING
		  : op->kwm.mech == KW_MECH_RSA_PKCS1 ? RSA_PKCS1_PADDING
						      : RSA_NO_PADDING;
	rv = CKR_HOST_MEMORY;
	op->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
	ok = op->pctx && EVP_PKEY_encrypt_init(op->pctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(op->pctx, padding) == 1;
	if (ok && padding == RSA_PKCS1_OAEP_PADDING) {
		unsigned char *label = op->kwm.label_len ? OPENSSL_memdup(op->kwm.label, op->kwm.label_len) : NULL;

		ok = EVP_PKEY_CTX_set_rsa_oaep_md(op->pctx, p11_hash_md(op->kwm.hash)) == 1 &&
		     EVP_PKEY_CTX_set_rsa_mgf1_md(op->pctx, p11_hash_md(op->kwm.mgf1_hash)) == 1 &&
		     (!label || EVP_PKEY_CTX_set0_rsa_oaep_label(op->pctx, label, (int)op->kwm.label_len) == 1);
		if (!ok)
			OPENSSL_free(label);
	}
	op->out_max = (size_t)EVP_PKEY_get_size(pub);
	EVP_PKEY_free(pub);
	if (!ok)
		goto fail;
	op->active = 1;
	return CKR_OK;
fail:
	p11_crypt_cleanup(op);
	return rv;
}

CK_RV p11_encrypt_final_locked(struct p11_crypt *op, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	size_t len = op->out_max;

	if (!out || *out_len < op->out_max) {
		*out_len = op->out_max;
		return out ? CKR_BUFFER_TOO_SMALL : CKR_OK;
	}
	if (EVP_PKEY_encrypt(op->pctx, out, &len, op->buf, op->len) != 1)
		return CKR_DATA_LEN_RANGE; /* too long for the padding, or raw data not below the modulus */
	*out_len = len;
	return CKR_OK;
}

CK_RV p11_digest_init_locked(struct p11_crypt *op, CK_MECHANISM_PTR m)
{
	enum kw_key_type kt;
	enum kw_mech kw;
	enum kw_hash hash;
	CK_RV rv;

	memset(op, 0, sizeof *op);
	if ((rv = p11_mechanism_of(m->mechanism, CKF_DIGEST, &kt, &kw, &hash)))
		return rv;
	if (m->pParameter || m->ulParameterLen)
		return CKR_MECHANISM_PARAM_INVALID;
	if (!(op->mdctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex(op->mdctx, p11_hash_md(hash), NULL) != 1) {
		p11_crypt_cleanup(op);
		return CKR_HOST_MEMORY;
	}
	op->out_max = (size_t)EVP_MD_CTX_get_size(op->mdctx);
	op->active = 1;
	return CKR_OK;
}

CK_RV p11_digest_update(struct p11_crypt *op, const unsigned char *in, size_t len)
{
	return EVP_DigestUpdate(op->mdctx, in, len) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
}

CK_RV p11_digest_final_locked(struct p11_crypt *op, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	unsigned n = 0;

	if (!out || *out_len < op->out_max) {
		*out_len = op->out_max;
		return out ? CKR_BUFFER_TOO_SMALL : CKR_OK;
	}
	if (EVP_DigestFinal_ex(op->mdctx, out, &n) != 1)
		return CKR_FUNCTION_FAILED;
	*out_len = n;
	return CKR_OK;
}
