/*
 * Keystore objects for PKCS#11: certificate and data objects, CKA_ID
 * (default and changes), AES secret keys (sealing, tamper detection),
 * export of extractable keys only, copies and their one-way rules, and the
 * schema migration that added the CKA_ID.
 */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>
#include <openssl/x509.h>

#define OWNER_A "S-1-5-21-1-2-3"

/* A self-signed certificate, DER (caller frees with OPENSSL_free). */
static unsigned char *make_cert(size_t *len)
{
	EVP_PKEY *k = gen_key("P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	unsigned char *der = NULL;
	int l;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	n = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"keyward test", -1, -1,
						    0),
			 1);
	assert_int_equal(X509_set_issuer_name(x, n), 1);
	assert_int_equal(X509_set_pubkey(x, k), 1);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	l = i2d_X509(x, &der);
	assert_true(l > 0);
	*len = (size_t)l;
	X509_free(x);
	EVP_PKEY_free(k);
	return der;
}

/* SHA-1 of the key's public bits, computed apart from the keystore: i2d_PublicKey is the BIT STRING's contents. */
static void sha1_of_public(const unsigned char *spki, size_t spki_len, unsigned char out[20])
{
	const unsigned char *p = spki;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)spki_len);
	unsigned char *bits = NULL;
	int n;

	assert_non_null(k);
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) { /* RFC 8410: the raw 32 bytes */
		unsigned char raw[32];
		size_t raw_len = sizeof raw;

		assert_int_equal(EVP_PKEY_get_raw_public_key(k, raw, &raw_len), 1);
		SHA1(raw, raw_len, out);
	} else { /* RSAPublicKey DER; the EC point */
		n = i2d_PublicKey(k, &bits);
		assert_true(n > 0);
		SHA1(bits, (size_t)n, out);
		OPENSSL_free(bits);
	}
	EVP_PKEY_free(k);
}

