/*
 * ACME orders (RFC 8555 7.4, 7.5): newOrder for DNS names the template
 * allows, one authorization per name with http-01 (and dns-01 where a
 * hook is configured; wildcards only by dns-01), challenges validated as
 * the client answers them, finalize with a CSR that names exactly the
 * order's names (and no subject but a CN among them), issued through the
 * CA library under serve's lock, and the certificate as a PEM chain.
 * Everything is reached by POST-as-GET from the account that owns it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/acme.h"

static void rfc3339(time_t t, char out[32])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *authz_status(const struct acme_authz *a, time_t now)
{
	return !strcmp(a->status, "pending") && a->expires < now ? "expired" : a->status;
}

/* The order's authorizations (heap, o->n_authz of them); NULL after acme_problem. */
static struct acme_authz *load_authz(struct acme_ctx *x, const struct acme_order *o)
{
	struct acme_authz *az = calloc(o->n_authz ? o->n_authz : 1, sizeof *az);

	if (!az) {
		acme_problem(x, AP_SERVER_INTERNAL, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < o->n_authz; i++)
		if (acme_authz_get(x->a->db, o->authz[i], &az[i])) {
			acme_problem(x, AP_SERVER_INTERNAL, "order %lld: authorization %lld: %s", o->id, o->authz[i],
				     ca_last_error());
			free(az);
			return NULL;
		}
	return az;
}

/* pending until every authorization is valid, then ready; invalid when one fails or the order expires. */
static const char *order_status(const struct acme_order *o, const struct acme_authz *az, time_t now)
{
	bool all = true;

	if (strcmp(o->status, "pending"))
		return o->status; /* processing, valid, invalid: set by finalize */
	if (o->expires < now)
		return "invalid";
	for (size_t i = 0; i < o->n_authz; i++) {
		const char *s = authz_status(&az[i], now);

		if (!strcmp(s, "pending"))
			all = false;
		else if (strcmp(s, "valid"))
			return "invalid";
	}
	return all ? "ready" : "pending";
}

static json_t *identifier(const struct acme_authz *a)
{
	char name[260];

	snprintf(name, sizeof name, "%s%s", a->wildcard ? "*." : "", a->value);
	return json_pack("{s:s,s:s}", "type", "dns", "value", name);
}

/* Answers the order o (status, location: for newOrder). */
static int order_answer(struct acme_ctx *x, const struct acme_order *o, unsigned status, bool location)
{
	struct acme_authz *az = load_authz(x, o);
	json_t *ids = json_array(), *authz = json_array(), *obj;
	char when[32], url[ACME_URL_MAX + 128];
	const char *st;

	if (!az) {
		json_decref(ids);
		json_decref(authz);
		return -1;
	}
	for (size_t i = 0; i < o->n_authz; i++) {
		snprintf(url, sizeof url, "%s/authz/%lld", x->root, az[i].id);
		json_array_append_new(ids, identifier(&az[i]));
		json_array_append_new(authz, json_string(url));
	}
	st = order_status(o, az, time(NULL));
	free(az);
	rfc3339(o->expires, when);
	snprintf(url, sizeof url, "%s/order/%lld/finalize", x->root, o->id);
	obj = json_pack("{s:s,s:s,s:o,s:o,s:s}", "status", st, "expires", when, "identifiers", ids, "authorizations",
			authz, "finalize", url);
	if (obj && o->serial[0]) {
		snprintf(url, sizeof url, "%s/cert/%s", x->root, o->serial);
		json_object_set_new(obj, "certificate", json_string(url));
	}
	if (obj && !strcmp(st, "invalid") && o->error[0])
		json_object_set_new(obj, "error",
				    json_pack("{s:s,s:s}", "type", "urn:ietf:params:acme:error:badCSR", "detail", o->error));
	snprintf(url, sizeof url, "%s/order/%lld", x->root, o->id);
	return acme_json(x, status, obj, location || status == 200 ? url : NULL);
}

/* The order id, the signer's: 0, or -1 after acme_problem. */
static int own_order(struct acme_ctx *x, long long id, struct acme_order *o)
{
	int rc = acme_order_get(x->a->db, id, o);

	if (rc < 0)
		return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	if (rc || o->account != x->acct.id)
		return acme_problem(x, AP_NOT_FOUND, "no order %lld of this account", id);
	return 0;
}

static bool dns01_offered(const struct acme_ctx *x)
{
	return x->a->conf.dns01_hook[0] != '\0';
}

int acme_new_order(struct acme_ctx *x)
{
	json_t *ids = json_object_get(x->jws.body, "identifiers"), *v;
	char names[ACME_IDS_MAX][256];
	const char *list[ACME_IDS_MAX];
	size_t i, n = 0;
	struct acme_order o = {0};
	long long pending = acme_orders_pending(x->a->db, x->acct.id, time(NULL));

	if (pending < 0)
		return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	if (pending >= x->a->conf.pending_orders)
		return acme_problem(x, AP_RATE_LIMITED, "the account has %lld orders pending (acme.conf: pending_orders)",
				    pending);
	if (!json_is_array(ids) || !json_array_size(ids) || json_array_size(ids) > ACME_IDS_MAX)
		return acme_problem(x, AP_MALFORMED, "identifiers: an array of 1 to %d", ACME_IDS_MAX);
	if (json_object_get(x->jws.body, "notBefore") || json_object_get(x->jws.body, "notAfter"))
		return acme_problem(x, AP_MALFORMED, "notBefore and notAfter are not taken: template %s says %u days",
				    x->t.name, x->t.validity_days);
	if (!acme_listed(x->t.san, "dns"))
		return acme_problem(x, AP_REJECTED_ID, "template %s takes no DNS names", x->t.name);
	json_array_foreach(ids, i, v) {
		const char *type = json_string_value(json_object_get(v, "type"));
		json_t *val = json_object_get(v, "value");
		bool wild;

		if (!type || strcmp(type, "dns"))
			return acme_problem(x, AP_UNSUPPORTED_ID, "identifier %zu: only type dns is served", i);
		if (!json_is_string(val) || json_string_length(val) >= sizeof names[0] ||
		    strlen(json_string_value(val)) != json_string_length(val))
			return acme_problem(x, AP_MALFORMED, "identifier %zu: value is not a name", i);
		snprintf(names[n], sizeof names[0], "%s", json_string_value(val));
		for (char *p = names[n]; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		wild = !strncmp(names[n], "*.", 2);
		if (ca_dns_name_check((const unsigned char *)names[n], strlen(names[n]), x->t.wildcard))
			return acme_problem(x, AP_REJECTED_ID, "identifier %.255s: %s", names[n], ca_last_error());
		if (wild && !dns01_offered(x))
			return acme_problem(x, AP_REJECTED_ID,
					    "identifier %.255s: a wildcard needs dns-01, which is not offered here",
					    names[n]);
		bool dup = false;
		for (size_t k = 0; k < n; k++)
			dup |= !strcmp(names[k], names[n]);
		if (!dup)
			list[n] = names[n], n++;
	}
	o.account = x->acct.id;
	snprintf(o.template_name, sizeof o.template_name, "%s", x->t.name);
	o.created = time(NULL);
	o.expires = o.created + x->a->conf.order_lifetime;
	if (acme_order_insert(x->a->db, &o, list, n))
		return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	return order_answer(x, &o, 201, true);
}

int acme_post_order(struct acme_ctx *x, long long id)
{
	struct acme_order o;

	if (own_order(x, id, &o))
		return -1;
	return order_answer(x, &o, 200, true);
}

/* Whether name (len bytes) is one of the order's names. */
static bool ordered(const struct acme_authz *az, size_t n, const unsigned char *name, size_t len)
{
	for (size_t i = 0; i < n; i++) {
		char full[260];

		snprintf(full, sizeof full, "%s%s", az[i].wildcard ? "*." : "", az[i].value);
		if (strlen(full) == len && !strncasecmp(full, (const char *)name, len))
			return true;
	}
	return false;
}

/* The CSR names what the order names, and nothing else (RFC 8555 7.4): 0, or -1 after ca_error. */
static int csr_names(const struct ca_request *req, const struct acme_authz *az, size_t n)
{
	int count = sk_GENERAL_NAME_num(req->sans);
	bool seen[ACME_IDS_MAX] = {false};

	for (int i = 0; i < X509_NAME_entry_count(req->subject); i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(req->subject, i);
		const ASN1_STRING *s = X509_NAME_ENTRY_get_data(e);

		if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) != NID_commonName)
			return ca_error("the CSR's subject has more than a CN, which nobody validated");
		if (!ordered(az, n, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s)))
			return ca_error("the CSR's CN is not one of the order's names");
	}
	for (int i = 0; i < count; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(req->sans, i);
		const unsigned char *d;
		size_t len;

		if (g->type != GEN_DNS)
			return ca_error("the CSR asks for a subject alternative name that is not a DNS name");
		d = ASN1_STRING_get0_data(g->d.dNSName);
		len = (size_t)ASN1_STRING_length(g->d.dNSName);
		if (!ordered(az, n, d, len))
			return ca_error("the CSR names %.*s, which the order does not", (int)(len > 255 ? 255 : len), d);
		for (size_t k = 0; k < n; k++) {
			char full[260];

			snprintf(full, sizeof full, "%s%s", az[k].wildcard ? "*." : "", az[k].value);
			if (strlen(full) == len && !strncasecmp(full, (const char *)d, len))
				seen[k] = true;
		}
	}
	for (size_t k = 0; k < n; k++)
		if (!seen[k])
			return ca_error("the CSR does not name %s%s, which the order does", az[k].wildcard ? "*." : "",
					az[k].value);
	return 0;
}

