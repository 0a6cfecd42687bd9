/* The aggregator of unauthenticated failures: one record per source and interval, bounded memory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/daemon.h"

struct emitted {
	unsigned n;
	char source[8][64];
	char event[8][24];
	uint64_t count[8];
	unsigned seconds[8];
};

static void collect(void *ctx, const char *source, const char *event, uint64_t count, unsigned seconds)
{
	struct emitted *e = ctx;

	assert_true(e->n < 8);
	snprintf(e->source[e->n], sizeof e->source[e->n], "%s", source);
	snprintf(e->event[e->n], sizeof e->event[e->n], "%s", event);
	e->count[e->n] = count;
	e->seconds[e->n] = seconds;
	e->n++;
}

static void test_flood_from_one_source(void **state)
{
	struct kw_failagg *f;
	struct emitted e = {0};
	unsigned first = 0;

	(void)state;
	assert_int_equal(kw_failagg_new(60, 16, &f), KW_OK);
	for (int i = 0; i < 10000; i++)
		first += kw_failagg_note(f, "192.0.2.1", "enroll.fail", 1000 + i / 1000);
	/* only the very first is recorded at once */
	assert_int_equal(first, 1);
	kw_failagg_flush(f, 1059, false, collect, &e);
	assert_int_equal(e.n, 0); /* the interval is not over */
	kw_failagg_flush(f, 1060, false, collect, &e);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.source[0], "192.0.2.1");
	assert_string_equal(e.event[0], "enroll.fail");
	assert_int_equal(e.count[0], 9999);
	assert_int_equal(e.seconds[0], 60);
	/* still failing in the next interval: counted, no new first record */
	assert_false(kw_failagg_note(f, "192.0.2.1", "enroll.fail", 1061));
	kw_failagg_flush(f, 1120, false, collect, &e);
	assert_int_equal(e.n, 2);
	assert_int_equal(e.count[1], 1);
	/* a quiet interval frees the source: its next failure is recorded at once */
	kw_failagg_flush(f, 1180, false, collect, &e);
	assert_int_equal(e.n, 2);
	assert_true(kw_failagg_note(f, "192.0.2.1", "enroll.fail", 1181));
	kw_failagg_free(f);
}

static void test_sources_and_events_apart(void **state)
{
	struct kw_failagg *f;
	struct emitted e = {0};

	(void)state;
	assert_int_equal(kw_failagg_new(10, 16, &f), KW_OK);
	assert_true(kw_failagg_note(f, "192.0.2.1", "enroll.fail", 0));
	assert_true(kw_failagg_note(f, "192.0.2.2", "enroll.fail", 0));
	assert_true(kw_failagg_note(f, "192.0.2.1", "auth.fail", 0));
	assert_false(kw_failagg_note(f, "192.0.2.1", "auth.fail", 1));
	/* a single failure needs no summary */
	kw_failagg_flush(f, 10, false, collect, &e);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.event[0], "auth.fail");
	assert_int_equal(e.count[0], 1);
	kw_failagg_free(f);
}

/* Many sources: the table stays its size, the overflow shares one entry, and every failure is counted. */
static void test_table_is_bounded(void **state)
{
	struct kw_failagg *f;
	struct emitted e = {0};
	unsigned first = 0;
	uint64_t total = 0;
	char source[32];

	(void)state;
	assert_int_equal(kw_failagg_new(60, 16, &f), KW_OK);
	for (int i = 0; i < 100000; i++) {
		snprintf(source, sizeof source, "10.%d.%d.%d", i >> 16 & 255, i >> 8 & 255, i & 255);
		first += kw_failagg_note(f, source, "enroll.fail", 0);
	}
	/* 16 sources of their own and the "other sources" entry */
	assert_int_equal(first, 17);
	kw_failagg_flush(f, 60, false, collect, &e);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.source[0], KW_FAILAGG_OTHER);
	total = first + e.count[0];
	assert_int_equal(total, 100000);
	kw_failagg_free(f);
}

/* At shutdown every count is written, interval over or not. */
static void test_flush_all(void **state)
{
	struct kw_failagg *f;
	struct emitted e = {0};

	(void)state;
	assert_int_equal(kw_failagg_new(60, 4, &f), KW_OK);
	for (int i = 0; i < 5; i++)
		kw_failagg_note(f, "192.0.2.9", "enroll.fail", 0);
	kw_failagg_flush(f, 1, true, collect, &e);
	assert_int_equal(e.n, 1);
	assert_int_equal(e.count[0], 4);
	kw_failagg_flush(f, 2, true, collect, &e);
	assert_int_equal(e.n, 1);
	kw_failagg_free(f);
	assert_int_equal(kw_failagg_new(0, 4, &f), KW_ERR_ARGUMENTS);
	assert_null(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flood_from_one_source),
		cmocka_unit_test(test_sources_and_events_apart),
		cmocka_unit_test(test_table_is_bounded),
		cmocka_unit_test(test_flush_all),
	};
	return cmocka_run_group_tests_name("daemon_failagg", tests, NULL, NULL);
}
