/*
 * keyward-ca serve: the RFC 5019 cache's answers, many signed in one HSM
 * round trip. OpenSSL's OCSP_basic_sign makes one signature per call
 * through the signer's EVP_PKEY, and has no way to take a signature made
 * elsewhere; so, as crlder.c does for CRLs, the response is assembled
 * here from parts OpenSSL encodes (each SingleResponse), and the
 * signatures of up to CA_SIGN_BATCH responses come from one
 * C_KW_SignBatch (batchsign.c):
 *
 *   OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED (successful),
 *       responseBytes [0] EXPLICIT SEQUENCE { id-pkix-ocsp-basic,
 *           response OCTET STRING (BasicOCSPResponse) } }
 *   BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm,
 *       signature BIT STRING, certs [0] EXPLICIT SEQUENCE OF Certificate }
 *   ResponseData ::= SEQUENCE { responderID [2] EXPLICIT KeyHash,
 *       producedAt GeneralizedTime, responses SEQUENCE OF SingleResponse }
 *
 *   responseExtensions [1] EXPLICIT Extensions OPTIONAL (a nonce)
 *
 * The responder is named by key hash. ocsp_der_tbs turns any response
 * ocsp_answer_build made (several ids, a nonce) into its ResponseData, so
 * serve's signing queue signs the answers of concurrent requests in one
 * round trip too.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "ca/ocspder.h"

/* id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1 */
static const unsigned char basic_oid[] = {0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01};

/* The unsigned response for one answer: its SingleResponse in a scratch OCSP_BASICRESP. */
static OCSP_BASICRESP *single_answer(const struct ocsp_issuer *is, const struct ocsp_presign_item *item, time_t now,
				     unsigned validity)
{
	OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
	ASN1_TIME *this_update = ASN1_TIME_set(NULL, now), *next_update = ASN1_TIME_set(NULL, now + (time_t)validity);
	ASN1_TIME *revoked = NULL;
	OCSP_REQUEST *req = ocsp_request_for_serial(is, item->serial);
	OCSP_CERTID *cid = req ? OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, 0)) : NULL;
	OCSP_SINGLERESP *single = NULL;
	const struct ocsp_status *st = &item->status;
	bool ok = false;

	if (!bs || !this_update || !next_update || !cid ||
	    (st->status == V_OCSP_CERTSTATUS_REVOKED && !(revoked = ASN1_TIME_set(NULL, st->revoked_at))))
		goto out;
	single = OCSP_basic_add1_status(bs, cid, st->status,
					st->status == V_OCSP_CERTSTATUS_REVOKED && st->reason > 0 ? st->reason : -1,
					revoked, this_update, next_update);
	if (!single)
		goto out;
	ok = true;
	if (st->status == V_OCSP_CERTSTATUS_REVOKED && st->invalid_at > 0) {
		ASN1_GENERALIZEDTIME *g = ASN1_GENERALIZEDTIME_set(NULL, st->invalid_at);

		ok = g && OCSP_SINGLERESP_add1_ext_i2d(single, NID_invalidity_date, g, 0, 0);
		ASN1_GENERALIZEDTIME_free(g);
	}
out:
	if (!ok) {
		ca_error("cannot encode the OCSP answer for serial %s", item->serial);
		OCSP_BASICRESP_free(bs);
		bs = NULL;
	}
	ERR_clear_error();
	ASN1_TIME_free(revoked);
	ASN1_TIME_free(this_update);
	ASN1_TIME_free(next_update);
	OCSP_REQUEST_free(req);
	return bs;
}

int ocsp_der_tbs(const struct ocsp_presign *p, OCSP_BASICRESP *bs, time_t now, struct ca_der *out)
{
	unsigned char key_hash[SHA_DIGEST_LENGTH], octets[2 + SHA_DIGEST_LENGTH];
	unsigned int hash_len = 0;
	struct ca_der body = {0}, singles = {0}, exts = {0}, responder = {0};
	ASN1_GENERALIZEDTIME *produced = ASN1_GENERALIZEDTIME_set(NULL, now);
	unsigned char *t = NULL;
	int t_len = produced ? i2d_ASN1_GENERALIZEDTIME(produced, &t) : -1, rc = -1;

	/* KeyHash: SHA-1 of the responder's public key BIT STRING's value (RFC 6960 4.2.1) */
	if (p->key_hash) {
		memcpy(key_hash, p->key_hash, sizeof key_hash);
		hash_len = sizeof key_hash;
	}
	if ((!p->key_hash && !X509_pubkey_digest(p->signer_cert, EVP_sha1(), key_hash, &hash_len)) ||
	    hash_len != sizeof key_hash || t_len <= 0) {
		ca_error("cannot encode the responder's id");
		goto out;
	}
	octets[0] = 0x04;
	octets[1] = SHA_DIGEST_LENGTH;
	memcpy(octets + 2, key_hash, sizeof key_hash);
	/* each SingleResponse and response extension (a nonce) as OpenSSL encodes it */
	for (int i = 0; i < OCSP_resp_count(bs); i++) {
		unsigned char *der = NULL;
		int len = i2d_OCSP_SINGLERESP(OCSP_resp_get0(bs, i), &der),
		    bad = len <= 0 || ca_der_put(&singles, der, (size_t)len);

		OPENSSL_free(der);
		if (bad) {
			ca_error("cannot encode an OCSP SingleResponse");
			goto out;
		}
	}
	for (int i = 0; i < OCSP_BASICRESP_get_ext_count(bs); i++) {
		unsigned char *der = NULL;
		int len = i2d_X509_EXTENSION(OCSP_BASICRESP_get_ext(bs, i), &der),
		    bad = len <= 0 || ca_der_put(&exts, der, (size_t)len);

		OPENSSL_free(der);
		if (bad) {
			ca_error("cannot encode an OCSP response extension");
			goto out;
		}
	}
	if (ca_der_tlv(&responder, 0xa2, octets, sizeof octets) || ca_der_put(&body, responder.p, responder.len) ||
	    ca_der_put(&body, t, (size_t)t_len) || ca_der_tlv(&body, 0x30, singles.p, singles.len))
		goto out;
	if (exts.len) {
		/* responseExtensions [1] EXPLICIT Extensions */
		struct ca_der list = {0};
		int bad = ca_der_tlv(&list, 0x30, exts.p, exts.len) || ca_der_tlv(&body, 0xa1, list.p, list.len);

		ca_der_free(&list);
		if (bad)
			goto out;
	}
	if (ca_der_tlv(out, 0x30, body.p, body.len))
		goto out;
	rc = 0;
out:
	OPENSSL_free(t);
	ASN1_GENERALIZEDTIME_free(produced);
	ca_der_free(&body);
	ca_der_free(&singles);
	ca_der_free(&exts);
	ca_der_free(&responder);
	return rc;
}

