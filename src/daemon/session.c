/*
 * Session objects: the key pairs, certificates and data objects a client
 * makes with `session` set (PKCS#11 CKA_TOKEN false). They live here, in
 * memory, in a table of the connection that made them, and nowhere else:
 * never in the keystore, never in the audit log as a store write, never
 * seen by another connection. The table goes when the connection's last
 * reference drops (server.c), and with it every key, wiped by
 * EVP_PKEY_free.
 *
 * Ids have the top bit set (KW_SESSION_ID_BIT), which no store id has, and
 * are otherwise random: an id from another connection, or from one that
 * closed, names nothing here.
 *
 * Bounded: at most KW_SESSION_OBJECTS_MAX objects and KW_SESSION_BYTES_MAX
 * bytes (values plus a fixed charge per object) per connection. The loop
 * thread and a slow-pool worker (key generation) may use one table at
 * once: every access takes its lock.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/error.h"
#include "daemon/daemon.h"

/* what an object costs besides its value: the row, and a private key's memory */
#define OBJECT_CHARGE 1024u

struct entry {
	struct kw_object_row row;
	EVP_PKEY *pkey; /* the private half's key; NULL for any other object */
};

struct kw_session_objects {
	pthread_mutex_t lock;
	atomic_uint *count; /* the server's count of every connection's session objects */
	struct entry *items[KW_SESSION_OBJECTS_MAX]; /* ascending ids */
	size_t n;
	size_t bytes;
};

kw_rv kw_session_objects_new(atomic_uint *count, struct kw_session_objects **out)
{
	struct kw_session_objects *so = calloc(1, sizeof *so);

	*out = NULL;
	if (!so)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory for the connection's session objects");
	so->count = count;
	if (pthread_mutex_init(&so->lock, NULL) != 0) {
		free(so);
		return kw_error_set(KW_ERR_GENERAL, "cannot create a mutex for the session objects");
	}
	*out = so;
	return KW_OK;
}

static void entry_free(struct entry *e)
{
	if (!e)
		return;
	EVP_PKEY_free(e->pkey); /* wipes the private key */
	kw_object_row_cleanup(&e->row);
	free(e);
}

void kw_session_objects_free(struct kw_session_objects *so)
{
	if (!so)
		return;
	for (size_t i = 0; i < so->n; i++)
		entry_free(so->items[i]);
	atomic_fetch_sub(so->count, (unsigned)so->n);
	pthread_mutex_destroy(&so->lock);
	free(so);
}

bool kw_session_id(uint64_t id)
{
	return (id & KW_SESSION_ID_BIT) != 0;
}

static size_t charge(const struct entry *e)
{
	return OBJECT_CHARGE + e->row.value_len;
}

static struct entry *find_id_locked(struct kw_session_objects *so, uint64_t partition_id, uint64_t id)
{
	for (size_t i = 0; i < so->n; i++)
		if (so->items[i]->row.id == id && so->items[i]->row.partition_id == partition_id)
			return so->items[i];
	return NULL;
}

static bool is_key(enum kw_class cls)
{
	return cls == KW_CLASS_PRIVATE_KEY || cls == KW_CLASS_PUBLIC_KEY || cls == KW_CLASS_SECRET_KEY;
}

/* Whether an object of owner/name/cls would clash with one here: the store's rule (keys share one name). */
static struct entry *clash_locked(struct kw_session_objects *so, uint64_t partition_id, const char *owner,
				  const char *name, enum kw_class cls)
{
	for (size_t i = 0; i < so->n; i++) {
		const struct kw_object_row *r = &so->items[i]->row;

		if (r->partition_id == partition_id && !strcmp(r->owner, owner) && !strcmp(r->name, name) &&
		    (r->cls == cls || (is_key(r->cls) && is_key(cls))))
			return so->items[i];
	}
	return NULL;
}

/* A fresh id: the top bit and 63 random bits, unused here. */
static kw_rv new_id_locked(struct kw_session_objects *so, uint64_t partition_id, uint64_t *out)
{
	uint64_t v;

	do {
		if (RAND_bytes((unsigned char *)&v, sizeof v) != 1)
			return kw_error_set(KW_ERR_CRYPTO, "session object: no random bytes for an id");
		v |= KW_SESSION_ID_BIT;
	} while (find_id_locked(so, partition_id, v));
	*out = v;
	return KW_OK;
}

/* Whether `count` more objects of `bytes` fit; KW_ERR_STORE_FULL saying which limit otherwise. */
static kw_rv room_locked(struct kw_session_objects *so, size_t count, size_t bytes)
{
	if (so->n + count > KW_SESSION_OBJECTS_MAX)
		return kw_error_set(KW_ERR_STORE_FULL,
				    "this connection holds %zu session objects, at most %d: destroy some first", so->n,
				    KW_SESSION_OBJECTS_MAX);
	if (so->bytes + bytes > KW_SESSION_BYTES_MAX)
		return kw_error_set(KW_ERR_STORE_FULL,
				    "this connection's session objects hold %zu bytes; %zu more exceed the limit of %u",
				    so->bytes, bytes, KW_SESSION_BYTES_MAX);
	return KW_OK;
}

