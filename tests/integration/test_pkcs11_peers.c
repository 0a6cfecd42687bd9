/*
 * keyward-pkcs11.so with the peers issue 16 names that the other tests do
 * not run, against a real keywardd in development mode:
 *
 *   OpenSSH  ssh-keygen -D lists an HSM key as an authorized_keys line; an
 *            sshd the test starts (its own configuration, host key and
 *            AuthorizedKeysFile in a temporary directory, a free loopback
 *            port, as the current user) lets `ssh -I keyward-pkcs11.so`
 *            in with that key, the PIN given through SSH_ASKPASS
 *   Java     a SunPKCS11 configuration naming the module: keytool -list
 *            shows the HSM key with its certificate (issued by a CA in
 *            files) as a PrivateKeyEntry, jarsigner signs a jar with
 *            it, and jarsigner -verify accepts the jar
 *
 * The peers are Debian packages (openssh-server, default-jdk-headless;
 * scripts/packages): a missing one fails the test, it never skips.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "harness.h"

#ifndef KWT_P11_ENV
#define KWT_P11_ENV ""
#endif
#define MOD KEYWARD_PKCS11_PATH
#define P11TOOL KWT_P11_ENV "pkcs11-tool --module '" MOD "' --login --pin \"$KWT_PIN\" "
#define run(out, ...) kwt_run(work, out, __VA_ARGS__)
#define run_ok(what, ...) kwt_run_ok(work, what, __VA_ARGS__)

static struct kwt_server server;
static char work[300], pin[64];

static int setup(void **state)
{
	(void)state;
	kwt_start_dev(&server);
	kwt_p11_env(&server, pin, sizeof pin);
	assert_int_equal(setenv("KWT_PIN", pin, 1), 0);
	snprintf(work, sizeof work, "%s/peers", server.dir);
	assert_int_equal(mkdir(work, 0700), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop(&server);
	kwt_cleanup(&server);
	return 0;
}

/* Waits (at most 10 s) until something accepts on 127.0.0.1:port. */
static void wait_port(unsigned short port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	for (int i = 0; i < 100; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

		assert_true(fd >= 0);
		ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
		close(fd);
		if (ok)
			return;
		usleep(100 * 1000);
	}
	fail_msg("nothing listens on 127.0.0.1:%u", port);
}

/* The sshd a test started, stopped after the test whatever its outcome. */
static pid_t sshd;

static int stop_sshd(void **state)
{
	int st;

	(void)state;
	if (sshd > 0) {
		kill(sshd, SIGTERM);
		waitpid(sshd, &st, 0);
		sshd = 0;
	}
	return 0;
}

static void test_ssh_login(void **state)
{
	char path[400], text[1200], *out, *line, *end;
	unsigned short port = kwt_free_port();
	int st;

	(void)state;
	free(run_ok("keypairgen", P11TOOL "--keypairgen --key-type EC:prime256v1 --label ssh-login --id 51"));
	/* the key's authorized_keys line, from ssh-keygen -D */
	out = run_ok("ssh-keygen -D", KWT_P11_ENV "ssh-keygen -D '" MOD "'");
	assert_non_null(line = strstr(out, "ecdsa-sha2-nistp256 "));
	assert_non_null(end = strstr(line, " ssh-login\n"));
	end[strlen(" ssh-login")] = '\0';
	snprintf(path, sizeof path, "%s/authorized_keys", work);
	kwt_write_file(path, line);
	free(out);

	/* an sshd of the test's own: host key, keys file and port here */
	free(run_ok("ssh-keygen host key", "ssh-keygen -q -t ed25519 -N '' -f '%s/host_ed25519'", work));
	snprintf(text, sizeof text,
		 "Port %u\nListenAddress 127.0.0.1\nHostKey %s/host_ed25519\nPidFile %s/sshd.pid\n"
		 "AuthorizedKeysFile %s/authorized_keys\nStrictModes no\nUsePAM no\nPubkeyAuthentication yes\n"
		 "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
		 "AllowUsers %s\n",
		 port, work, work, work, getenv("USER") && *getenv("USER") ? getenv("USER") : "root");
	snprintf(path, sizeof path, "%s/sshd_config", work);
	kwt_write_file(path, text);
	/* privilege separation wants its empty directory, which the package's service would make */
	assert_true(mkdir("/run/sshd", 0755) == 0 || access("/run/sshd", F_OK) == 0);
	sshd = fork();
	assert_true(sshd >= 0);
	if (sshd == 0) {
		snprintf(text, sizeof text, "%s/sshd.log", work);
		freopen(text, "w", stderr);
		execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", path, (char *)NULL);
		_exit(127);
	}
	wait_port(port);

	/* log in with the HSM key; the PIN comes from SSH_ASKPASS */
	snprintf(path, sizeof path, "%s/askpass", work);
	snprintf(text, sizeof text, "#!/bin/sh\necho '%s'\n", pin);
	kwt_write_file(path, text);
	assert_int_equal(chmod(path, 0700), 0);
	out = run_ok("ssh -I keyward-pkcs11.so",
		     KWT_P11_ENV "SSH_ASKPASS='%s' SSH_ASKPASS_REQUIRE=force DISPLAY=none "
				 "ssh -F /dev/null -I '" MOD "' -p %u -o StrictHostKeyChecking=no "
				 "-o UserKnownHostsFile='%s/known_hosts' -o PasswordAuthentication=no "
				 "-o KbdInteractiveAuthentication=no 127.0.0.1 echo logged-in-with-keyward",
		     path, port, work);
	assert_non_null(strstr(out, "logged-in-with-keyward"));
	free(out);
	/* and without the module, the same login is refused: it was the HSM key */
	st = run(&out,
		 "ssh -F /dev/null -p %u -o IdentitiesOnly=yes -o IdentityFile=/dev/null -o BatchMode=yes "
		 "-o StrictHostKeyChecking=no -o UserKnownHostsFile='%s/known_hosts' 127.0.0.1 true",
		 port, work);
	assert_int_not_equal(st, 0);
	free(out);

	assert_int_equal(kill(sshd, SIGTERM), 0);
	assert_int_equal(waitpid(sshd, &st, 0), sshd);
	sshd = 0;
}

