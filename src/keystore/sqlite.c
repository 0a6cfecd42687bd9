/*
 * The SQLite backend of the keystore: one connection in WAL mode with
 * synchronous=FULL, foreign keys on and a 5 s busy timeout. The keystore
 * mutex serialises every call, so the connection needs no lock of its own.
 *
 * The schema version lives in meta('schema_version'). Opening applies the
 * steps of `migrations` from the stored version up to the newest, in order,
 * inside one transaction; a store newer than this code is refused. A step
 * is SQL, optionally followed by a C fix-up for what SQL cannot compute.
 */
#include "keystore/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"

struct sq_backend {
	struct kw_backend base;
	sqlite3 *db;
	char *path;
};

static kw_rv backfill_ckaid(struct sq_backend *s);

struct migration {
	const char *sql;
	kw_rv (*fixup)(struct sq_backend *s); /* NULL, or runs after sql in the same transaction */
};

/* migrations[i] takes the schema from version i to version i + 1 */
static const struct migration migrations[] = {
	/* 0 -> 1: the first schema */
	{"CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB);"
	"CREATE TABLE partitions (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
	" setup_hash BLOB, created INTEGER NOT NULL);"
	"CREATE TABLE credentials (fingerprint BLOB PRIMARY KEY,"
	" partition_id INTEGER NOT NULL REFERENCES partitions(id) ON DELETE CASCADE,"
	" subject TEXT NOT NULL, created INTEGER NOT NULL);"
	"CREATE TABLE objects (id INTEGER PRIMARY KEY,"
	" partition_id INTEGER NOT NULL REFERENCES partitions(id) ON DELETE CASCADE,"
	" owner TEXT NOT NULL, name TEXT NOT NULL, cls INTEGER NOT NULL, key_type INTEGER NOT NULL,"
	" bits INTEGER NOT NULL, curve TEXT NOT NULL, value BLOB, sensitive INTEGER NOT NULL,"
	" extractable INTEGER NOT NULL, modifiable INTEGER NOT NULL, never_extractable INTEGER NOT NULL,"
	" always_sensitive INTEGER NOT NULL, usages INTEGER NOT NULL, created INTEGER NOT NULL,"
	" pair_id INTEGER NOT NULL DEFAULT 0, spki BLOB, wrapped_dek BLOB, sealed BLOB,"
	" UNIQUE (partition_id, owner, name, cls));"
	"CREATE INDEX objects_name ON objects (partition_id, name);"
	"CREATE TABLE audit (seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, partition TEXT NOT NULL,"
	" actor TEXT NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL, prev_hash BLOB NOT NULL,"
	" hash BLOB NOT NULL);",
	 NULL},
	/*
	 * 1 -> 2: PKCS#11 CKA_ID of every object, CKA_APPLICATION of data
	 * objects; existing key pairs get the default CKA_ID.
	 */
	{"ALTER TABLE objects ADD COLUMN ckaid BLOB;"
	 "ALTER TABLE objects ADD COLUMN application TEXT NOT NULL DEFAULT '';",
	 backfill_ckaid},
	/* 2 -> 3: credentials can be revoked (the time; 0 while valid) */
	{"ALTER TABLE credentials ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;", NULL},
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

#define OBJ_COLS                                                                                   \
	"id, partition_id, owner, name, cls, key_type, bits, curve, value, sensitive, extractable, "  \
	"modifiable, never_extractable, always_sensitive, usages, created, pair_id, ckaid, application"

static struct sq_backend *sq(struct kw_backend *b)
{
	return (struct sq_backend *)b;
}

/* Maps an SQLite failure to a kw_rv with a message naming the file. */
static kw_rv sq_fail(struct sq_backend *s, int rc, const char *what)
{
	const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);

	switch (rc & 0xff) {
	case SQLITE_FULL:
		return kw_error_set(KW_ERR_STORE_FULL, "store %s: %s: the store is full (%s)", s->path, what, msg);
	case SQLITE_CONSTRAINT:
		return kw_error_set(KW_ERR_EXISTS, "store %s: %s: %s", s->path, what, msg);
	case SQLITE_NOMEM:
		return kw_error_set(KW_ERR_NO_MEMORY, "store %s: %s: out of memory", s->path, what);
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return kw_error_set(KW_ERR_STORE, "store %s: %s: the database is busy (%s)", s->path, what, msg);
	default:
		return kw_error_set(KW_ERR_STORE, "store %s: %s: %s", s->path, what, msg);
	}
}

static kw_rv sq_prepare(struct sq_backend *s, const char *sql, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);

	if (rc != SQLITE_OK)
		return sq_fail(s, rc, "preparing a statement");
	return KW_OK;
}

