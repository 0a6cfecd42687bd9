/*
 * keyward-ca: the OCSP responder's protocol half (RFC 6960, RFC 5019),
 * buffer to buffer: a request's DER in, a signed response's DER out. No
 * socket, no database: the status of a serial comes from a callback, so
 * the decoder and the answer can be fuzzed (tests/fuzz/fuzz_ocsp.c).
 */
#ifndef KW_CA_OCSP_H
#define KW_CA_OCSP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#define OCSP_REQUEST_MAX (64 * 1024) /* bytes of a request's DER */
#define OCSP_IDS_MAX 32		     /* certificate ids in one request */
#define OCSP_SERIAL_HEX_MAX 41	     /* RFC 5280: at most 20 octets, as upper-case hex + NUL */

/* What a certificate's state is, as the database holds it. */
struct ocsp_status {
	int status;	   /* V_OCSP_CERTSTATUS_GOOD, _REVOKED or _UNKNOWN */
	time_t revoked_at; /* revoked: revocationTime */
	int reason;	   /* revoked: CRL reason code, -1 none */
	time_t invalid_at; /* revoked: the invalidityDate (a backdated revocation), 0 none */
};

/*
 * The status of serial (upper-case hex, no leading zeros, as the CA stores
 * it) into *st; 0, or -1 if it cannot be known now (the answer is then
 * internalError).
 */
typedef int (*ocsp_lookup_fn)(void *arg, const char *serial, struct ocsp_status *st);

/* The certificate that signs responses (the CA's own, or a delegated one) and its key. */
struct ocsp_signer {
	X509 *cert;
	EVP_PKEY *key;
	const EVP_MD *md;
	bool include_cert; /* put cert in the response (a delegated signer: the client needs it) */
};

/* What answers for one issuer: its certificate's hashes, precomputed for SHA-1 and SHA-256 CertIDs. */
struct ocsp_issuer {
	X509 *cert;
	unsigned char name_sha1[20], key_sha1[20], name_sha256[32], key_sha256[32];
};
int ocsp_issuer_init(struct ocsp_issuer *is, X509 *ca);

/* What an answer was, for the caller's counters and its cache. */
enum ocsp_outcome {
	OCSP_OUT_GOOD,
	OCSP_OUT_REVOKED,
	OCSP_OUT_UNKNOWN,
	OCSP_OUT_MALFORMED,
	OCSP_OUT_UNAUTHORIZED,
	OCSP_OUT_INTERNAL, /* the database or the signer failed */
	OCSP_OUT_N
};
const char *ocsp_outcome_name(enum ocsp_outcome o);

struct ocsp_result {
	enum ocsp_outcome outcome;	  /* of the whole; for several ids: the first id's, or the error */
	bool cacheable;			  /* one SHA-1 id, no nonce (RFC 5019): the same bytes answer anyone */
	char serial[OCSP_SERIAL_HEX_MAX]; /* the first id's serial, if any */
	time_t this_update, next_update;
};

/*
 * Decodes a request (DER, at most OCSP_REQUEST_MAX bytes, 1 to
 * OCSP_IDS_MAX ids, no trailing bytes); NULL if it is not one.
 */
OCSP_REQUEST *ocsp_request_decode(const unsigned char *der, size_t len);

/*
 * The answer to req (NULL: a request that did not decode) as DER into
 * *out (OPENSSL_malloc'd): malformedRequest, unauthorized (an id of
 * another issuer), internalError (lookup or signer failed), or a basic
 * response signed by s with a SingleResponse per id (nonce echoed),
 * thisUpdate = now, nextUpdate = now + validity. 0, or -1 if even an error
 * answer could not be encoded.
 */
int ocsp_answer(const struct ocsp_issuer *is, const struct ocsp_signer *s, OCSP_REQUEST *req, ocsp_lookup_fn lookup,
		void *arg, time_t now, unsigned validity, unsigned char **out, size_t *out_len,
		struct ocsp_result *res);

/*
 * ocsp_answer's first half: the response req asks for, unsigned, in *bs
 * (a SingleResponse per id, the nonce echoed); or, when the answer is an
 * error (malformed, unauthorized, a lookup failed), that answer's DER in
 * *out and *bs NULL. res as ocsp_answer fills it. 0, or -1.
 */
int ocsp_answer_build(const struct ocsp_issuer *is, OCSP_REQUEST *req, ocsp_lookup_fn lookup, void *arg, time_t now,
		      unsigned validity, OCSP_BASICRESP **bs, unsigned char **out, size_t *out_len,
		      struct ocsp_result *res);

/* A request for one serial under is, SHA-1 CertID, no nonce: what the cache pre-signs the answer to. */
OCSP_REQUEST *ocsp_request_for_serial(const struct ocsp_issuer *is, const char *serial);

/*
 * Whether req is the kind RFC 5019 caches (one SHA-1 id of is's, no nonce);
 * if so its serial into serial.
 */
bool ocsp_request_cache_key(const struct ocsp_issuer *is, OCSP_REQUEST *req, char *serial, size_t size);

/* The bytes of an error response (malformedRequest etc.): static, never freed. */
void ocsp_error_bytes(int status, const unsigned char **der, size_t *len);

/*
 * Base64 or base64url text (the GET form's path, percent-decoding done),
 * padded or not, into out (at most max bytes); its length, or -1.
 */
long ocsp_base64_decode(const char *text, size_t len, unsigned char *out, size_t max);

#endif
