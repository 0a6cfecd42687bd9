/*
 * The rows the keystore's interface (keystore.h) and its backends
 * (backend.h) exchange: an object, a partition's and a credential's
 * summary, with their size limits. Below both, so a backend needs nothing
 * of the keystore above it. (A key row's sealed material: seal.h.)
 */
#ifndef KW_KEYSTORE_ROW_H
#define KW_KEYSTORE_ROW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <keyward/keyward.h>

#define KW_PARTITION_NAME_MAX 64
#define KW_SETUP_HASH_LEN 32
#define KW_FINGERPRINT_LEN 32
#define KW_CURVE_MAX 16
#define KW_AUDIT_HASH_LEN 32

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
	unsigned char ckaid[KW_CKAID_MAX]; /* PKCS#11 CKA_ID */
	size_t ckaid_len;
	char application[KW_APPLICATION_MAX + 1]; /* data objects: CKA_APPLICATION, else "" */
};

/* Frees row->value; the row itself is caller-owned. */
void kw_object_row_cleanup(struct kw_object_row *row);
void kw_object_rows_free(struct kw_object_row *rows, size_t n);

/* SHA-1 of the BIT STRING contents of a DER SubjectPublicKeyInfo: the default CKA_ID of a key pair. */
#define KW_CKAID_DEFAULT_LEN 20
kw_rv kw_keystore_default_ckaid(const unsigned char *spki, size_t spki_len,
				unsigned char out[KW_CKAID_DEFAULT_LEN]);

struct kw_partition_info {
	uint64_t id;
	char name[KW_PARTITION_NAME_MAX + 1];
	unsigned objects;
	unsigned credentials;
	bool setup_pending;
};

#define KW_SUBJECT_MAX 255 /* characters of a credential's subject kept for listing */
struct kw_credential_info {
	unsigned char fingerprint[KW_FINGERPRINT_LEN];
	char partition[KW_PARTITION_NAME_MAX + 1];
	char subject[KW_SUBJECT_MAX + 1];
	int64_t created; /* enrolled, seconds since the epoch */
	int64_t revoked; /* when revoked; 0 while valid */
};

#endif
