/*
 * What the keyward-ca integration tests (test_ca.c, test_migrate.c) share:
 * keyward-ca and openssl run as processes in the current directory
 * (bounded by kwt_run), their outputs kept until the test ends, and
 * readers for what openssl and keyward-ca print. A helper that finds
 * something wrong fails the test quoting the whole output (fail_full).
 */
#ifndef KW_TEST_CA_HELPERS_H
#define KW_TEST_CA_HELPERS_H

#include <stdarg.h>
#include <stdbool.h>

#include <jansson.h>

/*
 * keyward-ca's environment: under the sanitizers, libp11 0.4.12's own
 * leaks are suppressed (tests/lsan-libp11.supp), with full stacks so that
 * only allocations libp11 made match.
 */
#ifndef KWT_CA_ENV
#define KWT_CA_ENV ""
#endif

#define SOFTHSM_MODULE KWT_SOFTHSM_MODULE

/* openssl req -newkey arguments */
#define EC256 "ec -pkeyopt ec_paramgen_curve:P-256"
#define RSA2048 "rsa:2048"

/* Where CAs are set up: the module, token and PIN file, and the directory tests work in. */
struct backend {
	const char *module;
	const char *token; /* NULL: keyward-ca's default, "keyward machine" */
	char pin_file[320];
	char work[300];
};

/* The last command sh() ran, for messages. */
extern char last_cmd[4096];

/* fail_msg() for messages that quote whole outputs: cmocka cuts its messages at 1 KB. */
#define fail_full(...) fail_full_at(__FILE__, __LINE__, __VA_ARGS__)
void fail_full_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Outputs, kept until the test ends (forget_all frees them): s itself, a formatted string. */
const char *keep(char *s);

const char *keepf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void forget_all(void);