static kw_rv sq_exec(struct sq_backend *s, const char *sql, const char *what)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return sq_fail(s, rc, what);
	return KW_OK;
}

/* Runs a statement that returns no rows, then finalizes it. */
static kw_rv sq_done(struct sq_backend *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	kw_rv rv = KW_OK;

	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		rv = sq_fail(s, sqlite3_extended_errcode(s->db), what);
	sqlite3_finalize(st);
	return rv;
}

static kw_rv blob_dup(sqlite3_stmt *st, int col, unsigned char **out, size_t *len)
{
	const void *p = sqlite3_column_blob(st, col);
	int n = sqlite3_column_bytes(st, col);

	*out = NULL;
	*len = 0;
	if (!p || n <= 0)
		return KW_OK;
	*out = malloc((size_t)n);
	if (!*out)
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory reading a row");
	memcpy(*out, p, (size_t)n);
	*len = (size_t)n;
	return KW_OK;
}

static char *text_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return strdup(t ? (const char *)t : "");
}

static void text_copy(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

/* ---- transactions ---- */

static kw_rv sq_begin(struct kw_backend *b)
{
	return sq_exec(sq(b), "BEGIN IMMEDIATE", "starting a transaction");
}

static kw_rv sq_commit(struct kw_backend *b)
{
	struct sq_backend *s = sq(b);
	kw_rv rv = sq_exec(s, "COMMIT", "committing");

	if (rv && !sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rv;
}

static void sq_rollback(struct kw_backend *b)
{
	struct sq_backend *s = sq(b);

	/* SQLite may already have rolled back (SQLITE_FULL, SQLITE_IOERR) */
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- meta ---- */

static kw_rv sq_meta_get(struct kw_backend *b, const char *key, unsigned char **val, size_t *len)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;
	int rc;

	rv = sq_prepare(s, "SELECT value FROM meta WHERE key = ?", &st);
	if (rv)
		return rv;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		rv = blob_dup(st, 0, val, len);
		if (!rv && !*val) {
			/* an empty value: return a valid pointer with length 0 */
			*val = malloc(1);
			if (!*val)
				rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
		}
	} else if (rc == SQLITE_DONE) {
		rv = KW_ERR_NOT_FOUND;
	} else {
		rv = sq_fail(s, rc, "reading meta");
	}
	sqlite3_finalize(st);
	return rv;
}

static kw_rv sq_meta_put(struct kw_backend *b, const char *key, const void *val, size_t len)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	rv = sq_prepare(s, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", &st);
	if (rv)
		return rv;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, len ? val : "", (int)len, SQLITE_STATIC);
	return sq_done(s, st, "writing meta");
}

/* ---- partitions ---- */

static kw_rv sq_partition_insert(struct kw_backend *b, const char *name, const unsigned char *setup_hash,
				 int64_t created, uint64_t *id_out)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	rv = sq_prepare(s, "INSERT INTO partitions (name, setup_hash, created) VALUES (?, ?, ?)", &st);
	if (rv)
		return rv;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (setup_hash)
		sqlite3_bind_blob(st, 2, setup_hash, KW_SETUP_HASH_LEN, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_int64(st, 3, created);
	rv = sq_done(s, st, "creating a partition");
	if (!rv)
		*id_out = (uint64_t)sqlite3_last_insert_rowid(s->db);
	return rv;
}

#define PART_COLS                                                                                  \
	"p.id, p.name, p.setup_hash, "                                                             \
	"(SELECT count(*) FROM objects o WHERE o.partition_id = p.id), "                           \
	"(SELECT count(*) FROM credentials c WHERE c.partition_id = p.id)"

static void part_read(sqlite3_stmt *st, struct kw_partition_info *out)
{
	memset(out, 0, sizeof *out);
	out->id = (uint64_t)sqlite3_column_int64(st, 0);
	text_copy(out->name, sizeof out->name, st, 1);
	out->setup_pending = sqlite3_column_type(st, 2) != SQLITE_NULL;
	out->objects = (unsigned)sqlite3_column_int64(st, 3);
	out->credentials = (unsigned)sqlite3_column_int64(st, 4);
}

