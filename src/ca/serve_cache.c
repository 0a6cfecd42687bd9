/*
 * keyward-ca serve: the RFC 5019 cache, one signed answer per serial in a
 * hash table under a rwlock. An invalidation bumps a generation counter, so
 * an answer signed from a state read before it is not put in after it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "ca/serve_internal.h"
#include "common/htab.h"

static uint64_t hash_of(const char *serial)
{
	return kw_hash(serial, strlen(serial));
}

static bool entry_is(const struct kw_hnode *h, const void *serial)
{
	return strcmp(kw_entry_of(h, struct centry, h)->serial, serial) == 0;
}

static void entry_free(struct centry *e)
{
	free(e->der);
	free(e);
}

void serve_etag(const unsigned char *der, size_t len, char *out, size_t size)
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(der, len, md);
	snprintf(out, size, "\"%02x%02x%02x%02x%02x%02x%02x%02x\"", md[0], md[1], md[2], md[3], md[4], md[5], md[6],
		 md[7]);
}

int serve_cache_init(struct server *sv)
{
	return kw_htab_init(&sv->cache, 1 << 16) ? ca_error("out of memory") : 0;
}

/* Puts an answer for serial in the cache; if generation is not ~0, only if nothing was invalidated since. */
void serve_cache_put(struct server *sv, const char *serial, int outcome, const struct ocsp_status *st,
		     const unsigned char *der, size_t len, time_t tu, time_t nu, unsigned long long generation)
{
	struct centry *e = calloc(1, sizeof *e);
	uint64_t hash = hash_of(serial);
	struct kw_hnode *old;

	if (!e || !(e->der = malloc(len))) {
		free(e);
		return;
	}
	snprintf(e->serial, sizeof e->serial, "%s", serial);
	memcpy(e->der, der, len);
	e->len = len;
	e->this_update = tu;
	e->next_update = nu;
	e->outcome = outcome;
	if (st) {
		e->status = *st;
		e->has_status = true;
	}
	serve_etag(der, len, e->etag, sizeof e->etag);
	pthread_rwlock_wrlock(&sv->cache_lock);
	if (generation != ~0ULL && generation != atomic_load(&sv->generation)) {
		pthread_rwlock_unlock(&sv->cache_lock);
		entry_free(e);
		return;
	}
	old = kw_htab_take(&sv->cache, hash, entry_is, serial);
	kw_htab_add(&sv->cache, &e->h, hash);
	atomic_store(&sv->cache_size, (long long)sv->cache.n);
	pthread_rwlock_unlock(&sv->cache_lock);
	if (old)
		entry_free(kw_entry_of(old, struct centry, h));
}

void serve_cache_drop(struct server *sv, const char *serial)
{
	struct kw_hnode *old;

	pthread_rwlock_wrlock(&sv->cache_lock);
	atomic_fetch_add(&sv->generation, 1);
	old = kw_htab_take(&sv->cache, hash_of(serial), entry_is, serial);
	atomic_store(&sv->cache_size, (long long)sv->cache.n);
	pthread_rwlock_unlock(&sv->cache_lock);
	if (old)
		entry_free(kw_entry_of(old, struct centry, h));
}

/* serial's entry if it is still current at now; the caller holds cache_lock. */
static const struct centry *current_locked(struct server *sv, const char *serial, time_t now)
{
	struct kw_hnode *h = kw_htab_find(&sv->cache, hash_of(serial), entry_is, serial);
	const struct centry *e = h ? kw_entry_of(h, struct centry, h) : NULL;

	return e && e->next_update > now ? e : NULL;
}

/* A copy of serial's cached answer if it is still current: 0, or -1 if none. */
int serve_cache_get(struct server *sv, const char *serial, time_t now, struct centry *out)
{
	const struct centry *e;
	int rc = -1;

	pthread_rwlock_rdlock(&sv->cache_lock);
	if ((e = current_locked(sv, serial, now)) && (out->der = malloc(e->len))) {
		memcpy(out->der, e->der, e->len);
		out->len = e->len;
		out->this_update = e->this_update;
		out->next_update = e->next_update;
		out->outcome = e->outcome;
		memcpy(out->etag, e->etag, sizeof out->etag);
		rc = 0;
	}
	pthread_rwlock_unlock(&sv->cache_lock);
	return rc;
}

int serve_cache_status(struct server *sv, const char *serial, time_t now, struct ocsp_status *st)
{
	const struct centry *e;
	int rc = -1;

	pthread_rwlock_rdlock(&sv->cache_lock);
	if ((e = current_locked(sv, serial, now)) && e->has_status) {
		*st = e->status;
		rc = 0;
	}
	pthread_rwlock_unlock(&sv->cache_lock);
	return rc;
}

struct stale {
	struct server *sv;
	time_t now, signer_since;
	int (*add)(void *arg, const char *serial);
	void *arg;
};

static bool stale_one(struct kw_hnode *h, void *arg)
{
	struct stale *s = arg;
	const struct centry *e = kw_entry_of(h, struct centry, h);
	bool fresh =
		s->now - e->this_update < (time_t)s->sv->sc.validity_seconds / 2 && e->this_update >= s->signer_since;

	return fresh || s->add(s->arg, e->serial) == 0;
}

void serve_cache_stale(struct server *sv, time_t now, int (*add)(void *arg, const char *serial), void *arg)
{
	struct stale s = {sv, now, (time_t)atomic_load(&sv->resign_before), add, arg};

	pthread_rwlock_rdlock(&sv->cache_lock);
	kw_htab_each(&sv->cache, stale_one, &s);
	pthread_rwlock_unlock(&sv->cache_lock);
}

void serve_cache_free(struct server *sv)
{
	for (struct kw_hnode *h; (h = kw_htab_pop(&sv->cache));)
		entry_free(kw_entry_of(h, struct centry, h));
	kw_htab_free(&sv->cache);
}
