/*
 * ACME's pieces that need no server: base64url as JWS uses it (no
 * padding, one text per value), the RFC 7638 thumbprint against the RFC's
 * own example (RFC 8037's for Ed25519), a JWS signed by certbot's ACME
 * library verified and, one bit changed, refused; JWS signed here with
 * ES256, ES384, ES512 and EdDSA verified, an alg that is not its key's and
 * an ECDSA signature of the wrong length refused; acme.conf's checks; the http-01 fetcher refusing
 * loopback and link-local targets before it connects, the dns-01 hook
 * killed when it overruns; EAB keys kept per template, their kids usable
 * on a command line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "ca/acme.h"

/* rm -rf dir as a command line (dir is mkdtemp's: no quoting needed) */
static const char *keepf_rm(const char *dir)
{
	static char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return cmd;
}

static void expect_error(const char *what, const char *want)
{
	if (!strstr(ca_last_error(), want))
		fail_msg("%s: \"%s\"; expected it to say \"%s\"", what, ca_last_error(), want);
}

static long decode(const char *s, unsigned char *out, size_t max)
{
	return acme_b64u_decode(s, strlen(s), out, max);
}

static void test_base64url(void **state)
{
	unsigned char b[64];
	char text[96];

	(void)state;
	assert_int_equal(decode("", b, sizeof b), 0);
	assert_int_equal(decode("AQAB", b, sizeof b), 3);
	assert_memory_equal(b, "\x01\x00\x01", 3);
	assert_int_equal(decode("_-8", b, sizeof b), 2);
	assert_memory_equal(b, "\xff\xef", 2);
	acme_b64u_encode(b, 2, text);
	assert_string_equal(text, "_-8");
	assert_int_equal(decode("AA==", b, sizeof b), -1); /* padding */
	assert_int_equal(decode("a+b/", b, sizeof b), -1); /* base64's alphabet, not base64url's */
	assert_int_equal(decode("AAAAA", b, sizeof b), -1); /* a length no bytes make */
	assert_int_equal(decode("AB", b, sizeof b), -1);    /* bits left over: "AA" is that byte */
	assert_int_equal(decode("AAAA", b, 2), -1);	    /* longer than the room */
}

