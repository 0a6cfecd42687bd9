/*
 * Filling in an app's answer (serve_app.h): the helpers every app uses, so
 * that none builds headers or copies bodies its own way.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/serve_app.h"

int serve_resp_header(struct serve_resp *r, const char *name, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->n_headers == SERVE_RESP_HEADERS || strlen(name) >= sizeof r->headers[0].name)
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(r->headers[r->n_headers].value, sizeof r->headers[0].value, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof r->headers[0].value)
		return -1;
	snprintf(r->headers[r->n_headers].name, sizeof r->headers[0].name, "%s", name);
	r->n_headers++;
	return 0;
}

int serve_resp_set(struct serve_resp *r, unsigned status, const char *type, const void *body, size_t len)
{
	unsigned char *copy = malloc(len ? len : 1);

	free(r->body);
	r->body = NULL;
	r->len = 0;
	if (!copy) {
		r->status = 500;
		r->type = NULL;
		return -1;
	}
	if (len)
		memcpy(copy, body, len);
	r->status = status;
	r->type = type;
	r->body = copy;
	r->len = len;
	return 0;
}