static void test_cert_and_data(void **state)
{
	struct fx *f = *state;
	struct kw_objspec spec = {0};
	struct kw_object_row row, got;
	unsigned char *cert, *junk, ckaid[3] = {1, 2, 3}, big[KW_OBJECT_VALUE_MAX + 1];
	size_t cert_len, before;

	cert = make_cert(&cert_len);
	spec.owner = OWNER_A;
	spec.name = "myDemoCA";
	spec.cls = KW_CLASS_CERTIFICATE;
	spec.value = cert;
	spec.value_len = cert_len;
	spec.ckaid = ckaid;
	spec.ckaid_len = sizeof ckaid;
	spec.modifiable = true;
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &row), KW_OK);
	assert_int_equal(row.cls, KW_CLASS_CERTIFICATE);
	assert_false(row.sensitive);
	assert_int_equal(row.usages, 0);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, row.id, &got), KW_OK);
	assert_int_equal(got.value_len, cert_len);
	assert_memory_equal(got.value, cert, cert_len);
	assert_int_equal(got.ckaid_len, sizeof ckaid);
	assert_memory_equal(got.ckaid, ckaid, sizeof ckaid);
	assert_string_equal(got.application, "");
	kw_object_row_cleanup(&got);
	/* a key pair of the same name is no conflict; a second certificate is */
	put_pair(f, f->pid, OWNER_A, "myDemoCA", "P-256", false, true, NULL, NULL);
	before = count_objects(f, f->pid);
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &got), KW_ERR_EXISTS);
	assert_non_null(strstr(kw_last_error(), "certificate named \"myDemoCA\""));
	/* find prefers the private key; by class the certificate */
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_A, "myDemoCA", KW_CLASS_ANY, &got), KW_OK);
	assert_int_equal(got.cls, KW_CLASS_PRIVATE_KEY);
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_A, "myDemoCA", KW_CLASS_CERTIFICATE, &got), KW_OK);
	assert_int_equal(got.id, row.id);
	kw_object_row_cleanup(&got);

	/* not DER, DER with bytes after it, an application on a certificate: refused, nothing stored */
	spec.name = "bad";
	spec.value = (const unsigned char *)"-----BEGIN CERTIFICATE-----";
	spec.value_len = 27;
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &got), KW_ERR_ATTRIBUTE_VALUE);
	assert_non_null(strstr(kw_last_error(), "not one DER-encoded X.509 certificate"));
	junk = malloc(cert_len + 1);
	assert_non_null(junk);
	memcpy(junk, cert, cert_len);
	junk[cert_len] = 0;
	spec.value = junk;
	spec.value_len = cert_len + 1;
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &got), KW_ERR_ATTRIBUTE_VALUE);
	assert_non_null(strstr(kw_last_error(), "bytes after"));
	spec.value_len = 0;
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &got), KW_ERR_ATTRIBUTE_VALUE);
	spec.value = cert;
	spec.value_len = cert_len;
	spec.application = "app";
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &got), KW_ERR_ATTRIBUTE_VALUE);
	spec.cls = KW_CLASS_PRIVATE_KEY;
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &got), KW_ERR_ARGUMENTS);
	assert_int_equal(count_objects(f, f->pid), before);

	/* data objects: an application, an empty value, a cap */
	spec.cls = KW_CLASS_DATA;
	spec.name = "settings";
	spec.value = (const unsigned char *)"hello";
	spec.value_len = 5;
	spec.application = "keyward-ca";
	spec.ckaid_len = 0;
	spec.modifiable = false;
	kw_object_row_cleanup(&row);
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &row), KW_OK);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, row.id, &got), KW_OK);
	assert_string_equal(got.application, "keyward-ca");
	assert_int_equal(got.value_len, 5);
	assert_memory_equal(got.value, "hello", 5);
	assert_false(got.modifiable);
	assert_int_equal(got.ckaid_len, 0);
	kw_object_row_cleanup(&got);
	kw_object_row_cleanup(&row);
	spec.name = "empty";
	spec.value = NULL;
	spec.value_len = 0;
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &row), KW_OK);
	kw_object_row_cleanup(&row);
	memset(big, 'x', sizeof big);
	spec.name = "big";
	spec.value = big;
	spec.value_len = sizeof big;
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &row), KW_ERR_ATTRIBUTE_VALUE);
	spec.value_len = KW_OBJECT_VALUE_MAX;
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &row), KW_OK);
	kw_object_row_cleanup(&row);
	spec.name = "ckaid";
	spec.value_len = 1;
	spec.ckaid_len = KW_CKAID_MAX + 1;
	spec.ckaid = big;
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &row), KW_ERR_ATTRIBUTE_VALUE);
	assert_int_equal(count_objects(f, f->pid), before + 3);
	free(junk);
	OPENSSL_free(cert);
}

