/*
 * An application mounted in keyward-ca serve (CMP, ACME): it owns every
 * path under its prefix. serve reads the whole request body (up to
 * SERVE_BODY_MAX; larger is refused before the app sees it), calls
 * handle on an HTTP worker thread (several run at once: the app locks
 * its own state), sends what handle filled in, and counts it in
 * /metrics under the app's name by status class.
 */
#ifndef KW_CA_SERVE_APP_H
#define KW_CA_SERVE_APP_H

#include <pthread.h>
#include <stddef.h>

#include "ca/ca.h"
#include "ca/serve.h"

/* What an app may use while serve runs; valid from open to close. */
struct serve_env {
	const char *dir;	     /* the CA directory */
	const struct serve_conf *sc; /* serve.conf */
	struct ca *ca;		     /* the CA, opened with its certificate and key ... */
	pthread_mutex_t *ca_lock;    /* ... held around every call that takes ca (serve's CRL thread shares it) */
};

struct serve_req {
	const char *method; /* GET, HEAD, POST, ... */
	const char *path;   /* the URL's path, the URL base's path prefix taken off: starts with the app's prefix */
	const unsigned char *body;
	size_t len;
	const char *remote; /* the peer's address as text */
	const char *base;   /* http://HOST[:PORT][/prefix] as the client addressed serve (its Host header) */
	void *conn;	    /* serve's, for serve_req_header */
};

/* A request header's value (name case-insensitive), or NULL. */
const char *serve_req_header(const struct serve_req *r, const char *name);
/* A query argument's value (?name=value, decoded), or NULL. */
const char *serve_req_arg(const struct serve_req *r, const char *name);

#define SERVE_RESP_HEADERS 8
struct serve_resp {
	unsigned status;     /* HTTP status; 0 means 500 */
	const char *type;    /* Content-Type, a string that outlives the call */
	unsigned char *body; /* malloc()ed by the app, freed by serve */
	size_t len;
	size_t n_headers;
	struct {
		char name[40];
		char value[1024];
	} headers[SERVE_RESP_HEADERS];
};

/* Adds a header (Location, Replay-Nonce, Link, Cache-Control, ...): 0, or -1 if full or too long. */
int serve_resp_header(struct serve_resp *r, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sets status, type and a copy of len bytes of body: 0, or -1 out of memory (status then 500). */
int serve_resp_set(struct serve_resp *r, unsigned status, const char *type, const void *body, size_t len);

struct serve_app {
	const char *name;   /* in /metrics and the log: "cmp", "acme" */
	const char *prefix; /* the paths it owns: "/.well-known/cmp/" */
	/* Before serve listens: 0, or -1 with ca_error() and serve does not start. */
	int (*open)(const struct serve_env *env, void **state);
	void (*handle)(void *state, const struct serve_req *req, struct serve_resp *resp);
	/* After the HTTP threads stopped. */
	void (*close)(void *state);
};

/* The apps serve mounts (serve_apps.c), NULL-terminated. */
extern const struct serve_app *const serve_apps[];

#endif
