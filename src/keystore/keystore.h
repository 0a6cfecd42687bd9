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
 * Secret (AES) keys are sealed the same way, their raw bytes in place of
 * the PKCS#8 DER; having no public key, their associated data binds
 * SHA-256 of the empty string in its place (the class, also bound, tells
 * the two kinds apart).
 *
 * Certificates and data objects are public material and are stored as
 * they are, not sealed: a hand edit of such a row (its value or its flags)
 * is not detected, as for a public-key row on its own. Owner, name and
 * CKA_ID are identifiers, not policy, and are bound into no associated data.
 *
 * The master key lives only in memory (secure heap) between unlock and lock.
 * The store modules hold that policy, one job each (internal.h lists
 * them); a backend (backend.h: sqlite.c, later postgres.c) only stores
 * rows, so every backend seals the same way.
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

#include "keystore/row.h"

struct kw_keystore;

/*
 * The rows this interface hands out (struct kw_object_row,
 * kw_partition_info, kw_credential_info), their limits and cleanup: row.h.
 */

/* ---- opening ---- */

/*
 * url: "sqlite:/path/to/keystore.db" or a plain path (SQLite), or
 * "postgresql://[user@]host[:port]/db[?...]" (PostgreSQL, shared by
 * several nodes). Creates the file or tables and schema when missing;
 * migrates older schemas forward.
 * max_bytes: 0, or a size cap for the store (SQLite max_page_count), past
 * which writes fail with KW_ERR_STORE_FULL; PostgreSQL ignores it (warns).
 */
kw_rv kw_keystore_open(const char *url, uint64_t max_bytes, struct kw_keystore **out);
void kw_keystore_free(struct kw_keystore *ks);
/* "postgresql://..." or "postgres://..." */
bool kw_keystore_url_is_postgres(const char *url);

/*
 * Whether other processes may change the store under this one (a shared
 * PostgreSQL store). kw_keystore_generation gives a counter that every
 * committed deletion, change, move or restore of objects and every lock
 * of the store bumps (and, on a shared store, every revocation of a
 * credential, on whichever node); what was cached or checked under one
 * value is stale once it differs. A key cache compares it before every
 * use, so no caller invalidates by hand.
 */
bool kw_keystore_shared(struct kw_keystore *ks);
kw_rv kw_keystore_generation(struct kw_keystore *ks, uint64_t *gen);

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
 * Deletes partition name with every object and client credential in it, in
 * one transaction; *out (may be NULL) gets what it held. KW_ERR_NOT_FOUND
 * if there is no such partition.
 */
kw_rv kw_keystore_partition_delete(struct kw_keystore *ks, const char *name, struct kw_partition_info *out);

/*
 * Consumes the setup password: atomically checks the hash (constant time)
 * and, if it matches, clears it and records the credential. KW_ERR_AUTH on
 * mismatch or when no setup is pending, so a password works exactly once.
 */
kw_rv kw_keystore_enroll(struct kw_keystore *ks, uint64_t partition_id,
			 const unsigned char setup_hash[KW_SETUP_HASH_LEN],
			 const unsigned char fingerprint[KW_FINGERPRINT_LEN], const char *subject);

/* The partition a client certificate (SHA-256 of its DER) belongs to. KW_ERR_AUTH if unknown or revoked. */
kw_rv kw_keystore_credential_find(struct kw_keystore *ks, const unsigned char fingerprint[KW_FINGERPRINT_LEN],
				  uint64_t *partition_id);

/* The credentials of partition (NULL or "": of all), by partition and time; caller frees *out with free(). */
kw_rv kw_keystore_credential_list(struct kw_keystore *ks, const char *partition, struct kw_credential_info **out,
				  size_t *n);
/*
 * Revokes a credential: from now on kw_keystore_credential_find refuses it.
 * KW_ERR_NOT_FOUND if unknown; revoking twice keeps the first time.
 */
kw_rv kw_keystore_credential_revoke(struct kw_keystore *ks, const unsigned char fingerprint[KW_FINGERPRINT_LEN]);

/* ---- objects ---- */

struct kw_keygen {
	const char *owner;
	const char *name;
	bool extractable;
	bool modifiable;
	unsigned usages;
	const unsigned char *ckaid; /* CKA_ID, or NULL/ckaid_len 0 for the default */
	size_t ckaid_len;
	enum kw_key_type secret_type; /* put_secret: KW_KEY_AES (also KW_KEY_NONE) or KW_KEY_GENERIC */
	bool imported;		      /* unwrapped, not made here: never_extractable and always_sensitive false */
	/*
	 * put_secret: made by DeriveKey from a base key. Never-extractable only
	 * if the base key was too (PKCS#11 C_DeriveKey); the row's usages carry
	 * KW_ROW_DERIVED.
	 */
	bool derived;
	bool base_never_extractable;
};

