/*
 * keyward-ca database move and restoredb with PostgreSQL (label postgres,
 * under tests/pg/with-pg: $KW_TEST_PG_URL), the CA's key on a development
 * keywardd:
 *
 *  - a SQLite CA with issued and revoked certificates and full and delta
 *    CRLs moved onto PostgreSQL: the same certificates and status, serve
 *    answers OCSP "revoked" for the revoked one, the next CRL's number is
 *    above the old ones and openssl verifies it; keyward-ca.db out of the
 *    way; a URL with a password and config set database refused;
 *  - backupdb of the PostgreSQL CA restored into an empty PostgreSQL
 *    database (another CA directory on the same key) gives the same
 *    status and list, and again over its own rows;
 *  - a restore into, and a move onto, a database holding another CA's
 *    records refused, saying why, nothing changed there or here;
 *  - moved back onto SQLite: the same, and CRL numbers still rising;
 *  - ACME's and CMP's records travel both ways (and in backupdb/restoredb):
 *    a CMP secret and EAB keys made on SQLite, and an ACME account bound to
 *    one of them; on PostgreSQL and back on SQLite, serve takes openssl cmp
 *    -cmd ir with the old secret and a new account bound to an old unused
 *    EAB key, refuses the used one, and the secret and keys are sealed only;
 *    EAB keys an older keyward-ca kept in plain are refused, never copied.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca_helpers.h"
#include "harness.h"
#include "serve_helpers.h"

static struct kwt_server server;
static char work[300], ca_dir[400], pin[400], url_a[300], url_b[300], url_other[300];
static const char *state_before; /* list --json of the SQLite CA before the move */
static char status_before[600];	 /* its status figures */
static long long last_crl_before;
static char cmp_secret[64];		    /* made on the SQLite CA */
static const char *eab_kid[3], *eab_key[3]; /* 0 bound on SQLite, 1 used on PostgreSQL, 2 back on SQLite */

static int setup(void **state)
{
	const char *pg = getenv("KW_TEST_PG_URL");

	(void)state;
	if (!pg || !*pg) {
		fprintf(stderr, "test_ca_pg_move: KW_TEST_PG_URL is not set: run it under tests/pg/with-pg\n");
		return -1;
	}
	serve_test_dirs(&server, "pgmove", work, ca_dir, pin);
	sh_ok("for d in kwmove_a kwmove_b kwmove_other; do psql '%s/keyward' -Atqc \"DROP DATABASE IF EXISTS $d\" "
	      "-c \"CREATE DATABASE $d\" || exit 1; done",
	      pg);
	snprintf(url_a, sizeof url_a, "%s/kwmove_a", pg);
	snprintf(url_b, sizeof url_b, "%s/kwmove_b", pg);
	snprintf(url_other, sizeof url_other, "%s/kwmove_other", pg);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	serve_test_ca_end(&server);
	return 0;
}

/* status --json's figures of the CA in dir, as one line (kept). */
static const char *figures(const char *dir)
{
	json_t *st = json_loads(ca_ok(dir, "status --json"), 0, NULL);
	const char *out;

	assert_non_null(st);
	out = keepf("issued=%s revoked=%s expired=%s pending=%s last_crl=%s last_delta_crl=%s key=%s",
		    field(st, "issued"), field(st, "revoked"), field(st, "expired"), field(st, "pending"),
		    field(st, "last_crl"), field(st, "last_delta_crl"), field(st, "key_sha256"));
	json_decref(st);
	return out;
}

static void issue_web(const char *name)
{
	make_csr(name, EC256, keepf("/CN=%s.example", name), keepf("-addext subjectAltName=DNS:%s.example", name));
	ca_ok(ca_dir, "submit %s.csr --template WebServer --out %s.pem", name, name);
}

