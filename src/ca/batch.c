/*
 * keyward-ca: many requests in one process (submit CSR... --out-dir D).
 * Worker threads build and sign certificates (each signature is an HSM
 * request; libp11 keeps a session per thread in flight), and the main
 * thread records them in groups, one transaction per group: the fsync of
 * a commit is shared by the group instead of paid per certificate. Each
 * certificate is reported ("issued SERIAL FILE") and written only after
 * its group committed, as in single issuance.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "ca/cli.h"

/* certificates per transaction: large enough to share the fsync, small enough to report often */
#define GROUP 64

struct work {
	struct ca *ca;
	const struct ca_template *t;
	X509_REQ **reqs;
	X509 **made; /* one per request of the group; NULL on failure */
	size_t base, count;
	atomic_size_t next;
	atomic_int failed;
	char error[512];
	pthread_mutex_t lock;
};

static void *signer(void *arg)
{
	struct work *w = arg;
	size_t i;

	while ((i = atomic_fetch_add(&w->next, 1)) < w->count && !atomic_load(&w->failed)) {
		w->made[i] = ca_cert_issue(&w->ca->conf, w->t, w->reqs[w->base + i], ca_cert(w->ca), w->ca->priv);
		if (!w->made[i] && !atomic_exchange(&w->failed, 1)) {
			pthread_mutex_lock(&w->lock);
			snprintf(w->error, sizeof w->error, "%s", ca_last_error());
			pthread_mutex_unlock(&w->lock);
		}
		ERR_clear_error();
	}
	return NULL;
}

/* Signs requests [base, base + count) on threads into made. */
static int sign_group(struct work *w, unsigned threads)
{
	pthread_t tid[64];
	unsigned started = 0;

	atomic_store(&w->next, 0);
	for (; started < threads && started < w->count; started++)
		if (pthread_create(&tid[started], NULL, signer, w) != 0)
			break;
	if (!started)
		signer(w); /* no thread to be had: sign here */
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	return atomic_load(&w->failed) ? ca_error("%s", w->error) : 0;
}

static int write_one(const struct opts *o, const struct issued *is)
{
	char path[CA_PATH_MAX + 100];

	if (!o->out_dir)
		return write_cert(NULL, is->x); /* after its "issued" line, as a single submit prints it */
	snprintf(path, sizeof path, "%s/%s.pem", o->out_dir, is->row.serial);
	return write_cert(path, is->x);
}

int issue_batch(struct ca *ca, const struct ca_template *t, X509_REQ **reqs, char **files, size_t n,
		const struct opts *o)
{
	struct work w = {.ca = ca, .t = t, .reqs = reqs, .lock = PTHREAD_MUTEX_INITIALIZER};
	unsigned threads = o->threads ? o->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	struct issued is[GROUP];
	X509 *made[GROUP];
	int rc = 0;

	if (o->out_dir && access(o->out_dir, W_OK) != 0)
		return ca_error("--out-dir %s: %s", o->out_dir, strerror(errno));
	w.made = made;
	for (size_t base = 0; base < n && !rc; base += GROUP) {
		size_t count = n - base < GROUP ? n - base : GROUP, filled = 0;

		memset(made, 0, sizeof made);
		w.base = base;
		w.count = count;
		rc = sign_group(&w, threads ? threads : 1);
		for (size_t i = 0; i < count && !rc; i++, filled++) {
			rc = issued_fill(&is[i], made[i], t, 0);
			made[i] = NULL; /* is[i] owns it now */
		}
		if (!rc)
			rc = issued_record(ca, is, count);
		for (size_t i = 0; i < count && !rc; i++) {
			/* committed: now it may be told */
			if (o->json)
				printf("{\"status\": \"issued\", \"serial\": \"%s\", \"request\": \"%s\"}\n",
				       is[i].row.serial, files[base + i]);
			else
				printf("issued %s %s\n", is[i].row.serial, files[base + i]);
			rc = write_one(o, &is[i]);
		}
		fflush(stdout);
		for (size_t i = 0; i < filled; i++)
			issued_free(&is[i]);
		for (size_t i = 0; i < count; i++)
			X509_free(made[i]);
	}
	pthread_mutex_destroy(&w.lock);
	return rc;
}
