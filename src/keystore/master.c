/*
 * The master key's KDF and Shamir sharing. scrypt comes from OpenSSL's
 * EVP_KDF "SCRYPT"; Shamir from libgfshare (GF(2^8), one share byte per
 * secret byte), with OpenSSL's RAND_bytes as its randomness.
 */
#include "keystore/master.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libgfshare.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "common/error.h"

static _Atomic uint64_t test_kdf_n;

/*
 * No environment variable lowers N: a switch in the environment of a
 * production keywardd would weaken every master key it creates. Only code
 * linked into the process (the unit tests) can, through
 * kw_master_set_test_kdf_n; keywardd and the tools never call it.
 */
uint64_t kw_master_kdf_n(void)
{
	uint64_t n = atomic_load(&test_kdf_n);

	return n ? n : KW_SCRYPT_N;
}

void kw_master_set_test_kdf_n(uint64_t n)
{
	atomic_store(&test_kdf_n, n);
}

kw_rv kw_master_kdf(const char *passphrase, const unsigned char *salt, size_t salt_len, uint64_t n, uint32_t r,
		    uint32_t p, unsigned char out[KW_MASTER_KEY_LEN])
{
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *ctx = NULL;
	OSSL_PARAM params[7], *q = params;
	uint64_t maxmem = 1ull << 30;
	kw_rv rv = KW_OK;

	if (n < 2 || n > KW_SCRYPT_N_MAX || (n & (n - 1)) || r == 0 || r > 32 || p == 0 || p > 16)
		return kw_error_set(KW_ERR_STORE, "store: scrypt parameters N=%llu r=%u p=%u out of range",
				    (unsigned long long)n, r, p);
	kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
	if (!kdf)
		return kw_error_set(KW_ERR_CRYPTO, "store: OpenSSL has no SCRYPT KDF");
	ctx = EVP_KDF_CTX_new(kdf);
	if (!ctx) {
		rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory for the KDF");
		goto out;
	}
	*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)passphrase, strlen(passphrase));
	*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
	*q++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
	*q++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
	*q++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
	*q++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
	*q = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(ctx, out, KW_MASTER_KEY_LEN, params) != 1)
		rv = kw_error_set(KW_ERR_CRYPTO, "store: scrypt key derivation failed (out of memory?)");
out:
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	if (rv)
		OPENSSL_cleanse(out, KW_MASTER_KEY_LEN);
	return rv;
}

/* libgfshare's randomness hook cannot fail, so a failure is recorded here. */
static _Thread_local bool rand_failed;

static void gf_rand(unsigned char *buf, unsigned int n)
{
	if (RAND_bytes(buf, (int)n) != 1)
		rand_failed = true;
}

kw_rv kw_shamir_split(const unsigned char secret[KW_MASTER_KEY_LEN], unsigned shares, unsigned threshold,
		      char ***out)
{
	unsigned char sharenrs[255], share[KW_MASTER_KEY_LEN], sec[KW_MASTER_KEY_LEN];
	const size_t text_len = 4 + 4 + 2 * KW_MASTER_KEY_LEN + 1;
	gfshare_ctx *ctx = NULL;
	char **texts = NULL;
	kw_rv rv = KW_OK;

	*out = NULL;
	if (threshold < 2 || shares < threshold || shares > 255)
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "store: a Shamir split needs 2 <= threshold <= shares <= 255 (got %u-of-%u)",
				    threshold, shares);
	for (unsigned i = 0; i < shares; i++)
		sharenrs[i] = (unsigned char)(i + 1);
	gfshare_fill_rand = gf_rand;
	rand_failed = false;
	ctx = gfshare_ctx_init_enc(sharenrs, shares, (unsigned char)threshold, KW_MASTER_KEY_LEN);
	texts = calloc(shares, sizeof *texts);
	if (!ctx || !texts) {
		rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory splitting the master key");
		goto out;
	}
	memcpy(sec, secret, sizeof sec); /* setsecret takes a non-const pointer */
	gfshare_ctx_enc_setsecret(ctx, sec);
	for (unsigned i = 0; i < shares; i++) {
		char *t = malloc(text_len);
		int off;

		if (!t) {
			rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory splitting the master key");
			goto out;
		}
		texts[i] = t;
		gfshare_ctx_enc_getshare(ctx, (unsigned char)i, share);
		off = snprintf(t, text_len, "kw1-%u-", i + 1);
		for (size_t j = 0; j < KW_MASTER_KEY_LEN; j++)
			off += snprintf(t + off, text_len - (size_t)off, "%02x", share[j]);
	}
	if (rand_failed) {
		rv = kw_error_set(KW_ERR_CRYPTO, "store: no random bytes for the Shamir split");
		goto out;
	}
	*out = texts;
	texts = NULL;
