/*
 * Key-use audit. Writing one audit record per signature would put an
 * fsync on the signing path; instead every use is counted here, per key,
 * event and client, and the counts are written as audit records once a
 * second ("key.sign dev: S-1-5-21-1-2-3/myDemoCA (0x1f..): 1234 operations
 * by CN=..."). A crash loses at most that last second of counts; a store
 * that cannot take them (PostgreSQL down) gets them again at the next
 * flush; every administrative event is written at once by its handler.
 *
 * The same once-a-second flush writes the summaries of failures by
 * unauthenticated peers (failagg.c), the log limiter's summaries, and the
 * audit chain head to [audit] head_file, a copy outside the store that an
 * operator can ship elsewhere to detect a rewritten tail.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/htab.h"
#include "common/log.h"
#include "daemon/daemon.h"

#define SLOTS 4096
#define FAIL_SOURCES 1024 /* unauthenticated sources tracked one by one */

struct count {
	bool used;
	uint64_t id;
	char event[24];
	char partition[KW_PARTITION_NAME_MAX + 1];
	char actor[160];
	char owner[KW_OWNER_MAX + 1];
	char name[KW_NAME_MAX + 1];
	uint64_t n;
};

struct kw_usage {
	pthread_mutex_t lock;
	struct count *slots; /* open addressing */
	unsigned used;
	uint64_t dropped;    /* uses that found the table full */
	struct kw_failagg *fails;
	char *head_file;          /* NULL: none */
	uint64_t head_written;    /* the seq last appended to it */
	uint64_t max_records;     /* the size policy; 0: none */
	char *archive_dir;        /* NULL: none */
	pthread_mutex_t head_lock;
};

static time_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* [audit] archive_dir, or DIR/audit-archive beside a SQLite store at DIR/FILE (none for PostgreSQL). */
static kw_rv archive_dir(const struct kw_server_config *cfg, char **out)
{
	const char *path = cfg->store, *slash;

	*out = NULL;
	if (cfg->audit_archive_dir[0]) {
		*out = strdup(cfg->audit_archive_dir);
	} else {
		if (strncmp(path, "sqlite:", 7) == 0)
			path += 7;
		if (strncmp(path, "//", 2) == 0)
			path += 2;
		if (strchr(path, ':') && !strchr(path, '/'))
			return KW_OK; /* ":memory:": no size policy without an archive_dir */
		if (kw_keystore_url_is_postgres(cfg->store))
			return KW_OK; /* a shared store has no directory of its own: archive_dir says where */
		slash = strrchr(path, '/');
		*out = malloc(strlen(path) + sizeof "/audit-archive" + 1);
		if (*out)
			sprintf(*out, "%.*s/audit-archive", slash ? (int)(slash - path) : 1, slash ? path : ".");
	}
	if (!*out)
		return kw_error_set(KW_ERR_NO_MEMORY, "audit: out of memory");
	return KW_OK;
}

kw_rv kw_usage_new(const struct kw_server_config *cfg, struct kw_usage **out)
{
	unsigned fail_interval = cfg->audit_failure_interval;
	const char *head_file = cfg->audit_head_file;
	struct kw_usage *u;
	kw_rv rv;

	*out = NULL;
	if (!fail_interval)
		return kw_error_set(KW_ERR_CONFIG, "[audit] failure_interval must be at least 1 second");
	u = calloc(1, sizeof *u);
	if (!u)
		return kw_error_set(KW_ERR_NO_MEMORY, "key-use audit: out of memory");
	pthread_mutex_init(&u->lock, NULL);
	pthread_mutex_init(&u->head_lock, NULL);
	if (!(u->slots = calloc(SLOTS, sizeof *u->slots)) ||
	    (head_file && *head_file && !(u->head_file = strdup(head_file)))) {
		kw_usage_free(u);
		return kw_error_set(KW_ERR_NO_MEMORY, "key-use audit: out of memory");
	}
	u->max_records = cfg->audit_max_records;
	rv = archive_dir(cfg, &u->archive_dir);
	if (!rv)
		rv = kw_failagg_new(fail_interval, FAIL_SOURCES, &u->fails);
	if (rv) {
		kw_usage_free(u);
		return rv;
	}
	/* peer-caused log lines: 10 per message site and failure interval */
	kw_log_limit_configure(10, fail_interval);
	*out = u;
	return KW_OK;
}

void kw_usage_free(struct kw_usage *u)
{
	if (!u)
		return;
	pthread_mutex_destroy(&u->lock);
	pthread_mutex_destroy(&u->head_lock);
	kw_failagg_free(u->fails);
	free(u->head_file);
	free(u->archive_dir);
	free(u->slots);
	free(u);
}

