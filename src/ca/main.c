/*
 * keyward-ca: the command line (docs/keyward-ca.8). Each command loads the
 * instance, does its work, and for a change of state runs one database
 * transaction that also records the audit event. Exit codes: 0 success,
 * 1 error (nothing changed), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"

#ifndef KW_DEFAULT_PKCS11_MODULE
#define KW_DEFAULT_PKCS11_MODULE "/usr/lib/x86_64-linux-gnu/pkcs11/keyward-pkcs11.so"
#endif

enum { EXIT_ERROR = 1, EXIT_USAGE = 2 };

struct opts {
	const char *dir, *name, *key_type, *existing_key, *cert, *hash, *server_name, *module, *token, *pin_file;
	const char *template_name, *out, *reason, *date, *status, *file;
	unsigned validity;
	bool subordinate, delta, json, der;
};

/* The instance with its key and certificate, for the commands that sign. */
struct ca {
	struct ca_conf conf;
	struct ca_token *token;
	EVP_PKEY *priv, *pub;
	STACK_OF(X509) * chain;
	struct ca_db *db;
};

static void ca_close(struct ca *ca)
{
	ca_db_close(ca->db);
	sk_X509_pop_free(ca->chain, X509_free);
	EVP_PKEY_free(ca->priv);
	EVP_PKEY_free(ca->pub);
	ca_token_close(ca->token);
}

static int ca_open(const struct opts *o, bool need_key, bool need_cert, struct ca *ca)
{
	memset(ca, 0, sizeof *ca);
	if (ca_conf_load(&ca->conf, o->dir) || ca_db_open(&ca->conf, false, &ca->db))
		return -1;
	if (need_cert && ca_cert_load_chain(&ca->conf, &ca->chain))
		return -1;
	if (need_key &&
	    (ca_token_open(&ca->conf, &ca->token) || ca_token_key(ca->token, ca->conf.key, &ca->priv, &ca->pub)))
		return -1;
	return 0;
}

static X509 *ca_cert(struct ca *ca)
{
	return sk_X509_value(ca->chain, 0);
}

/* A PEM or DER file's bytes as DER of the given PEM kind. */
static X509_REQ *read_request(const char *path, unsigned char **der, size_t *der_len)
{
	FILE *f = fopen(path, "re");
	X509_REQ *req;
	int len;

	*der = NULL;
	if (!f) {
		ca_error("%s: %s", path, strerror(errno));
		return NULL;
	}
	req = PEM_read_X509_REQ(f, NULL, NULL, NULL);
	if (!req) {
		rewind(f);
		req = d2i_X509_REQ_fp(f, NULL);
	}
	fclose(f);
	ERR_clear_error();
	if (!req) {
		ca_error("%s is not a certificate request (PKCS#10, PEM or DER)", path);
		return NULL;
	}
	if ((len = i2d_X509_REQ(req, der)) <= 0) {
		X509_REQ_free(req);
		ca_error("%s: cannot encode the request", path);
		return NULL;
	}
	*der_len = (size_t)len;
	return req;
}

static int write_cert(const char *out, X509 *x)
{
	FILE *f = out ? fopen(out, "we") : stdout;
	int ok;

	if (!f)
		return ca_error("cannot write %s: %s", out, strerror(errno));
	ok = PEM_write_X509(f, x);
	if (out)
		ok = fclose(f) == 0 && ok;
	return ok ? 0 : ca_error("cannot write the certificate");
}

