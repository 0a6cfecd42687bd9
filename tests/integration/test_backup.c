/*
 * keyward-admin backup and restore between real keywardd processes:
 *
 *   A   the source, keys under two owners in partitions "p" and "q";
 *   B   the target: started from a copy of A's store taken right after
 *       init (so the same master key) and given a partition of its own
 *       first, so that "p" and "q" get other ids there (keys resealed);
 *   C   another HSM with its own master key: its backup is foreign to B.
 *
 * After the restore B lists the same objects, signs with every restored
 * key (checked against A's public keys), and a truncated, a damaged and a
 * foreign backup are each refused with the store file unchanged byte for
 * byte. The backup file is scanned for the private key material of every
 * key, unsealed from A's store with the keystore library and the passphrase.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "harness.h"
#include "keystore/keystore.h"
#include "tools/admin_client.h"

#define OWNER2 "S-1-5-21-9-8-7"
#define NKEYS 5

struct key {
	const char *partition, *owner, *name;
	uint64_t id;
	unsigned char spki[1024];
	size_t spki_len;
	enum kw_key_type type;
};

static struct kwt_server A, B, C;
static char backup_path[400];
static struct key keys[NKEYS] = {
	{"p", KWT_OWNER, "k1", 0, {0}, 0, KW_KEY_EC},	 {"p", OWNER2, "k2", 0, {0}, 0, KW_KEY_EC},
	{"p", KWT_OWNER, "x1", 0, {0}, 0, KW_KEY_RSA},	 /* extractable */
	{"p", KWT_OWNER, "aes1", 0, {0}, 0, KW_KEY_AES}, /* extractable */
	{"q", OWNER2, "k3", 0, {0}, 0, KW_KEY_EC},
};

