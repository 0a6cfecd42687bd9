/* Frames: length checks before allocation, decoding of hostile bodies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/frame.h"

static void test_peek(void **state)
{
	unsigned char buf[8] = {0, 0, 0, 3, 'a', 'b', 'c'};
	size_t len = 0;
	bool complete = true;

	(void)state;
	/* a partial header is neither complete nor an error */
	assert_int_equal(kw_frame_peek(buf, 3, KW_MAX_FRAME, &len, &complete), KW_OK);
	assert_false(complete);
	assert_int_equal(kw_frame_peek(buf, 6, KW_MAX_FRAME, &len, &complete), KW_OK);
	assert_false(complete);
	assert_int_equal(len, 3);
	assert_int_equal(kw_frame_peek(buf, 7, KW_MAX_FRAME, &len, &complete), KW_OK);
	assert_true(complete);
	/* zero and oversize lengths are refused from the header alone */
	memset(buf, 0, 4);
	assert_int_equal(kw_frame_peek(buf, 4, KW_MAX_FRAME, &len, &complete), KW_ERR_PROTOCOL);
	buf[0] = 0x7f;
	assert_int_equal(kw_frame_peek(buf, 4, KW_MAX_FRAME, &len, &complete), KW_ERR_PROTOCOL);
	buf[0] = 0;
	buf[1] = 0x10;
	buf[2] = 0;
	buf[3] = 1; /* KW_MAX_FRAME + 1 */
	assert_int_equal(kw_frame_peek(buf, 4, KW_MAX_FRAME, &len, &complete), KW_ERR_PROTOCOL);
}

static void test_round_trip(void **state)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT, *back = NULL;
	Keyward__Sign sign = KEYWARD__SIGN__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	unsigned char digest[32] = {1, 2, 3};
	struct kw_buf out;
	size_t len;
	bool complete;

	(void)state;
	ref.id = 0x1234;
	sign.key = &ref;
	sign.mechanism = KEYWARD__MECHANISM__ECDSA;
	sign.data.data = digest;
	sign.data.len = sizeof digest;
	req.id = 77;
	req.body_case = KEYWARD__REQUEST__BODY_SIGN;
	req.sign = &sign;
	kw_buf_init(&out, KW_MAX_FRAME + KW_FRAME_HEADER);
	assert_int_equal(kw_frame_put_request(&out, &req), KW_OK);
	assert_int_equal(kw_frame_peek(out.data, out.len, KW_MAX_FRAME, &len, &complete), KW_OK);
	assert_true(complete);
	assert_int_equal(len + KW_FRAME_HEADER, out.len);
	assert_int_equal(kw_frame_decode_request(out.data + KW_FRAME_HEADER, len, &back), KW_OK);
	assert_int_equal(back->id, 77);
	assert_int_equal(back->body_case, KEYWARD__REQUEST__BODY_SIGN);
	assert_int_equal(back->sign->key->id, 0x1234);
	assert_memory_equal(back->sign->data.data, digest, sizeof digest);
	keyward__request__free_unpacked(back, NULL);
	kw_buf_cleanup(&out);
}

static void test_hostile_bodies(void **state)
{
	Keyward__Request *req = NULL;
	/* field 99, varint: a request type this build does not know */
	unsigned char unknown[] = {0x08, 0x01, 0x98, 0x06, 0x01};
	/* a length-delimited field running past the end */
	unsigned char truncated[] = {0x08, 0x01, 0x6a, 0x7f, 0x01};
	unsigned char garbage[] = "hello";

	(void)state;
	assert_int_equal(kw_frame_decode_request(unknown, sizeof unknown, &req), KW_ERR_PROTOCOL);
	assert_null(req);
	assert_int_equal(kw_frame_decode_request(truncated, sizeof truncated, &req), KW_ERR_PROTOCOL);
	assert_int_equal(kw_frame_decode_request(garbage, 5, &req), KW_ERR_PROTOCOL);
	assert_int_equal(kw_frame_decode_request(garbage, 0, &req), KW_ERR_PROTOCOL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_peek),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_hostile_bodies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
