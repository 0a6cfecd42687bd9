/*
 * Fuzz target: keywardd's connection state machine, driven in random event
 * orders. The input is a script of operations on up to eight client
 * sockets (open over TCP or the admin socket, TLS handshake steps with and
 * without a client certificate, Hello, a request frame made of input
 * bytes, raw bytes under TLS, close, reset, half-close, read) interleaved
 * with turns of the real server loop and jumps of its clock past every
 * deadline. After the script every client goes away, and the server must
 * count every connection out exactly once: its admission counts return to
 * zero (they underflowed once, and connections were used after free).
 *
 * The server is the real one (kw_server_setup, as keywardd runs it: a
 * development store in a temporary directory, one event loop, the slow
 * pool), made once and reused by every input.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/frame.h"
#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/gate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SLOTS 8

static struct kw_server srv;
static SSL_CTX *anon_ctx, *cert_ctx;
static char dir[] = "/tmp/fuzz_server.XXXXXX";

struct slot {
	int fd;
	SSL *ssl;
	bool admin;
};

static int pin_cb(char *buf, int size, int rwflag, void *u)
{
	char path[128], pin[64] = "";
	FILE *f;

	(void)rwflag;
	(void)u;
	snprintf(path, sizeof path, "%s/pin", dir);
	if (!(f = fopen(path, "r")) || !fgets(pin, sizeof pin, f))
		abort();
	fclose(f);
	pin[strcspn(pin, "\n")] = '\0';
	snprintf(buf, (size_t)size, "%s", pin);
	return (int)strlen(buf);
}

static SSL_CTX *client_ctx(bool with_cert)
{
	char path[128];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	snprintf(path, sizeof path, "%s/tls/ca.crt", dir);
	SSL_CTX_load_verify_locations(ctx, path, NULL);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (with_cert) {
		SSL_CTX_set_default_passwd_cb(ctx, pin_cb);
		snprintf(path, sizeof path, "%s/client/dev.crt", dir);
		if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1)
			abort();
		snprintf(path, sizeof path, "%s/client/dev.key", dir);
		if (SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) != 1)
			abort();
	}
	return ctx;
}

static void remove_dir(void)
{
	char cmd[128];

	kw_server_teardown(&srv);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_server: could not remove %s\n", dir);
}

static void start_server(void)
{
	kw_log_init("error"); /* every closed connection is an info line */
	if (!mkdtemp(dir))
		abort();
	kw_server_config_defaults(&srv.cfg);
	snprintf(srv.cfg.dev_dir, sizeof srv.cfg.dev_dir, "%s", dir);
	snprintf(srv.cfg.listen, sizeof srv.cfg.listen, "127.0.0.1:0");
	srv.cfg.workers = 1;
	srv.cfg.slow_workers = 1;
	/* small budgets, so that eviction and refusal are reached */
	srv.cfg.max_connections = 3;
	srv.cfg.max_unauthenticated = 4;
	srv.cfg.max_unauthenticated_per_address = 3;
	srv.cfg.admin_max_connections = 2;
	srv.cfg.max_inflight = 4;
	kw_server_block_signals();
	if (kw_dev_config(&srv.cfg, NULL) || kw_server_setup(&srv)) {
		fprintf(stderr, "fuzz_server: cannot start the server: %s\n", kw_last_error());
		abort();
	}
	anon_ctx = client_ctx(false);
	cert_ctx = client_ctx(true);
	atexit(remove_dir);
}

static void slot_close(struct slot *s, bool reset)
{
	if (s->fd < 0)
		return;
	if (reset) {
		struct linger lg = {1, 0};
		setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	SSL_free(s->ssl);
	s->ssl = NULL;
	close(s->fd);
	s->fd = -1;
	ERR_clear_error();
}

static void slot_open(struct slot *s, bool admin)
{
	int fd;

	slot_close(s, false);
	if (admin) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		memcpy(sa.sun_path, srv.cfg.admin_socket, strlen(srv.cfg.admin_socket) + 1);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS &&
		    errno != EAGAIN) {
			close(fd);
			fd = -1;
		}
	} else {
		struct sockaddr_in sa = {
			.sin_family = AF_INET, .sin_port = htons(srv.port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int one = 1;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd >= 0)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
			close(fd);
			fd = -1;
		}
	}
	s->fd = fd;
	s->admin = admin;
}

