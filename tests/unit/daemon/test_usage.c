/*
 * Key-use counts: the counts the store did not take (busy, or a PostgreSQL
 * store that is down) are kept for the next flush, every one of them, and
 * merged with the uses counted meanwhile, into one record per key, event
 * and client.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "daemon/daemon.h"
#include "../keystore/util.h"

/* The detail of every key.sign record in the log, joined by '|'. */
static void sign_records(struct kw_keystore *ks, char *out, size_t size)
{
	struct kw_audit_page page = {0};

	out[0] = '\0';
	assert_int_equal(kw_keystore_audit_list(ks, 0, 0, 0, &page), KW_OK);
	for (size_t i = 0; i < page.n; i++)
		if (strcmp(page.entries[i].event, "key.sign") == 0)
			snprintf(out + strlen(out), size - strlen(out), "%s|", page.entries[i].detail);
	kw_audit_page_cleanup(&page);
}

static void test_kept_count_merges_with_new_uses(void **state)
{
	struct fx *f = *state;
	struct kw_server_config cfg;
	struct kw_cached_key key = {.partition_id = f->pid};
	struct kw_usage *u = NULL;
	sqlite3 *locker = NULL;
	char records[1000];

	kw_server_config_defaults(&cfg);
	assert_int_equal(kw_usage_new(&cfg, &u), KW_OK);
	snprintf(key.owner, sizeof key.owner, "S-1-5-18");
	snprintf(key.name, sizeof key.name, "ca-key");
	for (int i = 0; i < 3; i++)
		kw_usage_count(u, "dev", "CN=client", "key.sign", &key, 0x1f);
	kw_usage_count(u, "dev", "CN=client", "key.sign", &key, 0x2a);
	/* another connection holds the write lock: the flush cannot write (after the busy timeout) */
	assert_int_equal(sqlite3_open(f->path, &locker), SQLITE_OK);
	assert_int_equal(sqlite3_exec(locker, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	kw_usage_flush(u, f->ks);
	assert_int_equal(sqlite3_exec(locker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(locker);
	sign_records(f->ks, records, sizeof records);
	assert_string_equal(records, "");
	for (int i = 0; i < 2; i++)
		kw_usage_count(u, "dev", "CN=client", "key.sign", &key, 0x1f);
	kw_usage_flush(u, f->ks);
	sign_records(f->ks, records, sizeof records);
	/* in the table's order */
	if (strcmp(records, "S-1-5-18/ca-key (0x1f): 5 operations|S-1-5-18/ca-key (0x2a): 1 operation|") != 0 &&
	    strcmp(records, "S-1-5-18/ca-key (0x2a): 1 operation|S-1-5-18/ca-key (0x1f): 5 operations|") != 0)
		fail_msg("key.sign records: %s", records);
	kw_usage_free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kept_count_merges_with_new_uses, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
