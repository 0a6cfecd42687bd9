/*
 * Issue 15: every failure names its cause and what to do, in libkeyward's
 * messages, in ksputil's, and in keyward-pkcs11.so's CK_RV and log line:
 * an HSM that is unreachable (the hosts and ports tried, the socket error),
 * locked (keyward-admin unlock), a client not registered or revoked, a
 * wrong PIN, a key that is not there (its name and owner), and a refusal
 * by policy. No message names a C function. A locked HSM is no longer
 * CKR_USER_NOT_LOGGED_IN, nor an unreachable one a wrong PIN.
 *
 * One keywardd started from a configuration (partition "p" and its
 * client); the module is loaded here with dlopen, its standard error
 * captured around the calls that fail.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <p11-kit/pkcs11.h>

#include "harness.h"

static struct kwt_server server;
static kw_client *client; /* of partition "p", credential p.crt/p.key (no PIN) */

static void assert_contains(const char *haystack, const char *needle)
{
	if (!haystack || !strstr(haystack, needle))
		fail_msg("\"%s\" not in:\n%s", needle, haystack ? haystack : "(nothing)");
}

static void assert_not_contains(const char *haystack, const char *needle)
{
	if (haystack && strstr(haystack, needle))
		fail_msg("\"%s\" in:\n%s", needle, haystack);
}

