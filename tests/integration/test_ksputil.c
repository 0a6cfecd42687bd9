/*
 * ksputil against a real keywardd: the seed's procedure with two "servers"
 * on one machine (two machine-id files, one dev keywardd): A creates its CA
 * key, B cannot see it in its own scope but finds it with enumkeys -a,
 * createtestkey -m reveals B's owner, chkeysowner moves the key, and B signs
 * with it (checked with OpenSSL against the public key A was shown). Every
 * refusal of chkeysowner leaves both owners' listings byte-identical;
 * --json parses; deletekey asks first; and a key space of 10,000 keys
 * lists completely.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "harness.h"

static struct kwt_server server;
static kw_client *client;
static char mid_a[320], mid_b[320];
static char owner_a[KW_OWNER_MAX + 1], owner_b[KW_OWNER_MAX + 1];

static const char *ksputil_path(void)
{
	const char *p = getenv("KSPUTIL");
	return p ? p : KSPUTIL_PATH;
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("output does not contain \"%s\":\n%s", needle, haystack);
}

static void assert_not_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle))
		fail_msg("output contains \"%s\":\n%s", needle, haystack);
}

/*
 * Runs ksputil as the "server" whose machine-id file is mid, with conf (the
 * dev client.conf if NULL), stdin from /dev/null. Returns the exit code;
 * *out and *err (each may be NULL) get stdout and stderr (caller frees).
 */
static int run_conf(const char *conf, const char *mid, char **out, char **err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int run_conf(const char *conf, const char *mid, char **out, char **err, const char *fmt, ...)
{
	char args[1024], cmd[4096], out_path[320], err_path[320];
	va_list ap;
	int status;

	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(out_path, sizeof out_path, "%s/ksputil.out", server.dir);
	snprintf(err_path, sizeof err_path, "%s/ksputil.err", server.dir);
	snprintf(cmd, sizeof cmd, "KEYWARD_CONF='%s' KEYWARD_MACHINE_ID_FILE='%s' '%s' %s </dev/null >'%s' 2>'%s'",
		 conf ? conf : server.conf, mid, ksputil_path(), args, out_path, err_path);
	status = system(cmd);
	if (out)
		*out = kwt_read_file(out_path, NULL);
	if (err)
		*err = kwt_read_file(err_path, NULL);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define run(mid, out, err, ...) run_conf(NULL, mid, out, err, __VA_ARGS__)

/* `ksputil enumkeys -a` (with -v: ids and flags too) as server mid sees it. */
static char *listing(const char *mid, bool verbose)
{
	char *out = NULL;

	assert_int_equal(run(mid, &out, NULL, "enumkeys -a%s", verbose ? " -v" : ""), 0);
	return out;
}

static int setup(void **state)
{
	(void)state;
	client = kwt_start_dev_client(&server);
	snprintf(mid_a, sizeof mid_a, "%s/machine-id-a", server.dir);
	snprintf(mid_b, sizeof mid_b, "%s/machine-id-b", server.dir);
	kwt_write_file(mid_a, "0123456789abcdef0123456789abcdef\n");
	kwt_write_file(mid_b, "fedcba9876543210fedcba9876543210\n");
	kwt_ok(kw_owner_from_machine_id("0123456789abcdef0123456789abcdef", owner_a, sizeof owner_a));
	kwt_ok(kw_owner_from_machine_id("fedcba9876543210fedcba9876543210", owner_b, sizeof owner_b));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop_client(&server, client);
	return 0;
}

/* The seed's owner banner, as text. */
static char *banner(const char *owner, const char *mark)
{
	char text[256], *out;
	size_t len;

	snprintf(text, sizeof text, "Owner: %s%s%s%s", owner, mark ? " (" : "", mark ? mark : "", mark ? ")" : "");
	len = strlen(text);
	out = malloc(3 * len + 8);
	assert_non_null(out);
	memset(out, '-', len);
	sprintf(out + len, "\n%s\n", text);
	memset(out + 2 * len + 2, '-', len);
	strcpy(out + 3 * len + 2, "\n\n");
	return out;
}

/* The value of the first line starting with label (after it, trimmed). */
static void line_value(const char *text, const char *label, char *out, size_t size)
{
	const char *p = strstr(text, label);
	size_t n;

	if (!p)
		fail_msg("no \"%s\" in:\n%s", label, text);
	p += strlen(label);
	while (*p == ' ')
		p++;
	n = strcspn(p, "\n");
	assert_true(n < size);
	memcpy(out, p, n);
	out[n] = '\0';
}

static int rsa_verifies(const unsigned char *spki, size_t spki_len, const unsigned char *digest, size_t digest_len,
			const unsigned char *sig, size_t sig_len)
{
	const unsigned char *p = spki;
	EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)spki_len);
	EVP_PKEY_CTX *ctx = pkey ? EVP_PKEY_CTX_new(pkey, NULL) : NULL;
	int ok = ctx && EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
		 EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
		 EVP_PKEY_verify(ctx, sig, sig_len, digest, digest_len) == 1;

	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return ok;
}

