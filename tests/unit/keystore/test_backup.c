/*
 * Backup and restore at the keystore (kw_keystore_backup/restore): a
 * second store with the same master key (a copy of the first taken right
 * after init), another partition id at the target (keys resealed), and
 * every refusal leaving the target as it was.
 */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "keystore/backup.h"

struct two {
	struct fx *a;
	struct kw_keystore *b; /* same master key, its own file */
	char b_path[200];
	uint64_t a_q; /* partition "q" of a */
	struct kw_object_row k1, k1pub, k2, aes;
};

static int setup(void **state)
{
	struct two *t = calloc(1, sizeof *t);
	struct kw_keygen aes = {"S-1-5-21-7-7-7", "aes", true,	true, KW_USAGE_WRAP, NULL, 0,
				KW_KEY_AES,	  false, false, false};
	unsigned char key[32];

	assert_non_null(t);
	assert_int_equal(fx_setup((void **)&t->a), 0);
	/* b: the store as init left it (partition "dev" only), under the same master key */
	fx_reopen(t->a); /* closes the store: its WAL is checkpointed into the file */
	kw_keystore_free(t->a->ks);
	fx_clone(t->a, "b", t->b_path, sizeof t->b_path);
	assert_int_equal(kw_keystore_open(t->a->path, 0, &t->a->ks), KW_OK);
	assert_int_equal(kw_keystore_unlock_passphrase(t->a->ks, PASS), KW_OK);
	assert_int_equal(kw_keystore_open(t->b_path, 0, &t->b), KW_OK);
	assert_int_equal(kw_keystore_unlock_passphrase(t->b, PASS), KW_OK);

	assert_int_equal(kw_keystore_partition_create(t->a->ks, "q", NULL, &t->a_q), KW_OK);
	put_pair(t->a, t->a->pid, "S-1-5-21-1-2-3", "k1", "P-256", false, true, &t->k1, &t->k1pub);
	put_pair(t->a, t->a_q, "S-1-5-21-4-5-6", "k2", "RSA", true, false, &t->k2, NULL);
	memset(key, 0x5a, sizeof key);
	assert_int_equal(kw_keystore_put_secret(t->a->ks, t->a_q, &aes, key, sizeof key, &t->aes), KW_OK);
	{
		struct kw_objspec data = {.owner = "S-1-5-21-1-2-3",
					  .name = "notes",
					  .cls = KW_CLASS_DATA,
					  .value = (const unsigned char *)"hello",
					  .value_len = 5,
					  .modifiable = true};
		struct kw_object_row row;

		assert_int_equal(kw_keystore_put_object(t->a->ks, t->a->pid, &data, &row), KW_OK);
		kw_object_row_cleanup(&row);
	}
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct two *t = *state;

	kw_keystore_free(t->b);
	fx_clone_remove(t->b_path);
	kw_object_row_cleanup(&t->k1);
	kw_object_row_cleanup(&t->k1pub);
	kw_object_row_cleanup(&t->k2);
	kw_object_row_cleanup(&t->aes);
	fx_teardown((void **)&t->a);
	free(t);
	return 0;
}

static void backup(struct kw_keystore *ks, const char *partition, unsigned char **buf, size_t *len)
{
	struct kw_backup_summary sum;
	kw_rv rv = kw_keystore_backup(ks, partition, buf, len, &sum);

	if (rv)
		fail_msg("backup: %s", kw_last_error());
}

static void audit_ok(struct kw_keystore *ks)
{
	struct kw_audit_report rep;

	assert_int_equal(kw_keystore_audit_verify(ks, &rep), KW_OK);
	if (!rep.ok)
		fail_msg("audit: %s", rep.problem);
}

/* The same key in both stores: equal public keys and the private key unseals at the target. */
static void same_key(struct kw_keystore *from, uint64_t from_pid, struct kw_keystore *to, uint64_t to_pid, uint64_t id)
{
	EVP_PKEY *x = NULL, *y = NULL;

	assert_int_equal(kw_keystore_load_private(from, from_pid, id, &x), KW_OK);
	if (kw_keystore_load_private(to, to_pid, id, &y))
		fail_msg("load_private at the target: %s", kw_last_error());
	assert_int_equal(EVP_PKEY_eq(x, y), 1);
	EVP_PKEY_free(x);
	EVP_PKEY_free(y);
}

