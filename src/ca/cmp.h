/*
 * keyward-ca: CMP enrollment (RFC 4210, the Lightweight CMP profile of RFC
 * 9483) in keyward-ca serve at /.well-known/cmp/p/<template>:
 *
 *   cmp.c         the app mounted in serve: HTTP, protection, transactions
 *   cmp_srv.c     OpenSSL's CMP server callbacks: issuance, revocation,
 *                 approval and polling, through the CA library
 *   cmp_secret.c  the templates' shared secrets, sealed by the CA's token,
 *                 and the replay record
 */
#ifndef KW_CA_CMP_H
#define KW_CA_CMP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/cmp.h>

#include "ca/ca.h"
#include "ca/serve_app.h"

extern const struct serve_app cmp_app;

#define CMP_PREFIX "/.well-known/cmp/"
#define CMP_SECRET_MAX 64 /* bytes of a shared secret (cmp-secret makes 32 characters) */

/* PKIBody's choices (RFC 4210 5.1.2), as OSSL_CMP_MSG_get_bodytype gives them (OpenSSL 3.0 keeps its names inside) */
enum {
	CMP_BODY_IR = 0,
	CMP_BODY_IP = 1,
	CMP_BODY_CR = 2,
	CMP_BODY_CP = 3,
	CMP_BODY_P10CR = 4,
	CMP_BODY_KUR = 7,
	CMP_BODY_KUP = 8,
	CMP_BODY_RR = 11,
	CMP_BODY_RP = 12,
	CMP_BODY_PKICONF = 19,
	CMP_BODY_GENM = 21,
	CMP_BODY_ERROR = 23,
	CMP_BODY_CERTCONF = 24,
	CMP_BODY_POLLREQ = 25,
	CMP_BODY_POLLREP = 26,
};

/* ---- cmp.c: a message as read before OpenSSL's server sees it (buffer to buffer: fuzzed) ---- */
enum cmp_protection { CMP_PROT_NONE, CMP_PROT_MAC, CMP_PROT_SIGNATURE };
struct cmp_peek {
	void *asn;		   /* the whole message, parsed; the pointers below are into it */
	int body_type;		   /* PKIBody's tag: CMP_BODY_*, -1 if not context-tagged */
	const unsigned char *body; /* its encoding, tag and all */
	size_t body_len;
	enum cmp_protection protection;
	const ASN1_OCTET_STRING *tid, *sender_kid;
	const X509_NAME *sender; /* NULL unless a directory name */
	const STACK_OF(X509) * extra_certs;
	time_t time; /* messageTime; 0: none */
};
/* Reads a PKIMessage's header and extraCerts, checking the PBM parameters' bounds; -1 (CA_ERR_USAGE) saying why. */
int cmp_peek(const unsigned char *der, size_t len, struct cmp_peek *m);
void cmp_peek_free(struct cmp_peek *m);
/*
 * An unprotected error PKIMessage (RFC 4210 5.3.21) with status rejection,
 * failure fail_bit (OSSL_CMP_PKIFAILUREINFO_*) and text: for what is not a
 * CMP message at all. Into out; -1 with ca_error() if out of memory.
 */
int cmp_error_der(int fail_bit, const char *text, struct ca_der *out);

/* ---- cmp_secret.c ---- */
struct cmp_store;
/* The CMP tables of the CA's database (made if missing), on a connection of their own: one thread at a time. */
int cmp_store_open(struct ca *ca, struct cmp_store **out);
void cmp_store_close(struct cmp_store *s);
/* A session on the CA's token for the seal key (the CA key logged in): after it, the store needs ca no more. */
int cmp_store_token(struct ca *ca, struct cmp_store *s);
/* A new secret for template tmpl, sealed and stored (replacing any): its text in out (NUL-terminated). */
int cmp_secret_new(struct ca *ca, struct cmp_store *s, const char *tmpl, char *out, size_t size);
/* Removes tmpl's secret; *removed false if it had none. */
int cmp_secret_remove(struct ca *ca, struct cmp_store *s, const char *tmpl, bool *removed);
/* tmpl's secret, unsealed, into secret (CMP_SECRET_MAX bytes; the caller wipes it); CA_ERR_NOT_FOUND: none. */
int cmp_secret_get(struct ca *ca, struct cmp_store *s, const char *tmpl, unsigned char *secret, size_t *len);
/* Request id's status (pending, issued, denied) and, once issued, its certificate's serial; -1 if none. */
int cmp_request_state(struct cmp_store *s, pthread_mutex_t *lock, long long id, char *status, size_t ssize,
		      char *serial, size_t size);
/* Records id (a transactionID) until expires: 0 if new, 1 if already recorded (a replay), -1 on error. */
int cmp_seen(struct cmp_store *s, const unsigned char *id, size_t len, time_t expires, time_t now);

/* ---- cmp_srv.c ---- */
/*
 * Issuance shared by the requests that arrive together: one thread issues
 * for all those waiting (one ca_issue_batch: one HSM round trip with a batch
 * interface, one commit), the others wait for their certificate. On a
 * disk whose fsync takes milliseconds this is what lets many clients
 * enroll at once.
 */
struct cmp_job;
struct cmp_queue {
	pthread_mutex_t mu;
	pthread_cond_t done;
	struct cmp_job *head, **tail;
	bool issuing; /* a thread is issuing a group */
};
void cmp_queue_init(struct cmp_queue *q);
void cmp_queue_destroy(struct cmp_queue *q);

/* What one request to the server knows: the CA, the template of its path, who protected it. */
struct cmp_call {
	const struct serve_env *env;
	struct cmp_store *store; /* for the state of pending requests, under store_lock */
	pthread_mutex_t *store_lock;
	struct ca_key_decoder *decoder;
	struct cmp_queue *queue;
	const struct ca_template *t;
	X509 *signer;	     /* a signature-protected request: the certificate of this CA that signed it */
	bool ca_locked;	     /* the caller holds env->ca_lock (it signs the answer with the CA key) */
	unsigned poll_after; /* seconds a waiting client is told to wait before it polls */
	int reason;	     /* rr: the revocation reason asked for (RFC 5280 code) */
	int refuse_info;     /* non-zero: refuse the request (these PKIFailureInfo bits) because refuse */
	char refuse[256];
	const OSSL_CMP_MSG *first; /* a polling transaction: its first request */
	/* in and out: a request waiting for approval */
	long long pending_id;
	/* out: what happened, for the transaction and the log */
	char serial[80];		     /* the certificate issued or revoked */
	unsigned char hash[EVP_MAX_MD_SIZE]; /* the certificate issued: its hash, as certConf's certHash has it */
	unsigned hash_len;
	char what[256]; /* why it was refused */
};
/* A server context whose callbacks take call (OSSL_CMP_SRV_CTX_get0_custom_ctx). */
OSSL_CMP_SRV_CTX *cmp_srv_new(struct cmp_call *call);
/* The same context's callbacks given call, the next message's (a transaction goes on). */
int cmp_srv_bind(OSSL_CMP_SRV_CTX *srv, struct cmp_call *call);

#endif
