/*
 * keyward-pkcs11.so's AES keys (issue 16, secret keys), with a real
 * keywardd in development mode: keys made by pkcs11-tool, encrypted and
 * decrypted with pkcs11-tool --encrypt/--decrypt (ECB, CBC, CBC-PAD, for
 * 128-, 192- and 256-bit keys) and with the module loaded directly (GCM,
 * which pkcs11-tool 0.23 cannot drive). The key never leaves the HSM, so
 * the modes are checked against each other, on the HSM's own ECB: CBC is
 * the ECB chain, CBC-PAD adds a PKCS#7 block, GCM's ciphertext is CTR from
 * IV||2 (its tag is checked by decryption, which refuses a flipped bit).
 * Known-answer vectors for the cipher itself are in
 * tests/unit/daemon/test_crypto.c.
 *
 * Import (C_UnwrapKey): pkcs11-tool --unwrap of an AES key that OpenSSL
 * wrapped with RSA-OAEP under an HSM key's public half, then of another
 * that OpenSSL wrapped (RFC 3394) under the first; both encrypt in the HSM
 * as OpenSSL does with the same known key (known answers through the
 * peer). A private key (PKCS#8, RFC 5649) unwrapped through the module
 * signs what OpenSSL verifies. Imported keys are sensitive, not local,
 * not never-extractable, not always-sensitive; a wrapped key that does not
 * check is CKR_WRAPPED_KEY_INVALID.
 *
 * Public keys made elsewhere (C_CreateObject): pkcs11-tool --write-object
 * --type pubkey stores OpenSSL's EC and RSA public keys, and pkcs11-tool
 * --verify checks with them what OpenSSL signed; an RSA-1024 key is
 * refused.
 *
 * ECDH (C_DeriveKey, CKM_ECDH1_DERIVE and _COFACTOR_DERIVE) with an HSM EC
 * key and OpenSSL's peer key: the derived AES key (CKD_NULL, and the X9.63
 * KDF with SHA-256 and shared data) encrypts in the HSM as OpenSSL does
 * with the secret OpenSSL computes from the other side. pkcs11-tool
 * --derive asks for a key that is not sensitive, which the HSM refuses. Refusals: a wrap-only key, lengths a
 * mode cannot take.
 *
 * Generic secrets (CKK_GENERIC_SECRET) made by pkcs11-tool sign and verify
 * with CKM_SHA256_HMAC, CKM_SHA384_HMAC, CKM_SHA512_HMAC through pkcs11-tool
 * --sign/--verify and the module (single- and multi-part, a message longer
 * than the module's raw-data buffer); known answers (RFC 4231) are in
 * tests/unit/daemon/test_crypto.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "harness.h"

#ifndef KWT_P11_ENV
#define KWT_P11_ENV ""
#endif
#define P11TOOL KWT_P11_ENV "pkcs11-tool --module '" KEYWARD_PKCS11_PATH "' --login --pin \"$KWT_PIN\" "
#define run(out, ...) kwt_run(work, out, __VA_ARGS__)
#define run_ok(what, ...) kwt_run_ok(work, what, __VA_ARGS__)
#define IV_HEX "00112233445566778899aabbccddeeff"

static struct kwt_server server;
static char work[300], pin[64];
static void *module;
static CK_FUNCTION_LIST_PTR f;


static int setup(void **state)
{
	CK_C_GetFunctionList get_list;

	(void)state;
	kwt_start_dev(&server);
	kwt_p11_env(&server, pin, sizeof pin);
	assert_int_equal(setenv("KWT_PIN", pin, 1), 0);
	snprintf(work, sizeof work, "%s/p11s", server.dir);
	assert_int_equal(mkdir(work, 0700), 0);
	module = dlopen(KEYWARD_PKCS11_PATH, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(module);
	*(void **)&get_list = dlsym(module, "C_GetFunctionList");
	assert_non_null(get_list);
	assert_int_equal(get_list(&f), CKR_OK);
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	f->C_Finalize(NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(dlclose(module), 0);
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

static CK_SESSION_HANDLE start(void)
{
	CK_SESSION_HANDLE s;

	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
	return s;
}

static CK_OBJECT_HANDLE find_secret(CK_SESSION_HANDLE s, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h = 0;
	CK_ULONG n = 0;

	assert_int_equal(f->C_FindObjectsInit(s, t, 2), CKR_OK);
	assert_int_equal(f->C_FindObjects(s, &h, 1, &n), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(s), CKR_OK);
	if (n != 1)
		fail_msg("no secret key labelled %s", label);
	return h;
}


/* One call of C_Encrypt (encrypt) or C_Decrypt with mechanism m and key k; returns the CK_RV. */
static CK_RV crypt_one(CK_SESSION_HANDLE s, int encrypt, CK_MECHANISM *m, CK_OBJECT_HANDLE k, const unsigned char *in,
		   size_t in_len, unsigned char *out, CK_ULONG *out_len)
{
	CK_RV rv = encrypt ? f->C_EncryptInit(s, m, k) : f->C_DecryptInit(s, m, k);

	if (rv)
		return rv;
	return encrypt ? f->C_Encrypt(s, (CK_BYTE_PTR)in, in_len, out, out_len)
		       : f->C_Decrypt(s, (CK_BYTE_PTR)in, in_len, out, out_len);
}

/* The HSM's AES-ECB of n bytes (a multiple of 16) with key k. */
static void ecb(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, const unsigned char *in, size_t n, unsigned char *out)
{
	CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};
	CK_ULONG len = n;

	assert_int_equal(crypt_one(s, 1, &m, k, in, n, out, &len), CKR_OK);
	assert_int_equal(len, n);
}

