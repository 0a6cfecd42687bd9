/*
 * keyward-ca: many requests in one process (submit CSR... --out-dir D).
 * A builder thread makes each group of certificates while the group
 * before is signed by the signer threads (each signature is an HSM
 * request) and recorded by the main thread, one transaction per group:
 * the CA's own work overlaps the HSM's, and the fsync of a commit is
 * shared by the group instead of paid per certificate. Each
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

/* A group of certificates: built unsigned by the builder, then signed in place by the signers. */
struct group {
	X509 *made[GROUP];
	size_t base, count;
	char error[512]; /* the first failure of the group, if any */
	atomic_int failed;
};

struct work {
	struct ca *ca;
	const struct ca_template *t;
	X509_REQ **reqs;
	struct group *g;
	atomic_size_t next;
	pthread_mutex_t lock;
};

static void group_failed(struct group *g, pthread_mutex_t *lock)
{
	if (atomic_exchange(&g->failed, 1))
		return;
	pthread_mutex_lock(lock);
	snprintf(g->error, sizeof g->error, "%s", ca_last_error());
	pthread_mutex_unlock(lock);
}

/* Builds the group's certificates, unsigned: this runs while the previous group is signed. */
static void *builder(void *arg)
{
	struct work *w = arg;
	struct group *g = w->g;

	for (size_t i = 0; i < g->count && !atomic_load(&g->failed); i++) {
		g->made[i] = ca_cert_build(&w->ca->conf, w->t, w->reqs[g->base + i], ca_cert(w->ca));
		if (!g->made[i])
			group_failed(g, &w->lock);
		ERR_clear_error();
	}
	return NULL;
}

static void *signer(void *arg)
{
	struct work *w = arg;
	struct group *g = w->g;
	size_t i;

	while ((i = atomic_fetch_add(&w->next, 1)) < g->count && !atomic_load(&g->failed)) {
		if (ca_cert_sign(&w->ca->conf, g->made[i], w->ca->priv))
			group_failed(g, &w->lock);
		ERR_clear_error();
	}
	return NULL;
}

/* Signs the built group g on threads. */
static int sign_group(struct work *w, struct group *g, unsigned threads)
{
	pthread_t tid[64];
	unsigned started = 0;

	w->g = g;
	atomic_store(&w->next, 0);
	for (; started < threads && started < g->count; started++)
		if (pthread_create(&tid[started], NULL, signer, w) != 0)
			break;
	if (!started)
		signer(w); /* no thread to be had: sign here */
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	return atomic_load(&g->failed) ? ca_error("%s", g->error) : 0;
}

static void group_clear(struct group *g, size_t base, size_t n)
{
	for (size_t i = 0; i < g->count; i++)
		X509_free(g->made[i]);
	memset(g->made, 0, sizeof g->made);
	g->base = base;
	g->count = n - base < GROUP ? n - base : GROUP;
	g->error[0] = '\0';
	atomic_store(&g->failed, 0);
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
	struct work build = {.ca = ca, .t = t, .reqs = reqs, .lock = PTHREAD_MUTEX_INITIALIZER};
	struct work sign = {.ca = ca, .t = t, .reqs = reqs, .lock = PTHREAD_MUTEX_INITIALIZER};
	unsigned threads = o->threads ? o->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	struct group *groups = calloc(2, sizeof *groups);
	struct issued is[GROUP];
	pthread_t builder_tid;
	int rc = 0;

	if (!groups)
		return ca_error("out of memory");
	if (o->out_dir && access(o->out_dir, W_OK) != 0) {
		free(groups);
		return ca_error("--out-dir %s: %s", o->out_dir, strerror(errno));
	}
	/*
	 * A pipeline: while group k is signed (the HSM's work) and committed,
	 * the builder makes group k + 1 (the CA's work), so the two overlap.
	 */
	group_clear(&groups[0], 0, n);
	build.g = &groups[0];
	builder(&build);
	for (size_t base = 0; base < n && !rc; base += GROUP) {
		struct group *g = &groups[(base / GROUP) % 2], *next = &groups[(base / GROUP + 1) % 2];
		bool building = false;
		size_t filled = 0;

		if (atomic_load(&g->failed)) {
			rc = ca_error("%s", g->error);
			break;
		}
		if (base + GROUP < n) {
			group_clear(next, base + GROUP, n);
			build.g = next;
			building = pthread_create(&builder_tid, NULL, builder, &build) == 0;
			if (!building)
				builder(&build);
		}
		rc = sign_group(&sign, g, threads ? threads : 1);
		for (size_t i = 0; i < g->count && !rc; i++, filled++) {
			rc = issued_fill(&is[i], g->made[i], t, 0);
			g->made[i] = NULL; /* is[i] owns it now */
		}
		if (!rc)
			rc = issued_record(ca, is, g->count);
		for (size_t i = 0; i < g->count && !rc; i++) {
			/* committed: now it may be told */
			if (o->json)
				printf("{\"status\": \"issued\", \"serial\": \"%s\", \"request\": \"%s\"}\n",
				       is[i].row.serial, files[g->base + i]);
			else
				printf("issued %s %s\n", is[i].row.serial, files[g->base + i]);
			rc = write_one(o, &is[i]);
		}
		fflush(stdout);
		for (size_t i = 0; i < filled; i++)
			issued_free(&is[i]);
		if (building)
			pthread_join(builder_tid, NULL);
	}
	group_clear(&groups[0], 0, 0);
	group_clear(&groups[1], 0, 0);
	free(groups);
	pthread_mutex_destroy(&build.lock);
	pthread_mutex_destroy(&sign.lock);
	return rc;
}
