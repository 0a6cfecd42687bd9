/*
 * Development mode (keywardd --dev DIR): a throwaway HSM in one step.
 * Creates DIR with a fresh store (any old one is removed), TLS material,
 * an unlocked master key that exists only in memory, the partition "dev"
 * with a client credential in DIR/client/ (its key encrypted under the
 * user PIN in DIR/pin), and DIR/client.conf, written
 * after the listener is bound so it names the real port. Clients point
 * at it with KEYWARD_CONF=DIR/client.conf; keyward-admin with
 * KEYWARD_ADMIN_SOCKET=DIR/admin.sock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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

kw_rv kw_dev_prepare(struct kw_server *srv)
{
	unsigned char setup[32], hash[KW_SETUP_HASH_LEN];
	uint64_t pid;
	kw_rv rv;

	if ((rv = kw_keystore_init_dev(srv->ks)))
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
		kw_keystore_audit(srv->ks, "", "keywardd", "dev.prepare", "development store, partition dev");
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
