/*
 * keyward-ca's command line: opening the CA for a command, and what
 * commands print: certificates as PEM, JSON documents (jansson: names and
 * subjects escaped as JSON wants, nothing else on standard output).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>

#include "ca/cli/cli.h"

int cli_open(const struct opts *o, unsigned flags, struct ca **ca)
{
	const char *warning;

	if (ca_open(o->dir, flags, ca))
		return -1;
	if ((warning = ca_open_warning(*ca)))
		fprintf(stderr, "keyward-ca: warning: %s\n", warning);
	return 0;
}

int cli_write_cert(const char *out, const unsigned char *der, size_t len)
{
	FILE *f = out ? fopen(out, "we") : stdout;
	int ok;

	if (!f)
		return ca_fail(CA_ERR_FAILED, "cannot write %s: %s", out, strerror(errno));
	ok = PEM_write(f, PEM_STRING_X509, "", der, (long)len);
	if (out)
		ok = fclose(f) == 0 && ok;
	else
		ok = fflush(f) == 0 && ok;
	return ok ? 0 : ca_fail(CA_ERR_FAILED, "cannot write the certificate%s%s", out ? " to " : "", out ? out : "");
}

json_t *cli_pem_json(const unsigned char *der, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long n = b && PEM_write_bio(b, PEM_STRING_X509, "", der, (long)len) ? BIO_get_mem_data(b, &pem) : 0;
	json_t *j = n > 0 ? json_stringn(pem, (size_t)n) : NULL;

	BIO_free(b);
	return j;
}

int cli_print_json(json_t *j)
{
	int rc = j && json_dumpf(j, stdout, JSON_INDENT(2)) == 0 && fputc('\n', stdout) != EOF ? 0 : -1;

	json_decref(j);
	fflush(stdout);
	return rc ? ca_fail(CA_ERR_FAILED, "cannot write JSON to standard output") : 0;
}

const char *cli_time(time_t t, char *buf, size_t size)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

void cli_progress(struct timespec *shown, bool finished, const char *fmt, ...)
{
	struct timespec now;
	va_list ap;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!finished && (now.tv_sec - shown->tv_sec) * 1000 + (now.tv_nsec - shown->tv_nsec) / 1000000 < 200)
		return;
	*shown = now;
	fputs("\rkeyward-ca: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (finished)
		fputc('\n', stderr);
}
