/*
 * The PKCS#11 groundwork through libkeyward against a real keywardd
 * (development mode): certificate and data objects stored on the HSM,
 * CKA_ID, AES secret keys and key wrap (extractable keys only), and copies
 * that may only tighten a key's attributes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "harness.h"

static struct kwt_server server;
static kw_client *client;

static int setup(void **state)
{
	(void)state;
	client = kwt_start_dev_client(&server);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop_client(&server, client);
	return 0;
}

/* A self-signed certificate made here with OpenSSL, DER (OPENSSL_free). */
static unsigned char *make_cert(const char *cn, size_t *len)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	unsigned char *der = NULL;
	int l;

	assert_non_null(k);
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 42), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	n = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0), 1);
	assert_int_equal(X509_set_issuer_name(x, n), 1);
	assert_int_equal(X509_set_pubkey(x, k), 1);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	l = i2d_X509(x, &der);
	assert_true(l > 0);
	*len = (size_t)l;
	X509_free(x);
	EVP_PKEY_free(k);
	return der;
}

static const kw_object *find_in(const kw_object_list *l, const char *name, enum kw_class cls)
{
	for (size_t i = 0; i < kw_object_list_count(l); i++) {
		const kw_object *o = kw_object_list_get(l, i);

		if (strcmp(kw_object_name(o), name) == 0 && kw_object_class(o) == cls)
			return o;
	}
	return NULL;
}

static void test_certificate_and_data(void **state)
{
	kw_object *cert = NULL, *data = NULL, *got = NULL;
	kw_object_list *list = NULL;
	const kw_object *o;
	const unsigned char *v;
	unsigned char *der, id[4] = {0xca, 0xfe, 0x00, 0x01};
	size_t der_len, len = 0;

	(void)state;
	der = make_cert("myDemoCA", &der_len);
	kwt_ok(kw_create_object(client, KWT_OWNER, "myDemoCA", KW_CLASS_CERTIFICATE, der, der_len, id, sizeof id, NULL, 0,
				&cert));
	assert_int_equal(kw_object_class(cert), KW_CLASS_CERTIFICATE);
	assert_true(kw_object_modifiable(cert));
	assert_false(kw_object_sensitive(cert));
	v = kw_object_value(cert, &len);
	assert_int_equal(len, der_len);
	assert_memory_equal(v, der, der_len);
	v = kw_object_ckaid(cert, &len);
	assert_int_equal(len, sizeof id);
	assert_memory_equal(v, id, sizeof id);

	kwt_ok(kw_create_object(client, KWT_OWNER, "ca-settings", KW_CLASS_DATA, (const unsigned char *)"serial=1000", 11,
				NULL, 0, "keyward-ca", KW_GEN_NOT_MODIFIABLE, &data));
	assert_int_equal(kw_object_class(data), KW_CLASS_DATA);
	assert_string_equal(kw_object_application(data), "keyward-ca");
	assert_false(kw_object_modifiable(data));

	/* listed and read back with their values */
	kwt_ok(kw_list_objects(client, KWT_OWNER, NULL, &list));
	o = find_in(list, "myDemoCA", KW_CLASS_CERTIFICATE);
	assert_non_null(o);
	assert_int_equal(kw_object_id(o), kw_object_id(cert));
	v = kw_object_value(o, &len);
	assert_int_equal(len, der_len);
	assert_memory_equal(v, der, der_len);
	o = find_in(list, "ca-settings", KW_CLASS_DATA);
	assert_non_null(o);
	v = kw_object_value(o, &len);
	assert_int_equal(len, 11);
	assert_memory_equal(v, "serial=1000", 11);
	assert_string_equal(kw_object_application(o), "keyward-ca");
	kw_object_list_free(list);
	kwt_ok(kw_get_object(client, 0, KWT_OWNER, "myDemoCA", KW_CLASS_CERTIFICATE, &got));
	v = kw_object_value(got, &len);
	assert_int_equal(len, der_len);
	assert_memory_equal(v, der, der_len);
	kw_object_free(got);

	/* a second certificate of the same name; something that is not a certificate */
	assert_int_equal(kw_create_object(client, KWT_OWNER, "myDemoCA", KW_CLASS_CERTIFICATE, der, der_len, NULL, 0,
					  NULL, 0, &got),
			 KW_ERR_EXISTS);
	assert_non_null(strstr(kw_last_error(), "myDemoCA"));
	assert_int_equal(kw_create_object(client, KWT_OWNER, "broken", KW_CLASS_CERTIFICATE, der, der_len - 1, NULL, 0,
					  NULL, 0, &got),
			 KW_ERR_ATTRIBUTE_VALUE);
	assert_non_null(strstr(kw_last_error(), "not one DER-encoded X.509 certificate"));
	assert_int_equal(kw_get_object(client, 0, KWT_OWNER, "broken", KW_CLASS_ANY, &got), KW_ERR_NOT_FOUND);
	/* keys are generated, never created */
	assert_int_equal(kw_create_object(client, KWT_OWNER, "k", KW_CLASS_PRIVATE_KEY, der, der_len, NULL, 0, NULL, 0,
					  &got),
			 KW_ERR_ARGUMENTS);

	/* CKA_ID of a certificate changes while modifiable; the data object is not */
	kwt_ok(kw_set_ckaid(client, kw_object_id(cert), NULL, NULL, KW_CLASS_ANY, (const unsigned char *)"\x01", 1));
	kwt_ok(kw_get_object(client, kw_object_id(cert), NULL, NULL, KW_CLASS_ANY, &got));
	v = kw_object_ckaid(got, &len);
	assert_int_equal(len, 1);
	assert_int_equal(v[0], 1);
	kw_object_free(got);
	assert_int_equal(kw_set_ckaid(client, kw_object_id(data), NULL, NULL, KW_CLASS_ANY, id, 2),
			 KW_ERR_NOT_MODIFIABLE);
	kw_object_free(cert);
	kw_object_free(data);
	OPENSSL_free(der);
}

