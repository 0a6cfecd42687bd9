/*
 * crlder.c writes CRL entries as DER by hand; each must be byte for byte
 * what OpenSSL encodes for the same X509_REVOKED: serials of odd length,
 * with leading zeros, with the top bit set (a zero byte keeps them
 * positive), one byte long; UTCTime through 2049 and GeneralizedTime
 * after; every reason, and none for unspecified. And a CRL assembled from
 * such entries parses and verifies in OpenSSL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"

/* OpenSSL's DER for the entry (serial hex, when, reason; reason <= 0: no extension). */
static int openssl_entry(const char *serial, time_t when, int reason, unsigned char **der)
{
	X509_REVOKED *r = X509_REVOKED_new();
	BIGNUM *bn = NULL;
	ASN1_INTEGER *sn;
	ASN1_TIME *t = ASN1_TIME_set(NULL, when);
	int len;

	assert_true(BN_hex2bn(&bn, serial) > 0);
	sn = BN_to_ASN1_INTEGER(bn, NULL);
	assert_int_equal(X509_REVOKED_set_serialNumber(r, sn), 1);
	assert_int_equal(X509_REVOKED_set_revocationDate(r, t), 1);
	if (reason > 0) {
		ASN1_ENUMERATED *e = ASN1_ENUMERATED_new();

		assert_int_equal(ASN1_ENUMERATED_set(e, reason), 1);
		assert_int_equal(X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, e, 0, 0), 1);
		ASN1_ENUMERATED_free(e);
	}
	*der = NULL;
	len = i2d_X509_REVOKED(r, der);
	assert_true(len > 0);
	X509_REVOKED_free(r);
	ASN1_INTEGER_free(sn);
	ASN1_TIME_free(t);
	BN_free(bn);
	return len;
}

static void check(const char *serial, time_t when, int reason)
{
	struct ca_der d = {0};
	unsigned char *want;
	int len = openssl_entry(serial, when, reason, &want);

	assert_int_equal(ca_der_revoked_entry(&d, serial, when, reason), 0);
	if (d.len != (size_t)len || memcmp(d.p, want, d.len))
		fail_msg("serial %s, time %lld, reason %d: DER differs from OpenSSL's", serial, (long long)when,
			 reason);
	OPENSSL_free(want);
	ca_der_free(&d);
}

static void test_serials(void **state)
{
	static const char *const serials[] = {"1",
					      "7F",
					      "80",
					      "FF",
					      "100",
					      "0",
					      "00",
					      "0001",
					      "00FF",
					      "ABC",
					      "7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
					      "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
					      "67380D4402F51E9C3470DC0F976C92E1",
					      "0000000000000000000000000000000A"};

	(void)state;
	for (size_t i = 0; i < sizeof serials / sizeof serials[0]; i++)
		check(serials[i], 1790000000, 1);
}

static void test_times_and_reasons(void **state)
{
	(void)state;
	check("1234", 0, 0);	      /* 1970: UTCTime */
	check("1234", 2524607999, 2); /* 2049-12-31T23:59:59Z: still UTCTime */
	check("1234", 2524608000, 3); /* 2050: GeneralizedTime */
	for (int reason = 0; reason <= 10; reason++)
		if (reason != 7)
			check("ABCDEF", 1790000000, reason);
}

static void test_bad_serials(void **state)
{
	struct ca_der d = {0};

	(void)state;
	assert_int_equal(ca_der_revoked_entry(&d, "", 0, 0), -1);
	assert_int_equal(ca_der_revoked_entry(&d, "12G4", 0, 0), -1);
	assert_int_equal(ca_der_revoked_entry(&d, "X", 0, 0), -1);
	assert_int_equal(d.len, 0);
	ca_der_free(&d);
}

/* A whole CRL from hand-made entries: OpenSSL parses it, finds every entry, and verifies it. */
static void test_assembled_crl(void **state)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509_CRL *head = X509_CRL_new(), *parsed;
	X509_NAME *name = X509_NAME_new();
	ASN1_TIME *now = ASN1_TIME_set(NULL, time(NULL));
	struct ca_der entries = {0}, out = {0};
	const unsigned char *p;
	char serial[16];

	(void)state;
	assert_non_null(key);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)"unit CA", -1, -1, 0);
	assert_int_equal(X509_CRL_set_version(head, 1), 1);
	assert_int_equal(X509_CRL_set_issuer_name(head, name), 1);
	assert_int_equal(X509_CRL_set1_lastUpdate(head, now), 1);
	assert_int_equal(X509_CRL_set1_nextUpdate(head, now), 1);
	assert_true(X509_CRL_sign(head, key, EVP_sha256()) > 0);
	for (int i = 1; i <= 1000; i++) {
		snprintf(serial, sizeof serial, "%X", i * 7919);
		assert_int_equal(ca_der_revoked_entry(&entries, serial, 1790000000 + i, i % 6), 0);
	}
	assert_int_equal(ca_crl_assemble(head, &entries, key, EVP_sha256(), &out), 0);
	p = out.p;
	parsed = d2i_X509_CRL(NULL, &p, (long)out.len);
	assert_non_null(parsed);
	assert_ptr_equal(p, out.p + out.len);
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(parsed)), 1000);
	assert_int_equal(X509_CRL_verify(parsed, key), 1);
	X509_CRL_free(parsed);
	X509_CRL_free(head);
	X509_NAME_free(name);
	ASN1_TIME_free(now);
	EVP_PKEY_free(key);
	ca_der_free(&entries);
	ca_der_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serials),
		cmocka_unit_test(test_times_and_reasons),
		cmocka_unit_test(test_bad_serials),
		cmocka_unit_test(test_assembled_crl),
	};

	return cmocka_run_group_tests_name("ca_crlder", tests, NULL, NULL);
}
