/*
 * ksputil: the key spaces of a keyward partition, with the verbs of the
 * seed's ksputilcons: list every owner's keys (enumkeys -a), reveal this
 * machine's owner (createtestkey -m), move a key to another owner
 * (chkeysowner), and create, delete, register, check the HSMs.
 *
 * A thin front end over libkeyward's public API (include/keyward/keyward.h):
 * it parses arguments, calls, and prints, as text in the seed's layout or
 * as JSON (--json) for scripts. Owners come from kw_owner_*, so ksputil
 * files keys exactly where every other libkeyward client looks for them.
 * See ksputil(1) and docs/key-spaces.md.
 *
 * Exit codes: 0 done; 1 the HSM refused or failed (the message says why);
 * 2 bad usage; 3 no HSM reachable; 4 not found.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <keyward/keyward.h>

#define EXIT_DONE 0
#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define EXIT_NOT_FOUND 4

#define LABEL_WIDTH 32 /* values start in this column, as in ksputilcons */
#define SECRET_MAX (KW_SECRET_MAX + 1)
#define PIN_MIN 8 /* characters of a credential PIN, at least (usage() says so too) */

/* The seed's test key (createtestkey) */
#define TEST_KEY_NAME "KeywardTestKey"
#define TEST_KEY_BITS 4096

/* ---- options ---- */

enum {
	O_VERBOSE = 1 << 0,
	O_MACHINE = 1 << 1,
	O_ALL = 1 << 2,
	O_JSON = 1 << 3,
	O_NAME = 1 << 4,
	O_ALGORITHM = 1 << 5,
	O_SIZE = 1 << 6,
	O_CURVE = 1 << 7,
	O_EXPORTABLE = 1 << 8,
	O_SIGN = 1 << 9,
	O_DECRYPT = 1 << 10,
	O_YES = 1 << 11,
	O_PASSWORD_FILE = 1 << 12,
	O_PIN_FILE = 1 << 13,
	O_FORCE = 1 << 14,
	O_QUIET = 1 << 15,
};

struct opts {
	unsigned seen; /* O_* given */
	const char *name, *algorithm, *curve, *password_file, *pin_file;
	unsigned long size;
};

static const struct option long_opts[] = {
	{"verbose", no_argument, NULL, 'v'},
	{"machine", no_argument, NULL, 'm'},
	{"all", no_argument, NULL, 'a'},
	{"json", no_argument, NULL, 'J'},
	{"name", required_argument, NULL, 'n'},
	{"algorithm", required_argument, NULL, 'A'},
	{"size", required_argument, NULL, 's'},
	{"curve", required_argument, NULL, 'C'},
	{"exportable", no_argument, NULL, 'E'},
	{"sign", no_argument, NULL, 'S'},
	{"decrypt", no_argument, NULL, 'D'},
	{"yes", no_argument, NULL, 'y'},
	{"password-file", required_argument, NULL, 'P'},
	{"pin-file", required_argument, NULL, 'I'},
	{"force", no_argument, NULL, 'F'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static const struct {
	int c;
	unsigned bit;
	const char *spelling;
} opt_bits[] = {
	{'v', O_VERBOSE, "-v"},
	{'m', O_MACHINE, "-m"},
	{'a', O_ALL, "-a"},
	{'J', O_JSON, "--json"},
	{'n', O_NAME, "--name"},
	{'A', O_ALGORITHM, "--algorithm"},
	{'s', O_SIZE, "--size"},
	{'C', O_CURVE, "--curve"},
	{'E', O_EXPORTABLE, "--exportable"},
	{'S', O_SIGN, "--sign"},
	{'D', O_DECRYPT, "--decrypt"},
	{'y', O_YES, "--yes"},
	{'P', O_PASSWORD_FILE, "--password-file"},
	{'I', O_PIN_FILE, "--pin-file"},
	{'F', O_FORCE, "--force"},
	{'q', O_QUIET, "--quiet"},
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ksputil COMMAND [options]\n"
		"\n"
		"commands (the seed's ksputilcons verbs):\n"
		"  enumkeys [-v] [-m | -a] [--json]     keys of the current user (-m: this machine; -a: every\n"
		"                                       owner of the partition); -v adds capabilities, flags, date\n"
		"  createtestkey [-m] [-q]              create the test key (RSA 4096, \"" TEST_KEY_NAME
		"\"): shows the owner\n"
		"  createkey [--name N] [--algorithm RSA|ECDSA|EDDSA] [--size S] [--curve P-256|P-384|P-521]\n"
		"            [--exportable] [--sign] [--decrypt] [-m] [-q]\n"
		"                                       create a key pair (default: the test key); on a terminal\n"
		"                                       a line on standard error says it is being generated\n"
		"                                       (RSA 4096 takes seconds); -q, --quiet: not that line\n"
		"  chkeysowner KEYNAME OLDOWNER NEWOWNER [-v]\n"
		"                                       move both halves of a key to another owner, atomically\n"
		"  deletekey --name N [-m] [--yes]      delete a key (asks first unless --yes)\n"
		"  hsmstatus [-v] [--json]              each configured HSM: reachable, protocol, locked\n"
		"  whoami [--json]                      this machine's, this user's and the shared owner\n"
		"  register [--password-file F] [--pin-file F] [--force]\n"
		"                                       exchange the partition's setup password for a credential;\n"
		"                                       the PIN has at least 8 characters; --force replaces\n"
		"                                       an existing credential\n"
		"  help, --version                      this text; the program and its version\n"
		"\n"
		"Names ending in \".global\" belong to the shared owner " KW_OWNER_SHARED ". --pin-file F gives the\n"
		"PIN of an encrypted credential key file (mode 0600); register --pin-file records it as\n"
		"pin_file in the configuration, which every later command uses. The configuration is\n"
		"$KEYWARD_CONF, else /etc/keyward/client.conf; $KEYWARD_MACHINE_ID_FILE names another\n"
		"machine-id file.\n"
		"Exit codes: 0 done, 1 refused or failed, 2 usage, 3 no HSM reachable, 4 not found.\n");
}

/* ---- small helpers ---- */

static int exit_code(kw_rv rv)
{
	switch (rv) {
	case KW_OK:
		return EXIT_DONE;
	case KW_ERR_UNREACHABLE:
		return EXIT_UNREACHABLE;
	case KW_ERR_NOT_FOUND:
		return EXIT_NOT_FOUND;
	default:
		return EXIT_REFUSED;
	}
}

/* The last error in words, without the server's internal "store: " prefix. */
static const char *why(kw_rv rv)
{
	const char *m = kw_last_error();

	if (!m[0])
		return kw_rv_text(rv);
	if (strncmp(m, "store: ", 7) == 0)
		m += 7;
	return m;
}

static int fail(const char *verb, kw_rv rv, const char *tail)
{
	fprintf(stderr, "ksputil: %s: %s%s\n", verb, why(rv), tail ? tail : "");
	return exit_code(rv);
}

static int usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *verb, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ksputil: %s: ", verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (ksputil help)\n");
	return EXIT_USAGE;
}

