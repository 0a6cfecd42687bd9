/* keyward-admin's side of the admin socket (see admin_client.h). */
#include "tools/admin_client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/frame.h"

#define DEFAULT_SOCKET "/run/keyward/admin.sock"

kw_rv kw_admin_connect(const char *path, int *fd_out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (!path)
		path = getenv("KEYWARD_ADMIN_SOCKET");
	if (!path || !*path)
		path = DEFAULT_SOCKET;
	if (strlen(path) >= sizeof sa.sun_path)
		return kw_error_set(KW_ERR_ARGUMENTS, "admin socket path too long: %s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		kw_rv rv = kw_error_set(KW_ERR_UNREACHABLE,
					"cannot reach keywardd's admin socket %s: %s (is keywardd running? "
					"set KEYWARD_ADMIN_SOCKET or --socket)",
					path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rv;
	}
	*fd_out = fd;
	return KW_OK;
}

static kw_rv read_full(int fd, unsigned char *buf, size_t len, int timeout_s)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;
		int r = poll(&p, 1, timeout_s * 1000);
		if (r == 0)
			return kw_error_set(KW_ERR_TIMEOUT, "keywardd did not answer within %d s", timeout_s);
		if (r < 0 && errno == EINTR)
			continue;
		n = read(fd, buf + got, len - got);
		if (n == 0)
			return kw_error_set(KW_ERR_NETWORK, "keywardd closed the admin connection");
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return kw_error_set(KW_ERR_NETWORK, "admin socket: %s", strerror(errno));
		}
		got += (size_t)n;
	}
	return KW_OK;
}

kw_rv kw_admin_call(int fd, Keyward__Request *req, int timeout_s, Keyward__Response **resp_out)
{
	static uint64_t next_id = 1;
	struct kw_buf out;
	unsigned char header[KW_FRAME_HEADER], *body = NULL;
	size_t len = 0, off = 0;
	bool complete;
	kw_rv rv;

	*resp_out = NULL;
	req->id = next_id++;
	kw_buf_init(&out, KW_MAX_FRAME + KW_FRAME_HEADER);
	rv = kw_frame_put_request(&out, req);
	while (rv == KW_OK && off < out.len) {
		/* MSG_NOSIGNAL: a server that closed must be an error, not SIGPIPE */
		ssize_t n = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			break; /* a server that refused this connection has said why: read it */
		if (n < 0)
			rv = kw_error_set(KW_ERR_NETWORK, "admin socket: %s", strerror(errno));
		else
			off += (size_t)n;
	}
	kw_buf_cleanup(&out); /* wipes: requests may carry passphrases */
	if (rv || (rv = read_full(fd, header, sizeof header, timeout_s)))
		return rv;
	if (kw_frame_peek(header, sizeof header, KW_MAX_FRAME, &len, &complete))
		return kw_error_set(KW_ERR_PROTOCOL, "keywardd sent a frame of impossible length");
	body = malloc(len);
	if (!body)
		return KW_ERR_NO_MEMORY;
	rv = read_full(fd, body, len, timeout_s);
	if (rv == KW_OK)
		rv = kw_frame_decode_response(body, len, resp_out);
	free(body);
	if (rv)
		return rv == KW_ERR_PROTOCOL ? kw_error_set(rv, "keywardd sent a malformed response") : rv;
	if ((*resp_out)->id != req->id && (*resp_out)->status == KEYWARD__STATUS__OK)
		return kw_error_set(KW_ERR_PROTOCOL, "response %llu does not answer request %llu",
				    (unsigned long long)(*resp_out)->id, (unsigned long long)req->id);
	if ((*resp_out)->status != KEYWARD__STATUS__OK)
		return kw_error_set((kw_rv)(*resp_out)->status, "%s",
				    (*resp_out)->message && (*resp_out)->message[0]
					    ? (*resp_out)->message
					    : kw_rv_text((kw_rv)(*resp_out)->status));
	return KW_OK;
}
