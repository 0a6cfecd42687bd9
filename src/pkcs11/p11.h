/*
 * keyward-pkcs11.so internals: the module state shared by its files.
 *
 * One global lock (p11.lock) guards the module: its kw_client, slots,
 * sessions and object-handle table. Calls to the HSM that may take long
 * (kw_sign) run with the lock released, on copies of what they need.
 *
 *   module.c  C_Initialize, slots and tokens, sessions, login, random,
 *             and every entry point's argument and state checks
 *   object.c  the object-handle table, C_FindObjects*, C_GetAttributeValue
 *   manage.c  C_CreateObject, C_DestroyObject, C_SetAttributeValue,
 *             C_CopyObject, C_GetObjectSize, C_GenerateKey, C_WrapKey
 *   sign.c    mechanisms, C_GenerateKeyPair, C_Sign*, C_Verify*
 *   crypt.c   C_Decrypt* (on the HSM), C_Encrypt* and C_Digest* (here)
 */
#ifndef KW_P11_H
#define KW_P11_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include <keyward/keyward.h>
#include <keyward/pkcs11-3.0.h>

#define P11_MAX_SLOTS 3
/* Bytes a raw (unhashed) sign or verify operation may accumulate. */
#define P11_RAW_DATA_MAX 1024

/* RFC 5649 key wrap with padding: PKCS#11 3.0's number, not in p11-kit 0.24's header. */
#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x210bUL
#endif

/* A token's serial number: 16 hex digits (CK_TOKEN_INFO.serialNumber's size). */
#define P11_SERIAL_LEN 16

struct p11_slot {
	char owner[KW_OWNER_MAX + 1];
	const char *space; /* "machine", "user", "shared" */
	char serial[P11_SERIAL_LEN + 1];
};

/* A sign or verify operation in progress on a session. */
struct p11_op {
	int active;
	CK_MECHANISM_TYPE mech;
	enum kw_key_type key_type;
	uint64_t key_id;
	size_t sig_len;		 /* the signature's length, from the key size */
	struct kw_mechanism kwm; /* what the HSM is asked to do with the digest */
	const EVP_MD *md;	 /* hashed here first, or NULL (raw data) */
	EVP_MD_CTX *mdctx;
	unsigned char buf[P11_RAW_DATA_MAX];
	size_t len;
	EVP_PKEY *pub; /* verify: the public key */
	unsigned char *data; /* HMAC: the message so far (at most KW_HMAC_DATA_MAX bytes), in len */
	size_t data_cap;
};

/* A decrypt, encrypt or digest operation in progress on a session. */
struct p11_crypt {
	int active;
	uint64_t key_id;
	size_t out_max;			       /* decrypt, encrypt: the output's length bound (the modulus) */
	struct kw_mechanism kwm;	       /* decrypt: what the HSM is asked to do */
	unsigned char label[P11_RAW_DATA_MAX]; /* OAEP: kwm.label points here */
	EVP_PKEY_CTX *pctx;		       /* encrypt: the public key, set up */
	EVP_MD_CTX *mdctx;		       /* digest */
	unsigned char buf[P11_RAW_DATA_MAX];   /* decrypt, encrypt: the input so far (RSA) */
	size_t len;			       /* of buf, or for AES of data */
	/*
	 * AES (aes_mech set): the input is gathered in data (at most
	 * KW_SECRET_CRYPT_MAX bytes) and the HSM en- or decrypts it at the end
	 * in one request; the parts give no output before that.
	 */
	enum kw_mech aes_mech;
	unsigned char *data;
	size_t data_cap;
	unsigned char iv[128];
	size_t iv_len;
	unsigned char *aad; /* GCM */
	size_t aad_len;
	unsigned tag_bits;
};

struct p11_session {
	CK_SLOT_ID slot;
	CK_FLAGS flags;
	int finding;
	CK_OBJECT_HANDLE *found;
	size_t n_found, pos;
	struct p11_op sign, verify;
	struct p11_crypt decrypt, encrypt, digest;
};

struct p11_module {
	pthread_mutex_t lock;
	int initialized;
	pid_t pid;
	kw_client *client;
	/*
	 * Session objects (CKA_TOKEN false) live on the HSM per connection:
	 * every request about them goes on this client's one connection,
	 * made on first use. Closing it (C_Finalize, process exit) destroys
	 * them on the HSM; C_CloseSession destroys its own explicitly.
	 */
	kw_client *sclient;
	int sclient_used; /* a session object was made: listings go on sclient, which sees them */
	struct p11_slot slots[P11_MAX_SLOTS];
	size_t n_slots;
	int logged_in;		       /* one credential serves every token: login is module-wide */
	int pin_failed;		       /* a wrong user PIN since the last login: CKF_USER_PIN_COUNT_LOW */
	int pin_locked;		       /* the HSM answered LOCKED_OUT at the last login: CKF_USER_PIN_LOCKED */
	struct p11_session **sessions; /* handle = index + 1; NULL = closed */
	size_t n_sessions;
};

