/*
 * keyward-ca serve (serve.h): libmicrohttpd with an epoll thread pool in
 * front of the OCSP responder (ocsp.c) and publish/.
 *
 * Threads: the HTTP pool answers requests; "presign" fills the RFC 5019
 * cache (a signed response per known serial, one SHA-1 CertID, no nonce)
 * and, every second, asks the database whether another connection
 * committed (SQLite's data_version): the certificates inserted or changed
 * since are dropped from the cache at once (so the next request is
 * answered from the database) and signed again; answers older than half
 * their validity are signed again too. "maint" publishes CRLs on their
 * periods and renews the delegated OCSP signer. The CA's own database
 * handle (struct ca) is used by maint alone; the HTTP pool and presign
 * read states on connections of their own (db_status.c).
 *
 * A request the cache cannot answer (a nonce, several ids, SHA-256 ids,
 * a serial not cached) is answered from the database and signed then; a
 * single-id answer signed so is put in the cache unless the cache was
 * invalidated while it was made.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ca/db_status.h"
#include "ca/ocsp.h"
#include "ca/publish.h"
#include "ca/ocspder.h"
#include "ca/serve.h"
#include "common/log.h"

/* ---- configuration ---- */

static int uint_value(const char *v, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || !*v || *end || n < min || n > max)
		return ca_error("not a whole number from %u to %u", min, max);
	*out = (unsigned)n;
	return 0;
}

int serve_conf_set(struct serve_conf *sc, const char *key, const char *v)
{
	unsigned hours;

	if (!strcmp(key, "listen")) {
		if (strlen(v) >= sizeof sc->listen)
			return ca_error("too long");
		snprintf(sc->listen, sizeof sc->listen, "%s", v);
		return 0;
	}
	if (!strcmp(key, "ocsp_signer")) {
		if (strcmp(v, "ca") && strcmp(v, "delegated"))
			return ca_error("ca or delegated");
		sc->signer_ca = !strcmp(v, "ca");
		return 0;
	}
	if (!strcmp(key, "ocsp_signer_key_type")) {
		if (!ca_key_type_known(v))
			return ca_error(CA_KEY_TYPES);
		snprintf(sc->signer_key_type, sizeof sc->signer_key_type, "%s", v);
		return 0;
	}
	if (!strcmp(key, "ocsp_validity_hours")) {
		if (uint_value(v, 1, 24 * 31, &hours))
			return -1;
		sc->validity_seconds = hours * 3600;
		return 0;
	}
	if (!strcmp(key, "ocsp_max_age"))
		return uint_value(v, 0, 31 * 86400, &sc->max_age);
	if (!strcmp(key, "ocsp_signer_renew_percent"))
		return uint_value(v, 1, 90, &sc->renew_percent);
	if (!strcmp(key, "max_connections"))
		return uint_value(v, 1, 100000, &sc->max_connections);
	if (!strcmp(key, "per_address_connections"))
		return uint_value(v, 1, 100000, &sc->per_address);
	if (!strcmp(key, "connection_timeout"))
		return uint_value(v, 1, 3600, &sc->timeout);
	if (!strcmp(key, "threads"))
		return uint_value(v, 1, 256, &sc->threads);
	if (!strcmp(key, "presign_batch"))
		return uint_value(v, 1, 100000, &sc->presign_batch);
	if (!strcmp(key, "crl_schedule")) {
		if (strcmp(v, "true") && strcmp(v, "false"))
			return ca_error("true or false");
		sc->crl_schedule = !strcmp(v, "true");
		return 0;
	}
	return ca_error("unknown key (listen, ocsp_signer, ocsp_signer_key_type, ocsp_validity_hours, ocsp_max_age, "
			"ocsp_signer_renew_percent, max_connections, per_address_connections, connection_timeout, "
			"threads, presign_batch, crl_schedule)");
}

struct conf_parse {
	struct serve_conf *sc;
	char error[512];
};

static int conf_handler(void *user, const char *section, const char *key, const char *value)
{
	struct conf_parse *p = user;

	if (p->error[0])
		return 1;
	if (strcmp(section, "serve"))
		snprintf(p->error, sizeof p->error, "unknown section [%.100s] (known: [serve])", section);
	else if (serve_conf_set(p->sc, key, value))
		snprintf(p->error, sizeof p->error, "%.60s = \"%.100s\": %.300s", key, value, ca_last_error());
	return 1;
}

int serve_conf_load(struct serve_conf *sc, const char *dir)
{
	char path[CA_PATH_MAX + 16];
	struct conf_parse p = {.sc = sc};
	FILE *f;
	int r;

	memset(sc, 0, sizeof *sc);
	snprintf(sc->listen, sizeof sc->listen, "127.0.0.1:8080");
	sc->validity_seconds = 24 * 3600;
	sc->max_age = 3600;
	sc->renew_percent = 30;
	sc->max_connections = 1024;
	sc->per_address = 64;
	sc->timeout = 10;
	sc->threads = 4;
	sc->presign_batch = 256;
	sc->crl_schedule = true;
	snprintf(path, sizeof path, "%s/serve.conf", dir);
	if (!(f = fopen(path, "re")))
		return errno == ENOENT ? 0 : ca_error("%s: %s", path, strerror(errno));
	r = ini_parse_file(f, conf_handler, &p);
	fclose(f);
	if (p.error[0])
		return ca_error("%s: %s", path, p.error);
	return r ? ca_error("%s: line %d: not INI syntax", path, r) : 0;
}

int serve_open_ca(const char *dir, struct ca **ca)
{
	/* the configuration, the database, the chain and the key; held open (and so locked shared) while serving */
	return ca_open(dir, CA_OPEN_CERT | CA_OPEN_KEY, ca);
}

/* ---- the server's state ---- */

enum endpoint { EP_OCSP, EP_CRL, EP_CA, EP_HEALTH, EP_METRICS, EP_OTHER, EP_N };
static const char *const endpoint_names[EP_N] = {"ocsp", "crl", "ca", "health", "metrics", "other"};
/* outcomes: ocsp.h's, then HTTP's */
enum { O_OK = OCSP_OUT_N, O_NOT_MODIFIED, O_BAD_REQUEST, O_NOT_FOUND, O_TOO_LARGE, O_METHOD, O_UNAVAILABLE, O_N };
static const char *const http_outcome_names[] = {"ok",	      "not_modified",	    "bad_request", "not_found",
						 "too_large", "method_not_allowed", "unavailable"};
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

struct centry {
	struct centry *next;
	char serial[OCSP_SERIAL_HEX_MAX];
	unsigned char *der;
	size_t len;
	time_t this_update, next_update;
	int outcome; /* good or revoked, for the counters */
	char etag[24];
};

struct pubfile {
	char path[CA_PATH_MAX + 300];
	const char *type;
	pthread_mutex_t lock;
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	off_t size;
	unsigned char *data; /* NULL: not there */
	size_t len;
	char etag[40];
};

struct server {
	struct serve_conf sc;
	struct ca *ca; /* maint's alone, but for the certificate and the CA key */
	struct ocsp_issuer issuer;
	char file[CA_NAME_MAX + 1];

	pthread_rwlock_t signer_lock; /* read: signing; write: a renewed signer put in */
	struct ocsp_signer signer;
	struct ca_batch_signer *batch; /* the signer's key through the module's batch interface, if it has one */
	struct signq {
		pthread_mutex_t mu;
		pthread_cond_t work, done;
		struct sign_job *head, **tail;
		bool stop, started;
		pthread_t tid;
	} q;		      /* answers to live requests, signed CA_SIGN_BATCH at a time (with batch) */
	EVP_PKEY *signer_pub; /* delegated: the key's public half; the certificate and key are owned here */
	bool signer_owned;

	pthread_mutex_t live_lock; /* the HTTP threads' database connection */
	struct ca_status_db *live;
	struct ca_status_db *pre; /* presign's */

