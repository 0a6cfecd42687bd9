/*
 * Signing load through libkeyward: N threads sign for S seconds with one
 * key and print the aggregate rate. The key is generated on the HSM first.
 *
 *   keyward-bench-sign CONF rsa2048|p256|noop THREADS SECONDS [BATCH]
 *
 * "noop" asks for one random byte: a request with no key work, so its rate
 * is the ceiling the transport (TLS, loopback, wake-ups) puts on any
 * operation. With BATCH, each call is one kw_sign_batch of BATCH digests
 * (the figure still counts signatures). keyward-bench-floor (floor_load.c)
 * measures the transport floors under "noop".
 *
 * Prints one line: "<alg> <threads> <signatures> <seconds> <per-second>
 * <client CPU us a signature>".
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
#include <unistd.h>

#include <keyward/keyward.h>

#include "clock.h"

static kw_client *client;
static uint64_t key_id;
static struct kw_mechanism mech;
static bool noop;
static atomic_bool stop;
static double seconds;

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

int main(int argc, char **argv)
{
	kw_object *priv = NULL, *pub = NULL;
	unsigned threads;
	unsigned long *counts, total = 0;
	pthread_t *tids;
	double start, elapsed, cpu;
	bool rsa;
	char name[64];

	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: keyward-bench-sign CONF rsa2048|p256|noop THREADS SECONDS [BATCH]\n");
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
	cpu = cpu_seconds();
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, worker, &counts[i]);
	wait_until(start, seconds);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(tids[i], NULL);
		total += counts[i];
	}
	elapsed = now() - start;
	cpu = cpu_seconds() - cpu;
	printf("%s%s %u %lu %.2f %.0f %.1f\n", argv[2], batch ? "-batch" : "", threads, total, elapsed,
	       (double)total / elapsed, total ? cpu * 1e6 / (double)total : 0);
	kw_delete_objects(client, key_id, NULL, NULL, KW_CLASS_ANY, NULL);
	kw_object_free(priv);
	kw_object_free(pub);
	free(counts);
	free(tids);
	kw_client_free(client);
	return 0;
}
