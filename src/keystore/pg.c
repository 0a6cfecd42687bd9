/*
 * The PostgreSQL backend of the keystore (libpq): the same rows, schema
 * versions and forward migrations as the SQLite backend (sqlite.c), so
 * sealed blobs and their AAD are the same bytes in either store, and
 * several keywardd nodes can share one database.
 *
 * One connection per keystore; the keystore mutex serialises its calls.
 * Across nodes, every write transaction first takes a transaction-scoped
 * advisory lock (WRITE_LOCK) and so runs alone, as SQLite's BEGIN
 * IMMEDIATE does in one file: the audit chain's head in meta is read and
 * advanced by one node at a time, and its records form one sequence
 * whichever node appends them. Reads outside a transaction see what was
 * committed (READ COMMITTED).
 *
 * Every change to objects (create, update, delete, a partition's removal)
 * also bumps meta('store.generation') in its transaction; a node
 * compares it with the value its key cache was filled under before it
 * uses a cached key (kw_keystore_generation), so no node signs with a key
 * another node deleted, moved or changed.
 *
 * Integers are BIGINT and blobs BYTEA; results come back in binary
 * format. A connection that broke is reset before the next transaction
 * or read, never inside a transaction; a lone read or a BEGIN that finds
 * it broken is sent again once on the new connection.
 */
#include "keystore/backend.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/error.h"
#include "common/log.h"

/* "keyw" */
#define WRITE_LOCK "1801812343"

#define OID_INT8 20
#define OID_BYTEA 17
#define OID_TEXT 25

#define MAX_ARGS 24

struct pg_backend {
	struct kw_backend base;
	PGconn *conn;
	char where[256]; /* postgresql://host:port/db, no password: for messages */
	bool in_tx;
};

static struct pg_backend *pg(struct kw_backend *b)
{
	return (struct pg_backend *)b;
}

/* ---- parameters ---- */

struct args {
	int n;
	const char *val[MAX_ARGS];
	int len[MAX_ARGS];
	int fmt[MAX_ARGS];
	Oid type[MAX_ARGS];
	unsigned char num[MAX_ARGS][8];
};

static void a_i64(struct args *a, int64_t v)
{
	uint64_t u = (uint64_t)v;
	int i = a->n++;

	for (int k = 0; k < 8; k++)
		a->num[i][k] = (unsigned char)(u >> (56 - 8 * k));
	a->val[i] = (const char *)a->num[i];
	a->len[i] = 8;
	a->fmt[i] = 1;
	a->type[i] = OID_INT8;
}

/* NULL is SQL NULL */
static void a_text(struct args *a, const char *s)
{
	int i = a->n++;

	a->val[i] = s;
	a->len[i] = 0;
	a->fmt[i] = 0;
	a->type[i] = OID_TEXT;
}

/* NULL or empty is SQL NULL */
static void a_blob(struct args *a, const void *p, size_t len)
{
	int i = a->n++;

	a->val[i] = p && len ? p : NULL;
	a->len[i] = (int)len;
	a->fmt[i] = 1;
	a->type[i] = OID_BYTEA;
}

/* ---- results ---- */

static int64_t g_i64(const PGresult *r, int row, int col)
{
	const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
	uint64_t u = 0;

	if (PQgetisnull(r, row, col))
		return 0;
	if (PQgetlength(r, row, col) == 4) {
		for (int k = 0; k < 4; k++)
			u = u << 8 | p[k];
		return (int64_t)(int32_t)(uint32_t)u;
	}
	if (PQgetlength(r, row, col) == 1) /* boolean */
		return p[0];
	for (int k = 0; k < 8; k++)
		u = u << 8 | p[k];
	return (int64_t)u;
}

static void g_text(char *dst, size_t cap, const PGresult *r, int row, int col)
{
	snprintf(dst, cap, "%.*s", PQgetlength(r, row, col), PQgetvalue(r, row, col));
}

