/*
 * Failover under load (issue 17): two keywardd nodes on one throwaway
 * PostgreSQL, and clients whose pool names both (node 1 first by
 * priority, node 2 after it).
 *
 * - PostgreSQL stopped and started again while 8 threads sign on both
 *   nodes: requests meanwhile fail with an error naming the store, and
 *   both nodes, never restarted, serve again.
 * - Node 1 hung (SIGSTOP): a signature in flight there is repeated on
 *   node 2 and succeeds; a key generation in flight is reported with its
 *   outcome unknown and not repeated on node 2.
 * - Node 1 killed (SIGKILL) under 8 signing threads and 2 creating ones:
 *   every signature succeeds (on node 2 once node 1 is gone) and
 *   verifies; every request sent ended once, in a success or an error;
 *   every key whose creation succeeded exists once, one whose creation
 *   failed is said to have an unknown outcome; the audit chain, written by
 *   both nodes and cut by the kill, verifies.
 *
 * - Key uses counted on node 1 while PostgreSQL goes down are written to
 *   the audit log once it is back, not lost.
 *
 * Outcomes are counted, never timed: the waits below only bound how long
 * a test may take before it fails instead of hanging.
 *
 * Runs under tests/pg/with-pg (KW_TEST_PG_*).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "harness.h"

#define SIGNERS 8
#define CREATORS 2
#define MAX_CREATES 20000
/* how long a phase may take before the test fails, instead of hanging */
#define PHASE_LIMIT_S 180

struct failover {
	struct kwt_server n1, n2;
	kw_client *c1, *c2; /* node 1 only, node 2 only */
	char pool_conf[400];
	uint64_t key;
	unsigned char spki[512];
	size_t spki_len;
};

/* A client configuration naming both nodes: node 1 first (priority 0), node 2 after it. */
static void write_pool_conf(struct failover *k, const char *name, unsigned timeout, char *path, size_t size)
{
	char text[800];

	snprintf(path, size, "%s/%s.conf", k->n1.dir, name);
	snprintf(text, sizeof text,
		 "[client]\npartition = dev\nca = tls/ca.crt\ncert = client/dev.crt\nkey = client/dev.key\n"
		 "pin_file = pin\ncommand_timeout = %u\n\n"
		 "[hsm one]\nhost = 127.0.0.1\nport = %u\npriority = 0\n\n"
		 "[hsm two]\nhost = 127.0.0.1\nport = %u\npriority = 1\n",
		 timeout, k->n1.port, k->n2.port);
	kwt_write_file(path, text);
}

static int setup(void **state)
{
	struct failover *k = calloc(1, sizeof *k);

	assert_non_null(k);
	kwt_start_pg_pair(&k->n1, &k->n2);
	kwt_ok(kw_client_new(k->n1.conf, &k->c1));
	kwt_ok(kw_client_new(k->n2.conf, &k->c2));
	write_pool_conf(k, "pool", 60, k->pool_conf, sizeof k->pool_conf);
	kwt_gen_ec(k->c1, "under-load", &k->key, k->spki, &k->spki_len);
	*state = k;
	return 0;
}

static int teardown(void **state)
{
	struct failover *k = *state;

	kw_client_free(k->c1);
	kw_client_free(k->c2);
	if (k->n1.pid)
		kill(k->n1.pid, SIGCONT);
	kwt_stop(&k->n2);
	kwt_stop(&k->n1);
	kwt_cleanup(&k->n1); /* the directory both nodes share */
	free(k);
	return 0;
}

/* ---- load ---- */

enum outcome { NOT_TRIED, SUCCEEDED, UNKNOWN, FAILED };

struct worker {
	const struct failover *k;
	kw_client *c;
	int idx;
	bool creates;
	const char *prefix; /* of the keys it creates */
	atomic_bool *stop;
	atomic_int *phase; /* what the main thread has done so far: 0 nothing, then 1, 2 */
	/* for the main thread to watch */
	atomic_ulong sent, ok, failed, ok_in_phase[3], failed_in_phase[3];
	atomic_bool ended; /* a creator that used up its MAX_CREATES names */
	/* for after the join */
	unsigned long bad_signatures, unclear_errors;
	char first_error[600];
	char last_error[600]; /* read by the main thread only to explain a phase that never ended */
	char unclear_error[600];
	kw_rv first_rv;
	enum outcome created[MAX_CREATES];
};

