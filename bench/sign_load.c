/*
 * Signing load through libkeyward: N threads sign for S seconds with one
 * key and print the aggregate rate. The key is generated on the HSM first.
 *
 *   keyward-bench-sign CONF rsa2048|p256|noop THREADS SECONDS [BATCH]
 *   keyward-bench-sign - tcp THREADS SECONDS
 *
 * "noop" asks for one random byte: a request with no key work, so its rate
 * is the ceiling the transport (TLS, loopback, wake-ups) puts on any
 * operation. With BATCH, each call is one kw_sign_batch of BATCH digests
 * (the figure still counts signatures). "tcp" is the floor under "noop":
 * THREADS plain TCP connections on loopback, each a thread pair bouncing a
 * 32-byte message (no TLS, no protobuf, no work); its figure is round trips.
 *
 * Prints one line: "<alg> <threads> <signatures> <seconds> <per-second>".
 * bench/sign runs it against a development keywardd and compares with
 * `openssl speed` measured in the same run.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <keyward/keyward.h>

static kw_client *client;
static uint64_t key_id;
static struct kw_mechanism mech;
static bool noop;
static atomic_bool stop;
static double seconds;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned batch; /* digests per kw_sign_batch; 0: kw_sign */

/* One signing call: a batch, a single signature or a no-op; how many signatures it made. */
static unsigned long one_call(void)
{
	static const unsigned char digest[32] = {1, 2, 3};
	const unsigned char *data[KW_SIGN_BATCH_MAX];
	unsigned char sigs[KW_SIGN_BATCH_MAX][512], *sigp[KW_SIGN_BATCH_MAX];
	size_t data_lens[KW_SIGN_BATCH_MAX], sig_lens[KW_SIGN_BATCH_MAX], len = sizeof sigs[0];
	kw_rv rv;

	if (noop)
		rv = kw_generate_random(client, sigs[0], 1);
	else if (!batch)
		rv = kw_sign(client, key_id, &mech, digest, sizeof digest, sigs[0], &len);
	else {
		for (unsigned i = 0; i < batch; i++) {
			data[i] = digest;
			data_lens[i] = sizeof digest;
			sigp[i] = sigs[i];
			sig_lens[i] = sizeof sigs[i];
		}
		rv = kw_sign_batch(client, key_id, &mech, batch, data, data_lens, sigp, sig_lens);
	}
	if (rv) {
		fprintf(stderr, "keyward-bench-sign: %s\n", kw_last_error());
		exit(1);
	}
	return batch && !noop ? batch : 1;
}

static void *worker(void *arg)
{
	unsigned long *count = arg;

	while (!atomic_load(&stop))
		*count += one_call();
	return NULL;
}

/* ---- the plain-TCP floor ---- */

#define PING 32

static bool io_all(int fd, unsigned char *buf, bool out)
{
	for (size_t done = 0; done < PING;) {
		ssize_t n = out ? send(fd, buf + done, PING - done, MSG_NOSIGNAL) : recv(fd, buf + done, PING - done, 0);
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

/* The echoing side of one connection: until the peer closes. */
static void *pong(void *arg)
{
	int fd = (int)(intptr_t)arg;
	unsigned char buf[PING];

	while (io_all(fd, buf, false) && io_all(fd, buf, true))
		;
	close(fd);
	return NULL;
}

struct ping_arg {
	int fd;
	unsigned long count;
};

static void *ping(void *arg)
{
	struct ping_arg *p = arg;
	unsigned char buf[PING] = {0};

	while (!atomic_load(&stop)) {
		if (!io_all(p->fd, buf, true) || !io_all(p->fd, buf, false)) {
			fprintf(stderr, "keyward-bench-sign: tcp: %s\n", strerror(errno));
			exit(1);
		}
		p->count++;
	}
	return NULL;
}

/* THREADS connections on 127.0.0.1 (a free port), each bounced for `seconds`. */
static int run_tcp(unsigned threads)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct ping_arg *args = calloc(threads, sizeof *args);
	pthread_t *pings = calloc(threads, sizeof *pings), *pongs = calloc(threads, sizeof *pongs);
	unsigned long total = 0;
	double start, elapsed;

	if (lfd < 0 || !args || !pings || !pongs || bind(lfd, (struct sockaddr *)&sa, sizeof sa) ||
	    listen(lfd, (int)threads) || getsockname(lfd, (struct sockaddr *)&sa, &sl)) {
		fprintf(stderr, "keyward-bench-sign: tcp: %s\n", strerror(errno));
		return 1;
	}
	for (unsigned i = 0; i < threads; i++) {
		int cfd = socket(AF_INET, SOCK_STREAM, 0), afd;
		if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof sa) || (afd = accept(lfd, NULL, NULL)) < 0) {
			fprintf(stderr, "keyward-bench-sign: tcp: %s\n", strerror(errno));
			return 1;
		}
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		setsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		args[i].fd = cfd;
		pthread_create(&pongs[i], NULL, pong, (void *)(intptr_t)afd);
	}
	start = now();
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&pings[i], NULL, ping, &args[i]);
	while (now() - start < seconds) {
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	atomic_store(&stop, true);
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(pings[i], NULL);
		total += args[i].count;
		shutdown(args[i].fd, SHUT_RDWR);
		pthread_join(pongs[i], NULL);
		close(args[i].fd);
	}
	elapsed = now() - start;
	printf("tcp %u %lu %.2f %.0f\n", threads, total, elapsed, (double)total / elapsed);
	close(lfd);
	free(args);
	free(pings);
	free(pongs);
	return 0;
}

