/*
 * keyward-ca serve run as a process on a CA set up on a development
 * keywardd, driven by the clients that will talk to it in the field:
 *
 *  - openssl ocsp: good, revoked (time and reason), unknown, several ids,
 *    with and without a nonce, SHA-1 and SHA-256 CertIDs, another issuer
 *    (unauthorized); the response's signature verified and its signer
 *    the delegated OCSPSigning certificate; the GET form with curl, with
 *    RFC 5019's headers and a 304 for a matching ETag; a revocation by the
 *    CLI answered within seconds; a second serve on the same directory
 *    agreeing; a CA whose own key signs (ocsp_signer = ca);
 *  - the CRL, delta CRL and CA certificate fetched with curl from the URLs
 *    inside an issued certificate (host replaced by the listen address),
 *    then openssl verify -crl_check and GnuTLS certtool --verify;
 *  - garbage, oversize, truncated and slow requests on every endpoint,
 *    after which the server still answers.
 *
 * serve is stopped by its PID with SIGTERM and must exit 0. In the suite's
 * pass on PostgreSQL (scripts/test) the CA's database is on PostgreSQL too.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca_helpers.h"
#include "harness.h"
#include "serve_helpers.h"

static struct kwt_server server;
static char work[300], ca_dir[400], pin[400];
static unsigned short port, port2;
static pid_t serve_pid, serve2_pid;

/* ---- fixtures ---- */

static void issue_web(const char *name)
{
	sh_ok("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key "
	      "-subj /CN=%s.example -addext subjectAltName=DNS:%s.example -out %s.csr",
	      name, name, name, name);
	ca_ok(ca_dir, "submit %s.csr --template WebServer --out %s.pem", name, name);
}

static int setup(void **state)
{
	(void)state;
	serve_test_ca_any_db(&server, "serve", "Serve Test CA", KEYWARD_PKCS11_PATH, work, ca_dir, pin);
	issue_web("good");
	issue_web("rev");
	issue_web("late");
	issue_web("old");
	/* short idle timeout and a per-address cap the slow-request test can reach */
	serve_pid = serve_test_start(
		ca_dir, "[serve]\nconnection_timeout = 2\nper_address_connections = 32\nthreads = 2\n", &port);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	serve_test_end(&server, serve_pid, serve2_pid);
	return 0;
}

/* openssl ocsp against port with args; its output (caller frees), whatever its exit code. */
static const char *ocsp(unsigned short on, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *ocsp(unsigned short on, const char *fmt, ...)
{
	char args[2048];
	const char *out = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	sh(&out, "openssl ocsp -url http://127.0.0.1:%u/ocsp -CAfile ca.pem %s", on, args);
	return out;
}

/* openssl ocsp with args until its output has needle (the responder polls the database twice a second), at most 3 s. */
static const char *ocsp_until(unsigned short on, const char *args, const char *needle)
{
	const char *out = ocsp(on, "%s", args);

	for (int i = 0; i < 30 && !strstr(out, needle); i++) {
		usleep(100 * 1000);
		out = ocsp(on, "%s", args);
	}
	return out;
}

/* ---- OCSP ---- */

static void test_ocsp_answers(void **state)
{
	const char *out;

	(void)state;
	/* good, with a nonce, signed by the delegated signer (printed with -resp_text) */
	out = ocsp(port, "-issuer ca.pem -cert good.pem -resp_text");
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "good.pem: good");
	expect_has(last_cmd, out, "OCSP Nonce");
	expect_has(last_cmd, out, "Subject: CN=Serve Test CA OCSP Responder");
	expect_has(last_cmd, out, "OCSP Signing");
	expect_has(last_cmd, out, "OCSP No Check");
	expect_has(last_cmd, out, "Next Update:");
	/* without a nonce (the cached answer) */
	out = ocsp(port, "-issuer ca.pem -cert good.pem -no_nonce");
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "good.pem: good");
	/* unknown serial; several ids in one request; a SHA-256 CertID */
	out = ocsp(port, "-issuer ca.pem -serial 0x0123456789ABCDEF");
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "0x0123456789ABCDEF: unknown");
	out = ocsp(port, "-issuer ca.pem -cert good.pem -cert rev.pem -serial 0x42");
	expect_has(last_cmd, out, "good.pem: good");
	expect_has(last_cmd, out, "rev.pem: good");
	expect_has(last_cmd, out, "0x42: unknown");
	out = ocsp(port, "-issuer ca.pem -sha256 -cert good.pem -resp_text");
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "Hash Algorithm: sha256");
	expect_has(last_cmd, out, "good.pem: good");
	/* another issuer's id: unauthorized */
	sh_ok("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key "
	      "-subj /CN=Other -days 2 -out other.pem");
	out = ocsp(port, "-issuer other.pem -serial 0x1234");
	expect_has(last_cmd, out, "unauthorized");
}

