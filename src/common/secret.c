/*
 * kw_secret_read_file: the one way keyward reads a secret from a file.
 *
 * A secret file is the secret's only copy outside someone's head, so it
 * must be the owner's alone: a file group or others may read (or write) is
 * refused, as ssh refuses such a private key, with the chmod that fixes
 * it. The file is read with read(2) straight into the caller's buffer (no
 * stdio buffer is left holding it), at most KW_SECRET_MAX bytes; its first
 * line is the secret, without the line end. On every failure the buffer is
 * wiped before returning.
 */
#include "common/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/error.h"

static kw_rv refuse(char *buf, size_t size, kw_rv rv)
{
	OPENSSL_cleanse(buf, size);
	buf[0] = '\0';
	return rv;
}

kw_rv kw_secret_read_file(const char *path, const char *what, char *buf, size_t size)
{
	size_t len = 0, line, cap;
	struct stat st;
	char *nl;
	int fd;

	if (!what || !*what)
		what = "secret file";
	if (!buf || size < 2)
		return kw_error_set(KW_ERR_ARGUMENTS, "reading the %s: no room for the secret", what);
	buf[0] = '\0';
	if (!path || !*path)
		return kw_error_set(KW_ERR_ARGUMENTS, "no %s named", what);
	cap = size - 1 < KW_SECRET_MAX ? size - 1 : KW_SECRET_MAX;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return kw_error_set(KW_ERR_CONFIG, "cannot read the %s %s: %s", what, path, strerror(errno));
	if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode))) {
		close(fd);
		return kw_error_set(KW_ERR_CONFIG, "the %s %s is not a regular file", what, path);
	}
	if (st.st_mode & 077) {
		close(fd);
		return kw_error_set(KW_ERR_CONFIG,
				    "the %s %s has mode %04o: group or others may read it; refused (chmod 600 %s)",
				    what, path, (unsigned)(st.st_mode & 07777), path);
	}
	/* one byte more than the cap tells a line that is too long */
	while (len < cap + 1) {
		ssize_t n = read(fd, buf + len, cap + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			refuse(buf, size, KW_OK);
			return kw_error_set(KW_ERR_CONFIG, "cannot read the %s %s: %s", what, path, strerror(e));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	/* the first line; its end and everything after it go */
	nl = memchr(buf, '\n', len);
	line = nl ? (size_t)(nl - buf) : len;
	if (line > cap)
		return kw_error_set(refuse(buf, size, KW_ERR_CONFIG), "the %s %s is longer than %zu bytes: not a %s",
				    what, path, cap, what);
	OPENSSL_cleanse(buf + line, len - line);
	if (line && buf[line - 1] == '\r')
		buf[--line] = '\0';
	buf[line] = '\0';
	if (!line)
		return kw_error_set(refuse(buf, size, KW_ERR_CONFIG), "the %s %s is empty", what, path);
	if (memchr(buf, '\0', line))
		return kw_error_set(refuse(buf, size, KW_ERR_CONFIG), "the %s %s holds a NUL byte", what, path);
	return KW_OK;
}
