/* Logging: one line per event on stderr, "time level message". */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
		     {"pool", KW_DEBUG_POOL}, {"all", ~0u}};
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

void kw_log_init(const char *level_name)
{
	const char *spec = getenv("KEYWARD_DEBUG");

	if (level_name)
		kw_log_level_parse(level_name, &kw_log_threshold);
	if (spec && *spec) {
		kw_debug_categories = parse_categories(spec);
		if (kw_debug_categories)
			kw_log_threshold = KW_LOG_DEBUG;
	}
}

void kw_log_write(enum kw_log_level level, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		     level_names[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	/* one fputs per line keeps lines whole when threads log at once */
	strncat(line, "\n", sizeof line - strlen(line) - 1);
	fputs(line, stderr);
}
