/* Test helpers for libkeyward (see helpers.h). */
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "keyward.pb-c.h"

#define die(...)                                                                                   \
	do {                                                                                       \
		fprintf(stderr, "test helper: " __VA_ARGS__);                                      \
		fputc('\n', stderr);                                                               \
		ERR_print_errors_fp(stderr);                                                       \
		abort();                                                                           \
	} while (0)

char *kwt_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *d;

	if (asprintf(&d, "%s/kwtest.XXXXXX", base && *base ? base : "/tmp") < 0 || !mkdtemp(d))
		die("mkdtemp: %s", strerror(errno));
	return d;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void kwt_rmtree(const char *dir)
{
	if (dir)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *kwt_write(const char *dir, const char *name, const char *text)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		die("asprintf");
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		die("write %s: %s", path, strerror(errno));
	return path;
}

int kwt_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		die("free port: %s", strerror(errno));
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* ---- PKI ---- */

static EVP_PKEY *new_key(void)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!k)
		die("keygen");
	return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (!e || !X509_add_ext(x, e, -1))
		die("extension %d=%s", nid, value);
	X509_EXTENSION_free(e);
}

static X509 *make_cert(EVP_PKEY *pub, const X509_NAME *subject, X509 *issuer, EVP_PKEY *issuer_key, bool ca,
		       const char *san)
{
	static long serial = 1;
	X509 *x = X509_new();

	if (!x || !X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), __atomic_add_fetch(&serial, 1, __ATOMIC_SEQ_CST)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) || !X509_gmtime_adj(X509_getm_notAfter(x), 86400) ||
	    !X509_set_subject_name(x, subject) ||
	    !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subject) || !X509_set_pubkey(x, pub))
		die("certificate fields");
	if (ca) {
		add_ext(x, issuer ? issuer : x, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, issuer ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		add_ext(x, issuer ? issuer : x, NID_basic_constraints, "critical,CA:FALSE");
	}
	add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
	if (san)
		add_ext(x, issuer ? issuer : x, NID_subject_alt_name, san);
	if (!X509_sign(x, issuer_key, EVP_sha256()))
		die("sign certificate");
	return x;
}

static X509_NAME *cn_name(const char *cn)
{
	X509_NAME *n = X509_NAME_new();
	if (!n || !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0))
		die("name");
	return n;
}

X509 *kwt_issue(struct kwt_pki *pki, EVP_PKEY *pub, const X509_NAME *subject, const char *san)
{
	return make_cert(pub, subject, pki->ca, pki->ca_key, false, san);
}

static void write_cert(const char *dir, const char *name, X509 *x)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", dir, name) < 0 || !(f = fopen(path, "w")) || !PEM_write_X509(f, x) ||
	    fclose(f) != 0)
		die("write %s", name);
	free(path);
}

static void write_key(const char *dir, const char *name, EVP_PKEY *k, const char *pass)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", dir, name) < 0 || !(f = fopen(path, "w")))
		die("open %s", name);
	if (!PEM_write_PKCS8PrivateKey(f, k, pass ? EVP_aes_256_cbc() : NULL, NULL, 0, NULL, (void *)pass))
		die("write %s", name);
	fclose(f);
	free(path);
}

void kwt_make_pki(const char *dir, struct kwt_pki *pki)
{
	EVP_PKEY *skey = new_key(), *ckey = new_key(), *okey = new_key();
	X509_NAME *n;
	X509 *srv, *cli, *other;

	pki->ca_key = new_key();
	n = cn_name("keyward test CA");
	pki->ca = make_cert(pki->ca_key, n, NULL, pki->ca_key, true, NULL);
	X509_NAME_free(n);
	n = cn_name("127.0.0.1");
	srv = kwt_issue(pki, skey, n, "IP:127.0.0.1,DNS:localhost");
	X509_NAME_free(n);
	n = cn_name("dev@testhost");
	cli = kwt_issue(pki, ckey, n, NULL);
	X509_NAME_free(n);
	n = cn_name("another CA");
	other = make_cert(okey, n, NULL, okey, true, NULL);
	X509_NAME_free(n);

	write_cert(dir, "ca.crt", pki->ca);
	write_key(dir, "ca.key", pki->ca_key, NULL);
	write_cert(dir, "server.crt", srv);
	write_key(dir, "server.key", skey, NULL);
	write_cert(dir, "client.crt", cli);
	write_key(dir, "client.key", ckey, NULL);
	write_key(dir, "client-enc.key", ckey, "1234");
	write_cert(dir, "other-ca.crt", other);
	X509_free(srv);
	X509_free(cli);
	X509_free(other);
	EVP_PKEY_free(skey);
	EVP_PKEY_free(ckey);
	EVP_PKEY_free(okey);
}

void kwt_pki_cleanup(struct kwt_pki *pki)
{
	X509_free(pki->ca);
	EVP_PKEY_free(pki->ca_key);
	pki->ca = NULL;
	pki->ca_key = NULL;
}

/* ---- server ---- */

struct conn_arg {
	struct kwt_server *s;
	int fd;
};

