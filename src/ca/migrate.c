/*
 * keyward-ca migrate: the seed's whole procedure on the new server, as one
 * checked command. Each step is also a command of its own (docs/
 * migration.md), because administrators follow written procedures:
 *
 *   find-key       the CA key among every owner's keys: the one whose public
 *                  key is the backup's CA certificate's (ksputil enumkeys -a)
 *   move-key       to this machine's owner (ksputil chkeysowner)
 *   setup          the CA on that existing key with the backup's certificate
 *   restore        the backup's database (restoredb)
 *   import-config  the old server's settings and templates (config import)
 *   prove          a test certificate issued and revoked, a CRL published,
 *                  the OCSP answer serve would give for it; each verified
 *                  with the CA certificate
 *
 * Finished steps are written to CADIR/migrate.journal, so a run that was
 * interrupted resumes after the last finished step; every step is also
 * safe to run again. The HSM side goes through libkeyward: moving a key
 * between owners is keyward's own operation, not PKCS#11's.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <keyward/keyward.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"
#include "ca/db_status.h"
#include "ca/ocsp.h"
#include "ca/seal.h"

static const char *const steps[] = {"find-key", "move-key", "setup", "restore", "import-config", "prove"};
#define N_STEPS (sizeof steps / sizeof steps[0])

struct run {
	const struct ca_migrate *m;
	char journal[CA_PATH_MAX + 32];
	bool done[N_STEPS];
	char ca_name[CA_NAME_MAX + 1], key_sha256[65];
	char key_name[256], key_owner[KW_OWNER_MAX + 1], my_owner[KW_OWNER_MAX + 1];
	kw_client *client;
};

static void say(const struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct run *r, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (r->m->say)
		r->m->say(r->m->say_arg, line);
}

static int read_journal(struct run *r)
{
	FILE *f = fopen(r->journal, "re");
	char line[256];

	if (!f)
		return errno == ENOENT ? 0 : ca_error("%s: %s", r->journal, strerror(errno));
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, " \n")] = '\0';
		for (size_t i = 0; i < N_STEPS; i++)
			if (!strcmp(line, steps[i]))
				r->done[i] = true;
	}
	fclose(f);
	return 0;
}

/* Step i is finished: journaled (synced), and the fault injection of the tests may stop here. */
static int finish(struct run *r, size_t i, const char *detail)
{
	int fd = open(r->journal, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "a") : NULL;
	const char *crash = getenv("KEYWARD_CA_MIGRATE_CRASH_AFTER");
	time_t now = time(NULL);
	char when[32];
	struct tm tm;
	int ok;

	if (!f) {
		if (fd >= 0)
			close(fd);
		return ca_error("%s: %s", r->journal, strerror(errno));
	}
	gmtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	ok = fprintf(f, "%s %s %s\n", steps[i], when, detail) > 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = fclose(f) == 0 && ok;
	if (!ok)
		return ca_error("cannot write %s: %s", r->journal, strerror(errno));
	r->done[i] = true;
	say(r, "done: %s (%s)", steps[i], detail);
	/* for the tests: an interruption right after this step (docs/testing.md) */
	if (crash && !strcmp(crash, steps[i]))
		raise(SIGKILL);
	return 0;
}