/* The secret in a file (kw_secret_read_file) into buf; -1 (after saying why) if refused. */
static int read_line_file(const char *verb, const char *path, const char *what, char *buf, size_t size)
{
	if (kw_secret_read_file(path, what, buf, size) == KW_OK)
		return 0;
	fprintf(stderr, "ksputil: %s: %s\n", verb, kw_last_error());
	return -1;
}

/* One line of secret from the terminal without echo, else standard input. */
static void read_secret(const char *prompt, char *buf, size_t size)
{
	struct termios old, quiet;
	bool tty = false;

	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0) {
		tty = true;
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		fprintf(stderr, "%s", prompt);
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (!fgets(buf, (int)size, stdin))
		buf[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	buf[strcspn(buf, "\r\n")] = '\0';
}

/* The client of $KEYWARD_CONF, with the PIN of --pin-file unless registering. */
static int open_client(const char *verb, const struct opts *o, bool use_pin, kw_client **out)
{
	char pin[SECRET_MAX];
	kw_rv rv;

	*out = NULL;
	rv = kw_client_new(NULL, out);
	if (rv)
		return fail(verb, rv, NULL);
	if (use_pin && o->pin_file) {
		if (read_line_file(verb, o->pin_file, "PIN file", pin, sizeof pin)) {
			kw_client_free(*out);
			*out = NULL;
			return EXIT_USAGE;
		}
		rv = kw_client_set_pin(*out, pin);
		OPENSSL_cleanse(pin, sizeof pin);
		if (rv) {
			kw_client_free(*out);
			*out = NULL;
			return fail(verb, rv, NULL);
		}
	}
	return EXIT_DONE;
}

/* The owners this caller calls its own; empty strings where underivable. */
struct own {
	char machine[KW_OWNER_MAX + 1];
	char user[KW_OWNER_MAX + 1];
};

static const char *mark_of(const struct own *own, const char *owner)
{
	if (own->machine[0] && strcmp(owner, own->machine) == 0)
		return "Machine";
	if (own->user[0] && strcmp(owner, own->user) == 0)
		return "Current User";
	if (strcmp(owner, KW_OWNER_SHARED) == 0)
		return "Shared";
	return NULL;
}

/* "S-1-5-21-1-2-3 (Machine)" */
static const char *owner_text(const struct own *own, const char *owner, char *buf, size_t size)
{
	const char *mark = mark_of(own, owner);

	snprintf(buf, size, "%s%s%s%s", owner, mark ? " (" : "", mark ? mark : "", mark ? ")" : "");
	return buf;
}

/* The seed's owner banner: the line between two rows of dashes as long as it. */
static void print_banner(const char *text)
{
	size_t len = strlen(text);

	for (size_t d = 0; d < len; d++)
		putchar('-');
	printf("\n%s\n", text);
	for (size_t d = 0; d < len; d++)
		putchar('-');
	printf("\n\n");
}

/* ---- objects as text and JSON ---- */

static const char *class_name(enum kw_class cls)
{
	switch (cls) {
	case KW_CLASS_PRIVATE_KEY: return "PrivateKey";
	case KW_CLASS_PUBLIC_KEY: return "PublicKey";
	case KW_CLASS_CERTIFICATE: return "Certificate";
	case KW_CLASS_DATA: return "Data";
	case KW_CLASS_SECRET_KEY: return "SecretKey";
	default: return "Unknown";
	}
}

/* The seed lists the public half before the private one. */
static int class_rank(enum kw_class cls)
{
	switch (cls) {
	case KW_CLASS_PUBLIC_KEY: return 0;
	case KW_CLASS_PRIVATE_KEY: return 1;
	case KW_CLASS_SECRET_KEY: return 2;
	case KW_CLASS_CERTIFICATE: return 3;
	case KW_CLASS_DATA: return 4;
	default: return 5;
	}
}

static bool is_key(const kw_object *o)
{
	enum kw_class cls = kw_object_class(o);

	return cls == KW_CLASS_PRIVATE_KEY || cls == KW_CLASS_PUBLIC_KEY || cls == KW_CLASS_SECRET_KEY;
}

static unsigned key_bits(const kw_object *o)
{
	const char *curve = kw_object_curve(o);
	unsigned bits = kw_object_bits(o);

	if (bits)
		return bits;
	if (kw_object_key_type(o) == KW_KEY_ED25519)
		return 256;
	if (curve && strncmp(curve, "P-", 2) == 0)
		return (unsigned)atoi(curve + 2);
	return 0;
}

/* "RSA", "EC P-256", "EdDSA Ed25519" */
static void algorithm_of(const kw_object *o, char *buf, size_t size)
{
	const char *curve = kw_object_curve(o);

	switch (kw_object_key_type(o)) {
	case KW_KEY_RSA: snprintf(buf, size, "RSA"); break;
	case KW_KEY_AES: snprintf(buf, size, "AES"); break;
	case KW_KEY_GENERIC: snprintf(buf, size, "generic secret"); break;
	case KW_KEY_EC: snprintf(buf, size, "EC %s", curve && *curve ? curve : "(unknown curve)"); break;
	case KW_KEY_ED25519: snprintf(buf, size, "EdDSA Ed25519"); break;
	default: snprintf(buf, size, "none"); break;
	}
}

/* Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo, or "" if none. */
static void spki_sha256(const kw_object *o, char hex[65])
{
	size_t len = 0;
	const unsigned char *der = kw_object_public_key(o, &len);
	unsigned char md[32];
	unsigned int md_len = 0;

	hex[0] = '\0';
	if (!der || !len || EVP_Digest(der, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
		return;
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void iso_time(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, size, "unknown");
}

static const struct {
	unsigned bit;
	const char *name;
} usage_names[] = {
	{KW_USAGE_SIGN, "Sign"}, {KW_USAGE_DECRYPT, "Decrypt"}, {KW_USAGE_DERIVE, "Derive"}, {KW_USAGE_WRAP, "Wrap"}};

struct flag_entry {
	int (*get)(const kw_object *o);
	const char *name, *json;
};

static const struct flag_entry flag_names[] = {
	{kw_object_sensitive, "Sensitive", "sensitive"},
	{kw_object_extractable, "Extractable", "extractable"},
	{kw_object_modifiable, "Modifiable", "modifiable"},
	{kw_object_never_extractable, "NeverExtractable", "never_extractable"},
	{kw_object_always_sensitive, "AlwaysSensitive", "always_sensitive"},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void print_label(const char *label, const char *value)
{
	printf("%-*s%s\n", LABEL_WIDTH, label, value);
}

/* One object in the seed's two-line form; verbose adds the details. No blank line after. */
static void print_object_lines(const kw_object *o, bool verbose)
{
	char line[256], alg[64];

	if (is_key(o)) {
		algorithm_of(o, alg, sizeof alg);
		snprintf(line, sizeof line, "%s, %u bit, %s", alg, key_bits(o), class_name(kw_object_class(o)));
		print_label("+ Key name:", kw_object_name(o));
		print_label("  Algorithm, size, type:", line);
	} else {
		print_label("+ Object name:", kw_object_name(o));
		print_label("  Type:", class_name(kw_object_class(o)));
	}
	if (verbose) {
		size_t used = 0;
		char hex[65];

		line[0] = '\0';
		for (size_t i = 0; i < N_ELEMS(usage_names); i++)
			if (kw_object_usages(o) & usage_names[i].bit)
				used += (size_t)snprintf(line + used, sizeof line - used, "%s%s", used ? ", " : "",
							 usage_names[i].name);
		print_label("  Capabilities:", used ? line : "none");
		used = 0;
		line[0] = '\0';
		for (size_t i = 0; i < N_ELEMS(flag_names); i++)
			if (flag_names[i].get(o))
				used += (size_t)snprintf(line + used, sizeof line - used, "%s%s", used ? ", " : "",
							 flag_names[i].name);
		print_label("  Access flags:", used ? line : "none");
		iso_time(kw_object_created(o), line, sizeof line);
		print_label("  Created:", line);
		snprintf(line, sizeof line, "%s__%s", kw_object_owner(o), kw_object_name(o));
		print_label("  HSM object name:", line);
		snprintf(line, sizeof line, "0x%" PRIx64, kw_object_id(o));
		print_label("  Object id:", line);
		spki_sha256(o, hex);
		if (hex[0])
			print_label("  Public key SHA-256:", hex);
	}
}

static void print_object(const kw_object *o, bool verbose)
{
	print_object_lines(o, verbose);
	printf("\n");
}

static json_t *object_json(const kw_object *o)
{
	json_t *j = json_object(), *caps = json_array();
	char buf[256], hex[65];

	if (!j || !caps) {
		json_decref(j);
		json_decref(caps);
		return NULL;
	}
	snprintf(buf, sizeof buf, "%s__%s", kw_object_owner(o), kw_object_name(o));
	json_object_set_new(j, "name", json_string(kw_object_name(o)));
	json_object_set_new(j, "owner", json_string(kw_object_owner(o)));
	json_object_set_new(j, "hsm_name", json_string(buf));
	/* ids are 64-bit: as hex strings, which no JSON reader rounds */
	snprintf(buf, sizeof buf, "0x%" PRIx64, kw_object_id(o));
	json_object_set_new(j, "id", json_string(buf));
	if (kw_object_pair_id(o)) {
		snprintf(buf, sizeof buf, "0x%" PRIx64, kw_object_pair_id(o));
		json_object_set_new(j, "pair_id", json_string(buf));
	} else {
		json_object_set_new(j, "pair_id", json_null());
	}
	json_object_set_new(j, "type", json_string(class_name(kw_object_class(o))));
	if (is_key(o)) {
		const char *curve = kw_object_curve(o);

		algorithm_of(o, buf, sizeof buf);
		json_object_set_new(j, "algorithm", json_string(buf));
		json_object_set_new(j, "bits", json_integer(key_bits(o)));
		json_object_set_new(j, "curve", curve && *curve ? json_string(curve) : json_null());
	} else {
		json_object_set_new(j, "algorithm", json_null());
		json_object_set_new(j, "bits", json_null());
		json_object_set_new(j, "curve", json_null());
	}
	for (size_t i = 0; i < N_ELEMS(usage_names); i++)
		if (kw_object_usages(o) & usage_names[i].bit)
			json_array_append_new(caps, json_string(usage_names[i].name));
	json_object_set_new(j, "capabilities", caps);
	for (size_t i = 0; i < N_ELEMS(flag_names); i++)
		json_object_set_new(j, flag_names[i].json, json_boolean(flag_names[i].get(o)));
	iso_time(kw_object_created(o), buf, sizeof buf);
	json_object_set_new(j, "created", json_string(buf));
	spki_sha256(o, hex);
	json_object_set_new(j, "public_key_sha256", hex[0] ? json_string(hex) : json_null());
	return j;
}

static int print_json(json_t *root)
{
	int r;

	if (!root) {
		fprintf(stderr, "ksputil: out of memory building the JSON output\n");
		return EXIT_REFUSED;
	}
	r = json_dumpf(root, stdout, JSON_INDENT(2));
	json_decref(root);
	printf("\n");
	if (r != 0 || fflush(stdout) != 0) {
		fprintf(stderr, "ksputil: cannot write the JSON output\n");
		return EXIT_REFUSED;
	}
	return EXIT_DONE;
}

/* ---- enumkeys ---- */

static int cmp_objects(const void *a, const void *b)
{
	const kw_object *x = *(const kw_object *const *)a, *y = *(const kw_object *const *)b;
	int r = strcmp(kw_object_owner(x), kw_object_owner(y));

	if (!r)
		r = strcmp(kw_object_name(x), kw_object_name(y));
	if (!r)
		r = class_rank(kw_object_class(x)) - class_rank(kw_object_class(y));
	if (!r)
		r = kw_object_id(x) < kw_object_id(y) ? -1 : kw_object_id(x) > kw_object_id(y);
	return r;
}

/* The caller's owners; required: whether a failure to derive them is fatal. */
static int own_owners(const char *verb, kw_client *c, bool required, struct own *own)
{
	kw_rv rv;

	memset(own, 0, sizeof *own);
	rv = kw_owner_machine(c, own->machine, sizeof own->machine);
	if (!rv)
		rv = kw_owner_user(c, (unsigned)getuid(), own->user, sizeof own->user);
	if (rv) {
		own->machine[0] = own->user[0] = '\0';
		if (required)
			return fail(verb, rv, NULL);
		fprintf(stderr, "ksputil: %s: cannot tell which owner is this machine's: %s\n", verb, why(rv));
	}
	return EXIT_DONE;
}

static int cmd_enumkeys(const struct opts *o)
{
	static const char verb[] = "enumkeys";
	bool verbose = o->seen & O_VERBOSE, json = o->seen & O_JSON;
	bool all = o->seen & O_ALL, machine = o->seen & O_MACHINE;
	kw_object_list *lists[2] = {NULL, NULL};
	const kw_object **objs = NULL;
	const char *scope_owner = NULL;
	size_t n = 0, cap = 0;
	struct own own;
	kw_client *c;
	int status;
	kw_rv rv = KW_OK;

	if (all && machine)
		return usage_error(verb, "-m and -a exclude each other");
	if ((status = open_client(verb, o, true, &c)))
		return status;
	if ((status = own_owners(verb, c, !all, &own)))
		goto out;
	if (all) {
		rv = kw_list_objects(c, NULL, NULL, &lists[0]);
	} else {
		/* this scope's owner, and the shared one, which every scope reaches */
		scope_owner = machine ? own.machine : own.user;
		rv = kw_list_objects(c, scope_owner, NULL, &lists[0]);
		if (!rv)
			rv = kw_list_objects(c, KW_OWNER_SHARED, NULL, &lists[1]);
	}
	if (rv) {
		status = fail(verb, rv, NULL);
		goto out;
	}
	for (int l = 0; l < 2; l++)
		cap += lists[l] ? kw_object_list_count(lists[l]) : 0;
	objs = calloc(cap ? cap : 1, sizeof *objs);
	if (!objs) {
		fprintf(stderr, "ksputil: %s: out of memory for %zu objects\n", verb, cap);
		status = EXIT_REFUSED;
		goto out;
	}
	for (int l = 0; l < 2; l++)
		for (size_t i = 0; lists[l] && i < kw_object_list_count(lists[l]); i++)
			objs[n++] = kw_object_list_get(lists[l], i);
	qsort(objs, n, sizeof *objs, cmp_objects);

	if (json) {
		json_t *root = json_object(), *owners = json_array(), *group = NULL, *arr = NULL;
		bool ok = root && owners;

		if (ok) {
			json_object_set_new(root, "partition", json_string(kw_client_partition(c)));
			json_object_set_new(root, "scope", json_string(all ? "all" : machine ? "machine" : "user"));
			json_object_set_new(root, "machine_owner", own.machine[0] ? json_string(own.machine) : json_null());
			json_object_set_new(root, "user_owner", own.user[0] ? json_string(own.user) : json_null());
		}
		for (size_t i = 0; ok && i < n; i++) {
			if (i == 0 || strcmp(kw_object_owner(objs[i]), kw_object_owner(objs[i - 1])) != 0) {
				const char *mark = mark_of(&own, kw_object_owner(objs[i]));

				group = json_object();
				arr = json_array();
				ok = group && arr;
				if (!ok) {
					json_decref(group);
					json_decref(arr);
					break;
				}
				json_object_set_new(group, "owner", json_string(kw_object_owner(objs[i])));
				json_object_set_new(group, "mark", mark ? json_string(mark) : json_null());
				json_object_set_new(group, "objects", arr);
				json_array_append_new(owners, group);
			}
			json_t *oj = object_json(objs[i]);
			ok = oj && json_array_append_new(arr, oj) == 0;
		}
		if (!ok) {
			json_decref(root);
			json_decref(owners);
			root = NULL;
		} else {
			json_object_set_new(root, "owners", owners);
			json_object_set_new(root, "count", json_integer((json_int_t)n));
		}
		status = print_json(root);
		goto out;
	}

	printf("Enumerating. Please wait ...\n\n");
	if (!all) {
		/* say which key space was looked at, even when it is empty */
		bool any = false;

		for (size_t i = 0; i < n && !any; i++)
			any = strcmp(kw_object_owner(objs[i]), scope_owner) == 0;
		if (!any) {
			char text[KW_OWNER_MAX + 32], owner[KW_OWNER_MAX + 32];

			snprintf(text, sizeof text, "Owner: %s", owner_text(&own, scope_owner, owner, sizeof owner));
			print_banner(text);
			printf("  No keys.\n\n");
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || strcmp(kw_object_owner(objs[i]), kw_object_owner(objs[i - 1])) != 0) {
			char text[KW_OWNER_MAX + 32], owner[KW_OWNER_MAX + 32];

			snprintf(text, sizeof text, "Owner: %s",
				 owner_text(&own, kw_object_owner(objs[i]), owner, sizeof owner));
			print_banner(text);
		}
		print_object(objs[i], verbose);
	}
	if (all && n == 0)
		printf("No keys in partition '%s'.\n", kw_client_partition(c));
	if (fflush(stdout) != 0) {
		fprintf(stderr, "ksputil: %s: cannot write the listing: %s\n", verb, strerror(errno));
		status = EXIT_REFUSED;
	}
out:
	free(objs);
	kw_object_list_free(lists[0]);
	kw_object_list_free(lists[1]);
	kw_client_free(c);
	return status;
}

/* ---- createkey, createtestkey ---- */

static int cmd_createkey(const struct opts *o, bool test_key)
{
	const char *verb = test_key ? "createtestkey" : "createkey";
	const char *name = o->name ? o->name : TEST_KEY_NAME;
	enum kw_key_type type = KW_KEY_RSA;
	const char *curve = NULL;
	unsigned bits = 0, usages = 0, flags = 0;
	char owner[KW_OWNER_MAX + 1], text[KW_OWNER_MAX + 32];
	kw_object *priv = NULL, *pub = NULL;
	struct own own;
	kw_client *c;
	bool waiting = false;
	int status;
	kw_rv rv;

	if (o->algorithm) {
		if (strcasecmp(o->algorithm, "RSA") == 0)
			type = KW_KEY_RSA;
		else if (strcasecmp(o->algorithm, "ECDSA") == 0 || strcasecmp(o->algorithm, "EC") == 0)
			type = KW_KEY_EC;
		else if (strcasecmp(o->algorithm, "EDDSA") == 0 || strcasecmp(o->algorithm, "Ed25519") == 0)
			type = KW_KEY_ED25519;
		else
			return usage_error(verb, "--algorithm %s: use RSA, ECDSA or EDDSA", o->algorithm);
	}
	if (type == KW_KEY_RSA) {
		if (o->curve)
			return usage_error(verb, "--curve is for ECDSA keys");
		bits = o->seen & O_SIZE ? (unsigned)o->size : TEST_KEY_BITS;
		usages = KW_USAGE_SIGN | KW_USAGE_DECRYPT;
	} else if (type == KW_KEY_EC) {
		static const char *const curves[] = {"P-256", "P-384", "P-521"};
		unsigned sizes[] = {256, 384, 521};
		size_t k = 0;

		if (o->curve) {
			while (k < 3 && strcasecmp(o->curve, curves[k]) != 0)
				k++;
			if (k == 3)
				return usage_error(verb, "--curve %s: use P-256, P-384 or P-521", o->curve);
			if ((o->seen & O_SIZE) && o->size != sizes[k])
				return usage_error(verb, "--size %lu does not match --curve %s", o->size, curves[k]);
		} else if (o->seen & O_SIZE) {
			while (k < 3 && sizes[k] != o->size)
				k++;
			if (k == 3)
				return usage_error(verb, "--size %lu: an ECDSA key has 256, 384 or 521 bits", o->size);
		}
		curve = curves[k];
		bits = sizes[k];
		usages = KW_USAGE_SIGN;
	} else {
		if (o->curve)
			return usage_error(verb, "--curve is for ECDSA keys (EDDSA is Ed25519)");
		if ((o->seen & O_SIZE) && o->size != 256)
			return usage_error(verb, "--size %lu: an EDDSA (Ed25519) key has 256 bits", o->size);
		curve = "Ed25519";
		usages = KW_USAGE_SIGN;
	}
	if (o->seen & (O_SIGN | O_DECRYPT)) {
		if ((o->seen & O_DECRYPT) && type != KW_KEY_RSA)
			return usage_error(verb, "--decrypt: only an RSA key decrypts");
		usages = (o->seen & O_SIGN ? KW_USAGE_SIGN : 0) | (o->seen & O_DECRYPT ? KW_USAGE_DECRYPT : 0);
	}
	if (o->seen & O_EXPORTABLE)
		flags |= KW_GEN_EXTRACTABLE;

	if ((status = open_client(verb, o, true, &c)))
		return status;
	rv = kw_owner_for_name(c, name, (o->seen & O_MACHINE) != 0, owner, sizeof owner);
	if (rv) {
		status = fail(verb, rv, NULL);
		goto out;
	}
	own_owners(verb, c, false, &own);
	/* a wait line while the HSM generates: on a terminal only, so scripts see nothing of it */
	if (!(o->seen & O_QUIET) && isatty(STDERR_FILENO)) {
		fprintf(stderr, "ksputil: %s: generating %s %u key \"%s\" in the HSM%s...", verb,
			type == KW_KEY_RSA  ? "RSA"
			: type == KW_KEY_EC ? "ECDSA"
					    : "EDDSA",
			bits ? bits : 256, name,
			type == KW_KEY_RSA && bits >= 3072 ? " (this takes a few seconds)" : "");
		fflush(stderr);
		waiting = true;
	}
	rv = kw_generate_key(c, owner, name, type, type == KW_KEY_RSA ? bits : 0, curve, flags, usages, &priv, &pub);
	if (waiting)
		fprintf(stderr, " %s\n", rv ? "failed" : "done");
	if (rv) {
		status = fail(verb, rv, "; nothing was created");
		goto out;
	}
	printf("Created key \"%s\" under owner %s:\n\n", name, owner_text(&own, owner, text, sizeof text));
	print_object(pub, true);
	print_object(priv, true);
	status = EXIT_DONE;
out:
	kw_object_free(priv);
	kw_object_free(pub);
	kw_client_free(c);
	return status;
}

/* ---- chkeysowner ---- */

static int cmd_chkeysowner(const struct opts *o, char **args)
{
	static const char verb[] = "chkeysowner";
	const char *name = args[0], *old_owner = args[1], *new_owner = args[2];
	kw_object_list *moved = NULL;
	char from[KW_OWNER_MAX + 32], to[KW_OWNER_MAX + 32];
	struct own own;
	kw_client *c;
	int status;
	kw_rv rv;

	if (!*name)
		return usage_error(verb, "the key name is empty");
	if (!*old_owner)
		return usage_error(verb, "the old owner is empty");
	if (!kw_owner_is_valid(new_owner))
		return usage_error(verb,
				   "the new owner \"%s\" is not an owner SID (S-1-5-21-a-b-c for a machine, "
				   "S-1-5-21-a-b-c-RID for a user, " KW_OWNER_SHARED " shared; see ksputil whoami)",
				   new_owner);
	if (strcmp(old_owner, new_owner) == 0)
		return usage_error(verb, "the old and the new owner are the same");
	if ((status = open_client(verb, o, true, &c)))
		return status;
	own_owners(verb, c, false, &own);
	rv = kw_change_owner(c, name, old_owner, new_owner, &moved);
	if (rv) {
		status = fail(verb, rv, "; nothing was changed");
		goto out;
	}
	printf("Moved key \"%s\" (%zu object%s) from owner %s to owner %s.\n", name, kw_object_list_count(moved),
	       kw_object_list_count(moved) == 1 ? "" : "s", owner_text(&own, old_owner, from, sizeof from),
	       owner_text(&own, new_owner, to, sizeof to));
	if (o->seen & O_VERBOSE) {
		size_t n = kw_object_list_count(moved);
		const kw_object **objs = calloc(n ? n : 1, sizeof *objs);

		if (objs) {
			for (size_t i = 0; i < n; i++)
				objs[i] = kw_object_list_get(moved, i);
			qsort(objs, n, sizeof *objs, cmp_objects);
			printf("\n");
			for (size_t i = 0; i < n; i++) {
				char line[KW_OWNER_MAX + KW_NAME_MAX + 8];

				print_object_lines(objs[i], false);
				snprintf(line, sizeof line, "%s__%s", new_owner, name);
				print_label("  HSM object name:", line);
				snprintf(line, sizeof line, "%s__%s", old_owner, name);
				print_label("  Was:", line);
				snprintf(line, sizeof line, "0x%" PRIx64, kw_object_id(objs[i]));
				print_label("  Object id:", line);
				printf("\n");
			}
			free(objs);
		}
	}
	status = EXIT_DONE;
out:
	kw_object_list_free(moved);
	kw_client_free(c);
	return status;
}

/* ---- deletekey ---- */

static int cmd_deletekey(const struct opts *o)
{
	static const char verb[] = "deletekey";
	char owner[KW_OWNER_MAX + 1], text[KW_OWNER_MAX + 32], answer[16];
	kw_object_list *found = NULL;
	unsigned deleted = 0;
	struct own own;
	kw_client *c;
	int status;
	kw_rv rv;

	if (!o->name || !*o->name)
		return usage_error(verb, "name the key with --name N");
	if ((status = open_client(verb, o, true, &c)))
		return status;
	rv = kw_owner_for_name(c, o->name, (o->seen & O_MACHINE) != 0, owner, sizeof owner);
	if (rv) {
		status = fail(verb, rv, NULL);
		goto out;
	}
	own_owners(verb, c, false, &own);
	rv = kw_list_objects(c, owner, o->name, &found);
	if (rv) {
		status = fail(verb, rv, NULL);
		goto out;
	}
	if (kw_object_list_count(found) == 0) {
		fprintf(stderr,
			"ksputil: %s: no key \"%s\" under owner %s; nothing was deleted (ksputil enumkeys -a lists "
			"every owner)\n",
			verb, o->name, owner_text(&own, owner, text, sizeof text));
		status = EXIT_NOT_FOUND;
		goto out;
	}
	if (!(o->seen & O_YES)) {
		if (!isatty(STDIN_FILENO)) {
			status = usage_error(verb,
					     "not deleting \"%s\" without confirmation: standard input is not a "
					     "terminal; add --yes",
					     o->name);
			goto out;
		}
		fprintf(stderr, "Delete key \"%s\" (%zu object%s) under owner %s? It cannot be undone. [y/N] ", o->name,
			kw_object_list_count(found), kw_object_list_count(found) == 1 ? "" : "s",
			owner_text(&own, owner, text, sizeof text));
		if (!fgets(answer, sizeof answer, stdin))
			answer[0] = '\0';
		answer[strcspn(answer, "\r\n")] = '\0';
		if (strcasecmp(answer, "y") != 0 && strcasecmp(answer, "yes") != 0) {
			fprintf(stderr, "ksputil: %s: not confirmed; nothing was deleted\n", verb);
			status = EXIT_REFUSED;
			goto out;
		}
	}
	rv = kw_delete_objects(c, 0, owner, o->name, KW_CLASS_ANY, &deleted);
	if (rv) {
		status = fail(verb, rv, NULL);
		goto out;
	}
	printf("Deleted key \"%s\" (%u object%s) under owner %s.\n", o->name, deleted, deleted == 1 ? "" : "s",
	       owner_text(&own, owner, text, sizeof text));
	status = EXIT_DONE;
out:
	kw_object_list_free(found);
	kw_client_free(c);
	return status;
}

/* ---- hsmstatus ---- */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmd_hsmstatus(const struct opts *o)
{
	static const char verb[] = "hsmstatus";
	bool json = o->seen & O_JSON, verbose = o->seen & O_VERBOSE;
	json_t *root = NULL, *arr = NULL;
	size_t reachable = 0, n;
	kw_client *c;
	int status;

	if ((status = open_client(verb, o, true, &c)))
		return status;
	n = kw_client_hsm_count(c);
	if (json) {
		root = json_object();
		arr = json_array();
		if (root && arr) {
			json_object_set_new(root, "partition", json_string(kw_client_partition(c)));
			json_object_set_new(root, "hsms", arr);
		} else {
			json_decref(arr);
			json_decref(root);
			root = NULL;
		}
	} else {
		printf("Partition: %s\n\n", kw_client_partition(c));
		printf("%-32s %8s  %-9s  %8s  %s\n", "HSM", "PRIORITY", "REACHABLE", "PROTOCOL", "STATE");
	}
	for (size_t i = 0; i < n; i++) {
		unsigned version = 0;
		int initialized = 0, locked = 0;
		double t0 = now_ms(), ms;
		kw_rv rv = kw_client_probe(c, i, &version, &initialized, &locked);
		/* an HSM that answered, if only to refuse this client, is reachable */
		bool answered = !rv || !(rv == KW_ERR_NETWORK || rv == KW_ERR_TIMEOUT || rv == KW_ERR_PROTOCOL ||
					 rv == KW_ERR_UNREACHABLE || rv == KW_ERR_CONFIG || rv == KW_ERR_NO_MEMORY);
		const char *state = rv ? (answered ? "refused this client" : "-")
				    : !initialized ? "not initialized: keyward-admin init"
				    : locked	   ? "locked: keyward-admin unlock"
						   : "unlocked";
		char reason[768];

		ms = now_ms() - t0;
		snprintf(reason, sizeof reason, "%s", rv ? why(rv) : "");
		if (answered)
			reachable++;
		if (json) {
			json_t *h = json_object();

			if (!root || !h) {
				json_decref(h);
				continue;
			}
			json_object_set_new(h, "address", json_string(kw_client_hsm_address(c, i)));
			json_object_set_new(h, "priority", json_integer(kw_client_hsm_priority(c, i)));
			json_object_set_new(h, "reachable", json_boolean(answered));
			json_object_set_new(h, "protocol", rv ? json_null() : json_integer(version));
			json_object_set_new(h, "initialized", rv ? json_null() : json_boolean(initialized));
			json_object_set_new(h, "locked", rv ? json_null() : json_boolean(locked));
			json_object_set_new(h, "error", rv ? json_string(reason) : json_null());
			json_object_set_new(h, "probe_ms", json_real(ms));
			json_array_append_new(arr, h);
			continue;
		}
		if (rv)
			printf("%-32s %8d  %-9s  %8s  %s\n", kw_client_hsm_address(c, i), kw_client_hsm_priority(c, i),
			       answered ? "yes" : "no", "-", state);
		else
			printf("%-32s %8d  %-9s  %8u  %s\n", kw_client_hsm_address(c, i), kw_client_hsm_priority(c, i),
			       "yes", version, state);
		if (verbose) {
			printf("    probe took %.1f ms", ms);
			if (rv)
				printf("; %s", reason);
			printf("\n");
		} else if (rv) {
			printf("    %s\n", reason);
		}
	}
	if (json) {
		if (root)
			json_object_set_new(root, "reachable", json_integer((json_int_t)reachable));
		status = print_json(root);
		if (status)
			goto out;
	}
	if (reachable == 0) {
		fprintf(stderr, "ksputil: %s: no HSM reachable (%zu configured)\n", verb, n);
		status = EXIT_UNREACHABLE;
	}
out:
	kw_client_free(c);
	return status;
}

/* ---- whoami ---- */

static int cmd_whoami(const struct opts *o)
{
	static const char verb[] = "whoami";
	struct own own;
	kw_client *c;
	int status;
	unsigned uid = (unsigned)getuid();

	if ((status = open_client(verb, o, false, &c)))
		return status;
	if ((status = own_owners(verb, c, true, &own)))
		goto out;
	if (o->seen & O_JSON) {
		json_t *root = json_object();

		if (root) {
			json_object_set_new(root, "partition", json_string(kw_client_partition(c)));
			json_object_set_new(root, "machine_owner", json_string(own.machine));
			json_object_set_new(root, "user_owner", json_string(own.user));
			json_object_set_new(root, "uid", json_integer(uid));
			json_object_set_new(root, "shared_owner", json_string(KW_OWNER_SHARED));
		}
		status = print_json(root);
		goto out;
	}
	printf("%-22s%s\n", "Partition:", kw_client_partition(c));
	printf("%-22s%s (Machine; ksputil ... -m)\n", "Machine owner:", own.machine);
	printf("%-22s%s (Current User, uid %u)\n", "User owner:", own.user, uid);
	printf("%-22s%s (Shared: names ending in .global)\n", "Shared owner:", KW_OWNER_SHARED);
out:
	kw_client_free(c);
	return status;
}

/* ---- register ---- */

static int cmd_register(const struct opts *o)
{
	static const char verb[] = "register";
	char password[SECRET_MAX] = "", pin[SECRET_MAX] = "";
	kw_client *c = NULL;
	int status;
	kw_rv rv;

	if (o->password_file) {
		if (read_line_file(verb, o->password_file, "setup password file", password, sizeof password))
			return EXIT_USAGE;
	}
	if (o->pin_file && read_line_file(verb, o->pin_file, "PIN file", pin, sizeof pin)) {
		status = EXIT_USAGE;
		goto out;
	}
	if (o->pin_file && strlen(pin) < PIN_MIN) {
		status = usage_error(verb, "the PIN in %s has %zu characters: a PIN has at least %d", o->pin_file,
				     strlen(pin), PIN_MIN);
		goto out;
	}
	if ((status = open_client(verb, o, false, &c)))
		goto out;
	rv = kw_enroll_check_files(c, (o->seen & O_FORCE) != 0);
	if (rv) {
		status = fail(verb, rv, NULL);
		goto out;
	}
	if (!o->password_file)
		read_secret("Setup password of the partition: ", password, sizeof password);
	if (!password[0]) {
		status = usage_error(verb, "no setup password given (keyward-admin partition create prints one)");
		goto out;
	}
	rv = kw_enroll(c, password, pin[0] ? pin : NULL);
	if (rv) {
		status = fail(verb, rv, NULL);
		goto out;
	}
	if (!pin[0])
		fprintf(stderr, "ksputil: %s: warning: the credential's key file is written UNENCRYPTED (no --pin-file): "
				"whoever can read it acts as this client; register with --pin-file to encrypt it\n",
			verb);
	printf("Registered with partition '%s': the client credential is written to the files the configuration "
	       "names%s.\n",
	       kw_client_partition(c), pin[0] ? " (the key encrypted under the PIN)" : "");
	status = EXIT_DONE;
	/* every program that reads the configuration finds the PIN from now on */
	if (pin[0]) {
		rv = kw_client_record_pin_file(c, o->pin_file);
		if (rv)
			fprintf(stderr, "ksputil: %s: warning: %s\n", verb, kw_last_error());
		else
			printf("The PIN file is recorded as pin_file in the configuration: ksputil, the PKCS#11 module "
			       "and services use it from now on.\n");
	}
out:
	OPENSSL_cleanse(password, sizeof password);
	OPENSSL_cleanse(pin, sizeof pin);
	kw_client_free(c);
	return status;
}

/* ---- main ---- */

static const struct verb {
	const char *name;
	unsigned allowed; /* O_* it accepts (--pin-file everywhere) */
	int n_args;       /* positional arguments it takes */
} verbs[] = {
	{"enumkeys", O_VERBOSE | O_MACHINE | O_ALL | O_JSON, 0},
	{"createkey",
	 O_VERBOSE | O_MACHINE | O_NAME | O_ALGORITHM | O_SIZE | O_CURVE | O_EXPORTABLE | O_SIGN | O_DECRYPT | O_QUIET,
	 0},
	{"createtestkey", O_VERBOSE | O_MACHINE | O_QUIET, 0},
	{"chkeysowner", O_VERBOSE, 3},
	{"deletekey", O_NAME | O_MACHINE | O_YES, 0},
	{"hsmstatus", O_VERBOSE | O_JSON, 0},
	{"whoami", O_JSON, 0},
	{"register", O_PASSWORD_FILE | O_FORCE, 0},
};

int main(int argc, char **argv)
{
	const struct verb *v = NULL;
	struct opts o = {0};
	int c;

	/* a peer that went away is an error to report, not a signal that kills us */
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return EXIT_DONE;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("ksputil %s\n", KEYWARD_VERSION);
		return EXIT_DONE;
	}
	for (size_t i = 0; i < N_ELEMS(verbs); i++)
		if (strcmp(argv[1], verbs[i].name) == 0)
			v = &verbs[i];
	if (!v) {
		fprintf(stderr, "ksputil: unknown command \"%s\"\n\n", argv[1]);
		usage(stderr);
		return EXIT_USAGE;
	}
	/* options anywhere after the verb (getopt permutes them to the front) */
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc - 1, argv + 1, ":vmahyqn:", long_opts, NULL)) != -1) {
		unsigned bit = 0;
		const char *spelling = NULL;

		if (c == 'h') {
			usage(stdout);
			return EXIT_DONE;
		}
		if (c == '?' || c == ':') {
			/* getopt runs on argv + 1: the element it just read is argv[optind] */
			const char *bad = argv[optind < argc ? optind : argc - 1];

			if (c == ':')
				return usage_error(v->name, "option \"%s\" needs a value", bad);
			return usage_error(v->name, "unknown option \"%s\"", bad);
		}
		for (size_t i = 0; i < N_ELEMS(opt_bits); i++)
			if (opt_bits[i].c == c) {
				bit = opt_bits[i].bit;
				spelling = opt_bits[i].spelling;
			}
		if (!(bit & (v->allowed | O_PIN_FILE)))
			return usage_error(v->name, "%s does not apply to %s", spelling ? spelling : "this option",
					   v->name);
		o.seen |= bit;
		switch (c) {
		case 'n': o.name = optarg; break;
		case 'A': o.algorithm = optarg; break;
		case 'C': o.curve = optarg; break;
		case 'P': o.password_file = optarg; break;
		case 'I': o.pin_file = optarg; break;
		case 's': {
			char *end;
			errno = 0;
			o.size = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || o.size == 0 || o.size > 16384)
				return usage_error(v->name, "--size %s: give the key size in bits", optarg);
			break;
		}
		default: break;
		}
	}
	if (argc - 1 - optind != v->n_args) {
		if (v->n_args)
			return usage_error(v->name, "takes %d arguments (KEYNAME OLDOWNER NEWOWNER), got %d", v->n_args,
					   argc - 1 - optind);
		return usage_error(v->name, "unexpected argument \"%s\"", argv[1 + optind]);
	}
	if (strcmp(v->name, "enumkeys") == 0)
		return cmd_enumkeys(&o);
	if (strcmp(v->name, "createkey") == 0)
		return cmd_createkey(&o, false);
	if (strcmp(v->name, "createtestkey") == 0)
		return cmd_createkey(&o, true);
	if (strcmp(v->name, "chkeysowner") == 0)
		return cmd_chkeysowner(&o, argv + 1 + optind);
	if (strcmp(v->name, "deletekey") == 0)
		return cmd_deletekey(&o);
	if (strcmp(v->name, "hsmstatus") == 0)
		return cmd_hsmstatus(&o);
	if (strcmp(v->name, "whoami") == 0)
		return cmd_whoami(&o);
	return cmd_register(&o);
}
