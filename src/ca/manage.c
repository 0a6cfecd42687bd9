/*
 * keyward-ca: keys, templates, revoke, unrevoke, list, view, ca.cert,
 * ca.chain, crl, audit.
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

int cmd_keys(const struct opts *o)
{
	struct ca ca;
	int rc = ca_open(o, false, false, &ca);

	if (!rc)
		rc = ca_token_open(&ca.conf, &ca.token);
	if (!rc)
		rc = ca_token_list(ca.token, stdout);
	ca_close(&ca);
	return rc;
}

int cmd_templates(const struct opts *o, int argc, char **argv)
{
	struct ca ca;
	int rc = -1;

	if (argc < 1)
		return ca_usage_error("templates: list, show NAME, add NAME --file F, remove NAME");
	if (ca_open(o, false, false, &ca))
		goto out;
	if (!strcmp(argv[0], "list")) {
		for (size_t i = 0; i < ca.conf.n_templates; i++)
			printf("%-16s %s%s\n", ca.conf.templates[i].name,
			       ca.conf.templates[i].builtin ? "built in" : "ca.conf",
			       ca.conf.templates[i].manual ? ", manual approval" : "");
		rc = 0;
	} else if (!strcmp(argv[0], "show") && argc == 2) {
		const struct ca_template *t = ca_template_find(&ca.conf, argv[1]);

		if (!t) {
			ca_error("no template \"%s\" (templates list)", argv[1]);
			goto out;
		}
		printf("[template %s]\n", t->name);
		ca_template_print(t, stdout);
		rc = 0;
	} else if (!strcmp(argv[0], "add") && argc == 2 && o->file) {
		struct ca_template *t;
		size_t len;
		char *text = ca_read_file(o->file, CA_TEMPLATE_FILE_MAX, &len);
		int bad;

		if (!text)
			goto out;
		if (!(t = ca_template_add(&ca.conf, argv[1]))) {
			free(text);
			ca_error("template name \"%s\" is not usable, or there are too many", argv[1]);
			goto out;
		}
		bad = ca_template_parse(t, o->file, text, len);
		free(text);
		if (bad)
			goto out;
		if (ca_conf_change(&ca.conf, ca.db, "template %s added from %s", argv[1], o->file))
			goto out;
		printf("template %s added\n", argv[1]);
		rc = 0;
	} else if (!strcmp(argv[0], "remove") && argc == 2) {
		size_t i;

		for (i = 0; i < ca.conf.n_templates && strcmp(ca.conf.templates[i].name, argv[1]); i++)
			;
		if (i == ca.conf.n_templates || ca.conf.templates[i].builtin) {
			ca_error("no added template \"%s\" to remove (built-in templates stay)", argv[1]);
			goto out;
		}
		memmove(&ca.conf.templates[i], &ca.conf.templates[i + 1],
			(ca.conf.n_templates - i - 1) * sizeof ca.conf.templates[0]);
		ca.conf.n_templates--;
		if (ca_conf_change(&ca.conf, ca.db, "template %s removed", argv[1]))
			goto out;
		printf("template %s removed%s\n", argv[1],
		       ca_template_find(&ca.conf, argv[1]) ? " (the built-in of that name applies again)" : "");
		rc = 0;
	} else {
		ca_usage_error("templates: list, show NAME, add NAME --file F, remove NAME");
	}
out:
	ca_close(&ca);
	return rc;
}

static int parse_date(const char *s, time_t *out)
{
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);

	if (!end || *end)
		return ca_usage_error("--date \"%s\": use YYYY-MM-DDTHH:MM:SSZ (UTC)", s);
	*out = timegm(&tm);
	/* a revocation may be dated back (to the compromise), never forward */
	if (*out > time(NULL) + 300)
		return ca_error("--date %s is in the future", s);
	return 0;
}

