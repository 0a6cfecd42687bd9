/*
 * Owner derivation (src/client/owner.c): golden machine owners for fixed
 * machine ids (changing the derivation would hide every existing key from
 * its owner), one recomputed here with OpenSSL, uid -> RID, ".global" ->
 * S-1-5-11, the precedence of the overrides, and every bad input named.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/sha.h>

#include <keyward/keyward.h>

#include "helpers.h"

static char *dir;

/* machine id -> owner, computed once and written down in docs/key-spaces.md */
static const struct {
	const char *id, *owner;
} golden[] = {
	{"0123456789abcdef0123456789abcdef", "S-1-5-21-3432476930-2020770616-2941755792"},
	{"fedcba9876543210fedcba9876543210", "S-1-5-21-545788422-2583283419-2153724581"},
	{"00000000000000000000000000000000", "S-1-5-21-3628445180-2835831724-2824634787"},
};
#define OWNER_A "S-1-5-21-3432476930-2020770616-2941755792"

static int setup(void **state)
{
	(void)state;
	dir = kwt_tmpdir();
	unsetenv("KEYWARD_MACHINE_ID_FILE");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unsetenv("KEYWARD_MACHINE_ID_FILE");
	kwt_rmtree(dir);
	free(dir);
	return 0;
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* A client whose configuration has the given machine_owner line (or none). */
static kw_client *client_with(const char *machine_owner_line, char **conf_out)
{
	char text[512];
	char *conf;
	kw_client *c = NULL;

	snprintf(text, sizeof text,
		 "[client]\n"
		 "partition = dev\n"
		 "ca = ca.crt\n"
		 "%s\n"
		 "[hsm a]\n"
		 "host = 127.0.0.1\n",
		 machine_owner_line ? machine_owner_line : "");
	conf = kwt_write(dir, "client.conf", text);
	if (kw_client_new(conf, &c) != KW_OK)
		fail_msg("kw_client_new: %s", kw_last_error());
	if (conf_out)
		*conf_out = conf;
	else
		free(conf);
	return c;
}

static void use_machine_id(const char *text)
{
	char *path = kwt_write(dir, "machine-id", text);

	setenv("KEYWARD_MACHINE_ID_FILE", path, 1);
	free(path);
}

static void test_golden(void **state)
{
	char out[KW_OWNER_MAX + 1];

	(void)state;
	for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
		assert_int_equal(kw_owner_from_machine_id(golden[i].id, out, sizeof out), KW_OK);
		assert_string_equal(out, golden[i].owner);
		assert_true(kw_owner_is_valid(out));
	}
	/* as the file holds it: a newline after; whitespace around; upper case is the same id */
	assert_int_equal(kw_owner_from_machine_id("0123456789abcdef0123456789abcdef\n", out, sizeof out), KW_OK);
	assert_string_equal(out, OWNER_A);
	assert_int_equal(kw_owner_from_machine_id("  0123456789ABCDEF0123456789abcdef \r\n", out, sizeof out), KW_OK);
	assert_string_equal(out, OWNER_A);
}

/* The derivation, done again here with OpenSSL's one-shot SHA256. */
static void test_recomputed(void **state)
{
	static const char id[] = "3d1219c7c4c5404aaa1f6d2a48adfda4";
	static const char label[] = "keyward machine owner\n";
	unsigned char msg[sizeof label - 1 + 32], md[SHA256_DIGEST_LENGTH];
	char want[KW_OWNER_MAX + 1], out[KW_OWNER_MAX + 1];
	uint32_t w[3];

	(void)state;
	memcpy(msg, label, sizeof label - 1);
	memcpy(msg + sizeof label - 1, id, 32);
	SHA256(msg, sizeof msg, md);
	for (int i = 0; i < 3; i++)
		w[i] = (uint32_t)md[4 * i] << 24 | (uint32_t)md[4 * i + 1] << 16 | (uint32_t)md[4 * i + 2] << 8 | md[4 * i + 3];
	snprintf(want, sizeof want, "S-1-5-21-%u-%u-%u", (unsigned)w[0], (unsigned)w[1], (unsigned)w[2]);
	assert_int_equal(kw_owner_from_machine_id(id, out, sizeof out), KW_OK);
	assert_string_equal(out, want);
}

