/*
 * ACME (RFC 8555) in keyward-ca serve, at /acme/<template>/: what its
 * files share. Every byte of a request comes from an unauthenticated peer
 * until its JWS verified; decoders work buffer to buffer (fuzz_acme_jws).
 *
 *   acme.c            the mounted app: routing, the JWS checked against nonce, URL and account
 *   acme_account.c    newAccount (with EAB), account update and deactivation, keyChange, revokeCert
 *   acme_order.c      newOrder, authorizations, challenges, finalize, certificate download
 *   acme_jws.c        JWS (flattened JSON) decoded and verified: ES256/384/512, RS256, EdDSA, HS256 (EAB);
 *                     JWK thumbprints
 *   acme_db.c         accounts, orders, authorizations, nonces and EAB keys in the CA's database, over
 *                     acme_db_sqlite.c (keyward-ca.db) or acme_db_pg.c (PostgreSQL): acme_db_backend.h
 *   acme_challenge.c  http-01 fetched with libcurl (bounded, no loopback), dns-01 through a hook command
 *   acme_validate.c   validator threads: challenges checked off serve's HTTP threads
 *   acme_conf.c       acme.conf ([acme]): which templates, EAB, limits, test settings
 *   acme_eab.c        EAB keys made for the operator (keyward-ca acme-eab), sealed by the token (seal.c)
 */
#ifndef KW_CA_ACME_H
#define KW_CA_ACME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "ca/ca.h"
#include "ca/seal.h"
#include "ca/serve_app.h"
#include "common/htab.h"

extern const struct serve_app acme_app;

/* ---- problems (RFC 8555 6.7): each is a type URN and an HTTP status ---- */
enum acme_prob {
	AP_OK = 0,
	AP_MALFORMED,
	AP_NOT_FOUND, /* malformed, 404 */
	AP_BAD_NONCE,
	AP_BAD_SIG_ALG,
	AP_BAD_PUBKEY,
	AP_UNAUTHORIZED,
	AP_ACCOUNT_DNE,
	AP_EAB_REQUIRED,
	AP_REJECTED_ID,
	AP_UNSUPPORTED_ID,
	AP_BAD_CSR,
	AP_ORDER_NOT_READY,
	AP_ALREADY_REVOKED,
	AP_BAD_REVOCATION_REASON,
	AP_UNSUPPORTED_MEDIA, /* malformed, 415 */
	AP_CONFLICT,	      /* malformed, 409 (keyChange to a key in use) */
	AP_INCORRECT_RESPONSE,
	AP_CONNECTION,
	AP_DNS,
	AP_RATE_LIMITED,
	AP_SERVER_INTERNAL,
};
/* The problem's type URN and HTTP status. */
const char *acme_prob_type(enum acme_prob p);
unsigned acme_prob_status(enum acme_prob p);

/* ---- acme_jws.c ---- */
#define ACME_JWS_MAX SERVE_BODY_MAX
#define ACME_URL_MAX 1024
#define ACME_THUMB_LEN 43 /* base64url of a SHA-256, no padding */

/* A JWS in the flattened JSON serialization (RFC 7515 7.2.2), decoded but not yet trusted. */
struct acme_jws {
	char alg[8];		       /* ES256, ES384, ES512, RS256, EdDSA, HS256 */
	char nonce[128];	       /* empty if none */
	char url[ACME_URL_MAX];	       /* the protected header's url */
	char kid[ACME_URL_MAX];	       /* empty if the header has jwk */
	json_t *jwk;		       /* the header's jwk, or NULL */
	EVP_PKEY *key;		       /* jwk's key (not HS256), or NULL */
	char thumb[ACME_THUMB_LEN + 1]; /* jwk's RFC 7638 thumbprint */
	unsigned char *payload;	       /* decoded; length 0 for POST-as-GET */
	size_t payload_len;
	json_t *body; /* the payload as a JSON object, NULL when empty */
	char *signing_input; /* protected "." payload, as sent */
	size_t signing_len;
	unsigned char *sig;
	size_t sig_len;
};
/* Decodes body (at most ACME_JWS_MAX bytes): 0, or a problem with ca_last_error() saying what. */
enum acme_prob acme_jws_parse(const unsigned char *body, size_t len, struct acme_jws *out);
/* The signature verifies under key, alg being the one key signs with: 0, or AP_MALFORMED / AP_BAD_SIG_ALG. */
enum acme_prob acme_jws_verify(const struct acme_jws *j, EVP_PKEY *key);
/* An HS256 signature (EAB) verifies under the HMAC key. */
enum acme_prob acme_jws_verify_hmac(const struct acme_jws *j, const unsigned char *key, size_t key_len);
void acme_jws_cleanup(struct acme_jws *j);
/* The algs accepted for accounts (RFC 8555 6.2: a badSignatureAlgorithm problem lists them), as a JSON array. */
json_t *acme_jws_algs(void);
/*
 * A public key from a JWK object (EC P-256, P-384, P-521; RSA 2048..8192;
 * OKP Ed25519), and its thumbprint.
 */
