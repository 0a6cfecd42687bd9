/* The log rate limiter: a flood of lines from one site becomes a few lines and one summary. */
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

#include "common/log.h"

static time_t fake_now = 1000;

static time_t fake_clock(void)
{
	return fake_now;
}

/* stderr goes to a temporary file while a test runs; returns what was written. */
static int saved_stderr = -1;
static FILE *capture;

static void capture_start(void)
{
	fflush(stderr);
	capture = tmpfile();
	assert_non_null(capture);
	saved_stderr = dup(2);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(fileno(capture), 2) >= 0);
}

static char *capture_end(void)
{
	long len;
	char *text;

	fflush(stderr);
	assert_true(dup2(saved_stderr, 2) >= 0);
	close(saved_stderr);
	len = ftell(capture);
	assert_true(len >= 0);
	text = calloc(1, (size_t)len + 1);
	assert_non_null(text);
	rewind(capture);
	assert_int_equal(fread(text, 1, (size_t)len, capture), (size_t)len);
	fclose(capture);
	return text;
}

static unsigned count_lines(const char *text, const char *needle)
{
	unsigned n = 0;

	for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static int setup(void **state)
{
	(void)state;
	fake_now = 1000;
	kw_log_threshold = KW_LOG_INFO;
	kw_log_limit_set_clock(fake_clock);
	kw_log_limit_configure(3, 10);
	return 0;
}

static void test_flood_is_summarised(void **state)
{
	unsigned written = 0;
	char *text;

	(void)state;
	capture_start();
	for (int i = 0; i < 10000; i++)
		written += kw_log_limited("enroll.fail", KW_LOG_WARN, "enroll from 192.0.2.1 failed (%d)", i);
	assert_int_equal(written, 3);
	/* the interval is not over: nothing to summarise yet */
	fake_now += 9;
	assert_int_equal(kw_log_limited_flush(), 0);
	fake_now += 1;
	assert_int_equal(kw_log_limited_flush(), 1);
	/* said once */
	assert_int_equal(kw_log_limited_flush(), 0);
	text = capture_end();
	assert_int_equal(count_lines(text, "enroll from 192.0.2.1 failed"), 3);
	assert_non_null(strstr(text, "warn  suppressed 9997 messages (enroll.fail) in the last 10 s"));
	free(text);
}

static void test_keys_are_separate(void **state)
{
	char *text;

	(void)state;
	capture_start();
	for (int i = 0; i < 5; i++) {
		kw_log_limited("a", KW_LOG_WARN, "line a");
		kw_log_limited("b", KW_LOG_INFO, "line b");
	}
	/* a new interval writes again */
	fake_now += 10;
	assert_true(kw_log_limited("a", KW_LOG_WARN, "line a"));
	text = capture_end();
	assert_int_equal(count_lines(text, "line a"), 4);
	assert_int_equal(count_lines(text, "line b"), 3);
	assert_non_null(strstr(text, "suppressed 2 messages (a)"));
	free(text);
	capture_start();
	assert_int_equal(kw_log_limited_flush(), 1); /* b's */
	text = capture_end();
	assert_non_null(strstr(text, "info  suppressed 2 messages (b)"));
	free(text);
}

/* More keys than the table holds share one bounded "other" entry. */
static void test_table_is_bounded(void **state)
{
	unsigned written = 0;
	char key[32], *text;

	(void)state;
	capture_start();
	for (int i = 0; i < 100000; i++) {
		snprintf(key, sizeof key, "site-%d", i);
		written += kw_log_limited(key, KW_LOG_WARN, "line %d", i);
	}
	fake_now += 10;
	kw_log_limited_flush();
	text = capture_end();
	/* 63 keys of their own with one line each, and 3 more lines under "other" */
	assert_int_equal(written, 63 + 3);
	assert_non_null(strstr(text, "suppressed 99934 messages (other)"));
	free(text);
}

/* Below the threshold nothing is written or counted. */
static void test_threshold(void **state)
{
	char *text;

	(void)state;
	capture_start();
	assert_false(kw_log_limited("quiet", KW_LOG_DEBUG, "debug line"));
	fake_now += 10;
	assert_int_equal(kw_log_limited_flush(), 0);
	text = capture_end();
	assert_string_equal(text, "");
	free(text);
}

/* Under systemd (JOURNAL_STREAM names stderr) a line carries its syslog priority instead of a time. */
static void test_journal_priorities(void **state)
{
	struct stat st;
	char js[64], *text;

	(void)state;
	capture_start();
	assert_int_equal(fstat(2, &st), 0);
	snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	kw_log_init("info");
	kw_log_write(KW_LOG_WARN, "a warning");
	kw_log_write(KW_LOG_ERROR, "an error");
	kw_log_write(KW_LOG_INFO, "news");
	text = capture_end();
	assert_string_equal(text, "<4>warn: a warning\n<3>error: an error\n<6>info: news\n");
	free(text);
	/* another stream (the journal's variable inherited, stderr redirected elsewhere): plain lines */
	setenv("JOURNAL_STREAM", "0:0", 1);
	capture_start();
	kw_log_init("info");
	kw_log_write(KW_LOG_WARN, "elsewhere");
	text = capture_end();
	assert_null(strchr(text, '<'));
	assert_non_null(strstr(text, "warn  elsewhere"));
	free(text);
	unsetenv("JOURNAL_STREAM");
	kw_log_init("info");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_flood_is_summarised, setup),
		cmocka_unit_test_setup(test_keys_are_separate, setup),
		cmocka_unit_test_setup(test_table_is_bounded, setup),
		cmocka_unit_test_setup(test_threshold, setup),
		cmocka_unit_test(test_journal_priorities),
	};
	return cmocka_run_group_tests_name("common_log", tests, NULL, NULL);
}
