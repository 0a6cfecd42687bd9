/*
 * keyward-ca serve's CMP endpoint (cmp.h): POST /.well-known/cmp/p/<template>
 * with a DER PKIMessage (RFC 6712), answered with one.
 *
 * Before OpenSSL's server framework sees a message, it is read here once
 * more with templates of its own (cmp_peek: the header and extraCerts,
 * buffer to buffer, what tests/fuzz/fuzz_cmp.c drives) to decide who may
 * send it:
 *
 *   - MAC (PBM): the senderKID must name the path's template, whose secret
 *     is unsealed for this message only and wiped after; at most
 *     CMP_PBM_ITERATIONS_MAX iterations (the client chooses the count,
 *     and each costs the server a hash);
 *   - signature: the signer's certificate (in extraCerts, named by the
 *     sender field) must be one this CA issued, in its database, not
 *     revoked nor expired; the framework checks the signature with it
 *     and nothing else, and the answer is signed with the CA's key;
 *   - anything else is refused.
 *
 * A transaction (ir/cr/p10cr/kur, then certConf; or pollReq until an
 * approval) lives in serve's memory, keyed by its transactionID: its
 * server context keeps the nonces the framework checks. At most
 * CMP_TRANSACTIONS_MAX are open; the oldest give way. A transactionID that
 * began a transaction is recorded in the database (cmp_seen): a message
 * that begins another with it is a replay and is refused, as is a message
 * whose messageTime is more than CMP_TIME_SKEW seconds off.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "ca/cmp.h"
#include "common/log.h"

#define CMP_TRANSACTIONS_MAX 4096
#define CMP_TIME_SKEW 600	      /* seconds a messageTime may be off */
#define CMP_CONFIRM_WAIT 300	      /* seconds a transaction waits for its certConf */
#define CMP_POLL_WAIT (7 * 24 * 3600) /* seconds a waiting one is kept for the client's polls */
#define CMP_SEEN_KEEP (7 * 24 * 3600) /* seconds a transactionID without messageTime is remembered */
#define CMP_PBM_ITERATIONS_MAX 10000
#define CMP_POLL_AFTER 5 /* seconds a waiting client is told to wait; KEYWARD_CMP_POLL_AFTER overrides */
#define FAIL(f) (1 << OSSL_CMP_PKIFAILUREINFO_##f)

/* ---- the message as read here (cmp_peek) ---- */
// clang-format off
typedef struct {
	ASN1_OBJECT *type;
	ASN1_TYPE *value;
} CA_ITAV;

ASN1_SEQUENCE(CA_ITAV) = {
	ASN1_SIMPLE(CA_ITAV, type, ASN1_OBJECT),
	ASN1_OPT(CA_ITAV, value, ASN1_ANY),
} static_ASN1_SEQUENCE_END(CA_ITAV)

typedef struct {
	ASN1_INTEGER *pvno;
	GENERAL_NAME *sender, *recipient;
	ASN1_GENERALIZEDTIME *time;
	X509_ALGOR *protection_alg;
	ASN1_OCTET_STRING *sender_kid, *recip_kid, *tid, *sender_nonce, *recip_nonce;
	STACK_OF(ASN1_UTF8STRING) *free_text;
	STACK_OF(CA_ITAV) *general_info;
} CA_CMP_HDR;

ASN1_SEQUENCE(CA_CMP_HDR) = {
	ASN1_SIMPLE(CA_CMP_HDR, pvno, ASN1_INTEGER),
	ASN1_SIMPLE(CA_CMP_HDR, sender, GENERAL_NAME),
	ASN1_SIMPLE(CA_CMP_HDR, recipient, GENERAL_NAME),
	ASN1_EXP_OPT(CA_CMP_HDR, time, ASN1_GENERALIZEDTIME, 0),
	ASN1_EXP_OPT(CA_CMP_HDR, protection_alg, X509_ALGOR, 1),
	ASN1_EXP_OPT(CA_CMP_HDR, sender_kid, ASN1_OCTET_STRING, 2),
	ASN1_EXP_OPT(CA_CMP_HDR, recip_kid, ASN1_OCTET_STRING, 3),
	ASN1_EXP_OPT(CA_CMP_HDR, tid, ASN1_OCTET_STRING, 4),
	ASN1_EXP_OPT(CA_CMP_HDR, sender_nonce, ASN1_OCTET_STRING, 5),
	ASN1_EXP_OPT(CA_CMP_HDR, recip_nonce, ASN1_OCTET_STRING, 6),
	ASN1_EXP_SEQUENCE_OF_OPT(CA_CMP_HDR, free_text, ASN1_UTF8STRING, 7),
	ASN1_EXP_SEQUENCE_OF_OPT(CA_CMP_HDR, general_info, CA_ITAV, 8),
} static_ASN1_SEQUENCE_END(CA_CMP_HDR)

