/*
 * The HSM's life cycle with keyward-admin against a real keywardd started
 * from a configuration file: init under a passphrase or Shamir shares,
 * partitions and one-time setup passwords, lock/unlock, restart
 * persistence, lockout after failed authentications, and the audit chain.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "harness.h"

#define OWNER KWT_OWNER
#define PASSPHRASE "correct horse battery staple"
#define LOCKOUT "[lockout]\nmax_failures = 3\nwindow = 60\nduration = 3\n"

static char *setup_password(struct kwt_server *s, const char *cmd, const char *partition)
{
	char *out = NULL, *p;
	static char password[64];

	if (kwt_admin(s, NULL, &out, "partition %s %s", cmd, partition) != 0)
		fail_msg("partition %s %s: %s", cmd, partition, out);
	p = strstr(out, "setup password: ");
	assert_non_null(p);
	sscanf(p + strlen("setup password: "), "%63s", password);
	free(out);
	return password;
}

static kw_client *client_for(struct kwt_server *s, const char *name, const char *partition)
{
	char conf[400];
	kw_client *c;

	kwt_write_client_conf(s, name, partition, conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &c));
	return c;
}

static void sign_ok(kw_client *c, uint64_t id, const unsigned char *spki, size_t spki_len)
{
	unsigned char digest[32] = {9}, sig[128], *der = NULL;
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};
	const unsigned char *p = spki;
	EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)spki_len);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
	ECDSA_SIG *es = ECDSA_SIG_new();
	int der_len;

	kwt_ok(kw_sign(c, id, &m, digest, sizeof digest, sig, &sig_len));
	ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
	der_len = i2d_ECDSA_SIG(es, &der);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_int_equal(EVP_PKEY_verify(ctx, der, (size_t)der_len, digest, sizeof digest), 1);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
}

static void test_passphrase_life_cycle(void **state)
{
	struct kwt_server s = {0};
	char pass_file[300], *out = NULL, *pw;
	kw_client *c, *c2, *c3;
	kw_object *priv, *pub;
	unsigned char spki[512];
	size_t spki_len;
	uint64_t id;
	const unsigned char *der;
	unsigned char digest[32] = {1}, sig[128];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m = {.mech = KW_MECH_ECDSA};

	(void)state;
	kwt_start_config(&s, LOCKOUT);
	assert_int_equal(kwt_admin(&s, NULL, &out, "status"), 0);
	assert_non_null(strstr(out, "not initialized"));
	free(out);
	/* nothing before init */
	assert_int_equal(kwt_admin(&s, NULL, &out, "partition create early"), 1);
	assert_non_null(strstr(out, "init"));
	free(out);
	/* too short a passphrase changes nothing */
	assert_int_equal(kwt_admin(&s, "short\n", &out, "init"), 1);
	free(out);
	snprintf(pass_file, sizeof pass_file, "%s/passphrase", s.dir);
	kwt_write_file(pass_file, PASSPHRASE "\n");
	assert_int_equal(kwt_admin(&s, NULL, &out, "init --passphrase-file %s", pass_file), 0);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "init --passphrase-file %s", pass_file), 1);
	assert_non_null(strstr(out, "already initialized"));
	free(out);

	/* a setup password works once */
	pw = setup_password(&s, "create", "p1");
	c = client_for(&s, "c1", "p1");
	kwt_ok(kw_enroll(c, pw, NULL));
	c2 = client_for(&s, "c2", "p1");
	assert_int_equal(kw_enroll(c2, pw, NULL), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "already used"));
	/* a fresh one registers a second client of the same partition */
	pw = setup_password(&s, "password", "p1");
	kwt_ok(kw_enroll(c2, pw, NULL));

	kwt_ok(kw_generate_key(c, OWNER, "persist", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	id = kw_object_id(priv);
	der = kw_object_public_key(pub, &spki_len);
	memcpy(spki, der, spki_len);
	kw_object_free(priv);
	kw_object_free(pub);
	sign_ok(c2, id, spki, spki_len); /* the second client uses the partition's key */

	/* locked: no key operation, listing still works */
	assert_int_equal(kwt_admin(&s, NULL, NULL, "lock"), 0);
	assert_int_equal(kw_sign(c, id, &m, digest, sizeof digest, sig, &sig_len), KW_ERR_STORE_LOCKED);
	assert_int_equal(kw_generate_key(c, OWNER, "while-locked", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub),
			 KW_ERR_STORE_LOCKED);
	kwt_ok(kw_get_object(c, id, NULL, NULL, KW_CLASS_ANY, &priv));
	kw_object_free(priv);
	kwt_write_file(pass_file, "not the passphrase\n");
	assert_int_equal(kwt_admin(&s, NULL, &out, "unlock --passphrase-file %s", pass_file), 1);
	free(out);
	kwt_write_file(pass_file, PASSPHRASE "\n");
	assert_int_equal(kwt_admin(&s, NULL, NULL, "unlock --passphrase-file %s", pass_file), 0);
	sign_ok(c, id, spki, spki_len);

	/* restart: the store comes back locked, with every key */
	kwt_stop(&s);
	kwt_start_config(&s, LOCKOUT);
	assert_int_equal(kwt_admin(&s, NULL, &out, "status"), 0);
	assert_non_null(strstr(out, "locked"));
	free(out);
	sig_len = sizeof sig;
	assert_int_equal(kw_sign(c, id, &m, digest, sizeof digest, sig, &sig_len), KW_ERR_STORE_LOCKED);
	assert_int_equal(kwt_admin(&s, NULL, NULL, "unlock --passphrase-file %s", pass_file), 0);
	sign_ok(c, id, spki, spki_len);

	/* a third client that asks for a partition its credential is not of */
	c3 = client_for(&s, "c1", "wrong-partition");
	sig_len = sizeof sig;
	assert_int_equal(kw_sign(c3, id, &m, digest, sizeof digest, sig, &sig_len), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "p1"));
	kw_client_free(c3);

	/* the audit chain holds, and says what happened */
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify"), 0);
	assert_non_null(strstr(out, "intact"));
	free(out);

	kw_client_free(c);
	kw_client_free(c2);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

/* Starts an initialized server with the given [lockout] section and a partition "p2" waiting for enrollment. */
static void start_with_partition(struct kwt_server *s, const char *lockout, char *good, size_t good_size)
{
	char pass_file[300];

	kwt_start_config(s, lockout);
	snprintf(pass_file, sizeof pass_file, "%s/passphrase", s->dir);
	kwt_write_file(pass_file, PASSPHRASE "\n");
	assert_int_equal(kwt_admin(s, NULL, NULL, "init --passphrase-file %s", pass_file), 0);
	snprintf(good, good_size, "%s", setup_password(s, "create", "p2"));
}

static void test_setup_password_lockout(void **state)
{
	struct kwt_server s = {0};
	char good[64];
	kw_client *c;

	(void)state;
	start_with_partition(&s, LOCKOUT, good, sizeof good);
	c = client_for(&s, "c", "p2");
	for (int i = 0; i < 3; i++)
		assert_int_equal(kw_enroll(c, "WRONG-PASSWORD", NULL), KW_ERR_AUTH);
	/* locked now: even the right password is refused, and it is not consumed */
	assert_int_equal(kw_enroll(c, good, NULL), KW_ERR_LOCKED_OUT);
	assert_non_null(strstr(kw_last_error(), "locked"));
	sleep(4);
	kwt_ok(kw_enroll(c, good, NULL));
	kw_client_free(c);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

/* Enrollment attempts for `n` partitions that do not exist, from this host. */
static void spray_made_up_names(struct kwt_server *s, int n)
{
	char name[64];

	for (int i = 0; i < n; i++) {
		kw_client *c;
		snprintf(name, sizeof name, "made-up-%05d", i);
		c = client_for(s, "spray", name);
		assert_int_equal(kw_enroll(c, "WRONG-PASSWORD", NULL), KW_ERR_AUTH);
		kw_client_free(c);
	}
}

/*
 * Issue #11 finding 6: 4,096 made-up partition names filled the lockout
 * table, after which wrong setup passwords for a real partition went
 * uncounted and the right one enrolled. Now made-up names make no entry
 * and the real partition still locks, also against its right password.
 */
static void test_lockout_survives_made_up_names(void **state)
{
	struct kwt_server s = {0};
	char good[64];
	kw_client *c;

	(void)state;
	start_with_partition(&s,
			     "[lockout]\nmax_failures = 3\nmax_failures_per_address = 1000000\nwindow = 600\n"
			     "duration = 600\n",
			     good, sizeof good);
	spray_made_up_names(&s, 4200);
	c = client_for(&s, "c", "p2");
	for (int i = 0; i < 3; i++)
		assert_int_equal(kw_enroll(c, "WRONG-PASSWORD", NULL), KW_ERR_AUTH);
	assert_int_equal(kw_enroll(c, good, NULL), KW_ERR_LOCKED_OUT);
	assert_non_null(strstr(kw_last_error(), "p2"));
	kw_client_free(c);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

/* One host spraying names is stopped by its address's own limit, for every partition. */
static void test_lockout_per_address(void **state)
{
	struct kwt_server s = {0};
	char good[64];
	kw_client *c;

	(void)state;
	start_with_partition(&s,
			     "[lockout]\nmax_failures = 3\nmax_failures_per_address = 5\nwindow = 600\n"
			     "duration = 600\n",
			     good, sizeof good);
	spray_made_up_names(&s, 5);
	c = client_for(&s, "c", "p2");
	assert_int_equal(kw_enroll(c, good, NULL), KW_ERR_LOCKED_OUT);
	assert_non_null(strstr(kw_last_error(), "enrollments from 127.0.0.1"));
	kw_client_free(c);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

/* The hex SHA-256 of the DER certificate in the PEM file path (a credential's fingerprint). */
static void cert_fingerprint(const char *path, char hex[65])
{
	FILE *f = fopen(path, "r");
	X509 *cert;
	unsigned char md[32];
	unsigned len = 0;

	assert_non_null(f);
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(cert);
	assert_int_equal(X509_digest(cert, EVP_sha256(), md, &len), 1);
	assert_int_equal(len, 32);
	for (unsigned i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	X509_free(cert);
}

static int count_of(const char *haystack, const char *needle)
{
	int n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/*
 * Issue #11, finding 10: keyward-admin client list|revoke. A revoked
 * credential is refused on its live connection at the next request and on
 * a new connection; the partition's other client and other partitions'
 * clients keep working.
 */
static void test_client_revoke(void **state)
{
	struct kwt_server s;
	kw_client *victim, *again, *sibling, *other;
	char conf[400], cert[400], fp[65], subject[200] = "", *out = NULL, *p;
	unsigned char buf[16];

	(void)state;
	victim = kwt_start_initialized(&s, NULL);
	other = kwt_new_partition_client(&s, "q");
	kwt_write_client_conf(&s, "p2", "p", conf, sizeof conf);
	kwt_ok(kw_client_new(conf, &sibling));
	kwt_ok(kw_enroll(sibling, setup_password(&s, "password", "p"), NULL));
	/* each has a live, authenticated connection */
	kwt_ok(kw_generate_random(victim, buf, sizeof buf));
	kwt_ok(kw_generate_random(sibling, buf, sizeof buf));
	kwt_ok(kw_generate_random(other, buf, sizeof buf));

	assert_int_equal(kwt_admin(&s, NULL, &out, "client list"), 0);
	assert_int_equal(count_of(out, " p "), 2);
	assert_int_equal(count_of(out, " q "), 1);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "client list --partition p --json"), 0);
	assert_int_equal(count_of(out, "\"fingerprint\""), 2);
	assert_int_equal(count_of(out, "\"revoked\": false"), 2);
	p = strstr(out, "\"subject\": \"");
	assert_non_null(p);
	sscanf(p + strlen("\"subject\": \""), "%199[^\"]", subject);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "client list --partition nosuch"), 1);
	free(out);

	/* the two clients of p share a subject: revoking by it is refused as ambiguous */
	assert_int_equal(kwt_admin(&s, NULL, &out, "client revoke '%s'", subject), 1);
	assert_non_null(strstr(out, "names 2 credentials"));
	free(out);
	snprintf(cert, sizeof cert, "%s/p.crt", s.dir);
	cert_fingerprint(cert, fp);
	assert_int_equal(kwt_admin(&s, NULL, &out, "client revoke deadbeefdeadbeef"), 1);
	assert_non_null(strstr(out, "no credential"));
	free(out);
	fp[16] = '\0';
	assert_int_equal(kwt_admin(&s, NULL, &out, "client revoke %s", fp), 0);
	assert_non_null(strstr(out, "Revoked client"));
	free(out);

	/* the live connection: refused at its next request */
	assert_int_equal(kw_generate_random(victim, buf, sizeof buf), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "revoked"));
	/* a new connection: refused at Hello */
	snprintf(conf, sizeof conf, "%s/p.conf", s.dir);
	kwt_ok(kw_client_new(conf, &again));
	assert_int_equal(kw_generate_random(again, buf, sizeof buf), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "revoked"));
	/* everyone else goes on */
	kwt_ok(kw_generate_random(sibling, buf, sizeof buf));
	kwt_ok(kw_generate_random(other, buf, sizeof buf));

	assert_int_equal(kwt_admin(&s, NULL, &out, "client list --json"), 0);
	assert_int_equal(count_of(out, "\"revoked\": true"), 1);
	assert_int_equal(count_of(out, "\"revoked\": false"), 2);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify"), 0);
	free(out);
	kw_client_free(again);
	kw_client_free(victim);
	kw_client_free(sibling);
	kw_client_free(other);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

static void test_shamir(void **state)
{
	struct kwt_server s = {0};
	char *out = NULL, shares[3][256], input[1024];
	kw_client *c;
	kw_object *priv, *pub;

	(void)state;
	kwt_start_config(&s, NULL);
	/* as users type it: `--shares 3`, not only `--shares=3` (its argument is optional for unlock) */
	assert_int_equal(kwt_admin(&s, NULL, &out, "init --shares 3 --threshold 2"), 0);
	for (int i = 0; i < 3; i++) {
		char tag[16], *p;
		snprintf(tag, sizeof tag, "share %d: ", i + 1);
		p = strstr(out, tag);
		assert_non_null(p);
		sscanf(p + strlen(tag), "%255s", shares[i]);
	}
	free(out);
	c = client_for(&s, "c", "p");
	kwt_ok(kw_enroll(c, setup_password(&s, "create", "p"), NULL));
	kwt_ok(kw_generate_key(c, OWNER, "k", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));

	kwt_stop(&s);
	kwt_start_config(&s, NULL);
	/* one share is not enough; a damaged share fails; shares 1 and 3 unlock */
	snprintf(input, sizeof input, "%s\n", shares[0]);
	assert_int_equal(kwt_admin(&s, input, &out, "unlock --shares"), 1);
	free(out);
	/* damaged: its last two hex digits changed (to 00 when they were ff, else the change is none) */
	snprintf(input, sizeof input, "%s\n%.*s%s\n", shares[0], (int)strlen(shares[2]) - 2, shares[2],
		 strcmp(shares[2] + strlen(shares[2]) - 2, "ff") == 0 ? "00" : "ff");
	assert_int_equal(kwt_admin(&s, input, &out, "unlock --shares"), 1);
	free(out);
	snprintf(input, sizeof input, "%s\n%s\n", shares[0], shares[2]);
	assert_int_equal(kwt_admin(&s, input, &out, "unlock --shares"), 0);
	free(out);
	size_t len;
	const unsigned char *spki = kw_object_public_key(pub, &len);
	sign_ok(c, kw_object_id(priv), spki, len);
	kw_object_free(priv);
	kw_object_free(pub);
	kw_client_free(c);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

static void test_audit_tamper_detected(void **state)
{
	struct kwt_server s = {0};
	char db[300], *out = NULL;
	sqlite3 *sql;
	kw_client *c;
	kw_object *priv, *pub;

	(void)state;
	kwt_start_dev(&s);
	kwt_ok(kw_client_new(s.conf, &c));
	kwt_ok(kw_generate_key(c, OWNER, "audited", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify"), 0);
	free(out);
	/* someone edits a record behind keywardd's back */
	snprintf(db, sizeof db, "%s/keystore.db", s.dir);
	assert_int_equal(sqlite3_open(db, &sql), SQLITE_OK);
	sqlite3_busy_timeout(sql, 5000);
	assert_int_equal(sqlite3_exec(sql, "UPDATE audit SET detail = 'nothing happened' WHERE event = 'key.generate'",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_changes(sql), 1);
	sqlite3_close(sql);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify"), 1);
	assert_non_null(strstr(out, "BROKEN"));
	free(out);
	kw_client_free(c);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

/* The "head: SEQ:HASH" line of `keyward-admin audit verify`. */
static void verify_head(struct kwt_server *s, const char *args, int want_rc, const char *want, char *head,
			size_t size)
{
	char *out = NULL, *line;
	int rc = kwt_admin(s, NULL, &out, "audit verify%s%s", args ? " " : "", args ? args : "");

	if (rc != want_rc || (want && !strstr(out, want)))
		fail_msg("audit verify %s: exit %d, expected %d with \"%s\": %s", args ? args : "", rc, want_rc,
			 want ? want : "", out);
	line = strstr(out, "head: ");
	if (!line)
		fail_msg("audit verify prints no head: %s", out);
	if (head)
		snprintf(head, size, "%.*s", (int)strcspn(line + 6, "\n"), line + 6);
	free(out);
}

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

/*
 * A consistent forgery, as someone with write access to the store would
 * make it: record `from` gets another detail (any bytes), and the hashes of it and of
 * every record after it, and the head in meta, are recomputed.
 */
static void forge_tail(const char *db, long long from, const char *detail)
{
	sqlite3 *sql;
	sqlite3_stmt *st, *up;
	unsigned char prev[32], h[32], buf[8192];

	assert_int_equal(sqlite3_open(db, &sql), SQLITE_OK);
	sqlite3_busy_timeout(sql, 5000);
	assert_int_equal(sqlite3_exec(sql, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(sql, "UPDATE audit SET detail = ? WHERE seq = ?", -1, &up, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(up, 1, detail, -1, SQLITE_STATIC);
	sqlite3_bind_int64(up, 2, from);
	assert_int_equal(sqlite3_step(up), SQLITE_DONE);
	sqlite3_finalize(up);
	assert_int_equal(sqlite3_prepare_v2(sql,
					    "SELECT seq, time, partition, actor, event, detail, prev_hash FROM audit"
					    " WHERE seq >= ? ORDER BY seq",
					    -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(sql, "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", -1, &up,
					    NULL),
			 SQLITE_OK);
	sqlite3_bind_int64(st, 1, from);
	for (bool first = true; sqlite3_step(st) == SQLITE_ROW; first = false) {
		size_t len = 0;

		if (first)
			memcpy(prev, sqlite3_column_blob(st, 6), 32);
		memcpy(buf, prev, 32);
		len = 32;
		buf[len++] = 1;
		put_be(buf + len, (uint64_t)sqlite3_column_int64(st, 0), 8);
		put_be(buf + len + 8, (uint64_t)sqlite3_column_int64(st, 1), 8);
		len += 16;
		for (int col = 2; col <= 5; col++) {
			size_t n = (size_t)sqlite3_column_bytes(st, col);
			assert_true(len + 4 + n <= sizeof buf);
			put_be(buf + len, n, 4);
			memcpy(buf + len + 4, sqlite3_column_text(st, col), n);
			len += 4 + n;
		}
		SHA256(buf, len, h);
		sqlite3_bind_blob(up, 1, prev, 32, SQLITE_TRANSIENT);
		sqlite3_bind_blob(up, 2, h, 32, SQLITE_TRANSIENT);
		sqlite3_bind_int64(up, 3, sqlite3_column_int64(st, 0));
		assert_int_equal(sqlite3_step(up), SQLITE_DONE);
		sqlite3_reset(up);
		memcpy(prev, h, 32);
	}
	sqlite3_finalize(st);
	sqlite3_finalize(up);
	assert_int_equal(sqlite3_prepare_v2(sql, "UPDATE meta SET value = ? WHERE key = 'audit.hash'", -1, &up, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(up, 1, prev, 32, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(up), SQLITE_DONE);
	assert_int_equal(sqlite3_changes(sql), 1);
	sqlite3_finalize(up);
	assert_int_equal(sqlite3_exec(sql, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(sql);
}

/* Issue #11, finding 10: a rewritten tail is caught against a head saved outside the store. */
static void test_audit_head_anchor(void **state)
{
	struct kwt_server s = {0};
	char tmp[] = "/tmp/kwhead.XXXXXX", extra[400], db[300], saved[120], head[120], last[120], *file;
	kw_client *c;
	kw_object *priv, *pub;
	long long saved_seq;

	(void)state;
	assert_non_null(mkdtemp(tmp));
	snprintf(extra, sizeof extra, "[audit]\nhead_file = %s/head\n", tmp);
	c = kwt_start_initialized(&s, extra);
	kwt_ok(kw_generate_key(c, OWNER, "before", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	verify_head(&s, NULL, 0, "intact", saved, sizeof saved);
	saved_seq = strtoll(saved, NULL, 10);
	assert_true(saved_seq > 1);

	/* keywardd appended the same head to head_file */
	snprintf(head, sizeof head, "%s/head", tmp);
	file = kwt_read_file(head, NULL);
	assert_non_null(file);
	*strrchr(file, '\n') = '\0';
	snprintf(last, sizeof last, "%s", strrchr(file, '\n') ? strrchr(file, '\n') + 1 : file);
	assert_string_equal(last, saved);
	free(file);

	/* the log grows: the saved head is an ancestor of the new one */
	kwt_ok(kw_generate_key(c, OWNER, "after", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	snprintf(extra, sizeof extra, "--expect-head %s", saved);
	verify_head(&s, extra, 0, "saved head", head, sizeof head);
	assert_true(strtoll(head, NULL, 10) > saved_seq);
	verify_head(&s, "--expect-head 12x", 2, "not SEQ:HASH", NULL, 0);

	/* a consistent rewrite from the saved head on passes the chain check, not the anchor */
	kw_client_free(c);
	kwt_stop(&s);
	snprintf(db, sizeof db, "%s/keystore.db", s.dir);
	forge_tail(db, saved_seq, "nothing happened");
	kwt_start_config(&s, "");
	verify_head(&s, NULL, 0, "intact", NULL, 0);
	verify_head(&s, extra, 1, "differs from the saved head", NULL, 0);
	kwt_stop(&s);
	kwt_cleanup(&s);
	snprintf(head, sizeof head, "%s/head", tmp);
	unlink(head);
	rmdir(tmp);
}

/*
 * Size policy: past [audit] max_records the oldest records move to
 * DIR/audit-archive (the newest half stays); `audit archive --keep N` does
 * it on demand; `audit verify --archives` checks archives and store as one
 * chain and catches an edited or a missing archive.
 */
static void test_audit_archive(void **state)
{
	struct kwt_server s = {0};
	char dir[300], cmd[2000], name[32], *out = NULL;
	kw_client *c;
	kw_object *priv, *pub;

	(void)state;
	c = kwt_start_initialized(&s, "[audit]\nmax_records = 20\n");
	for (int i = 0; i < 25; i++) {
		snprintf(name, sizeof name, "k%d", i);
		kwt_ok(kw_generate_key(c, OWNER, name, KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
		kw_object_free(priv);
		kw_object_free(pub);
	}
	snprintf(dir, sizeof dir, "%s/audit-archive", s.dir);
	snprintf(cmd, sizeof cmd, "--archives %s", dir);
	/* the flush before the check applied the policy */
	verify_head(&s, cmd, 0, "audit archives intact", NULL, 0);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify"), 0);
	assert_non_null(strstr(out, "archived up to: "));
	if (strtoll(strstr(out, "intact: ") + 8, NULL, 10) > 20)
		fail_msg("more than max_records = 20 records left in the store: %s", out);
	free(out);

	/* on demand */
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit archive --keep 2"), 0);
	assert_non_null(strstr(out, "audit records archived to"));
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit archive --keep 1000"), 0);
	assert_non_null(strstr(out, "nothing to archive"));
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit archive --keep lots"), 2);
	free(out);
	verify_head(&s, cmd, 0, "audit archives intact", NULL, 0);

	/* an archived record edited */
	snprintf(cmd, sizeof cmd, "cp -r %s %s.orig && sed -i '3s/ x[0-9a-f]*$/ x6e6f7468696e67/' %s/$(ls %s | head -1)",
		 dir, dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "--archives %s", dir);
	verify_head(&s, cmd, 1, "audit archives BROKEN at record 3", NULL, 0);
	/* the newest archive missing */
	snprintf(cmd, sizeof cmd, "rm -r %s && mv %s.orig %s && rm %s/$(ls %s | tail -1)", dir, dir, dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "--archives %s", dir);
	verify_head(&s, cmd, 1, "do not lead to the store", NULL, 0);
	kwt_stop_client(&s, c);
}

/* keyward-admin ARGS with standard output alone in *out and standard error in DIR/err.txt. */
static int admin_stdout(struct kwt_server *s, char **out, const char *args)
{
	return kwt_run(s->dir, out, "KEYWARD_ADMIN_SOCKET='%s' '%s' %s 2>'%s/err.txt'", s->admin_socket,
		       KEYWARD_ADMIN_PATH, args, s->dir);
}

/* The "head: SEQ:HASH" text of a command's output, into head. */
static void head_of(const char *out, char *head, size_t size)
{
	const char *line = strstr(out, "head: ");

	if (!line)
		fail_msg("no head in: %s", out);
	snprintf(head, size, "%.*s", (int)strcspn(line + 6, "\n"), line + 6);
}

/*
 * audit list / show / export: the records as text and as JSON (standard
 * output holds the JSON alone), in pages of at most 1000 that the tool
 * follows, one record in full; an export (JSON lines, mode 0600) that
 * audit verify --file re-checks without keywardd, catching an edited or a
 * missing line; bytes that are not UTF-8 and escape sequences in a field.
 */
static void test_audit_read(void **state)
{
	struct kwt_server s = {0};
	char name[32], cmd[2000], file[400], db[400], head[120], vhead[120], *out = NULL, *p;
	kw_client *c;
	kw_object *priv, *pub;
	json_t *j;
	json_error_t err;
	struct stat st;
	size_t n, lines;

	(void)state;
	c = kwt_start_initialized(&s, "");
	for (int i = 0; i < 1100; i++) {
		snprintf(name, sizeof name, "r%d", i);
		kwt_ok(kw_generate_key(c, OWNER, name, KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
		kw_object_free(priv);
		kw_object_free(pub);
	}
	verify_head(&s, NULL, 0, "intact", vhead, sizeof vhead);
	n = (size_t)strtoull(vhead, NULL, 10);
	assert_true(n > 1100);

	/* text: a header and a line a record */
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit list --limit 5"), 0);
	assert_non_null(strstr(out, "SEQ"));
	assert_non_null(strstr(out, "hsm.init"));
	lines = 0;
	for (p = out; (p = strchr(p, '\n')); p++)
		lines++;
	assert_int_equal(lines, 6);
	free(out);

	/* JSON after a seq, limited */
	assert_int_equal(admin_stdout(&s, &out, "audit list --since 3 --limit 2 --json"), 0);
	j = json_loads(out, 0, &err);
	if (!j)
		fail_msg("audit list --json is not JSON (%s): %s", err.text, out);
	assert_int_equal(json_array_size(j), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 0), "seq")), 4);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 1), "seq")), 5);
	assert_int_equal(strlen(json_string_value(json_object_get(json_array_get(j, 1), "hash"))), 64);
	assert_non_null(json_string_value(json_object_get(json_array_get(j, 1), "event")));
	json_decref(j);
	free(out);

	/* the whole log, across pages of 1000 */
	assert_int_equal(admin_stdout(&s, &out, "audit list --json"), 0);
	j = json_loads(out, 0, &err);
	if (!j)
		fail_msg("audit list --json is not JSON (%s)", err.text);
	assert_true(json_array_size(j) >= n); /* the list itself may add key-use records */
	for (size_t i = 0; i < json_array_size(j); i++)
		assert_int_equal(json_integer_value(json_object_get(json_array_get(j, i), "seq")), (json_int_t)i + 1);
	json_decref(j);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit list --limit x"), 2);
	free(out);

	/* one record in full */
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit show 1"), 0);
	if (!strstr(out, "seq:       1\n") || !strstr(out, "\nevent:     ") || !strstr(out, "\nhash:      "))
		fail_msg("audit show 1: %s", out);
	assert_non_null(strstr(out, "prev hash: 0000000000000000"));
	free(out);
	assert_int_equal(admin_stdout(&s, &out, "audit show 2 --json"), 0);
	j = json_loads(out, 0, &err);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "seq")), 2);
	json_decref(j);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit show 99999999"), 1);
	assert_non_null(strstr(out, "no record 99999999"));
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit show"), 2);
	free(out);

	/* an export, re-checked offline: its head is the one keywardd's verify prints */
	snprintf(file, sizeof file, "%s/audit.jsonl", s.dir);
	snprintf(cmd, sizeof cmd, "audit export %s", file);
	assert_int_equal(kwt_admin(&s, NULL, &out, "%s", cmd), 0);
	assert_non_null(strstr(out, "Exported "));
	head_of(out, head, sizeof head);
	free(out);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	verify_head(&s, NULL, 0, "intact", vhead, sizeof vhead);
	assert_true(strtoull(head, NULL, 10) <= strtoull(vhead, NULL, 10));
	snprintf(cmd, sizeof cmd, "--file %s", file);
	verify_head(&s, cmd, 0, "audit export intact", vhead, sizeof vhead);
	assert_string_equal(vhead, head);
	snprintf(cmd, sizeof cmd, "--file %s --expect-head %s", file, head);
	verify_head(&s, cmd, 0, "saved head", NULL, 0);
	/* every line is one JSON object */
	out = kwt_read_file(file, NULL);
	lines = 0;
	for (p = out; *p; p = strchr(p, '\n') + 1) {
		char *nl = strchr(p, '\n');
		assert_non_null(nl);
		*nl = '\0';
		j = json_loads(p, 0, &err);
		if (!json_is_object(j))
			fail_msg("export line %zu is not a JSON object: %s", lines + 1, p);
		json_decref(j);
		*nl = '\n';
		lines++;
	}
	assert_int_equal(lines, strtoull(head, NULL, 10));
	free(out);

	/* an edited line and a missing one are caught, without keywardd */
	kwt_stop(&s);
	snprintf(cmd, sizeof cmd, "cp %s %s.orig && sed -i '3s/\"time\":[0-9]*/\"time\":1/' %s", file, file, file);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "--file %s", file);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify %s", cmd), 1);
	if (!strstr(out, "record 3: hash mismatch"))
		fail_msg("edited export: %s", out);
	free(out);
	snprintf(cmd, sizeof cmd, "sed '5d' %s.orig > %s", file, file);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify --file %s", file), 1);
	assert_non_null(strstr(out, "record 6 where 5 belongs"));
	free(out);
	/* a line longer than any record can be is refused, not read into memory whole */
	snprintf(cmd, sizeof cmd, "head -c 3000000 /dev/zero | tr '\\0' x > %s", file);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify --file %s", file), 1);
	if (!strstr(out, "line 1: longer than an exported record can be"))
		fail_msg("a 3 MB line: %s", out);
	free(out);

	/* bytes that are not UTF-8, and a terminal escape, in a (consistently rehashed) record */
	snprintf(db, sizeof db, "%s/keystore.db", s.dir);
	forge_tail(db, 2, "bad \xff byte \x1b[31m red");
	kwt_start_config(&s, ""); /* locked: the log reads without the master key */
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit show 2"), 0);
	assert_non_null(strstr(out, "bad \xff byte ?[31m red"));
	free(out);
	assert_int_equal(admin_stdout(&s, &out, "audit list --since 1 --limit 1 --json"), 0);
	j = json_loads(out, 0, &err);
	if (!j)
		fail_msg("audit list --json is not JSON (%s): %s", err.text, out);
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "detail_hex")),
			    "62616420ff2062797465201b5b33316d20726564");
	json_decref(j);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit export %s", file), 0);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify --file %s", file), 0);
	assert_non_null(strstr(out, "audit export intact"));
	free(out);

	/* archived records: the export starts after the base and still checks; show points to the archive */
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit archive --keep 10"), 0);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit show 1"), 1);
	assert_non_null(strstr(out, "is archived"));
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit export %s", file), 0);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify --file %s", file), 0);
	assert_non_null(strstr(out, "audit export intact: 1"));
	free(out);
	kw_client_free(c);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

/* The audit records of event in the store of s (read with SQLite, beside keywardd). */
static int audit_count(struct kwt_server *s, const char *event, const char *detail_like)
{
	char db[400];
	sqlite3 *sql;
	sqlite3_stmt *st;
	int n;

	snprintf(db, sizeof db, "%s/keystore.db", s->dir);
	assert_int_equal(sqlite3_open_v2(db, &sql, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(sql, "SELECT count(*) FROM audit WHERE event = ? AND detail LIKE ?", -1, &st,
					    NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, event, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, detail_like, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(sql);
	return n;
}

/*
 * Issue 15: partition delete asks first (the name typed on a terminal, else
 * --yes), deletes the partition with its keys and credentials in one go,
 * refuses its clients from then on (open connections too), leaves the
 * other partitions alone, and is audited.
 */
static void test_partition_delete(void **state)
{
	struct kwt_server s;
	kw_client *victim, *other, *again;
	kw_object *priv = NULL, *pub = NULL;
	kw_object_list *l = NULL;
	char conf[400], *out = NULL;
	unsigned char buf[16];

	(void)state;
	victim = kwt_start_initialized(&s, NULL);
	other = kwt_new_partition_client(&s, "q");
	kwt_ok(kw_generate_key(victim, OWNER, "doomed", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	kwt_ok(kw_generate_key(other, OWNER, "kept", KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
	kw_object_free(priv);
	kw_object_free(pub);
	kwt_ok(kw_generate_random(victim, buf, sizeof buf));

	/* no terminal, no --yes: refused, nothing deleted */
	assert_int_equal(kwt_admin(&s, "p\n", &out, "partition delete p"), 2);
	assert_non_null(strstr(out, "add --yes"));
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "partition list"), 0);
	assert_non_null(strstr(out, "p    "));
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "partition delete nosuch --yes"), 1);
	assert_non_null(strstr(out, "no partition \"nosuch\""));
	free(out);
	/* on a terminal, a wrong name typed: not confirmed */
	assert_int_equal(kwt_run(s.dir, &out,
				 "printf 'q\\n' | script -qec \"KEYWARD_ADMIN_SOCKET='%s' '%s' partition delete p\" "
				 "/dev/null",
				 s.admin_socket, KEYWARD_ADMIN_PATH),
			 1);
	assert_non_null(strstr(out, "Delete partition \"p\" with its 2 objects"));
	assert_non_null(strstr(out, "not confirmed"));
	free(out);
	kwt_ok(kw_generate_random(victim, buf, sizeof buf));

	/* the name typed on a terminal confirms */
	assert_int_equal(kwt_run(s.dir, &out,
				 "printf 'p\\n' | script -qec \"KEYWARD_ADMIN_SOCKET='%s' '%s' partition delete p\" "
				 "/dev/null",
				 s.admin_socket, KEYWARD_ADMIN_PATH),
			 0);
	assert_non_null(strstr(out, "Deleted partition \"p\" with 2 objects and 1 client credentials"));
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "partition list"), 0);
	assert_null(strstr(out, "\np "));
	assert_non_null(strstr(out, "\nq "));
	free(out);
	/* its open connection is refused at the next request, a new one at Hello */
	assert_int_equal(kw_generate_random(victim, buf, sizeof buf), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "partition deleted"));
	snprintf(conf, sizeof conf, "%s/p.conf", s.dir);
	kwt_ok(kw_client_new(conf, &again));
	assert_int_equal(kw_generate_random(again, buf, sizeof buf), KW_ERR_AUTH);
	/* the other partition keeps its key */
	kwt_ok(kw_list_objects(other, OWNER, "kept", &l));
	assert_int_equal(kw_object_list_count(l), 2);
	kw_object_list_free(l);

	/* --yes, and the record in the audit chain */
	assert_int_equal(kwt_admin(&s, NULL, &out, "partition delete q --yes"), 0);
	assert_non_null(strstr(out, "Deleted partition \"q\" with 2 objects and 1 client credentials"));
	free(out);
	assert_int_equal(audit_count(&s, "partition.delete", "partition \"p\" deleted with 2 objects and 1 client%"), 1);
	assert_int_equal(audit_count(&s, "partition.delete", "partition \"q\"%"), 1);
	assert_int_equal(kwt_admin(&s, NULL, &out, "audit verify"), 0);
	free(out);
	/* a deleted partition's name can be used again */
	assert_int_equal(kwt_admin(&s, NULL, &out, "partition create p"), 0);
	free(out);
	kw_client_free(again);
	kw_client_free(victim);
	kw_client_free(other);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

/* Issue 15: a second setup password while the first is unused says that it cancels the first. */
static void test_second_password_says_it_cancels(void **state)
{
	struct kwt_server s;
	kw_client *c, *first;
	char first_pw[64], *out = NULL;

	(void)state;
	c = kwt_start_initialized(&s, NULL);
	snprintf(first_pw, sizeof first_pw, "%s", setup_password(&s, "create", "r"));
	assert_int_equal(kwt_admin(&s, NULL, &out, "partition password r"), 0);
	assert_non_null(strstr(out, "was not used yet: it is cancelled"));
	free(out);
	assert_int_equal(audit_count(&s, "partition.password", "%(the pending one cancelled)"), 1);
	/* and so it is */
	first = client_for(&s, "r1", "r");
	assert_int_equal(kw_enroll(first, first_pw, NULL), KW_ERR_AUTH);
	kw_client_free(first);
	/* after a registration, a new password cancels nothing and says nothing of it */
	first = client_for(&s, "r2", "r");
	kwt_ok(kw_enroll(first, setup_password(&s, "password", "r"), NULL));
	kw_client_free(first);
	assert_int_equal(kwt_admin(&s, NULL, &out, "partition password r"), 0);
	assert_null(strstr(out, "cancelled"));
	free(out);
	kw_client_free(c);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

/* Issue 15: status --json is one JSON document and nothing else; the store's directory is made, mode 0700. */
static void test_status_json_and_store_dir(void **state)
{
	struct kwt_server s;
	char extra[400], path[400], *out = NULL;
	json_error_t jerr;
	json_t *j;
	struct stat st;

	(void)state;
	memset(&s, 0, sizeof s);
	snprintf(s.dir, sizeof s.dir, "/tmp/kwtest.XXXXXX");
	assert_non_null(mkdtemp(s.dir));
	snprintf(s.admin_socket, sizeof s.admin_socket, "%s/admin.sock", s.dir);
	snprintf(s.log, sizeof s.log, "%s/keywardd.log", s.dir);
	s.port = kwt_free_port();
	snprintf(extra, sizeof extra, "store = sqlite:%s/state/keyward/keystore.db\n", s.dir);
	kwt_start_config(&s, extra);
	snprintf(path, sizeof path, "%s/state/keyward", s.dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(path, sizeof path, "%s/state", s.dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	assert_int_equal(kwt_admin(&s, NULL, &out, "status --json"), 0);
	j = json_loads(out, 0, &jerr);
	if (!j)
		fail_msg("status --json is not (only) JSON: %s: %s", jerr.text, out);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "not initialized");
	assert_true(json_is_false(json_object_get(j, "initialized")));
	assert_true(json_is_null(json_object_get(j, "unlock_method")));
	assert_int_equal(json_integer_value(json_object_get(j, "protocol")), KW_PROTOCOL_VERSION);
	assert_true(json_is_integer(json_object_get(j, "uptime")));
	json_decref(j);
	free(out);
	snprintf(path, sizeof path, "%s/pass", s.dir);
	kwt_write_file(path, PASSPHRASE "\n");
	assert_int_equal(kwt_admin(&s, NULL, &out, "init --passphrase-file %s", path), 0);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "partition create web"), 0);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "status --json"), 0);
	j = json_loads(out, 0, &jerr);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "unlocked");
	assert_string_equal(json_string_value(json_object_get(j, "unlock_method")), "passphrase");
	assert_int_equal(json_integer_value(json_object_get(j, "partitions")), 1);
	json_decref(j);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "lock"), 0);
	free(out);
	assert_int_equal(kwt_admin(&s, NULL, &out, "status --json"), 0);
	j = json_loads(out, 0, &jerr);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "locked");
	json_decref(j);
	free(out);
	/* a passphrase file others may read is refused, naming the chmod */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(kwt_admin(&s, NULL, &out, "unlock --passphrase-file %s", path), 2);
	assert_non_null(strstr(out, "mode 0644"));
	assert_non_null(strstr(out, "chmod 600"));
	free(out);
	kwt_stop(&s);
	kwt_cleanup(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_passphrase_life_cycle),
		cmocka_unit_test(test_setup_password_lockout),
		cmocka_unit_test(test_lockout_survives_made_up_names),
		cmocka_unit_test(test_lockout_per_address),
		cmocka_unit_test(test_client_revoke),
		cmocka_unit_test(test_shamir),
		cmocka_unit_test(test_audit_tamper_detected),
		cmocka_unit_test(test_audit_head_anchor),
		cmocka_unit_test(test_audit_archive),
		cmocka_unit_test(test_partition_delete),
		cmocka_unit_test(test_audit_read),
		cmocka_unit_test(test_second_password_says_it_cancels),
		cmocka_unit_test(test_status_json_and_store_dir),
	};
	return cmocka_run_group_tests_name("integration_admin", tests, NULL, NULL);
}
