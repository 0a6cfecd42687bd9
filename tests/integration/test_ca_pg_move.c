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
 *  - moved back onto SQLite: the same, and CRL numbers still rising.
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
	state_before = ca_state(ca_dir);
	snprintf(status_before, sizeof status_before, "%s", figures(ca_dir));
	last_crl_before = 3;
	expect_has("status", status_before, "issued=1 revoked=1 expired=0 pending=0 last_crl=3 last_delta_crl=2");

	/* refused: a password in the URL (never repeated), and config set database, which would not move anything */
	out = ca_refused(ca_dir, 2, "database move 'postgresql://keyward:hunter2@127.0.0.1:1/x'");
	expect_has(last_cmd, out, ".pgpass");
	expect_lacks(last_cmd, out, "hunter2");
	out = ca_refused(ca_dir, 2, "config set database '%s'", url_a);
	expect_has(last_cmd, out, "database move");
	out = ca_refused(ca_dir, 2, "database move sqlite");
	expect_has(last_cmd, out, "already");

	out = ca_ok(ca_dir, "database move '%s'", url_a);
	expect_has(last_cmd, out, "verified: 2 certificates (1 issued, 1 revoked, 0 expired), 0 pending; last CRL 3");
	expect_has(last_cmd, out, "the next CRL number is 4");
	conf = file(keepf("%s/ca.conf", ca_dir));
	expect_has("ca.conf", conf, keepf("database = %s\n", url_a));
	assert_false(exists(keepf("%s/keyward-ca.db", ca_dir)));
	sh_ok("ls '%s'/keyward-ca.db.moved-* '%s'/database-move-*/manifest.json", ca_dir, ca_dir);
	/* the rows are in PostgreSQL, and the CA reads them */
	out = sh_ok("psql '%s' -Atqc 'SELECT COUNT(*) FROM certs'", url_a);
	expect_has(last_cmd, out, "2\n");
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
	serve_stop(pid);
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
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_move_to_pg),
		cmocka_unit_test(test_backup_restore_pg),
		cmocka_unit_test(test_other_ca_refused),
		cmocka_unit_test(test_move_back),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
