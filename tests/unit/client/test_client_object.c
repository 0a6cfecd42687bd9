/* kw_object and kw_object_list: copies of ObjectInfo and their accessors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/client.h"

static void fill(Keyward__ObjectInfo *o, uint64_t id)
{
	keyward__object_info__init(o);
	o->id = id;
	o->pair_id = id + 1;
	o->owner = "S-1-5-21-1-2-3";
	o->name = "myDemoCA";
	o->cls = KEYWARD__OBJECT_CLASS__PUBLIC_KEY;
	o->key_type = KEYWARD__KEY_TYPE__RSA;
	o->bits = 3072;
	o->curve = "";
	o->sensitive = false;
	o->extractable = true;
	o->modifiable = false;
	o->never_extractable = false;
	o->always_sensitive = true;
	o->usages = KW_USAGE_SIGN | KW_USAGE_WRAP;
	o->created = 1700000000;
}

static void test_accessors(void **state)
{
	Keyward__ObjectInfo info;
	unsigned char pub[] = {0x30, 0x82, 0x01, 0x22};
	char owner[] = "S-1-5-21-1-2-3", name[] = "myDemoCA";
	const unsigned char *p;
	kw_object *o;
	size_t len;

	(void)state;
	fill(&info, 7);
	info.owner = owner;
	info.name = name;
	info.public_key.data = pub;
	info.public_key.len = sizeof pub;
	assert_int_equal(kw_object_from_info(&info, &o), KW_OK);
	/* a copy: changing the source does not change the object */
	owner[0] = 'X';
	name[0] = 'X';
	pub[0] = 0;
	assert_int_equal(kw_object_id(o), 7);
	assert_int_equal(kw_object_pair_id(o), 8);
	assert_string_equal(kw_object_owner(o), "S-1-5-21-1-2-3");
	assert_string_equal(kw_object_name(o), "myDemoCA");
	assert_int_equal(kw_object_class(o), KW_CLASS_PUBLIC_KEY);
	assert_int_equal(kw_object_key_type(o), KW_KEY_RSA);
	assert_int_equal(kw_object_bits(o), 3072);
	assert_string_equal(kw_object_curve(o), "");
	p = kw_object_public_key(o, &len);
	assert_int_equal(len, 4);
	assert_int_equal(p[0], 0x30);
	assert_int_equal(p[3], 0x22);
	assert_int_equal(kw_object_sensitive(o), 0);
	assert_int_equal(kw_object_extractable(o), 1);
	assert_int_equal(kw_object_modifiable(o), 0);
	assert_int_equal(kw_object_never_extractable(o), 0);
	assert_int_equal(kw_object_always_sensitive(o), 1);
	assert_int_equal(kw_object_usages(o), KW_USAGE_SIGN | KW_USAGE_WRAP);
	assert_int_equal(kw_object_created(o), 1700000000);
	kw_object_free(o);
}

static void test_no_public_key_and_null(void **state)
{
	Keyward__ObjectInfo info;
	kw_object *o;
	size_t len = 99;

	(void)state;
	fill(&info, 1);
	info.owner = NULL; /* protobuf-c may leave strings NULL: read as "" */
	assert_int_equal(kw_object_from_info(&info, &o), KW_OK);
	assert_null(kw_object_public_key(o, &len));
	assert_int_equal(len, 0);
	assert_string_equal(kw_object_owner(o), "");
	kw_object_free(o);

	assert_int_equal(kw_object_id(NULL), 0);
	assert_null(kw_object_owner(NULL));
	assert_null(kw_object_public_key(NULL, &len));
	assert_int_equal(len, 0);
	assert_int_equal(kw_object_class(NULL), KW_CLASS_ANY);
	kw_object_free(NULL);
	assert_int_equal(kw_object_from_info(NULL, &o), KW_ERR_PROTOCOL);
	assert_null(o);
}

static void test_list(void **state)
{
	Keyward__ObjectInfo infos[3], *ptrs[3];
	kw_object_list *l;

	(void)state;
	for (int i = 0; i < 3; i++) {
		fill(&infos[i], (uint64_t)(10 * (i + 1)));
		ptrs[i] = &infos[i];
	}
	assert_int_equal(kw_object_list_from_infos(ptrs, 2, &l), KW_OK);
	assert_int_equal(kw_object_list_count(l), 2);
	assert_int_equal(kw_object_list_append(l, ptrs + 2, 1), KW_OK);
	assert_int_equal(kw_object_list_count(l), 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(kw_object_id(kw_object_list_get(l, i)), 10 * (i + 1));
	assert_null(kw_object_list_get(l, 3));
	kw_object_list_free(l);

	assert_int_equal(kw_object_list_from_infos(NULL, 0, &l), KW_OK);
	assert_int_equal(kw_object_list_count(l), 0);
	kw_object_list_free(l);
	assert_int_equal(kw_object_list_count(NULL), 0);
	assert_null(kw_object_list_get(NULL, 0));
	kw_object_list_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accessors),
		cmocka_unit_test(test_no_public_key_and_null),
		cmocka_unit_test(test_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
