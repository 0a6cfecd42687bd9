/*
 * keyward-ca: the callbacks of OpenSSL's CMP server (OSSL_CMP_SRV_CTX) for
 * one request to serve's CMP endpoint (cmp.c decides who sent it and
 * under which template; the framework has checked its protection and the
 * proof of possession by then). Each turns the request into calls of the
 * CA library, as the command line makes them, under the CA's lock:
 *
 *   ir, cr, p10cr  the request checked against the path's template
 *                  (ca_request_check: key, subject, SANs, name rules) and
 *                  issued (ca_issue), or, under a template with manual
 *                  approval, recorded pending (ca_submit_pending): the
 *                  answer is "waiting" and the client polls;
 *   kur            the same, for the holder of the certificate it renews
 *                  (signed with it, under its own template);
 *   pollReq        the pending request's state: still waiting, issued
 *                  (the answer the first request would have had), denied;
 *   certConf       the certificate's hash checked; a certificate the client
 *                  rejects is revoked (cessationOfOperation);
 *   rr             revocation, for the certificate's own holder only.
 *
 * Certificates are issued a group at a time (cmp.h, struct cmp_queue): the
 * first thread to find nobody issuing issues for every request waiting
 * under the same template, in one batch, while more queue up for the next.
 *
 * A request signed with a certificate of this CA (not MAC-protected) gets
 * only the names that certificate has: its holder may renew, not widen.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crmf.h>
#include <openssl/err.h>

#include "ca/cmp.h"
#include "common/log.h"

#define FAIL(f) (1 << OSSL_CMP_PKIFAILUREINFO_##f)

/* A rejection saying why (also kept for the log). */
static OSSL_CMP_PKISI *reject(struct cmp_call *call, int fail_info, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static OSSL_CMP_PKISI *reject(struct cmp_call *call, int fail_info, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(call->what, sizeof call->what, fmt, ap);
	va_end(ap);
	return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection, fail_info, call->what);
}

/* The failure bit for a CA library error of kind. */
static int fail_info_of(enum ca_err kind)
{
	switch (kind) {
	case CA_ERR_REFUSED:
		return FAIL(badCertTemplate);
	case CA_ERR_NOT_FOUND:
		return FAIL(badCertId);
	case CA_ERR_CONFLICT:
	case CA_ERR_USAGE:
		return FAIL(badRequest);
	default:
		return FAIL(systemFailure);
	}
}

static void lock(struct cmp_call *call)
{
	if (!call->ca_locked)
		pthread_mutex_lock(call->env->ca_lock);
}

static void unlock(struct cmp_call *call)
{
	if (!call->ca_locked)
		pthread_mutex_unlock(call->env->ca_lock);
}

/* Whether every name req asks for is one the signer's certificate has: the subject, and each SAN. */
static bool names_within(const struct ca_request *req, X509 *signer)
{
	GENERAL_NAMES *have = X509_get_ext_d2i(signer, NID_subject_alt_name, NULL, NULL);
	bool ok = X509_NAME_cmp(req->subject, X509_get_subject_name(signer)) == 0;

	for (int i = 0; ok && i < sk_GENERAL_NAME_num(req->sans); i++) {
		bool found = false;

		for (int j = 0; !found && j < sk_GENERAL_NAME_num(have); j++)
			found = GENERAL_NAME_cmp(sk_GENERAL_NAME_value(req->sans, i), sk_GENERAL_NAME_value(have, j)) ==
				0;
		ok = found;
	}
	GENERAL_NAMES_free(have);
	ERR_clear_error();
	return ok;
}

/* The request of a certification request message, parsed by the CA library; NULL after ca_error(). */
static struct ca_request *request_of(struct cmp_call *call, const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr)
{
	unsigned char *der = NULL;
	int len = crm ? i2d_OSSL_CRMF_MSG((OSSL_CRMF_MSG *)crm, &der) : i2d_X509_REQ((X509_REQ *)p10cr, &der);
	struct ca_request *req = NULL;

	if (len <= 0)
		ca_error("cannot encode the request");
	else if (crm)
		req = ca_request_from_crmf(der, (size_t)len, call->decoder);
	else
		req = ca_request_from_bytes("the p10cr's request", (const char *)der, (size_t)len, call->decoder);
	OPENSSL_free(der);
	ERR_clear_error();
	return req;
}

