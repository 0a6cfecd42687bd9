/*
 * keyward-ca serve over time and under its limits, on a CA whose HSM is a
 * keywardd with a real store (initialized, locked, stopped and started
 * again by the test), driven by real clients (openssl, curl):
 *
 *  - the delegated OCSP signer, one minute long (ocsp_signer_validity_minutes),
 *    renewed while serve runs: every answer, signed on arrival or cached,
 *    verifies, and the signer certificate's serial changes;
 *  - the full and delta CRLs republished on their schedule
 *    (crl_republish_seconds, delta_republish_seconds): the CRL numbers at
 *    /crl/ go up with nobody running keyward-ca crl;
 *  - /health: 503 naming the HSM when keywardd is locked, gone or frozen
 *    (SIGSTOP: no answer at all), cached OCSP answers and the rest still
 *    served meanwhile, 200 again once it is back;
 *  - per_address_connections alone: the next connection from that address
 *    is refused, another address is served, and a slot freed is usable;
 *  - --listen [::1]:PORT: OCSP and the CRL over IPv6;
 *  - dist/keyward-ca@.service as built: systemd-analyze verify, and
 *    systemd-analyze security's exposure level; and Type=notify: serve
 *    says READY=1 (with the CA it serves) and STOPPING=1 on a socket of
 *    the test's, named by NOTIFY_SOCKET as systemd names its own.
 *
 * Each test starts its own serve with its own serve.conf and stops it.
 */
#include <arpa/inet.h>
#include <errno.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca_helpers.h"
#include "harness.h"
#include "serve_helpers.h"

#define CA_NAME "Ops Test CA"
#define CA_FILE "Ops-Test-CA"

static struct kwt_server hsm;
static char work[300], ca_dir[400], pin_file[400], pass_file[400];
static pid_t running; /* the test's serve, stopped after it even when the test fails */
static bool frozen;   /* keywardd stopped with SIGSTOP, continued after the test even when it fails */

/* serve.conf of the CA in dir (the next serve reads it). */
static void serve_conf(const char *dir, const char *text)
{
	char path[600];

	snprintf(path, sizeof path, "%s/serve.conf", dir);
	kwt_write_file(path, text);
}

/* serve on a free loopback port with conf as its serve.conf; *port gets the port. */
static pid_t start_with(const char *conf, unsigned short *port, const char *log_name)
{
	char log[600];

	serve_conf(ca_dir, conf);
	*port = kwt_free_port();
	snprintf(log, sizeof log, "%s/%s", work, log_name);
	return running = serve_start(ca_dir, *port, log);
}

/* The test's serve stopped; it must exit cleanly. */
static void stop(void)
{
	pid_t pid = running;

	running = 0;
	serve_stop(pid);
}

/* After each test: a serve its failure left running is killed, so the next test has the CA to itself. */
static int kill_running(void **state)
{
	(void)state;
	if (frozen) {
		kill(hsm.pid, SIGCONT);
		frozen = false;
	}
	if (running > 0) {
		kill(running, SIGKILL);
		waitpid(running, NULL, 0);
		running = 0;
	}
	return 0;
}

static int setup(void **state)
{
	char path[600];

	(void)state;
	/* a store that outlives keywardd, so the HSM can go away and come back with the CA's key */
	kw_client_free(kwt_start_initialized(&hsm, NULL));
	snprintf(pass_file, sizeof pass_file, "%s/passphrase", hsm.dir);
	snprintf(path, sizeof path, "%s/machine-id", hsm.dir);
	kwt_write_file(path, "0123456789abcdef0123456789abcdef\n");
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", path, 1), 0);
	snprintf(path, sizeof path, "%s/p.conf", hsm.dir);
	assert_int_equal(setenv("KEYWARD_CONF", path, 1), 0);
	/* the partition's client key is stored unencrypted: any PIN logs in */
	snprintf(pin_file, sizeof pin_file, "%s/pin", hsm.dir);
	kwt_write_file(pin_file, "12345678\n");
	assert_int_equal(chmod(pin_file, 0600), 0);
	snprintf(work, sizeof work, "%s/ops", hsm.dir);
	assert_int_equal(mkdir(work, 0700), 0);
	snprintf(ca_dir, sizeof ca_dir, "%s/ca", work);
	assert_int_equal(chdir(work), 0);
	ca_ok(ca_dir,
	      "setup --name '" CA_NAME "' --key-type EC-P256 --server-name ca.test --module '%s' --pin-file '%s'",
	      KEYWARD_PKCS11_PATH, pin_file);
	ca_ok(ca_dir, "ca.cert ca.pem");
	make_csr("good", EC256, "/CN=good.example", "-addext subjectAltName=DNS:good.example");
	issue(ca_dir, "good", "WebServer");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	forget_all();
	assert_int_equal(chdir("/"), 0);
	kwt_stop(&hsm);
	kwt_cleanup(&hsm);
	return 0;
}