/*
 * In a row's usages, beside the KW_USAGE_* bits: the key was derived
 * (PKCS#11: not CKA_LOCAL; a copy keeps it). Not a usage, but a fact kept
 * where the sealing binds it, so it cannot be edited away; keywardd strips
 * it from the usages it sends (ObjectInfo.derived says it).
 */
#define KW_ROW_DERIVED 0x10000u

/* Whether a secret key of type t may have len bytes: AES 16, 24, 32; generic KW_GENERIC_MIN to _MAX. */
bool kw_secret_len_ok(enum kw_key_type t, size_t len);

/* kw_keystore_default_ckaid, the default CKA_ID of a key pair: row.h */

/*
 * Stores a freshly generated key pair: seals the private half, inserts both
 * rows in one transaction, fills priv/pub (cleanup with
 * kw_object_row_cleanup). Both halves get spec's CKA_ID, or by default
 * kw_keystore_default_ckaid of the public key. KW_ERR_EXISTS if owner+name
 * is taken by a key (private, public or secret: a certificate or data
 * object of the same name is no conflict), KW_ERR_STORE_FULL when the
 * disk or the cap is full, KW_ERR_STORE_LOCKED.
 */
kw_rv kw_keystore_put_keypair(struct kw_keystore *ks, uint64_t partition_id, const struct kw_keygen *spec,
			      EVP_PKEY *pkey, struct kw_object_row *priv, struct kw_object_row *pub);
/*
 * The two rows put_keypair stores, checked and filled but with no ids and
 * no partition, stored nowhere (keywardd's session objects).
 */
kw_rv kw_keystore_keypair_rows(const struct kw_keygen *spec, EVP_PKEY *pkey, struct kw_object_row *priv,
			       struct kw_object_row *pub);

/*
 * Stores a freshly generated AES key (16, 24 or 32 bytes, else
 * KW_ERR_KEY_SIZE), or with spec->secret_type KW_KEY_GENERIC a generic
 * secret (KW_GENERIC_MIN to _MAX bytes), as one KW_CLASS_SECRET_KEY row, sealed like a private
 * key (pair_id 0; no CKA_ID unless spec gives one). The same conflicts and
 * errors as put_keypair. The caller wipes key.
 */
kw_rv kw_keystore_put_secret(struct kw_keystore *ks, uint64_t partition_id, const struct kw_keygen *spec,
			     const unsigned char *key, size_t key_len, struct kw_object_row *out);

/*
 * Stores a certificate, data object or public key (public material, not
 * sealed). cls KW_CLASS_PUBLIC_KEY: value one DER SubjectPublicKeyInfo of
 * a key type and size the HSM makes, usages as kw_objspec says.
 * cls KW_CLASS_CERTIFICATE: value must be exactly one DER X.509
 * certificate; KW_CLASS_DATA: 0 to KW_OBJECT_VALUE_MAX bytes and an
 * optional application (certificates have none). Bad values:
 * KW_ERR_ATTRIBUTE_VALUE; KW_ERR_EXISTS if owner has an object of that
 * class and name. Extractable, not sensitive, usages 0.
 */
struct kw_objspec {
	const char *owner;
	const char *name;
	enum kw_class cls;
	const unsigned char *value;
	size_t value_len;
	const unsigned char *ckaid;
	size_t ckaid_len;
	const char *application; /* NULL or "" for none */
	bool modifiable;
	unsigned usages; /* KW_CLASS_PUBLIC_KEY: KW_USAGE_SIGN (verify), _DECRYPT (encrypt), _WRAP; else 0 */
};
kw_rv kw_keystore_put_object(struct kw_keystore *ks, uint64_t partition_id, const struct kw_objspec *spec,
			     struct kw_object_row *out);
/* The row put_object stores, checked and filled but with no id and no partition, stored nowhere. */
kw_rv kw_keystore_object_row(const struct kw_objspec *spec, struct kw_object_row *out);

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

/*
 * Unseals a secret key for use inside the HSM (as a wrapping key): *key
 * (malloc'd, *len bytes) is the caller's to wipe and free. KW_ERR_KEY_TYPE
 * unless the object is a secret key; KW_ERR_TAMPERED, KW_ERR_STORE_LOCKED
 * as load_private. *row (may be NULL) gets the row, for its usages.
 */
kw_rv kw_keystore_load_secret(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, unsigned char **key,
			      size_t *len, struct kw_object_row *row);

/*
 * The plaintext of an *extractable* key, to be wrapped and sent out: a
 * private key's PKCS#8 DER or a secret key's bytes, in *out (malloc'd; the
 * caller wipes and frees it). Refuses here too (defence in depth) a key
 * that is not extractable: KW_ERR_UNEXTRACTABLE, "it can never leave the
 * HSM". KW_ERR_KEY_TYPE for anything but a private or secret key. *row
 * (may be NULL) gets the key's row.
 */
