/*
 * Fuzz target: the configuration parsers, the same bytes through both:
 * client.conf as libkeyward reads it (kw_config_parse) and keywardd.conf
 * as the server reads it (kw_server_config_parse, over the defaults).
 * Must never crash, leak or read out of bounds, whatever the input.
 *
 * Built with -fsanitize=fuzzer (cmake -DKEYWARD_FUZZ=ON, clang) it is a
 * libFuzzer binary; otherwise replay.c feeds it the corpus as a test.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "daemon/daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kw_config client;
	struct kw_server_config server;
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (kw_config_parse("/nonexistent/client.conf", text, size, &client) == KW_OK)
		kw_config_cleanup(&client);
	kw_server_config_defaults(&server);
	if (!memchr(text, '\0', size))
		kw_server_config_parse(&server, "/nonexistent/keywardd.conf", text);
	free(text);
	return 0;
}
