/*
 * Enrollment: the partition's one-time setup password buys this client a
 * permanent credential. The key pair (EC P-256) is made here and its
 * private half never leaves this host; the HSM only sees a PKCS#10 CSR.
 * The key (PKCS#8 PEM, AES-256-CBC under the PIN if one is given) and the
 * certificate are written atomically: temp file 0600 in the same
 * directory, fsync, rename, fsync of the directory.
 */
#include "client/client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/error.h"

/* mkdir -p of path's directory, new levels mode 0700 */
static kw_rv make_parents(const char *path)
{
	char *copy = strdup(path), *p;
	kw_rv rv = KW_OK;

	if (!copy)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory creating the directory of %s", path);
	p = strrchr(copy, '/');
	if (!p || p == copy) {
		free(copy);
		return KW_OK;
	}
	*p = '\0';
	for (p = copy + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
				rv = kw_error_set(KW_ERR_GENERAL, "cannot create directory %s: %s", copy,
						  strerror(errno));
				break;
			}
			*p = c;
			if (c == '\0')
				break;
		}
	}
	free(copy);
	return rv;
}

static kw_rv write_atomic(const char *path, const void *data, size_t len)
{
	char *tmp = NULL, *dir = NULL, *slash;
	const unsigned char *p = data;
	kw_rv rv;
	int fd = -1;

	rv = make_parents(path);
	if (rv)
		return rv;
	if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory writing %s", path);
	fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600 */
	if (fd < 0) {
		rv = kw_error_set(KW_ERR_GENERAL, "cannot create %s: %s", tmp, strerror(errno));
		free(tmp);
		return rv;
	}
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rv = kw_error_set(KW_ERR_GENERAL, "cannot write %s: %s", tmp, strerror(errno));
			goto out;
		}
		p += w;
		len -= (size_t)w;
	}
	if (fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
		rv = kw_error_set(KW_ERR_GENERAL, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		rv = kw_error_set(KW_ERR_GENERAL, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		rv = kw_error_set(KW_ERR_GENERAL, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	/* make the rename itself durable */
	dir = strdup(path);
	if (dir && (slash = strrchr(dir, '/'))) {
		int dfd;
		slash[slash == dir ? 1 : 0] = '\0';
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	free(dir);
	return KW_OK;
out:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	return rv;
}


static kw_rv make_csr(const char *partition, EVP_PKEY *pkey, unsigned char **der, int *der_len)
{
	char host[HOST_NAME_MAX + 1], *cn = NULL;
	X509_REQ *req = NULL;
	X509_NAME *name;
	kw_rv rv = KW_OK;

	*der = NULL;
	if (gethostname(host, sizeof host) != 0)
		snprintf(host, sizeof host, "localhost");
	host[sizeof host - 1] = '\0';
	if (asprintf(&cn, "%s@%s", partition, host) < 0)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory making the CSR");
	req = X509_REQ_new();
	if (!req) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "enrollment: %s failed", "creating the CSR");
		goto out;
	}
	name = X509_REQ_get_subject_name(req);
	if (!X509_REQ_set_version(req, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0)) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "enrollment: %s failed", "setting the CSR subject (CN is at most 64 characters: partition@hostname)");
		goto out;
	}
	if (!X509_REQ_set_pubkey(req, pkey) || !X509_REQ_sign(req, pkey, EVP_sha256())) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "enrollment: %s failed", "signing the CSR");
		goto out;
	}
	*der_len = i2d_X509_REQ(req, der);
	if (*der_len <= 0) {
		*der = NULL;
		rv = kw_error_openssl(KW_ERR_CRYPTO, "enrollment: %s failed", "encoding the CSR");
	}
out:
	X509_REQ_free(req);
	free(cn);
	return rv;
}

/* PEM text of the key (encrypted under pin if given), in secure memory. */
static kw_rv key_pem(EVP_PKEY *pkey, const char *pin, BIO **out)
{
	BIO *bio = BIO_new(BIO_s_secmem());
	int ok;

	*out = NULL;
	if (!bio)
		return kw_error_openssl(KW_ERR_CRYPTO, "enrollment: %s failed", "allocating memory for the key");
	if (pin)
		ok = PEM_write_bio_PKCS8PrivateKey(bio, pkey, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)pin);
	else
		ok = PEM_write_bio_PKCS8PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
	if (!ok) {
		BIO_free(bio);
		return kw_error_openssl(KW_ERR_CRYPTO, "enrollment: %s failed", "encoding the key");
	}
	*out = bio;
	return KW_OK;
}

/* The nearest directory of path that exists, into dir (size PATH_MAX). */
static kw_rv existing_dir(const char *path, char *dir, struct stat *st)
{
	char *slash;

	if (snprintf(dir, PATH_MAX, "%s", path) >= PATH_MAX)
		return kw_error_set(KW_ERR_CONFIG, "credential path too long: %s", path);
	for (;;) {
		slash = strrchr(dir, '/');
		if (!slash)
			snprintf(dir, PATH_MAX, ".");
		else if (slash == dir)
			dir[1] = '\0';
		else
			*slash = '\0';
		if (stat(dir, st) == 0)
			return KW_OK;
		if (errno != ENOENT || !slash || slash == dir)
			return kw_error_set(KW_ERR_GENERAL, "cannot look at directory %s: %s", dir, strerror(errno));
	}
}

