/*
 * Enrollment: the partition's one-time setup password buys this client a
 * permanent credential. The key pair (EC P-256) is made here and its
 * private half never leaves this host; the HSM only sees a PKCS#10 CSR.
 * The key (PKCS#8 PEM, AES-256-CBC under the PIN if one is given) and the
 * certificate are written atomically: temp file 0600 in the same
 * directory, fsync, rename, fsync of the directory.
 *
 * With a PIN, the PIN file's name is then recorded in the configuration
 * (kw_client_record_pin_file), so every program that reads it can open
 * the credential unattended.
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
#include "common/fs.h"
#include "common/log.h"

/* path's new content, written to a temporary file of mode `mode` and renamed over it */
static kw_rv write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char *tmp = NULL, *dir = NULL, *slash;
	const unsigned char *p = data;
	kw_rv rv;
	int fd = -1;

	rv = kw_make_parents(path, NULL);
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
	if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
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
		return kw_error_set(KW_ERR_ARGUMENTS, "registering: no client given");
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
		return kw_error_set(KW_ERR_ARGUMENTS, "registering: no client given");
	if (!setup_password || !*setup_password)
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "registering: the partition's setup password is missing (keyward-admin partition "
				    "create or partition password prints one)");
	if (pin && !*pin)
		return kw_error_set(KW_ERR_ARGUMENTS, "registering: the PIN is empty (no PIN: leave it out)");
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
	rv = kw_conn_call(conn, c->cfg.command_timeout, &req, &resp, NULL);
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
	rv = write_atomic(c->cfg.key, data, (size_t)dlen, 0600);
	if (rv)
		goto out;
	dlen = BIO_get_mem_data(cbio, &data);
	rv = write_atomic(c->cfg.cert, data, (size_t)dlen, 0600);
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

/* ---- recording pin_file in the configuration ---- */

/* Whether line (without its end) sets key, commented out (#, ;) or not: "key =", "key:". */
static bool line_sets(const char *line, size_t len, const char *key, bool commented)
{
	size_t i = 0, klen = strlen(key);

	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (commented) {
		if (i >= len || (line[i] != '#' && line[i] != ';'))
			return false;
		i++;
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
	}
	if (len - i < klen || strncmp(line + i, key, klen) != 0)
		return false;
	i += klen;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return i < len && (line[i] == '=' || line[i] == ':');
}

/* The section a "[name]" line opens (into name), or false when line is no section header. */
static bool section_of(const char *line, size_t len, char *name, size_t size)
{
	size_t i = 0, j;

	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i >= len || line[i] != '[')
		return false;
	for (j = i + 1; j < len && line[j] != ']'; j++)
		;
	if (j >= len)
		return false;
	snprintf(name, size, "%.*s", (int)(j - i - 1), line + i + 1);
	return true;
}

/*
 * text with "pin_file = value" in its [client] section: in place of an
 * active pin_file line, else of a commented-out one, else right after the
 * section's header. *out is malloc'd.
 */
static kw_rv set_pin_file_line(const char *text, size_t len, const char *value, char **out, size_t *out_len)
{
	size_t header_end = 0, active_at = 0, active_end = 0, comment_at = 0, comment_end = 0;
	bool in_client = false, have_header = false, have_active = false, have_comment = false;
	size_t at, end;
	char section[64], *buf;
	int w;

	for (size_t off = 0; off < len;) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t line_end = nl ? (size_t)(nl - text) + 1 : len, line_len = (nl ? (size_t)(nl - text) : len) - off;

		if (section_of(text + off, line_len, section, sizeof section)) {
			in_client = strcmp(section, "client") == 0;
			if (in_client && !have_header) {
				have_header = true;
				header_end = line_end;
			}
		} else if (in_client && !have_active && line_sets(text + off, line_len, "pin_file", false)) {
			have_active = true;
			active_at = off;
			active_end = nl ? (size_t)(nl - text) : len;
		} else if (in_client && !have_comment && line_sets(text + off, line_len, "pin_file", true)) {
			have_comment = true;
			comment_at = off;
			comment_end = nl ? (size_t)(nl - text) : len;
		}
		off = line_end;
	}
	if (!have_header)
		return kw_error_set(KW_ERR_CONFIG, "the configuration has no [client] section");
	if (have_active) {
		at = active_at;
		end = active_end;
	} else if (have_comment) {
		at = comment_at;
		end = comment_end;
	} else {
		at = end = header_end;
	}
	/* an inserted line ends with a newline; one that replaces another keeps that one's */
	w = asprintf(&buf, "%.*s%spin_file = %s%s%.*s", (int)at, text,
		     at == end && at > 0 && text[at - 1] != '\n' ? "\n" : "", value, at == end ? "\n" : "",
		     (int)(len - end), text + end);
	if (w < 0)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory recording pin_file");
	*out = buf;
	*out_len = (size_t)w;
	return KW_OK;
}

