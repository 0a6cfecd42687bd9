/*
 * The HSM's private-key operations, on OpenSSL 3 EVP. Callers have already
 * checked the key's partition and usage; this file checks that the
 * mechanism fits the key and that the data has the length it must.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/kdf.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "daemon/daemon.h"

kw_rv kw_crypto_generate(enum kw_key_type type, unsigned bits, const char *curve, EVP_PKEY **out)
{
	*out = NULL;
	switch (type) {
	case KW_KEY_RSA:
		if (bits != 2048 && bits != 3072 && bits != 4096)
			return kw_error_set(KW_ERR_KEY_SIZE, "RSA keys are 2048, 3072 or 4096 bits, not %u", bits);
		*out = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
		break;
	case KW_KEY_EC:
		if (strcmp(curve, "P-256") && strcmp(curve, "P-384") && strcmp(curve, "P-521"))
			return kw_error_set(KW_ERR_KEY_SIZE, "EC curves are P-256, P-384 or P-521, not \"%s\"", curve);
		*out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
		break;
	case KW_KEY_ED25519:
		*out = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		break;
	default:
		return kw_error_set(KW_ERR_KEY_TYPE, "unknown key type %d (RSA, EC or ED25519)", (int)type);
	}
	return *out ? KW_OK : kw_error_openssl(KW_ERR_CRYPTO, "key generation failed");
}

static const EVP_MD *hash_md(Keyward__Hash h)
{
	switch (h) {
	case KEYWARD__HASH__SHA1:
		return EVP_sha1();
	case KEYWARD__HASH__SHA224:
		return EVP_sha224();
	case KEYWARD__HASH__SHA256:
		return EVP_sha256();
	case KEYWARD__HASH__SHA384:
		return EVP_sha384();
	case KEYWARD__HASH__SHA512:
		return EVP_sha512();
	default:
		return NULL;
	}
}

/* DER ECDSA-Sig-Value -> r||s, each `half` bytes (the PKCS#11 form). */
static kw_rv ecdsa_der_to_raw(const unsigned char *der, size_t der_len, size_t half, unsigned char *out,
			      size_t *out_len)
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	const BIGNUM *r, *s;
	kw_rv rv = KW_OK;

	if (!sig)
		return kw_error_openssl(KW_ERR_CRYPTO, "ECDSA signature encoding");
	ECDSA_SIG_get0(sig, &r, &s);
	if (*out_len < 2 * half || BN_bn2binpad(r, out, (int)half) < 0 || BN_bn2binpad(s, out + half, (int)half) < 0)
		rv = kw_error_set(KW_ERR_CRYPTO, "ECDSA signature does not fit");
	else
		*out_len = 2 * half;
	ECDSA_SIG_free(sig);
	return rv;
}

