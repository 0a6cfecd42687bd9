/*
 * The conformance runner's checks (conform.h): plain PKCS#11 calls that
 * any module can take, so the same code runs on keyward-pkcs11.so and on
 * SoftHSM2. Keys are token objects (keyward keeps no session secret
 * keys), labelled "cr-...", and destroyed by cr_cleanup.
 *
 * A check passes only on the behaviour PKCS#11 names (return codes,
 * attributes, round trips that give the same key back). The extraction
 * attacks pass when the attack fails at any step; one that gets a key's
 * value out fails, whatever the module's reasons.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "conform.h"

static CK_BBOOL T = CK_TRUE, F = CK_FALSE;
static CK_OBJECT_CLASS secret_class = CKO_SECRET_KEY, pub_class = CKO_PUBLIC_KEY, priv_class = CKO_PRIVATE_KEY;
static CK_KEY_TYPE aes_type = CKK_AES, generic_type = CKK_GENERIC_SECRET;
static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static CK_BYTE f4[] = {0x01, 0x00, 0x01};
/* RFC 8017's default OAEP (SHA-1, MGF1 with SHA-1): the one SoftHSM2 2.6 takes, and pkcs11-tool sends */
static CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};

#define ATTR(type, var)                                                                                                \
	{                                                                                                              \
		type, &(var), sizeof(var)                                                                              \
	}
#define LABEL(s)                                                                                                       \
	{                                                                                                              \
		CKA_LABEL, (void *)(s), sizeof(s) - 1                                                                  \
	}

/*
 * A fresh label for a key: keyward keeps one key of a class per name and
 * key space, and a name the runner used before may still be there.
 */
static CK_ATTRIBUTE fresh_label(char buf[40])
{
	static unsigned seq;

	snprintf(buf, 40, "cr-%ld-%u", (long)getpid(), ++seq);
	return (CK_ATTRIBUTE){CKA_LABEL, buf, strlen(buf)};
}

