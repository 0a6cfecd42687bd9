/*
 * Fuzz target: a certificate request file as keyward-ca submit reads it
 * (PEM or DER, ca_request_from_bytes), its signature checked, then every
 * built-in template's rules and a permissive template's (every SAN kind,
 * every key type, with and without wildcards) through the name checks of
 * names.c, and for each template that takes it, the certificate built
 * (unsigned) as issuance builds it. Must never crash, leak or read out of
 * bounds, whatever the input.
 *
 * Built with -fsanitize=fuzzer (cmake -DKEYWARD_FUZZ=ON, clang) it is a
 * libFuzzer binary; otherwise replay.c feeds it the corpus as a test.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "ca/ca.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ca_conf conf;
static struct ca_issuer issuers[CA_TEMPLATES_MAX];
static struct ca_key_decoder *decoder;
static X509 *ca_cert;
static EVP_PKEY *ca_key;

/* Once: a CA (a throwaway key, a self-signed certificate), its templates, and the issuers made of them. */
static void init(void)
{
	static const char *const permissive[][2] = {
		{"san", "dns,ip,email,uri"},
		{"key_types", "RSA-2048+,EC-P256,EC-P384,EC-P521,Ed25519"},
		{"subject", "any"},
	};
	struct ca_template *any, *wild;

	if (ca_conf_defaults(&conf, "/nonexistent") || !(ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")))
		abort();
	snprintf(conf.name, sizeof conf.name, "Fuzz CA");
	snprintf(conf.server_name, sizeof conf.server_name, "ca.fuzz");
	any = ca_template_add(&conf, "Any");
	wild = ca_template_add(&conf, "AnyWildcard");
	if (!any || !wild || !(ca_cert = ca_cert_make_root(&conf, ca_key, ca_key)))
		abort();
	for (size_t i = 0; i < sizeof permissive / sizeof permissive[0]; i++)
		if (ca_template_set(any, permissive[i][0], permissive[i][1]) ||
		    ca_template_set(wild, permissive[i][0], permissive[i][1]))
			abort();
	wild->wildcard = true;
	for (size_t i = 0; i < conf.n_templates; i++)
		if (ca_issuer_init(&issuers[i], &conf, &conf.templates[i], ca_cert))
			abort();
	if (!(decoder = ca_key_decoder_new()))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ca_request *req;

	if (!decoder)
		init();
	req = ca_request_from_bytes("fuzz.csr", (const char *)data, size, decoder);
	if (!req)
		return 0;
	ca_request_verify(req);
	for (size_t i = 0; i < conf.n_templates; i++) {
		X509 *x;

		if (ca_template_check(&conf.templates[i], req))
			continue;
		x = ca_cert_build(&issuers[i], req);
		X509_free(x);
	}
	ca_request_free(req);
	ERR_clear_error();
	return 0;
}
