/* The HSM backup file: encoder and checking decoder (layout in backup.h). */
#include "keystore/backup.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "common/buf.h"
#include "common/error.h"

#define HEADER_LEN (KW_BACKUP_MAGIC_LEN + 4 + 8)
#define BYTES_MAX (1024u * 1024u) /* any one field */

enum {
	FLAG_SENSITIVE = 1,
	FLAG_EXTRACTABLE = 2,
	FLAG_MODIFIABLE = 4,
	FLAG_NEVER_EXTRACTABLE = 8,
	FLAG_ALWAYS_SENSITIVE = 16,
};

void kw_backup_hex(const unsigned char *bytes, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * n] = '\0';
}

struct kw_backup *kw_backup_new(const char *scope)
{
	struct kw_backup *b = calloc(1, sizeof *b);

	if (!b)
		return NULL;
	b->format = KW_BACKUP_FORMAT;
	snprintf(b->scope, sizeof b->scope, "%s", scope ? scope : "");
	return b;
}

void kw_backup_free(struct kw_backup *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n_objects; i++) {
		kw_object_row_cleanup(&b->objects[i].row);
		kw_sealed_cleanup(&b->objects[i].sealed);
	}
	free(b->objects);
	free(b->partitions);
	free(b->credentials);
	free(b);
}

/* Grows *arr (elements of size) to hold one more past *n, doubling; NULL past max. */
static void *add_slot(void **arr, size_t *n, size_t *cap, size_t size, size_t max)
{
	unsigned char *p;

	if (*n >= max)
		return NULL;
	if (*n == *cap) {
		size_t ncap = *cap ? 2 * *cap : 16;
		void *grown;

		if (ncap > max)
			ncap = max;
		grown = realloc(*arr, ncap * size);
		if (!grown)
			return NULL;
		*arr = grown;
		*cap = ncap;
	}
	p = (unsigned char *)*arr + *n * size;
	memset(p, 0, size);
	(*n)++;
	return p;
}

struct kw_backup_partition *kw_backup_add_partition(struct kw_backup *b)
{
	void *arr = b->partitions;
	struct kw_backup_partition *p;

	p = add_slot(&arr, &b->n_partitions, &b->cap_partitions, sizeof *p, KW_BACKUP_PARTITIONS_MAX);
	b->partitions = arr;
	return p;
}

struct kw_backup_credential *kw_backup_add_credential(struct kw_backup *b)
{
	void *arr = b->credentials;
	struct kw_backup_credential *c;

	c = add_slot(&arr, &b->n_credentials, &b->cap_credentials, sizeof *c, KW_BACKUP_CREDENTIALS_MAX);
	b->credentials = arr;
	return c;
}

struct kw_backup_object *kw_backup_add_object(struct kw_backup *b)
{
	void *arr = b->objects;
	struct kw_backup_object *o;

	o = add_slot(&arr, &b->n_objects, &b->cap_objects, sizeof *o, KW_BACKUP_OBJECTS_MAX);
	b->objects = arr;
	return o;
}

/* ---- writer ---- */

struct wr {
	struct kw_buf b; /* capped at KW_BACKUP_MAX */
	bool failed;	 /* out of memory or past the cap */
	kw_rv why;
};

static void put(struct wr *w, const void *data, size_t n)
{
	if (!w->failed && n && (w->why = kw_buf_append(&w->b, data, n)) != KW_OK)
		w->failed = true;
}

static void put_u64(struct wr *w, uint64_t v)
{
	unsigned char b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (56 - 8 * i));
	put(w, b, 8);
}

static void put_u32(struct wr *w, uint32_t v)
{
	unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
			      (unsigned char)v};

	put(w, b, 4);
}

static void put_u8(struct wr *w, unsigned v)
{
	unsigned char b = (unsigned char)v;

	put(w, &b, 1);
}

static void put_bytes(struct wr *w, const unsigned char *data, size_t n)
{
	if (n > BYTES_MAX) {
		w->failed = true;
		w->why = KW_ERR_DATA_LEN;
		return;
	}
	put_u32(w, (uint32_t)n);
	put(w, data, n);
}