static char *admin_ok(struct kwt_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *admin_ok(struct kwt_server *s, const char *fmt, ...)
{
	char args[1024], *out = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	if (kwt_admin(s, NULL, &out, "%s", args) != 0)
		fail_msg("keyward-admin %s: %s", args, out ? out : "");
	return out;
}

static void unlock(struct kwt_server *s)
{
	char pass[320];

	snprintf(pass, sizeof pass, "%s/passphrase", s->dir);
	kwt_write_file(pass, KWT_PASSPHRASE "\n");
	free(admin_ok(s, "unlock --passphrase-file %s", pass));
}

static void generate(kw_client *c, struct key *k)
{
	kw_object *priv = NULL, *pub = NULL;
	const unsigned char *der;
	size_t len = 0;

	switch (k->type) {
	case KW_KEY_EC:
		kwt_ok(kw_generate_key(c, k->owner, k->name, KW_KEY_EC, 0, "P-256", 0, 0, &priv, &pub));
		break;
	case KW_KEY_RSA:
		kwt_ok(kw_generate_key(c, k->owner, k->name, KW_KEY_RSA, 2048, NULL, KW_GEN_EXTRACTABLE, 0, &priv,
				       &pub));
		break;
	default:
		kwt_ok(kw_generate_key(c, k->owner, k->name, KW_KEY_AES, 256, NULL, KW_GEN_EXTRACTABLE, 0, &priv,
				       &pub));
		break;
	}
	k->id = kw_object_id(priv);
	if (pub) {
		der = kw_object_public_key(pub, &len);
		assert_non_null(der);
		assert_true(len <= sizeof k->spki);
		memcpy(k->spki, der, len);
		k->spki_len = len;
	}
	kw_object_free(priv);
	kw_object_free(pub);
}

static void copy_store(const struct kwt_server *from, const struct kwt_server *to)
{
	char *out = NULL;

	if (kwt_run(to->dir, &out,
		    "rm -f '%s'/keystore.db-wal '%s'/keystore.db-shm && cp '%s'/keystore.db '%s'/ && "
		    "if [ -e '%s'/keystore.db-wal ]; then cp '%s'/keystore.db-wal '%s'/; fi",
		    to->dir, to->dir, from->dir, to->dir, from->dir, from->dir, to->dir) != 0)
		fail_msg("copying the store: %s", out ? out : "");
	free(out);
}

static int setup(void **state)
{
	char pass[320], *out;
	kw_client *ap, *aq, *cc;

	(void)state;
	/* A, initialized; B starts from a copy of that store: the same master key, no partition */
	kwt_start_config(&A, NULL);
	snprintf(pass, sizeof pass, "%s/passphrase", A.dir);
	kwt_write_file(pass, KWT_PASSPHRASE "\n");
	free(admin_ok(&A, "init --passphrase-file %s", pass));
	kwt_stop(&A);
	kwt_start_config(&B, NULL);
	kwt_stop(&B);
	copy_store(&A, &B);
	kwt_start_config(&A, NULL);
	unlock(&A);
	kwt_start_config(&B, NULL);
	unlock(&B);
	/* B's own partition takes the id "p" has at A */
	free(admin_ok(&B, "partition create other"));

	cc = kwt_start_initialized(&C, NULL);
	kw_client_free(cc);

	ap = kwt_new_partition_client(&A, "p");
	aq = kwt_new_partition_client(&A, "q");
	for (int i = 0; i < NKEYS; i++)
		generate(strcmp(keys[i].partition, "p") == 0 ? ap : aq, &keys[i]);
	kw_client_free(ap);
	kw_client_free(aq);

	snprintf(backup_path, sizeof backup_path, "%s/hsm.backup", A.dir);
	out = admin_ok(&A, "backup %s", backup_path);
	/* p: three pairs and an AES key; q: one pair */
	if (!strstr(out, "2 partitions") || !strstr(out, "9 objects (5 sealed keys)"))
		fail_msg("backup: %s", out);
	free(out);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kwt_stop(&A);
	kwt_stop(&B);
	kwt_stop(&C);
	kwt_cleanup(&A);
	kwt_cleanup(&B);
	kwt_cleanup(&C);
	return 0;
}

static char *store_bytes(const struct kwt_server *s, size_t *len)
{
	char path[400], *db, *wal, *all;
	size_t db_len = 0, wal_len = 0;

	snprintf(path, sizeof path, "%s/keystore.db", s->dir);
	db = kwt_read_file(path, &db_len);
	assert_non_null(db);
	snprintf(path, sizeof path, "%s/keystore.db-wal", s->dir);
	wal = kwt_read_file(path, &wal_len);
	all = malloc(db_len + wal_len + 1);
	assert_non_null(all);
	memcpy(all, db, db_len);
	if (wal)
		memcpy(all + db_len, wal, wal_len);
	*len = db_len + wal_len;
	free(db);
	free(wal);
	return all;
}

/* restore FILE into B is refused with `says` and B's store files do not change. */
static void refused(const char *file, const char *says)
{
	char *before, *after, *out = NULL, *head0, *head1;
	size_t n0, n1;

	head0 = admin_ok(&B, "audit verify"); /* also writes what keywardd had counted */
	before = store_bytes(&B, &n0);
	assert_int_equal(kwt_admin(&B, NULL, &out, "restore %s", file), 1);
	if (!strstr(out, says) || !strstr(out, "nothing was restored"))
		fail_msg("restore %s: expected \"%s\": %s", file, says, out);
	after = store_bytes(&B, &n1);
	assert_int_equal(n0, n1);
	assert_memory_equal(before, after, n0);
	head1 = admin_ok(&B, "audit verify");
	assert_string_equal(head0, head1);
	free(before);
	free(after);
	free(out);
	free(head0);
	free(head1);
}

static void write_bytes(const char *path, const char *bytes, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(bytes, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void same_listing(kw_client *a, kw_client *b)
{
	kw_object_list *la = NULL, *lb = NULL;

	kwt_ok(kw_list_objects(a, NULL, NULL, &la));
	kwt_ok(kw_list_objects(b, NULL, NULL, &lb));
	assert_int_equal(kw_object_list_count(la), kw_object_list_count(lb));
	for (size_t i = 0; i < kw_object_list_count(la); i++) {
		const kw_object *x = kw_object_list_get(la, i), *y = kw_object_list_get(lb, i);
		const unsigned char *px, *py;
		size_t nx = 0, ny = 0;

		assert_int_equal(kw_object_id(x), kw_object_id(y));
		assert_string_equal(kw_object_owner(x), kw_object_owner(y));
		assert_string_equal(kw_object_name(x), kw_object_name(y));
		assert_int_equal(kw_object_class(x), kw_object_class(y));
		assert_int_equal(kw_object_extractable(x), kw_object_extractable(y));
		assert_int_equal(kw_object_usages(x), kw_object_usages(y));
		px = kw_object_public_key(x, &nx);
		py = kw_object_public_key(y, &ny);
		assert_int_equal(nx, ny);
		if (nx)
			assert_memory_equal(px, py, nx);
	}
	kw_object_list_free(la);
	kw_object_list_free(lb);
}

static void signs_on_b(kw_client *c, const struct key *k)
{
	unsigned char digest[32], sig[512];
	size_t sig_len = sizeof sig;
	struct kw_mechanism m;

	memset(&m, 0, sizeof m);
	SHA256((const unsigned char *)k->name, strlen(k->name), digest);
	if (k->type == KW_KEY_EC) {
		m.mech = KW_MECH_ECDSA;
		kwt_ok(kw_sign(c, k->id, &m, digest, sizeof digest, sig, &sig_len));
		assert_true(kwt_ecdsa_verifies(k->spki, k->spki_len, digest, sizeof digest, sig, sig_len));
	} else {
		const unsigned char *p = k->spki;
		EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)k->spki_len);
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);

		m.mech = KW_MECH_RSA_PKCS1;
		m.hash = KW_HASH_SHA256;
		kwt_ok(kw_sign(c, k->id, &m, digest, sizeof digest, sig, &sig_len));
		assert_non_null(ctx);
		assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
		assert_int_equal(EVP_PKEY_verify(ctx, sig, sig_len, digest, sizeof digest), 1);
		EVP_PKEY_CTX_free(ctx);
		EVP_PKEY_free(pub);
	}
}

