/*
 * keyward-ca: many requests in one process (submit CSR... --out-dir D).
 * A pipeline, so that the CA's own work on one certificate is done while
 * the HSM signs another:
 *
 *   - the preparer thread reads each request, checks it (its signature,
 *     the template's rules) and builds its certificate, unsigned;
 *   - the signer threads (--threads) sign the certificates built: each
 *     signature is an HSM round trip;
 *   - the calling thread records them in order, GROUP per transaction so
 *     that one fsync serves the group, then reports and writes each.
 *
 * The preparer and the calling thread run at a lower priority than the
 * signers, so that the HSM is never kept waiting for the CA's own work.
 *
 * Nothing is recorded before every request has been checked: one bad
 * request issues none. Certificates signed by then are dropped unrecorded
 * and untold, as after a crash; their serials are random, so nothing is
 * used up. Each certificate is reported ("issued SERIAL FILE") and written
 * only after its group committed, as in single issuance. Until the last
 * request is checked, the certificates signed are held in memory.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/err.h>

#include "ca/cli.h"

/* certificates per transaction: large enough to share the fsync, small enough to report often */
#define GROUP 64
#define SIGNERS_MAX 64
/* how much lower the reading and recording threads run than the signers (nice steps) */
#define NICE_STEP 5

struct pipeline {
	struct ca *ca;
	const struct ca_template *t;
	struct ca_issuer issuer;
	char **files;
	size_t n;
	X509 **cert;	    /* [i]: certificate i, built, then signed */
	unsigned *n_signed; /* [g]: how many certificates of group g are signed */

	pthread_mutex_t lock;	 /* guards everything below, and n_signed[] */
	pthread_cond_t built;	 /* a certificate was built, or the preparer stopped */
	pthread_cond_t progress; /* a group was signed, the preparer finished, or a thread failed */
	size_t n_built, next_to_sign;
	bool prepared_all; /* every request read, checked and built */
	bool failed;	   /* the first failure is in error; every thread stops */
	char error[600];
};

/* Records the calling thread's last error as the pipeline's failure (the first one wins). */
static void pipeline_fail(struct pipeline *p)
{
	pthread_mutex_lock(&p->lock);
	if (!p->failed)
		snprintf(p->error, sizeof p->error, "%s", ca_last_error());
	p->failed = true;
	pthread_cond_broadcast(&p->built);
	pthread_cond_broadcast(&p->progress);
	pthread_mutex_unlock(&p->lock);
}

static size_t group_size(const struct pipeline *p, size_t g)
{
	return p->n - g * GROUP < GROUP ? p->n - g * GROUP : GROUP;
}

static bool pipeline_failed(struct pipeline *p)
{
	bool failed;

	pthread_mutex_lock(&p->lock);
	failed = p->failed;
	pthread_mutex_unlock(&p->lock);
	return failed;
}

/* Certificate i from request file i, checked and built; NULL after ca_error(). */
static X509 *prepare(struct pipeline *p, struct ca_key_decoder *d, size_t i)
{
	struct ca_request *req = ca_request_read(p->files[i], d);
	X509 *x = NULL;

	if (req && ca_request_check(p->t, req) == 0)
		x = ca_cert_build(&p->issuer, req);
	else if (req)
		ca_error("%s: %s", p->files[i], ca_last_error());
	ca_request_free(req);
	ERR_clear_error();
	return x;
}

/*
 * The calling thread yields to the signers (Linux's nice value is a
 * thread's own): when the HSM answers, a signer should run at once and
 * send it the next certificate; the CA's own work fills the gaps.
 */
static void yield_to_signers(void)
{
	id_t tid = (id_t)syscall(SYS_gettid);
	int nice;

	errno = 0;
	nice = getpriority(PRIO_PROCESS, tid);
	if (errno == 0)
		setpriority(PRIO_PROCESS, tid, nice + NICE_STEP); /* lowering one's own priority needs no privilege */
}

static void *preparer(void *arg)
{
	struct pipeline *p = arg;
	struct ca_key_decoder *d = ca_key_decoder_new();
	size_t i;

	for (i = 0; d && i < p->n && !pipeline_failed(p); i++) {
		X509 *x = prepare(p, d, i);

		if (!x)
			break;
		pthread_mutex_lock(&p->lock);
		p->cert[i] = x;
		p->n_built = i + 1;
		pthread_cond_signal(&p->built);
		pthread_mutex_unlock(&p->lock);
	}
	ca_key_decoder_free(d);
	if (i < p->n) {
		pipeline_fail(p);
		return NULL;
	}
	pthread_mutex_lock(&p->lock);
	p->prepared_all = true;
	pthread_cond_broadcast(&p->built);
	pthread_cond_broadcast(&p->progress);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void *preparer_thread(void *arg)
{
	yield_to_signers();
	return preparer(arg);
}

static void *signer(void *arg)
{
	struct pipeline *p = arg;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&p->lock);
		while (!p->failed && p->next_to_sign == p->n_built && p->next_to_sign < p->n)
			pthread_cond_wait(&p->built, &p->lock);
		if (p->failed || p->next_to_sign == p->n) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		i = p->next_to_sign++;
		pthread_mutex_unlock(&p->lock);

		if (ca_cert_sign(&p->ca->conf, p->cert[i], p->ca->priv)) {
			pipeline_fail(p);
			return NULL;
		}
		pthread_mutex_lock(&p->lock);
		/* the calling thread is woken once a group, not once a certificate */
		if (++p->n_signed[i / GROUP] == group_size(p, i / GROUP))
			pthread_cond_signal(&p->progress);
		pthread_mutex_unlock(&p->lock);
	}
}

