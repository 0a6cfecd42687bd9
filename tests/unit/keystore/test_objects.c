/* Keystore partitions, enrollment and object operations: put, list, attributes, owners, delete, isolation, cap. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OWNER_A "S-1-5-21-1-2-3"
#define OWNER_B "S-1-5-21-4-5-6"

/* A snapshot of all rows of a partition as text, to show an operation changed nothing. */
static char *snapshot(struct fx *f, uint64_t pid)
{
	struct kw_object_row *rows = NULL;
	size_t n = 0, cap = 65536, off = 0;
	char *s = calloc(1, cap);
	bool more;

	assert_non_null(s);
	assert_int_equal(kw_keystore_list(f->ks, pid, NULL, NULL, 0, 1000, &rows, &n, &more), KW_OK);
	assert_false(more);
	for (size_t i = 0; i < n && off < cap; i++)
		off += (size_t)snprintf(s + off, cap - off, "%llx|%llx|%s|%s|%d|%d%d%d%d%d|%u;",
					(unsigned long long)rows[i].id, (unsigned long long)rows[i].pair_id,
					rows[i].owner, rows[i].name, rows[i].cls, rows[i].sensitive,
					rows[i].extractable, rows[i].modifiable, rows[i].never_extractable,
					rows[i].always_sensitive, rows[i].usages);
	kw_object_rows_free(rows, n);
	return s;
}

static void assert_loads(struct fx *f, uint64_t pid, uint64_t id)
{
	EVP_PKEY *k = NULL;
	kw_rv rv = kw_keystore_load_private(f->ks, pid, id, &k);

	if (rv)
		fprintf(stderr, "load_private: %s\n", kw_last_error());
	assert_int_equal(rv, KW_OK);
	EVP_PKEY_free(k);
}

static void test_partitions(void **state)
{
	struct fx *f = *state;
	struct kw_partition_info info, *list = NULL;
	unsigned char h[KW_SETUP_HASH_LEN];
	char name[KW_PARTITION_NAME_MAX + 1];
	uint64_t id, id2;
	size_t n = 0;

	memset(h, 7, sizeof h);
	assert_int_equal(kw_keystore_partition_create(f->ks, "ca.prod-1", h, &id), KW_OK);
	assert_true(id != f->pid);
	assert_int_equal(kw_keystore_partition_create(f->ks, "ca.prod-1", h, &id2), KW_ERR_EXISTS);
	assert_non_null(strstr(kw_last_error(), "ca.prod-1"));
	assert_int_equal(kw_keystore_partition_create(f->ks, "bad name", NULL, &id2), KW_ERR_ARGUMENTS);
	assert_int_equal(kw_keystore_partition_create(f->ks, "", NULL, &id2), KW_ERR_ARGUMENTS);
	assert_int_equal(kw_keystore_partition_create(f->ks,
						      "x1234567890123456789012345678901234567890123456789012345678901234",
						      NULL, &id2),
			 KW_ERR_ARGUMENTS);

	assert_int_equal(kw_keystore_partition_get(f->ks, "ca.prod-1", &info), KW_OK);
	assert_int_equal(info.id, id);
	assert_string_equal(info.name, "ca.prod-1");
	assert_true(info.setup_pending);
	assert_int_equal(info.objects, 0);
	assert_int_equal(info.credentials, 0);
	assert_int_equal(kw_keystore_partition_get(f->ks, "nope", &info), KW_ERR_NOT_FOUND);
	assert_non_null(strstr(kw_last_error(), "nope"));

	assert_int_equal(kw_keystore_partition_name(f->ks, id, name), KW_OK);
	assert_string_equal(name, "ca.prod-1");
	assert_int_equal(kw_keystore_partition_name(f->ks, 999999, name), KW_ERR_NOT_FOUND);

	put_pair(f, f->pid, OWNER_A, "k", "P-256", false, true, NULL, NULL);
	assert_int_equal(kw_keystore_partition_list(f->ks, &list, &n), KW_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].name, "ca.prod-1");
	assert_string_equal(list[1].name, "dev");
	assert_int_equal(list[1].objects, 2);
	assert_false(list[1].setup_pending);
	free(list);

	assert_int_equal(kw_keystore_partition_set_setup(f->ks, id, NULL), KW_OK);
	assert_int_equal(kw_keystore_partition_get(f->ks, "ca.prod-1", &info), KW_OK);
	assert_false(info.setup_pending);
	assert_int_equal(kw_keystore_partition_set_setup(f->ks, 999999, h), KW_ERR_NOT_FOUND);
}

