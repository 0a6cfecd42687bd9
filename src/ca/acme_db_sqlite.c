/*
 * ACME's records in keyward-ca.db (the SQLite backend of acme_db.c, for a
 * CA without ca.conf's database =): nonces, accounts, EAB keys, orders and
 * authorizations, in tables of their own (made at open, CREATE TABLE IF
 * NOT EXISTS: the CA's schema version is not ACME's business), on a
 * connection of their own so that ACME never waits on the CA's lock.
 * Several serve processes on one database share them: a nonce one issued
 * is good at the other, and used once in all.
 *
 * synchronous=NORMAL on this connection: after a power loss the last
 * nonces or an order's step may be lost and the client asks again; the
 * certificates themselves go through the CA's connection (FULL).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "ca/acme.h"
#include "ca/acme_db_backend.h"
#include "ca/db_backend.h"
#include "common/log.h"

#define STMTS_KEPT 48 /* more than the file has: each is prepared once */

struct sq {
	struct acme_db base;
	sqlite3 *db;
	pthread_mutex_t lock; /* one statement at a time on the connection, and the kept statements */
	unsigned inserts;     /* nonces since the last sweep */
	/*
	 * prepared statements by their SQL (this file's literals, so by
	 * address): SQLite's parser took the largest share of ACME's time in
	 * the database when every call prepared its statement again
	 */
	struct {
		const char *sql;
		sqlite3_stmt *st;
	} kept[STMTS_KEPT];
	size_t n_kept;
};

#define EAB_COLS                                                                                                       \
	" kid TEXT PRIMARY KEY, template TEXT NOT NULL, iv BLOB NOT NULL, sealed BLOB NOT NULL,"                       \
	" created INTEGER NOT NULL, account INTEGER NOT NULL DEFAULT 0"

const char ca_acme_sqlite_schema[] =
	"CREATE TABLE IF NOT EXISTS acme_nonces (nonce TEXT PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS acme_nonces_expires ON acme_nonces (expires);"
	"CREATE TABLE IF NOT EXISTS acme_accounts ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, template TEXT NOT NULL, thumb TEXT NOT NULL, jwk TEXT NOT NULL,"
	" status TEXT NOT NULL CHECK (status IN ('valid', 'deactivated')), contact TEXT NOT NULL DEFAULT '[]',"
	" eab_kid TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL, remote TEXT NOT NULL DEFAULT '',"
	" UNIQUE (template, thumb));"
	"CREATE INDEX IF NOT EXISTS acme_accounts_remote ON acme_accounts (remote, created);"
	/*
	 * the HMAC key is kept here sealed by the CA's token (acme_eab.c), not
	 * in ca.conf: config export never carries it. (Before, the column "key"
	 * held it in plain: acme_eab_migrate seals such rows.)
	 */
	"CREATE TABLE IF NOT EXISTS acme_eab (" EAB_COLS ");"
	"CREATE TABLE IF NOT EXISTS acme_orders ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, account INTEGER NOT NULL, template TEXT NOT NULL,"
	" status TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL,"
	" serial TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '');"
	"CREATE INDEX IF NOT EXISTS acme_orders_serial ON acme_orders (serial);"
	"CREATE INDEX IF NOT EXISTS acme_orders_account ON acme_orders (account, status, expires);"
	"CREATE TABLE IF NOT EXISTS acme_authz ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER NOT NULL, account INTEGER NOT NULL,"
	" value TEXT NOT NULL, wildcard INTEGER NOT NULL, status TEXT NOT NULL, expires INTEGER NOT NULL,"
	" token TEXT NOT NULL, tried TEXT NOT NULL DEFAULT '', validated INTEGER NOT NULL DEFAULT 0,"
	" error_type TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '');"
	"CREATE INDEX IF NOT EXISTS acme_authz_order ON acme_authz (order_id);";

static int fail(struct sq *db, const char *what)
{
	return ca_error("database (ACME): %s: %s", what, sqlite3_errmsg(db->db));
}

