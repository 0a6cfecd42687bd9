/*
 * One hash table for keyward's in-memory indexes (the daemon's key cache
 * and per-address counts, serve's OCSP cache): chained and intrusive. The
 * caller embeds a struct kw_hnode in its entries, hashes its key with
 * kw_hash (seeded once per process, so a peer that chooses keys, such as
 * its address, cannot aim them at one bucket) and compares keys itself.
 * The table allocates only its bucket array, never per entry, and holds no
 * lock: the caller's lock covers it.
 */
#ifndef KW_COMMON_HTAB_H
#define KW_COMMON_HTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kw_hnode {
	struct kw_hnode *next;
	uint64_t hash;
};

struct kw_htab {
	struct kw_hnode **buckets;
	size_t mask; /* buckets - 1: a power of two */
	size_t n;    /* entries */
	size_t low;  /* no bucket below this holds an entry: where kw_htab_pop starts looking */
};

/* The entry of type that holds node p as member. */
#define kw_entry_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* At least min_buckets buckets (rounded up to a power of two; the table never grows): 0, or -1 out of memory. */
int kw_htab_init(struct kw_htab *t, size_t min_buckets);
/* Frees the bucket array; the entries are the caller's (take them out with kw_htab_pop first). */
void kw_htab_free(struct kw_htab *t);

uint64_t kw_hash(const void *key, size_t len);

/* The entry whose key eq says is key, or NULL. */
struct kw_hnode *kw_htab_find(const struct kw_htab *t, uint64_t hash,
			      bool (*eq)(const struct kw_hnode *n, const void *key), const void *key);
/* Adds n (whose key is not in the table yet). */
void kw_htab_add(struct kw_htab *t, struct kw_hnode *n, uint64_t hash);
/* Takes out and returns the entry for key, or NULL. */
struct kw_hnode *kw_htab_take(struct kw_htab *t, uint64_t hash, bool (*eq)(const struct kw_hnode *n, const void *key),
			      const void *key);
/* Takes out and returns some entry, or NULL when empty: for emptying the table. */
struct kw_hnode *kw_htab_pop(struct kw_htab *t);
/* fn on every entry (none added or taken out meanwhile); stops when fn returns false. */
void kw_htab_each(const struct kw_htab *t, bool (*fn)(struct kw_hnode *n, void *arg), void *arg);

#endif