static void test_enroll(void **state)
{
	struct fx *f = *state;
	unsigned char h[KW_SETUP_HASH_LEN], wrong[KW_SETUP_HASH_LEN], fp1[KW_FINGERPRINT_LEN], fp2[KW_FINGERPRINT_LEN];
	struct kw_partition_info info;
	uint64_t id, found = 0;

	memset(h, 0x11, sizeof h);
	memset(wrong, 0x11, sizeof wrong);
	wrong[31] = 0x12;
	memset(fp1, 0xa1, sizeof fp1);
	memset(fp2, 0xa2, sizeof fp2);
	assert_int_equal(kw_keystore_partition_create(f->ks, "p1", h, &id), KW_OK);

	assert_int_equal(kw_keystore_credential_find(f->ks, fp1, &found), KW_ERR_AUTH);
	assert_int_equal(kw_keystore_enroll(f->ks, id, wrong, fp1, "CN=client1"), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "wrong setup password"));
	assert_int_equal(kw_keystore_credential_find(f->ks, fp1, &found), KW_ERR_AUTH);
	assert_int_equal(kw_keystore_enroll(f->ks, id, h, fp1, "CN=client1"), KW_OK);
	assert_int_equal(kw_keystore_credential_find(f->ks, fp1, &found), KW_OK);
	assert_int_equal(found, id);
	/* exactly once */
	assert_int_equal(kw_keystore_enroll(f->ks, id, h, fp2, "CN=client2"), KW_ERR_AUTH);
	assert_int_equal(kw_keystore_credential_find(f->ks, fp2, &found), KW_ERR_AUTH);
	assert_int_equal(kw_keystore_partition_get(f->ks, "p1", &info), KW_OK);
	assert_false(info.setup_pending);
	assert_int_equal(info.credentials, 1);
	/* a new setup password enrolls a second client */
	assert_int_equal(kw_keystore_partition_set_setup(f->ks, id, wrong), KW_OK);
	assert_int_equal(kw_keystore_enroll(f->ks, id, wrong, fp2, "CN=client2"), KW_OK);
	assert_int_equal(kw_keystore_credential_find(f->ks, fp2, &found), KW_OK);
	assert_int_equal(found, id);
	/* enrolling the same certificate twice is refused and keeps the new password pending */
	assert_int_equal(kw_keystore_partition_set_setup(f->ks, id, h), KW_OK);
	assert_int_equal(kw_keystore_enroll(f->ks, id, h, fp1, "CN=client1"), KW_ERR_EXISTS);
	assert_int_equal(kw_keystore_partition_get(f->ks, "p1", &info), KW_OK);
	assert_true(info.setup_pending);
	/* no such partition */
	assert_int_equal(kw_keystore_enroll(f->ks, 999999, h, fp1, "CN=x"), KW_ERR_NOT_FOUND);
}

