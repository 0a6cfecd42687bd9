/*
 * keyward-ca: submit, approve, deny. A certificate is signed first, then
 * recorded with its audit row in one transaction, and reported only after
 * the commit: a crash before it leaves nothing anyone was told of.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/cli.h"

/* Issues req under t, records it (and request_id's new state) in one transaction; prints the serial. */
static int issue(struct ca *ca, const struct ca_template *t, X509_REQ *req, long long request_id, const char *out,
		 bool json)
{
	struct ca_db_cert row = {.request_id = request_id, .reason = -1};
	X509 *x = ca_cert_issue(&ca->conf, t, req, ca_cert(ca), ca->priv);
	unsigned char *der = NULL;
	int len, rc = -1;

	if (!x)
		return -1;
	ca_serial_hex(X509_get0_serialNumber(x), row.serial, sizeof row.serial);
	X509_NAME_oneline(X509_get_subject_name(x), row.subject, sizeof row.subject);
	snprintf(row.template_name, sizeof row.template_name, "%s", t->name);
	{
		struct tm tm;

		ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm);
		row.not_before = timegm(&tm);
		ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
		row.not_after = timegm(&tm);
	}
	if ((len = i2d_X509(x, &der)) <= 0) {
		ca_error("cannot encode the certificate");
		goto out;
	}
	if (ca_db_begin(ca->db))
		goto out;
	if (ca_db_insert_cert(ca->db, &row, der, (size_t)len) ||
	    (request_id > 0 && ca_db_set_request(ca->db, request_id, "issued", row.serial)) ||
	    ca_db_audit(ca->db, "issue", "serial %s template %s subject %s", row.serial, t->name, row.subject) ||
	    ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		goto out;
	}
	/* reported only once committed: a crash before this line issued nothing anyone saw */
	if (json)
		printf("{\"status\": \"issued\", \"serial\": \"%s\"}\n", row.serial);
	else
		printf("issued %s\n", row.serial);
	fflush(stdout);
	rc = write_cert(out, x);
out:
	OPENSSL_free(der);
	X509_free(x);
	return rc;
}

/* ---- setup ---- */

int cmd_submit(const struct opts *o, const char *file)
{
	const struct ca_template *t;
	unsigned char *der = NULL;
	size_t der_len = 0;
	X509_REQ *req = NULL;
	struct ca ca;
	int rc = -1;

	if (!o->template_name)
		return ca_error("submit needs --template NAME (templates list)");
	if (ca_open(o, true, true, &ca))
		goto out;
	if (!(t = ca_template_find(&ca.conf, o->template_name))) {
		ca_error("no template \"%s\" (templates list)", o->template_name);
		goto out;
	}
	if (!(req = read_request(file, &der, &der_len)))
		goto out;
	if (!t->manual) {
		rc = issue(&ca, t, req, 0, o->out, o->json);
		goto out;
	}
	/* checked now, so a request that can never be issued is not left pending */
	if (X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1) {
		ERR_clear_error();
		ca_error("the request's signature does not verify with its public key");
		goto out;
	}
	if (ca_template_check(t, req) || ca_db_begin(ca.db))
		goto out;
	{
		long long id = ca_db_insert_request(ca.db, der, der_len, t->name, "pending");

		if (id < 0 || ca_db_audit(ca.db, "submit", "request %lld pending for template %s", id, t->name) ||
		    ca_db_commit(ca.db)) {
			ca_db_rollback(ca.db);
			goto out;
		}
		printf(o->json ? "{\"status\": \"pending\", \"request\": %lld}\n" : "pending %lld\n", id);
	}
	rc = 0;
out:
	OPENSSL_free(der);
	X509_REQ_free(req);
	ca_close(&ca);
	return rc;
}

int cmd_decide(const struct opts *o, const char *id_text, bool approve)
{
	char tname[64], status[16], *end;
	unsigned char *csr = NULL;
	const unsigned char *p;
	size_t len = 0;
	long long id = strtoll(id_text, &end, 10);
	const struct ca_template *t;
	X509_REQ *req = NULL;
	struct ca ca;
	int rc = -1, found;

	if (*end || id <= 0)
		return ca_error("\"%s\" is not a request number", id_text);
	if (ca_open(o, approve, approve, &ca))
		goto out;
	found = ca_db_get_request(ca.db, id, &csr, &len, tname, sizeof tname, status, sizeof status);
	if (found) {
		if (found > 0)
			ca_error("no request %lld", id);
		goto out;
	}
	if (strcmp(status, "pending")) {
		ca_error("request %lld is %s, not pending", id, status);
		goto out;
	}
	if (!approve) {
		if (ca_db_begin(ca.db) || ca_db_set_request(ca.db, id, "denied", NULL) ||
		    ca_db_audit(ca.db, "deny", "request %lld denied", id) || ca_db_commit(ca.db)) {
			ca_db_rollback(ca.db);
			goto out;
		}
		printf("denied %lld\n", id);
		rc = 0;
		goto out;
	}
	if (!(t = ca_template_find(&ca.conf, tname))) {
		ca_error("request %lld names template \"%s\", which no longer exists", id, tname);
		goto out;
	}
	p = csr;
	if (!(req = d2i_X509_REQ(NULL, &p, (long)len))) {
		ca_error("request %lld: stored request unreadable", id);
		goto out;
	}
	rc = issue(&ca, t, req, id, o->out, o->json);
out:
	free(csr);
	X509_REQ_free(req);
	ca_close(&ca);
	return rc;
}
