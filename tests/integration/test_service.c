/*
 * What an administrator's service manager and shell ask of the programs:
 * keywardd under systemd (Type=notify) says READY=1, with whether the HSM
 * is locked in STATUS, once it listens, and STOPPING=1 when it stops (the
 * notification socket is this test's, named by NOTIFY_SOCKET as systemd
 * names its own); every program answers --version, and help with its usage.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static void test_ready_and_stopping(void **state)
{
	struct kwt_server s = {0};
	struct kwt_notify n;
	kw_client *c;

	(void)state;
	kwt_notify_open(&n);
	setenv("NOTIFY_SOCKET", n.path, 1);
	c = kwt_start_dev_client(&s);
	unsetenv("NOTIFY_SOCKET");
	kwt_expect_notification(&n, "keywardd", "READY=1", "STATUS=listening on 127.0.0.1:");
	kw_client_free(c);
	kwt_stop(&s);
	kwt_expect_notification(&n, "keywardd", "STOPPING=1", NULL);
	kwt_cleanup(&s);
	kwt_notify_close(&n);
}

/* --version names the program and its version; help (and --help) print the usage, exit 0 */
static void test_version_and_help(void **state)
{
	static const char *const programs[][2] = {{KEYWARDD_BIN, "keywardd"},
						  {KEYWARD_ADMIN_BIN, "keyward-admin"},
						  {KSPUTIL_BIN, "ksputil"},
						  {KEYWARD_CA_BIN, "keyward-ca"}};
	char dir[] = "/tmp/kwversion.XXXXXX", want[64], *out = NULL;

	(void)state;
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
		snprintf(want, sizeof want, "%s " KEYWARD_VERSION "\n", programs[i][1]);
		if (kwt_run(dir, &out, "'%s' --version", programs[i][0]) != 0 || strcmp(out, want) != 0)
			fail_msg("%s --version said \"%s\"; want \"%s\"", programs[i][1], out, want);
		free(out);
		if (kwt_run(dir, &out, "'%s' --help", programs[i][0]) != 0 || !strstr(out, "usage:"))
			fail_msg("%s --help said \"%s\"", programs[i][1], out);
		free(out);
		if (i > 0 && (kwt_run(dir, &out, "'%s' help", programs[i][0]) != 0 || !strstr(out, "usage:")))
			fail_msg("%s help said \"%s\"", programs[i][1], out);
		if (i > 0)
			free(out);
		out = NULL;
	}
	kwt_run(dir, NULL, "rm -rf '%s'", dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ready_and_stopping),
		cmocka_unit_test(test_version_and_help),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