static kw_rv sq_partition_get(struct kw_backend *b, const char *name, uint64_t id, struct kw_partition_info *out,
			      unsigned char setup_hash[KW_SETUP_HASH_LEN], bool *has_setup)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;
	int rc;

	rv = sq_prepare(s,
			name ? "SELECT " PART_COLS " FROM partitions p WHERE p.name = ?"
			     : "SELECT " PART_COLS " FROM partitions p WHERE p.id = ?",
			&st);
	if (rv)
		return rv;
	if (name)
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		part_read(st, out);
		if (has_setup)
			*has_setup = false;
		if (setup_hash && has_setup && sqlite3_column_bytes(st, 2) == KW_SETUP_HASH_LEN) {
			memcpy(setup_hash, sqlite3_column_blob(st, 2), KW_SETUP_HASH_LEN);
			*has_setup = true;
		}
	} else if (rc == SQLITE_DONE) {
		if (name)
			rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no partition named '%s'", name);
		else
			rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no partition with id %" PRIu64, id);
	} else {
		rv = sq_fail(s, rc, "reading a partition");
	}
	sqlite3_finalize(st);
	return rv;
}

/*
 * Steps st to its end, reading each row with `read` into a growing array of
 * `elem`-byte items; finalizes st. *out (malloc'd) and *n on success.
 */
static kw_rv sq_collect(struct sq_backend *s, sqlite3_stmt *st, size_t elem, void (*read)(sqlite3_stmt *, void *),
			const char *what, void **out, size_t *n)
{
	unsigned char *arr = NULL, *p;
	size_t cnt = 0, cap = 0;
	kw_rv rv = KW_OK;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 8;
			p = realloc(arr, cap * elem);
			if (!p) {
				rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory %s", what);
				goto out;
			}
			arr = p;
		}
		memset(arr + cnt * elem, 0, elem);
		read(st, arr + cnt++ * elem);
	}
	if (rc != SQLITE_DONE)
		rv = sq_fail(s, rc, what);
out:
	sqlite3_finalize(st);
	if (rv) {
		free(arr);
		return rv;
	}
	*out = arr;
	*n = cnt;
	return KW_OK;
}

static void part_read_any(sqlite3_stmt *st, void *out)
{
	part_read(st, out);
}

static kw_rv sq_partition_list(struct kw_backend *b, struct kw_partition_info **out, size_t *n)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	void *arr;
	kw_rv rv;

	rv = sq_prepare(s, "SELECT " PART_COLS " FROM partitions p ORDER BY p.name", &st);
	if (rv)
		return rv;
	rv = sq_collect(s, st, sizeof **out, part_read_any, "listing partitions", &arr, n);
	if (!rv)
		*out = arr;
	return rv;
}

static kw_rv sq_partition_set_setup(struct kw_backend *b, uint64_t id, const unsigned char *setup_hash)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	rv = sq_prepare(s, "UPDATE partitions SET setup_hash = ? WHERE id = ?", &st);
	if (rv)
		return rv;
	if (setup_hash)
		sqlite3_bind_blob(st, 1, setup_hash, KW_SETUP_HASH_LEN, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 1);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
	rv = sq_done(s, st, "updating a partition");
	if (!rv && sqlite3_changes(s->db) == 0)
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no partition with id %" PRIu64, id);
	return rv;
}

static kw_rv sq_partition_delete(struct kw_backend *b, uint64_t id)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	/* objects and credentials go with it: ON DELETE CASCADE */
	rv = sq_prepare(s, "DELETE FROM partitions WHERE id = ?", &st);
	if (rv)
		return rv;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	rv = sq_done(s, st, "deleting a partition");
	if (!rv && sqlite3_changes(s->db) == 0)
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no partition with id %" PRIu64, id);
	return rv;
}

/* ---- credentials ---- */

static kw_rv sq_credential_insert(struct kw_backend *b, const unsigned char fp[KW_FINGERPRINT_LEN],
				  uint64_t partition_id, const char *subject, int64_t created)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	rv = sq_prepare(s, "INSERT INTO credentials (fingerprint, partition_id, subject, created) VALUES (?, ?, ?, ?)",
			&st);
	if (rv)
		return rv;
	sqlite3_bind_blob(st, 1, fp, KW_FINGERPRINT_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)partition_id);
	sqlite3_bind_text(st, 3, subject, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, created);
	return sq_done(s, st, "recording a credential");
}

static kw_rv sq_credential_find(struct kw_backend *b, const unsigned char fp[KW_FINGERPRINT_LEN],
				uint64_t *partition_id)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;
	int rc;

	rv = sq_prepare(s, "SELECT partition_id, revoked FROM credentials WHERE fingerprint = ?", &st);
	if (rv)
		return rv;
	sqlite3_bind_blob(st, 1, fp, KW_FINGERPRINT_LEN, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_int64(st, 1) != 0)
		rv = kw_error_set(KW_ERR_AUTH, "store: this client credential was revoked");
	else if (rc == SQLITE_ROW)
		*partition_id = (uint64_t)sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		rv = kw_error_set(KW_ERR_AUTH, "store: unknown client credential");
	else
		rv = sq_fail(s, rc, "looking up a credential");
	sqlite3_finalize(st);
	return rv;
}

