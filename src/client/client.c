/*
 * kw_client: the configuration, two lazily made TLS contexts (with and
 * without the client credential), a mutex-protected stack of idle
 * connections, failover across the HSMs by priority, and fork detection.
 *
 * A call takes an idle connection (or opens one), uses it with the lock
 * released, and gives it back; at most pool_size idle connections are kept,
 * any number may be in use. A connection that failed in the network or the
 * protocol is closed, never pooled. A child process never touches its
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
		return kw_error_set(KW_ERR_ARGUMENTS, "kw_client_new: out is NULL");
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
		c->idle = calloc(c->cfg.pool_size, sizeof *c->idle);
		if (!c->idle) {
			kw_config_cleanup(&c->cfg);
			free(c);
			return kw_error_set(KW_ERR_NO_MEMORY, "out of memory creating a keyward client");
		}
	}
	if (pthread_mutex_init(&c->lock, NULL) != 0) {
		free(c->idle);
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
	for (size_t i = 0; i < c->n_idle; i++)
		kw_conn_close(c->idle[i], !child);
	free(c->idle);
	SSL_CTX_free(c->ctx_cred);
	SSL_CTX_free(c->ctx_anon);
	wipe_free(c->pin);
	pthread_mutex_destroy(&c->lock);
	kw_config_cleanup(&c->cfg);
	free(c);
}

kw_rv kw_client_set_pin(kw_client *c, const char *pin)
{
	char *copy = NULL;

	if (!c)
		return kw_error_set(KW_ERR_ARGUMENTS, "kw_client_set_pin: client is NULL");
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

/* After fork(): the parent's connections are closed here without a word. */
static void drop_if_forked_locked(kw_client *c)
{
	unsigned gen = kw_fork_generation();

	if (c->fork_gen == gen)
		return;
	kw_debug(KW_DEBUG_POOL, "pool: fork detected, dropping %zu connections of the parent", c->n_idle);
	for (size_t i = 0; i < c->n_idle; i++)
		kw_conn_close(c->idle[i], false);
	c->n_idle = 0;
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

kw_rv kw_client_connect(kw_client *c, bool with_cred, struct kw_conn **out)
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
	return kw_error_set(KW_ERR_UNREACHABLE, "no HSM reachable: %s", msg);
}

/* seconds an idle connection may rest before we check that the HSM kept it open */
#define IDLE_CHECK_AFTER 1.0

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Takes an idle, live connection (reused = true) or opens a new one. */
static kw_rv take_conn(kw_client *c, struct kw_conn **out, bool *reused)
{
	*out = NULL;
	*reused = false;
	pthread_mutex_lock(&c->lock);
	drop_if_forked_locked(c);
	while (c->n_idle) {
		struct kw_conn *conn = c->idle[--c->n_idle];
		/* only a connection idle for a while may have been closed by the HSM */
		if (now_mono() - conn->last_used < IDLE_CHECK_AFTER || kw_conn_alive(conn)) {
			*out = conn;
			*reused = true;
			break;
		}
		kw_debug(KW_DEBUG_POOL, "pool: idle connection to %s was closed by the HSM",
			 c->cfg.hsms[conn->hsm].address);
		kw_conn_close(conn, false);
	}
	pthread_mutex_unlock(&c->lock);
	if (*out)
		return KW_OK;
	return kw_client_connect(c, true, out);
}

static void give_back(kw_client *c, struct kw_conn *conn)
{
	pthread_mutex_lock(&c->lock);
	drop_if_forked_locked(c);
	if (conn->fork_gen == c->fork_gen && c->n_idle < c->cfg.pool_size) {
		conn->last_used = now_mono();
		c->idle[c->n_idle++] = conn;
		conn = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (conn)
		kw_conn_close(conn, true);
}

static bool conn_broken(kw_rv rv)
{
	return rv == KW_ERR_NETWORK || rv == KW_ERR_PROTOCOL || rv == KW_ERR_TIMEOUT;
}

kw_rv kw_client_call(kw_client *c, Keyward__Request *req, Keyward__Response__BodyCase expect,
		     Keyward__Response **resp)
{
	struct kw_conn *conn;
	bool reused;
	kw_rv rv;

	*resp = NULL;
	for (int attempt = 0;; attempt++) {
		rv = take_conn(c, &conn, &reused);
		if (rv)
			return rv;
		rv = kw_conn_call(conn, c->cfg.command_timeout, req, resp);
		if (!conn_broken(rv)) {
			give_back(c, conn);
			break;
		}
		/* kw_conn_call set a message; name the HSM too */
		{
			char why[768];
			snprintf(why, sizeof why, "%s", kw_last_error());
			kw_error_set(rv, "%s: %s", c->cfg.hsms[conn->hsm].address, why);
		}
		kw_conn_close(conn, false);
		/* an idle connection the server closed meanwhile: once more, fresh */
		if (!(rv == KW_ERR_NETWORK && reused && attempt == 0))
			return rv;
		kw_debug(KW_DEBUG_POOL, "pool: retrying on a fresh connection");
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
		return kw_error_set(KW_ERR_ARGUMENTS, "kw_client_probe: client is NULL");
	if (i >= c->cfg.n_hsms)
		return kw_error_set(KW_ERR_ARGUMENTS, "kw_client_probe: no HSM number %zu (the configuration has %zu)",
				    i, c->cfg.n_hsms);
	/* with the credential if there is one; Hello needs none */
	rv = KW_ERR_CONFIG;
	if (c->cfg.cert && access(c->cfg.cert, R_OK) == 0)
		rv = get_ctx(c, true, &ctx);
	if (rv == KW_ERR_CONFIG)
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
