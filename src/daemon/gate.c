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
#include "common/htab.h"
#include "daemon/gate.h"

struct address_count {
	struct kw_hnode h;
	unsigned char key[KW_GATE_KEY_LEN];
	unsigned strangers;
};

struct kw_gate {
	pthread_mutex_t lock;
	struct kw_gate_limits limits;
	unsigned count[4]; /* by enum kw_gate_class */
	/* strangers, oldest first */
	struct kw_gate_slot *oldest, *newest;
	/* strangers per source address: at most max_unauthenticated entries */
	struct kw_htab addresses;
	uint64_t refused, evicted;
};

kw_rv kw_gate_new(const struct kw_gate_limits *limits, struct kw_gate **out)
{
	struct kw_gate *g = calloc(1, sizeof *g);

	*out = NULL;
	if (!g)
		return KW_ERR_NO_MEMORY;
	g->limits = *limits;
	if (kw_htab_init(&g->addresses, limits->max_unauthenticated ? limits->max_unauthenticated : 1)) {
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
	for (struct kw_hnode *h; (h = kw_htab_pop(&g->addresses));)
		free(kw_entry_of(h, struct address_count, h));
	kw_htab_free(&g->addresses);
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

static bool address_is(const struct kw_hnode *h, const void *key)
{
	return memcmp(kw_entry_of(h, struct address_count, h)->key, key, KW_GATE_KEY_LEN) == 0;
}

/* The count of key's strangers, or NULL. */
static struct address_count *find_locked(struct kw_gate *g, const unsigned char *key)
{
	struct kw_hnode *h = kw_htab_find(&g->addresses, kw_hash(key, KW_GATE_KEY_LEN), address_is, key);

	return h ? kw_entry_of(h, struct address_count, h) : NULL;
}

/* Takes a stranger out of the FIFO and its address's count. */
static void forget_stranger_locked(struct kw_gate *g, struct kw_gate_slot *s)
{
	struct address_count *a = find_locked(g, s->key);

	if (s->prev)
		s->prev->next = s->next;
	else
		g->oldest = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		g->newest = s->prev;
	s->prev = s->next = NULL;
	if (a && --a->strangers == 0) {
		kw_htab_take(&g->addresses, kw_hash(s->key, KW_GATE_KEY_LEN), address_is, s->key);
		free(a);
	}
	g->count[KW_GATE_STRANGER]--;
}

kw_rv kw_gate_enter_stranger(struct kw_gate *g, struct kw_gate_slot *s, const unsigned char key[KW_GATE_KEY_LEN],
			     void (*hold)(struct kw_gate_slot *), struct kw_gate_slot **evicted)
{
	struct address_count *a;
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
	a = find_locked(g, key);
	if ((a && a->strangers >= g->limits.max_unauthenticated_per_address) ||
	    g->count[KW_GATE_STRANGER] >= g->limits.max_unauthenticated) {
		/* room is made by the oldest stranger of this address if it holds its share, else of all */
		struct kw_gate_slot *victim = g->oldest;
		if (a && a->strangers >= g->limits.max_unauthenticated_per_address)
			while (memcmp(victim->key, key, KW_GATE_KEY_LEN) != 0)
				victim = victim->next;
		forget_stranger_locked(g, victim);
		victim->cls = KW_GATE_NONE;
		if (hold)
			hold(victim);
		g->evicted++;
		*evicted = victim;
		a = find_locked(g, key); /* the victim's entry may have been this one, and gone */
	}
	if (!a) {
		if (!(a = calloc(1, sizeof *a))) {
			rv = KW_ERR_NO_MEMORY;
			goto out;
		}
		memcpy(a->key, key, KW_GATE_KEY_LEN);
		kw_htab_add(&g->addresses, &a->h, kw_hash(key, KW_GATE_KEY_LEN));
	}
	a->strangers++;
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