static void test_ckaid(void **state)
{
	kw_object *priv = NULL, *pub = NULL, *got = NULL;
	const unsigned char *spki, *v, *p;
	unsigned char want[SHA_DIGEST_LENGTH], *point = NULL;
	size_t spki_len = 0, len = 0;
	EVP_PKEY *k;
	int n;

	(void)state;
	/* the default: SHA-1 of the public key's BIT STRING contents (here the EC point) */
	kwt_ok(kw_generate_key(client, KWT_OWNER, "ckaid-default", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	spki = kw_object_public_key(pub, &spki_len);
	p = spki;
	k = d2i_PUBKEY(NULL, &p, (long)spki_len);
	assert_non_null(k);
	n = i2d_PublicKey(k, &point);
	assert_int_equal(n, 65);
	SHA1(point, (size_t)n, want);
	OPENSSL_free(point);
	EVP_PKEY_free(k);
	v = kw_object_ckaid(priv, &len);
	assert_int_equal(len, SHA_DIGEST_LENGTH);
	assert_memory_equal(v, want, len);
	v = kw_object_ckaid(pub, &len);
	assert_int_equal(len, SHA_DIGEST_LENGTH);
	assert_memory_equal(v, want, len);
	/* kw_object_value of a public key is its SPKI */
	v = kw_object_value(pub, &len);
	assert_int_equal(len, spki_len);
	assert_memory_equal(v, spki, len);
	assert_null(kw_object_value(priv, &len));

	/* set through the private half: both halves */
	kwt_ok(kw_set_ckaid(client, 0, KWT_OWNER, "ckaid-default", KW_CLASS_PRIVATE_KEY, (const unsigned char *)"new-id",
			    6));
	kwt_ok(kw_get_object(client, kw_object_id(pub), NULL, NULL, KW_CLASS_ANY, &got));
	v = kw_object_ckaid(got, &len);
	assert_int_equal(len, 6);
	assert_memory_equal(v, "new-id", 6);
	kw_object_free(got);
	assert_int_equal(kw_set_ckaid(client, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, want, KW_CKAID_MAX + 1),
			 KW_ERR_ATTRIBUTE_VALUE);
	kw_object_free(priv);
	kw_object_free(pub);

	/* given at generation */
	kwt_ok(kw_generate_key_ckaid(client, KWT_OWNER, "ckaid-given", KW_KEY_ED25519, 0, NULL, 0, 0,
				     (const unsigned char *)"\x42\x43", 2, &priv, &pub));
	v = kw_object_ckaid(pub, &len);
	assert_int_equal(len, 2);
	assert_memory_equal(v, "\x42\x43", 2);
	kw_object_free(priv);
	kw_object_free(pub);
}

/* The length of the PKCS#8 DER of any P-256 key as OpenSSL writes it (the HSM uses the same encoder). */
static size_t p256_pkcs8_len(void)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(k);
	int n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);

	assert_true(n > 0);
	PKCS8_PRIV_KEY_INFO_free(p8);
	EVP_PKEY_free(k);
	return (size_t)n;
}

