/*
 * The event loops: one thread per core (`workers`), each an epoll loop
 * over its own connections. A loop reads a connection's frames and runs
 * each request right there, then writes all the answers in one TLS write:
 * no thread hand-off on the signing path, where every syscall and context
 * switch costs as much as the signature. Requests that take long (key
 * generation, init and unlock with their memory-hard KDF) go to the `slow`
 * pool; its worker packs the response into the connection's out-queue under
 * the connection's lock and pokes the loop's eventfd.
 *
 * A connection has one owner, its loop, and one way to die: conn_close,
 * which may be called any number of times and does its work once (counts
 * the connection out, closes the socket). The closed connection is not
 * freed at once: its loop buries it after the current epoll batch, since
 * a later event of the same batch, or an entry on the ready list, may
 * still name it; every entry point checks for CONN_CLOSED first. Slow-pool
 * jobs and ready-list entries hold references of their own.
 *
 * Admission (gate.c): authenticated clients, strangers (connections that
 * have not authenticated) and the admin socket each have a budget of their
 * own. A stranger must finish its TLS handshake and a successful Hello
 * within auth_timeout of its accept, whatever it sends meanwhile, and may
 * send at most PREAUTH_REQUESTS requests before it authenticates.
 *
 * Every loop listens on the TCP socket (EPOLLEXCLUSIVE wakes one of them
 * per connection); loop 0 also serves the admin socket and the signalfd,
 * and stops the others.
 *
 * Bounds: at most max_inflight requests of one connection run per turn
 * (then the loop serves others and comes back), and at most max_inflight
 * slow requests of one connection may be outstanding; a connection whose
 * unsent answers pile up (its client does not read) is not read until they
 * drain. Timeouts, checked once a second: a TLS handshake or a started frame
 * must finish within read_timeout, an idle connection closes after
 * idle_timeout. Bad frames are answered with KW_ERR_PROTOCOL; a frame whose
 * length is out of range cannot be skipped, so that connection is closed
 * after the answer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/gate.h"

#define READ_CHUNK 16384
#define IN_MAX (KW_MAX_FRAME + KW_FRAME_HEADER + READ_CHUNK)
#define OUT_MAX (64u * (KW_MAX_FRAME + KW_FRAME_HEADER))
/* stop reading a connection whose unsent answers exceed this */
#define OUT_PAUSE (4u * 1024 * 1024)
#define MAX_LOOPS 256
/* requests a connection may send before it has authenticated (Hello, Enroll, retries) */
#define PREAUTH_REQUESTS 8

struct kw_loop;

enum conn_state {
	CONN_HANDSHAKE, /* TLS handshake under way */
	CONN_OPEN,	/* reading requests and answering them */
	CONN_DRAINING,	/* answering what is queued, then closing */
	CONN_CLOSED,	/* counted out, socket closed; freed when its loop buries it */
};

struct kw_conn {
	int fd;
	SSL *ssl; /* NULL on the admin socket */
	struct kw_server *srv;
	struct kw_loop *loop;
	atomic_int refs;
	struct kw_conn *prev, *next; /* the loop's list */

	/* loop thread only */
	enum conn_state state;
	bool adopted; /* on its loop's list and in its epoll set */
	bool paused;  /* not reading: slow requests or unsent answers at their limit */
	unsigned preauth_requests;
	struct kw_conn *grave_next;
	struct kw_conn *incoming_next; /* handed to another loop, not adopted yet */
	uint32_t events;
	struct kw_buf in;
	struct kw_buf wbuf;
	struct kw_peer peer;
	time_t accepted, last_active, frame_started;

	/* shared with slow-pool workers, under lock */
	pthread_mutex_t lock;
	struct kw_buf out;
	unsigned slow_inflight;
	bool dead;
	bool queued;
	struct kw_conn *ready_next;
	atomic_bool evict; /* the gate made room with it: close it on its loop */

	/* under the gate's lock */
	struct kw_gate_slot gate;
};

struct kw_loop {
	struct kw_server *srv;
	unsigned index;
	pthread_t thread;
	int epfd, event_fd;
	struct kw_conn *conns;
	atomic_uint n_conns;
	pthread_mutex_t ready_lock;
	struct kw_conn *ready;
	struct kw_conn *incoming; /* accepted by another loop, handed to this one */
	struct kw_conn *graveyard; /* closed in this batch, freed after it */
	int spare_fd;		   /* given up to accept and drop a connection when out of descriptors */
	time_t last_tick;
};

struct kw_loops {
	unsigned n;
	int listen_fd, admin_fd, signal_fd;
	atomic_bool stop;
	atomic_bool flushing;
	struct kw_loop loop[];
};

/* epoll tags for the non-connection descriptors */
static char tag_listen, tag_admin, tag_event, tag_signal;

struct job {
	struct kw_conn *conn;
	Keyward__Request *req;
	struct kw_peer peer;
};

/* moved on by kw_server_advance_clock only, so that a harness can reach every deadline */
static atomic_uint clock_offset;

static time_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + (time_t)atomic_load(&clock_offset);
}