int acme_finalize(struct acme_ctx *x, long long id)
{
	const char *b64 = json_string_value(json_object_get(x->jws.body, "csr"));
	struct acme_order o;
	struct acme_authz *az = NULL;
	struct ca_key_decoder *dec = NULL;
	struct ca_request *req = NULL;
	struct ca_issued out = {0};
	unsigned char *der = NULL;
	long n;
	int rc = -1, r;
	enum ca_err kind;
	char serial[80];
	const struct ca_template *t;

	if (own_order(x, id, &o) || !(az = load_authz(x, &o)))
		return -1;
	if (strcmp(order_status(&o, az, time(NULL)), "ready")) {
		acme_problem(x, AP_ORDER_NOT_READY, "order %lld is %s, not ready", id, order_status(&o, az, time(NULL)));
		goto out;
	}
	if (!b64 || strlen(b64) > CA_REQUEST_MAX / 3 * 4) {
		acme_problem(x, AP_MALFORMED, "finalize needs csr: a PKCS#10 request's DER in base64url");
		goto out;
	}
	if (!(der = malloc(CA_REQUEST_MAX)) || !(dec = ca_key_decoder_new())) {
		acme_problem(x, AP_SERVER_INTERNAL, "out of memory");
		goto out;
	}
	if ((n = acme_b64u_decode(b64, strlen(b64), der, CA_REQUEST_MAX)) <= 0) {
		acme_problem(x, AP_BAD_CSR, "csr is not base64url");
		goto out;
	}
	if (!(req = ca_request_from_bytes("the CSR", (const char *)der, (size_t)n, dec)) ||
	    csr_names(req, az, o.n_authz)) {
		acme_problem(x, AP_BAD_CSR, "%s", ca_last_error());
		goto out;
	}
	/* one finalize at a time: the second finds the order processing */
	if ((r = acme_order_move(x->a->db, id, "pending", "processing")) != 0) {
		if (r < 0)
			acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
		else
			acme_problem(x, AP_ORDER_NOT_READY, "order %lld is being finalized already", id);
		goto out;
	}
	pthread_mutex_lock(x->a->env->ca_lock);
	t = ca_template_named(x->a->env->ca, x->t.name);
	r = t ? ca_issue(x->a->env->ca, t, req, &out) : ca_fail(CA_ERR_NOT_FOUND, "template %s is gone", x->t.name);
	kind = ca_last_error_kind();
	pthread_mutex_unlock(x->a->env->ca_lock);
	if (r) {
		acme_order_set(x->a->db, id, "invalid", NULL, ca_last_error());
		acme_problem(x, kind == CA_ERR_REFUSED || kind == CA_ERR_USAGE ? AP_BAD_CSR : AP_SERVER_INTERNAL, "%s",
			     ca_last_error());
		goto out;
	}
	ca_serial_normalize(out.serial, serial, sizeof serial);
	if (acme_order_set(x->a->db, id, "valid", serial, NULL)) {
		acme_problem(x, AP_SERVER_INTERNAL, "certificate %s issued, but order %lld not updated: %s", serial, id,
			     ca_last_error());
		goto out;
	}
	snprintf(o.status, sizeof o.status, "valid");
	snprintf(o.serial, sizeof o.serial, "%s", serial);
	rc = order_answer(x, &o, 200, true);
out:
	ca_issued_free(&out);
	ca_request_free(req);
	ca_key_decoder_free(dec);
	free(der);
	free(az);
	return rc;
}

