/*
 * ACME's JWS (RFC 7515 flattened JSON, RFC 8555 6.2), decoded buffer to
 * buffer and verified with OpenSSL: account keys (and, for revokeCert, the
 * certificate's own key) with ES256 (P-256), ES384 (P-384), ES512 (P-521),
 * RS256 (RSA) and EdDSA (Ed25519; RFC 8037), each alg with its one kind
 * of key; HS256 for external account binding; JWK thumbprints (RFC 7638,
 * RFC 8037 2 for OKP keys). All of
 * it reads hostile bytes: every length is checked before use, duplicate
 * JSON members are refused (two parsers must not see two messages), and
 * a JWK must be in its one canonical form, so that one key has one
 * thumbprint and so one account.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "ca/acme.h"

#define PROTECTED_MAX 4096 /* decoded protected header */
#define SIG_MAX 1024	   /* RSA-8192's signature is 1024 bytes */
#define RSA_BITS_MIN 2048
#define RSA_BITS_MAX 8192

/* The algs served (RFC 7518 3.1, RFC 8037 3.1), each with the only key it takes. */
struct alg {
	const char *name;  /* the JWS alg */
	int type;	   /* EVP_PKEY_EC, EVP_PKEY_RSA, EVP_PKEY_ED25519 */
	const char *crv;   /* the JWK's crv (NULL: RSA) */
	const char *group; /* OpenSSL's name of the curve (EC) */
	size_t len;	   /* bytes of a coordinate (EC, OKP), and of r and of s (EC) */
	const char *md;	   /* the digest signed (NULL: EdDSA signs the message itself) */
};
static const struct alg algs[] = {
	{"ES256", EVP_PKEY_EC, "P-256", "prime256v1", 32, "SHA256"},
	{"ES384", EVP_PKEY_EC, "P-384", "secp384r1", 48, "SHA384"},
	{"ES512", EVP_PKEY_EC, "P-521", "secp521r1", 66, "SHA512"},
	{"RS256", EVP_PKEY_RSA, NULL, NULL, 0, "SHA256"},
	{"EdDSA", EVP_PKEY_ED25519, "Ed25519", NULL, 32, NULL},
};
#define N_ALGS (sizeof algs / sizeof algs[0])
#define ALG_NAMES "ES256, ES384, ES512, RS256, EdDSA"

static const struct alg *alg_named(const char *name)
{
	for (size_t i = 0; i < N_ALGS; i++)
		if (!strcmp(algs[i].name, name))
			return &algs[i];
	return NULL;
}

/* The alg that key signs with, or NULL for a key no alg here takes. */
static const struct alg *alg_of_key(EVP_PKEY *key)
{
	char group[64];
	int type = EVP_PKEY_get_base_id(key);

	if (type == EVP_PKEY_EC &&
	    !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL))
		return NULL;
	for (size_t i = 0; i < N_ALGS; i++)
		if (algs[i].type == type && (type != EVP_PKEY_EC || !strcmp(algs[i].group, group)))
			return &algs[i];
	return NULL;
}

/* What key is, for messages: its curve, or RSA. */
static const char *key_kind(const struct alg *a)
{
	return !a ? "unsupported" : a->crv ? a->crv : "RSA";
}

json_t *acme_jws_algs(void)
{
	json_t *list = json_array();

	for (size_t i = 0; list && i < N_ALGS; i++)
		json_array_append_new(list, json_string(algs[i].name));
	return list;
}

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64u_value(unsigned char c)
{
	const char *p = c ? strchr(b64u, c) : NULL;

	return p ? (int)(p - b64u) : -1;
}

long acme_b64u_decode(const char *in, size_t len, unsigned char *out, size_t max)
{
	size_t n = 0;
	unsigned acc = 0, bits = 0;

	/* a length of 1 mod 4 cannot come from any byte string */
	if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > max)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64u_value((unsigned char)in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* the bits left over must be zero: otherwise two texts decode to one value */
	return acc ? -1 : (long)n;
}

