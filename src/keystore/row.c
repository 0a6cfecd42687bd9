/*
 * The rows the keystore and its backends exchange (row.h): freeing them,
 * the default CKA_ID a key row gets from its public key, and the lengths
 * a secret key's value may have (keystore.h's kw_secret_len_ok).
 */
#include "keystore/row.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "keystore/keystore.h"

void kw_object_row_cleanup(struct kw_object_row *row)
{
	if (!row)
		return;
	free(row->value);
	row->value = NULL;
	row->value_len = 0;
}

void kw_object_rows_free(struct kw_object_row *rows, size_t n)
{
	if (!rows)
		return;
	for (size_t i = 0; i < n; i++)
		kw_object_row_cleanup(&rows[i]);
	free(rows);
}

kw_rv kw_keystore_default_ckaid(const unsigned char *spki, size_t spki_len, unsigned char out[KW_CKAID_DEFAULT_LEN])
{
	const unsigned char *p = spki, *bits = NULL;
	X509_PUBKEY *pub;
	int bits_len = 0;
	kw_rv rv = KW_OK;

	if (!spki || !spki_len || spki_len > LONG_MAX)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no public key for a CKA_ID");
	pub = d2i_X509_PUBKEY(NULL, &p, (long)spki_len);
	if (!pub || p != spki + spki_len || X509_PUBKEY_get0_param(NULL, &bits, &bits_len, NULL, pub) != 1 ||
	    !bits || bits_len <= 0)
		rv = kw_error_openssl(KW_ERR_CRYPTO, "store: the public key does not decode (for its CKA_ID)");
	else
		SHA1(bits, (size_t)bits_len, out);
	X509_PUBKEY_free(pub);
	return rv;
}

bool kw_secret_len_ok(enum kw_key_type t, size_t len)
{
	if (t == KW_KEY_AES)
		return len == 16 || len == 24 || len == 32;
	return t == KW_KEY_GENERIC && len >= KW_GENERIC_MIN && len <= KW_GENERIC_MAX;
}
