/*
 * keyward-ca: the CA database's API (ca.h's ca_db_*), over the backend
 * ca.conf chooses (db_backend.h): keyward-ca.db beside ca.conf (SQLite,
 * the default), or `database = postgresql://...`, which several serve
 * and issuing processes, on several hosts, can share.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ca/db_backend.h"

bool ca_db_is_sqlite(const struct ca_conf *c)
{
	return !c->database[0];
}

int ca_db_open(const struct ca_conf *c, bool create, struct ca_db **out)
{
	char path[CA_PATH_MAX + 32];

	if (c->database[0])
		return ca_db_pg_open(c->database, create, out);
	ca_path(c, "keyward-ca.db", path, sizeof path);
	return ca_db_sqlite_open(path, create, out);
}

int ca_db_open_file(const char *path, bool create, struct ca_db **out)
{
	return ca_db_sqlite_open(path, create, out);
}

void ca_db_close(struct ca_db *db)
{
	if (db)
		db->ops->close(db);
}

int ca_db_begin(struct ca_db *db)
{
	/* every change begins here: a read-only responder's stops before it reaches the database */
	if (db->read_only)
		return ca_fail(CA_ERR_REFUSED, "this CA's database is open read-only (serve.conf's read_only = true): "
					       "no change is made here; make it where the CA issues");
	return db->ops->begin(db);
}

int ca_db_read_only(struct ca_db *db)
{
	db->read_only = true;
	return db->ops->read_only(db);
}

int ca_db_writable(struct ca_db *db)
{
	return db->ops->writable(db);
}

int ca_db_commit(struct ca_db *db)
{
	return db->ops->commit(db);
}

void ca_db_rollback(struct ca_db *db)
{
	db->ops->rollback(db);
}

int ca_db_audit(struct ca_db *db, const char *event, const char *fmt, ...)
{
	char detail[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	return db->ops->audit(db, event, detail);
}

int ca_db_insert_cert(struct ca_db *db, const struct ca_db_cert *row, const unsigned char *der, size_t der_len)
{
	return db->ops->insert_cert(db, row, der, der_len);
}

int ca_db_get_cert(struct ca_db *db, const char *serial, struct ca_db_cert *row, unsigned char **der, size_t *der_len)
{
	return db->ops->get_cert(db, serial, row, der, der_len);
}

int ca_db_set_revocation(struct ca_db *db, const char *serial, const char *status, time_t when, int reason,
			 time_t invalid_at)
{
	return db->ops->set_revocation(db, serial, status, when, reason, invalid_at);
}

long long ca_db_insert_request(struct ca_db *db, const unsigned char *csr, size_t len, const char *template_name,
			       const char *status)
{
	return db->ops->insert_request(db, csr, len, template_name, status);
}

int ca_db_get_request(struct ca_db *db, long long id, unsigned char **csr, size_t *len, char *template_name,
		      size_t tsize, char *status, size_t ssize)
{
	return db->ops->get_request(db, id, csr, len, template_name, tsize, status, ssize);
}

int ca_db_set_request(struct ca_db *db, long long id, const char *status, const char *serial)
{
	return db->ops->set_request(db, id, status, serial);
}

int ca_db_each_cert(struct ca_db *db, int (*fn)(void *arg, const struct ca_db_cert *c), void *arg)
{
	return db->ops->each_cert(db, fn, arg);
}

int ca_db_each_request(struct ca_db *db, int (*fn)(void *arg, const struct ca_pending *r), void *arg)
{
	return db->ops->each_request(db, fn, arg);
}

int ca_db_each_audit(struct ca_db *db, int (*fn)(void *arg, const struct ca_audit_row *r), void *arg)
{
	return db->ops->each_audit(db, fn, arg);
}

int ca_db_counts(struct ca_db *db, time_t now, struct ca_status *st)
{
	return db->ops->counts(db, now, st);
}

int ca_db_each_revoked(struct ca_db *db, bool delta, long long seq,
		       int (*fn)(void *arg, const char *serial, time_t when, int reason, time_t invalid_at), void *arg)
{
	return db->ops->each_revoked(db, delta, seq, fn, arg);
}

int ca_db_next_crl_number(struct ca_db *db, long long *number)
{
	return db->ops->next_crl_number(db, number);
}

int ca_db_last_base_crl(struct ca_db *db, long long *number, time_t *when, long long *seq)
{
	return db->ops->last_base_crl(db, number, when, seq);
}

int ca_db_record_crl(struct ca_db *db, long long number, bool delta, long long base, time_t this_update,
		     time_t next_update)
{
	return db->ops->record_crl(db, number, delta, base, this_update, next_update);
}

int ca_db_get_meta(struct ca_db *db, const char *key, char **value)
{
	return db->ops->get_meta(db, key, value);
}

int ca_db_set_meta(struct ca_db *db, const char *key, const char *value)
{
	return db->ops->set_meta(db, key, value);
}

int ca_db_delete_meta(struct ca_db *db, const char *key)
{
	return db->ops->delete_meta(db, key);
}

int ca_db_backup(struct ca_db *db, const char *path)
{
	return db->ops->backup(db, path);
}

int ca_db_check(struct ca_db *db)
{
	return db->ops->check(db);
}

long long ca_db_max_crl(struct ca_db *db)
{
	return db->ops->max_crl(db);
}