static char *g_text_dup(const PGresult *r, int row, int col)
{
	return strndup(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static kw_rv g_blob(const PGresult *r, int row, int col, unsigned char **out, size_t *len)
{
	int n = PQgetlength(r, row, col);

	*out = NULL;
	*len = 0;
	if (PQgetisnull(r, row, col) || n <= 0)
		return KW_OK;
	*out = malloc((size_t)n);
	if (!*out)
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory reading a row");
	memcpy(*out, PQgetvalue(r, row, col), (size_t)n);
	*len = (size_t)n;
	return KW_OK;
}

/* ---- running statements ---- */

/* Maps a failed result (or a failed connection when res is NULL) to a kw_rv. */
static kw_rv pg_fail(struct pg_backend *p, const PGresult *res, const char *what)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char msg[400];
	size_t l;

	snprintf(msg, sizeof msg, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(p->conn));
	l = strlen(msg);
	while (l && (msg[l - 1] == '\n' || msg[l - 1] == ' '))
		msg[--l] = '\0';
	if (!msg[0])
		snprintf(msg, sizeof msg, "the connection to the server failed");
	if (state && strcmp(state, "23505") == 0)
		return kw_error_set(KW_ERR_EXISTS, "store %s: %s: %s", p->where, what, msg);
	if (state && (strcmp(state, "53100") == 0 || strcmp(state, "54000") == 0))
		return kw_error_set(KW_ERR_STORE_FULL, "store %s: %s: the store is full (%s)", p->where, what, msg);
	if (state && strcmp(state, "53200") == 0)
		return kw_error_set(KW_ERR_NO_MEMORY, "store %s: %s: out of memory (%s)", p->where, what, msg);
	return kw_error_set(KW_ERR_STORE, "store %s: %s: %s", p->where, what, msg);
}

/* A broken connection is reset before a new transaction or a lone read, never inside one. */
static kw_rv pg_ready(struct pg_backend *p)
{
	if (PQstatus(p->conn) == CONNECTION_OK)
		return KW_OK;
	if (p->in_tx)
		return kw_error_set(KW_ERR_STORE, "store %s: the connection broke inside a transaction", p->where);
	kw_log(KW_LOG_WARN, "store %s: connection lost, reconnecting", p->where);
	PQreset(p->conn);
	if (PQstatus(p->conn) != CONNECTION_OK)
		return pg_fail(p, NULL, "reconnecting");
	kw_log(KW_LOG_INFO, "store %s: reconnected", p->where);
	return KW_OK;
}

/*
 * Runs sql with the arguments (a may be NULL); *res (when res is not
 * NULL) holds the result on success, for the caller to PQclear.
 */
static kw_rv pg_run(struct pg_backend *p, const char *sql, const struct args *a, const char *what, PGresult **res)
{
	PGresult *r;
	kw_rv rv;

	if (res)
		*res = NULL;
	rv = pg_ready(p);
	if (rv)
		return rv;
	kw_debug(KW_DEBUG_STORE, "store %s: %s", p->where, sql);
	for (int attempt = 0;; attempt++) {
		if (a)
			r = PQexecParams(p->conn, sql, a->n, a->type, a->val, a->len, a->fmt, 1);
		else
			r = PQexecParams(p->conn, sql, 0, NULL, NULL, NULL, NULL, 1);
		/*
		 * A connection found broken outside a transaction (the server
		 * restarted since the last call) is reset and the statement sent
		 * once more: it is a lone read or a BEGIN, which nothing saw.
		 */
		if (attempt > 0 || p->in_tx || PQstatus(p->conn) != CONNECTION_BAD)
			break;
		PQclear(r);
		rv = pg_ready(p);
		if (rv)
			return rv;
	}
	if (!r)
		return pg_fail(p, NULL, what);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		rv = pg_fail(p, r, what);
		PQclear(r);
		return rv;
	}
	if (res)
		*res = r;
	else
		PQclear(r);
	return KW_OK;
}