/* A full CRL published now: its number, checked above floor and verified by openssl. */
static long long new_crl_above(const char *dir, long long floor, const char *pem)
{
	const char *text;
	long long n;

	ca_ok(dir, "crl");
	text = crl_check(keepf("%s/publish/Move-CA.crl", dir), pem);
	n = (long long)crl_number(text, "CRL Number");
	if (n <= floor)
		fail_full("the CRL published after the move has number %lld, not above %lld:\n%s", n, floor, text);
	return n;
}

/* The CMP secret and EAB keys (made before the move) kept in dir's database sealed only. */
static void expect_enroll_sealed(const char *dir)
{
	expect_not_stored(dir, "CMP secret of WebServer", cmp_secret, strlen(cmp_secret));
	for (int i = 0; i < 3; i++)
		expect_b64u_not_stored(dir, keepf("EAB key %s", eab_kid[i]), eab_key[i]);
}

/* openssl cmp -cmd ir with the secret made on SQLite, at serve on port: the certificate verifies. */
static void expect_cmp_ir(unsigned short port, const char *name, const char *log)
{
	const char *out;

	if (sh(&out,
	       "openssl cmp -server 127.0.0.1:%u -path /.well-known/cmp/p/WebServer -trusted ca.pem "
	       "-unprotected_errors -msg_timeout 20 -total_timeout 60 -cmd ir -ref WebServer -secret pass:%s "
	       "-newkey cmp.key -subject /CN=%s.example -sans %s.example -certout %s.pem 2>&1",
	       port, cmp_secret, name, name, name))
		fail_full("openssl cmp ir with the secret made before the move failed:\n%s\nserve's log:\n%s", out,
			  file(log));
	expect_verifies("ca.pem", NULL, keepf("%s.pem", name));
}

/* acme_jws.py eab with EAB key i at serve on port: its output. */
static const char *eab_account(unsigned short port, int i)
{
	const char *out;

	sh(&out, "/usr/bin/python3 '%s/acme_jws.py' eab http://127.0.0.1:%u/acme/WebServer/directory '%s' '%s' 2>&1",
	   SOURCE_DIR, port, eab_kid[i], eab_key[i]);
	return out;
}

/* ACME and CMP on the CA after a move: the old secret, an unused old EAB key taken, the used one refused. */
static void expect_enroll_works(unsigned short port, int unused, const char *name)
{
	const char *out;

	expect_cmp_ir(port, name, "serve.log");
	out = eab_account(port, unused);
	if (!strstr(out, "eab-account 201 -\n"))
		fail_full("a new account bound to EAB key %s made before the move:\n%s\nserve's log:\n%s",
			  eab_kid[unused], out, file("serve.log"));
	/* the key bound on SQLite is still bound: its account came along */
	out = eab_account(port, 0);
	expect_has("the EAB key bound before the move", out, "eab-account 403 ");
	expect_has("the EAB key bound before the move", out, "is not an unused EAB key");
}

