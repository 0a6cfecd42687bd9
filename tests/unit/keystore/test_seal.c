/* Keystore sealing and master key: round trips, tamper detection, passphrase, Shamir, restart, locking. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

static void round_trip(void **state, const char *type, enum kw_key_type kt, unsigned bits, const char *curve)
{
	struct fx *f = *state;
	struct kw_keygen spec = {"S-1-5-21-1-2-3", "myDemoCA", false, true, KW_USAGE_SIGN, NULL, 0,
				 KW_KEY_NONE,	   false,      false, false};
	struct kw_object_row priv, pub, got;
	EVP_PKEY *k = gen_key(type), *loaded = NULL;
	unsigned char *spki = NULL;
	int spki_len;

	assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &priv, &pub), KW_OK);
	assert_int_equal(priv.key_type, kt);
	assert_int_equal(pub.key_type, kt);
	assert_int_equal(priv.bits, bits);
	assert_int_equal(pub.bits, bits);
	assert_string_equal(priv.curve, curve);
	assert_string_equal(pub.curve, curve);
	assert_int_equal(priv.cls, KW_CLASS_PRIVATE_KEY);
	assert_int_equal(pub.cls, KW_CLASS_PUBLIC_KEY);
	assert_int_equal(priv.pair_id, pub.id);
	assert_int_equal(pub.pair_id, priv.id);
	assert_true(priv.id != 0 && priv.id <= INT64_MAX);
	assert_true(priv.sensitive && !priv.extractable && priv.modifiable);
	assert_true(priv.never_extractable && priv.always_sensitive);
	assert_true(!pub.sensitive && pub.extractable);
	assert_null(priv.value);
	spki_len = i2d_PUBKEY(k, &spki);
	assert_true(spki_len > 0);
	assert_int_equal(pub.value_len, (size_t)spki_len);
	assert_memory_equal(pub.value, spki, (size_t)spki_len);

	assert_int_equal(kw_keystore_get(f->ks, f->pid, pub.id, &got), KW_OK);
	assert_int_equal(got.value_len, (size_t)spki_len);
	assert_memory_equal(got.value, spki, (size_t)spki_len);
	assert_string_equal(got.owner, "S-1-5-21-1-2-3");
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_get(f->ks, f->pid, priv.id, &got), KW_OK);
	assert_null(got.value);
	assert_int_equal(got.pair_id, pub.id);
	kw_object_row_cleanup(&got);

	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded), KW_OK);
	assert_int_equal(EVP_PKEY_eq(loaded, k), 1);
	EVP_PKEY_free(loaded);
	/* a public key is not loadable as a private key */
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, pub.id, &loaded), KW_ERR_KEY_TYPE);
	assert_null(loaded);

	/* the stored blob does not contain the private key in the clear */
	assert_true(raw_int(f, "SELECT length(sealed) FROM objects WHERE id = %lld", (long long)priv.id) > 28);
	assert_true(raw_int(f, "SELECT value IS NULL FROM objects WHERE id = %lld", (long long)priv.id) == 1);

	OPENSSL_free(spki);
	EVP_PKEY_free(k);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void test_round_trip_rsa(void **state)
{
	round_trip(state, "RSA", KW_KEY_RSA, 2048, "");
}

static void test_round_trip_p256(void **state)
{
	round_trip(state, "P-256", KW_KEY_EC, 256, "P-256");
}

static void test_round_trip_p384(void **state)
{
	round_trip(state, "P-384", KW_KEY_EC, 384, "P-384");
}

static void test_round_trip_ed25519(void **state)
{
	round_trip(state, "Ed25519", KW_KEY_ED25519, 256, "Ed25519");
}

