/*
 * ACME's records (acme.h's acme_db_*, nonces, accounts, EAB keys, orders
 * and authorizations) over the backend the CA's database has
 * (acme_db_backend.h): keyward-ca.db beside ca.conf, or the PostgreSQL
 * database of ca.conf's database =, which several serve processes share.
 * The random values ACME hands out are drawn here, the same for both.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "ca/acme_db_backend.h"

int acme_db_open(const struct ca_conf *c, struct acme_db **out)
{
	char path[CA_PATH_MAX + 32];

	if (!ca_db_is_sqlite(c))
		return acme_db_pg_open(c->database, out);
	ca_path(c, "keyward-ca.db", path, sizeof path);
	return acme_db_sqlite_open(path, out);
}

void acme_db_close(struct acme_db *db)
{
	if (db)
		db->ops->close(db);
}

/* bytes (at most 32) random bytes in base64url: -1 when the generator fails */
static int random_text(char *out, size_t bytes)
{
	unsigned char r[32];

	if (RAND_bytes(r, (int)bytes) != 1)
		return ca_error("no random bytes");
	acme_b64u_encode(r, bytes, out);
	return 0;
}

int acme_nonce_new(struct acme_db *db, time_t now, unsigned lifetime, char out[ACME_NONCE_LEN + 1])
{
	if (random_text(out, 16))
		return -1;
	return db->ops->nonce_new(db, out, now, lifetime);
}

int acme_nonce_use(struct acme_db *db, const char *nonce, time_t now)
{
	return db->ops->nonce_use(db, nonce, now);
}

int acme_account_find(struct acme_db *db, const char *template_name, const char *thumb, struct acme_account *a)
{
	return db->ops->account_find(db, template_name, thumb, a);
}

int acme_account_get(struct acme_db *db, long long id, struct acme_account *a)
{
	return db->ops->account_get(db, id, a);
}

int acme_account_insert(struct acme_db *db, struct acme_account *a)
{
	return db->ops->account_insert(db, a);
}

int acme_account_set_status(struct acme_db *db, long long id, const char *status)
{
	return db->ops->account_set_status(db, id, status);
}

int acme_account_set_contact(struct acme_db *db, long long id, const char *contact)
{
	return db->ops->account_set_contact(db, id, contact);
}

int acme_account_set_key(struct acme_db *db, long long id, const char *thumb, const char *jwk)
{
	return db->ops->account_set_key(db, id, thumb, jwk);
}

long long acme_accounts_since(struct acme_db *db, const char *remote, time_t since)
{
	return db->ops->accounts_since(db, remote, since);
}

long long acme_orders_pending(struct acme_db *db, long long account, time_t now)
{
	return db->ops->orders_pending(db, account, now);
}

long acme_orders_of(struct acme_db *db, long long account, time_t now, long long *ids, size_t max)
{
	return db->ops->orders_of(db, account, now, ids, max);
}

void acme_eab_kid(char kid[ACME_EAB_KID_LEN + 1])
{
	/* a kid that starts with '-' reads as an option on command lines (certbot's --eab-kid) */
	do
		random_text(kid, 16);
	while (kid[0] == '-');
}

int acme_eab_insert(struct acme_db *db, const char *template_name, const char *kid, const unsigned char *iv,
		    const unsigned char *sealed, size_t len)
{
	return db->ops->eab_insert(db, template_name, kid, iv, sealed, len);
}

int acme_eab_sealed(struct acme_db *db, const char *template_name, const char *kid, unsigned char iv[ACME_EAB_IV_LEN],
		    unsigned char sealed[ACME_EAB_SEALED_MAX], size_t *len)
{
	return db->ops->eab_sealed(db, template_name, kid, iv, sealed, len);
}

int acme_eab_migrate(struct acme_db *db, acme_eab_seal_fn seal, void *arg)
{
	/* only keyward-ca.db may hold the plain keys of an older keyward-ca: PostgreSQL came after the seal */
	return db->ops->eab_migrate ? db->ops->eab_migrate(db, seal, arg) : 0;
}

int acme_order_insert(struct acme_db *db, struct acme_order *o, const char *const *names, size_t n)
{
	char tokens[ACME_IDS_MAX][ACME_NONCE_LEN + 1];

	if (n > ACME_IDS_MAX)
		return ca_error("more than %d identifiers", ACME_IDS_MAX);
	/* 128 random bits each, as RFC 8555 8.1 asks of a token */
	for (size_t i = 0; i < n; i++)
		if (random_text(tokens[i], 16))
			return -1;
	return db->ops->order_insert(db, o, names, (const char(*)[ACME_NONCE_LEN + 1]) tokens, n);
}

int acme_order_get(struct acme_db *db, long long id, struct acme_order *o)
{
	return db->ops->order_get(db, id, o);
}

int acme_order_by_serial(struct acme_db *db, const char *serial, struct acme_order *o)
{
	if (!*serial)
		return 1;
	return db->ops->order_by_serial(db, serial, o);
}

int acme_order_set(struct acme_db *db, long long id, const char *status, const char *serial, const char *error)
{
	return db->ops->order_set(db, id, status, serial ? serial : "", error ? error : "");
}

int acme_order_move(struct acme_db *db, long long id, const char *from, const char *to)
{
	return db->ops->order_move(db, id, from, to);
}

int acme_authz_get(struct acme_db *db, long long id, struct acme_authz *a)
{
	return db->ops->authz_get(db, id, a);
}

int acme_authz_try(struct acme_db *db, long long id, const char *type)
{
	return db->ops->authz_try(db, id, type);
}

int acme_authz_try_undo(struct acme_db *db, long long id, const char *type)
{
	return db->ops->authz_try_undo(db, id, type);
}

int acme_authz_settle(struct acme_db *db, long long id, const char *type, const char *status, const char *error_type,
		      const char *error)
{
	return db->ops->authz_settle(db, id, type, status, error_type ? error_type : "", error ? error : "");
}

int acme_authz_set_status(struct acme_db *db, long long id, const char *status)
{
	return db->ops->authz_set_status(db, id, status);
}
