/*
 * keyward-ca: short secrets sealed by the CA's token. CMP's shared secrets
 * and ACME's EAB keys are checked by a MAC keyed with the secret itself,
 * so the CA needs them in plain each time, and a hash would not do. They
 * are kept sealed: AES-256-GCM under a secret key made on the CA's token,
 * not extractable and sensitive, so the database, a backup of it or a
 * config export holds only ciphertext, and unsealing takes the HSM.
 *
 * One seal key per CA, labelled "<CA file name>.cmp-seal" beside the CA
 * key (the name it got when CMP was its only user: CAs made then, and
 * migrate, find it under that name). A move to another server moves it
 * with the CA key (migrate.c). The associated data binds each sealed value
 * to what it is (the kind's words), to the CA's key and to its row (the
 * binding: template, kid), so a value copied to another row or another CA
 * does not unseal. Plain values live in buffers the caller wipes.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "ca/seal.h"

void ca_seal_label(const char *name, char *out, size_t size)
{
	char file[CA_NAME_MAX + 1];

	ca_file_name(name, file, sizeof file);
	snprintf(out, size, "%s.cmp-seal", file);
}

int ca_seal_init(struct ca *ca, struct ca_seal *s)
{
	const struct ca_conf *c = ca_config(ca);
	EVP_PKEY *pub;
	int rc;

	memset(s, 0, sizeof *s);
	if (!(pub = ca_cert_public_key(c)))
		return -1;
	rc = ca_key_fingerprint(pub, s->key_fp);
	EVP_PKEY_free(pub);
	ca_seal_label(c->name, s->label, sizeof s->label);
	return rc;
}

void ca_seal_cleanup(struct ca_seal *s)
{
	ca_p11_close(&s->p11);
	memset(s, 0, sizeof *s);
}

int ca_seal_token(struct ca *ca, struct ca_seal *s)
{
	return s->p11.open ? 0 : ca_open_key(ca) || ca_p11_open(ca_config(ca), &s->p11, NULL) ? -1 : 0;
}

/* The seal key, on the CA's token (logged in by ca_open_key), made if create and missing. */
static int seal_key(struct ca *ca, struct ca_seal *s, const struct ca_seal_kind *k, bool create)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG len = 32;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, s->label, strlen(s->label)}};
	CK_ATTRIBUTE make[] = {
		{CKA_CLASS, &cls, sizeof cls},	   {CKA_KEY_TYPE, &kt, sizeof kt},
		{CKA_VALUE_LEN, &len, sizeof len}, {CKA_TOKEN, &yes, sizeof yes},
		{CKA_PRIVATE, &yes, sizeof yes},   {CKA_SENSITIVE, &yes, sizeof yes},
		{CKA_EXTRACTABLE, &no, sizeof no}, {CKA_ENCRYPT, &yes, sizeof yes},
		{CKA_DECRYPT, &yes, sizeof yes},   {CKA_LABEL, s->label, strlen(s->label)},
	};
	CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0;
	CK_RV rv;

	if (s->key)
		return 0;
	if (ca_seal_token(ca, s))
		return -1;
	if ((rv = s->p11.f->C_FindObjectsInit(s->p11.s, find, 2)) != CKR_OK)
		return ca_p11_fail("C_FindObjectsInit", rv);
	rv = s->p11.f->C_FindObjects(s->p11.s, found, 2, &n);
	s->p11.f->C_FindObjectsFinal(s->p11.s);
	if (rv != CKR_OK)
		return ca_p11_fail("C_FindObjects", rv);
	if (n > 1)
		return ca_error("the token holds two keys labelled %s: remove the one not made by keyward-ca",
				s->label);
	if (n == 1) {
		s->key = found[0];
		return 0;
	}
	if (!create)
		return ca_fail(CA_ERR_NOT_FOUND,
			       "no key %s on the token to unseal the %s with (make a new one with %s, or move the key "
			       "here with the CA key)",
			       s->label, k->name, k->remedy);
	if ((rv = s->p11.f->C_GenerateKey(s->p11.s, &gen, make, sizeof make / sizeof make[0], &s->key)) != CKR_OK)
		return ca_p11_fail("C_GenerateKey (the seal key, AES-256)", rv);
	return 0;
}