/* Credentials are listed per partition and, once revoked, no longer found (issue #11, finding 10). */
static void test_credential_revoke(void **state)
{
	struct fx *f = *state;
	unsigned char h[KW_SETUP_HASH_LEN], fp1[KW_FINGERPRINT_LEN], fp2[KW_FINGERPRINT_LEN], fp3[KW_FINGERPRINT_LEN];
	struct kw_credential_info *list = NULL;
	uint64_t id, found = 0;
	size_t n = 0;
	int64_t first;

	memset(h, 0x11, sizeof h);
	memset(fp1, 0xb1, sizeof fp1);
	memset(fp2, 0xb2, sizeof fp2);
	memset(fp3, 0xb3, sizeof fp3);
	assert_int_equal(kw_keystore_partition_create(f->ks, "r1", h, &id), KW_OK);
	assert_int_equal(kw_keystore_enroll(f->ks, id, h, fp1, "CN=one"), KW_OK);
	assert_int_equal(kw_keystore_partition_set_setup(f->ks, id, h), KW_OK);
	assert_int_equal(kw_keystore_enroll(f->ks, id, h, fp2, "CN=two"), KW_OK);

	assert_int_equal(kw_keystore_credential_list(f->ks, "r1", &list, &n), KW_OK);
	assert_int_equal(n, 2);
	assert_int_equal(list[0].revoked, 0);
	assert_string_equal(list[0].partition, "r1");
	free(list);
	assert_int_equal(kw_keystore_credential_list(f->ks, "nosuch", &list, &n), KW_OK);
	assert_int_equal(n, 0);
	free(list);

	assert_int_equal(kw_keystore_credential_revoke(f->ks, fp1), KW_OK);
	assert_int_equal(kw_keystore_credential_find(f->ks, fp1, &found), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "revoked"));
	assert_int_equal(kw_keystore_credential_find(f->ks, fp2, &found), KW_OK);
	assert_int_equal(kw_keystore_credential_revoke(f->ks, fp3), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_credential_list(f->ks, NULL, &list, &n), KW_OK);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(list[i].revoked != 0, memcmp(list[i].fingerprint, fp1, sizeof fp1) == 0);
	first = memcmp(list[0].fingerprint, fp1, sizeof fp1) == 0 ? list[0].revoked : list[1].revoked;
	free(list);
	/* revoking again keeps the first time */
	assert_int_equal(kw_keystore_credential_revoke(f->ks, fp1), KW_OK);
	assert_int_equal(kw_keystore_credential_list(f->ks, NULL, &list, &n), KW_OK);
	for (size_t i = 0; i < n; i++)
		if (memcmp(list[i].fingerprint, fp1, sizeof fp1) == 0)
			assert_int_equal(list[i].revoked, first);
	free(list);
}

static void test_put_duplicate_and_names(void **state)
{
	struct fx *f = *state;
	struct kw_keygen spec = {OWNER_A, "myDemoCA",  false, true,  KW_USAGE_SIGN, NULL,
				 0,	  KW_KEY_NONE, false, false, false};
	struct kw_object_row priv, pub;
	EVP_PKEY *k = gen_key("P-256");
	char *before, *after, longname[KW_NAME_MAX + 2];

	put_pair(f, f->pid, OWNER_A, "myDemoCA", "P-256", false, true, NULL, NULL);
	before = snapshot(f, f->pid);
	assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &priv, &pub), KW_ERR_EXISTS);
	assert_non_null(strstr(kw_last_error(), "myDemoCA"));
	assert_non_null(strstr(kw_last_error(), OWNER_A));
	after = snapshot(f, f->pid);
	assert_string_equal(before, after);
	assert_int_equal(count_objects(f, f->pid), 2);
	free(after);

	spec.owner = "S-1-5__21";
	assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &priv, &pub), KW_ERR_ARGUMENTS);
	assert_non_null(strstr(kw_last_error(), "__"));
	spec.owner = "";
	assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &priv, &pub), KW_ERR_ARGUMENTS);
	spec.owner = OWNER_A;
	spec.name = "tab\there";
	assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &priv, &pub), KW_ERR_ARGUMENTS);
	memset(longname, 'n', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	spec.name = longname;
	assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &priv, &pub), KW_ERR_ARGUMENTS);
	after = snapshot(f, f->pid);
	assert_string_equal(before, after);
	free(after);
	/* names may contain "__", owners may not */
	spec.name = "web__server";
	assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &priv, &pub), KW_OK);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
	/* the same name under another owner is fine */
	spec.name = "myDemoCA";
	spec.owner = OWNER_B;
	assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &priv, &pub), KW_OK);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
	/* unknown partition */
	spec.name = "x";
	assert_int_equal(kw_keystore_put_keypair(f->ks, 999999, &spec, k, &priv, &pub), KW_ERR_NOT_FOUND);
	free(before);
	EVP_PKEY_free(k);
}

