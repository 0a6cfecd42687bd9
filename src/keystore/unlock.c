/*
 * The master key and its unlock methods: init (passphrase, Shamir shares,
 * development mode), unlock, lock. The key is held in the secure heap
 * between unlock and lock; its KDF and the Shamir split are master.c's,
 * the GCM that wraps it seal.c's.
 */
#include "keystore/keystore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/error.h"
#include "common/log.h"
#include "keystore/backend.h"
#include "keystore/internal.h"
#include "keystore/master.h"
#include "keystore/seal.h"

static const char MK_AAD[] = "keyward master key v1";
static const char CHECK_AAD[] = "keyward master key check v1";
static const char CHECK_TEXT[] = "keyward: this is the master key";

kw_rv kw_need_unlocked(struct kw_keystore *ks)
{
	if (ks->mk)
		return KW_OK;
	if (!ks->method[0])
		return kw_error_set(KW_ERR_STORE_LOCKED, "store: the HSM is not initialized (keyward-admin init)");
	return kw_error_set(KW_ERR_STORE_LOCKED, "store: the HSM is locked (unlock it with keyward-admin unlock)");
}

/* ---- master key ---- */

bool kw_keystore_initialized(struct kw_keystore *ks)
{
	bool r;

	lock(ks);
	r = ks->method[0] != '\0';
	unlock(ks);
	return r;
}

bool kw_keystore_locked(struct kw_keystore *ks)
{
	bool r;

	lock(ks);
	r = ks->mk == NULL;
	unlock(ks);
	return r;
}

const char *kw_keystore_unlock_method(struct kw_keystore *ks)
{
	/* written only by init, which happens once per store */
	return ks->method;
}

static kw_rv set_mk_locked(struct kw_keystore *ks, const unsigned char key[KW_MASTER_KEY_LEN])
{
	if (!ks->mk) {
		ks->mk = OPENSSL_secure_malloc(KW_MASTER_KEY_LEN);
		if (!ks->mk)
			return kw_error_set(KW_ERR_NO_MEMORY, "store: out of secure memory for the master key");
	}
	memcpy(ks->mk, key, KW_MASTER_KEY_LEN);
	return KW_OK;
}

static kw_rv not_initialized_check_locked(struct kw_keystore *ks)
{
	if (ks->method[0])
		return kw_error_set(KW_ERR_ALREADY_INITIALIZED, "store: the HSM already has a master key (%s)",
				    ks->method);
	return KW_OK;
}

kw_rv kw_keystore_init_passphrase(struct kw_keystore *ks, const char *passphrase)
{
	unsigned char mk[KW_MASTER_KEY_LEN], kek[KW_MASTER_KEY_LEN], salt[KW_SALT_LEN];
	unsigned char *wrapped = NULL;
	size_t wrapped_len = 0;
	uint64_t n = kw_master_kdf_n();
	char params[64];
	kw_rv rv;

	if (!ks || !passphrase || !*passphrase)
		return kw_error_set(KW_ERR_ARGUMENTS, "init: the passphrase is empty");
	lock(ks);
	rv = not_initialized_check_locked(ks);
	if (rv)
		goto out;
	if (RAND_bytes(mk, sizeof mk) != 1 || RAND_bytes(salt, sizeof salt) != 1) {
		rv = kw_error_set(KW_ERR_CRYPTO, "init: no random bytes for the master key");
		goto out;
	}
	rv = kw_master_kdf(passphrase, salt, sizeof salt, n, KW_SCRYPT_R, KW_SCRYPT_P, kek);
	if (rv)
		goto out;
	rv = kw_gcm_seal(kek, (const unsigned char *)MK_AAD, sizeof MK_AAD - 1, mk, sizeof mk, &wrapped, &wrapped_len);
	if (rv)
		goto out;
	snprintf(params, sizeof params, "%" PRIu64 " %u %u", n, KW_SCRYPT_R, KW_SCRYPT_P);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = kw_meta_put_text(ks->b, "mk.method", "passphrase");
	if (!rv)
		rv = ks->b->ops->meta_put(ks->b, "mk.salt", salt, sizeof salt);
	if (!rv)
		rv = kw_meta_put_text(ks->b, "mk.scrypt", params);
	if (!rv)
		rv = ks->b->ops->meta_put(ks->b, "mk.wrapped", wrapped, wrapped_len);
	rv = finish(ks->b, rv);
	if (rv)
		goto out;
	snprintf(ks->method, sizeof ks->method, "passphrase");
	rv = set_mk_locked(ks, mk);
	kw_debug(KW_DEBUG_STORE, "store: master key created, sealed under a passphrase (scrypt N=%" PRIu64 ")", n);
out:
	unlock(ks);
	OPENSSL_cleanse(mk, sizeof mk);
	OPENSSL_cleanse(kek, sizeof kek);
	free(wrapped);
	return rv;
}

