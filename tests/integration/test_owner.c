/*
 * Owner key spaces and partitions against a real keywardd: a key moves
 * from one owner to another atomically, every refusal leaves both owners'
 * listings exactly as they were, and two partitions see nothing of each
 * other.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"

#define OWNER_A "S-1-5-21-4293965214-2831711143-3276927932"
#define OWNER_B "S-1-5-21-3441646867-1587263069-3547631177"

static struct kwt_server server;
static kw_client *client;

static int setup(void **state)
{
	(void)state;
	client = kwt_start_dev_client(&server);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop_client(&server, client);
	return 0;
}

/* A listing as text: id, owner, name, class, flags of every object of owner. */
static char *snapshot(const char *owner)
{
	kw_object_list *list;
	size_t size = 64 * 1024, used = 0;
	char *out = calloc(1, size);

	kwt_ok(kw_list_objects(client, owner, NULL, &list));
	for (size_t i = 0; i < kw_object_list_count(list); i++) {
		const kw_object *o = kw_object_list_get(list, i);
		used += (size_t)snprintf(out + used, size - used, "%llx %s %s %d %d%d%d %u\n",
					 (unsigned long long)kw_object_id(o), kw_object_owner(o), kw_object_name(o),
					 kw_object_class(o), kw_object_extractable(o), kw_object_modifiable(o),
					 kw_object_sensitive(o), kw_object_usages(o));
	}
	kw_object_list_free(list);
	return out;
}

static void test_move_key(void **state)
{
	kw_object *priv, *pub, *found;
	kw_object_list *moved;
	unsigned char digest[32] = {7}, sig[512];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_RSA_PKCS1, .hash = KW_HASH_SHA256};

	(void)state;
	kwt_ok(kw_generate_key(client, OWNER_A, "myDemoCA", KW_KEY_RSA, 2048, NULL, 0, 0, &priv, &pub));
	assert_int_equal(kw_get_object(client, 0, OWNER_B, "myDemoCA", KW_CLASS_PRIVATE_KEY, &found), KW_ERR_NOT_FOUND);

	kwt_ok(kw_change_owner(client, "myDemoCA", OWNER_A, OWNER_B, &moved));
	assert_int_equal(kw_object_list_count(moved), 2);
	for (size_t i = 0; i < 2; i++)
		assert_string_equal(kw_object_owner(kw_object_list_get(moved, i)), OWNER_B);
	kw_object_list_free(moved);

	/* both halves moved, ids kept, the old owner has nothing of that name */
	kwt_ok(kw_get_object(client, 0, OWNER_B, "myDemoCA", KW_CLASS_PRIVATE_KEY, &found));
	assert_int_equal(kw_object_id(found), kw_object_id(priv));
	kw_object_free(found);
	kwt_ok(kw_get_object(client, 0, OWNER_B, "myDemoCA", KW_CLASS_PUBLIC_KEY, &found));
	kw_object_free(found);
	assert_int_equal(kw_get_object(client, 0, OWNER_A, "myDemoCA", KW_CLASS_ANY, &found), KW_ERR_NOT_FOUND);
	/* and the key still signs under its new owner */
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, digest, sizeof digest, sig, &sig_len));
	kw_object_free(priv);
	kw_object_free(pub);
}

static void assert_refused(const char *name, const char *from, const char *to, kw_rv expect, const char *words)
{
	char *a = snapshot(OWNER_A), *b = snapshot(OWNER_B), *a2, *b2;

	assert_int_equal(kw_change_owner(client, name, from, to, NULL), expect);
	if (words && !strstr(kw_last_error(), words))
		fail_msg("message \"%s\" does not mention \"%s\"", kw_last_error(), words);
	a2 = snapshot(OWNER_A);
	b2 = snapshot(OWNER_B);
	assert_string_equal(a, a2);
	assert_string_equal(b, b2);
	free(a);
	free(b);
	free(a2);
	free(b2);
}

static void test_refusals_change_nothing(void **state)
{
	kw_object *priv, *pub;

	(void)state;
	/* missing under the old owner: the message names the owners that have it */
	assert_refused("myDemoCA", OWNER_A, OWNER_B, KW_ERR_NOT_FOUND, OWNER_B);
	/* the new owner already has that name */
	kwt_ok(kw_generate_key(client, OWNER_A, "myDemoCA", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	assert_refused("myDemoCA", OWNER_A, OWNER_B, KW_ERR_EXISTS, OWNER_B);
	/* not modifiable */
	kwt_ok(kw_generate_key(client, OWNER_A, "frozen", KW_KEY_EC, 0, "P-256", KW_GEN_NOT_MODIFIABLE, 0, &priv, &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	assert_refused("frozen", OWNER_A, OWNER_B, KW_ERR_NOT_MODIFIABLE, "frozen");
}

static void test_partitions_isolated(void **state)
{
	kw_client *other = kwt_new_partition_client(&server, "other");
	kw_object *priv, *pub, *found = NULL;
	kw_object_list *list;
	unsigned char digest[32] = {3}, sig[512];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	unsigned deleted;

	(void)state;
	kwt_ok(kw_generate_key(client, OWNER_A, "secret-of-dev", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	/* the other partition sees nothing of dev's, by list, name or id */
	kwt_ok(kw_list_objects(other, NULL, NULL, &list));
	assert_int_equal(kw_object_list_count(list), 0);
	kw_object_list_free(list);
	assert_int_equal(kw_get_object(other, 0, OWNER_A, "secret-of-dev", KW_CLASS_ANY, &found), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_get_object(other, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, &found), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_sign(other, kw_object_id(priv), &m, digest, sizeof digest, sig, &sig_len), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_delete_objects(other, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, &deleted),
			 KW_ERR_NOT_FOUND);
	assert_int_equal(kw_change_owner(other, "secret-of-dev", OWNER_A, OWNER_B, NULL), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_set_attributes(other, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, -1, 0, NULL),
			 KW_ERR_NOT_FOUND);
	/* the same owner and name may exist in both partitions */
	kw_object *p2, *q2;
	kwt_ok(kw_generate_key(other, OWNER_A, "secret-of-dev", KW_KEY_EC, 0, "P-256", 0, 0, &p2, &q2));
	assert_int_not_equal(kw_object_id(p2), kw_object_id(priv));
	/* dev's key is untouched and still signs */
	sig_len = sizeof sig;
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, digest, sizeof digest, sig, &sig_len));
	kw_object_free(p2);
	kw_object_free(q2);
	kw_object_free(priv);
	kw_object_free(pub);
	kw_client_free(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_move_key),
		cmocka_unit_test(test_refusals_change_nothing),
		cmocka_unit_test(test_partitions_isolated),
	};
	return cmocka_run_group_tests_name("integration_owner", tests, setup, teardown);
}