static kw_rv sign_rsa_setup(EVP_PKEY_CTX *ctx, EVP_PKEY *pkey, const Keyward__Sign *req)
{
	const EVP_MD *md = hash_md(req->hash);
	size_t k = (size_t)EVP_PKEY_get_size(pkey);

	switch (req->mechanism) {
	case KEYWARD__MECHANISM__RSA_PKCS1:
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
			return kw_error_openssl(KW_ERR_CRYPTO, "RSA padding");
		if (req->hash != KEYWARD__HASH__HASH_NONE) {
			if (!md)
				return kw_error_set(KW_ERR_MECHANISM_PARAM, "RSA PKCS#1: unknown hash %d", req->hash);
			if (req->data.len != (size_t)EVP_MD_get_size(md))
				return kw_error_set(KW_ERR_DATA_LEN, "RSA PKCS#1: a %s digest is %d bytes, not %zu",
						    EVP_MD_get0_name(md), EVP_MD_get_size(md), req->data.len);
			if (EVP_PKEY_CTX_set_signature_md(ctx, md) <= 0)
				return kw_error_openssl(KW_ERR_CRYPTO, "RSA digest");
		} else if (req->data.len + 11 > k) {
			return kw_error_set(KW_ERR_DATA_LEN, "RSA PKCS#1: %zu bytes do not fit a %zu-byte modulus",
					    req->data.len, k);
		}
		return KW_OK;
	case KEYWARD__MECHANISM__RSA_PSS: {
		const EVP_MD *mgf = req->mgf1_hash ? hash_md(req->mgf1_hash) : md;
		int salt = req->salt_length < 0 ? RSA_PSS_SALTLEN_DIGEST : req->salt_length;
		if (!md || !mgf)
			return kw_error_set(KW_ERR_MECHANISM_PARAM, "RSA-PSS needs a hash and an MGF1 hash");
		if (req->data.len != (size_t)EVP_MD_get_size(md))
			return kw_error_set(KW_ERR_DATA_LEN, "RSA-PSS: a %s digest is %d bytes, not %zu",
					    EVP_MD_get0_name(md), EVP_MD_get_size(md), req->data.len);
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
		    EVP_PKEY_CTX_set_signature_md(ctx, md) <= 0 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf) <= 0 ||
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, salt) <= 0)
			return kw_error_openssl(KW_ERR_MECHANISM_PARAM, "RSA-PSS parameters");
		return KW_OK;
	}
	case KEYWARD__MECHANISM__RSA_RAW:
		if (req->data.len != k)
			return kw_error_set(KW_ERR_DATA_LEN, "raw RSA: data must be %zu bytes (the modulus), not %zu",
					    k, req->data.len);
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) <= 0)
			return kw_error_openssl(KW_ERR_CRYPTO, "RSA padding");
		return KW_OK;
	default:
		return kw_error_set(KW_ERR_MECHANISM, "mechanism %d does not sign with an RSA key", req->mechanism);
	}
}

kw_rv kw_crypto_sign(EVP_PKEY *pkey, enum kw_key_type type, const Keyward__Sign *req, unsigned char *sig,
		     size_t *sig_len)
{
	EVP_PKEY_CTX *ctx = NULL;
	EVP_MD_CTX *mdctx = NULL;
	unsigned char der[160];
	size_t der_len = sizeof der;
	kw_rv rv = KW_OK;

	if (type == KW_KEY_ED25519) {
		if (req->mechanism != KEYWARD__MECHANISM__EDDSA)
			return kw_error_set(KW_ERR_MECHANISM, "an Ed25519 key signs with EDDSA only");
		mdctx = EVP_MD_CTX_new();
		if (!mdctx || EVP_DigestSignInit(mdctx, NULL, NULL, NULL, pkey) <= 0 ||
		    EVP_DigestSign(mdctx, sig, sig_len, req->data.data, req->data.len) <= 0)
			rv = kw_error_openssl(KW_ERR_CRYPTO, "Ed25519 signature");
		EVP_MD_CTX_free(mdctx);
		return rv;
	}

	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!ctx || EVP_PKEY_sign_init(ctx) <= 0) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "sign init");
		goto out;
	}
	if (type == KW_KEY_RSA) {
		rv = sign_rsa_setup(ctx, pkey, req);
		if (rv)
			goto out;
		if (EVP_PKEY_sign(ctx, sig, sig_len, req->data.data, req->data.len) <= 0)
			rv = kw_error_openssl(KW_ERR_CRYPTO, "RSA signature");
	} else if (type == KW_KEY_EC) {
		if (req->mechanism != KEYWARD__MECHANISM__ECDSA) {
			rv = kw_error_set(KW_ERR_MECHANISM, "an EC key signs with ECDSA only");
			goto out;
		}
		if (req->data.len == 0 || req->data.len > 64) {
			rv = kw_error_set(KW_ERR_DATA_LEN, "ECDSA: the digest must be 1 to 64 bytes, not %zu",
					  req->data.len);
			goto out;
		}
		if (EVP_PKEY_sign(ctx, der, &der_len, req->data.data, req->data.len) <= 0) {
			rv = kw_error_openssl(KW_ERR_CRYPTO, "ECDSA signature");
			goto out;
		}
		rv = ecdsa_der_to_raw(der, der_len, (size_t)(EVP_PKEY_get_bits(pkey) + 7) / 8, sig, sig_len);
	} else {
		rv = kw_error_set(KW_ERR_KEY_TYPE, "key type %d cannot sign", (int)type);
	}
