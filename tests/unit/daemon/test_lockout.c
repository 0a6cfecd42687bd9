/*
 * Lockout: N failures in the window lock for the duration, then free again;
 * made-up identities can neither crowd out real ones nor stop the counting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/daemon.h"

static void test_lock_and_release(void **state)
{
	struct kw_lockout *lo;

	(void)state;
	assert_int_equal(kw_lockout_new(3, 3, 60, 1, &lo), KW_OK);
	for (int i = 0; i < 2; i++) {
		kw_lockout_fail(lo, KW_LOCKOUT_KNOWN, "cred A");
		assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_KNOWN, "cred A"), KW_OK);
	}
	kw_lockout_fail(lo, KW_LOCKOUT_KNOWN, "cred A");
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_KNOWN, "cred A"), KW_ERR_LOCKED_OUT);
	assert_non_null(strstr(kw_last_error(), "cred A"));
	/* others are not affected */
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_KNOWN, "cred B"), KW_OK);
	sleep(2);
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_KNOWN, "cred A"), KW_OK);
	kw_lockout_free(lo);
}

static void test_success_resets(void **state)
{
	struct kw_lockout *lo;

	(void)state;
	assert_int_equal(kw_lockout_new(3, 3, 60, 60, &lo), KW_OK);
	kw_lockout_fail(lo, KW_LOCKOUT_KNOWN, "x");
	kw_lockout_fail(lo, KW_LOCKOUT_KNOWN, "x");
	kw_lockout_success(lo, KW_LOCKOUT_KNOWN, "x");
	kw_lockout_fail(lo, KW_LOCKOUT_KNOWN, "x");
	kw_lockout_fail(lo, KW_LOCKOUT_KNOWN, "x");
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_KNOWN, "x"), KW_OK);
	kw_lockout_free(lo);
}

#define FLOOD 5000 /* more than a table holds */

/* One failure each for FLOOD made-up certificates. */
static void fail_strangers(struct kw_lockout *lo)
{
	char who[64];

	for (int i = 0; i < FLOOD; i++) {
		snprintf(who, sizeof who, "credential %08d", i);
		kw_lockout_fail(lo, KW_LOCKOUT_STRANGER, who);
	}
}

/* issue #11 finding 6: thousands of made-up names must not stop the counting for a real identity */
static void test_strangers_cannot_crowd_out_known(void **state)
{
	struct kw_lockout *lo;

	(void)state;
	assert_int_equal(kw_lockout_new(3, 1000000, 60, 60, &lo), KW_OK);
	fail_strangers(lo);
	for (int i = 0; i < FLOOD; i++)
		kw_lockout_fail(lo, KW_LOCKOUT_ADDRESS, "enrollments from 192.0.2.1");
	for (int i = 0; i < 3; i++) {
		assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_KNOWN, "setup password of partition \"p\""), KW_OK);
		kw_lockout_fail(lo, KW_LOCKOUT_KNOWN, "setup password of partition \"p\"");
	}
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_KNOWN, "setup password of partition \"p\""),
			 KW_ERR_LOCKED_OUT);
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_KNOWN, "admin unlock"), KW_OK);
	kw_lockout_free(lo);
}

/* a full stranger table evicts its oldest unlocked entry and goes on counting new ones */
static void test_full_table_evicts_and_counts(void **state)
{
	struct kw_lockout *lo;

	(void)state;
	assert_int_equal(kw_lockout_new(3, 3, 60, 60, &lo), KW_OK);
	fail_strangers(lo);
	for (int i = 0; i < 3; i++)
		kw_lockout_fail(lo, KW_LOCKOUT_STRANGER, "credential new");
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_STRANGER, "credential new"), KW_ERR_LOCKED_OUT);
	kw_lockout_free(lo);
}

/* when every entry is locked, an identity that cannot be counted is refused, not let through */
static void test_full_of_locks_fails_closed(void **state)
{
	struct kw_lockout *lo;

	(void)state;
	assert_int_equal(kw_lockout_new(1, 1, 60, 60, &lo), KW_OK);
	fail_strangers(lo);
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_STRANGER, "credential fresh"), KW_ERR_LOCKED_OUT);
	assert_non_null(strstr(kw_last_error(), "cannot be tracked"));
	/* the locked ones stay locked: nothing was evicted */
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_STRANGER, "credential 00000000"), KW_ERR_LOCKED_OUT);
	/* real identities live apart and are unaffected */
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_KNOWN, "admin unlock"), KW_OK);
	kw_lockout_free(lo);
}

/* a source address has its own limit */
static void test_address_limit(void **state)
{
	struct kw_lockout *lo;

	(void)state;
	assert_int_equal(kw_lockout_new(2, 5, 60, 60, &lo), KW_OK);
	for (int i = 0; i < 4; i++)
		kw_lockout_fail(lo, KW_LOCKOUT_ADDRESS, "enrollments from 192.0.2.1");
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_ADDRESS, "enrollments from 192.0.2.1"), KW_OK);
	kw_lockout_fail(lo, KW_LOCKOUT_ADDRESS, "enrollments from 192.0.2.1");
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_ADDRESS, "enrollments from 192.0.2.1"), KW_ERR_LOCKED_OUT);
	assert_non_null(strstr(kw_last_error(), "after 5 failed"));
	assert_int_equal(kw_lockout_check(lo, KW_LOCKOUT_ADDRESS, "enrollments from 192.0.2.2"), KW_OK);
	kw_lockout_free(lo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lock_and_release),
		cmocka_unit_test(test_success_resets),
		cmocka_unit_test(test_strangers_cannot_crowd_out_known),
		cmocka_unit_test(test_full_table_evicts_and_counts),
		cmocka_unit_test(test_full_of_locks_fails_closed),
		cmocka_unit_test(test_address_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
