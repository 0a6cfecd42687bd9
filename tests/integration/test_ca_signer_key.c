/*
 * keyward-ca serve's OCSP signer key (serve_signer_key_prepare) made on a
 * CA's token in this process, then the CA opened here as serve opens it,
 * against a real keywardd (development mode) through keyward-pkcs11.so.
 *
 * The preparation freed libp11's keys after libp11's context, which wrote
 * into freed memory: the next load of the module in the same process
 * aborted in malloc ("unaligned tcache chunk"). serve makes the key in a
 * child process (serve_signer_key_prepare_apart), which hid it; this test
 * runs it in one process, itself in a child, so a corrupted heap fails
 * this test with the child's status.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca/serve.h"
#include "harness.h"

/* under the sanitizers (CMakeLists.txt): keyward-ca's and pkcs11-tool's environment */
#ifndef KWT_CA_ENV
#define KWT_CA_ENV ""
#endif
#ifndef KWT_P11_ENV
#define KWT_P11_ENV ""
#endif

static struct kwt_server server;

static int setup(void **state)
{
	char pin[64];

	(void)state;
	kwt_start_dev(&server);
	kwt_p11_env(&server, pin, sizeof pin);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

/* In the child: the key made, then the CA opened and the key found again, three times; the exit code. */
static int prepare_then_open(const char *dir)
{
	struct serve_conf sc;
	struct ca *ca = NULL;

	if (serve_conf_load(&sc, dir) || serve_signer_key_prepare(dir, &sc)) {
		fprintf(stderr, "making the signer's key: %s\n", ca_last_error());
		return 1;
	}
	for (int i = 0; i < 3; i++) {
		if (serve_open_ca(dir, &sc, &ca)) {
			fprintf(stderr, "opening the CA (%d): %s\n", i, ca_last_error());
			return 2;
		}
		ca_close(ca);
		if (serve_signer_key_prepare(dir, &sc)) {
			fprintf(stderr, "finding the signer's key (%d): %s\n", i, ca_last_error());
			return 3;
		}
	}
	return 0;
}

static void test_signer_key_then_open(void **state)
{
	char dir[400], *out = NULL;
	pid_t pid;
	int st = 0;

	(void)state;
	snprintf(dir, sizeof dir, "%s/ca", server.dir);
	if (kwt_run(server.dir, &out,
		    KWT_CA_ENV
		    "'%s' --dir '%s' setup --name 'Prep CA' --key-type EC-P256 --server-name ca.test --module '%s' "
		    "--pin-file '%s/pin'",
		    KEYWARD_CA_PATH, dir, KEYWARD_PKCS11_PATH, server.dir) != 0)
		fail_msg("keyward-ca setup: %s", out ? out : "");
	free(out);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(prepare_then_open(dir));
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(st))
		fail_msg("making the OCSP signer's key, then opening the CA in one process: killed by signal %d",
			 WTERMSIG(st));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* and the key is on the token under its label */
	out = NULL;
	if (kwt_run(server.dir, &out, KWT_P11_ENV "pkcs11-tool --module '%s' --login --pin \"$(cat '%s/pin')\" -O",
		    KEYWARD_PKCS11_PATH, server.dir) ||
	    !strstr(out, "ocsp-Prep-CA"))
		fail_msg("no key ocsp-Prep-CA on the token:\n%s", out ? out : "");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signer_key_then_open),
	};

	return cmocka_run_group_tests_name("integration_ca_signer_key", tests, setup, teardown);
}
