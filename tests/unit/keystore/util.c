/* Fixtures for the keystore unit tests (see util.h). */
#include "util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "keystore/master.h"

int fx_setup_bare(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	if (!f)
		return -1;
	kw_master_set_test_kdf_n(1u << 10); /* fast stores for tests; a server never does this */
	snprintf(f->dir, sizeof f->dir, "/tmp/kwks-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/keystore.db", f->dir);
	if (kw_keystore_open(f->path, 0, &f->ks) != KW_OK) {
		fprintf(stderr, "open: %s\n", kw_last_error());
		return -1;
	}
	*state = f;
	return 0;
}

int fx_setup(void **state)
{
	struct fx *f;

	if (fx_setup_bare(state))
		return -1;
	f = *state;
	if (kw_keystore_init_passphrase(f->ks, PASS) != KW_OK ||
	    kw_keystore_partition_create(f->ks, "dev", NULL, &f->pid) != KW_OK) {
		fprintf(stderr, "setup: %s\n", kw_last_error());
		return -1;
	}
	return 0;
}

int fx_teardown(void **state)
{
	struct fx *f = *state;
	struct dirent *de;
	char p[512];
	DIR *d;

	kw_keystore_free(f->ks);
	d = opendir(f->dir);
	while (d && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(p, sizeof p, "%s/%s", f->dir, de->d_name);
			unlink(p);
		}
	}
	if (d)
		closedir(d);
	rmdir(f->dir);
	free(f);
	return 0;
}

void fx_reopen(struct fx *f)
{
	kw_keystore_free(f->ks);
	f->ks = NULL;
	assert_int_equal(kw_keystore_open(f->path, 0, &f->ks), KW_OK);
}

EVP_PKEY *gen_key(const char *what)
{
	EVP_PKEY *k = NULL;

	if (strcmp(what, "RSA") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	else if (strcmp(what, "P-256") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	else if (strcmp(what, "P-384") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	else if (strcmp(what, "Ed25519") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(k);
	return k;
}

void put_pair(struct fx *f, uint64_t pid, const char *owner, const char *name, const char *type, bool extractable,
	      bool modifiable, struct kw_object_row *priv, struct kw_object_row *pub)
{
	struct kw_keygen spec = {owner, name, extractable, modifiable, KW_USAGE_SIGN, NULL, 0, KW_KEY_NONE, false};
	struct kw_object_row a, b;
	EVP_PKEY *k = gen_key(type);
	kw_rv rv = kw_keystore_put_keypair(f->ks, pid, &spec, k, priv ? priv : &a, pub ? pub : &b);

	if (rv)
		fprintf(stderr, "put_keypair: %s\n", kw_last_error());
	assert_int_equal(rv, KW_OK);
	EVP_PKEY_free(k);
	if (!priv)
		kw_object_row_cleanup(&a);
	if (!pub)
		kw_object_row_cleanup(&b);
}

static sqlite3 *raw_open(struct fx *f)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

void raw_sql(struct fx *f, const char *fmt, ...)
{
	char sql[1024], *err = NULL;
	sqlite3 *db = raw_open(f);
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK)
		fprintf(stderr, "raw_sql %s: %s\n", sql, err);
	sqlite3_free(err);
	assert_int_equal(rc, SQLITE_OK);
	assert_true(sqlite3_changes(db) > 0 || strncmp(sql, "UPDATE", 6) != 0);
	sqlite3_close(db);
}

int64_t raw_int(struct fx *f, const char *fmt, ...)
{
	char sql[1024];
	sqlite3 *db = raw_open(f);
	sqlite3_stmt *st = NULL;
	int64_t v;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

size_t count_objects(struct fx *f, uint64_t pid)
{
	struct kw_object_row *rows = NULL;
	size_t n = 0, total = 0;
	uint64_t after = 0;
	bool more = true;

	while (more) {
		assert_int_equal(kw_keystore_list(f->ks, pid, NULL, NULL, after, 1000, &rows, &n, &more), KW_OK);
		total += n;
		if (n)
			after = rows[n - 1].id;
		kw_object_rows_free(rows, n);
	}
	return total;
}
