/*
 * libkeyward: the client library of the keyward network HSM.
 *
 * A kw_client reads one INI configuration (see docs/client.conf.5 and
 * kw_client_new), keeps a small pool of TLS 1.3 connections to the HSMs it
 * names, fails over between them by priority, and reconnects after fork().
 * Every function is safe to call from several threads on one kw_client.
 *
 * Errors: every call returns a kw_rv (0 = KW_OK). The calling thread's
 * kw_last_error() then says in words what went wrong and where.
 *
 * Private keys never cross this API: keys are named by id (fast path) or by
 * owner + name, and the HSM performs every private-key operation.
 */
#ifndef KEYWARD_KEYWARD_H
#define KEYWARD_KEYWARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KW_PROTOCOL_VERSION 1
#define KW_DEFAULT_PORT 7117
#define KW_OWNER_MAX 128
#define KW_NAME_MAX 128

/* One error enum; the numbers equal the wire's Status (proto/keyward.proto). */
typedef enum kw_rv {
	KW_OK = 0,
	KW_ERR_GENERAL = 1,
	KW_ERR_NO_MEMORY = 2,
	KW_ERR_ARGUMENTS = 3,
	KW_ERR_PROTOCOL = 4,
	KW_ERR_VERSION = 5,
	KW_ERR_NETWORK = 6,
	KW_ERR_TIMEOUT = 7,
	KW_ERR_UNREACHABLE = 8,
	KW_ERR_AUTH = 9,
	KW_ERR_LOCKED_OUT = 10,
	KW_ERR_PERMISSION = 11,
	KW_ERR_STORE_LOCKED = 12,
	KW_ERR_NOT_INITIALIZED = 13,
	KW_ERR_ALREADY_INITIALIZED = 14,
	KW_ERR_NOT_FOUND = 15,
	KW_ERR_EXISTS = 16,
	KW_ERR_NOT_MODIFIABLE = 17,
	KW_ERR_UNEXTRACTABLE = 18,
	KW_ERR_SENSITIVE = 19,
	KW_ERR_ATTRIBUTE_VALUE = 20,
	KW_ERR_MECHANISM = 21,
	KW_ERR_MECHANISM_PARAM = 22,
	KW_ERR_KEY_TYPE = 23,
	KW_ERR_KEY_SIZE = 24,
	KW_ERR_KEY_FUNCTION = 25,
	KW_ERR_DATA_LEN = 26,
	KW_ERR_ENCRYPTED_DATA = 27,
	KW_ERR_TAMPERED = 28,
	KW_ERR_STORE = 29,
	KW_ERR_STORE_FULL = 30,
	KW_ERR_BUSY = 31,
	KW_ERR_CONFIG = 32,
	KW_ERR_CRYPTO = 33,
	KW_ERR_SIGNATURE_INVALID = 34,
	KW_RV_COUNT
} kw_rv;

/* "KW_ERR_NOT_FOUND" */
const char *kw_rv_name(kw_rv rv);
/* "object not found" */
const char *kw_rv_text(kw_rv rv);
/* The PKCS#11 CKR_* value for rv (CKR_GENERAL_ERROR where none applies). */
unsigned long kw_rv_to_ckr(kw_rv rv);
/* The calling thread's message for its last failed call ("" if none). */
const char *kw_last_error(void);

enum kw_class {
	KW_CLASS_ANY = 0,
	KW_CLASS_PRIVATE_KEY = 1,
	KW_CLASS_PUBLIC_KEY = 2,
	KW_CLASS_CERTIFICATE = 3,
	KW_CLASS_DATA = 4,
};

enum kw_key_type {
	KW_KEY_NONE = 0,
	KW_KEY_RSA = 1,
	KW_KEY_EC = 2,
	KW_KEY_ED25519 = 3,
};

enum kw_hash {
	KW_HASH_NONE = 0,
	KW_HASH_SHA1 = 1,
	KW_HASH_SHA224 = 2,
	KW_HASH_SHA256 = 3,
	KW_HASH_SHA384 = 4,
	KW_HASH_SHA512 = 5,
};

enum kw_mech {
	KW_MECH_NONE = 0,
	KW_MECH_RSA_PKCS1 = 1,
	KW_MECH_RSA_PSS = 2,
	KW_MECH_RSA_RAW = 3,
	KW_MECH_RSA_OAEP = 4,
	KW_MECH_ECDSA = 5,
	KW_MECH_EDDSA = 6,
};

/* Usage bits */
#define KW_USAGE_SIGN 1u
#define KW_USAGE_DECRYPT 2u
#define KW_USAGE_DERIVE 4u
#define KW_USAGE_WRAP 8u

/* Flags for kw_generate_key */
#define KW_GEN_EXTRACTABLE 1u    /* default: not extractable */
#define KW_GEN_NOT_MODIFIABLE 2u /* default: modifiable */

