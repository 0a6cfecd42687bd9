/* keywardd.conf: values override defaults; mistakes name the setting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/daemon.h"

static char path[] = "/tmp/kwconf.XXXXXX";

static void write_conf(const char *text)
{
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
}

static void test_values(void **state)
{
	struct kw_server_config cfg;

	(void)state;
	write_conf("[server]\nlisten = 0.0.0.0:9000\nmax_inflight = 4\nstore_max_bytes = 1048576\n"
		   "[lockout]\nmax_failures = 5\n[log]\nlevel = debug\n");
	kw_server_config_defaults(&cfg);
	assert_int_equal(kw_server_config_load(&cfg, path), KW_OK);
	assert_string_equal(cfg.listen, "0.0.0.0:9000");
	assert_int_equal(cfg.max_inflight, 4);
	assert_int_equal(cfg.store_max_bytes, 1048576);
	assert_int_equal(cfg.lockout_failures, 5);
	assert_int_equal(cfg.lockout_duration, 300); /* default kept */
	unlink(path);
}

static void test_mistakes(void **state)
{
	struct kw_server_config cfg;

	(void)state;
	strcpy(path, "/tmp/kwconf.XXXXXX");
	write_conf("[server]\nlisen = 1.2.3.4:5\n");
	kw_server_config_defaults(&cfg);
	assert_int_equal(kw_server_config_load(&cfg, path), KW_ERR_CONFIG);
	assert_non_null(strstr(kw_last_error(), "lisen"));
	unlink(path);

	strcpy(path, "/tmp/kwconf.XXXXXX");
	write_conf("[server]\nmax_inflight = -3\n");
	kw_server_config_defaults(&cfg);
	assert_int_equal(kw_server_config_load(&cfg, path), KW_ERR_CONFIG);
	assert_non_null(strstr(kw_last_error(), "max_inflight"));
	unlink(path);

	assert_int_equal(kw_server_config_load(&cfg, "/nonexistent/keywardd.conf"), KW_ERR_CONFIG);
	assert_non_null(strstr(kw_last_error(), "/nonexistent/keywardd.conf"));

	/* a configuration, not a stream: more than 1 MiB (of comments) is refused whole */
	{
		size_t n = (1 << 20) + 64, used = 0;
		char *text = malloc(n + 1);

		assert_non_null(text);
		used = (size_t)snprintf(text, n + 1, "[server]\nmax_inflight = 4\n");
		while (used + 10 <= n)
			used += (size_t)snprintf(text + used, n + 1 - used, "# comment\n");
		strcpy(path, "/tmp/kwconf.XXXXXX");
		write_conf(text);
		free(text);
		kw_server_config_defaults(&cfg);
		assert_int_equal(kw_server_config_load(&cfg, path), KW_ERR_CONFIG);
		assert_non_null(strstr(kw_last_error(), "larger than 1048576 bytes"));
		assert_int_equal(cfg.max_inflight, 32); /* nothing taken from it */
		unlink(path);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_mistakes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
