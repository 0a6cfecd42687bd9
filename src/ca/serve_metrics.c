/*
 * keyward-ca serve: /health (JSON: the database and the HSM answer) and
 * /metrics (Prometheus text format 0.0.4: requests by endpoint and
 * outcome, latency, the cache, pre-signing, errors, the apps, and the
 * dates an administrator alerts on: when the CA's and the OCSP signer's
 * certificates expire, when each CRL was last published).
 */
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca/serve_internal.h"

static const char *const endpoint_names[EP_N] = {"ocsp", "crl", "ca", "health", "metrics", "other"};
static const char *const http_outcome_names[] = {"ok",	      "not_modified",	    "bad_request", "not_found",
						 "too_large", "method_not_allowed", "unavailable"};
const double serve_latency_buckets[N_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
						 0.05,	 0.1,	0.25,	0.5,   1,    2.5};

#define HSM_SILENCE 5 /* seconds without an answer that make the HSM failing */

/* A signature by the signer's key, as the HSM makes it (blocks as long as the module waits for it). */
static bool hsm_signs(struct server *sv)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[1024];
	size_t n = sizeof sig;
	bool ok;

	pthread_rwlock_rdlock(&sv->signer_lock);
	ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, sv->signer.key) == 1 &&
	     EVP_DigestSign(ctx, sig, &n, (const unsigned char *)"health", 6) == 1;
	pthread_rwlock_unlock(&sv->signer_lock);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/*
 * Whether the signer's key signs, asked at most every 5 seconds, by one
 * thread at a time and without the lock: an HSM that does not answer at
 * all (frozen, a dropped network) holds that thread for the module's
 * command_timeout, while the other probes answer at once, failing once it
 * has been silent for HSM_SILENCE seconds. (Waiting on the lock, every
 * probe took an HTTP thread for a command_timeout each, and a few stalled
 * the whole server.)
 */
static bool hsm_answers(struct server *sv)
{
	time_t now = time(NULL);
	bool ok = false, ask = false;

	pthread_mutex_lock(&sv->health_lock);
	if (sv->health_asking)
		ok = sv->hsm_ok && now - sv->health_asking < HSM_SILENCE;
	else if ((ask = now - sv->health_checked >= 5))
		sv->health_asking = now;
	else
		ok = sv->hsm_ok;
	pthread_mutex_unlock(&sv->health_lock);
	if (!ask)
		return ok;
	ok = hsm_signs(sv);
	if (!ok)
		atomic_fetch_add(&sv->hsm_errors, 1);
	pthread_mutex_lock(&sv->health_lock);
	sv->hsm_ok = ok;
	sv->health_checked = time(NULL);
	sv->health_asking = 0;
	pthread_mutex_unlock(&sv->health_lock);
	return ok;
}

char *serve_health_text(struct server *sv, bool *ok)
{
	json_t *doc;
	char *text;
	bool db_ok, hsm_ok;

	pthread_mutex_lock(&sv->live_lock);
	db_ok = ca_status_ping(sv->live) == 0;
	pthread_mutex_unlock(&sv->live_lock);
	hsm_ok = hsm_answers(sv);
	*ok = db_ok && hsm_ok;
	doc = json_pack("{s:s, s:s, s:s, s:I, s:I}", "status", *ok ? "ok" : "unavailable", "database",
			db_ok ? "ok" : "failing", "hsm", hsm_ok ? "ok" : "failing", "cached",
			(json_int_t)atomic_load(&sv->cache_size), "backlog", (json_int_t)atomic_load(&sv->backlog));
	text = doc ? json_dumps(doc, JSON_PRESERVE_ORDER) : NULL;
	json_decref(doc);
	if (text) { /* a line, as curl users expect */
		char *line = realloc(text, strlen(text) + 2);

		if (!line) {
			free(text);
			return NULL;
		}
		strcat(line, "\n");
		text = line;
	}
	return text;
}

static const char *outcome_name(int o)
{
	return o < OCSP_OUT_N ? ocsp_outcome_name((enum ocsp_outcome)o) : http_outcome_names[o - OCSP_OUT_N];
}

