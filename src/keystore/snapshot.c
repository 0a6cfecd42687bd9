/*
 * Backup and restore, the store's side: a consistent snapshot of
 * partitions, credentials and objects (keys sealed exactly as stored) into
 * a struct kw_backup, and a restore that checks everything before it
 * writes anything. The file format is backup.c's.
 */
#include "keystore/keystore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "keystore/backend.h"
#include "keystore/backup.h"
#include "keystore/internal.h"
#include "keystore/master.h"
#include "keystore/seal.h"

/* ---- backup and restore ---- */

static const char BACKUP_ID_TEXT[] = "keyward backup id v1";

static kw_rv key_id_locked(struct kw_keystore *ks, unsigned char id[KW_BACKUP_KEY_ID_LEN])
{
	unsigned int n = 0;
	kw_rv rv = kw_need_unlocked(ks);

	if (rv)
		return rv;
	if (!HMAC(EVP_sha256(), ks->mk, KW_MASTER_KEY_LEN, (const unsigned char *)BACKUP_ID_TEXT,
		  sizeof BACKUP_ID_TEXT - 1, id, &n) ||
	    n != KW_BACKUP_KEY_ID_LEN)
		return kw_error_set(KW_ERR_CRYPTO, "store: cannot compute the master-key id");
	return KW_OK;
}

kw_rv kw_keystore_key_id(struct kw_keystore *ks, unsigned char id[KW_BACKUP_KEY_ID_LEN])
{
	kw_rv rv;

	lock(ks);
	rv = key_id_locked(ks, id);
	unlock(ks);
	return rv;
}

static kw_rv schema_locked(struct kw_keystore *ks, uint32_t *schema)
{
	uint64_t v = 0;
	kw_rv rv = kw_meta_get_u64(ks->b, "schema_version", &v);

	if (rv == KW_ERR_NOT_FOUND)
		return kw_error_set(KW_ERR_STORE, "store: meta has no schema version");
	if (!rv && v > UINT32_MAX)
		rv = kw_error_set(KW_ERR_STORE, "store: bad schema version");
	*schema = (uint32_t)v;
	return rv;
}

/* The partitions of a backup of `scope` ("" for all) into b. */
static kw_rv backup_partitions_locked(struct kw_keystore *ks, const char *scope, struct kw_backup *b)
{
	struct kw_partition_info *parts = NULL, one;
	size_t n = 0;
	kw_rv rv;

	if (scope[0]) {
		rv = ks->b->ops->partition_get(ks->b, scope, 0, &one, NULL, NULL);
		if (rv == KW_ERR_NOT_FOUND)
			return kw_error_set(KW_ERR_NOT_FOUND,
					    "backup: there is no partition \"%s\" (keyward-admin "
					    "partition list)",
					    scope);
		if (rv)
			return rv;
		parts = malloc(sizeof *parts);
		if (!parts)
			return kw_error_set(KW_ERR_NO_MEMORY, "backup: out of memory");
		parts[0] = one;
		n = 1;
	} else if ((rv = ks->b->ops->partition_list(ks->b, &parts, &n))) {
		return rv;
	}
	for (size_t i = 0; !rv && i < n; i++) {
		struct kw_backup_partition *p = kw_backup_add_partition(b);
		struct kw_partition_info info;

		if (!p) {
			rv = kw_error_set(KW_ERR_DATA_LEN, "backup: more than %u partitions", KW_BACKUP_PARTITIONS_MAX);
			break;
		}
		rv = ks->b->ops->partition_get(ks->b, NULL, parts[i].id, &info, p->setup_hash, &p->has_setup);
		if (!rv) {
			snprintf(p->name, sizeof p->name, "%s", info.name);
			p->source_id = info.id;
			if (!p->has_setup)
				memset(p->setup_hash, 0, sizeof p->setup_hash);
		}
	}
	free(parts);
	return rv;
}

static int backup_partition_index(const struct kw_backup *b, const char *name)
{
	for (size_t i = 0; i < b->n_partitions; i++)
		if (strcmp(b->partitions[i].name, name) == 0)
			return (int)i;
	return -1;
}

