/*
 * External account binding keys (RFC 8555 7.3.4) made for an operator:
 * `keyward-ca acme-eab TEMPLATE` hands the kid and HMAC key to whoever may
 * enroll under that template, once. The key binds the first account that
 * uses it; its making is audited without the key.
 *
 * The server checks an HMAC with the key itself, so it needs the key in
 * plain, and a hash would not do: the database holds it sealed by the CA's
 * token (seal.c, the key CMP's secrets are sealed under), its associated
 * data binding it to its kid, its template and the CA's key. It is
 * unsealed for the one check and wiped. Never in ca.conf, so config export
 * never carries it. Keys an older keyward-ca stored in plain are sealed in
 * place when ACME next opens its tables with the CA (acme_eab_seal_old).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ca/acme.h"
#include "ca/seal.h"

/* What the seal's associated data calls an EAB key: never changed, or the keys made before do not unseal. */
static const struct ca_seal_kind kind = {"keyward-ca acme eab v1", "EAB key", "keyward-ca acme-eab TEMPLATE"};

/* The row a key is sealed for: kid (base64url, no '|') first, then the template. */
static int binding(const char *kid, const char *template_name, char *out, size_t size)
{
	int n = snprintf(out, size, "%s|%s", kid, template_name);

	return n < 0 || (size_t)n >= size ? ca_usage_error("EAB kid or template name too long") : 0;
}

struct sealer {
	struct ca *ca;
	struct ca_seal *seal;
};

static int seal_one(void *arg, const char *template_name, const char *kid, const unsigned char *key,
		    unsigned char iv[ACME_EAB_IV_LEN], unsigned char *out, size_t *out_len)
{
	struct sealer *s = arg;
	char b[CA_NAME_MAX + 80];

	return binding(kid, template_name, b, sizeof b) ||
			       ca_seal(s->ca, s->seal, &kind, b, key, ACME_EAB_KEY_LEN, iv, out, out_len)
		       ? -1
		       : 0;
}

int acme_eab_seal_old(struct ca *ca, struct ca_seal *seal, struct acme_db *db)
{
	struct sealer s = {ca, seal};
	int n = acme_eab_migrate(db, seal_one, &s);

	if (n < 0)
		return ca_error("sealing the EAB keys an older keyward-ca stored in plain (nothing changed): %s",
				ca_last_error());
	if (n > 0 &&
	    (ca_db_begin(ca->db) ||
	     ca_db_audit(ca->db, "acme-eab", "%d EAB keys stored in plain by an older keyward-ca sealed under %s", n,
			 seal->label) ||
	     ca_db_commit(ca->db))) {
		ca_db_rollback(ca->db);
		return -1;
	}
	return n;
}

int acme_eab_create(struct ca *ca, const char *template_name, char kid[ACME_EAB_KID_LEN + 1],
		    char key_b64[ACME_EAB_KEY_B64 + 1])
{
	struct acme_db *db = NULL;
	struct ca_seal seal;
	struct sealer s = {ca, &seal};
	unsigned char key[ACME_EAB_KEY_LEN], iv[ACME_EAB_IV_LEN], sealed[ACME_EAB_SEALED_MAX];
	size_t len = sizeof sealed;
	const struct ca_template *t = ca_template_named(ca, template_name);
	int rc = -1;

	if (!t)
		return ca_fail(CA_ERR_NOT_FOUND, "no template %s (keyward-ca templates list)", template_name);
	if (t->ca || t->manual)
		return ca_fail(CA_ERR_REFUSED, "template %s is not one ACME serves (CA or manual approval)",
			       template_name);
	if (ca_check_active(ca, "an ACME EAB key") || ca_seal_init(ca, &seal))
		return -1;
	if (acme_db_open(ca_config(ca), &db) || acme_eab_seal_old(ca, &seal, db) < 0)
		goto out;
	if (RAND_bytes(key, sizeof key) != 1) {
		ca_error("no random bytes for a key");
		goto out;
	}
	acme_eab_kid(kid);
	if (seal_one(&s, template_name, kid, key, iv, sealed, &len) ||
	    acme_eab_insert(db, template_name, kid, iv, sealed, len))
		goto out;
	if (ca_db_begin(ca->db) ||
	    ca_db_audit(ca->db, "acme-eab", "template=%s kid=%s (sealed under %s)", template_name, kid, seal.label) ||
	    ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		goto out;
	}
	acme_b64u_encode(key, sizeof key, key_b64);
	rc = 0;
out:
	OPENSSL_cleanse(key, sizeof key);
	acme_db_close(db);
	ca_seal_cleanup(&seal);
	return rc;
}

int acme_eab_key(struct ca *ca, struct ca_seal *seal, struct acme_db *db, const char *template_name, const char *kid,
		 unsigned char key[ACME_EAB_KEY_LEN])
{
	unsigned char iv[ACME_EAB_IV_LEN], sealed[ACME_EAB_SEALED_MAX], plain[ACME_EAB_SEALED_MAX];
	char b[CA_NAME_MAX + 80];
	size_t len = 0, n = sizeof plain;
	int rc = acme_eab_sealed(db, template_name, kid, iv, sealed, &len);

	if (rc)
		return rc;
	if (binding(kid, template_name, b, sizeof b) || ca_unseal(ca, seal, &kind, b, iv, sealed, len, plain, &n))
		rc = -1;
	else if (n != ACME_EAB_KEY_LEN)
		rc = ca_fail(CA_ERR_CONFLICT, "the EAB key of kid %s unseals to %zu bytes, not %d", kid, n,
			     ACME_EAB_KEY_LEN);
	else
		memcpy(key, plain, ACME_EAB_KEY_LEN);
	OPENSSL_cleanse(plain, sizeof plain);
	return rc;
}
