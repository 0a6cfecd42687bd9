/*
 * AES-256-GCM sealing for the keystore: a blob is nonce(12) || ciphertext
 * || tag(16). A private key is sealed under a fresh 32-byte data key, and
 * the data key is wrapped under the master key, both with the same
 * associated data.
 */
#ifndef KW_KEYSTORE_SEAL_H
#define KW_KEYSTORE_SEAL_H

#include <stddef.h>

#include <keyward/keyward.h>

#define KW_GCM_NONCE_LEN 12
#define KW_GCM_TAG_LEN 16
#define KW_AES_KEY_LEN 32

/* The sealed material of a private-key row (all NULL for other rows). */
struct kw_sealed {
	unsigned char *spki; /* the private key's own copy of its public key (DER SPKI) */
	size_t spki_len;
	unsigned char *wrapped_dek; /* nonce || AES-256-GCM(MK, DEK) || tag */
	size_t wrapped_dek_len;
	unsigned char *sealed; /* nonce || AES-256-GCM(DEK, PKCS#8) || tag */
	size_t sealed_len;
};
void kw_sealed_cleanup(struct kw_sealed *s);

/* *out (malloc'd) = nonce || AES-256-GCM(key, pt, aad) || tag */
kw_rv kw_gcm_seal(const unsigned char key[KW_AES_KEY_LEN], const unsigned char *aad, size_t aad_len,
		  const unsigned char *pt, size_t pt_len, unsigned char **out, size_t *out_len);
/*
 * *pt (malloc'd; the caller wipes and frees it). KW_ERR_TAMPERED when the
 * tag does not verify or the blob is malformed; sets no message, the
 * caller knows what the blob was.
 */
kw_rv kw_gcm_open(const unsigned char key[KW_AES_KEY_LEN], const unsigned char *aad, size_t aad_len,
		  const unsigned char *in, size_t in_len, unsigned char **pt, size_t *pt_len);

/* Fills s->wrapped_dek and s->sealed (replacing nothing: they must be NULL). */
kw_rv kw_seal_key(const unsigned char mk[KW_AES_KEY_LEN], const unsigned char *aad, size_t aad_len,
		  const unsigned char *der, size_t der_len, struct kw_sealed *s);
/* KW_ERR_TAMPERED (no message) when either layer fails to authenticate. */
kw_rv kw_unseal_key(const unsigned char mk[KW_AES_KEY_LEN], const unsigned char *aad, size_t aad_len,
		    const struct kw_sealed *s, unsigned char **der, size_t *der_len);

#endif