static kw_rv backup_credentials_locked(struct kw_keystore *ks, struct kw_backup *b)
{
	struct kw_credential_info *creds = NULL;
	size_t n = 0;
	kw_rv rv = ks->b->ops->credential_list(ks->b, b->scope[0] ? b->scope : NULL, &creds, &n);

	for (size_t i = 0; !rv && i < n; i++) {
		int at = backup_partition_index(b, creds[i].partition);
		struct kw_backup_credential *c;

		if (at < 0)
			continue;
		if (!(c = kw_backup_add_credential(b))) {
			rv = kw_error_set(KW_ERR_DATA_LEN, "backup: more than %u credentials",
					  KW_BACKUP_CREDENTIALS_MAX);
			break;
		}
		memcpy(c->fingerprint, creds[i].fingerprint, sizeof c->fingerprint);
		c->partition = (uint32_t)at;
		snprintf(c->subject, sizeof c->subject, "%s", creds[i].subject);
		c->created = creds[i].created;
		c->revoked = creds[i].revoked;
	}
	free(creds);
	return rv;
}

static kw_rv backup_objects_locked(struct kw_keystore *ks, struct kw_backup *b, unsigned *keys)
{
	kw_rv rv = KW_OK;

	for (size_t p = 0; !rv && p < b->n_partitions; p++) {
		uint64_t pid = b->partitions[p].source_id;
		struct kw_object_row *rows = NULL;
		size_t n = 0;

		rv = ks->b->ops->object_list(ks->b, pid, NULL, NULL, KW_CLASS_ANY, 0, 0, &rows, &n);
		for (size_t i = 0; !rv && i < n; i++) {
			struct kw_backup_object *o = kw_backup_add_object(b);

			if (!o) {
				rv = kw_error_set(KW_ERR_DATA_LEN, "backup: more than %u objects",
						  KW_BACKUP_OBJECTS_MAX);
				break;
			}
			o->partition = (uint32_t)p;
			if (is_sealed_class(rows[i].cls)) {
				/* the sealed columns, exactly as stored: never unsealed here */
				rv = ks->b->ops->object_get(ks->b, pid, rows[i].id, &o->row, &o->sealed);
				(*keys)++;
			} else {
				o->row = rows[i];
				rows[i].value = NULL; /* moved */
				rows[i].value_len = 0;
			}
		}
		kw_object_rows_free(rows, n);
	}
	return rv;
}

kw_rv kw_keystore_backup(struct kw_keystore *ks, const char *partition, unsigned char **out, size_t *len,
			 struct kw_backup_summary *sum)
{
	struct kw_backup *b = kw_backup_new(partition);
	char id_hex[2 * KW_BACKUP_KEY_ID_LEN + 1];
	unsigned keys = 0;
	kw_rv rv;

	*out = NULL;
	*len = 0;
	memset(sum, 0, sizeof *sum);
	if (!b)
		return kw_error_set(KW_ERR_NO_MEMORY, "backup: out of memory");
	b->created = now();
	lock(ks);
	rv = key_id_locked(ks, b->key_id);
	if (rv)
		goto unlocked;
	/* one transaction: the snapshot is consistent, and its audit record goes with it */
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto unlocked;
	rv = schema_locked(ks, &b->schema);
	if (!rv)
		rv = kw_audit_head_locked(ks, &b->audit_seq, b->audit_hash);
	if (!rv)
		rv = backup_partitions_locked(ks, b->scope, b);
	if (!rv)
		rv = backup_credentials_locked(ks, b);
	if (!rv)
		rv = backup_objects_locked(ks, b, &keys);
	if (!rv)
		rv = kw_backup_encode(b, out, len);
	if (!rv) {
		kw_backup_hex(b->key_id, 8, id_hex);
		rv = kw_audit_change_locked(
			ks, "hsm.backup",
			"%s: %zu partition%s, %zu credential%s, %zu object%s (%u sealed key%s), "
			"audit head %" PRIu64 ", master-key id %s, %zu bytes",
			b->scope[0] ? b->scope : "every partition", b->n_partitions, b->n_partitions == 1 ? "" : "s",
			b->n_credentials, b->n_credentials == 1 ? "" : "s", b->n_objects, b->n_objects == 1 ? "" : "s",
			keys, keys == 1 ? "" : "s", b->audit_seq, id_hex, *len);
	}
	rv = finish(ks->b, rv);
unlocked:
	unlock(ks);
	if (rv) {
		free(*out);
		*out = NULL;
		*len = 0;
	} else {
		sum->partitions = (unsigned)b->n_partitions;
		sum->credentials = (unsigned)b->n_credentials;
		sum->objects = (unsigned)b->n_objects;
		sum->keys = keys;
		sum->audit_seq = b->audit_seq;
		memcpy(sum->key_id, b->key_id, sizeof sum->key_id);
	}
	kw_backup_free(b);
	return rv;
}

