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

int issued_fill(struct issued *is, X509 *x, const struct ca_template *t, long long request_id)
{
	struct tm tm;
	unsigned char *der = NULL;
	int len;

	memset(is, 0, sizeof *is);
	is->row.request_id = request_id;
	is->row.reason = -1;
	ca_serial_hex(X509_get0_serialNumber(x), is->row.serial, sizeof is->row.serial);
	X509_NAME_oneline(X509_get_subject_name(x), is->row.subject, sizeof is->row.subject);
	snprintf(is->row.template_name, sizeof is->row.template_name, "%s", t->name);
	ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm);
	is->row.not_before = timegm(&tm);
	ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
	is->row.not_after = timegm(&tm);
	len = i2d_X509(x, &der);
	X509_free(x);
	if (len <= 0)
		return ca_error("cannot encode the certificate");
	is->der = der;
	is->der_len = (size_t)len;
	return 0;
}

void issued_free(struct issued *is)
{
	OPENSSL_free(is->der);
	memset(is, 0, sizeof *is);
}

int issued_record(struct ca *ca, struct issued *is, size_t n)
{
	if (ca_db_begin(ca->db))
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct ca_db_cert *r = &is[i].row;

		if (ca_db_insert_cert(ca->db, r, is[i].der, is[i].der_len) ||
		    (r->request_id > 0 && ca_db_set_request(ca->db, r->request_id, "issued", r->serial)) ||
		    ca_db_audit(ca->db, "issue", "serial %s template %s subject %s%s", r->serial, r->template_name,
				r->subject, r->request_id > 0 ? " (approved request)" : "") ||
		    (r->request_id > 0 &&
		     ca_db_audit(ca->db, "approve", "request %lld issued as serial %s", r->request_id, r->serial))) {
			ca_db_rollback(ca->db);
			return -1;
		}
	}
	if (ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		return -1;
	}
	return 0;
}

/* Issues req under t, records it (and request_id's new state) in one transaction; prints the serial. */
static int issue(struct ca *ca, const struct ca_template *t, const struct ca_request *req, long long request_id,
		 const char *out, bool json)
{
	struct ca_issuer issuer;
	struct issued is;
	int rc = -1;
	X509 *x;

	if (ca_issuer_init(&issuer, &ca->conf, t, ca_cert(ca)))
		return -1;
	x = ca_cert_issue(&issuer, req, ca->priv);
	ca_issuer_clear(&issuer);
	if (!x)
		return -1;
	if (!issued_fill(&is, x, t, request_id) && !issued_record(ca, &is, 1)) {
		/* reported only once committed: a crash before this line issued nothing anyone saw */
		if (json)
			printf("{\"status\": \"issued\", \"serial\": \"%s\"}\n", is.row.serial);
		else
			printf("issued %s\n", is.row.serial);
		fflush(stdout);
		rc = write_cert(out, is.der, is.der_len);
	}
	issued_free(&is);
	return rc;
}

/* Whether the directory of path accepts a new file. */
static bool dir_writable(const char *path)
{
	char dir[CA_PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (!slash)
		return access(".", W_OK) == 0;
	snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) + (slash == path), path);
	return access(dir, W_OK) == 0;
}

/* The requests of files, each parsed and checked against t now: one bad request issues none. */
static int read_requests(const struct ca_template *t, int n, char **files, struct ca_request **reqs)
{
	struct ca_key_decoder *d = ca_key_decoder_new();
	int rc = d ? 0 : -1;

	for (int i = 0; i < n && !rc; i++) {
		if (!(reqs[i] = ca_request_read(files[i], d)))
			rc = -1;
		else if (ca_request_check(t, reqs[i]))
			rc = ca_error("%s: %s", files[i], ca_last_error());
	}
	ca_key_decoder_free(d);
	return rc;
}

/* A request for a template that wants approval: recorded as pending, as it was sent. */
static int submit_pending(struct ca *ca, const struct ca_template *t, const struct ca_request *req, bool json)
{
	long long id;

	if (ca_db_begin(ca->db))
		return -1;
	id = ca_db_insert_request(ca->db, req->der, req->der_len, t->name, "pending");
	if (id < 0 || ca_db_audit(ca->db, "submit", "request %lld pending for template %s", id, t->name) ||
	    ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		return -1;
	}
	printf(json ? "{\"status\": \"pending\", \"request\": %lld}\n" : "pending %lld\n", id);
	return 0;
}

int cmd_submit(const struct opts *o, int nfiles, char **files)
{
	const struct ca_template *t;
	struct ca_request **reqs = calloc((size_t)(nfiles > 0 ? nfiles : 1), sizeof *reqs);
	struct ca ca;
	int rc = -1;

	memset(&ca, 0, sizeof ca);
	if (!reqs)
		return ca_error("out of memory");
	if (nfiles < 1) {
		ca_usage_error("submit needs a request file");
		goto out;
	}
	if (!o->template_name) {
		ca_usage_error("submit needs --template NAME (templates list)");
		goto out;
	}
	if (o->out && nfiles > 1) {
		ca_usage_error("--out names one file: with several requests use --out-dir");
		goto out;
	}
	/* the key only once it is needed: a request refused, or one left pending, needs no HSM login */
	if (ca_open(o, false, true, &ca))
		goto out;
	if (!(t = ca_template_find(&ca.conf, o->template_name))) {
		ca_error("no template \"%s\" (templates list)", o->template_name);
		goto out;
	}
	if (!t->manual && (nfiles > 1 || o->out_dir)) {
		/* reads and checks the requests itself, while it signs */
		if (ca_open_key(&ca) == 0)
			rc = issue_batch(&ca, t, files, (size_t)nfiles, o);
		goto out;
	}
	if (read_requests(t, nfiles, files, reqs))
		goto out;
	if (t->manual) {
		rc = 0;
		for (int i = 0; i < nfiles && !rc; i++)
			rc = submit_pending(&ca, t, reqs[i], o->json);
	} else {
		/* where the certificate goes is checked before anything is issued */
		if (o->out && (access(o->out, F_OK) == 0 ? access(o->out, W_OK) != 0 : !dir_writable(o->out))) {
			ca_error("cannot write %s: its directory is missing or not writable; nothing issued", o->out);
			goto out;
		}
		if (ca_open_key(&ca))
			goto out;
		rc = issue(&ca, t, reqs[0], 0, o->out, o->json);
	}
out:
	for (int i = 0; i < nfiles; i++)
		ca_request_free(reqs[i]);
	free(reqs);
	ca_close(&ca);
	return rc;
}

int cmd_decide(const struct opts *o, const char *id_text, bool approve)
{
	char tname[64], status[16], *end;
	unsigned char *csr = NULL;
	size_t len = 0;
	long long id = strtoll(id_text, &end, 10);
	const struct ca_template *t;
	struct ca_key_decoder *d = NULL;
	struct ca_request *req = NULL;
	struct ca ca;
	int rc = -1, found;

	if (*end || id <= 0)
		return ca_usage_error("\"%s\" is not a request number", id_text);
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
	if (!(d = ca_key_decoder_new()))
		goto out;
	if (!(req = ca_request_parse(csr, len, d))) {
		ca_error("request %lld: stored request unreadable: %s", id, ca_last_error());
		goto out;
	}
	/* again: the template may have changed since the request was submitted */
	if (ca_request_check(t, req)) {
		ca_error("request %lld: %s", id, ca_last_error());
		goto out;
	}
	rc = issue(&ca, t, req, id, o->out, o->json);
out:
	free(csr);
	ca_request_free(req);
	ca_key_decoder_free(d);
	ca_close(&ca);
	return rc;
}
