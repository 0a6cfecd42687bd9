/* Capped byte buffers (see buf.h). */
#include "common/buf.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

void kw_buf_init(struct kw_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void kw_buf_cleanup(struct kw_buf *b)
{
	if (b->data) {
		OPENSSL_cleanse(b->data, b->cap);
		free(b->data);
	}
	b->data = NULL;
	b->len = b->cap = 0;
}

kw_rv kw_buf_reserve(struct kw_buf *b, size_t extra)
{
	size_t need, cap;
	unsigned char *p;

	if (extra > b->max || b->len > b->max - extra)
		return KW_ERR_DATA_LEN;
	need = b->len + extra;
	if (need <= b->cap)
		return KW_OK;
	cap = b->cap ? b->cap : 4096;
	while (cap < need)
		cap *= 2;
	if (cap > b->max)
		cap = b->max;
	p = malloc(cap);
	if (!p)
		return KW_ERR_NO_MEMORY;
	/* copy, then wipe the old block: realloc would leave its bytes behind */
	if (b->data) {
		memcpy(p, b->data, b->len);
		OPENSSL_cleanse(b->data, b->cap);
		free(b->data);
	}
	b->data = p;
	b->cap = cap;
	return KW_OK;
}

kw_rv kw_buf_append(struct kw_buf *b, const void *data, size_t len)
{
	kw_rv rv = kw_buf_reserve(b, len);

	if (rv)
		return rv;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return KW_OK;
}

void kw_buf_consume(struct kw_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}
