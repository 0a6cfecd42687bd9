/*
 * keyward-ca acme-eab TEMPLATE: a new external account binding key for
 * ACME accounts under TEMPLATE, printed once (certbot's --eab-kid and
 * --eab-hmac-key), then wiped.
 */
#include <stdio.h>

#include <openssl/crypto.h>

#include "ca/acme.h"
#include "ca/cli/cli.h"

int cmd_acme_eab(const struct opts *o, const char *template_name)
{
	struct ca *ca;
	char kid[ACME_EAB_KID_LEN + 1], key[ACME_EAB_KEY_B64 + 1];
	int rc;

	if (cli_open(o, 0, &ca))
		return -1;
	rc = acme_eab_create(ca, template_name, kid, key);
	if (!rc && o->json) {
		rc = cli_print_json(json_pack("{s:s,s:s,s:s}", "template", template_name, "kid", kid, "hmac_key", key));
	} else if (!rc) {
		printf("kid %s\nhmac_key %s\n", kid, key);
		printf("certbot: --eab-kid=%s --eab-hmac-key=%s\n", kid, key);
	}
	OPENSSL_cleanse(key, sizeof key);
	ca_close(ca);
	return rc;
}
