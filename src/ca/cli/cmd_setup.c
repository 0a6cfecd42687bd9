/*
 * keyward-ca setup, install-cert and keys.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "ca/cli/cli.h"

int cmd_setup(const struct opts *o)
{
	struct ca_setup s = {
		.dir = o->dir,
		.name = o->name,
		.key_type = o->key_type,
		.existing_key = o->existing_key,
		.cert = o->cert,
		.hash = o->hash,
		.server_name = o->server_name,
		.url_base = o->url_base,
		.module = o->module,
		.token = o->token,
		.pin_file = o->pin_file,
		.database = o->database,
		.validity_days = o->validity,
		.subordinate = o->subordinate,
	};
	char label[CA_NAME_MAX + 8];

	if (ca_setup(&s))
		return -1;
	snprintf(label, sizeof label, "ca-%s", o->name);
	printf("CA \"%s\" set up in %s with key \"%s\"%s\n", o->name, o->dir, o->existing_key ? o->existing_key : label,
	       o->subordinate ? "; ca.csr is the request for the parent CA, then run install-cert" : "");
	return 0;
}

int cmd_install_cert(const struct opts *o, const char *file)
{
	struct ca *ca = NULL;
	int rc = cli_open(o, CA_OPEN_KEY, &ca);

	if (!rc)
		rc = ca_install_cert(ca, file);
	if (!rc)
		printf("installed %s: the CA issues now\n", file);
	ca_close(ca);
	return rc;
}

struct keys_listing {
	const char *want; /* the fingerprint of --cert's key, or NULL */
	json_t *json;	  /* with --json */
	unsigned n, found;
};

static int print_key(void *arg, const struct ca_key_info *k)
{
	struct keys_listing *l = arg;
	bool match = l->want && !strcmp(l->want, k->spki_sha256);

	l->n++;
	l->found += match;
	if (l->json)
		return json_array_append_new(l->json,
					     json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:b}", "source", "token",
						       "label", k->label, "id", k->id, "type", k->type, "bits", k->bits,
						       "public_key_sha256", k->spki_sha256, "matches_cert", match))
			       ? ca_fail(CA_ERR_FAILED, "out of memory")
			       : 0;
	printf("  %-32s id %-40s %s %d  sha256:%.16s%s\n", k->label, k->id, k->type, k->bits, k->spki_sha256,
	       match ? "  <- the key of --cert" : "");
	return 0;
}

static int print_hsm_key(void *arg, const struct ca_hsm_key *k)
{
	struct keys_listing *l = arg;
	bool match = l->want && !strcmp(l->want, k->spki_sha256);

	l->found += match;
	if (l->json)
		return json_array_append_new(l->json,
					     json_pack("{s:s, s:s, s:s, s:i, s:s, s:b, s:b, s:b}", "source", "hsm",
						       "owner", k->owner, "label", k->name, "bits", k->bits,
						       "public_key_sha256", k->spki_sha256, "private_key",
						       k->has_private, "this_machine", k->mine, "matches_cert", match))
			       ? ca_fail(CA_ERR_FAILED, "out of memory")
			       : 0;
	printf("  %-44s %-32s %4d  sha256:%.16s%s%s\n", k->owner, k->name, k->bits, k->spki_sha256,
	       k->mine ? "  (this machine)" : "", match ? "  <- the key of --cert" : "");
	return 0;
}

/* The fingerprint of the public key in the PEM certificate file. */
static int cert_key_fingerprint(const char *file, char out[65])
{
	FILE *f = fopen(file, "re");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	int rc;

	if (f)
		fclose(f);
	if (!x)
		return ca_fail(CA_ERR_USAGE, "--cert %s: %s", file, f ? "no PEM certificate in it" : strerror(errno));
	rc = ca_key_fingerprint(X509_get0_pubkey(x), out);
	X509_free(x);
	return rc;
}

/*
 * keys works on a host without a CA too (the seed lists the keys before
 * the CA exists on the new server): the module, token and PIN file come
 * from the CA in --dir if there is one, else from the options and defaults.
 */
int cmd_keys(const struct opts *o)
{
	struct keys_listing l = {0};
	struct ca_conf where;
	struct ca *ca = NULL;
	char want[65], path[CA_PATH_MAX + 16];
	int rc = -1;

	snprintf(path, sizeof path, "%s/ca.conf", o->dir);
	if (access(path, F_OK) == 0 && !o->module && !o->token) {
		if (cli_open(o, 0, &ca))
			return -1;
		where = *ca_config(ca);
	} else if (ca_conf_defaults(&where, o->dir)) {
		return -1;
	}
	if (o->module)
		snprintf(where.module, sizeof where.module, "%s", o->module);
	if (o->token)
		snprintf(where.token, sizeof where.token, "%s", o->token);
	if (o->pin_file && !realpath(o->pin_file, where.pin_file)) {
		ca_fail(CA_ERR_USAGE, "the PIN file %s: %s", o->pin_file, strerror(errno));
		goto out;
	}
	if (o->cert && cert_key_fingerprint(o->cert, want))
		goto out;
	l.want = o->cert ? want : NULL;
	if (o->json)
		l.json = json_array();
	else
		printf("token \"%s\":\n", where.token);
	if (ca_keys_each(&where, print_key, &l))
		goto out;
	if (!o->json)
		printf("%u key%s\nevery owner's key pairs on the HSM (ksputil chkeysowner or migrate moves one "
		       "here):\n",
		       l.n, l.n == 1 ? "" : "s");
	/* a keyward HSM shows every owner's keys through libkeyward; another HSM has no owners to show */
	if (ca_hsm_keys_each(o->pin_file, print_hsm_key, &l) && !o->json)
		printf("  (none shown: %s)\n", ca_last_error());
	if (o->json) {
		rc = cli_print_json(l.json);
		l.json = NULL;
	} else {
		if (o->cert)
			printf("%u matching %s\n", l.found, o->cert);
		rc = 0;
	}
	if (!rc && o->cert && !l.found)
		rc = ca_fail(CA_ERR_NOT_FOUND, "no key on token \"%s\" nor under any owner on the HSM is the key of %s",
			     where.token, o->cert);
out:
	json_decref(l.json);
	ca_close(ca);
	return rc;
}
