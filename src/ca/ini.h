/*
 * keyward-ca's small INI files beside ca.conf (serve.conf, acme.conf): one
 * section each, read with inih, every error naming the file, the key and
 * the value; and the value checks their keys and ca.conf's share.
 */
#ifndef KW_CA_INI_H
#define KW_CA_INI_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Reads path's [section] through set (0, or -1 after ca_error saying why
 * the value is bad): 0, also when there is no such file; -1 naming the
 * file and what is wrong (another section, a bad key or value, not INI).
 */
int ca_ini_load(const char *path, const char *section, int (*set)(void *arg, const char *key, const char *value),
		void *arg);
/* A whole number from min to max: 0, or -1 saying so. */
int ca_uint_value(const char *v, unsigned min, unsigned max, unsigned *out);
/* true or false. */
int ca_bool_value(const char *v, bool *out);
/* v copied into out (size bytes): 0, or -1 saying it is too long. */
int ca_text_value(const char *v, char *out, size_t size);

#endif
