/*
 * External account binding keys (RFC 8555 7.3.4) made for an operator:
 * `keyward-ca acme-eab TEMPLATE` hands the kid and HMAC key to whoever may
 * enroll under that template, once. The key lives in the database (never
 * in ca.conf, so config export never carries it), binds the first account
 * that uses it, and its making is audited without the key.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "ca/acme.h"

int acme_eab_create(struct ca *ca, const char *template_name, char kid[ACME_EAB_KID_LEN + 1],
		    char key_b64[ACME_EAB_KEY_B64 + 1])
{
	struct acme_db *db = NULL;
	unsigned char key[ACME_EAB_KEY_LEN];
	const struct ca_template *t = ca_template_named(ca, template_name);
	int rc = -1;

	if (!t)
		return ca_fail(CA_ERR_NOT_FOUND, "no template %s (keyward-ca templates list)", template_name);
	if (t->ca || t->manual)
		return ca_fail(CA_ERR_REFUSED, "template %s is not one ACME serves (CA or manual approval)",
			       template_name);
	if (ca_check_active(ca, "an ACME EAB key") || acme_db_open(ca_config(ca), &db))
		return -1;
	if (acme_eab_new(db, template_name, kid, key))
		goto out;
	if (ca_db_begin(ca->db) || ca_db_audit(ca->db, "acme-eab", "template=%s kid=%s", template_name, kid) ||
	    ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		goto out;
	}
	acme_b64u_encode(key, sizeof key, key_b64);
	rc = 0;
out:
	OPENSSL_cleanse(key, sizeof key);
	acme_db_close(db);
	return rc;
}
