/*
 * The transport floors under keyward's no-op round trip: THREADS client
 * threads, each with one loopback connection, bounce a 32-byte message for
 * SECONDS and the rate of round trips is printed.
 *
 *   keyward-bench-floor tcp|epoll|tls THREADS SECONDS
 *
 * tcp:   plain TCP, one echoing thread per connection (blocking recv, send):
 *        the floor the target is set against.
 * epoll: plain TCP, echoed by as many epoll loops as the machine has cores,
 *        as keywardd's workers are: what serving many connections from a few
 *        threads costs (epoll_wait between requests, no thread per peer).
 * tls:   the epoll server again, with TLS 1.3 on every connection (a P-256
 *        certificate made in memory): keywardd's transport without its
 *        framing, protobuf and dispatch.
 *
 * The client threads block in recv (or SSL_read) in every mode. Prints one
 * line: "<mode> <threads> <round trips> <seconds> <per-second> <CPU us a round
 * trip>" (both sides: they are one process). bench/sign
 * runs it beside keyward-bench-sign's no-op, in the same minute, so the
 * distance from each floor to the no-op says where the time goes.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "clock.h"

#define PING 32
#define MAX_CONNS 256

static atomic_bool stop;
static double seconds;
static SSL_CTX *server_ctx, *client_ctx; /* tls mode only */