/* The backup's CA: its name and key, from the manifest, which must agree with its ca.crt. */
static int read_backup(struct run *r)
{
	char path[CA_PATH_MAX + 64], *text, cert_key[65];
	json_t *m;
	STACK_OF(X509) * chain;
	size_t len;
	int rc = -1;

	snprintf(path, sizeof path, "%s/manifest.json", r->m->from);
	/* the manifest read as restoredb reads it (ca_manifest_parse); its files are checked by the restore step */
	if (!(text = ca_read_file(path, 64 * 1024, &len)))
		return -1;
	m = ca_manifest_parse(path, text, len);
	free(text);
	if (!m)
		return -1;
	if (!json_is_true(json_object_get(m, "retired")) && !r->m->force) {
		json_decref(m);
		return ca_fail(
			CA_ERR_REFUSED,
			"%s is a backup of a CA that was not retired: the old server could still issue and "
			"publish. Run keyward-ca retire there, then backupdb again (or --force if the old server "
			"is gone for good)",
			r->m->from);
	}
	snprintf(r->ca_name, sizeof r->ca_name, "%s", json_string_value(json_object_get(m, "ca_name")));
	snprintf(r->key_sha256, sizeof r->key_sha256, "%s", json_string_value(json_object_get(m, "key_sha256")));
	json_decref(m);
	snprintf(path, sizeof path, "%s/ca.crt", r->m->from);
	if (!(chain = ca_read_certs(path)) || !sk_X509_num(chain)) {
		ca_error("%s: %s", path, chain ? "no certificate in it" : strerror(errno));
		goto out;
	}
	if (ca_key_fingerprint(X509_get0_pubkey(sk_X509_value(chain, 0)), cert_key))
		goto out;
	if (strcmp(cert_key, r->key_sha256)) {
		ca_error("%s is not the certificate of the CA the manifest names (key SHA-256 %.16s...)", path,
			 r->key_sha256);
		goto out;
	}
	rc = 0;
out:
	sk_X509_pop_free(chain, X509_free);
	return rc;
}

struct search {
	struct run *r;
	unsigned found;
	char where[512];
};

static int match_key(void *arg, const struct ca_hsm_key *k)
{
	struct search *s = arg;

	if (strcmp(k->spki_sha256, s->r->key_sha256) || !k->has_private)
		return 0;
	s->found++;
	snprintf(s->r->key_name, sizeof s->r->key_name, "%s", k->name);
	snprintf(s->r->key_owner, sizeof s->r->key_owner, "%s", k->owner);
	snprintf(s->where + strlen(s->where), sizeof s->where - strlen(s->where), "%s%s/%s", s->found > 1 ? ", " : "",
		 k->owner, k->name);
	return 0;
}

/* find-key: among every owner's key pairs, the CA's (its public key's fingerprint). */
static int find_key(struct run *r)
{
	struct search s = {.r = r};

	if (ca_hsm_keys_list(r->client, r->my_owner, match_key, &s))
		return -1;
	if (!s.found)
		return ca_fail(CA_ERR_NOT_FOUND,
			       "no key pair on the HSM is the CA's (key SHA-256 %.16s...): is this client in the CA "
			       "key's partition? (ksputil enumkeys -a lists what it sees)",
			       r->key_sha256);
	if (s.found > 1)
		return ca_fail(CA_ERR_CONFLICT, "%u key pairs are the CA's (%s): keep one", s.found, s.where);
	say(r, "the CA key is \"%s\" under owner %s%s", r->key_name, r->key_owner,
	    strcmp(r->key_owner, r->my_owner) ? "" : " (this machine's)");
	return 0;
}

/*
 * The key CMP's shared secrets and ACME's EAB keys are sealed under
 * (seal.c, "FILE.cmp-seal"), if the CA has one, goes where the CA key
 * goes: without it the secrets in the restored database do not unseal.
 * Moved before the CA key, so that a run interrupted between the two,
 * which resumes by moving the CA key, finds it moved already.
 */
static int move_seal_key(struct run *r)
{
	char label[CA_SEAL_LABEL_MAX];
	kw_rv rv;

	ca_seal_label(r->ca_name, label, sizeof label);
	rv = kw_change_owner(r->client, label, r->key_owner, r->my_owner, NULL);
	if (rv == KW_OK) {
		say(r, "moved the seal key of CMP secrets and EAB keys \"%s\" with it", label);
		return 0;
	}
	if (rv == KW_ERR_NOT_FOUND)
		return 0; /* the CA has no CMP secrets nor EAB keys (or the key was moved with it already) */
	return ca_error("moving the seal key \"%s\" from owner %s to %s: %s", label, r->key_owner, r->my_owner,
			kw_last_error());
}

