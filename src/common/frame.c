/* Frame encoding and decoding (see frame.h). */
#include "common/frame.h"

#include "common/buf.h"

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

kw_rv kw_frame_peek(const unsigned char *buf, size_t have, size_t max, size_t *body_len, bool *complete)
{
	uint32_t len;

	*complete = false;
	if (have < KW_FRAME_HEADER)
		return KW_OK;
	len = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	if (len == 0 || len > max)
		return KW_ERR_PROTOCOL;
	*body_len = len;
	*complete = have - KW_FRAME_HEADER >= len;
	return KW_OK;
}

static kw_rv put_message(struct kw_buf *out, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	kw_rv rv;

	if (len == 0 || len > KW_MAX_FRAME)
		return KW_ERR_DATA_LEN;
	rv = kw_buf_reserve(out, KW_FRAME_HEADER + len);
	if (rv)
		return rv;
	put_be32(out->data + out->len, (uint32_t)len);
	protobuf_c_message_pack(msg, out->data + out->len + KW_FRAME_HEADER);
	out->len += KW_FRAME_HEADER + len;
	return KW_OK;
}

kw_rv kw_frame_put_request(struct kw_buf *out, const Keyward__Request *req)
{
	return put_message(out, &req->base);
}

kw_rv kw_frame_put_response(struct kw_buf *out, const Keyward__Response *resp)
{
	return put_message(out, &resp->base);
}

kw_rv kw_frame_decode_request(const unsigned char *body, size_t len, Keyward__Request **out)
{
	Keyward__Request *req;

	*out = NULL;
	if (len == 0 || len > KW_MAX_FRAME)
		return KW_ERR_PROTOCOL;
	req = keyward__request__unpack(NULL, len, body);
	if (!req)
		return KW_ERR_PROTOCOL;
	/* unknown oneof members are skipped by protobuf-c, leaving no body */
	if (req->body_case == KEYWARD__REQUEST__BODY__NOT_SET) {
		keyward__request__free_unpacked(req, NULL);
		return KW_ERR_PROTOCOL;
	}
	*out = req;
	return KW_OK;
}

kw_rv kw_frame_decode_response(const unsigned char *body, size_t len, Keyward__Response **out)
{
	Keyward__Response *resp;

	*out = NULL;
	if (len == 0 || len > KW_MAX_FRAME)
		return KW_ERR_PROTOCOL;
	resp = keyward__response__unpack(NULL, len, body);
	if (!resp)
		return KW_ERR_PROTOCOL;
	*out = resp;
	return KW_OK;
}
