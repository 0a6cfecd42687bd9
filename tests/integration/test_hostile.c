/*
 * Strangers on the network: peers that never authenticate. They open TLS
 * connections and drop them abruptly (mid-handshake, mid-frame, with
 * answers still unsent), hold connection slots without a certificate, keep
 * sending Hello, or send nothing at all. keywardd must stay up, account
 * every connection it closes exactly once, keep serving authenticated
 * clients and its admin socket, and shed the strangers by its deadlines.
 *
 * The storm is bounded in connections and seconds; its random choices come
 * from a seed printed on failure (KWT_SEED=N repeats a run).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/frame.h"
#include "harness.h"

#define STORM_THREADS 4
#define STORM_CONNECTIONS 500 /* per thread */
#define STORM_SECONDS 6
#define WAIT_MS 15000

static unsigned seed;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* A TCP connection to s from the loopback address `from` (127.0.0.x), or -1. */
static int tcp_open(const struct kwt_server *s, const char *from)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET, .sin_port = htons(s->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in src = {.sin_family = AF_INET};
	struct timeval tv = {5, 0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	inet_pton(AF_INET, from, &src.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Closes with a TCP reset instead of a FIN. */
static void tcp_reset(int fd)
{
	struct linger lg = {1, 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
}

static SSL_CTX *stranger_ctx(const struct kwt_server *s)
{
	char ca[400];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	assert_non_null(ctx);
	snprintf(ca, sizeof ca, "%s/tls/ca.crt", s->dir);
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION), 1);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

/* A packed Hello frame for partition "dev" (no certificate: it is refused). */
static size_t hello_frame(unsigned char *out, size_t size, uint64_t id)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__Hello h = KEYWARD__HELLO__INIT;
	size_t len;

	h.min_version = 1;
	h.max_version = 1;
	h.partition = "dev";
	h.client = "test_hostile";
	req.id = id;
	req.body_case = KEYWARD__REQUEST__BODY_HELLO;
	req.hello = &h;
	len = keyward__request__get_packed_size(&req);
	assert_true(len + KW_FRAME_HEADER <= size);
	out[0] = (unsigned char)(len >> 24);
	out[1] = (unsigned char)(len >> 16);
	out[2] = (unsigned char)(len >> 8);
	out[3] = (unsigned char)len;
	keyward__request__pack(&req, out + KW_FRAME_HEADER);
	return len + KW_FRAME_HEADER;
}

/* ---- the storm: connections dropped at every stage ---- */

struct storm {
	const struct kwt_server *s;
	SSL_CTX *ctx;
	unsigned seed;
	double until;
	unsigned done;
};

static void drop(int fd, unsigned *r)
{
	if (rand_r(r) % 2)
		tcp_reset(fd);
	else
		close(fd);
}

static void one_stranger(struct storm *st, unsigned *r)
{
	unsigned char buf[512];
	int fd = tcp_open(st->s, "127.0.0.1");
	SSL *ssl;
	int mode = rand_r(r) % 6;

	if (fd < 0)
		return;
	if (mode == 0) { /* connect, then go */
		drop(fd, r);
		return;
	}
	if (mode == 1) { /* bytes that are not TLS */
		size_t n = 1 + rand_r(r) % sizeof buf;
		for (size_t i = 0; i < n; i++)
			buf[i] = (unsigned char)rand_r(r);
		(void)!send(fd, buf, n, MSG_NOSIGNAL);
		drop(fd, r);
		return;
	}
	ssl = SSL_new(st->ctx);
	assert_non_null(ssl);
	SSL_set_fd(ssl, fd);
	if (mode == 2) { /* a ClientHello, maybe read the server's flight, then go */
		struct pollfd p = {.fd = fd, .events = POLLIN};
		SSL_set_connect_state(ssl);
		(void)SSL_do_handshake(ssl); /* blocks until the server's flight or an error */
		if (rand_r(r) % 2)
			poll(&p, 1, 1);
		ERR_clear_error();
		SSL_free(ssl);
		drop(fd, r);
		return;
	}
	if (SSL_connect(ssl) != 1) {
		ERR_clear_error();
		SSL_free(ssl);
		drop(fd, r);
		return;
	}
	if (mode == 3) { /* half a frame */
		size_t n = hello_frame(buf, sizeof buf, 1);
		(void)!SSL_write(ssl, buf, (int)(1 + rand_r(r) % (n - 1)));
	} else {
		/*
		 * whole requests, more than the server runs in one turn (so the
		 * connection goes on its loop's ready list), whose answers it writes
		 * to a socket that is gone
		 */
		unsigned k = 1 + rand_r(r) % 300;
		unsigned char *many = malloc(k * 64);
		size_t len = 0;

		assert_non_null(many);
		for (unsigned i = 0; i < k; i++)
			len += hello_frame(many + len, 64, i + 1);
		(void)!SSL_write(ssl, many, (int)len);
		free(many);
		/* mode 5: go once the first answers came, while the server is still at the rest */
		if (mode == 5)
			(void)!SSL_read(ssl, buf, 1);
	}
	ERR_clear_error();
	SSL_free(ssl);
	drop(fd, r);
}

static void *storm_thread(void *arg)
{
	struct storm *st = arg;
	unsigned r = st->seed;

	while (st->done < STORM_CONNECTIONS && now_s() < st->until) {
		one_stranger(st, &r);
		st->done++;
	}
	return NULL;
}

/* ---- an authenticated client that signs all along ---- */

struct signer {
	kw_client *c;
	uint64_t id;
	unsigned char spki[512];
	size_t spki_len;
	volatile int stop;
	unsigned ok, failed;
	char first_error[300];
};

static void *signer_thread(void *arg)
{
	struct signer *sg = arg;
	unsigned char digest[32] = {1, 2, 3}, sig[132];
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};

	while (!sg->stop) {
		size_t sig_len = sizeof sig;
		kw_rv rv = kw_sign(sg->c, sg->id, &m, digest, sizeof digest, sig, &sig_len);
		if (rv == KW_OK && kwt_ecdsa_verifies(sg->spki, sg->spki_len, digest, sizeof digest, sig, sig_len)) {
			sg->ok++;
		} else {
			if (!sg->failed)
				snprintf(sg->first_error, sizeof sg->first_error, "%s: %s", kw_rv_name(rv),
					 kw_last_error());
			sg->failed++;
		}
		sleep_ms(2);
	}
	return NULL;
}

/* ---- keyward-admin status, read as numbers ---- */

struct status {
	long clients, unauthenticated, admin;
};

static long field(const char *out, const char *name)
{
	const char *p = strstr(out, name);

	if (!p)
		fail_msg("keyward-admin status has no \"%s\":\n%s", name, out);
	return strtol(p + strlen(name), NULL, 10);
}

static void admin_status(struct kwt_server *s, struct status *st)
{
	char *out = NULL;

	if (kwt_admin(s, NULL, &out, "status") != 0)
		fail_msg("keyward-admin status failed: %s", out ? out : "");
	st->clients = field(out, "connections: ");
	st->unauthenticated = field(out, "unauthenticated: ");
	st->admin = field(out, "admin connections: ");
	free(out);
}

/* Waits until no stranger's connection is left open; returns the last status. */
static void wait_strangers_gone(struct kwt_server *s, struct status *st)
{
	double until = now_s() + WAIT_MS / 1000.0;

	do {
		admin_status(s, st);
		if (st->unauthenticated == 0)
			return;
		sleep_ms(100);
	} while (now_s() < until);
}

static void assert_alive(struct kwt_server *s)
{
	if (kill(s->pid, 0) != 0) {
		char *log = kwt_read_file(s->log, NULL);
		fail_msg("keywardd died (seed %u); its log:\n%s", seed, log ? log : "");
	}
}

static void start_signer(struct kwt_server *s, struct signer *sg, pthread_t *t)
{
	memset(sg, 0, sizeof *sg);
	sg->c = kwt_start_dev_client(s);
	sg->spki_len = sizeof sg->spki;
	kwt_gen_ec(sg->c, "hostile-signer", &sg->id, sg->spki, &sg->spki_len);
	assert_int_equal(pthread_create(t, NULL, signer_thread, sg), 0);
}

static void stop_signer(struct signer *sg, pthread_t t)
{
	sg->stop = 1;
	pthread_join(t, NULL);
	if (sg->failed)
		fail_msg("an authenticated client failed %u of %u signatures (seed %u); first: %s", sg->failed,
			 sg->failed + sg->ok, seed, sg->first_error);
	assert_true(sg->ok > 0);
}

/*
 * Finding 1: connections dropped at every stage from several threads. A
 * connection closed in one event must not be touched by a later event of
 * the same epoll batch (a use-after-free under ASan, a crash without), and
 * must be counted out exactly once (the counter underflowed to 4294967295
 * and every later connection was refused).
 */
static void test_abrupt_close_storm(void **state)
{
	struct kwt_server s;
	struct signer sg;
	pthread_t signer_t, threads[STORM_THREADS];
	struct storm storms[STORM_THREADS];
	struct status st;
	unsigned total = 0, closed_lines = 0;
	double until = now_s() + STORM_SECONDS;
	char *log;

	(void)state;
	memset(&s, 0, sizeof s);
	start_signer(&s, &sg, &signer_t);
	for (unsigned i = 0; i < STORM_THREADS; i++) {
		storms[i] = (struct storm){.s = &s, .ctx = stranger_ctx(&s), .seed = seed + i, .until = until};
		assert_int_equal(pthread_create(&threads[i], NULL, storm_thread, &storms[i]), 0);
	}
	for (unsigned i = 0; i < STORM_THREADS; i++) {
		pthread_join(threads[i], NULL);
		SSL_CTX_free(storms[i].ctx);
		total += storms[i].done;
	}
	assert_alive(&s);
	print_message("storm: %u connections dropped at random stages (seed %u)\n", total, seed);
	assert_true(total >= STORM_THREADS * 20);
	wait_strangers_gone(&s, &st);
	assert_alive(&s);
	if (st.unauthenticated != 0 || st.clients != 1 || st.admin != 1)
		fail_msg("after the storm: %ld client, %ld unauthenticated, %ld admin connections; want 1, 0, 1 (seed "
			 "%u)",
			 st.clients, st.unauthenticated, st.admin, seed);
	/* the log is not the strangers' to fill: their lines are rate-limited (10 a minute for each kind) */
	log = kwt_read_file(s.log, NULL);
	assert_non_null(log);
	for (const char *p = log; (p = strstr(p, " closed: ")); p++)
		closed_lines++;
	free(log);
	if (closed_lines > 20)
		fail_msg("keywardd logged %u \"closed\" lines for %u strangers' connections", closed_lines, total);
	stop_signer(&sg, signer_t);
	kwt_stop_client(&s, sg.c);
}

/* ---- budgets: strangers, clients and the admin socket apart ---- */

/* Whether the server has closed fd (EOF or reset), waiting at most timeout_ms. */
static bool closed_by_server(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char b[256];

	while (poll(&p, 1, timeout_ms) == 1) {
		ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return true;
		if (n < 0)
			return false;
	}
	return false;
}

struct hello_spammer {
	const struct kwt_server *s;
	SSL_CTX *ctx;
	volatile int stop;
	unsigned sent;
	int fds[8];
	SSL *ssl[8];
};

/* Strangers that finish the handshake and keep the line busy with Hellos that fail. */
static void *hello_spam_thread(void *arg)
{
	struct hello_spammer *h = arg;
	unsigned char frame[128];

	for (unsigned i = 0; i < 8; i++) {
		h->fds[i] = tcp_open(h->s, "127.0.0.9");
		h->ssl[i] = NULL;
		if (h->fds[i] < 0)
			continue;
		h->ssl[i] = SSL_new(h->ctx);
		SSL_set_fd(h->ssl[i], h->fds[i]);
		if (SSL_connect(h->ssl[i]) != 1) {
			ERR_clear_error();
			SSL_free(h->ssl[i]);
			h->ssl[i] = NULL;
		}
	}
	while (!h->stop) {
		for (unsigned i = 0; i < 8; i++) {
			size_t n = hello_frame(frame, sizeof frame, h->sent + 1);
			if (h->ssl[i] && SSL_write(h->ssl[i], frame, (int)n) > 0)
				h->sent++;
			ERR_clear_error();
		}
		sleep_ms(300);
	}
	return NULL;
}

/*
 * Finding 2: 300 raw TCP connections that send nothing, from four
 * addresses, and strangers that keep sending Hello, once locked out every
 * client and the admin socket. Now they fill only the strangers' budget
 * (oldest evicted first), a new client still connects and signs, the admin
 * socket answers, and the auth deadline (which no Hello resets) sheds them.
 */
static void test_idle_strangers(void **state)
{
	struct kwt_server s;
	kw_client *c = kwt_start_initialized(&s, "max_unauthenticated = 32\nmax_unauthenticated_per_address = 16\n"
				      "auth_timeout = 3\nmax_connections = 16\n");
	struct hello_spammer spam = {.s = &s};
	pthread_t spam_t;
	static int idle[300];
	struct status st;
	kw_client *late = NULL;
	uint64_t id;
	unsigned char spki[512];
	size_t spki_len = sizeof spki;
	unsigned open_idle = 0, shed = 0;
	char from[20], conf[400];

	(void)state;
	spam.ctx = stranger_ctx(&s);
	assert_int_equal(pthread_create(&spam_t, NULL, hello_spam_thread, &spam), 0);
	for (unsigned i = 0; i < 300; i++) {
		snprintf(from, sizeof from, "127.0.0.%u", 2 + i % 4);
		idle[i] = tcp_open(&s, from);
		open_idle += idle[i] >= 0;
	}
	if (open_idle < 250)
		fail_msg("only %u of 300 connections opened: %s", open_idle, strerror(errno));
	assert_alive(&s);
	admin_status(&s, &st);
	if (st.unauthenticated > 32)
		fail_msg("%ld unauthenticated connections held; the budget is 32", st.unauthenticated);
	/* an established client goes on, and a new one gets in */
	kwt_gen_ec(c, "after-strangers", &id, spki, &spki_len);
	kwt_write_client_conf(&s, "p", "p", conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &late));
	kwt_gen_ec(late, "late-client", &id, spki, &spki_len);
	kw_client_free(late);
	if (kwt_admin(&s, NULL, NULL, "status") != 0)
		fail_msg("the admin socket did not answer while strangers held their budget");
	/* the deadline: nothing the strangers send keeps them */
	sleep_ms(5000);
	spam.stop = 1;
	pthread_join(spam_t, NULL);
	for (unsigned i = 0; i < 300; i++) {
		if (idle[i] < 0)
			continue;
		shed += closed_by_server(idle[i], 2000);
		close(idle[i]);
	}
	if (shed != open_idle)
		fail_msg("%u of %u silent connections are still open past auth_timeout", open_idle - shed, open_idle);
	for (unsigned i = 0; i < 8; i++) {
		if (spam.fds[i] >= 0 && spam.ssl[i])
			assert_true(closed_by_server(spam.fds[i], 2000));
		SSL_free(spam.ssl[i]);
		if (spam.fds[i] >= 0)
			close(spam.fds[i]);
	}
	SSL_CTX_free(spam.ctx);
	wait_strangers_gone(&s, &st);
	assert_int_equal(st.unauthenticated, 0);
	assert_true(spam.sent > 0);
	kwt_stop_client(&s, c);
}

