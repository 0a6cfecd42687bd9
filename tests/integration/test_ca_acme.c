/*
 * ACME (RFC 8555) in keyward-ca serve, driven by certbot, the ACME client
 * most used, against a CA set up on a development keywardd. Every name is
 * resolved to 127.0.0.1 by the CA's test resolver (acme.conf: resolve,
 * allow_loopback) and http-01 is fetched from certbot's --http-01-port.
 *
 *  - certbot certonly --standalone gets a certificate that verifies under
 *    the CA; renew --force-renewal gets another; revoke revokes it (the
 *    database lists it revoked);
 *  - a P-384 certificate key (ES384): certonly, then revoke signed by the
 *    certificate's key (--key-path), no account involved: revoked;
 *  - a failed challenge (nothing answers http-01) leaves no certificate
 *    and the CA unchanged;
 *  - dns-01 through the CA's hook, with certbot's manual auth hook
 *    publishing the TXT value where the CA's hook looks;
 *  - certbot against serve over HTTPS (serve.conf's tls_certificate);
 *  - a template that requires external account binding refuses an
 *    account without it, takes certbot's --eab-kid/--eab-hmac-key from
 *    `keyward-ca acme-eab`, and refuses that kid a second time; the key is
 *    stored sealed only (not in the database, its WAL, a config export;
 *    a sealed row copied to another kid does not unseal),
 *    and a database whose keys an older keyward-ca kept in plain has them
 *    sealed in place when serve starts, the key still good;
 *  - http-01 from a static web server: the key authorization with trailing
 *    white space taken, a wrong one and one over 1 KB refused;
 *  - an order left past its lifetime: invalid, its authorization expired,
 *    its challenge not validated, finalize refused;
 *  - new accounts from one address capped (rateLimited);
 *  - JWS certbot never sends (acme_jws.py, with certbot's own ACME
 *    library): a replayed nonce (badNonce), a JWS for another URL, an
 *    altered signature, key rollover, the account's orders list and
 *    account deactivation; accounts on P-384 and P-521 keys (ES384,
 *    ES512), and ES384 claimed for a P-256 key (badSignatureAlgorithm,
 *    listing the algs served).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca_helpers.h"
#include "harness.h"
#include "serve_helpers.h"

static struct kwt_server server;
static char work[300], ca_dir[400], pin[400];
static unsigned short port, http01;
static pid_t serve_pid;

/* certbot's common options: its directories under work/CFG, the template's directory URL. */
static const char *certbot_opts(const char *cfg, const char *tmpl)
{
	return keepf("--config-dir '%s/%s' --work-dir '%s/%s/work' --logs-dir '%s/%s/logs' --non-interactive "
		     "--agree-tos --register-unsafely-without-email --server http://127.0.0.1:%u/acme/%s/directory",
		     work, cfg, work, cfg, work, cfg, port, tmpl);
}

/* certbot certonly --standalone for name: its exit code, *out its output. */
static int certonly(const char **out, const char *cfg, const char *tmpl, const char *name, unsigned short on,
		    const char *extra)
{
	return sh(out, "certbot certonly %s --standalone --http-01-port %u -d %s %s 2>&1", certbot_opts(cfg, tmpl), on,
		  name, extra);
}

static const char *live(const char *cfg, const char *name, const char *file)
{
	return keepf("%s/%s/live/%s/%s", work, cfg, name, file);
}

/* The certificate names exactly name, and verifies under the CA. */
static void expect_cert_for(const char *pem, const char *name)
{
	const char *text = cert_text(pem);

	expect_verifies("ca.pem", NULL, pem);
	expect_has("the certificate's SAN", text, keepf("DNS:%s\n", name));
	expect_has("the certificate's issuer", text, "Issuer: CN = ACME Test CA");
}

static void expect_steps(const char *mode, const char *tmpl, const char *const *steps);
static void expect_eab_sealed(const char *kid, const char *key);

