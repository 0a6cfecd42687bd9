/*
 * libkeyward against the in-test TLS 1.3 server (helpers.c): Hello and
 * probe, the pool, request/response id matching, oversize frames, server
 * statuses, paging, buffer sizes, retry after a dropped connection, fork,
 * server verification (CA, name), encrypted credential keys and enrollment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/client.h"
#include "helpers.h"

static char *dir;
static struct kwt_pki pki;
static struct kwt_server srv;

static int setup(void **state)
{
	(void)state;
	dir = kwt_tmpdir();
	kwt_make_pki(dir, &pki);
	kwt_server_start(&srv, dir, &pki);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_server_stop(&srv);
	kwt_pki_cleanup(&pki);
	kwt_rmtree(dir);
	free(dir);
	return 0;
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* A client of the test server; extra lines go into [client], hsm_extra into [hsm]. */
static kw_client *client_with(const char *partition, const char *extra, const char *hsm_extra)
{
	static int n;
	char *text, name[32], *path;
	kw_client *c;

	assert_true(asprintf(&text,
			     "[client]\npartition = %s\nca = ca.crt\ncommand_timeout = 5\n%s\n"
			     "[hsm test]\nhost = 127.0.0.1\nport = %d\n%s\n",
			     partition, extra ? extra : "cert = client.crt\nkey = client.key", srv.port,
			     hsm_extra ? hsm_extra : "") > 0);
	snprintf(name, sizeof name, "c%d.conf", n++);
	path = kwt_write(dir, name, text);
	assert_int_equal(kw_client_new(path, &c), KW_OK);
	free(text);
	free(path);
	return c;
}

static void test_probe(void **state)
{
	kw_client *c = client_with("dev", NULL, NULL);
	unsigned version = 0;
	int init = 0, locked = 0;

	(void)state;
	assert_int_equal(kw_client_probe(c, 0, &version, &init, &locked), KW_OK);
	assert_int_equal(version, KW_PROTOCOL_VERSION);
	assert_int_equal(init, 1);
	assert_int_equal(locked, 1);
	kw_client_free(c);

	/* before enrollment: no credential files, the probe still works */
	c = client_with("dev", "cert = none.crt\nkey = none.key", NULL);
	assert_int_equal(kw_client_probe(c, 0, &version, &init, &locked), KW_OK);
	kw_client_free(c);
}

static void test_pool_reuse_and_random(void **state)
{
	kw_client *c = client_with("dev", NULL, NULL);
	int before = atomic_load(&srv.accepted);
	unsigned char buf[100];

	(void)state;
	for (int i = 0; i < 5; i++) {
		memset(buf, 0, sizeof buf);
		assert_int_equal(kw_generate_random(c, buf, sizeof buf), KW_OK);
		assert_int_equal(buf[0], 0xab);
		assert_int_equal(buf[99], 0xab);
	}
	/* one connection served all five */
	assert_int_equal(atomic_load(&srv.accepted) - before, 1);
	kw_client_free(c);
}

static void test_id_mismatch_and_oversize(void **state)
{
	kw_client *c = client_with("dev", NULL, NULL);
	unsigned char buf[16];
	int before;

	(void)state;
	assert_int_equal(kw_generate_random(c, buf, 7), KW_ERR_PROTOCOL);
	assert_contains(kw_last_error(), "never sent");
	assert_contains(kw_last_error(), "127.0.0.1:");

	/* the broken connection is not reused */
	before = atomic_load(&srv.accepted);
	assert_int_equal(kw_generate_random(c, buf, 16), KW_OK);
	assert_int_equal(atomic_load(&srv.accepted) - before, 1);

	assert_int_equal(kw_generate_random(c, buf, 8), KW_ERR_PROTOCOL);
	assert_contains(kw_last_error(), "2147483647 bytes");
	assert_int_equal(kw_generate_random(c, buf, 16), KW_OK);
	kw_client_free(c);
}

