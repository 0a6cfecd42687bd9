/*
 * The hash-chained audit log: appending a record (inside the caller's
 * transaction, so a change and its record commit together), the head,
 * verifying the chain against a saved head, reading it back page by page,
 * and archiving old records to files that verify on their own.
 */
#include "keystore/keystore.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "keystore/backend.h"
#include "keystore/internal.h"

#define AUDIT_FIELD_MAX 65536

/* ---- audit ---- */

static kw_rv audit_hash(const unsigned char prev[KW_HASH_LEN], const struct kw_audit_rec *r,
			unsigned char out[KW_HASH_LEN])
{
	const char *fields[4] = {r->partition, r->actor, r->event, r->detail};
	unsigned char hdr[17];
	struct kw_buf b;
	kw_rv rv = KW_OK;

	kw_buf_init(&b, 4 * (AUDIT_FIELD_MAX + 4) + sizeof hdr);
	hdr[0] = 1; /* encoding version */
	for (int i = 0; i < 8; i++) {
		hdr[1 + i] = (unsigned char)(r->seq >> (56 - 8 * i));
		hdr[9 + i] = (unsigned char)((uint64_t)r->time >> (56 - 8 * i));
	}
	rv = kw_buf_append(&b, prev, KW_HASH_LEN);
	if (!rv)
		rv = kw_buf_append(&b, hdr, sizeof hdr);
	for (int i = 0; i < 4 && !rv; i++) {
		size_t len = strlen(fields[i]);
		unsigned char l[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
				      (unsigned char)(len >> 8), (unsigned char)len};

		rv = kw_buf_append(&b, l, 4);
		if (!rv)
			rv = kw_buf_append(&b, fields[i], len);
	}
	if (rv == KW_ERR_DATA_LEN)
		rv = kw_error_set(KW_ERR_DATA_LEN, "audit: record %" PRIu64 " is too long", r->seq);
	else if (rv)
		rv = kw_error_set(rv, "audit: out of memory");
	else
		SHA256(b.data, b.len, out);
	kw_buf_cleanup(&b);
	return rv;
}

kw_rv kw_audit_head_locked(struct kw_keystore *ks, uint64_t *seq, unsigned char hash[KW_HASH_LEN])
{
	unsigned char *h = NULL;
	size_t len = 0;
	kw_rv rv;

	*seq = 0;
	memset(hash, 0, KW_HASH_LEN);
	rv = kw_meta_get_u64(ks->b, "audit.seq", seq);
	if (rv == KW_ERR_NOT_FOUND)
		return KW_OK;
	if (rv)
		return rv;
	rv = ks->b->ops->meta_get(ks->b, "audit.hash", &h, &len);
	if (rv == KW_ERR_NOT_FOUND || (!rv && len != KW_HASH_LEN))
		rv = kw_error_set(KW_ERR_STORE, "audit: the head hash in meta is missing or damaged");
	if (!rv)
		memcpy(hash, h, KW_HASH_LEN);
	free(h);
	return rv;
}

/* The last archived record (0 and zeros when nothing was archived). */
static kw_rv audit_base_locked(struct kw_keystore *ks, uint64_t *seq, unsigned char hash[KW_HASH_LEN])
{
	unsigned char *h = NULL;
	size_t len = 0;
	kw_rv rv;

	*seq = 0;
	memset(hash, 0, KW_HASH_LEN);
	rv = kw_meta_get_u64(ks->b, "audit.base_seq", seq);
	if (rv == KW_ERR_NOT_FOUND)
		return KW_OK;
	if (rv)
		return rv;
	rv = ks->b->ops->meta_get(ks->b, "audit.base_hash", &h, &len);
	if (rv == KW_ERR_NOT_FOUND || (!rv && len != KW_HASH_LEN))
		rv = kw_error_set(KW_ERR_STORE, "audit: the archived base hash in meta is missing or damaged");
	if (!rv)
		memcpy(hash, h, KW_HASH_LEN);
	free(h);
	return rv;
}

