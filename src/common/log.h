/*
 * Logging to stderr with levels and run-time debug categories
 * (KEYWARD_DEBUG=wire,tls,store,pool,pkcs11 or "all"). The level is checked before
 * anything is formatted. Secrets are never passed to these functions.
 */
#ifndef KW_COMMON_LOG_H
#define KW_COMMON_LOG_H

#include <stdbool.h>
#include <time.h>

enum kw_log_level { KW_LOG_ERROR, KW_LOG_WARN, KW_LOG_INFO, KW_LOG_DEBUG };

enum kw_debug_category {
	KW_DEBUG_WIRE = 1u << 0,
	KW_DEBUG_TLS = 1u << 1,
	KW_DEBUG_STORE = 1u << 2,
	KW_DEBUG_POOL = 1u << 3,
	KW_DEBUG_PKCS11 = 1u << 4, /* keyward-pkcs11.so: every failure's message, not only the first */
};

extern enum kw_log_level kw_log_threshold;
extern unsigned kw_debug_categories;

/* Reads KEYWARD_DEBUG; a level name from a config ("error".."debug"). */
void kw_log_init(const char *level_name);
bool kw_log_level_parse(const char *name, enum kw_log_level *out);

void kw_log_write(enum kw_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Rate-limited logging for lines a peer can cause (handshake failures, bad
 * frames, failed enrollments): per key (a message site, e.g.
 * "enroll.fail"), at most `burst` lines an interval are written; the rest
 * are counted, and kw_log_limited_flush, run once a second, writes one
 * "suppressed N messages (KEY) in the last T s" line for the key when its
 * interval is over. The table of keys is bounded: when it is full, keys
 * share one "other" entry. Returns whether the line was written.
 */
bool kw_log_limited(const char *key, enum kw_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Lines written per key and interval (default 10 per 60 s); 0 keeps a value. */
void kw_log_limit_configure(unsigned burst, unsigned interval);
/* Writes the summaries of intervals that are over; returns how many. */
unsigned kw_log_limited_flush(void);
/* The clock the limiter reads (seconds, monotonic); NULL restores the default. For tests. */
void kw_log_limit_set_clock(time_t (*clock_fn)(void));

#define kw_log(level, ...)                                                                         \
	do {                                                                                       \
		if ((level) <= kw_log_threshold)                                                   \
			kw_log_write((level), __VA_ARGS__);                                        \
	} while (0)

#define kw_debug(category, ...)                                                                    \
	do {                                                                                       \
		if (kw_debug_categories & (category))                                              \
			kw_log_write(KW_LOG_DEBUG, __VA_ARGS__);                                   \
	} while (0)

#endif