static const char *rv_name(CK_RV rv)
{
	static const struct {
		CK_RV rv;
		const char *name;
	} names[] = {{CKR_OK, "CKR_OK"},
		     {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
		     {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
		     {CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY"},
		     {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"},
		     {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"},
		     {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
		     {CKR_ACTION_PROHIBITED, "CKR_ACTION_PROHIBITED"},
		     {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID"},
		     {CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE"},
		     {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
		     {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
		     {CKR_KEY_NOT_WRAPPABLE, "CKR_KEY_NOT_WRAPPABLE"},
		     {CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE"},
		     {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
		     {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
		     {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
		     {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
		     {CKR_SESSION_PARALLEL_NOT_SUPPORTED, "CKR_SESSION_PARALLEL_NOT_SUPPORTED"},
		     {CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID"},
		     {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
		     {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
		     {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
		     {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
		     {CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT"},
		     {CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT"}};
	static char other[32];

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].rv == rv)
			return names[i].name;
	snprintf(other, sizeof other, "CKR 0x%lx", (unsigned long)rv);
	return other;
}

static enum cr_outcome say(struct cr_ctx *c, enum cr_outcome o, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static enum cr_outcome say(struct cr_ctx *c, enum cr_outcome o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, sizeof c->why, fmt, ap);
	va_end(ap);
	return o;
}

/* A call that must succeed: its failure fails the check, naming the call and the code. */
#define MUST(call)                                                                                                     \
	do {                                                                                                           \
		CK_RV must_rv_ = (call);                                                                               \
		if (must_rv_ != CKR_OK)                                                                                \
			return say(c, CR_FAIL, "%s: %s", #call, rv_name(must_rv_));                                    \
	} while (0)

static void made(struct cr_ctx *c, CK_OBJECT_HANDLE h)
{
	if (h && c->n_made < sizeof c->made / sizeof c->made[0])
		c->made[c->n_made++] = h;
}

void cr_cleanup(struct cr_ctx *c)
{
	while (c->s && c->n_made)
		c->f->C_DestroyObject(c->s, c->made[--c->n_made]);
}

static int get_bool(struct cr_ctx *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t)
{
	CK_BBOOL b = CK_FALSE;
	CK_ATTRIBUTE a = {t, &b, sizeof b};

	return c->f->C_GetAttributeValue(c->s, h, &a, 1) == CKR_OK ? b : -1;
}

/* An AES key of len bytes, a token object: extractable or not, with the usages given (wrap: wrap and unwrap). */
static CK_RV gen_aes(struct cr_ctx *c, CK_ULONG len, CK_BBOOL extractable, CK_BBOOL wrap, CK_BBOOL crypt,
		     CK_OBJECT_HANDLE *h)
{
	char label[40];
	CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, secret_class),
			    ATTR(CKA_KEY_TYPE, aes_type),
			    ATTR(CKA_VALUE_LEN, len),
			    ATTR(CKA_TOKEN, T),
			    ATTR(CKA_PRIVATE, T),
			    ATTR(CKA_SENSITIVE, T),
			    ATTR(CKA_EXTRACTABLE, extractable),
			    ATTR(CKA_WRAP, wrap),
			    ATTR(CKA_UNWRAP, wrap),
			    ATTR(CKA_ENCRYPT, crypt),
			    ATTR(CKA_DECRYPT, crypt),
			    fresh_label(label)};
	CK_RV rv = c->f->C_GenerateKey(c->s, &m, t, sizeof t / sizeof t[0], h);

	if (!rv)
		made(c, *h);
	return rv;
}

/* The AES-ECB encryption of the zero block under key h: a fingerprint of the key, to compare keys by. */
static CK_RV key_print(struct cr_ctx *c, CK_OBJECT_HANDLE h, unsigned char out[16])
{
	unsigned char zero[16] = {0};
	CK_ULONG len = 16;
	CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};
	CK_RV rv = c->f->C_EncryptInit(c->s, &m, h);

	return rv ? rv : c->f->C_Encrypt(c->s, zero, 16, out, &len);
}

/* The same fingerprint of AES key bytes, made here with OpenSSL. */
static int bytes_print(const unsigned char *key, size_t len, unsigned char out[16])
{
	unsigned char zero[16] = {0};
	const EVP_CIPHER *ciph = len == 16 ? EVP_aes_128_ecb() : len == 24 ? EVP_aes_192_ecb() : EVP_aes_256_ecb();
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	int n = 0, ok = x && (len == 16 || len == 24 || len == 32) &&
			EVP_EncryptInit_ex(x, ciph, NULL, key, NULL) == 1 && EVP_CIPHER_CTX_set_padding(x, 0) == 1 &&
			EVP_EncryptUpdate(x, out, &n, zero, 16) == 1 && n == 16;

	EVP_CIPHER_CTX_free(x);
	return ok;
}

/* Whether keys a and b are the same AES key (both may encrypt). */
static enum cr_outcome same_key(struct cr_ctx *c, CK_OBJECT_HANDLE a, CK_OBJECT_HANDLE b)
{
	unsigned char pa[16], pb[16];

	MUST(key_print(c, a, pa));
	MUST(key_print(c, b, pb));
	return memcmp(pa, pb, 16) ? say(c, CR_FAIL, "the key that came back is another key") : CR_PASS;
}

/* Wraps key under wrapping with m into a fresh buffer *out (the length asked first, as applications do). */
static CK_RV wrap(struct cr_ctx *c, CK_MECHANISM *m, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
		  unsigned char *out, CK_ULONG *len)
{
	CK_ULONG need = 0;
	CK_RV rv = c->f->C_WrapKey(c->s, m, wrapping, key, NULL, &need);

	if (rv)
		return rv;
	if (need > *len)
		return CKR_GENERAL_ERROR;
	return c->f->C_WrapKey(c->s, m, wrapping, key, out, len);
}

/* Unwraps an AES key that encrypts and decrypts (sensitive as asked, extractable as asked). */
static CK_RV unwrap_aes(struct cr_ctx *c, CK_MECHANISM *m, CK_OBJECT_HANDLE unwrapping, unsigned char *in, CK_ULONG len,
			CK_BBOOL sensitive, CK_BBOOL extractable, CK_BBOOL wrap_too, CK_OBJECT_HANDLE *h)
{
	char label[40];
	CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, secret_class),
			    ATTR(CKA_KEY_TYPE, aes_type),
			    ATTR(CKA_TOKEN, T),
			    ATTR(CKA_PRIVATE, T),
			    ATTR(CKA_SENSITIVE, sensitive),
			    ATTR(CKA_EXTRACTABLE, extractable),
			    ATTR(CKA_ENCRYPT, T),
			    ATTR(CKA_DECRYPT, T),
			    ATTR(CKA_WRAP, wrap_too),
			    fresh_label(label)};
	CK_RV rv = c->f->C_UnwrapKey(c->s, m, unwrapping, in, len, t, sizeof t / sizeof t[0], h);

	if (!rv)
		made(c, *h);
	return rv;
}

/* ---- session ---- */

static enum cr_outcome session_ro_rw(struct cr_ctx *c)
{
	CK_SESSION_HANDLE ro, rw;
	CK_SESSION_INFO ri, wi;

	MUST(c->f->C_OpenSession(c->slot, CKF_SERIAL_SESSION, NULL, NULL, &ro));
	MUST(c->f->C_OpenSession(c->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw));
	MUST(c->f->C_GetSessionInfo(ro, &ri));
	MUST(c->f->C_GetSessionInfo(rw, &wi));
	MUST(c->f->C_CloseSession(ro));
	MUST(c->f->C_CloseSession(rw));
	if (ri.state != CKS_RO_PUBLIC_SESSION || wi.state != CKS_RW_PUBLIC_SESSION || (ri.flags & CKF_RW_SESSION) ||
	    !(wi.flags & CKF_RW_SESSION) || ri.slotID != c->slot)
		return say(c, CR_FAIL, "session states %lu/%lu, flags 0x%lx/0x%lx", ri.state, wi.state, ri.flags,
			   wi.flags);
	return CR_PASS;
}

static enum cr_outcome session_closed(struct cr_ctx *c)
{
	CK_SESSION_HANDLE s;
	CK_SESSION_INFO i;
	CK_RV rv;

	MUST(c->f->C_OpenSession(c->slot, CKF_SERIAL_SESSION, NULL, NULL, &s));
	MUST(c->f->C_CloseSession(s));
	if ((rv = c->f->C_GetSessionInfo(s, &i)) != CKR_SESSION_HANDLE_INVALID)
		return say(c, CR_FAIL, "a closed session's info: %s", rv_name(rv));
	return CR_PASS;
}

static enum cr_outcome session_close_all(struct cr_ctx *c)
{
	CK_SESSION_HANDLE a, b;
	CK_SESSION_INFO i;
	CK_RV ra, rb;

	MUST(c->f->C_OpenSession(c->slot, CKF_SERIAL_SESSION, NULL, NULL, &a));
	MUST(c->f->C_OpenSession(c->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &b));
	MUST(c->f->C_CloseAllSessions(c->slot));
	ra = c->f->C_GetSessionInfo(a, &i);
	rb = c->f->C_GetSessionInfo(b, &i);
	if (ra != CKR_SESSION_HANDLE_INVALID || rb != CKR_SESSION_HANDLE_INVALID)
		return say(c, CR_FAIL, "after C_CloseAllSessions: %s, %s", rv_name(ra), rv_name(rb));
	return CR_PASS;
}

static enum cr_outcome session_not_serial(struct cr_ctx *c)
{
	CK_SESSION_HANDLE s;
	CK_RV rv = c->f->C_OpenSession(c->slot, 0, NULL, NULL, &s);

	if (rv == CKR_OK)
		c->f->C_CloseSession(s);
	return rv == CKR_SESSION_PARALLEL_NOT_SUPPORTED
		       ? CR_PASS
		       : say(c, CR_FAIL, "C_OpenSession without CKF_SERIAL_SESSION: %s", rv_name(rv));
}

/* ---- login (the first check opens the session every later check uses) ---- */

static enum cr_outcome login_wrong_pin(struct cr_ctx *c)
{
	static const char wrong[] = "not-the-pin-0";
	CK_RV rv;

	MUST(c->f->C_OpenSession(c->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &c->s));
	rv = c->f->C_Login(c->s, CKU_USER, (CK_UTF8CHAR_PTR)wrong, sizeof wrong - 1);
	return rv == CKR_PIN_INCORRECT ? CR_PASS : say(c, CR_FAIL, "a wrong PIN: %s", rv_name(rv));
}

static enum cr_outcome login_user(struct cr_ctx *c)
{
	CK_SESSION_INFO i;

	MUST(c->f->C_Login(c->s, CKU_USER, (CK_UTF8CHAR_PTR)c->pin, strlen(c->pin)));
	MUST(c->f->C_GetSessionInfo(c->s, &i));
	return i.state == CKS_RW_USER_FUNCTIONS ? CR_PASS : say(c, CR_FAIL, "state after login: %lu", i.state);
}

static enum cr_outcome login_twice(struct cr_ctx *c)
{
	CK_RV rv = c->f->C_Login(c->s, CKU_USER, (CK_UTF8CHAR_PTR)c->pin, strlen(c->pin));

	return rv == CKR_USER_ALREADY_LOGGED_IN ? CR_PASS : say(c, CR_FAIL, "a second login: %s", rv_name(rv));
}

static enum cr_outcome logout_login(struct cr_ctx *c)
{
	CK_RV rv;

	MUST(c->f->C_Logout(c->s));
	rv = c->f->C_Logout(c->s);
	MUST(c->f->C_Login(c->s, CKU_USER, (CK_UTF8CHAR_PTR)c->pin, strlen(c->pin)));
	return rv == CKR_USER_NOT_LOGGED_IN ? CR_PASS : say(c, CR_FAIL, "a second logout: %s", rv_name(rv));
}

/* ---- object ---- */

static CK_RV make_data(struct cr_ctx *c, const char *label, CK_OBJECT_HANDLE *h)
{
	static CK_OBJECT_CLASS data = CKO_DATA;
	static char value[] = "conformance";
	CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, data),
			    ATTR(CKA_TOKEN, T),
			    ATTR(CKA_PRIVATE, F),
			    {CKA_LABEL, (void *)label, strlen(label)},
			    {CKA_VALUE, value, sizeof value - 1}};

	return c->f->C_CreateObject(c->s, t, sizeof t / sizeof t[0], h);
}

static CK_ULONG find_count(struct cr_ctx *c, CK_ATTRIBUTE *t, CK_ULONG n)
{
	CK_OBJECT_HANDLE found[8];
	CK_ULONG count = 0;

	if (c->f->C_FindObjectsInit(c->s, t, n) != CKR_OK)
		return (CK_ULONG)-1;
	if (c->f->C_FindObjects(c->s, found, 8, &count) != CKR_OK)
		count = (CK_ULONG)-1;
	c->f->C_FindObjectsFinal(c->s);
	return count;
}

static enum cr_outcome data_object(struct cr_ctx *c)
{
	static CK_OBJECT_CLASS data = CKO_DATA;
	CK_ATTRIBUTE q[] = {ATTR(CKA_CLASS, data), LABEL("cr-data")};
	char value[32] = "";
	CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof value};
	CK_OBJECT_HANDLE h;
	CK_ULONG before, after;

	MUST(make_data(c, "cr-data", &h));
	before = find_count(c, q, 2);
	MUST(c->f->C_GetAttributeValue(c->s, h, &v, 1));
	MUST(c->f->C_DestroyObject(c->s, h));
	after = find_count(c, q, 2);
	if (before != 1 || after != 0 || v.ulValueLen != 11 || memcmp(value, "conformance", 11))
		return say(c, CR_FAIL, "found %lu before and %lu after C_DestroyObject, value %lu bytes", before, after,
			   v.ulValueLen);
	return CR_PASS;
}

static enum cr_outcome attribute_invalid(struct cr_ctx *c)
{
	CK_BYTE buf[64];
	CK_ATTRIBUTE a = {CKA_MODULUS, buf, sizeof buf};
	CK_OBJECT_HANDLE h;
	CK_RV rv;

	MUST(make_data(c, "cr-data2", &h));
	made(c, h);
	rv = c->f->C_GetAttributeValue(c->s, h, &a, 1);
	if (rv != CKR_ATTRIBUTE_TYPE_INVALID || a.ulValueLen != CK_UNAVAILABLE_INFORMATION)
		return say(c, CR_FAIL, "CKA_MODULUS of a data object: %s, length %lu", rv_name(rv), a.ulValueLen);
	return CR_PASS;
}

static enum cr_outcome set_label(struct cr_ctx *c)
{
	static CK_OBJECT_CLASS data = CKO_DATA;
	CK_ATTRIBUTE q[] = {ATTR(CKA_CLASS, data), LABEL("cr-renamed")};
	CK_ATTRIBUTE l = LABEL("cr-renamed");
	CK_OBJECT_HANDLE h;
	CK_ULONG n;

	MUST(make_data(c, "cr-data3", &h));
	made(c, h);
	MUST(c->f->C_SetAttributeValue(c->s, h, &l, 1));
	n = find_count(c, q, 2);
	return n == 1 ? CR_PASS : say(c, CR_FAIL, "found %lu objects by the new label", n);
}

/* A public key made elsewhere, stored with C_CreateObject (the RSA pair's, by value): not CKA_LOCAL. */
static enum cr_outcome public_key_object(struct cr_ctx *c)
{
	CK_BYTE n[600], e[16];
	CK_ATTRIBUTE get[] = {{CKA_MODULUS, n, sizeof n}, {CKA_PUBLIC_EXPONENT, e, sizeof e}};
	CK_KEY_TYPE rsa = CKK_RSA;
	char label[40];
	CK_OBJECT_HANDLE h;
	int local;

	MUST(c->f->C_GetAttributeValue(c->s, c->rsa_pub, get, 2));
	{
		CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, pub_class),
				    ATTR(CKA_KEY_TYPE, rsa),
				    ATTR(CKA_TOKEN, T),
				    ATTR(CKA_VERIFY, T),
				    get[0],
				    get[1],
				    fresh_label(label)};

		MUST(c->f->C_CreateObject(c->s, t, sizeof t / sizeof t[0], &h));
	}
	made(c, h);
	local = get_bool(c, h, CKA_LOCAL);
	return local == 0 ? CR_PASS : say(c, CR_FAIL, "a public key from C_CreateObject: CKA_LOCAL %d (want 0)", local);
}

/* ---- keypair ---- */

/* Whether h says it was made on the token (CKA_LOCAL), always sensitive and never extractable. */
static enum cr_outcome generated_flags(struct cr_ctx *c, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub)
{
	int local = get_bool(c, priv, CKA_LOCAL), as = get_bool(c, priv, CKA_ALWAYS_SENSITIVE),
	    ne = get_bool(c, priv, CKA_NEVER_EXTRACTABLE), plocal = get_bool(c, pub, CKA_LOCAL);

	if (local != 1 || as != 1 || ne != 1 || plocal != 1)
		return say(c, CR_FAIL,
			   "a generated pair: CKA_LOCAL %d (public %d), ALWAYS_SENSITIVE %d, NEVER_EXTRACTABLE %d",
			   local, plocal, as, ne);
	return CR_PASS;
}

/* C_GenerateKeyPair, the halves recorded for cr_cleanup. */
static CK_RV gen_pair(struct cr_ctx *c, CK_MECHANISM *m, CK_ATTRIBUTE *pt, CK_ULONG pn, CK_ATTRIBUTE *vt, CK_ULONG vn,
		      CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_RV rv = c->f->C_GenerateKeyPair(c->s, m, pt, pn, vt, vn, pub, priv);

	if (!rv) {
		made(c, *priv);
		made(c, *pub);
	}
	return rv;
}

/* An RSA pair of bits with the usages named (a private half that decrypts, one that unwraps, or both). */
static CK_RV gen_rsa(struct cr_ctx *c, CK_ULONG bits, CK_BBOOL sign, CK_BBOOL decrypt, CK_BBOOL unwrap,
		     CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	char label[40];
	CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE l = fresh_label(label);
	CK_ATTRIBUTE pt[] = {ATTR(CKA_CLASS, pub_class),   ATTR(CKA_TOKEN, T),
			     ATTR(CKA_MODULUS_BITS, bits), {CKA_PUBLIC_EXPONENT, f4, 3},
			     ATTR(CKA_VERIFY, sign),	   ATTR(CKA_ENCRYPT, decrypt),
			     ATTR(CKA_WRAP, unwrap),	   l};
	CK_ATTRIBUTE vt[] = {ATTR(CKA_CLASS, priv_class), ATTR(CKA_TOKEN, T),	    ATTR(CKA_PRIVATE, T),
			     ATTR(CKA_SENSITIVE, T),	  ATTR(CKA_EXTRACTABLE, F), ATTR(CKA_SIGN, sign),
			     ATTR(CKA_DECRYPT, decrypt),  ATTR(CKA_UNWRAP, unwrap), l};
	return gen_pair(c, &m, pt, sizeof pt / sizeof pt[0], vt, sizeof vt / sizeof vt[0], pub, priv);
}

/* A P-256 pair whose private half signs and derives, extractable or not. */
static CK_RV gen_ec(struct cr_ctx *c, CK_BBOOL extractable, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	char label[40];
	CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE l = fresh_label(label);
	CK_ATTRIBUTE pt[] = {ATTR(CKA_CLASS, pub_class),
			     ATTR(CKA_TOKEN, T),
			     {CKA_EC_PARAMS, p256, sizeof p256},
			     ATTR(CKA_VERIFY, T),
			     l};
	CK_ATTRIBUTE vt[] = {
		ATTR(CKA_CLASS, priv_class),	    ATTR(CKA_TOKEN, T), ATTR(CKA_PRIVATE, T), ATTR(CKA_SENSITIVE, T),
		ATTR(CKA_EXTRACTABLE, extractable), ATTR(CKA_SIGN, T),	ATTR(CKA_DERIVE, T),  l};
	return gen_pair(c, &m, pt, sizeof pt / sizeof pt[0], vt, sizeof vt / sizeof vt[0], pub, priv);
}

static enum cr_outcome rsa_pair(struct cr_ctx *c)
{
	MUST(gen_rsa(c, 2048, T, T, T, &c->rsa_pub, &c->rsa_priv));
	return generated_flags(c, c->rsa_priv, c->rsa_pub);
}

static enum cr_outcome ec_pair(struct cr_ctx *c)
{
	MUST(gen_ec(c, F, &c->ec_pub, &c->ec_priv));
	MUST(gen_ec(c, F, &c->ec2_pub, &c->ec2_priv));
	return generated_flags(c, c->ec_priv, c->ec_pub);
}

/* A weak choice: success passes (PKCS#11 allows it), the refusals keyward documents are its policy. */
static enum cr_outcome weak(struct cr_ctx *c, CK_RV rv, CK_OBJECT_HANDLE a, CK_OBJECT_HANDLE b, const char *what)
{
	if (rv == CKR_OK) {
		c->f->C_DestroyObject(c->s, a);
		if (b)
			c->f->C_DestroyObject(c->s, b);
		return CR_PASS;
	}
	if (rv == CKR_KEY_SIZE_RANGE || rv == CKR_MECHANISM_INVALID || rv == CKR_TEMPLATE_INCONSISTENT)
		return say(c, CR_POLICY, "%s refused: %s", what, rv_name(rv));
	return say(c, CR_FAIL, "%s: %s", what, rv_name(rv));
}

static enum cr_outcome rsa_1024(struct cr_ctx *c)
{
	CK_OBJECT_HANDLE pub = 0, priv = 0;
	CK_RV rv = gen_rsa(c, 1024, T, F, F, &pub, &priv);

	if (!rv)
		c->n_made -= 2; /* destroyed here */
	return weak(c, rv, priv, pub, "RSA-1024 generation");
}

static enum cr_outcome private_sensitive(struct cr_ctx *c)
{
	CK_BYTE buf[600];
	CK_ATTRIBUTE a = {CKA_PRIVATE_EXPONENT, buf, sizeof buf};
	CK_RV rv = c->f->C_GetAttributeValue(c->s, c->rsa_priv, &a, 1);

	return rv == CKR_ATTRIBUTE_SENSITIVE ? CR_PASS : say(c, CR_FAIL, "CKA_PRIVATE_EXPONENT: %s", rv_name(rv));
}

/* ECDH both ways gives one secret (HMACs under the two derived keys agree); derived keys are not CKA_LOCAL. */
static CK_RV derive(struct cr_ctx *c, CK_OBJECT_HANDLE base, CK_OBJECT_HANDLE peer_pub, CK_OBJECT_HANDLE *out)
{
	char label[40];
	CK_BYTE point[200];
	CK_ULONG len = 32;
	CK_ATTRIBUTE pa = {CKA_EC_POINT, point, sizeof point};
	CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, 0, NULL};
	CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof p};
	CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, secret_class), ATTR(CKA_KEY_TYPE, generic_type),
			    ATTR(CKA_VALUE_LEN, len),	   ATTR(CKA_TOKEN, T),
			    ATTR(CKA_PRIVATE, T),	   ATTR(CKA_SENSITIVE, T),
			    ATTR(CKA_EXTRACTABLE, F),	   ATTR(CKA_SIGN, T),
			    ATTR(CKA_VERIFY, T),	   fresh_label(label)};
	CK_RV rv = c->f->C_GetAttributeValue(c->s, peer_pub, &pa, 1);

	if (rv)
		return rv;
	p.pPublicData = point;
	p.ulPublicDataLen = pa.ulValueLen;
	rv = c->f->C_DeriveKey(c->s, &m, base, t, sizeof t / sizeof t[0], out);
	if (!rv)
		made(c, *out);
	return rv;
}

static CK_RV hmac(struct cr_ctx *c, CK_OBJECT_HANDLE k, unsigned char out[32])
{
	CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
	CK_ULONG len = 32;
	CK_RV rv = c->f->C_SignInit(c->s, &m, k);

	return rv ? rv : c->f->C_Sign(c->s, (CK_BYTE_PTR) "abc", 3, out, &len);
}

static enum cr_outcome ecdh(struct cr_ctx *c)
{
	CK_OBJECT_HANDLE a, b;
	unsigned char ma[32], mb[32];
	int local, as, ne;

	MUST(derive(c, c->ec_priv, c->ec2_pub, &a));
	MUST(derive(c, c->ec2_priv, c->ec_pub, &b));
	MUST(hmac(c, a, ma));
	MUST(hmac(c, b, mb));
	if (memcmp(ma, mb, 32))
		return say(c, CR_FAIL, "the two sides of ECDH derived different secrets");
	/* PKCS#11 3.0 4.7: only generated keys are local; C_DeriveKey carries the base key's history over */
	local = get_bool(c, a, CKA_LOCAL);
	as = get_bool(c, a, CKA_ALWAYS_SENSITIVE);
	ne = get_bool(c, a, CKA_NEVER_EXTRACTABLE);
	if (local != 0 || as != 1 || ne != 1)
		return say(c, CR_FAIL,
			   "a derived key: CKA_LOCAL %d (want 0), ALWAYS_SENSITIVE %d, NEVER_EXTRACTABLE %d (want 1)",
			   local, as, ne);
	return CR_PASS;
}

/*
 * C_DeriveKey from a base key that is extractable: the derived key was
 * always sensitive (as its base), but not never extractable (its base may
 * have left the token), and not local.
 */
static enum cr_outcome ecdh_extractable_base(struct cr_ctx *c)
{
	CK_OBJECT_HANDLE pub, priv, k;
	int local, as, ne;

	MUST(gen_ec(c, T, &pub, &priv));
	MUST(derive(c, priv, c->ec2_pub, &k));
	local = get_bool(c, k, CKA_LOCAL);
	as = get_bool(c, k, CKA_ALWAYS_SENSITIVE);
	ne = get_bool(c, k, CKA_NEVER_EXTRACTABLE);
	if (local != 0 || as != 1 || ne != 0)
		return say(c, CR_FAIL,
			   "derived from an extractable key: CKA_LOCAL %d, ALWAYS_SENSITIVE %d (want 1), "
			   "NEVER_EXTRACTABLE %d (want 0)",
			   local, as, ne);
	return CR_PASS;
}

/* ---- sign/verify ---- */

static enum cr_outcome sign_verify(struct cr_ctx *c, CK_MECHANISM *m, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub)
{
	CK_BYTE data[] = "thirty-two bytes, like a SHA-256", sig[600];
	CK_ULONG len = sizeof sig;
	CK_RV rv;

	MUST(c->f->C_SignInit(c->s, m, priv));
	MUST(c->f->C_Sign(c->s, data, sizeof data - 1, sig, &len));
	MUST(c->f->C_VerifyInit(c->s, m, pub));
	MUST(c->f->C_Verify(c->s, data, sizeof data - 1, sig, len));
	sig[len / 2] ^= 1;
	MUST(c->f->C_VerifyInit(c->s, m, pub));
	rv = c->f->C_Verify(c->s, data, sizeof data - 1, sig, len);
	return rv == CKR_SIGNATURE_INVALID ? CR_PASS : say(c, CR_FAIL, "a changed signature: %s", rv_name(rv));
}

static enum cr_outcome rsa_pkcs(struct cr_ctx *c)
{
	CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};

	return sign_verify(c, &m, c->rsa_priv, c->rsa_pub);
}

static enum cr_outcome rsa_pss(struct cr_ctx *c)
{
	CK_RSA_PKCS_PSS_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 32};
	CK_MECHANISM m = {CKM_SHA256_RSA_PKCS_PSS, &p, sizeof p};

	return sign_verify(c, &m, c->rsa_priv, c->rsa_pub);
}

static enum cr_outcome ecdsa(struct cr_ctx *c)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0}; /* over a digest: the form every module has (SoftHSM2 2.6 no other) */

	return sign_verify(c, &m, c->ec_priv, c->ec_pub);
}

static enum cr_outcome hmac_sha256(struct cr_ctx *c)
{
	char label[40];
	CK_ULONG len = 32;
	CK_MECHANISM g = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0}, m = {CKM_SHA256_HMAC, NULL, 0};
	CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, secret_class),
			    ATTR(CKA_KEY_TYPE, generic_type),
			    ATTR(CKA_VALUE_LEN, len),
			    ATTR(CKA_TOKEN, T),
			    ATTR(CKA_PRIVATE, T),
			    ATTR(CKA_SENSITIVE, T),
			    ATTR(CKA_SIGN, T),
			    ATTR(CKA_VERIFY, T),
			    fresh_label(label)};
	CK_OBJECT_HANDLE k;

	MUST(c->f->C_GenerateKey(c->s, &g, t, sizeof t / sizeof t[0], &k));
	made(c, k);
	return sign_verify(c, &m, k, k);
}

/* ---- encrypt/decrypt ---- */

static enum cr_outcome round_trip(struct cr_ctx *c, CK_MECHANISM *m, CK_OBJECT_HANDLE enc, CK_OBJECT_HANDLE dec)
{
	CK_BYTE data[] = "thirty-three bytes of plain text!", ct[600], pt[600];
	CK_ULONG ct_len = sizeof ct, pt_len = sizeof pt;

	MUST(c->f->C_EncryptInit(c->s, m, enc));
	MUST(c->f->C_Encrypt(c->s, data, sizeof data - 1, ct, &ct_len));
	MUST(c->f->C_DecryptInit(c->s, m, dec));
	MUST(c->f->C_Decrypt(c->s, ct, ct_len, pt, &pt_len));
	if (pt_len != sizeof data - 1 || memcmp(pt, data, pt_len))
		return say(c, CR_FAIL, "decryption gave %lu other bytes", pt_len);
	return CR_PASS;
}

static enum cr_outcome rsa_oaep(struct cr_ctx *c)
{
	CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};

	return round_trip(c, &m, c->rsa_pub, c->rsa_priv);
}

