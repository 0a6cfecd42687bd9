/*
 * keyward-ca, the certificate authority whose key lives in an HSM, run as
 * a process the way an administrator runs it (keyward-ca(8) is the
 * contract), its certificates and CRLs checked by OpenSSL and GnuTLS's
 * certtool rather than by reading its database:
 *
 *  - one suite, run on keyward (a development keywardd through
 *    keyward-pkcs11.so) and on SoftHSM2 (a token made here): a root CA
 *    (self-signed, key on the token, refused second setup), a certificate
 *    from every built-in template (extensions, URLs, serials; nothing of
 *    the request's own extensions), a subordinate CA installed and issuing,
 *    and revocation with full and delta CRLs;
 *  - on keyward only: a CA on a key made beforehand with ksputil, bad input
 *    refused with the database unchanged, manual approval and templates
 *    added from files, batch submission, a burst of concurrent submits
 *    and a batch killed with SIGKILL, and config (audited, checked, and
 *    followed when ksputil chkeysowner moves the key).
 *
 * Each test works in a directory of its own under the server's; the steps
 * of the suite build on one another (root, then templates, subordinate,
 * revocation), the other tests stand alone. Where keyward-ca(8) leaves a
 * point open, the test asserts what a PKI administrator expects, and says
 * so there.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "ca_helpers.h"
#include "harness.h"

/* pkcs11-tool on keyward-pkcs11.so; see test_pkcs11_clients.c for the sanitizer environments */
#ifndef KWT_P11_ENV_READ
#define KWT_P11_ENV_READ ""
#endif
#define P11TOOL_READ KWT_P11_ENV_READ "pkcs11-tool --module '" KEYWARD_PKCS11_PATH "' "

/* keyward-ca's caps (src/ca/ca.h, keyward-ca(8)) */
#define CA_SANS_MAX_TEST 100

static struct kwt_server server;
static struct backend keyward_hsm = {.module = KEYWARD_PKCS11_PATH};
static struct backend softhsm = {.module = SOFTHSM_MODULE, .token = "ca"};

/* ---- reading what openssl prints ---- */

/* A serial (hex) as openssl x509 -text prints it: lower case, a colon between bytes (kept). */
static const char *colon_serial(const char *hex)
{
	char buf[200] = "";
	size_t n = strlen(hex);

	assert_true(n % 2 == 0 && n * 3 / 2 < sizeof buf);
	for (size_t i = 0; i < n; i += 2)
		snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%c%c", i ? ":" : "", hex[i] | 0x20,
			 hex[i + 1] | 0x20);
	return keepf("%s", buf);
}

/* ---- lists of names: key usages and extended key usages ---- */

struct name_map {
	const char *conf;    /* as keyward-ca's templates write it */
	const char *openssl; /* as openssl x509 -text prints it */
};

static const struct name_map key_usages[] = {
	{"digitalSignature", "Digital Signature"},
	{"nonRepudiation", "Non Repudiation"},
	{"contentCommitment", "Non Repudiation"},
	{"keyEncipherment", "Key Encipherment"},
	{"dataEncipherment", "Data Encipherment"},
	{"keyAgreement", "Key Agreement"},
	{"keyCertSign", "Certificate Sign"},
	{"cRLSign", "CRL Sign"},
	{"encipherOnly", "Encipher Only"},
	{"decipherOnly", "Decipher Only"},
	{NULL, NULL},
};

static const struct name_map ext_key_usages[] = {
	{"serverAuth", "TLS Web Server Authentication"},
	{"clientAuth", "TLS Web Client Authentication"},
	{"codeSigning", "Code Signing"},
	{"emailProtection", "E-mail Protection"},
	{"timeStamping", "Time Stamping"},
	{"OCSPSigning", "OCSP Signing"},
	{NULL, NULL},
};

/* The items of a comma-separated list, trimmed. */
#define MAX_ITEMS 16
struct items {
	size_t n;
	char v[MAX_ITEMS][64];
};

static void split(const char *list, struct items *it)
{
	it->n = 0;
	for (const char *p = list; *p;) {
		size_t n;

		p += strspn(p, " ,");
		n = strcspn(p, ",");
		while (n && p[n - 1] == ' ')
			n--;
		if (n) {
			assert_true(it->n < MAX_ITEMS && n < sizeof it->v[0]);
			snprintf(it->v[it->n++], sizeof it->v[0], "%.*s", (int)n, p);
		}
		p += n;
		p += strspn(p, " ");
	}
}

static bool has_item(const struct items *it, const char *item)
{
	for (size_t i = 0; i < it->n; i++)
		if (strcmp(it->v[i], item) == 0)
			return true;
	return false;
}

/* A template's list (keyUsage names) as openssl prints it (kept), without the items in drop (may be NULL). */
static const char *openssl_names(const char *conf_list, const struct name_map *map, const char *drop)
{
	struct items in, out = {0}, dropped = {0};
	const char *text = "";

	split(conf_list, &in);
	if (drop)
		split(drop, &dropped);
	for (size_t i = 0; i < in.n; i++) {
		const struct name_map *m = map;

		if (has_item(&dropped, in.v[i]))
			continue;
		while (m->conf && strcmp(m->conf, in.v[i]) != 0)
			m++;
		if (!m->conf)
			fail_full("the template names \"%s\", which this test does not know", in.v[i]);
		if (!has_item(&out, m->openssl)) {
			snprintf(out.v[out.n++], sizeof out.v[0], "%s", m->openssl);
			text = keepf("%s%s%s", text, *text ? ", " : "", m->openssl);
		}
	}
	return text;
}

/* The comma-separated lists got and want hold the same items, in any order. */
static void expect_same_items(const char *what, const char *got, const char *want)
{
	struct items g, w;

	split(got, &g);
	split(want, &w);
	for (size_t i = 0; i < w.n; i++)
		if (!has_item(&g, w.v[i]))
			fail_full("%s: \"%s\" missing from \"%s\" (want \"%s\")", what, w.v[i], got, want);
	for (size_t i = 0; i < g.n; i++)
		if (!has_item(&w, g.v[i]))
			fail_full("%s: \"%s\" in \"%s\" (want \"%s\")", what, g.v[i], got, want);
}

/* ---- certificates ---- */

/* The certificate is valid for days days from about now. */
static void expect_validity(const char *pem, long days)
{
	const char *out;

	sh_ok("openssl x509 -noout -in '%s' -checkend %ld", pem, (days - 1) * 86400);
	if (sh(&out, "openssl x509 -noout -in '%s' -checkend %ld", pem, (days + 1) * 86400) == 0)
		fail_full("%s is valid for more than %ld days:\n%s", pem, days, cert_line(pem, "-dates"));
}

/*
 * What every certificate issued by the CA whose certificate is ca_pem and
 * name is ca_name carries: it verifies (under root, the root CA's
 * certificate, if ca_pem is a subordinate's), the authority key id is the
 * CA's subject key id, the CRL, CA-issuer and OCSP URLs on ca.test, a
 * serial of 64 bits or more, and the issuer is the CA's subject.
 */
static void expect_issued_by(const char *pem, const char *ca_pem, const char *root, const char *ca_name)
{
	const char *text = cert_text(pem), *ca_text = cert_text(ca_pem), *ski, *aki, *serial;
	const char *name = file_name(ca_name);

	expect_verifies(root ? root : ca_pem, root ? ca_pem : NULL, pem);
	ski = key_id(ca_text, "X509v3 Subject Key Identifier");
	aki = key_id(text, "X509v3 Authority Key Identifier");
	if (!ski || !aki)
		fail_full("%s or %s lacks the key identifier:\n%s\n%s", ca_pem, pem, ca_text, text);
	if (strcmp(aki, ski) != 0)
		fail_full("%s: authority key id %s, the CA's subject key id %s", pem, aki, ski);
	expect_has(pem, text, keepf("URI:http://ca.test/crl/%s.crl", name));
	expect_has(pem, text, keepf("CA Issuers - URI:http://ca.test/ca/%s.crt", name));
	expect_has(pem, text, "OCSP - URI:http://ca.test/ocsp");
	serial = cert_serial(pem);
	if (strlen(serial) < 16)
		fail_full("%s: serial %s has fewer than 64 bits", pem, serial);
	if (strcmp(cert_line(pem, "-issuer") + 7, cert_line(ca_pem, "-subject") + 8) != 0)
		fail_full("%s: %s, the CA's %s", pem, cert_line(pem, "-issuer"), cert_line(ca_pem, "-subject"));
}

/* ---- the CA's list --json ---- */

/* Whether list --json --status status of dir has the request id. */
static bool listed_request(const char *dir, const char *status, const char *id)
{
	json_t *root = list_json(dir, status), *e;
	const char *s;
	bool found = false;
	size_t i;

	json_array_foreach(entries(root), i, e)
	{
		if (((s = field(e, "request")) || (s = field(e, "id"))) && strcmp(s, id) == 0)
			found = true;
	}
	json_decref(root);
	return found;
}

/* ---- CRLs ---- */

/* The revocation date of serial's entry in a CRL's text, as openssl prints it (kept); "" if not listed. */
static const char *crl_date(const char *text, const char *serial)
{
	const char *p = strstr(text, keepf("Serial Number: %s\n", serial));

	if (!p || !(p = strstr(p, "Revocation Date: ")))
		return "";
	p += strlen("Revocation Date: ");
	return keepf("%.*s", (int)strcspn(p, "\n"), p);
}

/* The invalidityDate of serial's entry in a CRL's text (kept); "" if it has none. */
static const char *crl_invalidity(const char *text, const char *serial)
{
	const char *p = strstr(text, keepf("Serial Number: %s\n", serial)), *next, *d;

	if (!p || !(d = strstr(p, "Invalidity Date:")))
		return "";
	next = strstr(p + 1, "Serial Number: ");
	if (next && d > next)
		return "";
	d += strlen("Invalidity Date:");
	d += strspn(d, " \n");
	return keepf("%.*s", (int)strcspn(d, "\n"), d);
}

/* The time after key in text, as openssl prints times ("Nov 27 09:15:00 2026 GMT"). */
static time_t gmt(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	struct tm tm = {0};

	if (!p || !strptime(p + strlen(key), "%b %d %H:%M:%S %Y GMT", &tm))
		fail_full("no %s in:\n%s", key, text);
	return timegm(&tm);
}

/* The CRL's nextUpdate - lastUpdate, in hours. */
static double crl_hours(const char *der)
{
	const char *out = sh_ok("openssl crl -inform DER -in '%s' -noout -lastupdate -nextupdate", der);

	return difftime(gmt(out, "nextUpdate="), gmt(out, "lastUpdate=")) / 3600.0;
}

/* A number of hours from ca.conf in dir, or the man page's example value. */
static long conf_hours(const char *dir, const char *key, long example)
{
	const char *v = conf_value(file(keepf("%s/ca.conf", dir)), key);

	return v ? atol(v) : example;
}

/* ---- fixtures ---- */

