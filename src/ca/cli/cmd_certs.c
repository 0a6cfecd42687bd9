/*
 * keyward-ca revoke, unrevoke, list, view, ca.cert, ca.chain, crl, audit
 * and status: what the CA holds, shown and changed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca/cli/cli.h"

#define REASONS                                                                                                        \
	"unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, "             \
	"certificateHold, privilegeWithdrawn"

static int parse_date(const char *s, time_t *out)
{
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);

	if (!end || *end)
		return ca_fail(CA_ERR_USAGE, "--date \"%s\": use YYYY-MM-DDTHH:MM:SSZ (UTC)", s);
	*out = timegm(&tm);
	/* a revocation may be dated back (to the compromise), never forward */
	if (*out > time(NULL) + 300)
		return ca_fail(CA_ERR_FAILED, "--date %s is in the future", s);
	return 0;
}

int cmd_revoke(const struct opts *o, const char *serial, bool unrevoke)
{
	struct ca *ca = NULL;
	time_t when = 0;
	int reason = 0, rc = -1;
	char shown[80];

	if (!unrevoke) {
		if (!o->reason)
			return ca_fail(CA_ERR_USAGE, "revoke needs --reason (" REASONS ")");
		if ((reason = ca_reason_code(o->reason)) < 0 || reason == 10)
			return ca_fail(CA_ERR_USAGE, "--reason %s: not a revocation reason (" REASONS ")", o->reason);
		if (o->date && parse_date(o->date, &when))
			return -1;
	}
	if (cli_open(o, 0, &ca))
		goto out;
	rc = unrevoke ? ca_unrevoke(ca, serial) : ca_revoke(ca, serial, reason, when);
	if (!rc) {
		ca_serial_normalize(serial, shown, sizeof shown);
		printf("%s %s\n", unrevoke ? "unrevoked" : "revoked", shown);
	}
out:
	ca_close(ca);
	return rc;
}

struct listing {
	json_t *json; /* with --json */
};

static int list_cert(void *arg, const struct ca_db_cert *c)
{
	struct listing *l = arg;
	char a[32], b[32], r[32];
	bool revoked = c->reason >= 0 && !strcmp(c->status, "revoked");

	if (l->json) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "serial", c->serial, "subject", c->subject,
				      "template", c->template_name, "status", c->status, "not_before",
				      cli_time(c->not_before, a, sizeof a), "not_after",
				      cli_time(c->not_after, b, sizeof b));

		if (j && revoked) {
			json_object_set_new(j, "reason", json_string(ca_reason_name(c->reason)));
			json_object_set_new(j, "reason_code", json_integer(c->reason));
			json_object_set_new(j, "revoked_at", json_string(cli_time(c->revoked_at, r, sizeof r)));
		}
		return json_array_append_new(l->json, j) ? ca_fail(CA_ERR_FAILED, "out of memory") : 0;
	}
	printf("%s  %-8s %-12s %s  %s%s%s%s%s\n", c->serial, c->status, c->template_name,
	       cli_time(c->not_after, b, sizeof b), c->subject, revoked ? "  " : "",
	       revoked ? ca_reason_name(c->reason) : "", revoked ? " " : "",
	       revoked ? cli_time(c->revoked_at, r, sizeof r) : "");
	return 0;
}

static int list_request(void *arg, const struct ca_pending *p)
{
	struct listing *l = arg;
	char a[32];

	if (l->json)
		return json_array_append_new(l->json, json_pack("{s:I, s:s, s:s, s:s}", "request", (json_int_t)p->id,
								"template", p->template_name, "status", p->status,
								"submitted", cli_time(p->submitted, a, sizeof a)))
			       ? ca_fail(CA_ERR_FAILED, "out of memory")
			       : 0;
	printf("request %lld  %-8s %s  submitted %s\n", p->id, p->status, p->template_name,
	       cli_time(p->submitted, a, sizeof a));
	return 0;
}

int cmd_list(const struct opts *o)
{
	static const char *const certs[] = {"issued", "revoked", "expired"}, *const reqs[] = {"pending", "denied"};
	struct listing l = {.json = o->json ? json_array() : NULL};
	bool want_certs = !o->status, want_reqs = !o->status;
	struct ca *ca = NULL;
	int rc = -1;

	for (size_t i = 0; o->status && i < 3; i++)
		want_certs = want_certs || !strcmp(o->status, certs[i]);
	for (size_t i = 0; o->status && i < 2; i++)
		want_reqs = want_reqs || !strcmp(o->status, reqs[i]);
	if (!want_certs && !want_reqs) {
		ca_fail(CA_ERR_USAGE, "--status: issued, revoked, pending, denied or expired");
		goto out;
	}
	if (cli_open(o, 0, &ca) || (want_certs && ca_each_cert(ca, o->status, list_cert, &l)) ||
	    (want_reqs && ca_each_request(ca, o->status, list_request, &l)))
		goto out;
	if (l.json) {
		rc = cli_print_json(l.json);
		l.json = NULL;
	} else {
		rc = 0;
	}
out:
	json_decref(l.json);
	ca_close(ca);
	return rc;
}

