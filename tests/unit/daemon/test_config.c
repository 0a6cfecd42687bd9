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

/* [policy]: defaults 2048 bits and SHA-1 signatures on; only RSA sizes keywardd makes, only yes or no. */
static void test_policy(void **state)
{
	static const char *const bad[] = {"[policy]\nrsa_min_bits = 1024\n", "[policy]\nrsa_min_bits = 2500\n",
					  "[policy]\nsha1_signatures = maybe\n"};
	struct kw_server_config cfg;

	(void)state;
	kw_server_config_defaults(&cfg);
	assert_int_equal(cfg.rsa_min_bits, 2048);
	assert_true(cfg.sha1_signatures);
	assert_int_equal(
		kw_server_config_parse(&cfg, "p.conf", "[policy]\nrsa_min_bits = 3072\nsha1_signatures = no\n"), KW_OK);
	assert_int_equal(cfg.rsa_min_bits, 3072);
	assert_false(cfg.sha1_signatures);
	assert_int_equal(kw_policy_rsa_bits(&cfg, "generate", 2048), KW_ERR_KEY_SIZE);
	assert_non_null(strstr(kw_last_error(), "rsa_min_bits = 3072"));
	assert_int_equal(kw_policy_rsa_bits(&cfg, "generate", 4096), KW_OK);
	assert_int_equal(kw_policy_sign_hash(&cfg, KEYWARD__HASH__SHA1), KW_ERR_MECHANISM);
	assert_non_null(strstr(kw_last_error(), "sha1_signatures = no"));
	assert_int_equal(kw_policy_sign_hash(&cfg, KEYWARD__HASH__SHA256), KW_OK);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		kw_server_config_defaults(&cfg);
		assert_int_equal(kw_server_config_parse(&cfg, "p.conf", bad[i]), KW_ERR_CONFIG);
		assert_non_null(strstr(kw_last_error(), "[policy]"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_mistakes),
		cmocka_unit_test(test_policy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