static void test_ocsp_revoke(void **state)
{
	const char *out = NULL, *serial = cert_serial("rev.pem");

	(void)state;
	/* cached as good first */
	ocsp(port, "-issuer ca.pem -cert rev.pem -no_nonce");
	ca_ok(ca_dir, "revoke %s --reason keyCompromise", serial);
	/* the next answer says revoked: the responder polls the database every half second */
	out = ocsp_until(port, "-issuer ca.pem -cert rev.pem -no_nonce", "rev.pem: revoked");
	expect_has(last_cmd, out, "rev.pem: revoked");
	expect_has(last_cmd, out, "Reason: keyCompromise");
	expect_has(last_cmd, out, "Revocation Time:");
	expect_has(last_cmd, out, "Response verify OK");
	/* backdated: revoked now, with the --date as its invalidityDate (RFC 5280 5.3.2) */
	serial = cert_serial("old.pem");
	ca_ok(ca_dir, "revoke %s --reason keyCompromise --date 2026-01-02T03:04:05Z", serial);
	out = ocsp_until(port, "-issuer ca.pem -cert old.pem -no_nonce -resp_text", "old.pem: revoked");
	expect_has(last_cmd, out, "old.pem: revoked");
	expect_has(last_cmd, out, "Invalidity Date");
	expect_has(last_cmd, out, "Jan  2 03:04:05 2026 GMT");
	/* with a nonce too (signed on arrival) */
	out = ocsp(port, "-issuer ca.pem -cert rev.pem -cert good.pem");
	expect_has(last_cmd, out, "rev.pem: revoked");
	expect_has(last_cmd, out, "good.pem: good");
}

static void test_ocsp_get(void **state)
{
	const char *out;

	(void)state;
	sh_ok("openssl ocsp -issuer ca.pem -cert rev.pem -no_nonce -reqout req.der");
	/* base64, percent-encoded as RFC 6960 A.1 says */
	out = sh_ok("b=$(base64 -w0 req.der | sed 's/+/%%2B/g; s,/,%%2F,g; s/=/%%3D/g'); "
		    "curl -sS -D get.hdr -o get.der http://127.0.0.1:%u/ocsp/$b && cat get.hdr && "
		    "openssl ocsp -respin get.der -issuer ca.pem -cert rev.pem -CAfile ca.pem",
		    port);
	expect_has(last_cmd, out, "HTTP/1.1 200");
	expect_has(last_cmd, out, "Content-Type: application/ocsp-response");
	expect_has(last_cmd, out, "Cache-Control: max-age=");
	expect_has(last_cmd, out, "ETag: \"");
	expect_has(last_cmd, out, "Last-Modified: ");
	expect_has(last_cmd, out, "Expires: ");
	expect_has(last_cmd, out, "rev.pem: revoked");
	expect_has(last_cmd, out, "Response verify OK");
	/* the same request unencoded (raw base64 in the path) and the ETag's 304 */
	out = sh_ok("etag=$(grep -i '^etag:' get.hdr | cut -d' ' -f2 | tr -d '\\r'); b=$(base64 -w0 req.der); "
		    "curl -sS -o /dev/null -w '%%{http_code}\\n' http://127.0.0.1:%u/ocsp/$b; "
		    "curl -sS -o /dev/null -w '%%{http_code}\\n' -H \"If-None-Match: $etag\" "
		    "http://127.0.0.1:%u/ocsp/$b",
		    port, port);
	expect_has(last_cmd, out, "200\n304\n");
	/* base64url, no padding */
	out = sh_ok(
		"b=$(base64 -w0 req.der | tr '+/' '-_' | tr -d '='); curl -sS -o url.der http://127.0.0.1:%u/ocsp/$b"
		" && openssl ocsp -respin url.der -issuer ca.pem -cert rev.pem -CAfile ca.pem",
		port);
	expect_has(last_cmd, out, "rev.pem: revoked");
}

