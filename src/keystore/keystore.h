/*
 * The keystore: everything keywardd keeps on disk, behind one interface.
 *
 *   partitions   the security boundary; each has a one-time setup password
 *                (stored as a hash) until a client enrolls
 *   credentials  client certificates issued to a partition, by fingerprint
 *   objects      keys (private and public halves as two rows), certificates
 *                and data objects, each filed under owner + name
 *   audit        a hash-chained log of every administrative and key-use event
 *   meta         the wrapped master key, schema version, counters
 *
 * Private keys are sealed here and nowhere else: a per-object data key
 * encrypts the PKCS#8 DER with AES-256-GCM, the data key is wrapped by the
 * master key, and every policy-relevant field (partition, object id, class,
 * key type, bits/curve, extractable, modifiable, sensitive, usages, the
 * public key) is bound into the associated data. A row edited by hand fails
 * to unseal and is reported as KW_ERR_TAMPERED, never obeyed.
 *
 * The master key lives only in memory (secure heap) between unlock and lock.
 * keystore.c holds that policy; a backend (sqlite.c, later postgres.c) only
 * stores rows, so every backend seals the same way.
 *
 * Thread-safety: every function may be called from several threads.
 * Every failing call sets the thread's message (kw_error_set) and changes
 * nothing: each mutation is one transaction.
 */
#ifndef KW_KEYSTORE_H
#define KW_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <keyward/keyward.h>

struct kw_keystore;

#define KW_PARTITION_NAME_MAX 64
#define KW_SETUP_HASH_LEN 32
#define KW_FINGERPRINT_LEN 32
#define KW_CURVE_MAX 16

/* One object row, as the daemon sees it (never with private key bytes). */
struct kw_object_row {
	uint64_t id;
	uint64_t partition_id;
	uint64_t pair_id; /* the other half of a key pair, or 0 */
	char owner[KW_OWNER_MAX + 1];
	char name[KW_NAME_MAX + 1];
	enum kw_class cls;
	enum kw_key_type key_type;
	unsigned bits;
	char curve[KW_CURVE_MAX]; /* "P-256", "P-384", "P-521", "Ed25519", "" */
	unsigned char *value;     /* public key: DER SPKI; certificate: DER; data: bytes */
	size_t value_len;
	bool sensitive;
	bool extractable;
	bool modifiable;
	bool never_extractable;
	bool always_sensitive;
	unsigned usages; /* KW_USAGE_* */
	int64_t created; /* Unix seconds */
};

/* Frees row->value; the row itself is caller-owned. */
void kw_object_row_cleanup(struct kw_object_row *row);
void kw_object_rows_free(struct kw_object_row *rows, size_t n);

/* ---- opening ---- */

/*
 * url: "sqlite:/path/to/keystore.db" or a plain path (SQLite).
 * Creates the file and schema when missing; migrates older schemas forward.
 * max_bytes: 0, or a size cap for the store (SQLite max_page_count), past
 * which writes fail with KW_ERR_STORE_FULL.
 */
kw_rv kw_keystore_open(const char *url, uint64_t max_bytes, struct kw_keystore **out);
void kw_keystore_free(struct kw_keystore *ks);

/* ---- master key ---- */

bool kw_keystore_initialized(struct kw_keystore *ks);
bool kw_keystore_locked(struct kw_keystore *ks);
/* "passphrase", "shamir 2-of-3", or "" before init */
const char *kw_keystore_unlock_method(struct kw_keystore *ks);

/*
 * Creates the master key and keeps it sealed under a security officer's
 * passphrase (scrypt, N=2^17 r=8 p=1 → AES-256-GCM), or split into
 * `shares` Shamir shares of which `threshold` recover it (libgfshare; a
 * check value under the master key tells a wrong set of shares). Leaves the
 * store unlocked. Shares are text ("kw1-<index>-<hex>"); the caller prints
 * them once and frees them with kw_keystore_shares_free (which wipes).
 * KW_ERR_ALREADY_INITIALIZED if a master key exists.
 */
kw_rv kw_keystore_init_passphrase(struct kw_keystore *ks, const char *passphrase);
kw_rv kw_keystore_init_shamir(struct kw_keystore *ks, unsigned shares, unsigned threshold, char ***shares_out);
void kw_keystore_shares_free(char **shares, unsigned n);

/* KW_ERR_AUTH for a wrong passphrase or a wrong/insufficient set of shares. */
kw_rv kw_keystore_unlock_passphrase(struct kw_keystore *ks, const char *passphrase);
kw_rv kw_keystore_unlock_shares(struct kw_keystore *ks, const char *const *shares, size_t count);
/* Wipes the master key from memory. */
void kw_keystore_lock(struct kw_keystore *ks);

/*
 * A random key for development mode: init + unlock in one step with a
 * throwaway passphrase that is never stored. The store's meta records the
 * method "dev"; the key lives only in memory, so after a restart the store
 * cannot be unlocked again (unlock returns KW_ERR_AUTH saying so): dev mode
 * always starts from a fresh store file. KW_ERR_ALREADY_INITIALIZED if a
 * master key exists.
 */
kw_rv kw_keystore_init_dev(struct kw_keystore *ks);

/* ---- partitions ---- */

struct kw_partition_info {
	uint64_t id;
	char name[KW_PARTITION_NAME_MAX + 1];
	unsigned objects;
	unsigned credentials;
	bool setup_pending;
};

/* Name: 1-64 of [A-Za-z0-9._-]. KW_ERR_EXISTS if taken. */
kw_rv kw_keystore_partition_create(struct kw_keystore *ks, const char *name,
				   const unsigned char setup_hash[KW_SETUP_HASH_LEN], uint64_t *id_out);
