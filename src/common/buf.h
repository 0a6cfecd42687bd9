/*
 * Growable byte buffers with a hard cap. Every buffer that fills from the
 * network or a file has a maximum, checked before it grows.
 */
#ifndef KW_COMMON_BUF_H
#define KW_COMMON_BUF_H

#include <stddef.h>

#include <keyward/keyward.h>

struct kw_buf {
	unsigned char *data;
	size_t len;
	size_t cap;
	size_t max;
};

void kw_buf_init(struct kw_buf *b, size_t max);
/* Frees; wipes first, since buffers may have carried secrets. */
void kw_buf_cleanup(struct kw_buf *b);
/* Room for `extra` more bytes; KW_ERR_DATA_LEN past max. */
kw_rv kw_buf_reserve(struct kw_buf *b, size_t extra);
kw_rv kw_buf_append(struct kw_buf *b, const void *data, size_t len);
/* Drops the first n bytes. */
void kw_buf_consume(struct kw_buf *b, size_t n);

#endif
