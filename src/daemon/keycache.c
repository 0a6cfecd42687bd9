/*
 * Unsealed private keys, kept after first use so a signature costs what
 * OpenSSL's own does. Each key is unsealed (and its AAD checked) once.
 * Nobody invalidates the cache by hand: every lookup first reads the
 * store's generation (kw_keystore_generation), which every deletion,
 * change, move or restore of objects and every lock of the store bumps
 * after it committed (on a shared PostgreSQL store, on whichever node),
 * and a value other than the one the cache was filled under drops the
 * cache (on a shared store, where that read is a round trip, the value the
 * request's credential check read a moment before stands in for it); a
 * key unsealed under one generation is not kept if the cache moved to
 * another meanwhile, and one kept just before a change is dropped by the
 * next lookup, which reads the moved generation. So a key deleted, moved
 * or changed anywhere is not used from here after the change committed. Readers share a rwlock; an entry's
 * EVP_PKEY is up-referenced for the duration of an operation, so a key
 * dropped mid-signature is freed only after that signature.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/htab.h"
#include "daemon/daemon.h"

#define BUCKETS 4096

struct node {
	struct kw_hnode h;
	uint64_t id;
	struct kw_cached_key key;
};

/* what a node is found by */
struct node_key {
	uint64_t partition_id, id;
};

struct kw_keycache {
	pthread_rwlock_t lock;
	/* the store's generation the entries were read under */
	uint64_t store_generation;
	struct kw_htab nodes;
};

static void clear_locked(struct kw_keycache *kc);

/*
 * Drops the cache if objects changed since it was filled; *gen: the store's
 * generation now, or as the request read it (known, when not NULL).
 */
static kw_rv sync_store(struct kw_keycache *kc, struct kw_keystore *ks, const uint64_t *known, uint64_t *gen)
{
	kw_rv rv = KW_OK;

	if (known)
		*gen = *known;
	else
		rv = kw_keystore_generation(ks, gen);
	if (rv)
		return rv;
	pthread_rwlock_rdlock(&kc->lock);
	bool same = *gen == kc->store_generation;
	pthread_rwlock_unlock(&kc->lock);
	if (same)
		return KW_OK;
	pthread_rwlock_wrlock(&kc->lock);
	if (*gen != kc->store_generation) {
		clear_locked(kc);
		kc->store_generation = *gen;
	}
	pthread_rwlock_unlock(&kc->lock);
	return KW_OK;
}

static uint64_t hash_of(uint64_t partition_id, uint64_t id)
{
	struct node_key k = {partition_id, id};

	return kw_hash(&k, sizeof k);
}

static bool node_is(const struct kw_hnode *h, const void *key)
{
	const struct node *n = kw_entry_of(h, struct node, h);
	const struct node_key *k = key;

	return n->id == k->id && n->key.partition_id == k->partition_id;
}

kw_rv kw_keycache_new(struct kw_keycache **out)
{
	struct kw_keycache *kc = calloc(1, sizeof *kc);

	*out = kc;
	if (!kc)
		return KW_ERR_NO_MEMORY;
	if (kw_htab_init(&kc->nodes, BUCKETS)) {
		free(kc);
		*out = NULL;
		return KW_ERR_NO_MEMORY;
	}
	pthread_rwlock_init(&kc->lock, NULL);
	return KW_OK;
}

void kw_keycache_free(struct kw_keycache *kc)
{
	if (!kc)
		return;
	kw_keycache_clear(kc);
	kw_htab_free(&kc->nodes);
	pthread_rwlock_destroy(&kc->lock);
	free(kc);
}

static bool lookup_locked(struct kw_keycache *kc, uint64_t partition_id, uint64_t id, struct kw_cached_key *out)
{
	struct node_key k = {partition_id, id};
	struct kw_hnode *h = kw_htab_find(&kc->nodes, hash_of(partition_id, id), node_is, &k);

	if (!h)
		return false;
	*out = kw_entry_of(h, struct node, h)->key;
	EVP_PKEY_up_ref(out->pkey);
	return true;
}

kw_rv kw_keycache_get(struct kw_keycache *kc, struct kw_keystore *ks, const uint64_t *request_generation,
		      uint64_t partition_id, uint64_t id, struct kw_cached_key *out)
{
	struct kw_object_row row = {0};
	struct node *node = NULL;
	EVP_PKEY *pkey = NULL;
	uint64_t generation;
	bool hit;
	kw_rv rv;

	rv = sync_store(kc, ks, request_generation, &generation);
	if (rv)
		return rv;
	pthread_rwlock_rdlock(&kc->lock);
	hit = lookup_locked(kc, partition_id, id, out);
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

	/*
	 * Kept under the generation read before the load. A change committed
	 * meanwhile moves the store's generation, so the next lookup, which
	 * reads it, drops the entry before anyone uses it: the store is not
	 * asked again here.
	 */
	pthread_rwlock_wrlock(&kc->lock);
	if (kc->store_generation != generation) {
		/* another lookup saw objects change meanwhile: use the key this once, keep nothing */
		*out = node->key;
		free(node);
	} else if (lookup_locked(kc, partition_id, id, out)) {
		/* another thread unsealed it first */
		EVP_PKEY_free(node->key.pkey);
		free(node);
	} else {
		kw_htab_add(&kc->nodes, &node->h, hash_of(partition_id, id));
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
	for (struct kw_hnode *h; (h = kw_htab_pop(&kc->nodes));) {
		struct node *n = kw_entry_of(h, struct node, h);

		EVP_PKEY_free(n->key.pkey);
		free(n);
	}
}