static int move_key(struct run *r)
{
	if (!strcmp(r->key_owner, r->my_owner)) {
		if (r->m->dry_run) {
			say(r, "would leave \"%s\" where it is: under this machine's owner already", r->key_name);
			return 0;
		}
		return finish(r, 1, "already under this machine's owner");
	}
	if (r->m->dry_run) {
		say(r,
		    "would move \"%s\" from owner %s to %s (chkeysowner), and the seal key of CMP secrets and EAB keys "
		    "if there is one",
		    r->key_name, r->key_owner, r->my_owner);
		return 0;
	}
	if (move_seal_key(r))
		return -1;
	if (kw_change_owner(r->client, r->key_name, r->key_owner, r->my_owner, NULL))
		return ca_error("moving \"%s\" from owner %s to %s: %s", r->key_name, r->key_owner, r->my_owner,
				kw_last_error());
	{
		char detail[600];

		snprintf(detail, sizeof detail, "\"%s\" moved from owner %s to %s", r->key_name, r->key_owner,
			 r->my_owner);
		snprintf(r->key_owner, sizeof r->key_owner, "%s", r->my_owner);
		return finish(r, 1, detail);
	}
}

static bool holds_ca(const char *dir)
{
	char path[CA_PATH_MAX + 16];

	snprintf(path, sizeof path, "%s/ca.conf", dir);
	return access(path, F_OK) == 0;
}

static int setup(struct run *r)
{
	char cert[CA_PATH_MAX + 16];
	struct ca_setup s = {.dir = r->m->dir,
			     .name = r->ca_name,
			     .existing_key = r->key_name,
			     .cert = cert,
			     .module = r->m->module,
			     .token = r->m->token,
			     .pin_file = r->m->pin_file,
			     .server_name = r->m->server_name};

	if (holds_ca(r->m->dir)) {
		/* set up before (by hand, or by a run that stopped before its journal line): on this key? */
		struct ca *ca = NULL;
		int rc = ca_open(r->m->dir, CA_OPEN_KEY, &ca);

		if (!rc && strcmp(ca->conf.name, r->ca_name))
			rc = ca_fail(CA_ERR_CONFLICT, "%s holds CA \"%s\", not \"%s\"", r->m->dir, ca->conf.name,
				     r->ca_name);
		ca_close(ca);
		if (!rc && r->m->dry_run) {
			say(r, "would keep CA \"%s\" in %s, set up already on this key", r->ca_name, r->m->dir);
			return 0;
		}
		return rc ? -1 : finish(r, 2, "the CA was set up already, on this key");
	}
	if (r->m->dry_run) {
		say(r, "would set up CA \"%s\" in %s on the existing key \"%s\"", r->ca_name, r->m->dir, r->key_name);
		return 0;
	}
	snprintf(cert, sizeof cert, "%s/ca.crt", r->m->from);
	/* on the key and certificate the backup names; the CA's own settings come with import-config */
	return ca_setup(&s) ? -1 : finish(r, 2, "set up on the existing key");
}

static int restore(struct run *r)
{
	struct ca_restored restored;
	char detail[64];

	if (r->m->dry_run) {
		say(r, "would restore the database from %s", r->m->from);
		return 0;
	}
	if (ca_restore(r->m->dir, r->m->from, false, &restored))
		return -1;
	snprintf(detail, sizeof detail, "next CRL number %lld", restored.next_crl);
	return finish(r, 3, detail);
}

static int import_config(struct run *r)
{
	char export_path[CA_PATH_MAX + 32], set[300];
	const char *sets[1] = {set};
	struct ca *ca = NULL;
	int rc;

	if (r->m->config)
		snprintf(export_path, sizeof export_path, "%s", r->m->config);
	else
		snprintf(export_path, sizeof export_path, "%s/ca.conf.export", r->m->from);
	if (r->m->server_name)
		snprintf(set, sizeof set, "server_name=%s", r->m->server_name);
	if (r->m->dry_run) {
		say(r, "would import the configuration of %s%s%s", export_path, r->m->server_name ? " with " : "",
		    r->m->server_name ? set : "");
		return 0;
	}
	rc = ca_open(r->m->dir, 0, &ca) || ca_config_import(ca, export_path, sets, r->m->server_name ? 1 : 0);
	ca_close(ca);
	return rc ? -1 : finish(r, 4, export_path);
}

