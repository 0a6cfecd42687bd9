/*
 * libkeyward against a real keywardd: failover between HSMs by priority,
 * one kw_client shared by many threads, use after fork(), reconnection
 * after the server restarts, and kw_client_probe.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "harness.h"

#define OWNER KWT_OWNER
#define PASSPHRASE "correct horse battery staple"
#define THREADS 8
#define PER_THREAD 200

static struct kwt_server server;
static kw_client *client;
static uint64_t key_id;
static unsigned char key_spki[512];
static size_t key_spki_len;

static void digest_of(unsigned seed, unsigned char digest[32])
{
	for (unsigned i = 0; i < 32; i++)
		digest[i] = (unsigned char)(seed * 131 + i * 17 + (seed >> 8));
}

/* Signs digest_of(seed) and returns whether the signature verifies (no cmocka: usable in a child). */
static kw_rv sign_checked(kw_client *c, uint64_t id, const unsigned char *spki, size_t spki_len, unsigned seed)
{
	unsigned char digest[32], sig[132];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	kw_rv rv;

	digest_of(seed, digest);
	rv = kw_sign(c, id, &m, digest, sizeof digest, sig, &sig_len);
	if (rv)
		return rv;
	if (sig_len != 64 || !kwt_ecdsa_verifies(spki, spki_len, digest, sizeof digest, sig, sig_len))
		return KW_ERR_SIGNATURE_INVALID;
	return KW_OK;
}

/* A client.conf in the dev server's directory with the dev credential and the given [hsm] sections. */
static void write_conf(const char *name, const char *hsms, char *path, size_t size)
{
	char text[2048];

	snprintf(path, size, "%s/%s.conf", server.dir, name);
	snprintf(text, sizeof text,
		 "[client]\npartition = dev\nca = tls/ca.crt\ncert = client/dev.crt\nkey = client/dev.key\npin_file = pin\n"
		 "connect_timeout = 3\ncommand_timeout = 30\n\n%s",
		 hsms);
	kwt_write_file(path, text);
}

static int setup(void **state)
{
	(void)state;
	client = kwt_start_dev_client(&server);
	kwt_gen_ec(client, "shared", &key_id, key_spki, &key_spki_len);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop_client(&server, client);
	return 0;
}

static void test_failover(void **state)
{
	unsigned short dead1 = kwt_free_port(), dead2;
	char hsms[512], conf[400], addr1[32], addr2[32];
	kw_client *c = NULL;
	kw_object *o = NULL;
	kw_rv rv;

	(void)state;
	do
		dead2 = kwt_free_port();
	while (dead2 == dead1 || dead2 == server.port);
	assert_int_not_equal(dead1, server.port);
	snprintf(addr1, sizeof addr1, "127.0.0.1:%u", dead1);
	snprintf(addr2, sizeof addr2, "127.0.0.1:%u", dead2);

	/* the preferred HSM is down: the other one serves */
	snprintf(hsms, sizeof hsms,
		 "[hsm down]\nhost = 127.0.0.1\nport = %u\npriority = 0\n\n"
		 "[hsm up]\nhost = 127.0.0.1\nport = %u\npriority = 1\n",
		 dead1, server.port);
	write_conf("failover", hsms, conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &c));
	assert_int_equal(kw_client_hsm_count(c), 2);
	assert_string_equal(kw_client_hsm_address(c, 0), addr1);
	assert_int_equal(kw_client_hsm_priority(c, 0), 0);
	assert_int_equal(kw_client_hsm_priority(c, 1), 1);
	for (unsigned i = 0; i < 5; i++)
		kwt_ok(sign_checked(c, key_id, key_spki, key_spki_len, i));
	kwt_ok(kw_get_object(c, key_id, NULL, NULL, KW_CLASS_ANY, &o));
	assert_string_equal(kw_object_name(o), "shared");
	kw_object_free(o);
	kw_client_free(c);

	/* the preferred HSM is the live one, the fallback is down: no detour */
	snprintf(hsms, sizeof hsms,
		 "[hsm down]\nhost = 127.0.0.1\nport = %u\npriority = 5\n\n"
		 "[hsm up]\nhost = 127.0.0.1\nport = %u\npriority = 1\n",
		 dead1, server.port);
	write_conf("failover2", hsms, conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &c));
	kwt_ok(sign_checked(c, key_id, key_spki, key_spki_len, 99));
	kw_client_free(c);

	/* all down: unreachable, and the message names every HSM tried */
	snprintf(hsms, sizeof hsms,
		 "[hsm a]\nhost = 127.0.0.1\nport = %u\npriority = 0\n\n"
		 "[hsm b]\nhost = 127.0.0.1\nport = %u\npriority = 1\n",
		 dead1, dead2);
	write_conf("alldead", hsms, conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &c));
	rv = sign_checked(c, key_id, key_spki, key_spki_len, 1);
	if (rv != KW_ERR_UNREACHABLE)
		fail_msg("all HSMs down: %s (%s), expected KW_ERR_UNREACHABLE", kw_rv_name(rv), kw_last_error());
	if (!strstr(kw_last_error(), addr1) || !strstr(kw_last_error(), addr2))
		fail_msg("the message does not name both %s and %s: %s", addr1, addr2, kw_last_error());
	kw_client_free(c);
}

