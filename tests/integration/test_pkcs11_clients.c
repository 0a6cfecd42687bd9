/*
 * keyward-pkcs11.so under the peer clients deployments put in front of it,
 * against a real keywardd (development mode):
 *
 *  - OpenSSL 3.0 through libp11's pkcs11 engine: a CSR, a self-signed CA
 *    certificate, and a certificate for a key held in a file, each signed
 *    with an RSA-2048 and with an EC P-256 key that stay in the HSM;
 *  - OpenSSH: ssh-keygen -D lists the tokens' public keys as authorized_keys
 *    lines, and ssh-keygen -s signs user certificates with HSM keys as the
 *    SSH CA;
 *  - p11-kit: registered by a .module file the way it is installed, the
 *    module is loaded by p11-kit and by GnuTLS's p11tool without being named
 *    (tokens listed, a key made and used); the build writes that file.
 *
 * The public keys OpenSSL and OpenSSH work with are compared with those a
 * second client, pkcs11-tool, reads out of the token (p11tool checks its
 * signature against the token's public key itself), so a client that
 * signed with some other key fails the test. The tests make their own keys
 * and do not depend on one another.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <unistd.h>

#include "harness.h"

static struct kwt_server server;
static char work[300];
/* The user PIN of the dev credential (DIR/pin). */
static char pin[64];
/*
 * p11-kit skips the user configuration (~/.config/pkcs11) in a program run
 * by root ("skipping user config in program running as root", p11-kit 0.24
 * conf.c; pkcs11.conf(5) mentions setuid programs only) and has no variable
 * naming another configuration. So, as root, its clients run in a new user
 * namespace as uid 65534 (files still open as their real owner there);
 * otherwise this is empty.
 */
static const char *as_user = "";

/* A shell command line, run for at most KWT_RUN_TIMEOUT seconds (kwt_run). */
#define run(out, ...) kwt_run(work, out, __VA_ARGS__)

/*
 * The clients are not instrumented: under the sanitizers the ASan runtime
 * is preloaded into them, or loading the module fails with "ASan runtime
 * does not come first in initial library list" (seen with openssl and the
 * engine).
 */
#ifndef KWT_P11_ENV
#define KWT_P11_ENV ""
#endif
#define P11TOOL KWT_P11_ENV "pkcs11-tool --module '" KEYWARD_PKCS11_PATH "' "
/*
 * For --read-object: under the sanitizers, pkcs11-tool 0.23's own
 * use-after-free there (OpenSC, also with SoftHSM2) is reported, not fatal;
 * read_pubkey() fails on any report that names the module.
 */
#ifndef KWT_P11_ENV_READ
#define KWT_P11_ENV_READ ""
#endif
#define P11TOOL_READ KWT_P11_ENV_READ "pkcs11-tool --module '" KEYWARD_PKCS11_PATH "' "

/*
 * openssl with the engine configuration WORK/engine.cnf (a %s argument
 * first). Only the commands that use the engine get it: with libp11 0.4.12's
 * engine merely configured, OpenSSL 3.0 cannot sign a CSR with a key from a
 * file ("default_check:command not supported", with any module or none;
 * openssl/openssl#19680).
 */
#define OSSL_ENGINE "OPENSSL_CONF='%s/engine.cnf' " KWT_P11_ENV "openssl "

/* A p11-kit client with HOME=%s, without XDG_CONFIG_HOME (it would replace ~/.config), then as_user (%s). */
#define P11KIT_AS "env -u XDG_CONFIG_HOME HOME='%s' %senv " KWT_P11_ENV

/* Fails with the output unless the command succeeded without a word from the module or a sanitizer. */
static void expect_ok(const char *what, int rc, const char *out)
{
	if (rc != 0)
		fail_msg("%s: exit %d%s:\n%s", what, rc, rc == 124 ? " (timed out after " KWT_RUN_TIMEOUT " s)" : "",
			 out ? out : "");
	if (out &&
	    (strstr(out, "keyward-pkcs11: ") || strstr(out, "AddressSanitizer") || strstr(out, "runtime error:")))
		fail_msg("%s succeeded, but the module logged or a sanitizer reported:\n%s", what, out);
}

