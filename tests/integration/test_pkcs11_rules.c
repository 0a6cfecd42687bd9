/*
 * keyward-pkcs11.so loaded here, against a real keywardd (development
 * mode): every non-exportability rule of issue 4 attempted through the
 * module and answered with the right CKR code; object management
 * (create, set, copy, destroy, size); AES key generation and key wrap;
 * RSA decryption on the HSM (PKCS#1, OAEP, X.509) against encryption done
 * here with OpenSSL; Ed25519 and CKM_EDDSA, checked with OpenSSL; digests
 * against OpenSSL; and a key moved with the real `ksputil chkeysowner`
 * appearing on its new owner's token and vanishing from the old one's,
 * with no restart of the module.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "harness.h"

#define SLOT_MACHINE 0
#define SLOT_SHARED 2

static struct kwt_server server;
static char pin[64];
static void *module;
static CK_FUNCTION_LIST_PTR f;
static CK_SESSION_HANDLE s; /* R/W, logged in, on the machine token */

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static int setup(void **state)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	char path[400];

	(void)state;
	kwt_start_dev(&server);
	snprintf(path, sizeof path, "%s/machine-id", server.dir);
	kwt_write_file(path, "00112233445566778899aabbccddeeff\n");
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", path, 1), 0);
	assert_int_equal(setenv("KEYWARD_CONF", server.conf, 1), 0);
	kwt_dev_pin(&server, pin, sizeof pin);
	module = dlopen(KEYWARD_PKCS11_PATH, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(module);
	*(void **)&get = dlsym(module, "C_GetFunctionList");
	assert_non_null(get);
	assert_int_equal(get(&f), CKR_OK);
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(f->C_OpenSession(SLOT_MACHINE, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(dlclose(module), 0); /* the sanitizers report whatever it leaked */
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

/* The objects of class cls labelled label on session ss (at most max); returns how many. */
static CK_ULONG find(CK_SESSION_HANDLE ss, CK_OBJECT_CLASS cls, const char *label, CK_OBJECT_HANDLE *out, CK_ULONG max)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
	CK_ULONG n = 0;

	assert_int_equal(f->C_FindObjectsInit(ss, t, 2), CKR_OK);
	assert_int_equal(f->C_FindObjects(ss, out, max, &n), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(ss), CKR_OK);
	return n;
}

static CK_OBJECT_HANDLE find_one(CK_OBJECT_CLASS cls, const char *label)
{
	CK_OBJECT_HANDLE h[2];

	if (find(s, cls, label, h, 2) != 1)
		fail_msg("not exactly one object of class %lu labelled \"%s\"", cls, label);
	return h[0];
}

static CK_BBOOL get_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL b = 2;
	CK_ATTRIBUTE t = {type, &b, sizeof b};

	assert_int_equal(f->C_GetAttributeValue(s, h, &t, 1), CKR_OK);
	return b;
}

/* A P-256 or RSA-2048 key pair labelled label; extractable as asked. */
static void gen_pair(const char *label, int rsa, CK_BBOOL extractable, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_ULONG bits = 2048;
	CK_MECHANISM m = {rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pt[] = {{CKA_LABEL, (void *)label, strlen(label)},
			     rsa ? (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof bits}
				 : (CK_ATTRIBUTE){CKA_EC_PARAMS, p256, sizeof p256}};
	CK_ATTRIBUTE vt[] = {{CKA_LABEL, (void *)label, strlen(label)},
			     {CKA_EXTRACTABLE, &extractable, sizeof extractable},
			     {CKA_DECRYPT, rsa ? &yes : &no, sizeof yes}};

	assert_int_equal(f->C_GenerateKeyPair(s, &m, pt, 2, vt, 3, pub, priv), CKR_OK);
}

static CK_OBJECT_HANDLE gen_aes(const char *label, CK_ULONG len, CK_BBOOL extractable)
{
	CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)},
			    {CKA_VALUE_LEN, &len, sizeof len},
			    {CKA_EXTRACTABLE, &extractable, sizeof extractable},
			    {CKA_WRAP, &yes, sizeof yes}};
	CK_OBJECT_HANDLE h = 0;

	assert_int_equal(f->C_GenerateKey(s, &m, t, 4, &h), CKR_OK);
	return h;
}