struct worker {
	pthread_t th;
	unsigned index;
	unsigned ok;
	kw_rv first_error;
	char error[512];
	unsigned char sigs[PER_THREAD][64];
	size_t sig_lens[PER_THREAD];
};

static void *sign_many(void *arg)
{
	struct worker *w = arg;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};

	for (unsigned i = 0; i < PER_THREAD; i++) {
		unsigned char digest[32], sig[132];
		size_t sig_len = sizeof sig;
		kw_rv rv;

		digest_of(w->index * PER_THREAD + i, digest);
		rv = kw_sign(client, key_id, &m, digest, sizeof digest, sig, &sig_len);
		if (rv) {
			if (!w->first_error) {
				w->first_error = rv;
				snprintf(w->error, sizeof w->error, "%s", kw_last_error());
			}
			continue;
		}
		if (sig_len <= sizeof w->sigs[i])
			memcpy(w->sigs[i], sig, sig_len);
		w->sig_lens[i] = sig_len;
		w->ok++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct worker *w = calloc(THREADS, sizeof *w);

	(void)state;
	assert_non_null(w);
	for (unsigned t = 0; t < THREADS; t++) {
		w[t].index = t;
		assert_int_equal(pthread_create(&w[t].th, NULL, sign_many, &w[t]), 0);
	}
	for (unsigned t = 0; t < THREADS; t++)
		pthread_join(w[t].th, NULL);
	for (unsigned t = 0; t < THREADS; t++) {
		if (w[t].ok != PER_THREAD)
			fail_msg("thread %u: %u of %u signatures; first error %s: %s", t, w[t].ok, PER_THREAD,
				 kw_rv_name(w[t].first_error), w[t].error);
		for (unsigned i = 0; i < PER_THREAD; i++) {
			unsigned char digest[32];
			digest_of(t * PER_THREAD + i, digest);
			assert_int_equal(w[t].sig_lens[i], 64);
			/* each signature is over this thread's own digest: no crossed responses */
			if (!kwt_ecdsa_verifies(key_spki, key_spki_len, digest, sizeof digest, w[t].sigs[i], 64))
				fail_msg("thread %u, signature %u does not verify over its own digest", t, i);
		}
	}
	free(w);
}

static void test_fork(void **state)
{
	pid_t pid;
	int status = 0;

	(void)state;
	/* the parent has a pooled connection before it forks */
	kwt_ok(sign_checked(client, key_id, key_spki, key_spki_len, 1000));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int code = 0;
		for (unsigned i = 0; i < 3 && code == 0; i++)
			if (sign_checked(client, key_id, key_spki, key_spki_len, 2000 + i) != KW_OK) {
				fprintf(stderr, "child: %s\n", kw_last_error());
				code = 1;
			}
		kw_client_free(client);
		_exit(code);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("the child could not sign with the parent's kw_client (exit %d)", WEXITSTATUS(status));
	/* the child's use did not disturb the parent's connections */
	for (unsigned i = 0; i < 3; i++)
		kwt_ok(sign_checked(client, key_id, key_spki, key_spki_len, 3000 + i));
}

