/*
 * Objects: key pairs, secret keys, certificates and data objects, each
 * filed under owner + name in a partition. Creating, finding, listing,
 * loading and exporting keys, deleting, the attribute rules (extractable
 * and modifiable go one way only, owner/name change only while modifiable),
 * changing owner, copying. Sealing is aad.c's.
 */
#include "keystore/keystore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "common/log.h"
#include "keystore/backend.h"
#include "keystore/internal.h"

#define LIST_LIMIT_MAX 1000

static kw_rv check_text(const char *what, const char *s, size_t max, bool forbid_double_underscore)
{
	size_t len;

	if (!s || !*s)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: the %s is empty", what);
	len = strlen(s);
	if (len > max)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: the %s is %zu characters long, the maximum is %zu", what,
				    len, max);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c > 0x7e)
			return kw_error_set(KW_ERR_ARGUMENTS,
					    "store: the %s \"%.*s...\" has a non-printable character at position %zu",
					    what, (int)(i < 40 ? i : 40), s, i + 1);
	}
	if (forbid_double_underscore && strstr(s, "__"))
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "store: the %s \"%s\" contains \"__\", which separates owner and name", what, s);
	return KW_OK;
}

kw_rv kw_check_owner(const char *owner)
{
	return check_text("owner", owner, KW_OWNER_MAX, true);
}

kw_rv kw_check_name(const char *name)
{
	return check_text("object name", name, KW_NAME_MAX, false);
}

static kw_rv random_id(uint64_t *out)
{
	uint64_t v = 0;

	do {
		if (RAND_bytes((unsigned char *)&v, sizeof v) != 1)
			return kw_error_set(KW_ERR_CRYPTO, "store: no random bytes for an object id");
		v &= INT64_MAX;
	} while (v == 0);
	*out = v;
	return KW_OK;
}

/* ---- keys ---- */

static kw_rv describe_key(EVP_PKEY *pkey, enum kw_key_type *type, unsigned *bits, char curve[KW_CURVE_MAX])
{
	char group[64] = "";
	size_t glen = 0;

	curve[0] = '\0';
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		*type = KW_KEY_RSA;
		*bits = (unsigned)EVP_PKEY_get_bits(pkey);
		return KW_OK;
	case EVP_PKEY_EC:
		*type = KW_KEY_EC;
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen) != 1)
			return kw_error_set(KW_ERR_KEY_TYPE, "store: EC key without a named curve");
		if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) {
			snprintf(curve, KW_CURVE_MAX, "P-256");
			*bits = 256;
		} else if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0) {
			snprintf(curve, KW_CURVE_MAX, "P-384");
			*bits = 384;
		} else if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0) {
			snprintf(curve, KW_CURVE_MAX, "P-521");
			*bits = 521;
		} else {
			return kw_error_set(KW_ERR_KEY_TYPE, "store: EC curve %s is not supported", group);
		}
		return KW_OK;
	case EVP_PKEY_ED25519:
		*type = KW_KEY_ED25519;
		*bits = 256;
		snprintf(curve, KW_CURVE_MAX, "Ed25519");
		return KW_OK;
	default:
		return kw_error_set(KW_ERR_KEY_TYPE, "store: key type %s is not supported",
				    EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "(unknown)");
	}
}

/* ---- objects ---- */

static kw_rv partition_exists_locked(struct kw_keystore *ks, uint64_t pid)
{
	struct kw_partition_info info;

	return ks->b->ops->partition_get(ks->b, NULL, pid, &info, NULL, NULL);
}

kw_rv kw_check_ckaid(const unsigned char *ckaid, size_t len)
{
	if (len > KW_CKAID_MAX)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "store: a CKA_ID is %zu bytes long, the maximum is %d", len,
				    KW_CKAID_MAX);
	if (len && !ckaid)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: CKA_ID length %zu without its bytes", len);
	return KW_OK;
}

/*
 * Keys (private, public, secret) share one namespace per owner: EXISTS if
 * owner has a key named name other than skip1/skip2. Certificates and
 * data objects are no conflict. Inside a transaction.
 */
static kw_rv key_name_free_locked(struct kw_keystore *ks, uint64_t pid, const char *owner, const char *name,
				  uint64_t skip1, uint64_t skip2)
{
	struct kw_object_row *rows = NULL;
	char pname[KW_PARTITION_NAME_MAX + 1];
	size_t n = 0;
	kw_rv rv;

	rv = ks->b->ops->object_list(ks->b, pid, owner, name, KW_CLASS_ANY, 0, 0, &rows, &n);
	for (size_t i = 0; !rv && i < n; i++) {
		if (is_key_class(rows[i].cls) && rows[i].id != skip1 && rows[i].id != skip2) {
			kw_part_name_locked(ks, pid, pname);
			rv = kw_error_set(KW_ERR_EXISTS,
					  "store: a key named \"%s\" already exists under owner %s in partition '%s'", name,
					  owner, pname);
		}
	}
	kw_object_rows_free(rows, n);
	return rv;
}

kw_rv kw_keystore_keypair_rows(const struct kw_keygen *spec, EVP_PKEY *pkey, struct kw_object_row *priv,
			       struct kw_object_row *pub)
{
	struct kw_object_row pr, pu;
	unsigned char *spki = NULL;
	size_t spki_len = 0;
	kw_rv rv;

	memset(&pr, 0, sizeof pr);
	if (!spec || !pkey || !priv || !pub)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: a key pair needs a spec, a key and output rows");
	memset(priv, 0, sizeof *priv);
	memset(pub, 0, sizeof *pub);
	rv = kw_check_owner(spec->owner);
	if (!rv)
		rv = kw_check_name(spec->name);
	if (!rv)
		rv = kw_check_ckaid(spec->ckaid, spec->ckaid_len);
	if (!rv)
		rv = describe_key(pkey, &pr.key_type, &pr.bits, pr.curve);
	if (!rv)
		rv = kw_spki_der(pkey, &spki, &spki_len);
	if (!rv && spec->ckaid_len) {
		memcpy(pr.ckaid, spec->ckaid, spec->ckaid_len);
		pr.ckaid_len = spec->ckaid_len;
	} else if (!rv) {
		rv = kw_keystore_default_ckaid(spki, spki_len, pr.ckaid);
		pr.ckaid_len = KW_CKAID_DEFAULT_LEN;
	}
	if (rv) {
		free(spki);
		return rv;
	}
	snprintf(pr.owner, sizeof pr.owner, "%s", spec->owner);
	snprintf(pr.name, sizeof pr.name, "%s", spec->name);
	pr.cls = KW_CLASS_PRIVATE_KEY;
	pr.sensitive = true;
	pr.extractable = spec->extractable;
	pr.modifiable = spec->modifiable;
	pr.never_extractable = !spec->extractable && !spec->imported;
	pr.always_sensitive = !spec->imported;
	pr.usages = spec->usages;
	pr.created = now();

