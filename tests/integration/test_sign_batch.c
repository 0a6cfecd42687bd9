/*
 * kw_sign_batch against a real keywardd: ECDSA P-256, RSA-2048 PKCS#1 v1.5
 * and PSS, and Ed25519 batches, every signature checked with OpenSSL
 * against the public key the HSM reported, in order. Refusals: a key
 * without sign usage, a bad element in the middle, a wrong mechanism, a
 * buffer too small; and a refused batch signs nothing: the key-use audit
 * counts exactly the signatures that were returned.
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
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "harness.h"

#define N 40

/* the group's development server and its client */
static kw_client *client;

/* A batch's buffers: data[i] of `len` bytes (distinct), sigs[i] of 512 bytes. */
struct batch {
	unsigned char data[KW_SIGN_BATCH_MAX][64];
	unsigned char sig[KW_SIGN_BATCH_MAX][512];
	const unsigned char *datap[KW_SIGN_BATCH_MAX];
	unsigned char *sigp[KW_SIGN_BATCH_MAX];
	size_t data_lens[KW_SIGN_BATCH_MAX], sig_lens[KW_SIGN_BATCH_MAX];
};

static struct batch *batch_new(size_t n, size_t len)
{
	struct batch *b = calloc(1, sizeof *b);

	assert_non_null(b);
	for (size_t i = 0; i < n; i++) {
		char text[32];
		snprintf(text, sizeof text, "element %zu", i);
		/* a distinct digest per element (SHA-512 truncated to len) */
		SHA512((const unsigned char *)text, strlen(text), b->data[i]);
		b->datap[i] = b->data[i];
		b->data_lens[i] = len;
		b->sigp[i] = b->sig[i];
		b->sig_lens[i] = sizeof b->sig[i];
	}
	return b;
}

static EVP_PKEY *generate(const char *name, enum kw_key_type type, unsigned bits, const char *curve, unsigned usages,
			  uint64_t *id)
{
	kw_object *priv = NULL, *pub = NULL;
	const unsigned char *der;
	size_t len = 0;
	EVP_PKEY *pkey;

	kwt_ok(kw_generate_key(client, KWT_OWNER, name, type, bits, curve, 0, usages, &priv, &pub));
	*id = kw_object_id(priv);
	der = kw_object_public_key(pub, &len);
	assert_non_null(der);
	pkey = d2i_PUBKEY(NULL, &der, (long)len);
	assert_non_null(pkey);
	kw_object_free(priv);
	kw_object_free(pub);
	return pkey;
}

/* Whether sig verifies data under pkey with an RSA padding (PSS: salt = digest length). */
static int rsa_verifies(EVP_PKEY *pkey, int padding, const unsigned char *digest, size_t digest_len,
			const unsigned char *sig, size_t sig_len)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
	int ok = ctx && EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, padding) == 1 &&
		 EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
		 (padding != RSA_PKCS1_PSS_PADDING || EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1) &&
		 EVP_PKEY_verify(ctx, sig, sig_len, digest, digest_len) == 1;

	EVP_PKEY_CTX_free(ctx);
	return ok;
}

static int ecdsa_verifies(EVP_PKEY *pkey, const unsigned char *digest, size_t digest_len, const unsigned char *sig,
			  size_t sig_len)
{
	unsigned char *spki = NULL;
	int len = i2d_PUBKEY(pkey, &spki), ok;

	assert_true(len > 0);
	ok = kwt_ecdsa_verifies(spki, (size_t)len, digest, digest_len, sig, sig_len);
	OPENSSL_free(spki);
	return ok;
}

static void test_ecdsa_p256(void **state)
{
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	struct batch *b = batch_new(N, 32);
	uint64_t id;
	EVP_PKEY *pkey = generate("batch-ec", KW_KEY_EC, 0, "P-256", 0, &id);

	(void)state;
	kwt_ok(kw_sign_batch(client, id, &m, N, b->datap, b->data_lens, b->sigp, b->sig_lens));
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(b->sig_lens[i], 64);
		if (!ecdsa_verifies(pkey, b->data[i], 32, b->sig[i], b->sig_lens[i]))
			fail_msg("ECDSA signature %zu does not verify", i);
		/* in order: signature i is not the next element's */
		if (i + 1 < N)
			assert_false(ecdsa_verifies(pkey, b->data[i + 1], 32, b->sig[i], b->sig_lens[i]));
	}
	EVP_PKEY_free(pkey);
	free(b);
}

