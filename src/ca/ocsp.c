/*
 * keyward-ca: OCSP requests decoded and answered (RFC 6960), buffer to
 * buffer. A request is checked against caps before anything is looked up;
 * each CertID is matched against the CA by issuerNameHash and
 * issuerKeyHash in the hash the client chose (SHA-1 and SHA-256
 * precomputed, others computed); an id of another issuer makes the whole
 * answer "unauthorized", as RFC 6960 2.3 says for a responder that is not
 * the issuer's. A request signed by the client is accepted and its
 * signature ignored: the answer is public.
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"
#include "ca/ocsp.h"

static const char *const outcome_names[OCSP_OUT_N] = {"good",	   "revoked",	   "unknown",
						      "malformed", "unauthorized", "internal_error"};

const char *ocsp_outcome_name(enum ocsp_outcome o)
{
	return o < OCSP_OUT_N ? outcome_names[o] : "?";
}

int ocsp_issuer_init(struct ocsp_issuer *is, X509 *ca)
{
	unsigned n1 = 0, n2 = 0, n3 = 0, n4 = 0;

	memset(is, 0, sizeof *is);
	is->cert = ca;
	if (!X509_NAME_digest(X509_get_subject_name(ca), EVP_sha1(), is->name_sha1, &n1) ||
	    !X509_pubkey_digest(ca, EVP_sha1(), is->key_sha1, &n2) ||
	    !X509_NAME_digest(X509_get_subject_name(ca), EVP_sha256(), is->name_sha256, &n3) ||
	    !X509_pubkey_digest(ca, EVP_sha256(), is->key_sha256, &n4) || n1 != 20 || n2 != 20 || n3 != 32 ||
	    n4 != 32) {
		ERR_clear_error();
		return ca_error("cannot hash the CA certificate's name and key");
	}
	return 0;
}

static bool octets_equal(const ASN1_OCTET_STRING *s, const unsigned char *p, size_t n)
{
	return s && (size_t)ASN1_STRING_length(s) == n && CRYPTO_memcmp(ASN1_STRING_get0_data(s), p, n) == 0;
}

/* Whether cid names is's certificate as its issuer. */
static bool ours(const struct ocsp_issuer *is, OCSP_CERTID *cid)
{
	ASN1_OCTET_STRING *name = NULL, *key = NULL;
	ASN1_OBJECT *alg = NULL;
	unsigned char nh[EVP_MAX_MD_SIZE], kh[EVP_MAX_MD_SIZE];
	unsigned nn = 0, kn = 0;
	const EVP_MD *md;
	int nid;

	if (!OCSP_id_get0_info(&name, &alg, &key, NULL, cid))
		return false;
	nid = OBJ_obj2nid(alg);
	if (nid == NID_sha1)
		return octets_equal(name, is->name_sha1, 20) && octets_equal(key, is->key_sha1, 20);
	if (nid == NID_sha256)
		return octets_equal(name, is->name_sha256, 32) && octets_equal(key, is->key_sha256, 32);
	/* another hash (SHA-384, SHA-512, ...): computed for this id */
	if (nid == NID_undef || !(md = EVP_get_digestbynid(nid)) || EVP_MD_get_size(md) <= 0)
		return false;
	if (!X509_NAME_digest(X509_get_subject_name(is->cert), md, nh, &nn) ||
	    !X509_pubkey_digest(is->cert, md, kh, &kn)) {
		ERR_clear_error();
		return false;
	}
	return octets_equal(name, nh, nn) && octets_equal(key, kh, kn);
}

/* The serial of cid as the CA stores it; false if it cannot be one of the CA's (negative, over 20 octets). */
static bool serial_of(OCSP_CERTID *cid, char *out, size_t size)
{
	ASN1_INTEGER *serial = NULL;

	out[0] = '\0';
	if (!OCSP_id_get0_info(NULL, NULL, NULL, &serial, cid) || !serial ||
	    ASN1_STRING_type(serial) != V_ASN1_INTEGER || ASN1_STRING_length(serial) < 1 ||
	    ASN1_STRING_length(serial) > 20)
		return false;
	ca_serial_hex(serial, out, size);
	return out[0] != '\0';
}

OCSP_REQUEST *ocsp_request_decode(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	OCSP_REQUEST *req;
	int n;

	if (!der || len == 0 || len > OCSP_REQUEST_MAX)
		return NULL;
	req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
	if (!req || p != der + len) { /* trailing bytes: not one request */
		OCSP_REQUEST_free(req);
		ERR_clear_error();
		return NULL;
	}
	n = OCSP_request_onereq_count(req);
	if (n < 1 || n > OCSP_IDS_MAX) {
		OCSP_REQUEST_free(req);
		return NULL;
	}
	return req;
}

/* OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } for each error status */
static const unsigned char err_bytes[7][5] = {
	{0x30, 0x03, 0x0a, 0x01, 0x00}, {0x30, 0x03, 0x0a, 0x01, 0x01}, {0x30, 0x03, 0x0a, 0x01, 0x02},
	{0x30, 0x03, 0x0a, 0x01, 0x03}, {0x30, 0x03, 0x0a, 0x01, 0x04}, {0x30, 0x03, 0x0a, 0x01, 0x05},
	{0x30, 0x03, 0x0a, 0x01, 0x06},
};

void ocsp_error_bytes(int status, const unsigned char **der, size_t *len)
{
	if (status < 1 || status > 6 || status == 4)
		status = OCSP_RESPONSE_STATUS_INTERNALERROR;
	*der = err_bytes[status];
	*len = sizeof err_bytes[status];
}

static int error_answer(int status, enum ocsp_outcome o, unsigned char **out, size_t *out_len, struct ocsp_result *res)
{
	const unsigned char *p;
	size_t n;

	ocsp_error_bytes(status, &p, &n);
	res->outcome = o;
	res->cacheable = false;
	if (!(*out = OPENSSL_memdup(p, n)))
		return -1;
	*out_len = n;
	return 0;
}

static enum ocsp_outcome outcome_of(int status)
{
	return status == V_OCSP_CERTSTATUS_GOOD	     ? OCSP_OUT_GOOD
	       : status == V_OCSP_CERTSTATUS_REVOKED ? OCSP_OUT_REVOKED
						     : OCSP_OUT_UNKNOWN;
}

int ocsp_answer_build(const struct ocsp_issuer *is, OCSP_REQUEST *req, ocsp_lookup_fn lookup, void *arg, time_t now,
		      unsigned validity, OCSP_BASICRESP **bs_out, unsigned char **out, size_t *out_len,
		      struct ocsp_result *res)
{
	OCSP_BASICRESP *bs = NULL;
	ASN1_TIME *this_update = NULL, *next_update = NULL;
	int n, rc = -1;
	enum ocsp_outcome first = OCSP_OUT_UNKNOWN;
	bool nonce;

	*bs_out = NULL;
	*out = NULL;
	*out_len = 0;
	memset(res, 0, sizeof *res);
	if (!req)
		return error_answer(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, OCSP_OUT_MALFORMED, out, out_len, res);
	n = OCSP_request_onereq_count(req);
	if (n < 1 || n > OCSP_IDS_MAX)
		return error_answer(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, OCSP_OUT_MALFORMED, out, out_len, res);
	for (int i = 0; i < n; i++)
		if (!ours(is, OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i))))
			return error_answer(OCSP_RESPONSE_STATUS_UNAUTHORIZED, OCSP_OUT_UNAUTHORIZED, out, out_len,
					    res);
	nonce = OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1) >= 0;
	res->this_update = now;
	res->next_update = now + (time_t)validity;
	if (!(bs = OCSP_BASICRESP_new()) || !(this_update = ASN1_TIME_set(NULL, now)) ||
	    !(next_update = ASN1_TIME_set(NULL, res->next_update)))
		goto internal;
	for (int i = 0; i < n; i++) {
		OCSP_CERTID *cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i));
		struct ocsp_status st = {V_OCSP_CERTSTATUS_UNKNOWN, 0, -1, 0};
		char serial[OCSP_SERIAL_HEX_MAX];
		ASN1_TIME *revoked = NULL;
		OCSP_SINGLERESP *single;

		if (serial_of(cid, serial, sizeof serial) && lookup(arg, serial, &st) != 0)
			goto internal;
		if (i == 0) {
			snprintf(res->serial, sizeof res->serial, "%s", serial);
			first = outcome_of(st.status);
			/* RFC 5019 2.1.1: one id, SHA-1, no nonce: the same bytes answer every such request */
			{
				ASN1_OBJECT *alg = NULL;

				OCSP_id_get0_info(NULL, &alg, NULL, NULL, cid);
				res->cacheable = n == 1 && !nonce && OBJ_obj2nid(alg) == NID_sha1 && serial[0];
			}
		}
		if (st.status == V_OCSP_CERTSTATUS_REVOKED && !(revoked = ASN1_TIME_set(NULL, st.revoked_at)))
			goto internal;
		single = OCSP_basic_add1_status(
			bs, cid, st.status, st.status == V_OCSP_CERTSTATUS_REVOKED && st.reason > 0 ? st.reason : -1,
			revoked, this_update, next_update);
		ASN1_TIME_free(revoked);
		if (!single)
			goto internal;
		if (st.status == V_OCSP_CERTSTATUS_REVOKED && st.invalid_at > 0) {
			/* RFC 6960 4.4.8 / RFC 5280 5.3.2: the date from which the key is known or suspected bad */
			ASN1_GENERALIZEDTIME *g = ASN1_GENERALIZEDTIME_set(NULL, st.invalid_at);
			int ok = g && OCSP_SINGLERESP_add1_ext_i2d(single, NID_invalidity_date, g, 0, 0);

			ASN1_GENERALIZEDTIME_free(g);
			if (!ok)
				goto internal;
		}
	}
	if (nonce && OCSP_copy_nonce(bs, req) != 1)
		goto internal;
	res->outcome = first;
	*bs_out = bs;
	bs = NULL;
	rc = 0;
	goto out;
