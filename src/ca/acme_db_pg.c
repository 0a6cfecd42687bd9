/*
 * ACME's records in the CA's PostgreSQL database (the backend of acme_db.c
 * for ca.conf's database = postgresql://...): the tables of
 * acme_db_sqlite.c, made on first open (meta's acme.schema_version), on
 * a connection of their own (db_pgconn.c: statements prepared once,
 * reconnect after the server went away, messages without passwords).
 *
 * Every serve process on the database shares them, on one host or
 * several: a nonce issued by one is taken once by any (one DELETE, which
 * of two concurrent ones only one sees a row to), an order made through
 * one is finalized through another, a kid binds the one account whose
 * UPDATE ... WHERE account = 0 changed its row. There are no plain EAB
 * keys to seal here (PostgreSQL came after the seal): no migration.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/acme_db_backend.h"
#include "ca/db_backend.h"
#include "ca/db_pg.h"

const char ca_acme_pg_schema[] =
	"CREATE TABLE IF NOT EXISTS acme_nonces (nonce TEXT PRIMARY KEY, expires BIGINT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS acme_nonces_expires ON acme_nonces (expires);"
	"CREATE TABLE IF NOT EXISTS acme_accounts ("
	" id BIGSERIAL PRIMARY KEY, template TEXT NOT NULL, thumb TEXT NOT NULL, jwk TEXT NOT NULL,"
	" status TEXT NOT NULL CHECK (status IN ('valid', 'deactivated')), contact TEXT NOT NULL DEFAULT '[]',"
	" eab_kid TEXT NOT NULL DEFAULT '', created BIGINT NOT NULL, remote TEXT NOT NULL DEFAULT '',"
	" UNIQUE (template, thumb));"
	"CREATE INDEX IF NOT EXISTS acme_accounts_remote ON acme_accounts (remote, created);"
	/* the HMAC key sealed by the CA's token (acme_eab.c), never in plain */
	"CREATE TABLE IF NOT EXISTS acme_eab ("
	" kid TEXT PRIMARY KEY, template TEXT NOT NULL, iv BYTEA NOT NULL, sealed BYTEA NOT NULL,"
	" created BIGINT NOT NULL, account BIGINT NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS acme_orders ("
	" id BIGSERIAL PRIMARY KEY, account BIGINT NOT NULL, template TEXT NOT NULL,"
	" status TEXT NOT NULL, created BIGINT NOT NULL, expires BIGINT NOT NULL,"
	" serial TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '');"
	"CREATE INDEX IF NOT EXISTS acme_orders_serial ON acme_orders (serial);"
	"CREATE INDEX IF NOT EXISTS acme_orders_account ON acme_orders (account, status, expires);"
	"CREATE TABLE IF NOT EXISTS acme_authz ("
	" id BIGSERIAL PRIMARY KEY, order_id BIGINT NOT NULL, account BIGINT NOT NULL,"
	" value TEXT NOT NULL, wildcard BIGINT NOT NULL, status TEXT NOT NULL, expires BIGINT NOT NULL,"
	" token TEXT NOT NULL, tried TEXT NOT NULL DEFAULT '', validated BIGINT NOT NULL DEFAULT 0,"
	" error_type TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '');"
	"CREATE INDEX IF NOT EXISTS acme_authz_order ON acme_authz (order_id);";

#define NOW "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)"
#define ACCOUNT_COLS "SELECT id, template, thumb, jwk, status, contact, eab_kid, created FROM acme_accounts "
#define ORDER_COLS "SELECT id, account, template, status, created, expires, serial, error FROM acme_orders "

enum {
	S_NONCE_NEW,
	S_NONCE_USE,
	S_SWEEP_NONCES,
	S_SWEEP_AUTHZ,
	S_SWEEP_ORDERS,
	S_SWEEP_OLDEST,
	S_ACCOUNT_FIND,
	S_ACCOUNT_GET,
	S_ACCOUNT_INSERT,
	S_EAB_BIND,
	S_ACCOUNT_STATUS,
	S_ACCOUNT_CONTACT,
	S_ACCOUNT_KEY,
	S_ACCOUNTS_SINCE,
	S_ORDERS_PENDING,
	S_ORDERS_OF,
	S_EAB_INSERT,
	S_EAB_SEALED,
	S_ORDER_INSERT,
	S_AUTHZ_INSERT,
	S_ORDER_GET,
	S_ORDER_BY_SERIAL,
	S_ORDER_AUTHZ,
	S_ORDER_SET,
	S_ORDER_MOVE,
	S_AUTHZ_GET,
	S_AUTHZ_TRY,
	S_AUTHZ_UNDO,
	S_AUTHZ_SETTLE,
	S_AUTHZ_STATUS,
	S_N
};