static void test_restore_lists_and_signs(void **state)
{
	char *out, file[400], *bytes;
	size_t len = 0;
	struct stat st;
	kw_client *ap, *aq, *bp, *bq;

	(void)state;
	assert_int_equal(stat(backup_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	out = admin_ok(&B, "restore %s", backup_path);
	if (!strstr(out, "9 objects added") || !strstr(out, "2 partitions created") || !strstr(out, "5 keys resealed"))
		fail_msg("restore: %s", out);
	free(out);

	/* refusals, each with B's store unchanged */
	bytes = kwt_read_file(backup_path, &len);
	assert_non_null(bytes);
	snprintf(file, sizeof file, "%s/truncated.backup", B.dir);
	write_bytes(file, bytes, len - 100);
	refused(file, "truncated");
	snprintf(file, sizeof file, "%s/flipped.backup", B.dir);
	bytes[len / 2] ^= 0x04;
	write_bytes(file, bytes, len);
	refused(file, "checksum");
	free(bytes);
	snprintf(file, sizeof file, "%s/foreign.backup", B.dir);
	free(admin_ok(&C, "backup %s", file));
	refused(file, "another master key");

	/* both audit chains hold; B's records the restore, A's the backup */
	out = admin_ok(&A, "audit verify");
	assert_non_null(strstr(out, "audit log intact"));
	free(out);
	out = admin_ok(&B, "audit verify");
	assert_non_null(strstr(out, "audit log intact"));
	free(out);

	/* the same objects, and every restored key signs at B */
	ap = kwt_another_client(&A, "p", "ap2");
	aq = kwt_another_client(&A, "q", "aq2");
	bp = kwt_another_client(&B, "p", "bp");
	bq = kwt_another_client(&B, "q", "bq");
	same_listing(ap, bp);
	same_listing(aq, bq);
	for (int i = 0; i < NKEYS; i++)
		if (keys[i].type != KW_KEY_AES)
			signs_on_b(strcmp(keys[i].partition, "p") == 0 ? bp : bq, &keys[i]);
	kw_client_free(ap);
	kw_client_free(aq);
	kw_client_free(bp);
	kw_client_free(bq);
}

/* keyward-admin ARGS against s on a terminal (script(1)); its output in *out. */
static int admin_tty(struct kwt_server *s, char **out, const char *args)
{
	return kwt_run(s->dir, out, "script -qec \"KEYWARD_ADMIN_SOCKET='%s' '%s' %s\" /dev/null </dev/null",
		       s->admin_socket, KEYWARD_ADMIN_PATH, args);
}

/*
 * backup and restore show bytes of the total on standard error when it is
 * a terminal; nothing when it is not, nothing with --quiet.
 */
static void test_progress_on_terminal(void **state)
{
	char file[400], args[600], *out = NULL;

	(void)state;
	snprintf(file, sizeof file, "%s/progress.backup", A.dir);
	snprintf(args, sizeof args, "backup %s", file);
	assert_int_equal(admin_tty(&A, &out, args), 0);
	if (!strstr(out, "backup: keywardd is taking the snapshot") || !strstr(out, "bytes (100%)") ||
	    !strstr(out, "Backup written to"))
		fail_msg("backup on a terminal: %s", out);
	free(out);
	snprintf(args, sizeof args, "restore %s", file);
	assert_int_equal(admin_tty(&B, &out, args), 0);
	if (!strstr(out, "restore: ") || !strstr(out, "bytes (100%)") || !strstr(out, "keywardd is checking") ||
	    !strstr(out, "Restored "))
		fail_msg("restore on a terminal: %s", out);
	free(out);

	/* --quiet, on a terminal still */
	snprintf(args, sizeof args, "--quiet backup %s", file);
	assert_int_equal(admin_tty(&A, &out, args), 0);
	if (strstr(out, "bytes (") || strstr(out, "snapshot...") || !strstr(out, "Backup written to"))
		fail_msg("backup --quiet: %s", out);
	free(out);
	snprintf(args, sizeof args, "restore %s -q", file);
	assert_int_equal(admin_tty(&B, &out, args), 0);
	if (strstr(out, "bytes (") || strstr(out, "checking and") || !strstr(out, "Restored "))
		fail_msg("restore -q: %s", out);
	free(out);

	/* no terminal: nothing of it */
	out = admin_ok(&A, "backup %s", file);
	if (strstr(out, "bytes (") || strstr(out, "snapshot..."))
		fail_msg("backup without a terminal: %s", out);
	free(out);
	out = admin_ok(&B, "restore %s", file);
	if (strstr(out, "bytes (") || strstr(out, "checking and"))
		fail_msg("restore without a terminal: %s", out);
	free(out);
}

/* ---- the transfer's limits, on a raw admin connection ---- */

/* One request on fd; the status as a kw_rv (the message in kw_last_error()). */
static kw_rv transfer(int fd, Keyward__Request *req)
{
	Keyward__Response *resp = NULL;
	kw_rv rv = kw_admin_call(fd, req, 30, &resp);

	if (resp)
		keyward__response__free_unpacked(resp, NULL);
	return rv;
}

static void expect(kw_rv got, kw_rv want, const char *says)
{
	if (got != want || !strstr(kw_last_error(), says))
		fail_msg("expected %s \"%s\", got %s: %s", kw_rv_name(want), says, kw_rv_name(got), kw_last_error());
}

static void test_transfer_limits(void **state)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__BackupRead br = KEYWARD__BACKUP_READ__INIT;
	Keyward__RestoreBegin rb = KEYWARD__RESTORE_BEGIN__INIT;
	Keyward__RestoreChunk rc = KEYWARD__RESTORE_CHUNK__INIT;
	Keyward__RestoreCommit rm = KEYWARD__RESTORE_COMMIT__INIT;
	static unsigned char junk[1001];
	char file[400], *out = NULL;
	int fd = -1, rc_exit = 1;

	(void)state;
	kwt_ok(kw_admin_connect(B.admin_socket, &fd));
	req.body_case = KEYWARD__REQUEST__BODY_BACKUP_READ;
	req.backup_read = &br;
	expect(transfer(fd, &req), KW_ERR_ARGUMENTS, "BackupBegin first");

	/* the size is announced first, and capped */
	req.body_case = KEYWARD__REQUEST__BODY_RESTORE_BEGIN;
	req.restore_begin = &rb;
	rb.size = 64u * 1024u * 1024u + 1;
	expect(transfer(fd, &req), KW_ERR_DATA_LEN, "64 MiB");
	rb.size = 1000;
	kwt_ok(transfer(fd, &req));
	req.body_case = KEYWARD__REQUEST__BODY_RESTORE_CHUNK;
	req.restore_chunk = &rc;
	rc.offset = 5;
	rc.data.data = junk;
	rc.data.len = 10;
	expect(transfer(fd, &req), KW_ERR_ARGUMENTS, "expected 0");
	rc.offset = 0;
	rc.data.len = sizeof junk; /* one byte more than announced */
	expect(transfer(fd, &req), KW_ERR_DATA_LEN, "past the announced 1000 bytes");

	/* one transfer at a time in the whole server */
	snprintf(file, sizeof file, "%s/busy.backup", B.dir);
	assert_int_equal(kwt_admin(&B, NULL, &out, "backup %s", file), 1);
	assert_non_null(strstr(out, "another backup or restore is in progress"));
	free(out);
	out = NULL;
	assert_int_equal(access(file, F_OK), -1);

	req.body_case = KEYWARD__REQUEST__BODY_RESTORE_COMMIT;
	req.restore_commit = &rm;
	expect(transfer(fd, &req), KW_ERR_DATA_LEN, "0 of the announced 1000 bytes arrived; nothing was restored");

	/* a transfer left unfinished is given up when its connection closes */
	req.body_case = KEYWARD__REQUEST__BODY_RESTORE_BEGIN;
	req.restore_begin = &rb; /* the body is a union */
	kwt_ok(transfer(fd, &req));
	close(fd);
	for (int waited = 0; waited < 5000 && rc_exit != 0; waited += 100) {
		free(out);
		out = NULL;
		rc_exit = kwt_admin(&B, NULL, &out, "backup %s", file);
		if (rc_exit)
			usleep(100 * 1000);
	}
	if (rc_exit)
		fail_msg("backup after the connection closed: %s", out);
	free(out);
	out = admin_ok(&B, "audit verify");
	assert_non_null(strstr(out, "audit log intact"));
	free(out);
}

/* ---- no key material in the backup ---- */

struct needle {
	char what[64];
	unsigned char *p;
	size_t n;
};

static struct needle needles[128];
static size_t n_needles;

static void add_needle(const char *what, const unsigned char *p, size_t n)
{
	struct needle *nd = &needles[n_needles++];

	assert_true(n_needles < sizeof needles / sizeof needles[0]);
	snprintf(nd->what, sizeof nd->what, "%s", what);
	nd->p = malloc(n);
	assert_non_null(nd->p);
	memcpy(nd->p, p, n);
	nd->n = n;
}

/* raw bytes, hex in both cases, base64 (PEM's body) */
static void add_forms(const char *what, const unsigned char *p, size_t n)
{
	char label[64], *hex = malloc(2 * n + 1);
	unsigned char *b64 = malloc(4 * ((n + 2) / 3) + 1);

	assert_non_null(hex);
	assert_non_null(b64);
	add_needle(what, p, n);
	for (size_t i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", p[i]);
	snprintf(label, sizeof label, "%s (hex)", what);
	add_needle(label, (unsigned char *)hex, 2 * n);
	for (size_t i = 0; i < 2 * n; i++)
		if (hex[i] >= 'a')
			hex[i] = (char)(hex[i] - 'a' + 'A');
	snprintf(label, sizeof label, "%s (HEX)", what);
	add_needle(label, (unsigned char *)hex, 2 * n);
	snprintf(label, sizeof label, "%s (base64)", what);
	add_needle(label, b64, (size_t)EVP_EncodeBlock(b64, p, (int)n));
	free(hex);
	free(b64);
}

static void add_bn(EVP_PKEY *pkey, const char *param, const char *key_name)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1024];
	char what[64];
	int n;

	assert_int_equal(EVP_PKEY_get_bn_param(pkey, param, &bn), 1);
	n = BN_bn2bin(bn, buf);
	assert_true(n > 16);
	snprintf(what, sizeof what, "%s %s", key_name, param);
	add_forms(what, buf, (size_t)n);
	BN_free(bn);
}