	pthread_rwlock_t cache_lock;
	struct centry **buckets;
	size_t n_buckets, n_entries;
	atomic_ullong generation; /* bumped on every invalidation */

	struct pubfile files[3]; /* FILE.crl, FILE+.crl, FILE.crt */
	/* the path parts of url_base and legacy_url_bases ("/pki" of http://host/pki): stripped from requests */
	char prefixes[8][256];
	size_t n_prefixes;

	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
	bool stopping;

	pthread_mutex_t health_lock;
	time_t health_checked;
	bool hsm_ok;

	atomic_ullong requests[EP_N][O_N];
	atomic_ullong latency[N_BUCKETS + 1];
	atomic_ullong latency_us_sum;
	atomic_ullong cache_hits, cache_misses, hsm_errors, db_errors, presigned;
	atomic_llong backlog;
	atomic_llong cache_size;
};

/* Waits up to seconds for stop; true if stopping. */
static bool stop_wait(struct server *sv, double seconds)
{
	struct timespec until;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)seconds;
	until.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&sv->stop_lock);
	while (!sv->stopping && pthread_cond_timedwait(&sv->stop_cond, &sv->stop_lock, &until) == 0)
		;
	stop = sv->stopping;
	pthread_mutex_unlock(&sv->stop_lock);
	return stop;
}

static bool stopping(struct server *sv)
{
	bool stop;

	pthread_mutex_lock(&sv->stop_lock);
	stop = sv->stopping;
	pthread_mutex_unlock(&sv->stop_lock);
	return stop;
}

/* ---- the cache ---- */

static size_t hash_serial(const char *s)
{
	size_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static void etag_of(const unsigned char *der, size_t len, char *out, size_t size)
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(der, len, md);
	snprintf(out, size, "\"%02x%02x%02x%02x%02x%02x%02x%02x\"", md[0], md[1], md[2], md[3], md[4], md[5], md[6],
		 md[7]);
}

/* Puts an answer for serial in the cache; if generation is not ~0, only if nothing was invalidated since. */
static void cache_put(struct server *sv, const char *serial, int outcome, const unsigned char *der, size_t len,
		      time_t tu, time_t nu, unsigned long long generation)
{
	struct centry *e = calloc(1, sizeof *e), **slot;
	size_t b = hash_serial(serial) & (sv->n_buckets - 1);

	if (!e || !(e->der = malloc(len))) {
		free(e);
		return;
	}
	snprintf(e->serial, sizeof e->serial, "%s", serial);
	memcpy(e->der, der, len);
	e->len = len;
	e->this_update = tu;
	e->next_update = nu;
	e->outcome = outcome;
	etag_of(der, len, e->etag, sizeof e->etag);
	pthread_rwlock_wrlock(&sv->cache_lock);
	if (generation != ~0ULL && generation != atomic_load(&sv->generation)) {
		pthread_rwlock_unlock(&sv->cache_lock);
		free(e->der);
		free(e);
		return;
	}
	for (slot = &sv->buckets[b]; *slot && strcmp((*slot)->serial, serial); slot = &(*slot)->next)
		;
	if (*slot) {
		e->next = (*slot)->next;
		free((*slot)->der);
		free(*slot);
	} else {
		sv->n_entries++;
	}
	*slot = e;
	atomic_store(&sv->cache_size, (long long)sv->n_entries);
	pthread_rwlock_unlock(&sv->cache_lock);
}

static void cache_drop(struct server *sv, const char *serial)
{
	size_t b = hash_serial(serial) & (sv->n_buckets - 1);
	struct centry **slot, *e;

	pthread_rwlock_wrlock(&sv->cache_lock);
	atomic_fetch_add(&sv->generation, 1);
	for (slot = &sv->buckets[b]; *slot && strcmp((*slot)->serial, serial); slot = &(*slot)->next)
		;
	if ((e = *slot)) {
		*slot = e->next;
		free(e->der);
		free(e);
		sv->n_entries--;
		atomic_store(&sv->cache_size, (long long)sv->n_entries);
	}
	pthread_rwlock_unlock(&sv->cache_lock);
}

/* A copy of serial's cached answer if it is still current: 0, or -1 if none. */
static int cache_get(struct server *sv, const char *serial, time_t now, struct centry *out)
{
	size_t b = hash_serial(serial) & (sv->n_buckets - 1);
	struct centry *e;
	int rc = -1;

	pthread_rwlock_rdlock(&sv->cache_lock);
	for (e = sv->buckets[b]; e && strcmp(e->serial, serial); e = e->next)
		;
	if (e && e->next_update > now && (out->der = malloc(e->len))) {
		memcpy(out->der, e->der, e->len);
		out->len = e->len;
		out->this_update = e->this_update;
		out->next_update = e->next_update;
		out->outcome = e->outcome;
		memcpy(out->etag, e->etag, sizeof out->etag);
		rc = 0;
	}
	pthread_rwlock_unlock(&sv->cache_lock);
	return rc;
}

static void cache_free(struct server *sv)
{
	for (size_t i = 0; sv->buckets && i < sv->n_buckets; i++)
		while (sv->buckets[i]) {
			struct centry *e = sv->buckets[i];

			sv->buckets[i] = e->next;
			free(e->der);
			free(e);
		}
	free(sv->buckets);
}

/* ---- answering OCSP ---- */

struct lookup {
	struct server *sv;
	struct ca_status_db *db;
	pthread_mutex_t *lock; /* NULL: db is the caller's alone */
	bool failed;
};

static int lookup_status(void *arg, const char *serial, struct ocsp_status *st)
{
	struct lookup *l = arg;
	int rc;

	if (l->lock)
		pthread_mutex_lock(l->lock);
	rc = ca_status_get(l->db, serial, st);
	if (l->lock)
		pthread_mutex_unlock(l->lock);
	if (rc) {
		l->failed = true;
		atomic_fetch_add(&l->sv->db_errors, 1);
		kw_log_limited("serve.db", KW_LOG_ERROR, "keyward-ca serve: %s", ca_last_error());
	}
	return rc;
}

/*
 * The signing queue: an HTTP thread with an answer to sign (a nonce, or not
 * in the cache) puts its ResponseData here and waits; the queue's thread
 * signs what has gathered, up to CA_SIGN_BATCH, in one HSM round trip. So
 * round trips follow how many requests are in flight, not how many come.
 */
struct sign_job {
	struct ca_der tbs;
	const EVP_MD *md;
	unsigned char *sig;
	size_t sig_len;
	int rc;
	bool done;
	struct sign_job *next;
};

static void *signq_main(void *arg)
{
	struct server *sv = arg;
	struct signq *q = &sv->q;

	for (;;) {
		struct sign_job *jobs[CA_SIGN_BATCH];
		const unsigned char *data[CA_SIGN_BATCH];
		unsigned char *sigs[CA_SIGN_BATCH] = {NULL};
		size_t lens[CA_SIGN_BATCH], sig_lens[CA_SIGN_BATCH], n = 0;
		int rc;

		pthread_mutex_lock(&q->mu);
		while (!q->head && !q->stop)
			pthread_cond_wait(&q->work, &q->mu);
		if (!q->head) {
			pthread_mutex_unlock(&q->mu);
			return NULL;
		}
		/* one digest for the batch: the signer's (the same for every job) */
		while (q->head && n < CA_SIGN_BATCH && (n == 0 || q->head->md == jobs[0]->md)) {
			jobs[n] = q->head;
			q->head = q->head->next;
			n++;
		}
		if (!q->head)
			q->tail = &q->head;
		pthread_mutex_unlock(&q->mu);
		for (size_t i = 0; i < n; i++) {
			data[i] = jobs[i]->tbs.p;
			lens[i] = jobs[i]->tbs.len;
		}
		rc = ca_batch_sign_data(sv->batch, jobs[0]->md, data, lens, n, sigs, sig_lens);
		if (rc)
			kw_log_limited("serve.sign", KW_LOG_ERROR, "keyward-ca serve: signing: %s", ca_last_error());
		pthread_mutex_lock(&q->mu);
		for (size_t i = 0; i < n; i++) {
			jobs[i]->rc = rc;
			jobs[i]->sig = rc ? NULL : sigs[i];
			jobs[i]->sig_len = rc ? 0 : sig_lens[i];
			jobs[i]->done = true;
		}
		pthread_cond_broadcast(&q->done);
		pthread_mutex_unlock(&q->mu);
	}
}