static enum cr_outcome aes_cbc_pad(struct cr_ctx *c)
{
	CK_BYTE iv[16] = {1, 2, 3};
	CK_MECHANISM m = {CKM_AES_CBC_PAD, iv, sizeof iv};

	/* the key later checks wrap: extractable, sensitive */
	MUST(gen_aes(c, 32, T, F, T, &c->data_key));
	return round_trip(c, &m, c->data_key, c->data_key);
}

static enum cr_outcome aes_gcm(struct cr_ctx *c)
{
	CK_BYTE iv[12] = {9, 8, 7}, aad[] = "header";
	CK_GCM_PARAMS p = {iv, sizeof iv, 96, aad, sizeof aad - 1, 128};
	CK_MECHANISM m = {CKM_AES_GCM, &p, sizeof p};

	return round_trip(c, &m, c->data_key, c->data_key);
}

static enum cr_outcome des3(struct cr_ctx *c)
{
	char label[40];
	CK_MECHANISM m = {CKM_DES3_KEY_GEN, NULL, 0};
	CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, secret_class), ATTR(CKA_TOKEN, T), ATTR(CKA_SENSITIVE, T),
			    ATTR(CKA_ENCRYPT, T), fresh_label(label)};
	CK_OBJECT_HANDLE k = 0;

	return weak(c, c->f->C_GenerateKey(c->s, &m, t, sizeof t / sizeof t[0], &k), k, 0, "DES3 key generation");
}

