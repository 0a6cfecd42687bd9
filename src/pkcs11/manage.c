/*
 * keyward-pkcs11.so: managing objects. C_CreateObject stores certificates
 * and data objects on the HSM; C_SetAttributeValue, C_CopyObject and
 * C_DestroyObject change, copy and delete any object; C_GenerateKey makes
 * AES keys and C_WrapKey wraps a key under one.
 *
 * Keys are born on the HSM and never imported: a private, public or secret
 * key in C_CreateObject is CKR_ATTRIBUTE_VALUE_INVALID (on CKA_CLASS).
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

#include <openssl/crypto.h>
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
	    (rv = template_ckaid(t, n, &id, &id_len)))
		return rv;
	if (!has_cls)
		return CKR_TEMPLATE_INCOMPLETE;
	if (cls != CKO_CERTIFICATE && cls != CKO_DATA)
		return CKR_ATTRIBUTE_VALUE_INVALID; /* keys are generated on the HSM, never imported */
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

CK_RV p11_wrap_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
		   CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	const kw_object *w, *k;
	struct kw_mechanism kwm = {0};
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
	else if (m->pParameter || m->ulParameterLen)
		rv = CKR_MECHANISM_PARAM_INVALID; /* the default IVs of RFC 3394 and 5649 only */
	else if (!(w = p11_object_get_locked(wrapping)))
		rv = CKR_WRAPPING_KEY_HANDLE_INVALID;
	else if (kw_object_key_type(w) != KW_KEY_AES)
		rv = CKR_WRAPPING_KEY_TYPE_INCONSISTENT;
	else if (!(kw_object_usages(w) & KW_USAGE_WRAP))
		rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
	else if (!(k = p11_object_get_locked(key)))
		rv = CKR_KEY_HANDLE_INVALID;
	else if ((kw_object_class(k) != KW_CLASS_PRIVATE_KEY && kw_object_class(k) != KW_CLASS_SECRET_KEY) ||
		 kw_object_session(k))
		rv = CKR_KEY_NOT_WRAPPABLE;
	else if (!kw_object_extractable(k))
		rv = CKR_KEY_UNEXTRACTABLE; /* the HSM refuses too; this spares the request */
	if (rv) {
		pthread_mutex_unlock(&p11.lock);
		return rv;
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