/* The associated data: what a sealed value is, for which CA and which row. */
static int aad_of(const struct ca_seal *s, const struct ca_seal_kind *k, const char *binding, unsigned char *out,
		  size_t size)
{
	int n = snprintf((char *)out, size, "%s|%s|%s", k->aad, s->key_fp, binding);

	return n < 0 || (size_t)n >= size ? ca_usage_error("%s: name too long", k->name) : n;
}

/* One GCM operation on the token: encrypt (in n bytes, out n + CA_SEAL_TAG) or decrypt. */
static int gcm(struct ca *ca, struct ca_seal *s, const struct ca_seal_kind *k, const char *binding, bool encrypt,
	       const unsigned char *iv, const unsigned char *in, size_t n, unsigned char *out, size_t *out_len)
{
	unsigned char aad[CA_NAME_MAX + 256];
	int aad_len = aad_of(s, k, binding, aad, sizeof aad);
	CK_GCM_PARAMS g = {(unsigned char *)iv, CA_SEAL_IV, CA_SEAL_IV * 8, aad, 0, CA_SEAL_TAG * 8};
	CK_MECHANISM m = {CKM_AES_GCM, &g, sizeof g};
	CK_ULONG len = *out_len;
	CK_RV rv;

	if (aad_len < 0 || seal_key(ca, s, k, encrypt))
		return -1;
	g.ulAADLen = (CK_ULONG)aad_len;
	rv = encrypt ? s->p11.f->C_EncryptInit(s->p11.s, &m, s->key) : s->p11.f->C_DecryptInit(s->p11.s, &m, s->key);
	if (rv != CKR_OK)
		return ca_p11_fail(encrypt ? "C_EncryptInit (AES-GCM)" : "C_DecryptInit (AES-GCM)", rv);
	rv = encrypt ? s->p11.f->C_Encrypt(s->p11.s, (unsigned char *)in, n, out, &len)
		     : s->p11.f->C_Decrypt(s->p11.s, (unsigned char *)in, n, out, &len);
	if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE)
		return ca_fail(CA_ERR_CONFLICT,
			       "the sealed %s does not unseal: it was altered, or sealed for another row or CA (make a "
			       "new one with %s)",
			       k->name, k->remedy);
	if (rv != CKR_OK)
		return ca_p11_fail(encrypt ? "C_Encrypt (AES-GCM)" : "C_Decrypt (AES-GCM)", rv);
	*out_len = len;
	return 0;
}

int ca_seal(struct ca *ca, struct ca_seal *s, const struct ca_seal_kind *k, const char *binding,
	    const unsigned char *in, size_t n, unsigned char iv[CA_SEAL_IV], unsigned char *out, size_t *out_len)
{
	if (*out_len < n + CA_SEAL_TAG)
		return ca_usage_error("ca_seal: no room for the sealed %s", k->name);
	/* a random IV: at most a few thousand values are ever sealed under one key, far from GCM's bound */
	if (RAND_bytes(iv, CA_SEAL_IV) != 1)
		return ca_error("no random bytes");
	return gcm(ca, s, k, binding, true, iv, in, n, out, out_len);
}

int ca_unseal(struct ca *ca, struct ca_seal *s, const struct ca_seal_kind *k, const char *binding,
	      const unsigned char iv[CA_SEAL_IV], const unsigned char *in, size_t n, unsigned char *out,
	      size_t *out_len)
{
	if (n <= CA_SEAL_TAG || *out_len < n - CA_SEAL_TAG)
		return ca_fail(CA_ERR_CONFLICT, "the sealed %s is damaged (%zu bytes)", k->name, n);
	return gcm(ca, s, k, binding, false, iv, in, n, out, out_len);
}
