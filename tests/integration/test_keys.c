/*
 * Key operations through libkeyward against a real keywardd (development
 * mode): every key type is generated on the HSM, signs (or decrypts), and
 * OpenSSL checks the result against the public key the HSM reported.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
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

static EVP_PKEY *public_of(const kw_object *o)
{
	size_t len = 0;
	const unsigned char *der = kw_object_public_key(o, &len);
	EVP_PKEY *pkey;

	assert_non_null(der);
	pkey = d2i_PUBKEY(NULL, &der, (long)len);
	assert_non_null(pkey);
	return pkey;
}

static void generate(const char *name, enum kw_key_type type, unsigned bits, const char *curve, unsigned usages,
		     kw_object **priv, kw_object **pub)
{
	kwt_ok(kw_generate_key(client, "S-1-5-21-1-2-3", name, type, bits, curve, 0, usages, priv, pub));
	assert_int_equal(kw_object_class(*priv), KW_CLASS_PRIVATE_KEY);
	assert_int_equal(kw_object_class(*pub), KW_CLASS_PUBLIC_KEY);
	assert_string_equal(kw_object_name(*priv), name);
	assert_true(kw_object_sensitive(*priv));
	assert_false(kw_object_extractable(*priv));
	assert_true(kw_object_never_extractable(*priv));
	assert_true(kw_object_modifiable(*priv));
	/* the private half never carries key bytes */
	size_t len = 1;
	assert_null(kw_object_public_key(*priv, &len));
}

static const unsigned char message[] = "keyward integration test message";

