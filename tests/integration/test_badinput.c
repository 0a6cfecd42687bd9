/*
 * Bad input the server must survive: malformed, oversized, truncated and
 * unknown frames sent over raw TLS connections (OpenSSL directly, not
 * libkeyward), connections without a client certificate or with one from
 * another CA, administrative requests over TLS, a Hello for the wrong
 * partition, rows edited behind keywardd's back, and a full store.
 *
 * After every case a well-behaved client still signs (the server keeps
 * serving everyone else) and, where the case must change nothing, the
 * partition's listing is the same as before.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <sys/mount.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>

#include "common/frame.h"
#include "harness.h"

#define OWNER KWT_OWNER
#define RECV_TIMEOUT_S 15

/* the development server shared by the raw-connection cases */
static struct kwt_server server;
static kw_client *client;
static uint64_t ref_id;
static unsigned char ref_spki[512];
static size_t ref_spki_len;

/* ---- helpers ---- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Appends printf output to a growing string. */
static void append(char **s, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void append(char **s, size_t *len, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof line);
	*s = realloc(*s, *len + (size_t)n + 1);
	assert_non_null(*s);
	memcpy(*s + *len, line, (size_t)n + 1);
	*len += (size_t)n;
}

/* Everything the partition's listing says, one line per object (caller frees). */
static char *snapshot(kw_client *c)
{
	kw_object_list *l = NULL;
	char *s = NULL;
	size_t len = 0;

	kwt_ok(kw_list_objects(c, NULL, NULL, &l));
	append(&s, &len, "%zu objects\n", kw_object_list_count(l));
	for (size_t i = 0; i < kw_object_list_count(l); i++) {
		const kw_object *o = kw_object_list_get(l, i);
		size_t spki_len = 0;
		const unsigned char *spki = kw_object_public_key(o, &spki_len);
		unsigned sum = 0;

		for (size_t k = 0; spki && k < spki_len; k++)
			sum = sum * 31 + spki[k];
		append(&s, &len, "%llu %s/%s cls %d type %d bits %u curve %s s%d e%d m%d ne%d as%d u%u c%lld pair %llu pk %zu:%08x\n",
		       (unsigned long long)kw_object_id(o), kw_object_owner(o), kw_object_name(o), (int)kw_object_class(o),
		       (int)kw_object_key_type(o), kw_object_bits(o), kw_object_curve(o), kw_object_sensitive(o),
		       kw_object_extractable(o), kw_object_modifiable(o), kw_object_never_extractable(o),
		       kw_object_always_sensitive(o), kw_object_usages(o), (long long)kw_object_created(o),
		       (unsigned long long)kw_object_pair_id(o), spki_len, sum);
	}
	kw_object_list_free(l);
	return s;
}

/* r||s from the HSM checked against the SPKI with OpenSSL. */
/* The server still serves a well-behaved client: a signature that verifies. */
static void still_signs(kw_client *c, uint64_t id, const unsigned char *spki, size_t spki_len)
{
	unsigned char digest[32], sig[132];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};

	for (size_t i = 0; i < sizeof digest; i++)
		digest[i] = (unsigned char)(i * 7 + 3);
	kwt_ok(kw_sign(c, id, &m, digest, sizeof digest, sig, &sig_len));
	assert_int_equal(sig_len, 64);
	assert_true(kwt_ecdsa_verifies(spki, spki_len, digest, sizeof digest, sig, sig_len));
}

/* Waits (at most timeout_ms) for the server's log to contain one of two strings. */
static int log_contains(struct kwt_server *s, const char *a, const char *b, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 50) {
		char *log = kwt_read_file(s->log, NULL);
		int found = log && (strstr(log, a) || (b && strstr(log, b)));
		free(log);
		if (found)
			return 1;
		usleep(50 * 1000);
	}
	return 0;
}

/* ---- raw TLS connections ---- */

struct raw {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
	int handshake_ok;
};

enum { RECV_OK, RECV_CLOSED, RECV_TIMEOUT };

/*
 * A TLS 1.3 connection to s that trusts the HSM's CA, presenting cert/key
 * (paths) when given; pin opens an encrypted key. r->handshake_ok says
 * whether SSL_connect succeeded.
 */