/* Runs a statement that changes rows; *changed (when not NULL) is how many. */
static kw_rv pg_change(struct pg_backend *p, const char *sql, const struct args *a, const char *what, uint64_t *changed)
{
	PGresult *r;
	kw_rv rv = pg_run(p, sql, a, what, &r);

	if (rv)
		return rv;
	if (changed)
		*changed = strtoull(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return KW_OK;
}

/* Several statements without parameters (migrations). */
static kw_rv pg_script(struct pg_backend *p, const char *sql, const char *what)
{
	PGresult *r;
	kw_rv rv;

	rv = pg_ready(p);
	if (rv)
		return rv;
	r = PQexec(p->conn, sql);
	if (!r)
		return pg_fail(p, NULL, what);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		rv = pg_fail(p, r, what);
	PQclear(r);
	return rv;
}

/* ---- transactions ---- */

static kw_rv pg_begin(struct kw_backend *b)
{
	struct pg_backend *p = pg(b);
	kw_rv rv;

	rv = pg_run(p, "BEGIN", NULL, "starting a transaction", NULL);
	if (rv)
		return rv;
	p->in_tx = true;
	/* one writer at a time across every node on this database */
	rv = pg_run(p, "SELECT pg_advisory_xact_lock(" WRITE_LOCK ")", NULL, "waiting for the write lock", NULL);
	if (rv) {
		PQclear(PQexec(p->conn, "ROLLBACK"));
		p->in_tx = false;
	}
	return rv;
}

/*
 * A COMMIT whose connection broke before its answer came may have been
 * made or not: the server may have written the commit record just before
 * it went. Saying "failed" would invite the caller to make the change
 * again (a second key, a second import), so the error says the outcome is
 * unknown and what to do.
 */
static kw_rv pg_commit(struct kw_backend *b)
{
	struct pg_backend *p = pg(b);
	kw_rv rv = pg_run(p, "COMMIT", NULL, "committing", NULL);

	if (rv && PQstatus(p->conn) == CONNECTION_OK)
		PQclear(PQexec(p->conn, "ROLLBACK"));
	else if (rv && rv != KW_ERR_NO_MEMORY)
		rv = kw_error_set(KW_ERR_STORE,
				  "store %s: the connection broke during COMMIT: the change may or may not have been "
				  "made; look (enumkeys, list) before making it again",
				  p->where);
	p->in_tx = false;
	return rv;
}

static void pg_rollback(struct kw_backend *b)
{
	struct pg_backend *p = pg(b);

	if (PQstatus(p->conn) == CONNECTION_OK)
		PQclear(PQexec(p->conn, "ROLLBACK"));
	p->in_tx = false;
}

/* Counts a change of objects or credentials, inside the caller's transaction. */
static kw_rv pg_bump(struct pg_backend *p)
{
	return pg_run(p,
		      "INSERT INTO meta (key, value) VALUES ('store.generation', convert_to('1', 'UTF8'))"
		      " ON CONFLICT (key) DO UPDATE SET value ="
		      " convert_to((convert_from(meta.value, 'UTF8')::bigint + 1)::text, 'UTF8')",
		      NULL, "counting a change of the store", NULL);
}

static kw_rv pg_generation(struct kw_backend *b, uint64_t *gen)
{
	struct pg_backend *p = pg(b);
	PGresult *r;
	kw_rv rv;

	*gen = 0;
	rv = pg_run(p, "SELECT convert_from(value, 'UTF8')::bigint FROM meta WHERE key = 'store.generation'", NULL,
		    "reading the store's generation", &r);
	if (rv)
		return rv;
	if (PQntuples(r) == 1)
		*gen = (uint64_t)g_i64(r, 0, 0);
	PQclear(r);
	return KW_OK;
}

/* ---- meta ---- */

static kw_rv pg_meta_get(struct kw_backend *b, const char *key, unsigned char **val, size_t *len)
{
	struct pg_backend *p = pg(b);
	struct args a = {0};
	PGresult *r;
	kw_rv rv;

	a_text(&a, key);
	rv = pg_run(p, "SELECT value FROM meta WHERE key = $1", &a, "reading meta", &r);
	if (rv)
		return rv;
	if (PQntuples(r) == 0) {
		rv = KW_ERR_NOT_FOUND;
	} else {
		rv = g_blob(r, 0, 0, val, len);
		if (!rv && !*val) {
			/* an empty value: a valid pointer with length 0 */
			*val = malloc(1);
			if (!*val)
				rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
		}
	}
	PQclear(r);
	return rv;
}

static kw_rv pg_meta_put(struct kw_backend *b, const char *key, const void *val, size_t len)
{
	struct args a = {0};

	a_text(&a, key);
	a_blob(&a, len ? val : "", len);
	a.val[1] = len ? val : ""; /* an empty value is '', not NULL */
	return pg_change(pg(b),
			 "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2", &a,
			 "writing meta", NULL);
}

/* ---- partitions ---- */

static kw_rv pg_partition_insert(struct kw_backend *b, const char *name, const unsigned char *setup_hash,
				 int64_t created, uint64_t *id_out)
{
	struct pg_backend *p = pg(b);
	struct args a = {0};
	PGresult *r;
	kw_rv rv;

	a_text(&a, name);
	a_blob(&a, setup_hash, setup_hash ? KW_SETUP_HASH_LEN : 0);
	a_i64(&a, created);
	rv = pg_run(p, "INSERT INTO partitions (name, setup_hash, created) VALUES ($1, $2, $3) RETURNING id", &a,
		    "creating a partition", &r);
	if (rv)
		return rv;
	*id_out = (uint64_t)g_i64(r, 0, 0);
	PQclear(r);
	return KW_OK;
}

#define PART_COLS                                                                                                      \
	"p.id, p.name, p.setup_hash, "                                                                                 \
	"(SELECT count(*) FROM objects o WHERE o.partition_id = p.id), "                                               \
	"(SELECT count(*) FROM credentials c WHERE c.partition_id = p.id)"

static void part_read(const PGresult *r, int row, struct kw_partition_info *out)
{
	memset(out, 0, sizeof *out);
	out->id = (uint64_t)g_i64(r, row, 0);
	g_text(out->name, sizeof out->name, r, row, 1);
	out->setup_pending = !PQgetisnull(r, row, 2);
	out->objects = (unsigned)g_i64(r, row, 3);
	out->credentials = (unsigned)g_i64(r, row, 4);
}

static kw_rv pg_partition_get(struct kw_backend *b, const char *name, uint64_t id, struct kw_partition_info *out,
			      unsigned char setup_hash[KW_SETUP_HASH_LEN], bool *has_setup)
{
	struct pg_backend *p = pg(b);
	struct args a = {0};
	PGresult *r;
	kw_rv rv;

	if (name)
		a_text(&a, name);
	else
		a_i64(&a, (int64_t)id);
	rv = pg_run(p,
		    name ? "SELECT " PART_COLS " FROM partitions p WHERE p.name = $1"
			 : "SELECT " PART_COLS " FROM partitions p WHERE p.id = $1",
		    &a, "reading a partition", &r);
	if (rv)
		return rv;
	if (PQntuples(r) == 1) {
		part_read(r, 0, out);
		if (has_setup)
			*has_setup = false;
		if (setup_hash && has_setup && PQgetlength(r, 0, 2) == KW_SETUP_HASH_LEN) {
			memcpy(setup_hash, PQgetvalue(r, 0, 2), KW_SETUP_HASH_LEN);
			*has_setup = true;
		}
	} else if (name) {
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no partition named '%s'", name);
	} else {
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no partition with id %" PRIu64, id);
	}
	PQclear(r);
	return rv;
}

static kw_rv pg_partition_list(struct kw_backend *b, struct kw_partition_info **out, size_t *n)
{
	struct kw_partition_info *arr;
	PGresult *r;
	kw_rv rv;
	int rows;

	rv = pg_run(pg(b), "SELECT " PART_COLS " FROM partitions p ORDER BY p.name", NULL, "listing partitions", &r);
	if (rv)
		return rv;
	rows = PQntuples(r);
	arr = calloc(rows ? (size_t)rows : 1, sizeof *arr);
	if (!arr) {
		PQclear(r);
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory listing partitions");
	}
	for (int i = 0; i < rows; i++)
		part_read(r, i, &arr[i]);
	PQclear(r);
	*out = arr;
	*n = (size_t)rows;
	return KW_OK;
}

static kw_rv pg_partition_set_setup(struct kw_backend *b, uint64_t id, const unsigned char *setup_hash)
{
	struct args a = {0};
	uint64_t changed = 0;
	kw_rv rv;

	a_blob(&a, setup_hash, setup_hash ? KW_SETUP_HASH_LEN : 0);
	a_i64(&a, (int64_t)id);
	rv = pg_change(pg(b), "UPDATE partitions SET setup_hash = $1 WHERE id = $2", &a, "updating a partition",
		       &changed);
	if (!rv && changed == 0)
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no partition with id %" PRIu64, id);
	return rv;
}

static kw_rv pg_partition_delete(struct kw_backend *b, uint64_t id)
{
	struct pg_backend *p = pg(b);
	struct args a = {0};
	uint64_t changed = 0;
	kw_rv rv;

	/* objects and credentials go with it: ON DELETE CASCADE */
	a_i64(&a, (int64_t)id);
	rv = pg_change(p, "DELETE FROM partitions WHERE id = $1", &a, "deleting a partition", &changed);
	if (!rv && changed == 0)
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no partition with id %" PRIu64, id);
	if (!rv)
		rv = pg_bump(p);
	return rv;
}

/* ---- credentials ---- */

static kw_rv pg_credential_insert(struct kw_backend *b, const unsigned char fp[KW_FINGERPRINT_LEN],
				  uint64_t partition_id, const char *subject, int64_t created)
{
	struct args a = {0};

	a_blob(&a, fp, KW_FINGERPRINT_LEN);
	a_i64(&a, (int64_t)partition_id);
	a_text(&a, subject);
	a_i64(&a, created);
	return pg_change(
		pg(b), "INSERT INTO credentials (fingerprint, partition_id, subject, created) VALUES ($1, $2, $3, $4)",
		&a, "recording a credential", NULL);
}

static kw_rv pg_credential_find(struct kw_backend *b, const unsigned char fp[KW_FINGERPRINT_LEN],
				uint64_t *partition_id)
{
	struct args a = {0};
	PGresult *r;
	kw_rv rv;

	a_blob(&a, fp, KW_FINGERPRINT_LEN);
	rv = pg_run(pg(b), "SELECT partition_id, revoked FROM credentials WHERE fingerprint = $1", &a,
		    "looking up a credential", &r);
	if (rv)
		return rv;
	if (PQntuples(r) == 0)
		rv = kw_error_set(KW_ERR_AUTH, "store: unknown client credential");
	else if (g_i64(r, 0, 1) != 0)
		rv = kw_error_set(KW_ERR_AUTH, "store: this client credential was revoked");
	else
		*partition_id = (uint64_t)g_i64(r, 0, 0);
	PQclear(r);
	return rv;
}

static kw_rv pg_credential_list(struct kw_backend *b, const char *partition, struct kw_credential_info **out, size_t *n)
{
	struct kw_credential_info *arr;
	struct args a = {0};
	PGresult *r;
	kw_rv rv;
	int rows;

	a_text(&a, partition);
	rv = pg_run(pg(b),
		    "SELECT c.fingerprint, p.name, c.subject, c.created, c.revoked FROM credentials c"
		    " JOIN partitions p ON p.id = c.partition_id WHERE $1::text IS NULL OR p.name = $1"
		    " ORDER BY p.name, c.created, c.fingerprint",
		    &a, "listing credentials", &r);
	if (rv)
		return rv;
	rows = PQntuples(r);
	arr = calloc(rows ? (size_t)rows : 1, sizeof *arr);
	if (!arr) {
		PQclear(r);
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory listing credentials");
	}
	for (int i = 0; i < rows; i++) {
		struct kw_credential_info *c = &arr[i];

		if (PQgetlength(r, i, 0) == KW_FINGERPRINT_LEN)
			memcpy(c->fingerprint, PQgetvalue(r, i, 0), KW_FINGERPRINT_LEN);
		g_text(c->partition, sizeof c->partition, r, i, 1);
		g_text(c->subject, sizeof c->subject, r, i, 2);
		c->created = g_i64(r, i, 3);
		c->revoked = g_i64(r, i, 4);
	}
	PQclear(r);
	*out = arr;
	*n = (size_t)rows;
	return KW_OK;
}

static kw_rv pg_credential_revoke(struct kw_backend *b, const unsigned char fp[KW_FINGERPRINT_LEN], int64_t when)
{
	struct args a = {0};
	uint64_t changed = 0;
	kw_rv rv;

	a_blob(&a, fp, KW_FINGERPRINT_LEN);
	a_i64(&a, when > 0 ? when : 1);
	rv = pg_change(pg(b),
		       "UPDATE credentials SET revoked = CASE WHEN revoked = 0 THEN $2 ELSE revoked END"
		       " WHERE fingerprint = $1",
		       &a, "revoking a credential", &changed);
	if (!rv && changed == 0)
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no such client credential");
	if (!rv)
		rv = pg_bump(pg(b));
	return rv;
}

/* ---- objects ---- */

#define OBJ_COLS                                                                                                       \
	"id, partition_id, owner, name, cls, key_type, bits, curve, value, sensitive, extractable, "                   \
	"modifiable, never_extractable, always_sensitive, usages, created, pair_id, ckaid, application"

static kw_rv obj_read(const PGresult *r, int row, struct kw_object_row *o)
{
	int n;

	memset(o, 0, sizeof *o);
	o->id = (uint64_t)g_i64(r, row, 0);
	o->partition_id = (uint64_t)g_i64(r, row, 1);
	g_text(o->owner, sizeof o->owner, r, row, 2);
	g_text(o->name, sizeof o->name, r, row, 3);
	o->cls = (enum kw_class)g_i64(r, row, 4);
	o->key_type = (enum kw_key_type)g_i64(r, row, 5);
	o->bits = (unsigned)g_i64(r, row, 6);
	g_text(o->curve, sizeof o->curve, r, row, 7);
	o->sensitive = g_i64(r, row, 9) != 0;
	o->extractable = g_i64(r, row, 10) != 0;
	o->modifiable = g_i64(r, row, 11) != 0;
	o->never_extractable = g_i64(r, row, 12) != 0;
	o->always_sensitive = g_i64(r, row, 13) != 0;
	o->usages = (unsigned)g_i64(r, row, 14);
	o->created = g_i64(r, row, 15);
	o->pair_id = (uint64_t)g_i64(r, row, 16);
	n = PQgetlength(r, row, 17);
	if (!PQgetisnull(r, row, 17) && n > 0 && (size_t)n <= sizeof o->ckaid) {
		memcpy(o->ckaid, PQgetvalue(r, row, 17), (size_t)n);
		o->ckaid_len = (size_t)n;
	}
	g_text(o->application, sizeof o->application, r, row, 18);
	return g_blob(r, row, 8, &o->value, &o->value_len);
}

static kw_rv pg_object_insert(struct kw_backend *b, const struct kw_object_row *o, const struct kw_sealed *sealed)
{
	struct pg_backend *p = pg(b);
	struct args a = {0};
	kw_rv rv;

	a_i64(&a, (int64_t)o->id);
	a_i64(&a, (int64_t)o->partition_id);
	a_text(&a, o->owner);
	a_text(&a, o->name);
	a_i64(&a, (int64_t)o->cls);
	a_i64(&a, (int64_t)o->key_type);
	a_i64(&a, o->bits);
	a_text(&a, o->curve);
	a_blob(&a, o->value, o->value_len);
	a_i64(&a, o->sensitive);
	a_i64(&a, o->extractable);
	a_i64(&a, o->modifiable);
	a_i64(&a, o->never_extractable);
	a_i64(&a, o->always_sensitive);
	a_i64(&a, o->usages);
	a_i64(&a, o->created);
	a_i64(&a, (int64_t)o->pair_id);
	a_blob(&a, o->ckaid, o->ckaid_len);
	a_text(&a, o->application);
	a_blob(&a, sealed ? sealed->spki : NULL, sealed ? sealed->spki_len : 0);
	a_blob(&a, sealed ? sealed->wrapped_dek : NULL, sealed ? sealed->wrapped_dek_len : 0);
	a_blob(&a, sealed ? sealed->sealed : NULL, sealed ? sealed->sealed_len : 0);
	rv = pg_change(p,
		       "INSERT INTO objects (" OBJ_COLS ", spki, wrapped_dek, sealed) VALUES ($1, $2, $3, $4, $5, $6,"
		       " $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
		       &a, "storing an object", NULL);
	if (!rv)
		rv = pg_bump(p);
	return rv;
}

static kw_rv pg_object_get(struct kw_backend *b, uint64_t partition_id, uint64_t id, struct kw_object_row *out,
			   struct kw_sealed *sealed)
{
	struct args a = {0};
	PGresult *r;
	kw_rv rv;

	a_i64(&a, (int64_t)id);
	a_i64(&a, (int64_t)partition_id);
	rv = pg_run(pg(b),
		    "SELECT " OBJ_COLS ", spki, wrapped_dek, sealed FROM objects WHERE id = $1 AND partition_id = $2",
		    &a, "reading an object", &r);
	if (rv)
		return rv;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return kw_error_set(KW_ERR_NOT_FOUND, "store: no object 0x%" PRIx64 " in this partition", id);
	}
	rv = obj_read(r, 0, out);
	if (!rv && sealed) {
		memset(sealed, 0, sizeof *sealed);
		rv = g_blob(r, 0, 19, &sealed->spki, &sealed->spki_len);
		if (!rv)
			rv = g_blob(r, 0, 20, &sealed->wrapped_dek, &sealed->wrapped_dek_len);
		if (!rv)
			rv = g_blob(r, 0, 21, &sealed->sealed, &sealed->sealed_len);
		if (rv)
			kw_sealed_cleanup(sealed);
	}
	if (rv)
		kw_object_row_cleanup(out);
	PQclear(r);
	return rv;
}

