/*
 * keyward-ca: CRLs. A full CRL lists every revoked certificate and points
 * at the delta (Freshest CRL); a delta CRL (DeltaCRLIndicator = the last
 * full CRL's number) lists what changed since that full CRL, including
 * holds taken back (removeFromCRL). Both kinds share one CRL number
 * sequence, taken inside the caller's transaction, so numbers strictly
 * increase even with two processes at once. The file is written to a
 * temporary name, synced and renamed: readers see the old CRL or the new.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"

static const char *const reasons[] = {"unspecified",	    "keyCompromise",	    "cACompromise",
				      "affiliationChanged", "superseded",	    "cessationOfOperation",
				      "certificateHold",    NULL /* 7 is unused */, "removeFromCRL",
				      "privilegeWithdrawn", "aACompromise"};

int ca_reason_code(const char *name)
{
	for (int i = 0; i < (int)(sizeof reasons / sizeof reasons[0]); i++)
		if (reasons[i] && i != 8 && !strcmp(reasons[i], name))
			return i;
	return -1;
}

const char *ca_reason_name(int code)
{
	if (code < 0 || code >= (int)(sizeof reasons / sizeof reasons[0]) || !reasons[code])
		return "?";
	return reasons[code];
}

static int add_entry(void *arg, const char *serial, time_t when, int reason)
{
	X509_CRL *crl = arg;
	X509_REVOKED *r = X509_REVOKED_new();
	BIGNUM *bn = NULL;
	ASN1_INTEGER *sn = NULL;
	ASN1_TIME *t = ASN1_TIME_set(NULL, when);
	ASN1_ENUMERATED *code = NULL;
	int ok = r && t && BN_hex2bn(&bn, serial) && (sn = BN_to_ASN1_INTEGER(bn, NULL)) &&
		 X509_REVOKED_set_serialNumber(r, sn) && X509_REVOKED_set_revocationDate(r, t);

	if (ok && reason > 0) { /* unspecified is left out, as RFC 5280 recommends */
		ok = (code = ASN1_ENUMERATED_new()) && ASN1_ENUMERATED_set(code, reason) &&
		     X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, code, 0, 0);
	}
	ok = ok && X509_CRL_add0_revoked(crl, r);
	if (!ok)
		X509_REVOKED_free(r);
	ASN1_ENUMERATED_free(code);
	ASN1_TIME_free(t);
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	return ok ? 0 : ca_error("cannot add serial %s to the CRL", serial);
}

static int add_ext(X509_CRL *crl, X509 *ca, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx(&ctx, ca, NULL, NULL, crl, 0);
	e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	ok = e && X509_CRL_add_ext(crl, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : ca_error("cannot add CRL extension %s", OBJ_nid2sn(nid));
}

static int write_crl(const char *path, X509_CRL *crl)
{
	char tmp[CA_PATH_MAX + 48];
	unsigned char *der = NULL;
	int len = i2d_X509_CRL(crl, &der);
	FILE *f;
	int ok;

	if (len <= 0)
		return ca_error("cannot encode the CRL");
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (!(f = fopen(tmp, "we"))) {
		OPENSSL_free(der);
		return ca_error("cannot write %s: %s", tmp, strerror(errno));
	}
	ok = fwrite(der, 1, (size_t)len, f) == (size_t)len && fflush(f) == 0 && fsync(fileno(f)) == 0;
	fclose(f);
	OPENSSL_free(der);
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return ca_error("cannot write %s: %s", path, strerror(errno));
	}
	return 0;
}

int ca_crl_publish(const struct ca_conf *c, struct ca_db *db, X509 *ca, EVP_PKEY *priv, bool delta,
		   long long *number_out)
{
	char file[CA_NAME_MAX + 1], v[512], path[CA_PATH_MAX + 300];
	long long number = 0, base = 0;
	time_t now = time(NULL), base_time = 0;
	unsigned hours = delta ? c->delta_crl_period_hours : c->crl_period_hours;
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *this_update = ASN1_TIME_set(NULL, now);
	ASN1_TIME *next_update = ASN1_TIME_set(NULL, now + (time_t)(hours + c->crl_overlap_hours) * 3600);
	ASN1_INTEGER *num = NULL;
	int rc = -1;

	ca_file_name(c->name, file, sizeof file);
	if (!crl || !this_update || !next_update) {
		ca_error("out of memory");
		goto out;
	}
	if (delta && ca_db_last_base_crl(db, &base, &base_time) != 0) {
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
	if (ca_db_each_revoked(db, delta ? base_time : 0, add_entry, crl))
		goto out;
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
		snprintf(v, sizeof v, "URI:http://%s/crl/%s+.crl", c->server_name, file);
		if (add_ext(crl, ca, NID_freshest_crl, v))
			goto out;
	}
	if (X509_CRL_sign(crl, priv, ca_md(c)) <= 0) {
		ERR_clear_error();
		ca_error("the token did not sign the CRL");
		goto out;
	}
	if (ca_db_record_crl(db, number, delta, delta ? base : number, now,
			     now + (time_t)(hours + c->crl_overlap_hours) * 3600) ||
	    ca_db_audit(db, delta ? "crl.delta" : "crl", "CRL number %lld%s", number, delta ? " (delta)" : ""))
		goto out;
	ca_path(c, "publish", path, sizeof path);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		ca_error("cannot create %s: %s", path, strerror(errno));
		goto out;
	}
	snprintf(path + strlen(path), sizeof path - strlen(path), "/%s%s.crl", file, delta ? "+" : "");
	if (write_crl(path, crl))
		goto out;
	*number_out = number;
	rc = 0;
out:
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(this_update);
	ASN1_TIME_free(next_update);
	X509_CRL_free(crl);
	return rc;
}