static int count_of(const char *haystack, const char *needle)
{
	int n = 0;

	for (const char *p = haystack; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/*
 * DIR/<name>.conf for partition with credential DIR/<cred>.crt/.key, the
 * machine owner KWT_OWNER, HSMs on port1 (and port2 if not 0), and pin_file
 * if not NULL. Returns the path in a static buffer per call.
 */
static const char *write_conf(const char *name, const char *partition, const char *cred, unsigned short port1,
			      unsigned short port2, const char *pin_file)
{
	static char path[4][400];
	static int next;
	char text[2048], second[128] = "", pin_line[600] = "";
	char *out = path[next++ % 4];

	if (port2)
		snprintf(second, sizeof second, "[hsm second]\nhost = 127.0.0.1\nport = %u\n", port2);
	if (pin_file)
		snprintf(pin_line, sizeof pin_line, "pin_file = %s\n", pin_file);
	snprintf(text, sizeof text,
		 "[client]\npartition = %s\nca = tls/ca.crt\ncert = %s.crt\nkey = %s.key\nmachine_owner = " KWT_OWNER
		 "\nconnect_timeout = 2\ncommand_timeout = 30\n%s\n[hsm first]\nhost = 127.0.0.1\nport = %u\n%s",
		 partition, cred, cred, pin_line, port1, second);
	snprintf(out, 400, "%s/%s.conf", server.dir, name);
	kwt_write_file(out, text);
	return out;
}

/* ksputil with conf; *err gets its standard error (caller frees). Returns the exit code. */
static int ksputil(const char *conf, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int ksputil(const char *conf, char **err, const char *fmt, ...)
{
	char args[1024], cmd[4096], err_path[400];
	va_list ap;
	int status;

	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(err_path, sizeof err_path, "%s/ksputil.err", server.dir);
	snprintf(cmd, sizeof cmd, "KEYWARD_CONF='%s' '%s' %s </dev/null >/dev/null 2>'%s'", conf, KSPUTIL_PATH, args,
		 err_path);
	status = system(cmd);
	*err = kwt_read_file(err_path, NULL);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- the module, with its standard error captured ---- */

static void *module_handle;
static int saved_stderr = -1;
static char capture_path[400];

static CK_FUNCTION_LIST_PTR module_init(const char *conf)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	CK_FUNCTION_LIST_PTR f = NULL;

	assert_int_equal(setenv("KEYWARD_CONF", conf, 1), 0);
	if (!module_handle)
		module_handle = dlopen(KEYWARD_PKCS11_PATH, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(module_handle);
	*(void **)&get = dlsym(module_handle, "C_GetFunctionList");
	assert_non_null(get);
	assert_int_equal(get(&f), CKR_OK);
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	return f;
}

static void capture_begin(void)
{
	int fd;

	snprintf(capture_path, sizeof capture_path, "%s/module.err", server.dir);
	fflush(stderr);
	saved_stderr = dup(2);
	fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && saved_stderr >= 0);
	dup2(fd, 2);
	close(fd);
}

/* What the module wrote to standard error since capture_begin (caller frees). */
static char *capture_end(void)
{
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	saved_stderr = -1;
	return kwt_read_file(capture_path, NULL);
}

static CK_SESSION_HANDLE open_session(CK_FUNCTION_LIST_PTR f)
{
	CK_SESSION_HANDLE s = 0;

	assert_int_equal(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
	return s;
}

/* The private key labelled label on the machine token (slot 0, owner KWT_OWNER). */
static CK_OBJECT_HANDLE find_key(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h = 0;
	CK_ULONG n = 0;

	assert_int_equal(f->C_FindObjectsInit(s, t, 2), CKR_OK);
	assert_int_equal(f->C_FindObjects(s, &h, 1, &n), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(s), CKR_OK);
	assert_int_equal(n, 1);
	return h;
}

static CK_RV sign_once(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
	CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
	CK_BYTE data[] = "to be signed", sig[128];
	CK_ULONG sig_len = sizeof sig;
	CK_RV rv = f->C_SignInit(s, &m, key);

	if (rv)
		return rv;
	return f->C_Sign(s, data, sizeof data - 1, sig, &sig_len);
}

static int setup(void **state)
{
	(void)state;
	client = kwt_start_initialized(&server, NULL);
	/* the module's machine token is KWT_OWNER's, as machine_owner says in every configuration here */
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (module_handle)
		dlclose(module_handle);
	kwt_stop_client(&server, client);
	return 0;
}

/* A locked HSM: "keyward-admin unlock" everywhere; the module answers CKR_DEVICE_ERROR, once logged. */
static void test_locked(void **state)
{
	const char *conf = write_conf("locked", "p", "p", server.port, 0, NULL);
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	unsigned char digest[32] = {1}, sig[128];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	uint64_t id;
	char *out = NULL;

	(void)state;
	kwt_gen_ec(client, "lockedkey", &id, NULL, NULL);
	f = module_init(conf);
	s = open_session(f);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "any-pin", 7), CKR_OK);
	key = find_key(f, s, "lockedkey");

	assert_int_equal(kwt_admin(&server, NULL, &out, "lock"), 0);
	free(out);
	/* libkeyward */
	assert_int_equal(kw_sign(client, id, &m, digest, sizeof digest, sig, &sig_len), KW_ERR_STORE_LOCKED);
	assert_contains(kw_last_error(), "keyward-admin unlock");
	/* ksputil */
	assert_int_equal(ksputil(conf, &out, "createkey --name x --algorithm ECDSA -m"), 1);
	assert_contains(out, "locked");
	assert_contains(out, "keyward-admin unlock");
	assert_not_contains(out, "kw_");
	free(out);
	/* the module: not "user not logged in" (the user is), the cause logged once */
	capture_begin();
	assert_int_equal(sign_once(f, s, key), CKR_DEVICE_ERROR);
	assert_int_equal(sign_once(f, s, key), CKR_DEVICE_ERROR);
	out = capture_end();
	assert_contains(out, "keyward-pkcs11: signing with key \"lockedkey\" of owner " KWT_OWNER);
	assert_contains(out, "keyward-admin unlock");
	assert_int_equal(count_of(out, "keyward-admin unlock"), 1);
	assert_not_contains(out, "kw_");
	free(out);

	{
		char path[400];
		snprintf(path, sizeof path, "%s/pass", server.dir);
		kwt_write_file(path, KWT_PASSPHRASE "\n");
		assert_int_equal(kwt_admin(&server, NULL, &out, "unlock --passphrase-file %s", path), 0);
		free(out);
	}
	assert_int_equal(sign_once(f, s, key), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

/* No HSM answers: every host:port tried and the socket's error; the module says CKR_DEVICE_ERROR, not a wrong PIN. */
static void test_unreachable(void **state)
{
	unsigned short p1 = kwt_free_port(), p2 = kwt_free_port();
	const char *conf = write_conf("dead", "p", "p", p1, p2, NULL);
	char want[64], *out = NULL;
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE s;
	kw_client *c;
	unsigned char buf[4];

	(void)state;
	kwt_ok(kw_client_new(conf, &c));
	assert_int_equal(kw_generate_random(c, buf, sizeof buf), KW_ERR_UNREACHABLE);
	snprintf(want, sizeof want, "127.0.0.1:%u (connection refused)", p1);
	assert_contains(kw_last_error(), want);
	snprintf(want, sizeof want, "127.0.0.1:%u (connection refused)", p2);
	assert_contains(kw_last_error(), want);
	assert_contains(kw_last_error(), "no HSM reachable (tried 2");
	kw_client_free(c);

	assert_int_equal(ksputil(conf, &out, "enumkeys -a"), 3);
	assert_contains(out, want);
	assert_not_contains(out, "kw_");
	free(out);

	f = module_init(conf);
	s = open_session(f);
	capture_begin();
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "any-pin", 7), CKR_DEVICE_ERROR);
	out = capture_end();
	assert_contains(out, "keyward-pkcs11: login: no HSM reachable");
	assert_contains(out, want);
	assert_not_contains(out, "PIN");
	free(out);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

/*
 * A credential the HSM no longer accepts (its partition deleted), and a
 * client that never registered: "register", and at login
 * CKR_USER_PIN_NOT_INITIALIZED, not a wrong PIN.
 */
static void test_not_registered(void **state)
{
	kw_client *q = kwt_new_partition_client(&server, "q");
	const char *conf = write_conf("qconf", "q", "q", server.port, 0, NULL);
	const char *none = write_conf("none", "p", "nosuchcred", server.port, 0, NULL);
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE s;
	char *out = NULL;

	(void)state;
	kw_client_free(q);
	assert_int_equal(kwt_admin(&server, NULL, &out, "partition delete q --yes"), 0);
	free(out);
	assert_int_equal(ksputil(conf, &out, "enumkeys -a"), 1);
	assert_contains(out, "not accepted by this HSM");
	assert_contains(out, "register again");
	assert_not_contains(out, "kw_");
	free(out);

	f = module_init(conf);
	s = open_session(f);
	capture_begin();
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "any-pin", 7), CKR_USER_PIN_NOT_INITIALIZED);
	out = capture_end();
	assert_contains(out, "keyward-pkcs11: login: ");
	assert_contains(out, "register again");
	free(out);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);

	/* no credential file at all: register first */
	assert_int_equal(ksputil(none, &out, "enumkeys -a"), 1);
	assert_contains(out, "register this client first: ksputil register");
	assert_not_contains(out, "kw_");
	free(out);
	f = module_init(none);
	s = open_session(f);
	capture_begin();
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "any-pin", 7), CKR_USER_PIN_NOT_INITIALIZED);
	out = capture_end();
	assert_contains(out, "ksputil register");
	free(out);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

