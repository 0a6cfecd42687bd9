/*
 * keyward-ca: issuance, the one path every certificate takes (the command
 * line, approvals, serve's enrollment). A pipeline, so that the CA's own
 * work on one certificate is done while the HSM signs another:
 *
 *   - the preparer thread gets each request (b->get: a file read, a
 *     stored request parsed, bytes from the network), checks it (its
 *     signature, the template's rules) and builds its certificate,
 *     unsigned; it runs at a lower priority than the signers, so that the
 *     HSM is never kept waiting for the CA's own work;
 *   - the signer threads sign the certificates built: each signature is
 *     an HSM round trip;
 *   - the calling thread records them in order, GROUP per transaction so
 *     that one fsync serves the group, then tells b->done of each.
 *
 * Nothing is recorded before every request has been checked: one bad
 * request issues none. Certificates signed by then are dropped unrecorded
 * and untold, as after a crash; their serials are random, so nothing is
 * used up. Each certificate is told of only after its group committed: a
 * crash before that issued nothing anyone saw. Until the last request is
 * checked, the certificates signed are held in memory.
 *
 * A single certificate is a batch of one (ca_issue).
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

#include "ca/ca.h"

/* certificates per transaction: large enough to share the fsync, small enough to report often */
#define GROUP 64
#define SIGNERS_MAX 64
/* how much lower the preparer runs than the signers (nice steps) */
#define NICE_STEP 5

struct pipeline {
	struct ca *ca;
	const struct ca_batch *b;
	struct ca_issuer issuer;
	X509 **cert;	    /* [i]: certificate i, built, then signed */
	unsigned *n_signed; /* [g]: how many certificates of group g are signed */

	pthread_mutex_t lock;	 /* guards everything below, and n_signed[] */
	pthread_cond_t built;	 /* a certificate was built, or the preparer stopped */
	pthread_cond_t progress; /* a group was signed, the preparer finished, or a thread failed */
	size_t n_built, next_to_sign;
	bool prepared_all; /* every request got, checked and built */
	bool failed;	   /* the first failure is in error; every thread stops */
	enum ca_err kind;
	char error[1024];
};

void ca_issued_free(struct ca_issued *c)
{
	if (!c)
		return;
	OPENSSL_free(c->der);
	memset(c, 0, sizeof *c);
}

/* Fills c from x, issued for request_id (0: none), and frees x. */
static int issued_fill(struct ca_issued *c, struct ca_db_cert *row, X509 *x, const struct ca_template *t,
		       long long request_id)
{
	struct tm tm;
	unsigned char *der = NULL;
	int len;

	memset(c, 0, sizeof *c);
	memset(row, 0, sizeof *row);
	row->request_id = c->request_id = request_id;
	row->reason = -1;
	ca_serial_hex(X509_get0_serialNumber(x), row->serial, sizeof row->serial);
	X509_NAME_oneline(X509_get_subject_name(x), row->subject, sizeof row->subject);
	snprintf(row->template_name, sizeof row->template_name, "%s", t->name);
	ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm);
	row->not_before = timegm(&tm);
	ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
	row->not_after = timegm(&tm);
	len = i2d_X509(x, &der);
	X509_free(x);
	if (len <= 0)
		return ca_error("cannot encode the certificate");
	memcpy(c->serial, row->serial, sizeof c->serial);
	memcpy(c->subject, row->subject, sizeof c->subject);
	c->der = der;
	c->der_len = (size_t)len;
	return 0;
}

/* Records n certificates with their audit rows in one transaction. */
static int record(struct ca *ca, const struct ca_db_cert *rows, const struct ca_issued *c, size_t n)
{
	if (ca_db_begin(ca->db))
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct ca_db_cert *r = &rows[i];

		if (ca_db_insert_cert(ca->db, r, c[i].der, c[i].der_len) ||
		    (r->request_id > 0 && ca_db_set_request(ca->db, r->request_id, "issued", r->serial)) ||
		    ca_db_audit(ca->db, "issue", "serial %s template %s subject %s%s", r->serial, r->template_name,
				r->subject, r->request_id > 0 ? " (approved request)" : "") ||
		    (r->request_id > 0 &&
		     ca_db_audit(ca->db, "approve", "request %lld issued as serial %s", r->request_id, r->serial))) {
			ca_db_rollback(ca->db);
			return -1;
		}
	}
	if (ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		return -1;
	}
	return 0;
}