static void test_seed_procedure(void **state)
{
	char *out = NULL, *err = NULL, *want, *want2, fp_a[80], hex[65], cmp[512];
	kw_object *priv = NULL, *pub = NULL;
	const unsigned char *spki;
	size_t spki_len = 0, sig_len;
	unsigned char digest[32], md[32], sig[512];
	unsigned int md_len = 0;
	struct kw_mechanism m = {.mech = KW_MECH_RSA_PKCS1, .hash = KW_HASH_SHA256};

	(void)state;
	/* server A: its CA key, RSA-2048, not exportable, in the machine's key space */
	assert_int_equal(run(mid_a, &out, &err, "createkey --name myDemoCA --algorithm RSA --size 2048 -m"), 0);
	snprintf(cmp, sizeof cmp, "Created key \"myDemoCA\" under owner %s (Machine):", owner_a);
	assert_contains(out, cmp);
	assert_contains(out, "+ Key name:                     myDemoCA\n"
			     "  Algorithm, size, type:        RSA, 2048 bit, PublicKey\n");
	assert_contains(out, "  Algorithm, size, type:        RSA, 2048 bit, PrivateKey\n");
	/* the private half: not exportable, but modifiable (so it can move) */
	assert_contains(out, "  Algorithm, size, type:        RSA, 2048 bit, PrivateKey\n"
			     "  Capabilities:                 Sign, Decrypt\n"
			     "  Access flags:                 Sensitive, Modifiable, NeverExtractable, AlwaysSensitive\n");
	line_value(out, "  Public key SHA-256:", fp_a, sizeof fp_a);
	assert_int_equal(strlen(fp_a), 64);
	free(out);
	free(err);

	/* server B does not see it in its own scope */
	assert_int_equal(run(mid_b, &out, &err, "enumkeys -m"), 0);
	assert_not_contains(out, "myDemoCA");
	want = banner(owner_b, "Machine");
	assert_contains(out, want);
	assert_contains(out, "No keys.");
	free(want);
	free(out);
	free(err);

	/* enumkeys -a on B: the key under A's owner, in the seed's layout */
	assert_int_equal(run(mid_b, &out, &err, "enumkeys -a"), 0);
	want = banner(owner_a, NULL);
	assert_true(asprintf(&want2,
			     "%s+ Key name:                     myDemoCA\n"
			     "  Algorithm, size, type:        RSA, 2048 bit, PublicKey\n\n"
			     "+ Key name:                     myDemoCA\n"
			     "  Algorithm, size, type:        RSA, 2048 bit, PrivateKey\n\n",
			     want) > 0);
	assert_contains(out, want2);
	assert_true(strncmp(out, "Enumerating. Please wait ...\n\n", 30) == 0);
	free(want);
	free(want2);
	free(out);
	free(err);

	/* createtestkey -m reveals B's owner */
	assert_int_equal(run(mid_b, &out, &err, "createtestkey -m"), 0);
	snprintf(cmp, sizeof cmp, "Created key \"KeywardTestKey\" under owner %s (Machine):", owner_b);
	assert_contains(out, cmp);
	assert_contains(out, "RSA, 4096 bit, PrivateKey");
	free(out);
	free(err);
	assert_int_equal(run(mid_b, &out, &err, "enumkeys -a"), 0);
	want = banner(owner_b, "Machine");
	assert_true(asprintf(&want2,
			     "%s+ Key name:                     KeywardTestKey\n"
			     "  Algorithm, size, type:        RSA, 4096 bit, PublicKey\n\n"
			     "+ Key name:                     KeywardTestKey\n"
			     "  Algorithm, size, type:        RSA, 4096 bit, PrivateKey\n\n",
			     want) > 0);
	assert_contains(out, want2);
	/* A's owner is not B's: unmarked */
	free(want);
	want = banner(owner_a, NULL);
	assert_contains(out, want);
	free(want);
	free(want2);
	free(out);
	free(err);

	/* the move */
	assert_int_equal(run(mid_b, &out, &err, "chkeysowner myDemoCA %s %s -v", owner_a, owner_b), 0);
	snprintf(cmp, sizeof cmp, "Moved key \"myDemoCA\" (2 objects) from owner %s to owner %s (Machine).", owner_a,
		 owner_b);
	assert_contains(out, cmp);
	snprintf(cmp, sizeof cmp, "%s__myDemoCA", owner_b);
	assert_contains(out, cmp);
	assert_string_equal(err, "");
	free(out);
	free(err);

	/* B lists it now, A no longer */
	assert_int_equal(run(mid_b, &out, &err, "enumkeys -m -v"), 0);
	assert_contains(out, "+ Key name:                     myDemoCA\n");
	snprintf(cmp, sizeof cmp, "  Public key SHA-256:           %s\n", fp_a);
	assert_contains(out, cmp);
	free(out);
	free(err);
	assert_int_equal(run(mid_a, &out, &err, "enumkeys -m"), 0);
	assert_not_contains(out, "myDemoCA");
	free(out);
	free(err);

	/* B signs with it; OpenSSL verifies against the public key A was shown */
	kwt_ok(kw_get_object(client, 0, owner_b, "myDemoCA", KW_CLASS_PUBLIC_KEY, &pub));
	kwt_ok(kw_get_object(client, 0, owner_b, "myDemoCA", KW_CLASS_PRIVATE_KEY, &priv));
	spki = kw_object_public_key(pub, &spki_len);
	assert_non_null(spki);
	assert_int_equal(EVP_Digest(spki, spki_len, md, &md_len, EVP_sha256(), NULL), 1);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	assert_string_equal(hex, fp_a);
	assert_false(kw_object_extractable(priv));
	assert_int_equal(EVP_Digest("issued by myDemoCA", 18, digest, &md_len, EVP_sha256(), NULL), 1);
	sig_len = sizeof sig;
	kwt_ok(kw_sign(client, kw_object_id(priv), &m, digest, sizeof digest, sig, &sig_len));
	assert_int_equal(sig_len, 256);
	assert_true(rsa_verifies(spki, spki_len, digest, sizeof digest, sig, sig_len));
	digest[0] ^= 1;
	assert_false(rsa_verifies(spki, spki_len, digest, sizeof digest, sig, sig_len));
	kw_object_free(pub);
	kw_object_free(priv);
}