out:
	EVP_PKEY_CTX_free(ctx);
	return rv;
}

/* OAEP padding on ctx (set up to en- or decrypt): hash (HASH_NONE: SHA-1), MGF1 hash (HASH_NONE: hash), label. */
static kw_rv oaep_params(EVP_PKEY_CTX *ctx, Keyward__Hash hash, Keyward__Hash mgf1_hash,
			 const ProtobufCBinaryData *label)
{
	const EVP_MD *md = hash_md(hash ? hash : KEYWARD__HASH__SHA1);
	const EVP_MD *mgf = mgf1_hash ? hash_md(mgf1_hash) : md;
	unsigned char *l;

	if (!md || !mgf || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) <= 0 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf) <= 0)
		return kw_error_openssl(KW_ERR_MECHANISM_PARAM, "RSA-OAEP parameters");
	if (!label->len)
		return KW_OK;
	l = OPENSSL_memdup(label->data, label->len);
	if (!l || EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, l, (int)label->len) <= 0) {
		OPENSSL_free(l);
		return kw_error_openssl(KW_ERR_MECHANISM_PARAM, "RSA-OAEP label");
	}
	return KW_OK;
}

kw_rv kw_crypto_wrap_oaep(const unsigned char *spki, size_t spki_len, const Keyward__WrapKey *w,
			  const unsigned char *in, size_t in_len, unsigned char *out, size_t *out_len)
{
	const unsigned char *p = spki;
	EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)spki_len);
	EVP_PKEY_CTX *ctx = NULL;
	kw_rv rv = KW_OK;

	if (!pub || EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA) {
		rv = kw_error_openssl(KW_ERR_KEY_TYPE, "RSA_OAEP wraps under an RSA public key only");
		goto out;
	}
	if (w->label.len > 1024) {
		rv = kw_error_set(KW_ERR_MECHANISM_PARAM, "an RSA-OAEP label of %zu bytes: at most 1024", w->label.len);
		goto out;
	}
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
	if (!ctx || EVP_PKEY_encrypt_init(ctx) <= 0) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "encrypt init");
		goto out;
	}
	if ((rv = oaep_params(ctx, w->hash, w->mgf1_hash, &w->label)))
		goto out;
	if (*out_len < (size_t)EVP_PKEY_get_size(pub)) {
		rv = kw_error_set(KW_ERR_DATA_LEN, "the wrapped key needs %d bytes, the buffer has %zu",
				  EVP_PKEY_get_size(pub), *out_len);
		goto out;
	}
	/* a key longer than the padding leaves room for (an RSA-2048 key with SHA-512: 126 bytes) */
	if (EVP_PKEY_encrypt(ctx, out, out_len, in, in_len) <= 0)
		rv = kw_error_openssl(KW_ERR_KEY_SIZE,
				      "RSA-OAEP cannot wrap %zu bytes under a %d-bit key with this hash", in_len,
				      EVP_PKEY_get_bits(pub));
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pub);
	return rv;
}

