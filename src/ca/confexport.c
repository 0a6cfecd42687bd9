/*
 * keyward-ca config export and import: the seed's registry export
 * ("reg export ...\CertSvc"), without what belongs to one host. The export
 * holds the CA's name, hash, validity, CRL periods, the URL base its
 * certificates point to (so a new server keeps the old URLs unless told
 * otherwise), the key's label and token, and the templates; never the
 * PKCS#11 module, the PIN file, the server's own name or where its
 * database is (database =): each host
 * resolves those itself (ca_module, ca_pin_file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/ca.h"

/* keys that describe the host, not the CA: left out of an export, kept on import */
static const char *const host_keys[] = {"module", "pin_file", "server_name", "database"};

static bool host_key_line(const char *line, size_t len)
{
	for (size_t i = 0; i < sizeof host_keys / sizeof host_keys[0]; i++) {
		size_t n = strlen(host_keys[i]);

		if (len > n + 2 && !strncmp(line, host_keys[i], n) && !strncmp(line + n, " = ", 3))
			return true;
	}
	return false;
}

char *ca_conf_export_text(const struct ca_conf *c)
{
	struct ca_conf *e = malloc(sizeof *e);
	char *text = NULL, *out = NULL;
	size_t n = 0;

	if (!e) {
		ca_error("out of memory");
		return NULL;
	}
	*e = *c;
	/* the URLs the CA's certificates carry, written out: on another host they stay the same */
	ca_url_base(c, e->url_base, sizeof e->url_base);
	if ((text = ca_conf_text(e)) && (out = malloc(strlen(text) + 200))) {
		n = (size_t)sprintf(out,
				    "# keyward-ca configuration export (keyward-ca config import); no host settings\n");
		for (const char *p = text; *p;) {
			size_t len = strcspn(p, "\n");

			if (!host_key_line(p, len) && strncmp(p, "# keyward-ca instance", 21)) {
				memcpy(out + n, p, len);
				out[n + len] = '\n';
				n += len + 1;
			}
			p += len + (p[len] == '\n');
		}
		out[n] = '\0';
	} else if (text) {
		ca_error("out of memory");
	}
	free(text);
	free(e);
	return out;
}

int ca_config_export(struct ca *ca, const char *file)
{
	char *text = ca_conf_export_text(&ca->conf);
	int rc = text ? ca_write_atomic(file, text, strlen(text), 0600) : -1;

	free(text);
	return rc;
}

int ca_config_import(struct ca *ca, const char *file, const char *const *sets, size_t n_sets)
{
	struct ca_conf *in = malloc(sizeof *in), *next = malloc(sizeof *next);
	char *text = NULL, change[900];
	size_t len;
	int rc = -1;

	if (!in || !next) {
		ca_error("out of memory");
		goto out;
	}
	if (!(text = ca_read_file(file, CA_CONF_MAX, &len)))
		goto out;
	if (memchr(text, '\0', len)) {
		ca_usage_error("%s: holds a NUL byte: not a configuration export", file);
		goto out;
	}
	if (ca_conf_parse(in, ca->conf.dir, file, text))
		goto out;
	if (strcmp(in->name, ca->conf.name)) {
		ca_fail(CA_ERR_CONFLICT, "%s is the configuration of CA \"%s\", this is CA \"%s\"; nothing changed",
			file, in->name, ca->conf.name);
		goto out;
	}
	/*
	 * the CA's settings from the export (a subordinate's flag too: set up
	 * here on its existing key and certificate, it is one all the same);
	 * this host's own stay
	 */
	*next = *in;
	memcpy(next->dir, ca->conf.dir, sizeof next->dir);
	memcpy(next->module, ca->conf.module, sizeof next->module);
	memcpy(next->pin_file, ca->conf.pin_file, sizeof next->pin_file);
	memcpy(next->server_name, ca->conf.server_name, sizeof next->server_name);
	memcpy(next->database, ca->conf.database, sizeof next->database);
	for (size_t i = 0; i < n_sets; i++) {
		const char *eq = strchr(sets[i], '=');
		char key[64];

		if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof key) {
			ca_usage_error("--set %s: KEY=VALUE", sets[i]);
			goto out;
		}
		snprintf(key, sizeof key, "%.*s", (int)(eq - sets[i]), sets[i]);
		if (!strcmp(key, "name") || !strcmp(key, "subordinate")) {
			ca_usage_error("--set %s: the CA's %s is its own", sets[i], key);
			goto out;
		}
		if (ca_conf_set(next, key, eq + 1)) {
			ca_usage_error("--set %s: %s", sets[i], ca_last_error());
			goto out;
		}
	}
	if ((strcmp(next->key, ca->conf.key) || strcmp(next->token, ca->conf.token)) && ca_conf_check_key(next)) {
		ca_error("%s names key \"%s\" on token \"%s\": %s; nothing changed", file, next->key, next->token,
			 ca_last_error());
		goto out;
	}
	if (ca_conf_diff(&ca->conf, next, change, sizeof change) ||
	    ca_conf_change(next, ca->db, "configuration imported from %s%s: %s", file, n_sets ? " with --set" : "",
			   change[0] ? change : "nothing changed"))
		goto out;
	ca->conf = *next;
	rc = 0;
out:
	free(text);
	free(in);
	free(next);
	return rc;
}
