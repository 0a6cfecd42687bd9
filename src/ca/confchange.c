/*
 * keyward-ca: changes of the configuration (config set, templates add and
 * remove), each checked and audited; and ca.conf watched for changes made
 * by hand.
 *
 * keyward-ca.db keeps the text of ca.conf as keyward-ca last wrote it
 * (meta "ca.conf"), in the same transaction as the change's audit record.
 * When a command finds the file different, someone edited it: the lines
 * that went and came are put in the audit log then, so no change of the
 * configuration goes unrecorded, however it was made.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "ca/ca.h"

#define META_CONF "ca.conf"

/* The [ca] keys config set may change: those that do not make it another CA. */
static const char *const settable[] = {
	"server_name",		  "url_base", "legacy_url_bases", "hash", "crl_period_hours", "crl_overlap_hours",
	"delta_crl_period_hours", "module",   "token",		  "key",  "pin_file"};
/* Of those, the ones that say where the key is: the key must still be found there, and be the CA's. */
static bool moves_key(const char *key)
{
	return !strcmp(key, "module") || !strcmp(key, "token") || !strcmp(key, "key") || !strcmp(key, "pin_file");
}

int ca_conf_record(const struct ca_conf *c, struct ca_db *db)
{
	char *text = ca_conf_text(c);
	int rc = text ? ca_db_set_meta(db, META_CONF, text) : -1;

	free(text);
	return rc;
}

int ca_conf_change(const struct ca_conf *c, struct ca_db *db, const char *fmt, ...)
{
	char path[CA_PATH_MAX + 16], detail[1024], *text = ca_conf_text(c);
	struct ca_staged staged;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	ca_path(c, "ca.conf", path, sizeof path);
	/* 0600: it may hold a key URI with a pin-value */
	if (!text || ca_conf_check(c, text) || ca_stage_file(&staged, path, text, strlen(text), 0600)) {
		free(text);
		return -1;
	}
	/* replaced under the write lock, so that two changes take turns */
	if (ca_db_begin(db) || ca_db_audit(db, "config", "%s", detail) || ca_db_set_meta(db, META_CONF, text) ||
	    ca_stage_commit(&staged)) {
		ca_db_rollback(db);
		ca_stage_drop(&staged);
		free(text);
		return -1;
	}
	free(text);
	if (ca_db_commit(db)) {
		ca_db_rollback(db);
		return ca_error("ca.conf is changed, but its record could not be committed (%s); the next command "
				"records the change as made by hand",
				ca_last_error());
	}
	return 0;
}

/* ca.conf as it is on disk; malloc'd, NULL after ca_error(). */
static char *read_conf(const struct ca_conf *c)
{
	char path[CA_PATH_MAX + 16];
	size_t len;

	ca_path(c, "ca.conf", path, sizeof path);
	return ca_read_file(path, CA_CONF_MAX, &len);
}

static bool has_line(const char *text, const char *line, size_t len)
{
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, line, len) == 0 && (p[len] == '\n' || p[len] == '\0'))
			return true;
	return false;
}

/* The lines of from not in to, each after sign, onto out: "; -server_name = a". Comments and blanks skipped. */
static void lines_not_in(const char *from, const char *to, char sign, char *out, size_t size)
{
	for (const char *p = from; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		size_t len = strcspn(p, "\n"), used = strlen(out);

		if (len == 0 || *p == '#' || has_line(to, p, len))
			continue;
		snprintf(out + used, size - used, "%s%c%.*s", used ? "; " : "", sign, (int)len, p);
	}
}

int ca_conf_diff(const struct ca_conf *was, const struct ca_conf *now, char *out, size_t size)
{
	char *a = ca_conf_text(was), *b = ca_conf_text(now);
	int rc = a && b ? 0 : -1;

	out[0] = '\0';
	if (!rc) {
		lines_not_in(a, b, '-', out, size);
		lines_not_in(b, a, '+', out, size);
	}
	free(a);
	free(b);
	return rc;
}

int ca_conf_note_edits(const struct ca_conf *c, struct ca_db *db)
{
	char *now = read_conf(c), *was = NULL, change[900] = "";
	int found = -1, rc = -1;

	if (!now)
		goto out;
	if ((found = ca_db_get_meta(db, META_CONF, &was)) == 0 && !strcmp(was, now)) {
		rc = 0; /* as keyward-ca wrote it: the usual case, and no transaction */
		goto out;
	}
	free(was);
	was = NULL;
	if (found < 0 || ca_db_begin(db))
		goto out;
	/* again, inside the transaction: another keyward-ca may have noted it meanwhile */
	if ((found = ca_db_get_meta(db, META_CONF, &was)) == 0 && !strcmp(was, now)) {
		ca_db_rollback(db);
		rc = 0;
		goto out;
	}
	if (found == 0) {
		lines_not_in(was, now, '-', change, sizeof change);
		lines_not_in(now, was, '+', change, sizeof change);
	}
	if (found < 0 ||
	    (found ? ca_db_audit(db, "config", "ca.conf recorded (no record of it before)")
		   : ca_db_audit(db, "config", "ca.conf changed outside keyward-ca: %s",
				 change[0] ? change : "(comments or blank lines only)")) ||
	    ca_db_set_meta(db, META_CONF, now) || ca_db_commit(db)) {
		ca_db_rollback(db);
		goto out;
	}
	rc = 0;
out:
	free(now);
	free(was);
	return rc;
}