size_t acme_b64u_encode(const unsigned char *in, size_t len, char *out)
{
	size_t n = 0, i = 0;

	for (; i + 2 < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];

		out[n++] = b64u[v >> 18];
		out[n++] = b64u[(v >> 12) & 63];
		out[n++] = b64u[(v >> 6) & 63];
		out[n++] = b64u[v & 63];
	}
	if (i < len) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0);

		out[n++] = b64u[v >> 18];
		out[n++] = b64u[(v >> 12) & 63];
		if (i + 1 < len)
			out[n++] = b64u[(v >> 6) & 63];
	}
	out[n] = '\0';
	return n;
}

/* A JWK member: base64url decoded into out (at most max), canonical (re-encodes to itself); -1 if not. */
static long jwk_bytes(const json_t *jwk, const char *name, unsigned char *out, size_t max)
{
	const char *s = json_string_value(json_object_get(jwk, name));
	char again[1400];
	long n;

	if (!s || strlen(s) > 1370)
		return ca_error("the jwk has no usable \"%s\"", name);
	n = acme_b64u_decode(s, strlen(s), out, max);
	if (n <= 0)
		return ca_error("the jwk's \"%s\" is not base64url of at most %zu bytes", name, max);
	acme_b64u_encode(out, (size_t)n, again);
	if (strcmp(again, s))
		return ca_error("the jwk's \"%s\" is not in canonical base64url", name);
	return n;
}

static void thumbprint(const char *canonical, char thumb[ACME_THUMB_LEN + 1])
{
	unsigned char md[32];

	EVP_Digest(canonical, strlen(canonical), md, NULL, EVP_sha256(), NULL);
	acme_b64u_encode(md, sizeof md, thumb);
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL), *check = NULL;
	EVP_PKEY *key = NULL;

	if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		goto out;
	/* the point on the curve, the modulus odd and not small: checked before the key is trusted with anything */
	check = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	if (!check || EVP_PKEY_public_check(check) <= 0) {
		EVP_PKEY_free(key);
		key = NULL;
	}
out:
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return key;
}

static enum acme_prob ec_key(const json_t *jwk, EVP_PKEY **key, char thumb[ACME_THUMB_LEN + 1])
{
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	const struct alg *a = NULL;
	unsigned char pub[1 + 2 * 66];
	char canon[400];
	OSSL_PARAM_BLD *bld;

	for (size_t i = 0; crv && i < N_ALGS && !a; i++)
		if (algs[i].type == EVP_PKEY_EC && !strcmp(algs[i].crv, crv))
			a = &algs[i];
	if (!a)
		return ca_error("the jwk's curve is \"%.20s\", not P-256, P-384 or P-521 (ES256, ES384, ES512)",
				crv ? crv : "(none)"),
		       AP_BAD_PUBKEY;
	pub[0] = 4; /* uncompressed point */
	if (jwk_bytes(jwk, "x", pub + 1, a->len) != (long)a->len ||
	    jwk_bytes(jwk, "y", pub + 1 + a->len, a->len) != (long)a->len)
		return ca_error("the jwk's x and y are not %zu bytes each (%s)", a->len, a->crv), AP_BAD_PUBKEY;
	if (!(bld = OSSL_PARAM_BLD_new()))
		return ca_error("out of memory"), AP_SERVER_INTERNAL;
	if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, a->group, 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * a->len))
		*key = NULL;
	else
		*key = from_params("EC", bld);
	OSSL_PARAM_BLD_free(bld);
	if (!*key)
		return ca_error("the jwk's point is not on %s", a->crv), AP_BAD_PUBKEY;
	snprintf(canon, sizeof canon, "{\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", a->crv,
		 json_string_value(json_object_get(jwk, "x")), json_string_value(json_object_get(jwk, "y")));
	thumbprint(canon, thumb);
	return AP_OK;
}

/* An Ed25519 key (RFC 8037 2): kty OKP, crv Ed25519, x the 32 bytes of the public key. */
static enum acme_prob okp_key(const json_t *jwk, EVP_PKEY **key, char thumb[ACME_THUMB_LEN + 1])
{
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	unsigned char pub[32];
	char canon[200];
	OSSL_PARAM_BLD *bld;

