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

static size_t hash_serial(const char *s)
{
	size_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

void serve_etag(const unsigned char *der, size_t len, char *out, size_t size)
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(der, len, md);
	snprintf(out, size, "\"%02x%02x%02x%02x%02x%02x%02x%02x\"", md[0], md[1], md[2], md[3], md[4], md[5], md[6],
		 md[7]);
}

/* Puts an answer for serial in the cache; if generation is not ~0, only if nothing was invalidated since. */
void serve_cache_put(struct server *sv, const char *serial, int outcome, const struct ocsp_status *st,
		     const unsigned char *der, size_t len, time_t tu, time_t nu, unsigned long long generation)
{
	struct centry *e = calloc(1, sizeof *e), **slot;
	size_t b = hash_serial(serial) & (sv->n_buckets - 1);

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
		free(e->der);
		free(e);
		return;
	}
	for (slot = &sv->buckets[b]; *slot && strcmp((*slot)->serial, serial); slot = &(*slot)->next)
		;
	if (*slot) {
		e->next = (*slot)->next;
		free((*slot)->der);
		free(*slot);
	} else {
		sv->n_entries++;
	}
	*slot = e;
	atomic_store(&sv->cache_size, (long long)sv->n_entries);
	pthread_rwlock_unlock(&sv->cache_lock);
}

void serve_cache_drop(struct server *sv, const char *serial)
{
	size_t b = hash_serial(serial) & (sv->n_buckets - 1);
	struct centry **slot, *e;

	pthread_rwlock_wrlock(&sv->cache_lock);
	atomic_fetch_add(&sv->generation, 1);
	for (slot = &sv->buckets[b]; *slot && strcmp((*slot)->serial, serial); slot = &(*slot)->next)
		;
	if ((e = *slot)) {
		*slot = e->next;
		free(e->der);
		free(e);
		sv->n_entries--;
		atomic_store(&sv->cache_size, (long long)sv->n_entries);
	}
	pthread_rwlock_unlock(&sv->cache_lock);
}

/* A copy of serial's cached answer if it is still current: 0, or -1 if none. */
int serve_cache_get(struct server *sv, const char *serial, time_t now, struct centry *out)
{
	size_t b = hash_serial(serial) & (sv->n_buckets - 1);
	struct centry *e;
	int rc = -1;

	pthread_rwlock_rdlock(&sv->cache_lock);
	for (e = sv->buckets[b]; e && strcmp(e->serial, serial); e = e->next)
		;
	if (e && e->next_update > now && (out->der = malloc(e->len))) {
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
	size_t b = hash_serial(serial) & (sv->n_buckets - 1);
	struct centry *e;
	int rc = -1;

	pthread_rwlock_rdlock(&sv->cache_lock);
	for (e = sv->buckets[b]; e && strcmp(e->serial, serial); e = e->next)
		;
	if (e && e->has_status && e->next_update > now) {
		*st = e->status;
		rc = 0;
	}
	pthread_rwlock_unlock(&sv->cache_lock);
	return rc;
}

void serve_cache_free(struct server *sv)
{
	for (size_t i = 0; sv->buckets && i < sv->n_buckets; i++)
		while (sv->buckets[i]) {
			struct centry *e = sv->buckets[i];

			sv->buckets[i] = e->next;
			free(e->der);
			free(e);
		}
	free(sv->buckets);
}