static void check_rsa(const char *name, unsigned bits)
{
	kw_object *priv, *pub;
	EVP_PKEY *pkey;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx;
	unsigned char digest[32], sig[1024], sig2[1024], info[19 + 32];
	size_t sig_len = sizeof sig, sig2_len = sizeof sig2;
	struct kw_mechanism m = {0};
	/* DER DigestInfo prefix for SHA-256 (RFC 8017, 9.2 note 1) */
	static const unsigned char sha256_prefix[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
							0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};

	generate(name, KW_KEY_RSA, bits, NULL, 0, &priv, &pub);
	assert_int_equal(kw_object_bits(priv), bits);
	assert_int_equal(kw_object_usages(priv), KW_USAGE_SIGN | KW_USAGE_DECRYPT);
	pkey = public_of(pub);
	assert_int_equal(EVP_PKEY_get_bits(pkey), (int)bits);
	SHA256(message, sizeof message, digest);

	/* PKCS#1 v1.5 over a digest */
	m.mech = KW_MECH_RSA_PKCS1;
	m.hash = KW_HASH_SHA256;
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, digest, sizeof digest, sig, &sig_len));
	assert_int_equal(sig_len, bits / 8);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey), 1);
	assert_int_equal(EVP_DigestVerify(md, sig, sig_len, message, sizeof message), 1);

	/* PKCS#1 v1.5 over a DigestInfo the caller built: the same signature */
	memcpy(info, sha256_prefix, sizeof sha256_prefix);
	memcpy(info + sizeof sha256_prefix, digest, sizeof digest);
	m.hash = KW_HASH_NONE;
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, info, sizeof info, sig2, &sig2_len));
	assert_int_equal(sig2_len, sig_len);
	assert_memory_equal(sig, sig2, sig_len);

	/* PSS, salt = digest length */
	m.mech = KW_MECH_RSA_PSS;
	m.hash = KW_HASH_SHA256;
	m.salt_length = -1;
	sig_len = sizeof sig;
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, digest, sizeof digest, sig, &sig_len));
	EVP_MD_CTX_reset(md);
	assert_int_equal(EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pkey), 1);
	EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
	EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
	assert_int_equal(EVP_DigestVerify(md, sig, sig_len, message, sizeof message), 1);

	/* a digest of the wrong length is refused, not signed */
	sig_len = sizeof sig;
	assert_int_equal(kw_sign(client, kw_object_id(priv), &m, digest, 20, sig, &sig_len), KW_ERR_DATA_LEN);
	assert_non_null(strstr(kw_last_error(), "32 bytes"));

	/* raw RSA: the public operation gives the input back */
	{
		unsigned char raw[512] = {0}, back[512];
		size_t back_len = sizeof back;
		memcpy(raw + 1, digest, sizeof digest);
		m.mech = KW_MECH_RSA_RAW;
		sig_len = sizeof sig;
		kwt_ok(kw_sign(client, kw_object_id(priv), &m, raw, bits / 8, sig, &sig_len));
		pctx = EVP_PKEY_CTX_new(pkey, NULL);
		assert_int_equal(EVP_PKEY_verify_recover_init(pctx), 1);
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_NO_PADDING);
		assert_int_equal(EVP_PKEY_verify_recover(pctx, back, &back_len, sig, sig_len), 1);
		assert_int_equal(back_len, bits / 8);
		assert_memory_equal(back, raw, bits / 8);
		EVP_PKEY_CTX_free(pctx);
	}

	/* OAEP (SHA-256) and PKCS#1 v1.5 decryption of what OpenSSL encrypted */
	for (int oaep = 0; oaep < 2; oaep++) {
		unsigned char ct[512], pt[512];
		size_t ct_len = sizeof ct, pt_len = sizeof pt;
		static const unsigned char secret[] = "a session key";
		pctx = EVP_PKEY_CTX_new(pkey, NULL);
		assert_int_equal(EVP_PKEY_encrypt_init(pctx), 1);
		EVP_PKEY_CTX_set_rsa_padding(pctx, oaep ? RSA_PKCS1_OAEP_PADDING : RSA_PKCS1_PADDING);
		if (oaep) {
			EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256());
			EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256());
		}
		assert_int_equal(EVP_PKEY_encrypt(pctx, ct, &ct_len, secret, sizeof secret), 1);
		EVP_PKEY_CTX_free(pctx);
		memset(&m, 0, sizeof m);
		m.mech = oaep ? KW_MECH_RSA_OAEP : KW_MECH_RSA_PKCS1;
		m.hash = oaep ? KW_HASH_SHA256 : KW_HASH_NONE;
		kwt_ok(kw_decrypt(client, kw_object_id(priv), &m, ct, ct_len, pt, &pt_len));
		assert_int_equal(pt_len, sizeof secret);
		assert_memory_equal(pt, secret, sizeof secret);
		/* a damaged ciphertext is an error, not garbage */
		ct[ct_len / 2] ^= 1;
		pt_len = sizeof pt;
		assert_int_not_equal(kw_decrypt(client, kw_object_id(priv), &m, ct, ct_len, pt, &pt_len), KW_OK);
	}

	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	kw_object_free(priv);
	kw_object_free(pub);
}

static void test_rsa_2048(void **state)
{
	(void)state;
	check_rsa("rsa2048", 2048);
}

static void test_rsa_3072(void **state)
{
	(void)state;
	check_rsa("rsa3072", 3072);
}

static void test_rsa_4096(void **state)
{
	(void)state;
	check_rsa("rsa4096", 4096);
}