	pu = (struct kw_object_row){.cls = KW_CLASS_PUBLIC_KEY, .key_type = pr.key_type, .bits = pr.bits,
				    .value = spki, .value_len = spki_len, .sensitive = false, .extractable = true,
				    .modifiable = spec->modifiable, .usages = spec->usages, .created = pr.created};
	memcpy(pu.owner, pr.owner, sizeof pu.owner);
	memcpy(pu.name, pr.name, sizeof pu.name);
	memcpy(pu.curve, pr.curve, sizeof pu.curve);
	memcpy(pu.ckaid, pr.ckaid, sizeof pu.ckaid);
	pu.ckaid_len = pr.ckaid_len;
	*priv = pr;
	*pub = pu;
	return KW_OK;
}

kw_rv kw_keystore_put_keypair(struct kw_keystore *ks, uint64_t partition_id, const struct kw_keygen *spec,
			      EVP_PKEY *pkey, struct kw_object_row *priv, struct kw_object_row *pub)
{
	struct kw_object_row pr, pu;
	struct kw_sealed sealed;
	unsigned char *spki = NULL;
	size_t spki_len = 0;
	char pname[KW_PARTITION_NAME_MAX + 1];
	kw_rv rv;

	memset(&pr, 0, sizeof pr);
	memset(&pu, 0, sizeof pu);
	memset(&sealed, 0, sizeof sealed);
	if (!ks || !spec || !pkey || !priv || !pub)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: put_keypair needs a spec, a key and output rows");
	memset(priv, 0, sizeof *priv);
	memset(pub, 0, sizeof *pub);
	rv = kw_keystore_keypair_rows(spec, pkey, &pr, &pu);
	if (rv)
		return rv;
	spki = pu.value; /* freed at out unless it is handed to *pub */
	spki_len = pu.value_len;

	lock(ks);
	rv = kw_need_unlocked(ks);
	if (!rv)
		rv = partition_exists_locked(ks, partition_id);
	if (!rv)
		rv = random_id(&pr.id);
	if (!rv)
		do
			rv = random_id(&pu.id);
		while (!rv && pu.id == pr.id);
	if (rv)
		goto out;
	pr.partition_id = pu.partition_id = partition_id;
	pr.pair_id = pu.id;
	pu.pair_id = pr.id;

	rv = kw_seal_row_locked(ks, &pr, pkey, spki, spki_len, &sealed);
	if (rv)
		goto out;
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = key_name_free_locked(ks, partition_id, pr.owner, pr.name, 0, 0);
	if (!rv)
		rv = ks->b->ops->object_insert(ks->b, &pu, NULL);
	if (!rv)
		rv = ks->b->ops->object_insert(ks->b, &pr, &sealed);
	if (rv == KW_ERR_EXISTS) {
		kw_part_name_locked(ks, partition_id, pname);
		kw_error_set(rv, "store: a key named \"%s\" already exists under owner %s in partition '%s'", pr.name,
			     pr.owner, pname);
	}
	if (!rv)
		rv = kw_audit_key_locked(ks, "key.generate", &pr);
	rv = finish(ks->b, rv);
	if (rv)
		goto out;
	*priv = pr;
	*pub = pu;
	spki = NULL; /* now pub->value */
	kw_debug(KW_DEBUG_STORE, "store: key pair 0x%" PRIx64 "/0x%" PRIx64 " \"%s\" stored under %s", pr.id, pu.id,
		 pr.name, pr.owner);
out:
	unlock(ks);
	kw_sealed_cleanup(&sealed);
	free(spki);
	return rv;
}

static kw_rv not_found_locked(struct kw_keystore *ks, uint64_t pid, uint64_t id)
{
	char pname[KW_PARTITION_NAME_MAX + 1];

	kw_part_name_locked(ks, pid, pname);
	return kw_error_set(KW_ERR_NOT_FOUND, "store: no object 0x%" PRIx64 " in partition '%s'", id, pname);
}

kw_rv kw_keystore_get(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, struct kw_object_row *out)
{
	kw_rv rv;

	if (!out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output row");
	memset(out, 0, sizeof *out);
	lock(ks);
	rv = ks->b->ops->object_get(ks->b, partition_id, id, out, NULL);
	if (rv == KW_ERR_NOT_FOUND)
		rv = not_found_locked(ks, partition_id, id);
	unlock(ks);
	return rv;
}

static int class_rank(enum kw_class cls)
{
	switch (cls) {
	case KW_CLASS_PRIVATE_KEY: return 0;
	case KW_CLASS_SECRET_KEY: return 1;
	case KW_CLASS_PUBLIC_KEY: return 2;
	case KW_CLASS_CERTIFICATE: return 3;
	case KW_CLASS_DATA: return 4;
	default: return 5;
	}
}

kw_rv kw_keystore_find(struct kw_keystore *ks, uint64_t partition_id, const char *owner, const char *name,
		       enum kw_class cls, struct kw_object_row *out)
{
	struct kw_object_row *rows = NULL;
	char pname[KW_PARTITION_NAME_MAX + 1];
	size_t n = 0, best = 0;
	kw_rv rv;

	if (!out || !owner || !name)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: find needs an owner and a name");
	memset(out, 0, sizeof *out);
	lock(ks);
	rv = ks->b->ops->object_list(ks->b, partition_id, owner, name, cls, 0, 0, &rows, &n);
	if (rv)
		goto out;
	if (n == 0) {
		kw_part_name_locked(ks, partition_id, pname);
		rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no object \"%s\" under owner %s in partition '%s'", name,
				  owner, pname);
		goto out;
	}
	for (size_t i = 1; i < n; i++) /* private key first, then secret, public, certificate, data */
		if (class_rank(rows[i].cls) < class_rank(rows[best].cls))
			best = i;
	*out = rows[best];
	rows[best].value = NULL;
out:
	unlock(ks);
	kw_object_rows_free(rows, n);
	return rv;
}

