/* Lockout: N failures in the window lock for the duration, then free again. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/daemon.h"

static void test_lock_and_release(void **state)
{
	struct kw_lockout *lo;

	(void)state;
	assert_int_equal(kw_lockout_new(3, 60, 1, &lo), KW_OK);
	for (int i = 0; i < 2; i++) {
		kw_lockout_fail(lo, "cred A");
		assert_int_equal(kw_lockout_check(lo, "cred A"), KW_OK);
	}
	kw_lockout_fail(lo, "cred A");
	assert_int_equal(kw_lockout_check(lo, "cred A"), KW_ERR_LOCKED_OUT);
	assert_non_null(strstr(kw_last_error(), "cred A"));
	/* others are not affected */
	assert_int_equal(kw_lockout_check(lo, "cred B"), KW_OK);
	sleep(2);
	assert_int_equal(kw_lockout_check(lo, "cred A"), KW_OK);
	kw_lockout_free(lo);
}

static void test_success_resets(void **state)
{
	struct kw_lockout *lo;

	(void)state;
	assert_int_equal(kw_lockout_new(3, 60, 60, &lo), KW_OK);
	kw_lockout_fail(lo, "x");
	kw_lockout_fail(lo, "x");
	kw_lockout_success(lo, "x");
	kw_lockout_fail(lo, "x");
	kw_lockout_fail(lo, "x");
	assert_int_equal(kw_lockout_check(lo, "x"), KW_OK);
	kw_lockout_free(lo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lock_and_release),
		cmocka_unit_test(test_success_resets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
