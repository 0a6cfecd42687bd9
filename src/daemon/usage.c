/*
 * Key-use audit. Writing one audit record per signature would put an
 * fsync on the signing path; instead every use is counted here, per key,
 * event and client, and the counts are written as audit records once a
 * second ("key.sign dev: S-1-5-21-1-2-3/myDemoCA (0x1f..): 1234 operations
 * by CN=..."). A crash loses at most that last second of counts; every
 * administrative event is written at once by its handler.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/daemon.h"

#define SLOTS 4096

struct count {
	bool used;
	uint64_t id;
	char event[24];
	char partition[KW_PARTITION_NAME_MAX + 1];
	char actor[160];
	char owner[KW_OWNER_MAX + 1];
	char name[KW_NAME_MAX + 1];
	uint64_t n;
};

struct kw_usage {
	pthread_mutex_t lock;
	struct count *slots; /* open addressing */
	unsigned used;
	uint64_t dropped;    /* uses that found the table full */
};

kw_rv kw_usage_new(struct kw_usage **out)
{
	struct kw_usage *u = calloc(1, sizeof *u);

	*out = NULL;
	if (!u || !(u->slots = calloc(SLOTS, sizeof *u->slots))) {
		free(u);
		return KW_ERR_NO_MEMORY;
	}
	pthread_mutex_init(&u->lock, NULL);
	*out = u;
	return KW_OK;
}

void kw_usage_free(struct kw_usage *u)
{
	if (!u)
		return;
	pthread_mutex_destroy(&u->lock);
	free(u->slots);
	free(u);
}

void kw_usage_count(struct kw_usage *u, const char *partition, const char *actor, const char *event,
		    const struct kw_cached_key *key, uint64_t id)
{
	unsigned i = (unsigned)((id ^ (uint64_t)(uintptr_t)event) * 0x9E3779B97F4A7C15ull >> 52) % SLOTS;

	pthread_mutex_lock(&u->lock);
	for (unsigned probe = 0; probe < SLOTS; probe++, i = (i + 1) % SLOTS) {
		struct count *c = &u->slots[i];
		if (c->used && c->id == id && strcmp(c->event, event) == 0 && strcmp(c->actor, actor) == 0) {
			c->n++;
			goto done;
		}
		if (!c->used) {
			if (u->used >= SLOTS * 3 / 4)
				break;
			c->used = true;
			c->id = id;
			c->n = 1;
			snprintf(c->event, sizeof c->event, "%s", event);
			snprintf(c->partition, sizeof c->partition, "%s", partition);
			snprintf(c->actor, sizeof c->actor, "%s", actor);
			snprintf(c->owner, sizeof c->owner, "%s", key->owner);
			snprintf(c->name, sizeof c->name, "%s", key->name);
			u->used++;
			goto done;
		}
	}
	u->dropped++;
done:
	pthread_mutex_unlock(&u->lock);
}

void kw_usage_flush(struct kw_usage *u, struct kw_keystore *ks)
{
	struct count *batch;
	uint64_t dropped;
	char detail[512];

	/* swap the table out, so counting never waits for the disk */
	batch = calloc(SLOTS, sizeof *batch);
	if (!batch)
		return;
	pthread_mutex_lock(&u->lock);
	if (!u->used && !u->dropped) {
		pthread_mutex_unlock(&u->lock);
		free(batch);
		return;
	}
	struct count *full = u->slots;
	u->slots = batch;
	u->used = 0;
	dropped = u->dropped;
	u->dropped = 0;
	pthread_mutex_unlock(&u->lock);

	for (unsigned i = 0; i < SLOTS; i++) {
		struct count *c = &full[i];
		if (!c->used)
			continue;
		snprintf(detail, sizeof detail, "%s/%s (0x%" PRIx64 "): %" PRIu64 " operation%s", c->owner, c->name,
			 c->id, c->n, c->n == 1 ? "" : "s");
		if (kw_keystore_audit(ks, c->partition, c->actor, c->event, detail))
			kw_log(KW_LOG_ERROR, "audit: cannot record key use: %s", kw_last_error());
	}
	if (dropped) {
		snprintf(detail, sizeof detail, "%" PRIu64 " key uses over more keys than one interval tracks", dropped);
		kw_keystore_audit(ks, "", "keywardd", "key.use", detail);
	}
	free(full);
}