/* The key's public key, from CKA_PUBLIC_KEY_INFO, as OpenSSL sees it. */
static EVP_PKEY *public_key(CK_OBJECT_HANDLE h)
{
	CK_BYTE der[1024];
	CK_ATTRIBUTE t = {CKA_PUBLIC_KEY_INFO, der, sizeof der};
	const unsigned char *p = der;
	EVP_PKEY *k;

	assert_int_equal(f->C_GetAttributeValue(s, h, &t, 1), CKR_OK);
	k = d2i_PUBKEY(NULL, &p, (long)t.ulValueLen);
	assert_non_null(k);
	return k;
}

/* Every rule of non-exportability, through the module. */
static void test_non_exportable(void **state)
{
	CK_OBJECT_HANDLE pub, priv, copy = 0, kek, secret;
	CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD + 1 /* CKM_AES_KEY_WRAP_KWP */, NULL, 0};
	CK_BYTE value[600];
	CK_ULONG len;

	(void)state;
	gen_pair("locked", 0, CK_FALSE, &pub, &priv);
	assert_int_equal(get_bool(priv, CKA_SENSITIVE), CK_TRUE);
	assert_int_equal(get_bool(priv, CKA_EXTRACTABLE), CK_FALSE);
	assert_int_equal(get_bool(priv, CKA_NEVER_EXTRACTABLE), CK_TRUE);

	/* sensitive values are never answered */
	{
		CK_ATTRIBUTE t = {CKA_VALUE, value, sizeof value};

		assert_int_equal(f->C_GetAttributeValue(s, priv, &t, 1), CKR_ATTRIBUTE_SENSITIVE);
		assert_int_equal(t.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	}
	/* CKA_EXTRACTABLE never goes back to true; CKA_SENSITIVE never to false */
	{
		CK_ATTRIBUTE ext = {CKA_EXTRACTABLE, &yes, sizeof yes}, sens = {CKA_SENSITIVE, &no, sizeof no};

		assert_int_equal(f->C_SetAttributeValue(s, priv, &ext, 1), CKR_ATTRIBUTE_READ_ONLY);
		assert_int_equal(f->C_SetAttributeValue(s, priv, &sens, 1), CKR_ATTRIBUTE_READ_ONLY);
		assert_int_equal(get_bool(priv, CKA_EXTRACTABLE), CK_FALSE);
	}
	/* C_CopyObject cannot make an extractable copy */
	{
		CK_ATTRIBUTE t[] = {{CKA_LABEL, "locked-copy", 11}, {CKA_EXTRACTABLE, &yes, sizeof yes}};

		assert_int_equal(f->C_CopyObject(s, priv, t, 2, &copy), CKR_ATTRIBUTE_READ_ONLY);
		assert_int_equal(find(s, CKO_PRIVATE_KEY, "locked-copy", &copy, 1), 0);
	}
	/* wrapping a non-extractable key fails; so does wrapping with a key that may not wrap */
	kek = gen_aes("kek", 32, CK_FALSE);
	len = sizeof value;
	assert_int_equal(f->C_WrapKey(s, &kwp, kek, priv, value, &len), CKR_KEY_UNEXTRACTABLE);
	assert_int_equal(f->C_WrapKey(s, &kwp, priv, kek, value, &len), CKR_WRAPPING_KEY_TYPE_INCONSISTENT);
	secret = gen_aes("locked-secret", 16, CK_FALSE);
	{
		CK_MECHANISM kw = {CKM_AES_KEY_WRAP, NULL, 0};

		assert_int_equal(f->C_WrapKey(s, &kw, kek, secret, value, &len), CKR_KEY_UNEXTRACTABLE);
		assert_int_equal(f->C_WrapKey(s, &kw, kek, kek, value, &len), CKR_KEY_UNEXTRACTABLE);
	}
	/* CKA_MODIFIABLE false: no change at all */
	{
		CK_ATTRIBUTE t[] = {{CKA_LABEL, "frozen", 6}, {CKA_MODIFIABLE, &no, sizeof no}};
		CK_ATTRIBUTE rename = {CKA_LABEL, "thawed", 6}, id = {CKA_ID, "x", 1};
		CK_ATTRIBUTE lock_ext = {CKA_EXTRACTABLE, &no, sizeof no};
		CK_OBJECT_HANDLE frozen = 0;

		assert_int_equal(f->C_CopyObject(s, priv, t, 2, &frozen), CKR_OK);
		assert_int_equal(get_bool(frozen, CKA_MODIFIABLE), CK_FALSE);
		assert_int_equal(get_bool(frozen, CKA_NEVER_EXTRACTABLE), CK_TRUE);
		assert_int_equal(f->C_SetAttributeValue(s, frozen, &rename, 1), CKR_ACTION_PROHIBITED);
		assert_int_equal(f->C_SetAttributeValue(s, frozen, &id, 1), CKR_ACTION_PROHIBITED);
		assert_int_equal(f->C_SetAttributeValue(s, frozen, &lock_ext, 1), CKR_ACTION_PROHIBITED);
		assert_int_equal(find(s, CKO_PRIVATE_KEY, "thawed", &copy, 1), 0);
		/* and a copy of it cannot be modifiable again */
		CK_ATTRIBUTE again[] = {{CKA_LABEL, "refrozen", 8}, {CKA_MODIFIABLE, &yes, sizeof yes}};

		assert_int_equal(f->C_CopyObject(s, frozen, again, 2, &copy), CKR_ATTRIBUTE_READ_ONLY);
	}
	/* attributes that are facts of the key are read-only */
	{
		CK_ULONG bits = 4096;
		CK_ATTRIBUTE t = {CKA_MODULUS_BITS, &bits, sizeof bits};

		assert_int_equal(f->C_SetAttributeValue(s, priv, &t, 1), CKR_ATTRIBUTE_READ_ONLY);
	}
	/* a private key is not created from its value: it is born on the HSM or unwrapped into it */
	{
		CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
		CK_KEY_TYPE kt = CKK_EC;
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_KEY_TYPE, &kt, sizeof kt}};
		CK_OBJECT_HANDLE h;

		assert_int_equal(f->C_CreateObject(s, t, 2, &h), CKR_ATTRIBUTE_VALUE_INVALID);
	}
	/* an AES key asked to be readable is refused */
	{
		CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
		CK_ULONG l = 32;
		CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &l, sizeof l}, {CKA_SENSITIVE, &no, sizeof no}};
		CK_OBJECT_HANDLE h;

		assert_int_equal(f->C_GenerateKey(s, &m, t, 2, &h), CKR_ATTRIBUTE_VALUE_INVALID);
	}
}