static const char *const statements[S_N] = {
	[S_NONCE_NEW] = "INSERT INTO acme_nonces (nonce, expires) VALUES ($1, $2)",
	[S_NONCE_USE] = "DELETE FROM acme_nonces WHERE nonce = $1 AND expires >= $2",
	[S_SWEEP_NONCES] = "DELETE FROM acme_nonces WHERE expires < $1",
	[S_SWEEP_AUTHZ] = "DELETE FROM acme_authz WHERE order_id IN (SELECT id FROM acme_orders"
			  " WHERE serial = '' AND expires < $1)",
	[S_SWEEP_ORDERS] = "DELETE FROM acme_orders WHERE serial = '' AND expires < $1",
	[S_SWEEP_OLDEST] = "DELETE FROM acme_nonces WHERE nonce IN (SELECT nonce FROM acme_nonces"
			   " ORDER BY expires DESC OFFSET $1)",
	[S_ACCOUNT_FIND] = ACCOUNT_COLS "WHERE template = $1 AND thumb = $2",
	[S_ACCOUNT_GET] = ACCOUNT_COLS "WHERE id = $1",
	[S_ACCOUNT_INSERT] =
		"INSERT INTO acme_accounts (template, thumb, jwk, status, contact, eab_kid, created, remote)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
	[S_EAB_BIND] = "UPDATE acme_eab SET account = $1 WHERE kid = $2 AND template = $3 AND account = 0",
	[S_ACCOUNT_STATUS] = "UPDATE acme_accounts SET status = $1 WHERE id = $2",
	[S_ACCOUNT_CONTACT] = "UPDATE acme_accounts SET contact = $1 WHERE id = $2",
	/* as SQLite's UPDATE OR IGNORE: the row stays when another account of the template has the key */
	[S_ACCOUNT_KEY] =
		"UPDATE acme_accounts a SET thumb = $1, jwk = $2 WHERE id = $3 AND NOT EXISTS"
		" (SELECT 1 FROM acme_accounts o WHERE o.template = a.template AND o.thumb = $1 AND o.id <> $3)",
	[S_ACCOUNTS_SINCE] = "SELECT COUNT(*) FROM acme_accounts WHERE remote = $1 AND created >= $2",
	[S_ORDERS_PENDING] =
		"SELECT COUNT(*) FROM acme_orders WHERE account = $1 AND status = 'pending' AND expires >= $2",
	[S_ORDERS_OF] = "SELECT id FROM acme_orders WHERE account = $1 AND expires >= $2 ORDER BY id DESC LIMIT $3",
	[S_EAB_INSERT] = "INSERT INTO acme_eab (kid, template, iv, sealed, created) VALUES ($1, $2, $3, $4, " NOW ")",
	[S_EAB_SEALED] = "SELECT iv, sealed FROM acme_eab WHERE kid = $1 AND template = $2 AND account = 0",
	[S_ORDER_INSERT] = "INSERT INTO acme_orders (account, template, status, created, expires)"
			   " VALUES ($1, $2, 'pending', $3, $4) RETURNING id",
	[S_AUTHZ_INSERT] = "INSERT INTO acme_authz (order_id, account, value, wildcard, status, expires, token)"
			   " VALUES ($1, $2, $3, $4, 'pending', $5, $6) RETURNING id",
	[S_ORDER_GET] = ORDER_COLS "WHERE id = $1",
	[S_ORDER_BY_SERIAL] = ORDER_COLS "WHERE serial = $1 ORDER BY id LIMIT 1",
	[S_ORDER_AUTHZ] = "SELECT id FROM acme_authz WHERE order_id = $1 ORDER BY id",
	[S_ORDER_SET] = "UPDATE acme_orders SET status = $1, serial = $2, error = $3 WHERE id = $4",
	[S_ORDER_MOVE] = "UPDATE acme_orders SET status = $1 WHERE id = $2 AND status = $3",
	[S_AUTHZ_GET] = "SELECT id, order_id, account, value, wildcard, status, expires, token, tried, validated,"
			" error, error_type FROM acme_authz WHERE id = $1",
	[S_AUTHZ_TRY] = "UPDATE acme_authz SET tried = $1 WHERE id = $2 AND status = 'pending' AND tried = ''",
	[S_AUTHZ_UNDO] = "UPDATE acme_authz SET tried = '' WHERE id = $1 AND status = 'pending' AND tried = $2",
	[S_AUTHZ_SETTLE] = "UPDATE acme_authz SET status = $1, tried = $2, error_type = $3, error = $4,"
			   " validated = " NOW " WHERE id = $5 AND status = 'pending' AND tried = $6",
	[S_AUTHZ_STATUS] = "UPDATE acme_authz SET status = $1 WHERE id = $2",
};