/* openssl ocsp for good.pem at port with extra args; its output (kept), whatever its exit code. */
static const char *ocsp_good(unsigned short port, const char *extra)
{
	static const char *out;

	out = NULL;
	sh(&out, "openssl ocsp -url http://127.0.0.1:%u/ocsp -CAfile ca.pem -issuer ca.pem -cert good.pem %s", port,
	   extra);
	return out;
}

/* ---- the delegated signer renewed ---- */

/* The serial of the signer certificate in openssl ocsp -resp_text's output (kept). */
static const char *signer_serial(const char *out)
{
	const char *cert = strstr(out, "Certificate:"), *serial;

	if (!cert || !(serial = ext_line(cert, "Serial Number:")))
		fail_full("no signer certificate in the answer:\n%s", out);
	return serial;
}

static void test_signer_renewed(void **state)
{
	const char *seen[64] = {NULL}, *out;
	size_t n_seen = 0;
	time_t start = time(NULL);
	unsigned short port;

	(void)state;
	/* renewed when less than 75% of its minute is left: every 15 s or so */
	start_with("[serve]\nocsp_signer_validity_minutes = 1\nocsp_signer_renew_percent = 75\n", &port, "signer.log");
	out = ocsp_good(port, "-resp_text");
	expect_has(last_cmd, out, "Response verify OK");
	/* one minute long (the setting replaced the 90-day certificate an earlier start may have left) */
	sh_ok("openssl x509 -in '%s/ocsp-signer.crt' -noout -checkend 61 && exit 1 || "
	      "openssl x509 -in '%s/ocsp-signer.crt' -noout -checkend 0",
	      ca_dir, ca_dir);
	/*
	 * past the end of the first signer certificates (90 s), with at least
	 * two renewals, every answer verified: with a nonce (signed now) and
	 * without (the cache, which must follow the signer)
	 */
	for (time_t end = start + 240; (n_seen < 3 || time(NULL) < start + 90) && time(NULL) < end; sleep(1)) {
		const char *serial;

		out = ocsp_good(port, "-resp_text");
		expect_has(last_cmd, out, "Response verify OK");
		expect_has(last_cmd, out, "good.pem: good");
		serial = signer_serial(out);
		if ((!n_seen || strcmp(seen[n_seen - 1], serial)) && n_seen < sizeof seen / sizeof seen[0])
			seen[n_seen++] = serial;
		out = ocsp_good(port, "-no_nonce");
		expect_has(last_cmd, out, "Response verify OK");
		expect_has(last_cmd, out, "good.pem: good");
	}
	if (n_seen < 3)
		fail_msg("the OCSP signer was renewed %zu times in 240 s, not twice (serials: %s %s)", n_seen - 1,
			 seen[0], n_seen > 1 ? seen[1] : "");
	/* each renewal is a certificate the CA issued and recorded */
	for (size_t i = 0; i < n_seen; i++)
		if (!listed(ca_dir, NULL, seen[i]))
			fail_msg("the OCSP signer %s is not in the CA's database", seen[i]);
	stop();
}

/* ---- CRLs on schedule ---- */

/* The CRL at path on port, verified under ca.pem: its number under header (kept output in *text). */
static unsigned long long crl_at(unsigned short port, const char *path, const char *header)
{
	const char *out = sh_ok("curl -sS -f -o dl.crl http://127.0.0.1:%u%s && "
				"openssl crl -inform DER -in dl.crl -CAfile ca.pem -noout -text",
				port, path);

	expect_has(last_cmd, out, "verify OK");
	return crl_number(out, header);
}