typedef struct {
	CA_CMP_HDR *header;
	ASN1_TYPE *body;
	ASN1_BIT_STRING *protection;
	STACK_OF(X509) *extra_certs;
} CA_CMP_MSG;

ASN1_SEQUENCE(CA_CMP_MSG) = {
	ASN1_SIMPLE(CA_CMP_MSG, header, CA_CMP_HDR),
	ASN1_SIMPLE(CA_CMP_MSG, body, ASN1_ANY),
	ASN1_EXP_OPT(CA_CMP_MSG, protection, ASN1_BIT_STRING, 0),
	ASN1_EXP_SEQUENCE_OF_OPT(CA_CMP_MSG, extra_certs, X509, 1),
} static_ASN1_SEQUENCE_END(CA_CMP_MSG)

/* PBMParameter (RFC 4210 5.1.3.1) */
typedef struct {
	ASN1_OCTET_STRING *salt;
	X509_ALGOR *owf;
	ASN1_INTEGER *iterations;
	X509_ALGOR *mac;
} CA_PBM;

ASN1_SEQUENCE(CA_PBM) = {
	ASN1_SIMPLE(CA_PBM, salt, ASN1_OCTET_STRING),
	ASN1_SIMPLE(CA_PBM, owf, X509_ALGOR),
	ASN1_SIMPLE(CA_PBM, iterations, ASN1_INTEGER),
	ASN1_SIMPLE(CA_PBM, mac, X509_ALGOR),
} static_ASN1_SEQUENCE_END(CA_PBM)
	// clang-format on

	void cmp_peek_free(struct cmp_peek * m)
{
	ASN1_item_free((ASN1_VALUE *)m->asn, ASN1_ITEM_rptr(CA_CMP_MSG));
	memset(m, 0, sizeof *m);
}

int cmp_peek(const unsigned char *der, size_t len, struct cmp_peek *m)
{
	const unsigned char *p = der;
	CA_CMP_MSG *msg;
	CA_CMP_HDR *h;
	long version;
	int nid;

	memset(m, 0, sizeof *m);
	if (len > SERVE_BODY_MAX ||
	    !(msg = (CA_CMP_MSG *)ASN1_item_d2i(NULL, &p, (long)len, ASN1_ITEM_rptr(CA_CMP_MSG)))) {
		ERR_clear_error();
		return ca_usage_error("not a CMP message (a DER PKIMessage)");
	}
	m->asn = msg;
	h = msg->header;
	if (p != der + len) {
		cmp_peek_free(m);
		return ca_usage_error("%zu bytes follow the CMP message", len - (size_t)(p - der));
	}
	if ((version = ASN1_INTEGER_get(h->pvno)) < 2 || version > 3) {
		cmp_peek_free(m);
		return ca_usage_error("CMP version %ld: only 2 and 3 are spoken here", version);
	}
	/* the body's tag: [n] of PKIBody, context-specific, one byte */
	m->body_type = msg->body->type == V_ASN1_OTHER && msg->body->value.asn1_string->length > 0 &&
				       (msg->body->value.asn1_string->data[0] & 0xc0) == 0x80 &&
				       (msg->body->value.asn1_string->data[0] & 0x1f) != 0x1f
			       ? (msg->body->value.asn1_string->data[0] & 0x1f)
			       : -1;
	if (m->body_type >= 0) {
		m->body = msg->body->value.asn1_string->data;
		m->body_len = (size_t)msg->body->value.asn1_string->length;
	}
	m->tid = h->tid;
	m->sender = h->sender->type == GEN_DIRNAME ? h->sender->d.directoryName : NULL;
	m->sender_kid = h->sender_kid;
	m->extra_certs = msg->extra_certs;
	if (h->time) {
		struct tm tm;

		if (!ASN1_TIME_to_tm(h->time, &tm)) {
			cmp_peek_free(m);
			return ca_usage_error("the CMP message's messageTime is malformed");
		}
		m->time = timegm(&tm);
	}
	if (!h->protection_alg || !msg->protection) {
		m->protection = CMP_PROT_NONE;
		return 0;
	}
	nid = OBJ_obj2nid(h->protection_alg->algorithm);
	if (nid == NID_id_PasswordBasedMAC) {
		const ASN1_TYPE *param = h->protection_alg->parameter;
		CA_PBM *pbm = NULL;
		long iterations = -1;

		m->protection = CMP_PROT_MAC;
		if (param && param->type == V_ASN1_SEQUENCE) {
			p = param->value.sequence->data;
			pbm = (CA_PBM *)ASN1_item_d2i(NULL, &p, param->value.sequence->length, ASN1_ITEM_rptr(CA_PBM));
		}
		if (pbm)
			iterations = ASN1_INTEGER_get(pbm->iterations);
		ASN1_item_free((ASN1_VALUE *)pbm, ASN1_ITEM_rptr(CA_PBM));
		ERR_clear_error();
		if (iterations < 1 || iterations > CMP_PBM_ITERATIONS_MAX) {
			cmp_peek_free(m);
			return ca_usage_error(iterations < 1
						      ? "the CMP message's PBM parameters are malformed"
						      : "the CMP message's PBM asks for %ld iterations (at most %d)",
					      iterations, CMP_PBM_ITERATIONS_MAX);
		}
	} else {
		m->protection = CMP_PROT_SIGNATURE;
	}
	return 0;
}

