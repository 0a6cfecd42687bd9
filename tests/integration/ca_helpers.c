/*
 * The keyward-ca integration tests' shared helpers (ca_helpers.h):
 * processes, kept outputs, and readers of what openssl prints.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "ca_helpers.h"
#include "harness.h"

char last_cmd[4096];

static char **kept;
static size_t n_kept, cap_kept;

void fail_full_at(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fputs("ERROR: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	_fail(file, line);
}

const char *keep(char *s)
{
	if (n_kept == cap_kept) {
		cap_kept = cap_kept ? 2 * cap_kept : 64;
		kept = realloc(kept, cap_kept * sizeof *kept);
		assert_non_null(kept);
	}
	kept[n_kept++] = s;
	return s;
}

const char *keepf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	assert_true(vasprintf(&s, fmt, ap) >= 0);
	va_end(ap);
	return keep(s);
}

void forget_all(void)
{
	while (n_kept)
		free(kept[--n_kept]);
	free(kept);
	kept = NULL;
	cap_kept = 0;
}

int sh(const char **out, const char *fmt, ...)
{
	va_list ap;
	char *text = NULL;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(last_cmd, sizeof last_cmd, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof last_cmd);
	rc = kwt_run(".", &text, "%s", last_cmd);
	keep(text);
	if (out)
		*out = text;
	return rc;
}

void expect_has(const char *what, const char *text, const char *needle)
{
	if (!text || !strstr(text, needle))
		fail_full("%s: \"%s\" not in:\n%s", what, needle, text ? text : "(nothing)");
}

void expect_lacks(const char *what, const char *text, const char *needle)
{
	if (text && strstr(text, needle))
		fail_full("%s: \"%s\" is in:\n%s", what, needle, text);
}

void expect_clean(const char *out)
{
	if (strstr(out, "AddressSanitizer") || strstr(out, "LeakSanitizer") || strstr(out, "runtime error:"))
		fail_full("%s: a sanitizer reported:\n%s", last_cmd, out);
}

const char *sh_ok(const char *fmt, ...)
{
	char cmd[4096];
	const char *out;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	rc = sh(&out, "%s", cmd);
	if (rc != 0)
		fail_full("%s: exit %d%s:\n%s", last_cmd, rc, rc == 124 ? " (timed out)" : "", out);
	return out;
}

const char *ca_path(void)
{
	const char *p = getenv("KEYWARD_CA");
	return p ? p : KEYWARD_CA_PATH;
}

int ca_v(const char *dir, const char **out, const char *fmt, va_list ap)
{
	char args[3000];
	int n = vsnprintf(args, sizeof args, fmt, ap);

	assert_true(n > 0 && (size_t)n < sizeof args);
	return sh(out, KWT_CA_ENV "'%s' --dir '%s' %s", ca_path(), dir, args);
}

const char *ca_ok(const char *dir, const char *fmt, ...)
{
	const char *out;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = ca_v(dir, &out, fmt, ap);
	va_end(ap);
	if (rc != 0)
		fail_full("%s: exit %d:\n%s", last_cmd, rc, out);
	expect_clean(out);
	if (strstr(out, "keyward-pkcs11: "))
		fail_full("%s succeeded, but the module logged:\n%s", last_cmd, out);
	return out;
}

const char *ca_refused(const char *dir, int rc, const char *fmt, ...)
{
	const char *out;
	va_list ap;
	int got;

	va_start(ap, fmt);
	got = ca_v(dir, &out, fmt, ap);
	va_end(ap);
	if (got != rc)
		fail_full("%s: exit %d, expected %d:\n%s", last_cmd, got, rc, out);
	expect_clean(out);
	if (strspn(out, " \n") == strlen(out))
		fail_full("%s: refused (exit %d) without a word", last_cmd, rc);
	return out;
}

int ca_rc(const char *dir, const char **out, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = ca_v(dir, out, fmt, ap);
	va_end(ap);
	expect_clean(*out);
	return rc;
}

bool ca_ok_or_usage(const char *dir, const char **out, const char *fmt, ...)
{
	char args[3000];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	rc = ca_rc(dir, out, "%s", args);
	if (rc != 0 && rc != 2)
		fail_full("%s: exit %d, expected 0 or 2 (usage):\n%s", last_cmd, rc, *out);
	return rc == 0;
}

const char *hsm_opts(const struct backend *b)
{
	return keepf("--module '%s' --pin-file '%s'%s%s%s", b->module, b->pin_file, b->token ? " --token '" : "",
		     b->token ? b->token : "", b->token ? "'" : "");
}

void softhsm_token(struct backend *b, const char *home)
{
	const char *out;

	kwt_softhsm_conf(home);
	snprintf(b->pin_file, sizeof b->pin_file, "%s/pin", home);
	kwt_write_file(b->pin_file, "1234\n");
	assert_int_equal(chmod(b->pin_file, 0600), 0); /* keyward-ca refuses a PIN file others may read */
	assert_int_equal(chdir(home), 0);
	out = sh_ok("softhsm2-util --init-token --free --label '%s' --pin 1234 --so-pin 5678", b->token);
	expect_has(last_cmd, out, "has been initialized");
}