/* Each hand edit of a bound field makes load_private report KW_ERR_TAMPERED. */
static void test_tamper_fields(void **state)
{
	struct fx *f = *state;
	static const char *const edits[] = {
		"extractable = 1",
		"usages = usages | 2",
		"key_type = 1",
		"bits = 384",
		"curve = 'P-384'",
		"modifiable = 0",
		"sensitive = 0",
		"never_extractable = 0",
		"always_sensitive = 0",
		"cls = 4",
		"sealed = CAST(substr(sealed, 1, 20) || CASE WHEN substr(sealed, 21, 1) = x'00' THEN x'01' ELSE x'00' END"
		" || substr(sealed, 22) AS BLOB)",
		"wrapped_dek = zeroblob(60)",
	};
	struct kw_object_row priv, pub, opriv, opub;
	EVP_PKEY *loaded = NULL;
	char pattern[64];
	uint64_t pid_b;

	assert_int_equal(kw_keystore_partition_create(f->ks, "other", NULL, &pid_b), KW_OK);
	put_pair(f, f->pid, "S-1-5-21-9-9-9", "other", "P-256", false, true, &opriv, &opub);
	for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
		char name[32];

		snprintf(name, sizeof name, "k%zu", i);
		put_pair(f, f->pid, "S-1-5-21-1-2-3", name, "P-256", false, true, &priv, &pub);
		assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded), KW_OK);
		EVP_PKEY_free(loaded);
		loaded = NULL;
		raw_sql(f, "UPDATE objects SET %s WHERE id = %lld", edits[i], (long long)priv.id);
		if (strncmp(edits[i], "cls", 3) == 0) {
			/* no longer a private key at all: refused before any unsealing */
			assert_int_not_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded), KW_OK);
		} else {
			kw_rv rv = kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded);

			if (rv != KW_ERR_TAMPERED)
				fprintf(stderr, "edit \"%s\" not detected: %s\n", edits[i], kw_last_error());
			assert_int_equal(rv, KW_ERR_TAMPERED);
			snprintf(pattern, sizeof pattern, "0x%llx", (unsigned long long)priv.id);
			assert_non_null(strstr(kw_last_error(), pattern));
			assert_non_null(strstr(kw_last_error(), "'dev'"));
		}
		assert_null(loaded);
		kw_object_row_cleanup(&priv);
		kw_object_row_cleanup(&pub);
	}

	/* moved to another partition by hand */
	put_pair(f, f->pid, "S-1-5-21-1-2-3", "moved", "P-256", false, true, &priv, &pub);
	raw_sql(f, "UPDATE objects SET partition_id = %lld WHERE id IN (%lld, %lld)", (long long)pid_b,
		(long long)priv.id, (long long)pub.id);
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded), KW_ERR_NOT_FOUND);
	assert_int_equal(kw_keystore_load_private(f->ks, pid_b, priv.id, &loaded), KW_ERR_TAMPERED);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);

	/* the public half's value replaced by another key's */
	put_pair(f, f->pid, "S-1-5-21-1-2-3", "pubswap", "P-256", false, true, &priv, &pub);
	raw_sql(f, "UPDATE objects SET value = (SELECT value FROM objects WHERE id = %lld) WHERE id = %lld",
		(long long)opub.id, (long long)pub.id);
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded), KW_ERR_TAMPERED);
	/* the private row's own copy of the public key replaced too */
	raw_sql(f, "UPDATE objects SET spki = (SELECT value FROM objects WHERE id = %lld) WHERE id = %lld",
		(long long)opub.id, (long long)priv.id);
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded), KW_ERR_TAMPERED);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);

	/* sealed blob and data key of another object swapped in */
	put_pair(f, f->pid, "S-1-5-21-1-2-3", "blobswap", "P-256", false, true, &priv, &pub);
	raw_sql(f,
		"UPDATE objects SET (sealed, wrapped_dek) = (SELECT sealed, wrapped_dek FROM objects WHERE id = %lld)"
		" WHERE id = %lld",
		(long long)opriv.id, (long long)priv.id);
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded), KW_ERR_TAMPERED);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);

	/* owner and name are not bound: a rename by hand still loads */
	raw_sql(f, "UPDATE objects SET owner = 'S-1-5-21-7-7-7' WHERE id = %lld", (long long)opriv.id);
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, opriv.id, &loaded), KW_OK);
	EVP_PKEY_free(loaded);
	kw_object_row_cleanup(&opriv);
	kw_object_row_cleanup(&opub);
}

