/*
 * One connection to one HSM: non-blocking TCP connect bounded by
 * connect_timeout, TLS 1.3 with the server verified against the configured
 * CA and name, a Hello, then framed Request/Response exchanges, each bounded
 * by command_timeout. The socket stays non-blocking; every wait is a poll()
 * after OpenSSL said WANT_READ/WANT_WRITE, so bytes OpenSSL already buffered
 * are never waited for. Writes go through send(MSG_NOSIGNAL) (a BIO of our
 * own, below), since a library must not kill its host process with SIGPIPE
 * when an HSM goes away.
 */
#include "client/client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/log.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* strerror with a lower-case first letter, to sit inside a sentence */
static const char *errtext(int e, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(e));
	if (buf[0])
		buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}

static const char *ssl_errtext(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (!e)
		snprintf(buf, len, "unknown TLS error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

/* ---- SIGPIPE ---- */

/*
 * A socket BIO whose writes use send(MSG_NOSIGNAL): a peer that went away
 * must not raise SIGPIPE in the host process, and blocking the signal
 * around every call would cost several syscalls per request.
 *
 * Each connection owns its BIO_METHOD and frees it after its SSL: a
 * method shared by the process could never be freed safely, and would
 * leak each time a host unloads the PKCS#11 module. The type index is
 * taken once, as OpenSSL hands out only 128 of them.
 */
static int nosigpipe_type;
static pthread_once_t nosigpipe_once = PTHREAD_ONCE_INIT;

static void take_nosigpipe_type(void)
{
	int index = BIO_get_new_index();

	nosigpipe_type = (index > 0 ? index : BIO_TYPE_NONE) | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
}

static int nosigpipe_write(BIO *b, const char *data, int len)
{
	int fd = -1;
	ssize_t n;

	BIO_get_fd(b, &fd);
	errno = 0;
	n = send(fd, data, (size_t)len, MSG_NOSIGNAL);
	BIO_clear_retry_flags(b);
	if (n <= 0 && BIO_sock_should_retry((int)n))
		BIO_set_retry_write(b);
	return (int)n;
}

static int nosigpipe_puts(BIO *b, const char *str)
{
	return nosigpipe_write(b, str, (int)strlen(str));
}

/* A new method (BIO_meth_free), or NULL. */
static BIO_METHOD *new_nosigpipe_method(void)
{
	const BIO_METHOD *sock = BIO_s_socket();
	BIO_METHOD *m;

	pthread_once(&nosigpipe_once, take_nosigpipe_type);
	m = BIO_meth_new(nosigpipe_type, "keyward socket");
	if (m && (!BIO_meth_set_write(m, nosigpipe_write) || !BIO_meth_set_puts(m, nosigpipe_puts) ||
		  !BIO_meth_set_read(m, BIO_meth_get_read(sock)) || !BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock)) ||
		  !BIO_meth_set_create(m, BIO_meth_get_create(sock)) ||
		  !BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock)))) {
		BIO_meth_free(m);
		m = NULL;
	}
	return m;
}

/* how much one read asks for; a burst of answers usually fits */
#define READ_CHUNK 16384

/* ---- waiting ---- */

static kw_rv wait_fd(int fd, short events, double deadline, double timeout, const char *what)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = events};
		double left = deadline - now();
		int r, ms;
		char eb[128];

		if (left <= 0)
			return kw_error_set(KW_ERR_TIMEOUT, "%s timed out after %g s", what, timeout);
		ms = (int)(left * 1000) + 1;
		r = poll(&pfd, 1, ms);
		if (r > 0)
			return KW_OK; /* readable, writable, or an error the next call reports */
		if (r < 0 && errno != EINTR)
			return kw_error_set(KW_ERR_NETWORK, "%s: poll failed: %s", what, errtext(errno, eb, sizeof eb));
	}
}

/* ---- TLS context ---- */

struct pin_state {
	const char *pin;
	bool asked;
};

static int pin_cb(char *buf, int size, int rwflag, void *u)
{
	struct pin_state *st = u;
	size_t len;

	(void)rwflag;
	st->asked = true;
	if (!st->pin)
		return -1;
	len = strlen(st->pin);
	if (len > (size_t)size)
		return -1;
	memcpy(buf, st->pin, len);
	return (int)len;
}