static void conn_unref(struct kw_conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	kw_session_objects_free(c->peer.session_objects);
	kw_transfer_free(c->peer.transfer);
	kw_buf_cleanup(&c->in);
	kw_buf_cleanup(&c->wbuf);
	kw_buf_cleanup(&c->out);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void wake(struct kw_loop *loop)
{
	uint64_t one = 1;

	if (write(loop->event_fd, &one, sizeof one) < 0 && errno != EAGAIN)
		kw_log(KW_LOG_ERROR, "server: cannot wake loop %u: %s", loop->index, strerror(errno));
}

/* Puts c on its loop's ready list (caller holds c->lock). */
static void mark_ready_locked(struct kw_conn *c)
{
	struct kw_loop *loop = c->loop;
	bool was_empty;

	if (c->queued || c->dead)
		return;
	c->queued = true;
	atomic_fetch_add(&c->refs, 1);
	pthread_mutex_lock(&loop->ready_lock);
	was_empty = !loop->ready;
	c->ready_next = loop->ready;
	loop->ready = c;
	pthread_mutex_unlock(&loop->ready_lock);
	if (was_empty)
		wake(loop);
}

static void update_events(struct kw_conn *c)
{
	uint32_t want = 0;
	struct epoll_event ev;

	if (c->state == CONN_CLOSED)
		return;
	if (!c->paused && c->state != CONN_DRAINING)
		want |= EPOLLIN;
	if (c->wbuf.len)
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	ev.events = want;
	ev.data.ptr = c;
	if (epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = want;
}

/*
 * The one way a connection dies. Idempotent: the second call does nothing.
 * The loop's reference moves to its graveyard, dropped after this batch.
 */
static void conn_close(struct kw_conn *c, const char *why)
{
	struct kw_loop *loop = c->loop;

	if (c->state == CONN_CLOSED)
		return;
	/* strangers can close connections as fast as they open them: their lines are rate-limited */
	if (why && (c->peer.admin || c->peer.authenticated))
		kw_log(KW_LOG_INFO, "connection %s closed: %s", c->peer.address, why);
	else if (why)
		kw_log_limited("connection.unauthenticated.closed", KW_LOG_INFO, "connection %s closed: %s",
			       c->peer.address, why);
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->ssl) {
		if (c->state != CONN_HANDSHAKE && !why)
			SSL_shutdown(c->ssl); /* best effort close_notify */
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	c->fd = -1;
	c->state = CONN_CLOSED;
	pthread_mutex_lock(&c->lock);
	c->dead = true;
	pthread_mutex_unlock(&c->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		loop->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	kw_gate_leave(c->srv->gate, &c->gate);
	atomic_fetch_sub(&loop->n_conns, 1);
	c->grave_next = loop->graveyard;
	loop->graveyard = c;
	ERR_clear_error();
}

/* Frees what this batch closed: no event or list of this loop names it any more. */
static void bury(struct kw_loop *loop)
{
	while (loop->graveyard) {
		struct kw_conn *c = loop->graveyard;
		loop->graveyard = c->grave_next;
		conn_unref(c);
	}
}

/* Packs resp into c's out-queue; a response too big becomes an error. */
static void queue_response_locked(struct kw_conn *c, const Keyward__Response *resp)
{
	if (c->dead)
		return;
	if (kw_frame_put_response(&c->out, resp) != KW_OK) {
		Keyward__Response big = KEYWARD__RESPONSE__INIT;
		big.id = resp->id;
		big.status = KEYWARD__STATUS__DATA_LEN;
		big.message = "response larger than the frame limit; ask for less (ListObjects limit)";
		kw_frame_put_response(&c->out, &big);
	}
}

static void reply_error(struct kw_conn *c, uint64_t id, kw_rv rv, const char *msg)
{
	Keyward__Response resp = KEYWARD__RESPONSE__INIT;

	resp.id = id;
	resp.status = (Keyward__Status)rv;
	resp.message = (char *)msg;
	pthread_mutex_lock(&c->lock);
	queue_response_locked(c, &resp);
	pthread_mutex_unlock(&c->lock);
}

/* Runs one request for peer and queues its answer on c. */
static void execute(struct kw_conn *c, struct kw_peer *peer, const Keyward__Request *req)
{
	Keyward__Response resp = KEYWARD__RESPONSE__INIT;
	struct kw_scratch scratch = {0};

	kw_error_clear();
	/* the keystore audits the changes this request makes under this name */
	kw_keystore_set_actor(peer->partition, peer->actor);
	if (peer->admin)
		kw_handle_admin(c->srv, peer, req, &resp, &scratch);
	else
		kw_handle_request(c->srv, peer, req, &resp, &scratch);
	resp.id = req->id;
	pthread_mutex_lock(&c->lock);
	queue_response_locked(c, &resp);
	pthread_mutex_unlock(&c->lock);
	kw_scratch_free(&scratch);
}

static void run_slow_job(void *arg)
{
	struct job *job = arg;
	struct kw_conn *c = job->conn;

	execute(c, &job->peer, job->req);
	pthread_mutex_lock(&c->lock);
	c->slow_inflight--;
	mark_ready_locked(c);
	pthread_mutex_unlock(&c->lock);
	keyward__request__free_unpacked(job->req, NULL);
	free(job);
	conn_unref(c);
}

static kw_rv submit_slow(struct kw_conn *c, Keyward__Request *req)
{
	struct job *job = malloc(sizeof *job);

	if (!job)
		return KW_ERR_NO_MEMORY;
	job->conn = c;
	job->req = req;
	job->peer = c->peer; /* a slow request does not change its connection's peer */
	atomic_fetch_add(&c->refs, 1);
	pthread_mutex_lock(&c->lock);
	c->slow_inflight++;
	pthread_mutex_unlock(&c->lock);
	kw_pool_submit(c->srv->slow, run_slow_job, job);
	return KW_OK;
}

/* Whether c may not take more work now. */
static bool must_pause(struct kw_conn *c)
{
	unsigned slow;
	size_t unsent;

	pthread_mutex_lock(&c->lock);
	slow = c->slow_inflight;
	unsent = c->out.len + c->wbuf.len;
	pthread_mutex_unlock(&c->lock);
	return slow >= c->srv->cfg.max_inflight || unsent > OUT_PAUSE;
}

/*
 * A Hello holds a client's slot while it runs: refused with KW_ERR_BUSY when
 * the server is full, settled after. Returns false when c is now draining.
 */
static bool run_hello(struct kw_conn *c, const Keyward__Request *req)
{
	struct kw_gate *gate = c->srv->gate;

	if (kw_gate_reserve_client(gate, &c->gate)) {
		kw_log_limited("connection.hello.refused", KW_LOG_WARN, "connection %s: Hello refused: %s",
			       c->peer.address, kw_last_error());
		reply_error(c, req->id, KW_ERR_BUSY, kw_last_error());
		c->state = CONN_DRAINING;
		c->in.len = 0;
		return false;
	}
	execute(c, &c->peer, req);
	if (kw_gate_settle_client(gate, &c->gate, c->peer.authenticated)) {
		c->state = CONN_DRAINING;
		c->in.len = 0;
		return false;
	}
	return true;
}

/*
 * Runs the complete frames in c->in, at most max_inflight of them this
 * turn. Returns true when frames are left for another turn.
 */
static bool run_frames(struct kw_conn *c)
{
	unsigned budget = c->srv->cfg.max_inflight;

	while (budget--) {
		size_t len;
		bool complete;
		Keyward__Request *req;
		kw_rv rv;

		if ((c->paused = must_pause(c)))
			return false;
		rv = kw_frame_peek(c->in.data, c->in.len, KW_MAX_FRAME, &len, &complete);
		if (rv) {
			char msg[160];
			uint32_t announced = (uint32_t)c->in.data[0] << 24 | (uint32_t)c->in.data[1] << 16 |
					     (uint32_t)c->in.data[2] << 8 | c->in.data[3];
			snprintf(msg, sizeof msg, "frame length %" PRIu32 " is out of range (1 to %u bytes); closing",
				 announced, KW_MAX_FRAME);
			kw_log_limited("connection.bad_frame", KW_LOG_WARN, "connection %s: %s", c->peer.address, msg);
			reply_error(c, 0, KW_ERR_PROTOCOL, msg);
			c->state = CONN_DRAINING;
			c->in.len = 0;
			return false;
		}
		if (!complete) {
			c->frame_started = c->in.len ? (c->frame_started ? c->frame_started : mono_now()) : 0;
			return false;
		}
		rv = kw_frame_decode_request(c->in.data + KW_FRAME_HEADER, len, &req);
		kw_buf_consume(&c->in, KW_FRAME_HEADER + len);
		c->frame_started = 0;
		if (rv) {
			kw_log_limited("connection.bad_request", KW_LOG_WARN,
				       "connection %s: malformed or unknown request (%zu bytes)", c->peer.address, len);
			reply_error(c, 0, KW_ERR_PROTOCOL,
				    "malformed request: not a keyward Request, or a request type this server does not know");
			continue;
		}
		kw_debug(KW_DEBUG_WIRE, "connection %s: request %" PRIu64 " type %d", c->peer.address, req->id,
			 (int)req->body_case);
		if (!c->peer.admin && !c->peer.authenticated && ++c->preauth_requests > PREAUTH_REQUESTS) {
			char msg[120];
			snprintf(msg, sizeof msg, "too many requests before authenticating (at most %d); closing",
				 PREAUTH_REQUESTS);
			reply_error(c, req->id, KW_ERR_AUTH, msg);
			keyward__request__free_unpacked(req, NULL);
			c->state = CONN_DRAINING;
			c->in.len = 0;
			return false;
		}
		if (req->body_case == KEYWARD__REQUEST__BODY_HELLO && !c->peer.admin) {
			bool ok = run_hello(c, req);
			keyward__request__free_unpacked(req, NULL);
			if (!ok)
				return false;
			continue;
		}
		if (kw_request_is_slow(req)) {
			if (submit_slow(c, req)) {
				reply_error(c, req->id, KW_ERR_NO_MEMORY, "server out of memory");
				keyward__request__free_unpacked(req, NULL);
			}
			continue;
		}
		execute(c, &c->peer, req);
		keyward__request__free_unpacked(req, NULL);
	}
	return c->in.len >= KW_FRAME_HEADER;
}

static void describe_handshake_failure(struct kw_conn *c, char *out, size_t size)
{
	unsigned long e = ERR_peek_error();
	long verify = SSL_get_verify_result(c->ssl);

	if (verify != X509_V_OK)
		snprintf(out, size, "TLS handshake failed: client certificate rejected: %s",
			 X509_verify_cert_error_string(verify));
	else if (e)
		snprintf(out, size, "TLS handshake failed: %s", ERR_reason_error_string(e));
	else
		snprintf(out, size, "TLS handshake failed: connection closed");
}

static void on_handshake(struct kw_conn *c)
{
	X509 *cert = SSL_get1_peer_certificate(c->ssl);

	if (cert) {
		c->peer.has_cert = true;
		kw_tls_fingerprint(cert, c->peer.fingerprint);
		X509_NAME_oneline(X509_get_subject_name(cert), c->peer.actor, sizeof c->peer.actor);
	} else {
		snprintf(c->peer.actor, sizeof c->peer.actor, "unauthenticated %s", c->peer.address);
	}
	kw_debug(KW_DEBUG_TLS, "connection %s: TLS %s, %s, client certificate: %s", c->peer.address,
		 SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl), cert ? c->peer.actor : "none");
	X509_free(cert);
}

/* Writes what is queued. Returns false when the connection was closed. */
static bool conn_flush(struct kw_conn *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->out.len) {
		if (!c->wbuf.len) {
			struct kw_buf t = c->wbuf;
			c->wbuf = c->out;
			c->out = t;
		} else if (kw_buf_append(&c->wbuf, c->out.data, c->out.len) == KW_OK) {
			c->out.len = 0;
		}
	}
	pthread_mutex_unlock(&c->lock);
	while (c->wbuf.len) {
		ssize_t n;
		if (c->ssl) {
			int r;

			/* requests leave OpenSSL errors behind; SSL_get_error must not see them */
			ERR_clear_error();
			r = SSL_write(c->ssl, c->wbuf.data, (int)(c->wbuf.len > INT32_MAX ? INT32_MAX : c->wbuf.len));
			if (r <= 0) {
				int err = SSL_get_error(c->ssl, r);
				if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
					break;
				conn_close(c, "write failed");
				return false;
			}
			n = r;
		} else {
			n = write(c->fd, c->wbuf.data, c->wbuf.len);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				conn_close(c, "write failed");
				return false;
			}
		}
		kw_buf_consume(&c->wbuf, (size_t)n);
		c->last_active = mono_now();
	}
	if (c->state == CONN_DRAINING && !c->wbuf.len) {
		conn_close(c, "answered, then closed (protocol error, or refused)");
		return false;
	}
	return true;
}

