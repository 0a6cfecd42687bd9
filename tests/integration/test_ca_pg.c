/*
 * keyward-ca with its database on PostgreSQL (ca.conf's database =), on a
 * throwaway cluster tests/pg/with-pg starts ($KW_TEST_PG_URL), a database
 * of the test's own in it; the CA's key on a development keywardd:
 *
 *  - bad database values refused with an error naming ca.conf's key and
 *    never the password; setup --database makes the tables, and no
 *    keyward-ca.db is left beside ca.conf;
 *  - issue, revoke, full and delta CRLs (verified by openssl), status;
 *  - two `serve` processes (two ports, one CA directory, one database)
 *    both answer OCSP "revoked" right after a revocation by the CLI, also
 *    after PostgreSQL was stopped and started under them;
 *  - two copies of the CA directory (two hosts sharing the database: no
 *    file lock in common) issuing batches and publishing CRLs at once:
 *    every serial unique, CRL numbers strictly increasing in audit order,
 *    every issue's audit record present;
 *  - backupdb writes the SQLite backup format (sqlite3 reads it, the rows
 *    all there); restoredb into PostgreSQL: test_ca_pg_move.c.
 * ACME and CMP on such a CA: test_ca_pg_enroll.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca_helpers.h"
#include "harness.h"
#include "serve_helpers.h"

static struct kwt_server server;
static size_t certs_before; /* certificates before the two issuers (serve's OCSP signer among them) */
static char work[300], ca_dir[400], pin[400], db_url[300];
static unsigned short port, port2;
static pid_t serve_pid, serve2_pid;

#define BATCH 12 /* requests in each of the two concurrent batches */
#define ROUNDS 4 /* full + delta CRLs each of the two publishers makes */

static void issue_web(const char *name)
{
	sh_ok("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key "
	      "-subj /CN=%s.example -addext subjectAltName=DNS:%s.example -out %s.csr 2>/dev/null",
	      name, name, name, name);
	ca_ok(ca_dir, "submit %s.csr --template WebServer --out %s.pem", name, name);
}

static int setup(void **state)
{
	const char *pg = getenv("KW_TEST_PG_URL");

	(void)state;
	if (!pg || !*pg) {
		fprintf(stderr, "test_ca_pg: KW_TEST_PG_URL is not set: run it under tests/pg/with-pg\n");
		return -1;
	}
	serve_test_dirs(&server, "pg", work, ca_dir, pin);
	/* a database of the CA's own: the cluster's "keyward" may hold a keystore (tables meta, audit) */
	sh_ok("psql '%s/keyward' -Atqc 'DROP DATABASE IF EXISTS kwca_test' -c 'CREATE DATABASE kwca_test'", pg);
	snprintf(db_url, sizeof db_url, "%s/kwca_test", pg);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	serve_test_end(&server, serve_pid, serve2_pid);
	return 0;
}

/* Bad values for database: refused before anything is made, the password never repeated. */
static void test_bad_database(void **state)
{
	const char *out;
	struct stat st;

	(void)state;
	out = ca_refused("bad", 2,
			 "setup --name Bad --key-type EC-P256 --module '%s' --pin-file '%s' --database "
			 "'postgresql://keyward:hunter2@127.0.0.1:1/x'",
			 KEYWARD_PKCS11_PATH, pin);
	expect_has(last_cmd, out, "password");
	expect_has(last_cmd, out, ".pgpass");
	expect_lacks(last_cmd, out, "hunter2");
	out = ca_refused("bad", 2, "setup --name Bad --key-type EC-P256 --module '%s' --database 'mysql://x/y'",
			 KEYWARD_PKCS11_PATH);
	expect_has(last_cmd, out, "postgresql://");
	out = ca_refused("bad", 2, "setup --name Bad --key-type EC-P256 --module '%s' --database 'postgresql://h:1'",
			 KEYWARD_PKCS11_PATH);
	expect_has(last_cmd, out, "names no database");
	assert_int_not_equal(stat("bad/ca.conf", &st), 0);
	/* a server that is not there: an error naming where, still without a password (PGPASSWORD's) */
	out = sh_ok("PGPASSWORD=hunter2 " KWT_CA_ENV
		    "%s --dir nowhere setup --name Nowhere --key-type EC-P256 --module '%s' "
		    "--pin-file '%s' --database 'postgresql://keyward@127.0.0.1:1/none' 2>&1; echo rc=$?",
		    ca_path(), KEYWARD_PKCS11_PATH, pin);
	expect_has(last_cmd, out, "rc=1");
	expect_clean(out);
	expect_has(last_cmd, out, "postgresql://127.0.0.1:1/none");
	expect_lacks(last_cmd, out, "hunter2");
}

