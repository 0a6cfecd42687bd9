/*
 * keyward-pkcs11.so against PKCS#11's letter (issue 16), with a real
 * keywardd (development mode; config mode for the lockout): the module is
 * loaded here with dlopen, and run by the real peers pkcs11-tool and
 * p11tool.
 *
 *   return codes   C_GetFunctionStatus / C_CancelFunction, C_Login for
 *                  every user type and state, the token's PIN flags
 *                  (wrong PIN, and the HSM locking the credential out),
 *                  an operation ending after any error but
 *                  CKR_BUFFER_TOO_SMALL and after a single-part call
 *   serials        a serial number per token, as derived (SHA-256 of
 *                  partition, key space, owner), stable, and picking its
 *                  token in a pkcs11:serial= URI (p11tool, pkcs11-tool)
 *   PKCS#11 3.0    the "PKCS 11" 3.0 list, full, with C_LoginUser,
 *                  C_SessionCancel, C_GetInfo saying 3.0 (pkcs11-tool
 *                  --list-interfaces)
 *   digest/verify  SHA-1/2 digests equal OpenSSL's; verification of RSA
 *                  PKCS#1 v1.5, PSS and ECDSA, raw and hash-and-sign,
 *                  single- and multi-part; pkcs11-tool --test, --test-ec,
 *                  --verify
 *   Ed25519        CKM_EDDSA with and without CK_EDDSA_PARAMS (pure
 *                  Ed25519; ph and ctx refused), keys made and used with
 *                  pkcs11-tool, exported with p11tool, verified by openssl
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include <keyward/pkcs11-3.0.h>

#include "harness.h"

#ifndef KWT_P11_ENV
#define KWT_P11_ENV ""
#endif
#define P11TOOL KWT_P11_ENV "pkcs11-tool --module '" KEYWARD_PKCS11_PATH "' "
#define GNUTLS_P11TOOL KWT_P11_ENV "p11tool --provider '" KEYWARD_PKCS11_PATH "' "
#define run(out, ...) kwt_run(work, out, __VA_ARGS__)
#define run_ok(what, ...) kwt_run_ok(work, what, __VA_ARGS__)

#define SLOT_MACHINE 0
#define SLOT_SHARED 2
#define PIN_FLAGS (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED)
/* More raw data than a raw sign operation takes (the module's P11_RAW_DATA_MAX is 1024). */
#define TOO_BIG 1100

static struct kwt_server server;
static char work[300], pin[64], machine_id[400];
static void *module;
static CK_FUNCTION_LIST_PTR f;
static CK_C_GetInterface get_interface;
static CK_BBOOL yes = CK_TRUE;

