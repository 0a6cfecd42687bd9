/*
 * ACME (RFC 8555) mounted in keyward-ca serve at /acme/<template>/: one
 * directory per template that acme.conf lists. Every POST is a JWS that
 * is checked here, in this order, before an endpoint sees it: content
 * type, structure (acme_jws.c), the url it was signed for is the one it
 * was sent to, its nonce was issued here and is now used (replay
 * refused), then its signature, under the jwk it carries (newAccount,
 * revokeCert) or the key of the account its kid names, which must be
 * valid and of this template. The endpoints (acme_account.c,
 * acme_order.c) then only check who owns what they touch.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "ca/acme.h"

static const struct {
	const char *type;
	unsigned status;
} probs[] = {
	[AP_OK] = {"", 200},
	[AP_MALFORMED] = {"malformed", 400},
	[AP_NOT_FOUND] = {"malformed", 404},
	[AP_BAD_NONCE] = {"badNonce", 400},
	[AP_BAD_SIG_ALG] = {"badSignatureAlgorithm", 400},
	[AP_BAD_PUBKEY] = {"badPublicKey", 400},
	[AP_UNAUTHORIZED] = {"unauthorized", 403},
	[AP_ACCOUNT_DNE] = {"accountDoesNotExist", 400},
	[AP_EAB_REQUIRED] = {"externalAccountRequired", 400},
	[AP_REJECTED_ID] = {"rejectedIdentifier", 400},
	[AP_UNSUPPORTED_ID] = {"unsupportedIdentifier", 400},
	[AP_BAD_CSR] = {"badCSR", 400},
	[AP_ORDER_NOT_READY] = {"orderNotReady", 403},
	[AP_ALREADY_REVOKED] = {"alreadyRevoked", 400},
	[AP_BAD_REVOCATION_REASON] = {"badRevocationReason", 400},
	[AP_UNSUPPORTED_MEDIA] = {"malformed", 415},
	[AP_CONFLICT] = {"malformed", 409},
	[AP_INCORRECT_RESPONSE] = {"incorrectResponse", 403},
	[AP_CONNECTION] = {"connection", 400},
	[AP_DNS] = {"dns", 400},
	[AP_RATE_LIMITED] = {"rateLimited", 429},
	[AP_SERVER_INTERNAL] = {"serverInternal", 500},
};

const char *acme_prob_type(enum acme_prob p)
{
	return probs[p].type;
}

unsigned acme_prob_status(enum acme_prob p)
{
	return probs[p].status;
}

/* The headers every answer carries: a fresh nonce (RFC 8555 6.5), the directory (7.1), no caching. */
void acme_headers(struct acme_ctx *x)
{
	char nonce[ACME_NONCE_LEN + 1];

	if (!acme_nonce_new(x->a->db, time(NULL), x->a->conf.nonce_lifetime, nonce))
		serve_resp_header(x->resp, "Replay-Nonce", "%s", nonce);
	serve_resp_header(x->resp, "Link", "<%s/directory>;rel=\"index\"", x->root);
	serve_resp_header(x->resp, "Cache-Control", "no-store");
}

static void set_json(struct acme_ctx *x, unsigned status, const char *type, json_t *obj)
{
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

	json_decref(obj);
	if (!text) {
		serve_resp_set(x->resp, 500, "text/plain", "out of memory\n", 14);
		return;
	}
	serve_resp_set(x->resp, status, type, text, strlen(text));
	free(text);
}

int acme_problem(struct acme_ctx *x, enum acme_prob p, const char *fmt, ...)
{
	char detail[1024];
	json_t *obj;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	x->resp->n_headers = 0;
	acme_headers(x);
	obj = json_pack("{s:s+,s:s,s:i}", "type", "urn:ietf:params:acme:error:", probs[p].type, "detail", detail,
			"status", (int)probs[p].status);
	/* RFC 8555 6.2: the problem lists the algs the server takes */
	if (obj && p == AP_BAD_SIG_ALG)
		json_object_set_new(obj, "algorithms", acme_jws_algs());
	set_json(x, probs[p].status, "application/problem+json", obj);
	return -1;
}

int acme_json(struct acme_ctx *x, unsigned status, json_t *obj, const char *location)
{
	acme_headers(x);
	if (location)
		serve_resp_header(x->resp, "Location", "%s", location);
	set_json(x, status, "application/json", obj);
	return 0;
}

static int directory(struct acme_ctx *x)
{
	const char *r = x->root;
	bool eab = acme_listed(x->a->conf.eab_templates, x->t.name);

	return acme_json(x, 200,
			 json_pack("{s:s+,s:s+,s:s+,s:s+,s:s+,s:{s:b}}", "newNonce", r, "/new-nonce", "newAccount", r,
				   "/new-account", "newOrder", r, "/new-order", "revokeCert", r, "/revoke-cert",
				   "keyChange", r, "/key-change", "meta", "externalAccountRequired", eab),
			 NULL);
}