static void check_ec(const char *curve, const EVP_MD *hash, unsigned bits)
{
	kw_object *priv, *pub;
	EVP_PKEY *pkey;
	EVP_PKEY_CTX *pctx;
	unsigned char digest[64], sig[256], *der = NULL;
	unsigned digest_len = 0;
	size_t sig_len = sizeof sig, half = (bits + 7) / 8;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	ECDSA_SIG *es;
	int der_len;
	char name[32];

	snprintf(name, sizeof name, "ec-%s", curve);
	generate(name, KW_KEY_EC, 0, curve, 0, &priv, &pub);
	assert_string_equal(kw_object_curve(priv), curve);
	assert_int_equal(kw_object_bits(priv), bits);
	pkey = public_of(pub);
	EVP_Digest(message, sizeof message, digest, &digest_len, hash, NULL);
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, digest, digest_len, sig, &sig_len));
	assert_int_equal(sig_len, 2 * half); /* r||s, the PKCS#11 form */
	es = ECDSA_SIG_new();
	ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)half, NULL), BN_bin2bn(sig + half, (int)half, NULL));
	der_len = i2d_ECDSA_SIG(es, &der);
	pctx = EVP_PKEY_CTX_new(pkey, NULL);
	assert_int_equal(EVP_PKEY_verify_init(pctx), 1);
	assert_int_equal(EVP_PKEY_verify(pctx, der, (size_t)der_len, digest, digest_len), 1);
	/* and a signature over other data does not verify */
	digest[0] ^= 1;
	assert_int_not_equal(EVP_PKEY_verify(pctx, der, (size_t)der_len, digest, digest_len), 1);

	/* EC keys do not decrypt, and do not sign with RSA mechanisms */
	m.mech = KW_MECH_RSA_PKCS1;
	m.hash = KW_HASH_SHA256;
	sig_len = sizeof sig;
	assert_int_equal(kw_sign(client, kw_object_id(priv), &m, digest, 32, sig, &sig_len), KW_ERR_MECHANISM);
	m.mech = KW_MECH_RSA_OAEP;
	sig_len = sizeof sig;
	assert_int_not_equal(kw_decrypt(client, kw_object_id(priv), &m, sig, 64, sig, &sig_len), KW_OK);

	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pkey);
	kw_object_free(priv);
	kw_object_free(pub);
}

static void test_ec_p256(void **state)
{
	(void)state;
	check_ec("P-256", EVP_sha256(), 256);
}

static void test_ec_p384(void **state)
{
	(void)state;
	check_ec("P-384", EVP_sha384(), 384);
}

static void test_ec_p521(void **state)
{
	(void)state;
	check_ec("P-521", EVP_sha512(), 521);
}

static void test_ed25519(void **state)
{
	kw_object *priv, *pub;
	EVP_PKEY *pkey;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char sig[128];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_EDDSA};

	(void)state;
	generate("ed", KW_KEY_ED25519, 0, NULL, 0, &priv, &pub);
	pkey = public_of(pub);
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, message, sizeof message, sig, &sig_len));
	assert_int_equal(sig_len, 64);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey), 1);
	assert_int_equal(EVP_DigestVerify(md, sig, sig_len, message, sizeof message), 1);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	kw_object_free(priv);
	kw_object_free(pub);
}

static void test_usage_enforced(void **state)
{
	kw_object *priv, *pub;
	unsigned char digest[32] = {1}, sig[512];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_RSA_PKCS1, .hash = KW_HASH_SHA256};

	(void)state;
	kwt_ok(kw_generate_key(client, "S-1-5-21-1-2-3", "decrypt-only", KW_KEY_RSA, 2048, NULL, 0,
			       KW_USAGE_DECRYPT, &priv, &pub));
	assert_int_equal(kw_sign(client, kw_object_id(priv), &m, digest, sizeof digest, sig, &sig_len),
			 KW_ERR_KEY_FUNCTION);
	assert_non_null(strstr(kw_last_error(), "decrypt-only"));
	/* the public half is not a signing key */
	sig_len = sizeof sig;
	assert_int_equal(kw_sign(client, kw_object_id(pub), &m, digest, sizeof digest, sig, &sig_len),
			 KW_ERR_KEY_TYPE);
	kw_object_free(priv);
	kw_object_free(pub);
}

/*
 * Raw RSA is one private operation under two names: a sign-only key must not
 * decrypt through Sign(RSA_RAW), a decrypt-only key must not sign through
 * Decrypt(RSA_RAW). libkeyward is called directly, around the PKCS#11
 * module, so the refusal is keywardd's.
 */
