/*
 * keyward-ca cmp-secret TEMPLATE [--remove]: a template's CMP shared secret,
 * made anew (printed this once: the CA keeps it sealed by its token) or
 * removed, after which the template takes no MAC-protected CMP requests.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ca/cli/cli.h"

int cmd_cmp_secret(const struct opts *o, const char *tmpl)
{
	struct ca *ca = NULL;
	char secret[128];
	bool removed = false;
	int rc = -1;

	if (cli_open(o, CA_OPEN_CERT, &ca))
		goto out;
	if (o->remove) {
		if ((rc = ca_cmp_secret_remove(ca, tmpl, &removed)) == 0)
			printf(removed ? "template %s: CMP secret removed\n" : "template %s had no CMP secret\n", tmpl);
	} else if ((rc = ca_cmp_secret_new(ca, tmpl, secret, sizeof secret)) == 0) {
		if (o->quiet) {
			printf("%s\n", secret);
		} else {
			printf("template %s: new CMP secret (shown this once; the one before no longer works):\n%s\n",
			       tmpl, secret);
			printf("client: openssl cmp -ref %s -secret pass:SECRET -path /.well-known/cmp/p/%s ...\n",
			       tmpl, tmpl);
		}
		fflush(stdout);
	}
out:
	OPENSSL_cleanse(secret, sizeof secret);
	ca_close(ca);
	return rc;
}
