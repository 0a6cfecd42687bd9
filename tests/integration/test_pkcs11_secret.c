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
 * tests/unit/daemon/test_crypto.c. Refusals: a wrap-only key, lengths a
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
#include <openssl/evp.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_pkcs11_tool, test_teardown),
		cmocka_unit_test_teardown(test_gcm, test_teardown),
		cmocka_unit_test_teardown(test_refusals, test_teardown),
		cmocka_unit_test_teardown(test_hmac, test_teardown),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