/* Issues req under t, records it (and request_id's new state) in one transaction; prints the serial. */
static int issue(struct ca *ca, const struct ca_template *t, X509_REQ *req, long long request_id, const char *out,
		 bool json)
{
	struct ca_db_cert row = {.request_id = request_id, .reason = -1};
	X509 *x = ca_cert_issue(&ca->conf, t, req, ca_cert(ca), ca->priv);
	unsigned char *der = NULL;
	int len, rc = -1;

	if (!x)
		return -1;
	ca_serial_hex(X509_get0_serialNumber(x), row.serial, sizeof row.serial);
	X509_NAME_oneline(X509_get_subject_name(x), row.subject, sizeof row.subject);
	snprintf(row.template_name, sizeof row.template_name, "%s", t->name);
	{
		struct tm tm;

		ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm);
		row.not_before = timegm(&tm);
		ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
		row.not_after = timegm(&tm);
	}
	if ((len = i2d_X509(x, &der)) <= 0) {
		ca_error("cannot encode the certificate");
		goto out;
	}
	if (ca_db_begin(ca->db))
		goto out;
	if (ca_db_insert_cert(ca->db, &row, der, (size_t)len) ||
	    (request_id > 0 && ca_db_set_request(ca->db, request_id, "issued", row.serial)) ||
	    ca_db_audit(ca->db, "issue", "serial %s template %s subject %s", row.serial, t->name, row.subject) ||
	    ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		goto out;
	}
	/* reported only once committed: a crash before this line issued nothing anyone saw */
	if (json)
		printf("{\"status\": \"issued\", \"serial\": \"%s\"}\n", row.serial);
	else
		printf("issued %s\n", row.serial);
	fflush(stdout);
	rc = write_cert(out, x);
out:
	OPENSSL_free(der);
	X509_free(x);
	return rc;
}

/* ---- setup ---- */

static bool dir_is_empty(const char *dir)
{
	char path[CA_PATH_MAX + 16];

	snprintf(path, sizeof path, "%s/ca.conf", dir);
	return access(path, F_OK) != 0;
}

static bool same_key(EVP_PKEY *a, EVP_PKEY *b)
{
	return EVP_PKEY_eq(a, b) == 1;
}