/* setup on PostgreSQL; issue, revoke, CRLs, status. */
static void test_setup_issue_revoke(void **state)
{
	const char *out, *conf;
	char path[600];
	struct stat st;

	(void)state;
	ca_ok(ca_dir,
	      "setup --name 'PG Test CA' --key-type EC-P256 --server-name ca.test --module '%s' --pin-file '%s' "
	      "--database '%s'",
	      KEYWARD_PKCS11_PATH, pin, db_url);
	ca_ok(ca_dir, "ca.cert ca.pem");
	snprintf(path, sizeof path, "%s/ca.conf", ca_dir);
	conf = keep(kwt_read_file(path, NULL));
	expect_has("ca.conf", conf, keepf("database = %s\n", db_url));
	snprintf(path, sizeof path, "%s/keyward-ca.db", ca_dir);
	if (stat(path, &st) == 0)
		fail_msg("%s exists: the CA's records went to SQLite, not to PostgreSQL", path);
	/* the rows are in PostgreSQL */
	out = sh_ok("psql '%s' -Atqc \"SELECT value FROM meta WHERE key = 'ca.name'\"", db_url);
	expect_has(last_cmd, out, "PG Test CA");

	/* a second setup on the same database: refused, it would merge two CAs */
	out = ca_refused("other", 1,
			 "setup --name Other --key-type EC-P256 --module '%s' --pin-file '%s' --database '%s'",
			 KEYWARD_PKCS11_PATH, pin, db_url);
	expect_has(last_cmd, out, "already holds");

	issue_web("good");
	issue_web("rev");
	issue_web("late");
	ca_ok(ca_dir, "crl");
	ca_ok(ca_dir, "revoke %s --reason keyCompromise", cert_serial("rev.pem"));
	ca_ok(ca_dir, "crl --delta");
	out = crl_check(keepf("%s/publish/PG-Test-CA.crl", ca_dir), "full.pem");
	expect_lacks(last_cmd, out, cert_serial("rev.pem"));
	out = crl_check(keepf("%s/publish/PG-Test-CA+.crl", ca_dir), "delta.pem");
	expect_has(last_cmd, out, cert_serial("rev.pem"));
	expect_has(last_cmd, out, "Key Compromise");
	ca_ok(ca_dir, "crl");
	out = crl_check(keepf("%s/publish/PG-Test-CA.crl", ca_dir), "full2.pem");
	expect_has(last_cmd, out, cert_serial("rev.pem"));
	expect_lacks(last_cmd, out, cert_serial("good.pem"));
	out = ca_ok(ca_dir, "status --json");
	expect_has(last_cmd, out, "\"issued\": 2");
	expect_has(last_cmd, out, "\"revoked\": 1");
	expect_has(last_cmd, out, "\"last_crl\": 3");
	expect_has(last_cmd, out, "\"last_delta_crl\": 2");
	assert_true(listed(ca_dir, "revoked", cert_serial("rev.pem")));
	out = ca_ok(ca_dir, "view %s", cert_serial("good.pem"));
	expect_has(last_cmd, out, "good.example");
	/* a bad database line in ca.conf: refused naming the file and key, not repeating the value */
	sh_ok("cp '%s/ca.conf' ca.conf.good && sed -i 's|^database = .*|database = postgresql://u:hunter2@h|' "
	      "'%s/ca.conf'",
	      ca_dir, ca_dir);
	out = ca_refused(ca_dir, 1, "status");
	expect_has(last_cmd, out, "ca.conf: [ca] database");
	expect_lacks(last_cmd, out, "hunter2");
	sh_ok("cp ca.conf.good '%s/ca.conf'", ca_dir);
}

