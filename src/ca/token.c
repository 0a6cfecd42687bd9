/*
 * keyward-ca: the CA key, reached only through PKCS#11. libp11 turns the
 * token's key into an OpenSSL EVP_PKEY whose private operations are
 * C_Sign calls, so certificates and CRLs are signed by ordinary OpenSSL
 * code and the CA never holds key bytes.
 *
 * The key is named by its label on the configured token, or by an RFC 7512
 * pkcs11: URI (parsed by p11-kit): token, object and id select it, and a
 * pin-value or pin-source in the URI gives the PIN.
 *
 * libp11 generates no EC keys, so key generation calls the module itself
 * (C_GenerateKeyPair), before libp11 loads it.
 *
 * libp11 0.4.12 cannot list a token that holds a key of a type it does
 * not know (Ed25519): it loads the module through keyward-ca-keyfilter.so
 * (keyfilter.c), which leaves such keys out of its searches, so the CA
 * ignores the keys it does not use instead of failing.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libp11.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include <keyward/keyward.h>

#include "ca/p11raw.h"

struct ca_token {
	PKCS11_CTX *ctx;
	bool loaded; /* PKCS11_CTX_unload of a context that loaded nothing crashes libp11 0.4.12 */
	PKCS11_SLOT *slots;
	unsigned n_slots;
	PKCS11_SLOT *slot;
	P11KitUri *uri; /* when the key is a URI */
};

/* The PIN in path's first line (secret: the caller cleanses buf), read as every keyward tool reads secrets. */
static int read_pin(const char *path, char *buf, size_t size)
{
	/* a PIN file others may read is no secret: refused, as ssh refuses such a private key */
	return kw_secret_read_file(path, "PIN file", buf, size) == KW_OK ? 0 : ca_error("%s", kw_last_error());
}

/*
 * The key filter: next to this program (the build tree), else where it is
 * installed. False when there is none: libp11 then loads the module itself.
 */
static bool keyfilter_path(char *out, size_t size)
{
	char exe[900];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	char *slash;

	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/'))) {
			*slash = '\0';
			if ((size_t)snprintf(out, size, "%s/" KW_CA_KEYFILTER_NAME, exe) < size && access(out, R_OK) == 0)
				return true;
		}
	}
	return (size_t)snprintf(out, size, "%s", KW_CA_KEYFILTER) < size && access(out, R_OK) == 0;
}

/* Loads the module into t->ctx, through the key filter when there is one. */
static int load_module(struct ca_token *t, const char *module)
{
	char filter[1000];

	if (keyfilter_path(filter, sizeof filter)) {
		if (setenv("KEYWARD_CA_PKCS11_MODULE", module, 1) != 0)
			return ca_error("cannot set KEYWARD_CA_PKCS11_MODULE: %s", strerror(errno));
		if (PKCS11_CTX_load(t->ctx, filter) == 0) {
			t->loaded = true;
			return 0;
		}
		return ca_error("cannot load the PKCS#11 module %s (through %s): check the module setting or --module",
				module, filter);
	}
	if (PKCS11_CTX_load(t->ctx, module) != 0)
		return ca_error("cannot load the PKCS#11 module %s: check the module setting or --module", module);
	t->loaded = true;
	return 0;
}

static bool is_uri(const char *key)
{
	return !strncmp(key, "pkcs11:", 7);
}

/* A libp11 token as PKCS#11's blank-padded CK_TOKEN_INFO, for p11-kit's URI matching. */
static void token_info(const PKCS11_TOKEN *tok, CK_TOKEN_INFO *info)
{
	const char *src[] = {tok->label, tok->manufacturer, tok->model, tok->serialnr};
	CK_UTF8CHAR *dst[] = {info->label, info->manufacturerID, info->model, info->serialNumber};
	size_t len[] = {sizeof info->label, sizeof info->manufacturerID, sizeof info->model, sizeof info->serialNumber};

	memset(info, 0, sizeof *info);
	for (size_t i = 0; i < 4; i++) {
		size_t n = src[i] ? strlen(src[i]) : 0;

		memset(dst[i], ' ', len[i]);
		memcpy(dst[i], src[i] ? src[i] : "", n < len[i] ? n : len[i]);
	}
}

/* The tokens there are, for an error message. */
static void token_names(struct ca_token *t, char *out, size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	for (unsigned i = 0; i < t->n_slots && used < size; i++)
		if (t->slots[i].token)
			used += (size_t)snprintf(out + used, size - used, "%s\"%s\"", used ? ", " : "",
						 t->slots[i].token->label);
	if (!out[0])
		snprintf(out, size, "none");
}

