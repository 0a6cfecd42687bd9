/*
 * keyward-pkcs11.so's vendor interface "Keyward Batch": many signatures
 * with one key in one HSM round trip, for PKCS#11 callers with many
 * signatures to make (a CA's issuance, CRL and OCSP pre-signing).
 *
 * Reach it with PKCS#11 3.0's C_GetInterface, exported by the module:
 *
 *     CK_INTERFACE_PTR itf;
 *     CK_C_GetInterface get = (CK_C_GetInterface)dlsym(module, "C_GetInterface");
 *     if (get && get((CK_UTF8CHAR_PTR)KW_P11_BATCH_INTERFACE, NULL, &itf, 0) == CKR_OK) {
 *         CK_KW_BATCH_FUNCTION_LIST *batch = itf->pFunctionList;
 *         ... batch->C_KW_SignBatch(...) ...
 *     }
 *
 * A module without the interface (any other HSM) has no C_GetInterface, or
 * answers CKR_ARGUMENTS_BAD for this name: fall back to C_Sign, from
 * several threads at once. The standard interface "PKCS 11" (version 3.0,
 * a CK_FUNCTION_LIST_3_0, or 2.40, the CK_FUNCTION_LIST C_GetFunctionList
 * returns): C_Initialize and C_Login through it come first.
 *
 * Include after a pkcs11.h (p11-kit's). p11-kit 0.24's header predates
 * PKCS#11 3.0: <keyward/pkcs11-3.0.h> declares the 3.0 interface types
 * unless the header has them.
 */
#ifndef KEYWARD_PKCS11_BATCH_H
#define KEYWARD_PKCS11_BATCH_H

#include <keyward/pkcs11-3.0.h> /* CK_INTERFACE and C_GetInterface */

/* The interface's name, and its version (CK_KW_BATCH_FUNCTION_LIST.version). */
#define KW_P11_BATCH_INTERFACE "Keyward Batch"
#define KW_P11_BATCH_VERSION_MAJOR 1
#define KW_P11_BATCH_VERSION_MINOR 0
/* The most signatures one C_KW_SignBatch makes (the HSM's SignBatch cap). */
#define KW_P11_BATCH_MAX 256

/*
 * C_KW_SignBatch: count signatures with key under mechanism (any signing
 * mechanism C_SignInit accepts for the key, with the same parameters).
 * data[i] (data_lens[i] bytes) is what one C_Sign would be given: the
 * message for the hash-and-sign mechanisms (hashed in the module), the
 * digest for CKM_ECDSA and CKM_RSA_PKCS_PSS, the DigestInfo for
 * CKM_RSA_PKCS, the message for CKM_EDDSA. sigs[i] receives the i-th
 * signature, in C_Sign's form; sig_lens[i] gives its buffer's size and
 * receives the signature's length.
 *
 * The length query works as in C_Sign: with sigs NULL every sig_lens[i] is
 * set and CKR_OK returned, nothing is signed; a buffer too small answers
 * CKR_BUFFER_TOO_SMALL with every sig_lens[i] set. 1 to KW_P11_BATCH_MAX
 * elements, else CKR_ARGUMENTS_BAD. All or nothing: on any error no
 * signature is made or returned. The session needs no operation active and
 * is left as it was (the batch uses no C_SignInit state); the user must be
 * logged in. Sessions may call concurrently: each call is one request to
 * the HSM, made without the module's lock.
 */
typedef CK_RV (*CK_KW_SignBatch)(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key,
				 CK_ULONG count, CK_BYTE_PTR const *data, const CK_ULONG *data_lens, CK_BYTE_PTR const *sigs,
				 CK_ULONG_PTR sig_lens);

typedef struct CK_KW_BATCH_FUNCTION_LIST {
	CK_VERSION version; /* KW_P11_BATCH_VERSION_MAJOR.MINOR */
	CK_KW_SignBatch C_KW_SignBatch;
} CK_KW_BATCH_FUNCTION_LIST;

#endif
