/*
 * keyward-ca: signing many certificates in one HSM round trip, through
 * keyward-pkcs11.so's vendor interface "Keyward Batch" (include/keyward/
 * pkcs11-batch.h). libp11 signs one certificate per C_Sign; with the batch
 * interface the issuance pipeline's signers hand the HSM up to
 * CA_SIGN_BATCH certificates at once. Any other module (SoftHSM2, another
 * HSM) has no such interface: ca_batch_signer_open then gives no signer,
 * and the pipeline signs with concurrent C_Sign calls as before.
 *
 * The certificate is signed as X509_sign would: its two signature
 * algorithm fields set, the TBSCertificate encoded and hashed here, the
 * digest signed by the HSM (CKM_ECDSA, or CKM_RSA_PKCS over a DigestInfo),
 * an ECDSA signature turned from PKCS#11's r || s into DER.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "ca/p11raw.h"

#include <keyward/pkcs11-batch.h>

struct ca_batch_signer {
	struct ca_p11 p11;
	CK_KW_BATCH_FUNCTION_LIST *batch;
	CK_OBJECT_HANDLE key;
	bool ec;
	size_t ec_half; /* bytes of r (and of s) */
	int sig_max;
};

/* The one private key labelled label on the session's token; 0 if none or several. */
static CK_OBJECT_HANDLE find_key(struct ca_p11 *p, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE want[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0;

	if (p->f->C_FindObjectsInit(p->s, want, 2) != CKR_OK)
		return 0;
	if (p->f->C_FindObjects(p->s, found, 2, &n) != CKR_OK)
		n = 0;
	p->f->C_FindObjectsFinal(p->s);
	return n == 1 ? found[0] : 0;
}

int ca_batch_signer_open(const struct ca_conf *c, EVP_PKEY *pub, struct ca_batch_signer **out)
{
	*out = NULL;
	/* a key named by URI may carry its own PIN and token: libp11 alone handles those */
	if (!strncmp(c->key, "pkcs11:", 7))
		return 0;
	return ca_batch_signer_open_label(c, c->key, pub, out);
}

int ca_batch_signer_open_label(const struct ca_conf *c, const char *label, EVP_PKEY *pub, struct ca_batch_signer **out)
{
	struct ca_batch_signer *s;
	CK_C_GetInterface get;
	CK_INTERFACE_PTR itf = NULL;

	*out = NULL;
	if (!(s = calloc(1, sizeof *s)))
		return 0;
	if (ca_p11_open(c, &s->p11, NULL))
		goto none;
	*(void **)&get = dlsym(s->p11.dl, "C_GetInterface");
	if (!get || get((CK_UTF8CHAR_PTR)KW_P11_BATCH_INTERFACE, NULL, &itf, 0) != CKR_OK || !itf ||
	    !(s->batch = itf->pFunctionList) || s->batch->version.major != KW_P11_BATCH_VERSION_MAJOR)
		goto none;
	if (!(s->key = find_key(&s->p11, label)))
		goto none;
	s->ec = EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC;
	s->sig_max = EVP_PKEY_get_size(pub);
	s->ec_half = s->ec ? (size_t)(EVP_PKEY_get_bits(pub) + 7) / 8 : 0;
	*out = s;
	return 0;
none:
	/* no batch interface here: not an error, the pipeline signs one by one */
	ERR_clear_error();
	ca_p11_close(&s->p11);
	free(s);
	return 0;
}

void ca_batch_signer_close(struct ca_batch_signer *s)
{
	if (!s)
		return;
	ca_p11_close(&s->p11);
	free(s);
}

/* The DigestInfo prefix of RFC 8017 9.2 for md (the digest follows). */
static const unsigned char *digest_info(const EVP_MD *md, size_t *len)
{
	static const unsigned char sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
					       0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
	static const unsigned char sha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
					       0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
	static const unsigned char sha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
					       0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

	*len = sizeof sha256;
	switch (EVP_MD_get_type(md)) {
	case NID_sha384:
		return sha384;
	case NID_sha512:
		return sha512;
	default:
		return sha256;
	}
}

/* The signature algorithm's NID for this key and md. */
static int signature_nid(const struct ca_batch_signer *s, const EVP_MD *md, int *nid)
{
	if (!OBJ_find_sigid_by_algs(nid, EVP_MD_get_type(md), s->ec ? NID_X9_62_id_ecPublicKey : NID_rsaEncryption))
		return ca_error("no signature algorithm for %s with this key", EVP_MD_get0_name(md));
	return 0;
}

int ca_batch_algorithm(const struct ca_batch_signer *s, const EVP_MD *md, struct ca_der *alg)
{
	X509_ALGOR *a = X509_ALGOR_new();
	unsigned char *der = NULL;
	int nid = 0, len = -1, rc;

	if (a && !signature_nid(s, md, &nid) &&
	    X509_ALGOR_set0(a, OBJ_nid2obj(nid), s->ec ? V_ASN1_UNDEF : V_ASN1_NULL, NULL))
		len = i2d_X509_ALGOR(a, &der);
	rc = len > 0 && ca_der_put(alg, der, (size_t)len) == 0 ? 0 : ca_error("cannot encode the signature algorithm");
	OPENSSL_free(der);
	X509_ALGOR_free(a);
	return rc;
}

/* x's signature algorithms (TBSCertificate's and the outer one) for this key and md. */
static int set_algorithm(const struct ca_batch_signer *s, const EVP_MD *md, X509 *x)
{
	int nid = 0;
	const X509_ALGOR *outer_c;
	const ASN1_BIT_STRING *sig_c;
	X509_ALGOR *tbs, *outer;

	if (signature_nid(s, md, &nid))
		return -1;
	/* OpenSSL has no setter for a certificate's algorithms: its fields, as X509_sign fills them */
	tbs = (X509_ALGOR *)X509_get0_tbs_sigalg(x);
	X509_get0_signature(&sig_c, &outer_c, x);
	outer = (X509_ALGOR *)outer_c;
	if (!X509_ALGOR_set0(tbs, OBJ_nid2obj(nid), s->ec ? V_ASN1_UNDEF : V_ASN1_NULL, NULL) ||
	    !X509_ALGOR_set0(outer, OBJ_nid2obj(nid), s->ec ? V_ASN1_UNDEF : V_ASN1_NULL, NULL))
		return ca_error("cannot set the signature algorithm");
	return 0;
}

/* sig (PKCS#11's form) in X.509's: an ECDSA r || s as DER; malloc'd into *out. */
static int x509_form(const struct ca_batch_signer *s, const unsigned char *sig, size_t len, unsigned char **out,
		     size_t *out_len)
{
	unsigned char *der = NULL;
	int der_len;

	if (!s->ec) {
		if (!(*out = malloc(len)))
			return ca_error("out of memory");
		memcpy(*out, sig, len);
		*out_len = len;
		return 0;
	}
	{
		ECDSA_SIG *e = ECDSA_SIG_new();
		BIGNUM *r = BN_bin2bn(sig, (int)(len / 2), NULL), *sv = BN_bin2bn(sig + len / 2, (int)(len / 2), NULL);

		if (len != 2 * s->ec_half || !e || !r || !sv || !ECDSA_SIG_set0(e, r, sv)) {
			BN_free(r);
			BN_free(sv);
			ECDSA_SIG_free(e);
			return ca_error("the HSM's ECDSA signature is %zu bytes, not %zu", len, 2 * s->ec_half);
		}
		der_len = i2d_ECDSA_SIG(e, &der);
		ECDSA_SIG_free(e);
	}
	if (der_len <= 0 || !(*out = malloc((size_t)der_len))) {
		OPENSSL_free(der);
		return ca_error("cannot encode the ECDSA signature");
	}
	memcpy(*out, der, (size_t)der_len);
	*out_len = (size_t)der_len;
	OPENSSL_free(der);
	return 0;
}

/* sig (X.509's form) as x's signature. */
static int set_signature(X509 *x, const unsigned char *sig, size_t len)
{
	const ASN1_BIT_STRING *bits_c;
	const X509_ALGOR *alg;
	ASN1_BIT_STRING *bits;
	int ok;

	X509_get0_signature(&bits_c, &alg, x);
	bits = (ASN1_BIT_STRING *)bits_c;
	ok = ASN1_BIT_STRING_set(bits, (unsigned char *)sig, (int)len);
	bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07); /* no unused bits */
	bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
	return ok ? 0 : ca_error("out of memory");
}