static void test_crl_republished(void **state)
{
	unsigned long long full0, delta0, full = 0, delta = 0;
	unsigned short port;

	(void)state;
	start_with("[serve]\ncrl_republish_seconds = 3\ndelta_republish_seconds = 2\n", &port, "crl.log");
	/* published at start, before the port opened (nobody ran keyward-ca crl) */
	assert_int_equal(http_status(port, "GET", "/crl/" CA_FILE ".crl"), 200);
	assert_int_equal(http_status(port, "GET", "/crl/" CA_FILE "+.crl"), 200);
	full0 = crl_at(port, "/crl/" CA_FILE ".crl", "X509v3 CRL Number:");
	delta0 = crl_at(port, "/crl/" CA_FILE "+.crl", "X509v3 CRL Number:");
	/* and again while it runs: both numbers go up, twice */
	for (time_t end = time(NULL) + 90; time(NULL) < end; sleep(1)) {
		full = crl_at(port, "/crl/" CA_FILE ".crl", "X509v3 CRL Number:");
		delta = crl_at(port, "/crl/" CA_FILE "+.crl", "X509v3 CRL Number:");
		if (full >= full0 + 2 && delta >= delta0 + 2)
			break;
	}
	if (full < full0 + 2 || delta < delta0 + 2)
		fail_msg("CRL numbers after 90 s: full %llu (at first %llu), delta %llu (at first %llu)", full, full0,
			 delta, delta0);
	/* the delta names a full CRL that was published as its base */
	{
		unsigned long long base = crl_at(port, "/crl/" CA_FILE "+.crl", "X509v3 Delta CRL Indicator:");

		assert_true(base >= full0);
	}
	stop();
}

/* ---- /health when the HSM goes away ---- */

/* GET /health until its status is want (and its body has needle), at most 60 s; the last response (kept). */
static const char *health_until(unsigned short port, int want, const char *needle)
{
	const char *out = NULL;

	for (time_t end = time(NULL) + 60; time(NULL) <= end; usleep(250000)) {
		out = NULL;
		sh(&out, "curl -sS -i -m 20 http://127.0.0.1:%u/health", port);
		if (out && strstr(out, want == 200 ? "HTTP/1.1 200" : "HTTP/1.1 503") && strstr(out, needle))
			return out;
	}
	fail_full("/health did not answer %d with %s within 60 s; last:\n%s", want, needle, out ? out : "");
	return NULL;
}

static void hsm_admin(const char *args)
{
	char *out = NULL;

	if (kwt_admin(&hsm, NULL, &out, "%s", args) != 0)
		fail_msg("keyward-admin %s: %s", args, out ? out : "");
	free(out);
}

static void test_health_hsm(void **state)
{
	const char *out;
	char unlock[500], path[600];
	unsigned short port;

	(void)state;
	snprintf(unlock, sizeof unlock, "unlock --passphrase-file %s", pass_file);
	/* a signer certificate of the CA's OCSPSigning template (90 days), not a short one another test left */
	snprintf(path, sizeof path, "%s/ocsp-signer.crt", ca_dir);
	unlink(path);
	start_with("[serve]\n", &port, "health.log");
	health_until(port, 200, "\"hsm\": \"ok\"");
	/*
	 * good.pem's answer in the cache before the lock: /health says nothing of
	 * pre-signing, which a slow (sanitizer) build may not have finished; an
	 * answer signed on request is cached too
	 */
	expect_has(last_cmd, ocsp_good(port, "-no_nonce"), "good.pem: good");
	/* locked: the HSM fails, the database does not; the cached answer is still served */
	hsm_admin("lock");
	out = health_until(port, 503, "\"hsm\": \"failing\"");
	expect_has("/health", out, "\"database\": \"ok\"");
	expect_has("/health", out, "\"status\": \"unavailable\"");
	out = ocsp_good(port, "-no_nonce");
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "good.pem: good");
	hsm_admin(unlock);
	health_until(port, 200, "\"status\": \"ok\"");
	/* gone: keywardd stopped */
	kwt_stop(&hsm);
	health_until(port, 503, "\"hsm\": \"failing\"");
	out = ocsp_good(port, "-no_nonce");
	expect_has(last_cmd, out, "good.pem: good");
	/* back, locked as every keywardd starts, then unlocked: serve signs again, with no restart of its own */
	kwt_start_config(&hsm, NULL);
	health_until(port, 503, "\"hsm\": \"failing\"");
	hsm_admin(unlock);
	health_until(port, 200, "\"hsm\": \"ok\"");
	out = ocsp_good(port, "");
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "good.pem: good");
	stop();
}