static void test_ckaid(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub, got;
	struct kw_attr_change chg = {.extractable = -1, .modifiable = -1, .set_ckaid = true};
	unsigned char want[20], id[KW_CKAID_MAX + 1];
	const char *types[] = {"P-256", "RSA", "Ed25519"};
	EVP_PKEY *k = NULL;

	for (size_t i = 0; i < 3; i++) {
		char name[16];

		snprintf(name, sizeof name, "k%zu", i);
		put_pair(f, f->pid, OWNER_A, name, types[i], false, true, &priv, &pub);
		sha1_of_public(pub.value, pub.value_len, want);
		assert_int_equal(priv.ckaid_len, 20);
		assert_memory_equal(priv.ckaid, want, 20);
		assert_int_equal(pub.ckaid_len, 20);
		assert_memory_equal(pub.ckaid, want, 20);
		assert_int_equal(kw_keystore_get(f->ks, f->pid, priv.id, &got), KW_OK);
		assert_memory_equal(got.ckaid, want, 20);
		kw_object_row_cleanup(&got);
		if (i < 2) {
			kw_object_row_cleanup(&priv);
			kw_object_row_cleanup(&pub);
		}
	}

	/* set through the public half: both halves change; the private key still unseals (not in the AAD) */
	memset(id, 0xab, sizeof id);
	chg.ckaid = id;
	chg.ckaid_len = 7;
	assert_int_equal(kw_keystore_modify(f->ks, f->pid, pub.id, &chg), KW_OK);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, priv.id, &got), KW_OK);
	assert_int_equal(got.ckaid_len, 7);
	assert_memory_equal(got.ckaid, id, 7);
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, pub.id, &got), KW_OK);
	assert_int_equal(got.ckaid_len, 7);
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &k), KW_OK);
	EVP_PKEY_free(k);
	/* empty is a value too */
	chg.ckaid_len = 0;
	assert_int_equal(kw_keystore_modify(f->ks, f->pid, priv.id, &chg), KW_OK);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, pub.id, &got), KW_OK);
	assert_int_equal(got.ckaid_len, 0);
	kw_object_row_cleanup(&got);
	/* too long */
	chg.ckaid_len = KW_CKAID_MAX + 1;
	assert_int_equal(kw_keystore_modify(f->ks, f->pid, priv.id, &chg), KW_ERR_ATTRIBUTE_VALUE);
	/* not modifiable: refused, and nothing of the request applied */
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, -1, 0, NULL), KW_OK);
	chg.ckaid_len = 4;
	chg.extractable = 0;
	assert_int_equal(kw_keystore_modify(f->ks, f->pid, priv.id, &chg), KW_ERR_NOT_MODIFIABLE);
	assert_non_null(strstr(kw_last_error(), "CKA_ID"));
	assert_int_equal(kw_keystore_get(f->ks, f->pid, pub.id, &got), KW_OK);
	assert_int_equal(got.ckaid_len, 0);
	kw_object_row_cleanup(&got);

	/* an explicit CKA_ID at generation */
	{
		struct kw_keygen spec = {OWNER_A, "withid",    false, true,  KW_USAGE_SIGN, (const unsigned char *)"ID",
					 2,	  KW_KEY_NONE, false, false, false};
		struct kw_object_row a, b;

		k = gen_key("P-256");
		assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &a, &b), KW_OK);
		EVP_PKEY_free(k);
		assert_int_equal(a.ckaid_len, 2);
		assert_memory_equal(b.ckaid, "ID", 2);
		kw_object_row_cleanup(&a);
		kw_object_row_cleanup(&b);
	}
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void put_aes(struct fx *f, const char *name, bool extractable, bool modifiable, const unsigned char *key,
		    size_t len, struct kw_object_row *out)
{
	struct kw_keygen spec = {OWNER_A, name,	       extractable, modifiable, KW_USAGE_WRAP, NULL,
				 0,	  KW_KEY_NONE, false,	    false,	false};
	kw_rv rv = kw_keystore_put_secret(f->ks, f->pid, &spec, key, len, out);

	if (rv)
		fprintf(stderr, "put_secret: %s\n", kw_last_error());
	assert_int_equal(rv, KW_OK);
}