static void test_list_paging(void **state)
{
	struct fx *f = *state;
	struct kw_object_row *rows = NULL;
	uint64_t ids[50], after = 0;
	size_t n = 0, seen = 0, pages = 0;
	bool more = true;

	for (int i = 0; i < 25; i++) {
		char name[16];

		snprintf(name, sizeof name, "key%02d", i);
		put_pair(f, f->pid, i % 2 ? OWNER_A : OWNER_B, name, "P-256", false, true, NULL, NULL);
	}
	while (more) {
		assert_int_equal(kw_keystore_list(f->ks, f->pid, NULL, NULL, after, 10, &rows, &n, &more), KW_OK);
		assert_true(n <= 10);
		pages++;
		for (size_t i = 0; i < n; i++) {
			assert_true(rows[i].id > after);
			for (size_t j = 0; j < seen; j++)
				assert_true(ids[j] != rows[i].id);
			assert_true(seen < 50);
			ids[seen++] = rows[i].id;
			after = rows[i].id;
		}
		if (more)
			assert_int_equal(n, 10);
		kw_object_rows_free(rows, n);
	}
	assert_int_equal(seen, 50);
	assert_int_equal(pages, 5);

	/* filtered by owner and name */
	assert_int_equal(kw_keystore_list(f->ks, f->pid, OWNER_A, NULL, 0, 100, &rows, &n, &more), KW_OK);
	assert_int_equal(n, 24);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(rows[i].owner, OWNER_A);
	kw_object_rows_free(rows, n);
	assert_int_equal(kw_keystore_list(f->ks, f->pid, NULL, "key07", 0, 100, &rows, &n, &more), KW_OK);
	assert_int_equal(n, 2);
	assert_false(more);
	kw_object_rows_free(rows, n);
}

static void test_set_attributes(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub, got, xpriv, xpub;
	char *before, *after;

	put_pair(f, f->pid, OWNER_A, "locked", "P-256", false, true, &priv, &pub);
	put_pair(f, f->pid, OWNER_A, "export", "Ed25519", true, true, &xpriv, &xpub);
	assert_false(xpriv.never_extractable);

	/* extractable false -> true refused */
	before = snapshot(f, f->pid);
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, 1, -1, NULL), KW_ERR_ATTRIBUTE_VALUE);
	after = snapshot(f, f->pid);
	assert_string_equal(before, after);
	free(after);
	free(before);

	/* extractable true -> false, resealed; never_extractable stays false */
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, xpriv.id, 0, -1, NULL), KW_OK);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, xpriv.id, &got), KW_OK);
	assert_false(got.extractable);
	assert_false(got.never_extractable);
	kw_object_row_cleanup(&got);
	assert_loads(f, f->pid, xpriv.id);
	/* the new value is the bound one now: the old value by hand is detected */
	raw_sql(f, "UPDATE objects SET extractable = 1 WHERE id = %lld", (long long)xpriv.id);
	{
		EVP_PKEY *k = NULL;

		assert_int_equal(kw_keystore_load_private(f->ks, f->pid, xpriv.id, &k), KW_ERR_TAMPERED);
	}
	raw_sql(f, "UPDATE objects SET extractable = 0 WHERE id = %lld", (long long)xpriv.id);
	assert_loads(f, f->pid, xpriv.id);

	/* rename moves both halves; the key still loads */
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, -1, -1, "renamed"), KW_OK);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_A, "renamed", KW_CLASS_PRIVATE_KEY, &got), KW_OK);
	assert_int_equal(got.id, priv.id);
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_A, "renamed", KW_CLASS_PUBLIC_KEY, &got), KW_OK);
	assert_int_equal(got.id, pub.id);
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_A, "locked", KW_CLASS_ANY, &got), KW_ERR_NOT_FOUND);
	assert_loads(f, f->pid, priv.id);
	/* rename onto a taken name */
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, pub.id, -1, -1, "export"), KW_ERR_EXISTS);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_A, "renamed", KW_CLASS_PUBLIC_KEY, &got), KW_OK);
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, -1, -1, "bad\001name"), KW_ERR_ARGUMENTS);

	/* modifiable true -> false, resealed */
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, -1, 0, NULL), KW_OK);
	assert_loads(f, f->pid, priv.id);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, priv.id, &got), KW_OK);
	assert_false(got.modifiable);
	kw_object_row_cleanup(&got);
	before = snapshot(f, f->pid);
	/* and never back */
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, -1, 1, NULL), KW_ERR_ATTRIBUTE_VALUE);
	/* no rename once not modifiable, neither through the private nor the public half */
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, -1, -1, "again"), KW_ERR_NOT_MODIFIABLE);
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, pub.id, -1, -1, "again"), KW_ERR_NOT_MODIFIABLE);
	after = snapshot(f, f->pid);
	assert_string_equal(before, after);
	free(after);
	free(before);
	/* setting what is already so, and extractable false, still work */
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, 0, 0, NULL), KW_OK);
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, -1, -1, "renamed"), KW_OK);
	assert_loads(f, f->pid, priv.id);
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, 12345, 0, -1, NULL), KW_ERR_NOT_FOUND);

	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
	kw_object_row_cleanup(&xpriv);
	kw_object_row_cleanup(&xpub);
}

