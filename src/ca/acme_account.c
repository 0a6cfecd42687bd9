/*
 * ACME accounts (RFC 8555 7.3): newAccount, with external account binding
 * where acme.conf asks for it (7.3.4: an EAB key made by `keyward-ca
 * acme-eab TEMPLATE` binds exactly one account), the account's update and
 * deactivation, key rollover (7.3.5), and revokeCert (7.6) by the account
 * that ordered the certificate or by the certificate's own key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "ca/acme.h"

#define CONTACTS_MAX 8

/* The account object (RFC 8555 7.1.2), its orders list at URL/orders. */
static json_t *account_json(const struct acme_account *a, const char *url)
{
	json_t *contact = json_loads(a->contact, 0, NULL);
	char orders[ACME_URL_MAX + 160];

	snprintf(orders, sizeof orders, "%s/orders", url);
	return json_pack("{s:s,s:o,s:s}", "status", a->status, "contact", contact ? contact : json_array(), "orders",
			 orders);
}

static void account_url(const struct acme_ctx *x, long long id, char *out, size_t size)
{
	snprintf(out, size, "%s/acct/%lld", x->root, id);
}

/* The payload's contact (absent: []), checked: mailto: URLs of printable ASCII. As JSON text into out. */
static int contacts(struct acme_ctx *x, char *out, size_t size)
{
	json_t *c = json_object_get(x->jws.body, "contact"), *v;
	size_t i;
	char *text;

	if (!c) {
		snprintf(out, size, "[]");
		return 0;
	}
	if (!json_is_array(c) || json_array_size(c) > CONTACTS_MAX)
		return acme_problem(x, AP_MALFORMED, "contact is not an array of at most %d URLs", CONTACTS_MAX);
	json_array_foreach(c, i, v) {
		const char *s = json_string_value(v);

		if (!s || strncmp(s, "mailto:", 7) || strlen(s) > 254 || strlen(s) != json_string_length(v))
			return acme_problem(x, AP_MALFORMED, "contact %zu is not a mailto: URL", i);
		for (const char *p = s; *p; p++)
			if (*p <= ' ' || *p > '~' || *p == ',')
				return acme_problem(x, AP_MALFORMED, "contact %zu has a character a mailto: URL here may not",
						    i);
	}
	text = json_dumps(c, JSON_COMPACT);
	if (!text || strlen(text) >= size) {
		free(text);
		return acme_problem(x, AP_MALFORMED, "contact is too long");
	}
	snprintf(out, size, "%s", text);
	free(text);
	return 0;
}

/* kid's EAB key, unsealed (the token's session opened at start: the seal's lock, not the CA's). */
static int eab_key(struct acme_ctx *x, const char *kid, unsigned char key[ACME_EAB_KEY_LEN])
{
	int rc;

	pthread_mutex_lock(&x->a->seal_lock);
	rc = acme_eab_key(x->a->env->ca, &x->a->seal, x->a->db, x->t.name, kid, key);
	pthread_mutex_unlock(&x->a->seal_lock);
	return rc;
}

/*
 * The externalAccountBinding (RFC 8555 7.3.4): a JWS by the EAB key (HS256,
 * kid the EAB kid, no nonce, the same url) whose payload is the account's
 * jwk. Its kid into kid.
 */
