/*
 * client.conf: one [client] section and one or more [hsm ...] sections,
 * read with inih. A custom line reader counts lines, so every complaint
 * names file, line and key. Relative file names resolve against the
 * configuration file's directory. See docs/client.conf.5.
 */
#include "client/client.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "common/error.h"

struct parse_ctx {
	struct kw_config *cfg;
	const char *text; /* the file's bytes, read from off */
	size_t len, off;
	unsigned line;     /* line of the text inih is looking at */
	bool at_line_start;
	unsigned section_line; /* line of the last [section] header */
	kw_rv rv;          /* first error; its message is already set */
	bool seen[16];     /* [client] keys seen, for duplicates */
	struct {
		bool host, port, priority, server_name;
	} *hsm_seen;
};

static const char *const client_keys[] = {"partition", "ca", "cert", "key", "connect_timeout", "command_timeout",
					  "keepalive", "pool_size", "machine_owner", "pin_file"};
#define N_CLIENT_KEYS (sizeof client_keys / sizeof client_keys[0])

static char *reader(char *str, int num, void *stream)
{
	struct parse_ctx *p = stream;
	char *s;

	if (p->at_line_start)
		p->line++;
	s = NULL;
	if (p->off < p->len && num > 1) {
		const char *nl = memchr(p->text + p->off, '\n', p->len - p->off);
		size_t n = (nl ? (size_t)(nl - (p->text + p->off)) + 1 : p->len - p->off);

		if (n > (size_t)num - 1)
			n = (size_t)num - 1;
		memcpy(str, p->text + p->off, n);
		str[n] = '\0';
		p->off += n;
		s = str;
	}
	if (s) {
		size_t n = strlen(s), i = 0;
		if (p->at_line_start) {
			while (s[i] == ' ' || s[i] == '\t')
				i++;
			if (s[i] == '[')
				p->section_line = p->line;
		}
		p->at_line_start = n > 0 && s[n - 1] == '\n';
	}
	return s;
}

static int fail(struct parse_ctx *p, kw_rv rv, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct parse_ctx *p, kw_rv rv, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (p->rv)
		return 0; /* keep the first error */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	p->rv = kw_error_set(rv, "%s:%u: %s", p->cfg->path, p->line, msg);
	return 0;
}

static int nomem(struct parse_ctx *p)
{
	if (!p->rv)
		p->rv = kw_error_set(KW_ERR_NO_MEMORY, "%s:%u: out of memory reading the configuration",
				     p->cfg->path, p->line);
	return 0;
}

static bool parse_seconds(const char *v, double *out)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(d) || d <= 0 || d > 86400)
		return false;
	*out = d;
	return true;
}

static bool parse_long(const char *v, long min, long max, long *out)
{
	char *end;
	long l;

	errno = 0;
	l = strtol(v, &end, 10);
	if (errno || end == v || *end || l < min || l > max)
		return false;
	*out = l;
	return true;
}

/* A relative file name resolves against the configuration's directory. */
static char *resolve(const struct kw_config *cfg, const char *v)
{
	char *s;

	if (v[0] == '/')
		return strdup(v);
	if (asprintf(&s, "%s/%s", cfg->dir, v) < 0)
		return NULL;
	return s;
}

static int set_str(struct parse_ctx *p, char **dst, const char *v, bool path)
{
	char *s = path ? resolve(p->cfg, v) : strdup(v);

	if (!s)
		return nomem(p);
	free(*dst);
	*dst = s;
	return 1;
}