kw_rv kw_keystore_list(struct kw_keystore *ks, uint64_t partition_id, const char *owner, const char *name,
		       uint64_t after_id, unsigned limit, struct kw_object_row **rows, size_t *n, bool *more)
{
	struct kw_object_row *r = NULL;
	size_t cnt = 0;
	kw_rv rv;

	if (!rows || !n)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output for the list");
	*rows = NULL;
	*n = 0;
	if (more)
		*more = false;
	if (limit == 0 || limit > LIST_LIMIT_MAX)
		limit = LIST_LIMIT_MAX;
	lock(ks);
	rv = ks->b->ops->object_list(ks->b, partition_id, owner, name, KW_CLASS_ANY, after_id, limit + 1, &r, &cnt);
	unlock(ks);
	if (rv)
		return rv;
	if (cnt > limit) {
		kw_object_row_cleanup(&r[limit]);
		cnt = limit;
		if (more)
			*more = true;
	}
	*rows = r;
	*n = cnt;
	return KW_OK;
}

static kw_rv get_sealed_locked(struct kw_keystore *ks, uint64_t pid, uint64_t id, struct kw_object_row *row,
			       struct kw_sealed *s)
{
	kw_rv rv = ks->b->ops->object_get(ks->b, pid, id, row, s);

	if (rv == KW_ERR_NOT_FOUND)
		rv = not_found_locked(ks, pid, id);
	return rv;
}