/* "192.0.2.1:4711" -> "192.0.2.1", "[2001:db8::1]:4711" -> "[2001:db8::1]" */
static void source_of(const char *address, char *out, size_t size)
{
	const char *colon = strrchr(address, ':');
	size_t len = colon && colon != address && !strchr(colon, ']') ? (size_t)(colon - address) : strlen(address);

	if (len >= size)
		len = size - 1;
	memcpy(out, address, len);
	out[len] = '\0';
}

void kw_usage_fail(struct kw_usage *u, struct kw_keystore *ks, const char *address, const char *event,
		   const char *detail)
{
	char source[80], actor[100];

	source_of(address ? address : "", source, sizeof source);
	kw_log_limited(event, KW_LOG_WARN, "%s: %s", event, detail);
	if (!kw_failagg_note(u->fails, source, event, mono_now()))
		return;
	snprintf(actor, sizeof actor, "unauthenticated %s", source);
	if (kw_keystore_audit(ks, "", actor, event, detail))
		kw_log_limited("audit.fail", KW_LOG_ERROR, "audit: cannot record %s (%s): %s", event, detail,
			       kw_last_error());
}

static void emit_failures(void *ctx, const char *source, const char *event, uint64_t count, unsigned seconds)
{
	struct kw_keystore *ks = ctx;
	char detail[200], actor[100];

	snprintf(actor, sizeof actor, "unauthenticated %s", source);
	snprintf(detail, sizeof detail, "%" PRIu64 " more failure%s from %s in the last %u s", count,
		 count == 1 ? "" : "s", source, seconds);
	if (kw_keystore_audit(ks, "", actor, event, detail))
		kw_log_limited("audit.fail", KW_LOG_ERROR, "audit: cannot record %s (%s): %s", event, detail,
			       kw_last_error());
}

/* Appends "SEQ:HASH" to the head file when the head moved since the last time. */
static void write_head(struct kw_usage *u, struct kw_keystore *ks)
{
	unsigned char hash[KW_AUDIT_HASH_LEN];
	char line[32 + 2 * KW_AUDIT_HASH_LEN];
	uint64_t seq;
	size_t len;
	int fd;

	if (!u->head_file)
		return;
	pthread_mutex_lock(&u->head_lock);
	if (kw_keystore_audit_head(ks, &seq, hash)) {
		kw_log_limited("audit.head", KW_LOG_ERROR, "audit: cannot read the chain head: %s", kw_last_error());
		goto out;
	}
	if (seq == u->head_written)
		goto out;
	len = (size_t)snprintf(line, sizeof line, "%" PRIu64 ":", seq);
	for (size_t i = 0; i < KW_AUDIT_HASH_LEN; i++)
		len += (size_t)snprintf(line + len, sizeof line - len, "%02x", hash[i]);
	line[len++] = '\n';
	fd = open(u->head_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line, len) != (ssize_t)len || fsync(fd) != 0)
		kw_log_limited("audit.head", KW_LOG_ERROR, "audit: cannot append the chain head to %s: %s", u->head_file,
			       strerror(errno));
	else
		u->head_written = seq;
	if (fd >= 0)
		close(fd);
out:
	pthread_mutex_unlock(&u->head_lock);
}

/*
 * The slot counting key id's event by actor: the one already there, or a
 * fresh one (*fresh set; n 0, the rest of it the caller's to fill), or NULL
 * when the table is as full as it may get. Caller holds u->lock.
 */
static struct count *slot_locked(struct kw_usage *u, uint64_t id, const char *event, const char *actor, bool *fresh)
{
	unsigned i = (unsigned)((id ^ kw_hash(event, strlen(event))) * 0x9E3779B97F4A7C15ull >> 52) % SLOTS;

	*fresh = false;
	for (unsigned probe = 0; probe < SLOTS; probe++, i = (i + 1) % SLOTS) {
		struct count *c = &u->slots[i];
		if (c->used && c->id == id && strcmp(c->event, event) == 0 && strcmp(c->actor, actor) == 0)
			return c;
		if (!c->used) {
			if (u->used >= SLOTS * 3 / 4)
				return NULL;
			memset(c, 0, sizeof *c);
			c->used = true;
			c->id = id;
			snprintf(c->event, sizeof c->event, "%s", event);
			snprintf(c->actor, sizeof c->actor, "%s", actor);
			u->used++;
			*fresh = true;
			return c;
		}
	}
	return NULL;
}