static void test_bad_machine_ids(void **state)
{
	static const char *const bad[] = {
		"", "\n", "uninitialized\n", "0123456789abcdef0123456789abcde",
		"0123456789abcdef0123456789abcdef0", "0123456789abcdeg0123456789abcdef",
		"0123456789abcdef 0123456789abcdef", "01234567-89ab-cdef-0123-456789abcdef",
	};
	char out[KW_OWNER_MAX + 1] = "untouched";

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(kw_owner_from_machine_id(bad[i], out, sizeof out), KW_ERR_ARGUMENTS);
		assert_contains(kw_last_error(), "32 hexadecimal digits");
	}
	assert_string_equal(out, "untouched");
	assert_int_equal(kw_owner_from_machine_id(NULL, out, sizeof out), KW_ERR_ARGUMENTS);
	/* a buffer too small says how large it must be */
	assert_int_equal(kw_owner_from_machine_id(golden[0].id, out, 10), KW_ERR_ARGUMENTS);
	assert_contains(kw_last_error(), "needs 42 bytes");
	assert_int_equal(kw_owner_from_machine_id(golden[0].id, NULL, 0), KW_ERR_ARGUMENTS);
}

static void test_machine_from_file(void **state)
{
	char out[KW_OWNER_MAX + 1];

	(void)state;
	use_machine_id("fedcba9876543210fedcba9876543210\n");
	assert_int_equal(kw_owner_machine(NULL, out, sizeof out), KW_OK);
	assert_string_equal(out, golden[1].owner);
	/* a client without machine_owner uses the file too */
	kw_client *c = client_with(NULL, NULL);
	assert_int_equal(kw_owner_machine(c, out, sizeof out), KW_OK);
	assert_string_equal(out, golden[1].owner);
	kw_client_free(c);
	/* an empty machine_owner = means none */
	c = client_with("machine_owner =", NULL);
	assert_int_equal(kw_owner_machine(c, out, sizeof out), KW_OK);
	assert_string_equal(out, golden[1].owner);
	kw_client_free(c);
}

static void test_uid_to_rid(void **state)
{
	char out[KW_OWNER_MAX + 1];

	(void)state;
	use_machine_id("0123456789abcdef0123456789abcdef\n");
	assert_int_equal(kw_owner_user(NULL, 0, out, sizeof out), KW_OK);
	assert_string_equal(out, OWNER_A "-1000");
	assert_int_equal(kw_owner_user(NULL, 1000, out, sizeof out), KW_OK);
	assert_string_equal(out, OWNER_A "-3000");
	assert_int_equal(kw_owner_user(NULL, 1001, out, sizeof out), KW_OK);
	assert_string_equal(out, OWNER_A "-3002");
	assert_true(kw_owner_is_valid(out));
	/* the largest uid whose RID fits 32 bits, and the first that does not */
	assert_int_equal(kw_owner_user(NULL, 2147483147u, out, sizeof out), KW_OK);
	assert_string_equal(out, OWNER_A "-4294967294");
	assert_int_equal(kw_owner_user(NULL, 2147483148u, out, sizeof out), KW_ERR_ARGUMENTS);
	assert_contains(kw_last_error(), "beyond 32 bits");
}

