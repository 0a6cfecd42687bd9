/*
 * keyward-ca: certificate states for the OCSP responder from a PostgreSQL
 * CA database (db_status_pg.h), on a connection of its own, statements
 * prepared once. A change by any process on any host (the CLI's revoke,
 * another serve) is noticed through ca_writer.generation, which every
 * write transaction bumps (db_pg.c), and then which rows changed through
 * certs.changed_at and new certs.id, as on SQLite with data_version and
 * rowids: writers take turns, so ids follow commit order.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/ocsp.h>

#include "ca/db_pg.h"
#include "ca/db_status_pg.h"

enum { S_GET, S_VERSION, S_MARK, S_CHANGES, S_EACH, S_PING, S_N };

static const char *const statements[S_N] = {
	[S_GET] = "SELECT status, revoked_at, reason, invalid_at FROM certs WHERE serial = $1",
	[S_VERSION] = "SELECT generation FROM ca_writer WHERE id = 1",
	[S_MARK] = "SELECT COALESCE(MAX(id), 0), COALESCE(MAX(changed_at), 0) FROM certs",
	[S_CHANGES] = "SELECT id, serial, changed_at FROM certs WHERE id > $1 OR (changed_at > 0 AND changed_at >= $2)"
		      " ORDER BY id",
	[S_EACH] = "SELECT serial FROM certs WHERE not_after >= $1 ORDER BY id",
	[S_PING] = "SELECT COUNT(*) FROM meta",
};

struct ca_status_pg {
	struct ca_pg pg;
};

int ca_status_pg_open(const char *url, struct ca_status_pg **out)
{
	struct ca_status_pg *s = calloc(1, sizeof *s);

	*out = NULL;
	if (!s)
		return ca_error("out of memory");
	if (ca_pg_connect(&s->pg, url, statements, S_N) ||
	    ca_pg_read_only(&s->pg, "configuring the session")) {
		ca_status_pg_close(s);
		return -1;
	}
	*out = s;
	return 0;
}

void ca_status_pg_close(struct ca_status_pg *s)
{
	if (!s)
		return;
	ca_pg_disconnect(&s->pg);
	free(s);
}

int ca_status_pg_get(struct ca_status_pg *s, const char *serial, struct ocsp_status *st)
{
	struct ca_pg_args a = {0};
	PGresult *r;

	st->status = V_OCSP_CERTSTATUS_UNKNOWN;
	st->revoked_at = 0;
	st->reason = -1;
	st->invalid_at = 0;
	ca_pg_text(&a, serial);
	if (ca_pg_run(&s->pg, S_GET, &a, "certificate status", &r))
		return -1;
	if (PQntuples(r) == 1) {
		if (!strcmp(PQgetvalue(r, 0, 0), "revoked")) {
			st->status = V_OCSP_CERTSTATUS_REVOKED;
			st->revoked_at = (time_t)ca_pg_int_at(r, 0, 1);
			st->reason = (int)ca_pg_int_at(r, 0, 2);
			st->invalid_at = (time_t)ca_pg_int_at(r, 0, 3);
		} else {
			st->status = V_OCSP_CERTSTATUS_GOOD; /* issued, or a hold taken back */
		}
	}
	PQclear(r);
	return 0;
}

/* The first row's first two integers of statement i (no parameters). */
static int one_row(struct ca_status_pg *s, int i, const char *what, long long *a, long long *b)
{
	PGresult *r;
	int rc = 0;

	if (ca_pg_run(&s->pg, (size_t)i, NULL, what, &r))
		return -1;
	if (PQntuples(r) != 1) {
		rc = ca_error("database %s: %s: no row (ca_writer emptied?)", s->pg.where, what);
	} else {
		*a = ca_pg_int_at(r, 0, 0);
		if (b)
			*b = ca_pg_int_at(r, 0, 1);
	}
	PQclear(r);
	return rc;
}

int ca_status_pg_ping(struct ca_status_pg *s)
{
	long long n;

	return one_row(s, S_PING, "ping", &n, NULL);
}

int ca_status_pg_version(struct ca_status_pg *s, long long *version)
{
	return one_row(s, S_VERSION, "generation", version, NULL);
}

int ca_status_pg_mark(struct ca_status_pg *s, struct ca_status_mark *m)
{
	return one_row(s, S_MARK, "mark", &m->rowid, &m->changed_at);
}

int ca_status_pg_changes(struct ca_status_pg *s, struct ca_status_mark *m, int (*fn)(void *arg, const char *serial),
			 void *arg)
{
	struct ca_status_mark next = *m;
	struct ca_pg_args a = {0};
	PGresult *r;
	int rc = 0;

	/* one statement: the walk and the new mark come from one snapshot */
	ca_pg_int(&a, m->rowid);
	ca_pg_int(&a, m->changed_at);
	if (ca_pg_run(&s->pg, S_CHANGES, &a, "changes", &r))
		return -1;
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		long long id = ca_pg_int_at(r, i, 0), changed = ca_pg_int_at(r, i, 2);

		if (id > next.rowid)
			next.rowid = id;
		if (changed > next.changed_at)
			next.changed_at = changed;
		rc = fn(arg, PQgetvalue(r, i, 1)) ? -1 : 0;
	}
	PQclear(r);
	if (!rc)
		*m = next;
	return rc;
}

int ca_status_pg_each(struct ca_status_pg *s, time_t now, int (*fn)(void *arg, const char *serial), void *arg)
{
	struct ca_pg_args a = {0};
	PGresult *r;
	int rc = 0;

	ca_pg_int(&a, (long long)now);
	if (ca_pg_run(&s->pg, S_EACH, &a, "certificates", &r))
		return -1;
	for (int i = 0; !rc && i < PQntuples(r); i++)
		rc = fn(arg, PQgetvalue(r, i, 0)) ? -1 : 0;
	PQclear(r);
	return rc;
}
