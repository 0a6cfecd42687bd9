/*
 * libkeyward internals shared by the client's source files (never
 * installed): the parsed configuration, one TLS connection, the pool and
 * failover, and the object conversion from the wire.
 *
 * Layers, bottom up:
 *   config.c   client.conf -> struct kw_config (inih)
 *   conn.c     one TCP + TLS 1.3 connection: connect, Hello, request/response
 *   client.c   kw_client: TLS contexts, idle pool, failover, fork detection
 *   object.c   kw_object / kw_object_list copies of ObjectInfo
 *   ops.c      the key operations, one Request/Response each
 *   batch.c    kw_sign_batch: many signatures in one SignBatch request
 *   enroll.c   setup password -> credential files
 */
#ifndef KW_CLIENT_CLIENT_H
#define KW_CLIENT_CLIENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include <keyward/keyward.h>

#include "common/buf.h"
#include "keyward.pb-c.h"

/* ---- configuration (config.c) ---- */

struct kw_hsm_cfg {
	char *section;     /* "hsm primary" */
	char *host;
	unsigned port;
	int priority;
	char *server_name; /* what the server certificate must name; default host */
	char *address;     /* "host:port" */
	unsigned line;     /* where the section first appeared */
};

struct kw_config {
	char *path;        /* the file read */
	char *dir;         /* its directory: relative paths resolve here */
	char *partition;
	char *ca;          /* absolute or relative to cwd after resolution */
	char *cert;        /* NULL when not configured */
	char *key;
	double connect_timeout;
	double command_timeout;
	int keepalive;
	unsigned pool_size;
	char *machine_owner; /* the machine owner override (owner.c checks its form) */
	char *pin_file;      /* the credential key's PIN, for unattended services; NULL: none */
	struct kw_hsm_cfg *hsms;
	size_t n_hsms;
};

/* Reads and checks path; on failure KW_ERR_CONFIG naming file, line and key. */
kw_rv kw_config_load(const char *path, struct kw_config *cfg);
/* The same from the file's text (len bytes), path naming it in errors and anchoring relative names. */
kw_rv kw_config_parse(const char *path, const char *text, size_t len, struct kw_config *cfg);
#define KW_CONFIG_MAX (1 << 20) /* bytes of a client.conf */
void kw_config_cleanup(struct kw_config *cfg);

/*
 * The order in which to try the HSMs: ascending priority, shuffled among
 * equal priorities with rnd (returns a uniform 32-bit value). order has
 * cfg->n_hsms entries.
 */
void kw_failover_order(const struct kw_config *cfg, size_t *order, uint32_t (*rnd)(void *arg), void *arg);

/* ---- one connection (conn.c) ---- */

struct kw_waiter;

/*
 * One connection, shared by up to KW_PIPELINE_DEPTH calls at once: each
 * queues its encoded request in `out` and waits; whichever waiting call
 * finds no one doing I/O becomes the I/O leader, writes everything queued
 * in one TLS write, reads every answer that has arrived in one read, and
 * hands each to its waiter, until its own has come. Under load, one
 * syscall then carries several requests on both sides.
 */
struct kw_conn {
	int fd;
	SSL *ssl;
	BIO_METHOD *bio_method; /* the SSL's socket BIO's, freed after it */
	unsigned fork_gen; /* kw_fork_generation() when made: a child must not use it */
	double last_used;  /* monotonic seconds of the last call's end */
	size_t hsm;        /* index into cfg->hsms */

	pthread_mutex_t lock;      /* guards what follows */
	uint64_t next_id;          /* request ids, increasing per connection */
	bool io_busy;              /* a leader is writing/reading */
	kw_rv broken;              /* non-zero once the stream is unusable */
	char broken_msg[512];
	struct kw_buf out;         /* requests queued, not yet written */
	struct kw_waiter *waiters; /* calls waiting for an answer */

	struct kw_buf in; /* the leader's: bytes read, not yet a whole frame */

	/* client.c's, under the client's lock */
	unsigned users; /* calls using it now */
	bool listed;    /* in the client's list of shared connections */
};

/*
 * Calls one connection carries before the client opens another (while
 * fewer than pool_size are open; beyond that, calls share). Measured on
 * 2 cores: deeper sharing batches syscalls but adds a thread hand-off per
 * answer, and came out no faster than one connection per calling thread
 * (docs/performance.md).
 */
#define KW_PIPELINE_DEPTH 1

