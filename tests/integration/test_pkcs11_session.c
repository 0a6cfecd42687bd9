/*
 * Session objects (issue #11, finding 8), against a real keywardd in
 * development mode: keyward-pkcs11.so loaded here makes key pairs and data
 * objects with CKA_TOKEN false, which sign, are seen by every session of
 * this process and by no other process or connection (pkcs11-tool,
 * libkeyward), are never written to the store (rows counted with sqlite3),
 * and are gone on the HSM after C_CloseSession and after the process that
 * made them exits (keyward-admin status counts the objects keywardd holds).
 * Through libkeyward: a session object's id means nothing on another
 * connection, and a connection's table is bounded in objects and bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <unistd.h>
#include <openssl/sha.h>
#include <p11-kit/pkcs11.h>

#include "harness.h"

#ifndef KWT_P11_ENV
#define KWT_P11_ENV ""
#endif

#define SLOT_MACHINE 0

static struct kwt_server server;
static char pin[64];
static void *module;
static CK_FUNCTION_LIST_PTR f;
static CK_SESSION_HANDLE s; /* R/W, logged in, on the machine token */

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

/* The module to test: KWT_PKCS11_MODULE (to run these tests on another build's), else this build's. */
static const char *module_path(void)
{
	const char *p = getenv("KWT_PKCS11_MODULE");

	return p && *p ? p : KEYWARD_PKCS11_PATH;
}

static void load_module(void)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);

	module = dlopen(module_path(), RTLD_NOW | RTLD_LOCAL);
	assert_non_null(module);
	*(void **)&get = dlsym(module, "C_GetFunctionList");
	assert_non_null(get);
	assert_int_equal(get(&f), CKR_OK);
}