/* job signed by the queue's thread: 0, or -1. */
static int signq_sign(struct server *sv, struct sign_job *job)
{
	struct signq *q = &sv->q;

	pthread_mutex_lock(&q->mu);
	job->next = NULL;
	*q->tail = job;
	q->tail = &job->next;
	pthread_cond_signal(&q->work);
	while (!job->done)
		pthread_cond_wait(&q->done, &q->mu);
	pthread_mutex_unlock(&q->mu);
	return job->rc;
}

/* An internalError answer in *der (OPENSSL_malloc'd). */
static int internal_answer(unsigned char **der, size_t *len, struct ocsp_result *res)
{
	const unsigned char *bytes;

	ocsp_error_bytes(OCSP_RESPONSE_STATUS_INTERNALERROR, &bytes, len);
	res->outcome = OCSP_OUT_INTERNAL;
	res->cacheable = false;
	return (*der = OPENSSL_memdup(bytes, *len)) ? 0 : -1;
}

/* The answer to req built here and signed through the queue (the signer's read lock held). */
static int queue_answer(struct server *sv, OCSP_REQUEST *req, struct lookup *l, unsigned char **der, size_t *len,
			struct ocsp_result *res)
{
	struct ocsp_presign p = {.is = &sv->issuer,
				 .signer_cert = sv->signer.cert,
				 .include_cert = sv->signer.include_cert,
				 .md = sv->signer.md,
				 .batch = sv->batch};
	struct sign_job job = {.md = sv->signer.md};
	struct ca_der alg = {0};
	OCSP_BASICRESP *bs = NULL;
	unsigned char *out = NULL;
	size_t out_len = 0;
	time_t now = time(NULL);
	int rc =
		ocsp_answer_build(&sv->issuer, req, lookup_status, l, now, sv->sc.validity_seconds, &bs, der, len, res);

	if (rc || !bs)
		return rc; /* an error answer (or none) */
	if (ocsp_der_tbs(&p, bs, now, &job.tbs) || signq_sign(sv, &job) || ca_batch_algorithm(sv->batch, p.md, &alg) ||
	    ocsp_der_response(&p, &job.tbs, &alg, job.sig, job.sig_len, &out, &out_len) ||
	    !(*der = OPENSSL_memdup(out, out_len))) {
		rc = internal_answer(der, len, res);
	} else {
		*len = out_len;
	}
	OCSP_BASICRESP_free(bs);
	ca_der_free(&job.tbs);
	ca_der_free(&alg);
	free(job.sig);
	free(out);
	return rc;
}

/* The answer to req, signed (through the queue when the HSM batches), under the signer's read lock. */
static int sign_answer(struct server *sv, OCSP_REQUEST *req, struct lookup *l, unsigned char **der, size_t *len,
		       struct ocsp_result *res)
{
	int rc;

	pthread_rwlock_rdlock(&sv->signer_lock);
	if (sv->batch && sv->q.started)
		rc = queue_answer(sv, req, l, der, len, res);
	else
		rc = ocsp_answer(&sv->issuer, &sv->signer, req, lookup_status, l, time(NULL), sv->sc.validity_seconds,
				 der, len, res);
	pthread_rwlock_unlock(&sv->signer_lock);
	if (!rc && res->outcome == OCSP_OUT_INTERNAL && !l->failed) {
		atomic_fetch_add(&sv->hsm_errors, 1);
		kw_log_limited("serve.sign", KW_LOG_ERROR, "keyward-ca serve: the OCSP signer's key did not sign");
	}
	return rc;
}

/* Signs serial's answer for the cache (presign's thread, its own database connection). */
static int presign_one(struct server *sv, const char *serial)
{
	OCSP_REQUEST *req = ocsp_request_for_serial(&sv->issuer, serial);
	struct lookup l = {.sv = sv, .db = sv->pre};
	struct ocsp_result res;
	unsigned char *der = NULL;
	size_t len = 0;

	if (!req)
		return -1;
	if (!sign_answer(sv, req, &l, &der, &len, &res) &&
	    (res.outcome == OCSP_OUT_GOOD || res.outcome == OCSP_OUT_REVOKED)) {
		cache_put(sv, serial, res.outcome, der, len, res.this_update, res.next_update, ~0ULL);
		atomic_fetch_add(&sv->presigned, 1);
	}
	OPENSSL_free(der);
	OCSP_REQUEST_free(req);
	return 0;
}

struct serials {
	char (*v)[OCSP_SERIAL_HEX_MAX];
	size_t n, cap;
};

static int serials_add(void *arg, const char *serial)
{
	struct serials *s = arg;

	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 1024;
		void *v = realloc(s->v, cap * sizeof *s->v);

		if (!v)
			return ca_error("out of memory");
		s->v = v;
		s->cap = cap;
	}
	snprintf(s->v[s->n++], OCSP_SERIAL_HEX_MAX, "%s", serial);
	return 0;
}

struct changed {
	struct server *sv;
	struct serials list;
};

static int on_change(void *arg, const char *serial)
{
	struct changed *c = arg;

	cache_drop(c->sv, serial); /* at once: until signed again, the database answers */
	return serials_add(&c->list, serial);
}

/* Signs the answers in list, counting them down in the backlog; stops early when stopping. */
/*
 * The answers of list[from, from + n) signed in one HSM round trip
 * (ocspder.c), those the CA knows (good or revoked) put in the cache.
 */
static void presign_batch(struct server *sv, const struct serials *list, size_t from, size_t n)
{
	struct ocsp_presign_item items[CA_SIGN_BATCH];
	struct lookup l = {.sv = sv, .db = sv->pre};
	time_t now = time(NULL);
	size_t k = 0;
	int rc;

	for (size_t i = from; i < from + n; i++) {
		memset(&items[k], 0, sizeof items[k]);
		snprintf(items[k].serial, sizeof items[k].serial, "%s", list->v[i]);
		if (lookup_status(&l, items[k].serial, &items[k].status) == 0 &&
		    items[k].status.status != V_OCSP_CERTSTATUS_UNKNOWN)
			k++;
	}
	if (!k)
		return;
	pthread_rwlock_rdlock(&sv->signer_lock);
	{
		struct ocsp_presign p = {.is = &sv->issuer,
					 .signer_cert = sv->signer.cert,
					 .include_cert = sv->signer.include_cert,
					 .md = sv->signer.md,
					 .batch = sv->batch};

		rc = ocsp_presign_batch(&p, items, k, now, sv->sc.validity_seconds);
	}
	pthread_rwlock_unlock(&sv->signer_lock);
	if (rc) {
		atomic_fetch_add(&sv->hsm_errors, 1);
		kw_log_limited("serve.sign", KW_LOG_ERROR, "keyward-ca serve: pre-signing: %s", ca_last_error());
		return;
	}
	for (size_t i = 0; i < k; i++) {
		cache_put(sv, items[i].serial,
			  items[i].status.status == V_OCSP_CERTSTATUS_REVOKED ? OCSP_OUT_REVOKED : OCSP_OUT_GOOD,
			  items[i].der, items[i].len, now, now + (time_t)sv->sc.validity_seconds, ~0ULL);
		atomic_fetch_add(&sv->presigned, 1);
		free(items[i].der);
	}
}

