/*
 * keyward-ca: the keys a token holds, listed with their public keys'
 * fingerprints, so an administrator finds the CA's key among many owners'
 * before the CA exists on a host (the seed's "find the key" step). The
 * module, token and PIN file come from a CA's configuration, or from the
 * defaults on a host without one.
 */
#include "ca/ca.h"

int ca_keys_each(const struct ca_conf *where, int (*fn)(void *arg, const struct ca_key_info *k), void *arg)
{
	struct ca_token *token = NULL;
	int rc = ca_token_open(where, &token);

	if (!rc)
		rc = ca_token_each_key(token, fn, arg);
	ca_token_close(token);
	return rc;
}