static bool read_full(SSL *ssl, void *buf, size_t len)
{
	size_t n;
	unsigned char *p = buf;

	while (len) {
		if (SSL_read_ex(ssl, p, len, &n) <= 0)
			return false;
		p += n;
		len -= n;
	}
	return true;
}

static bool send_response(SSL *ssl, Keyward__Response *r)
{
	size_t len = keyward__response__get_packed_size(r);
	unsigned char *buf = malloc(len + 4);
	bool ok;

	buf[0] = (unsigned char)(len >> 24);
	buf[1] = (unsigned char)(len >> 16);
	buf[2] = (unsigned char)(len >> 8);
	buf[3] = (unsigned char)len;
	keyward__response__pack(r, buf + 4);
	ok = SSL_write(ssl, buf, (int)(len + 4)) == (int)(len + 4);
	free(buf);
	return ok;
}

static void fill_info(Keyward__ObjectInfo *o, uint64_t id, char *owner, char *name)
{
	keyward__object_info__init(o);
	o->id = id;
	o->owner = owner;
	o->name = name;
	o->cls = KEYWARD__OBJECT_CLASS__PRIVATE_KEY;
	o->key_type = KEYWARD__KEY_TYPE__EC;
	o->bits = 256;
	o->curve = "P-256";
	o->sensitive = true;
	o->modifiable = true;
	o->never_extractable = true;
	o->always_sensitive = true;
	o->usages = 1;
	o->created = 1700000000 + (int64_t)id;
	o->pair_id = id + 100;
}

/* Answers one request; false: close the connection. */
static bool handle(struct kwt_server *s, SSL *ssl, Keyward__Request *req)
{
	Keyward__Response r = KEYWARD__RESPONSE__INIT;
	Keyward__HelloResult hr = KEYWARD__HELLO_RESULT__INIT;
	Keyward__Random rnd = KEYWARD__RANDOM__INIT;
	Keyward__Signature sig = KEYWARD__SIGNATURE__INIT;
	Keyward__EnrollResult er = KEYWARD__ENROLL_RESULT__INIT;
	Keyward__ObjectList ol = KEYWARD__OBJECT_LIST__INIT;
	Keyward__ObjectInfo infos[5], *ptrs[5];
	unsigned char *buf = NULL, *der = NULL;
	X509 *peer = SSL_get0_peer_certificate(ssl);
	bool ok = true;

	r.id = req->id;
	atomic_fetch_add(&s->requests, 1);
	if (req->body_case != KEYWARD__REQUEST__BODY_HELLO && req->body_case != KEYWARD__REQUEST__BODY_ENROLL) {
		if (atomic_exchange(&s->drop_next, 0))
			return false;
		if (!peer) {
			r.status = KEYWARD__STATUS__AUTH;
			r.message = "a client certificate is needed for this request";
			return send_response(ssl, &r);
		}
	}
	switch (req->body_case) {
	case KEYWARD__REQUEST__BODY_HELLO:
		if (strcmp(req->hello->partition, "wrongpart") == 0) {
			r.status = KEYWARD__STATUS__AUTH;
			r.message = "partition \"wrongpart\" is not the partition of this client's certificate";
			break;
		}
		hr.version = 1;
		hr.server = "test-server";
		hr.partition = req->hello->partition;
		hr.initialized = true;
		hr.locked = true;
		r.body_case = KEYWARD__RESPONSE__BODY_HELLO;
		r.hello = &hr;
		break;
	case KEYWARD__REQUEST__BODY_ENROLL: {
		const unsigned char *p = req->enroll->csr.data;
		X509_REQ *csr = d2i_X509_REQ(NULL, &p, (long)req->enroll->csr.len);
		EVP_PKEY *pub;
		X509 *x;
		int len;

		if (strcmp(req->enroll->setup_password, "setup-pw") != 0 || !csr || X509_REQ_verify(csr, X509_REQ_get0_pubkey(csr)) != 1) {
			X509_REQ_free(csr);
			r.status = KEYWARD__STATUS__AUTH;
			r.message = "wrong setup password";
			break;
		}
		pub = X509_REQ_get0_pubkey(csr);
		x = kwt_issue(s->pki, pub, X509_REQ_get_subject_name(csr), NULL);
		len = i2d_X509(x, &der);
		er.certificate.data = der;
		er.certificate.len = (size_t)len;
		r.body_case = KEYWARD__RESPONSE__BODY_ENROLL;
		r.enroll = &er;
		X509_free(x);
		X509_REQ_free(csr);
		break;
	}
	case KEYWARD__REQUEST__BODY_GENERATE_RANDOM: {
		uint32_t n = req->generate_random->length;
		if (n == 7) {
			r.id = req->id + 1;
		} else if (n == 8) {
			unsigned char hdr[4] = {0x7f, 0xff, 0xff, 0xff};
			SSL_write(ssl, hdr, 4);
			return false;
		} else if (n == 9) {
			r.status = KEYWARD__STATUS__NOT_FOUND;
			r.message = "no such thing";
			break;
		}
		buf = malloc(n ? n : 1);
		memset(buf, 0xab, n);
		rnd.data.data = buf;
		rnd.data.len = n;
		r.body_case = KEYWARD__RESPONSE__BODY_RANDOM;
		r.random = &rnd;
		break;
	}
	case KEYWARD__REQUEST__BODY_SIGN:
		/* 64 bytes: the data repeated */
		buf = malloc(64);
		for (int i = 0; i < 64; i++)
			buf[i] = req->sign->data.len ? req->sign->data.data[i % req->sign->data.len] : 0;
		sig.signature.data = buf;
		sig.signature.len = 64;
		r.body_case = KEYWARD__RESPONSE__BODY_SIGNATURE;
		r.signature = &sig;
		break;
	case KEYWARD__REQUEST__BODY_GET_OBJECT:
		if (req->get_object->ref->id != 42) {
			r.status = KEYWARD__STATUS__NOT_FOUND;
			r.message = "no object with that id";
			break;
		}
		fill_info(&infos[0], 42, "S-1-5-21-1-2-3", "myDemoCA");
		infos[0].public_key.data = (uint8_t *)"\x30\x03\x02\x01\x05";
		infos[0].public_key.len = 5;
		r.body_case = KEYWARD__RESPONSE__BODY_OBJECT;
		r.object = &infos[0];
		break;
	case KEYWARD__REQUEST__BODY_LIST_OBJECTS: {
		/* ids 10, 20, 30, 40, 50; two per page */
		size_t n = 0;
		for (uint64_t id = 10; id <= 50 && n < 2; id += 10) {
			if (id <= req->list_objects->after_id)
				continue;
			fill_info(&infos[n], id, "S-1-5-21-1-2-3", "k");
			ptrs[n] = &infos[n];
			n++;
		}
		ol.objects = ptrs;
		ol.n_objects = n;
		ol.more = n == 2 && ptrs[1]->id < 50;
		r.body_case = KEYWARD__RESPONSE__BODY_OBJECT_LIST;
		r.object_list = &ol;
		break;
	}
	default:
		r.status = KEYWARD__STATUS__ARGUMENTS;
		r.message = "not implemented in the test server";
		break;
	}
	ok = send_response(ssl, &r);
	free(buf);
	OPENSSL_free(der);
	return ok;
}

