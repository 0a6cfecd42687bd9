/*
 * Directories for files keyward writes (credentials, the store): made on
 * demand, mode 0700, as nothing of keyward's belongs to anyone else.
 */
#include "common/fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"

kw_rv kw_make_parents(const char *path, int *created)
{
	char *copy = strdup(path), *p;
	kw_rv rv = KW_OK;

	if (created)
		*created = 0;
	if (!copy)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory creating the directory of %s", path);
	p = strrchr(copy, '/');
	if (!p || p == copy) {
		free(copy);
		return KW_OK;
	}
	*p = '\0';
	for (p = copy + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;

			*p = '\0';
			if (mkdir(copy, 0700) == 0) {
				if (created)
					*created = 1;
			} else if (errno != EEXIST) {
				rv = kw_error_set(KW_ERR_GENERAL, "cannot create directory %s: %s", copy,
						  strerror(errno));
				break;
			}
			*p = c;
			if (c == '\0')
				break;
		}
	}
	free(copy);
	return rv;
}