/*
 * The credential key, decrypted with pin; from_file names where the PIN
 * came from (the configuration's pin_file), or is NULL for one given.
 */
static kw_rv load_key(const struct kw_config *cfg, const char *pin, const char *from_file, EVP_PKEY **out)
{
	struct pin_state st = {.pin = pin};
	const char *path = cfg->key;
	char eb[256];
	BIO *bio;

	*out = NULL;
	bio = BIO_new_file(path, "r");
	if (!bio) {
		ERR_clear_error();
		return kw_error_set(KW_ERR_CONFIG,
				    "cannot read credential key %s: %s (register this client first: ksputil register, "
				    "with its partition's setup password; or fix \"key\" in %s)",
				    path, errtext(errno, eb, sizeof eb), cfg->path);
	}
	*out = PEM_read_bio_PrivateKey(bio, NULL, pin_cb, &st);
	BIO_free(bio);
	if (*out) {
		ERR_clear_error();
		return KW_OK;
	}
	ssl_errtext(eb, sizeof eb);
	if (st.asked && !pin)
		return kw_error_set(KW_ERR_AUTH,
				    "credential key %s is encrypted and no PIN was given: give the PIN (ksputil "
				    "--pin-file F, a PKCS#11 login), or name a PIN file as \"pin_file\" in [client] of "
				    "%s (ksputil register --pin-file records it)",
				    path, cfg->path);
	if (st.asked && from_file)
		return kw_error_set(KW_ERR_AUTH,
				    "wrong PIN: the PIN in %s (\"pin_file\" in %s) does not decrypt "
				    "the credential key %s",
				    from_file, cfg->path, path);
	if (st.asked)
		return kw_error_set(KW_ERR_AUTH, "wrong PIN: it does not decrypt the credential key %s", path);
	return kw_error_set(KW_ERR_CONFIG, "credential key %s is not a PEM private key (%s)", path, eb);
}

/* The credential key, decrypted with pin, else with the pin_file's PIN. */
static kw_rv load_credential_key(const struct kw_config *cfg, const char *pin, EVP_PKEY **out)
{
	char from_file[KW_SECRET_MAX + 1];
	kw_rv rv;

	if (pin || !cfg->pin_file)
		return load_key(cfg, pin, NULL, out);
	/* a service's unattended PIN: the file must be its owner's alone */
	rv = kw_secret_read_file(cfg->pin_file, "PIN file", from_file, sizeof from_file);
	if (rv) {
		char why[600];
		snprintf(why, sizeof why, "%s", kw_last_error());
		rv = kw_error_set(rv, "%s (\"pin_file\" in %s)", why, cfg->path);
	} else {
		rv = load_key(cfg, from_file, cfg->pin_file, out);
	}
	OPENSSL_cleanse(from_file, sizeof from_file);
	return rv;
}

kw_rv kw_tls_check_pin(const struct kw_config *cfg, const char *pin)
{
	EVP_PKEY *pkey = NULL;
	kw_rv rv;

	if (!cfg->key)
		return kw_error_set(KW_ERR_CONFIG,
				    "%s names no client credential: add \"cert\" and \"key\" to [client]", cfg->path);
	rv = load_key(cfg, pin, NULL, &pkey);
	EVP_PKEY_free(pkey);
	return rv;
}