static void test_aes(void **state)
{
	struct fx *f = *state;
	struct kw_keygen spec = {OWNER_A, "x", false, true, KW_USAGE_WRAP, NULL, 0, KW_KEY_NONE, false, false, false};
	struct kw_object_row row, got;
	unsigned char key[32], *out = NULL;
	size_t len = 0, before;

	for (size_t i = 0; i < sizeof key; i++)
		key[i] = (unsigned char)(i * 7 + 1);
	put_aes(f, "wrap", false, true, key, 32, &row);
	assert_int_equal(row.cls, KW_CLASS_SECRET_KEY);
	assert_int_equal(row.key_type, KW_KEY_AES);
	assert_int_equal(row.bits, 256);
	assert_int_equal(row.pair_id, 0);
	assert_true(row.sensitive);
	assert_true(row.never_extractable);
	assert_true(row.always_sensitive);
	assert_null(row.value);
	/* the key is sealed: its bytes are nowhere in the row */
	assert_int_equal(raw_int(f, "SELECT instr(sealed, x'%02x%02x%02x%02x%02x%02x%02x%02x') FROM objects WHERE id = %lld",
				 key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7], (long long)row.id),
			 0);
	assert_int_equal(raw_int(f, "SELECT spki IS NULL AND value IS NULL FROM objects WHERE id = %lld", (long long)row.id),
			 1);
	/* round trip, also after a restart and unlock */
	assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, row.id, &out, &len, &got), KW_OK);
	assert_int_equal(len, 32);
	assert_memory_equal(out, key, 32);
	assert_int_equal(got.usages, KW_USAGE_WRAP);
	kw_object_row_cleanup(&got);
	free(out);
	fx_reopen(f);
	assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, row.id, &out, &len, NULL), KW_ERR_STORE_LOCKED);
	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, PASS), KW_OK);
	assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, row.id, &out, &len, NULL), KW_OK);
	assert_memory_equal(out, key, 32);
	free(out);
	/* not a secret key: load_secret refuses; a secret key does not load as a private key */
	{
		struct kw_object_row p;
		EVP_PKEY *k = NULL;

		put_pair(f, f->pid, OWNER_A, "pair", "P-256", false, true, &p, NULL);
		assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, p.id, &out, &len, NULL), KW_ERR_KEY_TYPE);
		assert_int_equal(kw_keystore_load_private(f->ks, f->pid, row.id, &k), KW_ERR_KEY_TYPE);
		kw_object_row_cleanup(&p);
	}
	/* sizes and names: keys share one namespace */
	before = count_objects(f, f->pid);
	assert_int_equal(kw_keystore_put_secret(f->ks, f->pid, &spec, key, 20, &got), KW_ERR_KEY_SIZE);
	spec.name = "pair";
	assert_int_equal(kw_keystore_put_secret(f->ks, f->pid, &spec, key, 16, &got), KW_ERR_EXISTS);
	spec.name = "wrap";
	assert_int_equal(kw_keystore_put_secret(f->ks, f->pid, &spec, key, 16, &got), KW_ERR_EXISTS);
	put_pair(f, f->pid, OWNER_A, "aes-then-pair", "P-256", false, true, NULL, NULL);
	before++;
	before++;
	{
		struct kw_keygen ps = {OWNER_A, "wrap",	     false, true,  KW_USAGE_SIGN, NULL,
				       0,	KW_KEY_NONE, false, false, false};
		struct kw_object_row a, b;
		EVP_PKEY *k = gen_key("P-256");

		assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &ps, k, &a, &b), KW_ERR_EXISTS);
		EVP_PKEY_free(k);
	}
	assert_int_equal(count_objects(f, f->pid), before);
	put_aes(f, "aes128", true, true, key, 16, &got);
	assert_int_equal(got.bits, 128);
	assert_false(got.never_extractable);
	kw_object_row_cleanup(&got);

	/* one-way attributes reseal the row; it still unseals */
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, row.id, -1, 0, NULL), KW_OK);
	assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, row.id, &out, &len, NULL), KW_OK);
	assert_memory_equal(out, key, 32);
	free(out);
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, row.id, 1, -1, NULL), KW_ERR_ATTRIBUTE_VALUE);

	/* a hand edit of any policy field is detected */
	raw_sql(f, "UPDATE objects SET usages = 9 WHERE id = %lld", (long long)row.id);
	assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, row.id, &out, &len, NULL), KW_ERR_TAMPERED);
	raw_sql(f, "UPDATE objects SET usages = 8, extractable = 1 WHERE id = %lld", (long long)row.id);
	assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, row.id, &out, &len, NULL), KW_ERR_TAMPERED);
	assert_int_equal(kw_keystore_export_key(f->ks, f->pid, row.id, &out, &len, NULL), KW_ERR_TAMPERED);
	raw_sql(f, "UPDATE objects SET extractable = 0, bits = 128 WHERE id = %lld", (long long)row.id);
	assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, row.id, &out, &len, NULL), KW_ERR_TAMPERED);
	raw_sql(f, "UPDATE objects SET bits = 256, cls = 1 WHERE id = %lld", (long long)row.id);
	assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, row.id, &out, &len, NULL), KW_ERR_KEY_TYPE);
	raw_sql(f, "UPDATE objects SET cls = 5 WHERE id = %lld", (long long)row.id);
	assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, row.id, &out, &len, NULL), KW_OK);
	free(out);
	kw_object_row_cleanup(&row);
}