/*
 * Accounts' keys, parsed from their JWK and checked once, then kept by
 * thumbprint (which names one key): checking an RSA public key costs
 * milliseconds, far more than verifying a signature with it, and every
 * kid-signed request needs its account's key.
 */
#define KEYS_KEPT 4096 /* beyond, one kept (whichever kw_htab_pop finds, not the oldest) goes for each new one */

struct kept_key {
	struct kw_hnode h;
	char thumb[ACME_THUMB_LEN + 1];
	EVP_PKEY *key;
};

static bool key_is(const struct kw_hnode *n, const void *thumb)
{
	return !strcmp(kw_entry_of(n, struct kept_key, h)->thumb, thumb);
}

static void kept_key_free(struct kw_hnode *n)
{
	struct kept_key *k = kw_entry_of(n, struct kept_key, h);

	EVP_PKEY_free(k->key);
	free(k);
}

/* An account's key from its stored JWK text and thumbprint: a reference the caller frees, or NULL after ca_error. */
static EVP_PKEY *account_key(struct acme *a, const char *jwk_text, const char *thumb)
{
	struct kw_hnode *n;
	struct kept_key *k;
	EVP_PKEY *key = NULL;
	json_t *jwk;
	enum acme_prob p;
	uint64_t hash;

	pthread_mutex_lock(&a->keys_lock);
	if ((n = kw_htab_find(&a->keys, kw_hash(thumb, strlen(thumb)), key_is, thumb))) {
		key = kw_entry_of(n, struct kept_key, h)->key;
		EVP_PKEY_up_ref(key);
	}
	pthread_mutex_unlock(&a->keys_lock);
	if (key)
		return key;
	if (!(jwk = json_loads(jwk_text, 0, NULL)))
		return ca_error("the stored jwk is not JSON"), NULL;
	if (!(k = calloc(1, sizeof *k))) {
		json_decref(jwk);
		return ca_error("out of memory"), NULL;
	}
	/* kept under the thumbprint of the key parsed, so that a thumbprint always finds its own key */
	p = acme_jwk_key(jwk, &k->key, k->thumb);
	json_decref(jwk);
	if (p) {
		kept_key_free(&k->h);
		return NULL;
	}
	key = k->key;
	EVP_PKEY_up_ref(key); /* the caller's reference; the table holds the other */
	hash = kw_hash(k->thumb, strlen(k->thumb));
	pthread_mutex_lock(&a->keys_lock);
	/* another request may have kept it meanwhile */
	if (kw_htab_find(&a->keys, hash, key_is, k->thumb)) {
		kept_key_free(&k->h);
	} else {
		if (a->keys.n >= KEYS_KEPT && (n = kw_htab_pop(&a->keys)))
			kept_key_free(n);
		kw_htab_add(&a->keys, &k->h, hash);
	}
	pthread_mutex_unlock(&a->keys_lock);
	return key;
}

/* The account a kid names: it must be this template's, and valid. */
static int kid_account(struct acme_ctx *x)
{
	size_t n = strlen(x->root);
	const char *id = x->jws.kid + n;
	char *end;
	long long v;
	int rc;

	if (strncmp(x->jws.kid, x->root, n) || strncmp(id, "/acct/", 6))
		return acme_problem(x, AP_MALFORMED, "kid %.200s is not an account URL of this directory", x->jws.kid);
	v = strtoll(id + 6, &end, 10);
	if (*end || v <= 0)
		return acme_problem(x, AP_MALFORMED, "kid %.200s is not an account URL of this directory", x->jws.kid);
	rc = acme_account_get(x->a->db, v, &x->acct);
	if (rc < 0)
		return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	if (rc || strcmp(x->acct.template_name, x->t.name))
		return acme_problem(x, AP_ACCOUNT_DNE, "no account %.200s", x->jws.kid);
	if (strcmp(x->acct.status, "valid"))
		return acme_problem(x, AP_UNAUTHORIZED, "account %.200s is %s", x->jws.kid, x->acct.status);
	x->have_acct = true;
	return 0;
}

