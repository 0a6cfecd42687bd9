/*
 * keyward-ca: a restore into a PostgreSQL CA database (restoredb, and
 * `database move` onto PostgreSQL): the rows of a checked SQLite CA
 * database (a backup's keyward-ca.db, made this CA's by backup.c) copied
 * into the database at a URL, replacing this CA's own rows or filling an
 * empty database; a database holding another CA's rows is refused.
 *
 * All of it is one transaction under the writer lock (ca_writer's row, as
 * every change takes it) and the schema lock: other processes on other
 * hosts see the old rows or the new, never half. Certificates keep their
 * order (SQLite's rowid becomes certs.id), the BIGSERIAL sequences are set
 * past the restored ids, and change_seq and the CRL-number floor come
 * along, raised above the database's own CRLs, so the next CRL number is
 * above every one either side published and the next delta selects on
 * the restored change numbers.
 *
 * ACME's and CMP's durable records replace the database's in the same
 * transaction (accounts, EAB keys, orders and authorizations, CMP secrets,
 * sealed as they were: the seal binds the CA's key, not the database), their
 * sequences set past the restored ids. Nonces and CMP's replay record are
 * left as the database has them: short-lived, and a replay record dropped
 * would let a recent CMP message be accepted again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ca/db_backend.h"
#include "ca/db_pg.h"

/*
 * each table's columns on each side, their types (i integer, t text, b
 * blob), its order; enroll: ACME's or CMP's, absent from a database whose
 * CA never served them
 */
static const struct {
	const char *table, *from, *to, *types, *order;
	bool enroll;
} tables[] = {
	{"meta", "key, value", "key, value", "tt", "key", false},
	{"certs",
	 "rowid, serial, subject, template, not_before, not_after, status, revoked_at, reason, changed_at, request_id,"
	 " der, invalid_at, change_seq",
	 "id, serial, subject, template, not_before, not_after, status, revoked_at, reason, changed_at, request_id,"
	 " der, invalid_at, change_seq",
	 "itttiitiiiibii", "rowid", false},
	{"requests", "id, csr, template, status, submitted, serial", "id, csr, template, status, submitted, serial",
	 "ibttit", "id", false},
	{"crls", "number, delta, base, this_update, next_update, seq",
	 "number, delta, base, this_update, next_update, seq", "iiiiii", "number", false},
	{"audit", "id, time, uid, event, detail", "id, time, uid, event, detail", "iiitt", "id", false},
#define ACCOUNT_COLS "id, template, thumb, jwk, status, contact, eab_kid, created, remote"
#define EAB_COLS "kid, template, iv, sealed, created, account"
#define ORDER_COLS "id, account, template, status, created, expires, serial, error"
#define AUTHZ_COLS "id, order_id, account, value, wildcard, status, expires, token, tried, validated, error_type, error"
#define SECRET_COLS "template, iv, sealed, created"
	{"acme_accounts", ACCOUNT_COLS, ACCOUNT_COLS, "ittttttit", "id", true},
	{"acme_eab", EAB_COLS, EAB_COLS, "ttbbii", "kid", true},
	{"acme_orders", ORDER_COLS, ORDER_COLS, "iittiitt", "id", true},
	{"acme_authz", AUTHZ_COLS, AUTHZ_COLS, "iiititittitt", "id", true},
	{"cmp_secrets", SECRET_COLS, SECRET_COLS, "tbbi", "template", true},
};