/* ---- restore ---- */

struct id_index {
	uint64_t id;
	size_t at;
};

static int id_index_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct id_index *)a)->id, y = ((const struct id_index *)b)->id;

	return x < y ? -1 : x > y;
}

/* The backup's object with this id, or NULL. */
static const struct kw_backup_object *backup_object(const struct kw_backup *b, const struct id_index *idx, uint64_t id)
{
	struct id_index key = {id, 0}, *hit;

	hit = bsearch(&key, idx, b->n_objects, sizeof *idx, id_index_cmp);
	return hit ? &b->objects[hit->at] : NULL;
}

static kw_rv backup_refused(const struct kw_backup *b, const struct kw_backup_object *o, kw_rv rv, const char *why)
{
	return kw_error_set(rv,
			    "restore: object 0x%" PRIx64 " (%s/%s) of partition '%s' in the backup %s; nothing was "
			    "restored",
			    o->row.id, o->row.owner, o->row.name, b->partitions[o->partition].name, why);
}

/*
 * Unseals a key of the backup under its row as it was at the source (so
 * under the source's partition id) and checks it as kw_unseal_row_locked
 * does: *plain (the caller wipes and frees it) is a private key's PKCS#8
 * DER or a secret key's bytes.
 */
static kw_rv backup_unseal_locked(struct kw_keystore *ks, const struct kw_backup *b, const struct id_index *idx,
				  const struct kw_backup_object *o, unsigned char **plain, size_t *plain_len)
{
	const struct kw_object_row *r = &o->row;
	unsigned char aad[AAD_MAX], *der = NULL, *spki = NULL;
	size_t aad_len, der_len = 0, spki_len = 0;
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	EVP_PKEY *pkey = NULL;
	const unsigned char *p;
	const struct kw_backup_object *pub;
	kw_rv rv;

	*plain = NULL;
	*plain_len = 0;
	rv = kw_aad_build(r, r->cls == KW_CLASS_PRIVATE_KEY ? o->sealed.spki : NULL,
			  r->cls == KW_CLASS_PRIVATE_KEY ? o->sealed.spki_len : 0, aad, &aad_len);
	if (rv)
		return rv;
	rv = kw_unseal_key(ks->mk, aad, aad_len, &o->sealed, &der, &der_len);
	if (rv == KW_ERR_TAMPERED)
		return backup_refused(b, o, KW_ERR_TAMPERED,
				      "does not unseal under this HSM's master key: its row or sealed key was altered");
	if (rv)
		return rv;
	if (r->cls == KW_CLASS_SECRET_KEY) {
		if (!kw_secret_len_ok(r->key_type, der_len) || der_len * 8 != r->bits)
			rv = backup_refused(b, o, KW_ERR_TAMPERED,
					    "has a secret key of another length than its row says");
		goto out;
	}
	p = der;
	if ((p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der_len)))
		pkey = EVP_PKCS82PKEY(p8);
	PKCS8_PRIV_KEY_INFO_free(p8);
	if (!pkey) {
		rv = backup_refused(b, o, KW_ERR_TAMPERED, "holds a sealed private key that does not decode");
		goto out;
	}
	rv = kw_spki_der(pkey, &spki, &spki_len);
	if (rv)
		goto out;
	if (spki_len != o->sealed.spki_len || CRYPTO_memcmp(spki, o->sealed.spki, spki_len) != 0) {
		rv = backup_refused(b, o, KW_ERR_TAMPERED, "holds a private key that does not match its public key");
		goto out;
	}
	if (r->pair_id) {
		pub = backup_object(b, idx, r->pair_id);
		if (!pub || pub->partition != o->partition || pub->row.cls != KW_CLASS_PUBLIC_KEY ||
		    pub->row.pair_id != r->id || pub->row.value_len != spki_len ||
		    CRYPTO_memcmp(pub->row.value, spki, spki_len) != 0) {
			rv = backup_refused(b, o, KW_ERR_TAMPERED, "has no matching public half");
			goto out;
		}
	}