static int setup(void **state)
{
	char path[400];

	(void)state;
	kwt_start_dev(&server);
	snprintf(path, sizeof path, "%s/machine-id", server.dir);
	kwt_write_file(path, "0123456789abcdef0123456789abcdef\n");
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", path, 1), 0);
	assert_int_equal(setenv("KEYWARD_CONF", server.conf, 1), 0);
	snprintf(keyward_hsm.pin_file, sizeof keyward_hsm.pin_file, "%s/pin", server.dir);
	{
		/* keywardd --dev writes its PIN 0600: keyward-ca refuses one others may read */
		struct stat st;

		assert_int_equal(stat(keyward_hsm.pin_file, &st), 0);
		if ((st.st_mode & 07777) != 0600)
			fail_full("keywardd --dev wrote %s with mode %04o, not 0600", keyward_hsm.pin_file,
				  (unsigned)(st.st_mode & 07777));
	}
	snprintf(keyward_hsm.work, sizeof keyward_hsm.work, "%s/keyward", server.dir);
	assert_int_equal(mkdir(keyward_hsm.work, 0700), 0);

	/* a SoftHSM2 token "ca" in the test's directory */
	snprintf(softhsm.work, sizeof softhsm.work, "%s/softhsm", server.dir);
	assert_int_equal(mkdir(softhsm.work, 0700), 0);
	softhsm_token(&softhsm, softhsm.work);
	forget_all();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(chdir("/"), 0);
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

static int test_done(void **state)
{
	(void)state;
	forget_all();
	return chdir("/");
}

/* ---- the suite: cases 1 to 4, on each backend ---- */

/*
 * Case 1: a root CA on the backend's token. ca.cert is a self-signed CA
 * certificate of the asked key type, hash and validity; keys lists its key;
 * a second setup in the same directory is refused and changes nothing,
 * not even the token.
 */
static void root_ca(const struct backend *b)
{
	const char *out, *text, *conf, *crt, *state, *keys;

	ca_ok("root",
	      "setup --name 'Test Root' --key-type EC-P384 --hash sha384 --validity 3650 --server-name ca.test %s",
	      hsm_opts(b));
	ca_ok("root", "ca.cert ca.pem");
	text = cert_text("ca.pem");
	expect_verifies("ca.pem", NULL, "ca.pem");
	if (strcmp(cert_line("ca.pem", "-subject"), "subject=CN=Test Root") != 0 ||
	    strcmp(cert_line("ca.pem", "-issuer"), "issuer=CN=Test Root") != 0)
		fail_full("ca.pem: %s, %s", cert_line("ca.pem", "-subject"), cert_line("ca.pem", "-issuer"));
	expect_has("ca.pem", text, "CA:TRUE");
	expect_has("ca.pem", ext_line(text, "X509v3 Key Usage"), "Certificate Sign");
	expect_has("ca.pem", ext_line(text, "X509v3 Key Usage"), "CRL Sign");
	if (!ext_line(text, "X509v3 Subject Key Identifier"))
		fail_full("ca.pem: no subject key identifier:\n%s", text);
	expect_has("ca.pem", text, "ASN1 OID: secp384r1");
	expect_has("ca.pem", text, "Signature Algorithm: ecdsa-with-SHA384");
	expect_validity("ca.pem", 3650);
	ca_ok("root", "ca.cert ca.der --der");
	sh_ok("openssl x509 -inform DER -in ca.der -out ca-from-der.pem");
	if (strcmp(file("ca-from-der.pem"), file("ca.pem")) != 0)
		fail_full("ca.cert --der is not the certificate ca.cert writes");
	if (strcmp(file("root/ca.crt"), file("ca.pem")) != 0)
		fail_full("root/ca.crt is not the root certificate alone:\n%s", file("root/ca.crt"));

	/* keys: the token, then the key with its type and size */
	keys = ca_ok("root", "keys");
	expect_has(last_cmd, keys, keepf("\"%s\"", b->token ? b->token : "keyward machine"));
	expect_has(last_cmd, line_with(keys, "ca-Test Root"), "EC");
	expect_has(last_cmd, line_with(keys, "ca-Test Root"), "384");

	/* a second setup: refused, nothing changed */
	conf = file("root/ca.conf");
	crt = file("root/ca.crt");
	state = ca_state("root");
	out = ca_refused("root", 1, "setup --name 'Other Root' --key-type EC-P256 --server-name ca.test %s",
			 hsm_opts(b));
	if (strcmp(conf, file("root/ca.conf")) != 0 || strcmp(crt, file("root/ca.crt")) != 0)
		fail_full("a refused second setup changed ca.conf or ca.crt (it said:\n%s)", out);
	expect_unchanged("a refused second setup", state, ca_state("root"));
	expect_unchanged("a refused second setup (keys)", keys, ca_ok("root", "keys"));
	expect_lacks("keys after a refused setup", keys, "ca-Other Root");

	/* another CA of the same name: its key's label is taken on the token, refused, nothing made */
	ca_refused("twin", 1, "setup --name 'Test Root' --key-type EC-P384 --server-name ca.test %s", hsm_opts(b));
	expect_unchanged("a setup of a key label the token holds (keys)", keys, ca_ok("root", "keys"));
	if (strcmp(sh_ok("ls -A twin 2>/dev/null || true"), "") != 0)
		fail_full("a refused setup left in twin/:\n%s", sh_ok("ls -lA twin"));
}

/* A certificate per built-in template: what the request asks and what the template says. */
struct tmpl_case {
	const char *tmpl;
	const char *name;   /* of the request and certificate files */
	const char *newkey; /* openssl req -newkey arguments */
	const char *subj;
	const char *san;      /* subjectAltName in the request, or NULL */
	const char *san_text; /* as openssl prints it in the certificate */
	const char *eku;      /* what the certificate must include, as openssl prints it */
	bool ca;
};

static const struct tmpl_case tmpl_cases[] = {
	{"WebServer", "web", EC256, "/CN=www.test", "DNS:www.test,IP:127.0.0.1", "DNS:www.test, IP Address:127.0.0.1",
	 "TLS Web Server Authentication", false},
	{"WebServer", "web-rsa", RSA2048, "/CN=www.test", "DNS:www.test", "DNS:www.test",
	 "TLS Web Server Authentication", false},
	{"Client", "client", RSA2048, "/CN=client.test", NULL, NULL, "TLS Web Client Authentication", false},
	{"User", "user", EC256, "/CN=Alice Example", "email:alice@example.test", "email:alice@example.test",
	 "TLS Web Client Authentication, E-mail Protection", false},
	{"SubCA", "subca", RSA2048, "/CN=Some Sub CA", NULL, NULL, NULL, true},
	{"OCSPSigning", "ocsp", EC256, "/CN=OCSP Responder", NULL, NULL, "OCSP Signing", false},
	{"CodeSigning", "code", "rsa:3072", "/CN=Code Signer", NULL, NULL, "Code Signing", false},
};

/*
 * The certificate the template made: subject and SANs of the request; key
 * usage (critical if the template says so; no encipherment for an EC key),
 * extended key usage, CA flag and path length, and validity of the
 * template, as templates show prints it; signed with the root's sha384.
 */
static void expect_template(const struct tmpl_case *t, const char *show)
{
	const char *pem = keepf("%s.pem", t->name), *text = cert_text(pem);
	const char *ku = conf_value(show, "key_usage"), *eku = conf_value(show, "extended_key_usage");
	const char *days = conf_value(show, "validity_days"), *got;
	bool ec = strncmp(t->newkey, "ec", 2) == 0;

	if (!ku || !days)
		fail_full("templates show %s: no key_usage or validity_days:\n%s", t->tmpl, show);
	if (strcmp(cert_line(pem, "-subject"), keepf("subject=%s", t->subj + 1)) != 0)
		fail_full("%s: %s, the request's was %s", pem, cert_line(pem, "-subject"), t->subj);
	if (t->san)
		expect_has(pem, ext_line(text, "X509v3 Subject Alternative Name"), t->san_text);
	got = ext_line(text, "X509v3 Key Usage");
	if (!got)
		fail_full("%s: no key usage:\n%s", pem, text);
	/* an EC key is never given keyEncipherment or dataEncipherment (keyward-ca(8); RFC 5480, section 3) */
	expect_same_items(keepf("%s: key usage (template: %s)", pem, ku), got,
			  openssl_names(ku, key_usages, ec ? "critical,keyEncipherment,dataEncipherment" : "critical"));
	if (strncmp(ku, "critical,", 9) == 0)
		expect_has(pem, text, "X509v3 Key Usage: critical\n");
	got = ext_line(text, "X509v3 Extended Key Usage");
	if (eku && *eku) {
		if (!got)
			fail_full("%s: no extended key usage, the template has %s:\n%s", pem, eku, text);
		expect_same_items(keepf("%s: extended key usage", pem), got, openssl_names(eku, ext_key_usages, NULL));
	} else if (got)
		fail_full("%s: extended key usage %s, the template has none", pem, got);
	if (t->eku)
		expect_same_items(keepf("%s: extended key usage of a %s certificate", pem, t->tmpl), got ? got : "",
				  t->eku);
	if (t->ca) {
		const char *path_len = conf_value(show, "path_len");

		expect_has(pem, ext_line(text, "X509v3 Basic Constraints"), "CA:TRUE");
		if (path_len && atoi(path_len) >= 0)
			expect_has(pem, ext_line(text, "X509v3 Basic Constraints"), keepf("pathlen:%s", path_len));
		expect_has(pem, ext_line(text, "X509v3 Key Usage"), "Certificate Sign");
	} else {
		expect_lacks(pem, text, "CA:TRUE");
	}
	expect_validity(pem, atol(days));
	expect_has(pem, text, "Signature Algorithm: ecdsa-with-SHA384");
}

/*
 * Case 2: a certificate from every built-in template, checked against the
 * template's rules; "subject = cn" certifies the CN alone; and a request's
 * own extensions never reach the certificate.
 */
static void templates(const struct backend *b)
{
	const char *out, *show, *text, *pem;

	(void)b;
	out = ca_ok("root", "templates list");
	for (size_t i = 0; i < sizeof tmpl_cases / sizeof *tmpl_cases; i++)
		expect_has(last_cmd, out, tmpl_cases[i].tmpl);
	show = ca_ok("root", "templates show WebServer");
	expect_has(last_cmd, conf_value(show, "extended_key_usage"), "serverAuth");
	expect_has(last_cmd, conf_value(show, "key_types"), "EC-P256");
	expect_has(last_cmd, conf_value(show, "san"), "dns");
	show = ca_ok("root", "templates show OCSPSigning");
	expect_has(last_cmd, conf_value(show, "ocsp_nocheck"), "true");

	for (size_t i = 0; i < sizeof tmpl_cases / sizeof *tmpl_cases; i++) {
		const struct tmpl_case *t = &tmpl_cases[i];

		make_csr(t->name, t->newkey, t->subj, t->san ? keepf("-addext 'subjectAltName=%s'", t->san) : "");
		issue_json("root", t->name, t->tmpl, i == 0);
		expect_issued_by(keepf("%s.pem", t->name), "ca.pem", NULL, "Test Root");
		expect_template(t, ca_ok("root", "templates show %s", t->tmpl));
	}
	expect_has("ocsp.pem", cert_text("ocsp.pem"), "OCSP No Check");
	expect_lacks("web.pem", cert_text("web.pem"), "OCSP No Check");

	/* "subject = cn" issues with the CN alone: nothing else the requester claims (keyward-ca(8)) */
	expect_has("templates show Client", conf_value(ca_ok("root", "templates show Client"), "subject"), "cn");
	make_csr("claims", EC256, "/CN=claims.test/O=Someone Else Inc./C=US", "");
	issue("root", "claims", "Client");
	if (strcmp(cert_line("claims.pem", "-subject"), "subject=CN=claims.test") != 0)
		fail_full("claims.pem (template Client, subject = cn): %s, from a request for "
			  "/CN=claims.test/O=Someone Else Inc./C=US",
			  cert_line("claims.pem", "-subject"));

	/* what the request asks beyond the template is not in the certificate */
	make_csr("greedy", EC256, "/CN=greedy.test",
		 "-addext subjectAltName=DNS:greedy.test -addext basicConstraints=critical,CA:TRUE"
		 " -addext keyUsage=critical,digitalSignature,keyCertSign,cRLSign"
		 " -addext extendedKeyUsage=serverAuth,codeSigning,OCSPSigning"
		 " -addext 1.3.6.1.4.1.55555.1=ASN1:UTF8String:from-the-request");
	text = sh_ok("openssl req -noout -text -in greedy.csr");
	expect_has("greedy.csr", text, "CA:TRUE");
	issue("root", "greedy", "WebServer");
	pem = "greedy.pem";
	expect_issued_by(pem, "ca.pem", NULL, "Test Root");
	text = cert_text(pem);
	expect_lacks(pem, text, "CA:TRUE");
	expect_lacks(pem, text, "Certificate Sign");
	expect_lacks(pem, text, "CRL Sign");
	expect_lacks(pem, text, "Code Signing");
	expect_lacks(pem, text, "OCSP Signing");
	expect_lacks(pem, text, "1.3.6.1.4.1.55555.1");
	expect_lacks(pem, text, "from-the-request");
	if (strcmp(ext_line(text, "X509v3 Extended Key Usage"), "TLS Web Server Authentication") != 0)
		fail_full("%s: extended key usage %s", pem, ext_line(text, "X509v3 Extended Key Usage"));
}

/*
 * Case 3: a subordinate CA. Its request is answered by the root (SubCA);
 * install-cert refuses a certificate for another key, one that is not a
 * CA's, and one without its root; until installed it cannot issue; then
 * it issues, and OpenSSL and certtool verify leaf, sub and root.
 */
static void subordinate(const struct backend *b)
{
	const char *out, *text, *state;

	out = ca_ok("issuing", "setup --subordinate --name 'Test Issuing' --key-type RSA-3072 --server-name ca.test %s",
		    hsm_opts(b));
	if (exists("issuing/ca.crt"))
		fail_full("setup --subordinate wrote issuing/ca.crt:\n%s", file("issuing/ca.crt"));
	text = sh_ok("openssl req -verify -noout -text -in issuing/ca.csr");
	expect_has("issuing/ca.csr", text, "Test Issuing");
	expect_has("issuing/ca.csr", text, "Public-Key: (3072 bit)");
	expect_has("issuing/ca.csr", text,
		   "self-signature verify OK"); /* openssl 3.0's req -verify exits 0 either way */

	/* it cannot issue yet */
	make_csr("early", EC256, "/CN=early.test", "-addext subjectAltName=DNS:early.test");
	state = ca_state("issuing");
	ca_refused("issuing", 1, "submit early.csr --template WebServer --out early.pem");
	expect_unchanged("a submit before install-cert", state, ca_state("issuing"));
	if (exists("early.pem"))
		fail_full("a subordinate CA without its certificate wrote early.pem");

	sh_ok("cp issuing/ca.csr sub-req.csr && cp issuing/ca.csr sub-client.csr");
	issue("root", "sub-req", "SubCA");
	expect_issued_by("sub-req.pem", "ca.pem", NULL, "Test Root");
	expect_has("sub-req.pem", cert_text("sub-req.pem"), "CA:TRUE");

	/* refused: a SubCA certificate for another key; a certificate that is no CA's; no root in the file */
	make_csr("other-sub", EC256, "/CN=Other Sub", "");
	issue("root", "other-sub", "SubCA");
	sh_ok("cat other-sub.pem ca.pem > other-chain.pem");
	out = ca_refused("issuing", 1, "install-cert other-chain.pem");
	expect_has(last_cmd, out, "public key");
	issue("root", "sub-client", "Client");
	sh_ok("cat sub-client.pem ca.pem > noca-chain.pem");
	ca_refused("issuing", 1, "install-cert noca-chain.pem");
	ca_refused("issuing", 1, "install-cert sub-req.pem");
	if (exists("issuing/ca.crt"))
		fail_full("a refused install-cert wrote issuing/ca.crt");
	expect_unchanged("refused install-certs", state, ca_state("issuing"));

	sh_ok("cat sub-req.pem ca.pem > sub-chain.pem");
	ca_ok("issuing", "install-cert sub-chain.pem");
	if (exists("issuing/ca.csr"))
		fail_full("install-cert answered issuing/ca.csr, which is still there");
	ca_ok("issuing", "ca.cert sub.pem");
	if (strcmp(file("sub.pem"), file("sub-req.pem")) != 0)
		fail_full("ca.cert of the subordinate is not the certificate installed");
	ca_ok("issuing", "ca.chain sub-ca-chain.pem");
	if (strcmp(file("sub-ca-chain.pem"), file("sub-chain.pem")) != 0)
		fail_full("ca.chain: not the subordinate's then the root's certificate:\n%s", file("sub-ca-chain.pem"));

	/* the subordinate issues; default hash sha256 */
	make_csr("leaf", EC256, "/CN=leaf.test", "-addext subjectAltName=DNS:leaf.test");
	issue("issuing", "leaf", "WebServer");
	expect_issued_by("leaf.pem", "sub.pem", "ca.pem", "Test Issuing");
	expect_has("leaf.pem", cert_text("leaf.pem"), "Signature Algorithm: sha256WithRSAEncryption");
	sh_ok("openssl verify -CAfile ca.pem -untrusted sub.pem leaf.pem");
	if (sh(&out, "openssl verify -CAfile sub.pem leaf.pem") == 0)
		fail_full("leaf.pem verifies without its root:\n%s", out);
	sh_ok("cat leaf.pem sub-ca-chain.pem > chain.pem");
	out = sh_ok("certtool --verify-chain --verify-profile medium --infile chain.pem");
	expect_has(last_cmd, out, "Chain verification output: Verified. The certificate is trusted.");
	expect_lacks(last_cmd, out, "Not verified");
}

/*
 * Case 4: revocation. A full CRL lists a keyCompromise with its reason and
 * carries a CRL number, an authority key id and a Freshest CRL pointer; a
 * delta CRL lists a hold made after it; OpenSSL refuses the revoked and
 * held certificates with them and accepts the others; unrevoke takes the
 * hold back (removeFromCRL in the next delta); a keyCompromise cannot be
 * taken back. CRL numbers strictly increase.
 */
static void revocation(const struct backend *b)
{
	const char *text, *out, *state, *bad, *held, *good, *reason, *zero = NULL, *backdated, *later, *not_before;
	char date[32], future[32];
	time_t when;
	unsigned long long base1, delta1, delta2, base2, base3, delta3;
	const char *full = keepf("root/publish/%s.crl", file_name("Test Root"));
	const char *delta = keepf("root/publish/%s+.crl", file_name("Test Root"));
	double hours;

	(void)b;
	/*
	 * SERIAL as submit printed it, as openssl x509 -serial prints it and as
	 * openssl x509 -text does (lower case, colons), for a serial whose first
	 * byte is below 0x10 (1 in 8), so that the leading zero counts too
	 */
	make_csr("zero", EC256, "/CN=zero.test", "-addext subjectAltName=DNS:zero.test");
	for (int i = 0; i < 100; i++) {
		zero = issue("root", "zero", "WebServer");
		if (cert_serial("zero.pem")[0] == '0')
			break;
	}
	if (cert_serial("zero.pem")[0] != '0')
		fail_full("100 certificates, none with a serial below 0x10...: the serials are not random");
	ca_ok("root", "view %s", zero);
	ca_ok("root", "revoke %s --reason certificateHold", cert_serial("zero.pem"));
	expect_has(last_cmd, ca_ok("root", "view %s", colon_serial(cert_serial("zero.pem"))), "status: revoked");
	ca_ok("root", "unrevoke %s", colon_serial(cert_serial("zero.pem")));
	if (!listed("root", "issued", zero))
		fail_full("%s is not issued again after unrevoke:\n%s", zero, ca_state("root"));

	make_csr("bad", EC256, "/CN=bad.test", "-addext subjectAltName=DNS:bad.test");
	make_csr("held", EC256, "/CN=held.test", "-addext subjectAltName=DNS:held.test");
	make_csr("good", EC256, "/CN=good.test", "-addext subjectAltName=DNS:good.test");
	make_csr("backdated", EC256, "/CN=backdated.test", "-addext subjectAltName=DNS:backdated.test");
	bad = issue("root", "bad", "WebServer");
	held = issue("root", "held", "WebServer");
	good = issue("root", "good", "WebServer");
	backdated = issue("root", "backdated", "WebServer");

	/* a full CRL with the keyCompromise */
	ca_ok("root", "revoke %s --reason keyCompromise", bad);
	if (!listed("root", "revoked", bad) || listed("root", "issued", bad))
		fail_full("list: %s not (only) revoked:\n%s", bad, ca_state("root"));
	ca_ok("root", "crl");
	text = crl_check(full, "base1.pem");
	reason = crl_reason(text, cert_serial("bad.pem"));
	if (!reason || strcmp(reason, "Key Compromise") != 0)
		fail_full("%s: %s listed with reason \"%s\":\n%s", full, bad, reason ? reason : "(not listed)", text);
	if (crl_reason(text, cert_serial("good.pem")) || crl_reason(text, cert_serial("held.pem")))
		fail_full("%s lists a certificate not revoked:\n%s", full, text);
	base1 = crl_number(text, "X509v3 CRL Number");
	expect_has(full, text, "X509v3 Freshest CRL");
	expect_has(full, text, keepf("URI:http://ca.test/crl/%s+.crl", file_name("Test Root")));
	expect_lacks(full, text, "Delta CRL Indicator");
	expect_has(full, text, "Signature Algorithm: ecdsa-with-SHA384");
	if (!key_id(text, "X509v3 Authority Key Identifier") ||
	    strcmp(key_id(text, "X509v3 Authority Key Identifier"),
		   key_id(cert_text("ca.pem"), "X509v3 Subject Key Identifier")) != 0)
		fail_full("%s: authority key id is not the CA's:\n%s", full, text);
	hours = crl_hours(full);
	if (hours != conf_hours("root", "crl_period_hours", 168) + conf_hours("root", "crl_overlap_hours", 12))
		fail_full("%s: nextUpdate is %.2f h after lastUpdate; ca.conf:\n%s", full, hours, file("root/ca.conf"));
	if (sh(&out, "openssl verify -crl_check -CAfile ca.pem -CRLfile base1.pem bad.pem") == 0)
		fail_full("%s verifies under the CRL that revokes it:\n%s", "bad.pem", out);
	expect_has(last_cmd, out, "certificate revoked");
	sh_ok("openssl verify -x509_strict -crl_check -CAfile ca.pem -CRLfile base1.pem good.pem");

	/* a delta with the hold made since */
	ca_ok("root", "revoke %s --reason certificateHold", held);
	ca_ok("root", "crl --delta");
	text = crl_check(delta, "delta1.pem");
	delta1 = crl_number(text, "X509v3 CRL Number");
	if (crl_number(text, "X509v3 Delta CRL Indicator") != base1 || delta1 <= base1)
		fail_full("%s: delta of CRL %llu, number %llu; the full CRL's number is %llu:\n%s", delta,
			  crl_number(text, "X509v3 Delta CRL Indicator"), delta1, base1, text);
	expect_has(delta, text, "critical");
	reason = crl_reason(text, cert_serial("held.pem"));
	if (!reason || strcmp(reason, "Certificate Hold") != 0)
		fail_full("%s: %s listed with reason \"%s\":\n%s", delta, held, reason ? reason : "(not listed)", text);
	hours = crl_hours(delta);
	if (hours != conf_hours("root", "delta_crl_period_hours", 24) + conf_hours("root", "crl_overlap_hours", 12))
		fail_full("%s: nextUpdate is %.2f h after lastUpdate; ca.conf:\n%s", delta, hours,
			  file("root/ca.conf"));
	sh_ok("openssl verify -crl_check_all -use_deltas -CAfile ca.pem -CRLfile base1.pem held.pem");
	if (sh(&out, "openssl verify -crl_check_all -use_deltas -CAfile ca.pem -CRLfile base1.pem -CRLfile delta1.pem"
		     " held.pem") == 0)
		fail_full("held.pem verifies under the delta CRL that holds it:\n%s", out);
	expect_has(last_cmd, out, "certificate revoked");
	sh_ok("openssl verify -crl_check_all -use_deltas -CAfile ca.pem -CRLfile base1.pem -CRLfile delta1.pem"
	      " good.pem");

	/* the hold taken back: the next delta no longer holds it */
	ca_ok("root", "unrevoke %s", held);
	if (!listed("root", "issued", held) || listed("root", "revoked", held))
		fail_full("list: %s not back to issued:\n%s", held, ca_state("root"));
	ca_ok("root", "crl --delta");
	text = crl_check(delta, "delta2.pem");
	delta2 = crl_number(text, "X509v3 CRL Number");
	if (delta2 <= delta1 || crl_number(text, "X509v3 Delta CRL Indicator") != base1)
		fail_full("%s: number %llu after %llu, delta of %llu:\n%s", delta, delta2, delta1,
			  crl_number(text, "X509v3 Delta CRL Indicator"), text);
	reason = crl_reason(text, cert_serial("held.pem"));
	if (reason && strcmp(reason, "Remove From CRL") != 0)
		fail_full("%s: the unrevoked %s listed with reason \"%s\"", delta, held, reason);
	sh_ok("openssl verify -crl_check_all -use_deltas -CAfile ca.pem -CRLfile base1.pem -CRLfile delta2.pem"
	      " held.pem");

	/* a full CRL: the keyCompromise only */
	ca_ok("root", "crl");
	text = crl_check(full, "base2.pem");
	base2 = crl_number(text, "X509v3 CRL Number");
	if (base2 <= delta2)
		fail_full("%s: number %llu after delta %llu", full, base2, delta2);
	if (!crl_reason(text, cert_serial("bad.pem")) || crl_reason(text, cert_serial("held.pem")))
		fail_full("%s: not just the keyCompromise:\n%s", full, text);

	/*
	 * the backdating below must reach before base3's thisUpdate, which has
	 * whole seconds: let base3 be made a second later than backdated.pem's
	 * notBefore (on a fast machine they fell in one second, and the test failed)
	 */
	not_before = cert_line("backdated.pem", "-startdate") + strlen("notBefore=");
	when = gmt(keepf("notBefore=%s", not_before), "notBefore=");
	while (time(NULL) <= when)
		usleep(50 * 1000);

	/* held in a full CRL, then taken back: the delta says removeFromCRL (RFC 5280, 5.3.1) */
	ca_ok("root", "revoke %s --reason certificateHold", held);
	ca_ok("root", "crl");
	text = crl_check(full, "base3.pem");
	base3 = crl_number(text, "X509v3 CRL Number");
	if (base3 <= base2 || strcmp(crl_reason(text, cert_serial("held.pem")) ?: "", "Certificate Hold") != 0)
		fail_full("%s: number %llu after %llu, or no hold of %s:\n%s", full, base3, base2, held, text);
	ca_ok("root", "unrevoke %s", held);
	ca_ok("root", "crl --delta");
	text = crl_check(delta, "delta3.pem");
	delta3 = crl_number(text, "X509v3 CRL Number");
	if (delta3 <= base3 || crl_number(text, "X509v3 Delta CRL Indicator") != base3)
		fail_full("%s: number %llu after %llu, delta of %llu:\n%s", delta, delta3, base3,
			  crl_number(text, "X509v3 Delta CRL Indicator"), text);
	reason = crl_reason(text, cert_serial("held.pem"));
	if (!reason || strcmp(reason, "Remove From CRL") != 0)
		fail_full("%s: the hold taken back since CRL %llu is listed as \"%s\":\n%s", delta, base3,
			  reason ? reason : "(not listed)", text);
	if (sh(&out, "openssl verify -crl_check_all -CAfile ca.pem -CRLfile base3.pem held.pem") == 0)
		fail_full("held.pem verifies under the full CRL that holds it:\n%s", out);
	sh_ok("openssl verify -crl_check_all -use_deltas -CAfile ca.pem -CRLfile base3.pem -CRLfile delta3.pem"
	      " held.pem");

	/*
	 * backdated (--date, not in the future) to before the last full CRL: the
	 * next delta lists it all the same, revoked now (RFC 5280 5.3.2: the
	 * revocation date is when the CA revoked it) with that date as its
	 * invalidityDate
	 */
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&when));
	if (gmt(sh_ok("openssl crl -in base3.pem -noout -lastupdate"), "lastUpdate=") <= when)
		fail_full("CRL %llu is not later than %s: the backdating would not reach before it", base3, date);
	state = ca_state("root");
	when = time(NULL) + 86400;
	strftime(future, sizeof future, "%Y-%m-%dT%H:%M:%SZ", gmtime(&when));
	ca_refused("root", 1, "revoke %s --reason keyCompromise --date %s", backdated, future);
	expect_unchanged("a revocation dated in the future", state, ca_state("root"));
	ca_ok("root", "revoke %s --reason keyCompromise --date %s", backdated, date);
	ca_ok("root", "crl --delta");
	text = crl_check(delta, "delta4.pem");
	if (crl_number(text, "X509v3 Delta CRL Indicator") != base3 ||
	    !crl_reason(text, cert_serial("backdated.pem")) ||
	    strcmp(crl_invalidity(text, cert_serial("backdated.pem")), not_before) != 0 ||
	    gmt(keepf("d=%s", crl_date(text, cert_serial("backdated.pem"))), "d=") <
		    gmt(sh_ok("openssl crl -in base3.pem -noout -lastupdate"), "lastUpdate="))
		fail_full("%s: not the revocation of %s made now, invalid since %s (%s), since CRL %llu:\n%s", delta,
			  backdated, date, not_before, base3, text);

	/* a hold made permanent with another reason, which is not taken back */
	make_csr("later", EC256, "/CN=later.test", "-addext subjectAltName=DNS:later.test");
	later = issue("root", "later", "WebServer");
	ca_ok("root", "revoke %s --reason certificateHold", later);
	ca_ok("root", "revoke %s --reason keyCompromise", later);
	expect_has(last_cmd, ca_ok("root", "view %s", later), "keyCompromise");
	ca_refused("root", 1, "unrevoke %s", later);
	ca_ok("root", "crl");
	text = crl_check(full, "base4.pem");
	if (!crl_reason(text, cert_serial("later.pem")) ||
	    strcmp(crl_reason(text, cert_serial("later.pem")), "Key Compromise") != 0)
		fail_full("%s: %s is not listed for Key Compromise:\n%s", full, later, text);

	/* a keyCompromise is not taken back */
	state = ca_state("root");
	ca_refused("root", 1, "unrevoke %s", bad);
	expect_unchanged("unrevoke of a keyCompromise", state, ca_state("root"));
	if (!listed("root", "revoked", bad))
		fail_full("%s is no longer revoked", bad);
	expect_has(last_cmd, ca_ok("root", "view %s", bad), "status: revoked");
	expect_has(last_cmd, ca_ok("root", "view %s", bad), "keyCompromise");
	expect_has(last_cmd, ca_ok("root", "view %s", held), "status: issued");
	expect_has(last_cmd, ca_ok("root", "view %s", good), "Subject: CN=good.test");

	/*
	 * A long CRL says how far it is on a terminal (standard error), and
	 * nothing with --quiet or off a terminal: 70,000 revocations put in
	 * with SQLite, as bench/ca does for its million.
	 */
	sh_ok("sqlite3 root/keyward-ca.db \"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 70000)"
	      " INSERT INTO certs (serial, subject, template, not_before, not_after, status, revoked_at, reason,"
	      " request_id, der) SELECT printf('7E%%014X', i), '/CN=bulk-' || i, 'WebServer', 0, 4102444800,"
	      " 'revoked', 1700000000 + i, 1, 0, x'00' FROM n\"");
	out = sh_ok("script -qec \"" KWT_CA_ENV "'%s' --dir root crl >crl.out\" /dev/null", ca_path());
	expect_has(last_cmd, out, "keyward-ca: CRL entries: 65536");
	expect_has(last_cmd, out, "keyward-ca: CRL entries: 700");
	expect_lacks(last_cmd, file("crl.out"), "CRL entries");
	out = sh_ok("script -qec \"" KWT_CA_ENV "'%s' --dir root crl --quiet >crl.out\" /dev/null", ca_path());
	expect_lacks(last_cmd, out, "CRL entries");
	out = ca_ok("root", "crl");
	expect_lacks(last_cmd, out, "CRL entries");
	/* 7E000000000 and five hex digits: no random serial of a real certificate starts so (2^-44) */
	out = sh_ok("openssl crl -inform DER -in '%s' -noout -text | grep -c 'Serial Number: 7E000000000' || true", full);
	if (strcmp(out, "70000\n") != 0)
		fail_full("%s lists %.*s of the 70,000 revocations", full, (int)strcspn(out, "\n"), out);
}