/* ---- wrap/unwrap ---- */

static enum cr_outcome aes_wrap(struct cr_ctx *c)
{
	CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
	unsigned char w[128];
	CK_ULONG len = sizeof w;
	CK_OBJECT_HANDLE back;

	MUST(gen_aes(c, 32, F, T, F, &c->kek)); /* wraps, and does nothing else */
	MUST(wrap(c, &m, c->kek, c->data_key, w, &len));
	if (len != 40)
		return say(c, CR_FAIL, "a 32-byte key wrapped in %lu bytes (RFC 3394: 40)", len);
	MUST(unwrap_aes(c, &m, c->kek, w, len, T, F, F, &back));
	return same_key(c, c->data_key, back);
}

static enum cr_outcome oaep_wrap(struct cr_ctx *c)
{
	CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
	unsigned char w[600];
	CK_ULONG len = sizeof w;
	CK_OBJECT_HANDLE back;

	MUST(gen_rsa(c, 2048, F, F, T, &c->wrap_rsa_pub, &c->wrap_rsa_priv)); /* wraps and unwraps only */
	MUST(wrap(c, &m, c->wrap_rsa_pub, c->data_key, w, &len));
	MUST(unwrap_aes(c, &m, c->wrap_rsa_priv, w, len, T, F, F, &back));
	return same_key(c, c->data_key, back);
}

