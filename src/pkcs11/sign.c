/*
 * keyward-pkcs11.so: mechanisms, key pair generation, signing and
 * verification.
 *
 * Signing hashes here (the hash-and-sign mechanisms) and sends the HSM
 * only the digest, with the key's id: C_SignInit needs no request, and the
 * signature's length follows from the key size, so the two-call length
 * query never reaches the HSM. Verification runs locally with OpenSSL on
 * the public key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "p11.h"

struct mech {
	CK_MECHANISM_TYPE type;
	enum kw_key_type key_type; /* NONE: key pair generation */
	enum kw_mech kw;
	enum kw_hash hash; /* hashed here (NONE: the caller's data is signed as it is) */
	CK_ULONG min, max;
	CK_FLAGS flags;
};

#define SV (CKF_SIGN | CKF_VERIFY | CKF_HW)
#define ED (CKF_ENCRYPT | CKF_DECRYPT)
#define WU (CKF_WRAP | CKF_UNWRAP)
#define EC_FLAGS (CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)

/*
 * Every mechanism the module offers. RSA and EC sizes are in bits, AES in
 * bytes (PKCS#11's units). Key generation and digests name no key type.
 */
static const struct mech mechs[] = {
	{CKM_RSA_PKCS_KEY_PAIR_GEN, KW_KEY_NONE, KW_MECH_NONE, KW_HASH_NONE, 2048, 4096,
	 CKF_GENERATE_KEY_PAIR | CKF_HW},
	{CKM_EC_KEY_PAIR_GEN, KW_KEY_NONE, KW_MECH_NONE, KW_HASH_NONE, 256, 521,
	 CKF_GENERATE_KEY_PAIR | CKF_HW | EC_FLAGS},
	{CKM_EC_EDWARDS_KEY_PAIR_GEN, KW_KEY_NONE, KW_MECH_NONE, KW_HASH_NONE, 255, 255,
	 CKF_GENERATE_KEY_PAIR | CKF_HW},
	{CKM_AES_KEY_GEN, KW_KEY_NONE, KW_MECH_NONE, KW_HASH_NONE, 16, 32, CKF_GENERATE | CKF_HW},
	{CKM_GENERIC_SECRET_KEY_GEN, KW_KEY_NONE, KW_MECH_NONE, KW_HASH_NONE, KW_GENERIC_MIN, KW_GENERIC_MAX,
	 CKF_GENERATE | CKF_HW},
	{CKM_RSA_PKCS, KW_KEY_RSA, KW_MECH_RSA_PKCS1, KW_HASH_NONE, 2048, 4096, SV | ED},
	{CKM_RSA_X_509, KW_KEY_RSA, KW_MECH_RSA_RAW, KW_HASH_NONE, 2048, 4096, SV | ED},
	{CKM_RSA_PKCS_OAEP, KW_KEY_RSA, KW_MECH_RSA_OAEP, KW_HASH_NONE, 2048, 4096, ED | WU | CKF_HW},
	{CKM_SHA1_RSA_PKCS, KW_KEY_RSA, KW_MECH_RSA_PKCS1, KW_HASH_SHA1, 2048, 4096, SV},
	{CKM_SHA224_RSA_PKCS, KW_KEY_RSA, KW_MECH_RSA_PKCS1, KW_HASH_SHA224, 2048, 4096, SV},
	{CKM_SHA256_RSA_PKCS, KW_KEY_RSA, KW_MECH_RSA_PKCS1, KW_HASH_SHA256, 2048, 4096, SV},
	{CKM_SHA384_RSA_PKCS, KW_KEY_RSA, KW_MECH_RSA_PKCS1, KW_HASH_SHA384, 2048, 4096, SV},
	{CKM_SHA512_RSA_PKCS, KW_KEY_RSA, KW_MECH_RSA_PKCS1, KW_HASH_SHA512, 2048, 4096, SV},
	{CKM_RSA_PKCS_PSS, KW_KEY_RSA, KW_MECH_RSA_PSS, KW_HASH_NONE, 2048, 4096, SV},
	{CKM_SHA1_RSA_PKCS_PSS, KW_KEY_RSA, KW_MECH_RSA_PSS, KW_HASH_SHA1, 2048, 4096, SV},
	{CKM_SHA224_RSA_PKCS_PSS, KW_KEY_RSA, KW_MECH_RSA_PSS, KW_HASH_SHA224, 2048, 4096, SV},
	{CKM_SHA256_RSA_PKCS_PSS, KW_KEY_RSA, KW_MECH_RSA_PSS, KW_HASH_SHA256, 2048, 4096, SV},
	{CKM_SHA384_RSA_PKCS_PSS, KW_KEY_RSA, KW_MECH_RSA_PSS, KW_HASH_SHA384, 2048, 4096, SV},
	{CKM_SHA512_RSA_PKCS_PSS, KW_KEY_RSA, KW_MECH_RSA_PSS, KW_HASH_SHA512, 2048, 4096, SV},
	{CKM_ECDSA, KW_KEY_EC, KW_MECH_ECDSA, KW_HASH_NONE, 256, 521, SV | EC_FLAGS},
	{CKM_ECDSA_SHA1, KW_KEY_EC, KW_MECH_ECDSA, KW_HASH_SHA1, 256, 521, SV | EC_FLAGS},
	{CKM_ECDSA_SHA224, KW_KEY_EC, KW_MECH_ECDSA, KW_HASH_SHA224, 256, 521, SV | EC_FLAGS},
	{CKM_ECDSA_SHA256, KW_KEY_EC, KW_MECH_ECDSA, KW_HASH_SHA256, 256, 521, SV | EC_FLAGS},
	{CKM_ECDSA_SHA384, KW_KEY_EC, KW_MECH_ECDSA, KW_HASH_SHA384, 256, 521, SV | EC_FLAGS},
	{CKM_ECDSA_SHA512, KW_KEY_EC, KW_MECH_ECDSA, KW_HASH_SHA512, 256, 521, SV | EC_FLAGS},
	{CKM_ECDH1_DERIVE, KW_KEY_EC, KW_MECH_ECDH, KW_HASH_NONE, 256, 521, CKF_DERIVE | CKF_HW | EC_FLAGS},
	{CKM_ECDH1_COFACTOR_DERIVE, KW_KEY_EC, KW_MECH_ECDH, KW_HASH_NONE, 256, 521, CKF_DERIVE | CKF_HW | EC_FLAGS},
	{CKM_EDDSA, KW_KEY_ED25519, KW_MECH_EDDSA, KW_HASH_NONE, 255, 255, SV},
	{CKM_AES_ECB, KW_KEY_AES, KW_MECH_AES_ECB, KW_HASH_NONE, 16, 32, ED | CKF_HW},
	{CKM_AES_CBC, KW_KEY_AES, KW_MECH_AES_CBC, KW_HASH_NONE, 16, 32, ED | CKF_HW},
	{CKM_AES_CBC_PAD, KW_KEY_AES, KW_MECH_AES_CBC_PAD, KW_HASH_NONE, 16, 32, ED | CKF_HW},
	{CKM_AES_GCM, KW_KEY_AES, KW_MECH_AES_GCM, KW_HASH_NONE, 16, 32, ED | CKF_HW},
	{CKM_SHA256_HMAC, KW_KEY_GENERIC, KW_MECH_HMAC, KW_HASH_SHA256, KW_GENERIC_MIN, KW_GENERIC_MAX, SV},
	{CKM_SHA384_HMAC, KW_KEY_GENERIC, KW_MECH_HMAC, KW_HASH_SHA384, KW_GENERIC_MIN, KW_GENERIC_MAX, SV},
	{CKM_SHA512_HMAC, KW_KEY_GENERIC, KW_MECH_HMAC, KW_HASH_SHA512, KW_GENERIC_MIN, KW_GENERIC_MAX, SV},
	{CKM_AES_KEY_WRAP, KW_KEY_AES, KW_MECH_AES_KEY_WRAP, KW_HASH_NONE, 16, 32, WU | CKF_HW},
	{CKM_AES_KEY_WRAP_KWP, KW_KEY_AES, KW_MECH_AES_KEY_WRAP_PAD, KW_HASH_NONE, 16, 32, WU | CKF_HW},
	{CKM_SHA_1, KW_KEY_NONE, KW_MECH_NONE, KW_HASH_SHA1, 0, 0, CKF_DIGEST},
	{CKM_SHA224, KW_KEY_NONE, KW_MECH_NONE, KW_HASH_SHA224, 0, 0, CKF_DIGEST},
	{CKM_SHA256, KW_KEY_NONE, KW_MECH_NONE, KW_HASH_SHA256, 0, 0, CKF_DIGEST},
	{CKM_SHA384, KW_KEY_NONE, KW_MECH_NONE, KW_HASH_SHA384, 0, 0, CKF_DIGEST},
	{CKM_SHA512, KW_KEY_NONE, KW_MECH_NONE, KW_HASH_SHA512, 0, 0, CKF_DIGEST},
};
#define N_MECHS (sizeof mechs / sizeof mechs[0])