/* Writes bytes to the slot: through TLS once it has a session, else raw. */
static void slot_send(struct slot *s, const void *p, size_t n)
{
	if (s->fd < 0 || !n)
		return;
	if (s->ssl && SSL_is_init_finished(s->ssl))
		(void)SSL_write(s->ssl, p, (int)n);
	else
		(void)!send(s->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	ERR_clear_error();
}

static void slot_send_request(struct slot *s, const Keyward__Request *req)
{
	unsigned char buf[512];
	size_t len = keyward__request__get_packed_size(req);

	if (len + KW_FRAME_HEADER > sizeof buf)
		return;
	buf[0] = (unsigned char)(len >> 24);
	buf[1] = (unsigned char)(len >> 16);
	buf[2] = (unsigned char)(len >> 8);
	buf[3] = (unsigned char)len;
	keyward__request__pack(req, buf + KW_FRAME_HEADER);
	slot_send(s, buf, len + KW_FRAME_HEADER);
}

static void slot_handshake(struct slot *s, bool with_cert)
{
	if (s->fd < 0 || s->admin)
		return;
	if (!s->ssl) {
		s->ssl = SSL_new(with_cert ? cert_ctx : anon_ctx);
		SSL_set_fd(s->ssl, s->fd);
		SSL_set_connect_state(s->ssl);
	}
	(void)SSL_do_handshake(s->ssl);
	ERR_clear_error();
}

static void slot_read(struct slot *s)
{
	char buf[4096];

	if (s->fd < 0)
		return;
	if (s->ssl && SSL_is_init_finished(s->ssl))
		(void)SSL_read(s->ssl, buf, sizeof buf);
	else if (!s->ssl)
		(void)!recv(s->fd, buf, sizeof buf, MSG_DONTWAIT);
	ERR_clear_error();
}

static void counts_or_abort(struct kw_gate_counts *c)
{
	kw_gate_counts(srv.gate, c);
	if (c->clients > srv.cfg.max_connections || c->strangers > srv.cfg.max_unauthenticated ||
	    c->admins > srv.cfg.admin_max_connections) {
		fprintf(stderr, "fuzz_server: counts out of their budgets: %u clients, %u strangers, %u admins\n",
			c->clients, c->strangers, c->admins);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slot slots[SLOTS];
	struct kw_gate_counts counts;
	size_t i = 0;
	uint64_t id = 1;

	if (!srv.loops)
		start_server();
	for (unsigned k = 0; k < SLOTS; k++)
		slots[k] = (struct slot){.fd = -1};
	while (i + 1 < size) {
		uint8_t op = data[i] % 16, arg = data[i + 1];
		struct slot *s = &slots[arg % SLOTS];
		i += 2;
		switch (op) {
		case 0:
			slot_open(s, false);
			break;
		case 1:
			slot_open(s, true);
			break;
		case 2:
			slot_handshake(s, false);
			break;
		case 3:
			slot_handshake(s, true);
			break;
		case 4: {
			Keyward__Request req = KEYWARD__REQUEST__INIT;
			Keyward__Hello h = KEYWARD__HELLO__INIT;
			h.min_version = h.max_version = 1;
			h.partition = arg & 0x80 ? "nosuch" : "dev";
			req.id = id++;
			req.body_case = KEYWARD__REQUEST__BODY_HELLO;
			req.hello = &h;
			slot_send_request(s, &req);
			break;
		}
		case 5: { /* a frame whose body is the next input bytes */
			size_t n = i < size ? data[i] % 64 : 0;
			unsigned char hdr[4] = {0, 0, 0, (unsigned char)n};
			i++;
			if (n > size - i)
				n = size - i;
			slot_send(s, hdr, sizeof hdr);
			slot_send(s, data + i, n);
			i += n;
			break;
		}
		case 6: { /* key generation: the slow pool answers later */
			Keyward__Request req = KEYWARD__REQUEST__INIT;
			Keyward__GenerateKey g = KEYWARD__GENERATE_KEY__INIT;
			g.key_type = KEYWARD__KEY_TYPE__EC;
			g.curve = "P-256";
			g.owner = "S-1-5-21-1-2-3";
			g.name = "fuzz";
			req.id = id++;
			req.body_case = KEYWARD__REQUEST__BODY_GENERATE_KEY;
			req.generate_key = &g;
			slot_send_request(s, &req);
			break;
		}
		case 7: /* bytes under the TLS layer */
			if (s->fd >= 0)
				(void)!send(s->fd, data + i - 1, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			break;
		case 8:
			slot_close(s, false);
			break;
		case 9:
			slot_close(s, true);
			break;
		case 10:
			if (s->fd >= 0)
				shutdown(s->fd, SHUT_WR);
			break;
		case 11:
			slot_read(s);
			break;
		case 12: /* then a turn, to let the deadlines act */
			kw_server_advance_clock(arg % 16);
			kw_server_turn(&srv, 0);
			break;
		default:
			kw_server_turn(&srv, 0);
			break;
		}
		counts_or_abort(&counts);
	}
	for (unsigned k = 0; k < SLOTS; k++)
		slot_close(&slots[k], k % 2);
	/*
	 * every connection must be counted out: the server sees the closes
	 * within a few turns, or once its slow requests have run (RSA-4096
	 * generations queue on the slow pool for tens of seconds under ASan)
	 */
	for (time_t until = time(NULL) + 300; time(NULL) < until;) {
		kw_server_turn(&srv, 10);
		counts_or_abort(&counts);
		if (!counts.clients && !counts.strangers && !counts.admins)
			return 0;
	}
	fprintf(stderr, "fuzz_server: connections not counted out: %u clients, %u strangers, %u admins\n",
		counts.clients, counts.strangers, counts.admins);
	abort();
}