/*
 * A wrong PIN is CKR_PIN_INCORRECT and says so; the pin_file recorded at
 * registration opens the credential for the module before a login, and a
 * wrong one in it is named.
 */
static void test_wrong_pin_and_pin_file(void **state)
{
	char pw_file[400], pin_file[400], password[64] = "", *out = NULL, *p;
	const char *conf;
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE s;
	CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}};
	CK_OBJECT_HANDLE h[4];
	CK_ULONG n = 0;

	(void)state;
	assert_int_equal(kwt_admin(&server, NULL, &out, "partition create r"), 0);
	p = strstr(out, "setup password: ");
	assert_non_null(p);
	sscanf(p + strlen("setup password: "), "%63s", password);
	free(out);
	snprintf(pw_file, sizeof pw_file, "%s/r.password", server.dir);
	snprintf(pin_file, sizeof pin_file, "%s/r.pin", server.dir);
	kwt_write_file(pw_file, password);
	kwt_write_file(pin_file, "the right PIN\n");
	conf = write_conf("rconf", "r", "r", server.port, 0, NULL);
	assert_int_equal(ksputil(conf, &out, "register --password-file %s --pin-file %s", pw_file, pin_file), 0);
	free(out);
	assert_int_equal(ksputil(conf, &out, "createkey --name rkey --algorithm ECDSA -m"), 0);
	free(out);

	/* before a login the module opens the credential with the recorded pin_file: public objects show */
	f = module_init(conf);
	s = open_session(f);
	assert_int_equal(f->C_FindObjectsInit(s, t, 1), CKR_OK);
	assert_int_equal(f->C_FindObjects(s, h, 4, &n), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(s), CKR_OK);
	assert_int_equal(n, 1);
	capture_begin();
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "the wrong PIN", 13), CKR_PIN_INCORRECT);
	out = capture_end();
	assert_contains(out, "keyward-pkcs11: login: wrong PIN");
	assert_not_contains(out, "kw_");
	free(out);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "the right PIN", 13), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);

	/* a wrong PIN in the pin_file: named, with the file */
	kwt_write_file(pin_file, "not the PIN\n");
	assert_int_equal(ksputil(conf, &out, "enumkeys -a"), 1);
	assert_contains(out, "wrong PIN: the PIN in ");
	assert_contains(out, pin_file);
	assert_not_contains(out, "kw_");
	free(out);
	kwt_write_file(pin_file, "the right PIN\n");
}

