/*
 * keyward-ca serve: the presign thread. It signs an answer for every known
 * serial into the cache (in batches of CA_SIGN_BATCH where the module
 * offers them), then every half second asks the database whether another
 * connection committed (SQLite's data_version): the certificates changed
 * since are dropped from the cache at once and signed again, and answers
 * past half their validity are signed again too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "ca/ocspder.h"
#include "ca/serve_internal.h"
#include "common/log.h"

/* Signs serial's answer for the cache (presign's thread, its own database connection). */
static int presign_one(struct server *sv, const char *serial)
{
	OCSP_REQUEST *req = ocsp_request_for_serial(&sv->issuer, serial);
	struct serve_lookup l = {.sv = sv, .db = sv->pre};
	struct ocsp_result res;
	unsigned char *der = NULL;
	size_t len = 0;

	if (!req)
		return -1;
	if (!serve_sign_answer(sv, req, &l, &der, &len, &res) &&
	    (res.outcome == OCSP_OUT_GOOD || res.outcome == OCSP_OUT_REVOKED)) {
		serve_cache_put(sv, serial, res.outcome, NULL, der, len, res.this_update, res.next_update, ~0ULL);
		atomic_fetch_add(&sv->presigned, 1);
	}
	OPENSSL_free(der);
	OCSP_REQUEST_free(req);
	return 0;
}

struct serials {
	char (*v)[OCSP_SERIAL_HEX_MAX];
	size_t n, cap;
};

static int serials_add(void *arg, const char *serial)
{
	struct serials *s = arg;

	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 1024;
		void *v = realloc(s->v, cap * sizeof *s->v);

		if (!v)
			return ca_error("out of memory");
		s->v = v;
		s->cap = cap;
	}
	snprintf(s->v[s->n++], OCSP_SERIAL_HEX_MAX, "%s", serial);
	return 0;
}

struct changed {
	struct server *sv;
	struct serials list;
};

static int on_change(void *arg, const char *serial)
{
	struct changed *c = arg;

	serve_cache_drop(c->sv, serial); /* at once: until signed again, the database answers */
	return serials_add(&c->list, serial);
}

/* Signs the answers in list, counting them down in the backlog; stops early when stopping. */
/*
 * The answers of list[from, from + n) signed in one HSM round trip
 * (ocspder.c), those the CA knows (good or revoked) put in the cache.
 */
static void presign_batch(struct server *sv, const struct serials *list, size_t from, size_t n)
{
	struct ocsp_presign_item items[CA_SIGN_BATCH];
	struct serve_lookup l = {.sv = sv, .db = sv->pre};
	time_t now = time(NULL);
	size_t k = 0;
	int rc;

	for (size_t i = from; i < from + n; i++) {
		memset(&items[k], 0, sizeof items[k]);
		snprintf(items[k].serial, sizeof items[k].serial, "%s", list->v[i]);
		if (serve_lookup_status(&l, items[k].serial, &items[k].status) == 0 &&
		    items[k].status.status != V_OCSP_CERTSTATUS_UNKNOWN)
			k++;
	}
	if (!k)
		return;
	pthread_rwlock_rdlock(&sv->signer_lock);
	{
		struct ocsp_presign p = serve_presign_locked(sv);

		rc = ocsp_presign_batch(&p, items, k, now, sv->sc.validity_seconds);
	}
	pthread_rwlock_unlock(&sv->signer_lock);
	if (rc) {
		atomic_fetch_add(&sv->hsm_errors, 1);
		kw_log_limited("serve.sign", KW_LOG_ERROR, "keyward-ca serve: pre-signing: %s", ca_last_error());
		return;
	}
	for (size_t i = 0; i < k; i++) {
		serve_cache_put(sv, items[i].serial,
				items[i].status.status == V_OCSP_CERTSTATUS_REVOKED ? OCSP_OUT_REVOKED : OCSP_OUT_GOOD,
				&items[i].status, items[i].der, items[i].len, now,
				now + (time_t)sv->sc.validity_seconds, ~0ULL);
		atomic_fetch_add(&sv->presigned, 1);
		free(items[i].der);
	}
}

static void presign_list(struct server *sv, const struct serials *list)
{
	atomic_fetch_add(&sv->backlog, (long long)list->n);
	if (sv->batch) {
		for (size_t i = 0; i < list->n; i += CA_SIGN_BATCH) {
			size_t n = list->n - i < CA_SIGN_BATCH ? list->n - i : CA_SIGN_BATCH;

			if (serve_stopping(sv)) {
				atomic_fetch_sub(&sv->backlog, (long long)(list->n - i));
				return;
			}
			presign_batch(sv, list, i, n);
			atomic_fetch_sub(&sv->backlog, (long long)n);
		}
		return;
	}
	for (size_t i = 0; i < list->n; i++) {
		if (i % sv->sc.presign_batch == 0 && serve_stopping(sv)) {
			atomic_fetch_sub(&sv->backlog, (long long)(list->n - i));
			return;
		}
		presign_one(sv, list->v[i]);
		atomic_fetch_sub(&sv->backlog, 1);
	}
}

void *serve_presign_main(void *arg)
{
	struct server *sv = arg;
	struct ca_status_mark mark = {0};
	struct serials all = {0};
	long long version = 0, v;

	/* where the database is before the walk: whatever changes during it is seen after */
	if (ca_status_version(sv->pre, &version) || ca_status_mark(sv->pre, &mark) ||
	    ca_status_each(sv->pre, time(NULL), serials_add, &all))
		kw_log(KW_LOG_ERROR, "keyward-ca serve: pre-signing: %s", ca_last_error());
	presign_list(sv, &all);
	free(all.v);
	kw_log(KW_LOG_INFO, "keyward-ca serve: %lld OCSP answers pre-signed", (long long)atomic_load(&sv->cache_size));
	while (!serve_stop_wait(sv, 0.5)) {
		struct changed c = {.sv = sv};
		struct serials stale = {0};

		if (ca_status_version(sv->pre, &v)) {
			atomic_fetch_add(&sv->db_errors, 1);
			continue;
		}
		if (v != version) {
			if (ca_status_changes(sv->pre, &mark, on_change, &c) == 0)
				version = v;
			else
				atomic_fetch_add(&sv->db_errors, 1);
			presign_list(sv, &c.list);
			free(c.list.v);
		}
		serve_cache_stale(sv, time(NULL), serials_add, &stale);
		presign_list(sv, &stale);
		free(stale.v);
	}
	return NULL;
}
