/*
 * keyward-ca's library, inside: what its files share. api.h is the way in
 * from outside; this header is for the library's own files. In the order
 * they build on each other (each uses only those above it; a file with a
 * header of its own names it):
 *
 *   error.c       the one error type (api.h's enum ca_err)
 *   files.c       whole-file reads, atomic replacement; safe names; ca.conf-able text
 *   reason.c      CRL reason codes
 *   names.c       the names a certificate may carry
 *   request.c     PKCS#10 requests, parsed once
 *   template.c    issuance templates: built-ins, rules, extensions
 *   conf.c        ca.conf: reading, writing
 *   db.c          the CA database: certificates, requests, CRL numbers, audit, identity (db_backend.h)
 *   db_sqlite.c   ... in keyward-ca.db (SQLite, WAL), the default
 *   db_pg.c       ... in PostgreSQL (ca.conf's database = postgresql://...), several processes and hosts
 *   db_pgconn.c   PostgreSQL connections and messages without passwords (db_pg.h)
 *   db_pgbackup.c a PostgreSQL CA database copied into a SQLite file: backups keep one format
 *   db_pgrestore.c ... and such a file restored into PostgreSQL (restoredb, database move)
 *   db_pgstore.c  ACME's and CMP's tables beside the CA's on PostgreSQL
 *   db_status.c   certificate states for the OCSP responder, on a connection of its own (db_status.h)
 *   db_status_pg.c ... on PostgreSQL
 *   p11raw.c      the module's own function list: key generation, batch signing (p11raw.h)
 *   token.c       the CA key through libp11; key generation and listing through the module
 *   batchsign.c   many signatures in one HSM round trip (keyward-pkcs11's "Keyward Batch")
 *   cert.c        CA certificates, subordinate requests, certificates built and signed
 *   crlder.c      a CRL's DER, built by hand
 *   publish.c     the CA certificate in publish/, beside the CRLs (publish.h)
 *   instance.c    an open CA: ca_open, its identity checked, edits of ca.conf audited
 *   confchange.c  configuration changes, audited (config set, templates)
 *   confexport.c  config export and import, without what belongs to one host
 *   crl.c         full and delta CRLs, published
 *   issuance.c    the issuance pipeline; submit, approve, deny
 *   revoke.c      revoke, unrevoke
 *   query.c       status and listings
 *   setup.c       setup, install-cert
 *   keys.c        the keys a token holds, with or without a CA
 *   backup.c      backupdb, restoredb: a checked directory with a manifest
 *   dbmove.c      database move: the records to another database, checked, then ca.conf switched
 *   retire.c      retire: a final CRL, then no more issuing
 *   hsmkeys.c     every owner's keys on a keyward HSM, through libkeyward
 *   ocsp.c        OCSP requests decoded and answered, buffer to buffer (ocsp.h)
 *   ocspder.c     the cache's OCSP answers assembled by hand, signed in batches (ocspder.h)
 *   migrate.c     migrate: the whole move to a new server, checked
 *   serve.c       serve: OCSP, CRLs and the CA certificate over HTTP (serve.h)
 *   seal.c        short secrets (CMP secrets, EAB keys) sealed by the token (seal.h)
 *   cmp_secret.c  CMP: the templates' shared secrets, sealed by the token; the replay record (cmp.h)
 *   cmp_store_sqlite.c, cmp_store_pg.c  ... their rows on either backend (cmp_store.h)
 *   cmp_srv.c     CMP: OpenSSL's server callbacks, over the library's issuance (cmp.h)
 *   cmp.c         CMP: the app serve mounts at /.well-known/cmp/ (cmp.h)
 *
 * Outside the library: keyfilter.c is keyward-ca-keyfilter.so, the PKCS#11
 * module libp11 loads in front of the real one; cli/ is the command line.
 */
#ifndef KW_CA_H
#define KW_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>


#include "ca/api.h"

/* error.c: each records the message for the calling thread and returns -1. */
int ca_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));	    /* CA_ERR_FAILED */
int ca_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* CA_ERR_USAGE */



