/*
 * client.conf parsing: a good file with every key, defaults, relative paths,
 * $KEYWARD_CONF, and every error naming file, line and key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "client/client.h"
#include "helpers.h"

static char *dir;

static int setup(void **state)
{
	(void)state;
	dir = kwt_tmpdir();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_rmtree(dir);
	free(dir);
	return 0;
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

static const char good[] = "# a comment\n"
			   "[client]\n"
			   "partition = dev                 ; required\n"
			   "ca = tls/ca.crt\n"
			   "cert = client/dev.crt\n"
			   "key = /abs/dev.key\n"
			   "connect_timeout = 0.5\n"
			   "command_timeout = 12\n"
			   "keepalive = 0\n"
			   "pool_size = 3\n"
			   "machine_owner =\n"
			   "pin_file = client/pin\n"
			   "\n"
			   "[hsm primary]\n"
			   "host = 127.0.0.1\n"
			   "port = 7000\n"
			   "priority = 0\n"
			   "server_name =\n"
			   "[hsm backup]\n"
			   "host = hsm2.example\n"
			   "priority = 5\n"
			   "server_name = hsm.example\n"
			   "[hsm v6]\n"
			   "host = ::1\n"
			   "priority = -1\n";

static void test_good_file(void **state)
{
	struct kw_config cfg;
	char *path = kwt_write(dir, "client.conf", good), *want;

	(void)state;
	assert_int_equal(kw_config_load(path, &cfg), KW_OK);
	assert_string_equal(cfg.partition, "dev");
	/* relative paths resolve against the file's directory; absolute ones stay */
	assert_true(asprintf(&want, "%s/tls/ca.crt", dir) > 0);
	assert_string_equal(cfg.ca, want);
	free(want);
	assert_true(asprintf(&want, "%s/client/dev.crt", dir) > 0);
	assert_string_equal(cfg.cert, want);
	free(want);
	assert_string_equal(cfg.key, "/abs/dev.key");
	assert_true(cfg.connect_timeout == 0.5);
	assert_true(cfg.command_timeout == 12);
	assert_int_equal(cfg.keepalive, 0);
	assert_int_equal(cfg.pool_size, 3);
	assert_string_equal(cfg.machine_owner, "");
	assert_true(asprintf(&want, "%s/client/pin", dir) > 0);
	assert_string_equal(cfg.pin_file, want);
	free(want);
	assert_int_equal(cfg.n_hsms, 3);
	assert_string_equal(cfg.hsms[0].host, "127.0.0.1");
	assert_int_equal(cfg.hsms[0].port, 7000);
	assert_string_equal(cfg.hsms[0].server_name, "127.0.0.1");
	assert_string_equal(cfg.hsms[0].address, "127.0.0.1:7000");
	assert_int_equal(cfg.hsms[1].port, KW_DEFAULT_PORT);
	assert_int_equal(cfg.hsms[1].priority, 5);
	assert_string_equal(cfg.hsms[1].server_name, "hsm.example");
	assert_string_equal(cfg.hsms[1].address, "hsm2.example:7117");
	assert_string_equal(cfg.hsms[2].address, "[::1]:7117");
	assert_int_equal(cfg.hsms[2].priority, -1);
	kw_config_cleanup(&cfg);
	free(path);
}

static void test_defaults_and_public_api(void **state)
{
	char *path = kwt_write(dir, "min.conf", "[client]\npartition=p\nca=ca.pem\n[hsm]\nhost=h\n");
	struct kw_config cfg;
	kw_client *c;

	(void)state;
	assert_int_equal(kw_config_load(path, &cfg), KW_OK);
	assert_true(cfg.connect_timeout == 5);
	assert_true(cfg.command_timeout == 30);
	assert_int_equal(cfg.keepalive, 60);
	assert_int_equal(cfg.pool_size, 8);
	assert_null(cfg.cert);
	assert_null(cfg.machine_owner);
	kw_config_cleanup(&cfg);

	assert_int_equal(kw_client_new(path, &c), KW_OK);
	assert_string_equal(kw_client_partition(c), "p");
	assert_int_equal(kw_client_hsm_count(c), 1);
	assert_string_equal(kw_client_hsm_address(c, 0), "h:7117");
	assert_int_equal(kw_client_hsm_priority(c, 0), 0);
	assert_null(kw_client_hsm_address(c, 1));
	kw_client_free(c);
	kw_client_free(NULL);
	free(path);
}