int ca_token_open(const struct ca_conf *c, struct ca_token **out)
{
	struct ca_token *t = calloc(1, sizeof *t);
	char pin[256] = "", names[512], pin_file[CA_PATH_MAX];
	const char *uri_pin = NULL;
	int rc = -1;

	*out = NULL;
	if (!t)
		return ca_error("out of memory");
	if (is_uri(c->key)) {
		if (!(t->uri = p11_kit_uri_new()) ||
		    p11_kit_uri_parse(c->key, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, t->uri) != P11_KIT_URI_OK) {
			ca_error("the key URI \"%s\" is not an RFC 7512 pkcs11: URI", c->key);
			goto out;
		}
		uri_pin = p11_kit_uri_get_pin_value(t->uri);
		if (!uri_pin && p11_kit_uri_get_pin_source(t->uri)) {
			const char *src = p11_kit_uri_get_pin_source(t->uri);

			if (read_pin(!strncmp(src, "file:", 5) ? src + 5 : src, pin, sizeof pin))
				goto out;
		}
	}
	if (!(t->ctx = PKCS11_CTX_new())) {
		ca_error("out of memory");
		goto out;
	}
	if (load_module(t, ca_host_module(c)))
		goto out;
	if (PKCS11_enumerate_slots(t->ctx, &t->slots, &t->n_slots) != 0) {
		ca_error("%s: cannot list its slots", ca_host_module(c));
		goto out;
	}
	for (unsigned i = 0; i < t->n_slots && !t->slot; i++) {
		PKCS11_TOKEN *tok = t->slots[i].token;
		CK_TOKEN_INFO info;

		if (!tok)
			continue;
		token_info(tok, &info);
		if (t->uri ? p11_kit_uri_match_token_info(t->uri, &info) : !strcmp(tok->label, c->token))
			t->slot = &t->slots[i];
	}
	if (!t->slot) {
		token_names(t, names, sizeof names);
		ca_error("%s: no token %s%s%s (tokens searched: %s)", ca_host_module(c), t->uri ? "matches " : "\"",
			 t->uri ? c->key : c->token, t->uri ? "" : "\"", names);
		goto out;
	}
	ca_host_pin_file(c, pin_file, sizeof pin_file);
	if (!uri_pin && !pin[0] && pin_file[0] && read_pin(pin_file, pin, sizeof pin))
		goto out;
	if ((uri_pin || pin[0]) && PKCS11_login(t->slot, 0, uri_pin ? uri_pin : pin) != 0) {
		ca_error("cannot log in to token \"%s\": wrong PIN? (PIN from %s)", t->slot->token->label,
			 uri_pin ? "the key URI" : pin_file);
		goto out;
	}
	*out = t;
	rc = 0;
out:
	OPENSSL_cleanse(pin, sizeof pin);
	if (rc)
		ca_token_close(t);
	return rc;
}

void ca_token_close(struct ca_token *t)
{
	if (!t)
		return;
	if (t->slots)
		PKCS11_release_all_slots(t->ctx, t->slots, t->n_slots);
	if (t->ctx) {
		if (t->loaded)
			PKCS11_CTX_unload(t->ctx);
		PKCS11_CTX_free(t->ctx);
	}
	if (t->uri)
		p11_kit_uri_free(t->uri);
	free(t);
}

/* Whether libp11's key k is the one the configuration names. */
static bool key_matches(struct ca_token *t, const char *key, const PKCS11_KEY *k)
{
	CK_ATTRIBUTE *label, *id;

	if (!t->uri)
		return k->label && !strcmp(k->label, key);
	label = p11_kit_uri_get_attribute(t->uri, CKA_LABEL);
	id = p11_kit_uri_get_attribute(t->uri, CKA_ID);
	if (label &&
	    (!k->label || strlen(k->label) != label->ulValueLen || memcmp(k->label, label->pValue, label->ulValueLen)))
		return false;
	if (id && (k->id_len != id->ulValueLen || memcmp(k->id, id->pValue, id->ulValueLen)))
		return false;
	return label || id;
}

int ca_token_key(struct ca_token *t, const char *key, EVP_PKEY **priv, EVP_PKEY **pub)
{
	PKCS11_KEY *keys = NULL;
	unsigned n = 0;

	*priv = *pub = NULL;
	if (PKCS11_enumerate_keys(t->slot->token, &keys, &n) != 0)
		return ca_error("token \"%s\": cannot list its keys", t->slot->token->label);
	for (unsigned i = 0; i < n; i++) {
		if (!key_matches(t, key, &keys[i]))
			continue;
		*priv = PKCS11_get_private_key(&keys[i]);
		*pub = PKCS11_get_public_key(&keys[i]);
		if (!*priv || !*pub) {
			ca_error("token \"%s\": key \"%s\" is there, but its %s half cannot be used",
				 t->slot->token->label, key, *priv ? "public" : "private");
			EVP_PKEY_free(*priv);
			EVP_PKEY_free(*pub);
			*priv = *pub = NULL;
			return -1;
		}
		return 0;
	}
	return ca_error(
		"no key \"%s\" on token \"%s\" (slot \"%s\", %u keys there): that token is the key space "
		"searched; move the key to it with ksputil chkeysowner, or name another token with --token or a "
		"pkcs11: URI",
		key, t->slot->token->label, t->slot->description ? t->slot->description : "", n);
}