kw_rv kw_tls_ctx_new(const struct kw_config *cfg, const char *pin, bool with_cred, SSL_CTX **out)
{
	SSL_CTX *ctx;
	EVP_PKEY *pkey = NULL;
	char eb[256];
	kw_rv rv = KW_OK;

	*out = NULL;
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		ERR_clear_error();
		return kw_error_set(KW_ERR_NO_MEMORY, "cannot create a TLS context: out of memory");
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
		rv = kw_error_set(KW_ERR_CRYPTO, "cannot require TLS 1.3: %s", ssl_errtext(eb, sizeof eb));
		goto out;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* one read() per burst of records, not two per record (header, body) */
	SSL_CTX_set_read_ahead(ctx, 1);
	if (access(cfg->ca, R_OK) != 0) {
		rv = kw_error_set(KW_ERR_CONFIG, "cannot read the HSM's CA certificate %s (\"ca\" in %s): %s", cfg->ca,
				  cfg->path, errtext(errno, eb, sizeof eb));
		goto out;
	}
	if (!SSL_CTX_load_verify_file(ctx, cfg->ca)) {
		rv = kw_error_set(KW_ERR_CONFIG, "%s (\"ca\" in %s) holds no usable PEM certificate: %s", cfg->ca,
				  cfg->path, ssl_errtext(eb, sizeof eb));
		goto out;
	}
	if (with_cred) {
		if (!cfg->cert) {
			rv = kw_error_set(KW_ERR_CONFIG,
					  "%s names no client credential: add \"cert\" and \"key\" to [client]",
					  cfg->path);
			goto out;
		}
		if (access(cfg->cert, R_OK) != 0) {
			rv = kw_error_set(KW_ERR_CONFIG,
					  "cannot read client certificate %s: %s (register this client first: ksputil "
					  "register, with its partition's setup password)",
					  cfg->cert, errtext(errno, eb, sizeof eb));
			goto out;
		}
		if (!SSL_CTX_use_certificate_chain_file(ctx, cfg->cert)) {
			rv = kw_error_set(KW_ERR_CONFIG, "client certificate %s is not a PEM certificate: %s",
					  cfg->cert, ssl_errtext(eb, sizeof eb));
			goto out;
		}
		rv = load_credential_key(cfg, pin, &pkey);
		if (rv)
			goto out;
		if (!SSL_CTX_use_PrivateKey(ctx, pkey) || !SSL_CTX_check_private_key(ctx)) {
			rv = kw_error_set(KW_ERR_CONFIG, "client certificate %s does not match key %s: %s", cfg->cert,
					  cfg->key, ssl_errtext(eb, sizeof eb));
			goto out;
		}
	}
out:
	EVP_PKEY_free(pkey);
	if (rv) {
		SSL_CTX_free(ctx);
		return rv;
	}
	*out = ctx;
	return KW_OK;
}

/* ---- TCP ---- */

static kw_rv tcp_connect(const struct kw_config *cfg, const struct kw_hsm_cfg *h, int *fd_out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL, *ai;
	char port[16], eb[128];
	double deadline = now() + cfg->connect_timeout;
	kw_rv rv = KW_ERR_NETWORK;
	int r, fd = -1;

	*fd_out = -1;
	snprintf(port, sizeof port, "%u", h->port);
	r = getaddrinfo(h->host, port, &hints, &res);
	if (r)
		return kw_error_set(KW_ERR_NETWORK, "cannot resolve host: %s",
				    r == EAI_SYSTEM ? errtext(errno, eb, sizeof eb) : gai_strerror(r));
	kw_error_set(KW_ERR_NETWORK, "no address");
	for (ai = res; ai; ai = ai->ai_next) {
		int err = 0;
		socklen_t elen = sizeof err;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			rv = kw_error_set(KW_ERR_NETWORK, "socket: %s", errtext(errno, eb, sizeof eb));
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno != EINPROGRESS) {
			rv = kw_error_set(KW_ERR_NETWORK, "%s", errtext(errno, eb, sizeof eb));
			close(fd);
			fd = -1;
			continue;
		}
		for (;;) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			double left = deadline - now();
			if (left <= 0) {
				r = 0;
				break;
			}
			r = poll(&pfd, 1, (int)(left * 1000) + 1);
			if (r >= 0 || errno != EINTR)
				break;
		}
		if (r == 0) {
			rv = kw_error_set(KW_ERR_TIMEOUT, "timed out after %g s", cfg->connect_timeout);
			close(fd);
			fd = -1;
			break; /* the time is spent */
		}
		if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = errno;
		if (err == 0)
			break;
		rv = kw_error_set(KW_ERR_NETWORK, "%s", errtext(err, eb, sizeof eb));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return rv;

	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (cfg->keepalive > 0) {
		int idle = cfg->keepalive;
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
	}
	*fd_out = fd;
	return KW_OK;
}

/* ---- TLS I/O ---- */

/* An error after SSL_connect/read/write failed with SSL_ERROR_SSL. */
static kw_rv tls_failure(const char *what)
{
	unsigned long e = ERR_peek_last_error();
	int reason = ERR_GET_REASON(e);
	char eb[256];

	ssl_errtext(eb, sizeof eb);
	switch (reason) {
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
		return kw_error_set(KW_ERR_AUTH, "%s: the HSM refused this client's certificate (%s)", what, eb);
	default:
		return kw_error_set(KW_ERR_NETWORK, "%s: TLS error: %s", what, eb);
	}
}