internal:
	ERR_clear_error();
	rc = error_answer(OCSP_RESPONSE_STATUS_INTERNALERROR, OCSP_OUT_INTERNAL, out, out_len, res);
out:
	OCSP_BASICRESP_free(bs);
	ASN1_TIME_free(this_update);
	ASN1_TIME_free(next_update);
	return rc;
}

int ocsp_answer(const struct ocsp_issuer *is, const struct ocsp_signer *s, OCSP_REQUEST *req, ocsp_lookup_fn lookup,
		void *arg, time_t now, unsigned validity, unsigned char **out, size_t *out_len, struct ocsp_result *res)
{
	OCSP_BASICRESP *bs = NULL;
	OCSP_RESPONSE *resp = NULL;
	enum ocsp_outcome outcome;
	int len, rc;

	if ((rc = ocsp_answer_build(is, req, lookup, arg, now, validity, &bs, out, out_len, res)) || !bs)
		return rc; /* an error answer, or none */
	outcome = res->outcome;
	if (!OCSP_basic_sign(bs, s->cert, s->key, s->md, NULL, OCSP_RESPID_KEY | (s->include_cert ? 0 : OCSP_NOCERTS)))
		goto internal;
	if (!(resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs)))
		goto internal;
	*out = NULL;
	if ((len = i2d_OCSP_RESPONSE(resp, out)) <= 0)
		goto internal;
	*out_len = (size_t)len;
	res->outcome = outcome;
	rc = 0;
	goto out;
internal:
	ERR_clear_error();
	OPENSSL_free(*out);
	*out = NULL;
	rc = error_answer(OCSP_RESPONSE_STATUS_INTERNALERROR, OCSP_OUT_INTERNAL, out, out_len, res);
out:
	OCSP_RESPONSE_free(resp);
	OCSP_BASICRESP_free(bs);
	return rc;
}

OCSP_REQUEST *ocsp_request_for_serial(const struct ocsp_issuer *is, const char *serial)
{
	OCSP_REQUEST *req = OCSP_REQUEST_new();
	BIGNUM *bn = NULL;
	ASN1_INTEGER *ai = NULL;
	OCSP_CERTID *cid = NULL;

	if (!req || !BN_hex2bn(&bn, serial) || !(ai = BN_to_ASN1_INTEGER(bn, NULL)) ||
	    !(cid = OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(is->cert), X509_get0_pubkey_bitstr(is->cert),
				     ai)) ||
	    !OCSP_request_add0_id(req, cid)) {
		OCSP_CERTID_free(cid);
		OCSP_REQUEST_free(req);
		req = NULL;
		ERR_clear_error();
	}
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	return req;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

long ocsp_base64_decode(const char *text, size_t len, unsigned char *out, size_t max)
{
	unsigned long acc = 0;
	size_t n = 0, bits = 0;

	while (len > 0 && text[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value(text[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned long)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= max)
				return -1;
			out[n++] = (unsigned char)(acc >> bits);
			acc &= (1UL << bits) - 1;
		}
	}
	return (long)n;
}

bool ocsp_request_cache_key(const struct ocsp_issuer *is, OCSP_REQUEST *req, char *serial, size_t size)
{
	OCSP_CERTID *cid;
	ASN1_OBJECT *alg = NULL;

	if (!req || OCSP_request_onereq_count(req) != 1 ||
	    OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1) >= 0)
		return false;
	cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, 0));
	if (!OCSP_id_get0_info(NULL, &alg, NULL, NULL, cid) || OBJ_obj2nid(alg) != NID_sha1 || !ours(is, cid))
		return false;
	return serial_of(cid, serial, size);
}
