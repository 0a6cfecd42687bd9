/*
 * keywardd under systemd (Type=notify): it says READY=1, with whether the
 * HSM is locked in STATUS, once it listens, and STOPPING=1 when it stops.
 * The notification socket is a datagram socket of this test's, named by
 * NOTIFY_SOCKET as systemd names its own.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static void expect_notification(int fd, const char *want, const char *also)
{
	char msg[512];
	ssize_t n = recv(fd, msg, sizeof msg - 1, 0);

	if (n <= 0)
		fail_msg("keywardd sent no notification (want \"%s\")", want);
	msg[n] = '\0';
	if (!strstr(msg, want) || (also && !strstr(msg, also)))
		fail_msg("keywardd notified \"%s\"; want \"%s\"%s%s", msg, want, also ? " and " : "", also ? also : "");
}

static void test_ready_and_stopping(void **state)
{
	struct kwt_server s = {0};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {30, 0};
	char dir[] = "/tmp/kwnotify.XXXXXX";
	int fd;
	kw_client *c;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s/notify", dir);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	c = kwt_start_dev_client(&s);
	unsetenv("NOTIFY_SOCKET");
	expect_notification(fd, "READY=1", "STATUS=listening on 127.0.0.1:");
	kw_client_free(c);
	kwt_stop(&s);
	expect_notification(fd, "STOPPING=1", NULL);
	kwt_cleanup(&s);
	close(fd);
	unlink(sa.sun_path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ready_and_stopping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