static void *conn_thread(void *arg)
{
	struct conn_arg *a = arg;
	struct kwt_server *s = a->s;
	SSL *ssl = SSL_new(s->ctx);

	SSL_set_fd(ssl, a->fd);
	if (SSL_accept(ssl) == 1) {
		atomic_fetch_add(&s->accepted, 1);
		for (;;) {
			unsigned char hdr[4], *body;
			uint32_t len;
			Keyward__Request *req;
			bool ok;

			if (!read_full(ssl, hdr, 4))
				break;
			len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
			if (len == 0 || len > (1u << 20))
				break;
			body = malloc(len);
			if (!read_full(ssl, body, len)) {
				free(body);
				break;
			}
			req = keyward__request__unpack(NULL, len, body);
			free(body);
			if (!req)
				break;
			ok = handle(s, ssl, req);
			keyward__request__free_unpacked(req, NULL);
			if (!ok)
				break;
		}
	}
	ERR_clear_error();
	SSL_free(ssl);
	close(a->fd);
	free(a);
	return NULL;
}

static void *accept_thread(void *arg)
{
	struct kwt_server *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = {.fd = s->lfd, .events = POLLIN};
		struct conn_arg *a;
		pthread_t t;
		int fd;

		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		a = malloc(sizeof *a);
		a->s = s;
		a->fd = fd;
		if (pthread_create(&t, NULL, conn_thread, a) != 0)
			die("pthread_create");
		pthread_detach(t);
	}
	return NULL;
}

void kwt_server_start(struct kwt_server *s, const char *pki_dir, struct kwt_pki *pki)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	char *crt, *key, *ca;

	memset(s, 0, sizeof *s);
	s->pki = pki;
	if (asprintf(&crt, "%s/server.crt", pki_dir) < 0 || asprintf(&key, "%s/server.key", pki_dir) < 0 ||
	    asprintf(&ca, "%s/ca.crt", pki_dir) < 0)
		die("asprintf");
	s->ctx = SSL_CTX_new(TLS_server_method());
	if (!s->ctx || !SSL_CTX_set_min_proto_version(s->ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_use_certificate_chain_file(s->ctx, crt) ||
	    !SSL_CTX_use_PrivateKey_file(s->ctx, key, SSL_FILETYPE_PEM) || !SSL_CTX_load_verify_file(s->ctx, ca))
		die("server context");
	/* a certificate is asked for but optional: Hello and Enroll come without */
	SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER, NULL);
	free(crt);
	free(key);
	free(ca);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 16) != 0 ||
	    getsockname(s->lfd, (struct sockaddr *)&a, &len) != 0)
		die("listen: %s", strerror(errno));
	s->port = ntohs(a.sin_port);
	if (pthread_create(&s->thread, NULL, accept_thread, s) != 0)
		die("pthread_create");
}

void kwt_server_stop(struct kwt_server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	/* connection threads may still hold references; the context is refcounted */
	SSL_CTX_free(s->ctx);
}
