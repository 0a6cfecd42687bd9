/*
 * keyward-ca serve: libmicrohttpd's callbacks. The path (the URL base's
 * prefix taken off) picks the handler: OCSP (POST, or GET of the base64
 * form), the publish/ files that the CDP and AIA URLs name, /health,
 * /metrics, and the apps of serve_apps.c under their prefixes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "ca/serve_internal.h"
#include "common/log.h"

/* A copy of f's bytes as they are now on disk (re-read when the file changed): 0, or -1 if it is not there. */
static int pubfile_get(struct pubfile *f, unsigned char **data, size_t *len, time_t *mtime, char *etag, size_t esize)
{
	struct stat st;
	int rc = -1;

	pthread_mutex_lock(&f->lock);
	if (stat(f->path, &st) != 0) {
		free(f->data);
		f->data = NULL;
	} else if (!f->data || st.st_dev != f->dev || st.st_ino != f->ino || st.st_size != f->size ||
		   st.st_mtim.tv_sec != f->mtime.tv_sec || st.st_mtim.tv_nsec != f->mtime.tv_nsec) {
		size_t n = 0;
		char *bytes = ca_read_file(f->path, 256u << 20, &n);

		free(f->data);
		f->data = (unsigned char *)bytes;
		f->len = n;
		f->dev = st.st_dev;
		f->ino = st.st_ino;
		f->size = st.st_size;
		f->mtime = st.st_mtim;
		if (bytes)
			serve_etag(f->data, f->len, f->etag, sizeof f->etag);
	}
	if (f->data && (*data = malloc(f->len ? f->len : 1))) {
		memcpy(*data, f->data, f->len);
		*len = f->len;
		*mtime = f->mtime.tv_sec;
		snprintf(etag, esize, "%s", f->etag);
		rc = 0;
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/* ---- HTTP ---- */

struct rctx {
	struct timespec start;
	enum endpoint ep;
	int app; /* serve_apps' index, or -1 */
	unsigned status;
	int outcome;
	unsigned char *body;
	size_t len;
	bool too_big;
};

static void http_date(time_t t, char *out, size_t size)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static enum MHD_Result reply(struct MHD_Connection *c, struct rctx *r, unsigned status, int outcome, const char *type,
			     const void *body, size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	r->outcome = outcome;
	r->status = status;
	if (!resp)
		return MHD_NO;
	if (type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, struct rctx *r, unsigned status, int outcome,
				  const char *text)
{
	return reply(c, r, status, outcome, "text/plain; charset=utf-8", text, strlen(text));
}

/* A body with validators: 304 if the client's If-None-Match names etag. */
static enum MHD_Result reply_cached(struct MHD_Connection *c, struct rctx *r, int outcome, const char *type,
				    const unsigned char *body, size_t len, const char *etag, time_t modified,
				    time_t expires, unsigned max_age)
{
	const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	bool same = inm && etag[0] && !strcmp(inm, etag);
	struct MHD_Response *resp = same ? MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT)
					 : MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	char date[64], cc[96];
	enum MHD_Result ret;

	r->outcome = same ? O_NOT_MODIFIED : outcome;
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (etag[0])
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
	http_date(modified, date, sizeof date);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, date);
	if (expires) {
		http_date(expires, date, sizeof date);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_EXPIRES, date);
	}
	snprintf(cc, sizeof cc, "max-age=%u, public, no-transform, must-revalidate", max_age);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cc);
	ret = MHD_queue_response(c, same ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result handle_ocsp(struct server *sv, struct MHD_Connection *c, struct rctx *r,
				   const unsigned char *der, size_t len)
{
	OCSP_REQUEST *req = ocsp_request_decode(der, len);
	struct serve_lookup l = {.sv = sv, .db = sv->live, .lock = &sv->live_lock, .cache_first = true};
	char serial[OCSP_SERIAL_HEX_MAX];
	time_t now = time(NULL);
	struct centry hit = {0};
	struct ocsp_result res;
	unsigned char *out = NULL;
	size_t out_len = 0;
	unsigned long long generation;
	enum MHD_Result ret;
	bool cacheable = ocsp_request_cache_key(&sv->issuer, req, serial, sizeof serial);

	if (cacheable && serve_cache_get(sv, serial, now, &hit) == 0) {
		time_t left = hit.next_update - now;
		unsigned age = left < (time_t)sv->sc.max_age ? (unsigned)left : sv->sc.max_age;

		atomic_fetch_add(&sv->cache_hits, 1);
		OCSP_REQUEST_free(req);
		ret = reply_cached(c, r, hit.outcome, "application/ocsp-response", hit.der, hit.len, hit.etag,
				   hit.this_update, hit.next_update, age);
		free(hit.der);
		return ret;
	}
	if (cacheable)
		atomic_fetch_add(&sv->cache_misses, 1);
	generation = atomic_load(&sv->generation);
	if (serve_sign_answer(sv, req, &l, &out, &out_len, &res)) {
		OCSP_REQUEST_free(req);
		return reply_text(c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, OCSP_OUT_INTERNAL, "out of memory\n");
	}
	OCSP_REQUEST_free(req);
	if (res.cacheable && (res.outcome == OCSP_OUT_GOOD || res.outcome == OCSP_OUT_REVOKED)) {
		time_t left = res.next_update - now;
		unsigned age = left < (time_t)sv->sc.max_age ? (unsigned)left : sv->sc.max_age;
		char etag[24];

		serve_cache_put(sv, res.serial, res.outcome, NULL, out, out_len, res.this_update, res.next_update,
				generation);
		serve_etag(out, out_len, etag, sizeof etag);
		ret = reply_cached(c, r, res.outcome, "application/ocsp-response", out, out_len, etag, res.this_update,
				   res.next_update, age);
	} else {
		/* error answers and answers with a nonce: status 200 (RFC 6960 A.1), never cached */
		ret = reply(c, r, MHD_HTTP_OK, res.outcome, "application/ocsp-response", out, out_len);
	}
	OPENSSL_free(out);
	return ret;
}

static enum MHD_Result handle_file(struct server *sv, struct MHD_Connection *c, struct rctx *r, struct pubfile *f)
{
	unsigned char *data = NULL;
	size_t len = 0;
	time_t mtime = 0;
	char etag[40] = "";
	enum MHD_Result ret;

	if (pubfile_get(f, &data, &len, &mtime, etag, sizeof etag))
		return reply_text(c, r, MHD_HTTP_NOT_FOUND, O_NOT_FOUND, "not published yet\n");
	(void)sv;
	ret = reply_cached(c, r, O_OK, f->type, data, len, etag, mtime, 0, 300);
	free(data);
	return ret;
}

static enum MHD_Result handle_health(struct server *sv, struct MHD_Connection *c, struct rctx *r)
{
	bool ok;
	char *body = serve_health_text(sv, &ok);
	enum MHD_Result ret;

	if (!body)
		return reply_text(c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, O_UNAVAILABLE, "out of memory\n");
	ret = reply(c, r, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, ok ? O_OK : O_UNAVAILABLE,
		    "application/json", body, strlen(body));
	free(body);
	return ret;
}

static enum MHD_Result handle_metrics(struct server *sv, struct MHD_Connection *c, struct rctx *r)
{
	size_t len = 0;
	char *text = serve_metrics_text(sv, &len);
	enum MHD_Result ret;

	if (!text)
		return reply_text(c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, O_UNAVAILABLE, "out of memory\n");
	ret = reply(c, r, MHD_HTTP_OK, O_OK, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
	return ret;
}

/* Notes the path part of a URL base (http://host/path), if it has one, as a prefix requests may carry. */
static void add_prefix(struct server *sv, const char *base, size_t len)
{
	const char *host = memmem(base, len, "://", 3), *path;

	if (!host || sv->n_prefixes == sizeof sv->prefixes / sizeof sv->prefixes[0])
		return;
	host += 3;
	path = memchr(host, '/', len - (size_t)(host - base));
	if (!path || (size_t)(base + len - path) <= 1 || (size_t)(base + len - path) >= sizeof sv->prefixes[0])
		return;
	snprintf(sv->prefixes[sv->n_prefixes++], sizeof sv->prefixes[0], "%.*s", (int)(base + len - path), path);
}

/*
 * The URL bases whose paths this responder answers: the CA's url_base and
 * every legacy base (certificates issued before a move keep pointing
 * there), so /pki/crl/X.crl is served as /crl/X.crl.
 */
void serve_url_prefixes(struct server *sv)
{
	char base[300];
	const char *p = sv->ca->conf.legacy_url_bases;

	ca_url_base(&sv->ca->conf, base, sizeof base);
	add_prefix(sv, base, strlen(base));
	while (*p) {
		size_t n = strcspn(p, " ");

		if (n)
			add_prefix(sv, p, n);
		p += n;
		p += strspn(p, " ");
	}
}

/* url with the first URL base prefix it starts with taken off; *prefix: that prefix, or "". */
static const char *strip_prefix(const struct server *sv, const char *url, const char **prefix)
{
	*prefix = "";
	for (size_t i = 0; i < sv->n_prefixes; i++) {
		size_t n = strlen(sv->prefixes[i]);

		if (!strncmp(url, sv->prefixes[i], n) && url[n] == '/') {
			*prefix = sv->prefixes[i];
			return url + n;
		}
	}
	return url;
}

/* ---- the apps (serve_app.h) ---- */

const char *serve_req_header(const struct serve_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *serve_req_arg(const struct serve_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* The app whose prefix path starts with, or -1. */
static int app_for(const struct server *sv, const char *path)
{
	for (size_t i = 0; i < sv->n_apps; i++)
		if (!strncmp(path, serve_apps[i]->prefix, strlen(serve_apps[i]->prefix)))
			return (int)i;
	return -1;
}

/*
 * http://HOST[/prefix] as the client addressed us: its Host header if that
 * is a plain host[:port] (it is the client's own word, used only in
 * answers to that client), else the listen address.
 */
static void base_url(const struct server *sv, struct MHD_Connection *c, const char *prefix, char *out, size_t size)
{
	const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);

	if (!host || !*host || strlen(host) > 255 ||
	    host[strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")])
		host = sv->sc.listen;
	snprintf(out, size, "%s://%s%s", sv->tls.on ? "https" : "http", host, prefix);
}

static void peer_address(struct MHD_Connection *c, char *out, size_t size)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	snprintf(out, size, "unknown");
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)size);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)size);
}

