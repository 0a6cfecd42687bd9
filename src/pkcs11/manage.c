/*
 * keyward-pkcs11.so: managing objects. C_CreateObject stores certificates
 * and data objects on the HSM; C_SetAttributeValue, C_CopyObject and
 * C_DestroyObject change, copy and delete any object; C_GenerateKey makes
 * AES keys and C_WrapKey wraps a key under one.
 *
 * Keys are born on the HSM or imported into it by C_UnwrapKey, which has
 * the HSM decrypt them: a private, public or secret key in C_CreateObject
 * is CKR_ATTRIBUTE_VALUE_INVALID (on CKA_CLASS).
 *
 * The one-way rules of PKCS#11 are checked here, so the caller gets the
 * code the standard names, and again by the HSM, which is what enforces
 * them: CKA_EXTRACTABLE never goes back to true, CKA_SENSITIVE never to
 * false, an object with CKA_MODIFIABLE false takes no change
 * (CKR_ACTION_PROHIBITED), and a copy is never looser than its source.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "p11.h"

/* A CK_ULONG attribute of the template, if present (CKR_ATTRIBUTE_VALUE_INVALID if malformed). */
static CK_RV template_ulong(CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, int *present, CK_ULONG *out)
{
	CK_ATTRIBUTE_PTR a = p11_template_find(t, n, type);

	*present = a != NULL;
	if (!a)
		return CKR_OK;
	if (!a->pValue || a->ulValueLen != sizeof(CK_ULONG))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	*out = *(CK_ULONG *)a->pValue;
	return CKR_OK;
}

/* A template's CKA_ID: NULL/0 when absent. */
static CK_RV template_ckaid(CK_ATTRIBUTE_PTR t, CK_ULONG n, const unsigned char **id, size_t *len)
{
	CK_ATTRIBUTE_PTR a = p11_template_find(t, n, CKA_ID);

	*id = NULL;
	*len = 0;
	if (!a)
		return CKR_OK;
	if ((!a->pValue && a->ulValueLen) || a->ulValueLen > KW_CKAID_MAX)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	*id = a->pValue;
	*len = a->ulValueLen;
	return CKR_OK;
}

/*
 * Attributes every object takes at creation with one fixed value: anything
 * else is refused. *token: CKA_TOKEN (true when absent).
 */
static CK_RV check_fixed(CK_ATTRIBUTE_PTR t, CK_ULONG n, int *token)
{
	int private_ = 0;
	CK_RV rv;

	*token = 1;
	if ((rv = p11_template_bool(t, n, CKA_TOKEN, token)) || (rv = p11_template_bool(t, n, CKA_PRIVATE, &private_)))
		return rv;
	/* certificates and data objects on the HSM are public */
	return !private_ ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
}

/* A certificate's label when the template gives none: its subject's CN, else a fresh name. */
static void label_of_cert(const unsigned char *der, size_t len, char *out, size_t size)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	int n = x ? X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)size) : -1;

	X509_free(x);
	if (n <= 0 || strchr(out, '\n'))
		p11_label_of_template(NULL, 0, out, size);
}

/* A template attribute's bytes, or NULL (with *len 0) if absent or empty. */
static const unsigned char *attr_bytes(CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, size_t *len)
{
	CK_ATTRIBUTE_PTR a = p11_template_find(t, n, type);

	*len = a && a->pValue ? a->ulValueLen : 0;
	return *len ? a->pValue : NULL;
}

/*
 * The public key a C_CreateObject template describes, as a DER SPKI
 * (OPENSSL_free): CKA_PUBLIC_KEY_INFO, or CKA_MODULUS and
 * CKA_PUBLIC_EXPONENT (CKK_RSA), or CKA_EC_PARAMS and CKA_EC_POINT (CKK_EC,
 * CKK_EC_EDWARDS; the point as a DER OCTET STRING or bare).
 */
static CK_RV public_key_spki(CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_KEY_TYPE kt, unsigned char **der, int *der_len)
{
	const unsigned char *info, *a, *b, *p;
	size_t info_len, a_len, b_len;
	ASN1_OCTET_STRING *os = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	const char *curve;
	CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

	*der = NULL;
	if ((info = attr_bytes(t, n, CKA_PUBLIC_KEY_INFO, &info_len))) {
		p = info;
		pkey = d2i_PUBKEY(NULL, &p, (long)info_len);
		if (pkey && p != info + info_len) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
	} else if (kt == CKK_RSA) {
		a = attr_bytes(t, n, CKA_MODULUS, &a_len);
		b = attr_bytes(t, n, CKA_PUBLIC_EXPONENT, &b_len);
		if (!a || !b)
			return CKR_TEMPLATE_INCOMPLETE;
		bn_n = BN_bin2bn(a, (int)a_len, NULL);
		bn_e = BN_bin2bn(b, (int)b_len, NULL);
		bld = OSSL_PARAM_BLD_new();
		if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
			params = OSSL_PARAM_BLD_to_param(bld);
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	} else if (kt == CKK_EC || kt == CKK_EC_EDWARDS) {
		a = attr_bytes(t, n, CKA_EC_PARAMS, &a_len);
		b = attr_bytes(t, n, CKA_EC_POINT, &b_len);
		if (!a || !b)
			return CKR_TEMPLATE_INCOMPLETE;
		if (!(curve = p11_curve_of_params(a, a_len)) || (kt == CKK_EC_EDWARDS) != !strcmp(curve, "Ed25519"))
			return CKR_ATTRIBUTE_VALUE_INVALID;
		/* PKCS#11 says a DER OCTET STRING; some callers give the bare point */
		p = b;
		if ((os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)b_len)) && p == b + b_len) {
			b = ASN1_STRING_get0_data(os);
			b_len = (size_t)ASN1_STRING_length(os);
		}
		if (kt == CKK_EC_EDWARDS) {
			pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, b, b_len);
		} else {
			bld = OSSL_PARAM_BLD_new();
			if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve, 0) &&
			    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, b, b_len))
				params = OSSL_PARAM_BLD_to_param(bld);
			ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
		}
	} else {
		return CKR_ATTRIBUTE_VALUE_INVALID;
	}
	if (ctx && params && (EVP_PKEY_fromdata_init(ctx) != 1 ||
			      EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1))
		pkey = NULL;
	if (pkey && (*der_len = i2d_PUBKEY(pkey, der)) > 0)
		rv = CKR_OK;
	ERR_clear_error();
	ASN1_OCTET_STRING_free(os);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	BN_free(bn_n);
	BN_free(bn_e);
	return rv;
}