static void test_server_status(void **state)
{
	kw_client *c = client_with("dev", NULL, NULL);
	unsigned char buf[16];
	int before;

	(void)state;
	assert_int_equal(kw_generate_random(c, buf, 16), KW_OK);
	before = atomic_load(&srv.accepted);
	assert_int_equal(kw_generate_random(c, buf, 9), KW_ERR_NOT_FOUND);
	assert_string_equal(kw_last_error(), "no such thing");
	/* a status is not a broken connection: it stays in the pool */
	assert_int_equal(kw_generate_random(c, buf, 16), KW_OK);
	assert_int_equal(atomic_load(&srv.accepted), before);
	kw_client_free(c);
}

static void test_sign_buffer(void **state)
{
	kw_client *c = client_with("dev", NULL, NULL);
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	unsigned char digest[32], sig[64];
	size_t len;

	(void)state;
	for (int i = 0; i < 32; i++)
		digest[i] = (unsigned char)i;
	len = 10;
	assert_int_equal(kw_sign(c, 5, &m, digest, sizeof digest, sig, &len), KW_ERR_DATA_LEN);
	assert_int_equal(len, 64);
	assert_contains(kw_last_error(), "64 bytes");
	len = sizeof sig;
	assert_int_equal(kw_sign(c, 5, &m, digest, sizeof digest, sig, &len), KW_OK);
	assert_int_equal(len, 64);
	assert_int_equal(sig[33], 1);
	assert_int_equal(kw_sign(c, 0, &m, digest, sizeof digest, sig, &len), KW_ERR_ARGUMENTS);
	assert_int_equal(kw_sign(c, 5, NULL, digest, sizeof digest, sig, &len), KW_ERR_ARGUMENTS);
	kw_client_free(c);
}

static void test_objects(void **state)
{
	kw_client *c = client_with("dev", NULL, NULL);
	kw_object_list *l;
	kw_object *o;
	size_t len;

	(void)state;
	assert_int_equal(kw_get_object(c, 42, NULL, NULL, KW_CLASS_ANY, &o), KW_OK);
	assert_string_equal(kw_object_name(o), "myDemoCA");
	assert_string_equal(kw_object_owner(o), "S-1-5-21-1-2-3");
	assert_string_equal(kw_object_curve(o), "P-256");
	assert_int_equal(kw_object_bits(o), 256);
	assert_non_null(kw_object_public_key(o, &len));
	assert_int_equal(len, 5);
	kw_object_free(o);
	assert_int_equal(kw_get_object(c, 43, NULL, NULL, KW_CLASS_ANY, &o), KW_ERR_NOT_FOUND);
	assert_null(o);
	assert_int_equal(kw_get_object(c, 0, NULL, "x", KW_CLASS_ANY, &o), KW_ERR_ARGUMENTS);
	assert_contains(kw_last_error(), "owner");

	/* five objects, two per page: three requests, one list */
	assert_int_equal(kw_list_objects(c, NULL, NULL, &l), KW_OK);
	assert_int_equal(kw_object_list_count(l), 5);
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(kw_object_id(kw_object_list_get(l, i)), 10 * (i + 1));
	kw_object_list_free(l);
	kw_client_free(c);
}

static void test_retry_after_drop(void **state)
{
	kw_client *c = client_with("dev", NULL, NULL);
	unsigned char buf[16];
	int before;

	(void)state;
	assert_int_equal(kw_generate_random(c, buf, 16), KW_OK);
	before = atomic_load(&srv.accepted);
	/* the server drops the pooled connection when the next request arrives */
	atomic_store(&srv.drop_next, 1);
	assert_int_equal(kw_generate_random(c, buf, 16), KW_OK);
	assert_int_equal(atomic_load(&srv.accepted) - before, 1);
	kw_client_free(c);
}

