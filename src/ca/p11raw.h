/*
 * keyward-ca: a session on the CA's token through the module's own
 * function list (p11raw.c), for key generation and batch signing.
 */
#ifndef KW_CA_P11RAW_H
#define KW_CA_P11RAW_H

#include <p11-kit/pkcs11.h>

#include "ca/ca.h"

struct ca_p11 {
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE s;
	bool initialized; /* this C_Initialize was the module's first: this one finalizes it */
	bool open;
};
/* Loads c's module, finds c's token, opens a session, logs in with pin (NULL: the application's login). */
int ca_p11_open(const struct ca_conf *c, struct ca_p11 *p, const char *pin);
void ca_p11_close(struct ca_p11 *p);
/* ca_error() naming the function and its CK_RV; -1. */
int ca_p11_fail(const char *what, CK_RV rv);

#endif
