/* The hash-chained audit log: append, verify, and detection of altered, missing and truncated records. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void append_n(struct fx *f, int n)
{
	for (int i = 1; i <= n; i++) {
		char detail[64];

		snprintf(detail, sizeof detail, "key 0x%x generated", i);
		assert_int_equal(kw_keystore_audit(f->ks, i % 2 ? "dev" : NULL, "CN=client", "key.generate", detail),
				 KW_OK);
	}
}

static void test_audit_ok(void **state)
{
	struct fx *f = *state;
	struct kw_audit_report rep;

	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_true(rep.ok);
	assert_int_equal(rep.records, 0);
	append_n(f, 6);
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_true(rep.ok);
	assert_int_equal(rep.records, 6);
	assert_int_equal(raw_int(f, "SELECT max(seq) FROM audit"), 6);
	/* the chain survives a restart */
	fx_reopen(f);
	append_n(f, 2);
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_true(rep.ok);
	assert_int_equal(rep.records, 8);
	assert_int_equal(kw_keystore_audit(f->ks, "", "admin", "", "x"), KW_ERR_ARGUMENTS);
}

/*
 * Changes to objects carry their own audit record, under the calling
 * thread's actor; a refused change leaves none.
 */
static void test_changes_audited(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub, *moved = NULL;
	struct kw_audit_report rep;
	unsigned deleted = 0;
	size_t n = 0;
	int64_t records;

	kw_keystore_set_actor("dev", "CN=ca-server");
	put_pair(f, f->pid, "S-1-5-21-1-2-3", "myDemoCA", "P-256", false, true, &priv, &pub);
	assert_int_equal(kw_keystore_change_owner(f->ks, f->pid, "myDemoCA", "S-1-5-21-1-2-3", "S-1-5-21-4-5-6",
						  &moved, &n),
			 KW_OK);
	kw_object_rows_free(moved, n);
	assert_int_equal(raw_int(f, "SELECT count(*) FROM audit WHERE event = 'key.generate' AND actor = "
				    "'CN=ca-server' AND partition = 'dev' AND detail LIKE 'S-1-5-21-1-2-3/myDemoCA (0x%%'"),
			 1);
	assert_int_equal(raw_int(f, "SELECT count(*) FROM audit WHERE event = 'key.change_owner' AND detail = "
				    "'myDemoCA: S-1-5-21-1-2-3 -> S-1-5-21-4-5-6 (2 objects)'"),
			 1);
	/* refused: nothing changes, nothing is recorded */
	records = raw_int(f, "SELECT count(*) FROM audit");
	assert_int_equal(kw_keystore_change_owner(f->ks, f->pid, "myDemoCA", "S-1-5-21-1-2-3", "S-1-5-21-7-8-9",
						  &moved, &n),
			 KW_ERR_NOT_FOUND);
	assert_int_equal(raw_int(f, "SELECT count(*) FROM audit"), records);
	assert_int_equal(kw_keystore_delete(f->ks, f->pid, 0, "S-1-5-21-4-5-6", "myDemoCA", KW_CLASS_ANY, &deleted),
			 KW_OK);
	assert_int_equal(raw_int(f, "SELECT count(*) FROM audit WHERE event = 'key.delete' AND actor = 'CN=ca-server'"),
			 1);
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_true(rep.ok);
	assert_int_equal(rep.records, 3);
	kw_keystore_set_actor(NULL, NULL);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void test_audit_altered(void **state)
{
	struct fx *f = *state;
	struct kw_audit_report rep;

	append_n(f, 5);
	raw_sql(f, "UPDATE audit SET detail = 'nothing happened' WHERE seq = 3");
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_false(rep.ok);
	assert_int_equal(rep.first_bad, 3);
	assert_non_null(strstr(rep.problem, "record 3"));
	assert_non_null(strstr(rep.problem, "altered"));
	assert_int_equal(rep.records, 5);
}

static void test_audit_altered_other_fields(void **state)
{
	struct fx *f = *state;
	static const char *const edits[] = {"time = time + 1", "actor = 'admin'", "event = 'key.delete'",
					    "partition = 'other'"};
	struct kw_audit_report rep;

	append_n(f, 4 * 2);
	for (int i = 0; i < 4; i++) {
		raw_sql(f, "UPDATE audit SET %s WHERE seq = %d", edits[i], 8 - i);
		assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
		assert_false(rep.ok);
		assert_int_equal(rep.first_bad, 8 - i);
	}
}

static void test_audit_rehashed(void **state)
{
	struct fx *f = *state;
	struct kw_audit_report rep;

	append_n(f, 4);
	/* an edit that also replaces the record's hash breaks the next link */
	raw_sql(f, "UPDATE audit SET detail = 'x', hash = zeroblob(32) WHERE seq = 2");
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_false(rep.ok);
	assert_int_equal(rep.first_bad, 2);
}

static void test_audit_reordered(void **state)
{
	struct fx *f = *state;
	struct kw_audit_report rep;

	append_n(f, 4);
	raw_sql(f, "UPDATE audit SET seq = 100 WHERE seq = 2");
	raw_sql(f, "UPDATE audit SET seq = 2 WHERE seq = 3");
	raw_sql(f, "UPDATE audit SET seq = 3 WHERE seq = 100");
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_false(rep.ok);
	assert_int_equal(rep.first_bad, 2);
}

static void test_audit_tail_removed(void **state)
{
	struct fx *f = *state;
	struct kw_audit_report rep;

	append_n(f, 5);
	raw_sql(f, "DELETE FROM audit WHERE seq = 5");
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_false(rep.ok);
	assert_int_equal(rep.first_bad, 5);
	assert_string_equal(rep.problem, "log ends at 4 but head says 5");
	assert_int_equal(rep.records, 4);
	/* the whole log removed */
	raw_sql(f, "DELETE FROM audit");
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_false(rep.ok);
	assert_int_equal(rep.first_bad, 1);
}

static void test_audit_middle_removed(void **state)
{
	struct fx *f = *state;
	struct kw_audit_report rep;

	append_n(f, 5);
	raw_sql(f, "DELETE FROM audit WHERE seq = 2");
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_false(rep.ok);
	assert_int_equal(rep.first_bad, 2);
	assert_string_equal(rep.problem, "record 2 missing");
}

/* A head saved earlier: still in the chain (an ancestor), replaced, or cut away. */
static void test_audit_saved_head(void **state)
{
	struct fx *f = *state;
	struct kw_audit_report rep;
	unsigned char saved[KW_AUDIT_HASH_LEN], other[KW_AUDIT_HASH_LEN];
	uint64_t seq;

	append_n(f, 3);
	assert_int_equal(kw_keystore_audit_head(f->ks, &seq, saved), KW_OK);
	assert_int_equal(seq, 3);
	append_n(f, 3);
	assert_int_equal(kw_keystore_audit_verify_head(f->ks, 3, saved, &rep), KW_OK);
	assert_true(rep.ok);
	assert_int_equal(rep.head_seq, 6);
	assert_int_equal(kw_keystore_audit_head(f->ks, &seq, other), KW_OK);
	assert_memory_equal(rep.head_hash, other, KW_AUDIT_HASH_LEN);
	/* the saved head is the current one */
	assert_int_equal(kw_keystore_audit_verify_head(f->ks, 6, other, &rep), KW_OK);
	assert_true(rep.ok);
	/* another hash at that seq: rewritten */
	other[0] ^= 1;
	assert_int_equal(kw_keystore_audit_verify_head(f->ks, 3, other, &rep), KW_OK);
	assert_false(rep.ok);
	assert_int_equal(rep.first_bad, 3);
	assert_non_null(strstr(rep.problem, "differs from the saved head"));
	/* the tail cut back to 2 with a consistent head in meta: the chain is fine, the saved head gone */
	raw_sql(f, "DELETE FROM audit WHERE seq > 2");
	raw_sql(f, "UPDATE meta SET value = (SELECT hash FROM audit WHERE seq = 2) WHERE key = 'audit.hash'");
	raw_sql(f, "UPDATE meta SET value = '2' WHERE key = 'audit.seq'");
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_true(rep.ok);
	assert_int_equal(kw_keystore_audit_verify_head(f->ks, 3, saved, &rep), KW_OK);
	assert_false(rep.ok);
	assert_int_equal(rep.first_bad, 3);
	assert_non_null(strstr(rep.problem, "is not in the log"));
	assert_int_equal(kw_keystore_audit_verify_head(f->ks, 3, NULL, &rep), KW_ERR_ARGUMENTS);
}

/*
 * The size policy: the oldest records move to an archive file, the store's
 * chain goes on from the archived base, and the archives verify end to end
 * up to the store's first record; a tampered archive is caught.
 */
static void test_audit_archive(void **state)
{
	struct fx *f = *state;
	struct kw_audit_report rep, ar;
	char dir[200], file[300], cmd[400];
	uint64_t archived = 0, records = 0, n;

	snprintf(dir, sizeof dir, "%s/archive", f->dir);
	append_n(f, 10);
	assert_int_equal(kw_keystore_audit_count(f->ks, &n), KW_OK);
	/* nothing to do when the store holds no more than keep */
	assert_int_equal(kw_keystore_audit_archive(f->ks, dir, n, &archived, file, sizeof file), KW_OK);
	assert_int_equal(archived, 0);
	assert_int_equal(kw_keystore_audit_archive(f->ks, dir, 3, &archived, file, sizeof file), KW_OK);
	assert_int_equal(archived, n - 3);
	assert_non_null(strstr(file, "/archive/00000000000000000001-"));
	/* 3 kept and the record of the archiving */
	assert_int_equal(raw_int(f, "SELECT count(*) FROM audit"), 4);
	assert_int_equal(raw_int(f, "SELECT count(*) FROM audit WHERE event = 'audit.archive'"), 1);
	assert_int_equal(kw_keystore_audit_count(f->ks, &records), KW_OK);
	assert_int_equal(records, 4);
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_true(rep.ok);
	assert_int_equal(rep.records, 4);
	assert_int_equal(rep.base_seq, n - 3);
	assert_int_equal(kw_audit_archives_verify(dir, &ar), KW_OK);
	assert_true(ar.ok);
	assert_int_equal(ar.records, n - 3);
	assert_int_equal(ar.head_seq, rep.base_seq);
	assert_memory_equal(ar.head_hash, rep.base_hash, KW_AUDIT_HASH_LEN);

	/* a second archive continues the first; both verify as one chain */
	append_n(f, 5);
	assert_int_equal(kw_keystore_audit_archive(f->ks, dir, 2, &archived, file, sizeof file), KW_OK);
	assert_int_equal(archived, 7);
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_true(rep.ok);
	assert_int_equal(kw_audit_archives_verify(dir, &ar), KW_OK);
	assert_true(ar.ok);
	assert_int_equal(ar.head_seq, rep.base_seq);
	assert_int_equal(ar.records, rep.base_seq);
	/* the base survives a restart */
	fx_reopen(f);
	assert_int_equal(kw_keystore_audit_verify(f->ks, &rep), KW_OK);
	assert_true(rep.ok);
	assert_int_equal(rep.base_seq, ar.head_seq);

	/* an archived record edited: the archives no longer verify */
	snprintf(cmd, sizeof cmd, "sed -i '2s/ x[0-9a-f]*$/ x6e6f7468696e67/' %s/*-00000000000000000%03llu.audit", dir,
		 (unsigned long long)(n - 3));
	assert_int_equal(system(cmd), 0);
	assert_int_equal(kw_audit_archives_verify(dir, &ar), KW_OK);
	assert_false(ar.ok);
	assert_int_equal(ar.first_bad, 2);
	assert_non_null(strstr(ar.problem, "line 2"));
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/*
 * Reading the log back page by page: after a seq, at most a page, within a
 * byte budget (but at least one record), and each record's hash recomputes
 * from the one before (what an offline check of an export does).
 */
static void test_audit_list(void **state)
{
	struct fx *f = *state;
	struct kw_audit_page page;
	unsigned char prev[KW_AUDIT_HASH_LEN] = {0}, h[KW_AUDIT_HASH_LEN];
	uint64_t base, archived = 0;
	char dir[128], big[3000];

	assert_int_equal(kw_keystore_audit_list(f->ks, 0, 0, 0, &page), KW_OK);
	base = raw_int(f, "SELECT count(*) FROM audit"); /* init and the partition */
	assert_int_equal(page.n, base);
	assert_false(page.more);
	kw_audit_page_cleanup(&page);
	append_n(f, 1200);

	/* the whole log in pages of at most KW_AUDIT_PAGE_MAX, chained */
	uint64_t since = 0, seen = 0;
	bool more;
	do {
		assert_int_equal(kw_keystore_audit_list(f->ks, since, 5000, 0, &page), KW_OK);
		assert_true(page.n <= KW_AUDIT_PAGE_MAX);
		assert_int_equal(page.head_seq, base + 1200);
		for (size_t i = 0; i < page.n; i++) {
			assert_int_equal(page.entries[i].seq, since + 1);
			assert_memory_equal(page.entries[i].prev_hash, prev, sizeof prev);
			assert_int_equal(kw_audit_entry_hash(prev, &page.entries[i], h), KW_OK);
			assert_memory_equal(h, page.entries[i].hash, sizeof h);
			memcpy(prev, h, sizeof prev);
			since = page.entries[i].seq;
			seen++;
		}
		more = page.more;
		assert_true(more == (seen < base + 1200));
		kw_audit_page_cleanup(&page);
	} while (more);
	assert_int_equal(seen, base + 1200);

	/* after a seq, a limit */
	assert_int_equal(kw_keystore_audit_list(f->ks, 10, 3, 0, &page), KW_OK);
	assert_int_equal(page.n, 3);
	assert_int_equal(page.entries[0].seq, 11);
	assert_int_equal(page.entries[2].seq, 13);
	assert_true(page.more);
	assert_string_equal(page.entries[0].event, "key.generate");
	kw_audit_page_cleanup(&page);
	/* past the head: nothing, no more */
	assert_int_equal(kw_keystore_audit_list(f->ks, base + 1200, 0, 0, &page), KW_OK);
	assert_int_equal(page.n, 0);
	assert_false(page.more);
	kw_audit_page_cleanup(&page);

	/* a byte budget cuts the page, but one record always comes */
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(kw_keystore_audit(f->ks, "", "admin", "test.big", big), KW_OK);
	assert_int_equal(kw_keystore_audit(f->ks, "", "admin", "test.big", big), KW_OK);
	assert_int_equal(kw_keystore_audit_list(f->ks, base + 1200, 0, 1000, &page), KW_OK);
	assert_int_equal(page.n, 1);
	assert_true(page.more);
	assert_string_equal(page.entries[0].detail, big);
	kw_audit_page_cleanup(&page);

	/* after archiving, the page starts after the base, which it names */
	snprintf(dir, sizeof dir, "%s/archive", f->dir);
	assert_int_equal(kw_keystore_audit_archive(f->ks, dir, 100, &archived, NULL, 0), KW_OK);
	assert_true(archived > 0);
	assert_int_equal(kw_keystore_audit_list(f->ks, 0, 1, 0, &page), KW_OK);
	assert_int_equal(page.n, 1);
	assert_true(page.base_seq > 0);
	assert_int_equal(page.entries[0].seq, page.base_seq + 1);
	assert_memory_equal(page.entries[0].prev_hash, page.base_hash, KW_AUDIT_HASH_LEN);
	kw_audit_page_cleanup(&page);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_audit_ok, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_changes_audited, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_audit_altered, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_audit_altered_other_fields, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_audit_rehashed, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_audit_reordered, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_audit_tail_removed, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_audit_middle_removed, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_audit_saved_head, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_audit_archive, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_audit_list, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