static void credential_read(sqlite3_stmt *st, void *out)
{
	struct kw_credential_info *c = out;

	if (sqlite3_column_bytes(st, 0) == KW_FINGERPRINT_LEN)
		memcpy(c->fingerprint, sqlite3_column_blob(st, 0), KW_FINGERPRINT_LEN);
	text_copy(c->partition, sizeof c->partition, st, 1);
	text_copy(c->subject, sizeof c->subject, st, 2);
	c->created = sqlite3_column_int64(st, 3);
	c->revoked = sqlite3_column_int64(st, 4);
}

static kw_rv sq_credential_list(struct kw_backend *b, const char *partition, struct kw_credential_info **out, size_t *n)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	void *arr;
	kw_rv rv;

	rv = sq_prepare(s,
			"SELECT c.fingerprint, p.name, c.subject, c.created, c.revoked FROM credentials c"
			" JOIN partitions p ON p.id = c.partition_id WHERE ?1 IS NULL OR p.name = ?1"
			" ORDER BY p.name, c.created, c.fingerprint",
			&st);
	if (rv)
		return rv;
	if (partition)
		sqlite3_bind_text(st, 1, partition, -1, SQLITE_STATIC);
	rv = sq_collect(s, st, sizeof **out, credential_read, "listing credentials", &arr, n);
	if (!rv)
		*out = arr;
	return rv;
}

static kw_rv sq_credential_revoke(struct kw_backend *b, const unsigned char fp[KW_FINGERPRINT_LEN], int64_t when)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	rv = sq_prepare(s,
			"UPDATE credentials SET revoked = CASE WHEN revoked = 0 THEN ?2 ELSE revoked END"
			" WHERE fingerprint = ?1",
			&st);
	if (rv)
		return rv;
	sqlite3_bind_blob(st, 1, fp, KW_FINGERPRINT_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, when > 0 ? when : 1);
	rv = sq_done(s, st, "revoking a credential");
	if (!rv && sqlite3_changes(s->db) == 0)
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no such client credential");
	return rv;
}

/* ---- objects ---- */

static kw_rv obj_read(sqlite3_stmt *st, struct kw_object_row *r)
{
	int n;

	memset(r, 0, sizeof *r);
	r->id = (uint64_t)sqlite3_column_int64(st, 0);
	r->partition_id = (uint64_t)sqlite3_column_int64(st, 1);
	text_copy(r->owner, sizeof r->owner, st, 2);
	text_copy(r->name, sizeof r->name, st, 3);
	r->cls = (enum kw_class)sqlite3_column_int(st, 4);
	r->key_type = (enum kw_key_type)sqlite3_column_int(st, 5);
	r->bits = (unsigned)sqlite3_column_int64(st, 6);
	text_copy(r->curve, sizeof r->curve, st, 7);
	r->sensitive = sqlite3_column_int(st, 9) != 0;
	r->extractable = sqlite3_column_int(st, 10) != 0;
	r->modifiable = sqlite3_column_int(st, 11) != 0;
	r->never_extractable = sqlite3_column_int(st, 12) != 0;
	r->always_sensitive = sqlite3_column_int(st, 13) != 0;
	r->usages = (unsigned)sqlite3_column_int64(st, 14);
	r->created = sqlite3_column_int64(st, 15);
	r->pair_id = (uint64_t)sqlite3_column_int64(st, 16);
	n = sqlite3_column_bytes(st, 17);
	if (n > 0 && (size_t)n <= sizeof r->ckaid) {
		memcpy(r->ckaid, sqlite3_column_blob(st, 17), (size_t)n);
		r->ckaid_len = (size_t)n;
	}
	text_copy(r->application, sizeof r->application, st, 18);
	return blob_dup(st, 8, &r->value, &r->value_len);
}