/*
 * Reads what the socket has, runs the complete frames, writes the answers.
 * Returns false when the connection was closed.
 */
static bool conn_service(struct kw_conn *c)
{
	char why[300];
	bool more = false;

	if (c->state == CONN_CLOSED)
		return false; /* closed earlier in this batch */
	if (atomic_load(&c->evict)) {
		conn_close(c, "evicted: the oldest unauthenticated connection made room for a new one");
		return false;
	}
	if (c->state == CONN_HANDSHAKE) {
		int r;

		/* a stale error left by a handler would make SSL_get_error lie */
		ERR_clear_error();
		r = SSL_accept(c->ssl);
		if (r != 1) {
			int err = SSL_get_error(c->ssl, r);
			if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
				struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
				if (err == SSL_ERROR_WANT_WRITE)
					ev.events |= EPOLLOUT;
				if (ev.events != c->events && epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
					c->events = ev.events;
				return true;
			}
			describe_handshake_failure(c, why, sizeof why);
			conn_close(c, why);
			return false;
		}
		c->state = CONN_OPEN;
		on_handshake(c);
	}
	more = run_frames(c);
	while (!more && !c->paused && c->state == CONN_OPEN) {
		ssize_t n;
		if (kw_buf_reserve(&c->in, READ_CHUNK)) {
			conn_close(c, "input buffer full");
			return false;
		}
		if (c->ssl) {
			int r;

			ERR_clear_error(); /* see SSL_accept above */
			r = SSL_read(c->ssl, c->in.data + c->in.len, READ_CHUNK);
			if (r <= 0) {
				int err = SSL_get_error(c->ssl, r);
				if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
					break;
				conn_close(c, err == SSL_ERROR_ZERO_RETURN ? NULL : "connection lost");
				return false;
			}
			n = r;
		} else {
			n = read(c->fd, c->in.data + c->in.len, READ_CHUNK);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			if (n <= 0) {
				conn_close(c, n == 0 ? NULL : "read failed");
				return false;
			}
		}
		c->in.len += (size_t)n;
		c->last_active = mono_now();
		more = run_frames(c);
		/* a short read emptied the socket (and OpenSSL's buffer): epoll says when more comes */
		if (n < READ_CHUNK && !(c->ssl && SSL_has_pending(c->ssl)))
			break;
	}
	if (!conn_flush(c))
		return false;
	if (c->paused && !must_pause(c))
		more = true; /* the answers drained: take work again, next turn */
	if (more) {
		/* frames left after this turn's budget: come back after the others */
		pthread_mutex_lock(&c->lock);
		mark_ready_locked(c);
		pthread_mutex_unlock(&c->lock);
	}
	update_events(c);
	return true;
}