/* ---- answers made here, where the framework has no context to make one ---- */

/* DER built directly: OpenSSL 3.0 makes error messages only inside its server. */
int cmp_error_der(int fail_bit, const char *text, struct ca_der *out)
{
	struct ca_der h = {0}, si = {0}, ft = {0}, e = {0}, b = {0}, m = {0};
	/* pvno 2, sender and recipient the NULL-DN: [4] { SEQUENCE {} } */
	static const unsigned char head[] = {0x02, 0x01, 0x02, 0xa4, 0x02, 0x30, 0x00, 0xa4, 0x02, 0x30, 0x00};
	/* the unused bits' count, then room for the bits up to OSSL_CMP_PKIFAILUREINFO_MAX */
	unsigned char bits[1 + OSSL_CMP_PKIFAILUREINFO_MAX / 8 + 1] = {0}, rejection[] = {0x02, 0x01, 0x02};
	size_t n = (size_t)fail_bit / 8 + 1, tl = strlen(text) > 200 ? 200 : strlen(text);
	int rc;

	if (fail_bit < 0 || fail_bit > OSSL_CMP_PKIFAILUREINFO_MAX)
		return ca_usage_error("cmp_error_der: no failure bit %d", fail_bit);
	/* failInfo: a named BIT STRING, DER: no trailing zero bits */
	bits[0] = (unsigned char)(7 - fail_bit % 8);
	bits[n] = (unsigned char)(0x80 >> (fail_bit % 8));
	rc = ca_der_put(&h, head, sizeof head) || ca_der_tlv(&ft, 0x0c, text, tl) ||
	     ca_der_put(&si, rejection, sizeof rejection) || ca_der_tlv(&si, 0x30, ft.p, ft.len) ||
	     ca_der_tlv(&si, 0x03, bits, n + 1) || ca_der_tlv(&e, 0x30, si.p, si.len) ||
	     ca_der_tlv(&b, 0x30, e.p, e.len) || ca_der_tlv(&m, 0x30, h.p, h.len) || ca_der_tlv(&m, 0xb7, b.p, b.len) ||
	     ca_der_tlv(out, 0x30, m.p, m.len);
	ca_der_free(&h);
	ca_der_free(&si);
	ca_der_free(&ft);
	ca_der_free(&e);
	ca_der_free(&b);
	ca_der_free(&m);
	return rc ? ca_error("out of memory") : 0;
}

/* ---- the app ---- */

struct txn {
	unsigned char id[64];
	size_t id_len;
	char tmpl[64];
	OSSL_CMP_SRV_CTX *srv;
	OSSL_CMP_MSG *first; /* polling: the request waiting for approval */
	X509 *signer;
	enum cmp_protection protection; /* the first message's: the others' must be the same */
	long long pending_id;
	char serial[80];
	unsigned char hash[EVP_MAX_MD_SIZE]; /* the certificate's, for its certConf */
	unsigned hash_len;
	time_t expires;
	bool busy;
	struct txn *next;
};

