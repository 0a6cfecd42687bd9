/*
 * ACME and CMP in keyward-ca serve on a CA whose database is on PostgreSQL
 * (ca.conf's database =), on a throwaway cluster tests/pg/with-pg starts,
 * with two serve processes (A and B, two ports) on the one CA directory
 * and database, as two responders behind a load balancer would be:
 *
 *  - certbot certonly against A gets a certificate that verifies;
 *  - certbot's ACME library (acme_jws.py shared): a newAccount taken by A
 *    and replayed at B is refused (badNonce); a nonce B issued is good at
 *    A; an order made through A is validated and finalized through B and
 *    its certificate downloaded from A;
 *  - openssl cmp -cmd ir with MAC (the secret from `keyward-ca cmp-secret`)
 *    is answered by B, and the same message replayed at A refused;
 *  - the CMP secret and an EAB key (`keyward-ca acme-eab`) are in the
 *    database sealed only: a pg_dump holds neither, in text or hex;
 *  - ACME's and CMP's tables carry their schema versions in meta;
 *  - the periodic sweep deletes expired nonces and week-old orders that
 *    never issued (with their authorizations), not an order that issued;
 *  - PostgreSQL restarted under both: each takes a new ACME account.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ca_helpers.h"
#include "harness.h"
#include "serve_helpers.h"

static struct kwt_server server;
static char work[300], ca_dir[400], pin[400], db_url[300];
static unsigned short port_a, port_b, http01;
static pid_t serve_a, serve_b;

static int setup(void **state)
{
	const char *pg = getenv("KW_TEST_PG_URL");
	char path[600];

	(void)state;
	if (!pg || !*pg) {
		fprintf(stderr, "test_ca_pg_enroll: KW_TEST_PG_URL is not set: run it under tests/pg/with-pg\n");
		return -1;
	}
	serve_test_dirs(&server, "pgenroll", work, ca_dir, pin);
	sh_ok("psql '%s/keyward' -Atqc 'DROP DATABASE IF EXISTS kwca_enroll' -c 'CREATE DATABASE kwca_enroll'", pg);
	snprintf(db_url, sizeof db_url, "%s/kwca_enroll", pg);
	ca_ok(ca_dir,
	      "setup --name 'PG Enroll CA' --key-type EC-P256 --server-name ca.test --module '%s' --pin-file '%s' "
	      "--database '%s'",
	      KEYWARD_PKCS11_PATH, pin, db_url);
	ca_ok(ca_dir, "ca.cert ca.pem");
	/* every name resolves to 127.0.0.1, http-01 fetched from the client's port (as test_ca_acme) */
	http01 = kwt_free_port();
	snprintf(path, sizeof path, "%s/acme.conf", ca_dir);
	kwt_write_file(path, keepf("[acme]\ntemplates = WebServer\nresolve = 127.0.0.1\nallow_loopback = true\n"
				   "http01_port = %u\nfetch_timeout = 5\n",
				   http01));
	serve_a = serve_test_start(ca_dir, "[serve]\nthreads = 2\n", &port_a);
	port_b = kwt_free_port();
	serve_b = serve_start(ca_dir, port_b, keepf("%s/serve-b.log", work));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	serve_stop(serve_b);
	serve_stop(serve_a);
	serve_test_ca_end(&server);
	return 0;
}

/* certbot against A. */
static void test_certbot(void **state)
{
	const char *out, *pem = keepf("%s/c1/live/a.acme.test/cert.pem", work);

	(void)state;
	if (sh(&out,
	       "certbot certonly --config-dir '%s/c1' --work-dir '%s/c1/work' --logs-dir '%s/c1/logs' "
	       "--non-interactive --agree-tos --register-unsafely-without-email "
	       "--server http://127.0.0.1:%u/acme/WebServer/directory --standalone --http-01-port %u "
	       "-d a.acme.test 2>&1",
	       work, work, work, port_a, http01))
		fail_full("certbot certonly against serve A failed:\n%s\nserve A's log:\n%s", out, file("serve.log"));
	expect_verifies("ca.pem", NULL, pem);
	expect_has("the certificate's SAN", cert_text(pem), "DNS:a.acme.test\n");
	assert_true(listed(ca_dir, "issued", norm_serial(cert_serial(pem))));
}

/* Nonces and orders shared: what A handed out is used up at B, what B handed out is good at A. */
static void test_acme_shared(void **state)
{
	static const char *const steps[] = {
		"account-at-a 201 -\n",	       "replayed-at-b 400 urn:ietf:params:acme:error:badNonce\n",
		"b-nonce-at-a 200 -\n",	       "order-at-a 201 -\n",
		"challenge-at-b 200 -\n",      "order-at-a ready\n",
		"finalize-at-b 200 -\n",       "finalized-at-a valid\n",
		"certificate-at-a 200 True\n",
	};
	const char *out;

	(void)state;
	out = sh_ok("/usr/bin/python3 '%s/acme_jws.py' shared http://127.0.0.1:%u/acme/WebServer/directory "
		    "127.0.0.1:%u %u 2>&1 | tee shared.out",
		    SOURCE_DIR, port_a, port_b, http01);
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
		if (!strstr(out, steps[i]))
			fail_full("acme_jws.py shared: no \"%.*s\" in:\n%s\nserve A:\n%s\nserve B:\n%s",
				  (int)strlen(steps[i]) - 1, steps[i], out, file("serve.log"),
				  file(keepf("%s/serve-b.log", work)));
	/* the certificate A handed out for the order B finalized */
	sh_ok("openssl x509 -in shared.out -out shared.pem");
	expect_verifies("ca.pem", NULL, "shared.pem");
	expect_has("the certificate's SAN", cert_text("shared.pem"), "DNS:shared.acme.test\n");
}

