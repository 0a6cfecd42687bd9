/*
 * keyward-ca, the command line: thin front ends over the CA library
 * (ca/api.h). Each cmd_* parses what main collected, calls the library and
 * prints; it returns 0, or -1 with the library's error (main prints it and
 * exits 1, or 2 for a usage error).
 *
 *   main.c        options and dispatch
 *   out.c         printing certificates and JSON
 *   cmd_setup.c   setup, install-cert, keys
 *   cmd_issue.c   submit, approve, deny
 *   cmd_certs.c   revoke, unrevoke, list, view, ca.cert, ca.chain, crl, audit, status
 *   cmd_config.c  config, templates
 *   cmd_move.c    backupdb, restoredb, retire, migrate
 *   cmd_serve.c   serve
 *   cmd_acme.c    acme-eab
 *   cmd_cmp.c     cmp-secret
 */
#ifndef KW_CA_CLI_H
#define KW_CA_CLI_H

#include <jansson.h>
#include <time.h>

#include "ca/api.h"

enum { EXIT_ERROR = 1, EXIT_USAGE = 2 };

struct opts {
	const char *dir, *name, *key_type, *existing_key, *cert, *hash, *server_name, *url_base, *module, *token,
		*pin_file, *database;
	const char *template_name, *out, *out_dir, *reason, *date, *status, *file, *from, *config, *listen;
	const char *sets[32]; /* --set KEY=VALUE */
	size_t n_sets;
	unsigned validity, threads;
	bool subordinate, delta, json, der, force, yes, dry_run, quiet, remove;
};

/* The CA in o->dir, opened with flags; a warning from opening it goes to stderr. */
int cli_open(const struct opts *o, unsigned flags, struct ca **ca);
/* A certificate's DER as PEM to out, or standard output if out is NULL. */
int cli_write_cert(const char *out, const unsigned char *der, size_t len);
/* A certificate's DER as a JSON string holding its PEM; NULL if out of memory. */
json_t *cli_pem_json(const unsigned char *der, size_t len);
/* Prints j (and frees it) as one JSON document on standard output. */
int cli_print_json(json_t *j);
/* t as ISO 8601 UTC into buf. */
const char *cli_time(time_t t, char *buf, size_t size);
/*
 * A progress line on standard error, "keyward-ca: " and fmt's text over the
 * one before: redrawn at most five times a second (*shown: when it last
 * was), and always when finished, which ends the line.
 */
void cli_progress(struct timespec *shown, bool finished, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

int cmd_setup(const struct opts *o);
int cmd_install_cert(const struct opts *o, const char *file);
int cmd_keys(const struct opts *o);
int cmd_submit(const struct opts *o, int nfiles, char **files);
int cmd_decide(const struct opts *o, const char *id_text, bool approve);
int cmd_revoke(const struct opts *o, const char *serial, bool unrevoke);
int cmd_list(const struct opts *o);
int cmd_view(const struct opts *o, const char *serial);
int cmd_export(const struct opts *o, const char *file, bool whole_chain);
int cmd_crl(const struct opts *o);
int cmd_audit(const struct opts *o);
int cmd_status(const struct opts *o);
int cmd_templates(const struct opts *o, int argc, char **argv);
int cmd_config(const struct opts *o, int argc, char **argv);
int cmd_backupdb(const struct opts *o, const char *dir);
int cmd_restoredb(const struct opts *o, const char *dir);
int cmd_database(const struct opts *o, int argc, char **argv);
int cmd_retire(const struct opts *o);
int cmd_migrate(const struct opts *o);
int cmd_serve(const struct opts *o);
int cmd_acme_eab(const struct opts *o, const char *template_name);
int cmd_cmp_secret(const struct opts *o, const char *tmpl);

#endif