static int setup(void **state)
{
	char path[600];

	(void)state;
	serve_test_ca(&server, "acme", "ACME Test CA", KEYWARD_PKCS11_PATH, work, ca_dir, pin);
	/* WebEAB: WebServer's rules, accounts only with external account binding */
	kwt_write_file("webeab.tmpl", ca_ok(ca_dir, "templates show WebServer"));
	ca_ok(ca_dir, "templates add WebEAB --file webeab.tmpl");
	/* the CA's dns-01 hook reads what certbot's manual auth hook wrote: a stand-in for DNS */
	assert_int_equal(mkdir("txt", 0700), 0);
	kwt_write_file("dns-hook", keepf("#!/bin/sh\n[ \"$(cat '%s/txt/'\"$1\" 2>/dev/null)\" = \"$2\" ]\n", work));
	kwt_write_file("certbot-auth", keepf("#!/bin/sh\necho \"$CERTBOT_VALIDATION\" > '%s/txt/'\"$CERTBOT_DOMAIN\"\n",
					    work));
	assert_int_equal(chmod("dns-hook", 0755), 0);
	assert_int_equal(chmod("certbot-auth", 0755), 0);
	http01 = kwt_free_port();
	snprintf(path, sizeof path, "%s/acme.conf", ca_dir);
	kwt_write_file(path, keepf("[acme]\ntemplates = WebServer WebEAB Client\neab_templates = WebEAB\n"
				   "resolve = 127.0.0.1\nallow_loopback = true\nhttp01_port = %u\nfetch_timeout = 5\n"
				   "dns01_hook = %s/dns-hook\nhook_timeout = 10\n",
				   http01, work));
	serve_pid = serve_test_start(ca_dir, "[serve]\nthreads = 4\n", &port);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	serve_stop(serve_pid);
	serve_test_ca_end(&server);
	return 0;
}

static void test_issue_renew_revoke(void **state)
{
	const char *out, *first, *second, *pem = live("c1", "web.acme.test", "cert.pem");

	(void)state;
	if (certonly(&out, "c1", "WebServer", "web.acme.test", http01, ""))
		fail_full("certbot certonly failed:\n%s\nserve's log:\n%s", out, file("serve.log"));
	expect_cert_for(pem, "web.acme.test");
	expect_verifies("ca.pem", NULL, live("c1", "web.acme.test", "fullchain.pem"));
	first = norm_serial(cert_serial(pem));
	assert_true(listed(ca_dir, "issued", first));

	if (sh(&out, "certbot renew --force-renewal --no-random-sleep-on-renew --cert-name web.acme.test %s 2>&1", certbot_opts("c1", "WebServer")))
		fail_full("certbot renew failed:\n%s", out);
	expect_cert_for(pem, "web.acme.test");
	second = norm_serial(cert_serial(pem));
	if (!strcmp(first, second))
		fail_full("certbot renew --force-renewal kept serial %s", first);

	if (sh(&out, "certbot revoke --cert-path '%s' --reason keycompromise --no-delete-after-revoke %s 2>&1", pem,
	       certbot_opts("c1", "WebServer")))
		fail_full("certbot revoke failed:\n%s", out);
	assert_true(listed(ca_dir, "revoked", second));
	assert_false(listed(ca_dir, "revoked", first));
	/* a second revocation is refused as such */
	assert_int_not_equal(sh(&out, "certbot revoke --cert-path '%s' --no-delete-after-revoke %s 2>&1", pem,
				certbot_opts("c1", "WebServer")),
			     0);
	/* (certbot 2.1 on Python 3.11 cannot print this ACME error: its log has it) */
	expect_has("certbot's log, revoked twice", file(keepf("%s/c1/logs/letsencrypt.log", work)),
		   "urn:ietf:params:acme:error:alreadyRevoked");
}

/*
 * A P-384 certificate key (certbot signs its JWS with ES384 then), and
 * revokeCert signed by that key rather than an account's (certbot revoke
 * --key-path, from a configuration without any account): revoked.
 */
static void test_p384_revoke_by_key(void **state)
{
	const char *out, *serial, *pem = live("c10", "p384.acme.test", "cert.pem");

	(void)state;
	if (certonly(&out, "c10", "WebServer", "p384.acme.test", http01, "--key-type ecdsa --elliptic-curve secp384r1"))
		fail_full("certbot certonly (P-384) failed:\n%s\nserve's log:\n%s", out, file("serve.log"));
	expect_cert_for(pem, "p384.acme.test");
	expect_has("the certificate's key", cert_text(pem), "NIST CURVE: P-384");
	serial = norm_serial(cert_serial(pem));
	assert_true(listed(ca_dir, "issued", serial));
	if (sh(&out,
	       "certbot revoke --cert-path '%s' --key-path '%s' --reason superseded --no-delete-after-revoke %s 2>&1",
	       pem, live("c10", "p384.acme.test", "privkey.pem"), certbot_opts("c11", "WebServer")))
		fail_full("certbot revoke --key-path (ES384) failed:\n%s\ncertbot's log:\n%s", out,
			  file(keepf("%s/c11/logs/letsencrypt.log", work)));
	expect_has("certbot's log", file(keepf("%s/c11/logs/letsencrypt.log", work)), "using certificate key");
	assert_false(exists(keepf("%s/c11/accounts", work)));
	assert_true(listed(ca_dir, "revoked", serial));
}

