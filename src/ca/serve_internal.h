/*
 * keyward-ca serve's parts, shared between its files (serve.c starts and
 * stops them; see there for the threads):
 *   serve_conf.c     serve.conf and the listen address
 *   serve_cache.c    the RFC 5019 cache of signed answers, by serial
 *   serve_answer.c   answering OCSP from the database, the signing queue
 *   serve_presign.c  the presign thread: fills the cache, follows changes
 *   serve_signer.c   the delegated OCSP signer, issued and renewed
 *   serve_maint.c    the maint thread: CRLs on schedule, signer renewal
 *   serve_http.c     libmicrohttpd's callbacks: routes, replies, the apps
 *   serve_metrics.c  /health and /metrics
 *   serve_tls.c      HTTPS's certificate and key
 */
#ifndef KW_CA_SERVE_INTERNAL_H
#define KW_CA_SERVE_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "ca/ca.h"
#include "ca/db_status.h"
#include "ca/ocsp.h"
#include "ca/ocspder.h"
#include "ca/serve.h"
#include "ca/serve_app.h"
#include "common/htab.h"

enum endpoint { EP_OCSP, EP_CRL, EP_CA, EP_HEALTH, EP_METRICS, EP_OTHER, EP_N };
/* outcomes: ocsp.h's, then HTTP's */
enum { O_OK = OCSP_OUT_N, O_NOT_MODIFIED, O_BAD_REQUEST, O_NOT_FOUND, O_TOO_LARGE, O_METHOD, O_UNAVAILABLE, O_N };
/* an app's answers in /metrics, by HTTP status class */
enum { SERVE_CLASS_OK, SERVE_CLASS_CLIENT, SERVE_CLASS_SERVER, SERVE_CLASS_N };
#define SERVE_APPS_MAX 8
/* the latency histogram's bucket bounds (seconds), serve_metrics.c */
#define N_BUCKETS 12
extern const double serve_latency_buckets[N_BUCKETS];

/* serve_tls.c: HTTPS's certificate and key (PEM, NUL-terminated) for libmicrohttpd, while it runs */
struct serve_tls {
	bool on;
	char *cert, *key;
	size_t key_len;
};
/* 0 with t->on false if serve.conf names neither file; -1 with the reason if they are not a usable pair. */
int serve_tls_load(const struct serve_conf *sc, struct serve_tls *t);
void serve_tls_free(struct serve_tls *t); /* wipes the key */

struct centry {
	struct kw_hnode h;
	char serial[OCSP_SERIAL_HEX_MAX];
	unsigned char *der;
	size_t len;
	time_t this_update, next_update;
	int outcome;		   /* good or revoked, for the counters */
	struct ocsp_status status; /* what the database said when it was signed ... */
	bool has_status;	   /* ... if known */
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
	const char *dir; /* the CA directory */
	struct serve_tls tls;
	struct serve_conf sc;
	struct ca *ca;		 /* the certificate and key for all; any other use holds ca_lock */
	pthread_mutex_t ca_lock; /* maint (CRLs, the signer) and the apps (serve_app.h) take turns on ca */
	struct ocsp_issuer issuer;
	char file[CA_NAME_MAX + 1];

	pthread_rwlock_t signer_lock; /* read: signing; write: a renewed signer put in */
	struct ocsp_signer signer;
	struct ca_batch_signer *batch; /* the signer's key through the module's batch interface, if it has one */
	unsigned char
		signer_key_hash[20]; /* SHA-1 of the signer's public key: the ResponderID (renewal keeps the key) */
	struct ca_der sig_alg;	     /* with batch: the answers' signatureAlgorithm (the key and md never change) */
	struct signq {
		pthread_mutex_t mu;
		pthread_cond_t work;
		struct sign_job *head, **tail;
		bool stop, started, idle; /* idle: waiting for work */
		pthread_t tid;
	} q;		      /* answers to live requests, signed CA_SIGN_BATCH at a time (with batch) */
	EVP_PKEY *signer_pub; /* delegated: the key's public half; the certificate and key are owned here */
	bool signer_owned;

	pthread_mutex_t live_lock; /* the HTTP threads' database connection */
	struct ca_status_db *live;
	struct ca_status_db *pre; /* presign's */