kw_rv kw_keystore_export_key(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, unsigned char **out,
			     size_t *len, struct kw_object_row *row);

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
 * set_attributes plus a new CKA_ID: with set_ckaid, ckaid (0 to
 * KW_CKAID_MAX bytes) replaces the CKA_ID of the object and of its pair
 * half, which needs both modifiable (KW_ERR_NOT_MODIFIABLE). All changes
 * or none, in one transaction.
 */
struct kw_attr_change {
	int extractable;      /* -1 unchanged, 0, 1 */
	int modifiable;       /* -1 unchanged, 0, 1 */
	const char *new_name; /* NULL to keep */
	bool set_ckaid;
	const unsigned char *ckaid;
	size_t ckaid_len;
};
kw_rv kw_keystore_modify(struct kw_keystore *ks, uint64_t partition_id, uint64_t id,
			 const struct kw_attr_change *chg);

/*
 * Copies object id under the same owner as new_name, in one transaction:
 * a key pair as both halves (new ids, the private half resealed under the
 * copy's fields), other objects as one row. extractable/modifiable: -1 as
 * the source, 0/1 the copy's value, which may only be tighter than the
 * source's (KW_ERR_ATTRIBUTE_VALUE for false -> true). never_extractable,
 * always_sensitive, usages, CKA_ID and value carry over; created is now.
 * Copying needs no modifiable source: the source is not changed.
 * KW_ERR_EXISTS when the name is taken (for keys: by any key).
 * *rows (private half first) and *n are the copies.
 */
kw_rv kw_keystore_copy(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, const char *new_name,
		       int extractable, int modifiable, struct kw_object_row **rows, size_t *n);

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
 * Every change to an object (key.generate, object.create,
 * key.set_attributes, key.change_owner, object.copy) appends its audit
 * record inside its own transaction: a change whose record cannot be
 * written is rolled back. A deletion (key.delete) is recorded right after
 * it commits, since deleting is how room is made in a full store. The record names the partition and actor the
 * calling thread set here (keywardd sets them for each request); without
 * one, the actor is "keystore".
 */
void kw_keystore_set_actor(const char *partition, const char *actor);


/*
 * Appends one record: seq, time, partition ("" for the HSM), actor (client
 * certificate subject, "admin", "keywardd"), event ("key.generate",
 * "key.sign", "partition.create", "unlock.fail", ...), detail (free text,
 * never a secret). hash = SHA-256(prev_hash || canonical record).
 */
kw_rv kw_keystore_audit(struct kw_keystore *ks, const char *partition, const char *actor, const char *event,
			const char *detail);

/* The chain head: the last record's seq and hash (0 and zeros for an empty log). */
kw_rv kw_keystore_audit_head(struct kw_keystore *ks, uint64_t *seq, unsigned char hash[KW_AUDIT_HASH_LEN]);

struct kw_audit_report {
	bool ok;
	uint64_t records;
	uint64_t first_bad; /* seq of the first broken or missing record */
	char problem[256];
	uint64_t head_seq;  /* the chain head, to be saved outside the store */
	unsigned char head_hash[KW_AUDIT_HASH_LEN];
	uint64_t base_seq;  /* the last archived record (0: none); the store's chain starts after it */
	unsigned char base_hash[KW_AUDIT_HASH_LEN];
};
kw_rv kw_keystore_audit_verify(struct kw_keystore *ks, struct kw_audit_report *out);
/*
 * kw_keystore_audit_verify, and a head saved earlier (expect_seq > 0) must
 * still be in the chain: its record present with expect_hash. A consistent
 * rewrite of the tail (records and head recomputed) passes the chain check
 * but not this one.
 */
kw_rv kw_keystore_audit_verify_head(struct kw_keystore *ks, uint64_t expect_seq,
				    const unsigned char expect_hash[KW_AUDIT_HASH_LEN], struct kw_audit_report *out);

/*
 * Size policy: moves every record but the newest `keep` to a new file in
 * dir ("FIRST-LAST.audit", one record a line: seq, time, prev_hash, hash
 * and the four fields, hex), fsynced before the records leave the store.
 * In the same transaction that deletes them, the store keeps the last
 * archived record's seq and hash as its chain base and appends an
 * "audit.archive" record naming the file. *archived (may be NULL) is how
 * many records moved (0: nothing to do); file (may be NULL, size bytes)
 * the file written.
 */
kw_rv kw_keystore_audit_archive(struct kw_keystore *ks, const char *dir, uint64_t keep, uint64_t *archived,
				char *file, size_t size);
/* Records in the store (after the archived base). */
kw_rv kw_keystore_audit_count(struct kw_keystore *ks, uint64_t *records);