/* C_CreateObject of a public key: its SPKI and usages from the template, stored on the HSM. */
static CK_RV create_public_key_locked(struct p11_session *s, CK_ATTRIBUTE_PTR t, CK_ULONG n, int token, int modifiable,
				      const unsigned char *id, size_t id_len, CK_OBJECT_HANDLE_PTR out)
{
	CK_ULONG kt = 0;
	int has_kt, verify = -1, encrypt = -1, wrap = -1, derive = 0, der_len = 0;
	unsigned usages = 0;
	unsigned char *der = NULL;
	char name[KW_NAME_MAX + 1];
	kw_object *o = NULL;
	kw_rv krv;
	CK_RV rv;

	if ((rv = template_ulong(t, n, CKA_KEY_TYPE, &has_kt, &kt)) ||
	    (rv = p11_template_bool(t, n, CKA_VERIFY, &verify)) || (rv = p11_template_bool(t, n, CKA_ENCRYPT, &encrypt)) ||
	    (rv = p11_template_bool(t, n, CKA_WRAP, &wrap)) || (rv = p11_template_bool(t, n, CKA_DERIVE, &derive)))
		return rv;
	if (!has_kt)
		return CKR_TEMPLATE_INCOMPLETE;
	if (derive > 0 || (kt != CKK_RSA && (encrypt > 0 || wrap > 0)))
		return CKR_TEMPLATE_INCONSISTENT;
	/* no usage named: verify, and for RSA encrypt too */
	if (verify > 0 || (verify < 0 && encrypt <= 0 && wrap <= 0))
		usages |= KW_USAGE_SIGN;
	if (encrypt > 0 || (kt == CKK_RSA && verify < 0 && encrypt < 0 && wrap <= 0))
		usages |= KW_USAGE_DECRYPT;
	if (wrap > 0)
		usages |= KW_USAGE_WRAP;
	if ((rv = public_key_spki(t, n, kt, &der, &der_len)))
		return rv;
	rv = p11_label_of_template(t, n, name, sizeof name);
	if (!rv) {
		krv = kw_create_public_key(token ? p11.client : p11.sclient, p11.slots[s->slot].owner, name, der,
					   (size_t)der_len, id, id_len, usages,
					   (modifiable ? 0 : KW_GEN_NOT_MODIFIABLE) | (token ? 0 : KW_GEN_SESSION), &o);
		rv = krv == KW_ERR_KEY_SIZE ? p11_ckr_as(krv, "storing a public key", CKR_ATTRIBUTE_VALUE_INVALID)
					    : p11_ckr(krv, "storing a public key");
	}
	OPENSSL_free(der);
	if (rv)
		return rv;
	if (!token)
		p11.sclient_used = 1;
	*out = p11_object_adopt_locked(o);
	if (*out && !token)
		p11_object_set_creator_locked(*out, p11_session_handle_locked(s));
	return *out ? CKR_OK : CKR_HOST_MEMORY;
}

CK_RV p11_create_object_locked(struct p11_session *s, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
	CK_ULONG cls = 0, ctype = CKC_X_509;
	int has_cls, has_ctype, modifiable = 1, token;
	CK_ATTRIBUTE_PTR value = p11_template_find(t, n, CKA_VALUE), app = p11_template_find(t, n, CKA_APPLICATION);
	const unsigned char *id;
	size_t id_len;
	char name[KW_NAME_MAX + 1], application[KW_APPLICATION_MAX + 1] = "";
	kw_object *o = NULL;
	kw_rv krv;
	CK_RV rv;

	if ((rv = template_ulong(t, n, CKA_CLASS, &has_cls, &cls)) ||
	    (rv = template_ulong(t, n, CKA_CERTIFICATE_TYPE, &has_ctype, &ctype)) ||
	    (rv = p11_template_bool(t, n, CKA_MODIFIABLE, &modifiable)) || (rv = check_fixed(t, n, &token)) ||
	    (rv = template_ckaid(t, n, &id, &id_len)) || (rv = p11_template_untrusted(t, n)))
		return rv;
	if (!has_cls)
		return CKR_TEMPLATE_INCOMPLETE;
	if (cls == CKO_PUBLIC_KEY)
		return create_public_key_locked(s, t, n, token, modifiable, id, id_len, out);
	if (cls != CKO_CERTIFICATE && cls != CKO_DATA)
		return CKR_ATTRIBUTE_VALUE_INVALID; /* private and secret keys: generated on the HSM, or unwrapped */
	if (value && !value->pValue && value->ulValueLen)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	if (cls == CKO_CERTIFICATE) {
		if (!has_ctype || !value)
			return CKR_TEMPLATE_INCOMPLETE;
		if (ctype != CKC_X_509)
			return CKR_ATTRIBUTE_VALUE_INVALID;
	}
	if (app) {
		if (cls != CKO_DATA)
			return CKR_ATTRIBUTE_TYPE_INVALID;
		if (!app->pValue || app->ulValueLen > KW_APPLICATION_MAX || memchr(app->pValue, '\0', app->ulValueLen))
			return CKR_ATTRIBUTE_VALUE_INVALID;
		memcpy(application, app->pValue, app->ulValueLen);
		application[app->ulValueLen] = '\0';
	}
	if (p11_template_find(t, n, CKA_LABEL))
		rv = p11_label_of_template(t, n, name, sizeof name);
	else if (cls == CKO_CERTIFICATE)
		label_of_cert(value->pValue, value->ulValueLen, name, sizeof name);
	else
		rv = p11_label_of_template(NULL, 0, name, sizeof name);
	if (rv)
		return rv;
	/* CKA_TOKEN false: a session object, on the module's session connection */
	krv = kw_create_object(token ? p11.client : p11.sclient, p11.slots[s->slot].owner, name,
			       cls == CKO_CERTIFICATE ? KW_CLASS_CERTIFICATE : KW_CLASS_DATA,
			       value ? value->pValue : NULL, value ? value->ulValueLen : 0, id, id_len, application,
			       (modifiable ? 0 : KW_GEN_NOT_MODIFIABLE) | (token ? 0 : KW_GEN_SESSION), &o);
	if (krv)
		return p11_ckr(krv, "storing an object");
	if (!token)
		p11.sclient_used = 1;
	*out = p11_object_adopt_locked(o);
	if (*out && !token)
		p11_object_set_creator_locked(*out, p11_session_handle_locked(s));
	return *out ? CKR_OK : CKR_HOST_MEMORY;
}