/* Extractable keys may be wrapped, until they are made non-extractable. */
static void test_wrap_extractable(void **state)
{
	CK_OBJECT_HANDLE pub, priv, kek, secret;
	CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD + 1, NULL, 0}, kw = {CKM_AES_KEY_WRAP, NULL, 0};
	CK_ATTRIBUTE lock = {CKA_EXTRACTABLE, &no, sizeof no}, unlock = {CKA_EXTRACTABLE, &yes, sizeof yes};
	CK_BYTE wrapped[2048];
	CK_ULONG len = 0, want;

	(void)state;
	kek = find_one(CKO_SECRET_KEY, "kek");
	gen_pair("open", 1, CK_TRUE, &pub, &priv);
	assert_int_equal(get_bool(priv, CKA_EXTRACTABLE), CK_TRUE);
	assert_int_equal(get_bool(priv, CKA_NEVER_EXTRACTABLE), CK_FALSE);
	assert_int_equal(get_bool(priv, CKA_SENSITIVE), CK_TRUE);
	/* the length query, then the wrap: a PKCS#8 RSA-2048 key, RFC 5649 */
	assert_int_equal(f->C_WrapKey(s, &kwp, kek, priv, NULL, &len), CKR_OK);
	assert_true(len > 1000 && len % 8 == 0);
	want = len;
	len = 10;
	assert_int_equal(f->C_WrapKey(s, &kwp, kek, priv, wrapped, &len), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(len, want);
	assert_int_equal(f->C_WrapKey(s, &kwp, kek, priv, wrapped, &len), CKR_OK);
	assert_int_equal(len, want);

	/* an extractable AES-128 key under RFC 3394: 16 bytes + 8 */
	secret = gen_aes("open-secret", 16, CK_TRUE);
	len = sizeof wrapped;
	assert_int_equal(f->C_WrapKey(s, &kw, kek, secret, wrapped, &len), CKR_OK);
	assert_int_equal(len, 24);

	/* one way: extractable -> not extractable, and wrapping stops */
	assert_int_equal(f->C_SetAttributeValue(s, priv, &lock, 1), CKR_OK);
	assert_int_equal(get_bool(priv, CKA_EXTRACTABLE), CK_FALSE);
	assert_int_equal(get_bool(priv, CKA_NEVER_EXTRACTABLE), CK_FALSE); /* it once was */
	len = sizeof wrapped;
	assert_int_equal(f->C_WrapKey(s, &kwp, kek, priv, wrapped, &len), CKR_KEY_UNEXTRACTABLE);
	assert_int_equal(f->C_SetAttributeValue(s, priv, &unlock, 1), CKR_ATTRIBUTE_READ_ONLY);
	/* a copy may be tighter: not extractable, while the source stays as it is */
	{
		CK_ATTRIBUTE t[] = {{CKA_LABEL, "open-copy", 9}, {CKA_EXTRACTABLE, &no, sizeof no}};
		CK_OBJECT_HANDLE copy = 0;

		assert_int_equal(f->C_CopyObject(s, secret, t, 2, &copy), CKR_OK);
		assert_int_equal(get_bool(copy, CKA_EXTRACTABLE), CK_FALSE);
		len = sizeof wrapped;
		assert_int_equal(f->C_WrapKey(s, &kw, kek, copy, wrapped, &len), CKR_KEY_UNEXTRACTABLE);
		len = sizeof wrapped;
		assert_int_equal(f->C_WrapKey(s, &kw, kek, secret, wrapped, &len), CKR_OK);
	}
}