/* conf.c */
int ca_conf_load(struct ca_conf *c, const char *dir);
/* the longest "key = value" line ca.conf may hold: inih reads lines of 199 bytes at most */
#define CA_CONF_LINE_MAX 196
/* Whether value (of a key key_len bytes long) can be written to ca.conf and read back: 0, or -1 saying why. */
int ca_conf_text_ok(size_t key_len, const char *value);
/* Whether text, c's ca.conf, reads back as c: 0, or -1 saying which value cannot be written. */
int ca_conf_check(const struct ca_conf *c, const char *text);
/* a ca.conf larger than this is not one keyward-ca wrote (64 templates make some 40 kB) */
#define CA_CONF_MAX (1 << 20)
/* ca.conf's text (NUL-terminated), as ca_conf_load reads it: c's defaults for dir, then text; path for errors. */
int ca_conf_parse(struct ca_conf *c, const char *dir, const char *path, const char *text);
/* Sets one [ca] key from its text; -1 if the key is unknown or the value bad. */
int ca_conf_set(struct ca_conf *c, const char *key, const char *value);
/* Writes ca.conf atomically. */
int ca_conf_save(const struct ca_conf *c);
/* dir/name into out */
void ca_path(const struct ca_conf *c, const char *name, char *out, size_t size);
/* The name with every character but [A-Za-z0-9._-] replaced by '-', for file names and URLs. */
void ca_file_name(const char *name, char *out, size_t size);
const EVP_MD *ca_md(const struct ca_conf *c);
/* template.c: the base of the CDP, AIA and OCSP URLs in what the CA issues: url_base, or http://server_name. */
void ca_url_base(const struct ca_conf *c, char *out, size_t size);

/* request.c */
/* A request as received, parsed; its key decoded. */
struct ca_request {
	struct CA_REQ_st *asn; /* the parsed structure (request.c) */
	const X509_NAME *subject;
	const X509_ALGOR *key_algorithm; /* the SubjectPublicKeyInfo as sent: */
	const ASN1_BIT_STRING *key_bits; /* copied into the certificate, never re-encoded */
	EVP_PKEY *key;
	STACK_OF(X509_EXTENSION) * extensions; /* what the request asks for; NULL if nothing */
	GENERAL_NAMES *sans;		       /* of those, the subject alternative names; NULL if none */
	unsigned char *der;		       /* the request's DER, as stored for approval */
	size_t der_len;
	struct ca_crmf *crmf; /* a CRMF CertReqMsg (CMP), not PKCS#10: asn is NULL */
};
/* A request from DER as stored (PKCS#10, or CRMF for CMP's); NULL with the reason. */
struct ca_request *ca_request_parse(const unsigned char *der, size_t len, struct ca_key_decoder *d);
/* The request's signature verifies with its own key: 0, or -1 with the reason. */
int ca_request_verify(const struct ca_request *r);

/* names.c: the names a certificate will carry (see there for the rules) */
#define CA_REQUEST_MAX (64 * 1024) /* bytes of a request file, and of a request's DER */
#define CA_SANS_MAX 100		   /* subject alternative names in one request */
#define CA_SUBJECT_ATTRS_MAX 32	   /* attributes of one subject */
#define CA_NAME_BYTES_MAX 16384	   /* the subject's values and the SANs, in all */
#define CA_URI_MAX 1024		   /* bytes of one URI name */
/* Each: 0, or -1 after ca_error() said which rule the name breaks (the caller names the name). */
int ca_dns_name_check(const unsigned char *name, size_t len, bool wildcard_ok);
int ca_email_check(const unsigned char *name, size_t len);
int ca_ip_check(const unsigned char *addr, size_t len);
int ca_uri_check(const unsigned char *uri, size_t len);
/* req's subject and subject alternative names, under t's wildcard rule, within the caps; -1 with which and why. */
int ca_names_check(const struct ca_template *t, const struct ca_request *req);