/* A SQLite CA with history, moved onto PostgreSQL. */
static void test_move_to_pg(void **state)
{
	const char *out, *conf;
	unsigned short port;
	pid_t pid;

	(void)state;
	ca_ok(ca_dir, "setup --name 'Move CA' --key-type EC-P256 --server-name ca.test --module '%s' --pin-file '%s'",
	      KEYWARD_PKCS11_PATH, pin);
	ca_ok(ca_dir, "ca.cert ca.pem");
	issue_web("good");
	issue_web("rev");
	ca_ok(ca_dir, "crl");
	ca_ok(ca_dir, "revoke %s --reason keyCompromise", cert_serial("rev.pem"));
	ca_ok(ca_dir, "crl --delta");
	ca_ok(ca_dir, "crl");
	/* ACME and CMP on SQLite: a CMP secret, three EAB keys, an account bound to the first (and serve's OCSP signer)
	 */
	out = ca_ok(ca_dir, "cmp-secret WebServer --quiet");
	assert_true(strcspn(out, "\n") >= 20 && strcspn(out, "\n") < sizeof cmp_secret);
	snprintf(cmp_secret, sizeof cmp_secret, "%.*s", (int)strcspn(out, "\n"), out);
	for (int i = 0; i < 3; i++) {
		out = ca_ok(ca_dir, "acme-eab WebServer");
		eab_kid[i] = keepf("%s", word_after(out, "kid"));
		eab_key[i] = keepf("%s", word_after(out, "hmac_key"));
	}
	kwt_write_file(keepf("%s/acme.conf", ca_dir), "[acme]\ntemplates = WebServer\neab_templates = WebServer\n");
	sh_ok("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out cmp.key 2>/dev/null");
	pid = serve_test_start(ca_dir, "[serve]\n", &port);
	out = eab_account(port, 0);
	serve_stop(pid);
	expect_has("an EAB-bound account on SQLite", out, "eab-account 201 -\n");
	state_before = ca_state(ca_dir);
	snprintf(status_before, sizeof status_before, "%s", figures(ca_dir));
	last_crl_before = 3;
	expect_has("status", status_before, "issued=2 revoked=1 expired=0 pending=0 last_crl=3 last_delta_crl=2");

	/* refused: a password in the URL (never repeated), and config set database, which would not move anything */
	out = ca_refused(ca_dir, 2, "database move 'postgresql://keyward:hunter2@127.0.0.1:1/x'");
	expect_has(last_cmd, out, ".pgpass");
	expect_lacks(last_cmd, out, "hunter2");
	out = ca_refused(ca_dir, 2, "config set database '%s'", url_a);
	expect_has(last_cmd, out, "database move");
	out = ca_refused(ca_dir, 2, "database move sqlite");
	expect_has(last_cmd, out, "already");

	out = ca_ok(ca_dir, "database move '%s'", url_a);
	expect_has(last_cmd, out, "verified: 3 certificates (2 issued, 1 revoked, 0 expired), 0 pending; last CRL 3");
	expect_has(last_cmd, out, "the next CRL number is 4");
	conf = file(keepf("%s/ca.conf", ca_dir));
	expect_has("ca.conf", conf, keepf("database = %s\n", url_a));
	assert_false(exists(keepf("%s/keyward-ca.db", ca_dir)));
	sh_ok("ls '%s'/keyward-ca.db.moved-* '%s'/database-move-*/manifest.json", ca_dir, ca_dir);
	/* the rows are in PostgreSQL, and the CA reads them */
	out = sh_ok("psql '%s' -Atqc 'SELECT COUNT(*) FROM certs'", url_a);
	expect_has(last_cmd, out, "3\n");
	expect_unchanged("list after the move onto PostgreSQL", state_before, ca_state(ca_dir));
	expect_has("status", figures(ca_dir), status_before);
	out = ca_ok(ca_dir, "audit --json");
	expect_has(last_cmd, out, "database moved from keyward-ca.db to");

	/* serve on the PostgreSQL CA: the revoked one revoked, the good one good */
	pid = serve_test_start(ca_dir, "[serve]\n", &port);
	out = serve_ocsp_until(port, "-cert good.pem -cert rev.pem -no_nonce", "rev.pem: revoked", 3);
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "good.pem: good");
	expect_has(last_cmd, out, "rev.pem: revoked");
	expect_has(last_cmd, out, "Reason: keyCompromise");
	/* ACME's and CMP's records came along, sealed as they were */
	expect_enroll_works(port, 1, "cmp-on-pg");
	serve_stop(pid);
	out = sh_ok("psql '%s' -Atqc 'SELECT id, eab_kid FROM acme_accounts ORDER BY id' "
		    "-c 'SELECT template, length(iv) FROM cmp_secrets' -c 'SELECT COUNT(*) FROM acme_eab'",
		    url_a);
	expect_has(last_cmd, out, keepf("1|%s\n2|%s\nWebServer|12\n3\n", eab_kid[0], eab_kid[1]));
	expect_enroll_sealed(ca_dir);
	/* serve published its own CRL at start: the number continues above the old ones either way */
	last_crl_before = new_crl_above(ca_dir, last_crl_before, "after-move.pem");
	snprintf(status_before, sizeof status_before, "%s", figures(ca_dir));
	state_before = ca_state(ca_dir);
}

