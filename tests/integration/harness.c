/* The integration-test harness (see harness.h). */
#include "harness.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define START_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS 20000

static const char *keywardd_path(void)
{
	const char *p = getenv("KEYWARDD");
	return p ? p : KEYWARDD_PATH;
}

static const char *admin_path(void)
{
	const char *p = getenv("KEYWARD_ADMIN");
	return p ? p : KEYWARD_ADMIN_PATH;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

unsigned short kwt_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

char *kwt_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long size;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)size + 1);
	assert_non_null(buf);
	if (fread(buf, 1, (size_t)size, f) != (size_t)size)
		size = 0;
	buf[size] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)size;
	return buf;
}

void kwt_dev_pin(const struct kwt_server *s, char *out, size_t size)
{
	char path[400], *text;

	snprintf(path, sizeof path, "%s/pin", s->dir);
	text = kwt_read_file(path, NULL);
	if (!text)
		fail_msg("the development HSM wrote no PIN file %s", path);
	text[strcspn(text, "\r\n")] = '\0';
	assert_true(strlen(text) > 0 && strlen(text) < size);
	snprintf(out, size, "%s", text);
	free(text);
}

static void make_dir(struct kwt_server *s)
{
	if (s->dir[0])
		return;
	snprintf(s->dir, sizeof s->dir, "/tmp/kwtest.XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->admin_socket, sizeof s->admin_socket, "%s/admin.sock", s->dir);
	snprintf(s->log, sizeof s->log, "%s/keywardd.log", s->dir);
}

static void spawn(struct kwt_server *s, char *const argv[])
{
	pid_t parent = getpid();
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int log = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		/* never outlive the test */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (log >= 0) {
			dup2(log, STDERR_FILENO);
			dup2(log, STDOUT_FILENO);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	s->pid = pid;
}

static void assert_alive(struct kwt_server *s)
{
	int status;

	if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
		char *log = kwt_read_file(s->log, NULL);
		s->pid = 0;
		fail_msg("keywardd exited early (status %d); its log:\n%s", status, log ? log : "(none)");
	}
}

static bool can_connect_tcp(unsigned short port)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;

	close(fd);
	return ok;
}

static bool can_connect_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	bool ok;

	if (strlen(path) >= sizeof sa.sun_path)
		return false;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

/*
 * With KW_TEST_STORE=postgres (the suite's pass on PostgreSQL, under
 * tests/pg/with-pg), a server's store is a database of its own on the
 * throwaway cluster, named after its directory so that a restart finds it
 * again: its URL in url. Returns false for the default, SQLite in the
 * directory.
 */