static void test_for_name(void **state)
{
	char out[KW_OWNER_MAX + 1], want[KW_OWNER_MAX + 1];

	(void)state;
	/* shared names need no machine id at all */
	setenv("KEYWARD_MACHINE_ID_FILE", "/nonexistent/machine-id", 1);
	assert_int_equal(kw_owner_for_name(NULL, "webserver.global", 0, out, sizeof out), KW_OK);
	assert_string_equal(out, KW_OWNER_SHARED);
	assert_int_equal(kw_owner_for_name(NULL, "webserver.global", 1, out, sizeof out), KW_OK);
	assert_string_equal(out, "S-1-5-11");
	assert_int_equal(kw_owner_for_name(NULL, ".global", 1, out, sizeof out), KW_OK);
	assert_string_equal(out, "S-1-5-11");
	/* the rest does */
	assert_int_equal(kw_owner_for_name(NULL, "myDemoCA", 1, out, sizeof out), KW_ERR_CONFIG);
	assert_int_equal(kw_owner_for_name(NULL, "x.global.bak", 1, out, sizeof out), KW_ERR_CONFIG);
	assert_int_equal(kw_owner_for_name(NULL, "x.GLOBAL", 1, out, sizeof out), KW_ERR_CONFIG);

	use_machine_id("0123456789abcdef0123456789abcdef\n");
	assert_int_equal(kw_owner_for_name(NULL, "myDemoCA", 1, out, sizeof out), KW_OK);
	assert_string_equal(out, OWNER_A);
	assert_int_equal(kw_owner_for_name(NULL, "myDemoCA", 0, out, sizeof out), KW_OK);
	assert_int_equal(kw_owner_user(NULL, (unsigned)getuid(), want, sizeof want), KW_OK);
	assert_string_equal(out, want);
	assert_int_equal(kw_owner_for_name(NULL, "", 0, out, sizeof out), KW_ERR_ARGUMENTS);
	assert_int_equal(kw_owner_for_name(NULL, NULL, 0, out, sizeof out), KW_ERR_ARGUMENTS);
}

static void test_config_wins(void **state)
{
	char out[KW_OWNER_MAX + 1];
	kw_client *c;

	(void)state;
	use_machine_id("0123456789abcdef0123456789abcdef\n");
	c = client_with("machine_owner = S-1-5-21-11-22-33", NULL);
	assert_int_equal(kw_owner_machine(c, out, sizeof out), KW_OK);
	assert_string_equal(out, "S-1-5-21-11-22-33");
	assert_int_equal(kw_owner_user(c, 1000, out, sizeof out), KW_OK);
	assert_string_equal(out, "S-1-5-21-11-22-33-3000");
	assert_int_equal(kw_owner_for_name(c, "myDemoCA", 1, out, sizeof out), KW_OK);
	assert_string_equal(out, "S-1-5-21-11-22-33");
	assert_int_equal(kw_owner_for_name(c, "a.global", 1, out, sizeof out), KW_OK);
	assert_string_equal(out, "S-1-5-11");
	/* ... also when the machine-id file is missing or broken */
	setenv("KEYWARD_MACHINE_ID_FILE", "/nonexistent/machine-id", 1);
	assert_int_equal(kw_owner_machine(c, out, sizeof out), KW_OK);
	assert_string_equal(out, "S-1-5-21-11-22-33");
	kw_client_free(c);
}

static void test_missing_machine_id(void **state)
{
	char out[KW_OWNER_MAX + 1], *conf, *path;
	kw_client *c;

	(void)state;
	setenv("KEYWARD_MACHINE_ID_FILE", "/nonexistent/machine-id", 1);
	c = client_with(NULL, &conf);
	assert_int_equal(kw_owner_machine(c, out, sizeof out), KW_ERR_CONFIG);
	/* names the file, how it was chosen, and both ways out */
	assert_contains(kw_last_error(), "/nonexistent/machine-id");
	assert_contains(kw_last_error(), "KEYWARD_MACHINE_ID_FILE");
	assert_contains(kw_last_error(), "No such file");
	assert_contains(kw_last_error(), "systemd-machine-id-setup");
	assert_contains(kw_last_error(), "machine_owner = S-1-5-21-");
	assert_contains(kw_last_error(), conf);
	assert_int_equal(kw_owner_user(c, 0, out, sizeof out), KW_ERR_CONFIG);
	kw_client_free(c);
	free(conf);

	/* a file that is there but no machine id */
	use_machine_id("uninitialized\n");
	assert_int_equal(kw_owner_machine(NULL, out, sizeof out), KW_ERR_CONFIG);
	path = getenv("KEYWARD_MACHINE_ID_FILE");
	assert_contains(kw_last_error(), path);
	assert_contains(kw_last_error(), "not a valid machine-id file");
	assert_contains(kw_last_error(), "32 hexadecimal digits");
	use_machine_id("");
	assert_int_equal(kw_owner_machine(NULL, out, sizeof out), KW_ERR_CONFIG);
	assert_contains(kw_last_error(), "not 0 characters");
	/* far too long */
	char big[1000];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	use_machine_id(big);
	assert_int_equal(kw_owner_machine(NULL, out, sizeof out), KW_ERR_CONFIG);
	assert_contains(kw_last_error(), "is not a machine-id file");
}