/* The authorization id, the signer's: 0, or -1 after acme_problem. */
static int own_authz(struct acme_ctx *x, long long id, struct acme_authz *a)
{
	int rc = acme_authz_get(x->a->db, id, a);

	if (rc < 0)
		return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	if (rc || a->account != x->acct.id)
		return acme_problem(x, AP_NOT_FOUND, "no authorization %lld of this account", id);
	return 0;
}

static bool offered(const struct acme_ctx *x, const struct acme_authz *a, const char *type)
{
	if (!strcmp(type, "http-01"))
		return !a->wildcard;
	return !strcmp(type, "dns-01") && dns01_offered(x);
}

static json_t *challenge_json(const struct acme_ctx *x, const struct acme_authz *a, const char *type)
{
	char url[ACME_URL_MAX + 128], when[32];
	const char *st = "pending";
	json_t *c;

	if (!strcmp(a->tried, type))
		st = strcmp(a->status, "pending") ? a->status : "processing";
	else if (strcmp(a->status, "pending"))
		st = strcmp(a->status, "valid") ? "invalid" : "pending";
	snprintf(url, sizeof url, "%s/chall/%lld/%s", x->root, a->id, type);
	c = json_pack("{s:s,s:s,s:s,s:s}", "type", type, "url", url, "token", a->token, "status", st);
	if (c && !strcmp(a->tried, type) && a->validated) {
		rfc3339(a->validated, when);
		json_object_set_new(c, "validated", json_string(when));
	}
	if (c && !strcmp(a->tried, type) && a->error[0])
		json_object_set_new(c, "error", json_pack("{s:s+,s:s}", "type", "urn:ietf:params:acme:error:",
							  a->error_type, "detail", a->error));
	return c;
}