/* the sequences behind BIGSERIAL columns, set past the restored ids */
static const char set_sequences[] =
	"SELECT setval(pg_get_serial_sequence('certs', 'id'), COALESCE((SELECT MAX(id) FROM certs), 0) + 1, false),"
	" setval(pg_get_serial_sequence('requests', 'id'), COALESCE((SELECT MAX(id) FROM requests), 0) + 1, false),"
	" setval(pg_get_serial_sequence('audit', 'id'), COALESCE((SELECT MAX(id) FROM audit), 0) + 1, false),"
	" setval(pg_get_serial_sequence('acme_accounts', 'id'),"
	" COALESCE((SELECT MAX(id) FROM acme_accounts), 0) + 1, false),"
	" setval(pg_get_serial_sequence('acme_orders', 'id'),"
	" COALESCE((SELECT MAX(id) FROM acme_orders), 0) + 1, false),"
	" setval(pg_get_serial_sequence('acme_authz', 'id'), COALESCE((SELECT MAX(id) FROM acme_authz), 0) + 1, false)";

/* ACME's and CMP's records this restore replaces (their tables made first) */
static const char replace_enroll[] =
	"DELETE FROM acme_accounts; DELETE FROM acme_eab; DELETE FROM acme_orders; DELETE FROM acme_authz;"
	" DELETE FROM cmp_secrets";

/* what the database holds before the restore: text columns of one row */
static const char target_sql[] =
	"SELECT (SELECT value FROM meta WHERE key = '" CA_META_KEY
	"'), (SELECT value FROM meta WHERE key = '" CA_META_NAME
	"'), (SELECT value FROM meta WHERE key = '" CA_META_RETIRED "'),"
	" (SELECT COUNT(*) FROM meta WHERE key <> '" CA_PG_SCHEMA_KEY "') + (SELECT COUNT(*) FROM certs),"
	" GREATEST((SELECT COALESCE(MAX(number), 0) FROM crls),"
	" COALESCE((SELECT CAST(value AS BIGINT) FROM meta WHERE key = '" CA_META_CRL_FLOOR "'), 0)),"
	" (SELECT COUNT(*) FROM certs)";

static int sq_fail(sqlite3 *db, const char *from, const char *what)
{
	return ca_error("restore from %s: %s: %s", from, what, sqlite3_errmsg(db));
}

/* One table's rows from src into p's connection, through one prepared INSERT. */
static int copy_table(struct ca_pg *p, sqlite3 *src, const char *from, size_t t)
{
	char sql[512], marks[80] = "", num[16][24];
	const char *val[16];
	int len[16], fmt[16], rc = -1, n = (int)strlen(tables[t].types), step;
	sqlite3_stmt *st = NULL;
	PGresult *r;

	if (tables[t].enroll) {
		bool has;

		if (sqlite3_prepare_v2(src, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", -1, &st,
				       NULL) != SQLITE_OK)
			return sq_fail(src, from, tables[t].table);
		sqlite3_bind_text(st, 1, tables[t].table, -1, SQLITE_STATIC);
		has = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		st = NULL;
		if (!has)
			return 0; /* its CA never served ACME or CMP: nothing to carry */
	}
	/* an older keyward-ca's EAB keys in plain (column key): never copied, sealed first */
	if (!strcmp(tables[t].table, "acme_eab") &&
	    sqlite3_prepare_v2(src, "SELECT 1 FROM pragma_table_info('acme_eab') WHERE name = 'key'", -1, &st, NULL) ==
		    SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		sqlite3_finalize(st);
		return ca_error("restore from %s: its EAB keys are in plain, as an older keyward-ca stored them: start "
				"keyward-ca serve (or run acme-eab) once on the CA it came from, which seals them, and "
				"back it up again; nothing changed",
				from);
	}
	sqlite3_finalize(st);
	st = NULL;
	for (int c = 0; c < n; c++)
		snprintf(marks + strlen(marks), sizeof marks - strlen(marks), "%s$%d", c ? ", " : "", c + 1);
	snprintf(sql, sizeof sql, "INSERT INTO %s (%s) VALUES (%s)", tables[t].table, tables[t].to, marks);
	r = PQprepare(p->conn, "", sql, 0, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		ca_pg_fail(p, r, "restore");
		PQclear(r);
		return -1;
	}
	PQclear(r);
	snprintf(sql, sizeof sql, "SELECT %s FROM %s ORDER BY %s", tables[t].from, tables[t].table, tables[t].order);
	if (sqlite3_prepare_v2(src, sql, -1, &st, NULL) != SQLITE_OK) {
		sq_fail(src, from, tables[t].table);
		goto out;
	}
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		for (int c = 0; c < n; c++) {
			fmt[c] = 0;
			len[c] = 0;
			if (tables[t].types[c] == 'i') {
				snprintf(num[c], sizeof num[c], "%lld", (long long)sqlite3_column_int64(st, c));
				val[c] = num[c];
			} else if (tables[t].types[c] == 't') {
				val[c] = (const char *)sqlite3_column_text(st, c);
				if (!val[c])
					val[c] = "";
			} else {
				val[c] = sqlite3_column_blob(st, c);
				len[c] = sqlite3_column_bytes(st, c);
				fmt[c] = 1;
				if (!val[c])
					val[c] = "";
			}
		}
		r = PQexecPrepared(p->conn, "", n, val, len, fmt, 1);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			ca_pg_fail(p, r, "restoring the rows");
			PQclear(r);
			goto out;
		}
		PQclear(r);
	}
	if (step != SQLITE_DONE) {
		sq_fail(src, from, tables[t].table);
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(st);
	return rc;
}

