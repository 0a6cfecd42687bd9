/*
 * keyward-ca: revocation. Revoking is final, except certificateHold,
 * which may be taken back (unrevoke: the delta CRL then lists it as
 * removeFromCRL) or made final with another reason (RFC 5280 5.3.1). Each
 * change is one transaction with its audit record.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ca/ca.h"

#define REASON_HOLD 6
#define REASON_REMOVE 8

void ca_serial_normalize(const char *in, char *out, size_t size)
{
	size_t n = 0, zeros = 0;

	/* as keyward-ca prints them (and openssl x509 -serial): upper-case hex, no leading zeros, no colons */
	for (; *in && n + 1 < size; in++)
		if (*in != ':')
			out[n++] = (char)(*in >= 'a' && *in <= 'f' ? *in - 'a' + 'A' : *in);
	out[n] = '\0';
	while (zeros + 1 < n && out[zeros] == '0')
		zeros++;
	memmove(out, out + zeros, n - zeros + 1);
}

/* Applies one change of serial's revocation state, checked by allowed, with its audit record. */
static int change(struct ca *ca, const char *serial_in, bool unrevoke, int reason, time_t when)
{
	struct ca_db_cert row;
	char serial[80], date[32] = "";
	int found;

	ca_serial_normalize(serial_in, serial, sizeof serial);
	if (ca_db_begin(ca->db))
		return -1;
	found = ca_db_get_cert(ca->db, serial, &row, NULL, NULL);
	if (found > 0)
		ca_fail(CA_ERR_NOT_FOUND, "no certificate with serial %s", serial);
	else if (!found && !unrevoke && !strcmp(row.status, "revoked") &&
		 (row.reason != REASON_HOLD || reason == REASON_HOLD))
		/* on hold, a certificate may still be revoked for good (RFC 5280 5.3.1); otherwise once is final */
		ca_fail(CA_ERR_CONFLICT, "serial %s is already revoked (%s)", serial, ca_reason_name(row.reason));
	else if (!found && unrevoke && (strcmp(row.status, "revoked") || row.reason != REASON_HOLD))
		ca_fail(CA_ERR_CONFLICT, "serial %s is not on hold (only certificateHold can be taken back)", serial);
	else if (!found) {
		struct tm tm;

		if (!unrevoke && when) {
			gmtime_r(&when, &tm);
			strftime(date, sizeof date, " date %Y-%m-%dT%H:%M:%SZ", &tm);
		}
		/* RFC 5280 5.3.2: the revocation's date is now; a backdated one is the invalidityDate */
		if (!ca_db_set_revocation(ca->db, serial, unrevoke ? "issued" : "revoked", time(NULL),
					  unrevoke ? REASON_REMOVE : reason, unrevoke ? 0 : when) &&
		    !ca_db_audit(ca->db, unrevoke ? "unrevoke" : "revoke", "serial %s%s%s%s", serial,
				 unrevoke ? "" : " reason ", unrevoke ? "" : ca_reason_name(reason), date) &&
		    !ca_db_commit(ca->db))
			return 0;
	}
	ca_db_rollback(ca->db);
	return -1;
}

int ca_revoke(struct ca *ca, const char *serial, int reason, time_t invalid_since)
{
	if (reason < 0 || reason == REASON_REMOVE || !strcmp(ca_reason_name(reason), "?"))
		return ca_usage_error("%d is not a revocation reason", reason);
	/* a revocation may be dated back (to the compromise), never forward */
	if (invalid_since > time(NULL) + 300)
		return ca_usage_error("a revocation cannot be dated in the future");
	return change(ca, serial, false, reason, invalid_since);
}

int ca_unrevoke(struct ca *ca, const char *serial)
{
	return change(ca, serial, true, 0, 0);
}