/* Certificates and data objects: create, read, change, copy, size, destroy. */
static void test_objects(void **state)
{
	CK_OBJECT_CLASS cert_cls = CKO_CERTIFICATE, data_cls = CKO_DATA;
	CK_CERTIFICATE_TYPE x509 = CKC_X_509;
	unsigned char *der = NULL, *p;
	CK_BYTE got[2048];
	CK_OBJECT_HANDLE cert, data, h;
	CK_ULONG size = 0;
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	int der_len;

	(void)state;
	/* a self-signed certificate made here */
	assert_non_null(key);
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8, (const unsigned char *)"stored", -1,
				   -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, key);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	der_len = i2d_X509(x, &der);
	assert_true(der_len > 0);

	{
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &cert_cls, sizeof cert_cls},
				    {CKA_CERTIFICATE_TYPE, &x509, sizeof x509},
				    {CKA_VALUE, der, (CK_ULONG)der_len},
				    {CKA_ID, "\x0c", 1}};
		CK_ATTRIBUTE junk[] = {{CKA_CLASS, &cert_cls, sizeof cert_cls},
				       {CKA_CERTIFICATE_TYPE, &x509, sizeof x509},
				       {CKA_VALUE, "not DER", 7}};
		CK_ATTRIBUTE no_value[] = {{CKA_CLASS, &cert_cls, sizeof cert_cls},
					   {CKA_CERTIFICATE_TYPE, &x509, sizeof x509}};

		assert_int_equal(f->C_CreateObject(s, junk, 3, &h), CKR_ATTRIBUTE_VALUE_INVALID);
		assert_int_equal(f->C_CreateObject(s, no_value, 2, &h), CKR_TEMPLATE_INCOMPLETE);
		assert_int_equal(f->C_CreateObject(s, t, 4, &cert), CKR_OK);
	}
	/* labelled by its subject's CN; the value comes back as stored; CKA_SUBJECT is the DER name */
	assert_int_equal(find_one(CKO_CERTIFICATE, "stored"), cert);
	{
		CK_BYTE subject[256];
		CK_ATTRIBUTE t[] = {{CKA_VALUE, got, sizeof got}, {CKA_SUBJECT, subject, sizeof subject}};

		assert_int_equal(f->C_GetAttributeValue(s, cert, t, 2), CKR_OK);
		assert_int_equal(t[0].ulValueLen, der_len);
		assert_memory_equal(got, der, (size_t)der_len);
		p = subject;
		assert_int_equal(t[1].ulValueLen, i2d_X509_NAME(X509_get_subject_name(x), NULL));
	}
	assert_int_equal(f->C_GetObjectSize(s, cert, &size), CKR_OK);
	assert_int_equal(size, der_len);
	/* a new label and CKA_ID in one call */
	{
		CK_ATTRIBUTE change[] = {{CKA_LABEL, "stored-2", 8}, {CKA_ID, "\x01\x02", 2}};
		CK_ATTRIBUTE id = {CKA_ID, got, sizeof got};

		assert_int_equal(f->C_SetAttributeValue(s, cert, change, 2), CKR_OK);
		assert_int_equal(find_one(CKO_CERTIFICATE, "stored-2"), cert);
		assert_int_equal(f->C_GetAttributeValue(s, cert, &id, 1), CKR_OK);
		assert_int_equal(id.ulValueLen, 2);
		assert_memory_equal(got, "\x01\x02", 2);
	}

	/* a data object; renamed with a new CKA_ID in one call */
	{
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &data_cls, sizeof data_cls},
				    {CKA_LABEL, "notes", 5},
				    {CKA_APPLICATION, "keyward test", 12},
				    {CKA_VALUE, "some bytes", 10}};
		CK_ATTRIBUTE change[] = {{CKA_LABEL, "notes-2", 7}},
			     bad[] = {{CKA_LABEL, "notes-3", 7}, {CKA_ID, "\x01", 1}};
		CK_ATTRIBUTE read[] = {{CKA_VALUE, got, sizeof got}, {CKA_APPLICATION, got + 100, 100}};

		assert_int_equal(f->C_CreateObject(s, t, 4, &data), CKR_OK);
		/* all or nothing: the label does not change when the CKA_ID (which data objects lack) cannot */
		assert_int_equal(f->C_SetAttributeValue(s, data, bad, 2), CKR_ATTRIBUTE_TYPE_INVALID);
		assert_int_equal(f->C_SetAttributeValue(s, data, change, 1), CKR_OK);
		assert_int_equal(find(s, CKO_DATA, "notes-3", &h, 1), 0);
		assert_int_equal(find(s, CKO_DATA, "notes", &h, 1), 0);
		assert_int_equal(find_one(CKO_DATA, "notes-2"), data);
		assert_int_equal(f->C_GetAttributeValue(s, data, read, 2), CKR_OK);
		assert_int_equal(read[0].ulValueLen, 10);
		assert_memory_equal(got, "some bytes", 10);
		assert_int_equal(read[1].ulValueLen, 12);
		assert_memory_equal(got + 100, "keyward test", 12);
	}
	/* a read-only session changes nothing */
	{
		CK_SESSION_HANDLE ro;
		CK_ATTRIBUTE t = {CKA_LABEL, "x", 1};

		assert_int_equal(f->C_OpenSession(SLOT_MACHINE, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
		assert_int_equal(f->C_SetAttributeValue(ro, data, &t, 1), CKR_SESSION_READ_ONLY);
		assert_int_equal(f->C_DestroyObject(ro, data), CKR_SESSION_READ_ONLY);
		assert_int_equal(f->C_CloseSession(ro), CKR_OK);
	}
	/* destroyed: gone from the HSM, and the handle is dead */
	assert_int_equal(f->C_DestroyObject(s, data), CKR_OK);
	assert_int_equal(find(s, CKO_DATA, "notes-2", &h, 1), 0);
	assert_int_equal(f->C_DestroyObject(s, data), CKR_OBJECT_HANDLE_INVALID);
	assert_int_equal(f->C_GetObjectSize(s, data, &size), CKR_OBJECT_HANDLE_INVALID);
	assert_int_equal(f->C_DestroyObject(s, cert), CKR_OK);

	/* private keys: their size is not told */
	assert_int_equal(f->C_GetObjectSize(s, find_one(CKO_PRIVATE_KEY, "open"), &size), CKR_OK);
	assert_int_equal(size, CK_UNAVAILABLE_INFORMATION);
	(void)p;
	OPENSSL_free(der);
	X509_free(x);
	EVP_PKEY_free(key);
}

/* RSA decryption on the HSM of what OpenSSL and the module encrypt. */
static void test_decrypt(void **state)
{
	CK_OBJECT_HANDLE priv = find_one(CKO_PRIVATE_KEY, "open"), pub = find_one(CKO_PUBLIC_KEY, "open");
	CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, "lbl", 3};
	CK_MECHANISM pkcs = {CKM_RSA_PKCS, NULL, 0}, oaep_m = {CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep},
		     raw = {CKM_RSA_X_509, NULL, 0};
	static const unsigned char secret[] = "a session key, say";
	unsigned char ct[256], pt[256];
	size_t ct_len = sizeof ct;
	CK_ULONG len;
	EVP_PKEY *k = public_key(priv);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);

	(void)state;
	/* OAEP SHA-256 with a label, encrypted by OpenSSL here */
	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, OPENSSL_memdup("lbl", 3), 3), 1);
	assert_int_equal(EVP_PKEY_encrypt(ctx, ct, &ct_len, secret, sizeof secret), 1);
	assert_int_equal(f->C_DecryptInit(s, &oaep_m, priv), CKR_OK);
	len = 0;
	assert_int_equal(f->C_Decrypt(s, ct, ct_len, NULL, &len), CKR_OK);
	assert_int_equal(len, 256);
	assert_int_equal(f->C_Decrypt(s, ct, ct_len, pt, &len), CKR_OK);
	assert_int_equal(len, sizeof secret);
	assert_memory_equal(pt, secret, sizeof secret);
	/* a changed ciphertext is refused */
	ct[5] ^= 1;
	assert_int_equal(f->C_DecryptInit(s, &oaep_m, priv), CKR_OK);
	len = sizeof pt;
	assert_int_equal(f->C_Decrypt(s, ct, ct_len, pt, &len), CKR_ENCRYPTED_DATA_INVALID);
	/* a ciphertext of the wrong length */
	assert_int_equal(f->C_DecryptInit(s, &oaep_m, priv), CKR_OK);
	assert_int_equal(f->C_Decrypt(s, ct, 100, pt, &len), CKR_ENCRYPTED_DATA_LEN_RANGE);

	/* PKCS#1 v1.5, encrypted by the module (locally) with the public key, multi-part decryption */
	assert_int_equal(f->C_EncryptInit(s, &pkcs, pub), CKR_OK);
	len = sizeof ct;
	assert_int_equal(f->C_Encrypt(s, (CK_BYTE_PTR)secret, sizeof secret, ct, &len), CKR_OK);
	assert_int_equal(len, 256);
	assert_int_equal(f->C_DecryptInit(s, &pkcs, priv), CKR_OK);
	assert_int_equal(f->C_DecryptUpdate(s, ct, 100, pt, &len), CKR_OK);
	assert_int_equal(f->C_DecryptUpdate(s, ct + 100, 156, pt, &len), CKR_OK);
	len = sizeof pt;
	assert_int_equal(f->C_DecryptFinal(s, pt, &len), CKR_OK);
	assert_int_equal(len, sizeof secret);
	assert_memory_equal(pt, secret, sizeof secret);

	/* raw RSA: the block comes back whole */
	memset(pt, 0, sizeof pt);
	memcpy(pt + 200, secret, sizeof secret);
	assert_int_equal(f->C_EncryptInit(s, &raw, pub), CKR_OK);
	len = sizeof ct;
	assert_int_equal(f->C_Encrypt(s, pt, 256, ct, &len), CKR_OK);
	assert_int_equal(f->C_DecryptInit(s, &raw, priv), CKR_OK);
	len = sizeof pt;
	assert_int_equal(f->C_Decrypt(s, ct, 256, pt, &len), CKR_OK);
	assert_int_equal(len, 256);
	assert_memory_equal(pt + 200, secret, sizeof secret);

	/* an EC key does not decrypt; a key without CKA_DECRYPT may not */
	assert_int_equal(f->C_DecryptInit(s, &pkcs, find_one(CKO_PRIVATE_KEY, "locked")), CKR_KEY_TYPE_INCONSISTENT);
	{
		CK_ATTRIBUTE t = {CKA_ALLOWED_MECHANISMS, NULL, 0};
		CK_MECHANISM_TYPE list[64];
		int has_oaep = 0, has_ecdsa = 0;

		assert_int_equal(f->C_GetAttributeValue(s, priv, &t, 1), CKR_OK);
		assert_true(t.ulValueLen > 0 && t.ulValueLen <= sizeof list);
		t.pValue = list;
		assert_int_equal(f->C_GetAttributeValue(s, priv, &t, 1), CKR_OK);
		for (size_t i = 0; i < t.ulValueLen / sizeof *list; i++) {
			has_oaep |= list[i] == CKM_RSA_PKCS_OAEP;
			has_ecdsa |= list[i] == CKM_ECDSA;
		}
		assert_true(has_oaep);
		assert_false(has_ecdsa);
	}
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(k);
}