/* Cases 1 to 4 on one backend. */
static void ca_suite(const struct backend *b)
{
	enter(b, "suite");
	root_ca(b);
	templates(b);
	subordinate(b);
	revocation(b);
}

/* The suite on the backend of the state. */
static void test_suite(void **state)
{
	ca_suite(*state);
}

/* ---- keyward only ---- */

/*
 * Case 5: a CA on a key ksputil made in the machine's key space: setup
 * --existing-key certifies that key (the public key ksputil printed, and
 * the one pkcs11-tool reads from the token); --cert with that certificate
 * is taken, one with another key is refused leaving nothing behind; a key
 * that is not there is reported with the tokens searched. P-256: OpenSC
 * 0.23's pkcs11-tool cannot read a P-384 public key ("cannot create
 * EVP_PKEY", with SoftHSM2 too).
 */
static void test_existing_key(void **state)
{
	const struct backend *b = *state;
	const char *out, *report, *sha256;

	enter(b, "existing");
	out = sh_ok("'%s' createkey --name existing-ca-key --algorithm ECDSA --curve P-256 -m", KSPUTIL_PATH);
	expect_has(last_cmd, out, "Created key \"existing-ca-key\"");
	if (!(sha256 = conf_value(out, "Public key SHA-256")))
		fail_full("%s: no public key SHA-256:\n%s", last_cmd, out);
	ca_ok("ca", "setup --name 'Existing CA' --existing-key existing-ca-key --hash sha384 --server-name ca.test %s",
	      hsm_opts(b));
	ca_ok("ca", "ca.cert existing.pem");
	expect_verifies("existing.pem", NULL, "existing.pem");
	expect_has("existing.pem", cert_text("existing.pem"), "CA:TRUE");
	expect_has(last_cmd, ca_ok("ca", "keys"), "existing-ca-key");

	/* the certificate's key is the token's */
	if (sh(&out, P11TOOL_READ "--read-object --type pubkey --label existing-ca-key -o token-key.der") != 0)
		fail_full("%s: failed:\n%s", last_cmd, out);
	if (strstr(out, "keyward-pkcs11: ") || ((report = strstr(out, "AddressSanitizer")) &&
						(strstr(report, "keyward-pkcs11.so") || strstr(report, "src/pkcs11/"))))
		fail_full("%s: the module logged or is in a sanitizer report:\n%s", last_cmd, out);
	sh_ok("openssl pkey -pubin -inform DER -in token-key.der -out token-key.pem");
	sh_ok("openssl x509 -noout -pubkey -in existing.pem -out cert-key.pem");
	if (strcmp(file("token-key.pem"), file("cert-key.pem")) != 0)
		fail_full("the CA certificate's key is not the token's:\n%s\n%s", file("cert-key.pem"),
			  file("token-key.pem"));
	expect_has("the SHA-256 of the CA certificate's public key",
		   sh_ok("openssl pkey -pubin -in cert-key.pem -outform DER | sha256sum"), sha256);

	/* --cert: the key's certificate becomes the CA's; by URI */
	ca_ok("again",
	      "setup --name 'Existing CA' --existing-key 'pkcs11:token=keyward%%20machine;object=existing-ca-key'"
	      " --cert existing.pem --server-name ca.test %s",
	      hsm_opts(b));
	ca_ok("again", "ca.cert again.pem");
	if (strcmp(file("again.pem"), file("existing.pem")) != 0)
		fail_full("setup --cert: the CA certificate is not the one given:\n%s", file("again.pem"));
	make_csr("leaf", EC256, "/CN=leaf.test", "-addext subjectAltName=DNS:leaf.test");
	issue("again", "leaf", "WebServer");
	expect_issued_by("leaf.pem", "existing.pem", NULL, "Existing CA");

	/* --cert with another key's certificate: refused, nothing left */
	sh_ok("openssl req -x509 -newkey " EC256 " -noenc -keyout other.key -subj '/CN=Existing CA' -days 30"
	      " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out "
	      "other.pem");
	out = ca_refused("mismatch", 1, "setup --name 'Existing CA' --existing-key existing-ca-key --cert other.pem %s",
			 hsm_opts(b));
	expect_has(last_cmd, out, "public key");
	expect_has(last_cmd, out, "other.pem");
	if (strcmp(sh_ok("ls -A mismatch 2>/dev/null || true"), "") != 0)
		fail_full("a refused setup left in mismatch/:\n%s", sh_ok("ls -lA mismatch"));

	/* no such key: the tokens searched are named */
	out = ca_refused("missing", 1, "setup --name 'Missing CA' --existing-key nosuchkey %s", hsm_opts(b));
	expect_has(last_cmd, out, "nosuchkey");
	expect_has(last_cmd, out, "keyward machine");
	if (strcmp(sh_ok("ls -A missing 2>/dev/null || true"), "") != 0)
		fail_full("a refused setup left in missing/:\n%s", sh_ok("ls -lA missing"));
}

