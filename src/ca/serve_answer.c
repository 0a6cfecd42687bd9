/*
 * keyward-ca serve: answering OCSP from the database, signed then, by the
 * signer's key; through the signing queue where the module signs in
 * batches.
 */
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "ca/ocspder.h"
#include "ca/serve_internal.h"
#include "common/log.h"

int serve_lookup_status(void *arg, const char *serial, struct ocsp_status *st)
{
	struct serve_lookup *l = arg;
	int rc;

	if (l->cache_first && serve_cache_status(l->sv, serial, time(NULL), st) == 0)
		return 0;
	if (l->lock)
		pthread_mutex_lock(l->lock);
	rc = ca_status_get(l->db, serial, st);
	if (l->lock)
		pthread_mutex_unlock(l->lock);
	if (rc) {
		l->failed = true;
		atomic_fetch_add(&l->sv->db_errors, 1);
		kw_log_limited("serve.db", KW_LOG_ERROR, "keyward-ca serve: %s", ca_last_error());
	}
	return rc;
}

/*
 * The signing queue: an HTTP thread with an answer to sign (a nonce, or not
 * in the cache) puts its ResponseData here and waits; the queue's thread
 * signs what has gathered, up to CA_SIGN_BATCH, in one HSM round trip. So
 * round trips follow how many requests are in flight, not how many come.
 */
struct sign_job {
	struct ca_der tbs;
	const EVP_MD *md;
	unsigned char *sig;
	size_t sig_len;
	int rc;
	sem_t done; /* posted by the queue's thread: only this job's thread wakes */
	struct sign_job *next;
};

void *serve_signq_main(void *arg)
{
	struct server *sv = arg;
	struct signq *q = &sv->q;

	for (;;) {
		struct sign_job *jobs[CA_SIGN_BATCH];
		const unsigned char *data[CA_SIGN_BATCH];
		unsigned char *sigs[CA_SIGN_BATCH] = {NULL};
		size_t lens[CA_SIGN_BATCH], sig_lens[CA_SIGN_BATCH], n = 0;
		int rc;

		pthread_mutex_lock(&q->mu);
		q->idle = true;
		while (!q->head && !q->stop)
			pthread_cond_wait(&q->work, &q->mu);
		q->idle = false;
		if (!q->head) {
			pthread_mutex_unlock(&q->mu);
			return NULL;
		}
		/* one digest for the batch: the signer's (the same for every job) */
		while (q->head && n < CA_SIGN_BATCH && (n == 0 || q->head->md == jobs[0]->md)) {
			jobs[n] = q->head;
			q->head = q->head->next;
			n++;
		}
		if (!q->head)
			q->tail = &q->head;
		pthread_mutex_unlock(&q->mu);
		for (size_t i = 0; i < n; i++) {
			data[i] = jobs[i]->tbs.p;
			lens[i] = jobs[i]->tbs.len;
		}
		rc = ca_batch_sign_data(sv->batch, jobs[0]->md, data, lens, n, sigs, sig_lens);
		if (rc)
			kw_log_limited("serve.sign", KW_LOG_ERROR, "keyward-ca serve: signing: %s", ca_last_error());
		for (size_t i = 0; i < n; i++) {
			jobs[i]->rc = rc;
			jobs[i]->sig = rc ? NULL : sigs[i];
			jobs[i]->sig_len = rc ? 0 : sig_lens[i];
			sem_post(&jobs[i]->done); /* the last touch: the job lives on its thread's stack */
		}
	}
}

/* job signed by the queue's thread: 0, or -1. */
static int signq_sign(struct server *sv, struct sign_job *job)
{
	struct signq *q = &sv->q;

	sem_init(&job->done, 0, 0);
	pthread_mutex_lock(&q->mu);
	job->next = NULL;
	*q->tail = job;
	q->tail = &job->next;
	/* a busy queue thread takes what gathered when it comes back: waking it again is a wasted syscall */
	if (q->idle)
		pthread_cond_signal(&q->work);
	pthread_mutex_unlock(&q->mu);
	while (sem_wait(&job->done) != 0)
		;
	sem_destroy(&job->done);
	return job->rc;
}

/* An internalError answer in *der (OPENSSL_malloc'd). */
static int internal_answer(unsigned char **der, size_t *len, struct ocsp_result *res)
{
	const unsigned char *bytes;

	ocsp_error_bytes(OCSP_RESPONSE_STATUS_INTERNALERROR, &bytes, len);
	res->outcome = OCSP_OUT_INTERNAL;
	res->cacheable = false;
	return (*der = OPENSSL_memdup(bytes, *len)) ? 0 : -1;
}

struct ocsp_presign serve_presign_locked(struct server *sv)
{
	return (struct ocsp_presign){.is = &sv->issuer,
				     .signer_cert = sv->signer.cert,
				     .include_cert = sv->signer.include_cert,
				     .md = sv->signer.md,
				     .batch = sv->batch,
				     .key_hash = sv->signer_key_hash};
}

/* The answer to req built here and signed through the queue (the signer's read lock held). */
static int queue_answer(struct server *sv, OCSP_REQUEST *req, struct serve_lookup *l, unsigned char **der, size_t *len,
			struct ocsp_result *res)
{
	struct ocsp_presign p = serve_presign_locked(sv);
	struct sign_job job = {.md = sv->signer.md};
	OCSP_BASICRESP *bs = NULL;
	unsigned char *out = NULL;
	size_t out_len = 0;
	time_t now = time(NULL);
	int rc = ocsp_answer_build(&sv->issuer, req, serve_lookup_status, l, now, sv->sc.validity_seconds, &bs, der,
				   len, res);

	if (rc || !bs)
		return rc; /* an error answer (or none) */
	if (ocsp_der_tbs(&p, bs, now, &job.tbs) || signq_sign(sv, &job) ||
	    ocsp_der_response(&p, &job.tbs, &sv->sig_alg, job.sig, job.sig_len, &out, &out_len) ||
	    !(*der = OPENSSL_memdup(out, out_len))) {
		rc = internal_answer(der, len, res);
	} else {
		*len = out_len;
	}
	OCSP_BASICRESP_free(bs);
	ca_der_free(&job.tbs);
	free(job.sig);
	free(out);
	return rc;
}

/* The answer to req, signed (through the queue when the HSM batches), under the signer's read lock. */
int serve_sign_answer(struct server *sv, OCSP_REQUEST *req, struct serve_lookup *l, unsigned char **der, size_t *len,
		      struct ocsp_result *res)
{
	int rc;

	pthread_rwlock_rdlock(&sv->signer_lock);
	if (sv->batch && sv->q.started)
		rc = queue_answer(sv, req, l, der, len, res);
	else
		rc = ocsp_answer(&sv->issuer, &sv->signer, req, serve_lookup_status, l, time(NULL),
				 sv->sc.validity_seconds, der, len, res);
	pthread_rwlock_unlock(&sv->signer_lock);
	if (!rc && res->outcome == OCSP_OUT_INTERNAL && !l->failed) {
		atomic_fetch_add(&sv->hsm_errors, 1);
		kw_log_limited("serve.sign", KW_LOG_ERROR, "keyward-ca serve: the OCSP signer's key did not sign");
	}
	return rc;
}
