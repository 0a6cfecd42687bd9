/*
 * What the store modules share: struct kw_keystore and the helpers that
 * cross their files. Together they are the keystore's policy, independent
 * of the backend; each file has one job:
 *
 *   keystore.c   open and close, the meta values
 *   unlock.c     the master key and its unlock methods (KDF and Shamir
 *                sharing: master.c)
 *   aad.c        the associated data that binds every policy field, sealing
 *                and unsealing keys under it (AES-256-GCM: seal.c)
 *   partition.c  partitions, enrollment, client credentials
 *   object.c     objects: create, find, list, delete, the attribute rules
 *                (one-way extractable and modifiable, owner/name changes
 *                only while modifiable), change owner, export, copy
 *   audit.c      the hash-chained audit log: append, verify, archive
 *   snapshot.c   backup and restore on the store's side (the file: backup.c)
 *
 * Below them lie the rows they exchange (row.h) and the backend that
 * stores them (backend.h, sqlite.c); above them only keystore.h.
 *
 * One mutex guards the backend connection and the master key. Every
 * mutation runs as one backend transaction, rolled back on any error, so
 * a failed call leaves the store as it was. A helper named *_locked needs
 * the caller to hold the mutex.
 */
#ifndef KW_KEYSTORE_INTERNAL_H
#define KW_KEYSTORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>

#include "keystore/backend.h"
#include "keystore/row.h"

#define AAD_MAX 256

struct kw_keystore {
	pthread_mutex_t mu;
	struct kw_backend *b;
	unsigned char *mk; /* secure heap; NULL while locked */
	char method[32];   /* "passphrase", "shamir 2-of-3", "dev", "" */
	/* bumped after every change of objects that a key cache may hold (kw_keystore_generation) */
	atomic_uint_fast64_t changes;
};

/* Every function that deletes, changes, moves or restores objects, or locks the store, calls this last. */
static inline void kw_store_changed(struct kw_keystore *ks)
{
	atomic_fetch_add(&ks->changes, 1);
}

static inline void lock(struct kw_keystore *ks)
{
	pthread_mutex_lock(&ks->mu);
}

static inline void unlock(struct kw_keystore *ks)
{
	pthread_mutex_unlock(&ks->mu);
}

static inline int64_t now(void)
{
	return (int64_t)time(NULL);
}

/* Commits, or rolls back when rv is an error. */
static inline kw_rv finish(struct kw_backend *b, kw_rv rv)
{
	if (rv)
		b->ops->rollback(b);
	else
		rv = b->ops->commit(b);
	return rv;
}

static inline bool is_key_class(enum kw_class cls)
{
	return cls == KW_CLASS_PRIVATE_KEY || cls == KW_CLASS_PUBLIC_KEY || cls == KW_CLASS_SECRET_KEY;
}

static inline bool is_sealed_class(enum kw_class cls)
{
	return cls == KW_CLASS_PRIVATE_KEY || cls == KW_CLASS_SECRET_KEY;
}

/* keystore.c: values in meta; KW_ERR_NOT_FOUND (no message) when absent */
kw_rv kw_meta_get_text(struct kw_backend *b, const char *key, char *buf, size_t cap);
kw_rv kw_meta_get_u64(struct kw_backend *b, const char *key, uint64_t *v);
kw_rv kw_meta_put_u64(struct kw_backend *b, const char *key, uint64_t v);
kw_rv kw_meta_put_text(struct kw_backend *b, const char *key, const char *v);
void kw_wipe_mk_locked(struct kw_keystore *ks);

/* unlock.c: KW_ERR_STORE_LOCKED, saying why, unless the master key is in memory */
kw_rv kw_need_unlocked(struct kw_keystore *ks);

/* partition.c */
/* The partition's name for a message ("#id" if unknown), keeping the thread's message. */
void kw_part_name_locked(struct kw_keystore *ks, uint64_t pid, char name[KW_PARTITION_NAME_MAX + 1]);
kw_rv kw_check_partition_name(const char *name);

/* aad.c */
kw_rv kw_spki_der(EVP_PKEY *pkey, unsigned char **out, size_t *len);
kw_rv kw_pkcs8_der(EVP_PKEY *pkey, unsigned char **out, size_t *len);
kw_rv kw_aad_build(const struct kw_object_row *r, const unsigned char *spki, size_t spki_len,
		   unsigned char out[AAD_MAX], size_t *len);
kw_rv kw_seal_bytes_locked(struct kw_keystore *ks, const struct kw_object_row *r, const unsigned char *key,
			   size_t key_len, const unsigned char *spki, size_t spki_len, struct kw_sealed *out);
kw_rv kw_seal_row_locked(struct kw_keystore *ks, const struct kw_object_row *r, EVP_PKEY *pkey,
			 const unsigned char *spki, size_t spki_len, struct kw_sealed *out);
kw_rv kw_tampered_locked(struct kw_keystore *ks, const struct kw_object_row *r, const char *why);
kw_rv kw_unseal_row_locked(struct kw_keystore *ks, const struct kw_object_row *r, const struct kw_sealed *s,
			   EVP_PKEY **out);
kw_rv kw_unseal_secret_locked(struct kw_keystore *ks, const struct kw_object_row *r, const struct kw_sealed *s,
			      unsigned char **key, size_t *key_len);

/* object.c: the checks a new row's fields pass */
kw_rv kw_check_owner(const char *owner);
kw_rv kw_check_name(const char *name);
kw_rv kw_check_ckaid(const unsigned char *ckaid, size_t len);

/* audit.c: records appended inside the caller's transaction */
kw_rv kw_audit_head_locked(struct kw_keystore *ks, uint64_t *seq, unsigned char hash[KW_HASH_LEN]);
kw_rv kw_audit_change_locked(struct kw_keystore *ks, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
kw_rv kw_audit_key_locked(struct kw_keystore *ks, const char *event, const struct kw_object_row *r);

#endif