CK_RV p11_destroy_object_locked(CK_OBJECT_HANDLE h)
{
	const kw_object *o = p11_object_get_locked(h);
	unsigned deleted = 0;
	kw_rv krv;

	if (!o)
		return CKR_OBJECT_HANDLE_INVALID;
	krv = kw_delete_objects(p11_client_for_locked(kw_object_id(o)), kw_object_id(o), NULL, NULL, KW_CLASS_ANY,
				&deleted);
	if (krv && krv != KW_ERR_NOT_FOUND)
		return p11_ckr(krv, "deleting an object");
	p11_object_forget_locked(h);
	return krv ? CKR_OBJECT_HANDLE_INVALID : CKR_OK;
}

/* Reads object id afresh from the HSM into the handle table. */
static CK_RV refresh_locked(uint64_t id)
{
	kw_object *fresh = NULL;
	kw_rv krv = kw_get_object(p11_client_for_locked(id), id, NULL, NULL, KW_CLASS_ANY, &fresh);

	if (krv)
		return p11_ckr(krv, "reading an object");
	return p11_object_adopt_locked(fresh) ? CKR_OK : CKR_HOST_MEMORY;
}

/*
 * One attribute of a change: what C_SetAttributeValue or C_CopyObject may
 * do with it, into chg. Attributes that exist but cannot change answer
 * CKR_ATTRIBUTE_READ_ONLY.
 */
static CK_RV change_of(const kw_object *o, CK_ATTRIBUTE_PTR a, int copy, struct kw_object_change *chg, char *name)
{
	enum kw_class cls = kw_object_class(o);
	int secret_half = cls == KW_CLASS_PRIVATE_KEY || cls == KW_CLASS_SECRET_KEY;
	CK_BBOOL b;

	switch (a->type) {
	case CKA_LABEL:
		if (!a->pValue || !a->ulValueLen || a->ulValueLen > KW_NAME_MAX ||
		    memchr(a->pValue, '\0', a->ulValueLen))
			return CKR_ATTRIBUTE_VALUE_INVALID;
		memcpy(name, a->pValue, a->ulValueLen);
		name[a->ulValueLen] = '\0';
		chg->new_name = name;
		return CKR_OK;
	case CKA_ID:
		if (cls == KW_CLASS_DATA)
			return CKR_ATTRIBUTE_TYPE_INVALID; /* data objects have none in PKCS#11 */
		if (copy)
			return CKR_ATTRIBUTE_READ_ONLY; /* a copy keeps its source's CKA_ID */
		if ((!a->pValue && a->ulValueLen) || a->ulValueLen > KW_CKAID_MAX)
			return CKR_ATTRIBUTE_VALUE_INVALID;
		chg->set_ckaid = 1;
		chg->ckaid = a->pValue;
		chg->ckaid_len = a->ulValueLen;
		return CKR_OK;
	case CKA_EXTRACTABLE:
	case CKA_SENSITIVE:
	case CKA_MODIFIABLE:
	case CKA_TOKEN:
	case CKA_PRIVATE:
		break;
	default:
		return CKR_ATTRIBUTE_READ_ONLY;
	}
	if (!a->pValue || a->ulValueLen != sizeof b)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	b = *(CK_BBOOL *)a->pValue;
	switch (a->type) {
	case CKA_EXTRACTABLE:
		if (!secret_half)
			return CKR_ATTRIBUTE_TYPE_INVALID;
		if (b && !kw_object_extractable(o))
			return CKR_ATTRIBUTE_READ_ONLY; /* never back to true */
		chg->extractable = b ? -1 : 0;
		return CKR_OK;
	case CKA_SENSITIVE:
		if (!secret_half)
			return CKR_ATTRIBUTE_TYPE_INVALID;
		return b ? CKR_OK : CKR_ATTRIBUTE_READ_ONLY; /* keys on the HSM are always sensitive */
	case CKA_MODIFIABLE:
		if (!copy)
			return CKR_ATTRIBUTE_READ_ONLY; /* set at creation, or in a copy */
		if (b && !kw_object_modifiable(o))
			return CKR_ATTRIBUTE_READ_ONLY;
		chg->modifiable = b ? -1 : 0;
		return CKR_OK;
	case CKA_TOKEN:
		return b ? CKR_OK : CKR_ATTRIBUTE_READ_ONLY;
	default: /* CKA_PRIVATE */
		return (b != 0) == secret_half ? CKR_OK : CKR_ATTRIBUTE_READ_ONLY;
	}
}

