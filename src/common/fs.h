/* Small file-system helpers shared by the client library and the store. */
#ifndef KW_COMMON_FS_H
#define KW_COMMON_FS_H

#include <keyward/keyward.h>

/*
 * mkdir -p of path's directory (not of path itself): each missing level is
 * made mode 0700; existing ones are left as they are. *created (may be
 * NULL) says whether any level was made. KW_ERR_GENERAL naming the level
 * that could not be made.
 */
kw_rv kw_make_parents(const char *path, int *created);

#endif