	if (!crv || strcmp(crv, "Ed25519"))
		return ca_error("the jwk's OKP curve is \"%.20s\", not Ed25519 (EdDSA)", crv ? crv : "(none)"),
		       AP_BAD_PUBKEY;
	if (jwk_bytes(jwk, "x", pub, sizeof pub) != (long)sizeof pub)
		return ca_error("the jwk's x is not 32 bytes (Ed25519)"), AP_BAD_PUBKEY;
	if (!(bld = OSSL_PARAM_BLD_new()))
		return ca_error("out of memory"), AP_SERVER_INTERNAL;
	*key = OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub)
		       ? from_params("ED25519", bld)
		       : NULL;
	OSSL_PARAM_BLD_free(bld);
	if (!*key)
		return ca_error("the jwk's x is not an Ed25519 public key"), AP_BAD_PUBKEY;
	snprintf(canon, sizeof canon, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}",
		 json_string_value(json_object_get(jwk, "x")));
	thumbprint(canon, thumb);
	return AP_OK;
}

static enum acme_prob rsa_key(const json_t *jwk, EVP_PKEY **key, char thumb[ACME_THUMB_LEN + 1])
{
	unsigned char n[RSA_BITS_MAX / 8], e[8];
	long nl = jwk_bytes(jwk, "n", n, sizeof n), el = jwk_bytes(jwk, "e", e, sizeof e);
	BIGNUM *bn = NULL, *be = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	char canon[1500];

	*key = NULL;
	if (nl < 0 || el < 0)
		return AP_BAD_PUBKEY;
	if (!n[0] || !e[0])
		return ca_error("the jwk's n or e has a leading zero byte"), AP_BAD_PUBKEY;
	if (nl * 8 < RSA_BITS_MIN)
		return ca_error("the jwk's RSA key has %ld bits; at least %d are needed", nl * 8, RSA_BITS_MIN),
		       AP_BAD_PUBKEY;
	bn = BN_bin2bn(n, (int)nl, NULL);
	be = BN_bin2bn(e, (int)el, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
		*key = from_params("RSA", bld);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	if (!*key)
		return ca_error("the jwk is not a usable RSA public key"), AP_BAD_PUBKEY;
	snprintf(canon, sizeof canon, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}",
		 json_string_value(json_object_get(jwk, "e")), json_string_value(json_object_get(jwk, "n")));
	thumbprint(canon, thumb);
	return AP_OK;
}

enum acme_prob acme_jwk_key(const json_t *jwk, EVP_PKEY **key, char thumb[ACME_THUMB_LEN + 1])
{
	const char *kty = json_string_value(json_object_get(jwk, "kty"));

	*key = NULL;
	if (!json_is_object(jwk) || !kty)
		return ca_error("the jwk is not an object with a kty"), AP_MALFORMED;
	if (!strcmp(kty, "EC"))
		return ec_key(jwk, key, thumb);
	if (!strcmp(kty, "RSA"))
		return rsa_key(jwk, key, thumb);
	if (!strcmp(kty, "OKP"))
		return okp_key(jwk, key, thumb);
	return ca_error("the jwk's kty is \"%.20s\"; EC (P-256, P-384, P-521), RSA and OKP (Ed25519) are accepted",
			kty),
	       AP_BAD_PUBKEY;
}

void acme_jws_cleanup(struct acme_jws *j)
{
	json_decref(j->jwk);
	json_decref(j->body);
	EVP_PKEY_free(j->key);
	free(j->payload);
	free(j->signing_input);
	free(j->sig);
	memset(j, 0, sizeof *j);
}

/* A protected header's string member into out (size bytes): 0 absent, 1 copied, -1 not a string or too long. */
static int header_string(const json_t *h, const char *name, char *out, size_t size)
{
	const json_t *v = json_object_get(h, name);

	if (!v)
		return 0;
	if (!json_is_string(v) || json_string_length(v) >= size || strlen(json_string_value(v)) != json_string_length(v))
		return ca_error("the protected header's \"%s\" is not a string of at most %zu bytes", name, size - 1);
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 1;
}

static enum acme_prob parse_header(const char *b64, size_t len, struct acme_jws *out)
{
	unsigned char raw[PROTECTED_MAX];
	long n = acme_b64u_decode(b64, len, raw, sizeof raw);
	json_t *h = NULL;
	const char *k;
	const struct alg *ka;
	json_t *v;
	enum acme_prob p = AP_MALFORMED;