/* The CBC encryption of n bytes under iv, made here from the HSM's ECB. */
static void cbc_from_ecb(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, const unsigned char *iv, const unsigned char *in,
			 size_t n, unsigned char *out)
{
	unsigned char x[16];
	const unsigned char *prev = iv;

	for (size_t i = 0; i < n; i += 16) {
		for (int j = 0; j < 16; j++)
			x[j] = in[i + j] ^ prev[j];
		ecb(s, k, x, 16, out + i);
		prev = out + i;
	}
}

static void test_pkcs11_tool(void **state)
{
	static const unsigned char iv[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
					     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
	static const char *mechs[] = {"AES-ECB", "AES-CBC", "AES-CBC-PAD"};
	unsigned char data[100], want[128];
	char path[400], label[16], *out, *enc, *dec;
	size_t enc_len, dec_len;

	(void)state;
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (unsigned char)(i * 7 + 3);
	snprintf(path, sizeof path, "%s/data", work);
	{
		FILE *fp = fopen(path, "wb");
		assert_non_null(fp);
		assert_int_equal(fwrite(data, 1, sizeof data, fp), sizeof data);
		fclose(fp);
	}
	for (int bytes = 16; bytes <= 32; bytes += 8) {
		CK_SESSION_HANDLE s;
		CK_OBJECT_HANDLE k;
		CK_BBOOL v = CK_FALSE;
		CK_ATTRIBUTE a[] = {{CKA_ENCRYPT, &v, sizeof v}};

		snprintf(label, sizeof label, "aes%d", bytes * 8);
		out = run_ok("pkcs11-tool --keygen",
			     P11TOOL "--keygen --key-type AES:%d --sensitive --usage-decrypt --label %s --id %02x", bytes,
			     label, bytes);
		assert_non_null(strstr(out, "encrypt, decrypt"));
		free(out);
		for (size_t mi = 0; mi < 3; mi++) {
			/* ECB and CBC take whole blocks: the first 96 bytes */
			size_t n = mi == 2 ? sizeof data : 96;

			free(run_ok("pkcs11-tool --encrypt",
				    "head -c %zu '%s' > '%s/in' && " P11TOOL
				    "--encrypt -m %s %s%s --id %02x -i '%s/in' -o '%s/enc'",
				    n, path, work, mechs[mi], mi ? "--iv " : "", mi ? IV_HEX : "", bytes, work, work));
			free(run_ok("pkcs11-tool --decrypt",
				    P11TOOL "--decrypt -m %s %s%s --id %02x -i '%s/enc' -o '%s/dec'", mechs[mi],
				    mi ? "--iv " : "", mi ? IV_HEX : "", bytes, work, work));
			snprintf(path, sizeof path, "%s/enc", work);
			enc = kwt_read_file(path, &enc_len);
			snprintf(path, sizeof path, "%s/dec", work);
			dec = kwt_read_file(path, &dec_len);
			snprintf(path, sizeof path, "%s/data", work);
			assert_non_null(enc);
			assert_non_null(dec);
			/* the round trip, and a ciphertext of the mode's length */
			assert_int_equal(dec_len, n);
			assert_memory_equal(dec, data, n);
			assert_int_equal(enc_len, mi == 2 ? 112 : n);
			/* the same as the HSM's ECB, chained here as the mode says */
			s = start();
			k = find_secret(s, label);
			assert_int_equal(f->C_GetAttributeValue(s, k, a, 1), CKR_OK);
			assert_true(v);
			if (mi == 0) {
				ecb(s, k, data, n, want);
			} else {
				unsigned char padded[112];

				memcpy(padded, data, n);
				if (mi == 2)
					memset(padded + n, 112 - (int)n, 112 - n); /* PKCS#7: 12 bytes of 12 */
				cbc_from_ecb(s, k, iv, padded, enc_len, want);
			}
			assert_memory_equal(enc, want, enc_len);
			assert_memory_not_equal(enc, data, 16);
			f->C_Finalize(NULL);
			free(enc);
			free(dec);
		}
	}
}

static void test_gcm(void **state)
{
	unsigned char iv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, aad[] = "header";
	unsigned char data[40], ct[80], pt[80], ctr[48], ks[48];
	CK_GCM_PARAMS g = {iv, sizeof iv, 96, aad, sizeof aad - 1, 128};
	CK_MECHANISM m = {CKM_AES_GCM, &g, sizeof g};
	CK_ULONG len;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE k;

	(void)state;
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (unsigned char)(255 - i);
	free(run_ok("pkcs11-tool --keygen",
		    P11TOOL "--keygen --key-type AES:32 --sensitive --usage-decrypt --label gcm --id 50"));
	s = start();
	k = find_secret(s, "gcm");
	/* the length query, then the ciphertext and its 16-byte tag */
	len = 0;
	assert_int_equal(crypt_one(s, 1, &m, k, data, sizeof data, NULL, &len), CKR_OK);
	assert_int_equal(len, sizeof data + 16);
	assert_int_equal(f->C_Encrypt(s, data, sizeof data, ct, &len), CKR_OK);
	assert_int_equal(len, sizeof data + 16);
	/* GCM's ciphertext is CTR with the counter blocks IV||2, IV||3, ...: the HSM's ECB of them */
	for (int b = 0; b < 3; b++) {
		memcpy(ctr + 16 * b, iv, 12);
		memset(ctr + 16 * b + 12, 0, 3);
		ctr[16 * b + 15] = (unsigned char)(b + 2);
	}
	ecb(s, k, ctr, sizeof ctr, ks);
	for (size_t i = 0; i < sizeof data; i++)
		assert_int_equal(ct[i], data[i] ^ ks[i]);
	/* decrypted, multi-part: the parts give nothing, the end gives all */
	assert_int_equal(f->C_DecryptInit(s, &m, k), CKR_OK);
	len = sizeof pt;
	assert_int_equal(f->C_DecryptUpdate(s, ct, 20, pt, &len), CKR_OK);
	assert_int_equal(len, 0);
	len = sizeof pt;
	assert_int_equal(f->C_DecryptUpdate(s, ct + 20, sizeof data + 16 - 20, pt, &len), CKR_OK);
	len = sizeof pt;
	assert_int_equal(f->C_DecryptFinal(s, pt, &len), CKR_OK);
	assert_int_equal(len, sizeof data);
	assert_memory_equal(pt, data, sizeof data);
	/* a flipped bit, or other AAD: the tag does not check, nothing comes out */
	ct[3] ^= 1;
	len = sizeof pt;
	assert_int_equal(crypt_one(s, 0, &m, k, ct, sizeof data + 16, pt, &len), CKR_ENCRYPTED_DATA_INVALID);
	ct[3] ^= 1;
	g.ulAADLen = 2;
	len = sizeof pt;
	assert_int_equal(crypt_one(s, 0, &m, k, ct, sizeof data + 16, pt, &len), CKR_ENCRYPTED_DATA_INVALID);
	g.ulAADLen = sizeof aad - 1;
	/* a buffer too small keeps the operation */
	len = 4;
	assert_int_equal(crypt_one(s, 0, &m, k, ct, sizeof data + 16, pt, &len), CKR_BUFFER_TOO_SMALL);
	len = sizeof pt;
	assert_int_equal(f->C_Decrypt(s, ct, sizeof data + 16, pt, &len), CKR_OK);
	assert_memory_equal(pt, data, sizeof data);
	/* a 96-bit tag */
	g.ulTagBits = 96;
	len = sizeof ct;
	assert_int_equal(crypt_one(s, 1, &m, k, data, sizeof data, ct, &len), CKR_OK);
	assert_int_equal(len, sizeof data + 12);
	len = sizeof pt;
	assert_int_equal(crypt_one(s, 0, &m, k, ct, sizeof data + 12, pt, &len), CKR_OK);
	assert_memory_equal(pt, data, sizeof data);
	g.ulTagBits = 64; /* below what keyward accepts */
	assert_int_equal(f->C_EncryptInit(s, &m, k), CKR_MECHANISM_PARAM_INVALID);
}

static void test_refusals(void **state)
{
	unsigned char iv[16] = {0}, data[32] = {0}, out[64];
	CK_MECHANISM cbc = {CKM_AES_CBC, iv, sizeof iv}, cbc_pad = {CKM_AES_CBC_PAD, iv, sizeof iv};
	CK_MECHANISM short_iv = {CKM_AES_CBC, iv, 8};
	CK_ULONG len;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE wrap_only, k;

	(void)state;
	free(run_ok("pkcs11-tool --keygen",
		    P11TOOL "--keygen --key-type AES:16 --sensitive --usage-wrap --label wraponly --id 51"));
	free(run_ok("pkcs11-tool --keygen",
		    P11TOOL "--keygen --key-type AES:16 --sensitive --usage-decrypt --label crypt --id 52"));
	s = start();
	wrap_only = find_secret(s, "wraponly");
	k = find_secret(s, "crypt");
	assert_int_equal(f->C_EncryptInit(s, &cbc, wrap_only), CKR_KEY_FUNCTION_NOT_PERMITTED);
	assert_int_equal(f->C_DecryptInit(s, &cbc, wrap_only), CKR_KEY_FUNCTION_NOT_PERMITTED);
	assert_int_equal(f->C_EncryptInit(s, &short_iv, k), CKR_MECHANISM_PARAM_INVALID);
	/* no padding: whole blocks only, and the operation ends */
	len = sizeof out;
	assert_int_equal(crypt_one(s, 1, &cbc, k, data, 15, out, &len), CKR_DATA_LEN_RANGE);
	len = sizeof out;
	assert_int_equal(f->C_Encrypt(s, data, 16, out, &len), CKR_OPERATION_NOT_INITIALIZED);
	len = sizeof out;
	assert_int_equal(crypt_one(s, 0, &cbc_pad, k, data, 17, out, &len), CKR_ENCRYPTED_DATA_LEN_RANGE);
	/* a padding that does not check */
	len = sizeof out;
	assert_int_equal(crypt_one(s, 1, &cbc, k, data, 32, out, &len), CKR_OK);
	len = sizeof data;
	{
		unsigned char bad[32];
		CK_RV rv;
		/* CBC without padding of 32 zero bytes; as CBC-PAD, its last block's padding is zeros: refused */
		memcpy(bad, out, 32);
		len = sizeof out;
		rv = crypt_one(s, 0, &cbc_pad, k, bad, 32, out, &len);
		assert_int_equal(rv, CKR_ENCRYPTED_DATA_INVALID);
	}
	/* RSA's mechanisms are no AES modes, and AES modes no RSA ones */
	{
		CK_MECHANISM rsa = {CKM_RSA_PKCS, NULL, 0};
		assert_int_equal(f->C_EncryptInit(s, &rsa, k), CKR_KEY_TYPE_INCONSISTENT);
	}
}

static void test_hmac(void **state)
{
	static const struct {
		const char *tool;
		CK_MECHANISM_TYPE ckm;
		size_t len;
	} h[] = {{"SHA256-HMAC", CKM_SHA256_HMAC, 32}, {"SHA384-HMAC", CKM_SHA384_HMAC, 48}, {"SHA512-HMAC", CKM_SHA512_HMAC, 64}};
	unsigned char msg[5000], mac[64], mac2[64], other[64];
	char path[400], *out, *file;
	size_t file_len;
	CK_ULONG len, kt = 0;
	CK_BBOOL sign = CK_FALSE, verify = CK_FALSE, enc = CK_TRUE;
	CK_ATTRIBUTE a[] = {{CKA_KEY_TYPE, &kt, sizeof kt},
			    {CKA_SIGN, &sign, sizeof sign},
			    {CKA_VERIFY, &verify, sizeof verify},
			    {CKA_ENCRYPT, &enc, sizeof enc}};
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE k, k2, aes;

	(void)state;
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (unsigned char)(i % 251);
	out = run_ok("pkcs11-tool --keygen GENERIC",
		     P11TOOL "--keygen --key-type GENERIC:32 --sensitive --usage-sign --label hmac --id 60");
	free(out);
	free(run_ok("pkcs11-tool --keygen GENERIC",
		    P11TOOL "--keygen --key-type GENERIC:64 --sensitive --usage-sign --label hmac2 --id 61"));
	snprintf(path, sizeof path, "%s/msg", work);
	kwt_write_file(path, "a message to authenticate\n");
	for (size_t i = 0; i < 3; i++) {
		free(run_ok("pkcs11-tool --sign HMAC",
			    P11TOOL "--sign -m %s --id 60 -i '%s' -o '%s/mac'", h[i].tool, path, work));
		out = run_ok("pkcs11-tool --verify HMAC",
			     P11TOOL "--verify -m %s --id 60 -i '%s' --signature-file '%s/mac'", h[i].tool, path, work);
		assert_non_null(strstr(out, "Signature is valid"));
		free(out);
		out = run_ok("pkcs11-tool --verify HMAC",
			     P11TOOL "--verify -m %s --id 60 -i '%s/mac' --signature-file '%s/mac'", h[i].tool, work,
			     work);
		assert_non_null(strstr(out, "Invalid signature"));
		free(out);
		snprintf(path, sizeof path, "%s/mac", work);
		assert_non_null(file = kwt_read_file(path, &file_len));
		snprintf(path, sizeof path, "%s/msg", work);
		assert_int_equal(file_len, h[i].len);

		/* the same MAC through the module, single-part */
		s = start();
		k = find_secret(s, "hmac");
		CK_MECHANISM m = {h[i].ckm, NULL, 0};
		len = 0;
		assert_int_equal(f->C_SignInit(s, &m, k), CKR_OK);
		assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR) "a message to authenticate\n", 26, NULL, &len), CKR_OK);
		assert_int_equal(len, h[i].len);
		assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR) "a message to authenticate\n", 26, mac, &len), CKR_OK);
		assert_memory_equal(mac, file, h[i].len);
		free(file);
		f->C_Finalize(NULL);
	}

	s = start();
	k = find_secret(s, "hmac");
	k2 = find_secret(s, "hmac2");
	assert_int_equal(f->C_GetAttributeValue(s, k, a, 4), CKR_OK);
	assert_int_equal(kt, CKK_GENERIC_SECRET);
	assert_true(sign);
	assert_true(verify);
	assert_false(enc);
	/* 5000 bytes, more than a raw signature takes: in parts, and in one */
	CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
	assert_int_equal(f->C_SignInit(s, &m, k), CKR_OK);
	assert_int_equal(f->C_SignUpdate(s, msg, 1000), CKR_OK);
	assert_int_equal(f->C_SignUpdate(s, msg + 1000, sizeof msg - 1000), CKR_OK);
	len = sizeof mac;
	assert_int_equal(f->C_SignFinal(s, mac, &len), CKR_OK);
	assert_int_equal(len, 32);
	assert_int_equal(f->C_SignInit(s, &m, k), CKR_OK);
	len = sizeof mac2;
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, mac2, &len), CKR_OK);
	assert_memory_equal(mac, mac2, 32);
	/* another key, another MAC */
	assert_int_equal(f->C_SignInit(s, &m, k2), CKR_OK);
	len = sizeof other;
	assert_int_equal(f->C_Sign(s, msg, sizeof msg, other, &len), CKR_OK);
	assert_memory_not_equal(mac, other, 32);
	/* verified on the HSM's MAC: right, altered, short */
	assert_int_equal(f->C_VerifyInit(s, &m, k), CKR_OK);
	assert_int_equal(f->C_VerifyUpdate(s, msg, 3000), CKR_OK);
	assert_int_equal(f->C_VerifyUpdate(s, msg + 3000, sizeof msg - 3000), CKR_OK);
	assert_int_equal(f->C_VerifyFinal(s, mac, 32), CKR_OK);
	mac[31] ^= 1;
	assert_int_equal(f->C_VerifyInit(s, &m, k), CKR_OK);
	assert_int_equal(f->C_Verify(s, msg, sizeof msg, mac, 32), CKR_SIGNATURE_INVALID);
	assert_int_equal(f->C_VerifyInit(s, &m, k), CKR_OK);
	assert_int_equal(f->C_Verify(s, msg, sizeof msg, mac, 31), CKR_SIGNATURE_LEN_RANGE);
	/* an HMAC key does not encrypt; an AES key does not make HMACs */
	{
		unsigned char iv[16] = {0};
		CK_MECHANISM cbc = {CKM_AES_CBC, iv, sizeof iv};
		free(run_ok("pkcs11-tool --keygen",
			    P11TOOL "--keygen --key-type AES:16 --sensitive --usage-decrypt --label notmac --id 62"));
		aes = find_secret(s, "notmac");
		assert_int_equal(f->C_EncryptInit(s, &cbc, k), CKR_KEY_TYPE_INCONSISTENT);
		assert_int_equal(f->C_SignInit(s, &m, aes), CKR_KEY_TYPE_INCONSISTENT);
	}
}

