/*
 * Partitions, the security boundary, and the client credentials enrolled
 * in them: create, list, delete, the one-time setup password that
 * enrollment consumes, credential lookup and revocation.
 */
#include "keystore/keystore.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "keystore/backend.h"
#include "keystore/internal.h"

#define SUBJECT_MAX 1024

void kw_part_name_locked(struct kw_keystore *ks, uint64_t pid, char name[KW_PARTITION_NAME_MAX + 1])
{
	struct kw_partition_info info;
	char saved[1024];

	/* keep the caller's message: this lookup only decorates it */
	snprintf(saved, sizeof saved, "%s", kw_last_error());
	if (ks->b->ops->partition_get(ks->b, NULL, pid, &info, NULL, NULL) == KW_OK)
		snprintf(name, KW_PARTITION_NAME_MAX + 1, "%s", info.name);
	else
		snprintf(name, KW_PARTITION_NAME_MAX + 1, "#%" PRIu64, pid);
	kw_error_set(KW_OK, "%s", saved);
}

kw_rv kw_check_partition_name(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	if (len < 1 || len > KW_PARTITION_NAME_MAX)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: a partition name has 1 to %d characters",
				    KW_PARTITION_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return kw_error_set(KW_ERR_ARGUMENTS,
					    "store: partition name \"%s\": only letters, digits, '.', '_' and '-' are allowed",
					    name);
	}
	return KW_OK;
}

/* ---- partitions ---- */

kw_rv kw_keystore_partition_create(struct kw_keystore *ks, const char *name,
				   const unsigned char setup_hash[KW_SETUP_HASH_LEN], uint64_t *id_out)
{
	uint64_t id = 0;
	kw_rv rv;

	rv = kw_check_partition_name(name);
	if (rv)
		return rv;
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (!rv) {
		rv = ks->b->ops->partition_insert(ks->b, name, setup_hash, now(), &id);
		if (rv == KW_ERR_EXISTS)
			kw_error_set(rv, "store: partition '%s' already exists", name);
		rv = finish(ks->b, rv);
	}
	unlock(ks);
	if (!rv && id_out)
		*id_out = id;
	return rv;
}

kw_rv kw_keystore_partition_get(struct kw_keystore *ks, const char *name, struct kw_partition_info *out)
{
	kw_rv rv;

	if (!name || !out)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no partition name given");
	lock(ks);
	rv = ks->b->ops->partition_get(ks->b, name, 0, out, NULL, NULL);
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_partition_name(struct kw_keystore *ks, uint64_t id, char name[KW_PARTITION_NAME_MAX + 1])
{
	struct kw_partition_info info;
	kw_rv rv;

	lock(ks);
	rv = ks->b->ops->partition_get(ks->b, NULL, id, &info, NULL, NULL);
	unlock(ks);
	if (!rv)
		snprintf(name, KW_PARTITION_NAME_MAX + 1, "%s", info.name);
	return rv;
}

kw_rv kw_keystore_partition_list(struct kw_keystore *ks, struct kw_partition_info **out, size_t *n)
{
	kw_rv rv;

	lock(ks);
	rv = ks->b->ops->partition_list(ks->b, out, n);
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_partition_set_setup(struct kw_keystore *ks, uint64_t id,
				      const unsigned char setup_hash[KW_SETUP_HASH_LEN])
{
	kw_rv rv;

	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (!rv)
		rv = finish(ks->b, ks->b->ops->partition_set_setup(ks->b, id, setup_hash));
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_partition_delete(struct kw_keystore *ks, const char *name, struct kw_partition_info *out)
{
	struct kw_partition_info info;
	kw_rv rv;

	if (!name)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no partition name given");
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (!rv) {
		rv = ks->b->ops->partition_get(ks->b, name, 0, &info, NULL, NULL);
		if (!rv)
			rv = ks->b->ops->partition_delete(ks->b, info.id);
		rv = finish(ks->b, rv);
	}
	unlock(ks);
	if (!rv && out)
		*out = info;
	kw_store_changed(ks); /* after the commit: a key read before it is not cached after it */
	return rv;
}

kw_rv kw_keystore_enroll(struct kw_keystore *ks, uint64_t partition_id,
			 const unsigned char setup_hash[KW_SETUP_HASH_LEN],
			 const unsigned char fingerprint[KW_FINGERPRINT_LEN], const char *subject)
{
	struct kw_partition_info info;
	unsigned char stored[KW_SETUP_HASH_LEN];
	bool has = false;
	kw_rv rv;

	if (!setup_hash || !fingerprint || !subject || strlen(subject) > SUBJECT_MAX)
		return kw_error_set(KW_ERR_ARGUMENTS, "enroll: setup password hash, fingerprint and subject are needed");
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (rv)
		goto out;
	rv = ks->b->ops->partition_get(ks->b, NULL, partition_id, &info, stored, &has);
	if (rv)
		goto done;
	if (!has) {
		rv = kw_error_set(KW_ERR_AUTH,
				  "enroll: partition '%s' has no pending setup password (already used? "
				  "set a new one with keyward-admin)",
				  info.name);
		goto done;
	}
	if (CRYPTO_memcmp(stored, setup_hash, KW_SETUP_HASH_LEN) != 0) {
		rv = kw_error_set(KW_ERR_AUTH, "enroll: wrong setup password for partition '%s'", info.name);
		goto done;
	}
	rv = ks->b->ops->partition_set_setup(ks->b, partition_id, NULL);
	if (rv)
		goto done;
	rv = ks->b->ops->credential_insert(ks->b, fingerprint, partition_id, subject, now());
	if (rv == KW_ERR_EXISTS)
		kw_error_set(rv, "enroll: this client certificate is already enrolled");
done:
	rv = finish(ks->b, rv);
out:
	unlock(ks);
	OPENSSL_cleanse(stored, sizeof stored);
	return rv;
}

kw_rv kw_keystore_credential_find(struct kw_keystore *ks, const unsigned char fingerprint[KW_FINGERPRINT_LEN],
				  uint64_t *partition_id)
{
	kw_rv rv;

	if (!fingerprint || !partition_id)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no fingerprint given");
	lock(ks);
	rv = ks->b->ops->credential_find(ks->b, fingerprint, partition_id);
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_credential_list(struct kw_keystore *ks, const char *partition, struct kw_credential_info **out,
				  size_t *n)
{
	kw_rv rv;

	if (!out || !n)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: credential list: nowhere to put it");
	lock(ks);
	rv = ks->b->ops->credential_list(ks->b, partition && partition[0] ? partition : NULL, out, n);
	unlock(ks);
	return rv;
}

kw_rv kw_keystore_credential_revoke(struct kw_keystore *ks, const unsigned char fingerprint[KW_FINGERPRINT_LEN])
{
	kw_rv rv;

	if (!fingerprint)
		return kw_error_set(KW_ERR_ARGUMENTS, "store: no fingerprint given");
	lock(ks);
	rv = ks->b->ops->begin(ks->b);
	if (!rv)
		rv = finish(ks->b, ks->b->ops->credential_revoke(ks->b, fingerprint, now()));
	unlock(ks);
	return rv;
}
