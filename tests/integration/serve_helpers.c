/*
 * keyward-ca serve as a process (serve_helpers.h).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca_helpers.h"
#include "harness.h"
#include "serve_helpers.h"

/* "HOST:PORT" or "[V6]:PORT" into a; false if it is neither. */
static bool parse_addr(const char *text, struct sockaddr_storage *a, socklen_t *len)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	struct sockaddr_in *v4 = (struct sockaddr_in *)a;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)a;
	int port;

	memset(a, 0, sizeof *a);
	if (!colon || (size_t)(colon - text) >= sizeof host || (port = atoi(colon + 1)) <= 0 || port > 65535)
		return false;
	snprintf(host, sizeof host, "%.*s", (int)(colon - text), text);
	if (host[0] == '[') {
		host[strlen(host) - 1] = '\0';
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((unsigned short)port);
		*len = sizeof *v6;
		return inet_pton(AF_INET6, host + 1, &v6->sin6_addr) == 1;
	}
	v4->sin_family = AF_INET;
	v4->sin_port = htons((unsigned short)port);
	*len = sizeof *v4;
	return inet_pton(AF_INET, host, &v4->sin_addr) == 1;
}

char *http_raw_at(const char *addr, const char *from, const void *req, size_t len, size_t *resp_len)
{
	struct sockaddr_storage a;
	struct sockaddr_in src = {.sin_family = AF_INET};
	socklen_t alen = 0;
	size_t n = 0, cap = 1 << 16;
	char *buf = malloc(cap + 1);
	int fd;
	struct pollfd p = {.events = POLLIN};

	assert_non_null(buf);
	if (!parse_addr(addr, &a, &alen))
		fail_msg("not HOST:PORT or [V6]:PORT: %s", addr);
	fd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (from) {
		assert_int_equal(inet_pton(AF_INET, from, &src.sin_addr), 1);
		assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
	}
	if (connect(fd, (struct sockaddr *)&a, alen) != 0 || send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
		close(fd);
		free(buf);
		return NULL;
	}
	p.fd = fd;
	while (n < cap && poll(&p, 1, 10000) == 1) {
		ssize_t r = recv(fd, buf + n, cap - n, 0);

		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (resp_len)
		*resp_len = n;
	return buf;
}

char *http_raw(unsigned short port, const void *req, size_t len, size_t *resp_len)
{
	char addr[32];

	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	return http_raw_at(addr, NULL, req, len, resp_len);
}

int http_status_at(const char *addr, const char *method, const char *path)
{
	char req[512], *resp;
	int status = -1;

	snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", method, path);
	resp = http_raw_at(addr, NULL, req, strlen(req), NULL);
	if (resp && sscanf(resp, "HTTP/1.1 %d", &status) != 1)
		status = -1;
	free(resp);
	return status;
}

int http_status(unsigned short port, const char *method, const char *path)
{
	char addr[32];

	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	return http_status_at(addr, method, path);
}

static bool https_ready(const char *listen)
{
	const char *out = NULL;

	return sh(&out, "curl -gsk -o /dev/null -w '%%{http_code}' 'https://%s/health'", listen) == 0 && out &&
	       !strncmp(out, "200", 3);
}

static pid_t start(const char *dir, const char *listen, const char *log, bool https)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (KWT_CA_ENV[0])
			execl("/bin/sh", "sh", "-c", KWT_CA_ENV "exec \"$0\" --dir \"$1\" serve --listen \"$2\"",
			      ca_path(), dir, listen, (char *)NULL);
		else
			execl(ca_path(), "keyward-ca", "--dir", dir, "serve", "--listen", listen, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		int st;

		if (https ? https_ready(listen) : http_status_at(listen, "GET", "/health") == 200)
			return pid;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			char *text = kwt_read_file(log, NULL);

			fail_msg("keyward-ca serve exited (status %d):\n%.900s", st, text ? text : "");
		}
		usleep(100 * 1000);
	}
	kill(pid, SIGKILL);
	fail_msg("keyward-ca serve did not answer /health on %s within 30 s", listen);
	return -1;
}

pid_t serve_start_at(const char *dir, const char *listen, const char *log)
{
	return start(dir, listen, log, false);
}

pid_t serve_start(const char *dir, unsigned short on, const char *log)
{
	char listen[32];

	snprintf(listen, sizeof listen, "127.0.0.1:%u", on);
	return start(dir, listen, log, false);
}

pid_t serve_start_https(const char *dir, unsigned short on, const char *log)
{
	char listen[32];

	snprintf(listen, sizeof listen, "127.0.0.1:%u", on);
	return start(dir, listen, log, true);
}

