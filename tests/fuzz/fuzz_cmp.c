/*
 * Fuzz target: what keyward-ca serve's CMP endpoint does with a body
 * before the CA is asked for anything (cmp.c, cmp_srv.c, request.c): the
 * message read by cmp_peek (header, PBM bounds, extraCerts) and by
 * OpenSSL; the certification requests it carries read as the CA library
 * reads them (ca_request_from_crmf with the proof of possession checked,
 * or the p10cr's PKCS#10); then OpenSSL's CMP server with keyward-ca's
 * callbacks, set to refuse, with a MAC secret: the answer must encode.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/crmf.h>
#include <openssl/err.h>

#include "ca/cmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The body's content after its [n] tag and length; NULL if malformed. */
static const unsigned char *body_content(const struct cmp_peek *m, long *len)
{
	const unsigned char *p = m->body;
	int tag, cls;

	if (!p || (ASN1_get_object(&p, len, &tag, &cls, (long)m->body_len) & 0x80) ||
	    *len > (long)m->body_len - (long)(p - m->body))
		return NULL;
	return p;
}

static void requests(const struct cmp_peek *m, struct ca_key_decoder *d)
{
	const unsigned char *p;
	long len;

	if (!(p = body_content(m, &len)))
		return;
	if (m->body_type == CMP_BODY_IR || m->body_type == CMP_BODY_CR || m->body_type == CMP_BODY_KUR) {
		OSSL_CRMF_MSGS *msgs = d2i_OSSL_CRMF_MSGS(NULL, &p, len);

		for (int i = 0; i < sk_OSSL_CRMF_MSG_num(msgs) && i < 8; i++) {
			unsigned char *der = NULL;
			int n = i2d_OSSL_CRMF_MSG(sk_OSSL_CRMF_MSG_value(msgs, i), &der);
			struct ca_request *r = n > 0 ? ca_request_from_crmf(der, (size_t)n, d) : NULL;

			if (r)
				(void)ca_request_verify(r);
			ca_request_free(r);
			OPENSSL_free(der);
		}
		sk_OSSL_CRMF_MSG_pop_free(msgs, OSSL_CRMF_MSG_free);
	} else if (m->body_type == CMP_BODY_P10CR) {
		struct ca_request *r = ca_request_from_bytes("fuzz", (const char *)p, (size_t)len, d);

		if (r)
			(void)ca_request_verify(r);
		ca_request_free(r);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ca_key_decoder *d;
	struct cmp_peek m;
	struct cmp_call call = {.refuse_info = 1 << OSSL_CMP_PKIFAILUREINFO_badRequest, .refuse = "fuzz"};
	const unsigned char *p = data;
	OSSL_CMP_MSG *msg, *rsp = NULL;
	OSSL_CMP_SRV_CTX *srv;

	if (!d && !(d = ca_key_decoder_new()))
		abort();
	if (cmp_peek(data, size, &m) == 0) {
		requests(&m, d);
		cmp_peek_free(&m);
	}
	if ((msg = d2i_OSSL_CMP_MSG(NULL, &p, (long)size)) && (srv = cmp_srv_new(&call))) {
		OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(srv);
		unsigned char *der = NULL;

		OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *)"fuzz", 4);
		OSSL_CMP_SRV_CTX_set_accept_unprotected(srv, 1);
		rsp = OSSL_CMP_SRV_process_request(srv, msg);
		if (rsp && i2d_OSSL_CMP_MSG(rsp, &der) <= 0)
			abort();
		OPENSSL_free(der);
		OSSL_CMP_MSG_free(rsp);
		OSSL_CMP_SRV_CTX_free(srv);
	}
	OSSL_CMP_MSG_free(msg);
	ERR_clear_error();
	return 0;
}
