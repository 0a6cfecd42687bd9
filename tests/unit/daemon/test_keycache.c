/*
 * The key cache invalidates itself: after a key is deleted, renamed, moved
 * to another owner or the store is locked, the next lookup reads the store
 * again instead of answering from the cache, without anyone calling
 * kw_keycache_clear (the store's generation moved). On SQLite files, and
 * (the _pg registration) on PostgreSQL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/daemon.h"
#include "../keystore/util.h"

struct kfx {
	struct fx f; /* first: fx_setup's state */
	struct kw_keycache *kc;
	struct kw_object_row priv;
};

static int setup(void **state)
{
	struct kfx *k = calloc(1, sizeof *k);
	void *inner = NULL;

	assert_non_null(k);
	assert_int_equal(fx_setup(&inner), 0);
	memcpy(&k->f, inner, sizeof k->f);
	free(inner);
	assert_int_equal(kw_keycache_new(&k->kc), KW_OK);
	put_pair(&k->f, k->f.pid, "S-1-5-18", "ca-key", "P-256", false, true, &k->priv, NULL);
	*state = k;
	return 0;
}

static int teardown(void **state)
{
	struct kfx *k = *state;
	struct fx *f = malloc(sizeof *f);

	assert_non_null(f);
	memcpy(f, &k->f, sizeof *f);
	kw_keycache_free(k->kc);
	kw_object_row_cleanup(&k->priv);
	free(k);
	*state = f;
	return fx_teardown(state);
}

/* The key from the cache (now cached, if it was not), which must be there. */
static void get_ok(struct kfx *k, struct kw_cached_key *out)
{
	kw_rv rv = kw_keycache_get(k->kc, k->f.ks, NULL, k->f.pid, k->priv.id, out);

	if (rv)
		fail_msg("kw_keycache_get: %s", kw_last_error());
}

static void test_deleted_key_is_not_served(void **state)
{
	struct kfx *k = *state;
	struct kw_cached_key key;

	get_ok(k, &key);
	kw_cached_key_release(&key);
	assert_int_equal(kw_keystore_delete(k->f.ks, k->f.pid, k->priv.id, NULL, NULL, KW_CLASS_ANY, NULL), KW_OK);
	assert_int_equal(kw_keycache_get(k->kc, k->f.ks, NULL, k->f.pid, k->priv.id, &key), KW_ERR_NOT_FOUND);
}

static void test_renamed_key_has_its_new_name(void **state)
{
	struct kfx *k = *state;
	struct kw_attr_change chg = {.extractable = -1, .modifiable = -1, .new_name = "ca-key-2026"};
	struct kw_cached_key key;

	get_ok(k, &key);
	assert_string_equal(key.name, "ca-key");
	kw_cached_key_release(&key);
	assert_int_equal(kw_keystore_modify(k->f.ks, k->f.pid, k->priv.id, &chg), KW_OK);
	get_ok(k, &key);
	assert_string_equal(key.name, "ca-key-2026");
	kw_cached_key_release(&key);
}

static void test_moved_key_has_its_new_owner(void **state)
{
	struct kfx *k = *state;
	struct kw_object_row *moved = NULL;
	struct kw_cached_key key;
	size_t n = 0;

	get_ok(k, &key);
	assert_string_equal(key.owner, "S-1-5-18");
	kw_cached_key_release(&key);
	/* chkeysowner: the CA key to the new server's owner */
	assert_int_equal(
		kw_keystore_change_owner(k->f.ks, k->f.pid, "ca-key", "S-1-5-18", "S-1-5-21-1-2-3-1001", &moved, &n),
		KW_OK);
	kw_object_rows_free(moved, n);
	get_ok(k, &key);
	assert_string_equal(key.owner, "S-1-5-21-1-2-3-1001");
	kw_cached_key_release(&key);
}

static void test_locked_store_serves_nothing(void **state)
{
	struct kfx *k = *state;
	struct kw_cached_key key;
	kw_rv rv;

	get_ok(k, &key);
	kw_cached_key_release(&key);
	kw_keystore_lock(k->f.ks);
	rv = kw_keycache_get(k->kc, k->f.ks, NULL, k->f.pid, k->priv.id, &key);
	assert_int_equal(rv, KW_ERR_STORE_LOCKED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deleted_key_is_not_served, setup, teardown),
		cmocka_unit_test_setup_teardown(test_renamed_key_has_its_new_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_moved_key_has_its_new_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locked_store_serves_nothing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