static int cmd_setup(const struct opts *o)
{
	struct ca_conf c;
	struct ca_token *tok = NULL;
	EVP_PKEY *priv = NULL, *pub = NULL;
	STACK_OF(X509) *chain = sk_X509_new_null();
	struct ca_db *db = NULL;
	char path[CA_PATH_MAX + 16], label[CA_NAME_MAX + 8];
	X509 *x = NULL;
	X509_REQ *req = NULL;
	bool made_dir = false;
	int rc = -1;

	if (!o->name || !*o->name || strlen(o->name) > CA_NAME_MAX)
		return ca_error("setup needs --name (1 to %d characters)", CA_NAME_MAX);
	if (o->key_type && o->existing_key)
		return ca_error("--key-type makes a new key, --existing-key uses one: give one of them");
	if (o->cert && !o->existing_key)
		return ca_error("--cert goes with --existing-key: the certificate of that key");
	if (o->cert && o->subordinate)
		return ca_error("--cert installs a certificate; a --subordinate CA gets one with install-cert");
	if (!dir_is_empty(o->dir))
		return ca_error("%s already holds a CA (ca.conf): nothing changed", o->dir);
	if (mkdir(o->dir, 0750) == 0)
		made_dir = true;
	else if (errno != EEXIST)
		return ca_error("cannot create %s: %s", o->dir, strerror(errno));
	if (ca_conf_defaults(&c, o->dir))
		return -1;
	snprintf(c.name, sizeof c.name, "%s", o->name);
	snprintf(c.module, sizeof c.module, "%s", o->module ? o->module : KW_DEFAULT_PKCS11_MODULE);
	if (o->token)
		snprintf(c.token, sizeof c.token, "%s", o->token);
	if (o->pin_file) {
		if (!realpath(o->pin_file, c.pin_file))
			return ca_error("the PIN file %s: %s", o->pin_file, strerror(errno));
	}
	if (o->hash) {
		if (strcmp(o->hash, "sha256") && strcmp(o->hash, "sha384") && strcmp(o->hash, "sha512"))
			return ca_error("--hash: sha256, sha384 or sha512, not %s", o->hash);
		snprintf(c.hash, sizeof c.hash, "%s", o->hash);
	}
	if (o->validity)
		c.validity_days = o->validity;
	if (o->server_name)
		snprintf(c.server_name, sizeof c.server_name, "%s", o->server_name);
	c.subordinate = o->subordinate;
	if (o->existing_key) {
		snprintf(c.key, sizeof c.key, "%s", o->existing_key);
	} else {
		snprintf(label, sizeof label, "ca-%s", o->name);
		snprintf(c.key, sizeof c.key, "%s", label);
		if (ca_token_generate(&c, o->key_type ? o->key_type : "RSA-3072", label))
			return -1;
	}
	if (ca_token_open(&c, &tok) || ca_token_key(tok, c.key, &priv, &pub))
		goto out;
	if (o->cert) {
		FILE *f = fopen(o->cert, "re");

		while (f && (x = PEM_read_X509(f, NULL, NULL, NULL)))
			sk_X509_push(chain, x);
		if (f)
			fclose(f);
		ERR_clear_error();
		x = NULL;
		if (!sk_X509_num(chain)) {
			ca_error("%s: %s", o->cert, f ? "no PEM certificate in it" : strerror(errno));
			goto out;
		}
		if (!same_key(X509_get0_pubkey(sk_X509_value(chain, 0)), pub)) {
			ca_error("%s is not the certificate of key \"%s\": its public key differs; nothing set up",
				 o->cert, c.key);
			goto out;
		}
	} else if (!c.subordinate) {
		if (!(x = ca_cert_make_root(&c, priv, pub)))
			goto out;
		sk_X509_push(chain, x);
		x = NULL;
	} else {
		FILE *f;

		if (!(req = ca_cert_make_request(&c, priv, pub)))
			goto out;
		ca_path(&c, "ca.csr", path, sizeof path);
		if (!(f = fopen(path, "we")) || !PEM_write_X509_REQ(f, req)) {
			if (f)
				fclose(f);
			ca_error("cannot write %s", path);
			goto out;
		}
		fclose(f);
	}
	if (ca_db_open(&c, true, &db) || ca_db_begin(db))
		goto out;
	if (ca_db_audit(db, "setup", "CA \"%s\", key %s on token \"%s\", %s", c.name, c.key, c.token,
			c.subordinate ? "subordinate (request in ca.csr)"
			: o->cert     ? "existing certificate"
				      : "root") ||
	    ca_db_commit(db)) {
		ca_db_rollback(db);
		goto out;
	}
	ca_path(&c, "ca.crt", path, sizeof path);
	if (sk_X509_num(chain) && ca_write_pem_chain(path, chain))
		goto out;
	/* ca.conf last: its presence is what makes the directory a CA */
	if (ca_conf_save(&c))
		goto out;
	printf("CA \"%s\" set up in %s with key \"%s\"%s\n", c.name, c.dir, c.key,
	       c.subordinate ? "; ca.csr is the request for the parent CA, then run install-cert" : "");
	rc = 0;
out:
	if (rc) {
		/* no ca.conf was written: drop what was, so nothing half made stays behind */
		static const char *const made[] = {"keyward-ca.db", "keyward-ca.db-wal", "keyward-ca.db-shm", "ca.crt",
						   "ca.csr"};

		for (size_t i = 0; i < sizeof made / sizeof made[0]; i++) {
			ca_path(&c, made[i], path, sizeof path);
			unlink(path);
		}
		if (made_dir)
			rmdir(o->dir);
	}
	ca_db_close(db);
	X509_REQ_free(req);
	X509_free(x);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	ca_token_close(tok);
	return rc;
}