static int check_eab(struct acme_ctx *x, char kid[ACME_EAB_KID_LEN + 1])
{
	json_t *eab = json_object_get(x->jws.body, "externalAccountBinding");
	struct acme_jws in;
	unsigned char key[ACME_EAB_KEY_LEN];
	char *text;
	enum acme_prob p;
	int rc;

	if (!eab)
		return acme_problem(x, AP_EAB_REQUIRED,
				    "template %s takes accounts with an external account binding only (RFC 8555 7.3.4)",
				    x->t.name);
	if (!(text = json_dumps(eab, JSON_COMPACT)))
		return acme_problem(x, AP_SERVER_INTERNAL, "out of memory");
	p = acme_jws_parse((const unsigned char *)text, strlen(text), &in);
	free(text);
	if (p)
		return acme_problem(x, AP_MALFORMED, "externalAccountBinding: %s", ca_last_error());
	rc = -1;
	if (strcmp(in.alg, "HS256") || in.nonce[0] || in.jwk || !in.kid[0] || strlen(in.kid) > ACME_EAB_KID_LEN) {
		acme_problem(x, AP_MALFORMED, "externalAccountBinding: not an HS256 JWS with a kid and without a nonce");
	} else if (strcmp(in.url, x->jws.url)) {
		acme_problem(x, AP_UNAUTHORIZED, "externalAccountBinding: signed for another url");
	} else if (!in.body || !json_equal(in.body, x->jws.jwk)) {
		acme_problem(x, AP_UNAUTHORIZED, "externalAccountBinding: its payload is not the account's jwk");
	} else if ((rc = eab_key(x, in.kid, key)) != 0) {
		if (rc < 0)
			acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
		else
			acme_problem(x, AP_UNAUTHORIZED,
				     "externalAccountBinding: kid %s is not an unused EAB key of template %s", in.kid,
				     x->t.name);
		rc = -1;
	} else if ((p = acme_jws_verify_hmac(&in, key, sizeof key))) {
		acme_problem(x, p, "externalAccountBinding: %s", ca_last_error());
		rc = -1;
	} else {
		snprintf(kid, ACME_EAB_KID_LEN + 1, "%s", in.kid);
	}
	OPENSSL_cleanse(key, sizeof key);
	acme_jws_cleanup(&in);
	return rc;
}

int acme_new_account(struct acme_ctx *x)
{
	struct acme_account a = {0};
	json_t *only = json_object_get(x->jws.body, "onlyReturnExisting");
	char url[ACME_URL_MAX + 128], *jwk;
	int rc;
	long long n;

	if (!x->jws.body)
		return acme_problem(x, AP_MALFORMED, "newAccount needs a JSON object");
	rc = acme_account_find(x->a->db, x->t.name, x->jws.thumb, &a);
	if (rc < 0)
		return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	if (rc == 0) {
		/* the key has an account already: its URL (RFC 8555 7.3.1), nothing changed */
		account_url(x, a.id, url, sizeof url);
		return acme_json(x, 200, account_json(&a, url), url);
	}
	if (json_is_true(only))
		return acme_problem(x, AP_ACCOUNT_DNE, "no account of template %s has this key", x->t.name);
	if (contacts(x, a.contact, sizeof a.contact))
		return -1;
	/* an unauthenticated peer makes accounts: a few an hour from one address */
	n = acme_accounts_since(x->a->db, x->req->remote, time(NULL) - 3600);
	if (n < 0)
		return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	if (n >= x->a->conf.accounts_per_hour)
		return acme_problem(x, AP_RATE_LIMITED, "%lld accounts from %s in the last hour (acme.conf: accounts_per_hour)",
				    n, x->req->remote);
	snprintf(a.remote, sizeof a.remote, "%s", x->req->remote);
	if (acme_listed(x->a->conf.eab_templates, x->t.name) && check_eab(x, a.eab_kid))
		return -1;
	if (!(jwk = json_dumps(x->jws.jwk, JSON_COMPACT | JSON_SORT_KEYS)) || strlen(jwk) >= sizeof a.jwk) {
		free(jwk);
		return acme_problem(x, AP_BAD_PUBKEY, "the jwk is too long");
	}
	snprintf(a.jwk, sizeof a.jwk, "%s", jwk);
	free(jwk);
	snprintf(a.template_name, sizeof a.template_name, "%s", x->t.name);
	snprintf(a.thumb, sizeof a.thumb, "%s", x->jws.thumb);
	snprintf(a.status, sizeof a.status, "valid");
	a.created = time(NULL);
	rc = acme_account_insert(x->a->db, &a);
	if (rc < 0)
		return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	if (rc)
		return acme_problem(x, AP_UNAUTHORIZED, "EAB kid %s was used by another account meanwhile", a.eab_kid);
	account_url(x, a.id, url, sizeof url);
	return acme_json(x, 201, account_json(&a, url), url);
}