static void expect_has(const char *what, const char *out, const char *needle)
{
	if (!strstr(out, needle))
		fail_msg("%s: \"%s\" not in:\n%s", what, needle, out);
}

/* WORK/name, which must exist (caller frees). */
static char *work_file(const char *name)
{
	char path[400], *text;

	snprintf(path, sizeof path, "%s/%s", work, name);
	text = kwt_read_file(path, NULL);
	if (!text)
		fail_msg("%s was not written", path);
	return text;
}

/* WORK/a and WORK/b have the same contents. */
static void expect_same(const char *what, const char *a, const char *b)
{
	char *ta = work_file(a), *tb = work_file(b);

	if (strcmp(ta, tb) != 0)
		fail_msg("%s: %s and %s differ:\n%s\n%s", what, a, b, ta, tb);
	free(ta);
	free(tb);
}

/* pkcs11-tool makes a key pair on the machine token. */
static void keypairgen(const char *type, const char *label, const char *id)
{
	char *out = NULL;
	int rc = run(&out, P11TOOL "--login --pin '%s' --keypairgen --key-type %s --label %s --id %s", pin, type, label,
		     id);

	expect_ok("pkcs11-tool --keypairgen", rc, out);
	expect_has("pkcs11-tool --keypairgen", out, "Private Key Object");
	free(out);
}

/* pkcs11-tool reads the public key with CKA_ID id: WORK/name.der, and as PEM WORK/name.pem. */
static void read_pubkey(const char *id, const char *name)
{
	char *out = NULL, *report;
	int rc = run(&out, P11TOOL_READ "--read-object --type pubkey --id %s -o '%s/%s.der'", id, work, name);

	if (rc != 0)
		fail_msg("pkcs11-tool --read-object: exit %d:\n%s", rc, out);
	if (strstr(out, "keyward-pkcs11: ") || ((report = strstr(out, "AddressSanitizer")) &&
						(strstr(report, "keyward-pkcs11.so") || strstr(report, "src/pkcs11/"))))
		fail_msg("pkcs11-tool --read-object: the module logged or is in a sanitizer report:\n%s", out);
	free(out);
	rc = run(&out, "openssl pkey -pubin -inform DER -in '%s/%s.der' -out '%s/%s.pem'", work, name, work, name);
	expect_ok("openssl pkey (DER to PEM)", rc, out);
	free(out);
}

