/*
 * The master key's helpers: the passphrase KDF (scrypt) and the Shamir
 * split/recombine of the key into text shares "kw1-<index>-<hex>".
 */
#ifndef KW_KEYSTORE_MASTER_H
#define KW_KEYSTORE_MASTER_H

#include <stddef.h>
#include <stdint.h>

#include <keyward/keyward.h>

#define KW_MASTER_KEY_LEN 32
#define KW_SCRYPT_N (1u << 17)
#define KW_SCRYPT_R 8u
#define KW_SCRYPT_P 1u
#define KW_SCRYPT_N_MAX (1u << 20)
#define KW_SALT_LEN 16

/*
 * The scrypt N for a new master key: 2^17, or what kw_master_set_test_kdf_n
 * set (unit tests only, never from the environment; the N used is stored
 * with the key, so unlock always uses it).
 */
uint64_t kw_master_kdf_n(void);
void kw_master_set_test_kdf_n(uint64_t n); /* 0 restores the default */

kw_rv kw_master_kdf(const char *passphrase, const unsigned char *salt, size_t salt_len, uint64_t n, uint32_t r,
		    uint32_t p, unsigned char out[KW_MASTER_KEY_LEN]);

/* 2 <= threshold <= shares <= 255; *out is an array of `shares` strings (free with kw_shamir_free). */
kw_rv kw_shamir_split(const unsigned char secret[KW_MASTER_KEY_LEN], unsigned shares, unsigned threshold,
		      char ***out);
/* Wipes and frees n shares (kw_keystore_shares_free hands it out); accepts NULL. */
void kw_shamir_free(char **shares, unsigned n);
/*
 * Recombines; KW_ERR_AUTH with a message for too few, duplicated or
 * malformed shares. A wrong share yields a wrong secret: the caller checks.
 */
kw_rv kw_shamir_combine(const char *const *shares, size_t count, unsigned threshold, unsigned total,
			unsigned char secret[KW_MASTER_KEY_LEN]);

#endif
