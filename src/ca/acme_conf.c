/*
 * acme.conf in the CA directory ([acme] section; every key optional):
 * which templates ACME serves (none by default: enrollment over the
 * network is something an operator switches on per template), which need
 * external account binding, lifetimes and limits, and the settings that
 * only tests use (a resolver that maps every name to one address, targets
 * on loopback allowed). A file of its own beside serve.conf, so that
 * serve's parser and ACME's change apart.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <ini.h>

#include "ca/acme.h"

static int uint_value(const char *v, unsigned min, unsigned max, unsigned *out)
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

static int text_value(const char *v, char *out, size_t size)
{
	if (strlen(v) >= size)
		return ca_error("longer than %zu bytes", size - 1);
	snprintf(out, size, "%s", v);
	return 0;
}

bool acme_listed(const char *list, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = list; *p;) {
		size_t n;

		p += strspn(p, " ,\t");
		n = strcspn(p, " ,\t");
		if (n && n == len && !strncmp(p, name, n))
			return true;
		p += n;
	}
	return false;
}

int acme_conf_set(struct acme_conf *ac, const char *key, const char *v)
{
	if (!strcmp(key, "templates"))
		return text_value(v, ac->templates, sizeof ac->templates);
	if (!strcmp(key, "eab_templates"))
		return text_value(v, ac->eab_templates, sizeof ac->eab_templates);
	if (!strcmp(key, "order_lifetime"))
		return uint_value(v, 60, 30 * 86400, &ac->order_lifetime);
	if (!strcmp(key, "nonce_lifetime"))
		return uint_value(v, 10, 86400, &ac->nonce_lifetime);
	if (!strcmp(key, "http01_port"))
		return uint_value(v, 1, 65535, &ac->http01_port);
	if (!strcmp(key, "fetch_timeout"))
		return uint_value(v, 1, 60, &ac->fetch_timeout);
	if (!strcmp(key, "hook_timeout"))
		return uint_value(v, 1, 600, &ac->hook_timeout);
	if (!strcmp(key, "dns01_hook")) {
		if (*v && *v != '/')
			return ca_error("an absolute path (the hook runs without a shell or PATH search)");
		return text_value(v, ac->dns01_hook, sizeof ac->dns01_hook);
	}
	if (!strcmp(key, "resolve")) {
		unsigned char a[16];

		if (*v && inet_pton(AF_INET, v, a) != 1 && inet_pton(AF_INET6, v, a) != 1)
			return ca_error("an IPv4 or IPv6 address");
		return text_value(v, ac->resolve, sizeof ac->resolve);
	}
	if (!strcmp(key, "allow_loopback")) {
		if (strcmp(v, "true") && strcmp(v, "false"))
			return ca_error("true or false");
		ac->allow_loopback = !strcmp(v, "true");
		return 0;
	}
	return ca_error("unknown key (templates, eab_templates, order_lifetime, nonce_lifetime, http01_port, "
			"fetch_timeout, dns01_hook, hook_timeout, resolve, allow_loopback)");
}

struct parse {
	struct acme_conf *ac;
	char error[512];
};

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse *p = user;

	if (p->error[0])
		return 1;
	if (strcmp(section, "acme"))
		snprintf(p->error, sizeof p->error, "unknown section [%.100s] (known: [acme])", section);
	else if (acme_conf_set(p->ac, key, value))
		snprintf(p->error, sizeof p->error, "%.60s = \"%.100s\": %.300s", key, value, ca_last_error());
	return 1;
}

int acme_conf_load(struct acme_conf *ac, const char *dir)
{
	char path[CA_PATH_MAX + 16];
	struct parse p = {.ac = ac};
	FILE *f;
	int r;

	memset(ac, 0, sizeof *ac);
	ac->order_lifetime = 7 * 86400;
	ac->nonce_lifetime = 3600;
	ac->http01_port = 80;
	ac->fetch_timeout = 10;
	ac->hook_timeout = 60;
	snprintf(path, sizeof path, "%s/acme.conf", dir);
	if (!(f = fopen(path, "re")))
		return errno == ENOENT ? 0 : ca_error("%s: %s", path, strerror(errno));
	r = ini_parse_file(f, handler, &p);
	fclose(f);
	if (p.error[0])
		return ca_error("%s: %s", path, p.error);
	return r ? ca_error("%s: line %d: not INI syntax", path, r) : 0;
}