/*
 * keywardd frozen (SIGSTOP): it neither answers nor refuses, and serve's
 * client waits command_timeout for it (600 s here). /health must say the
 * HSM is failing without waiting that long, and probes piling up must not
 * hold the HTTP threads that serve the rest.
 */
static void test_health_hsm_frozen(void **state)
{
	char conf[600], saved[600];
	const char *out;
	unsigned short port;

	(void)state;
	snprintf(conf, sizeof conf, "%s/patient.conf", hsm.dir);
	sh_ok("sed 's/^command_timeout = .*/command_timeout = 600/' '%s/p.conf' > '%s' && grep -q 600 '%s'", hsm.dir,
	      conf, conf);
	snprintf(saved, sizeof saved, "%s", getenv("KEYWARD_CONF"));
	assert_int_equal(setenv("KEYWARD_CONF", conf, 1), 0);
	start_with("[serve]\n", &port, "frozen.log");
	assert_int_equal(setenv("KEYWARD_CONF", saved, 1), 0);
	health_until(port, 200, "\"hsm\": \"ok\"");
	assert_int_equal(kill(hsm.pid, SIGSTOP), 0);
	frozen = true;
	/* probes as a load balancer sends them, one after another, none waiting for the others */
	for (int i = 0; i < 6; i++)
		sh_ok("(curl -s -m 700 -o /dev/null http://127.0.0.1:%u/health &)", port);
	out = health_until(port, 503, "\"hsm\": \"failing\"");
	expect_has("/health", out, "\"database\": \"ok\"");
	/* meanwhile the rest is served: the CA certificate, the cached OCSP answer */
	assert_int_equal(http_status(port, "GET", "/ca/" CA_FILE ".crt"), 200);
	out = ocsp_good(port, "-no_nonce");
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "good.pem: good");
	assert_int_equal(kill(hsm.pid, SIGCONT), 0);
	frozen = false;
	health_until(port, 200, "\"hsm\": \"ok\"");
	stop();
}

/* ---- the per-address connection limit ---- */

/* A connection from 127.0.0.1 that had one answer and stays open (kept alive); its fd. */
static int idle_connection(unsigned short port)
{
	static const char req[] = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	char buf[4096];
	size_t n = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	/* the whole answer (its body ends with "}\n"): the server holds this connection now */
	while (n < sizeof buf - 1 && !strstr(buf, "}\n")) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;

		assert_int_equal(poll(&p, 1, 10000), 1);
		r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
		assert_true(r > 0);
		n += (size_t)r;
		buf[n] = '\0';
	}
	expect_has("a kept-alive /health", buf, "HTTP/1.1 200");
	return fd;
}

static void test_per_address_limit(void **state)
{
	static const char health[] = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
	char addr[32], *resp;
	const char *out;
	unsigned short port;
	int held[2];

	(void)state;
	start_with("[serve]\nper_address_connections = 2\nmax_connections = 100\nconnection_timeout = 60\n", &port,
		   "peraddr.log");
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	held[0] = idle_connection(port);
	held[1] = idle_connection(port);
	/* a third from 127.0.0.1: no answer */
	resp = http_raw_at(addr, "127.0.0.1", health, strlen(health), NULL);
	if (resp && resp[0])
		fail_msg("a third connection from 127.0.0.1 with per_address_connections = 2 was answered:\n%.500s",
			 resp);
	free(resp);
	/* another address (127.0.0.2, loopback too) is served: /health, and OCSP by curl */
	resp = http_raw_at(addr, "127.0.0.2", health, strlen(health), NULL);
	assert_non_null(resp);
	expect_has("/health from 127.0.0.2", resp, "HTTP/1.1 200");
	free(resp);
	sh_ok("openssl ocsp -issuer ca.pem -cert good.pem -no_nonce -reqout req.der");
	out = sh_ok("curl -sS -f --interface 127.0.0.2 -o get.der http://127.0.0.1:%u/ocsp/$(base64 -w0 req.der | "
		    "tr '+/' '-_' | tr -d '=') && openssl ocsp -respin get.der -issuer ca.pem -cert good.pem -CAfile "
		    "ca.pem",
		    port);
	expect_has(last_cmd, out, "good.pem: good");
	/* a slot freed: 127.0.0.1 is served again */
	close(held[0]);
	for (time_t end = time(NULL) + 30; http_status(port, "GET", "/health") != 200; usleep(200000))
		if (time(NULL) > end)
			fail_msg("a connection from 127.0.0.1 was not served within 30 s of one of its two closing");
	close(held[1]);
	stop();
}

