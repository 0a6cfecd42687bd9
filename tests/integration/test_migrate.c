/*
 * The seed's migration (seed/migrating-a-not-exportable-private-key.md,
 * docs/migration.md) end to end, with real processes: one development
 * keywardd and two "servers" on this host, A and B, told apart by their
 * machine-id files (KEYWARD_MACHINE_ID_FILE), so that each has its own
 * machine owner and its own CA directory. keyward-ca(8) is the contract;
 * the certificates and CRLs are checked with openssl, not by reading the
 * database:
 *
 *  - A sets up a CA on an HSM key, issues 100 certificates, revokes 10,
 *    publishes a CRL, is retired (a final CRL), makes its backup and
 *    exports its configuration; B takes over by the seed's manual steps
 *    (ksputil enumkeys -a, createtestkey -m, chkeysowner; keyward-ca keys,
 *    setup --existing-key, restoredb, config import), and again with the
 *    one command, keyward-ca migrate (after a dry run that changes
 *    nothing); then every certificate of A verifies with B's chain with
 *    A's status, B's serials are new, its CRL numbers go on above A's
 *    last, B revokes A's certificates, A's template came along, and A
 *    neither issues nor has the key in its key space;
 *  - the same for an EC P-384 CA (its key moved by hand first) and a
 *    subordinate CA; and migrate into a CA set up by hand;
 *  - migrate killed (SIGKILL, KEYWARD_CA_MIGRATE_CRASH_AFTER) after each
 *    of its steps and run again ends as an uninterrupted run does;
 *  - restoredb refuses a damaged, truncated or foreign backup and a
 *    running CA, changing not a byte of the CA directory; migrate refuses
 *    the backup of a CA not retired;
 *  - no file written (CA directories, backup, export, journal, outputs,
 *    keywardd's log) holds a byte of the private key, in any encoding.
 *    keywardd never reveals a private key, extractable or not (its
 *    CKA_PRIVATE_EXPONENT and the like are CKR_ATTRIBUTE_SENSITIVE, and
 *    wrapping needs a key it never shows): that test runs a keywardd of
 *    its own with a passphrase, and unseals the key from its store.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ca_helpers.h"
#include "serve_helpers.h"
#include "harness.h"
#include "keystore/keystore.h"

static struct kwt_server server;
static kw_client *client;
static struct backend keyward_hsm = {.module = KEYWARD_PKCS11_PATH};

/* A "server": its machine-id file and the machine owner keywardd derives from it. */
struct host {
	const char *name;
	const char *machine_id;
	char mid[320];
	char owner[KW_OWNER_MAX + 1];
};

static struct host host_a = {.name = "A", .machine_id = "0123456789abcdef0123456789abcdef"};
static struct host host_b = {.name = "B", .machine_id = "fedcba9876543210fedcba9876543210"};

/* migrate's steps, in order (keyward-ca(8)) */
static const char *const steps[] = {"find-key", "move-key", "setup", "restore", "import-config", "prove"};
#define N_STEPS (sizeof steps / sizeof *steps)

/* The commands that follow run as server h (its machine owner is "keyward machine"). */
static void on(const struct host *h)
{
	assert_int_equal(setenv("KEYWARD_MACHINE_ID_FILE", h->mid, 1), 0);
}