/* RFC 7638 3.1: the example RSA key and its thumbprint */
static void test_thumbprint(void **state)
{
	json_t *jwk = json_pack(
		"{s:s,s:s,s:s,s:s}", "kty", "RSA", "n",
		"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknj"
		"hMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qM"
		"QvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJz"
		"KnqDKgw",
		"e", "AQAB", "alg", "RS256");
	EVP_PKEY *key = NULL;
	char thumb[ACME_THUMB_LEN + 1];

	(void)state;
	assert_int_equal(acme_jwk_key(jwk, &key, thumb), AP_OK);
	assert_string_equal(thumb, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	EVP_PKEY_free(key);
	/* the same key with a leading zero byte in n would be a second thumbprint: refused */
	json_object_set_new(jwk, "n", json_string("AA"));
	assert_int_equal(acme_jwk_key(jwk, &key, thumb), AP_BAD_PUBKEY);
	json_decref(jwk);
	/* RFC 8037 A.3: the example Ed25519 key and its thumbprint */
	jwk = json_pack("{s:s,s:s,s:s}", "kty", "OKP", "crv", "Ed25519", "x",
			"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
	assert_int_equal(acme_jwk_key(jwk, &key, thumb), AP_OK);
	assert_string_equal(thumb, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
	assert_int_equal(EVP_PKEY_get_base_id(key), EVP_PKEY_ED25519);
	EVP_PKEY_free(key);
	json_decref(jwk);
}

static char *corpus(const char *name, size_t *len)
{
	char path[512];
	FILE *f;
	char *text = malloc(65536);

	snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, name);
	assert_non_null(f = fopen(path, "r"));
	*len = fread(text, 1, 65535, f);
	fclose(f);
	text[*len] = '\0';
	return text;
}

/*
 * A newAccount that certbot's library (josepy) signed with ES256, and with
 * RS256; and (python3-cryptography) with ES384, ES512 and EdDSA: the fuzz
 * corpus's seeds for those algs, checked to be good ones.
 */
static void test_verify(void **state)
{
	static const char *const files[] = {"es256-new-account.json", "rs256-new-account.json",
					    "es384-new-account.json", "es512-new-account.json",
					    "eddsa-new-account.json"};

	(void)state;
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		size_t len;
		char *text = corpus(files[i], &len);
		struct acme_jws j;

		assert_int_equal(acme_jws_parse((unsigned char *)text, len, &j), AP_OK);
		assert_non_null(j.key);
		assert_string_equal(j.url, "http://127.0.0.1:8080/acme/WebServer/new-account");
		assert_int_equal(acme_jws_verify(&j, j.key), AP_OK);
		j.signing_input[3] ^= 1;
		assert_int_not_equal(acme_jws_verify(&j, j.key), AP_OK);
		expect_error(files[i], "does not verify");
		acme_jws_cleanup(&j);
		free(text);
	}
}

/* ---- JWS made here with OpenSSL, for each alg ---- */

/* A new key of alg's kind: ES384 P-384, ES512 P-521, EdDSA Ed25519, ES256 P-256. */
static EVP_PKEY *new_key(const char *alg)
{
	EVP_PKEY *k = !strcmp(alg, "EdDSA")   ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
		      : !strcmp(alg, "ES384") ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384")
		      : !strcmp(alg, "ES512") ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521")
					      : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	assert_non_null(k);
	return k;
}

static json_t *b64u_json(const unsigned char *b, size_t n)
{
	char text[512];

	assert_true(n <= 300);
	acme_b64u_encode(b, n, text);
	return json_string(text);
}

/* key's public JWK (RFC 7518 6.2, RFC 8037 2). */
static json_t *jwk_of(EVP_PKEY *key)
{
	unsigned char pub[160];
	size_t n = sizeof pub;
	char group[32];

	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519) {
		assert_int_equal(EVP_PKEY_get_raw_public_key(key, pub, &n), 1);
		return json_pack("{s:s,s:s,s:o}", "kty", "OKP", "crv", "Ed25519", "x", b64u_json(pub, n));
	}
	assert_int_equal(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub, &n), 1);
	assert_int_equal(EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL), 1);
	n = (n - 1) / 2; /* 04 || x || y */
	return json_pack("{s:s,s:s,s:o,s:o}", "kty", "EC", "crv",
			 !strcmp(group, "secp384r1")   ? "P-384"
			 : !strcmp(group, "secp521r1") ? "P-521"
						       : "P-256",
			 "x", b64u_json(pub + 1, n), "y", b64u_json(pub + 1 + n, n));
}

/*
 * A flattened JWS of a newAccount, its header saying alg and carrying
 * key's jwk, signed by key as JWS signs (ECDSA as r || s, each of the
 * curve's length); sig_cut bytes dropped from the signature's end.
 */