/* ---- IPv6 ---- */

static void test_ipv6(void **state)
{
	char listen[64], log[600];
	const char *out;
	unsigned short port = kwt_free_port();

	(void)state;
	out = sh_ok("ip -6 addr show dev lo");
	if (!strstr(out, "::1/128"))
		fail_full("this machine has no IPv6 loopback (::1), which the test needs:\n%s", out);
	serve_conf(ca_dir, "[serve]\n");
	snprintf(listen, sizeof listen, "[::1]:%u", port);
	snprintf(log, sizeof log, "%s/ipv6.log", work);
	running = serve_start_at(ca_dir, listen, log);
	out = NULL;
	sh(&out, "openssl ocsp -url 'http://[::1]:%u/ocsp' -CAfile ca.pem -issuer ca.pem -cert good.pem", port);
	expect_has(last_cmd, out, "Response verify OK");
	expect_has(last_cmd, out, "good.pem: good");
	/* the group's first serve on a CA with no CRL yet: published before the port opened */
	out = sh_ok("curl -gsS -f -o v6.crl 'http://[::1]:%u/crl/" CA_FILE ".crl' && "
		    "openssl crl -inform DER -in v6.crl -CAfile ca.pem -noout",
		    port);
	expect_has(last_cmd, out, "verify OK");
	out = sh_ok("curl -gsS -f -o v6.crt 'http://[::1]:%u/ca/" CA_FILE ".crt' && "
		    "openssl x509 -inform DER -in v6.crt -out v6.pem && cmp v6.pem ca.pem",
		    port);
	stop();
}

/* ---- the systemd unit ---- */

/* Under systemd (Type=notify): READY=1 once it answers, with what it serves in STATUS; STOPPING=1 on SIGTERM. */
static void test_notify(void **state)
{
	struct kwt_notify n;
	unsigned short port;

	(void)state;
	kwt_notify_open(&n);
	setenv("NOTIFY_SOCKET", n.path, 1);
	start_with("[serve]\n", &port, "notify.log");
	unsetenv("NOTIFY_SOCKET");
	kwt_expect_notification(&n, "keyward-ca serve", "READY=1", "STATUS=serving CA \"" CA_NAME "\" on 127.0.0.1:");
	assert_int_equal(http_status(port, "GET", "/health"), 200);
	stop();
	kwt_expect_notification(&n, "keyward-ca serve", "STOPPING=1", NULL);
	kwt_notify_close(&n);
}

static void test_systemd_unit(void **state)
{
	const char *out, *level;
	double score;

	(void)state;
	/* the unit as built, its ExecStart pointed at the keyward-ca built here (the installed path is not there) */
	sh_ok("sed 's#^ExecStart=[^ ]*#ExecStart=%s#' '%s' > 'keyward-ca@ops.service'", ca_path(), KEYWARD_CA_UNIT);
	out = sh_ok("systemd-analyze --man=no verify ./keyward-ca@ops.service 2>&1");
	if (strspn(out, " \n") != strlen(out))
		fail_full("systemd-analyze verify keyward-ca@.service:\n%s", out);
	out = sh_ok("systemd-analyze security --offline=yes ./keyward-ca@ops.service 2>&1");
	level = line_with(out, "Overall exposure level");
	if (!level || !(level = strstr(level, ": ")) || sscanf(level + 2, "%lf", &score) != 1)
		fail_full("systemd-analyze security printed no exposure level:\n%s", out);
	/* keywardd's unit rates 1.4 (docs/operations.md); this one is hardened the same way */
	if (score > 2.0)
		fail_full("keyward-ca@.service's exposure level is %.1f, above 2.0:\n%s", score, out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_ipv6, kill_running),
		cmocka_unit_test_teardown(test_per_address_limit, kill_running),
		cmocka_unit_test_teardown(test_crl_republished, kill_running),
		cmocka_unit_test_teardown(test_health_hsm, kill_running),
		cmocka_unit_test_teardown(test_health_hsm_frozen, kill_running),
		cmocka_unit_test_teardown(test_signer_renewed, kill_running),
		cmocka_unit_test_teardown(test_notify, kill_running),
		cmocka_unit_test(test_systemd_unit),
	};

	return cmocka_run_group_tests_name("integration_ca_serve_ops", tests, setup, teardown);
}
