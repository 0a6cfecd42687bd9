/*
 * kw_sign_batch: many signatures with one key in one SignBatch request,
 * so a caller with many digests (a CA issuing, a CRL or OCSP pre-signer)
 * pays one loopback round trip per batch, not per signature. The request
 * goes through kw_client_call like every other (pool, failover, retry);
 * callers that want the HSM's cores busy call from several threads.
 */
#include "client/client.h"

#include <string.h>

#include "common/error.h"
#include "common/frame.h"

/* room for the request's fields besides the data, and each element's tag and length */
#define BATCH_OVERHEAD 4096u
#define ELEMENT_OVERHEAD 16u

kw_rv kw_sign_batch(kw_client *c, uint64_t key_id, const struct kw_mechanism *m, size_t n,
		    const unsigned char *const data[], const size_t data_lens[], unsigned char *const sigs[],
		    size_t sig_lens[])
{
	static const char fn[] = "signing a batch";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__SignBatch b = KEYWARD__SIGN_BATCH__INIT;
	Keyward__Sign params = KEYWARD__SIGN__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	Keyward__Response *resp = NULL;
	ProtobufCBinaryData elems[KW_SIGN_BATCH_MAX];
	const Keyward__SignatureBatch *out;
	size_t total = BATCH_OVERHEAD;
	kw_rv rv;

	if (!c)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: client is NULL", fn);
	if ((rv = kw_mechanism_check(fn, m)))
		return rv;
	if (!key_id)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: key id 0 names no key", fn);
	if (n == 0 || n > KW_SIGN_BATCH_MAX)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: %zu elements, give 1 to %d", fn, n, KW_SIGN_BATCH_MAX);
	if (!data || !data_lens || !sigs || !sig_lens)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: data, data_lens, sigs and sig_lens are all needed", fn);
	for (size_t i = 0; i < n; i++) {
		if (!data[i] && data_lens[i])
			return kw_error_set(KW_ERR_ARGUMENTS, "%s: element %zu: data is NULL", fn, i);
		if (!sigs[i])
			return kw_error_set(KW_ERR_ARGUMENTS, "%s: element %zu: no signature buffer", fn, i);
		if (data_lens[i] > KW_MAX_FRAME)
			return kw_error_set(KW_ERR_DATA_LEN, "%s: element %zu is %zu bytes, the batch at most %u", fn,
					    i, data_lens[i], KW_MAX_FRAME - BATCH_OVERHEAD);
		total += data_lens[i] + ELEMENT_OVERHEAD;
		if (total > KW_MAX_FRAME)
			return kw_error_set(KW_ERR_DATA_LEN,
					    "%s: elements 0 to %zu add up to more than one request carries (%u "
					    "bytes): split the batch",
					    fn, i, KW_MAX_FRAME - BATCH_OVERHEAD);
		elems[i].data = (uint8_t *)data[i];
		elems[i].len = data_lens[i];
	}
	kw_sign_request_init(&params, &ref, key_id, m);
	b.sign = &params;
	b.data = elems;
	b.n_data = n;
	req.body_case = KEYWARD__REQUEST__BODY_SIGN_BATCH;
	req.sign_batch = &b;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_SIGNATURE_BATCH, &resp);
	if (rv)
		return rv;
	out = resp->signature_batch;
	if (out->n_signatures != n) {
		rv = kw_error_set(KW_ERR_PROTOCOL, "%s: asked for %zu signatures, the HSM answered %zu", fn, n,
				  out->n_signatures);
		goto out;
	}
	/* every buffer checked before any is written: all or nothing here too */
	for (size_t i = 0; i < n; i++) {
		if (sig_lens[i] < out->signatures[i].len) {
			rv = kw_error_set(KW_ERR_DATA_LEN, "%s: element %zu: the signature needs %zu bytes, the buffer has %zu",
					  fn, i, out->signatures[i].len, sig_lens[i]);
			for (size_t j = 0; j < n; j++)
				sig_lens[j] = out->signatures[j].len;
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(sigs[i], out->signatures[i].data, out->signatures[i].len);
		sig_lens[i] = out->signatures[i].len;
	}
out:
	keyward__response__free_unpacked(resp, NULL);
	return rv;
}