static void test_rsa_pkcs1_and_pss(void **state)
{
	struct kw_mechanism pkcs1 = {.mech = KW_MECH_RSA_PKCS1, .hash = KW_HASH_SHA256};
	struct kw_mechanism pss = {.mech = KW_MECH_RSA_PSS, .hash = KW_HASH_SHA256, .salt_length = -1};
	struct batch *b = batch_new(N, 32);
	uint64_t id;
	EVP_PKEY *pkey = generate("batch-rsa", KW_KEY_RSA, 2048, NULL, 0, &id);

	(void)state;
	kwt_ok(kw_sign_batch(client, id, &pkcs1, N, b->datap, b->data_lens, b->sigp, b->sig_lens));
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(b->sig_lens[i], 256);
		if (!rsa_verifies(pkey, RSA_PKCS1_PADDING, b->data[i], 32, b->sig[i], b->sig_lens[i]))
			fail_msg("RSA PKCS#1 signature %zu does not verify", i);
		if (i + 1 < N)
			assert_false(rsa_verifies(pkey, RSA_PKCS1_PADDING, b->data[i + 1], 32, b->sig[i], b->sig_lens[i]));
	}
	for (size_t i = 0; i < N; i++)
		b->sig_lens[i] = sizeof b->sig[i];
	kwt_ok(kw_sign_batch(client, id, &pss, N, b->datap, b->data_lens, b->sigp, b->sig_lens));
	for (size_t i = 0; i < N; i++)
		if (!rsa_verifies(pkey, RSA_PKCS1_PSS_PADDING, b->data[i], 32, b->sig[i], b->sig_lens[i]))
			fail_msg("RSA-PSS signature %zu does not verify", i);
	EVP_PKEY_free(pkey);
	free(b);
}

static void test_ed25519(void **state)
{
	struct kw_mechanism m = {.mech = KW_MECH_EDDSA};
	struct batch *b = batch_new(N, 64);
	uint64_t id;
	EVP_PKEY *pkey = generate("batch-ed", KW_KEY_ED25519, 0, NULL, 0, &id);

	(void)state;
	for (size_t i = 0; i < N; i++)
		b->data_lens[i] = 1 + i % 64; /* messages of many lengths */
	kwt_ok(kw_sign_batch(client, id, &m, N, b->datap, b->data_lens, b->sigp, b->sig_lens));
	for (size_t i = 0; i < N; i++) {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		assert_int_equal(b->sig_lens[i], 64);
		assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey), 1);
		if (EVP_DigestVerify(md, b->sig[i], 64, b->data[i], b->data_lens[i]) != 1)
			fail_msg("Ed25519 signature %zu does not verify", i);
		EVP_MD_CTX_free(md);
	}
	EVP_PKEY_free(pkey);
	free(b);
}

static void test_refusals(void **state)
{
	struct kw_mechanism ec = {.mech = KW_MECH_ECDSA}, rsa = {.mech = KW_MECH_RSA_PKCS1, .hash = KW_HASH_SHA256};
	struct batch *b = batch_new(KW_SIGN_BATCH_MAX, 32);
	uint64_t id, rsa_id;
	EVP_PKEY *pkey = generate("batch-refusals", KW_KEY_EC, 0, "P-256", 0, &id);
	EVP_PKEY *rsa_key = generate("batch-decrypt-only", KW_KEY_RSA, 2048, NULL, KW_USAGE_DECRYPT, &rsa_id);

	(void)state;
	/* the cap: KW_SIGN_BATCH_MAX is fine, one more is not (the HSM's own check: test_badinput) */
	kwt_ok(kw_sign_batch(client, id, &ec, KW_SIGN_BATCH_MAX, b->datap, b->data_lens, b->sigp, b->sig_lens));
	assert_int_equal(kw_sign_batch(client, id, &ec, KW_SIGN_BATCH_MAX + 1, b->datap, b->data_lens, b->sigp,
				       b->sig_lens),
			 KW_ERR_ARGUMENTS);
	assert_non_null(strstr(kw_last_error(), "give 1 to 256"));
	assert_int_equal(kw_sign_batch(client, id, &ec, 0, b->datap, b->data_lens, b->sigp, b->sig_lens),
			 KW_ERR_ARGUMENTS);

	/* a bad element in the middle: named by its index, the batch refused */
	b->data_lens[7] = 65;
	assert_int_equal(kw_sign_batch(client, id, &ec, 10, b->datap, b->data_lens, b->sigp, b->sig_lens),
			 KW_ERR_DATA_LEN);
	if (!strstr(kw_last_error(), "element 7:"))
		fail_msg("the error does not name element 7: %s", kw_last_error());
	b->data_lens[7] = 32;

	/* a key whose usages do not include sign */
	assert_int_equal(kw_sign_batch(client, rsa_id, &rsa, 3, b->datap, b->data_lens, b->sigp, b->sig_lens),
			 KW_ERR_KEY_FUNCTION);
	assert_non_null(strstr(kw_last_error(), "may not sign"));
	/* a mechanism that does not fit the key */
	assert_int_equal(kw_sign_batch(client, id, &rsa, 3, b->datap, b->data_lens, b->sigp, b->sig_lens),
			 KW_ERR_MECHANISM);

	/* a buffer too small: named, every length reported, nothing copied */
	for (size_t i = 0; i < 3; i++)
		b->sig_lens[i] = 64;
	b->sig_lens[1] = 63;
	memset(b->sig[0], 0xAA, 64);
	assert_int_equal(kw_sign_batch(client, id, &ec, 3, b->datap, b->data_lens, b->sigp, b->sig_lens),
			 KW_ERR_DATA_LEN);
	assert_non_null(strstr(kw_last_error(), "element 1:"));
	assert_int_equal(b->sig_lens[1], 64);
	assert_int_equal(b->sig[0][0], 0xAA);
	assert_int_equal(b->sig[0][63], 0xAA);

	/* the client still signs */
	kwt_ok(kw_sign_batch(client, id, &ec, 3, b->datap, b->data_lens, b->sigp, b->sig_lens));
	assert_true(ecdsa_verifies(pkey, b->data[2], 32, b->sig[2], b->sig_lens[2]));
	EVP_PKEY_free(pkey);
	EVP_PKEY_free(rsa_key);
	free(b);
}