/*
 * Case 6: bad input, each refused with a clear message (exit 1, 2 for bad
 * usage) and the CA's lists the same before and after.
 */
static void test_bad_input(void **state)
{
	const struct backend *b = *state;
	const char *before, *out, *serial, *held;
	unsigned char *der;
	size_t len;

	enter(b, "input");
	ca_ok("ca", "setup --name 'Input CA' --key-type EC-P256 --server-name ca.test %s", hsm_opts(b));
	ca_ok("ca", "ca.cert ca.pem");
	/* 12359d5: --key-type EC-P256 made a P-384 key (it tested the wrong character of the type) */
	expect_has("ca.pem of an EC-P256 setup", cert_text("ca.pem"), "prime256v1");
	expect_lacks("ca.pem of an EC-P256 setup", cert_text("ca.pem"), "secp384r1");
	make_csr("ok", EC256, "/CN=ok.test", "-addext subjectAltName=DNS:ok.test");
	serial = issue("ca", "ok", "WebServer");
	before = ca_state("ca");

	/* not a request at all */
	kwt_write_file(keepf("%s/input/garbage.csr", b->work),
		       "-----BEGIN CERTIFICATE REQUEST-----\nnot base64 at all\n-----END CERTIFICATE REQUEST-----\n");
	out = ca_refused("ca", 1, "submit garbage.csr --template WebServer --out garbage.pem");
	expect_has(last_cmd, out, "garbage.csr");
	expect_unchanged("a malformed request", before, ca_state("ca"));

	/* a request whose signature does not verify: a byte flipped in its signature */
	make_csr("forged", EC256, "/CN=forged.test", "-addext subjectAltName=DNS:forged.test -outform DER");
	der = (unsigned char *)kwt_read_file(keepf("%s/input/forged.csr", b->work), &len);
	assert_non_null(der);
	assert_true(len > 100);
	der[len - 3] ^= 0x01; /* the signature is the request's last bytes */
	{
		FILE *f = fopen("forged-bad.der", "wb");

		assert_non_null(f);
		assert_int_equal(fwrite(der, 1, len, f), len);
		fclose(f);
	}
	free(der);
	sh_ok("(echo '-----BEGIN CERTIFICATE REQUEST-----'; openssl base64 -in forged-bad.der;"
	      " echo '-----END CERTIFICATE REQUEST-----') > forged.pem && openssl asn1parse -in forged.pem >/dev/null"
	      " && openssl req -verify -noout -in forged.pem 2>&1 | grep 'verify failure'");
	out = ca_refused("ca", 1, "submit forged.pem --template WebServer --out forged-cert.pem");
	expect_has(last_cmd, out, "signature");
	expect_unchanged("a request with a bad signature", before, ca_state("ca"));

	/* a key type the template does not take */
	make_csr("weak", "rsa:1024", "/CN=weak.test", "-addext subjectAltName=DNS:weak.test");
	out = ca_refused("ca", 1, "submit weak.csr --template WebServer --out weak.pem");
	expect_has(last_cmd, out, "1024");
	expect_has(last_cmd, out, "WebServer");
	expect_unchanged("a key type the template forbids", before, ca_state("ca"));

	/* a subject alternative name of a kind the template does not allow */
	make_csr("email", EC256, "/CN=mail.test", "-addext subjectAltName=DNS:mail.test,email:someone@mail.test");
	out = ca_refused("ca", 1, "submit email.csr --template WebServer --out email.pem");
	expect_has(last_cmd, out, "email");
	expect_unchanged("a subject alternative name the template does not allow", before, ca_state("ca"));

	/* no such template */
	out = ca_refused("ca", 1, "submit ok.csr --template NoSuchTemplate --out nosuch.pem");
	expect_has(last_cmd, out, "NoSuchTemplate");
	expect_unchanged("an unknown template", before, ca_state("ca"));

	/* 12359d5: a request naming nothing (no CN, no SAN) was issued by WebServer */
	make_csr("nameless", EC256, "/O=Nobody Inc./C=US", "");
	ca_refused("ca", 1, "submit nameless.csr --template WebServer --out nameless.pem");
	expect_unchanged("a request naming nothing", before, ca_state("ca"));

	/* 12359d5: an --out that cannot be written was found only after the certificate was issued */
	out = ca_refused("ca", 1, "submit ok.csr --template WebServer --out no-such-dir/ok-again.pem");
	expect_has(last_cmd, out, "no-such-dir/ok-again.pem");
	expect_unchanged("a submit whose --out cannot be written", before, ca_state("ca"));
	if (exists("garbage.pem") || exists("forged-cert.pem") || exists("weak.pem") || exists("email.pem") ||
	    exists("nosuch.pem") || exists("nameless.pem"))
		fail_full("a refused submit wrote a certificate:\n%s", sh_ok("ls -l"));

	/* revoking a serial the CA never issued, then one twice */
	out = ca_refused("ca", 1, "revoke 7777777777ABCDEF0123 --reason keyCompromise");
	expect_has(last_cmd, out, "7777777777ABCDEF0123");
	expect_unchanged("revoking an unknown serial", before, ca_state("ca"));
	out = ca_refused("ca", 2, "revoke %s --reason noSuchReason", serial);
	expect_has(last_cmd, out, "noSuchReason");
	expect_unchanged("revoking with an unknown reason", before, ca_state("ca"));
	ca_ok("ca", "revoke %s --reason superseded", serial);
	before = ca_state("ca");
	out = ca_refused("ca", 1, "revoke %s --reason keyCompromise", serial);
	expect_has(last_cmd, out, "revoked");
	expect_unchanged("revoking twice", before, ca_state("ca"));

	/* 12359d5: a certificate on hold may be revoked for good (RFC 5280), and the revocation's
	 * date is in the audit log */
	make_csr("onhold", EC256, "/CN=onhold.test", "-addext subjectAltName=DNS:onhold.test");
	held = issue("ca", "onhold", "WebServer");
	ca_ok("ca", "revoke %s --reason certificateHold", held);
	ca_ok("ca", "revoke %s --reason keyCompromise --date 2020-01-02T03:04:05Z", held);
	out = ca_ok("ca", "view %s", held);
	expect_has(last_cmd, out, "status: revoked");
	expect_has(last_cmd, out, "keyCompromise");
	out = ca_ok("ca", "audit");
	expect_has("keyward-ca audit", out, keepf("serial %s reason keyCompromise date 2020-01-02T03:04:05Z", held));
	before = ca_state("ca");

	/* command lines that cannot be right whatever the CA holds: usage errors, exit 2, each named */
	ca_refused("ca", 2, "no-such-command");
	expect_has(last_cmd, ca_refused("ca", 2, "submit ok.csr --out x.pem"), "--template");
	expect_has(last_cmd, ca_refused("ca", 2, "submit ok.csr ok.csr --template WebServer --out x.pem"), "--out-dir");
	expect_has(last_cmd, ca_refused("ca", 2, "list --status bogus"), "--status");
	expect_has(last_cmd, ca_refused("ca", 2, "revoke %s --reason keyCompromise --date yesterday", serial),
		   "yesterday");
	expect_has(last_cmd, ca_refused("ca", 2, "approve first"), "first");
	expect_has(last_cmd, ca_refused("ca", 2, "templates frobnicate"), "templates");
	expect_has(last_cmd, ca_refused("other", 2, "setup --name Other --key-type RSA-1024 %s", hsm_opts(b)),
		   "RSA-1024");
	expect_has(last_cmd, ca_refused("other", 2, "setup --name Other --key-type EC-P256 --hash md5 %s", hsm_opts(b)),
		   "md5");
	expect_unchanged("usage errors", before, ca_state("ca"));
	if (exists("x.pem") || exists("other"))
		fail_full("a usage error left x.pem or other/:\n%s", sh_ok("ls -l"));
}