static void sq_db_close(struct acme_db *base)
{
	struct sq *db = (struct sq *)base;

	if (!db)
		return;
	for (size_t i = 0; i < db->n_kept; i++)
		sqlite3_finalize(db->kept[i].st);
	sqlite3_close(db->db);
	pthread_mutex_destroy(&db->lock);
	free(db);
}

static const struct acme_db_ops sq_ops;

int acme_db_sqlite_open(const char *path, struct acme_db **out)
{
	struct sq *db = calloc(1, sizeof *db);

	*out = NULL;
	if (!db)
		return ca_error("out of memory");
	db->base.ops = &sq_ops;
	pthread_mutex_init(&db->lock, NULL);
	if (sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		ca_error("cannot open %s: %s", path, db->db ? sqlite3_errmsg(db->db) : "out of memory");
		sq_db_close(&db->base);
		return -1;
	}
	sqlite3_busy_timeout(db->db, 30000);
	if (sqlite3_exec(db->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db->db, ca_acme_sqlite_schema, NULL, NULL, NULL) != SQLITE_OK) {
		fail(db, path);
		sq_db_close(&db->base);
		return -1;
	}
	*out = &db->base;
	return 0;
}

/*
 * Done with st: a kept statement is reset (its read or write ends) and its
 * values unbound (an EAB key does not stay behind in it), any other finalized.
 */
static void release(struct sq *db, sqlite3_stmt *st)
{
	for (size_t i = 0; i < db->n_kept; i++)
		if (db->kept[i].st == st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			return;
		}
	sqlite3_finalize(st);
}

/*
 * A statement with its parameters bound from types: 'i' long long, 't'
 * text, 'b' blob (pointer, size_t). NULL after ca_error.
 */
static sqlite3_stmt *prepv(struct sq *db, const char *sql, const char *types, va_list ap)
{
	sqlite3_stmt *st = NULL;
	int rc = SQLITE_OK;

	for (size_t i = 0; i < db->n_kept && !st; i++)
		if (db->kept[i].sql == sql)
			st = db->kept[i].st;
	if (!st) {
		if (sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
			fail(db, sql);
			return NULL;
		}
		if (db->n_kept < STMTS_KEPT) {
			db->kept[db->n_kept].sql = sql;
			db->kept[db->n_kept++].st = st;
		}
	}
	for (int i = 0; types[i] && rc == SQLITE_OK; i++) {
		if (types[i] == 'i') {
			rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, long long));
		} else if (types[i] == 't') {
			rc = sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
		} else {
			const void *p = va_arg(ap, const void *);

			rc = sqlite3_bind_blob(st, i + 1, p, (int)va_arg(ap, size_t), SQLITE_TRANSIENT);
		}
	}
	if (rc != SQLITE_OK) {
		fail(db, sql);
		release(db, st);
		return NULL;
	}
	return st;
}

static sqlite3_stmt *prep(struct sq *db, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st;
	va_list ap;

	va_start(ap, types);
	st = prepv(db, sql, types, ap);
	va_end(ap);
	return st;
}

/* Runs st to its end and finalizes it: the rows it changed, or -1. */
static int run(struct sq *db, sqlite3_stmt *st)
{
	int rc;

	if (!st)
		return -1;
	rc = sqlite3_step(st);
	release(db, st);
	if (rc != SQLITE_DONE)
		return fail(db, "write");
	return sqlite3_changes(db->db);
}

/* One writing statement under the lock: the rows it changed, or -1. */
static int exec1(struct sq *db, const char *sql, const char *types, ...)
{
	va_list ap;
	int rc;

	pthread_mutex_lock(&db->lock);
	va_start(ap, types);
	rc = run(db, prepv(db, sql, types, ap));
	va_end(ap);
	pthread_mutex_unlock(&db->lock);
	return rc;
}

/*
 * A transaction: begin, then end with the outcome (0 commits, else rolls
 * back); end returns it. begin and end take and give back the lock, the
 * _locked ones leave it to the caller.
 */
