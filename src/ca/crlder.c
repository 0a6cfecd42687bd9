/*
 * keyward-ca: a CRL's list of revoked certificates, written straight as
 * DER. OpenSSL's X509_CRL keeps every entry as a tree of objects (a
 * million revocations: about 400 MB and seconds of allocation); here each
 * entry is 40-odd bytes appended to one buffer as the database yields it.
 * OpenSSL still builds and signs everything else (a CRL with no entries
 * gives the version, algorithm, issuer, times and extensions, each
 * re-encoded from it), and the TBSCertList assembled here is signed with
 * the CA key through EVP_DigestSign, so the PKCS#11 path is the same.
 *
 * RFC 5280 5.1: CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm,
 * signatureValue BIT STRING }; revokedCertificates ::= SEQUENCE OF SEQUENCE {
 * userCertificate INTEGER, revocationDate Time, crlEntryExtensions OPTIONAL }.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"

int ca_der_put(struct ca_der *d, const void *p, size_t n)
{
	if (n > d->cap - d->len) {
		size_t cap = d->cap ? d->cap : 4096;
		unsigned char *grown;

		while (cap - d->len < n)
			cap *= 2;
		if (!(grown = realloc(d->p, cap)))
			return ca_error("out of memory building the CRL (%zu bytes)", cap);
		d->p = grown;
		d->cap = cap;
	}
	memcpy(d->p + d->len, p, n);
	d->len += n;
	return 0;
}

int ca_der_reserve(struct ca_der *d, size_t more)
{
	unsigned char *grown;

	if (more <= d->cap - d->len)
		return 0;
	if (!(grown = realloc(d->p, d->len + more)))
		return ca_error("out of memory building the CRL (%zu bytes)", d->len + more);
	d->p = grown;
	d->cap = d->len + more;
	return 0;
}

void ca_der_free(struct ca_der *d)
{
	free(d->p);
	memset(d, 0, sizeof *d);
}

/* A tag and a definite length into out (at most 6 bytes); returns how many. */
static size_t header(unsigned char *out, unsigned char tag, size_t len)
{
	size_t n = 0, bytes = 0;

	out[n++] = tag;
	if (len < 0x80) {
		out[n++] = (unsigned char)len;
		return n;
	}
	for (size_t l = len; l; l >>= 8)
		bytes++;
	out[n++] = (unsigned char)(0x80 | bytes);
	while (bytes--)
		out[n++] = (unsigned char)(len >> (8 * bytes));
	return n;
}

int ca_der_tlv(struct ca_der *d, unsigned char tag, const void *value, size_t len)
{
	unsigned char h[8];

	return ca_der_put(d, h, header(h, tag, len)) || ca_der_put(d, value, len);
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
				      : -1;
}

int ca_der_revoked_entry(struct ca_der *d, const char *serial, time_t when, int reason)
{
	return ca_der_revoked_entry_ext(d, serial, when, reason, 0);
}

int ca_der_revoked_entry_ext(struct ca_der *d, const char *serial, time_t when, int reason, time_t invalid_at)
{
	/* Extension { id-ce-cRLReasons, OCTET STRING { ENUMERATED reason } } */
	unsigned char reason_ext[] = {0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d,
				      0x15, 0x04, 0x03, 0x0a, 0x01, (unsigned char)reason};
	/* Extension { id-ce-invalidityDate, OCTET STRING { GeneralizedTime } } (RFC 5280 5.3.2) */
	unsigned char invalid_ext[26] = {0x30, 0x18, 0x06, 0x03, 0x55, 0x1d, 0x18, 0x04, 0x11, 0x18, 0x0f};
	unsigned char entry[160], num[40];
	size_t hex = strlen(serial), nb = 1, first, e = 0, i = 0;
	struct tm tm;
	char t[20];

	if (!hex || hex > 2 * 32)
		return ca_error("serial %s: not 1 to 64 hex digits", serial);
	num[0] = 0; /* room for the zero that keeps a high first bit positive */
	if (hex % 2) {
		if (hex_digit(serial[0]) < 0)
			return ca_error("serial %s: not hexadecimal", serial);
		num[nb++] = (unsigned char)hex_digit(serial[0]);
		i = 1;
	}
	for (; i < hex; i += 2) {
		int hi = hex_digit(serial[i]), lo = hex_digit(serial[i + 1]);

		if (hi < 0 || lo < 0)
			return ca_error("serial %s: not hexadecimal", serial);
		num[nb++] = (unsigned char)(hi << 4 | lo);
	}
	for (first = 1; first < nb - 1 && num[first] == 0; first++)
		; /* minimal: no redundant leading zero bytes */
	if (num[first] & 0x80)
		first--;
	gmtime_r(&when, &tm);
	e += header(entry + e, 0x02, nb - first);
	memcpy(entry + e, num + first, nb - first);
	e += nb - first;
	if (tm.tm_year >= 50 && tm.tm_year < 150) { /* RFC 5280: UTCTime through 2049 */
		strftime(t, sizeof t, "%y%m%d%H%M%SZ", &tm);
		e += header(entry + e, 0x17, 13);
		memcpy(entry + e, t, 13);
		e += 13;
	} else {
		strftime(t, sizeof t, "%Y%m%d%H%M%SZ", &tm);
		e += header(entry + e, 0x18, 15);
		memcpy(entry + e, t, 15);
		e += 15;
	}
	if (reason > 0 || invalid_at > 0) {
		/* Extensions: the reason (unspecified is left out, as RFC 5280 recommends), the invalidity date */
		size_t n = (reason > 0 ? sizeof reason_ext : 0) + (invalid_at > 0 ? sizeof invalid_ext : 0);

		e += header(entry + e, 0x30, n);
		if (reason > 0) {
			memcpy(entry + e, reason_ext, sizeof reason_ext);
			e += sizeof reason_ext;
		}
		if (invalid_at > 0) {
			gmtime_r(&invalid_at, &tm);
			if (tm.tm_year + 1900 > 9999)
				return ca_error("invalidity date past the year 9999");
			strftime(t, sizeof t, "%Y%m%d%H%M%SZ", &tm);
			memcpy(invalid_ext + 11, t, 15);
			memcpy(entry + e, invalid_ext, sizeof invalid_ext);
			e += sizeof invalid_ext;
		}
	}
	return ca_der_tlv(d, 0x30, entry, e);
}