/* backupdb of the PostgreSQL CA, restoredb into an empty PostgreSQL database and over its own rows. */
static void test_backup_restore_pg(void **state)
{
	const char *out;

	(void)state;
	ca_ok(ca_dir, "backupdb bk");
	/* another directory on the same key (a second host), its database empty: no tables at all */
	sh_ok("mkdir ca3 && chmod 700 ca3 && cp '%s/ca.conf' '%s/ca.crt' ca3/ && "
	      "sed -i 's|^database = .*|database = %s|' ca3/ca.conf",
	      ca_dir, ca_dir, url_b);
	out = ca_ok("ca3", "restoredb bk");
	expect_has(last_cmd, out, keepf("the next CRL number is %lld", last_crl_before + 1));
	expect_has("status of the restored CA", figures("ca3"), figures(ca_dir));
	expect_unchanged("list of the restored CA", state_before, ca_state("ca3"));
	/* the sequences are past the restored ids: a new certificate and audit record go in */
	out = sh_ok("psql '%s' -Atqc \"SELECT (SELECT MAX(id) FROM certs) < nextval(pg_get_serial_sequence('certs', "
		    "'id')), (SELECT MAX(id) FROM audit) < nextval(pg_get_serial_sequence('audit', 'id'))\"",
		    url_b);
	expect_has(last_cmd, out, "t|t\n");
	/* ACME's and CMP's records with them, ACME's sequences past their ids too */
	out = sh_ok("psql '%s' -Atqc \"SELECT (SELECT string_agg(eab_kid, ',' ORDER BY id) FROM acme_accounts),"
		    " (SELECT COUNT(*) FROM acme_eab WHERE account > 0), (SELECT COUNT(*) FROM cmp_secrets),"
		    " (SELECT MAX(id) FROM acme_accounts) < nextval(pg_get_serial_sequence('acme_accounts', 'id'))\"",
		    url_b);
	expect_has(last_cmd, out, keepf("%s,%s|2|1|t\n", eab_kid[0], eab_kid[1]));
	/* again, over its own rows now: the rows replaced kept as a backup file */
	out = ca_ok("ca3", "restoredb bk");
	sh_ok("ls ca3/keyward-ca.db.replaced-*");
	expect_has("status restored twice", figures("ca3"), figures(ca_dir));
	new_crl_above("ca3", last_crl_before, "ca3.pem");
}

/* A database holding another CA's records: a restore into it and a move onto it refused; nothing changed. */
static void test_other_ca_refused(void **state)
{
	const char *out, *other_before, *rows_before;

	(void)state;
	ca_ok("other", "setup --name 'Other CA' --key-type EC-P256 --module '%s' --pin-file '%s' --database '%s'",
	      KEYWARD_PKCS11_PATH, pin, url_other);
	other_before = figures("other");
	rows_before = sh_ok("psql '%s' -Atqc 'SELECT (SELECT COUNT(*) FROM meta), (SELECT COUNT(*) FROM audit), "
			    "(SELECT generation FROM ca_writer)'",
			    url_other);
	sh_ok("mkdir ca4 && chmod 700 ca4 && cp '%s/ca.conf' '%s/ca.crt' ca4/ && "
	      "sed -i 's|^database = .*|database = %s|' ca4/ca.conf",
	      ca_dir, ca_dir, url_other);
	out = ca_refused("ca4", 1, "restoredb bk");
	expect_has(last_cmd, out, "another CA (\"Other CA\"");
	expect_has(last_cmd, out, "nothing changed");
	out = ca_refused("ca4", 1, "restoredb bk --force");
	expect_has(last_cmd, out, "another CA");
	expect_has("the other CA", figures("other"), other_before);
	expect_has(last_cmd,
		   sh_ok("psql '%s' -Atqc 'SELECT (SELECT COUNT(*) FROM meta), (SELECT COUNT(*) FROM audit), "
			 "(SELECT generation FROM ca_writer)'",
			 url_other),
		   rows_before);
	/* a move onto it: refused the same way, and ca.conf still names the CA's own database */
	out = ca_refused(ca_dir, 1, "database move '%s'", url_other);
	expect_has(last_cmd, out, "another CA");
	expect_has("ca.conf", file(keepf("%s/ca.conf", ca_dir)), keepf("database = %s\n", url_a));
	expect_has("status after a refused move", figures(ca_dir), status_before);
	/* the backup the refused move took is gone with it: one move, one backup directory */
	out = sh_ok("ls -d '%s'/database-move-* | wc -l", ca_dir);
	expect_has(last_cmd, out, "1\n");
}