static void test_failed_challenge(void **state)
{
	const char *out, *before = ca_state(ca_dir);

	(void)state;
	/* certbot answers on a port the CA does not fetch from: nothing answers http-01 */
	assert_int_not_equal(certonly(&out, "c2", "WebServer", "fail.acme.test", kwt_free_port(), ""), 0);
	expect_has("certbot, challenge failed", out, "fail.acme.test");
	expect_has("certbot, challenge failed", out, "Type:   connection");
	expect_has("certbot, challenge failed", out, "cannot connect to fail.acme.test port");
	assert_false(exists(live("c2", "fail.acme.test", "cert.pem")));
	expect_unchanged("a failed challenge", before, ca_state(ca_dir));
}

static void test_dns01(void **state)
{
	const char *out;

	(void)state;
	if (sh(&out, "certbot certonly %s --manual --preferred-challenges dns --manual-auth-hook '%s/certbot-auth' "
		     "-d dns.acme.test 2>&1",
	       certbot_opts("c3", "WebServer"), work))
		fail_full("certbot certonly (dns-01) failed:\n%s", out);
	expect_cert_for(live("c3", "dns.acme.test", "cert.pem"), "dns.acme.test");
	/* the hook says no: the TXT value is not there */
	assert_int_not_equal(sh(&out,
				"certbot certonly %s --manual --preferred-challenges dns --manual-auth-hook /bin/true "
				"-d nodns.acme.test 2>&1",
				certbot_opts("c3", "WebServer")),
			     0);
	expect_has("certbot, dns-01 failed", out, "incorrectResponse");
	assert_false(exists(live("c3", "nodns.acme.test", "cert.pem")));
}

static void test_eab(void **state)
{
	const char *out, *eab, *kid, *key, *other, *other_kid;

	(void)state;
	/* the server refuses an account without binding (certbot itself would not ask: the directory says so) */
	expect_steps("account", "WebEAB", (const char *const[]){"account 400 urn:ietf:params:acme:error:externalAccountRequired", NULL});
	assert_int_not_equal(certonly(&out, "c4", "WebEAB", "eab.acme.test", http01, ""), 0);
	expect_has("certbot without EAB", out, "external account binding");

	eab = ca_ok(ca_dir, "acme-eab WebEAB");
	kid = word_after(eab, "kid");
	key = word_after(eab, "hmac_key");
	eab = ca_ok(ca_dir, "acme-eab WebEAB");
	other_kid = word_after(eab, "kid");
	other = word_after(eab, "hmac_key");
	/* the right kid with another kid's key */
	assert_int_not_equal(certonly(&out, "c5", "WebEAB", "eab.acme.test", http01,
				      keepf("--eab-kid=%s --eab-hmac-key=%s", kid, other)),
			     0);
	expect_has("certbot, wrong EAB key", out, "binding's MAC does not verify");
	if (certonly(&out, "c4", "WebEAB", "eab.acme.test", http01, keepf("--eab-kid=%s --eab-hmac-key=%s", kid, key)))
		fail_full("certbot with EAB failed:\n%s", out);
	expect_cert_for(live("c4", "eab.acme.test", "cert.pem"), "eab.acme.test");
	/* a kid binds one account */
	assert_int_not_equal(certonly(&out, "c6", "WebEAB", "eab2.acme.test", http01,
				      keepf("--eab-kid=%s --eab-hmac-key=%s", kid, key)),
			     0);
	expect_has("certbot, EAB kid reused", out, "not an unused EAB key");
	/* the key is in plain nowhere: not in ca.conf, the database, its WAL, a config export, the audit log */
	assert_null(strstr(file(keepf("%s/ca.conf", ca_dir)), key));
	expect_eab_sealed(kid, key);
	expect_lacks("the audit log", ca_ok(ca_dir, "audit"), key);
	/* a sealed key copied to another kid does not unseal there: the kid is in its associated data */
	sh_ok("sqlite3 '%s/keyward-ca.db' \"INSERT INTO acme_eab (kid, template, iv, sealed, created) SELECT "
	      "'copiedKid-0123456789ab', template, iv, sealed, created FROM acme_eab WHERE kid = '%s'\"",
	      ca_dir, other_kid);
	out = sh_ok("/usr/bin/python3 '%s/acme_jws.py' eab http://127.0.0.1:%u/acme/WebEAB/directory "
		    "copiedKid-0123456789ab '%s'",
		    SOURCE_DIR, port, other);
	expect_has("a copied EAB row", out, "eab-account 500 urn:ietf:params:acme:error:serverInternal\n");
	expect_has("a copied EAB row", out, "the sealed EAB key does not unseal");
	/* the row it came from still does */
	out = sh_ok("/usr/bin/python3 '%s/acme_jws.py' eab http://127.0.0.1:%u/acme/WebEAB/directory '%s' '%s'",
		    SOURCE_DIR, port, other_kid, other);
	expect_has("the EAB key copied from", out, "eab-account 201 -\n");
}

