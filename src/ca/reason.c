/*
 * keyward-ca: CRL reason codes (RFC 5280 5.3.1) and their names, as
 * revoke takes them and list and CRLs show them.
 */
#include <string.h>

#include "ca/ca.h"

static const char *const reasons[] = {"unspecified",	    "keyCompromise",	    "cACompromise",
				      "affiliationChanged", "superseded",	    "cessationOfOperation",
				      "certificateHold",    NULL /* 7 is unused */, "removeFromCRL",
				      "privilegeWithdrawn", "aACompromise"};

int ca_reason_code(const char *name)
{
	for (int i = 0; i < (int)(sizeof reasons / sizeof reasons[0]); i++)
		if (reasons[i] && i != 8 && !strcmp(reasons[i], name))
			return i;
	return -1;
}

const char *ca_reason_name(int code)
{
	if (code < 0 || code >= (int)(sizeof reasons / sizeof reasons[0]) || !reasons[code])
		return "?";
	return reasons[code];
}