static void die(const char *what)
{
	fprintf(stderr, "keyward-bench-floor: %s: %s\n", what, errno ? strerror(errno) : "failed");
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* ---- the client side: blocking, one connection a thread ---- */

struct pinger {
	int fd;
	SSL *ssl;
	unsigned long count;
};

static bool io_all(struct pinger *p, unsigned char *buf, bool out)
{
	for (size_t done = 0; done < PING;) {
		ssize_t n;

		if (p->ssl)
			n = out ? SSL_write(p->ssl, buf + done, (int)(PING - done))
				: SSL_read(p->ssl, buf + done, (int)(PING - done));
		else
			n = out ? send(p->fd, buf + done, PING - done, MSG_NOSIGNAL)
				: recv(p->fd, buf + done, PING - done, 0);
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

static void *ping(void *arg)
{
	struct pinger *p = arg;
	unsigned char buf[PING] = {0};

	while (!atomic_load(&stop)) {
		if (!io_all(p, buf, true) || !io_all(p, buf, false))
			die("a round trip");
		p->count++;
	}
	return NULL;
}

/* tcp mode's echo: one thread per connection */
static void *pong(void *arg)
{
	struct pinger p = {.fd = (int)(intptr_t)arg};
	unsigned char buf[PING];

	while (io_all(&p, buf, false) && io_all(&p, buf, true))
		;
	close(p.fd);
	return NULL;
}

/* ---- the server side of epoll and tls: loops over non-blocking connections ---- */

struct conn {
	int fd;
	SSL *ssl;
	bool handshaken;
	unsigned char buf[PING];
	size_t have;
};

/* Reads what is there; echoes each whole message. False: the connection is done. */
static bool serve_conn(struct conn *c)
{
	for (;;) {
		ssize_t n;

		if (c->ssl) {
			if (!c->handshaken) {
				int r = SSL_accept(c->ssl);
				if (r == 1) {
					c->handshaken = true;
					continue;
				}
				return SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ;
			}
			n = SSL_read(c->ssl, c->buf + c->have, (int)(PING - c->have));
			if (n <= 0)
				return SSL_get_error(c->ssl, (int)n) == SSL_ERROR_WANT_READ;
		} else {
			n = recv(c->fd, c->buf + c->have, PING - c->have, 0);
			if (n < 0)
				return errno == EAGAIN;
			if (n == 0)
				return false;
		}
		c->have += (size_t)n;
		if (c->have < PING)
			continue;
		c->have = 0;
		/* 32 bytes fit any socket buffer: a write of them is whole */
		if (c->ssl ? SSL_write(c->ssl, c->buf, PING) != PING : send(c->fd, c->buf, PING, MSG_NOSIGNAL) != PING)
			return false;
	}
}

static void *loop(void *arg)
{
	int ep = (int)(intptr_t)arg;
	struct epoll_event ev[64];

	/* until the process ends: a loop that stopped with the clients could leave one waiting for its echo */
	for (;;) {
		int n = epoll_wait(ep, ev, 64, -1);

		for (int i = 0; i < n; i++) {
			struct conn *c = ev[i].data.ptr;

			if (!serve_conn(c)) {
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				SSL_free(c->ssl);
				close(c->fd);
				free(c);
			}
		}
	}
	return NULL;
}

/* A P-256 key and a self-signed certificate for the tls mode's server. */
static void make_tls(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();

	if (!key || !x || !X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), 0) || !X509_gmtime_adj(X509_getm_notAfter(x), 3600) ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"floor",
					-1, -1, 0) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(x)) || !X509_set_pubkey(x, key) ||
	    !X509_sign(x, key, EVP_sha256()))
		die("a certificate");
	server_ctx = SSL_CTX_new(TLS_server_method());
	client_ctx = SSL_CTX_new(TLS_client_method());
	if (!server_ctx || !client_ctx || !SSL_CTX_set_min_proto_version(server_ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_min_proto_version(client_ctx, TLS1_3_VERSION) || !SSL_CTX_use_certificate(server_ctx, x) ||
	    !SSL_CTX_use_PrivateKey(server_ctx, key))
		die("TLS contexts");
	/* no tickets: one handshake a connection, nothing written after it */
	SSL_CTX_set_num_tickets(server_ctx, 0);
	X509_free(x);
	EVP_PKEY_free(key);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	unsigned threads, loops = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	struct pinger *pingers;
	pthread_t *tids, loop_tids[64];
	int lfd, one = 1, eps[64];
	bool tcp, tls;
	unsigned long total = 0;
	double start, elapsed, cpu;

	if (argc != 4 || (strcmp(argv[1], "tcp") && strcmp(argv[1], "epoll") && strcmp(argv[1], "tls"))) {
		fprintf(stderr, "usage: keyward-bench-floor tcp|epoll|tls THREADS SECONDS\n");
		return 2;
	}
	tcp = !strcmp(argv[1], "tcp");
	tls = !strcmp(argv[1], "tls");
	threads = (unsigned)atoi(argv[2]);
	seconds = atof(argv[3]);
	if (threads < 1 || threads > MAX_CONNS || seconds <= 0) {
		fprintf(stderr, "keyward-bench-floor: 1 to %d threads, a positive number of seconds\n", MAX_CONNS);
		return 2;
	}
	if (loops < 1 || loops > 64)
		loops = loops < 1 ? 1 : 64;
	if (tls)
		make_tls();
	pingers = calloc(threads, sizeof *pingers);
	tids = calloc(threads, sizeof *tids);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (!pingers || !tids || lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) ||
	    listen(lfd, (int)threads) || getsockname(lfd, (struct sockaddr *)&sa, &sl))
		die("listening");
	for (unsigned i = 0; !tcp && i < loops; i++) {
		if ((eps[i] = epoll_create1(EPOLL_CLOEXEC)) < 0)
			die("epoll");
		pthread_create(&loop_tids[i], NULL, loop, (void *)(intptr_t)eps[i]);
	}
	for (unsigned i = 0; i < threads; i++) {
		int cfd = socket(AF_INET, SOCK_STREAM, 0), afd;

		if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof sa) || (afd = accept(lfd, NULL, NULL)) < 0)
			die("connecting");
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		setsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		pingers[i].fd = cfd;
		if (tcp) {
			pthread_t t;
			pthread_create(&t, NULL, pong, (void *)(intptr_t)afd);
			pthread_detach(t);
			continue;
		}
		/* connections dealt to the loops in turn, as the kernel spreads keywardd's accepts */
		struct conn *c = calloc(1, sizeof *c);
		struct epoll_event ev = {.events = EPOLLIN};

		if (!c)
			die("memory");
		c->fd = afd;
		fcntl(afd, F_SETFL, fcntl(afd, F_GETFL) | O_NONBLOCK);
		if (tls && (!(c->ssl = SSL_new(server_ctx)) || !SSL_set_fd(c->ssl, afd)))
			die("a TLS server connection");
		ev.data.ptr = c;
		if (epoll_ctl(eps[i % loops], EPOLL_CTL_ADD, afd, &ev))
			die("epoll_ctl");
		if (tls && (!(pingers[i].ssl = SSL_new(client_ctx)) || !SSL_set_fd(pingers[i].ssl, cfd) ||
			    SSL_connect(pingers[i].ssl) != 1))
			die("a TLS handshake");
	}
	start = now();
	cpu = cpu_seconds();
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, ping, &pingers[i]);
	wait_until(start, seconds);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(tids[i], NULL);
		total += pingers[i].count;
	}
	elapsed = now() - start;
	cpu = cpu_seconds() - cpu;
	printf("%s %u %lu %.2f %.0f %.1f\n", argv[1], threads, total, elapsed, (double)total / elapsed,
	       total ? cpu * 1e6 / (double)total : 0);
	/* the process ends here: the echo threads and loops go with it */
	return 0;
}