static void test_env_variable(void **state)
{
	char *path = kwt_write(dir, "env.conf", "[client]\npartition=fromenv\nca=ca.pem\n[hsm a]\nhost=h\n");
	kw_client *c;

	(void)state;
	setenv("KEYWARD_CONF", path, 1);
	assert_int_equal(kw_client_new(NULL, &c), KW_OK);
	assert_string_equal(kw_client_partition(c), "fromenv");
	kw_client_free(c);
	/* an explicit path wins over the variable */
	setenv("KEYWARD_CONF", "/nonexistent/keyward.conf", 1);
	assert_int_equal(kw_client_new(NULL, &c), KW_ERR_CONFIG);
	assert_null(c);
	assert_contains(kw_last_error(), "/nonexistent/keyward.conf");
	assert_int_equal(kw_client_new(path, &c), KW_OK);
	kw_client_free(c);
	unsetenv("KEYWARD_CONF");
	free(path);
}

struct bad_case {
	const char *text;
	const char *want[3]; /* substrings of the message */
};

static void check_bad(const struct bad_case *bc)
{
	char *path = kwt_write(dir, "bad.conf", bc->text);
	kw_client *c = (kw_client *)1;

	assert_int_equal(kw_client_new(path, &c), KW_ERR_CONFIG);
	assert_null(c);
	assert_contains(kw_last_error(), path);
	for (int i = 0; i < 3 && bc->want[i]; i++)
		assert_contains(kw_last_error(), bc->want[i]);
	free(path);
}

#define HEAD "[client]\npartition = p\nca = ca.pem\n"
#define HSM "[hsm a]\nhost = h\n"

static void test_errors(void **state)
{
	static const struct bad_case cases[] = {
		{HEAD "colour = blue\n" HSM, {":4:", "unknown key \"colour\"", "[client]"}},
		{HEAD HSM "weight = 3\n", {":6:", "unknown key \"weight\"", "[hsm a]"}},
		{HEAD HSM "[server]\nx = 1\n", {":7:", "unknown section [server]"}},
		{"stray = 1\n" HEAD HSM, {":1:", "\"stray\"", "outside any section"}},
		{HEAD "connect_timeout = soon\n" HSM, {":4:", "connect_timeout", "soon"}},
		{HEAD "command_timeout = 0\n" HSM, {":4:", "command_timeout"}},
		{HEAD "keepalive = -1\n" HSM, {":4:", "keepalive"}},
		{HEAD "pool_size = 1x\n" HSM, {":4:", "pool_size"}},
		{HEAD HSM "port = 70000\n", {":6:", "port", "70000"}},
		{HEAD HSM "priority = high\n", {":6:", "priority"}},
		{HEAD "partition = q\n" HSM, {":4:", "partition", "twice"}},
		{"[client]\nca = ca.pem\n" HSM, {"partition"}},
		{"[client]\npartition = p\n" HSM, {"\"ca\""}},
		{HEAD, {"no HSM configured"}},
		{HEAD "\n[hsm b]\nport = 1\n", {":5:", "[hsm b]", "\"host\""}},
		{HEAD "cert = c.pem\n" HSM, {"\"cert\"", "\"key\""}},
		{HEAD "this line is junk\n" HSM, {":4:", "syntax error"}},
		{HEAD "ca =\n" HSM, {":4:", "\"ca\""}},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		print_message("case %zu\n", i);
		check_bad(&cases[i]);
	}
}

/* a configuration, not a stream: more than 1 MiB (of comments, after a good file) is refused whole */
static void test_too_large(void **state)
{
	size_t n = (1 << 20) + 64, used = 0;
	char *text = malloc(n + 1);
	struct bad_case bc = {text, {"larger than 1048576 bytes"}};

	(void)state;
	assert_non_null(text);
	used = (size_t)snprintf(text, n + 1, "%s", HEAD HSM);
	while (used + 10 <= n)
		used += (size_t)snprintf(text + used, n + 1 - used, "# comment\n");
	check_bad(&bc);
	free(text);
}