enum acme_prob acme_jwk_key(const json_t *jwk, EVP_PKEY **key, char thumb[ACME_THUMB_LEN + 1]);
/* base64url without padding: decoded length, or -1 on a bad character or length (out holds at most max). */
long acme_b64u_decode(const char *in, size_t len, unsigned char *out, size_t max);
/* Encodes into out (room for 4 * ceil(len / 3) + 1); returns the length written. */
size_t acme_b64u_encode(const unsigned char *in, size_t len, char *out);

/* ---- acme_conf.c ---- */
struct acme_conf {
	char templates[512];	 /* served over ACME, space separated; none: ACME answers 404 */
	char eab_templates[512]; /* of those, the ones whose accounts need external account binding */
	unsigned order_lifetime; /* seconds an order and its authorizations stay pending */
	unsigned nonce_lifetime; /* seconds a nonce stays usable */
	unsigned http01_port;	 /* the port http-01 fetches from (80; tests: certbot's) */
	unsigned fetch_timeout;	 /* seconds for one http-01 fetch */
	char resolve[64];	 /* test: every name resolves to this address; empty: the system resolver */
	bool allow_loopback;	 /* test: challenge targets on loopback and link-local addresses allowed */
	char dns01_hook[CA_PATH_MAX]; /* HOOK NAME VALUE: exit 0 if _acme-challenge.NAME has TXT VALUE */
	unsigned hook_timeout;	      /* seconds the hook may run */
	unsigned validators;	      /* threads validating challenges */
	unsigned accounts_per_hour;   /* new accounts from one address in an hour */
	unsigned pending_orders;      /* orders one account may have pending */
	unsigned queue;		      /* validations waiting, at most */
};
/* Defaults, then dir/acme.conf if there. */
int acme_conf_load(struct acme_conf *ac, const char *dir);
int acme_conf_set(struct acme_conf *ac, const char *key, const char *value);
/* Whether name is a word of list (space or comma separated). */
bool acme_listed(const char *list, const char *name);

/* ---- acme_db.c: tables of their own in the CA's database, on a connection of their own ---- */
struct acme_db;
int acme_db_open(const struct ca_conf *c, struct acme_db **out);
void acme_db_close(struct acme_db *db);

#define ACME_NONCE_LEN 22 /* 16 random bytes, base64url */
int acme_nonce_new(struct acme_db *db, time_t now, unsigned lifetime, char out[ACME_NONCE_LEN + 1]);
/* 0: the nonce was issued, unused and alive, and is now used; 1: it was not; -1: error. */
int acme_nonce_use(struct acme_db *db, const char *nonce, time_t now);

struct acme_account {
	long long id;
	char template_name[64];
	char thumb[ACME_THUMB_LEN + 1];
	char jwk[2048]; /* the key's JWK, as JSON text */
	char status[16]; /* valid, deactivated */
	char contact[1024]; /* JSON array text */
	char eab_kid[64];
	time_t created;
	char remote[64]; /* the address it was made from */
};
/* 0 found, 1 not found, -1 error. */
int acme_account_find(struct acme_db *db, const char *template_name, const char *thumb, struct acme_account *a);
int acme_account_get(struct acme_db *db, long long id, struct acme_account *a);
/*
 * Inserts a (its id set); with an EAB kid, binds that kid to it in the same
 * transaction: 1 if the kid is unknown or already bound (nothing inserted).
 */
int acme_account_insert(struct acme_db *db, struct acme_account *a);
/* Accounts made from remote since then, and an account's pending orders: counts for the limits, or -1. */
long long acme_accounts_since(struct acme_db *db, const char *remote, time_t since);
long long acme_orders_pending(struct acme_db *db, long long account, time_t now);
/* Up to max of the account's orders not expired, newest first, into ids: how many, or -1. */
long acme_orders_of(struct acme_db *db, long long account, time_t now, long long *ids, size_t max);
int acme_account_set_status(struct acme_db *db, long long id, const char *status);
int acme_account_set_contact(struct acme_db *db, long long id, const char *contact);
/* New key for account id: 1 if another account of its template has thumb. */
int acme_account_set_key(struct acme_db *db, long long id, const char *thumb, const char *jwk);