/* Two responders on one database: a revocation by the CLI answered by both within seconds. */
static void test_two_responders(void **state)
{
	char log[400];
	const char *out;

	(void)state;
	serve_pid = serve_test_start(ca_dir, "[serve]\nthreads = 2\n", &port);
	port2 = kwt_free_port();
	snprintf(log, sizeof log, "%s/serve2.log", work);
	serve2_pid = serve_start(ca_dir, port2, log);
	for (int k = 0; k < 2; k++) {
		out = serve_ocsp_until(k ? port2 : port, "-cert good.pem -cert rev.pem -cert late.pem -no_nonce",
				 "late.pem: good", 3);
		expect_has(last_cmd, out, "Response verify OK");
		expect_has(last_cmd, out, "good.pem: good");
		expect_has(last_cmd, out, "rev.pem: revoked");
		expect_has(last_cmd, out, "late.pem: good");
	}
	ca_ok(ca_dir, "revoke %s --reason superseded", cert_serial("late.pem"));
	for (int k = 0; k < 2; k++) {
		out = serve_ocsp_until(k ? port2 : port, "-cert late.pem -no_nonce", "late.pem: revoked", 3);
		expect_has(last_cmd, out, "late.pem: revoked");
		expect_has(last_cmd, out, "Reason: superseded");
	}
	/* a certificate issued after both started: known to both (not "unknown") */
	issue_web("new");
	for (int k = 0; k < 2; k++) {
		out = serve_ocsp_until(k ? port2 : port, "-cert new.pem -no_nonce", "new.pem: good", 3);
		expect_has(last_cmd, out, "new.pem: good");
	}
	/*
	 * PostgreSQL restarted under the responders: they answer from their
	 * cache meanwhile, reconnect by themselves, and see the next change
	 */
	kwt_pg_cluster(false);
	for (int k = 0; k < 2; k++) {
		out = serve_ocsp_until(k ? port2 : port, "-cert good.pem -no_nonce", "good.pem: good", 3);
		expect_has(last_cmd, out, "good.pem: good");
	}
	kwt_pg_cluster(true);
	ca_ok(ca_dir, "revoke %s --reason cessationOfOperation", cert_serial("new.pem"));
	for (int k = 0; k < 2; k++) {
		out = serve_ocsp_until(k ? port2 : port, "-cert new.pem -no_nonce", "new.pem: revoked", 3);
		expect_has(last_cmd, out, "new.pem: revoked");
		expect_has(last_cmd, out, "Reason: cessationOfOperation");
	}
	serve_stop(serve2_pid);
	serve2_pid = 0;
	serve_stop(serve_pid);
	serve_pid = 0;
}

/* The "issue" records in audit --json. */
static int issue_records(json_t *audit)
{
	size_t i;
	json_t *e;
	int n = 0;

	json_array_foreach(audit, i, e)
	{
		const char *event = json_string_value(json_object_get(e, "event"));

		n += event && !strcmp(event, "issue");
	}
	return n;
}

/* The numbers in "CRL number N" audit details, in audit order, must rise; returns how many. */
static int crl_numbers_rise(json_t *audit)
{
	long long last = 0;
	int n = 0;
	size_t i;
	json_t *e;

	json_array_foreach(audit, i, e)
	{
		const char *event = json_string_value(json_object_get(e, "event"));
		const char *detail = json_string_value(json_object_get(e, "detail"));
		long long number;

		if (!event || strncmp(event, "crl", 3) || !detail || sscanf(detail, "CRL number %lld", &number) != 1)
			continue;
		if (number <= last)
			fail_full("CRL number %lld after %lld in the audit log (audit id %s)", number, last,
				  field(e, "id"));
		last = number;
		n++;
	}
	return n;
}