/* A connection to the admin socket that says nothing, or -1. */
static int admin_open(const struct kwt_server *s)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(strlen(s->admin_socket) < sizeof sa.sun_path);
	memcpy(sa.sun_path, s->admin_socket, strlen(s->admin_socket) + 1);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/*
 * Finding 2: the admin socket has a budget of its own, so strangers on the
 * network cannot take it; when local clients fill it, keyward-admin is told
 * so (it used to die of SIGPIPE), and it answers again once they go.
 */
static void test_admin_budget(void **state)
{
	struct kwt_server s;
	kw_client *c = kwt_start_initialized(&s, "admin_max_connections = 3\nmax_unauthenticated = 4\n");
	int held[3], strangers[40];
	char *out = NULL;
	int rc;

	(void)state;
	for (unsigned i = 0; i < 40; i++)
		strangers[i] = tcp_open(&s, "127.0.0.7");
	assert_int_equal(kwt_admin(&s, NULL, NULL, "status"), 0); /* strangers do not touch it */
	for (unsigned i = 0; i < 3; i++)
		assert_true((held[i] = admin_open(&s)) >= 0);
	sleep_ms(300); /* accepted and counted */
	rc = kwt_admin(&s, NULL, &out, "status");
	if (rc == 0 || !out || !strstr(out, "admin socket is busy"))
		fail_msg("keyward-admin with the admin budget full: exit %d, want a \"busy\" error:\n%s", rc,
			 out ? out : "");
	if (rc > 128)
		fail_msg("keyward-admin died of signal %d", rc - 128);
	free(out);
	for (unsigned i = 0; i < 3; i++)
		close(held[i]);
	for (unsigned i = 0; i < 40; i++)
		if (strangers[i] >= 0)
			close(strangers[i]);
	sleep_ms(300);
	assert_int_equal(kwt_admin(&s, NULL, NULL, "status"), 0);
	kwt_stop_client(&s, c);
}