/* OpenSSL's cipher `name` of in (n bytes) under the known key hex, no padding: into out. */
static void ossl_encrypt(const char *name, const unsigned char *key, const unsigned char *iv, const unsigned char *in,
			 int n, unsigned char *out, int *out_len)
{
	EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int len = 0, fin = 0;

	assert_non_null(c);
	assert_non_null(ctx);
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	assert_int_equal(EVP_EncryptInit_ex2(ctx, c, key, iv, NULL), 1);
	EVP_CIPHER_CTX_set_padding(ctx, 0);
	assert_int_equal(EVP_EncryptUpdate(ctx, out, &len, in, n), 1);
	assert_int_equal(EVP_EncryptFinal_ex(ctx, out + len, &fin), 1);
	*out_len = len + fin;
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(c);
}

static void write_bytes(const char *path, const unsigned char *b, size_t n)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(b, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

static void test_unwrap(void **state)
{
	static const unsigned char k1[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
					     16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
	static const unsigned char k2[16] = {0xf0, 0xe0, 0xd0, 0xc0, 0xb0, 0xa0, 0x90, 0x80,
					     0x70, 0x60, 0x50, 0x40, 0x30, 0x20, 0x10, 0x00};
	unsigned char data[64], want[96], wrapped[4096], *der = NULL, sig[64], digest[32];
	char path[400], *out, *got;
	size_t got_len;
	int want_len, der_len;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE k, ec;
	CK_BBOOL sens = CK_FALSE, never = CK_TRUE, always = CK_TRUE, local = CK_TRUE, ext = CK_TRUE;
	CK_ATTRIBUTE a[] = {{CKA_SENSITIVE, &sens, sizeof sens},
			    {CKA_NEVER_EXTRACTABLE, &never, sizeof never},
			    {CKA_ALWAYS_SENSITIVE, &always, sizeof always},
			    {CKA_LOCAL, &local, sizeof local},
			    {CKA_EXTRACTABLE, &ext, sizeof ext}};

	(void)state;
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (unsigned char)(3 * i + 1);
	snprintf(path, sizeof path, "%s/plain", work);
	write_bytes(path, data, sizeof data);

	/* 1. RSA-OAEP: OpenSSL wraps k1 under the public half of an HSM key with usage unwrap */
	free(run_ok("keypairgen RSA unwrap",
		    P11TOOL "--keypairgen --key-type rsa:2048 --usage-decrypt --usage-wrap --label rsaw --id 70"));
	free(run_ok("read the public key", P11TOOL "--read-object --type pubkey --id 70 -o '%s/rsaw.der'", work));
	snprintf(path, sizeof path, "%s/k1.bin", work);
	write_bytes(path, k1, sizeof k1);
	free(run_ok("openssl pkeyutl -encrypt",
		    "openssl pkeyutl -encrypt -pubin -keyform DER -inkey '%s/rsaw.der' -pkeyopt rsa_padding_mode:oaep "
		    "-in '%s/k1.bin' -out '%s/k1.wrapped'",
		    work, work, work));
	out = run_ok("pkcs11-tool --unwrap RSA-PKCS-OAEP",
		     P11TOOL "--unwrap -m RSA-PKCS-OAEP --id 70 -i '%s/k1.wrapped' --key-type AES:32 --sensitive "
			     "--usage-decrypt --usage-wrap --application-label k1 --application-id 71",
		     work);
	assert_non_null(strstr(out, "Key unwrapped"));
	assert_non_null(strstr(out, "encrypt, decrypt, wrap, unwrap"));
	free(out);
	free(run_ok("pkcs11-tool --encrypt with k1",
		    P11TOOL "--encrypt -m AES-CBC --iv " IV_HEX " --id 71 -i '%s/plain' -o '%s/k1.enc'", work, work));
	snprintf(path, sizeof path, "%s/k1.enc", work);
	assert_non_null(got = kwt_read_file(path, &got_len));
	{
		static const unsigned char iv[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
						     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
		ossl_encrypt("AES-256-CBC", k1, iv, data, sizeof data, want, &want_len);
	}
	assert_int_equal(got_len, (size_t)want_len);
	assert_memory_equal(got, want, got_len);
	free(got);

	/* 2. RFC 3394: OpenSSL wraps k2 under k1, now in the HSM */
	ossl_encrypt("AES-256-WRAP", k1, NULL, k2, sizeof k2, wrapped, &want_len);
	snprintf(path, sizeof path, "%s/k2.wrapped", work);
	write_bytes(path, wrapped, (size_t)want_len);
	free(run_ok("pkcs11-tool --unwrap AES-KEY-WRAP",
		    P11TOOL "--unwrap -m AES-KEY-WRAP --id 71 -i '%s/k2.wrapped' --key-type AES:16 --sensitive "
			    "--usage-decrypt --application-label k2 --application-id 72",
		    work));
	free(run_ok("pkcs11-tool --encrypt with k2",
		    P11TOOL "--encrypt -m AES-ECB --id 72 -i '%s/plain' -o '%s/k2.enc'", work, work));
	snprintf(path, sizeof path, "%s/k2.enc", work);
	assert_non_null(got = kwt_read_file(path, &got_len));
	ossl_encrypt("AES-128-ECB", k2, NULL, data, sizeof data, want, &want_len);
	assert_int_equal(got_len, sizeof data);
	assert_memory_equal(got, want, got_len);
	free(got);
	/* a wrapped key that does not check */
	wrapped[3] ^= 0x40;
	snprintf(path, sizeof path, "%s/bad.wrapped", work);
	write_bytes(path, wrapped, (size_t)want_len);
	{
		int rc = run(&out, P11TOOL "--unwrap -m AES-KEY-WRAP --id 71 -i '%s/bad.wrapped' --key-type AES:16 "
					   "--sensitive --usage-decrypt --application-label k3",
			     work);
		assert_int_not_equal(rc, 0);
		assert_non_null(strstr(out, "CKR_WRAPPED_KEY_INVALID"));
		free(out);
	}

	/* imported: sensitive, not local, not never-extractable, not always-sensitive */
	s = start();
	k = find_secret(s, "k2");
	assert_int_equal(f->C_GetAttributeValue(s, k, a, 5), CKR_OK);
	assert_true(sens);
	assert_false(never);
	assert_false(always);
	assert_false(local);
	assert_false(ext);

	/* 3. RFC 5649: an EC private key (PKCS#8) from OpenSSL, unwrapped with k1, signs in the HSM */
	{
		EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		PKCS8_PRIV_KEY_INFO *p8 = pk ? EVP_PKEY2PKCS8(pk) : NULL;
		CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
		CK_KEY_TYPE kt = CKK_EC;
		CK_BBOOL t = CK_TRUE, no = CK_FALSE;
		CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},	{CKA_KEY_TYPE, &kt, sizeof kt},
				       {CKA_TOKEN, &t, sizeof t},	{CKA_SENSITIVE, &t, sizeof t},
				       {CKA_SIGN, &t, sizeof t},	{CKA_LABEL, "imported-ec", 11},
				       {CKA_EXTRACTABLE, &no, sizeof no}};
		CK_MECHANISM kwp = {0x210bUL /* CKM_AES_KEY_WRAP_KWP */, NULL, 0}, ecdsa = {CKM_ECDSA, NULL, 0};
		CK_ULONG sig_len = sizeof sig;
		unsigned char *p;

		assert_non_null(p8);
		der_len = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
		assert_true(der_len > 0);
		ossl_encrypt("AES-256-WRAP-PAD", k1, NULL, der, der_len, wrapped, &want_len);
		assert_int_equal(f->C_UnwrapKey(s, &kwp, find_secret(s, "k1"), wrapped, (CK_ULONG)want_len, tmpl, 7, &ec),
				 CKR_OK);
		SHA256(data, sizeof data, digest);
		assert_int_equal(f->C_SignInit(s, &ecdsa, ec), CKR_OK);
		assert_int_equal(f->C_Sign(s, digest, sizeof digest, sig, &sig_len), CKR_OK);
		assert_int_equal(sig_len, 64);
		{
			ECDSA_SIG *es = ECDSA_SIG_new();
			EVP_PKEY_CTX *vc = EVP_PKEY_CTX_new(pk, NULL);
			unsigned char *dsig = NULL;
			int dlen;

			assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL)), 1);
			dlen = i2d_ECDSA_SIG(es, &dsig);
			assert_int_equal(EVP_PKEY_verify_init(vc), 1);
			assert_int_equal(EVP_PKEY_verify(vc, dsig, (size_t)dlen, digest, sizeof digest), 1);
			OPENSSL_free(dsig);
			ECDSA_SIG_free(es);
			EVP_PKEY_CTX_free(vc);
		}
		/* the wrong key type for the PKCS#8, a private key through RSA-OAEP, a key not sensitive */
		kt = CKK_RSA;
		assert_int_equal(f->C_UnwrapKey(s, &kwp, find_secret(s, "k1"), wrapped, (CK_ULONG)want_len, tmpl, 7, &ec),
				 CKR_ATTRIBUTE_VALUE_INVALID);
		kt = CKK_EC;
		tmpl[3].pValue = &no;
		assert_int_equal(f->C_UnwrapKey(s, &kwp, find_secret(s, "k1"), wrapped, (CK_ULONG)want_len, tmpl, 7, &ec),
				 CKR_ATTRIBUTE_VALUE_INVALID);
		tmpl[3].pValue = &t;
		/* a private key is still not created from its value */
		p = der;
		{
			CK_ATTRIBUTE create[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_KEY_TYPE, &kt, sizeof kt},
						 {CKA_VALUE, p, (CK_ULONG)der_len}};
			CK_OBJECT_HANDLE h;
			assert_int_equal(f->C_CreateObject(s, create, 3, &h), CKR_ATTRIBUTE_VALUE_INVALID);
		}
		OPENSSL_cleanse(der, (size_t)der_len);
		OPENSSL_free(der);
		PKCS8_PRIV_KEY_INFO_free(p8);
		EVP_PKEY_free(pk);
	}
}