static int client_key(struct parse_ctx *p, const char *name, const char *v)
{
	struct kw_config *cfg = p->cfg;
	size_t k;
	long l;

	for (k = 0; k < N_CLIENT_KEYS; k++)
		if (strcmp(name, client_keys[k]) == 0)
			break;
	if (k == N_CLIENT_KEYS)
		return fail(p, KW_ERR_CONFIG,
			    "unknown key \"%s\" in [client] (known: partition, ca, cert, key, connect_timeout, "
			    "command_timeout, keepalive, pool_size, machine_owner, pin_file)",
			    name);
	if (p->seen[k])
		return fail(p, KW_ERR_CONFIG, "key \"%s\" given twice in [client]: keep one", name);
	p->seen[k] = true;

	if (strcmp(name, "partition") == 0) {
		if (!*v)
			return fail(p, KW_ERR_CONFIG, "key \"partition\" is empty: name this client's partition");
		return set_str(p, &cfg->partition, v, false);
	}
	if (strcmp(name, "ca") == 0 || strcmp(name, "cert") == 0 || strcmp(name, "key") == 0 ||
	    strcmp(name, "pin_file") == 0) {
		char **dst = name[0] == 'p'   ? &cfg->pin_file
			     : name[0] == 'c' ? (name[1] == 'a' ? &cfg->ca : &cfg->cert)
					      : &cfg->key;
		if (!*v)
			return fail(p, KW_ERR_CONFIG, "key \"%s\" is empty: give a file name", name);
		return set_str(p, dst, v, true);
	}
	if (strcmp(name, "connect_timeout") == 0 || strcmp(name, "command_timeout") == 0) {
		double d;
		if (!parse_seconds(v, &d))
			return fail(p, KW_ERR_CONFIG,
				    "key \"%s\": \"%s\" is not a number of seconds (greater than 0, at most 86400, "
				    "e.g. 5 or 0.5)",
				    name, v);
		if (name[1] == 'o' && name[2] == 'n' && name[3] == 'n')
			cfg->connect_timeout = d;
		else
			cfg->command_timeout = d;
		return 1;
	}
	if (strcmp(name, "keepalive") == 0) {
		if (!parse_long(v, 0, 86400, &l))
			return fail(p, KW_ERR_CONFIG,
				    "key \"keepalive\": \"%s\" is not a whole number of seconds from 0 (off) to 86400", v);
		cfg->keepalive = (int)l;
		return 1;
	}
	if (strcmp(name, "pool_size") == 0) {
		if (!parse_long(v, 0, 1024, &l))
			return fail(p, KW_ERR_CONFIG, "key \"pool_size\": \"%s\" is not a whole number from 0 to 1024",
				    v);
		cfg->pool_size = (unsigned)l;
		return 1;
	}
	/* machine_owner: the owner override, checked by owner.c when used */
	return set_str(p, &cfg->machine_owner, v, false);
}

static struct kw_hsm_cfg *hsm_for(struct parse_ctx *p, const char *section)
{
	struct kw_config *cfg = p->cfg;
	struct kw_hsm_cfg *h;
	void *seen;

	for (size_t i = 0; i < cfg->n_hsms; i++)
		if (strcmp(cfg->hsms[i].section, section) == 0)
			return &cfg->hsms[i];
	h = realloc(cfg->hsms, (cfg->n_hsms + 1) * sizeof *h);
	if (!h)
		return NULL;
	cfg->hsms = h;
	seen = realloc(p->hsm_seen, (cfg->n_hsms + 1) * sizeof *p->hsm_seen);
	if (!seen)
		return NULL;
	p->hsm_seen = seen;
	memset(&p->hsm_seen[cfg->n_hsms], 0, sizeof *p->hsm_seen);
	h = &cfg->hsms[cfg->n_hsms];
	memset(h, 0, sizeof *h);
	h->port = KW_DEFAULT_PORT;
	h->line = p->section_line ? p->section_line : p->line;
	h->section = strdup(section);
	if (!h->section)
		return NULL;
	cfg->n_hsms++;
	return h;
}

