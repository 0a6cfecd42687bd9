/*
 * keyward-ca's library: a certificate authority whose key is reached only
 * through PKCS#11. This header is the one way in, for the command line
 * (src/ca/cli/), serve, enrollment and migration alike. Nothing here
 * prints or exits: a function returns 0 (or a pointer), or -1 (NULL)
 * after recording what went wrong and its kind (ca_last_error,
 * ca_last_error_kind), which the front end turns into an exit status, an
 * HTTP status or a protocol error.
 *
 * An instance is a directory: ca.conf, ca.crt, keyward-ca.db, publish/.
 * The database knows which CA it belongs to (its key's fingerprint) and
 * whether that CA was retired; ca_open refuses a database of another CA.
 */
#ifndef KW_CA_API_H
#define KW_CA_API_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <stdio.h>

#include <openssl/x509.h>

#define CA_NAME_MAX 128
#define CA_PATH_MAX 1024
#define CA_TEMPLATES_MAX 64

/* ---- errors ---- */
enum ca_err {
	CA_ERR_FAILED = 1, /* could not be done: I/O, the HSM, the database */
	CA_ERR_USAGE,	   /* the call cannot be right whatever the CA holds */
	CA_ERR_REFUSED,	   /* policy said no: a template's rules, a name, a retired CA */
	CA_ERR_NOT_FOUND,  /* no such certificate, request, template or key */
	CA_ERR_CONFLICT,   /* the state forbids it: already revoked, another CA's database, a CA running */
};
const char *ca_last_error(void);
enum ca_err ca_last_error_kind(void);
/* Records an error of kind (front ends record their own this way too); returns -1. */
int ca_fail(enum ca_err kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the instance ---- */
struct ca;	       /* an open instance */
struct ca_request;     /* a parsed PKCS#10 request */
struct ca_key_decoder; /* decodes public keys of requests; made once, used by one thread at a time */

struct ca_template {
	char name[64];
	unsigned validity_days;
	char key_usage[256];	      /* digitalSignature,keyEncipherment,... */
	char extended_key_usage[256]; /* serverAuth,clientAuth,... or empty */
	bool ca;
	int path_len;	     /* -1: none */
	char key_types[128]; /* RSA-2048+,EC-P256,EC-P384 */
	bool subject_cn;     /* the subject must have a CN */
	char san[64];	     /* SAN kinds taken from the request: dns,ip,email; empty: none */
	bool manual;	     /* approval = manual */
	bool ocsp_nocheck;
	bool builtin;  /* not from ca.conf */
	bool wildcard; /* a DNS name (or CN) may be a wildcard: "*" as the whole leftmost label */
	unsigned validity_seconds; /* not 0: the validity instead of validity_days (callers', never ca.conf's) */
};

struct ca_conf {
	char dir[CA_PATH_MAX];
	char name[CA_NAME_MAX + 1];
	char key[CA_PATH_MAX]; /* a label, or a pkcs11: URI */
	char token[64];	       /* the token label, when key is a label */
	char module[CA_PATH_MAX];
	char pin_file[CA_PATH_MAX];
	char database[512]; /* empty: keyward-ca.db in dir (SQLite); else postgresql://... (db_pg.c) */
	char hash[16];
	unsigned validity_days;
	char server_name[256];	     /* this host's name: where the CA runs */
	char url_base[256];	     /* what issued certificates point to; empty: http://server_name */
	char legacy_url_bases[1024]; /* URL bases of earlier hosts that serve still answers (space-separated) */
	unsigned crl_period_hours, crl_overlap_hours, delta_crl_period_hours;
	bool subordinate;
	struct ca_template templates[CA_TEMPLATES_MAX]; /* built-ins, then ca.conf's (which override) */
	size_t n_templates;
};

/* a certificate as the database holds it */
struct ca_db_cert {
	char serial[80]; /* upper-case hex */
	char subject[512];
	char template_name[64];
	time_t not_before, not_after;
	char status[16]; /* issued, revoked */
	time_t revoked_at;
	int reason; /* CRL reason code, -1 if none */
	long long request_id;
};

/* The defaults of a configuration for dir, as setup starts from (module, token, hash, ...). */
int ca_conf_defaults(struct ca_conf *c, const char *dir);
/* ca.conf's text for c: the [ca] section, then each template not built in (malloc'd). */
char *ca_conf_text(const struct ca_conf *c);
/* Writes t's keys as a [template] section's lines. */
void ca_template_print(const struct ca_template *t, FILE *f);

struct ca_key_decoder *ca_key_decoder_new(void);
void ca_key_decoder_free(struct ca_key_decoder *d);
/* A request from a PEM or DER file; NULL with the reason, naming the file. */
struct ca_request *ca_request_read(const char *path, struct ca_key_decoder *d);
/* A request from bytes (PEM or DER, at most CA_REQUEST_MAX), named name in errors; NULL with the reason. */
struct ca_request *ca_request_from_bytes(const char *name, const char *bytes, size_t len, struct ca_key_decoder *d);
/* A request from a CRMF CertReqMsg's DER (CMP's ir, cr, kur), its proof of possession checked as a
 * PKCS#10 request's signature is; NULL with the reason. */
struct ca_request *ca_request_from_crmf(const unsigned char *der, size_t len, struct ca_key_decoder *d);
void ca_request_free(struct ca_request *r);
/* req's signature verifies with its own key, and t's rules hold; -1 with the reason. */
int ca_request_check(const struct ca_template *t, const struct ca_request *req);

enum {
	CA_OPEN_CERT = 1, /* the chain in ca.crt: for issuing, publishing, exporting */
	CA_OPEN_KEY = 2,  /* logged in to the token, the CA key found, and it is the key ca.crt (ca.csr) names */
	CA_OPEN_READ_ONLY = 4, /* the database only read: every change refused (a read-only responder) */
};
/* Opens the CA in dir: its configuration and database, and what flags ask for. */
int ca_open(const char *dir, unsigned flags, struct ca **out);
/* Logs in and finds the key later, when it turns out to be needed. */
int ca_open_key(struct ca *ca);
void ca_close(struct ca *ca);
/* What the front end should tell though the CA opened (an edit of ca.conf not audited); NULL if nothing. */
const char *ca_open_warning(const struct ca *ca);
const struct ca_conf *ca_config(const struct ca *ca);
/* The CA certificate (NULL before install-cert or without CA_OPEN_CERT), and the whole chain. */
X509 *ca_certificate(const struct ca *ca);
STACK_OF(X509) * ca_chain(const struct ca *ca);
const struct ca_template *ca_template_named(const struct ca *ca, const char *name);

/* ---- setting up ---- */
struct ca_setup {
	const char *dir, *name;
	const char *key_type;	  /* a new key of this type (CA_KEY_TYPES); default RSA-3072 */
	const char *existing_key; /* or a key already on the token: a label or a pkcs11: URI */
	const char *cert;	  /* with existing_key: its certificate (and chain), PEM */
	const char *hash, *server_name, *url_base, *module, *token, *pin_file;
	const char *database; /* ca.conf's database: postgresql://...; NULL: keyward-ca.db (SQLite) */
	unsigned validity_days;
	bool subordinate; /* writes ca.csr for the parent CA; install-cert completes it */
};
/* Sets up a CA in s->dir; on failure nothing of it stays behind. */
int ca_setup(const struct ca_setup *s);
/* Installs a subordinate CA's certificate (file: it, then its chain up to a root). */
int ca_install_cert(struct ca *ca, const char *file);

/* ---- issuance: one pipeline, a single certificate is a batch of one ---- */
struct ca_issued {
	char serial[80]; /* upper-case hex */
	char subject[512];
	unsigned char *der;
	size_t der_len;
	long long request_id; /* the approved request, or 0 */
};
void ca_issued_free(struct ca_issued *c);
struct ca_batch {
	const struct ca_template *t;
	size_t n;
	/* request i, read and parsed (with d); NULL after ca_error (the message names the request) */
	struct ca_request *(*get)(void *arg, size_t i, struct ca_key_decoder *d);
	void *get_arg;
	/* told of certificate i once it is committed; what it returns stops the rest (-1) */
	int (*done)(void *arg, size_t i, const struct ca_issued *c);
	void *done_arg;
	const char *const *names;     /* request i's name in errors; NULL: "request i" */
	const long long *request_ids; /* the approved requests they answer, or NULL */
	unsigned threads;	      /* signers; 0: one per processor */
};
/*
 * Checks every request before it records any (one bad request issues
 * none), signs on b->threads threads while the next are prepared, and
 * records GROUPs per transaction, telling b->done of each after its commit.
 */
int ca_issue_batch(struct ca *ca, const struct ca_batch *b);
/* req (checked here) under t, signed and recorded: a batch of one. */
int ca_issue(struct ca *ca, const struct ca_template *t, const struct ca_request *req, struct ca_issued *out);
/* Records req, checked against t, as pending approval; its number in *id. */
int ca_submit_pending(struct ca *ca, const struct ca_template *t, const struct ca_request *req, long long *id);
/* A pending request approved (issued, checked again against its template today) or denied. */
int ca_approve(struct ca *ca, long long id, struct ca_issued *out);
int ca_deny(struct ca *ca, long long id);

/* ---- revocation and CRLs ---- */
/* Revokes serial (as typed: any case, colons) for reason (RFC 5280 code); invalid_since (0: none) dates the compromise.
 */
int ca_revoke(struct ca *ca, const char *serial, int reason, time_t invalid_since);
/* Takes back a certificateHold. */
int ca_unrevoke(struct ca *ca, const char *serial);
/* Signs and publishes a full or delta CRL to publish/, with the CA certificate beside it (AIA). */
int ca_crl_publish(struct ca *ca, bool delta, long long *number);
/*
 * How far long work on ca has gone (a CRL's entries, CA_PROGRESS_EVERY at a
 * time, then once more with finished): for a front end's progress line.
 * Only work that reaches CA_PROGRESS_EVERY reports. NULL: none.
 */
#define CA_PROGRESS_EVERY 65536
typedef void ca_progress_fn(void *arg, const char *what, unsigned long long done, bool finished);
void ca_set_progress(struct ca *ca, ca_progress_fn *fn, void *arg);
int ca_reason_code(const char *name);
const char *ca_reason_name(int code);
/* A serial as typed (any case, leading zeros, colons) in the form stored: upper-case hex. */
void ca_serial_normalize(const char *in, char *out, size_t size);

/* ---- what the CA holds ---- */
struct ca_status {
	char name[129];
	char key_sha256[65];  /* SHA-256 of the CA's SubjectPublicKeyInfo: the CA's identity */
	char cert_sha256[65]; /* of ca.crt's certificate; empty before install-cert */
	int schema_version;
	long long issued, revoked, expired, pending; /* certificates by state, requests waiting */
	long long last_crl, last_delta_crl;	     /* numbers; 0: none yet */
	time_t last_crl_time;
	bool retired;
	char retired_note[256]; /* when and where, once retired */
};
int ca_status(struct ca *ca, struct ca_status *st);
/* Each certificate (status: issued, revoked, expired or NULL for all), oldest first. */
int ca_each_cert(struct ca *ca, const char *status, int (*fn)(void *arg, const struct ca_db_cert *c), void *arg);
struct ca_pending {
	long long id;
	char template_name[64], status[16];
	time_t submitted;
};
/* Each request not issued (status: pending, denied or NULL for both). */
int ca_each_request(struct ca *ca, const char *status, int (*fn)(void *arg, const struct ca_pending *r), void *arg);
struct ca_audit_row {
	long long id, uid;
	time_t time;
	const char *event, *detail;
};
int ca_each_audit(struct ca *ca, int (*fn)(void *arg, const struct ca_audit_row *r), void *arg);
/* The certificate of serial (as typed); der (may be NULL) malloc'd. */
int ca_find_cert(struct ca *ca, const char *serial, struct ca_db_cert *row, unsigned char **der, size_t *len);

/* ---- keys on the token, with or without a CA ---- */
struct ca_key_info {
	char label[128];
	char id[129];  /* hex */
	char type[16]; /* RSA, EC, ... */
	int bits;
	char spki_sha256[65]; /* the public key's fingerprint */
};
/* The keys that where's module, token and PIN file reach (a CA's configuration, or ca_conf_defaults'). */
int ca_keys_each(const struct ca_conf *where, int (*fn)(void *arg, const struct ca_key_info *k), void *arg);
/* A key pair on a keyward HSM, under any owner (hsmkeys.c). */
struct ca_hsm_key {
	char owner[129], name[256]; /* KW_OWNER_MAX + 1 */
	int bits;
	char spki_sha256[65];
	bool has_private; /* its private half is there too */
	bool mine;	  /* under this machine's owner */
};
/* Every owner's key pairs on the keyward HSM of this host's client configuration (PIN: pin_file or the client's). */
int ca_hsm_keys_each(const char *pin_file, int (*fn)(void *arg, const struct ca_hsm_key *k), void *arg);
/* The PKCS#11 module and PIN file this host uses for c: c's, or when c names none, the host's own. */
const char *ca_host_module(const struct ca_conf *c);
void ca_host_pin_file(const struct ca_conf *c, char *out, size_t size);
/* The SHA-256 of key's SubjectPublicKeyInfo in hex (65 bytes). */
int ca_key_fingerprint(EVP_PKEY *key, char out[65]);

/* ---- moving the CA to another server ---- */
/* A backup of the database (consistent while the CA runs) to the new or empty dir; *st its figures. */
int ca_backup(struct ca *ca, const char *dir, struct ca_status *st);
/*
 * Replaces the database of the CA in dir (set up on the same key) with
 * backup's, after checking everything; refused while any keyward-ca has the
 * CA open. force accepts a backup of another key.
 */
struct ca_restored {
	long long next_crl;  /* the next CRL number */
	bool backup_retired; /* the backup's CA was retired: its server issues no more */
};
int ca_restore(const char *dir, const char *backup, bool force, struct ca_restored *out);
/*
 * database move: the records of the CA in dir moved to target (a
 * postgresql:// URL, or "sqlite" for keyward-ca.db), checked, and ca.conf
 * switched; the CA stopped on this host meanwhile (dbmove.c).
 */
struct ca_db_move {
	const char *dir, *target;
	void (*say)(void *arg, const char *line); /* each step done */
	void *arg;
};
int ca_db_move(const struct ca_db_move *m);
/* Stops this CA for good (recorded in its database) after a final full CRL, whose number is *final_crl. */
int ca_retire(struct ca *ca, long long *final_crl);
/* config export: the CA's settings and templates without this host's (module, PIN file, server name). */
int ca_config_export(struct ca *ca, const char *file);
/* config import: an export's settings and templates into this CA (same name), then sets (KEY=VALUE). */
int ca_config_import(struct ca *ca, const char *file, const char *const *sets, size_t n_sets);

/* The steps of migrate, run on the new server (migrate.c says what each does). */
struct ca_migrate {
	const char *dir;		       /* the CA directory here (made if missing) */
	const char *from;		       /* the old server's backupdb directory */
	const char *config;		       /* its config export; NULL: from/ca.conf.export */
	const char *server_name;	       /* this server's name; NULL: the host name */
	const char *module, *token, *pin_file; /* this host's, for setup; NULL: defaults */
	bool dry_run;			       /* find the key, print the plan, change nothing */
	bool force; /* migrate a backup of a CA that was not retired (its old server is gone) */
	void (*say)(void *arg, const char *line); /* progress, one line at a time */
	void *say_arg;
};
int ca_migrate(const struct ca_migrate *m);

/* ---- on the network ---- */
/*
 * keyward-ca serve (serve.c): OCSP, the CRLs and the CA certificate over
 * HTTP for the CA in dir, until SIGTERM or SIGINT; listen (HOST:PORT, may
 * be NULL) overrides serve.conf's. Holds the CA open (restoredb waits).
 */
int ca_serve(const char *dir, const char *listen);
/*
 * CMP (cmp_secret.c): a new shared secret for template tmpl (its text, at
 * most 64 characters, in out), sealed by the CA's token and stored,
 * replacing the one before; or tmpl's secret removed (*removed false if it
 * had none). The secret is the PBM secret, the template's name the reference.
 */
int ca_cmp_secret_new(struct ca *ca, const char *tmpl, char *out, size_t size);
int ca_cmp_secret_remove(struct ca *ca, const char *tmpl, bool *removed);

/* ---- configuration ---- */
/* Sets one [ca] key, checked and audited; *changed false if it already had that value. */
int ca_config_set(struct ca *ca, const char *key, const char *value, bool *changed);
/* Adds (or replaces) template name from a template file. */
int ca_template_add_file(struct ca *ca, const char *name, const char *file);
/* Removes an added template; *builtin_again when a built-in of that name applies again. */
int ca_template_remove(struct ca *ca, const char *name, bool *builtin_again);

#endif
