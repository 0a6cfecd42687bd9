/*
 * keyward-ca: what the command files share. Each cmd_* runs one command
 * of keyward-ca(8) and returns 0, or -1 after ca_error().
 *
 *   main.c     options and dispatch
 *   cli.c      opening the instance; writing certificates
 *   setup.c    setup, install-cert
 *   issue.c    submit, approve, deny
 *   batch.c    issuing many requests in one process, on several threads
 *   manage.c   keys, templates, revoke, unrevoke, list, view, ca.cert, ca.chain, crl, audit
 *   settings.c config; ca.conf's text kept in the database, and edits by hand audited
 */
#ifndef KW_CA_CLI_H
#define KW_CA_CLI_H

#include "ca/ca.h"

#ifndef KW_DEFAULT_PKCS11_MODULE
#define KW_DEFAULT_PKCS11_MODULE "/usr/lib/x86_64-linux-gnu/pkcs11/keyward-pkcs11.so"
#endif

enum { EXIT_ERROR = 1, EXIT_USAGE = 2 };

struct opts {
	const char *dir, *name, *key_type, *existing_key, *cert, *hash, *server_name, *module, *token, *pin_file;
	const char *template_name, *out, *out_dir, *reason, *date, *status, *file;
	unsigned validity, threads;
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

/* Loads the instance: its configuration and database, and if asked its chain and its key. */
int ca_open(const struct opts *o, bool need_key, bool need_cert, struct ca *ca);
/* Logs in to the token and finds the CA's key (ca_open's need_key, done later). */
int ca_open_key(struct ca *ca);
void ca_close(struct ca *ca);
X509 *ca_cert(struct ca *ca);
/* A certificate's DER as PEM to out, or standard output if out is NULL. */
int write_cert(const char *out, const unsigned char *der, size_t len);
bool same_key(EVP_PKEY *a, EVP_PKEY *b);
/* A serial as typed (any case, leading zeros, colons) in the form stored: upper-case hex. */
void normalize_serial(const char *in, char *out, size_t size);

/* A signed certificate, ready to be recorded. */
struct issued {
	struct ca_db_cert row;
	unsigned char *der;
	size_t der_len;
};
/* Fills is from x, issued under t for request_id (0: none), and frees x. */
int issued_fill(struct issued *is, X509 *x, const struct ca_template *t, long long request_id);
void issued_free(struct issued *is);
/* Records n certificates with their audit rows in one transaction. */
int issued_record(struct ca *ca, struct issued *is, size_t n);
/*
 * Issues the request in each of files under t, signing on threads; checks
 * every request before it records any, and reports each after its commit.
 */
int issue_batch(struct ca *ca, const struct ca_template *t, char **files, size_t n, const struct opts *o);

/* Records ca.conf's text (as c would write it) in db's open transaction. */
int ca_conf_record(const struct ca_conf *c, struct ca_db *db);
/*
 * A change of the configuration: c's ca.conf staged; then in one
 * transaction an audit record (event config; fmt says what changed) and
 * c's text recorded, and ca.conf put in place under the write lock. A
 * failure before the commit changes nothing; a failed commit leaves a
 * ca.conf the next command records as changed by hand.
 */
int ca_conf_change(const struct ca_conf *c, struct ca_db *db, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* If ca.conf is not as keyward-ca last wrote it, audits the lines that changed (own transaction). */
int ca_conf_note_edits(const struct ca_conf *c, struct ca_db *db);

int cmd_setup(const struct opts *o);
int cmd_install_cert(const struct opts *o, const char *file);
int cmd_submit(const struct opts *o, int nfiles, char **files);
int cmd_decide(const struct opts *o, const char *id_text, bool approve);
int cmd_keys(const struct opts *o);
int cmd_templates(const struct opts *o, int argc, char **argv);
int cmd_revoke(const struct opts *o, const char *serial_in, bool unrevoke);
int cmd_list(const struct opts *o);
int cmd_view(const struct opts *o, const char *serial);
int cmd_export(const struct opts *o, const char *file, bool whole_chain);
int cmd_crl(const struct opts *o);
int cmd_config(const struct opts *o, int argc, char **argv);
int cmd_audit(const struct opts *o);

#endif