struct pg {
	struct acme_db base;
	struct ca_pg pg;
	pthread_mutex_t lock; /* one statement (or transaction) at a time on the connection */
	unsigned inserts;     /* nonces since the last sweep */
};

static const struct acme_db_ops pg_ops;

static void pg_close(struct acme_db *b)
{
	struct pg *db = (struct pg *)b;

	ca_pg_disconnect(&db->pg);
	pthread_mutex_destroy(&db->lock);
	free(db);
}

int acme_db_pg_open(const char *url, struct acme_db **out)
{
	struct pg *db = calloc(1, sizeof *db);

	*out = NULL;
	if (!db)
		return ca_error("out of memory");
	db->base.ops = &pg_ops;
	if (ca_pg_store_open(&db->pg, url, statements, S_N, CA_ACME_PG_SCHEMA_KEY, CA_ACME_PG_SCHEMA_VERSION,
			     ca_acme_pg_schema)) {
		free(db);
		return -1;
	}
	pthread_mutex_init(&db->lock, NULL);
	*out = &db->base;
	return 0;
}

/* The rows statement i changed (or returned), or -1; *res kept when res is not NULL (rows or not). */
static long long run_locked(struct pg *db, int i, const struct ca_pg_args *a, PGresult **res)
{
	return ca_pg_rows(&db->pg, (size_t)i, a, "ACME", res);
}

/* One statement under the lock: the rows it changed, or -1. */
static long long run1(struct pg *db, int i, const struct ca_pg_args *a)
{
	long long n;

	pthread_mutex_lock(&db->lock);
	n = run_locked(db, i, a, NULL);
	pthread_mutex_unlock(&db->lock);
	return n;
}

/* Statement i under the lock: the rows it returned (*r, for PQclear), or -1. */
static long long query(struct pg *db, int i, const struct ca_pg_args *a, PGresult **r)
{
	long long n;

	pthread_mutex_lock(&db->lock);
	n = run_locked(db, i, a, r);
	pthread_mutex_unlock(&db->lock);
	return n;
}

/* Statement i's first row: 0 (*r, for PQclear), 1 none, -1 error. */
static int first_row(struct pg *db, int i, const struct ca_pg_args *a, PGresult **r)
{
	long long n = query(db, i, a, r);

	if (n == 0) {
		PQclear(*r);
		*r = NULL;
	}
	return n > 0 ? 0 : n == 0 ? 1 : -1;
}

/* A transaction (the lock held throughout): begin_locked, then end_locked with the outcome, which it returns. */
static int begin_locked(struct pg *db)
{
	if (ca_pg_exec(&db->pg, "BEGIN", "ACME: begin"))
		return -1;
	db->pg.in_tx = true;
	return 0;
}

static int end_locked(struct pg *db, int rc)
{
	return ca_pg_end(&db->pg, rc, "ACME: commit");
}

/* ---- nonces ---- */

/* As acme_db_sqlite.c's sweep, in one transaction; a failure leaves it all for the next sweep. */
static void sweep_locked(struct pg *db, time_t now)
{
	struct ca_pg_args a = {0}, w = {0}, m = {0};
	int rc;

	ca_pg_int(&a, (long long)now);
	ca_pg_int(&w, (long long)now - 7 * 86400);
	ca_pg_int(&m, ACME_NONCES_MAX);
	if (begin_locked(db))
		return;
	rc = run_locked(db, S_SWEEP_NONCES, &a, NULL) < 0 || run_locked(db, S_SWEEP_AUTHZ, &w, NULL) < 0 ||
	     run_locked(db, S_SWEEP_ORDERS, &w, NULL) < 0 || run_locked(db, S_SWEEP_OLDEST, &m, NULL) < 0;
	end_locked(db, rc ? -1 : 0);
}

