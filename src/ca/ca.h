/*
 * keyward-ca internals: a certificate authority whose key is reached only
 * through PKCS#11 (libp11). See docs/keyward-ca.8.
 *
 *   main.c      the command line
 *   conf.c      ca.conf: reading, writing
 *   template.c  issuance templates: built-ins, rules, extensions
 *   request.c   PKCS#10 requests, parsed once
 *   files.c     whole-file reads, atomic replacement
 *   db.c        keyward-ca.db (SQLite, WAL): certificates, requests, CRL numbers, audit
 *   token.c     the CA key through libp11; key generation through the module
 *   cert.c      CA certificates, subordinate requests, issuance
 *   crl.c       full and delta CRLs
 *
 * Errors: functions return 0 or -1, after ca_error() said what and where.
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

#define CA_NAME_MAX 128
#define CA_PATH_MAX 1024
#define CA_TEMPLATES_MAX 64

/* Records an error message (printed by main as "keyward-ca: ..."). Returns -1. */
int ca_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, for a command line that cannot be right whatever the CA holds (exit status 2). */
int ca_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *ca_last_error(void);
bool ca_last_error_is_usage(void);

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
};

struct ca_conf {
	char dir[CA_PATH_MAX];
	char name[CA_NAME_MAX + 1];
	char key[CA_PATH_MAX]; /* a label, or a pkcs11: URI */
	char token[64];	       /* the token label, when key is a label */
	char module[CA_PATH_MAX];
	char pin_file[CA_PATH_MAX];
	char hash[16];
	unsigned validity_days;
	char server_name[256];
	unsigned crl_period_hours, crl_overlap_hours, delta_crl_period_hours;
	bool subordinate;
	struct ca_template templates[CA_TEMPLATES_MAX]; /* built-ins, then ca.conf's (which override) */
	size_t n_templates;
};

/* conf.c */
int ca_conf_defaults(struct ca_conf *c, const char *dir);
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
/* ca.conf's text: the [ca] section and every template not built in (or changed); malloc'd. */
char *ca_conf_text(const struct ca_conf *c);
/* Writes ca.conf atomically. */
int ca_conf_save(const struct ca_conf *c);
/* dir/name into out */
void ca_path(const struct ca_conf *c, const char *name, char *out, size_t size);
/* The name with every character but [A-Za-z0-9._-] replaced by '-', for file names and URLs. */
void ca_file_name(const char *name, char *out, size_t size);
const EVP_MD *ca_md(const struct ca_conf *c);

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
};
/* Decodes public keys; made once and used for many requests, by one thread at a time. */
struct ca_key_decoder;
struct ca_key_decoder *ca_key_decoder_new(void);
void ca_key_decoder_free(struct ca_key_decoder *d);
/* A request from a PEM or DER file; NULL after ca_error() names the file and what is wrong. */
struct ca_request *ca_request_read(const char *path, struct ca_key_decoder *d);
/* A request from a file's bytes (PEM or DER, at most CA_REQUEST_MAX), named name in errors; NULL with the reason. */
struct ca_request *ca_request_from_bytes(const char *name, const char *bytes, size_t len, struct ca_key_decoder *d);
/* A request from DER (as stored); NULL with the reason. */
struct ca_request *ca_request_parse(const unsigned char *der, size_t len, struct ca_key_decoder *d);
void ca_request_free(struct ca_request *r);
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
/* Prints t as INI keys. */
void ca_template_print(const struct ca_template *t, FILE *f);
/* Whether req's key and names satisfy t; -1 with the reason. */
int ca_template_check(const struct ca_template *t, const struct ca_request *req);
/* req's signature verifies with its own key, and t's rules hold; -1 with the reason. */
int ca_request_check(const struct ca_template *t, const struct ca_request *req);
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
/* Prints the keys the CA sees. */
int ca_token_list(struct ca_token *t, FILE *f);
#define CA_KEY_TYPES "RSA-2048, RSA-3072, RSA-4096, EC-P256 or EC-P384"
/* Whether keyward-ca makes keys of TYPE (one of CA_KEY_TYPES). */
bool ca_key_type_known(const char *type);
/* Generates a key pair TYPE on the CA's token, labelled label, not extractable. */
int ca_token_generate(const struct ca_conf *c, const char *type, const char *label);

/* db.c */
struct ca_db;
int ca_db_open(const struct ca_conf *c, bool create, struct ca_db **out);
void ca_db_close(struct ca_db *db);
/* BEGIN IMMEDIATE: one writer; others wait (busy timeout). */
int ca_db_begin(struct ca_db *db);
int ca_db_commit(struct ca_db *db);
void ca_db_rollback(struct ca_db *db);
/* An audit record in the open transaction. */
int ca_db_audit(struct ca_db *db, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
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
/* Prints the audit log, oldest first, as text or JSON. */
int ca_db_audit_list(struct ca_db *db, bool json, FILE *f);
/* Prints certificates and requests (status NULL for all) as text or JSON. */
int ca_db_list(struct ca_db *db, const char *status, bool json, FILE *f);
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

/* crl.c */
/*
 * Builds and signs a full (delta = false) or delta CRL, records its number
 * in one transaction of its own, then writes it atomically to publish/.
 */
int ca_crl_publish(const struct ca_conf *c, struct ca_db *db, X509 *ca, EVP_PKEY *priv, bool delta,
		   long long *number_out);
/* CRL reason names <-> codes */
int ca_reason_code(const char *name);
const char *ca_reason_name(int code);

#endif