static void presign_list(struct server *sv, const struct serials *list)
{
	atomic_fetch_add(&sv->backlog, (long long)list->n);
	if (sv->batch) {
		for (size_t i = 0; i < list->n; i += CA_SIGN_BATCH) {
			size_t n = list->n - i < CA_SIGN_BATCH ? list->n - i : CA_SIGN_BATCH;

			if (stopping(sv)) {
				atomic_fetch_sub(&sv->backlog, (long long)(list->n - i));
				return;
			}
			presign_batch(sv, list, i, n);
			atomic_fetch_sub(&sv->backlog, (long long)n);
		}
		return;
	}
	for (size_t i = 0; i < list->n; i++) {
		if (i % sv->sc.presign_batch == 0 && stopping(sv)) {
			atomic_fetch_sub(&sv->backlog, (long long)(list->n - i));
			return;
		}
		presign_one(sv, list->v[i]);
		atomic_fetch_sub(&sv->backlog, 1);
	}
}

/* The serials whose cached answers are past half their validity. */
static void stale_entries(struct server *sv, time_t now, struct serials *out)
{
	pthread_rwlock_rdlock(&sv->cache_lock);
	for (size_t i = 0; i < sv->n_buckets; i++)
		for (struct centry *e = sv->buckets[i]; e; e = e->next)
			if (now - e->this_update >= (time_t)sv->sc.validity_seconds / 2 && serials_add(out, e->serial))
				goto out;
out:
	pthread_rwlock_unlock(&sv->cache_lock);
}

static void *presign_main(void *arg)
{
	struct server *sv = arg;
	struct ca_status_mark mark = {0};
	struct serials all = {0};
	long long version = 0, v;

	/* where the database is before the walk: whatever changes during it is seen after */
	if (ca_status_version(sv->pre, &version) || ca_status_mark(sv->pre, &mark) ||
	    ca_status_each(sv->pre, time(NULL), serials_add, &all))
		kw_log(KW_LOG_ERROR, "keyward-ca serve: pre-signing: %s", ca_last_error());
	presign_list(sv, &all);
	free(all.v);
	kw_log(KW_LOG_INFO, "keyward-ca serve: %lld OCSP answers pre-signed", (long long)atomic_load(&sv->cache_size));
	while (!stop_wait(sv, 0.5)) {
		struct changed c = {.sv = sv};
		struct serials stale = {0};

		if (ca_status_version(sv->pre, &v)) {
			atomic_fetch_add(&sv->db_errors, 1);
			continue;
		}
		if (v != version) {
			if (ca_status_changes(sv->pre, &mark, on_change, &c) == 0)
				version = v;
			else
				atomic_fetch_add(&sv->db_errors, 1);
			presign_list(sv, &c.list);
			free(c.list.v);
		}
		stale_entries(sv, time(NULL), &stale);
		presign_list(sv, &stale);
		free(stale.v);
	}
	return NULL;
}

/* ---- the delegated signer ---- */

/*
 * A certificate for the signer's key (priv, in the HSM) from the
 * OCSPSigning template, issued through the CA's one issuance path: a
 * request signed by that key, checked and recorded as any other; NULL
 * with the reason.
 */
static X509 *issue_signer(struct server *sv, EVP_PKEY *priv, EVP_PKEY *pub)
{
	const struct ca_template *t = ca_template_named(sv->ca, "OCSPSigning");
	X509_REQ *csr = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	struct ca_key_decoder *d = ca_key_decoder_new();
	struct ca_request *req = NULL;
	struct ca_issued issued = {0};
	unsigned char *der = NULL;
	const unsigned char *p;
	char cn[96];
	int len;
	X509 *ret = NULL;

	snprintf(cn, sizeof cn, "%.48s OCSP Responder", sv->ca->conf.name);
	if (!t || !d)
		goto out;
	if (!csr || !name ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_REQ_set_subject_name(csr, name) || !X509_REQ_set_pubkey(csr, pub) ||
	    X509_REQ_sign(csr, priv, ca_md(&sv->ca->conf)) <= 0 || (len = i2d_X509_REQ(csr, &der)) <= 0) {
		ca_error("cannot make the OCSP signer's request");
		goto out;
	}
	if (!(req = ca_request_parse(der, (size_t)len, d)) || ca_issue(sv->ca, t, req, &issued))
		goto out;
	p = issued.der;
	if (!(ret = d2i_X509(NULL, &p, (long)issued.der_len)))
		ca_error("cannot read back the OCSP signer's certificate %s", issued.serial);
	else
		kw_log(KW_LOG_INFO, "keyward-ca serve: issued OCSP signing certificate %s", issued.serial);
out:
	ERR_clear_error();
	ca_issued_free(&issued);
	ca_request_free(req);
	ca_key_decoder_free(d);
	OPENSSL_free(der);
	X509_NAME_free(name);
	X509_REQ_free(csr);
	return ret;
}

/*
 * The delegated signer's key "ocsp-FILE" made on the CA's token if it is
 * not there, before the CA opens the token for itself: a module that
 * libp11 has initialized cannot be initialized again for key generation.
 */
static int signer_key_prepare(const char *dir, const struct serve_conf *sc)
{
	struct ca_conf *c = calloc(1, sizeof *c);
	struct ca_token *t = NULL;
	EVP_PKEY *priv = NULL, *pub = NULL;
	char file[CA_NAME_MAX + 1], label[CA_NAME_MAX + 8];
	const char *type = sc->signer_key_type;
	int rc = -1;

	if (!c)
		return ca_error("out of memory");
	if (ca_conf_load(c, dir) || ca_token_open(c, &t))
		goto out;
	if (!strncmp(c->key, "pkcs11:", 7)) {
		ca_error("ocsp_signer = delegated needs the CA key named by a label, not a pkcs11: URI; "
			 "set ocsp_signer = ca in serve.conf");
		goto out;
	}
	ca_file_name(c->name, file, sizeof file);
	snprintf(label, sizeof label, "ocsp-%s", file);
	if (ca_token_key(t, label, &priv, &pub) == 0) {
		rc = 0;
		goto out;
	}
	if (!type[0]) {
		/* the CA key's kind */
		if (ca_token_key(t, c->key, &priv, &pub))
			goto out;
		type = EVP_PKEY_is_a(pub, "RSA") ? "RSA-3072" : "EC-P256";
	}
	ca_token_close(t);
	t = NULL;
	kw_log(KW_LOG_INFO, "keyward-ca serve: making the OCSP signing key \"%s\" (%s) on the token", label, type);
	rc = ca_token_generate(c, type, label);
out:
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	ca_token_close(t);
	free(c);
	return rc;
}

/*
 * signer_key_prepare in a child process: the module is loaded, finalized
 * and loaded again there, never in this process (a module need not
 * survive being initialized twice).
 */