static kw_rv check_target(const char *path, const char *what, bool force)
{
	char dir[PATH_MAX];
	struct stat st;
	kw_rv rv;

	if (lstat(path, &st) == 0) {
		if (!force)
			return kw_error_set(KW_ERR_EXISTS,
					    "the credential %s file %s exists already: registering again would replace "
					    "it; remove it first, or replace it on purpose (ksputil register --force)",
					    what, path);
	} else if (errno != ENOENT) {
		return kw_error_set(KW_ERR_GENERAL, "cannot look at %s: %s", path, strerror(errno));
	}
	if ((rv = existing_dir(path, dir, &st)))
		return rv;
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return kw_error_set(KW_ERR_PERMISSION,
				    "directory %s (of the credential %s file %s) is writable by group or others (mode "
				    "%04o): another user could replace the credential; chmod go-w %s",
				    dir, what, path, (unsigned)(st.st_mode & 07777), dir);
	return KW_OK;
}

kw_rv kw_enroll_check_files(kw_client *c, int force)
{
	kw_rv rv;

	if (!c)
		return kw_error_set(KW_ERR_ARGUMENTS, "kw_enroll_check_files: client is NULL");
	if (!c->cfg.cert || !c->cfg.key)
		return kw_error_set(KW_ERR_CONFIG,
				    "%s: [client] needs \"cert\" and \"key\": where enrollment writes the credential",
				    c->cfg.path);
	if ((rv = check_target(c->cfg.key, "key", force != 0)))
		return rv;
	return check_target(c->cfg.cert, "certificate", force != 0);
}

kw_rv kw_enroll(kw_client *c, const char *setup_password, const char *pin)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__Enroll en = KEYWARD__ENROLL__INIT;
	Keyward__Response *resp = NULL;
	struct kw_conn *conn = NULL;
	EVP_PKEY *pkey = NULL;
	X509 *cert = NULL;
	BIO *kbio = NULL, *cbio = NULL;
	unsigned char *csr = NULL;
	const unsigned char *p;
	char *data;
	long dlen;
	int csr_len = 0;
	kw_rv rv;

	if (!c)
		return kw_error_set(KW_ERR_ARGUMENTS, "kw_enroll: client is NULL");
	if (!setup_password || !*setup_password)
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "kw_enroll: the partition's setup password is missing (keyward-admin prints it)");
	if (pin && !*pin)
		return kw_error_set(KW_ERR_ARGUMENTS, "kw_enroll: the PIN is empty; pass NULL for no PIN");
	if (!c->cfg.cert || !c->cfg.key)
		return kw_error_set(KW_ERR_CONFIG,
				    "%s: [client] needs \"cert\" and \"key\": where enrollment writes the credential",
				    c->cfg.path);

	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!pkey) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "enrollment: %s failed", "generating the EC P-256 key");
		goto out;
	}
	rv = make_csr(c->cfg.partition, pkey, &csr, &csr_len);
	if (rv)
		goto out;

	rv = kw_client_connect(c, false, &conn);
	if (rv)
		goto out;
	en.partition = c->cfg.partition;
	en.setup_password = (char *)setup_password; /* the encoded frame is wiped after sending */
	en.csr.data = csr;
	en.csr.len = (size_t)csr_len;
	req.body_case = KEYWARD__REQUEST__BODY_ENROLL;
	req.enroll = &en;
	rv = kw_conn_call(conn, c->cfg.command_timeout, &req, &resp);
	if (rv) {
		char why[768];
		snprintf(why, sizeof why, "%s", kw_last_error());
		rv = kw_error_set(rv, "enrollment at %s: %s", c->cfg.hsms[conn->hsm].address, why);
		goto out;
	}
	if (resp->body_case != KEYWARD__RESPONSE__BODY_ENROLL || !resp->enroll->certificate.len) {
		rv = kw_error_set(KW_ERR_PROTOCOL, "enrollment at %s: the HSM answered without a certificate",
				  c->cfg.hsms[conn->hsm].address);
		goto out;
	}
	p = resp->enroll->certificate.data;
	cert = d2i_X509(NULL, &p, (long)resp->enroll->certificate.len);
	if (!cert || p != resp->enroll->certificate.data + resp->enroll->certificate.len) {
		ERR_clear_error();
		rv = kw_error_set(KW_ERR_PROTOCOL, "enrollment: the HSM sent a certificate that does not decode");
		goto out;
	}
	if (X509_check_private_key(cert, pkey) != 1) {
		ERR_clear_error();
		rv = kw_error_set(KW_ERR_CRYPTO, "enrollment: the HSM's certificate is not for the key sent");
		goto out;
	}

	rv = key_pem(pkey, pin, &kbio);
	if (rv)
		goto out;
	cbio = BIO_new(BIO_s_mem());
	if (!cbio || !PEM_write_bio_X509(cbio, cert)) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "enrollment: %s failed", "encoding the certificate");
		goto out;
	}
	dlen = BIO_get_mem_data(kbio, &data);
	rv = write_atomic(c->cfg.key, data, (size_t)dlen);
	if (rv)
		goto out;
	dlen = BIO_get_mem_data(cbio, &data);
	rv = write_atomic(c->cfg.cert, data, (size_t)dlen);
	if (rv)
		goto out;

	/* from now on connections present the new credential */
	pthread_mutex_lock(&c->lock);
	SSL_CTX_free(c->ctx_cred);
	c->ctx_cred = NULL;
	pthread_mutex_unlock(&c->lock);
	kw_client_drop_connections(c);
out:
	if (conn)
		kw_conn_close(conn, rv != KW_ERR_NETWORK && rv != KW_ERR_PROTOCOL && rv != KW_ERR_TIMEOUT);
	if (resp)
		keyward__response__free_unpacked(resp, NULL);
	BIO_free(kbio); /* secure memory: wiped */
	BIO_free(cbio);
	X509_free(cert);
	OPENSSL_free(csr);
	EVP_PKEY_free(pkey);
	return rv;
}