static const char *ksputil_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *ksputil_ok(const char *fmt, ...)
{
	char args[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	return sh_ok("'%s' %s", KSPUTIL_PATH, args);
}

/* The JSON document out (kept until json_decref: the caller's). */
static json_t *json_of(const char *out)
{
	json_error_t err;
	json_t *root = json_loads(out, 0, &err);

	if (!root)
		fail_full("%s: not JSON (%s, line %d):\n%s", last_cmd, err.text, err.line, out);
	return root;
}

/* status --json of the CA in dir, one field as text (kept): a string, a number, true/false; NULL if absent. */
static const char *status_field(const char *dir, const char *name)
{
	json_t *root = json_of(ca_ok(dir, "status --json")), *v = json_object_get(root, name);
	const char *s = NULL;

	if (json_is_boolean(v))
		s = json_is_true(v) ? "true" : "false";
	else if (v && !json_is_null(v))
		s = field(root, name);
	json_decref(root);
	return s;
}

/* status --json of the CA in dir has every key keyward-ca(8) names. */
static void expect_status_keys(const char *dir)
{
	static const char *const keys[] = {
		"name",	   "key_sha256", "cert_sha256",	   "schema_version", "issued",	"revoked",     "expired",
		"pending", "last_crl",	 "last_delta_crl", "last_crl_time",  "retired", "retired_note"};
	json_t *root = json_of(ca_ok(dir, "status --json"));

	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
		if (!json_object_get(root, keys[i]))
			fail_full("%s: no \"%s\"", last_cmd, keys[i]);
	json_decref(root);
}

/* The serials a submit --out-dir printed ("issued SERIAL CSR" lines), n of them (kept). */
static const char **issued_serials(const char *out, int n)
{
	const char **serials = calloc((size_t)n, sizeof *serials);
	int got = 0;

	assert_non_null(serials);
	keep((char *)serials);
	for (const char *line = out; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		const char *serial = printed(line, "issued");

		if (!serial)
			continue;
		if (got == n)
			fail_full("%s: more than %d certificates issued:\n%s", last_cmd, n, out);
		serials[got++] = serial;
	}
	if (got != n)
		fail_full("%s: %d of %d certificates reported issued:\n%s", last_cmd, got, n, out);
	return serials;
}

/*
 * n requests for one EC key (PREFIX1.test ...) in DIR/csr-PREFIX, submitted
 * as one batch to the CA in dir: the certificates in certs-PREFIX/SERIAL.pem;
 * their serials (normalized, kept).
 */
static const char **issue_many(const char *dir, const char *prefix, int n)
{
	const char *out;

	if (!exists("leaf.key"))
		sh_ok("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out leaf.key");
	sh_ok("mkdir csr-%s certs-%s && for i in $(seq 1 %d); do openssl req -new -key leaf.key -subj /CN=%s$i.test"
	      " -addext subjectAltName=DNS:%s$i.test -out csr-%s/%s$i.csr || exit 1; done",
	      prefix, prefix, n, prefix, prefix, prefix, prefix);
	out = ca_ok(dir, "submit csr-%s/*.csr --template WebServer --out-dir certs-%s", prefix, prefix);
	return issued_serials(out, n);
}

/* The number of "FILE: OK" lines openssl verify printed for the certificates in certs (a directory). */
static void expect_all_verify(const char *root, const char *untrusted, const char *certs, int n)
{
	const char *out =
		sh_ok("openssl verify -x509_strict -CAfile '%s' %s%s%s %s/*.pem", root, untrusted ? "-untrusted '" : "",
		      untrusted ? untrusted : "", untrusted ? "'" : "", certs);
	int ok = 0;

	for (const char *p = out; (p = strstr(p, ": OK\n")); p++)
		ok++;
	if (ok != n)
		fail_full("%s: %d of %d certificates verify:\n%s", last_cmd, ok, n, out);
}

/* The entry of list --json (list) for the certificate with serial; NULL if not listed. */
static json_t *entry_of(json_t *list, const char *serial)
{
	json_t *e;
	size_t i;

	json_array_foreach(entries(list), i, e)
	{
		const char *s = field(e, "serial");

		if (s && strcmp(norm_serial(s), norm_serial(serial)) == 0)
			return e;
	}
	return NULL;
}

/* The line of keys' output for the key labelled label (kept): "  LABEL  id ..."; NULL if none. */
static const char *key_line(const char *out, const char *label)
{
	size_t n = strlen(label);

	for (const char *line = out; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		const char *p = line + strspn(line, " ");

		if (strncmp(p, label, n) == 0 && p[n] == ' ' && strncmp(p + n + strspn(p + n, " "), "id ", 3) == 0)
			return keepf("%.*s", (int)strcspn(line, "\n"), line);
	}
	return NULL;
}

/* Whether the CRL whose text (openssl crl -text) is text lists serial (in any form). */
static bool crl_lists(const char *text, const char *serial)
{
	const char *want = norm_serial(serial);

	for (const char *p = text; (p = strstr(p, "Serial Number: ")); p++)
		if (strcmp(norm_serial(p + strlen("Serial Number: ")), want) == 0)
			return true;
	return false;
}

/* Whether audit --json of the CA in dir has an event of that name whose detail has words (NULL: any). */
static bool audited(const char *dir, const char *event, const char *words)
{
	json_t *root = json_of(ca_ok(dir, "audit --json")), *e;
	bool found = false;
	size_t i;

	if (!json_is_array(root))
		fail_full("%s: not a JSON array", last_cmd);
	json_array_foreach(root, i, e)
	{
		const char *ev = field(e, "event"), *detail = field(e, "detail");

		if (ev && !strcmp(ev, event) && (!words || (detail && strstr(detail, words))))
			found = true;
	}
	json_decref(root);
	return found;
}

static const char *snapshot(const char *dir);

/* ---- a CA on server A, and what it leaves for B ---- */

struct ca_spec {
	const char *name;     /* the CA's name */
	const char *key;      /* a key made beforehand with ksputil createkey (RSA-2048), or NULL */
	const char *key_type; /* setup --key-type when key is NULL */
	const char *hash;
	bool subordinate; /* under a root set up on A first, on a key of its own */
	bool moved;	  /* the key moved to B's owner by hand (chkeysowner) before migrate */
	bool cmp_secret;  /* a CMP secret and an ACME EAB key made on A: migrate moves their seal key with the CA key */
	int issue, revoke;
};

struct a_side {
	const struct ca_spec *spec;
	const char *label;	     /* the key: its label in the token, its name in the HSM */
	const char *root;	     /* the certificate openssl trusts: ca.pem, or the root's */
	const char *untrusted;	     /* with a subordinate: the chain A had */
	const char **serials;	     /* A's certificates; the first spec->revoke revoked */
	unsigned long long last_crl; /* the number of the last CRL A published (retire's) */
	const char *crl_file;	     /* DIR/publish/NAME.crl */
	const char *eab_kid, *eab_key; /* with spec->cmp_secret: an EAB key made on A (acme-eab), not yet used */
};

/* The CRL number of DIR/publish/NAME.crl under the CA certificate issuer (PEM copy in pem); its text in *text. */
static unsigned long long published_crl(const char *der, const char *issuer, const char *pem, const char **text)
{
	*text = crl_check_ca(der, pem, issuer);
	return crl_number(*text, "X509v3 CRL Number");
}

/*
 * backupdb DIR wrote what keyward-ca(8) says: manifest.json for this CA
 * (name, key and certificate fingerprints, counts, the last CRL number),
 * the files it names with their sizes and SHA-256, mode 0600 in a 0700
 * directory; ca.crt is the CA's chain.
 */
static void expect_backup(const char *backup, const struct a_side *a, const char *dir)
{
	json_t *m = json_of(file(keepf("%s/manifest.json", backup))), *files, *f;
	const char *name, *spki_sha256;
	struct stat st;

	if (!field(m, "format") || strcmp(field(m, "format"), "keyward-ca-backup") != 0 || !field(m, "version") ||
	    strcmp(field(m, "version"), "1") != 0)
		fail_full("%s/manifest.json: not format keyward-ca-backup version 1:\n%s", backup,
			  file(keepf("%s/manifest.json", backup)));
	if (!field(m, "ca_name") || strcmp(field(m, "ca_name"), a->spec->name) != 0)
		fail_full("%s/manifest.json: ca_name is not \"%s\"", backup, a->spec->name);
	spki_sha256 = keepf("%.64s", sh_ok("openssl x509 -noout -pubkey -in ca.pem | openssl pkey -pubin -outform DER"
					   " | sha256sum"));
	if (!field(m, "key_sha256") || strcasecmp(field(m, "key_sha256"), spki_sha256) != 0)
		fail_full("%s/manifest.json: key_sha256 %s, the CA key's public key has SHA-256 %s", backup,
			  field(m, "key_sha256"), spki_sha256);
	if (!field(m, "cert_sha256") || strcasecmp(field(m, "cert_sha256"), status_field(dir, "cert_sha256")) != 0)
		fail_full("%s/manifest.json: cert_sha256 %s, status says %s", backup, field(m, "cert_sha256"),
			  status_field(dir, "cert_sha256"));
	if (!field(m, "revoked") || atoi(field(m, "revoked")) != a->spec->revoke)
		fail_full("%s/manifest.json: revoked %s, not %d", backup, field(m, "revoked"), a->spec->revoke);
	if (!field(m, "issued") || atoi(field(m, "issued")) + atoi(field(m, "revoked")) < a->spec->issue)
		fail_full("%s/manifest.json: issued %s and revoked %s; A issued %d", backup, field(m, "issued"),
			  field(m, "revoked"), a->spec->issue);
	if (!field(m, "last_crl") || strtoull(field(m, "last_crl"), NULL, 10) != a->last_crl)
		fail_full("%s/manifest.json: last_crl %s; A's last CRL was number %llu", backup, field(m, "last_crl"),
			  a->last_crl);
	if (!json_is_true(json_object_get(m, "retired")))
		fail_full("%s/manifest.json: the backup of a retired CA is not marked retired", backup);
	files = json_object_get(m, "files");
	if (!json_is_object(files) || !json_object_get(files, "keyward-ca.db") || !json_object_get(files, "ca.crt") ||
	    !json_object_get(files, "ca.conf.export"))
		fail_full("%s/manifest.json: files lacks keyward-ca.db, ca.crt or ca.conf.export", backup);
	json_object_foreach(files, name, f)
	{
		const char *path = keepf("%s/%s", backup, name);
		const char *sum = keepf("%.64s", sh_ok("sha256sum '%s'", path));

		if (stat(path, &st) != 0 || (st.st_mode & 07777) != 0600)
			fail_full("%s: missing or not mode 0600", path);
		if (!field(f, "sha256") || strcasecmp(field(f, "sha256"), sum) != 0 || !field(f, "size") ||
		    strtoll(field(f, "size"), NULL, 10) != (long long)st.st_size)
			fail_full("%s: size %lld, SHA-256 %s; the manifest says %s, %s", path, (long long)st.st_size,
				  sum, field(f, "size"), field(f, "sha256"));
	}
	assert_int_equal(stat(backup, &st), 0);
	if ((st.st_mode & 07777) != 0700)
		fail_full("%s: mode %04o, not 0700", backup, (unsigned)(st.st_mode & 07777));
	if (strcmp(file(keepf("%s/ca.crt", backup)), file(keepf("%s/ca.crt", dir))) != 0)
		fail_full("%s/ca.crt is not the CA's chain %s/ca.crt", backup, dir);
	json_decref(m);
}

/*
 * config export wrote the seed's registry export: the CA's settings and
 * the template added on A, url_base the one A's certificates carry, nothing of this host
 * (no module, PIN file or server name).
 */
static void expect_export(const char *path, const struct a_side *a)
{
	const char *text = file(path);

	expect_has(path, text, "[ca]");
	if (!conf_value(text, "name") || strcmp(conf_value(text, "name"), a->spec->name) != 0)
		fail_full("%s: name is not %s:\n%s", path, a->spec->name, text);
	if (!conf_value(text, "url_base") || strcmp(conf_value(text, "url_base"), "http://a.test") != 0)
		fail_full("%s: url_base is not http://a.test (the certificates' base):\n%s", path, text);
	if (!conf_value(text, "hash") || strcmp(conf_value(text, "hash"), a->spec->hash) != 0)
		fail_full("%s: hash is not %s:\n%s", path, a->spec->hash, text);
	expect_has(path, text, "[template MigServer]");
	if (conf_value(text, "module") || conf_value(text, "pin_file") || conf_value(text, "server_name"))
		fail_full("%s: names something of this host (module, pin_file or server_name):\n%s", path, text);
}

/* A template added on A, which B must have after the move. */
static const char mig_tmpl[] = "validity_days = 90\n"
			       "key_usage = digitalSignature\n"
			       "extended_key_usage = serverAuth\n"
			       "ca = false\n"
			       "key_types = RSA-2048+,EC-P256,EC-P384\n"
			       "subject = cn\n"
			       "san = dns\n";

/*
 * A, retired, refuses to issue and to publish, with a message that says
 * so, and issues nothing.
 */
static void expect_a_retired(const struct a_side *a)
{
	const char *state, *out;

	(void)a;
	on(&host_a);
	if (!exists("late.csr"))
		make_csr("late", EC256, "/CN=late.test", "-addext subjectAltName=DNS:late.test");
	state = ca_state("A");
	out = ca_refused("A", 1, "submit late.csr --template WebServer --out late.pem");
	expect_has(last_cmd, out, "retired");
	out = ca_refused("A", 1, "crl");
	expect_has(last_cmd, out, "retired");
	expect_unchanged("a retired CA asked to issue and publish", state, ca_state("A"));
	if (exists("late.pem"))
		fail_full("the retired A wrote late.pem");
}

/*
 * On A: the CA of spec (a subordinate under a root of its own), spec->issue
 * certificates in one batch, spec->revoke of them revoked, a CRL; retire
 * (then A refuses to issue and to publish); backupdb backup, ca.cert,
 * config export A.conf.export. Works in the current directory: A/, root/,
 * backup/, certs-a/.
 */
static void run_a(const struct ca_spec *spec, struct a_side *a, const struct backend *b)
{
	const char *out, *text, *state;
	char cwd[400];
	unsigned long long first;

	memset(a, 0, sizeof *a);
	a->spec = spec;
	on(&host_a);
	if (spec->subordinate) {
		ca_ok("root", "setup --name '%s Root' --key-type EC-P256 --server-name ca.test %s", spec->name,
		      hsm_opts(b));
		ca_ok("root", "ca.cert root.pem");
		ca_ok("A", "setup --subordinate --name '%s' --key-type %s --hash %s --server-name a.test %s",
		      spec->name, spec->key_type, spec->hash, hsm_opts(b));
		sh_ok("cp A/ca.csr sub.csr");
		issue("root", "sub", "SubCA");
		sh_ok("cat sub.pem root.pem > sub-chain.pem");
		ca_ok("A", "install-cert sub-chain.pem");
		a->root = "root.pem";
		a->untrusted = "sub-chain.pem";
	} else if (spec->key) {
		/* the seed's key: made on A in its machine's key space, not exportable */
		out = ksputil_ok("createkey --name '%s' --algorithm RSA --size 2048 -m", spec->key);
		expect_has(last_cmd, out, keepf("under owner %s (Machine)", host_a.owner));
		ca_ok("A", "setup --name '%s' --existing-key '%s' --hash %s --server-name a.test %s", spec->name,
		      spec->key, spec->hash, hsm_opts(b));
		a->root = "ca.pem";
	} else {
		ca_ok("A", "setup --name '%s' --key-type %s --hash %s --server-name a.test %s", spec->name,
		      spec->key_type, spec->hash, hsm_opts(b));
		a->root = "ca.pem";
	}
	a->label = spec->key ? spec->key : keepf("ca-%s", spec->name);
	kwt_write_file(keepf("%s/mig.tmpl", getcwd(cwd, sizeof cwd)), mig_tmpl);
	ca_ok("A", "templates add MigServer --file mig.tmpl");
	if (spec->cmp_secret) {
		const char *eab;

		ca_ok("A", "cmp-secret MigServer --quiet");
		eab = ca_ok("A", "acme-eab MigServer");
		a->eab_kid = keepf("%.22s", strstr(eab, "kid ") + 4);
		a->eab_key = keepf("%.43s", strstr(eab, "hmac_key ") + 9);
	}
	if (!key_line(ca_ok("A", "keys"), a->label))
		fail_full("%s: no key \"%s\":\n%s", last_cmd, a->label, ca_ok("A", "keys"));
	ca_ok("A", "ca.cert ca.pem");

	a->serials = issue_many("A", "a", spec->issue);
	for (int i = 0; i < spec->revoke; i++)
		ca_ok("A", "revoke %s --reason %s", a->serials[i], i % 2 ? "superseded" : "keyCompromise");
	ca_ok("A", "crl");
	a->crl_file = keepf("A/publish/%s.crl", file_name(spec->name));
	first = published_crl(a->crl_file, "ca.pem", "a-crl.pem", &text);
	for (int i = 0; i < spec->revoke; i++)
		if (!crl_lists(text, a->serials[i]))
			fail_full("%s does not list %s, revoked on A:\n%s", a->crl_file, a->serials[i], text);

	/*
	 * A retires first: a final CRL, then no more issuing or publishing; so
	 * the backup knows A's last CRL, and migrate takes it (keyward-ca(8))
	 */
	state = ca_state("A");
	expect_has(last_cmd, ca_refused("A", 2, "retire"), "--yes");
	expect_unchanged("retire without --yes", state, ca_state("A"));
	ca_ok("A", "retire --yes");
	a->last_crl = published_crl(a->crl_file, "ca.pem", "a-final.pem", &text);
	if (a->last_crl <= first)
		fail_full("retire: the last CRL has number %llu, the one before %llu", a->last_crl, first);
	for (int i = 0; i < spec->revoke; i++)
		if (!crl_lists(text, a->serials[i]))
			fail_full("retire's final CRL does not list %s:\n%s", a->serials[i], text);
	if (!status_field("A", "retired") || strcmp(status_field("A", "retired"), "true") != 0)
		fail_full("status --json after retire: retired is %s", status_field("A", "retired"));
	expect_status_keys("A");
	if (!status_field("A", "retired_note") || !*status_field("A", "retired_note"))
		fail_full("status --json after retire: no retired_note");

	/* the seed's backup: certutil -backupdb, -ca.cert, reg export */
	ca_ok("A", "backupdb backup");
	expect_backup("backup", a, "A");
	ca_ok("A", "ca.cert ca-again.pem");
	if (strcmp(file("ca-again.pem"), file("ca.pem")) != 0)
		fail_full("ca.cert of the retired A is not its certificate");
	ca_ok("A", "config export A.conf.export");
	expect_export("A.conf.export", a);
	expect_export("backup/ca.conf.export", a);
	expect_a_retired(a);
}

/* ---- server B ---- */

/*
 * The seed's key-space steps on B: enumkeys -a shows A's key under A's
 * owner; createtestkey -m shows B's owner, marked (Machine); chkeysowner
 * moves the key; then keyward-ca keys, without a CA directory, finds it
 * and marks it as the key of A's certificate.
 */
static void move_key_by_hand(const struct a_side *a, const struct backend *b)
{
	const char *out, *under_a, *line;

	on(&host_b);
	out = ksputil_ok("enumkeys -a");
	under_a = strstr(out, keepf("Owner: %s\n", host_a.owner));
	if (!under_a || !strstr(under_a, keepf("+ Key name:                     %s\n", a->label)))
		fail_full("enumkeys -a on B: \"%s\" not under A's owner %s:\n%s", a->label, host_a.owner, out);
	out = ksputil_ok("createtestkey -m");
	expect_has(last_cmd, out, keepf("under owner %s (Machine)", host_b.owner));
	out = ksputil_ok("enumkeys -a");
	expect_has(last_cmd, out, keepf("Owner: %s (Machine)\n", host_b.owner));
	out = ksputil_ok("chkeysowner '%s' %s %s", a->label, host_a.owner, host_b.owner);
	expect_has(last_cmd, out, keepf("Moved key \"%s\"", a->label));

	/* certutil -csp ... -key: the key is visible from B now; no CA directory yet */
	if (exists("B"))
		fail_full("B/ exists before B's setup");
	out = ca_ok("B", "keys --cert ca.pem %s", hsm_opts(b));
	line = key_line(out, a->label);
	if (!line || !strstr(line, "<- the key of --cert"))
		fail_full("%s: \"%s\" not marked as the key of --cert:\n%s", last_cmd, a->label, out);
	if (exists("B/ca.conf"))
		fail_full("keys made a CA in B/");
	{
		const char *listing = ca_ok("B", "keys --cert ca.pem --json %s", hsm_opts(b));
		json_t *keys = json_of(listing), *k;
		size_t i;
		int on_token = 0, in_hsm = 0;

		/*
		 * the token's keys (this machine's key space) have an id; keys
		 * also lists every owner's key pairs on a keyward HSM, with their
		 * owner: one of each is the key, under B's owner
		 */
		json_array_foreach(keys, i, k)
		{
			if (!json_is_true(json_object_get(k, "matches_cert")))
				continue;
			if (field(k, "owner"))
				in_hsm++;
			else
				on_token++;
			if (!field(k, "label") || strcmp(field(k, "label"), a->label) != 0)
				fail_full("keys --json: %s matches ca.pem, not %s", field(k, "label"), a->label);
			if (field(k, "owner") && strcmp(field(k, "owner"), host_b.owner) != 0)
				fail_full("keys --json: the key of ca.pem is under owner %s, not B's %s",
					  field(k, "owner"), host_b.owner);
			if (!field(k, "owner") && (!field(k, "id") || !field(k, "public_key_sha256")))
				fail_full("keys --json: no id or public_key_sha256 in the entry of %s", a->label);
		}
		if (on_token != 1 || in_hsm > 1)
			fail_full("keys --cert ca.pem --json: %d of the token's keys and %d of the HSM's match:\n%s",
				  on_token, in_hsm, listing);
		json_decref(keys);
	}

	/* a certificate whose key the HSM does not hold: exit 1 */
	sh_ok("openssl req -x509 -newkey " EC256 " -noenc -keyout stranger.key -subj '/CN=Stranger' -days 30"
	      " -out stranger.pem");
	ca_refused("B", 1, "keys --cert stranger.pem %s", hsm_opts(b));
	if (exists("B"))
		fail_full("keys made B/");
}

/* The seed's CA steps on B: setup on the existing key, restore the database, import the configuration. */
static void restore_by_hand(const struct a_side *a, const struct backend *b)
{
	on(&host_b);
	ca_ok("B", "setup --name '%s' --existing-key '%s' --cert ca.pem --hash %s --server-name b.test %s",
	      a->spec->name, a->label, a->spec->hash, hsm_opts(b));
	ca_ok("B", "restoredb backup");
	ca_ok("B", "config import A.conf.export --set server_name=b.test");
}

/* migrate's journal in dir: one line per finished step, the steps in order, the first n of them and no more. */
static void expect_journal_steps(const char *dir, size_t n_done)
{
	const char *journal = file(keepf("%s/migrate.journal", dir)), *line = journal;

	for (size_t i = 0; i < n_done; i++) {
		size_t n = strlen(steps[i]);

		if (!line || strncmp(line, steps[i], n) != 0 || !strchr(" \t\n", line[n]))
			fail_full("%s/migrate.journal: no line for step %s where expected:\n%s", dir, steps[i],
				  journal);
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	if (line && *line)
		fail_full("%s/migrate.journal: more than the %zu steps finished:\n%s", dir, n_done, journal);
}

static void expect_journal(const char *dir)
{
	expect_journal_steps(dir, N_STEPS);
}

/* migrate --dry-run on B: the plan names every step, and nothing changes, not even the key's owner. */
static void dry_run(const struct a_side *a, const struct backend *b, const char *extra)
{
	const char *keys_before, *out;

	on(&host_b);
	keys_before = ksputil_ok("enumkeys -a");
	out = ca_ok("B", "migrate --from backup --server-name b.test --dry-run%s %s", extra, hsm_opts(b));
	for (size_t i = 0; i < N_STEPS; i++)
		expect_has(last_cmd, out, steps[i]);
	expect_has(last_cmd, out, a->label);
	if (exists("B") && strcmp(sh_ok("ls -A B"), "") != 0)
		fail_full("migrate --dry-run wrote in B/:\n%s", sh_ok("ls -lA B"));
	expect_unchanged("migrate --dry-run (enumkeys -a)", keys_before, ksputil_ok("enumkeys -a"));
}

/* keyward-ca migrate on B, after a dry run; the journal has every step; a second run changes nothing. */
static void migrate(const struct a_side *a, const struct backend *b, const char *extra)
{
	const char *state;

	dry_run(a, b, extra);
	ca_ok("B", "migrate --from backup --server-name b.test%s %s", extra, hsm_opts(b));
	expect_journal("B");
	state = ca_state("B");
	ca_ok("B", "migrate --from backup --server-name b.test%s %s", extra, hsm_opts(b));
	expect_unchanged("migrate run again after it finished", state, ca_state("B"));
}

/*
 * After the move, on B: the CA certificate is A's; every certificate of A
 * verifies with B's chain and has A's status; B's new certificates have
 * serials A never used and still carry A's URL base; B's CRL numbers go on
 * above A's last; B revokes one of A's certificates and its CRL lists it
 * beside A's revocations; the restore is in B's audit log. On A: it still
 * refuses to issue, and its key space no longer has the key.
 */
static void expect_taken_over(const struct a_side *a, int prove_certs)
{
	const struct ca_spec *spec = a->spec;
	const char **mine, *text, *crl, *keys;
	json_t *list;
	unsigned long long number;
	int n_b = 10;

	on(&host_b);
	ca_ok("B", "ca.cert b-ca.pem");
	if (strcmp(file("b-ca.pem"), file("ca.pem")) != 0)
		fail_full("B's CA certificate is not A's:\n%s", file("b-ca.pem"));
	ca_ok("B", "ca.chain b-chain.pem");
	if (spec->subordinate)
		expect_all_verify(a->root, "b-chain.pem", "certs-a", spec->issue);
	else
		expect_all_verify("b-chain.pem", NULL, "certs-a", spec->issue);
	if (!status_field("B", "retired") || strcmp(status_field("B", "retired"), "false") != 0)
		fail_full("B: status --json says retired %s", status_field("B", "retired"));
	expect_status_keys("B");
	expect_has("config show on B", ca_ok("B", "config show"), "server_name = b.test");

	/* every certificate of A, with A's status, and A's revocations with their reason and time */
	list = list_json("B", NULL);
	for (int i = 0; i < spec->issue; i++) {
		json_t *e = entry_of(list, a->serials[i]);
		const char *st = e ? field(e, "status") : NULL;

		if (!st || strcmp(st, i < spec->revoke ? "revoked" : "issued") != 0)
			fail_full("B's list --json: A's %s is %s, not %s", a->serials[i], st ? st : "missing",
				  i < spec->revoke ? "revoked" : "issued");
		if (i < spec->revoke &&
		    (!field(e, "reason") || strcmp(field(e, "reason"), i % 2 ? "superseded" : "keyCompromise") != 0 ||
		     !field(e, "reason_code") || strcmp(field(e, "reason_code"), i % 2 ? "4" : "1") != 0 ||
		     !field(e, "revoked_at")))
			fail_full("B's list --json: A's revoked %s has reason %s (code %s), revoked_at %s",
				  a->serials[i], field(e, "reason"), field(e, "reason_code"), field(e, "revoked_at"));
	}
	if (json_array_size(entries(list)) != (size_t)(spec->issue + prove_certs))
		fail_full("B's list --json has %zu certificates; A issued %d, migrate's proof %d",
			  json_array_size(entries(list)), spec->issue, prove_certs);
	json_decref(list);

	/* B issues: serials A never used, the URLs of A's url_base */
	mine = issue_many("B", "b", n_b);
	for (int i = 0; i < n_b; i++) {
		for (int j = 0; j < spec->issue; j++)
			if (strcmp(norm_serial(mine[i]), norm_serial(a->serials[j])) == 0)
				fail_full("B issued serial %s, which A had issued", mine[i]);
		for (int j = 0; j < i; j++)
			if (strcmp(norm_serial(mine[i]), norm_serial(mine[j])) == 0)
				fail_full("B issued serial %s twice", mine[i]);
	}
	if (spec->subordinate)
		expect_all_verify(a->root, "b-chain.pem", "certs-b", n_b);
	else
		expect_all_verify("b-chain.pem", NULL, "certs-b", n_b);
	text = cert_text(keepf("certs-b/%s.pem", mine[0]));
	expect_has("a certificate B issued (url_base kept from A)", text,
		   keepf("URI:http://a.test/crl/%s.crl", file_name(spec->name)));

	/* B revokes one of A's and one of its own; its CRL goes on above A's last */
	ca_ok("B", "revoke %s --reason keyCompromise", a->serials[spec->revoke]);
	ca_ok("B", "revoke %s --reason superseded", mine[0]);
	ca_ok("B", "crl");
	crl = keepf("B/publish/%s.crl", file_name(spec->name));
	number = published_crl(crl, "b-ca.pem", "b-crl.pem", &text);
	if (number <= a->last_crl)
		fail_full("B's CRL has number %llu; A's last had %llu", number, a->last_crl);
	text = sh_ok("openssl crl -in b-crl.pem -noout -text");
	for (int i = 0; i <= spec->revoke; i++)
		if (!crl_lists(text, a->serials[i]))
			fail_full("B's CRL does not list A's revoked %s:\n%s", a->serials[i], text);
	if (!crl_lists(text, mine[0]) || crl_lists(text, a->serials[spec->revoke + 1]))
		fail_full("B's CRL: not %s, or %s, which is not revoked:\n%s", mine[0], a->serials[spec->revoke + 1],
			  text);
	{
		/* the old certificate fails under B's CRL, a good one of A's passes */
		const char *trust = spec->subordinate ? a->root : "b-chain.pem";
		const char *untrusted = spec->subordinate ? "-untrusted b-chain.pem" : "";
		const char *out;

		if (sh(&out, "openssl verify -crl_check -CAfile '%s' %s -CRLfile b-crl.pem certs-a/%s.pem", trust,
		       untrusted, a->serials[spec->revoke]) == 0)
			fail_full("A's %s verifies under B's CRL that revokes it:\n%s", a->serials[spec->revoke], out);
		expect_has(last_cmd, out, "certificate revoked");
		sh_ok("openssl verify -crl_check -CAfile '%s' %s -CRLfile b-crl.pem certs-a/%s.pem", trust, untrusted,
		      a->serials[spec->revoke + 1]);
	}
	if (!audited("B", "restore", NULL))
		fail_full("B's audit --json has no \"restore\" event:\n%s", ca_ok("B", "audit"));

	/* A's added template came along */
	make_csr("tmpl", EC256, "/CN=tmpl.test", "-addext subjectAltName=DNS:tmpl.test");
	issue("B", "tmpl", "MigServer");
	sh_ok("openssl x509 -noout -in tmpl.pem -checkend %d", 89 * 86400);
	if (sh(&text, "openssl x509 -noout -in tmpl.pem -checkend %d", 91 * 86400) == 0)
		fail_full("tmpl.pem (template MigServer, 90 days) is valid for more than 91 days");

	/* A: retired, and the key is no longer in its key space */
	expect_a_retired(a);
	keys = ca_ok("A", "keys");
	if (key_line(keys, a->label))
		fail_full("A still lists the key \"%s\":\n%s", a->label, keys);
	expect_has("enumkeys -m on A", ksputil_ok("enumkeys -m"), keepf("Owner: %s (Machine)", host_a.owner));
	expect_lacks("enumkeys -m on A", ksputil_ok("enumkeys -m"),
		     keepf("Key name:                     %s\n", a->label));
}

/* ---- fixtures ---- */

static void free_needles(void);

static int setup(void **state)
{
	(void)state;
	client = kwt_start_dev_client(&server);
	assert_int_equal(setenv("KEYWARD_CONF", server.conf, 1), 0);
	for (struct host *h = &host_a; h; h = h == &host_a ? &host_b : NULL) {
		snprintf(h->mid, sizeof h->mid, "%s/machine-id-%s", server.dir, h->name);
		kwt_write_file(h->mid, keepf("%s\n", h->machine_id));
		kwt_ok(kw_owner_from_machine_id(h->machine_id, h->owner, sizeof h->owner));
	}
	assert_string_not_equal(host_a.owner, host_b.owner);
	snprintf(keyward_hsm.pin_file, sizeof keyward_hsm.pin_file, "%s/pin", server.dir);
	snprintf(keyward_hsm.work, sizeof keyward_hsm.work, "%s/work", server.dir);
	assert_int_equal(mkdir(keyward_hsm.work, 0700), 0);

	forget_all();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(chdir("/"), 0);
	kwt_stop_client(&server, client);
	return 0;
}

static int test_done(void **state)
{
	(void)state;
	forget_all();
	free_needles();
	setenv("KEYWARD_CONF", server.conf, 1);
	return chdir("/");
}

/* ---- the tests ---- */

/* a: the seed's procedure, each step a command an administrator types. */
static void test_manual(void **state)
{
	static const struct ca_spec spec = {
		.name = "myDemoCA", .key = "myDemoCA", .hash = "sha256", .issue = 100, .revoke = 10};
	struct a_side a;

	(void)state;
	enter(&keyward_hsm, "manual");
	run_a(&spec, &a, &keyward_hsm);
	move_key_by_hand(&a, &keyward_hsm);
	restore_by_hand(&a, &keyward_hsm);
	expect_taken_over(&a, 0);

	/*
	 * config import audited each change it made (keyward-ca(8)): B was set
	 * up with its own URL base (http://b.test), the import brought A's
	 */
	if (!audited("B", "config", "http://a.test"))
		fail_full("config import: no audit record names the url_base it set, http://a.test:\n%s",
			  ca_ok("B", "audit"));
}

/*
 * The EAB key made on A, sealed in A's database, unseals on B: serve on B
 * takes an ACME account bound to it (certbot's ACME library), and the key
 * is in plain nowhere in B's database.
 */
static void expect_eab_works(const struct a_side *a)
{
	unsigned short port = kwt_free_port();
	const char *out;
	pid_t pid;

	on(&host_b);
	expect_b64u_not_stored("B", "EAB key", a->eab_key);
	kwt_write_file("B/acme.conf", "[acme]\ntemplates = MigServer\neab_templates = MigServer\n");
	pid = serve_start("B", port, "b-serve.log");
	sh(&out, "/usr/bin/python3 '%s/acme_jws.py' eab http://127.0.0.1:%u/acme/MigServer/directory '%s' '%s' 2>&1",
	   SOURCE_DIR, port, a->eab_kid, a->eab_key);
	serve_stop(pid);
	unlink("B/acme.conf");
	if (!strstr(out, "eab-account 201 -\n"))
		fail_full("an ACME account with A's EAB key on B:\n%s\nserve's log:\n%s", out, file("b-serve.log"));
}

/*
 * b and c: the same with keyward-ca migrate, one command on B (the key found
 * across owners and moved by it, or found where it was moved by hand), for
 * the CA of the state.
 */
static void test_migrate(void **state)
{
	const struct ca_spec *spec = *state;
	struct a_side a;

	enter(&keyward_hsm, keepf("migrate-%s", file_name(spec->name)));
	run_a(spec, &a, &keyward_hsm);
	if (spec->moved) {
		on(&host_b);
		ksputil_ok("chkeysowner '%s' %s %s", a.label, host_a.owner, host_b.owner);
	}
	migrate(&a, &keyward_hsm, spec->key_type[0] == 'R' ? " --config A.conf.export" : "");
	if (spec->cmp_secret) {
		const char *seal = keepf("%s.cmp-seal", file_name(spec->name));
		const char *out = ksputil_ok("enumkeys -a"), *under_b = strstr(out, keepf("Owner: %s", host_b.owner));
		const char *under_a = strstr(out, keepf("Owner: %s", host_a.owner));

		expect_has("migrate's output", file("B/migrate.journal"), "move-key");
		if (!under_b || !strstr(under_b, seal) || (under_a && under_a < under_b && strstr(under_a, seal) < under_b))
			fail_full("enumkeys -a on B: CMP's seal key \"%s\" is not under B's owner %s:\n%s", seal,
				  host_b.owner, out);
	}
	if (spec->moved)
		expect_has("migrate.journal (the key under B's owner already)",
			   line_with(file("B/migrate.journal"), "move-key"), "already");
	expect_taken_over(&a, 1);
	/* (after: serve makes its delegated OCSP certificate, which expect_taken_over would count) */
	if (spec->cmp_secret)
		expect_eab_works(&a);
}

static const struct ca_spec rsa_ca = {.name = "Migrated RSA CA",
				      .key_type = "RSA-2048",
				      .hash = "sha256",
				      .cmp_secret = true,
				      .issue = 100,
				      .revoke = 10};
static const struct ca_spec p384_ca = {
	.name = "Migrated P384 CA", .key_type = "EC-P384", .hash = "sha384", .issue = 30, .revoke = 5, .moved = true};

/* c: a subordinate CA (its root on a key of its own, which stays on A). */
static void test_migrate_subordinate(void **state)
{
	static const struct ca_spec spec = {.name = "Migrated Issuing CA",
					    .key_type = "RSA-2048",
					    .hash = "sha256",
					    .subordinate = true,
					    .issue = 30,
					    .revoke = 5};
	struct a_side a;

	(void)state;
	enter(&keyward_hsm, "migrate-sub");
	run_a(&spec, &a, &keyward_hsm);
	migrate(&a, &keyward_hsm, "");
	expect_taken_over(&a, 1);
	/* the root's key stayed with A */
	on(&host_a);
	if (!key_line(ca_ok("root", "keys"), keepf("ca-%s Root", spec.name)))
		fail_full("the root's key left A:\n%s", ca_ok("root", "keys"));
}

/*
 * migrate after the first manual steps (the key moved, the CA set up on
 * it): --dry-run changes not a byte of CADIR, not even a journal; then the
 * run skips what was done, restores, imports and proves.
 */
static void test_migrate_after_manual_steps(void **state)
{
	static const struct ca_spec spec = {
		.name = "Half Manual CA", .key_type = "EC-P256", .hash = "sha256", .issue = 5, .revoke = 1};
	struct a_side a;
	const char *files, *out;

	(void)state;
	enter(&keyward_hsm, "half-manual");
	run_a(&spec, &a, &keyward_hsm);
	on(&host_b);
	ksputil_ok("chkeysowner '%s' %s %s", a.label, host_a.owner, host_b.owner);
	ca_ok("B", "setup --name '%s' --existing-key '%s' --cert ca.pem --server-name b.test %s", spec.name, a.label,
	      hsm_opts(&keyward_hsm));
	files = snapshot("B");
	out = ca_ok("B", "migrate --from backup --server-name b.test --dry-run %s", hsm_opts(&keyward_hsm));
	for (size_t i = 0; i < N_STEPS; i++)
		expect_has(last_cmd, out, steps[i]);
	expect_unchanged("migrate --dry-run into a CA set up by hand", files, snapshot("B"));
	ca_ok("B", "migrate --from backup --server-name b.test %s", hsm_opts(&keyward_hsm));
	expect_journal("B");
	expect_has("migrate.journal", line_with(file("B/migrate.journal"), "move-key"), "already");
	expect_taken_over(&a, 1);
}

/* B's counts, as status --json gives them, in one line (kept). */
static const char *counts(const char *dir)
{
	return keepf("issued %s, revoked %s, pending %s, retired %s", status_field(dir, "issued"),
		     status_field(dir, "revoked"), status_field(dir, "pending"), status_field(dir, "retired"));
}

/*
 * d: migrate killed with SIGKILL right after each step (as a power cut
 * would), then run again without the fault: it resumes from its journal
 * and ends where an uninterrupted run ends (the same counts, A's
 * certificates with A's statuses, one proof certificate), and B works.
 */
static void test_migrate_interrupted(void **state)
{
	const char *reference = NULL, *out;

	(void)state;
	for (int k = -1; k < (int)N_STEPS; k++) {
		struct ca_spec *spec = calloc(1, sizeof *spec);
		struct a_side a;
		int rc;

		assert_non_null(spec);
		keep((char *)spec);
		spec->name = keepf("Crash %s CA", k < 0 ? "none" : steps[k]);
		spec->key_type = "EC-P256";
		spec->hash = "sha256";
		spec->issue = 5;
		spec->revoke = 1;
		assert_int_equal(chdir("/"), 0);
		enter(&keyward_hsm, keepf("crash-%s", k < 0 ? "none" : steps[k]));
		run_a(spec, &a, &keyward_hsm);
		on(&host_b);
		if (k >= 0) {
			if (k == 0) {
				/* the steps that can be interrupted are the ones the dry run lists */
				out = ca_ok("B", "migrate --from backup --server-name b.test --dry-run %s",
					    hsm_opts(&keyward_hsm));
				for (size_t i = 0; i < N_STEPS; i++)
					expect_has(last_cmd, out, steps[i]);
			}
			assert_int_equal(setenv("KEYWARD_CA_MIGRATE_CRASH_AFTER", steps[k], 1), 0);
			rc = ca_rc("B", &out, "migrate --from backup --server-name b.test %s", hsm_opts(&keyward_hsm));
			assert_int_equal(unsetenv("KEYWARD_CA_MIGRATE_CRASH_AFTER"), 0);
			if (rc != 128 + SIGKILL)
				fail_full("%s with KEYWARD_CA_MIGRATE_CRASH_AFTER=%s: exit %d, not killed by "
					  "SIGKILL:\n%s",
					  last_cmd, steps[k], rc, out);
			expect_journal_steps("B", (size_t)k + 1);
		}
		ca_ok("B", "migrate --from backup --server-name b.test %s", hsm_opts(&keyward_hsm));
		expect_journal("B");
		if (!reference)
			reference = counts("B");
		else if (strcmp(counts("B"), reference) != 0)
			fail_full("migrate interrupted after %s, then resumed: %s; uninterrupted: %s", steps[k],
				  counts("B"), reference);
		expect_taken_over(&a, 1);
	}
}

/* ---- refusals that change nothing ---- */

/*
 * Every file under dir, byte for byte: path, mode and size of each entry,
 * the SHA-256 of each file (kept). Not SQLite's -shm index (shared memory,
 * no data) nor the empty lock file any command may create.
 */
static const char *snapshot(const char *dir)
{
	return sh_ok("cd '%s' && find . ! -name '*-shm' ! -name .keyward-ca.lock -printf '%%p %%m %%s\\n' | sort &&"
		     " find . -type f ! -name '*-shm' ! -name .keyward-ca.lock -print0 | sort -z | xargs -0 sha256sum",
		     dir);
}

/* restoredb BACKUP [--force] into dir refused (exit 1, with a word), and not a byte of dir changed. */
static const char *expect_restore_refused(const char *dir, const char *backup, const char *force, const char *why)
{
	const char *files = snapshot(dir), *state = ca_state(dir), *out;

	out = ca_refused(dir, 1, "restoredb '%s'%s", backup, force);
	expect_unchanged(keepf("restoredb of %s (%s)", backup, why), files, snapshot(dir));
	expect_unchanged(keepf("restoredb of %s (%s)", backup, why), state, ca_state(dir));
	return out;
}

/* The byte at offset in the file at path, XORed with x. */
static void flip_byte(const char *path, long offset, unsigned char x)
{
	FILE *f = fopen(path, "r+b");
	int c;

	assert_non_null(f);
	assert_int_equal(fseek(f, offset, SEEK_SET), 0);
	assert_true((c = fgetc(f)) != EOF);
	assert_int_equal(fseek(f, offset, SEEK_SET), 0);
	assert_true(fputc(c ^ x, f) != EOF);
	assert_int_equal(fclose(f), 0);
}

/* The manifest of backup made to agree with its keyward-ca.db again (size and SHA-256). */
static void reseal_manifest(const char *backup)
{
	const char *path = keepf("%s/manifest.json", backup), *db = keepf("%s/keyward-ca.db", backup);
	json_t *m = json_of(file(path)), *f = json_object_get(json_object_get(m, "files"), "keyward-ca.db");
	struct stat st;

	assert_non_null(f);
	assert_int_equal(stat(db, &st), 0);
	assert_int_equal(json_object_set_new(f, "sha256", json_string(keepf("%.64s", sh_ok("sha256sum '%s'", db)))), 0);
	assert_int_equal(json_object_set_new(f, "size", json_integer(st.st_size)), 0);
	assert_int_equal(json_dump_file(m, path, JSON_INDENT(2)), 0);
	json_decref(m);
}

/* sh -c script in a process group of its own (so that one kill reaches what it starts); its id. */
static pid_t start_group(const char *script)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		execl("/bin/sh", "sh", "-c", script, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	return pid;
}

/*
 * e: restoredb refuses, before changing anything: a backup with a byte
 * flipped in its database (the manifest's checksum catches it), the same
 * damage with the manifest made to agree (the database's integrity check
 * catches it), a truncated database, a truncated or missing manifest, a
 * foreign CA's backup without --force (--force does not excuse damage), and
 * any backup while the CA runs (a shared lock on DIR/.keyward-ca.lock, as
 * keyward-ca serve holds it). Then the good backup restores, and the next
 * CRL number is above every CRL the directory published.
 */
static void test_restore_refusals(void **state)
{
	const char *out, *text;
	unsigned long long before, after;
	long page_size;
	unsigned char hdr[18];
	FILE *f;
	pid_t holder;
	int st;

	(void)state;
	enter(&keyward_hsm, "refusals");
	on(&host_a);
	ca_ok("ca", "setup --name 'Refusal CA' --key-type EC-P256 --server-name a.test %s", hsm_opts(&keyward_hsm));
	ca_ok("ca", "ca.cert ca.pem");
	issue_many("ca", "r", 5);
	ca_ok("ca", "crl");
	ca_ok("ca", "backupdb good");
	/* the CA goes on, so that a restore that happened would show */
	make_csr("later", EC256, "/CN=later.test", "-addext subjectAltName=DNS:later.test");
	issue("ca", "later", "WebServer");
	ca_ok("ca", "crl");
	ca_ok("ca", "crl");
	before = crl_number(crl_check(keepf("ca/publish/%s.crl", file_name("Refusal CA")), "before.pem"),
			    "X509v3 CRL Number");

	/* damaged */
	sh_ok("cp -a good flipped && cp -a good unsound && cp -a good truncated && cp -a good short-manifest"
	      " && cp -a good no-manifest");
	assert_non_null(f = fopen("good/keyward-ca.db", "rb"));
	assert_int_equal(fread(hdr, 1, sizeof hdr, f), sizeof hdr);
	fclose(f);
	page_size = hdr[16] << 8 | hdr[17];
	if (page_size == 1)
		page_size = 65536;
	flip_byte("flipped/keyward-ca.db", strtol(sh_ok("stat -c %%s flipped/keyward-ca.db"), NULL, 10) / 2, 0x5a);
	expect_restore_refused("ca", "flipped", "", "a byte flipped in keyward-ca.db");
	expect_restore_refused("ca", "flipped", " --force", "a byte flipped, with --force");
	flip_byte("unsound/keyward-ca.db", page_size, 0xff); /* page 2's b-tree page type */
	reseal_manifest("unsound");
	expect_restore_refused("ca", "unsound", "", "a damaged database with a manifest that agrees");
	sh_ok("truncate -s %ld truncated/keyward-ca.db", page_size * 2);
	expect_restore_refused("ca", "truncated", "", "keyward-ca.db truncated");
	sh_ok("truncate -s 40 short-manifest/manifest.json");
	expect_restore_refused("ca", "short-manifest", "", "manifest.json truncated");
	sh_ok("rm no-manifest/manifest.json");
	expect_restore_refused("ca", "no-manifest", "", "no manifest.json");

	/* another CA's backup */
	ca_ok("foreign", "setup --name 'Foreign CA' --key-type EC-P256 --server-name a.test %s",
	      hsm_opts(&keyward_hsm));
	ca_ok("foreign", "backupdb foreign-backup");
	expect_restore_refused("ca", "foreign-backup", "", "another CA's backup");

	/* and its configuration: config import refuses another CA's, changing nothing */
	ca_ok("foreign", "config export foreign.conf");
	{
		const char *files = snapshot("ca");

		ca_refused("ca", 1, "config import foreign.conf --set server_name=b.test");
		expect_unchanged("config import of another CA's export", files, snapshot("ca"));
	}

	/* backupdb into a directory that holds something: refused, that directory unchanged */
	{
		const char *files = snapshot("good");

		ca_refused("ca", 1, "backupdb good");
		expect_unchanged("backupdb into a backup", files, snapshot("good"));
	}

	/* a running CA: keyward-ca serve holds a shared lock on DIR/.keyward-ca.lock */
	holder = start_group("exec flock -s ca/.keyward-ca.lock sleep 60");
	for (int i = 0; i < 100 && sh(&out, "flock -n -x ca/.keyward-ca.lock true") == 0; i++)
		usleep(50 * 1000);
	if (sh(&out, "flock -n -x ca/.keyward-ca.lock true") == 0)
		fail_full("the lock holder (flock -s ca/.keyward-ca.lock) did not take the lock");
	out = expect_restore_refused("ca", "good", "", "a running CA");
	assert_int_equal(kill(-holder, SIGKILL), 0);
	assert_int_equal(waitpid(holder, &st, 0), holder);

	/* migrate refuses the backup of a CA that was not retired, and changes nothing (not the key's owner) */
	{
		const char *keys;

		on(&host_b);
		keys = ksputil_ok("enumkeys -a");
		out = ca_refused("B", 1, "migrate --from good --server-name b.test %s", hsm_opts(&keyward_hsm));
		expect_has(last_cmd, out, "retire");
		if (exists("B"))
			fail_full("a refused migrate made B/:\n%s", sh_ok("ls -lA B"));
		expect_unchanged("a refused migrate (enumkeys -a)", keys, ksputil_ok("enumkeys -a"));
		on(&host_a);
	}

	/* the good backup restores, audited; CRL numbers go on above every CRL published */
	ca_ok("ca", "restoredb good");
	expect_has("audit after restoredb", ca_ok("ca", "audit"), "restore");
	ca_ok("ca", "crl");
	text = crl_check(keepf("ca/publish/%s.crl", file_name("Refusal CA")), "after.pem");
	after = crl_number(text, "X509v3 CRL Number");
	if (after <= before)
		fail_full("after restoredb, CRL number %llu; the directory had published %llu", after, before);

	/* a retired CA stays retired: its own backup (taken before it retired) is not restored into it */
	ca_ok("ca", "retire --yes");
	out = expect_restore_refused("ca", "good", "", "a retired CA");
	expect_has(last_cmd, out, "retired");
	expect_has(last_cmd, ca_refused("ca", 1, "crl"), "retired");
}

/*
 * backupdb while the CA issues: three backups taken during one batch of
 * 300 requests in another process are each whole (SQLite's integrity
 * check; the manifest's counts are the copy's own) and restore into a CA
 * set up on the same key, which then lists exactly what the manifest says.
 */
static void test_backup_while_issuing(void **state)
{
	const char *rc = NULL;
	int backups = 0;

	(void)state;
	enter(&keyward_hsm, "online");
	on(&host_a);
	ca_ok("ca", "setup --name 'Online CA' --key-type EC-P256 --server-name a.test %s", hsm_opts(&keyward_hsm));
	ca_ok("ca", "ca.cert ca.pem");
	make_csr("r", EC256, "/CN=online.test", "-addext subjectAltName=DNS:online.test");
	sh_ok("mkdir certs && for i in $(seq 300); do cp r.csr r$i.csr; done");
	sh_ok("(" KWT_CA_ENV "'%s' --dir ca submit r[0-9]*.csr --template WebServer --out-dir certs --threads 2 "
	      ">batch.out 2>&1; echo $? >batch.rc) >/dev/null 2>&1 &",
	      ca_path());
	/* backups until the batch is done, at least three while it runs (a slow machine: at least three) */
	for (int i = 0; i < 600 && (backups < 3 || !exists("batch.rc")); i++) {
		if (backups < 3) {
			ca_ok("ca", "backupdb b%d", backups);
			backups++;
		} else {
			usleep(100 * 1000);
		}
	}
	if (!exists("batch.rc") || strcmp((rc = file("batch.rc")), "0\n") != 0)
		fail_full("the batch beside the backups failed (%s):\n%s", rc ? rc : "still running", file("batch.out"));
	for (int i = 0; i < backups; i++) {
		json_t *m = json_loads(file(keepf("b%d/manifest.json", i)), 0, NULL);
		long long n = (long long)json_integer_value(json_object_get(m, "issued")) +
			      (long long)json_integer_value(json_object_get(m, "revoked"));
		const char *dir = keepf("ca%d", i);

		expect_has("integrity", sh_ok("sqlite3 b%d/keyward-ca.db 'PRAGMA integrity_check'", i), "ok");
		if (strtoll(sh_ok("sqlite3 b%d/keyward-ca.db 'SELECT count(*) FROM certs'", i), NULL, 10) != n)
			fail_full("backup b%d: the manifest counts %lld certificates, the database holds %s", i, n,
				  sh_ok("sqlite3 b%d/keyward-ca.db 'SELECT count(*) FROM certs'", i));
		ca_ok(dir, "setup --name 'Online CA' --existing-key 'ca-Online CA' --cert ca.pem %s",
		      hsm_opts(&keyward_hsm));
		ca_ok(dir, "restoredb b%d", i);
		{
			json_t *listing = list_json(dir, NULL);
			size_t listed_n = json_array_size(entries(listing));

			json_decref(listing);
			if ((long long)listed_n != n)
				fail_full("restored b%d lists %zu certificates, its manifest %lld", i, listed_n, n);
		}
		json_decref(m);
	}
}

/* ---- no key material in any file ---- */

/* A form of a private key component to look for: its bytes, and what it is. */
struct needle {
	char what[96];
	unsigned char *bytes;
	size_t len;
};

#define MAX_NEEDLES 160
static struct needle needles[MAX_NEEDLES];
static size_t n_needles;
static char *hits; /* "FILE: WHAT\n" lines (malloc'd) */
static size_t files_scanned;

static void add_needle(const char *what, const unsigned char *bytes, size_t len)
{
	struct needle *n = &needles[n_needles++];

	assert_true(n_needles <= MAX_NEEDLES && len >= 16);
	snprintf(n->what, sizeof n->what, "%s", what);
	assert_non_null(n->bytes = malloc(len));
	memcpy(n->bytes, bytes, len);
	n->len = len;
}

static void add_text_needle(const char *what, const char *text)
{
	add_needle(what, (const unsigned char *)text, strlen(text));
}

static void free_needles(void)
{
	while (n_needles)
		free(needles[--n_needles].bytes);
	free(hits);
	hits = NULL;
}

/* b as hex, two digits a byte, upper or lower case, sep between bytes (may be "") (caller frees). */
static char *hex_of(const unsigned char *b, size_t n, bool upper, const char *sep)
{
	size_t step = 2 + strlen(sep);
	char *s = malloc(n * step + 1);

	assert_non_null(s);
	s[0] = '\0';
	for (size_t i = 0; i < n; i++)
		sprintf(s + i * step, upper ? "%02X%s" : "%02x%s", b[i], i + 1 < n ? sep : "");
	return s;
}

/* b in base64 without line breaks (caller frees). */
static char *base64_of(const unsigned char *b, size_t n)
{
	char *s = malloc(4 * ((n + 2) / 3) + 1);

	assert_non_null(s);
	EVP_EncodeBlock((unsigned char *)s, b, (int)n);
	return s;
}

/*
 * The forms in which a component (name; value, big-endian) could sit in a
 * file: its first and last 32 bytes raw; its DER INTEGER header with the
 * first 16 bytes; hex, upper and lower case, plain and with colons (as
 * openssl -text prints it); base64 at each of the three alignments.
 */
static void add_component(const char *name, const BIGNUM *bn)
{
	int len = BN_num_bytes(bn);
	unsigned char *v = malloc((size_t)len + 1), der[64];
	size_t h = 0;
	char what[96], *s;

	assert_non_null(v);
	assert_true(len >= 64);
	BN_bn2bin(bn, v);
	snprintf(what, sizeof what, "%s, raw, first 32 bytes", name);
	add_needle(what, v, 32);
	snprintf(what, sizeof what, "%s, raw, last 32 bytes", name);
	add_needle(what, v + len - 32, 32);

	/* DER: 02, the length (of the value with a 00 before a high bit), then the value */
	der[h++] = 0x02;
	{
		int content = len + (v[0] & 0x80 ? 1 : 0);

		if (content < 128)
			der[h++] = (unsigned char)content;
		else if (content < 256)
			der[h++] = 0x81, der[h++] = (unsigned char)content;
		else
			der[h++] = 0x82, der[h++] = (unsigned char)(content >> 8), der[h++] = (unsigned char)content;
		if (v[0] & 0x80)
			der[h++] = 0x00;
	}
	memcpy(der + h, v, 16);
	snprintf(what, sizeof what, "%s, DER INTEGER", name);
	add_needle(what, der, h + 16);

	for (int upper = 0; upper < 2; upper++) {
		s = hex_of(v, 32, upper, "");
		snprintf(what, sizeof what, "%s, hex (%s case)", name, upper ? "upper" : "lower");
		add_text_needle(what, s);
		free(s);
		s = hex_of(v + 1, 12, upper, ":");
		snprintf(what, sizeof what, "%s, hex with colons (%s case)", name, upper ? "upper" : "lower");
		add_text_needle(what, s);
		free(s);
	}
	for (int shift = 0; shift < 3; shift++) {
		s = base64_of(v + shift, 33);
		snprintf(what, sizeof what, "%s, base64 from byte %d", name, shift);
		add_text_needle(what, s);
		free(s);
	}
	free(v);
}

/*
 * The private key pkey (RSA): its private exponent, primes, CRT exponents
 * and coefficient in each form; and the lines of its PKCS#8 PEM that hold
 * them (after the public modulus: lines 8 on, but the short last one).
 */
static void add_private_key(EVP_PKEY *pkey)
{
	static const char *const params[][2] = {
		{OSSL_PKEY_PARAM_RSA_D, "private exponent d"},	{OSSL_PKEY_PARAM_RSA_FACTOR1, "prime p"},
		{OSSL_PKEY_PARAM_RSA_FACTOR2, "prime q"},	{OSSL_PKEY_PARAM_RSA_EXPONENT1, "d mod (p-1)"},
		{OSSL_PKEY_PARAM_RSA_EXPONENT2, "d mod (q-1)"}, {OSSL_PKEY_PARAM_RSA_COEFFICIENT1, "q^-1 mod p"},
	};
	BIO *bio = BIO_new(BIO_s_mem());
	const char *line;
	char *pem = NULL;
	long pem_len;
	int n = 0;

	for (size_t i = 0; i < sizeof params / sizeof *params; i++) {
		BIGNUM *bn = NULL;

		assert_int_equal(EVP_PKEY_get_bn_param(pkey, params[i][0], &bn), 1);
		add_component(params[i][1], bn);
		BN_clear_free(bn);
	}
	assert_non_null(bio);
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
	pem_len = BIO_get_mem_data(bio, &pem);
	assert_true(pem_len > 0);
	for (line = strchr(pem, '\n') + 1; line < pem + pem_len && strncmp(line, "-----END", 8) != 0;
	     line = strchr(line, '\n') + 1) {
		size_t len = strcspn(line, "\n");

		if (++n >= 8 && len == 64)
			add_text_needle(keepf("PKCS#8 PEM line %d", n), keepf("%.*s", (int)len, line));
	}
	BIO_free(bio);
}

static int scan_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	size_t len;
	char *data;

	(void)st;
	(void)ftw;
	if (type != FTW_F)
		return 0;
	data = kwt_read_file(path, &len);
	if (!data)
		fail_full("cannot read %s", path);
	files_scanned++;
	for (size_t i = 0; i < n_needles; i++) {
		if (memmem(data, len, needles[i].bytes, needles[i].len)) {
			size_t old = hits ? strlen(hits) : 0, add = strlen(path) + strlen(needles[i].what) + 4;

			assert_non_null(hits = realloc(hits, old + add + 1));
			snprintf(hits + old, add + 1, "%s: %s\n", path, needles[i].what);
		}
	}
	free(data);
	return 0;
}

/* Every file under each path (a directory or a file) scanned for every needle: the hits (kept; "" if none). */
static const char *scan(const char *const *paths, size_t n)
{
	free(hits);
	hits = NULL;
	files_scanned = 0;
	for (size_t i = 0; i < n; i++)
		assert_int_equal(nftw(paths[i], scan_one, 16, FTW_PHYS), 0);
	return keepf("%s", hits ? hits : "");
}

/*
 * A partition "leak" on hsm, with a client whose key file is encrypted under
 * a PIN: its configuration (DIR/leak.conf, pin_file DIR/leak.pin) and a
 * connected client.
 */
static kw_client *leak_partition(struct kwt_server *hsm, char *conf, size_t size)
{
	char *out = NULL, password[64] = "", pin_file[400];
	const char *pw;
	kw_client *c = NULL;

	if (kwt_admin(hsm, NULL, &out, "partition create leak") != 0 || !(pw = strstr(out, "setup password: ")))
		fail_full("partition create leak: %s", out ? out : "");
	sscanf(pw + strlen("setup password: "), "%63s", password);
	free(out);
	snprintf(pin_file, sizeof pin_file, "%s/leak.pin", hsm->dir);
	kwt_write_file(pin_file, "31415926\n");
	assert_int_equal(chmod(pin_file, 0600), 0);
	snprintf(conf, size, "%s/leak.conf", hsm->dir);
	kwt_write_file(conf, keepf("[client]\npartition = leak\nca = tls/ca.crt\ncert = leak.crt\nkey = leak.key\n"
				   "pin_file = leak.pin\ncommand_timeout = 60\n\n[hsm test]\nhost = 127.0.0.1\n"
				   "port = %u\n",
				   hsm->port));
	kwt_ok(kw_client_new(conf, &c));
	kwt_ok(kw_enroll(c, password, "31415926"));
	return c;
}

/*
 * f: a CA on an extractable RSA key (kw_generate_key), on a keywardd of
 * its own whose master key is sealed under a passphrase, so that the test
 * can unseal the key from the store afterwards as keywardd does (the HSM
 * never shows a private key, extractable or not): A's retirement, backup
 * and export, B's migrate; then no file under the CA directories, the
 * backup, the export, the journal, the commands' outputs or keywardd's
 * log holds the private exponent, a prime, a CRT value, or the PKCS#8 key,
 * in raw, DER, hex or base64 form. The scanner is shown to find each form
 * when a copy is planted.
 */
static void test_no_key_material(void **state)
{
	static const struct ca_spec spec = {.name = "Leak CA", .key = "leak-ca", .hash = "sha256", .issue = 5};
	struct kwt_server hsm;
	struct backend leak = {.module = KEYWARD_PKCS11_PATH};
	struct kw_keystore *ks = NULL;
	struct kw_partition_info part;
	struct kw_object_row row;
	kw_object *priv = NULL, *pub = NULL;
	kw_client *c, *first;
	EVP_PKEY *pkey = NULL;
	char conf[400], path[400];
	const char *secret, *hits_found, *planted[1], *scanned[3];
	struct a_side a;

	(void)state;
	first = kwt_start_initialized(&hsm, NULL);
	kw_client_free(first);
	c = leak_partition(&hsm, conf, sizeof conf);
	assert_int_equal(setenv("KEYWARD_CONF", conf, 1), 0);
	snprintf(leak.pin_file, sizeof leak.pin_file, "%s/leak.pin", hsm.dir);
	snprintf(leak.work, sizeof leak.work, "%s/work-leak", server.dir);
	assert_int_equal(mkdir(leak.work, 0700), 0);
	secret = keepf("%s/secret", server.dir);
	assert_int_equal(mkdir(secret, 0700), 0);

	/* A's key: RSA-2048, extractable, under A's machine owner */
	kwt_ok(kw_generate_key(c, host_a.owner, spec.key, KW_KEY_RSA, 2048, NULL, KW_GEN_EXTRACTABLE, KW_USAGE_SIGN,
			       &priv, &pub));
	assert_true(kw_object_extractable(priv));
	kw_object_free(priv);
	kw_object_free(pub);
	kw_client_free(c);

	/* A retires, backs up and exports; B migrates and issues */
	enter(&leak, "leak");
	on(&host_a);
	ca_ok("A", "setup --name '%s' --existing-key '%s' --hash sha256 --server-name a.test %s", spec.name, spec.key,
	      hsm_opts(&leak));
	ca_ok("A", "ca.cert ca.pem");
	memset(&a, 0, sizeof a);
	a.spec = &spec;
	a.serials = issue_many("A", "a", spec.issue);
	ca_ok("A", "revoke %s --reason keyCompromise", a.serials[0]);
	ca_ok("A", "crl");
	ca_ok("A", "retire --yes");
	ca_ok("A", "backupdb backup");
	ca_ok("A", "config export A.conf.export");
	on(&host_b);
	ca_ok("B", "migrate --from backup --config A.conf.export --server-name b.test %s", hsm_opts(&leak));
	expect_journal("B");
	issue_many("B", "b", 2);
	ca_ok("B", "crl");

	/* the key, unsealed from the store at rest (keywardd stopped) with the passphrase */
	kwt_stop(&hsm);
	snprintf(path, sizeof path, "%s/keystore.db", hsm.dir);
	kwt_ok(kw_keystore_open(path, 0, &ks));
	kwt_ok(kw_keystore_unlock_passphrase(ks, KWT_PASSPHRASE));
	kwt_ok(kw_keystore_partition_get(ks, "leak", &part));
	kwt_ok(kw_keystore_find(ks, part.id, host_b.owner, spec.key, KW_CLASS_PRIVATE_KEY, &row));
	kwt_ok(kw_keystore_load_private(ks, part.id, row.id, &pkey));
	kw_object_row_cleanup(&row);
	kw_keystore_free(ks);
	add_private_key(pkey);
	{
		/* it is the CA's key: its public half is the certificate's */
		FILE *f = fopen(keepf("%s/leak.pem", secret), "w");

		assert_non_null(f);
		assert_int_equal(PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL), 1);
		assert_int_equal(fclose(f), 0);
		assert_int_equal(chmod(keepf("%s/leak.pem", secret), 0600), 0);
		sh_ok("openssl x509 -in ca.pem -noout -pubkey > ca-pub.pem && openssl pkey -in '%s/leak.pem' -pubout"
		      " | cmp - ca-pub.pem",
		      secret);
	}
	EVP_PKEY_free(pkey);

	/* every file the CAs, the commands and keywardd wrote */
	scanned[0] = leak.work;
	scanned[1] = hsm.log;
	scanned[2] = server.log;
	hits_found = scan(scanned, 3);
	if (*hits_found)
		fail_full("key material in files written:\n%s", hits_found);
	if (files_scanned < 30)
		fail_full("only %zu files scanned", files_scanned);

	/* the scanner finds each form when planted */
	assert_int_equal(chdir(secret), 0);
	{
		static const char *const plants[][2] = {
			{"PKCS#8 PEM", "cp leak.pem planted/x"},
			{"PKCS#8 DER", "openssl pkey -in leak.pem -outform DER -out planted/x"},
			{"RSAPrivateKey DER", "openssl rsa -in leak.pem -traditional -outform DER -out planted/x"},
			{"openssl -text", "openssl pkey -in leak.pem -noout -text > planted/x"},
			{"hex of PKCS#8 (lower case)",
			 "openssl pkey -in leak.pem -outform DER | od -An -v -tx1 | tr -d ' \\n' > planted/x"},
			{"hex of PKCS#8 (upper case)", "openssl pkey -in leak.pem -outform DER | od -An -v -tx1 | tr "
						       "-d ' \\n' | tr a-f A-F > planted/x"},
			{"base64 of PKCS#8 in JSON", "printf '{\"k\":\"%s\"}' \"$(openssl pkey -in leak.pem -outform "
						     "DER | base64 -w0)\" > planted/x"},
			{"d alone, raw", "openssl rsa -in leak.pem -noout -text | sed -n '/privateExponent/,/prime1/p'"
					 " | grep '^ ' | tr -d ' :\\n' | xxd -r -p > planted/x"},
		};

		planted[0] = keepf("%s/planted", secret);
		for (size_t i = 0; i < sizeof plants / sizeof *plants; i++) {
			sh_ok("rm -rf planted && mkdir planted && %s", plants[i][1]);
			if (!*scan(planted, 1))
				fail_full("the scanner does not find a planted %s", plants[i][0]);
		}
	}
	sh_ok("rm -rf planted leak.pem");
	free_needles();
	kwt_cleanup(&hsm);
	assert_int_equal(setenv("KEYWARD_CONF", server.conf, 1), 0);
}

int main(void)
{
	// clang-format off
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_manual, test_done),
		{"test_migrate (RSA)", test_migrate, NULL, test_done, (void *)&rsa_ca},
		{"test_migrate (EC P-384)", test_migrate, NULL, test_done, (void *)&p384_ca},
		cmocka_unit_test_teardown(test_migrate_subordinate, test_done),
		cmocka_unit_test_teardown(test_migrate_interrupted, test_done),
		cmocka_unit_test_teardown(test_migrate_after_manual_steps, test_done),
		cmocka_unit_test_teardown(test_restore_refusals, test_done),
		cmocka_unit_test_teardown(test_backup_while_issuing, test_done),
		cmocka_unit_test_teardown(test_no_key_material, test_done),
	};
	// clang-format on

	/* KWT_TEST_FILTER=test_manual (a cmocka pattern) runs only the tests it matches */
	if (getenv("KWT_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KWT_TEST_FILTER"));
	return cmocka_run_group_tests_name("integration_migrate", tests, setup, teardown);
}