/* chkeysowner refused: the exit code, the message, and nothing changed. */
static void assert_refused(const char *name, const char *from, const char *to, int want_rc, const char *words)
{
	char *a = listing(mid_a, false), *b = listing(mid_b, false), *av = listing(mid_a, true);
	char *out = NULL, *err = NULL, *a2, *b2, *av2;

	assert_int_equal(run(mid_b, &out, &err, "chkeysowner %s %s %s -v", name, from, to), want_rc);
	assert_string_equal(out, "");
	assert_contains(err, "ksputil: chkeysowner: ");
	assert_contains(err, words);
	assert_contains(err, "nothing was changed");
	a2 = listing(mid_a, false);
	b2 = listing(mid_b, false);
	av2 = listing(mid_a, true);
	assert_string_equal(a, a2);
	assert_string_equal(b, b2);
	assert_string_equal(av, av2);
	free(a);
	free(b);
	free(av);
	free(a2);
	free(b2);
	free(av2);
	free(out);
	free(err);
}

static void test_chkeysowner_refusals(void **state)
{
	kw_object *priv, *pub;
	char *out = NULL, *err = NULL, words[256];

	(void)state;
	/* missing under the old owner, nowhere at all */
	assert_refused("ghost", owner_a, owner_b, 4, "no object \"ghost\" under owner");
	/* missing under the old owner, but another has it: the message names that owner */
	assert_int_equal(run(mid_b, NULL, NULL, "createkey --name twin --algorithm ECDSA -m"), 0);
	snprintf(words, sizeof words, "owners with that name: %s", owner_b);
	assert_refused("twin", owner_a, owner_b, 4, words);
	/* the new owner already has that name */
	assert_int_equal(run(mid_a, NULL, NULL, "createkey --name twin --algorithm ECDSA --curve P-384 -m"), 0);
	snprintf(words, sizeof words, "owner %s already has an object named \"twin\"", owner_b);
	assert_refused("twin", owner_a, owner_b, 1, words);
	/* not modifiable */
	kwt_ok(kw_generate_key(client, owner_a, "frozen", KW_KEY_EC, 0, "P-256", KW_GEN_NOT_MODIFIABLE, KW_USAGE_SIGN,
			       &priv, &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	assert_refused("frozen", owner_a, owner_b, 1, "is not modifiable");

	/* bad usage changes nothing either and says how */
	assert_int_equal(run(mid_b, &out, &err, "chkeysowner twin %s", owner_a), 2);
	assert_contains(err, "takes 3 arguments");
	free(out);
	free(err);
	assert_int_equal(run(mid_b, &out, &err, "chkeysowner twin %s not-a-sid", owner_a), 2);
	assert_contains(err, "is not an owner SID");
	free(out);
	free(err);
	assert_int_equal(run(mid_b, &out, &err, "chkeysowner twin %s %s", owner_a, owner_a), 2);
	assert_contains(err, "the same");
	free(out);
	free(err);
	assert_int_equal(run(mid_b, &out, &err, "enumkeys -m -a"), 2);
	free(out);
	free(err);
	assert_int_equal(run(mid_b, &out, &err, "enumkeys --name x"), 2);
	assert_contains(err, "--name does not apply to enumkeys");
	free(out);
	free(err);
	assert_int_equal(run(mid_b, &out, &err, "nosuchverb"), 2);
	free(out);
	free(err);
}

static json_t *find_object(json_t *root, const char *owner, const char *name, const char *type)
{
	json_t *owners = json_object_get(root, "owners"), *g, *o;
	size_t i, j;

	json_array_foreach(owners, i, g)
	{
		if (strcmp(json_string_value(json_object_get(g, "owner")), owner) != 0)
			continue;
		json_array_foreach(json_object_get(g, "objects"), j, o)
		{
			if (strcmp(json_string_value(json_object_get(o, "name")), name) == 0 &&
			    strcmp(json_string_value(json_object_get(o, "type")), type) == 0)
				return o;
		}
	}
	return NULL;
}

static void test_json(void **state)
{
	char *out = NULL, *err = NULL, want[KW_OWNER_MAX + 16];
	json_error_t jerr;
	json_t *root, *o, *g;

	(void)state;
	assert_int_equal(run(mid_a, NULL, NULL, "createkey --name jsonkey --algorithm ECDSA -m"), 0);
	assert_int_equal(run(mid_a, &out, &err, "enumkeys -a --json"), 0);
	root = json_loads(out, 0, &jerr);
	if (!root)
		fail_msg("enumkeys --json is not JSON: %s (line %d)\n%s", jerr.text, jerr.line, out);
	assert_string_equal(json_string_value(json_object_get(root, "scope")), "all");
	assert_string_equal(json_string_value(json_object_get(root, "machine_owner")), owner_a);
	o = find_object(root, owner_a, "jsonkey", "PrivateKey");
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "algorithm")), "EC P-256");
	assert_int_equal(json_integer_value(json_object_get(o, "bits")), 256);
	assert_string_equal(json_string_value(json_object_get(o, "curve")), "P-256");
	assert_true(json_is_true(json_object_get(o, "sensitive")));
	assert_true(json_is_false(json_object_get(o, "extractable")));
	assert_true(json_is_true(json_object_get(o, "modifiable")));
	snprintf(want, sizeof want, "%s__jsonkey", owner_a);
	assert_string_equal(json_string_value(json_object_get(o, "hsm_name")), want);
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "capabilities"), 0)), "Sign");
	assert_non_null(find_object(root, owner_a, "jsonkey", "PublicKey"));
	/* A's group is marked as A's machine */
	g = json_array_get(json_object_get(root, "owners"), 0);
	for (size_t i = 0; i < json_array_size(json_object_get(root, "owners")); i++) {
		g = json_array_get(json_object_get(root, "owners"), i);
		if (strcmp(json_string_value(json_object_get(g, "owner")), owner_a) == 0)
			break;
	}
	assert_string_equal(json_string_value(json_object_get(g, "mark")), "Machine");
	assert_true(json_integer_value(json_object_get(root, "count")) >= 2);
	json_decref(root);
	free(out);
	free(err);

	assert_int_equal(run(mid_a, &out, &err, "whoami --json"), 0);
	root = json_loads(out, 0, &jerr);
	assert_non_null(root);
	assert_string_equal(json_string_value(json_object_get(root, "machine_owner")), owner_a);
	assert_string_equal(json_string_value(json_object_get(root, "shared_owner")), "S-1-5-11");
	assert_string_equal(json_string_value(json_object_get(root, "partition")), "dev");
	json_decref(root);
	free(out);
	free(err);

	assert_int_equal(run(mid_a, &out, &err, "hsmstatus --json"), 0);
	root = json_loads(out, 0, &jerr);
	assert_non_null(root);
	assert_int_equal(json_integer_value(json_object_get(root, "reachable")), 1);
	o = json_array_get(json_object_get(root, "hsms"), 0);
	assert_true(json_is_true(json_object_get(o, "reachable")));
	assert_int_equal(json_integer_value(json_object_get(o, "protocol")), KW_PROTOCOL_VERSION);
	assert_true(json_is_false(json_object_get(o, "locked")));
	json_decref(root);
	free(out);
	free(err);
}