static kw_rv ssl_wait(struct kw_conn *c, int r, double deadline, double timeout, const char *what)
{
	int err = SSL_get_error(c->ssl, r);
	char eb[128];

	switch (err) {
	case SSL_ERROR_WANT_READ:
		return wait_fd(c->fd, POLLIN, deadline, timeout, what);
	case SSL_ERROR_WANT_WRITE:
		return wait_fd(c->fd, POLLOUT, deadline, timeout, what);
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return kw_error_set(KW_ERR_NETWORK, "%s: the HSM closed the connection", what);
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_last_error())
			return tls_failure(what);
		if (errno == 0 || errno == EAGAIN)
			return kw_error_set(KW_ERR_NETWORK, "%s: the HSM closed the connection", what);
		return kw_error_set(KW_ERR_NETWORK, "%s: %s", what, errtext(errno, eb, sizeof eb));
	case SSL_ERROR_SSL:
		return tls_failure(what);
	default:
		ERR_clear_error();
		return kw_error_set(KW_ERR_NETWORK, "%s: unexpected TLS state %d", what, err);
	}
}

static kw_rv ssl_write_all(struct kw_conn *c, const unsigned char *p, size_t len, double deadline, double timeout)
{
	kw_rv rv = KW_OK;

	while (len) {
		size_t n = 0;
		int r;

		ERR_clear_error();
		errno = 0;
		r = SSL_write_ex(c->ssl, p, len, &n);
		if (r > 0) {
			p += n;
			len -= n;
			continue;
		}
		rv = ssl_wait(c, r, deadline, timeout, "sending the request");
		if (rv)
			break;
	}
	return rv;
}

/*
 * Reads what has arrived into c->in, waiting (up to the deadline) when
 * nothing has. The leader's alone.
 */
static kw_rv ssl_read_some(struct kw_conn *c, double deadline, double timeout)
{
	kw_rv rv;
	bool got = false;

	for (;;) {
		size_t n = 0;
		int r;

		if (!got && !SSL_has_pending(c->ssl) &&
		    (rv = wait_fd(c->fd, POLLIN, deadline, timeout, "waiting for the HSM's answer")))
			return rv;
		if ((rv = kw_buf_reserve(&c->in, READ_CHUNK)))
			return kw_error_set(KW_ERR_PROTOCOL, "the HSM sent more than a frame can hold");
		ERR_clear_error();
		errno = 0;
		r = SSL_read_ex(c->ssl, c->in.data + c->in.len, READ_CHUNK, &n);
		if (r > 0) {
			c->in.len += n;
			got = true;
			/* a short read emptied the socket and OpenSSL's buffer */
			if (n < READ_CHUNK && !SSL_has_pending(c->ssl))
				return KW_OK;
			continue;
		}
		if (got && SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ) {
			ERR_clear_error();
			return KW_OK;
		}
		rv = ssl_wait(c, r, deadline, timeout, "waiting for the HSM's answer");
		if (rv)
			return rv;
	}
}

struct kw_waiter {
	uint64_t id;
	pthread_cond_t cond;
	bool done;
	Keyward__Response *resp;
	struct kw_waiter *next;
};

static void unlink_waiter_locked(struct kw_conn *c, struct kw_waiter *w)
{
	for (struct kw_waiter **pp = &c->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			return;
		}
	}
}

/* Marks the stream unusable and wakes every waiter (caller holds c->lock). */
static void break_locked(struct kw_conn *c, kw_rv rv, const char *msg)
{
	if (!c->broken) {
		c->broken = rv;
		snprintf(c->broken_msg, sizeof c->broken_msg, "%s", msg);
	}
	for (struct kw_waiter *w = c->waiters; w; w = w->next)
		pthread_cond_signal(&w->cond);
}

/*
 * Decodes the whole frames in c->in and hands each to its waiter (caller
 * holds c->lock). A frame for an id never sent, or one that does not
 * decode, breaks the stream; an answer whose caller gave up is dropped.
 */