static char *make_jws(const char *alg, EVP_PKEY *key, size_t sig_cut)
{
	json_t *h = json_pack("{s:s,s:o,s:s,s:s}", "alg", alg, "jwk", jwk_of(key), "nonce", "AAAA", "url",
			      "http://127.0.0.1:8080/acme/WebServer/new-account");
	char *htext = json_dumps(h, JSON_COMPACT), *out, prot[1024], payload[128], sigtext[512], input[1200];
	const char *body = "{\"termsOfServiceAgreed\":true}";
	unsigned char sig[256], raw[256];
	size_t sig_len = sizeof sig, half;
	bool ed = EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519;
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	acme_b64u_encode((unsigned char *)htext, strlen(htext), prot);
	acme_b64u_encode((const unsigned char *)body, strlen(body), payload);
	snprintf(input, sizeof input, "%s.%s", prot, payload);
	assert_int_equal(EVP_DigestSignInit_ex(md, NULL,
					       ed			       ? NULL
					       : EVP_PKEY_get_bits(key) == 384 ? "SHA384"
					       : EVP_PKEY_get_bits(key) == 521 ? "SHA512"
									       : "SHA256",
					       NULL, NULL, key, NULL),
			 1);
	assert_int_equal(EVP_DigestSign(md, sig, &sig_len, (unsigned char *)input, strlen(input)), 1);
	EVP_MD_CTX_free(md);
	if (!ed) {
		const unsigned char *p = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);

		assert_non_null(es);
		half = (size_t)(EVP_PKEY_get_bits(key) + 7) / 8;
		assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)half), (int)half);
		assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + half, (int)half), (int)half);
		ECDSA_SIG_free(es);
		memcpy(sig, raw, 2 * half);
		sig_len = 2 * half;
	}
	acme_b64u_encode(sig, sig_len - sig_cut, sigtext);
	out = malloc(4096);
	assert_non_null(out);
	snprintf(out, 4096, "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", prot, payload, sigtext);
	free(htext);
	json_decref(h);
	return out;
}

/* ES384, ES512 and EdDSA (RFC 8555 6.2: EdDSA SHOULD) verify; one bit changed, they do not. */
static void test_verify_algs(void **state)
{
	static const char *const algs[] = {"ES256", "ES384", "ES512", "EdDSA"};

	(void)state;
	for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
		EVP_PKEY *key = new_key(algs[i]);
		char *text = make_jws(algs[i], key, 0);
		struct acme_jws j;

		if (acme_jws_parse((unsigned char *)text, strlen(text), &j) != AP_OK)
			fail_msg("%s: %s", algs[i], ca_last_error());
		assert_string_equal(j.alg, algs[i]);
		assert_int_equal(EVP_PKEY_eq(j.key, key), 1);
		assert_int_equal(strlen(j.thumb), ACME_THUMB_LEN);
		if (acme_jws_verify(&j, j.key) != AP_OK)
			fail_msg("%s: %s", algs[i], ca_last_error());
		j.signing_input[3] ^= 1;
		assert_int_equal(acme_jws_verify(&j, j.key), AP_MALFORMED);
		expect_error(algs[i], "does not verify");
		acme_jws_cleanup(&j);
		free(text);
		EVP_PKEY_free(key);
	}
}

/* An alg that is not the key's, and an ECDSA signature not of the curve's length, are refused as such. */
static void test_refused_algs(void **state)
{
	static const struct {
		const char *alg, *key_alg, *says;
	} mismatched[] = {
		{"ES384", "ES256", "alg ES384 does not go with the jwk's P-256 key (it signs with ES256)"},
		{"ES256", "ES384", "alg ES256 does not go with the jwk's P-384 key (it signs with ES384)"},
		{"ES512", "ES384", "alg ES512 does not go with the jwk's P-384 key"},
		{"EdDSA", "ES256", "alg EdDSA does not go with the jwk's P-256 key"},
		{"ES256", "EdDSA", "alg ES256 does not go with the jwk's Ed25519 key (it signs with EdDSA)"},
		{"RS256", "ES512", "alg RS256 does not go with the jwk's P-521 key"},
	};
	static const struct {
		const char *alg, *says;
	} short_sig[] = {
		{"ES256", "an ES256 signature is 64 bytes (r || s), not 63"},
		{"ES384", "an ES384 signature is 96 bytes (r || s), not 95"},
		{"ES512", "an ES512 signature is 132 bytes (r || s), not 131"},
	};
	EVP_PKEY *p256 = new_key("ES256");
	struct acme_jws j;

	(void)state;
	for (size_t i = 0; i < sizeof mismatched / sizeof mismatched[0]; i++) {
		EVP_PKEY *key = new_key(mismatched[i].key_alg);
		char *text = make_jws(mismatched[i].alg, key, 0);

		assert_int_equal(acme_jws_parse((unsigned char *)text, strlen(text), &j), AP_BAD_SIG_ALG);
		expect_error(mismatched[i].alg, mismatched[i].says);
		free(text);
		EVP_PKEY_free(key);
	}
	for (size_t i = 0; i < sizeof short_sig / sizeof short_sig[0]; i++) {
		EVP_PKEY *key = new_key(short_sig[i].alg);
		char *text = make_jws(short_sig[i].alg, key, 1);

		assert_int_equal(acme_jws_parse((unsigned char *)text, strlen(text), &j), AP_OK);
		assert_int_equal(acme_jws_verify(&j, j.key), AP_MALFORMED);
		expect_error(short_sig[i].alg, short_sig[i].says);
		/* under an account's key of another kind (a kid JWS): refused for the alg, not tried */
		assert_int_equal(acme_jws_verify(&j, p256),
				 strcmp(short_sig[i].alg, "ES256") ? AP_BAD_SIG_ALG : AP_MALFORMED);
		acme_jws_cleanup(&j);
		free(text);
		EVP_PKEY_free(key);
	}
	EVP_PKEY_free(p256);
}

