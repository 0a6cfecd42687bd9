/*
 * keywardd's TLS material: a private CA that signs the server certificate
 * and every partition's client credentials, created on first start, and the
 * SSL_CTX (TLS 1.3 only, client certificate requested, verified against
 * that CA). Which partition a certificate belongs to is not read from the
 * certificate but looked up by fingerprint in the keystore, so a credential
 * is valid only while the keystore says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"

#define CA_DAYS 3650
#define SERVER_DAYS 825
#define CLIENT_DAYS 1825

static kw_rv random_serial(X509 *cert)
{
	unsigned char raw[16];
	BIGNUM *bn;
	kw_rv rv = KW_OK;

	if (RAND_bytes(raw, sizeof raw) != 1)
		return kw_error_openssl(KW_ERR_CRYPTO, "tls: random serial");
	raw[0] &= 0x7f; /* positive */
	bn = BN_bin2bn(raw, sizeof raw, NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
		rv = kw_error_openssl(KW_ERR_CRYPTO, "tls: serial");
	BN_free(bn);
	return rv;
}

static kw_rv add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return kw_error_openssl(KW_ERR_CRYPTO, "tls: extension");
	X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return KW_OK;
}

/* A certificate for `pub` named `subject`, signed by issuer_key (self-signed when issuer is NULL). */
static kw_rv make_cert(const X509_NAME *subject, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *issuer_key, int days,
		       const char *const *exts, X509 **out)
{
	X509 *cert = X509_new();
	kw_rv rv;

	*out = NULL;
	if (!cert)
		return KW_ERR_NO_MEMORY;
	X509_set_version(cert, 2);
	rv = random_serial(cert);
	if (rv)
		goto out;
	X509_set_subject_name(cert, subject);
	X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : subject);
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_time_adj_ex(X509_getm_notAfter(cert), days, 0, NULL);
	X509_set_pubkey(cert, pub);
	for (unsigned i = 0; exts[i]; i += 2) {
		rv = add_ext(cert, issuer ? issuer : cert, OBJ_txt2nid(exts[i]), exts[i + 1]);
		if (rv)
			goto out;
	}
	if (!X509_sign(cert, issuer_key, EVP_sha256())) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "tls: signing certificate");
		goto out;
	}
	*out = cert;
	cert = NULL;
out:
	X509_free(cert);
	return rv;
}

static X509_NAME *name_cn(const char *cn, const char *org)
{
	X509_NAME *name = X509_NAME_new();

	if (!name)
		return NULL;
	if (org)
		X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)org, -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
	return name;
}

static kw_rv write_atomically(const char *path, int mode, int (*writer)(BIO *, void *), void *obj)
{
	char tmp[600];
	int fd;
	BIO *bio;
	int ok;

	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
		return kw_error_set(KW_ERR_ARGUMENTS, "tls: path too long: %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return kw_error_set(KW_ERR_STORE, "tls: cannot create %s: %s", tmp, strerror(errno));
	bio = BIO_new_fd(fd, BIO_NOCLOSE);
	ok = bio && writer(bio, obj) && BIO_flush(bio) == 1;
	BIO_free(bio);
	ok = ok && fsync(fd) == 0;
	close(fd);
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return kw_error_set(KW_ERR_STORE, "tls: cannot write %s", path);
	}
	return KW_OK;
}

static int write_cert(BIO *bio, void *obj)
{
	return PEM_write_bio_X509(bio, obj);
}

struct key_and_pin {
	EVP_PKEY *key;
	const char *pin;
};

static int write_key(BIO *bio, void *obj)
{
	const struct key_and_pin *kp = obj;

	if (kp->pin) /* as kw_enroll writes a client's key: PKCS#8, AES-256 under the PIN */
		return PEM_write_bio_PKCS8PrivateKey(bio, kp->key, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)kp->pin);
	return PEM_write_bio_PrivateKey(bio, kp->key, NULL, NULL, 0, NULL, NULL);
}

kw_rv kw_tls_write_pem_cert(const char *path, X509 *cert)
{
	return write_atomically(path, 0644, write_cert, cert);
}

kw_rv kw_tls_write_pem_key(const char *path, EVP_PKEY *key, const char *pin)
{
	struct key_and_pin kp = {key, pin};

	return write_atomically(path, 0600, write_key, &kp);
}

