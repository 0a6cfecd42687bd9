/*
 * keyward-ca serve: the cache's OCSP answers assembled and signed many at
 * a time through the HSM's batch interface (ocspder.c).
 */
#ifndef KW_CA_OCSPDER_H
#define KW_CA_OCSPDER_H

#include "ca/ca.h"
#include "ca/ocsp.h"

struct ocsp_presign {
	const struct ocsp_issuer *is;
	X509 *signer_cert; /* the responder: the CA's certificate or the delegated one */
	bool include_cert; /* put it in the answer (a delegated signer) */
	const EVP_MD *md;
	struct ca_batch_signer *batch; /* the signer's key, on a module with the batch interface */
	const unsigned char *key_hash; /* SHA-1 of the signer's public key (ResponderID), or NULL: computed each time */
};
struct ocsp_presign_item {
	char serial[OCSP_SERIAL_HEX_MAX];
	struct ocsp_status status; /* what the database says */
	unsigned char *der;	   /* out: the OCSPResponse (malloc'd) */
	size_t len;
};
/*
 * The answers of items (1 to CA_SIGN_BATCH), each for one SHA-1 certificate
 * id and no nonce, thisUpdate now, nextUpdate now + validity, signed in one
 * round trip. All or none: on failure no item has der.
 */
int ocsp_presign_batch(const struct ocsp_presign *p, struct ocsp_presign_item *items, size_t n, time_t now,
		       unsigned validity);

/* The ResponseData of bs (built by ocsp_answer_build) for signer p, producedAt now, onto out. */
int ocsp_der_tbs(const struct ocsp_presign *p, OCSP_BASICRESP *bs, time_t now, struct ca_der *out);
/* The OCSPResponse of a signed ResponseData (tbs; alg: ca_batch_algorithm's; sig in X.509's form); malloc'd. */
int ocsp_der_response(const struct ocsp_presign *p, const struct ca_der *tbs, const struct ca_der *alg,
		      const unsigned char *sig, size_t sig_len, unsigned char **out, size_t *out_len);

#endif