/* A secret key (AES, made through libkeyward) lists as one SecretKey entry. */
static void test_secret_key_listed(void **state)
{
	kw_object *key = NULL, *none = NULL;
	char *out = NULL, *err = NULL;

	(void)state;
	kwt_ok(kw_generate_key(client, owner_a, "wrapper", KW_KEY_AES, 256, NULL, 0, 0, &key, &none));
	assert_null(none);
	assert_int_equal(run(mid_a, &out, &err, "enumkeys -m -v"), 0);
	if (!strstr(out, "+ Key name:                     wrapper\n  Algorithm, size, type:        AES, 256 bit, SecretKey"))
		fail_msg("the AES key is not listed as a SecretKey:\n%s", out);
	free(out);
	free(err);
	kw_object_free(key);
}

/*
 * register: a new partition's setup password becomes this client's
 * credential, with the key file encrypted under a PIN; the password works
 * once, and the credential works only with the PIN.
 */
static void test_register(void **state)
{
	char *out = NULL, *err = NULL, *pw, password[64] = "", conf[400], pw_file[400], pin_file[400], key[400];
	char *key_pem, *conf_text, want[512];

	(void)state;
	assert_int_equal(kwt_admin(&server, NULL, &out, "partition create reg"), 0);
	pw = strstr(out, "setup password: ");
	assert_non_null(pw);
	sscanf(pw + strlen("setup password: "), "%63s", password);
	free(out);
	kwt_write_client_conf(&server, "reg", "reg", conf, sizeof conf);
	snprintf(pw_file, sizeof pw_file, "%s/reg.password", server.dir);
	snprintf(pin_file, sizeof pin_file, "%s/reg.pin", server.dir);
	kwt_write_file(pw_file, password);
	kwt_write_file(pin_file, "4711-pin\n");

	assert_int_equal(run_conf(conf, mid_a, &out, &err, "register --password-file %s --pin-file %s", pw_file,
				  pin_file),
			 0);
	free(out);
	free(err);
	snprintf(key, sizeof key, "%s/reg.key", server.dir);
	key_pem = kwt_read_file(key, NULL);
	assert_non_null(key_pem);
	assert_contains(key_pem, "ENCRYPTED PRIVATE KEY");
	free(key_pem);
	/* the credential works with the PIN, and sees its own, empty partition */
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "enumkeys -a --pin-file %s", pin_file), 0);
	assert_not_contains(out, "myDemoCA");
	free(out);
	free(err);
	/*
	 * Issue 15: registering recorded the PIN file in the configuration, so
	 * plain commands find the PIN, and hsmstatus sees the HSM.
	 */
	conf_text = kwt_read_file(conf, NULL);
	assert_non_null(conf_text);
	snprintf(want, sizeof want, "pin_file = %s\n", pin_file);
	assert_contains(conf_text, want);
	assert_contains(conf_text, "partition = reg\n");
	free(conf_text);
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "enumkeys -a"), 0);
	assert_contains(out, "No keys in partition 'reg'");
	free(out);
	free(err);
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "createkey --name regkey --algorithm ECDSA -m"), 0);
	free(out);
	free(err);
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "hsmstatus"), 0);
	assert_contains(out, "unlocked");
	assert_not_contains(out, "  no  ");
	free(out);
	free(err);
	/* a PIN file others may read is refused, naming the chmod */
	assert_int_equal(chmod(pin_file, 0644), 0);
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "enumkeys -a"), 1);
	assert_contains(err, "mode 0644");
	assert_contains(err, "chmod 600");
	assert_not_contains(err, "kw_");
	free(out);
	free(err);
	assert_int_equal(chmod(pin_file, 0600), 0);
	/* without any PIN the key file cannot be used: the message says how to give one, in words */
	kwt_write_client_conf(&server, "reg", "reg", conf, sizeof conf);
	assert_int_not_equal(run_conf(conf, mid_a, &out, &err, "enumkeys -a"), 0);
	assert_contains(err, "no PIN was given");
	assert_contains(err, "pin_file");
	assert_not_contains(err, "kw_");
	free(out);
	free(err);
	/* hsmstatus still reaches the HSM (Hello needs no credential) */
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "hsmstatus"), 0);
	assert_contains(out, "unlocked");
	free(out);
	free(err);
	/* the password is spent (--force: past the existing credential, to the HSM) */
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "register --password-file %s --force", pw_file), 1);
	assert_contains(err, "already used");
	free(out);
	free(err);
}

