/*
 * CMP enrollment in keyward-ca serve, driven by the client a Linux host
 * has, openssl cmp, on loopback against a CA on a development keywardd:
 *
 *  - ir with MAC protection (the template's secret from cmp-secret) gets a
 *    certificate that verifies; cr and p10cr likewise; a dozen clients at
 *    once, some signed, each get theirs;
 *  - kur, signed with that certificate, renews it (new key, same names);
 *    rr, signed with it, revokes it, and OCSP from the same serve then
 *    says revoked;
 *  - refused with CMP error messages, the reason in the client's output: a
 *    wrong secret, a reference naming another template, a SAN of a kind
 *    the template does not allow and one name validation rejects, a
 *    replayed ir (the same transactionID and nonce), kur and rr with a
 *    MAC, an rr for another certificate, a signed request for names its
 *    certificate does not have, a body that is no CMP message at all; and
 *    serve keeps answering; a certificate the client rejects in its
 *    certConf is revoked;
 *  - a template with manual approval answers "waiting"; the client polls
 *    until keyward-ca approve, then gets the certificate;
 *  - the secret is nowhere in plain text: not in the database (nor its
 *    WAL), not in config export; a new secret replaces the old one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca_helpers.h"
#include "harness.h"
#include "serve_helpers.h"

static struct kwt_server server;
static char work[300], ca_dir[400], pin[400];
static char secret[128], manual_secret[128];
static unsigned short port;
static pid_t serve_pid;

/* ---- openssl cmp ---- */

