/*
 * Failover: priority groups in ascending order, shuffled only within a
 * group; the all-unreachable message naming every host and why; a server
 * that accepts TCP but never speaks TLS times out within command_timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "client/client.h"
#include "helpers.h"

static char *dir;
static struct kwt_pki pki;

static int setup(void **state)
{
	(void)state;
	dir = kwt_tmpdir();
	kwt_make_pki(dir, &pki);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_pki_cleanup(&pki);
	kwt_rmtree(dir);
	free(dir);
	return 0;
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* hsm i has priority prio[i] */
static void make_cfg(struct kw_config *cfg, const int *prio, size_t n)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->hsms = calloc(n, sizeof *cfg->hsms);
	cfg->n_hsms = n;
	for (size_t i = 0; i < n; i++)
		cfg->hsms[i].priority = prio[i];
}

static uint32_t zero_rnd(void *arg)
{
	(void)arg;
	return 0;
}

static uint32_t lcg_rnd(void *arg)
{
	uint32_t *s = arg;
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

static void test_order_groups(void **state)
{
	static const int prio[] = {5, 0, 0, 1, 0, 5};
	struct kw_config cfg;
	size_t order[6];
	uint32_t seed = 12345;
	int first_seen[6] = {0}, last_seen[6] = {0};

	(void)state;
	make_cfg(&cfg, prio, 6);
	kw_failover_order(&cfg, order, zero_rnd, NULL);
	for (int run = 0; run < 3000; run++) {
		kw_failover_order(&cfg, order, lcg_rnd, &seed);
		/* priority never decreases along the order */
		for (size_t i = 1; i < 6; i++)
			assert_true(prio[order[i - 1]] <= prio[order[i]]);
		/* the groups: {1,2,4} then {3} then {0,5} */
		for (size_t i = 0; i < 3; i++)
			assert_int_equal(prio[order[i]], 0);
		assert_int_equal(order[3], 3);
		/* every index appears once */
		int seen[6] = {0};
		for (size_t i = 0; i < 6; i++)
			seen[order[i]]++;
		for (size_t i = 0; i < 6; i++)
			assert_int_equal(seen[i], 1);
		first_seen[order[0]]++;
		last_seen[order[5]]++;
	}
	/* shuffled among equals: each member of a group leads it sometimes */
	assert_true(first_seen[1] > 500 && first_seen[2] > 500 && first_seen[4] > 500);
	assert_true(last_seen[0] > 1000 && last_seen[5] > 1000);
	free(cfg.hsms);
}

static void test_order_single_and_distinct(void **state)
{
	static const int prio[] = {3, 1, 2};
	struct kw_config cfg;
	size_t order[3];
	uint32_t seed = 1;

	(void)state;
	make_cfg(&cfg, prio, 3);
	for (int run = 0; run < 100; run++) {
		kw_failover_order(&cfg, order, lcg_rnd, &seed);
		assert_int_equal(order[0], 1);
		assert_int_equal(order[1], 2);
		assert_int_equal(order[2], 0);
	}
	free(cfg.hsms);
}

static char *write_conf(const char *name, const char *hsms, const char *extra)
{
	char *text, *path;

	assert_true(asprintf(&text,
			     "[client]\npartition = dev\nca = ca.crt\ncert = client.crt\nkey = client.key\n%s\n%s",
			     extra, hsms) > 0);
	path = kwt_write(dir, name, text);
	free(text);
	return path;
}

static void test_all_unreachable(void **state)
{
	int p1 = kwt_free_port(), p2 = kwt_free_port(), p3 = kwt_free_port();
	char hsms[512], *path, want[256];
	unsigned char buf[4];
	kw_client *c;

	(void)state;
	snprintf(hsms, sizeof hsms,
		 "[hsm a]\nhost = 127.0.0.1\nport = %d\npriority = 2\n"
		 "[hsm b]\nhost = 127.0.0.1\nport = %d\n"
		 "[hsm c]\nhost = 127.0.0.1\nport = %d\npriority = 1\n",
		 p1, p2, p3);
	path = write_conf("unreach.conf", hsms, "connect_timeout = 2");
	assert_int_equal(kw_client_new(path, &c), KW_OK);
	assert_int_equal(kw_generate_random(c, buf, sizeof buf), KW_ERR_UNREACHABLE);
	print_message("%s\n", kw_last_error());
	assert_true(strncmp(kw_last_error(), "no HSM reachable (tried 3, ", 26) == 0);
	/* tried in priority order: b (0), c (1), a (2) */
	snprintf(want, sizeof want, "127.0.0.1:%d (connection refused), 127.0.0.1:%d (connection refused), "
		 "127.0.0.1:%d (connection refused)", p2, p3, p1);
	assert_contains(kw_last_error(), want);

	/* a probe of one HSM says what failed there */
	assert_int_not_equal(kw_client_probe(c, 0, NULL, NULL, NULL), KW_OK);
	snprintf(want, sizeof want, "127.0.0.1:%d", p1);
	assert_contains(kw_last_error(), want);
	assert_contains(kw_last_error(), "connection refused");
	assert_int_equal(kw_client_probe(c, 3, NULL, NULL, NULL), KW_ERR_ARGUMENTS);
	kw_client_free(c);
	free(path);
}

static void test_unresolvable(void **state)
{
	char *path = write_conf("unres.conf", "[hsm x]\nhost = no-such-host.invalid\n", "");
	unsigned char buf[4];
	kw_client *c;

	(void)state;
	assert_int_equal(kw_client_new(path, &c), KW_OK);
	assert_int_equal(kw_generate_random(c, buf, sizeof buf), KW_ERR_UNREACHABLE);
	assert_contains(kw_last_error(), "no-such-host.invalid:7117 (cannot resolve host");
	kw_client_free(c);
	free(path);
}

static void test_silent_server_times_out(void **state)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	char hsms[256], *path;
	unsigned char buf[4];
	kw_client *c;
	double t0;

	(void)state;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(lfd, 8), 0); /* never accepts: TCP connects, TLS never answers */
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
	snprintf(hsms, sizeof hsms, "[hsm silent]\nhost = 127.0.0.1\nport = %d\n", ntohs(a.sin_port));
	path = write_conf("silent.conf", hsms, "connect_timeout = 5\ncommand_timeout = 0.5");
	assert_int_equal(kw_client_new(path, &c), KW_OK);

	t0 = now();
	assert_int_equal(kw_generate_random(c, buf, sizeof buf), KW_ERR_UNREACHABLE);
	assert_true(now() - t0 < 2.0);
	assert_contains(kw_last_error(), "TLS handshake timed out after 0.5 s");

	t0 = now();
	assert_int_equal(kw_client_probe(c, 0, NULL, NULL, NULL), KW_ERR_TIMEOUT);
	assert_true(now() - t0 < 2.0);
	kw_client_free(c);
	close(lfd);
	free(path);
}

static void test_missing_credential(void **state)
{
	char *text, *path;
	unsigned char buf[4];
	kw_client *c;

	(void)state;
	assert_true(asprintf(&text, "[client]\npartition = dev\nca = ca.crt\ncert = nope/dev.crt\nkey = nope/dev.key\n"
				    "[hsm]\nhost = 127.0.0.1\nport = %d\n",
			     kwt_free_port()) > 0);
	path = kwt_write(dir, "nocred.conf", text);
	assert_int_equal(kw_client_new(path, &c), KW_OK);
	assert_int_equal(kw_generate_random(c, buf, sizeof buf), KW_ERR_CONFIG);
	assert_contains(kw_last_error(), "nope/dev.crt");
	assert_contains(kw_last_error(), "register this client first");
	kw_client_free(c);
	free(text);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_groups),
		cmocka_unit_test(test_order_single_and_distinct),
		cmocka_unit_test(test_all_unreachable),
		cmocka_unit_test(test_unresolvable),
		cmocka_unit_test(test_silent_server_times_out),
		cmocka_unit_test(test_missing_credential),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