static void note_error(struct worker *w, kw_rv rv, bool clear)
{
	snprintf(w->last_error, sizeof w->last_error, "%s: %s", kw_rv_name(rv), kw_last_error());
	if (!w->first_rv) {
		w->first_rv = rv;
		snprintf(w->first_error, sizeof w->first_error, "%s: %s", kw_rv_name(rv), kw_last_error());
	}
	if (!clear && !w->unclear_errors++)
		snprintf(w->unclear_error, sizeof w->unclear_error, "%s: %s", kw_rv_name(rv), kw_last_error());
}

/* No busy loop while a store is down: it would use up the creators' MAX_CREATES names, and the cores. */
static void pause_after_error(void)
{
	nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
}

static void sign_once(struct worker *w, unsigned long n)
{
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	unsigned char digest[32], sig[132];
	size_t sig_len = sizeof sig;
	char text[64];
	int phase = atomic_load(w->phase);
	kw_rv rv;

	/* a digest of this thread's own: an answer to another request would not verify */
	snprintf(text, sizeof text, "thread %d request %lu", w->idx, n);
	SHA256((const unsigned char *)text, strlen(text), digest);
	rv = kw_sign(w->c, w->k->key, &m, digest, sizeof digest, sig, &sig_len);
	if (rv == KW_OK) {
		if (!kwt_ecdsa_verifies(w->k->spki, w->k->spki_len, digest, sizeof digest, sig, sig_len))
			w->bad_signatures++;
		atomic_fetch_add(&w->ok, 1);
		atomic_fetch_add(&w->ok_in_phase[phase], 1);
		return;
	}
	/* an error names where it happened: an HSM's address, or the store */
	note_error(w, rv, strstr(kw_last_error(), "127.0.0.1:") || strstr(kw_last_error(), "store"));
	atomic_fetch_add(&w->failed, 1);
	atomic_fetch_add(&w->failed_in_phase[phase], 1);
	pause_after_error();
}

static void create_once(struct worker *w, unsigned long n)
{
	kw_object *priv = NULL, *pub = NULL;
	int phase = atomic_load(w->phase);
	char name[64];
	kw_rv rv;

	snprintf(name, sizeof name, "%s%d-%lu", w->prefix, w->idx, n);
	rv = kw_generate_key(w->c, KWT_OWNER, name, KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub);
	kw_object_free(priv);
	kw_object_free(pub);
	if (rv == KW_OK) {
		w->created[n] = SUCCEEDED;
		atomic_fetch_add(&w->ok, 1);
		atomic_fetch_add(&w->ok_in_phase[phase], 1);
		return;
	}
	/*
	 * Sent and cut off, the client must say the outcome is unknown and name
	 * the HSM; refused by the HSM (its store is down), it must name the store.
	 */
	w->created[n] = strstr(kw_last_error(), "is unknown") ? UNKNOWN : FAILED;
	note_error(w, rv, strstr(kw_last_error(), w->created[n] == UNKNOWN ? "127.0.0.1:" : "store"));
	atomic_fetch_add(&w->failed, 1);
	atomic_fetch_add(&w->failed_in_phase[phase], 1);
	pause_after_error();
}

static void *work(void *arg)
{
	struct worker *w = arg;

	/* a creator records each name's outcome, so it stops at MAX_CREATES; a signer runs until told */
	for (unsigned long n = 0; !atomic_load(w->stop) && (!w->creates || n < MAX_CREATES); n++) {
		atomic_fetch_add(&w->sent, 1);
		if (w->creates)
			create_once(w, n);
		else
			sign_once(w, n);
	}
	atomic_store(&w->ended, true);
	return NULL;
}

struct load {
	struct worker *w;
	size_t n;
	pthread_t *t;
	atomic_bool stop;
	atomic_int phase;
};

