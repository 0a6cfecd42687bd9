/* keyward-admin's link to keywardd: frames over the local admin socket. */
#ifndef KW_TOOLS_ADMIN_CLIENT_H
#define KW_TOOLS_ADMIN_CLIENT_H

#include <keyward/keyward.h>

#include "keyward.pb-c.h"

/* path NULL: $KEYWARD_ADMIN_SOCKET, else /run/keyward/admin.sock */
kw_rv kw_admin_connect(const char *path, int *fd_out);
/*
 * Sends req, waits for its response (timeout_s seconds). A non-OK status is
 * returned as the kw_rv, with the server's message as the thread's error.
 */
kw_rv kw_admin_call(int fd, Keyward__Request *req, int timeout_s, Keyward__Response **resp_out);

#endif
