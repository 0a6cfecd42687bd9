/*
 * Fuzz target: the backup manifest decoder of keyward-ca restoredb and
 * migrate (ca_manifest_parse), which reads a file from a directory an
 * operator copied between servers. Must never crash, leak or read out of
 * bounds, whatever the input; what it accepts has every field restoredb
 * goes on to use.
 *
 * Built with -fsanitize=fuzzer (cmake -DKEYWARD_FUZZ=ON, clang) it is a
 * libFuzzer binary; otherwise replay.c feeds it the corpus as a test.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ca/ca.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *m = ca_manifest_parse("fuzz", (const char *)data, size);
	json_t *files = json_object_get(m, "files");

	/* accepted: what restoredb reads next is there, of the right type */
	if (m && (!json_is_string(json_object_get(m, "key_sha256")) ||
		  !json_is_string(json_object_get(json_object_get(files, "keyward-ca.db"), "sha256"))))
		abort();
	json_decref(m);
	return 0;
}