static void bind_blob_or_null(sqlite3_stmt *st, int i, const unsigned char *p, size_t len)
{
	if (p && len)
		sqlite3_bind_blob(st, i, p, (int)len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static kw_rv sq_object_insert(struct kw_backend *b, const struct kw_object_row *r, const struct kw_sealed *sealed)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	rv = sq_prepare(s,
			"INSERT INTO objects (" OBJ_COLS ", spki, wrapped_dek, sealed) VALUES "
			"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			&st);
	if (rv)
		return rv;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)r->id);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)r->partition_id);
	sqlite3_bind_text(st, 3, r->owner, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, r->name, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, (int)r->cls);
	sqlite3_bind_int(st, 6, (int)r->key_type);
	sqlite3_bind_int64(st, 7, r->bits);
	sqlite3_bind_text(st, 8, r->curve, -1, SQLITE_STATIC);
	bind_blob_or_null(st, 9, r->value, r->value_len);
	sqlite3_bind_int(st, 10, r->sensitive);
	sqlite3_bind_int(st, 11, r->extractable);
	sqlite3_bind_int(st, 12, r->modifiable);
	sqlite3_bind_int(st, 13, r->never_extractable);
	sqlite3_bind_int(st, 14, r->always_sensitive);
	sqlite3_bind_int64(st, 15, r->usages);
	sqlite3_bind_int64(st, 16, r->created);
	sqlite3_bind_int64(st, 17, (sqlite3_int64)r->pair_id);
	bind_blob_or_null(st, 18, r->ckaid, r->ckaid_len);
	sqlite3_bind_text(st, 19, r->application, -1, SQLITE_STATIC);
	bind_blob_or_null(st, 20, sealed ? sealed->spki : NULL, sealed ? sealed->spki_len : 0);
	bind_blob_or_null(st, 21, sealed ? sealed->wrapped_dek : NULL, sealed ? sealed->wrapped_dek_len : 0);
	bind_blob_or_null(st, 22, sealed ? sealed->sealed : NULL, sealed ? sealed->sealed_len : 0);
	return sq_done(s, st, "storing an object");
}

static kw_rv sq_object_get(struct kw_backend *b, uint64_t partition_id, uint64_t id, struct kw_object_row *out,
			   struct kw_sealed *sealed)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;
	int rc;

	rv = sq_prepare(s, "SELECT " OBJ_COLS ", spki, wrapped_dek, sealed FROM objects WHERE id = ? AND partition_id = ?",
			&st);
	if (rv)
		return rv;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)partition_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		rv = obj_read(st, out);
		if (!rv && sealed) {
			memset(sealed, 0, sizeof *sealed);
			rv = blob_dup(st, 19, &sealed->spki, &sealed->spki_len);
			if (!rv)
				rv = blob_dup(st, 20, &sealed->wrapped_dek, &sealed->wrapped_dek_len);
			if (!rv)
				rv = blob_dup(st, 21, &sealed->sealed, &sealed->sealed_len);
			if (rv)
				kw_sealed_cleanup(sealed);
		}
		if (rv)
			kw_object_row_cleanup(out);
	} else if (rc == SQLITE_DONE) {
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no object 0x%" PRIx64 " in this partition", id);
	} else {
		rv = sq_fail(s, rc, "reading an object");
	}
	sqlite3_finalize(st);
	return rv;
}

static kw_rv sq_object_list(struct kw_backend *b, uint64_t partition_id, const char *owner, const char *name,
			    enum kw_class cls, uint64_t after_id, unsigned limit, struct kw_object_row **rows,
			    size_t *n)
{
	struct sq_backend *s = sq(b);
	struct kw_object_row *arr = NULL, *p;
	size_t cnt = 0, cap = 0;
	sqlite3_stmt *st;
	kw_rv rv;
	int rc;

	rv = sq_prepare(s,
			"SELECT " OBJ_COLS " FROM objects WHERE partition_id = ?1 AND id > ?2"
			" AND (?3 IS NULL OR owner = ?3) AND (?4 IS NULL OR name = ?4)"
			" AND (?5 = 0 OR cls = ?5) ORDER BY id LIMIT ?6",
			&st);
	if (rv)
		return rv;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)partition_id);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)after_id);
	if (owner)
		sqlite3_bind_text(st, 3, owner, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 3);
	if (name)
		sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_int(st, 5, (int)cls);
	sqlite3_bind_int64(st, 6, limit ? (sqlite3_int64)limit : -1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			p = realloc(arr, cap * sizeof *arr);
			if (!p) {
				rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory listing objects");
				goto out;
			}
			arr = p;
		}
		rv = obj_read(st, &arr[cnt]);
		if (rv)
			goto out;
		cnt++;
	}
	if (rc != SQLITE_DONE)
		rv = sq_fail(s, rc, "listing objects");
out:
	sqlite3_finalize(st);
	if (rv) {
		kw_object_rows_free(arr, cnt);
		return rv;
	}
	*rows = arr;
	*n = cnt;
	return KW_OK;
}

