/*
 * keyward-ca: a PostgreSQL CA database's backup, written in the format a
 * SQLite CA's backup has (one keyward-ca.db file, ca_db_sqlite_schema),
 * so backupdb, restoredb and migrate keep one format whichever database
 * the CA uses. The rows are read in one REPEATABLE READ transaction: a
 * consistent copy while other processes go on issuing. Certificates are
 * copied in insertion order, so their SQLite rowids keep it.
 *
 * ACME's and CMP's durable records come along (accounts, EAB keys, orders
 * and authorizations, CMP secrets; the keys and secrets as they are stored,
 * sealed: the seal binds the CA's key, not the database), so a backup or a
 * database move leaves none behind. Nonces and CMP's replay record are
 * minutes long and stay: a client asks for a new nonce.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ca/db_backend.h"
#include "ca/db_pg.h"

/*
 * a table's columns, and each one's type: i integer, t text, b blob;
 * enroll: ACME's or CMP's, made by serve when first needed, so possibly absent
 */
static const struct {
	const char *table, *columns, *types, *order;
	bool enroll;
} tables[] = {
	{"meta", "key, value", "tt", "key", false},
	{"certs",
	 "serial, subject, template, not_before, not_after, status, revoked_at, reason, changed_at, request_id, der,"
	 " invalid_at, change_seq",
	 "tttiitiiiibii", "id", false},
	{"requests", "id, csr, template, status, submitted, serial", "ibttit", "id", false},
	{"crls", "number, delta, base, this_update, next_update, seq", "iiiiii", "number", false},
	{"audit", "id, time, uid, event, detail", "iiitt", "id", false},
	{"acme_accounts", "id, template, thumb, jwk, status, contact, eab_kid, created, remote", "ittttttit", "id",
	 true},
	{"acme_eab", "kid, template, iv, sealed, created, account", "ttbbii", "kid", true},
	{"acme_orders", "id, account, template, status, created, expires, serial, error", "iittiitt", "id", true},
	{"acme_authz",
	 "id, order_id, account, value, wildcard, status, expires, token, tried, validated, error_type, error",
	 "iiititittitt", "id", true},
	{"cmp_secrets", "template, iv, sealed, created", "tbbi", "template", true},
};

/* Whether the PostgreSQL table exists: 1 yes, 0 no, -1 error. */
static int pg_has_table(struct ca_pg *p, const char *table)
{
	const char *vals[1] = {table};
	PGresult *r = PQexecParams(p->conn, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, vals, NULL, NULL, 0);
	int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? !strcmp(PQgetvalue(r, 0, 0), "t") : -1;

	if (rc < 0)
		ca_pg_fail(p, r, "backup");
	PQclear(r);
	return rc;
}

static int sq_fail(sqlite3 *dest, const char *path, const char *what)
{
	return ca_error("backup %s: %s: %s", path, what, sqlite3_errmsg(dest));
}

/* Copies one table's rows from r into dest through st. */
static int copy_rows(sqlite3 *dest, const char *path, sqlite3_stmt *st, const PGresult *r, const char *types)
{
	for (int row = 0; row < PQntuples(r); row++) {
		for (int c = 0; types[c]; c++) {
			if (types[c] == 'i')
				sqlite3_bind_int64(st, c + 1, ca_pg_int_at(r, row, c));
			else if (types[c] == 't')
				sqlite3_bind_text(st, c + 1, PQgetvalue(r, row, c), PQgetlength(r, row, c),
						  SQLITE_STATIC);
			else
				sqlite3_bind_blob(st, c + 1, PQgetvalue(r, row, c), PQgetlength(r, row, c),
						  SQLITE_STATIC);
		}
		if (sqlite3_step(st) != SQLITE_DONE)
			return sq_fail(dest, path, "copying a row");
		sqlite3_reset(st);
	}
	return 0;
}

int ca_pg_backup(struct ca_pg *p, const char *path)
{
	sqlite3 *dest = NULL;
	sqlite3_stmt *st = NULL;
	PGresult *r = NULL;
	char sql[512];
	int fd, rc = -1;

	/* a new file, 0600 whatever the umask, as keyward-ca.db is */
	if ((fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0 || close(fd) != 0)
		return ca_error("cannot create %s: %m", path);
	if (sqlite3_open_v2(path, &dest, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		rc = ca_error("cannot open %s: %s", path, dest ? sqlite3_errmsg(dest) : "out of memory");
		goto out;
	}
	if (sqlite3_exec(dest, "PRAGMA journal_mode=DELETE; BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(dest, ca_db_sqlite_schema, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(dest, ca_acme_sqlite_schema, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(dest, ca_cmp_sqlite_schema, NULL, NULL, NULL) != SQLITE_OK) {
		sq_fail(dest, path, "schema");
		goto out;
	}
	if (ca_pg_exec(p, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "backup"))
		goto out;
	p->in_tx = true;
	for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
		char marks[64] = "";
		int has = tables[t].enroll ? pg_has_table(p, tables[t].table) : 1;

		if (has < 0)
			goto out;
		if (!has)
			continue; /* serve never made it: nothing to carry */
		for (size_t c = 0; tables[t].types[c]; c++)
			strcat(marks, c ? ", ?" : "?");
		snprintf(sql, sizeof sql, "SELECT %s FROM %s ORDER BY %s", tables[t].columns, tables[t].table,
			 tables[t].order);
		r = PQexecParams(p->conn, sql, 0, NULL, NULL, NULL, NULL, 1);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			ca_pg_fail(p, r, "backup");
			goto out;
		}
		snprintf(sql, sizeof sql, "INSERT INTO %s (%s) VALUES (%s)", tables[t].table, tables[t].columns, marks);
		if (sqlite3_prepare_v2(dest, sql, -1, &st, NULL) != SQLITE_OK) {
			sq_fail(dest, path, sql);
			goto out;
		}
		if (copy_rows(dest, path, st, r, tables[t].types))
			goto out;
		sqlite3_finalize(st);
		st = NULL;
		PQclear(r);
		r = NULL;
	}
	if (sqlite3_exec(dest, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		sq_fail(dest, path, "commit");
		goto out;
	}
	rc = 0;
out:
	if (p->in_tx)
		PQclear(PQexec(p->conn, "COMMIT"));
	p->in_tx = false;
	PQclear(r);
	sqlite3_finalize(st);
	if (sqlite3_close(dest) != SQLITE_OK && !rc)
		rc = ca_error("backup %s: cannot close it", path);
	if (rc)
		unlink(path);
	return rc;
}
