/*
 * Development mode (keywardd --dev DIR): a throwaway HSM in one step.
 * Creates DIR with a fresh store (any old one is removed), TLS material,
 * an unlocked master key that exists only in memory, the partition "dev"
 * with a client credential in DIR/client/ (its key encrypted under the
 * user PIN in DIR/pin), and DIR/client.conf, written
 * after the listener is bound so it names the real port. Clients point
 * at it with KEYWARD_CONF=DIR/client.conf; keyward-admin with
 * KEYWARD_ADMIN_SOCKET=DIR/admin.sock.
 *
 * On PostgreSQL (--store postgresql://...) the store outlives the process
 * and other nodes share it, so the master key cannot live in one node's
 * memory: the first node makes it under a random passphrase it writes to
 * DIR/dev-passphrase (mode 0600; development mode only, a real store is
 * unlocked per node with keyward-admin unlock). A node started on the same
 * DIR and store finds the store made and that file, unlocks with it and
 * joins: it keeps the partition, credential and TLS material of DIR, takes
 * the admin socket DIR/admin-PORT.sock and adds itself to client.conf as
 * a further [hsm] of the same priority. A store made by anything else is
 * refused, never reset.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"

#define DEV_PARTITION "dev"

static kw_rv make_csr(EVP_PKEY *key, unsigned char **der, int *der_len)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	kw_rv rv = KW_OK;

	*der = NULL;
	if (!req || !name ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)"dev client", -1, -1, 0) ||
	    !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, key) ||
	    !X509_REQ_sign(req, key, EVP_sha256()) || (*der_len = i2d_X509_REQ(req, der)) <= 0)
		rv = kw_error_set(KW_ERR_CRYPTO, "dev: cannot build the client CSR");
	X509_NAME_free(name);
	X509_REQ_free(req);
	return rv;
}

/*
 * A fresh user PIN of DEV_PIN_DIGITS decimal digits, written to DIR/pin
 * (mode 0600): the PIN a PKCS#11 login takes, and the pin_file of
 * DIR/client.conf, so the development tools run without asking.
 */
#define DEV_PIN_DIGITS 8

static kw_rv write_dev_pin(const char *dir, char pin[DEV_PIN_DIGITS + 1])
{
	unsigned char r[DEV_PIN_DIGITS];
	char path[600];
	int fd;
	ssize_t n;

	if (RAND_bytes(r, sizeof r) != 1)
		return kw_error_set(KW_ERR_CRYPTO, "dev: random generator failed");
	for (size_t i = 0; i < sizeof r; i++)
		pin[i] = (char)('0' + r[i] % 10); /* the bias of 256 % 10 is harmless for a dev PIN */
	pin[DEV_PIN_DIGITS] = '\n';
	OPENSSL_cleanse(r, sizeof r);
	snprintf(path, sizeof path, "%s/pin", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return kw_error_set(KW_ERR_CONFIG, "dev: cannot create %s: %s", path, strerror(errno));
	n = write(fd, pin, DEV_PIN_DIGITS + 1);
	if (close(fd) != 0 || n != DEV_PIN_DIGITS + 1)
		return kw_error_set(KW_ERR_CONFIG, "dev: cannot write %s", path);
	pin[DEV_PIN_DIGITS] = '\0';
	return KW_OK;
}

/* The same exchange a client makes with kw_enroll, done in-process. */
static kw_rv enroll_dev_client(struct kw_server *srv, uint64_t pid, const unsigned char hash[KW_SETUP_HASH_LEN])
{
	char pin[DEV_PIN_DIGITS + 1];
	const char *dir = srv->cfg.dev_dir;
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	unsigned char *csr = NULL, fpr[KW_FINGERPRINT_LEN];
	char path[600], subject[160];
	X509 *cert = NULL;
	int csr_len = 0;
	kw_rv rv;

	if (!key)
		return kw_error_set(KW_ERR_CRYPTO, "dev: client key generation failed");
	rv = make_csr(key, &csr, &csr_len);
	if (rv == KW_OK)
		rv = kw_tls_issue_client(&srv->tls, csr, (size_t)csr_len, DEV_PARTITION, &cert);
	if (rv)
		goto out;
	kw_tls_fingerprint(cert, fpr);
	X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
	if ((rv = kw_keystore_enroll(srv->ks, pid, hash, fpr, subject)))
		goto out;
	snprintf(path, sizeof path, "%s/client", dir);
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		rv = kw_error_set(KW_ERR_CONFIG, "dev: cannot create %s: %s", path, strerror(errno));
		goto out;
	}
	if ((rv = write_dev_pin(dir, pin)))
		goto out;
	snprintf(path, sizeof path, "%s/client/%s.key", dir, DEV_PARTITION);
	if ((rv = kw_tls_write_pem_key(path, key, pin)))
		goto out;
	snprintf(path, sizeof path, "%s/client/%s.crt", dir, DEV_PARTITION);
	rv = kw_tls_write_pem_cert(path, cert);
out:
	OPENSSL_cleanse(pin, sizeof pin);
	OPENSSL_free(csr);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rv;
}

