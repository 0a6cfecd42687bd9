/*
 * Opening and closing a keystore: the store URL, the backend connection,
 * the unlock method the store records, and the meta helpers with which the
 * store modules read and write their values. The schema and its forward
 * migrations are the backend's (sqlite.c, pg.c). internal.h maps the modules.
 */
#include "keystore/keystore.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "keystore/backend.h"
#include "keystore/internal.h"
#include "keystore/master.h"

/* ---- meta values ---- */

kw_rv kw_meta_get_text(struct kw_backend *b, const char *key, char *buf, size_t cap)
{
	unsigned char *val = NULL;
	size_t len = 0;
	kw_rv rv = b->ops->meta_get(b, key, &val, &len);

	if (rv)
		return rv;
	snprintf(buf, cap, "%.*s", (int)(len < cap ? len : cap - 1), (const char *)val);
	free(val);
	return KW_OK;
}

kw_rv kw_meta_get_u64(struct kw_backend *b, const char *key, uint64_t *v)
{
	char buf[32], *end;
	kw_rv rv = kw_meta_get_text(b, key, buf, sizeof buf);

	if (rv)
		return rv;
	*v = strtoull(buf, &end, 10);
	if (end == buf || *end)
		return kw_error_set(KW_ERR_STORE, "store: meta %s is not a number", key);
	return KW_OK;
}

kw_rv kw_meta_put_u64(struct kw_backend *b, const char *key, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof buf, "%" PRIu64, v);
	return b->ops->meta_put(b, key, buf, strlen(buf));
}

kw_rv kw_meta_put_text(struct kw_backend *b, const char *key, const char *v)
{
	return b->ops->meta_put(b, key, v, strlen(v));
}

/* ---- opening ---- */

static kw_rv load_method_locked(struct kw_keystore *ks)
{
	char m[32];
	uint64_t t = 0, n = 0;
	kw_rv rv = kw_meta_get_text(ks->b, "mk.method", m, sizeof m);

	ks->method[0] = '\0';
	if (rv == KW_ERR_NOT_FOUND)
		return KW_OK;
	if (rv)
		return rv;
	if (strcmp(m, "shamir") == 0) {
		rv = kw_meta_get_u64(ks->b, "mk.threshold", &t);
		if (!rv)
			rv = kw_meta_get_u64(ks->b, "mk.shares", &n);
		if (rv == KW_ERR_NOT_FOUND)
			return kw_error_set(KW_ERR_STORE, "store: Shamir master key without threshold/shares in meta");
		if (rv)
			return rv;
		snprintf(ks->method, sizeof ks->method, "shamir %" PRIu64 "-of-%" PRIu64, t, n);
	} else {
		snprintf(ks->method, sizeof ks->method, "%s", m);
	}
	return KW_OK;
}

kw_rv kw_keystore_open(const char *url, uint64_t max_bytes, struct kw_keystore **out)
{
	struct kw_keystore *ks;
	const char *path = url;
	bool pg = false;
	kw_rv rv;

	if (!url || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no store URL given");
	*out = NULL;
	if (strncmp(url, "sqlite:", 7) == 0) {
		path = url + 7;
		if (strncmp(path, "//", 2) == 0)
			path += 2;
	} else if (kw_keystore_url_is_postgres(url)) {
		pg = true;
	} else if (strncmp(url, "postgres", 8) == 0) {
		return kw_error_set(KW_ERR_CONFIG,
				    "store \"%s\": a PostgreSQL store is postgresql://[USER@]HOST[:PORT]/DB", url);
	}
	if (!*path)
		return kw_error_set(KW_ERR_CONFIG, "store: empty path in store URL \"%s\"", url);
	ks = calloc(1, sizeof *ks);
	if (!ks)
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
	if (pthread_mutex_init(&ks->mu, NULL) != 0) {
		free(ks);
		return kw_error_set(KW_ERR_NO_MEMORY, "store: cannot create a mutex");
	}
	rv = pg ? kw_pg_open(url, max_bytes, &ks->b) : kw_sqlite_open(path, max_bytes, &ks->b);
	if (!rv)
		rv = load_method_locked(ks);
	if (rv) {
		kw_keystore_free(ks);
		return rv;
	}
	*out = ks;
	return KW_OK;
}

bool kw_keystore_url_is_postgres(const char *url)
{
	return url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0);
}

bool kw_keystore_shared(struct kw_keystore *ks)
{
	return ks && ks->b->ops->generation != NULL;
}

kw_rv kw_keystore_generation(struct kw_keystore *ks, uint64_t *gen)
{
	uint64_t shared = 0;
	kw_rv rv = KW_OK;

	/* this process's changes, without the store's lock: a key cache asks before every use */
	*gen = atomic_load(&ks->changes);
	if (!ks->b->ops->generation)
		return KW_OK;
	lock(ks);
	rv = ks->b->ops->generation(ks->b, &shared);
	unlock(ks);
	*gen += shared; /* both only grow: the sum moves when either does */
	return rv;
}

void kw_wipe_mk_locked(struct kw_keystore *ks)
{
	if (ks->mk) {
		OPENSSL_secure_clear_free(ks->mk, KW_MASTER_KEY_LEN);
		ks->mk = NULL;
	}
}

void kw_keystore_free(struct kw_keystore *ks)
{
	if (!ks)
		return;
	kw_wipe_mk_locked(ks);
	if (ks->b)
		ks->b->ops->close(ks->b);
	pthread_mutex_destroy(&ks->mu);
	free(ks);
}
