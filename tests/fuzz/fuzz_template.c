/*
 * Fuzz target: the text of a template file (keyward-ca templates add
 * --file, ca_template_parse) and of ca.conf (ca_conf_parse), the same
 * bytes through both. What either takes must come back the same when
 * written out and read again (ca_template_print, ca_conf_text): a file
 * keyward-ca writes is one it reads as it meant. Must never crash, leak
 * or read out of bounds, whatever the input.
 *
 * Built with -fsanitize=fuzzer (cmake -DKEYWARD_FUZZ=ON, clang) it is a
 * libFuzzer binary; otherwise replay.c feeds it the corpus as a test.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/ca.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* t as ca_template_print writes it; malloc'd. */
static char *printed(const struct ca_template *t)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		abort();
	ca_template_print(t, f);
	if (fclose(f) != 0)
		abort();
	return text;
}

static void template_round_trip(const char *text, size_t len)
{
	static struct ca_conf c, again;
	struct ca_template *t, *u;
	char *first, *second;

	if (ca_conf_defaults(&c, "/nonexistent") || !(t = ca_template_add(&c, "Fuzz")))
		abort();
	if (ca_template_parse(t, "fuzz.tmpl", text, len))
		return;
	first = printed(t);
	if (ca_conf_defaults(&again, "/nonexistent") || !(u = ca_template_add(&again, "Fuzz")) ||
	    ca_template_parse(u, "printed", first, strlen(first)))
		abort(); /* what keyward-ca wrote, it cannot read */
	second = printed(u);
	if (strcmp(first, second))
		abort(); /* read again, it says something else */
	free(first);
	free(second);
}

static void conf_round_trip(const char *text)
{
	static struct ca_conf c, again;
	char *first, *second;

	if (ca_conf_parse(&c, "/nonexistent", "fuzz/ca.conf", text))
		return;
	if (!(first = ca_conf_text(&c)))
		abort();
	if (ca_conf_parse(&again, "/nonexistent", "printed", first)) {
		/* a value the parser took that its own writer cannot carry (a line break, a comment mark) */
		fprintf(stderr, "ca.conf written is not read back: %s\n", ca_last_error());
		abort();
	}
	if (!(second = ca_conf_text(&again)) || strcmp(first, second))
		abort();
	free(first);
	free(second);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	template_round_trip(text, size);
	/* ca_conf_load refuses a file with a NUL; the parser takes text */
	if (!memchr(text, '\0', size))
		conf_round_trip(text);
	free(text);
	return 0;
}
