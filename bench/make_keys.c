/*
 * keyward-bench-keys: fills a partition with N EC P-256 key pairs through
 * libkeyward, from T threads at once (each creation is one keystore
 * transaction), spread over O owners. bench/enumkeys drives it.
 *
 *   keyward-bench-keys CLIENT_CONF N THREADS OWNERS
 *
 * Key i is "bench-<i, 5 digits>" under owner "S-1-5-21-7-7-<i % OWNERS>".
 * Prints "created N keys in S s (R keys/s)".
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <keyward/keyward.h>

static kw_client *client;
static unsigned total, owners;
static atomic_uint next_key;
static atomic_int failed;

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		unsigned i = atomic_fetch_add(&next_key, 1);
		char name[32], owner[64];
		kw_rv rv;

		if (i >= total || atomic_load(&failed))
			return NULL;
		snprintf(name, sizeof name, "bench-%05u", i);
		snprintf(owner, sizeof owner, "S-1-5-21-7-7-%u", i % owners);
		rv = kw_generate_key(client, owner, name, KW_KEY_EC, 0, "P-256", 0, KW_USAGE_SIGN, NULL, NULL);
		if (rv) {
			fprintf(stderr, "keyward-bench-keys: %s %s: %s\n", owner, name, kw_last_error());
			atomic_store(&failed, 1);
			return NULL;
		}
	}
}

int main(int argc, char **argv)
{
	pthread_t th[64];
	struct timespec t0, t1;
	unsigned threads;
	double secs;

	if (argc != 5 || (total = (unsigned)strtoul(argv[2], NULL, 10)) == 0 ||
	    (threads = (unsigned)strtoul(argv[3], NULL, 10)) == 0 || threads > 64 ||
	    (owners = (unsigned)strtoul(argv[4], NULL, 10)) == 0) {
		fprintf(stderr, "usage: keyward-bench-keys CLIENT_CONF N THREADS(1-64) OWNERS\n");
		return 2;
	}
	if (kw_client_new(argv[1], &client)) {
		fprintf(stderr, "keyward-bench-keys: %s\n", kw_last_error());
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned t = 0; t < threads; t++)
		pthread_create(&th[t], NULL, worker, NULL);
	for (unsigned t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	kw_client_free(client);
	if (atomic_load(&failed))
		return 1;
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("created %u keys in %.2f s (%.0f keys/s)\n", total, secs, total / secs);
	return 0;
}