static void test_refused_headers(void **state)
{
	static const struct {
		const char *file, *says;
	} cases[] = {
		{"alg-none.json", "alg none is not accepted"},
		{"crit.json", "\"crit\", which ACME does not use"},
		{"jwk-and-kid.json", "both jwk and kid"},
		{"p384.json", "x and y are not 48 bytes each (P-384)"},
		{"x-not-on-curve.json", "not on P-256"},
		{"ed448.json", "not Ed25519"},
		{"es384-p256-key.json", "alg ES384 does not go with the jwk's P-256 key"},
		{"ed25519-short-x.json", "x is not 32 bytes"},
		{"rsa-small.json", "at least 2048"},
		{"dup-member.json", "not a flattened JWS"},
		{"unprotected-header.json", "not a flattened JWS"},
		{"padding.json", "signature is not base64url"},
		{"payload-array.json", "neither empty"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len;
		char *text = corpus(cases[i].file, &len);
		struct acme_jws j;

		if (acme_jws_parse((unsigned char *)text, len, &j) == AP_OK)
			fail_msg("%s: accepted", cases[i].file);
		expect_error(cases[i].file, cases[i].says);
		free(text);
	}
}

static void test_conf(void **state)
{
	struct acme_conf ac;

	(void)state;
	assert_int_equal(acme_conf_load(&ac, "/nonexistent"), 0);
	assert_int_equal(ac.http01_port, 80);
	assert_false(ac.allow_loopback);
	assert_int_equal(acme_conf_set(&ac, "dns01_hook", "hook.sh"), -1);
	expect_error("a relative hook", "absolute path");
	assert_int_equal(acme_conf_set(&ac, "resolve", "localhost"), -1);
	expect_error("resolve = localhost", "IPv4 or IPv6 address");
	assert_int_equal(acme_conf_set(&ac, "templates", "WebServer, Intranet"), 0);
	assert_true(acme_listed(ac.templates, "Intranet"));
	assert_false(acme_listed(ac.templates, "Web"));
}

/* Refused before a connection is made: nothing needs to listen. */
static void test_fetch_refuses(void **state)
{
	static const char *const addrs[] = {"127.0.0.1", "169.254.169.254", "::1", "fe80::1", "0.0.0.0"};
	struct acme_conf ac;

	(void)state;
	acme_conf_load(&ac, "/nonexistent");
	ac.http01_port = 5002;
	for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
		snprintf(ac.resolve, sizeof ac.resolve, "%s", addrs[i]);
		assert_int_equal(acme_http01(&ac, "www.example.com", "tok", "tok.thumb", NULL), AP_CONNECTION);
		expect_error(addrs[i], "loopback, link-local or reserved address");
	}
	/* allowed for tests, but not to another port than 80 and the http-01 port (a redirect's) */
	snprintf(ac.resolve, sizeof ac.resolve, "127.0.0.1");
	ac.allow_loopback = true;
	ac.http01_port = 1;
	assert_int_not_equal(acme_http01(&ac, "www.example.com", "tok", "tok.thumb", NULL), AP_OK);
}

