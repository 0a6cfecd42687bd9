/*
 * What keyward-ca's CMP reads itself, buffer to buffer: CRMF requests
 * (request.c's ca_request_from_crmf) as OpenSSL's CMP client makes them,
 * with their proof of possession, read back from their stored DER as an
 * approval does; and cmp_peek (cmp.c) on messages openssl cmp sent
 * (tests/fuzz/corpus/cmp): body, protection, reference, extraCerts; a PBM
 * asking for too many iterations and trailing bytes refused; and the error
 * message cmp.c makes itself (cmp_error_der), for every failure bit's size.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/x509v3.h>

#include "ca/cmp.h"

/* A CertReqMsg for CN=cn and DNS:san with key k, its proof of possession signed; DER in *der. */
static int make_crmf(EVP_PKEY *k, const char *cn, const char *san, unsigned char **der)
{
	OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
	X509_NAME *n = X509_NAME_new();
	GENERAL_NAME *g = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_DNS, san, 0);
	OSSL_CRMF_MSG *crm;
	int len;

	assert_non_null(ctx);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0), 1);
	assert_int_equal(EVP_PKEY_up_ref(k), 1);
	assert_int_equal(OSSL_CMP_CTX_set0_newPkey(ctx, 1, k), 1);
	assert_int_equal(OSSL_CMP_CTX_set1_subjectName(ctx, n), 1);
	assert_int_equal(OSSL_CMP_CTX_push1_subjectAltName(ctx, g), 1);
	assert_non_null(crm = OSSL_CMP_CTX_setup_CRM(ctx, 0, 0));
	assert_int_equal(OSSL_CRMF_MSG_create_popo(OSSL_CRMF_POPO_SIGNATURE, crm, k,
						   EVP_PKEY_is_a(k, "ED25519") ? NULL : EVP_sha256(), NULL, NULL),
			 1);
	*der = NULL;
	len = i2d_OSSL_CRMF_MSG(crm, der);
	assert_true(len > 0);
	OSSL_CRMF_MSG_free(crm);
	GENERAL_NAME_free(g);
	X509_NAME_free(n);
	OSSL_CMP_CTX_free(ctx);
	return len;
}

static void test_crmf_request(void **state)
{
	EVP_PKEY *keys[3] = {EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"),
			     EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048),
			     EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")};
	struct ca_key_decoder *d = ca_key_decoder_new();

	(void)state;
	assert_non_null(d);
	for (int i = 0; i < 3; i++) {
		unsigned char *der;
		int len = make_crmf(keys[i], "host.example", "host.example", &der);
		struct ca_request *r = ca_request_from_crmf(der, (size_t)len, d), *again;
		char cn[64];

		assert_non_null(r);
		assert_non_null(r->crmf);
		assert_true(X509_NAME_get_text_by_NID((X509_NAME *)r->subject, NID_commonName, cn, sizeof cn) > 0);
		assert_string_equal(cn, "host.example");
		assert_int_equal(sk_GENERAL_NAME_num(r->sans), 1);
		assert_int_equal(EVP_PKEY_eq(r->key, keys[i]), 1);
		assert_int_equal(ca_request_verify(r), 0);
		/* as stored for approval, and read back */
		assert_non_null(again = ca_request_parse(r->der, r->der_len, d));
		assert_non_null(again->crmf);
		assert_int_equal(ca_request_verify(again), 0);
		ca_request_free(again);
		ca_request_free(r);
		/* a signature altered: the proof of possession fails */
		der[len - 3] ^= 0x01;
		assert_non_null(r = ca_request_from_crmf(der, (size_t)len, d));
		assert_int_equal(ca_request_verify(r), -1);
		assert_non_null(strstr(ca_last_error(), "proof of possession"));
		ca_request_free(r);
		/* trailing bytes, truncation */
		assert_null(ca_request_from_crmf(der, (size_t)len - 10, d));
		OPENSSL_free(der);
		EVP_PKEY_free(keys[i]);
	}
	/* not a request at all: PKCS#10's reason when read as stored */
	assert_null(ca_request_parse((const unsigned char *)"\x30\x03\x02\x01\x00", 5, d));
	assert_non_null(strstr(ca_last_error(), "not a certificate request"));
	ca_key_decoder_free(d);
}