struct cmp_state {
	const struct serve_env *env;
	struct cmp_store *store;
	pthread_mutex_t store_lock; /* the store's connection and token session */
	pthread_mutex_t txn_lock;   /* txns, n_txns, decoders */
	struct txn *txns;	    /* newest first */
	size_t n_txns;
	struct cmp_queue queue; /* issuance in groups (cmp_srv.c) */
	struct ca_key_decoder *decoders[16];
	size_t n_decoders;
	unsigned poll_after;
};

static void txn_free(struct txn *t)
{
	if (!t)
		return;
	OSSL_CMP_SRV_CTX_free(t->srv); /* its context's secret is wiped as it is freed */
	OSSL_CMP_MSG_free(t->first);
	X509_free(t->signer);
	free(t);
}

/* Takes the open transaction id out of the table (the caller then owns it); NULL if none. */
static struct txn *txn_take(struct cmp_state *st, const ASN1_OCTET_STRING *id, time_t now, bool *busy)
{
	struct txn **pp, *t, *found = NULL;

	*busy = false;
	pthread_mutex_lock(&st->txn_lock);
	for (pp = &st->txns; (t = *pp);) {
		if (t->expires < now && !t->busy) {
			*pp = t->next;
			st->n_txns--;
			txn_free(t);
			continue;
		}
		if (!found && id && (size_t)id->length == t->id_len && !memcmp(id->data, t->id, t->id_len)) {
			if (t->busy) {
				*busy = true;
			} else {
				t->busy = true;
				found = t;
			}
		}
		pp = &t->next;
	}
	pthread_mutex_unlock(&st->txn_lock);
	return found;
}

/* Puts t (back) in the table, or frees it when done. */
static void txn_put(struct cmp_state *st, struct txn *t, bool keep, bool is_new)
{
	pthread_mutex_lock(&st->txn_lock);
	if (!is_new) {
		struct txn **pp = &st->txns;

		while (*pp && *pp != t)
			pp = &(*pp)->next;
		if (*pp) {
			*pp = t->next;
			st->n_txns--;
		}
	}
	if (keep) {
		t->busy = false;
		t->next = st->txns;
		st->txns = t;
		if (++st->n_txns > CMP_TRANSACTIONS_MAX) {
			/* the oldest not in use gives way */
			struct txn **pp = &st->txns, **last = NULL;

			for (; *pp; pp = &(*pp)->next)
				if (!(*pp)->busy)
					last = pp;
			if (last) {
				struct txn *old = *last;

				*last = old->next;
				st->n_txns--;
				txn_free(old);
			}
		}
		t = NULL;
	}
	pthread_mutex_unlock(&st->txn_lock);
	txn_free(t);
}

static struct ca_key_decoder *decoder_take(struct cmp_state *st)
{
	struct ca_key_decoder *d = NULL;

	pthread_mutex_lock(&st->txn_lock);
	if (st->n_decoders)
		d = st->decoders[--st->n_decoders];
	pthread_mutex_unlock(&st->txn_lock);
	return d ? d : ca_key_decoder_new();
}

static void decoder_put(struct cmp_state *st, struct ca_key_decoder *d)
{
	pthread_mutex_lock(&st->txn_lock);
	if (d && st->n_decoders < sizeof st->decoders / sizeof st->decoders[0]) {
		st->decoders[st->n_decoders++] = d;
		d = NULL;
	}
	pthread_mutex_unlock(&st->txn_lock);
	ca_key_decoder_free(d);
}

static int cmp_open(const struct serve_env *env, void **state)
{
	struct cmp_state *st = calloc(1, sizeof *st);
	const char *after = getenv("KEYWARD_CMP_POLL_AFTER");

	*state = NULL;
	if (!st)
		return ca_error("out of memory");
	st->env = env;
	st->poll_after = after && atoi(after) > 0 ? (unsigned)atoi(after) : CMP_POLL_AFTER;
	pthread_mutex_lock(env->ca_lock);
	/* the token's session opened now: unsealing then takes the store's lock, never the CA's */
	if (cmp_store_open(env->ca, &st->store) || cmp_store_token(env->ca, st->store)) {
		cmp_store_close(st->store);
		pthread_mutex_unlock(env->ca_lock);
		free(st);
		return -1;
	}
	pthread_mutex_unlock(env->ca_lock);
	pthread_mutex_init(&st->store_lock, NULL);
	pthread_mutex_init(&st->txn_lock, NULL);
	cmp_queue_init(&st->queue);
	*state = st;
	return 0;
}