static int cmd_install_cert(const struct opts *o, const char *file)
{
	struct ca ca;
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	char path[CA_PATH_MAX + 16];
	FILE *f;
	X509 *x;
	int rc = -1;

	if (ca_open(o, true, false, &ca))
		goto out;
	if (!(f = fopen(file, "re"))) {
		ca_error("%s: %s", file, strerror(errno));
		goto out;
	}
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)))
		sk_X509_push(chain, x);
	fclose(f);
	ERR_clear_error();
	if (!sk_X509_num(chain)) {
		ca_error("%s holds no PEM certificate", file);
		goto out;
	}
	x = sk_X509_value(chain, 0);
	if (!same_key(X509_get0_pubkey(x), ca.pub)) {
		ca_error("%s is not for this CA: its public key is not key \"%s\"'s; nothing installed", file,
			 ca.conf.key);
		goto out;
	}
	if (X509_check_ca(x) < 1) {
		ca_error("%s is not a CA certificate (basicConstraints CA:TRUE); nothing installed", file);
		goto out;
	}
	/* it must chain to a self-signed root in the file */
	for (int i = 1; i < sk_X509_num(chain); i++)
		if (X509_check_issued(sk_X509_value(chain, i), sk_X509_value(chain, i)) == X509_V_OK)
			X509_STORE_add_cert(store, sk_X509_value(chain, i));
	if (!X509_STORE_CTX_init(ctx, store, x, chain) || X509_verify_cert(ctx) != 1) {
		ca_error("%s does not chain to a root in the file: %s; give the parent's chain after the certificate",
			 file, X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		goto out;
	}
	ca_path(&ca.conf, "ca.crt", path, sizeof path);
	if (ca_db_begin(ca.db))
		goto out;
	if (ca_db_audit(ca.db, "install-cert", "CA certificate from %s installed", file) ||
	    ca_write_pem_chain(path, chain) || ca_db_commit(ca.db)) {
		ca_db_rollback(ca.db);
		goto out;
	}
	printf("installed %s: the CA issues now\n", file);
	rc = 0;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_pop_free(chain, X509_free);
	ca_close(&ca);
	return rc;
}

static int cmd_keys(const struct opts *o)
{
	struct ca ca;
	int rc = ca_open(o, false, false, &ca);

	if (!rc)
		rc = ca_token_open(&ca.conf, &ca.token);
	if (!rc)
		rc = ca_token_list(ca.token, stdout);
	ca_close(&ca);
	return rc;
}

static int cmd_templates(const struct opts *o, int argc, char **argv)
{
	struct ca ca;
	int rc = -1;

	if (argc < 1)
		return ca_error("templates: list, show NAME, add NAME --file F, remove NAME");
	if (ca_open(o, false, false, &ca))
		goto out;
	if (!strcmp(argv[0], "list")) {
		for (size_t i = 0; i < ca.conf.n_templates; i++)
			printf("%-16s %s%s\n", ca.conf.templates[i].name,
			       ca.conf.templates[i].builtin ? "built in" : "ca.conf",
			       ca.conf.templates[i].manual ? ", manual approval" : "");
		rc = 0;
	} else if (!strcmp(argv[0], "show") && argc == 2) {
		const struct ca_template *t = ca_template_find(&ca.conf, argv[1]);

		if (!t) {
			ca_error("no template \"%s\" (templates list)", argv[1]);
			goto out;
		}
		printf("[template %s]\n", t->name);
		ca_template_print(t, stdout);
		rc = 0;
	} else if (!strcmp(argv[0], "add") && argc == 2 && o->file) {
		struct ca_conf probe = ca.conf;
		struct ca_template *t;
		char line[512];
		FILE *f = fopen(o->file, "re");
		int n = 0;

		if (!f) {
			ca_error("%s: %s", o->file, strerror(errno));
			goto out;
		}
		if (!(t = ca_template_add(&ca.conf, argv[1]))) {
			fclose(f);
			ca_error("template name \"%s\" is not usable, or there are too many", argv[1]);
			goto out;
		}
		while (fgets(line, sizeof line, f)) {
			char *eq = strchr(line, '='), *k = line, *v;

			n++;
			line[strcspn(line, "\r\n")] = '\0';
			if (!line[strspn(line, " \t")] || line[strspn(line, " \t")] == '#' ||
			    line[strspn(line, " \t")] == ';' || line[strspn(line, " \t")] == '[')
				continue;
			if (!eq) {
				fclose(f);
				ca_error("%s: line %d: not KEY = VALUE", o->file, n);
				goto out;
			}
			*eq = '\0';
			v = eq + 1;
			while (*k == ' ' || *k == '\t')
				k++;
			for (char *e = eq - 1; e >= k && (*e == ' ' || *e == '\t'); e--)
				*e = '\0';
			while (*v == ' ' || *v == '\t')
				v++;
			if (ca_template_set(t, k, v)) {
				fclose(f);
				ca_error("%s: line %d: %s: %s", o->file, n, k, ca_last_error());
				goto out;
			}
		}
		fclose(f);
		(void)probe;
		if (ca_db_begin(ca.db) || ca_db_audit(ca.db, "config", "template %s added from %s", argv[1], o->file) ||
		    ca_conf_save(&ca.conf) || ca_db_commit(ca.db)) {
			ca_db_rollback(ca.db);
			goto out;
		}
		printf("template %s added\n", argv[1]);
		rc = 0;
	} else if (!strcmp(argv[0], "remove") && argc == 2) {
		size_t i;

		for (i = 0; i < ca.conf.n_templates && strcmp(ca.conf.templates[i].name, argv[1]); i++)
			;
		if (i == ca.conf.n_templates || ca.conf.templates[i].builtin) {
			ca_error("no added template \"%s\" to remove (built-in templates stay)", argv[1]);
			goto out;
		}
		memmove(&ca.conf.templates[i], &ca.conf.templates[i + 1],
			(ca.conf.n_templates - i - 1) * sizeof ca.conf.templates[0]);
		ca.conf.n_templates--;
		if (ca_db_begin(ca.db) || ca_db_audit(ca.db, "config", "template %s removed", argv[1]) ||
		    ca_conf_save(&ca.conf) || ca_db_commit(ca.db)) {
			ca_db_rollback(ca.db);
			goto out;
		}
		printf("template %s removed%s\n", argv[1],
		       ca_template_find(&ca.conf, argv[1]) ? " (the built-in of that name applies again)" : "");
		rc = 0;
	} else {
		ca_error("templates: list, show NAME, add NAME --file F, remove NAME");
	}
out:
	ca_close(&ca);
	return rc;
}