static enum cr_outcome unwrapped_flags(struct cr_ctx *c)
{
	CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
	unsigned char w[128];
	CK_ULONG len = sizeof w;
	CK_OBJECT_HANDLE k;
	int local, as, ne, sens;

	MUST(wrap(c, &m, c->kek, c->data_key, w, &len));
	MUST(unwrap_aes(c, &m, c->kek, w, len, T, F, F, &k));
	local = get_bool(c, k, CKA_LOCAL);
	as = get_bool(c, k, CKA_ALWAYS_SENSITIVE);
	ne = get_bool(c, k, CKA_NEVER_EXTRACTABLE);
	sens = get_bool(c, k, CKA_SENSITIVE);
	/* PKCS#11 3.0 5.18.7: an unwrapped key was outside the token */
	if (local != 0 || as != 0 || ne != 0 || sens != 1)
		return say(c, CR_FAIL,
			   "an unwrapped key: CKA_LOCAL %d, ALWAYS_SENSITIVE %d, NEVER_EXTRACTABLE %d (want 0), "
			   "SENSITIVE %d",
			   local, as, ne, sens);
	return CR_PASS;
}

static enum cr_outcome wrap_unextractable(struct cr_ctx *c)
{
	CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
	unsigned char w[128];
	CK_ULONG len = sizeof w;
	CK_RV rv;