static int begin_locked(struct sq *db)
{
	return sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : fail(db, "begin");
}

static int end_locked(struct sq *db, int rc)
{
	if (!rc && sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = fail(db, "commit");
	if (rc)
		sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int begin(struct sq *db)
{
	pthread_mutex_lock(&db->lock);
	if (!begin_locked(db))
		return 0;
	pthread_mutex_unlock(&db->lock);
	return -1;
}

static int end(struct sq *db, int rc)
{
	rc = end_locked(db, rc);
	pthread_mutex_unlock(&db->lock);
	return rc;
}

static void col_text(sqlite3_stmt *st, int i, char *out, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	snprintf(out, size, "%s", t ? (const char *)t : "");
}

/* ---- nonces ---- */

/*
 * What has had its time goes, in one transaction (so that an order never
 * loses its authorizations without going itself): expired nonces, orders
 * that never issued a week after they expired with their authorizations,
 * and the oldest nonces beyond ACME_NONCES_MAX. A failure leaves it all for
 * the next sweep.
 */
static void sweep_locked(struct sq *db, time_t now)
{
	long long week_ago = (long long)now - 7 * 86400;
	int rc;

	if (begin_locked(db))
		return;
	rc = run(db, prep(db, "DELETE FROM acme_nonces WHERE expires < ?", "i", (long long)now));
	if (rc >= 0)
		rc = run(db, prep(db,
				  "DELETE FROM acme_authz WHERE order_id IN (SELECT id FROM acme_orders "
				  "WHERE serial = '' AND expires < ?)",
				  "i", week_ago));
	if (rc >= 0)
		rc = run(db, prep(db, "DELETE FROM acme_orders WHERE serial = '' AND expires < ?", "i", week_ago));
	if (rc >= 0)
		rc = run(db, prep(db,
				  "DELETE FROM acme_nonces WHERE nonce IN (SELECT nonce FROM acme_nonces "
				  "ORDER BY expires DESC LIMIT -1 OFFSET ?)",
				  "i", (long long)ACME_NONCES_MAX));
	end_locked(db, rc < 0 ? -1 : 0);
}

static int sq_nonce_new(struct acme_db *base, const char *nonce, time_t now, unsigned lifetime)
{
	struct sq *db = (struct sq *)base;
	int rc;

	pthread_mutex_lock(&db->lock);
	rc = run(db, prep(db, "INSERT INTO acme_nonces (nonce, expires) VALUES (?, ?)", "ti", nonce,
			  (long long)now + lifetime));
	if (rc >= 0 && ++db->inserts >= ACME_SWEEP_EVERY) {
		db->inserts = 0;
		sweep_locked(db, now);
	}
	pthread_mutex_unlock(&db->lock);
	return rc < 0 ? -1 : 0;
}

static int sq_nonce_use(struct acme_db *base, const char *nonce, time_t now)
{
	struct sq *db = (struct sq *)base;
	int rc;

	/* one statement: of two requests with one nonce, exactly one deletes it */
	rc = exec1(db, "DELETE FROM acme_nonces WHERE nonce = ? AND expires >= ?", "ti", nonce, (long long)now);
	return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

/* ---- accounts ---- */

static int account_row(struct sq *db, sqlite3_stmt *st, struct acme_account *a)
{
	int rc;

	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		a->id = sqlite3_column_int64(st, 0);
		col_text(st, 1, a->template_name, sizeof a->template_name);
		col_text(st, 2, a->thumb, sizeof a->thumb);
		col_text(st, 3, a->jwk, sizeof a->jwk);
		col_text(st, 4, a->status, sizeof a->status);
		col_text(st, 5, a->contact, sizeof a->contact);
		col_text(st, 6, a->eab_kid, sizeof a->eab_kid);
		a->created = (time_t)sqlite3_column_int64(st, 7);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? 1 : fail(db, "account");
	}
	release(db, st);
	return rc;
}

#define ACCOUNT_COLS "SELECT id, template, thumb, jwk, status, contact, eab_kid, created FROM acme_accounts "

static int sq_account_find(struct acme_db *base, const char *template_name, const char *thumb, struct acme_account *a)
{
	struct sq *db = (struct sq *)base;
	int rc;

	pthread_mutex_lock(&db->lock);
	rc = account_row(db, prep(db, ACCOUNT_COLS "WHERE template = ? AND thumb = ?", "tt", template_name, thumb), a);
	pthread_mutex_unlock(&db->lock);
	return rc;
}

static int sq_account_get(struct acme_db *base, long long id, struct acme_account *a)
{
	struct sq *db = (struct sq *)base;
	int rc;

	pthread_mutex_lock(&db->lock);
	rc = account_row(db, prep(db, ACCOUNT_COLS "WHERE id = ?", "i", id), a);
	pthread_mutex_unlock(&db->lock);
	return rc;
}

static int sq_account_insert(struct acme_db *base, struct acme_account *a)
{
	struct sq *db = (struct sq *)base;
	int rc;

	if (begin(db))
		return -1;
	rc = run(db, prep(db,
			  "INSERT INTO acme_accounts (template, thumb, jwk, status, contact, eab_kid, created, remote) "
			  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			  "tttttti"
			  "t",
			  a->template_name, a->thumb, a->jwk, a->status, a->contact, a->eab_kid, (long long)a->created,
			  a->remote));
	rc = rc == 1 ? 0 : -1;
	a->id = sqlite3_last_insert_rowid(db->db);
	if (!rc && a->eab_kid[0]) {
		/* a kid binds one account: the first to use it */
		rc = run(db, prep(db, "UPDATE acme_eab SET account = ? WHERE kid = ? AND template = ? AND account = 0",
				  "itt", a->id, a->eab_kid, a->template_name));
		rc = rc == 1 ? 0 : rc < 0 ? -1 : 1;
	}
	return end(db, rc);
}

static int sq_account_set_status(struct acme_db *base, long long id, const char *status)
{
	struct sq *db = (struct sq *)base;
	int rc;

	rc = exec1(db, "UPDATE acme_accounts SET status = ? WHERE id = ?", "ti", status, id);
	return rc < 0 ? -1 : 0;
}

static int sq_account_set_contact(struct acme_db *base, long long id, const char *contact)
{
	struct sq *db = (struct sq *)base;
	int rc;

	rc = exec1(db, "UPDATE acme_accounts SET contact = ? WHERE id = ?", "ti", contact, id);
	return rc < 0 ? -1 : 0;
}

static int sq_account_set_key(struct acme_db *base, long long id, const char *thumb, const char *jwk)
{
	struct sq *db = (struct sq *)base;

	/* UNIQUE (template, thumb) leaves the row as it was when another account of the template has the key */
	int rc = exec1(db, "UPDATE OR IGNORE acme_accounts SET thumb = ?, jwk = ? WHERE id = ?", "tti", thumb, jwk, id);

	return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

/* One number a query counts, or -1. */
static long long count(struct sq *db, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	long long n = -1;

	pthread_mutex_lock(&db->lock);
	va_start(ap, types);
	st = prepv(db, sql, types, ap);
	va_end(ap);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	else if (st)
		fail(db, "count");
	release(db, st);
	pthread_mutex_unlock(&db->lock);
	return n;
}

static long long sq_accounts_since(struct acme_db *base, const char *remote, time_t since)
{
	struct sq *db = (struct sq *)base;

	return count(db, "SELECT COUNT(*) FROM acme_accounts WHERE remote = ? AND created >= ?", "ti", remote,
		     (long long)since);
}

static long long sq_orders_pending(struct acme_db *base, long long account, time_t now)
{
	struct sq *db = (struct sq *)base;

	return count(db, "SELECT COUNT(*) FROM acme_orders WHERE account = ? AND status = 'pending' AND expires >= ?",
		     "ii", account, (long long)now);
}

static long sq_orders_of(struct acme_db *base, long long account, time_t now, long long *ids, size_t max)
{
	struct sq *db = (struct sq *)base;
	sqlite3_stmt *st;
	long n = 0;
	int rc = SQLITE_DONE;

	pthread_mutex_lock(&db->lock);
	st = prep(db, "SELECT id FROM acme_orders WHERE account = ? AND expires >= ? ORDER BY id DESC LIMIT ?", "iii",
		  account, (long long)now, (long long)max);
	while (st && (size_t)n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
		ids[n++] = sqlite3_column_int64(st, 0);
	if (st && rc != SQLITE_ROW && rc != SQLITE_DONE)
		n = fail(db, "orders");
	if (!st)
		n = -1;
	release(db, st);
	pthread_mutex_unlock(&db->lock);
	return n;
}

/* ---- external account binding keys ---- */

static int sq_eab_insert(struct acme_db *base, const char *template_name, const char *kid, const unsigned char *iv,
			 const unsigned char *sealed, size_t len)
{
	struct sq *db = (struct sq *)base;
	int rc = exec1(
		db, "INSERT INTO acme_eab (kid, template, iv, sealed, created) VALUES (?, ?, ?, ?, strftime('%s'))",
		"ttbb", kid, template_name, (const void *)iv, (size_t)ACME_EAB_IV_LEN, (const void *)sealed, len);

	return rc == 1 ? 0 : -1;
}

static int sq_eab_sealed(struct acme_db *base, const char *template_name, const char *kid,
			 unsigned char iv[ACME_EAB_IV_LEN], unsigned char sealed[ACME_EAB_SEALED_MAX], size_t *len)
{
	struct sq *db = (struct sq *)base;
	sqlite3_stmt *st;
	int rc = -1;
	size_t n;

	pthread_mutex_lock(&db->lock);
	st = prep(db, "SELECT iv, sealed FROM acme_eab WHERE kid = ? AND template = ? AND account = 0", "tt", kid,
		  template_name);
	if (st) {
		rc = sqlite3_step(st);
		n = rc == SQLITE_ROW ? (size_t)sqlite3_column_bytes(st, 1) : 0;
		if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == ACME_EAB_IV_LEN && n &&
		    n <= ACME_EAB_SEALED_MAX) {
			memcpy(iv, sqlite3_column_blob(st, 0), ACME_EAB_IV_LEN);
			memcpy(sealed, sqlite3_column_blob(st, 1), n);
			*len = n;
			rc = 0;
		} else if (rc == SQLITE_ROW) {
			rc = ca_fail(CA_ERR_CONFLICT, "the sealed EAB key of kid %s is damaged (%zu bytes)", kid, n);
		} else {
			rc = rc == SQLITE_DONE ? 1 : fail(db, "EAB key");
		}
		release(db, st);
	}
	pthread_mutex_unlock(&db->lock);
	return rc;
}

/* Whether keyward-ca.db's acme_eab is the old one, with the plain key: 1, 0, -1 error. */
static int eab_plain_locked(struct sq *db)
{
	sqlite3_stmt *st = prep(db, "SELECT COUNT(*) FROM pragma_table_info('acme_eab') WHERE name = 'key'", "");
	int rc;

	if (!st)
		return -1;
	rc = sqlite3_step(st);
	rc = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) > 0 : fail(db, "acme_eab's columns");
	release(db, st);
	return rc;
}

/*
 * Rows are copied, each sealed, into a table of the new shape that then
 * takes the old one's place, in one transaction: a failure leaves the old
 * table as it was. secure_delete makes SQLite overwrite the old rows'
 * bytes with zeros as it frees them, and the checkpoint that follows
 * writes the zeros into the database file and empties the WAL, which
 * held the plain keys too.
 */
static int sq_eab_migrate(struct acme_db *base, acme_eab_seal_fn seal, void *arg)
{
	struct sq *db = (struct sq *)base;
	unsigned char key[ACME_EAB_KEY_LEN], iv[ACME_EAB_IV_LEN], sealed[ACME_EAB_SEALED_MAX];
	char kid[64], tmpl[CA_NAME_MAX + 1];
	sqlite3_stmt *st = NULL;
	size_t len;
	long long n = 0;
	int rc, step = SQLITE_DONE;

	pthread_mutex_lock(&db->lock);
	if ((rc = eab_plain_locked(db)) <= 0) {
		pthread_mutex_unlock(&db->lock);
		return rc;
	}
	rc = sqlite3_exec(db->db, "PRAGMA secure_delete = ON", NULL, NULL, NULL) == SQLITE_OK
		     ? 0
		     : fail(db, "secure_delete");
	if (rc || begin_locked(db)) {
		pthread_mutex_unlock(&db->lock);
		return -1;
	}
	/* again inside the transaction: another serve starting on the database may have sealed them meanwhile */
	if ((rc = eab_plain_locked(db)) <= 0) {
		end_locked(db, 0);
		sqlite3_exec(db->db, "PRAGMA secure_delete = OFF", NULL, NULL, NULL);
		pthread_mutex_unlock(&db->lock);
		return rc;
	}
	rc = sqlite3_exec(db->db, "CREATE TABLE acme_eab_new (" EAB_COLS ")", NULL, NULL, NULL) == SQLITE_OK
		     ? 0
		     : fail(db, "acme_eab_new");
	/* (not kept: this runs once, and the table it reads goes) */
	if (!rc && sqlite3_prepare_v2(db->db, "SELECT kid, template, key, created, account FROM acme_eab", -1, &st,
				      NULL) != SQLITE_OK)
		rc = fail(db, "reading acme_eab");
	while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
		col_text(st, 0, kid, sizeof kid);
		col_text(st, 1, tmpl, sizeof tmpl);
		len = sizeof sealed;
		if (sqlite3_column_bytes(st, 2) != ACME_EAB_KEY_LEN) {
			rc = ca_fail(CA_ERR_CONFLICT,
				     "the EAB key of kid %s in acme_eab is not %d bytes: remove its row", kid,
				     ACME_EAB_KEY_LEN);
			break;
		}
		memcpy(key, sqlite3_column_blob(st, 2), ACME_EAB_KEY_LEN);
		rc = seal(arg, tmpl, kid, key, iv, sealed, &len);
		OPENSSL_cleanse(key, sizeof key);
		if (!rc && run(db, prep(db, "INSERT INTO acme_eab_new VALUES (?, ?, ?, ?, ?, ?)", "ttbbii", kid, tmpl,
					(const void *)iv, sizeof iv, (const void *)sealed, len,
					sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4))) != 1)
			rc = -1;
		n++;
	}
	if (!rc && step != SQLITE_DONE)
		rc = fail(db, "reading acme_eab");
	sqlite3_finalize(st);
	if (!rc && sqlite3_exec(db->db, "DROP TABLE acme_eab; ALTER TABLE acme_eab_new RENAME TO acme_eab", NULL, NULL,
				NULL) != SQLITE_OK)
		rc = fail(db, "replacing acme_eab");
	rc = end_locked(db, rc);
	if (!rc && sqlite3_wal_checkpoint_v2(db->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL) != SQLITE_OK)
		/* sealed already: the old bytes leave the WAL at a later checkpoint */
		kw_log(KW_LOG_WARN,
		       "keyward-ca: the EAB keys are sealed, but the WAL still holds them in plain "
		       "until the next checkpoint: %s",
		       sqlite3_errmsg(db->db));
	sqlite3_exec(db->db, "PRAGMA secure_delete = OFF", NULL, NULL, NULL);
	pthread_mutex_unlock(&db->lock);
	return rc ? -1 : (int)n;
}

