/*
 * Fuzz target: the bytes a peer sends, as keywardd and libkeyward read
 * them: a frame header, then a Request or Response body. Must never crash,
 * leak or read out of bounds, whatever the input.
 *
 * Built with -fsanitize=fuzzer (cmake -DKEYWARD_FUZZ=ON, clang) it is a
 * libFuzzer binary; otherwise replay.c feeds it the corpus as a test.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	/* as the server's loop does: frame after frame until one is incomplete */
	while (off < size) {
		size_t len = 0;
		bool complete = false;
		Keyward__Request *req = NULL;
		Keyward__Response *resp = NULL;

		if (kw_frame_peek(data + off, size - off, KW_MAX_FRAME, &len, &complete) != KW_OK || !complete)
			break;
		if (kw_frame_decode_request(data + off + KW_FRAME_HEADER, len, &req) == KW_OK)
			keyward__request__free_unpacked(req, NULL);
		if (kw_frame_decode_response(data + off + KW_FRAME_HEADER, len, &resp) == KW_OK)
			keyward__response__free_unpacked(resp, NULL);
		off += KW_FRAME_HEADER + len;
	}
	return 0;
}
