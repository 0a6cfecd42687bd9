/*
 * Frames on the wire: a 4-byte big-endian length, then one protobuf-c
 * message (proto/keyward.proto). Works buffer to buffer, so the decoders can
 * be fuzzed without a socket.
 */
#ifndef KW_COMMON_FRAME_H
#define KW_COMMON_FRAME_H

#include <stdbool.h>
#include <stddef.h>

#include <keyward/keyward.h>

#include "keyward.pb-c.h"

/* Largest message body accepted in either direction. */
#define KW_MAX_FRAME (1024u * 1024u)
#define KW_FRAME_HEADER 4u

/*
 * Looks at the bytes received so far. KW_OK with *complete set when a whole
 * frame of *body_len bytes follows the header; KW_ERR_PROTOCOL when the
 * announced length is zero or above max (nothing is allocated for it).
 */
kw_rv kw_frame_peek(const unsigned char *buf, size_t have, size_t max, size_t *body_len, bool *complete);

/* Appends the header and the packed message to out (a kw_buf). */
struct kw_buf;
kw_rv kw_frame_put_request(struct kw_buf *out, const Keyward__Request *req);
kw_rv kw_frame_put_response(struct kw_buf *out, const Keyward__Response *resp);

/*
 * Unpacks one frame body. A request without a body, or with a body this
 * build does not know, is KW_ERR_PROTOCOL. Free with the protobuf-c
 * free_unpacked function.
 */
kw_rv kw_frame_decode_request(const unsigned char *body, size_t len, Keyward__Request **out);
kw_rv kw_frame_decode_response(const unsigned char *body, size_t len, Keyward__Response **out);

#endif