	pthread_rwlock_t cache_lock;
	struct kw_htab cache;	  /* of struct centry, by serial */
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
	time_t health_asking; /* when the thread asking the HSM now began (0: none is) */
	bool hsm_ok;

	atomic_ullong requests[EP_N][O_N];
	atomic_ullong latency[N_BUCKETS + 1];
	atomic_ullong latency_us_sum;
	atomic_ullong cache_hits, cache_misses, hsm_errors, db_errors, presigned;
	atomic_ullong crl_errors; /* CRLs the maint thread failed to publish */
	atomic_llong backlog;
	atomic_llong cache_size;
	atomic_llong resign_before; /* cached answers signed before this time are signed again (a new signer) */

	struct serve_env app_env;	 /* what the apps are given: valid from their open to their close */
	void *app_state[SERVE_APPS_MAX]; /* serve_apps[i]'s, from its open */
	size_t n_apps;			 /* apps opened */
	atomic_ullong app_requests[SERVE_APPS_MAX][SERVE_CLASS_N];
};

/* A database lookup for ocsp_answer (its status callback, serve_lookup_status). */
struct serve_lookup {
	struct server *sv;
	struct ca_status_db *db;
	pthread_mutex_t *lock; /* NULL: db is the caller's alone */
	bool cache_first;      /* a live answer: a cached entry's status serves (serve_cache_status) */
	bool failed;
};

/* serve.c: waits up to seconds for stop; true if stopping. */
bool serve_stop_wait(struct server *sv, double seconds);
bool serve_stopping(struct server *sv);

/* serve_conf.c */
int serve_listen_addr(const char *text, struct sockaddr_storage *addr);

/* serve_cache.c */
void serve_etag(const unsigned char *der, size_t len, char *out, size_t size);
/* Puts an answer in unless the cache was invalidated since generation (~0ULL: put it in anyway). */
void serve_cache_put(struct server *sv, const char *serial, int outcome, const struct ocsp_status *st,
		     const unsigned char *der, size_t len, time_t this_update, time_t next_update,
		     unsigned long long generation);
void serve_cache_drop(struct server *sv, const char *serial);
/* A copy of serial's answer if cached and fresh at now: 0, else -1. out->der is the caller's to free. */
int serve_cache_get(struct server *sv, const char *serial, time_t now, struct centry *out);
/*
 * The status serial's cached answer was signed with (0), or -1: a change in
 * the database drops the entry as soon as presign sees it (within half a
 * second), so a live answer may take it instead of asking the database.
 */
int serve_cache_status(struct server *sv, const char *serial, time_t now, struct ocsp_status *st);
/*
 * add(arg, serial) for every entry past half its validity at now, or
 * signed before the signer was renewed (stops when add fails).
 */
void serve_cache_stale(struct server *sv, time_t now, int (*add)(void *arg, const char *serial), void *arg);
int serve_cache_init(struct server *sv);
void serve_cache_free(struct server *sv);

/* serve_answer.c */
int serve_lookup_status(void *arg, const char *serial, struct ocsp_status *st);
void *serve_signq_main(void *arg);
int serve_sign_answer(struct server *sv, OCSP_REQUEST *req, struct serve_lookup *l, unsigned char **der, size_t *len,
		      struct ocsp_result *res);
/* The signer as ocspder.c takes it, for signing through the batch interface (the caller holds signer_lock). */
struct ocsp_presign serve_presign_locked(struct server *sv);

/* serve_presign.c */
void *serve_presign_main(void *arg);

/* serve_signer.c */
int serve_signer_key_prepare_apart(const char *dir, const struct serve_conf *sc);
int serve_signer_delegated(struct server *sv);
bool serve_signer_due(struct server *sv);

/* serve_maint.c */
/* The CRLs that are due (none on a read-only responder), published now: serve runs it once before it listens. */
void serve_maint_publish(struct server *sv);
void *serve_maint_main(void *arg);

/* serve_http.c */
void serve_url_prefixes(struct server *sv);
enum MHD_Result serve_http_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **ctx);
void serve_http_completed(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe);
void serve_http_log(void *cls, const char *fmt, va_list ap);

/* serve_metrics.c: /health's JSON (ok: the database and the HSM answer) and /metrics' text, malloc()ed */
char *serve_health_text(struct server *sv, bool *ok);
char *serve_metrics_text(struct server *sv, size_t *len);

#endif