static int hsm_key(struct parse_ctx *p, const char *section, const char *name, const char *v)
{
	struct kw_hsm_cfg *h = hsm_for(p, section);
	bool *seen;
	long l;

	if (!h)
		return nomem(p);
	if (strcmp(name, "host") == 0)
		seen = &p->hsm_seen[h - p->cfg->hsms].host;
	else if (strcmp(name, "port") == 0)
		seen = &p->hsm_seen[h - p->cfg->hsms].port;
	else if (strcmp(name, "priority") == 0)
		seen = &p->hsm_seen[h - p->cfg->hsms].priority;
	else if (strcmp(name, "server_name") == 0)
		seen = &p->hsm_seen[h - p->cfg->hsms].server_name;
	else
		return fail(p, KW_ERR_CONFIG, "unknown key \"%s\" in [%s] (known: host, port, priority, server_name)",
			    name, section);
	if (*seen)
		return fail(p, KW_ERR_CONFIG, "key \"%s\" given twice in [%s]: keep one", name, section);
	*seen = true;

	if (strcmp(name, "host") == 0) {
		if (!*v)
			return fail(p, KW_ERR_CONFIG, "key \"host\" in [%s] is empty: give a host name or IP address",
				    section);
		return set_str(p, &h->host, v, false);
	}
	if (strcmp(name, "port") == 0) {
		if (!parse_long(v, 1, 65535, &l))
			return fail(p, KW_ERR_CONFIG, "key \"port\" in [%s]: \"%s\" is not a port number (1 to 65535)",
				    section, v);
		h->port = (unsigned)l;
		return 1;
	}
	if (strcmp(name, "priority") == 0) {
		if (!parse_long(v, INT_MIN, INT_MAX, &l))
			return fail(p, KW_ERR_CONFIG, "key \"priority\" in [%s]: \"%s\" is not a whole number",
				    section, v);
		h->priority = (int)l;
		return 1;
	}
	if (!*v)
		return 1; /* server_name empty: the host */
	return set_str(p, &h->server_name, v, false);
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *p = user;

	if (p->rv)
		return 0;
	if (!name)
		return 1; /* only with INI_CALL_HANDLER_ON_NEW_SECTION */
	if (strcmp(section, "client") == 0)
		return client_key(p, name, value);
	if (strncmp(section, "hsm", 3) == 0)
		return hsm_key(p, section, name, value);
	if (!*section)
		return fail(p, KW_ERR_CONFIG, "key \"%s\" outside any section: put it under [client] or [hsm NAME]",
			    name);
	return fail(p, KW_ERR_CONFIG, "unknown section [%s] (known: [client], and [hsm...] for each HSM)",
		    section);
}

static kw_rv make_dir(struct kw_config *cfg)
{
	char *copy = strdup(cfg->path), *slash, *real;

	if (!copy)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory reading %s", cfg->path);
	slash = strrchr(copy, '/');
	if (!slash) {
		free(copy);
		copy = strdup(".");
	} else if (slash == copy) {
		slash[1] = '\0';
	} else {
		*slash = '\0';
	}
	if (!copy)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory reading %s", cfg->path);
	/* absolute, so a later chdir() does not move the credential files */
	real = realpath(copy, NULL);
	if (real) {
		free(copy);
		copy = real;
	}
	cfg->dir = copy;
	return KW_OK;
}