static int pg_nonce_new(struct acme_db *b, const char *nonce, time_t now, unsigned lifetime)
{
	struct pg *db = (struct pg *)b;
	struct ca_pg_args a = {0};
	long long n;

	ca_pg_text(&a, nonce);
	ca_pg_int(&a, (long long)now + lifetime);
	pthread_mutex_lock(&db->lock);
	n = run_locked(db, S_NONCE_NEW, &a, NULL);
	/* each process sweeps after its own inserts: with several, the table is swept more often, never less */
	if (n >= 0 && ++db->inserts >= ACME_SWEEP_EVERY) {
		db->inserts = 0;
		sweep_locked(db, now);
	}
	pthread_mutex_unlock(&db->lock);
	return n < 0 ? -1 : 0;
}

static int pg_nonce_use(struct acme_db *b, const char *nonce, time_t now)
{
	struct ca_pg_args a = {0};
	long long n;

	ca_pg_text(&a, nonce);
	ca_pg_int(&a, (long long)now);
	/* one DELETE: of two requests with one nonce, at any processes, exactly one deletes its row */
	n = run1((struct pg *)b, S_NONCE_USE, &a);
	return n < 0 ? -1 : n == 1 ? 0 : 1;
}

/* ---- accounts ---- */

static int account_row(struct pg *db, int i, const struct ca_pg_args *a, struct acme_account *acc)
{
	PGresult *r;
	int rc = first_row(db, i, a, &r);

	if (rc)
		return rc;
	acc->id = ca_pg_int_at(r, 0, 0);
	ca_pg_text_at(acc->template_name, sizeof acc->template_name, r, 0, 1);
	ca_pg_text_at(acc->thumb, sizeof acc->thumb, r, 0, 2);
	ca_pg_text_at(acc->jwk, sizeof acc->jwk, r, 0, 3);
	ca_pg_text_at(acc->status, sizeof acc->status, r, 0, 4);
	ca_pg_text_at(acc->contact, sizeof acc->contact, r, 0, 5);
	ca_pg_text_at(acc->eab_kid, sizeof acc->eab_kid, r, 0, 6);
	acc->created = (time_t)ca_pg_int_at(r, 0, 7);
	PQclear(r);
	return 0;
}

static int pg_account_find(struct acme_db *b, const char *template_name, const char *thumb, struct acme_account *acc)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, template_name);
	ca_pg_text(&a, thumb);
	return account_row((struct pg *)b, S_ACCOUNT_FIND, &a, acc);
}

static int pg_account_get(struct acme_db *b, long long id, struct acme_account *acc)
{
	struct ca_pg_args a = {0};

	ca_pg_int(&a, id);
	return account_row((struct pg *)b, S_ACCOUNT_GET, &a, acc);
}

static int pg_account_insert(struct acme_db *b, struct acme_account *acc)
{
	struct pg *db = (struct pg *)b;
	struct ca_pg_args a = {0}, k = {0};
	PGresult *r = NULL;
	int rc;

	ca_pg_text(&a, acc->template_name);
	ca_pg_text(&a, acc->thumb);
	ca_pg_text(&a, acc->jwk);
	ca_pg_text(&a, acc->status);
	ca_pg_text(&a, acc->contact);
	ca_pg_text(&a, acc->eab_kid);
	ca_pg_int(&a, (long long)acc->created);
	ca_pg_text(&a, acc->remote);
	pthread_mutex_lock(&db->lock);
	if (begin_locked(db)) {
		pthread_mutex_unlock(&db->lock);
		return -1;
	}
	rc = run_locked(db, S_ACCOUNT_INSERT, &a, &r) == 1 ? 0 : -1;
	if (!rc)
		acc->id = ca_pg_int_at(r, 0, 0);
	PQclear(r);
	if (!rc && acc->eab_kid[0]) {
		long long n;

		/* a kid binds one account: the first to use it, whichever process took the request */
		ca_pg_int(&k, acc->id);
		ca_pg_text(&k, acc->eab_kid);
		ca_pg_text(&k, acc->template_name);
		n = run_locked(db, S_EAB_BIND, &k, NULL);
		rc = n == 1 ? 0 : n < 0 ? -1 : 1;
	}
	rc = end_locked(db, rc);
	pthread_mutex_unlock(&db->lock);
	return rc;
}