static int cmd_submit(const struct opts *o, const char *file)
{
	const struct ca_template *t;
	unsigned char *der = NULL;
	size_t der_len = 0;
	X509_REQ *req = NULL;
	struct ca ca;
	int rc = -1;

	if (!o->template_name)
		return ca_error("submit needs --template NAME (templates list)");
	if (ca_open(o, true, true, &ca))
		goto out;
	if (!(t = ca_template_find(&ca.conf, o->template_name))) {
		ca_error("no template \"%s\" (templates list)", o->template_name);
		goto out;
	}
	if (!(req = read_request(file, &der, &der_len)))
		goto out;
	if (!t->manual) {
		rc = issue(&ca, t, req, 0, o->out, o->json);
		goto out;
	}
	/* checked now, so a request that can never be issued is not left pending */
	if (X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1) {
		ERR_clear_error();
		ca_error("the request's signature does not verify with its public key");
		goto out;
	}
	if (ca_template_check(t, req) || ca_db_begin(ca.db))
		goto out;
	{
		long long id = ca_db_insert_request(ca.db, der, der_len, t->name, "pending");

		if (id < 0 || ca_db_audit(ca.db, "submit", "request %lld pending for template %s", id, t->name) ||
		    ca_db_commit(ca.db)) {
			ca_db_rollback(ca.db);
			goto out;
		}
		printf(o->json ? "{\"status\": \"pending\", \"request\": %lld}\n" : "pending %lld\n", id);
	}
	rc = 0;
out:
	OPENSSL_free(der);
	X509_REQ_free(req);
	ca_close(&ca);
	return rc;
}

static int cmd_decide(const struct opts *o, const char *id_text, bool approve)
{
	char tname[64], status[16], *end;
	unsigned char *csr = NULL;
	const unsigned char *p;
	size_t len = 0;
	long long id = strtoll(id_text, &end, 10);
	const struct ca_template *t;
	X509_REQ *req = NULL;
	struct ca ca;
	int rc = -1, found;

	if (*end || id <= 0)
		return ca_error("\"%s\" is not a request number", id_text);
	if (ca_open(o, approve, approve, &ca))
		goto out;
	found = ca_db_get_request(ca.db, id, &csr, &len, tname, sizeof tname, status, sizeof status);
	if (found) {
		if (found > 0)
			ca_error("no request %lld", id);
		goto out;
	}
	if (strcmp(status, "pending")) {
		ca_error("request %lld is %s, not pending", id, status);
		goto out;
	}
	if (!approve) {
		if (ca_db_begin(ca.db) || ca_db_set_request(ca.db, id, "denied", NULL) ||
		    ca_db_audit(ca.db, "deny", "request %lld denied", id) || ca_db_commit(ca.db)) {
			ca_db_rollback(ca.db);
			goto out;
		}
		printf("denied %lld\n", id);
		rc = 0;
		goto out;
	}
	if (!(t = ca_template_find(&ca.conf, tname))) {
		ca_error("request %lld names template \"%s\", which no longer exists", id, tname);
		goto out;
	}
	p = csr;
	if (!(req = d2i_X509_REQ(NULL, &p, (long)len))) {
		ca_error("request %lld: stored request unreadable", id);
		goto out;
	}
	rc = issue(&ca, t, req, id, o->out, o->json);
out:
	free(csr);
	X509_REQ_free(req);
	ca_close(&ca);
	return rc;
}

