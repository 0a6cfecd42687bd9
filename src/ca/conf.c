/*
 * keyward-ca: ca.conf, the instance's configuration (INI, read with inih).
 * The [ca] section names the key and its token; [template NAME] sections
 * add templates or override built-ins. Written back atomically (files.c)
 * when setup, a template command or config set changes it.
 */
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca/ca.h"
#include "ca/ini.h"

void ca_path(const struct ca_conf *c, const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", c->dir, name);
}

const EVP_MD *ca_md(const struct ca_conf *c)
{
	if (!strcmp(c->hash, "sha384"))
		return EVP_sha384();
	if (!strcmp(c->hash, "sha512"))
		return EVP_sha512();
	return EVP_sha256();
}

const char *ca_host_module(const struct ca_conf *c)
{
	const char *host = getenv("KEYWARD_PKCS11_MODULE");

	/* empty in ca.conf: this host's module (the environment's, else the installed one), so a configuration moves */
	if (c->module[0])
		return c->module;
	return host && *host ? host : KW_DEFAULT_PKCS11_MODULE;
}

static int client_conf_pin_file(void *user, const char *section, const char *key, const char *value)
{
	(void)section;
	if (!strcmp(key, "pin_file"))
		snprintf(user, CA_PATH_MAX, "%s", value);
	return 1;
}

void ca_host_pin_file(const struct ca_conf *c, char *out, size_t size)
{
	const char *client = getenv("KEYWARD_CONF");
	char found[CA_PATH_MAX] = "";

	/* empty in ca.conf: the PIN file this host's client configuration names (ksputil register --pin-file) */
	if (c->pin_file[0]) {
		snprintf(out, size, "%s", c->pin_file);
		return;
	}
	ini_parse(client && *client ? client : "/etc/keyward/client.conf", client_conf_pin_file, found);
	snprintf(out, size, "%s", found);
}

int ca_conf_defaults(struct ca_conf *c, const char *dir)
{
	memset(c, 0, sizeof *c);
	if (strlen(dir) >= sizeof c->dir)
		return ca_error("directory name too long: %s", dir);
	snprintf(c->dir, sizeof c->dir, "%s", dir);
	snprintf(c->token, sizeof c->token, "keyward machine");
	snprintf(c->hash, sizeof c->hash, "sha256");
	c->validity_days = 3650;
	c->crl_period_hours = 168;
	c->crl_overlap_hours = 12;
	c->delta_crl_period_hours = 24;
	if (gethostname(c->server_name, sizeof c->server_name) != 0)
		snprintf(c->server_name, sizeof c->server_name, "localhost");
	ca_templates_builtin(c);
	return 0;
}

struct parse {
	struct ca_conf *c;
	char error[512];
};

/* A URL base: http:// or https://, a host, an optional path; no spaces, quotes or trailing slash. */
static int url_base_ok(const char *v)
{
	size_t n = strlen(v);

	if (!n)
		return 0; /* empty: http://server_name */
	if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
		return ca_error("a URL base starts with http:// or https://");
	if (strcspn(v, " \t\"'<>\\") != n)
		return ca_error("a URL base holds no spaces, quotes or backslashes");
	if (v[n - 1] == '/' || !v[strncmp(v, "http://", 7) ? 8 : 7])
		return ca_error("a URL base names a host and ends without '/' (http://pki.example.com)");
	return 0;
}

/* URL bases separated by spaces, each as url_base_ok wants. */
static int url_bases_ok(const char *v)
{
	char one[300];

	for (const char *p = v; *p;) {
		size_t n = strcspn(p, " ");

		if (n && (n >= sizeof one ||
			  (snprintf(one, sizeof one, "%.*s", (int)n, p), url_base_ok(one) ? true : false)))
			return n >= sizeof one ? ca_error("a URL base longer than %zu bytes", sizeof one - 1)
					       : ca_error("\"%s\": %s", one, ca_last_error());
		p += n;
		p += strspn(p, " ");
	}
	return 0;
}