kw_rv kw_crypto_decrypt(EVP_PKEY *pkey, enum kw_key_type type, const Keyward__Decrypt *req, unsigned char *out,
			size_t *out_len)
{
	EVP_PKEY_CTX *ctx = NULL;
	kw_rv rv = KW_OK;
	size_t k = (size_t)EVP_PKEY_get_size(pkey);

	if (type != KW_KEY_RSA)
		return kw_error_set(KW_ERR_KEY_TYPE, "only RSA keys decrypt");
	if (req->data.len != k)
		return kw_error_set(KW_ERR_ENCRYPTED_DATA, "RSA ciphertext must be %zu bytes, not %zu", k,
				    req->data.len);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!ctx || EVP_PKEY_decrypt_init(ctx) <= 0) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "decrypt init");
		goto out;
	}
	if (req->mechanism == KEYWARD__MECHANISM__RSA_OAEP) {
		if ((rv = oaep_params(ctx, req->hash, req->mgf1_hash, &req->label)))
			goto out;
	} else if (req->mechanism == KEYWARD__MECHANISM__RSA_PKCS1) {
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0) {
			rv = kw_error_openssl(KW_ERR_CRYPTO, "RSA padding");
			goto out;
		}
	} else if (req->mechanism == KEYWARD__MECHANISM__RSA_RAW) {
		/* CKM_RSA_X_509: the caller unpads; the output is always k bytes */
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) <= 0) {
			rv = kw_error_openssl(KW_ERR_CRYPTO, "RSA padding");
			goto out;
		}
	} else {
		rv = kw_error_set(KW_ERR_MECHANISM, "mechanism %d does not decrypt (RSA_OAEP, RSA_PKCS1 or RSA_RAW)",
				  req->mechanism);
		goto out;
	}
	if (EVP_PKEY_decrypt(ctx, out, out_len, req->data.data, req->data.len) <= 0)
		rv = kw_error_openssl(KW_ERR_ENCRYPTED_DATA, "decryption failed");
out:
	EVP_PKEY_CTX_free(ctx);
	return rv;
}

kw_rv kw_crypto_wrap(const unsigned char *kek, size_t kek_len, Keyward__Mechanism mech, const unsigned char *in,
		     size_t in_len, unsigned char *out, size_t *out_len)
{
	bool pad = mech == KEYWARD__MECHANISM__AES_KEY_WRAP_PAD;
	EVP_CIPHER *cipher = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	char name[32];
	size_t need;
	int len = 0, fin = 0;
	kw_rv rv = KW_OK;

	if (!pad && mech != KEYWARD__MECHANISM__AES_KEY_WRAP)
		return kw_error_set(KW_ERR_MECHANISM,
				    "mechanism %d does not wrap keys (AES_KEY_WRAP or AES_KEY_WRAP_PAD)", (int)mech);
	if (kek_len != 16 && kek_len != 24 && kek_len != 32)
		return kw_error_set(KW_ERR_KEY_SIZE, "an AES wrapping key has 16, 24 or 32 bytes, not %zu", kek_len);
	if (in_len == 0 || in_len > KW_WRAP_MAX)
		return kw_error_set(KW_ERR_DATA_LEN, "%zu bytes to wrap: 1 to %d can be", in_len, KW_WRAP_MAX);
	if (!pad && (in_len % 8 || in_len < 16))
		return kw_error_set(KW_ERR_DATA_LEN,
				    "AES_KEY_WRAP (RFC 3394) wraps a multiple of 8 bytes, at least 16, not %zu: "
				    "use AES_KEY_WRAP_PAD",
				    in_len);
	need = pad ? (in_len + 7) / 8 * 8 + 8 : in_len + 8;
	if (*out_len < need)
		return kw_error_set(KW_ERR_DATA_LEN, "the wrapped key needs %zu bytes, the buffer has %zu", need,
				    *out_len);
	snprintf(name, sizeof name, "AES-%zu-WRAP%s", kek_len * 8, pad ? "-PAD" : "");
	cipher = EVP_CIPHER_fetch(NULL, name, NULL);
	ctx = EVP_CIPHER_CTX_new();
	if (!cipher || !ctx) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "AES key wrap is not available");
		goto out;
	}
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_EncryptInit_ex2(ctx, cipher, kek, NULL, NULL) != 1 ||
	    EVP_EncryptUpdate(ctx, out, &len, in, (int)in_len) != 1 || len < 0 ||
	    EVP_EncryptFinal_ex(ctx, out + len, &fin) != 1 || (size_t)len + (size_t)fin != need) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "AES key wrap failed");
		goto out;
	}
	*out_len = need;