static int parse_date(const char *s, time_t *out)
{
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);

	if (!end || *end)
		return ca_error("--date \"%s\": use YYYY-MM-DDTHH:MM:SSZ (UTC)", s);
	*out = timegm(&tm);
	return 0;
}

static int cmd_revoke(const struct opts *o, const char *serial_in, bool unrevoke)
{
	struct ca_db_cert row;
	char serial[80];
	time_t when = time(NULL);
	int reason = 0, found;
	struct ca ca;
	int rc = -1;

	/* serials are stored upper-case without leading zeros */
	while (serial_in[0] == '0' && serial_in[1])
		serial_in++;
	for (size_t i = 0; i <= strlen(serial_in) && i < sizeof serial; i++)
		serial[i] = (char)(serial_in[i] >= 'a' && serial_in[i] <= 'f' ? serial_in[i] - 32 : serial_in[i]);
	serial[sizeof serial - 1] = '\0';
	if (!unrevoke) {
		if (!o->reason)
			return ca_error(
				"revoke needs --reason (unspecified, keyCompromise, cACompromise, affiliationChanged, "
				"superseded, cessationOfOperation, certificateHold, privilegeWithdrawn)");
		if ((reason = ca_reason_code(o->reason)) < 0 || reason == 10)
			return ca_error("--reason %s: not a revocation reason", o->reason);
		if (o->date && parse_date(o->date, &when))
			return -1;
	}
	if (ca_open(o, false, false, &ca))
		goto out;
	if (ca_db_begin(ca.db))
		goto out;
	found = ca_db_get_cert(ca.db, serial, &row, NULL, NULL);
	if (found > 0)
		ca_error("no certificate with serial %s", serial);
	else if (!found && !unrevoke && !strcmp(row.status, "revoked"))
		ca_error("serial %s is already revoked (%s)", serial, ca_reason_name(row.reason));
	else if (!found && unrevoke && (strcmp(row.status, "revoked") || row.reason != 6))
		ca_error("serial %s is not on hold (only certificateHold can be taken back)", serial);
	else if (!found &&
		 !ca_db_set_revocation(ca.db, serial, unrevoke ? "issued" : "revoked", unrevoke ? time(NULL) : when,
				       unrevoke ? 8 : reason) &&
		 !ca_db_audit(ca.db, unrevoke ? "unrevoke" : "revoke", "serial %s%s%s", serial,
			      unrevoke ? "" : " reason ", unrevoke ? "" : o->reason) &&
		 !ca_db_commit(ca.db)) {
		printf("%s %s\n", unrevoke ? "unrevoked" : "revoked", serial);
		rc = 0;
	}
	if (rc)
		ca_db_rollback(ca.db);
out:
	ca_close(&ca);
	return rc;
}

static int cmd_list(const struct opts *o)
{
	struct ca ca;
	int rc = ca_open(o, false, false, &ca);

	if (!rc && o->status && strcmp(o->status, "issued") && strcmp(o->status, "revoked") &&
	    strcmp(o->status, "pending") && strcmp(o->status, "denied") && strcmp(o->status, "expired"))
		rc = ca_error("--status: issued, revoked, pending, denied or expired");
	if (!rc)
		rc = ca_db_list(ca.db, o->status, o->json, stdout);
	ca_close(&ca);
	return rc;
}

