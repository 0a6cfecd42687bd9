/*
 * keyward-ca: what the CA holds, for listings and status: its identity,
 * counts and CRL numbers, and its certificates, requests and audit
 * records one by one (the front end formats them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/ca.h"

int ca_status(struct ca *ca, struct ca_status *st)
{
	char *v = NULL;
	int found;

	memset(st, 0, sizeof *st);
	snprintf(st->name, sizeof st->name, "%s", ca->conf.name);
	if (ca_db_counts(ca->db, time(NULL), st))
		return -1;
	if ((found = ca_db_get_meta(ca->db, CA_META_KEY, &v)) < 0)
		return -1;
	snprintf(st->key_sha256, sizeof st->key_sha256, "%s", found ? "" : v);
	free(v);
	v = NULL;
	if ((found = ca_db_get_meta(ca->db, CA_META_CERT, &v)) < 0)
		return -1;
	snprintf(st->cert_sha256, sizeof st->cert_sha256, "%s", found ? "" : v);
	free(v);
	v = NULL;
	if ((found = ca_db_get_meta(ca->db, CA_META_SCHEMA, &v)) < 0)
		return -1;
	st->schema_version = found ? 1 : atoi(v); /* version 1 recorded none */
	free(v);
	v = NULL;
	if ((found = ca_db_get_meta(ca->db, CA_META_RETIRED, &v)) < 0)
		return -1;
	st->retired = found == 0;
	snprintf(st->retired_note, sizeof st->retired_note, "%s", found ? "" : v);
	free(v);
	return 0;
}

struct cert_filter {
	const char *status;
	time_t now;
	int (*fn)(void *arg, const struct ca_db_cert *c);
	void *arg;
};

static int filter_cert(void *arg, const struct ca_db_cert *c)
{
	struct cert_filter *f = arg;
	struct ca_db_cert shown = *c;

	if (!strcmp(c->status, "issued") && c->not_after < f->now)
		snprintf(shown.status, sizeof shown.status, "expired");
	if (strcmp(shown.status, "revoked")) {
		shown.reason = -1; /* a hold taken back is not a revocation */
		shown.revoked_at = 0;
	}
	if (f->status && strcmp(f->status, shown.status))
		return 0;
	return f->fn(f->arg, &shown);
}

int ca_each_cert(struct ca *ca, const char *status, int (*fn)(void *arg, const struct ca_db_cert *c), void *arg)
{
	struct cert_filter f = {.status = status, .now = time(NULL), .fn = fn, .arg = arg};

	if (status && strcmp(status, "issued") && strcmp(status, "revoked") && strcmp(status, "expired"))
		return ca_usage_error("certificates are issued, revoked or expired, not %s", status);
	return ca_db_each_cert(ca->db, filter_cert, &f);
}

struct request_filter {
	const char *status;
	int (*fn)(void *arg, const struct ca_pending *r);
	void *arg;
};

static int filter_request(void *arg, const struct ca_pending *r)
{
	struct request_filter *f = arg;

	return f->status && strcmp(f->status, r->status) ? 0 : f->fn(f->arg, r);
}

int ca_each_request(struct ca *ca, const char *status, int (*fn)(void *arg, const struct ca_pending *r), void *arg)
{
	struct request_filter f = {.status = status, .fn = fn, .arg = arg};

	if (status && strcmp(status, "pending") && strcmp(status, "denied"))
		return ca_usage_error("requests are pending or denied, not %s", status);
	return ca_db_each_request(ca->db, filter_request, &f);
}

int ca_each_audit(struct ca *ca, int (*fn)(void *arg, const struct ca_audit_row *r), void *arg)
{
	return ca_db_each_audit(ca->db, fn, arg);
}

int ca_find_cert(struct ca *ca, const char *serial_in, struct ca_db_cert *row, unsigned char **der, size_t *len)
{
	char serial[80];
	int found;

	ca_serial_normalize(serial_in, serial, sizeof serial);
	found = ca_db_get_cert(ca->db, serial, row, der, len);
	if (found > 0)
		return ca_fail(CA_ERR_NOT_FOUND, "no certificate with serial %s", serial);
	return found;
}