	MUST(gen_aes(c, 32, F, F, T, &c->fixed_key)); /* sensitive, not extractable */
	rv = c->f->C_WrapKey(c->s, &m, c->kek, c->fixed_key, w, &len);
	return rv == CKR_KEY_UNEXTRACTABLE ? CR_PASS
					   : say(c, CR_FAIL, "wrapping a non-extractable key: %s", rv_name(rv));
}

/* ---- Tookan-style extraction attacks: each passes when the attack gets nothing out ---- */

/* An AES key the caller knows (key) imported as a wrapping key: RSA-OAEP under the token's own public key. */
static enum cr_outcome known_kek(struct cr_ctx *c, const unsigned char key[16], CK_OBJECT_HANDLE *h)
{
	char label[40];
	CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
	unsigned char ct[600];
	CK_ULONG len = sizeof ct;
	CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, secret_class),
			    ATTR(CKA_KEY_TYPE, aes_type),
			    ATTR(CKA_TOKEN, T),
			    ATTR(CKA_PRIVATE, T),
			    ATTR(CKA_SENSITIVE, T),
			    ATTR(CKA_WRAP, T),
			    ATTR(CKA_UNWRAP, T),
			    fresh_label(label)};

	MUST(c->f->C_EncryptInit(c->s, &m, c->rsa_pub));
	MUST(c->f->C_Encrypt(c->s, (CK_BYTE_PTR)key, 16, ct, &len));
	MUST(c->f->C_UnwrapKey(c->s, &m, c->rsa_priv, ct, len, t, sizeof t / sizeof t[0], h));
	made(c, *h);
	return CR_PASS;
}

