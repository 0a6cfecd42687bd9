/*
 * error.c: the CA's one error type. A message that quotes the last error
 * (the way every layer adds where it failed) reads as written: commit
 * 12359d5 fixed ca_error formatting into the buffer it read from, which
 * garbled exactly those messages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ca/ca.h"

static void test_message_quotes_last_error(void **state)
{
	(void)state;
	assert_int_equal(ca_error("token: C_Login failed: CKR 0x%x", 0xa0), -1);
	assert_int_equal(ca_last_error_kind(), CA_ERR_FAILED);
	/* the last error as an argument, at the start, the middle and the end of the new message */
	assert_int_equal(ca_error("setup: %s", ca_last_error()), -1);
	assert_string_equal(ca_last_error(), "setup: token: C_Login failed: CKR 0xa0");
	assert_int_equal(ca_usage_error("%s (and again: %s)", ca_last_error(), ca_last_error()), -1);
	assert_string_equal(ca_last_error(), "setup: token: C_Login failed: CKR 0xa0 (and again: setup: token: "
					     "C_Login failed: CKR 0xa0)");
	assert_int_equal(ca_last_error_kind(), CA_ERR_USAGE);
	assert_int_equal(ca_fail(CA_ERR_FAILED, "submit: %s; nothing was issued", ca_last_error() + 7), -1);
	assert_string_equal(ca_last_error(), "submit: token: C_Login failed: CKR 0xa0 (and again: setup: token: "
					     "C_Login failed: CKR 0xa0); nothing was issued");
}

/* A message longer than the buffer is cut, not overrun, also when it quotes itself. */
static void test_long_message_cut(void **state)
{
	char big[3000];

	(void)state;
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(ca_error("%s", big), -1);
	assert_true(strlen(ca_last_error()) < sizeof big - 1);
	assert_int_equal(ca_error("outer: %s", ca_last_error()), -1);
	assert_int_equal(strncmp(ca_last_error(), "outer: xxx", 10), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_message_quotes_last_error),
		cmocka_unit_test(test_long_message_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