CK_RV p11_set_attributes_locked(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	const kw_object *o = p11_object_get_locked(h);
	struct kw_object_change chg = {.extractable = -1, .modifiable = -1};
	char name[KW_NAME_MAX + 1];
	uint64_t id, pair;
	kw_rv krv;
	CK_RV rv;

	if (!o)
		return CKR_OBJECT_HANDLE_INVALID;
	/* session objects are made and destroyed, never changed (the HSM refuses too) */
	if (!kw_object_modifiable(o) || kw_object_session(o))
		return CKR_ACTION_PROHIBITED;
	for (CK_ULONG i = 0; i < n; i++)
		if ((rv = change_of(o, &t[i], 0, &chg, name)))
			return rv;
	id = kw_object_id(o);
	pair = kw_object_pair_id(o); /* o is freed when its entry is refreshed */
	/* every change in one transaction on the HSM: all or none */
	krv = kw_modify_object(p11.client, id, &chg);
	if (krv)
		return krv == KW_ERR_NOT_MODIFIABLE ? p11_ckr_as(krv, "changing attributes", CKR_ACTION_PROHIBITED)
						    : p11_ckr(krv, "changing attributes");
	rv = refresh_locked(id);
	if (!rv && (chg.new_name || chg.set_ckaid) && pair && p11_object_handle_of_locked(pair))
		rv = refresh_locked(pair); /* the pair half was renamed too */
	return rv;
}

CK_RV p11_copy_object_locked(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
	const kw_object *o = p11_object_get_locked(h);
	struct kw_object_change chg = {.extractable = -1, .modifiable = -1};
	char name[KW_NAME_MAX + 1], fresh[KW_NAME_MAX + 1];
	kw_object_list *copies = NULL;
	enum kw_class want;
	kw_rv krv;
	CK_RV rv;

	if (!o)
		return CKR_OBJECT_HANDLE_INVALID;
	if (kw_object_session(o))
		return CKR_ACTION_PROHIBITED; /* the HSM copies token objects only */
	for (CK_ULONG i = 0; i < n; i++)
		if ((rv = change_of(o, &t[i], 1, &chg, name)))
			return rv;
	if (!chg.new_name) {
		/* one owner cannot hold two objects of a class and name: the copy needs its own */
		if ((rv = p11_label_of_template(NULL, 0, fresh, sizeof fresh)))
			return rv;
		chg.new_name = fresh;
	}
	want = kw_object_class(o);
	krv = kw_copy_object(p11.client, kw_object_id(o), chg.new_name, chg.extractable, chg.modifiable, &copies);
	if (krv)
		return krv == KW_ERR_ATTRIBUTE_VALUE ? p11_ckr_as(krv, "copying an object", CKR_ATTRIBUTE_READ_ONLY)
						     : p11_ckr(krv, "copying an object");
	*out = 0;
	/* a key pair is copied whole; the caller gets the half it named */
	for (size_t i = 0; i < kw_object_list_count(copies); i++) {
		kw_object *copy = NULL;
		const kw_object *c = kw_object_list_get(copies, i);
		CK_OBJECT_HANDLE ch;

		krv = kw_get_object(p11.client, kw_object_id(c), NULL, NULL, KW_CLASS_ANY, &copy);
		if (krv) {
			kw_object_list_free(copies);
			return p11_ckr(krv, "reading a copied object");
		}
		if (!(ch = p11_object_adopt_locked(copy))) {
			kw_object_list_free(copies);
			return CKR_HOST_MEMORY;
		}
		if (kw_object_class(c) == want)
			*out = ch;
	}
	kw_object_list_free(copies);
	return *out ? CKR_OK : CKR_GENERAL_ERROR;
}

CK_RV p11_object_size_locked(CK_OBJECT_HANDLE h, CK_ULONG_PTR size)
{
	const kw_object *o = p11_object_get_locked(h);
	size_t len = 0;

	if (!o)
		return CKR_OBJECT_HANDLE_INVALID;
	switch (kw_object_class(o)) {
	case KW_CLASS_PRIVATE_KEY:
	case KW_CLASS_SECRET_KEY:
		*size = CK_UNAVAILABLE_INFORMATION; /* sealed on the HSM: its size is not ours to tell */
		return CKR_OK;
	default:
		kw_object_value(o, &len);
		*size = len;
		return CKR_OK;
	}
}