/* files.c */
/* The whole of path (at most max bytes), NUL-terminated, its length in *len; malloc'd. NULL after ca_error(). */
char *ca_read_file(const char *path, size_t max, size_t *len);
/* A file written and synced under a temporary name (ca_stage_file), then put in place (ca_stage_commit). */
struct ca_staged {
	char path[CA_PATH_MAX + 320], tmp[CA_PATH_MAX + 330];
};
int ca_stage_file(struct ca_staged *s, const char *path, const void *data, size_t len, mode_t mode);
int ca_stage_commit(struct ca_staged *s);
/* Removes a staged file that is not to be put in place. */
void ca_stage_drop(struct ca_staged *s);
/* The SHA-256 of data, in lower-case hex. */
void ca_sha256_hex(const void *data, size_t len, char out[65]);
/* Writes path atomically: staged, then put in place. */
int ca_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* template.c */
void ca_templates_builtin(struct ca_conf *c);
/* Sets key (from an INI key = value of a [template] section) in t; -1 on a bad key or value. */
int ca_template_set(struct ca_template *t, const char *key, const char *value);
const struct ca_template *ca_template_find(const struct ca_conf *c, const char *name);
struct ca_template *ca_template_add(struct ca_conf *c, const char *name);
/* Sets t's keys from a template file's text (KEY = VALUE lines; #, ; comments), named name in errors. */
int ca_template_parse(struct ca_template *t, const char *name, const char *text, size_t len);
#define CA_TEMPLATE_FILE_MAX (64 * 1024)
/* Whether req's key and names satisfy t; -1 with the reason. */
int ca_template_check(const struct ca_template *t, const struct ca_request *req);
/* Extension nid from OpenSSL's config syntax, of a certificate (subject, may be NULL) or CRL issued by issuer. */
X509_EXTENSION *ca_make_ext(X509 *issuer, X509 *subject, X509_CRL *crl, int nid, const char *value);
/* Adds extension nid (OpenSSL config syntax) to x, issued by issuer. */
int ca_add_ext(X509 *x, X509 *issuer, int nid, const char *value);
/* What every certificate issued under one template by one CA shares: made once for many. */
struct ca_issuer {
	const struct ca_conf *conf;
	const struct ca_template *t;
	X509 *ca;
	STACK_OF(X509_EXTENSION) * exts[2]; /* the template's extensions, for [0] RSA keys, [1] others */
};
int ca_issuer_init(struct ca_issuer *is, const struct ca_conf *c, const struct ca_template *t, X509 *ca);
void ca_issuer_clear(struct ca_issuer *is);
/* The template's extensions (and the allowed SANs of req) on x. */
int ca_template_apply(const struct ca_issuer *is, const struct ca_request *req, X509 *x);

/* token.c */
struct ca_token;
/* Opens the module, finds the token, logs in with the PIN file (if any). */
int ca_token_open(const struct ca_conf *c, struct ca_token **out);
void ca_token_close(struct ca_token *t);
/* The CA key (private half, for signing) and its public key. */
int ca_token_key(struct ca_token *t, const char *key, EVP_PKEY **priv, EVP_PKEY **pub);
/* Calls fn for each key the token shows (fn's -1 stops). */
int ca_token_each_key(struct ca_token *t, int (*fn)(void *arg, const struct ca_key_info *k), void *arg);
/* The label of the token found. */
const char *ca_token_label(const struct ca_token *t);
#define CA_KEY_TYPES "RSA-2048, RSA-3072, RSA-4096, EC-P256 or EC-P384"
/* Whether keyward-ca makes keys of TYPE (one of CA_KEY_TYPES). */
bool ca_key_type_known(const char *type);
/* Generates a key pair TYPE on the CA's token, labelled label, not extractable. */
int ca_token_generate(const struct ca_conf *c, const char *type, const char *label);

