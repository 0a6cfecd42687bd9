/*
 * keyward-pkcs11.so against a real keywardd (development mode), driven by
 * real clients: OpenSC's pkcs11-tool generates, lists and signs; OpenSSL
 * verifies the signatures against the public keys pkcs11-tool reads out.
 * The module is also loaded here with dlopen to check what pkcs11-tool
 * cannot show: sensitive attributes (this pkcs11-tool refuses to read any
 * private key by itself, so it proves nothing there), the signature-length query, local
 * verification, argument and initialization checks.
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
#include <pthread.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

#include "harness.h"

static struct kwt_server server;
static char work[300];
static char pin[64]; /* the dev credential's user PIN; commands take it from $KWT_PIN */

/* A shell command line, run for at most KWT_RUN_TIMEOUT seconds (kwt_run). */
#define run(out, ...) kwt_run(work, out, __VA_ARGS__)

/* pkcs11-tool with the module and arguments (under the sanitizers, with their runtime preloaded). */
#ifndef KWT_P11_ENV
#define KWT_P11_ENV ""
#endif
#define P11TOOL KWT_P11_ENV "pkcs11-tool --module '" KEYWARD_PKCS11_PATH "' "
/*
 * For --read-object: under the sanitizers, pkcs11-tool 0.23's own
 * use-after-free there (OpenSC, also with SoftHSM2) is reported, not fatal;
 * read_pubkey() fails on any report that names the module.
 */
#ifndef KWT_P11_ENV_READ
#define KWT_P11_ENV_READ ""
#endif
#define P11TOOL_READ KWT_P11_ENV_READ "pkcs11-tool --module '" KEYWARD_PKCS11_PATH "' "

/* The same with another client configuration (a %s argument first). */
#define P11TOOL_CONF "KEYWARD_CONF='%s' " P11TOOL

static void expect_ok(const char *what, int rc, char *out)
{
	if (rc != 0)
		fail_msg("%s: exit %d:\n%s", what, rc, out ? out : "");
}

/* Writes the public key with CKA_ID id (hex) to WORK/file, DER, with pkcs11-tool. */
static void read_pubkey(const char *id, const char *file)
{
	char *out = NULL, *report;
	int rc = run(&out, P11TOOL_READ "--read-object --type pubkey --id %s -o '%s/%s'", id, work, file);

	expect_ok("read pubkey", rc, out);
	if ((report = strstr(out, "AddressSanitizer")) &&
	    (strstr(report, "keyward-pkcs11.so") || strstr(report, "src/pkcs11/")))
		fail_msg("the module is in a sanitizer report:\n%s", out);
	free(out);
}