out:
	EVP_PKEY_free(pkey);
	free(spki);
	if (rv) {
		OPENSSL_cleanse(der, der_len);
		free(der);
		return rv;
	}
	*plain = der;
	*plain_len = der_len;
	return KW_OK;
}

/*
 * The checks a row of this class passes when it is made here (names,
 * CKA_ID, a certificate's DER, a data object's size, a public key's
 * SPKI), for the rows a backup brings: only sealed rows are authenticated
 * by the master key, the others are taken only if they could have been
 * made here.
 */
static kw_rv restore_check_row(const struct kw_backup *b, const struct kw_backup_object *o)
{
	const struct kw_object_row *r = &o->row;
	char why[400];
	kw_rv rv;

	if (r->cls == KW_CLASS_CERTIFICATE || r->cls == KW_CLASS_DATA) {
		struct kw_objspec spec = {.owner = r->owner,
					  .name = r->name,
					  .cls = r->cls,
					  .value = r->value,
					  .value_len = r->value_len,
					  .ckaid = r->ckaid,
					  .ckaid_len = r->ckaid_len,
					  .application = r->application,
					  .modifiable = r->modifiable};
		struct kw_object_row checked;

		rv = kw_keystore_object_row(&spec, &checked);
		kw_object_row_cleanup(&checked);
		if (!rv && (r->key_type != KW_KEY_NONE || r->usages || r->sensitive || r->pair_id))
			rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "a certificate or data object with key attributes");
	} else {
		rv = kw_check_owner(r->owner);
		if (!rv)
			rv = kw_check_name(r->name);
		if (!rv)
			rv = kw_check_ckaid(r->ckaid, r->ckaid_len);
		if (!rv && r->application[0])
			rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "a key with an application");
		if (!rv && r->cls == KW_CLASS_PUBLIC_KEY) {
			const unsigned char *p = r->value;
			EVP_PKEY *pub = r->value_len && r->value_len <= KW_OBJECT_VALUE_MAX
						? d2i_PUBKEY(NULL, &p, (long)r->value_len)
						: NULL;

			if (!pub || p != r->value + r->value_len)
				rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "a public key that is not one DER SPKI");
			EVP_PKEY_free(pub);
			ERR_clear_error();
		} else if (!rv && r->value_len) {
			rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "a sealed key's row with a value");
		}
	}
	if (!rv)
		return KW_OK;
	snprintf(why, sizeof why, "could not be made here: %s", kw_last_error());
	return backup_refused(b, o, KW_ERR_ATTRIBUTE_VALUE, why);
}