static void load_start(struct load *l, const char *prefix, const struct failover *k, kw_client *const *clients,
		       size_t n_clients, size_t signers, size_t creators)
{
	l->n = signers + creators;
	l->w = calloc(l->n, sizeof *l->w);
	l->t = calloc(l->n, sizeof *l->t);
	assert_non_null(l->w);
	assert_non_null(l->t);
	atomic_init(&l->stop, false);
	atomic_init(&l->phase, 0);
	for (size_t i = 0; i < l->n; i++) {
		struct worker *w = &l->w[i];

		w->k = k;
		w->c = clients[i % n_clients];
		w->idx = (int)i;
		w->creates = i >= signers;
		w->prefix = prefix;
		w->stop = &l->stop;
		w->phase = &l->phase;
		assert_int_equal(pthread_create(&l->t[i], NULL, work, w), 0);
	}
}

static void load_stop(struct load *l)
{
	atomic_store(&l->stop, true);
	for (size_t i = 0; i < l->n; i++)
		pthread_join(l->t[i], NULL);
}

static void load_free(struct load *l)
{
	free(l->w);
	free(l->t);
}

/* Whether every worker (signers only, or creators only) has at least min successes in phase. */
static bool each_succeeded(struct load *l, bool creators, int phase, unsigned long min)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->w[i].creates == creators && atomic_load(&l->w[i].ok_in_phase[phase]) < min)
			return false;
	return true;
}

static unsigned long failures_in(struct load *l, int phase)
{
	unsigned long n = 0;

	for (size_t i = 0; i < l->n; i++)
		n += atomic_load(&l->w[i].failed_in_phase[phase]);
	return n;
}

/* Fails the test saying where each worker stands. */
static void phase_failed(struct load *l, const char *what)
{
	char report[8000];
	size_t used = 0;

	for (size_t i = 0; i < l->n && used < sizeof report - 1; i++) {
		struct worker *w = &l->w[i];
		int n = snprintf(report + used, sizeof report - used,
				 "\n  thread %d (%s%s): ok %lu/%lu/%lu, failed %lu/%lu/%lu, last error: %.200s", w->idx,
				 w->creates ? "creates" : "signs", atomic_load(&w->ended) ? ", ended" : "",
				 atomic_load(&w->ok_in_phase[0]), atomic_load(&w->ok_in_phase[1]),
				 atomic_load(&w->ok_in_phase[2]), atomic_load(&w->failed_in_phase[0]),
				 atomic_load(&w->failed_in_phase[1]), atomic_load(&w->failed_in_phase[2]),
				 w->last_error);
		used += n > 0 ? (size_t)n : 0;
	}
	atomic_store(&l->stop, true);
	fail_msg("no %s within %d s (per phase:)%s", what, PHASE_LIMIT_S, report);
}

/* Waits (bounded: the test fails, not hangs) until cond holds. */
#define WAIT_FOR(l, what, cond)                                                                                        \
	do {                                                                                                           \
		time_t limit_ = time(NULL) + PHASE_LIMIT_S;                                                            \
		while (!(cond)) {                                                                                      \
			if (time(NULL) > limit_)                                                                       \
				phase_failed(l, what);                                                                 \
			nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);                              \
		}                                                                                                      \
	} while (0)

/* Every request sent ended once, in a success or an error; every signature verified; every error said where. */
static void assert_accounted(struct load *l)
{
	for (size_t i = 0; i < l->n; i++) {
		struct worker *w = &l->w[i];

		assert_int_equal(atomic_load(&w->sent), atomic_load(&w->ok) + atomic_load(&w->failed));
		if (w->bad_signatures)
			fail_msg("thread %d: %lu signatures did not verify", w->idx, w->bad_signatures);
		if (w->unclear_errors)
			fail_msg("thread %d: %lu errors do not say where or what: %s", w->idx, w->unclear_errors,
				 w->unclear_error);
	}
}

/* How many threads of pid are not stopped (-1: cannot tell). */
static int threads_running(pid_t pid)
{
	char path[300];
	struct dirent *e;
	int running = 0;
	DIR *d;

	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	if (!(d = opendir(path)))
		return -1;
	while ((e = readdir(d))) {
		char stat[512], *p;
		size_t n;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
		if (!(f = fopen(path, "r")))
			continue; /* a thread that just ended */
		n = fread(stat, 1, sizeof stat - 1, f);
		fclose(f);
		stat[n] = '\0';
		/* the state follows the parenthesised name, which may itself hold ") " */
		p = strrchr(stat, ')');
		if (p && p[1] == ' ' && p[2] != 'T' && p[2] != 't')
			running++;
	}
	closedir(d);
	return running;
}