static kw_rv sq_object_update(struct kw_backend *b, const struct kw_object_row *r, const struct kw_sealed *sealed)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	rv = sq_prepare(s,
			sealed ? "UPDATE objects SET owner = ?1, name = ?2, extractable = ?3, modifiable = ?4,"
				 " never_extractable = ?5, always_sensitive = ?6, usages = ?7, pair_id = ?8,"
				 " sensitive = ?11, ckaid = ?15, spki = ?12, wrapped_dek = ?13, sealed = ?14"
				 " WHERE id = ?9 AND partition_id = ?10"
			       : "UPDATE objects SET owner = ?1, name = ?2, extractable = ?3, modifiable = ?4,"
				 " never_extractable = ?5, always_sensitive = ?6, usages = ?7, pair_id = ?8,"
				 " sensitive = ?11, ckaid = ?15 WHERE id = ?9 AND partition_id = ?10",
			&st);
	if (rv)
		return rv;
	sqlite3_bind_text(st, 1, r->owner, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->name, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, r->extractable);
	sqlite3_bind_int(st, 4, r->modifiable);
	sqlite3_bind_int(st, 5, r->never_extractable);
	sqlite3_bind_int(st, 6, r->always_sensitive);
	sqlite3_bind_int64(st, 7, r->usages);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)r->pair_id);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)r->id);
	sqlite3_bind_int64(st, 10, (sqlite3_int64)r->partition_id);
	sqlite3_bind_int(st, 11, r->sensitive);
	bind_blob_or_null(st, 15, r->ckaid, r->ckaid_len);
	if (sealed) {
		bind_blob_or_null(st, 12, sealed->spki, sealed->spki_len);
		bind_blob_or_null(st, 13, sealed->wrapped_dek, sealed->wrapped_dek_len);
		bind_blob_or_null(st, 14, sealed->sealed, sealed->sealed_len);
	}
	rv = sq_done(s, st, "updating an object");
	if (!rv && sqlite3_changes(s->db) == 0)
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no object 0x%" PRIx64 " in this partition", r->id);
	return rv;
}

static kw_rv sq_object_delete(struct kw_backend *b, uint64_t partition_id, uint64_t id)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	rv = sq_prepare(s, "DELETE FROM objects WHERE id = ? AND partition_id = ?", &st);
	if (rv)
		return rv;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)partition_id);
	rv = sq_done(s, st, "deleting an object");
	if (!rv && sqlite3_changes(s->db) == 0)
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no object 0x%" PRIx64 " in this partition", id);
	return rv;
}

/* ---- audit ---- */

static kw_rv sq_audit_insert(struct kw_backend *b, const struct kw_audit_rec *r)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	rv = sq_prepare(s,
			"INSERT INTO audit (seq, time, partition, actor, event, detail, prev_hash, hash)"
			" VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			&st);
	if (rv)
		return rv;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)r->seq);
	sqlite3_bind_int64(st, 2, r->time);
	sqlite3_bind_text(st, 3, r->partition, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, r->actor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, r->event, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, r->detail, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 7, r->prev_hash, KW_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 8, r->hash, KW_HASH_LEN, SQLITE_STATIC);
	return sq_done(s, st, "appending an audit record");
}

static kw_rv sq_audit_after(struct kw_backend *b, uint64_t after, unsigned limit, kw_audit_cb cb, void *ctx)
{
	struct sq_backend *s = sq(b);
	struct kw_audit_rec r;
	sqlite3_stmt *st;
	kw_rv rv;
	int rc;

	rv = sq_prepare(s,
			"SELECT seq, time, partition, actor, event, detail, prev_hash, hash FROM audit WHERE seq > ?"
			" ORDER BY seq LIMIT ?",
			&st);
	if (rv)
		return rv;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
	sqlite3_bind_int64(st, 2, limit ? (sqlite3_int64)limit : -1); /* -1: no limit */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&r, 0, sizeof r);
		r.seq = (uint64_t)sqlite3_column_int64(st, 0);
		r.time = sqlite3_column_int64(st, 1);
		r.partition = text_dup(st, 2);
		r.actor = text_dup(st, 3);
		r.event = text_dup(st, 4);
		r.detail = text_dup(st, 5);
		/* a hash of the wrong length stays zero and so fails to verify */
		if (sqlite3_column_bytes(st, 6) == KW_HASH_LEN)
			memcpy(r.prev_hash, sqlite3_column_blob(st, 6), KW_HASH_LEN);
		if (sqlite3_column_bytes(st, 7) == KW_HASH_LEN)
			memcpy(r.hash, sqlite3_column_blob(st, 7), KW_HASH_LEN);
		if (!r.partition || !r.actor || !r.event || !r.detail)
			rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory reading the audit log");
		else
			rv = cb(ctx, &r);
		free(r.partition);
		free(r.actor);
		free(r.event);
		free(r.detail);
		if (rv)
			break;
	}
	if (!rv && rc != SQLITE_DONE)
		rv = sq_fail(s, rc, "reading the audit log");
	sqlite3_finalize(st);
	return rv;
}

