/*
 * names.c checks the names a certificate will carry. Here each rule is
 * met by a name it must take and a name it must refuse, with the message
 * saying which rule; then whole requests (made by OpenSSL) through
 * ca_template_check: the subject's attributes, the caps on SANs and name
 * bytes, and wildcards only where the template allows them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"

static int dns(const char *name, bool wildcard)
{
	return ca_dns_name_check((const unsigned char *)name, strlen(name), wildcard);
}

static void expect_error(const char *what, const char *want)
{
	if (!strstr(ca_last_error(), want))
		fail_msg("%s: refused with \"%s\"; expected it to say \"%s\"", what, ca_last_error(), want);
}

static void refused_dns(const char *name, bool wildcard, const char *want)
{
	if (dns(name, wildcard) == 0)
		fail_msg("DNS name \"%s\" accepted", name);
	expect_error(name, want);
}

static void test_dns_names(void **state)
{
	char label64[80], long_name[300];

	(void)state;
	assert_int_equal(dns("www.example.test", false), 0);
	assert_int_equal(dns("a-b.c0.example", false), 0);
	assert_int_equal(dns("intranet", false), 0);
	assert_int_equal(dns("xn--bcher-kva.example", false), 0); /* bücher */
	assert_int_equal(dns("XN--BCHER-KVA.example", false), 0); /* case does not matter */
	assert_int_equal(dns("*.example.test", true), 0);
	memset(label64, 'a', 63);
	label64[63] = '\0';
	assert_int_equal(dns(label64, false), 0);

	refused_dns("", false, "empty");
	refused_dns("*.example.test", false, "wildcard = false");
	refused_dns("*.*", true, "not the leftmost");
	refused_dns("*.*.example.test", true, "not the leftmost");
	refused_dns("www.*.example.test", true, "not the leftmost");
	refused_dns("f*o.example.test", true, "\\x2a");
	refused_dns("*.test", true, "fewer than two labels");
	refused_dns("a..example", false, "empty label");
	refused_dns(".example", false, "empty label");
	refused_dns("example.test.", false, "trailing dot");
	refused_dns("under_score.test", false, "\\x5f");
	refused_dns("sp ace.test", false, "\\x20");
	refused_dns("b\u00fccher.example", false, "\\xc3");
	refused_dns("-lead.test", false, "starts or ends with '-'");
	refused_dns("trail-.test", false, "starts or ends with '-'");
	refused_dns("ab--cd.test", false, "positions 3 and 4");
	refused_dns("xn--.test", false, "'-'");
	refused_dns("xn--99999999999.test", false, "not a valid A-label");
	refused_dns("192.0.2.1", false, "iPAddress");
	label64[63] = 'a';
	label64[64] = '\0';
	refused_dns(label64, false, "63");
	memset(long_name, 0, sizeof long_name);
	for (int i = 0; i < 64; i++)
		strcat(long_name, "abc.");
	strcat(long_name, "test");
	refused_dns(long_name, false, "253");

	/* a NUL inside: "good.test\0.evil.test" */
	assert_int_equal(ca_dns_name_check((const unsigned char *)"good.test\0.evil.test", 20, false), -1);
	expect_error("embedded NUL", "NUL");
}

static int email(const char *name)
{
	return ca_email_check((const unsigned char *)name, strlen(name));
}

static void refused_email(const char *name, const char *want)
{
	if (email(name) == 0)
		fail_msg("email address \"%s\" accepted", name);
	expect_error(name, want);
}