static void test_hook_overrun(void **state)
{
	char dir[] = "/tmp/acme-hook-XXXXXX", path[64];
	struct acme_conf ac;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/hook", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("#!/bin/sh\n[ \"$1\" = ok.example ] && [ \"$2\" = v ] && exit 0\n[ \"$1\" = slow.example ] && exec sleep 60\n"
	      "exit 1\n",
	      f);
	fclose(f);
	assert_int_equal(chmod(path, 0700), 0);
	acme_conf_load(&ac, "/nonexistent");
	snprintf(ac.dns01_hook, sizeof ac.dns01_hook, "%s", path);
	ac.hook_timeout = 1;
	assert_int_equal(acme_dns01(&ac, "ok.example", "v", NULL), AP_OK);
	assert_int_equal(acme_dns01(&ac, "ok.example", "w", NULL), AP_INCORRECT_RESPONSE);
	assert_int_equal(acme_dns01(&ac, "slow.example", "v", NULL), AP_DNS);
	expect_error("a hook that overruns", "no answer for slow.example within 1 s");
	unlink(path);
	rmdir(dir);
}

/* An empty keyward-ca.db with ACME's tables, opened, in a new directory (dir: mkdtemp's template); its path into path. */
static struct acme_db *temp_db(char *dir, char path[64])
{
	struct ca_conf c;
	struct acme_db *db;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, 64, "%s/keyward-ca.db", dir);
	assert_non_null(f = fopen(path, "w"));
	fclose(f);
	assert_int_equal(ca_conf_defaults(&c, dir), 0);
	assert_int_equal(acme_db_open(&c, &db), 0);
	return db;
}

/*
 * Commit: a kid starting with '-' read as an option to certbot (--eab-kid -x...): 1 in 64 failed. A
 * sealed key is found under its kid and template only (acme_eab.c seals and unseals it with the token).
 */
static void test_eab_kids(void **state)
{
	char dir[] = "/tmp/acme-db-XXXXXX", path[64], kid[ACME_EAB_KID_LEN + 1];
	unsigned char iv[ACME_EAB_IV_LEN] = {1}, sealed[ACME_EAB_SEALED_MAX] = {2}, got[ACME_EAB_SEALED_MAX];
	unsigned char got_iv[ACME_EAB_IV_LEN];
	size_t len;
	struct acme_db *db = temp_db(dir, path);

	(void)state;
	for (int i = 0; i < 300; i++) {
		acme_eab_kid(kid);
		assert_int_equal(strlen(kid), ACME_EAB_KID_LEN);
		if (kid[0] == '-')
			fail_msg("kid %s starts with '-'", kid);
		sealed[0] = (unsigned char)i;
		assert_int_equal(acme_eab_insert(db, "WebServer", kid, iv, sealed, sizeof sealed), 0);
		assert_int_equal(acme_eab_sealed(db, "WebServer", kid, got_iv, got, &len), 0);
		assert_int_equal(len, sizeof sealed);
		assert_memory_equal(got, sealed, sizeof sealed);
		assert_memory_equal(got_iv, iv, sizeof iv);
		assert_int_equal(acme_eab_sealed(db, "Client", kid, got_iv, got, &len), 1); /* another template's */
	}
	acme_db_close(db);
	assert_int_equal(system(keepf_rm(dir)), 0);
}

/*
 * The sweep (every 256th nonce) takes an order that never issued, a week
 * after it expired, with its authorizations, or neither: it deleted the
 * authorizations and then, in a statement of its own, the order.
 */