static kw_rv pg_object_list(struct kw_backend *b, uint64_t partition_id, const char *owner, const char *name,
			    enum kw_class cls, uint64_t after_id, unsigned limit, struct kw_object_row **rows,
			    size_t *n)
{
	struct kw_object_row *arr;
	struct args a = {0};
	PGresult *r;
	size_t cnt = 0;
	kw_rv rv;
	int nrows;

	a_i64(&a, (int64_t)partition_id);
	a_i64(&a, (int64_t)after_id);
	a_text(&a, owner);
	a_text(&a, name);
	a_i64(&a, (int64_t)cls);
	if (limit) {
		a_i64(&a, limit);
	} else {
		a_i64(&a, 0);
		a.val[5] = NULL; /* LIMIT NULL: no limit */
	}
	rv = pg_run(pg(b),
		    "SELECT " OBJ_COLS " FROM objects WHERE partition_id = $1 AND id > $2"
		    " AND ($3::text IS NULL OR owner = $3) AND ($4::text IS NULL OR name = $4)"
		    " AND ($5 = 0 OR cls = $5) ORDER BY id LIMIT $6",
		    &a, "listing objects", &r);
	if (rv)
		return rv;
	nrows = PQntuples(r);
	arr = calloc(nrows ? (size_t)nrows : 1, sizeof *arr);
	if (!arr) {
		PQclear(r);
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory listing objects");
	}
	for (int i = 0; i < nrows && !rv; i++) {
		rv = obj_read(r, i, &arr[i]);
		if (!rv)
			cnt++;
	}
	PQclear(r);
	if (rv) {
		kw_object_rows_free(arr, cnt);
		return rv;
	}
	*rows = arr;
	*n = cnt;
	return KW_OK;
}