static void hand_over(struct kw_loop *self, struct kw_loop *target, struct kw_conn *c);
static struct kw_loop *least_loaded(struct kw_server *srv);

/*
 * Out of file descriptors: accept with the spare one and drop the
 * connection at once, or the listening socket stays readable and the loop
 * spins on it.
 */
static void shed_one(struct kw_loop *loop, int lfd)
{
	if (loop->spare_fd >= 0) {
		close(loop->spare_fd);
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			close(fd);
		loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	kw_log_limited("connection.no_descriptors", KW_LOG_WARN,
		       "connection refused: out of file descriptors (raise LimitNOFILE, or lower "
		       "max_connections and max_unauthenticated)");
}

/* Keeps an evicted stranger's connection alive until its loop has closed it (under the gate's lock). */
static void hold_evicted(struct kw_gate_slot *slot)
{
	struct kw_conn *c = (struct kw_conn *)((char *)slot - offsetof(struct kw_conn, gate));

	atomic_fetch_add(&c->refs, 1);
}

/* Tells an evicted connection's loop to close it, and lets it go. */
static void evict(struct kw_gate_slot *slot)
{
	struct kw_conn *c = (struct kw_conn *)((char *)slot - offsetof(struct kw_conn, gate));

	atomic_store(&c->evict, true);
	pthread_mutex_lock(&c->lock);
	mark_ready_locked(c);
	pthread_mutex_unlock(&c->lock);
	conn_unref(c);
}

/* Answers an admin client that the gate refused with one error frame; the socket is non-blocking. */
static void refuse_admin(int fd, const char *msg)
{
	Keyward__Response resp = KEYWARD__RESPONSE__INIT;
	struct kw_buf b;

	kw_buf_init(&b, KW_MAX_FRAME + KW_FRAME_HEADER);
	resp.status = KEYWARD__STATUS__BUSY;
	resp.message = (char *)msg;
	if (kw_frame_put_response(&b, &resp) == KW_OK)
		(void)!send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	kw_buf_cleanup(&b);
}

/* loop: the loop that will serve it (ready-list entries must go there from the start) */
static struct kw_conn *conn_new(struct kw_server *srv, struct kw_loop *loop, int fd)
{
	struct kw_conn *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	c->fd = fd;
	c->srv = srv;
	c->loop = loop;
	atomic_init(&c->refs, 1);
	atomic_init(&c->evict, false);
	pthread_mutex_init(&c->lock, NULL);
	kw_buf_init(&c->in, IN_MAX);
	kw_buf_init(&c->wbuf, OUT_MAX);
	kw_buf_init(&c->out, OUT_MAX);
	c->accepted = c->last_active = mono_now();
	return c;
}

static void accept_all(struct kw_loop *loop, int lfd, bool admin)
{
	struct kw_server *srv = loop->srv;

	for (;;) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof sa;
		int fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct kw_gate_slot *evicted = NULL;
		unsigned char key[KW_GATE_KEY_LEN];
		struct kw_conn *c;
		char host[INET6_ADDRSTRLEN] = "?", port[8] = "";

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				shed_one(loop, lfd);
			else if (errno != EAGAIN && errno != EINTR)
				kw_log_limited("connection.accept", KW_LOG_WARN, "accept: %s", strerror(errno));
			return;
		}
		if (admin) {
			struct ucred cred;
			socklen_t len = sizeof cred;
			if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
			    (cred.uid != 0 && cred.uid != geteuid())) {
				kw_log_limited("admin.refused_uid", KW_LOG_WARN, "admin socket: refused uid %u",
					       (unsigned)cred.uid);
				close(fd);
				continue;
			}
		} else {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			getnameinfo((struct sockaddr *)&sa, salen, host, sizeof host, port, sizeof port,
				    NI_NUMERICHOST | NI_NUMERICSERV);
		}
		if (!(c = conn_new(srv, admin ? loop : least_loaded(srv), fd))) {
			close(fd);
			continue;
		}
		c->peer.admin = admin;
		if (admin) {
			snprintf(c->peer.address, sizeof c->peer.address, "admin socket");
			snprintf(c->peer.actor, sizeof c->peer.actor, "admin");
			c->peer.transfer = kw_transfer_new(srv); /* NULL: its transfers fail, nothing else */
			c->state = CONN_OPEN;
			if (kw_gate_enter_admin(srv->gate, &c->gate)) {
				kw_log_limited("admin.busy", KW_LOG_WARN, "admin socket: connection refused: %s",
					       kw_last_error());
				refuse_admin(fd, kw_last_error());
				close(fd);
				conn_unref(c);
				continue;
			}
		} else {
			snprintf(c->peer.address, sizeof c->peer.address, "%s%s%s:%s", strchr(host, ':') ? "[" : "",
				 host, strchr(host, ':') ? "]" : "", port);
			c->ssl = SSL_new(srv->tls.ctx);
			if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
				SSL_free(c->ssl);
				close(fd);
				conn_unref(c);
				continue;
			}
			SSL_set_accept_state(c->ssl);
			kw_gate_key((struct sockaddr *)&sa, key);
			if (kw_gate_enter_stranger(srv->gate, &c->gate, key, hold_evicted, &evicted)) {
				kw_log_limited("connection.refused", KW_LOG_WARN, "connection %s refused: %s",
					       c->peer.address, kw_last_error());
				SSL_free(c->ssl);
				close(fd);
				conn_unref(c);
				continue;
			}
			if (evicted)
				evict(evicted);
		}
		hand_over(loop, c->loop, c);
	}
}