/* Operations the audit log counts for key `name` with event key.sign. */
static unsigned long audited_signatures(const char *dir, const char *name)
{
	char db[300], like[200];
	sqlite3 *sql;
	sqlite3_stmt *st;
	unsigned long total = 0;

	snprintf(db, sizeof db, "%s/keystore.db", dir);
	snprintf(like, sizeof like, "%%/%s (0x%%", name);
	assert_int_equal(sqlite3_open_v2(db, &sql, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(sql, "SELECT detail FROM audit WHERE event = 'key.sign' AND detail LIKE ?",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, like, -1, SQLITE_TRANSIENT);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *detail = (const char *)sqlite3_column_text(st, 0), *colon = strstr(detail, "): ");
		assert_non_null(colon);
		total += strtoul(colon + 3, NULL, 10);
	}
	sqlite3_finalize(st);
	sqlite3_close(sql);
	return total;
}

/*
 * All or nothing: a batch refused for a bad element, however far in, signs
 * nothing (the HSM checks every element first); each signature returned
 * counts as one key use.
 */
static void test_refused_batch_signs_nothing(void **state)
{
	struct kw_mechanism ec = {.mech = KW_MECH_ECDSA};
	struct batch *b = batch_new(N, 32);
	struct kwt_server s = {0};
	kw_client *c;
	kw_object *priv = NULL, *pub = NULL;
	uint64_t id;
	unsigned char sig[64];
	size_t sig_len = sizeof sig;

	(void)state;
	kwt_start_dev(&s);
	kwt_ok(kw_client_new(s.conf, &c));
	kwt_ok(kw_generate_key(c, KWT_OWNER, "counted", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	id = kw_object_id(priv);
	kwt_ok(kw_sign_batch(c, id, &ec, 5, b->datap, b->data_lens, b->sigp, b->sig_lens));
	kwt_ok(kw_sign(c, id, &ec, b->data[0], 32, sig, &sig_len));
	b->data_lens[N - 1] = 0; /* the last element is bad: the 39 before it must not be signed */
	assert_int_equal(kw_sign_batch(c, id, &ec, N, b->datap, b->data_lens, b->sigp, b->sig_lens), KW_ERR_DATA_LEN);
	if (!strstr(kw_last_error(), "element 39:"))
		fail_msg("the error does not name element 39: %s", kw_last_error());
	kw_object_free(priv);
	kw_object_free(pub);
	kw_client_free(c);
	kwt_stop(&s); /* writes the last counts */
	assert_int_equal(audited_signatures(s.dir, "counted"), 6);
	kwt_cleanup(&s);
	free(b);
}

static int group_setup(void **state)
{
	kwt_dev_setup(state);
	client = ((struct kwt_dev *)*state)->client;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ecdsa_p256),
		cmocka_unit_test(test_rsa_pkcs1_and_pss),
		cmocka_unit_test(test_ed25519),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_refused_batch_signs_nothing),
	};
	return cmocka_run_group_tests(tests, group_setup, kwt_dev_teardown);
}
