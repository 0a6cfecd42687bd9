/*
 * keyward-pkcs11.so: PKCS#11 3.0 interfaces. C_GetInterfaceList and
 * C_GetInterface offer the standard interface "PKCS 11" in version 3.0 (a
 * CK_FUNCTION_LIST_3_0, the default) and 2.40 (the function list
 * C_GetFunctionList returns), and the vendor interface
 * "Keyward Batch" (include/keyward/pkcs11-batch.h): C_KW_SignBatch, many
 * signatures with one key in one HSM request (kw_sign_batch).
 *
 * C_KW_SignBatch checks everything C_SignInit and C_Sign would (key,
 * mechanism and its parameters, usage, login, buffer sizes) under the
 * module's lock, on a private operation that leaves the session's own
 * sign state alone, hashes here for the hash-and-sign mechanisms, and
 * makes the HSM request with the lock released, as C_Sign does.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "p11.h"

#include <keyward/pkcs11-batch.h>

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count);
CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version, CK_INTERFACE_PTR_PTR out, CK_FLAGS flags);

/* The digests of a batch, or its raw elements, as handed to the HSM. */
struct batch_input {
	const unsigned char *data[KW_P11_BATCH_MAX];
	size_t lens[KW_P11_BATCH_MAX];
	unsigned char *digests; /* count * EVP_MAX_MD_SIZE when hashed here */
};

/* Hashes each element with md, or points at it as it is (bounded as C_Sign bounds raw data). */
static CK_RV batch_prepare(const EVP_MD *md, CK_ULONG count, CK_BYTE_PTR const *data, const CK_ULONG *data_lens,
			   struct batch_input *in)
{
	if (md && !(in->digests = malloc(count * EVP_MAX_MD_SIZE)))
		return CKR_HOST_MEMORY;
	for (CK_ULONG i = 0; i < count; i++) {
		unsigned n = 0;

		if (!md) {
			if (data_lens[i] > P11_RAW_DATA_MAX)
				return CKR_DATA_LEN_RANGE;
			in->data[i] = data[i];
			in->lens[i] = data_lens[i];
			continue;
		}
		in->data[i] = in->digests + i * EVP_MAX_MD_SIZE;
		if (EVP_Digest(data[i], data_lens[i], in->digests + i * EVP_MAX_MD_SIZE, &n, md, NULL) != 1)
			return CKR_FUNCTION_FAILED;
		in->lens[i] = n;
	}
	return CKR_OK;
}