kw_rv kw_config_load(const char *path, struct kw_config *cfg)
{
	char *text = NULL;
	size_t len = 0, cap = 0;
	FILE *f;
	kw_rv rv;

	memset(cfg, 0, sizeof *cfg);
	if (!path || !*path)
		return kw_error_set(KW_ERR_ARGUMENTS, "no client configuration file named");
	f = fopen(path, "re");
	if (!f)
		return kw_error_set(KW_ERR_CONFIG,
				    "cannot read client configuration %s: %s (name another with $KEYWARD_CONF)", path,
				    strerror(errno));
	/* read whole, at most KW_CONFIG_MAX bytes: a configuration, not a stream */
	for (;;) {
		char *grown;
		size_t n;

		if (len == cap) {
			cap = cap ? 2 * cap : 4096;
			if (cap > KW_CONFIG_MAX + 1)
				cap = KW_CONFIG_MAX + 1;
			if (len == cap || !(grown = realloc(text, cap))) {
				rv = len == cap ? kw_error_set(KW_ERR_CONFIG,
							       "%s: larger than %d bytes: not a "
							       "client configuration",
							       path, KW_CONFIG_MAX)
						: kw_error_set(KW_ERR_NO_MEMORY, "out of memory reading %s", path);
				fclose(f);
				free(text);
				return rv;
			}
			text = grown;
		}
		n = fread(text + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		fclose(f);
		free(text);
		return kw_error_set(KW_ERR_CONFIG, "cannot read client configuration %s", path);
	}
	fclose(f);
	rv = kw_config_parse(path, text ? text : "", len, cfg);
	free(text);
	return rv;
}

kw_rv kw_config_parse(const char *path, const char *text, size_t len, struct kw_config *cfg)
{
	struct parse_ctx p;
	kw_rv rv = KW_OK;
	int r;

	memset(cfg, 0, sizeof *cfg);
	memset(&p, 0, sizeof p);
	cfg->connect_timeout = 5;
	cfg->command_timeout = 30;
	cfg->keepalive = 60;
	cfg->pool_size = 8;
	if (!path || !*path)
		return kw_error_set(KW_ERR_ARGUMENTS, "no client configuration file named");
	if (len > KW_CONFIG_MAX)
		return kw_error_set(KW_ERR_CONFIG, "%s: larger than %d bytes: not a client configuration", path,
				    KW_CONFIG_MAX);
	if (memchr(text, '\0', len))
		return kw_error_set(KW_ERR_CONFIG, "%s: holds a NUL byte: not a client configuration", path);
	cfg->path = strdup(path);
	if (!cfg->path)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory reading %s", path);
	rv = make_dir(cfg);
	if (rv)
		goto out;

	p.cfg = cfg;
	p.at_line_start = true;
	p.text = text;
	p.len = len;
	r = ini_parse_stream(reader, &p, handler, &p);
	if (p.rv) {
		rv = p.rv;
		goto out;
	}
	if (r < 0) {
		rv = kw_error_set(KW_ERR_NO_MEMORY, "%s: out of memory while parsing", path);
		goto out;
	}
	if (r > 0) {
		rv = kw_error_set(KW_ERR_CONFIG, "%s:%d: syntax error: expected [section], key = value or a comment",
				  path, r);
		goto out;
	}

	if (!cfg->partition) {
		rv = kw_error_set(KW_ERR_CONFIG, "%s: [client] needs key \"partition\" (this client's partition)",
				  path);
		goto out;
	}
	if (!cfg->ca) {
		rv = kw_error_set(KW_ERR_CONFIG,
				  "%s: [client] needs key \"ca\" (the PEM file of the CA that issued the HSM's TLS "
				  "certificate)",
				  path);
		goto out;
	}
	if (!cfg->cert != !cfg->key) {
		rv = kw_error_set(KW_ERR_CONFIG, "%s: [client] names \"%s\" but not \"%s\": give both or neither",
				  path, cfg->cert ? "cert" : "key", cfg->cert ? "key" : "cert");
		goto out;
	}
	if (cfg->n_hsms == 0) {
		rv = kw_error_set(KW_ERR_CONFIG,
				  "%s: no HSM configured: add a section [hsm NAME] with host = ... (and port, priority)",
				  path);
		goto out;
	}
	for (size_t i = 0; i < cfg->n_hsms; i++) {
		struct kw_hsm_cfg *h = &cfg->hsms[i];
		if (!h->host) {
			rv = kw_error_set(KW_ERR_CONFIG, "%s:%u: section [%s] needs key \"host\"", path, h->line,
					  h->section);
			goto out;
		}
		if (!h->server_name && !(h->server_name = strdup(h->host))) {
			rv = kw_error_set(KW_ERR_NO_MEMORY, "out of memory reading %s", path);
			goto out;
		}
		if (asprintf(&h->address, strchr(h->host, ':') ? "[%s]:%u" : "%s:%u", h->host, h->port) < 0) {
			h->address = NULL;
			rv = kw_error_set(KW_ERR_NO_MEMORY, "out of memory reading %s", path);
			goto out;
		}
	}
out:
	free(p.hsm_seen);
	if (rv)
		kw_config_cleanup(cfg);
	return rv;
}

void kw_config_cleanup(struct kw_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_hsms; i++) {
		free(cfg->hsms[i].section);
		free(cfg->hsms[i].host);
		free(cfg->hsms[i].server_name);
		free(cfg->hsms[i].address);
	}
	free(cfg->hsms);
	free(cfg->path);
	free(cfg->dir);
	free(cfg->partition);
	free(cfg->ca);
	free(cfg->cert);
	free(cfg->key);
	free(cfg->machine_owner);
	free(cfg->pin_file);
	memset(cfg, 0, sizeof *cfg);
}

void kw_failover_order(const struct kw_config *cfg, size_t *order, uint32_t (*rnd)(void *arg), void *arg)
{
	size_t n = cfg->n_hsms;

	/* insertion sort by priority, stable: n is small */
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = 1; i < n; i++) {
		size_t v = order[i], j = i;
		while (j > 0 && cfg->hsms[order[j - 1]].priority > cfg->hsms[v].priority) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = v;
	}
	/* Fisher-Yates inside each run of equal priority */
	for (size_t start = 0; start < n;) {
		size_t end = start + 1;
		while (end < n && cfg->hsms[order[end]].priority == cfg->hsms[order[start]].priority)
			end++;
		for (size_t i = end - 1; i > start; i--) {
			size_t j = start + rnd(arg) % (i - start + 1);
			size_t t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		start = end;
	}
}