/*
 * Finding 2: when authenticated clients fill max_connections, a further
 * client's Hello is refused with a status that says so, not dropped.
 */
static void test_server_full(void **state)
{
	struct kwt_server s;
	kw_client *a = kwt_start_initialized(&s, "max_connections = 1\n");
	kw_client *b = NULL;
	char *out = NULL, pw[64] = "", conf[400], *p;
	unsigned char digest[32] = {0}, sig[132];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	uint64_t id;
	kw_rv rv;

	(void)state;
	kwt_gen_ec(a, "holds-the-slot", &id, NULL, NULL);
	assert_int_equal(kwt_admin(&s, NULL, &out, "partition create q"), 0);
	p = strstr(out, "setup password: ");
	assert_non_null(p);
	sscanf(p + strlen("setup password: "), "%63s", pw);
	free(out);
	kwt_write_client_conf(&s, "q", "q", conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &b));
	/* enrolment needs no client's slot; the Hello that follows it is refused */
	rv = kw_enroll(b, pw, NULL);
	if (rv == KW_OK)
		rv = kw_sign(b, id, &m, digest, sizeof digest, sig, &sig_len);
	if (rv != KW_ERR_BUSY || !strstr(kw_last_error(), "full"))
		fail_msg("a client past max_connections got %s: %s; want KW_ERR_BUSY saying the server is full",
			 kw_rv_name(rv), kw_last_error());
	kw_client_free(b);
	/* the first client is untouched */
	sig_len = sizeof sig;
	kwt_ok(kw_sign(a, id, &m, digest, sizeof digest, sig, &sig_len));
	kwt_stop_client(&s, a);
}