static void test_second_responder(void **state)
{
	char log[400];
	const char *out, *serial = cert_serial("late.pem");

	(void)state;
	port2 = kwt_free_port();
	snprintf(log, sizeof log, "%s/serve2.log", work);
	/* the second responder pre-signs one answer at a time (as on a module without the batch interface) */
	assert_int_equal(setenv("KEYWARD_CA_BATCH", "0", 1), 0);
	serve2_pid = serve_start(ca_dir, port2, log);
	unsetenv("KEYWARD_CA_BATCH");
	out = ocsp(port2, "-issuer ca.pem -cert rev.pem -cert good.pem -cert late.pem -no_nonce");
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "rev.pem: revoked");
	expect_has(last_cmd, out, "good.pem: good");
	expect_has(last_cmd, out, "late.pem: good");
	/* the first pre-signs through the batch interface, the second does not; both answered (above) */
	{
		char first[600], *log1, *log2;

		snprintf(first, sizeof first, "%s/serve.log", work);
		log1 = kwt_read_file(first, NULL);
		log2 = kwt_read_file(log, NULL);
		assert_non_null(log1);
		assert_non_null(log2);
		expect_has("serve.log", log1, "answers per HSM round trip");
		expect_has("serve2.log", log2,
			   "on http://"); /* it said it serves, after it would have said how it pre-signs */
		if (strstr(log2, "answers per HSM round trip"))
			fail_msg("KEYWARD_CA_BATCH=0: the second responder pre-signed in batches:\n%s", log2);
		free(log1);
		free(log2);
	}
	/* a revocation (on hold) seen by both */
	ca_ok(ca_dir, "revoke %s --reason certificateHold", serial);
	for (int k = 0; k < 2; k++) {
		out = ocsp_until(k ? port2 : port, "-issuer ca.pem -cert late.pem -no_nonce", "late.pem: revoked");
		expect_has(last_cmd, out, "late.pem: revoked");
		expect_has(last_cmd, out, "Reason: certificateHold");
	}
	/* taken back: good again, on both */
	ca_ok(ca_dir, "unrevoke %s", serial);
	for (int k = 0; k < 2; k++) {
		out = ocsp_until(k ? port2 : port, "-issuer ca.pem -cert late.pem -no_nonce", "late.pem: good");
		expect_has(last_cmd, out, "late.pem: good");
	}
	serve_stop(serve2_pid);
	serve2_pid = 0;
}

/* A second CA whose responses its own key signs (ocsp_signer = ca): no certificate in them. */
static void test_ca_key_signer(void **state)
{
	char dir[500], path[600], log[500];
	const char *out;
	unsigned short p3 = kwt_free_port();
	pid_t pid;

	(void)state;
	snprintf(dir, sizeof dir, "%s/caca", work);
	ca_ok(dir,
	      "setup --name 'Self Signing CA' --key-type EC-P256 --server-name ca.test --module '%s' --pin-file '%s'",
	      KEYWARD_PKCS11_PATH, pin);
	ca_ok(dir, "ca.cert caca.pem");
	snprintf(path, sizeof path, "%s/serve.conf", dir);
	kwt_write_file(path, "[serve]\nocsp_signer = ca\n");
	snprintf(log, sizeof log, "%s/caca.log", work);
	pid = serve_start(dir, p3, log);
	out = NULL;
	sh(&out, "openssl ocsp -url http://127.0.0.1:%u/ocsp -CAfile caca.pem -issuer caca.pem -serial 0x99 -resp_text",
	   p3);
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "0x99: unknown");
	expect_lacks(last_cmd, out, "OCSP Responder");
	expect_lacks(last_cmd, out, "Certificate:");
	/* and it refuses the first CA's ids */
	out = NULL;
	sh(&out, "openssl ocsp -url http://127.0.0.1:%u/ocsp -CAfile caca.pem -issuer ca.pem -cert good.pem", p3);
	expect_has(last_cmd, out, "unauthorized");
	serve_stop(pid);
}