/* SIGSTOP, and waits until every thread of the process has stopped (kill() does not wait for that). */
static void stop_process(pid_t pid)
{
	assert_int_equal(kill(pid, SIGSTOP), 0);
	for (int waited = 0; threads_running(pid) != 0; waited++) {
		if (waited > PHASE_LIMIT_S * 20)
			fail_msg("keywardd %d did not stop after SIGSTOP", (int)pid);
		nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
	}
}

static bool alive(const struct kwt_server *s)
{
	return s->pid > 0 && kill(s->pid, 0) == 0;
}

/* How many lines of node's log say a key-use count could not be written. */
static int failed_use_flushes(const struct kwt_server *node)
{
	char *log = kwt_read_file(node->log, NULL), *p = log;
	int n = 0;

	while (p && (p = strstr(p, "cannot record key use"))) {
		n++;
		p++;
	}
	free(log);
	return n;
}

/* The operations node's audit log counts for key `name` with event key.sign (flushing what it holds). */
static unsigned long audited_signatures(struct kwt_server *node, const char *name)
{
	char *out = NULL, *line, *save = NULL, want[100];
	unsigned long total = 0;

	snprintf(want, sizeof want, "/%s (0x", name);
	if (kwt_admin(node, NULL, &out, "audit list") != 0)
		fail_msg("audit list: %s", out ? out : "");
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *colon = strstr(line, want) ? strstr(strstr(line, want), "): ") : NULL;

		if (strstr(line, "key.sign") && colon)
			total += strtoul(colon + 3, NULL, 10);
	}
	free(out);
	return total;
}

/*
 * Key uses are counted in memory and written once a second; a write that
 * finds PostgreSQL down must keep them for the next one, or signatures go
 * unaudited. Signs, stops PostgreSQL until node 1 has failed to write its
 * counts (another round if it had nothing pending), starts it, and counts
 * the audited signatures.
 */
static void test_key_uses_outlive_a_store_outage(void **state)
{
	struct failover *k = *state;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	unsigned long signed_ok = 0;
	unsigned char digest[32] = {7};
	bool failed_flush = false;
	uint64_t id;

	kwt_gen_ec(k->c1, "counted", &id, NULL, NULL);
	for (int round = 0; round < 5 && !failed_flush; round++) {
		int before = failed_use_flushes(&k->n1);

		for (int i = 0; i < 200; i++) {
			unsigned char sig[132];
			size_t len = sizeof sig;

			kwt_ok(kw_sign(k->c1, id, &m, digest, sizeof digest, sig, &len));
			signed_ok++;
		}
		kwt_pg_cluster(false);
		/* the flush runs once a second: within a few, it has tried, if it had anything to write */
		for (int waited = 0; waited < 60 && !failed_flush; waited++) {
			nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
			failed_flush = failed_use_flushes(&k->n1) > before;
		}
		kwt_pg_cluster(true);
	}
	if (!failed_flush)
		fail_msg("node 1 never failed to write its key-use counts while PostgreSQL was down (5 rounds)");
	/* the kept counts are written by a flush after PostgreSQL is back: wait for it, generously */
	for (int waited = 0; waited < 600 && audited_signatures(&k->n1, "counted") < signed_ok; waited++)
		nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
	assert_int_equal(audited_signatures(&k->n1, "counted"), signed_ok);
}

/* Whether the private key `name` exists, asked of node 2 (-1: neither answer). */
static int exists_on_node2(struct failover *k, const char *name)
{
	kw_object_list *list = NULL;
	size_t privs = 0;

	if (kw_list_objects(k->c2, KWT_OWNER, name, &list) != KW_OK)
		return -1;
	for (size_t i = 0; i < kw_object_list_count(list); i++)
		privs += kw_object_class(kw_object_list_get(list, i)) == KW_CLASS_PRIVATE_KEY;
	kw_object_list_free(list);
	return (int)privs;
}

/*
 * Every key whose creation succeeded exists once, on node 2; one whose
 * outcome is unknown at most once; one refused (allowed only if
 * refusals_allowed) not at all. Counts into *created and *unknown.
 */