kw_rv kw_client_record_pin_file(kw_client *c, const char *pin_file)
{
	char *abs = NULL, *text = NULL, *changed = NULL, *copy = NULL;
	size_t len = 0, changed_len = 0;
	struct stat st;
	FILE *f = NULL;
	kw_rv rv = KW_OK;

	if (!c || !pin_file || !*pin_file)
		return kw_error_set(KW_ERR_ARGUMENTS, "recording the PIN file: no %s given", c ? "file" : "client");
	abs = realpath(pin_file, NULL);
	if (!abs)
		return kw_error_set(KW_ERR_CONFIG, "cannot find the PIN file %s: %s", pin_file, strerror(errno));
	if (c->cfg.pin_file && strcmp(c->cfg.pin_file, abs) == 0)
		goto out; /* recorded already */
	f = fopen(c->cfg.path, "re");
	if (!f || fstat(fileno(f), &st) != 0) {
		rv = kw_error_set(KW_ERR_PERMISSION, "cannot read %s to record the PIN file in it: %s", c->cfg.path,
				  strerror(errno));
		goto out;
	}
	text = malloc(KW_CONFIG_MAX + 1);
	if (!text) {
		rv = kw_error_set(KW_ERR_NO_MEMORY, "out of memory recording pin_file");
		goto out;
	}
	len = fread(text, 1, KW_CONFIG_MAX + 1, f);
	if (ferror(f) || len > KW_CONFIG_MAX) {
		rv = kw_error_set(KW_ERR_CONFIG, "cannot read %s to record the PIN file in it", c->cfg.path);
		goto out;
	}
	if ((rv = set_pin_file_line(text, len, abs, &changed, &changed_len))) {
		char why[300];
		snprintf(why, sizeof why, "%s", kw_last_error());
		rv = kw_error_set(rv, "cannot record the PIN file in %s: %s", c->cfg.path, why);
		goto out;
	}
	if ((rv = write_atomic(c->cfg.path, changed, changed_len, st.st_mode & 07777))) {
		char why[600];
		snprintf(why, sizeof why, "%s", kw_last_error());
		rv = kw_error_set(
			KW_ERR_PERMISSION,
			"cannot record the PIN file in %s (%s): add the line \"pin_file = %s\" to its [client] "
			"section yourself",
			c->cfg.path, why, abs);
		goto out;
	}
	/* the owner stays (root recording for a service's configuration); only root can, and only root needs to */
	if ((st.st_uid != geteuid() || st.st_gid != getegid()) && chown(c->cfg.path, st.st_uid, st.st_gid) != 0)
		kw_debug(KW_DEBUG_STORE, "%s: cannot give it back to uid %u: %s", c->cfg.path, (unsigned)st.st_uid,
			 strerror(errno));
	copy = strdup(abs);
	if (!copy) {
		rv = kw_error_set(KW_ERR_NO_MEMORY, "out of memory recording pin_file");
		goto out;
	}
	pthread_mutex_lock(&c->lock);
	free(c->cfg.pin_file);
	c->cfg.pin_file = copy;
	/* a credential loaded without a PIN is loaded again with the file's */
	SSL_CTX_free(c->ctx_cred);
	c->ctx_cred = NULL;
	pthread_mutex_unlock(&c->lock);
out:
	if (f)
		fclose(f);
	free(text);
	free(changed);
	free(abs);
	return rv;
}
