/*
 * keyward-pkcs11.so loaded, used, finalized and loaded again several
 * times in one process, against a real keywardd (development mode), as a
 * host that opens and closes its PKCS#11 module more than once does
 * (keyward-ca serve makes its OCSP signer's key on a first load, then
 * opens the token again to sign):
 *
 *  - dlopen + C_GetFunctionList: C_Initialize, login, a signature checked
 *    with OpenSSL, C_Finalize (with the session still open), dlclose; and
 *    C_Finalize then C_Initialize again without unloading;
 *  - libp11 (PKCS11_CTX_load ... PKCS11_CTX_unload), on the module itself
 *    and through keyward-ca's key filter (keyward-ca-keyfilter.so), which
 *    is how keyward-ca loads it.
 *
 * Each round signs, so a module whose state did not survive the round
 * before fails here; under the sanitizers a use after free or double free
 * is reported.
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
#include <libp11.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "harness.h"

#define SLOT_MACHINE 0
#define LABEL "reload"
#define ROUNDS 5

static struct kwt_server server;
static char pin[64];
static unsigned char spki[512];
static size_t spki_len;

/* The module's list after dlopen (its handle in *dl). */
static CK_FUNCTION_LIST_PTR load(void **dl)
{
	CK_C_GetFunctionList get;
	CK_FUNCTION_LIST_PTR f = NULL;

	*dl = dlopen(KEYWARD_PKCS11_PATH, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(*dl);
	*(void **)&get = dlsym(*dl, "C_GetFunctionList");
	assert_non_null(get);
	assert_int_equal(get(&f), CKR_OK);
	return f;
}

/* A R/W session on the machine token, logged in. */
static CK_SESSION_HANDLE login(CK_FUNCTION_LIST_PTR f)
{
	CK_SESSION_HANDLE s;
	CK_RV rv;

	assert_int_equal(f->C_OpenSession(SLOT_MACHINE, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
	rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
	return s;
}

/* Signs "round N" with the key LABEL through f and checks the signature. */
static void sign_round(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, int round)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, LABEL, strlen(LABEL)}};
	CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
	CK_OBJECT_HANDLE key;
	CK_ULONG n = 0, sig_len;
	CK_BYTE sig[128], msg[32], digest[SHA256_DIGEST_LENGTH];
	size_t len = (size_t)snprintf((char *)msg, sizeof msg, "round %d", round);

	assert_int_equal(f->C_FindObjectsInit(s, t, 2), CKR_OK);
	assert_int_equal(f->C_FindObjects(s, &key, 1, &n), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(s), CKR_OK);
	assert_int_equal(n, 1);
	assert_int_equal(f->C_SignInit(s, &m, key), CKR_OK);
	sig_len = sizeof sig;
	assert_int_equal(f->C_Sign(s, msg, len, sig, &sig_len), CKR_OK);
	SHA256(msg, len, digest);
	if (!kwt_ecdsa_verifies(spki, spki_len, digest, sizeof digest, sig, sig_len))
		fail_msg("round %d: the signature does not verify", round);
}