static void put_str(struct wr *w, const char *s)
{
	put_bytes(w, (const unsigned char *)s, strlen(s));
}

static void put_object(struct wr *w, const struct kw_backup_object *o)
{
	const struct kw_object_row *r = &o->row;
	unsigned flags = (r->sensitive ? FLAG_SENSITIVE : 0) | (r->extractable ? FLAG_EXTRACTABLE : 0) |
			 (r->modifiable ? FLAG_MODIFIABLE : 0) | (r->never_extractable ? FLAG_NEVER_EXTRACTABLE : 0) |
			 (r->always_sensitive ? FLAG_ALWAYS_SENSITIVE : 0);

	put_u32(w, o->partition);
	put_u64(w, r->id);
	put_u64(w, r->pair_id);
	put_str(w, r->owner);
	put_str(w, r->name);
	put_u32(w, (uint32_t)r->cls);
	put_u32(w, (uint32_t)r->key_type);
	put_u32(w, r->bits);
	put_str(w, r->curve);
	put_bytes(w, r->value, r->value_len);
	put_u8(w, flags);
	put_u32(w, r->usages);
	put_u64(w, (uint64_t)r->created);
	put_bytes(w, r->ckaid, r->ckaid_len);
	put_str(w, r->application);
	put_bytes(w, o->sealed.spki, o->sealed.spki_len);
	put_bytes(w, o->sealed.wrapped_dek, o->sealed.wrapped_dek_len);
	put_bytes(w, o->sealed.sealed, o->sealed.sealed_len);
}

kw_rv kw_backup_encode(const struct kw_backup *b, unsigned char **out, size_t *len)
{
	struct wr w = {{0}, false, KW_OK};
	unsigned char h[SHA256_DIGEST_LENGTH];
	uint64_t total;

	*out = NULL;
	*len = 0;
	kw_buf_init(&w.b, KW_BACKUP_MAX);
	put(&w, KW_BACKUP_MAGIC, KW_BACKUP_MAGIC_LEN);
	put_u32(&w, KW_BACKUP_FORMAT);
	put_u64(&w, 0); /* the total length, filled in below */
	put_u32(&w, b->schema);
	put(&w, b->key_id, sizeof b->key_id);
	put_u64(&w, (uint64_t)b->created);
	put_u64(&w, b->audit_seq);
	put(&w, b->audit_hash, sizeof b->audit_hash);
	put_str(&w, b->scope);
	put_u32(&w, (uint32_t)b->n_partitions);
	put_u32(&w, (uint32_t)b->n_credentials);
	put_u32(&w, (uint32_t)b->n_objects);
	for (size_t i = 0; i < b->n_partitions; i++) {
		const struct kw_backup_partition *p = &b->partitions[i];
		put_str(&w, p->name);
		put_u64(&w, p->source_id);
		put_u8(&w, p->has_setup);
		put(&w, p->setup_hash, sizeof p->setup_hash);
	}
	for (size_t i = 0; i < b->n_credentials; i++) {
		const struct kw_backup_credential *c = &b->credentials[i];
		put(&w, c->fingerprint, sizeof c->fingerprint);
		put_u32(&w, c->partition);
		put_str(&w, c->subject);
		put_u64(&w, (uint64_t)c->created);
		put_u64(&w, (uint64_t)c->revoked);
	}
	for (size_t i = 0; i < b->n_objects; i++)
		put_object(&w, &b->objects[i]);
	if (!w.failed && (w.why = kw_buf_reserve(&w.b, SHA256_DIGEST_LENGTH)) != KW_OK)
		w.failed = true;
	if (w.failed) {
		kw_buf_cleanup(&w.b);
		if (w.why == KW_ERR_NO_MEMORY)
			return kw_error_set(KW_ERR_NO_MEMORY, "backup: out of memory encoding the backup");
		return kw_error_set(KW_ERR_DATA_LEN,
				    "backup: the store does not fit in one backup file (at most %u MiB); back up one "
				    "partition at a time (--partition)",
				    KW_BACKUP_MAX >> 20);
	}
	/* the total length, then the checksum over everything before it (room reserved above) */
	total = w.b.len + SHA256_DIGEST_LENGTH;
	for (int i = 0; i < 8; i++)
		w.b.data[KW_BACKUP_MAGIC_LEN + 4 + i] = (unsigned char)(total >> (56 - 8 * i));
	SHA256(w.b.data, w.b.len, h);
	put(&w, h, sizeof h);
	*out = w.b.data; /* the caller's now: not wiped, it holds nothing secret */
	*len = w.b.len;
	return KW_OK;
}

