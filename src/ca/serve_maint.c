/*
 * keyward-ca serve: the maint thread. Every 30 seconds it publishes the
 * full and delta CRLs that are due (crl_period, delta_crl_period) and
 * renews the delegated signer when it is due; both hold ca_lock.
 */
#include <sys/stat.h>

#include "ca/serve_internal.h"
#include "common/log.h"

static bool file_age(const char *path, time_t *mtime)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return false;
	*mtime = st.st_mtime;
	return true;
}

static void crl_tick(struct server *sv)
{
	const struct ca_conf *c = &sv->ca->conf;
	time_t now = time(NULL), full = 0, delta = 0;
	bool have_full = file_age(sv->files[0].path, &full), have_delta = file_age(sv->files[1].path, &delta);
	long long number;

	if (!have_full || now - full >= (time_t)c->crl_period_hours * 3600) {
		if (ca_crl_publish(sv->ca, false, &number)) {
			kw_log_limited("serve.crl", KW_LOG_ERROR, "keyward-ca serve: full CRL: %s", ca_last_error());
			return;
		}
		kw_log(KW_LOG_INFO, "keyward-ca serve: published full CRL number %lld", number);
		have_delta = false; /* a delta on the new base follows it */
	}
	if (c->delta_crl_period_hours && (!have_delta || now - delta >= (time_t)c->delta_crl_period_hours * 3600)) {
		if (ca_crl_publish(sv->ca, true, &number))
			kw_log_limited("serve.crl", KW_LOG_ERROR, "keyward-ca serve: delta CRL: %s", ca_last_error());
		else
			kw_log(KW_LOG_INFO, "keyward-ca serve: published delta CRL number %lld", number);
	}
}

void *serve_maint_main(void *arg)
{
	struct server *sv = arg;

	do {
		pthread_mutex_lock(&sv->ca_lock);
		if (sv->sc.crl_schedule)
			crl_tick(sv);
		if (sv->signer_owned && serve_signer_due(sv) && serve_signer_delegated(sv))
			kw_log_limited("serve.signer", KW_LOG_ERROR, "keyward-ca serve: renewing the OCSP signer: %s",
				       ca_last_error());
		pthread_mutex_unlock(&sv->ca_lock);
	} while (!serve_stop_wait(sv, 30));
	return NULL;
}
