/*
 * kw_client: the configuration, two lazily made TLS contexts (with and
 * without the client credential), a list of shared connections, failover
 * across the HSMs by priority, and fork detection.
 *
 * A call joins the least busy shared connection, or opens another while
 * every one already carries KW_PIPELINE_DEPTH calls and fewer than
 * pool_size are open; calls on one connection are pipelined (see conn.c).
 * A connection that failed in the network or the protocol leaves the list
 * and is closed by its last user. A child process never touches its
 * parent's connections beyond closing its own copy of the fd.
 */
#include "client/client.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/error.h"
#include "common/log.h"

#define DEFAULT_CONF "/etc/keyward/client.conf"

static void wipe_free(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

kw_rv kw_client_new(const char *conf_path, kw_client **out)
{
	kw_client *c;
	const char *path = conf_path;
	kw_rv rv;

	if (!out)
		return kw_error_set(KW_ERR_ARGUMENTS, "creating a client: nowhere to put it (out is NULL)");
	*out = NULL;
	if (!path || !*path)
		path = getenv("KEYWARD_CONF");
	if (!path || !*path)
		path = DEFAULT_CONF;
	c = calloc(1, sizeof *c);
	if (!c)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory creating a keyward client");
	rv = kw_config_load(path, &c->cfg);
	if (rv) {
		free(c);
		return rv;
	}
	if (c->cfg.pool_size) {
		c->conns = calloc(c->cfg.pool_size, sizeof *c->conns);
		if (!c->conns) {
			kw_config_cleanup(&c->cfg);
			free(c);
			return kw_error_set(KW_ERR_NO_MEMORY, "out of memory creating a keyward client");
		}
	}
	if (pthread_mutex_init(&c->lock, NULL) != 0 || pthread_mutex_init(&c->take_lock, NULL) != 0) {
		free(c->conns);
		kw_config_cleanup(&c->cfg);
		free(c);
		return kw_error_set(KW_ERR_GENERAL, "cannot create a mutex for the keyward client");
	}
	c->fork_gen = kw_fork_generation();
	kw_error_clear();
	*out = c;
	return KW_OK;
}

void kw_client_free(kw_client *c)
{
	bool child;

	if (!c)
		return;
	child = c->fork_gen != kw_fork_generation();
	for (size_t i = 0; i < c->n_conns; i++)
		kw_conn_close(c->conns[i], !child);
	free(c->conns);
	SSL_CTX_free(c->ctx_cred);
	SSL_CTX_free(c->ctx_anon);
	wipe_free(c->pin);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->take_lock);
	kw_config_cleanup(&c->cfg);
	free(c);
}

kw_rv kw_client_set_pin(kw_client *c, const char *pin)
{
	char *copy = NULL;

	if (!c)
		return kw_error_set(KW_ERR_ARGUMENTS, "setting the PIN: no client given");
	if (pin && !(copy = strdup(pin)))
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory storing the PIN");
	pthread_mutex_lock(&c->lock);
	wipe_free(c->pin);
	c->pin = copy;
	/* the credential is loaded again, with this PIN, on the next connect */
	SSL_CTX_free(c->ctx_cred);
	c->ctx_cred = NULL;
	pthread_mutex_unlock(&c->lock);
	return KW_OK;
}

kw_rv kw_client_single_connection(kw_client *c)
{
	struct kw_conn **conns;

	if (!c)
		return kw_error_set(KW_ERR_ARGUMENTS, "one connection: no client given");
	pthread_mutex_lock(&c->lock);
	if (c->n_conns > 1) {
		pthread_mutex_unlock(&c->lock);
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "one connection: the client has %zu connections "
				    "already; call it before the first request",
				    c->n_conns);
	}
	if (!c->cfg.pool_size) {
		if (!(conns = calloc(1, sizeof *conns))) {
			pthread_mutex_unlock(&c->lock);
			return kw_error_set(KW_ERR_NO_MEMORY, "out of memory");
		}
		free(c->conns);
		c->conns = conns;
	}
	/* one listed connection, which every call joins (KW_PIPELINE_DEPTH does not open another) */
	c->cfg.pool_size = 1;
	c->single = true;
	pthread_mutex_unlock(&c->lock);
	return KW_OK;
}

kw_rv kw_client_check_pin(kw_client *c, const char *pin)
{
	if (!c || !pin)
		return kw_error_set(KW_ERR_ARGUMENTS, "checking the PIN: no %s given", c ? "pin" : "client");
	return kw_tls_check_pin(&c->cfg, pin);
}