/* Ed25519: generated on the HSM, signed with CKM_EDDSA, verified by OpenSSL and the module. */
static void test_eddsa(void **state)
{
	static CK_BYTE ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
	CK_MECHANISM gen = {CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0}, eddsa = {CKM_EDDSA, NULL, 0};
	CK_ATTRIBUTE pt[] = {{CKA_LABEL, "ed", 2}, {CKA_EC_PARAMS, ed25519, sizeof ed25519}};
	CK_ATTRIBUTE vt[] = {{CKA_LABEL, "ed", 2}};
	CK_OBJECT_HANDLE pub, priv;
	static CK_BYTE msg[] = "signed in one piece, as Ed25519 wants";
	CK_BYTE sig[64], big[1025] = {0};
	CK_ULONG len = sizeof sig;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY *k;

	(void)state;
	assert_int_equal(f->C_GenerateKeyPair(s, &gen, pt, 2, vt, 1, &pub, &priv), CKR_OK);
	{
		CK_KEY_TYPE kt = 0;
		CK_ATTRIBUTE t = {CKA_KEY_TYPE, &kt, sizeof kt};

		assert_int_equal(f->C_GetAttributeValue(s, priv, &t, 1), CKR_OK);
		assert_int_equal(kt, CKK_EC_EDWARDS);
	}
	assert_int_equal(f->C_SignInit(s, &eddsa, priv), CKR_OK);
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, &len), CKR_OK);
	assert_int_equal(len, 64);
	k = public_key(pub);
	assert_int_equal(EVP_PKEY_get_id(k), EVP_PKEY_ED25519);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, k), 1);
	assert_int_equal(EVP_DigestVerify(md, sig, len, msg, sizeof msg), 1);
	assert_int_equal(f->C_VerifyInit(s, &eddsa, pub), CKR_OK);
	assert_int_equal(f->C_Verify(s, msg, sizeof msg, sig, len), CKR_OK);
	sig[0] ^= 1;
	assert_int_equal(f->C_VerifyInit(s, &eddsa, pub), CKR_OK);
	assert_int_equal(f->C_Verify(s, msg, sizeof msg, sig, len), CKR_SIGNATURE_INVALID);
	/* raw data is limited to 1 KiB */
	assert_int_equal(f->C_SignInit(s, &eddsa, priv), CKR_OK);
	len = sizeof sig;
	assert_int_equal(f->C_Sign(s, big, sizeof big, sig, &len), CKR_DATA_LEN_RANGE);
	/* EdDSA keys sign; they do not decrypt */
	{
		CK_ATTRIBUTE bad[] = {{CKA_LABEL, "ed2", 3}, {CKA_DECRYPT, &yes, sizeof yes}};
		CK_OBJECT_HANDLE a, b;

		assert_int_equal(f->C_GenerateKeyPair(s, &gen, pt, 2, bad, 2, &a, &b), CKR_TEMPLATE_INCONSISTENT);
	}
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
}