/* Starts serving c on this loop (its own thread). */
static void adopt_conn(struct kw_loop *loop, struct kw_conn *c)
{
	struct epoll_event ev;

	c->adopted = true;
	ev.events = c->events = EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		kw_log(KW_LOG_WARN, "connection %s: epoll: %s", c->peer.address, strerror(errno));
		SSL_free(c->ssl);
		close(c->fd);
		kw_gate_leave(c->srv->gate, &c->gate);
		conn_unref(c);
		return;
	}
	c->next = loop->conns;
	if (loop->conns)
		loop->conns->prev = c;
	loop->conns = c;
	atomic_fetch_add(&loop->n_conns, 1);
	kw_debug(KW_DEBUG_TLS, "connection %s served by loop %u", c->peer.address, loop->index);
}

/*
 * The loop with the fewest connections. EPOLLEXCLUSIVE wakes whichever
 * loop is idle, so without this a few busy connections can end up on one
 * core while another has none.
 */
static struct kw_loop *least_loaded(struct kw_server *srv)
{
	struct kw_loops *loops = srv->loops;
	struct kw_loop *best = &loops->loop[0];

	for (unsigned i = 1; i < loops->n; i++)
		if (atomic_load(&loops->loop[i].n_conns) < atomic_load(&best->n_conns))
			best = &loops->loop[i];
	return best;
}