static void dispatch_locked(struct kw_conn *c)
{
	size_t body_len = 0, off = 0;
	bool complete;

	while (!c->broken) {
		Keyward__Response *resp = NULL;
		struct kw_waiter *w;
		char msg[300];

		if (kw_frame_peek(c->in.data + off, c->in.len - off, KW_MAX_FRAME, &body_len, &complete) != KW_OK) {
			const unsigned char *h = c->in.data + off;
			snprintf(msg, sizeof msg,
				 "the HSM announced a response of %lu bytes (allowed: 1 to %u): not a keyward server, "
				 "or a damaged stream",
				 (unsigned long)((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 |
						 h[3]),
				 KW_MAX_FRAME);
			break_locked(c, KW_ERR_PROTOCOL, msg);
			break;
		}
		if (!complete)
			break;
		if (kw_frame_decode_response(c->in.data + off + KW_FRAME_HEADER, body_len, &resp) != KW_OK) {
			snprintf(msg, sizeof msg, "the HSM sent a response that does not decode (%zu bytes)", body_len);
			break_locked(c, KW_ERR_PROTOCOL, msg);
			break;
		}
		OPENSSL_cleanse(c->in.data + off, KW_FRAME_HEADER + body_len);
		off += KW_FRAME_HEADER + body_len;
		kw_debug(KW_DEBUG_WIRE, "wire: response %llu, status %d", (unsigned long long)resp->id,
			 (int)resp->status);
		for (w = c->waiters; w && w->id != resp->id; w = w->next)
			;
		if (w) {
			w->resp = resp;
			w->done = true;
			pthread_cond_signal(&w->cond);
		} else if (resp->id == 0 || resp->id >= c->next_id) {
			snprintf(msg, sizeof msg, "the HSM sent a response to request %llu, which was never sent%s%s",
				 (unsigned long long)resp->id, resp->message && *resp->message ? ": " : "",
				 resp->message ? resp->message : "");
			keyward__response__free_unpacked(resp, NULL);
			break_locked(c, KW_ERR_PROTOCOL, msg);
		} else {
			keyward__response__free_unpacked(resp, NULL); /* its caller timed out */
		}
	}
	kw_buf_consume(&c->in, off);
}

/*
 * The I/O leader's turn (called and returning with c->lock held): write
 * what is queued, read what has come, dispatch, until `me` is answered or
 * the stream breaks; then pass the lead to a waiter still waiting.
 */
static void lead_io_locked(struct kw_conn *c, struct kw_waiter *me, double deadline, double timeout)
{
	c->io_busy = true;
	while (!me->done && !c->broken) {
		struct kw_buf out = c->out;
		kw_rv rv = KW_OK;

		kw_buf_init(&c->out, out.max);
		pthread_mutex_unlock(&c->lock);
		if (out.len)
			rv = ssl_write_all(c, out.data, out.len, deadline, timeout);
		kw_buf_cleanup(&out); /* may carry key material or passwords */
		if (!rv)
			rv = ssl_read_some(c, deadline, timeout);
		pthread_mutex_lock(&c->lock);
		if (rv) {
			break_locked(c, rv, kw_last_error());
			break;
		}
		dispatch_locked(c);
	}
	c->io_busy = false;
	for (struct kw_waiter *w = c->waiters; w; w = w->next) {
		if (!w->done) {
			pthread_cond_signal(&w->cond);
			break;
		}
	}
}

static void abs_deadline(double deadline, struct timespec *ts)
{
	/* cond waits use CLOCK_MONOTONIC, like now() */
	ts->tv_sec = (time_t)deadline;
	ts->tv_nsec = (long)((deadline - (double)ts->tv_sec) * 1e9);
}

bool kw_conn_broken(struct kw_conn *c)
{
	bool broken;

	pthread_mutex_lock(&c->lock);
	broken = c->broken != KW_OK;
	pthread_mutex_unlock(&c->lock);
	return broken;
}

kw_rv kw_conn_call(struct kw_conn *c, double timeout, Keyward__Request *req, Keyward__Response **resp_out, bool *sent)
{
	double deadline = now() + timeout;
	struct kw_waiter me = {0};
	pthread_condattr_t attr;
	Keyward__Response *resp;
	kw_rv rv;

	*resp_out = NULL;
	if (sent)
		*sent = false;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&me.cond, &attr);
	pthread_condattr_destroy(&attr);

	pthread_mutex_lock(&c->lock);
	if (c->broken) {
		rv = kw_error_set(c->broken, "%s", c->broken_msg);
		goto out;
	}
	req->id = c->next_id++;
	me.id = req->id;
	rv = kw_frame_put_request(&c->out, req);
	if (rv) {
		/* nothing was queued: the connection is still good */
		rv = rv == KW_ERR_NO_MEMORY
			     ? kw_error_set(rv, "out of memory encoding a request")
			     : kw_error_set(KW_ERR_DATA_LEN, "request too large: more than %u bytes once encoded",
					    KW_MAX_FRAME);
		goto out;
	}
	kw_debug(KW_DEBUG_WIRE, "wire: request %llu, body %d", (unsigned long long)req->id, (int)req->body_case);
	/* from here on the HSM may receive it, whatever happens to the stream */
	if (sent)
		*sent = true;
	me.next = c->waiters;
	c->waiters = &me;
	while (!me.done && !c->broken) {
		if (!c->io_busy) {
			lead_io_locked(c, &me, deadline, timeout);
			continue;
		}
		struct timespec ts;
		abs_deadline(deadline, &ts);
		if (pthread_cond_timedwait(&me.cond, &c->lock, &ts) == ETIMEDOUT && !me.done) {
			rv = kw_error_set(KW_ERR_TIMEOUT, "waiting for the HSM's answer timed out after %g s", timeout);
			break;
		}
	}
	unlink_waiter_locked(c, &me);
	if (!me.done && !rv)
		rv = kw_error_set(c->broken, "%s", c->broken_msg);
out:
	c->last_used = now();
	pthread_mutex_unlock(&c->lock);
	pthread_cond_destroy(&me.cond);
	if (!me.done)
		return rv;
	resp = me.resp;
	if (resp->status != KEYWARD__STATUS__OK) {
		kw_rv srv = (unsigned)resp->status < KW_RV_COUNT ? (kw_rv)resp->status : KW_ERR_GENERAL;
		const char *msg = resp->message && *resp->message ? resp->message : kw_rv_text(srv);
		/* error.c keeps the thread's message; msg is copied before resp goes */
		rv = kw_error_set(srv, "%s", msg);
		keyward__response__free_unpacked(resp, NULL);
		return rv;
	}
	*resp_out = resp;
	return KW_OK;
}

