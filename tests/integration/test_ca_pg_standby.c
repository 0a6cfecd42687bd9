/*
 * keyward-ca serve with read_only = true on a PostgreSQL hot standby
 * (label postgres, under tests/pg/with-pg): the CA's database on the
 * throwaway primary, a streaming standby of it made with
 * `pg-throwaway --standby` (pg_basebackup -R) in $KW_TEST_PG_STANDBY_DIR,
 * and a second CA directory (ca.conf, ca.crt, the delegated signer's
 * certificate, publish/) whose database is the standby:
 *
 *  - the read-only serve answers OCSP (good, revoked) and /health;
 *  - a revocation on the primary is answered "revoked" by it within a
 *    bounded wait (polled);
 *  - it publishes nothing: no CRL file in its publish/, no row in the
 *    database (the primary's crls and audit unchanged by it);
 *  - refused at start, saying why: a writing serve on the standby, and a
 *    read-only serve whose delegated signer's certificate would have to be
 *    issued.
 * with-pg stops the standby and the primary whatever happens; teardown
 * stops the standby too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca_helpers.h"
#include "harness.h"
#include "serve_helpers.h"

static struct kwt_server server;
static char work[300], ca_dir[400], pin[400], primary_db[300], standby_db[300];
static const char *standby_dir;
static pid_t ro_pid;
static unsigned short ro_port;

static int setup(void **state)
{
	const char *pg = getenv("KW_TEST_PG_URL");

	(void)state;
	standby_dir = getenv("KW_TEST_PG_STANDBY_DIR");
	if (!pg || !*pg || !standby_dir || !getenv("KW_TEST_PG_SCRIPT")) {
		fprintf(stderr,
			"test_ca_pg_standby: KW_TEST_PG_URL and KW_TEST_PG_STANDBY_DIR are not set: run it under "
			"tests/pg/with-pg\n");
		return -1;
	}
	serve_test_dirs(&server, "pgstandby", work, ca_dir, pin);
	sh_ok("psql '%s/keyward' -Atqc 'DROP DATABASE IF EXISTS kwca_sb' -c 'CREATE DATABASE kwca_sb'", pg);
	snprintf(primary_db, sizeof primary_db, "%s/kwca_sb", pg);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	serve_stop(ro_pid);
	sh(NULL, "'%s' --stop '%s' 2>&1", getenv("KW_TEST_PG_SCRIPT"), standby_dir);
	serve_test_ca_end(&server);
	return 0;
}

static void issue_web(const char *name)
{
	make_csr(name, EC256, keepf("/CN=%s.example", name), keepf("-addext subjectAltName=DNS:%s.example", name));
	ca_ok(ca_dir, "submit %s.csr --template WebServer --out %s.pem", name, name);
}

/* A CA directory for the standby: ca.conf (database = the standby), ca.crt, what else, and serve.conf. */
static void standby_copy(const char *dir, const char *extra, const char *serve_conf)
{
	sh_ok("rm -rf %s && mkdir %s && chmod 700 %s && cp -r '%s/ca.conf' '%s/ca.crt' %s %s/ && "
	      "sed -i 's|^database = .*|database = %s|' %s/ca.conf",
	      dir, dir, dir, ca_dir, ca_dir, extra, dir, standby_db, dir);
	if (serve_conf)
		kwt_write_file(keepf("%s/serve.conf", dir), serve_conf);
}

/* The primary's rows a responder could have written: CRLs, audit records, certificates. */
static const char *written(void)
{
	return sh_ok("psql '%s' -Atqc 'SELECT (SELECT COUNT(*) FROM crls), (SELECT MAX(id) FROM audit), "
		     "(SELECT COUNT(*) FROM certs)'",
		     primary_db);
}

static void test_primary_and_standby(void **state)
{
	unsigned short port, sport;
	const char *out, *primary_port;
	pid_t pid;

	(void)state;
	ca_ok(ca_dir,
	      "setup --name 'Standby CA' --key-type EC-P256 --server-name ca.test --module '%s' --pin-file '%s' "
	      "--database '%s'",
	      KEYWARD_PKCS11_PATH, pin, primary_db);
	ca_ok(ca_dir, "ca.cert ca.pem");
	issue_web("good");
	issue_web("rev");
	issue_web("late");
	ca_ok(ca_dir, "revoke %s --reason keyCompromise", cert_serial("rev.pem"));
	/* the writing serve on the primary, once: it issues the delegated signer and publishes the CRLs */
	pid = serve_test_start(ca_dir, "[serve]\n", &port);
	out = serve_ocsp_until(port, "-cert rev.pem -no_nonce", "rev.pem: revoked", 3);
	expect_has(last_cmd, out, "rev.pem: revoked");
	serve_stop(pid);
	assert_true(exists(keepf("%s/ocsp-signer.crt", ca_dir)));
	assert_true(exists(keepf("%s/publish/Standby-CA.crl", ca_dir)));

	/* the standby: a streaming copy of the primary, read-only */
	primary_port = strrchr(getenv("KW_TEST_PG_URL"), ':') + 1;
	sport = kwt_free_port();
	out = sh_ok("'%s' --standby %s '%s' %u", getenv("KW_TEST_PG_SCRIPT"), primary_port, standby_dir, sport);
	snprintf(standby_db, sizeof standby_db, "postgresql://keyward@127.0.0.1:%u/kwca_sb", sport);
	out = sh_ok("psql '%s' -Atqc 'SELECT pg_is_in_recovery()'", standby_db);
	expect_has(last_cmd, out, "t\n");
}