void kw_tls_fingerprint(X509 *cert, unsigned char out[KW_FINGERPRINT_LEN])
{
	unsigned len = KW_FINGERPRINT_LEN;

	X509_digest(cert, EVP_sha256(), out, &len);
}

static X509 *read_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *cert;

	if (!f)
		return NULL;
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return cert;
}

static EVP_PKEY *read_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *key;

	if (!f)
		return NULL;
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return key;
}

/* "localhost,127.0.0.1" -> "DNS:localhost,IP:127.0.0.1" */
static void san_list(const char *names, char *out, size_t size)
{
	char copy[512];
	char *save = NULL;
	size_t used = 0;

	snprintf(copy, sizeof copy, "%s", names);
	out[0] = '\0';
	for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		bool ip = strspn(tok, "0123456789.") == strlen(tok) || strchr(tok, ':');
		used += (size_t)snprintf(out + used, used < size ? size - used : 0, "%s%s:%s", used ? "," : "",
					 ip ? "IP" : "DNS", tok);
	}
}

static kw_rv create_material(const char *dir, const char *names)
{
	char path[600], sans[1024];
	EVP_PKEY *ca_key = NULL, *srv_key = NULL;
	X509 *ca = NULL, *srv = NULL;
	X509_NAME *name = NULL;
	kw_rv rv = KW_ERR_CRYPTO;
	const char *ca_exts[] = {"basicConstraints",
				 "critical,CA:TRUE,pathlen:0",
				 "keyUsage",
				 "critical,keyCertSign,cRLSign",
				 "subjectKeyIdentifier",
				 "hash",
				 NULL};
	const char *srv_exts[] = {"basicConstraints",
				  "critical,CA:FALSE",
				  "keyUsage",
				  "critical,digitalSignature",
				  "extendedKeyUsage",
				  "serverAuth",
				  "subjectAltName",
				  sans,
				  "authorityKeyIdentifier",
				  "keyid",
				  NULL};
	char host[256] = "keywardd";

	gethostname(host, sizeof host - 1);
	san_list(names, sans, sizeof sans);
	ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	srv_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!ca_key || !srv_key) {
		rv = kw_error_openssl(KW_ERR_CRYPTO, "tls: key generation");
		goto out;
	}
	name = name_cn("keyward HSM CA", host);
	rv = name ? make_cert(name, ca_key, NULL, ca_key, CA_DAYS, ca_exts, &ca) : KW_ERR_NO_MEMORY;
	if (rv)
		goto out;
	X509_NAME_free(name);
	name = name_cn(host, "keyward HSM");
	rv = name ? make_cert(name, srv_key, ca, ca_key, SERVER_DAYS, srv_exts, &srv) : KW_ERR_NO_MEMORY;
	if (rv)
		goto out;
	snprintf(path, sizeof path, "%s/ca.key", dir);
	if ((rv = kw_tls_write_pem_key(path, ca_key, NULL)))
		goto out;
	snprintf(path, sizeof path, "%s/server.key", dir);
	if ((rv = kw_tls_write_pem_key(path, srv_key, NULL)))
		goto out;
	snprintf(path, sizeof path, "%s/server.crt", dir);
	if ((rv = kw_tls_write_pem_cert(path, srv)))
		goto out;
	/* the CA certificate last: its presence says the set is complete */
	snprintf(path, sizeof path, "%s/ca.crt", dir);
	rv = kw_tls_write_pem_cert(path, ca);
	kw_log(KW_LOG_INFO, "created TLS CA and server certificate in %s (names: %s)", dir, names);
out:
	X509_NAME_free(name);
	X509_free(ca);
	X509_free(srv);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(srv_key);
	return rv;
}

