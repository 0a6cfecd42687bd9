/* The HSM's operations refuse mechanisms and lengths that do not fit the key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/daemon.h"

static void test_generate_refusals(void **state)
{
	EVP_PKEY *k = NULL;

	(void)state;
	assert_int_equal(kw_crypto_generate(KW_KEY_RSA, 1024, NULL, &k), KW_ERR_KEY_SIZE);
	assert_int_equal(kw_crypto_generate(KW_KEY_EC, 0, "secp256k1", &k), KW_ERR_KEY_SIZE);
	assert_int_equal(kw_crypto_generate((enum kw_key_type)9, 0, "", &k), KW_ERR_KEY_TYPE);
	assert_null(k);
}

static void test_sign_checks(void **state)
{
	EVP_PKEY *rsa = NULL, *ec = NULL, *ed = NULL;
	Keyward__Sign req = KEYWARD__SIGN__INIT;
	unsigned char data[600] = {0}, sig[1024];
	size_t len;

	(void)state;
	assert_int_equal(kw_crypto_generate(KW_KEY_RSA, 2048, NULL, &rsa), KW_OK);
	assert_int_equal(kw_crypto_generate(KW_KEY_EC, 0, "P-256", &ec), KW_OK);
	assert_int_equal(kw_crypto_generate(KW_KEY_ED25519, 0, NULL, &ed), KW_OK);
	req.data.data = data;

	req.mechanism = KEYWARD__MECHANISM__RSA_PKCS1;
	req.hash = KEYWARD__HASH__SHA256;
	req.data.len = 32;
	len = sizeof sig;
	assert_int_equal(kw_crypto_sign(rsa, KW_KEY_RSA, &req, sig, &len), KW_OK);
	assert_int_equal(len, 256);
	req.data.len = 31;
	len = sizeof sig;
	assert_int_equal(kw_crypto_sign(rsa, KW_KEY_RSA, &req, sig, &len), KW_ERR_DATA_LEN);
	/* a DigestInfo longer than the modulus allows */
	req.hash = KEYWARD__HASH__HASH_NONE;
	req.data.len = 250;
	len = sizeof sig;
	assert_int_equal(kw_crypto_sign(rsa, KW_KEY_RSA, &req, sig, &len), KW_ERR_DATA_LEN);
	/* raw RSA wants exactly the modulus length */
	req.mechanism = KEYWARD__MECHANISM__RSA_RAW;
	req.data.len = 255;
	len = sizeof sig;
	assert_int_equal(kw_crypto_sign(rsa, KW_KEY_RSA, &req, sig, &len), KW_ERR_DATA_LEN);
	req.mechanism = KEYWARD__MECHANISM__ECDSA;
	req.data.len = 32;
	len = sizeof sig;
	assert_int_equal(kw_crypto_sign(rsa, KW_KEY_RSA, &req, sig, &len), KW_ERR_MECHANISM);

	len = sizeof sig;
	assert_int_equal(kw_crypto_sign(ec, KW_KEY_EC, &req, sig, &len), KW_OK);
	assert_int_equal(len, 64);
	req.data.len = 0;
	len = sizeof sig;
	assert_int_equal(kw_crypto_sign(ec, KW_KEY_EC, &req, sig, &len), KW_ERR_DATA_LEN);
	req.mechanism = KEYWARD__MECHANISM__EDDSA;
	req.data.len = 32;
	len = sizeof sig;
	assert_int_equal(kw_crypto_sign(ec, KW_KEY_EC, &req, sig, &len), KW_ERR_MECHANISM);
	len = sizeof sig;
	assert_int_equal(kw_crypto_sign(ed, KW_KEY_ED25519, &req, sig, &len), KW_OK);
	assert_int_equal(len, 64);
	req.mechanism = KEYWARD__MECHANISM__ECDSA;
	len = sizeof sig;
	assert_int_equal(kw_crypto_sign(ed, KW_KEY_ED25519, &req, sig, &len), KW_ERR_MECHANISM);

	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ed);
}

static void test_decrypt_checks(void **state)
{
	EVP_PKEY *rsa = NULL, *ec = NULL;
	Keyward__Decrypt req = KEYWARD__DECRYPT__INIT;
	unsigned char data[256] = {0}, out[512];
	size_t len = sizeof out;

	(void)state;
	assert_int_equal(kw_crypto_generate(KW_KEY_RSA, 2048, NULL, &rsa), KW_OK);
	assert_int_equal(kw_crypto_generate(KW_KEY_EC, 0, "P-256", &ec), KW_OK);
	req.mechanism = KEYWARD__MECHANISM__RSA_OAEP;
	req.data.data = data;
	req.data.len = 100;
	assert_int_equal(kw_crypto_decrypt(rsa, KW_KEY_RSA, &req, out, &len), KW_ERR_ENCRYPTED_DATA);
	req.data.len = 256;
	len = sizeof out;
	assert_int_equal(kw_crypto_decrypt(rsa, KW_KEY_RSA, &req, out, &len), KW_ERR_ENCRYPTED_DATA);
	len = sizeof out;
	assert_int_equal(kw_crypto_decrypt(ec, KW_KEY_EC, &req, out, &len), KW_ERR_KEY_TYPE);
	req.mechanism = KEYWARD__MECHANISM__ECDSA;
	len = sizeof out;
	assert_int_equal(kw_crypto_decrypt(rsa, KW_KEY_RSA, &req, out, &len), KW_ERR_MECHANISM);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate_refusals),
		cmocka_unit_test(test_sign_checks),
		cmocka_unit_test(test_decrypt_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