/* ---- CRL and AIA ---- */

/* The URL after "URI:" on the line of text that starts with prefix, its host replaced by the listen address. */
static const char *url_in(const char *text, const char *prefix)
{
	const char *p = strstr(text, prefix), *u, *path;

	if (!p || !(u = strstr(p, "URI:http://")))
		fail_msg("no %s URI in:\n%.900s", prefix, text);
	u += strlen("URI:http://");
	path = strchr(u, '/');
	assert_non_null(path);
	return keepf("http://127.0.0.1:%u%.*s", port, (int)strcspn(path, "\n\r ,"), path);
}

static void test_crl_aia(void **state)
{
	const char *text, *crl, *ca, *delta, *out;

	(void)state;
	/* the CRL now lists rev.pem */
	ca_ok(ca_dir, "crl");
	text = sh_ok("openssl x509 -in good.pem -noout -ext crlDistributionPoints,authorityInfoAccess");
	expect_has(last_cmd, text, "http://ca.test/");
	crl = url_in(text, "CRL Distribution Points");
	ca = url_in(text, "CA Issuers");
	out = sh_ok("curl -sS -f -D crl.hdr -o crl.der '%s' && curl -sS -f -D ca.hdr -o ca.der '%s' && "
		    "cat crl.hdr ca.hdr",
		    crl, ca);
	expect_has(last_cmd, out, "Content-Type: application/pkix-crl");
	expect_has(last_cmd, out, "Content-Type: application/pkix-cert");
	expect_has(last_cmd, out, "Last-Modified: ");
	sh_ok("openssl x509 -inform DER -in ca.der -out ca-dl.pem && openssl crl -inform DER -in crl.der "
	      "-out crl.pem && cat ca-dl.pem crl.pem > trust.pem && cmp ca-dl.pem ca.pem");
	out = sh_ok("openssl verify -crl_check -CAfile trust.pem good.pem");
	expect_has(last_cmd, out, "good.pem: OK");
	out = NULL;
	assert_int_not_equal(sh(&out, "openssl verify -crl_check -CAfile trust.pem rev.pem"), 0);
	expect_has(last_cmd, out, "certificate revoked");
	/* GnuTLS with the downloaded chain and CRL */
	out = sh_ok("certtool --verify --load-ca-certificate ca-dl.pem --load-crl crl.pem --infile good.pem");
	expect_has(last_cmd, out, "Verified");
	out = NULL;
	sh(&out, "certtool --verify --load-ca-certificate ca-dl.pem --load-crl crl.pem --infile rev.pem");
	expect_has(last_cmd, out, "revoked");
	/*
	 * the delta CRL the full CRL's Freshest CRL names; made right after the
	 * full CRL (most runs: in the same second), it repeats nothing the
	 * full CRL holds
	 */
	ca_ok(ca_dir, "crl --delta");
	text = sh_ok("openssl crl -in crl.pem -noout -text");
	delta = url_in(text, "Freshest CRL");
	out = sh_ok("curl -sS -f -o delta.der '%s' && openssl crl -inform DER -in delta.der -noout -text", delta);
	expect_has(last_cmd, out, "Delta CRL Indicator");
	expect_has(last_cmd, out, "No Revoked Certificates");
	/* a name that is not published: 404 */
	assert_int_equal(http_status(port, "GET", "/crl/Other.crl"), 404);
	assert_int_equal(http_status(port, "GET", "/crl/../ca.conf"), 404);
	assert_int_equal(http_status(port, "GET", "/ca/Serve-Test-CA.crt/../../ca.conf"), 404);
}

/*
 * The paths of url_base and of each legacy base: a CA whose certificates
 * point at http://pki.test/pki/..., moved from http://ca.test/old/...,
 * answers at both; another prefix is not found.
 */
