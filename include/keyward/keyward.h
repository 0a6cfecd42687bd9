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
	KW_CLASS_SECRET_KEY = 5, /* AES: one sealed object, no public half */
};

enum kw_key_type {
	KW_KEY_NONE = 0,
	KW_KEY_RSA = 1,
	KW_KEY_EC = 2,
	KW_KEY_ED25519 = 3,
	KW_KEY_AES = 4, /* 128, 192 or 256 bits; class KW_CLASS_SECRET_KEY */
	KW_KEY_GENERIC = 90, /* a generic secret for HMAC: 16 to 128 bytes; class KW_CLASS_SECRET_KEY */
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
	KW_MECH_AES_KEY_WRAP = 7,     /* kw_wrap_key: RFC 3394, secret keys of a multiple of 8 bytes */
	KW_MECH_AES_KEY_WRAP_PAD = 8, /* kw_wrap_key: RFC 5649, private (PKCS#8 DER) and secret keys */
	/* kw_secret_crypt, with an AES key of usage KW_USAGE_DECRYPT (encrypt and decrypt): */
	KW_MECH_AES_ECB = 90,	  /* a multiple of 16 bytes, no IV */
	KW_MECH_AES_CBC = 91,	  /* a multiple of 16 bytes, a 16-byte IV, no padding */
	KW_MECH_AES_CBC_PAD = 92, /* PKCS#7 padding, a 16-byte IV */
	KW_MECH_AES_GCM = 93,	  /* IV 1 to 128 bytes, AAD, tag 12 to 16 bytes at the ciphertext's end */
	KW_MECH_HMAC = 94,	  /* kw_sign with a KW_KEY_GENERIC key: HMAC with hash SHA-256/384/512 of the data */
	KW_MECH_ECDH = 95,	  /* kw_derive_key with an EC private key of usage KW_USAGE_DERIVE */
};

/* Usage bits */
#define KW_USAGE_SIGN 1u
#define KW_USAGE_DECRYPT 2u
#define KW_USAGE_DERIVE 4u
#define KW_USAGE_WRAP 8u

/* Flags for kw_generate_key */
#define KW_GEN_EXTRACTABLE 1u    /* default: not extractable */
#define KW_GEN_NOT_MODIFIABLE 2u /* default: modifiable */
/*
 * A session object (kw_generate_key of a key pair, kw_create_object): held
 * by the HSM in memory for the connection that made it alone, never
 * stored, destroyed when that connection closes. Use it on a client made
 * with kw_client_single_connection, so that every later call reaches it.
 */
#define KW_GEN_SESSION 4u
/* Set in the id of every session object, in no stored object's id. */
#define KW_OBJECT_ID_SESSION (UINT64_C(1) << 63)

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
/*
 * The PIN that decrypts the credential's key file, if it is encrypted.
 * Without one, the configuration's pin_file (if any) gives it.
 */
kw_rv kw_client_set_pin(kw_client *c, const char *pin);
/*
 * Whether pin decrypts the credential's key file, checked here without a
 * request: KW_ERR_AUTH if not. A key file stored unencrypted accepts any PIN.
 */
kw_rv kw_client_check_pin(kw_client *c, const char *pin);
/* The partition named in the configuration. */
const char *kw_client_partition(const kw_client *c);
/*
 * From now on every call of c travels on one connection, opened on first
 * use and opened afresh only when it breaks (the HSM then has forgotten its
 * session objects: their ids answer KW_ERR_NOT_FOUND). Call before c's
 * first request.
 */
kw_rv kw_client_single_connection(kw_client *c);

/*
 * Records pin_file (made absolute) as "pin_file" in the [client] section of
 * the configuration file c was made from, and uses it from now on: after
 * registering with a PIN, every program that reads this configuration
 * (ksputil, the PKCS#11 module, services) finds the PIN there. The file is
 * rewritten atomically with its mode kept; its other lines stay as they
 * are. KW_ERR_PERMISSION, saying which line to add by hand, when the
 * configuration cannot be written.
 */