int acme_post_account(struct acme_ctx *x, long long id)
{
	json_t *status = json_object_get(x->jws.body, "status");
	char url[ACME_URL_MAX + 128];

	if (id != x->acct.id)
		return acme_problem(x, AP_UNAUTHORIZED, "the account is not the signer's");
	if (status) {
		if (!json_is_string(status) || strcmp(json_string_value(status), "deactivated"))
			return acme_problem(x, AP_MALFORMED, "an account's status can only be set to \"deactivated\"");
		if (acme_account_set_status(x->a->db, id, "deactivated"))
			return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
		snprintf(x->acct.status, sizeof x->acct.status, "deactivated");
	}
	if (json_object_get(x->jws.body, "contact")) {
		if (contacts(x, x->acct.contact, sizeof x->acct.contact))
			return -1;
		if (acme_account_set_contact(x->a->db, id, x->acct.contact))
			return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	}
	account_url(x, id, url, sizeof url);
	return acme_json(x, 200, account_json(&x->acct, url), url);
}

int acme_account_orders(struct acme_ctx *x, long long id)
{
	long long ids[ACME_ORDERS_LIST];
	json_t *list = json_array();
	char url[ACME_URL_MAX + 128];
	long n;

	if (id != x->acct.id) {
		json_decref(list);
		return acme_problem(x, AP_UNAUTHORIZED, "the account is not the signer's");
	}
	if ((n = acme_orders_of(x->a->db, id, time(NULL), ids, ACME_ORDERS_LIST)) < 0) {
		json_decref(list);
		return acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
	}
	for (long i = 0; i < n; i++) {
		snprintf(url, sizeof url, "%s/order/%lld", x->root, ids[i]);
		json_array_append_new(list, json_string(url));
	}
	return acme_json(x, 200, json_pack("{s:o}", "orders", list), NULL);
}

int acme_key_change(struct acme_ctx *x)
{
	struct acme_jws in;
	json_t *old;
	EVP_PKEY *old_key = NULL;
	char old_thumb[ACME_THUMB_LEN + 1], *text, *jwk = NULL, url[ACME_URL_MAX + 128];
	enum acme_prob p;
	int rc = -1;

	if (!x->jws.body || !(text = json_dumps(x->jws.body, JSON_COMPACT)))
		return acme_problem(x, AP_MALFORMED, "keyChange's payload is the inner JWS");
	p = acme_jws_parse((const unsigned char *)text, strlen(text), &in);
	free(text);
	if (p)
		return acme_problem(x, p, "keyChange's inner JWS: %s", ca_last_error());
	account_url(x, x->acct.id, url, sizeof url);
	old = json_object_get(in.body, "oldKey");
	if (!in.jwk || in.nonce[0] || !strcmp(in.alg, "HS256")) {
		acme_problem(x, AP_MALFORMED, "keyChange's inner JWS: signed by the new key (jwk), no nonce");
	} else if (strcmp(in.url, x->jws.url)) {
		acme_problem(x, AP_MALFORMED, "keyChange's inner JWS: signed for another url");
	} else if ((p = acme_jws_verify(&in, in.key))) {
		acme_problem(x, p == AP_MALFORMED ? AP_UNAUTHORIZED : p, "keyChange's inner JWS: %s", ca_last_error());
	} else if (!json_is_string(json_object_get(in.body, "account")) ||
		   strcmp(json_string_value(json_object_get(in.body, "account")), url)) {
		acme_problem(x, AP_UNAUTHORIZED, "keyChange: the inner payload's account is not the signer's");
	} else if (!old || acme_jwk_key(old, &old_key, old_thumb) || strcmp(old_thumb, x->acct.thumb)) {
		acme_problem(x, AP_UNAUTHORIZED, "keyChange: oldKey is not the account's key");
	} else if (!(jwk = json_dumps(in.jwk, JSON_COMPACT | JSON_SORT_KEYS)) || strlen(jwk) >= sizeof x->acct.jwk) {
		acme_problem(x, AP_BAD_PUBKEY, "the new jwk is too long");
	} else if ((rc = acme_account_set_key(x->a->db, x->acct.id, in.thumb, jwk)) != 0) {
		struct acme_account other;
		char where[ACME_URL_MAX + 128];

		if (rc > 0 && !acme_account_find(x->a->db, x->t.name, in.thumb, &other)) {
			account_url(x, other.id, where, sizeof where);
			acme_problem(x, AP_CONFLICT, "the new key is another account's");
			serve_resp_header(x->resp, "Location", "%s", where);
		} else {
			acme_problem(x, AP_SERVER_INTERNAL, "%s", rc < 0 ? ca_last_error() : "the key did not change");
		}
		rc = -1;
	} else {
		snprintf(x->acct.jwk, sizeof x->acct.jwk, "%s", jwk);
		snprintf(x->acct.thumb, sizeof x->acct.thumb, "%s", in.thumb);
		rc = acme_json(x, 200, account_json(&x->acct, url), url);
	}
	free(jwk);
	EVP_PKEY_free(old_key);
	acme_jws_cleanup(&in);
	return rc;
}

