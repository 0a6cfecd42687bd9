/*
 * keyward-pkcs11.so's PKCS#11 3.0 interfaces, the module loaded here
 * against a real keywardd (development mode): C_GetInterfaceList and
 * C_GetInterface offer "PKCS 11" 3.0 and 2.40 (the C_GetFunctionList list)
 * and "Keyward Batch"; C_KW_SignBatch signs ECDSA (digests, and messages it
 * hashes), RSA PKCS#1 v1.5 and PSS, every signature checked with OpenSSL
 * in order; its length query, refusals (counts, buffers, a key without
 * sign, login) and that it leaves the session's own C_Sign alone; and
 * pkcs11-tool still working with the module through its interfaces. The
 * process has libp11-kit loaded, as GnuTLS programs do.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include <keyward/pkcs11-batch.h>

#include "harness.h"

#ifndef KWT_P11_ENV
#define KWT_P11_ENV ""
#endif

#define SLOT_MACHINE 0
#define N 50

static struct kwt_server server;
static char pin[64];
static void *module, *p11kit;
static CK_FUNCTION_LIST_PTR f;
static CK_KW_BATCH_FUNCTION_LIST *batch;
static CK_SESSION_HANDLE s; /* R/W, logged in, on the machine token */
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static int setup(void **state)
{
	CK_C_GetInterface get;
	CK_INTERFACE_PTR itf = NULL;

	(void)state;
	kwt_start_dev(&server);
	kwt_p11_env(&server, pin, sizeof pin);
	/*
	 * A host that uses p11-kit (GnuTLS, p11tool, ...) has its proxy's
	 * C_GetFunctionList in the global scope: the module's interfaces must
	 * still hand out the module's own list, not the proxy's.
	 */
	p11kit = dlopen("libp11-kit.so.0", RTLD_NOW | RTLD_GLOBAL);
	assert_non_null(p11kit);
	module = dlopen(KEYWARD_PKCS11_PATH, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(module);
	*(void **)&get = dlsym(module, "C_GetInterface");
	assert_non_null(get);
	/* the standard interface, as a PKCS#11 3.0 caller asks for it */
	assert_int_equal(get((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &itf, 0), CKR_OK);
	f = itf->pFunctionList;
	assert_int_equal(get((CK_UTF8CHAR_PTR)KW_P11_BATCH_INTERFACE, NULL, &itf, 0), CKR_OK);
	batch = itf->pFunctionList;
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(f->C_OpenSession(SLOT_MACHINE, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(dlclose(module), 0);
	dlclose(p11kit);
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

/* A P-256 or RSA-2048 key pair labelled label, signing as asked. */
static void gen_pair(const char *label, int rsa, CK_BBOOL sign, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_ULONG bits = 2048;
	CK_MECHANISM m = {rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pt[] = {{CKA_LABEL, (void *)label, strlen(label)},
			     rsa ? (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof bits}
				 : (CK_ATTRIBUTE){CKA_EC_PARAMS, p256, sizeof p256}};
	CK_ATTRIBUTE vt[] = {{CKA_LABEL, (void *)label, strlen(label)},
			     {CKA_SIGN, &sign, sizeof sign},
			     {CKA_DECRYPT, rsa && !sign ? &yes : &no, sizeof yes}};

	assert_int_equal(f->C_GenerateKeyPair(s, &m, pt, 2, vt, 3, pub, priv), CKR_OK);
}

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

/* Messages "message i", and room for their signatures. */
struct batch_bufs {
	CK_BYTE msg[N][32];
	CK_ULONG msg_lens[N];
	CK_BYTE sig[N][256];
	CK_ULONG sig_lens[N];
	CK_BYTE_PTR msgp[N], sigp[N];
};

static struct batch_bufs *bufs_new(void)
{
	struct batch_bufs *b = calloc(1, sizeof *b);

	assert_non_null(b);
	for (size_t i = 0; i < N; i++) {
		b->msg_lens[i] = (CK_ULONG)snprintf((char *)b->msg[i], sizeof b->msg[i], "message %zu", i);
		b->msgp[i] = b->msg[i];
		b->sigp[i] = b->sig[i];
		b->sig_lens[i] = sizeof b->sig[i];
	}
	return b;
}

/* Whether sig over msg verifies with SHA-256 under k (RSA: padding; EC: r||s). */
static int verifies(EVP_PKEY *k, int padding, const CK_BYTE *msg, size_t msg_len, const CK_BYTE *sig, size_t sig_len)
{
	unsigned char digest[32];

	SHA256(msg, msg_len, digest);
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
		unsigned char *spki = NULL;
		int len = i2d_PUBKEY(k, &spki), ok = kwt_ecdsa_verifies(spki, (size_t)len, digest, 32, sig, sig_len);
		OPENSSL_free(spki);
		return ok;
	}
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
	int ok = ctx && EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, padding) == 1 &&
		 EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
		 (padding != RSA_PKCS1_PSS_PADDING || EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32) == 1) &&
		 EVP_PKEY_verify(ctx, sig, sig_len, digest, 32) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

static void test_interfaces(void **state)
{
	CK_C_GetInterfaceList list_fn;
	CK_C_GetInterface get;
	CK_C_GetFunctionList get_list;
	CK_FUNCTION_LIST_PTR std = NULL;
	CK_INTERFACE list[4], *itf = NULL;
	CK_ULONG count = 0;
	CK_VERSION v240 = {2, 40}, v30 = {3, 0}, v10 = {1, 0};

	(void)state;
	*(void **)&list_fn = dlsym(module, "C_GetInterfaceList");
	*(void **)&get = dlsym(module, "C_GetInterface");
	*(void **)&get_list = dlsym(module, "C_GetFunctionList");
	assert_non_null(list_fn);
	assert_int_equal(get_list(&std), CKR_OK);

	assert_int_equal(list_fn(NULL, &count), CKR_OK);
	assert_int_equal(count, 3);
	count = 2;
	assert_int_equal(list_fn(list, &count), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(count, 3);
	count = 4;
	assert_int_equal(list_fn(list, &count), CKR_OK);
	assert_int_equal(count, 3);
	/* "PKCS 11" 3.0 (a CK_FUNCTION_LIST_3_0, test_pkcs11_conform checks it), 2.40, "Keyward Batch" */
	assert_string_equal((const char *)list[0].pInterfaceName, "PKCS 11");
	assert_int_equal(((CK_VERSION *)list[0].pFunctionList)->major, 3);
	assert_int_equal(((CK_VERSION *)list[0].pFunctionList)->minor, 0);
	assert_string_equal((const char *)list[1].pInterfaceName, "PKCS 11");
	assert_ptr_equal(list[1].pFunctionList, std);
	assert_string_equal((const char *)list[2].pInterfaceName, KW_P11_BATCH_INTERFACE);
	assert_int_equal(list_fn(list, NULL), CKR_ARGUMENTS_BAD);

	/* no name: the default, the standard interface in its newest version */
	assert_int_equal(get(NULL, NULL, &itf, 0), CKR_OK);
	assert_ptr_equal(itf->pFunctionList, list[0].pFunctionList);
	assert_int_equal(get((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &itf, 0), CKR_OK);
	assert_ptr_equal(itf->pFunctionList, list[0].pFunctionList);
	assert_int_equal(get((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &itf, 0), CKR_OK);
	assert_ptr_equal(itf->pFunctionList, std);
	/* versions and flags this module does not offer */
	assert_int_equal(get((CK_UTF8CHAR_PTR) "PKCS 11", &v10, &itf, 0), CKR_ARGUMENTS_BAD);
	assert_int_equal(get((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &itf, CKF_INTERFACE_FORK_SAFE), CKR_ARGUMENTS_BAD);
	assert_int_equal(get((CK_UTF8CHAR_PTR) "Vendor Nobody", NULL, &itf, 0), CKR_ARGUMENTS_BAD);
	assert_int_equal(get(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
	assert_int_equal(get((CK_UTF8CHAR_PTR)KW_P11_BATCH_INTERFACE, &v10, &itf, 0), CKR_OK);
	assert_ptr_equal(itf->pFunctionList, batch);
	assert_int_equal(batch->version.major, KW_P11_BATCH_VERSION_MAJOR);
	assert_int_equal(batch->version.minor, KW_P11_BATCH_VERSION_MINOR);
}

static void test_sign_batch_ecdsa(void **state)
{
	CK_MECHANISM hashed = {CKM_ECDSA_SHA256, NULL, 0}, raw = {CKM_ECDSA, NULL, 0};
	struct batch_bufs *b = bufs_new();
	CK_BYTE digests[N][32];
	CK_BYTE_PTR digestp[N];
	CK_ULONG digest_lens[N];
	CK_OBJECT_HANDLE pub, priv;
	EVP_PKEY *k;

	(void)state;
	gen_pair("batch-ec", 0, CK_TRUE, &pub, &priv);
	k = public_key(pub);
	/* messages, hashed in the module */
	assert_int_equal(batch->C_KW_SignBatch(s, &hashed, priv, N, b->msgp, b->msg_lens, b->sigp, b->sig_lens),
			 CKR_OK);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(b->sig_lens[i], 64);
		if (!verifies(k, 0, b->msg[i], b->msg_lens[i], b->sig[i], b->sig_lens[i]))
			fail_msg("ECDSA-SHA256 signature %zu does not verify", i);
		if (i + 1 < N)
			assert_false(verifies(k, 0, b->msg[i + 1], b->msg_lens[i + 1], b->sig[i], b->sig_lens[i]));
	}
	/* digests, as CKM_ECDSA takes them */
	for (size_t i = 0; i < N; i++) {
		SHA256(b->msg[i], b->msg_lens[i], digests[i]);
		digestp[i] = digests[i];
		digest_lens[i] = 32;
		b->sig_lens[i] = sizeof b->sig[i];
	}
	assert_int_equal(batch->C_KW_SignBatch(s, &raw, priv, N, digestp, digest_lens, b->sigp, b->sig_lens), CKR_OK);
	for (size_t i = 0; i < N; i++)
		if (!verifies(k, 0, b->msg[i], b->msg_lens[i], b->sig[i], b->sig_lens[i]))
			fail_msg("ECDSA signature %zu does not verify", i);
	EVP_PKEY_free(k);
	free(b);
}

static void test_sign_batch_rsa(void **state)
{
	CK_RSA_PKCS_PSS_PARAMS pp = {CKM_SHA256, CKG_MGF1_SHA256, 32};
	CK_MECHANISM pkcs1 = {CKM_SHA256_RSA_PKCS, NULL, 0}, pss = {CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof pp};
	struct batch_bufs *b = bufs_new();
	CK_OBJECT_HANDLE pub, priv;
	EVP_PKEY *k;

	(void)state;
	gen_pair("batch-rsa", 1, CK_TRUE, &pub, &priv);
	k = public_key(pub);
	assert_int_equal(batch->C_KW_SignBatch(s, &pkcs1, priv, N, b->msgp, b->msg_lens, b->sigp, b->sig_lens), CKR_OK);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(b->sig_lens[i], 256);
		if (!verifies(k, RSA_PKCS1_PADDING, b->msg[i], b->msg_lens[i], b->sig[i], b->sig_lens[i]))
			fail_msg("SHA256-RSA-PKCS signature %zu does not verify", i);
	}
	for (size_t i = 0; i < N; i++)
		b->sig_lens[i] = sizeof b->sig[i];
	assert_int_equal(batch->C_KW_SignBatch(s, &pss, priv, N, b->msgp, b->msg_lens, b->sigp, b->sig_lens), CKR_OK);
	for (size_t i = 0; i < N; i++)
		if (!verifies(k, RSA_PKCS1_PSS_PADDING, b->msg[i], b->msg_lens[i], b->sig[i], b->sig_lens[i]))
			fail_msg("SHA256-RSA-PKCS-PSS signature %zu does not verify", i);
	EVP_PKEY_free(k);
	free(b);
}

static void test_sign_batch_refusals(void **state)
{
	CK_MECHANISM ecdsa = {CKM_ECDSA_SHA256, NULL, 0}, rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	struct batch_bufs *b = bufs_new();
	CK_OBJECT_HANDLE pub, priv, npub, npriv;
	CK_BYTE one_sig[64];
	CK_ULONG one_len = sizeof one_sig;
	EVP_PKEY *k;

	(void)state;
	gen_pair("batch-refused", 0, CK_TRUE, &pub, &priv);
	gen_pair("batch-nosign", 1, CK_FALSE, &npub, &npriv);
	k = public_key(pub);
	/* the length query: every length set, nothing signed */
	assert_int_equal(batch->C_KW_SignBatch(s, &ecdsa, priv, 3, b->msgp, b->msg_lens, NULL, b->sig_lens), CKR_OK);
	assert_int_equal(b->sig_lens[0], 64);
	assert_int_equal(b->sig_lens[2], 64);
	/* one buffer too small */
	b->sig_lens[1] = 10;
	assert_int_equal(batch->C_KW_SignBatch(s, &ecdsa, priv, 3, b->msgp, b->msg_lens, b->sigp, b->sig_lens),
			 CKR_BUFFER_TOO_SMALL);
	assert_int_equal(b->sig_lens[1], 64);
	/* counts out of range, missing arrays */
	assert_int_equal(batch->C_KW_SignBatch(s, &ecdsa, priv, 0, b->msgp, b->msg_lens, b->sigp, b->sig_lens),
			 CKR_ARGUMENTS_BAD);
	assert_int_equal(batch->C_KW_SignBatch(s, &ecdsa, priv, KW_P11_BATCH_MAX + 1, b->msgp, b->msg_lens, b->sigp,
					       b->sig_lens),
			 CKR_ARGUMENTS_BAD);
	assert_int_equal(batch->C_KW_SignBatch(s, &ecdsa, priv, 3, NULL, b->msg_lens, b->sigp, b->sig_lens),
			 CKR_ARGUMENTS_BAD);
	/* a key that may not sign, a mechanism that does not fit, a bad handle */
	assert_int_equal(batch->C_KW_SignBatch(s, &rsa, npriv, 3, b->msgp, b->msg_lens, b->sigp, b->sig_lens),
			 CKR_KEY_FUNCTION_NOT_PERMITTED);
	assert_int_equal(batch->C_KW_SignBatch(s, &rsa, priv, 3, b->msgp, b->msg_lens, b->sigp, b->sig_lens),
			 CKR_KEY_TYPE_INCONSISTENT);
	assert_int_equal(batch->C_KW_SignBatch(s, &ecdsa, 0xdead, 3, b->msgp, b->msg_lens, b->sigp, b->sig_lens),
			 CKR_KEY_HANDLE_INVALID);
	assert_int_equal(batch->C_KW_SignBatch(s + 100, &ecdsa, priv, 3, b->msgp, b->msg_lens, b->sigp, b->sig_lens),
			 CKR_SESSION_HANDLE_INVALID);

	/* a C_Sign in progress on the session is left alone */
	assert_int_equal(f->C_SignInit(s, &ecdsa, priv), CKR_OK);
	for (size_t i = 0; i < 3; i++)
		b->sig_lens[i] = sizeof b->sig[i];
	assert_int_equal(batch->C_KW_SignBatch(s, &ecdsa, priv, 3, b->msgp, b->msg_lens, b->sigp, b->sig_lens), CKR_OK);
	assert_int_equal(f->C_Sign(s, b->msg[7], b->msg_lens[7], one_sig, &one_len), CKR_OK);
	assert_true(verifies(k, 0, b->msg[7], b->msg_lens[7], one_sig, one_len));
	assert_true(verifies(k, 0, b->msg[2], b->msg_lens[2], b->sig[2], b->sig_lens[2]));

	/* logged out: refused */
	assert_int_equal(f->C_Logout(s), CKR_OK);
	assert_int_equal(batch->C_KW_SignBatch(s, &ecdsa, priv, 3, b->msgp, b->msg_lens, b->sigp, b->sig_lens),
			 CKR_USER_NOT_LOGGED_IN);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
	EVP_PKEY_free(k);
	free(b);
}

/* pkcs11-tool (OpenSC 0.23 asks C_GetInterface for "PKCS 11" first) still drives the module. */
static void test_pkcs11_tool(void **state)
{
	char *out = NULL;
	int rc;

	(void)state;
	rc = kwt_run(server.dir, &out, KWT_P11_ENV "KEYWARD_CONF='%s' pkcs11-tool --module '" KEYWARD_PKCS11_PATH
						"' --login --pin '%s' --list-objects --type privkey",
		     server.conf, pin);
	if (rc != 0)
		fail_msg("pkcs11-tool: exit %d:\n%s", rc, out ? out : "");
	if (!strstr(out, "batch-rsa"))
		fail_msg("pkcs11-tool does not list the keys made here:\n%s", out);
	free(out);
	rc = kwt_run(server.dir, &out, KWT_P11_ENV "pkcs11-tool --module '" KEYWARD_PKCS11_PATH "' --show-info");
	/* through the default interface, "PKCS 11" 3.0 */
	if (rc != 0 || !strstr(out, "Cryptoki version 3.0"))
		fail_msg("pkcs11-tool --show-info: exit %d:\n%s", rc, out ? out : "");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_interfaces),
		cmocka_unit_test(test_sign_batch_ecdsa),
		cmocka_unit_test(test_sign_batch_rsa),
		cmocka_unit_test(test_sign_batch_refusals),
		cmocka_unit_test(test_pkcs11_tool),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
