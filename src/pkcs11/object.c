/*
 * keyward-pkcs11.so: objects. HSM object ids map to CK_OBJECT_HANDLEs in
 * one table for the module (handle = index + 1); a handle keeps naming the
 * same HSM object for the module's life. Each entry points at the newest
 * kw_object seen for its id, held by a reference-counted holder (a listing
 * or one generated object), so attribute reads need no HSM request.
 *
 * C_FindObjectsInit lists the slot's owner afresh from the HSM every time,
 * so keys moved between owners appear and disappear without a restart.
 * Private and secret keys are visible only when logged in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "p11.h"

struct holder {
	unsigned refs;
	kw_object_list *list;
	kw_object *single;
};

struct entry {
	uint64_t id;
	struct holder *h;
	const kw_object *o;
	CK_SESSION_HANDLE creator; /* a session object's PKCS#11 session, else 0 */
};

static struct entry *table;
static size_t n_table, cap_table;

static void holder_unref(struct holder *h)
{
	if (!h || --h->refs)
		return;
	kw_object_list_free(h->list);
	kw_object_free(h->single);
	free(h);
}

void p11_objects_free_locked(void)
{
	for (size_t i = 0; i < n_table; i++)
		holder_unref(table[i].h);
	free(table);
	table = NULL;
	n_table = cap_table = 0;
}

const kw_object *p11_object_get_locked(CK_OBJECT_HANDLE h)
{
	if (h == 0 || h > n_table)
		return NULL;
	return table[h - 1].o;
}

const unsigned char *p11_public_key_locked(const kw_object *o, size_t *len)
{
	const unsigned char *spki = kw_object_public_key(o, len);
	uint64_t pair = kw_object_pair_id(o);

	/* a private half may come without its public key: take its pair's */
	for (size_t i = 0; !spki && pair && i < n_table; i++)
		if (table[i].id == pair)
			spki = kw_object_public_key(table[i].o, len);
	if (!spki)
		*len = 0;
	return spki;
}

void p11_object_forget_locked(CK_OBJECT_HANDLE h)
{
	if (h == 0 || h > n_table)
		return;
	/* the slot stays taken: a stale handle must never name another object */
	holder_unref(table[h - 1].h);
	table[h - 1].h = NULL;
	table[h - 1].o = NULL;
}

void p11_object_set_creator_locked(CK_OBJECT_HANDLE h, CK_SESSION_HANDLE s)
{
	if (h && h <= n_table)
		table[h - 1].creator = s;
}

void p11_session_objects_destroy_locked(CK_SESSION_HANDLE s, int private_only)
{
	for (size_t i = 0; i < n_table; i++) {
		const kw_object *o = table[i].o;
		enum kw_class cls = kw_object_class(o);
		unsigned deleted = 0;

		if (!o || !kw_object_session(o) || !table[i].creator || (s && table[i].creator != s))
			continue;
		if (private_only && cls != KW_CLASS_PRIVATE_KEY && cls != KW_CLASS_SECRET_KEY)
			continue;
		if (kw_delete_objects(p11.sclient, table[i].id, NULL, NULL, KW_CLASS_ANY, &deleted))
			kw_log_write(KW_LOG_WARN, "keyward-pkcs11: destroying session object \"%s\": %s",
				     kw_object_name(o), kw_last_error());
		p11_object_forget_locked(i + 1);
	}
}

CK_OBJECT_HANDLE p11_object_handle_of_locked(uint64_t id)
{
	for (size_t i = 0; i < n_table; i++)
		if (table[i].id == id && table[i].o)
			return i + 1;
	return 0;
}

/* The handle for o (held by h, which gains a reference); 0 on out of memory. */
static CK_OBJECT_HANDLE handle_for(const kw_object *o, struct holder *h)
{
	uint64_t id = kw_object_id(o);
	size_t i;

	for (i = 0; i < n_table && table[i].id != id; i++)
		;
	if (i == n_table) {
		if (n_table == cap_table) {
			size_t cap = cap_table ? 2 * cap_table : 64;
			struct entry *t = realloc(table, cap * sizeof *t);

			if (!t)
				return 0;
			table = t;
			cap_table = cap;
		}
		table[n_table++] = (struct entry){.id = id};
	}
	h->refs++;
	holder_unref(table[i].h);
	table[i].h = h;
	table[i].o = o;
	return i + 1;
}

