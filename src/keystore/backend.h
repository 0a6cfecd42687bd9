/*
 * The row-storage interface under the keystore. A backend stores and
 * returns rows (row.h) and a key row's sealed material as it is (seal.h);
 * it knows nothing of sealing, master keys or policy, which live in the
 * store modules above it (internal.h), so every backend (SQLite: sqlite.c,
 * PostgreSQL: pg.c) protects keys the same way.
 *
 * Callers hold the keystore mutex around every call, so a backend needs no
 * locking of its own. Mutations run between begin() and commit(); any
 * error is followed by rollback(). Every failure sets the thread's message
 * (kw_error_set), except meta_get's plain KW_ERR_NOT_FOUND. A unique
 * constraint violation is KW_ERR_EXISTS, a full disk or cap
 * KW_ERR_STORE_FULL, any other storage failure KW_ERR_STORE.
 */
#ifndef KW_KEYSTORE_BACKEND_H
#define KW_KEYSTORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keystore/row.h"
#include "keystore/seal.h"

#define KW_HASH_LEN KW_AUDIT_HASH_LEN

struct kw_audit_rec {
	uint64_t seq;
	int64_t time;
	char *partition;
	char *actor;
	char *event;
	char *detail;
	unsigned char prev_hash[KW_HASH_LEN];
	unsigned char hash[KW_HASH_LEN];
};

struct kw_backend;

typedef kw_rv (*kw_audit_cb)(void *ctx, const struct kw_audit_rec *rec);

struct kw_backend_ops {
	void (*close)(struct kw_backend *b);
	kw_rv (*begin)(struct kw_backend *b); /* an immediate (write) transaction */
	kw_rv (*commit)(struct kw_backend *b);
	void (*rollback)(struct kw_backend *b);

	/* KW_ERR_NOT_FOUND (no message) when the key is absent; *val is malloc'd */
	kw_rv (*meta_get)(struct kw_backend *b, const char *key, unsigned char **val, size_t *len);
	kw_rv (*meta_put)(struct kw_backend *b, const char *key, const void *val, size_t len);

	kw_rv (*partition_insert)(struct kw_backend *b, const char *name, const unsigned char *setup_hash,
				  int64_t created, uint64_t *id_out);
	/* by name, or by id when name is NULL; setup_hash/has_setup may be NULL */
	kw_rv (*partition_get)(struct kw_backend *b, const char *name, uint64_t id, struct kw_partition_info *out,
			       unsigned char setup_hash[KW_SETUP_HASH_LEN], bool *has_setup);
	kw_rv (*partition_list)(struct kw_backend *b, struct kw_partition_info **out, size_t *n);
	kw_rv (*partition_set_setup)(struct kw_backend *b, uint64_t id, const unsigned char *setup_hash);
	/* the partition with its objects and credentials; KW_ERR_NOT_FOUND (with a message) when unknown */
	kw_rv (*partition_delete)(struct kw_backend *b, uint64_t id);

	kw_rv (*credential_insert)(struct kw_backend *b, const unsigned char fp[KW_FINGERPRINT_LEN],
				   uint64_t partition_id, const char *subject, int64_t created);
	/* KW_ERR_AUTH (with a message) when unknown or revoked */
	kw_rv (*credential_find)(struct kw_backend *b, const unsigned char fp[KW_FINGERPRINT_LEN],
				 uint64_t *partition_id);
	/* partition NULL: all; *out is malloc'd */
	kw_rv (*credential_list)(struct kw_backend *b, const char *partition, struct kw_credential_info **out,
				 size_t *n);
	/* KW_ERR_NOT_FOUND (with a message) when unknown; an earlier revocation time is kept */
	kw_rv (*credential_revoke)(struct kw_backend *b, const unsigned char fp[KW_FINGERPRINT_LEN], int64_t when);

	/* sealed may be NULL */
	kw_rv (*object_insert)(struct kw_backend *b, const struct kw_object_row *row, const struct kw_sealed *sealed);
	/* sealed may be NULL; KW_ERR_NOT_FOUND unless id is in the partition */
	kw_rv (*object_get)(struct kw_backend *b, uint64_t partition_id, uint64_t id, struct kw_object_row *out,
			    struct kw_sealed *sealed);
	/* ordered by id; owner/name NULL and cls KW_CLASS_ANY match all; limit 0 = no limit */
	kw_rv (*object_list)(struct kw_backend *b, uint64_t partition_id, const char *owner, const char *name,
			     enum kw_class cls, uint64_t after_id, unsigned limit, struct kw_object_row **rows,
			     size_t *n);
	/* rewrites owner, name, flags, usages, pair_id; the sealed columns too when sealed != NULL */
	kw_rv (*object_update)(struct kw_backend *b, const struct kw_object_row *row, const struct kw_sealed *sealed);
	kw_rv (*object_delete)(struct kw_backend *b, uint64_t partition_id, uint64_t id);

	kw_rv (*audit_insert)(struct kw_backend *b, const struct kw_audit_rec *rec);
	/* in seq order; stops at the first non-OK return of cb and returns it */
	kw_rv (*audit_foreach)(struct kw_backend *b, kw_audit_cb cb, void *ctx);
	/* removes the records up to and including seq (archived) */
	kw_rv (*audit_delete_upto)(struct kw_backend *b, uint64_t seq);

	/*
	 * A counter the backend bumps with every change of objects (insert,
	 * update, delete, a partition's removal) and every revocation of a
	 * credential, committed with the change, so a node sharing the store
	 * with others knows when its cached keys or credential checks may be
	 * stale. NULL for a store that only one process opens (SQLite).
	 */
	kw_rv (*generation)(struct kw_backend *b, uint64_t *gen);
};

struct kw_backend {
	const struct kw_backend_ops *ops;
};

/* path: a file name, or ":memory:" */
kw_rv kw_sqlite_open(const char *path, uint64_t max_bytes, struct kw_backend **out);
/* url: a libpq connection URI (postgresql://...) or key=value string */
kw_rv kw_pg_open(const char *url, uint64_t max_bytes, struct kw_backend **out);

#endif