static kw_rv pg_object_update(struct kw_backend *b, const struct kw_object_row *o, const struct kw_sealed *sealed)
{
	struct pg_backend *p = pg(b);
	struct args a = {0};
	uint64_t changed = 0;
	kw_rv rv;

	a_text(&a, o->owner);
	a_text(&a, o->name);
	a_i64(&a, o->extractable);
	a_i64(&a, o->modifiable);
	a_i64(&a, o->never_extractable);
	a_i64(&a, o->always_sensitive);
	a_i64(&a, o->usages);
	a_i64(&a, (int64_t)o->pair_id);
	a_i64(&a, (int64_t)o->id);
	a_i64(&a, (int64_t)o->partition_id);
	a_i64(&a, o->sensitive);
	a_blob(&a, o->ckaid, o->ckaid_len);
	if (sealed) {
		a_blob(&a, sealed->spki, sealed->spki_len);
		a_blob(&a, sealed->wrapped_dek, sealed->wrapped_dek_len);
		a_blob(&a, sealed->sealed, sealed->sealed_len);
	}
	rv = pg_change(p,
		       sealed ? "UPDATE objects SET owner = $1, name = $2, extractable = $3, modifiable = $4,"
				" never_extractable = $5, always_sensitive = $6, usages = $7, pair_id = $8,"
				" sensitive = $11, ckaid = $12, spki = $13, wrapped_dek = $14, sealed = $15"
				" WHERE id = $9 AND partition_id = $10"
			      : "UPDATE objects SET owner = $1, name = $2, extractable = $3, modifiable = $4,"
				" never_extractable = $5, always_sensitive = $6, usages = $7, pair_id = $8,"
				" sensitive = $11, ckaid = $12 WHERE id = $9 AND partition_id = $10",
		       &a, "updating an object", &changed);
	if (!rv && changed == 0)
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no object 0x%" PRIx64 " in this partition", o->id);
	if (!rv)
		rv = pg_bump(p);
	return rv;
}

