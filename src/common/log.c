/*
 * Logging: one line per event on stderr, "time level message", and a rate
 * limiter for the lines that peers can cause, so a flood of bad requests
 * cannot flood the journal.
 */
#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum kw_log_level kw_log_threshold = KW_LOG_INFO;
unsigned kw_debug_categories;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

bool kw_log_level_parse(const char *name, enum kw_log_level *out)
{
	for (unsigned i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum kw_log_level)i;
			return true;
		}
	}
	return false;
}

static unsigned parse_categories(const char *spec)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {{"wire", KW_DEBUG_WIRE}, {"tls", KW_DEBUG_TLS}, {"store", KW_DEBUG_STORE},
		     {"pool", KW_DEBUG_POOL}, {"pkcs11", KW_DEBUG_PKCS11}, {"all", ~0u}};
	unsigned bits = 0;
	const char *p = spec;

	while (*p) {
		size_t len = strcspn(p, ",");
		for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
			if (strlen(names[i].name) == len && strncmp(p, names[i].name, len) == 0)
				bits |= names[i].bit;
		p += len;
		if (*p == ',')
			p++;
	}
	return bits;
}

/*
 * Under systemd, stderr goes to the journal, which sets JOURNAL_STREAM to
 * that stream's "device:inode" and takes a "<N>" prefix as the line's
 * syslog priority (sd-daemon(3)). Lines then carry their priority, so
 * `journalctl -p warning` finds keywardd's warnings, and no time of their
 * own: the journal stamps them.
 */
static bool to_journal;

static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
	       (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void kw_log_init(const char *level_name)
{
	const char *spec = getenv("KEYWARD_DEBUG");

	to_journal = stderr_is_journal();

	if (level_name)
		kw_log_level_parse(level_name, &kw_log_threshold);
	if (spec && *spec) {
		kw_debug_categories = parse_categories(spec);
		if (kw_debug_categories)
			kw_log_threshold = KW_LOG_DEBUG;
	}
}

static void log_vwrite(enum kw_log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void log_vwrite(enum kw_log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	int n;

	if (to_journal) {
		/* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
		static const int priority[] = {3, 4, 6, 7};
		n = snprintf(line, sizeof line, "<%d>%s: ", priority[level], level_names[level]);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ", tm.tm_year + 1900,
			     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			     level_names[level]);
	}
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	/* one fputs per line keeps lines whole when threads log at once */
	strncat(line, "\n", sizeof line - strlen(line) - 1);
	fputs(line, stderr);
}

void kw_log_write(enum kw_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

/* ---- rate limit ---- */

#define LIMIT_KEYS 64 /* slot 0 is "other": every key that finds the table full */
#define LIMIT_KEY_MAX 48

struct limit_slot {
	char key[LIMIT_KEY_MAX];
	enum kw_log_level level;
	time_t start;        /* of the current interval */
	unsigned written;    /* lines written in it */
	unsigned long suppressed;
};

static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;
static struct limit_slot limit_slots[LIMIT_KEYS];
static unsigned limit_burst = 10;
static unsigned limit_interval = 60;

static time_t mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static time_t (*limit_clock)(void) = mono_seconds;

void kw_log_limit_configure(unsigned burst, unsigned interval)
{
	pthread_mutex_lock(&limit_lock);
	if (burst)
		limit_burst = burst;
	if (interval)
		limit_interval = interval;
	pthread_mutex_unlock(&limit_lock);
}

void kw_log_limit_set_clock(time_t (*clock_fn)(void))
{
	pthread_mutex_lock(&limit_lock);
	limit_clock = clock_fn ? clock_fn : mono_seconds;
	memset(limit_slots, 0, sizeof limit_slots);
	pthread_mutex_unlock(&limit_lock);
}

/* The slot of key, taken if it is new; "other" when the table is full. */
static struct limit_slot *limit_slot_locked(const char *key, time_t now)
{
	struct limit_slot *free_slot = NULL;

	for (unsigned i = 1; i < LIMIT_KEYS; i++) {
		struct limit_slot *sl = &limit_slots[i];
		if (sl->key[0] && strncmp(sl->key, key, LIMIT_KEY_MAX - 1) == 0)
			return sl;
		if (!sl->key[0] && !free_slot)
			free_slot = sl;
	}
	if (!free_slot) {
		free_slot = &limit_slots[0];
		if (!free_slot->key[0]) {
			snprintf(free_slot->key, sizeof free_slot->key, "other");
			free_slot->start = now;
		}
		return free_slot;
	}
	snprintf(free_slot->key, sizeof free_slot->key, "%s", key);
	free_slot->start = now;
	return free_slot;
}

/* The summary of a slot whose interval is over; frees the slot when it was quiet. Caller holds the lock. */
static bool limit_roll_locked(struct limit_slot *sl, time_t now)
{
	bool wrote = false;

	if (!sl->key[0] || now - sl->start < (time_t)limit_interval)
		return false;
	if (sl->suppressed) {
		kw_log_write(sl->level, "suppressed %lu message%s (%s) in the last %lld s", sl->suppressed,
			     sl->suppressed == 1 ? "" : "s", sl->key, (long long)(now - sl->start));
		wrote = true;
	}
	if (!sl->written && !sl->suppressed) {
		memset(sl, 0, sizeof *sl);
		return false;
	}
	sl->start = now;
	sl->written = 0;
	sl->suppressed = 0;
	return wrote;
}

bool kw_log_limited(const char *key, enum kw_log_level level, const char *fmt, ...)
{
	struct limit_slot *sl;
	time_t now;
	bool write;
	va_list ap;

	if (level > kw_log_threshold)
		return false;
	pthread_mutex_lock(&limit_lock);
	now = limit_clock();
	sl = limit_slot_locked(key && *key ? key : "other", now);
	limit_roll_locked(sl, now);
	if (!sl->key[0])
		sl = limit_slot_locked(key && *key ? key : "other", now);
	write = sl->written < limit_burst;
	if (write)
		sl->written++;
	else {
		/* the summary takes the most severe level it stands for */
		if (!sl->suppressed || level < sl->level)
			sl->level = level;
		sl->suppressed++;
	}
	pthread_mutex_unlock(&limit_lock);
	if (write) {
		va_start(ap, fmt);
		log_vwrite(level, fmt, ap);
		va_end(ap);
	}
	return write;
}

unsigned kw_log_limited_flush(void)
{
	unsigned n = 0;
	time_t now;

	pthread_mutex_lock(&limit_lock);
	now = limit_clock();
	for (unsigned i = 0; i < LIMIT_KEYS; i++)
		n += limit_roll_locked(&limit_slots[i], now);
	pthread_mutex_unlock(&limit_lock);
	return n;
}