/* Records the calling thread's last error as the pipeline's failure (the first one wins). */
static void pipeline_fail(struct pipeline *p)
{
	pthread_mutex_lock(&p->lock);
	if (!p->failed) {
		snprintf(p->error, sizeof p->error, "%s", ca_last_error());
		p->kind = ca_last_error_kind();
	}
	p->failed = true;
	pthread_cond_broadcast(&p->built);
	pthread_cond_broadcast(&p->progress);
	pthread_mutex_unlock(&p->lock);
}

static size_t group_size(const struct pipeline *p, size_t g)
{
	return p->b->n - g * GROUP < GROUP ? p->b->n - g * GROUP : GROUP;
}

static bool pipeline_failed(struct pipeline *p)
{
	bool failed;

	pthread_mutex_lock(&p->lock);
	failed = p->failed;
	pthread_mutex_unlock(&p->lock);
	return failed;
}

/* Certificate i, its request got, checked and built; NULL after ca_error(). */
static X509 *prepare(struct pipeline *p, struct ca_key_decoder *d, size_t i)
{
	struct ca_request *req = p->b->get(p->b->get_arg, i, d);
	X509 *x = NULL;

	if (req && ca_request_check(p->b->t, req) == 0) {
		x = ca_cert_build(&p->issuer, req);
	} else if (req) {
		/* refused by the template's rules (or its signature): the request's fault, not the CA's */
		if (p->b->names)
			ca_fail(CA_ERR_REFUSED, "%s: %s", p->b->names[i], ca_last_error());
		else if (p->b->n > 1)
			ca_fail(CA_ERR_REFUSED, "request %zu: %s", i + 1, ca_last_error());
		else
			ca_fail(CA_ERR_REFUSED, "%s", ca_last_error());
	}
	ca_request_free(req);
	ERR_clear_error();
	return x;
}