out:
	if (texts)
		kw_shamir_free(texts, shares);
	if (ctx)
		gfshare_ctx_free(ctx); /* overwrites the context with random bytes first */
	OPENSSL_cleanse(share, sizeof share);
	OPENSSL_cleanse(sec, sizeof sec);
	return rv;
}

void kw_shamir_free(char **shares, unsigned n)
{
	if (!shares)
		return;
	for (unsigned i = 0; i < n; i++) {
		if (shares[i]) {
			OPENSSL_cleanse(shares[i], strlen(shares[i]));
			free(shares[i]);
		}
	}
	free(shares);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* "kw1-<index>-<64 hex>" -> index, bytes; false when malformed. */
static bool share_parse(const char *s, unsigned total, unsigned *index, unsigned char bytes[KW_MASTER_KEY_LEN])
{
	unsigned long idx = 0;
	const char *p;
	size_t digits = 0;

	if (!s || strncmp(s, "kw1-", 4) != 0)
		return false;
	p = s + 4;
	while (*p >= '0' && *p <= '9' && digits < 4) {
		idx = idx * 10 + (unsigned long)(*p - '0');
		p++;
		digits++;
	}
	if (digits == 0 || *p != '-' || idx < 1 || idx > total)
		return false;
	p++;
	if (strlen(p) != 2 * KW_MASTER_KEY_LEN)
		return false;
	for (size_t i = 0; i < KW_MASTER_KEY_LEN; i++) {
		int hi = hexval((unsigned char)p[2 * i]), lo = hexval((unsigned char)p[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		bytes[i] = (unsigned char)(hi << 4 | lo);
	}
	*index = (unsigned)idx;
	return true;
}

kw_rv kw_shamir_combine(const char *const *shares, size_t count, unsigned threshold, unsigned total,
			unsigned char secret[KW_MASTER_KEY_LEN])
{
	unsigned char sharenrs[255], *bytes = NULL;
	gfshare_ctx *ctx = NULL;
	kw_rv rv = KW_OK;
	unsigned idx;

	if (count < threshold)
		return kw_error_set(KW_ERR_AUTH, "unlock: %zu share%s given, %u needed (%u-of-%u)", count,
				    count == 1 ? "" : "s", threshold, threshold, total);
	if (count > total || count > 255)
		return kw_error_set(KW_ERR_AUTH, "unlock: %zu shares given, but only %u exist", count, total);
	gfshare_fill_rand = gf_rand; /* gfshare_ctx_free scrubs the context with it */
	bytes = calloc(count, KW_MASTER_KEY_LEN);
	if (!bytes)
		return kw_error_set(KW_ERR_NO_MEMORY, "unlock: out of memory");
	for (size_t i = 0; i < count; i++) {
		if (!share_parse(shares[i], total, &idx, bytes + i * KW_MASTER_KEY_LEN)) {
			rv = kw_error_set(KW_ERR_AUTH,
					  "unlock: share %zu is malformed (expected kw1-<index 1..%u>-<%d hex digits>)",
					  i + 1, total, 2 * KW_MASTER_KEY_LEN);
			goto out;
		}
		for (size_t j = 0; j < i; j++) {
			if (sharenrs[j] == idx) {
				rv = kw_error_set(KW_ERR_AUTH, "unlock: share %zu repeats share %zu (index %u)", i + 1,
						  j + 1, idx);
				goto out;
			}
		}
		sharenrs[i] = (unsigned char)idx;
	}
	ctx = gfshare_ctx_init_dec(sharenrs, (unsigned)count, KW_MASTER_KEY_LEN);
	if (!ctx) {
		rv = kw_error_set(KW_ERR_NO_MEMORY, "unlock: out of memory");
		goto out;
	}
	for (size_t i = 0; i < count; i++)
		gfshare_ctx_dec_giveshare(ctx, (unsigned char)i, bytes + i * KW_MASTER_KEY_LEN);
	gfshare_ctx_dec_extract(ctx, secret);
out:
	if (ctx)
		gfshare_ctx_free(ctx);
	OPENSSL_cleanse(bytes, count * KW_MASTER_KEY_LEN);
	free(bytes);
	return rv;
}