#define ACME_EAB_KEY_LEN 32
#define ACME_EAB_KID_LEN 22
#define ACME_EAB_IV_LEN 12			    /* CA_SEAL_IV */
#define ACME_EAB_SEALED_MAX (ACME_EAB_KEY_LEN + 16) /* the key and GCM's tag (CA_SEAL_TAG) */
/* A new kid: 16 random bytes in base64url, not starting with '-'. */
void acme_eab_kid(char kid[ACME_EAB_KID_LEN + 1]);
/* Stores kid's sealed key for template. */
int acme_eab_insert(struct acme_db *db, const char *template_name, const char *kid, const unsigned char *iv,
		    const unsigned char *sealed, size_t len);
/* kid's sealed key for template: 0, 1 if none (or bound to an account already), -1 error. */
int acme_eab_sealed(struct acme_db *db, const char *template_name, const char *kid, unsigned char iv[ACME_EAB_IV_LEN],
		    unsigned char sealed[ACME_EAB_SEALED_MAX], size_t *len);
/* Seals key (ACME_EAB_KEY_LEN bytes) of kid for template into iv and out (*out_len: its room, then its length). */
typedef int (*acme_eab_seal_fn)(void *arg, const char *template_name, const char *kid, const unsigned char *key,
				unsigned char iv[ACME_EAB_IV_LEN], unsigned char *out, size_t *out_len);
/*
 * An acme_eab of before (the key in plain, column "key") sealed in place
 * with seal, in one transaction: how many keys were sealed (0: nothing
 * to do), or -1 with nothing changed.
 */
int acme_eab_migrate(struct acme_db *db, acme_eab_seal_fn seal, void *arg);

/* ---- acme_eab.c: EAB keys sealed by the CA's token (seal.c) ---- */
/* A new EAB key for template (audited): its kid, and its key in base64url for the operator (wipe it). */
#define ACME_EAB_KEY_B64 43
int acme_eab_create(struct ca *ca, const char *template_name, char kid[ACME_EAB_KID_LEN + 1],
		    char key_b64[ACME_EAB_KEY_B64 + 1]);
/* Seals the plain keys an older keyward-ca left in db (acme_eab_migrate), audited: how many, or -1. */
int acme_eab_seal_old(struct ca *ca, struct ca_seal *seal, struct acme_db *db);
/* The key of kid for template, unsealed (the caller wipes it): 0, 1 if none (or bound already), -1 error. */
int acme_eab_key(struct ca *ca, struct ca_seal *seal, struct acme_db *db, const char *template_name, const char *kid,
		 unsigned char key[ACME_EAB_KEY_LEN]);

#define ACME_IDS_MAX 100 /* identifiers of one order (CA_SANS_MAX) */
struct acme_order {
	long long id, account;
	char template_name[64];
	char status[16]; /* pending, ready, processing, valid, invalid (as stored; acme_order_status derives) */
	time_t created, expires;
	char serial[80]; /* once issued */
	char error[512]; /* why invalid */
	long long authz[ACME_IDS_MAX];
	size_t n_authz;
};
struct acme_authz {
	long long id, order, account;
	char value[256]; /* the DNS name, without "*." */
	bool wildcard;
	char status[16]; /* pending, valid, invalid, deactivated */
	time_t expires;
	char token[ACME_NONCE_LEN + 1];
	char tried[16];	 /* the challenge type answered, or empty */
	time_t validated;
	char error_type[32]; /* the problem's type (incorrectResponse, connection, dns) when invalid */
	char error[512];
};
/* An order for names (n, each a DNS name, "*." kept) and its authorizations, in one transaction. */
int acme_order_insert(struct acme_db *db, struct acme_order *o, const char *const *names, size_t n);
int acme_order_get(struct acme_db *db, long long id, struct acme_order *o);
/* The order that issued serial (normalized hex): 0, 1 none, -1 error. */
int acme_order_by_serial(struct acme_db *db, const char *serial, struct acme_order *o);
int acme_order_set(struct acme_db *db, long long id, const char *status, const char *serial, const char *error);
/* status moves to to only from from (processing guards finalize): 0 moved, 1 not in from. */
int acme_order_move(struct acme_db *db, long long id, const char *from, const char *to);
int acme_authz_get(struct acme_db *db, long long id, struct acme_authz *a);
/* Marks type as being validated (the authorization pending, nothing tried yet): 0, 1 if not so, -1 error. */
int acme_authz_try(struct acme_db *db, long long id, const char *type);
/* Takes back acme_authz_try when the validation could not be queued. */
int acme_authz_try_undo(struct acme_db *db, long long id, const char *type);
/* Records a challenge's outcome on the authorization (status valid or invalid), if still pending: 1 if not. */
int acme_authz_settle(struct acme_db *db, long long id, const char *type, const char *status, const char *error_type,
		      const char *error);
