/*
 * Logging to stderr with levels and run-time debug categories
 * (KEYWARD_DEBUG=wire,tls,store,pool or "all"). The level is checked before
 * anything is formatted. Secrets are never passed to these functions.
 */
#ifndef KW_COMMON_LOG_H
#define KW_COMMON_LOG_H

#include <stdbool.h>

enum kw_log_level { KW_LOG_ERROR, KW_LOG_WARN, KW_LOG_INFO, KW_LOG_DEBUG };

enum kw_debug_category {
	KW_DEBUG_WIRE = 1u << 0,
	KW_DEBUG_TLS = 1u << 1,
	KW_DEBUG_STORE = 1u << 2,
	KW_DEBUG_POOL = 1u << 3,
};

extern enum kw_log_level kw_log_threshold;
extern unsigned kw_debug_categories;

/* Reads KEYWARD_DEBUG; a level name from a config ("error".."debug"). */
void kw_log_init(const char *level_name);
bool kw_log_level_parse(const char *name, enum kw_log_level *out);

void kw_log_write(enum kw_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