void serve_stop(pid_t pid)
{
	int st = 0;

	if (pid <= 0)
		return;
	assert_int_equal(kill(pid, SIGTERM), 0);
	for (int i = 0; i < 200; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				fail_msg("keyward-ca serve did not exit cleanly on SIGTERM (status 0x%x)", st);
			return;
		}
		usleep(50 * 1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	fail_msg("keyward-ca serve did not stop within 10 s of SIGTERM");
}

/*
 * In the suite's pass on PostgreSQL (KW_TEST_STORE=postgres, under
 * tests/pg/with-pg), a CA database of its own on the throwaway cluster,
 * named after the server's directory as harness.c names the store's (one
 * database per CA: a keystore's tables would clash): " --database URL"
 * into opt. Else an empty opt: keyward-ca.db.
 */
static void pg_ca_database(const struct kwt_server *s, char *opt, size_t size)
{
	const char *mode = getenv("KW_TEST_STORE"), *pg = getenv("KW_TEST_PG_URL");
	char db[64];

	opt[0] = '\0';
	if (!mode || strcmp(mode, "postgres") != 0)
		return;
	if (!pg || !*pg)
		fail_msg("KW_TEST_STORE=postgres needs KW_TEST_PG_URL: run the test through tests/pg/with-pg");
	snprintf(db, sizeof db, "kwca_%s", strrchr(s->dir, '.') ? strrchr(s->dir, '.') + 1 : "x");
	for (char *p = db; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	sh_ok("psql -q '%s/postgres' -c 'DROP DATABASE IF EXISTS %s' -c 'CREATE DATABASE %s'", pg, db, db);
	snprintf(opt, size, " --database '%s/%s'", pg, db);
}

static void test_ca(struct kwt_server *server, const char *sub, const char *name, const char *pkcs11, bool on_pg,
		    char work[300], char ca_dir[400], char pin[400])
{
	char database[400] = "";

	serve_test_dirs(server, sub, work, ca_dir, pin);
	if (on_pg)
		pg_ca_database(server, database, sizeof database);
	ca_ok(ca_dir, "setup --name '%s' --key-type EC-P256 --server-name ca.test --module '%s' --pin-file '%s'%s",
	      name, pkcs11, pin, database);
	ca_ok(ca_dir, "ca.cert ca.pem");
	if (database[0]) {
		/* the records went to PostgreSQL, not to a file beside ca.conf */
		char path[600];
		struct stat st;

		snprintf(path, sizeof path, "%s/keyward-ca.db", ca_dir);
		if (stat(path, &st) == 0)
			fail_msg("%s exists: the CA's database is not on PostgreSQL", path);
	}
}

void serve_test_ca(struct kwt_server *server, const char *sub, const char *name, const char *pkcs11, char work[300],
		   char ca_dir[400], char pin[400])
{
	test_ca(server, sub, name, pkcs11, false, work, ca_dir, pin);
}

void serve_test_ca_any_db(struct kwt_server *server, const char *sub, const char *name, const char *pkcs11,
			  char work[300], char ca_dir[400], char pin[400])
{
	test_ca(server, sub, name, pkcs11, true, work, ca_dir, pin);
}

void serve_test_dirs(struct kwt_server *server, const char *sub, char work[300], char ca_dir[400], char pin[400])
{
	char path[600];

	kwt_start_dev(server);
	snprintf(path, sizeof path, "%s/machine-id", server->dir);
	kwt_write_file(path, "0123456789abcdef0123456789abcdef\n");
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", path, 1), 0);
	assert_int_equal(setenv("KEYWARD_CONF", server->conf, 1), 0);
	snprintf(pin, 400, "%s/pin", server->dir);
	snprintf(work, 300, "%s/%s", server->dir, sub);
	assert_int_equal(mkdir(work, 0700), 0);
	snprintf(ca_dir, 400, "%s/ca", work);
	assert_int_equal(chdir(work), 0);
}

pid_t serve_test_start(const char *ca_dir, const char *conf, unsigned short *port)
{
	char path[600];

	snprintf(path, sizeof path, "%s/serve.conf", ca_dir);
	kwt_write_file(path, conf);
	*port = kwt_free_port();
	return serve_start(ca_dir, *port, "serve.log");
}

void serve_test_ca_end(struct kwt_server *server)
{
	forget_all();
	assert_int_equal(chdir("/"), 0);
	kwt_stop(server);
	kwt_cleanup(server);
}

void serve_test_end(struct kwt_server *server, pid_t serve_pid, pid_t serve2_pid)
{
	serve_stop(serve2_pid);
	serve_stop(serve_pid);
	serve_test_ca_end(server);
}

void serve_tls_files(void)
{
	sh_ok("openssl req -x509 -newkey %s -nodes -keyout tls.key -out tls.crt -days 2 -subj /CN=127.0.0.1 "
	      "-addext subjectAltName=IP:127.0.0.1 && chmod 600 tls.key",
	      EC256);
}

const char *serve_ocsp_until(unsigned short on, const char *args, const char *needle, int seconds)
{
	const char *out = NULL;

	for (int i = 0; i < seconds * 10; i++) {
		sh(&out, "openssl ocsp -url http://127.0.0.1:%u/ocsp -CAfile ca.pem -issuer ca.pem %s", on, args);
		if (strstr(out, needle))
			break;
		usleep(100 * 1000);
	}
	return out;
}