const char *kw_client_partition(const kw_client *c)
{
	return c ? c->cfg.partition : NULL;
}

size_t kw_client_hsm_count(const kw_client *c)
{
	return c ? c->cfg.n_hsms : 0;
}

const char *kw_client_hsm_address(const kw_client *c, size_t i)
{
	if (!c || i >= c->cfg.n_hsms)
		return NULL;
	return c->cfg.hsms[i].address;
}

int kw_client_hsm_priority(const kw_client *c, size_t i)
{
	if (!c || i >= c->cfg.n_hsms)
		return 0;
	return c->cfg.hsms[i].priority;
}

/* A reference to the TLS context; the caller frees it with SSL_CTX_free. */
static kw_rv get_ctx(kw_client *c, bool with_cred, SSL_CTX **out)
{
	SSL_CTX **slot = with_cred ? &c->ctx_cred : &c->ctx_anon;
	kw_rv rv = KW_OK;

	pthread_mutex_lock(&c->lock);
	if (!*slot)
		rv = kw_tls_ctx_new(&c->cfg, c->pin, with_cred, slot);
	if (!rv)
		SSL_CTX_up_ref(*slot);
	*out = rv ? NULL : *slot;
	pthread_mutex_unlock(&c->lock);
	return rv;
}

static atomic_uint fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void count_fork(void)
{
	atomic_fetch_add(&fork_generation, 1);
}

static void install_atfork(void)
{
	/* glibc unregisters it if this library is dlclose()d */
	pthread_atfork(NULL, NULL, count_fork);
}

unsigned kw_fork_generation(void)
{
	pthread_once(&atfork_once, install_atfork);
	return atomic_load(&fork_generation);
}

/*
 * Takes every shared connection out of the list (caller holds c->lock);
 * those no call is using go to *closing for the caller to close after
 * unlocking, the others are closed by their last user.
 */
static size_t unlist_all_locked(kw_client *c, struct kw_conn **closing)
{
	size_t n = 0;

	for (size_t i = 0; i < c->n_conns; i++) {
		c->conns[i]->listed = false;
		if (!c->conns[i]->users)
			closing[n++] = c->conns[i];
	}
	c->n_conns = 0;
	return n;
}

void kw_client_drop_connections(kw_client *c)
{
	struct kw_conn **closing = calloc(c->cfg.pool_size ? c->cfg.pool_size : 1, sizeof *closing);
	size_t n = 0;

	pthread_mutex_lock(&c->lock);
	if (closing)
		n = unlist_all_locked(c, closing);
	pthread_mutex_unlock(&c->lock);
	for (size_t i = 0; i < n; i++)
		kw_conn_close(closing[i], true);
	free(closing);
}

/* After fork(): the parent's connections are closed here without a word. */
static void drop_if_forked_locked(kw_client *c)
{
	unsigned gen = kw_fork_generation();

	if (c->fork_gen == gen)
		return;
	kw_debug(KW_DEBUG_POOL, "pool: fork detected, dropping %zu connections of the parent", c->n_conns);
	/* the parent's other threads do not exist here: their calls never end */
	for (size_t i = 0; i < c->n_conns; i++)
		kw_conn_close(c->conns[i], false);
	c->n_conns = 0;
	c->fork_gen = gen;
}

static uint32_t rand32(void *arg)
{
	uint32_t v = 0;

	(void)arg;
	if (RAND_bytes((unsigned char *)&v, sizeof v) != 1)
		v = (uint32_t)random(); /* order only, not a secret */
	return v;
}

static kw_rv connect_avoiding(kw_client *c, bool with_cred, size_t avoid, struct kw_conn **out);

kw_rv kw_client_connect(kw_client *c, bool with_cred, struct kw_conn **out)
{
	return connect_avoiding(c, with_cred, SIZE_MAX, out);
}

/*
 * kw_client_connect, trying the HSM `avoid` (SIZE_MAX: none) last: a
 * request repeated after that HSM failed goes to another one first, and
 * does not wait out a hung HSM's handshake before it.
 */
