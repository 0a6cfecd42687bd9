/*
 * Fixtures for the keystore unit tests (see util.h). With KW_TEST_PG_URL
 * set (tests/pg/with-pg), each store is a fresh database on that
 * PostgreSQL server instead of a file, and the raw SQL of a test is said
 * in PostgreSQL's words (pg_sql).
 */
#include "util.h"

#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "keystore/master.h"

bool fx_pg(void)
{
	const char *u = getenv("KW_TEST_PG_URL");

	return u && *u;
}

/* Runs one statement on the server's maintenance database. */
static void pg_admin(const char *sql)
{
	char url[200];
	PGconn *c;
	PGresult *r;

	snprintf(url, sizeof url, "%s/postgres", getenv("KW_TEST_PG_URL"));
	c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK)
		fprintf(stderr, "pg_admin: %s", PQerrorMessage(c));
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fprintf(stderr, "pg_admin %s: %s", sql, PQerrorMessage(c));
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(c);
}

/* A fresh, empty database; its URL in url. */
static void pg_new_db(char *url, size_t cap)
{
	static unsigned counter;
	char sql[128];

	snprintf(sql, sizeof sql, "CREATE DATABASE kwt_%ld_%u", (long)getpid(), ++counter);
	pg_admin(sql);
	snprintf(url, cap, "%s/kwt_%ld_%u", getenv("KW_TEST_PG_URL"), (long)getpid(), counter);
}

static void pg_drop_db(const char *url)
{
	char sql[160];

	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", strrchr(url, '/') + 1);
	pg_admin(sql);
}

void fx_clone(struct fx *f, const char *suffix, char *out, size_t cap)
{
	char sql[300];

	if (!fx_pg()) {
		char cmd[512];

		snprintf(out, cap, "%s/%s.db", f->dir, suffix);
		snprintf(cmd, sizeof cmd, "cp '%s' '%s'", f->path, out);
		assert_int_equal(system(cmd), 0);
		return;
	}
	snprintf(out, cap, "%s_%s", f->path, suffix);
	snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE %s", strrchr(out, '/') + 1, strrchr(f->path, '/') + 1);
	pg_admin(sql);
}

void fx_clone_remove(const char *path)
{
	if (fx_pg())
		pg_drop_db(path);
	else
		unlink(path);
}

int fx_setup_bare(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	if (!f)
		return -1;
	kw_master_set_test_kdf_n(1u << 10); /* fast stores for tests; a server never does this */
	snprintf(f->dir, sizeof f->dir, "/tmp/kwks-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	if (fx_pg())
		pg_new_db(f->path, sizeof f->path);
	else
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

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0; /* best effort: go on with the rest */
}

int fx_teardown(void **state)
{
	struct fx *f = *state;

	kw_keystore_free(f->ks);
	if (fx_pg())
		pg_drop_db(f->path);
	/* the whole tree: test_audit_archive leaves an archive/ directory in it */
	nftw(f->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
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
	struct kw_keygen spec = {owner, name,	     extractable, modifiable, KW_USAGE_SIGN, NULL,
				 0,	KW_KEY_NONE, false,	  false,      false};
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

static void pg_sql_piece(const char *in, size_t len, char *out, size_t cap);

/*
 * The SQLite of a test in PostgreSQL's words: x'..' and zeroblob(n) as
 * bytea, CAST(.. AS BLOB) as convert_to, instr as position,
 * pragma_table_info as information_schema.columns.
 */
static void pg_sql(const char *in, char *out, size_t cap)
{
	size_t o = 0;

#define PUT(...) (o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, __VA_ARGS__))
	while (*in && o < cap) {
		int n = 0, len = 0;
		char a[256];

		if ((in[0] == 'x' || in[0] == 'X') && in[1] == '\'' && (o == 0 || strchr(" (,=", in[-1])) &&
		    strchr(in + 2, '\'')) {
			const char *e = strchr(in + 2, '\'');
			PUT("'\\x%.*s'::bytea", (int)(e - in - 2), in + 2);
			in = e + 1;
		} else if (sscanf(in, "zeroblob(%d)%n", &n, &len) == 1 && len) {
			PUT("'\\x");
			for (int i = 0; i < n; i++)
				PUT("00");
			PUT("'::bytea");
			in += len;
		} else if (strncmp(in, " AS BLOB)", 9) == 0) {
			PUT(" AS bytea)");
			in += 9;
		} else if (strncmp(in, "instr(sealed, ", 14) == 0) {
			const char *e = strchr(in, ')');
			char inner[128];
			pg_sql_piece(in + 14, (size_t)(e - in - 14), inner, sizeof inner);
			PUT("position(%s in sealed)", inner);
			in = e + 1;
		} else if (sscanf(in, "pragma_table_info('%63[a-z]') WHERE name%n", a, &len) == 1 && len) {
			PUT("information_schema.columns WHERE table_schema = current_schema() AND table_name = '%s' "
			    "AND "
			    "column_name",
			    a);
			in += len;
		} else {
			out[o++] = *in++;
		}
	}
#undef PUT
	assert_true(o < cap);
	out[o] = '\0';
}

static void pg_sql_piece(const char *in, size_t len, char *out, size_t cap)
{
	char tmp[256];

	snprintf(tmp, sizeof tmp, "%.*s", (int)len, in);
	pg_sql(tmp, out, cap);
}

static PGresult *pg_raw(struct fx *f, const char *sql, int *changes)
{
	char q[4096];
	PGconn *c = PQconnectdb(f->path);
	PGresult *r;

	assert_int_equal(PQstatus(c), CONNECTION_OK);
	pg_sql(sql, q, sizeof q);
	r = PQexec(c, q);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "raw sql %s: %s", q, PQerrorMessage(c));
	assert_true(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
	if (changes)
		*changes = atoi(PQcmdTuples(r));
	PQfinish(c);
	return r;
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
	sqlite3 *db;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	if (fx_pg()) {
		int changes = 0;

		PQclear(pg_raw(f, sql, &changes));
		assert_true(changes > 0 || strncmp(sql, "UPDATE", 6) != 0);
		return;
	}
	db = raw_open(f);
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
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	int64_t v;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	if (fx_pg()) {
		PGresult *r = pg_raw(f, sql, NULL);
		const char *t;

		assert_int_equal(PQntuples(r), 1);
		t = PQgetvalue(r, 0, 0);
		v = strcmp(t, "t") == 0 ? 1 : strcmp(t, "f") == 0 ? 0 : strtoll(t, NULL, 10);
		PQclear(r);
		return v;
	}
	db = raw_open(f);
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