/* Digests equal OpenSSL's, single- and multi-part. */
static void test_digest(void **state)
{
	CK_MECHANISM sha256 = {CKM_SHA256, NULL, 0}, sha512 = {CKM_SHA512, NULL, 0};
	static CK_BYTE msg[] = "abc";
	unsigned char want[64];
	unsigned want_len = 0;
	CK_BYTE out[64];
	CK_ULONG len = 0;

	(void)state;
	assert_int_equal(EVP_Digest(msg, 3, want, &want_len, EVP_sha256(), NULL), 1);
	assert_int_equal(f->C_DigestInit(s, &sha256), CKR_OK);
	assert_int_equal(f->C_Digest(s, msg, 3, NULL, &len), CKR_OK);
	assert_int_equal(len, 32);
	assert_int_equal(f->C_Digest(s, msg, 3, out, &len), CKR_OK);
	assert_memory_equal(out, want, 32);
	assert_int_equal(EVP_Digest(msg, 3, want, &want_len, EVP_sha512(), NULL), 1);
	assert_int_equal(f->C_DigestInit(s, &sha512), CKR_OK);
	assert_int_equal(f->C_DigestUpdate(s, msg, 1), CKR_OK);
	assert_int_equal(f->C_DigestUpdate(s, msg + 1, 2), CKR_OK);
	len = sizeof out;
	assert_int_equal(f->C_DigestFinal(s, out, &len), CKR_OK);
	assert_int_equal(len, 64);
	assert_memory_equal(out, want, 64);
	assert_int_equal(f->C_DigestFinal(s, out, &len), CKR_OPERATION_NOT_INITIALIZED);
	/* a key is never digested; the error ends the operation, as every error but CKR_BUFFER_TOO_SMALL does */
	assert_int_equal(f->C_DigestInit(s, &sha512), CKR_OK);
	assert_int_equal(f->C_DigestKey(s, find_one(CKO_SECRET_KEY, "kek")), CKR_KEY_INDIGESTIBLE);
	assert_int_equal(f->C_DigestFinal(s, out, &len), CKR_OPERATION_NOT_INITIALIZED);
}