static kw_rv pg_object_delete(struct kw_backend *b, uint64_t partition_id, uint64_t id)
{
	struct pg_backend *p = pg(b);
	struct args a = {0};
	uint64_t changed = 0;
	kw_rv rv;

	a_i64(&a, (int64_t)id);
	a_i64(&a, (int64_t)partition_id);
	rv = pg_change(p, "DELETE FROM objects WHERE id = $1 AND partition_id = $2", &a, "deleting an object",
		       &changed);
	if (!rv && changed == 0)
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no object 0x%" PRIx64 " in this partition", id);
	if (!rv)
		rv = pg_bump(p);
	return rv;
}

/* ---- audit ---- */

static kw_rv pg_audit_insert(struct kw_backend *b, const struct kw_audit_rec *rec)
{
	struct args a = {0};

	if (!pg(b)->in_tx)
		return kw_error_set(KW_ERR_STORE, "store %s: an audit record outside a write transaction",
				    pg(b)->where);
	a_i64(&a, (int64_t)rec->seq);
	a_i64(&a, rec->time);
	a_text(&a, rec->partition);
	a_text(&a, rec->actor);
	a_text(&a, rec->event);
	a_text(&a, rec->detail);
	a_blob(&a, rec->prev_hash, KW_HASH_LEN);
	a_blob(&a, rec->hash, KW_HASH_LEN);
	return pg_change(pg(b),
			 "INSERT INTO audit (seq, time, partition, actor, event, detail, prev_hash, hash)"
			 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			 &a, "appending an audit record", NULL);
}

static kw_rv pg_audit_after(struct kw_backend *b, uint64_t after, unsigned limit, kw_audit_cb cb, void *ctx)
{
	struct kw_audit_rec rec;
	struct args a = {0};
	PGresult *r;
	kw_rv rv;
	int rows;

	a_i64(&a, (int64_t)after);
	a_i64(&a, limit ? (int64_t)limit : INT64_MAX);
	/* one snapshot of the records asked for (without a limit, the whole log is read in one result) */
	rv = pg_run(pg(b),
		    "SELECT seq, time, partition, actor, event, detail, prev_hash, hash FROM audit WHERE seq > $1"
		    " ORDER BY seq LIMIT $2",
		    &a, "reading the audit log", &r);
	if (rv)
		return rv;
	rows = PQntuples(r);
	for (int i = 0; i < rows && !rv; i++) {
		memset(&rec, 0, sizeof rec);
		rec.seq = (uint64_t)g_i64(r, i, 0);
		rec.time = g_i64(r, i, 1);
		rec.partition = g_text_dup(r, i, 2);
		rec.actor = g_text_dup(r, i, 3);
		rec.event = g_text_dup(r, i, 4);
		rec.detail = g_text_dup(r, i, 5);
		/* a hash of the wrong length stays zero and so fails to verify */
		if (PQgetlength(r, i, 6) == KW_HASH_LEN)
			memcpy(rec.prev_hash, PQgetvalue(r, i, 6), KW_HASH_LEN);
		if (PQgetlength(r, i, 7) == KW_HASH_LEN)
			memcpy(rec.hash, PQgetvalue(r, i, 7), KW_HASH_LEN);
		if (!rec.partition || !rec.actor || !rec.event || !rec.detail)
			rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory reading the audit log");
		else
			rv = cb(ctx, &rec);
		free(rec.partition);
		free(rec.actor);
		free(rec.event);
		free(rec.detail);
	}
	PQclear(r);
	return rv;
}