/* The certificate of serial as X509 (the caller holds the CA lock); NULL after ca_error(). */
static X509 *cert_of(struct cmp_call *call, const char *serial, struct ca_db_cert *row)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	X509 *x = NULL;

	if (ca_find_cert(call->env->ca, serial, row, &der, &len) == 0) {
		p = der;
		if (!(x = d2i_X509(NULL, &p, (long)len)))
			ca_error("certificate %s in the database is unreadable", serial);
	}
	free(der);
	return x;
}

/* kur: the certificate renewed (oldCertID, or the signer's) is the signer's own, under this path's template. */
static OSSL_CMP_PKISI *check_kur(struct cmp_call *call, const OSSL_CRMF_MSG *crm)
{
	const OSSL_CRMF_CERTID *old = OSSL_CRMF_MSG_get0_regCtrl_oldCertID(crm);
	struct ca_db_cert row;
	char serial[80];

	if (!call->signer)
		return reject(call, FAIL(notAuthorized),
			      "key update is for the holder of the certificate: sign the kur with it, not a MAC");
	if (old &&
	    (ASN1_INTEGER_cmp(OSSL_CRMF_CERTID_get0_serialNumber(old), X509_get0_serialNumber(call->signer)) != 0 ||
	     X509_NAME_cmp(OSSL_CRMF_CERTID_get0_issuer(old), X509_get_issuer_name(call->signer)) != 0))
		return reject(call, FAIL(notAuthorized),
			      "the kur renews another certificate than the one it is signed with");
	ca_serial_hex(X509_get0_serialNumber(call->signer), serial, sizeof serial);
	lock(call);
	if (ca_find_cert(call->env->ca, serial, &row, NULL, NULL)) {
		unlock(call);
		return reject(call, FAIL(badCertId), "%s", ca_last_error());
	}
	unlock(call);
	if (strcmp(row.template_name, call->t->name))
		return reject(call, FAIL(badCertTemplate), "certificate %s was issued under template %s, not %s",
			      serial, row.template_name, call->t->name);
	return NULL;
}

/* ---- issuance in groups ---- */

struct cmp_job {
	const struct ca_template *t;
	const struct ca_request *req;
	struct ca_issued *out;
	bool done;
	int rc;
	enum ca_err kind;
	char error[512];
	struct cmp_job *next;
};

void cmp_queue_init(struct cmp_queue *q)
{
	memset(q, 0, sizeof *q);
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->done, NULL);
	q->tail = &q->head;
}

void cmp_queue_destroy(struct cmp_queue *q)
{
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->done);
}

#define GROUP_MAX 64

struct group {
	struct cmp_job *job[GROUP_MAX];
	size_t n;
};

/* The pipeline frees what it gets: a copy parsed from the DER (as ca_issue's own does). */
static struct ca_request *group_get(void *arg, size_t i, struct ca_key_decoder *d)
{
	struct group *g = arg;

	return ca_request_parse(g->job[i]->req->der, g->job[i]->req->der_len, d);
}

static int group_done(void *arg, size_t i, const struct ca_issued *c)
{
	struct group *g = arg;
	struct ca_issued *out = g->job[i]->out;

	*out = *c;
	if (!(out->der = OPENSSL_memdup(c->der, c->der_len)))
		return ca_error("out of memory (serial %s is issued and recorded)", c->serial);
	return 0;
}

static void job_result(struct cmp_job *j, int rc)
{
	j->rc = rc;
	if (rc) {
		j->kind = ca_last_error_kind();
		snprintf(j->error, sizeof j->error, "%s", ca_last_error());
	}
}

/* Issues the group under the CA lock; each job gets its own answer. */
static void issue_group(struct cmp_call *call, struct group *g)
{
	struct ca_batch b = {
		.t = g->job[0]->t, .n = g->n, .get = group_get, .get_arg = g, .done = group_done, .done_arg = g};
	int rc;

	pthread_mutex_lock(call->env->ca_lock);
	rc = ca_issue_batch(call->env->ca, &b);
	if (rc && g->n > 1 && ca_last_error_kind() == CA_ERR_REFUSED) {
		/* one request refused refuses the batch: each alone, for each its own answer */
		for (size_t i = 0; i < g->n; i++) {
			ca_issued_free(g->job[i]->out);
			job_result(g->job[i], ca_issue(call->env->ca, g->job[i]->t, g->job[i]->req, g->job[i]->out));
		}
	} else {
		for (size_t i = 0; i < g->n; i++) {
			if (rc)
				ca_issued_free(g->job[i]->out);
			job_result(g->job[i], rc);
		}
	}
	pthread_mutex_unlock(call->env->ca_lock);
}