CK_RV p11_generate_key_locked(struct p11_session *s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
			      CK_OBJECT_HANDLE_PTR out)
{
	static const CK_ATTRIBUTE_TYPE unsupported_uses[] = {CKA_SIGN, CKA_VERIFY, CKA_DERIVE};
	static const CK_ATTRIBUTE_TYPE generic_refused[] = {CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP, CKA_DERIVE};
	int generic = m->mechanism == CKM_GENERIC_SECRET_KEY_GEN;
	CK_ULONG len = 0, cls = CKO_SECRET_KEY, kt = generic ? CKK_GENERIC_SECRET : CKK_AES;
	int has_len, has_cls, has_kt, extractable = 0, sensitive = 1, modifiable = 1, wrap = 0, unwrap = 0, use = 0;
	int enc = 0, dec = 0;
	unsigned usages = 0;
	int token = 1;
	char name[KW_NAME_MAX + 1];
	const unsigned char *id;
	size_t id_len;
	kw_object *key = NULL, *no_public = NULL;
	kw_rv krv;
	CK_RV rv;

	if (m->mechanism != CKM_AES_KEY_GEN && !generic)
		return CKR_MECHANISM_INVALID;
	if (m->pParameter || m->ulParameterLen)
		return CKR_MECHANISM_PARAM_INVALID;
	if ((rv = p11_template_untrusted(t, n)))
		return rv;
	if ((rv = template_ulong(t, n, CKA_VALUE_LEN, &has_len, &len)) ||
	    (rv = template_ulong(t, n, CKA_CLASS, &has_cls, &cls)) ||
	    (rv = template_ulong(t, n, CKA_KEY_TYPE, &has_kt, &kt)) ||
	    (rv = p11_template_bool(t, n, CKA_EXTRACTABLE, &extractable)) ||
	    (rv = p11_template_bool(t, n, CKA_SENSITIVE, &sensitive)) ||
	    (rv = p11_template_bool(t, n, CKA_MODIFIABLE, &modifiable)) ||
	    (rv = p11_template_bool(t, n, CKA_WRAP, &wrap)) || (rv = p11_template_bool(t, n, CKA_UNWRAP, &unwrap)) ||
	    (rv = p11_template_bool(t, n, CKA_ENCRYPT, &enc)) || (rv = p11_template_bool(t, n, CKA_DECRYPT, &dec)) ||
	    (rv = p11_template_bool(t, n, CKA_TOKEN, &token)) ||
	    (rv = template_ckaid(t, n, &id, &id_len)))
		return rv;
	if (!has_len)
		return CKR_TEMPLATE_INCOMPLETE;
	/* secret keys are token objects only: the HSM keeps no session secret keys */
	if (cls != CKO_SECRET_KEY || !sensitive || !token)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	if (generic) {
		/* a generic secret makes and checks HMACs (CKA_SIGN, CKA_VERIFY: one usage) and nothing else */
		if (kt != CKK_GENERIC_SECRET || len < KW_GENERIC_MIN || len > KW_GENERIC_MAX)
			return CKR_ATTRIBUTE_VALUE_INVALID;
		for (size_t i = 0; i < sizeof generic_refused / sizeof generic_refused[0]; i++) {
			if ((rv = p11_template_bool(t, n, generic_refused[i], &use)))
				return rv;
			if (use)
				return CKR_TEMPLATE_INCONSISTENT;
		}
		usages = KW_USAGE_SIGN;
		goto make;
	}
	if ((len != 16 && len != 24 && len != 32) || kt != CKK_AES)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	/* the HSM's AES keys wrap keys, and encrypt and decrypt (one usage: either means both) */
	for (size_t i = 0; i < sizeof unsupported_uses / sizeof unsupported_uses[0]; i++) {
		if ((rv = p11_template_bool(t, n, unsupported_uses[i], &use)))
			return rv;
		if (use)
			return CKR_TEMPLATE_INCONSISTENT;
	}
	if (wrap || unwrap)
		usages |= KW_USAGE_WRAP;
	if (enc || dec)
		usages |= KW_USAGE_DECRYPT;
	/* a template that names no usage gets the one AES keys always had: wrap */
	if (!usages && !p11_template_find(t, n, CKA_WRAP) && !p11_template_find(t, n, CKA_UNWRAP) &&
	    !p11_template_find(t, n, CKA_ENCRYPT) && !p11_template_find(t, n, CKA_DECRYPT))
		usages = KW_USAGE_WRAP;
	if (!usages)
		return CKR_TEMPLATE_INCONSISTENT;
make:
	if ((rv = p11_label_of_template(t, n, name, sizeof name)))
		return rv;
	krv = kw_generate_key_ckaid(p11.client, p11.slots[s->slot].owner, name, generic ? KW_KEY_GENERIC : KW_KEY_AES,
				    (unsigned)len * 8, NULL,
				    (extractable ? KW_GEN_EXTRACTABLE : 0) | (modifiable ? 0 : KW_GEN_NOT_MODIFIABLE),
				    usages, id, id_len, &key, &no_public);
	kw_object_free(no_public); /* a secret key has no public half: NULL */
	if (krv)
		return p11_ckr(krv, "generating a secret key");
	*out = p11_object_adopt_locked(key);
	return *out ? CKR_OK : CKR_HOST_MEMORY;
}

/* What a template asks of a key the HSM makes from others (C_UnwrapKey, C_DeriveKey). */
struct new_key {
	CK_ULONG cls, kt, len;
	int has_cls, has_kt, has_len, extractable, sensitive, modifiable, token;
	const unsigned char *id;
	size_t id_len;
};

/*
 * Reads it: CKA_CLASS (default cls), CKA_KEY_TYPE (needed), CKA_VALUE_LEN,
 * the flags, CKA_ID. Such a key is sensitive and a token object:
 * CKA_SENSITIVE or CKA_TOKEN false is CKR_ATTRIBUTE_VALUE_INVALID.
 */
static CK_RV new_key_template(CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_ULONG cls, struct new_key *k)
{
	CK_RV rv;

	*k = (struct new_key){.cls = cls, .sensitive = 1, .modifiable = 1, .token = 1};
	if ((rv = template_ulong(t, n, CKA_CLASS, &k->has_cls, &k->cls)) ||
	    (rv = template_ulong(t, n, CKA_KEY_TYPE, &k->has_kt, &k->kt)) ||
	    (rv = template_ulong(t, n, CKA_VALUE_LEN, &k->has_len, &k->len)) ||
	    (rv = p11_template_bool(t, n, CKA_EXTRACTABLE, &k->extractable)) ||
	    (rv = p11_template_bool(t, n, CKA_SENSITIVE, &k->sensitive)) ||
	    (rv = p11_template_bool(t, n, CKA_MODIFIABLE, &k->modifiable)) ||
	    (rv = p11_template_bool(t, n, CKA_TOKEN, &k->token)) || (rv = template_ckaid(t, n, &k->id, &k->id_len)) ||
	    (rv = p11_template_untrusted(t, n)))
		return rv;
	if (!k->has_kt)
		return CKR_TEMPLATE_INCOMPLETE;
	return k->sensitive && k->token ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
}