/* With conf's key settings, the token finds the key, and it is the CA's. */
int ca_conf_check_key(const struct ca_conf *conf)
{
	struct ca_token *token = NULL;
	EVP_PKEY *priv = NULL, *pub = NULL, *want = ca_cert_public_key(conf);
	int rc = -1;

	if (want && ca_token_open(conf, &token) == 0 && ca_token_key(token, conf->key, &priv, &pub) == 0)
		rc = ca_same_key(pub, want) ? 0 : ca_error("the key %s found there is not the CA's", conf->key);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(want);
	ca_token_close(token);
	return rc;
}

/* key's value as ca.conf writes it, into out. */
static void conf_value(const struct ca_conf *c, const char *key, char *out, size_t size)
{
	char *text = ca_conf_text(c), pattern[64], *line;

	snprintf(pattern, sizeof pattern, "\n%s = ", key);
	line = text ? strstr(text, pattern) : NULL; /* [ca] comes first: its key, not a template's */
	if (line)
		line += strlen(pattern);
	snprintf(out, size, "%.*s", line ? (int)strcspn(line, "\n") : 0, line ? line : "");
	free(text);
}

int ca_config_set(struct ca *ca, const char *key, const char *value, bool *changed)
{
	struct ca_conf next = ca->conf;
	char old[CA_PATH_MAX], resolved[CA_PATH_MAX];
	bool known = false;

	*changed = false;
	for (size_t i = 0; i < sizeof settable / sizeof settable[0]; i++)
		known = known || !strcmp(key, settable[i]);
	/* the records must move with it: database move copies, checks and then switches */
	if (!strcmp(key, "database"))
		return ca_usage_error("database cannot be set: keyward-ca database move postgresql://... (or sqlite) "
				      "copies the records there, checks them and then switches ca.conf");
	if (!known)
		return ca_usage_error("%s cannot be set (name, validity_days and subordinate are the CA's "
				      "own, fixed at setup); settable: server_name, url_base, legacy_url_bases, hash, "
				      "crl_period_hours, crl_overlap_hours, delta_crl_period_hours, module, token, key, "
				      "pin_file",
				      key);
	if (!strcmp(key, "pin_file") && *value) {
		if (!realpath(value, resolved))
			return ca_error("the PIN file %s: %s", value, strerror(errno));
		value = resolved;
	}
	if (!strcmp(key, "server_name") && (!*value || strcspn(value, " \t/\\\"'") != strlen(value)))
		return ca_usage_error("server_name \"%s\": a host name (and :port), as in URLs", value);
	if (ca_conf_set(&next, key, value))
		return ca_usage_error("%s \"%s\": not a valid value: %s", key, value, ca_last_error());
	conf_value(&ca->conf, key, old, sizeof old);
	if (!strcmp(old, value))
		return 0;
	if (moves_key(key) && ca_conf_check_key(&next))
		return ca_error("%s: %s; nothing changed", key, ca_last_error());
	if (ca_conf_change(&next, ca->db, "%s: \"%s\" -> \"%s\"", key, old, value))
		return -1;
	ca->conf = next;
	*changed = true;
	return 0;
}

int ca_template_add_file(struct ca *ca, const char *name, const char *file)
{
	struct ca_conf next = ca->conf;
	struct ca_template *t;
	size_t len;
	char *text = ca_read_file(file, CA_TEMPLATE_FILE_MAX, &len);
	int bad;

	if (!text)
		return -1;
	if (!(t = ca_template_add(&next, name))) {
		free(text);
		return ca_usage_error("template name \"%s\" is not usable, or there are too many", name);
	}
	bad = ca_template_parse(t, file, text, len);
	free(text);
	if (bad || ca_conf_change(&next, ca->db, "template %s added from %s", name, file))
		return -1;
	ca->conf = next;
	return 0;
}

int ca_template_remove(struct ca *ca, const char *name, bool *builtin_again)
{
	struct ca_conf next = ca->conf;
	size_t i;

	for (i = 0; i < next.n_templates && strcmp(next.templates[i].name, name); i++)
		;
	if (i == next.n_templates || next.templates[i].builtin)
		return ca_fail(CA_ERR_NOT_FOUND, "no added template \"%s\" to remove (built-in templates stay)", name);
	memmove(&next.templates[i], &next.templates[i + 1], (next.n_templates - i - 1) * sizeof next.templates[0]);
	next.n_templates--;
	if (ca_conf_change(&next, ca->db, "template %s removed", name))
		return -1;
	ca->conf = next;
	*builtin_again = ca_template_find(&ca->conf, name) != NULL;
	return 0;
}