kw_rv kw_client_record_pin_file(kw_client *c, const char *pin_file);

/* The most bytes kw_secret_read_file accepts in a secret's line. */
#define KW_SECRET_MAX 1024
/*
 * The secret (PIN, passphrase, setup password) in the first line of the
 * file path, without its line end, into buf (size bytes, NUL-terminated).
 * Refuses with KW_ERR_CONFIG a file group or others may read or write
 * (the message names the chmod that fixes it), a line longer than
 * KW_SECRET_MAX or size - 1 bytes, an empty one, and anything but a
 * regular file or a pipe. what names the file in messages ("PIN file"). buf is
 * wiped on every failure; the caller wipes it after use
 * (OPENSSL_cleanse).
 */
kw_rv kw_secret_read_file(const char *path, const char *what, char *buf, size_t size);

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
/*
 * Before kw_enroll, whether its files may be written: KW_ERR_EXISTS if the
 * key or certificate file exists (unless force), KW_ERR_PERMISSION if the
 * directory they go to is writable by group or others. The files
 * themselves are always written mode 0600.
 */
kw_rv kw_enroll_check_files(kw_client *c, int force);

/*
 * A key pair (RSA: bits; EC: curve "P-256", "P-384", "P-521"; Ed25519) or,
 * for KW_KEY_AES (bits 128, 192, 256; usages KW_USAGE_WRAP, the default),
 * a secret key: then *private_out gets the KW_CLASS_SECRET_KEY object and
 * *public_out is NULL. Key pairs get the default CKA_ID (see
 * kw_generate_key_ckaid).
 */
kw_rv kw_generate_key(kw_client *c, const char *owner, const char *name, enum kw_key_type type,
		      unsigned bits, const char *curve, unsigned flags, unsigned usages,
		      kw_object **private_out, kw_object **public_out);

/* sig: a buffer of *sig_len bytes; on return *sig_len is the signature's length. */
kw_rv kw_sign(kw_client *c, uint64_t key_id, const struct kw_mechanism *m, const unsigned char *data,
	      size_t data_len, unsigned char *sig, size_t *sig_len);
kw_rv kw_decrypt(kw_client *c, uint64_t key_id, const struct kw_mechanism *m, const unsigned char *in,
		 size_t in_len, unsigned char *out, size_t *out_len);

/* The most elements one kw_sign_batch (one SignBatch request) may carry. */
#define KW_SIGN_BATCH_MAX 256
/* Bytes of a generic secret (KW_KEY_GENERIC), and of a message kw_sign takes for an HMAC. */
#define KW_GENERIC_MIN 16
#define KW_GENERIC_MAX 128
#define KW_HMAC_DATA_MAX (64 * 1024)
/*
 * Imports a key into the HSM: the wrapped bytes are decrypted with the key
 * unwrapping_id inside it (usage KW_USAGE_WRAP). m->mech:
 * KW_MECH_AES_KEY_WRAP or _PAD with an AES key, KW_MECH_RSA_OAEP (m->hash,
 * mgf1_hash, label) with an RSA private key. cls KW_CLASS_SECRET_KEY (type
 * KW_KEY_AES or KW_KEY_GENERIC: the key's bytes) or KW_CLASS_PRIVATE_KEY
 * (type RSA, EC or Ed25519: a PKCS#8 DER, AES unwrapping only). flags and
 * usages as kw_generate_key's (KW_GEN_SESSION refused). The key is
 * sensitive, not never-extractable, not always-sensitive.
 * *private_out gets the private or secret key, *public_out (may be NULL)
 * a private key's public half.
 */
struct kw_unwrap_spec {
	const char *owner;
	const char *name;
	enum kw_class cls;
	enum kw_key_type type;
	unsigned flags;
	unsigned usages;
	const unsigned char *ckaid;
	size_t ckaid_len;
};
kw_rv kw_unwrap_key(kw_client *c, uint64_t unwrapping_id, const struct kw_mechanism *m, const unsigned char *wrapped,
		    size_t wrapped_len, const struct kw_unwrap_spec *spec, kw_object **private_out,
		    kw_object **public_out);