/* The usages a template asks of an unwrapped key of class cls and type kt (0: none named). */
static CK_RV unwrap_usages(CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, unsigned *usages)
{
	static const struct {
		CK_ATTRIBUTE_TYPE a;
		unsigned usage;
	} map[] = {{CKA_SIGN, KW_USAGE_SIGN},	   {CKA_VERIFY, KW_USAGE_SIGN}, {CKA_DECRYPT, KW_USAGE_DECRYPT},
		   {CKA_ENCRYPT, KW_USAGE_DECRYPT}, {CKA_WRAP, KW_USAGE_WRAP},	{CKA_UNWRAP, KW_USAGE_WRAP},
		   {CKA_DERIVE, KW_USAGE_DERIVE}};
	int v = 0;
	CK_RV rv;

	*usages = 0;
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
		/* a private key's CKA_VERIFY, CKA_ENCRYPT and CKA_WRAP are its public half's */
		if (cls == CKO_PRIVATE_KEY && (map[i].a == CKA_VERIFY || map[i].a == CKA_ENCRYPT || map[i].a == CKA_WRAP))
			continue;
		v = 0; /* p11_template_bool leaves it alone when the template does not name the attribute */
		if ((rv = p11_template_bool(t, n, map[i].a, &v)))
			return rv;
		if (v > 0)
			*usages |= map[i].usage;
	}
	if ((kt == CKK_AES && (*usages & ~(KW_USAGE_WRAP | KW_USAGE_DECRYPT))) ||
	    (kt == CKK_GENERIC_SECRET && (*usages & ~KW_USAGE_SIGN)) ||
	    ((kt == CKK_EC || kt == CKK_EC_EDWARDS) && (*usages & (KW_USAGE_DECRYPT | KW_USAGE_WRAP))) ||
	    (kt == CKK_EC_EDWARDS && (*usages & KW_USAGE_DERIVE)))
		return CKR_TEMPLATE_INCONSISTENT;
	return CKR_OK;
}

/*
 * A CKM_RSA_PKCS_OAEP mechanism of C_WrapKey or C_UnwrapKey into kwm (the
 * label pointing into m). No parameter: RFC 8017's defaults, SHA-1 and MGF1
 * with SHA-1, no label (what pkcs11-tool --wrap and --unwrap send).
 */
static CK_RV oaep_of(CK_MECHANISM_PTR m, struct kw_mechanism *kwm)
{
	const CK_RSA_PKCS_OAEP_PARAMS *pp = m->pParameter;

	kwm->mech = KW_MECH_RSA_OAEP;
	kwm->hash = kwm->mgf1_hash = KW_HASH_SHA1;
	if (!pp && !m->ulParameterLen)
		return CKR_OK;
	if (!pp || m->ulParameterLen != sizeof *pp || (pp->source && pp->source != CKZ_DATA_SPECIFIED) ||
	    (pp->ulSourceDataLen && !pp->pSourceData) || pp->ulSourceDataLen > 1024)
		return CKR_MECHANISM_PARAM_INVALID;
	kwm->hash = p11_hash_from_ckm(pp->hashAlg);
	kwm->mgf1_hash = p11_hash_from_mgf(pp->mgf);
	kwm->label = pp->pSourceData;
	kwm->label_len = pp->ulSourceDataLen;
	return kwm->hash && kwm->mgf1_hash ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
}