extern struct p11_module p11;

/*
 * module.c: the standard function list. vendor.c reaches it here, not
 * through the exported C_GetFunctionList: in a process that also links
 * libp11-kit, a call to that name from inside the module binds to
 * p11-kit's proxy instead.
 */
CK_FUNCTION_LIST_PTR p11_function_list(void);
/* module.c: the PKCS#11 3.0 function list (a CK_FUNCTION_LIST_3_0), for vendor.c's interfaces. */
void *p11_function_list_3_0(void);
/*
 * vendor.c: what the exported C_GetInterfaceList and C_GetInterface do; the
 * 3.0 function list points here (module-local names, which a host's own
 * C_GetInterface cannot displace).
 */
CK_RV p11_get_interface_list(CK_INTERFACE_PTR list, CK_ULONG_PTR count);
CK_RV p11_get_interface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version, CK_INTERFACE_PTR_PTR out, CK_FLAGS flags);
/* module.c: the open session h, or NULL (lock held). */
struct p11_session *p11_session_get_locked(CK_SESSION_HANDLE h);
/* module.c: the handle of open session s (lock held). */
CK_SESSION_HANDLE p11_session_handle_locked(const struct p11_session *s);

/* EC curves by CKA_EC_PARAMS: the DER of the curve's OID (or, for Ed25519, the printable name too). */
const char *p11_curve_of_params(const void *der, size_t len);

/*
 * module.c: the CK_RV of a failed libkeyward call, and its message: the
 * calling thread's kw_last_error(), which names the cause and what to do
 * (unreachable: the hosts tried; locked: keyward-admin unlock; not
 * registered or revoked; wrong PIN; key not found; refused by policy),
 * prefixed by what (words, e.g. "signing"). The message goes to standard
 * error (the journal under systemd) the first time it occurs and again at
 * most once a minute while it repeats; KEYWARD_DEBUG=pkcs11 writes every
 * one. KW_ERR_AUTH outside a login is CKR_USER_NOT_LOGGED_IN: the HSM no
 * longer accepts this client's login. See keyward-pkcs11(8), ERRORS.
 */
CK_RV p11_ckr(kw_rv krv, const char *what);
/* p11_ckr, answering ckr in place of the usual mapping (where PKCS#11 names a closer code). */
CK_RV p11_ckr_as(kw_rv krv, const char *what, CK_RV ckr);

/* module.c: the client that reaches object id (lock held): sclient for session objects. */
kw_client *p11_client_for_locked(uint64_t id);

/* object.c */
/* Marks handle h a session object of PKCS#11 session s (lock held). */
void p11_object_set_creator_locked(CK_OBJECT_HANDLE h, CK_SESSION_HANDLE s);
/*
 * Destroys on the HSM and forgets the session objects PKCS#11 session s
 * made (s 0: of every session), or with private_only only its private and
 * secret keys (lock held). Best effort: an HSM that cannot be reached has
 * lost them with the connection.
 */
void p11_session_objects_destroy_locked(CK_SESSION_HANDLE s, int private_only);
/* Forgets handle h after its object was destroyed (lock held). */
void p11_object_forget_locked(CK_OBJECT_HANDLE h);
/* The handle of HSM object id, if the table knows it (lock held); 0 otherwise. */
CK_OBJECT_HANDLE p11_object_handle_of_locked(uint64_t id);
/* The object of handle h (lock held), NULL if unknown. */
const kw_object *p11_object_get_locked(CK_OBJECT_HANDLE h);
/* A handle for object o, which the table takes over (lock held); 0 on out of memory. */
CK_OBJECT_HANDLE p11_object_adopt_locked(kw_object *o);
void p11_objects_free_locked(void);
/* o's DER SubjectPublicKeyInfo (for a private half, its pair's), or NULL. */
const unsigned char *p11_public_key_locked(const kw_object *o, size_t *len);
void p11_session_find_cleanup(struct p11_session *s);
CK_RV p11_find_init_locked(struct p11_session *s, CK_ATTRIBUTE_PTR templ, CK_ULONG count);
CK_RV p11_get_attributes_locked(const kw_object *o, CK_ATTRIBUTE_PTR templ, CK_ULONG count);
/* Attribute helpers for sign.c */
CK_RV p11_template_bool(CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_ATTRIBUTE_TYPE t, int *out);
CK_ATTRIBUTE_PTR p11_template_find(CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_ATTRIBUTE_TYPE t);

/*
 * keyward has no trusted keys: CKA_TRUSTED is the SO's to set, and the
 * module has no SO login. A key to be wrapped only under trusted keys
 * could never be wrapped, so a template asking for one is refused
 * (CKA_WRAP_WITH_TRUSTED true: CKR_ATTRIBUTE_VALUE_INVALID; a key that is
 * not to leave the HSM is made non-extractable), as is CKA_TRUSTED true
 * (CKR_ATTRIBUTE_READ_ONLY). docs/pkcs11.md, "Refused by policy".
 */