/* ---- orders and authorizations ---- */

static int sq_order_insert(struct acme_db *base, struct acme_order *o, const char *const *names,
			   const char (*tokens)[ACME_NONCE_LEN + 1], size_t n)
{
	struct sq *db = (struct sq *)base;
	int rc;

	if (begin(db))
		return -1;
	rc = run(db, prep(db,
			  "INSERT INTO acme_orders (account, template, status, created, expires) "
			  "VALUES (?, ?, 'pending', ?, ?)",
			  "itii", o->account, o->template_name, (long long)o->created, (long long)o->expires));
	rc = rc == 1 ? 0 : -1;
	o->id = sqlite3_last_insert_rowid(db->db);
	snprintf(o->status, sizeof o->status, "pending");
	o->n_authz = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		bool wild = !strncmp(names[i], "*.", 2);

		rc = run(db, prep(db,
				  "INSERT INTO acme_authz (order_id, account, value, wildcard, status, expires, token) "
				  "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
				  "iitiit", o->id, o->account, names[i] + (wild ? 2 : 0), (long long)wild,
				  (long long)o->expires, tokens[i]));
		rc = rc == 1 ? 0 : -1;
		o->authz[o->n_authz++] = sqlite3_last_insert_rowid(db->db);
	}
	return end(db, rc);
}

