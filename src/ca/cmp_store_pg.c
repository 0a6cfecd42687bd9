/*
 * keyward-ca: CMP's records in the CA's PostgreSQL database (cmp_store.h's
 * backend for ca.conf's database = postgresql://...): the tables of
 * cmp_store_sqlite.c, made on first open (meta's cmp.schema_version), on
 * a connection of their own (db_pgconn.c). Every serve process on the
 * database shares them: a transactionID recorded by one is a replay at
 * all the others (INSERT ... ON CONFLICT DO NOTHING: of two concurrent
 * inserts one changes a row), a secret made by cmp-secret is good at all
 * of them, and the requests' state is the CA's requests table.
 */
#include <stdlib.h>
#include <string.h>

#include "ca/cmp_store.h"
#include "ca/db_backend.h"
#include "ca/db_pg.h"

const char ca_cmp_pg_schema[] =
	"CREATE TABLE IF NOT EXISTS cmp_secrets ("
	" template TEXT PRIMARY KEY, iv BYTEA NOT NULL, sealed BYTEA NOT NULL, created BIGINT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS cmp_seen (id BYTEA PRIMARY KEY, expires BIGINT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS cmp_seen_expires ON cmp_seen (expires);";

enum { S_GET, S_PUT, S_DEL, S_SEEN, S_PRUNE, S_STATE, S_N };

static const char *const statements[S_N] = {
	[S_GET] = "SELECT iv, sealed FROM cmp_secrets WHERE template = $1",
	[S_PUT] = "INSERT INTO cmp_secrets (template, iv, sealed, created) VALUES ($1, $2, $3, $4)"
		  " ON CONFLICT (template) DO UPDATE SET iv = EXCLUDED.iv, sealed = EXCLUDED.sealed,"
		  " created = EXCLUDED.created",
	[S_DEL] = "DELETE FROM cmp_secrets WHERE template = $1",
	[S_SEEN] = "INSERT INTO cmp_seen (id, expires) VALUES ($1, $2) ON CONFLICT DO NOTHING",
	[S_PRUNE] = "DELETE FROM cmp_seen WHERE expires < $1",
	[S_STATE] = "SELECT status, serial FROM requests WHERE id = $1",
};

struct pg {
	struct cmp_db base;
	struct ca_pg pg;
};

static const struct cmp_db_ops pg_ops;

static void pg_close(struct cmp_db *b)
{
	struct pg *s = (struct pg *)b;

	ca_pg_disconnect(&s->pg);
	free(s);
}

int cmp_db_pg_open(const char *url, struct cmp_db **out)
{
	struct pg *s = calloc(1, sizeof *s);

	*out = NULL;
	if (!s)
		return ca_error("out of memory");
	s->base.ops = &pg_ops;
	if (ca_pg_store_open(&s->pg, url, statements, S_N, CA_CMP_PG_SCHEMA_KEY, CA_CMP_PG_SCHEMA_VERSION,
			     ca_cmp_pg_schema)) {
		free(s);
		return -1;
	}
	*out = &s->base;
	return 0;
}

/* Statement i: the rows it changed or returned (*res kept when res is not NULL), or -1. */
static long long run(struct cmp_db *b, int i, const struct ca_pg_args *a, const char *what, PGresult **res)
{
	return ca_pg_rows(&((struct pg *)b)->pg, (size_t)i, a, what, res);
}

static int pg_get(struct cmp_db *b, const char *tmpl, unsigned char iv[CA_SEAL_IV],
		  unsigned char sealed[CMP_SEALED_MAX], size_t *len)
{
	struct ca_pg_args a = {0};
	PGresult *r;
	long long n;
	size_t l;
	int rc;

	ca_pg_text(&a, tmpl);
	if ((n = run(b, S_GET, &a, "reading the CMP secret", &r)) < 0)
		return -1;
	l = n ? (size_t)PQgetlength(r, 0, 1) : 0;
	if (!n) {
		rc = 1;
	} else if (PQgetlength(r, 0, 0) != CA_SEAL_IV || l <= CA_SEAL_TAG || l > CMP_SEALED_MAX) {
		rc = ca_fail(CA_ERR_CONFLICT, "the sealed CMP secret of template %s is damaged", tmpl);
	} else {
		memcpy(iv, PQgetvalue(r, 0, 0), CA_SEAL_IV);
		memcpy(sealed, PQgetvalue(r, 0, 1), l);
		*len = l;
		rc = 0;
	}
	PQclear(r);
	return rc;
}

static int pg_put(struct cmp_db *b, const char *tmpl, const unsigned char iv[CA_SEAL_IV], const unsigned char *sealed,
		  size_t len, time_t created)
{
	struct ca_pg_args a = {0};

	ca_pg_text(&a, tmpl);
	ca_pg_blob(&a, iv, CA_SEAL_IV);
	ca_pg_blob(&a, sealed, len);
	ca_pg_int(&a, (long long)created);
	/* committed (the server's synchronous_commit) when it returns: durable before it is printed */
	return run(b, S_PUT, &a, "storing the sealed CMP secret", NULL) == 1 ? 0 : -1;
}

static int pg_del(struct cmp_db *b, const char *tmpl, bool *removed)
{
	struct ca_pg_args a = {0};
	long long n;

	ca_pg_text(&a, tmpl);
	if ((n = run(b, S_DEL, &a, "removing the CMP secret", NULL)) < 0)
		return -1;
	*removed = n > 0;
	return 0;
}

static int pg_seen(struct cmp_db *b, const unsigned char *id, size_t len, time_t expires)
{
	struct ca_pg_args a = {0};
	long long n;

	ca_pg_blob(&a, id, len);
	ca_pg_int(&a, (long long)expires);
	n = run(b, S_SEEN, &a, "the CMP replay record", NULL);
	return n < 0 ? -1 : n == 1 ? 0 : 1;
}

static int pg_prune(struct cmp_db *b, time_t now)
{
	struct ca_pg_args a = {0};

	ca_pg_int(&a, (long long)now);
	return run(b, S_PRUNE, &a, "pruning the CMP replay record", NULL) < 0 ? -1 : 0;
}

static int pg_state(struct cmp_db *b, long long id, char *status, size_t ssize, char *serial, size_t size)
{
	struct ca_pg_args a = {0};
	PGresult *r;
	long long n;

	ca_pg_int(&a, id);
	if ((n = run(b, S_STATE, &a, "reading a request's state", &r)) < 0)
		return -1;
	if (n) {
		ca_pg_text_at(status, ssize, r, 0, 0);
		ca_pg_text_at(serial, size, r, 0, 1);
	}
	PQclear(r);
	return n ? 0 : 1;
}

static const struct cmp_db_ops pg_ops = {
	.close = pg_close,
	.get = pg_get,
	.put = pg_put,
	.del = pg_del,
	.seen = pg_seen,
	.prune = pg_prune,
	.state = pg_state,
};