static const struct mech *mech_find(CK_MECHANISM_TYPE t)
{
	for (size_t i = 0; i < N_MECHS; i++)
		if (mechs[i].type == t)
			return &mechs[i];
	return NULL;
}

CK_RV p11_mechanism_list(CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
	CK_RV rv = CKR_OK;

	if (list && *count < N_MECHS)
		rv = CKR_BUFFER_TOO_SMALL;
	else if (list)
		for (size_t i = 0; i < N_MECHS; i++)
			list[i] = mechs[i].type;
	*count = N_MECHS;
	return rv;
}

CK_RV p11_mechanism_info(CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
	const struct mech *m = mech_find(type);

	if (!m)
		return CKR_MECHANISM_INVALID;
	info->ulMinKeySize = m->min;
	info->ulMaxKeySize = m->max;
	info->flags = m->flags;
	return CKR_OK;
}

size_t p11_allowed_mechanisms(const kw_object *o, CK_MECHANISM_TYPE *out, size_t max)
{
	unsigned usages = kw_object_usages(o);
	CK_FLAGS want = 0;
	size_t n = 0;

	if (usages & KW_USAGE_SIGN)
		want |= CKF_SIGN | CKF_VERIFY;
	if (usages & KW_USAGE_DECRYPT)
		want |= CKF_DECRYPT | CKF_ENCRYPT;
	if (usages & KW_USAGE_WRAP)
		want |= CKF_WRAP;
	if (usages & KW_USAGE_DERIVE)
		want |= CKF_DERIVE;
	for (size_t i = 0; i < N_MECHS && n < max; i++)
		if (mechs[i].key_type == kw_object_key_type(o) && (mechs[i].flags & want))
			out[n++] = mechs[i].type;
	return n;
}