/* db.c */
struct ca_db;
/* c's database: ca.conf's database (PostgreSQL), else keyward-ca.db in c's directory. */
int ca_db_open(const struct ca_conf *c, bool create, struct ca_db **out);
/* A SQLite database file by its path (a backup's, a restore's copy). */
int ca_db_open_file(const char *path, bool create, struct ca_db **out);
/* Whether v is a database value ca.conf takes: empty, or a PostgreSQL URL without a password; -1 saying why. */
int ca_db_url_check(const char *v);
/* Whether c's database is keyward-ca.db (SQLite): the stores and backups that differ by backend ask. */
bool ca_db_is_sqlite(const struct ca_conf *c);
/* A consistent copy of db at path, one SQLite file, no WAL (from PostgreSQL too: one backup format). */
int ca_db_backup(struct ca_db *db, const char *path);
/* The database answers and is whole (SQLite: PRAGMA integrity_check): 0, or -1 saying what is wrong. */
int ca_db_check(struct ca_db *db);
/* The highest CRL number db recorded (0: none); -1 on error. */
long long ca_db_max_crl(struct ca_db *db);
int ca_db_delete_meta(struct ca_db *db, const char *key);
void ca_db_close(struct ca_db *db);
/* From now on db refuses every change (begin says why), and so does its session, as a second guard. */
int ca_db_read_only(struct ca_db *db);
/* 0: db takes writes; 1 with the reason: it cannot (a PostgreSQL hot standby, a read-only file); -1: error. */
int ca_db_writable(struct ca_db *db);
/* One writer at a time, across processes: others wait (SQLite's BEGIN IMMEDIATE; ca_writer's row lock). */
int ca_db_begin(struct ca_db *db);
int ca_db_commit(struct ca_db *db);
void ca_db_rollback(struct ca_db *db);
/* An audit record in the open transaction. */
int ca_db_audit(struct ca_db *db, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int ca_db_insert_cert(struct ca_db *db, const struct ca_db_cert *row, const unsigned char *der, size_t der_len);
/* 0 found, 1 not found, -1 error. der (may be NULL) is malloc'd. */
int ca_db_get_cert(struct ca_db *db, const char *serial, struct ca_db_cert *row, unsigned char **der, size_t *der_len);
/* when: the revocation's time; invalid_at (0: none): the date the key is known or suspected bad since */
int ca_db_set_revocation(struct ca_db *db, const char *serial, const char *status, time_t when, int reason,
			 time_t invalid_at);
long long ca_db_insert_request(struct ca_db *db, const unsigned char *csr, size_t len, const char *template_name,
			       const char *status);
/* 0 found, 1 not found. */
int ca_db_get_request(struct ca_db *db, long long id, unsigned char **csr, size_t *len, char *template_name,
		      size_t tsize, char *status, size_t ssize);
int ca_db_set_request(struct ca_db *db, long long id, const char *status, const char *serial);
/* Calls fn for each certificate (oldest first), request not issued, or audit record; fn's -1 stops. */
int ca_db_each_cert(struct ca_db *db, int (*fn)(void *arg, const struct ca_db_cert *c), void *arg);
int ca_db_each_request(struct ca_db *db, int (*fn)(void *arg, const struct ca_pending *r), void *arg);
int ca_db_each_audit(struct ca_db *db, int (*fn)(void *arg, const struct ca_audit_row *r), void *arg);
/* st's counts and CRL numbers, as of now. */
int ca_db_counts(struct ca_db *db, time_t now, struct ca_status *st);
/* Calls fn for every revoked certificate, or (delta) every change after change number seq (a base's). */
int ca_db_each_revoked(struct ca_db *db, bool delta, long long seq,
		       int (*fn)(void *arg, const char *serial, time_t when, int reason, time_t invalid_at), void *arg);
/* The next CRL number (stored in the transaction); the last full CRL's number and time. */
int ca_db_next_crl_number(struct ca_db *db, long long *number);
int ca_db_last_base_crl(struct ca_db *db, long long *number, time_t *when, long long *seq);
int ca_db_record_crl(struct ca_db *db, long long number, bool delta, long long base, time_t this_update,
		     time_t next_update);
/* meta values */
/* 0 found (*value malloc'd), 1 not found, -1 error. */
int ca_db_get_meta(struct ca_db *db, const char *key, char **value);
int ca_db_set_meta(struct ca_db *db, const char *key, const char *value);

/* cert.c */
/* The PEM certificates of path, in order (an empty stack if none); NULL with errno if unreadable. */
STACK_OF(X509) * ca_read_certs(const char *path);
int ca_cert_load_chain(const struct ca_conf *c, STACK_OF(X509) * *chain);
/* The CA's public key: ca.crt's, or before install-cert the request's in ca.csr; NULL after ca_error(). */
EVP_PKEY *ca_cert_public_key(const struct ca_conf *c);
bool ca_same_key(EVP_PKEY *a, EVP_PKEY *b);
X509 *ca_cert_make_root(const struct ca_conf *c, EVP_PKEY *priv, EVP_PKEY *pub);
X509_REQ *ca_cert_make_request(const struct ca_conf *c, EVP_PKEY *priv, EVP_PKEY *pub);
/*
 * A certificate for req under template t, signed. The caller checked req
 * first (ca_request_check): its signature and the template's rules.
 */
X509 *ca_cert_issue(const struct ca_issuer *is, const struct ca_request *req, EVP_PKEY *priv);
/* The two halves of ca_cert_issue: the certificate built, unsigned; then signed through the token. */
X509 *ca_cert_build(const struct ca_issuer *is, const struct ca_request *req);
int ca_cert_sign(const struct ca_conf *c, X509 *x, EVP_PKEY *priv);
/* The chain as PEM, staged to replace path (ca_stage_commit puts it in place). */
int ca_stage_pem_chain(struct ca_staged *s, const char *path, STACK_OF(X509) * chain);
/* Fresh random serial: 16 bytes, top bit clear, never zero. */
ASN1_INTEGER *ca_new_serial(void);
void ca_serial_hex(const ASN1_INTEGER *serial, char *out, size_t size);

/* crlder.c: DER built by hand where OpenSSL's object trees are too big (a CRL's entries) */
struct ca_der {
	unsigned char *p;
	size_t len, cap;
};
int ca_der_put(struct ca_der *d, const void *p, size_t n);
/* A tag, its length and value onto d. */
int ca_der_tlv(struct ca_der *d, unsigned char tag, const void *value, size_t len);
/* Room for more bytes at once, so a large buffer is allocated one time. */
int ca_der_reserve(struct ca_der *d, size_t more);
void ca_der_free(struct ca_der *d);
/* One revokedCertificates entry (serial in hex; reason 0 or less: no reason extension) onto d. */
int ca_der_revoked_entry(struct ca_der *d, const char *serial, time_t when, int reason);
/* The same with an invalidityDate extension (RFC 5280 5.3.2) if invalid_at > 0. */
int ca_der_revoked_entry_ext(struct ca_der *d, const char *serial, time_t when, int reason, time_t invalid_at);
/*
 * The signed CertificateList (DER, onto out): head's version, algorithm,
 * issuer, times and extensions (head is signed by the same key and digest,
 * with no entries), the entries, and a fresh signature over the whole.
 */
int ca_crl_assemble(X509_CRL *head, const struct ca_der *entries, EVP_PKEY *priv, const EVP_MD *md, struct ca_der *out);

/* crl.c: ca_crl_publish's work, also for a retired CA's final CRL. */
int ca_crl_publish_any(struct ca *ca, bool delta, long long *number_out);

/* hsmkeys.c: a libkeyward client with the PIN of pin_file (or the client config's), and this machine's owner. */
struct kw_client;
int ca_hsm_open(const char *pin_file, const char *dir, struct kw_client **out, char *my_owner, size_t size);
int ca_hsm_keys_list(struct kw_client *c, const char *my_owner, int (*fn)(void *arg, const struct ca_hsm_key *k),
		     void *arg);

/* batchsign.c: many certificates signed in one HSM round trip, where the module offers "Keyward Batch". */
#define CA_SIGN_BATCH 32
struct ca_batch_signer;
/* *out NULL (and 0 returned) when c's module has no batch interface: then sign one by one. */
int ca_batch_signer_open(const struct ca_conf *c, EVP_PKEY *pub, struct ca_batch_signer **out);
void ca_batch_signer_close(struct ca_batch_signer *s);
/* Signs n (1 to CA_SIGN_BATCH) built certificates with the CA key, hashing with md. */
int ca_batch_sign_certs(struct ca_batch_signer *s, const EVP_MD *md, X509 **certs, size_t n);
/* The same key: a signer of the key labelled label (another key on the same token). */
int ca_batch_signer_open_label(const struct ca_conf *c, const char *label, EVP_PKEY *pub,
			       struct ca_batch_signer **out);
/*
 * n (1 to CA_SIGN_BATCH) messages signed in one round trip, hashed here with
 * md: sigs[i] (malloc'd, sig_lens[i] bytes) in X.509's form (an ECDSA
 * signature as DER); alg: the AlgorithmIdentifier's DER for md and the key.
 */
int ca_batch_sign_data(struct ca_batch_signer *s, const EVP_MD *md, const unsigned char *const *data,
		       const size_t *lens, size_t n, unsigned char **sigs, size_t *sig_lens);
int ca_batch_algorithm(const struct ca_batch_signer *s, const EVP_MD *md, struct ca_der *alg);

/* ---- an open instance (instance.c) ---- */
struct ca {
	struct ca_conf conf;
	struct ca_token *token;
	EVP_PKEY *priv, *pub;
	STACK_OF(X509) * chain;
	struct ca_db *db;
	int lock; /* .keyward-ca.lock, held shared while open (-1: none) */
	struct ca_batch_signer *batch; /* the module's batch signing, if it has it (issuance.c) */
	bool batch_tried;
	ca_progress_fn *progress; /* ca_set_progress's */
	void *progress_arg;
	struct ca_key_decoder *decoder; /* the issuance pipeline's preparer's, made at its first batch */
	char warning[1100]; /* something the front end should tell, though the CA opened */
};
/* confchange.c: ca.conf's text (as c would write it) recorded in db's open transaction. */
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
/* With conf's key settings, the token finds the key, and it is the CA's (ca.crt's). */
int ca_conf_check_key(const struct ca_conf *conf);
/* confexport.c: the text of config export (malloc'd). */
char *ca_conf_export_text(const struct ca_conf *c);
/* backup.c: a backup manifest's text (name for errors), checked as far as it goes alone; NULL with the reason. */
struct json_t;
struct json_t *ca_manifest_parse(const char *name, const char *text, size_t len);
/* backup.c: an exclusive hold on the CA in dir (a file descriptor to close), or -1 if a keyward-ca has it open. */
int ca_lock_exclusive(const char *dir);
/* restoredb's work, for a caller that holds ca_lock_exclusive on c's directory. */
int ca_restore_locked(const struct ca_conf *c, const char *backup, bool force, struct ca_restored *out);
/* The lines of ca.conf that go ("-line") and come ("+line") from was to now, into out. */
int ca_conf_diff(const struct ca_conf *was, const struct ca_conf *now, char *out, size_t size);
/* If ca.conf is not as keyward-ca last wrote it, audits the lines that changed (own transaction). */
int ca_conf_note_edits(const struct ca_conf *c, struct ca_db *db);

/* meta keys of the CA's identity and state */
#define CA_META_KEY "ca.key_sha256"
#define CA_META_NAME "ca.name"
#define CA_META_CERT "ca.cert_sha256"
#define CA_META_SCHEMA "schema_version"
#define CA_META_RETIRED "ca.retired"
#define CA_META_CRL_FLOOR "crl.floor" /* CRL numbers continue above this (a restore's published CRLs) */
#define CA_SCHEMA_VERSION 2
/* Refuses (CA_ERR_REFUSED) when the CA is retired: what for says what was refused. */
int ca_check_active(struct ca *ca, const char *what);
/* Records the CA's identity (key fingerprint, name, certificate) in db's open transaction. */
int ca_identity_record(const struct ca_conf *c, struct ca_db *db, EVP_PKEY *pub, X509 *cert);

#endif
