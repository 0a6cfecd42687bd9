/*
 * ca.conf's database (conf.c, db.c's ca_db_url_check): empty or absent is
 * keyward-ca.db; a PostgreSQL URL is kept and written back; anything else
 * is refused naming ca.conf and the key, and no message repeats a URL's
 * password (a bad value is not echoed at all).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ca/ca.h"

#define HEAD "[ca]\nname = T\nkey = k\n"

static struct ca_conf conf;

static int parse(const char *text)
{
	return ca_conf_parse(&conf, "/tmp/x", "/tmp/x/ca.conf", text);
}

static void test_default_sqlite(void **state)
{
	(void)state;
	assert_int_equal(parse(HEAD), 0);
	assert_string_equal(conf.database, "");
	assert_true(ca_db_is_sqlite(&conf));
	assert_int_equal(parse(HEAD "database =\n"), 0);
	assert_true(ca_db_is_sqlite(&conf));
}

static void test_url_kept_and_written(void **state)
{
	char *text;

	(void)state;
	assert_int_equal(parse(HEAD "database = postgresql://kwca@pg1:5433/root?sslmode=verify-full\n"), 0);
	assert_string_equal(conf.database, "postgresql://kwca@pg1:5433/root?sslmode=verify-full");
	assert_false(ca_db_is_sqlite(&conf));
	text = ca_conf_text(&conf);
	assert_non_null(text);
	assert_non_null(strstr(text, "\ndatabase = postgresql://kwca@pg1:5433/root?sslmode=verify-full\n"));
	assert_int_equal(ca_conf_check(&conf, text), 0);
	free(text);
	/* a CA on SQLite writes no database line: its ca.conf stays as it was */
	assert_int_equal(parse(HEAD), 0);
	text = ca_conf_text(&conf);
	assert_non_null(text);
	assert_null(strstr(text, "database"));
	free(text);
	assert_int_equal(parse(HEAD "database = postgres://h/d\n"), 0);
}

/* Refused, the message naming the file and the key, and saying why. */
static void expect_refused(const char *line, const char *why)
{
	char text[512];

	snprintf(text, sizeof text, HEAD "%s\n", line);
	assert_int_equal(parse(text), -1);
	if (!strstr(ca_last_error(), "/tmp/x/ca.conf: [ca] database") || !strstr(ca_last_error(), why))
		fail_msg("%s: \"%s\" lacks the file, the key or \"%s\"", line, ca_last_error(), why);
	if (strstr(ca_last_error(), "hunter2") || strstr(ca_last_error(), "sekrit"))
		fail_msg("%s: the message repeats the password: %s", line, ca_last_error());
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_refused("database = mysql://h/d", "postgresql://");
	expect_refused("database = /var/lib/ca.db", "postgresql://");
	expect_refused("database = postgresql://u:hunter2@h/d", ".pgpass");
	expect_refused("database = postgresql://h/d?password=hunter2", ".pgpass");
	expect_refused("database = postgresql://h:5432", "names no database");
	/* libpq cannot parse it: its own message (which quotes pieces) is not passed on */
	expect_refused("database = postgresql://u:sekrit%zz@h/d", "libpq");
	expect_refused("database = postgresql://h/d?nosuchparam=1", "libpq");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_sqlite),
		cmocka_unit_test(test_url_kept_and_written),
		cmocka_unit_test(test_bad_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