CK_RV p11_mechanism_of(CK_MECHANISM_TYPE type, CK_FLAGS need, enum kw_key_type *key_type, enum kw_mech *kw,
		       enum kw_hash *hash)
{
	const struct mech *m = mech_find(type);

	if (!m || (m->flags & need) != need)
		return CKR_MECHANISM_INVALID;
	*key_type = m->key_type;
	*kw = m->kw;
	*hash = m->hash;
	return CKR_OK;
}

const EVP_MD *p11_hash_md(enum kw_hash h)
{
	switch (h) {
	case KW_HASH_SHA1:
		return EVP_sha1();
	case KW_HASH_SHA224:
		return EVP_sha224();
	case KW_HASH_SHA256:
		return EVP_sha256();
	case KW_HASH_SHA384:
		return EVP_sha384();
	case KW_HASH_SHA512:
		return EVP_sha512();
	default:
		return NULL;
	}
}

enum kw_hash p11_hash_from_ckm(CK_MECHANISM_TYPE t)
{
	switch (t) {
	case CKM_SHA_1:
		return KW_HASH_SHA1;
	case CKM_SHA224:
		return KW_HASH_SHA224;
	case CKM_SHA256:
		return KW_HASH_SHA256;
	case CKM_SHA384:
		return KW_HASH_SHA384;
	case CKM_SHA512:
		return KW_HASH_SHA512;
	default:
		return KW_HASH_NONE;
	}
}

enum kw_hash p11_hash_from_mgf(CK_RSA_PKCS_MGF_TYPE g)
{
	switch (g) {
	case CKG_MGF1_SHA1:
		return KW_HASH_SHA1;
	case CKG_MGF1_SHA224:
		return KW_HASH_SHA224;
	case CKG_MGF1_SHA256:
		return KW_HASH_SHA256;
	case CKG_MGF1_SHA384:
		return KW_HASH_SHA384;
	case CKG_MGF1_SHA512:
		return KW_HASH_SHA512;
	default:
		return KW_HASH_NONE;
	}
}

void p11_op_cleanup(struct p11_op *op)
{
	EVP_MD_CTX_free(op->mdctx);
	EVP_PKEY_free(op->pub);
	if (op->data) {
		OPENSSL_cleanse(op->data, op->data_cap);
		free(op->data);
	}
	OPENSSL_cleanse(op, sizeof *op);
	memset(op, 0, sizeof *op);
}