/* req issued under t, with the requests that wait beside it; 0, or -1 with the error. */
static int issue(struct cmp_call *call, const struct ca_template *t, const struct ca_request *req,
		 struct ca_issued *out)
{
	struct cmp_queue *q = call->queue;
	struct cmp_job me = {.t = t, .req = req, .out = out};

	memset(out, 0, sizeof *out);
	/* the caller holds the CA lock (a signed request): it issues alone */
	if (!q || call->ca_locked)
		return ca_issue(call->env->ca, t, req, out);
	pthread_mutex_lock(&q->mu);
	*q->tail = &me;
	q->tail = &me.next;
	while (!me.done) {
		struct group g = {.n = 0};
		struct cmp_job **pp;

		if (q->issuing) {
			pthread_cond_wait(&q->done, &q->mu);
			continue;
		}
		/* nobody issues: this thread takes the waiting requests of the first one's template */
		q->issuing = true;
		for (pp = &q->head; *pp && g.n < GROUP_MAX;) {
			if (!g.n || !strcmp((*pp)->t->name, g.job[0]->t->name)) {
				g.job[g.n++] = *pp;
				*pp = (*pp)->next;
			} else {
				pp = &(*pp)->next;
			}
		}
		q->tail = &q->head;
		while (*q->tail)
			q->tail = &(*q->tail)->next;
		pthread_mutex_unlock(&q->mu);
		issue_group(call, &g);
		pthread_mutex_lock(&q->mu);
		for (size_t i = 0; i < g.n; i++)
			g.job[i]->done = true;
		q->issuing = false;
		pthread_cond_broadcast(&q->done);
	}
	pthread_mutex_unlock(&q->mu);
	if (me.rc)
		ca_fail(me.kind, "%s", me.error);
	return me.rc;
}

/* Keeps x's serial and its hash (the digest of its signature algorithm), which the certConf must name. */
static OSSL_CMP_PKISI *issued_ok(struct cmp_call *call, X509 *x, const char *serial)
{
	ASN1_OCTET_STRING *h = X509_digest_sig(x, NULL, NULL);

	if (!h || h->length > (int)sizeof call->hash) {
		ASN1_OCTET_STRING_free(h);
		return reject(call, FAIL(systemFailure), "cannot hash certificate %s", serial);
	}
	snprintf(call->serial, sizeof call->serial, "%s", serial);
	memcpy(call->hash, h->data, (size_t)h->length);
	call->hash_len = (unsigned)h->length;
	ASN1_OCTET_STRING_free(h);
	return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

/* The answer with the certificate of serial (issued now, or approved since). */
static OSSL_CMP_PKISI *accepted(struct cmp_call *call, const char *serial, X509 **certOut, STACK_OF(X509) * *chainOut)
{
	struct ca_db_cert row;

	lock(call);
	*certOut = cert_of(call, serial, &row);
	if (*certOut)
		*chainOut = X509_chain_up_ref(ca_chain(call->env->ca));
	unlock(call);
	if (!*certOut)
		return reject(call, FAIL(systemFailure), "%s", ca_last_error());
	return issued_ok(call, *certOut, row.serial);
}

/* A pending request asked for again (pollReq found it decided): issued, denied or still waiting. */
static OSSL_CMP_PKISI *resumed(struct cmp_call *call, X509 **certOut, STACK_OF(X509) * *chainOut)
{
	char status[16], serial[80];

	if (cmp_request_state(call->store, call->store_lock, call->pending_id, status, sizeof status, serial,
			      sizeof serial))
		return reject(call, FAIL(systemFailure), "%s", ca_last_error());
	if (!strcmp(status, "issued"))
		return accepted(call, serial, certOut, chainOut);
	if (!strcmp(status, "denied"))
		return reject(call, FAIL(notAuthorized), "request %lld was denied", call->pending_id);
	return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_waiting, 0, "waiting for approval");
}

