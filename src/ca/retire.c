/*
 * keyward-ca retire: the old server's last act in a move. A final full
 * CRL, then the CA is marked retired in its database: it refuses to issue
 * and to publish from then on (ca_check_active), so the old and the new
 * server can never both issue, nor reuse a CRL number. A database restored
 * from a retired CA's backup knows its predecessor retired and carries on.
 */
#include <stdio.h>
#include <time.h>

#include "ca/ca.h"

int ca_retire(struct ca *ca, long long *final_crl)
{
	char note[512], when[32];
	time_t now = time(NULL);
	struct tm tm;

	if (ca_check_active(ca, "retires"))
		return -1;
	if (ca_crl_publish_any(ca, false, final_crl))
		return -1;
	gmtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(note, sizeof note, "retired %s on %s, final CRL number %lld", when, ca->conf.server_name, *final_crl);
	if (ca_db_begin(ca->db) || ca_db_set_meta(ca->db, CA_META_RETIRED, note) ||
	    ca_db_audit(ca->db, "retire", "%s: this CA issues and publishes no more", note) || ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		return ca_error("CRL %lld is published, but the CA could not be marked retired: %s; run retire again",
				*final_crl, ca_last_error());
	}
	return 0;
}