/* A fresh setup password for partition, from keyward-admin, written to DIR/<partition>.password; returns the path. */
static const char *password_file_for(const char *cmd, const char *partition)
{
	static char path[400];
	char *out = NULL, *pw, password[64] = "";

	assert_int_equal(kwt_admin(&server, NULL, &out, "partition %s %s", cmd, partition), 0);
	pw = strstr(out, "setup password: ");
	assert_non_null(pw);
	sscanf(pw + strlen("setup password: "), "%63s", password);
	free(out);
	snprintf(path, sizeof path, "%s/%s.password", server.dir, partition);
	kwt_write_file(path, password);
	return path;
}

/*
 * Issue #11, finding 10: register refuses a PIN shorter than 8, an existing
 * credential (unless --force), a directory others may write to, and warns
 * when the key file is written unencrypted. A refusal spends no password.
 */
static void test_register_refusals(void **state)
{
	char *out = NULL, *err = NULL, conf[400], pin_file[400], key[400], dir[400];
	const char *pw_file;
	struct stat st;

	(void)state;
	pw_file = password_file_for("create", "reg2");
	kwt_write_client_conf(&server, "reg2", "reg2", conf, sizeof conf);
	snprintf(key, sizeof key, "%s/reg2.key", server.dir);
	snprintf(pin_file, sizeof pin_file, "%s/reg2.pin", server.dir);

	/* a 7-character PIN */
	kwt_write_file(pin_file, "1234567\n");
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "register --password-file %s --pin-file %s", pw_file,
				  pin_file),
			 2);
	assert_contains(err, "at least 8");
	assert_int_equal(access(key, F_OK), -1);
	free(out);
	free(err);

	/* a directory the group may write to */
	snprintf(dir, sizeof dir, "%s/shared", server.dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 0770), 0);
	snprintf(conf, sizeof conf, "%s/shared.conf", server.dir);
	{
		char text[1024];
		snprintf(text, sizeof text,
			 "[client]\npartition = reg2\nca = tls/ca.crt\ncert = %s/c.crt\nkey = %s/c.key\n\n"
			 "[hsm test]\nhost = 127.0.0.1\nport = %u\n",
			 dir, dir, server.port);
		kwt_write_file(conf, text);
	}
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "register --password-file %s", pw_file), 1);
	assert_contains(err, "writable by group or others");
	assert_contains(err, "chmod go-w");
	free(out);
	free(err);

	/* no PIN: registered, with a warning, the key file 0600 */
	kwt_write_client_conf(&server, "reg2", "reg2", conf, sizeof conf);
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "register --password-file %s", pw_file), 0);
	assert_contains(err, "UNENCRYPTED");
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(out);
	free(err);

	/* an existing credential is not replaced by accident, with a new password either */
	pw_file = password_file_for("password", "reg2");
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "register --password-file %s", pw_file), 1);
	assert_contains(err, "exists already");
	assert_contains(err, "--force");
	free(out);
	free(err);
	kwt_write_file(pin_file, "12345678\n");
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "register --password-file %s --pin-file %s --force",
				  pw_file, pin_file),
			 0);
	assert_not_contains(err, "UNENCRYPTED");
	free(out);
	free(err);
	out = kwt_read_file(key, NULL);
	assert_non_null(out);
	assert_contains(out, "ENCRYPTED PRIVATE KEY");
	free(out);
}