/* Appends one record inside the caller's open transaction (caller holds the lock). */
static kw_rv audit_append_locked(struct kw_keystore *ks, const char *partition, const char *actor, const char *event,
				 const char *detail)
{
	struct kw_audit_rec r;
	uint64_t seq;
	kw_rv rv;

	if (!partition)
		partition = "";
	if (!detail)
		detail = "";
	if (!actor || !event || !*event)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit: a record needs an actor and an event");
	if (strlen(partition) > AUDIT_FIELD_MAX || strlen(actor) > AUDIT_FIELD_MAX || strlen(event) > AUDIT_FIELD_MAX ||
	    strlen(detail) > AUDIT_FIELD_MAX)
		return kw_error_set(KW_ERR_DATA_LEN, "audit: a field is longer than %d bytes", AUDIT_FIELD_MAX);
	memset(&r, 0, sizeof r);
	r.partition = (char *)partition;
	r.actor = (char *)actor;
	r.event = (char *)event;
	r.detail = (char *)detail;
	r.time = now();
	rv = kw_audit_head_locked(ks, &seq, r.prev_hash);
	if (rv)
		return rv;
	r.seq = seq + 1;
	rv = audit_hash(r.prev_hash, &r, r.hash);
	if (!rv)
		rv = ks->b->ops->audit_insert(ks->b, &r);
	if (rv == KW_ERR_EXISTS)
		rv = kw_error_set(KW_ERR_STORE, "audit: record %" PRIu64 " already exists past the head in meta",
				  r.seq);
	if (!rv)
		rv = kw_meta_put_u64(ks->b, "audit.seq", r.seq);
	if (!rv)
		rv = ks->b->ops->meta_put(ks->b, "audit.hash", r.hash, KW_HASH_LEN);
	return rv;
}

