/*
 * keyward-ca serve over HTTPS (serve.conf's tls_certificate and tls_key):
 * the two PEM files read for libmicrohttpd, which speaks TLS through
 * GnuTLS. They are checked with OpenSSL first (a certificate, an
 * unencrypted key that only its owner may read, the key the certificate
 * names), so that a wrong file is refused by name instead of failing
 * inside MHD_start_daemon with no reason. This key is the responder's TLS
 * key, not the CA's: the CA's stays in the HSM.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca/serve_internal.h"

#define TLS_FILE_MAX (1u << 20)

/*
 * The key's bytes (NUL-terminated), read only if the file is its owner's
 * alone (as kw_secret_read_file asks of secrets), and as that reads them:
 * with read(2) straight into the one buffer, so that no stdio buffer or
 * outgrown copy is freed still holding the key.
 */
static char *read_key(const char *path, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t size = 0, n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0 || fstat(fd, &st) != 0) {
		ca_error("tls_key %s: cannot read it", path);
		goto out;
	}
	if (st.st_mode & 077) {
		ca_error("tls_key %s has mode %04o: group or others may read it; refused (chmod 600 %s)", path,
			 (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > TLS_FILE_MAX) {
		ca_error("tls_key %s: not a file of at most %u bytes", path, TLS_FILE_MAX);
		goto out;
	}
	size = (size_t)st.st_size;
	if (!(buf = malloc(size + 1))) {
		ca_error("tls_key %s: out of memory", path);
		goto out;
	}
	while (n < size) {
		ssize_t r = read(fd, buf + n, size - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	if (n < size) {
		ca_error("tls_key %s: read error", path);
		OPENSSL_cleanse(buf, size);
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = '\0';
	*len = n;
out:
	if (fd >= 0)
		close(fd);
	return buf;
}

static int check_pair(const struct serve_conf *sc, const char *cert, size_t cert_len, const char *key, size_t key_len)
{
	BIO *cb = BIO_new_mem_buf(cert, (int)cert_len), *kb = BIO_new_mem_buf(key, (int)key_len);
	X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, (void *)"") : NULL;
	int rc = 0;

	if (!x)
		rc = ca_error("tls_certificate %s: no PEM certificate in it", sc->tls_certificate);
	else if (!k)
		rc = ca_error("tls_key %s: no unencrypted PEM private key in it", sc->tls_key);
	else if (X509_check_private_key(x, k) != 1)
		rc = ca_error("tls_key %s is not the key of tls_certificate %s", sc->tls_key, sc->tls_certificate);
	ERR_clear_error();
	X509_free(x);
	EVP_PKEY_free(k);
	BIO_free(cb);
	BIO_free(kb);
	return rc;
}

int serve_tls_load(const struct serve_conf *sc, struct serve_tls *t)
{
	size_t cert_len = 0;

	memset(t, 0, sizeof *t);
	if (!sc->tls_certificate[0] && !sc->tls_key[0])
		return 0;
	if (!sc->tls_certificate[0] || !sc->tls_key[0])
		return ca_error("serve.conf: tls_certificate and tls_key go together (HTTPS needs both)");
	if (!(t->cert = ca_read_file(sc->tls_certificate, TLS_FILE_MAX, &cert_len)))
		return ca_error("tls_certificate %s: %s", sc->tls_certificate, ca_last_error());
	if (!(t->key = read_key(sc->tls_key, &t->key_len)) || check_pair(sc, t->cert, cert_len, t->key, t->key_len)) {
		serve_tls_free(t);
		return -1;
	}
	t->on = true;
	return 0;
}

void serve_tls_free(struct serve_tls *t)
{
	if (t->key)
		OPENSSL_cleanse(t->key, t->key_len);
	free(t->key);
	free(t->cert);
	memset(t, 0, sizeof *t);
}