int ocsp_der_response(const struct ocsp_presign *p, const struct ca_der *tbs, const struct ca_der *alg,
		      const unsigned char *sig, size_t sig_len, unsigned char **out, size_t *out_len)
{
	struct ca_der basic = {0}, seq = {0}, bytes = {0}, resp = {0}, bits = {0}, certs = {0};
	static const unsigned char successful[] = {0x0a, 0x01, 0x00};
	unsigned char *cert = NULL;
	int cert_len = 0, rc = -1;

	if (p->include_cert && (cert_len = i2d_X509(p->signer_cert, &cert)) <= 0) {
		ca_error("cannot encode the OCSP signer's certificate");
		goto out;
	}
	if (ca_der_put(&bits, "", 1) || ca_der_put(&bits, sig, sig_len) || /* BIT STRING: no unused bits */
	    ca_der_put(&seq, tbs->p, tbs->len) || ca_der_put(&seq, alg->p, alg->len) ||
	    ca_der_tlv(&seq, 0x03, bits.p, bits.len))
		goto out;
	if (cert_len > 0) {
		struct ca_der list = {0};
		int bad = ca_der_tlv(&list, 0x30, cert, (size_t)cert_len) ||
			  ca_der_tlv(&certs, 0xa0, list.p, list.len) || ca_der_put(&seq, certs.p, certs.len);

		ca_der_free(&list);
		if (bad)
			goto out;
	}
	if (ca_der_tlv(&basic, 0x30, seq.p, seq.len))
		goto out;
	/* responseBytes: the type, then the BasicOCSPResponse in an OCTET STRING */
	ca_der_free(&seq);
	if (ca_der_put(&seq, basic_oid, sizeof basic_oid) || ca_der_tlv(&seq, 0x04, basic.p, basic.len) ||
	    ca_der_tlv(&bytes, 0x30, seq.p, seq.len))
		goto out;
	ca_der_free(&seq);
	if (ca_der_put(&seq, successful, sizeof successful) || ca_der_tlv(&seq, 0xa0, bytes.p, bytes.len) ||
	    ca_der_tlv(&resp, 0x30, seq.p, seq.len))
		goto out;
	*out = resp.p;
	*out_len = resp.len;
	resp.p = NULL;
	rc = 0;
out:
	OPENSSL_free(cert);
	ca_der_free(&basic);
	ca_der_free(&seq);
	ca_der_free(&bytes);
	ca_der_free(&resp);
	ca_der_free(&bits);
	ca_der_free(&certs);
	return rc;
}

int ocsp_presign_batch(const struct ocsp_presign *p, struct ocsp_presign_item *items, size_t n, time_t now,
		       unsigned validity)
{
	struct ca_der tbs[CA_SIGN_BATCH] = {{0}}, alg = {0};
	const unsigned char *data[CA_SIGN_BATCH];
	unsigned char *sigs[CA_SIGN_BATCH] = {NULL};
	size_t lens[CA_SIGN_BATCH], sig_lens[CA_SIGN_BATCH];
	int rc = -1;

	if (n < 1 || n > CA_SIGN_BATCH)
		return ca_usage_error("a pre-signing batch holds 1 to %d answers", CA_SIGN_BATCH);
	for (size_t i = 0; i < n; i++) {
		items[i].der = NULL;
		items[i].len = 0;
		OCSP_BASICRESP *bs = single_answer(p->is, &items[i], now, validity);
		int bad = !bs || ocsp_der_tbs(p, bs, now, &tbs[i]);

		OCSP_BASICRESP_free(bs);
		if (bad)
			goto out;
		data[i] = tbs[i].p;
		lens[i] = tbs[i].len;
	}
	if (ca_batch_algorithm(p->batch, p->md, &alg) ||
	    ca_batch_sign_data(p->batch, p->md, data, lens, n, sigs, sig_lens))
		goto out;
	for (size_t i = 0; i < n; i++)
		if (ocsp_der_response(p, &tbs[i], &alg, sigs[i], sig_lens[i], &items[i].der, &items[i].len))
			goto out;
	rc = 0;
out:
	for (size_t i = 0; i < n; i++) {
		if (rc) {
			free(items[i].der);
			items[i].der = NULL;
		}
		ca_der_free(&tbs[i]);
		free(sigs[i]);
	}
	ca_der_free(&alg);
	return rc;
}
