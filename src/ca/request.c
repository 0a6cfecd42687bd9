/*
 * keyward-ca: PKCS#10 certification requests (RFC 2986), parsed once.
 *
 * Why not d2i_X509_REQ: in OpenSSL 3.0 it decodes the request's public
 * key through a decoder context built afresh for every call, walking
 * every provider's decoders (openssl/openssl#17950, #19119, #20051): about
 * 140 µs of the 160 µs a request costs, more than the HSM's signature.
 * The request is described here with OpenSSL's own ASN.1 templates, its
 * key left as bytes, and the key decoded with a decoder context made once
 * per thread and used for every request (about 25 µs).
 *
 * A request may also come as a CRMF CertReqMsg (RFC 4211), as CMP's ir,
 * cr and kur carry it: its certTemplate gives the subject, the key and
 * the extensions asked for, and its proof of possession (a signature by
 * the key over the CertRequest) stands where PKCS#10 has its signature.
 * Stored for approval as its DER, it is read back by ca_request_parse
 * like a PKCS#10 request.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"

/* a request file larger than CA_REQUEST_MAX is not a request (an RSA-16384 CSR with 100 SANs is some 15 kB) */

/* OpenSSL's ASN.1 template macros, which clang-format cannot lay out */
// clang-format off

/* SubjectPublicKeyInfo, its key as bytes: nothing decoded */
typedef struct {
	X509_ALGOR *algorithm;
	ASN1_BIT_STRING *key;
} CA_SPKI;

