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
	if (op->data) {
		OPENSSL_cleanse(op->data, op->data_cap);
		free(op->data);
	}
	free(op->aad);
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

/* The AES mechanism of m (ECB, CBC, CBC_PAD, GCM), or KW_MECH_NONE. */
static enum kw_mech aes_mech_of(CK_MECHANISM_TYPE t)
{
	switch (t) {
	case CKM_AES_ECB:
		return KW_MECH_AES_ECB;
	case CKM_AES_CBC:
		return KW_MECH_AES_CBC;
	case CKM_AES_CBC_PAD:
		return KW_MECH_AES_CBC_PAD;
	case CKM_AES_GCM:
		return KW_MECH_AES_GCM;
	default:
		return KW_MECH_NONE;
	}
}

/* An AES operation with secret key o: the key checked, the parameters copied into op. */
static CK_RV aes_init(struct p11_crypt *op, CK_MECHANISM_PTR m, const kw_object *o)
{
	op->aes_mech = aes_mech_of(m->mechanism);
	if (!p11.logged_in)
		return CKR_USER_NOT_LOGGED_IN;
	if (kw_object_class(o) != KW_CLASS_SECRET_KEY || kw_object_key_type(o) != KW_KEY_AES)
		return CKR_KEY_TYPE_INCONSISTENT;
	if (!(kw_object_usages(o) & KW_USAGE_DECRYPT))
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	switch (op->aes_mech) {
	case KW_MECH_AES_ECB:
		if (m->pParameter || m->ulParameterLen)
			return CKR_MECHANISM_PARAM_INVALID;
		break;
	case KW_MECH_AES_CBC:
	case KW_MECH_AES_CBC_PAD:
		if (!m->pParameter || m->ulParameterLen != 16)
			return CKR_MECHANISM_PARAM_INVALID;
		memcpy(op->iv, m->pParameter, 16);
		op->iv_len = 16;
		break;
	default: {
		CK_GCM_PARAMS *g = m->pParameter;

		if (!g || m->ulParameterLen != sizeof *g || !g->pIv || g->ulIvLen == 0 || g->ulIvLen > sizeof op->iv ||
		    (g->ulAADLen && !g->pAAD) || g->ulAADLen > 65536 || g->ulTagBits % 8 || g->ulTagBits < 96 ||
		    g->ulTagBits > 128)
			return CKR_MECHANISM_PARAM_INVALID;
		memcpy(op->iv, g->pIv, g->ulIvLen);
		op->iv_len = g->ulIvLen;
		op->tag_bits = (unsigned)g->ulTagBits;
		if (g->ulAADLen) {
			if (!(op->aad = OPENSSL_memdup(g->pAAD, g->ulAADLen)))
				return CKR_HOST_MEMORY;
			op->aad_len = g->ulAADLen;
		}
		break;
	}
	}
	op->key_id = kw_object_id(o);
	op->active = 1;
	return CKR_OK;
}