static int setup(void **state)
{
	char path[400];

	(void)state;
	kwt_start_dev(&server);
	snprintf(work, sizeof work, "%s/p11", server.dir);
	assert_int_equal(mkdir(work, 0700), 0);
	snprintf(path, sizeof path, "%s/machine-id", work);
	kwt_write_file(path, "0123456789abcdef0123456789abcdef\n");
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", path, 1), 0);
	assert_int_equal(setenv("KEYWARD_CONF", server.conf, 1), 0);
	kwt_dev_pin(&server, pin, sizeof pin);
	assert_int_equal(setenv("KWT_PIN", pin, 1), 0);
	snprintf(path, sizeof path, "%s/data", work);
	kwt_write_file(path, "the data to be signed\n");
	snprintf(path, sizeof path, "%s/other", work);
	kwt_write_file(path, "other data\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

static void test_list_slots(void **state)
{
	char *out = NULL;
	int rc;

	(void)state;
	rc = run(&out, P11TOOL "-L");
	expect_ok("pkcs11-tool -L", rc, out);
	assert_non_null(strstr(out, "token label        : keyward machine"));
	assert_non_null(strstr(out, "token label        : keyward user"));
	assert_non_null(strstr(out, "token label        : keyward shared"));
	/* the machine owner of machine id 0123...cdef (docs/key-spaces.md) */
	assert_non_null(strstr(out, "S-1-5-21-3432476930-2020770616-2941755"));
	/* every token its own serial number (test_pkcs11_conform checks them) */
	assert_null(strstr(out, "serial num         : dev"));
	assert_non_null(strstr(out, "serial num         : "));
	free(out);
}

/* Verifies file sig over file data with the DER public key pub; returns openssl's exit code. */
static int openssl_verify(const char *pub, const char *sig, const char *data, const char *extra)
{
	char *out = NULL;
	int rc = run(&out, "openssl dgst -sha256 -verify '%s/%s' -keyform DER %s -signature '%s/%s' '%s/%s'", work, pub,
		     extra, work, sig, work, data);

	if (rc == 0)
		assert_non_null(strstr(out, "Verified OK"));
	free(out);
	return rc;
}

static void test_ec_key(void **state)
{
	char *out = NULL;
	int rc;

	(void)state;
	rc = run(&out, P11TOOL "--login --pin \"$KWT_PIN\" --keypairgen --key-type EC:prime256v1 --label k1 --id 01");
	expect_ok("keypairgen EC", rc, out);
	free(out);

	rc = run(&out, P11TOOL "--login --pin \"$KWT_PIN\" -O");
	expect_ok("-O", rc, out);
	assert_non_null(strstr(out, "Private Key Object; EC"));
	assert_non_null(strstr(out, "Public Key Object; EC  EC_POINT 256 bits"));
	assert_non_null(strstr(out, "label:      k1"));
	assert_non_null(strstr(out, "ID:         01"));
	assert_non_null(strstr(out, "never extractable"));
	free(out);
	/* without login, the private key is not visible */
	rc = run(&out, P11TOOL "-O");
	expect_ok("-O without login", rc, out);
	assert_null(strstr(out, "Private Key Object"));
	assert_non_null(strstr(out, "Public Key Object; EC"));
	free(out);
	/* the shared key space (slot 2) does not see the machine's key */
	rc = run(&out, P11TOOL "--slot 2 --login --pin \"$KWT_PIN\" -O");
	expect_ok("-O on the shared token", rc, out);
	assert_null(strstr(out, "k1"));
	free(out);

	read_pubkey("01", "ec.der");

	/* CKM_ECDSA over a SHA-256 digest made here */
	rc = run(&out, "openssl dgst -sha256 -binary -out '%s/hash' '%s/data'", work, work);
	expect_ok("openssl dgst", rc, out);
	free(out);
	rc = run(&out,
		 P11TOOL "--login --pin \"$KWT_PIN\" --sign -m ECDSA --id 01 -i '%s/hash' -o '%s/ec.sig' "
			 "--signature-format openssl",
		 work, work);
	expect_ok("sign ECDSA", rc, out);
	free(out);
	assert_int_equal(openssl_verify("ec.der", "ec.sig", "data", ""), 0);
	assert_int_not_equal(openssl_verify("ec.der", "ec.sig", "other", ""), 0);

	/* CKM_ECDSA_SHA256: hashed in the module */
	rc = run(&out,
		 P11TOOL "--login --pin \"$KWT_PIN\" --sign -m ECDSA-SHA256 --id 01 -i '%s/data' -o '%s/ec2.sig' "
			 "--signature-format openssl",
		 work, work);
	expect_ok("sign ECDSA-SHA256", rc, out);
	free(out);
	assert_int_equal(openssl_verify("ec.der", "ec2.sig", "data", ""), 0);
}

static void test_rsa_key(void **state)
{
	char *out = NULL;
	int rc;

	(void)state;
	rc = run(&out, P11TOOL "--login --pin \"$KWT_PIN\" --keypairgen --key-type rsa:2048 --label r1 --id 02");
	expect_ok("keypairgen RSA", rc, out);
	assert_non_null(strstr(out, "Private Key Object; RSA"));
	free(out);
	read_pubkey("02", "rsa.der");

	rc = run(&out,
		 P11TOOL "--login --pin \"$KWT_PIN\" --sign -m SHA256-RSA-PKCS --id 02 -i '%s/data' -o '%s/rsa.sig'",
		 work, work);
	expect_ok("sign SHA256-RSA-PKCS", rc, out);
	free(out);
	assert_int_equal(openssl_verify("rsa.der", "rsa.sig", "data", ""), 0);
	assert_int_not_equal(openssl_verify("rsa.der", "rsa.sig", "other", ""), 0);

	rc = run(&out,
		 P11TOOL
		 "--login --pin \"$KWT_PIN\" --sign -m SHA256-RSA-PKCS-PSS --id 02 -i '%s/data' -o '%s/pss.sig'",
		 work, work);
	expect_ok("sign SHA256-RSA-PKCS-PSS", rc, out);
	free(out);
	assert_int_equal(
		openssl_verify("rsa.der", "pss.sig", "data", "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1"),
		0);
}

/* GnuTLS: p11tool lists the tokens and keys, certtool self-signs with the EC key by pkcs11: URI. */
static void test_gnutls(void **state)
{
	char path[400], *out = NULL;
	int rc;

	(void)state;
	rc = run(&out, KWT_P11_ENV "p11tool --provider '" KEYWARD_PKCS11_PATH "' --list-tokens");
	expect_ok("p11tool --list-tokens", rc, out);
	assert_non_null(strstr(out, "pkcs11:model=network%20HSM;manufacturer=keyward;serial="));
	assert_non_null(strstr(out, ";token=keyward%20machine"));
	assert_non_null(strstr(out, "token=keyward%20shared"));
	free(out);
	rc = run(&out, "GNUTLS_PIN=\"$KWT_PIN\" " KWT_P11_ENV "p11tool --provider '" KEYWARD_PKCS11_PATH
		       "' --login --list-all 'pkcs11:token=keyward%%20machine'");
	expect_ok("p11tool --list-all", rc, out);
	assert_non_null(strstr(out, "id=%01;object=k1;type=private"));
	assert_non_null(strstr(out, "Private key (EC/ECDSA-SECP256R1)"));
	free(out);

#ifdef KWT_P11_SANITIZE
	/*
	 * Not under the sanitizers: certtool with the ASan runtime preloaded
	 * signs, then deadlocks at exit in libp11-kit's destructor
	 * (freelocale waits on glibc's setlocale lock), module or not.
	 */
	(void)path;
	return;
#endif
	snprintf(path, sizeof path, "%s/cert.tmpl", work);
	kwt_write_file(path, "cn = keyward pkcs11 test\nexpiration_days = 30\nsigning_key\n");
	rc = run(&out,
		 "GNUTLS_PIN=\"$KWT_PIN\" " KWT_P11_ENV "certtool --provider '" KEYWARD_PKCS11_PATH
		 "' --generate-self-signed --load-privkey 'pkcs11:token=keyward%%20machine;object=k1;type=private'"
		 " --load-pubkey 'pkcs11:token=keyward%%20machine;object=k1;type=public' --template '%s'"
		 " --outfile '%s/cert.pem'",
		 path, work);
	expect_ok("certtool --generate-self-signed", rc, out);
	free(out);
	rc = run(&out, "openssl verify -CAfile '%s/cert.pem' '%s/cert.pem'", work, work);
	expect_ok("openssl verify", rc, out);
	assert_non_null(strstr(out, "cert.pem: OK"));
	free(out);
}

/* Certificates stored and deleted, Ed25519 keys made and used, with pkcs11-tool. */
static void test_tool_objects(void **state)
{
	char *out = NULL;
	int rc;

	(void)state;
	rc = run(&out,
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout '%s/c.key' "
		 "-subj /CN=tool-cert -days 2 -outform DER -out '%s/c.der'",
		 work, work);
	expect_ok("openssl req -x509", rc, out);
	free(out);
	rc = run(&out, P11TOOL "--login --pin \"$KWT_PIN\" --write-object '%s/c.der' --type cert --id 0c", work);
	expect_ok("--write-object cert", rc, out);
	free(out);
	rc = run(&out, P11TOOL "-O --type cert");
	expect_ok("-O --type cert", rc, out);
	assert_non_null(strstr(out, "label:      tool-cert"));
	assert_non_null(strstr(out, "subject:    DN: CN=tool-cert"));
	free(out);
	rc = run(&out, P11TOOL "--login --pin \"$KWT_PIN\" --delete-object --type cert --id 0c");
	expect_ok("--delete-object cert", rc, out);
	free(out);
	rc = run(&out, P11TOOL "-O --type cert");
	assert_null(strstr(out, "tool-cert"));
	free(out);

	rc = run(&out, P11TOOL "--login --pin \"$KWT_PIN\" --keypairgen --key-type EC:edwards25519 --label ed --id 0d");
	expect_ok("keypairgen Ed25519", rc, out);
	assert_non_null(strstr(out, "Public Key Object; EC_EDWARDS"));
	free(out);
	rc = run(&out, P11TOOL "--login --pin \"$KWT_PIN\" --sign -m EDDSA --id 0d -i '%s/data' -o '%s/ed.sig'", work,
		 work);
	expect_ok("sign EDDSA", rc, out);
	free(out);
	rc = run(&out,
		 P11TOOL
		 "--login --pin \"$KWT_PIN\" --verify -m EDDSA --id 0d -i '%s/data' --signature-file '%s/ed.sig'",
		 work, work);
	expect_ok("verify EDDSA", rc, out);
	assert_non_null(strstr(out, "Signature is valid"));
	free(out);
}

static void test_pkcs11_tool_test(void **state)
{
	char *out = NULL;
	int rc;

	(void)state;
	rc = run(&out, P11TOOL "--test --login --pin \"$KWT_PIN\"");
	expect_ok("pkcs11-tool --test", rc, out);
	assert_non_null(strstr(out, "No errors"));
	assert_non_null(strstr(out, "SHA256-RSA-PKCS: OK"));
	free(out);
}

/*
 * A credential whose key file is encrypted under a PIN: a wrong PIN is
 * CKR_PIN_INCORRECT, the right one logs in.
 */
static void test_encrypted_credential_pin(void **state)
{
	char *out = NULL, *pw, conf[400], password[64] = "";
	kw_client *c = NULL;
	int rc;

	(void)state;
	assert_int_equal(kwt_admin(&server, NULL, &out, "partition create pinned"), 0);
	pw = strstr(out, "setup password: ");
	assert_non_null(pw);
	sscanf(pw + strlen("setup password: "), "%63s", password);
	free(out);
	kwt_write_client_conf(&server, "pinned", "pinned", conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &c));
	kwt_ok(kw_enroll(c, password, "4321"));
	kw_client_free(c);

	rc = run(&out, P11TOOL_CONF "--login --pin 0000 -O", conf);
	assert_int_not_equal(rc, 0);
	assert_non_null(strstr(out, "CKR_PIN_INCORRECT"));
	free(out);
	rc = run(&out, P11TOOL_CONF "--login --pin 4321 --keypairgen --key-type EC:secp384r1 --label p1", conf);
	expect_ok("keypairgen with the right PIN", rc, out);
	assert_non_null(strstr(out, "label:      p1"));
	free(out);
}

/* The module, loaded here. */
static CK_FUNCTION_LIST_PTR load(void **handle)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	CK_FUNCTION_LIST_PTR f = NULL;

	*handle = dlopen(KEYWARD_PKCS11_PATH, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(*handle);
	*(void **)&get = dlsym(*handle, "C_GetFunctionList");
	assert_non_null(get);
	assert_int_equal(get(NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(get(&f), CKR_OK);
	return f;
}

static CK_OBJECT_HANDLE find_one(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, CK_BYTE id)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, &id, 1}};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;

	assert_int_equal(f->C_FindObjectsInit(s, t, 2), CKR_OK);
	assert_int_equal(f->C_FindObjects(s, h, 2, &n), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(s), CKR_OK);
	assert_int_equal(n, 1);
	return h[0];
}