/* openssl cmp against the template's path with args: its exit code, *out its output. */
static int cmp(const char **out, const char *tmpl, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cmp(const char **out, const char *tmpl, const char *fmt, ...)
{
	char args[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	return sh(out,
		  "openssl cmp -server 127.0.0.1:%u -path /.well-known/cmp/p/%s -trusted ca.pem -unprotected_errors "
		  "-msg_timeout 20 -total_timeout 60 %s",
		  port, tmpl, args);
}

static const char *cmp_ok(const char *tmpl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *cmp_ok(const char *tmpl, const char *fmt, ...)
{
	char args[2048];
	const char *out;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	if ((rc = cmp(&out, tmpl, "%s", args)) != 0)
		fail_full("%s: exit %d:\n%s", last_cmd, rc, out);
	return out;
}

/* openssl cmp fails, and its output has needle (the server's reason). */
static void cmp_refused(const char *needle, const char *tmpl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void cmp_refused(const char *needle, const char *tmpl, const char *fmt, ...)
{
	char args[2048];
	const char *out;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	if (cmp(&out, tmpl, "%s", args) == 0)
		fail_full("%s: accepted, should have been refused:\n%s", last_cmd, out);
	expect_has(last_cmd, out, needle);
}

static void new_key(const char *name)
{
	sh_ok("openssl ecparam -genkey -name prime256v1 -noout -out %s.key", name);
}

/* An ir under WebServer with its secret: NAME.key, NAME.pem for CN=NAME.example and DNS:NAME.example. */
static void enroll(const char *name)
{
	new_key(name);
	cmp_ok("WebServer",
	       "-cmd ir -ref WebServer -secret pass:%s -newkey %s.key -subject /CN=%s.example -sans %s.example "
	       "-certout %s.pem",
	       secret, name, name, name, name);
	expect_verifies("ca.pem", NULL, keepf("%s.pem", name));
}

/* The secret cmp-secret printed (--quiet: it alone), into out. */
static void make_secret(const char *tmpl, char *out, size_t size)
{
	const char *text = ca_ok(ca_dir, "cmp-secret %s --quiet", tmpl);
	size_t n = strcspn(text, "\n");

	assert_true(n >= 20 && n < size);
	memcpy(out, text, n);
	out[n] = '\0';
}

/* ---- fixtures ---- */

static int setup(void **state)
{
	(void)state;
	serve_test_ca(&server, "cmp", "CMP Test CA", KEYWARD_PKCS11_PATH, work, ca_dir, pin);
	/* a template whose requests wait for approval */
	kwt_write_file("approved.tmpl", "validity_days = 30\nkey_usage = digitalSignature\nextended_key_usage = "
					"serverAuth\nkey_types = EC-P256\nsan = dns\napproval = manual\n");
	ca_ok(ca_dir, "templates add Approved --file approved.tmpl");
	make_secret("WebServer", secret, sizeof secret);
	make_secret("Approved", manual_secret, sizeof manual_secret);
	/* (serve inherits it) a waiting client is told to poll again after a second, not five */
	assert_int_equal(setenv("KEYWARD_CMP_POLL_AFTER", "1", 1), 0);
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

/* ---- enrollment ---- */

static void test_ir_kur_rr(void **state)
{
	const char *text, *serial, *old_serial, *out;

	(void)state;
	/* ir, MAC-protected: the certificate verifies, with the names asked for, recorded under WebServer */
	enroll("web1");
	text = cert_text("web1.pem");
	expect_has("web1.pem", text, "Subject: CN = web1.example");
	expect_has("web1.pem", text, "DNS:web1.example");
	expect_has("web1.pem", text, "TLS Web Server Authentication");
	old_serial = cert_serial("web1.pem");
	assert_true(listed(ca_dir, "issued", old_serial));

	/* kur, signed with it: a certificate for the new key, the same names */
	new_key("web1b");
	cmp_ok("WebServer", "-cmd kur -cert web1.pem -key web1.key -newkey web1b.key -certout web1b.pem");
	expect_verifies("ca.pem", NULL, "web1b.pem");
	text = cert_text("web1b.pem");
	expect_has("web1b.pem", text, "Subject: CN = web1.example");
	expect_has("web1b.pem", text, "DNS:web1.example");
	serial = cert_serial("web1b.pem");
	assert_string_not_equal(norm_serial(serial), norm_serial(old_serial));
	assert_string_equal(sh_ok("openssl x509 -in web1b.pem -noout -pubkey"),
			    sh_ok("openssl pkey -in web1b.key -pubout"));

	/* rr, signed with it: revoked, and serve's OCSP says so */
	out = cmp_ok("WebServer", "-cmd rr -cert web1b.pem -key web1b.key -oldcert web1b.pem");
	expect_has(last_cmd, out, "revocation accepted");
	assert_true(listed(ca_dir, "revoked", serial));
	for (int i = 0; i < 30; i++) {
		sh(&out, "openssl ocsp -url http://127.0.0.1:%u/ocsp -CAfile ca.pem -issuer ca.pem -cert web1b.pem",
		   port);
		if (strstr(out, "web1b.pem: revoked"))
			break;
		usleep(100 * 1000);
	}
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "web1b.pem: revoked");
	/* the old one is still good: a renewal does not revoke */
	out = sh_ok("openssl ocsp -url http://127.0.0.1:%u/ocsp -CAfile ca.pem -issuer ca.pem -cert web1.pem", port);
	expect_has(last_cmd, out, "web1.pem: good");
	/* a revoked certificate signs nothing more */
	cmp_refused("revoked", "WebServer", "-cmd kur -cert web1b.pem -key web1b.key -newkey web1b.key -certout x.pem");
}

static void test_cr_p10cr(void **state)
{
	(void)state;
	new_key("cr");
	cmp_ok("WebServer",
	       "-cmd cr -ref WebServer -secret pass:%s -newkey cr.key -subject /CN=cr.example -certout cr.pem", secret);
	expect_verifies("ca.pem", NULL, "cr.pem");
	new_key("p10");
	sh_ok("openssl req -new -key p10.key -subj /CN=p10.example -addext subjectAltName=DNS:p10.example -out "
	      "p10.csr");
	cmp_ok("WebServer", "-cmd p10cr -ref WebServer -secret pass:%s -csr p10.csr -certout p10.pem", secret);
	expect_verifies("ca.pem", NULL, "p10.pem");
	expect_has("p10.pem", cert_text("p10.pem"), "DNS:p10.example");
	assert_true(listed(ca_dir, "issued", cert_serial("p10.pem")));
}

/* Many clients at once (issued in groups), MAC and signed together: every one gets its certificate. */
static void test_concurrent(void **state)
{
	const char *out;

	(void)state;
	enroll("sig1");
	enroll("sig2");
	sh_ok("for i in $(seq 12); do openssl ecparam -genkey -name prime256v1 -noout -out c$i.key; done");
	out = sh_ok(
		"for i in $(seq 12); do "
		"openssl cmp -server 127.0.0.1:%u -path /.well-known/cmp/p/WebServer -trusted ca.pem "
		"-unprotected_errors -cmd ir -ref WebServer -secret pass:%s -newkey c$i.key -subject /CN=c$i.example "
		"-sans c$i.example -certout c$i.pem >c$i.out 2>&1 & done; "
		"for s in sig1 sig2; do openssl cmp -server 127.0.0.1:%u -path /.well-known/cmp/p/WebServer "
		"-trusted ca.pem -unprotected_errors -cmd kur -cert $s.pem -key $s.key -newkey $s.key "
		"-certout $s-new.pem >$s.out 2>&1 & done; wait; "
		"for i in $(seq 12); do openssl verify -CAfile ca.pem c$i.pem || cat c$i.out; done; "
		"for s in sig1 sig2; do openssl verify -CAfile ca.pem $s-new.pem || cat $s.out; done",
		port, secret, port);
	for (int i = 1; i <= 12; i++)
		expect_has(last_cmd, out, keepf("c%d.pem: OK", i));
	expect_has(last_cmd, out, "sig1-new.pem: OK");
	expect_has(last_cmd, out, "sig2-new.pem: OK");
	expect_has("c7.pem", cert_text("c7.pem"), "DNS:c7.example");
}

/* ---- refusals ---- */

static void test_refused(void **state)
{
	const char *before, *out;

	(void)state;
	enroll("holder");
	enroll("other");
	new_key("x");
	before = ca_state(ca_dir);
	/* a wrong secret: the MAC does not check */
	cmp_refused("wrong pbm value", "WebServer",
		    "-cmd ir -ref WebServer -secret pass:not-the-secret -newkey x.key -subject /CN=x.example -certout "
		    "x.pem");
	/* the right secret, but a reference naming another template than the path's */
	cmp_refused("not the template of its path", "WebServer",
		    "-cmd ir -ref Client -secret pass:%s -newkey x.key -subject /CN=x.example -certout x.pem", secret);
	/* WebServer's secret at another template's path */
	cmp_refused("not the template of its path", "Client",
		    "-cmd ir -ref WebServer -secret pass:%s -newkey x.key -subject /CN=x.example -certout x.pem",
		    secret);
	/* a template without a secret takes no MAC */
	cmp_refused("has no CMP secret", "Client",
		    "-cmd ir -ref Client -secret pass:%s -newkey x.key -subject /CN=x.example -certout x.pem", secret);
	/* SANs the template forbids: a kind it does not take, a name the rules reject */
	cmp_refused("does not allow subject alternative names of kind uri", "WebServer",
		    "-cmd ir -ref WebServer -secret pass:%s -newkey x.key -subject /CN=x.example "
		    "-sans 'x.example http://x.example/' -certout x.pem",
		    secret);
	cmp_refused("empty label", "WebServer",
		    "-cmd ir -ref WebServer -secret pass:%s -newkey x.key -subject /CN=x.example -sans 'bad..example' "
		    "-certout x.pem",
		    secret);
	/* kur and rr are the holder's: not with the template's MAC, not for another's certificate */
	cmp_refused("holder of the certificate", "WebServer",
		    "-cmd kur -ref WebServer -secret pass:%s -oldcert holder.pem -newkey x.key -certout x.pem", secret);
	cmp_refused("holder of the certificate", "WebServer",
		    "-cmd rr -ref WebServer -secret pass:%s -oldcert holder.pem", secret);
	cmp_refused("another certificate than the one it is signed with", "WebServer",
		    "-cmd rr -cert holder.pem -key holder.key -oldcert other.pem");
	/* signed with a certificate: only its own names */
	cmp_refused(
		"only for that certificate's names", "WebServer",
		"-cmd ir -cert holder.pem -key holder.key -newkey x.key -subject /CN=elsewhere.example -certout x.pem");
	/* a kur under another template than the certificate's */
	cmp_refused("not Client", "Client", "-cmd kur -cert holder.pem -key holder.key -newkey x.key -certout x.pem");
	expect_unchanged("refused requests", before, ca_state(ca_dir));

	/* a replay: the same ir (transactionID, nonce, MAC) sent again issues nothing */
	cmp_ok("WebServer",
	       "-cmd ir -ref WebServer -secret pass:%s -newkey x.key -subject /CN=replay.example -certout "
	       "replay.pem -reqout ir.der,certconf.der",
	       secret);
	before = ca_state(ca_dir);
	cmp_refused("replayed message is refused", "WebServer",
		    "-cmd ir -ref WebServer -secret pass:%s -reqin ir.der -newkey x.key -subject /CN=replay.example "
		    "-certout replay2.pem",
		    secret);
	/* the certConf of a transaction that ended */
	out = sh_ok("curl -s -o certconf.rsp -w '%%{http_code} %%{content_type}' --data-binary @certconf.der "
		    "-H 'Content-Type: application/pkixcmp' http://127.0.0.1:%u/.well-known/cmp/p/WebServer",
		    port);
	expect_has(last_cmd, out, "200 application/pkixcmp");
	expect_has("the answer to a stale certConf", sh_ok("openssl asn1parse -inform DER -in certconf.rsp"),
		   "unexpected pkibody");
	expect_unchanged("a replay", before, ca_state(ca_dir));

	/* a certificate the client rejects in its certConf (it does not chain to -out_trusted) is revoked */
	sh_ok("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout stranger.key "
	      "-subj /CN=stranger -out stranger.pem");
	cmp_refused("CMP client did not accept it", "WebServer",
		    "-cmd ir -ref WebServer -secret pass:%s -newkey x.key -subject /CN=unwanted.example "
		    "-out_trusted stranger.pem -certout unwanted.pem",
		    secret);
	out = ca_ok(ca_dir, "list --status revoked");
	expect_has("list --status revoked", out, "/CN=unwanted.example");
	expect_has("list --status revoked", line_with(out, "unwanted.example"), "cessationOfOperation");

	/* what is no CMP message at all gets a CMP error message, and serve goes on */
	sh_ok("head -c 2000 /dev/urandom > junk.bin");
	out = sh_ok("curl -s -o junk.rsp -w '%%{http_code} %%{content_type}' --data-binary @junk.bin "
		    "http://127.0.0.1:%u/.well-known/cmp/p/WebServer",
		    port);
	expect_has(last_cmd, out, "200 application/pkixcmp");
	out = sh_ok("openssl asn1parse -inform DER -in junk.rsp");
	expect_has("the answer to junk", out, "not a CMP message");
	/* GET, and a template that does not exist */
	assert_int_equal(http_status(port, "GET", "/.well-known/cmp/p/WebServer"), 405);
	out = sh_ok("curl -s -o /dev/null -w '%%{http_code}' --data-binary @ir.der "
		    "http://127.0.0.1:%u/.well-known/cmp/p/NoSuchTemplate",
		    port);
	expect_has(last_cmd, out, "404");
	assert_int_equal(http_status(port, "GET", "/health"), 200);
	enroll("after");
}

/* ---- approval ---- */

static void test_manual_approval(void **state)
{
	const char *out = NULL, *id;

	(void)state;
	new_key("m");
	/* the client polls in the background until the request is approved (its output line-buffered, to be read
	 * meanwhile) */
	sh_ok("(stdbuf -oL -eL openssl cmp -server 127.0.0.1:%u -path /.well-known/cmp/p/Approved -trusted ca.pem "
	      "-unprotected_errors "
	      "-total_timeout 100 -cmd ir -ref Approved -secret pass:%s -newkey m.key -subject /CN=m.example "
	      "-sans m.example -certout m.pem >poll.out 2>&1; echo $? >poll.rc) </dev/null >/dev/null 2>&1 &",
	      port, manual_secret);
	for (int i = 0; i < 100; i++) {
		out = ca_ok(ca_dir, "list --status pending");
		if (strstr(out, "Approved"))
			break;
		usleep(100 * 1000);
	}
	id = printed(out, "request");
	assert_non_null(id);
	/* it waits, and polls */
	for (int i = 0; i < 50 && !strstr(file("poll.out"), "received POLLREP"); i++)
		usleep(100 * 1000);
	expect_has("the client's output", file("poll.out"), "'waiting' PKIStatus");
	expect_has("the client's output", file("poll.out"), "received POLLREP");
	assert_false(exists("m.pem"));
	ca_ok(ca_dir, "approve %s", id);
	for (int i = 0; i < 100 && !exists("poll.rc"); i++)
		usleep(100 * 1000);
	assert_true(exists("poll.rc"));
	if (strcmp(file("poll.rc"), "0\n"))
		fail_full("openssl cmp polling: exit %s:\n%s", file("poll.rc"), file("poll.out"));
	expect_has("the client's output", file("poll.out"), "received ip/cp/kup after polling");
	expect_verifies("ca.pem", NULL, "m.pem");
	assert_true(listed(ca_dir, "issued", cert_serial("m.pem")));
}

/* ---- the secret at rest ---- */

static void test_secret_sealed(void **state)
{
	char old[128];
	const char *out;

	(void)state;
	/* neither the database (nor its WAL) nor config export holds a secret in plain text */
	expect_not_stored(ca_dir, "CMP secret of WebServer", secret, strlen(secret));
	expect_not_stored(ca_dir, "CMP secret of Approved", manual_secret, strlen(manual_secret));
	out = sh_ok("sqlite3 '%s/keyward-ca.db' 'SELECT template, length(sealed) FROM cmp_secrets ORDER BY template'",
		    ca_dir);
	expect_has(last_cmd, out, "Approved|48");
	expect_has(last_cmd, out, "WebServer|48");
	expect_has("audit", ca_ok(ca_dir, "audit"), "new CMP shared secret for template WebServer");
	/* a row moved to another template does not unseal there */
	sh_ok("sqlite3 '%s/keyward-ca.db' \"INSERT OR REPLACE INTO cmp_secrets SELECT 'Client', iv, sealed, created "
	      "FROM "
	      "cmp_secrets WHERE template = 'WebServer'\"",
	      ca_dir);
	new_key("y");
	cmp_refused("cannot be unsealed", "Client",
		    "-cmd ir -ref Client -secret pass:%s -newkey y.key -subject /CN=y.example -certout y.pem", secret);
	ca_ok(ca_dir, "cmp-secret Client --remove");
	/* a new secret replaces the old */
	snprintf(old, sizeof old, "%s", secret);
	make_secret("WebServer", secret, sizeof secret);
	assert_string_not_equal(old, secret);
	cmp_refused("wrong pbm value", "WebServer",
		    "-cmd ir -ref WebServer -secret pass:%s -newkey y.key -subject /CN=y.example -certout y.pem", old);
	enroll("rotated");
	/* unknown templates and bad usage */
	ca_refused(ca_dir, 1, "cmp-secret NoSuchTemplate");
	ca_refused(ca_dir, 2, "cmp-secret");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ir_kur_rr),	cmocka_unit_test(test_cr_p10cr),
		cmocka_unit_test(test_concurrent),	cmocka_unit_test(test_refused),
		cmocka_unit_test(test_manual_approval), cmocka_unit_test(test_secret_sealed),
	};

	return cmocka_run_group_tests_name("integration_ca_cmp", tests, setup, teardown);
}
