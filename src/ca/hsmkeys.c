/*
 * keyward-ca: the keys of every owner on a keyward HSM, through
 * libkeyward, with their public keys' fingerprints. A PKCS#11 token shows
 * one owner's keys (this machine's); finding the CA's key on a new server
 * means looking under every owner, as the seed's "enumkeys -a" does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyward/keyward.h>
#include <openssl/crypto.h>

#include "ca/ca.h"

int ca_hsm_open(const char *pin_file_option, const char *dir, kw_client **out, char *my_owner, size_t size)
{
	struct ca_conf *defaults = malloc(sizeof *defaults);
	char pin_file[CA_PATH_MAX], pin[256] = "";
	int rc = -1;

	*out = NULL;
	if (!defaults)
		return ca_error("out of memory");
	if (kw_client_new(NULL, out)) {
		ca_error("the HSM client configuration: %s", kw_last_error());
		goto out;
	}
	ca_conf_defaults(defaults, dir ? dir : ".");
	if (pin_file_option)
		snprintf(defaults->pin_file, sizeof defaults->pin_file, "%s", pin_file_option);
	ca_host_pin_file(defaults, pin_file, sizeof pin_file);
	if (pin_file[0]) {
		if (kw_secret_read_file(pin_file, "PIN file", pin, sizeof pin)) {
			ca_error("%s", kw_last_error());
			goto out;
		}
		if (kw_client_set_pin(*out, pin)) {
			ca_error("the PIN of %s: %s", pin_file, kw_last_error());
			goto out;
		}
	}
	if (kw_owner_machine(*out, my_owner, size)) {
		ca_error("this machine's owner: %s", kw_last_error());
		goto out;
	}
	rc = 0;
out:
	if (rc) {
		kw_client_free(*out);
		*out = NULL;
	}
	OPENSSL_cleanse(pin, sizeof pin);
	free(defaults);
	return rc;
}

int ca_hsm_keys_list(kw_client *c, const char *my_owner, int (*fn)(void *arg, const struct ca_hsm_key *k), void *arg)
{
	kw_object_list *all = NULL;
	int rc = 0;

	if (kw_list_objects(c, NULL, NULL, &all))
		return ca_error("listing the HSM's keys: %s", kw_last_error());
	/* the public halves carry the public key; each names its private half (pair) */
	for (size_t i = 0; i < kw_object_list_count(all) && !rc; i++) {
		const kw_object *o = kw_object_list_get(all, i);
		const unsigned char *spki;
		struct ca_hsm_key k;
		size_t len;

		if (kw_object_class(o) != KW_CLASS_PUBLIC_KEY || !(spki = kw_object_public_key(o, &len)))
			continue;
		memset(&k, 0, sizeof k);
		snprintf(k.owner, sizeof k.owner, "%s", kw_object_owner(o));
		snprintf(k.name, sizeof k.name, "%s", kw_object_name(o));
		k.bits = (int)kw_object_bits(o);
		k.mine = my_owner && !strcmp(k.owner, my_owner);
		ca_sha256_hex(spki, len, k.spki_sha256);
		for (size_t j = 0; j < kw_object_list_count(all); j++)
			k.has_private =
				k.has_private || (kw_object_id(kw_object_list_get(all, j)) == kw_object_pair_id(o) &&
						  kw_object_class(kw_object_list_get(all, j)) == KW_CLASS_PRIVATE_KEY);
		rc = fn(arg, &k);
	}
	kw_object_list_free(all);
	return rc;
}

int ca_hsm_keys_each(const char *pin_file, int (*fn)(void *arg, const struct ca_hsm_key *k), void *arg)
{
	char mine[KW_OWNER_MAX + 1];
	kw_client *c = NULL;
	int rc = ca_hsm_open(pin_file, NULL, &c, mine, sizeof mine);

	if (!rc)
		rc = ca_hsm_keys_list(c, mine, fn, arg);
	kw_client_free(c);
	return rc;
}
