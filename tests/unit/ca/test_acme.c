/*
 * ACME's pieces that need no server: base64url as JWS uses it (no
 * padding, one text per value), the RFC 7638 thumbprint against the RFC's
 * own example, a JWS signed by certbot's ACME library verified and, one
 * bit changed, refused; acme.conf's checks; the http-01 fetcher refusing
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

/* A newAccount that certbot's library (josepy) signed with ES256, and with RS256 */
static void test_verify(void **state)
{
	static const char *const files[] = {"es256-new-account.json", "rs256-new-account.json"};

	(void)state;
	for (size_t i = 0; i < 2; i++) {
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

static void test_refused_headers(void **state)
{
	static const struct {
		const char *file, *says;
	} cases[] = {
		{"alg-none.json", "alg none is not accepted"},
		{"crit.json", "\"crit\", which ACME does not use"},
		{"jwk-and-kid.json", "both jwk and kid"},
		{"p384.json", "not P-256"},
		{"x-not-on-curve.json", "not on P-256"},
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
		cmocka_unit_test(test_conf),	     cmocka_unit_test(test_fetch_refuses),
		cmocka_unit_test(test_hook_overrun), cmocka_unit_test(test_eab_kids),
		cmocka_unit_test(test_sweep_whole),  cmocka_unit_test(test_stop_takes_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