static void test_bad_machine_owner(void **state)
{
	static const char *const bad[] = {
		"S-1-5-21-1-2",           /* two numbers */
		"S-1-5-21-1-2-3-1000",    /* a user, not a machine */
		"S-1-5-32-1-2-3",         /* not S-1-5-21 */
		"S-1-5-21-1-2-4294967296", /* beyond 32 bits */
		"S-1-5-21-01-2-3",        /* leading zero */
		"S-1-5-11",               /* the shared owner */
		"myhost",
	};
	char line[128], out[KW_OWNER_MAX + 1], *conf, where[300];
	kw_client *c;

	(void)state;
	use_machine_id("0123456789abcdef0123456789abcdef\n");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(line, sizeof line, "machine_owner = %s", bad[i]);
		c = client_with(line, &conf);
		assert_int_equal(kw_owner_machine(c, out, sizeof out), KW_ERR_CONFIG);
		/* file, line and key, the bad value, and what to write */
		snprintf(where, sizeof where, "%s:4: key \"machine_owner\"", conf);
		assert_contains(kw_last_error(), where);
		assert_contains(kw_last_error(), bad[i]);
		assert_contains(kw_last_error(), "S-1-5-21-a-b-c");
		assert_int_equal(kw_owner_user(c, 0, out, sizeof out), KW_ERR_CONFIG);
		assert_int_equal(kw_owner_for_name(c, "k", 1, out, sizeof out), KW_ERR_CONFIG);
		/* shared names still resolve */
		assert_int_equal(kw_owner_for_name(c, "k.global", 1, out, sizeof out), KW_OK);
		kw_client_free(c);
		free(conf);
	}
}

static void test_is_valid(void **state)
{
	static const char *const good[] = {
		"S-1-5-11", "S-1-5-21-1-2-3", "S-1-5-21-1-2-3-1000", "S-1-5-21-4294967295-0-0", "S-1-0-0",
		"S-1-5-21-3432476930-2020770616-2941755792-4294967294", "S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15",
	};
	static const char *const bad[] = {
		"", "S", "S-1", "S-1-5", "S-1-5-", "S-1-5-21--1", "S-1-5-21-01-2-3", "S-1-5-21-4294967296-1-1",
		"s-1-5-11", "S-2-5-11", "S-1-5-11 ", " S-1-5-11", "S-1-5-21-1-2-3__x", "S-1-5-21-1-2-3-",
		"S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16", "S-1-5-+1", "S-1-5-0x10", "S-1-281474976710656-1",
	};
	char longest[256] = "S-1-5";

	(void)state;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		if (!kw_owner_is_valid(good[i]))
			fail_msg("\"%s\" should be valid", good[i]);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (kw_owner_is_valid(bad[i]))
			fail_msg("\"%s\" should be invalid", bad[i]);
	assert_false(kw_owner_is_valid(NULL));
	assert_true(kw_owner_is_valid("S-1-281474976710655-1"));
	/* 15 sub-authorities of 10 digits: longer than KW_OWNER_MAX */
	for (int i = 0; i < 15; i++)
		strcat(longest, "-4000000000");
	assert_true(strlen(longest) > KW_OWNER_MAX);
	assert_false(kw_owner_is_valid(longest));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_golden, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recomputed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_machine_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_machine_from_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uid_to_rid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_for_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_machine_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_machine_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_is_valid, setup, teardown),
	};
	return cmocka_run_group_tests_name("client_owner", tests, NULL, NULL);
}