static OSSL_CMP_PKISI *cert_request(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *msg, int certReqId,
				    const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
				    STACK_OF(X509) * *chainOut, STACK_OF(X509) * *caPubs)
{
	struct cmp_call *call = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	struct ca_request *req = NULL;
	struct ca_issued issued = {0};
	OSSL_CMP_PKISI *si = NULL;
	long long id = 0;
	int rc;

	(void)certReqId;
	(void)caPubs;
	*certOut = NULL;
	*chainOut = NULL;
	if (call->refuse_info)
		return reject(call, call->refuse_info, "%s", call->refuse);
	if (call->pending_id)
		return resumed(call, certOut, chainOut);
	if (OSSL_CMP_MSG_get_bodytype(msg) == CMP_BODY_KUR && (si = check_kur(call, crm)))
		return si;
	if (!(req = request_of(call, crm, p10cr)))
		return reject(call, FAIL(badDataFormat), "%s", ca_last_error());
	if (call->signer && !names_within(req, call->signer)) {
		si = reject(call, FAIL(notAuthorized),
			    "a request signed with a certificate may ask only for that certificate's names "
			    "(its subject and subject alternative names): use the template's shared secret for others");
		goto out;
	}
	/*
	 * the template's rules checked here first, so that a refusal names the
	 * rule (the framework checked the proof of possession; issuance checks
	 * both again)
	 */
	if (ca_template_check(call->t, req)) {
		si = reject(call, FAIL(badCertTemplate), "%s", ca_last_error());
		goto out;
	}
	if (call->t->manual) {
		lock(call);
		rc = ca_submit_pending(call->env->ca, call->t, req, &id);
		unlock(call);
	} else {
		rc = issue(call, call->t, req, &issued);
	}
	if (rc) {
		si = reject(call, fail_info_of(ca_last_error_kind()), "%s", ca_last_error());
	} else if (call->t->manual) {
		call->pending_id = id;
		si = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_waiting, 0, "waiting for approval");
	} else {
		const unsigned char *p = issued.der;

		if ((*certOut = d2i_X509(NULL, &p, (long)issued.der_len))) {
			lock(call);
			*chainOut = X509_chain_up_ref(ca_chain(call->env->ca));
			unlock(call);
			si = issued_ok(call, *certOut, issued.serial);
		} else {
			si = reject(call, FAIL(systemFailure), "certificate %s issued but not encodable",
				    issued.serial);
		}
	}
out:
	ca_issued_free(&issued);
	ca_request_free(req);
	ERR_clear_error();
	return si;
}

static OSSL_CMP_PKISI *rr(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *msg, const X509_NAME *issuer,
			  const ASN1_INTEGER *serial)
{
	struct cmp_call *call = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	char hex[80];
	int rc;

	(void)msg;
	if (call->refuse_info)
		return reject(call, call->refuse_info, "%s", call->refuse);
	if (!call->signer)
		return reject(call, FAIL(notAuthorized),
			      "revocation is for the holder of the certificate: sign the rr with it, not a MAC");
	if (!serial || !issuer)
		return reject(call, FAIL(badCertId), "the rr names no issuer and serial number");
	if (ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(call->signer)) ||
	    X509_NAME_cmp(issuer, X509_get_issuer_name(call->signer)))
		return reject(call, FAIL(notAuthorized),
			      "the rr names another certificate than the one it is signed with: a holder revokes "
			      "only its own");
	ca_serial_hex(serial, hex, sizeof hex);
	lock(call);
	rc = ca_revoke(call->env->ca, hex, call->reason, 0);
	unlock(call);
	if (rc)
		return reject(call,
			      ca_last_error_kind() == CA_ERR_CONFLICT ? FAIL(certRevoked)
								      : fail_info_of(ca_last_error_kind()),
			      "%s", ca_last_error());
	snprintf(call->serial, sizeof call->serial, "%s", hex);
	return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

static int cert_conf(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *msg, int certReqId, const ASN1_OCTET_STRING *hash,
		     const OSSL_CMP_PKISI *si)
{
	struct cmp_call *call = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	char text[200];
	/* OpenSSL 3.0 has no getter for a PKIStatusInfo's status: its text starts with it */
	bool rejected = si && strstr(OSSL_CMP_snprint_PKIStatusInfo(si, text, sizeof text) ? text : "", "rejection");

	(void)msg;
	(void)certReqId;
	if (call->refuse_info) {
		ERR_raise_data(ERR_LIB_CMP, CMP_R_ERROR_PROCESSING_MESSAGE, "%s", call->refuse);
		return 0;
	}
	if (!call->serial[0]) {
		snprintf(call->what, sizeof call->what, "certConf for no certificate");
		ERR_raise_data(ERR_LIB_CMP, CMP_R_ERROR_UNEXPECTED_CERTCONF, "%s", call->what);
		return 0;
	}
	if (!hash || (unsigned)hash->length != call->hash_len ||
	    CRYPTO_memcmp(hash->data, call->hash, call->hash_len)) {
		snprintf(call->what, sizeof call->what, "certConf: the hash is not certificate %s's", call->serial);
		ERR_raise_data(ERR_LIB_CMP, CMP_R_CERTHASH_UNMATCHED, "%s", call->what);
		return 0;
	}
	if (rejected) {
		int rc;

		/* the client will not use it: nobody should */
		lock(call);
		rc = ca_revoke(call->env->ca, call->serial, 5 /* cessationOfOperation */, 0);
		unlock(call);
		snprintf(call->what, sizeof call->what, "certificate %s rejected by the client: %s", call->serial,
			 rc ? ca_last_error() : "revoked");
	}
	return 1;
}