static void add_private_key(EVP_PKEY *pkey, const char *name)
{
	unsigned char *der = NULL;
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pkey);
	char what[64];
	int n;

	assert_non_null(p8);
	n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
	assert_true(n > 0);
	snprintf(what, sizeof what, "%s PKCS#8 DER", name);
	add_forms(what, der, (size_t)n);
	OPENSSL_free(der);
	PKCS8_PRIV_KEY_INFO_free(p8);
	der = NULL;
	n = i2d_PrivateKey(pkey, &der); /* RSAPrivateKey / ECPrivateKey */
	assert_true(n > 0);
	snprintf(what, sizeof what, "%s traditional DER", name);
	add_forms(what, der, (size_t)n);
	OPENSSL_free(der);
	if (EVP_PKEY_is_a(pkey, "RSA")) {
		add_bn(pkey, OSSL_PKEY_PARAM_RSA_D, name);
		add_bn(pkey, OSSL_PKEY_PARAM_RSA_FACTOR1, name);
		add_bn(pkey, OSSL_PKEY_PARAM_RSA_FACTOR2, name);
		add_bn(pkey, OSSL_PKEY_PARAM_RSA_EXPONENT1, name);
		add_bn(pkey, OSSL_PKEY_PARAM_RSA_EXPONENT2, name);
		add_bn(pkey, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, name);
	} else {
		add_bn(pkey, OSSL_PKEY_PARAM_PRIV_KEY, name);
	}
}