/* Inserts e, keeping the ids ascending (room checked). */
static void insert_locked(struct kw_session_objects *so, struct entry *e)
{
	size_t i = so->n;

	while (i > 0 && so->items[i - 1]->row.id > e->row.id) {
		so->items[i] = so->items[i - 1];
		i--;
	}
	so->items[i] = e;
	so->n++;
	so->bytes += charge(e);
	atomic_fetch_add(so->count, 1);
}

/* A copy of row (its value duplicated) into out. */
static kw_rv copy_row(const struct kw_object_row *row, struct kw_object_row *out)
{
	*out = *row;
	out->value = NULL;
	if (row->value_len) {
		if (!(out->value = malloc(row->value_len))) {
			out->value_len = 0;
			return kw_error_set(KW_ERR_NO_MEMORY, "out of memory copying a session object");
		}
		memcpy(out->value, row->value, row->value_len);
	}
	return KW_OK;
}

kw_rv kw_session_put_keypair(struct kw_session_objects *so, uint64_t partition_id, const struct kw_keygen *spec,
			     EVP_PKEY *pkey, struct kw_object_row *priv, struct kw_object_row *pub)
{
	struct entry *pr = calloc(1, sizeof *pr), *pu = calloc(1, sizeof *pu);
	kw_rv rv;

	memset(priv, 0, sizeof *priv);
	memset(pub, 0, sizeof *pub);
	if (!pr || !pu) {
		free(pr);
		free(pu);
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory for a session key pair");
	}
	rv = kw_keystore_keypair_rows(spec, pkey, &pr->row, &pu->row);
	if (rv) {
		free(pr);
		free(pu);
		return rv;
	}
	pthread_mutex_lock(&so->lock);
	if (clash_locked(so, partition_id, spec->owner, spec->name, KW_CLASS_PRIVATE_KEY))
		rv = kw_error_set(KW_ERR_EXISTS, "a session key named \"%s\" already exists under owner %s on this "
						 "connection",
				  spec->name, spec->owner);
	if (!rv)
		rv = room_locked(so, 2, charge(pr) + charge(pu));
	if (!rv)
		rv = new_id_locked(so, partition_id, &pr->row.id);
	if (!rv)
		do
			rv = new_id_locked(so, partition_id, &pu->row.id);
		while (!rv && pu->row.id == pr->row.id);
	if (!rv && !EVP_PKEY_up_ref(pkey))
		rv = kw_error_set(KW_ERR_CRYPTO, "session key pair: cannot keep the key");
	if (!rv) {
		pr->pkey = pkey;
		pr->row.partition_id = pu->row.partition_id = partition_id;
		pr->row.pair_id = pu->row.id;
		pu->row.pair_id = pr->row.id;
		insert_locked(so, pr);
		insert_locked(so, pu);
		rv = copy_row(&pr->row, priv);
		if (!rv)
			rv = copy_row(&pu->row, pub);
		pr = pu = NULL; /* the table's now */
	}
	pthread_mutex_unlock(&so->lock);
	entry_free(pr);
	entry_free(pu);
	if (rv) {
		kw_object_row_cleanup(priv);
		kw_object_row_cleanup(pub);
	}
	return rv;
}

kw_rv kw_session_put_object(struct kw_session_objects *so, uint64_t partition_id, const struct kw_objspec *spec,
			    struct kw_object_row *out)
{
	struct entry *e = calloc(1, sizeof *e);
	kw_rv rv;

	memset(out, 0, sizeof *out);
	if (!e)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory for a session object");
	rv = kw_keystore_object_row(spec, &e->row);
	if (rv) {
		free(e);
		return rv;
	}
	pthread_mutex_lock(&so->lock);
	if (clash_locked(so, partition_id, spec->owner, spec->name, spec->cls))
		rv = kw_error_set(KW_ERR_EXISTS, "a session %s named \"%s\" already exists under owner %s on this "
						 "connection",
				  spec->cls == KW_CLASS_CERTIFICATE ? "certificate" : "data object", spec->name,
				  spec->owner);
	if (!rv)
		rv = room_locked(so, 1, charge(e));
	if (!rv)
		rv = new_id_locked(so, partition_id, &e->row.id);
	if (!rv) {
		e->row.partition_id = partition_id;
		insert_locked(so, e);
		rv = copy_row(&e->row, out);
		e = NULL;
	}
	pthread_mutex_unlock(&so->lock);
	entry_free(e);
	return rv;
}

static kw_rv not_found(uint64_t id)
{
	return kw_error_set(KW_ERR_NOT_FOUND,
			    "no session object 0x%" PRIx64 " on this connection (session objects belong to the "
			    "connection that made them and end with it)",
			    id);
}