	if (n <= 0)
		return ca_error("the protected header is not base64url of at most %d bytes", PROTECTED_MAX), AP_MALFORMED;
	if (!(h = json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL)) || !json_is_object(h)) {
		ca_error("the protected header is not a JSON object");
		goto out;
	}
	json_object_foreach(h, k, v) {
		if (strcmp(k, "alg") && strcmp(k, "nonce") && strcmp(k, "url") && strcmp(k, "jwk") && strcmp(k, "kid")) {
			/* crit, jku, x5u, ...: nothing here understands them, so none is accepted */
			ca_error("the protected header has \"%.40s\", which ACME does not use", k);
			goto out;
		}
	}
	if (header_string(h, "alg", out->alg, sizeof out->alg) != 1) {
		p = AP_BAD_SIG_ALG;
		ca_error("the protected header's alg is not one of " ALG_NAMES " or HS256");
		goto out;
	}
	if (!alg_named(out->alg) && strcmp(out->alg, "HS256")) {
		p = AP_BAD_SIG_ALG;
		ca_error("alg %s is not accepted (" ALG_NAMES "; HS256 in external account binding)", out->alg);
		goto out;
	}
	if (header_string(h, "nonce", out->nonce, sizeof out->nonce) < 0 ||
	    header_string(h, "url", out->url, sizeof out->url) != 1 ||
	    header_string(h, "kid", out->kid, sizeof out->kid) < 0) {
		if (!out->url[0])
			ca_error("the protected header has no url");
		goto out;
	}
	if ((v = json_object_get(h, "jwk"))) {
		if (out->kid[0]) {
			ca_error("the protected header has both jwk and kid");
			goto out;
		}
		out->jwk = json_incref(v);
		if (strcmp(out->alg, "HS256") && (p = acme_jwk_key(v, &out->key, out->thumb)))
			goto out;
		if (out->key && (ka = alg_of_key(out->key)) != alg_named(out->alg)) {
			p = AP_BAD_SIG_ALG;
			ca_error("alg %s does not go with the jwk's %s key (it signs with %s)", out->alg, key_kind(ka),
				 ka ? ka->name : "none of " ALG_NAMES);
			goto out;
		}
	}
	p = AP_OK;
out:
	json_decref(h);
	return p;
}

enum acme_prob acme_jws_parse(const unsigned char *body, size_t len, struct acme_jws *out)
{
	json_t *root = NULL;
	const char *prot, *payload, *sig;
	size_t plen;
	long n;
	enum acme_prob p = AP_MALFORMED;

	memset(out, 0, sizeof *out);
	if (len > ACME_JWS_MAX)
		return ca_error("the JWS is longer than %d bytes", ACME_JWS_MAX), AP_MALFORMED;
	if (!(root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL)) || !json_is_object(root) ||
	    json_object_size(root) != 3 || !(prot = json_string_value(json_object_get(root, "protected"))) ||
	    !(payload = json_string_value(json_object_get(root, "payload"))) ||
	    !(sig = json_string_value(json_object_get(root, "signature")))) {
		/* an unprotected "header" is not allowed (RFC 8555 6.2), nor anything else */
		ca_error("the body is not a flattened JWS: an object of exactly protected, payload and signature strings");
		goto out;
	}
	if ((p = parse_header(prot, strlen(prot), out)))
		goto out;
	p = AP_MALFORMED;
	plen = strlen(payload);
	if (!(out->payload = malloc(plen / 4 * 3 + 3)) ||
	    (n = acme_b64u_decode(payload, plen, out->payload, plen / 4 * 3 + 3)) < 0) {
		ca_error("the payload is not base64url");
		goto out;
	}
	out->payload_len = (size_t)n;
	if (n && (!(out->body = json_loadb((const char *)out->payload, out->payload_len, JSON_REJECT_DUPLICATES, NULL)) ||
		  !json_is_object(out->body))) {
		ca_error("the payload is neither empty (POST-as-GET) nor a JSON object");
		goto out;
	}
	if (!(out->sig = malloc(SIG_MAX)) || (n = acme_b64u_decode(sig, strlen(sig), out->sig, SIG_MAX)) <= 0) {
		ca_error("the signature is not base64url of at most %d bytes", SIG_MAX);
		goto out;
	}
	out->sig_len = (size_t)n;
	out->signing_len = strlen(prot) + 1 + plen;
	if (!(out->signing_input = malloc(out->signing_len + 1))) {
		p = AP_SERVER_INTERNAL;
		ca_error("out of memory");
		goto out;
	}
	snprintf(out->signing_input, out->signing_len + 1, "%s.%s", prot, payload);
	p = AP_OK;