/* ---- open / close ---- */

static kw_rv tls_handshake(const struct kw_config *cfg, const struct kw_hsm_cfg *h, SSL_CTX *ctx, struct kw_conn *c)
{
	double deadline = now() + cfg->command_timeout;
	unsigned char ipbuf[16];
	bool is_ip;
	BIO *bio;
	kw_rv rv;

	c->ssl = SSL_new(ctx);
	if (!c->ssl) {
		ERR_clear_error();
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory creating a TLS connection");
	}
	c->bio_method = new_nosigpipe_method();
	bio = c->bio_method ? BIO_new(c->bio_method) : NULL;
	if (!bio) {
		ERR_clear_error();
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory creating a TLS connection");
	}
	BIO_set_fd(bio, c->fd, BIO_NOCLOSE);
	SSL_set_bio(c->ssl, bio, bio);
	is_ip = inet_pton(AF_INET, h->server_name, ipbuf) == 1 || inet_pton(AF_INET6, h->server_name, ipbuf) == 1;
	if (is_ip) {
		if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), h->server_name)) {
			ERR_clear_error();
			return kw_error_set(KW_ERR_CONFIG, "server_name %s: not a usable IP address", h->server_name);
		}
	} else {
		if (!SSL_set1_host(c->ssl, h->server_name) || !SSL_set_tlsext_host_name(c->ssl, h->server_name)) {
			ERR_clear_error();
			return kw_error_set(KW_ERR_CONFIG, "server_name %s: not a usable host name", h->server_name);
		}
	}
	for (;;) {
		int r;

		ERR_clear_error();
		errno = 0;
		r = SSL_connect(c->ssl);
		if (r == 1)
			return KW_OK;
		if (SSL_get_error(c->ssl, r) == SSL_ERROR_SSL) {
			long vr = SSL_get_verify_result(c->ssl);
			if (vr != X509_V_OK) {
				ERR_clear_error();
				return kw_error_set(KW_ERR_AUTH,
						    "server certificate not trusted: %s (expected a certificate for "
						    "\"%s\" from the CA in %s)",
						    X509_verify_cert_error_string(vr), h->server_name, cfg->ca);
			}
		}
		rv = ssl_wait(c, r, deadline, cfg->command_timeout, "TLS handshake");
		if (rv)
			return rv;
	}
}

