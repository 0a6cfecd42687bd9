/*
 * Two keywardd nodes on one PostgreSQL store (issue 17), in development
 * mode: the first makes the store, the second joins it on the same
 * directory. A key created on one node signs on the other; a key moved
 * (ksputil chkeysowner) or deleted on one node is gone on the other at
 * once, also from its key cache; the audit chain stays one verified chain
 * after both nodes wrote to it at the same time; PostgreSQL stopped says
 * so (never "revoked"), and restarted, the nodes serve again at once; a
 * credential revoked on one node is refused on the other's open
 * connections; a COMMIT whose connection breaks is reported as a change
 * that may or may not have been made, and the node serves on.
 *
 * Runs under tests/pg/with-pg, which starts a throwaway PostgreSQL cluster
 * and names its database in KW_TEST_PG_DB.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "harness.h"

#define OTHER_OWNER "S-1-5-21-4-5-6"

struct cluster {
	struct kwt_server n1, n2;
	kw_client *c1, *c2;
};

static int setup(void **state)
{
	struct cluster *k = calloc(1, sizeof *k);

	assert_non_null(k);
	kwt_start_pg_pair(&k->n1, &k->n2);
	kwt_ok(kw_client_new(k->n1.conf, &k->c1));
	kwt_ok(kw_client_new(k->n2.conf, &k->c2));
	*state = k;
	return 0;
}

static int teardown(void **state)
{
	struct cluster *k = *state;

	kw_client_free(k->c1);
	kw_client_free(k->c2);
	kwt_stop(&k->n2);
	kwt_stop(&k->n1);
	kwt_cleanup(&k->n1); /* the directory both nodes share */
	free(k);
	return 0;
}

static kw_rv sign_digest(kw_client *c, uint64_t id, unsigned char *sig, size_t *sig_len)
{
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	unsigned char digest[32];

	SHA256((const unsigned char *)"issue 17", 8, digest);
	*sig_len = 132;
	return kw_sign(c, id, &m, digest, sizeof digest, sig, sig_len);
}

static void assert_signs(kw_client *c, uint64_t id, const unsigned char *spki, size_t spki_len)
{
	unsigned char digest[32], sig[132];
	size_t sig_len = 0;

	SHA256((const unsigned char *)"issue 17", 8, digest);
	kwt_ok(sign_digest(c, id, sig, &sig_len));
	assert_true(kwt_ecdsa_verifies(spki, spki_len, digest, sizeof digest, sig, sig_len));
}

static void test_both_nodes_unlocked_on_one_store(void **state)
{
	struct cluster *k = *state;
	char *out = NULL;

	assert_int_equal(kwt_admin(&k->n1, NULL, &out, "status"), 0);
	assert_non_null(strstr(out, "state:       unlocked"));
	free(out);
	out = NULL;
	assert_int_equal(kwt_admin(&k->n2, NULL, &out, "status"), 0);
	assert_non_null(strstr(out, "state:       unlocked"));
	free(out);
	/* the joining node added itself to the directory's client.conf */
	{
		char path[400], *conf;

		snprintf(path, sizeof path, "%s/client.conf", k->n1.dir);
		conf = kwt_read_file(path, NULL);
		assert_non_null(conf);
		snprintf(path, sizeof path, "port = %u", k->n2.port);
		assert_non_null(strstr(conf, path));
		free(conf);
	}
}

static void test_create_on_one_sign_on_other(void **state)
{
	struct cluster *k = *state;
	unsigned char spki[512];
	size_t spki_len = 0;
	uint64_t id;
	kw_object *o = NULL;

	kwt_gen_ec(k->c1, "made-on-1", &id, spki, &spki_len);
	kwt_ok(kw_get_object(k->c2, 0, KWT_OWNER, "made-on-1", KW_CLASS_PRIVATE_KEY, &o));
	assert_int_equal(kw_object_id(o), id);
	kw_object_free(o);
	assert_signs(k->c2, id, spki, spki_len);
	/* and the other way round */
	kwt_gen_ec(k->c2, "made-on-2", &id, spki, &spki_len);
	assert_signs(k->c1, id, spki, spki_len);
}