/* Two "hosts" (two copies of the CA directory, no file lock in common) issuing and publishing at once. */
static void test_two_issuers(void **state)
{
	const char *out;
	json_t *root, *list, *e, *audit;
	size_t i;
	int issues_before, a_rc, b_rc;

	(void)state;
	root = list_json(ca_dir, NULL);
	certs_before = json_array_size(entries(root));
	json_decref(root);
	audit = json_loads(ca_ok(ca_dir, "audit --json"), 0, NULL);
	assert_non_null(audit);
	issues_before = issue_records(audit);
	json_decref(audit);
	/* the second host's directory: ca.conf, ca.crt; the database is the shared one */
	sh_ok("mkdir ca2 && cp '%s/ca.conf' '%s/ca.crt' ca2/ && chmod 700 ca2", ca_dir, ca_dir);
	sh_ok("for i in $(seq 1 %d); do for h in a b; do openssl req -new -newkey ec -pkeyopt "
	      "ec_paramgen_curve:P-256 -nodes -keyout $h$i.key -subj /CN=$h$i.example "
	      "-addext subjectAltName=DNS:$h$i.example -out $h$i.csr 2>/dev/null || exit 1; done; done",
	      BATCH);
	/* each host: a batch, then CRLs, and meanwhile the other does the same */
	out = sh_ok("run() { d=$1; h=$2; " KWT_CA_ENV
		    "'%s' --dir \"$d\" submit $(seq -f \"$h%%g.csr\" 1 %d) --template WebServer "
		    "--out-dir out-$h --quiet && for r in $(seq 1 %d); do " KWT_CA_ENV
		    "'%s' --dir \"$d\" crl >/dev/null && " KWT_CA_ENV
		    "'%s' --dir \"$d\" crl --delta >/dev/null || return 1; done; }; mkdir out-a out-b; "
		    "run '%s' a > a.log 2>&1 & pa=$!; run ca2 b > b.log 2>&1 & pb=$!; "
		    "wait $pa; echo a=$?; wait $pb; echo b=$?; cat a.log b.log",
		    ca_path(), BATCH, ROUNDS, ca_path(), ca_path(), ca_dir);
	a_rc = strstr(out, "a=0\n") ? 0 : 1;
	b_rc = strstr(out, "b=0\n") ? 0 : 1;
	if (a_rc || b_rc)
		fail_full("the concurrent issuers failed:\n%s", out);
	expect_clean(out);
	/* every certificate of both batches, each serial once */
	root = list_json(ca_dir, NULL);
	list = entries(root);
	assert_int_equal(json_array_size(list), certs_before + 2 * BATCH);
	json_array_foreach(list, i, e)
	{
		const char *serial = field(e, "serial");

		for (size_t j = i + 1; j < json_array_size(list); j++)
			if (!strcmp(serial, field(json_array_get(list, j), "serial")))
				fail_full("serial %s listed twice", serial);
	}
	json_decref(root);
	/* the audit log: both batches' issues, and CRL numbers strictly rising in the order they were recorded */
	out = ca_ok(ca_dir, "audit --json");
	audit = json_loads(out, 0, NULL);
	assert_non_null(audit);
	assert_int_equal(issue_records(audit), issues_before + 2 * BATCH);
	assert_int_equal(crl_numbers_rise(audit), 3 + 2 * 2 * ROUNDS);
	json_decref(audit);
	/* and in the database itself: no number twice, as many as published */
	out = sh_ok("psql '%s' -Atqc 'SELECT COUNT(*), COUNT(DISTINCT number), MAX(number) FROM crls'", db_url);
	expect_has(last_cmd, out, keepf("%d|%d|%d", 3 + 4 * ROUNDS, 3 + 4 * ROUNDS, 3 + 4 * ROUNDS));
	/* the last delta holds late.pem's revocation only if its base did not: every delta verifies */
	crl_check(keepf("%s/publish/PG-Test-CA+.crl", ca_dir), "last-delta.pem");
	crl_check("ca2/publish/PG-Test-CA.crl", "ca2-full.pem");
}

