/*
 * The HSM backup file (keyward-admin backup/restore): a sealed snapshot of
 * the keystore, encoded and decoded buffer to buffer (so the decoder can be
 * fuzzed without a store). It never holds plain key material: private and
 * secret keys are carried as the store keeps them, sealed under the master
 * key and bound to their row by the associated data (keystore.h).
 *
 * Layout, all integers big-endian; "str"/"bytes" are a u32 length and that
 * many bytes (a str holds no NUL):
 *
 *   magic "KWBACKUP" (8) | u32 format (1) | u64 total file length
 *   u32 keystore schema version | master-key id (32) | i64 created (Unix s)
 *   u64 audit head seq | audit head hash (32) | str scope ("" = every partition)
 *   u32 partitions | u32 credentials | u32 objects
 *   partitions:  str name | u64 id at the source | u8 has setup | setup hash (32)
 *   credentials: fingerprint (32) | u32 partition index | str subject | i64 created | i64 revoked
 *   objects:     u32 partition index | u64 id | u64 pair id | str owner | str name
 *                | u32 class | u32 key type | u32 bits | str curve | bytes value
 *                | u8 flags (1 sensitive, 2 extractable, 4 modifiable,
 *                  8 never extractable, 16 always sensitive) | u32 usages
 *                | i64 created | bytes CKA_ID | str application
 *                | bytes spki | bytes wrapped data key | bytes sealed key
 *   SHA-256 (32) of every byte before it
 *
 * The master-key id is HMAC-SHA256(master key, "keyward backup id v1"): it
 * tells whether two HSMs hold the same master key and reveals nothing of it.
 * The declared length tells a truncated file from a damaged one; the
 * SHA-256 catches any other change. A backup is at most KW_BACKUP_MAX bytes.
 */
#ifndef KW_KEYSTORE_BACKUP_H
#define KW_KEYSTORE_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keystore/backend.h"

#define KW_BACKUP_MAGIC "KWBACKUP"
#define KW_BACKUP_MAGIC_LEN 8
#define KW_BACKUP_FORMAT 1
#define KW_BACKUP_MAX (64u * 1024u * 1024u) /* bytes of one backup file */
#define KW_BACKUP_PARTITIONS_MAX 10000u
#define KW_BACKUP_CREDENTIALS_MAX 100000u
#define KW_BACKUP_OBJECTS_MAX 100000u
#define KW_BACKUP_KEY_ID_LEN 32
#define KW_BACKUP_HASH_LEN 32

struct kw_backup_partition {
	char name[KW_PARTITION_NAME_MAX + 1];
	uint64_t source_id; /* its id in the store backed up: bound into its keys' associated data */
	bool has_setup;
	unsigned char setup_hash[KW_SETUP_HASH_LEN];
};

struct kw_backup_credential {
	unsigned char fingerprint[KW_FINGERPRINT_LEN];
	uint32_t partition; /* index into partitions */
	char subject[KW_SUBJECT_MAX + 1];
	int64_t created;
	int64_t revoked;
};

struct kw_backup_object {
	uint32_t partition; /* index into partitions; row.partition_id is that partition's source_id */
	struct kw_object_row row;
	struct kw_sealed sealed; /* private and secret keys only */
};

struct kw_backup {
	uint32_t format;
	uint32_t schema;
	unsigned char key_id[KW_BACKUP_KEY_ID_LEN];
	int64_t created;
	uint64_t audit_seq;
	unsigned char audit_hash[KW_BACKUP_HASH_LEN];
	char scope[KW_PARTITION_NAME_MAX + 1];
	struct kw_backup_partition *partitions;
	size_t n_partitions;
	struct kw_backup_credential *credentials;
	size_t n_credentials;
	struct kw_backup_object *objects;
	size_t n_objects;
	size_t cap_partitions, cap_credentials, cap_objects; /* allocated */
};

/* An empty backup to fill (format and scope set); NULL when out of memory. */
struct kw_backup *kw_backup_new(const char *scope);
void kw_backup_free(struct kw_backup *b);
/* Appends a slot (zeroed), NULL when out of memory or past the caps. */
struct kw_backup_partition *kw_backup_add_partition(struct kw_backup *b);
struct kw_backup_credential *kw_backup_add_credential(struct kw_backup *b);
struct kw_backup_object *kw_backup_add_object(struct kw_backup *b);

/* *out (malloc'd, *len bytes): the file. KW_ERR_DATA_LEN past KW_BACKUP_MAX. */
kw_rv kw_backup_encode(const struct kw_backup *b, unsigned char **out, size_t *len);
/*
 * Checks and parses a file. Errors (KW_ERR_ENCRYPTED_DATA for anything
 * wrong with the file) say what is wrong: not a backup, another format
 * version, truncated (and by how much), damaged (checksum), malformed.
 */
kw_rv kw_backup_decode(const unsigned char *buf, size_t len, struct kw_backup **out);

/* 64 hex digits and a NUL */
void kw_backup_hex(const unsigned char *bytes, size_t n, char *out);

#endif