/* The read-only responder: answers, follows the primary, publishes nothing. */
static void test_read_only_serve(void **state)
{
	const char *out, *before, *files;
	struct timespec t0, t1;

	(void)state;
	standby_copy("ro", keepf("'%s/ocsp-signer.crt' '%s/publish'", ca_dir, ca_dir), "[serve]\nread_only = true\n");
	files = sh_ok("cd ro/publish && ls -l --time-style=full-iso *.crl");
	before = written();
	ro_port = kwt_free_port();
	ro_pid = serve_start("ro", ro_port, keepf("%s/serve-ro.log", work));
	out = serve_ocsp_until(ro_port, "-cert good.pem -cert rev.pem -cert late.pem -no_nonce", "late.pem: good", 5);
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "good.pem: good");
	expect_has(last_cmd, out, "rev.pem: revoked");
	expect_has(last_cmd, out, "late.pem: good");
	out = sh_ok("curl -sS -i http://127.0.0.1:%u/health", ro_port);
	expect_has(last_cmd, out, "HTTP/1.1 200");
	expect_has(last_cmd, out, "\"status\": \"ok\"");
	/* the CRL and the CA certificate as published, from its publish/ */
	out = sh_ok("curl -sS -o ro.crl -w '%%{http_code}' http://127.0.0.1:%u/crl/Standby-CA.crl && "
		    "openssl crl -inform DER -in ro.crl -CAfile ca.pem -noout 2>&1",
		    ro_port);
	expect_has(last_cmd, out, "200");
	expect_has(last_cmd, out, "verify OK");
	assert_int_equal(http_status(ro_port, "GET", "/ca/Standby-CA.crt"), 200);

	/* a revocation on the primary: answered by the standby's responder within a bounded wait */
	ca_ok(ca_dir, "revoke %s --reason superseded", cert_serial("late.pem"));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	out = serve_ocsp_until(ro_port, "-cert late.pem -no_nonce", "late.pem: revoked", 15);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* a figure, not an assertion: the bound above is the assertion */
	fprintf(stderr, "test_ca_pg_standby: the standby's responder answered the revocation after %.2f s\n",
		(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	expect_has(last_cmd, out, "late.pem: revoked");
	expect_has(last_cmd, out, "Reason: superseded");

	/* nothing published, nothing written: the primary's rows are the revocation's alone */
	expect_has(last_cmd, sh_ok("cd ro/publish && ls -l --time-style=full-iso *.crl"), files);
	out = sh_ok("psql '%s' -Atqc \"SELECT COUNT(*) FROM audit WHERE id > %lld AND event <> 'revoke'\"", primary_db,
		    atoll(strchr(before, '|') + 1));
	expect_has(last_cmd, out, "0\n");
	expect_has(last_cmd, written(), keepf("%.*s", (int)(strchr(before, '|') - before), before));
	out = file(keepf("%s/serve-ro.log", work));
	expect_has("serve-ro.log", out, "read-only");
	expect_lacks("serve-ro.log", out, "published full CRL");
	expect_lacks("serve-ro.log", out, "published delta CRL");
	expect_lacks("serve-ro.log", out, "error");
	expect_lacks("serve-ro.log", out, "issued OCSP signing certificate");
	serve_stop(ro_pid);
	ro_pid = 0;
}

/* Refused at start: a writing serve on the standby; a read-only one that would have to issue its signer. */
/* serve in dir must stop at start (not run on, not succeed) and say because; its output. */
static const char *serve_refused(const char *dir, const char *because)
{
	const char *out = sh_ok(KWT_CA_ENV "timeout 30 %s --dir %s serve --listen 127.0.0.1:%u 2>&1; echo rc=$?",
				ca_path(), dir, kwt_free_port());

	expect_has(last_cmd, out, because);
	expect_lacks(last_cmd, out, "rc=0");
	expect_lacks(last_cmd, out, "rc=124");
	expect_clean(out);
	return out;
}

static void test_refused_at_start(void **state)
{
	const char *out;

	(void)state;
	standby_copy("rw", keepf("'%s/ocsp-signer.crt'", ca_dir), NULL);
	out = serve_refused("rw", "hot standby");
	expect_has(last_cmd, out, "read_only = true");
	standby_copy("nosigner", "", "[serve]\nread_only = true\n");
	out = serve_refused("nosigner", "ocsp-signer.crt");
	expect_has(last_cmd, out, "read-only");
	/* with ocsp_signer = ca it needs no signer certificate: it starts, and answers */
	kwt_write_file("nosigner/serve.conf", "[serve]\nread_only = true\nocsp_signer = ca\n");
	ro_port = kwt_free_port();
	ro_pid = serve_start("nosigner", ro_port, keepf("%s/serve-ca.log", work));
	out = serve_ocsp_until(ro_port, "-cert rev.pem -no_nonce", "rev.pem: revoked", 5);
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "rev.pem: revoked");
	serve_stop(ro_pid);
	ro_pid = 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_primary_and_standby),
		cmocka_unit_test(test_read_only_serve),
		cmocka_unit_test(test_refused_at_start),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
