/*
 * Signing load through libkeyward: N threads sign for S seconds with one
 * key and print the aggregate rate. The key is generated on the HSM first.
 *
 *   keyward-bench-sign CONF rsa2048|p256|noop THREADS SECONDS
 *
 * "noop" asks for one random byte: a request with no key work, so its rate
 * is the ceiling the transport (TLS, loopback, wake-ups) puts on any
 * operation.
 *
 * Prints one line: "<alg> <threads> <signatures> <seconds> <per-second>".
 * bench/sign runs it against a development keywardd and compares with
 * `openssl speed` measured in the same run.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void *worker(void *arg)
{
	unsigned long *count = arg;
	unsigned char digest[32] = {1, 2, 3}, sig[512];

	while (!atomic_load(&stop)) {
		size_t len = sizeof sig;
		kw_rv rv = noop ? kw_generate_random(client, sig, 1)
				: kw_sign(client, key_id, &mech, digest, sizeof digest, sig, &len);
		if (rv) {
			fprintf(stderr, "keyward-bench-sign: %s\n", kw_last_error());
			exit(1);
		}
		(*count)++;
	}
	return NULL;
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

	if (argc != 5) {
		fprintf(stderr, "usage: keyward-bench-sign CONF rsa2048|p256|noop THREADS SECONDS\n");
		return 2;
	}
	rsa = strcmp(argv[2], "rsa2048") == 0;
	noop = strcmp(argv[2], "noop") == 0;
	threads = (unsigned)atoi(argv[3]);
	seconds = atof(argv[4]);
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
	printf("%s %u %lu %.2f %.0f\n", argv[2], threads, total, elapsed, (double)total / elapsed);
	kw_delete_objects(client, key_id, NULL, NULL, KW_CLASS_ANY, NULL);
	kw_object_free(priv);
	kw_object_free(pub);
	free(counts);
	free(tids);
	kw_client_free(client);
	return 0;
}