#define DEV_PASS_BYTES 32

/* A fresh passphrase for a shared dev store's master key, in DIR/dev-passphrase (mode 0600). */
static kw_rv write_dev_passphrase(const char *dir, char pass[2 * DEV_PASS_BYTES + 1])
{
	unsigned char r[DEV_PASS_BYTES];
	char path[600];
	ssize_t n;
	int fd;

	if (RAND_bytes(r, sizeof r) != 1)
		return kw_error_set(KW_ERR_CRYPTO, "dev: random generator failed");
	for (size_t i = 0; i < sizeof r; i++)
		snprintf(pass + 2 * i, 3, "%02x", r[i]);
	OPENSSL_cleanse(r, sizeof r);
	snprintf(path, sizeof path, "%s/" KW_DEV_PASSPHRASE_FILE, dir);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return kw_error_set(KW_ERR_CONFIG, "dev: cannot create %s: %s", path, strerror(errno));
	n = write(fd, pass, 2 * DEV_PASS_BYTES);
	if (close(fd) != 0 || n != 2 * DEV_PASS_BYTES)
		return kw_error_set(KW_ERR_CONFIG, "dev: cannot write %s", path);
	return KW_OK;
}

/* Joins the shared dev store of DIR: unlocks it with DIR/dev-passphrase. */
static kw_rv join_shared(struct kw_server *srv)
{
	const char *dir = srv->cfg.dev_dir;
	char path[600], pass[2 * DEV_PASS_BYTES + 2];
	kw_rv rv;

	snprintf(path, sizeof path, "%s/" KW_DEV_PASSPHRASE_FILE, dir);
	if (access(path, F_OK) != 0)
		return kw_error_set(KW_ERR_CONFIG,
				    "--dev: the store %s is already initialized and %s has no " KW_DEV_PASSPHRASE_FILE
				    ": it is not the development store of this directory (give an empty database, or "
				    "the directory of the node that made it)",
				    srv->cfg.store, dir);
	rv = kw_secret_read_file(path, "the dev passphrase", pass, sizeof pass);
	if (rv)
		return rv;
	rv = kw_keystore_unlock_passphrase(srv->ks, pass);
	OPENSSL_cleanse(pass, sizeof pass);
	if (rv)
		return kw_error_set(rv, "--dev: cannot unlock the store %s with %s: %s", srv->cfg.store, path,
				    kw_last_error());
	snprintf(path, sizeof path, "%s/client/%s.crt", dir, DEV_PARTITION);
	if (access(path, F_OK) != 0)
		return kw_error_set(KW_ERR_CONFIG, "--dev: %s is missing: the node that made this store wrote it",
				    path);
	srv->cfg.dev_join = true;
	kw_keystore_audit(srv->ks, "", "keywardd", "dev.join", "a further node of the development store");
	return KW_OK;
}

