/*
 * keyward-ca: an open CA instance. ca_open reads ca.conf, opens the
 * database and checks that the database is this CA's: it records the
 * fingerprint of the CA's public key (from ca.crt, or ca.csr before
 * install-cert), and a database of another CA (copied or restored by
 * mistake) is refused before anything reads or writes it. A database from
 * before the identity was recorded gets it on first open.
 *
 * The key is reached only when asked for (CA_OPEN_KEY, or ca_open_key
 * later), so commands that need no signature need no HSM login; the key
 * found must be the one the certificate names.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ca/ca.h"

static int cert_fingerprint(X509 *x, char out[65])
{
	unsigned char *der = NULL;
	int len = i2d_X509(x, &der);

	out[0] = '\0';
	if (len <= 0)
		return ca_error("cannot encode the CA certificate");
	ca_sha256_hex(der, (size_t)len, out);
	OPENSSL_free(der);
	return 0;
}

int ca_identity_record(const struct ca_conf *c, struct ca_db *db, EVP_PKEY *pub, X509 *cert)
{
	char key[65], fp[65] = "", version[16];

	snprintf(version, sizeof version, "%d", CA_SCHEMA_VERSION);
	if (ca_key_fingerprint(pub, key) || (cert && cert_fingerprint(cert, fp)))
		return -1;
	return ca_db_set_meta(db, CA_META_KEY, key) || ca_db_set_meta(db, CA_META_NAME, c->name) ||
			       (cert && ca_db_set_meta(db, CA_META_CERT, fp)) ||
			       ca_db_set_meta(db, CA_META_SCHEMA, version)
		       ? -1
		       : 0;
}

/* The database is this CA's: its recorded key is the one ca.crt (or ca.csr) names. */
static int check_identity(struct ca *ca)
{
	EVP_PKEY *pub = ca_cert_public_key(&ca->conf);
	char want[65], *have = NULL, *name = NULL;
	int found, rc = -1;

	if (!pub || ca_key_fingerprint(pub, want))
		goto out;
	if ((found = ca_db_get_meta(ca->db, CA_META_KEY, &have)) < 0)
		goto out;
	if (found == 0) {
		if (strcmp(have, want)) {
			ca_db_get_meta(ca->db, CA_META_NAME, &name);
			ca_fail(CA_ERR_CONFLICT,
				"%s/keyward-ca.db belongs to another CA (\"%s\", key SHA-256 %.16s...), not to the "
				"CA of %s/ca.crt (\"%s\", key SHA-256 %.16s...): refused; restore this CA's own "
				"backup (restoredb)",
				ca->conf.dir, name ? name : "?", have, ca->conf.dir, ca->conf.name, want);
			goto out;
		}
		rc = 0;
		goto out;
	}
	/* a database from before identities were recorded: it gets this CA's now */
	if (ca_db_begin(ca->db) || ca_identity_record(&ca->conf, ca->db, pub, NULL) ||
	    ca_db_audit(ca->db, "identity", "CA identity recorded: key SHA-256 %s", want) || ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		snprintf(ca->warning, sizeof ca->warning, "could not record the CA's identity: %s", ca_last_error());
	}
	rc = 0;
out:
	free(have);
	free(name);
	EVP_PKEY_free(pub);
	return rc;
}

/*
 * Every open holds .keyward-ca.lock shared, for as long as it is open; a
 * restore takes it exclusive, so it never replaces a database in use, and
 * no command opens the CA while a restore replaces it.
 */