static void test_export(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub, aes, ne, row;
	unsigned char key[16], *out = NULL, *spki = NULL;
	const unsigned char *p;
	PKCS8_PRIV_KEY_INFO *p8;
	EVP_PKEY *k;
	size_t len = 0;
	int spki_len;

	memset(key, 0x5a, sizeof key);
	put_aes(f, "aes", true, true, key, 16, &aes);
	put_aes(f, "aes-ne", false, true, key, 16, &ne);
	/* a secret key: its bytes */
	assert_int_equal(kw_keystore_export_key(f->ks, f->pid, aes.id, &out, &len, &row), KW_OK);
	assert_int_equal(len, 16);
	assert_memory_equal(out, key, 16);
	assert_int_equal(row.id, aes.id);
	kw_object_row_cleanup(&row);
	free(out);
	/* not extractable: refused by the keystore itself */
	out = (unsigned char *)"x";
	assert_int_equal(kw_keystore_export_key(f->ks, f->pid, ne.id, &out, &len, NULL), KW_ERR_UNEXTRACTABLE);
	assert_null(out);
	assert_non_null(strstr(kw_last_error(), "is not extractable: it can never leave the HSM"));
	assert_non_null(strstr(kw_last_error(), "aes-ne"));
	/* a private key: PKCS#8 of the same key */
	put_pair(f, f->pid, OWNER_A, "ec", "P-256", true, true, &priv, &pub);
	assert_int_equal(kw_keystore_export_key(f->ks, f->pid, priv.id, &out, &len, NULL), KW_OK);
	p = out;
	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
	assert_non_null(p8);
	k = EVP_PKCS82PKEY(p8);
	assert_non_null(k);
	spki_len = i2d_PUBKEY(k, &spki);
	assert_int_equal((size_t)spki_len, pub.value_len);
	assert_memory_equal(spki, pub.value, pub.value_len);
	OPENSSL_free(spki);
	EVP_PKEY_free(k);
	PKCS8_PRIV_KEY_INFO_free(p8);
	free(out);
	/* the public half is not a key to wrap; after extractable -> false the private key is refused */
	assert_int_equal(kw_keystore_export_key(f->ks, f->pid, pub.id, &out, &len, NULL), KW_ERR_KEY_TYPE);
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, 0, -1, NULL), KW_OK);
	assert_int_equal(kw_keystore_export_key(f->ks, f->pid, priv.id, &out, &len, NULL), KW_ERR_UNEXTRACTABLE);
	/* a hand edit back to extractable fails authentication: never obeyed */
	raw_sql(f, "UPDATE objects SET extractable = 1 WHERE id = %lld", (long long)priv.id);
	assert_int_equal(kw_keystore_export_key(f->ks, f->pid, priv.id, &out, &len, NULL), KW_ERR_TAMPERED);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
	kw_object_row_cleanup(&aes);
	kw_object_row_cleanup(&ne);
}