static enum cr_outcome tk_wrap_under_known(struct cr_ctx *c)
{
	static const unsigned char key[16] = "known to caller";
	CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
	unsigned char w[128];
	CK_ULONG len = sizeof w;
	CK_OBJECT_HANDLE k;
	enum cr_outcome o = known_kek(c, key, &k);
	CK_RV rv;

	if (o != CR_PASS)
		return o;
	rv = c->f->C_WrapKey(c->s, &m, k, c->fixed_key, w, &len);
	return rv != CKR_OK ? CR_PASS : say(c, CR_FAIL, "a non-extractable key came out under a key the caller knows");
}

/* The one-way attribute t of the non-extractable key set to value: refused, and the key unchanged. */
static enum cr_outcome one_way(struct cr_ctx *c, CK_ATTRIBUTE_TYPE t, CK_BBOOL value, const char *name)
{
	CK_ATTRIBUTE a = {t, &value, sizeof value};
	CK_RV rv = c->f->C_SetAttributeValue(c->s, c->fixed_key, &a, 1);

	if (rv == CKR_OK || get_bool(c, c->fixed_key, t) != !value)
		return say(c, CR_FAIL, "%s set back to %s: %s", name, value ? "true" : "false", rv_name(rv));
	return CR_PASS;
}

static enum cr_outcome tk_sensitive_off(struct cr_ctx *c)
{
	return one_way(c, CKA_SENSITIVE, CK_FALSE, "CKA_SENSITIVE");
}

static enum cr_outcome tk_extractable_on(struct cr_ctx *c)
{
	return one_way(c, CKA_EXTRACTABLE, CK_TRUE, "CKA_EXTRACTABLE");
}

static enum cr_outcome tk_copy_extractable(struct cr_ctx *c)
{
	CK_ATTRIBUTE a[] = {ATTR(CKA_EXTRACTABLE, T), LABEL("cr-copy")};
	CK_OBJECT_HANDLE h = 0;
	CK_RV rv = c->f->C_CopyObject(c->s, c->fixed_key, a, 2, &h);
	int ext;

	if (rv != CKR_OK)
		return CR_PASS;
	made(c, h);
	ext = get_bool(c, h, CKA_EXTRACTABLE);
	return ext == 0 ? CR_PASS : say(c, CR_FAIL, "a copy of a non-extractable key is extractable");
}

static enum cr_outcome tk_read_value(struct cr_ctx *c)
{
	CK_BYTE buf[64];
	CK_ATTRIBUTE a = {CKA_VALUE, buf, sizeof buf};
	CK_RV rv = c->f->C_GetAttributeValue(c->s, c->fixed_key, &a, 1);

	return rv == CKR_ATTRIBUTE_SENSITIVE ? CR_PASS
					     : say(c, CR_FAIL, "CKA_VALUE of a sensitive key: %s", rv_name(rv));
}

/* Wrap a sensitive (extractable) key, unwrap it as not sensitive, read its value. */
static enum cr_outcome tk_unwrap_readable(struct cr_ctx *c)
{
	CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
	unsigned char w[128], value[64];
	CK_ULONG len = sizeof w;
	CK_ATTRIBUTE a = {CKA_VALUE, value, sizeof value};
	CK_OBJECT_HANDLE k;

	MUST(wrap(c, &m, c->kek, c->data_key, w, &len));
	if (unwrap_aes(c, &m, c->kek, w, len, F, T, F, &k) != CKR_OK)
		return CR_PASS;
	if (c->f->C_GetAttributeValue(c->s, k, &a, 1) != CKR_OK)
		return CR_PASS;
	return say(c, CR_FAIL, "a sensitive key read in the clear after a wrap and an unwrap as not sensitive");
}

/*
 * RFC 3394 unwrapping done with the wrapping key's own AES-ECB decryption
 * (the attack Clulow describes on a key that both wraps and decrypts): the
 * wrapped key's value, or -1 when the token refuses a step.
 */
static int unwrap_by_decrypt(struct cr_ctx *c, CK_OBJECT_HANDLE k, const unsigned char *w, size_t len,
			     unsigned char *out)
{
	size_t n = len / 8 - 1;
	unsigned char a[8], b[16], p[16];
	CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};

	memcpy(a, w, 8);
	memcpy(out, w + 8, len - 8);
	for (int j = 5; j >= 0; j--)
		for (size_t i = n; i >= 1; i--) {
			unsigned long long t = (unsigned long long)n * (unsigned)j + i;
			CK_ULONG pl = sizeof p;

			memcpy(b, a, 8);
			for (int x = 0; x < 8; x++)
				b[7 - x] ^= (unsigned char)(t >> (8 * x));
			memcpy(b + 8, out + 8 * (i - 1), 8);
			if (c->f->C_DecryptInit(c->s, &m, k) != CKR_OK ||
			    c->f->C_Decrypt(c->s, b, 16, p, &pl) != CKR_OK)
				return -1;
			memcpy(a, p, 8);
			memcpy(out + 8 * (i - 1), p + 8, 8);
		}
	return 0;
}

static enum cr_outcome tk_clulow_aes(struct cr_ctx *c)
{
	CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
	unsigned char w[128], key[120], got[16], want[16];
	CK_ULONG len = sizeof w;
	CK_OBJECT_HANDLE k;

	if (gen_aes(c, 32, F, T, T, &k) != CKR_OK) /* wraps and decrypts: refusing to make it stops the attack */
		return CR_PASS;
	if (c->f->C_WrapKey(c->s, &m, k, c->data_key, w, &len) != CKR_OK || len < 24 || len > sizeof w)
		return CR_PASS;
	if (unwrap_by_decrypt(c, k, w, len, key) != 0)
		return CR_PASS;
	MUST(key_print(c, c->data_key, want));
	if (!bytes_print(key, len - 8, got) || memcmp(got, want, 16))
		return CR_PASS;
	OPENSSL_cleanse(key, sizeof key);
	return say(c, CR_FAIL, "a sensitive key decrypted into the clear by the key that wrapped it (AES)");
}