static void check_creates(struct failover *k, struct load *l, bool refusals_allowed, unsigned long *created,
			  unsigned long *unknown)
{
	for (size_t i = 0; i < l->n; i++) {
		struct worker *w = &l->w[i];

		for (unsigned long n = 0; w->creates && n < MAX_CREATES && w->created[n] != NOT_TRIED; n++) {
			char name[64];
			int found;

			snprintf(name, sizeof name, "%s%d-%lu", w->prefix, w->idx, n);
			found = exists_on_node2(k, name);
			if (found < 0)
				fail_msg("listing %s on node 2: %s", name, kw_last_error());
			switch (w->created[n]) {
			case SUCCEEDED: /* made once, not twice */
				++*created;
				if (found != 1)
					fail_msg("%s: created, but node 2 has %d of it", name, found);
				break;
			case UNKNOWN: /* either way, never twice */
				++*unknown;
				if (found > 1)
					fail_msg("%s: outcome unknown, and node 2 has %d of it", name, found);
				break;
			default: /* refused: the store is as it was */
				if (!refusals_allowed)
					fail_msg("%s: failed without saying the outcome is unknown: %s", name,
						 w->first_error);
				if (found != 0)
					fail_msg("%s: refused (%s), but node 2 has it", name, w->first_error);
			}
		}
	}
}

/* ---- the tests ---- */

static void test_postgres_restart_under_load(void **state)
{
	struct failover *k = *state;
	kw_client *clients[2] = {k->c1, k->c2};
	pid_t pid1 = k->n1.pid, pid2 = k->n2.pid;
	unsigned long created = 0, unknown = 0;
	struct load l = {0};

	load_start(&l, "restart", k, clients, 2, SIGNERS,
		   CREATORS); /* 4 signing threads and a creating one on each node */
	WAIT_FOR(&l, "signatures on both nodes before the restart",
		 each_succeeded(&l, false, 0, 10) && each_succeeded(&l, true, 0, 2));
	kwt_pg_cluster(false);
	atomic_store(&l.phase, 1);
	WAIT_FOR(&l, "failed requests while PostgreSQL is down", failures_in(&l, 1) >= SIGNERS);
	kwt_pg_cluster(true);
	atomic_store(&l.phase, 2);
	/* the same processes, never restarted, serve every thread again */
	WAIT_FOR(&l, "signatures on both nodes after the restart",
		 each_succeeded(&l, false, 2, 10) && each_succeeded(&l, true, 2, 2));
	load_stop(&l);
	assert_accounted(&l);
	check_creates(k, &l, true, &created, &unknown);
	assert_true(alive(&k->n1) && k->n1.pid == pid1);
	assert_true(alive(&k->n2) && k->n2.pid == pid2);
	print_message("postgres restart under %d signing and %d creating threads: %lu requests failed while it was "
		      "down, then all served; %lu keys created, %lu creations with an unknown outcome\n",
		      SIGNERS, CREATORS, failures_in(&l, 1), created, unknown);
	load_free(&l);
}

struct hung_create {
	kw_client *c;
	kw_rv rv;
	char err[600];
};

static void *create_on_hung(void *arg)
{
	struct hung_create *h = arg;
	kw_object *priv = NULL, *pub = NULL;

	h->rv = kw_generate_key(h->c, KWT_OWNER, "while-hung", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub);
	snprintf(h->err, sizeof h->err, "%s", kw_last_error());
	kw_object_free(priv);
	kw_object_free(pub);
	return NULL;
}