static int setup(void **state)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_BBOOL yes = CK_TRUE;
	CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pt[] = {
		{CKA_LABEL, LABEL, strlen(LABEL)}, {CKA_EC_PARAMS, p256, sizeof p256}, {CKA_TOKEN, &yes, sizeof yes}};
	CK_ATTRIBUTE vt[] = {
		{CKA_LABEL, LABEL, strlen(LABEL)}, {CKA_SIGN, &yes, sizeof yes}, {CKA_TOKEN, &yes, sizeof yes}};
	CK_ATTRIBUTE pk = {CKA_PUBLIC_KEY_INFO, spki, sizeof spki};
	CK_OBJECT_HANDLE pub, priv;
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE s;
	void *dl;

	(void)state;
	kwt_start_dev(&server);
	kwt_p11_env(&server, pin, sizeof pin);
	f = load(&dl);
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	s = login(f);
	assert_int_equal(f->C_GenerateKeyPair(s, &m, pt, 3, vt, 3, &pub, &priv), CKR_OK);
	assert_int_equal(f->C_GetAttributeValue(s, pub, &pk, 1), CKR_OK);
	spki_len = pk.ulValueLen;
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(dlclose(dl), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

/* dlopen, initialize, sign, finalize with the session open, dlclose; ROUNDS times. */
static void test_dlopen_rounds(void **state)
{
	(void)state;
	for (int i = 0; i < ROUNDS; i++) {
		void *dl;
		CK_FUNCTION_LIST_PTR f = load(&dl);

		assert_int_equal(f->C_Initialize(NULL), CKR_OK);
		sign_round(f, login(f), i);
		assert_int_equal(f->C_Finalize(NULL), CKR_OK);
		assert_int_equal(dlclose(dl), 0);
	}
}

/* One load, C_Initialize and C_Finalize ROUNDS times (with and without a session left open). */
static void test_reinitialize(void **state)
{
	void *dl;
	CK_FUNCTION_LIST_PTR f = load(&dl);

	(void)state;
	for (int i = 0; i < ROUNDS; i++) {
		CK_SESSION_HANDLE s;

		assert_int_equal(f->C_Initialize(NULL), CKR_OK);
		s = login(f);
		sign_round(f, s, i);
		if (i % 2)
			assert_int_equal(f->C_CloseSession(s), CKR_OK);
		assert_int_equal(f->C_Finalize(NULL), CKR_OK);
		/* finalized: nothing answers but C_Initialize */
		assert_int_equal(f->C_OpenSession(SLOT_MACHINE, CKF_SERIAL_SESSION, NULL, NULL, &s),
				 CKR_CRYPTOKI_NOT_INITIALIZED);
	}
	assert_int_equal(dlclose(dl), 0);
}

/* The token "keyward machine" among libp11's slots; NULL if none. */
static PKCS11_SLOT *machine_slot(PKCS11_SLOT *slots, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (slots[i].token && !strcmp(slots[i].token->label, "keyward machine"))
			return &slots[i];
	return NULL;
}

/* libp11 on module (the module or the key filter): load, log in, sign with the key as an EVP_PKEY, unload. */
static void libp11_round(const char *module, int round)
{
	PKCS11_CTX *ctx = PKCS11_CTX_new();
	PKCS11_SLOT *slots = NULL, *slot;
	PKCS11_KEY *keys = NULL, *key = NULL;
	unsigned n_slots = 0, n_keys = 0;
	EVP_PKEY *priv, *pub;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char sig[256], msg[32];
	size_t sig_len = sizeof sig, len = (size_t)snprintf((char *)msg, sizeof msg, "libp11 round %d", round);
	const unsigned char *p = spki;

	assert_non_null(ctx);
	assert_non_null(md);
	if (PKCS11_CTX_load(ctx, module) != 0)
		fail_msg("round %d: PKCS11_CTX_load %s failed: %s", round, module,
			 ERR_reason_error_string(ERR_get_error()));
	assert_int_equal(PKCS11_enumerate_slots(ctx, &slots, &n_slots), 0);
	slot = machine_slot(slots, n_slots);
	assert_non_null(slot);
	assert_int_equal(PKCS11_open_session(slot, 1), 0);
	assert_int_equal(PKCS11_login(slot, 0, pin), 0);
	assert_int_equal(PKCS11_enumerate_keys(slot->token, &keys, &n_keys), 0);
	for (unsigned i = 0; i < n_keys; i++)
		if (keys[i].label && !strcmp(keys[i].label, LABEL))
			key = &keys[i];
	assert_non_null(key);
	priv = PKCS11_get_private_key(key);
	assert_non_null(priv);
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, priv), 1);
	assert_int_equal(EVP_DigestSign(md, sig, &sig_len, msg, len), 1);
	EVP_MD_CTX_free(md);
	md = EVP_MD_CTX_new();
	pub = d2i_PUBKEY(NULL, &p, (long)spki_len);
	assert_non_null(pub);
	if (!md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) != 1 ||
	    EVP_DigestVerify(md, sig, sig_len, msg, len) != 1)
		fail_msg("libp11 round %d: the signature does not verify", round);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(priv);
	PKCS11_release_all_slots(ctx, slots, n_slots);
	PKCS11_CTX_unload(ctx);
	PKCS11_CTX_free(ctx);
	ERR_clear_error();
}

static void test_libp11_rounds(void **state)
{
	(void)state;
	for (int i = 0; i < ROUNDS; i++)
		libp11_round(KEYWARD_PKCS11_PATH, i);
}

/* As keyward-ca loads the module: libp11 on the key filter, which opens the module itself. */
static void test_libp11_keyfilter_rounds(void **state)
{
	(void)state;
	assert_int_equal(setenv("KEYWARD_CA_PKCS11_MODULE", KEYWARD_PKCS11_PATH, 1), 0);
	for (int i = 0; i < ROUNDS; i++)
		libp11_round(KEYWARD_CA_KEYFILTER_PATH, i);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dlopen_rounds),
		cmocka_unit_test(test_reinitialize),
		cmocka_unit_test(test_libp11_rounds),
		cmocka_unit_test(test_libp11_keyfilter_rounds),
	};

	return cmocka_run_group_tests_name("integration_pkcs11_reload", tests, setup, teardown);
}