CK_RV p11_template_untrusted(CK_ATTRIBUTE_PTR t, CK_ULONG n);
/* CKA_LABEL (NUL-terminated into out), else a fresh name "key-<16 hex digits>". */
CK_RV p11_label_of_template(CK_ATTRIBUTE_PTR t, CK_ULONG n, char *out, size_t size);
/* The mechanisms key o may be used with, for CKA_ALLOWED_MECHANISMS; returns how many (at most max). */
size_t p11_allowed_mechanisms(const kw_object *o, CK_MECHANISM_TYPE *out, size_t max);

/* manage.c (lock held, session checked, logged in, R/W where it writes) */
CK_RV p11_create_object_locked(struct p11_session *s, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out);
CK_RV p11_destroy_object_locked(CK_OBJECT_HANDLE h);
CK_RV p11_set_attributes_locked(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n);
CK_RV p11_copy_object_locked(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out);
CK_RV p11_object_size_locked(CK_OBJECT_HANDLE h, CK_ULONG_PTR size);
CK_RV p11_generate_key_locked(struct p11_session *s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
			      CK_OBJECT_HANDLE_PTR out);
CK_RV p11_unwrap_key_locked(struct p11_session *s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE unwrapping,
			    const unsigned char *wrapped, size_t wrapped_len, CK_ATTRIBUTE_PTR t, CK_ULONG n,
			    CK_OBJECT_HANDLE_PTR out);
CK_RV p11_derive_key_locked(struct p11_session *s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR t,
			    CK_ULONG n, CK_OBJECT_HANDLE_PTR out);
/* Takes and releases p11.lock around the HSM call. */
CK_RV p11_wrap_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
		   CK_BYTE_PTR out, CK_ULONG_PTR out_len);

/* crypt.c */
/*
 * Appends n bytes of in to *data (*len bytes of *cap), growing it up to max
 * bytes (CKR_DATA_LEN_RANGE beyond); the old buffer is wiped.
 */
CK_RV p11_gather(unsigned char **data, size_t *cap, size_t *len, const unsigned char *in, size_t n, size_t max);
void p11_crypt_cleanup(struct p11_crypt *op);
CK_RV p11_decrypt_init_locked(struct p11_crypt *op, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key);
CK_RV p11_encrypt_init_locked(struct p11_crypt *op, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key);
CK_RV p11_crypt_update(struct p11_crypt *op, const unsigned char *in, size_t len);
/* Decrypts what the session's operation accumulated; takes and releases p11.lock around the HSM call. */
CK_RV p11_decrypt_final(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV p11_encrypt_final_locked(struct p11_crypt *op, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
/* Ends an AES operation of session h (encrypt or decrypt); takes and releases p11.lock around the HSM call. */
CK_RV p11_aes_final(CK_SESSION_HANDLE h, int encrypt, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV p11_digest_init_locked(struct p11_crypt *op, CK_MECHANISM_PTR m);
CK_RV p11_digest_update(struct p11_crypt *op, const unsigned char *in, size_t len);
CK_RV p11_digest_final_locked(struct p11_crypt *op, CK_BYTE_PTR out, CK_ULONG_PTR out_len);

/* sign.c */
/* Mechanism type's key type, HSM mechanism and hash, if it offers every flag in need. */
CK_RV p11_mechanism_of(CK_MECHANISM_TYPE type, CK_FLAGS need, enum kw_key_type *key_type, enum kw_mech *kw,
		       enum kw_hash *hash);
const EVP_MD *p11_hash_md(enum kw_hash h);
enum kw_hash p11_hash_from_ckm(CK_MECHANISM_TYPE t);
enum kw_hash p11_hash_from_mgf(CK_RSA_PKCS_MGF_TYPE g);
void p11_op_cleanup(struct p11_op *op);
CK_RV p11_mechanism_list(CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count);
CK_RV p11_mechanism_info(CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info);
CK_RV p11_generate_key_pair_locked(struct p11_session *s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub_t, CK_ULONG pub_n,
				   CK_ATTRIBUTE_PTR priv_t, CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR pub_h,
				   CK_OBJECT_HANDLE_PTR priv_h);
CK_RV p11_op_init_locked(struct p11_session *s, struct p11_op *op, int verify, CK_MECHANISM_PTR m,
			 CK_OBJECT_HANDLE key);
CK_RV p11_op_update(struct p11_op *op, const unsigned char *data, size_t len);
/* Signs what op accumulated; takes and releases p11.lock around the HSM call. */
CK_RV p11_sign_final(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len);
CK_RV p11_verify_final_locked(struct p11_op *op, const unsigned char *sig, size_t sig_len);
/*
 * Ends session h's HMAC sign (verify 0) or verify operation: the HSM makes
 * the MAC, the module compares it for a verification (in constant time).
 * Takes and releases p11.lock around the HSM call.
 */
CK_RV p11_hmac_final(CK_SESSION_HANDLE h, int verify, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len);

#endif