/* The TLS 1.3 client context: trusts cfg->ca; presents cert+key if with_cred. */
kw_rv kw_tls_ctx_new(const struct kw_config *cfg, const char *pin, bool with_cred, SSL_CTX **out);
/* Whether pin decrypts the credential key (KW_OK also for a key stored unencrypted). */
kw_rv kw_tls_check_pin(const struct kw_config *cfg, const char *pin);

/*
 * TCP connect (connect_timeout), TLS handshake and Hello (command_timeout).
 * hello_out, if not NULL, receives the HelloResult (free with
 * keyward__hello_result__free_unpacked). On failure *why holds a short
 * reason for the failover message ("connection refused").
 */
kw_rv kw_conn_open(const struct kw_config *cfg, size_t hsm, SSL_CTX *ctx, struct kw_conn **out,
		   Keyward__HelloResult **hello_out, char *why, size_t why_len);

/*
 * Sends req (its id is set here) and waits for its response; safe to call
 * from several threads on one connection. A non-OK status is returned as
 * that kw_rv with the server's message, the connection still usable;
 * KW_ERR_NETWORK / PROTOCOL / TIMEOUT mean the connection is broken (see
 * kw_conn_broken). *resp is set only on KW_OK. *sent (may be NULL) says
 * whether the request was queued for the HSM at all: false when the
 * connection was already broken or the request could not be encoded, so
 * the HSM cannot have carried it out.
 */
kw_rv kw_conn_call(struct kw_conn *conn, double timeout, Keyward__Request *req, Keyward__Response **resp, bool *sent);

/* Whether the connection failed and must not take new calls. */
bool kw_conn_broken(struct kw_conn *conn);

/* Whether an idle connection still looks open (peer did not close it). */
bool kw_conn_alive(const struct kw_conn *conn);

/* graceful: send close_notify first; never in a forked child. */
void kw_conn_close(struct kw_conn *conn, bool graceful);

/*
 * Counts fork()s of this process (a pthread_atfork child handler, installed
 * on first use): cheaper than getpid() on every request, and it changes in
 * every child.
 */
unsigned kw_fork_generation(void);

/* ---- the client (client.c) ---- */

struct kw_client {
	struct kw_config cfg;
	pthread_mutex_t lock;
	char *pin;          /* wiped on change and free */
	SSL_CTX *ctx_cred;  /* with the client credential, made on first use */
	SSL_CTX *ctx_anon;  /* without: Enroll, and probe before enrollment */
	struct kw_conn **conns; /* up to pool_size shared connections */
	size_t n_conns;
	unsigned fork_gen;  /* kw_fork_generation() of the idle connections' process */
	bool single;        /* kw_client_single_connection: one connection for every call */
	pthread_mutex_t take_lock; /* single: held while a call takes (and maybe opens) the connection */
};

/*
 * Opens a fresh connection, failing over in priority order. with_cred
 * false: no client certificate (enrollment).
 */
kw_rv kw_client_connect(kw_client *c, bool with_cred, struct kw_conn **out);

/* Unlists every shared connection (new calls open fresh ones). */
void kw_client_drop_connections(kw_client *c);

/*
 * One request on a pooled connection. When the connection fails, the
 * request goes again on a fresh one, to another HSM first, if the HSM
 * cannot have received it or it changes nothing (sign, read); one that
 * may have changed something is reported with its outcome unknown, never
 * repeated. Checks that the response body is `expect` (0: any). Free
 * *resp with keyward__response__free_unpacked.
 */
kw_rv kw_client_call(kw_client *c, Keyward__Request *req, Keyward__Response__BodyCase expect,
		     Keyward__Response **resp);

/* ---- key operations (ops.c, batch.c) ---- */

/* Checks a mechanism's enums and label before a request names it; fn names the caller. */
kw_rv kw_mechanism_check(const char *fn, const struct kw_mechanism *m);
/* Fills a Sign request's key (ref, by id) and mechanism; the data is the caller's. */
void kw_sign_request_init(Keyward__Sign *s, Keyward__ObjectRef *ref, uint64_t key_id, const struct kw_mechanism *m);

/* ---- objects (object.c) ---- */

kw_rv kw_object_from_info(const Keyward__ObjectInfo *info, kw_object **out);
kw_rv kw_object_list_from_infos(Keyward__ObjectInfo *const *infos, size_t n, kw_object_list **out);
/* Appends copies of infos to l. */
kw_rv kw_object_list_append(kw_object_list *l, Keyward__ObjectInfo *const *infos, size_t n);
kw_rv kw_object_list_new_empty(kw_object_list **out);

#endif