CK_OBJECT_HANDLE p11_object_adopt_locked(kw_object *o)
{
	struct holder *h = calloc(1, sizeof *h);
	CK_OBJECT_HANDLE oh;

	if (!h) {
		kw_object_free(o);
		return 0;
	}
	h->single = o;
	h->refs = 1;
	oh = handle_for(o, h);
	holder_unref(h);
	return oh;
}

/* An attribute's value: p/len, pointing into the object or into scratch. */
struct value {
	const void *p;
	size_t len;
	CK_ULONG ul;
	CK_BBOOL b;
	_Alignas(CK_ULONG) unsigned char scratch[1200];
};

static CK_RV set_ulong(struct value *v, CK_ULONG x)
{
	v->ul = x;
	v->p = &v->ul;
	v->len = sizeof v->ul;
	return CKR_OK;
}

static CK_RV set_bool(struct value *v, int x)
{
	v->b = x ? CK_TRUE : CK_FALSE;
	v->p = &v->b;
	v->len = sizeof v->b;
	return CKR_OK;
}

static CK_OBJECT_CLASS ck_class(const kw_object *o)
{
	switch (kw_object_class(o)) {
	case KW_CLASS_PRIVATE_KEY:
		return CKO_PRIVATE_KEY;
	case KW_CLASS_PUBLIC_KEY:
		return CKO_PUBLIC_KEY;
	case KW_CLASS_CERTIFICATE:
		return CKO_CERTIFICATE;
	case KW_CLASS_SECRET_KEY:
		return CKO_SECRET_KEY;
	default:
		return CKO_DATA;
	}
}

static CK_KEY_TYPE ck_key_type(const kw_object *o)
{
	switch (kw_object_key_type(o)) {
	case KW_KEY_RSA:
		return CKK_RSA;
	case KW_KEY_EC:
		return CKK_EC;
	case KW_KEY_ED25519:
		return CKK_EC_EDWARDS;
	case KW_KEY_AES:
		return CKK_AES;
	case KW_KEY_GENERIC:
		return CKK_GENERIC_SECRET;
	default:
		return CK_UNAVAILABLE_INFORMATION;
	}
}

/* DER of the named curve's OID (CKA_EC_PARAMS), or NULL. */
static const unsigned char *ec_params(const char *curve, size_t *len)
{
	static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	static const unsigned char p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
	static const unsigned char p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
	static const unsigned char ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};

	if (!curve)
		return NULL;
	if (!strcmp(curve, "P-256"))
		return *len = sizeof p256, p256;
	if (!strcmp(curve, "P-384"))
		return *len = sizeof p384, p384;
	if (!strcmp(curve, "P-521"))
		return *len = sizeof p521, p521;
	if (!strcmp(curve, "Ed25519"))
		return *len = sizeof ed25519, ed25519;
	return NULL;
}

/* The public key's BIT STRING contents, wrapped in a DER OCTET STRING. */
static CK_RV ec_point(const unsigned char *spki, size_t spki_len, struct value *v)
{
	const unsigned char *p = spki, *pk;
	X509_PUBKEY *xp = d2i_X509_PUBKEY(NULL, &p, (long)spki_len);
	int pk_len;
	size_t n = 0;

	if (!xp || !X509_PUBKEY_get0_param(NULL, &pk, &pk_len, NULL, xp) || pk_len < 0 ||
	    (size_t)pk_len + 4 > sizeof v->scratch) {
		X509_PUBKEY_free(xp);
		return CKR_GENERAL_ERROR;
	}
	v->scratch[n++] = 0x04;
	if (pk_len < 128) {
		v->scratch[n++] = (unsigned char)pk_len;
	} else {
		v->scratch[n++] = 0x81;
		v->scratch[n++] = (unsigned char)pk_len;
	}
	memcpy(v->scratch + n, pk, (size_t)pk_len);
	v->p = v->scratch;
	v->len = n + (size_t)pk_len;
	X509_PUBKEY_free(xp);
	return CKR_OK;
}