static int order_row(struct sq *db, sqlite3_stmt *st, struct acme_order *o)
{
	int rc;

	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		o->id = sqlite3_column_int64(st, 0);
		o->account = sqlite3_column_int64(st, 1);
		col_text(st, 2, o->template_name, sizeof o->template_name);
		col_text(st, 3, o->status, sizeof o->status);
		o->created = (time_t)sqlite3_column_int64(st, 4);
		o->expires = (time_t)sqlite3_column_int64(st, 5);
		col_text(st, 6, o->serial, sizeof o->serial);
		col_text(st, 7, o->error, sizeof o->error);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? 1 : fail(db, "order");
	}
	release(db, st);
	if (rc)
		return rc;
	o->n_authz = 0;
	if (!(st = prep(db, "SELECT id FROM acme_authz WHERE order_id = ? ORDER BY id", "i", o->id)))
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && o->n_authz < ACME_IDS_MAX)
		o->authz[o->n_authz++] = sqlite3_column_int64(st, 0);
	release(db, st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(db, "order");
}

#define ORDER_COLS "SELECT id, account, template, status, created, expires, serial, error FROM acme_orders "

static int sq_order_get(struct acme_db *base, long long id, struct acme_order *o)
{
	struct sq *db = (struct sq *)base;
	int rc;

	pthread_mutex_lock(&db->lock);
	rc = order_row(db, prep(db, ORDER_COLS "WHERE id = ?", "i", id), o);
	pthread_mutex_unlock(&db->lock);
	return rc;
}

