/*
 * Unsealed private keys, kept after first use so a signature costs what
 * OpenSSL's own does. Each key is unsealed (and its AAD checked) once; the
 * cache is dropped whole when the HSM is locked or a key is deleted or
 * changed (a generation counter keeps a key unsealed just before that from
 * being cached after it). On a store shared with other nodes (PostgreSQL)
 * those changes may happen on another node: every lookup first compares the
 * store's generation of objects, as its request read it (handlers.c reads
 * it once per request, for the credential check and for this), with the one
 * the cache was filled under, and a different value drops the cache, so a
 * key deleted, moved or changed anywhere is not used from here after the
 * change committed. Readers share a rwlock; an entry's
 * EVP_PKEY is up-referenced for the duration of an operation, so a key
 * dropped mid-signature is freed only after that signature.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "daemon/daemon.h"

#define BUCKETS 4096

struct node {
	uint64_t id;
	struct kw_cached_key key;
	struct node *next;
};

struct kw_keycache {
	pthread_rwlock_t lock;
	/* bumped by every clear, so a key unsealed before a delete is not cached after it */
	uint64_t generation;
	/* the store's generation of objects the entries were read under (shared stores) */
	uint64_t store_generation;
	struct node *buckets[BUCKETS];
};

static void clear_locked(struct kw_keycache *kc);

/* Drops the cache when another node changed objects since it was filled (gen: as this request read it). */
static void sync_store(struct kw_keycache *kc, struct kw_keystore *ks, uint64_t gen)
{
	if (!kw_keystore_shared(ks))
		return;
	pthread_rwlock_rdlock(&kc->lock);
	bool same = gen == kc->store_generation;
	pthread_rwlock_unlock(&kc->lock);
	if (same)
		return;
	pthread_rwlock_wrlock(&kc->lock);
	if (gen != kc->store_generation) {
		clear_locked(kc);
		kc->store_generation = gen;
	}
	pthread_rwlock_unlock(&kc->lock);
}

static unsigned bucket_of(uint64_t id)
{
	return (unsigned)((id * 0x9E3779B97F4A7C15ull) >> 52) % BUCKETS;
}

kw_rv kw_keycache_new(struct kw_keycache **out)
{
	struct kw_keycache *kc = calloc(1, sizeof *kc);

	*out = kc;
	if (!kc)
		return KW_ERR_NO_MEMORY;
	pthread_rwlock_init(&kc->lock, NULL);
	return KW_OK;
}

void kw_keycache_free(struct kw_keycache *kc)
{
	if (!kc)
		return;
	kw_keycache_clear(kc);
	pthread_rwlock_destroy(&kc->lock);
	free(kc);
}

static bool lookup_locked(struct kw_keycache *kc, uint64_t partition_id, uint64_t id, struct kw_cached_key *out)
{
	for (struct node *n = kc->buckets[bucket_of(id)]; n; n = n->next) {
		if (n->id == id && n->key.partition_id == partition_id) {
			*out = n->key;
			EVP_PKEY_up_ref(out->pkey);
			return true;
		}
	}
	return false;
}

kw_rv kw_keycache_get(struct kw_keycache *kc, struct kw_keystore *ks, uint64_t store_generation,
		      uint64_t partition_id, uint64_t id, struct kw_cached_key *out)
{
	struct kw_object_row row = {0};
	struct node *node = NULL;
	EVP_PKEY *pkey = NULL;
	uint64_t generation;
	bool hit;
	kw_rv rv;

	sync_store(kc, ks, store_generation);
	pthread_rwlock_rdlock(&kc->lock);
	hit = lookup_locked(kc, partition_id, id, out);
	generation = kc->generation;
	pthread_rwlock_unlock(&kc->lock);
	if (hit)
		return KW_OK;

	rv = kw_keystore_get(ks, partition_id, id, &row);
	if (rv)
		return rv;
	if (row.cls != KW_CLASS_PRIVATE_KEY) {
		rv = kw_error_set(KW_ERR_KEY_TYPE, "object %s/%s (0x%llx) is not a private key", row.owner, row.name,
				  (unsigned long long)id);
		goto out;
	}
	rv = kw_keystore_load_private(ks, partition_id, id, &pkey);
	if (rv)
		goto out;
	node = calloc(1, sizeof *node);
	if (!node) {
		rv = KW_ERR_NO_MEMORY;
		goto out;
	}
	node->id = id;
	node->key.pkey = pkey;
	node->key.partition_id = partition_id;
	node->key.key_type = row.key_type;
	node->key.usages = row.usages;
	memcpy(node->key.owner, row.owner, sizeof row.owner);
	memcpy(node->key.name, row.name, sizeof row.name);
	pkey = NULL;

	pthread_rwlock_wrlock(&kc->lock);
	if (kc->generation != generation) {
		/* the cache was cleared meanwhile: use the key this once, keep nothing */
		*out = node->key;
		free(node);
	} else if (lookup_locked(kc, partition_id, id, out)) {
		/* another thread unsealed it first */
		EVP_PKEY_free(node->key.pkey);
		free(node);
	} else {
		unsigned b = bucket_of(id);
		node->next = kc->buckets[b];
		kc->buckets[b] = node;
		*out = node->key;
		EVP_PKEY_up_ref(out->pkey);
	}
	pthread_rwlock_unlock(&kc->lock);
out:
	EVP_PKEY_free(pkey);
	kw_object_row_cleanup(&row);
	return rv;
}

void kw_cached_key_release(struct kw_cached_key *key)
{
	EVP_PKEY_free(key->pkey);
	key->pkey = NULL;
}

void kw_keycache_clear(struct kw_keycache *kc)
{
	pthread_rwlock_wrlock(&kc->lock);
	clear_locked(kc);
	pthread_rwlock_unlock(&kc->lock);
}

static void clear_locked(struct kw_keycache *kc)
{
	kc->generation++;
	for (unsigned b = 0; b < BUCKETS; b++) {
		while (kc->buckets[b]) {
			struct node *n = kc->buckets[b];
			kc->buckets[b] = n->next;
			EVP_PKEY_free(n->key.pkey);
			free(n);
		}
	}
}