static CK_RV rsa_param(const unsigned char *spki, size_t spki_len, const char *name, struct value *v)
{
	const unsigned char *p = spki;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)spki_len);
	BIGNUM *bn = NULL;
	CK_RV rv = CKR_GENERAL_ERROR;
	int n;

	if (k && EVP_PKEY_get_bn_param(k, name, &bn) && (n = BN_num_bytes(bn)) <= (int)sizeof v->scratch) {
		BN_bn2bin(bn, v->scratch);
		v->p = v->scratch;
		v->len = (size_t)n;
		rv = CKR_OK;
	}
	BN_free(bn);
	EVP_PKEY_free(k);
	return rv;
}

/* A certificate's subject, issuer or serial number (DER) into v. */
static CK_RV cert_field(const kw_object *o, CK_ATTRIBUTE_TYPE t, struct value *v)
{
	size_t len;
	const unsigned char *der = kw_object_value(o, &len), *p = der;
	X509 *x = der ? d2i_X509(NULL, &p, (long)len) : NULL;
	unsigned char *out = v->scratch;
	int n = -1;

	if (!x)
		return CKR_GENERAL_ERROR;
	if (t == CKA_SUBJECT && i2d_X509_NAME(X509_get_subject_name(x), NULL) <= (int)sizeof v->scratch)
		n = i2d_X509_NAME(X509_get_subject_name(x), &out);
	else if (t == CKA_ISSUER && i2d_X509_NAME(X509_get_issuer_name(x), NULL) <= (int)sizeof v->scratch)
		n = i2d_X509_NAME(X509_get_issuer_name(x), &out);
	else if (t == CKA_SERIAL_NUMBER && i2d_ASN1_INTEGER(X509_get0_serialNumber(x), NULL) <= (int)sizeof v->scratch)
		n = i2d_ASN1_INTEGER((ASN1_INTEGER *)X509_get0_serialNumber(x), &out);
	X509_free(x);
	if (n < 0)
		return CKR_GENERAL_ERROR;
	v->p = v->scratch;
	v->len = (size_t)n;
	return CKR_OK;
}

/*
 * The value of attribute t of o: CKR_OK, CKR_ATTRIBUTE_SENSITIVE or
 * CKR_ATTRIBUTE_TYPE_INVALID.
 */