/* A text value of from's meta, malloc'd; NULL if absent. */
static char *sq_meta(sqlite3 *src, const char *key)
{
	sqlite3_stmt *st = NULL;
	char *v = NULL;

	if (sqlite3_prepare_v2(src, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_text(st, 0))
		v = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return v;
}

/* What the database holds now, checked under the lock: this CA's rows, or none. */
static int check_target(struct ca_pg *p, const char *want, bool force, long long *floor, long long *had)
{
	PGresult *r = PQexec(p->conn, target_sql);
	long long rows, max;
	int rc = -1;

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		ca_pg_fail(p, r, "reading what the database holds");
		goto out;
	}
	rows = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
	max = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
	*had = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
	if (rows && (PQgetisnull(r, 0, 0) || strcmp(PQgetvalue(r, 0, 0), want))) {
		ca_fail(CA_ERR_CONFLICT,
			"database %s holds the records of another CA (\"%s\", key SHA-256 %.16s...), not of this one "
			"(key SHA-256 %.16s...): a restore fills an empty database or this CA's own, never another's; "
			"nothing changed",
			p->where, PQgetisnull(r, 0, 1) ? "no name" : PQgetvalue(r, 0, 1),
			PQgetisnull(r, 0, 0) ? "none" : PQgetvalue(r, 0, 0), want);
		goto out;
	}
	if (!PQgetisnull(r, 0, 2) && !force) {
		ca_fail(CA_ERR_REFUSED,
			"database %s holds this CA retired (%s): a restore would make it issue again; restore on the "
			"new server, or --force; nothing changed",
			p->where, PQgetvalue(r, 0, 2));
		goto out;
	}
	if (max > *floor)
		*floor = max;
	rc = 0;
out:
	PQclear(r);
	return rc;
}