/* Finding 4: keywardd is not dumpable and may not write a core, so a crash writes no keys to disk. */
static void test_no_core_dumps(void **state)
{
	struct kwt_server s;
	kw_client *c;
	char path[64], *limits, *out = NULL;
	FILE *f;

	(void)state;
	memset(&s, 0, sizeof s);
	c = kwt_start_dev_client(&s);
	snprintf(path, sizeof path, "/proc/%d/limits", (int)s.pid);
	assert_non_null(f = fopen(path, "r"));
	limits = calloc(1, 8192);
	assert_non_null(limits);
	(void)!fread(limits, 1, 8191, f); /* a /proc file has no size to seek to */
	fclose(f);
	if (!strstr(limits, "Max core file size        0                    0"))
		fail_msg("keywardd may dump core:\n%s", limits);
	/* key material lives in OpenSSL's secure heap: locked, so never swapped, and left out of dumps */
	snprintf(path, sizeof path, "/proc/%d/status", (int)s.pid);
	assert_non_null(f = fopen(path, "r"));
	memset(limits, 0, 8192);
	(void)!fread(limits, 1, 8191, f);
	fclose(f);
	if (!strstr(limits, "VmLck:") || strtol(strstr(limits, "VmLck:") + 6, NULL, 10) < 8192)
		fail_msg("keywardd has less than its 8 MiB secure heap locked:\n%s", limits);
	free(limits);
	assert_int_equal(kwt_admin(&s, NULL, &out, "status"), 0);
	if (!strstr(out, "core dumps:  off"))
		fail_msg("keywardd says it is dumpable:\n%s", out);
	free(out);
	kwt_stop_client(&s, c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abrupt_close_storm), cmocka_unit_test(test_idle_strangers),
		cmocka_unit_test(test_admin_budget),	   cmocka_unit_test(test_server_full),
		cmocka_unit_test(test_no_core_dumps),
	};
	const char *env = getenv("KWT_SEED");

	seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