static int poll_req(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *msg, int certReqId, OSSL_CMP_MSG **certReq,
		    int64_t *check_after)
{
	struct cmp_call *call = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	char status[16], serial[80];

	(void)msg;
	(void)certReqId;
	*certReq = NULL;
	*check_after = 0;
	if (call->refuse_info) {
		ERR_raise_data(ERR_LIB_CMP, CMP_R_ERROR_PROCESSING_MESSAGE, "%s", call->refuse);
		return 0;
	}
	if (!call->pending_id || !call->first) {
		snprintf(call->what, sizeof call->what, "pollReq for no pending request");
		ERR_raise_data(ERR_LIB_CMP, CMP_R_UNEXPECTED_PKIBODY, "%s", call->what);
		return 0;
	}
	if (cmp_request_state(call->store, call->store_lock, call->pending_id, status, sizeof status, serial,
			      sizeof serial)) {
		snprintf(call->what, sizeof call->what, "%s", ca_last_error());
		ERR_raise_data(ERR_LIB_CMP, CMP_R_ERROR_PROCESSING_MESSAGE, "%s", call->what);
		return 0;
	}
	if (!strcmp(status, "pending")) {
		*check_after = call->poll_after;
		return 1;
	}
	/* decided: the first request is answered again, now with the certificate (or the denial) */
	if (!(*certReq = OSSL_CMP_MSG_dup(call->first)))
		return 0;
	return 1;
}

static void error_msg(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *msg, const OSSL_CMP_PKISI *si,
		      const ASN1_INTEGER *code, const OSSL_CMP_PKIFREETEXT *details)
{
	struct cmp_call *call = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	char buf[200];

	(void)msg;
	(void)code;
	(void)details;
	snprintf(call->what, sizeof call->what, "the client sent an error: %s",
		 si ? OSSL_CMP_snprint_PKIStatusInfo(si, buf, sizeof buf) : "(no status)");
}

/* OpenSSL's CMP log: to serve's debug log, never to stdout. */
static int cmp_log(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
	(void)func;
	(void)file;
	(void)line;
	if (level <= OSSL_CMP_LOG_ERR)
		kw_log(KW_LOG_DEBUG, "keyward-ca serve: cmp: %s", msg);
	return 1;
}

int cmp_srv_bind(OSSL_CMP_SRV_CTX *srv, struct cmp_call *call)
{
	return OSSL_CMP_SRV_CTX_init(srv, call, cert_request, rr, NULL, error_msg, cert_conf, poll_req) ? 0 : -1;
}

OSSL_CMP_SRV_CTX *cmp_srv_new(struct cmp_call *call)
{
	OSSL_CMP_SRV_CTX *srv = OSSL_CMP_SRV_CTX_new(NULL, NULL);

	if (!srv || cmp_srv_bind(srv, call) ||
	    /* refusals and errors go out unprotected where the request's protection could not be checked */
	    !OSSL_CMP_SRV_CTX_set_send_unprotected_errors(srv, 1) || !OSSL_CMP_SRV_CTX_set_accept_unprotected(srv, 0) ||
	    !OSSL_CMP_SRV_CTX_set_accept_raverified(srv, 0) || !OSSL_CMP_SRV_CTX_set_grant_implicit_confirm(srv, 0) ||
	    !OSSL_CMP_CTX_set_log_cb(OSSL_CMP_SRV_CTX_get0_cmp_ctx(srv), cmp_log)) {
		OSSL_CMP_SRV_CTX_free(srv);
		ERR_clear_error();
		ca_error("cannot make a CMP server context");
		return NULL;
	}
	return srv;
}