/* backupdb: the SQLite format, whole. */
static void test_backup_and_limits(void **state)
{
	const char *out, *audit_rows;

	(void)state;
	/* the audit rows before backupdb, which records its own after the copy */
	audit_rows = sh_ok("psql '%s' -Atqc 'SELECT COUNT(*) FROM audit'", db_url);
	ca_ok(ca_dir, "backupdb bk");
	out = sh_ok("sqlite3 bk/keyward-ca.db 'SELECT COUNT(*) FROM certs; SELECT COUNT(*) FROM crls; "
		    "SELECT COUNT(*) FROM audit; PRAGMA integrity_check'");
	expect_has(last_cmd, out, keepf("%zu\n%d\n", certs_before + 2 * BATCH, 3 + 4 * ROUNDS));
	expect_has(last_cmd, out, "ok\n");
	out = sh_ok("sqlite3 bk/keyward-ca.db 'SELECT COUNT(*) FROM audit'");
	if (strcmp(out, audit_rows))
		fail_full("the backup holds %s audit rows, the database held %s", out, audit_rows);
	/* the revocations came along: the backup's CA, opened on SQLite, lists them */
	out = sh_ok("sqlite3 bk/keyward-ca.db \"SELECT COUNT(*) FROM certs WHERE status = 'revoked'\"");
	expect_has(last_cmd, out, "3\n"); /* rev, late, new */
	/* with their reasons, as integers (a backup once copied them as text, and restored them as 0) */
	out = sh_ok("sqlite3 bk/keyward-ca.db \"SELECT typeof(reason) || ':' || reason FROM certs WHERE status = "
		    "'revoked' ORDER BY reason\"");
	expect_has(last_cmd, out, "integer:1\ninteger:4\ninteger:5\n");
	/* where the database is cannot be changed in place: database move moves the records, then switches */
	out = ca_refused(ca_dir, 2, "config set database postgresql://kwca@elsewhere/db");
	expect_has(last_cmd, out, "database move");
	/*
	 * A COMMIT whose connection breaks (a deferred trigger ends the server
	 * process at COMMIT): the revocation may or may not have been made, and
	 * keyward-ca says so rather than "failed", which would invite a second one.
	 */
	sh_ok("psql '%s' -Atqc 'CREATE FUNCTION kwt_cut() RETURNS trigger LANGUAGE plpgsql AS "
	      "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NULL; END $$' "
	      "-c 'CREATE CONSTRAINT TRIGGER kwt_cut AFTER UPDATE ON certs DEFERRABLE INITIALLY DEFERRED "
	      "FOR EACH ROW EXECUTE FUNCTION kwt_cut()'",
	      db_url);
	out = keepf("%s", ca_refused(ca_dir, 1, "revoke %s --reason superseded", cert_serial("good.pem")));
	sh_ok("psql '%s' -Atqc 'DROP TRIGGER kwt_cut ON certs' -c 'DROP FUNCTION kwt_cut()'", db_url);
	expect_has(last_cmd, out, "may or may not have been made");
	/* the server ended before its commit record: the certificate is still good */
	assert_false(listed(ca_dir, "revoked", cert_serial("good.pem")));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_database),	  cmocka_unit_test(test_setup_issue_revoke),
		cmocka_unit_test(test_two_responders),	  cmocka_unit_test(test_two_issuers),
		cmocka_unit_test(test_backup_and_limits),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