static void test_missing_file(void **state)
{
	kw_client *c;
	char *path;

	(void)state;
	assert_true(asprintf(&path, "%s/nope.conf", dir) > 0);
	assert_int_equal(kw_client_new(path, &c), KW_ERR_CONFIG);
	assert_contains(kw_last_error(), path);
	assert_contains(kw_last_error(), "No such file");
	free(path);
	assert_int_equal(kw_client_new(NULL, NULL), KW_ERR_ARGUMENTS);
}

/* The whole file at path (free it). */
static char *kwt_read(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text = calloc(1, 8192);
	size_t n;

	assert_non_null(f);
	assert_non_null(text);
	n = fread(text, 1, 8191, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

/*
 * kw_client_record_pin_file (issue 15): pin_file in [client] in place of an
 * active line, else of a commented one, else after the header; other lines
 * and the file's mode kept; the client uses the file from then on.
 */
static void test_record_pin_file(void **state)
{
	static const char text[] = "# fill in\n"
				   "[hsm a]\nhost = 127.0.0.1\n"
				   "[client]\npartition = dev\nca = ca.crt\ncert = c.crt\nkey = c.key\n"
				   "#pin_file = client.pin\n"
				   "[hsm b]\nhost = 127.0.0.2\n# pin_file = not this one\n";
	char *path = kwt_write(dir, "rec.conf", text), *pin = kwt_write(dir, "a.pin", "x"), *pin2;
	char *got, *want;
	struct stat st;
	kw_client *c;

	(void)state;
	pin2 = kwt_write(dir, "b.pin", "y");
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(kw_client_new(path, &c), KW_OK);
	assert_int_equal(kw_client_record_pin_file(c, pin), KW_OK);
	got = kwt_read(path);
	assert_true(asprintf(&want,
			     "# fill in\n[hsm a]\nhost = 127.0.0.1\n[client]\npartition = dev\nca = ca.crt\ncert = "
			     "c.crt\nkey = c.key\npin_file = %s\n[hsm b]\nhost = 127.0.0.2\n# pin_file = not this "
			     "one\n",
			     pin) > 0);
	assert_string_equal(got, want);
	free(got);
	free(want);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_string_equal(c->cfg.pin_file, pin);
	/* again with another file: the active line is replaced, nothing added */
	assert_int_equal(kw_client_record_pin_file(c, pin2), KW_OK);
	got = kwt_read(path);
	assert_non_null(strstr(got, "key = c.key\npin_file = "));
	assert_non_null(strstr(got, pin2));
	assert_null(strstr(got, "a.pin"));
	free(got);
	kw_client_free(c);

	/* no mention at all, [client] the last line without a newline */
	free(path);
	path = kwt_write(dir, "rec2.conf", "[hsm a]\nhost = h\n[client]");
	{
		char *fake = kwt_write(dir, "rec2b.conf", "[client]\npartition = p\nca = ca.crt\n[hsm a]\nhost = h\n");
		assert_int_equal(kw_client_new(fake, &c), KW_OK);
		/* point the client at the file to rewrite: only its path matters here */
		free(c->cfg.path);
		c->cfg.path = strdup(path);
		assert_int_equal(kw_client_record_pin_file(c, pin), KW_OK);
		got = kwt_read(path);
		assert_true(asprintf(&want, "[hsm a]\nhost = h\n[client]\npin_file = %s\n", pin) > 0);
		assert_string_equal(got, want);
		free(got);
		free(want);
		/* a file that does not exist is refused before anything is written */
		assert_int_equal(kw_client_record_pin_file(c, "/nonexistent/pin"), KW_ERR_CONFIG);
		assert_contains(kw_last_error(), "/nonexistent/pin");
		kw_client_free(c);
		free(fake);
	}
	free(path);
	free(pin);
	free(pin2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_file),	cmocka_unit_test(test_defaults_and_public_api),
		cmocka_unit_test(test_env_variable),	cmocka_unit_test(test_errors),
		cmocka_unit_test(test_missing_file),	cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_record_pin_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