static void test_restore_into_same_master_key(void **state)
{
	struct two *t = *state;
	struct kw_restore_summary sum;
	struct kw_partition_info p, q;
	unsigned char *buf = NULL, *key = NULL;
	size_t len = 0, key_len = 0;
	uint64_t other;

	/* another partition first: "q" then gets another id at b than at a */
	assert_int_equal(kw_keystore_partition_create(t->b, "other", NULL, &other), KW_OK);
	backup(t->a->ks, NULL, &buf, &len);
	if (kw_keystore_restore(t->b, buf, len, &sum))
		fail_msg("restore: %s", kw_last_error());
	assert_int_equal(sum.partitions_created, 1); /* q */
	assert_int_equal(sum.partitions_kept, 1);    /* dev */
	assert_int_equal(sum.objects_added, 6);
	assert_int_equal(sum.keys_resealed, 2); /* k2 and aes, in q */
	assert_int_equal(kw_keystore_partition_get(t->b, "dev", &p), KW_OK);
	assert_int_equal(kw_keystore_partition_get(t->b, "q", &q), KW_OK);
	assert_int_not_equal(q.id, t->a_q);
	same_key(t->a->ks, t->a->pid, t->b, p.id, t->k1.id);
	same_key(t->a->ks, t->a_q, t->b, q.id, t->k2.id);
	assert_int_equal(kw_keystore_load_secret(t->b, q.id, t->aes.id, &key, &key_len, NULL), KW_OK);
	assert_int_equal(key_len, 32);
	assert_int_equal(key[0], 0x5a);
	free(key);

	/* again: everything is there and identical, nothing is added */
	assert_int_equal(kw_keystore_restore(t->b, buf, len, &sum), KW_OK);
	assert_int_equal(sum.objects_added, 0);
	assert_int_equal(sum.objects_kept, 6);

	/* both are audited, in their own transactions: one backup at a, two restores at b */
	{
		struct fx fb;

		memset(&fb, 0, sizeof fb);
		snprintf(fb.path, sizeof fb.path, "%s", t->b_path);
		assert_int_equal(raw_int(t->a, "SELECT count(*) FROM audit WHERE event = 'hsm.backup'"), 1);
		assert_int_equal(raw_int(&fb, "SELECT count(*) FROM audit WHERE event = 'hsm.restore'"), 2);
		assert_int_equal(raw_int(&fb, "SELECT count(*) FROM audit WHERE event = 'hsm.restore' AND detail LIKE "
					      "'%%objects 6 added, 0 identical kept; 2 keys resealed'"),
				 1);
	}
	audit_ok(t->a->ks);
	audit_ok(t->b);
	free(buf);
}

static void test_partition_scope(void **state)
{
	struct two *t = *state;
	struct kw_backup *b = NULL;
	unsigned char *buf = NULL;
	size_t len = 0;

	backup(t->a->ks, "q", &buf, &len);
	assert_int_equal(kw_backup_decode(buf, len, &b), KW_OK);
	assert_string_equal(b->scope, "q");
	assert_int_equal(b->n_partitions, 1);
	assert_int_equal(b->n_objects, 3);
	kw_backup_free(b);
	free(buf);
	assert_int_equal(kw_keystore_backup(t->a->ks, "nope", &buf, &len, &(struct kw_backup_summary){0}),
			 KW_ERR_NOT_FOUND);
	assert_non_null(strstr(kw_last_error(), "nope"));
}

/* b's audit head and object count: what a refused restore must leave alone */
static void state_of(struct kw_keystore *ks, uint64_t *seq, size_t *objects)
{
	unsigned char h[KW_AUDIT_HASH_LEN];
	struct kw_object_row *rows = NULL;
	bool more = false;

	assert_int_equal(kw_keystore_audit_head(ks, seq, h), KW_OK);
	assert_int_equal(kw_keystore_list(ks, 1, NULL, NULL, 0, 1000, &rows, objects, &more), KW_OK);
	kw_object_rows_free(rows, *objects);
}

static void refused(struct two *t, const unsigned char *buf, size_t len, kw_rv want, const char *says)
{
	struct kw_restore_summary sum;
	uint64_t seq0, seq1;
	size_t n0, n1;

	state_of(t->b, &seq0, &n0);
	assert_int_equal(kw_keystore_restore(t->b, buf, len, &sum), want);
	if (!strstr(kw_last_error(), says))
		fail_msg("expected \"%s\" in: %s", says, kw_last_error());
	state_of(t->b, &seq1, &n1);
	assert_int_equal(seq0, seq1);
	assert_int_equal(n0, n1);
}

static void reseal_checksum(unsigned char *buf, size_t len)
{
	SHA256(buf, len - 32, buf + len - 32);
}