/* Statement i with (text, id): 0 or -1. */
static int set_text(struct acme_db *b, int i, const char *text, long long id)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, text);
	ca_pg_int(&a, id);
	return run1((struct pg *)b, i, &a) < 0 ? -1 : 0;
}

static int pg_account_set_status(struct acme_db *b, long long id, const char *status)
{
	return set_text(b, S_ACCOUNT_STATUS, status, id);
}

static int pg_account_set_contact(struct acme_db *b, long long id, const char *contact)
{
	return set_text(b, S_ACCOUNT_CONTACT, contact, id);
}

static int pg_account_set_key(struct acme_db *b, long long id, const char *thumb, const char *jwk)
{
	struct ca_pg_args a = {0};
	long long n;

	ca_pg_text(&a, thumb);
	ca_pg_text(&a, jwk);
	ca_pg_int(&a, id);
	n = run1((struct pg *)b, S_ACCOUNT_KEY, &a);
	return n < 0 ? -1 : n == 1 ? 0 : 1;
}

/* The number statement i counts, or -1. */
static long long count(struct acme_db *b, int i, const struct ca_pg_args *a)
{
	PGresult *r;
	long long n;

	if (first_row((struct pg *)b, i, a, &r))
		return -1;
	n = ca_pg_int_at(r, 0, 0);
	PQclear(r);
	return n;
}

static long long pg_accounts_since(struct acme_db *b, const char *remote, time_t since)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, remote);
	ca_pg_int(&a, (long long)since);
	return count(b, S_ACCOUNTS_SINCE, &a);
}

static long long pg_orders_pending(struct acme_db *b, long long account, time_t now)
{
	struct ca_pg_args a = {0};

	ca_pg_int(&a, account);
	ca_pg_int(&a, (long long)now);
	return count(b, S_ORDERS_PENDING, &a);
}

/* The first column of statement i's rows into ids (up to max): how many, or -1. */
static long ids_of(struct pg *db, int i, const struct ca_pg_args *a, long long *ids, size_t max)
{
	PGresult *r;
	long long n = query(db, i, a, &r);

	if (n < 0)
		return -1;
	if ((size_t)n > max)
		n = (long long)max;
	for (long long k = 0; k < n; k++)
		ids[k] = ca_pg_int_at(r, (int)k, 0);
	PQclear(r);
	return (long)n;
}

static long pg_orders_of(struct acme_db *b, long long account, time_t now, long long *ids, size_t max)
{
	struct ca_pg_args a = {0};

	ca_pg_int(&a, account);
	ca_pg_int(&a, (long long)now);
	ca_pg_int(&a, (long long)max);
	return ids_of((struct pg *)b, S_ORDERS_OF, &a, ids, max);
}

/* ---- external account binding keys ---- */

static int pg_eab_insert(struct acme_db *b, const char *template_name, const char *kid, const unsigned char *iv,
			 const unsigned char *sealed, size_t len)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, kid);
	ca_pg_text(&a, template_name);
	ca_pg_blob(&a, iv, ACME_EAB_IV_LEN);
	ca_pg_blob(&a, sealed, len);
	return run1((struct pg *)b, S_EAB_INSERT, &a) == 1 ? 0 : -1;
}

static int pg_eab_sealed(struct acme_db *b, const char *template_name, const char *kid,
			 unsigned char iv[ACME_EAB_IV_LEN], unsigned char sealed[ACME_EAB_SEALED_MAX], size_t *len)
{
	struct pg *db = (struct pg *)b;
	struct ca_pg_args a = {0};
	PGresult *r;
	size_t l;
	int rc;

	ca_pg_text(&a, kid);
	ca_pg_text(&a, template_name);
	if ((rc = first_row(db, S_EAB_SEALED, &a, &r)))
		return rc;
	l = (size_t)PQgetlength(r, 0, 1);
	if (PQgetlength(r, 0, 0) == ACME_EAB_IV_LEN && l && l <= ACME_EAB_SEALED_MAX) {
		memcpy(iv, PQgetvalue(r, 0, 0), ACME_EAB_IV_LEN);
		memcpy(sealed, PQgetvalue(r, 0, 1), l);
		*len = l;
		rc = 0;
	} else {
		rc = ca_fail(CA_ERR_CONFLICT, "the sealed EAB key of kid %s is damaged (%zu bytes)", kid, l);
	}
	PQclear(r);
	return rc;
}