static void test_email_ip_uri(void **state)
{
	char local[80];

	(void)state;
	assert_int_equal(email("alice@example.test"), 0);
	assert_int_equal(email("a.b+tag@mail.example.test"), 0);
	refused_email("", "empty");
	refused_email("alice", "one '@'");
	refused_email("a@b@example.test", "one '@'");
	refused_email("@example.test", "local part of 0");
	refused_email("alice@", "empty");
	refused_email("alice@*.example.test", "wildcard");
	refused_email("al ice@example.test", "\\x20");
	refused_email(".alice@example.test", "double dot");
	refused_email("a..b@example.test", "double dot");
	refused_email("alice@exa_mple.test", "\\x5f");
	memset(local, 'a', 65);
	strcpy(local + 65, "@example.test");
	refused_email(local, "65");
	assert_int_equal(ca_email_check((const unsigned char *)"a@b.test\0x", 10), -1);
	expect_error("embedded NUL", "NUL");

	assert_int_equal(ca_ip_check((const unsigned char *)"\x7f\0\0\1", 4), 0);
	assert_int_equal(ca_ip_check((const unsigned char *)"0123456789abcdef", 16), 0);
	assert_int_equal(ca_ip_check((const unsigned char *)"\x7f\0\0\1\xff\xff\xff\0", 8), -1);
	expect_error("8-byte address", "4 (IPv4) or 16");
	assert_int_equal(ca_ip_check((const unsigned char *)"", 0), -1);

#define URI(s) ca_uri_check((const unsigned char *)(s), strlen(s))
	assert_int_equal(URI("https://www.example.test/path?q=1#f"), 0);
	assert_int_equal(URI("https://192.0.2.1:8443/"), 0);
	assert_int_equal(URI("https://[2001:db8::1]/"), 0);
	assert_int_equal(URI("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"), 0);
	assert_int_equal(URI("/relative/path"), -1);
	expect_error("relative", "no scheme");
	assert_int_equal(URI("https://user@www.example.test/"), -1);
	expect_error("userinfo", "user information");
	assert_int_equal(URI("https://bad_host.test/"), -1);
	expect_error("bad host", "host");
	assert_int_equal(URI("https://www.example.test:80x/"), -1);
	expect_error("bad port", "port");
	assert_int_equal(URI("https://www.example.test/a b"), -1);
	expect_error("space", "\\x20");
	assert_int_equal(ca_uri_check((const unsigned char *)"https://a.test/\0", 16), -1);
	expect_error("NUL", "NUL");
#undef URI
}

/* ---- whole requests through the template ---- */

static EVP_PKEY *key;

static int make_key(void **state)
{
	(void)state;
	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	return key ? 0 : -1;
}

static int free_key(void **state)
{
	(void)state;
	EVP_PKEY_free(key);
	return 0;
}

/* A request parsed by request.c: subject entries (NULL-terminated type/value pairs, value typed), SANs (may be NULL).
 */
static struct ca_request *request(X509_NAME *subject, GENERAL_NAMES *sans)
{
	X509_REQ *r = X509_REQ_new();
	struct ca_key_decoder *d = ca_key_decoder_new();
	struct ca_request *parsed;
	unsigned char *der = NULL;
	int len;

	assert_int_equal(X509_REQ_set_subject_name(r, subject), 1);
	assert_int_equal(X509_REQ_set_pubkey(r, key), 1);
	if (sans) {
		STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();

		assert_int_equal(X509V3_add1_i2d(&exts, NID_subject_alt_name, sans, 0, 0), 1);
		assert_int_equal(X509_REQ_add_extensions(r, exts), 1);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	}
	assert_true(X509_REQ_sign(r, key, EVP_sha256()) > 0);
	assert_true((len = i2d_X509_REQ(r, &der)) > 0);
	parsed = ca_request_parse(der, (size_t)len, d);
	OPENSSL_free(der);
	X509_REQ_free(r);
	ca_key_decoder_free(d);
	return parsed;
}

static X509_NAME *name_of(int nid, int type, const char *value, size_t len);

/*
 * A request whose CN is the UTF8String bytes given, which OpenSSL will not
 * encode itself (not UTF-8): one made with a placeholder, then patched
 * (its signature no longer verifies; the template's checks do not look).
 */
static void refused_utf8_cn(const struct ca_template *t, const char *bytes, size_t len, const char *want)
{
	char placeholder[16];
	X509_REQ *r = X509_REQ_new();
	X509_NAME *n;
	struct ca_key_decoder *d = ca_key_decoder_new();
	struct ca_request *parsed;
	unsigned char *der = NULL, *p;
	int der_len;

	memset(placeholder, 'Z', len);
	n = name_of(NID_commonName, V_ASN1_UTF8STRING, placeholder, len);
	assert_int_equal(X509_REQ_set_subject_name(r, n), 1);
	assert_int_equal(X509_REQ_set_pubkey(r, key), 1);
	assert_true(X509_REQ_sign(r, key, EVP_sha256()) > 0);
	assert_true((der_len = i2d_X509_REQ(r, &der)) > 0);
	p = memmem(der, (size_t)der_len, placeholder, len);
	assert_non_null(p);
	assert_int_equal(p[-2], V_ASN1_UTF8STRING);
	memcpy(p, bytes, len);
	/* OpenSSL's name decoder (canonical form: UTF-8) may refuse it first */
	parsed = ca_request_parse(der, (size_t)der_len, d);
	if (!parsed)
		expect_error("CN", "not a certificate request");
	else if (ca_template_check(t, parsed) == 0)
		fail_msg("a CN that is not UTF-8 was accepted");
	else
		expect_error("CN", want);
	ca_request_free(parsed);
	OPENSSL_free(der);
	X509_REQ_free(r);
	X509_NAME_free(n);
	ca_key_decoder_free(d);
}