/* Waits until group g is signed and every request is checked; -1 if something failed. */
static int wait_for(struct pipeline *p, size_t g)
{
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	while (!p->failed && !(p->prepared_all && p->n_signed[g] == group_size(p, g)))
		pthread_cond_wait(&p->progress, &p->lock);
	if (p->failed)
		rc = ca_error("%s", p->error);
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static int write_one(const struct opts *o, const struct issued *is)
{
	char path[CA_PATH_MAX + 100];

	/* without --out-dir, after its "issued" line, as a single submit prints it */
	if (!o->out_dir)
		return write_cert(NULL, is->der, is->der_len);
	if (snprintf(path, sizeof path, "%s/%.*s.pem", o->out_dir, (int)sizeof is->row.serial, is->row.serial) >=
	    (int)sizeof path)
		return ca_error("--out-dir %s: name too long", o->out_dir);
	return write_cert(path, is->der, is->der_len);
}

/* Records, reports and writes the certificates, a group at a time, as they are signed. */
static int record_all(struct pipeline *p, const struct opts *o)
{
	struct issued is[GROUP];
	int rc = 0;

	for (size_t g = 0, base = 0; base < p->n && !rc; g++, base += GROUP) {
		size_t count = group_size(p, g), filled = 0;

		if ((rc = wait_for(p, g)))
			break;
		for (; filled < count && !rc; filled++) {
			rc = issued_fill(&is[filled], p->cert[base + filled], p->t, 0);
			p->cert[base + filled] = NULL; /* freed by issued_fill */
		}
		if (!rc)
			rc = issued_record(p->ca, is, count);
		for (size_t i = 0; i < count && !rc; i++) {
			/* committed: now it may be told */
			if (o->json)
				printf("{\"status\": \"issued\", \"serial\": \"%s\", \"request\": \"%s\"}\n",
				       is[i].row.serial, p->files[base + i]);
			else
				printf("issued %s %s\n", is[i].row.serial, p->files[base + i]);
			rc = write_one(o, &is[i]);
		}
		fflush(stdout);
		for (size_t i = 0; i < filled; i++)
			issued_free(&is[i]);
	}
	if (rc)
		pipeline_fail(p); /* the threads stop too */
	return rc;
}

int issue_batch(struct ca *ca, const struct ca_template *t, char **files, size_t n, const struct opts *o)
{
	struct pipeline p = {.ca = ca, .t = t, .files = files, .n = n};
	unsigned threads = o->threads ? o->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	pthread_t preparer_tid, signer_tid[SIGNERS_MAX];
	unsigned signers = 0;
	bool preparing;
	int rc;

	if (o->out_dir && access(o->out_dir, W_OK) != 0)
		return ca_error("--out-dir %s: %s", o->out_dir, strerror(errno));
	if (ca_issuer_init(&p.issuer, &ca->conf, t, ca_cert(ca)))
		return -1;
	p.cert = calloc(n, sizeof *p.cert);
	p.n_signed = calloc((n + GROUP - 1) / GROUP, sizeof *p.n_signed);
	if (!p.cert || !p.n_signed) {
		free(p.cert);
		free(p.n_signed);
		ca_issuer_clear(&p.issuer);
		return ca_error("out of memory");
	}
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.built, NULL);
	pthread_cond_init(&p.progress, NULL);

	preparing = pthread_create(&preparer_tid, NULL, preparer_thread, &p) == 0;
	if (!preparing)
		preparer(&p); /* no thread to be had: prepare everything first */
	if (threads < 1)
		threads = 1;
	for (; signers < threads && signers < SIGNERS_MAX && signers < n; signers++)
		if (pthread_create(&signer_tid[signers], NULL, signer, &p) != 0)
			break;
	if (!signers) {
		ca_error("cannot start a signing thread: %s", strerror(errno));
		pipeline_fail(&p);
	}
	yield_to_signers(); /* after the signers started: they would inherit it */
	rc = record_all(&p, o);

	if (preparing)
		pthread_join(preparer_tid, NULL);
	for (unsigned i = 0; i < signers; i++)
		pthread_join(signer_tid[i], NULL);
	for (size_t i = 0; i < n; i++)
		X509_free(p.cert[i]);
	free(p.cert);
	free(p.n_signed);
	ca_issuer_clear(&p.issuer);
	pthread_cond_destroy(&p.built);
	pthread_cond_destroy(&p.progress);
	pthread_mutex_destroy(&p.lock);
	return rc;
}