/* One audit record as read back (kw_keystore_audit_list). */
struct kw_audit_entry {
	uint64_t seq;
	int64_t time;
	char *partition; /* "" for the HSM */
	char *actor;
	char *event;
	char *detail;
	unsigned char prev_hash[KW_AUDIT_HASH_LEN];
	unsigned char hash[KW_AUDIT_HASH_LEN];
};
/* Where a page of records sits in the log (kw_keystore_audit_list). */
struct kw_audit_page {
	struct kw_audit_entry *entries; /* free with kw_audit_page_cleanup */
	size_t n;
	bool more;	   /* records after the last entry */
	uint64_t head_seq; /* the chain head when the page was read */
	uint64_t base_seq; /* the last archived record (0: none) */
	unsigned char base_hash[KW_AUDIT_HASH_LEN];
};
/*
 * A page of the log, one consistent read: the records with seq > since, in
 * seq order, at most limit of them (1 to KW_AUDIT_PAGE_MAX; 0 means the
 * maximum) and, after the first, no more than max_bytes of text fields in
 * all (0: no such bound), so a page fits in a frame.
 */
#define KW_AUDIT_PAGE_MAX 1000
kw_rv kw_keystore_audit_list(struct kw_keystore *ks, uint64_t since, unsigned limit, size_t max_bytes,
			     struct kw_audit_page *out);
void kw_audit_page_cleanup(struct kw_audit_page *page);
/*
 * The hash of a record after prev: SHA-256(prev || version 1 || seq || time
 * || four length-prefixed fields), as audit verify checks it. For tools that
 * re-check an exported log offline.
 */
kw_rv kw_audit_entry_hash(const unsigned char prev[KW_AUDIT_HASH_LEN], const struct kw_audit_entry *e,
			  unsigned char out[KW_AUDIT_HASH_LEN]);

/*
 * Verifies the archive files in dir as one chain from record 1: every
 * record's hash, every link, no gap. out->records counts them; on success
 * head_seq/head_hash are the last archived record, to be compared with a
 * store's base_seq/base_hash.
 */
kw_rv kw_audit_archives_verify(const char *dir, struct kw_audit_report *out);

/* ---- backup and restore (the file format: backup.h) ---- */

/*
 * The master-key id of this HSM: HMAC-SHA256(master key, "keyward backup
 * id v1"). Two HSMs with the same id hold the same master key; the id
 * reveals nothing of it. KW_ERR_STORE_LOCKED while locked.
 */
kw_rv kw_keystore_key_id(struct kw_keystore *ks, unsigned char id[32]);

struct kw_backup_summary {
	unsigned partitions, credentials, objects, keys;
	uint64_t audit_seq; /* the audit head the backup records */
	unsigned char key_id[32];
};

/*
 * A sealed snapshot of partition (NULL or "": of every partition) as a
 * backup file in *out (malloc'd, *len bytes, at most KW_BACKUP_MAX):
 * partitions with their setup-password hash, credentials, objects with
 * private and secret keys sealed exactly as stored, the audit head. One
 * transaction, which also appends the "hsm.backup" audit record. Needs the
 * HSM unlocked (for the master-key id). KW_ERR_NOT_FOUND for an unknown
 * partition, KW_ERR_DATA_LEN when the store is larger than one file.
 */
kw_rv kw_keystore_backup(struct kw_keystore *ks, const char *partition, unsigned char **out, size_t *len,
			 struct kw_backup_summary *sum);

struct kw_restore_summary {
	unsigned partitions_created, partitions_kept;
	unsigned credentials_added, credentials_kept;
	unsigned objects_added, objects_kept; /* kept: already here, identical */
	unsigned keys_resealed;		      /* rebound to another partition id than at the source */
	int64_t created;		      /* when the backup was taken */
};

/*
 * Restores a backup file in one transaction, which also appends the
 * "hsm.restore" audit record. Before anything is written it refuses, with
 * a message saying what is wrong: a file that is not a backup, truncated
 * or damaged (KW_ERR_ENCRYPTED_DATA); one sealed under another master key
 * (KW_ERR_AUTH); one of a newer schema (KW_ERR_VERSION); a sealed key that
 * does not authenticate (KW_ERR_TAMPERED). Partitions are matched by name
 * (a missing one is created with the backup's setup-password hash);
 * objects keep their ids. An object whose id exists here identical is kept;
 * one that differs, or whose name is taken by another object, is refused
 * (KW_ERR_EXISTS, naming it), and so is a credential enrolled here in
 * another partition. A key whose partition has another id here than at the
 * source is unsealed and resealed inside keywardd under its new associated
 * data; the others are stored exactly as in the file.
 */
kw_rv kw_keystore_restore(struct kw_keystore *ks, const unsigned char *buf, size_t len, struct kw_restore_summary *sum);

#endif