struct signer {
	CK_FUNCTION_LIST_PTR f;
	CK_OBJECT_HANDLE key;
	CK_RV rv;
};

/* 20 signatures on a session of this thread's own. */
static void *sign_loop(void *arg)
{
	struct signer *sg = arg;
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	CK_BYTE digest[32] = {1, 2, 3}, sig[64];
	CK_ULONG len;
	CK_SESSION_HANDLE s;

	sg->rv = sg->f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s);
	for (int i = 0; i < 20 && !sg->rv; i++) {
		len = sizeof sig;
		sg->rv = sg->f->C_SignInit(s, &m, sg->key);
		if (!sg->rv)
			sg->rv = sg->f->C_Sign(s, digest, sizeof digest, sig, &len);
		if (!sg->rv && len != 64)
			sg->rv = CKR_GENERAL_ERROR;
	}
	if (!sg->rv)
		sg->rv = sg->f->C_CloseSession(s);
	return NULL;
}

/* A child of a process that initialized the module initializes it again and works. */
static void check_fork(CK_FUNCTION_LIST_PTR f)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		CK_SESSION_HANDLE s;
		CK_BYTE b[16];
		int ok = f->C_Initialize(NULL) == CKR_OK &&
			 f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s) == CKR_OK &&
			 f->C_GenerateRandom(s, b, sizeof b) == CKR_OK && f->C_Finalize(NULL) == CKR_OK;

		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_module_direct(void **state)
{
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE priv, pub, rsa;
	CK_INFO info;
	CK_BBOOL b = CK_TRUE;
	CK_BYTE buf[512], sig[256], sig2[256];
	CK_ULONG sig_len, sig2_len;
	CK_MECHANISM ecdsa = {CKM_ECDSA_SHA256, NULL, 0}, rsam = {CKM_SHA256_RSA_PKCS, NULL, 0};
	static CK_BYTE msg[] = "message";
	void *handle;
	CK_FUNCTION_LIST_PTR f = load(&handle);

	(void)state;
	assert_int_equal(f->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_Initialize(&args), CKR_OK);
	assert_int_equal(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	assert_int_equal(f->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_GetInfo(&info), CKR_OK);
	assert_int_equal(info.cryptokiVersion.major, 2);
	assert_int_equal(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_OpenSession(7, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_SLOT_ID_INVALID);
	assert_int_equal(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
	/* the PIN is checked against the credential's key file */
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "not-the-pin", 11), CKR_PIN_INCORRECT);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_USER_ALREADY_LOGGED_IN);

	priv = find_one(f, s, CKO_PRIVATE_KEY, 0x01);
	pub = find_one(f, s, CKO_PUBLIC_KEY, 0x01);
	rsa = find_one(f, s, CKO_PRIVATE_KEY, 0x02);

	/* sensitive: CKR_ATTRIBUTE_SENSITIVE, length unavailable */
	{
		CK_BBOOL sens = CK_FALSE, never = CK_FALSE;
		CK_ATTRIBUTE t[] = {{CKA_VALUE, buf, sizeof buf}, {CKA_EXTRACTABLE, &b, sizeof b}};
		CK_ATTRIBUTE u[] = {{CKA_SENSITIVE, &sens, sizeof sens}, {CKA_NEVER_EXTRACTABLE, &never, sizeof never}};

		assert_int_equal(f->C_GetAttributeValue(s, priv, u, 2), CKR_OK);
		assert_int_equal(sens, CK_TRUE);
		assert_int_equal(never, CK_TRUE);
		CK_ATTRIBUTE r[] = {{CKA_PRIVATE_EXPONENT, NULL, 0}, {CKA_MODULUS, NULL, 0}};

		assert_int_equal(f->C_GetAttributeValue(s, priv, t, 2), CKR_ATTRIBUTE_SENSITIVE);
		assert_int_equal(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
		assert_int_equal(t[1].ulValueLen, sizeof b);
		assert_int_equal(b, CK_FALSE);
		assert_int_equal(f->C_GetAttributeValue(s, rsa, r, 2), CKR_ATTRIBUTE_SENSITIVE);
		assert_int_equal(r[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
		assert_int_equal(r[1].ulValueLen, 256);
	}

	/* the length query answers from the key size; then sign, verify locally */
	assert_int_equal(f->C_SignInit(s, &ecdsa, priv), CKR_OK);
	assert_int_equal(f->C_SignInit(s, &ecdsa, priv), CKR_OPERATION_ACTIVE);
	sig_len = 0;
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, NULL, &sig_len), CKR_OK);
	assert_int_equal(sig_len, 64);
	sig_len = 10;
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, &sig_len), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(sig_len, 64);
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, &sig_len), CKR_OK);
	assert_int_equal(sig_len, 64);
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, &sig_len), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
	assert_int_equal(f->C_Verify(s, msg, sizeof msg, sig, sig_len), CKR_OK);
	sig[10] ^= 1;
	assert_int_equal(f->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
	assert_int_equal(f->C_Verify(s, msg, sizeof msg, sig, sig_len), CKR_SIGNATURE_INVALID);

	/* multi-part equals single-part for deterministic RSA PKCS#1 v1.5 */
	assert_int_equal(f->C_SignInit(s, &rsam, rsa), CKR_OK);
	sig_len = sizeof sig;
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, sig, &sig_len), CKR_OK);
	assert_int_equal(sig_len, 256);
	assert_int_equal(f->C_SignInit(s, &rsam, rsa), CKR_OK);
	assert_int_equal(f->C_SignUpdate(s, msg, 3), CKR_OK);
	assert_int_equal(f->C_SignUpdate(s, msg + 3, sizeof msg - 3), CKR_OK);
	sig2_len = sizeof sig2;
	assert_int_equal(f->C_SignFinal(s, sig2, &sig2_len), CKR_OK);
	assert_int_equal(sig2_len, 256);
	assert_memory_equal(sig, sig2, 256);
	/* a private key cannot sign with an EC mechanism of the wrong type */
	assert_int_equal(f->C_SignInit(s, &ecdsa, rsa), CKR_KEY_TYPE_INCONSISTENT);

	assert_int_equal(f->C_GenerateRandom(s, buf, 32), CKR_OK);

	/* two threads signing on separate sessions */
	{
		struct signer sg[2] = {{f, priv, 0}, {f, priv, 0}};
		pthread_t t[2];

		for (int i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&t[i], NULL, sign_loop, &sg[i]), 0);
		for (int i = 0; i < 2; i++) {
			assert_int_equal(pthread_join(t[i], NULL), 0);
			assert_int_equal(sg[i].rv, CKR_OK);
		}
	}
	check_fork(f);
	assert_int_equal(f->C_Logout(s), CKR_OK);
	assert_int_equal(f->C_SignInit(s, &rsam, rsa), CKR_USER_NOT_LOGGED_IN);
	assert_int_equal(f->C_EncryptInit(s, &rsam, rsa), CKR_MECHANISM_INVALID); /* signs, does not encrypt */
	assert_int_equal(f->C_CloseSession(s), CKR_OK);
	assert_int_equal(f->C_CloseSession(s), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	/* unloaded: under the sanitizers, anything the module left behind is reported as a leak */
	assert_int_equal(dlclose(handle), 0);
}

int main(void)
{
	/* in this order: the later tests use the keys the earlier ones make */
	// clang-format off
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_slots),
		cmocka_unit_test(test_ec_key),
		cmocka_unit_test(test_rsa_key),
		cmocka_unit_test(test_module_direct),
		cmocka_unit_test(test_gnutls),
		cmocka_unit_test(test_tool_objects),
		cmocka_unit_test(test_pkcs11_tool_test),
		cmocka_unit_test(test_encrypted_credential_pin),
	};
	// clang-format on

	return cmocka_run_group_tests_name("integration_pkcs11", tests, setup, teardown);
}