static void test_fork(void **state)
{
	kw_client *c = client_with("dev", NULL, NULL);
	unsigned char buf[16];
	int before, status;
	pid_t pid;

	(void)state;
	assert_int_equal(kw_generate_random(c, buf, 16), KW_OK);
	before = atomic_load(&srv.accepted);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the child must not use the parent's connection: it opens its own */
		kw_rv rv = kw_generate_random(c, buf, 16);
		kw_client_free(c);
		_exit(rv == KW_OK && buf[0] == 0xab ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(atomic_load(&srv.accepted) - before, 1);
	/* the parent's pooled connection survived the child untouched */
	assert_int_equal(kw_generate_random(c, buf, 16), KW_OK);
	assert_int_equal(atomic_load(&srv.accepted) - before, 1);
	kw_client_free(c);
}

static void test_threads_share_client(void **state);

static void test_hello_refused(void **state)
{
	kw_client *c = client_with("wrongpart", NULL, NULL);
	unsigned char buf[4];

	(void)state;
	assert_int_equal(kw_generate_random(c, buf, 4), KW_ERR_AUTH);
	assert_contains(kw_last_error(), "is not the partition of this client's certificate");
	kw_client_free(c);
}

static kw_client *client_ca(const char *ca, const char *server_name)
{
	static int n;
	char *text, name[32], *path;
	kw_client *c;

	assert_true(asprintf(&text,
			     "[client]\npartition = dev\nca = %s\ncert = client.crt\nkey = client.key\n"
			     "[hsm test]\nhost = 127.0.0.1\nport = %d\nserver_name = %s\n",
			     ca, srv.port, server_name) > 0);
	snprintf(name, sizeof name, "ca%d.conf", n++);
	path = kwt_write(dir, name, text);
	assert_int_equal(kw_client_new(path, &c), KW_OK);
	free(text);
	free(path);
	return c;
}

static void test_untrusted_server(void **state)
{
	unsigned char buf[4];
	kw_client *c;

	(void)state;
	c = client_ca("other-ca.crt", "127.0.0.1");
	assert_int_equal(kw_generate_random(c, buf, 4), KW_ERR_AUTH);
	assert_contains(kw_last_error(), "server certificate not trusted");
	kw_client_free(c);

	c = client_ca("ca.crt", "wrong.example");
	assert_int_equal(kw_generate_random(c, buf, 4), KW_ERR_AUTH);
	assert_contains(kw_last_error(), "server certificate not trusted");
	assert_contains(kw_last_error(), "wrong.example");
	kw_client_free(c);

	c = client_ca("ca.crt", "localhost"); /* DNS SAN */
	assert_int_equal(kw_generate_random(c, buf, 4), KW_OK);
	kw_client_free(c);
}

static void test_encrypted_key(void **state)
{
	kw_client *c = client_with("dev", "cert = client.crt\nkey = client-enc.key", NULL);
	unsigned char buf[4];

	(void)state;
	assert_int_equal(kw_generate_random(c, buf, 4), KW_ERR_AUTH);
	assert_contains(kw_last_error(), "is encrypted and no PIN was given");
	assert_null(strstr(kw_last_error(), "kw_")); /* no C function named to a user */
	assert_int_equal(kw_client_set_pin(c, "0000"), KW_OK);
	assert_int_equal(kw_generate_random(c, buf, 4), KW_ERR_AUTH);
	assert_contains(kw_last_error(), "wrong PIN");
	assert_int_equal(kw_client_set_pin(c, "1234"), KW_OK);
	assert_int_equal(kw_generate_random(c, buf, 4), KW_OK);
	kw_client_free(c);
}

static void test_no_client_cert_refused(void **state)
{
	/* a configuration without a credential cannot make key requests */
	kw_client *c = client_with("dev", "", NULL);
	unsigned char buf[4];

	(void)state;
	assert_int_equal(kw_generate_random(c, buf, 4), KW_ERR_CONFIG);
	assert_contains(kw_last_error(), "no client credential");
	kw_client_free(c);
}

static void check_mode(const char *path, mode_t want)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, want);
}

static bool file_starts(const char *path, const char *prefix)
{
	char line[128] = "";
	FILE *f = fopen(path, "r");

	if (!f)
		return false;
	if (!fgets(line, sizeof line, f))
		line[0] = '\0';
	fclose(f);
	return strncmp(line, prefix, strlen(prefix)) == 0;
}