/* How many certificates the CA in dir has recorded, as its database says. */
static long cert_count(const char *dir)
{
	return strtol(sh_ok("sqlite3 '%s/keyward-ca.db' 'SELECT count(*) FROM certs'", dir), NULL, 10);
}

/* A name the CA must refuse: the request's SANs (or subject), the template, what the refusal must say. */
struct bad_name {
	const char *file; /* the request, NAME.csr */
	const char *subj;
	const char *san; /* -addext subjectAltName=, or NULL */
	const char *tmpl;
	const char *rule; /* in the refusal */
};

static const struct bad_name bad_names[] = {
	/* "good.test\0.evil.test": a NUL inside a DNS name */
	{"nul", "/CN=nul", "DER:30168214676F6F642E74657374002E6576696C2E74657374", "WebServer", "NUL"},
	{"empty", "/CN=empty", "DER:30028200", "WebServer", "empty"},
	{"wild-wild", "/CN=ww", "DNS:*.*", "Wild", "not the leftmost"},
	{"wild-mid", "/CN=wm", "DNS:www.*.example.test", "Wild", "not the leftmost"},
	{"wild-short", "/CN=ws", "DNS:*.test", "Wild", "fewer than two labels"},
	{"wild-denied", "/CN=wd", "DNS:*.example.test", "WebServer", "wildcard = false"},
	{"wild-cn", "/CN=*.example.test", NULL, "WebServer", "wildcard = false"},
	{"label64", "/CN=l64", "DNS:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.test",
	 "WebServer", "label of 64 bytes"},
	{"underscore", "/CN=us", "DNS:under_score.example.test", "WebServer", "\\x5f"},
	{"space", "/CN=sp", "DNS:sp ace.example.test", "WebServer", "\\x20"},
	{"u-label", "/CN=u", "DNS:b\u00fccher.example.test", "WebServer", "\\xc3"},
	{"fake-alabel", "/CN=fa", "DNS:ab--cd.example.test", "WebServer", "positions 3 and 4"},
	{"empty-label", "/CN=el", "DNS:a..example.test", "WebServer", "empty label"},
	{"ip-as-dns", "/CN=ipd", "DNS:192.0.2.1", "WebServer", "iPAddress"},
	{"ip8", "/CN=ip8", "DER:300A8708C0000201FFFFFF00", "WebServer", "4 (IPv4) or 16"},
	{"email-two-at", "/CN=Mail", "email:a@b@example.test", "User", "one '@'"},
	{"email-domain", "/CN=Mail", "email:alice@exa_mple.test", "User", "domain"},
	{"uri-relative", "/CN=uri", "URI:/relative/path", "Wild", "no scheme"},
	{"uri-userinfo", "/CN=uri", "URI:https://user@www.example.test/", "Wild", "user information"},
	{"title-long",
	 "/CN=t/title=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", NULL,
	 "WebServer", "at most 64"},
};

static const char wild_tmpl[] = "validity_days = 30\n"
				"key_usage = critical,digitalSignature\n"
				"extended_key_usage = serverAuth\n"
				"key_types = EC-P256\n"
				"subject = cn\n"
				"san = dns,ip,email,uri\n"
				"wildcard = true\n";

/* Each of bad_names for template Wild (wild) or the others: refused by the CA in dir, naming file and rule. */
static void expect_names_refused(const char *dir, bool wild, long certs)
{
	for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
		const struct bad_name *n = &bad_names[i];
		const char *out;

		if (wild != !strcmp(n->tmpl, "Wild"))
			continue;
		make_csr(n->file, EC256, n->subj, n->san ? keepf("-addext 'subjectAltName=%s'", n->san) : "");
		out = ca_refused(dir, 1, "submit '%s.csr' --template %s --out '%s.pem'", n->file, n->tmpl, n->file);
		expect_has(last_cmd, out, keepf("%s.csr", n->file));
		expect_has(last_cmd, out, n->rule);
		if (exists(keepf("%s.pem", n->file)))
			fail_full("%s: a refused request wrote %s.pem", last_cmd, n->file);
		if (cert_count(dir) != certs)
			fail_full("%s: refused, yet the database has %ld certificates, not %ld", last_cmd,
				  cert_count(dir), certs);
	}
}

/*
 * Names a certificate must not carry (issue #11, finding 7): each class
 * refused, the refusal naming the request file, the name and the rule,
 * and nothing recorded. Requests too large (270 KB) or with too many names
 * refused. A template with wildcard = true takes one leading wildcard
 * label, and only that.
 */
static void test_bad_names(void **state)
{
	const struct backend *b = *state;
	const char *before, *out, *sans = "";
	long certs;

	enter(b, "names");
	ca_ok("ca", "setup --name 'Names CA' --key-type EC-P256 --server-name ca.test %s", hsm_opts(b));
	ca_ok("ca", "ca.cert ca.pem");
	make_csr("ok", EC256, "/CN=ok.test", "-addext 'subjectAltName=DNS:ok.test,DNS:xn--bcher-kva.example.test'");
	issue("ca", "ok", "WebServer");
	before = ca_state("ca");
	certs = cert_count("ca");
	assert_int_equal(certs, 1);

	/* the built-in templates' refusals first, then those of a template that allows wildcards */
	expect_names_refused("ca", false, certs);
	kwt_write_file(keepf("%s/names/wild.tmpl", b->work), wild_tmpl);
	ca_ok("ca", "templates add Wild --file wild.tmpl");
	expect_has(last_cmd, conf_value(ca_ok("ca", "templates show Wild"), "wildcard"), "true");
	expect_has(last_cmd, conf_value(ca_ok("ca", "templates show WebServer"), "wildcard"), "false");
	make_csr("wild-ok", EC256, "/CN=*.example.test", "-addext 'subjectAltName=DNS:*.example.test'");
	issue("ca", "wild-ok", "Wild");
	before = ca_state("ca");
	certs = cert_count("ca");
	expect_names_refused("ca", true, certs);
	/* the refusal says which name: its number and the name */
	make_csr("third", EC256, "/CN=third", "-addext 'subjectAltName=DNS:a.test,DNS:b.test,DNS:c_.test'");
	out = ca_refused("ca", 1, "submit third.csr --template WebServer --out third.pem");
	expect_has(last_cmd, out, "third.csr: subject alternative name 3, DNS name \"c_.test\"");

	/* in a batch, the request named; none issued */
	out = ca_refused("ca", 1, "submit ok.csr underscore.csr ok.csr --template WebServer --out-dir .");
	expect_has(last_cmd, out, "underscore.csr");
	expect_has(last_cmd, out, "under_score.example.test");

	/* a manual template checks on submit: nothing pending */
	ca_ok("ca", "templates add WildManual --file wild.tmpl");
	kwt_write_file(keepf("%s/names/manual.tmpl", b->work), "approval = manual\n");
	ca_ok("ca", "templates add WebServer --file manual.tmpl");
	ca_refused("ca", 1, "submit wild-denied.csr --template WebServer");
	ca_ok("ca", "templates remove WebServer");
	ca_ok("ca", "templates remove WildManual");

	/* too many names: 101 SANs (a request of some 3 kB) */
	for (int i = 0; i <= CA_SANS_MAX_TEST; i++)
		sans = keepf("%s%sDNS:h%d.example.test", sans, i ? "," : "", i);
	make_csr("many", EC256, "/CN=many", keepf("-addext 'subjectAltName=%s'", sans));
	out = ca_refused("ca", 1, "submit many.csr --template WebServer --out many.pem");
	expect_has(last_cmd, out, "101 subject alternative names; at most 100");

	/* 270 KB of names (issue #11 issued one): refused by its size, before it is parsed */
	{
		FILE *f = fopen("big.cnf", "w");

		assert_non_null(f);
		fputs("[req]\ndistinguished_name = dn\nreq_extensions = ext\nprompt = no\n[dn]\nCN = big\n"
		      "[ext]\nsubjectAltName = @alt\n[alt]\n",
		      f);
		for (int i = 0; i < 1100; i++)
			fprintf(f,
				"DNS.%d = %03d.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
				"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb."
				"ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc.test\n",
				i, i % 1000);
		fclose(f);
	}
	sh_ok("openssl req -new -newkey " EC256 " -noenc -keyout /dev/null -config big.cnf -outform DER -out big.csr");
	if (strtol(sh_ok("stat -c %%s big.csr"), NULL, 10) < 200000)
		fail_full("big.csr is only %s bytes", sh_ok("stat -c %%s big.csr"));
	out = ca_refused("ca", 1, "submit big.csr --template WebServer --out big.pem");
	expect_has(last_cmd, out, "big.csr");
	expect_has(last_cmd, out, "65536");

	if (cert_count("ca") != certs)
		fail_full("refused requests changed the database: %ld certificates, not %ld", cert_count("ca"), certs);
	expect_unchanged("refused names", before, ca_state("ca"));
}