static void test_url_bases(void **state)
{
	unsigned short on = kwt_free_port();
	char log[600];
	pid_t pid;

	(void)state;
	ca_ok(ca_dir, "config set url_base http://pki.test/pki");
	ca_ok(ca_dir, "config set legacy_url_bases 'http://ca.test/old http://ca.test'");
	snprintf(log, sizeof log, "%s/serve-bases.log", work);
	pid = serve_start(ca_dir, on, log);
	assert_int_equal(http_status(on, "GET", "/pki/crl/Serve-Test-CA.crl"), 200);
	assert_int_equal(http_status(on, "GET", "/old/ca/Serve-Test-CA.crt"), 200);
	assert_int_equal(http_status(on, "GET", "/crl/Serve-Test-CA.crl"), 200);
	assert_int_equal(http_status(on, "GET", "/other/crl/Serve-Test-CA.crl"), 404);
	assert_int_equal(http_status(on, "GET", "/pkicrl/Serve-Test-CA.crl"), 404);
	serve_stop(pid);
	/* a port in use: a second responder fails at once, it does not share the port (SO_REUSEPORT) */
	{
		const char *out = NULL;
		int rc = sh(&out, KWT_CA_ENV "timeout 20 '%s' --dir '%s' serve --listen 127.0.0.1:%u", ca_path(), ca_dir,
			    port);

		if (rc == 0 || rc == 124)
			fail_full("serve on the busy port %u: exit %d, not a refusal:\n%s", port, rc, out);
		expect_has("serve on a busy port", out, "cannot listen");
	}
	ca_ok(ca_dir, "config set url_base ''");
	ca_ok(ca_dir, "config set legacy_url_bases ''");
}

/* ---- health, metrics ---- */

static void expect_dates(void);

static void test_health_metrics(void **state)
{
	const char *out;

	(void)state;
	out = sh_ok("curl -sS -i http://127.0.0.1:%u/health", port);
	expect_has(last_cmd, out, "HTTP/1.1 200");
	expect_has(last_cmd, out, "\"status\": \"ok\"");
	out = sh_ok("curl -sS http://127.0.0.1:%u/metrics", port);
	expect_has(last_cmd, out, "keyward_ca_http_requests_total{endpoint=\"ocsp\",outcome=\"good\"}");
	expect_has(last_cmd, out, "keyward_ca_http_requests_total{endpoint=\"ocsp\",outcome=\"revoked\"}");
	expect_has(last_cmd, out, "keyward_ca_http_request_duration_seconds_bucket{le=\"+Inf\"}");
	expect_has(last_cmd, out, "keyward_ca_ocsp_presign_backlog");
	expect_has(last_cmd, out, "keyward_ca_hsm_errors_total 0");
	expect_lacks(last_cmd, out, "keyward_ca_ocsp_cache_hits_total 0\n");
	assert_int_equal(http_status(port, "DELETE", "/health"), 405);
	expect_dates();
}

/* The line "NAME{LABEL} " + the Unix time of the date text `when` (date -d) is in /metrics. */
static void expect_metric_date(const char *name_label, const char *when)
{
	char want[256], secs[32];
	const char *out = sh_ok("date -u -d '%s' +%%s", when);

	snprintf(secs, sizeof secs, "%.*s", (int)strcspn(out, "\n"), out);
	snprintf(want, sizeof want, "%s %s\n", name_label, secs);
	out = sh_ok("curl -sS http://127.0.0.1:%u/metrics", port);
	expect_has(last_cmd, out, want);
}

/* The dates an administrator alerts on: the CA's and the signer's expiry, the CRLs' publication. */
static void expect_dates(void)
{
	char when[64];
	const char *out = sh_ok("openssl x509 -enddate -noout -in ca.pem"), *p;

	snprintf(when, sizeof when, "%.*s", (int)strcspn(out + 9, "\n"), out + 9); /* notAfter=... */
	expect_metric_date("keyward_ca_certificate_expiry_timestamp_seconds{certificate=\"ca\"}", when);
	/* the delegated signer's certificate, as the response carries it */
	out = ocsp(port, "-issuer ca.pem -cert good.pem -no_nonce -resp_text");
	assert_non_null(p = strstr(out, "Not After : "));
	p += strlen("Not After : ");
	snprintf(when, sizeof when, "%.*s", (int)strcspn(p, "\n"), p);
	expect_metric_date("keyward_ca_certificate_expiry_timestamp_seconds{certificate=\"ocsp_signer\"}", when);
	/* the full CRL's publication: the file's time */
	out = sh_ok("date -u -r ca/publish/Serve-Test-CA.crl '+%%Y-%%m-%%d %%H:%%M:%%S UTC'");
	snprintf(when, sizeof when, "%.*s", (int)strcspn(out, "\n"), out);
	expect_metric_date("keyward_ca_crl_published_timestamp_seconds{crl=\"full\"}", when);
	out = sh_ok("curl -sS http://127.0.0.1:%u/metrics", port);
	expect_has(last_cmd, out, "keyward_ca_crl_publish_errors_total 0\n");
}