int acme_authz_set_status(struct acme_db *db, long long id, const char *status);

/* ---- acme_challenge.c ---- */
/*
 * Whether http://NAME:PORT/.well-known/acme-challenge/TOKEN answers
 * key_auth: AP_OK, or AP_INCORRECT_RESPONSE / AP_CONNECTION / AP_DNS with
 * the reason in ca_last_error().
 */
enum acme_prob acme_http01(const struct acme_conf *ac, const char *name, const char *token, const char *key_auth,
			   const atomic_bool *stop);
/* The dns-01 hook says _acme-challenge.NAME holds TXT value. Both give up when *stop (may be NULL) turns true. */
enum acme_prob acme_dns01(const struct acme_conf *ac, const char *name, const char *value, const atomic_bool *stop);

/* ---- acme_validate.c: validations on threads of their own ---- */
struct acme;
struct acme_validator;
struct acme_job {
	long long authz;
	char type[8]; /* http-01, dns-01 */
	char name[256];
	char token[ACME_NONCE_LEN + 1];
	char key_auth[ACME_NONCE_LEN + ACME_THUMB_LEN + 2];
};
int acme_validator_start(struct acme *a, unsigned threads, unsigned queue, struct acme_validator **out);
/*
 * Stops the threads after the validations under way (they give up at
 * a->stopping); those cut short, and those still queued, are taken back.
 */
void acme_validator_stop(struct acme_validator *v);
/* Queues job: 0, or 1 when the queue is full. */
int acme_validator_queue(struct acme_validator *v, const struct acme_job *job);

/* ---- the app's state (acme.c), shared with the endpoint files ---- */
struct acme {
	const struct serve_env *env;
	struct acme_conf conf;
	struct acme_db *db;
	struct acme_validator *validator;
	atomic_bool stopping; /* serve is stopping: validations give up */
	struct ca_seal seal;  /* the EAB keys' seal (acme_eab.c), under seal_lock */
	pthread_mutex_t seal_lock;
	pthread_mutex_t keys_lock; /* over keys */
	struct kw_htab keys;	   /* accounts' keys by thumbprint, parsed and checked once (acme.c) */
};
/* One request on its way through: what the endpoints fill in. */
struct acme_ctx {
	struct acme *a;
	const struct serve_req *req;
	struct serve_resp *resp;
	struct ca_template t; /* the template of the path, copied */
	char root[ACME_URL_MAX]; /* BASE/acme/TEMPLATE */
	const char *rest;	 /* the path after /acme/TEMPLATE */
	struct acme_jws jws;
	struct acme_account acct; /* the signer's account (kid), or the account found for jwk */
	bool have_acct;
};
/* The headers every answer carries: a fresh Replay-Nonce, the directory's Link, Cache-Control. */
void acme_headers(struct acme_ctx *x);
/* Answers a problem (detail printf-style) with the nonce and index link: returns -1 for the callers' convenience. */
int acme_problem(struct acme_ctx *x, enum acme_prob p, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Answers status with a JSON object (stolen), the Replay-Nonce and index Link; location if not NULL. */
int acme_json(struct acme_ctx *x, unsigned status, json_t *obj, const char *location);

/* acme_account.c */
int acme_new_account(struct acme_ctx *x);
int acme_post_account(struct acme_ctx *x, long long id);
/* The account's orders list (RFC 8555 7.1.2.1): those pending or ready, and the last valid ones. */
#define ACME_ORDERS_LIST 100
int acme_account_orders(struct acme_ctx *x, long long id);
int acme_key_change(struct acme_ctx *x);
int acme_revoke_cert(struct acme_ctx *x);
/* acme_order.c */
int acme_new_order(struct acme_ctx *x);
int acme_post_order(struct acme_ctx *x, long long id);
int acme_finalize(struct acme_ctx *x, long long id);
int acme_post_authz(struct acme_ctx *x, long long id);
int acme_post_challenge(struct acme_ctx *x, long long id, const char *type);
int acme_post_cert(struct acme_ctx *x, const char *serial);

#endif