/* ---- reader ---- */

struct rd {
	const unsigned char *p;
	size_t len, off;
	const char *bad; /* the first thing found wrong */
};

static bool need(struct rd *r, size_t n, const char *what)
{
	if (r->bad)
		return false;
	if (r->len - r->off < n) {
		r->bad = what;
		return false;
	}
	return true;
}

static uint64_t get_u64(struct rd *r, const char *what)
{
	uint64_t v = 0;

	if (!need(r, 8, what))
		return 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | r->p[r->off + (size_t)i];
	r->off += 8;
	return v;
}

static uint32_t get_u32(struct rd *r, const char *what)
{
	uint32_t v = 0;

	if (!need(r, 4, what))
		return 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | r->p[r->off + (size_t)i];
	r->off += 4;
	return v;
}

static unsigned get_u8(struct rd *r, const char *what)
{
	if (!need(r, 1, what))
		return 0;
	return r->p[r->off++];
}

static void get_fixed(struct rd *r, void *out, size_t n, const char *what)
{
	if (!need(r, n, what))
		return;
	memcpy(out, r->p + r->off, n);
	r->off += n;
}

/* A length-prefixed field: a pointer into the buffer and its length. */
static const unsigned char *get_span(struct rd *r, size_t max, size_t *n, const char *what)
{
	uint32_t len = get_u32(r, what);
	const unsigned char *p;

	*n = 0;
	if (r->bad)
		return NULL;
	if (len > max) {
		r->bad = what;
		return NULL;
	}
	if (!need(r, len, what))
		return NULL;
	p = r->p + r->off;
	r->off += len;
	*n = len;
	return p;
}