void kw_usage_count(struct kw_usage *u, const char *partition, const char *actor, const char *event,
		    const struct kw_cached_key *key, uint64_t id)
{
	struct count *c;
	bool fresh;

	pthread_mutex_lock(&u->lock);
	c = slot_locked(u, id, event, actor, &fresh);
	if (!c) {
		u->dropped++;
	} else {
		if (fresh) {
			snprintf(c->partition, sizeof c->partition, "%s", partition);
			snprintf(c->owner, sizeof c->owner, "%s", key->owner);
			snprintf(c->name, sizeof c->name, "%s", key->name);
		}
		c->n++;
	}
	pthread_mutex_unlock(&u->lock);
}

/*
 * Puts back a count the store did not take (a PostgreSQL store that is
 * down), so the next flush writes it: a key use is never left out of the
 * log because the store was away for a moment. Caller holds u->lock.
 */
static void restore_locked(struct kw_usage *u, const struct count *c)
{
	bool fresh;
	struct count *s = slot_locked(u, c->id, c->event, c->actor, &fresh);

	if (!s) {
		u->dropped += c->n; /* still written, as a number without the key's name */
		return;
	}
	if (fresh)
		*s = *c;
	else
		s->n += c->n;
}

static void flush_counts(struct kw_usage *u, struct kw_keystore *ks)
{
	struct count *batch;
	uint64_t dropped;
	bool refused = false;
	char detail[512];

	/* swap the table out, so counting never waits for the disk */
	batch = calloc(SLOTS, sizeof *batch);
	if (!batch)
		return;
	pthread_mutex_lock(&u->lock);
	if (!u->used && !u->dropped) {
		pthread_mutex_unlock(&u->lock);
		free(batch);
		return;
	}
	struct count *full = u->slots;
	u->slots = batch;
	u->used = 0;
	dropped = u->dropped;
	u->dropped = 0;
	pthread_mutex_unlock(&u->lock);

	/*
	 * Once the store refused one record the rest wait for the next flush
	 * untried: on a PostgreSQL store that is down every attempt is a
	 * reconnection, under the store's lock that requests wait for.
	 */
	for (unsigned i = 0; i < SLOTS; i++) {
		struct count *c = &full[i];
		if (!c->used)
			continue;
		snprintf(detail, sizeof detail, "%s/%s (0x%" PRIx64 "): %" PRIu64 " operation%s", c->owner, c->name,
			 c->id, c->n, c->n == 1 ? "" : "s");
		if (refused || kw_keystore_audit(ks, c->partition, c->actor, c->event, detail)) {
			if (!refused)
				kw_log_limited("audit.use", KW_LOG_ERROR,
					       "audit: cannot record key use (kept for the next attempt): %s",
					       kw_last_error());
			refused = true;
			pthread_mutex_lock(&u->lock);
			restore_locked(u, c);
			pthread_mutex_unlock(&u->lock);
		}
	}
	if (dropped) {
		snprintf(detail, sizeof detail, "%" PRIu64 " key uses over more keys than one interval tracks", dropped);
		if (refused || kw_keystore_audit(ks, "", "keywardd", "key.use", detail)) {
			pthread_mutex_lock(&u->lock);
			u->dropped += dropped;
			pthread_mutex_unlock(&u->lock);
		}
	}
	free(full);
}

kw_rv kw_usage_archive(struct kw_usage *u, struct kw_keystore *ks, uint64_t keep, uint64_t *archived, char *file,
		       size_t size)
{
	if (!u->archive_dir)
		return kw_error_set(KW_ERR_CONFIG, "audit archive: the store has no directory; set [audit] archive_dir");
	return kw_keystore_audit_archive(ks, u->archive_dir, keep, archived, file, size);
}

/* The size policy: past max_records, the oldest records go to the archive, the newest half stays. */
static void apply_size_policy(struct kw_usage *u, struct kw_keystore *ks)
{
	uint64_t records = 0, archived = 0;
	char file[600];

	if (!u->max_records || !u->archive_dir || kw_keystore_audit_count(ks, &records) || records <= u->max_records)
		return;
	if (kw_keystore_audit_archive(ks, u->archive_dir, u->max_records / 2, &archived, file, sizeof file))
		kw_log_limited("audit.archive", KW_LOG_ERROR, "audit: cannot archive: %s", kw_last_error());
	else if (archived)
		kw_log(KW_LOG_INFO, "audit: %" PRIu64 " records archived to %s", archived, file);
}

void kw_usage_flush(struct kw_usage *u, struct kw_keystore *ks)
{
	flush_counts(u, ks);
	kw_failagg_flush(u->fails, mono_now(), false, emit_failures, ks);
	kw_log_limited_flush();
	apply_size_policy(u, ks);
	write_head(u, ks);
}

void kw_usage_flush_all(struct kw_usage *u, struct kw_keystore *ks)
{
	flush_counts(u, ks);
	kw_failagg_flush(u->fails, mono_now(), true, emit_failures, ks);
	kw_log_limited_flush();
	write_head(u, ks);
}