kw_rv kw_tls_load_or_create(struct kw_tls *tls, const char *dir, const char *names)
{
	char path[600];
	X509 *srv = NULL;
	EVP_PKEY *srv_key = NULL;
	kw_rv rv;

	memset(tls, 0, sizeof *tls);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return kw_error_set(KW_ERR_CONFIG, "tls: cannot create %s: %s", dir, strerror(errno));
	snprintf(path, sizeof path, "%s/ca.crt", dir);
	if (access(path, F_OK) != 0 && (rv = create_material(dir, names)))
		return rv;

	tls->ca = read_cert(path);
	snprintf(path, sizeof path, "%s/ca.key", dir);
	tls->ca_key = read_key(path);
	snprintf(path, sizeof path, "%s/server.crt", dir);
	srv = read_cert(path);
	snprintf(path, sizeof path, "%s/server.key", dir);
	srv_key = read_key(path);
	if (!tls->ca || !tls->ca_key || !srv || !srv_key) {
		rv = kw_error_set(KW_ERR_CONFIG, "tls: %s must hold ca.crt, ca.key, server.crt and server.key (PEM)",
				  dir);
		goto out;
	}
	tls->ctx = SSL_CTX_new(TLS_server_method());
	if (!tls->ctx) {
		rv = kw_error_openssl(KW_ERR_NO_MEMORY, "tls: context");
		goto out;
	}
	SSL_CTX_set_min_proto_version(tls->ctx, TLS1_3_VERSION);
	/* no tickets: clients keep long-lived pooled connections, and no
	 * resumption means every connection presents its certificate afresh */
	SSL_CTX_set_num_tickets(tls->ctx, 0);
	SSL_CTX_set_session_cache_mode(tls->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(tls->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
					   SSL_MODE_RELEASE_BUFFERS);
	/* one read() per burst of records, not two per record (header, body) */
	SSL_CTX_set_read_ahead(tls->ctx, 1);
	if (SSL_CTX_use_certificate(tls->ctx, srv) != 1 || SSL_CTX_use_PrivateKey(tls->ctx, srv_key) != 1 ||
	    SSL_CTX_check_private_key(tls->ctx) != 1) {
		rv = kw_error_openssl(KW_ERR_CONFIG, "tls: server certificate and key do not match");
		goto out;
	}
	X509_STORE_add_cert(SSL_CTX_get_cert_store(tls->ctx), tls->ca);
	/* a certificate is requested, not required: Enroll comes without one */
	SSL_CTX_set_verify(tls->ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, NULL);
	rv = KW_OK;
out:
	X509_free(srv);
	EVP_PKEY_free(srv_key);
	if (rv)
		kw_tls_cleanup(tls);
	return rv;
}

void kw_tls_cleanup(struct kw_tls *tls)
{
	SSL_CTX_free(tls->ctx);
	X509_free(tls->ca);
	EVP_PKEY_free(tls->ca_key);
	memset(tls, 0, sizeof *tls);
}

kw_rv kw_tls_issue_client(struct kw_tls *tls, const unsigned char *csr_der, size_t csr_len, const char *partition,
			  X509 **out)
{
	const unsigned char *p = csr_der;
	X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)csr_len);
	EVP_PKEY *pub = NULL;
	X509_NAME *subject = NULL;
	const char *exts[] = {"basicConstraints",
			      "critical,CA:FALSE",
			      "keyUsage",
			      "critical,digitalSignature",
			      "extendedKeyUsage",
			      "clientAuth",
			      "authorityKeyIdentifier",
			      "keyid",
			      NULL};
	char cn[128] = "client";
	kw_rv rv;

	*out = NULL;
	if (!req || p != csr_der + csr_len) {
		rv = kw_error_openssl(KW_ERR_ARGUMENTS, "enroll: the CSR is not a DER PKCS#10 request");
		goto out;
	}
	pub = X509_REQ_get_pubkey(req);
	if (!pub || X509_REQ_verify(req, pub) != 1) {
		rv = kw_error_openssl(KW_ERR_SIGNATURE_INVALID, "enroll: the CSR's signature does not verify");
		goto out;
	}
	if (EVP_PKEY_is_a(pub, "RSA") ? EVP_PKEY_get_bits(pub) < 2048
				      : !EVP_PKEY_is_a(pub, "EC") && !EVP_PKEY_is_a(pub, "ED25519")) {
		rv = kw_error_set(KW_ERR_KEY_TYPE,
				  "enroll: client keys must be EC, Ed25519 or RSA of 2048 bits or more");
		goto out;
	}
	X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn);
	subject = name_cn(cn, partition);
	rv = subject ? make_cert(subject, pub, tls->ca, tls->ca_key, CLIENT_DAYS, exts, out) : KW_ERR_NO_MEMORY;
out:
	X509_NAME_free(subject);
	EVP_PKEY_free(pub);
	X509_REQ_free(req);
	return rv;
}