static void test_copy(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub, *rows = NULL, *rows2 = NULL, aes;
	struct kw_objspec spec = {0};
	unsigned char key[24], *out = NULL;
	EVP_PKEY *a = NULL, *b = NULL;
	size_t n = 0, n2 = 0, len = 0, before;

	put_pair(f, f->pid, OWNER_A, "ca", "P-256", false, true, &priv, &pub);
	before = count_objects(f, f->pid);
	/* loosening is refused, changing nothing */
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, priv.id, "ca2", 1, -1, &rows, &n), KW_ERR_ATTRIBUTE_VALUE);
	assert_non_null(strstr(kw_last_error(), "not extractable"));
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, priv.id, "ca", -1, -1, &rows, &n), KW_ERR_EXISTS);
	assert_int_equal(count_objects(f, f->pid), before);

	/* copy through the public half, tightened to not modifiable */
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, pub.id, "ca2", -1, 0, &rows, &n), KW_OK);
	assert_int_equal(n, 2);
	assert_int_equal(count_objects(f, f->pid), before + 2);
	assert_int_equal(rows[0].cls, KW_CLASS_PRIVATE_KEY);
	assert_int_equal(rows[1].cls, KW_CLASS_PUBLIC_KEY);
	assert_true(rows[0].id != priv.id && rows[1].id != pub.id);
	assert_int_equal(rows[0].pair_id, rows[1].id);
	assert_int_equal(rows[1].pair_id, rows[0].id);
	assert_string_equal(rows[0].name, "ca2");
	assert_string_equal(rows[0].owner, OWNER_A);
	assert_false(rows[0].extractable);
	assert_true(rows[0].never_extractable);
	assert_true(rows[0].always_sensitive);
	assert_false(rows[0].modifiable);
	assert_false(rows[1].modifiable);
	assert_int_equal(rows[0].usages, priv.usages);
	assert_int_equal(rows[0].ckaid_len, priv.ckaid_len);
	assert_memory_equal(rows[0].ckaid, priv.ckaid, priv.ckaid_len);
	assert_int_equal(rows[1].value_len, pub.value_len);
	assert_memory_equal(rows[1].value, pub.value, pub.value_len);
	/* the copy is the same key, sealed under its own row */
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, rows[0].id, &a), KW_OK);
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &b), KW_OK);
	assert_int_equal(EVP_PKEY_eq(a, b), 1);
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	raw_sql(f, "UPDATE objects SET modifiable = 1 WHERE id = %lld", (long long)rows[0].id);
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, rows[0].id, &a), KW_ERR_TAMPERED);
	raw_sql(f, "UPDATE objects SET modifiable = 0 WHERE id = %lld", (long long)rows[0].id);
	/* a copy of the not-modifiable copy cannot be modifiable */
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, rows[0].id, "ca3", -1, 1, &rows2, &n2), KW_ERR_ATTRIBUTE_VALUE);
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, rows[0].id, "ca3", 0, 0, &rows2, &n2), KW_OK);
	assert_true(rows2[0].never_extractable);
	kw_object_rows_free(rows2, n2);
	kw_object_rows_free(rows, n);

	/* an extractable key copied as not extractable: never_extractable stays false (it was extractable) */
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
	put_pair(f, f->pid, OWNER_A, "ex", "Ed25519", true, true, &priv, &pub);
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, priv.id, "ex-locked", 0, -1, &rows, &n), KW_OK);
	assert_false(rows[0].extractable);
	assert_false(rows[0].never_extractable);
	assert_true(rows[0].modifiable);
	assert_int_equal(kw_keystore_export_key(f->ks, f->pid, rows[0].id, &out, &len, NULL), KW_ERR_UNEXTRACTABLE);
	kw_object_rows_free(rows, n);
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, priv.id, "ex-copy", -1, -1, &rows, &n), KW_OK);
	assert_true(rows[0].extractable);
	kw_object_rows_free(rows, n);

	/* a secret key: resealed, the same bytes */
	memset(key, 0x33, sizeof key);
	put_aes(f, "kek", false, true, key, sizeof key, &aes);
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, aes.id, "kek2", 1, -1, &rows, &n), KW_ERR_ATTRIBUTE_VALUE);
	/* keys share a namespace: a copy may not take a key pair's name */
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, aes.id, "ex", -1, -1, &rows, &n), KW_ERR_EXISTS);
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, aes.id, "kek2", -1, -1, &rows, &n), KW_OK);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].cls, KW_CLASS_SECRET_KEY);
	assert_int_equal(rows[0].pair_id, 0);
	assert_int_equal(kw_keystore_load_secret(f->ks, f->pid, rows[0].id, &out, &len, NULL), KW_OK);
	assert_int_equal(len, sizeof key);
	assert_memory_equal(out, key, sizeof key);
	free(out);
	kw_object_rows_free(rows, n);
	kw_object_row_cleanup(&aes);

	/* a data object */
	spec.owner = OWNER_A;
	spec.name = "d";
	spec.cls = KW_CLASS_DATA;
	spec.value = (const unsigned char *)"abc";
	spec.value_len = 3;
	spec.application = "app";
	spec.modifiable = true;
	assert_int_equal(kw_keystore_put_object(f->ks, f->pid, &spec, &aes), KW_OK);
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, aes.id, "d", -1, -1, &rows, &n), KW_ERR_EXISTS);
	assert_int_equal(kw_keystore_copy(f->ks, f->pid, aes.id, "ex", -1, 0, &rows, &n), KW_OK);
	assert_int_equal(rows[0].cls, KW_CLASS_DATA);
	assert_int_equal(rows[0].value_len, 3);
	assert_memory_equal(rows[0].value, "abc", 3);
	assert_string_equal(rows[0].application, "app");
	assert_false(rows[0].modifiable);
	kw_object_rows_free(rows, n);
	kw_object_row_cleanup(&aes);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