static void open_login(CK_SESSION_HANDLE *out)
{
	CK_RV rv;

	assert_int_equal(f->C_OpenSession(SLOT_MACHINE, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, out), CKR_OK);
	rv = f->C_Login(*out, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
}

static int setup(void **state)
{
	char path[400];

	(void)state;
	kwt_start_dev(&server);
	snprintf(path, sizeof path, "%s/machine-id", server.dir);
	kwt_write_file(path, "00112233445566778899aabbccddeeff\n");
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", path, 1), 0);
	assert_int_equal(setenv("KEYWARD_CONF", server.conf, 1), 0);
	kwt_dev_pin(&server, pin, sizeof pin);
	load_module();
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	open_login(&s);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(dlclose(module), 0);
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

/* Rows the store holds for objects named name (the HSM's SQLite file, read with sqlite3). */
static long store_rows(const char *name)
{
	char *out = NULL;
	long n;

	assert_int_equal(kwt_run(server.dir, &out, "sqlite3 '%s/keystore.db' \"SELECT count(*) FROM objects WHERE "
						   "name = '%s'\"",
				 server.dir, name),
			 0);
	n = strtol(out, NULL, 10);
	free(out);
	return n;
}

/* The session objects keywardd holds for all connections (keyward-admin status). */
static long held(void)
{
	char *out = NULL, *line;
	long n = -1;

	assert_int_equal(kwt_admin(&server, NULL, &out, "status"), 0);
	if ((line = strstr(out, "session objects: ")))
		n = strtol(line + strlen("session objects: "), NULL, 10);
	else
		fail_msg("keyward-admin status says nothing of session objects:\n%s", out);
	free(out);
	return n;
}

/* Waits (at most 30 s) until keywardd holds want session objects. */
static void expect_held_soon(long want)
{
	long got = -1;

	for (int i = 0; i < 300 && (got = held()) != want; i++)
		usleep(100 * 1000);
	if (got != want)
		fail_msg("keywardd holds %ld session objects, expected %ld", got, want);
}

/* Objects labelled label that session ss finds. */
static CK_ULONG count(CK_SESSION_HANDLE ss, const char *label)
{
	CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h[8];
	CK_ULONG n = 0;

	assert_int_equal(f->C_FindObjectsInit(ss, t, 1), CKR_OK);
	assert_int_equal(f->C_FindObjects(ss, h, 8, &n), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(ss), CKR_OK);
	return n;
}

/* A P-256 pair labelled label on session ss, CKA_TOKEN as given on both halves. */
static void gen_pair(CK_SESSION_HANDLE ss, const char *label, CK_BBOOL token, CK_OBJECT_HANDLE *pub,
		     CK_OBJECT_HANDLE *priv)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pt[] = {{CKA_LABEL, (void *)label, strlen(label)},
			     {CKA_EC_PARAMS, p256, sizeof p256},
			     {CKA_TOKEN, &token, sizeof token}};
	CK_ATTRIBUTE vt[] = {{CKA_LABEL, (void *)label, strlen(label)},
			     {CKA_TOKEN, &token, sizeof token},
			     {CKA_SIGN, &yes, sizeof yes}};

	assert_int_equal(f->C_GenerateKeyPair(ss, &m, pt, 3, vt, 3, pub, priv), CKR_OK);
}

static CK_BBOOL token_of(CK_SESSION_HANDLE ss, CK_OBJECT_HANDLE h)
{
	CK_BBOOL b = 2;
	CK_ATTRIBUTE t = {CKA_TOKEN, &b, sizeof b};

	assert_int_equal(f->C_GetAttributeValue(ss, h, &t, 1), CKR_OK);
	return b;
}

/* priv signs a digest on session ss, and OpenSSL verifies it with pub's CKA_PUBLIC_KEY_INFO. */
static void expect_signs(CK_SESSION_HANDLE ss, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	unsigned char digest[32], sig[128], spki[512];
	CK_ULONG sig_len = sizeof sig;
	CK_ATTRIBUTE t = {CKA_PUBLIC_KEY_INFO, spki, sizeof spki};

	SHA256((const unsigned char *)"session", 7, digest);
	assert_int_equal(f->C_SignInit(ss, &m, priv), CKR_OK);
	assert_int_equal(f->C_Sign(ss, digest, sizeof digest, sig, &sig_len), CKR_OK);
	assert_int_equal(f->C_GetAttributeValue(ss, pub, &t, 1), CKR_OK);
	assert_true(kwt_ecdsa_verifies(spki, t.ulValueLen, digest, sizeof digest, sig, sig_len));
}

/* What pkcs11-tool, another process, lists on the machine token after logging in. */
static char *other_process_listing(void)
{
	char *out = NULL;

	if (kwt_run(server.dir, &out, KWT_P11_ENV "pkcs11-tool --module '%s' --slot-index 0 --login --pin '%s' "
						  "--list-objects",
		    module_path(), pin) != 0)
		fail_msg("pkcs11-tool --list-objects failed:\n%s", out);
	return out;
}

/*
 * A CKA_TOKEN false pair signs, is seen by another session of this
 * process, not by pkcs11-tool or another libkeyward connection, is not in
 * the store (a token pair made alongside is), and is gone from the HSM
 * when the session that made it closes.
 */
static void test_session_pair(void **state)
{
	CK_SESSION_HANDLE s2;
	CK_OBJECT_HANDLE pub, priv, tpub, tpriv;
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	kw_object_list *l = NULL;
	kw_client *c = NULL;
	char *listing;

	(void)state;
	open_login(&s2);
	gen_pair(s2, "session-pair", CK_FALSE, &pub, &priv);
	gen_pair(s2, "token-pair", CK_TRUE, &tpub, &tpriv);
	assert_int_equal(token_of(s2, pub), CK_FALSE);
	assert_int_equal(token_of(s2, priv), CK_FALSE);
	assert_int_equal(token_of(s2, tpriv), CK_TRUE);

	/* nothing of it in the store; the token pair is there */
	assert_int_equal(store_rows("session-pair"), 0);
	assert_int_equal(store_rows("token-pair"), 2);
	assert_int_equal(held(), 2);

	/* it signs, on its session and on another of this process, which finds it too */
	expect_signs(s2, priv, pub);
	expect_signs(s, priv, pub);
	assert_int_equal(count(s, "session-pair"), 2);

	/* another process sees the token pair only */
	listing = other_process_listing();
	if (!strstr(listing, "token-pair") || strstr(listing, "session-pair"))
		fail_msg("pkcs11-tool in another process lists:\n%s", listing);
	free(listing);
	/* and so does another connection */
	kwt_ok(kw_client_new(server.conf, &c));
	kwt_ok(kw_client_set_pin(c, pin));
	kwt_ok(kw_list_objects(c, NULL, "session-pair", &l));
	assert_int_equal(kw_object_list_count(l), 0);
	kw_object_list_free(l);
	kw_client_free(c);

	/* C_CloseSession destroys it on the HSM: a fresh search there finds nothing */
	assert_int_equal(f->C_CloseSession(s2), CKR_OK);
	assert_int_equal(count(s, "session-pair"), 0);
	assert_int_equal(held(), 0);
	assert_int_equal(f->C_SignInit(s, &m, priv), CKR_KEY_HANDLE_INVALID);
	assert_int_equal(count(s, "token-pair"), 2);
}

/*
 * A session data object: CKA_TOKEN false, not stored, destroyed with
 * C_DestroyObject; C_CloseAllSessions destroys what its sessions made; an
 * AES key with CKA_TOKEN false is refused, and not stored either.
 */
static void test_session_objects(void **state)
{
	CK_OBJECT_CLASS data = CKO_DATA;
	CK_BYTE value[] = "session data";
	CK_ULONG len = 32;
	CK_MECHANISM aes = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ATTRIBUTE dt[] = {{CKA_CLASS, &data, sizeof data},
			     {CKA_LABEL, "session-data", 12},
			     {CKA_VALUE, value, sizeof value},
			     {CKA_TOKEN, &no, sizeof no}};
	CK_ATTRIBUTE kt[] = {{CKA_LABEL, "session-aes", 11},
			     {CKA_VALUE_LEN, &len, sizeof len},
			     {CKA_TOKEN, &no, sizeof no},
			     {CKA_WRAP, &yes, sizeof yes}};
	CK_OBJECT_HANDLE h, pub, priv;
	CK_SESSION_HANDLE s2;

	(void)state;
	assert_int_equal(f->C_CreateObject(s, dt, 4, &h), CKR_OK);
	assert_int_equal(token_of(s, h), CK_FALSE);
	assert_int_equal(store_rows("session-data"), 0);
	assert_int_equal(count(s, "session-data"), 1);
	assert_int_equal(f->C_DestroyObject(s, h), CKR_OK);
	assert_int_equal(count(s, "session-data"), 0);
	assert_int_equal(held(), 0);

	assert_int_equal(f->C_GenerateKey(s, &aes, kt, 4, &h), CKR_ATTRIBUTE_VALUE_INVALID);
	assert_int_equal(store_rows("session-aes"), 0);

	/* C_CloseAllSessions: every session's objects go (s is opened again for the next tests) */
	open_login(&s2);
	gen_pair(s2, "all-pair", CK_FALSE, &pub, &priv);
	assert_int_equal(held(), 2);
	assert_int_equal(f->C_CloseAllSessions(SLOT_MACHINE), CKR_OK);
	assert_int_equal(held(), 0);
	open_login(&s);
	assert_int_equal(count(s, "all-pair"), 0);
	assert_int_equal(store_rows("all-pair"), 0);
}

/*
 * A process that made a session pair and exits without C_Finalize: keywardd
 * held its objects while it ran and holds none once it is gone.
 */
static void test_session_process_exit(void **state)
{
	int ready[2], go[2];
	char c = 0;
	pid_t pid;
	int status;

	(void)state;
	assert_int_equal(held(), 0);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		CK_SESSION_HANDLE cs;
		CK_OBJECT_HANDLE pub, priv;
		char ok = 0;

		/* only the parent writes go: if it fails and exits, the read below ends */
		close(go[1]);
		close(ready[0]);
		/* a fresh start of the module in the child, as PKCS#11 asks after fork() */
		if (f->C_Initialize(NULL) == CKR_OK &&
		    f->C_OpenSession(SLOT_MACHINE, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &cs) == CKR_OK &&
		    f->C_Login(cs, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)) == CKR_OK) {
			static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
			CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
			CK_ATTRIBUTE pt[] = {{CKA_LABEL, "child-pair", 10},
					     {CKA_EC_PARAMS, p256, sizeof p256},
					     {CKA_TOKEN, &no, sizeof no}};
			CK_ATTRIBUTE vt[] = {{CKA_LABEL, "child-pair", 10}, {CKA_TOKEN, &no, sizeof no}};

			ok = f->C_GenerateKeyPair(cs, &m, pt, 3, vt, 2, &pub, &priv) == CKR_OK;
		}
		if (write(ready[1], &ok, 1) != 1 || read(go[0], &c, 1) < 0)
			_exit(2);
		_exit(ok ? 0 : 1); /* no C_Finalize: the process just ends */
	}
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(c, 1);
	assert_int_equal(held(), 2);
	assert_int_equal(store_rows("child-pair"), 0);
	assert_int_equal(count(s, "child-pair"), 0);
	assert_int_equal(write(go[1], "x", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	/* the child's connection closes as it exits; keywardd then drops its objects */
	expect_held_soon(0);
	assert_int_equal(store_rows("child-pair"), 0);
}

/* libkeyward: a session key's id names nothing on another connection; closing its own frees it. */
static void test_session_ids(void **state)
{
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	unsigned char digest[32] = {1}, sig[128];
	size_t sig_len = sizeof sig;
	kw_client *c1 = NULL, *c2 = NULL;
	kw_object *priv = NULL, *pub = NULL, *got = NULL;
	kw_object_list *l = NULL;
	unsigned deleted = 0;
	uint64_t id;

	(void)state;
	kwt_ok(kw_client_new(server.conf, &c1));
	kwt_ok(kw_client_set_pin(c1, pin));
	kwt_ok(kw_client_single_connection(c1));
	kwt_ok(kw_client_new(server.conf, &c2));
	kwt_ok(kw_client_set_pin(c2, pin));
	kwt_ok(kw_generate_key(c1, KWT_OWNER, "ids", KW_KEY_EC, 0, "P-256", KW_GEN_SESSION, KW_USAGE_SIGN, &priv,
			       &pub));
	id = kw_object_id(priv);
	assert_true(kw_object_session(priv) && kw_object_session(pub));
	assert_true(id & KW_OBJECT_ID_SESSION);

	kwt_ok(kw_sign(c1, id, &m, digest, sizeof digest, sig, &sig_len));
	sig_len = sizeof sig;
	assert_int_equal(kw_sign(c2, id, &m, digest, sizeof digest, sig, &sig_len), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_get_object(c2, id, NULL, NULL, KW_CLASS_ANY, &got), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_get_object(c2, 0, KWT_OWNER, "ids", KW_CLASS_ANY, &got), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_delete_objects(c2, id, NULL, NULL, KW_CLASS_ANY, &deleted), KW_ERR_NOT_FOUND);
	kwt_ok(kw_list_objects(c2, KWT_OWNER, "ids", &l));
	assert_int_equal(kw_object_list_count(l), 0);
	kw_object_list_free(l);
	kwt_ok(kw_list_objects(c1, KWT_OWNER, "ids", &l));
	assert_int_equal(kw_object_list_count(l), 2);
	kw_object_list_free(l);
	/* by name, on its own connection */
	kwt_ok(kw_get_object(c1, 0, KWT_OWNER, "ids", KW_CLASS_PRIVATE_KEY, &got));
	assert_true(kw_object_id(got) == id);
	kw_object_free(got);
	/* a session object is not changed, copied or moved */
	assert_int_equal(kw_set_attributes(c1, id, NULL, NULL, KW_CLASS_ANY, -1, -1, "renamed"), KW_ERR_ARGUMENTS);
	assert_int_equal(store_rows("ids"), 0);
	assert_int_equal(held(), 2);
	kw_object_free(priv);
	kw_object_free(pub);
	kw_client_free(c2);
	kw_client_free(c1);
	expect_held_soon(0);
}

/* One connection holds at most 256 session objects, and at most 1 MiB of them. */
static void test_session_limits(void **state)
{
	static unsigned char big[65536];
	kw_client *c = NULL;
	char name[32];
	int i;

	(void)state;
	kwt_ok(kw_client_new(server.conf, &c));
	kwt_ok(kw_client_set_pin(c, pin));
	kwt_ok(kw_client_single_connection(c));
	for (i = 0; i < 256; i++) {
		snprintf(name, sizeof name, "many-%d", i);
		kwt_ok(kw_create_object(c, KWT_OWNER, name, KW_CLASS_DATA, (const unsigned char *)"x", 1, NULL, 0, NULL,
					KW_GEN_SESSION, NULL));
	}
	assert_int_equal(kw_create_object(c, KWT_OWNER, "one-too-many", KW_CLASS_DATA, (const unsigned char *)"x", 1,
					  NULL, 0, NULL, KW_GEN_SESSION, NULL),
			 KW_ERR_STORE_FULL);
	assert_non_null(strstr(kw_last_error(), "at most 256"));
	assert_int_equal(held(), 256);
	kw_client_free(c);
	expect_held_soon(0);

	kwt_ok(kw_client_new(server.conf, &c));
	kwt_ok(kw_client_set_pin(c, pin));
	kwt_ok(kw_client_single_connection(c));
	for (i = 0; i < 100; i++) {
		kw_rv rv;

		snprintf(name, sizeof name, "big-%d", i);
		rv = kw_create_object(c, KWT_OWNER, name, KW_CLASS_DATA, big, sizeof big, NULL, 0, NULL, KW_GEN_SESSION,
				      NULL);
		if (rv == KW_ERR_STORE_FULL)
			break;
		kwt_ok(rv);
	}
	/* 1 MiB holds 15 objects of 64 KiB (each charged 1 KiB more) */
	assert_int_equal(i, 15);
	assert_int_equal(store_rows("big-0"), 0);
	kw_client_free(c);
	expect_held_soon(0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_pair),
		cmocka_unit_test(test_session_objects),
		cmocka_unit_test(test_session_process_exit),
		cmocka_unit_test(test_session_ids),
		cmocka_unit_test(test_session_limits),
	};

	return cmocka_run_group_tests_name("integration_pkcs11_session", tests, setup, teardown);
}