int ca_batch_sign_data(struct ca_batch_signer *s, const EVP_MD *md, const unsigned char *const *msgs,
		       const size_t *lens, size_t n, unsigned char **out, size_t *out_lens)
{
	unsigned char *data[CA_SIGN_BATCH] = {NULL}, *sigs[CA_SIGN_BATCH] = {NULL};
	CK_ULONG data_lens[CA_SIGN_BATCH], sig_lens[CA_SIGN_BATCH];
	CK_MECHANISM mech = {s->ec ? CKM_ECDSA : CKM_RSA_PKCS, NULL, 0};
	size_t prefix_len = 0, done = 0;
	const unsigned char *prefix = s->ec ? NULL : digest_info(md, &prefix_len);
	CK_RV rv;
	int rc = -1;

	if (n < 1 || n > CA_SIGN_BATCH)
		return ca_usage_error("a signing batch holds 1 to %d messages", CA_SIGN_BATCH);
	for (size_t i = 0; i < n; i++) {
		unsigned md_len = 0;

		data[i] = malloc(prefix_len + EVP_MAX_MD_SIZE);
		sigs[i] = malloc((size_t)s->sig_max);
		if (!data[i] || !sigs[i] || !EVP_Digest(msgs[i], lens[i], data[i] + prefix_len, &md_len, md, NULL)) {
			ca_error("out of memory");
			goto out;
		}
		if (prefix)
			memcpy(data[i], prefix, prefix_len);
		data_lens[i] = prefix_len + md_len;
		sig_lens[i] = (CK_ULONG)s->sig_max;
	}
	rv = s->batch->C_KW_SignBatch(s->p11.s, &mech, s->key, (CK_ULONG)n, data, data_lens, sigs, sig_lens);
	if (rv != CKR_OK) {
		ca_p11_fail("batch signing (C_KW_SignBatch)", rv);
		goto out;
	}
	for (; done < n; done++)
		if (x509_form(s, sigs[done], sig_lens[done], &out[done], &out_lens[done]))
			goto out;
	rc = 0;
out:
	for (size_t i = 0; rc && i < done; i++) {
		free(out[i]);
		out[i] = NULL;
	}
	for (size_t i = 0; i < n; i++) {
		free(data[i]);
		free(sigs[i]);
	}
	return rc;
}