/* The corpus file name, whole (caller frees). */
static unsigned char *corpus(const char *name, size_t *len)
{
	char path[512];
	FILE *f;
	unsigned char *buf = malloc(65536);

	snprintf(path, sizeof path, "%s/%s", CMP_CORPUS, name);
	assert_non_null(f = fopen(path, "rb"));
	*len = fread(buf, 1, 65536, f);
	fclose(f);
	return buf;
}

static void test_peek(void **state)
{
	struct cmp_peek m;
	unsigned char *b, *p;
	size_t len;

	(void)state;
	b = corpus("ir-mac", &len);
	assert_int_equal(cmp_peek(b, len, &m), 0);
	assert_int_equal(m.body_type, CMP_BODY_IR);
	assert_int_equal(m.protection, CMP_PROT_MAC);
	assert_int_equal(m.sender_kid->length, 9);
	assert_memory_equal(m.sender_kid->data, "WebServer", 9);
	assert_int_equal(m.tid->length, 16);
	assert_true(m.time > 1700000000);
	cmp_peek_free(&m);
	/* trailing bytes */
	assert_int_equal(cmp_peek(b, len + 1, &m), -1);
	/* PBM asking for 20,000 iterations (500 in the file: INTEGER 01 f4) */
	assert_non_null(p = memmem(b, len, "\x02\x02\x01\xf4", 4));
	p[2] = 0x4e;
	p[3] = 0x20;
	assert_int_equal(cmp_peek(b, len, &m), -1);
	assert_non_null(strstr(ca_last_error(), "20000 iterations"));
	free(b);

	b = corpus("kur-sig", &len);
	assert_int_equal(cmp_peek(b, len, &m), 0);
	assert_int_equal(m.body_type, CMP_BODY_KUR);
	assert_int_equal(m.protection, CMP_PROT_SIGNATURE);
	assert_non_null(m.sender);
	assert_true(sk_X509_num(m.extra_certs) >= 1);
	cmp_peek_free(&m);
	free(b);

	b = corpus("pollreq", &len);
	assert_int_equal(cmp_peek(b, len, &m), 0);
	assert_int_equal(m.body_type, CMP_BODY_POLLREQ);
	cmp_peek_free(&m);
	free(b);

	assert_int_equal(cmp_peek((const unsigned char *)"\x30\x00", 2, &m), -1);
	assert_non_null(strstr(ca_last_error(), "not a CMP message"));
}

/* The error message for what is no CMP message: one OpenSSL reads, with the failure bit asked for, also the last. */
static void test_error_der(void **state)
{
	static const struct {
		int bit;
		const char *fail_info; /* BIT STRING: length, unused bits, the bytes up to the bit */
		size_t len;
	} cases[] = {
		{OSSL_CMP_PKIFAILUREINFO_badDataFormat, "\x03\x02\x02\x04", 4},
		{OSSL_CMP_PKIFAILUREINFO_systemFailure, "\x03\x05\x06\x00\x00\x00\x40", 7},
		{OSSL_CMP_PKIFAILUREINFO_MAX, "\x03\x05\x05\x00\x00\x00\x20", 7},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct ca_der d = {0};
		const unsigned char *p;
		OSSL_CMP_MSG *msg;

		assert_int_equal(cmp_error_der(cases[i].bit, "not a CMP message", &d), 0);
		p = d.p;
		assert_non_null(msg = d2i_OSSL_CMP_MSG(NULL, &p, (long)d.len));
		assert_ptr_equal(p, d.p + d.len);
		assert_int_equal(OSSL_CMP_MSG_get_bodytype(msg), CMP_BODY_ERROR);
		assert_non_null(memmem(d.p, d.len, cases[i].fail_info, cases[i].len));
		assert_non_null(memmem(d.p, d.len, "not a CMP message", 17));
		OSSL_CMP_MSG_free(msg);
		ca_der_free(&d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crmf_request),
		cmocka_unit_test(test_peek),
		cmocka_unit_test(test_error_der),
	};

	return cmocka_run_group_tests_name("ca_cmp", tests, NULL, NULL);
}