/* Runs ksputil with args; returns its exit code. */
static int ksputil(const char *args)
{
	char cmd[1024];
	int st;

	snprintf(cmd, sizeof cmd, "'%s' %s >'%s/ksputil.out' 2>&1", KSPUTIL_PATH, args, server.dir);
	st = system(cmd);
	assert_true(st != -1 && WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* A key moved with ksputil chkeysowner: visible and usable on the new owner's token, gone from the old. */
static void test_chkeysowner(void **state)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0}, ecdsa = {CKM_ECDSA, NULL, 0};
	CK_ATTRIBUTE pt[] = {{CKA_LABEL, "mover", 5}, {CKA_EC_PARAMS, p256, sizeof p256}};
	CK_ATTRIBUTE vt[] = {{CKA_LABEL, "mover", 5}};
	CK_SESSION_HANDLE shared;
	CK_OBJECT_HANDLE pub, priv, h[2];
	CK_BYTE digest[32] = {7}, sig[64];
	CK_ULONG len = sizeof sig;
	char machine[KW_OWNER_MAX + 1], args[400];

	(void)state;
	kwt_ok(kw_owner_machine(NULL, machine, sizeof machine));
	assert_int_equal(f->C_OpenSession(SLOT_SHARED, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &shared),
			 CKR_OK);
	assert_int_equal(f->C_GenerateKeyPair(shared, &gen, pt, 2, vt, 1, &pub, &priv), CKR_OK);
	assert_int_equal(find(shared, CKO_PRIVATE_KEY, "mover", h, 2), 1);
	assert_int_equal(find(s, CKO_PRIVATE_KEY, "mover", h, 2), 0);

	snprintf(args, sizeof args, "chkeysowner mover %s %s", KW_OWNER_SHARED, machine);
	if (ksputil(args) != 0) {
		char out[400];

		snprintf(out, sizeof out, "%s/ksputil.out", server.dir);
		fail_msg("ksputil %s failed:\n%s", args, kwt_read_file(out, NULL));
	}

	/* the module re-lists on every search: no restart */
	assert_int_equal(find(shared, CKO_PRIVATE_KEY, "mover", h, 2), 0);
	assert_int_equal(find(shared, CKO_PUBLIC_KEY, "mover", h, 2), 0);
	assert_int_equal(find(s, CKO_PRIVATE_KEY, "mover", h, 2), 1);
	assert_int_equal(f->C_SignInit(s, &ecdsa, h[0]), CKR_OK);
	assert_int_equal(f->C_Sign(s, digest, sizeof digest, sig, &len), CKR_OK);
	assert_int_equal(find(s, CKO_PUBLIC_KEY, "mover", h, 2), 1);
	assert_int_equal(f->C_VerifyInit(s, &ecdsa, h[0]), CKR_OK);
	assert_int_equal(f->C_Verify(s, digest, sizeof digest, sig, len), CKR_OK);
	assert_int_equal(f->C_CloseSession(shared), CKR_OK);
}

int main(void)
{
	/* in this order: the later tests use the keys the earlier ones make */
	// clang-format off
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_non_exportable),
		cmocka_unit_test(test_wrap_extractable),
		cmocka_unit_test(test_objects),
		cmocka_unit_test(test_decrypt),
		cmocka_unit_test(test_eddsa),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_chkeysowner),
	};
	// clang-format on

	return cmocka_run_group_tests_name("integration_pkcs11_rules", tests, setup, teardown);
}
