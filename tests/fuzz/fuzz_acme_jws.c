/*
 * Fuzz target: ACME's JWS decoder (acme_jws.c) as keyward-ca serve runs it
 * on every POST body from an unauthenticated peer: the flattened JWS and
 * its protected header, the JWK (EC P-256/384/521, RSA, OKP Ed25519) and
 * its thumbprint, the payload as JSON; then the signature verified under
 * the JWS's own key (ES256/384/512, RS256, EdDSA) and, as for external
 * account binding, under a fixed HMAC key. The same
 * bytes also go through the bare base64url decoder, which must agree
 * with the encoder on whatever it accepts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "ca/acme.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char hmac_key[ACME_EAB_KEY_LEN] = {1, 2, 3};
	struct acme_jws j;
	unsigned char *raw = malloc(size + 1);
	char *again = malloc(size / 3 * 4 + 8);
	long n;

	if (raw && again && size < 4096) {
		n = acme_b64u_decode((const char *)data, size, raw, size + 1);
		if (n >= 0 && (acme_b64u_encode(raw, (size_t)n, again) != size || memcmp(again, data, size)))
			abort(); /* accepted text that does not re-encode to itself: two texts for one value */
	}
	free(raw);
	free(again);
	if (acme_jws_parse(data, size, &j) == AP_OK) {
		if (j.key)
			acme_jws_verify(&j, j.key);
		acme_jws_verify_hmac(&j, hmac_key, sizeof hmac_key);
		if (j.jwk) {
			EVP_PKEY *key = NULL;
			char thumb[ACME_THUMB_LEN + 1];

			if (acme_jwk_key(j.jwk, &key, thumb) == AP_OK && strlen(thumb) != ACME_THUMB_LEN)
				abort();
			EVP_PKEY_free(key);
		}
		acme_jws_cleanup(&j);
	}
	ERR_clear_error();
	return 0;
}