/* A throwaway key and request for the proof: an EC P-256 key made in memory and dropped. */
static struct ca_request *proof_request(struct ca_key_decoder *d)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	unsigned char *der = NULL;
	struct ca_request *out = NULL;
	int len;

	if (key && req && name &&
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"keyward-ca migrate proof", -1,
				       -1, 0) &&
	    X509_REQ_set_subject_name(req, name) && X509_REQ_set_pubkey(req, key) &&
	    X509_REQ_sign(req, key, EVP_sha256()) > 0 && (len = i2d_X509_REQ(req, &der)) > 0)
		out = ca_request_parse(der, (size_t)len, d);
	else
		ca_error("cannot make the proof's request");
	OPENSSL_free(der);
	X509_NAME_free(name);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return out;
}

/* The CRL just published lists serial and verifies with the CA's key. */
static int check_crl(struct ca *ca, const char *serial)
{
	char file[CA_NAME_MAX + 1], path[CA_PATH_MAX + 300];
	X509_CRL *crl = NULL;
	FILE *f;
	bool listed = false;
	int rc = -1;

	ca_file_name(ca->conf.name, file, sizeof file);
	snprintf(path, sizeof path, "%s/publish/%s.crl", ca->conf.dir, file);
	if ((f = fopen(path, "re"))) {
		crl = d2i_X509_CRL_fp(f, NULL);
		fclose(f);
	}
	if (!crl)
		return ca_error("%s: no CRL to read back", path);
	for (int i = 0; i < sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)); i++) {
		char s[80];

		ca_serial_hex(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), i)), s,
			      sizeof s);
		listed = listed || !strcmp(s, serial);
	}
	if (X509_CRL_verify(crl, X509_get0_pubkey(ca_certificate(ca))) != 1)
		ca_error("%s does not verify with the CA certificate", path);
	else if (!listed)
		ca_error("%s does not list the proof certificate %s", path, serial);
	else
		rc = 0;
	X509_CRL_free(crl);
	return rc;
}

static int status_of(void *arg, const char *serial, struct ocsp_status *st)
{
	return ca_status_get(arg, serial, st);
}

/*
 * The OCSP answer for serial as the responder (keyward-ca serve) gives it,
 * from the restored database, signed with the CA key: parsed back,
 * verified against the CA certificate, and revoked.
 */
static int check_ocsp(struct ca *ca, const char *serial)
{
	struct ocsp_issuer is;
	struct ocsp_signer signer = {.cert = ca_certificate(ca), .key = ca->priv, .md = ca_md(&ca->conf)};
	struct ca_status_db *db = NULL;
	struct ocsp_result res;
	OCSP_REQUEST *req = NULL;
	OCSP_RESPONSE *resp = NULL;
	OCSP_BASICRESP *bs = NULL;
	X509_STORE *store = X509_STORE_new();
	STACK_OF(X509) *certs = sk_X509_new_null();
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	int status = -1, rc = -1;

	if (!store || !certs || ocsp_issuer_init(&is, ca_certificate(ca)) || ca_status_open(&ca->conf, &db) ||
	    !(req = ocsp_request_for_serial(&is, serial)) ||
	    ocsp_answer(&is, &signer, req, status_of, db, time(NULL), 3600, &der, &len, &res))
		goto out;
	p = der;
	X509_STORE_add_cert(store, ca_certificate(ca));
	sk_X509_push(certs, ca_certificate(ca));
	if (!(resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len)) || !(bs = OCSP_response_get1_basic(resp)) ||
	    OCSP_basic_verify(bs, certs, store, OCSP_TRUSTOTHER) != 1) {
		ca_error("the OCSP answer for the proof certificate %s does not verify with the CA certificate",
			 serial);
		goto out;
	}
	status = OCSP_single_get0_status(OCSP_resp_get0(bs, 0), NULL, NULL, NULL, NULL);
	if (status != V_OCSP_CERTSTATUS_REVOKED)
		ca_error("OCSP says the revoked proof certificate %s is %s", serial, OCSP_cert_status_str(status));
	else
		rc = 0;
