/*
 * keyward-ca: reading a whole file, and replacing one atomically. A file
 * is replaced by writing and syncing it under a temporary name, then
 * renaming it over the old: readers see the old file or the new, never a
 * part. The two steps are apart (staged, then put in place) so that a
 * change recorded in the database does the slow part (writing, fsync)
 * before it takes the database's write lock, and puts its file in place
 * under that lock: two processes changing one file take turns. The
 * temporary name carries the process id, so two never write the same one.
 *
 * Also the rules for text that lands in files: names made safe for file
 * names and URLs, and values that ca.conf's INI lines can hold.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "ca/ca.h"

char *ca_read_file(const char *path, size_t max, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = NULL, *grown;
	FILE *f = fopen(path, "re");
	bool failed;

	if (!f) {
		ca_error("%s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (!(grown = realloc(buf, cap + 1))) {
			free(buf);
			fclose(f);
			ca_error("%s: out of memory", path);
			return NULL;
		}
		buf = grown;
		n += fread(buf + n, 1, cap - n, f);
		if (n < cap || n > max)
			break;
		cap *= 2;
	}
	failed = ferror(f);
	fclose(f);
	if (failed || n > max) {
		free(buf);
		if (failed)
			ca_error("%s: read error", path);
		else
			ca_error("%s: larger than %zu bytes", path, max);
		errno = failed ? EIO : EFBIG;
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

int ca_stage_file(struct ca_staged *s, const char *path, const void *data, size_t len, mode_t mode)
{
	int fd, ok;

	if (snprintf(s->path, sizeof s->path, "%s", path) >= (int)sizeof s->path ||
	    snprintf(s->tmp, sizeof s->tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof s->tmp)
		return ca_error("%s: path too long", path);
	if ((fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0)
		return ca_error("cannot write %s: %s", s->tmp, strerror(errno));
	ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
	if (close(fd) != 0 || !ok) {
		int saved = errno;

		unlink(s->tmp);
		return ca_error("cannot write %s: %s", s->tmp, strerror(saved));
	}
	return 0;
}

int ca_stage_commit(struct ca_staged *s)
{
	if (rename(s->tmp, s->path) != 0) {
		int saved = errno;

		unlink(s->tmp);
		return ca_error("cannot replace %s: %s", s->path, strerror(saved));
	}
	return 0;
}

void ca_stage_drop(struct ca_staged *s)
{
	unlink(s->tmp);
}

int ca_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	struct ca_staged s;

	return ca_stage_file(&s, path, data, len, mode) || ca_stage_commit(&s) ? -1 : 0;
}

void ca_file_name(const char *name, char *out, size_t size)
{
	size_t i;

	for (i = 0; name[i] && i + 1 < size; i++) {
		char ch = name[i];
		int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			 ch == '.' || ch == '_' || ch == '-';

		out[i] = ok ? ch : '-';
	}
	out[i] = '\0';
}

int ca_conf_text_ok(size_t key_len, const char *v)
{
	size_t n = strlen(v);

	/* inih reads lines of at most 199 bytes: "key = value" must come back whole */
	if (key_len + 3 + n > CA_CONF_LINE_MAX)
		return ca_error("too long for a line of ca.conf (%d bytes at most)", CA_CONF_LINE_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return ca_error("holds the control character \\x%02x", (unsigned char)v[i]);
	if (n && (v[0] == ' ' || v[n - 1] == ' '))
		return ca_error("starts or ends with a space");
	if (v[0] == ';' || strstr(v, " ;"))
		return ca_error("holds \" ;\", which starts a comment in ca.conf");
	return 0;
}

void ca_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(data, len, md);
	for (size_t i = 0; i < sizeof md; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}
