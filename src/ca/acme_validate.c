/*
 * Challenge validation off the HTTP threads: a challenge's POST queues a
 * job and answers "processing" at once; a few validator threads fetch
 * (http-01) or ask the hook (dns-01) and record the outcome, which the
 * client sees when it polls the authorization (RFC 8555 7.5.1). So a
 * client that points its name at a slow or silent host ties up a
 * validator for at most fetch_timeout, never serve's OCSP or CRL
 * answers; the queue is bounded and a full one is answered rateLimited.
 * When serve stops, the validations it cuts short or never starts are
 * taken back (acme_authz_try_undo): the client answers the challenge
 * again once serve is back.
 */
#include <stdlib.h>
#include <string.h>

#include "ca/acme.h"

struct acme_validator {
	struct acme *a;
	pthread_mutex_t lock;
	pthread_cond_t more;
	struct acme_job *jobs; /* a ring of cap */
	size_t cap, head, n;
	pthread_t *threads;
	unsigned n_threads;
	bool stop;
};

static void validate(struct acme_validator *v, const struct acme_job *job)
{
	enum acme_prob p;

	if (!strcmp(job->type, "http-01")) {
		p = acme_http01(&v->a->conf, job->name, job->token, job->key_auth, &v->a->stopping);
	} else {
		unsigned char md[32];
		char digest[48];

		EVP_Digest(job->key_auth, strlen(job->key_auth), md, NULL, EVP_sha256(), NULL);
		acme_b64u_encode(md, sizeof md, digest);
		p = acme_dns01(&v->a->conf, job->name, digest, &v->a->stopping);
	}
	/* cut short by serve stopping, which is not the client's failure: the challenge may be answered again */
	if (p && atomic_load(&v->a->stopping)) {
		acme_authz_try_undo(v->a->db, job->authz, job->type);
		return;
	}
	/* if this fails the authorization stays pending, and expires */
	acme_authz_settle(v->a->db, job->authz, job->type, p ? "invalid" : "valid", p ? acme_prob_type(p) : NULL,
			  p ? ca_last_error() : NULL);
}

static void *validator_main(void *arg)
{
	struct acme_validator *v = arg;
	struct acme_job job;

	pthread_mutex_lock(&v->lock);
	for (;;) {
		while (!v->n && !v->stop)
			pthread_cond_wait(&v->more, &v->lock);
		if (v->stop)
			break;
		job = v->jobs[v->head];
		v->head = (v->head + 1) % v->cap;
		v->n--;
		pthread_mutex_unlock(&v->lock);
		validate(v, &job);
		pthread_mutex_lock(&v->lock);
	}
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

int acme_validator_start(struct acme *a, unsigned threads, unsigned queue, struct acme_validator **out)
{
	struct acme_validator *v = calloc(1, sizeof *v);

	*out = NULL;
	if (!v || !(v->jobs = calloc(queue, sizeof *v->jobs)) || !(v->threads = calloc(threads, sizeof *v->threads))) {
		if (v)
			free(v->jobs);
		free(v);
		return ca_error("out of memory");
	}
	v->a = a;
	v->cap = queue;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->more, NULL);
	for (; v->n_threads < threads; v->n_threads++)
		if (pthread_create(&v->threads[v->n_threads], NULL, validator_main, v)) {
			acme_validator_stop(v);
			return ca_error("ACME: cannot start a validator thread");
		}
	*out = v;
	return 0;
}

void acme_validator_stop(struct acme_validator *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	v->stop = true;
	pthread_cond_broadcast(&v->more);
	pthread_mutex_unlock(&v->lock);
	for (unsigned i = 0; i < v->n_threads; i++)
		pthread_join(v->threads[i], NULL);
	/* the validations never started are taken back likewise, not left processing until they expire */
	for (; v->n; v->n--, v->head = (v->head + 1) % v->cap)
		acme_authz_try_undo(v->a->db, v->jobs[v->head].authz, v->jobs[v->head].type);
	pthread_cond_destroy(&v->more);
	pthread_mutex_destroy(&v->lock);
	free(v->jobs);
	free(v->threads);
	free(v);
}

int acme_validator_queue(struct acme_validator *v, const struct acme_job *job)
{
	int rc = 1;

	pthread_mutex_lock(&v->lock);
	if (v->n < v->cap && !v->stop) {
		v->jobs[(v->head + v->n) % v->cap] = *job;
		v->n++;
		pthread_cond_signal(&v->more);
		rc = 0;
	}
	pthread_mutex_unlock(&v->lock);
	return rc;
}