void enter(const struct backend *b, const char *name)
{
	char path[400];

	snprintf(path, sizeof path, "%s/%s", b->work, name);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(chdir(path), 0);
}

const char *file(const char *path)
{
	char *text = kwt_read_file(path, NULL);

	if (!text)
		fail_full("%s was not written", path);
	return keep(text);
}

bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Whether bytes (n) hold secret (len) in plain, or as the hex a PostgreSQL dump prints a bytea in. */
static bool holds(const char *bytes, size_t n, const void *secret, size_t len)
{
	char hex[2 * 256 + 1];

	if (n >= len && memmem(bytes, n, secret, len))
		return true;
	if (len > 256)
		return false;
	for (size_t i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", ((const unsigned char *)secret)[i]);
	return n >= 2 * len && memmem(bytes, n, hex, 2 * len);
}

void expect_not_stored(const char *dir, const char *what, const void *secret, size_t len)
{
	const char *const sqlite[] = {"keyward-ca.db", "keyward-ca.db-wal", "export.conf"};
	const char *const pg[] = {"pg.dump", "export.conf"};
	const char *url = conf_value(file(keepf("%s/ca.conf", dir)), "database");
	const char *const *where;
	size_t n_where;

	if (url && !*url)
		url = NULL;
	where = url ? pg : sqlite;
	n_where = url ? 2 : 3;
	ca_ok(dir, "config export '%s/export.conf'", dir);
	/* on PostgreSQL: every row of the CA's database, ACME's and CMP's tables with them */
	if (url)
		sh_ok("pg_dump --data-only '%s' > '%s/pg.dump'", url, dir);
	for (size_t i = 0; i < n_where; i++) {
		const char *path = keepf("%s/%s", dir, where[i]);
		size_t n = 0;
		char *bytes = kwt_read_file(path, &n);

		/* (the WAL is gone after a clean close: nothing to look at then) */
		if (!bytes && strcmp(where[i], "keyward-ca.db-wal"))
			fail_full("%s was not written", path);
		if (bytes && holds(bytes, n, secret, len)) {
			free(bytes);
			fail_full("%s: the %s is there in plain (%zu bytes)", path, what, len);
		}
		free(bytes);
	}
	unlink(keepf("%s/export.conf", dir));
	unlink(keepf("%s/pg.dump", dir));
}

size_t b64u_bytes(const char *in, unsigned char *out, size_t max)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned acc = 0, bits = 0;
	size_t n = 0;

	for (; *in; in++) {
		const char *p = strchr(abc, *in);

		if (!p)
			fail_full("not base64url: %s", in);
		acc = (acc << 6) | (unsigned)(p - abc);
		if ((bits += 6) >= 8) {
			bits -= 8;
			assert_true(n < max);
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return n;
}

void expect_b64u_not_stored(const char *dir, const char *what, const char *b64u)
{
	unsigned char raw[256];
	size_t n = b64u_bytes(b64u, raw, sizeof raw);

	assert_true(n >= 16);
	expect_not_stored(dir, keepf("%s (base64url)", what), b64u, strlen(b64u));
	expect_not_stored(dir, keepf("%s (its bytes)", what), raw, n);
}

const char *ext_line(const char *text, const char *header)
{
	const char *p = strstr(text, header), *end;

	if (!p || !(p = strchr(p, '\n')))
		return NULL;
	p += strspn(p, " \n");
	end = p + strcspn(p, "\n");
	while (end > p && end[-1] == ' ')
		end--;
	return keepf("%.*s", (int)(end - p), p);
}

const char *line_with(const char *text, const char *needle)
{
	const char *p = strstr(text, needle), *start;

	if (!p)
		return NULL;
	for (start = p; start > text && start[-1] != '\n'; start--)
		;
	return keepf("%.*s", (int)strcspn(start, "\n"), start);
}

const char *conf_value(const char *text, const char *key)
{
	size_t n = strlen(key);

	for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		const char *p = line + strspn(line, " \t"), *end;

		if (strncmp(p, key, n) != 0 || !strchr(" \t=:", p[n]))
			continue;
		p += n;
		p += strspn(p, " \t");
		if (*p != '=' && *p != ':')
			continue;
		p++;
		p += strspn(p, " \t");
		end = p + strcspn(p, "\n");
		while (end > p && (end[-1] == ' ' || end[-1] == '\r'))
			end--;
		return keepf("%.*s", (int)(end - p), p);
	}
	return NULL;
}

const char *norm_serial(const char *s)
{
	char buf[200];
	size_t n = 0;

	for (; *s && !strchr(" \n\t", *s) && n + 1 < sizeof buf; s++)
		if (strchr("0123456789abcdefABCDEF", *s) && (n || *s != '0'))
			buf[n++] = (char)(*s >= 'a' ? *s - 32 : *s);
	buf[n] = '\0';
	return keepf("%s", n ? buf : "0");
}

const char *printed(const char *out, const char *word)
{
	size_t n = strlen(word);

	for (const char *line = out; line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
		if (strncmp(line, word, n) == 0 && line[n] == ' ')
			return keepf("%.*s", (int)strcspn(line + n + 1, " \n"), line + n + 1);
	return NULL;
}

const char *file_name(const char *name)
{
	char *s = strdup(name);

	assert_non_null(s);
	for (char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      strchr("._-", *p)))
			*p = '-';
	return keep(s);
}

const char *cert_text(const char *pem)
{
	return sh_ok("openssl x509 -noout -text -in '%s'", pem);
}

const char *cert_serial(const char *pem)
{
	const char *out = sh_ok("openssl x509 -noout -serial -in '%s'", pem);

	if (strncmp(out, "serial=", 7) != 0)
		fail_full("openssl x509 -serial: %s", out);
	return keepf("%.*s", (int)strcspn(out + 7, "\n"), out + 7);
}

const char *cert_line(const char *pem, const char *option)
{
	const char *out = sh_ok("openssl x509 -noout %s -nameopt RFC2253 -in '%s'", option, pem);

	return keepf("%.*s", (int)strcspn(out, "\n"), out);
}

const char *key_id(const char *text, const char *header)
{
	const char *id = ext_line(text, header);

	return id && strncmp(id, "keyid:", 6) == 0 ? id + 6 : id;
}

void expect_verifies(const char *ca, const char *untrusted, const char *pem)
{
	const char *out = sh_ok("openssl verify -x509_strict -CAfile '%s' %s%s%s '%s'", ca,
				untrusted ? "-untrusted '" : "", untrusted ? untrusted : "", untrusted ? "'" : "", pem);

	expect_has(last_cmd, out, keepf("%s: OK", pem));
}

json_t *entries(json_t *root)
{
	const char *key;
	json_t *v;

	if (json_is_array(root))
		return root;
	json_object_foreach(root, key, v)
	{
		if (json_is_array(v))
			return v;
	}
	fail_full("list --json: no array in the document");
	return NULL;
}

json_t *list_json(const char *dir, const char *status)
{
	const char *out = ca_ok(dir, "list --json%s%s", status ? " --status " : "", status ? status : "");
	json_error_t err;
	json_t *root = json_loads(out, 0, &err);

	if (!root)
		fail_full("%s: not JSON (%s, line %d):\n%s", last_cmd, err.text, err.line, out);
	return root;
}

const char *field(json_t *entry, const char *name)
{
	json_t *v = json_object_get(entry, name);

	if (json_is_string(v))
		return keepf("%s", json_string_value(v));
	if (json_is_integer(v))
		return keepf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
	return NULL;
}

bool listed(const char *dir, const char *status, const char *serial)
{
	json_t *root = list_json(dir, status), *e;
	const char *s;
	bool found = false;
	size_t i;

	json_array_foreach(entries(root), i, e)
	{
		if ((s = field(e, "serial")) && strcmp(norm_serial(s), norm_serial(serial)) == 0)
			found = true;
	}
	json_decref(root);
	return found;
}

const char *ca_state(const char *dir)
{
	static const char *const statuses[] = {"issued", "revoked", "pending", "denied", "expired"};
	const char *all = ca_ok(dir, "list --json");

	for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
		all = keepf("%s\n--status %s:\n%s", all, statuses[i],
			    ca_ok(dir, "list --json --status %s", statuses[i]));
	return all;
}

void expect_unchanged(const char *what, const char *before, const char *after)
{
	if (strcmp(before, after) != 0)
		fail_full("%s changed the CA:\nbefore:\n%s\nafter:\n%s", what, before, after);
}

void make_csr(const char *name, const char *newkey, const char *subj, const char *extra)
{
	sh_ok("openssl req -new -newkey %s -noenc -keyout '%s.key' -subj '%s' %s -out '%s.csr'", newkey, name, subj,
	      extra, name);
}

const char *issue_json(const char *dir, const char *name, const char *tmpl, bool json)
{
	const char *out =
		ca_ok(dir, "submit '%s.csr' --template '%s' --out '%s.pem'%s", name, tmpl, name, json ? " --json" : "");
	const char *serial = NULL;

	if (json) {
		json_t *root = json_loads(out, 0, NULL);

		if (!root || !field(root, "status") || strcmp(field(root, "status"), "issued") != 0)
			fail_full("%s: not {\"status\": \"issued\", ...}:\n%s", last_cmd, out);
		serial = field(root, "serial");
		json_decref(root);
	} else {
		serial = printed(out, "issued");
	}
	if (!serial)
		fail_full("%s: no \"issued SERIAL\" line:\n%s", last_cmd, out);
	if (strcmp(norm_serial(serial), norm_serial(cert_serial(keepf("%s.pem", name)))) != 0)
		fail_full("%s printed serial %s, the certificate has %s", last_cmd, serial,
			  cert_serial(keepf("%s.pem", name)));
	return serial;
}

const char *issue(const char *dir, const char *name, const char *tmpl)
{
	return issue_json(dir, name, tmpl, false);
}

const char *crl_check(const char *der, const char *pem)
{
	return crl_check_ca(der, pem, "ca.pem");
}

const char *crl_check_ca(const char *der, const char *pem, const char *cafile)
{
	const char *out = sh_ok("openssl crl -inform DER -in '%s' -CAfile '%s' -noout", der, cafile);

	expect_has(last_cmd, out, "verify OK");
	sh_ok("openssl crl -inform DER -in '%s' -out '%s'", der, pem);
	return sh_ok("openssl crl -inform DER -in '%s' -noout -text", der);
}

unsigned long long crl_number(const char *text, const char *header)
{
	const char *v = ext_line(text, header);
	char *end;
	unsigned long long n;

	if (!v)
		fail_full("no %s in the CRL:\n%s", header, text);
	n = strtoull(v, &end, 0);
	if (end == v || *end)
		fail_full("%s: \"%s\" is no number", header, v);
	return n;
}

const char *crl_reason(const char *text, const char *serial)
{
	const char *p = strstr(text, keepf("Serial Number: %s\n", serial)), *next, *r;

	if (!p)
		return NULL;
	next = strstr(p + 1, "Serial Number: ");
	r = strstr(p, "X509v3 CRL Reason Code:");
	if (!r || (next && r > next))
		return "";
	return ext_line(r, "X509v3 CRL Reason Code:");
}

const char *word_after(const char *out, const char *word)
{
	const char *p = strstr(out, word);

	if (!p)
		fail_full("no %s in:\n%s", word, out);
	p += strlen(word) + 1;
	return keepf("%.*s", (int)strcspn(p, "\n "), p);
}
