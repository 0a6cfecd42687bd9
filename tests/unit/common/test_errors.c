/* The error enum and the wire's Status cannot drift apart. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <p11-kit/pkcs11.h>

#include "common/error.h"
#include "keyward.pb-c.h"

static void test_enum_matches_wire(void **state)
{
	const ProtobufCEnumDescriptor *d = &keyward__status__descriptor;

	(void)state;
	assert_int_equal(d->n_values, KW_RV_COUNT);
	for (unsigned i = 0; i < d->n_values; i++) {
		const char *name = kw_rv_name((kw_rv)d->values[i].value);
		/* KW_OK <-> OK, KW_ERR_NOT_FOUND <-> NOT_FOUND */
		const char *suffix = strncmp(name, "KW_ERR_", 7) == 0 ? name + 7 : name + 3;
		assert_string_equal(suffix, d->values[i].name);
		assert_true(strlen(kw_rv_text((kw_rv)d->values[i].value)) > 0);
	}
}

static void test_ckr_mapping(void **state)
{
	(void)state;
	assert_int_equal(kw_rv_to_ckr(KW_OK), CKR_OK);
	assert_int_equal(kw_rv_to_ckr(KW_ERR_UNEXTRACTABLE), CKR_KEY_UNEXTRACTABLE);
	assert_int_equal(kw_rv_to_ckr(KW_ERR_SENSITIVE), CKR_ATTRIBUTE_SENSITIVE);
	assert_int_equal(kw_rv_to_ckr(KW_ERR_NOT_MODIFIABLE), CKR_ATTRIBUTE_READ_ONLY);
	assert_int_equal(kw_rv_to_ckr(KW_ERR_MECHANISM), CKR_MECHANISM_INVALID);
	/* issue 15: a locked HSM is no "user not logged in", an unreachable one no removed device */
	assert_int_equal(kw_rv_to_ckr(KW_ERR_STORE_LOCKED), CKR_DEVICE_ERROR);
	assert_int_equal(kw_rv_to_ckr(KW_ERR_UNREACHABLE), CKR_DEVICE_ERROR);
	assert_int_equal(kw_rv_to_ckr(KW_ERR_AUTH), CKR_PIN_INCORRECT);
	/* out of range never indexes past the table */
	assert_string_equal(kw_rv_name((kw_rv)9999), "KW_ERR_GENERAL");
}

static void test_message_is_per_thread(void **state)
{
	(void)state;
	kw_error_clear();
	assert_string_equal(kw_last_error(), "");
	assert_int_equal(kw_error_set(KW_ERR_NOT_FOUND, "no key \"%s\"", "x"), KW_ERR_NOT_FOUND);
	assert_string_equal(kw_last_error(), "no key \"x\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enum_matches_wire),
		cmocka_unit_test(test_ckr_mapping),
		cmocka_unit_test(test_message_is_per_thread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