static void hand_over(struct kw_loop *self, struct kw_loop *target, struct kw_conn *c)
{
	bool was_empty;

	if (target == self) {
		adopt_conn(self, c);
		return;
	}
	/* counted now, so the next accept sees it */
	atomic_fetch_add(&target->n_conns, 1);
	pthread_mutex_lock(&target->ready_lock);
	was_empty = !target->incoming && !target->ready;
	c->incoming_next = target->incoming;
	target->incoming = c;
	pthread_mutex_unlock(&target->ready_lock);
	if (was_empty)
		wake(target);
}

static void drain_ready(struct kw_loop *loop)
{
	struct kw_conn *list, *incoming;
	uint64_t count;

	if (read(loop->event_fd, &count, sizeof count) < 0 && errno != EAGAIN)
		kw_log(KW_LOG_WARN, "eventfd: %s", strerror(errno));
	pthread_mutex_lock(&loop->ready_lock);
	list = loop->ready;
	loop->ready = NULL;
	incoming = loop->incoming;
	loop->incoming = NULL;
	pthread_mutex_unlock(&loop->ready_lock);
	while (incoming) {
		struct kw_conn *c = incoming;
		incoming = c->incoming_next;
		atomic_fetch_sub(&loop->n_conns, 1); /* adopt_conn counts it again */
		adopt_conn(loop, c);
	}
	while (list) {
		struct kw_conn *c = list;
		bool dead;
		list = c->ready_next;
		pthread_mutex_lock(&c->lock);
		c->queued = false;
		dead = c->dead;
		pthread_mutex_unlock(&c->lock);
		/* an evicted connection can be marked ready before its loop has adopted it */
		if (!dead && c->adopted)
			conn_service(c); /* flushes answers, resumes a paused connection */
		conn_unref(c);
	}
}

static void flush_usage_job(void *arg)
{
	struct kw_server *srv = arg;

	kw_usage_flush(srv->usage, srv->ks);
	atomic_store(&srv->loops->flushing, false);
}

static void tick(struct kw_loop *loop)
{
	struct kw_server *srv = loop->srv;
	time_t now = mono_now();
	struct kw_conn *c = loop->conns;

	while (c) {
		struct kw_conn *next = c->next;
		unsigned slow;
		char why[120];

		pthread_mutex_lock(&c->lock);
		slow = c->slow_inflight;
		pthread_mutex_unlock(&c->lock);
		if (atomic_load(&c->evict)) {
			conn_close(c, "evicted: the oldest unauthenticated connection made room for a new one");
		} else if (c->state == CONN_HANDSHAKE && now - c->accepted > (time_t)srv->cfg.read_timeout) {
			snprintf(why, sizeof why, "TLS handshake not finished within %u s", srv->cfg.read_timeout);
			conn_close(c, why);
		} else if (!c->peer.admin && !c->peer.authenticated &&
			   now - c->accepted > (time_t)srv->cfg.auth_timeout) {
			snprintf(why, sizeof why, "not authenticated within %u s of connecting", srv->cfg.auth_timeout);
			conn_close(c, why);
		} else if (c->frame_started && now - c->frame_started > (time_t)srv->cfg.read_timeout) {
			snprintf(why, sizeof why, "a frame was begun but not finished within %u s", srv->cfg.read_timeout);
			conn_close(c, why);
		} else if (!slow && !c->wbuf.len && now - c->last_active > (time_t)srv->cfg.idle_timeout) {
			snprintf(why, sizeof why, "idle for %u s", srv->cfg.idle_timeout);
			conn_close(c, why);
		}
		c = next;
	}
	if (loop->index == 0 && !atomic_exchange(&srv->loops->flushing, true))
		kw_pool_submit(srv->slow, flush_usage_job, srv);
}