/*
 * ECDH in the HSM: the EC private key base_id (usage KW_USAGE_DERIVE) and
 * the peer's uncompressed point give a shared secret, from which a secret
 * key of spec->type (KW_KEY_AES or KW_KEY_GENERIC), length bytes, is made
 * and stored (spec->cls ignored): with kdf KW_HASH_NONE the secret's
 * rightmost bytes, else the ANSI X9.63 KDF with that hash and shared data.
 * *out gets the secret key.
 */
struct kw_ecdh_params {
	const unsigned char *public_data;
	size_t public_len;
	enum kw_hash kdf;
	const unsigned char *shared_data;
	size_t shared_len;
	int cofactor;
	unsigned length;
};
kw_rv kw_derive_key(kw_client *c, uint64_t base_id, const struct kw_ecdh_params *p, const struct kw_unwrap_spec *spec,
		    kw_object **out);
/* Bytes of data one kw_secret_crypt takes. */
#define KW_SECRET_CRYPT_MAX (256 * 1024)
/*
 * AES in the HSM with the secret key key_id (usage KW_USAGE_DECRYPT, which
 * for a secret key is encrypt and decrypt): encrypt (1) or decrypt (0) in
 * (at most KW_SECRET_CRYPT_MAX bytes) with m->mech KW_MECH_AES_ECB, _CBC,
 * _CBC_PAD or _GCM. iv: CBC 16 bytes, GCM 1 to 128, ECB none; aad and
 * tag_bits (0: 128) for GCM, whose tag ends the ciphertext. out: *out_len
 * bytes, at least in_len + 16 is always enough; on return the output's
 * length. A padding or tag that does not check: KW_ERR_ENCRYPTED_DATA.
 */
struct kw_aes_params {
	const unsigned char *iv;
	size_t iv_len;
	const unsigned char *aad;
	size_t aad_len;
	unsigned tag_bits;
};
kw_rv kw_secret_crypt(kw_client *c, uint64_t key_id, enum kw_mech mech, int encrypt, const struct kw_aes_params *p,
		      const unsigned char *in, size_t in_len, unsigned char *out, size_t *out_len);
/*
 * n signatures with one key and mechanism in one round trip: sigs[i] (a
 * buffer of sig_lens[i] bytes; on return the signature's length) signs
 * data[i] (data_lens[i] bytes, what kw_sign's data would be). 1 to
 * KW_SIGN_BATCH_MAX elements, and the whole request within the frame limit
 * (1 MiB). All or nothing: the HSM checks the key, the mechanism and every
 * element before it signs any (an error names the first bad element's
 * index); when any element fails, no signature is returned. Every
 * signature counts in the HSM's key-use audit as one kw_sign. A buffer too
 * small is KW_ERR_DATA_LEN naming the element; an RSA signature is the
 * modulus' length, ECDSA's r||s twice the curve's, Ed25519's 64 bytes.
 * Several threads may call at once on one kw_client: concurrent calls go
 * out on separate pooled connections (up to the configuration's
 * pool_size), which keywardd spreads over its cores, so two threads keep
 * two HSM cores signing.
 */
kw_rv kw_sign_batch(kw_client *c, uint64_t key_id, const struct kw_mechanism *m, size_t n,
		    const unsigned char *const data[], const size_t data_lens[], unsigned char *const sigs[],
		    size_t sig_lens[]);

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
/* Made by kw_derive_key (or a copy of such a key): not made by the HSM from nothing, PKCS#11 CKA_LOCAL false. */
int kw_object_derived(const kw_object *o);
unsigned kw_object_usages(const kw_object *o);
int64_t kw_object_created(const kw_object *o);
/* Whether o is a session object (KW_GEN_SESSION): 1, else 0. */
int kw_object_session(const kw_object *o);
void kw_object_free(kw_object *o);