static void test_passphrase(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub;
	EVP_PKEY *loaded = NULL;

	assert_true(kw_keystore_initialized(f->ks));
	assert_false(kw_keystore_locked(f->ks));
	assert_string_equal(kw_keystore_unlock_method(f->ks), "passphrase");
	assert_int_equal(kw_keystore_init_passphrase(f->ks, "again"), KW_ERR_ALREADY_INITIALIZED);
	put_pair(f, f->pid, "S-1-5-21-1-2-3", "key", "Ed25519", false, true, &priv, &pub);

	kw_keystore_lock(f->ks);
	assert_true(kw_keystore_locked(f->ks));
	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, "wrong passphrase"), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "wrong passphrase"));
	assert_true(kw_keystore_locked(f->ks));
	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, ""), KW_ERR_AUTH);
	assert_int_equal(kw_keystore_unlock_shares(f->ks, NULL, 0), KW_ERR_ARGUMENTS);
	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, PASS), KW_OK);
	assert_false(kw_keystore_locked(f->ks));
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded), KW_OK);
	EVP_PKEY_free(loaded);

	/* the KDF parameters are stored with the key */
	assert_int_equal(raw_int(f, "SELECT value = CAST('1024 8 1' AS BLOB) FROM meta WHERE key = 'mk.scrypt'"), 1);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void test_restart_and_locked(void **state)
{
	struct fx *f = *state;
	struct kw_keygen spec = {"S-1-5-21-1-2-3", "second", false, true, KW_USAGE_SIGN, NULL, 0,
				 KW_KEY_NONE,	   false,    false, false};
	struct kw_object_row priv, pub, got, a, b, *rows = NULL;
	EVP_PKEY *loaded = NULL, *k = gen_key("P-256");
	size_t n = 0;
	bool more;

	put_pair(f, f->pid, "S-1-5-21-1-2-3", "first", "RSA", false, true, &priv, &pub);
	fx_reopen(f);
	assert_true(kw_keystore_initialized(f->ks));
	assert_true(kw_keystore_locked(f->ks));
	assert_string_equal(kw_keystore_unlock_method(f->ks), "passphrase");

	/* listing and get work while locked */
	assert_int_equal(kw_keystore_get(f->ks, f->pid, pub.id, &got), KW_OK);
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_find(f->ks, f->pid, "S-1-5-21-1-2-3", "first", KW_CLASS_ANY, &got), KW_OK);
	assert_int_equal(got.id, priv.id); /* the private half first */
	kw_object_row_cleanup(&got);
	assert_int_equal(kw_keystore_list(f->ks, f->pid, NULL, NULL, 0, 10, &rows, &n, &more), KW_OK);
	assert_int_equal(n, 2);
	kw_object_rows_free(rows, n);

	/* anything that seals or unseals refuses */
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded), KW_ERR_STORE_LOCKED);
	assert_null(loaded);
	assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &a, &b), KW_ERR_STORE_LOCKED);
	assert_int_equal(kw_keystore_set_attributes(f->ks, f->pid, priv.id, -1, 0, NULL), KW_ERR_STORE_LOCKED);
	assert_int_equal(count_objects(f, f->pid), 2);

	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, PASS), KW_OK);
	assert_int_equal(kw_keystore_load_private(f->ks, f->pid, priv.id, &loaded), KW_OK);
	EVP_PKEY_free(loaded);
	assert_int_equal(kw_keystore_put_keypair(f->ks, f->pid, &spec, k, &a, &b), KW_OK);
	kw_object_row_cleanup(&a);
	kw_object_row_cleanup(&b);
	EVP_PKEY_free(k);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void test_shamir(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub;
	char **shares = NULL, bad[128];
	EVP_PKEY *loaded = NULL;
	uint64_t pid;
	const char *set[3];

	assert_false(kw_keystore_initialized(f->ks));
	assert_string_equal(kw_keystore_unlock_method(f->ks), "");
	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, PASS), KW_ERR_NOT_INITIALIZED);
	assert_int_equal(kw_keystore_init_shamir(f->ks, 3, 4, &shares), KW_ERR_ARGUMENTS);
	assert_false(kw_keystore_initialized(f->ks));
	assert_int_equal(kw_keystore_init_shamir(f->ks, 3, 2, &shares), KW_OK);
	assert_non_null(shares);
	assert_string_equal(kw_keystore_unlock_method(f->ks), "shamir 2-of-3");
	for (int i = 0; i < 3; i++) {
		char prefix[8];

		snprintf(prefix, sizeof prefix, "kw1-%d-", i + 1);
		assert_int_equal(strncmp(shares[i], prefix, strlen(prefix)), 0);
		assert_int_equal(strlen(shares[i]), strlen(prefix) + 64);
	}
	assert_int_equal(kw_keystore_partition_create(f->ks, "dev", NULL, &pid), KW_OK);
	f->pid = pid;
	put_pair(f, pid, "S-1-5-21-1-2-3", "key", "P-256", false, true, &priv, &pub);

	fx_reopen(f);
	assert_string_equal(kw_keystore_unlock_method(f->ks), "shamir 2-of-3");
	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, PASS), KW_ERR_ARGUMENTS);
	/* every pair of shares, in either order, unlocks */
	for (int i = 0; i < 3; i++) {
		for (int j = 0; j < 3; j++) {
			if (i == j)
				continue;
			kw_keystore_lock(f->ks);
			set[0] = shares[i];
			set[1] = shares[j];
			assert_int_equal(kw_keystore_unlock_shares(f->ks, set, 2), KW_OK);
			assert_int_equal(kw_keystore_load_private(f->ks, pid, priv.id, &loaded), KW_OK);
			EVP_PKEY_free(loaded);
			loaded = NULL;
		}
	}
	/* all three also work */
	kw_keystore_lock(f->ks);
	set[0] = shares[2];
	set[1] = shares[0];
	set[2] = shares[1];
	assert_int_equal(kw_keystore_unlock_shares(f->ks, set, 3), KW_OK);

	kw_keystore_lock(f->ks);
	/* one share is not enough */
	assert_int_equal(kw_keystore_unlock_shares(f->ks, set, 1), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "2 needed"));
	/* a duplicated share */
	set[0] = shares[1];
	set[1] = shares[1];
	assert_int_equal(kw_keystore_unlock_shares(f->ks, set, 2), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "repeats"));
	/* a corrupted share: one hex digit changed */
	snprintf(bad, sizeof bad, "%s", shares[0]);
	bad[10] = bad[10] == 'a' ? 'b' : 'a';
	set[0] = bad;
	set[1] = shares[2];
	assert_int_equal(kw_keystore_unlock_shares(f->ks, set, 2), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "do not recombine"));
	/* malformed shares, named by position */
	snprintf(bad, sizeof bad, "%s", shares[0]);
	bad[10] = 'z';
	set[0] = shares[2];
	set[1] = bad;
	assert_int_equal(kw_keystore_unlock_shares(f->ks, set, 2), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "share 2 is malformed"));
	set[1] = "kw1-9-00";
	assert_int_equal(kw_keystore_unlock_shares(f->ks, set, 2), KW_ERR_AUTH);
	set[1] = "hello";
	assert_int_equal(kw_keystore_unlock_shares(f->ks, set, 2), KW_ERR_AUTH);
	assert_true(kw_keystore_locked(f->ks));
	assert_int_equal(kw_keystore_load_private(f->ks, pid, priv.id, &loaded), KW_ERR_STORE_LOCKED);

	kw_keystore_shares_free(shares, 3);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void test_dev(void **state)
{
	struct fx *f = *state;
	struct kw_object_row priv, pub;
	EVP_PKEY *loaded = NULL;
	uint64_t pid;

	assert_int_equal(kw_keystore_init_dev(f->ks), KW_OK);
	assert_false(kw_keystore_locked(f->ks));
	assert_string_equal(kw_keystore_unlock_method(f->ks), "dev");
	assert_int_equal(kw_keystore_init_dev(f->ks), KW_ERR_ALREADY_INITIALIZED);
	assert_int_equal(kw_keystore_partition_create(f->ks, "dev", NULL, &pid), KW_OK);
	put_pair(f, pid, "S-1-5-21-1-2-3", "key", "Ed25519", false, true, &priv, &pub);
	assert_int_equal(kw_keystore_load_private(f->ks, pid, priv.id, &loaded), KW_OK);
	EVP_PKEY_free(loaded);
	loaded = NULL;
	/* the key lived in memory only */
	fx_reopen(f);
	assert_true(kw_keystore_locked(f->ks));
	assert_int_equal(kw_keystore_unlock_passphrase(f->ks, ""), KW_ERR_AUTH);
	assert_non_null(strstr(kw_last_error(), "development mode"));
	assert_int_equal(kw_keystore_load_private(f->ks, pid, priv.id, &loaded), KW_ERR_STORE_LOCKED);
	kw_object_row_cleanup(&priv);
	kw_object_row_cleanup(&pub);
}