static void test_change_owner(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub, got, *moved = NULL;
	char *before, *after;
	size_t n = 0;

	put_pair(f, f->pid, OWNER_A, "myDemoCA", "RSA", false, true, &priv, &pub);
	put_pair(f, f->pid, OWNER_A, "fixed", "P-256", false, false, NULL, NULL);
	put_pair(f, f->pid, OWNER_B, "fixed", "P-256", false, true, NULL, NULL);
	put_pair(f, f->pid, "S-1-5-21-7-8-9", "taken", "P-256", false, true, NULL, NULL);
	put_pair(f, f->pid, OWNER_A, "taken", "P-256", false, true, NULL, NULL);

	/* refusals change nothing */
	before = snapshot(f, f->pid);
	assert_int_equal(kw_keystore_change_owner(f->ks, f->pid, "myDemoCA", OWNER_B, OWNER_A, &moved, &n),
			 KW_ERR_NOT_FOUND);
	assert_non_null(strstr(kw_last_error(), "owners with that name: " OWNER_A));
	assert_non_null(strstr(kw_last_error(), "under owner " OWNER_B));
	assert_int_equal(kw_keystore_change_owner(f->ks, f->pid, "nothing", OWNER_B, OWNER_A, &moved, &n),
			 KW_ERR_NOT_FOUND);
	assert_non_null(strstr(kw_last_error(), "none"));
	assert_int_equal(kw_keystore_change_owner(f->ks, f->pid, "taken", OWNER_A, "S-1-5-21-7-8-9", &moved, &n),
			 KW_ERR_EXISTS);
	assert_non_null(strstr(kw_last_error(), "S-1-5-21-7-8-9"));
	assert_int_equal(kw_keystore_change_owner(f->ks, f->pid, "fixed", OWNER_A, "S-1-5-21-0-0-0", &moved, &n),
			 KW_ERR_NOT_MODIFIABLE);
	assert_non_null(strstr(kw_last_error(), "fixed"));
	assert_int_equal(kw_keystore_change_owner(f->ks, f->pid, "myDemoCA", OWNER_A, "bad__owner", &moved, &n),
			 KW_ERR_ARGUMENTS);
	after = snapshot(f, f->pid);
	assert_string_equal(before, after);
	assert_null(moved);
	free(after);
	free(before);

	/* the move: both halves, in one step */
	assert_int_equal(kw_keystore_change_owner(f->ks, f->pid, "myDemoCA", OWNER_A, OWNER_B, &moved, &n), KW_OK);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(moved[i].owner, OWNER_B);
		assert_true(moved[i].id == priv.id || moved[i].id == pub.id);
	}
	kw_object_rows_free(moved, n);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_A, "myDemoCA", KW_CLASS_ANY, &got), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_B, "myDemoCA", KW_CLASS_PRIVATE_KEY, &got), KW_OK);
	assert_int_equal(got.id, priv.id);
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_B, "myDemoCA", KW_CLASS_PUBLIC_KEY, &got), KW_OK);
	assert_int_equal(got.id, pub.id);
	kw_object_row_cleanup(&got);
	assert_loads(f, f->pid, priv.id);
	/* works while locked: owner is not sealed */
	kw_keystore_lock(f->ks);
	assert_int_equal(kw_keystore_change_owner(f->ks, f->pid, "myDemoCA", OWNER_B, OWNER_A, NULL, NULL), KW_OK);
	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, PASS), KW_OK);
	assert_loads(f, f->pid, priv.id);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void test_delete(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub, got;
	unsigned deleted = 0;

	put_pair(f, f->pid, OWNER_A, "one", "P-256", false, true, &priv, &pub);
	put_pair(f, f->pid, OWNER_A, "two", "P-256", false, true, NULL, NULL);
	/* one half by id: the survivor's pair_id is cleared */
	assert_int_equal(kw_keystore_delete(f->ks, f->pid, pub.id, NULL, NULL, KW_CLASS_ANY, &deleted), KW_OK);
	assert_int_equal(deleted, 1);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, pub.id, &got), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, priv.id, &got), KW_OK);
	assert_int_equal(got.pair_id, 0);
	kw_object_row_cleanup(&got);
	assert_loads(f, f->pid, priv.id);
	assert_int_equal(kw_keystore_delete(f->ks, f->pid, pub.id, NULL, NULL, KW_CLASS_ANY, &deleted),
			 KW_ERR_NOT_FOUND);
	assert_int_equal(deleted, 0);
	/* by owner + name + class */
	assert_int_equal(kw_keystore_delete(f->ks, f->pid, 0, OWNER_A, "two", KW_CLASS_PUBLIC_KEY, &deleted), KW_OK);
	assert_int_equal(deleted, 1);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_A, "two", KW_CLASS_PRIVATE_KEY, &got), KW_OK);
	assert_int_equal(got.pair_id, 0);
	kw_object_row_cleanup(&got);
	/* all halves */
	put_pair(f, f->pid, OWNER_A, "three", "P-256", false, true, NULL, NULL);
	assert_int_equal(kw_keystore_delete(f->ks, f->pid, 0, OWNER_A, "three", KW_CLASS_ANY, &deleted), KW_OK);
	assert_int_equal(deleted, 2);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, OWNER_A, "three", KW_CLASS_ANY, &got), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_delete(f->ks, f->pid, 0, OWNER_A, "three", KW_CLASS_ANY, &deleted),
			 KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_delete(f->ks, f->pid, 0, NULL, NULL, KW_CLASS_ANY, &deleted), KW_ERR_ARGUMENTS);
	assert_int_equal(count_objects(f, f->pid), 2);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void test_isolation(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub, got, *rows = NULL, *moved = NULL;
	EVP_PKEY *k = NULL;
	unsigned deleted = 0;
	uint64_t pid_b;
	size_t n = 0;
	bool more;

	assert_int_equal(kw_keystore_partition_create(f->ks, "tenant-b", NULL, &pid_b), KW_OK);
	put_pair(f, f->pid, OWNER_A, "secret", "P-256", false, true, &priv, &pub);

	assert_int_equal(kw_keystore_get(f->ks, pid_b, priv.id, &got), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_get(f->ks, pid_b, pub.id, &got), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_find(f->ks, pid_b, OWNER_A, "secret", KW_CLASS_ANY, &got), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_list(f->ks, pid_b, NULL, NULL, 0, 100, &rows, &n, &more), KW_OK);
	assert_int_equal(n, 0);
	kw_object_rows_free(rows, n);
	assert_int_equal(kw_keystore_load_private(f->ks, pid_b, priv.id, &k), KW_ERR_NOT_FOUND);
	assert_null(k);
	assert_int_equal(kw_keystore_delete(f->ks, pid_b, priv.id, NULL, NULL, KW_CLASS_ANY, &deleted),
			 KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_delete(f->ks, pid_b, 0, OWNER_A, "secret", KW_CLASS_ANY, &deleted),
			 KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_set_attributes(f->ks, pid_b, priv.id, 0, 0, "x"), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_change_owner(f->ks, pid_b, "secret", OWNER_A, OWNER_B, &moved, &n),
			 KW_ERR_NOT_FOUND);
	/* untouched in its own partition */
	assert_int_equal(count_objects(f, f->pid), 2);
	assert_loads(f, f->pid, priv.id);
	/* the same owner+name may exist in both */
	put_pair(f, pid_b, OWNER_A, "secret", "P-256", false, true, NULL, NULL);
	assert_int_equal(count_objects(f, pid_b), 2);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void test_store_full(void **state)
{
	struct fx *f = *state;
	struct kw_keygen spec = {OWNER_A, NULL, false, true, KW_USAGE_SIGN, NULL, 0, KW_KEY_NONE, false, false, false};
	struct kw_object_row priv, pub, first_priv, got;
	EVP_PKEY *k = gen_key("P-256");
	char name[64], *before, *after;
	size_t stored = 0;
	kw_rv rv = KW_OK;
	uint64_t pid;

	memset(&first_priv, 0, sizeof first_priv);
	kw_keystore_free(f->ks);
	assert_int_equal(kw_keystore_open(f->path, 24 * 4096, &f->ks), KW_OK);
	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, PASS), KW_OK);
	if (fx_pg()) {
		/* PostgreSQL has no size cap of keywardd's (docs/keywardd.conf.5: a quota in the database):
		 * the cap is ignored, and writes past it succeed */
		for (int i = 0; i < 200; i++) {
			snprintf(name, sizeof name, "filler-key-with-a-longish-name-%04d", i);
			spec.name = name;
			assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &priv, &pub), KW_OK);
			kw_object_row_cleanup(&priv);
			kw_object_row_cleanup(&pub);
		}
		EVP_PKEY_free(k);
		return;
	}
	pid = f->pid;
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof name, "filler-key-with-a-longish-name-%04d", i);
		spec.name = name;
		before = snapshot(f, pid);
		rv = kw_keystore_put_keypair(f->ks, pid, &spec, k, &priv, &pub);
		if (rv) {
			after = snapshot(f, pid);
			assert_string_equal(before, after);
			free(after);
			free(before);
			break;
		}
		free(before);
		if (!first_priv.id)
			first_priv = priv;
		else
			kw_object_row_cleanup(&priv);
		kw_object_row_cleanup(&pub);
		stored++;
	}
	if (rv != KW_ERR_STORE_FULL)
		fprintf(stderr, "put_keypair: %s\n", kw_last_error());
	assert_int_equal(rv, KW_ERR_STORE_FULL);
	assert_true(stored > 0);
	/* the failed write left nothing; reads and unsealing still work */
	assert_int_equal(count_objects(f, pid), 2 * stored);
	assert_int_equal(kw_keystore_get(f->ks, pid, first_priv.id, &got), KW_OK);
	kw_object_row_cleanup(&got);
	assert_loads(f, pid, first_priv.id);
	/* deleting frees room again (half of the keys: freed pages must cover a B-tree split) */
	for (size_t i = 0; i < stored / 2 + 1; i++) {
		snprintf(name, sizeof name, "filler-key-with-a-longish-name-%04zu", i);
		assert_int_equal(kw_keystore_delete(f->ks, pid, 0, OWNER_A, name, KW_CLASS_ANY, NULL), KW_OK);
	}
	spec.name = "after-delete";
	assert_int_equal(kw_keystore_put_keypair(f->ks, pid, &spec, k, &priv, &pub), KW_OK);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
	EVP_PKEY_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_partitions, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_enroll, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_credential_revoke, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_put_duplicate_and_names, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_list_paging, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_set_attributes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_change_owner, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_delete, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_isolation, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_store_full, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