int cmd_revoke(const struct opts *o, const char *serial_in, bool unrevoke)
{
	struct ca_db_cert row;
	char serial[80];
	time_t when = time(NULL);
	int reason = 0, found;
	struct ca ca;
	int rc = -1;

	normalize_serial(serial_in, serial, sizeof serial);
	if (!unrevoke) {
		if (!o->reason)
			return ca_usage_error(
				"revoke needs --reason (unspecified, keyCompromise, cACompromise, affiliationChanged, "
				"superseded, cessationOfOperation, certificateHold, privilegeWithdrawn)");
		if ((reason = ca_reason_code(o->reason)) < 0 || reason == 10)
			return ca_usage_error("--reason %s: not a revocation reason", o->reason);
		if (o->date && parse_date(o->date, &when))
			return -1;
	}
	if (ca_open(o, false, false, &ca))
		goto out;
	if (ca_db_begin(ca.db))
		goto out;
	found = ca_db_get_cert(ca.db, serial, &row, NULL, NULL);
	if (found > 0)
		ca_error("no certificate with serial %s", serial);
	else if (!found && !unrevoke && !strcmp(row.status, "revoked") && (row.reason != 6 || reason == 6))
		/* on hold, a certificate may still be revoked for good (RFC 5280 5.3.1); otherwise once is final */
		ca_error("serial %s is already revoked (%s)", serial, ca_reason_name(row.reason));
	else if (!found && unrevoke && (strcmp(row.status, "revoked") || row.reason != 6))
		ca_error("serial %s is not on hold (only certificateHold can be taken back)", serial);
	else if (!found &&
		 /* RFC 5280 5.3.2: the revocation's date is now; a backdated --date is the invalidityDate */
		 !ca_db_set_revocation(ca.db, serial, unrevoke ? "issued" : "revoked", time(NULL), unrevoke ? 8 : reason,
				       !unrevoke && o->date ? when : 0) &&
		 !ca_db_audit(ca.db, unrevoke ? "unrevoke" : "revoke", "serial %s%s%s%s%s", serial,
			      unrevoke ? "" : " reason ", unrevoke ? "" : o->reason,
			      o->date && !unrevoke ? " date " : "", o->date && !unrevoke ? o->date : "") &&
		 !ca_db_commit(ca.db)) {
		printf("%s %s\n", unrevoke ? "unrevoked" : "revoked", serial);
		rc = 0;
	}
	if (rc)
		ca_db_rollback(ca.db);
out:
	ca_close(&ca);
	return rc;
}

int cmd_audit(const struct opts *o)
{
	struct ca ca;
	int rc = ca_open(o, false, false, &ca);

	if (!rc)
		rc = ca_db_audit_list(ca.db, o->json, stdout);
	ca_close(&ca);
	return rc;
}

int cmd_list(const struct opts *o)
{
	struct ca ca;
	int rc = ca_open(o, false, false, &ca);

	if (!rc && o->status && strcmp(o->status, "issued") && strcmp(o->status, "revoked") &&
	    strcmp(o->status, "pending") && strcmp(o->status, "denied") && strcmp(o->status, "expired"))
		rc = ca_usage_error("--status: issued, revoked, pending, denied or expired");
	if (!rc)
		rc = ca_db_list(ca.db, o->status, o->json, stdout);
	ca_close(&ca);
	return rc;
}

int cmd_view(const struct opts *o, const char *serial_in)
{
	char serial[80];
	struct ca_db_cert row;
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	struct ca ca;
	X509 *x = NULL;
	int rc = -1, found;

	if (ca_open(o, false, false, &ca))
		goto out;
	normalize_serial(serial_in, serial, sizeof serial);
	found = ca_db_get_cert(ca.db, serial, &row, &der, &len);
	if (found) {
		if (found > 0)
			ca_error("no certificate with serial %s", serial);
		goto out;
	}
	p = der;
	if (!(x = d2i_X509(NULL, &p, (long)len))) {
		ca_error("serial %s: stored certificate unreadable", serial);
		goto out;
	}
	printf("status: %s%s%s\ntemplate: %s\n", row.status,
	       row.reason >= 0 && !strcmp(row.status, "revoked") ? " " : "",
	       row.reason >= 0 && !strcmp(row.status, "revoked") ? ca_reason_name(row.reason) : "", row.template_name);
	X509_print_fp(stdout, x);
	PEM_write_X509(stdout, x);
	rc = 0;
out:
	X509_free(x);
	free(der);
	ca_close(&ca);
	return rc;
}

int cmd_export(const struct opts *o, const char *file, bool whole_chain)
{
	struct ca ca;
	FILE *f = NULL;
	int rc = -1, ok = 1;

	if (ca_open(o, false, true, &ca))
		goto out;
	if (!(f = fopen(file, "we"))) {
		ca_error("cannot write %s: %s", file, strerror(errno));
		goto out;
	}
	if (o->der && !whole_chain)
		ok = i2d_X509_fp(f, ca_cert(&ca));
	else
		for (int i = 0; i < (whole_chain ? sk_X509_num(ca.chain) : 1); i++)
			ok = ok && PEM_write_X509(f, sk_X509_value(ca.chain, i));
	ok = fclose(f) == 0 && ok;
	rc = ok ? 0 : ca_error("cannot write %s", file);
out:
	ca_close(&ca);
	return rc;
}

int cmd_crl(const struct opts *o)
{
	long long number = 0;
	struct ca ca;
	int rc = -1;

	if (ca_open(o, true, true, &ca) || ca_crl_publish(&ca.conf, ca.db, ca_cert(&ca), ca.priv, o->delta, &number))
		goto out;
	printf("published %s CRL number %lld\n", o->delta ? "delta" : "full", number);
	rc = 0;
out:
	ca_close(&ca);
	return rc;
}