/* openssl cmp against serve on port with args: its exit code, *out its output. */
static int cmp(const char **out, unsigned short port, const char *args)
{
	return sh(out,
		  "openssl cmp -server 127.0.0.1:%u -path /.well-known/cmp/p/WebServer -trusted ca.pem "
		  "-unprotected_errors -msg_timeout 20 -total_timeout 60 %s 2>&1",
		  port, args);
}

/* A CMP transaction at B, its replay at A; the secrets sealed only. */
static void test_cmp_shared(void **state)
{
	char secret[64];
	const char *out, *eab, *key;
	size_t n;

	(void)state;
	out = ca_ok(ca_dir, "cmp-secret WebServer --quiet");
	n = strcspn(out, "\n");
	assert_true(n >= 20 && n < sizeof secret);
	memcpy(secret, out, n);
	secret[n] = '\0';
	sh_ok("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out cmp.key 2>/dev/null");
	if (cmp(&out, port_b,
		keepf("-cmd ir -ref WebServer -secret pass:%s -newkey cmp.key -subject /CN=cmp.example "
		      "-sans cmp.example -certout cmp.pem -reqout ir.der,certconf.der",
		      secret)))
		fail_full("openssl cmp ir at serve B failed:\n%s\nserve B's log:\n%s", out,
			  file(keepf("%s/serve-b.log", work)));
	expect_verifies("ca.pem", NULL, "cmp.pem");
	/* the same ir (transactionID, nonce, MAC) at A: B's record of it is A's */
	if (!cmp(&out, port_a,
		 keepf("-cmd ir -ref WebServer -secret pass:%s -reqin ir.der -newkey cmp.key -subject /CN=cmp.example "
		       "-certout replay.pem",
		       secret)))
		fail_full("the replayed ir was accepted by serve A:\n%s", out);
	expect_has("the replayed ir at A", out, "replayed message is refused");
	/* an EAB key made on this CA */
	eab = ca_ok(ca_dir, "acme-eab WebServer");
	key = word_after(eab, "hmac_key");
	/* in the database, sealed only; both stores' schema versions recorded */
	expect_not_stored(ca_dir, "CMP secret of WebServer", secret, strlen(secret));
	expect_b64u_not_stored(ca_dir, "EAB key", key);
	out = sh_ok("psql '%s' -Atqc \"SELECT length(iv), length(sealed) FROM cmp_secrets WHERE template = "
		    "'WebServer'\" -c \"SELECT COUNT(*) FROM acme_eab WHERE kid = '%s' AND length(sealed) = 48\" "
		    "-c \"SELECT key || '=' || value FROM meta WHERE key LIKE '%%.schema_version' ORDER BY key\"",
		    db_url, word_after(eab, "kid"));
	expect_has(last_cmd, out, "12|");
	expect_has(last_cmd, out, "\n1\n");
	expect_has(last_cmd, out, "acme.schema_version=1\ncmp.schema_version=1\ndb.schema_version=1\n");
}

/*
 * The sweep, in PostgreSQL: after its 256 nonces a serve deletes expired
 * nonces, and orders a week past their expiry that never issued with
 * their authorizations; an order that issued stays.
 */
static void test_sweep(void **state)
{
	const char *out;

	(void)state;
	sh_ok("psql '%s' -Atqc \"INSERT INTO acme_nonces VALUES ('expiredNonce', 1)\" "
	      "-c \"INSERT INTO acme_orders (id, account, template, status, created, expires) "
	      "VALUES (900001, 1, 'WebServer', 'pending', 1, 2), (900002, 1, 'WebServer', 'valid', 1, 2)\" "
	      "-c \"UPDATE acme_orders SET serial = 'AB' WHERE id = 900002\" "
	      "-c \"INSERT INTO acme_authz (order_id, account, value, wildcard, status, expires, token) "
	      "VALUES (900001, 1, 'old.example', 0, 'pending', 2, 't')\"",
	      db_url);
	sh_ok("n=$(curl -sf http://127.0.0.1:%u/acme/WebServer/directory | /usr/bin/python3 -c "
	      "'import json, sys; print(json.load(sys.stdin)[\"newNonce\"])') && "
	      "for i in $(seq 1 260); do curl -sf -o /dev/null -I \"$n\" || exit 1; done",
	      port_a);
	out = sh_ok("psql '%s' -Atqc \"SELECT COUNT(*) FROM acme_nonces WHERE nonce = 'expiredNonce'\" "
		    "-c 'SELECT id FROM acme_orders WHERE id > 900000' "
		    "-c 'SELECT COUNT(*) FROM acme_authz WHERE order_id = 900001'",
		    db_url);
	expect_has("after the sweep", out, "0\n900002\n0\n");
}

/* PostgreSQL restarted under both: their ACME connections reset by themselves, no serve restarted. */
static void test_restart(void **state)
{
	const char *out;

	(void)state;
	kwt_pg_cluster(false);
	kwt_pg_cluster(true);
	for (int k = 0; k < 2; k++) {
		out = sh_ok("/usr/bin/python3 '%s/acme_jws.py' account http://127.0.0.1:%u/acme/WebServer/directory 2>&1",
			    SOURCE_DIR, k ? port_b : port_a);
		expect_has(k ? "a new account at B after the restart" : "a new account at A after the restart", out,
			   "account 201 -\n");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_certbot),
		cmocka_unit_test(test_acme_shared),
		cmocka_unit_test(test_cmp_shared),
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_restart),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