static void test_enroll(void **state)
{
	kw_client *c = client_with("dev", "cert = enrolled/sub/dev.crt\nkey = enrolled/sub/dev.key", NULL);
	unsigned char buf[4];
	char *crt, *key, *sub;

	(void)state;
	assert_true(asprintf(&crt, "%s/enrolled/sub/dev.crt", dir) > 0);
	assert_true(asprintf(&key, "%s/enrolled/sub/dev.key", dir) > 0);
	assert_true(asprintf(&sub, "%s/enrolled/sub", dir) > 0);

	assert_int_equal(kw_enroll(c, "wrong", NULL), KW_ERR_AUTH);
	assert_contains(kw_last_error(), "wrong setup password");
	assert_int_not_equal(access(key, F_OK), 0);
	assert_int_equal(kw_enroll(c, "", NULL), KW_ERR_ARGUMENTS);

	assert_int_equal(kw_enroll(c, "setup-pw", "pin1"), KW_OK);
	check_mode(crt, 0600);
	check_mode(key, 0600);
	check_mode(sub, 0700);
	assert_true(file_starts(key, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
	assert_true(file_starts(crt, "-----BEGIN CERTIFICATE-----"));

	/* the new credential is used; its key needs the PIN */
	assert_int_equal(kw_generate_random(c, buf, 4), KW_ERR_AUTH);
	assert_contains(kw_last_error(), "PIN");
	assert_int_equal(kw_client_set_pin(c, "pin1"), KW_OK);
	assert_int_equal(kw_generate_random(c, buf, 4), KW_OK);

	/* the PIN is checked against the key file, with no request */
	assert_int_equal(kw_client_check_pin(c, "pin2"), KW_ERR_AUTH);
	assert_contains(kw_last_error(), "wrong PIN");
	assert_int_equal(kw_client_check_pin(c, "pin1"), KW_OK);
	assert_int_equal(kw_client_check_pin(c, NULL), KW_ERR_ARGUMENTS);

	/* a service's pin_file opens the key; one open to others is refused */
	{
		kw_client *svc = client_with(
			"dev", "cert = enrolled/sub/dev.crt\nkey = enrolled/sub/dev.key\npin_file = svc.pin", NULL);
		char *pin_path;

		assert_true(asprintf(&pin_path, "%s/svc.pin", dir) > 0);
		free(kwt_write(dir, "svc.pin", "pin1\n"));
		assert_int_equal(chmod(pin_path, 0644), 0);
		assert_int_equal(kw_generate_random(svc, buf, 4), KW_ERR_CONFIG);
		assert_contains(kw_last_error(), "has mode 0644: group or others may read it");
		assert_contains(kw_last_error(), "chmod 600");
		assert_int_equal(chmod(pin_path, 0600), 0);
		assert_int_equal(kw_generate_random(svc, buf, 4), KW_OK);
		kw_client_free(svc);
		free(pin_path);
	}

	/* again without a PIN: a plain PKCS#8 key */
	assert_int_equal(kw_enroll(c, "setup-pw", NULL), KW_OK);
	assert_true(file_starts(key, "-----BEGIN PRIVATE KEY-----"));
	assert_int_equal(kw_client_set_pin(c, NULL), KW_OK);
	assert_int_equal(kw_generate_random(c, buf, 4), KW_OK);
	kw_client_free(c);
	free(crt);
	free(key);
	free(sub);
}

struct thread_arg {
	kw_client *c;
	int ok;
};

static void *worker(void *p)
{
	struct thread_arg *a = p;
	unsigned char buf[32];

	for (int i = 0; i < 20; i++)
		if (kw_generate_random(a->c, buf, sizeof buf) == KW_OK && buf[31] == 0xab)
			a->ok++;
	return NULL;
}

static void test_threads_share_client(void **state)
{
	kw_client *c = client_with("dev", "cert = client.crt\nkey = client.key\npool_size = 2", NULL);
	struct thread_arg args[6];
	pthread_t t[6];

	(void)state;
	for (int i = 0; i < 6; i++) {
		args[i].c = c;
		args[i].ok = 0;
		assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(args[i].ok, 20);
	}
	assert_true(c->n_conns <= 2);
	kw_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_pool_reuse_and_random),
		cmocka_unit_test(test_id_mismatch_and_oversize),
		cmocka_unit_test(test_server_status),
		cmocka_unit_test(test_sign_buffer),
		cmocka_unit_test(test_objects),
		cmocka_unit_test(test_retry_after_drop),
		cmocka_unit_test(test_fork),
		cmocka_unit_test(test_threads_share_client),
		cmocka_unit_test(test_hello_refused),
		cmocka_unit_test(test_untrusted_server),
		cmocka_unit_test(test_encrypted_key),
		cmocka_unit_test(test_no_client_cert_refused),
		cmocka_unit_test(test_enroll),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