int ca_conf_set(struct ca_conf *c, const char *key, const char *v)
{
	if (ca_conf_text_ok(strlen(key), v))
		return -1;
	if (!strcmp(key, "name"))
		return ca_text_value(v, c->name, sizeof c->name);
	if (!strcmp(key, "key"))
		return ca_text_value(v, c->key, sizeof c->key);
	if (!strcmp(key, "token"))
		return ca_text_value(v, c->token, sizeof c->token);
	if (!strcmp(key, "module"))
		return ca_text_value(v, c->module, sizeof c->module);
	if (!strcmp(key, "pin_file"))
		return ca_text_value(v, c->pin_file, sizeof c->pin_file);
	if (!strcmp(key, "database"))
		return ca_db_url_check(v) ? -1 : ca_text_value(v, c->database, sizeof c->database);
	if (!strcmp(key, "hash")) {
		if (strcmp(v, "sha256") && strcmp(v, "sha384") && strcmp(v, "sha512"))
			return ca_error("sha256, sha384 or sha512");
		return ca_text_value(v, c->hash, sizeof c->hash);
	}
	if (!strcmp(key, "validity_days"))
		return ca_uint_value(v, 1, 36500, &c->validity_days);
	if (!strcmp(key, "server_name"))
		return ca_text_value(v, c->server_name, sizeof c->server_name);
	if (!strcmp(key, "url_base"))
		return url_base_ok(v) ? -1 : ca_text_value(v, c->url_base, sizeof c->url_base);
	if (!strcmp(key, "legacy_url_bases"))
		return url_bases_ok(v) ? -1 : ca_text_value(v, c->legacy_url_bases, sizeof c->legacy_url_bases);
	if (!strcmp(key, "crl_period_hours"))
		return ca_uint_value(v, 1, 24 * 366, &c->crl_period_hours);
	if (!strcmp(key, "crl_overlap_hours"))
		return ca_uint_value(v, 1, 24 * 366, &c->crl_overlap_hours);
	if (!strcmp(key, "delta_crl_period_hours"))
		return ca_uint_value(v, 1, 24 * 366, &c->delta_crl_period_hours);
	if (!strcmp(key, "subordinate"))
		return ca_bool_value(v, &c->subordinate);
	return ca_error("unknown key");
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse *p = user;

	if (p->error[0])
		return 0;
	if (!strcmp(section, "ca")) {
		/* a database URL is not echoed: a bad one may hold a password */
		if (ca_conf_set(p->c, key, value))
			snprintf(p->error, sizeof p->error, "[ca] %.60s = \"%.200s\": %.200s", key,
				 strcmp(key, "database") ? value : "...", ca_last_error());
		return 1;
	}
	if (!strncmp(section, "template ", 9)) {
		struct ca_template *t = ca_template_add(p->c, section + 9);

		if (!t)
			snprintf(p->error, sizeof p->error, "[%.100s]: too many templates or bad name", section);
		else if (ca_template_set(t, key, value))
			snprintf(p->error, sizeof p->error, "[%.100s] %.60s = \"%.100s\": %.200s", section, key, value,
				 ca_last_error());
		return 1;
	}
	snprintf(p->error, sizeof p->error, "unknown section [%.100s] (known: [ca], [template NAME])", section);
	return 1;
}

int ca_conf_parse(struct ca_conf *c, const char *dir, const char *path, const char *text)
{
	struct parse p = {.c = c};
	int r;

	if (ca_conf_defaults(c, dir))
		return -1;
	snprintf(c->server_name, sizeof c->server_name, "localhost");
	r = ini_parse_string(text, handler, &p);
	if (p.error[0])
		return ca_error("%s: %s", path, p.error);
	if (r)
		return ca_error("%s: line %d: not INI syntax", path, r);
	if (!c->name[0] || !c->key[0])
		return ca_error("%s: [ca] needs name and key", path);
	return 0;
}