/* An i2d's result (der, len; len <= 0: it failed) onto d; der freed. */
static int put_encoded(struct ca_der *d, unsigned char *der, int len, const char *what)
{
	int rc = len > 0 && ca_der_put(d, der, (size_t)len) == 0 ? 0 : ca_error("cannot encode the CRL's %s", what);

	OPENSSL_free(der);
	return rc;
}

/* The length of a tag and length header for len content bytes. */
static size_t header_len(size_t len)
{
	unsigned char h[8];

	return header(h, 0x30, len);
}

int ca_crl_assemble(X509_CRL *head, const struct ca_der *entries, EVP_PKEY *priv, const EVP_MD *md, struct ca_der *out)
{
	static const unsigned char v2[] = {0x02, 0x01, 0x01}, room[8] = {0};
	const X509_ALGOR *alg = NULL;
	const ASN1_BIT_STRING *unused = NULL;
	const STACK_OF(X509_EXTENSION) *exts = X509_CRL_get0_extensions(head);
	struct ca_der prefix = {0}, ext = {0}, algd = {0};
	size_t body_len, tbs_start, total, sig_len = 0, h;
	unsigned char *sig = NULL, hdr[8];
	EVP_MD_CTX *ctx = NULL;
	int rc = -1;

	X509_CRL_get0_signature(head, &unused, &alg);
	if (ca_der_put(&prefix, v2, sizeof v2))
		goto out;
	{
		/* the head's parts, each encoded by OpenSSL: algorithm, issuer, times; the algorithm again; extensions */
		unsigned char *der[6] = {NULL};
		int len[6] = {0}, bad = 0;
		static const char *const what[6] = {"algorithm", "issuer", "thisUpdate", "nextUpdate", "algorithm",
						    "extensions"};
		struct ca_der *to[6] = {&prefix, &prefix, &prefix, &prefix, &algd, &ext};

		len[0] = i2d_X509_ALGOR((X509_ALGOR *)alg, &der[0]);
		len[1] = i2d_X509_NAME(X509_CRL_get_issuer(head), &der[1]);
		len[2] = i2d_ASN1_TIME((ASN1_TIME *)X509_CRL_get0_lastUpdate(head), &der[2]);
		len[3] = i2d_ASN1_TIME((ASN1_TIME *)X509_CRL_get0_nextUpdate(head), &der[3]);
		len[4] = i2d_X509_ALGOR((X509_ALGOR *)alg, &der[4]);
		if (sk_X509_EXTENSION_num(exts) > 0)
			len[5] = i2d_X509_EXTENSIONS((X509_EXTENSIONS *)exts, &der[5]);
		for (int i = 0; i < 6; i++) {
			if (i == 5 && !len[5])
				continue; /* no extensions */
			if (bad)
				OPENSSL_free(der[i]); /* after a failure: freed, not put */
			else
				bad = put_encoded(to[i], der[i], len[i], what[i]);
		}
		if (bad)
			goto out;
	}
	/*
	 * One buffer, sized once, holds the whole CRL; the entries are copied
	 * into it once. The outer header's length is known only after signing
	 * (ECDSA signatures vary), so room is left for it in front.
	 */
	body_len = prefix.len + (entries->len ? header_len(entries->len) + entries->len : 0) +
		   (ext.len ? header_len(ext.len) + ext.len : 0);
	if (ca_der_put(out, room, sizeof room))
		goto out;
	tbs_start = out->len;
	if (ca_der_reserve(out, header_len(body_len) + body_len + algd.len + (size_t)EVP_PKEY_get_size(priv) + 64) ||
	    ca_der_put(out, hdr, header(hdr, 0x30, body_len)) || ca_der_put(out, prefix.p, prefix.len) ||
	    (entries->len && ca_der_tlv(out, 0x30, entries->p, entries->len)) ||
	    (ext.len && ca_der_tlv(out, 0xa0, ext.p, ext.len)))
		goto out;
	/* the signature, through the same EVP_PKEY (and so the same token) X509_CRL_sign used */
	sig_len = (size_t)EVP_PKEY_get_size(priv);
	if (!(sig = OPENSSL_malloc(sig_len + 1)) || !(ctx = EVP_MD_CTX_new()) ||
	    EVP_DigestSignInit(ctx, NULL, md, NULL, priv) != 1 ||
	    EVP_DigestSign(ctx, sig + 1, &sig_len, out->p + tbs_start, out->len - tbs_start) != 1) {
		ERR_clear_error();
		ca_error("the token did not sign the CRL");
		goto out;
	}
	sig[0] = 0; /* BIT STRING: no unused bits */
	if (ca_der_put(out, algd.p, algd.len) || ca_der_tlv(out, 0x03, sig, sig_len + 1))
		goto out;
	total = out->len - tbs_start;
	h = header(hdr, 0x30, total);
	memcpy(out->p + tbs_start - h, hdr, h);
	memmove(out->p, out->p + tbs_start - h, h + total);
	out->len = h + total;
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(sig);
	ca_der_free(&prefix);
	ca_der_free(&ext);
	ca_der_free(&algd);
	return rc;
}