/* The JWS checked as the file's comment says; jwk_ok: the endpoint takes a jwk (kid_ok: a kid). */
static int check_jws(struct acme_ctx *x, bool jwk_ok, bool kid_ok)
{
	const struct serve_req *req = x->req;
	const char *ct = serve_req_header(req, "Content-Type");
	char url[ACME_URL_MAX + 8];
	enum acme_prob p;
	EVP_PKEY *key = NULL;

	if (!ct || strncasecmp(ct, "application/jose+json", 21) || (ct[21] && ct[21] != ';'))
		return acme_problem(x, AP_UNSUPPORTED_MEDIA, "the body must be application/jose+json");
	if ((p = acme_jws_parse(req->body, req->len, &x->jws)))
		return acme_problem(x, p, "%s", ca_last_error());
	snprintf(url, sizeof url, "%s%s", req->base, req->path);
	if (strcmp(x->jws.url, url))
		return acme_problem(x, AP_UNAUTHORIZED, "the JWS was signed for %.300s, not %.300s", x->jws.url, url);
	if (!strcmp(x->jws.alg, "HS256"))
		return acme_problem(x, AP_BAD_SIG_ALG, "HS256 is for external account binding only");
	if (!x->jws.nonce[0])
		return acme_problem(x, AP_BAD_NONCE, "the JWS has no nonce");
	switch (acme_nonce_use(x->a->db, x->jws.nonce, time(NULL))) {
	case 0:
		break;
	case 1:
		return acme_problem(x, AP_BAD_NONCE, "nonce %.40s was not issued here, was used already or expired",
				    x->jws.nonce);
	default:
		return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	}
	if (x->jws.jwk && !jwk_ok)
		return acme_problem(x, AP_MALFORMED, "this request is signed with an account's key: kid, not jwk");
	if (x->jws.kid[0] && !kid_ok)
		return acme_problem(x, AP_MALFORMED, "this request is signed with the new key: jwk, not kid");
	if (!x->jws.jwk && !x->jws.kid[0])
		return acme_problem(x, AP_MALFORMED, "the JWS has neither jwk nor kid");
	if (x->jws.kid[0]) {
		if (kid_account(x))
			return -1;
		if (!(key = account_key(x->a, x->acct.jwk, x->acct.thumb)))
			return acme_problem(x, AP_SERVER_INTERNAL, "account %lld's key: %s", x->acct.id, ca_last_error());
		p = acme_jws_verify(&x->jws, key);
		EVP_PKEY_free(key);
	} else {
		p = acme_jws_verify(&x->jws, x->jws.key);
	}
	if (p)
		return acme_problem(x, p == AP_MALFORMED ? AP_UNAUTHORIZED : p, "%s", ca_last_error());
	return 0;
}

/* "/name/ID[/tail]": the number, and *tail after it ("" if none); 0 if rest is not that. */
static long long path_id(const char *rest, const char *name, const char **tail)
{
	size_t n = strlen(name);
	char *end;
	long long v;

	if (strncmp(rest, name, n) || rest[n] < '1' || rest[n] > '9')
		return 0;
	v = strtoll(rest + n, &end, 10);
	if (v <= 0 || (*end && *end != '/'))
		return 0;
	*tail = end;
	return v;
}

static void route(struct acme_ctx *x)
{
	const char *m = x->req->method, *rest = x->rest, *tail = "";
	bool post = !strcmp(m, "POST");
	long long id;

	if (!strcmp(rest, "/directory") && (!strcmp(m, "GET") || !strcmp(m, "HEAD"))) {
		directory(x);
		return;
	}
	if (!strcmp(rest, "/new-nonce") && (!strcmp(m, "GET") || !strcmp(m, "HEAD"))) {
		acme_headers(x);
		serve_resp_set(x->resp, !strcmp(m, "GET") ? 204 : 200, "text/plain", "", 0);
		return;
	}
	if (!post) {
		acme_problem(x, AP_MALFORMED, "%s %s: ACME takes POST here (RFC 8555 6.3: POST-as-GET)", m,
			     x->req->path);
		x->resp->status = 405;
		return;
	}
	if (!strcmp(rest, "/new-account")) {
		if (!check_jws(x, true, false))
			acme_new_account(x);
	} else if (!strcmp(rest, "/revoke-cert")) {
		if (!check_jws(x, true, true))
			acme_revoke_cert(x);
	} else if (!strcmp(rest, "/key-change")) {
		if (!check_jws(x, false, true))
			acme_key_change(x);
	} else if (!strcmp(rest, "/new-order")) {
		if (!check_jws(x, false, true))
			acme_new_order(x);
	} else if ((id = path_id(rest, "/acct/", &tail)) && (!*tail || !strcmp(tail, "/orders"))) {
		if (!check_jws(x, false, true)) {
			if (*tail)
				acme_account_orders(x, id);
			else
				acme_post_account(x, id);
		}
	} else if ((id = path_id(rest, "/order/", &tail)) && (!*tail || !strcmp(tail, "/finalize"))) {
		if (!check_jws(x, false, true)) {
			if (*tail)
				acme_finalize(x, id);
			else
				acme_post_order(x, id);
		}
	} else if ((id = path_id(rest, "/authz/", &tail)) && !*tail) {
		if (!check_jws(x, false, true))
			acme_post_authz(x, id);
	} else if ((id = path_id(rest, "/chall/", &tail)) && (!strcmp(tail, "/http-01") || !strcmp(tail, "/dns-01"))) {
		if (!check_jws(x, false, true))
			acme_post_challenge(x, id, tail + 1);
	} else if (!strncmp(rest, "/cert/", 6) && strlen(rest + 6) < 80 && rest[6] &&
		   strspn(rest + 6, "0123456789ABCDEF") == strlen(rest + 6)) {
		if (!check_jws(x, false, true))
			acme_post_cert(x, rest + 6);
	} else {
		acme_problem(x, AP_NOT_FOUND, "no ACME resource %.300s", x->req->path);
	}
}