static void raw_open(struct raw *r, struct kwt_server *s, const char *cert, const char *key, const char *pin)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(s->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {RECV_TIMEOUT_S, 0};
	int one = 1;
	char ca[400];

	memset(r, 0, sizeof *r);
	snprintf(ca, sizeof ca, "%s/tls/ca.crt", s->dir);
	r->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(r->ctx);
	assert_int_equal(SSL_CTX_set_min_proto_version(r->ctx, TLS1_3_VERSION), 1);
	assert_int_equal(SSL_CTX_load_verify_locations(r->ctx, ca, NULL), 1);
	SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
	if (cert) {
		SSL_CTX_set_default_passwd_cb_userdata(r->ctx, (void *)pin);
		assert_int_equal(SSL_CTX_use_certificate_chain_file(r->ctx, cert), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(r->ctx, key, SSL_FILETYPE_PEM), 1);
	}
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(r->fd >= 0);
	assert_int_equal(setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
	/* a frame is two writes (header, body): without this, Nagle and delayed ACKs add 40 ms to each */
	assert_int_equal(setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
	assert_int_equal(connect(r->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	r->ssl = SSL_new(r->ctx);
	assert_non_null(r->ssl);
	SSL_set_fd(r->ssl, r->fd);
	/* the HSM's certificate must name the address we dialled */
	assert_int_equal(SSL_set1_host(r->ssl, "127.0.0.1"), 1);
	r->handshake_ok = SSL_connect(r->ssl) == 1;
	ERR_clear_error();
}

/* With the development client's credential. */
static void raw_open_dev(struct raw *r)
{
	char cert[400], key[400], pin[64];

	snprintf(cert, sizeof cert, "%s/client/dev.crt", server.dir);
	snprintf(key, sizeof key, "%s/client/dev.key", server.dir);
	kwt_dev_pin(&server, pin, sizeof pin);
	raw_open(r, &server, cert, key, pin);
	if (!r->handshake_ok)
		fail_msg("TLS handshake with the development credential failed");
}

static void raw_close(struct raw *r)
{
	SSL_free(r->ssl);
	SSL_CTX_free(r->ctx);
	if (r->fd >= 0)
		close(r->fd);
	memset(r, 0, sizeof *r);
	r->fd = -1;
}

static int raw_write(struct raw *r, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len) {
		int n = SSL_write(r->ssl, p, (int)len);
		if (n <= 0) {
			ERR_clear_error();
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void raw_send_frame(struct raw *r, const void *body, size_t len)
{
	unsigned char hdr[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8),
				(unsigned char)len};

	assert_int_equal(raw_write(r, hdr, sizeof hdr), 0);
	assert_int_equal(raw_write(r, body, len), 0);
}

static void raw_send_request(struct raw *r, const Keyward__Request *req)
{
	size_t len = keyward__request__get_packed_size(req);
	unsigned char *buf = malloc(len ? len : 1);

	assert_non_null(buf);
	assert_int_equal(keyward__request__pack(req, buf), len);
	raw_send_frame(r, buf, len);
	free(buf);
}

/* Exactly len bytes; RECV_CLOSED on EOF or a TLS error, RECV_TIMEOUT when nothing came. */
static int raw_read_exact(struct raw *r, unsigned char *buf, size_t len)
{
	while (len) {
		int n = SSL_read(r->ssl, buf, (int)len);
		if (n <= 0) {
			int err = SSL_get_error(r->ssl, n);
			ERR_clear_error();
			return err == SSL_ERROR_WANT_READ ? RECV_TIMEOUT : RECV_CLOSED;
		}
		buf += n;
		len -= (size_t)n;
	}
	return RECV_OK;
}

static int raw_recv(struct raw *r, Keyward__Response **out)
{
	unsigned char hdr[4], *body;
	size_t len;
	int rc;

	*out = NULL;
	rc = raw_read_exact(r, hdr, sizeof hdr);
	if (rc != RECV_OK)
		return rc;
	len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	if (len == 0 || len > KW_MAX_FRAME)
		fail_msg("the server sent a frame length %zu out of range", len);
	body = malloc(len);
	assert_non_null(body);
	rc = raw_read_exact(r, body, len);
	if (rc == RECV_OK) {
		*out = keyward__response__unpack(NULL, len, body);
		if (!*out)
			fail_msg("the server sent a %zu-byte frame that is not a Response", len);
	}
	free(body);
	return rc;
}

/* A response must come. */
static Keyward__Response *raw_expect(struct raw *r)
{
	Keyward__Response *resp;
	int rc = raw_recv(r, &resp);

	if (rc != RECV_OK)
		fail_msg("no response: the server %s", rc == RECV_CLOSED ? "closed the connection" : "did not answer");
	return resp;
}

static Keyward__Response *raw_hello(struct raw *r, uint64_t id, const char *partition)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__Hello h = KEYWARD__HELLO__INIT;

	h.min_version = 1;
	h.max_version = 1;
	h.partition = (char *)partition;
	h.client = "test_badinput";
	req.id = id;
	req.body_case = KEYWARD__REQUEST__BODY_HELLO;
	req.hello = &h;
	raw_send_request(r, &req);
	return raw_expect(r);
}

static void raw_hello_ok(struct raw *r, uint64_t id)
{
	Keyward__Response *resp = raw_hello(r, id, "dev");

	if (resp->status != KEYWARD__STATUS__OK)
		fail_msg("Hello: status %d: %s", resp->status, resp->message);
	assert_int_equal(resp->id, id);
	assert_int_equal(resp->body_case, KEYWARD__RESPONSE__BODY_HELLO);
	assert_int_equal(resp->hello->version, 1);
	keyward__response__free_unpacked(resp, NULL);
}

static Keyward__Response *raw_sign(struct raw *r, uint64_t id, uint64_t key_id, const unsigned char digest[32])
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__Sign s = KEYWARD__SIGN__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;

	ref.id = key_id;
	s.key = &ref;
	s.mechanism = KEYWARD__MECHANISM__ECDSA;
	s.data.data = (uint8_t *)digest;
	s.data.len = 32;
	req.id = id;
	req.body_case = KEYWARD__REQUEST__BODY_SIGN;
	req.sign = &s;
	raw_send_request(r, &req);
	return raw_expect(r);
}

/* ---- group set-up: a development server, a client and one key ---- */

static int setup(void **state)
{
	(void)state;
	client = kwt_start_dev_client(&server);
	kwt_gen_ec(client, "ref", &ref_id, ref_spki, &ref_spki_len);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop_client(&server, client);
	return 0;
}

/* ---- cases ---- */

static void test_garbage_frames(void **state)
{
	static const struct {
		const char *what;
		const unsigned char *body;
		size_t len;
	} garbage[] = {
		{"text", (const unsigned char *)"hello", 5},
		{"0xff", (const unsigned char *)"\xff", 1},
		{"a truncated varint", (const unsigned char *)"\x08\xff\xff", 3},
		{"a length-delimited field running past the end", (const unsigned char *)"\x52\x7f\x01\x02", 4},
		{"a nested Hello with a bad length", (const unsigned char *)"\x52\x03\x08\xff", 4},
		{"wire type 7", (const unsigned char *)"\x0f\x00\x00", 3},
	};
	unsigned char digest[32] = {42};
	char *before, *after;
	Keyward__Response *resp;
	struct raw r;

	(void)state;
	before = snapshot(client);
	raw_open_dev(&r);
	for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
		raw_send_frame(&r, garbage[i].body, garbage[i].len);
		resp = raw_expect(&r);
		if (resp->status != KEYWARD__STATUS__PROTOCOL)
			fail_msg("%s: status %d (%s), expected PROTOCOL", garbage[i].what, resp->status, resp->message);
		assert_non_null(resp->message);
		assert_true(strlen(resp->message) > 10);
		assert_int_equal(resp->body_case, KEYWARD__RESPONSE__BODY__NOT_SET);
		keyward__response__free_unpacked(resp, NULL);
	}
	/* the connection stays usable: Hello, then a signature on it */
	raw_hello_ok(&r, 7);
	resp = raw_sign(&r, 8, ref_id, digest);
	if (resp->status != KEYWARD__STATUS__OK)
		fail_msg("Sign after garbage: status %d: %s", resp->status, resp->message);
	assert_int_equal(resp->id, 8);
	assert_int_equal(resp->body_case, KEYWARD__RESPONSE__BODY_SIGNATURE);
	assert_true(kwt_ecdsa_verifies(ref_spki, ref_spki_len, digest, 32, resp->signature->signature.data,
				   resp->signature->signature.len));
	keyward__response__free_unpacked(resp, NULL);
	raw_close(&r);

	still_signs(client, ref_id, ref_spki, ref_spki_len);
	after = snapshot(client);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

static void test_oversize_frame(void **state)
{
	static const unsigned char frame[] = {0x7f, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'};
	char *before, *after;
	Keyward__Response *resp;
	struct raw r;

	(void)state;
	before = snapshot(client);
	raw_open_dev(&r);
	raw_hello_ok(&r, 1);
	assert_int_equal(raw_write(&r, frame, sizeof frame), 0);
	resp = raw_expect(&r);
	assert_int_equal(resp->status, KEYWARD__STATUS__PROTOCOL);
	assert_non_null(resp->message);
	if (!strstr(resp->message, "out of range"))
		fail_msg("message does not say the length is out of range: %s", resp->message);
	keyward__response__free_unpacked(resp, NULL);
	/* a frame that cannot be skipped ends the connection */
	assert_int_equal(raw_recv(&r, &resp), RECV_CLOSED);
	raw_close(&r);

	/* a zero length is out of range too */
	raw_open_dev(&r);
	assert_int_equal(raw_write(&r, "\0\0\0\0", 4), 0);
	resp = raw_expect(&r);
	assert_int_equal(resp->status, KEYWARD__STATUS__PROTOCOL);
	assert_non_null(strstr(resp->message, "out of range"));
	keyward__response__free_unpacked(resp, NULL);
	assert_int_equal(raw_recv(&r, &resp), RECV_CLOSED);
	raw_close(&r);

	still_signs(client, ref_id, ref_spki, ref_spki_len);
	after = snapshot(client);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

static void test_unknown_request_type(void **state)
{
	/* id = 7, then field 99 (varint 1): a Request with no body this server knows */
	static const unsigned char unknown[] = {0x08, 0x07, 0x98, 0x06, 0x01};
	/* field 99 as a length-delimited blob */
	static const unsigned char unknown2[] = {0x08, 0x09, 0x9a, 0x06, 0x03, 'a', 'b', 'c'};
	/* a request with an id and nothing else */
	static const unsigned char empty[] = {0x08, 0x0b};
	char *before, *after;
	Keyward__Response *resp;
	struct raw r;

	(void)state;
	before = snapshot(client);
	raw_open_dev(&r);
	raw_send_frame(&r, unknown, sizeof unknown);
	resp = raw_expect(&r);
	assert_int_equal(resp->status, KEYWARD__STATUS__PROTOCOL);
	assert_non_null(resp->message);
	assert_true(strlen(resp->message) > 10);
	keyward__response__free_unpacked(resp, NULL);
	raw_hello_ok(&r, 2); /* still open */
	raw_send_frame(&r, unknown2, sizeof unknown2);
	resp = raw_expect(&r);
	assert_int_equal(resp->status, KEYWARD__STATUS__PROTOCOL);
	keyward__response__free_unpacked(resp, NULL);
	raw_send_frame(&r, empty, sizeof empty);
	resp = raw_expect(&r);
	assert_int_equal(resp->status, KEYWARD__STATUS__PROTOCOL);
	keyward__response__free_unpacked(resp, NULL);
	raw_hello_ok(&r, 3);
	raw_close(&r);

	still_signs(client, ref_id, ref_spki, ref_spki_len);
	after = snapshot(client);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

static void test_no_client_certificate(void **state)
{
	unsigned char digest[32] = {1};
	char *before, *after;
	Keyward__Response *resp;
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__GenerateKey g = KEYWARD__GENERATE_KEY__INIT;
	struct raw r;

	(void)state;
	before = snapshot(client);
	raw_open(&r, &server, NULL, NULL, NULL);
	assert_true(r.handshake_ok);
	/* Hello is answered, but authenticates nothing */
	resp = raw_hello(&r, 1, "dev");
	assert_int_equal(resp->status, KEYWARD__STATUS__OK);
	assert_int_equal(resp->body_case, KEYWARD__RESPONSE__BODY_HELLO);
	assert_string_equal(resp->hello->partition, "");
	keyward__response__free_unpacked(resp, NULL);

	resp = raw_sign(&r, 2, ref_id, digest);
	assert_int_equal(resp->status, KEYWARD__STATUS__AUTH);
	assert_int_equal(resp->id, 2);
	assert_int_equal(resp->body_case, KEYWARD__RESPONSE__BODY__NOT_SET);
	if (!strstr(resp->message, "Enroll") || !strstr(resp->message, "setup password"))
		fail_msg("the refusal does not say what to do: %s", resp->message);
	keyward__response__free_unpacked(resp, NULL);

	/* nor may it generate a key */
	g.owner = OWNER;
	g.name = "no-cert";
	g.key_type = KEYWARD__KEY_TYPE__EC;
	g.curve = "P-256";
	req.id = 3;
	req.body_case = KEYWARD__REQUEST__BODY_GENERATE_KEY;
	req.generate_key = &g;
	raw_send_request(&r, &req);
	resp = raw_expect(&r);
	assert_int_equal(resp->status, KEYWARD__STATUS__AUTH);
	keyward__response__free_unpacked(resp, NULL);
	raw_close(&r);

	still_signs(client, ref_id, ref_spki, ref_spki_len);
	after = snapshot(client);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(ext);
	X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
}

static X509 *make_cert(const char *cn, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *issuer_key, int ca)
{
	X509 *cert = X509_new();
	X509_NAME *name = X509_NAME_new();

	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), ca ? 1 : 2);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(cert, name);
	X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name);
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	X509_set_pubkey(cert, pub);
	add_ext(cert, issuer ? issuer : cert, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	add_ext(cert, issuer ? issuer : cert, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
	if (!ca)
		add_ext(cert, issuer, NID_ext_key_usage, "clientAuth");
	assert_true(X509_sign(cert, issuer_key, EVP_sha256()) > 0);
	X509_NAME_free(name);
	return cert;
}

static void test_foreign_ca_certificate(void **state)
{
	EVP_PKEY *ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *ca, *cert;
	char cert_path[400], key_path[400], *before, *after;
	Keyward__Response *resp = NULL;
	struct raw r;
	FILE *f;
	int rc = RECV_CLOSED;

	(void)state;
	assert_non_null(ca_key);
	assert_non_null(key);
	ca = make_cert("someone else's CA", ca_key, NULL, ca_key, 1);
	cert = make_cert("impostor", key, ca, ca_key, 0);
	snprintf(cert_path, sizeof cert_path, "%s/foreign.crt", server.dir);
	snprintf(key_path, sizeof key_path, "%s/foreign.key", server.dir);
	f = fopen(cert_path, "w");
	assert_non_null(f);
	PEM_write_X509(f, cert);
	PEM_write_X509(f, ca);
	fclose(f);
	f = fopen(key_path, "w");
	assert_non_null(f);
	PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);

	before = snapshot(client);
	raw_open(&r, &server, cert_path, key_path, NULL);
	/* TLS 1.3: the client may finish before the server has judged its certificate */
	if (r.handshake_ok) {
		Keyward__Request req = KEYWARD__REQUEST__INIT;
		Keyward__Hello h = KEYWARD__HELLO__INIT;
		h.min_version = h.max_version = 1;
		h.partition = "dev";
		req.id = 1;
		req.body_case = KEYWARD__REQUEST__BODY_HELLO;
		req.hello = &h;
		size_t len = keyward__request__get_packed_size(&req);
		unsigned char buf[256];
		assert_true(len + 4 <= sizeof buf);
		buf[0] = buf[1] = buf[2] = 0;
		buf[3] = (unsigned char)len;
		keyward__request__pack(&req, buf + 4);
		raw_write(&r, buf, len + 4); /* may fail: the server may have gone already */
		rc = raw_recv(&r, &resp);
	}
	if (rc == RECV_OK)
		fail_msg("a certificate from another CA was served: status %d (%s)", resp->status, resp->message);
	assert_int_equal(rc, RECV_CLOSED);
	print_message("foreign certificate refused %s\n", r.handshake_ok ? "after the handshake" : "in the handshake");
	raw_close(&r);
	if (!log_contains(&server, "client certificate rejected", "handshake failed", 5000))
		fail_msg("keywardd did not log why it refused the certificate (see %s)", server.log);

	still_signs(client, ref_id, ref_spki, ref_spki_len);
	after = snapshot(client);
	assert_string_equal(before, after);
	free(before);
	free(after);
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
}

/* The development client after its Hello, or a stranger without a certificate. */
static void raw_open_as(struct raw *r, int with_cert)
{
	if (with_cert) {
		raw_open_dev(r);
		raw_hello_ok(r, 1);
	} else {
		raw_open(r, &server, NULL, NULL, NULL);
		assert_true(r->handshake_ok);
	}
}

static void test_admin_over_tls(void **state)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__PartitionCreate pc = KEYWARD__PARTITION_CREATE__INIT;
	Keyward__AdminLock lock = KEYWARD__ADMIN_LOCK__INIT;
	Keyward__AdminInit init = KEYWARD__ADMIN_INIT__INIT;
	Keyward__PartitionList pl = KEYWARD__PARTITION_LIST__INIT;
	Keyward__BackupBegin bb = KEYWARD__BACKUP_BEGIN__INIT;
	Keyward__BackupRead br = KEYWARD__BACKUP_READ__INIT;
	Keyward__RestoreBegin rb = KEYWARD__RESTORE_BEGIN__INIT;
	Keyward__RestoreChunk rc = KEYWARD__RESTORE_CHUNK__INIT;
	Keyward__RestoreCommit rm = KEYWARD__RESTORE_COMMIT__INIT;
	Keyward__AuditList al = KEYWARD__AUDIT_LIST__INIT;
	Keyward__Request tr[6] = {KEYWARD__REQUEST__INIT, KEYWARD__REQUEST__INIT, KEYWARD__REQUEST__INIT,
				  KEYWARD__REQUEST__INIT, KEYWARD__REQUEST__INIT, KEYWARD__REQUEST__INIT};
	Keyward__Response *resp;
	char *before, *after, *out = NULL;
	struct raw r;

	(void)state;
	before = snapshot(client);
	for (int with_cert = 1; with_cert >= 0; with_cert--) {
		raw_open_as(&r, with_cert);
		pc.name = "evil";
		req.id = 2;
		req.body_case = KEYWARD__REQUEST__BODY_PARTITION_CREATE;
		req.partition_create = &pc;
		raw_send_request(&r, &req);
		resp = raw_expect(&r);
		assert_int_equal(resp->status, KEYWARD__STATUS__PERMISSION);
		assert_int_equal(resp->body_case, KEYWARD__RESPONSE__BODY__NOT_SET);
		assert_non_null(strstr(resp->message, "admin socket"));
		keyward__response__free_unpacked(resp, NULL);

		req.id = 3;
		req.body_case = KEYWARD__REQUEST__BODY_ADMIN_LOCK;
		req.admin_lock = &lock;
		raw_send_request(&r, &req);
		resp = raw_expect(&r);
		assert_int_equal(resp->status, KEYWARD__STATUS__PERMISSION);
		keyward__response__free_unpacked(resp, NULL);

		init.passphrase = "a passphrase long enough for anyone";
		req.id = 4;
		req.body_case = KEYWARD__REQUEST__BODY_ADMIN_INIT;
		req.admin_init = &init;
		raw_send_request(&r, &req);
		resp = raw_expect(&r);
		assert_int_equal(resp->status, KEYWARD__STATUS__PERMISSION);
		keyward__response__free_unpacked(resp, NULL);

		req.id = 5;
		req.body_case = KEYWARD__REQUEST__BODY_PARTITION_LIST;
		req.partition_list = &pl;
		raw_send_request(&r, &req);
		resp = raw_expect(&r);
		assert_int_equal(resp->status, KEYWARD__STATUS__PERMISSION);
		assert_int_equal(resp->body_case, KEYWARD__RESPONSE__BODY__NOT_SET);
		keyward__response__free_unpacked(resp, NULL);

		/* HSM backup and restore: the admin socket's too, never a byte of a snapshot (on a fresh
		 * connection: a stranger may send only 8 requests); the audit reader too */
		raw_close(&r);
		raw_open_as(&r, with_cert);
		rb.size = 1000;
		rc.data.data = (uint8_t *)"KWBACKUP";
		rc.data.len = 8;
		tr[0].body_case = KEYWARD__REQUEST__BODY_BACKUP_BEGIN;
		tr[0].backup_begin = &bb;
		tr[1].body_case = KEYWARD__REQUEST__BODY_BACKUP_READ;
		tr[1].backup_read = &br;
		tr[2].body_case = KEYWARD__REQUEST__BODY_RESTORE_BEGIN;
		tr[2].restore_begin = &rb;
		tr[3].body_case = KEYWARD__REQUEST__BODY_RESTORE_CHUNK;
		tr[3].restore_chunk = &rc;
		tr[4].body_case = KEYWARD__REQUEST__BODY_RESTORE_COMMIT;
		tr[4].restore_commit = &rm;
		/* and the audit reader (100 to 109): never a record of the log over TLS */
		tr[5].body_case = KEYWARD__REQUEST__BODY_AUDIT_LIST;
		tr[5].audit_list = &al;
		for (int i = 0; i < 6; i++) {
			tr[i].id = 6 + (uint64_t)i;
			raw_send_request(&r, &tr[i]);
			resp = raw_expect(&r);
			assert_int_equal(resp->status, KEYWARD__STATUS__PERMISSION);
			assert_int_equal(resp->body_case, KEYWARD__RESPONSE__BODY__NOT_SET);
			assert_non_null(strstr(resp->message, "admin socket"));
			keyward__response__free_unpacked(resp, NULL);
		}
		raw_close(&r);
	}

	/* nothing happened: no partition, not locked */
	assert_int_equal(kwt_admin(&server, NULL, &out, "partition list"), 0);
	assert_non_null(strstr(out, "dev"));
	assert_null(strstr(out, "evil"));
	free(out);
	still_signs(client, ref_id, ref_spki, ref_spki_len);
	after = snapshot(client);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

static void test_wrong_partition(void **state)
{
	char conf[400], *before, *after;
	kw_client *c = NULL;
	unsigned char digest[32] = {3}, sig[132];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	kw_object_list *l = NULL;
	FILE *f;

	(void)state;
	snprintf(conf, sizeof conf, "%s/nope.conf", server.dir);
	f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f,
		"[client]\npartition = nope\nca = tls/ca.crt\ncert = client/dev.crt\nkey = client/dev.key\npin_file = pin\n\n"
		"[hsm dev]\nhost = 127.0.0.1\nport = %u\n",
		server.port);
	fclose(f);
	before = snapshot(client);
	kwt_ok(kw_client_new(conf, &c));
	assert_int_equal(kw_sign(c, ref_id, &m, digest, sizeof digest, sig, &sig_len), KW_ERR_AUTH);
	if (!strstr(kw_last_error(), "\"dev\"") || !strstr(kw_last_error(), "nope"))
		fail_msg("the refusal does not name the real partition: %s", kw_last_error());
	assert_int_equal(kw_list_objects(c, NULL, NULL, &l), KW_ERR_AUTH);
	assert_null(l);
	kw_client_free(c);

	still_signs(client, ref_id, ref_spki, ref_spki_len);
	after = snapshot(client);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

/* Generates a fresh key, edits one column of its private row, and expects KW_ERR_TAMPERED. */
static void tamper_one(const char *name, const char *set)
{
	char db[300], sql[300];
	sqlite3 *h;
	uint64_t id;
	unsigned char digest[32] = {5}, sig[132];
	size_t sig_len;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};

	/* never used, so not in the server's key cache */
	kwt_gen_ec(client, name, &id, NULL, NULL);
	snprintf(db, sizeof db, "%s/keystore.db", server.dir);
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 5000);
	snprintf(sql, sizeof sql, "UPDATE objects SET %s WHERE id = %llu", set, (unsigned long long)id);
	if (sqlite3_exec(h, sql, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(h));
	assert_int_equal(sqlite3_changes(h), 1);
	sqlite3_close(h);

	for (int attempt = 0; attempt < 2; attempt++) { /* a refusal is not cached as a success */
		kw_rv rv;
		sig_len = sizeof sig;
		rv = kw_sign(client, id, &m, digest, sizeof digest, sig, &sig_len);
		if (rv != KW_ERR_TAMPERED)
			fail_msg("%s, then sign: %s (%s), expected KW_ERR_TAMPERED", set, kw_rv_name(rv), kw_last_error());
		if (!strstr(kw_last_error(), "tamper") && !strstr(kw_last_error(), "modified"))
			fail_msg("the message does not say the row was modified: %s", kw_last_error());
	}
	still_signs(client, ref_id, ref_spki, ref_spki_len);
}

static void test_tampered_rows(void **state)
{
	(void)state;
	tamper_one("tamper-usages", "usages = 15");
	tamper_one("tamper-bits", "bits = 384");
	tamper_one("tamper-extractable", "extractable = 1");
	tamper_one("tamper-sensitive", "sensitive = 0");
	tamper_one("tamper-curve", "curve = 'P-384'");
}

/* Config mode with a short read timeout: a frame that never finishes closes its connection. */
static void test_truncated_frame(void **state)
{
	struct kwt_server s = {0};
	kw_client *c;
	uint64_t id;
	unsigned char spki[512], header[4] = {0, 0, 0, 100}, part[10] = {0x08, 0x01};
	size_t spki_len;
	char cert[400], key[400], *before, *after;
	Keyward__Response *resp = NULL;
	struct raw r;
	double t0, elapsed;
	int rc;

	(void)state;
	c = kwt_start_initialized(&s, "read_timeout = 2");
	kwt_gen_ec(c, "k", &id, spki, &spki_len);
	before = snapshot(c);
	snprintf(cert, sizeof cert, "%s/p.crt", s.dir);
	snprintf(key, sizeof key, "%s/p.key", s.dir);
	raw_open(&r, &s, cert, key, NULL);
	assert_true(r.handshake_ok);
	assert_int_equal(raw_write(&r, header, sizeof header), 0);
	assert_int_equal(raw_write(&r, part, sizeof part), 0);
	t0 = now_s();
	/* other clients are served meanwhile */
	still_signs(c, id, spki, spki_len);
	rc = raw_recv(&r, &resp);
	elapsed = now_s() - t0;
	if (rc == RECV_OK)
		fail_msg("the server answered a truncated frame: status %d (%s)", resp->status, resp->message);
	if (rc != RECV_CLOSED)
		fail_msg("the server kept a half-sent frame open for %d s (read_timeout = 2)", RECV_TIMEOUT_S);
	assert_true(elapsed >= 1.9);
	assert_true(elapsed < 8.0);
	raw_close(&r);
	assert_true(log_contains(&s, "begun but not finished", NULL, 2000));

	/* a slow but complete sender is not cut off: header now, body a second later */
	raw_open(&r, &s, cert, key, NULL);
	assert_true(r.handshake_ok);
	{
		Keyward__Request req = KEYWARD__REQUEST__INIT;
		Keyward__Hello h = KEYWARD__HELLO__INIT;
		unsigned char buf[128];
		size_t len;
		h.min_version = h.max_version = 1;
		h.partition = "p";
		req.id = 9;
		req.body_case = KEYWARD__REQUEST__BODY_HELLO;
		req.hello = &h;
		len = keyward__request__get_packed_size(&req);
		assert_true(len + 4 <= sizeof buf);
		buf[0] = buf[1] = buf[2] = 0;
		buf[3] = (unsigned char)len;
		keyward__request__pack(&req, buf + 4);
		assert_int_equal(raw_write(&r, buf, 6), 0);
		sleep(1);
		assert_int_equal(raw_write(&r, buf + 6, len - 2), 0);
		resp = raw_expect(&r);
		assert_int_equal(resp->status, KEYWARD__STATUS__OK);
		assert_int_equal(resp->id, 9);
		assert_string_equal(resp->hello->partition, "p");
		keyward__response__free_unpacked(resp, NULL);
	}
	raw_close(&r);

	still_signs(c, id, spki, spki_len);
	after = snapshot(c);
	assert_string_equal(before, after);
	free(before);
	free(after);
	kw_client_free(c);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

/*
 * Generates keys until the store refuses with KW_ERR_STORE_FULL; then the
 * failed attempt must have left nothing behind and the rest still works.
 */
static void fill_until_full(struct kwt_server *s, kw_client *c, const char *what)
{
	uint64_t first_id = 0;
	unsigned char first_spki[512], rnd[16];
	size_t first_len = 0;
	char *before = NULL, *after, *out = NULL, name[32];
	kw_object *priv = NULL, *pub = NULL;
	kw_rv rv = KW_OK;
	int n;

	for (n = 0; n < 5000; n++) {
		free(before);
		before = snapshot(c);
		snprintf(name, sizeof name, "full-%d", n);
		rv = kw_generate_key(c, OWNER, name, KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub);
		if (rv)
			break;
		if (n == 0) {
			const unsigned char *der = kw_object_public_key(pub, &first_len);
			first_id = kw_object_id(priv);
			memcpy(first_spki, der, first_len);
		}
		kw_object_free(priv);
		kw_object_free(pub);
	}
	if (rv != KW_ERR_STORE_FULL)
		fail_msg("%s: after %d keys: %s (%s), expected KW_ERR_STORE_FULL", what, n, kw_rv_name(rv),
			 kw_last_error());
	assert_true(n >= 3); /* a few fit */
	print_message("%s: %d key pairs fit; then: %s\n", what, n, kw_last_error());
	assert_null(priv);
	assert_null(pub);
	if (!strstr(kw_last_error(), "full"))
		fail_msg("the message does not say the store is full: %s", kw_last_error());
	/*
	 * The failed attempt left nothing behind. (Retrying is not asserted to
	 * fail again: object ids are random, and where a row lands in the table
	 * decides whether a page must split, so another attempt may fit.)
	 */
	after = snapshot(c);
	assert_string_equal(before, after);
	free(after);
	free(before);

	/* what is there still works */
	still_signs(c, first_id, first_spki, first_len);
	kwt_ok(kw_generate_random(c, rnd, sizeof rnd));
	assert_int_equal(kwt_admin(s, NULL, &out, "status"), 0);
	assert_non_null(strstr(out, "initialized: yes"));
	free(out);
}

/* The store's own size cap (store_max_bytes). */
static void test_store_full(void **state)
{
	struct kwt_server s = {0};
	kw_client *c;

	(void)state;
	c = kwt_start_initialized(&s, "store_max_bytes = 262144");
	fill_until_full(&s, c, "store_max_bytes = 262144");
	kwt_stop_client(&s, c);
}

/* A real full filesystem: the store on a 1 MiB tmpfs (needs root, as CI runs). */
static void test_disk_full(void **state)
{
	struct kwt_server s = {0};
	char disk[] = "/tmp/kwdisk.XXXXXX", extra[128];
	kw_client *c;

	(void)state;
	assert_non_null(mkdtemp(disk));
	if (mount("tmpfs", disk, "tmpfs", 0, "size=1m,mode=0700") != 0)
		fail_msg("cannot mount a 1 MiB tmpfs on %s: %s (this test needs root)", disk, strerror(errno));
	snprintf(extra, sizeof extra, "store = sqlite:%s/keystore.db", disk);
	c = kwt_start_initialized(&s, extra);
	fill_until_full(&s, c, "a 1 MiB filesystem");
	kwt_stop_client(&s, c);
	umount2(disk, MNT_DETACH);
	rmdir(disk);
}

/* A raw SignBatch of n 32-byte digests with key_id under ECDSA; sign_data puts data in `sign` too. */
static Keyward__Response *raw_sign_batch(struct raw *r, uint64_t id, uint64_t key_id, size_t n, bool sign_data)
{
	static unsigned char digests[KW_SIGN_BATCH_MAX + 1][32];
	static ProtobufCBinaryData elems[KW_SIGN_BATCH_MAX + 1];
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__SignBatch b = KEYWARD__SIGN_BATCH__INIT;
	Keyward__Sign s = KEYWARD__SIGN__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;

	for (size_t i = 0; i < n; i++) {
		digests[i][0] = (unsigned char)i;
		elems[i].data = digests[i];
		elems[i].len = 32;
	}
	ref.id = key_id;
	s.key = &ref;
	s.mechanism = KEYWARD__MECHANISM__ECDSA;
	if (sign_data)
		s.data = elems[0];
	b.sign = &s;
	b.data = elems;
	b.n_data = n;
	req.id = id;
	req.body_case = KEYWARD__REQUEST__BODY_SIGN_BATCH;
	req.sign_batch = &b;
	raw_send_request(r, &req);
	return raw_expect(r);
}

/*
 * SignBatch's bounds are the HSM's own, whatever a client sends: more than
 * KW_SIGN_BATCH_MAX elements, none, or data in the parameters are refused
 * with a message saying so, and the connection goes on serving.
 */
static void test_sign_batch_bounds(void **state)
{
	static const struct {
		size_t n;
		bool sign_data;
		const char *says;
	} bad[] = {
		{KW_SIGN_BATCH_MAX + 1, false, "257 elements, at most 256"},
		{0, false, "no data to sign"},
		{2, true, "no data there"},
	};
	Keyward__Response *resp;
	struct raw r;

	(void)state;
	raw_open_dev(&r);
	raw_hello_ok(&r, 1);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		resp = raw_sign_batch(&r, 10 + i, ref_id, bad[i].n, bad[i].sign_data);
		assert_int_equal(resp->id, 10 + i);
		assert_int_equal(resp->status, KEYWARD__STATUS__ARGUMENTS);
		assert_int_equal(resp->body_case, KEYWARD__RESPONSE__BODY__NOT_SET);
		if (!strstr(resp->message, bad[i].says))
			fail_msg("case %zu: \"%s\" does not say \"%s\"", i, resp->message, bad[i].says);
		keyward__response__free_unpacked(resp, NULL);
	}
	/* the cap itself is fine, and every signature verifies */
	resp = raw_sign_batch(&r, 20, ref_id, KW_SIGN_BATCH_MAX, false);
	assert_int_equal(resp->status, KEYWARD__STATUS__OK);
	assert_int_equal(resp->body_case, KEYWARD__RESPONSE__BODY_SIGNATURE_BATCH);
	assert_int_equal(resp->signature_batch->n_signatures, KW_SIGN_BATCH_MAX);
	for (size_t i = 0; i < KW_SIGN_BATCH_MAX; i++) {
		unsigned char digest[32] = {(unsigned char)i};
		assert_true(kwt_ecdsa_verifies(ref_spki, ref_spki_len, digest, 32, resp->signature_batch->signatures[i].data,
					       resp->signature_batch->signatures[i].len));
	}
	keyward__response__free_unpacked(resp, NULL);
	raw_close(&r);
}

/* One integer from an SQL query on a stopped server's store. */
static long long store_int(struct kwt_server *s, const char *sql_text)
{
	char db[300];
	sqlite3 *sql;
	sqlite3_stmt *st;
	long long v;

	snprintf(db, sizeof db, "%s/keystore.db", s->dir);
	assert_int_equal(sqlite3_open(db, &sql), SQLITE_OK);
	sqlite3_busy_timeout(sql, 5000);
	if (sqlite3_prepare_v2(sql, sql_text, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql_text, sqlite3_errmsg(sql));
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(sql);
	return v;
}

/*
 * Issue #11, finding 3: 10,000 failed enrollments from one address, each for
 * another partition name (so no lockout stops them), against a store capped
 * at 1 MiB. They leave two audit records (the first failure and one
 * "N more failures" summary), and a key generation afterwards succeeds.
 */
#define FLOOD 10000
static void test_enroll_flood(void **state)
{
	struct kwt_server s = {0};
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__Enroll e = KEYWARD__ENROLL__INIT;
	unsigned char csr[64];
	char partition[32], *out = NULL;
	unsigned refused = 0, locked = 0;
	kw_object *priv = NULL, *pub = NULL;
	struct raw r;
	kw_client *c;
	long long records, more;
	double t0;

	(void)state;
	c = kwt_start_initialized(&s, "store_max_bytes = 1048576\nauth_timeout = 3600\n"
				      "[audit]\nfailure_interval = 3600\n");
	memset(csr, 0x30, sizeof csr);
	e.partition = partition;
	e.setup_password = "not-the-password";
	e.csr.data = csr;
	e.csr.len = sizeof csr;
	req.body_case = KEYWARD__REQUEST__BODY_ENROLL;
	req.enroll = &e;
	t0 = now_s();
	for (unsigned i = 0; i < FLOOD; i++) {
		Keyward__Response *resp;

		/* the server takes 8 requests before a Hello on one connection: a new one for every 8 */
		if (i % 8 == 0) {
			if (i)
				raw_close(&r);
			raw_open(&r, &s, NULL, NULL, NULL);
			assert_true(r.handshake_ok);
		}
		snprintf(partition, sizeof partition, "flood-%u", i);
		req.id = i + 1;
		raw_send_request(&r, &req);
		resp = raw_expect(&r);
		if (resp->status == KEYWARD__STATUS__AUTH)
			refused++;
		else if (resp->status == KEYWARD__STATUS__LOCKED_OUT)
			locked++;
		else
			fail_msg("enroll %u: status %d: %s", i, resp->status, resp->message);
		keyward__response__free_unpacked(resp, NULL);
	}
	raw_close(&r);
	print_message("%d failed enrollments (%u refused, %u locked out) in %.1f s\n", FLOOD, refused, locked,
		      now_s() - t0);

	/* the flood did not fill the store: a key can still be made, and the log is intact */
	kwt_ok(kw_generate_key(c, OWNER, "after-flood", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify"), 0);
	free(out);

	/* stopping writes the summary of the interval still open */
	kw_client_free(c);
	kwt_stop(&s);
	records = store_int(&s, "SELECT count(*) FROM audit WHERE event = 'enroll.fail'");
	more = store_int(&s, "SELECT coalesce(sum(CAST(detail AS INTEGER)), 0) FROM audit WHERE event = 'enroll.fail'"
			     " AND detail LIKE '% more failure%'");
	print_message("%u refused enrollments left %lld audit records, summing up %lld more\n", refused, records, more);
	assert_int_equal(records, 2);
	assert_int_equal(1 + more, refused);
	assert_int_equal(store_int(&s, "SELECT count(*) FROM audit WHERE event = 'key.generate'"
				       " AND detail LIKE '%after-flood%'"),
			 1);
	kwt_cleanup(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_garbage_frames),
		cmocka_unit_test(test_oversize_frame),
		cmocka_unit_test(test_unknown_request_type),
		cmocka_unit_test(test_no_client_certificate),
		cmocka_unit_test(test_foreign_ca_certificate),
		cmocka_unit_test(test_admin_over_tls),
		cmocka_unit_test(test_wrong_partition),
		cmocka_unit_test(test_tampered_rows),
		cmocka_unit_test(test_truncated_frame),
		cmocka_unit_test(test_store_full),
		cmocka_unit_test(test_disk_full),
		cmocka_unit_test(test_sign_batch_bounds),
		cmocka_unit_test(test_enroll_flood),
	};
	/* raw writes to a connection the server closed must fail, not kill the test */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("integration_badinput", tests, setup, teardown);
}