static CK_RV attr_value(const kw_object *o, CK_ATTRIBUTE_TYPE t, struct value *v)
{
	CK_OBJECT_CLASS cls = ck_class(o);
	int is_key = cls == CKO_PRIVATE_KEY || cls == CKO_PUBLIC_KEY || cls == CKO_SECRET_KEY;
	int secret_half = cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
	unsigned usages = kw_object_usages(o);
	size_t spki_len = 0;
	const unsigned char *spki = is_key ? p11_public_key_locked(o, &spki_len) : NULL;
	enum kw_key_type kt = kw_object_key_type(o);

	v->p = NULL;
	v->len = 0;
	switch (t) {
	case CKA_CLASS:
		return set_ulong(v, cls);
	case CKA_TOKEN:
		return set_bool(v, !kw_object_session(o));
	case CKA_PRIVATE:
		return set_bool(v, secret_half);
	case CKA_MODIFIABLE:
		return set_bool(v, kw_object_modifiable(o));
	case CKA_COPYABLE:
		return set_bool(v, is_key);
	case CKA_DESTROYABLE:
		return set_bool(v, 1);
	case CKA_LABEL:
		v->p = kw_object_name(o);
		v->len = strlen(v->p);
		return CKR_OK;
	case CKA_ID:
		if (cls == CKO_DATA)
			break;
		v->p = kw_object_ckaid(o, &v->len);
		return CKR_OK;
	default:
		break;
	}
	if (cls == CKO_DATA) {
		switch (t) {
		case CKA_VALUE:
			v->p = kw_object_value(o, &v->len);
			return CKR_OK;
		case CKA_APPLICATION:
			v->p = kw_object_application(o);
			v->len = strlen(v->p);
			return CKR_OK;
		case CKA_OBJECT_ID:
			return CKR_OK;
		default:
			return CKR_ATTRIBUTE_TYPE_INVALID;
		}
	}
	if (cls == CKO_CERTIFICATE) {
		switch (t) {
		case CKA_CERTIFICATE_TYPE:
			return set_ulong(v, CKC_X_509);
		case CKA_CERTIFICATE_CATEGORY:
			return set_ulong(v, 0);
		case CKA_TRUSTED:
			return set_bool(v, 0);
		case CKA_VALUE:
			v->p = kw_object_value(o, &v->len);
			return CKR_OK;
		case CKA_SUBJECT:
		case CKA_ISSUER:
		case CKA_SERIAL_NUMBER:
			return cert_field(o, t, v);
		case CKA_START_DATE:
		case CKA_END_DATE:
			return CKR_OK;
		default:
			return CKR_ATTRIBUTE_TYPE_INVALID;
		}
	}
	/* keys */
	switch (t) {
	case CKA_KEY_TYPE:
		return set_ulong(v, ck_key_type(o));
	case CKA_LOCAL:
		/*
		 * PKCS#11 3.0 4.7: generated on the token (or a copy of such a key).
		 * A generated key is always sensitive; an unwrapped one is not, and a
		 * derived one may be but was not generated. A public key stored by
		 * C_CreateObject has no pair half; the public half of an unwrapped
		 * private key says true, as the HSM keeps no history for it.
		 */
		if (cls == CKO_PUBLIC_KEY)
			return set_bool(v, kw_object_pair_id(o) != 0);
		return set_bool(v, kw_object_always_sensitive(o) && !kw_object_derived(o));
	case CKA_DERIVE:
		return set_bool(v, cls == CKO_PRIVATE_KEY && (usages & KW_USAGE_DERIVE));
	case CKA_START_DATE:
	case CKA_END_DATE:
	case CKA_SUBJECT:
		return CKR_OK;
	case CKA_KEY_GEN_MECHANISM:
		return set_ulong(v, kt == KW_KEY_RSA   ? CKM_RSA_PKCS_KEY_PAIR_GEN
				    : kt == KW_KEY_EC  ? CKM_EC_KEY_PAIR_GEN
				    : kt == KW_KEY_AES ? CKM_AES_KEY_GEN
				    : kt == KW_KEY_GENERIC ? CKM_GENERIC_SECRET_KEY_GEN
						       : CKM_EC_EDWARDS_KEY_PAIR_GEN);
	case CKA_ALLOWED_MECHANISMS: {
		CK_MECHANISM_TYPE *list = (CK_MECHANISM_TYPE *)(void *)v->scratch;

		v->len = p11_allowed_mechanisms(o, list, sizeof v->scratch / sizeof *list) * sizeof *list;
		v->p = list;
		return CKR_OK;
	}
	case CKA_PUBLIC_KEY_INFO:
		if (cls == CKO_SECRET_KEY)
			break;
		v->p = spki;
		v->len = spki_len;
		return CKR_OK;
	case CKA_MODULUS:
	case CKA_PUBLIC_EXPONENT:
		if (kt != KW_KEY_RSA || !spki)
			break;
		return rsa_param(spki, spki_len, t == CKA_MODULUS ? OSSL_PKEY_PARAM_RSA_N : OSSL_PKEY_PARAM_RSA_E, v);
	case CKA_MODULUS_BITS:
		if (kt != KW_KEY_RSA)
			break;
		return set_ulong(v, kw_object_bits(o));
	case CKA_EC_PARAMS:
		if (kt != KW_KEY_EC && kt != KW_KEY_ED25519)
			break;
		if (!(v->p = ec_params(kw_object_curve(o), &v->len)))
			return CKR_GENERAL_ERROR;
		return CKR_OK;
	case CKA_EC_POINT:
		if ((kt != KW_KEY_EC && kt != KW_KEY_ED25519) || cls != CKO_PUBLIC_KEY || !spki)
			break;
		return ec_point(spki, spki_len, v);
	default:
		break;
	}
	if (secret_half) {
		switch (t) {
		case CKA_SENSITIVE:
			return set_bool(v, kw_object_sensitive(o));
		case CKA_EXTRACTABLE:
			return set_bool(v, kw_object_extractable(o));
		case CKA_NEVER_EXTRACTABLE:
			return set_bool(v, kw_object_never_extractable(o));
		case CKA_ALWAYS_SENSITIVE:
			return set_bool(v, kw_object_always_sensitive(o));
		case CKA_ALWAYS_AUTHENTICATE:
		case CKA_WRAP_WITH_TRUSTED:
		case CKA_SIGN_RECOVER:
			return set_bool(v, 0);
		case CKA_SIGN:
			return set_bool(v, (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) && (usages & KW_USAGE_SIGN));
		case CKA_DECRYPT:
			return set_bool(v, (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) && (usages & KW_USAGE_DECRYPT));
		case CKA_UNWRAP:
			return set_bool(v, (usages & KW_USAGE_WRAP) != 0);
		case CKA_VALUE:
		case CKA_PRIVATE_EXPONENT:
		case CKA_PRIME_1:
		case CKA_PRIME_2:
		case CKA_EXPONENT_1:
		case CKA_EXPONENT_2:
		case CKA_COEFFICIENT:
			return CKR_ATTRIBUTE_SENSITIVE;
		default:
			break;
		}
		if (cls == CKO_SECRET_KEY) {
			switch (t) {
			case CKA_VALUE_LEN:
				return set_ulong(v, kw_object_bits(o) / 8);
			case CKA_WRAP:
				return set_bool(v, (usages & KW_USAGE_WRAP) != 0);
			case CKA_ENCRYPT: /* a secret key's usage DECRYPT is encrypt and decrypt */
				return set_bool(v, (usages & KW_USAGE_DECRYPT) != 0);
			case CKA_VERIFY: /* a generic secret's usage SIGN is sign and verify (HMAC) */
				return set_bool(v, (usages & KW_USAGE_SIGN) != 0);
			default:
				break;
			}
		}
		return CKR_ATTRIBUTE_TYPE_INVALID;
	}
	switch (t) { /* public keys */
	case CKA_VERIFY:
		return set_bool(v, (usages & KW_USAGE_SIGN) != 0);
	case CKA_ENCRYPT:
		return set_bool(v, (usages & KW_USAGE_DECRYPT) != 0);
	case CKA_WRAP: /* an RSA public key wraps with RSA-OAEP in the HSM */
		return set_bool(v, (usages & KW_USAGE_WRAP) != 0);
	case CKA_VERIFY_RECOVER:
	case CKA_TRUSTED:
		return set_bool(v, 0);
	default:
		return CKR_ATTRIBUTE_TYPE_INVALID;
	}
}