static int authz_answer(struct acme_ctx *x, const struct acme_authz *a)
{
	json_t *ch = json_array(), *obj;
	char when[32];

	for (int i = 0; i < 2; i++) {
		const char *type = i ? "dns-01" : "http-01";

		if (offered(x, a, type))
			json_array_append_new(ch, challenge_json(x, a, type));
	}
	rfc3339(a->expires, when);
	obj = json_pack("{s:o,s:s,s:s,s:o}", "identifier", json_pack("{s:s,s:s}", "type", "dns", "value", a->value),
			"status", authz_status(a, time(NULL)), "expires", when, "challenges", ch);
	if (obj && a->wildcard)
		json_object_set_new(obj, "wildcard", json_true());
	if (acme_json(x, 200, obj, NULL))
		return -1;
	/* a validation under way takes a second or so: poll again then (clients wait 3 s without it) */
	if (a->tried[0] && !strcmp(a->status, "pending"))
		serve_resp_header(x->resp, "Retry-After", "1");
	return 0;
}

int acme_post_authz(struct acme_ctx *x, long long id)
{
	struct acme_authz a;
	json_t *status = json_object_get(x->jws.body, "status");

	if (own_authz(x, id, &a))
		return -1;
	if (status) {
		/* RFC 8555 7.5.2: a client gives up an authorization it no longer wants */
		if (!json_is_string(status) || strcmp(json_string_value(status), "deactivated"))
			return acme_problem(x, AP_MALFORMED, "an authorization's status can only be set to \"deactivated\"");
		if (acme_authz_set_status(x->a->db, id, "deactivated"))
			return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
		snprintf(a.status, sizeof a.status, "deactivated");
	}
	return authz_answer(x, &a);
}