kw_rv kw_keystore_load_private(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, EVP_PKEY **out)
{
	struct kw_object_row row;
	struct kw_sealed s;
	kw_rv rv;

	if (!out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output key");
	*out = NULL;
	memset(&row, 0, sizeof row);
	memset(&s, 0, sizeof s);
	lock(ks);
	rv = kw_need_unlocked(ks);
	if (!rv)
		rv = get_sealed_locked(ks, partition_id, id, &row, &s);
	if (rv)
		goto out;
	if (row.cls != KW_CLASS_PRIVATE_KEY) {
		rv = kw_error_set(KW_ERR_KEY_TYPE, "store: object 0x%" PRIx64 " (\"%s\") is not a private key", id,
				  row.name);
		goto out;
	}
	rv = kw_unseal_row_locked(ks, &row, &s, out);
out:
	unlock(ks);
	kw_object_row_cleanup(&row);
	kw_sealed_cleanup(&s);
	return rv;
}

/* Deletes rows[i] for every i with del[i], clearing survivors' pair_id; inside a transaction. */
static kw_rv delete_rows_locked(struct kw_keystore *ks, uint64_t pid, const struct kw_object_row *rows, size_t n)
{
	struct kw_object_row pair;
	kw_rv rv;

	for (size_t i = 0; i < n; i++) {
		rv = ks->b->ops->object_delete(ks->b, pid, rows[i].id);
		if (rv)
			return rv;
	}
	for (size_t i = 0; i < n; i++) {
		if (!rows[i].pair_id)
			continue;
		rv = ks->b->ops->object_get(ks->b, pid, rows[i].pair_id, &pair, NULL);
		if (rv == KW_ERR_NOT_FOUND) /* deleted too, or already gone */
			continue;
		if (rv)
			return rv;
		if (pair.pair_id == rows[i].id) {
			pair.pair_id = 0;
			rv = ks->b->ops->object_update(ks->b, &pair, NULL);
		}
		kw_object_row_cleanup(&pair);
		if (rv)
			return rv;
	}
	return KW_OK;
}

kw_rv kw_keystore_delete(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, const char *owner,
			 const char *name, enum kw_class cls, unsigned *deleted)
{
	struct kw_object_row *rows = NULL;
	char pname[KW_PARTITION_NAME_MAX + 1];
	size_t n = 0;
	kw_rv rv;

	if (deleted)
		*deleted = 0;
	if (!id && (!owner || !name))
		return kw_error_set(KW_ERR_ARGUMENTS, "store: delete needs an object id, or an owner and a name");
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	if (id) {
		rows = calloc(1, sizeof *rows);
		if (!rows) {
			rv = kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
			goto done;
		}
		rv = ks->b->ops->object_get(ks->b, partition_id, id, rows, NULL);
		if (rv == KW_ERR_NOT_FOUND)
			rv = not_found_locked(ks, partition_id, id);
		if (rv)
			goto done;
		n = 1;
	} else {
		rv = ks->b->ops->object_list(ks->b, partition_id, owner, name, cls, 0, 0, &rows, &n);
		if (rv)
			goto done;
		if (n == 0) {
			kw_part_name_locked(ks, partition_id, pname);
			rv = kw_error_set(KW_ERR_NOT_FOUND, "store: no object \"%s\" under owner %s in partition '%s'",
					  name, owner, pname);
			goto done;
		}
	}
	rv = delete_rows_locked(ks, partition_id, rows, n);
done:
	rv = finish(ks->b, rv);
	/*
	 * A deletion is how room is made in a full store, so its record is
	 * written after it commits, in a transaction of its own; if even that
	 * fails, the error log says so.
	 */
	if (!rv && n) {
		kw_rv arv = ks->b->ops->begin(ks->b);
		if (!arv)
			arv = finish(ks->b,
				     kw_audit_change_locked(ks, "key.delete", "%s/%s (0x%" PRIx64 "%s): %zu object%s",
							    rows[0].owner, rows[0].name, rows[0].id,
							    n > 1 ? " and its pair" : "", n, n == 1 ? "" : "s"));
		if (arv)
			kw_log(KW_LOG_ERROR, "audit: the deletion of %s/%s is done but not recorded: %s", rows[0].owner,
			       rows[0].name, kw_last_error());
	}
	if (!rv && deleted)
		*deleted = (unsigned)n;
	if (!rv)
		kw_debug(KW_DEBUG_STORE, "store: deleted %zu object(s)", n);
out:
	unlock(ks);
	kw_object_rows_free(rows, n ? n : (rows ? 1 : 0));
	kw_store_changed(ks); /* after the commit: a key read before it is not cached after it */
	return rv;
}

/*
 * Reseals a private- or secret-key row under its (new) fields and writes
 * new_row; old_row has the fields it was sealed under. With insert, new_row
 * is a new row (a copy) rather than an update.
 */
static kw_rv reseal_locked(struct kw_keystore *ks, const struct kw_object_row *old_row,
			   const struct kw_sealed *old_s, const struct kw_object_row *new_row, bool insert)
{
	EVP_PKEY *pkey = NULL;
	unsigned char *key = NULL;
	size_t key_len = 0;
	struct kw_sealed s;
	kw_rv rv;

	memset(&s, 0, sizeof s);
	if (old_row->cls == KW_CLASS_SECRET_KEY) {
		rv = kw_unseal_secret_locked(ks, old_row, old_s, &key, &key_len);
		if (!rv)
			rv = kw_seal_bytes_locked(ks, new_row, key, key_len, NULL, 0, &s);
	} else {
		rv = kw_unseal_row_locked(ks, old_row, old_s, &pkey);
		if (!rv)
			rv = kw_seal_row_locked(ks, new_row, pkey, old_s->spki, old_s->spki_len, &s);
	}
	if (!rv)
		rv = insert ? ks->b->ops->object_insert(ks->b, new_row, &s) : ks->b->ops->object_update(ks->b, new_row, &s);
	EVP_PKEY_free(pkey);
	if (key) {
		OPENSSL_cleanse(key, key_len);
		free(key);
	}
	kw_sealed_cleanup(&s);
	return rv;
}

kw_rv kw_keystore_set_attributes(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, int extractable,
				 int modifiable, const char *new_name)
{
	struct kw_attr_change chg = {.extractable = extractable, .modifiable = modifiable, .new_name = new_name};

	return kw_keystore_modify(ks, partition_id, id, &chg);
}

kw_rv kw_keystore_modify(struct kw_keystore *ks, uint64_t partition_id, uint64_t id,
			 const struct kw_attr_change *chg)
{
	struct kw_object_row row, nrow, pair;
	struct kw_sealed s;
	bool rename, has_pair = false, changed, reid;
	const char *new_name;
	char pname[KW_PARTITION_NAME_MAX + 1];
	kw_rv rv;

	memset(&row, 0, sizeof row);
	memset(&pair, 0, sizeof pair);
	memset(&s, 0, sizeof s);
	if (!chg)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no change given");
	new_name = chg->new_name;
	if (chg->extractable < -1 || chg->extractable > 1 || chg->modifiable < -1 || chg->modifiable > 1)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: extractable/modifiable must be -1, 0 or 1");
	if (new_name) {
		rv = kw_check_name(new_name);
		if (rv)
			return rv;
	}
	if (chg->set_ckaid && (rv = kw_check_ckaid(chg->ckaid, chg->ckaid_len)))
		return rv;
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = get_sealed_locked(ks, partition_id, id, &row, &s);
	if (rv)
		goto done;
	if (row.pair_id) {
		rv = ks->b->ops->object_get(ks->b, partition_id, row.pair_id, &pair, NULL);
		if (rv == KW_ERR_NOT_FOUND)
			rv = KW_OK;
		else if (rv)
			goto done;
		else
			has_pair = true;
	}
	/* one-way rules first */
	if (chg->extractable == 1 && !row.extractable) {
		rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
				  "store: object 0x%" PRIx64 " (\"%s\"): extractable may go from true to false, never back",
				  id, row.name);
		goto done;
	}
	if (chg->modifiable == 1 && !row.modifiable) {
		rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
				  "store: object 0x%" PRIx64 " (\"%s\"): modifiable may go from true to false, never back",
				  id, row.name);
		goto done;
	}
	rename = new_name && strcmp(new_name, row.name) != 0;
	reid = chg->set_ckaid &&
	       (chg->ckaid_len != row.ckaid_len || (chg->ckaid_len && memcmp(chg->ckaid, row.ckaid, chg->ckaid_len)) ||
		(has_pair && (chg->ckaid_len != pair.ckaid_len ||
			      (chg->ckaid_len && memcmp(chg->ckaid, pair.ckaid, chg->ckaid_len)))));
	if ((rename || reid) && (!row.modifiable || (has_pair && !pair.modifiable))) {
		rv = kw_error_set(KW_ERR_NOT_MODIFIABLE,
				  "store: object 0x%" PRIx64 " (\"%s\" under owner %s) is not modifiable: its %s cannot change",
				  id, row.name, row.owner, rename ? "name" : "CKA_ID");
		goto done;
	}
	if (rename && is_key_class(row.cls)) {
		rv = key_name_free_locked(ks, partition_id, row.owner, new_name, row.id, has_pair ? pair.id : 0);
		if (rv)
			goto done;
	}
	nrow = row; /* shares row.value, which only row frees */
	if (chg->extractable == 0)
		nrow.extractable = false;
	if (chg->modifiable == 0)
		nrow.modifiable = false;
	if (rename)
		snprintf(nrow.name, sizeof nrow.name, "%s", new_name);
	if (reid) {
		if (chg->ckaid_len)
			memcpy(nrow.ckaid, chg->ckaid, chg->ckaid_len);
		nrow.ckaid_len = chg->ckaid_len;
	}
	changed = nrow.extractable != row.extractable || nrow.modifiable != row.modifiable;
	if (!changed && !rename && !reid)
		goto done;
	if (is_sealed_class(row.cls) && changed) {
		rv = kw_need_unlocked(ks);
		if (!rv)
			rv = reseal_locked(ks, &row, &s, &nrow, false);
	} else {
		rv = ks->b->ops->object_update(ks->b, &nrow, NULL);
	}
	if (rv == KW_ERR_EXISTS)
		goto exists;
	if (rv)
		goto done;
	if ((rename || reid) && has_pair) {
		if (rename)
			snprintf(pair.name, sizeof pair.name, "%s", new_name);
		if (reid) {
			memcpy(pair.ckaid, nrow.ckaid, sizeof pair.ckaid);
			pair.ckaid_len = nrow.ckaid_len;
		}
		rv = ks->b->ops->object_update(ks->b, &pair, NULL);
		if (rv == KW_ERR_EXISTS)
			goto exists;
	}
	if (!rv)
		rv = kw_audit_change_locked(
			ks, "key.set_attributes", "%s/%s (0x%" PRIx64 "): extractable %d, modifiable %d%s%s%s",
			row.owner, nrow.name, row.id, nrow.extractable, nrow.modifiable,
			rename ? ", renamed from " : "", rename ? row.name : "", reid ? ", CKA_ID changed" : "");
	goto done;