int ca_batch_sign_certs(struct ca_batch_signer *s, const EVP_MD *md, X509 **certs, size_t n)
{
	unsigned char *tbs[CA_SIGN_BATCH] = {NULL}, *sigs[CA_SIGN_BATCH] = {NULL};
	size_t tbs_lens[CA_SIGN_BATCH], sig_lens[CA_SIGN_BATCH];
	int rc = -1;

	if (n < 1 || n > CA_SIGN_BATCH)
		return ca_usage_error("a signing batch holds 1 to %d certificates", CA_SIGN_BATCH);
	for (size_t i = 0; i < n; i++) {
		int len;

		if (set_algorithm(s, md, certs[i]))
			goto out;
		if ((len = i2d_re_X509_tbs(certs[i], &tbs[i])) <= 0) {
			ca_error("cannot encode the certificate to sign");
			goto out;
		}
		tbs_lens[i] = (size_t)len;
	}
	if (ca_batch_sign_data(s, md, (const unsigned char *const *)tbs, tbs_lens, n, sigs, sig_lens))
		goto out;
	rc = 0;
	for (size_t i = 0; i < n && !rc; i++)
		rc = set_signature(certs[i], sigs[i], sig_lens[i]);
out:
	for (size_t i = 0; i < n; i++) {
		OPENSSL_free(tbs[i]);
		free(sigs[i]);
	}
	return rc;
}