static void test_hung_node(void **state)
{
	struct failover *k = *state;
	struct hung_create h = {0};
	unsigned char digest[32], sig[132];
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	kw_client *signer = NULL;
	kw_object *o = NULL;
	kw_object_list *list = NULL;
	char conf[400];
	size_t sig_len = sizeof sig;
	pthread_t t;
	kw_rv rv;

	/* a short command timeout: the only sign of a hung node */
	write_pool_conf(k, "hang", 3, conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &signer));
	kwt_ok(kw_client_new(conf, &h.c));
	/* both hold a connection to node 1, the first by priority */
	SHA256((const unsigned char *)"hung", 4, digest);
	kwt_ok(kw_sign(signer, k->key, &m, digest, sizeof digest, sig, &sig_len));
	kwt_ok(kw_get_object(h.c, 0, KWT_OWNER, "under-load", KW_CLASS_PRIVATE_KEY, &o));
	kw_object_free(o);
	o = NULL;

	stop_process(k->n1.pid);
	assert_int_equal(pthread_create(&t, NULL, create_on_hung, &h), 0);
	/* a signature changes nothing: node 1 did not answer it, node 2 does */
	sig_len = sizeof sig;
	rv = kw_sign(signer, k->key, &m, digest, sizeof digest, sig, &sig_len);
	if (rv != KW_OK)
		fail_msg("signing while node 1 hangs: %s: %s", kw_rv_name(rv), kw_last_error());
	assert_true(kwt_ecdsa_verifies(k->spki, k->spki_len, digest, sizeof digest, sig, sig_len));
	pthread_join(t, NULL);
	/* a key generation might have happened: said so, and not repeated on node 2 */
	if (h.rv != KW_ERR_TIMEOUT || !strstr(h.err, "whether the key was generated is unknown"))
		fail_msg("creating a key on hung node 1: %s: %s", kw_rv_name(h.rv), h.err);
	assert_int_equal(kw_get_object(k->c2, 0, KWT_OWNER, "while-hung", KW_CLASS_PRIVATE_KEY, &o), KW_ERR_NOT_FOUND);

	/* node 1 wakes and may now carry out what it had received: the key exists at most once */
	assert_int_equal(kill(k->n1.pid, SIGCONT), 0);
	kwt_ok(kw_list_objects(k->c1, KWT_OWNER, "while-hung", &list)); /* node 1 answers again */
	assert_true(kw_object_list_count(list) <= 2);			/* a key pair, once */
	kw_object_list_free(list);
	kw_client_free(signer);
	kw_client_free(h.c);
}

/* Last: node 1 is gone after it. */
static void test_kill9_under_load(void **state)
{
	struct failover *k = *state;
	unsigned long unknown = 0, created = 0, sign_ok_after = 0;
	kw_client *pool = NULL;
	struct load l = {0};
	char *out = NULL;

	kwt_ok(kw_client_new(k->pool_conf, &pool));
	load_start(&l, "kill", k, &pool, 1, SIGNERS, CREATORS);
	WAIT_FOR(&l, "signatures and creations on node 1",
		 each_succeeded(&l, false, 0, 20) && each_succeeded(&l, true, 0, 3));
	kwt_kill9(&k->n1);
	atomic_store(&l.phase, 1);
	WAIT_FOR(&l, "signatures and creations after the kill",
		 each_succeeded(&l, false, 1, 20) && each_succeeded(&l, true, 1, 3));
	load_stop(&l);
	assert_accounted(&l);

	for (size_t i = 0; i < l.n; i++) {
		struct worker *w = &l.w[i];

		/* a signature changes nothing: one in flight at the kill was repeated on node 2 */
		if (!w->creates && atomic_load(&w->failed))
			fail_msg("thread %d: %lu signatures failed: %s", w->idx, atomic_load(&w->failed),
				 w->first_error);
		if (!w->creates)
			sign_ok_after += atomic_load(&w->ok_in_phase[1]);
	}
	check_creates(k, &l, false, &created, &unknown);
	/* the audit chain both nodes wrote, cut by the kill mid-transaction, is one intact chain */
	if (kwt_admin(&k->n2, NULL, &out, "audit verify") != 0 || !strstr(out, "audit log intact"))
		fail_msg("audit verify on node 2 after the kill: %s", out ? out : "");
	free(out);
	print_message("kill -9 under %d signing and %d creating threads: %lu signatures on node 2 after it, none "
		      "failed; %lu keys created, %lu creations with an unknown outcome\n",
		      SIGNERS, CREATORS, sign_ok_after, created, unknown);
	load_free(&l);
	kw_client_free(pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_postgres_restart_under_load),
		cmocka_unit_test(test_hung_node),
		cmocka_unit_test(test_key_uses_outlive_a_store_outage),
		cmocka_unit_test(test_kill9_under_load),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