exists:
	kw_part_name_locked(ks, partition_id, pname);
	rv = kw_error_set(KW_ERR_EXISTS, "store: owner %s already has an object named \"%s\" in partition '%s'",
			  row.owner, new_name, pname);
done:
	rv = finish(ks->b, rv);
out:
	unlock(ks);
	kw_object_row_cleanup(&row);
	kw_object_row_cleanup(&pair);
	kw_sealed_cleanup(&s);
	kw_store_changed(ks); /* after the commit: a key read before it is not cached after it */
	return rv;
}

kw_rv kw_keystore_change_owner(struct kw_keystore *ks, uint64_t partition_id, const char *name,
			       const char *old_owner, const char *new_owner, struct kw_object_row **moved,
			       size_t *n)
{
	struct kw_object_row *rows = NULL, *all = NULL, *taken = NULL;
	size_t cnt = 0, nall = 0, ntaken = 0;
	char pname[KW_PARTITION_NAME_MAX + 1], owners[512];
	size_t off = 0;
	kw_rv rv;

	if (moved)
		*moved = NULL;
	if (n)
		*n = 0;
	rv = kw_check_name(name);
	if (!rv)
		rv = kw_check_owner(old_owner);
	if (!rv)
		rv = kw_check_owner(new_owner);
	if (rv)
		return rv;
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	kw_part_name_locked(ks, partition_id, pname);
	rv = ks->b->ops->object_list(ks->b, partition_id, old_owner, name, KW_CLASS_ANY, 0, 0, &rows, &cnt);
	if (rv)
		goto done;
	if (cnt == 0) {
		rv = ks->b->ops->object_list(ks->b, partition_id, NULL, name, KW_CLASS_ANY, 0, 0, &all, &nall);
		if (rv)
			goto done;
		owners[0] = '\0';
		for (size_t i = 0; i < nall; i++) {
			bool seen = false;

			for (size_t j = 0; j < i && !seen; j++)
				seen = strcmp(all[j].owner, all[i].owner) == 0;
			if (!seen && off < sizeof owners)
				off += (size_t)snprintf(owners + off, sizeof owners - off, "%s%s", off ? ", " : "",
							all[i].owner);
		}
		rv = kw_error_set(KW_ERR_NOT_FOUND,
				  "store: no object \"%s\" under owner %s in partition '%s' (owners with that name: %s)",
				  name, old_owner, pname, nall ? owners : "none");
		goto done;
	}
	rv = ks->b->ops->object_list(ks->b, partition_id, new_owner, name, KW_CLASS_ANY, 0, 0, &taken, &ntaken);
	if (rv)
		goto done;
	if (ntaken) {
		rv = kw_error_set(KW_ERR_EXISTS,
				  "store: owner %s already has an object named \"%s\" in partition '%s'; "
				  "delete or rename it first",
				  new_owner, name, pname);
		goto done;
	}
	for (size_t i = 0; i < cnt; i++) {
		if (!rows[i].modifiable) {
			rv = kw_error_set(KW_ERR_NOT_MODIFIABLE,
					  "store: object 0x%" PRIx64 " (\"%s\" under owner %s) is not modifiable; "
					  "its owner cannot change",
					  rows[i].id, name, old_owner);
			goto done;
		}
	}
	for (size_t i = 0; i < cnt && !rv; i++) {
		snprintf(rows[i].owner, sizeof rows[i].owner, "%s", new_owner);
		rv = ks->b->ops->object_update(ks->b, &rows[i], NULL);
	}
	if (rv == KW_ERR_EXISTS)
		rv = kw_error_set(KW_ERR_EXISTS, "store: owner %s already has an object named \"%s\"", new_owner, name);
	if (!rv)
		rv = kw_audit_change_locked(ks, "key.change_owner", "%s: %s -> %s (%zu object%s)", name, old_owner,
					    new_owner, cnt, cnt == 1 ? "" : "s");
done:
	rv = finish(ks->b, rv);
out:
	unlock(ks);
	kw_object_rows_free(all, nall);
	kw_object_rows_free(taken, ntaken);
	if (!rv) {
		kw_debug(KW_DEBUG_STORE, "store: moved %zu object(s) \"%s\" from %s to %s", cnt, name, old_owner,
			 new_owner);
		if (moved) {
			*moved = rows;
			rows = NULL;
		}
		if (n)
			*n = cnt;
	}
	kw_object_rows_free(rows, cnt);
	kw_store_changed(ks); /* after the commit: a key read before it is not cached after it */
	return rv;
}

/* ---- secret keys, certificates, data objects, export, copy ---- */