/* RFC 5280 reasons a subscriber may give: not caCompromise, certificateHold (6), removeFromCRL, aACompromise. */
static bool reason_ok(long long r)
{
	return r == 0 || r == 1 || r == 3 || r == 4 || r == 5 || r == 9;
}

int acme_revoke_cert(struct acme_ctx *x)
{
	const char *b64 = json_string_value(json_object_get(x->jws.body, "certificate"));
	json_t *reason = json_object_get(x->jws.body, "reason");
	unsigned char *der = NULL, *stored = NULL;
	const unsigned char *p;
	size_t stored_len = 0;
	long n;
	X509 *cert = NULL;
	char hex[80], serial[80];
	struct ca_db_cert row;
	struct acme_order o;
	int rc = -1, r;
	long long code = reason ? json_integer_value(reason) : 0;

	if (!b64 || strlen(b64) > CA_REQUEST_MAX)
		return acme_problem(x, AP_MALFORMED, "revokeCert needs the certificate (base64url DER)");
	if (reason && (!json_is_integer(reason) || !reason_ok(code)))
		return acme_problem(x, AP_BAD_REVOCATION_REASON,
				    "reason must be 0, 1, 3, 4, 5 or 9 (RFC 5280 5.3.1; not caCompromise or hold)");
	if (!(der = malloc(strlen(b64) / 4 * 3 + 3)))
		return acme_problem(x, AP_SERVER_INTERNAL, "out of memory");
	n = acme_b64u_decode(b64, strlen(b64), der, strlen(b64) / 4 * 3 + 3);
	p = der;
	if (n <= 0 || !(cert = d2i_X509(NULL, &p, n)) || p != der + n) {
		acme_problem(x, AP_MALFORMED, "certificate is not base64url of one DER certificate");
		goto out;
	}
	ca_serial_hex(X509_get0_serialNumber(cert), hex, sizeof hex);
	ca_serial_normalize(hex, serial, sizeof serial); /* as the database and the orders keep it */
	pthread_mutex_lock(x->a->env->ca_lock);
	r = ca_find_cert(x->a->env->ca, serial, &row, &stored, &stored_len);
	pthread_mutex_unlock(x->a->env->ca_lock);
	/* the certificate exactly as issued here: a forgery with a borrowed serial names nothing */
	if (r || stored_len != (size_t)n || memcmp(stored, der, stored_len) || strcmp(row.template_name, x->t.name)) {
		acme_problem(x, AP_MALFORMED, "this directory did not issue that certificate");
		goto out;
	}
	if (x->have_acct) {
		r = acme_order_by_serial(x->a->db, serial, &o);
		if (r < 0) {
			acme_problem(x, AP_SERVER_INTERNAL, "%s", ca_last_error());
			goto out;
		}
		if (r || o.account != x->acct.id) {
			acme_problem(x, AP_UNAUTHORIZED, "the account did not order certificate %s", serial);
			goto out;
		}
	} else if (EVP_PKEY_eq(X509_get0_pubkey(cert), x->jws.key) != 1) {
		acme_problem(x, AP_UNAUTHORIZED, "the jwk is not certificate %s's key", serial);
		goto out;
	}
	pthread_mutex_lock(x->a->env->ca_lock);
	r = ca_revoke(x->a->env->ca, serial, (int)code, 0);
	pthread_mutex_unlock(x->a->env->ca_lock);
	if (r) {
		acme_problem(x, ca_last_error_kind() == CA_ERR_CONFLICT ? AP_ALREADY_REVOKED : AP_SERVER_INTERNAL, "%s",
			     ca_last_error());
		goto out;
	}
	rc = acme_json(x, 200, json_object(), NULL);
out:
	X509_free(cert);
	free(der);
	free(stored);
	return rc;
}
