/*
 * keyward-ca-keyfilter.so: a PKCS#11 module that passes every call to the
 * CA's real module, except that object searches leave out the keys libp11
 * cannot use.
 *
 * libp11 0.4.12 (Debian 12) fails PKCS11_enumerate_keys as a whole when a
 * token holds one key of a type it does not know (an Ed25519 key,
 * CKK_EC_EDWARDS, which PKCS#11 3.0 defines): one unusual key anywhere in
 * the CA's token would stop the CA. keyward-ca loads its module through
 * this filter (token.c), which hides from C_FindObjects every public or
 * private key that is neither CKK_RSA nor CKK_EC, the two key types the CA
 * signs with. Nothing else changes: the CA only reads and signs.
 *
 * The real module is named by the environment variable
 * KEYWARD_CA_PKCS11_MODULE, which token.c sets before libp11 loads this
 * filter. Exports C_GetFunctionList only.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#define KW_KEYFILTER_ENV "KEYWARD_CA_PKCS11_MODULE"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static CK_FUNCTION_LIST_PTR real;    /* the real module's list */
static CK_FUNCTION_LIST filtered;    /* a copy, with C_FindObjects replaced */

/* Whether libp11 can use object h: anything but a key of another type than RSA or EC. */
static int usable(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
	CK_OBJECT_CLASS cls = 0;
	CK_KEY_TYPE type = 0;
	CK_ATTRIBUTE a[] = {{CKA_CLASS, &cls, sizeof cls}};
	CK_ATTRIBUTE k[] = {{CKA_KEY_TYPE, &type, sizeof type}};

	if (real->C_GetAttributeValue(s, h, a, 1) != CKR_OK)
		return 1; /* not ours to judge: libp11 sees it as before */
	if (cls != CKO_PUBLIC_KEY && cls != CKO_PRIVATE_KEY)
		return 1;
	if (real->C_GetAttributeValue(s, h, k, 1) != CKR_OK)
		return 0;
	return type == CKK_RSA || type == CKK_EC;
}

static CK_RV filter_find_objects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count)
{
	CK_ULONG n = 0;

	if (!out || !count)
		return real->C_FindObjects(s, out, max, count);
	/* one at a time from the real module, keeping those libp11 can use, until max or the end */
	while (n < max) {
		CK_OBJECT_HANDLE h;
		CK_ULONG got = 0;
		CK_RV rv = real->C_FindObjects(s, &h, 1, &got);

		if (rv != CKR_OK)
			return rv;
		if (!got)
			break;
		if (usable(s, h))
			out[n++] = h;
	}
	*count = n;
	return CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	const char *path = getenv(KW_KEYFILTER_ENV);
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	CK_FUNCTION_LIST_PTR l = NULL;
	void *dl;
	CK_RV rv;

	if (!list)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&lock);
	if (real) {
		*list = &filtered;
		pthread_mutex_unlock(&lock);
		return CKR_OK;
	}
	rv = CKR_GENERAL_ERROR;
	/* kept loaded for the life of the process, as libp11 keeps this filter */
	if (path && *path && (dl = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
		*(void **)&get = dlsym(dl, "C_GetFunctionList");
		if (get && get(&l) == CKR_OK && l) {
			real = l;
			filtered = *l;
			filtered.C_GetFunctionList = C_GetFunctionList;
			filtered.C_FindObjects = filter_find_objects;
			*list = &filtered;
			rv = CKR_OK;
		}
	}
	pthread_mutex_unlock(&lock);
	return rv;
}
