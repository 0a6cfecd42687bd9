/*
 * Lockout after repeated failed authentications, as on the seed's HSM:
 * `failures` failures within `window` seconds lock that credential (a client
 * certificate, or a partition's setup password) for `duration` seconds.
 * Kept in memory: a restart clears it, as it does on that HSM.
 *
 * Two tables of MAX_TRACKED entries each, so strangers cannot crowd out the
 * identities worth protecting:
 *   known     identities that exist (a registered credential, the setup
 *             password of a partition that exists, the admin unlock). Only
 *             the server puts them here, after looking them up.
 *   strangers what a peer can make up (unregistered certificates) and the
 *             source addresses that fail, counted against their own limit.
 * A full table evicts its oldest idle entry: one whose window has passed
 * and that is not locked; the stranger table, failing that, its oldest
 * entry that is not locked. When every entry is locked, the table fails
 * closed: an identity it does not hold is refused until a lock ends. No
 * table ever stops counting.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"

#define MAX_TRACKED 4096

struct entry {
	char who[96];
	unsigned failures;
	time_t window_start;
	time_t locked_until;
	time_t last_seen;
};

struct table {
	struct entry *entries;
	size_t n;
	bool stranger; /* may evict entries still counting */
};

struct kw_lockout {
	unsigned max_failures, max_address_failures, window, duration;
	pthread_mutex_t lock;
	struct table known, strangers;
};

kw_rv kw_lockout_new(unsigned failures, unsigned address_failures, unsigned window, unsigned duration,
		     struct kw_lockout **out)
{
	struct kw_lockout *lo = calloc(1, sizeof *lo);

	*out = NULL;
	if (!lo || !(lo->known.entries = calloc(MAX_TRACKED, sizeof(struct entry))) ||
	    !(lo->strangers.entries = calloc(MAX_TRACKED, sizeof(struct entry)))) {
		if (lo)
			free(lo->known.entries);
		free(lo);
		return KW_ERR_NO_MEMORY;
	}
	lo->strangers.stranger = true;
	lo->max_failures = failures ? failures : 1;
	lo->max_address_failures = address_failures ? address_failures : 1;
	lo->window = window;
	lo->duration = duration;
	pthread_mutex_init(&lo->lock, NULL);
	*out = lo;
	return KW_OK;
}

void kw_lockout_free(struct kw_lockout *lo)
{
	if (!lo)
		return;
	pthread_mutex_destroy(&lo->lock);
	free(lo->known.entries);
	free(lo->strangers.entries);
	free(lo);
}

static time_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static struct table *table_of(struct kw_lockout *lo, enum kw_lockout_kind kind)
{
	return kind == KW_LOCKOUT_KNOWN ? &lo->known : &lo->strangers;
}

static struct entry *find_locked(struct table *tb, const char *who)
{
	for (size_t i = 0; i < tb->n; i++)
		if (strcmp(tb->entries[i].who, who) == 0)
			return &tb->entries[i];
	return NULL;
}

/* The slot a new entry may take, or NULL when every entry is locked (fail closed). */
static struct entry *slot_locked(struct kw_lockout *lo, struct table *tb, time_t t)
{
	struct entry *idle = NULL, *unlocked = NULL;

	if (tb->n < MAX_TRACKED)
		return &tb->entries[tb->n++];
	for (size_t i = 0; i < tb->n; i++) {
		struct entry *e = &tb->entries[i];
		if (e->locked_until > t)
			continue;
		if (t - e->window_start > (time_t)lo->window && (!idle || e->last_seen < idle->last_seen))
			idle = e;
		if (!unlocked || e->last_seen < unlocked->last_seen)
			unlocked = e;
	}
	return idle ? idle : tb->stranger ? unlocked : NULL;
}

/* The earliest time a slot frees up in a table that has none. */
static time_t full_until_locked(struct table *tb)
{
	time_t until = 0;

	for (size_t i = 0; i < tb->n; i++)
		if (!until || tb->entries[i].locked_until < until)
			until = tb->entries[i].locked_until;
	return until;
}

kw_rv kw_lockout_check(struct kw_lockout *lo, enum kw_lockout_kind kind, const char *who)
{
	struct table *tb = table_of(lo, kind);
	kw_rv rv = KW_OK;
	struct entry *e;
	time_t t = now(), until;

	pthread_mutex_lock(&lo->lock);
	e = find_locked(tb, who);
	if (e && e->locked_until > t) {
		rv = kw_error_set(KW_ERR_LOCKED_OUT, "%s is locked for %ld more seconds after %u failed authentications",
				  who, (long)(e->locked_until - t),
				  kind == KW_LOCKOUT_ADDRESS ? lo->max_address_failures : lo->max_failures);
	} else if (!e && tb->n == MAX_TRACKED && !slot_locked(lo, tb, t)) {
		/* cannot count a failure for who: refuse rather than let it try uncounted */
		until = full_until_locked(tb);
		rv = kw_error_set(KW_ERR_LOCKED_OUT,
				  "%s cannot be tracked: %d identities are locked out at once; try again in %ld seconds",
				  who, MAX_TRACKED, (long)(until > t ? until - t : 1));
	}
	pthread_mutex_unlock(&lo->lock);
	return rv;
}

void kw_lockout_fail(struct kw_lockout *lo, enum kw_lockout_kind kind, const char *who)
{
	struct table *tb = table_of(lo, kind);
	unsigned max = kind == KW_LOCKOUT_ADDRESS ? lo->max_address_failures : lo->max_failures;
	struct entry *e;
	time_t t = now();

	pthread_mutex_lock(&lo->lock);
	e = find_locked(tb, who);
	if (!e && (e = slot_locked(lo, tb, t))) {
		memset(e, 0, sizeof *e);
		strncpy(e->who, who, sizeof e->who - 1);
		e->window_start = t;
	}
	if (e) {
		e->last_seen = t;
		if (t - e->window_start > (time_t)lo->window) {
			e->window_start = t;
			e->failures = 0;
		}
		if (++e->failures >= max) {
			e->locked_until = t + lo->duration;
			e->failures = 0;
			e->window_start = t;
			kw_log(KW_LOG_WARN, "lockout: %s locked for %u s after %u failed authentications", who,
			       lo->duration, max);
		}
	}
	/* no slot: kw_lockout_check refuses who until one frees up */
	pthread_mutex_unlock(&lo->lock);
}

void kw_lockout_success(struct kw_lockout *lo, enum kw_lockout_kind kind, const char *who)
{
	struct entry *e;

	pthread_mutex_lock(&lo->lock);
	e = find_locked(table_of(lo, kind), who);
	if (e && e->locked_until <= now())
		e->failures = 0;
	pthread_mutex_unlock(&lo->lock);
}