out:
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(cipher);
	return rv;
}

kw_rv kw_crypto_sign_check(EVP_PKEY *pkey, enum kw_key_type type, const Keyward__Sign *req)
{
	EVP_PKEY_CTX *ctx;
	kw_rv rv;

	switch (type) {
	case KW_KEY_ED25519:
		if (req->mechanism != KEYWARD__MECHANISM__EDDSA)
			return kw_error_set(KW_ERR_MECHANISM, "an Ed25519 key signs with EDDSA only");
		return KW_OK;
	case KW_KEY_EC:
		if (req->mechanism != KEYWARD__MECHANISM__ECDSA)
			return kw_error_set(KW_ERR_MECHANISM, "an EC key signs with ECDSA only");
		if (req->data.len == 0 || req->data.len > 64)
			return kw_error_set(KW_ERR_DATA_LEN, "ECDSA: the digest must be 1 to 64 bytes, not %zu",
					    req->data.len);
		return KW_OK;
	case KW_KEY_RSA:
		/* the very set-up kw_crypto_sign does, without the signature */
		ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		if (!ctx || EVP_PKEY_sign_init(ctx) <= 0)
			rv = kw_error_openssl(KW_ERR_CRYPTO, "sign init");
		else
			rv = sign_rsa_setup(ctx, pkey, req);
		EVP_PKEY_CTX_free(ctx);
		return rv;
	default:
		return kw_error_set(KW_ERR_KEY_TYPE, "key type %d cannot sign", (int)type);
	}
}

/* The checks of kw_crypto_aes: mechanism, IV, tag and data lengths. */
static kw_rv aes_check(size_t key_len, const Keyward__SecretCrypt *r, const char **mode, size_t *tag_len)
{
	size_t n = r->data.len;

	if (key_len != 16 && key_len != 24 && key_len != 32)
		return kw_error_set(KW_ERR_KEY_SIZE, "an AES key has 16, 24 or 32 bytes, not %zu", key_len);
	if (n > KW_SECRET_CRYPT_MAX)
		return kw_error_set(KW_ERR_DATA_LEN, "AES: %zu bytes, at most %d in one request", n, KW_SECRET_CRYPT_MAX);
	*tag_len = 0;
	switch (r->mechanism) {
	case KEYWARD__MECHANISM__AES_ECB:
	case KEYWARD__MECHANISM__AES_CBC:
		*mode = r->mechanism == KEYWARD__MECHANISM__AES_ECB ? "ECB" : "CBC";
		if (n % 16)
			return kw_error_set(KW_ERR_DATA_LEN,
					    "AES-%s without padding takes a multiple of 16 bytes, not %zu (AES_CBC_PAD "
					    "pads)",
					    *mode, n);
		break;
	case KEYWARD__MECHANISM__AES_CBC_PAD:
		*mode = "CBC";
		if (!r->encrypt && (n == 0 || n % 16))
			return kw_error_set(KW_ERR_DATA_LEN,
					    "AES-CBC-PAD: a ciphertext is a non-zero multiple of 16 bytes, not %zu", n);
		break;
	case KEYWARD__MECHANISM__AES_GCM:
		*mode = "GCM";
		*tag_len = r->tag_bits ? r->tag_bits / 8 : 16;
		if (r->tag_bits % 8 || *tag_len < 12 || *tag_len > 16)
			return kw_error_set(KW_ERR_MECHANISM_PARAM, "AES-GCM: the tag is 96 to 128 bits, a multiple of 8, "
								    "not %u",
					    r->tag_bits);
		if (r->iv.len == 0 || r->iv.len > 128)
			return kw_error_set(KW_ERR_MECHANISM_PARAM, "AES-GCM: the IV is 1 to 128 bytes, not %zu",
					    r->iv.len);
		if (r->aad.len > 65536)
			return kw_error_set(KW_ERR_MECHANISM_PARAM, "AES-GCM: at most 64 KiB of AAD, not %zu",
					    r->aad.len);
		if (!r->encrypt && n < *tag_len)
			return kw_error_set(KW_ERR_DATA_LEN, "AES-GCM: %zu bytes are shorter than the %zu-byte tag", n,
					    *tag_len);
		return KW_OK;
	default:
		return kw_error_set(KW_ERR_MECHANISM,
				    "mechanism %d does not encrypt with an AES key (AES_ECB, AES_CBC, AES_CBC_PAD or "
				    "AES_GCM)",
				    (int)r->mechanism);
	}
	if (r->mechanism == KEYWARD__MECHANISM__AES_ECB ? r->iv.len != 0 : r->iv.len != 16)
		return kw_error_set(KW_ERR_MECHANISM_PARAM, "AES-%s: the IV is %s, not %zu bytes", *mode,
				    r->mechanism == KEYWARD__MECHANISM__AES_ECB ? "absent" : "16 bytes", r->iv.len);
	return KW_OK;
}

