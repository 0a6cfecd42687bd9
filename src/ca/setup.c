/*
 * keyward-ca: setup (a root, a subordinate's request, or an existing key
 * with its certificate) and install-cert. setup writes ca.conf last: until
 * it exists the directory is not a CA, and a failed setup removes what it
 * wrote. The database records the CA's identity (its key's fingerprint)
 * from the start.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"

/* Creates dir and any missing parent; *made says whether dir itself was created. */
static int make_dirs(const char *dir, bool *made)
{
	char path[CA_PATH_MAX];

	snprintf(path, sizeof path, "%s", dir);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			return ca_error("cannot create %s: %s", path, strerror(errno));
		*p = '/';
	}
	/* the CA's own directory: its database and configuration are for its operator alone */
	if (mkdir(path, 0700) == 0)
		*made = true;
	else if (errno != EEXIST)
		return ca_error("cannot create %s: %s", path, strerror(errno));
	return 0;
}

/* Whether dir already holds a CA: ca.conf, written last by setup, says so. */
static bool holds_ca(const char *dir)
{
	char path[CA_PATH_MAX + 16];

	snprintf(path, sizeof path, "%s/ca.conf", dir);
	return access(path, F_OK) == 0;
}

int ca_setup(const struct ca_setup *o)
{
	struct ca_conf c;
	struct ca_token *tok = NULL;
	EVP_PKEY *priv = NULL, *pub = NULL;
	STACK_OF(X509) *chain = NULL;
	struct ca_db *db = NULL;
	char path[CA_PATH_MAX + 16], label[CA_NAME_MAX + 8];
	X509 *x = NULL;
	X509_REQ *req = NULL;
	bool made_dir = false;
	int rc = -1;

	if (!o->dir || !*o->dir)
		return ca_usage_error("setup needs a directory");
	if (!o->name || !*o->name || strlen(o->name) > CA_NAME_MAX)
		return ca_usage_error("setup needs --name (1 to %d characters)", CA_NAME_MAX);
	if (o->key_type && o->existing_key)
		return ca_usage_error("--key-type makes a new key, --existing-key uses one: give one of them");
	if (o->key_type && !ca_key_type_known(o->key_type))
		return ca_usage_error("--key-type %s: " CA_KEY_TYPES, o->key_type);
	if (o->cert && !o->existing_key)
		return ca_usage_error("--cert goes with --existing-key: the certificate of that key");
	if (o->cert && o->subordinate)
		return ca_usage_error("--cert installs a certificate; a --subordinate CA gets one with install-cert");
	if (o->hash && strcmp(o->hash, "sha256") && strcmp(o->hash, "sha384") && strcmp(o->hash, "sha512"))
		return ca_usage_error("--hash: sha256, sha384 or sha512, not %s", o->hash);
	if (holds_ca(o->dir))
		return ca_error("%s already holds a CA (ca.conf): nothing changed", o->dir);
	if (ca_conf_defaults(&c, o->dir))
		return -1;
	if (o->pin_file && !realpath(o->pin_file, c.pin_file))
		return ca_error("the PIN file %s: %s", o->pin_file, strerror(errno));
	/* from here on, a failure removes what setup made (out:) */
	if (make_dirs(o->dir, &made_dir))
		goto out;
	snprintf(c.name, sizeof c.name, "%s", o->name);
	/* none named: this host's installed module, resolved where it is used (ca_module) */
	if (o->module)
		snprintf(c.module, sizeof c.module, "%s", o->module);
	if (o->token)
		snprintf(c.token, sizeof c.token, "%s", o->token);
	if (o->hash)
		snprintf(c.hash, sizeof c.hash, "%s", o->hash);
	if (o->validity_days)
		c.validity_days = o->validity_days;
	if (o->server_name)
		snprintf(c.server_name, sizeof c.server_name, "%s", o->server_name);
	/* the URL is not repeated: it may hold a password (which ca.conf refuses) */
	if (o->database && ca_conf_set(&c, "database", o->database)) {
		ca_usage_error("--database: %s", ca_last_error());
		goto out;
	}
	if (o->url_base && ca_conf_set(&c, "url_base", o->url_base)) {
		ca_usage_error("url_base %s: %s", o->url_base, ca_last_error());
		goto out;
	}
	c.subordinate = o->subordinate;
	snprintf(label, sizeof label, "ca-%s", o->name);
	snprintf(c.key, sizeof c.key, "%s", o->existing_key ? o->existing_key : label);
	{
		/* every value as ca.conf will hold it, before anything is made */
		char *text = ca_conf_text(&c);
		int bad = !text || ca_conf_check(&c, text);

		free(text);
		if (bad) {
			ca_usage_error("%s", ca_last_error());
			goto out;
		}
	}
	if (!o->existing_key) {
		/* a second key of the same label would leave the CA signing with either: refused */
		if (ca_token_open(&c, &tok))
			goto out;
		if (!ca_token_key(tok, label, &priv, &pub)) {
			ca_error(
				"token \"%s\" already has a key labelled \"%s\": set up with --existing-key \"%s\", or "
				"choose another --name",
				c.token, label, label);
			goto out;
		}
		ca_token_close(tok);
		tok = NULL;
		if (ca_token_generate(&c, o->key_type ? o->key_type : "RSA-3072", label))
			goto out;
	}
	if (ca_token_open(&c, &tok) || ca_token_key(tok, c.key, &priv, &pub))
		goto out;
	if (o->cert) {
		if (!(chain = ca_read_certs(o->cert)) || !sk_X509_num(chain)) {
			ca_error("%s: %s", o->cert, chain ? "no PEM certificate in it" : strerror(errno));
			goto out;
		}
		if (!ca_same_key(X509_get0_pubkey(sk_X509_value(chain, 0)), pub)) {
			ca_error("%s is not the certificate of key \"%s\": its public key differs; nothing set up",
				 o->cert, c.key);
			goto out;
		}
		/* a certificate its own key did not sign is a subordinate CA's (a CA moved to this host) */
		c.subordinate = X509_check_issued(sk_X509_value(chain, 0), sk_X509_value(chain, 0)) != X509_V_OK;
	} else if (!c.subordinate) {
		if (!(chain = sk_X509_new_null()) || !(x = ca_cert_make_root(&c, priv, pub)) || !sk_X509_push(chain, x))
			goto out;
		x = NULL;
	} else {
		if (!(req = ca_cert_make_request(&c, priv, pub)))
			goto out;
		BIO *b = BIO_new(BIO_s_mem());
		char *pem = NULL;
		long len = b && PEM_write_bio_X509_REQ(b, req) ? BIO_get_mem_data(b, &pem) : 0;
		int bad;

		/* a request is public, as a certificate is: 0644, for the parent CA's operator to pick up */
		ca_path(&c, "ca.csr", path, sizeof path);
		bad = len <= 0 ? ca_error("cannot encode %s", path) : ca_write_atomic(path, pem, (size_t)len, 0644);
		BIO_free(b);
		if (bad)
			goto out;
	}
	if (ca_db_open(&c, true, &db) || ca_db_begin(db))
		goto out;
	if (ca_identity_record(&c, db, pub, sk_X509_value(chain, 0)) ||
	    ca_db_audit(db, "setup", "CA \"%s\", key %s on token \"%s\", %s", c.name, c.key, c.token,
			o->cert		? (c.subordinate ? "existing subordinate certificate" : "existing certificate")
			: c.subordinate ? "subordinate (request in ca.csr)"
					: "root") ||
	    ca_conf_record(&c, db) || ca_db_commit(db)) {
		ca_db_rollback(db);
		goto out;
	}
	ca_path(&c, "ca.crt", path, sizeof path);
	if (sk_X509_num(chain) > 0) {
		struct ca_staged staged;

		if (ca_stage_pem_chain(&staged, path, chain) || ca_stage_commit(&staged))
			goto out;
	}
	/* ca.conf last: its presence is what makes the directory a CA */
	if (ca_conf_save(&c))
		goto out;
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

int ca_install_cert(struct ca *ca, const char *file)
{
	STACK_OF(X509) *chain = NULL;
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	struct ca_staged staged;
	char path[CA_PATH_MAX + 16];
	X509 *x;
	int rc = -1;

	if (ca_open_key(ca))
		goto out;
	if (!(chain = ca_read_certs(file))) {
		ca_error("%s: %s", file, strerror(errno));
		goto out;
	}
	if (!sk_X509_num(chain)) {
		ca_error("%s holds no PEM certificate", file);
		goto out;
	}
	x = sk_X509_value(chain, 0);
	if (!ca_same_key(X509_get0_pubkey(x), ca->pub)) {
		ca_error("%s is not for this CA: its public key is not key \"%s\"'s; nothing installed", file,
			 ca->conf.key);
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
	/* written first, put in place under the write lock with its audit record */
	ca_path(&ca->conf, "ca.crt", path, sizeof path);
	if (ca_stage_pem_chain(&staged, path, chain))
		goto out;
	if (ca_db_begin(ca->db) || ca_identity_record(&ca->conf, ca->db, ca->pub, x) ||
	    ca_db_audit(ca->db, "install-cert", "CA certificate from %s installed", file) ||
	    ca_stage_commit(&staged)) {
		ca_db_rollback(ca->db);
		ca_stage_drop(&staged);
		goto out;
	}
	if (ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		ca_error("ca.crt is installed, but its audit record could not be committed (%s)", ca_last_error());
		goto out;
	}
	ca_path(&ca->conf, "ca.csr", path, sizeof path);
	unlink(path); /* answered */
	/* the CA now issues with this chain */
	sk_X509_pop_free(ca->chain, X509_free);
	ca->chain = chain;
	chain = NULL;
	rc = 0;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}
