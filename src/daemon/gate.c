/*
 * Admission: who may hold one of keywardd's connections.
 *
 * Three budgets that cannot eat into each other: authenticated clients
 * (max_connections), strangers, connections that have not yet
 * authenticated (max_unauthenticated, at most max_unauthenticated_per_address
 * of them from one address, or one IPv6 /64), and the local admin socket
 * (admin_max_connections). A stranger becomes a client by reserving a
 * client's slot before its Hello runs (kw_gate_reserve_client) and settling
 * it after, so a Hello is refused, not answered and then dropped, when the
 * clients' budget is full, and the budget is never exceeded.
 *
 * A full budget does not refuse the newcomer: it evicts the oldest stranger
 * (of the newcomer's address when that address holds its share, so hosts
 * behind one NAT are not refused either). Whoever holds slots without
 * authenticating then has to out-pace every honest handshake to keep them,
 * and an honest client, whose handshake and Hello take milliseconds, gets
 * through.
 *
 * The gate only counts; the server closes what it is told to evict. One
 * mutex: admission runs once per connection, never per request.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "daemon/gate.h"

struct address_count {
	unsigned char key[KW_GATE_KEY_LEN];
	unsigned strangers;
	struct address_count *next;
};

struct kw_gate {
	pthread_mutex_t lock;
	struct kw_gate_limits limits;
	unsigned count[4]; /* by enum kw_gate_class */
	/* strangers, oldest first */
	struct kw_gate_slot *oldest, *newest;
	/* strangers per source address: at most max_unauthenticated entries */
	struct address_count **buckets;
	size_t n_buckets;
	uint64_t refused, evicted;
};

kw_rv kw_gate_new(const struct kw_gate_limits *limits, struct kw_gate **out)
{
	struct kw_gate *g = calloc(1, sizeof *g);

	*out = NULL;
	if (!g)
		return KW_ERR_NO_MEMORY;
	g->limits = *limits;
	g->n_buckets = limits->max_unauthenticated ? limits->max_unauthenticated : 1;
	g->buckets = calloc(g->n_buckets, sizeof *g->buckets);
	if (!g->buckets) {
		free(g);
		return KW_ERR_NO_MEMORY;
	}
	pthread_mutex_init(&g->lock, NULL);
	*out = g;
	return KW_OK;
}

void kw_gate_free(struct kw_gate *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->n_buckets; i++) {
		while (g->buckets[i]) {
			struct address_count *a = g->buckets[i];
			g->buckets[i] = a->next;
			free(a);
		}
	}
	free(g->buckets);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

void kw_gate_key(const struct sockaddr *sa, unsigned char key[KW_GATE_KEY_LEN])
{
	memset(key, 0, KW_GATE_KEY_LEN);
	if (sa->sa_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a, v4mapped, sizeof v4mapped) == 0) {
			key[0] = 4;
			memcpy(key + 1, a + 12, 4);
		} else {
			/* one host is free to use a whole /64: count the prefix, not the address */
			key[0] = 6;
			memcpy(key + 1, a, 8);
		}
	}
}

static size_t bucket_of(const struct kw_gate *g, const unsigned char *key)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < KW_GATE_KEY_LEN; i++)
		h = (h ^ key[i]) * 1099511628211ull;
	return (size_t)(h % g->n_buckets);
}

static struct address_count **find_locked(struct kw_gate *g, const unsigned char *key)
{
	struct address_count **p = &g->buckets[bucket_of(g, key)];

	while (*p && memcmp((*p)->key, key, KW_GATE_KEY_LEN) != 0)
		p = &(*p)->next;
	return p;
}

/* Takes a stranger out of the FIFO and its address's count. */
static void forget_stranger_locked(struct kw_gate *g, struct kw_gate_slot *s)
{
	struct address_count **p = find_locked(g, s->key);

	if (s->prev)
		s->prev->next = s->next;
	else
		g->oldest = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		g->newest = s->prev;
	s->prev = s->next = NULL;
	if (*p && --(*p)->strangers == 0) {
		struct address_count *a = *p;
		*p = a->next;
		free(a);
	}
	g->count[KW_GATE_STRANGER]--;
}

