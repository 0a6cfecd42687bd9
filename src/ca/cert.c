/*
 * keyward-ca: certificates. The root's self-signed certificate, a
 * subordinate's request, and issuance from a request under a template:
 * the request's signature is checked, its subject and public key are
 * taken, every extension comes from the template, the validity never
 * outlasts the CA's own, and the serial is 127 random bits.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"

ASN1_INTEGER *ca_new_serial(void)
{
	unsigned char r[16];
	BIGNUM *bn;
	ASN1_INTEGER *serial = NULL;

	do {
		if (RAND_bytes(r, sizeof r) != 1)
			return NULL;
		r[0] &= 0x7f;	  /* positive, as RFC 5280 wants */
	} while (!r[0] && !r[1]); /* keep at least 113 bits in use */
	bn = BN_bin2bn(r, sizeof r, NULL);
	if (bn)
		serial = BN_to_ASN1_INTEGER(bn, NULL);
	BN_free(bn);
	return serial;
}

void ca_serial_hex(const ASN1_INTEGER *serial, char *out, size_t size)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;

	const char *digits = hex ? hex : "";

	/* BN_bn2hex pads to whole bytes; stored and shown without leading zeros, as normalize_serial reads them */
	while (digits[0] == '0' && digits[1])
		digits++;
	snprintf(out, size, "%s", digits);
	OPENSSL_free(hex);
	BN_free(bn);
}

STACK_OF(X509) * ca_read_certs(const char *path)
{
	STACK_OF(X509) * certs;
	FILE *f = fopen(path, "re");
	X509 *x;

	if (!f)
		return NULL;
	if ((certs = sk_X509_new_null()))
		while ((x = PEM_read_X509(f, NULL, NULL, NULL)))
			if (!sk_X509_push(certs, x))
				X509_free(x);
	fclose(f);
	ERR_clear_error();
	if (!certs)
		errno = ENOMEM;
	return certs;
}

int ca_cert_load_chain(const struct ca_conf *c, STACK_OF(X509) * *chain)
{
	char path[CA_PATH_MAX + 16];

	ca_path(c, "ca.crt", path, sizeof path);
	if (!(*chain = ca_read_certs(path)))
		return ca_error(
			"%s: %s%s", path, strerror(errno),
			c->subordinate ? " (a subordinate CA issues once install-cert installed its certificate)" : "");
	if (sk_X509_num(*chain) == 0) {
		sk_X509_free(*chain);
		*chain = NULL;
		return ca_error("%s holds no certificate", path);
	}
	return 0;
}

/* The public key of the CA's file name (a PEM certificate, or with request a PEM request); NULL if none. */
static EVP_PKEY *key_in(const struct ca_conf *c, const char *name, bool request)
{
	char path[CA_PATH_MAX + 16];
	EVP_PKEY *key = NULL;
	FILE *f;

	ca_path(c, name, path, sizeof path);
	if (!(f = fopen(path, "re")))
		return NULL;
	if (request) {
		X509_REQ *r = PEM_read_X509_REQ(f, NULL, NULL, NULL);

		key = r ? X509_REQ_get_pubkey(r) : NULL;
		X509_REQ_free(r);
	} else {
		X509 *x = PEM_read_X509(f, NULL, NULL, NULL);

		key = x ? X509_get_pubkey(x) : NULL;
		X509_free(x);
	}
	fclose(f);
	ERR_clear_error();
	return key;
}

EVP_PKEY *ca_cert_public_key(const struct ca_conf *c)
{
	EVP_PKEY *key = key_in(c, "ca.crt", false);

	if (!key && !(key = key_in(c, "ca.csr", true)))
		ca_error("neither ca.crt nor ca.csr in %s says which key is the CA's", c->dir);
	return key;
}

bool ca_same_key(EVP_PKEY *a, EVP_PKEY *b)
{
	return a && b && EVP_PKEY_eq(a, b) == 1;
}

int ca_stage_pem_chain(struct ca_staged *s, const char *path, STACK_OF(X509) * chain)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *pem;
	long len;
	int ok = b != NULL, rc;

	for (int i = 0; ok && i < sk_X509_num(chain); i++)
		ok = PEM_write_bio_X509(b, sk_X509_value(chain, i));
	len = ok ? BIO_get_mem_data(b, &pem) : 0;
	rc = ok ? ca_stage_file(s, path, pem, (size_t)len, 0644) : ca_error("cannot encode the chain for %s", path);
	BIO_free(b);
	return rc;
}

static X509_NAME *ca_subject(const struct ca_conf *c)
{
	X509_NAME *n = X509_NAME_new();

	if (n && !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)c->name, -1, -1, 0)) {
		X509_NAME_free(n);
		n = NULL;
	}
	return n;
}