/*
 * The CA's PIN file: one group or others may read is refused, saying its
 * mode and the fix, and setup makes nothing; 0600 works.
 */
/*
 * A module path that does not load: a clear error, exit 1, and no CA
 * directory left behind (keyward-ca crashed in libp11 when it unloaded a
 * module that had never loaded, and left an empty CA directory).
 */
static void test_bad_module(void **state)
{
	const struct backend *b = *state;
	const char *out;

	enter(b, "badmodule");
	out = ca_refused("ca", 1, "setup --name 'Lost CA' --key-type EC-P256 --module /nonexistent/pkcs11.so");
	expect_has(last_cmd, out, "cannot load the PKCS#11 module /nonexistent/pkcs11.so");
	if (exists("ca"))
		fail_full("a setup that could not load its module left a CA directory:\n%s", sh_ok("ls -lA"));
}

static void test_pin_file_mode(void **state)
{
	const struct backend *b = *state;
	const char *out;

	enter(b, "pinmode");
	sh_ok("cp '%s' loose.pin && chmod 644 loose.pin", b->pin_file);
	out = ca_refused("ca", 1,
			 "setup --name 'Pin CA' --key-type EC-P256 --server-name ca.test --module '%s'"
			 " --pin-file loose.pin",
			 b->module);
	expect_has(last_cmd, out, "loose.pin has mode 0644");
	expect_has(last_cmd, out, "chmod 600");
	if (strcmp(sh_ok("ls -A ca 2>/dev/null || true"), "") != 0)
		fail_full("a setup refused for its PIN file left in ca/:\n%s", sh_ok("ls -lA ca"));
	sh_ok("chmod 640 loose.pin");
	expect_has(last_cmd,
		   ca_refused("ca", 1, "setup --name 'Pin CA' --key-type EC-P256 --module '%s' --pin-file loose.pin",
			      b->module),
		   "mode 0640");
	sh_ok("chmod 600 loose.pin");
	ca_ok("ca", "setup --name 'Pin CA' --key-type EC-P256 --server-name ca.test --module '%s' --pin-file loose.pin",
	      b->module);
	make_csr("leaf", EC256, "/CN=leaf.test", "-addext subjectAltName=DNS:leaf.test");
	issue("ca", "leaf", "WebServer");
	/* loosened afterwards: the CA stops signing with it, saying why */
	sh_ok("chmod 604 loose.pin");
	out = ca_refused("ca", 1, "submit leaf.csr --template WebServer --out leaf2.pem");
	expect_has(last_cmd, out, "mode 0604");
	if (exists("leaf2.pem"))
		fail_full("a CA whose PIN file is readable by others issued leaf2.pem");
}

/* The mode of path (permission bits), or -1 if it is not there. */
static int mode_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

/*
 * The CA's files: a directory setup makes is 0700; in an existing 0755
 * directory, keyward-ca.db (with its -wal and -shm) and ca.conf are 0600,
 * and stay so when rewritten; published CRLs and certificates may be read
 * by all. And ca.conf holds only what it reads back: a value with a line
 * break or too long for a line is refused.
 */
static void test_file_modes(void **state)
{
	const struct backend *b = *state;
	static const char *const private[] = {"keyward-ca.db", "keyward-ca.db-wal", "keyward-ca.db-shm", "ca.conf"};
	mode_t old = umask(022);

	enter(b, "modes");
	assert_int_equal(mkdir("shared", 0755), 0);
	ca_ok("shared", "setup --name 'Shared CA' --key-type EC-P256 --server-name ca.test %s", hsm_opts(b));
	make_csr("leaf", EC256, "/CN=leaf.test", "-addext subjectAltName=DNS:leaf.test");
	issue("shared", "leaf", "WebServer");
	ca_ok("shared", "config set crl_overlap_hours 6");
	kwt_write_file(keepf("%s/modes/t.tmpl", b->work), "validity_days = 30\n");
	ca_ok("shared", "templates add T --file t.tmpl");
	ca_ok("shared", "crl");
	for (size_t i = 0; i < sizeof private / sizeof private[0]; i++) {
		const char *path = keepf("shared/%s", private[i]);

		if (mode_of(path) >= 0 && (mode_of(path) & 077))
			fail_full("%s has mode %04o in a 0755 directory: others may read it\n%s", path, mode_of(path),
				  sh_ok("ls -la shared"));
	}
	if (mode_of("shared/keyward-ca.db") < 0 || mode_of("shared/ca.conf") < 0)
		fail_full("no keyward-ca.db or ca.conf in shared/:\n%s", sh_ok("ls -la shared"));
	if (mode_of(keepf("shared/publish/%s.crl", file_name("Shared CA"))) != 0644)
		fail_full("the published CRL has mode %04o; it is public (0644)",
			  mode_of(keepf("shared/publish/%s.crl", file_name("Shared CA"))));

	ca_ok("made", "setup --name 'Made CA' --key-type EC-P256 --server-name ca.test %s", hsm_opts(b));
	if (mode_of("made") != 0700)
		fail_full("setup made its directory with mode %04o, not 0700", mode_of("made"));

	/* ca.conf is written only as it reads back */
	expect_has(last_cmd, ca_refused("shared", 2, "config set server_name \"$(printf 'a\\n[template X]')\""),
		   "server_name");
	expect_has(last_cmd, ca_refused("shared", 2, "config set crl_period_hours \"$(printf '1\\nkey = other')\""),
		   "crl_period_hours");
	expect_has(last_cmd, ca_refused("shared", 2, "config set module /%0200d", 0), "too long");
	expect_has(last_cmd,
		   ca_refused("long", 2, "setup --name 'Long CA' --key-type EC-P256 %s --token 'a ;b'", hsm_opts(b)),
		   "token");
	if (exists("long"))
		fail_full("a setup refused for its token left long/:\n%s", sh_ok("ls -lA long"));
	umask(old);
}

/* Templates added from a file: the keys of a [template] section. */
static const char manual_tmpl[] = "validity_days = 30\n"
				  "key_usage = digitalSignature\n"
				  "extended_key_usage = clientAuth\n"
				  "ca = false\n"
				  "key_types = RSA-2048+,EC-P256,EC-P384\n"
				  "subject = cn\n"
				  "san = dns\n"
				  "approval = manual\n";
static const char short_client_tmpl[] = "validity_days = 7\n"
					"key_usage = critical,digitalSignature\n"
					"extended_key_usage = clientAuth\n"
					"ca = false\n"
					"key_types = EC-P256\n"
					"subject = cn\n"
					"san = dns\n"
					"approval = auto\n";
static const char bad_tmpl[] = "validity_days = 30\n"
			       "key_usage = digitalSignature\n"
			       "extended_key_usage = clientAuth\n"
			       "ca = maybe\n"
			       "key_types = EC-P256\n";

/*
 * Case 7: a template wanting approval: submit records a pending request,
 * approve issues it, deny refuses another for good. A template added over
 * a built-in replaces it until removed; one with a bad value is refused.
 */
static void test_manual_approval(void **state)
{
	const struct backend *b = *state;
	const char *out, *id, *id2, *serial, *before;

	enter(b, "manual");
	ca_ok("ca", "setup --name 'Manual CA' --key-type EC-P256 --server-name ca.test %s", hsm_opts(b));
	ca_ok("ca", "ca.cert ca.pem");
	kwt_write_file(keepf("%s/manual/manual.tmpl", b->work), manual_tmpl);
	ca_ok("ca", "templates add Manual --file manual.tmpl");
	expect_has(last_cmd, ca_ok("ca", "templates list"), "Manual");
	expect_has(last_cmd, conf_value(ca_ok("ca", "templates show Manual"), "approval"), "manual");

	/* submitted: pending, no certificate */
	make_csr("one", EC256, "/CN=one.test", "-addext subjectAltName=DNS:one.test");
	out = ca_ok("ca", "submit one.csr --template Manual --out one.pem");
	if (!(id = printed(out, "pending")))
		fail_full("%s: no \"pending ID\" line:\n%s", last_cmd, out);
	expect_lacks(last_cmd, out, "issued");
	if (exists("one.pem"))
		fail_full("a pending request wrote its certificate:\n%s", file("one.pem"));
	if (!listed_request("ca", "pending", id))
		fail_full("request %s is not listed as pending:\n%s", id, ca_state("ca"));
	expect_has(last_cmd, ca_ok("ca", "list --status pending"), id);

	/* approved: issued */
	out = ca_ok("ca", "approve %s", id);
	if (!(serial = printed(out, "issued")))
		fail_full("%s: no \"issued SERIAL\" line:\n%s", last_cmd, out);
	expect_has(last_cmd, out, "-----BEGIN CERTIFICATE-----");
	if (!listed("ca", "issued", serial) || listed_request("ca", "pending", id))
		fail_full("after approve %s: serial %s not issued, or the request still pending:\n%s", id, serial,
			  ca_state("ca"));
	kwt_write_file(keepf("%s/manual/one.pem", b->work), strstr(out, "-----BEGIN CERTIFICATE-----"));
	expect_issued_by("one.pem", "ca.pem", NULL, "Manual CA");
	if (strcmp(norm_serial(cert_serial("one.pem")), norm_serial(serial)) != 0)
		fail_full("approve printed serial %s, the certificate has %s", serial, cert_serial("one.pem"));
	expect_has("one.pem", ext_line(cert_text("one.pem"), "X509v3 Extended Key Usage"),
		   "TLS Web Client Authentication");
	expect_validity("one.pem", 30);
	/* 12359d5: the approval is in the audit log, naming the request and the serial */
	expect_has("keyward-ca audit", ca_ok("ca", "audit"), keepf("request %s issued as serial %s", id, serial));
	ca_refused("ca", 1, "approve %s", id);

	/* denied: never issued, and cannot be approved after */
	make_csr("two", EC256, "/CN=two.test", "-addext subjectAltName=DNS:two.test");
	out = ca_ok("ca", "submit two.csr --template Manual --out two.pem");
	if (!(id2 = printed(out, "pending")) || strcmp(id2, id) == 0)
		fail_full("%s: no new \"pending ID\" line:\n%s", last_cmd, out);
	before = ca_ok("ca", "list --json --status issued");
	ca_ok("ca", "deny %s", id2);
	if (!listed_request("ca", "denied", id2) || listed_request("ca", "pending", id2))
		fail_full("request %s is not (only) denied:\n%s", id2, ca_state("ca"));
	expect_unchanged("deny", before, ca_ok("ca", "list --json --status issued"));
	before = ca_state("ca");
	ca_refused("ca", 1, "approve %s", id2);
	expect_unchanged("approving a denied request", before, ca_state("ca"));
	if (exists("two.pem"))
		fail_full("a denied request wrote a certificate");
	ca_refused("ca", 1, "approve 999999");

	/* removed again */
	ca_ok("ca", "templates remove Manual");
	expect_lacks(last_cmd, ca_ok("ca", "templates list"), "Manual");
	ca_refused("ca", 1, "templates show Manual");

	/* a built-in overridden by one added, and back when that is removed */
	kwt_write_file(keepf("%s/manual/client.tmpl", b->work), short_client_tmpl);
	ca_ok("ca", "templates add Client --file client.tmpl");
	expect_has(last_cmd, conf_value(ca_ok("ca", "templates show Client"), "validity_days"), "7");
	make_csr("short", EC256, "/CN=short.test", "");
	issue("ca", "short", "Client");
	expect_validity("short.pem", 7);
	ca_ok("ca", "templates remove Client");
	expect_has(last_cmd, ca_ok("ca", "templates list"), "Client");
	expect_has(last_cmd, conf_value(ca_ok("ca", "templates show Client"), "validity_days"), "397");
	issue("ca", "short", "Client");
	expect_validity("short.pem", 397);
	ca_refused("ca", 1, "templates remove WebServer");

	/* a file with a bad value: refused, nothing added, the file, line and value named */
	before = ca_ok("ca", "templates list");
	kwt_write_file(keepf("%s/manual/bad.tmpl", b->work), bad_tmpl);
	out = ca_refused("ca", 1, "templates add Bad --file bad.tmpl");
	expect_unchanged("templates add of a bad file", before, ca_ok("ca", "templates list"));
	expect_has("templates add Bad --file bad.tmpl", out, "bad.tmpl");
	expect_has("templates add Bad --file bad.tmpl", out, "line 4");
	expect_has("templates add Bad --file bad.tmpl", out, "maybe");
}