static int setup(void **state)
{
	char path[400];

	(void)state;
	kwt_start_dev(&server);
	snprintf(work, sizeof work, "%s/clients", server.dir);
	assert_int_equal(mkdir(work, 0700), 0);
	snprintf(path, sizeof path, "%s/machine-id", work);
	kwt_write_file(path, "0123456789abcdef0123456789abcdef\n");
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", path, 1), 0);
	assert_int_equal(setenv("KEYWARD_CONF", server.conf, 1), 0);

	kwt_dev_pin(&server, pin, sizeof pin);
	/* it goes into shell words and pkcs11: URIs as it is */
	if (strspn(pin, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(pin))
		fail_msg("the PIN \"%s\" has characters this test does not quote", pin);

	if (getuid() == 0)
		as_user = "unshare --user --map-user=65534 --map-group=65534 -- ";
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

/*
 * The HSM key `name` (CKA_ID id; newkey: openssl req's -newkey arguments
 * for a key of its type) signs through the engine: a CSR, a self-signed CA
 * certificate, and a certificate for the file key of WORK/leaf.csr. Each
 * carries or verifies with the public key pkcs11-tool reads from the token.
 */
static void openssl_key(const char *name, const char *id, const char *newkey)
{
	char uri[300], what[200], a[100], b[100], *out = NULL;
	int rc;

	read_pubkey(id, name);
	snprintf(b, sizeof b, "%s.pem", name);
	snprintf(uri, sizeof uri, "pkcs11:token=keyward%%20machine;object=%s;type=private;pin-value=%s", name, pin);

	/* a CSR */
	snprintf(what, sizeof what, "openssl req -new with %s", name);
	rc = run(&out,
		 OSSL_ENGINE
		 "req -new -engine pkcs11 -keyform engine -key '%s' -subj '/CN=%s request' -out '%s/%s.csr'",
		 work, uri, name, work, name);
	expect_ok(what, rc, out);
	free(out);
	rc = run(&out, "openssl req -verify -noout -in '%s/%s.csr'", work, name);
	expect_ok("openssl req -verify", rc, out);
	expect_has("openssl req -verify", out, "self-signature verify OK");
	free(out);
	rc = run(&out, "openssl req -pubkey -noout -in '%s/%s.csr' -out '%s/%s-csr.pem'", work, name, work, name);
	expect_ok("openssl req -pubkey", rc, out);
	free(out);
	snprintf(a, sizeof a, "%s-csr.pem", name);
	expect_same("the CSR's public key and the token's", a, b);

	/* a self-signed CA certificate */
	snprintf(what, sizeof what, "openssl req -x509 with %s", name);
	rc = run(&out,
		 OSSL_ENGINE "req -x509 -new -engine pkcs11 -keyform engine -key '%s' -subj '/CN=keyward test %s CA'"
			     " -days 30 -addext basicConstraints=critical,CA:TRUE"
			     " -addext keyUsage=critical,keyCertSign,cRLSign -out '%s/%s-ca.pem'",
		 work, uri, name, work, name);
	expect_ok(what, rc, out);
	free(out);
	rc = run(&out, "openssl verify -CAfile '%s/%s-ca.pem' '%s/%s-ca.pem'", work, name, work, name);
	expect_ok("openssl verify (self-signed)", rc, out);
	snprintf(a, sizeof a, "%s-ca.pem: OK", name);
	expect_has("openssl verify (self-signed)", out, a);
	free(out);
	rc = run(&out, "openssl x509 -pubkey -noout -in '%s/%s-ca.pem' -out '%s/%s-cert.pem'", work, name, work, name);
	expect_ok("openssl x509 -pubkey", rc, out);
	free(out);
	snprintf(a, sizeof a, "%s-cert.pem", name);
	expect_same("the certificate's public key and the token's", a, b);

	/* the CA certificate issues one for a key in a file */
	snprintf(what, sizeof what, "openssl x509 -req with the CA key %s", name);
	rc = run(&out,
		 OSSL_ENGINE "x509 -req -in '%s/leaf.csr' -CA '%s/%s-ca.pem' -CAkeyform engine -engine pkcs11"
			     " -CAkey '%s' -CAcreateserial -days 10 -out '%s/%s-leaf.pem'",
		 work, work, work, name, uri, work, name);
	expect_ok(what, rc, out);
	free(out);
	rc = run(&out, "openssl verify -CAfile '%s/%s-ca.pem' '%s/%s-leaf.pem'", work, name, work, name);
	expect_ok("openssl verify (issued)", rc, out);
	snprintf(a, sizeof a, "%s-leaf.pem: OK", name);
	expect_has("openssl verify (issued)", out, a);
	free(out);
	/* and only with the HSM key: a CA of the same name and key type, its key in a file, does not verify it */
	rc = run(&out,
		 "openssl req -x509 -newkey %s -noenc -keyout '%s/%s-other.key' -subj '/CN=keyward test %s CA'"
		 " -days 30 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
		 " -out '%s/%s-other.pem'",
		 newkey, work, name, name, work, name);
	expect_ok("openssl req -x509 (another CA)", rc, out);
	free(out);
	rc = run(&out, "openssl verify -CAfile '%s/%s-other.pem' '%s/%s-leaf.pem'", work, name, work, name);
	if (rc == 0 || !strstr(out, "certificate signature failure"))
		fail_msg("the certificate issued with %s, under a CA with another key: exit %d:\n%s", name, rc, out);
	free(out);
}

/* WORK/engine.cnf: OpenSSL's configuration loading libp11's engine on the module. */
static void engine_conf(void)
{
	char path[400], conf[1000];

	if (access(KWT_PKCS11_ENGINE, R_OK) != 0)
		fail_msg("no %s: install libengine-pkcs11-openssl (scripts/packages)", KWT_PKCS11_ENGINE);
	snprintf(conf, sizeof conf,
		 "openssl_conf = openssl_init\n"
		 "[openssl_init]\n"
		 "engines = engine_section\n"
		 "[engine_section]\n"
		 "pkcs11 = pkcs11_section\n"
		 "[pkcs11_section]\n"
		 "engine_id = pkcs11\n"
		 "dynamic_path = %s\n"
		 "MODULE_PATH = %s\n"
		 "init = 0\n",
		 KWT_PKCS11_ENGINE, KEYWARD_PKCS11_PATH);
	snprintf(path, sizeof path, "%s/engine.cnf", work);
	kwt_write_file(path, conf);
}

/* OpenSSL (libp11's pkcs11 engine) signs with an RSA and an EC key of the HSM. */
static void test_openssl_engine(void **state)
{
	char *out = NULL;
	int rc;

	(void)state;
	engine_conf();
	keypairgen("rsa:2048", "ossl-rsa", "11");
	keypairgen("EC:prime256v1", "ossl-ec", "12");
	/* the request of a key in a file, for the HSM CAs to sign */
	rc = run(&out,
		 "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -keyout '%s/leaf.key'"
		 " -subj '/CN=leaf' -out '%s/leaf.csr'",
		 work, work);
	expect_ok("openssl req (a key in a file)", rc, out);
	free(out);

	openssl_key("ossl-rsa", "11", "rsa:2048");
	openssl_key("ossl-ec", "12", "ec -pkeyopt ec_paramgen_curve:P-256");
}

/* openssl pkeyutl through the engine with the HSM key of URI uri: %s the arguments after -inkey. */
#define PKEYUTL OSSL_ENGINE "pkeyutl -engine pkcs11 -keyform engine -inkey '%s' "

/*
 * openssl pkeyutl -sign with HSM key name (hash-and-sign over a SHA-256
 * digest), checked with the public key pkcs11-tool reads out of the token.
 */
static void pkeyutl_sign(const char *name, const char *id, const char *uri)
{
	char *out = NULL;
	int rc;

	read_pubkey(id, name);
	rc = run(&out, "printf 'to be signed' | openssl dgst -sha256 -binary > '%s/%s.dgst'", work, name);
	expect_ok("openssl dgst", rc, out);
	free(out);
	rc = run(&out, PKEYUTL "-sign -pkeyopt digest:sha256 -in '%s/%s.dgst' -out '%s/%s.sig'", work, uri, work, name,
		 work, name);
	expect_ok("openssl pkeyutl -sign (engine)", rc, out);
	free(out);
	rc = run(&out,
		 "openssl pkeyutl -verify -pubin -inkey '%s/%s.pem' -pkeyopt digest:sha256 -in '%s/%s.dgst'"
		 " -sigfile '%s/%s.sig'",
		 work, name, work, name, work, name);
	expect_ok("openssl pkeyutl -verify", rc, out);
	expect_has("openssl pkeyutl -verify", out, "Signature Verified Successfully");
	free(out);
}

/*
 * openssl pkeyutl -decrypt of what openssl encrypted to HSM key name's
 * public key, with padding (PKCS#1 v1.5 or OAEP's pkeyopt).
 */
static void pkeyutl_decrypt(const char *name, const char *uri, const char *padding)
{
	char *out = NULL, *back;
	int rc;

	rc = run(&out,
		 "printf 'a secret for the HSM' > '%s/plain' && openssl pkeyutl -encrypt -pubin -inkey '%s/%s.pem' %s"
		 " -in '%s/plain' -out '%s/cipher'",
		 work, work, name, padding, work, work);
	expect_ok("openssl pkeyutl -encrypt", rc, out);
	free(out);
	rc = run(&out, PKEYUTL "-decrypt %s -in '%s/cipher' -out '%s/back'", work, uri, padding, work, work);
	expect_ok("openssl pkeyutl -decrypt (engine)", rc, out);
	free(out);
	back = work_file("back");
	if (strcmp(back, "a secret for the HSM") != 0)
		fail_msg("openssl pkeyutl -decrypt %s through the engine gave \"%s\"", padding, back);
	free(back);
}

/*
 * openssl pkeyutl through libp11's engine: -sign with RSA and EC keys,
 * -decrypt with RSA (PKCS#1 v1.5 and OAEP), and -derive, which the module
 * refuses: libp11 asks C_DeriveKey for a session secret that is not
 * sensitive and reads its CKA_VALUE, and keyward's derived keys are
 * sensitive keys in the HSM (docs/pkcs11.md, "Refused by policy").
 *
 * An Ed25519 key sits on the user token meanwhile: libp11 0.4.12 cannot
 * enumerate the keys of a token that holds one (pkcs11_object_from_handle
 * returns NULL, "ignore", for a key type it does not know, and its caller
 * takes that for an error, so every lookup on that token fails; 0.4.13
 * looks up by id or label and no longer trips on it). The engine's keys
 * therefore live on the machine token, which holds no Ed25519 key, and the
 * test shows that a neighbour token's Ed25519 key does not disturb them.
 */
static void test_openssl_pkeyutl(void **state)
{
	char uri_rsa[300], uri_ec[300], *out = NULL;
	int rc;

	(void)state;
	engine_conf();
	rc = run(&out,
		 P11TOOL "--token-label 'keyward user' --login --pin '%s' --keypairgen --key-type EC:edwards25519"
			 " --label pk-ed --id 34",
		 pin);
	expect_ok("pkcs11-tool --keypairgen Ed25519 (user token)", rc, out);
	free(out);
	keypairgen("rsa:2048", "pk-rsa", "31");
	keypairgen("EC:prime256v1", "pk-ec", "32");
	snprintf(uri_rsa, sizeof uri_rsa, "pkcs11:token=keyward%%20machine;object=pk-rsa;type=private;pin-value=%s",
		 pin);
	snprintf(uri_ec, sizeof uri_ec, "pkcs11:token=keyward%%20machine;object=pk-ec;type=private;pin-value=%s", pin);

	pkeyutl_sign("pk-rsa", "31", uri_rsa);
	pkeyutl_sign("pk-ec", "32", uri_ec);
	pkeyutl_decrypt("pk-rsa", uri_rsa, "-pkeyopt rsa_padding_mode:pkcs1");
	pkeyutl_decrypt("pk-rsa", uri_rsa, "-pkeyopt rsa_padding_mode:oaep");

	/* -derive: refused */
	rc = run(&out,
		 "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '%s/peer.key' &&"
		 " openssl pkey -in '%s/peer.key' -pubout -out '%s/peer.pem'",
		 work, work, work);
	expect_ok("openssl genpkey (the peer)", rc, out);
	free(out);
	rc = run(&out, PKEYUTL "-derive -peerkey '%s/peer.pem' -out '%s/shared'", work, uri_ec, work, work);
	if (rc == 0)
		fail_msg("openssl pkeyutl -derive through the engine got the shared secret out of the HSM:\n%s", out);
	/* libp11 derives in a read-only session: the module refuses before it reads the template */
	expect_has("openssl pkeyutl -derive (refused)", out, "Key derivation failed");
	free(out);
}

/* The token's key with CKA_ID id as an OpenSSH public key: WORK/name.pub, and its line in `line`. */
static void ssh_pubkey(const char *id, const char *name, char *line, size_t size)
{
	char path[400], *out = NULL;
	int rc;

	read_pubkey(id, name);
	rc = run(&out, "ssh-keygen -i -m PKCS8 -f '%s/%s.pem'", work, name);
	expect_ok("ssh-keygen -i", rc, out);
	out[strcspn(out, "\n")] = '\0';
	assert_true(strlen(out) < size);
	snprintf(line, size, "%s", out);
	free(out);
	snprintf(path, sizeof path, "%s/%s.pub", work, name);
	kwt_write_file(path, line);
}

/*
 * ssh-keygen -s: the HSM key `name` (type `type` as ssh-keygen -L names it)
 * signs a user certificate as the SSH CA. ssh-keygen -L checks the CA's
 * signature as it reads a certificate: a corrupted one is refused.
 */
static void ssh_certify(const char *name, const char *type)
{
	char what[400], want[300], fp[128] = "", *out = NULL, *cert, *blob_end;
	int rc;

	rc = run(&out, "cp '%s/user.pub' '%s/user-%s.pub'", work, work, name);
	expect_ok("cp", rc, out);
	free(out);
	snprintf(what, sizeof what, "ssh-keygen -s with the HSM key %s", name);
	rc = run(&out,
		 "SSH_ASKPASS='%s/askpass' SSH_ASKPASS_REQUIRE=force " KWT_P11_ENV
		 "ssh-keygen -s '%s/%s.pub' -D '" KEYWARD_PKCS11_PATH "' -I 'kw-%s' -n alice -V +1d '%s/user-%s.pub'",
		 work, work, name, name, work, name);
	expect_ok(what, rc, out);
	expect_has(what, out, "Signed user key");
	free(out);

	rc = run(&out, "ssh-keygen -l -f '%s/%s.pub'", work, name);
	expect_ok("ssh-keygen -l", rc, out);
	assert_int_equal(sscanf(out, "%*s %127s", fp), 1);
	free(out);
	rc = run(&out, "ssh-keygen -L -f '%s/user-%s-cert.pub'", work, name);
	expect_ok("ssh-keygen -L", rc, out);
	snprintf(want, sizeof want, "Signing CA: %s %s", type, fp);
	expect_has("ssh-keygen -L", out, want);
	snprintf(want, sizeof want, "Key ID: \"kw-%s\"", name);
	expect_has("ssh-keygen -L", out, want);
	free(out);

	/* one base64 character near the end of the certificate is in its signature */
	snprintf(what, sizeof what, "user-%s-cert.pub", name);
	cert = work_file(what);
	assert_non_null(blob_end = strchr(cert, ' '));
	blob_end = strpbrk(blob_end + 1, " \n");
	assert_true(blob_end && blob_end - cert > 100);
	blob_end[-10] = blob_end[-10] == 'A' ? 'B' : 'A';
	snprintf(what, sizeof what, "%s/bad-%s-cert.pub", work, name);
	kwt_write_file(what, cert);
	free(cert);
	rc = run(&out, "ssh-keygen -L -f '%s'", what);
	if (rc == 0)
		fail_msg("ssh-keygen -L read a certificate with a corrupted signature:\n%s", out);
	free(out);
}

/* OpenSSH: ssh-keygen lists the HSM's keys (no login) and makes an SSH CA of them. */
static void test_openssh(void **state)
{
	char rsa[1000], ec[400], want[1100], path[400], script[200], *out = NULL;
	int rc;

	(void)state;
	keypairgen("rsa:2048", "ssh-k-rsa", "21");
	keypairgen("EC:prime256v1", "ssh-k-ec", "22");
	ssh_pubkey("21", "ssh-k-rsa", rsa, sizeof rsa);
	ssh_pubkey("22", "ssh-k-ec", ec, sizeof ec);
	if (strncmp(rsa, "ssh-rsa AAAA", 12) != 0 || strncmp(ec, "ecdsa-sha2-nistp256 AAAA", 24) != 0)
		fail_msg("ssh-keygen -i made:\n%s\n%s", rsa, ec);

	/* each line: the key pkcs11-tool reads, then the label as the comment */
	rc = run(&out, KWT_P11_ENV "ssh-keygen -D '" KEYWARD_PKCS11_PATH "'");
	expect_ok("ssh-keygen -D", rc, out);
	snprintf(want, sizeof want, "%s ssh-k-rsa\n", rsa);
	expect_has("ssh-keygen -D", out, want);
	snprintf(want, sizeof want, "%s ssh-k-ec\n", ec);
	expect_has("ssh-keygen -D", out, want);
	free(out);

	/* the PIN comes from SSH_ASKPASS: ssh-keygen -s has no option for it */
	snprintf(path, sizeof path, "%s/askpass", work);
	snprintf(script, sizeof script, "#!/bin/sh\necho '%s'\n", pin);
	kwt_write_file(path, script);
	assert_int_equal(chmod(path, 0700), 0);
	rc = run(&out, "ssh-keygen -q -t ed25519 -N '' -C alice -f '%s/user'", work);
	expect_ok("ssh-keygen -t ed25519", rc, out);
	free(out);
	ssh_certify("ssh-k-rsa", "RSA");
	ssh_certify("ssh-k-ec", "ECDSA");
}

/*
 * p11-kit list-modules with HOME=home names the module and its three tokens.
 * Not under the sanitizers: the p11-kit 0.24 program with the ASan runtime
 * preloaded deadlocks at exit in libp11-kit's destructor (freelocale waits
 * on glibc's setlocale lock, whose reader count has wrapped), even
 * `p11-kit --help` with no module configured; p11tool does not, and covers
 * the registration there.
 */
#ifndef KWT_P11_SANITIZE
static void list_modules(const char *home)
{
	static const char head[] = "keyward: " KEYWARD_PKCS11_PATH "\n";
	char *out = NULL, *section, *end;
	int rc = run(&out, P11KIT_AS "p11-kit list-modules", home, as_user);

	expect_ok("p11-kit list-modules", rc, out);
	if (strncmp(out, head, strlen(head)) == 0)
		section = out;
	else if ((section = strstr(out, head)) && section[-1] != '\n')
		section = NULL;
	if (!section)
		fail_msg("p11-kit list-modules: no module \"keyward\" at " KEYWARD_PKCS11_PATH ":\n%s", out);
	/* its lines: up to the next one that is not indented */
	for (end = section; (end = strchr(end, '\n')) && end[1] == ' '; end++)
		;
	if (end)
		end[1] = '\0';
	expect_has("p11-kit list-modules", section, "\n    token: keyward machine\n");
	expect_has("p11-kit list-modules", section, "\n    token: keyward user\n");
	expect_has("p11-kit list-modules", section, "\n    token: keyward shared\n");
	free(out);
}
#endif

/*
 * The build's p11-kit registration names the installed module and lets
 * p11-kit go on without it; a copy naming the built module, in a user
 * configuration, makes p11-kit and GnuTLS load it. That configuration says
 * "user-config: only": the result does not depend on the system's modules
 * (and, under the sanitizers, p11-kit-trust.so's constructor deadlocks like
 * the destructor described at list_modules()).
 */
static void test_p11kit(void **state)
{
	char path[400], reg[2000] = "", *text, *line, *save, *out = NULL;
	const char *copy;
	bool module = false, critical = false;
	size_t n;
	int rc;

	(void)state;
	text = kwt_read_file(KEYWARD_PKCS11_MODULE_FILE, NULL);
	if (!text)
		fail_msg("the build did not write the p11-kit registration %s", KEYWARD_PKCS11_MODULE_FILE);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		copy = line;
		if (strncmp(line, "module: ", 8) == 0) {
			n = strlen(line + 8);
			if (line[8] != '/' || n < 25 || strcmp(line + 8 + n - 25, "/pkcs11/keyward-pkcs11.so") != 0)
				fail_msg("%s: not the installed module: %s", KEYWARD_PKCS11_MODULE_FILE, line);
			module = true;
			copy = "module: " KEYWARD_PKCS11_PATH;
		}
		if (strcmp(line, "critical: no") == 0)
			critical = true;
		assert_true(strlen(reg) + strlen(copy) + 2 < sizeof reg);
		strcat(strcat(reg, copy), "\n");
	}
	free(text);
	if (!module || !critical)
		fail_msg("%s has no %s line", KEYWARD_PKCS11_MODULE_FILE, module ? "\"critical: no\"" : "\"module: \"");

	/* two user configurations that leave out the system's modules: one registers keyward */
	rc = run(&out, "mkdir -p '%s/home/.config/pkcs11/modules' '%s/empty/.config/pkcs11'", work, work);
	expect_ok("mkdir", rc, out);
	free(out);
	snprintf(path, sizeof path, "%s/home/.config/pkcs11/modules/keyward.module", work);
	kwt_write_file(path, reg);
	snprintf(path, sizeof path, "%s/home/.config/pkcs11/pkcs11.conf", work);
	kwt_write_file(path, "user-config: only\n");
	snprintf(path, sizeof path, "%s/empty/.config/pkcs11/pkcs11.conf", work);
	kwt_write_file(path, "user-config: only\n");

	/* without the registration, p11-kit does not load the module */
	snprintf(path, sizeof path, "%s/empty", work);
	rc = run(&out, P11KIT_AS "p11tool --list-tokens", path, as_user);
	expect_ok("p11tool --list-tokens (no registration)", rc, out);
	if (strstr(out, KEYWARD_PKCS11_PATH) || strstr(out, "keyward"))
		fail_msg("p11-kit loads the module without the registration:\n%s", out);
	free(out);

	snprintf(path, sizeof path, "%s/home", work);
#ifndef KWT_P11_SANITIZE
	list_modules(path);
#endif
	/* GnuTLS, through p11-kit: lists the tokens, makes a key and signs with it */
	rc = run(&out, P11KIT_AS "p11tool --list-tokens", path, as_user);
	expect_ok("p11tool --list-tokens", rc, out);
	/* the machine token's serial: 16 hex digits of its own (test_pkcs11_conform checks their derivation) */
	{
		static const char url[] = "URL: pkcs11:model=network%20HSM;manufacturer=keyward;serial=",
				  token[] = ";token=keyward%20machine\n";
		const char *u = strstr(out, url), *serial = u ? u + sizeof url - 1 : NULL;

		if (!serial || strspn(serial, "0123456789abcdef") != 16 ||
		    strncmp(serial + 16, token, sizeof token - 1))
			fail_msg("p11tool --list-tokens: no machine token with a 16-digit serial in:\n%s", out);
	}
	expect_has("p11tool --list-tokens", out, "Module: " KEYWARD_PKCS11_PATH "\n");
	free(out);
	rc = run(&out,
		 "GNUTLS_PIN='%s' " P11KIT_AS "p11tool --login --generate-privkey=ECDSA --curve=secp256r1"
		 " --label p11kit-ec --id 31 'pkcs11:token=keyward%%20machine'",
		 pin, path, as_user);
	expect_ok("p11tool --generate-privkey", rc, out);
	free(out);
	rc = run(&out,
		 "GNUTLS_PIN='%s' " P11KIT_AS "p11tool --login --test-sign"
		 " 'pkcs11:token=keyward%%20machine;object=p11kit-ec'",
		 pin, path, as_user);
	expect_ok("p11tool --test-sign", rc, out);
	expect_has("p11tool --test-sign", out, "Signing using ECDSA-SHA256... ok\n");
	expect_has("p11tool --test-sign", out, "Verifying against public key in the token... ok\n");
	free(out);
	/* the key is in keyward, as pkcs11-tool sees it */
	rc = run(&out, P11TOOL "--login --pin '%s' -O", pin);
	expect_ok("pkcs11-tool -O", rc, out);
	expect_has("pkcs11-tool -O", out, "label:      p11kit-ec\n");
	expect_has("pkcs11-tool -O", out, "ID:         31\n");
	free(out);
}

int main(void)
{
	/* independent: each test makes its own keys */
	// clang-format off
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openssl_engine),
		cmocka_unit_test(test_openssl_pkeyutl),
		cmocka_unit_test(test_openssh),
		cmocka_unit_test(test_p11kit),
	};
	// clang-format on

	return cmocka_run_group_tests_name("integration_pkcs11_clients", tests, setup, teardown);
}