/* kid's EAB key (base64url, as acme-eab prints it) is kept sealed only: neither its text nor its bytes are stored. */
static void expect_eab_sealed(const char *kid, const char *key)
{
	expect_b64u_not_stored(ca_dir, "EAB key", key);
	expect_has("acme_eab",
		   sh_ok("sqlite3 '%s/keyward-ca.db' \"SELECT kid, length(iv), length(sealed) FROM acme_eab "
			 "WHERE kid = '%s'\"",
			 ca_dir, kid),
		   keepf("%s|12|48\n", kid));
}

/*
 * A database from before EAB keys were sealed (acme_eab with the key in
 * plain, column "key"): serve seals the keys in place when it starts, and
 * the key still binds an account.
 */
static void test_eab_old_schema(void **state)
{
	/* a kid of the form acme-eab makes, and a key of 32 bytes */
	const char *kid = "oldKid-0123456789abcdE", *key = "b2xkIGtleSBvbGQga2V5IG9sZCBrZXkgb2xkIGtleSE", *out;
	unsigned char raw[64];
	size_t n = b64u_bytes(key, raw, sizeof raw);
	char hex[2 * sizeof raw + 1];
	unsigned short p5 = kwt_free_port();
	pid_t pid;

	(void)state;
	assert_int_equal(n, 32);
	for (size_t i = 0; i < n; i++)
		sprintf(hex + 2 * i, "%02X", raw[i]);
	sh_ok("sqlite3 '%s/keyward-ca.db' \"DROP TABLE acme_eab; CREATE TABLE acme_eab (kid TEXT PRIMARY KEY, template "
	      "TEXT NOT NULL, key BLOB NOT NULL, created INTEGER NOT NULL, account INTEGER NOT NULL DEFAULT 0); "
	      "INSERT INTO acme_eab VALUES ('%s', 'WebEAB', X'%s', strftime('%%s'), 0)\"",
	      ca_dir, kid, hex);
	/* a second serve on the database: it seals the key as it starts */
	pid = serve_start(ca_dir, p5, "old-eab.log");
	serve_stop(pid);
	expect_eab_sealed(kid, key);
	out = sh_ok("sqlite3 '%s/keyward-ca.db' \"SELECT name FROM pragma_table_info('acme_eab')\"", ca_dir);
	expect_lacks("acme_eab's columns after the migration", out, "key\n");
	expect_has("the audit log", ca_ok(ca_dir, "audit"), "1 EAB keys stored in plain by an older keyward-ca sealed");
	/* and it still binds an account (on the first serve, which reads the sealed row now) */
	if (certonly(&out, "c9", "WebEAB", "old-eab.acme.test", http01,
		     keepf("--eab-kid=%s --eab-hmac-key=%s", kid, key)))
		fail_full("certbot with the migrated EAB key failed:\n%s\nthe second serve's log:\n%s", out,
			  file("old-eab.log"));
	expect_cert_for(live("c9", "old-eab.acme.test", "cert.pem"), "old-eab.acme.test");
}

/* acme_jws.py MODE on the template's directory prints each of steps (NULL-terminated) as a line. */
static void expect_steps(const char *mode, const char *tmpl, const char *const *steps)
{
	const char *out = sh_ok("/usr/bin/python3 '%s/acme_jws.py' %s http://127.0.0.1:%u/acme/%s/directory",
				SOURCE_DIR, mode, port, tmpl);

	for (; *steps; steps++)
		expect_has(keepf("acme_jws.py %s", mode), out, keepf("%s\n", *steps));
}