static void test_raw_rsa_needs_both_usages(void **state)
{
	kw_object *priv, *pub;
	unsigned char block[256] = {0}, out[256];
	size_t out_len = sizeof out;
	struct kw_mechanism m = {.mech = KW_MECH_RSA_RAW};

	(void)state;
	block[1] = 0x42;
	kwt_ok(kw_generate_key(client, KWT_OWNER, "raw-sign-only", KW_KEY_RSA, 2048, NULL, 0, KW_USAGE_SIGN, &priv,
			       &pub));
	assert_int_equal(kw_sign(client, kw_object_id(priv), &m, block, sizeof block, out, &out_len),
			 KW_ERR_KEY_FUNCTION);
	assert_non_null(strstr(kw_last_error(), "raw-sign-only"));
	assert_non_null(strstr(kw_last_error(), "both usages"));
	/* padded signing still works */
	m = (struct kw_mechanism){.mech = KW_MECH_RSA_PKCS1, .hash = KW_HASH_SHA256};
	out_len = sizeof out;
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, block, 32, out, &out_len));
	kw_object_free(priv);
	kw_object_free(pub);

	m = (struct kw_mechanism){.mech = KW_MECH_RSA_RAW};
	kwt_ok(kw_generate_key(client, KWT_OWNER, "raw-decrypt-only", KW_KEY_RSA, 2048, NULL, 0, KW_USAGE_DECRYPT,
			       &priv, &pub));
	out_len = sizeof out;
	assert_int_equal(kw_decrypt(client, kw_object_id(priv), &m, block, sizeof block, out, &out_len),
			 KW_ERR_KEY_FUNCTION);
	assert_non_null(strstr(kw_last_error(), "raw-decrypt-only"));
	kw_object_free(priv);
	kw_object_free(pub);

	/* with both usages raw RSA works both ways */
	kwt_ok(kw_generate_key(client, KWT_OWNER, "raw-both", KW_KEY_RSA, 2048, NULL, 0,
			       KW_USAGE_SIGN | KW_USAGE_DECRYPT, &priv, &pub));
	out_len = sizeof out;
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, block, sizeof block, out, &out_len));
	out_len = sizeof out;
	kwt_ok(kw_decrypt(client, kw_object_id(priv), &m, block, sizeof block, out, &out_len));
	kw_object_free(priv);
	kw_object_free(pub);
}