int ca_db_pg_restore(const char *url, const char *from, bool force, const char *kept, long long *floor)
{
	struct ca_pg p = {0};
	sqlite3 *src = NULL;
	char *want = NULL, sql[512], detail[600];
	PGresult *r;
	long long had = 0;
	int rc = -1;

	if (sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		ca_error("cannot open %s: %s", from, src ? sqlite3_errmsg(src) : "out of memory");
		goto out;
	}
	if (!(want = sq_meta(src, CA_META_KEY))) {
		ca_error("%s names no CA (meta %s): not a keyward-ca database; nothing changed", from, CA_META_KEY);
		goto out;
	}
	if (ca_pg_connect(&p, url, NULL, 0) || ca_pg_exec(&p, "SET client_min_messages = warning", "restore"))
		goto out;
	/*
	 * checked before anything is written (and again under the lock): this
	 * CA's rows, kept as a backup file beside ca.conf, or none
	 */
	r = PQexec(p.conn, "SELECT to_regclass('certs') IS NOT NULL AND to_regclass('meta') IS NOT NULL");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		ca_pg_fail(&p, r, "restore");
		PQclear(r);
		goto out;
	}
	if (!strcmp(PQgetvalue(r, 0, 0), "t")) {
		long long early = *floor;

		if (check_target(&p, want, force, &early, &had) || (kept && had && ca_pg_backup(&p, kept))) {
			PQclear(r);
			goto out;
		}
	}
	PQclear(r);
	if (ca_pg_exec(&p, "BEGIN", "restore"))
		goto out;
	p.in_tx = true;
	if (ca_pg_exec(&p, "SELECT pg_advisory_xact_lock(" CA_PG_SCHEMA_LOCK ")", "waiting for the schema lock") ||
	    ca_pg_exec(&p, ca_db_pg_schema, "making the tables") ||
	    ca_pg_exec(&p, "SELECT generation FROM ca_writer WHERE id = 1 FOR UPDATE", "waiting for the writer lock") ||
	    check_target(&p, want, force, floor, &had) ||
	    ca_pg_exec(&p,
		       "DELETE FROM certs; DELETE FROM requests; DELETE FROM crls; DELETE FROM audit; DELETE FROM meta",
		       "removing the rows restored over") ||
	    ca_pg_exec(&p, ca_acme_pg_schema, "making ACME's tables") ||
	    ca_pg_exec(&p, ca_cmp_pg_schema, "making CMP's tables") ||
	    ca_pg_exec(&p, replace_enroll, "removing the ACME and CMP records restored over"))
		goto out;
	for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
		if (copy_table(&p, src, from, t))
			goto out;
	snprintf(sql, sizeof sql,
		 "INSERT INTO meta (key, value) VALUES ('" CA_PG_SCHEMA_KEY "', '" CA_PG_SCHEMA_VERSION_TEXT "'),"
		 " ('" CA_META_CRL_FLOOR "', '%lld'), ('" CA_ACME_PG_SCHEMA_KEY "', '%d'), ('" CA_CMP_PG_SCHEMA_KEY
		 "', '%d') ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
		 *floor, CA_ACME_PG_SCHEMA_VERSION, CA_CMP_PG_SCHEMA_VERSION);
	snprintf(detail, sizeof detail, "rows of %s loaded into %s (%s); CRL numbers continue above %lld", from,
		 p.where, had ? "replacing this CA's own" : "an empty database", *floor);
	{
		const char *vals[3] = {NULL, NULL, detail};
		char when[24], uid[24];

		snprintf(when, sizeof when, "%lld", (long long)time(NULL));
		snprintf(uid, sizeof uid, "%lld", (long long)getuid());
		vals[0] = when;
		vals[1] = uid;
		if (ca_pg_exec(&p, set_sequences, "setting the sequences") || ca_pg_exec(&p, sql, "restore"))
			goto out;
		r = PQexecParams(p.conn, "INSERT INTO audit (time, uid, event, detail) VALUES ($1, $2, 'restore', $3)",
				 3, NULL, vals, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			ca_pg_fail(&p, r, "audit");
			PQclear(r);
			goto out;
		}
		PQclear(r);
	}
	/* the responders polling the generation reload everything */
	if (ca_pg_exec(&p, "UPDATE ca_writer SET generation = generation + 1 WHERE id = 1", "restore") ||
	    ca_pg_exec(&p, "COMMIT", "committing the restore"))
		goto out;
	p.in_tx = false;
	rc = 0;
out:
	if (p.in_tx)
		ca_pg_rollback(&p);
	ca_pg_disconnect(&p);
	sqlite3_close(src);
	free(want);
	return rc;
}