static void test_chkeysowner_on_two_seen_on_one(void **state)
{
	struct cluster *k = *state;
	unsigned char spki[512], sig[132];
	size_t spki_len = 0, sig_len;
	char *out = NULL;
	uint64_t id;
	kw_object *o = NULL;

	kwt_gen_ec(k->c1, "mover", &id, spki, &spki_len);
	assert_signs(k->c1, id, spki, spki_len); /* node 1 now holds it in its key cache */
	if (kwt_run(k->n2.dir, &out, "KEYWARD_CONF='%s' '%s' chkeysowner mover %s %s", k->n2.conf, KSPUTIL_PATH,
		    KWT_OWNER, OTHER_OWNER) != 0)
		fail_msg("ksputil chkeysowner on node 2: %s", out ? out : "");
	free(out);
	/* the old name is gone on node 1 at once, the new one is there */
	assert_int_equal(kw_get_object(k->c1, 0, KWT_OWNER, "mover", KW_CLASS_PRIVATE_KEY, &o), KW_ERR_NOT_FOUND);
	kwt_ok(kw_get_object(k->c1, 0, OTHER_OWNER, "mover", KW_CLASS_PRIVATE_KEY, &o));
	assert_int_equal(kw_object_id(o), id);
	kw_object_free(o);
	out = NULL;
	assert_int_equal(kwt_run(k->n1.dir, &out, "KEYWARD_CONF='%s' '%s' enumkeys -a", k->n1.conf, KSPUTIL_PATH), 0);
	assert_non_null(strstr(out, "Owner: " OTHER_OWNER));
	free(out);
	/* the moved key still signs on node 1 */
	assert_signs(k->c1, id, spki, spki_len);
	/* deleted on node 2: node 1 must not sign with it from its cache */
	{
		unsigned deleted = 0;

		kwt_ok(kw_delete_objects(k->c2, 0, OTHER_OWNER, "mover", KW_CLASS_ANY, &deleted));
		assert_int_equal(deleted, 2);
	}
	assert_int_equal(sign_digest(k->c1, id, sig, &sig_len), KW_ERR_NOT_FOUND);
}

struct writer {
	kw_client *c;
	const char *prefix;
	kw_rv rv;
	char err[300];
};

#define WRITES 15

static void *write_keys(void *arg)
{
	struct writer *w = arg;
	char name[64];

	for (int i = 0; i < WRITES && !w->rv; i++) {
		kw_object *priv = NULL, *pub = NULL;
		unsigned deleted = 0;

		snprintf(name, sizeof name, "%s-%d", w->prefix, i);
		w->rv = kw_generate_key(w->c, KWT_OWNER, name, KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub);
		kw_object_free(priv);
		kw_object_free(pub);
		if (!w->rv && i % 2)
			w->rv = kw_delete_objects(w->c, 0, KWT_OWNER, name, KW_CLASS_ANY, &deleted);
		if (w->rv)
			snprintf(w->err, sizeof w->err, "%s: %s", name, kw_last_error());
	}
	return NULL;
}