/* One turn of a loop: an epoll batch, the once-a-second tick, the burial of what closed. */
static void loop_turn(struct kw_loop *loop, int timeout_ms)
{
	struct kw_loops *loops = loop->srv->loops;
	struct epoll_event events[64];
	int n = epoll_wait(loop->epfd, events, 64, timeout_ms);

	for (int i = 0; i < n; i++) {
		void *tag = events[i].data.ptr;
		if (tag == &tag_listen) {
			accept_all(loop, loops->listen_fd, false);
		} else if (tag == &tag_admin) {
			accept_all(loop, loops->admin_fd, true);
		} else if (tag == &tag_event) {
			drain_ready(loop);
		} else if (tag == &tag_signal) {
			struct signalfd_siginfo si;
			if (read(loops->signal_fd, &si, sizeof si) == sizeof si)
				kw_log(KW_LOG_INFO, "signal %u: shutting down", si.ssi_signo);
			atomic_store(&loops->stop, true);
			for (unsigned j = 0; j < loops->n; j++)
				wake(&loops->loop[j]);
		} else {
			conn_service(tag);
		}
	}
	if (mono_now() != loop->last_tick) {
		loop->last_tick = mono_now();
		tick(loop);
	}
	bury(loop);
}

static void *loop_main(void *arg)
{
	struct kw_loop *loop = arg;

	loop->last_tick = mono_now();
	while (!atomic_load(&loop->srv->loops->stop))
		loop_turn(loop, 1000);
	return NULL;
}

void kw_server_turn(struct kw_server *srv, int timeout_ms)
{
	loop_turn(&srv->loops->loop[0], timeout_ms);
}

void kw_server_advance_clock(unsigned seconds)
{
	atomic_fetch_add(&clock_offset, seconds);
}

static kw_rv listen_tcp(struct kw_server *srv)
{
	char host[256], *colon;
	const char *port;
	struct addrinfo hints = {0}, *ai = NULL;
	struct sockaddr_storage sa;
	socklen_t salen = sizeof sa;
	char nhost[INET6_ADDRSTRLEN], nport[8];
	int fd = -1, one = 1, r;

	snprintf(host, sizeof host, "%s", srv->cfg.listen);
	colon = strrchr(host, ':');
	if (!colon)
		return kw_error_set(KW_ERR_CONFIG, "listen: \"%s\" is not host:port", srv->cfg.listen);
	*colon = '\0';
	port = colon + 1;
	if (host[0] == '[') { /* [::1]:7117 */
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	r = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (r)
		return kw_error_set(KW_ERR_CONFIG, "listen: cannot resolve \"%s\": %s", srv->cfg.listen, gai_strerror(r));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 512) != 0) {
		kw_rv rv = kw_error_set(KW_ERR_CONFIG, "listen: cannot listen on %s: %s", srv->cfg.listen, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return rv;
	}
	freeaddrinfo(ai);
	getsockname(fd, (struct sockaddr *)&sa, &salen);
	getnameinfo((struct sockaddr *)&sa, salen, nhost, sizeof nhost, nport, sizeof nport,
		    NI_NUMERICHOST | NI_NUMERICSERV);
	srv->port = (unsigned short)atoi(nport);
	snprintf(srv->bound, sizeof srv->bound, "%s%s%s:%s", strchr(nhost, ':') ? "[" : "", nhost,
		 strchr(nhost, ':') ? "]" : "", nport);
	srv->loops->listen_fd = fd;
	return KW_OK;
}

static kw_rv listen_admin(struct kw_server *srv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = srv->cfg.admin_socket;
	char dir[sizeof sa.sun_path];
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof sa.sun_path)
		return kw_error_set(KW_ERR_CONFIG, "admin_socket: path too long (%zu bytes, at most %zu): %s",
				    strlen(path), sizeof sa.sun_path - 1, path);
	snprintf(dir, sizeof dir, "%s", path);
	if (strrchr(dir, '/')) {
		*strrchr(dir, '/') = '\0';
		if (dir[0] && mkdir(dir, 0700) != 0 && errno != EEXIST)
			return kw_error_set(KW_ERR_CONFIG, "admin_socket: cannot create %s: %s", dir, strerror(errno));
	}
	/* a socket left by a previous run; anything else there is not ours to remove */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return kw_error_set(KW_ERR_CONFIG, "admin_socket: %s exists and is not a socket", path);
		unlink(path);
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || chmod(path, 0600) != 0 ||
	    listen(fd, 16) != 0) {
		kw_rv rv = kw_error_set(KW_ERR_CONFIG, "admin_socket: cannot listen on %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rv;
	}
	srv->loops->admin_fd = fd;
	return KW_OK;
}