kw_rv kw_keystore_init_shamir(struct kw_keystore *ks, unsigned shares, unsigned threshold, char ***shares_out)
{
	unsigned char mk[KW_MASTER_KEY_LEN], *check = NULL;
	size_t check_len = 0;
	char **texts = NULL;
	kw_rv rv;

	if (!ks || !shares_out)
		return kw_error_set(KW_ERR_ARGUMENTS, "init: no place for the shares");
	*shares_out = NULL;
	lock(ks);
	rv = not_initialized_check_locked(ks);
	if (rv)
		goto out;
	if (RAND_bytes(mk, sizeof mk) != 1) {
		rv = kw_error_set(KW_ERR_CRYPTO, "init: no random bytes for the master key");
		goto out;
	}
	rv = kw_shamir_split(mk, shares, threshold, &texts);
	if (rv)
		goto out;
	rv = kw_gcm_seal(mk, (const unsigned char *)CHECK_AAD, sizeof CHECK_AAD - 1, (const unsigned char *)CHECK_TEXT,
			 sizeof CHECK_TEXT - 1, &check, &check_len);
	if (rv)
		goto out;
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = kw_meta_put_text(ks->b, "mk.method", "shamir");
	if (!rv)
		rv = kw_meta_put_u64(ks->b, "mk.threshold", threshold);
	if (!rv)
		rv = kw_meta_put_u64(ks->b, "mk.shares", shares);
	if (!rv)
		rv = ks->b->ops->meta_put(ks->b, "mk.check", check, check_len);
	rv = finish(ks->b, rv);
	if (rv)
		goto out;
	snprintf(ks->method, sizeof ks->method, "shamir %u-of-%u", threshold, shares);
	rv = set_mk_locked(ks, mk);
	if (rv)
		goto out;
	*shares_out = texts;
	texts = NULL;
	kw_debug(KW_DEBUG_STORE, "store: master key created, split %u-of-%u", threshold, shares);
out:
	unlock(ks);
	if (texts)
		kw_keystore_shares_free(texts, shares);
	OPENSSL_cleanse(mk, sizeof mk);
	free(check);
	return rv;
}

void kw_keystore_shares_free(char **shares, unsigned n)
{
	kw_shamir_free(shares, n);
}

kw_rv kw_keystore_init_dev(struct kw_keystore *ks)
{
	unsigned char mk[KW_MASTER_KEY_LEN];
	kw_rv rv;

	if (!ks)
		return kw_error_set(KW_ERR_ARGUMENTS, "init: no store");
	lock(ks);
	rv = not_initialized_check_locked(ks);
	if (rv)
		goto out;
	if (RAND_bytes(mk, sizeof mk) != 1) {
		rv = kw_error_set(KW_ERR_CRYPTO, "init: no random bytes for the master key");
		goto out;
	}
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = finish(ks->b, kw_meta_put_text(ks->b, "mk.method", "dev"));
	if (rv)
		goto out;
	snprintf(ks->method, sizeof ks->method, "dev");
	rv = set_mk_locked(ks, mk);
	kw_debug(KW_DEBUG_STORE, "store: development master key created (in memory only)");
out:
	unlock(ks);
	OPENSSL_cleanse(mk, sizeof mk);
	return rv;
}

static kw_rv method_check_locked(struct kw_keystore *ks, const char *want)
{
	if (!ks->method[0])
		return kw_error_set(KW_ERR_NOT_INITIALIZED, "unlock: the HSM is not initialized (keyward-admin init)");
	if (strcmp(ks->method, "dev") == 0)
		return kw_error_set(KW_ERR_AUTH,
				    "unlock: this store was created in development mode; its master key lived only "
				    "in memory and is gone, so the store cannot be unlocked (start with a fresh store)");
	if (strncmp(ks->method, want, strlen(want)) != 0)
		return kw_error_set(KW_ERR_ARGUMENTS, "unlock: this store is unlocked with %s, not with a %s",
				    ks->method, want);
	return KW_OK;
}