/* KW_ERR_NOT_FOUND if there is no such partition. */
kw_rv kw_keystore_partition_get(struct kw_keystore *ks, const char *name, struct kw_partition_info *out);
kw_rv kw_keystore_partition_name(struct kw_keystore *ks, uint64_t id, char name[KW_PARTITION_NAME_MAX + 1]);
/* caller frees *out with free() */
kw_rv kw_keystore_partition_list(struct kw_keystore *ks, struct kw_partition_info **out, size_t *n);
/* Replaces the pending setup-password hash (NULL clears it). */
kw_rv kw_keystore_partition_set_setup(struct kw_keystore *ks, uint64_t id,
				      const unsigned char setup_hash[KW_SETUP_HASH_LEN]);

/*
 * Consumes the setup password: atomically checks the hash (constant time)
 * and, if it matches, clears it and records the credential. KW_ERR_AUTH on
 * mismatch or when no setup is pending, so a password works exactly once.
 */
kw_rv kw_keystore_enroll(struct kw_keystore *ks, uint64_t partition_id,
			 const unsigned char setup_hash[KW_SETUP_HASH_LEN],
			 const unsigned char fingerprint[KW_FINGERPRINT_LEN], const char *subject);

/* The partition a client certificate (SHA-256 of its DER) belongs to. KW_ERR_AUTH if unknown. */
kw_rv kw_keystore_credential_find(struct kw_keystore *ks, const unsigned char fingerprint[KW_FINGERPRINT_LEN],
				  uint64_t *partition_id);

/* ---- objects ---- */

struct kw_keygen {
	const char *owner;
	const char *name;
	bool extractable;
	bool modifiable;
	unsigned usages;
};

/*
 * Stores a freshly generated key pair: seals the private half, inserts both
 * rows in one transaction, fills priv/pub (cleanup with
 * kw_object_row_cleanup). KW_ERR_EXISTS if owner+name is taken (by a
 * private or public key: a certificate of the same name is no conflict),
 * KW_ERR_STORE_FULL when the disk or the cap is full, KW_ERR_STORE_LOCKED.
 */
kw_rv kw_keystore_put_keypair(struct kw_keystore *ks, uint64_t partition_id, const struct kw_keygen *spec,
			      EVP_PKEY *pkey, struct kw_object_row *priv, struct kw_object_row *pub);

/* KW_ERR_NOT_FOUND unless the object exists in this partition. */
kw_rv kw_keystore_get(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, struct kw_object_row *out);
/* cls KW_CLASS_ANY: the private key if there is one, else public, certificate, data. */
kw_rv kw_keystore_find(struct kw_keystore *ks, uint64_t partition_id, const char *owner, const char *name,
		       enum kw_class cls, struct kw_object_row *out);

/*
 * Objects of a partition ordered by id, those with id > after_id, at most
 * limit (0, or more than 1000, means 1000); owner/name NULL for any. *more
 * tells whether another page exists.
 */
kw_rv kw_keystore_list(struct kw_keystore *ks, uint64_t partition_id, const char *owner, const char *name,
		       uint64_t after_id, unsigned limit, struct kw_object_row **rows, size_t *n, bool *more);

/*
 * Unseals a private key (KW_ERR_STORE_LOCKED while locked, KW_ERR_TAMPERED
 * when the row does not authenticate or its public key does not match).
 * The EVP_PKEY is the caller's; the key bytes were wiped.
 */
kw_rv kw_keystore_load_private(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, EVP_PKEY **out);

/* By id, or owner+name (+class, KW_CLASS_ANY for all). *deleted counts rows. */
kw_rv kw_keystore_delete(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, const char *owner,
			 const char *name, enum kw_class cls, unsigned *deleted);

/*
 * extractable/modifiable: -1 unchanged, 0/1 the new value; each may only go
 * true -> false (KW_ERR_ATTRIBUTE_VALUE otherwise). new_name (NULL to keep)
 * renames the object and its pair half. Any change needs modifiable
 * (KW_ERR_NOT_MODIFIABLE), except setting modifiable false itself and
 * extractable false. Reseals the private half under the new fields.
 */
kw_rv kw_keystore_set_attributes(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, int extractable,
				 int modifiable, const char *new_name);

/*
 * Moves every object named `name` from old_owner to new_owner in one
 * transaction. Refuses, changing nothing: KW_ERR_NOT_FOUND (none under
 * old_owner), KW_ERR_EXISTS (new_owner has the name), KW_ERR_NOT_MODIFIABLE
 * (any of them is not modifiable). Fills the moved rows.
 */
kw_rv kw_keystore_change_owner(struct kw_keystore *ks, uint64_t partition_id, const char *name,
			       const char *old_owner, const char *new_owner, struct kw_object_row **moved,
			       size_t *n);

/* ---- audit ---- */

/*
 * Appends one record: seq, time, partition ("" for the HSM), actor (client
 * certificate subject, "admin", "keywardd"), event ("key.generate",
 * "key.sign", "partition.create", "unlock.fail", ...), detail (free text,
 * never a secret). hash = SHA-256(prev_hash || canonical record).
 */
kw_rv kw_keystore_audit(struct kw_keystore *ks, const char *partition, const char *actor, const char *event,
			const char *detail);

struct kw_audit_report {
	bool ok;
	uint64_t records;
	uint64_t first_bad; /* seq of the first broken or missing record */
	char problem[256];
};
kw_rv kw_keystore_audit_verify(struct kw_keystore *ks, struct kw_audit_report *out);

#endif