kw_rv kw_session_get(struct kw_session_objects *so, uint64_t partition_id, uint64_t id, struct kw_object_row *out)
{
	struct entry *e;
	kw_rv rv;

	memset(out, 0, sizeof *out);
	if (!so)
		return not_found(id);
	pthread_mutex_lock(&so->lock);
	e = find_id_locked(so, partition_id, id);
	rv = e ? copy_row(&e->row, out) : not_found(id);
	pthread_mutex_unlock(&so->lock);
	return rv;
}

kw_rv kw_session_find(struct kw_session_objects *so, uint64_t partition_id, const char *owner, const char *name,
		      enum kw_class cls, uint64_t *id)
{
	kw_rv rv = KW_ERR_NOT_FOUND;

	if (!so)
		return rv;
	pthread_mutex_lock(&so->lock);
	for (size_t i = 0; i < so->n && rv; i++) {
		const struct kw_object_row *r = &so->items[i]->row;

		if (r->partition_id == partition_id && r->cls == cls && !strcmp(r->owner, owner) &&
		    !strcmp(r->name, name)) {
			*id = r->id;
			rv = KW_OK;
		}
	}
	pthread_mutex_unlock(&so->lock);
	return rv;
}

kw_rv kw_session_key(struct kw_session_objects *so, uint64_t partition_id, uint64_t id, struct kw_cached_key *out)
{
	struct entry *e;
	kw_rv rv = KW_OK;

	memset(out, 0, sizeof *out);
	if (!so)
		return not_found(id);
	pthread_mutex_lock(&so->lock);
	e = find_id_locked(so, partition_id, id);
	if (!e)
		rv = not_found(id);
	else if (!e->pkey)
		rv = kw_error_set(KW_ERR_KEY_TYPE, "session object %s/%s (0x%" PRIx64 ") is not a private key",
				  e->row.owner, e->row.name, id);
	else if (!EVP_PKEY_up_ref(e->pkey))
		rv = kw_error_set(KW_ERR_CRYPTO, "session key %s/%s: cannot take a reference", e->row.owner,
				  e->row.name);
	if (!rv) {
		out->pkey = e->pkey;
		out->partition_id = partition_id;
		out->key_type = e->row.key_type;
		out->usages = e->row.usages;
		memcpy(out->owner, e->row.owner, sizeof out->owner);
		memcpy(out->name, e->row.name, sizeof out->name);
	}
	pthread_mutex_unlock(&so->lock);
	return rv;
}

kw_rv kw_session_list(struct kw_session_objects *so, uint64_t partition_id, const char *owner, const char *name,
		      uint64_t after_id, size_t limit, struct kw_object_row **rows, size_t *n, bool *more)
{
	struct kw_object_row *out = NULL;
	size_t got = 0;
	kw_rv rv = KW_OK;

	*rows = NULL;
	*n = 0;
	*more = false;
	if (!so || !limit)
		return KW_OK;
	pthread_mutex_lock(&so->lock);
	for (size_t i = 0; i < so->n && !rv; i++) {
		const struct kw_object_row *r = &so->items[i]->row;

		if (r->partition_id != partition_id || r->id <= after_id || (owner && strcmp(r->owner, owner)) ||
		    (name && strcmp(r->name, name)))
			continue;
		if (got == limit) {
			*more = true;
			break;
		}
		if (!out && !(out = calloc(so->n, sizeof *out))) {
			rv = kw_error_set(KW_ERR_NO_MEMORY, "out of memory listing session objects");
			break;
		}
		rv = copy_row(r, &out[got]);
		if (!rv)
			got++;
	}
	pthread_mutex_unlock(&so->lock);
	if (rv) {
		kw_object_rows_free(out, got);
		*more = false;
		return rv;
	}
	*rows = out;
	*n = got;
	return KW_OK;
}

kw_rv kw_session_delete(struct kw_session_objects *so, uint64_t partition_id, uint64_t id, const char *owner,
			const char *name, enum kw_class cls, unsigned *deleted)
{
	size_t kept = 0;

	*deleted = 0;
	if (!so)
		return KW_OK;
	pthread_mutex_lock(&so->lock);
	for (size_t i = 0; i < so->n; i++) {
		struct entry *e = so->items[i];
		const struct kw_object_row *r = &e->row;
		bool match = r->partition_id == partition_id &&
			     (id ? r->id == id
				 : !strcmp(r->owner, owner) && !strcmp(r->name, name) &&
					   (cls == KW_CLASS_ANY || r->cls == cls));

		if (match) {
			so->bytes -= charge(e);
			entry_free(e);
			(*deleted)++;
		} else {
			so->items[kept++] = e;
		}
	}
	atomic_fetch_sub(so->count, (unsigned)(so->n - kept));
	so->n = kept;
	pthread_mutex_unlock(&so->lock);
	return KW_OK;
}
