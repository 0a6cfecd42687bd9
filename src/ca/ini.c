/*
 * keyward-ca's one-section INI files (ini.h), read with inih.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "ca/ca.h"
#include "ca/ini.h"

struct parse {
	const char *section;
	int (*set)(void *arg, const char *key, const char *value);
	void *arg;
	char error[512];
};

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse *p = user;

	if (p->error[0])
		return 1;
	if (strcmp(section, p->section))
		snprintf(p->error, sizeof p->error, "unknown section [%.100s] (known: [%s])", section, p->section);
	else if (p->set(p->arg, key, value))
		snprintf(p->error, sizeof p->error, "%.60s = \"%.100s\": %.300s", key, value, ca_last_error());
	return 1;
}

int ca_ini_load(const char *path, const char *section, int (*set)(void *arg, const char *key, const char *value),
		void *arg)
{
	struct parse p = {.section = section, .set = set, .arg = arg};
	FILE *f;
	int r;

	if (!(f = fopen(path, "re")))
		return errno == ENOENT ? 0 : ca_error("%s: %s", path, strerror(errno));
	r = ini_parse_file(f, handler, &p);
	fclose(f);
	if (p.error[0])
		return ca_error("%s: %s", path, p.error);
	return r ? ca_error("%s: line %d: not INI syntax", path, r) : 0;
}

int ca_uint_value(const char *v, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || !*v || *end || n < min || n > max)
		return ca_error("not a whole number from %u to %u", min, max);
	*out = (unsigned)n;
	return 0;
}

int ca_bool_value(const char *v, bool *out)
{
	if (strcmp(v, "true") && strcmp(v, "false"))
		return ca_error("true or false");
	*out = !strcmp(v, "true");
	return 0;
}

int ca_text_value(const char *v, char *out, size_t size)
{
	if (strlen(v) >= size)
		return ca_error("longer than %zu bytes", size - 1);
	snprintf(out, size, "%s", v);
	return 0;
}