/* Back onto SQLite: the same, CRL numbers still rising. */
static void test_move_back(void **state)
{
	const char *out;

	(void)state;
	out = ca_ok(ca_dir, "database move sqlite");
	expect_has(last_cmd, out, "still holds the records");
	expect_lacks("ca.conf", file(keepf("%s/ca.conf", ca_dir)), "database =");
	assert_true(exists(keepf("%s/keyward-ca.db", ca_dir)));
	expect_has("status on SQLite again", figures(ca_dir), status_before);
	expect_unchanged("list on SQLite again", state_before, ca_state(ca_dir));
	new_crl_above(ca_dir, last_crl_before, "back.pem");
	/* ACME's and CMP's records came back: the secret, the keys bound and unbound */
	{
		unsigned short port;
		pid_t pid = serve_test_start(ca_dir, "[serve]\n", &port);

		expect_enroll_works(port, 2, "cmp-back");
		out = eab_account(port, 1);
		serve_stop(pid);
		expect_has("the EAB key bound on PostgreSQL", out, "is not an unused EAB key");
	}
	expect_enroll_sealed(ca_dir);
}

/* A SQLite database whose EAB keys an older keyward-ca kept in plain: not moved, the keys never copied. */
static void test_plain_eab_refused(void **state)
{
	const char *out;

	(void)state;
	sh_ok("mkdir ca5 && chmod 700 ca5 && cp '%s/ca.conf' '%s/ca.crt' '%s/keyward-ca.db' ca5/ && "
	      "sqlite3 ca5/keyward-ca.db \"DROP TABLE acme_eab; CREATE TABLE acme_eab (kid TEXT PRIMARY KEY, template "
	      "TEXT NOT NULL, key BLOB NOT NULL, created INTEGER NOT NULL, account INTEGER NOT NULL DEFAULT 0); "
	      "INSERT INTO acme_eab VALUES ('plainKid', 'WebServer', X'504C41494E4B4559', 1, 0)\"",
	      ca_dir, ca_dir, ca_dir);
	out = ca_refused("ca5", 1, "database move '%s'", url_b);
	expect_has(last_cmd, out, "its EAB keys are in plain");
	expect_has(last_cmd, out, "nothing changed");
	expect_lacks("ca.conf", file("ca5/ca.conf"), "database =");
	out = sh_ok("psql '%s' -Atqc \"SELECT COUNT(*) FROM acme_eab WHERE kid = 'plainKid'\"", url_b);
	expect_has(last_cmd, out, "0\n");
	expect_lacks("pg_dump", sh_ok("pg_dump --data-only '%s'", url_b), "PLAINKEY");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_move_to_pg),	  cmocka_unit_test(test_backup_restore_pg),
		cmocka_unit_test(test_other_ca_refused),  cmocka_unit_test(test_move_back),
		cmocka_unit_test(test_plain_eab_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