/* A key that is not there is named with its owner; a change the key's policy forbids says why. */
static void test_not_found_and_policy(void **state)
{
	const char *conf = write_conf("pconf", "p", "p", server.port, 0, NULL);
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	kw_object *priv = NULL, *pub = NULL;
	unsigned deleted = 0;
	char *out = NULL;

	(void)state;
	assert_int_equal(ksputil(conf, &out, "chkeysowner nosuchkey " KWT_OWNER " S-1-5-21-4-5-6"), 4);
	assert_contains(out, "\"nosuchkey\"");
	assert_contains(out, KWT_OWNER);
	assert_not_contains(out, "kw_");
	free(out);
	assert_int_equal(ksputil(conf, &out, "deletekey --name nosuchkey -m --yes"), 4);
	assert_contains(out, "no key \"nosuchkey\" under owner " KWT_OWNER);
	free(out);

	/* policy: a key that is not modifiable keeps its owner */
	kwt_ok(kw_generate_key(client, KWT_OWNER, "fixed", KW_KEY_EC, 0, "P-256", KW_GEN_NOT_MODIFIABLE, 0, &priv,
			       &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	assert_int_equal(ksputil(conf, &out, "chkeysowner fixed " KWT_OWNER " S-1-5-21-4-5-6"), 1);
	assert_contains(out, "not modifiable");
	assert_contains(out, "\"fixed\"");
	assert_not_contains(out, "kw_");
	free(out);

	/* the module: a key deleted under an operation is named with its owner */
	kwt_gen_ec(client, "goner", &(uint64_t){0}, NULL, NULL);
	f = module_init(conf);
	s = open_session(f);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "any-pin", 7), CKR_OK);
	key = find_key(f, s, "goner");
	kwt_ok(kw_delete_objects(client, 0, KWT_OWNER, "goner", KW_CLASS_ANY, &deleted));
	assert_int_equal(deleted, 2);
	capture_begin();
	assert_int_not_equal(sign_once(f, s, key), CKR_OK);
	out = capture_end();
	assert_contains(out, "keyward-pkcs11: signing with key \"goner\" of owner " KWT_OWNER);
	assert_contains(out, "no object");
	free(out);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_locked),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_not_registered),
		cmocka_unit_test(test_wrong_pin_and_pin_file),
		cmocka_unit_test(test_not_found_and_policy),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