/* ---- orders and authorizations ---- */

static int pg_order_insert(struct acme_db *b, struct acme_order *o, const char *const *names,
			   const char (*tokens)[ACME_NONCE_LEN + 1], size_t n)
{
	struct pg *db = (struct pg *)b;
	struct ca_pg_args a = {0};
	PGresult *r = NULL;
	int rc;

	ca_pg_int(&a, o->account);
	ca_pg_text(&a, o->template_name);
	ca_pg_int(&a, (long long)o->created);
	ca_pg_int(&a, (long long)o->expires);
	pthread_mutex_lock(&db->lock);
	if (begin_locked(db)) {
		pthread_mutex_unlock(&db->lock);
		return -1;
	}
	rc = run_locked(db, S_ORDER_INSERT, &a, &r) == 1 ? 0 : -1;
	if (!rc)
		o->id = ca_pg_int_at(r, 0, 0);
	PQclear(r);
	snprintf(o->status, sizeof o->status, "pending");
	o->n_authz = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		struct ca_pg_args z = {0};
		bool wild = !strncmp(names[i], "*.", 2);

		ca_pg_int(&z, o->id);
		ca_pg_int(&z, o->account);
		ca_pg_text(&z, names[i] + (wild ? 2 : 0));
		ca_pg_int(&z, wild);
		ca_pg_int(&z, (long long)o->expires);
		ca_pg_text(&z, tokens[i]);
		rc = run_locked(db, S_AUTHZ_INSERT, &z, &r) == 1 ? 0 : -1;
		if (!rc)
			o->authz[o->n_authz++] = ca_pg_int_at(r, 0, 0);
		PQclear(r);
		r = NULL;
	}
	rc = end_locked(db, rc);
	pthread_mutex_unlock(&db->lock);
	return rc;
}

static int order_row(struct pg *db, int i, const struct ca_pg_args *a, struct acme_order *o)
{
	struct ca_pg_args k = {0};
	PGresult *r;
	long long n;
	int rc = first_row(db, i, a, &r);

	if (rc)
		return rc;
	o->id = ca_pg_int_at(r, 0, 0);
	o->account = ca_pg_int_at(r, 0, 1);
	ca_pg_text_at(o->template_name, sizeof o->template_name, r, 0, 2);
	ca_pg_text_at(o->status, sizeof o->status, r, 0, 3);
	o->created = (time_t)ca_pg_int_at(r, 0, 4);
	o->expires = (time_t)ca_pg_int_at(r, 0, 5);
	ca_pg_text_at(o->serial, sizeof o->serial, r, 0, 6);
	ca_pg_text_at(o->error, sizeof o->error, r, 0, 7);
	PQclear(r);
	ca_pg_int(&k, o->id);
	n = ids_of(db, S_ORDER_AUTHZ, &k, o->authz, ACME_IDS_MAX);
	o->n_authz = n < 0 ? 0 : (size_t)n;
	return n < 0 ? -1 : 0;
}

static int pg_order_get(struct acme_db *b, long long id, struct acme_order *o)
{
	struct ca_pg_args a = {0};

	ca_pg_int(&a, id);
	return order_row((struct pg *)b, S_ORDER_GET, &a, o);
}

static int pg_order_by_serial(struct acme_db *b, const char *serial, struct acme_order *o)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, serial);
	return order_row((struct pg *)b, S_ORDER_BY_SERIAL, &a, o);
}

static int pg_order_set(struct acme_db *b, long long id, const char *status, const char *serial, const char *error)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, status);
	ca_pg_text(&a, serial);
	ca_pg_text(&a, error);
	ca_pg_int(&a, id);
	return run1((struct pg *)b, S_ORDER_SET, &a) < 0 ? -1 : 0;
}