static void test_sweep_whole(void **state)
{
	char dir[] = "/tmp/acme-db-XXXXXX", path[64], nonce[ACME_NONCE_LEN + 1];
	const char *const names[] = {"a.example"};
	time_t now = time(NULL);
	struct acme_order o = {
		.account = 1, .template_name = "WebServer", .created = now - 30 * 86400, .expires = now - 8 * 86400};
	struct acme_authz az;
	struct acme_db *db = temp_db(dir, path);
	sqlite3 *side;
	long long authz;

	(void)state;
	assert_int_equal(acme_order_insert(db, &o, names, 1), 0);
	authz = o.authz[0];
	/* the order cannot be deleted: the sweep fails at that step */
	assert_int_equal(sqlite3_open(path, &side), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(side,
			     "CREATE TRIGGER keep BEFORE DELETE ON acme_orders BEGIN SELECT RAISE(ABORT, 'kept'); END",
			     NULL, NULL, NULL),
		SQLITE_OK);
	for (int i = 0; i < 256; i++)
		assert_int_equal(acme_nonce_new(db, now, 60, nonce), 0);
	assert_int_equal(acme_order_get(db, o.id, &o), 0);
	assert_int_equal(o.n_authz, 1);
	assert_int_equal(acme_authz_get(db, authz, &az), 0);
	/* once it can go, both go */
	assert_int_equal(sqlite3_exec(side, "DROP TRIGGER keep", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < 256; i++)
		assert_int_equal(acme_nonce_new(db, now, 60, nonce), 0);
	assert_int_equal(acme_order_get(db, o.id, &o), 1);
	assert_int_equal(acme_authz_get(db, authz, &az), 1);
	sqlite3_close(side);
	acme_db_close(db);
	assert_int_equal(system(keepf_rm(dir)), 0);
}

/*
 * Validations that serve's stopping cuts short, or that never started,
 * are taken back so that the challenge can be answered again: the one
 * under way was recorded invalid ("no answer"), the queued one left
 * processing until it expired.
 */
static void test_stop_takes_back(void **state)
{
	char dir[] = "/tmp/acme-db-XXXXXX", path[64];
	const char *const names[] = {"slow.example", "next.example"};
	time_t now = time(NULL);
	struct acme a = {0};
	struct acme_order o = {.account = 1, .template_name = "WebServer", .created = now, .expires = now + 3600};
	struct acme_job job = {.type = "dns-01", .key_auth = "tok.thumb"};
	struct acme_validator *v;
	struct acme_authz az;
	FILE *f;

	(void)state;
	a.db = temp_db(dir, path);
	snprintf(path, sizeof path, "%s/hook", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("#!/bin/sh\nexec sleep 60\n", f);
	fclose(f);
	assert_int_equal(chmod(path, 0700), 0);
	acme_conf_load(&a.conf, "/nonexistent");
	snprintf(a.conf.dns01_hook, sizeof a.conf.dns01_hook, "%s", path);
	assert_int_equal(acme_order_insert(a.db, &o, names, 2), 0);
	assert_int_equal(acme_validator_start(&a, 1, 4, &v), 0);
	for (size_t i = 0; i < 2; i++) {
		job.authz = o.authz[i];
		snprintf(job.name, sizeof job.name, "%s", names[i]);
		assert_int_equal(acme_authz_try(a.db, job.authz, job.type), 0);
		assert_int_equal(acme_validator_queue(v, &job), 0);
	}
	usleep(200 * 1000); /* the first under way (the hook sleeping), the second waiting */
	atomic_store(&a.stopping, true);
	acme_validator_stop(v);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(acme_authz_get(a.db, o.authz[i], &az), 0);
		assert_string_equal(az.status, "pending");
		assert_string_equal(az.tried, "");
	}
	acme_db_close(a.db);
	assert_int_equal(system(keepf_rm(dir)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64url),    cmocka_unit_test(test_thumbprint),
		cmocka_unit_test(test_verify),	     cmocka_unit_test(test_refused_headers),
		cmocka_unit_test(test_verify_algs),  cmocka_unit_test(test_refused_algs),
		cmocka_unit_test(test_conf),	     cmocka_unit_test(test_fetch_refuses),
		cmocka_unit_test(test_hook_overrun), cmocka_unit_test(test_eab_kids),
		cmocka_unit_test(test_sweep_whole),  cmocka_unit_test(test_stop_takes_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