kw_rv kw_dev_prepare(struct kw_server *srv)
{
	unsigned char setup[32], hash[KW_SETUP_HASH_LEN];
	char pass[2 * DEV_PASS_BYTES + 1];
	bool shared = kw_keystore_shared(srv->ks);
	uint64_t pid;
	kw_rv rv;

	if (shared && kw_keystore_initialized(srv->ks))
		return join_shared(srv);
	if (shared) {
		/* the first node: a master key under a passphrase the next nodes read from DIR */
		srv->cfg.dev_join = false;
		rv = write_dev_passphrase(srv->cfg.dev_dir, pass);
		if (!rv)
			rv = kw_keystore_init_passphrase(srv->ks, pass);
		OPENSSL_cleanse(pass, sizeof pass);
	} else {
		rv = kw_keystore_init_dev(srv->ks);
	}
	if (rv)
		return rv;
	/* a setup password nobody sees, consumed at once by the dev client */
	if (RAND_bytes(setup, sizeof setup) != 1)
		return kw_error_set(KW_ERR_CRYPTO, "dev: random generator failed");
	SHA256(setup, sizeof setup, hash);
	OPENSSL_cleanse(setup, sizeof setup);
	rv = kw_keystore_partition_create(srv->ks, DEV_PARTITION, hash, &pid);
	if (rv == KW_OK)
		rv = enroll_dev_client(srv, pid, hash);
	OPENSSL_cleanse(hash, sizeof hash);
	if (rv == KW_OK)
		kw_keystore_audit(srv->ks, "", "keywardd", "dev.prepare",
				  shared ? "development store on PostgreSQL, partition dev"
					 : "development store, partition dev");
	return rv;
}

kw_rv kw_dev_write_client_conf(struct kw_server *srv)
{
	const char *dir = srv->cfg.dev_dir;
	char path[600], tmp[610];
	char host[sizeof srv->bound];
	FILE *f;

	snprintf(host, sizeof host, "%s", srv->bound);
	*strrchr(host, ':') = '\0';
	if (strcmp(host, "0.0.0.0") == 0)
		snprintf(host, sizeof host, "127.0.0.1");
	else if (strcmp(host, "[::]") == 0)
		snprintf(host, sizeof host, "::1");
	else if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	snprintf(path, sizeof path, "%s/client.conf", dir);
	if (srv->cfg.dev_join) {
		/* one more node of the same store: clients may use any of them */
		f = fopen(path, "a");
		if (!f)
			return kw_error_set(KW_ERR_CONFIG, "dev: cannot append to %s: %s", path, strerror(errno));
		fprintf(f, "\n[hsm dev-%u]\nhost = %s\nport = %u\npriority = 0\n", srv->port, host, srv->port);
		if (fclose(f) != 0)
			return kw_error_set(KW_ERR_CONFIG, "dev: cannot write %s: %s", path, strerror(errno));
		return KW_OK;
	}
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return kw_error_set(KW_ERR_CONFIG, "dev: cannot write %s: %s", tmp, strerror(errno));
	fprintf(f,
		"# Written by keywardd --dev: the development HSM and its partition \"%s\".\n"
		"[client]\n"
		"partition = %s\n"
		"ca = tls/ca.crt\n"
		"cert = client/%s.crt\n"
		"key = client/%s.key\n"
		"# the key is encrypted under the user PIN in this file\n"
		"pin_file = pin\n"
		"\n"
		"[hsm dev]\n"
		"host = %s\n"
		"port = %u\n"
		"priority = 0\n",
		DEV_PARTITION, DEV_PARTITION, DEV_PARTITION, DEV_PARTITION, host, srv->port);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		fclose(f);
		unlink(tmp);
		return kw_error_set(KW_ERR_CONFIG, "dev: cannot write %s: %s", tmp, strerror(errno));
	}
	fclose(f);
	if (rename(tmp, path) != 0)
		return kw_error_set(KW_ERR_CONFIG, "dev: cannot rename %s: %s", tmp, strerror(errno));
	return KW_OK;
}
