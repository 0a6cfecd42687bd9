/*
 * Lockout after repeated failed authentications, as on the seed's HSM:
 * `failures` failures within `window` seconds lock that credential (a client
 * certificate, or a partition's setup password) for `duration` seconds.
 * Kept in memory: a restart clears it, as it does on that HSM.
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
};

struct kw_lockout {
	unsigned max_failures, window, duration;
	pthread_mutex_t lock;
	struct entry *entries;
	size_t n;
};

kw_rv kw_lockout_new(unsigned failures, unsigned window, unsigned duration, struct kw_lockout **out)
{
	struct kw_lockout *lo = calloc(1, sizeof *lo);

	*out = NULL;
	if (!lo || !(lo->entries = calloc(MAX_TRACKED, sizeof *lo->entries))) {
		free(lo);
		return KW_ERR_NO_MEMORY;
	}
	lo->max_failures = failures ? failures : 1;
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
	free(lo->entries);
	free(lo);
}

static time_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static struct entry *find_locked(struct kw_lockout *lo, const char *who, bool create)
{
	time_t t = now();
	struct entry *free_slot = NULL;

	for (size_t i = 0; i < lo->n; i++) {
		struct entry *e = &lo->entries[i];
		if (strcmp(e->who, who) == 0)
			return e;
		/* an entry whose window and lock have both passed is reusable */
		if (!free_slot && e->locked_until <= t && t - e->window_start > (time_t)lo->window)
			free_slot = e;
	}
	if (!create)
		return NULL;
	if (!free_slot && lo->n < MAX_TRACKED)
		free_slot = &lo->entries[lo->n++];
	if (!free_slot)
		return NULL;
	memset(free_slot, 0, sizeof *free_slot);
	strncpy(free_slot->who, who, sizeof free_slot->who - 1);
	free_slot->window_start = t;
	return free_slot;
}

kw_rv kw_lockout_check(struct kw_lockout *lo, const char *who)
{
	kw_rv rv = KW_OK;
	struct entry *e;
	time_t t = now();

	pthread_mutex_lock(&lo->lock);
	e = find_locked(lo, who, false);
	if (e && e->locked_until > t)
		rv = kw_error_set(KW_ERR_LOCKED_OUT, "%s is locked for %ld more seconds after %u failed authentications",
				  who, (long)(e->locked_until - t), lo->max_failures);
	pthread_mutex_unlock(&lo->lock);
	return rv;
}

void kw_lockout_fail(struct kw_lockout *lo, const char *who)
{
	struct entry *e;
	time_t t = now();

	pthread_mutex_lock(&lo->lock);
	e = find_locked(lo, who, true);
	if (e) {
		if (t - e->window_start > (time_t)lo->window) {
			e->window_start = t;
			e->failures = 0;
		}
		if (++e->failures >= lo->max_failures) {
			e->locked_until = t + lo->duration;
			e->failures = 0;
			e->window_start = t;
			kw_log(KW_LOG_WARN, "lockout: %s locked for %u s after %u failed authentications", who,
			       lo->duration, lo->max_failures);
		}
	}
	pthread_mutex_unlock(&lo->lock);
}

void kw_lockout_success(struct kw_lockout *lo, const char *who)
{
	struct entry *e;

	pthread_mutex_lock(&lo->lock);
	e = find_locked(lo, who, false);
	if (e && e->locked_until <= now())
		e->failures = 0;
	pthread_mutex_unlock(&lo->lock);
}