static int sq_order_by_serial(struct acme_db *base, const char *serial, struct acme_order *o)
{
	struct sq *db = (struct sq *)base;
	int rc;

	if (!*serial)
		return 1;
	pthread_mutex_lock(&db->lock);
	rc = order_row(db, prep(db, ORDER_COLS "WHERE serial = ?", "t", serial), o);
	pthread_mutex_unlock(&db->lock);
	return rc;
}

static int sq_order_set(struct acme_db *base, long long id, const char *status, const char *serial, const char *error)
{
	struct sq *db = (struct sq *)base;
	int rc;

	rc = exec1(db, "UPDATE acme_orders SET status = ?, serial = ?, error = ? WHERE id = ?", "ttti", status,
		   serial ? serial : "", error ? error : "", id);
	return rc < 0 ? -1 : 0;
}

static int sq_order_move(struct acme_db *base, long long id, const char *from, const char *to)
{
	struct sq *db = (struct sq *)base;
	int rc;

	rc = exec1(db, "UPDATE acme_orders SET status = ? WHERE id = ? AND status = ?", "tit", to, id, from);
	return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

static int sq_authz_get(struct acme_db *base, long long id, struct acme_authz *a)
{
	struct sq *db = (struct sq *)base;
	sqlite3_stmt *st;
	int rc = -1;

	pthread_mutex_lock(&db->lock);
	st = prep(db,
		  "SELECT id, order_id, account, value, wildcard, status, expires, token, tried, validated, error, "
		  "error_type "
		  "FROM acme_authz WHERE id = ?",
		  "i", id);
	if (st) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			a->id = sqlite3_column_int64(st, 0);
			a->order = sqlite3_column_int64(st, 1);
			a->account = sqlite3_column_int64(st, 2);
			col_text(st, 3, a->value, sizeof a->value);
			a->wildcard = sqlite3_column_int(st, 4) != 0;
			col_text(st, 5, a->status, sizeof a->status);
			a->expires = (time_t)sqlite3_column_int64(st, 6);
			col_text(st, 7, a->token, sizeof a->token);
			col_text(st, 8, a->tried, sizeof a->tried);
			a->validated = (time_t)sqlite3_column_int64(st, 9);
			col_text(st, 10, a->error, sizeof a->error);
			col_text(st, 11, a->error_type, sizeof a->error_type);
			rc = 0;
		} else {
			rc = rc == SQLITE_DONE ? 1 : fail(db, "authorization");
		}
		release(db, st);
	}
	pthread_mutex_unlock(&db->lock);
	return rc;
}

