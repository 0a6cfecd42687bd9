/*
 * The cost of a failure under signing load: THREADS threads sign with one
 * P-256 key through libkeyward for BEFORE seconds, then EVENT (a shell
 * command: "kill -9 PID", a PostgreSQL restart) runs while they go on,
 * then they sign AFTER seconds more. A thread waits 10 ms after an error,
 * as a client would rather than spin while a store is down.
 *
 *   keyward-bench-failover CONF THREADS BEFORE AFTER EVENT
 *
 * Prints one line of figures, for bench/cluster to turn into a table:
 *   "sent S ok O failed F before R1 after R2 event E recover T slowest L"
 * S = O + F calls made (F: those that returned an error); R1, R2 the
 * signatures per second before the event and after it (from its end);
 * E the seconds the event took (a restart: the time PostgreSQL was away); T the seconds from the event's end until
 * every thread has had a signature answered again; L the longest single call, in seconds. Not a test: the figures
 * depend on the machine.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keyward/keyward.h>

#include "clock.h"

static kw_client *client;
static uint64_t key_id;
static atomic_bool stop;
/* monotonic seconds at the event's end; 0 before it */
static _Atomic double event_end;

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};

	nanosleep(&ts, NULL);
}

struct worker {
	pthread_t tid;
	unsigned long ok, failed, ok_before, ok_after;
	double first_ok_after; /* 0: none yet */
	double slowest;
	char error[400];
};

static void *work(void *arg)
{
	static const unsigned char digest[32] = {1, 2, 3};
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	struct worker *w = arg;

	while (!atomic_load(&stop)) {
		unsigned char sig[132];
		size_t len = sizeof sig;
		double ended_at = atomic_load(&event_end), t0 = now(), t1;
		kw_rv rv = kw_sign(client, key_id, &m, digest, sizeof digest, sig, &len);

		t1 = now();
		if (t1 - t0 > w->slowest)
			w->slowest = t1 - t0;
		if (rv) {
			w->failed++;
			snprintf(w->error, sizeof w->error, "%s", kw_last_error());
			sleep_s(0.01); /* as a client would, rather than spin while a store is down */
			continue;
		}
		w->ok++;
		if (!ended_at && !atomic_load(&event_end))
			w->ok_before++;
		else if (ended_at) {
			/* sent after the event ended: counts for the rate after it */
			w->ok_after++;
			if (!w->first_ok_after)
				w->first_ok_after = t1;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	kw_object *priv = NULL, *pub = NULL;
	unsigned long ok = 0, failed = 0, before = 0, after = 0;
	double start, event_start, end, recover = 0, slowest = 0, before_s, after_s;
	struct worker *w;
	unsigned threads;
	char name[64];
	int rc;

	if (argc != 6 || (threads = (unsigned)atoi(argv[2])) == 0) {
		fprintf(stderr, "usage: keyward-bench-failover CONF THREADS BEFORE AFTER EVENT\n");
		return 2;
	}
	before_s = atof(argv[3]);
	after_s = atof(argv[4]);
	if (kw_client_new(argv[1], &client)) {
		fprintf(stderr, "keyward-bench-failover: %s\n", kw_last_error());
		return 1;
	}
	snprintf(name, sizeof name, "bench-failover-%ld", (long)time(NULL));
	if (kw_generate_key(client, "S-1-5-21-1-2-3", name, KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub)) {
		fprintf(stderr, "keyward-bench-failover: %s\n", kw_last_error());
		return 1;
	}
	key_id = kw_object_id(priv);
	kw_object_free(priv);
	kw_object_free(pub);
	w = calloc(threads, sizeof *w);
	if (!w)
		return 1;
	start = now();
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&w[i].tid, NULL, work, &w[i]);
	sleep_s(before_s);
	event_start = now();
	rc = system(argv[5]);
	atomic_store(&event_end, now());
	sleep_s(after_s);
	atomic_store(&stop, true);
	end = now();
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		ok += w[i].ok;
		failed += w[i].failed;
		before += w[i].ok_before;
		after += w[i].ok_after;
		if (w[i].slowest > slowest)
			slowest = w[i].slowest;
		if (!w[i].first_ok_after)
			recover = -1; /* a thread never signed again */
		else if (recover >= 0 && w[i].first_ok_after - atomic_load(&event_end) > recover)
			recover = w[i].first_ok_after - atomic_load(&event_end);
		if (w[i].failed)
			fprintf(stderr, "thread %u: %lu failed, the last: %s\n", i, w[i].failed, w[i].error);
	}
	if (rc != 0)
		fprintf(stderr, "keyward-bench-failover: the event (%s) exited with %d\n", argv[5], rc);
	printf("sent %lu ok %lu failed %lu before %.0f after %.0f event %.3f recover %.3f slowest %.3f\n", ok + failed,
	       ok, failed, (double)before / (event_start - start), (double)after / (end - atomic_load(&event_end)),
	       atomic_load(&event_end) - event_start, recover, slowest);
	free(w);
	kw_client_free(client);
	return 0;
}