static void cmp_close(void *state)
{
	struct cmp_state *st = state;

	if (!st)
		return;
	while (st->txns) {
		struct txn *t = st->txns;

		st->txns = t->next;
		txn_free(t);
	}
	for (size_t i = 0; i < st->n_decoders; i++)
		ca_key_decoder_free(st->decoders[i]);
	/* the store's token session shares the CA's module: closed while the CA is still open */
	pthread_mutex_lock(st->env->ca_lock);
	cmp_store_close(st->store);
	pthread_mutex_unlock(st->env->ca_lock);
	pthread_mutex_destroy(&st->store_lock);
	pthread_mutex_destroy(&st->txn_lock);
	cmp_queue_destroy(&st->queue);
	free(st);
}

/* An answer that is no CMP message: HTTP status and a line of text. */
static void http_error(struct serve_resp *resp, unsigned status, const char *text)
{
	char line[300];
	int n = snprintf(line, sizeof line, "%s\n", text);

	serve_resp_set(resp, status, "text/plain; charset=utf-8", line, n < 0 ? 0 : (size_t)n);
}

/*
 * The DER answer, as CMP over HTTP has it (RFC 6712 3.3: 200 also for
 * error messages), and the connection closed after it: OpenSSL's HTTP
 * client writes a request's header and body apart, so on a kept-alive
 * connection its body waits for the server's delayed ACK (Nagle's
 * algorithm), some 40 ms a message; a new connection starts in quick-ACK
 * mode, and on loopback or a LAN costs far less.
 */
static void cmp_answer(struct serve_resp *resp, const unsigned char *der, size_t len)
{
	serve_resp_set(resp, 200, "application/pkixcmp", der, len);
	serve_resp_header(resp, "Connection", "close");
}

static void error_answer(struct serve_resp *resp, int fail_bit, const char *text)
{
	struct ca_der d = {0};

	if (cmp_error_der(fail_bit, text, &d) == 0)
		cmp_answer(resp, d.p, d.len);
	else
		http_error(resp, 500, "out of memory");
	ca_der_free(&d);
}

/*
 * The certificate of this CA that signed a message from sender, among
 * extra: issued by this CA (its signature checks), recorded, not revoked,
 * within its validity. NULL after ca_error() saying why not.
 */
static X509 *find_signer(struct cmp_state *st, const X509_NAME *sender, const STACK_OF(X509) * extra)
{
	X509 *ca_cert;
	EVP_PKEY *ca_key;
	bool unrecorded = false;

	if (!sender) {
		ca_fail(CA_ERR_REFUSED, "a signed CMP message must name its sender by a directory name");
		return NULL;
	}
	pthread_mutex_lock(st->env->ca_lock);
	ca_cert = ca_certificate(st->env->ca);
	ca_key = X509_get0_pubkey(ca_cert);
	for (int i = 0; i < sk_X509_num(extra); i++) {
		X509 *x = sk_X509_value(extra, i);
		struct ca_db_cert row;
		char serial[80];
		time_t now = time(NULL);

		if (X509_NAME_cmp(X509_get_subject_name(x), sender) ||
		    X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca_cert)) ||
		    X509_verify(x, ca_key) != 1)
			continue;
		ca_serial_hex(X509_get0_serialNumber(x), serial, sizeof serial);
		if (ca_find_cert(st->env->ca, serial, &row, NULL, NULL)) {
			unrecorded = true;
			break;
		}
		pthread_mutex_unlock(st->env->ca_lock);
		ERR_clear_error();
		if (strcmp(row.status, "issued")) {
			ca_fail(CA_ERR_REFUSED, "the certificate the message is signed with (serial %s) is %s", serial,
				row.status);
			return NULL;
		}
		if (now < row.not_before || now > row.not_after) {
			ca_fail(CA_ERR_REFUSED,
				"the certificate the message is signed with (serial %s) is not valid now", serial);
			return NULL;
		}
		X509_up_ref(x);
		return x;
	}
	pthread_mutex_unlock(st->env->ca_lock);
	ERR_clear_error();
	if (unrecorded)
		ca_fail(CA_ERR_REFUSED, "the message is signed with a certificate this CA has no record of");
	else
		ca_fail(CA_ERR_REFUSED, "the message is signed, but its extraCerts hold no certificate of this CA for "
					"its sender");
	return NULL;
}

static bool starts_transaction(int body)
{
	return body == CMP_BODY_IR || body == CMP_BODY_CR || body == CMP_BODY_P10CR || body == CMP_BODY_KUR ||
	       body == CMP_BODY_RR || body == CMP_BODY_GENM;
}

