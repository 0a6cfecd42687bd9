/*
 * keyward-ca: the stores beside the CA's records in its PostgreSQL
 * database (ACME's, acme_db_pg.c; CMP's, cmp_store_pg.c): a connection of
 * their own (db_pgconn.c) and their tables, made on first open under the
 * schema's advisory lock with their version in meta (key), as db_pg.c
 * does for the CA's. A store's tables are its own business: the CA's
 * schema version does not move when they are added.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/ca.h"
#include "ca/db_pg.h"

int ca_pg_store_open(struct ca_pg *p, const char *url, const char *const *sql, size_t n, const char *key, int version,
		     const char *schema)
{
	const char *vals[1] = {key};
	PGresult *r = NULL;
	int rc = -1;

	if (ca_pg_connect(p, url, sql, n))
		return -1;
	if (ca_pg_exec(p, "SET client_min_messages = warning", "configuring the session") ||
	    ca_pg_exec(p, "BEGIN", "begin"))
		goto out;
	p->in_tx = true;
	/* the CA's tables first: a database setup did not make is not a CA's */
	if (ca_pg_exec(p, "SELECT pg_advisory_xact_lock(" CA_PG_SCHEMA_LOCK ")", "waiting for the schema lock"))
		goto out;
	r = PQexecParams(p->conn, "SELECT value FROM meta WHERE key = $1", 1, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		ca_pg_fail(p, r, "reading the schema version (keyward-ca setup --database makes the tables)");
		goto out;
	}
	if (PQntuples(r) && atoi(PQgetvalue(r, 0, 0)) != version) {
		ca_error("database %s has %s %s; this keyward-ca knows %d: use a newer keyward-ca", p->where, key,
			 PQgetvalue(r, 0, 0), version);
		goto out;
	}
	if (!PQntuples(r)) {
		char v[16];
		const char *kv[2] = {key, v};

		snprintf(v, sizeof v, "%d", version);
		if (ca_pg_exec(p, schema, "making the tables"))
			goto out;
		PQclear(r);
		r = PQexecParams(p->conn, "INSERT INTO meta (key, value) VALUES ($1, $2)", 2, NULL, kv, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			ca_pg_fail(p, r, "recording the schema version");
			goto out;
		}
	}
	rc = 0;
out:
	PQclear(r);
	rc = ca_pg_end(p, rc, "making the tables");
	if (rc)
		ca_pg_disconnect(p);
	return rc;
}
