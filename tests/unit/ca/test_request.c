/*
 * request.c parses PKCS#10 requests itself (OpenSSL's ASN.1 templates,
 * the key left as bytes) and decodes their keys with one decoder used
 * over and over. Here every request OpenSSL makes must come out as
 * OpenSSL's d2i_X509_REQ reads it: the same subject, key, extensions and
 * bytes, a signature that verifies, for RSA, EC and Ed25519 keys mixed
 * through one decoder; PEM (both labels) and DER files. And each kind of
 * bad request is refused with a message that says what is wrong.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"

static EVP_PKEY *keys[4]; /* RSA-2048, EC P-256, EC P-384, Ed25519 */
static char dir[] = "/tmp/test_request.XXXXXX";

static int make_keys(void **state)
{
	(void)state;
	keys[0] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	keys[1] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	keys[2] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	keys[3] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	return keys[0] && keys[1] && keys[2] && keys[3] && mkdtemp(dir) ? 0 : -1;
}

static int free_keys(void **state)
{
	char cmd[64];

	(void)state;
	for (int i = 0; i < 4; i++)
		EVP_PKEY_free(keys[i]);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A request for CN=cn with key k, asking for sans (NULL: no extensions), signed. */
static X509_REQ *make_request(EVP_PKEY *k, const char *cn, const char *sans)
{
	X509_REQ *r = X509_REQ_new();
	X509_NAME *n = X509_REQ_get_subject_name(r);

	assert_int_equal(X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"Example", -1, -1, 0),
			 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0), 1);
	assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
	if (sans) {
		STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, sans);

		assert_non_null(e);
		sk_X509_EXTENSION_push(exts, e);
		assert_int_equal(X509_REQ_add_extensions(r, exts), 1);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	}
	assert_true(X509_REQ_sign(r, k, EVP_PKEY_is_a(k, "ED25519") ? NULL : EVP_sha256()) > 0);
	return r;
}

static unsigned char *der_of(X509_REQ *r, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_X509_REQ(r, &der);

	assert_true(n > 0);
	*len = (size_t)n;
	return der;
}

/* parsed is what OpenSSL reads in the same bytes */
static void expect_same(const struct ca_request *parsed, X509_REQ *want, const unsigned char *der, size_t len)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(want);

	assert_non_null(parsed);
	assert_int_equal(X509_NAME_cmp(parsed->subject, X509_REQ_get_subject_name(want)), 0);
	assert_int_equal(EVP_PKEY_eq(parsed->key, X509_REQ_get0_pubkey(want)), 1);
	/* a request that asks for nothing: none here, an empty list from OpenSSL */
	assert_int_equal(parsed->extensions ? sk_X509_EXTENSION_num(parsed->extensions) : 0,
			 sk_X509_EXTENSION_num(exts));
	for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
		X509_EXTENSION *a = sk_X509_EXTENSION_value(parsed->extensions, i),
			       *b = sk_X509_EXTENSION_value(exts, i);

		assert_int_equal(OBJ_cmp(X509_EXTENSION_get_object(a), X509_EXTENSION_get_object(b)), 0);
		assert_int_equal(ASN1_STRING_cmp(X509_EXTENSION_get_data(a), X509_EXTENSION_get_data(b)), 0);
	}
	assert_int_equal(parsed->der_len, len);
	assert_memory_equal(parsed->der, der, len);
	assert_int_equal(ca_request_verify(parsed), 0);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}

/* Every key kind, with and without extensions, twice round, through one decoder. */
static void test_parse_matches_openssl(void **state)
{
	struct ca_key_decoder *d = ca_key_decoder_new();

	(void)state;
	assert_non_null(d);
	for (int round = 0; round < 2; round++) {
		for (int k = 0; k < 4; k++) {
			X509_REQ *r =
				make_request(keys[k], "host.example", k % 2 ? "DNS:host.example,IP:192.0.2.1" : NULL);
			size_t len;
			unsigned char *der = der_of(r, &len);
			struct ca_request *parsed = ca_request_parse(der, len, d);

			expect_same(parsed, r, der, len);
			ca_request_free(parsed);
			OPENSSL_free(der);
			X509_REQ_free(r);
		}
	}
	ca_key_decoder_free(d);
}