/* The reason to refuse m before its protection is checked (into call), if any. */
static void pre_checks(const struct cmp_peek *m, const char *tmpl, struct cmp_call *call, time_t now)
{
	if (m->time && (m->time < now - CMP_TIME_SKEW || m->time > now + CMP_TIME_SKEW)) {
		call->refuse_info = FAIL(badTime);
		snprintf(call->refuse, sizeof call->refuse,
			 "the message's time is more than %d s from the CA's: check the client's clock", CMP_TIME_SKEW);
		return;
	}
	if (!m->tid || m->tid->length < 16 || m->tid->length > 64) {
		call->refuse_info = FAIL(badRequest);
		snprintf(call->refuse, sizeof call->refuse, "the message needs a transactionID of 16 to 64 bytes");
		return;
	}
	if (m->protection == CMP_PROT_NONE) {
		call->refuse_info = FAIL(wrongIntegrity);
		snprintf(call->refuse, sizeof call->refuse,
			 "unprotected messages are refused: protect with the template's secret (PBM) or sign with a "
			 "certificate of this CA");
		return;
	}
	if (m->protection == CMP_PROT_MAC && (!m->sender_kid || (size_t)m->sender_kid->length != strlen(tmpl) ||
					      memcmp(m->sender_kid->data, tmpl, strlen(tmpl)))) {
		call->refuse_info = FAIL(badMessageCheck);
		snprintf(call->refuse, sizeof call->refuse,
			 "the message's reference (senderKID) is not the template of its path, %s: each template "
			 "has a secret of its own",
			 tmpl);
		return;
	}
}

/* Whether the transaction with this answer goes on: a certificate to confirm, or a request to poll for. */
static bool goes_on(const OSSL_CMP_MSG *rsp, const struct cmp_call *call, int req_body)
{
	int body = OSSL_CMP_MSG_get_bodytype(rsp);

	if (body == CMP_BODY_POLLREP)
		return true;
	if (body != CMP_BODY_IP && body != CMP_BODY_CP && body != CMP_BODY_KUP)
		return false;
	return (call->serial[0] && req_body != CMP_BODY_RR) || call->pending_id;
}

