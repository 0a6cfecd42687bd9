/*
 * kw_secret_read_file: the one reader of PIN, passphrase and password
 * files. A file others may read is refused with the chmod that fixes it;
 * the first line is the secret, without its end; a line over the cap, an
 * empty one and a directory are refused; the buffer is wiped on failure.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/secret.h"

static char dir[64], path[128];

static void write_secret(const char *text, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/kwsecret.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/pin", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

static void test_first_line(void **state)
{
	char buf[64];

	(void)state;
	write_secret("4711-pin\n", 9, 0600);
	assert_int_equal(kw_secret_read_file(path, "PIN file", buf, sizeof buf), KW_OK);
	assert_string_equal(buf, "4711-pin");
	write_secret("dos line\r\nsecond line\n", 22, 0400);
	assert_int_equal(kw_secret_read_file(path, "PIN file", buf, sizeof buf), KW_OK);
	assert_string_equal(buf, "dos line");
	/* no newline at all, and spaces inside kept */
	write_secret("a pass phrase", 13, 0600);
	assert_int_equal(kw_secret_read_file(path, "passphrase file", buf, sizeof buf), KW_OK);
	assert_string_equal(buf, "a pass phrase");
	/* whatever follows the first line is wiped, not left behind the NUL */
	write_secret("ab\nSECRETTAIL", 13, 0600);
	assert_int_equal(kw_secret_read_file(path, "PIN file", buf, sizeof buf), KW_OK);
	assert_string_equal(buf, "ab");
	assert_null(memmem(buf, sizeof buf, "SECRET", 6));
}

static void test_mode_refused(void **state)
{
	char buf[64], want[400];

	(void)state;
	write_secret("4711-pin\n", 9, 0644);
	memset(buf, 'x', sizeof buf);
	assert_int_equal(kw_secret_read_file(path, "PIN file", buf, sizeof buf), KW_ERR_CONFIG);
	snprintf(want, sizeof want,
		 "the PIN file %s has mode 0644: group or others may read it; refused (chmod 600 %s)", path, path);
	assert_string_equal(kw_last_error(), want);
	assert_int_equal(buf[0], '\0');
	write_secret("4711-pin\n", 9, 0620);
	assert_int_equal(kw_secret_read_file(path, "PIN file", buf, sizeof buf), KW_ERR_CONFIG);
	assert_non_null(strstr(kw_last_error(), "mode 0620"));
}

static void test_refusals_wipe(void **state)
{
	char buf[16], zero[16] = {0}, big[KW_SECRET_MAX + 2];

	(void)state;
	/* longer than the buffer: refused, and nothing of it left in buf */
	write_secret("0123456789abcdefghij\n", 21, 0600);
	assert_int_equal(kw_secret_read_file(path, "PIN file", buf, sizeof buf), KW_ERR_CONFIG);
	assert_non_null(strstr(kw_last_error(), "longer than 15 bytes"));
	assert_memory_equal(buf, zero, sizeof buf);
	/* longer than the cap, whatever the buffer */
	memset(big, 'p', sizeof big);
	write_secret(big, sizeof big, 0600);
	{
		char *huge = malloc(4 * KW_SECRET_MAX);
		assert_non_null(huge);
		assert_int_equal(kw_secret_read_file(path, "PIN file", huge, 4 * KW_SECRET_MAX), KW_ERR_CONFIG);
		assert_non_null(strstr(kw_last_error(), "longer than 1024 bytes"));
		free(huge);
	}
	/* empty, and a first line that is empty */
	write_secret("", 0, 0600);
	assert_int_equal(kw_secret_read_file(path, "PIN file", buf, sizeof buf), KW_ERR_CONFIG);
	assert_non_null(strstr(kw_last_error(), "is empty"));
	write_secret("\nsecond\n", 8, 0600);
	assert_int_equal(kw_secret_read_file(path, "PIN file", buf, sizeof buf), KW_ERR_CONFIG);
	assert_memory_equal(buf, zero, sizeof buf);
	/* missing, and a directory */
	assert_int_equal(kw_secret_read_file("/nonexistent/pin", "PIN file", buf, sizeof buf), KW_ERR_CONFIG);
	assert_non_null(strstr(kw_last_error(), "cannot read the PIN file /nonexistent/pin"));
	assert_int_equal(kw_secret_read_file(dir, "PIN file", buf, sizeof buf), KW_ERR_CONFIG);
	assert_non_null(strstr(kw_last_error(), "not a regular file"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_line),
		cmocka_unit_test(test_mode_refused),
		cmocka_unit_test(test_refusals_wipe),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