out:
	ERR_clear_error();
	OPENSSL_free(der);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(resp);
	OCSP_REQUEST_free(req);
	ca_status_close(db);
	sk_X509_free(certs);
	X509_STORE_free(store);
	return rc;
}

static int prove(struct run *r)
{
	struct ca *ca = NULL;
	struct ca_key_decoder *d = NULL;
	struct ca_request *req = NULL;
	struct ca_issued c = {0};
	const struct ca_template *t;
	long long crl = 0;
	X509 *x = NULL;
	const unsigned char *p;
	char detail[200];
	int rc = -1;

	if (r->m->dry_run) {
		say(r, "would issue and revoke a test certificate, publish a CRL and check them");
		return 0;
	}
	if (ca_open(r->m->dir, CA_OPEN_CERT | CA_OPEN_KEY, &ca) || !(t = ca_template_named(ca, "Client")) ||
	    !(d = ca_key_decoder_new()) || !(req = proof_request(d)))
		goto out;
	if (t->manual) {
		ca_error("the proof issues under template Client, which wants approval here: prove by hand "
			 "(docs/migration.md)");
		goto out;
	}
	if (ca_issue(ca, t, req, &c))
		goto out;
	p = c.der;
	if (!(x = d2i_X509(NULL, &p, (long)c.der_len)) || X509_verify(x, X509_get0_pubkey(ca_certificate(ca))) != 1) {
		ca_error("the proof certificate %s does not verify with the CA certificate", c.serial);
		goto out;
	}
	if (ca_revoke(ca, c.serial, 5 /* cessationOfOperation */, 0) || ca_crl_publish(ca, false, &crl) ||
	    check_crl(ca, c.serial) || check_ocsp(ca, c.serial))
		goto out;
	snprintf(detail, sizeof detail, "certificate %s issued and revoked; CRL %lld lists it; OCSP says revoked",
		 c.serial, crl);
	rc = finish(r, 5, detail);
out:
	X509_free(x);
	ca_issued_free(&c);
	ca_request_free(req);
	ca_key_decoder_free(d);
	ca_close(ca);
	return rc;
}

int ca_migrate(const struct ca_migrate *m)
{
	struct run r = {.m = m};
	int rc = -1;

	if (!m->dir || !m->from)
		return ca_usage_error("migrate needs the CA directory and --from BACKUPDIR");
	if (read_backup(&r) || ca_hsm_open(m->pin_file, m->dir, &r.client, r.my_owner, sizeof r.my_owner))
		goto out;
	if (!m->dry_run && mkdir(m->dir, 0700) != 0 && errno != EEXIST) {
		ca_error("cannot create %s: %s", m->dir, strerror(errno));
		goto out;
	}
	snprintf(r.journal, sizeof r.journal, "%s/migrate.journal", m->dir);
	if (read_journal(&r))
		goto out;
	say(&r, "migrating CA \"%s\" from %s into %s%s", r.ca_name, m->from, m->dir, m->dry_run ? " (dry run)" : "");
	for (size_t i = 0; i < N_STEPS; i++)
		say(&r, "  %zu. %-14s %s", i + 1, steps[i], r.done[i] ? "done before" : "");
	/* find-key always runs: it changes nothing, and the later steps need what it finds */
	if (find_key(&r))
		goto out;
	if (!r.done[0] && !m->dry_run && finish(&r, 0, r.key_name))
		goto out;
	if ((!r.done[1] && move_key(&r)) || (!r.done[2] && setup(&r)) || (!r.done[3] && restore(&r)) ||
	    (!r.done[4] && import_config(&r)) || (!r.done[5] && prove(&r)))
		goto out;
	if (m->dry_run)
		say(&r, "dry run: nothing changed");
	else
		say(&r, "CA \"%s\" runs here now", r.ca_name);
	rc = 0;
out:
	kw_client_free(r.client);
	return rc;
}
