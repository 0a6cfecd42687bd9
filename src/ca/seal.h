/*
 * keyward-ca: short secrets the CA must use in plain but never store so
 * (CMP's shared secrets, ACME's EAB keys), sealed with AES-256-GCM under
 * one secret key on the CA's token (seal.c).
 */
#ifndef KW_CA_SEAL_H
#define KW_CA_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#include "ca/ca.h"
#include "ca/p11raw.h"

#define CA_SEAL_IV 12
#define CA_SEAL_TAG 16
#define CA_SEAL_LABEL_MAX (CA_NAME_MAX + 16)

/* What is sealed: words for the associated data and for messages. */
struct ca_seal_kind {
	const char *aad;    /* "keyward-ca cmp secret v1": never changed once rows exist */
	const char *name;   /* "CMP secret" */
	const char *remedy; /* what makes a new one: "keyward-ca cmp-secret TEMPLATE" */
};

/* The seal key's place: a session on the CA's token, opened when first needed. One thread at a time. */
struct ca_seal {
	struct ca_p11 p11;
	CK_OBJECT_HANDLE key;
	char key_fp[65]; /* the CA key's fingerprint: in the associated data */
	char label[CA_SEAL_LABEL_MAX];
};

/* The seal key's label for a CA named name: "<file name>.cmp-seal" (the name CMP gave it first). */
void ca_seal_label(const char *name, char *out, size_t size);
/* For ca (its public key read now); nothing opened yet. */
int ca_seal_init(struct ca *ca, struct ca_seal *s);
void ca_seal_cleanup(struct ca_seal *s);
/* A session on the CA's token (the CA key logged in): after it, the seal needs ca no more. */
int ca_seal_token(struct ca *ca, struct ca_seal *s);
/*
 * Seals in (n bytes) for binding (what the row is for: template, kid) into
 * iv and out (n + CA_SEAL_TAG bytes, *out_len its room then its length),
 * making the seal key if the token has none.
 */
int ca_seal(struct ca *ca, struct ca_seal *s, const struct ca_seal_kind *k, const char *binding,
	    const unsigned char *in, size_t n, unsigned char iv[CA_SEAL_IV], unsigned char *out, size_t *out_len);
/*
 * The opposite: CA_ERR_CONFLICT if it does not unseal (altered, or sealed
 * for another binding or CA), CA_ERR_NOT_FOUND if the token has no seal
 * key. out (*out_len its room) is the caller's to wipe.
 */
int ca_unseal(struct ca *ca, struct ca_seal *s, const struct ca_seal_kind *k, const char *binding,
	      const unsigned char iv[CA_SEAL_IV], const unsigned char *in, size_t n, unsigned char *out,
	      size_t *out_len);

#endif