CK_RV p11_get_attributes_locked(const kw_object *o, CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct value v;
	CK_RV result = CKR_OK, rv;

	for (CK_ULONG i = 0; i < count; i++) {
		CK_ATTRIBUTE_PTR a = &templ[i];

		rv = attr_value(o, a->type, &v);
		if (rv == CKR_OK && a->pValue && a->ulValueLen < v.len)
			rv = CKR_BUFFER_TOO_SMALL;
		if (rv != CKR_OK) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			if (rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_ATTRIBUTE_TYPE_INVALID &&
			    rv != CKR_BUFFER_TOO_SMALL)
				return rv;
			result = rv;
			continue;
		}
		if (a->pValue && v.len)
			memcpy(a->pValue, v.p, v.len);
		a->ulValueLen = v.len;
	}
	return result;
}

static int matches(const kw_object *o, CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct value v;

	for (CK_ULONG i = 0; i < count; i++) {
		if (attr_value(o, templ[i].type, &v) != CKR_OK || v.len != templ[i].ulValueLen ||
		    (v.len && memcmp(v.p, templ[i].pValue, v.len)))
			return 0;
	}
	return 1;
}

void p11_session_find_cleanup(struct p11_session *s)
{
	free(s->found);
	s->found = NULL;
	s->n_found = s->pos = 0;
	s->finding = 0;
}

