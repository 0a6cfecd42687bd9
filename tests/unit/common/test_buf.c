/* Capped buffers refuse to grow past their maximum. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/buf.h"

static void test_cap(void **state)
{
	struct kw_buf b;
	unsigned char chunk[1000];

	(void)state;
	memset(chunk, 'x', sizeof chunk);
	kw_buf_init(&b, 5000);
	for (int i = 0; i < 5; i++)
		assert_int_equal(kw_buf_append(&b, chunk, sizeof chunk), KW_OK);
	assert_int_equal(b.len, 5000);
	assert_int_equal(kw_buf_append(&b, chunk, 1), KW_ERR_DATA_LEN);
	assert_int_equal(b.len, 5000);
	/* an overflowing size is refused, not wrapped */
	assert_int_equal(kw_buf_reserve(&b, SIZE_MAX), KW_ERR_DATA_LEN);
	kw_buf_consume(&b, 4000);
	assert_int_equal(b.len, 1000);
	assert_int_equal(b.data[0], 'x');
	assert_int_equal(kw_buf_append(&b, chunk, 1000), KW_OK);
	kw_buf_cleanup(&b);
	assert_null(b.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_cap)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