static int sq_authz_try(struct acme_db *base, long long id, const char *type)
{
	struct sq *db = (struct sq *)base;
	int rc = exec1(db, "UPDATE acme_authz SET tried = ? WHERE id = ? AND status = 'pending' AND tried = ''", "ti",
		       type, id);

	return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

static int sq_authz_try_undo(struct acme_db *base, long long id, const char *type)
{
	struct sq *db = (struct sq *)base;

	return exec1(db, "UPDATE acme_authz SET tried = '' WHERE id = ? AND status = 'pending' AND tried = ?", "it", id,
		     type) < 0
		       ? -1
		       : 0;
}

static int sq_authz_settle(struct acme_db *base, long long id, const char *type, const char *status,
			   const char *error_type, const char *error)
{
	struct sq *db = (struct sq *)base;
	int rc = exec1(
		db,
		"UPDATE acme_authz SET status = ?, tried = ?, error_type = ?, error = ?, validated = strftime('%s') "
		"WHERE id = ? AND status = 'pending' AND tried = ?",
		"ttttit", status, type, error_type ? error_type : "", error ? error : "", id, type);

	return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

static int sq_authz_set_status(struct acme_db *base, long long id, const char *status)
{
	struct sq *db = (struct sq *)base;
	int rc;

	rc = exec1(db, "UPDATE acme_authz SET status = ? WHERE id = ?", "ti", status, id);
	return rc < 0 ? -1 : 0;
}

static const struct acme_db_ops sq_ops = {
	.close = sq_db_close,
	.nonce_new = sq_nonce_new,
	.nonce_use = sq_nonce_use,
	.account_find = sq_account_find,
	.account_get = sq_account_get,
	.account_insert = sq_account_insert,
	.account_set_status = sq_account_set_status,
	.account_set_contact = sq_account_set_contact,
	.account_set_key = sq_account_set_key,
	.accounts_since = sq_accounts_since,
	.orders_pending = sq_orders_pending,
	.orders_of = sq_orders_of,
	.eab_insert = sq_eab_insert,
	.eab_sealed = sq_eab_sealed,
	.eab_migrate = sq_eab_migrate,
	.order_insert = sq_order_insert,
	.order_get = sq_order_get,
	.order_by_serial = sq_order_by_serial,
	.order_set = sq_order_set,
	.order_move = sq_order_move,
	.authz_get = sq_authz_get,
	.authz_try = sq_authz_try,
	.authz_try_undo = sq_authz_try_undo,
	.authz_settle = sq_authz_settle,
	.authz_set_status = sq_authz_set_status,
};