static kw_rv sq_audit_foreach(struct kw_backend *b, kw_audit_cb cb, void *ctx)
{
	return sq_audit_after(b, 0, 0, cb, ctx);
}

static kw_rv sq_audit_delete_upto(struct kw_backend *b, uint64_t seq)
{
	struct sq_backend *s = sq(b);
	sqlite3_stmt *st;
	kw_rv rv;

	rv = sq_prepare(s, "DELETE FROM audit WHERE seq <= ?", &st);
	if (rv)
		return rv;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
	return sq_done(s, st, "removing archived audit records");
}

/* ---- migration fix-ups ---- */

/*
 * 1 -> 2: the default CKA_ID of every key-pair half, from the public key:
 * a public row's value, a private row's own SPKI copy. An SPKI that does
 * not decode leaves the CKA_ID empty (the row is reported when it is used).
 */
static kw_rv backfill_ckaid(struct sq_backend *s)
{
	sqlite3_stmt *st = NULL, *up = NULL;
	unsigned char id[KW_CKAID_DEFAULT_LEN];
	kw_rv rv;
	int rc = SQLITE_DONE;

	rv = sq_prepare(s,
			"SELECT id, CASE WHEN cls = 1 THEN spki ELSE value END FROM objects"
			" WHERE cls IN (1, 2) AND ckaid IS NULL",
			&st);
	if (!rv)
		rv = sq_prepare(s, "UPDATE objects SET ckaid = ?1 WHERE id = ?2", &up);
	while (!rv && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *spki = sqlite3_column_blob(st, 1);
		int len = sqlite3_column_bytes(st, 1);

		if (!spki || len <= 0 || kw_keystore_default_ckaid(spki, (size_t)len, id) != KW_OK)
			continue;
		sqlite3_bind_blob(up, 1, id, sizeof id, SQLITE_STATIC);
		sqlite3_bind_int64(up, 2, sqlite3_column_int64(st, 0));
		rc = sqlite3_step(up);
		if (rc != SQLITE_DONE)
			rv = sq_fail(s, rc, "migrating: setting the default CKA_ID");
		sqlite3_reset(up);
	}
	if (!rv && rc != SQLITE_DONE)
		rv = sq_fail(s, rc, "migrating: reading keys for their CKA_ID");
	sqlite3_finalize(st);
	sqlite3_finalize(up);
	return rv;
}

/* ---- opening ---- */

static void sq_close(struct kw_backend *b)
{
	struct sq_backend *s = sq(b);

	if (!s)
		return;
	if (s->db)
		sqlite3_close_v2(s->db);
	free(s->path);
	free(s);
}

static const struct kw_backend_ops sq_ops = {
	.close = sq_close,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.meta_get = sq_meta_get,
	.meta_put = sq_meta_put,
	.partition_insert = sq_partition_insert,
	.partition_get = sq_partition_get,
	.partition_list = sq_partition_list,
	.partition_set_setup = sq_partition_set_setup,
	.partition_delete = sq_partition_delete,
	.credential_insert = sq_credential_insert,
	.credential_find = sq_credential_find,
	.credential_list = sq_credential_list,
	.credential_revoke = sq_credential_revoke,
	.object_insert = sq_object_insert,
	.object_get = sq_object_get,
	.object_list = sq_object_list,
	.object_update = sq_object_update,
	.object_delete = sq_object_delete,
	.audit_insert = sq_audit_insert,
	.audit_foreach = sq_audit_foreach,
	.audit_delete_upto = sq_audit_delete_upto,
	.audit_after = sq_audit_after,
};

/* One integer from a PRAGMA or query; *out untouched when there is no row. */
static kw_rv sq_int(struct sq_backend *s, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	kw_rv rv;
	int rc;

	rv = sq_prepare(s, sql, &st);
	if (rv)
		return rv;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_DONE)
		rv = sq_fail(s, rc, sql);
	sqlite3_finalize(st);
	return rv;
}

