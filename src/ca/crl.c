/*
 * keyward-ca: CRLs. A full CRL lists every revoked certificate and points
 * at the delta (Freshest CRL); a delta CRL (DeltaCRLIndicator = the last
 * full CRL's number) lists what changed since that full CRL, including
 * holds taken back (removeFromCRL). Both kinds share one CRL number
 * sequence, taken inside the caller's transaction, so numbers strictly
 * increase even with two processes at once. The file is replaced
 * atomically (files.c): readers see the old CRL or the new.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"
#include "ca/publish.h"

/* The entries as they are encoded, and who is told how many. */
struct entries {
	struct ca_der der;
	unsigned long long n;
	const struct ca *ca;
};

static int add_entry(void *arg, const char *serial, time_t when, int reason, time_t invalid_at)
{
	struct entries *e = arg;

	if (++e->n % CA_PROGRESS_EVERY == 0 && e->ca->progress)
		e->ca->progress(e->ca->progress_arg, "CRL entries", e->n, false);
	return ca_der_revoked_entry_ext(&e->der, serial, when, reason, invalid_at);
}

void ca_set_progress(struct ca *ca, ca_progress_fn *fn, void *arg)
{
	ca->progress = fn;
	ca->progress_arg = arg;
}

static int add_ext(X509_CRL *crl, X509 *ca, int nid, const char *value)
{
	X509_EXTENSION *e = ca_make_ext(ca, NULL, crl, nid, value);
	int ok = e && X509_CRL_add_ext(crl, e, -1);

	X509_EXTENSION_free(e);
	return ok ? 0 : ca_error("cannot add CRL extension %s", OBJ_nid2sn(nid));
}

/* Builds and signs the CRL into der and records its number, in the open transaction. */
static int build_crl(const struct ca *owner, X509 *ca, EVP_PKEY *priv, bool delta, long long *number_out,
		     struct ca_der *der)
{
	const struct ca_conf *c = &owner->conf;
	struct ca_db *db = owner->db;
	char file[CA_NAME_MAX + 1], v[512];
	long long number = 0, base = 0, base_seq = 0;
	time_t now = time(NULL), base_time = 0;
	unsigned hours = delta ? c->delta_crl_period_hours : c->crl_period_hours;
	time_t next = now + (time_t)(hours + c->crl_overlap_hours) * 3600;
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *this_update = ASN1_TIME_set(NULL, now);
	ASN1_TIME *next_update = ASN1_TIME_set(NULL, next);
	ASN1_INTEGER *num = NULL;
	struct entries entries = {.ca = owner};
	int rc = -1;

	ca_file_name(c->name, file, sizeof file);
	if (!crl || !this_update || !next_update) {
		ca_error("out of memory");
		goto out;
	}
	if (delta && ca_db_last_base_crl(db, &base, &base_time, &base_seq) != 0) {
		ca_error("a delta CRL needs a full CRL first: run keyward-ca crl");
		goto out;
	}
	if (ca_db_next_crl_number(db, &number))
		goto out;
	if (!X509_CRL_set_version(crl, 1) || !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) ||
	    !X509_CRL_set1_lastUpdate(crl, this_update) || !X509_CRL_set1_nextUpdate(crl, next_update)) {
		ca_error("cannot build the CRL");
		goto out;
	}
	if (ca_db_each_revoked(db, delta, base_seq, add_entry, &entries))
		goto out;
	if (entries.n >= CA_PROGRESS_EVERY && owner->progress)
		owner->progress(owner->progress_arg, "CRL entries", entries.n, true);
	if (add_ext(crl, ca, NID_authority_key_identifier, "keyid:always"))
		goto out;
	num = ASN1_INTEGER_new();
	if (!num || !ASN1_INTEGER_set_int64(num, number) || !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0)) {
		ca_error("cannot add the CRL number");
		goto out;
	}
	if (delta) {
		ASN1_INTEGER_set_int64(num, base);
		if (!X509_CRL_add1_ext_i2d(crl, NID_delta_crl, num, 1, 0)) {
			ca_error("cannot add the delta CRL indicator");
			goto out;
		}
	} else {
		char url[300];

		ca_url_base(c, url, sizeof url);
		snprintf(v, sizeof v, "URI:%s/crl/%s+.crl", url, file);
		if (add_ext(crl, ca, NID_freshest_crl, v))
			goto out;
	}
	/* the head, signed so it carries the algorithm; then the whole list, signed again */
	if (X509_CRL_sign(crl, priv, ca_md(c)) <= 0) {
		ERR_clear_error();
		ca_error("the token did not sign the CRL");
		goto out;
	}
	if (ca_crl_assemble(crl, &entries.der, priv, ca_md(c), der))
		goto out;
	if (ca_db_record_crl(db, number, delta, delta ? base : number, now, next) ||
	    ca_db_audit(db, delta ? "crl.delta" : "crl", "CRL number %lld%s", number, delta ? " (delta)" : ""))
		goto out;
	*number_out = number;
	rc = 0;
out:
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(this_update);
	ASN1_TIME_free(next_update);
	X509_CRL_free(crl);
	ca_der_free(&entries.der);
	return rc;
}

int ca_crl_publish(struct ca *ca, bool delta, long long *number_out)
{
	return ca_check_active(ca, "publishes CRLs") ? -1 : ca_crl_publish_any(ca, delta, number_out);
}

int ca_crl_publish_any(struct ca *ca, bool delta, long long *number_out)
{
	const struct ca_conf *c = &ca->conf;
	char file[CA_NAME_MAX + 1], dir[CA_PATH_MAX + 16], path[CA_PATH_MAX + 300];
	struct ca_der der = {0};
	int lock = -1, rc = -1;

	if (ca_open_key(ca) || (!ca->chain && ca_cert_load_chain(c, &ca->chain)))
		return -1;
	ca_file_name(c->name, file, sizeof file);
	ca_path(c, "publish", dir, sizeof dir);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return ca_error("cannot create %s: %s", dir, strerror(errno));
	/*
	 * The number is committed before the file is renamed into place, so a
	 * crash can never publish a number the database does not hold; the
	 * lock keeps two publishers' renames in number order.
	 */
	snprintf(path, sizeof path, "%s/.lock", dir);
	if ((lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 || flock(lock, LOCK_EX) != 0) {
		ca_error("cannot lock %s: %s", path, strerror(errno));
		goto out;
	}
	if (ca_db_begin(ca->db))
		goto out;
	if (build_crl(ca, ca_certificate(ca), ca->priv, delta, number_out, &der) || ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		goto out;
	}
	snprintf(path, sizeof path, "%s/%s%s.crl", dir, file, delta ? "+" : "");
	if (ca_write_atomic(path, der.p, der.len, 0644)) { /* public: a CRL is published */
		ca_error("CRL number %lld is recorded but could not be written (%s): run crl again", *number_out,
			 ca_last_error());
		goto out;
	}
	rc = ca_publish_aia(c, ca_certificate(ca)); /* the CA certificate the AIA URL names, beside the CRLs */
out:
	if (lock >= 0)
		close(lock);
	ca_der_free(&der);
	return rc;
}