size_t kw_object_list_count(const kw_object_list *l);
const kw_object *kw_object_list_get(const kw_object_list *l, size_t i);
void kw_object_list_free(kw_object_list *l);

/*
 * Owners: the key spaces of a partition (the seed's "key prefix"). An
 * owner is a SID string; the HSM object name is "<owner>__<name>". See
 * docs/key-spaces.md for the derivation.
 *
 *   machine owner  S-1-5-21-a-b-c: the client configuration's
 *                  machine_owner, else derived from the machine-id file
 *                  named by $KEYWARD_MACHINE_ID_FILE, else /etc/machine-id
 *   user owner     machine owner + "-RID", RID = 1000 + 2 * uid
 *   shared owner   KW_OWNER_SHARED, for names ending in ".global"
 *
 * Every function writes a NUL-terminated owner into out, of size bytes
 * (KW_OWNER_MAX + 1 always suffices).
 */
#define KW_OWNER_SHARED "S-1-5-11"

/*
 * The machine owner for a machine id (32 hex digits; surrounding
 * whitespace ignored, upper case taken as lower case): a, b, c are the
 * first three big-endian 32-bit words of
 * SHA-256("keyward machine owner\n" || the 32 lower-case hex digits).
 */
kw_rv kw_owner_from_machine_id(const char *machine_id, char *out, size_t size);
/*
 * This machine's owner: c's machine_owner, else derived from the file
 * $KEYWARD_MACHINE_ID_FILE names, else /etc/machine-id. c may be NULL (no
 * configuration). KW_ERR_CONFIG, naming the file, when none of them serves.
 */
kw_rv kw_owner_machine(const kw_client *c, char *out, size_t size);
/* The owner of local user uid on this machine. */
kw_rv kw_owner_user(const kw_client *c, unsigned uid, char *out, size_t size);
/*
 * The owner a key name belongs to: KW_OWNER_SHARED for names ending in
 * ".global"; else the machine owner if machine_scope, else the calling
 * user's (getuid()).
 */
kw_rv kw_owner_for_name(const kw_client *c, const char *name, int machine_scope, char *out, size_t size);
/*
 * 1 if owner is a SID string: "S-1-", an identifier authority, then 1 to 15
 * sub-authorities, each a decimal 32-bit number without leading zeros;
 * at most KW_OWNER_MAX characters. 0 otherwise (also for NULL).
 */
int kw_owner_is_valid(const char *owner);

/*
 * PKCS#11 groundwork: CKA_ID, certificate and data objects stored on the
 * HSM, AES secret keys, key wrap and copy.
 */
#define KW_CKAID_MAX 64              /* bytes of a CKA_ID */
#define KW_OBJECT_VALUE_MAX 65536    /* bytes of a certificate or data object */
#define KW_APPLICATION_MAX 256       /* characters of a data object's application */

/*
 * kw_generate_key with a CKA_ID for the new key (both halves of a pair).
 * ckaid_len 0: key pairs get the default, SHA-1 of the public key's BIT
 * STRING contents (the usual PKCS#11 convention); AES keys get none.
 */
kw_rv kw_generate_key_ckaid(kw_client *c, const char *owner, const char *name, enum kw_key_type type,
			    unsigned bits, const char *curve, unsigned flags, unsigned usages,
			    const unsigned char *ckaid, size_t ckaid_len, kw_object **private_out,
			    kw_object **public_out);
/*
 * Stores a public key made elsewhere: spki one DER SubjectPublicKeyInfo
 * (RSA 2048 to 4096 bits, EC P-256/384/521, Ed25519), usages
 * KW_USAGE_SIGN (verify), KW_USAGE_DECRYPT and KW_USAGE_WRAP (encrypt and
 * wrap, RSA). Otherwise as kw_create_object.
 */
kw_rv kw_create_public_key(kw_client *c, const char *owner, const char *name, const unsigned char *spki,
			   size_t spki_len, const unsigned char *ckaid, size_t ckaid_len, unsigned usages, unsigned flags,
			   kw_object **out);