static const struct needle *find_needle(const unsigned char *hay, size_t n)
{
	for (size_t i = 0; i < n_needles; i++)
		if (memmem(hay, n, needles[i].p, needles[i].n))
			return &needles[i];
	return NULL;
}

static void test_backup_holds_no_key_material(void **state)
{
	struct kw_keystore *ks = NULL;
	char path[400], *file, *log;
	size_t len = 0, log_len = 0;
	const struct needle *hit;

	(void)state;
	/* the keys of A, unsealed from its store as keywardd does (A stopped, so the file is at rest) */
	kwt_stop(&A);
	snprintf(path, sizeof path, "%s/keystore.db", A.dir);
	kwt_ok(kw_keystore_open(path, 0, &ks));
	kwt_ok(kw_keystore_unlock_passphrase(ks, KWT_PASSPHRASE));
	for (int i = 0; i < NKEYS; i++) {
		struct kw_partition_info part;

		kwt_ok(kw_keystore_partition_get(ks, keys[i].partition, &part));
		if (keys[i].type == KW_KEY_AES) {
			unsigned char *key = NULL;
			size_t key_len = 0;
			kwt_ok(kw_keystore_export_key(ks, part.id, keys[i].id, &key, &key_len, NULL));
			add_forms(keys[i].name, key, key_len);
			free(key);
		} else {
			EVP_PKEY *pkey = NULL;
			kwt_ok(kw_keystore_load_private(ks, part.id, keys[i].id, &pkey));
			add_private_key(pkey, keys[i].name);
			EVP_PKEY_free(pkey);
		}
	}
	kw_keystore_free(ks);
	assert_true(n_needles > 40);

	/* the scan finds what is there: the material itself, and its hex in text */
	hit = find_needle(needles[0].p, needles[0].n);
	assert_non_null(hit);
	hit = find_needle(needles[1].p, needles[1].n);
	assert_non_null(hit);

	file = kwt_read_file(backup_path, &len);
	assert_non_null(file);
	if ((hit = find_needle((unsigned char *)file, len)))
		fail_msg("the backup holds %s", hit->what);
	free(file);
	/* nor do the daemons' logs */
	log = kwt_read_file(A.log, &log_len);
	if (log && (hit = find_needle((unsigned char *)log, log_len)))
		fail_msg("A's log holds %s", hit->what);
	free(log);
	log = kwt_read_file(B.log, &log_len);
	if (log && (hit = find_needle((unsigned char *)log, log_len)))
		fail_msg("B's log holds %s", hit->what);
	free(log);
	for (size_t i = 0; i < n_needles; i++)
		free(needles[i].p);
	n_needles = 0;
	kwt_start_config(&A, NULL); /* teardown stops it */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restore_lists_and_signs),
		cmocka_unit_test(test_progress_on_terminal),
		cmocka_unit_test(test_transfer_limits),
		cmocka_unit_test(test_backup_holds_no_key_material),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