static enum MHD_Result handle_app(struct server *sv, struct MHD_Connection *c, struct rctx *r, const char *path,
				  const char *method, const char *prefix)
{
	char base[300 + 256], remote[INET6_ADDRSTRLEN];
	struct serve_req req = {.method = method,
				.path = path,
				.body = r->body,
				.len = r->len,
				.remote = remote,
				.base = base,
				.conn = c};
	struct serve_resp resp = {0};
	struct MHD_Response *mresp;
	enum MHD_Result ret;

	if (r->too_big)
		return reply_text(c, r, MHD_HTTP_CONTENT_TOO_LARGE, O_TOO_LARGE, "request body too large\n");
	base_url(sv, c, prefix, base, sizeof base);
	peer_address(c, remote, sizeof remote);
	serve_apps[r->app]->handle(sv->app_state[r->app], &req, &resp);
	if (!resp.status || (!resp.body && resp.len)) {
		free(resp.body);
		return reply_text(c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, O_UNAVAILABLE, "internal error\n");
	}
	mresp = MHD_create_response_from_buffer(resp.len, resp.body, MHD_RESPMEM_MUST_FREE);
	if (!mresp) {
		free(resp.body);
		return MHD_NO;
	}
	if (resp.type)
		MHD_add_response_header(mresp, MHD_HTTP_HEADER_CONTENT_TYPE, resp.type);
	for (size_t i = 0; i < resp.n_headers && i < SERVE_RESP_HEADERS; i++)
		MHD_add_response_header(mresp, resp.headers[i].name, resp.headers[i].value);
	r->status = resp.status;
	r->outcome = resp.status < 400 ? O_OK : resp.status < 500 ? O_BAD_REQUEST : O_UNAVAILABLE;
	ret = MHD_queue_response(c, resp.status, mresp);
	MHD_destroy_response(mresp);
	return ret;
}