kw_rv kw_conn_open(const struct kw_config *cfg, size_t hsm, SSL_CTX *ctx, struct kw_conn **out,
		   Keyward__HelloResult **hello_out, char *why, size_t why_len)
{
	const struct kw_hsm_cfg *h = &cfg->hsms[hsm];
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__Hello hello = KEYWARD__HELLO__INIT;
	Keyward__Response *resp = NULL;
	struct kw_conn *c;
	kw_rv rv;

	*out = NULL;
	if (hello_out)
		*hello_out = NULL;
	why[0] = '\0';
	c = calloc(1, sizeof *c);
	if (!c)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory connecting to %s", h->address);
	c->fd = -1;
	c->fork_gen = kw_fork_generation();
	c->last_used = now();
	c->next_id = 1;
	c->hsm = hsm;
	pthread_mutex_init(&c->lock, NULL);
	kw_buf_init(&c->out, (size_t)KW_PIPELINE_DEPTH * 4 * (KW_FRAME_HEADER + KW_MAX_FRAME));
	kw_buf_init(&c->in, KW_FRAME_HEADER + KW_MAX_FRAME + READ_CHUNK);

	rv = tcp_connect(cfg, h, &c->fd);
	if (rv)
		goto out;
	rv = tls_handshake(cfg, h, ctx, c);
	if (rv)
		goto out;

	hello.min_version = KW_PROTOCOL_VERSION;
	hello.max_version = KW_PROTOCOL_VERSION;
	hello.partition = cfg->partition;
	hello.client = program_invocation_short_name;
	req.body_case = KEYWARD__REQUEST__BODY_HELLO;
	req.hello = &hello;
	rv = kw_conn_call(c, cfg->command_timeout, &req, &resp, NULL);
	if (rv)
		goto out;
	if (resp->body_case != KEYWARD__RESPONSE__BODY_HELLO) {
		rv = kw_error_set(KW_ERR_PROTOCOL, "the HSM answered Hello without a HelloResult");
		goto out;
	}
	if (resp->hello->version != KW_PROTOCOL_VERSION) {
		rv = kw_error_set(KW_ERR_VERSION, "the HSM speaks protocol version %u, this client %u",
				  resp->hello->version, KW_PROTOCOL_VERSION);
		goto out;
	}
	kw_debug(KW_DEBUG_POOL, "pool: connected to %s (server %s, partition %s)", h->address,
		 resp->hello->server ? resp->hello->server : "", resp->hello->partition ? resp->hello->partition : "");
	if (hello_out) {
		*hello_out = resp->hello;
		resp->hello = NULL;
		resp->body_case = KEYWARD__RESPONSE__BODY__NOT_SET;
	}
out:
	if (resp)
		keyward__response__free_unpacked(resp, NULL);
	if (rv) {
		snprintf(why, why_len, "%s", kw_last_error());
		kw_error_set(rv, "%s: %s", h->address, why);
		kw_conn_close(c, false);
		return rv;
	}
	*out = c;
	return KW_OK;
}

bool kw_conn_alive(const struct kw_conn *c)
{
	char b;
	ssize_t r;

	if (SSL_pending(c->ssl) > 0)
		return true;
	r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r > 0)
		return true;
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return true;
	return false;
}

void kw_conn_close(struct kw_conn *c, bool graceful)
{
	if (!c)
		return;
	if (c->ssl) {
		if (graceful && c->fork_gen == kw_fork_generation())
			SSL_shutdown(c->ssl); /* one non-blocking try: close_notify out */
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	BIO_meth_free(c->bio_method); /* after the SSL, whose BIO uses it */
	if (c->fd >= 0)
		close(c->fd);
	kw_buf_cleanup(&c->out);
	kw_buf_cleanup(&c->in);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