static CK_RV bits_of_template(CK_ATTRIBUTE_PTR t, CK_ULONG n, unsigned *bits)
{
	CK_ATTRIBUTE_PTR a = p11_template_find(t, n, CKA_MODULUS_BITS);

	if (!a)
		return CKR_TEMPLATE_INCOMPLETE;
	if (!a->pValue || a->ulValueLen != sizeof(CK_ULONG))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	*bits = (unsigned)*(CK_ULONG *)a->pValue;
	return CKR_OK;
}

const char *p11_curve_of_params(const void *der, size_t len)
{
	static const struct {
		const char *name;
		unsigned char der[16];
		size_t len;
	} curves[] = {
		{"P-256", {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, 10},
		{"P-384", {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}, 7},
		{"P-521", {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23}, 7},
		/* Ed25519: RFC 8410's id-Ed25519, PKCS#11 3.0's curve name, GnuPG's OID (OpenSC uses it) */
		{"Ed25519", {0x06, 0x03, 0x2b, 0x65, 0x70}, 5},
		{"Ed25519", {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'}, 14},
		{"Ed25519", {0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01}, 11},
	};

	for (size_t i = 0; der && i < sizeof curves / sizeof curves[0]; i++)
		if (len == curves[i].len && !memcmp(der, curves[i].der, len))
			return curves[i].name;
	return NULL;
}

static CK_RV curve_of_template(CK_ATTRIBUTE_PTR t, CK_ULONG n, int edwards, const char **curve)
{
	CK_ATTRIBUTE_PTR a = p11_template_find(t, n, CKA_EC_PARAMS);

	if (!a)
		return CKR_TEMPLATE_INCOMPLETE;
	*curve = p11_curve_of_params(a->pValue, a->ulValueLen);
	if (!*curve || edwards != !strcmp(*curve, "Ed25519"))
		return CKR_CURVE_NOT_SUPPORTED;
	return CKR_OK;
}

CK_RV p11_generate_key_pair_locked(struct p11_session *s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub_t, CK_ULONG pub_n,
				   CK_ATTRIBUTE_PTR priv_t, CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR pub_h,
				   CK_OBJECT_HANDLE_PTR priv_h)
{
	enum kw_key_type type;
	unsigned bits = 0, flags = 0, usages = 0;
	const char *curve = NULL;
	char name[KW_NAME_MAX + 1];
	CK_ATTRIBUTE_PTR id, e;
	kw_object *priv = NULL, *pub = NULL;
	int extractable = 0, sensitive = 1, modifiable = 1, sign = 1, decrypt = -1, verify = -1, encrypt = -1, wrap = -1, unwrap = -1, derive = -1;
	int priv_token = -1, pub_token = -1, session;
	kw_client *c;
	kw_rv krv;
	CK_RV rv;

	if (m->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN) {
		type = KW_KEY_RSA;
		if ((rv = bits_of_template(pub_t, pub_n, &bits)))
			return rv;
		/* the HSM makes keys with e = 65537 */
		e = p11_template_find(pub_t, pub_n, CKA_PUBLIC_EXPONENT);
		if (e) {
			static const unsigned char f4[] = {0x01, 0x00, 0x01};
			const unsigned char *p = e->pValue;
			size_t len = e->ulValueLen;

			while (p && len && *p == 0)
				p++, len--;
			if (!p || len != sizeof f4 || memcmp(p, f4, len))
				return CKR_ATTRIBUTE_VALUE_INVALID;
		}
		decrypt = 1;
	} else if (m->mechanism == CKM_EC_KEY_PAIR_GEN) {
		type = KW_KEY_EC;
		if ((rv = curve_of_template(pub_t, pub_n, 0, &curve)))
			return rv;
		decrypt = 0;
	} else if (m->mechanism == CKM_EC_EDWARDS_KEY_PAIR_GEN) {
		type = KW_KEY_ED25519;
		if ((rv = curve_of_template(pub_t, pub_n, 1, &curve)))
			return rv;
		curve = NULL; /* the key type says it all */
		decrypt = 0;
	} else {
		return CKR_MECHANISM_INVALID;
	}
	if ((rv = p11_template_untrusted(priv_t, priv_n)) || (rv = p11_template_untrusted(pub_t, pub_n)) ||
	    (rv = p11_template_bool(priv_t, priv_n, CKA_EXTRACTABLE, &extractable)) ||
	    (rv = p11_template_bool(priv_t, priv_n, CKA_SENSITIVE, &sensitive)) ||
	    (rv = p11_template_bool(priv_t, priv_n, CKA_MODIFIABLE, &modifiable)) ||
	    (rv = p11_template_bool(priv_t, priv_n, CKA_SIGN, &sign)) ||
	    (rv = p11_template_bool(priv_t, priv_n, CKA_DECRYPT, &decrypt)) ||
	    (rv = p11_template_bool(priv_t, priv_n, CKA_UNWRAP, &unwrap)) ||
	    (rv = p11_template_bool(priv_t, priv_n, CKA_DERIVE, &derive)) ||
	    (rv = p11_template_bool(pub_t, pub_n, CKA_WRAP, &wrap)) ||
	    (rv = p11_template_bool(pub_t, pub_n, CKA_VERIFY, &verify)) ||
	    (rv = p11_template_bool(pub_t, pub_n, CKA_ENCRYPT, &encrypt)) ||
	    (rv = p11_template_bool(priv_t, priv_n, CKA_TOKEN, &priv_token)) ||
	    (rv = p11_template_bool(pub_t, pub_n, CKA_TOKEN, &pub_token)))
		return rv;
	/* CKA_TOKEN false: a session pair (both halves; a pair half on the token, half not, is refused) */
	if (priv_token >= 0 && pub_token >= 0 && priv_token != pub_token)
		return CKR_TEMPLATE_INCONSISTENT;
	session = priv_token == 0 || pub_token == 0;
	if (!sensitive)
		return CKR_ATTRIBUTE_VALUE_INVALID; /* private keys on the HSM are always sensitive */
	if (type != KW_KEY_RSA && (decrypt > 0 || encrypt > 0 || unwrap > 0 || wrap > 0))
		return CKR_TEMPLATE_INCONSISTENT; /* only RSA keys decrypt and unwrap */
	if (sign || verify > 0)
		usages |= KW_USAGE_SIGN;
	if (decrypt > 0 || encrypt > 0)
		usages |= KW_USAGE_DECRYPT;
	if (unwrap > 0 || wrap > 0)
		usages |= KW_USAGE_WRAP; /* an RSA key unwraps (RSA-OAEP) in the HSM */
	/*
	 * Only EC keys derive (ECDH). pkcs11-tool asks CKA_DERIVE of every EC-type
	 * pair by default, Ed25519 too: elsewhere it is ignored (it reads false).
	 */
	if (derive > 0 && type == KW_KEY_EC)
		usages |= KW_USAGE_DERIVE;
	if (!usages)
		return CKR_TEMPLATE_INCONSISTENT;
	if (extractable)
		flags |= KW_GEN_EXTRACTABLE;
	if (!modifiable)
		flags |= KW_GEN_NOT_MODIFIABLE;
	if (session)
		flags |= KW_GEN_SESSION;
	rv = p11_label_of_template(priv_t, priv_n, name, sizeof name);
	if (!rv && !p11_template_find(priv_t, priv_n, CKA_LABEL))
		rv = p11_label_of_template(pub_t, pub_n, name, sizeof name);
	if (rv)
		return rv;
	id = p11_template_find(priv_t, priv_n, CKA_ID);
	if (!id)
		id = p11_template_find(pub_t, pub_n, CKA_ID);
	if (id && ((!id->pValue && id->ulValueLen) || id->ulValueLen > KW_CKAID_MAX))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	c = session ? p11.sclient : p11.client;
	krv = kw_generate_key_ckaid(c, p11.slots[s->slot].owner, name, type, bits, curve, flags, usages,
				    id ? id->pValue : NULL, id ? id->ulValueLen : 0, &priv, &pub);
	if (krv)
		return p11_ckr(krv, "generating a key pair");
	if (session)
		p11.sclient_used = 1;
	*priv_h = p11_object_adopt_locked(priv);
	*pub_h = p11_object_adopt_locked(pub);
	if (session) {
		p11_object_set_creator_locked(*priv_h, p11_session_handle_locked(s));
		p11_object_set_creator_locked(*pub_h, p11_session_handle_locked(s));
	}
	return *priv_h && *pub_h ? CKR_OK : CKR_HOST_MEMORY;
}

CK_RV p11_op_init_locked(struct p11_session *s, struct p11_op *op, int verify, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	const kw_object *o = p11_object_get_locked(key);
	const struct mech *me = mech_find(m->mechanism);
	enum kw_class want = verify ? KW_CLASS_PUBLIC_KEY : KW_CLASS_PRIVATE_KEY;
	int hmac = me && me->kw == KW_MECH_HMAC;
	const unsigned char *spki, *p;
	size_t spki_len = 0;
	unsigned bits;

	(void)s;
	if (!o)
		return CKR_KEY_HANDLE_INVALID;
	if (!me || !(me->flags & (verify ? CKF_VERIFY : CKF_SIGN)))
		return CKR_MECHANISM_INVALID;
	/* a private key may verify too: its public half is known; an HMAC key (secret) does both, on the HSM */
	if (hmac ? kw_object_class(o) != KW_CLASS_SECRET_KEY
		 : kw_object_class(o) != want && !(verify && kw_object_class(o) == KW_CLASS_PRIVATE_KEY))
		return CKR_KEY_TYPE_INCONSISTENT;
	if (hmac && verify && !p11.logged_in)
		return CKR_USER_NOT_LOGGED_IN;
	if (kw_object_key_type(o) != me->key_type)
		return CKR_KEY_TYPE_INCONSISTENT;
	if (!(kw_object_usages(o) & KW_USAGE_SIGN))
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	/* raw RSA signing is raw RSA decryption: keywardd wants both usages, refuse here first */
	if (!verify && me->kw == KW_MECH_RSA_RAW && !(kw_object_usages(o) & KW_USAGE_DECRYPT))
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	memset(op, 0, sizeof *op);
	op->mech = me->type;
	op->key_type = me->key_type;
	op->key_id = kw_object_id(o);
	op->kwm.mech = me->kw;
	op->kwm.hash = me->hash;
	op->kwm.salt_length = -1;
	op->md = hmac ? NULL : p11_hash_md(me->hash); /* an HMAC takes the whole message */
	bits = kw_object_bits(o);
	op->sig_len = hmac				 ? (size_t)EVP_MD_get_size(p11_hash_md(me->hash))
		      : me->key_type == KW_KEY_RSA	 ? (bits + 7) / 8
		      : me->key_type == KW_KEY_ED25519 ? 64
						       : 2 * ((bits + 7) / 8);
	if (me->kw == KW_MECH_RSA_PSS) {
		CK_RSA_PKCS_PSS_PARAMS *pp = m->pParameter;
		enum kw_hash h;

		if (!pp || m->ulParameterLen != sizeof *pp)
			return CKR_MECHANISM_PARAM_INVALID;
		h = p11_hash_from_ckm(pp->hashAlg);
		if (!h || (me->hash && h != me->hash) || !p11_hash_from_mgf(pp->mgf))
			return CKR_MECHANISM_PARAM_INVALID;
		op->kwm.hash = h;
		op->kwm.mgf1_hash = p11_hash_from_mgf(pp->mgf);
		op->kwm.salt_length = (int)pp->sLen;
	} else if (me->kw == KW_MECH_EDDSA && m->pParameter) {
		/* PKCS#11 3.0's CK_EDDSA_PARAMS may name pure Ed25519; Ed25519ph and Ed25519ctx are not offered */
		const CK_EDDSA_PARAMS *ep = m->pParameter;

		if (m->ulParameterLen != sizeof *ep || ep->phFlag || ep->ulContextDataLen)
			return CKR_MECHANISM_PARAM_INVALID;
	} else if (m->pParameter || m->ulParameterLen) {
		return CKR_MECHANISM_PARAM_INVALID;
	}
	if (op->md && (!(op->mdctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex(op->mdctx, op->md, NULL) != 1)) {
		p11_op_cleanup(op);
		return CKR_HOST_MEMORY;
	}
	if (verify && !hmac) {
		spki = p11_public_key_locked(o, &spki_len);
		p = spki;
		if (!spki || !(op->pub = d2i_PUBKEY(NULL, &p, (long)spki_len))) {
			p11_op_cleanup(op);
			return CKR_KEY_HANDLE_INVALID;
		}
	}
	op->active = 1;
	return CKR_OK;
}

CK_RV p11_op_update(struct p11_op *op, const unsigned char *data, size_t len)
{
	if (op->mdctx)
		return EVP_DigestUpdate(op->mdctx, data, len) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
	if (op->kwm.mech == KW_MECH_HMAC)
		return p11_gather(&op->data, &op->data_cap, &op->len, data, len, KW_HMAC_DATA_MAX);
	if (len > sizeof op->buf - op->len)
		return CKR_DATA_LEN_RANGE;
	if (len)
		memcpy(op->buf + op->len, data, len);
	op->len += len;
	return CKR_OK;
}

/* Replaces op's accumulated data by its digest, if op hashes. */
static CK_RV op_digest(struct p11_op *op)
{
	unsigned n = 0;

	if (!op->mdctx)
		return CKR_OK;
	if (EVP_DigestFinal_ex(op->mdctx, op->buf, &n) != 1)
		return CKR_FUNCTION_FAILED;
	op->len = n;
	EVP_MD_CTX_free(op->mdctx);
	op->mdctx = NULL;
	return CKR_OK;
}

/* "signing with key "NAME" of owner OWNER", for the message of a failure (lock held). */
static void key_words(uint64_t key_id, char *out, size_t size)
{
	const kw_object *o = p11_object_get_locked(p11_object_handle_of_locked(key_id));

	if (o)
		snprintf(out, size, "signing with key \"%s\" of owner %s", kw_object_name(o), kw_object_owner(o));
	else
		snprintf(out, size, "signing with key 0x%llx", (unsigned long long)key_id);
}

CK_RV p11_sign_final(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	unsigned char tbs[P11_RAW_DATA_MAX];
	struct kw_mechanism kwm;
	struct p11_session *s;
	uint64_t key_id;
	size_t tbs_len, out_len;
	char what[KW_NAME_MAX + KW_OWNER_MAX + 48];
	kw_client *c;
	kw_rv krv;
	CK_RV rv;

	pthread_mutex_lock(&p11.lock);
	if (!p11.initialized) {
		pthread_mutex_unlock(&p11.lock);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	if (!(s = p11_session_get_locked(h)))
		rv = CKR_SESSION_HANDLE_INVALID;
	else if (!s->sign.active)
		rv = CKR_OPERATION_NOT_INITIALIZED;
	else if (s->sign.kwm.mech == KW_MECH_HMAC) {
		pthread_mutex_unlock(&p11.lock);
		return p11_hmac_final(h, 0, sig, sig_len);
	} else if (!sig || *sig_len < s->sign.sig_len) {
		rv = sig ? CKR_BUFFER_TOO_SMALL : CKR_OK;
		*sig_len = s->sign.sig_len;
	} else if (!(rv = op_digest(&s->sign))) {
		memcpy(tbs, s->sign.buf, s->sign.len);
		tbs_len = s->sign.len;
		kwm = s->sign.kwm;
		key_id = s->sign.key_id;
		out_len = *sig_len;
		c = p11_client_for_locked(key_id);
		key_words(key_id, what, sizeof what);
		p11_op_cleanup(&s->sign);
		pthread_mutex_unlock(&p11.lock);
		/* the HSM request runs unlocked: sessions sign concurrently */
		krv = kw_sign(c, key_id, &kwm, tbs, tbs_len, sig, &out_len);
		OPENSSL_cleanse(tbs, sizeof tbs);
		if (krv)
			return p11_ckr(krv, what);
		*sig_len = out_len;
		return CKR_OK;
	}
	if (rv && rv != CKR_BUFFER_TOO_SMALL && s)
		p11_op_cleanup(&s->sign);
	pthread_mutex_unlock(&p11.lock);
	return rv;
}

/* r||s -> DER ECDSA-Sig-Value (OPENSSL_free), or NULL. */
static unsigned char *ecdsa_raw_to_der(const unsigned char *sig, size_t len, int *der_len)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, (int)(len / 2), NULL), *s = BN_bin2bn(sig + len / 2, (int)(len / 2), NULL);
	unsigned char *der = NULL;

	if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return NULL;
	}
	*der_len = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	return *der_len > 0 ? der : NULL;
}

CK_RV p11_verify_final_locked(struct p11_op *op, const unsigned char *sig, size_t sig_len)
{
	EVP_PKEY_CTX *ctx = NULL;
	unsigned char *der = NULL, rec[P11_RAW_DATA_MAX];
	size_t rec_len = sizeof rec;
	int der_len = 0, ok = 0;
	CK_RV rv;

	if ((rv = op_digest(op)))
		return rv;
	if (sig_len != op->sig_len)
		return CKR_SIGNATURE_LEN_RANGE;
	if (!(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pub, NULL)))
		return CKR_HOST_MEMORY;
	if (op->key_type == KW_KEY_ED25519) {
		EVP_MD_CTX *md = EVP_MD_CTX_new();

		ok = md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, op->pub) == 1 &&
		     EVP_DigestVerify(md, sig, sig_len, op->buf, op->len) == 1;
		EVP_MD_CTX_free(md);
	} else if (op->key_type == KW_KEY_EC) {
		der = ecdsa_raw_to_der(sig, sig_len, &der_len);
		ok = der && EVP_PKEY_verify_init(ctx) == 1 &&
		     EVP_PKEY_verify(ctx, der, (size_t)der_len, op->buf, op->len) == 1;
	} else if (op->kwm.mech == KW_MECH_RSA_PKCS1 && !op->kwm.hash) {
		ok = EVP_PKEY_verify_recover_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_verify_recover(ctx, rec, &rec_len, sig, sig_len) == 1 && rec_len == op->len &&
		     CRYPTO_memcmp(rec, op->buf, rec_len) == 0;
	} else if (op->kwm.mech == KW_MECH_RSA_RAW) {
		ok = EVP_PKEY_verify_recover_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) == 1 &&
		     EVP_PKEY_verify_recover(ctx, rec, &rec_len, sig, sig_len) == 1 && rec_len == op->len &&
		     CRYPTO_memcmp(rec, op->buf, rec_len) == 0;
	} else if (op->kwm.mech == KW_MECH_RSA_PKCS1) {
		ok = EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(ctx, p11_hash_md(op->kwm.hash)) == 1 &&
		     EVP_PKEY_verify(ctx, sig, sig_len, op->buf, op->len) == 1;
	} else if (op->kwm.mech == KW_MECH_RSA_PSS) {
		const EVP_MD *md = p11_hash_md(op->kwm.hash);

		if (op->len != (size_t)EVP_MD_get_size(md)) {
			EVP_PKEY_CTX_free(ctx);
			return CKR_DATA_LEN_RANGE;
		}
		ok = EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(ctx, md) == 1 &&
		     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, p11_hash_md(op->kwm.mgf1_hash)) == 1 &&
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, op->kwm.salt_length) == 1 &&
		     EVP_PKEY_verify(ctx, sig, sig_len, op->buf, op->len) == 1;
	}
	OPENSSL_free(der);
	EVP_PKEY_CTX_free(ctx);
	OPENSSL_cleanse(rec, sizeof rec);
	return ok ? CKR_OK : CKR_SIGNATURE_INVALID;
}