static void test_wrap(void **state)
{
	kw_object *aes = NULL, *aes2 = NULL, *pub = NULL, *ex = NULL, *ne = NULL, *signer = NULL;
	struct kw_mechanism pad = {.mech = KW_MECH_AES_KEY_WRAP_PAD}, kw = {.mech = KW_MECH_AES_KEY_WRAP};
	unsigned char w1[4096], w2[4096];
	size_t l1 = sizeof w1, l2 = sizeof w2, p8;

	(void)state;
	/* AES-256, usage wrap by default; only wrap is allowed; only 128/192/256 bits */
	kwt_ok(kw_generate_key(client, KWT_OWNER, "kek", KW_KEY_AES, 256, NULL, 0, 0, &aes, &pub));
	assert_null(pub);
	assert_int_equal(kw_object_class(aes), KW_CLASS_SECRET_KEY);
	assert_int_equal(kw_object_key_type(aes), KW_KEY_AES);
	assert_int_equal(kw_object_bits(aes), 256);
	assert_int_equal(kw_object_usages(aes), KW_USAGE_WRAP);
	assert_true(kw_object_sensitive(aes));
	assert_false(kw_object_extractable(aes));
	assert_true(kw_object_never_extractable(aes));
	assert_int_equal(kw_object_pair_id(aes), 0);
	assert_null(kw_object_value(aes, &l1));
	assert_int_equal(kw_generate_key(client, KWT_OWNER, "kek-sign", KW_KEY_AES, 256, NULL, 0, KW_USAGE_SIGN, &aes2,
					 NULL),
			 KW_ERR_KEY_FUNCTION);
	assert_int_equal(kw_generate_key(client, KWT_OWNER, "kek-100", KW_KEY_AES, 100, NULL, 0, 0, &aes2, NULL),
			 KW_ERR_KEY_SIZE);
	assert_int_equal(kw_generate_key(client, KWT_OWNER, "kek", KW_KEY_AES, 128, NULL, 0, 0, &aes2, NULL),
			 KW_ERR_EXISTS);

	kwt_ok(kw_generate_key(client, KWT_OWNER, "exportable", KW_KEY_EC, 0, "P-256", KW_GEN_EXTRACTABLE, 0, &ex, &pub));
	kw_object_free(pub);
	kwt_ok(kw_generate_key(client, KWT_OWNER, "hsm-only", KW_KEY_EC, 0, "P-256", 0, 0, &ne, &pub));
	kw_object_free(pub);

	/* RFC 5649: the PKCS#8 DER padded to 8 bytes, plus 8; deterministic */
	p8 = p256_pkcs8_len();
	l1 = sizeof w1;
	kwt_ok(kw_wrap_key(client, kw_object_id(aes), kw_object_id(ex), &pad, w1, &l1));
	assert_int_equal(l1, (p8 + 7) / 8 * 8 + 8);
	kwt_ok(kw_wrap_key(client, kw_object_id(aes), kw_object_id(ex), &pad, w2, &l2));
	assert_int_equal(l2, l1);
	assert_memory_equal(w1, w2, l1);
	/* too small a buffer says how much is needed */
	l2 = 8;
	assert_int_equal(kw_wrap_key(client, kw_object_id(aes), kw_object_id(ex), &pad, w2, &l2), KW_ERR_DATA_LEN);
	assert_int_equal(l2, l1);
	/* RFC 3394 wraps secret keys only */
	l2 = sizeof w2;
	assert_int_equal(kw_wrap_key(client, kw_object_id(aes), kw_object_id(ex), &kw, w2, &l2), KW_ERR_MECHANISM);

	/* never: a key that is not extractable */
	l2 = sizeof w2;
	assert_int_equal(kw_wrap_key(client, kw_object_id(aes), kw_object_id(ne), &pad, w2, &l2), KW_ERR_UNEXTRACTABLE);
	assert_non_null(strstr(kw_last_error(), "hsm-only"));
	assert_non_null(strstr(kw_last_error(), "can never leave the HSM"));
	assert_int_equal(kw_wrap_key(client, kw_object_id(aes), kw_object_id(aes), &pad, w2, &l2), KW_ERR_UNEXTRACTABLE);
	/* an extractable key made not extractable is refused from then on */
	kwt_ok(kw_set_attributes(client, kw_object_id(ex), NULL, NULL, KW_CLASS_ANY, 0, -1, NULL));
	assert_int_equal(kw_wrap_key(client, kw_object_id(aes), kw_object_id(ex), &pad, w2, &l2), KW_ERR_UNEXTRACTABLE);

	/* a wrapping key without usage wrap */
	kwt_ok(kw_generate_key(client, KWT_OWNER, "signer", KW_KEY_EC, 0, "P-256", KW_GEN_EXTRACTABLE, 0, &signer, &pub));
	kw_object_free(pub);
	assert_int_equal(kw_wrap_key(client, kw_object_id(signer), kw_object_id(signer), &pad, w2, &l2),
			 KW_ERR_KEY_FUNCTION);

	/* an extractable AES-128 key, wrapped with both mechanisms: 16 + 8 bytes */
	kwt_ok(kw_generate_key(client, KWT_OWNER, "session", KW_KEY_AES, 128, NULL, KW_GEN_EXTRACTABLE, 0, &aes2, NULL));
	assert_true(kw_object_extractable(aes2));
	l1 = sizeof w1;
	kwt_ok(kw_wrap_key(client, kw_object_id(aes), kw_object_id(aes2), &kw, w1, &l1));
	assert_int_equal(l1, 24);
	l2 = sizeof w2;
	kwt_ok(kw_wrap_key(client, kw_object_id(aes), kw_object_id(aes2), &pad, w2, &l2));
	assert_int_equal(l2, 24);
	/* RFC 3394 and 5649 use different integrity values: different outputs */
	assert_memory_not_equal(w1, w2, 24);

	kw_object_free(aes);
	kw_object_free(aes2);
	kw_object_free(ex);
	kw_object_free(ne);
	kw_object_free(signer);
}