CK_RV p11_decrypt_init_locked(struct p11_crypt *op, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	const kw_object *o = p11_object_get_locked(key);
	CK_RV rv;

	memset(op, 0, sizeof *op);
	if (!o)
		return CKR_KEY_HANDLE_INVALID;
	if (aes_mech_of(m->mechanism)) {
		if ((rv = aes_init(op, m, o)))
			p11_crypt_cleanup(op);
		return rv;
	}
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

CK_RV p11_gather(unsigned char **data, size_t *cap, size_t *len, const unsigned char *in, size_t n, size_t max)
{
	if (n > max - *len)
		return CKR_DATA_LEN_RANGE;
	if (*len + n > *cap) {
		/* a fresh buffer, so that no copy of the data is left unwiped */
		size_t c = *len + n < 4096 ? 4096 : 2 * (*len + n);
		unsigned char *d;

		if (c > max)
			c = max;
		if (!(d = malloc(c)))
			return CKR_HOST_MEMORY;
		if (*len)
			memcpy(d, *data, *len);
		if (*data) {
			OPENSSL_cleanse(*data, *cap);
			free(*data);
		}
		*data = d;
		*cap = c;
	}
	if (n)
		memcpy(*data + *len, in, n);
	*len += n;
	return CKR_OK;
}

CK_RV p11_crypt_update(struct p11_crypt *op, const unsigned char *in, size_t len)
{
	if (op->aes_mech)
		return p11_gather(&op->data, &op->data_cap, &op->len, in, len, KW_SECRET_CRYPT_MAX);
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
	else if (s->decrypt.aes_mech) {
		pthread_mutex_unlock(&p11.lock);
		return p11_aes_final(h, 0, out, out_len);
	} else if (s->decrypt.len != s->decrypt.out_max)
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
	if (aes_mech_of(m->mechanism)) {
		if ((rv = aes_init(op, m, o)))
			goto fail;
		return CKR_OK;
	}
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

/*
 * The output's length for n bytes in: exact, or for a CBC_PAD decryption
 * the bound (the padding is known only once decrypted). A length the
 * mechanism cannot take: the CK_RV that says so.
 */
static CK_RV aes_out_len(const struct p11_crypt *op, int encrypt, size_t n, size_t *out)
{
	size_t tag = op->tag_bits / 8;

	switch (op->aes_mech) {
	case KW_MECH_AES_ECB:
	case KW_MECH_AES_CBC:
		if (n % 16)
			return encrypt ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
		*out = n;
		return CKR_OK;
	case KW_MECH_AES_CBC_PAD:
		if (!encrypt && (n == 0 || n % 16))
			return CKR_ENCRYPTED_DATA_LEN_RANGE;
		*out = encrypt ? (n / 16 + 1) * 16 : n;
		return CKR_OK;
	default:
		if (!encrypt && n < tag)
			return CKR_ENCRYPTED_DATA_LEN_RANGE;
		*out = encrypt ? n + tag : n - tag;
		return CKR_OK;
	}
}

CK_RV p11_aes_final(CK_SESSION_HANDLE h, int encrypt, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct p11_session *s;
	struct p11_crypt *op;
	struct kw_aes_params params = {0};
	unsigned char *in = NULL, *res = NULL, *aad = NULL, iv[sizeof op->iv];
	enum kw_mech mech;
	size_t n = 0, bound = 0, res_len = 0;
	uint64_t key_id;
	kw_client *c;
	kw_rv krv;
	CK_RV rv;

	pthread_mutex_lock(&p11.lock);
	if (!(s = p11_session_get_locked(h))) {
		pthread_mutex_unlock(&p11.lock);
		return CKR_SESSION_HANDLE_INVALID;
	}
	op = encrypt ? &s->encrypt : &s->decrypt;
	if (!op->active || !op->aes_mech) {
		pthread_mutex_unlock(&p11.lock);
		return CKR_OPERATION_NOT_INITIALIZED;
	}
	if ((rv = aes_out_len(op, encrypt, op->len, &bound))) {
		p11_crypt_cleanup(op);
		pthread_mutex_unlock(&p11.lock);
		return rv;
	}
	if (!out) { /* the length query: nothing is sent yet */
		*out_len = bound;
		pthread_mutex_unlock(&p11.lock);
		return CKR_OK;
	}
	/* copies, for the HSM request that runs unlocked */
	n = op->len;
	res_len = n + 16;
	in = malloc(n ? n : 1);
	res = malloc(res_len);
	aad = op->aad_len ? OPENSSL_memdup(op->aad, op->aad_len) : NULL;
	if (!in || !res || (op->aad_len && !aad)) {
		rv = CKR_HOST_MEMORY;
		p11_crypt_cleanup(op);
		pthread_mutex_unlock(&p11.lock);
		goto out;
	}
	if (n)
		memcpy(in, op->data, n);
	memcpy(iv, op->iv, op->iv_len);
	params = (struct kw_aes_params){.iv = op->iv_len ? iv : NULL, .iv_len = op->iv_len, .aad = aad,
					.aad_len = op->aad_len, .tag_bits = op->tag_bits};
	mech = op->aes_mech;
	key_id = op->key_id;
	c = p11_client_for_locked(key_id);
	pthread_mutex_unlock(&p11.lock);

	krv = kw_secret_crypt(c, key_id, mech, encrypt, &params, in, n, res, &res_len);
	if (krv)
		rv = p11_ckr(krv, encrypt ? "encrypting" : "decrypting");
	else if (*out_len < res_len)
		rv = CKR_BUFFER_TOO_SMALL;
	else
		memcpy(out, res, res_len);
	if (!krv)
		*out_len = res_len;
	/* a buffer too small keeps the operation for the next call; anything else ends it */
	pthread_mutex_lock(&p11.lock);
	if (rv != CKR_BUFFER_TOO_SMALL && (s = p11_session_get_locked(h)))
		p11_crypt_cleanup(encrypt ? &s->encrypt : &s->decrypt);
	pthread_mutex_unlock(&p11.lock);
out:
	if (in) {
		OPENSSL_cleanse(in, n);
		free(in);
	}
	if (res) {
		OPENSSL_cleanse(res, n + 16);
		free(res);
	}
	free(aad);
	OPENSSL_cleanse(iv, sizeof iv);
	return rv;
}
