/* The one hash table (common/htab.h): entries found, replaced, taken out and walked, in one bucket or many. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/htab.h"

struct item {
	struct kw_hnode h;
	unsigned key;
	int walked;
};

static bool item_is(const struct kw_hnode *h, const void *key)
{
	return kw_entry_of(h, struct item, h)->key == *(const unsigned *)key;
}

static uint64_t hash_of(unsigned key)
{
	return kw_hash(&key, sizeof key);
}

static bool walk(struct kw_hnode *h, void *arg)
{
	kw_entry_of(h, struct item, h)->walked++;
	(*(int *)arg)++;
	return true;
}

static bool stop_at_three(struct kw_hnode *h, void *arg)
{
	(void)h;
	return ++(*(int *)arg) < 3;
}

/* buckets: 1 puts every entry in one chain; 1024 spreads them */
static void exercise(size_t buckets)
{
	enum { N = 2000 };
	struct item *items = calloc(N, sizeof *items);
	struct kw_htab t;
	int n = 0;

	assert_non_null(items);
	assert_int_equal(kw_htab_init(&t, buckets), 0);
	for (unsigned i = 0; i < N; i++) {
		items[i].key = i * 7919;
		kw_htab_add(&t, &items[i].h, hash_of(items[i].key));
	}
	assert_int_equal(t.n, N);
	for (unsigned i = 0; i < N; i++) {
		unsigned key = i * 7919;

		assert_ptr_equal(kw_htab_find(&t, hash_of(key), item_is, &key), &items[i].h);
	}
	{
		unsigned absent = 3;

		assert_null(kw_htab_find(&t, hash_of(absent), item_is, &absent));
		assert_null(kw_htab_take(&t, hash_of(absent), item_is, &absent));
	}
	/* every other one taken out: gone, the rest still found */
	for (unsigned i = 0; i < N; i += 2) {
		unsigned key = i * 7919;

		assert_ptr_equal(kw_htab_take(&t, hash_of(key), item_is, &key), &items[i].h);
		assert_null(kw_htab_find(&t, hash_of(key), item_is, &key));
	}
	assert_int_equal(t.n, N / 2);
	kw_htab_each(&t, walk, &n);
	assert_int_equal(n, N / 2);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(items[i].walked, i % 2);
	n = 0;
	kw_htab_each(&t, stop_at_three, &n);
	assert_int_equal(n, 3);
	/* emptied by pop */
	n = 0;
	while (kw_htab_pop(&t))
		n++;
	assert_int_equal(n, N / 2);
	assert_int_equal(t.n, 0);
	assert_null(kw_htab_pop(&t));
	/* filled again after emptying (as the key cache is after a clear): pop finds every entry, in any bucket */
	for (unsigned i = 0; i < N; i++)
		kw_htab_add(&t, &items[i].h, hash_of(items[i].key));
	n = 0;
	while (kw_htab_pop(&t))
		n++;
	assert_int_equal(n, N);
	assert_int_equal(t.n, 0);
	kw_htab_free(&t);
	free(items);
}

static void test_one_chain(void **state)
{
	(void)state;
	exercise(1);
}

static void test_many_buckets(void **state)
{
	(void)state;
	exercise(1024);
}

/* the same key hashes the same; different keys (almost always) differently */
static void test_hash(void **state)
{
	(void)state;
	assert_true(kw_hash("serial-1", 8) == kw_hash("serial-1", 8));
	assert_true(kw_hash("serial-1", 8) != kw_hash("serial-2", 8));
	assert_true(kw_hash("", 0) == kw_hash("", 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_chain),
		cmocka_unit_test(test_many_buckets),
		cmocka_unit_test(test_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