/* x's notAfter as a Unix time, or -1 if it cannot be read. */
static long long not_after(const X509 *x)
{
	struct tm tm;

	if (!x || !ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
		return -1;
	return (long long)timegm(&tm);
}

/* The expiry dates and CRL publication times, as gauges; what cannot be read is left out. */
static void dates(struct server *sv, FILE *f)
{
	static const char *const crls[2] = {"full", "delta"};
	long long ca = not_after(sv->issuer.cert), signer;
	struct stat st;

	pthread_rwlock_rdlock(&sv->signer_lock);
	signer = not_after(sv->signer.cert);
	pthread_rwlock_unlock(&sv->signer_lock);
	fputs("# HELP keyward_ca_certificate_expiry_timestamp_seconds When a certificate serve relies on expires.\n"
	      "# TYPE keyward_ca_certificate_expiry_timestamp_seconds gauge\n",
	      f);
	if (ca >= 0)
		fprintf(f, "keyward_ca_certificate_expiry_timestamp_seconds{certificate=\"ca\"} %lld\n", ca);
	if (signer >= 0)
		fprintf(f, "keyward_ca_certificate_expiry_timestamp_seconds{certificate=\"ocsp_signer\"} %lld\n", signer);
	fputs("# HELP keyward_ca_crl_published_timestamp_seconds When each CRL in publish/ was last written.\n"
	      "# TYPE keyward_ca_crl_published_timestamp_seconds gauge\n",
	      f);
	for (int i = 0; i < 2; i++)
		if (stat(sv->files[i].path, &st) == 0)
			fprintf(f, "keyward_ca_crl_published_timestamp_seconds{crl=\"%s\"} %lld\n", crls[i],
				(long long)st.st_mtime);
	fprintf(f,
		"# HELP keyward_ca_crl_publish_errors_total CRLs serve failed to publish when due.\n"
		"# TYPE keyward_ca_crl_publish_errors_total counter\n"
		"keyward_ca_crl_publish_errors_total %llu\n",
		atomic_load(&sv->crl_errors));
}

char *serve_metrics_text(struct server *sv, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	unsigned long long cumulative = 0;
	static const char *const classes[SERVE_CLASS_N] = {"ok", "client_error", "server_error"};

	if (!f)
		return NULL;
	fputs("# HELP keyward_ca_http_requests_total HTTP requests by endpoint and outcome.\n"
	      "# TYPE keyward_ca_http_requests_total counter\n",
	      f);
	for (int e = 0; e < EP_N; e++)
		for (int o = 0; o < O_N; o++) {
			unsigned long long n = atomic_load(&sv->requests[e][o]);

			if (n || (e == EP_OCSP && o < OCSP_OUT_N))
				fprintf(f, "keyward_ca_http_requests_total{endpoint=\"%s\",outcome=\"%s\"} %llu\n",
					endpoint_names[e], outcome_name(o), n);
		}
	fputs("# HELP keyward_ca_http_request_duration_seconds Time from a request's arrival to its answer.\n"
	      "# TYPE keyward_ca_http_request_duration_seconds histogram\n",
	      f);
	for (size_t i = 0; i <= N_BUCKETS; i++) {
		cumulative += atomic_load(&sv->latency[i]);
		if (i < N_BUCKETS)
			fprintf(f, "keyward_ca_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
				serve_latency_buckets[i], cumulative);
		else
			fprintf(f, "keyward_ca_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cumulative);
	}
	fprintf(f,
		"keyward_ca_http_request_duration_seconds_sum %.6f\n"
		"keyward_ca_http_request_duration_seconds_count %llu\n"
		"# HELP keyward_ca_ocsp_cache_hits_total OCSP requests answered from the pre-signed cache.\n"
		"# TYPE keyward_ca_ocsp_cache_hits_total counter\n"
		"keyward_ca_ocsp_cache_hits_total %llu\n"
		"# HELP keyward_ca_ocsp_cache_misses_total Cacheable OCSP requests signed on arrival.\n"
		"# TYPE keyward_ca_ocsp_cache_misses_total counter\n"
		"keyward_ca_ocsp_cache_misses_total %llu\n"
		"# HELP keyward_ca_ocsp_cache_entries Pre-signed OCSP answers held.\n"
		"# TYPE keyward_ca_ocsp_cache_entries gauge\n"
		"keyward_ca_ocsp_cache_entries %lld\n"
		"# HELP keyward_ca_ocsp_presigned_total OCSP answers signed for the cache.\n"
		"# TYPE keyward_ca_ocsp_presigned_total counter\n"
		"keyward_ca_ocsp_presigned_total %llu\n"
		"# HELP keyward_ca_ocsp_presign_backlog Answers waiting to be pre-signed.\n"
		"# TYPE keyward_ca_ocsp_presign_backlog gauge\n"
		"keyward_ca_ocsp_presign_backlog %lld\n"
		"# HELP keyward_ca_hsm_errors_total Signatures the HSM did not make.\n"
		"# TYPE keyward_ca_hsm_errors_total counter\n"
		"keyward_ca_hsm_errors_total %llu\n"
		"# HELP keyward_ca_db_errors_total Database reads that failed.\n"
		"# TYPE keyward_ca_db_errors_total counter\n"
		"keyward_ca_db_errors_total %llu\n",
		(double)atomic_load(&sv->latency_us_sum) / 1e6, cumulative, atomic_load(&sv->cache_hits),
		atomic_load(&sv->cache_misses), (long long)atomic_load(&sv->cache_size), atomic_load(&sv->presigned),
		(long long)atomic_load(&sv->backlog), atomic_load(&sv->hsm_errors), atomic_load(&sv->db_errors));
	dates(sv, f);
	fputs("# HELP keyward_ca_app_requests_total Requests to the mounted applications (CMP, ACME) by status class.\n"
	      "# TYPE keyward_ca_app_requests_total counter\n",
	      f);
	for (size_t a = 0; a < sv->n_apps; a++)
		for (int k = 0; k < SERVE_CLASS_N; k++)
			fprintf(f, "keyward_ca_app_requests_total{app=\"%s\",class=\"%s\"} %llu\n", serve_apps[a]->name,
				classes[k], atomic_load(&sv->app_requests[a][k]));
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