int acme_post_challenge(struct acme_ctx *x, long long id, const char *type)
{
	struct acme_authz a;
	struct acme_job job = {.authz = id};
	char up[ACME_URL_MAX + 128];
	int r;

	if (own_authz(x, id, &a))
		return -1;
	if (!offered(x, &a, type))
		return acme_problem(x, AP_NOT_FOUND, "authorization %lld offers no %s challenge", id, type);
	/* an empty payload only asks; {} asks for validation (RFC 8555 7.5.1), once */
	if (!strcmp(authz_status(&a, time(NULL)), "pending") && x->jws.body && !a.tried[0]) {
		snprintf(job.type, sizeof job.type, "%s", type);
		snprintf(job.name, sizeof job.name, "%s", a.value);
		snprintf(job.token, sizeof job.token, "%s", a.token);
		/* the key authorization under the account's key now (RFC 8555 8.1) */
		snprintf(job.key_auth, sizeof job.key_auth, "%s.%s", a.token, x->acct.thumb);
		r = acme_authz_try(x->a->db, id, type);
		if (r < 0)
			return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
		if (r == 0 && acme_validator_queue(x->a->validator, &job)) {
			acme_authz_try_undo(x->a->db, id, type);
			return acme_problem(x, AP_RATE_LIMITED, "%u validations are waiting: try again later",
					    x->a->conf.queue);
		}
		if (acme_authz_get(x->a->db, id, &a))
			return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	}
	snprintf(up, sizeof up, "%s/authz/%lld", x->root, id);
	if (acme_json(x, 200, challenge_json(x, &a, type), NULL))
		return -1;
	serve_resp_header(x->resp, "Link", "<%s>;rel=\"up\"", up);
	return 0;
}

int acme_post_cert(struct acme_ctx *x, const char *serial)
{
	struct acme_order o;
	struct ca_db_cert row;
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	BIO *bio = BIO_new(BIO_s_mem());
	X509 *cert = NULL;
	STACK_OF(X509) *chain;
	char *pem;
	long pem_len;
	int r, rc = -1;

	r = acme_order_by_serial(x->a->db, serial, &o);
	if (r < 0) {
		acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
		goto out;
	}
	if (r || o.account != x->acct.id || strcmp(o.template_name, x->t.name)) {
		acme_problem(x, AP_NOT_FOUND, "no certificate %s ordered by this account", serial);
		goto out;
	}
	pthread_mutex_lock(x->a->env->ca_lock);
	r = ca_find_cert(x->a->env->ca, serial, &row, &der, &len);
	p = der;
	if (!r && bio && (cert = d2i_X509(NULL, &p, (long)len)) && PEM_write_bio_X509(bio, cert)) {
		/* the chain up to the root: what certbot writes to chain.pem and fullchain.pem */
		chain = ca_chain(x->a->env->ca);
		for (int i = 0; i < sk_X509_num(chain) && r == 0; i++)
			r = PEM_write_bio_X509(bio, sk_X509_value(chain, i)) ? 0 : -1;
	} else if (!r) {
		r = ca_error("certificate %s: cannot be encoded", serial);
	}
	pthread_mutex_unlock(x->a->env->ca_lock);
	if (r) {
		acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
		goto out;
	}
	pem_len = BIO_get_mem_data(bio, &pem);
	acme_headers(x);
	serve_resp_set(x->resp, 200, "application/pem-certificate-chain", pem, (size_t)pem_len);
	rc = 0;
out:
	X509_free(cert);
	BIO_free(bio);
	free(der);
	return rc;
}