static bool pg_store(const struct kwt_server *s, char *url, size_t size)
{
	const char *mode = getenv("KW_TEST_STORE"), *server = getenv("KW_TEST_PG_URL");
	char db[64], cmd[600];

	if (!mode || strcmp(mode, "postgres") != 0)
		return false;
	if (!server || !*server)
		fail_msg("KW_TEST_STORE=postgres needs KW_TEST_PG_URL: run the test through tests/pg/with-pg");
	/* /tmp/kwtest.AbC123 -> kwtest_abc123 (a lower-case SQL name) */
	snprintf(db, sizeof db, "kw_%s", strrchr(s->dir, '.') ? strrchr(s->dir, '.') + 1 : "x");
	for (char *p = db; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	snprintf(cmd, sizeof cmd,
		 "psql -qAt '%s/postgres' -c \"SELECT 1 FROM pg_database WHERE datname = '%s'\" | grep -q 1 || "
		 "psql -q '%s/postgres' -c 'CREATE DATABASE %s' >/dev/null",
		 server, db, server, db);
	assert_int_equal(system(cmd), 0);
	snprintf(url, size, "%s/%s", server, db);
	return true;
}

void kwt_start_dev(struct kwt_server *s)
{
	char store[300];
	char *argv[] = {(char *)keywardd_path(), "--dev", s->dir, "--listen", "127.0.0.1:0", NULL, NULL, NULL};
	char *conf = NULL;

	memset(s, 0, sizeof *s);
	make_dir(s);
	s->dev = true;
	argv[2] = s->dir;
	if (pg_store(s, store, sizeof store)) {
		argv[5] = "--store";
		argv[6] = store;
	}
	snprintf(s->conf, sizeof s->conf, "%s/client.conf", s->dir);
	spawn(s, argv);
	for (int waited = 0; waited < START_TIMEOUT_MS; waited += 20) {
		assert_alive(s);
		if (access(s->conf, F_OK) == 0)
			break;
		sleep_ms(20);
	}
	conf = kwt_read_file(s->conf, NULL);
	if (!conf)
		fail_msg("keywardd --dev wrote no %s within %d s", s->conf, START_TIMEOUT_MS / 1000);
	assert_non_null(strstr(conf, "port = "));
	s->port = (unsigned short)atoi(strstr(conf, "port = ") + 7);
	free(conf);
	assert_true(s->port > 0);
}

void kwt_start_dev_node(struct kwt_server *s, const struct kwt_server *first, const char *store)
{
	char listen[64], path[400];
	char *argv[] = {(char *)keywardd_path(), "--dev", s->dir, "--store", (char *)store, "--listen", listen, NULL};
	FILE *f;

	memset(s, 0, sizeof *s);
	s->dev = true;
	s->port = kwt_free_port();
	snprintf(listen, sizeof listen, "127.0.0.1:%u", s->port);
	if (first) {
		snprintf(s->dir, sizeof s->dir, "%s", first->dir);
		snprintf(s->admin_socket, sizeof s->admin_socket, "%s/admin-%u.sock", s->dir, s->port);
		snprintf(s->log, sizeof s->log, "%s/keywardd-%u.log", s->dir, s->port);
	} else {
		make_dir(s);
	}
	argv[2] = s->dir;
	snprintf(path, sizeof path, "%s/client.conf", s->dir);
	spawn(s, argv);
	kwt_wait_ready(s);
	/* client.conf is written after the listener is bound: wait for it (the first node) */
	for (int waited = 0; waited < START_TIMEOUT_MS && access(path, F_OK) != 0; waited += 20)
		sleep_ms(20);
	snprintf(s->conf, sizeof s->conf, "%s/node-%u.conf", s->dir, s->port);
	f = fopen(s->conf, "w");
	assert_non_null(f);
	fprintf(f,
		"[client]\n"
		"partition = dev\n"
		"ca = tls/ca.crt\n"
		"cert = client/dev.crt\n"
		"key = client/dev.key\n"
		"pin_file = pin\n"
		"command_timeout = 60\n"
		"\n"
		"[hsm node]\n"
		"host = 127.0.0.1\n"
		"port = %u\n",
		s->port);
	fclose(f);
}

void kwt_start_pg_pair(struct kwt_server *n1, struct kwt_server *n2)
{
	const char *db = getenv("KW_TEST_PG_DB");

	if (!db || !*db)
		fail_msg("KW_TEST_PG_DB is not set: run this test through tests/pg/with-pg (ctest does)");
	kwt_start_dev_node(n1, NULL, db);
	kwt_start_dev_node(n2, n1, db);
}

void kwt_start_config(struct kwt_server *s, const char *extra)
{
	char *argv[] = {(char *)keywardd_path(), "--config", s->server_conf, NULL};
	char store[300];
	FILE *f;

	if (!s->dir[0]) {
		memset(s, 0, sizeof *s);
		make_dir(s);
		s->port = kwt_free_port();
	}
	snprintf(s->server_conf, sizeof s->server_conf, "%s/keywardd.conf", s->dir);
	argv[2] = s->server_conf;
	if (!pg_store(s, store, sizeof store))
		snprintf(store, sizeof store, "sqlite:%s/keystore.db", s->dir);
	f = fopen(s->server_conf, "w");
	assert_non_null(f);
	fprintf(f,
		"[server]\n"
		"listen = 127.0.0.1:%u\n"
		"admin_socket = %s\n"
		"store = %s\n"
		"tls_dir = %s/tls\n"
		"%s\n",
		s->port, s->admin_socket, store, s->dir, extra ? extra : "");
	fclose(f);
	spawn(s, argv);
	kwt_wait_ready(s);
}

void kwt_wait_ready(struct kwt_server *s)
{
	for (int waited = 0; waited < START_TIMEOUT_MS; waited += 20) {
		assert_alive(s);
		if (can_connect_tcp(s->port) && can_connect_unix(s->admin_socket))
			return;
		sleep_ms(20);
	}
	fail_msg("keywardd did not listen on 127.0.0.1:%u within %d s", s->port, START_TIMEOUT_MS / 1000);
}

static int wait_exit(struct kwt_server *s, int timeout_ms)
{
	int status = 0;

	for (int waited = 0; waited < timeout_ms; waited += 10) {
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			return status;
		}
		sleep_ms(10);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &status, 0);
	s->pid = 0;
	fail_msg("keywardd did not stop within %d s of SIGTERM", timeout_ms / 1000);
	return status;
}