/* A mechanism and its parameters; zero-initialise, then set what applies. */
struct kw_mechanism {
	enum kw_mech mech;
	enum kw_hash hash;      /* PKCS1: digest's hash (NONE: data is a DigestInfo); PSS, OAEP */
	enum kw_hash mgf1_hash; /* PSS, OAEP; NONE means same as hash */
	int salt_length;        /* PSS; -1 means the digest length */
	const unsigned char *label; /* OAEP */
	size_t label_len;
};

typedef struct kw_client kw_client;
typedef struct kw_object kw_object;
typedef struct kw_object_list kw_object_list;

/*
 * Reads the configuration at conf_path, or $KEYWARD_CONF, or
 * /etc/keyward/client.conf. Connects lazily, on the first request.
 */
kw_rv kw_client_new(const char *conf_path, kw_client **out);
void kw_client_free(kw_client *c);
/* The PIN that decrypts the credential's key file, if it is encrypted. */
kw_rv kw_client_set_pin(kw_client *c, const char *pin);
/* The partition named in the configuration. */
const char *kw_client_partition(const kw_client *c);

/* The configured HSMs, in configuration order, and a probe of each. */
size_t kw_client_hsm_count(const kw_client *c);
/* "host:port" */
const char *kw_client_hsm_address(const kw_client *c, size_t i);
int kw_client_hsm_priority(const kw_client *c, size_t i);
/* Connects to HSM i alone; says its protocol version and store state. */
kw_rv kw_client_probe(kw_client *c, size_t i, unsigned *version, int *initialized, int *locked);

/*
 * Exchanges the partition's one-time setup password for this client's
 * permanent credential: generates a key here, sends a CSR, and writes the
 * key and certificate to the files the configuration names (mode 0600).
 * With a pin, the key file is encrypted under it (PKCS#8, AES-256).
 */
kw_rv kw_enroll(kw_client *c, const char *setup_password, const char *pin);

kw_rv kw_generate_key(kw_client *c, const char *owner, const char *name, enum kw_key_type type,
		      unsigned bits, const char *curve, unsigned flags, unsigned usages,
		      kw_object **private_out, kw_object **public_out);

/* sig: a buffer of *sig_len bytes; on return *sig_len is the signature's length. */
kw_rv kw_sign(kw_client *c, uint64_t key_id, const struct kw_mechanism *m, const unsigned char *data,
	      size_t data_len, unsigned char *sig, size_t *sig_len);
kw_rv kw_decrypt(kw_client *c, uint64_t key_id, const struct kw_mechanism *m, const unsigned char *in,
		 size_t in_len, unsigned char *out, size_t *out_len);

/* By id (non-zero), else by owner + name + class. */
kw_rv kw_get_object(kw_client *c, uint64_t id, const char *owner, const char *name, enum kw_class cls,
		    kw_object **out);
/* owner/name NULL for all; pages through the partition. */
kw_rv kw_list_objects(kw_client *c, const char *owner, const char *name, kw_object_list **out);
kw_rv kw_delete_objects(kw_client *c, uint64_t id, const char *owner, const char *name, enum kw_class cls,
			unsigned *deleted);
/* extractable, modifiable: -1 unchanged, 0 false, 1 true. new_name NULL to keep. */
kw_rv kw_set_attributes(kw_client *c, uint64_t id, const char *owner, const char *name, enum kw_class cls,
			int extractable, int modifiable, const char *new_name);
/* Moves every object named name from old_owner to new_owner, atomically. */
kw_rv kw_change_owner(kw_client *c, const char *name, const char *old_owner, const char *new_owner,
		      kw_object_list **moved);
kw_rv kw_generate_random(kw_client *c, unsigned char *buf, size_t len);

/* Objects (read-only views) */
uint64_t kw_object_id(const kw_object *o);
uint64_t kw_object_pair_id(const kw_object *o);
const char *kw_object_owner(const kw_object *o);
const char *kw_object_name(const kw_object *o);
enum kw_class kw_object_class(const kw_object *o);
enum kw_key_type kw_object_key_type(const kw_object *o);
unsigned kw_object_bits(const kw_object *o);
const char *kw_object_curve(const kw_object *o);
/* DER SubjectPublicKeyInfo of a key object, or NULL */
const unsigned char *kw_object_public_key(const kw_object *o, size_t *len);
int kw_object_sensitive(const kw_object *o);
int kw_object_extractable(const kw_object *o);
int kw_object_modifiable(const kw_object *o);
int kw_object_never_extractable(const kw_object *o);
int kw_object_always_sensitive(const kw_object *o);
unsigned kw_object_usages(const kw_object *o);
int64_t kw_object_created(const kw_object *o);
void kw_object_free(kw_object *o);

size_t kw_object_list_count(const kw_object_list *l);
const kw_object *kw_object_list_get(const kw_object_list *l, size_t i);
void kw_object_list_free(kw_object_list *l);

#ifdef __cplusplus
}
#endif
#endif