/*
 * Stores a certificate (value: one DER X.509 certificate, else
 * KW_ERR_ATTRIBUTE_VALUE) or a data object (value: 0 to
 * KW_OBJECT_VALUE_MAX bytes; application may be NULL) under owner + name.
 * Public material: stored as it is, not sealed. KW_ERR_EXISTS if owner
 * has an object of that class and name. flags: KW_GEN_NOT_MODIFIABLE.
 */
kw_rv kw_create_object(kw_client *c, const char *owner, const char *name, enum kw_class cls,
		       const unsigned char *value, size_t value_len, const unsigned char *ckaid, size_t ckaid_len,
		       const char *application, unsigned flags, kw_object **out);
/*
 * Sets the CKA_ID (0 to KW_CKAID_MAX bytes) of an object and, for a key
 * half, of its pair half too; only while they are modifiable
 * (KW_ERR_NOT_MODIFIABLE).
 */
kw_rv kw_set_ckaid(kw_client *c, uint64_t id, const char *owner, const char *name, enum kw_class cls,
		   const unsigned char *ckaid, size_t ckaid_len);
/*
 * Several changes to object id (and, for name and CKA_ID, its pair half)
 * in one transaction: all or none. extractable, modifiable: -1
 * unchanged, 0 false (one way: true never comes back); new_name NULL to
 * keep; set_ckaid non-zero to set the CKA_ID to ckaid/ckaid_len.
 */
struct kw_object_change {
	int extractable;
	int modifiable;
	const char *new_name;
	int set_ckaid;
	const unsigned char *ckaid;
	size_t ckaid_len;
};
kw_rv kw_modify_object(kw_client *c, uint64_t id, const struct kw_object_change *chg);
/*
 * Wraps key key_id (a private key: its PKCS#8 DER; a secret key: its
 * bytes) under the key wrapping_id, which must have usage KW_USAGE_WRAP
 * and not also KW_USAGE_DECRYPT (KW_ERR_KEY_FUNCTION: it could decrypt
 * the wrapped key). m->mech: KW_MECH_AES_KEY_WRAP_PAD, or
 * KW_MECH_AES_KEY_WRAP for secret keys, under an AES key; KW_MECH_RSA_OAEP
 * (m->hash, mgf1_hash, label) for secret keys under an RSA public key
 * (hash KW_HASH_NONE: SHA-1). The key must be extractable:
 * KW_ERR_UNEXTRACTABLE otherwise, it never leaves the HSM. out: a buffer of
 * *out_len bytes; on return *out_len is the wrapped key's length
 * (KW_ERR_DATA_LEN, with *out_len set, when the buffer is too small).
 */
kw_rv kw_wrap_key(kw_client *c, uint64_t wrapping_id, uint64_t key_id, const struct kw_mechanism *m,
		  unsigned char *out, size_t *out_len);
/*
 * Copies object id under the same owner as new_name (both halves of a key
 * pair); *out gets the copies (the private half first). extractable,
 * modifiable: -1 as the source, 0 false, 1 true; the copy may only be
 * tighter than the source (KW_ERR_ATTRIBUTE_VALUE otherwise). A copy of a
 * never-extractable key stays never-extractable.
 */
kw_rv kw_copy_object(kw_client *c, uint64_t id, const char *new_name, int extractable, int modifiable,
		     kw_object_list **out);
/* The CKA_ID (NULL with *len 0 if none) */
const unsigned char *kw_object_ckaid(const kw_object *o, size_t *len);
/*
 * A certificate's DER, a data object's bytes, a public key's DER
 * SubjectPublicKeyInfo (as kw_object_public_key); NULL for private and
 * secret keys and empty data objects.
 */
const unsigned char *kw_object_value(const kw_object *o, size_t *len);
/* A data object's application ("" if none) */
const char *kw_object_application(const kw_object *o);

#ifdef __cplusplus
}
#endif
#endif