kw_rv kw_crypto_aes(const unsigned char *key, size_t key_len, const Keyward__SecretCrypt *r, unsigned char *out,
		    size_t *out_len)
{
	const unsigned char *in = r->data.data;
	size_t n = r->data.len, tag_len = 0;
	EVP_CIPHER *cipher = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	const char *mode = "";
	char name[32];
	int len = 0, fin = 0, enc = r->encrypt ? 1 : 0;
	kw_rv rv;

	if ((rv = aes_check(key_len, r, &mode, &tag_len)))
		return rv;
	if (*out_len < n + 16)
		return kw_error_set(KW_ERR_DATA_LEN, "AES: the output needs %zu bytes, the buffer has %zu", n + 16,
				    *out_len);
	if (tag_len && !enc)
		n -= tag_len;
	snprintf(name, sizeof name, "AES-%zu-%s", key_len * 8, mode);
	cipher = EVP_CIPHER_fetch(NULL, name, NULL);
	ctx = EVP_CIPHER_CTX_new();
	if (!cipher || !ctx) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "%s is not available", name);
		goto out;
	}
	if (EVP_CipherInit_ex2(ctx, cipher, NULL, NULL, enc, NULL) != 1 ||
	    (tag_len && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, (int)r->iv.len, NULL) != 1) ||
	    EVP_CipherInit_ex2(ctx, NULL, key, r->iv.len ? r->iv.data : NULL, enc, NULL) != 1 ||
	    EVP_CIPHER_CTX_set_padding(ctx, r->mechanism == KEYWARD__MECHANISM__AES_CBC_PAD) != 1) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "%s set-up", name);
		goto out;
	}
	if (tag_len && r->aad.len && EVP_CipherUpdate(ctx, NULL, &len, r->aad.data, (int)r->aad.len) != 1) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "AES-GCM: the AAD");
		goto out;
	}
	len = 0;
	if (n && EVP_CipherUpdate(ctx, out, &len, in, (int)n) != 1) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "%s", name);
		goto out;
	}
	if (tag_len && !enc &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, (int)tag_len, (void *)(in + n)) != 1) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "AES-GCM: the tag");
		goto out;
	}
	if (EVP_CipherFinal_ex(ctx, out + len, &fin) != 1) {
		/* a padding or a tag that does not check: say no more than that */
		ERR_clear_error();
		rv = kw_error_set(KW_ERR_ENCRYPTED_DATA, "%s: the %s does not check: wrong key, IV or data", name,
				  tag_len ? "tag" : "padding");
		OPENSSL_cleanse(out, (size_t)len);
		goto out;
	}
	len += fin;
	if (tag_len && enc) {
		if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, (int)tag_len, out + len) != 1) {
			rv = kw_error_openssl(KW_ERR_CRYPTO, "AES-GCM: the tag");
			goto out;
		}
		len += (int)tag_len;
	}
	*out_len = (size_t)len;