/* Runs a shell command line in the current directory (kwt_run: bounded); the exit code, *out its output. */
int sh(const char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* text has needle, else the test fails quoting what and text; expect_lacks the opposite. */
void expect_has(const char *what, const char *text, const char *needle);

void expect_lacks(const char *what, const char *text, const char *needle);

/* No sanitizer report in a program's output (keyward-ca, under the sanitizers, is instrumented). */
void expect_clean(const char *out);

/* sh, which must succeed; its output. */
const char *sh_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* keyward-ca: $KEYWARD_CA, else the one built. */
const char *ca_path(void);

/* keyward-ca --dir DIR ARGS: its exit code; *out its output. */
int ca_v(const char *dir, const char **out, const char *fmt, va_list ap);

/* keyward-ca, whatever its exit code (but nothing reports): the exit code, *out its output. */
int ca_rc(const char *dir, const char **out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* keyward-ca succeeds (and nothing reports); its output. */
const char *ca_ok(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* keyward-ca refuses with exit code rc and says something; its output. */
const char *ca_refused(const char *dir, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* keyward-ca either succeeds (true) or refuses it as bad usage (exit 2, false); *out its output. */
bool ca_ok_or_usage(const char *dir, const char **out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* keyward-ca's options for the backend's module, token and PIN. */
const char *hsm_opts(const struct backend *b);

/*
 * A SoftHSM2 token b->token (PIN 1234) in HOME/tokens, its configuration
 * HOME/softhsm2.conf ($SOFTHSM2_CONF) and b->pin_file HOME/pin (mode 0600).
 */
void softhsm_token(struct backend *b, const char *home);

/* Makes B/NAME (empty) and works there. */
void enter(const struct backend *b, const char *name);

/* The file's contents (kept); fails if missing. */
const char *file(const char *path);

/* Whether path exists. */
bool exists(const char *path);

/*
 * secret (len bytes) is nowhere in plain: not in DIR's keyward-ca.db, nor
 * its WAL (or, with ca.conf's database = postgresql://..., not in a
 * pg_dump of that database, bytea's hex included), nor in what config
 * export writes; else the test fails naming what (a CMP secret, an EAB
 * key) and where.
 */
void expect_not_stored(const char *dir, const char *what, const void *secret, size_t len);

/* base64url (no padding) decoded into out: its length. */
size_t b64u_bytes(const char *in, unsigned char *out, size_t max);

/* expect_not_stored for a secret printed in base64url (an EAB key): neither the text nor its bytes. */
void expect_b64u_not_stored(const char *dir, const char *what, const char *b64u);

/* The line after the one with header in text, trimmed (kept); NULL without header. */
const char *ext_line(const char *text, const char *header);

/* The word after word and one separator in out ("kid X" -> X; kept); fails if word is not there. */
const char *word_after(const char *out, const char *word);

/* The line of text with needle (kept); NULL if none. */
const char *line_with(const char *text, const char *needle);

/* The value of "key = value" (or "key: value") in a line of text, trimmed (kept); NULL if absent. */
const char *conf_value(const char *text, const char *key);

/* A serial as hex digits, upper case, without separators or leading zeros. */
const char *norm_serial(const char *s);

/* The word after word (issued, pending) at the start of a line of out (kept); NULL if none. */
const char *printed(const char *out, const char *word);

/* keyward-ca's file name for a CA name: every character but letters, digits, '.', '_' and '-' made '-'. */
const char *file_name(const char *name);

/* openssl x509 -text of the PEM certificate, and one line of it (option: -subject, -issuer, ...) in RFC 2253 (kept). */
const char *cert_text(const char *pem);

/* The certificate's serial as openssl prints it (hex, kept). */
const char *cert_serial(const char *pem);

const char *cert_line(const char *pem, const char *option);

/* A key identifier under header (subject or authority key id) in a text (kept), without "keyid:"; NULL if none. */
const char *key_id(const char *text, const char *header);

/* openssl verify (strict X.509) accepts pem under the trusted root ca and the untrusted chain (may be NULL). */
void expect_verifies(const char *ca, const char *untrusted, const char *pem);

/* The entries of list --json: its array, or the first array in its object. */
json_t *entries(json_t *root);

/* list --json [--status status] of the CA in dir (caller json_decref()s). */
json_t *list_json(const char *dir, const char *status);

/* The entry's field as a string (kept): a string, or an integer in decimal; NULL if absent. */
const char *field(json_t *entry, const char *name);

/* Whether list --json [--status] of dir has the certificate with serial (in any form). */
bool listed(const char *dir, const char *status, const char *serial);

/* What the CA in dir knows, as list --json shows it, every status (kept). */
const char *ca_state(const char *dir);

/* before and after (ca_state) are the same, else the test fails naming what. */
void expect_unchanged(const char *what, const char *before, const char *after);

/*
 * openssl req: a new key (newkey: -newkey arguments) and its request
 * NAME.csr for subj, extra (may be "") added to the command.
 */
void make_csr(const char *name, const char *newkey, const char *subj, const char *extra);

/*
 * submit NAME.csr to the CA in dir with template tmpl: the certificate in
 * NAME.pem; the serial printed (kept), which is the certificate's. With
 * json, submit --json: {"status": "issued", "serial": S}.
 */
const char *issue_json(const char *dir, const char *name, const char *tmpl, bool json);

/* issue_json without --json. */
const char *issue(const char *dir, const char *name, const char *tmpl);

/* DIR/publish/FILE.crl (DER) verifies under ca.pem; a PEM copy in pem; its text (kept). */
const char *crl_check(const char *der, const char *pem);
/* crl_check under the CA certificate in cafile. */
const char *crl_check_ca(const char *der, const char *pem, const char *cafile);

/* The number under header (CRL Number, Delta CRL Indicator) in a CRL's text. */
unsigned long long crl_number(const char *text, const char *header);

/* The reason of serial's entry in a CRL's text (kept): "" without one, NULL if not listed. */
const char *crl_reason(const char *text, const char *serial);

#endif