static kw_rv connect_avoiding(kw_client *c, bool with_cred, size_t avoid, struct kw_conn **out)
{
	size_t n = c->cfg.n_hsms, *order;
	char msg[1024], why[384];
	size_t used = 0;
	kw_rv rv, first_server_rv = KW_OK;
	bool all_answered = true;
	SSL_CTX *ctx;

	*out = NULL;
	rv = get_ctx(c, with_cred, &ctx);
	if (rv)
		return rv;
	order = calloc(n, sizeof *order);
	if (!order) {
		SSL_CTX_free(ctx);
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory choosing an HSM");
	}
	kw_failover_order(&c->cfg, order, rand32, NULL);
	for (size_t k = 0; k + 1 < n; k++) {
		if (order[k] == avoid) {
			memmove(order + k, order + k + 1, (n - k - 1) * sizeof *order);
			order[n - 1] = avoid;
			break;
		}
	}
	msg[0] = '\0';
	for (size_t k = 0; k < n; k++) {
		const struct kw_hsm_cfg *h = &c->cfg.hsms[order[k]];
		int w;

		rv = kw_conn_open(&c->cfg, order[k], ctx, out, NULL, why, sizeof why);
		if (!rv)
			break;
		kw_debug(KW_DEBUG_POOL, "pool: %s failed: %s", h->address, why);
		if (rv == KW_ERR_NO_MEMORY || rv == KW_ERR_CONFIG)
			break; /* would fail the same way everywhere */
		/* a status the server answered with (not the network's fault) */
		if (rv == KW_ERR_NETWORK || rv == KW_ERR_TIMEOUT || rv == KW_ERR_PROTOCOL)
			all_answered = false;
		else if (!first_server_rv)
			first_server_rv = rv;
		w = snprintf(msg + used, sizeof msg - used, "%s%s (%s)", used ? ", " : "", h->address, why);
		if (w > 0)
			used = (size_t)w >= sizeof msg - used ? sizeof msg - 1 : used + (size_t)w;
	}
	free(order);
	SSL_CTX_free(ctx);
	if (!rv || rv == KW_ERR_NO_MEMORY || rv == KW_ERR_CONFIG)
		return rv;
	/*
	 * Every HSM refused: if each one answered (e.g. authentication
	 * failed, wrong version), that answer is the error; otherwise none
	 * was reachable.
	 */
	if (all_answered && first_server_rv)
		return kw_error_set(first_server_rv, "no HSM accepted this client: %s", msg);
	return kw_error_set(KW_ERR_UNREACHABLE,
			    "no HSM reachable (tried %zu, as [hsm ...] in %s names them): %s; check that keywardd "
			    "runs there and that host and port are right",
			    n, c->cfg.path, msg);
}

/* seconds an idle connection may rest before we check that the HSM kept it open */
#define IDLE_CHECK_AFTER 1.0

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Removes conn from the list (caller holds c->lock). */
static void unlist_locked(kw_client *c, struct kw_conn *conn)
{
	for (size_t i = 0; i < c->n_conns; i++) {
		if (c->conns[i] == conn) {
			c->conns[i] = c->conns[--c->n_conns];
			break;
		}
	}
	conn->listed = false;
}

/* A new connection (HSM `avoid` tried last), listed for other calls while the list has room. */
static kw_rv open_listed(kw_client *c, size_t avoid, struct kw_conn **out)
{
	struct kw_conn *fresh;
	kw_rv rv;

	*out = NULL;
	rv = connect_avoiding(c, true, avoid, &fresh);
	if (rv)
		return rv;
	pthread_mutex_lock(&c->lock);
	fresh->users = 1;
	if (c->n_conns < c->cfg.pool_size && fresh->fork_gen == c->fork_gen) {
		fresh->listed = true;
		c->conns[c->n_conns++] = fresh;
	}
	pthread_mutex_unlock(&c->lock);
	*out = fresh;
	return KW_OK;
}

/*
 * Joins the least busy shared connection, or opens a new one (HSM `avoid`
 * tried last) when each carries KW_PIPELINE_DEPTH calls and the list has room.
 */
static kw_rv take_conn_once(kw_client *c, size_t avoid, struct kw_conn **out)
{
	struct kw_conn *best, *dead = NULL;

	*out = NULL;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		drop_if_forked_locked(c);
		best = NULL;
		for (size_t i = 0; i < c->n_conns; i++)
			if (!best || c->conns[i]->users < best->users)
				best = c->conns[i];
		if (best && (best->users < KW_PIPELINE_DEPTH || c->n_conns >= c->cfg.pool_size)) {
			/* only a connection idle for a while may have been closed by the HSM */
			if (best->users || now_mono() - best->last_used < IDLE_CHECK_AFTER || kw_conn_alive(best)) {
				best->users++;
				*out = best;
				pthread_mutex_unlock(&c->lock);
				return KW_OK;
			}
			kw_debug(KW_DEBUG_POOL, "pool: idle connection to %s was closed by the HSM",
				 c->cfg.hsms[best->hsm].address);
			unlist_locked(c, best);
			dead = best;
		}
		pthread_mutex_unlock(&c->lock);
		if (!dead)
			break;
		kw_conn_close(dead, false);
		dead = NULL;
	}
	return open_listed(c, avoid, out);
}

