/*
 * Fuzz target: an HSM backup file as keyward-admin restore and keywardd
 * read it (kw_backup_decode). Must never crash, leak or read out of
 * bounds, whatever the input.
 *
 * The input is decoded as it is (the header, length and checksum checks),
 * then again with its declared length and SHA-256 made right, so that
 * mutations reach the parser behind the checksum. A file that decodes
 * must encode back to the same bytes.
 *
 * Built with -fsanitize=fuzzer (cmake -DKEYWARD_FUZZ=ON, clang) it is a
 * libFuzzer binary; otherwise replay.c feeds it the corpus as a test.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "keystore/backup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LENGTH_AT (KW_BACKUP_MAGIC_LEN + 4)

static void decode_and_check(const uint8_t *data, size_t size)
{
	struct kw_backup *b = NULL;
	unsigned char *again = NULL;
	size_t again_len = 0;

	if (kw_backup_decode(data, size, &b) != KW_OK)
		return;
	if (kw_backup_encode(b, &again, &again_len) != KW_OK || again_len != size || memcmp(again, data, size) != 0) {
		fprintf(stderr, "fuzz_backup: a decoded backup does not encode back to its bytes\n");
		abort();
	}
	free(again);
	kw_backup_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *fixed;

	decode_and_check(data, size);
	if (size < LENGTH_AT + 8 + SHA256_DIGEST_LENGTH || size > KW_BACKUP_MAX)
		return 0;
	fixed = malloc(size);
	if (!fixed)
		return 0;
	memcpy(fixed, data, size);
	for (int i = 0; i < 8; i++)
		fixed[LENGTH_AT + (size_t)i] = (unsigned char)((uint64_t)size >> (56 - 8 * i));
	SHA256(fixed, size - SHA256_DIGEST_LENGTH, fixed + size - SHA256_DIGEST_LENGTH);
	decode_and_check(fixed, size);
	free(fixed);
	return 0;
}