kw_rv kw_keystore_put_secret(struct kw_keystore *ks, uint64_t partition_id, const struct kw_keygen *spec,
			     const unsigned char *key, size_t key_len, struct kw_object_row *out)
{
	struct kw_object_row r;
	struct kw_sealed sealed;
	char pname[KW_PARTITION_NAME_MAX + 1];
	kw_rv rv;

	memset(&r, 0, sizeof r);
	memset(&sealed, 0, sizeof sealed);
	if (!ks || !spec || !key || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: put_secret needs a spec, a key and an output row");
	memset(out, 0, sizeof *out);
	if (spec->secret_type == KW_KEY_GENERIC ? !kw_secret_len_ok(KW_KEY_GENERIC, key_len)
						 : !kw_secret_len_ok(KW_KEY_AES, key_len))
		return kw_error_set(KW_ERR_KEY_SIZE, "store: %s, not %zu bytes",
				    spec->secret_type == KW_KEY_GENERIC ? "generic secrets have 16 to 128 bytes"
									 : "AES keys have 16, 24 or 32 bytes",
				    key_len);
	rv = kw_check_owner(spec->owner);
	if (!rv)
		rv = kw_check_name(spec->name);
	if (!rv)
		rv = kw_check_ckaid(spec->ckaid, spec->ckaid_len);
	if (rv)
		return rv;
	lock(ks);
	rv = kw_need_unlocked(ks);
	if (!rv)
		rv = partition_exists_locked(ks, partition_id);
	if (!rv)
		rv = random_id(&r.id);
	if (rv)
		goto out;
	r.partition_id = partition_id;
	snprintf(r.owner, sizeof r.owner, "%s", spec->owner);
	snprintf(r.name, sizeof r.name, "%s", spec->name);
	r.cls = KW_CLASS_SECRET_KEY;
	r.key_type = spec->secret_type == KW_KEY_GENERIC ? KW_KEY_GENERIC : KW_KEY_AES;
	r.bits = (unsigned)key_len * 8;
	r.sensitive = true;
	r.extractable = spec->extractable;
	r.modifiable = spec->modifiable;
	r.never_extractable = !spec->extractable && !spec->imported && (!spec->derived || spec->base_never_extractable);
	r.always_sensitive = !spec->imported;
	r.usages = spec->usages | (spec->derived ? KW_ROW_DERIVED : 0);
	r.created = now();
	if (spec->ckaid_len)
		memcpy(r.ckaid, spec->ckaid, spec->ckaid_len);
	r.ckaid_len = spec->ckaid_len;
	rv = kw_seal_bytes_locked(ks, &r, key, key_len, NULL, 0, &sealed);
	if (rv)
		goto out;
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = key_name_free_locked(ks, partition_id, r.owner, r.name, 0, 0);
	if (!rv)
		rv = ks->b->ops->object_insert(ks->b, &r, &sealed);
	if (rv == KW_ERR_EXISTS) {
		kw_part_name_locked(ks, partition_id, pname);
		kw_error_set(rv, "store: a key named \"%s\" already exists under owner %s in partition '%s'", r.name,
			     r.owner, pname);
	}
	if (!rv)
		rv = kw_audit_key_locked(ks, "key.generate", &r);
	rv = finish(ks->b, rv);
	if (rv)
		goto out;
	*out = r;
	kw_debug(KW_DEBUG_STORE, "store: secret key 0x%" PRIx64 " \"%s\" stored under %s", r.id, r.name, r.owner);
out:
	unlock(ks);
	kw_sealed_cleanup(&sealed);
	return rv;
}

kw_rv kw_keystore_object_row(const struct kw_objspec *spec, struct kw_object_row *out)
{
	struct kw_object_row r;
	const char *what, *app;
	kw_rv rv;

	memset(&r, 0, sizeof r);
	if (!spec || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: an object needs a spec and an output row");
	memset(out, 0, sizeof *out);
	if (spec->cls != KW_CLASS_CERTIFICATE && spec->cls != KW_CLASS_DATA && spec->cls != KW_CLASS_PUBLIC_KEY)
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "store: only certificates, data objects and public keys are created this way (class "
				    "%d); private and secret keys are generated on the HSM or unwrapped into it",
				    (int)spec->cls);
	what = spec->cls == KW_CLASS_CERTIFICATE ? "certificate" : spec->cls == KW_CLASS_DATA ? "data object" : "public key";
	if (spec->cls != KW_CLASS_PUBLIC_KEY && spec->usages)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "store: %s \"%s\": only keys have usages", what,
				    spec->name ? spec->name : "");
	app = spec->application && spec->application[0] ? spec->application : NULL;
	rv = kw_check_owner(spec->owner);
	if (!rv)
		rv = kw_check_name(spec->name);
	if (!rv)
		rv = kw_check_ckaid(spec->ckaid, spec->ckaid_len);
	if (rv)
		return rv;
	if (spec->value_len && !spec->value)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: %s \"%s\": value length %zu without its bytes", what,
				    spec->name, spec->value_len);
	if (spec->value_len > KW_OBJECT_VALUE_MAX)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "store: %s \"%s\": the value is %zu bytes, at most %d", what,
				    spec->name, spec->value_len, KW_OBJECT_VALUE_MAX);
	if (spec->cls == KW_CLASS_CERTIFICATE) {
		const unsigned char *p = spec->value;
		X509 *x = spec->value_len ? d2i_X509(NULL, &p, (long)spec->value_len) : NULL;
		bool whole = x && p == spec->value + spec->value_len;

		X509_free(x);
		/* leave no error on the thread's queue: a later SSL_read there would take it for its own */
		ERR_clear_error();
		if (!whole)
			return kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
					    "store: certificate \"%s\": the value is not one DER-encoded X.509 certificate "
					    "(%zu bytes%s)",
					    spec->name, spec->value_len,
					    x ? ", with bytes after the certificate" : "");
		if (app)
			return kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
					    "store: certificate \"%s\": only data objects have an application", spec->name);
	}
	if (app && (rv = check_text("application", app, KW_APPLICATION_MAX, false)))
		return rv;
	if (spec->cls == KW_CLASS_PUBLIC_KEY) {
		const unsigned char *p = spec->value;
		EVP_PKEY *pub = spec->value_len ? d2i_PUBKEY(NULL, &p, (long)spec->value_len) : NULL;
		bool whole = pub && p == spec->value + spec->value_len;

		ERR_clear_error();
		if (!whole || app) {
			EVP_PKEY_free(pub);
			return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "store: public key \"%s\": %s", spec->name,
					    app ? "a key has no application" : "the value is not one DER SubjectPublicKeyInfo");
		}
		rv = describe_key(pub, &r.key_type, &r.bits, r.curve);
		EVP_PKEY_free(pub);
		if (!rv && r.key_type == KW_KEY_RSA && (r.bits < 2048 || r.bits > 4096))
			rv = kw_error_set(KW_ERR_KEY_SIZE, "store: public key \"%s\": RSA keys of 2048 to 4096 bits, not %u",
					  spec->name, r.bits);
		if (!rv && (spec->usages & ~(KW_USAGE_SIGN | KW_USAGE_DECRYPT | KW_USAGE_WRAP) ||
			    (r.key_type != KW_KEY_RSA && (spec->usages & (KW_USAGE_DECRYPT | KW_USAGE_WRAP)))))
			rv = kw_error_set(KW_ERR_KEY_FUNCTION,
					  "store: public key \"%s\": usages 0x%x (verify; encrypt and wrap for RSA)",
					  spec->name, spec->usages);
		if (rv)
			return rv;
	}

	snprintf(r.owner, sizeof r.owner, "%s", spec->owner);
	snprintf(r.name, sizeof r.name, "%s", spec->name);
	r.cls = spec->cls;
	r.usages = spec->usages;
	r.extractable = true;
	r.modifiable = spec->modifiable;
	r.created = now();
	if (spec->ckaid_len)
		memcpy(r.ckaid, spec->ckaid, spec->ckaid_len);
	r.ckaid_len = spec->ckaid_len;
	snprintf(r.application, sizeof r.application, "%s", app ? app : "");
	if (spec->value_len) {
		r.value = malloc(spec->value_len);
		if (!r.value)
			return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
		memcpy(r.value, spec->value, spec->value_len);
		r.value_len = spec->value_len;
	}
	*out = r;
	return KW_OK;
}