static void cmp_handle(void *state, const struct serve_req *req, struct serve_resp *resp)
{
	struct cmp_state *st = state;
	struct cmp_peek m;
	struct cmp_call call;
	struct ca_template t;
	const struct ca_template *found;
	struct txn *txn = NULL;
	const char *tmpl;
	unsigned char secret[CMP_SECRET_MAX];
	size_t secret_len = 0;
	OSSL_CMP_MSG *msg = NULL, *rsp = NULL;
	OSSL_CMP_CTX *ctx;
	const unsigned char *p;
	unsigned char *der = NULL;
	int der_len, body;
	bool is_new = false, busy = false, keep = false;
	time_t now = time(NULL);

	call = (struct cmp_call){
		.env = st->env, .store = st->store, .store_lock = &st->store_lock, .queue = &st->queue};
	if (strncmp(req->path, CMP_PREFIX "p/", strlen(CMP_PREFIX "p/"))) {
		http_error(resp, 404, "CMP is at /.well-known/cmp/p/TEMPLATE");
		return;
	}
	tmpl = req->path + strlen(CMP_PREFIX "p/");
	if (strcmp(req->method, "POST")) {
		http_error(resp, 405, "CMP takes POST (application/pkixcmp)");
		serve_resp_header(resp, "Allow", "POST");
		return;
	}
	pthread_mutex_lock(st->env->ca_lock);
	found = strlen(tmpl) < sizeof t.name ? ca_template_named(st->env->ca, tmpl) : NULL;
	if (found)
		t = *found;
	pthread_mutex_unlock(st->env->ca_lock);
	if (!found) {
		http_error(resp, 404, "no such template");
		return;
	}
	call.t = &t;
	call.poll_after = st->poll_after;
	if (cmp_peek(req->body, req->len, &m)) {
		error_answer(resp, OSSL_CMP_PKIFAILUREINFO_badDataFormat, ca_last_error());
		kw_log_limited("cmp.bad", KW_LOG_INFO, "keyward-ca serve: cmp: %s: %s", req->remote, ca_last_error());
		return;
	}
	p = req->body;
	if (!(msg = d2i_OSSL_CMP_MSG(NULL, &p, (long)req->len))) {
		ERR_clear_error();
		error_answer(resp, OSSL_CMP_PKIFAILUREINFO_badDataFormat, "not a CMP message OpenSSL can read");
		cmp_peek_free(&m);
		return;
	}
	body = OSSL_CMP_MSG_get_bodytype(msg);
	pre_checks(&m, tmpl, &call, now);

	/* the transaction: a new one, or the one this message continues */
	if (!call.refuse_info && !starts_transaction(body)) {
		txn = txn_take(st, m.tid, now, &busy);
		if (!txn) {
			call.refuse_info = FAIL(badRequest);
			snprintf(call.refuse, sizeof call.refuse,
				 busy ? "the transaction is busy with another message"
				      : "no open transaction with this transactionID (it ended, or expired)");
		} else if (strcmp(txn->tmpl, tmpl) || txn->protection != m.protection) {
			call.refuse_info = FAIL(badRequest);
			snprintf(call.refuse, sizeof call.refuse, "%s",
				 strcmp(txn->tmpl, tmpl) ? "the transaction began under another template"
							 : "the transaction began with another protection");
			txn_put(st, txn, true, false);
			txn = NULL;
		}
	}
	if (!txn) {
		is_new = true;
		if (!(txn = calloc(1, sizeof *txn)) || !(txn->srv = cmp_srv_new(&call))) {
			free(txn);
			txn = NULL; /* out: would free it again */
			http_error(resp, 500, "out of memory");
			goto out;
		}
		if (m.tid) {
			txn->id_len = (size_t)m.tid->length <= sizeof txn->id ? (size_t)m.tid->length : sizeof txn->id;
			memcpy(txn->id, m.tid->data, txn->id_len);
		}
		snprintf(txn->tmpl, sizeof txn->tmpl, "%s", tmpl);
		txn->protection = m.protection;
	} else {
		/* the callbacks take this call: what the transaction knows so far */
		cmp_srv_bind(txn->srv, &call);
	}
	ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(txn->srv);
	call.pending_id = txn->pending_id;
	call.first = txn->first;
	memcpy(call.serial, txn->serial, sizeof call.serial);
	memcpy(call.hash, txn->hash, sizeof call.hash);
	call.hash_len = txn->hash_len;

	/* who sent it */
	if (!call.refuse_info && m.protection == CMP_PROT_MAC) {
		int rc;

		/* (the store's token session is open: it does not take the CA, nor its lock) */
		pthread_mutex_lock(&st->store_lock);
		rc = cmp_secret_get(st->env->ca, st->store, tmpl, secret, &secret_len);
		pthread_mutex_unlock(&st->store_lock);
		if (rc) {
			call.refuse_info = FAIL(badMessageCheck);
			snprintf(call.refuse, sizeof call.refuse, "%s",
				 ca_last_error_kind() == CA_ERR_NOT_FOUND
					 ? "this template takes no MAC-protected requests (it has no CMP secret)"
					 : "the template's CMP secret cannot be unsealed (see the server's log)");
			kw_log_limited("cmp.secret", KW_LOG_ERROR, "keyward-ca serve: cmp: template %s: %s", tmpl,
				       ca_last_error());
		} else if (!OSSL_CMP_CTX_set1_secretValue(ctx, secret, (int)secret_len) ||
			   !OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)tmpl, (int)strlen(tmpl))) {
			http_error(resp, 500, "out of memory");
			goto out;
		}
		OPENSSL_cleanse(secret, sizeof secret);
	} else if (!call.refuse_info && m.protection == CMP_PROT_SIGNATURE) {
		X509 *signer = txn->signer ? (X509_up_ref(txn->signer), txn->signer)
					   : find_signer(st, m.sender, m.extra_certs);

		if (!signer) {
			call.refuse_info = FAIL(notAuthorized);
			snprintf(call.refuse, sizeof call.refuse, "%s", ca_last_error());
		} else {
			bool ok;

			/* the framework checks the signature with this certificate and no other */
			pthread_mutex_lock(st->env->ca_lock);
			ok = OSSL_CMP_CTX_set1_srvCert(ctx, signer) &&
			     OSSL_CMP_CTX_set1_cert(ctx, ca_certificate(st->env->ca)) &&
			     OSSL_CMP_CTX_set1_pkey(ctx, st->env->ca->priv);
			pthread_mutex_unlock(st->env->ca_lock);
			if (!ok) {
				X509_free(signer);
				http_error(resp, 500, "out of memory");
				goto out;
			}
			if (!txn->signer) {
				txn->signer = signer;
				X509_up_ref(signer);
			}
			call.signer = signer;
			call.ca_locked = true; /* the answer is signed with the CA key */
			X509_free(signer);
		}
	}
	/* a refusal before the protection is checked: the callbacks answer it, unprotected */
	OSSL_CMP_SRV_CTX_set_accept_unprotected(txn->srv, call.refuse_info != 0);

	/* a message that begins a transaction, once: later copies are replays */
	if (!call.refuse_info && is_new) {
		int seen;

		/*
		 * under the CA's lock too: this write then never meets the issuance's
		 * transaction on the database, whose SQLite busy handler would sleep
		 * up to 100 ms at a time to wait for it
		 */
		pthread_mutex_lock(st->env->ca_lock);
		pthread_mutex_lock(&st->store_lock);
		seen = cmp_seen(st->store, m.tid->data, (size_t)m.tid->length,
				m.time ? now + 2 * CMP_TIME_SKEW : now + CMP_SEEN_KEEP, now);
		pthread_mutex_unlock(&st->store_lock);
		pthread_mutex_unlock(st->env->ca_lock);
		if (seen) {
			call.refuse_info = seen > 0 ? FAIL(transactionIdInUse) : FAIL(systemUnavail);
			snprintf(call.refuse, sizeof call.refuse, "%s",
				 seen > 0 ? "this transactionID was used before: a replayed message is refused"
					  : "the replay record cannot be written (see the server's log)");
			if (seen < 0)
				kw_log_limited("cmp.db", KW_LOG_ERROR, "keyward-ca serve: cmp: %s", ca_last_error());
		}
	}

	call.decoder = decoder_take(st);
	if (call.ca_locked)
		pthread_mutex_lock(st->env->ca_lock);
	rsp = call.decoder ? OSSL_CMP_SRV_process_request(txn->srv, msg) : NULL;
	if (call.ca_locked)
		pthread_mutex_unlock(st->env->ca_lock);
	decoder_put(st, call.decoder);
	/* the secret goes with the message: the next one unseals it again */
	OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *)"-", 1);
	OSSL_CMP_CTX_set1_pkey(ctx, NULL);
	ERR_clear_error();
	if (!rsp || (der_len = i2d_OSSL_CMP_MSG(rsp, &der)) <= 0) {
		error_answer(resp, OSSL_CMP_PKIFAILUREINFO_systemFailure, "the CMP answer could not be made");
		goto out;
	}
	cmp_answer(resp, der, (size_t)der_len);
	if (call.what[0] || call.refuse_info)
		kw_log_limited("cmp.refused", KW_LOG_INFO, "keyward-ca serve: cmp: %s: template %s: %s", req->remote,
			       tmpl, call.refuse_info ? call.refuse : call.what);
	else if (starts_transaction(body) && call.serial[0])
		kw_log(KW_LOG_INFO, "keyward-ca serve: cmp: %s: template %s: %s serial %s (%s)", req->remote, tmpl,
		       body == CMP_BODY_RR ? "revoked" : "issued", call.serial,
		       m.protection == CMP_PROT_MAC ? "the template's secret" : "signed by the holder");
	else if (starts_transaction(body) && call.pending_id)
		kw_log(KW_LOG_INFO, "keyward-ca serve: cmp: %s: template %s: request %lld pending approval",
		       req->remote, tmpl, call.pending_id);
	keep = !call.refuse_info && goes_on(rsp, &call, body);
	if (keep) {
		txn->pending_id = call.pending_id;
		memcpy(txn->serial, call.serial, sizeof txn->serial);
		memcpy(txn->hash, call.hash, sizeof txn->hash);
		txn->hash_len = call.hash_len;
		txn->expires = now + (call.pending_id && !call.serial[0] ? CMP_POLL_WAIT : CMP_CONFIRM_WAIT);
		if (call.pending_id && !txn->first && !(txn->first = OSSL_CMP_MSG_dup(msg)))
			keep = false;
	}
out:
	if (txn)
		txn_put(st, txn, keep, is_new);
	OPENSSL_cleanse(secret, sizeof secret);
	OPENSSL_free(der);
	OSSL_CMP_MSG_free(rsp);
	OSSL_CMP_MSG_free(msg);
	cmp_peek_free(&m);
	ERR_clear_error();
}

const struct serve_app cmp_app = {
	.name = "cmp",
	.prefix = CMP_PREFIX,
	.open = cmp_open,
	.handle = cmp_handle,
	.close = cmp_close,
};