kw_rv kw_keystore_unlock_passphrase(struct kw_keystore *ks, const char *passphrase)
{
	unsigned char salt[KW_SALT_LEN], kek[KW_MASTER_KEY_LEN], *salt_v = NULL, *wrapped = NULL, *mk = NULL;
	size_t salt_len = 0, wrapped_len = 0, mk_len = 0;
	unsigned long long n = 0;
	unsigned r = 0, p = 0;
	char params[64];
	kw_rv rv;

	if (!ks || !passphrase)
		return kw_error_set(KW_ERR_ARGUMENTS, "unlock: no passphrase given");
	lock(ks);
	rv = method_check_locked(ks, "passphrase");
	if (!rv)
		rv = ks->b->ops->meta_get(ks->b, "mk.salt", &salt_v, &salt_len);
	if (!rv)
		rv = ks->b->ops->meta_get(ks->b, "mk.wrapped", &wrapped, &wrapped_len);
	if (!rv)
		rv = kw_meta_get_text(ks->b, "mk.scrypt", params, sizeof params);
	unlock(ks);
	if (rv == KW_ERR_NOT_FOUND)
		rv = kw_error_set(KW_ERR_STORE, "unlock: the store's master-key record is incomplete");
	if (rv)
		goto out;
	if (salt_len != sizeof salt || sscanf(params, "%llu %u %u", &n, &r, &p) != 3) {
		rv = kw_error_set(KW_ERR_STORE, "unlock: the store's master-key record is damaged");
		goto out;
	}
	memcpy(salt, salt_v, sizeof salt);
	/* the KDF is slow on purpose: run it without holding the store */
	rv = kw_master_kdf(passphrase, salt, sizeof salt, n, r, p, kek);
	if (rv)
		goto out;
	rv = kw_gcm_open(kek, (const unsigned char *)MK_AAD, sizeof MK_AAD - 1, wrapped, wrapped_len, &mk, &mk_len);
	if (rv == KW_ERR_TAMPERED || (!rv && mk_len != KW_MASTER_KEY_LEN)) {
		rv = kw_error_set(KW_ERR_AUTH, "unlock: wrong passphrase");
		goto out;
	}
	if (rv)
		goto out;
	lock(ks);
	rv = set_mk_locked(ks, mk);
	unlock(ks);
	if (!rv)
		kw_debug(KW_DEBUG_STORE, "store: unlocked with the passphrase");
out:
	OPENSSL_cleanse(kek, sizeof kek);
	if (mk) {
		OPENSSL_cleanse(mk, mk_len);
		free(mk);
	}
	free(salt_v);
	free(wrapped);
	return rv;
}

kw_rv kw_keystore_unlock_shares(struct kw_keystore *ks, const char *const *shares, size_t count)
{
	unsigned char mk[KW_MASTER_KEY_LEN], *check = NULL, *text = NULL;
	size_t check_len = 0, text_len = 0;
	uint64_t threshold = 0, total = 0;
	kw_rv rv;

	if (!ks || (!shares && count))
		return kw_error_set(KW_ERR_ARGUMENTS, "unlock: no shares given");
	lock(ks);
	rv = method_check_locked(ks, "shamir");
	if (!rv)
		rv = kw_meta_get_u64(ks->b, "mk.threshold", &threshold);
	if (!rv)
		rv = kw_meta_get_u64(ks->b, "mk.shares", &total);
	if (!rv)
		rv = ks->b->ops->meta_get(ks->b, "mk.check", &check, &check_len);
	if (rv == KW_ERR_NOT_FOUND)
		rv = kw_error_set(KW_ERR_STORE, "unlock: the store's master-key record is incomplete");
	if (rv)
		goto out;
	if (threshold < 2 || threshold > total || total > 255) {
		rv = kw_error_set(KW_ERR_STORE, "unlock: the store's Shamir parameters are damaged");
		goto out;
	}
	rv = kw_shamir_combine(shares, count, (unsigned)threshold, (unsigned)total, mk);
	if (rv)
		goto out;
	rv = kw_gcm_open(mk, (const unsigned char *)CHECK_AAD, sizeof CHECK_AAD - 1, check, check_len, &text,
			 &text_len);
	if (rv == KW_ERR_TAMPERED) {
		rv = kw_error_set(KW_ERR_AUTH,
				  "unlock: the %zu shares do not recombine to this store's master key "
				  "(a wrong or corrupted share, or shares of another store)",
				  count);
		goto out;
	}
	if (rv)
		goto out;
	rv = set_mk_locked(ks, mk);
	if (!rv)
		kw_debug(KW_DEBUG_STORE, "store: unlocked with %zu shares", count);
out:
	unlock(ks);
	OPENSSL_cleanse(mk, sizeof mk);
	free(text);
	free(check);
	return rv;
}

void kw_keystore_lock(struct kw_keystore *ks)
{
	if (!ks)
		return;
	lock(ks);
	kw_wipe_mk_locked(ks);
	unlock(ks);
	kw_debug(KW_DEBUG_STORE, "store: locked");
	kw_store_changed(ks); /* after the commit: a key read before it is not cached after it */
}