void kwt_stop(struct kwt_server *s)
{
	int status;

	if (!s->pid)
		return;
	kill(s->pid, SIGTERM);
	status = wait_exit(s, STOP_TIMEOUT_MS);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *log = kwt_read_file(s->log, NULL);
		fail_msg("keywardd did not exit cleanly (status 0x%x); its log:\n%s", status, log ? log : "");
	}
}

void kwt_pg_cluster(bool start)
{
	const char *script = getenv("KW_TEST_PG_SCRIPT"), *dir = getenv("KW_TEST_PG_DIR");
	const char *url = getenv("KW_TEST_PG_URL");
	char cmd[1200];

	if (!script || !dir || !url || !strrchr(url, ':'))
		fail_msg("KW_TEST_PG_SCRIPT, KW_TEST_PG_DIR or KW_TEST_PG_URL is not set: run this test through "
			 "tests/pg/with-pg (ctest does)");
	if (start)
		snprintf(cmd, sizeof cmd, "'%s' '%s' %s >/dev/null", script, dir, strrchr(url, ':') + 1);
	else
		snprintf(cmd, sizeof cmd, "'%s' --stop '%s'", script, dir);
	assert_int_equal(system(cmd), 0);
}

void kwt_kill9(struct kwt_server *s)
{
	if (!s->pid)
		return;
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

void kwt_cleanup(struct kwt_server *s)
{
	char cmd[400];

	kwt_kill9(s);
	if (s->dir[0] && strncmp(s->dir, "/tmp/kwtest.", 12) == 0) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "harness: could not remove %s\n", s->dir);
	}
	s->dir[0] = '\0';
}