out:
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(cipher);
	return rv;
}

kw_rv kw_crypto_hmac(const unsigned char *key, size_t key_len, const Keyward__Sign *r, unsigned char *out,
		     size_t *out_len)
{
	const char *digest = r->hash == KEYWARD__HASH__SHA256	? "SHA256"
			     : r->hash == KEYWARD__HASH__SHA384 ? "SHA384"
			     : r->hash == KEYWARD__HASH__SHA512 ? "SHA512"
								: NULL;
	size_t len = 0;

	if (r->mechanism != KEYWARD__MECHANISM__HMAC)
		return kw_error_set(KW_ERR_MECHANISM, "a generic secret signs with HMAC only, not mechanism %d",
				    (int)r->mechanism);
	if (!digest)
		return kw_error_set(KW_ERR_MECHANISM_PARAM, "HMAC: hash %d (SHA256, SHA384 or SHA512)", (int)r->hash);
	if (r->data.len > KW_HMAC_DATA_MAX)
		return kw_error_set(KW_ERR_DATA_LEN, "HMAC: %zu bytes, at most %d", r->data.len, KW_HMAC_DATA_MAX);
	if (!EVP_Q_mac(NULL, "HMAC", NULL, digest, NULL, key, key_len, r->data.data, r->data.len, out, *out_len, &len))
		return kw_error_openssl(KW_ERR_CRYPTO, "HMAC-%s", digest);
	*out_len = len;
	return KW_OK;
}

kw_rv kw_crypto_unwrap(const unsigned char *kek, size_t kek_len, Keyward__Mechanism mech, const unsigned char *in,
		       size_t in_len, unsigned char *out, size_t *out_len)
{
	bool pad = mech == KEYWARD__MECHANISM__AES_KEY_WRAP_PAD;
	EVP_CIPHER *cipher = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	char name[32];
	int len = 0, fin = 0;
	kw_rv rv = KW_OK;

	if (!pad && mech != KEYWARD__MECHANISM__AES_KEY_WRAP)
		return kw_error_set(KW_ERR_MECHANISM,
				    "mechanism %d does not unwrap with an AES key (AES_KEY_WRAP or AES_KEY_WRAP_PAD)",
				    (int)mech);
	if (kek_len != 16 && kek_len != 24 && kek_len != 32)
		return kw_error_set(KW_ERR_KEY_SIZE, "an AES unwrapping key has 16, 24 or 32 bytes, not %zu", kek_len);
	if (in_len < 16 || in_len % 8 || in_len > KW_WRAP_MAX + 16)
		return kw_error_set(KW_ERR_DATA_LEN, "a wrapped key is a multiple of 8 bytes, 16 to %d, not %zu",
				    KW_WRAP_MAX + 16, in_len);
	if (*out_len < in_len)
		return kw_error_set(KW_ERR_DATA_LEN, "the unwrapped key needs %zu bytes, the buffer has %zu", in_len,
				    *out_len);
	snprintf(name, sizeof name, "AES-%zu-WRAP%s", kek_len * 8, pad ? "-PAD" : "");
	cipher = EVP_CIPHER_fetch(NULL, name, NULL);
	ctx = EVP_CIPHER_CTX_new();
	if (!cipher || !ctx) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "AES key unwrap is not available");
		goto out;
	}
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_DecryptInit_ex2(ctx, cipher, kek, NULL, NULL) != 1 ||
	    EVP_DecryptUpdate(ctx, out, &len, in, (int)in_len) != 1 || len < 0 ||
	    EVP_DecryptFinal_ex(ctx, out + len, &fin) != 1) {
		ERR_clear_error();
		OPENSSL_cleanse(out, in_len);
		rv = kw_error_set(KW_ERR_ENCRYPTED_DATA, "%s: the wrapped key does not check: wrong key or data", name);
		goto out;
	}
	*out_len = (size_t)len + (size_t)fin;