/*
 * take_conn_once; on a single-connection client one call at a time, so
 * two first calls never open two connections (the second's would close
 * after its call, and whatever the HSM kept for it with it).
 */
static kw_rv take_conn(kw_client *c, size_t avoid, struct kw_conn **out)
{
	kw_rv rv;

	if (!c->single)
		return take_conn_once(c, avoid, out);
	pthread_mutex_lock(&c->take_lock);
	rv = take_conn_once(c, avoid, out);
	pthread_mutex_unlock(&c->take_lock);
	return rv;
}

/* Ends a call on conn; a broken or unlisted connection closes with its last user. */
static void give_back(kw_client *c, struct kw_conn *conn)
{
	bool close_it;

	pthread_mutex_lock(&c->lock);
	drop_if_forked_locked(c);
	conn->users--;
	if (conn->listed && kw_conn_broken(conn))
		unlist_locked(c, conn);
	close_it = !conn->listed && !conn->users;
	pthread_mutex_unlock(&c->lock);
	if (close_it)
		kw_conn_close(conn, conn->fork_gen == kw_fork_generation() && !kw_conn_broken(conn));
}

/*
 * What a request would have done if the HSM carried it out, for the
 * message that its outcome is unknown; NULL for one that changes nothing,
 * which may be sent again (to another HSM) when a connection fails under
 * it: at worst the HSM that failed carried it out too, and a second
 * signature or random string harms nothing. A key generation, deletion,
 * move or change may have been carried out already, so its caller hears
 * that the outcome is unknown. One table, so a request type is either
 * repeated or explained, never neither.
 */
static const char *unsafe_effect(const Keyward__Request *req)
{
	switch (req->body_case) {
	case KEYWARD__REQUEST__BODY_HELLO:
	case KEYWARD__REQUEST__BODY_SIGN:
	case KEYWARD__REQUEST__BODY_SIGN_BATCH:
	case KEYWARD__REQUEST__BODY_DECRYPT:
	case KEYWARD__REQUEST__BODY_SECRET_CRYPT:
	case KEYWARD__REQUEST__BODY_GET_OBJECT:
	case KEYWARD__REQUEST__BODY_LIST_OBJECTS:
	case KEYWARD__REQUEST__BODY_GENERATE_RANDOM:
	case KEYWARD__REQUEST__BODY_WRAP_KEY:
		return NULL;
	case KEYWARD__REQUEST__BODY_GENERATE_KEY:
		return "the key was generated";
	case KEYWARD__REQUEST__BODY_CREATE_OBJECT:
		return "the object was created";
	case KEYWARD__REQUEST__BODY_COPY_OBJECT:
		return "the object was copied";
	case KEYWARD__REQUEST__BODY_UNWRAP_KEY:
		return "the key was unwrapped";
	case KEYWARD__REQUEST__BODY_DERIVE_KEY:
		return "the key was derived";
	case KEYWARD__REQUEST__BODY_DELETE_OBJECTS:
		return "the objects were deleted";
	case KEYWARD__REQUEST__BODY_CHANGE_OWNER:
		return "the key was moved";
	case KEYWARD__REQUEST__BODY_SET_ATTRIBUTES:
		return "the attributes were changed";
	default:
		return "the request was carried out";
	}
}

static bool conn_broken(kw_rv rv)
{
	return rv == KW_ERR_NETWORK || rv == KW_ERR_PROTOCOL || rv == KW_ERR_TIMEOUT;
}

/*
 * A request whose connection failed is sent again, on a fresh connection
 * to another HSM first, when the HSM cannot have received it or when
 * repeating it is safe (and the stream was not garbled: a PROTOCOL error
 * is not the network's fault); repeated at most once per configured HSM,
 * so a request outlives the loss of every HSM but one. Otherwise its caller
 * hears which HSM failed and, if the request may have been carried out,
 * that its outcome is unknown: it is never repeated blindly.
 */
