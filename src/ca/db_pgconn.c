/*
 * keyward-ca: PostgreSQL connections for the CA database (db_pg.h):
 * statements prepared once per connection, a connection that broke reset
 * before the next statement outside a transaction (a responder outlives a
 * server restart), and messages without passwords; and the check of
 * ca.conf's database URL (conf.c), which must not hold one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/ca.h"
#include "ca/db_pg.h"

int ca_db_url_check(const char *v)
{
	PQconninfoOption *opts;
	char *err = NULL;
	bool password = false, dbname = false;

	if (!*v)
		return 0;
	if (strncmp(v, "postgresql://", 13) && strncmp(v, "postgres://", 11))
		return ca_error("a database is postgresql://[USER@]HOST[:PORT]/DB (empty: keyward-ca.db, SQLite)");
	/* libpq's own message may quote a piece of the URL, which may be the password: not repeated */
	if (!(opts = PQconninfoParse(v, &err))) {
		PQfreemem(err);
		return ca_error("not a URL libpq takes: postgresql://[USER@]HOST[:PORT]/DB[?PARAM=VALUE...]");
	}
	PQfreemem(err);
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (o->val && *o->val && !strcmp(o->keyword, "password"))
			password = true;
		if (o->val && *o->val && !strcmp(o->keyword, "dbname"))
			dbname = true;
	}
	PQconninfoFree(opts);
	/* ca.conf is recorded in the database and its audit log: a password there would be copied */
	if (password)
		return ca_error("the URL holds a password: keep it in ~/.pgpass (or PGPASSFILE), not in ca.conf");
	if (!dbname)
		return ca_error("the URL names no database: postgresql://[USER@]HOST[:PORT]/DB");
	return 0;
}

void ca_pg_int(struct ca_pg_args *a, long long v)
{
	int i = a->n++;

	snprintf(a->num[i], sizeof a->num[i], "%lld", v);
	a->val[i] = a->num[i];
	a->len[i] = 0;
	a->fmt[i] = 0;
}

void ca_pg_text(struct ca_pg_args *a, const char *s)
{
	int i = a->n++;

	a->val[i] = s;
	a->len[i] = 0;
	a->fmt[i] = 0;
}

void ca_pg_blob(struct ca_pg_args *a, const void *p, size_t len)
{
	int i = a->n++;

	a->val[i] = len ? p : ""; /* an empty value is '', not NULL */
	a->len[i] = (int)len;
	a->fmt[i] = 1;
}

/* libpq's message, one line: it names the server and the failure, never the URL's password */
static void message(char *out, size_t size, const char *msg)
{
	size_t l;

	snprintf(out, size, "%s", msg && *msg ? msg : "the connection to the server failed");
	l = strlen(out);
	while (l && (out[l - 1] == '\n' || out[l - 1] == ' '))
		out[--l] = '\0';
	for (char *c = out; *c; c++)
		if (*c == '\n')
			*c = ' ';
}

int ca_pg_fail(struct ca_pg *p, const PGresult *res, const char *what)
{
	char msg[400];

	message(msg, sizeof msg, res ? PQresultErrorMessage(res) : PQerrorMessage(p->conn));
	return ca_error("database %s: %s: %s", p->where, what, msg);
}

static void notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg; /* NOTICE: relation already exists, ...: nothing for the operator */
}

int ca_pg_connect(struct ca_pg *p, const char *url, const char *const *sql, size_t n)
{
	PQconninfoOption *opts;
	const char *host = "", *port = "", *db = "";
	char msg[400];

	memset(p, 0, sizeof *p);
	if (n > CA_PG_STMTS_MAX)
		return ca_error("database: %zu statements, at most %d", n, CA_PG_STMTS_MAX);
	p->sql = sql;
	p->n_sql = n;
	/* where, from the URL's parts (not the URL: it may hold a password) */
	if ((opts = PQconninfoParse(url, NULL))) {
		for (PQconninfoOption *o = opts; o->keyword; o++) {
			if (!o->val)
				continue;
			if (!strcmp(o->keyword, "host"))
				host = o->val;
			else if (!strcmp(o->keyword, "port"))
				port = o->val;
			else if (!strcmp(o->keyword, "dbname"))
				db = o->val;
		}
		snprintf(p->where, sizeof p->where, "postgresql://%.100s%s%.10s/%.100s", host, *port ? ":" : "", port,
			 db);
		PQconninfoFree(opts);
	} else {
		snprintf(p->where, sizeof p->where, "(a URL libpq does not take)");
	}
	p->conn = PQconnectdb(url);
	if (!p->conn)
		return ca_error("database %s: out of memory connecting", p->where);
	if (PQstatus(p->conn) != CONNECTION_OK) {
		message(msg, sizeof msg, PQerrorMessage(p->conn));
		ca_error("database %s: cannot connect: %s", p->where, msg);
		ca_pg_disconnect(p);
		return -1;
	}
	PQsetNoticeProcessor(p->conn, notice, NULL);
	return 0;
}