kw_rv kw_keystore_put_object(struct kw_keystore *ks, uint64_t partition_id, const struct kw_objspec *spec,
			     struct kw_object_row *out)
{
	struct kw_object_row r;
	const char *what;
	char pname[KW_PARTITION_NAME_MAX + 1];
	kw_rv rv;

	memset(&r, 0, sizeof r);
	if (!ks || !spec || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: put_object needs a spec and an output row");
	rv = kw_keystore_object_row(spec, &r);
	if (rv)
		return rv;
	what = spec->cls == KW_CLASS_CERTIFICATE ? "certificate" : spec->cls == KW_CLASS_DATA ? "data object" : "public key";
	r.partition_id = partition_id;
	lock(ks);
	rv = partition_exists_locked(ks, partition_id);
	if (!rv)
		rv = random_id(&r.id);
	if (rv)
		goto out;
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = ks->b->ops->object_insert(ks->b, &r, NULL);
	if (rv == KW_ERR_EXISTS) {
		kw_part_name_locked(ks, partition_id, pname);
		kw_error_set(rv, "store: a %s named \"%s\" already exists under owner %s in partition '%s'", what, r.name,
			     r.owner, pname);
	}
	if (!rv)
		rv = kw_audit_change_locked(ks, "object.create", "%s/%s (0x%" PRIx64 "): %s of %zu bytes", r.owner,
					    r.name, r.id, what, r.value_len);
	rv = finish(ks->b, rv);
	if (rv)
		goto out;
	*out = r;
	r.value = NULL;
	kw_debug(KW_DEBUG_STORE, "store: %s 0x%" PRIx64 " \"%s\" stored under %s", what, out->id, out->name,
		 out->owner);
out:
	unlock(ks);
	kw_object_row_cleanup(&r);
	return rv;
}

kw_rv kw_keystore_load_secret(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, unsigned char **key,
			      size_t *len, struct kw_object_row *row_out)
{
	struct kw_object_row row;
	struct kw_sealed s;
	kw_rv rv;

	if (!key || !len)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output for the secret key");
	*key = NULL;
	*len = 0;
	memset(&row, 0, sizeof row);
	memset(&s, 0, sizeof s);
	lock(ks);
	rv = kw_need_unlocked(ks);
	if (!rv)
		rv = get_sealed_locked(ks, partition_id, id, &row, &s);
	if (rv)
		goto out;
	if (row.cls != KW_CLASS_SECRET_KEY) {
		rv = kw_error_set(KW_ERR_KEY_TYPE, "store: object 0x%" PRIx64 " (\"%s\" under owner %s) is not a secret key",
				  id, row.name, row.owner);
		goto out;
	}
	rv = kw_unseal_secret_locked(ks, &row, &s, key, len);
out:
	unlock(ks);
	kw_sealed_cleanup(&s);
	if (!rv && row_out) {
		*row_out = row;
		row.value = NULL;
	}
	kw_object_row_cleanup(&row);
	return rv;
}

kw_rv kw_keystore_export_key(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, unsigned char **out,
			     size_t *len, struct kw_object_row *row_out)
{
	struct kw_object_row row;
	struct kw_sealed s;
	EVP_PKEY *pkey = NULL;
	kw_rv rv;

	if (!out || !len)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output for the key");
	*out = NULL;
	*len = 0;
	memset(&row, 0, sizeof row);
	memset(&s, 0, sizeof s);
	lock(ks);
	rv = kw_need_unlocked(ks);
	if (!rv)
		rv = get_sealed_locked(ks, partition_id, id, &row, &s);
	if (rv)
		goto out;
	if (!is_sealed_class(row.cls)) {
		rv = kw_error_set(KW_ERR_KEY_TYPE,
				  "store: object 0x%" PRIx64 " (\"%s\" under owner %s) is not a private or secret key: "
				  "only those are wrapped",
				  id, row.name, row.owner);
		goto out;
	}
	/* the flag is also bound into the row's associated data: unsealing re-checks it */
	if (!row.extractable) {
		rv = kw_error_set(KW_ERR_UNEXTRACTABLE,
				  "store: key %s/%s (0x%" PRIx64 ") is not extractable: it can never leave the HSM",
				  row.owner, row.name, id);
		goto out;
	}
	if (row.cls == KW_CLASS_SECRET_KEY) {
		rv = kw_unseal_secret_locked(ks, &row, &s, out, len);
	} else {
		rv = kw_unseal_row_locked(ks, &row, &s, &pkey);
		if (!rv)
			rv = kw_pkcs8_der(pkey, out, len);
	}
out:
	unlock(ks);
	EVP_PKEY_free(pkey);
	kw_sealed_cleanup(&s);
	if (!rv && row_out) {
		*row_out = row;
		row.value = NULL;
	}
	kw_object_row_cleanup(&row);
	return rv;
}

/* One copied row: src's fields under a new id and name, the one-way rules applied. */
static kw_rv copy_row(const struct kw_object_row *src, uint64_t new_id, const char *new_name, int extractable,
		      int modifiable, struct kw_object_row *dst)
{
	/* a public key, a certificate or data object is public: its extractable stays as it is */
	bool secret = is_sealed_class(src->cls);

	if (secret && extractable == 1 && !src->extractable)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
				    "store: object 0x%" PRIx64 " (\"%s\") is not extractable: a copy of it cannot be either",
				    src->id, src->name);
	if (modifiable == 1 && !src->modifiable)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE,
				    "store: object 0x%" PRIx64 " (\"%s\") is not modifiable: a copy of it cannot be either",
				    src->id, src->name);
	*dst = *src;
	dst->value = NULL;
	dst->value_len = 0;
	dst->id = new_id;
	snprintf(dst->name, sizeof dst->name, "%s", new_name);
	if (secret && extractable == 0)
		dst->extractable = false;
	if (modifiable == 0)
		dst->modifiable = false;
	/* the copy's history includes the source's: never_extractable, always_sensitive carry over */
	dst->never_extractable = src->never_extractable && !dst->extractable;
	dst->always_sensitive = src->always_sensitive;
	dst->created = now();
	if (src->value_len) {
		dst->value = malloc(src->value_len);
		if (!dst->value)
			return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
		memcpy(dst->value, src->value, src->value_len);
		dst->value_len = src->value_len;
	}
	return KW_OK;
}