static int cmd_view(const struct opts *o, const char *serial)
{
	struct ca_db_cert row;
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	struct ca ca;
	X509 *x = NULL;
	int rc = -1, found;

	if (ca_open(o, false, false, &ca))
		goto out;
	found = ca_db_get_cert(ca.db, serial, &row, &der, &len);
	if (found) {
		if (found > 0)
			ca_error("no certificate with serial %s", serial);
		goto out;
	}
	p = der;
	if (!(x = d2i_X509(NULL, &p, (long)len))) {
		ca_error("serial %s: stored certificate unreadable", serial);
		goto out;
	}
	printf("status: %s%s%s\ntemplate: %s\n", row.status,
	       row.reason >= 0 && !strcmp(row.status, "revoked") ? " " : "",
	       row.reason >= 0 && !strcmp(row.status, "revoked") ? ca_reason_name(row.reason) : "", row.template_name);
	X509_print_fp(stdout, x);
	PEM_write_X509(stdout, x);
	rc = 0;
out:
	X509_free(x);
	free(der);
	ca_close(&ca);
	return rc;
}

static int cmd_export(const struct opts *o, const char *file, bool whole_chain)
{
	struct ca ca;
	FILE *f = NULL;
	int rc = -1, ok = 1;

	if (ca_open(o, false, true, &ca))
		goto out;
	if (!(f = fopen(file, "we"))) {
		ca_error("cannot write %s: %s", file, strerror(errno));
		goto out;
	}
	if (o->der && !whole_chain)
		ok = i2d_X509_fp(f, ca_cert(&ca));
	else
		for (int i = 0; i < (whole_chain ? sk_X509_num(ca.chain) : 1); i++)
			ok = ok && PEM_write_X509(f, sk_X509_value(ca.chain, i));
	ok = fclose(f) == 0 && ok;
	rc = ok ? 0 : ca_error("cannot write %s", file);
out:
	ca_close(&ca);
	return rc;
}

static int cmd_crl(const struct opts *o)
{
	long long number = 0;
	struct ca ca;
	int rc = -1;

	if (ca_open(o, true, true, &ca) || ca_db_begin(ca.db))
		goto out;
	if (ca_crl_publish(&ca.conf, ca.db, ca_cert(&ca), ca.priv, o->delta, &number) || ca_db_commit(ca.db)) {
		ca_db_rollback(ca.db);
		goto out;
	}
	printf("published %s CRL number %lld\n", o->delta ? "delta" : "full", number);
	rc = 0;
out:
	ca_close(&ca);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keyward-ca [--dir DIR] COMMAND ...\n"
		"  setup --name NAME [--key-type T | --existing-key NAME|URI [--cert F]] [--hash H] [--validity DAYS]\n"
		"        [--server-name HOST] [--subordinate] [--module PATH] [--token LABEL] [--pin-file F]\n"
		"  install-cert FILE | keys | templates list|show N|add N --file F|remove N\n"
		"  submit CSR --template T [--out F] [--json] | approve ID | deny ID\n"
		"  revoke SERIAL --reason R [--date YYYY-MM-DDTHH:MM:SSZ] | unrevoke SERIAL\n"
		"  list [--status S] [--json] | view SERIAL | ca.cert FILE [--der] | ca.chain FILE | crl [--delta]\n"
		"See keyward-ca(8).\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"name", required_argument, NULL, 'n'},
		{"key-type", required_argument, NULL, 'k'},
		{"existing-key", required_argument, NULL, 'e'},
		{"cert", required_argument, NULL, 'c'},
		{"hash", required_argument, NULL, 'h'},
		{"validity", required_argument, NULL, 'v'},
		{"server-name", required_argument, NULL, 's'},
		{"subordinate", no_argument, NULL, 'S'},
		{"module", required_argument, NULL, 'm'},
		{"token", required_argument, NULL, 't'},
		{"pin-file", required_argument, NULL, 'p'},
		{"template", required_argument, NULL, 'T'},
		{"out", required_argument, NULL, 'o'},
		{"reason", required_argument, NULL, 'r'},
		{"date", required_argument, NULL, 'D'},
		{"status", required_argument, NULL, 'u'},
		{"file", required_argument, NULL, 'f'},
		{"delta", no_argument, NULL, 'x'},
		{"json", no_argument, NULL, 'j'},
		{"der", no_argument, NULL, 'E'},
		{"help", no_argument, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.dir = getenv("KEYWARD_CA_DIR")};
	const char *cmd;
	char **args;
	int nargs, ch, rc;

	if (!o.dir)
		o.dir = "/var/lib/keyward-ca";
	/* GNU getopt permutes: options may come before or after the command and its arguments */
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o.dir = optarg;
			break;
		case 'n':
			o.name = optarg;
			break;
		case 'k':
			o.key_type = optarg;
			break;
		case 'e':
			o.existing_key = optarg;
			break;
		case 'c':
			o.cert = optarg;
			break;
		case 'h':
			o.hash = optarg;
			break;
		case 'v': {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*end || v < 1 || v > 36500) {
				fprintf(stderr, "keyward-ca: --validity: a number of days from 1 to 36500\n");
				return EXIT_USAGE;
			}
			o.validity = (unsigned)v;
			break;
		}
		case 's':
			o.server_name = optarg;
			break;
		case 'S':
			o.subordinate = true;
			break;
		case 'm':
			o.module = optarg;
			break;
		case 't':
			o.token = optarg;
			break;
		case 'p':
			o.pin_file = optarg;
			break;
		case 'T':
			o.template_name = optarg;
			break;
		case 'o':
			o.out = optarg;
			break;
		case 'r':
			o.reason = optarg;
			break;
		case 'D':
			o.date = optarg;
			break;
		case 'u':
			o.status = optarg;
			break;
		case 'f':
			o.file = optarg;
			break;
		case 'x':
			o.delta = true;
			break;
		case 'j':
			o.json = true;
			break;
		case 'E':
			o.der = true;
			break;
		case 'H':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[optind];
	args = argv + optind + 1;
	nargs = argc - optind - 1;