int kwt_admin(struct kwt_server *s, const char *stdin_text, char **out, const char *args_fmt, ...)
{
	char args[1024], cmd[4096], in_path[320], out_path[320];
	va_list ap;
	int status;
	FILE *f;

	va_start(ap, args_fmt);
	vsnprintf(args, sizeof args, args_fmt, ap);
	va_end(ap);
	snprintf(in_path, sizeof in_path, "%s/admin.in", s->dir);
	snprintf(out_path, sizeof out_path, "%s/admin.out", s->dir);
	f = fopen(in_path, "w");
	assert_non_null(f);
	if (stdin_text)
		fputs(stdin_text, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "KEYWARD_ADMIN_SOCKET='%s' '%s' %s <'%s' >'%s' 2>&1", s->admin_socket, admin_path(),
		 args, in_path, out_path);
	status = system(cmd);
	if (out)
		*out = kwt_read_file(out_path, NULL);
	unlink(in_path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void kwt_write_client_conf(struct kwt_server *s, const char *name, const char *partition, char *path_out, size_t size)
{
	FILE *f;

	snprintf(path_out, size, "%s/%s.conf", s->dir, name);
	f = fopen(path_out, "w");
	assert_non_null(f);
	fprintf(f,
		"[client]\n"
		"partition = %s\n"
		"ca = tls/ca.crt\n"
		"cert = %s.crt\n"
		"key = %s.key\n"
		"command_timeout = 60\n"
		"\n"
		"[hsm test]\n"
		"host = 127.0.0.1\n"
		"port = %u\n",
		partition, name, name, s->port);
	fclose(f);
}

/* keyward-admin partition VERB PARTITION, then a client `name` enrolled with the password it prints. */
static kw_client *enroll_client(struct kwt_server *s, const char *verb, const char *partition, const char *name)
{
	char *out = NULL, *pw, conf[400], password[64] = "";
	kw_client *c = NULL;

	if (kwt_admin(s, NULL, &out, "partition %s %s", verb, partition) != 0)
		fail_msg("partition %s %s: %s", verb, partition, out ? out : "");
	pw = strstr(out, "setup password: ");
	assert_non_null(pw);
	sscanf(pw + strlen("setup password: "), "%63s", password);
	free(out);
	kwt_write_client_conf(s, name, partition, conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &c));
	kwt_ok(kw_enroll(c, password, NULL));
	return c;
}

kw_client *kwt_new_partition_client(struct kwt_server *s, const char *partition)
{
	return enroll_client(s, "create", partition, partition);
}

kw_client *kwt_another_client(struct kwt_server *s, const char *partition, const char *name)
{
	return enroll_client(s, "password", partition, name);
}

kw_client *kwt_start_dev_client(struct kwt_server *s)
{
	kw_client *c = NULL;

	kwt_start_dev(s);
	kwt_ok(kw_client_new(s->conf, &c));
	return c;
}

int kwt_dev_setup(void **state)
{
	struct kwt_dev *d = calloc(1, sizeof *d);

	assert_non_null(d);
	d->client = kwt_start_dev_client(&d->server);
	*state = d;
	return 0;
}

int kwt_dev_teardown(void **state)
{
	struct kwt_dev *d = *state;

	kwt_stop_client(&d->server, d->client);
	free(d);
	return 0;
}

void kwt_p11_env(const struct kwt_server *s, char *pin, size_t size)
{
	char path[400];

	snprintf(path, sizeof path, "%s/machine-id", s->dir);
	kwt_write_file(path, "00112233445566778899aabbccddeeff\n");
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", path, 1), 0);
	assert_int_equal(setenv("KEYWARD_CONF", s->conf, 1), 0);
	kwt_dev_pin(s, pin, size);
}

void kwt_softhsm_conf(const char *dir)
{
	char path[400], conf[600];

	if (access(KWT_SOFTHSM_MODULE, R_OK) != 0)
		fail_msg("no %s: install softhsm2 (scripts/packages)", KWT_SOFTHSM_MODULE);
	snprintf(path, sizeof path, "%s/tokens", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(conf, sizeof conf, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", path);
	snprintf(path, sizeof path, "%s/softhsm2.conf", dir);
	kwt_write_file(path, conf);
	assert_int_equal(setenv("SOFTHSM2_CONF", path, 1), 0);
}

void kwt_stop_client(struct kwt_server *s, kw_client *c)
{
	kw_client_free(c);
	kwt_stop(s);
	kwt_cleanup(s);
}

void kwt_gen_ec(kw_client *c, const char *name, uint64_t *id, unsigned char *spki, size_t *spki_len)
{
	kw_object *priv = NULL, *pub = NULL;
	const unsigned char *der;
	size_t len = 0;

	kwt_ok(kw_generate_key(c, KWT_OWNER, name, KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	*id = kw_object_id(priv);
	der = kw_object_public_key(pub, &len);
	assert_non_null(der);
	assert_true(len <= 512);
	if (spki) {
		memcpy(spki, der, len);
		*spki_len = len;
	}
	kw_object_free(priv);
	kw_object_free(pub);
}

int kwt_ecdsa_verifies(const unsigned char *spki, size_t spki_len, const unsigned char *digest, size_t digest_len,
		       const unsigned char *sig, size_t sig_len)
{
	const unsigned char *p = spki;
	EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)spki_len);
	EVP_PKEY_CTX *ctx;
	ECDSA_SIG *es = ECDSA_SIG_new();
	unsigned char *der = NULL;
	int der_len, ok;

	if (!pkey || !es) {
		EVP_PKEY_free(pkey);
		ECDSA_SIG_free(es);
		return 0;
	}
	ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)(sig_len / 2), NULL),
		       BN_bin2bn(sig + sig_len / 2, (int)(sig_len / 2), NULL));
	der_len = i2d_ECDSA_SIG(es, &der);
	ctx = EVP_PKEY_CTX_new(pkey, NULL);
	ok = der_len > 0 && EVP_PKEY_verify_init(ctx) == 1 &&
	     EVP_PKEY_verify(ctx, der, (size_t)der_len, digest, digest_len) == 1;
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return ok;
}

