/*
 * keyward-ca serve: the maint thread. Every 30 seconds (less when
 * serve.conf sets shorter periods) it publishes the full and delta CRLs
 * that are due (ca.conf's crl_period_hours and delta_crl_period_hours, or
 * serve.conf's *_republish_seconds if shorter) and renews the delegated
 * signer when it is due; both hold ca_lock. A read-only responder
 * (read_only = true) publishes nothing and, when its signer is due, takes
 * the renewed certificate from ocsp-signer.crt if it is there.
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

/* hours from ca.conf, or serve.conf's seconds if they are fewer (0: not set) */
static time_t period(unsigned hours, unsigned seconds)
{
	time_t p = (time_t)hours * 3600;

	return seconds && (time_t)seconds < p ? (time_t)seconds : p;
}

static void crl_tick(struct server *sv)
{
	const struct ca_conf *c = &sv->ca->conf;
	time_t now = time(NULL), full = 0, delta = 0;
	bool have_full = file_age(sv->files[0].path, &full), have_delta = file_age(sv->files[1].path, &delta);
	long long number;

	if (!have_full || now - full >= period(c->crl_period_hours, sv->sc.crl_republish)) {
		if (ca_crl_publish(sv->ca, false, &number)) {
			atomic_fetch_add(&sv->crl_errors, 1);
			kw_log_limited("serve.crl", KW_LOG_ERROR, "keyward-ca serve: full CRL: %s", ca_last_error());
			return;
		}
		kw_log(KW_LOG_INFO, "keyward-ca serve: published full CRL number %lld", number);
		have_delta = false; /* a delta on the new base follows it */
	}
	if (c->delta_crl_period_hours &&
	    (!have_delta || now - delta >= period(c->delta_crl_period_hours, sv->sc.delta_republish))) {
		if (ca_crl_publish(sv->ca, true, &number)) {
			atomic_fetch_add(&sv->crl_errors, 1);
			kw_log_limited("serve.crl", KW_LOG_ERROR, "keyward-ca serve: delta CRL: %s", ca_last_error());
		} else {
			kw_log(KW_LOG_INFO, "keyward-ca serve: published delta CRL number %lld", number);
		}
	}
}

/* Seconds between ticks: 30, or half the shortest period serve.conf sets, a tenth of the signer's life. */
static double tick(const struct serve_conf *sc)
{
	double s = 30;

	if (sc->crl_republish && sc->crl_republish / 2.0 < s)
		s = sc->crl_republish / 2.0;
	if (sc->delta_republish && sc->delta_republish / 2.0 < s)
		s = sc->delta_republish / 2.0;
	if (sc->signer_validity && sc->signer_validity / 10.0 < s)
		s = sc->signer_validity / 10.0;
	return s < 1 ? 1 : s;
}

void serve_maint_publish(struct server *sv)
{
	pthread_mutex_lock(&sv->ca_lock);
	/* read-only: the issuer publishes; its CRL files reach publish/ here by copy (docs/scale.md) */
	if (sv->sc.crl_schedule && !sv->sc.read_only)
		crl_tick(sv);
	pthread_mutex_unlock(&sv->ca_lock);
}

void *serve_maint_main(void *arg)
{
	struct server *sv = arg;

	do {
		serve_maint_publish(sv);
		pthread_mutex_lock(&sv->ca_lock);
		if (sv->signer_owned && serve_signer_due(sv) && serve_signer_delegated(sv))
			kw_log_limited("serve.signer", KW_LOG_ERROR, "keyward-ca serve: renewing the OCSP signer: %s",
				       ca_last_error());
		pthread_mutex_unlock(&sv->ca_lock);
	} while (!serve_stop_wait(sv, tick(&sv->sc)));
	return NULL;
}
