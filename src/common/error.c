/*
 * The one error enum: names, short texts, PKCS#11 codes, and the calling
 * thread's last message. Every boundary (wire, PKCS#11, exit code) maps
 * from here, so a status means the same thing everywhere.
 */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>

#include <openssl/err.h>
#include <p11-kit/pkcs11.h>

struct rv_entry {
	const char *name;
	const char *text;
	unsigned long ckr;
};

static const struct rv_entry rv_table[KW_RV_COUNT] = {
	[KW_OK] = {"KW_OK", "success", CKR_OK},
	[KW_ERR_GENERAL] = {"KW_ERR_GENERAL", "internal error", CKR_GENERAL_ERROR},
	[KW_ERR_NO_MEMORY] = {"KW_ERR_NO_MEMORY", "out of memory", CKR_HOST_MEMORY},
	[KW_ERR_ARGUMENTS] = {"KW_ERR_ARGUMENTS", "invalid arguments", CKR_ARGUMENTS_BAD},
	[KW_ERR_PROTOCOL] = {"KW_ERR_PROTOCOL", "protocol error", CKR_DEVICE_ERROR},
	[KW_ERR_VERSION] = {"KW_ERR_VERSION", "unsupported protocol version", CKR_DEVICE_ERROR},
	[KW_ERR_NETWORK] = {"KW_ERR_NETWORK", "network error", CKR_DEVICE_ERROR},
	[KW_ERR_TIMEOUT] = {"KW_ERR_TIMEOUT", "timed out", CKR_DEVICE_ERROR},
	[KW_ERR_UNREACHABLE] = {"KW_ERR_UNREACHABLE", "no HSM reachable", CKR_DEVICE_ERROR},
	[KW_ERR_AUTH] = {"KW_ERR_AUTH", "authentication failed", CKR_PIN_INCORRECT},
	[KW_ERR_LOCKED_OUT] = {"KW_ERR_LOCKED_OUT", "credential locked after repeated failures", CKR_PIN_LOCKED},
	[KW_ERR_PERMISSION] = {"KW_ERR_PERMISSION", "not permitted", CKR_ACTION_PROHIBITED},
	/* not CKR_USER_NOT_LOGGED_IN: the user is logged in, the HSM waits for its administrator */
	[KW_ERR_STORE_LOCKED] = {"KW_ERR_STORE_LOCKED", "HSM is locked (keyward-admin unlock)", CKR_DEVICE_ERROR},
	[KW_ERR_NOT_INITIALIZED] = {"KW_ERR_NOT_INITIALIZED", "HSM is not initialized", CKR_TOKEN_NOT_RECOGNIZED},
	[KW_ERR_ALREADY_INITIALIZED] = {"KW_ERR_ALREADY_INITIALIZED", "HSM is already initialized", CKR_FUNCTION_FAILED},
	[KW_ERR_NOT_FOUND] = {"KW_ERR_NOT_FOUND", "object not found", CKR_OBJECT_HANDLE_INVALID},
	[KW_ERR_EXISTS] = {"KW_ERR_EXISTS", "object already exists", CKR_FUNCTION_FAILED},
	[KW_ERR_NOT_MODIFIABLE] = {"KW_ERR_NOT_MODIFIABLE", "object is not modifiable", CKR_ATTRIBUTE_READ_ONLY},
	[KW_ERR_UNEXTRACTABLE] = {"KW_ERR_UNEXTRACTABLE", "key is not extractable", CKR_KEY_UNEXTRACTABLE},
	[KW_ERR_SENSITIVE] = {"KW_ERR_SENSITIVE", "attribute is sensitive", CKR_ATTRIBUTE_SENSITIVE},
	[KW_ERR_ATTRIBUTE_VALUE] = {"KW_ERR_ATTRIBUTE_VALUE", "attribute value not allowed", CKR_ATTRIBUTE_VALUE_INVALID},
	[KW_ERR_MECHANISM] = {"KW_ERR_MECHANISM", "mechanism not supported", CKR_MECHANISM_INVALID},
	[KW_ERR_MECHANISM_PARAM] = {"KW_ERR_MECHANISM_PARAM", "bad mechanism parameter", CKR_MECHANISM_PARAM_INVALID},
	[KW_ERR_KEY_TYPE] = {"KW_ERR_KEY_TYPE", "wrong key type for this operation", CKR_KEY_TYPE_INCONSISTENT},
	[KW_ERR_KEY_SIZE] = {"KW_ERR_KEY_SIZE", "key size not supported", CKR_KEY_SIZE_RANGE},
	[KW_ERR_KEY_FUNCTION] = {"KW_ERR_KEY_FUNCTION", "key usage does not permit this", CKR_KEY_FUNCTION_NOT_PERMITTED},
	[KW_ERR_DATA_LEN] = {"KW_ERR_DATA_LEN", "data length out of range", CKR_DATA_LEN_RANGE},
	[KW_ERR_ENCRYPTED_DATA] = {"KW_ERR_ENCRYPTED_DATA", "encrypted data invalid", CKR_ENCRYPTED_DATA_INVALID},
	[KW_ERR_TAMPERED] = {"KW_ERR_TAMPERED", "stored object was tampered with", CKR_DEVICE_ERROR},
	[KW_ERR_STORE] = {"KW_ERR_STORE", "key store error", CKR_DEVICE_ERROR},
	[KW_ERR_STORE_FULL] = {"KW_ERR_STORE_FULL", "key store is full", CKR_DEVICE_MEMORY},
	[KW_ERR_BUSY] = {"KW_ERR_BUSY", "server busy", CKR_FUNCTION_FAILED},
	[KW_ERR_CONFIG] = {"KW_ERR_CONFIG", "configuration error", CKR_GENERAL_ERROR},
	[KW_ERR_CRYPTO] = {"KW_ERR_CRYPTO", "cryptographic operation failed", CKR_FUNCTION_FAILED},
	[KW_ERR_SIGNATURE_INVALID] = {"KW_ERR_SIGNATURE_INVALID", "signature invalid", CKR_SIGNATURE_INVALID},
};

static _Thread_local char last_error[1024];

static const struct rv_entry *rv_entry(kw_rv rv)
{
	if ((unsigned)rv >= KW_RV_COUNT)
		return &rv_table[KW_ERR_GENERAL];
	return &rv_table[rv];
}

const char *kw_rv_name(kw_rv rv)
{
	return rv_entry(rv)->name;
}

const char *kw_rv_text(kw_rv rv)
{
	return rv_entry(rv)->text;
}

unsigned long kw_rv_to_ckr(kw_rv rv)
{
	return rv_entry(rv)->ckr;
}

const char *kw_last_error(void)
{
	return last_error;
}

kw_rv kw_error_set(kw_rv rv, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof last_error, fmt, ap);
	va_end(ap);
	return rv;
}

kw_rv kw_error_openssl(kw_rv rv, const char *fmt, ...)
{
	char what[512], reason[256] = "";
	unsigned long e = ERR_peek_last_error();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (e)
		ERR_error_string_n(e, reason, sizeof reason);
	ERR_clear_error();
	return kw_error_set(rv, "%s%s%s", what, reason[0] ? ": " : "", reason);
}

void kw_error_clear(void)
{
	last_error[0] = '\0';
}