kw_rv kw_gate_enter_stranger(struct kw_gate *g, struct kw_gate_slot *s, const unsigned char key[KW_GATE_KEY_LEN],
			     void (*hold)(struct kw_gate_slot *), struct kw_gate_slot **evicted)
{
	struct address_count **p, *a;
	kw_rv rv = KW_OK;

	*evicted = NULL;
	memset(s, 0, sizeof *s);
	memcpy(s->key, key, KW_GATE_KEY_LEN);
	pthread_mutex_lock(&g->lock);
	if (!g->limits.max_unauthenticated || !g->limits.max_unauthenticated_per_address) {
		g->refused++;
		rv = kw_error_set(KW_ERR_BUSY, "no unauthenticated connections are allowed");
		goto out;
	}
	p = find_locked(g, key);
	if ((*p && (*p)->strangers >= g->limits.max_unauthenticated_per_address) ||
	    g->count[KW_GATE_STRANGER] >= g->limits.max_unauthenticated) {
		/* room is made by the oldest stranger of this address if it holds its share, else of all */
		struct kw_gate_slot *victim = g->oldest;
		if (*p && (*p)->strangers >= g->limits.max_unauthenticated_per_address)
			while (memcmp(victim->key, key, KW_GATE_KEY_LEN) != 0)
				victim = victim->next;
		forget_stranger_locked(g, victim);
		victim->cls = KW_GATE_NONE;
		if (hold)
			hold(victim);
		g->evicted++;
		*evicted = victim;
		p = find_locked(g, key); /* the victim's entry may have been this one, and gone */
	}
	if (!*p) {
		if (!(a = calloc(1, sizeof *a))) {
			rv = KW_ERR_NO_MEMORY;
			goto out;
		}
		memcpy(a->key, key, KW_GATE_KEY_LEN);
		*p = a;
	}
	(*p)->strangers++;
	s->prev = g->newest;
	if (g->newest)
		g->newest->next = s;
	else
		g->oldest = s;
	g->newest = s;
	s->cls = KW_GATE_STRANGER;
	g->count[KW_GATE_STRANGER]++;
out:
	pthread_mutex_unlock(&g->lock);
	return rv;
}

kw_rv kw_gate_enter_admin(struct kw_gate *g, struct kw_gate_slot *s)
{
	kw_rv rv = KW_OK;

	memset(s, 0, sizeof *s);
	pthread_mutex_lock(&g->lock);
	if (g->count[KW_GATE_ADMIN] >= g->limits.admin_max_connections) {
		g->refused++;
		rv = kw_error_set(KW_ERR_BUSY,
				  "keywardd's admin socket is busy: %u administrative connections are open "
				  "(admin_max_connections); try again when one has finished",
				  g->count[KW_GATE_ADMIN]);
	} else {
		s->cls = KW_GATE_ADMIN;
		g->count[KW_GATE_ADMIN]++;
	}
	pthread_mutex_unlock(&g->lock);
	return rv;
}

kw_rv kw_gate_reserve_client(struct kw_gate *g, struct kw_gate_slot *s)
{
	kw_rv rv = KW_OK;

	pthread_mutex_lock(&g->lock);
	if (s->cls == KW_GATE_CLIENT || s->reserved) {
		/* a second Hello on an authenticated connection holds its slot already */
	} else if (s->cls != KW_GATE_STRANGER) {
		rv = kw_error_set(KW_ERR_BUSY, "this connection is being closed");
	} else if (g->count[KW_GATE_CLIENT] >= g->limits.max_connections) {
		g->refused++;
		rv = kw_error_set(KW_ERR_BUSY,
				  "keywardd is full: %u of %u client connections are in use (max_connections); "
				  "try again later or another HSM",
				  g->count[KW_GATE_CLIENT], g->limits.max_connections);
	} else {
		s->reserved = true;
		g->count[KW_GATE_CLIENT]++;
	}
	pthread_mutex_unlock(&g->lock);
	return rv;
}

kw_rv kw_gate_settle_client(struct kw_gate *g, struct kw_gate_slot *s, bool authenticated)
{
	kw_rv rv = KW_OK;

	pthread_mutex_lock(&g->lock);
	if (s->reserved) {
		s->reserved = false;
		if (authenticated && s->cls == KW_GATE_STRANGER) {
			forget_stranger_locked(g, s);
			s->cls = KW_GATE_CLIENT;
		} else {
			g->count[KW_GATE_CLIENT]--;
			if (authenticated) /* evicted while its Hello ran */
				rv = kw_error_set(KW_ERR_BUSY, "this connection was evicted before it authenticated");
		}
	}
	pthread_mutex_unlock(&g->lock);
	return rv;
}

void kw_gate_leave(struct kw_gate *g, struct kw_gate_slot *s)
{
	pthread_mutex_lock(&g->lock);
	if (s->reserved)
		g->count[KW_GATE_CLIENT]--;
	s->reserved = false;
	switch (s->cls) {
	case KW_GATE_STRANGER:
		forget_stranger_locked(g, s);
		break;
	case KW_GATE_CLIENT:
	case KW_GATE_ADMIN:
		g->count[s->cls]--;
		break;
	default: /* evicted, or never admitted: counted out already */
		break;
	}
	s->cls = KW_GATE_NONE;
	pthread_mutex_unlock(&g->lock);
}

void kw_gate_counts(struct kw_gate *g, struct kw_gate_counts *out)
{
	pthread_mutex_lock(&g->lock);
	out->clients = g->count[KW_GATE_CLIENT];
	out->strangers = g->count[KW_GATE_STRANGER];
	out->admins = g->count[KW_GATE_ADMIN];
	out->refused = g->refused;
	out->evicted = g->evicted;
	pthread_mutex_unlock(&g->lock);
}