static void test_deletekey(void **state)
{
	char *out = NULL, *err = NULL;

	(void)state;
	assert_int_equal(run(mid_a, NULL, NULL, "createkey --name doomed --algorithm EDDSA -m"), 0);
	/* no terminal, no --yes: refused, and the key stays */
	assert_int_equal(run(mid_a, &out, &err, "deletekey --name doomed -m"), 2);
	assert_contains(err, "add --yes");
	free(out);
	free(err);
	out = listing(mid_a, false);
	assert_contains(out, "EdDSA Ed25519, 256 bit, PrivateKey");
	free(out);
	assert_int_equal(run(mid_a, &out, &err, "deletekey --name doomed -m --yes"), 0);
	assert_contains(out, "Deleted key \"doomed\" (2 objects)");
	free(out);
	free(err);
	out = listing(mid_a, false);
	assert_not_contains(out, "doomed");
	free(out);
	/* a missing key: not found */
	assert_int_equal(run(mid_a, &out, &err, "deletekey --name doomed -m --yes"), 4);
	assert_contains(err, "no key \"doomed\" under owner");
	free(out);
	free(err);
	assert_int_equal(run(mid_a, &out, &err, "deletekey -m --yes"), 2);
	free(out);
	free(err);
}

/* ksputil ARGS on a terminal (script(1)): stdout and stderr of the program together in *out. */
static int run_tty(const char *mid, char **out, const char *args)
{
	return kwt_run(server.dir, out,
		       "script -qec \"KEYWARD_CONF='%s' KEYWARD_MACHINE_ID_FILE='%s' '%s' %s\" /dev/null </dev/null",
		       server.conf, mid, ksputil_path(), args);
}