static void handle(void *state, const struct serve_req *req, struct serve_resp *resp)
{
	struct acme *a = state;
	struct acme_ctx x = {.a = a, .req = req, .resp = resp};
	const char *name = req->path + strlen("/acme/");
	size_t n = strcspn(name, "/");
	const struct ca_template *t;
	char tname[64];

	if (!a || n == 0 || n >= sizeof tname) { /* !a: not mounted (open_app) */
		serve_resp_set(resp, 404, "text/plain", "no such ACME directory\n", 23);
		return;
	}
	snprintf(tname, sizeof tname, "%.*s", (int)n, name);
	pthread_mutex_lock(a->env->ca_lock);
	t = acme_listed(a->conf.templates, tname) ? ca_template_named(a->env->ca, tname) : NULL;
	if (t && (t->ca || t->manual))
		t = NULL; /* a CA certificate, or one a person approves, is never ACME's to give */
	if (t)
		x.t = *t;
	pthread_mutex_unlock(a->env->ca_lock);
	if (!t) {
		serve_resp_set(resp, 404, "text/plain", "no such ACME directory (acme.conf: templates)\n", 46);
		return;
	}
	snprintf(x.root, sizeof x.root, "%s/acme/%s", req->base, tname);
	x.rest = name + n;
	route(&x);
	acme_jws_cleanup(&x.jws);
}

/* The seal's token session shares the CA's module: closed while the CA is still open. */
static void close_seal(struct acme *a)
{
	pthread_mutex_lock(a->env->ca_lock);
	ca_seal_cleanup(&a->seal);
	pthread_mutex_unlock(a->env->ca_lock);
}

static int open_app(const struct serve_env *env, void **state)
{
	struct acme *a = calloc(1, sizeof *a);
	int rc = -1;

	*state = NULL;
	if (!a)
		return ca_error("out of memory");
	a->env = env;
	pthread_mutex_init(&a->keys_lock, NULL);
	pthread_mutex_init(&a->seal_lock, NULL);
	if (kw_htab_init(&a->keys, KEYS_KEPT)) {
		ca_error("out of memory");
		goto out;
	}
	if (acme_conf_load(&a->conf, env->dir))
		goto out;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		ca_error("ACME: libcurl does not start");
		goto out;
	}
	/*
	 * Under the CA's lock: EAB keys an older keyward-ca stored in plain are
	 * sealed now, and with EAB in use the token's session is opened now, so
	 * that unsealing then takes the seal's lock, never the CA's.
	 */
	pthread_mutex_lock(env->ca_lock);
	rc = acme_db_open(ca_config(env->ca), &a->db) || ca_seal_init(env->ca, &a->seal) ||
	     acme_eab_seal_old(env->ca, &a->seal, a->db) < 0 ||
	     (a->conf.eab_templates[0] && ca_seal_token(env->ca, &a->seal));
	if (rc)
		ca_seal_cleanup(&a->seal);
	pthread_mutex_unlock(env->ca_lock);
	if (rc || acme_validator_start(a, a->conf.validators, a->conf.queue, &a->validator)) {
		acme_db_close(a->db);
		curl_global_cleanup();
		if (!rc)
			close_seal(a);
		goto out;
	}
	*state = a;
	return 0;
out:
	kw_htab_free(&a->keys);
	pthread_mutex_destroy(&a->keys_lock);
	pthread_mutex_destroy(&a->seal_lock);
	free(a);
	return -1;
}

static void close_app(void *state)
{
	struct acme *a = state;

	if (!a)
		return;
	atomic_store(&a->stopping, true);
	acme_validator_stop(a->validator);
	acme_db_close(a->db);
	close_seal(a);
	curl_global_cleanup();
	for (struct kw_hnode *n; (n = kw_htab_pop(&a->keys));)
		kept_key_free(n);
	kw_htab_free(&a->keys);
	pthread_mutex_destroy(&a->keys_lock);
	pthread_mutex_destroy(&a->seal_lock);
	free(a);
}

const struct serve_app acme_app = {
	.name = "acme",
	.prefix = "/acme/",
	.open = open_app,
	.handle = handle,
	.close = close_app,
};