kw_rv kw_keystore_copy(struct kw_keystore *ks, uint64_t partition_id, uint64_t id, const char *new_name,
		       int extractable, int modifiable, struct kw_object_row **rows_out, size_t *n_out)
{
	struct kw_object_row src[2], *copies = NULL;
	struct kw_sealed s;
	char pname[KW_PARTITION_NAME_MAX + 1];
	size_t n = 0;
	uint64_t ids[2] = {0, 0};
	kw_rv rv;

	memset(src, 0, sizeof src);
	memset(&s, 0, sizeof s);
	if (!rows_out || !n_out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no output for the copy");
	*rows_out = NULL;
	*n_out = 0;
	if (extractable < -1 || extractable > 1 || modifiable < -1 || modifiable > 1)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: extractable/modifiable must be -1, 0 or 1");
	rv = kw_check_name(new_name);
	if (rv)
		return rv;
	copies = calloc(2, sizeof *copies);
	if (!copies)
		return kw_error_set(KW_ERR_NO_MEMORY, "store: out of memory");
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	/* src[0]: the row to copy, with its sealed material if any; src[1]: its pair half */
	rv = ks->b->ops->object_get(ks->b, partition_id, id, &src[0], NULL);
	if (rv == KW_ERR_NOT_FOUND)
		rv = not_found_locked(ks, partition_id, id);
	if (rv)
		goto done;
	n = 1;
	if (src[0].pair_id) {
		/* either half names the pair: copy from its private half */
		uint64_t priv_id = src[0].cls == KW_CLASS_PUBLIC_KEY ? src[0].pair_id : src[0].id;
		uint64_t pub_id = src[0].cls == KW_CLASS_PUBLIC_KEY ? src[0].id : src[0].pair_id;

		kw_object_row_cleanup(&src[0]);
		rv = get_sealed_locked(ks, partition_id, priv_id, &src[0], &s);
		if (!rv)
			rv = ks->b->ops->object_get(ks->b, partition_id, pub_id, &src[1], NULL);
		if (rv == KW_ERR_NOT_FOUND)
			rv = kw_tampered_locked(ks, &src[0], "its pair half is missing (deleted outside keywardd)");
		if (rv)
			goto done;
		n = 2;
	} else if (is_sealed_class(src[0].cls)) {
		kw_object_row_cleanup(&src[0]);
		rv = get_sealed_locked(ks, partition_id, id, &src[0], &s);
		if (rv)
			goto done;
	}
	if (is_key_class(src[0].cls))
		rv = key_name_free_locked(ks, partition_id, src[0].owner, new_name, 0, 0);
	if (!rv)
		rv = random_id(&ids[0]);
	while (!rv && n == 2 && (ids[1] == 0 || ids[1] == ids[0]))
		rv = random_id(&ids[1]);
	for (size_t i = 0; i < n && !rv; i++)
		rv = copy_row(&src[i], ids[i], new_name, extractable, modifiable, &copies[i]);
	if (rv)
		goto done;
	if (n == 2) {
		copies[0].pair_id = ids[1];
		copies[1].pair_id = ids[0];
	}
	/* public half first, as put_keypair: the private row's checks then find it */
	if (n == 2)
		rv = ks->b->ops->object_insert(ks->b, &copies[1], NULL);
	if (!rv && is_sealed_class(src[0].cls)) {
		rv = kw_need_unlocked(ks);
		if (!rv)
			rv = reseal_locked(ks, &src[0], &s, &copies[0], true);
	} else if (!rv) {
		rv = ks->b->ops->object_insert(ks->b, &copies[0], NULL);
	}
	if (rv == KW_ERR_EXISTS) {
		kw_part_name_locked(ks, partition_id, pname);
		kw_error_set(rv, "store: owner %s already has an object named \"%s\" of that class in partition '%s'",
			     src[0].owner, new_name, pname);
	}
	if (!rv)
		rv = kw_audit_change_locked(ks, "object.copy", "%s/%s (0x%" PRIx64 ") copied as %s (0x%" PRIx64 "%s)",
					    src[0].owner, src[0].name, src[0].id, new_name, copies[0].id,
					    n == 2 ? " and its pair" : "");
done:
	rv = finish(ks->b, rv);
out:
	unlock(ks);
	kw_object_row_cleanup(&src[0]);
	kw_object_row_cleanup(&src[1]);
	kw_sealed_cleanup(&s);
	if (rv) {
		kw_object_rows_free(copies, 2);
		return rv;
	}
	kw_debug(KW_DEBUG_STORE, "store: copied 0x%" PRIx64 " as \"%s\" (%zu object%s)", id, new_name, n,
		 n == 1 ? "" : "s");
	*rows_out = copies;
	*n_out = n;
	return KW_OK;
}