static CK_RV kw_c_sign_batch(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key, CK_ULONG count,
			     CK_BYTE_PTR const *data, const CK_ULONG *data_lens, CK_BYTE_PTR const *sigs,
			     CK_ULONG_PTR sig_lens)
{
	struct batch_input *in = NULL;
	size_t out_lens[KW_P11_BATCH_MAX];
	struct kw_mechanism kwm;
	struct p11_op op = {0};
	const EVP_MD *md;
	uint64_t key_id;
	kw_client *c;
	CK_RV rv = CKR_OK;
	kw_rv krv;

	pthread_mutex_lock(&p11.lock);
	if (!p11.initialized || p11.pid != getpid()) {
		pthread_mutex_unlock(&p11.lock);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	if (!m || count == 0 || count > KW_P11_BATCH_MAX || !data || !data_lens || !sig_lens)
		rv = CKR_ARGUMENTS_BAD;
	for (CK_ULONG i = 0; !rv && i < count; i++)
		if (!data[i] && data_lens[i])
			rv = CKR_ARGUMENTS_BAD;
	if (!rv && !p11_session_get_locked(h))
		rv = CKR_SESSION_HANDLE_INVALID;
	if (!rv && !p11.logged_in)
		rv = CKR_USER_NOT_LOGGED_IN;
	if (!rv)
		rv = p11_op_init_locked(p11_session_get_locked(h), &op, 0, m, key);
	if (rv) {
		pthread_mutex_unlock(&p11.lock);
		return rv;
	}
	/* the length query, and buffers too small: every length set, nothing signed */
	for (CK_ULONG i = 0; i < count && sigs; i++)
		if (!sigs[i] || sig_lens[i] < op.sig_len)
			rv = sigs[i] ? CKR_BUFFER_TOO_SMALL : CKR_ARGUMENTS_BAD;
	if (!sigs || rv == CKR_BUFFER_TOO_SMALL)
		for (CK_ULONG i = 0; i < count; i++)
			sig_lens[i] = op.sig_len;
	kwm = op.kwm;
	key_id = op.key_id;
	md = op.md;
	c = p11.client;
	p11_op_cleanup(&op);
	pthread_mutex_unlock(&p11.lock);
	if (rv || !sigs)
		return rv;

	/* the HSM request runs unlocked: sessions sign concurrently */
	if (!(in = calloc(1, sizeof *in)))
		return CKR_HOST_MEMORY;
	rv = batch_prepare(md, count, data, data_lens, in);
	if (rv)
		goto out;
	for (CK_ULONG i = 0; i < count; i++)
		out_lens[i] = sig_lens[i];
	krv = kw_sign_batch(c, key_id, &kwm, count, in->data, in->lens, (unsigned char *const *)sigs, out_lens);
	if (krv) {
		rv = p11_ckr(krv, "signing a batch");
		goto out;
	}
	for (CK_ULONG i = 0; i < count; i++)
		sig_lens[i] = out_lens[i];
out:
	if (in->digests) {
		OPENSSL_cleanse(in->digests, count * EVP_MAX_MD_SIZE);
		free(in->digests);
	}
	free(in);
	return rv;
}

static CK_KW_BATCH_FUNCTION_LIST batch_list = {
	.version = {KW_P11_BATCH_VERSION_MAJOR, KW_P11_BATCH_VERSION_MINOR},
	.C_KW_SignBatch = kw_c_sign_batch,
};

/* In the order C_GetInterface prefers them: the newest standard list is the default. */
static CK_INTERFACE interfaces[3] = {
	{(CK_CHAR *)"PKCS 11", NULL, 0}, /* 3.0 */
	{(CK_CHAR *)"PKCS 11", NULL, 0}, /* 2.40 */
	{(CK_CHAR *)KW_P11_BATCH_INTERFACE, &batch_list, 0},
};
#define N_INTERFACES (sizeof interfaces / sizeof interfaces[0])

static pthread_once_t interfaces_once = PTHREAD_ONCE_INIT;

/* The standard interfaces' function lists are module.c's (not the export's: see p11_function_list). */
static void interfaces_init(void)
{
	interfaces[0].pFunctionList = p11_function_list_3_0();
	interfaces[1].pFunctionList = p11_function_list();
}

static void interfaces_fill(void)
{
	pthread_once(&interfaces_once, interfaces_init);
}

CK_RV p11_get_interface_list(CK_INTERFACE_PTR list, CK_ULONG_PTR count)
{
	if (!count)
		return CKR_ARGUMENTS_BAD;
	interfaces_fill();
	if (!list) {
		*count = N_INTERFACES;
		return CKR_OK;
	}
	if (*count < N_INTERFACES) {
		*count = N_INTERFACES;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(list, interfaces, sizeof interfaces);
	*count = N_INTERFACES;
	return CKR_OK;
}

/* The first interface that matches: with no name or version asked for, "PKCS 11" 3.0. */
CK_RV p11_get_interface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version, CK_INTERFACE_PTR_PTR out, CK_FLAGS flags)
{
	if (!out)
		return CKR_ARGUMENTS_BAD;
	interfaces_fill();
	for (size_t i = 0; i < N_INTERFACES; i++) {
		const CK_VERSION *v = interfaces[i].pFunctionList; /* every list opens with its version */

		if (name && strcmp((const char *)name, (const char *)interfaces[i].pInterfaceName) != 0)
			continue;
		if (version && (version->major != v->major || version->minor != v->minor))
			continue;
		/* no interface here is fork-safe in PKCS#11's sense (a child must C_Initialize again) */
		if (flags & ~interfaces[i].flags)
			continue;
		*out = &interfaces[i];
		return CKR_OK;
	}
	return CKR_ARGUMENTS_BAD;
}

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count)
{
	return p11_get_interface_list(list, count);
}

CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version, CK_INTERFACE_PTR_PTR out, CK_FLAGS flags)
{
	return p11_get_interface(name, version, out, flags);
}