static void test_refusals(void **state)
{
	struct two *t = *state;
	struct kw_backup_summary sum;
	unsigned char *buf = NULL, *copy, *foreign_buf = NULL;
	size_t len = 0, foreign_len = 0;
	struct fx *c = NULL;

	backup(t->a->ks, NULL, &buf, &len);
	copy = malloc(len);
	assert_non_null(copy);

	refused(t, buf, len / 2, KW_ERR_ENCRYPTED_DATA, "truncated");
	refused(t, buf, 10, KW_ERR_ENCRYPTED_DATA, "truncated");
	refused(t, (const unsigned char *)"hello", 5, KW_ERR_ENCRYPTED_DATA, "not a keyward HSM backup");
	for (size_t at = 0; at < len; at += 97) {
		memcpy(copy, buf, len);
		copy[at] ^= 0x01;
		assert_int_not_equal(kw_keystore_restore(t->b, copy, len, &(struct kw_restore_summary){0}), KW_OK);
	}
	memcpy(copy, buf, len);
	copy[len / 2] ^= 0x80;
	refused(t, copy, len, KW_ERR_ENCRYPTED_DATA, "checksum");

	/* an edit that also fixes the checksum: the sealed AES key no longer authenticates */
	memcpy(copy, buf, len);
	{
		struct kw_backup *b = NULL;
		unsigned char *at = NULL;

		assert_int_equal(kw_backup_decode(buf, len, &b), KW_OK);
		for (size_t i = 0; i < b->n_objects && !at; i++)
			if (b->objects[i].row.cls == KW_CLASS_SECRET_KEY)
				at = memmem(copy, len, b->objects[i].sealed.sealed, b->objects[i].sealed.sealed_len);
		assert_non_null(at);
		at[20] ^= 0x01;
		kw_backup_free(b);
	}
	reseal_checksum(copy, len);
	refused(t, copy, len, KW_ERR_TAMPERED, "does not unseal");

	/* another master key */
	assert_int_equal(fx_setup((void **)&c), 0);
	assert_int_equal(kw_keystore_backup(c->ks, NULL, &foreign_buf, &foreign_len, &sum), KW_OK);
	refused(t, foreign_buf, foreign_len, KW_ERR_AUTH, "another master key");
	fx_teardown((void **)&c);

	/* locked: nothing can be checked */
	kw_keystore_lock(t->b);
	assert_int_equal(kw_keystore_restore(t->b, buf, len, &(struct kw_restore_summary){0}), KW_ERR_STORE_LOCKED);
	assert_int_equal(kw_keystore_unlock_passphrase(t->b, PASS), KW_OK);
	free(foreign_buf);
	free(copy);
	free(buf);
}

static void test_conflicts(void **state)
{
	struct two *t = *state;
	struct kw_restore_summary sum;
	unsigned char *buf = NULL;
	size_t len = 0;
	struct kw_object_row taken, taken_pub;

	/* b has its own key "k1" under k1's owner in dev: the backup's k1 is refused, naming it */
	put_pair(&(struct fx){.ks = t->b, .pid = 1}, 1, "S-1-5-21-1-2-3", "k1", "P-256", false, true, &taken,
		 &taken_pub);
	backup(t->a->ks, NULL, &buf, &len);
	refused(t, buf, len, KW_ERR_EXISTS, "S-1-5-21-1-2-3/k1");
	assert_int_equal(kw_keystore_partition_get(t->b, "q", &(struct kw_partition_info){0}), KW_ERR_NOT_FOUND);

	/* a's k1 changed after a first restore: the second is refused, saying what differs */
	assert_int_equal(kw_keystore_delete(t->b, 1, 0, "S-1-5-21-1-2-3", "k1", KW_CLASS_ANY, &(unsigned){0}), KW_OK);
	assert_int_equal(kw_keystore_restore(t->b, buf, len, &sum), KW_OK);
	free(buf);
	assert_int_equal(kw_keystore_set_attributes(t->a->ks, t->a->pid, t->k1.id, -1, 0, NULL), KW_OK);
	backup(t->a->ks, NULL, &buf, &len);
	assert_int_equal(kw_keystore_restore(t->b, buf, len, &sum), KW_ERR_EXISTS);
	assert_non_null(strstr(kw_last_error(), "differs in its attributes"));
	kw_object_row_cleanup(&taken);
	kw_object_row_cleanup(&taken_pub);
	free(buf);
}

/* Rows no HSM could have made, in a file whose checksum is right: refused before anything is written. */
static void crafted(struct two *t, enum kw_class cls, kw_rv want, const char *says,
		    void (*edit)(struct kw_backup_object *o))
{
	struct kw_backup *b = NULL;
	unsigned char *buf = NULL, *again = NULL;
	size_t len = 0, again_len = 0;

	backup(t->a->ks, NULL, &buf, &len);
	assert_int_equal(kw_backup_decode(buf, len, &b), KW_OK);
	for (size_t i = 0; i < b->n_objects; i++)
		if (b->objects[i].row.cls == cls)
			edit(&b->objects[i]);
	assert_int_equal(kw_backup_encode(b, &again, &again_len), KW_OK);
	refused(t, again, again_len, want, says);
	kw_backup_free(b);
	free(again);
	free(buf);
}