static void test_jws_refused(void **state)
{
	static const char *const steps[] = {
		"first 201 -",
		"replayed 400 urn:ietf:params:acme:error:badNonce",
		"other-url 403 urn:ietf:params:acme:error:unauthorized",
		"bad-signature 403 urn:ietf:params:acme:error:unauthorized",
		"unknown-nonce 400 urn:ietf:params:acme:error:badNonce",
		NULL,
	};

	(void)state;
	expect_steps("replay", "WebServer", steps);
}

/* Accounts on P-384 and P-521 keys (josepy signs ES384, ES512), and an alg that is not the key's refused. */
static void test_jws_algs(void **state)
{
	static const char *const steps[] = {
		"es384 201 -",
		"es384-order 201 -",
		"es512 201 -",
		"es512-order 201 -",
		"es384-p256 400 urn:ietf:params:acme:error:badSignatureAlgorithm",
		"algorithms ES256,ES384,ES512,RS256,EdDSA",
		NULL,
	};

	(void)state;
	expect_steps("algs", "WebServer", steps);
}

static void test_rollover_deactivate(void **state)
{
	static const char *const steps[] = {
		"account 201 -",
		"key-change 200 -",
		"new-key 200 -",
		"orders-listed True",
		"old-key 403 urn:ietf:params:acme:error:unauthorized",
		"deactivate 200 -",
		"after-deactivate 403 urn:ietf:params:acme:error:unauthorized",
		NULL,
	};

	(void)state;
	expect_steps("rollover", "WebServer", steps);
}