static X509_NAME *name_of(int nid, int type, const char *value, size_t len)
{
	X509_NAME *n = X509_NAME_new();
	ASN1_STRING *s = ASN1_STRING_type_new(type);
	X509_NAME_ENTRY *e;

	assert_int_equal(ASN1_STRING_set(s, value, (int)len), 1);
	e = X509_NAME_ENTRY_create_by_NID(NULL, nid, type, ASN1_STRING_get0_data(s), (int)len);
	assert_non_null(e);
	assert_int_equal(X509_NAME_add_entry(n, e, -1, 0), 1);
	X509_NAME_ENTRY_free(e);
	ASN1_STRING_free(s);
	return n;
}

static GENERAL_NAMES *dns_sans(int n, const char *fmt)
{
	GENERAL_NAMES *g = GENERAL_NAMES_new();

	for (int i = 0; i < n; i++) {
		char name[300];
		GENERAL_NAME *gn = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		snprintf(name, sizeof name, fmt, i);
		ASN1_STRING_set(s, name, -1);
		GENERAL_NAME_set0_value(gn, GEN_DNS, s);
		sk_GENERAL_NAME_push(g, gn);
	}
	return g;
}

static const struct ca_template *web(struct ca_conf *c, bool wildcard)
{
	struct ca_template *t;

	ca_conf_defaults(c, "/nonexistent");
	t = (struct ca_template *)ca_template_find(c, "WebServer");
	t->wildcard = wildcard;
	return t;
}

/* the request from subject and sans is refused by template t, saying want */
static void refused_request(const struct ca_template *t, X509_NAME *subject, GENERAL_NAMES *sans, const char *want)
{
	struct ca_request *r = request(subject, sans);

	assert_non_null(r);
	if (ca_template_check(t, r) == 0)
		fail_msg("a request that should be refused (\"%s\") was accepted", want);
	expect_error("request", want);
	ca_request_free(r);
	X509_NAME_free(subject);
	GENERAL_NAMES_free(sans);
}

static void accepted_request(const struct ca_template *t, X509_NAME *subject, GENERAL_NAMES *sans)
{
	struct ca_request *r = request(subject, sans);

	assert_non_null(r);
	if (ca_template_check(t, r) != 0)
		fail_msg("refused: %s", ca_last_error());
	ca_request_free(r);
	X509_NAME_free(subject);
	GENERAL_NAMES_free(sans);
}