static bool same_bytes(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The first field in which two rows differ (partition and id aside), or NULL. */
static const char *row_difference(const struct kw_object_row *a, const struct kw_object_row *b)
{
	if (strcmp(a->owner, b->owner) != 0)
		return "owner";
	if (strcmp(a->name, b->name) != 0)
		return "name";
	if (a->cls != b->cls || a->key_type != b->key_type || a->bits != b->bits || strcmp(a->curve, b->curve) != 0)
		return "type";
	if (a->sensitive != b->sensitive || a->extractable != b->extractable || a->modifiable != b->modifiable ||
	    a->never_extractable != b->never_extractable || a->always_sensitive != b->always_sensitive ||
	    a->usages != b->usages)
		return "attributes";
	if (a->pair_id != b->pair_id)
		return "pair";
	if (a->created != b->created)
		return "creation time";
	if (!same_bytes(a->ckaid, a->ckaid_len, b->ckaid, b->ckaid_len))
		return "CKA_ID";
	if (strcmp(a->application, b->application) != 0)
		return "application";
	if (!same_bytes(a->value, a->value_len, b->value, b->value_len))
		return "value";
	return NULL;
}

struct restore_plan {
	struct kw_backup *b;
	struct id_index *idx;
	uint64_t *target_pid;		/* per backup partition */
	struct kw_partition_info *here; /* the partitions before the restore */
	size_t n_here;
};

static kw_rv restore_partitions_locked(struct kw_keystore *ks, struct restore_plan *pl, struct kw_restore_summary *sum)
{
	for (size_t i = 0; i < pl->b->n_partitions; i++) {
		const struct kw_backup_partition *p = &pl->b->partitions[i];
		struct kw_partition_info info;
		kw_rv rv = ks->b->ops->partition_get(ks->b, p->name, 0, &info, NULL, NULL);

		if (rv == KW_OK) {
			pl->target_pid[i] = info.id;
			sum->partitions_kept++;
			continue;
		}
		if (rv != KW_ERR_NOT_FOUND)
			return rv;
		if ((rv = kw_check_partition_name(p->name)))
			return rv;
		rv = ks->b->ops->partition_insert(ks->b, p->name, p->has_setup ? p->setup_hash : NULL, now(),
						  &pl->target_pid[i]);
		if (rv)
			return rv;
		sum->partitions_created++;
	}
	return KW_OK;
}

static kw_rv restore_credentials_locked(struct kw_keystore *ks, struct restore_plan *pl, struct kw_restore_summary *sum)
{
	struct kw_credential_info *creds = NULL;
	size_t n = 0;
	kw_rv rv = ks->b->ops->credential_list(ks->b, NULL, &creds, &n);

	for (size_t i = 0; !rv && i < pl->b->n_credentials; i++) {
		const struct kw_backup_credential *c = &pl->b->credentials[i];
		const char *pname = pl->b->partitions[c->partition].name;
		const struct kw_credential_info *found = NULL;
		char hex[17];

		for (size_t j = 0; j < n && !found; j++)
			if (memcmp(creds[j].fingerprint, c->fingerprint, KW_FINGERPRINT_LEN) == 0)
				found = &creds[j];
		if (found && strcmp(found->partition, pname) == 0) {
			/* a revocation in the backup carries over; restoring never lifts one */
			if (c->revoked && !found->revoked &&
			    (rv = ks->b->ops->credential_revoke(ks->b, c->fingerprint, c->revoked)))
				break;
			sum->credentials_kept++;
			continue;
		}
		kw_backup_hex(c->fingerprint, 8, hex);
		if (found) {
			rv = kw_error_set(
				KW_ERR_EXISTS,
				"restore: client credential %s (%s) belongs to partition '%s' here but to '%s' in "
				"the backup; nothing was restored",
				hex, c->subject, found->partition, pname);
			break;
		}
		rv = ks->b->ops->credential_insert(ks->b, c->fingerprint, pl->target_pid[c->partition], c->subject,
						   c->created);
		if (!rv && c->revoked)
			rv = ks->b->ops->credential_revoke(ks->b, c->fingerprint, c->revoked);
		if (!rv)
			sum->credentials_added++;
	}
	free(creds);
	return rv;
}

/*
 * Whether the object id is here already: KW_OK with *found set and, if so,
 * KW_OK when it is identical to the backup's, KW_ERR_EXISTS (saying how it
 * differs) when not.
 */
static kw_rv restore_existing_locked(struct kw_keystore *ks, struct restore_plan *pl, const struct kw_backup_object *o,
				     const unsigned char *plain, size_t plain_len, bool *found)
{
	struct kw_object_row ex;
	struct kw_sealed exs;
	const char *diff = NULL;
	char why[200];
	kw_rv rv = KW_ERR_NOT_FOUND;
	size_t at = 0;

	*found = false;
	memset(&ex, 0, sizeof ex);
	memset(&exs, 0, sizeof exs);
	for (at = 0; at < pl->n_here && rv == KW_ERR_NOT_FOUND; at++)
		rv = ks->b->ops->object_get(ks->b, pl->here[at].id, o->row.id, &ex, &exs);
	if (rv == KW_ERR_NOT_FOUND)
		return KW_OK;
	if (rv)
		return rv;
	*found = true;
	at--;
	if (pl->here[at].id != pl->target_pid[o->partition])
		diff = "partition";
	else
		diff = row_difference(&ex, &o->row);
	if (!diff && o->row.cls == KW_CLASS_PRIVATE_KEY &&
	    !same_bytes(exs.spki, exs.spki_len, o->sealed.spki, o->sealed.spki_len))
		diff = "key";
	if (!diff && o->row.cls == KW_CLASS_SECRET_KEY) {
		unsigned char *bytes = NULL;
		size_t len = 0;

		rv = kw_unseal_secret_locked(ks, &ex, &exs, &bytes, &len);
		if (!rv && (len != plain_len || CRYPTO_memcmp(bytes, plain, len) != 0))
			diff = "key";
		if (bytes) {
			OPENSSL_cleanse(bytes, len);
			free(bytes);
		}
	}
	if (!rv && diff) {
		snprintf(why, sizeof why, "exists on this HSM (in partition '%s') and differs in its %s",
			 pl->here[at].name, diff);
		rv = backup_refused(pl->b, o, KW_ERR_EXISTS, why);
	}
	kw_object_row_cleanup(&ex);
	kw_sealed_cleanup(&exs);
	return rv;
}

/* KW_ERR_EXISTS when another object here takes o's owner and name (any key for a key, else its class). */
static kw_rv restore_name_free_locked(struct kw_keystore *ks, struct restore_plan *pl, const struct kw_backup_object *o)
{
	struct kw_object_row *rows = NULL;
	size_t n = 0;
	kw_rv rv = ks->b->ops->object_list(ks->b, pl->target_pid[o->partition], o->row.owner, o->row.name, KW_CLASS_ANY,
					   0, 0, &rows, &n);

	for (size_t i = 0; !rv && i < n; i++) {
		const struct kw_object_row *r = &rows[i];

		if (r->id == o->row.id || (o->row.pair_id && r->id == o->row.pair_id))
			continue;
		if (r->cls == o->row.cls || (is_key_class(r->cls) && is_key_class(o->row.cls))) {
			char why[120];
			snprintf(why, sizeof why, "has the name of object 0x%" PRIx64 " on this HSM", r->id);
			rv = backup_refused(pl->b, o, KW_ERR_EXISTS, why);
		}
	}
	kw_object_rows_free(rows, n);
	return rv;
}

static kw_rv restore_objects_locked(struct kw_keystore *ks, struct restore_plan *pl, struct kw_restore_summary *sum)
{
	kw_rv rv = KW_OK;

	for (size_t i = 0; !rv && i < pl->b->n_objects; i++) {
		const struct kw_backup_object *o = &pl->b->objects[i];
		struct kw_object_row row = o->row;
		struct kw_sealed fresh;
		unsigned char *plain = NULL;
		size_t plain_len = 0;
		bool sealed = is_sealed_class(o->row.cls), found = false;

		memset(&fresh, 0, sizeof fresh);
		row.partition_id = pl->target_pid[o->partition];
		if (sealed)
			rv = backup_unseal_locked(ks, pl->b, pl->idx, o, &plain, &plain_len);
		if (!rv)
			rv = restore_existing_locked(ks, pl, o, plain, plain_len, &found);
		if (!rv && found)
			sum->objects_kept++;
		if (!rv && !found)
			rv = restore_name_free_locked(ks, pl, o);
		if (!rv && !found && sealed && row.partition_id != o->row.partition_id) {
			/* the partition id is bound into the associated data: rebind it, inside the HSM */
			rv = kw_seal_bytes_locked(ks, &row, plain, plain_len,
						  o->row.cls == KW_CLASS_PRIVATE_KEY ? o->sealed.spki : NULL,
						  o->sealed.spki_len, &fresh);
			if (!rv)
				sum->keys_resealed++;
		}
		if (!rv && !found) {
			rv = ks->b->ops->object_insert(ks->b, &row,
						       !sealed	      ? NULL
						       : fresh.sealed ? &fresh
								      : &o->sealed);
			if (rv == KW_ERR_EXISTS)
				rv = backup_refused(pl->b, o, KW_ERR_EXISTS, "collides with an object on this HSM");
			if (!rv)
				sum->objects_added++;
		}
		kw_sealed_cleanup(&fresh);
		if (plain) {
			OPENSSL_cleanse(plain, plain_len);
			free(plain);
		}
	}
	return rv;
}

kw_rv kw_keystore_restore(struct kw_keystore *ks, const unsigned char *buf, size_t len, struct kw_restore_summary *sum)
{
	struct restore_plan pl;
	unsigned char mine[KW_BACKUP_KEY_ID_LEN];
	char theirs_hex[17], mine_hex[17];
	uint32_t schema = 0;
	kw_rv rv;

	memset(&pl, 0, sizeof pl);
	memset(sum, 0, sizeof *sum);
	rv = kw_backup_decode(buf, len, &pl.b);
	if (rv)
		return rv;
	sum->created = pl.b->created;
	pl.idx = calloc(pl.b->n_objects ? pl.b->n_objects : 1, sizeof *pl.idx);
	pl.target_pid = calloc(pl.b->n_partitions ? pl.b->n_partitions : 1, sizeof *pl.target_pid);
	if (!pl.idx || !pl.target_pid) {
		rv = kw_error_set(KW_ERR_NO_MEMORY, "restore: out of memory");
		goto out;
	}
	for (size_t i = 0; i < pl.b->n_objects; i++) {
		pl.idx[i].id = pl.b->objects[i].row.id;
		pl.idx[i].at = i;
	}
	qsort(pl.idx, pl.b->n_objects, sizeof *pl.idx, id_index_cmp);
	lock(ks);
	rv = key_id_locked(ks, mine);
	if (!rv && CRYPTO_memcmp(mine, pl.b->key_id, sizeof mine) != 0) {
		kw_backup_hex(pl.b->key_id, 8, theirs_hex);
		kw_backup_hex(mine, 8, mine_hex);
		rv = kw_error_set(KW_ERR_AUTH,
				  "restore: the backup was sealed under another master key (its master-key id %s, this "
				  "HSM's %s): restore it into an HSM that holds the same master key; nothing was "
				  "restored",
				  theirs_hex, mine_hex);
	}
	if (!rv)
		rv = schema_locked(ks, &schema);
	if (!rv && pl.b->schema > schema)
		rv = kw_error_set(KW_ERR_VERSION,
				  "restore: the backup comes from a newer keystore (schema %" PRIu32
				  ", this keywardd has %" PRIu32 "): upgrade keywardd first; nothing was restored",
				  pl.b->schema, schema);
	/* every row must be one this HSM could have made, every sealed key authenticate, before anything is written */
	for (size_t i = 0; !rv && i < pl.b->n_objects; i++) {
		unsigned char *plain = NULL;
		size_t plain_len = 0;

		rv = restore_check_row(pl.b, &pl.b->objects[i]);
		if (rv || !is_sealed_class(pl.b->objects[i].row.cls))
			continue;
		rv = backup_unseal_locked(ks, pl.b, pl.idx, &pl.b->objects[i], &plain, &plain_len);
		if (plain) {
			OPENSSL_cleanse(plain, plain_len);
			free(plain);
		}
	}
	if (!rv)
		rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto unlocked;
	rv = ks->b->ops->partition_list(ks->b, &pl.here, &pl.n_here);
	if (!rv)
		rv = restore_partitions_locked(ks, &pl, sum);
	if (!rv)
		rv = restore_credentials_locked(ks, &pl, sum);
	if (!rv)
		rv = restore_objects_locked(ks, &pl, sum);
	if (!rv) {
		kw_backup_hex(pl.b->key_id, 8, theirs_hex);
		rv = kw_audit_change_locked(
			ks, "hsm.restore",
			"backup of %s taken at %" PRId64 " (source audit head %" PRIu64
			", master-key id %s): partitions "
			"%u created, %u kept; credentials %u added, %u kept; objects %u added, %u identical kept; %u "
			"keys resealed",
			pl.b->scope[0] ? pl.b->scope : "every partition", pl.b->created, pl.b->audit_seq, theirs_hex,
			sum->partitions_created, sum->partitions_kept, sum->credentials_added, sum->credentials_kept,
			sum->objects_added, sum->objects_kept, sum->keys_resealed);
	}
	rv = finish(ks->b, rv);
unlocked:
	unlock(ks);
out:
	OPENSSL_cleanse(mine, sizeof mine);
	free(pl.here);
	free(pl.idx);
	free(pl.target_pid);
	kw_backup_free(pl.b);
	kw_store_changed(ks); /* after the commit: a key read before it is not cached after it */
	return rv;
}
