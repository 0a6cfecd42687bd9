/*
 * The hash table of htab.h. The hash is 64-bit FNV-1a started from a
 * random per-process seed: cheap for the short keys it sees (a serial, an
 * address, an id) and, unseeded, easy to aim at one bucket.
 */
#include <pthread.h>
#include <stdlib.h>

#include <openssl/rand.h>

#include "common/htab.h"

static uint64_t seed = 1469598103934665603ull; /* FNV's offset basis until seeded */
static pthread_once_t seeded = PTHREAD_ONCE_INIT;

static void seed_once(void)
{
	uint64_t s;

	/* without randomness the table still works, only predictably */
	if (RAND_bytes((unsigned char *)&s, sizeof s) == 1)
		seed ^= s;
}

uint64_t kw_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h;

	pthread_once(&seeded, seed_once);
	h = seed;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h ^ (h >> 29); /* the low bits pick the bucket: fold the high ones in */
}

int kw_htab_init(struct kw_htab *t, size_t min_buckets)
{
	size_t n = 1;

	while (n < min_buckets && n < ((size_t)1 << 30))
		n <<= 1;
	t->buckets = calloc(n, sizeof *t->buckets);
	t->mask = n - 1;
	t->n = 0;
	t->low = 0;
	return t->buckets ? 0 : -1;
}

void kw_htab_free(struct kw_htab *t)
{
	free(t->buckets);
	t->buckets = NULL;
	t->n = 0;
	t->low = 0;
}

static struct kw_hnode **slot_of(const struct kw_htab *t, uint64_t hash,
				 bool (*eq)(const struct kw_hnode *n, const void *key), const void *key)
{
	struct kw_hnode **p = &t->buckets[hash & t->mask];

	while (*p && ((*p)->hash != hash || !eq(*p, key)))
		p = &(*p)->next;
	return p;
}

struct kw_hnode *kw_htab_find(const struct kw_htab *t, uint64_t hash,
			      bool (*eq)(const struct kw_hnode *n, const void *key), const void *key)
{
	return *slot_of(t, hash, eq, key);
}

void kw_htab_add(struct kw_htab *t, struct kw_hnode *n, uint64_t hash)
{
	size_t i = hash & t->mask;
	struct kw_hnode **b = &t->buckets[i];

	if (i < t->low)
		t->low = i;
	n->hash = hash;
	n->next = *b;
	*b = n;
	t->n++;
}

struct kw_hnode *kw_htab_take(struct kw_htab *t, uint64_t hash, bool (*eq)(const struct kw_hnode *n, const void *key),
			      const void *key)
{
	struct kw_hnode **p = slot_of(t, hash, eq, key), *n = *p;

	if (n) {
		*p = n->next;
		t->n--;
	}
	return n;
}

/* From t->low on, not from bucket 0: emptying a table of N entries costs N + buckets steps, not N * buckets / 2. */
struct kw_hnode *kw_htab_pop(struct kw_htab *t)
{
	for (size_t i = t->low; t->buckets && t->n && i <= t->mask; i++) {
		struct kw_hnode *n = t->buckets[i];

		if (n) {
			t->buckets[i] = n->next;
			t->n--;
			t->low = i;
			return n;
		}
	}
	return NULL;
}

void kw_htab_each(const struct kw_htab *t, bool (*fn)(struct kw_hnode *n, void *arg), void *arg)
{
	for (size_t i = 0; t->buckets && i <= t->mask; i++)
		for (struct kw_hnode *n = t->buckets[i], *next; n; n = next) {
			next = n->next;
			if (!fn(n, arg))
				return;
		}
}
