/*
 * keyward-bench-ocsp: an HTTP/1.1 load generator for OCSP responders
 * (bench/ocsp). C connections, each on a thread of its own, send the same
 * request again and again for S seconds, keeping the connection alive
 * when the server lets it (and connecting again when it closes, as
 * `openssl ocsp -port` does after every answer):
 *
 *   keyward-bench-ocsp get  HOST:PORT PATH C S             GET PATH
 *   keyward-bench-ocsp post HOST:PORT PATH REQ.der C S     POST REQ.der as it is
 *   keyward-bench-ocsp nonce HOST:PORT PATH REQ.der C S    POST REQ.der with a fresh nonce each time
 *
 * Prints "answers ANSWERS seconds S rate R errors E": answers are 200s
 * with a body; anything else is an error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ocsp.h>
#include <openssl/rand.h>

#include "clock.h"

static struct sockaddr_in addr;
static const char *mode, *path, *host;
static unsigned char *req_der;
static size_t req_len;
static double deadline;
static atomic_ullong answers, errors;

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads one response; 0 ok (and *keep whether the connection stays open), -1 error. */
static int read_response(int fd, char *buf, size_t cap, int *keep)
{
	size_t n = 0, need = 0, head = 0;
	long clen = -1;
	int status = 0;

	for (;;) {
		ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
		char *end;

		if (r <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = '\0';
		if (!head && (end = strstr(buf, "\r\n\r\n"))) {
			char *cl = strcasestr(buf, "\r\nContent-Length:");

			head = (size_t)(end - buf) + 4;
			if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !cl)
				return -1;
			clen = strtol(cl + 17, NULL, 10);
			/* HTTP/1.0 (openssl ocsp) closes unless it says keep-alive; 1.1 keeps unless it says close */
			*keep = !strncmp(buf, "HTTP/1.0", 8) ? strcasestr(buf, "\r\nConnection: keep-alive") != NULL
							     : !strcasestr(buf, "\r\nConnection: close");
			need = head + (size_t)clen;
			if (need >= cap)
				return -1;
		}
		if (head && n >= need)
			return status == 200 && clen > 0 ? 0 : -1;
		if (n + 1 >= cap)
			return -1;
	}
}

/* A request with a fresh nonce; malloc'd DER. */
static unsigned char *with_nonce(size_t *len)
{
	const unsigned char *p = req_der;
	OCSP_REQUEST *r = d2i_OCSP_REQUEST(NULL, &p, (long)req_len);
	unsigned char *out = NULL;
	int n;

	if (!r || !OCSP_request_add1_nonce(r, NULL, 16) || (n = i2d_OCSP_REQUEST(r, &out)) <= 0) {
		OCSP_REQUEST_free(r);
		return NULL;
	}
	OCSP_REQUEST_free(r);
	*len = (size_t)n;
	return out;
}

static void *worker(void *arg)
{
	char *buf = malloc(1 << 16), head[1024];
	int fd = -1, keep = 1;

	(void)arg;
	if (!buf)
		return NULL;
	while (now() < deadline) {
		unsigned char *body = NULL;
		size_t blen = 0;
		int h, bad;

		if (fd < 0 && (fd = dial()) < 0) {
			atomic_fetch_add(&errors, 1);
			usleep(1000);
			continue;
		}
		if (!strcmp(mode, "get")) {
			h = snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
		} else {
			if (!strcmp(mode, "nonce"))
				body = with_nonce(&blen);
			else
				blen = req_len;
			h = snprintf(head, sizeof head,
				     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/ocsp-request\r\n"
				     "Content-Length: %zu\r\n\r\n",
				     path, host, blen);
		}
		bad = send_all(fd, head, (size_t)h) ||
		      (strcmp(mode, "get") && send_all(fd, body ? body : req_der, blen)) ||
		      read_response(fd, buf, 1 << 16, &keep);
		OPENSSL_free(body);
		if (bad) {
			atomic_fetch_add(&errors, 1);
			close(fd);
			fd = -1;
			continue;
		}
		atomic_fetch_add(&answers, 1);
		if (!keep) {
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

static unsigned char *read_all(const char *file, size_t *len)
{
	FILE *f = fopen(file, "rb");
	unsigned char *p = malloc(1 << 16);
	size_t n;

	if (!f || !p) {
		if (f)
			fclose(f);
		free(p);
		return NULL;
	}
	n = fread(p, 1, 1 << 16, f);
	fclose(f);
	*len = n;
	return p;
}

int main(int argc, char **argv)
{
	int conns, secs, a = 4;
	pthread_t *t;
	char hostbuf[64];
	const char *colon;
	double start, took;

	if (argc < 6 || (strcmp(argv[1], "get") && argc < 7)) {
		fprintf(stderr, "usage: keyward-bench-ocsp get|post|nonce HOST:PORT PATH [REQ.der] CONNS SECONDS\n");
		return 2;
	}
	mode = argv[1];
	host = argv[2];
	path = argv[3];
	if (strcmp(mode, "get") && !(req_der = read_all(argv[a++], &req_len))) {
		fprintf(stderr, "keyward-bench-ocsp: cannot read %s\n", argv[4]);
		return 1;
	}
	conns = atoi(argv[a]);
	secs = atoi(argv[a + 1]);
	colon = strrchr(host, ':');
	if (!colon || conns < 1 || secs < 1) {
		fprintf(stderr, "keyward-bench-ocsp: bad arguments\n");
		return 2;
	}
	snprintf(hostbuf, sizeof hostbuf, "%.*s", (int)(colon - host), host);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((unsigned short)atoi(colon + 1));
	if (inet_pton(AF_INET, hostbuf, &addr.sin_addr) != 1) {
		fprintf(stderr, "keyward-bench-ocsp: %s: not an IPv4 address\n", hostbuf);
		return 2;
	}
	t = calloc((size_t)conns, sizeof *t);
	start = now();
	deadline = start + secs;
	for (int i = 0; i < conns; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (int i = 0; i < conns; i++)
		pthread_join(t[i], NULL);
	took = now() - start;
	printf("answers %llu seconds %.3f rate %.1f errors %llu\n", atomic_load(&answers), took,
	       (double)atomic_load(&answers) / took, atomic_load(&errors));
	free(t);
	free(req_der);
	return 0;
}