static kw_rv sq_migrate(struct sq_backend *s)
{
	int64_t have_meta = 0, version = 0;
	unsigned char *val = NULL;
	size_t len = 0;
	char buf[64];
	kw_rv rv;

	rv = sq_begin(&s->base);
	if (rv)
		return rv;
	rv = sq_int(s, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'", &have_meta);
	if (rv)
		goto out;
	if (have_meta) {
		rv = sq_meta_get(&s->base, "schema_version", &val, &len);
		if (rv == KW_ERR_NOT_FOUND) {
			rv = kw_error_set(KW_ERR_STORE, "store %s: not a keyward store (meta has no schema_version)",
					  s->path);
			goto out;
		}
		if (rv)
			goto out;
		snprintf(buf, sizeof buf, "%.*s", (int)(len < 31 ? len : 31), (const char *)val);
		version = strtoll(buf, NULL, 10);
		free(val);
		if (version < 1) {
			rv = kw_error_set(KW_ERR_STORE, "store %s: bad schema version '%s'", s->path, buf);
			goto out;
		}
	}
	if (version > SCHEMA_VERSION) {
		rv = kw_error_set(KW_ERR_STORE,
				  "store %s: schema version %" PRId64 " is newer than this keywardd supports (%d)",
				  s->path, version, SCHEMA_VERSION);
		goto out;
	}
	if (version == SCHEMA_VERSION)
		goto out;
	for (int v = (int)version; v < SCHEMA_VERSION; v++) {
		kw_debug(KW_DEBUG_STORE, "store %s: migrating schema %d -> %d", s->path, v, v + 1);
		snprintf(buf, sizeof buf, "migrating the schema to version %d", v + 1);
		rv = sq_exec(s, migrations[v].sql, buf);
		if (!rv && migrations[v].fixup)
			rv = migrations[v].fixup(s);
		if (rv)
			goto out;
	}
	snprintf(buf, sizeof buf, "%d", SCHEMA_VERSION);
	rv = sq_meta_put(&s->base, "schema_version", buf, strlen(buf));
	if (rv)
		goto out;
	return sq_commit(&s->base);
out:
	if (rv)
		sq_rollback(&s->base);
	else
		rv = sq_commit(&s->base);
	return rv;
}

kw_rv kw_sqlite_open(const char *path, uint64_t max_bytes, struct kw_backend **out)
{
	struct sq_backend *s;
	bool memory = strcmp(path, ":memory:") == 0;
	int64_t page_size = 0, pages = 0;
	char sql[96];
	sqlite3_stmt *st;
	kw_rv rv;
	int rc, fd;

	*out = NULL;
	s = calloc(1, sizeof *s);
	if (!s)
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
	s->base.ops = &sq_ops;
	s->path = strdup(path);
	if (!s->path) {
		free(s);
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
	}
	/* a new store is readable by its owner only; SQLite's -wal and -shm follow the main file */
	if (!memory) {
		/* its directory too, when missing: mode 0700, the store is keywardd's alone */
		int made = 0;
		if ((rv = kw_make_parents(path, &made))) {
			char why[400];
			snprintf(why, sizeof why, "%s", kw_last_error());
			rv = kw_error_set(KW_ERR_STORE, "store %s: %s", path, why);
			goto fail;
		}
		if (made)
			kw_log(KW_LOG_INFO, "store %s: created its directory (mode 0700)", path);
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
		else if (errno != EEXIST) {
			rv = kw_error_set(KW_ERR_STORE, "store %s: cannot create: %s", path, strerror(errno));
			goto fail;
		}
	}
	rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rv = sq_fail(s, rc, "opening");
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, 5000);
	rv = sq_exec(s, "PRAGMA foreign_keys = ON", "enabling foreign keys");
	if (rv)
		goto fail;
	rv = sq_prepare(s, "PRAGMA journal_mode = WAL", &st);
	if (rv)
		goto fail;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rv = sq_fail(s, rc, "switching to WAL mode");
		sqlite3_finalize(st);
		goto fail;
	}
	if (!memory && strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
		rv = kw_error_set(KW_ERR_STORE, "store %s: cannot switch to WAL mode (journal mode is %s)", path,
				  (const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
		goto fail;
	}
	sqlite3_finalize(st);
	rv = sq_exec(s, "PRAGMA synchronous = FULL", "setting synchronous=FULL");
	if (rv)
		goto fail;
	rv = sq_migrate(s);
	if (rv)
		goto fail;
	if (max_bytes) {
		rv = sq_int(s, "PRAGMA page_size", &page_size);
		if (rv)
			goto fail;
		if (page_size <= 0 || max_bytes / (uint64_t)page_size < 1) {
			rv = kw_error_set(KW_ERR_CONFIG, "store %s: size cap of %" PRIu64 " bytes is below one page", path,
					  max_bytes);
			goto fail;
		}
		snprintf(sql, sizeof sql, "PRAGMA max_page_count = %" PRIu64, max_bytes / (uint64_t)page_size);
		rv = sq_int(s, sql, &pages);
		if (rv)
			goto fail;
		kw_debug(KW_DEBUG_STORE, "store %s: capped at %" PRId64 " pages of %" PRId64 " bytes", path, pages,
			 page_size);
	}
	kw_debug(KW_DEBUG_STORE, "store %s: open, schema version %d", path, SCHEMA_VERSION);
	*out = &s->base;
	return KW_OK;
fail:
	sq_close(&s->base);
	return rv;
}
