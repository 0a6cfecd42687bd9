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
	EVP_PKEY_free(r->key);
	sk_X509_EXTENSION_pop_free(r->extensions, X509_EXTENSION_free);
	GENERAL_NAMES_free(r->sans);
	OPENSSL_free(r->der);
	free(r);
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
	if (requested_extensions(asn->info, &r->extensions))
		goto fail;
	/* decoded once: the template's checks and the certificate both take them */
	if (r->extensions) {
		int crit = -1;

		r->sans = X509V3_get_d2i(r->extensions, NID_subject_alt_name, &crit, NULL);
		ERR_clear_error();
		if (!r->sans && crit != -1) {
			/* -2: asked for twice; otherwise there, but not GeneralNames */
			ca_error("the request's subjectAltName extension is %s",
				 crit == -2 ? "there twice" : "malformed");
			goto fail;
		}
	}
	r->subject = asn->info->subject;
	r->key_algorithm = asn->info->spki->algorithm;
	r->key_bits = asn->info->spki->key;
	if (!(r->key = decode_key(d, asn->info->spki))) {
		ca_error("the request's public key is not one OpenSSL can read");
		goto fail;
	}
	return r;
fail:
	ca_request_free(r);
	return NULL;
}

struct ca_request *ca_request_parse(const unsigned char *der, size_t len, struct ca_key_decoder *d)
{
	unsigned char *copy = OPENSSL_memdup(der, len ? len : 1);

	if (!copy) {
		ca_error("out of memory");
		return NULL;
	}
	return parse(copy, len, d);
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
	int ok = ASN1_item_verify(ASN1_ITEM_rptr(CA_REQ_INFO), r->asn->signature_algorithm, r->asn->signature,
				  r->asn->info, r->key);

	ERR_clear_error();
	return ok == 1 ? 0 : ca_error("the request's signature does not verify with its public key");
}