CK_RV p11_hmac_final(CK_SESSION_HANDLE h, int verify, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	unsigned char mac[64], *msg = NULL;
	struct kw_mechanism kwm;
	struct p11_session *s;
	struct p11_op *op;
	uint64_t key_id;
	size_t msg_len, mac_len = sizeof mac, want;
	kw_client *c;
	kw_rv krv;
	CK_RV rv;

	pthread_mutex_lock(&p11.lock);
	if (!(s = p11_session_get_locked(h))) {
		pthread_mutex_unlock(&p11.lock);
		return CKR_SESSION_HANDLE_INVALID;
	}
	op = verify ? &s->verify : &s->sign;
	if (!op->active || op->kwm.mech != KW_MECH_HMAC) {
		pthread_mutex_unlock(&p11.lock);
		return CKR_OPERATION_NOT_INITIALIZED;
	}
	want = op->sig_len;
	if (!verify && (!sig || *sig_len < want)) { /* the length query, or a buffer too small: kept */
		rv = sig ? CKR_BUFFER_TOO_SMALL : CKR_OK;
		*sig_len = want;
		pthread_mutex_unlock(&p11.lock);
		return rv;
	}
	if (verify && *sig_len != want) {
		p11_op_cleanup(op);
		pthread_mutex_unlock(&p11.lock);
		return CKR_SIGNATURE_LEN_RANGE;
	}
	/* the message moves to this call; the operation ends whatever happens now */
	msg = op->data;
	msg_len = op->len;
	op->data = NULL;
	op->data_cap = 0;
	kwm = op->kwm;
	key_id = op->key_id;
	c = p11_client_for_locked(key_id);
	p11_op_cleanup(op);
	pthread_mutex_unlock(&p11.lock);

	krv = kw_sign(c, key_id, &kwm, msg ? msg : (const unsigned char *)"", msg_len, mac, &mac_len);
	if (krv)
		rv = p11_ckr(krv, verify ? "verifying an HMAC" : "making an HMAC");
	else if (mac_len != want)
		rv = CKR_DEVICE_ERROR;
	else if (verify)
		rv = CRYPTO_memcmp(mac, sig, want) == 0 ? CKR_OK : CKR_SIGNATURE_INVALID;
	else {
		memcpy(sig, mac, want);
		*sig_len = want;
		rv = CKR_OK;
	}
	OPENSSL_cleanse(mac, sizeof mac);
	if (msg) {
		OPENSSL_cleanse(msg, msg_len);
		free(msg);
	}
	return rv;
}