static void bad_owner(struct kw_backup_object *o)
{
	snprintf(o->row.owner, sizeof o->row.owner, "S-1-5__x");
}

static void not_a_certificate(struct kw_backup_object *o)
{
	o->row.cls = KW_CLASS_CERTIFICATE;
}

static void data_with_usages(struct kw_backup_object *o)
{
	o->row.usages = KW_USAGE_SIGN;
}

static void made_extractable(struct kw_backup_object *o)
{
	o->row.extractable = true;
	o->row.never_extractable = false;
}

static void test_crafted_rows(void **state)
{
	struct two *t = *state;

	crafted(t, KW_CLASS_DATA, KW_ERR_ATTRIBUTE_VALUE, "could not be made here", bad_owner);
	crafted(t, KW_CLASS_DATA, KW_ERR_ATTRIBUTE_VALUE, "not one DER-encoded X.509 certificate", not_a_certificate);
	crafted(t, KW_CLASS_DATA, KW_ERR_ATTRIBUTE_VALUE, "key attributes", data_with_usages);
	/* a key's flags are bound into its sealed blob: loosening them in the file is caught */
	crafted(t, KW_CLASS_PRIVATE_KEY, KW_ERR_TAMPERED, "does not unseal", made_extractable);
}

/* Credentials come along; a revocation carries over and is never lifted; one of another partition is refused. */
static void test_credentials(void **state)
{
	struct two *t = *state;
	struct kw_restore_summary sum;
	unsigned char setup[KW_SETUP_HASH_LEN], fp[KW_FINGERPRINT_LEN], fp2[KW_FINGERPRINT_LEN];
	unsigned char *buf = NULL;
	size_t len = 0;
	uint64_t pid = 0, other = 0;

	memset(setup, 1, sizeof setup);
	memset(fp, 2, sizeof fp);
	memset(fp2, 3, sizeof fp2);
	assert_int_equal(kw_keystore_partition_set_setup(t->a->ks, t->a_q, setup), KW_OK);
	assert_int_equal(kw_keystore_enroll(t->a->ks, t->a_q, setup, fp, "CN=client of q"), KW_OK);
	backup(t->a->ks, NULL, &buf, &len);
	assert_int_equal(kw_keystore_restore(t->b, buf, len, &sum), KW_OK);
	assert_int_equal(sum.credentials_added, 1);
	assert_int_equal(kw_keystore_credential_find(t->b, fp, &pid), KW_OK);
	free(buf);

	/* revoked at a after that: the next restore revokes it at b too */
	assert_int_equal(kw_keystore_credential_revoke(t->a->ks, fp), KW_OK);
	backup(t->a->ks, NULL, &buf, &len);
	assert_int_equal(kw_keystore_restore(t->b, buf, len, &sum), KW_OK);
	assert_int_equal(sum.credentials_kept, 1);
	assert_int_equal(kw_keystore_credential_find(t->b, fp, &pid), KW_ERR_AUTH);
	free(buf);

	/* a fingerprint enrolled at b in another partition than in the backup */
	assert_int_equal(kw_keystore_partition_set_setup(t->a->ks, t->a_q, setup), KW_OK);
	assert_int_equal(kw_keystore_enroll(t->a->ks, t->a_q, setup, fp2, "CN=second"), KW_OK);
	assert_int_equal(kw_keystore_partition_create(t->b, "elsewhere", setup, &other), KW_OK);
	assert_int_equal(kw_keystore_enroll(t->b, other, setup, fp2, "CN=second"), KW_OK);
	backup(t->a->ks, NULL, &buf, &len);
	refused(t, buf, len, KW_ERR_EXISTS, "belongs to partition 'elsewhere' here but to 'q'");
	free(buf);
}

/* Every prefix of a good file is refused, without a crash (single-byte changes: test_refusals). */
static void test_decoder_edges(void **state)
{
	struct two *t = *state;
	struct kw_backup *b = NULL;
	unsigned char *buf = NULL;
	size_t len = 0;

	backup(t->a->ks, NULL, &buf, &len);
	assert_int_equal(kw_backup_decode(buf, len, &b), KW_OK);
	assert_int_equal(b->n_objects, 6);
	kw_backup_free(b);
	for (size_t n = 0; n < len; n++) {
		assert_int_equal(kw_backup_decode(buf, n, &b), KW_ERR_ENCRYPTED_DATA);
		assert_null(b);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_restore_into_same_master_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_scope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crafted_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decoder_edges, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