static void test_java(void **state)
{
	char path[400], text[600], *out;

	(void)state;
	free(run_ok("keypairgen", P11TOOL "--keypairgen --key-type rsa:2048 --label jsign --id 52"));
	/*
	 * Its certificate, stored next to it: issued by a CA in files for the
	 * HSM's public key (certtool would self-sign it on the HSM, but hangs
	 * at exit under the sanitizers; test_pkcs11 runs it)
	 */
	free(run_ok("read the public key", P11TOOL "--read-object --type pubkey --id 52 -o '%s/jsign.pub'", work));
	free(run_ok("openssl: the certificate",
		    "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -keyout ca.key "
		    "-subj '/CN=keyward test CA' -days 30 -out ca.pem && "
		    "openssl req -new -key ca.key -subj '/CN=keyward jar signer' -out jsign.csr && "
		    "openssl x509 -req -in jsign.csr -force_pubkey jsign.pub -CA ca.pem -CAkey ca.key -set_serial 7 "
		    "-days 30 -outform DER -out jsign.der",
		    work));
	free(run_ok("pkcs11-tool --write-object",
		    P11TOOL "--write-object '%s/jsign.der' --type cert --id 52 --label jsign", work));

	/* SunPKCS11, slot 0: the machine token */
	snprintf(path, sizeof path, "%s/sunpkcs11.cfg", work);
	snprintf(text, sizeof text, "name = keyward\nlibrary = %s\nslot = 0\n", MOD);
	kwt_write_file(path, text);
#ifdef KWT_P11_SANITIZE
	/* the JVM catches its own SIGSEGVs: the ASan runtime preloaded for the module must leave them alone */
#define JAVA_ENV KWT_P11_ENV "ASAN_OPTIONS=detect_leaks=0:handle_segv=0:allow_user_segv_handler=1 "
#else
#define JAVA_ENV ""
#endif
#define SUNPKCS11 "-storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 -providerArg '%s' -storepass \"$KWT_PIN\""
	out = run_ok("keytool -list", JAVA_ENV "keytool -list " SUNPKCS11, path);
	assert_non_null(strstr(out, "jsign, PrivateKeyEntry"));
	free(out);
	free(run_ok("jar", "cd '%s' && printf 'signed by the HSM\\n' > a.txt && jar cf t.jar a.txt", work));
	free(run_ok("jarsigner", JAVA_ENV "jarsigner -keystore NONE " SUNPKCS11 " '%s/t.jar' jsign", path, work));
	out = run_ok("jarsigner -verify", "jarsigner -verify -verbose -certs '%s/t.jar'", work);
	assert_non_null(strstr(out, "jar verified."));
	assert_non_null(strstr(out, "CN=keyward jar signer"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_ssh_login, stop_sshd),
		cmocka_unit_test(test_java),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
