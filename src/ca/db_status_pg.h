/*
 * keyward-ca: the OCSP responder's reads (db_status.h) on a PostgreSQL CA
 * database (db_status_pg.c); db_status.c calls these when ca.conf names
 * one. Each function is its db_status.h namesake's.
 */
#ifndef KW_CA_DB_STATUS_PG_H
#define KW_CA_DB_STATUS_PG_H

#include "ca/db_status.h"

struct ca_status_pg;
int ca_status_pg_open(const char *url, struct ca_status_pg **out);
void ca_status_pg_close(struct ca_status_pg *s);
int ca_status_pg_get(struct ca_status_pg *s, const char *serial, struct ocsp_status *st);
int ca_status_pg_ping(struct ca_status_pg *s);
int ca_status_pg_version(struct ca_status_pg *s, long long *version);
int ca_status_pg_mark(struct ca_status_pg *s, struct ca_status_mark *m);
int ca_status_pg_changes(struct ca_status_pg *s, struct ca_status_mark *m, int (*fn)(void *arg, const char *serial),
			 void *arg);
int ca_status_pg_each(struct ca_status_pg *s, time_t now, int (*fn)(void *arg, const char *serial), void *arg);

#endif