/* http-01 answered by a static web server from files: what the fetcher accepts and refuses. */
static void test_http01_answers(void **state)
{
	const char *out;
	pid_t web;

	(void)state;
	sh_ok("mkdir -p www/.well-known/acme-challenge");
	web = fork();
	assert_true(web >= 0);
	if (web == 0) {
		execl("/usr/bin/python3", "python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "www",
		      keepf("%u", http01), (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && sh(&out, "curl -sf -o /dev/null http://127.0.0.1:%u/", http01); i++)
		usleep(100 * 1000);
	out = sh_ok("/usr/bin/python3 '%s/acme_jws.py' http01 http://127.0.0.1:%u/acme/WebServer/directory www",
		    SOURCE_DIR, port);
	kill(web, SIGTERM);
	waitpid(web, NULL, 0);
	/* trailing white space is ignored (RFC 8555 8.3) */
	expect_has("http-01, the key authorization", out, "good valid -");
	expect_has("http-01, a wrong answer", out,
		   "wrong invalid urn:ietf:params:acme:error:incorrectResponse http-01 for wrong.acme.test: the answer "
		   "is not the key authorization");
	expect_has("http-01, a long answer", out,
		   "big invalid urn:ietf:params:acme:error:incorrectResponse http-01 for big.acme.test: the answer is "
		   "longer than 1024 bytes");
}

/* serve over HTTPS (serve.conf's tls_*): the URLs in ACME's answers are https ones, and certbot follows them. */
static void test_https(void **state)
{
	char conf[600];
	const char *out;
	unsigned short p3 = kwt_free_port();
	pid_t pid;

	(void)state;
	serve_tls_files();
	snprintf(conf, sizeof conf, "%s/serve.conf", ca_dir);
	kwt_write_file(conf, "[serve]\nthreads = 4\ntls_certificate = ../tls.crt\ntls_key = ../tls.key\n");
	pid = serve_start_https(ca_dir, p3, "https.log");
	kwt_write_file(conf, "[serve]\nthreads = 4\n");
	out = sh_ok("curl -sS --cacert tls.crt https://127.0.0.1:%u/acme/WebServer/directory", p3);
	expect_has("the directory over HTTPS", out, keepf("\"newOrder\":\"https://127.0.0.1:%u/acme/WebServer/new-order\"", p3));
	if (sh(&out,
	       "REQUESTS_CA_BUNDLE=tls.crt certbot certonly --config-dir '%s/c8' --work-dir '%s/c8/work' --logs-dir "
	       "'%s/c8/logs' --non-interactive --agree-tos --register-unsafely-without-email --server "
	       "https://127.0.0.1:%u/acme/WebServer/directory --standalone --http-01-port %u -d tls.acme.test 2>&1",
	       work, work, work, p3, http01)) {
		serve_stop(pid);
		fail_full("certbot over HTTPS failed:\n%s", out);
	}
	serve_stop(pid);
	expect_cert_for(live("c8", "tls.acme.test", "cert.pem"), "tls.acme.test");
}

static void test_directories(void **state)
{
	const char *out;

	(void)state;
	out = sh_ok("curl -sS http://127.0.0.1:%u/acme/WebServer/directory", port);
	expect_has("the directory", out, keepf("\"newNonce\":\"http://127.0.0.1:%u/acme/WebServer/new-nonce\"", port));
	/* not listed in acme.conf, or not ACME's to serve (a CA template) */
	expect_has("SubCA's directory", sh_ok("curl -sS -o /dev/null -w '%%{http_code}' "
					      "http://127.0.0.1:%u/acme/SubCA/directory", port), "404");
	expect_has("User's directory", sh_ok("curl -sS -o /dev/null -w '%%{http_code}' "
					     "http://127.0.0.1:%u/acme/User/directory", port), "404");
	/* Client needs a subject CN, which certbot's CSR lacks: refused at finalize, with the template's reason */
	assert_int_not_equal(certonly(&out, "c7", "Client", "client.acme.test", http01, ""), 0);
	/* certbot 2.1 on Python 3.11 fails to print an ACME error at finalize ("can't set attribute"): its log has it */
	out = file(keepf("%s/c7/logs/letsencrypt.log", work));
	expect_has("certbot's log on Client", out, "urn:ietf:params:acme:error:badCSR");
	expect_has("certbot's log on Client", out, "template Client needs a subject with a CN");
}

/* A serve whose orders live 2 s (acme.conf's order_lifetime): an order left alone expires. */
static void test_expiry(void **state)
{
	char conf[600];
	const char *out, *saved;
	unsigned short p4 = kwt_free_port();
	pid_t pid;

	(void)state;
	snprintf(conf, sizeof conf, "%s/acme.conf", ca_dir);
	saved = file(conf);
	kwt_write_file(conf, keepf("%sorder_lifetime = 2\n", saved));
	pid = serve_start(ca_dir, p4, "expiry.log");
	kwt_write_file(conf, saved);
	if (sh(&out, "/usr/bin/python3 '%s/acme_jws.py' expiry http://127.0.0.1:%u/acme/WebServer/directory 3 2>&1",
	       SOURCE_DIR, p4)) {
		serve_stop(pid);
		fail_full("acme_jws.py expiry failed:\n%s", out);
	}
	serve_stop(pid);
	expect_has("an order at first", out, "order pending\n");
	expect_has("an order past its lifetime", out, "order-later invalid\n");
	expect_has("its authorization", out, "authz-later expired\n");
	expect_has("its challenge, answered late", out, "challenge-later pending\n");
	expect_has("its finalize", out, "finalize-later 403 urn:ietf:params:acme:error:orderNotReady\n");
}

/* Last: it uses up 127.0.0.1's accounts for the hour (acme.conf's accounts_per_hour, 20). */
static void test_account_limit(void **state)
{
	const char *out, *p;
	int made = 0;

	(void)state;
	out = sh_ok("/usr/bin/python3 '%s/acme_jws.py' account http://127.0.0.1:%u/acme/WebServer/directory 21",
		    SOURCE_DIR, port);
	for (p = out; (p = strstr(p, "account 201 -\n")); p++)
		made++;
	expect_has("21 accounts from one address", out, "account 429 urn:ietf:params:acme:error:rateLimited\n");
	if (made >= 20)
		fail_full("%d accounts made from one address in an hour, 20 allowed (others made before):\n%s", made, out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_issue_renew_revoke),
		cmocka_unit_test(test_p384_revoke_by_key),
		cmocka_unit_test(test_failed_challenge),
		cmocka_unit_test(test_dns01),
		cmocka_unit_test(test_eab),
		cmocka_unit_test(test_eab_old_schema),
		cmocka_unit_test(test_jws_refused),
		cmocka_unit_test(test_jws_algs),
		cmocka_unit_test(test_rollover_deactivate),
		cmocka_unit_test(test_directories),
		cmocka_unit_test(test_http01_answers),
		cmocka_unit_test(test_https),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_account_limit),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