void ca_pg_disconnect(struct ca_pg *p)
{
	PQfinish(p->conn);
	p->conn = NULL;
}

static int done(struct ca_pg *p, PGresult *r, const char *what, PGresult **res);

/* A connection that broke is reset, outside a transaction only: its prepared statements and settings went with it. */
static int ready(struct ca_pg *p)
{
	if (PQstatus(p->conn) == CONNECTION_OK)
		return 0;
	if (p->in_tx)
		return ca_error("database %s: the connection broke inside a transaction (nothing of it was kept)",
				p->where);
	PQreset(p->conn);
	memset(p->prepared, 0, sizeof p->prepared);
	if (PQstatus(p->conn) != CONNECTION_OK)
		return ca_pg_fail(p, NULL, "reconnecting");
	/* a session's settings went with it */
	return p->read_only ? done(p, PQexec(p->conn, "SET default_transaction_read_only = on"), "reconnecting", NULL)
			    : 0;
}

static int done(struct ca_pg *p, PGresult *r, const char *what, PGresult **res)
{
	int rc;

	if (!r)
		return ca_pg_fail(p, NULL, what);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = ca_pg_fail(p, r, what);
		PQclear(r);
		return rc;
	}
	if (res)
		*res = r;
	else
		PQclear(r);
	return 0;
}

int ca_pg_run(struct ca_pg *p, size_t i, const struct ca_pg_args *a, const char *what, PGresult **res)
{
	char name[32];
	PGresult *r;

	if (res)
		*res = NULL;
	if (i >= p->n_sql)
		return ca_error("database: no statement %zu", i);
	if (ready(p))
		return -1;
	snprintf(name, sizeof name, "kwca%zu", i);
	if (!p->prepared[i]) {
		r = PQprepare(p->conn, name, p->sql[i], 0, NULL);
		if (done(p, r, what, NULL))
			return -1;
		p->prepared[i] = true;
	}
	r = a ? PQexecPrepared(p->conn, name, a->n, a->val, a->len, a->fmt, 1)
	      : PQexecPrepared(p->conn, name, 0, NULL, NULL, NULL, 1);
	return done(p, r, what, res);
}

long long ca_pg_rows(struct ca_pg *p, size_t i, const struct ca_pg_args *a, const char *what, PGresult **res)
{
	PGresult *r;
	long long n;

	if (ca_pg_run(p, i, a, what, &r))
		return -1;
	n = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : atoll(PQcmdTuples(r));
	if (res)
		*res = r;
	else
		PQclear(r);
	return n;
}

int ca_pg_exec(struct ca_pg *p, const char *sql, const char *what)
{
	if (ready(p))
		return -1;
	return done(p, PQexec(p->conn, sql), what, NULL);
}

int ca_pg_read_only(struct ca_pg *p, const char *what)
{
	p->read_only = true;
	return ca_pg_exec(p, "SET default_transaction_read_only = on", what);
}

void ca_pg_rollback(struct ca_pg *p)
{
	/* a connection that broke took its transaction with it */
	if (PQstatus(p->conn) == CONNECTION_OK)
		PQclear(PQexec(p->conn, "ROLLBACK"));
	p->in_tx = false;
}

int ca_pg_commit(struct ca_pg *p, const char *what)
{
	if (!ca_pg_exec(p, "COMMIT", what))
		return 0;
	/*
	 * No answer to COMMIT: the server may have written the commit record
	 * just before the connection went. "Failed" would invite the caller to
	 * issue or revoke again, so the outcome is said to be unknown.
	 */
	if (PQstatus(p->conn) != CONNECTION_OK)
		return ca_error("database %s: the connection broke during COMMIT (%s): the change may or may not have "
				"been made; look (keyward-ca list, status) before making it again",
				p->where, what);
	return -1;
}

int ca_pg_end(struct ca_pg *p, int rc, const char *what)
{
	if (!rc && ca_pg_commit(p, what))
		rc = -1;
	if (rc)
		ca_pg_rollback(p);
	p->in_tx = false;
	return rc;
}

long long ca_pg_int_at(const PGresult *r, int row, int col)
{
	const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
	int n = PQgetlength(r, row, col);
	unsigned long long u = 0;

	if (PQgetisnull(r, row, col) || n > 8)
		return 0;
	for (int k = 0; k < n; k++)
		u = u << 8 | v[k];
	/* sign-extended from its width (int2, int4, int8) */
	if (n > 0 && n < 8 && (v[0] & 0x80))
		u |= ~0ULL << (8 * n);
	return (long long)u;
}

void ca_pg_text_at(char *dst, size_t cap, const PGresult *r, int row, int col)
{
	snprintf(dst, cap, "%.*s", PQgetlength(r, row, col), PQgetvalue(r, row, col));
}