void kwt_write_file(const char *path, const char *text)
{
	/* mode 0600: the passphrase, PIN and password files the tools read must be the owner's alone */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	assert_non_null(f);
	assert_int_equal(fchmod(fd, 0600), 0);
	fputs(text, f);
	fclose(f);
}

int kwt_run(const char *dir, char **out, const char *fmt, ...)
{
	char cmd[4096], shell[600];
	va_list ap;
	int st, n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof cmd);
	/* the command goes through the environment: no second level of quoting */
	assert_int_equal(setenv("KWT_CMD", cmd, 1), 0);
	snprintf(shell, sizeof shell,
		 "timeout -k 10 " KWT_RUN_TIMEOUT " sh -c \"$KWT_CMD\" </dev/null >'%s/out.txt' 2>&1", dir);
	st = system(shell);
	assert_true(st != -1 && WIFEXITED(st));
	if (out) {
		snprintf(shell, sizeof shell, "%s/out.txt", dir);
		assert_non_null(*out = kwt_read_file(shell, NULL));
	}
	return WEXITSTATUS(st);
}

char *kwt_run_ok(const char *dir, const char *what, const char *fmt, ...)
{
	char cmd[4096], *out = NULL;
	va_list ap;
	int rc, n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof cmd);
	rc = kwt_run(dir, &out, "%s", cmd);
	if (rc != 0) {
		/* fail_msg does not return: the output goes into it, not to a leak */
		static char shown[8192];

		snprintf(shown, sizeof shown, "%s", out ? out : "");
		free(out);
		fail_msg("%s: exit %d:\n%s", what, rc, shown);
	}
	return out;
}

kw_client *kwt_start_initialized(struct kwt_server *s, const char *extra)
{
	char pass_file[300], *out = NULL;

	memset(s, 0, sizeof *s);
	kwt_start_config(s, extra);
	snprintf(pass_file, sizeof pass_file, "%s/passphrase", s->dir);
	kwt_write_file(pass_file, KWT_PASSPHRASE "\n");
	if (kwt_admin(s, NULL, &out, "init --passphrase-file %s", pass_file) != 0)
		fail_msg("init: %s", out ? out : "");
	free(out);
	return kwt_new_partition_client(s, "p");
}

void kwt_notify_open(struct kwt_notify *n)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {30, 0};

	snprintf(n->dir, sizeof n->dir, "/tmp/kwnotify.XXXXXX");
	assert_non_null(mkdtemp(n->dir));
	snprintf(n->path, sizeof n->path, "%s/notify", n->dir);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", n->path);
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(n->fd >= 0);
	assert_int_equal(bind(n->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(setsockopt(n->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
}

void kwt_expect_notification(struct kwt_notify *n, const char *who, const char *want, const char *also)
{
	char msg[512];
	ssize_t len = recv(n->fd, msg, sizeof msg - 1, 0);

	if (len <= 0)
		fail_msg("%s sent no notification (want \"%s\")", who, want);
	msg[len] = '\0';
	if (!strstr(msg, want) || (also && !strstr(msg, also)))
		fail_msg("%s notified \"%s\"; want \"%s\"%s%s", who, msg, want, also ? " and " : "", also ? also : "");
}

void kwt_notify_close(struct kwt_notify *n)
{
	close(n->fd);
	unlink(n->path);
	rmdir(n->dir);
}