/* Which publish/ file path names, if any. */
static struct pubfile *pubfile_for(struct server *sv, const char *path, enum endpoint *ep)
{
	char want[CA_NAME_MAX + 16];

	snprintf(want, sizeof want, "/crl/%s.crl", sv->file);
	if (!strcmp(path, want))
		return *ep = EP_CRL, &sv->files[0];
	snprintf(want, sizeof want, "/crl/%s+.crl", sv->file);
	if (!strcmp(path, want))
		return *ep = EP_CRL, &sv->files[1];
	snprintf(want, sizeof want, "/ca/%s.crt", sv->file);
	if (!strcmp(path, want))
		return *ep = EP_CA, &sv->files[2];
	return NULL;
}

enum MHD_Result serve_http_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **ctx)
{
	struct server *sv = cls;
	struct rctx *r = *ctx;
	bool get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
	bool post = !strcmp(method, MHD_HTTP_METHOD_POST);
	struct pubfile *f = NULL;
	const char *prefix;

	(void)version;
	url = strip_prefix(sv, url, &prefix);
	if (!r) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

		if (!(r = calloc(1, sizeof *r)))
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &r->start);
		r->ep = EP_OTHER;
		r->app = app_for(sv, url);
		r->outcome = O_BAD_REQUEST;
		*ctx = r;
		if (cl && strtoull(cl, NULL, 10) > SERVE_BODY_MAX) {
			r->ep = !strncmp(url, "/ocsp", 5) || !strcmp(url, "/") ? EP_OCSP : EP_OTHER;
			return reply_text(c, r, MHD_HTTP_CONTENT_TOO_LARGE, O_TOO_LARGE, "request body too large\n");
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (!r->too_big && r->len + *upload_size <= SERVE_BODY_MAX) {
			unsigned char *b = realloc(r->body, r->len + *upload_size);

			if (!b)
				return MHD_NO;
			memcpy(b + r->len, upload, *upload_size);
			r->body = b;
			r->len += *upload_size;
		} else {
			r->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->app >= 0)
		return handle_app(sv, c, r, url, method, prefix);
	if (!strcmp(url, "/ocsp") || !strcmp(url, "/") || !strncmp(url, "/ocsp/", 6)) {
		r->ep = EP_OCSP;
		if (r->too_big)
			return reply_text(c, r, MHD_HTTP_CONTENT_TOO_LARGE, O_TOO_LARGE, "request body too large\n");
		/* POST to /ocsp or to / (what openssl ocsp -url http://host/ sends) */
		if (post && strncmp(url, "/ocsp/", 6))
			return handle_ocsp(sv, c, r, r->body, r->len);
		if (get && !strncmp(url, "/ocsp/", 6)) {
			unsigned char *der = malloc(OCSP_REQUEST_MAX);
			long n;
			enum MHD_Result ret;

			if (!der)
				return MHD_NO;
			n = ocsp_base64_decode(url + 6, strlen(url + 6), der, OCSP_REQUEST_MAX);
			ret = handle_ocsp(sv, c, r, der, n > 0 ? (size_t)n : 0);
			free(der);
			return ret;
		}
		if (get && !strcmp(url, "/")) {
			r->ep = EP_OTHER;
			return reply_text(c, r, MHD_HTTP_OK, O_OK,
					  "keyward-ca: OCSP at /ocsp, CRLs at /crl/, the CA certificate at /ca/\n");
		}
		return reply_text(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, O_METHOD,
				  "OCSP: POST application/ocsp-request to /ocsp, or GET /ocsp/BASE64\n");
	}
	if (!strcmp(url, "/health") || !strcmp(url, "/metrics") || (f = pubfile_for(sv, url, &r->ep))) {
		if (url[1] == 'h')
			r->ep = EP_HEALTH;
		else if (url[1] == 'm')
			r->ep = EP_METRICS;
		if (!get)
			return reply_text(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, O_METHOD, "GET only\n");
		if (r->ep == EP_HEALTH)
			return handle_health(sv, c, r);
		if (r->ep == EP_METRICS)
			return handle_metrics(sv, c, r);
		return handle_file(sv, c, r, f);
	}
	return reply_text(c, r, MHD_HTTP_NOT_FOUND, O_NOT_FOUND, "not found\n");
}

void serve_http_completed(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe)
{
	struct server *sv = cls;
	struct rctx *r = *ctx;
	struct timespec now;
	double s;
	size_t i;

	(void)c;
	(void)toe;
	if (!r)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	s = (double)(now.tv_sec - r->start.tv_sec) + (double)(now.tv_nsec - r->start.tv_nsec) / 1e9;
	for (i = 0; i < N_BUCKETS && s > serve_latency_buckets[i]; i++)
		;
	atomic_fetch_add(&sv->latency[i], 1);
	atomic_fetch_add(&sv->latency_us_sum, (unsigned long long)(s * 1e6));
	if (r->app >= 0)
		atomic_fetch_add(&sv->app_requests[r->app][r->status < 400   ? SERVE_CLASS_OK
							   : r->status < 500 ? SERVE_CLASS_CLIENT
									     : SERVE_CLASS_SERVER],
				 1);
	else
		atomic_fetch_add(&sv->requests[r->ep][r->outcome], 1);
	free(r->body);
	free(r);
	*ctx = NULL;
}

void serve_http_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	(void)cls;
	vsnprintf(line, sizeof line, fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	kw_log_limited("serve.http", KW_LOG_WARN, "keyward-ca serve: http: %s", line);
}