int main(int argc, char **argv)
{
	kw_object *priv = NULL, *pub = NULL;
	unsigned threads;
	unsigned long *counts, total = 0;
	pthread_t *tids;
	double start, elapsed;
	bool rsa;
	char name[64];

	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: keyward-bench-sign CONF rsa2048|p256|noop THREADS SECONDS [BATCH]\n"
				"       keyward-bench-sign - tcp THREADS SECONDS\n");
		return 2;
	}
	rsa = strcmp(argv[2], "rsa2048") == 0;
	noop = strcmp(argv[2], "noop") == 0;
	threads = (unsigned)atoi(argv[3]);
	seconds = atof(argv[4]);
	batch = argc == 6 ? (unsigned)atoi(argv[5]) : 0;
	if (batch > KW_SIGN_BATCH_MAX) {
		fprintf(stderr, "keyward-bench-sign: a batch is at most %d digests\n", KW_SIGN_BATCH_MAX);
		return 2;
	}
	if (strcmp(argv[2], "tcp") == 0)
		return run_tcp(threads);
	if (kw_client_new(argv[1], &client)) {
		fprintf(stderr, "keyward-bench-sign: %s\n", kw_last_error());
		return 1;
	}
	snprintf(name, sizeof name, "bench-%s-%u-%ld", argv[2], threads, (long)time(NULL));
	if (kw_generate_key(client, "S-1-5-21-0-0-0", name, rsa ? KW_KEY_RSA : KW_KEY_EC, rsa ? 2048 : 0,
			    rsa ? NULL : "P-256", 0, KW_USAGE_SIGN, &priv, &pub)) {
		fprintf(stderr, "keyward-bench-sign: %s\n", kw_last_error());
		return 1;
	}
	key_id = kw_object_id(priv);
	mech.mech = rsa ? KW_MECH_RSA_PKCS1 : KW_MECH_ECDSA;
	mech.hash = rsa ? KW_HASH_SHA256 : KW_HASH_NONE;

	/* warm up: a connection made, the key unsealed into the HSM's cache */
	{
		unsigned char digest[32] = {0}, sig[512];
		size_t len = sizeof sig;
		if (kw_sign(client, key_id, &mech, digest, sizeof digest, sig, &len)) {
			fprintf(stderr, "keyward-bench-sign: %s\n", kw_last_error());
			return 1;
		}
	}
	counts = calloc(threads, sizeof *counts);
	tids = calloc(threads, sizeof *tids);
	start = now();
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, worker, &counts[i]);
	while (now() - start < seconds) {
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	atomic_store(&stop, true);
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(tids[i], NULL);
		total += counts[i];
	}
	elapsed = now() - start;
	printf("%s%s %u %lu %.2f %.0f\n", argv[2], batch ? "-batch" : "", threads, total, elapsed,
	       (double)total / elapsed);
	kw_delete_objects(client, key_id, NULL, NULL, KW_CLASS_ANY, NULL);
	kw_object_free(priv);
	kw_object_free(pub);
	free(counts);
	free(tids);
	kw_client_free(client);
	return 0;
}
