/*
 * Helpers for bench/ca, the keyward-ca benchmark: requests made ahead of the
 * timed part, and a stopwatch that also reports peak memory, so bench/ca
 * needs nothing beyond the build and OpenSSL (no GNU time).
 *
 *   keyward-bench-ca csr DIR COUNT
 *       Writes DIR/0.csr .. DIR/<COUNT-1>.csr (PEM): each a fresh EC P-256
 *       key, subject CN=host-N.bench.test and a DNS SAN of the same name,
 *       which the built-in WebServer template accepts. The keys are
 *       discarded: only the CA's side is measured.
 *
 *   keyward-bench-ca run OUTFILE COMMAND [ARG...]
 *       Runs COMMAND with standard output and error sent to OUTFILE, waits
 *       for it and prints one line:
 *       "<wall seconds> <user seconds> <system seconds> <peak RSS KiB> <exit status>"
 *       Peak RSS is the child's ru_maxrss (wait4), the figure GNU time -v
 *       prints as "Maximum resident set size". Exits 1 if COMMAND failed.
 *
 *   keyward-bench-ca crl FILE ISSUER_CERT
 *       Reads a CRL (DER or PEM) and prints "<entries> <signature> <digest>":
 *       the number of revoked certificates, "verified" if ISSUER_CERT's key
 *       verifies the signature, and the SHA-256 of the entries' DER sorted
 *       by serial number, so two CRLs that list the same revocations (serial,
 *       date, reason) print the same digest whatever their order.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "clock.h"

static double tv_seconds(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* One request: a fresh P-256 key, CN and DNS SAN host-N.bench.test. 0 or -1. */
static int write_csr(const char *dir, unsigned long n)
{
	char path[4096], host[64], san[80];
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *ext = NULL;
	FILE *f = NULL;
	int ok;

	snprintf(host, sizeof host, "host-%lu.bench.test", n);
	snprintf(san, sizeof san, "DNS:%s", host);
	snprintf(path, sizeof path, "%s/%lu.csr", dir, n);
	ok = key && req && name && exts &&
	     X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0) &&
	     X509_REQ_set_version(req, 0) && X509_REQ_set_subject_name(req, name) && X509_REQ_set_pubkey(req, key) &&
	     (ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san)) && sk_X509_EXTENSION_push(exts, ext) &&
	     X509_REQ_add_extensions(req, exts) && X509_REQ_sign(req, key, EVP_sha256()) > 0 &&
	     (f = fopen(path, "we")) && PEM_write_X509_REQ(f, req);
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok)
		fprintf(stderr, "keyward-bench-ca: cannot make %s\n", path);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_NAME_free(name);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return ok ? 0 : -1;
}

static int cmd_csr(const char *dir, const char *count_text)
{
	char *end;
	unsigned long count = strtoul(count_text, &end, 10);

	if (*end || count == 0 || count > 1000000) {
		fprintf(stderr, "keyward-bench-ca: COUNT: 1 to 1000000, not %s\n", count_text);
		return 2;
	}
	for (unsigned long i = 0; i < count; i++)
		if (write_csr(dir, i))
			return 1;
	return 0;
}

static int cmd_run(const char *out, char **argv)
{
	struct rusage ru;
	double start, elapsed;
	int status, fd;
	pid_t pid;

	if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
		fprintf(stderr, "keyward-bench-ca: %s: %s\n", out, strerror(errno));
		return 1;
	}
	start = now();
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "keyward-bench-ca: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		fprintf(stderr, "keyward-bench-ca: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	if (wait4(pid, &status, 0, &ru) != pid) {
		fprintf(stderr, "keyward-bench-ca: wait4: %s\n", strerror(errno));
		return 1;
	}
	elapsed = now() - start;
	status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	printf("%.3f %.3f %.3f %ld %d\n", elapsed, tv_seconds(ru.ru_utime), tv_seconds(ru.ru_stime), ru.ru_maxrss,
	       status);
	return status ? 1 : 0;
}

static int cmd_crl(const char *path, const char *issuer_path)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	STACK_OF(X509_REVOKED) * entries;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	X509_CRL *crl = NULL;
	X509 *issuer = NULL;
	FILE *f;
	int n = 0, verified, rc = 1;

	if ((f = fopen(issuer_path, "re"))) {
		issuer = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if ((f = fopen(path, "re"))) {
		if (!(crl = d2i_X509_CRL_fp(f, NULL))) {
			rewind(f);
			crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
		}
		fclose(f);
	}
	if (!crl || !issuer || !ctx) {
		fprintf(stderr, "keyward-bench-ca: cannot read %s\n", !crl ? path : issuer_path);
		goto out;
	}
	verified = X509_CRL_verify(crl, X509_get0_pubkey(issuer)) == 1;
	ERR_clear_error();
	/* by serial; each entry re-encoded is its DER as issued (DER has one encoding) */
	if (!X509_CRL_sort(crl) || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	entries = X509_CRL_get_REVOKED(crl);
	n = sk_X509_REVOKED_num(entries);
	for (int i = 0; i < n; i++) {
		unsigned char *der = NULL;
		int len = i2d_X509_REVOKED(sk_X509_REVOKED_value(entries, i), &der);

		if (len <= 0 || !EVP_DigestUpdate(ctx, der, (size_t)len)) {
			OPENSSL_free(der);
			goto out;
		}
		OPENSSL_free(der);
	}
	if (!EVP_DigestFinal_ex(ctx, md, &md_len))
		goto out;
	printf("%d %s ", n, verified ? "verified" : "NOT-VERIFIED");
	for (unsigned int i = 0; i < md_len; i++)
		printf("%02x", md[i]);
	printf("\n");
	rc = verified ? 0 : 1;
out:
	EVP_MD_CTX_free(ctx);
	X509_CRL_free(crl);
	X509_free(issuer);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "csr"))
		return cmd_csr(argv[2], argv[3]);
	if (argc >= 4 && !strcmp(argv[1], "run"))
		return cmd_run(argv[2], argv + 3);
	if (argc == 4 && !strcmp(argv[1], "crl"))
		return cmd_crl(argv[2], argv[3]);
	fprintf(stderr, "usage: keyward-bench-ca csr DIR COUNT\n"
			"       keyward-bench-ca run OUTFILE COMMAND [ARG...]\n"
			"       keyward-bench-ca crl FILE ISSUER_CERT\n");
	return 2;
}
