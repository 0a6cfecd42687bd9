/*
 * Challenge validation (RFC 8555 8.3, 8.4). http-01 fetches from the name
 * being validated, which an unauthenticated client chose: so the fetch is
 * bounded (time, size, two redirects, plain HTTP only) and the address
 * of every connection, redirects included, is checked as the socket is
 * opened, after resolution: no loopback, link-local, unspecified or
 * multicast target (the CA host's own services, cloud metadata), and
 * only the http-01 port or 80. Tests switch the address check off and
 * map every name to one address (acme.conf: allow_loopback, resolve).
 *
 * dns-01 is left to the site's DNS tooling: a hook command, run without a
 * shell (HOOK NAME VALUE, exit 0 when _acme-challenge.NAME has TXT VALUE),
 * killed when it overruns.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>

#include "ca/acme.h"

#define FETCH_MAX 1024 /* a key authorization is 87 bytes; anything much larger is not one */

struct fetch {
	const struct acme_conf *ac;
	const atomic_bool *stop;
	char body[FETCH_MAX];
	size_t len;
	bool too_big;
	char refused[160]; /* why a connection was not opened */
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct fetch *f = arg;

	if (n && size > FETCH_MAX / n) {
		f->too_big = true;
		return 0;
	}
	if (f->len + size * n > sizeof f->body) {
		f->too_big = true;
		return 0; /* curl stops with CURLE_WRITE_ERROR */
	}
	memcpy(f->body + f->len, p, size * n);
	f->len += size * n;
	return size * n;
}

static bool v4_forbidden(const unsigned char *a)
{
	return a[0] == 127 || a[0] == 0 || (a[0] == 169 && a[1] == 254) || a[0] >= 224;
}

/* Whether a connection to addr may be made: the address and port checked after resolution. */
static bool target_allowed(struct fetch *f, const struct sockaddr *sa)
{
	char text[INET6_ADDRSTRLEN] = "?";
	unsigned port;
	bool bad;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		port = ntohs(in->sin_port);
		bad = v4_forbidden((const unsigned char *)&in->sin_addr);
		inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		const unsigned char *a = in6->sin6_addr.s6_addr;

		port = ntohs(in6->sin6_port);
		bad = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) ||
		      IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr) || IN6_IS_ADDR_MULTICAST(&in6->sin6_addr) ||
		      (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && v4_forbidden(a + 12));
		inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
	} else {
		snprintf(f->refused, sizeof f->refused, "an address of family %d", sa->sa_family);
		return false;
	}
	if (bad && !f->ac->allow_loopback) {
		snprintf(f->refused, sizeof f->refused, "%s is a loopback, link-local or reserved address", text);
		return false;
	}
	if (port != f->ac->http01_port && port != 80) {
		snprintf(f->refused, sizeof f->refused, "port %u is neither 80 nor the http-01 port", port);
		return false;
	}
	return true;
}

/* serve is stopping: the transfer ends now */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const struct fetch *f = arg;

	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return f->stop && atomic_load(f->stop);
}

static curl_socket_t on_open(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct fetch *f = arg;

	if (purpose != CURLSOCKTYPE_IPCXN || !target_allowed(f, &addr->addr))
		return CURL_SOCKET_BAD;
	return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

enum acme_prob acme_http01(const struct acme_conf *ac, const char *name, const char *token, const char *key_auth,
			   const atomic_bool *stop)
{
	struct fetch f = {.ac = ac, .stop = stop};
	char url[512], resolve[400], err[CURL_ERROR_SIZE] = "";
	struct curl_slist *res = NULL;
	CURL *c = curl_easy_init();
	CURLcode rc;
	long status = 0;
	enum acme_prob p = AP_CONNECTION;

	if (!c)
		return ca_error("out of memory"), AP_SERVER_INTERNAL;
	snprintf(url, sizeof url, "http://%s:%u/.well-known/acme-challenge/%s", name, ac->http01_port, token);
	if (ac->resolve[0]) {
		snprintf(resolve, sizeof resolve, strchr(ac->resolve, ':') ? "%s:%u:[%s]" : "%s:%u:%s", name,
			 ac->http01_port, ac->resolve);
		if (!(res = curl_slist_append(NULL, resolve))) {
			curl_easy_cleanup(c);
			return ca_error("out of memory"), AP_SERVER_INTERNAL;
		}
		curl_easy_setopt(c, CURLOPT_RESOLVE, res);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 2L);
	curl_easy_setopt(c, CURLOPT_PROXY, ""); /* never through a proxy the environment names */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)ac->fetch_timeout);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)ac->fetch_timeout);
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE, (long)FETCH_MAX);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "keyward-ca ACME http-01");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &f);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &f);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	curl_slist_free_all(res);
	if (f.refused[0]) {
		ca_error("http-01 for %s: refused to connect: %s", name, f.refused);
	} else if (f.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		p = AP_INCORRECT_RESPONSE;
		ca_error("http-01 for %s: the answer is longer than %d bytes", name, FETCH_MAX);
	} else if (rc == CURLE_COULDNT_RESOLVE_HOST) {
		p = AP_DNS;
		ca_error("http-01 for %s: the name does not resolve", name);
	} else if (rc == CURLE_TOO_MANY_REDIRECTS || rc == CURLE_UNSUPPORTED_PROTOCOL) {
		ca_error("http-01 for %s: redirected too often, or elsewhere than plain HTTP", name);
	} else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT) {
		ca_error("http-01 for %s: cannot connect to %s port %u, or no answer within %u s", name, name,
			 ac->http01_port, ac->fetch_timeout);
	} else if (rc != CURLE_OK) {
		ca_error("http-01 for %s: %s", name, err[0] ? err : curl_easy_strerror(rc));
	} else if (status != 200) {
		p = AP_INCORRECT_RESPONSE;
		ca_error("http-01 for %s: %s answered HTTP %ld", name, url, status);
	} else {
		/* trailing white space is ignored (RFC 8555 8.3) */
		while (f.len && strchr(" \t\r\n", f.body[f.len - 1]))
			f.len--;
		if (f.len == strlen(key_auth) && !memcmp(f.body, key_auth, f.len))
			return AP_OK;
		p = AP_INCORRECT_RESPONSE;
		ca_error("http-01 for %s: the answer is not the key authorization", name);
	}
	return p;
}

enum acme_prob acme_dns01(const struct acme_conf *ac, const char *name, const char *value, const atomic_bool *stop)
{
	char *argv[] = {(char *)ac->dns01_hook, (char *)name, (char *)value, NULL};
	char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st = 0, rc;
	struct timespec start, now;

	if (!ac->dns01_hook[0])
		return ca_error("dns-01 is not offered: acme.conf names no dns01_hook"), AP_MALFORMED;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&pid, ac->dns01_hook, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (rc)
		return ca_error("dns-01 hook %s: %s", ac->dns01_hook, strerror(rc)), AP_SERVER_INTERNAL;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		rc = waitpid(pid, &st, WNOHANG);
		if (rc == pid || (rc < 0 && errno != EINTR))
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= (time_t)ac->hook_timeout || (stop && atomic_load(stop))) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return ca_error("dns-01 hook %s: no answer for %s within %u s", ac->dns01_hook, name,
					ac->hook_timeout),
			       AP_DNS;
		}
		usleep(20 * 1000);
	}
	if (rc == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return AP_OK;
	return ca_error("dns-01 for %s: no TXT record _acme-challenge.%s with the expected value (the hook said no)", name,
			name),
	       AP_INCORRECT_RESPONSE;
}