static void test_open_urls(void **state)
{
	struct fx *f = *state;
	struct kw_keystore *ks = NULL;
	char url[300];

	if (fx_pg()) {
		/* a second connection to the same database sees the same store */
		assert_int_equal(kw_keystore_open(f->path, 0, &ks), KW_OK);
		assert_true(kw_keystore_initialized(ks));
		assert_true(kw_keystore_shared(ks));
		kw_keystore_free(ks);
		/* a database that does not exist: refused, saying so */
		snprintf(url, sizeof url, "%s/no_such_db", getenv("KW_TEST_PG_URL"));
		assert_int_equal(kw_keystore_open(url, 0, &ks), KW_ERR_STORE);
		assert_non_null(strstr(kw_last_error(), "cannot connect to PostgreSQL"));
		assert_non_null(strstr(kw_last_error(), "no_such_db"));
	} else {
		snprintf(url, sizeof url, "sqlite:%s", f->path);
		assert_int_equal(kw_keystore_open(url, 0, &ks), KW_OK);
		assert_true(kw_keystore_initialized(ks));
		assert_false(kw_keystore_shared(ks));
		kw_keystore_free(ks);
		/* a directory that cannot be made (its parent is a file): refused, naming the store */
		snprintf(url, sizeof url, "%s/x/keystore.db", f->path);
		assert_int_equal(kw_keystore_open(url, 0, &ks), KW_ERR_STORE);
		assert_non_null(strstr(kw_last_error(), url));
		assert_non_null(strstr(kw_last_error(), "cannot create directory"));
	}
	/* a server that cannot be reached: named in the error, without the URL's password */
	assert_int_equal(kw_keystore_open("postgresql://keyward:hunter2@127.0.0.1:1/kw", 0, &ks), KW_ERR_STORE);
	assert_non_null(strstr(kw_last_error(), "postgresql://127.0.0.1:1/kw"));
	assert_null(strstr(kw_last_error(), "hunter2"));
	/* a PostgreSQL URL without its scheme's slashes is not taken for a file name */
	assert_int_equal(kw_keystore_open("postgresql:keyward", 0, &ks), KW_ERR_CONFIG);
	assert_non_null(strstr(kw_last_error(), "postgresql://"));
	/* WAL and a schema version */
	assert_int_equal(raw_int(f, "SELECT value = CAST('3' AS BLOB) FROM meta WHERE key = 'schema_version'"), 1);
	/* a store from a newer keywardd is refused */
	raw_sql(f, "UPDATE meta SET value = CAST('99' AS BLOB) WHERE key = 'schema_version'");
	assert_int_equal(kw_keystore_open(f->path, 0, &ks), KW_ERR_STORE);
	assert_non_null(strstr(kw_last_error(), "newer"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_rsa, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_p256, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_p384, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_ed25519, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_tamper_fields, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_passphrase, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_restart_and_locked, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_shamir, fx_setup_bare, fx_teardown),
		cmocka_unit_test_setup_teardown(test_dev, fx_setup_bare, fx_teardown),
		cmocka_unit_test_setup_teardown(test_open_urls, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