static void test_probe(void **state)
{
	unsigned version = 0;
	int initialized = -1, locked = -1;
	char conf[400], hsms[256], addr[32];
	unsigned short dead = kwt_free_port();
	kw_client *c = NULL;
	kw_rv rv;

	(void)state;
	kwt_ok(kw_client_probe(client, 0, &version, &initialized, &locked));
	assert_int_equal(version, 1);
	assert_int_equal(initialized, 1);
	assert_int_equal(locked, 0);
	assert_int_equal(kw_client_probe(client, 1, &version, &initialized, &locked), KW_ERR_ARGUMENTS);

	snprintf(addr, sizeof addr, "127.0.0.1:%u", dead);
	snprintf(hsms, sizeof hsms, "[hsm dead]\nhost = 127.0.0.1\nport = %u\n", dead);
	write_conf("probe-dead", hsms, conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &c));
	version = 77;
	rv = kw_client_probe(c, 0, &version, &initialized, &locked);
	if (rv == KW_OK)
		fail_msg("probe of %s (nothing listening) succeeded", addr);
	assert_true(rv == KW_ERR_NETWORK || rv == KW_ERR_UNREACHABLE || rv == KW_ERR_TIMEOUT);
	assert_true(kw_last_error()[0] != '\0');
	kw_client_free(c);
}

/* Config mode: the client outlives two server restarts. */
static void test_server_restart(void **state)
{
	struct kwt_server s = {0};
	char pass_file[300];
	unsigned char spki[512];
	size_t spki_len;
	uint64_t id;
	unsigned version;
	int initialized, locked;
	kw_client *c;
	kw_rv rv;

	(void)state;
	kwt_start_config(&s, NULL);
	snprintf(pass_file, sizeof pass_file, "%s/passphrase", s.dir);
	kwt_write_file(pass_file, PASSPHRASE "\n");
	assert_int_equal(kwt_admin(&s, NULL, NULL, "init --passphrase-file %s", pass_file), 0);
	c = kwt_new_partition_client(&s, "p");
	kwt_gen_ec(c, "survivor", &id, spki, &spki_len);
	kwt_ok(sign_checked(c, id, spki, spki_len, 1)); /* a pooled, live connection */

	/* restart behind the client's back: its next request reconnects */
	kwt_stop(&s);
	kwt_start_config(&s, NULL);
	assert_int_equal(kwt_admin(&s, NULL, NULL, "unlock --passphrase-file %s", pass_file), 0);
	kwt_ok(sign_checked(c, id, spki, spki_len, 2));
	kwt_ok(sign_checked(c, id, spki, spki_len, 3));

	/* while it is down: unreachable; back but locked: probe and the request say so */
	kwt_stop(&s);
	rv = sign_checked(c, id, spki, spki_len, 4);
	if (rv != KW_ERR_UNREACHABLE)
		fail_msg("server stopped: %s (%s), expected KW_ERR_UNREACHABLE", kw_rv_name(rv), kw_last_error());
	kwt_start_config(&s, NULL);
	kwt_ok(kw_client_probe(c, 0, &version, &initialized, &locked));
	assert_int_equal(version, 1);
	assert_int_equal(initialized, 1);
	assert_int_equal(locked, 1);
	assert_int_equal(sign_checked(c, id, spki, spki_len, 5), KW_ERR_STORE_LOCKED);
	assert_int_equal(kwt_admin(&s, NULL, NULL, "unlock --passphrase-file %s", pass_file), 0);
	kwt_ok(kw_client_probe(c, 0, &version, &initialized, &locked));
	assert_int_equal(locked, 0);
	kwt_ok(sign_checked(c, id, spki, spki_len, 6));

	kw_client_free(c);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failover),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_fork),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_server_restart),
	};
	return cmocka_run_group_tests_name("integration_client", tests, setup, teardown);
}