static kw_rv pg_audit_foreach(struct kw_backend *b, kw_audit_cb cb, void *ctx)
{
	return pg_audit_after(b, 0, 0, cb, ctx);
}

static kw_rv pg_audit_delete_upto(struct kw_backend *b, uint64_t seq)
{
	struct args a = {0};

	a_i64(&a, (int64_t)seq);
	return pg_change(pg(b), "DELETE FROM audit WHERE seq <= $1", &a, "removing archived audit records", NULL);
}

/* ---- schema ---- */

static kw_rv backfill_ckaid(struct pg_backend *p);

struct migration {
	const char *sql;
	kw_rv (*fixup)(struct pg_backend *p); /* NULL, or runs after sql in the same transaction */
};

/* migrations[i] takes the schema from version i to version i + 1: the SQLite backend's, in PostgreSQL's words */
static const struct migration migrations[] = {
	/* 0 -> 1: the first schema */
	{"CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA);"
	 "CREATE TABLE partitions (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
	 " setup_hash BYTEA, created BIGINT NOT NULL);"
	 "CREATE TABLE credentials (fingerprint BYTEA PRIMARY KEY,"
	 " partition_id BIGINT NOT NULL REFERENCES partitions(id) ON DELETE CASCADE,"
	 " subject TEXT NOT NULL, created BIGINT NOT NULL);"
	 "CREATE TABLE objects (id BIGINT PRIMARY KEY,"
	 " partition_id BIGINT NOT NULL REFERENCES partitions(id) ON DELETE CASCADE,"
	 " owner TEXT NOT NULL, name TEXT NOT NULL, cls BIGINT NOT NULL, key_type BIGINT NOT NULL,"
	 " bits BIGINT NOT NULL, curve TEXT NOT NULL, value BYTEA, sensitive BIGINT NOT NULL,"
	 " extractable BIGINT NOT NULL, modifiable BIGINT NOT NULL, never_extractable BIGINT NOT NULL,"
	 " always_sensitive BIGINT NOT NULL, usages BIGINT NOT NULL, created BIGINT NOT NULL,"
	 " pair_id BIGINT NOT NULL DEFAULT 0, spki BYTEA, wrapped_dek BYTEA, sealed BYTEA,"
	 " UNIQUE (partition_id, owner, name, cls));"
	 "CREATE INDEX objects_name ON objects (partition_id, name);"
	 "CREATE TABLE audit (seq BIGINT PRIMARY KEY, time BIGINT NOT NULL, partition TEXT NOT NULL,"
	 " actor TEXT NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL, prev_hash BYTEA NOT NULL,"
	 " hash BYTEA NOT NULL);",
	 NULL},
	/* 1 -> 2: PKCS#11 CKA_ID of every object, CKA_APPLICATION of data objects */
	{"ALTER TABLE objects ADD COLUMN ckaid BYTEA;"
	 "ALTER TABLE objects ADD COLUMN application TEXT NOT NULL DEFAULT '';",
	 backfill_ckaid},
	/* 2 -> 3: credentials can be revoked (the time; 0 while valid) */
	{"ALTER TABLE credentials ADD COLUMN revoked BIGINT NOT NULL DEFAULT 0;", NULL},
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* 1 -> 2: the default CKA_ID of every key-pair half, as sqlite.c's fix-up */
static kw_rv backfill_ckaid(struct pg_backend *p)
{
	unsigned char id[KW_CKAID_DEFAULT_LEN];
	PGresult *r;
	kw_rv rv;

	rv = pg_run(p,
		    "SELECT id, CASE WHEN cls = 1 THEN spki ELSE value END FROM objects"
		    " WHERE cls IN (1, 2) AND ckaid IS NULL",
		    NULL, "migrating: reading keys for their CKA_ID", &r);
	if (rv)
		return rv;
	for (int i = 0; i < PQntuples(r) && !rv; i++) {
		struct args a = {0};

		if (PQgetisnull(r, i, 1) || kw_keystore_default_ckaid((const unsigned char *)PQgetvalue(r, i, 1),
								      (size_t)PQgetlength(r, i, 1), id) != KW_OK)
			continue;
		a_blob(&a, id, sizeof id);
		a_i64(&a, g_i64(r, i, 0));
		rv = pg_change(p, "UPDATE objects SET ckaid = $1 WHERE id = $2", &a,
			       "migrating: setting the default CKA_ID", NULL);
	}
	PQclear(r);
	return rv;
}

static kw_rv pg_migrate(struct pg_backend *p)
{
	int64_t version = 0;
	unsigned char *val = NULL;
	size_t len = 0;
	char buf[64];
	PGresult *r;
	kw_rv rv;

	/* nodes starting together: one migrates, the others wait and find it done */
	rv = pg_begin(&p->base);
	if (rv)
		return rv;
	rv = pg_run(p, "SELECT to_regclass('meta') IS NOT NULL", NULL, "looking for the schema", &r);
	if (rv)
		goto out;
	if (g_i64(r, 0, 0)) {
		PQclear(r);
		rv = pg_meta_get(&p->base, "schema_version", &val, &len);
		if (rv == KW_ERR_NOT_FOUND) {
			rv = kw_error_set(KW_ERR_STORE, "store %s: not a keyward store (meta has no schema_version)",
					  p->where);
			goto out;
		}
		if (rv)
			goto out;
		snprintf(buf, sizeof buf, "%.*s", (int)(len < 31 ? len : 31), (const char *)val);
		version = strtoll(buf, NULL, 10);
		free(val);
		if (version < 1) {
			rv = kw_error_set(KW_ERR_STORE, "store %s: bad schema version '%s'", p->where, buf);
			goto out;
		}
	} else {
		PQclear(r);
	}
	if (version > SCHEMA_VERSION) {
		rv = kw_error_set(KW_ERR_STORE,
				  "store %s: schema version %" PRId64 " is newer than this keywardd supports (%d)",
				  p->where, version, SCHEMA_VERSION);
		goto out;
	}
	for (int v = (int)version; v < SCHEMA_VERSION; v++) {
		kw_debug(KW_DEBUG_STORE, "store %s: migrating schema %d -> %d", p->where, v, v + 1);
		snprintf(buf, sizeof buf, "migrating the schema to version %d", v + 1);
		rv = pg_script(p, migrations[v].sql, buf);
		if (!rv && migrations[v].fixup)
			rv = migrations[v].fixup(p);
		if (rv)
			goto out;
	}
	if (version < SCHEMA_VERSION) {
		snprintf(buf, sizeof buf, "%d", SCHEMA_VERSION);
		rv = pg_meta_put(&p->base, "schema_version", buf, strlen(buf));
	}
out:
	if (rv)
		pg_rollback(&p->base);
	else
		rv = pg_commit(&p->base);
	return rv;
}

/* ---- opening ---- */

static void pg_close(struct kw_backend *b)
{
	struct pg_backend *p = pg(b);

	if (!p)
		return;
	PQfinish(p->conn);
	free(p);
}

static const struct kw_backend_ops pg_ops = {
	.close = pg_close,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.meta_get = pg_meta_get,
	.meta_put = pg_meta_put,
	.partition_insert = pg_partition_insert,
	.partition_get = pg_partition_get,
	.partition_list = pg_partition_list,
	.partition_set_setup = pg_partition_set_setup,
	.partition_delete = pg_partition_delete,
	.credential_insert = pg_credential_insert,
	.credential_find = pg_credential_find,
	.credential_list = pg_credential_list,
	.credential_revoke = pg_credential_revoke,
	.object_insert = pg_object_insert,
	.object_get = pg_object_get,
	.object_list = pg_object_list,
	.object_update = pg_object_update,
	.object_delete = pg_object_delete,
	.audit_insert = pg_audit_insert,
	.audit_foreach = pg_audit_foreach,
	.audit_delete_upto = pg_audit_delete_upto,
	.audit_after = pg_audit_after,
	.generation = pg_generation,
};

/* libpq's notices (NOTICE: ... already exists) go to the debug log, not to stderr */
static void pg_notice(void *arg, const char *message)
{
	(void)arg;
	kw_debug(KW_DEBUG_STORE, "store: postgresql: %s", message);
}

static const char *or_none(const char *s)
{
	return s && *s ? s : "?";
}

kw_rv kw_pg_open(const char *url, uint64_t max_bytes, struct kw_backend **out)
{
	struct pg_backend *p;
	kw_rv rv;

	*out = NULL;
	p = calloc(1, sizeof *p);
	if (!p)
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
	p->base.ops = &pg_ops;
	p->conn = PQconnectdb(url);
	if (!p->conn) {
		free(p);
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory connecting to PostgreSQL");
	}
	if (PQstatus(p->conn) != CONNECTION_OK) {
		char msg[400];
		size_t l;

		snprintf(msg, sizeof msg, "%s", PQerrorMessage(p->conn));
		l = strlen(msg);
		while (l && msg[l - 1] == '\n')
			msg[--l] = '\0';
		/* named by host, port and database as libpq parsed them: the URL may hold a password */
		rv = kw_error_set(KW_ERR_STORE, "store: cannot connect to PostgreSQL (postgresql://%s:%s/%s): %s",
				  or_none(PQhost(p->conn)), or_none(PQport(p->conn)), or_none(PQdb(p->conn)), msg);
		pg_close(&p->base);
		return rv;
	}
	snprintf(p->where, sizeof p->where, "postgresql://%s:%s/%s", PQhost(p->conn), PQport(p->conn), PQdb(p->conn));
	PQsetNoticeProcessor(p->conn, pg_notice, NULL);
	if (max_bytes)
		kw_log(KW_LOG_WARN,
		       "store %s: store_max_bytes is not enforced on PostgreSQL (set a quota in the database)",
		       p->where);
	rv = pg_script(p, "SET client_min_messages = warning", "configuring the session");
	if (!rv)
		rv = pg_migrate(p);
	if (rv) {
		pg_close(&p->base);
		return rv;
	}
	kw_debug(KW_DEBUG_STORE, "store %s: open, schema version %d", p->where, SCHEMA_VERSION);
	*out = &p->base;
	return KW_OK;
}