kw_rv kw_keystore_audit(struct kw_keystore *ks, const char *partition, const char *actor, const char *event,
			const char *detail)
{
	kw_rv rv;

	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (!rv)
		rv = finish(ks->b, audit_append_locked(ks, partition, actor, event, detail));
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_audit_head(struct kw_keystore *ks, uint64_t *seq, unsigned char hash[KW_AUDIT_HASH_LEN])
{
	kw_rv rv;

	lock(ks);
	rv = kw_audit_head_locked(ks, seq, hash);
	unlock(ks);
	return rv;
}

/* Whom the calling thread's mutations are done for (kw_keystore_set_actor). */
static _Thread_local char actor_partition[KW_PARTITION_NAME_MAX + 1];
static _Thread_local char actor_name[160];

void kw_keystore_set_actor(const char *partition, const char *actor)
{
	snprintf(actor_partition, sizeof actor_partition, "%s", partition ? partition : "");
	snprintf(actor_name, sizeof actor_name, "%s", actor ? actor : "");
}

/*
 * The audit record of a change, written in the change's own transaction:
 * if it cannot be written, the change is rolled back with it.
 */
kw_rv kw_audit_change_locked(struct kw_keystore *ks, const char *event, const char *fmt, ...)
{
	char detail[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	return audit_append_locked(ks, actor_partition, actor_name[0] ? actor_name : "keystore", event, detail);
}

static const char *type_text(const struct kw_object_row *r)
{
	switch (r->key_type) {
	case KW_KEY_RSA: return "RSA";
	case KW_KEY_EC: return "EC";
	case KW_KEY_ED25519: return "Ed25519";
	case KW_KEY_AES: return "AES";
	case KW_KEY_GENERIC: return "generic secret";
	default: return "-";
	}
}

/* "owner/name (0xID): RSA 2048, usages 0x3, extractable, not modifiable" */
kw_rv kw_audit_key_locked(struct kw_keystore *ks, const char *event, const struct kw_object_row *r)
{
	return kw_audit_change_locked(ks, event, "%s/%s (0x%" PRIx64 "): %s %u%s%s, usages 0x%x%s%s", r->owner, r->name,
				      r->id, type_text(r), r->bits, r->curve[0] ? " " : "", r->curve, r->usages,
				      r->extractable ? ", extractable" : "", r->modifiable ? "" : ", not modifiable");
}

struct verify_ctx {
	struct kw_audit_report *rep;
	uint64_t next;
	uint64_t last_seq;
	unsigned char prev[KW_HASH_LEN];
	bool bad;
	uint64_t expect_seq; /* 0: no saved head to check */
	const unsigned char *expect_hash;
	bool expect_found;
};

static void report_bad(struct verify_ctx *c, uint64_t seq, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void report_bad(struct verify_ctx *c, uint64_t seq, const char *fmt, ...)
{
	va_list ap;

	c->bad = true;
	c->rep->ok = false;
	c->rep->first_bad = seq;
	va_start(ap, fmt);
	vsnprintf(c->rep->problem, sizeof c->rep->problem, fmt, ap);
	va_end(ap);
}

static kw_rv verify_cb(void *ctx, const struct kw_audit_rec *r)
{
	struct verify_ctx *c = ctx;
	unsigned char h[KW_HASH_LEN];
	kw_rv rv;

	c->rep->records++;
	c->last_seq = r->seq;
	if (c->bad)
		return KW_OK;
	if (r->seq != c->next) {
		if (r->seq == c->next + 1)
			report_bad(c, c->next, "record %" PRIu64 " missing", c->next);
		else
			report_bad(c, c->next, "records %" PRIu64 " to %" PRIu64 " missing", c->next, r->seq - 1);
		return KW_OK;
	}
	if (CRYPTO_memcmp(r->prev_hash, c->prev, KW_HASH_LEN) != 0) {
		report_bad(c, r->seq,
			   "record %" PRIu64 ": chain broken (the record before it was altered, or records were reordered)",
			   r->seq);
		return KW_OK;
	}
	rv = audit_hash(c->prev, r, h);
	if (rv)
		return rv;
	if (CRYPTO_memcmp(h, r->hash, KW_HASH_LEN) != 0) {
		report_bad(c, r->seq, "record %" PRIu64 ": hash mismatch (altered)", r->seq);
		return KW_OK;
	}
	if (c->expect_seq && r->seq == c->expect_seq) {
		c->expect_found = true;
		if (CRYPTO_memcmp(h, c->expect_hash, KW_HASH_LEN) != 0) {
			report_bad(c, r->seq,
				   "record %" PRIu64 " differs from the saved head: the log was rewritten from there on",
				   r->seq);
			return KW_OK;
		}
	}
	memcpy(c->prev, r->hash, KW_HASH_LEN);
	c->next++;
	return KW_OK;
}

kw_rv kw_keystore_audit_verify(struct kw_keystore *ks, struct kw_audit_report *out)
{
	return kw_keystore_audit_verify_head(ks, 0, NULL, out);
}

kw_rv kw_keystore_audit_verify_head(struct kw_keystore *ks, uint64_t expect_seq,
				    const unsigned char expect_hash[KW_AUDIT_HASH_LEN], struct kw_audit_report *out)
{
	struct verify_ctx c;
	unsigned char head_hash[KW_HASH_LEN];
	uint64_t head = 0;
	kw_rv rv;

	if (!out)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit: no report given");
	memset(out, 0, sizeof *out);
	memset(&c, 0, sizeof c);
	if (expect_seq && !expect_hash)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit: a saved head needs its hash");
	out->ok = true;
	c.rep = out;
	c.next = 1;
	c.expect_seq = expect_seq;
	c.expect_hash = expect_hash;
	lock(ks);
	rv = ks->b->ops->begin(ks->b); /* one consistent view of log and head */
	if (rv)
		goto out;
	rv = kw_audit_head_locked(ks, &head, head_hash);
	if (!rv)
		rv = audit_base_locked(ks, &out->base_seq, out->base_hash);
	if (!rv) {
		/* the chain in the store goes on from the last archived record */
		c.next = out->base_seq + 1;
		memcpy(c.prev, out->base_hash, KW_HASH_LEN);
		c.last_seq = out->base_seq;
		rv = ks->b->ops->audit_foreach(ks->b, verify_cb, &c);
	}
	ks->b->ops->rollback(ks->b);
	if (rv)
		goto out;
	out->head_seq = head;
	memcpy(out->head_hash, head_hash, KW_HASH_LEN);
	if (c.bad)
		goto out;
	if (expect_seq && expect_seq == out->base_seq)
		c.expect_found = CRYPTO_memcmp(expect_hash, out->base_hash, KW_HASH_LEN) == 0;
	if (expect_seq && expect_seq < out->base_seq)
		report_bad(&c, expect_seq,
			   "the saved head, record %" PRIu64 ", is archived (the store starts after %" PRIu64
			   "): check it in the archives",
			   expect_seq, out->base_seq);
	else if (expect_seq && expect_seq == out->base_seq && !c.expect_found)
		report_bad(&c, expect_seq,
			   "record %" PRIu64 " differs from the saved head: the log was rewritten from there on",
			   expect_seq);
	else if (expect_seq && !c.expect_found)
		report_bad(&c, expect_seq,
			   "the saved head, record %" PRIu64 ", is not in the log (it ends at %" PRIu64
			   "): the log was cut back or rewritten",
			   expect_seq, c.last_seq);
	else if (c.last_seq < head)
		report_bad(&c, c.last_seq + 1, "log ends at %" PRIu64 " but head says %" PRIu64, c.last_seq, head);
	else if (c.last_seq > head)
		report_bad(&c, head + 1, "record %" PRIu64 " is past the head (%" PRIu64 "): written outside keywardd",
			   head + 1, head);
	else if (head && CRYPTO_memcmp(c.prev, head_hash, KW_HASH_LEN) != 0)
		report_bad(&c, head, "record %" PRIu64 ": differs from the head hash (replaced)", head);
out:
	unlock(ks);
	if (rv)
		out->ok = false;
	return rv;
}

/* ---- audit archives ---- */

static void hex_put(FILE *f, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
}

struct archive_ctx {
	FILE *f;
	uint64_t upto;
	uint64_t n;
	unsigned char last_hash[KW_HASH_LEN];
};

static kw_rv archive_cb(void *ctx, const struct kw_audit_rec *r)
{
	struct archive_ctx *a = ctx;
	const char *fields[4] = {r->partition, r->actor, r->event, r->detail};

	if (r->seq > a->upto)
		return KW_OK; /* past the cut: stays in the store */
	fprintf(a->f, "%" PRIu64 " %" PRId64 " ", r->seq, r->time);
	hex_put(a->f, r->prev_hash, KW_HASH_LEN);
	fputc(' ', a->f);
	hex_put(a->f, r->hash, KW_HASH_LEN);
	for (int i = 0; i < 4; i++) {
		fputc(' ', a->f);
		fputc('x', a->f); /* keeps an empty field a field */
		hex_put(a->f, (const unsigned char *)fields[i], strlen(fields[i]));
	}
	fputc('\n', a->f);
	memcpy(a->last_hash, r->hash, KW_HASH_LEN);
	a->n++;
	return KW_OK;
}

static kw_rv sync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	kw_rv rv = KW_OK;

	if (fd < 0 || fsync(fd) != 0)
		rv = kw_error_set(KW_ERR_STORE, "audit archive %s: cannot sync: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return rv;
}

kw_rv kw_keystore_audit_archive(struct kw_keystore *ks, const char *dir, uint64_t keep, uint64_t *archived,
				char *file, size_t size)
{
	struct archive_ctx a;
	unsigned char head_hash[KW_HASH_LEN], base_hash[KW_HASH_LEN];
	uint64_t head = 0, base = 0;
	char tmp[PATH_MAX + 8], path[PATH_MAX], hex[2 * KW_HASH_LEN + 1];
	bool written = false;
	kw_rv rv;

	if (archived)
		*archived = 0;
	if (file && size)
		file[0] = '\0';
	if (!dir || !*dir)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit archive: no directory given");
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return kw_error_set(KW_ERR_STORE, "audit archive %s: cannot create: %s", dir, strerror(errno));
	memset(&a, 0, sizeof a);
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out_unlocked_tx;
	rv = kw_audit_head_locked(ks, &head, head_hash);
	if (!rv)
		rv = audit_base_locked(ks, &base, base_hash);
	if (rv || head - base <= keep)
		goto out;
	a.upto = head - keep;
	snprintf(path, sizeof path, "%s/%020" PRIu64 "-%020" PRIu64 ".audit", dir, base + 1, a.upto);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	a.f = fopen(tmp, "wxe");
	if (!a.f) {
		rv = kw_error_set(KW_ERR_STORE, "audit archive %s: cannot create: %s", tmp, strerror(errno));
		goto out;
	}
	rv = ks->b->ops->audit_foreach(ks->b, archive_cb, &a);
	if (!rv && a.n != a.upto - base)
		rv = kw_error_set(KW_ERR_STORE, "audit archive: the store holds %" PRIu64 " records from %" PRIu64
				  " to %" PRIu64 ", not %" PRIu64 ": run audit verify",
				  a.n, base + 1, a.upto, a.upto - base);
	if (fflush(a.f) != 0 || fsync(fileno(a.f)) != 0)
		rv = rv ? rv : kw_error_set(KW_ERR_STORE, "audit archive %s: cannot write: %s", tmp, strerror(errno));
	fclose(a.f);
	if (!rv && rename(tmp, path) != 0)
		rv = kw_error_set(KW_ERR_STORE, "audit archive %s: cannot rename: %s", path, strerror(errno));
	if (rv) {
		unlink(tmp);
		goto out;
	}
	written = true;
	rv = sync_path(dir, O_RDONLY | O_DIRECTORY);
	/* the records leave the store only in the transaction that records where they went */
	if (!rv)
		rv = ks->b->ops->audit_delete_upto(ks->b, a.upto);
	if (!rv)
		rv = kw_meta_put_u64(ks->b, "audit.base_seq", a.upto);
	if (!rv)
		rv = ks->b->ops->meta_put(ks->b, "audit.base_hash", a.last_hash, KW_HASH_LEN);
	if (!rv) {
		char detail[PATH_MAX + 200];

		for (int i = 0; i < KW_HASH_LEN; i++)
			sprintf(hex + 2 * i, "%02x", a.last_hash[i]);
		snprintf(detail, sizeof detail, "records %" PRIu64 " to %" PRIu64 " archived to %s (last hash %s)",
			 base + 1, a.upto, path, hex);
		rv = audit_append_locked(ks, "", "keywardd", "audit.archive", detail);
	}
out:
	rv = finish(ks->b, rv);
	if (rv && written)
		unlink(path); /* the records stayed in the store */
	if (!rv && a.n) {
		if (archived)
			*archived = a.n;
		if (file && size)
			snprintf(file, size, "%s", path);
	}
out_unlocked_tx:
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_audit_count(struct kw_keystore *ks, uint64_t *records)
{
	unsigned char h[KW_HASH_LEN];
	uint64_t head = 0, base = 0;
	kw_rv rv;

	*records = 0;
	lock(ks);
	rv = kw_audit_head_locked(ks, &head, h);
	if (!rv)
		rv = audit_base_locked(ks, &base, h);
	unlock(ks);
	if (!rv)
		*records = head - base;
	return rv;
}

/* ---- reading the log back ---- */

struct list_ctx {
	struct kw_audit_page *page;
	uint64_t since;
	unsigned limit;
	size_t max_bytes, bytes;
	bool full; /* the page is done: the callback stops the walk */
};

static void entry_free(struct kw_audit_entry *e)
{
	free(e->partition);
	free(e->actor);
	free(e->event);
	free(e->detail);
}

static kw_rv list_cb(void *ctx, const struct kw_audit_rec *r)
{
	struct list_ctx *l = ctx;
	struct kw_audit_entry *e;
	size_t size;

	if (r->seq <= l->since)
		return KW_OK; /* a backend without audit_after walks from the start */
	size = strlen(r->partition) + strlen(r->actor) + strlen(r->event) + strlen(r->detail) + 2 * KW_HASH_LEN;
	if (l->page->n == l->limit || (l->page->n && l->max_bytes && l->bytes + size > l->max_bytes)) {
		l->page->more = true;
		l->full = true;
		return KW_ERR_BUSY; /* stops the walk; not an error (list_ctx.full) */
	}
	e = &l->page->entries[l->page->n];
	memset(e, 0, sizeof *e);
	e->seq = r->seq;
	e->time = r->time;
	e->partition = strdup(r->partition);
	e->actor = strdup(r->actor);
	e->event = strdup(r->event);
	e->detail = strdup(r->detail);
	memcpy(e->prev_hash, r->prev_hash, KW_HASH_LEN);
	memcpy(e->hash, r->hash, KW_HASH_LEN);
	l->page->n++;
	if (!e->partition || !e->actor || !e->event || !e->detail)
		return kw_error_set(KW_ERR_NO_MEMORY, "audit: out of memory reading the log");
	l->bytes += size;
	return KW_OK;
}

kw_rv kw_keystore_audit_list(struct kw_keystore *ks, uint64_t since, unsigned limit, size_t max_bytes,
			     struct kw_audit_page *out)
{
	struct list_ctx l;
	unsigned char head_hash[KW_HASH_LEN];
	kw_rv rv;

	if (!ks || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit list: no store or page given");
	memset(out, 0, sizeof *out);
	if (limit == 0 || limit > KW_AUDIT_PAGE_MAX)
		limit = KW_AUDIT_PAGE_MAX;
	out->entries = calloc(limit, sizeof *out->entries);
	if (!out->entries)
		return kw_error_set(KW_ERR_NO_MEMORY, "audit list: out of memory");
	memset(&l, 0, sizeof l);
	l.page = out;
	l.since = since;
	l.limit = limit;
	l.max_bytes = max_bytes;
	lock(ks);
	rv = ks->b->ops->begin(ks->b); /* the page, the head and the base from one view */
	if (rv)
		goto out;
	rv = kw_audit_head_locked(ks, &out->head_seq, head_hash);
	if (!rv)
		rv = audit_base_locked(ks, &out->base_seq, out->base_hash);
	if (!rv && since < out->head_seq) {
		if (ks->b->ops->audit_after) /* one more than the page: whether there are more */
			rv = ks->b->ops->audit_after(ks->b, since, limit + 1, list_cb, &l);
		else
			rv = ks->b->ops->audit_foreach(ks->b, list_cb, &l);
		if (l.full)
			rv = KW_OK;
	}
	ks->b->ops->rollback(ks->b);
out:
	unlock(ks);
	if (rv)
		kw_audit_page_cleanup(out);
	return rv;
}

void kw_audit_page_cleanup(struct kw_audit_page *page)
{
	if (!page)
		return;
	for (size_t i = 0; i < page->n; i++)
		entry_free(&page->entries[i]);
	free(page->entries);
	memset(page, 0, sizeof *page);
}

kw_rv kw_audit_entry_hash(const unsigned char prev[KW_AUDIT_HASH_LEN], const struct kw_audit_entry *e,
			  unsigned char out[KW_AUDIT_HASH_LEN])
{
	struct kw_audit_rec r;

	if (!prev || !e || !out || !e->partition || !e->actor || !e->event || !e->detail)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit: a record to hash needs its four fields");
	if (strlen(e->partition) > AUDIT_FIELD_MAX || strlen(e->actor) > AUDIT_FIELD_MAX ||
	    strlen(e->event) > AUDIT_FIELD_MAX || strlen(e->detail) > AUDIT_FIELD_MAX)
		return kw_error_set(KW_ERR_DATA_LEN, "audit: record %" PRIu64 ": a field is longer than %d bytes",
				    e->seq, AUDIT_FIELD_MAX);
	memset(&r, 0, sizeof r);
	r.seq = e->seq;
	r.time = e->time;
	r.partition = e->partition;
	r.actor = e->actor;
	r.event = e->event;
	r.detail = e->detail;
	return audit_hash(prev, &r, out);
}

static bool hex_get(const char *text, size_t len, unsigned char *out)
{
	for (size_t i = 0; i < len; i++) {
		unsigned v;
		if (!isxdigit((unsigned char)text[2 * i]) || !isxdigit((unsigned char)text[2 * i + 1]) ||
		    sscanf(text + 2 * i, "%2x", &v) != 1)
			return false;
		out[i] = (unsigned char)v;
	}
	return true;
}

/* One archive line into r (fields malloc'd into store, 4 * (AUDIT_FIELD_MAX + 1) bytes). */
static bool parse_archive_line(char *line, struct kw_audit_rec *r, char *store)
{
	char *tok[8], *save = NULL;
	int n = 0;

	for (char *t = strtok_r(line, " \n", &save); t && n < 8; t = strtok_r(NULL, " \n", &save))
		tok[n++] = t;
	if (n != 8 || strtok_r(NULL, " \n", &save))
		return false;
	memset(r, 0, sizeof *r);
	r->seq = strtoull(tok[0], NULL, 10);
	r->time = strtoll(tok[1], NULL, 10);
	if (strlen(tok[2]) != 2 * KW_HASH_LEN || strlen(tok[3]) != 2 * KW_HASH_LEN ||
	    !hex_get(tok[2], KW_HASH_LEN, r->prev_hash) || !hex_get(tok[3], KW_HASH_LEN, r->hash))
		return false;
	char **fields[4] = {&r->partition, &r->actor, &r->event, &r->detail};
	for (int i = 0; i < 4; i++) {
		size_t len = strlen(tok[4 + i]);
		char *dst = store + i * (AUDIT_FIELD_MAX + 1);
		if (tok[4 + i][0] != 'x' || (len - 1) % 2 || (len - 1) / 2 > AUDIT_FIELD_MAX ||
		    !hex_get(tok[4 + i] + 1, (len - 1) / 2, (unsigned char *)dst))
			return false;
		dst[(len - 1) / 2] = '\0';
		*fields[i] = dst;
	}
	return true;
}

static int archive_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

kw_rv kw_audit_archives_verify(const char *dir, struct kw_audit_report *out)
{
	struct verify_ctx c;
	struct dirent *de;
	char **names = NULL, *line = NULL, *store = NULL, path[PATH_MAX];
	size_t n_names = 0, cap = 0, line_cap = 0;
	DIR *d;
	kw_rv rv = KW_OK;

	if (!dir || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit archives: no directory or report given");
	memset(out, 0, sizeof *out);
	memset(&c, 0, sizeof c);
	out->ok = true;
	c.rep = out;
	c.next = 1;
	d = opendir(dir);
	if (!d)
		return kw_error_set(KW_ERR_STORE, "audit archives %s: cannot open: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 7 || strcmp(de->d_name + len - 6, ".audit") != 0)
			continue;
		if (n_names == cap) {
			char **more = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *names);
			if (!more) {
				rv = kw_error_set(KW_ERR_NO_MEMORY, "audit archives: out of memory");
				break;
			}
			names = more;
		}
		if (!(names[n_names] = strdup(de->d_name))) {
			rv = kw_error_set(KW_ERR_NO_MEMORY, "audit archives: out of memory");
			break;
		}
		n_names++;
	}
	closedir(d);
	if (!rv && !(store = malloc(4 * (AUDIT_FIELD_MAX + 1))))
		rv = kw_error_set(KW_ERR_NO_MEMORY, "audit archives: out of memory");
	if (names)
		qsort(names, n_names, sizeof *names, archive_name_cmp);
	for (size_t i = 0; i < n_names && !rv && !c.bad; i++) {
		FILE *f;
		ssize_t got;
		unsigned long lineno = 0;

		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (!(f = fopen(path, "re"))) {
			rv = kw_error_set(KW_ERR_STORE, "audit archive %s: cannot open: %s", path, strerror(errno));
			break;
		}
		while (!rv && !c.bad && (got = getline(&line, &line_cap, f)) > 0) {
			struct kw_audit_rec r;

			lineno++;
			if ((size_t)got > 8 * (2 * AUDIT_FIELD_MAX + 40) || !parse_archive_line(line, &r, store)) {
				report_bad(&c, c.next, "%s line %lu: not an archived audit record", names[i], lineno);
				break;
			}
			rv = verify_cb(&c, &r);
			if (c.bad)
				snprintf(out->problem + strlen(out->problem), sizeof out->problem - strlen(out->problem),
					 " (%s line %lu)", names[i], lineno);
		}
		fclose(f);
	}
	free(line);
	free(store);
	for (size_t i = 0; i < n_names; i++)
		free(names[i]);
	free(names);
	if (rv) {
		out->ok = false;
		return rv;
	}
	if (!c.bad) {
		out->head_seq = c.next - 1;
		memcpy(out->head_hash, c.prev, KW_HASH_LEN);
	}
	return KW_OK;
}