int cmd_view(const struct opts *o, const char *serial)
{
	struct ca_db_cert row;
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	struct ca *ca = NULL;
	X509 *x = NULL;
	int rc = -1;

	if (cli_open(o, 0, &ca) || ca_find_cert(ca, serial, &row, &der, &len))
		goto out;
	p = der;
	if (!(x = d2i_X509(NULL, &p, (long)len))) {
		ca_fail(CA_ERR_FAILED, "serial %s: stored certificate unreadable", row.serial);
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
	ca_close(ca);
	return rc;
}

int cmd_export(const struct opts *o, const char *file, bool whole_chain)
{
	struct ca *ca = NULL;
	STACK_OF(X509) * chain;
	FILE *f = NULL;
	int rc = -1, ok = 1;

	if (cli_open(o, CA_OPEN_CERT, &ca))
		goto out;
	chain = ca_chain(ca);
	if (!(f = fopen(file, "we"))) {
		ca_fail(CA_ERR_FAILED, "cannot write %s: %s", file, strerror(errno));
		goto out;
	}
	if (o->der && !whole_chain)
		ok = i2d_X509_fp(f, ca_certificate(ca));
	else
		for (int i = 0; i < (whole_chain ? sk_X509_num(chain) : 1); i++)
			ok = ok && PEM_write_X509(f, sk_X509_value(chain, i));
	ok = fclose(f) == 0 && ok;
	rc = ok ? 0 : ca_fail(CA_ERR_FAILED, "cannot write %s", file);
out:
	ca_close(ca);
	return rc;
}

/* "CRL entries: N" on the terminal (cli_progress). */
static void show_progress(void *arg, const char *what, unsigned long long done, bool finished)
{
	cli_progress(arg, finished, "%s: %llu", what, done);
}

int cmd_crl(const struct opts *o)
{
	long long number = 0;
	struct ca *ca = NULL;
	struct timespec shown = {0};
	int rc = -1;

	if (cli_open(o, CA_OPEN_CERT, &ca))
		goto out;
	if (!o->quiet && isatty(STDERR_FILENO))
		ca_set_progress(ca, show_progress, &shown);
	if (ca_crl_publish(ca, o->delta, &number))
		goto out;
	printf("published %s CRL number %lld\n", o->delta ? "delta" : "full", number);
	rc = 0;
out:
	ca_close(ca);
	return rc;
}

static int list_audit(void *arg, const struct ca_audit_row *r)
{
	struct listing *l = arg;
	char when[32];

	cli_time(r->time, when, sizeof when);
	if (l->json)
		return json_array_append_new(l->json, json_pack("{s:I, s:s, s:I, s:s, s:s}", "id", (json_int_t)r->id,
								"time", when, "uid", (json_int_t)r->uid, "event",
								r->event, "detail", r->detail))
			       ? ca_fail(CA_ERR_FAILED, "out of memory")
			       : 0;
	printf("%lld  %s  uid %lld  %-12s %s\n", r->id, when, r->uid, r->event, r->detail);
	return 0;
}

int cmd_audit(const struct opts *o)
{
	struct listing l = {.json = o->json ? json_array() : NULL};
	struct ca *ca = NULL;
	int rc = -1;

	if (cli_open(o, 0, &ca) || ca_each_audit(ca, list_audit, &l))
		goto out;
	rc = l.json ? cli_print_json(l.json) : 0;
	l.json = NULL;
out:
	json_decref(l.json);
	ca_close(ca);
	return rc;
}

int cmd_status(const struct opts *o)
{
	struct ca_status st;
	struct ca *ca = NULL;
	char when[32] = "";
	int rc = -1;

	if (cli_open(o, 0, &ca) || ca_status(ca, &st))
		goto out;
	if (st.last_crl_time)
		cli_time(st.last_crl_time, when, sizeof when);
	if (o->json) {
		rc = cli_print_json(
			json_pack("{s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:b, s:s}", "name", st.name,
				  "key_sha256", st.key_sha256, "cert_sha256", st.cert_sha256, "schema_version",
				  st.schema_version, "issued", (json_int_t)st.issued, "revoked", (json_int_t)st.revoked,
				  "expired", (json_int_t)st.expired, "pending", (json_int_t)st.pending, "last_crl",
				  (json_int_t)st.last_crl, "last_delta_crl", (json_int_t)st.last_delta_crl,
				  "last_crl_time", when, "retired", st.retired, "retired_note", st.retired_note));
		goto out;
	}
	printf("CA \"%s\" in %s%s%s\n"
	       "key sha256:         %s\n"
	       "certificate sha256: %s\n"
	       "database schema:    %d\n"
	       "certificates:       %lld issued, %lld revoked, %lld expired; %lld requests pending\n"
	       "last CRL:           %lld%s%s (delta %lld)\n",
	       st.name, o->dir, st.retired ? "; RETIRED: " : "", st.retired ? st.retired_note : "", st.key_sha256,
	       st.cert_sha256[0] ? st.cert_sha256 : "(none: no certificate installed)", st.schema_version, st.issued,
	       st.revoked, st.expired, st.pending, st.last_crl, when[0] ? " at " : "", when, st.last_delta_crl);
	rc = 0;
out:
	ca_close(ca);
	return rc;
}