static void test_audit_chain_after_concurrent_writes(void **state)
{
	struct cluster *k = *state;
	struct writer w1 = {k->c1, "from-1", KW_OK, ""}, w2 = {k->c2, "from-2", KW_OK, ""};
	pthread_t t1, t2;
	char *out1 = NULL, *out2 = NULL, *h1, *h2;
	unsigned long records = 0;

	assert_int_equal(pthread_create(&t1, NULL, write_keys, &w1), 0);
	assert_int_equal(pthread_create(&t2, NULL, write_keys, &w2), 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	if (w1.rv || w2.rv)
		fail_msg("writes failed: node 1: %s; node 2: %s", w1.err, w2.err);
	if (kwt_admin(&k->n1, NULL, &out1, "audit verify") != 0)
		fail_msg("audit verify on node 1: %s", out1 ? out1 : "");
	assert_non_null(strstr(out1, "audit log intact"));
	assert_int_equal(sscanf(strstr(out1, "intact: "), "intact: %lu", &records), 1);
	assert_true(records >= 2 * (WRITES + WRITES / 2));
	/* one chain: node 2 finds node 1's head in the chain it verifies (verifying is itself audited,
	 * so its own head may be further on) */
	h1 = strstr(out1, "head: ");
	assert_non_null(h1);
	h1 += 6;
	h1[strcspn(h1, "\n")] = '\0';
	if (kwt_admin(&k->n2, NULL, &out2, "audit verify --expect-head %s", h1) != 0)
		fail_msg("audit verify --expect-head %s on node 2: %s", h1, out2 ? out2 : "");
	assert_non_null(strstr(out2, "audit log intact"));
	h2 = strstr(out2, "head: ");
	assert_non_null(h2);
	free(out1);
	free(out2);
}

static void test_postgres_restart(void **state)
{
	struct cluster *k = *state;
	unsigned char spki[512], sig[132];
	size_t spki_len = 0, sig_len;
	kw_client *fresh = NULL;
	uint64_t id;
	kw_rv rv;

	kwt_gen_ec(k->c1, "survivor", &id, spki, &spki_len);
	assert_signs(k->c2, id, spki, spki_len);
	kwt_pg_cluster(false);
	/* a request while the store is down fails with an error that says so */
	rv = sign_digest(k->c1, id, sig, &sig_len);
	assert_int_not_equal(rv, KW_OK);
	/* a new connection's credential cannot be checked: said so, not "revoked" */
	kwt_ok(kw_client_new(k->n2.conf, &fresh));
	rv = sign_digest(fresh, id, sig, &sig_len);
	assert_int_not_equal(rv, KW_OK);
	if (!strstr(kw_last_error(), "could not be checked") || strstr(kw_last_error(), "revoked"))
		fail_msg("while PostgreSQL is down: %s", kw_last_error());
	kw_client_free(fresh);
	kwt_pg_cluster(true);
	/* back: both nodes serve at the first request, without a restart of their own */
	assert_signs(k->c1, id, spki, spki_len);
	assert_signs(k->c2, id, spki, spki_len);
	kwt_ok(kw_client_new(k->n1.conf, &fresh));
	assert_signs(fresh, id, spki, spki_len);
	kw_client_free(fresh);
}

/* psql on the test's database, which must succeed. */
static void psql(const char *sql)
{
	char *out = NULL;

	if (kwt_run("/tmp", &out, "psql -qX -v ON_ERROR_STOP=1 '%s' -c \"%s\"", getenv("KW_TEST_PG_DB"), sql) != 0)
		fail_msg("psql: %s", out ? out : "");
	free(out);
}

/*
 * A trigger that runs at COMMIT (deferred) and ends its own server
 * process: the node's COMMIT sees its connection break with no answer.
 */
static void test_commit_cut(void **state)
{
	struct cluster *k = *state;
	kw_object *priv = NULL, *pub = NULL;
	kw_object_list *found = NULL;
	uint64_t id;
	kw_rv rv;

	psql("CREATE FUNCTION kwt_cut() RETURNS trigger LANGUAGE plpgsql AS "
	     "\\$\\$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NULL; END "
	     "\\$\\$; CREATE CONSTRAINT TRIGGER kwt_cut AFTER INSERT ON objects DEFERRABLE INITIALLY DEFERRED "
	     "FOR EACH ROW EXECUTE FUNCTION kwt_cut()");
	rv = kw_generate_key(k->c1, "S-1-5-21-0-0-0", "cut-at-commit", KW_KEY_EC, 0, "P-256", 0, KW_USAGE_SIGN, &priv,
			     &pub);
	psql("DROP TRIGGER kwt_cut ON objects; DROP FUNCTION kwt_cut()");
	assert_int_not_equal(rv, KW_OK);
	if (!strstr(kw_last_error(), "may or may not have been made"))
		fail_msg("a COMMIT cut short: %s", kw_last_error());
	/* the node serves on, and the server ended before its commit record: no key */
	kwt_gen_ec(k->c1, "after-the-cut", &id, NULL, NULL);
	kwt_ok(kw_list_objects(k->c2, "S-1-5-21-0-0-0", "cut-at-commit", &found));
	assert_int_equal(kw_object_list_count(found), 0);
	kw_object_list_free(found);
}

/* Last: it revokes the directory's only credential. */
static void test_revoke_on_two_refused_on_one(void **state)
{
	struct cluster *k = *state;
	unsigned char sig[132];
	size_t sig_len;
	char *out = NULL, fp[17];
	uint64_t id;

	kwt_gen_ec(k->c1, "before-revoke", &id, NULL, NULL);
	kwt_ok(sign_digest(k->c1, id, sig, &sig_len)); /* node 1's connection is open and checked */
	assert_int_equal(kwt_admin(&k->n2, NULL, &out, "client list"), 0);
	/* the first column of the one credential's line */
	{
		char *line = strstr(out, "\n");

		assert_non_null(line);
		assert_int_equal(sscanf(line + 1, "%16s", fp), 1);
	}
	free(out);
	out = NULL;
	if (kwt_admin(&k->n2, NULL, &out, "client revoke %s", fp) != 0)
		fail_msg("client revoke %s on node 2: %s", fp, out ? out : "");
	free(out);
	/* node 1's open connection serves nothing more */
	assert_int_equal(sign_digest(k->c1, id, sig, &sig_len), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "revoked"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_both_nodes_unlocked_on_one_store),
		cmocka_unit_test(test_create_on_one_sign_on_other),
		cmocka_unit_test(test_chkeysowner_on_two_seen_on_one),
		cmocka_unit_test(test_audit_chain_after_concurrent_writes),
		cmocka_unit_test(test_postgres_restart),
		cmocka_unit_test(test_commit_cut),
		cmocka_unit_test(test_revoke_on_two_refused_on_one),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