static int setup(void **state)
{
	(void)state;
	kwt_start_dev(&server);
	kwt_p11_env(&server, pin, sizeof pin);
	snprintf(machine_id, sizeof machine_id, "%s/machine-id", server.dir);
	assert_int_equal(setenv("KWT_PIN", pin, 1), 0);
	snprintf(work, sizeof work, "%s/p11c", server.dir);
	assert_int_equal(mkdir(work, 0700), 0);
	module = dlopen(KEYWARD_PKCS11_PATH, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(module);
	CK_C_GetFunctionList get_list;
	*(void **)&get_list = dlsym(module, "C_GetFunctionList");
	*(void **)&get_interface = dlsym(module, "C_GetInterface");
	assert_non_null(get_list);
	assert_non_null(get_interface);
	assert_int_equal(get_list(&f), CKR_OK);
	return 0;
}

/* After each test, also a failed one: the module finalized, the environment as setup left it. */
static int test_teardown(void **state)
{
	(void)state;
	f->C_Finalize(NULL);
	setenv("KEYWARD_CONF", server.conf, 1);
	setenv("KEYWARD_MACHINE_ID_FILE", machine_id, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(dlclose(module), 0);
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

/* C_Initialize and a session on slot, R/W if rw, logged in if login. */
static CK_SESSION_HANDLE start(CK_SLOT_ID slot, int rw, int login)
{
	CK_SESSION_HANDLE s;

	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(f->C_OpenSession(slot, CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0), NULL, NULL, &s),
			 CKR_OK);
	if (login)
		assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
	return s;
}

static CK_FLAGS token_flags(CK_SLOT_ID slot)
{
	CK_TOKEN_INFO ti;

	assert_int_equal(f->C_GetTokenInfo(slot, &ti), CKR_OK);
	return ti.flags;
}

/* A P-256 or RSA-2048 pair labelled label (session objects: they go with the session). */
static void gen_pair(CK_SESSION_HANDLE s, int rsa, const char *label, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_BBOOL no = CK_FALSE;
	CK_ULONG bits = 2048;
	CK_MECHANISM m = {rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pt[] = {{CKA_TOKEN, &no, sizeof no},
			     {CKA_LABEL, (void *)label, strlen(label)},
			     {CKA_ENCRYPT, rsa ? &yes : &no, sizeof yes},
			     rsa ? (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof bits}
				 : (CK_ATTRIBUTE){CKA_EC_PARAMS, p256, sizeof p256}};
	CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &no, sizeof no},
			     {CKA_LABEL, (void *)label, strlen(label)},
			     {CKA_SIGN, &yes, sizeof yes},
			     {CKA_DECRYPT, rsa ? &yes : &no, sizeof yes}};

	assert_int_equal(f->C_GenerateKeyPair(s, &m, pt, 4, vt, 4, pub, priv), CKR_OK);
}

/* ---- 1. return codes ---- */

static void test_not_parallel(void **state)
{
	CK_SESSION_HANDLE s;

	(void)state;
	assert_int_equal(f->C_GetFunctionStatus(1), CKR_CRYPTOKI_NOT_INITIALIZED);
	s = start(SLOT_MACHINE, 0, 0);
	assert_int_equal(f->C_GetFunctionStatus(s), CKR_FUNCTION_NOT_PARALLEL);
	assert_int_equal(f->C_CancelFunction(s), CKR_FUNCTION_NOT_PARALLEL);
	assert_int_equal(f->C_GetFunctionStatus(s + 100), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_CancelFunction(s + 100), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

static void test_login_codes(void **state)
{
	static CK_BYTE digest[32] = {1, 2, 3};
	CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
	CK_SESSION_HANDLE ro, rw, other;
	CK_OBJECT_HANDLE pub, priv;
	CK_BYTE sig[64];
	CK_ULONG len = sizeof sig;

	(void)state;
	ro = start(SLOT_MACHINE, 0, 0);
	assert_int_equal(f->C_OpenSession(SLOT_MACHINE, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw), CKR_OK);
	assert_int_equal(token_flags(SLOT_MACHINE) & PIN_FLAGS, 0);

	/* no security officer: the state's codes first, then no SO PIN is right */
	assert_int_equal(f->C_Login(ro, CKU_SO, (CK_UTF8CHAR_PTR) "so", 2), CKR_SESSION_READ_ONLY_EXISTS);
	assert_int_equal(f->C_CloseSession(ro), CKR_OK);
	assert_int_equal(f->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR) "so", 2), CKR_PIN_INCORRECT);
	assert_int_equal(f->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_PIN_INCORRECT);
	assert_int_equal(token_flags(SLOT_MACHINE) & PIN_FLAGS, 0); /* not the user PIN's count */
	assert_int_equal(f->C_Login(rw, 7, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_USER_TYPE_INVALID);
	/* a context-specific login needs an operation that asks for it */
	assert_int_equal(f->C_Login(rw, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, strlen(pin)),
			 CKR_OPERATION_NOT_INITIALIZED);

	/* a wrong user PIN: CKF_USER_PIN_COUNT_LOW on every token until a login succeeds */
	assert_int_equal(f->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "not-the-pin", 11), CKR_PIN_INCORRECT);
	assert_int_equal(token_flags(SLOT_MACHINE) & PIN_FLAGS, CKF_USER_PIN_COUNT_LOW);
	assert_int_equal(token_flags(SLOT_SHARED) & PIN_FLAGS, CKF_USER_PIN_COUNT_LOW);
	assert_int_equal(f->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
	assert_int_equal(token_flags(SLOT_MACHINE) & PIN_FLAGS, 0);

	/* logged in: twice is CKR_USER_ALREADY_LOGGED_IN, on any session; the SO is "another" user */
	assert_int_equal(f->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_USER_ALREADY_LOGGED_IN);
	assert_int_equal(f->C_OpenSession(SLOT_SHARED, CKF_SERIAL_SESSION, NULL, NULL, &other), CKR_OK);
	assert_int_equal(f->C_Login(other, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_USER_ALREADY_LOGGED_IN);
	assert_int_equal(f->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_USER_ANOTHER_ALREADY_LOGGED_IN);

	/* a context-specific login during a signing: the PIN is checked, a wrong one logs nobody out */
	gen_pair(rw, 0, "ctx", &pub, &priv);
	assert_int_equal(f->C_SignInit(rw, &ecdsa, priv), CKR_OK);
	assert_int_equal(f->C_Login(rw, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR) "wrong", 5), CKR_PIN_INCORRECT);
	assert_int_equal(f->C_Login(rw, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
	assert_int_equal(f->C_Sign(rw, digest, sizeof digest, sig, &len), CKR_OK);
	assert_int_equal(f->C_Logout(rw), CKR_OK);
	assert_int_equal(f->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_SESSION_READ_ONLY_EXISTS);
	assert_int_equal(f->C_CloseSession(other), CKR_OK);
	assert_int_equal(f->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_PIN_INCORRECT);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

/* After every error but CKR_BUFFER_TOO_SMALL, and after a single-part call, the operation is over. */
static void test_operation_ends(void **state)
{
	static CK_BYTE msg[] = "message", digest[32] = {7};
	CK_MECHANISM ecdsa = {CKM_ECDSA_SHA256, NULL, 0}, raw = {CKM_ECDSA, NULL, 0};
	CK_MECHANISM sha256 = {CKM_SHA256, NULL, 0}, rsa_pkcs = {CKM_RSA_PKCS, NULL, 0};
	CK_OBJECT_HANDLE pub, priv, rpub, rpriv;
	CK_BYTE sig[64], out[256], big[TOO_BIG];
	CK_ULONG len;
	CK_SESSION_HANDLE s = start(SLOT_MACHINE, 1, 1);

	(void)state;
	memset(big, 'x', sizeof big);
	gen_pair(s, 0, "ends-ec", &pub, &priv);
	gen_pair(s, 1, "ends-rsa", &rpub, &rpriv);

	/* C_Sign: a missing length pointer ends it */
	assert_int_equal(f->C_SignInit(s, &ecdsa, priv), CKR_OK);
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, NULL), CKR_ARGUMENTS_BAD);
	len = sizeof sig;
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	/* C_SignUpdate with no data, C_SignFinal with no length */
	assert_int_equal(f->C_SignInit(s, &ecdsa, priv), CKR_OK);
	assert_int_equal(f->C_SignUpdate(s, NULL, 5), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_SignFinal(s, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_SignInit(s, &ecdsa, priv), CKR_OK);
	assert_int_equal(f->C_SignFinal(s, sig, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_SignInit(s, &ecdsa, priv), CKR_OK); /* not CKR_OPERATION_ACTIVE */
	/* CKR_BUFFER_TOO_SMALL and the length query keep it; the signature ends it */
	len = 10;
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, &len), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, NULL, &len), CKR_OK);
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, &len), CKR_OK);
	assert_int_equal(f->C_SignUpdate(s, msg, 1), CKR_OPERATION_NOT_INITIALIZED);
	/* raw data too long: CKR_DATA_LEN_RANGE ends it */
	assert_int_equal(f->C_SignInit(s, &raw, priv), CKR_OK);
	assert_int_equal(f->C_SignUpdate(s, big, sizeof big), CKR_DATA_LEN_RANGE);
	assert_int_equal(f->C_SignUpdate(s, digest, sizeof digest), CKR_OPERATION_NOT_INITIALIZED);

	/* C_Verify: no signature pointer, a signature of the wrong length, a valid signature */
	assert_int_equal(f->C_SignInit(s, &ecdsa, priv), CKR_OK);
	len = sizeof sig;
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, &len), CKR_OK);
	assert_int_equal(f->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
	assert_int_equal(f->C_Verify(s, msg, sizeof msg, NULL, len), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
	assert_int_equal(f->C_VerifyUpdate(s, NULL, 3), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_VerifyFinal(s, sig, len), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
	assert_int_equal(f->C_Verify(s, msg, sizeof msg, sig, len - 1), CKR_SIGNATURE_LEN_RANGE);
	assert_int_equal(f->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
	assert_int_equal(f->C_Verify(s, msg, sizeof msg, sig, len), CKR_OK);
	assert_int_equal(f->C_VerifyUpdate(s, msg, 1), CKR_OPERATION_NOT_INITIALIZED);

	/* digests: C_DigestKey's refusal, a missing length pointer; a short buffer keeps it */
	assert_int_equal(f->C_DigestInit(s, &sha256), CKR_OK);
	assert_int_equal(f->C_DigestKey(s, priv), CKR_KEY_INDIGESTIBLE);
	len = sizeof out;
	assert_int_equal(f->C_DigestFinal(s, out, &len), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_DigestInit(s, &sha256), CKR_OK);
	assert_int_equal(f->C_Digest(s, msg, sizeof msg, out, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_DigestInit(s, &sha256), CKR_OK);
	assert_int_equal(f->C_DigestUpdate(s, NULL, 1), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_DigestInit(s, &sha256), CKR_OK);
	len = 5;
	assert_int_equal(f->C_Digest(s, msg, sizeof msg, out, &len), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(len, 32);
	assert_int_equal(f->C_Digest(s, msg, sizeof msg, out, &len), CKR_OK);
	assert_int_equal(f->C_DigestUpdate(s, msg, 1), CKR_OPERATION_NOT_INITIALIZED);

	/* encryption and decryption: a missing output length ends them */
	assert_int_equal(f->C_EncryptInit(s, &rsa_pkcs, rpub), CKR_OK);
	assert_int_equal(f->C_EncryptUpdate(s, msg, sizeof msg, out, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_EncryptInit(s, &rsa_pkcs, rpub), CKR_OK);
	assert_int_equal(f->C_Encrypt(s, msg, sizeof msg, out, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_EncryptInit(s, &rsa_pkcs, rpub), CKR_OK);
	len = sizeof out;
	assert_int_equal(f->C_Encrypt(s, msg, sizeof msg, out, &len), CKR_OK);
	assert_int_equal(f->C_DecryptInit(s, &rsa_pkcs, rpriv), CKR_OK);
	assert_int_equal(f->C_DecryptUpdate(s, out, len, sig, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_DecryptInit(s, &rsa_pkcs, rpriv), CKR_OK);
	assert_int_equal(f->C_DecryptFinal(s, out, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_DecryptInit(s, &rsa_pkcs, rpriv), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

/* Client configuration `from` with its partition line naming partition instead, written to `to`. */
static void write_conf_for_partition(const char *from, const char *to, const char *partition)
{
	char *text = kwt_read_file(from, NULL), *line, *rest, out[4096];
	size_t used = 0;

	assert_non_null(text);
	for (line = strtok_r(text, "\n", &rest); line; line = strtok_r(NULL, "\n", &rest)) {
		if (!strncmp(line, "partition = ", 12))
			used += (size_t)snprintf(out + used, sizeof out - used, "partition = %s\n", partition);
		else
			used += (size_t)snprintf(out + used, sizeof out - used, "%s\n", line);
		assert_true(used < sizeof out);
	}
	kwt_write_file(to, out);
	free(text);
}

/*
 * The HSM locks a credential out after repeated failed authentications
 * (here: asking for a partition it is not of): C_Login answers
 * CKR_PIN_LOCKED and every token says CKF_USER_PIN_LOCKED, until a login
 * succeeds after the lockout.
 */
static void test_lockout_flags(void **state)
{
	struct kwt_server s = {0};
	char conf[400], wrong[400], saved[400];
	CK_SESSION_HANDLE h;
	unsigned char b[1];
	kw_client *c, *w;

	(void)state;
	snprintf(saved, sizeof saved, "%s", getenv("KEYWARD_CONF"));
	c = kwt_start_initialized(&s, "[lockout]\nmax_failures = 3\nwindow = 60\nduration = 3\n");
	kw_client_free(c);
	snprintf(conf, sizeof conf, "%s/p.conf", s.dir);
	snprintf(wrong, sizeof wrong, "%s/wrong.conf", s.dir);
	write_conf_for_partition(conf, wrong, "not-p");
	kwt_ok(kw_client_new(wrong, &w));
	for (int i = 0; i < 3; i++)
		assert_int_equal(kw_generate_random(w, b, 1), KW_ERR_AUTH);
	kw_client_free(w);

	assert_int_equal(setenv("KEYWARD_CONF", conf, 1), 0);
	h = start(SLOT_MACHINE, 0, 0);
	assert_int_equal(token_flags(SLOT_MACHINE) & PIN_FLAGS, 0);
	/* p's key file is not encrypted: any PIN opens it, the HSM refuses the credential */
	assert_int_equal(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_PIN_LOCKED);
	assert_int_equal(token_flags(SLOT_MACHINE) & PIN_FLAGS, CKF_USER_PIN_LOCKED);
	assert_int_equal(token_flags(SLOT_SHARED) & PIN_FLAGS, CKF_USER_PIN_LOCKED);
	sleep(4);
	assert_int_equal(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
	assert_int_equal(token_flags(SLOT_MACHINE) & PIN_FLAGS, 0);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(setenv("KEYWARD_CONF", saved, 1), 0);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

/*
 * The weak-algorithm policy, both ways. The development HSM keeps the
 * defaults: RSA-2048 keys and SHA-1 signatures (SSH's ssh-rsa still asks
 * for them). An HSM with [policy] rsa_min_bits = 3072 and sha1_signatures
 * = no refuses a 2048-bit key (CKR_KEY_SIZE_RANGE) and a SHA-1 signature
 * (CKR_MECHANISM_INVALID), and makes and uses a 3072-bit key with SHA-256.
 */
static CK_RV policy_pair(CK_SESSION_HANDLE s, CK_ULONG bits, CK_OBJECT_HANDLE *priv)
{
	CK_BBOOL no = CK_FALSE;
	CK_OBJECT_HANDLE pub;
	CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pt[] = {{CKA_TOKEN, &no, sizeof no}, {CKA_MODULUS_BITS, &bits, sizeof bits}};
	CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &no, sizeof no}, {CKA_SIGN, &yes, sizeof yes}};

	return f->C_GenerateKeyPair(s, &m, pt, 2, vt, 2, &pub, priv);
}

static CK_RV policy_sign(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE priv)
{
	CK_MECHANISM m = {mech, NULL, 0};
	CK_BYTE sig[512];
	CK_ULONG len = sizeof sig;
	CK_RV rv = f->C_SignInit(s, &m, priv);

	return rv ? rv : f->C_Sign(s, (CK_BYTE_PTR) "data", 4, sig, &len);
}

static void test_policy(void **state)
{
	struct kwt_server srv = {0};
	char conf[400], saved[400];
	CK_OBJECT_HANDLE priv;
	CK_SESSION_HANDLE h;
	kw_client *c;

	(void)state;
	h = start(SLOT_MACHINE, 1, 1);
	assert_int_equal(policy_pair(h, 2048, &priv), CKR_OK);
	assert_int_equal(policy_sign(h, CKM_SHA1_RSA_PKCS, priv), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);

	snprintf(saved, sizeof saved, "%s", getenv("KEYWARD_CONF"));
	c = kwt_start_initialized(&srv, "[policy]\nrsa_min_bits = 3072\nsha1_signatures = no\n");
	kw_client_free(c);
	snprintf(conf, sizeof conf, "%s/p.conf", srv.dir);
	assert_int_equal(setenv("KEYWARD_CONF", conf, 1), 0);
	h = start(SLOT_MACHINE, 1, 0);
	/* p's key file is not encrypted: any PIN opens it */
	assert_int_equal(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
	assert_int_equal(policy_pair(h, 2048, &priv), CKR_KEY_SIZE_RANGE);
	assert_int_equal(policy_pair(h, 3072, &priv), CKR_OK);
	assert_int_equal(policy_sign(h, CKM_SHA1_RSA_PKCS, priv), CKR_MECHANISM_INVALID);
	assert_int_equal(policy_sign(h, CKM_SHA256_RSA_PKCS, priv), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(setenv("KEYWARD_CONF", saved, 1), 0);
	kwt_stop(&srv);
	kwt_cleanup(&srv);
}

/*
 * The policy holds for a key leaving the HSM too: under [policy]
 * rsa_min_bits = 3072 an RSA-2048 public key (which the store takes in
 * for verifying) does not wrap an extractable key with RSA-OAEP
 * (KW_ERR_KEY_SIZE, naming the setting).
 */
static void test_policy_wrap(void **state)
{
	struct kwt_server srv = {0};
	struct kw_mechanism oaep = {.mech = KW_MECH_RSA_OAEP, .hash = KW_HASH_SHA256};
	kw_object *weak = NULL, *aes = NULL;
	unsigned char spki[600], *p = spki, wrapped[512];
	size_t len = sizeof wrapped;
	EVP_PKEY *rsa = EVP_RSA_gen(2048);
	int spki_len;
	kw_client *c;

	(void)state;
	assert_non_null(rsa);
	spki_len = i2d_PUBKEY(rsa, NULL);
	assert_true(spki_len > 0 && (size_t)spki_len <= sizeof spki);
	assert_int_equal(i2d_PUBKEY(rsa, &p), spki_len);
	EVP_PKEY_free(rsa);
	c = kwt_start_initialized(&srv, "[policy]\nrsa_min_bits = 3072\n");
	kwt_ok(kw_create_public_key(c, KWT_OWNER, "weak-wrap", spki, (size_t)spki_len, NULL, 0, KW_USAGE_WRAP, 0,
				    &weak));
	kwt_ok(kw_generate_key(c, KWT_OWNER, "leaving", KW_KEY_AES, 128, NULL, KW_GEN_EXTRACTABLE, 0, &aes, NULL));
	assert_int_equal(kw_wrap_key(c, kw_object_id(weak), kw_object_id(aes), &oaep, wrapped, &len), KW_ERR_KEY_SIZE);
	assert_non_null(strstr(kw_last_error(), "rsa_min_bits = 3072"));
	kw_object_free(weak);
	kw_object_free(aes);
	kw_client_free(c);
	kwt_stop(&srv);
	kwt_cleanup(&srv);
}

/* ---- 2. a serial number per token ---- */

/* Slot's serial number and owner (from its description "<space> <owner>"). */
static void slot_serial_owner(CK_SLOT_ID slot, char serial[17], char *owner, size_t size)
{
	CK_TOKEN_INFO ti;
	CK_SLOT_INFO si;
	char desc[65], *sp;

	assert_int_equal(f->C_GetTokenInfo(slot, &ti), CKR_OK);
	assert_int_equal(f->C_GetSlotInfo(slot, &si), CKR_OK);
	memcpy(serial, ti.serialNumber, 16);
	serial[16] = '\0';
	memcpy(desc, si.slotDescription, 64);
	desc[64] = '\0';
	for (size_t n = strlen(desc); n && desc[n - 1] == ' '; n--)
		desc[n - 1] = '\0';
	sp = strchr(desc, ' ');
	assert_non_null(sp);
	snprintf(owner, size, "%s", sp + 1);
}

/* The first 16 hex digits of SHA-256(partition NUL space NUL owner NUL): docs/keyward-pkcs11.8. */
static void expected_serial(const char *space, const char *owner, char out[17])
{
	unsigned char in[256], md[32];
	size_t n = 0;
	unsigned md_len = 0;

	n += (size_t)snprintf((char *)in, sizeof in, "dev") + 1;
	n += (size_t)snprintf((char *)in + n, sizeof in - n, "%s", space) + 1;
	n += (size_t)snprintf((char *)in + n, sizeof in - n, "%s", owner) + 1;
	assert_int_equal(EVP_Digest(in, n, md, &md_len, EVP_sha256(), NULL), 1);
	for (int i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void test_serials(void **state)
{
	static const char *spaces[] = {"machine", "user", "shared"};
	char serial[3][17], again[17], want[17], owner[100], path[400], *out = NULL;
	CK_ULONG n = 0;

	(void)state;
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	assert_int_equal(n, 3);
	for (CK_SLOT_ID i = 0; i < 3; i++) {
		slot_serial_owner(i, serial[i], owner, sizeof owner);
		expected_serial(spaces[i], owner, want);
		assert_string_equal(serial[i], want);
	}
	assert_string_not_equal(serial[0], serial[1]);
	assert_string_not_equal(serial[0], serial[2]);
	assert_string_not_equal(serial[1], serial[2]);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);

	/* the same after C_Initialize again; another machine's key spaces are other tokens, "shared" is one */
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	slot_serial_owner(0, again, owner, sizeof owner);
	assert_string_equal(again, serial[0]);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	snprintf(path, sizeof path, "%s/other-machine-id", work);
	kwt_write_file(path, "ffeeddccbbaa99887766554433221100\n");
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", path, 1), 0);
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	slot_serial_owner(0, again, owner, sizeof owner);
	assert_string_not_equal(again, serial[0]);
	slot_serial_owner(2, again, owner, sizeof owner);
	assert_string_equal(again, serial[2]);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", machine_id, 1), 0);

	/* the peers: pkcs11-tool and p11tool (other processes) show the same serials */
	out = run_ok("pkcs11-tool -L", P11TOOL "-L");
	for (int i = 0; i < 3; i++) {
		char line[80];

		snprintf(line, sizeof line, "serial num         : %s", serial[i]);
		assert_non_null(strstr(out, line));
	}
	free(out);
	out = run_ok("p11tool --list-tokens", GNUTLS_P11TOOL "--list-tokens");
	for (int i = 0; i < 3; i++) {
		char uri[120];

		snprintf(uri, sizeof uri, "serial=%s;token=keyward%%20%s", serial[i], spaces[i]);
		assert_non_null(strstr(out, uri));
	}
	free(out);

	/* a key on the machine token, one on the shared token: a serial= URI picks each one's */
	free(run_ok("keypairgen machine",
		    P11TOOL "--login --pin \"$KWT_PIN\" --keypairgen --key-type EC:prime256v1 --label serial-m"));
	free(run_ok("keypairgen shared", P11TOOL
		    "--slot 2 --login --pin \"$KWT_PIN\" --keypairgen --key-type EC:prime256v1 --label serial-s"));
	out = run_ok("p11tool --list-all serial=machine", GNUTLS_P11TOOL "--list-all 'pkcs11:serial=%s'", serial[0]);
	assert_non_null(strstr(out, "object=serial-m;type=public"));
	assert_null(strstr(out, "serial-s"));
	free(out);
	out = run_ok("p11tool --list-all serial=shared", GNUTLS_P11TOOL "--list-all 'pkcs11:serial=%s'", serial[2]);
	assert_non_null(strstr(out, "object=serial-s;type=public"));
	assert_null(strstr(out, "serial-m"));
	free(out);
	/* logged in, by serial and object, the private key */
	out = run_ok("p11tool --list-privkeys serial=machine",
		     "GNUTLS_PIN=\"$KWT_PIN\" " GNUTLS_P11TOOL
		     "--login --list-privkeys 'pkcs11:serial=%s;object=serial-m'",
		     serial[0]);
	assert_non_null(strstr(out, "object=serial-m;type=private"));
	free(out);
}

/* ---- 3. the PKCS#11 3.0 interface ---- */

static void test_interface_3_0(void **state)
{
	static CK_BYTE digest[32] = {5};
	CK_VERSION v30 = {3, 0};
	CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0}, sha256 = {CKM_SHA256, NULL, 0};
	CK_INTERFACE_PTR itf = NULL;
	CK_FUNCTION_LIST_3_0 *l;
	CK_OBJECT_HANDLE pub, priv, found;
	CK_SESSION_HANDLE s;
	CK_INFO info;
	CK_BYTE sig[64];
	CK_ULONG len = sizeof sig, n;
	void (*fns[sizeof(CK_FUNCTION_LIST_3_0) / sizeof(void (*)(void))])(void);
	size_t n_fns = (sizeof(CK_FUNCTION_LIST_3_0) - offsetof(CK_FUNCTION_LIST_3_0, C_Initialize)) / sizeof fns[0];
	char *out = NULL;

	(void)state;
	assert_int_equal(get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &itf, 0), CKR_OK);
	l = itf->pFunctionList;
	assert_int_equal(l->version.major, 3);
	assert_int_equal(l->version.minor, 0);
	/* a full table: every one of the 92 functions set */
	assert_int_equal(n_fns, 92);
	memcpy(fns, &l->C_Initialize, n_fns * sizeof fns[0]);
	for (size_t i = 0; i < n_fns; i++)
		if (!fns[i])
			fail_msg("function %zu of CK_FUNCTION_LIST_3_0 is NULL", i);
	/* the 3.0 functions answer before C_Initialize too */
	assert_int_equal(l->C_SessionCancel(1, CKF_SIGN), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(l->C_MessageSignInit(1, &ecdsa, 1), CKR_CRYPTOKI_NOT_INITIALIZED);

	assert_int_equal(l->C_Initialize(NULL), CKR_OK);
	assert_int_equal(l->C_GetInfo(&info), CKR_OK);
	assert_int_equal(info.cryptokiVersion.major, 3);
	assert_int_equal(info.cryptokiVersion.minor, 0);
	assert_int_equal(f->C_GetInfo(&info), CKR_OK); /* the 2.40 list says 2.40 */
	assert_int_equal(info.cryptokiVersion.major, 2);
	assert_int_equal(info.cryptokiVersion.minor, 40);
	assert_int_equal(l->C_GetInterfaceList(NULL, &n), CKR_OK);
	assert_int_equal(n, 3);
	assert_int_equal(l->C_GetInterface(NULL, NULL, &itf, 0), CKR_OK);
	assert_ptr_equal(itf->pFunctionList, l);
	assert_int_equal(l->C_OpenSession(SLOT_MACHINE, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);

	/* C_LoginUser: no name, or the partition's, is C_Login; another name is refused */
	assert_int_equal(l->C_LoginUser(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin), (CK_UTF8CHAR_PTR) "eve", 3),
			 CKR_PIN_INCORRECT);
	assert_int_equal(l->C_LoginUser(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin), NULL, 3), CKR_ARGUMENTS_BAD);
	assert_int_equal(l->C_LoginUser(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin), (CK_UTF8CHAR_PTR) "dev", 3),
			 CKR_OK);
	assert_int_equal(l->C_LoginUser(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin), NULL, 0),
			 CKR_USER_ALREADY_LOGGED_IN);

	/* C_SessionCancel ends the operations its flags name, and only those */
	gen_pair(s, 0, "cancel", &pub, &priv);
	assert_int_equal(l->C_SignInit(s, &ecdsa, priv), CKR_OK);
	assert_int_equal(l->C_DigestInit(s, &sha256), CKR_OK);
	assert_int_equal(l->C_FindObjectsInit(s, NULL, 0), CKR_OK);
	assert_int_equal(l->C_SessionCancel(s, CKF_SIGN | CKF_FIND_OBJECTS), CKR_OK);
	assert_int_equal(l->C_Sign(s, digest, sizeof digest, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(l->C_FindObjects(s, &found, 1, &n), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(l->C_DigestInit(s, &sha256), CKR_OPERATION_ACTIVE);
	assert_int_equal(l->C_SessionCancel(s, CKF_DIGEST), CKR_OK);
	assert_int_equal(l->C_DigestInit(s, &sha256), CKR_OK);
	assert_int_equal(l->C_SessionCancel(s + 100, CKF_SIGN), CKR_SESSION_HANDLE_INVALID);
	/* after a cancel the key signs as before */
	assert_int_equal(l->C_SignInit(s, &ecdsa, priv), CKR_OK);
	assert_int_equal(l->C_Sign(s, digest, sizeof digest, sig, &len), CKR_OK);

	/* the message-based functions: present, not offered */
	assert_int_equal(l->C_MessageSignInit(s, &ecdsa, priv), CKR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(l->C_MessageEncryptInit(s, &ecdsa, priv), CKR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(l->C_SignMessage(s, NULL, 0, digest, sizeof digest, sig, &len), CKR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(l->C_MessageVerifyFinal(s), CKR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(l->C_Finalize(NULL), CKR_OK);

	/* pkcs11-tool takes the default interface, 3.0, and lists all three */
	out = run_ok("pkcs11-tool --list-interfaces", P11TOOL "--list-interfaces");
	assert_non_null(strstr(out, "Interface 'PKCS 11'\n  version: 3.0"));
	assert_non_null(strstr(out, "Interface 'PKCS 11'\n  version: 2.40"));
	assert_non_null(strstr(out, "Interface 'Keyward Batch'\n  version: 1.0"));
	free(out);
	out = run_ok("pkcs11-tool --show-info", P11TOOL "--show-info");
	assert_non_null(strstr(out, "Cryptoki version 3.0"));
	free(out);
}

/* ---- 4. digests and verification in the module ---- */

static void test_digests(void **state)
{
	static const struct {
		CK_MECHANISM_TYPE mech;
		const char *md;
	} digests[] = {{CKM_SHA_1, "SHA1"},
		       {CKM_SHA224, "SHA224"},
		       {CKM_SHA256, "SHA256"},
		       {CKM_SHA384, "SHA384"},
		       {CKM_SHA512, "SHA512"}};
	static CK_BYTE msg[] = "The quick brown fox jumps over the lazy dog";
	unsigned char want[64];
	unsigned want_len;
	CK_BYTE out[64];
	CK_ULONG len;
	CK_SESSION_HANDLE s = start(SLOT_MACHINE, 0, 0); /* digests need no login */

	(void)state;
	for (size_t i = 0; i < sizeof digests / sizeof digests[0]; i++) {
		CK_MECHANISM m = {digests[i].mech, NULL, 0};
		EVP_MD *md = EVP_MD_fetch(NULL, digests[i].md, NULL);

		assert_non_null(md);
		assert_int_equal(EVP_Digest(msg, sizeof msg - 1, want, &want_len, md, NULL), 1);
		EVP_MD_free(md);
		assert_int_equal(f->C_DigestInit(s, &m), CKR_OK);
		len = 0;
		assert_int_equal(f->C_Digest(s, msg, sizeof msg - 1, NULL, &len), CKR_OK);
		assert_int_equal(len, want_len);
		assert_int_equal(f->C_Digest(s, msg, sizeof msg - 1, out, &len), CKR_OK);
		assert_memory_equal(out, want, want_len);
		assert_int_equal(f->C_DigestInit(s, &m), CKR_OK);
		assert_int_equal(f->C_DigestUpdate(s, msg, 10), CKR_OK);
		assert_int_equal(f->C_DigestUpdate(s, msg + 10, sizeof msg - 11), CKR_OK);
		len = sizeof out;
		assert_int_equal(f->C_DigestFinal(s, out, &len), CKR_OK);
		assert_int_equal(len, want_len);
		assert_memory_equal(out, want, want_len);
	}
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

/*
 * Signs msg (its SHA-256 for the raw mechanisms: tbs, a DigestInfo for
 * CKM_RSA_PKCS) with priv on the HSM and verifies it here with pub,
 * single- and multi-part; a changed signature or message fails.
 */
static void sign_verify(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub,
			const CK_BYTE *tbs, CK_ULONG tbs_len)
{
	CK_BYTE sig[512], other[512];
	CK_ULONG len = sizeof sig;

	assert_int_equal(f->C_SignInit(s, m, priv), CKR_OK);
	assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR)tbs, tbs_len, sig, &len), CKR_OK);
	assert_int_equal(f->C_VerifyInit(s, m, pub), CKR_OK);
	assert_int_equal(f->C_Verify(s, (CK_BYTE_PTR)tbs, tbs_len, sig, len), CKR_OK);
	/* multi-part, in two pieces */
	assert_int_equal(f->C_VerifyInit(s, m, pub), CKR_OK);
	assert_int_equal(f->C_VerifyUpdate(s, (CK_BYTE_PTR)tbs, tbs_len / 2), CKR_OK);
	assert_int_equal(f->C_VerifyUpdate(s, (CK_BYTE_PTR)tbs + tbs_len / 2, tbs_len - tbs_len / 2), CKR_OK);
	assert_int_equal(f->C_VerifyFinal(s, sig, len), CKR_OK);
	/* the private key verifies as well (its public half is known) */
	assert_int_equal(f->C_VerifyInit(s, m, priv), CKR_OK);
	assert_int_equal(f->C_Verify(s, (CK_BYTE_PTR)tbs, tbs_len, sig, len), CKR_OK);
	memcpy(other, sig, len);
	other[len / 2] ^= 0x10;
	assert_int_equal(f->C_VerifyInit(s, m, pub), CKR_OK);
	assert_int_equal(f->C_Verify(s, (CK_BYTE_PTR)tbs, tbs_len, other, len), CKR_SIGNATURE_INVALID);
	memcpy(other, tbs, tbs_len);
	other[0] ^= 1;
	assert_int_equal(f->C_VerifyInit(s, m, pub), CKR_OK);
	assert_int_equal(f->C_Verify(s, other, tbs_len, sig, len), CKR_SIGNATURE_INVALID);
}

static void test_verify(void **state)
{
	static const CK_BYTE sha256_prefix[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
						0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
	static CK_BYTE msg[] = "a message to be verified in the module";
	CK_RSA_PKCS_PSS_PARAMS pss256 = {CKM_SHA256, CKG_MGF1_SHA256, 32}, pss384 = {CKM_SHA384, CKG_MGF1_SHA384, 48};
	CK_MECHANISM m_pkcs = {CKM_RSA_PKCS, NULL, 0}, m_sha_pkcs = {CKM_SHA256_RSA_PKCS, NULL, 0},
		     m_sha1_pkcs = {CKM_SHA1_RSA_PKCS, NULL, 0}, m_pss = {CKM_RSA_PKCS_PSS, &pss256, sizeof pss256},
		     m_sha_pss = {CKM_SHA384_RSA_PKCS_PSS, &pss384, sizeof pss384}, m_ecdsa = {CKM_ECDSA, NULL, 0},
		     m_ecdsa_sha = {CKM_ECDSA_SHA256, NULL, 0}, m_ecdsa_sha512 = {CKM_ECDSA_SHA512, NULL, 0};
	CK_BYTE digest[32], info[sizeof sha256_prefix + 32];
	unsigned dlen = 0;
	CK_OBJECT_HANDLE rpub, rpriv, epub, epriv;
	CK_SESSION_HANDLE s = start(SLOT_MACHINE, 1, 1);

	(void)state;
	assert_int_equal(EVP_Digest(msg, sizeof msg, digest, &dlen, EVP_sha256(), NULL), 1);
	memcpy(info, sha256_prefix, sizeof sha256_prefix);
	memcpy(info + sizeof sha256_prefix, digest, 32);
	gen_pair(s, 1, "verify-rsa", &rpub, &rpriv);
	gen_pair(s, 0, "verify-ec", &epub, &epriv);

	sign_verify(s, &m_pkcs, rpriv, rpub, info, sizeof info);
	sign_verify(s, &m_sha_pkcs, rpriv, rpub, msg, sizeof msg);
	sign_verify(s, &m_sha1_pkcs, rpriv, rpub, msg, sizeof msg);
	sign_verify(s, &m_pss, rpriv, rpub, digest, sizeof digest);
	sign_verify(s, &m_sha_pss, rpriv, rpub, msg, sizeof msg);
	sign_verify(s, &m_ecdsa, epriv, epub, digest, sizeof digest);
	sign_verify(s, &m_ecdsa_sha, epriv, epub, msg, sizeof msg);
	sign_verify(s, &m_ecdsa_sha512, epriv, epub, msg, sizeof msg);
	/* PSS over something that is not a digest of the named hash */
	{
		CK_BYTE sig[256] = {0};
		CK_ULONG len = sizeof sig;

		assert_int_equal(f->C_VerifyInit(s, &m_pss, rpub), CKR_OK);
		assert_int_equal(f->C_Verify(s, digest, 20, sig, len), CKR_DATA_LEN_RANGE);
	}
	/* an EC mechanism on an RSA key, a verify-only key that cannot sign */
	assert_int_equal(f->C_VerifyInit(s, &m_ecdsa, rpub), CKR_KEY_TYPE_INCONSISTENT);
	assert_int_equal(f->C_SignInit(s, &m_ecdsa, epub), CKR_KEY_TYPE_INCONSISTENT);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

/* pkcs11-tool's own tests, and --verify of what it signed. */
static void test_pkcs11_tool(void **state)
{
	char path[400], *out = NULL;
	int rc;

	(void)state;
	snprintf(path, sizeof path, "%s/data", work);
	kwt_write_file(path, "data to sign and verify\n");
	free(run_ok("keypairgen RSA",
		    P11TOOL "--login --pin \"$KWT_PIN\" --keypairgen --key-type rsa:2048 --label tool-rsa --id 21"));
	free(run_ok("keypairgen EC",
		    P11TOOL "--login --pin \"$KWT_PIN\" --keypairgen --key-type EC:secp384r1 --label tool-ec --id 22"));

	out = run_ok("pkcs11-tool --test", P11TOOL "--test --login --pin \"$KWT_PIN\"");
	assert_non_null(strstr(out, "No errors"));
	assert_non_null(strstr(out, "all 4 digest functions seem to work"));
	assert_non_null(strstr(out, "all 4 signature functions seem to work"));
	assert_null(strstr(out, "ERR"));
	free(out);
	/* pkcs11-tool 0.23 opens --test-ec's session read-only unless told: it generates token objects */
	for (int i = 0; i < 3; i++) {
		static const char *curves[] = {"prime256v1", "secp384r1", "secp521r1"};

		out = run_ok("pkcs11-tool --test-ec",
			     P11TOOL "--test-ec --session-rw --login --pin \"$KWT_PIN\" --id 2e --key-type EC:%s",
			     curves[i]);
		assert_non_null(strstr(out, "==> OK"));
		assert_null(strstr(out, "error"));
		assert_null(strstr(out, "C_Sign() didn't return CKR_BUFFER_TO_SMALL"));
		free(out);
	}

	/* --verify: valid, then over other data */
	static const struct {
		const char *mech, *id, *extra;
	} v[] = {{"SHA256-RSA-PKCS", "21", ""},
		 {"SHA256-RSA-PKCS-PSS", "21", ""},
		 {"ECDSA-SHA384", "22", ""},
		 {"ECDSA-SHA256", "22", "--signature-format openssl"}};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		free(run_ok("pkcs11-tool --sign",
			    P11TOOL "--login --pin \"$KWT_PIN\" --sign -m %s --id %s %s -i '%s' -o '%s/v.sig'",
			    v[i].mech, v[i].id, v[i].extra, path, work));
		out = run_ok("pkcs11-tool --verify",
			     P11TOOL "--verify -m %s --id %s %s -i '%s' --signature-file '%s/v.sig'", v[i].mech,
			     v[i].id, v[i].extra, path, work);
		assert_non_null(strstr(out, "Signature is valid"));
		free(out);
		rc = run(&out, P11TOOL "--verify -m %s --id %s %s -i '%s/v.sig' --signature-file '%s/v.sig'", v[i].mech,
			 v[i].id, v[i].extra, work, work);
		(void)rc; /* pkcs11-tool 0.23 exits 0 on an invalid signature: its words tell */
		assert_non_null(strstr(out, "Invalid signature"));
		free(out);
	}
}

/* ---- 5. Ed25519 in PKCS#11 3.0's form ---- */

static void test_eddsa(void **state)
{
	static CK_BYTE ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70}; /* id-Ed25519 (RFC 8410) */
	static CK_BYTE msg[] = "an Ed25519 message";
	CK_BBOOL no = CK_FALSE;
	CK_EDDSA_PARAMS pure = {CK_FALSE, 0, NULL}, ph = {CK_TRUE, 0, NULL}, ctx = {CK_FALSE, 3, (CK_BYTE_PTR) "abc"};
	CK_MECHANISM gen = {CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0}, plain = {CKM_EDDSA, NULL, 0},
		     with = {CKM_EDDSA, &pure, sizeof pure}, m_ph = {CKM_EDDSA, &ph, sizeof ph},
		     m_ctx = {CKM_EDDSA, &ctx, sizeof ctx};
	CK_ATTRIBUTE pt[] = {{CKA_TOKEN, &no, sizeof no}, {CKA_EC_PARAMS, ed25519, sizeof ed25519}};
	CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &no, sizeof no}, {CKA_SIGN, &yes, sizeof yes}};
	CK_KEY_TYPE kt = 0;
	CK_BYTE spki[128], sig[64];
	CK_ATTRIBUTE a[] = {{CKA_KEY_TYPE, &kt, sizeof kt}, {CKA_PUBLIC_KEY_INFO, spki, sizeof spki}};
	CK_ULONG len = sizeof sig;
	CK_OBJECT_HANDLE pub, priv;
	const unsigned char *p = spki;
	EVP_PKEY *k;
	EVP_MD_CTX *md;
	char path[400], *out = NULL, serial[17], owner[100];
	CK_SESSION_HANDLE s = start(SLOT_MACHINE, 1, 1);

	(void)state;
	assert_int_equal(f->C_GenerateKeyPair(s, &gen, pt, 2, vt, 2, &pub, &priv), CKR_OK);
	assert_int_equal(f->C_GetAttributeValue(s, pub, a, 2), CKR_OK);
	assert_int_equal(kt, CKK_EC_EDWARDS);
	/* CKM_EDDSA with no parameter, and with CK_EDDSA_PARAMS naming pure Ed25519 */
	sign_verify(s, &plain, priv, pub, msg, sizeof msg);
	sign_verify(s, &with, priv, pub, msg, sizeof msg);
	/* Ed25519ph and Ed25519ctx are not offered */
	assert_int_equal(f->C_SignInit(s, &m_ph, priv), CKR_MECHANISM_PARAM_INVALID);
	assert_int_equal(f->C_SignInit(s, &m_ctx, priv), CKR_MECHANISM_PARAM_INVALID);
	assert_int_equal(f->C_VerifyInit(s, &m_ph, pub), CKR_MECHANISM_PARAM_INVALID);
	/* OpenSSL verifies the signature on the public key the module gives */
	assert_int_equal(f->C_SignInit(s, &with, priv), CKR_OK);
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, &len), CKR_OK);
	assert_int_equal(len, 64);
	k = d2i_PUBKEY(NULL, &p, (long)a[1].ulValueLen);
	assert_non_null(k);
	md = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, k), 1);
	assert_int_equal(EVP_DigestVerify(md, sig, len, msg, sizeof msg), 1);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	slot_serial_owner(SLOT_MACHINE, serial, owner, sizeof owner);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);

	/* the peers: pkcs11-tool makes and signs, p11tool exports by a serial= URI, openssl verifies */
	snprintf(path, sizeof path, "%s/ed-data", work);
	kwt_write_file(path, "data for Ed25519\n");
	free(run_ok("keypairgen Ed25519", P11TOOL
		    "--login --pin \"$KWT_PIN\" --keypairgen --key-type EC:edwards25519 --label tool-ed --id 23"));
	free(run_ok("sign EDDSA", P11TOOL "--login --pin \"$KWT_PIN\" --sign -m EDDSA --id 23 -i '%s' -o '%s/ed.sig'",
		    path, work));
	free(run_ok("p11tool --export-pubkey",
		    "GNUTLS_PIN=\"$KWT_PIN\" " GNUTLS_P11TOOL
		    "--login --export-pubkey --outfile '%s/ed.pem' 'pkcs11:serial=%s;object=tool-ed;type=public'",
		    work, serial));
	out = run_ok("openssl pkeyutl -verify",
		     "openssl pkeyutl -verify -pubin -inkey '%s/ed.pem' -rawin -in '%s' -sigfile '%s/ed.sig'", work,
		     path, work);
	assert_non_null(strstr(out, "Signature Verified Successfully"));
	free(out);
	assert_int_not_equal(run(&out,
				 "openssl pkeyutl -verify -pubin -inkey '%s/ed.pem' -rawin -in '%s/ed.pem' "
				 "-sigfile '%s/ed.sig'",
				 work, work, work),
			     0);
	free(out);
	out = run_ok("pkcs11-tool --verify EDDSA",
		     P11TOOL "--verify -m EDDSA --id 23 -i '%s' --signature-file '%s/ed.sig'", path, work);
	assert_non_null(strstr(out, "Signature is valid"));
	free(out);
}

/* ---- the conformance runner: keyward and SoftHSM2 side by side ---- */

/*
 * conform_runner (conform_checks.c) on keyward's machine token and on a
 * SoftHSM2 token made here, in one run: the table goes to the test's
 * output, and any keyward failure that is not a policy refusal
 * docs/pkcs11.md documents fails the test. SoftHSM2's column is the
 * comparison; its failures (it lets the extraction attacks through) do
 * not count.
 */
static void test_runner(void **state)
{
	char path[400], *out = NULL;
	int rc;

	(void)state;
	kwt_softhsm_conf(work);
	free(run_ok("softhsm2-util --init-token", "softhsm2-util --init-token --free --label conform --pin 12345678 "
						  "--so-pin 87654321"));
	snprintf(path, sizeof path, "%s/softhsm.pin", work);
	kwt_write_file(path, "12345678\n");
	snprintf(path, sizeof path, "%s/keyward.pin", work);
	kwt_write_file(path, pin);
	rc = run(&out,
		 CONFORM_RUNNER_PATH " --gate keyward keyward '%s' '%s/keyward.pin' SoftHSM2 '%s' '%s/softhsm.pin'",
		 KEYWARD_PKCS11_PATH, work, KWT_SOFTHSM_MODULE, work);
	fputs(out, stdout); /* print_message cuts long text */
	fflush(stdout);
	if (rc != 0)
		fail_msg("conform_runner: exit %d: keyward failed a check (above)", rc);
	/* the runner ran every area on both modules */
	assert_non_null(strstr(out, "Tookan"));
	assert_non_null(strstr(out, "SoftHSM2"));
	free(out);
}

int main(void)
{
	// clang-format off
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_not_parallel, test_teardown),
		cmocka_unit_test_teardown(test_login_codes, test_teardown),
		cmocka_unit_test_teardown(test_operation_ends, test_teardown),
		cmocka_unit_test_teardown(test_lockout_flags, test_teardown),
		cmocka_unit_test_teardown(test_policy, test_teardown),
		cmocka_unit_test_teardown(test_policy_wrap, test_teardown),
		cmocka_unit_test_teardown(test_serials, test_teardown),
		cmocka_unit_test_teardown(test_interface_3_0, test_teardown),
		cmocka_unit_test_teardown(test_digests, test_teardown),
		cmocka_unit_test_teardown(test_verify, test_teardown),
		cmocka_unit_test_teardown(test_pkcs11_tool, test_teardown),
		cmocka_unit_test_teardown(test_eddsa, test_teardown),
		cmocka_unit_test_teardown(test_runner, test_teardown),
	};
	// clang-format on

	return cmocka_run_group_tests_name("integration_pkcs11_conform", tests, setup, teardown);
}