/* A str into out (size bytes with the NUL); bad when too long or holding a NUL. */
static void get_str(struct rd *r, char *out, size_t size, const char *what)
{
	size_t n;
	const unsigned char *p = get_span(r, size - 1, &n, what);

	out[0] = '\0';
	if (!p)
		return;
	if (memchr(p, '\0', n)) {
		r->bad = what;
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}

/* A bytes field copied to the heap (NULL for an empty one). */
static unsigned char *get_dup(struct rd *r, size_t max, size_t *n, const char *what)
{
	const unsigned char *p = get_span(r, max, n, what);
	unsigned char *copy;

	if (!p || !*n)
		return NULL;
	copy = malloc(*n);
	if (!copy) {
		r->bad = "out of memory";
		*n = 0;
		return NULL;
	}
	memcpy(copy, p, *n);
	return copy;
}

static void get_object(struct rd *r, const struct kw_backup *b, struct kw_backup_object *o)
{
	struct kw_object_row *row = &o->row;
	unsigned flags;
	size_t n;

	o->partition = get_u32(r, "an object's partition");
	if (!r->bad && o->partition >= b->n_partitions)
		r->bad = "an object's partition";
	row->id = get_u64(r, "an object's id");
	row->pair_id = get_u64(r, "an object's pair");
	get_str(r, row->owner, sizeof row->owner, "an object's owner");
	get_str(r, row->name, sizeof row->name, "an object's name");
	row->cls = (enum kw_class)get_u32(r, "an object's class");
	row->key_type = (enum kw_key_type)get_u32(r, "an object's key type");
	row->bits = get_u32(r, "an object's size");
	get_str(r, row->curve, sizeof row->curve, "an object's curve");
	row->value = get_dup(r, BYTES_MAX, &row->value_len, "an object's value");
	flags = get_u8(r, "an object's flags");
	row->usages = get_u32(r, "an object's usages");
	row->created = (int64_t)get_u64(r, "an object's creation time");
	{
		const unsigned char *p = get_span(r, KW_CKAID_MAX, &n, "an object's CKA_ID");
		if (p) {
			memcpy(row->ckaid, p, n);
			row->ckaid_len = n;
		}
	}
	get_str(r, row->application, sizeof row->application, "an object's application");
	o->sealed.spki = get_dup(r, BYTES_MAX, &o->sealed.spki_len, "a key's public key");
	o->sealed.wrapped_dek = get_dup(r, BYTES_MAX, &o->sealed.wrapped_dek_len, "a key's wrapped data key");
	o->sealed.sealed = get_dup(r, BYTES_MAX, &o->sealed.sealed_len, "a sealed key");
	if (r->bad)
		return;
	if (row->cls < KW_CLASS_PRIVATE_KEY || row->cls > KW_CLASS_SECRET_KEY || (row->key_type > KW_KEY_AES && row->key_type != KW_KEY_GENERIC) ||
	    flags > 31 || row->id == 0 || (row->id & KW_OBJECT_ID_SESSION) || !row->owner[0] || !row->name[0]) {
		r->bad = "an object's fields";
		return;
	}
	row->sensitive = flags & FLAG_SENSITIVE;
	row->extractable = flags & FLAG_EXTRACTABLE;
	row->modifiable = flags & FLAG_MODIFIABLE;
	row->never_extractable = flags & FLAG_NEVER_EXTRACTABLE;
	row->always_sensitive = flags & FLAG_ALWAYS_SENSITIVE;
	row->partition_id = b->partitions[o->partition].source_id;
	/* sealed material belongs to private and secret keys, and they must have it */
	if ((row->cls == KW_CLASS_PRIVATE_KEY || row->cls == KW_CLASS_SECRET_KEY) !=
	    (o->sealed.wrapped_dek != NULL && o->sealed.sealed != NULL)) {
		r->bad = "a key's sealed material";
		return;
	}
	if ((row->cls == KW_CLASS_PRIVATE_KEY) != (o->sealed.spki != NULL))
		r->bad = "a key's public key";
}

kw_rv kw_backup_decode(const unsigned char *buf, size_t len, struct kw_backup **out)
{
	struct rd r = {buf, len, 0, NULL};
	struct kw_backup *b = NULL;
	unsigned char h[SHA256_DIGEST_LENGTH];
	uint64_t total;
	uint32_t format, np, nc, no;
	kw_rv rv = KW_OK;

	*out = NULL;
	if (len < KW_BACKUP_MAGIC_LEN || memcmp(buf, KW_BACKUP_MAGIC, KW_BACKUP_MAGIC_LEN) != 0)
		return kw_error_set(KW_ERR_ENCRYPTED_DATA, "not a keyward HSM backup (no \"%s\" at its start)",
				    KW_BACKUP_MAGIC);
	r.off = KW_BACKUP_MAGIC_LEN;
	format = get_u32(&r, "");
	total = get_u64(&r, "");
	if (r.bad)
		return kw_error_set(KW_ERR_ENCRYPTED_DATA, "the backup is truncated: %zu bytes, not even a header",
				    len);
	if (format != KW_BACKUP_FORMAT)
		return kw_error_set(KW_ERR_ENCRYPTED_DATA,
				    "the backup has format version %" PRIu32 "; this keyward reads version %d", format,
				    KW_BACKUP_FORMAT);
	if (total > KW_BACKUP_MAX || total < HEADER_LEN + SHA256_DIGEST_LENGTH)
		return kw_error_set(KW_ERR_ENCRYPTED_DATA,
				    "the backup is damaged: it declares %" PRIu64 " bytes (at most %u MiB)", total,
				    KW_BACKUP_MAX >> 20);
	if (len < total)
		return kw_error_set(KW_ERR_ENCRYPTED_DATA,
				    "the backup is truncated: %zu of its %" PRIu64 " bytes are there", len, total);
	if (len > total)
		return kw_error_set(KW_ERR_ENCRYPTED_DATA,
				    "the backup is damaged: %zu bytes follow its end (%" PRIu64 " bytes)", len - total,
				    total);
	SHA256(buf, len - SHA256_DIGEST_LENGTH, h);
	if (CRYPTO_memcmp(h, buf + len - SHA256_DIGEST_LENGTH, sizeof h) != 0)
		return kw_error_set(KW_ERR_ENCRYPTED_DATA,
				    "the backup is damaged: its SHA-256 checksum does not match its content");
	r.len = len - SHA256_DIGEST_LENGTH;
	b = kw_backup_new("");
	if (!b)
		return kw_error_set(KW_ERR_NO_MEMORY, "backup: out of memory");
	b->schema = get_u32(&r, "the schema version");
	get_fixed(&r, b->key_id, sizeof b->key_id, "the master-key id");
	b->created = (int64_t)get_u64(&r, "the creation time");
	b->audit_seq = get_u64(&r, "the audit head");
	get_fixed(&r, b->audit_hash, sizeof b->audit_hash, "the audit head");
	get_str(&r, b->scope, sizeof b->scope, "the scope");
	np = get_u32(&r, "the counts");
	nc = get_u32(&r, "the counts");
	no = get_u32(&r, "the counts");
	if (!r.bad && (np > KW_BACKUP_PARTITIONS_MAX || nc > KW_BACKUP_CREDENTIALS_MAX || no > KW_BACKUP_OBJECTS_MAX))
		r.bad = "the counts";
	for (uint32_t i = 0; i < np && !r.bad; i++) {
		struct kw_backup_partition *p = kw_backup_add_partition(b);
		unsigned setup;
		if (!p) {
			r.bad = "out of memory";
			break;
		}
		get_str(&r, p->name, sizeof p->name, "a partition's name");
		p->source_id = get_u64(&r, "a partition's id");
		setup = get_u8(&r, "a partition's setup flag");
		p->has_setup = setup == 1;
		get_fixed(&r, p->setup_hash, sizeof p->setup_hash, "a partition's setup hash");
		if (!r.bad && (!p->name[0] || setup > 1))
			r.bad = !p->name[0] ? "a partition's name" : "a partition's setup flag";
	}
	for (uint32_t i = 0; i < nc && !r.bad; i++) {
		struct kw_backup_credential *c = kw_backup_add_credential(b);
		if (!c) {
			r.bad = "out of memory";
			break;
		}
		get_fixed(&r, c->fingerprint, sizeof c->fingerprint, "a credential");
		c->partition = get_u32(&r, "a credential's partition");
		get_str(&r, c->subject, sizeof c->subject, "a credential's subject");
		c->created = (int64_t)get_u64(&r, "a credential's time");
		c->revoked = (int64_t)get_u64(&r, "a credential's time");
		if (!r.bad && c->partition >= b->n_partitions)
			r.bad = "a credential's partition";
	}
	for (uint32_t i = 0; i < no && !r.bad; i++) {
		struct kw_backup_object *o = kw_backup_add_object(b);
		if (!o) {
			r.bad = "out of memory";
			break;
		}
		get_object(&r, b, o);
	}
	if (!r.bad && r.off != r.len)
		r.bad = "its end (bytes after the last object)";
	if (r.bad) {
		rv = strcmp(r.bad, "out of memory") == 0
			     ? kw_error_set(KW_ERR_NO_MEMORY, "backup: out of memory reading the backup")
			     : kw_error_set(KW_ERR_ENCRYPTED_DATA,
					    "the backup is malformed at byte %zu (%s), though its checksum matches: "
					    "it was not written by keyward-admin backup",
					    r.off, r.bad);
		kw_backup_free(b);
		return rv;
	}
	*out = b;
	return KW_OK;
}