#define NEED(n)                                                                                                        \
	do {                                                                                                           \
		if (nargs != (n)) {                                                                                    \
			fprintf(stderr, "keyward-ca: %s takes %d argument%s\n", cmd, (n), (n) == 1 ? "" : "s");        \
			return EXIT_USAGE;                                                                             \
		}                                                                                                      \
	} while (0)
	if (!strcmp(cmd, "setup")) {
		NEED(0);
		rc = cmd_setup(&o);
	} else if (!strcmp(cmd, "install-cert")) {
		NEED(1);
		rc = cmd_install_cert(&o, args[0]);
	} else if (!strcmp(cmd, "keys")) {
		NEED(0);
		rc = cmd_keys(&o);
	} else if (!strcmp(cmd, "templates")) {
		rc = cmd_templates(&o, nargs, args);
	} else if (!strcmp(cmd, "submit")) {
		NEED(1);
		rc = cmd_submit(&o, args[0]);
	} else if (!strcmp(cmd, "approve") || !strcmp(cmd, "deny")) {
		NEED(1);
		rc = cmd_decide(&o, args[0], cmd[0] == 'a');
	} else if (!strcmp(cmd, "revoke") || !strcmp(cmd, "unrevoke")) {
		NEED(1);
		rc = cmd_revoke(&o, args[0], cmd[0] == 'u');
	} else if (!strcmp(cmd, "list")) {
		NEED(0);
		rc = cmd_list(&o);
	} else if (!strcmp(cmd, "view")) {
		NEED(1);
		rc = cmd_view(&o, args[0]);
	} else if (!strcmp(cmd, "ca.cert") || !strcmp(cmd, "ca.chain")) {
		NEED(1);
		rc = cmd_export(&o, args[0], cmd[3] == 'c' && cmd[4] == 'h');
	} else if (!strcmp(cmd, "crl")) {
		NEED(0);
		rc = cmd_crl(&o);
	} else {
		fprintf(stderr, "keyward-ca: unknown command \"%s\"\n", cmd);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (rc) {
		fprintf(stderr, "keyward-ca: %s: %s\n", cmd, ca_last_error());
		return EXIT_ERROR;
	}
	return 0;
}