ASN1_SEQUENCE(CA_SPKI) = {
	ASN1_SIMPLE(CA_SPKI, algorithm, X509_ALGOR),
	ASN1_SIMPLE(CA_SPKI, key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(CA_SPKI)

/* CertificationRequestInfo; its encoding is kept, for the signature to be checked over the bytes sent */
typedef struct {
	ASN1_ENCODING enc;
	ASN1_INTEGER *version;
	X509_NAME *subject;
	CA_SPKI *spki;
	STACK_OF(X509_ATTRIBUTE) *attributes;
} CA_REQ_INFO;

ASN1_SEQUENCE_enc(CA_REQ_INFO, enc, 0) = {
	ASN1_SIMPLE(CA_REQ_INFO, version, ASN1_INTEGER),
	ASN1_SIMPLE(CA_REQ_INFO, subject, X509_NAME),
	ASN1_SIMPLE(CA_REQ_INFO, spki, CA_SPKI),
	/* [0] IMPLICIT, required by RFC 2986 but left out by some old software, as OpenSSL allows */
	ASN1_IMP_SET_OF_OPT(CA_REQ_INFO, attributes, X509_ATTRIBUTE, 0),
} static_ASN1_SEQUENCE_END_ref(CA_REQ_INFO, CA_REQ_INFO)

typedef struct CA_REQ_st {
	CA_REQ_INFO *info;
	X509_ALGOR *signature_algorithm;
	ASN1_BIT_STRING *signature;
} CA_REQ;

ASN1_SEQUENCE(CA_REQ) = {
	ASN1_SIMPLE(CA_REQ, info, CA_REQ_INFO),
	ASN1_SIMPLE(CA_REQ, signature_algorithm, X509_ALGOR),
	ASN1_SIMPLE(CA_REQ, signature, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(CA_REQ)

/* CRMF's OptionalValidity and CertTemplate (RFC 4211 5), the key left as bytes as above */
typedef struct {
	ASN1_TIME *not_before, *not_after;
} CA_OPT_VALIDITY;

ASN1_SEQUENCE(CA_OPT_VALIDITY) = {
	ASN1_EXP_OPT(CA_OPT_VALIDITY, not_before, ASN1_TIME, 0),
	ASN1_EXP_OPT(CA_OPT_VALIDITY, not_after, ASN1_TIME, 1),
} static_ASN1_SEQUENCE_END(CA_OPT_VALIDITY)

typedef struct {
	ASN1_INTEGER *version;
	ASN1_INTEGER *serial;
	X509_ALGOR *signing_alg;
	X509_NAME *issuer;
	CA_OPT_VALIDITY *validity;
	X509_NAME *subject;
	CA_SPKI *spki;
	ASN1_BIT_STRING *issuer_uid, *subject_uid;
	STACK_OF(X509_EXTENSION) *extensions;
} CA_CERT_TEMPLATE;

ASN1_SEQUENCE(CA_CERT_TEMPLATE) = {
	ASN1_IMP_OPT(CA_CERT_TEMPLATE, version, ASN1_INTEGER, 0),
	ASN1_IMP_OPT(CA_CERT_TEMPLATE, serial, ASN1_INTEGER, 1),
	ASN1_IMP_OPT(CA_CERT_TEMPLATE, signing_alg, X509_ALGOR, 2),
	ASN1_EXP_OPT(CA_CERT_TEMPLATE, issuer, X509_NAME, 3),
	ASN1_IMP_OPT(CA_CERT_TEMPLATE, validity, CA_OPT_VALIDITY, 4),
	ASN1_EXP_OPT(CA_CERT_TEMPLATE, subject, X509_NAME, 5),
	ASN1_IMP_OPT(CA_CERT_TEMPLATE, spki, CA_SPKI, 6),
	ASN1_IMP_OPT(CA_CERT_TEMPLATE, issuer_uid, ASN1_BIT_STRING, 7),
	ASN1_IMP_OPT(CA_CERT_TEMPLATE, subject_uid, ASN1_BIT_STRING, 8),
	ASN1_IMP_SEQUENCE_OF_OPT(CA_CERT_TEMPLATE, extensions, X509_EXTENSION, 9),
} static_ASN1_SEQUENCE_END(CA_CERT_TEMPLATE)

/* AttributeTypeAndValue, as controls and regInfo carry them: read, never used */
typedef struct {
	ASN1_OBJECT *type;
	ASN1_TYPE *value;
} CA_ATAV;

ASN1_SEQUENCE(CA_ATAV) = {
	ASN1_SIMPLE(CA_ATAV, type, ASN1_OBJECT),
	ASN1_SIMPLE(CA_ATAV, value, ASN1_ANY),
} static_ASN1_SEQUENCE_END(CA_ATAV)

/* CertRequest; its encoding kept, for the proof of possession to be checked over the bytes sent */
typedef struct {
	ASN1_ENCODING enc;
	ASN1_INTEGER *id;
	CA_CERT_TEMPLATE *tmpl;
	OPENSSL_STACK *controls;
} CA_CERT_REQ;

ASN1_SEQUENCE_enc(CA_CERT_REQ, enc, 0) = {
	ASN1_SIMPLE(CA_CERT_REQ, id, ASN1_INTEGER),
	ASN1_SIMPLE(CA_CERT_REQ, tmpl, CA_CERT_TEMPLATE),
	ASN1_SEQUENCE_OF_OPT(CA_CERT_REQ, controls, CA_ATAV),
} static_ASN1_SEQUENCE_END_ref(CA_CERT_REQ, CA_CERT_REQ)

/* POPOSigningKey: poposkInput (not taken) read as whatever it holds */
typedef struct {
	OPENSSL_STACK *input;
	X509_ALGOR *algorithm;
	ASN1_BIT_STRING *signature;
} CA_POPOSK;

ASN1_SEQUENCE(CA_POPOSK) = {
	ASN1_IMP_SEQUENCE_OF_OPT(CA_POPOSK, input, ASN1_ANY, 0),
	ASN1_SIMPLE(CA_POPOSK, algorithm, X509_ALGOR),
	ASN1_SIMPLE(CA_POPOSK, signature, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(CA_POPOSK)

/* ProofOfPossession: raVerified [0], signature [1], keyEncipherment [2], keyAgreement [3] */
typedef struct {
	int type;
	union {
		ASN1_NULL *ra_verified;
		CA_POPOSK *signature;
		ASN1_TYPE *other;
	} value;
} CA_POPO;

ASN1_CHOICE(CA_POPO) = {
	ASN1_IMP(CA_POPO, value.ra_verified, ASN1_NULL, 0),
	ASN1_IMP(CA_POPO, value.signature, CA_POPOSK, 1),
	ASN1_EXP(CA_POPO, value.other, ASN1_ANY, 2),
	ASN1_EXP(CA_POPO, value.other, ASN1_ANY, 3),
} static_ASN1_CHOICE_END(CA_POPO)

/* CertReqMsg (RFC 4211 3): a request that came as CRMF */
typedef struct ca_crmf {
	CA_CERT_REQ *req;
	CA_POPO *popo;
	OPENSSL_STACK *reg_info;
} CA_CRMF;

ASN1_SEQUENCE(CA_CRMF) = {
	ASN1_SIMPLE(CA_CRMF, req, CA_CERT_REQ),
	ASN1_OPT(CA_CRMF, popo, CA_POPO),
	ASN1_SEQUENCE_OF_OPT(CA_CRMF, reg_info, CA_ATAV),
} static_ASN1_SEQUENCE_END(CA_CRMF)

struct ca_key_decoder {
	OSSL_DECODER_CTX *ctx;
	EVP_PKEY *out; /* where ctx puts each key it decodes: its address is fixed at creation */
};
// clang-format on

struct ca_key_decoder *ca_key_decoder_new(void)
{
	struct ca_key_decoder *d = calloc(1, sizeof *d);

	if (d && !(d->ctx = OSSL_DECODER_CTX_new_for_pkey(&d->out, "DER", "SubjectPublicKeyInfo", NULL,
							  EVP_PKEY_PUBLIC_KEY, NULL, NULL))) {
		free(d);
		d = NULL;
	}
	if (!d)
		ca_error("cannot make a public key decoder");
	return d;
}

void ca_key_decoder_free(struct ca_key_decoder *d)
{
	if (!d)
		return;
	OSSL_DECODER_CTX_free(d->ctx);
	EVP_PKEY_free(d->out);
	free(d);
}

static EVP_PKEY *decode_key(struct ca_key_decoder *d, const CA_SPKI *spki)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	int len = ASN1_item_i2d((const ASN1_VALUE *)spki, &der, ASN1_ITEM_rptr(CA_SPKI));
	size_t left = len > 0 ? (size_t)len : 0;
	EVP_PKEY *key = NULL;

	p = der;
	d->out = NULL;
	if (len > 0 && OSSL_DECODER_from_data(d->ctx, &p, &left) && left == 0)
		key = d->out;
	else
		EVP_PKEY_free(d->out);
	d->out = NULL;
	OPENSSL_free(der);
	ERR_clear_error();
	return key;
}

/* The extensions the request asks for (PKCS#9 extensionRequest, or Microsoft's older OID), as X509_REQ_get_extensions
 */
static int requested_extensions(const CA_REQ_INFO *info, STACK_OF(X509_EXTENSION) * *out)
{
	*out = NULL;
	for (int i = 0; i < sk_X509_ATTRIBUTE_num(info->attributes); i++) {
		X509_ATTRIBUTE *a = sk_X509_ATTRIBUTE_value(info->attributes, i);
		int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(a));
		ASN1_TYPE *v;

		if (nid != NID_ext_req && nid != NID_ms_ext_req)
			continue;
		if (*out)
			return ca_error("the request asks for extensions twice");
		v = X509_ATTRIBUTE_get0_type(a, 0);
		if (X509_ATTRIBUTE_count(a) != 1 || !v || v->type != V_ASN1_SEQUENCE ||
		    !(*out = ASN1_item_unpack(v->value.sequence, ASN1_ITEM_rptr(X509_EXTENSIONS))))
			return ca_error("the request's extensionRequest attribute is malformed");
	}
	return 0;
}

void ca_request_free(struct ca_request *r)
{
	if (!r)
		return;
	ASN1_item_free((ASN1_VALUE *)r->asn, ASN1_ITEM_rptr(CA_REQ));
	ASN1_item_free((ASN1_VALUE *)r->crmf, ASN1_ITEM_rptr(CA_CRMF));
	EVP_PKEY_free(r->key);
	sk_X509_EXTENSION_pop_free(r->extensions, X509_EXTENSION_free);
	GENERAL_NAMES_free(r->sans);
	OPENSSL_free(r->der);
	free(r);
}

/* r's SANs (from r->extensions), subject and key; -1 with the reason. */
static int names_and_key(struct ca_request *r, const X509_NAME *subject, const CA_SPKI *spki, struct ca_key_decoder *d)
{
	/* decoded once: the template's checks and the certificate both take them */
	if (r->extensions) {
		int crit = -1;

		r->sans = X509V3_get_d2i(r->extensions, NID_subject_alt_name, &crit, NULL);
		ERR_clear_error();
		if (!r->sans && crit != -1)
			/* -2: asked for twice; otherwise there, but not GeneralNames */
			return ca_error("the request's subjectAltName extension is %s",
					crit == -2 ? "there twice" : "malformed");
	}
	r->subject = subject;
	r->key_algorithm = spki->algorithm;
	r->key_bits = spki->key;
	if (!(r->key = decode_key(d, spki)))
		return ca_error("the request's public key is not one OpenSSL can read");
	return 0;
}

/* A request from its DER, which it takes over; NULL with the reason. */
static struct ca_request *parse(unsigned char *der, size_t len, struct ca_key_decoder *d)
{
	struct ca_request *r = calloc(1, sizeof *r);
	const unsigned char *p = der;
	CA_REQ *asn;
	long version;

	if (!r) {
		OPENSSL_free(der);
		ca_error("out of memory");
		return NULL;
	}
	r->der = der;
	r->der_len = len;
	if (len > CA_REQUEST_MAX || !(asn = (CA_REQ *)ASN1_item_d2i(NULL, &p, (long)len, ASN1_ITEM_rptr(CA_REQ)))) {
		ERR_clear_error();
		ca_error("not a certificate request (PKCS#10, PEM or DER)");
		goto fail;
	}
	r->asn = asn;
	if (p != der + len) {
		ca_error("%zu bytes follow the certificate request", len - (size_t)(p - der));
		goto fail;
	}
	if ((version = ASN1_INTEGER_get(asn->info->version)) != 0) {
		ca_error("the request's version is %ld; PKCS#10 has only version 1 (0)", version);
		goto fail;
	}
	if (requested_extensions(asn->info, &r->extensions) || names_and_key(r, asn->info->subject, asn->info->spki, d))
		goto fail;
	return r;
fail:
	ca_request_free(r);
	return NULL;
}

/*
 * A CRMF CertReqMsg from its DER, which it takes over; NULL with the
 * reason. Read with the templates above, not OpenSSL's: d2i_OSSL_CRMF_MSG
 * would decode the key with a decoder context made for it alone.
 */
static struct ca_request *parse_crmf(unsigned char *der, size_t len, struct ca_key_decoder *d)
{
	struct ca_request *r = calloc(1, sizeof *r);
	const unsigned char *p = der;
	CA_CERT_TEMPLATE *t;

	if (!r) {
		OPENSSL_free(der);
		ca_error("out of memory");
		return NULL;
	}
	r->der = der;
	r->der_len = len;
	if (len > CA_REQUEST_MAX ||
	    !(r->crmf = (CA_CRMF *)ASN1_item_d2i(NULL, &p, (long)len, ASN1_ITEM_rptr(CA_CRMF)))) {
		ca_error("not a certificate request (CRMF)");
		goto fail;
	}
	if (p != der + len) {
		ca_error("%zu bytes follow the certificate request", len - (size_t)(p - der));
		goto fail;
	}
	t = r->crmf->req->tmpl;
	if (!t->spki) {
		ca_error("the request's template has no public key (keys made by the CA are not offered)");
		goto fail;
	}
	if (!t->subject && !(t->subject = X509_NAME_new())) {
		ca_error("out of memory");
		goto fail;
	}
	/* the template's extensions are the request's: only its SANs are ever taken (template.c) */
	if (t->extensions &&
	    !(r->extensions = sk_X509_EXTENSION_deep_copy(t->extensions, X509_EXTENSION_dup, X509_EXTENSION_free))) {
		ca_error("out of memory");
		goto fail;
	}
	if (names_and_key(r, t->subject, t->spki, d))
		goto fail;
	ERR_clear_error();
	return r;
fail:
	ERR_clear_error();
	ca_request_free(r);
	return NULL;
}

struct ca_request *ca_request_from_crmf(const unsigned char *der, size_t len, struct ca_key_decoder *d)
{
	unsigned char *copy = OPENSSL_memdup(der, len ? len : 1);

	if (!copy) {
		ca_error("out of memory");
		return NULL;
	}
	return parse_crmf(copy, len, d);
}

/* As stored: PKCS#10, or else (an approval of a CMP request) a CRMF CertReqMsg; PKCS#10's reason if neither. */
struct ca_request *ca_request_parse(const unsigned char *der, size_t len, struct ca_key_decoder *d)
{
	unsigned char *copy = OPENSSL_memdup(der, len ? len : 1);
	struct ca_request *r;
	char why[1024];

	if (!copy) {
		ca_error("out of memory");
		return NULL;
	}
	if ((r = parse(copy, len, d)))
		return r;
	snprintf(why, sizeof why, "%s", ca_last_error());
	if ((r = ca_request_from_crmf(der, len, d)))
		return r;
	ca_error("%s", why);
	return NULL;
}

struct ca_request *ca_request_from_bytes(const char *name, const char *bytes, size_t len, struct ca_key_decoder *d)
{
	unsigned char *der = NULL;
	long der_len = 0;
	struct ca_request *r;

	if (len > CA_REQUEST_MAX) {
		ca_error("%s: %zu bytes, larger than a request may be (%d bytes)", name, len, CA_REQUEST_MAX);
		return NULL;
	}
	if (memmem(bytes, len, "-----BEGIN ", 11)) {
		/* PEM: "CERTIFICATE REQUEST", or "NEW CERTIFICATE REQUEST" as older tools write it */
		BIO *b = BIO_new_mem_buf(bytes, (int)len);
		char *label = NULL;

		if (!b || !PEM_bytes_read_bio(&der, &der_len, &label, PEM_STRING_X509_REQ, b, NULL, NULL)) {
			der = NULL;
			der_len = 0;
		}
		OPENSSL_free(label);
		BIO_free(b);
		ERR_clear_error();
	} else {
		der = OPENSSL_memdup(bytes, len ? len : 1);
		der_len = (long)len;
	}
	if (!der) {
		ca_error("%s is not a certificate request (PKCS#10, PEM or DER)", name);
		return NULL;
	}
	if (!(r = parse(der, (size_t)der_len, d)))
		ca_error("%s: %s", name, ca_last_error());
	return r;
}

struct ca_request *ca_request_read(const char *path, struct ca_key_decoder *d)
{
	size_t len;
	char *bytes = ca_read_file(path, CA_REQUEST_MAX, &len);
	struct ca_request *r;

	if (!bytes) {
		if (errno == EFBIG)
			ca_error("%s: not a certificate request", ca_last_error());
		return NULL;
	}
	r = ca_request_from_bytes(path, bytes, len, d);
	free(bytes);
	return r;
}

int ca_request_verify(const struct ca_request *r)
{
	int ok;

	if (r->crmf) {
		/* its proof of possession: a signature by the template's key over the CertRequest as sent */
		const CA_POPO *popo = r->crmf->popo;

		if (!popo || popo->type != 1)
			return ca_error("the request's proof of possession is not a signature (%s)",
					!popo		  ? "it has none"
					: popo->type == 0 ? "raVerified is not taken"
							  : "not taken");
		if (popo->value.signature->input)
			return ca_error("the request's proof of possession signs a POPOSigningKeyInput: not taken");
		ok = ASN1_item_verify(ASN1_ITEM_rptr(CA_CERT_REQ), popo->value.signature->algorithm,
				      popo->value.signature->signature, r->crmf->req, r->key);
		ERR_clear_error();
		return ok == 1 ? 0 : ca_error("the request's proof of possession does not verify with its public key");
	}
	ok = ASN1_item_verify(ASN1_ITEM_rptr(CA_REQ_INFO), r->asn->signature_algorithm, r->asn->signature, r->asn->info,
			      r->key);

	ERR_clear_error();
	return ok == 1 ? 0 : ca_error("the request's signature does not verify with its public key");
}