static enum cr_outcome tk_clulow_rsa(struct cr_ctx *c)
{
	CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
	unsigned char w[600], key[600], got[16], want[16];
	CK_ULONG len = sizeof w, key_len = sizeof key;

	/* the pair of the first keypair check signs, decrypts and unwraps */
	if (c->f->C_WrapKey(c->s, &m, c->rsa_pub, c->data_key, w, &len) != CKR_OK)
		return CR_PASS;
	if (c->f->C_DecryptInit(c->s, &m, c->rsa_priv) != CKR_OK ||
	    c->f->C_Decrypt(c->s, w, len, key, &key_len) != CKR_OK)
		return CR_PASS;
	MUST(key_print(c, c->data_key, want));
	if (!bytes_print(key, key_len, got) || memcmp(got, want, 16))
		return CR_PASS;
	OPENSSL_cleanse(key, sizeof key);
	return say(c, CR_FAIL, "a sensitive key decrypted into the clear by the pair that wrapped it (RSA)");
}

static enum cr_outcome tk_wrap_with_trusted(struct cr_ctx *c)
{
	char label[40];
	CK_ULONG vlen = 32;
	CK_MECHANISM g = {CKM_AES_KEY_GEN, NULL, 0}, m = {CKM_AES_KEY_WRAP, NULL, 0};
	CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, secret_class), ATTR(CKA_KEY_TYPE, aes_type),
			    ATTR(CKA_VALUE_LEN, vlen),	   ATTR(CKA_TOKEN, T),
			    ATTR(CKA_PRIVATE, T),	   ATTR(CKA_SENSITIVE, T),
			    ATTR(CKA_EXTRACTABLE, T),	   ATTR(CKA_WRAP_WITH_TRUSTED, T),
			    ATTR(CKA_ENCRYPT, T),	   fresh_label(label)};
	unsigned char w[128];
	CK_ULONG len = sizeof w;
	CK_OBJECT_HANDLE k;
	CK_RV rv = c->f->C_GenerateKey(c->s, &g, t, sizeof t / sizeof t[0], &k);

	if (rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_TEMPLATE_INCONSISTENT)
		return say(c, CR_POLICY, "a key to be wrapped only under trusted keys: %s", rv_name(rv));
	if (rv)
		return say(c, CR_FAIL, "C_GenerateKey with CKA_WRAP_WITH_TRUSTED: %s", rv_name(rv));
	made(c, k);
	if (get_bool(c, c->kek, CKA_TRUSTED) == 1)
		return say(c, CR_FAIL, "the wrapping key says it is trusted, but no SO made it so");
	rv = c->f->C_WrapKey(c->s, &m, c->kek, k, w, &len);
	return rv != CKR_OK ? CR_PASS : say(c, CR_FAIL, "a CKA_WRAP_WITH_TRUSTED key wrapped under an untrusted key");
}

const struct cr_check cr_checks[] = {
	{"session", "read-only and read/write sessions", session_ro_rw},
	{"session", "a closed session's handle is invalid", session_closed},
	{"session", "C_CloseAllSessions closes every session", session_close_all},
	{"session", "no session without CKF_SERIAL_SESSION", session_not_serial},
	{"login", "a wrong PIN is CKR_PIN_INCORRECT", login_wrong_pin},
	{"login", "the user logs in", login_user},
	{"login", "a second login is CKR_USER_ALREADY_LOGGED_IN", login_twice},
	{"login", "logout, a second logout, login again", logout_login},
	{"object", "a data object made, found, read, destroyed", data_object},
	{"object", "an attribute the object lacks", attribute_invalid},
	{"object", "C_SetAttributeValue renames", set_label},
	{"keypair", "RSA-2048: local, always sensitive, never extractable", rsa_pair},
	{"keypair", "EC P-256: local, always sensitive, never extractable", ec_pair},
	{"keypair", "RSA-1024 (weak)", rsa_1024},
	{"keypair", "a stored public key is not local", public_key_object},
	{"keypair", "a private exponent is sensitive", private_sensitive},
	{"keypair", "ECDH both ways: one secret; the key not local", ecdh},
	{"keypair", "ECDH from an extractable key: not never extractable", ecdh_extractable_base},
	{"sign/verify", "SHA256_RSA_PKCS", rsa_pkcs},
	{"sign/verify", "SHA256_RSA_PKCS_PSS", rsa_pss},
	{"sign/verify", "ECDSA", ecdsa},
	{"sign/verify", "SHA256_HMAC", hmac_sha256},
	{"encrypt/decrypt", "RSA_PKCS_OAEP", rsa_oaep},
	{"encrypt/decrypt", "AES_CBC_PAD", aes_cbc_pad},
	{"encrypt/decrypt", "AES_GCM", aes_gcm},
	{"encrypt/decrypt", "DES3 (weak)", des3},
	{"wrap/unwrap", "AES_KEY_WRAP round trip", aes_wrap},
	{"wrap/unwrap", "RSA_PKCS_OAEP wrap round trip", oaep_wrap},
	{"wrap/unwrap", "an unwrapped key: not local, not always sensitive", unwrapped_flags},
	{"wrap/unwrap", "a non-extractable key is CKR_KEY_UNEXTRACTABLE", wrap_unextractable},
	{"Tookan", "wrap a non-extractable key under a known key", tk_wrap_under_known},
	{"Tookan", "CKA_SENSITIVE back to false", tk_sensitive_off},
	{"Tookan", "CKA_EXTRACTABLE back to true", tk_extractable_on},
	{"Tookan", "copy a non-extractable key as extractable", tk_copy_extractable},
	{"Tookan", "read a sensitive key's CKA_VALUE", tk_read_value},
	{"Tookan", "wrap, unwrap as not sensitive, read", tk_unwrap_readable},
	{"Tookan", "wrap and decrypt with one AES key", tk_clulow_aes},
	{"Tookan", "wrap and decrypt with one RSA pair", tk_clulow_rsa},
	{"Tookan", "CKA_WRAP_WITH_TRUSTED under an untrusted key", tk_wrap_with_trusted},
};
const size_t cr_n_checks = sizeof cr_checks / sizeof cr_checks[0];

const char *const cr_areas[] = {"session",     "login",		  "object",	 "keypair",
				"sign/verify", "encrypt/decrypt", "wrap/unwrap", "Tookan"};
const size_t cr_n_areas = sizeof cr_areas / sizeof cr_areas[0];
