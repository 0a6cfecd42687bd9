/*
 * keyward-ca: the revocation state of certificates, read for the OCSP
 * responder on a connection of its own to keyward-ca.db (read only, WAL:
 * readers never wait for the CA's writers). A change by any process on
 * the database (the CLI's revoke, another serve) is noticed through
 * SQLite's data_version, and then which rows changed through
 * certs.changed_at and new rowids. On a PostgreSQL CA database
 * (db_status_pg.c) the same, with ca_writer.generation for data_version.
 */
#ifndef KW_CA_DB_STATUS_H
#define KW_CA_DB_STATUS_H

#include <stdbool.h>
#include <time.h>

#include "ca/ca.h"
#include "ca/ocsp.h"

struct ca_status_db;
/* Opens dir's keyward-ca.db for reading; one thread at a time uses it. */
int ca_status_open(const struct ca_conf *c, struct ca_status_db **out);
void ca_status_close(struct ca_status_db *s);
/* serial's state into *st (unknown if the CA never issued it): 0, or -1 if the database failed. */
int ca_status_get(struct ca_status_db *s, const char *serial, struct ocsp_status *st);
/* The database answers: 0, or -1. */
int ca_status_ping(struct ca_status_db *s);
/* A number that changes when another connection commits to the database. */
int ca_status_version(struct ca_status_db *s, long long *version);
/* Where the database is: the highest rowid of certs and the latest changed_at. */
struct ca_status_mark {
	long long rowid;
	long long changed_at;
};
int ca_status_mark(struct ca_status_db *s, struct ca_status_mark *m);
/*
 * Calls fn for every certificate inserted after m->rowid or changed at or
 * after m->changed_at (the second of a change may hold more changes), in
 * rowid order; then moves m to where the database is. fn returning
 * non-zero stops the walk (returned as -1).
 */
int ca_status_changes(struct ca_status_db *s, struct ca_status_mark *m, int (*fn)(void *arg, const char *serial),
		      void *arg);
/* Calls fn for every certificate not expired at now (what the cache pre-signs). */
int ca_status_each(struct ca_status_db *s, time_t now, int (*fn)(void *arg, const char *serial), void *arg);

#endif