static void test_public_key(void **state)
{
	char *out, *der;
	size_t der_len;
	CK_SESSION_HANDLE s;

	(void)state;
	free(run_ok("openssl: keys and signatures",
		    "cd '%s' && printf 'signed elsewhere\n' > pdata && "
		    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key && "
		    "openssl pkey -in ec.key -pubout -outform DER -out ec.pub && "
		    "openssl dgst -sha256 -sign ec.key -out ec.sig pdata && "
		    "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key && "
		    "openssl pkey -in rsa.key -pubout -outform DER -out rsa.pub && "
		    "openssl dgst -sha256 -sign rsa.key -out rsa.sig pdata && "
		    "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out small.key && "
		    "openssl pkey -in small.key -pubout -outform DER -out small.pub",
		    work));
	out = run_ok("pkcs11-tool --write-object EC pubkey",
		     P11TOOL "--write-object '%s/ec.pub' --type pubkey --id 80 --label ext-ec --usage-sign", work);
	free(out);
	free(run_ok("pkcs11-tool --write-object RSA pubkey",
		    P11TOOL "--write-object '%s/rsa.pub' --type pubkey --id 81 --label ext-rsa", work));
	out = run_ok("pkcs11-tool --verify with the EC public key",
		     P11TOOL "--verify -m ECDSA-SHA256 --signature-format openssl --id 80 -i '%s/pdata' "
			     "--signature-file '%s/ec.sig'",
		     work, work);
	assert_non_null(strstr(out, "Signature is valid"));
	free(out);
	out = run_ok("pkcs11-tool --verify with the RSA public key",
		     P11TOOL "--verify -m SHA256-RSA-PKCS --id 81 -i '%s/pdata' --signature-file '%s/rsa.sig'", work,
		     work);
	assert_non_null(strstr(out, "Signature is valid"));
	free(out);
	out = run_ok("pkcs11-tool --verify, other data",
		     P11TOOL "--verify -m SHA256-RSA-PKCS --id 81 -i '%s/ec.sig' --signature-file '%s/rsa.sig'", work,
		     work);
	assert_non_null(strstr(out, "Invalid signature"));
	free(out);
	/* read back: the same SPKI */
	free(run_ok("pkcs11-tool --read-object", P11TOOL "--read-object --type pubkey --id 81 -o '%s/back.der'", work));
	{
		char path[400], *orig;
		size_t orig_len;

		snprintf(path, sizeof path, "%s/back.der", work);
		assert_non_null(der = kwt_read_file(path, &der_len));
		snprintf(path, sizeof path, "%s/rsa.pub", work);
		assert_non_null(orig = kwt_read_file(path, &orig_len));
		assert_int_equal(der_len, orig_len);
		assert_memory_equal(der, orig, orig_len);
		free(orig);
		free(der);
		/* RSA-1024: a size the HSM does not make is not stored either */
		snprintf(path, sizeof path, "%s/small.pub", work);
		assert_non_null(der = kwt_read_file(path, &der_len));
	}
	s = start();
	{
		CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
		CK_KEY_TYPE kt = CKK_RSA;
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
				    {CKA_KEY_TYPE, &kt, sizeof kt},
				    {CKA_PUBLIC_KEY_INFO, der, der_len}};
		CK_OBJECT_HANDLE h;

		assert_int_equal(f->C_CreateObject(s, t, 3, &h), CKR_ATTRIBUTE_VALUE_INVALID);
		assert_int_equal(f->C_CreateObject(s, t, 2, &h), CKR_TEMPLATE_INCOMPLETE);
	}
	free(der);
}