static int lock_shared(struct ca *ca, const char *dir)
{
	char path[CA_PATH_MAX + 32];

	snprintf(path, sizeof path, "%s/.keyward-ca.lock", dir);
	if ((ca->lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		/* a read-only CA directory (a copy under inspection): nothing can restore into it either */
		ca->lock = -1;
		return errno == EROFS || errno == EACCES ? 0 : ca_error("cannot open %s: %s", path, strerror(errno));
	}
	if (flock(ca->lock, LOCK_SH | LOCK_NB) != 0)
		return ca_fail(CA_ERR_CONFLICT, "a restore into %s is under way: try again when it is done", dir);
	return 0;
}

int ca_open(const char *dir, unsigned flags, struct ca **out)
{
	struct ca *ca = calloc(1, sizeof *ca);

	*out = NULL;
	if (!ca)
		return ca_error("out of memory");
	ca->lock = -1;
	if (ca_conf_load(&ca->conf, dir) || lock_shared(ca, dir) || ca_db_open(&ca->conf, false, &ca->db) ||
	    ((flags & CA_OPEN_READ_ONLY) && ca_db_read_only(ca->db)) || check_identity(ca))
		goto fail;
	/*
	 * an edit by hand goes to the audit log; failing that (a read-only database), the CA still opens.
	 * A read-only responder's ca.conf differs from the issuer's (database =): nothing to note there.
	 */
	if (!(flags & CA_OPEN_READ_ONLY) && ca_conf_note_edits(&ca->conf, ca->db) && !ca->warning[0])
		snprintf(ca->warning, sizeof ca->warning, "%s", ca_last_error());
	if ((flags & CA_OPEN_CERT) && ca_cert_load_chain(&ca->conf, &ca->chain))
		goto fail;
	if ((flags & CA_OPEN_KEY) && ca_open_key(ca))
		goto fail;
	*out = ca;
	return 0;
fail:
	ca_close(ca);
	return -1;
}

int ca_open_key(struct ca *ca)
{
	EVP_PKEY *want;
	bool same;

	if (ca->priv)
		return 0;
	if (ca_token_open(&ca->conf, &ca->token) || ca_token_key(ca->token, ca->conf.key, &ca->priv, &ca->pub) ||
	    !(want = ca_cert_public_key(&ca->conf)))
		return -1;
	same = ca_same_key(ca->pub, want);
	EVP_PKEY_free(want);
	if (!same)
		return ca_fail(CA_ERR_CONFLICT,
			       "the key \"%s\" on token \"%s\" is not the key of the CA in %s (ca.crt): it cannot "
			       "sign for this CA",
			       ca->conf.key, ca->conf.token, ca->conf.dir);
	return 0;
}

void ca_close(struct ca *ca)
{
	if (!ca)
		return;
	ca_batch_signer_close(ca->batch);
	ca_key_decoder_free(ca->decoder);
	ca_db_close(ca->db);
	sk_X509_pop_free(ca->chain, X509_free);
	EVP_PKEY_free(ca->priv);
	EVP_PKEY_free(ca->pub);
	ca_token_close(ca->token);
	if (ca->lock >= 0)
		close(ca->lock);
	free(ca);
}

const struct ca_conf *ca_config(const struct ca *ca)
{
	return &ca->conf;
}

X509 *ca_certificate(const struct ca *ca)
{
	return ca->chain ? sk_X509_value(ca->chain, 0) : NULL;
}

STACK_OF(X509) * ca_chain(const struct ca *ca)
{
	return ca->chain;
}

const char *ca_open_warning(const struct ca *ca)
{
	return ca->warning[0] ? ca->warning : NULL;
}

const struct ca_template *ca_template_named(const struct ca *ca, const char *name)
{
	const struct ca_template *t = ca_template_find(&ca->conf, name);

	if (!t)
		ca_fail(CA_ERR_NOT_FOUND, "no template \"%s\" (templates list)", name);
	return t;
}

int ca_check_active(struct ca *ca, const char *what)
{
	char *note = NULL;
	int found = ca_db_get_meta(ca->db, CA_META_RETIRED, &note);

	if (found == 0) {
		ca_fail(CA_ERR_REFUSED, "this CA was retired (%s): it %s no more", note, what);
		free(note);
		return -1;
	}
	return found < 0 ? -1 : 0;
}