static int signer_key_prepare_apart(const char *dir, const struct serve_conf *sc)
{
	pid_t pid;
	int status = 0;

	fflush(NULL);
	if ((pid = fork()) < 0)
		return ca_error("fork: %s", strerror(errno));
	if (pid == 0) {
		int rc = signer_key_prepare(dir, sc);

		if (rc)
			fprintf(stderr, "keyward-ca: serve: %s\n", ca_last_error());
		fflush(NULL);
		_exit(rc ? 1 : 0);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return ca_error("the OCSP signing key could not be found or made on the token (above: why)");
	return 0;
}

/* Whether x is the CA's, for pub, and has more than renew_percent of its life left at now. */
static bool signer_usable(struct server *sv, X509 *x, EVP_PKEY *pub, time_t now)
{
	struct tm a, b;
	time_t nb, na;

	if (!x || !pub || X509_verify(x, X509_get0_pubkey(ca_certificate(sv->ca))) != 1 ||
	    EVP_PKEY_eq(X509_get0_pubkey(x), pub) != 1 || !ASN1_TIME_to_tm(X509_get0_notBefore(x), &a) ||
	    !ASN1_TIME_to_tm(X509_get0_notAfter(x), &b)) {
		ERR_clear_error();
		return false;
	}
	nb = timegm(&a);
	na = timegm(&b);
	return na > now && (double)(na - now) * 100.0 > (double)sv->sc.renew_percent * (double)(na - nb);
}

/*
 * The delegated signer in place: its key "ocsp-FILE" on the CA's token
 * (made there if missing), its certificate ocsp-signer.crt in the CA
 * directory, issued again when missing, foreign or near its end.
 */
static int signer_delegated(struct server *sv)
{
	char label[CA_NAME_MAX + 8], path[CA_PATH_MAX + 32];
	EVP_PKEY *priv = NULL, *pub = NULL;
	STACK_OF(X509) *certs = NULL;
	X509 *x = NULL;
	unsigned char *der = NULL;
	int len, rc = -1;
	snprintf(label, sizeof label, "ocsp-%s", sv->file);
	ca_path(&sv->ca->conf, "ocsp-signer.crt", path, sizeof path);
	if (ca_token_key(sv->ca->token, label, &priv, &pub))
		return -1;
	if ((certs = ca_read_certs(path)) && sk_X509_num(certs) > 0 &&
	    signer_usable(sv, sk_X509_value(certs, 0), pub, time(NULL))) {
		x = X509_dup(sk_X509_value(certs, 0));
	} else {
		if (!(x = issue_signer(sv, priv, pub)))
			goto out;
		if ((len = i2d_X509(x, &der)) <= 0) {
			ca_error("cannot encode the OCSP signer's certificate");
			goto out;
		}
		{
			BIO *b = BIO_new(BIO_s_mem());
			BUF_MEM *m = NULL;

			if (!b || !PEM_write_bio_X509(b, x) || !BIO_get_mem_ptr(b, &m) ||
			    ca_write_atomic(path, m->data, m->length, 0644)) {
				BIO_free(b);
				ca_error("cannot write %s", path);
				goto out;
			}
			BIO_free(b);
		}
	}
	if (!x)
		goto out;
	pthread_rwlock_wrlock(&sv->signer_lock);
	if (sv->signer_owned) {
		X509_free(sv->signer.cert);
		EVP_PKEY_free(sv->signer.key);
		EVP_PKEY_free(sv->signer_pub);
	}
	sv->signer = (struct ocsp_signer){.cert = x, .key = priv, .md = ca_md(&sv->ca->conf), .include_cert = true};
	sv->signer_pub = pub;
	sv->signer_owned = true;
	pthread_rwlock_unlock(&sv->signer_lock);
	x = NULL;
	priv = pub = NULL;
	rc = 0;
out:
	ERR_clear_error();
	OPENSSL_free(der);
	X509_free(x);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

static bool signer_due(struct server *sv)
{
	bool due;

	pthread_rwlock_rdlock(&sv->signer_lock);
	due = !signer_usable(sv, sv->signer.cert, sv->signer_pub, time(NULL));
	pthread_rwlock_unlock(&sv->signer_lock);
	return due;
}

/* ---- CRLs on schedule, the signer renewed ---- */

static bool file_age(const char *path, time_t *mtime)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return false;
	*mtime = st.st_mtime;
	return true;
}

static void crl_tick(struct server *sv)
{
	const struct ca_conf *c = &sv->ca->conf;
	time_t now = time(NULL), full = 0, delta = 0;
	bool have_full = file_age(sv->files[0].path, &full), have_delta = file_age(sv->files[1].path, &delta);
	long long number;

	if (!have_full || now - full >= (time_t)c->crl_period_hours * 3600) {
		if (ca_crl_publish(sv->ca, false, &number)) {
			kw_log_limited("serve.crl", KW_LOG_ERROR, "keyward-ca serve: full CRL: %s", ca_last_error());
			return;
		}
		kw_log(KW_LOG_INFO, "keyward-ca serve: published full CRL number %lld", number);
		have_delta = false; /* a delta on the new base follows it */
	}
	if (c->delta_crl_period_hours && (!have_delta || now - delta >= (time_t)c->delta_crl_period_hours * 3600)) {
		if (ca_crl_publish(sv->ca, true, &number))
			kw_log_limited("serve.crl", KW_LOG_ERROR, "keyward-ca serve: delta CRL: %s", ca_last_error());
		else
			kw_log(KW_LOG_INFO, "keyward-ca serve: published delta CRL number %lld", number);
	}
}

static void *maint_main(void *arg)
{
	struct server *sv = arg;

	do {
		if (sv->sc.crl_schedule)
			crl_tick(sv);
		if (sv->signer_owned && signer_due(sv) && signer_delegated(sv))
			kw_log_limited("serve.signer", KW_LOG_ERROR, "keyward-ca serve: renewing the OCSP signer: %s",
				       ca_last_error());
	} while (!stop_wait(sv, 30));
	return NULL;
}

/* ---- publish/ files ---- */

/* A copy of f's bytes as they are now on disk (re-read when the file changed): 0, or -1 if it is not there. */
static int pubfile_get(struct pubfile *f, unsigned char **data, size_t *len, time_t *mtime, char *etag, size_t esize)
{
	struct stat st;
	int rc = -1;

	pthread_mutex_lock(&f->lock);
	if (stat(f->path, &st) != 0) {
		free(f->data);
		f->data = NULL;
	} else if (!f->data || st.st_dev != f->dev || st.st_ino != f->ino || st.st_size != f->size ||
		   st.st_mtim.tv_sec != f->mtime.tv_sec || st.st_mtim.tv_nsec != f->mtime.tv_nsec) {
		size_t n = 0;
		char *bytes = ca_read_file(f->path, 256u << 20, &n);

		free(f->data);
		f->data = (unsigned char *)bytes;
		f->len = n;
		f->dev = st.st_dev;
		f->ino = st.st_ino;
		f->size = st.st_size;
		f->mtime = st.st_mtim;
		if (bytes)
			etag_of(f->data, f->len, f->etag, sizeof f->etag);
	}
	if (f->data && (*data = malloc(f->len ? f->len : 1))) {
		memcpy(*data, f->data, f->len);
		*len = f->len;
		*mtime = f->mtime.tv_sec;
		snprintf(etag, esize, "%s", f->etag);
		rc = 0;
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/* ---- HTTP ---- */

struct rctx {
	struct timespec start;
	enum endpoint ep;
	int outcome;
	unsigned char *body;
	size_t len;
	bool too_big;
};

static void http_date(time_t t, char *out, size_t size)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static enum MHD_Result reply(struct MHD_Connection *c, struct rctx *r, unsigned status, int outcome, const char *type,
			     const void *body, size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	r->outcome = outcome;
	if (!resp)
		return MHD_NO;
	if (type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, struct rctx *r, unsigned status, int outcome,
				  const char *text)
{
	return reply(c, r, status, outcome, "text/plain; charset=utf-8", text, strlen(text));
}

/* A body with validators: 304 if the client's If-None-Match names etag. */
static enum MHD_Result reply_cached(struct MHD_Connection *c, struct rctx *r, int outcome, const char *type,
				    const unsigned char *body, size_t len, const char *etag, time_t modified,
				    time_t expires, unsigned max_age)
{
	const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	bool same = inm && etag[0] && !strcmp(inm, etag);
	struct MHD_Response *resp = same ? MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT)
					 : MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	char date[64], cc[96];
	enum MHD_Result ret;

	r->outcome = same ? O_NOT_MODIFIED : outcome;
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (etag[0])
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
	http_date(modified, date, sizeof date);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, date);
	if (expires) {
		http_date(expires, date, sizeof date);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_EXPIRES, date);
	}
	snprintf(cc, sizeof cc, "max-age=%u, public, no-transform, must-revalidate", max_age);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cc);
	ret = MHD_queue_response(c, same ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result handle_ocsp(struct server *sv, struct MHD_Connection *c, struct rctx *r,
				   const unsigned char *der, size_t len)
{
	OCSP_REQUEST *req = ocsp_request_decode(der, len);
	struct lookup l = {.sv = sv, .db = sv->live, .lock = &sv->live_lock};
	char serial[OCSP_SERIAL_HEX_MAX];
	time_t now = time(NULL);
	struct centry hit = {0};
	struct ocsp_result res;
	unsigned char *out = NULL;
	size_t out_len = 0;
	unsigned long long generation;
	enum MHD_Result ret;
	bool cacheable = ocsp_request_cache_key(&sv->issuer, req, serial, sizeof serial);

	if (cacheable && cache_get(sv, serial, now, &hit) == 0) {
		time_t left = hit.next_update - now;
		unsigned age = left < (time_t)sv->sc.max_age ? (unsigned)left : sv->sc.max_age;

		atomic_fetch_add(&sv->cache_hits, 1);
		OCSP_REQUEST_free(req);
		ret = reply_cached(c, r, hit.outcome, "application/ocsp-response", hit.der, hit.len, hit.etag,
				   hit.this_update, hit.next_update, age);
		free(hit.der);
		return ret;
	}
	if (cacheable)
		atomic_fetch_add(&sv->cache_misses, 1);
	generation = atomic_load(&sv->generation);
	if (sign_answer(sv, req, &l, &out, &out_len, &res)) {
		OCSP_REQUEST_free(req);
		return reply_text(c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, OCSP_OUT_INTERNAL, "out of memory\n");
	}
	OCSP_REQUEST_free(req);
	if (res.cacheable && (res.outcome == OCSP_OUT_GOOD || res.outcome == OCSP_OUT_REVOKED)) {
		time_t left = res.next_update - now;
		unsigned age = left < (time_t)sv->sc.max_age ? (unsigned)left : sv->sc.max_age;
		char etag[24];

		cache_put(sv, res.serial, res.outcome, out, out_len, res.this_update, res.next_update, generation);
		etag_of(out, out_len, etag, sizeof etag);
		ret = reply_cached(c, r, res.outcome, "application/ocsp-response", out, out_len, etag, res.this_update,
				   res.next_update, age);
	} else {
		/* error answers and answers with a nonce: status 200 (RFC 6960 A.1), never cached */
		ret = reply(c, r, MHD_HTTP_OK, res.outcome, "application/ocsp-response", out, out_len);
	}
	OPENSSL_free(out);
	return ret;
}

static enum MHD_Result handle_file(struct server *sv, struct MHD_Connection *c, struct rctx *r, struct pubfile *f)
{
	unsigned char *data = NULL;
	size_t len = 0;
	time_t mtime = 0;
	char etag[40] = "";
	enum MHD_Result ret;

	if (pubfile_get(f, &data, &len, &mtime, etag, sizeof etag))
		return reply_text(c, r, MHD_HTTP_NOT_FOUND, O_NOT_FOUND, "not published yet\n");
	(void)sv;
	ret = reply_cached(c, r, O_OK, f->type, data, len, etag, mtime, 0, 300);
	free(data);
	return ret;
}

static bool hsm_answers(struct server *sv)
{
	time_t now = time(NULL);
	bool ok;

	pthread_mutex_lock(&sv->health_lock);
	if (now - sv->health_checked >= 5) {
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		unsigned char sig[1024];
		size_t n = sizeof sig;

		pthread_rwlock_rdlock(&sv->signer_lock);
		sv->hsm_ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, sv->signer.key) == 1 &&
			     EVP_DigestSign(ctx, sig, &n, (const unsigned char *)"health", 6) == 1;
		pthread_rwlock_unlock(&sv->signer_lock);
		EVP_MD_CTX_free(ctx);
		ERR_clear_error();
		if (!sv->hsm_ok)
			atomic_fetch_add(&sv->hsm_errors, 1);
		sv->health_checked = now;
	}
	ok = sv->hsm_ok;
	pthread_mutex_unlock(&sv->health_lock);
	return ok;
}

static enum MHD_Result handle_health(struct server *sv, struct MHD_Connection *c, struct rctx *r)
{
	char body[512];
	bool db_ok, hsm_ok;

	pthread_mutex_lock(&sv->live_lock);
	db_ok = ca_status_ping(sv->live) == 0;
	pthread_mutex_unlock(&sv->live_lock);
	hsm_ok = hsm_answers(sv);
	snprintf(body, sizeof body,
		 "{\"status\": \"%s\", \"database\": \"%s\", \"hsm\": \"%s\", \"cached\": %lld, \"backlog\": %lld}\n",
		 db_ok && hsm_ok ? "ok" : "unavailable", db_ok ? "ok" : "failing", hsm_ok ? "ok" : "failing",
		 (long long)atomic_load(&sv->cache_size), (long long)atomic_load(&sv->backlog));
	return reply(c, r, db_ok && hsm_ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
		     db_ok && hsm_ok ? O_OK : O_UNAVAILABLE, "application/json", body, strlen(body));
}

static const char *outcome_name(int o)
{
	return o < OCSP_OUT_N ? ocsp_outcome_name((enum ocsp_outcome)o) : http_outcome_names[o - OCSP_OUT_N];
}

static enum MHD_Result handle_metrics(struct server *sv, struct MHD_Connection *c, struct rctx *r)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	unsigned long long cumulative = 0;
	enum MHD_Result ret;

	if (!f)
		return reply_text(c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, O_UNAVAILABLE, "out of memory\n");
	fputs("# HELP keyward_ca_http_requests_total HTTP requests by endpoint and outcome.\n"
	      "# TYPE keyward_ca_http_requests_total counter\n",
	      f);
	for (int e = 0; e < EP_N; e++)
		for (int o = 0; o < O_N; o++) {
			unsigned long long n = atomic_load(&sv->requests[e][o]);

			if (n || (e == EP_OCSP && o < OCSP_OUT_N))
				fprintf(f, "keyward_ca_http_requests_total{endpoint=\"%s\",outcome=\"%s\"} %llu\n",
					endpoint_names[e], outcome_name(o), n);
		}
	fputs("# HELP keyward_ca_http_request_duration_seconds Time from a request's arrival to its answer.\n"
	      "# TYPE keyward_ca_http_request_duration_seconds histogram\n",
	      f);
	for (size_t i = 0; i <= N_BUCKETS; i++) {
		cumulative += atomic_load(&sv->latency[i]);
		if (i < N_BUCKETS)
			fprintf(f, "keyward_ca_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n", buckets[i],
				cumulative);
		else
			fprintf(f, "keyward_ca_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cumulative);
	}
	fprintf(f,
		"keyward_ca_http_request_duration_seconds_sum %.6f\n"
		"keyward_ca_http_request_duration_seconds_count %llu\n"
		"# HELP keyward_ca_ocsp_cache_hits_total OCSP requests answered from the pre-signed cache.\n"
		"# TYPE keyward_ca_ocsp_cache_hits_total counter\n"
		"keyward_ca_ocsp_cache_hits_total %llu\n"
		"# HELP keyward_ca_ocsp_cache_misses_total Cacheable OCSP requests signed on arrival.\n"
		"# TYPE keyward_ca_ocsp_cache_misses_total counter\n"
		"keyward_ca_ocsp_cache_misses_total %llu\n"
		"# HELP keyward_ca_ocsp_cache_entries Pre-signed OCSP answers held.\n"
		"# TYPE keyward_ca_ocsp_cache_entries gauge\n"
		"keyward_ca_ocsp_cache_entries %lld\n"
		"# HELP keyward_ca_ocsp_presigned_total OCSP answers signed for the cache.\n"
		"# TYPE keyward_ca_ocsp_presigned_total counter\n"
		"keyward_ca_ocsp_presigned_total %llu\n"
		"# HELP keyward_ca_ocsp_presign_backlog Answers waiting to be pre-signed.\n"
		"# TYPE keyward_ca_ocsp_presign_backlog gauge\n"
		"keyward_ca_ocsp_presign_backlog %lld\n"
		"# HELP keyward_ca_hsm_errors_total Signatures the HSM did not make.\n"
		"# TYPE keyward_ca_hsm_errors_total counter\n"
		"keyward_ca_hsm_errors_total %llu\n"
		"# HELP keyward_ca_db_errors_total Database reads that failed.\n"
		"# TYPE keyward_ca_db_errors_total counter\n"
		"keyward_ca_db_errors_total %llu\n",
		(double)atomic_load(&sv->latency_us_sum) / 1e6, cumulative, atomic_load(&sv->cache_hits),
		atomic_load(&sv->cache_misses), (long long)atomic_load(&sv->cache_size), atomic_load(&sv->presigned),
		(long long)atomic_load(&sv->backlog), atomic_load(&sv->hsm_errors), atomic_load(&sv->db_errors));
	if (fclose(f) != 0) {
		free(text);
		return reply_text(c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, O_UNAVAILABLE, "out of memory\n");
	}
	ret = reply(c, r, MHD_HTTP_OK, O_OK, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
	return ret;
}

/* Notes the path part of a URL base (http://host/path), if it has one, as a prefix requests may carry. */
static void add_prefix(struct server *sv, const char *base, size_t len)
{
	const char *host = memmem(base, len, "://", 3), *path;

	if (!host || sv->n_prefixes == sizeof sv->prefixes / sizeof sv->prefixes[0])
		return;
	host += 3;
	path = memchr(host, '/', len - (size_t)(host - base));
	if (!path || (size_t)(base + len - path) <= 1 || (size_t)(base + len - path) >= sizeof sv->prefixes[0])
		return;
	snprintf(sv->prefixes[sv->n_prefixes++], sizeof sv->prefixes[0], "%.*s", (int)(base + len - path), path);
}

/*
 * The URL bases whose paths this responder answers: the CA's url_base and
 * every legacy base (certificates issued before a move keep pointing
 * there), so /pki/crl/X.crl is served as /crl/X.crl.
 */
static void url_prefixes(struct server *sv)
{
	char base[300];
	const char *p = sv->ca->conf.legacy_url_bases;

	ca_url_base(&sv->ca->conf, base, sizeof base);
	add_prefix(sv, base, strlen(base));
	while (*p) {
		size_t n = strcspn(p, " ");

		if (n)
			add_prefix(sv, p, n);
		p += n;
		p += strspn(p, " ");
	}
}

/* url with the first URL base prefix it starts with taken off. */
static const char *strip_prefix(const struct server *sv, const char *url)
{
	for (size_t i = 0; i < sv->n_prefixes; i++) {
		size_t n = strlen(sv->prefixes[i]);

		if (!strncmp(url, sv->prefixes[i], n) && url[n] == '/')
			return url + n;
	}
	return url;
}

/* Which publish/ file path names, if any. */
static struct pubfile *pubfile_for(struct server *sv, const char *path, enum endpoint *ep)
{
	char want[CA_NAME_MAX + 16];

	snprintf(want, sizeof want, "/crl/%s.crl", sv->file);
	if (!strcmp(path, want))
		return *ep = EP_CRL, &sv->files[0];
	snprintf(want, sizeof want, "/crl/%s+.crl", sv->file);
	if (!strcmp(path, want))
		return *ep = EP_CRL, &sv->files[1];
	snprintf(want, sizeof want, "/ca/%s.crt", sv->file);
	if (!strcmp(path, want))
		return *ep = EP_CA, &sv->files[2];
	return NULL;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			      const char *version, const char *upload, size_t *upload_size, void **ctx)
{
	struct server *sv = cls;
	struct rctx *r = *ctx;
	bool get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
	bool post = !strcmp(method, MHD_HTTP_METHOD_POST);
	struct pubfile *f = NULL;

	(void)version;
	url = strip_prefix(sv, url);
	if (!r) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

		if (!(r = calloc(1, sizeof *r)))
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &r->start);
		r->ep = EP_OTHER;
		r->outcome = O_BAD_REQUEST;
		*ctx = r;
		if (cl && strtoull(cl, NULL, 10) > SERVE_BODY_MAX) {
			r->ep = !strncmp(url, "/ocsp", 5) || !strcmp(url, "/") ? EP_OCSP : EP_OTHER;
			return reply_text(c, r, MHD_HTTP_CONTENT_TOO_LARGE, O_TOO_LARGE, "request body too large\n");
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (!r->too_big && r->len + *upload_size <= SERVE_BODY_MAX) {
			unsigned char *b = realloc(r->body, r->len + *upload_size);

			if (!b)
				return MHD_NO;
			memcpy(b + r->len, upload, *upload_size);
			r->body = b;
			r->len += *upload_size;
		} else {
			r->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (!strcmp(url, "/ocsp") || !strcmp(url, "/") || !strncmp(url, "/ocsp/", 6)) {
		r->ep = EP_OCSP;
		if (r->too_big)
			return reply_text(c, r, MHD_HTTP_CONTENT_TOO_LARGE, O_TOO_LARGE, "request body too large\n");
		if (post && url[5] != '/')
			return handle_ocsp(sv, c, r, r->body, r->len);
		if (get && !strncmp(url, "/ocsp/", 6)) {
			unsigned char *der = malloc(OCSP_REQUEST_MAX);
			long n;
			enum MHD_Result ret;

			if (!der)
				return MHD_NO;
			n = ocsp_base64_decode(url + 6, strlen(url + 6), der, OCSP_REQUEST_MAX);
			ret = handle_ocsp(sv, c, r, der, n > 0 ? (size_t)n : 0);
			free(der);
			return ret;
		}
		if (get && !strcmp(url, "/")) {
			r->ep = EP_OTHER;
			return reply_text(c, r, MHD_HTTP_OK, O_OK,
					  "keyward-ca: OCSP at /ocsp, CRLs at /crl/, the CA certificate at /ca/\n");
		}
		return reply_text(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, O_METHOD,
				  "OCSP: POST application/ocsp-request to /ocsp, or GET /ocsp/BASE64\n");
	}
	if (!strcmp(url, "/health") || !strcmp(url, "/metrics") || (f = pubfile_for(sv, url, &r->ep))) {
		if (url[1] == 'h')
			r->ep = EP_HEALTH;
		else if (url[1] == 'm')
			r->ep = EP_METRICS;
		if (!get)
			return reply_text(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, O_METHOD, "GET only\n");
		if (r->ep == EP_HEALTH)
			return handle_health(sv, c, r);
		if (r->ep == EP_METRICS)
			return handle_metrics(sv, c, r);
		return handle_file(sv, c, r, f);
	}
	return reply_text(c, r, MHD_HTTP_NOT_FOUND, O_NOT_FOUND, "not found\n");
}

static void completed(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe)
{
	struct server *sv = cls;
	struct rctx *r = *ctx;
	struct timespec now;
	double s;
	size_t i;

	(void)c;
	(void)toe;
	if (!r)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	s = (double)(now.tv_sec - r->start.tv_sec) + (double)(now.tv_nsec - r->start.tv_nsec) / 1e9;
	for (i = 0; i < N_BUCKETS && s > buckets[i]; i++)
		;
	atomic_fetch_add(&sv->latency[i], 1);
	atomic_fetch_add(&sv->latency_us_sum, (unsigned long long)(s * 1e6));
	atomic_fetch_add(&sv->requests[r->ep][r->outcome], 1);
	free(r->body);
	free(r);
	*ctx = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	(void)cls;
	vsnprintf(line, sizeof line, fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	kw_log_limited("serve.http", KW_LOG_WARN, "keyward-ca serve: http: %s", line);
}

/* HOST:PORT or [V6]:PORT into addr. */
static int parse_listen(const char *text, struct sockaddr_storage *addr)
{
	char host[256];
	const char *colon = strrchr(text, ':');
	struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
	unsigned port;

	memset(addr, 0, sizeof *addr);
	if (!colon || colon == text || (size_t)(colon - text) >= sizeof host || uint_value(colon + 1, 1, 65535, &port))
		return ca_usage_error("listen \"%s\": HOST:PORT or [IPV6]:PORT, HOST an address", text);
	snprintf(host, sizeof host, "%.*s", (int)(colon - text), text);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
		if (inet_pton(AF_INET6, host, &v6->sin6_addr) != 1)
			return ca_usage_error("listen \"%s\": not an IPv6 address", text);
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((unsigned short)port);
		return 0;
	}
	if (!strcmp(host, "localhost"))
		snprintf(host, sizeof host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &v4->sin_addr) != 1)
		return ca_usage_error("listen \"%s\": not an IPv4 address", text);
	v4->sin_family = AF_INET;
	v4->sin_port = htons((unsigned short)port);
	return 0;
}

static void server_free(struct server *sv)
{
	if (sv->q.started) {
		/* after the HTTP threads stopped (or never started): nothing is in the queue */
		pthread_mutex_lock(&sv->q.mu);
		sv->q.stop = true;
		pthread_cond_broadcast(&sv->q.work);
		pthread_mutex_unlock(&sv->q.mu);
		pthread_join(sv->q.tid, NULL);
		sv->q.started = false;
	}
	cache_free(sv);
	for (int i = 0; i < 3; i++) {
		free(sv->files[i].data);
		pthread_mutex_destroy(&sv->files[i].lock);
	}
	if (sv->signer_owned) {
		X509_free(sv->signer.cert);
		EVP_PKEY_free(sv->signer.key);
		EVP_PKEY_free(sv->signer_pub);
	}
	ca_status_close(sv->live);
	ca_status_close(sv->pre);
	ca_batch_signer_close(sv->batch);
	ca_close(sv->ca);
	pthread_rwlock_destroy(&sv->signer_lock);
	pthread_rwlock_destroy(&sv->cache_lock);
	pthread_mutex_destroy(&sv->live_lock);
	pthread_mutex_destroy(&sv->stop_lock);
	pthread_mutex_destroy(&sv->health_lock);
	pthread_cond_destroy(&sv->stop_cond);
}

int ca_serve(const char *dir_in, const char *listen)
{
	struct server *sv = calloc(1, sizeof *sv);
	struct sockaddr_storage addr;
	struct MHD_Daemon *d = NULL;
	pthread_t presign, maint;
	bool presign_started = false, maint_started = false;
	sigset_t sigs;
	int sig = 0, rc = -1;
	char dir[CA_PATH_MAX + 16];

	if (!sv)
		return ca_error("out of memory");
	pthread_rwlock_init(&sv->signer_lock, NULL);
	pthread_rwlock_init(&sv->cache_lock, NULL);
	pthread_mutex_init(&sv->live_lock, NULL);
	pthread_mutex_init(&sv->stop_lock, NULL);
	pthread_mutex_init(&sv->health_lock, NULL);
	pthread_cond_init(&sv->stop_cond, NULL);
	for (int i = 0; i < 3; i++)
		pthread_mutex_init(&sv->files[i].lock, NULL);
	kw_log_init("info");
	if (serve_conf_load(&sv->sc, dir_in))
		goto out;
	if (listen && serve_conf_set(&sv->sc, "listen", listen))
		goto out;
	if (parse_listen(sv->sc.listen, &addr))
		goto out;
	if ((!sv->sc.signer_ca && signer_key_prepare_apart(dir_in, &sv->sc)) || serve_open_ca(dir_in, &sv->ca))
		goto out;
	ca_file_name(sv->ca->conf.name, sv->file, sizeof sv->file);
	url_prefixes(sv);
	ca_path(&sv->ca->conf, "publish", dir, sizeof dir);
	snprintf(sv->files[0].path, sizeof sv->files[0].path, "%s/%s.crl", dir, sv->file);
	snprintf(sv->files[1].path, sizeof sv->files[1].path, "%s/%s+.crl", dir, sv->file);
	snprintf(sv->files[2].path, sizeof sv->files[2].path, "%s/%s.crt", dir, sv->file);
	sv->files[0].type = sv->files[1].type = "application/pkix-crl";
	sv->files[2].type = "application/pkix-cert";
	sv->n_buckets = 1 << 16;
	if (!(sv->buckets = calloc(sv->n_buckets, sizeof *sv->buckets))) {
		ca_error("out of memory");
		goto out;
	}
	if (ocsp_issuer_init(&sv->issuer, ca_certificate(sv->ca)) ||
	    ca_publish_aia(&sv->ca->conf, ca_certificate(sv->ca)))
		goto out;
	if (sv->sc.signer_ca)
		sv->signer = (struct ocsp_signer){
			.cert = ca_certificate(sv->ca), .key = sv->ca->priv, .md = ca_md(&sv->ca->conf)};
	else if (signer_delegated(sv))
		goto out;
	if (ca_status_open(&sv->ca->conf, &sv->live) || ca_status_open(&sv->ca->conf, &sv->pre))
		goto out;
	{
		/* the cache pre-signed in batches where the module offers it (KEYWARD_CA_BATCH=0: one by one) */
		const char *want = getenv("KEYWARD_CA_BATCH");
		char label[CA_NAME_MAX + 8];

		snprintf(label, sizeof label, "ocsp-%s", sv->file);
		if ((!want || strcmp(want, "0")) &&
		    (sv->sc.signer_ca ? ca_batch_signer_open(&sv->ca->conf, sv->ca->pub, &sv->batch)
				      : ca_batch_signer_open_label(&sv->ca->conf, label, sv->signer_pub, &sv->batch)))
			goto out;
		if (sv->batch)
			kw_log(KW_LOG_INFO, "keyward-ca serve: pre-signing %d answers per HSM round trip",
			       CA_SIGN_BATCH);
	}
	pthread_mutex_init(&sv->q.mu, NULL);
	pthread_cond_init(&sv->q.work, NULL);
	pthread_cond_init(&sv->q.done, NULL);
	sv->q.tail = &sv->q.head;
	if (sv->batch && pthread_create(&sv->q.tid, NULL, signq_main, sv) == 0)
		sv->q.started = true;

	/* the signals are taken by sigwait below, in no other thread */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	d = MHD_start_daemon(
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0), 0,
		NULL, NULL, handle, sv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, sv, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, sv->sc.threads, MHD_OPTION_CONNECTION_LIMIT,
		sv->sc.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, sv->sc.per_address,
		MHD_OPTION_CONNECTION_TIMEOUT, sv->sc.timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
		/* no SO_REUSEPORT: a second responder on a busy port must fail, not share it with another CA's */
		MHD_OPTION_NOTIFY_COMPLETED, completed, sv, MHD_OPTION_END);
	if (!d) {
		ca_error("cannot listen on %s: %s", sv->sc.listen, strerror(errno));
		goto out;
	}
	if (pthread_create(&presign, NULL, presign_main, sv) == 0)
		presign_started = true;
	if (pthread_create(&maint, NULL, maint_main, sv) == 0)
		maint_started = true;
	if (!presign_started || !maint_started) {
		ca_error("cannot start threads");
		goto stop;
	}
	kw_log(KW_LOG_INFO, "keyward-ca serve: CA \"%s\" on http://%s/ (OCSP signed by %s)", sv->ca->conf.name,
	       sv->sc.listen, sv->sc.signer_ca ? "the CA key" : "a delegated certificate");
	sd_notifyf(0, "READY=1\nSTATUS=serving CA \"%s\" on %s", sv->ca->conf.name, sv->sc.listen);
	while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
		;
	sd_notify(0, "STOPPING=1");
	kw_log(KW_LOG_INFO, "keyward-ca serve: stopping (signal %d)", sig);
	rc = 0;
stop:
	pthread_mutex_lock(&sv->stop_lock);
	sv->stopping = true;
	pthread_cond_broadcast(&sv->stop_cond);
	pthread_mutex_unlock(&sv->stop_lock);
	MHD_stop_daemon(d);
	if (presign_started)
		pthread_join(presign, NULL);
	if (maint_started)
		pthread_join(maint, NULL);
out:
	server_free(sv);
	free(sv);
	return rc;
}