static void test_copy(void **state)
{
	kw_object *priv = NULL, *pub = NULL, *none = NULL;
	kw_object_list *copies = NULL, *again = NULL;
	const kw_object *cp, *cpub;
	const unsigned char *a, *b;
	unsigned char digest[32], sig[256];
	size_t la = 0, lb = 0, sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};

	(void)state;
	kwt_ok(kw_generate_key(client, KWT_OWNER, "orig", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	/* loosening refused */
	assert_int_equal(kw_copy_object(client, kw_object_id(priv), "orig-copy", 1, -1, &copies), KW_ERR_ATTRIBUTE_VALUE);
	assert_non_null(strstr(kw_last_error(), "not extractable"));
	assert_int_equal(kw_get_object(client, 0, KWT_OWNER, "orig-copy", KW_CLASS_ANY, &none), KW_ERR_NOT_FOUND);
	/* tightened: not modifiable */
	kwt_ok(kw_copy_object(client, kw_object_id(priv), "orig-copy", -1, 0, &copies));
	assert_int_equal(kw_object_list_count(copies), 2);
	cp = kw_object_list_get(copies, 0);
	cpub = kw_object_list_get(copies, 1);
	assert_int_equal(kw_object_class(cp), KW_CLASS_PRIVATE_KEY);
	assert_int_equal(kw_object_class(cpub), KW_CLASS_PUBLIC_KEY);
	assert_string_equal(kw_object_name(cp), "orig-copy");
	assert_string_equal(kw_object_owner(cp), KWT_OWNER);
	assert_true(kw_object_id(cp) != kw_object_id(priv));
	assert_int_equal(kw_object_pair_id(cp), kw_object_id(cpub));
	assert_false(kw_object_modifiable(cp));
	assert_false(kw_object_extractable(cp));
	assert_true(kw_object_never_extractable(cp));
	assert_true(kw_object_always_sensitive(cp));
	a = kw_object_public_key(pub, &la);
	b = kw_object_public_key(cpub, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	/* the copy signs; the signature verifies against the (same) public key */
	SHA256((const unsigned char *)"copy", 4, digest);
	kwt_ok(kw_sign(client, kw_object_id(cp), &m, digest, sizeof digest, sig, &sig_len));
	assert_true(kwt_ecdsa_verifies(b, lb, digest, sizeof digest, sig, sig_len));
	assert_true(kwt_ecdsa_verifies(a, la, digest, sizeof digest, sig, sig_len));
	/* a copy of the not-modifiable copy cannot be modifiable */
	assert_int_equal(kw_copy_object(client, kw_object_id(cp), "orig-copy2", -1, 1, &again), KW_ERR_ATTRIBUTE_VALUE);
	/* the name is taken */
	assert_int_equal(kw_copy_object(client, kw_object_id(pub), "orig-copy", -1, -1, &again), KW_ERR_EXISTS);
	kw_object_list_free(copies);
	kw_object_free(priv);
	kw_object_free(pub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_certificate_and_data),
		cmocka_unit_test(test_ckaid),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_copy),
	};
	return cmocka_run_group_tests_name("integration_objects", tests, setup, teardown);
}
