/*
 * keyward-pkcs11.so internals: the module state shared by its files.
 *
 * One global lock (p11.lock) guards the module: its kw_client, slots,
 * sessions and object-handle table. Calls to the HSM that may take long
 * (kw_sign) run with the lock released, on copies of what they need.
 *
 *   module.c  C_Initialize, slots and tokens, sessions, login, random
 *   object.c  the object-handle table, C_FindObjects*, C_GetAttributeValue
 *   sign.c    mechanisms, C_GenerateKeyPair, C_Sign*, C_Verify*
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

#define P11_MAX_SLOTS 3
/* Bytes a raw (unhashed) sign or verify operation may accumulate. */
#define P11_RAW_DATA_MAX 1024

struct p11_slot {
	char owner[KW_OWNER_MAX + 1];
	const char *space; /* "machine", "user", "shared" */
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
};

struct p11_session {
	CK_SLOT_ID slot;
	CK_FLAGS flags;
	int finding;
	CK_OBJECT_HANDLE *found;
	size_t n_found, pos;
	struct p11_op sign, verify;
};

struct p11_module {
	pthread_mutex_t lock;
	int initialized;
	pid_t pid;
	kw_client *client;
	struct p11_slot slots[P11_MAX_SLOTS];
	size_t n_slots;
	int logged_in;		       /* one credential serves every token: login is module-wide */
	struct p11_session **sessions; /* handle = index + 1; NULL = closed */
	size_t n_sessions;
};

extern struct p11_module p11;

/* module.c: the open session h, or NULL (lock held). */
struct p11_session *p11_session_get_locked(CK_SESSION_HANDLE h);

/* object.c */
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

/* sign.c */
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

#endif