static const char *write_file(const char *name, const void *bytes, size_t len)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "wb"));
	assert_int_equal(fwrite(bytes, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* PEM as "CERTIFICATE REQUEST" and as older tools' "NEW CERTIFICATE REQUEST", and DER */
static void test_read_files(void **state)
{
	struct ca_key_decoder *d = ca_key_decoder_new();
	X509_REQ *r = make_request(keys[1], "file.example", "DNS:file.example");
	size_t len;
	unsigned char *der = der_of(r, &len);
	BIO *b = BIO_new(BIO_s_mem());
	char *pem;
	long pem_len;
	struct ca_request *parsed;

	(void)state;
	assert_int_equal(PEM_write_bio_X509_REQ(b, r), 1);
	pem_len = BIO_get_mem_data(b, &pem);
	parsed = ca_request_read(write_file("new.pem", pem, (size_t)pem_len), d);
	expect_same(parsed, r, der, len);
	ca_request_free(parsed);
	BIO_free(b);

	b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_X509_REQ_NEW(b, r), 1);
	pem_len = BIO_get_mem_data(b, &pem);
	assert_non_null(strstr(pem, "NEW CERTIFICATE REQUEST"));
	parsed = ca_request_read(write_file("old.pem", pem, (size_t)pem_len), d);
	expect_same(parsed, r, der, len);
	ca_request_free(parsed);
	BIO_free(b);

	parsed = ca_request_read(write_file("req.der", der, len), d);
	expect_same(parsed, r, der, len);
	ca_request_free(parsed);

	OPENSSL_free(der);
	X509_REQ_free(r);
	ca_key_decoder_free(d);
}

/* der (len bytes) is refused, and the error says want */
static void expect_refused(struct ca_key_decoder *d, const unsigned char *der, size_t len, const char *want)
{
	struct ca_request *parsed = ca_request_parse(der, len, d);

	if (parsed) {
		ca_request_free(parsed);
		fail_msg("a request that should be refused (\"%s\") was accepted", want);
	}
	if (!strstr(ca_last_error(), want))
		fail_msg("refused with \"%s\"; expected it to say \"%s\"", ca_last_error(), want);
}

/* The offset of the first occurrence of pattern in der. */
static size_t find(const unsigned char *der, size_t len, const void *pattern, size_t plen)
{
	for (size_t i = 0; i + plen <= len; i++)
		if (!memcmp(der + i, pattern, plen))
			return i;
	fail_msg("pattern not found");
	return 0;
}

static void test_bad_requests(void **state)
{
	struct ca_key_decoder *d = ca_key_decoder_new();
	X509_REQ *r = make_request(keys[1], "bad.example", "DNS:bad.example");
	size_t len;
	unsigned char *der = der_of(r, &len), *copy = malloc(len + 4);
	struct ca_request *parsed;
	static const unsigned char version0[] = {0x02, 0x01, 0x00};
	static const unsigned char p256_point[] = {0x03, 0x42, 0x00, 0x04};

	(void)state;
	/* a flipped bit in the signature: parsed, but its signature does not verify */
	memcpy(copy, der, len);
	copy[len - 3] ^= 0x01;
	assert_non_null(parsed = ca_request_parse(copy, len, d));
	assert_int_equal(ca_request_verify(parsed), -1);
	assert_non_null(strstr(ca_last_error(), "signature does not verify"));
	ca_request_free(parsed);

	/* bytes after the request */
	memcpy(copy, der, len);
	memcpy(copy + len, "junk", 4);
	expect_refused(d, copy, len + 4, "4 bytes follow");

	/* cut short */
	expect_refused(d, der, len - 1, "not a certificate request");

	/* a version PKCS#10 does not have */
	memcpy(copy, der, len);
	copy[find(copy, len, version0, sizeof version0) + 2] = 0x01;
	expect_refused(d, copy, len, "version is 1");

	/* an EC point that is not on the curve */
	memcpy(copy, der, len);
	copy[find(copy, len, p256_point, sizeof p256_point) + 10] ^= 0x01;
	expect_refused(d, copy, len, "public key");

	/* extensions asked for twice: by PKCS#9's extensionRequest and by Microsoft's */
	{
		X509_REQ *twice = make_request(keys[1], "twice.example", "DNS:twice.example");
		STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(twice);
		unsigned char *der2;
		size_t len2;

		assert_int_equal(X509_REQ_add_extensions_nid(twice, exts, NID_ms_ext_req), 1);
		assert_true(X509_REQ_sign(twice, keys[1], EVP_sha256()) > 0);
		der2 = der_of(twice, &len2);
		expect_refused(d, der2, len2, "extensions twice");
		OPENSSL_free(der2);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
		X509_REQ_free(twice);
	}

	/* files: missing, empty, a certificate, too large */
	assert_null(ca_request_read("/nonexistent/x.csr", d));
	assert_non_null(strstr(ca_last_error(), "/nonexistent/x.csr: No such file"));
	assert_null(ca_request_read(write_file("empty.csr", "", 0), d));
	assert_non_null(strstr(ca_last_error(), "empty.csr"));
	assert_non_null(strstr(ca_last_error(), "not a certificate request"));
	{
		static const char cert[] = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
		char *big = calloc(1, (1 << 20) + 10);

		assert_null(ca_request_read(write_file("cert.pem", cert, sizeof cert - 1), d));
		assert_non_null(strstr(ca_last_error(), "cert.pem is not a certificate request"));
		assert_null(ca_request_read(write_file("big.csr", big, (1 << 20) + 10), d));
		assert_non_null(strstr(ca_last_error(), "larger than"));
		free(big);
	}

	free(copy);
	OPENSSL_free(der);
	X509_REQ_free(r);
	ca_key_decoder_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_matches_openssl),
		cmocka_unit_test(test_read_files),
		cmocka_unit_test(test_bad_requests),
	};

	return cmocka_run_group_tests(tests, make_keys, free_keys);
}