CK_RV p11_find_init_locked(struct p11_session *s, CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	kw_object_list *l = NULL;
	struct holder *h;
	size_t n;
	kw_rv krv;

	for (CK_ULONG i = 0; i < count; i++)
		if (!templ[i].pValue && templ[i].ulValueLen)
			return CKR_ARGUMENTS_BAD;
	/* once there are session objects, the connection that holds them lists them too */
	krv = kw_list_objects(p11.sclient_used ? p11.sclient : p11.client, p11.slots[s->slot].owner, NULL, &l);
	if (krv == KW_ERR_AUTH && !p11.logged_in) {
		/* the credential needs the PIN of a login: until then nothing is visible */
		s->pos = 0;
		s->finding = 1;
		return CKR_OK;
	}
	if (krv)
		return p11_ckr(krv, "listing objects");
	if (!(h = calloc(1, sizeof *h))) {
		kw_object_list_free(l);
		return CKR_HOST_MEMORY;
	}
	h->list = l;
	h->refs = 1;
	n = kw_object_list_count(l);
	if (n && !(s->found = calloc(n, sizeof *s->found))) {
		holder_unref(h);
		return CKR_HOST_MEMORY;
	}
	for (size_t i = 0; i < n; i++) {
		const kw_object *o = kw_object_list_get(l, i);
		CK_OBJECT_CLASS cls = ck_class(o);
		CK_OBJECT_HANDLE oh;

		if (!p11.logged_in && (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY))
			continue;
		if (!(oh = handle_for(o, h))) {
			holder_unref(h);
			p11_session_find_cleanup(s);
			return CKR_HOST_MEMORY;
		}
		if (matches(o, templ, count))
			s->found[s->n_found++] = oh;
	}
	holder_unref(h);
	s->pos = 0;
	s->finding = 1;
	return CKR_OK;
}

CK_ATTRIBUTE_PTR p11_template_find(CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_ATTRIBUTE_TYPE t)
{
	for (CK_ULONG i = 0; i < count; i++)
		if (templ[i].type == t)
			return &templ[i];
	return NULL;
}

CK_RV p11_template_bool(CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_ATTRIBUTE_TYPE t, int *out)
{
	CK_ATTRIBUTE_PTR a = p11_template_find(templ, count, t);

	if (!a)
		return CKR_OK;
	if (!a->pValue || a->ulValueLen != sizeof(CK_BBOOL))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	*out = *(CK_BBOOL *)a->pValue != CK_FALSE;
	return CKR_OK;
}

CK_RV p11_template_untrusted(CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	int trusted = 0, wrap_with_trusted = 0;
	CK_RV rv;

	if ((rv = p11_template_bool(t, n, CKA_TRUSTED, &trusted)) ||
	    (rv = p11_template_bool(t, n, CKA_WRAP_WITH_TRUSTED, &wrap_with_trusted)))
		return rv;
	if (trusted)
		return CKR_ATTRIBUTE_READ_ONLY;
	return wrap_with_trusted ? CKR_ATTRIBUTE_VALUE_INVALID : CKR_OK;
}

CK_RV p11_label_of_template(CK_ATTRIBUTE_PTR t, CK_ULONG n, char *out, size_t size)
{
	CK_ATTRIBUTE_PTR a = p11_template_find(t, n, CKA_LABEL);
	unsigned char r[8];

	if (a && a->ulValueLen) {
		if (!a->pValue || a->ulValueLen >= size || a->ulValueLen > KW_NAME_MAX ||
		    memchr(a->pValue, '\0', a->ulValueLen))
			return CKR_ATTRIBUTE_VALUE_INVALID;
		memcpy(out, a->pValue, a->ulValueLen);
		out[a->ulValueLen] = '\0';
		return CKR_OK;
	}
	if (RAND_bytes(r, sizeof r) != 1)
		return CKR_FUNCTION_FAILED;
	snprintf(out, size, "key-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
	return CKR_OK;
}