/*
 * Key generation says it is under way on a terminal (RSA 4096 takes
 * seconds), and only there: not when standard error is a file or pipe,
 * not with --quiet.
 */
static void test_createkey_wait_line(void **state)
{
	char *out = NULL, *err = NULL;

	(void)state;
	assert_int_equal(run_tty(mid_a, &out, "createkey --name waited --algorithm RSA --size 4096 -m"), 0);
	assert_contains(out, "generating RSA 4096 key \"waited\" in the HSM (this takes a few seconds)... done");
	assert_contains(out, "Created key \"waited\"");
	free(out);
	assert_int_equal(run_tty(mid_a, &out, "createkey --name waited2 --algorithm ECDSA -m --quiet"), 0);
	assert_not_contains(out, "generating");
	assert_contains(out, "Created key \"waited2\"");
	free(out);
	assert_int_equal(run(mid_a, &out, &err, "createkey --name waited3 --algorithm ECDSA -m"), 0);
	assert_not_contains(err, "generating");
	assert_not_contains(out, "generating");
	free(out);
	free(err);
	/* a failure ends the line too */
	assert_int_equal(run_tty(mid_a, &out, "createkey --name waited --algorithm ECDSA -m"), 1);
	assert_contains(out, "generating ECDSA 256 key \"waited\" in the HSM... failed");
	free(out);
	assert_int_equal(run(mid_a, &out, &err, "deletekey --name waited -m --yes"), 0);
	free(out);
	free(err);
	assert_int_equal(run(mid_a, &out, &err, "deletekey --name waited2 -m --yes"), 0);
	free(out);
	free(err);
	assert_int_equal(run(mid_a, &out, &err, "deletekey --name waited3 -m --yes"), 0);
	free(out);
	free(err);
}

static void test_whoami_and_scopes(void **state)
{
	char *out = NULL, *err = NULL, user[KW_OWNER_MAX + 16], want[KW_OWNER_MAX + 96];

	(void)state;
	snprintf(user, sizeof user, "%s-%u", owner_a, 1000 + 2 * (unsigned)getuid());
	assert_int_equal(run(mid_a, &out, &err, "whoami"), 0);
	snprintf(want, sizeof want, "Machine owner:        %s (Machine", owner_a);
	assert_contains(out, want);
	snprintf(want, sizeof want, "User owner:           %s (Current User, uid %u)", user, (unsigned)getuid());
	assert_contains(out, want);
	assert_contains(out, "Shared owner:         S-1-5-11");
	free(out);
	free(err);

	/* the user scope, and a shared key every scope sees */
	assert_int_equal(run(mid_a, &out, &err, "createkey --name mine --algorithm ECDSA"), 0);
	snprintf(want, sizeof want, "under owner %s (Current User)", user);
	assert_contains(out, want);
	free(out);
	free(err);
	assert_int_equal(run(mid_a, &out, &err, "createkey --name web.global --algorithm ECDSA -m"), 0);
	assert_contains(out, "under owner S-1-5-11 (Shared)");
	free(out);
	free(err);
	assert_int_equal(run(mid_a, &out, &err, "enumkeys"), 0);
	assert_contains(out, "mine");
	assert_contains(out, "web.global");
	free(out);
	free(err);
	assert_int_equal(run(mid_b, &out, &err, "enumkeys -m"), 0);
	assert_contains(out, "Owner: S-1-5-11 (Shared)");
	assert_not_contains(out, "mine");
	free(out);
	free(err);
}

static void test_unreachable(void **state)
{
	char conf[320], text[512], *out = NULL, *err = NULL;

	(void)state;
	snprintf(conf, sizeof conf, "%s/dead.conf", server.dir);
	snprintf(text, sizeof text,
		 "[client]\npartition = dev\nca = tls/ca.crt\ncert = client/dev.crt\nkey = client/dev.key\npin_file = pin\n"
		 "connect_timeout = 2\n[hsm dead]\nhost = 127.0.0.1\nport = %u\n",
		 kwt_free_port());
	kwt_write_file(conf, text);
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "hsmstatus"), 3);
	assert_contains(out, "no ");
	assert_contains(err, "no HSM reachable");
	free(out);
	free(err);
	assert_int_equal(run_conf(conf, mid_a, &out, &err, "enumkeys -a"), 3);
	assert_contains(err, "no HSM reachable");
	free(out);
	free(err);
	/* a machine-id file that is no machine id: a clear error naming it */
	snprintf(conf, sizeof conf, "%s/machine-id-bad", server.dir);
	kwt_write_file(conf, "uninitialized\n");
	assert_int_equal(run(conf, &out, &err, "whoami"), 1);
	assert_contains(err, conf);
	assert_contains(err, "not a valid machine-id file");
	free(out);
	free(err);
}