static void *preparer(void *arg)
{
	struct pipeline *p = arg;
	struct ca_key_decoder *d = p->ca->decoder;
	size_t i;

	for (i = 0; i < p->b->n && !pipeline_failed(p); i++) {
		X509 *x = prepare(p, d, i);

		if (!x)
			break;
		pthread_mutex_lock(&p->lock);
		p->cert[i] = x;
		p->n_built = i + 1;
		pthread_cond_signal(&p->built);
		pthread_mutex_unlock(&p->lock);
	}
	if (i < p->b->n) {
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

/*
 * The preparer yields to the signers (Linux's nice value is a thread's
 * own): when the HSM answers, a signer should run at once and send it the
 * next certificate; the CA's own work fills the gaps.
 */
static void *preparer_thread(void *arg)
{
	id_t tid = (id_t)syscall(SYS_gettid);
	int nice;

	errno = 0;
	nice = getpriority(PRIO_PROCESS, tid);
	if (errno == 0)
		setpriority(PRIO_PROCESS, tid, nice + NICE_STEP); /* lowering one's own priority needs no privilege */
	return preparer(arg);
}

static void *signer(void *arg)
{
	struct pipeline *p = arg;

	for (;;) {
		size_t i, k;

		pthread_mutex_lock(&p->lock);
		while (!p->failed && p->next_to_sign == p->n_built && p->next_to_sign < p->b->n)
			pthread_cond_wait(&p->built, &p->lock);
		if (p->failed || p->next_to_sign == p->b->n) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		/* one certificate per C_Sign; with the batch interface, as many as are built (one round trip) */
		i = p->next_to_sign;
		k = p->ca->batch ? p->n_built - i : 1;
		if (k > CA_SIGN_BATCH)
			k = CA_SIGN_BATCH;
		p->next_to_sign += k;
		pthread_mutex_unlock(&p->lock);

		if (p->ca->batch ? ca_batch_sign_certs(p->ca->batch, ca_md(&p->ca->conf), &p->cert[i], k)
				 : ca_cert_sign(&p->ca->conf, p->cert[i], p->ca->priv)) {
			pipeline_fail(p);
			return NULL;
		}
		pthread_mutex_lock(&p->lock);
		/* the calling thread is woken once a group, not once a certificate */
		for (size_t j = i; j < i + k; j++)
			if (++p->n_signed[j / GROUP] == group_size(p, j / GROUP))
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
		rc = ca_fail(p->kind, "%s", p->error);
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* Records and tells of the certificates, a group at a time, as they are signed. */
static int record_all(struct pipeline *p)
{
	struct ca_issued is[GROUP];
	struct ca_db_cert rows[GROUP];
	int rc = 0;

	for (size_t g = 0, base = 0; base < p->b->n && !rc; g++, base += GROUP) {
		size_t count = group_size(p, g), filled = 0;

		if ((rc = wait_for(p, g)))
			break;
		for (; filled < count && !rc; filled++) {
			size_t i = base + filled;

			rc = issued_fill(&is[filled], &rows[filled], p->cert[i], p->b->t,
					 p->b->request_ids ? p->b->request_ids[i] : 0);
			p->cert[i] = NULL; /* freed by issued_fill */
		}
		if (!rc)
			rc = record(p->ca, rows, is, count);
		/* committed: now it may be told */
		for (size_t i = 0; i < count && !rc; i++)
			rc = p->b->done ? p->b->done(p->b->done_arg, base + i, &is[i]) : 0;
		for (size_t i = 0; i < filled; i++)
			ca_issued_free(&is[i]);
	}
	if (rc)
		pipeline_fail(p); /* the threads stop too */
	return rc;
}

int ca_issue_batch(struct ca *ca, const struct ca_batch *b)
{
	struct pipeline p = {.ca = ca, .b = b};
	unsigned threads = b->threads ? b->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	pthread_t preparer_tid, signer_tid[SIGNERS_MAX];
	unsigned signers = 0;
	bool preparing;
	int rc;

	if (!b->t || !b->get || b->n == 0)
		return ca_usage_error("a batch needs a template and at least one request");
	if (b->t->manual)
		return ca_fail(CA_ERR_REFUSED, "template %s wants approval: requests under it are submitted pending",
			       b->t->name);
	/* the open CA's decoder, made once: making one costs about as much as preparing a certificate (request.c) */
	if (ca_check_active(ca, "issues") || ca_open_key(ca) ||
	    (!ca->chain && ca_cert_load_chain(&ca->conf, &ca->chain)) ||
	    (!ca->decoder && !(ca->decoder = ca_key_decoder_new())))
		return -1;
	/* the module's batch interface, looked for once per open CA (KEYWARD_CA_BATCH=0: never) */
	if (!ca->batch_tried) {
		const char *want = getenv("KEYWARD_CA_BATCH");

		ca->batch_tried = true;
		if ((!want || strcmp(want, "0")) && ca_batch_signer_open(&ca->conf, ca->pub, &ca->batch))
			return -1;
	}
	if (ca_issuer_init(&p.issuer, &ca->conf, b->t, ca_certificate(ca)))
		return -1;
	p.cert = calloc(b->n, sizeof *p.cert);
	p.n_signed = calloc((b->n + GROUP - 1) / GROUP, sizeof *p.n_signed);
	if (!p.cert || !p.n_signed) {
		free(p.cert);
		free(p.n_signed);
		ca_issuer_clear(&p.issuer);
		return ca_error("out of memory");
	}
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.built, NULL);
	pthread_cond_init(&p.progress, NULL);

	/* one request needs no preparer thread: it is prepared here, then signed */
	preparing = b->n > 1 && pthread_create(&preparer_tid, NULL, preparer_thread, &p) == 0;
	if (!preparing)
		preparer(&p);
	if (threads < 1)
		threads = 1;
	for (; signers < threads && signers < SIGNERS_MAX && signers < b->n; signers++)
		if (pthread_create(&signer_tid[signers], NULL, signer, &p) != 0)
			break;
	if (!signers) {
		ca_error("cannot start a signing thread: %s", strerror(errno));
		pipeline_fail(&p);
	}
	rc = record_all(&p);

	if (preparing)
		pthread_join(preparer_tid, NULL);
	for (unsigned i = 0; i < signers; i++)
		pthread_join(signer_tid[i], NULL);
	for (size_t i = 0; i < b->n; i++)
		X509_free(p.cert[i]);
	free(p.cert);
	free(p.n_signed);
	ca_issuer_clear(&p.issuer);
	pthread_cond_destroy(&p.built);
	pthread_cond_destroy(&p.progress);
	pthread_mutex_destroy(&p.lock);
	return rc;
}

/* ---- a batch of one ---- */

struct one {
	const struct ca_request *req;
	struct ca_issued *out;
};

/* The request is the caller's: a copy parsed from its DER, so the pipeline may free what it gets. */
static struct ca_request *one_get(void *arg, size_t i, struct ca_key_decoder *d)
{
	struct one *o = arg;

	(void)i;
	return ca_request_parse(o->req->der, o->req->der_len, d);
}

static int one_done(void *arg, size_t i, const struct ca_issued *c)
{
	struct one *o = arg;

	(void)i;
	*o->out = *c;
	if (!(o->out->der = OPENSSL_memdup(c->der, c->der_len)))
		return ca_error("out of memory (serial %s is issued and recorded)", c->serial);
	return 0;
}

static int issue_one(struct ca *ca, const struct ca_template *t, const struct ca_request *req, long long request_id,
		     struct ca_issued *out)
{
	struct one o = {.req = req, .out = out};
	struct ca_batch b = {.t = t,
			     .n = 1,
			     .get = one_get,
			     .get_arg = &o,
			     .done = one_done,
			     .done_arg = &o,
			     .request_ids = request_id ? &request_id : NULL,
			     .threads = 1};

	memset(out, 0, sizeof *out);
	return ca_issue_batch(ca, &b);
}

int ca_issue(struct ca *ca, const struct ca_template *t, const struct ca_request *req, struct ca_issued *out)
{
	return issue_one(ca, t, req, 0, out);
}

/* ---- approval ---- */

int ca_submit_pending(struct ca *ca, const struct ca_template *t, const struct ca_request *req, long long *id)
{
	if (ca_check_active(ca, "takes requests"))
		return -1;
	if (ca_request_check(t, req))
		return ca_fail(CA_ERR_REFUSED, "%s", ca_last_error());
	if (ca_db_begin(ca->db))
		return -1;
	*id = ca_db_insert_request(ca->db, req->der, req->der_len, t->name, "pending");
	if (*id < 0 || ca_db_audit(ca->db, "submit", "request %lld pending for template %s", *id, t->name) ||
	    ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		return -1;
	}
	return 0;
}

/* Request id, pending: its DER and template name. */
static int pending_request(struct ca *ca, long long id, unsigned char **csr, size_t *len, char *tname, size_t tsize)
{
	char status[16];
	int found = ca_db_get_request(ca->db, id, csr, len, tname, tsize, status, sizeof status);

	if (found)
		return found > 0 ? ca_fail(CA_ERR_NOT_FOUND, "no request %lld", id) : -1;
	if (strcmp(status, "pending"))
		return ca_fail(CA_ERR_CONFLICT, "request %lld is %s, not pending", id, status);
	return 0;
}

int ca_deny(struct ca *ca, long long id)
{
	unsigned char *csr = NULL;
	char tname[64];
	size_t len = 0;
	int rc = -1;

	if (pending_request(ca, id, &csr, &len, tname, sizeof tname) == 0) {
		if (ca_db_begin(ca->db) || ca_db_set_request(ca->db, id, "denied", NULL) ||
		    ca_db_audit(ca->db, "deny", "request %lld denied", id) || ca_db_commit(ca->db))
			ca_db_rollback(ca->db);
		else
			rc = 0;
	}
	free(csr);
	return rc;
}

int ca_approve(struct ca *ca, long long id, struct ca_issued *out)
{
	unsigned char *csr = NULL;
	char tname[64];
	size_t len = 0;
	const struct ca_template *t;
	struct ca_key_decoder *d = NULL;
	struct ca_request *req = NULL;
	int rc = -1;

	memset(out, 0, sizeof *out);
	if (pending_request(ca, id, &csr, &len, tname, sizeof tname))
		goto out;
	if (!(t = ca_template_find(&ca->conf, tname))) {
		ca_fail(CA_ERR_NOT_FOUND, "request %lld names template \"%s\", which no longer exists", id, tname);
		goto out;
	}
	if (!(d = ca_key_decoder_new()))
		goto out;
	if (!(req = ca_request_parse(csr, len, d))) {
		ca_error("request %lld: stored request unreadable: %s", id, ca_last_error());
		goto out;
	}
	/* checked again in the pipeline: the template may have changed since the request was submitted */
	if (ca_request_check(t, req)) {
		ca_fail(CA_ERR_REFUSED, "request %lld: %s", id, ca_last_error());
		goto out;
	}
	{
		/* approved: issued under the template's rules as a template without approval */
		struct ca_template approved = *t;

		approved.manual = false;
		rc = issue_one(ca, &approved, req, id, out);
	}
out:
	free(csr);
	ca_request_free(req);
	ca_key_decoder_free(d);
	return rc;
}
