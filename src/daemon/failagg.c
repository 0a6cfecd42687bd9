/*
 * Failures of unauthenticated peers (a wrong setup password, an unknown
 * client certificate) are audited, but a peer can fail thousands of times
 * a second, and one record per failure would let it fill the store. So
 * failures go through this aggregator, keyed by (source address, event):
 * the first failure of a source's interval is recorded at once with its
 * detail, the rest are only counted, and when the interval is over one
 * record says "N more EVENT failures from SOURCE in the last T s". A
 * source that keeps failing gets at most one record per interval.
 *
 * The table is bounded: when it is full, failures of new sources share one
 * "other sources" entry per event, so memory and records stay bounded
 * however many addresses a flood comes from.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "daemon/daemon.h"

#define SOURCE_MAX 64
#define EVENT_MAX 24

struct fail_slot {
	bool used;
	char source[SOURCE_MAX];
	char event[EVENT_MAX];
	time_t start;   /* of the current interval */
	uint64_t count; /* failures in it after the first one */
};

struct kw_failagg {
	pthread_mutex_t lock;
	unsigned interval;
	unsigned n_slots;
	struct fail_slot *slots;
	struct fail_slot other[4]; /* "other sources", one per event, when the table is full */
};

kw_rv kw_failagg_new(unsigned interval, unsigned slots, struct kw_failagg **out)
{
	struct kw_failagg *f;

	*out = NULL;
	if (!interval || !slots)
		return kw_error_set(KW_ERR_ARGUMENTS, "failure aggregator: interval and table size must be positive");
	f = calloc(1, sizeof *f);
	if (!f || !(f->slots = calloc(slots, sizeof *f->slots))) {
		free(f);
		return kw_error_set(KW_ERR_NO_MEMORY, "failure aggregator: out of memory");
	}
	pthread_mutex_init(&f->lock, NULL);
	f->interval = interval;
	f->n_slots = slots;
	*out = f;
	return KW_OK;
}

void kw_failagg_free(struct kw_failagg *f)
{
	if (!f)
		return;
	pthread_mutex_destroy(&f->lock);
	free(f->slots);
	free(f);
}

static bool slot_is(const struct fail_slot *sl, const char *source, const char *event)
{
	return sl->used && strncmp(sl->source, source, SOURCE_MAX - 1) == 0 &&
	       strncmp(sl->event, event, EVENT_MAX - 1) == 0;
}

static void slot_take(struct fail_slot *sl, const char *source, const char *event, time_t now)
{
	sl->used = true;
	snprintf(sl->source, sizeof sl->source, "%s", source);
	snprintf(sl->event, sizeof sl->event, "%s", event);
	sl->start = now;
	sl->count = 0;
}

bool kw_failagg_note(struct kw_failagg *f, const char *source, const char *event, time_t now)
{
	struct fail_slot *free_slot = NULL, *sl = NULL;
	unsigned h = 2166136261u;
	bool first = false;

	for (const char *p = source; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (const char *p = event; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	pthread_mutex_lock(&f->lock);
	/* the probe runs over the whole table, never stopping at a gap: a flush frees slots anywhere */
	for (unsigned probe = 0, i = h % f->n_slots; probe < f->n_slots; probe++, i = (i + 1) % f->n_slots) {
		if (slot_is(&f->slots[i], source, event)) {
			sl = &f->slots[i];
			break;
		}
		if (!f->slots[i].used && !free_slot)
			free_slot = &f->slots[i];
	}
	if (!sl && free_slot) {
		slot_take(free_slot, source, event, now);
		first = true;
	} else if (!sl) {
		/* the table is full: one shared entry per event */
		for (unsigned i = 0; i < sizeof f->other / sizeof f->other[0] && !sl; i++) {
			if (slot_is(&f->other[i], KW_FAILAGG_OTHER, event))
				sl = &f->other[i];
			else if (!f->other[i].used) {
				sl = &f->other[i];
				slot_take(sl, KW_FAILAGG_OTHER, event, now);
				first = true;
			}
		}
		if (!sl) { /* more events than shared entries: count under the last one */
			sl = &f->other[sizeof f->other / sizeof f->other[0] - 1];
		}
	}
	if (!first)
		sl->count++;
	pthread_mutex_unlock(&f->lock);
	return first;
}

/* Emits a slot whose interval is over (or every slot when all); frees it when it was quiet. */
static void roll(struct kw_failagg *f, struct fail_slot *sl, time_t now, bool all, struct fail_slot *out,
		 unsigned *n_out)
{
	if (!sl->used || (!all && now - sl->start < (time_t)f->interval))
		return;
	if (sl->count) {
		out[*n_out] = *sl;
		out[*n_out].start = now - sl->start; /* the length of the interval */
		(*n_out)++;
		/* still failing: the next interval counts from now, without a fresh first record */
		sl->start = now;
		sl->count = 0;
		if (!all)
			return;
	}
	memset(sl, 0, sizeof *sl);
}

void kw_failagg_flush(struct kw_failagg *f, time_t now, bool all, kw_failagg_emit_fn emit, void *ctx)
{
	unsigned n_other = sizeof f->other / sizeof f->other[0];
	struct fail_slot *due = calloc(f->n_slots + n_other, sizeof *due);
	unsigned n = 0;

	if (!due)
		return; /* the counts wait for the next flush */
	pthread_mutex_lock(&f->lock);
	for (unsigned i = 0; i < f->n_slots; i++)
		roll(f, &f->slots[i], now, all, due, &n);
	for (unsigned i = 0; i < n_other; i++)
		roll(f, &f->other[i], now, all, due, &n);
	pthread_mutex_unlock(&f->lock);
	/* records are written outside the lock, so counting never waits for the disk */
	for (unsigned i = 0; i < n; i++)
		emit(ctx, due[i].source, due[i].event, due[i].count, (unsigned)due[i].start);
	free(due);
}
