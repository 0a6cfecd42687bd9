/*
 * Session objects (session.c): ids with the top bit, lookups by id and name
 * within one partition, listing in id order after an id, deletion, the
 * server's count, the limits, and signing threads racing a deletion.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include "daemon/daemon.h"

static EVP_PKEY *p256(void)
{
	EVP_PKEY *k = NULL;

	assert_int_equal(kw_crypto_generate(KW_KEY_EC, 0, "P-256", &k), KW_OK);
	return k;
}

static void put_pair(struct kw_session_objects *so, uint64_t pid, const char *name, uint64_t *priv_id,
		     uint64_t *pub_id)
{
	struct kw_keygen spec = {.owner = "S-1-5-21-1-2-3", .name = name, .modifiable = true, .usages = KW_USAGE_SIGN};
	struct kw_object_row priv, pub;
	EVP_PKEY *k = p256();

	assert_int_equal(kw_session_put_keypair(so, pid, &spec, k, &priv, &pub), KW_OK);
	EVP_PKEY_free(k); /* the table keeps its own reference */
	assert_true(kw_session_id(priv.id) && kw_session_id(pub.id));
	assert_true(priv.pair_id == pub.id && pub.pair_id == priv.id);
	assert_true(pub.value_len > 0);
	*priv_id = priv.id;
	*pub_id = pub.id;
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void test_pair_lookup_delete(void **state)
{
	struct kw_session_objects *so;
	struct kw_cached_key key;
	struct kw_object_row row, *rows;
	atomic_uint count = 0;
	uint64_t priv, pub, id;
	size_t n;
	bool more;
	unsigned deleted;

	(void)state;
	assert_int_equal(kw_session_objects_new(&count, &so), KW_OK);
	put_pair(so, 7, "a", &priv, &pub);
	assert_int_equal(atomic_load(&count), 2);
	/* the same name again: refused, nothing added */
	{
		struct kw_keygen spec = {.owner = "S-1-5-21-1-2-3", .name = "a", .usages = KW_USAGE_SIGN};
		struct kw_object_row a, b;
		EVP_PKEY *k = p256();

		assert_int_equal(kw_session_put_keypair(so, 7, &spec, k, &a, &b), KW_ERR_EXISTS);
		EVP_PKEY_free(k);
		assert_int_equal(atomic_load(&count), 2);
	}
	assert_int_equal(kw_session_key(so, 7, priv, &key), KW_OK);
	assert_non_null(key.pkey);
	kw_cached_key_release(&key);
	assert_int_equal(kw_session_key(so, 7, pub, &key), KW_ERR_KEY_TYPE);
	/* another partition, or an id that is not there, finds nothing */
	assert_int_equal(kw_session_get(so, 8, priv, &row), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_session_get(so, 7, priv ^ 1, &row), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_session_get(NULL, 7, priv, &row), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_session_find(so, 7, "S-1-5-21-1-2-3", "a", KW_CLASS_PUBLIC_KEY, &id), KW_OK);
	assert_true(id == pub);
	assert_int_equal(kw_session_find(so, 8, "S-1-5-21-1-2-3", "a", KW_CLASS_PUBLIC_KEY, &id), KW_ERR_NOT_FOUND);

	/* listing: ascending ids, after after_id, limit and more */
	assert_int_equal(kw_session_list(so, 7, NULL, NULL, 0, 1, &rows, &n, &more), KW_OK);
	assert_int_equal(n, 1);
	assert_true(more);
	id = rows[0].id;
	kw_object_rows_free(rows, n);
	assert_int_equal(kw_session_list(so, 7, NULL, "a", id, 10, &rows, &n, &more), KW_OK);
	assert_int_equal(n, 1);
	assert_false(more);
	assert_true(rows[0].id > id);
	kw_object_rows_free(rows, n);

	assert_int_equal(kw_session_delete(so, 7, priv, NULL, NULL, KW_CLASS_ANY, &deleted), KW_OK);
	assert_int_equal(deleted, 1);
	assert_int_equal(kw_session_key(so, 7, priv, &key), KW_ERR_NOT_FOUND);
	assert_int_equal(atomic_load(&count), 1);
	assert_int_equal(kw_session_delete(so, 7, 0, "S-1-5-21-1-2-3", "a", KW_CLASS_ANY, &deleted), KW_OK);
	assert_int_equal(deleted, 1);
	assert_int_equal(atomic_load(&count), 0);
	put_pair(so, 7, "b", &priv, &pub);
	kw_session_objects_free(so);
	assert_int_equal(atomic_load(&count), 0);
}

static void test_limits(void **state)
{
	struct kw_session_objects *so;
	struct kw_object_row row;
	atomic_uint count = 0;
	char name[32];
	struct kw_objspec spec = {.owner = "S-1-5-21-1-2-3", .cls = KW_CLASS_DATA, .value = (const unsigned char *)"x",
				  .value_len = 1};

	(void)state;
	assert_int_equal(kw_session_objects_new(&count, &so), KW_OK);
	spec.name = name;
	for (int i = 0; i < KW_SESSION_OBJECTS_MAX; i++) {
		snprintf(name, sizeof name, "d%d", i);
		assert_int_equal(kw_session_put_object(so, 1, &spec, &row), KW_OK);
		kw_object_row_cleanup(&row);
	}
	snprintf(name, sizeof name, "over");
	assert_int_equal(kw_session_put_object(so, 1, &spec, &row), KW_ERR_STORE_FULL);
	assert_int_equal(atomic_load(&count), KW_SESSION_OBJECTS_MAX);
	/* a bad certificate: refused as the store refuses it */
	spec.cls = KW_CLASS_CERTIFICATE;
	assert_int_equal(kw_session_put_object(so, 1, &spec, &row), KW_ERR_ATTRIBUTE_VALUE);
	kw_session_objects_free(so);
	assert_int_equal(atomic_load(&count), 0);
}

struct race {
	struct kw_session_objects *so;
	uint64_t id;
};

static void *signer(void *arg)
{
	struct race *r = arg;

	for (int i = 0; i < 2000; i++) {
		struct kw_cached_key key;

		if (kw_session_key(r->so, 1, r->id, &key) == KW_OK)
			kw_cached_key_release(&key);
	}
	return NULL;
}

/* A worker taking the key while another thread deletes it: no use after free (the sanitizers watch). */
static void test_concurrent_delete(void **state)
{
	struct kw_session_objects *so;
	atomic_uint count = 0;
	struct race r;
	pthread_t t;
	uint64_t pub;
	unsigned deleted;

	(void)state;
	assert_int_equal(kw_session_objects_new(&count, &so), KW_OK);
	put_pair(so, 1, "race", &r.id, &pub);
	r.so = so;
	assert_int_equal(pthread_create(&t, NULL, signer, &r), 0);
	assert_int_equal(kw_session_delete(so, 1, r.id, NULL, NULL, KW_CLASS_ANY, &deleted), KW_OK);
	assert_int_equal(pthread_join(t, NULL), 0);
	kw_session_objects_free(so);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pair_lookup_delete),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_concurrent_delete),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