CK_RV p11_unwrap_key_locked(struct p11_session *s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE unwrapping,
			    const unsigned char *wrapped, size_t wrapped_len, CK_ATTRIBUTE_PTR t, CK_ULONG n,
			    CK_OBJECT_HANDLE_PTR out)
{
	const kw_object *u = p11_object_get_locked(unwrapping);
	struct kw_mechanism kwm = {0};
	struct kw_unwrap_spec spec = {0};
	struct new_key nk;
	CK_ULONG cls, kt, value_len;
	int has_len;
	char name[KW_NAME_MAX + 1];
	kw_object *key = NULL, *pub = NULL;
	kw_rv krv;
	CK_RV rv;

	if (!u)
		return CKR_UNWRAPPING_KEY_HANDLE_INVALID;
	/* CKA_CLASS is needed too; imported keys are sensitive token objects, as generated ones */
	if ((rv = new_key_template(t, n, 0, &nk)))
		return rv;
	if (!nk.has_cls)
		return CKR_TEMPLATE_INCOMPLETE;
	cls = nk.cls;
	kt = nk.kt;
	value_len = nk.len;
	has_len = nk.has_len;
	spec.ckaid = nk.id;
	spec.ckaid_len = nk.id_len;
	switch (kt) {
	case CKK_AES:
	case CKK_GENERIC_SECRET:
		if (cls != CKO_SECRET_KEY)
			return CKR_TEMPLATE_INCONSISTENT;
		spec.type = kt == CKK_AES ? KW_KEY_AES : KW_KEY_GENERIC;
		spec.cls = KW_CLASS_SECRET_KEY;
		break;
	case CKK_RSA:
	case CKK_EC:
	case CKK_EC_EDWARDS:
		if (cls != CKO_PRIVATE_KEY || has_len)
			return CKR_TEMPLATE_INCONSISTENT;
		spec.type = kt == CKK_RSA ? KW_KEY_RSA : kt == CKK_EC ? KW_KEY_EC : KW_KEY_ED25519;
		spec.cls = KW_CLASS_PRIVATE_KEY;
		break;
	default:
		return CKR_ATTRIBUTE_VALUE_INVALID;
	}
	if ((rv = unwrap_usages(t, n, cls, kt, &spec.usages)))
		return rv;
	/* the mechanism, and the unwrapping key it wants */
	switch (m->mechanism) {
	case CKM_AES_KEY_WRAP:
	case CKM_AES_KEY_WRAP_KWP:
		/* the default IV only (RFC 3394's A6..., RFC 5649's A65959A6) */
		if (m->pParameter || m->ulParameterLen)
			return CKR_MECHANISM_PARAM_INVALID;
		kwm.mech = m->mechanism == CKM_AES_KEY_WRAP ? KW_MECH_AES_KEY_WRAP : KW_MECH_AES_KEY_WRAP_PAD;
		if (kw_object_class(u) != KW_CLASS_SECRET_KEY || kw_object_key_type(u) != KW_KEY_AES)
			return CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT;
		break;
	case CKM_RSA_PKCS_OAEP:
		if ((rv = oaep_of(m, &kwm)))
			return rv;
		if (kw_object_class(u) != KW_CLASS_PRIVATE_KEY || kw_object_key_type(u) != KW_KEY_RSA)
			return CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT;
		if (spec.cls != KW_CLASS_SECRET_KEY)
			return CKR_TEMPLATE_INCONSISTENT; /* private keys come wrapped with CKM_AES_KEY_WRAP_KWP */
		break;
	default:
		return CKR_MECHANISM_INVALID;
	}
	if (!(kw_object_usages(u) & KW_USAGE_WRAP))
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	if ((rv = p11_label_of_template(t, n, name, sizeof name)))
		return rv;
	spec.owner = p11.slots[s->slot].owner;
	spec.name = name;
	spec.flags = (nk.extractable > 0 ? KW_GEN_EXTRACTABLE : 0) | (nk.modifiable ? 0 : KW_GEN_NOT_MODIFIABLE);
	krv = kw_unwrap_key(p11.client, kw_object_id(u), &kwm, wrapped, wrapped_len, &spec, &key, &pub);
	if (krv)
		return krv == KW_ERR_ENCRYPTED_DATA ? p11_ckr_as(krv, "unwrapping a key", CKR_WRAPPED_KEY_INVALID)
						    : p11_ckr(krv, "unwrapping a key");
	/* CKA_VALUE_LEN, if the template gives it, must be what came out */
	if (has_len && (CK_ULONG)kw_object_bits(key) / 8 != value_len) {
		kw_delete_objects(p11.client, kw_object_id(key), NULL, NULL, KW_CLASS_ANY, NULL);
		kw_object_free(key);
		kw_object_free(pub);
		return CKR_TEMPLATE_INCONSISTENT;
	}
	/* the public half joins the handle table too (the table owns it, or it is dropped) */
	if (pub && !p11_object_adopt_locked(pub))
		kw_object_free(pub);
	*out = p11_object_adopt_locked(key);
	return *out ? CKR_OK : CKR_HOST_MEMORY;
}

CK_RV p11_derive_key_locked(struct p11_session *s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR t,
			    CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
	static const struct {
		CK_ULONG ckd;
		enum kw_hash hash;
	} kdfs[] = {{CKD_NULL, KW_HASH_NONE},	      {CKD_SHA1_KDF, KW_HASH_SHA1},	{CKD_SHA224_KDF, KW_HASH_SHA224},
		    {CKD_SHA256_KDF, KW_HASH_SHA256}, {CKD_SHA384_KDF, KW_HASH_SHA384}, {CKD_SHA512_KDF, KW_HASH_SHA512}};
	const kw_object *b = p11_object_get_locked(base);
	const CK_ECDH1_DERIVE_PARAMS *pp = m->pParameter;
	struct kw_ecdh_params ep = {0};
	struct kw_unwrap_spec spec = {0};
	struct new_key nk;
	CK_ULONG kt, len;
	int kdf_ok = 0;
	ASN1_OCTET_STRING *os = NULL;
	const unsigned char *p;
	char name[KW_NAME_MAX + 1];
	kw_object *key = NULL;
	kw_rv krv;
	CK_RV rv;

	if (m->mechanism != CKM_ECDH1_DERIVE && m->mechanism != CKM_ECDH1_COFACTOR_DERIVE)
		return CKR_MECHANISM_INVALID;
	if (!pp || m->ulParameterLen != sizeof *pp || !pp->pPublicData || !pp->ulPublicDataLen ||
	    (pp->ulSharedDataLen && !pp->pSharedData))
		return CKR_MECHANISM_PARAM_INVALID;
	for (size_t i = 0; i < sizeof kdfs / sizeof kdfs[0]; i++)
		if (kdfs[i].ckd == pp->kdf) {
			ep.kdf = kdfs[i].hash;
			kdf_ok = 1;
		}
	if (!kdf_ok || (pp->kdf == CKD_NULL && pp->ulSharedDataLen))
		return CKR_MECHANISM_PARAM_INVALID;
	if (!b)
		return CKR_KEY_HANDLE_INVALID;
	if (kw_object_class(b) != KW_CLASS_PRIVATE_KEY || kw_object_key_type(b) != KW_KEY_EC)
		return CKR_KEY_TYPE_INCONSISTENT;
	if (!(kw_object_usages(b) & KW_USAGE_DERIVE))
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	/* the derived key stays in the HSM: sensitive, a token object */
	if ((rv = new_key_template(t, n, CKO_SECRET_KEY, &nk)))
		return rv;
	kt = nk.kt;
	len = nk.len;
	spec.ckaid = nk.id;
	spec.ckaid_len = nk.id_len;
	if (nk.cls != CKO_SECRET_KEY || (kt != CKK_AES && kt != CKK_GENERIC_SECRET))
		return CKR_TEMPLATE_INCONSISTENT;
	/* an AES key's length may follow from CKA_VALUE_LEN only; a generic secret defaults to the field size */
	if (!nk.has_len) {
		if (kt == CKK_AES)
			return CKR_TEMPLATE_INCOMPLETE;
		len = (kw_object_bits(b) + 7) / 8;
	}
	if ((rv = unwrap_usages(t, n, CKO_SECRET_KEY, kt, &spec.usages)))
		return rv;
	/* PKCS#11 says the point is a DER OCTET STRING; most callers give it bare */
	p = pp->pPublicData;
	if ((os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)pp->ulPublicDataLen)) && p == pp->pPublicData + pp->ulPublicDataLen) {
		ep.public_data = ASN1_STRING_get0_data(os);
		ep.public_len = (size_t)ASN1_STRING_length(os);
	} else {
		ep.public_data = pp->pPublicData;
		ep.public_len = pp->ulPublicDataLen;
	}
	ERR_clear_error();
	ep.shared_data = pp->pSharedData;
	ep.shared_len = pp->ulSharedDataLen;
	ep.cofactor = m->mechanism == CKM_ECDH1_COFACTOR_DERIVE;
	ep.length = (unsigned)len;
	spec.type = kt == CKK_AES ? KW_KEY_AES : KW_KEY_GENERIC;
	spec.cls = KW_CLASS_SECRET_KEY;
	spec.owner = p11.slots[s->slot].owner;
	spec.flags = (nk.extractable > 0 ? KW_GEN_EXTRACTABLE : 0) | (nk.modifiable ? 0 : KW_GEN_NOT_MODIFIABLE);
	if ((rv = p11_label_of_template(t, n, name, sizeof name)))
		goto out;
	spec.name = name;
	krv = kw_derive_key(p11_client_for_locked(kw_object_id(b)), kw_object_id(b), &ep, &spec, &key);
	if (krv) {
		rv = krv == KW_ERR_KEY_SIZE ? p11_ckr_as(krv, "deriving a key", CKR_TEMPLATE_INCONSISTENT)
					    : p11_ckr(krv, "deriving a key");
		goto out;
	}
	*out = p11_object_adopt_locked(key);
	rv = *out ? CKR_OK : CKR_HOST_MEMORY;
