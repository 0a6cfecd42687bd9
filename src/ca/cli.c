/*
 * keyward-ca: opening an instance, and writing certificates.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/cli.h"

void ca_close(struct ca *ca)
{
	ca_db_close(ca->db);
	sk_X509_pop_free(ca->chain, X509_free);
	EVP_PKEY_free(ca->priv);
	EVP_PKEY_free(ca->pub);
	ca_token_close(ca->token);
}

int ca_open(const struct opts *o, bool need_key, bool need_cert, struct ca *ca)
{
	memset(ca, 0, sizeof *ca);
	if (ca_conf_load(&ca->conf, o->dir) || ca_db_open(&ca->conf, false, &ca->db))
		return -1;
	/* an edit by hand goes to the audit log; failing that (a read-only database), the command still runs */
	if (ca_conf_note_edits(&ca->conf, ca->db))
		fprintf(stderr, "keyward-ca: warning: %s\n", ca_last_error());
	if (need_cert && ca_cert_load_chain(&ca->conf, &ca->chain))
		return -1;
	return need_key ? ca_open_key(ca) : 0;
}

int ca_open_key(struct ca *ca)
{
	return ca_token_open(&ca->conf, &ca->token) || ca_token_key(ca->token, ca->conf.key, &ca->priv, &ca->pub) ? -1
														  : 0;
}

X509 *ca_cert(struct ca *ca)
{
	return sk_X509_value(ca->chain, 0);
}

int write_cert(const char *out, const unsigned char *der, size_t len)
{
	FILE *f = out ? fopen(out, "we") : stdout;
	int ok;

	if (!f)
		return ca_error("cannot write %s: %s", out, strerror(errno));
	ok = PEM_write(f, PEM_STRING_X509, "", der, (long)len);
	if (out)
		ok = fclose(f) == 0 && ok;
	return ok ? 0 : ca_error("cannot write the certificate");
}

bool same_key(EVP_PKEY *a, EVP_PKEY *b)
{
	return EVP_PKEY_eq(a, b) == 1;
}

void normalize_serial(const char *in, char *out, size_t size)
{
	size_t n = 0, zeros = 0;

	/* as keyward-ca prints them (and openssl x509 -serial): upper-case hex, no leading zeros, no colons */
	for (; *in && n + 1 < size; in++)
		if (*in != ':')
			out[n++] = (char)(*in >= 'a' && *in <= 'f' ? *in - 'a' + 'A' : *in);
	out[n] = '\0';
	while (zeros + 1 < n && out[zeros] == '0')
		zeros++;
	memmove(out, out + zeros, n - zeros + 1);
}