out:
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(cipher);
	return rv;
}

kw_rv kw_crypto_ecdh(EVP_PKEY *key, const unsigned char *point, size_t point_len, bool cofactor, Keyward__Hash kdf,
		     const unsigned char *shared, size_t shared_len, unsigned char *out, size_t length)
{
	char group[64] = "";
	unsigned char secret[80];
	size_t secret_len = sizeof secret;
	OSSL_PARAM params[3], kdf_params[4];
	EVP_PKEY_CTX *pctx = NULL, *dctx = NULL;
	EVP_PKEY *peer = NULL;
	EVP_KDF *x963 = NULL;
	EVP_KDF_CTX *kctx = NULL;
	const EVP_MD *md = hash_md(kdf);
	kw_rv rv = KW_OK;

	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
	    EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) != 1)
		return kw_error_set(KW_ERR_KEY_TYPE, "ECDH: the base key is not an EC key");
	if (kdf != KEYWARD__HASH__HASH_NONE && !md)
		return kw_error_set(KW_ERR_MECHANISM_PARAM, "ECDH: kdf hash %d", (int)kdf);
	if (kdf == KEYWARD__HASH__HASH_NONE && shared_len)
		return kw_error_set(KW_ERR_MECHANISM_PARAM, "ECDH: shared data needs a KDF");
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point, point_len);
	params[2] = OSSL_PARAM_construct_end();
	pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!pctx || EVP_PKEY_fromdata_init(pctx) != 1 || EVP_PKEY_fromdata(pctx, &peer, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		ERR_clear_error();
		rv = kw_error_set(KW_ERR_MECHANISM_PARAM, "ECDH: the public data is no point of curve %s", group);
		goto out;
	}
	dctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	if (!dctx || EVP_PKEY_derive_init(dctx) != 1 || (cofactor && EVP_PKEY_CTX_set_ecdh_cofactor_mode(dctx, 1) != 1) ||
	    EVP_PKEY_derive_set_peer_ex(dctx, peer, 1) != 1 || EVP_PKEY_derive(dctx, secret, &secret_len) != 1) {
		ERR_clear_error();
		rv = kw_error_set(KW_ERR_MECHANISM_PARAM, "ECDH with a point of curve %s failed: is it a valid point?",
				  group);
		goto out;
	}
	if (kdf == KEYWARD__HASH__HASH_NONE) {
		if (length > secret_len) {
			rv = kw_error_set(KW_ERR_KEY_SIZE, "ECDH: %zu bytes of shared secret on %s, not %zu (use a KDF)",
					  secret_len, group, length);
			goto out;
		}
		memcpy(out, secret + secret_len - length, length);
		goto out;
	}
	x963 = EVP_KDF_fetch(NULL, "X963KDF", NULL);
	kctx = x963 ? EVP_KDF_CTX_new(x963) : NULL;
	kdf_params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)EVP_MD_get0_name(md), 0);
	kdf_params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, secret, secret_len);
	kdf_params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)shared, shared_len);
	kdf_params[3] = OSSL_PARAM_construct_end();
	if (!kctx || EVP_KDF_derive(kctx, out, length, kdf_params) != 1)
		rv = kw_error_openssl(KW_ERR_CRYPTO, "ECDH: the X9.63 KDF");
out:
	OPENSSL_cleanse(secret, sizeof secret);
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(x963);
	EVP_PKEY_free(peer);
	EVP_PKEY_CTX_free(dctx);
	EVP_PKEY_CTX_free(pctx);
	return rv;
}
