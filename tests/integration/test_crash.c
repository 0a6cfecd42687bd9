/*
 * Durability across kill -9: a thread generates EC keys through libkeyward
 * while keywardd is killed with SIGKILL. After a restart and an unlock,
 * every key whose generation was acknowledged is there with both halves
 * and signs, and the audit chain is intact.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "harness.h"

#define OWNER KWT_OWNER
#define PASSPHRASE "correct horse battery staple"
#define MAX_KEYS 100000
#define WANT_ACKED 50
#define GEN_TIME_LIMIT_S 120

struct generator {
	kw_client *c;
	atomic_int acked;         /* names k0 .. k(acked-1) were acknowledged */
	atomic_bool stop;
	kw_rv first_failure;
	char failure_msg[512];
};

static void *generate_loop(void *arg)
{
	struct generator *g = arg;

	for (int i = 0; i < MAX_KEYS && !atomic_load(&g->stop); i++) {
		char name[32];
		kw_object *priv = NULL, *pub = NULL;
		kw_rv rv;

		snprintf(name, sizeof name, "k%d", i);
		rv = kw_generate_key(g->c, OWNER, name, KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub);
		if (rv) {
			g->first_failure = rv;
			snprintf(g->failure_msg, sizeof g->failure_msg, "%s", kw_last_error());
			break;
		}
		kw_object_free(priv);
		kw_object_free(pub);
		atomic_store(&g->acked, i + 1);
	}
	return NULL;
}

static void test_kill9_during_generation(void **state)
{
	struct kwt_server s = {0};
	struct generator g = {0};
	char pass_file[300], *out = NULL;
	kw_object_list *l = NULL;
	pthread_t th;
	int acked, present = 0;
	time_t t0;

	(void)state;
	kwt_start_config(&s, NULL);
	snprintf(pass_file, sizeof pass_file, "%s/passphrase", s.dir);
	kwt_write_file(pass_file, PASSPHRASE "\n");
	assert_int_equal(kwt_admin(&s, NULL, NULL, "init --passphrase-file %s", pass_file), 0);
	g.c = kwt_new_partition_client(&s, "crash");

	assert_int_equal(pthread_create(&th, NULL, generate_loop, &g), 0);
	t0 = time(NULL);
	while (atomic_load(&g.acked) < WANT_ACKED && time(NULL) - t0 < GEN_TIME_LIMIT_S && !g.first_failure)
		usleep(2000);
	if (atomic_load(&g.acked) < WANT_ACKED) {
		atomic_store(&g.stop, true);
		pthread_join(th, NULL);
		fail_msg("only %d keys acknowledged in %d s (%s: %s)", atomic_load(&g.acked), GEN_TIME_LIMIT_S,
			 kw_rv_name(g.first_failure), g.failure_msg);
	}
	/* the generator is mid-stream: kill the server under it */
	kwt_kill9(&s);
	pthread_join(th, NULL);
	acked = atomic_load(&g.acked);
	/* it stopped because the server went away, not for another reason */
	if (g.first_failure != KW_ERR_NETWORK && g.first_failure != KW_ERR_UNREACHABLE &&
	    g.first_failure != KW_ERR_TIMEOUT)
		fail_msg("the generator stopped with %s (%s), expected a network error", kw_rv_name(g.first_failure),
			 g.failure_msg);
	print_message("%d key pairs acknowledged before kill -9\n", acked);

	kwt_start_config(&s, NULL); /* same directory and port */
	assert_int_equal(kwt_admin(&s, NULL, &out, "status"), 0);
	assert_non_null(strstr(out, "locked"));
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, NULL, "unlock --passphrase-file %s", pass_file), 0);

	kwt_ok(kw_list_objects(g.c, OWNER, NULL, &l));
	for (int i = 0; i < acked; i++) {
		char name[32];
		const kw_object *priv = NULL, *pub = NULL;

		snprintf(name, sizeof name, "k%d", i);
		for (size_t k = 0; k < kw_object_list_count(l); k++) {
			const kw_object *o = kw_object_list_get(l, k);
			if (strcmp(kw_object_name(o), name) != 0)
				continue;
			if (kw_object_class(o) == KW_CLASS_PRIVATE_KEY) {
				assert_null(priv);
				priv = o;
			} else if (kw_object_class(o) == KW_CLASS_PUBLIC_KEY) {
				assert_null(pub);
				pub = o;
			}
		}
		if (!priv || !pub)
			fail_msg("acknowledged key %s lost its %s half after kill -9", name, priv ? "public" : "private");
		assert_int_equal(kw_object_pair_id(priv), kw_object_id(pub));
		assert_int_equal(kw_object_pair_id(pub), kw_object_id(priv));
		{
			unsigned char digest[32], sig[132];
			size_t sig_len = sizeof sig, spki_len = 0;
			struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
			const unsigned char *spki = kw_object_public_key(pub, &spki_len);

			memset(digest, i & 0xff, sizeof digest);
			digest[0] = 0x5a;
			if (kw_sign(g.c, kw_object_id(priv), &m, digest, sizeof digest, sig, &sig_len) != KW_OK)
				fail_msg("acknowledged key %s does not sign after kill -9: %s", name, kw_last_error());
			assert_true(kwt_ecdsa_verifies(spki, spki_len, digest, sizeof digest, sig, sig_len));
		}
		present++;
	}
	assert_int_equal(present, acked);
	/* nothing half-made: every object of the partition belongs to a complete pair */
	for (size_t k = 0; k < kw_object_list_count(l); k++) {
		const kw_object *o = kw_object_list_get(l, k);
		kw_object *other = NULL;
		if (kw_get_object(g.c, kw_object_pair_id(o), NULL, NULL, KW_CLASS_ANY, &other) != KW_OK)
			fail_msg("%s (class %d) survived without its other half: %s", kw_object_name(o),
				 (int)kw_object_class(o), kw_last_error());
		assert_string_equal(kw_object_name(other), kw_object_name(o));
		kw_object_free(other);
	}
	kw_object_list_free(l);

	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify"), 0);
	if (!strstr(out, "intact"))
		fail_msg("audit verify after kill -9: %s", out);
	free(out);

	kw_client_free(g.c);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill9_during_generation),
	};
	return cmocka_run_group_tests_name("integration_crash", tests, NULL, NULL);
}