int ca_key_fingerprint(EVP_PKEY *key, char out[65])
{
	unsigned char *der = NULL;
	int len = key ? i2d_PUBKEY(key, &der) : -1;

	out[0] = '\0';
	if (len <= 0)
		return ca_error("cannot encode the public key");
	ca_sha256_hex(der, (size_t)len, out);
	OPENSSL_free(der);
	return 0;
}

int ca_token_each_key(struct ca_token *t, int (*fn)(void *arg, const struct ca_key_info *k), void *arg)
{
	PKCS11_KEY *keys = NULL;
	unsigned n = 0;

	if (PKCS11_enumerate_keys(t->slot->token, &keys, &n) != 0)
		return ca_error("token \"%s\": cannot list its keys", t->slot->token->label);
	for (unsigned i = 0; i < n; i++) {
		EVP_PKEY *pub = PKCS11_get_public_key(&keys[i]);
		struct ca_key_info k;
		int rc;

		memset(&k, 0, sizeof k);
		snprintf(k.label, sizeof k.label, "%s", keys[i].label ? keys[i].label : "");
		for (size_t j = 0; j < keys[i].id_len && j < 64; j++)
			snprintf(k.id + 2 * j, 3, "%02x", keys[i].id[j]);
		snprintf(k.type, sizeof k.type, "%s", pub ? EVP_PKEY_get0_type_name(pub) : "?");
		k.bits = pub ? EVP_PKEY_get_bits(pub) : 0;
		if (pub)
			ca_key_fingerprint(pub, k.spki_sha256);
		EVP_PKEY_free(pub);
		ERR_clear_error();
		if ((rc = fn(arg, &k)))
			return rc;
	}
	return 0;
}

const char *ca_token_label(const struct ca_token *t)
{
	return t->slot->token->label;
}

/* ---- key generation, through the module's own function list (p11raw.c) ---- */

bool ca_key_type_known(const char *type)
{
	static const char *const known[] = {"RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384"};

	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (!strcmp(type, known[i]))
			return true;
	return false;
}

int ca_token_generate(const struct ca_conf *c, const char *type, const char *label)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	static CK_BYTE p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
	static CK_BYTE f4[] = {0x01, 0x00, 0x01};
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = 0;
	CK_BYTE id[20];
	CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, sizeof yes},
			      {CKA_VERIFY, &yes, sizeof yes},
			      {CKA_LABEL, (void *)label, strlen(label)},
			      {CKA_ID, id, sizeof id},
			      {CKA_MODULUS_BITS, &bits, sizeof bits},
			      {CKA_PUBLIC_EXPONENT, f4, sizeof f4}};
	CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, sizeof yes},
			       {CKA_PRIVATE, &yes, sizeof yes},
			       {CKA_SENSITIVE, &yes, sizeof yes},
			       {CKA_EXTRACTABLE, &no, sizeof no},
			       {CKA_SIGN, &yes, sizeof yes},
			       {CKA_DECRYPT, &no, sizeof no},
			       {CKA_LABEL, (void *)label, strlen(label)},
			       {CKA_ID, id, sizeof id}};
	CK_OBJECT_HANDLE hpub, hpriv;
	struct ca_p11 g = {0};
	char pin[256] = "", pin_file[CA_PATH_MAX];
	int rc = -1;
	CK_RV rv;

	if (!ca_key_type_known(type))
		return ca_usage_error("key type %s: " CA_KEY_TYPES, type);
	if (!strncmp(type, "RSA-", 4)) {
		bits = (CK_ULONG)atoi(type + 4);
	} else {
		m.mechanism = CKM_EC_KEY_PAIR_GEN;
		bool p256_wanted = !strcmp(type, "EC-P256");

		pub[4] = (CK_ATTRIBUTE){CKA_EC_PARAMS, p256_wanted ? p256 : p384,
					p256_wanted ? sizeof p256 : sizeof p384};
	}
	if (RAND_bytes(id, sizeof id) != 1)
		return ca_error("random generator failed");
	ca_host_pin_file(c, pin_file, sizeof pin_file);
	if (pin_file[0] && read_pin(pin_file, pin, sizeof pin))
		return -1;
	if (ca_p11_open(c, &g, pin) == 0) {
		rv = g.f->C_GenerateKeyPair(g.s, &m, pub, m.mechanism == CKM_EC_KEY_PAIR_GEN ? 5 : 6, priv, 8, &hpub,
					    &hpriv);
		rc = rv == CKR_OK ? 0 : ca_p11_fail("C_GenerateKeyPair", rv);
	}
	OPENSSL_cleanse(pin, sizeof pin);
	ca_p11_close(&g);
	return rc;
}