/* Statement i with (text, id, text): 0 when it changed a row, 1 when none, -1. */
static int guarded(struct acme_db *b, int i, const char *t1, long long id, const char *t2)
{
	struct ca_pg_args a = {0};
	long long n;

	ca_pg_text(&a, t1);
	ca_pg_int(&a, id);
	if (t2)
		ca_pg_text(&a, t2);
	n = run1((struct pg *)b, i, &a);
	return n < 0 ? -1 : n == 1 ? 0 : 1;
}

static int pg_order_move(struct acme_db *b, long long id, const char *from, const char *to)
{
	return guarded(b, S_ORDER_MOVE, to, id, from);
}

static int pg_authz_get(struct acme_db *b, long long id, struct acme_authz *z)
{
	struct pg *db = (struct pg *)b;
	struct ca_pg_args a = {0};
	PGresult *r;
	int rc;

	ca_pg_int(&a, id);
	if ((rc = first_row(db, S_AUTHZ_GET, &a, &r)))
		return rc;
	z->id = ca_pg_int_at(r, 0, 0);
	z->order = ca_pg_int_at(r, 0, 1);
	z->account = ca_pg_int_at(r, 0, 2);
	ca_pg_text_at(z->value, sizeof z->value, r, 0, 3);
	z->wildcard = ca_pg_int_at(r, 0, 4) != 0;
	ca_pg_text_at(z->status, sizeof z->status, r, 0, 5);
	z->expires = (time_t)ca_pg_int_at(r, 0, 6);
	ca_pg_text_at(z->token, sizeof z->token, r, 0, 7);
	ca_pg_text_at(z->tried, sizeof z->tried, r, 0, 8);
	z->validated = (time_t)ca_pg_int_at(r, 0, 9);
	ca_pg_text_at(z->error, sizeof z->error, r, 0, 10);
	ca_pg_text_at(z->error_type, sizeof z->error_type, r, 0, 11);
	PQclear(r);
	return 0;
}

static int pg_authz_try(struct acme_db *b, long long id, const char *type)
{
	return guarded(b, S_AUTHZ_TRY, type, id, NULL);
}

static int pg_authz_try_undo(struct acme_db *b, long long id, const char *type)
{
	struct ca_pg_args a = {0};

	ca_pg_int(&a, id);
	ca_pg_text(&a, type);
	return run1((struct pg *)b, S_AUTHZ_UNDO, &a) < 0 ? -1 : 0;
}

static int pg_authz_settle(struct acme_db *b, long long id, const char *type, const char *status,
			   const char *error_type, const char *error)
{
	struct ca_pg_args a = {0};
	long long n;

	ca_pg_text(&a, status);
	ca_pg_text(&a, type);
	ca_pg_text(&a, error_type);
	ca_pg_text(&a, error);
	ca_pg_int(&a, id);
	ca_pg_text(&a, type);
	n = run1((struct pg *)b, S_AUTHZ_SETTLE, &a);
	return n < 0 ? -1 : n == 1 ? 0 : 1;
}

static int pg_authz_set_status(struct acme_db *b, long long id, const char *status)
{
	return set_text(b, S_AUTHZ_STATUS, status, id);
}

static const struct acme_db_ops pg_ops = {
	.close = pg_close,
	.nonce_new = pg_nonce_new,
	.nonce_use = pg_nonce_use,
	.account_find = pg_account_find,
	.account_get = pg_account_get,
	.account_insert = pg_account_insert,
	.account_set_status = pg_account_set_status,
	.account_set_contact = pg_account_set_contact,
	.account_set_key = pg_account_set_key,
	.accounts_since = pg_accounts_since,
	.orders_pending = pg_orders_pending,
	.orders_of = pg_orders_of,
	.eab_insert = pg_eab_insert,
	.eab_sealed = pg_eab_sealed,
	.eab_migrate = NULL,
	.order_insert = pg_order_insert,
	.order_get = pg_order_get,
	.order_by_serial = pg_order_by_serial,
	.order_set = pg_order_set,
	.order_move = pg_order_move,
	.authz_get = pg_authz_get,
	.authz_try = pg_authz_try,
	.authz_try_undo = pg_authz_try_undo,
	.authz_settle = pg_authz_settle,
	.authz_set_status = pg_authz_set_status,
};