int ca_conf_load(struct ca_conf *c, const char *dir)
{
	char path[CA_PATH_MAX + 16], *text;
	size_t len;
	int rc;

	if (strlen(dir) >= sizeof c->dir)
		return ca_error("directory name too long: %s", dir);
	snprintf(path, sizeof path, "%s/ca.conf", dir);
	if (!(text = ca_read_file(path, CA_CONF_MAX, &len))) {
		if (errno == ENOENT)
			return ca_error("%s: %s (is %s a CA directory? keyward-ca setup makes one)", path,
					strerror(errno), dir);
		return -1;
	}
	if (memchr(text, '\0', len))
		rc = ca_error("%s: holds a NUL byte: not a configuration file", path);
	else
		rc = ca_conf_parse(c, dir, path, text);
	free(text);
	return rc;
}

int ca_conf_check(const struct ca_conf *c, const char *text)
{
	static const char *const keys[] = {"name",     "key",	      "token",	  "module",	     "pin_file",
					   "database", "server_name", "url_base", "legacy_url_bases"};
	const char *values[] = {c->name,     c->key,	     c->token,	  c->module,	      c->pin_file,
				c->database, c->server_name, c->url_base, c->legacy_url_bases};
	struct ca_conf *again = malloc(sizeof *again);
	char *back = NULL;
	int rc = -1;

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (ca_conf_text_ok(strlen(keys[i]), values[i])) {
			free(again);
			return ca_error("%s \"%.200s\": %s; nothing written", keys[i],
					strcmp(keys[i], "database") ? values[i] : "...", ca_last_error());
		}
	/* and read back as written: what keyward-ca writes, it reads as it meant */
	if (!again)
		return ca_error("out of memory");
	if (ca_conf_parse(again, c->dir, "ca.conf as written", text) == 0 && (back = ca_conf_text(again)))
		rc = strcmp(back, text) ? ca_error("ca.conf would not read back as written; nothing written") : 0;
	free(back);
	free(again);
	return rc;
}

char *ca_conf_text(const struct ca_conf *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f) {
		ca_error("out of memory");
		return NULL;
	}
	fprintf(f,
		"# keyward-ca instance configuration (keyward-ca(8)).\n"
		"[ca]\n"
		"name = %s\n"
		"key = %s\n"
		"token = %s\n"
		"module = %s\n"
		"pin_file = %s\n"
		"%s%s%s"
		"hash = %s\n"
		"validity_days = %u\n"
		"server_name = %s\n"
		"url_base = %s\n"
		"legacy_url_bases = %s\n"
		"crl_period_hours = %u\n"
		"crl_overlap_hours = %u\n"
		"delta_crl_period_hours = %u\n"
		"subordinate = %s\n",
		c->name, c->key, c->token, c->module, c->pin_file,
		/* only when set: a CA on SQLite keeps the ca.conf it had */
		c->database[0] ? "database = " : "", c->database, c->database[0] ? "\n" : "", c->hash, c->validity_days,
		c->server_name, c->url_base, c->legacy_url_bases, c->crl_period_hours, c->crl_overlap_hours,
		c->delta_crl_period_hours, c->subordinate ? "true" : "false");
	for (size_t i = 0; i < c->n_templates; i++) {
		if (c->templates[i].builtin)
			continue;
		fprintf(f, "\n[template %s]\n", c->templates[i].name);
		ca_template_print(&c->templates[i], f);
	}
	if (fclose(f) != 0) {
		free(text);
		ca_error("out of memory");
		return NULL;
	}
	return text;
}

int ca_conf_save(const struct ca_conf *c)
{
	char path[CA_PATH_MAX + 16], *text = ca_conf_text(c);
	int rc;

	if (!text)
		return -1;
	if (ca_conf_check(c, text)) {
		free(text);
		return -1;
	}
	ca_path(c, "ca.conf", path, sizeof path);
	/* 0600: it may hold a key URI with a pin-value */
	rc = ca_write_atomic(path, text, strlen(text), 0600);
	free(text);
	return rc;
}