/* How many lines of the file at path start with "issued " (0 if it is missing). */
static int count_issued(const char *path)
{
	char *text = kwt_read_file(path, NULL);
	int n = 0;

	for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
		n += strncmp(line, "issued ", 7) == 0;
	free(text);
	return n;
}

/* How many of the files out/1.txt .. out/n.txt say "issued". */
static int count_issued_files(int n)
{
	int issued = 0;

	for (int i = 1; i <= n; i++)
		issued += count_issued(keepf("out/%d.txt", i)) > 0;
	return issued;
}

/* sh -c script in a process group of its own: one kill reaches every process it starts. */
static pid_t start_group(const char *script)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl("/bin/sh", "sh", "-c", script, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	return pid;
}

/*
 * Waits (at most 60 s) until issued() says enough, then kills the group
 * with SIGKILL: its shell and every keyward-ca in it. Whether the group
 * was killed (false: it ended first).
 */
static bool kill_group_once(pid_t pid, int (*issued)(void), int enough)
{
	int status;

	for (int waited = 0; issued() < enough && waited < 60000; waited += 10) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return false;
		usleep(10000);
	}
	assert_int_equal(kill(-pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* the group's keyward-ca processes are gone (or zombies) within a moment */
	for (int waited = 0; waited < 2000 && kill(-pid, 0) == 0; waited += 10)
		usleep(10000);
	return true;
}

/* Every serial (normalized) is in the CA's list --json, and no serial is there twice. */
static void expect_recorded(const char *dir, const char *const *serials, size_t n)
{
	json_t *root = list_json(dir, NULL), *e, *f;
	size_t i, j;

	for (size_t k = 0; k < n; k++) {
		bool found = false;

		json_array_foreach(entries(root), i, e)
		{
			if (strcmp(norm_serial(field(e, "serial") ?: ""), serials[k]) == 0)
				found = true;
		}
		if (!found)
			fail_full("serial %s was reported issued but is not in the database:\n%s", serials[k],
				  ca_ok(dir, "list --json"));
	}
	json_array_foreach(entries(root), i, e)
	{
		const char *s = field(e, "serial");

		if (!s)
			fail_full("list --json: an entry without a serial:\n%s", ca_ok(dir, "list --json"));
		json_array_foreach(entries(root), j, f)
		{
			if (j > i && strcmp(norm_serial(field(f, "serial") ?: ""), norm_serial(s)) == 0)
				fail_full("serial %s is in the database twice:\n%s", s, ca_ok(dir, "list --json"));
		}
	}
	json_decref(root);
}

#define BURST 24
#define BATCH 200

static int burst_issued(void)
{
	return count_issued_files(BURST);
}

static int batch_issued(void)
{
	return count_issued("batch.txt");
}

/*
 * Case 8: killed with SIGKILL midway, a burst of concurrent submits and
 * then a batch: every serial a submit reported is in the database (and,
 * for the batch, in --out-dir), every certificate written is in the
 * database, no serial twice, no submit that ran to its end failed, and the
 * CA works on.
 */
static void test_crash_safety(void **state)
{
	const struct backend *b = *state;
	const char *serials[BATCH + 1], *out;
	char script[2000];
	size_t n_serials = 0, unfinished = 0;
	bool killed;
	pid_t pid;

	enter(b, "crash");
	ca_ok("ca", "setup --name 'Crash CA' --key-type EC-P256 --server-name ca.test %s", hsm_opts(b));
	sh_ok("mkdir out certs batch && for i in $(seq 1 %d); do openssl req -new -newkey " EC256
	      " -noenc -keyout /dev/null -subj /CN=c$i.test -out c$i.csr 2>/dev/null || exit 1; done",
	      BATCH);

	/* the burst: each submit in the background, its output and then its exit code in out/N.txt */
	snprintf(script, sizeof script,
		 "for i in $(seq 1 %d); do"
		 "  (" KWT_CA_ENV "'%s' --dir ca submit c$i.csr --template Client --out certs/$i.pem;"
		 "   echo \"exit $?\") >out/$i.txt 2>&1 &"
		 " done; wait",
		 BURST, ca_path());
	pid = start_group(script);
	killed = kill_group_once(pid, burst_issued, 4);
	for (int n = 1; n <= BURST; n++) {
		char *text = kwt_read_file(keepf("out/%d.txt", n), NULL);
		const char *s, *exit_code = text ? printed(text, "exit") : NULL;

		if (text && (s = printed(text, "issued")))
			serials[n_serials++] = norm_serial(s);
		if (exit_code && strcmp(exit_code, "0") != 0)
			fail_full("submit %d, not killed, failed (concurrent submits must be safe):\n%s", n, text);
		unfinished += !exit_code;
		free(text);
	}
	print_message("burst: %zu of %d submits reported a serial; %zu killed before they ended%s\n", n_serials, BURST,
		      unfinished, killed ? "" : " (all ended before the kill)");
	if (n_serials == 0)
		fail_full("no submit of the burst issued within 60 s");
	expect_recorded("ca", serials, n_serials);

	/* the batch, killed once its first transaction committed */
	snprintf(script, sizeof script,
		 KWT_CA_ENV "'%s' --dir ca submit c*.csr --template Client --out-dir batch"
			    " --threads 2 >batch.txt 2>&1",
		 ca_path());
	pid = start_group(script);
	killed = kill_group_once(pid, batch_issued, 1);
	out = file("batch.txt");
	n_serials = 0;
	for (const char *line = out; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		const char *s = printed(line, "issued");

		if (!s)
			continue;
		serials[n_serials] = norm_serial(s);
		if (!exists(keepf("batch/%s.pem", s)))
			fail_full("the batch reported serial %s, but batch/%s.pem is not there", s, s);
		n_serials++;
	}
	print_message("batch: %zu of %d requests reported issued%s\n", n_serials, BATCH,
		      killed ? "" : " (it ended before the kill)");
	expect_recorded("ca", serials, n_serials);
	/* and every certificate written is recorded */
	out = sh_ok("ls batch");
	for (const char *name = out; *name; name += strcspn(name, "\n"), name += *name == '\n') {
		const char *serial = keepf("%.*s", (int)strcspn(name, "."), name);

		if (!listed("ca", NULL, serial))
			fail_full("batch/%.*s was written, but serial %s is not in the database",
				  (int)strcspn(name, "\n"), name, serial);
	}

	/* and the CA works on */
	sh_ok("cp c1.csr after.csr");
	ca_ok("ca", "ca.cert ca.pem");
	issue("ca", "after", "Client");
	expect_issued_by("after.pem", "ca.pem", NULL, "Crash CA");
	ca_ok("ca", "crl");
}

/*
 * Batch submission: several requests, --out-dir, --threads; each reported
 * as "issued SERIAL CSR" and written to DIR/SERIAL.pem; one bad request
 * issues none, wherever it is in the list (the requests before it may be
 * signed by the time it is read: they are dropped). (And setup makes the
 * missing parents of --dir.)
 */
static void test_batch(void **state)
{
	const struct backend *b = *state;
	const char *ca = "made/by/setup/ca", *out, *before, *listing, *refusal;
	int n = 0;

	enter(b, "batch");
	/* in a directory whose parents setup makes */
	ca_ok(ca, "setup --name 'Batch CA' --key-type EC-P256 --server-name ca.test %s", hsm_opts(b));
	ca_ok(ca, "ca.cert ca.pem");
	for (int i = 1; i <= 12; i++)
		make_csr(keepf("r%d", i), i % 3 ? EC256 : RSA2048, keepf("/CN=r%d.test", i),
			 keepf("-addext subjectAltName=DNS:r%d.test", i));
	sh_ok("mkdir certs");
	out = ca_ok(ca, "submit r1.csr r2.csr r3.csr r4.csr r5.csr r6.csr r7.csr r8.csr r9.csr r10.csr r11.csr r12.csr"
			" --template WebServer --out-dir certs --threads 4");
	for (const char *line = out; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		const char *serial = printed(line, "issued"), *csr, *pem;

		if (!serial)
			continue;
		csr = keepf("%.*s", (int)strcspn(line + 8 + strlen(serial), " \n"), line + 8 + strlen(serial));
		pem = keepf("certs/%s.pem", serial);
		if (strncmp(csr, "r", 1) != 0 || !exists(csr) || !exists(pem))
			fail_full("%s: \"%.*s\" is not \"issued SERIAL CSR\" with certs/SERIAL.pem:\n%s", last_cmd,
				  (int)strcspn(line, "\n"), line, out);
		/* the certificate is for the request's key */
		if (strcmp(sh_ok("openssl req -noout -pubkey -in '%s'", csr),
			   sh_ok("openssl x509 -noout -pubkey -in '%s'", pem)) != 0)
			fail_full("%s is not for the key of %s", pem, csr);
		expect_issued_by(pem, "ca.pem", NULL, "Batch CA");
		if (strcmp(norm_serial(cert_serial(pem)), norm_serial(serial)) != 0)
			fail_full("%s has serial %s", pem, cert_serial(pem));
		n++;
	}
	if (n != 12 || strcmp(sh_ok("ls certs | wc -l"), "12\n") != 0)
		fail_full("%s: %d of 12 requests reported issued:\n%s\ncerts/:\n%s", last_cmd, n, out,
			  sh_ok("ls certs"));

	/* on a terminal (standard error; standard output a file), how far a batch is; --quiet: nothing */
	sh_ok("mkdir progress");
	out = sh_ok("script -qec \"" KWT_CA_ENV "'%s' --dir '%s' submit r1.csr r2.csr r3.csr --template WebServer "
		    "--out-dir progress >batch.out\" /dev/null",
		    ca_path(), ca);
	expect_has(last_cmd, out, "issued 3 of 3");
	out = sh_ok("script -qec \"" KWT_CA_ENV "'%s' --dir '%s' submit r1.csr r2.csr --template WebServer "
		    "--out-dir progress --quiet >batch.out\" /dev/null",
		    ca_path(), ca);
	if (strstr(out, " of 2"))
		fail_full("%s: a progress line with --quiet:\n%s", last_cmd, out);

	/* one bad request among good ones: none issued */
	make_csr("weak", "rsa:1024", "/CN=weak.test", "-addext subjectAltName=DNS:weak.test");
	before = ca_state(ca);
	listing = sh_ok("ls certs");
	refusal = ca_refused(ca, 1, "submit r1.csr weak.csr r2.csr --template WebServer --out-dir certs");
	expect_unchanged("a batch with a bad request", before, ca_state(ca));
	expect_unchanged("a batch with a bad request (certs/)", listing, sh_ok("ls certs"));
	/* last, after twelve good ones that may be signed by the time it is read: still none issued */
	out = ca_refused(ca, 1,
			 "submit r1.csr r2.csr r3.csr r4.csr r5.csr r6.csr r7.csr r8.csr r9.csr r10.csr r11.csr r12.csr"
			 " weak.csr --template WebServer --out-dir certs --threads 4");
	expect_has(last_cmd, out, "weak.csr");
	expect_unchanged("a batch with a bad request last", before, ca_state(ca));
	expect_unchanged("a batch with a bad request last (certs/)", listing, sh_ok("ls certs"));
	out = ca_refused(ca, 1, "submit r1.csr r2.csr nosuch.csr --template WebServer --out-dir certs");
	expect_has(last_cmd, out, "nosuch.csr");
	expect_unchanged("a batch with a missing request", before, ca_state(ca));
	ca_refused(ca, 2, "submit r1.csr r2.csr --template WebServer --out one.pem");

	/* several requests and no --out-dir: the certificates on standard output, as for one */
	if (ca_ok_or_usage(ca, &out, "submit r1.csr r2.csr --template WebServer")) {
		const char *p = out;
		int pems = 0;

		while ((p = strstr(p, "-----BEGIN CERTIFICATE-----")))
			pems++, p++;
		if (pems != 2)
			fail_full("%s issued, but wrote %d certificates of 2 to standard output:\n%s", last_cmd, pems,
				  out);
	}

	/* the refusal of the bad request named it, and the template, as a single request's would */
	expect_has("the refusal of a batch", refusal, "weak.csr");
	expect_has("the refusal of a batch", refusal, "template WebServer");
	if (strstr(strstr(refusal, "weak.csr") + 1, "weak.csr"))
		fail_full("the refusal of a batch names weak.csr twice:\n%s", refusal);
}

/*
 * config: show; set server_name, audited, and the next certificate's URLs
 * name it; a key location that does not hold the CA's key is refused,
 * changing nothing; after ksputil chkeysowner moved the key to the shared
 * key space, config set token follows it and the CA issues again; what
 * would make it another CA, and bad values, are usage errors; ca.conf
 * edited by hand puts the changed lines in the audit log, once.
 */
static void test_config(void **state)
{
	const struct backend *b = *state;
	const char *out, *audit, *before, *conf, *machine;

	enter(b, "config");
	kwt_write_file("narrow.tmpl", "validity_days = 30\nsan = dns\n");
	sh_ok("'%s' createkey --name config-ca-key --algorithm ECDSA --curve P-256 -m", KSPUTIL_PATH);
	ca_ok("ca", "setup --name 'Config CA' --existing-key config-ca-key --server-name old.test %s", hsm_opts(b));
	ca_ok("ca", "ca.cert ca.pem");
	expect_has(last_cmd, ca_ok("ca", "config"), "server_name = old.test\n");
	expect_has(last_cmd, ca_ok("ca", "config set server_name new.test"), "server_name = new.test");
	expect_has(last_cmd, ca_ok("ca", "config show"), "server_name = new.test\n");
	make_csr("leaf", EC256, "/CN=leaf.test", "-addext subjectAltName=DNS:leaf.test");
	issue("ca", "leaf", "WebServer");
	expect_has("leaf.pem", cert_text("leaf.pem"), "URI:http://new.test/crl/Config-CA.crl");

	/* the URL base apart from the host: certificates keep pointing at it when the CA moves */
	ca_ok("ca", "config set url_base http://pki.test");
	ca_ok("ca", "config set server_name newer.test");
	make_csr("based", EC256, "/CN=based.test", "-addext subjectAltName=DNS:based.test");
	issue("ca", "based", "WebServer");
	expect_has("based.pem", cert_text("based.pem"), "URI:http://pki.test/crl/Config-CA.crl");
	expect_has("based.pem", cert_text("based.pem"), "OCSP - URI:http://pki.test/ocsp");
	expect_has(last_cmd, ca_refused("ca", 2, "config set url_base ftp://pki.test"), "http://");
	expect_has(last_cmd, ca_refused("ca", 2, "config set url_base http://pki.test/"), "'/'");
	ca_ok("ca", "config set legacy_url_bases 'http://old.test http://new.test'");
	/* config show: the templates too, and what this host resolves for itself */
	ca_ok("ca", "templates add Narrow --file narrow.tmpl");
	out = ca_ok("ca", "config show");
	expect_has(last_cmd, out, "[template Narrow]");
	expect_has(last_cmd, out, "# this host: module ");
	/* an export holds nothing of this host's */
	ca_ok("ca", "config export exported.conf");
	out = file("exported.conf");
	expect_has("exported.conf", out, "url_base = http://pki.test\n");
	expect_has("exported.conf", out, "legacy_url_bases = http://old.test http://new.test\n");
	expect_has("exported.conf", out, "[template Narrow]");
	if (strstr(out, "\nmodule =") || strstr(out, "\npin_file =") || strstr(out, "\nserver_name ="))
		fail_full("config export holds a host setting:\n%s", out);
	ca_ok("ca", "templates remove Narrow");
	ca_ok("ca", "config import exported.conf --set crl_overlap_hours=12");
	expect_has(last_cmd, ca_ok("ca", "templates show Narrow"), "[template Narrow]");
	expect_has(last_cmd, ca_ok("ca", "config show"), "server_name = newer.test\n");
	ca_ok("ca", "config set url_base ''");
	audit = ca_ok("ca", "audit");
	expect_has(last_cmd, audit, "config       server_name: \"old.test\" -> \"new.test\"");

	/* refused, each leaving ca.conf and the CA as they were */
	before = ca_state("ca");
	conf = file("ca/ca.conf");
	out = ca_refused("ca", 1, "config set token 'keyward shared'");
	expect_has(last_cmd, out, "config-ca-key");
	expect_has(last_cmd, out, "nothing changed");
	expect_has(last_cmd, ca_refused("ca", 2, "config set name 'Other CA'"), "name");
	expect_has(last_cmd, ca_refused("ca", 2, "config set crl_period_hours soon"), "soon");
	expect_has(last_cmd, ca_refused("ca", 2, "config set hash md5"), "md5");
	expect_has(last_cmd, ca_refused("ca", 2, "config set server_name 'a b'"), "a b");
	ca_refused("ca", 2, "config frobnicate");
	if (strcmp(file("ca/ca.conf"), conf) != 0)
		fail_full("a refused config set changed ca.conf:\n%s", file("ca/ca.conf"));
	expect_unchanged("refused config changes", before, ca_state("ca"));

	/* the key moved to the shared key space: not found where ca.conf says, until the CA follows it */
	out = sh_ok("'%s' enumkeys -a", KSPUTIL_PATH);
	if (!(machine = strstr(out, "Owner: ")) || !strstr(machine, " (Machine)"))
		fail_full("%s: no machine owner:\n%s", last_cmd, out);
	machine = keepf("%.*s", (int)strcspn(machine + 7, " \n"), machine + 7);
	sh_ok("'%s' chkeysowner config-ca-key %s S-1-5-11", KSPUTIL_PATH, machine);
	make_csr("moved", EC256, "/CN=moved.test", "-addext subjectAltName=DNS:moved.test");
	expect_has(last_cmd, ca_refused("ca", 1, "submit moved.csr --template WebServer --out moved.pem"),
		   "config-ca-key");
	ca_ok("ca", "config set token 'keyward shared'");
	issue("ca", "moved", "WebServer");
	expect_verifies("ca.pem", NULL, "moved.pem");

	/* by hand: the lines that went and came, recorded by the next command, and only once */
	sh_ok("sed -i 's/^crl_overlap_hours = 12$/crl_overlap_hours = 6/' ca/ca.conf");
	ca_ok("ca", "list");
	ca_ok("ca", "list");
	{
		/* audit --json: the same records, the hand edit's once, and as the database holds them */
		json_t *root = json_loads(ca_ok("ca", "audit --json"), 0, NULL);
		const char *want =
			"ca.conf changed outside keyward-ca: -crl_overlap_hours = 12; +crl_overlap_hours = 6";
		int edits = 0;

		if (!json_is_array(root))
			fail_full("%s: not a JSON array", last_cmd);
		for (size_t i = 0; i < json_array_size(root); i++) {
			const char *detail = field(json_array_get(root, i), "detail");

			if (detail && strstr(detail, "outside keyward-ca") && !strcmp(detail, want) &&
			    !strcmp(field(json_array_get(root, i), "event"), "config"))
				edits++;
			else if (detail && strstr(detail, "outside keyward-ca"))
				fail_full("a hand edit recorded as \"%s\", not \"%s\"", detail, want);
		}
		if (edits != 1)
			fail_full("the hand edit is in the audit log %d times", edits);
		if (json_array_size(root) !=
		    strtoul(sh_ok("sqlite3 ca/keyward-ca.db 'SELECT count(*) FROM audit'"), NULL, 10))
			fail_full("audit --json shows %zu records; the database holds %s", json_array_size(root),
				  sh_ok("sqlite3 ca/keyward-ca.db 'SELECT count(*) FROM audit'"));
		json_decref(root);
	}
}

/*
 * A database belongs to its CA: another CA's keyward-ca.db put in a CA's
 * directory is refused by every command, which changes nothing; the CA's
 * own database back in place, it works again. status shows the identity.
 */
static void test_identity(void **state)
{
	const struct backend *b = *state;
	const char *out, *before;
	json_t *st;

	enter(b, "identity");
	ca_ok("one", "setup --name 'One CA' --key-type EC-P256 --server-name one.test %s", hsm_opts(b));
	ca_ok("two", "setup --name 'Two CA' --key-type EC-P256 --server-name two.test %s", hsm_opts(b));
	st = json_loads(ca_ok("one", "status --json"), 0, NULL);
	if (!st || !field(st, "key_sha256") || strlen(field(st, "key_sha256")) != 64 ||
	    strcmp(field(st, "name"), "One CA"))
		fail_full("status --json: no identity:\n%s", ca_ok("one", "status --json"));
	json_decref(st);
	sh_ok("cp two/keyward-ca.db two.db && cp one/keyward-ca.db two/keyward-ca.db");
	before = sh_ok("sha256sum two/keyward-ca.db");
	make_csr("leaf", EC256, "/CN=leaf.test", "-addext subjectAltName=DNS:leaf.test");
	out = ca_refused("two", 1, "list");
	expect_has(last_cmd, out, "belongs to another CA");
	expect_has(last_cmd, out, "One CA");
	expect_has(last_cmd, ca_refused("two", 1, "submit leaf.csr --template WebServer --out leaf.pem"),
		   "belongs to another CA");
	expect_has(last_cmd, ca_refused("two", 1, "crl"), "belongs to another CA");
	expect_unchanged("a foreign database", before, sh_ok("sha256sum two/keyward-ca.db"));
	sh_ok("cp two.db two/keyward-ca.db");
	issue("two", "leaf", "WebServer");
}

/*
 * Case 9: an Ed25519 key in the CA's token, made with ksputil. The module
 * shows it as PKCS#11 3.0 says (pkcs11-tool: EC_EDWARDS, CKA_EC_PARAMS the
 * OID 1.3.101.112); keyward-ca, whose libp11 0.4.12 cannot use such a key,
 * ignores it: keys lists the CA's keys without it, a root CA is set up and
 * issues, an existing-key setup on it is refused with a message. The key is
 * deleted at the end (the machine's key space is shared by these tests).
 */
static void test_unusual_key(void **state)
{
	const struct backend *b = *state;
	const char *out, *keys;

	enter(b, "unusual");
	out = sh_ok("'%s' createkey --name unusual-ed25519 --algorithm EDDSA -m", KSPUTIL_PATH);
	expect_has(last_cmd, out, "Created key \"unusual-ed25519\"");
	if (sh(&out, P11TOOL_READ "--list-objects --type pubkey") != 0)
		fail_full("%s: failed:\n%s", last_cmd, out);
	expect_has(last_cmd, out, "Public Key Object; EC_EDWARDS");
	expect_has(last_cmd, out, "06032b6570");
	expect_has(last_cmd, out, "unusual-ed25519");

	ca_ok("ca", "setup --name 'Unusual Root' --key-type EC-P256 --server-name ca.test %s", hsm_opts(b));
	keys = ca_ok("ca", "keys");
	expect_has(last_cmd, keys, "ca-Unusual Root");
	expect_lacks(last_cmd, keys, "unusual-ed25519");
	ca_ok("ca", "ca.cert ca.pem");
	make_csr("leaf", EC256, "/CN=leaf.test", "-addext subjectAltName=DNS:leaf.test");
	issue("ca", "leaf", "WebServer");
	expect_issued_by("leaf.pem", "ca.pem", NULL, "Unusual Root");

	/* the key the CA cannot use: refused with a word, nothing made */
	ca_refused("ed", 1, "setup --name 'Ed Root' --existing-key unusual-ed25519 --server-name ca.test %s",
		   hsm_opts(b));
	sh_ok("'%s' deletekey --name unusual-ed25519 -m --yes", KSPUTIL_PATH);
}

int main(void)
{
	/* the suite on each backend; then, on keyward, tests that stand alone */
	// clang-format off
	const struct CMUnitTest tests[] = {
		{"test_suite (keyward)", test_suite, NULL, test_done, &keyward_hsm},
		{"test_suite (SoftHSM2)", test_suite, NULL, test_done, &softhsm},
		{"test_existing_key", test_existing_key, NULL, test_done, &keyward_hsm},
		{"test_bad_input", test_bad_input, NULL, test_done, &keyward_hsm},
		{"test_manual_approval", test_manual_approval, NULL, test_done, &keyward_hsm},
		{"test_batch", test_batch, NULL, test_done, &keyward_hsm},
		{"test_crash_safety", test_crash_safety, NULL, test_done, &keyward_hsm},
		{"test_config", test_config, NULL, test_done, &keyward_hsm},
		{"test_identity", test_identity, NULL, test_done, &keyward_hsm},
		{"test_unusual_key", test_unusual_key, NULL, test_done, &keyward_hsm},
		{"test_bad_names", test_bad_names, NULL, test_done, &keyward_hsm},
		{"test_bad_module", test_bad_module, NULL, test_done, &keyward_hsm},
		{"test_pin_file_mode", test_pin_file_mode, NULL, test_done, &keyward_hsm},
		{"test_file_modes", test_file_modes, NULL, test_done, &keyward_hsm},
	};
	// clang-format on

	return cmocka_run_group_tests_name("integration_ca", tests, setup, teardown);
}