/* ---- 10,000 keys ---- */

#define MANY 10000
#define MANY_OWNERS 50
#define MANY_THREADS 4

static kw_client *many_client;
static unsigned many_next;
static pthread_mutex_t many_lock = PTHREAD_MUTEX_INITIALIZER;

static void many_name(unsigned i, char *owner, size_t osize, char *name, size_t nsize)
{
	snprintf(owner, osize, "S-1-5-21-7-7-%u", i % MANY_OWNERS);
	snprintf(name, nsize, "key-%05u", i);
}

static void *many_worker(void *arg)
{
	kw_rv *rv = arg;

	for (;;) {
		char owner[64], name[32];
		unsigned i;

		pthread_mutex_lock(&many_lock);
		i = many_next++;
		pthread_mutex_unlock(&many_lock);
		if (i >= MANY || *rv)
			return NULL;
		many_name(i, owner, sizeof owner, name, sizeof name);
		*rv = kw_generate_key(many_client, owner, name, KW_KEY_EC, 0, "P-256", 0, KW_USAGE_SIGN, NULL, NULL);
		if (*rv)
			fprintf(stderr, "generating %s/%s: %s\n", owner, name, kw_last_error());
	}
}

static void test_ten_thousand_keys(void **state)
{
	struct kwt_server big;
	pthread_t th[MANY_THREADS];
	kw_rv rvs[MANY_THREADS] = {0};
	unsigned char *seen = calloc(MANY, 1);
	char cmd[2048], path[320], owner[64] = "", line[512];
	unsigned objects = 0;
	FILE *f;

	(void)state;
	assert_non_null(seen);
	many_client = kwt_start_dev_client(&big);
	many_next = 0;
	/* one keystore transaction each: from several threads, as a busy CA would */
	for (int t = 0; t < MANY_THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, many_worker, &rvs[t]), 0);
	for (int t = 0; t < MANY_THREADS; t++) {
		pthread_join(th[t], NULL);
		kwt_ok(rvs[t]);
	}

	snprintf(path, sizeof path, "%s/enumkeys.out", big.dir);
	snprintf(cmd, sizeof cmd, "KEYWARD_CONF='%s' KEYWARD_MACHINE_ID_FILE='%s' '%s' enumkeys -a </dev/null >'%s'",
		 big.conf, mid_a, ksputil_path(), path);
	assert_int_equal(system(cmd), 0);
	/* every object once, under the right owner, public half before private */
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof line, f)) {
		char want_owner[64], want_name[32], name[64];
		unsigned i;

		if (strncmp(line, "Owner: ", 7) == 0) {
			snprintf(owner, sizeof owner, "%.*s", (int)strcspn(line + 7, "\n"), line + 7);
			continue;
		}
		if (strncmp(line, "+ Key name:", 11) != 0)
			continue;
		assert_int_equal(sscanf(line + 11, " key-%u", &i), 1);
		assert_true(i < MANY);
		snprintf(name, sizeof name, "%.*s", (int)strcspn(line + 32, "\n"), line + 32);
		many_name(i, want_owner, sizeof want_owner, want_name, sizeof want_name);
		assert_string_equal(name, want_name);
		assert_string_equal(owner, want_owner);
		assert_non_null(fgets(line, sizeof line, f));
		assert_string_equal(line, seen[i] == 0 ? "  Algorithm, size, type:        EC P-256, 256 bit, PublicKey\n"
							 : "  Algorithm, size, type:        EC P-256, 256 bit, PrivateKey\n");
		seen[i]++;
		objects++;
	}
	fclose(f);
	assert_int_equal(objects, 2 * MANY);
	for (unsigned i = 0; i < MANY; i++)
		if (seen[i] != 2)
			fail_msg("key-%05u listed %u times", i, seen[i]);
	free(seen);
	kwt_stop_client(&big, many_client);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_procedure),
		cmocka_unit_test(test_chkeysowner_refusals),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_secret_key_listed),
		cmocka_unit_test(test_register),
		cmocka_unit_test(test_register_refusals),
		cmocka_unit_test(test_deletekey),
		cmocka_unit_test(test_createkey_wait_line),
		cmocka_unit_test(test_whoami_and_scopes),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_ten_thousand_keys),
	};
	return cmocka_run_group_tests_name("integration_ksputil", tests, setup, teardown);
}