static kw_rv add_fd(struct kw_loop *loop, int fd, void *tag, uint32_t extra)
{
	struct epoll_event ev = {.events = EPOLLIN | extra, .data.ptr = tag};

	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
		return kw_error_set(KW_ERR_GENERAL, "epoll: %s", strerror(errno));
	return KW_OK;
}

void kw_server_block_signals(void)
{
	sigset_t sigs;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
}

kw_rv kw_server_start(struct kw_server *srv, unsigned loops_n)
{
	struct kw_loops *loops;
	struct kw_gate_limits limits = {
		.max_connections = srv->cfg.max_connections,
		.max_unauthenticated = srv->cfg.max_unauthenticated,
		.max_unauthenticated_per_address = srv->cfg.max_unauthenticated_per_address,
		.admin_max_connections = srv->cfg.admin_max_connections,
	};
	sigset_t sigs;
	kw_rv rv;

	if (loops_n == 0 || loops_n > MAX_LOOPS)
		return kw_error_set(KW_ERR_CONFIG, "workers: 1 to %d event loops, not %u", MAX_LOOPS, loops_n);
	loops = calloc(1, sizeof *loops + loops_n * sizeof loops->loop[0]);
	if (!loops)
		return KW_ERR_NO_MEMORY;
	srv->loops = loops;
	loops->listen_fd = loops->admin_fd = loops->signal_fd = -1;
	if ((rv = kw_gate_new(&limits, &srv->gate)))
		return rv;
	for (unsigned i = 0; i < loops_n; i++) {
		struct kw_loop *loop = &loops->loop[i];
		loop->srv = srv;
		loop->index = i;
		pthread_mutex_init(&loop->ready_lock, NULL);
		loop->epfd = epoll_create1(EPOLL_CLOEXEC);
		loop->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		loops->n++;
		if (loop->epfd < 0 || loop->event_fd < 0)
			return kw_error_set(KW_ERR_GENERAL, "server: %s", strerror(errno));
	}
	/* SIGTERM/SIGINT arrive through loop 0 (kw_server_block_signals ran first) */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	loops->signal_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (loops->signal_fd < 0)
		return kw_error_set(KW_ERR_GENERAL, "server: %s", strerror(errno));
	if ((rv = listen_tcp(srv)) || (rv = listen_admin(srv)))
		return rv;
	for (unsigned i = 0; i < loops_n; i++) {
		struct kw_loop *loop = &loops->loop[i];
		/* EPOLLEXCLUSIVE: a new connection wakes one loop, not all */
		if ((rv = add_fd(loop, loops->listen_fd, &tag_listen, EPOLLEXCLUSIVE)) ||
		    (rv = add_fd(loop, loop->event_fd, &tag_event, 0)))
			return rv;
	}
	if ((rv = add_fd(&loops->loop[0], loops->admin_fd, &tag_admin, 0)) ||
	    (rv = add_fd(&loops->loop[0], loops->signal_fd, &tag_signal, 0)))
		return rv;
	srv->started = time(NULL);
	return KW_OK;
}

kw_rv kw_server_run(struct kw_server *srv)
{
	struct kw_loops *loops = srv->loops;

	for (unsigned i = 1; i < loops->n; i++) {
		if (pthread_create(&loops->loop[i].thread, NULL, loop_main, &loops->loop[i]) != 0) {
			kw_log(KW_LOG_ERROR, "server: cannot start event loop %u", i);
			atomic_store(&loops->stop, true);
			for (unsigned j = 1; j < i; j++)
				pthread_join(loops->loop[j].thread, NULL);
			return KW_ERR_GENERAL;
		}
	}
	loop_main(&loops->loop[0]);
	for (unsigned i = 1; i < loops->n; i++)
		pthread_join(loops->loop[i].thread, NULL);
	return KW_OK;
}

void kw_server_stop(struct kw_server *srv)
{
	struct kw_loops *loops = srv->loops;

	if (!loops)
		return;
	/* finish the slow requests first: the pool drains its queue before joining */
	kw_pool_free(srv->slow);
	srv->slow = NULL;
	for (unsigned i = 0; i < loops->n; i++) {
		struct kw_loop *loop = &loops->loop[i];
		if (loop->epfd < 0)
			continue;
		drain_ready(loop);
		while (loop->conns)
			conn_close(loop->conns, NULL);
		bury(loop);
		if (loop->spare_fd >= 0)
			close(loop->spare_fd);
		close(loop->event_fd);
		close(loop->epfd);
		pthread_mutex_destroy(&loop->ready_lock);
	}
	if (loops->listen_fd >= 0)
		close(loops->listen_fd);
	if (loops->admin_fd >= 0) {
		close(loops->admin_fd);
		unlink(srv->cfg.admin_socket);
	}
	if (loops->signal_fd >= 0)
		close(loops->signal_fd);
	free(loops);
	srv->loops = NULL;
	kw_gate_free(srv->gate);
	srv->gate = NULL;
}