out:
	ASN1_OCTET_STRING_free(os);
	return rv;
}

/*
 * The wrapping key w fits mechanism m: an AES key (AES key wrap) or an RSA
 * public key (RSA-OAEP, which wraps secret keys only), of usage wrap.
 */
static CK_RV wrapping_fits(CK_MECHANISM_PTR m, const kw_object *w, const kw_object *k)
{
	int oaep = m->mechanism == CKM_RSA_PKCS_OAEP;

	if (oaep ? kw_object_class(w) != KW_CLASS_PUBLIC_KEY || kw_object_key_type(w) != KW_KEY_RSA
		 : kw_object_key_type(w) != KW_KEY_AES)
		return CKR_WRAPPING_KEY_TYPE_INCONSISTENT;
	if (!(kw_object_usages(w) & KW_USAGE_WRAP))
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	if ((kw_object_class(k) != KW_CLASS_PRIVATE_KEY && kw_object_class(k) != KW_CLASS_SECRET_KEY) ||
	    kw_object_session(k) || (oaep && kw_object_class(k) != KW_CLASS_SECRET_KEY))
		return CKR_KEY_NOT_WRAPPABLE;
	if (!kw_object_extractable(k))
		return CKR_KEY_UNEXTRACTABLE; /* the HSM refuses too; this spares the request */
	return CKR_OK;
}

CK_RV p11_wrap_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
		   CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	const kw_object *w = NULL, *k = NULL;
	struct kw_mechanism kwm = {0};
	unsigned char label[1024];
	uint64_t wrapping_id, key_id;
	enum kw_key_type kt;
	enum kw_hash hash;
	size_t len;
	kw_client *c;
	kw_rv krv;
	CK_RV rv;

	pthread_mutex_lock(&p11.lock);
	if (!p11_session_get_locked(h))
		rv = CKR_SESSION_HANDLE_INVALID;
	else if (!p11.logged_in)
		rv = CKR_USER_NOT_LOGGED_IN;
	else if ((rv = p11_mechanism_of(m->mechanism, CKF_WRAP, &kt, &kwm.mech, &hash)))
		;
	else if (m->mechanism == CKM_RSA_PKCS_OAEP)
		rv = oaep_of(m, &kwm);
	else if (m->pParameter || m->ulParameterLen)
		rv = CKR_MECHANISM_PARAM_INVALID; /* the default IVs of RFC 3394 and 5649 only */
	if (!rv && !(w = p11_object_get_locked(wrapping)))
		rv = CKR_WRAPPING_KEY_HANDLE_INVALID;
	else if (!rv && !(k = p11_object_get_locked(key)))
		rv = CKR_KEY_HANDLE_INVALID;
	else if (!rv)
		rv = wrapping_fits(m, w, k);
	if (rv) {
		pthread_mutex_unlock(&p11.lock);
		return rv;
	}
	if (kwm.label_len) { /* a copy: the caller's buffer is not ours once unlocked */
		memcpy(label, kwm.label, kwm.label_len);
		kwm.label = label;
	}
	wrapping_id = kw_object_id(w);
	key_id = kw_object_id(k);
	c = p11.client;
	pthread_mutex_unlock(&p11.lock);
	/*
	 * The wrapped length depends on the key's encoding, known only on the
	 * HSM: a length query wraps there and returns the length alone.
	 */
	len = out ? *out_len : 0;
	krv = kw_wrap_key(c, wrapping_id, key_id, &kwm, out, &len);
	*out_len = len;
	if (krv == KW_ERR_DATA_LEN)
		return out ? CKR_BUFFER_TOO_SMALL : CKR_OK;
	return p11_ckr(krv, "wrapping a key");
}