static void test_requests(void **state)
{
	static struct ca_conf c;
	const struct ca_template *t = web(&c, false);
	char cn[100];

	(void)state;
	memset(cn, 'c', sizeof cn);
	accepted_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, cn, 64), dns_sans(3, "host%d.example.test"));
	accepted_request(t, name_of(NID_countryName, V_ASN1_PRINTABLESTRING, "DE", 2), dns_sans(1, "h%d.test"));
	accepted_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, "B\u00fccher", 7), NULL);

	/* the subject: length caps, NUL, string types, UTF-8 */
	refused_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, cn, 65), NULL, "at most 64");
	refused_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, "a\0b.test", 8), NULL, "NUL");
	refused_request(t, name_of(NID_commonName, V_ASN1_T61STRING, "t61", 3), NULL, "UTF8String");
	refused_request(t, name_of(NID_commonName, V_ASN1_BMPSTRING, "\0a\0b", 4), NULL, "UTF8String");
	refused_utf8_cn(t, "\xc3(", 2, "not valid UTF-8");
	refused_utf8_cn(t, "\xed\xa0\x80", 3, "not valid UTF-8"); /* a surrogate */
	refused_utf8_cn(t, "\xc0\xaf", 2, "not valid UTF-8");	  /* overlong */
	refused_utf8_cn(t, "ab\xe2\x82", 4, "not valid UTF-8");	  /* cut short */
	refused_request(t, name_of(NID_commonName, V_ASN1_PRINTABLESTRING, "a*b", 3), NULL, "PrintableString");
	refused_request(t, name_of(NID_countryName, V_ASN1_PRINTABLESTRING, "DEU", 3), dns_sans(1, "h%d.test"),
			"at most 2");
	refused_request(t, name_of(NID_countryName, V_ASN1_UTF8STRING, "DE", 2), dns_sans(1, "h%d.test"),
			"PrintableString only");
	refused_request(t, name_of(NID_organizationName, V_ASN1_UTF8STRING, "", 0), dns_sans(1, "h%d.test"), "empty");

	/* SANs: each named in the refusal, with its number */
	refused_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, "x", 1), dns_sans(2, "a%d..test"),
			"subject alternative name 1, DNS name \"a0..test\": has an empty label");
	refused_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, "x", 1), dns_sans(1, "*.example%d.test"),
			"wildcard = false");
	refused_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, "*.example.test", 14), NULL,
			"subject CN \"*.example.test\" is a wildcard");
	/* caps: the number of SANs, the bytes of names */
	refused_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, "x", 1), dns_sans(CA_SANS_MAX + 1, "h%d.test"),
			"at most 100");
	refused_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, "x", 1),
			dns_sans(100, "%03d.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
				      "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb."
				      "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc.test"),
			"bytes in all");
	accepted_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, "x", 1), dns_sans(CA_SANS_MAX, "h%d.test"));

	/* a template that allows wildcards: one leading label, and only that */
	t = web(&c, true);
	accepted_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, "*.example.test", 14),
			 dns_sans(1, "*.example%d.test"));
	refused_request(t, name_of(NID_commonName, V_ASN1_UTF8STRING, "x", 1), dns_sans(1, "*.*.ex%d.test"),
			"not the leftmost");
}

/* A template file: the keys set, and each bad line named. */
static void test_template_parse(void **state)
{
	static struct ca_conf c;
	struct ca_template *t;
	static const char good[] = "# comment\n; another\n\nvalidity_days = 30\r\nwildcard = true\nsan=dns,ip\n";
	/* read as ca.conf is (inih): an indented line continues the value above it */
	static const char indented[] = "wildcard = true\n  san = dns\n";

	(void)state;
	ca_conf_defaults(&c, "/nonexistent");
	t = ca_template_add(&c, "T");
	assert_non_null(t);
	assert_int_equal(ca_template_parse(t, "t.tmpl", good, sizeof good - 1), 0);
	assert_int_equal(t->validity_days, 30);
	assert_true(t->wildcard);
	assert_string_equal(t->san, "dns,ip");
	assert_int_equal(ca_template_parse(t, "t.tmpl", "validity_days = 1\nwildcard = maybe\n", 35), -1);
	expect_error("bad value", "t.tmpl: line 2: wildcard");
	assert_int_equal(ca_template_parse(t, "t.tmpl", "novalue\n", 8), -1);
	expect_error("no =", "line 1: not KEY = VALUE");
	assert_int_equal(ca_template_parse(t, "t.tmpl", "san = dns\0ip\n", 13), -1);
	expect_error("NUL", "NUL");
	assert_int_equal(ca_template_parse(t, "t.tmpl", indented, sizeof indented - 1), -1);
	expect_error("continued", "t.tmpl: line 2: wildcard");
	/* the [template NAME] header of ca.conf may stay; another section may not */
	assert_int_equal(ca_template_parse(t, "t.tmpl", "[template T]\nvalidity_days = 31\n", 32), 0);
	assert_int_equal(t->validity_days, 31);
	assert_int_equal(ca_template_parse(t, "t.tmpl", "[ca]\nvalidity_days = 31\n", 24), -1);
	expect_error("section", "t.tmpl: line 2: [ca]");
	{
		char long_line[400];

		memset(long_line, 'a', sizeof long_line);
		memcpy(long_line, "# ok\nsan = ", 11);
		assert_int_equal(ca_template_parse(t, "t.tmpl", long_line, sizeof long_line), -1);
		expect_error("long", "t.tmpl: line 2: longer than 199 bytes");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dns_names),
		cmocka_unit_test(test_email_ip_uri),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_template_parse),
	};

	return cmocka_run_group_tests(tests, make_key, free_key);
}