out:
	json_decref(root);
	if (p)
		acme_jws_cleanup(out);
	return p;
}

/* JWS carries r || s (RFC 7518 3.4); OpenSSL verifies the DER of ECDSA-Sig-Value: into der (room for size). */
static enum acme_prob ecdsa_der(const struct acme_jws *j, const struct alg *a, unsigned char *der, size_t size,
				size_t *der_len)
{
	ECDSA_SIG *es;
	BIGNUM *r, *s;
	unsigned char *w = der;
	int n = -1;

	if (j->sig_len != 2 * a->len)
		return ca_error("an %s signature is %zu bytes (r || s), not %zu", a->name, 2 * a->len, j->sig_len),
		       AP_MALFORMED;
	es = ECDSA_SIG_new();
	r = BN_bin2bn(j->sig, (int)a->len, NULL);
	s = BN_bin2bn(j->sig + a->len, (int)a->len, NULL);
	if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
		r = s = NULL;
		if (i2d_ECDSA_SIG(es, NULL) <= (int)size)
			n = i2d_ECDSA_SIG(es, &w);
	}
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	if (n <= 0)
		return ca_error("out of memory"), AP_SERVER_INTERNAL;
	*der_len = (size_t)n;
	return AP_OK;
}

enum acme_prob acme_jws_verify(const struct acme_jws *j, EVP_PKEY *key)
{
	const struct alg *a = alg_of_key(key);
	EVP_MD_CTX *md = NULL;
	unsigned char der[160]; /* P-521's r and s, 66 bytes each, in DER: at most 139 */
	const unsigned char *sig = j->sig;
	size_t sig_len = j->sig_len;
	enum acme_prob p;

	if (!a || strcmp(j->alg, a->name))
		return ca_error("alg %s does not go with the %s key (it signs with %s)", j->alg, key_kind(a),
				a ? a->name : "none of " ALG_NAMES),
		       AP_BAD_SIG_ALG;
	if (a->type == EVP_PKEY_EC) {
		if ((p = ecdsa_der(j, a, der, sizeof der, &sig_len)))
			return p;
		sig = der;
	}
	if (!(md = EVP_MD_CTX_new()) || EVP_DigestVerifyInit_ex(md, NULL, a->md, NULL, NULL, key, NULL) <= 0) {
		EVP_MD_CTX_free(md);
		return ca_error("out of memory"), AP_SERVER_INTERNAL;
	}
	p = AP_MALFORMED;
	/* (one shot: EdDSA cannot take the message in parts) */
	if (EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)j->signing_input, j->signing_len) == 1)
		p = AP_OK;
	else
		ca_error("the JWS signature does not verify");
	EVP_MD_CTX_free(md);
	return p;
}

enum acme_prob acme_jws_verify_hmac(const struct acme_jws *j, const unsigned char *key, size_t key_len)
{
	unsigned char mac[32];
	size_t n = 0;

	if (strcmp(j->alg, "HS256"))
		return ca_error("the external account binding's alg is %s, not HS256", j->alg), AP_MALFORMED;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, (const unsigned char *)j->signing_input,
		       j->signing_len, mac, sizeof mac, &n) ||
	    n != sizeof mac)
		return ca_error("HMAC failed"), AP_SERVER_INTERNAL;
	if (j->sig_len != sizeof mac || CRYPTO_memcmp(mac, j->sig, sizeof mac)) {
		OPENSSL_cleanse(mac, sizeof mac);
		return ca_error("the external account binding's MAC does not verify under its kid's key"), AP_UNAUTHORIZED;
	}
	OPENSSL_cleanse(mac, sizeof mac);
	return AP_OK;
}