kw_rv kw_client_call(kw_client *c, Keyward__Request *req, Keyward__Response__BodyCase expect, Keyward__Response **resp)
{
	size_t failed_hsm = SIZE_MAX;
	char why[768], before[900] = "";
	const char *effect;
	struct kw_conn *conn;
	bool sent;
	kw_rv rv;

	*resp = NULL;
	for (size_t attempt = 0;; attempt++) {
		/* after a failure a fresh connection, to another HSM first (one connection only: the one there is) */
		if (failed_hsm == SIZE_MAX || c->single)
			rv = take_conn(c, failed_hsm, &conn);
		else
			rv = open_listed(c, failed_hsm, &conn);
		if (rv)
			break;
		rv = kw_conn_call(conn, c->cfg.command_timeout, req, resp, &sent);
		if (!conn_broken(rv)) {
			give_back(c, conn);
			break;
		}
		/* kw_conn_call set a message; name the HSM too */
		failed_hsm = conn->hsm;
		snprintf(why, sizeof why, "%s", kw_last_error());
		snprintf(before, sizeof before, "%s: %s", c->cfg.hsms[failed_hsm].address, why);
		give_back(c, conn); /* broken: it leaves the list, its last user closes it */
		if (sent && (effect = unsafe_effect(req)))
			return kw_error_set(rv,
					    "%s: %s; whether %s is unknown: the request was sent, the answer never "
					    "came, and it is not repeated as doing it twice would not be safe (look, "
					    "e.g. ksputil enumkeys, before trying again)",
					    c->cfg.hsms[failed_hsm].address, why, effect);
		/* a hung HSM answers the same a second time; only another one may do better */
		if ((sent && rv == KW_ERR_PROTOCOL) || (rv == KW_ERR_TIMEOUT && c->cfg.n_hsms < 2) ||
		    attempt >= c->cfg.n_hsms)
			return kw_error_set(rv, "%s: %s", c->cfg.hsms[failed_hsm].address, why);
		kw_debug(KW_DEBUG_POOL, "pool: %s failed (%s); %s on a fresh connection",
			 c->cfg.hsms[failed_hsm].address, why, sent ? "repeating the request" : "sending the request");
	}
	/* a repeat that failed too: say what made it one (a session object is not on a fresh connection) */
	if (rv && before[0]) {
		snprintf(why, sizeof why, "%s", kw_last_error());
		return kw_error_set(rv, "%s (the request was sent again after %s)", why, before);
	}
	if (rv)
		return rv;
	if (expect != KEYWARD__RESPONSE__BODY__NOT_SET && (*resp)->body_case != expect) {
		int got = (int)(*resp)->body_case;
		keyward__response__free_unpacked(*resp, NULL);
		*resp = NULL;
		return kw_error_set(KW_ERR_PROTOCOL,
				    "the HSM answered with the wrong kind of response (body %d, expected %d)", got,
				    (int)expect);
	}
	return KW_OK;
}

kw_rv kw_client_probe(kw_client *c, size_t i, unsigned *version, int *initialized, int *locked)
{
	Keyward__HelloResult *hello = NULL;
	struct kw_conn *conn = NULL;
	SSL_CTX *ctx = NULL;
	char why[384];
	kw_rv rv;

	if (!c)
		return kw_error_set(KW_ERR_ARGUMENTS, "probing an HSM: no client given");
	if (i >= c->cfg.n_hsms)
		return kw_error_set(KW_ERR_ARGUMENTS, "probing an HSM: no HSM number %zu (the configuration has %zu)",
				    i, c->cfg.n_hsms);
	/*
	 * With the credential if it can be used; Hello needs none, so a
	 * credential that cannot be loaded (no PIN, wrong PIN, unreadable)
	 * does not make a reachable HSM look unreachable.
	 */
	rv = KW_ERR_CONFIG;
	if (c->cfg.cert && access(c->cfg.cert, R_OK) == 0)
		rv = get_ctx(c, true, &ctx);
	if (rv && rv != KW_ERR_NO_MEMORY)
		rv = get_ctx(c, false, &ctx);
	if (rv)
		return rv;
	rv = kw_conn_open(&c->cfg, i, ctx, &conn, &hello, why, sizeof why);
	SSL_CTX_free(ctx);
	if (rv)
		return rv;
	if (version)
		*version = hello->version;
	if (initialized)
		*initialized = hello->initialized;
	if (locked)
		*locked = hello->locked;
	keyward__hello_result__free_unpacked(hello, NULL);
	kw_conn_close(conn, true);
	return KW_OK;
}