/* A store of schema version 1 (no CKA_ID, no application) migrates forward on open. */
static void test_migrate_from_v1(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub, got;
	unsigned char want[20];
	EVP_PKEY *k = NULL;

	put_pair(f, f->pid, OWNER_A, "old", "RSA", false, true, &priv, &pub);
	sha1_of_public(pub.value, pub.value_len, want);
	kw_keystore_free(f->ks);
	f->ks = NULL;
	/* take the store back to version 1, as an older keywardd left it */
	raw_sql(f, "ALTER TABLE objects DROP COLUMN ckaid; ALTER TABLE objects DROP COLUMN application;"
		   "ALTER TABLE credentials DROP COLUMN revoked;"
		   "UPDATE meta SET value = CAST('1' AS BLOB) WHERE key = 'schema_version'");
	assert_int_equal(raw_int(f, "SELECT count(*) FROM pragma_table_info('objects') WHERE name IN ('ckaid', 'application')"),
			 0);
	assert_int_equal(kw_keystore_open(f->path, 0, &f->ks), KW_OK);
	assert_int_equal(raw_int(f, "SELECT value = CAST('3' AS BLOB) FROM meta WHERE key = 'schema_version'"), 1);
	assert_int_equal(raw_int(f, "SELECT count(*) FROM pragma_table_info('credentials') WHERE name = 'revoked'"), 1);
	assert_int_equal(raw_int(f, "SELECT count(*) FROM pragma_table_info('objects') WHERE name IN ('ckaid', 'application')"),
			 2);
	/* both halves got the default CKA_ID */
	assert_int_equal(kw_keystore_get(f->ks, f->pid, priv.id, &got), KW_OK);
	assert_int_equal(got.ckaid_len, 20);
	assert_memory_equal(got.ckaid, want, 20);
	assert_string_equal(got.application, "");
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, pub.id, &got), KW_OK);
	assert_int_equal(got.ckaid_len, 20);
	assert_memory_equal(got.ckaid, want, 20);
	kw_object_row_cleanup(&got);
	/* the sealed key is untouched */
	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, PASS), KW_OK);
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &k), KW_OK);
	EVP_PKEY_free(k);
	/* opening again changes nothing */
	fx_reopen(f);
	assert_int_equal(raw_int(f, "SELECT value = CAST('3' AS BLOB) FROM meta WHERE key = 'schema_version'"), 1);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cert_and_data, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_ckaid, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_aes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_export, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_copy, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_migrate_from_v1, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