/* ---- hostile requests ---- */

static void expect_still_serving(void)
{
	const char *out = ocsp(port, "-issuer ca.pem -cert good.pem");

	expect_has(last_cmd, out, "good.pem: good");
	assert_int_equal(http_status(port, "GET", "/health"), 200);
}

/* A connection that sends text and nothing more; its fd. */
static int hold(const char *text)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
	return fd;
}

/* Whether the server closed fd within seconds (it may answer first). */
static bool closed_within(int fd, int seconds)
{
	char buf[4096];
	struct pollfd p = {.fd = fd, .events = POLLIN};

	for (time_t end = time(NULL) + seconds; time(NULL) <= end;)
		if (poll(&p, 1, 500) == 1) {
			ssize_t r = recv(fd, buf, sizeof buf, 0);

			if (r <= 0)
				return true;
		}
	return false;
}

static void test_hostile(void **state)
{
	static const char *const paths[] = {"/ocsp",
					    "/",
					    "/crl/Serve-Test-CA.crl",
					    "/crl/Serve-Test-CA+.crl",
					    "/ca/Serve-Test-CA.crt",
					    "/health",
					    "/metrics",
					    "/nothing"};
	char req[1024], *resp, *big;
	size_t len;
	int slow[8];

	(void)state;
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		/* garbage body */
		snprintf(req, sizeof req,
			 "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/ocsp-request\r\n"
			 "Content-Length: 7\r\nConnection: close\r\n\r\ngarbage",
			 paths[i]);
		resp = http_raw(port, req, strlen(req), &len);
		assert_non_null(resp);
		if (!strcmp(paths[i], "/ocsp") || !strcmp(paths[i], "/")) {
			/* the protocol's answer: OCSPResponse { malformedRequest } */
			expect_has("response", resp, "HTTP/1.1 200");
			assert_true(len >= 5 && !memcmp(resp + len - 5, "\x30\x03\x0a\x01\x01", 5));
		} else {
			assert_true(!strncmp(resp, "HTTP/1.1 4", 10));
		}
		free(resp);
		/* oversize: announced */
		snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n", paths[i]);
		resp = http_raw(port, req, strlen(req), NULL);
		if (resp && resp[0])
			expect_has("response", resp, "HTTP/1.1 413");
		free(resp);
		/* oversize: chunked, never announced */
		big = malloc(80 * 1024 + 512);
		assert_non_null(big);
		len = (size_t)sprintf(big,
				      "POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
				      "Connection: close\r\n\r\n%x\r\n",
				      paths[i], 70 * 1024);
		memset(big + len, 'A', 70 * 1024);
		len += 70 * 1024;
		len += (size_t)sprintf(big + len, "\r\n0\r\n\r\n");
		resp = http_raw(port, big, len, NULL);
		if (resp && resp[0] && (!strcmp(paths[i], "/ocsp") || !strcmp(paths[i], "/")))
			expect_has("response", resp, "HTTP/1.1 413");
		free(resp);
		free(big);
		/* truncated: a body shorter than announced, then the connection closed */
		snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0\x82", paths[i]);
		free(http_raw(port, req, strlen(req), NULL));
		/* a header line that is not HTTP */
		snprintf(req, sizeof req, "\x01\x02 %s \xff\xfe\r\n\r\n", paths[i]);
		free(http_raw(port, req, strlen(req), NULL));
	}
	expect_still_serving();
	/* slow: requests that never finish their headers; the others are answered meanwhile */
	for (size_t i = 0; i < sizeof slow / sizeof slow[0]; i++) {
		snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nX-Slow: ", paths[i]);
		slow[i] = hold(req);
	}
	expect_still_serving();
	/* idle past connection_timeout (2 s): closed by the server */
	for (size_t i = 0; i < sizeof slow / sizeof slow[0]; i++) {
		if (!closed_within(slow[i], 8))
			fail_msg("a request that stopped mid-header on %s was not closed after the idle timeout",
				 paths[i]);
		close(slow[i]);
	}
	expect_still_serving();
}