static void test_bad_key_specs(void **state)
{
	kw_object *priv = NULL, *pub = NULL;

	(void)state;
	assert_int_equal(kw_generate_key(client, "S-1-5-21-1-2-3", "small", KW_KEY_RSA, 1024, NULL, 0, 0, &priv, &pub),
			 KW_ERR_KEY_SIZE);
	assert_int_equal(kw_generate_key(client, "S-1-5-21-1-2-3", "curve", KW_KEY_EC, 0, "P-192", 0, 0, &priv, &pub),
			 KW_ERR_KEY_SIZE);
	assert_int_equal(kw_generate_key(client, "S-1-5-21-1-2-3", "ecdec", KW_KEY_EC, 0, "P-256", 0,
					 KW_USAGE_DECRYPT, &priv, &pub),
			 KW_ERR_KEY_FUNCTION);
	assert_int_equal(kw_generate_key(client, "", "noowner", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub),
			 KW_ERR_ARGUMENTS);
	/* a taken name is refused and the original key stays */
	kwt_ok(kw_generate_key(client, "S-1-5-21-1-2-3", "taken", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	assert_int_equal(kw_generate_key(client, "S-1-5-21-1-2-3", "taken", KW_KEY_RSA, 2048, NULL, 0, 0, &priv, &pub),
			 KW_ERR_EXISTS);
	kwt_ok(kw_get_object(client, 0, "S-1-5-21-1-2-3", "taken", KW_CLASS_PRIVATE_KEY, &priv));
	assert_int_equal(kw_object_key_type(priv), KW_KEY_EC);
	kw_object_free(priv);
}

static void test_list_get_delete(void **state)
{
	kw_object *priv, *pub, *got = NULL;
	kw_object_list *list;
	unsigned deleted = 0;
	size_t before;

	(void)state;
	kwt_ok(kw_list_objects(client, NULL, NULL, &list));
	before = kw_object_list_count(list);
	kw_object_list_free(list);
	kwt_ok(kw_generate_key(client, "S-1-5-21-9-9-9", "to-delete", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	kwt_ok(kw_list_objects(client, NULL, NULL, &list));
	assert_int_equal(kw_object_list_count(list), before + 2);
	kw_object_list_free(list);
	kwt_ok(kw_list_objects(client, "S-1-5-21-9-9-9", NULL, &list));
	assert_int_equal(kw_object_list_count(list), 2);
	kw_object_list_free(list);
	kwt_ok(kw_get_object(client, kw_object_id(pub), NULL, NULL, KW_CLASS_ANY, &got));
	assert_int_equal(kw_object_pair_id(got), kw_object_id(priv));
	kw_object_free(got);
	kwt_ok(kw_delete_objects(client, 0, "S-1-5-21-9-9-9", "to-delete", KW_CLASS_ANY, &deleted));
	assert_int_equal(deleted, 2);
	assert_int_equal(kw_get_object(client, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, &got), KW_ERR_NOT_FOUND);
	kw_object_free(priv);
	kw_object_free(pub);
}

static void test_attributes_one_way(void **state)
{
	kw_object *priv, *pub, *got;
	unsigned char digest[32] = {2}, sig[128];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};

	(void)state;
	kwt_ok(kw_generate_key(client, "S-1-5-21-1-2-3", "attrs", KW_KEY_EC, 0, "P-256", KW_GEN_EXTRACTABLE, 0, &priv,
			       &pub));
	assert_true(kw_object_extractable(priv));
	assert_false(kw_object_never_extractable(priv));
	/* extractable true -> false works, false -> true never */
	kwt_ok(kw_set_attributes(client, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, 0, -1, NULL));
	assert_int_equal(kw_set_attributes(client, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, 1, -1, NULL),
			 KW_ERR_ATTRIBUTE_VALUE);
	/* rename while modifiable */
	kwt_ok(kw_set_attributes(client, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, -1, -1, "attrs2"));
	kwt_ok(kw_get_object(client, 0, "S-1-5-21-1-2-3", "attrs2", KW_CLASS_PUBLIC_KEY, &got));
	kw_object_free(got);
	/* modifiable true -> false, then nothing changes any more */
	kwt_ok(kw_set_attributes(client, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, -1, 0, NULL));
	assert_int_equal(kw_set_attributes(client, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, -1, 1, NULL),
			 KW_ERR_ATTRIBUTE_VALUE);
	assert_int_equal(kw_set_attributes(client, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, -1, -1, "attrs3"),
			 KW_ERR_NOT_MODIFIABLE);
	kwt_ok(kw_get_object(client, kw_object_id(priv), NULL, NULL, KW_CLASS_ANY, &got));
	assert_false(kw_object_extractable(got));
	assert_false(kw_object_modifiable(got));
	assert_string_equal(kw_object_name(got), "attrs2");
	kw_object_free(got);
	/* the resealed key still signs */
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, digest, sizeof digest, sig, &sig_len));
	kw_object_free(priv);
	kw_object_free(pub);
}

static void test_random(void **state)
{
	unsigned char a[64] = {0}, b[64] = {0};

	(void)state;
	kwt_ok(kw_generate_random(client, a, sizeof a));
	kwt_ok(kw_generate_random(client, b, sizeof b));
	assert_memory_not_equal(a, b, sizeof a);
	/* more than one request's worth arrives whole (the library asks in chunks) */
	size_t big_len = 200000, zeros = 0;
	unsigned char *big = calloc(1, big_len);
	kwt_ok(kw_generate_random(client, big, big_len));
	for (size_t i = big_len - 1000; i < big_len; i++)
		zeros += big[i] == 0;
	assert_true(zeros < 30); /* the tail was filled too */
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsa_2048),     cmocka_unit_test(test_rsa_3072),
		cmocka_unit_test(test_rsa_4096),     cmocka_unit_test(test_ec_p256),
		cmocka_unit_test(test_ec_p384),      cmocka_unit_test(test_ec_p521),
		cmocka_unit_test(test_ed25519),      cmocka_unit_test(test_usage_enforced),
		cmocka_unit_test(test_raw_rsa_needs_both_usages), cmocka_unit_test(test_bad_key_specs),
		cmocka_unit_test(test_list_get_delete),
		cmocka_unit_test(test_attributes_one_way), cmocka_unit_test(test_random),
	};
	return cmocka_run_group_tests_name("integration_keys", tests, setup, teardown);
}