static void test_derive(void **state)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	unsigned char point_der[80], peer_point[80], secret[32], kdf_key[16], block[16] = "sixteen byte blk";
	unsigned char want[16], got[16], info[] = "shared info";
	size_t peer_len = sizeof peer_point, secret_len = sizeof secret;
	int want_len;
	CK_ULONG got_len, len32 = 32, len16 = 16;
	CK_BBOOL t = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE aes = CKK_AES;
	CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0}, ecb = {CKM_AES_ECB, NULL, 0};
	CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, p256, sizeof p256}, {CKA_LABEL, "ecdh", 4}};
	CK_ATTRIBUTE vt[] = {{CKA_DERIVE, &t, sizeof t}, {CKA_SIGN, &no, sizeof no}, {CKA_LABEL, "ecdh", 4}};
	CK_ATTRIBUTE point = {CKA_EC_POINT, point_der, sizeof point_der};
	CK_ATTRIBUTE kt[] = {{CKA_CLASS, &cls, sizeof cls},	 {CKA_KEY_TYPE, &aes, sizeof aes},
			     {CKA_VALUE_LEN, &len32, sizeof len32}, {CKA_ENCRYPT, &t, sizeof t},
			     {CKA_SENSITIVE, &t, sizeof t},	    {CKA_LABEL, "derived", 7}};
	CK_ECDH1_DERIVE_PARAMS ep = {CKD_NULL, 0, NULL, 0, NULL};
	CK_MECHANISM ecdh = {CKM_ECDH1_DERIVE, &ep, sizeof ep};
	CK_OBJECT_HANDLE pub, priv, k;
	CK_SESSION_HANDLE s;
	EVP_PKEY *peer, *hsm_pub;
	EVP_PKEY_CTX *dc;
	const unsigned char *p;
	ASN1_OCTET_STRING *os;
	char *out;
	int rc;

	(void)state;
	s = start();
	assert_int_equal(f->C_GenerateKeyPair(s, &gen, pt, 2, vt, 3, &pub, &priv), CKR_OK);
	assert_int_equal(f->C_GetAttributeValue(s, pub, &point, 1), CKR_OK);
	/* the HSM's public key, and the secret as OpenSSL computes it from the peer's side */
	p = point_der;
	assert_non_null(os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)point.ulValueLen));
	{
		OSSL_PARAM prm[] = {OSSL_PARAM_construct_utf8_string("group", "P-256", 0),
				    OSSL_PARAM_construct_octet_string("pub", (void *)ASN1_STRING_get0_data(os),
								      (size_t)ASN1_STRING_length(os)),
				    OSSL_PARAM_construct_end()};
		EVP_PKEY_CTX *fc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);

		hsm_pub = NULL;
		assert_int_equal(EVP_PKEY_fromdata_init(fc), 1);
		assert_int_equal(EVP_PKEY_fromdata(fc, &hsm_pub, EVP_PKEY_PUBLIC_KEY, prm), 1);
		EVP_PKEY_CTX_free(fc);
	}
	ASN1_OCTET_STRING_free(os);
	assert_non_null(peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
	assert_int_equal(EVP_PKEY_get_octet_string_param(peer, "encoded-pub-key", peer_point, sizeof peer_point, &peer_len), 1);
	dc = EVP_PKEY_CTX_new(peer, NULL);
	assert_int_equal(EVP_PKEY_derive_init(dc), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(dc, hsm_pub), 1);
	assert_int_equal(EVP_PKEY_derive(dc, secret, &secret_len), 1);
	assert_int_equal(secret_len, 32);
	EVP_PKEY_CTX_free(dc);

	/* CKD_NULL: the secret itself is the AES-256 key, kept in the HSM */
	ep.pPublicData = peer_point;
	ep.ulPublicDataLen = peer_len;
	for (int cof = 0; cof < 2; cof++) {
		ecdh.mechanism = cof ? CKM_ECDH1_COFACTOR_DERIVE : CKM_ECDH1_DERIVE;
		kt[5].pValue = cof ? "derived-c" : "derived";
		kt[5].ulValueLen = strlen(kt[5].pValue);
		assert_int_equal(f->C_DeriveKey(s, &ecdh, priv, kt, 6, &k), CKR_OK);
		got_len = sizeof got;
		assert_int_equal(f->C_EncryptInit(s, &ecb, k), CKR_OK);
		assert_int_equal(f->C_Encrypt(s, block, 16, got, &got_len), CKR_OK);
		ossl_encrypt("AES-256-ECB", secret, NULL, block, 16, want, &want_len);
		assert_memory_equal(got, want, 16);
	}
	{
		CK_BYTE value[32];
		CK_BBOOL sens = CK_FALSE;
		CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof value}, sa = {CKA_SENSITIVE, &sens, sizeof sens};

		assert_int_equal(f->C_GetAttributeValue(s, k, &v, 1), CKR_ATTRIBUTE_SENSITIVE);
		assert_int_equal(f->C_GetAttributeValue(s, k, &sa, 1), CKR_OK);
		assert_true(sens);
	}
	/* the X9.63 KDF with SHA-256 and shared data, to an AES-128 key */
	{
		EVP_KDF *kdf = EVP_KDF_fetch(NULL, "X963KDF", NULL);
		EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
		OSSL_PARAM kp[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
				   OSSL_PARAM_construct_octet_string("key", secret, 32),
				   OSSL_PARAM_construct_octet_string("info", info, sizeof info - 1), OSSL_PARAM_construct_end()};

		assert_int_equal(EVP_KDF_derive(kc, kdf_key, sizeof kdf_key, kp), 1);
		EVP_KDF_CTX_free(kc);
		EVP_KDF_free(kdf);
		ep.kdf = CKD_SHA256_KDF;
		ep.pSharedData = info;
		ep.ulSharedDataLen = sizeof info - 1;
		ecdh.mechanism = CKM_ECDH1_DERIVE;
		kt[2].pValue = &len16;
		kt[5].pValue = "derived-kdf";
		kt[5].ulValueLen = strlen(kt[5].pValue);
		assert_int_equal(f->C_DeriveKey(s, &ecdh, priv, kt, 6, &k), CKR_OK);
		got_len = sizeof got;
		assert_int_equal(f->C_EncryptInit(s, &ecb, k), CKR_OK);
		assert_int_equal(f->C_Encrypt(s, block, 16, got, &got_len), CKR_OK);
		ossl_encrypt("AES-128-ECB", kdf_key, NULL, block, 16, want, &want_len);
		assert_memory_equal(got, want, 16);
	}
	/* refused: a key that is not sensitive, a point off the curve, a base key without derive */
	kt[5].pValue = "refused";
	kt[5].ulValueLen = 7;
	kt[4].pValue = &no;
	assert_int_equal(f->C_DeriveKey(s, &ecdh, priv, kt, 6, &k), CKR_ATTRIBUTE_VALUE_INVALID);
	kt[4].pValue = &t;
	peer_point[peer_len - 1] ^= 1;
	assert_int_equal(f->C_DeriveKey(s, &ecdh, priv, kt, 6, &k), CKR_MECHANISM_PARAM_INVALID);
	peer_point[peer_len - 1] ^= 1;
	{
		CK_OBJECT_HANDLE spub, spriv;
		CK_ATTRIBUTE st[] = {{CKA_SIGN, &t, sizeof t}, {CKA_LABEL, "nodrv", 5}};

		assert_int_equal(f->C_GenerateKeyPair(s, &gen, pt, 1, st, 2, &spub, &spriv), CKR_OK);
		assert_int_equal(f->C_DeriveKey(s, &ecdh, spriv, kt, 6, &k), CKR_KEY_FUNCTION_NOT_PERMITTED);
	}
	/* pkcs11-tool --derive wants the secret out of the HSM (CKA_SENSITIVE false): refused */
	{
		char path[400];
		BIO *bio;

		snprintf(path, sizeof path, "%s/peer.der", work);
		assert_non_null(bio = BIO_new_file(path, "wb"));
		assert_int_equal(i2d_PUBKEY_bio(bio, peer), 1);
		BIO_free(bio);
		free(run_ok("keypairgen EC derive", P11TOOL "--keypairgen --key-type EC:prime256v1 --usage-derive "
							    "--label tool-ecdh --id 90"));
		rc = run(&out, P11TOOL "--derive -m ECDH1-DERIVE --id 90 -i '%s' -o '%s/x.bin'", path, work);
		assert_int_not_equal(rc, 0);
		assert_non_null(strstr(out, "CKR_ATTRIBUTE_VALUE_INVALID"));
		free(out);
	}
	EVP_PKEY_free(peer);
	EVP_PKEY_free(hsm_pub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_pkcs11_tool, test_teardown),
		cmocka_unit_test_teardown(test_gcm, test_teardown),
		cmocka_unit_test_teardown(test_refusals, test_teardown),
		cmocka_unit_test_teardown(test_hmac, test_teardown),
		cmocka_unit_test_teardown(test_unwrap, test_teardown),
		cmocka_unit_test_teardown(test_public_key, test_teardown),
		cmocka_unit_test_teardown(test_derive, test_teardown),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