X509 *ca_cert_make_root(const struct ca_conf *c, EVP_PKEY *priv, EVP_PKEY *pub)
{
	X509 *x = X509_new();
	X509_NAME *n = ca_subject(c);
	ASN1_INTEGER *serial = ca_new_serial();
	int ok = x && n && serial && X509_set_version(x, 2) && X509_set_serialNumber(x, serial) &&
		 X509_set_subject_name(x, n) && X509_set_issuer_name(x, n) && X509_set_pubkey(x, pub) &&
		 X509_gmtime_adj(X509_getm_notBefore(x), 0) &&
		 X509_time_adj_ex(X509_getm_notAfter(x), (int)c->validity_days, 0, NULL);

	ok = ok && !ca_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") &&
	     !ca_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature") &&
	     !ca_add_ext(x, x, NID_subject_key_identifier, "hash") &&
	     !ca_add_ext(x, x, NID_authority_key_identifier, "keyid:always");
	if (ok && X509_sign(x, priv, ca_md(c)) <= 0) {
		ca_error("the token did not sign the CA certificate");
		ok = 0;
	} else if (!ok) {
		ca_error("cannot build the CA certificate");
	}
	X509_NAME_free(n);
	ASN1_INTEGER_free(serial);
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

X509_REQ *ca_cert_make_request(const struct ca_conf *c, EVP_PKEY *priv, EVP_PKEY *pub)
{
	X509_REQ *r = X509_REQ_new();
	X509_NAME *n = ca_subject(c);
	int ok = r && n && X509_REQ_set_version(r, 0) && X509_REQ_set_subject_name(r, n) &&
		 X509_REQ_set_pubkey(r, pub) && X509_REQ_sign(r, priv, ca_md(c)) > 0;

	X509_NAME_free(n);
	if (!ok) {
		ca_error("cannot build or sign the subordinate CA's request");
		X509_REQ_free(r);
		return NULL;
	}
	return r;
}

/*
 * The request's SubjectPublicKeyInfo into x as it was sent: X509_set_pubkey
 * would encode the decoded key again through the providers, a third of an
 * issuance's CPU in OpenSSL 3.0. Parameters other than none, NULL, a curve
 * OID or a SEQUENCE take that slower road.
 */
static int copy_public_key(const struct ca_request *req, X509 *x)
{
	const ASN1_OBJECT *oid;
	const void *param;
	ASN1_OBJECT *oid_copy;
	unsigned char *key_copy;
	void *param_copy = NULL;
	int key_len = ASN1_STRING_length(req->key_bits), type;

	X509_ALGOR_get0(&oid, &type, &param, req->key_algorithm);
	if (type == V_ASN1_OBJECT)
		param_copy = OBJ_dup(param);
	else if (type == V_ASN1_SEQUENCE)
		param_copy = ASN1_STRING_dup(param);
	else if (type != V_ASN1_UNDEF && type != V_ASN1_NULL)
		return X509_set_pubkey(x, req->key);
	oid_copy = OBJ_dup(oid);
	key_copy = OPENSSL_memdup(ASN1_STRING_get0_data(req->key_bits), key_len ? (size_t)key_len : 1);
	if (oid_copy && key_copy && (param_copy || !param) &&
	    X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), oid_copy, type, param_copy, key_copy, key_len))
		return 1;
	ASN1_OBJECT_free(oid_copy);
	OPENSSL_free(key_copy);
	if (type == V_ASN1_OBJECT)
		ASN1_OBJECT_free(param_copy);
	else
		ASN1_STRING_free(param_copy);
	return 0;
}

/*
 * The certificate's subject: with "subject = cn" the request's CN alone,
 * nothing else the requester claims (an organization, a country); with
 * "any", the request's subject as it is.
 */
static int set_subject(const struct ca_template *t, const struct ca_request *req, X509 *x)
{
	const X509_NAME *from = req->subject;
	X509_NAME *name;
	int i = X509_NAME_get_index_by_NID(from, NID_commonName, -1), ok;

	if (!t->subject_cn || i < 0)
		return X509_set_subject_name(x, from);
	if (!(name = X509_NAME_new()))
		return 0;
	ok = X509_NAME_add_entry(name, X509_NAME_get_entry(from, i), -1, 0) && X509_set_subject_name(x, name);
	X509_NAME_free(name);
	return ok;
}

X509 *ca_cert_build(const struct ca_issuer *is, const struct ca_request *req)
{
	const struct ca_template *t = is->t;
	X509 *ca = is->ca;
	ASN1_INTEGER *serial = ca_new_serial();
	X509 *x = X509_new();
	ASN1_TIME *not_after = NULL;
	int ok;

	ok = x && serial && X509_set_version(x, 2) && X509_set_serialNumber(x, serial) && set_subject(t, req, x) &&
	     X509_set_issuer_name(x, X509_get_subject_name(ca)) && copy_public_key(req, x) &&
	     X509_gmtime_adj(X509_getm_notBefore(x), 0) &&
	     (not_after = X509_time_adj_ex(NULL, t->validity_seconds ? 0 : (int)t->validity_days,
					   (long)t->validity_seconds, NULL));
	if (!ok) {
		ca_error("cannot build the certificate");
		goto fail;
	}
	/* never beyond the CA's own validity */
	X509_set1_notAfter(x, ASN1_TIME_compare(not_after, X509_get0_notAfter(ca)) > 0 ? X509_get0_notAfter(ca)
										       : not_after);
	if (ca_template_apply(is, req, x))
		goto fail;
	ASN1_TIME_free(not_after);
	ASN1_INTEGER_free(serial);
	return x;
fail:
	ASN1_TIME_free(not_after);
	ASN1_INTEGER_free(serial);
	X509_free(x);
	return NULL;
}

int ca_cert_sign(const struct ca_conf *c, X509 *x, EVP_PKEY *priv)
{
	if (X509_sign(x, priv, ca_md(c)) <= 0) {
		ERR_clear_error();
		return ca_error("the token did not sign the certificate");
	}
	return 0;
}

X509 *ca_cert_issue(const struct ca_issuer *is, const struct ca_request *req, EVP_PKEY *priv)
{
	X509 *x = ca_cert_build(is, req);

	if (x && ca_cert_sign(is->conf, x, priv)) {
		X509_free(x);
		x = NULL;
	}
	return x;
}