/* serve.conf's tls_certificate and tls_key: the same answers over HTTPS, and unusable files refused by name. */
static void test_https(void **state)
{
	char conf[600], log[500], listen[64];
	const char *out;
	unsigned short p3 = kwt_free_port();
	pid_t pid;

	(void)state;
	serve_tls_files();
	sh_ok("openssl req -x509 -newkey %s -nodes -keyout other.key -out other.crt -days 2 -subj /CN=other && "
	      "chmod 600 other.key",
	      EC256);
	snprintf(conf, sizeof conf, "%s/serve.conf", ca_dir);
	snprintf(log, sizeof log, "%s/https.log", work);
	snprintf(listen, sizeof listen, "127.0.0.1:%u", p3);

	/* refused, each naming the file and what is wrong; nothing listens */
	kwt_write_file(conf, "[serve]\ntls_certificate = ../tls.crt\n");
	out = ca_refused(ca_dir, 1, "serve --listen %s", listen);
	expect_has(last_cmd, out, "tls_certificate and tls_key go together");
	kwt_write_file(conf, "[serve]\ntls_certificate = ../tls.crt\ntls_key = ../other.key\n");
	out = ca_refused(ca_dir, 1, "serve --listen %s", listen);
	expect_has(last_cmd, out, "is not the key of tls_certificate");
	sh_ok("chmod 644 tls.key");
	kwt_write_file(conf, "[serve]\ntls_certificate = ../tls.crt\ntls_key = ../tls.key\n");
	out = ca_refused(ca_dir, 1, "serve --listen %s", listen);
	expect_has(last_cmd, out, "chmod 600");
	sh_ok("chmod 600 tls.key");

	/* relative to the CA directory, as serve.conf's other files */
	pid = serve_start_https(ca_dir, p3, log);
	kwt_write_file(conf, "[serve]\nconnection_timeout = 2\nper_address_connections = 32\nthreads = 2\n");
	sh_ok("curl -sf --cacert tls.crt -o https-ca.crt https://127.0.0.1:%u/ca/Serve-Test-CA.crt && "
	      "openssl x509 -inform DER -in https-ca.crt -out https-ca.pem && cmp https-ca.pem ca.pem",
	      p3);
	sh_ok("openssl ocsp -issuer ca.pem -cert good.pem -no_nonce -reqout https-req.der");
	sh_ok("curl -sf --cacert tls.crt -H 'Content-Type: application/ocsp-request' --data-binary @https-req.der "
	      "-o https-resp.der https://127.0.0.1:%u/ocsp",
	      p3);
	out = sh_ok("openssl ocsp -respin https-resp.der -issuer ca.pem -cert good.pem -CAfile ca.pem");
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "good.pem: good");
	/* plain HTTP on the HTTPS port gets no HTTP answer; the server keeps serving */
	assert_int_not_equal(http_status(p3, "GET", "/health"), 200);
	sh_ok("curl -sf --cacert tls.crt -o /dev/null https://127.0.0.1:%u/health", p3);
	serve_stop(pid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ocsp_answers),   cmocka_unit_test(test_ocsp_revoke),
		cmocka_unit_test(test_ocsp_get),       cmocka_unit_test(test_second_responder),
		cmocka_unit_test(test_ca_key_signer),  cmocka_unit_test(test_crl_aia),
		cmocka_unit_test(test_health_metrics), cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_url_bases),      cmocka_unit_test(test_https),
	};

	return cmocka_run_group_tests_name("integration_ca_serve", tests, setup, teardown);
}
