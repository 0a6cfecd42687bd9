/*
 * keyward-ca: issuance templates. A template says what a certificate may
 * be: validity, key usage, extended key usage, basic constraints, the key
 * types it accepts, subject and SAN rules, manual approval. Extensions come
 * from the template only; of the request, only the subject, the public key
 * and the SAN kinds the template allows are used, never other extensions.
 */
#include <ini.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "ca/ca.h"

static const struct ca_template builtins[] = {
	{"WebServer", 397, "critical,digitalSignature,keyEncipherment", "serverAuth", false, -1,
	 "RSA-2048+,EC-P256,EC-P384", false, "dns,ip", false, false, true, false, 0},
	{"Client", 397, "critical,digitalSignature", "clientAuth", false, -1, "RSA-2048+,EC-P256,EC-P384", true, "dns",
	 false, false, true, false, 0},
	{"User", 365, "critical,digitalSignature,keyEncipherment", "clientAuth,emailProtection", false, -1,
	 "RSA-2048+,EC-P256,EC-P384", true, "email", false, false, true, false, 0},
	{"SubCA", 1825, "critical,keyCertSign,cRLSign,digitalSignature", "", true, 0, "RSA-2048+,EC-P256,EC-P384", true,
	 "", false, false, true, false, 0},
	{"OCSPSigning", 90, "critical,digitalSignature", "OCSPSigning", false, -1, "RSA-2048+,EC-P256,EC-P384", true,
	 "", false, true, true, false, 0},
	{"CodeSigning", 365, "critical,digitalSignature", "codeSigning", false, -1, "RSA-3072+,EC-P256,EC-P384", true,
	 "", false, false, true, false, 0},
};

void ca_templates_builtin(struct ca_conf *c)
{
	c->n_templates = sizeof builtins / sizeof builtins[0];
	memcpy(c->templates, builtins, sizeof builtins);
}

const struct ca_template *ca_template_find(const struct ca_conf *c, const char *name)
{
	for (size_t i = 0; i < c->n_templates; i++)
		if (!strcmp(c->templates[i].name, name))
			return &c->templates[i];
	return NULL;
}

struct ca_template *ca_template_add(struct ca_conf *c, const char *name)
{
	struct ca_template *t = (struct ca_template *)ca_template_find(c, name);

	/* a section header "[template NAME]" that reads back as written */
	if (!*name || strlen(name) >= sizeof t->name || strpbrk(name, "[]") || ca_conf_text_ok(0, name))
		return NULL;
	if (!t) {
		if (c->n_templates == CA_TEMPLATES_MAX)
			return NULL;
		t = &c->templates[c->n_templates++];
		memset(t, 0, sizeof *t);
		snprintf(t->name, sizeof t->name, "%s", name);
		t->validity_days = 365;
		t->path_len = -1;
		snprintf(t->key_types, sizeof t->key_types, "RSA-2048+,EC-P256,EC-P384");
	}
	t->builtin = false; /* from ca.conf: written back */
	return t;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "true") || !strcmp(v, "yes"))
		*out = true;
	else if (!strcmp(v, "false") || !strcmp(v, "no"))
		*out = false;
	else
		return ca_error("\"%s\" is not true or false", v);
	return 0;
}

/* Whether every comma-separated item of v is one of the allowed words. */
static int check_words(const char *v, const char *const *allowed, const char *what)
{
	char buf[256], *save = NULL, *w;

	snprintf(buf, sizeof buf, "%s", v);
	for (w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; allowed[i] && strcmp(allowed[i], w); i++)
			;
		if (!allowed[i])
			return ca_error("unknown %s \"%s\"", what, w);
	}
	return 0;
}

int ca_template_set(struct ca_template *t, const char *key, const char *v)
{
	static const char *const usages[] = {"critical",	"digitalSignature", "nonRepudiation",
					     "keyEncipherment", "dataEncipherment", "keyAgreement",
					     "keyCertSign",	"cRLSign",	    NULL};
	static const char *const ekus[] = {"serverAuth",   "clientAuth",  "codeSigning", "emailProtection",
					   "timeStamping", "OCSPSigning", NULL};
	static const char *const sans[] = {"dns", "ip", "email", "uri", NULL};
	static const char *const subjects[] = {"cn", "any", NULL};
	char *end;
	long n;

	if (strlen(v) >= 128)
		return ca_error("value too long");
	if (!strcmp(key, "validity_days")) {
		n = strtol(v, &end, 10);
		if (*end || n < 1 || n > 36500)
			return ca_error("not a number of days from 1 to 36500");
		t->validity_days = (unsigned)n;
	} else if (!strcmp(key, "key_usage")) {
		if (check_words(v, usages, "key usage"))
			return -1;
		snprintf(t->key_usage, sizeof t->key_usage, "%s", v);
	} else if (!strcmp(key, "extended_key_usage")) {
		if (check_words(v, ekus, "extended key usage"))
			return -1;
		snprintf(t->extended_key_usage, sizeof t->extended_key_usage, "%s", v);
	} else if (!strcmp(key, "ca")) {
		return parse_bool(v, &t->ca);
	} else if (!strcmp(key, "path_len")) {
		n = strtol(v, &end, 10);
		if (*end || n < -1 || n > 16)
			return ca_error("not a path length from -1 (none) to 16");
		t->path_len = (int)n;
	} else if (!strcmp(key, "key_types")) {
		static const char *const types[] = {"RSA-2048+", "RSA-3072+", "RSA-4096+", "EC-P256",
						    "EC-P384",	 "EC-P521",   "Ed25519",   NULL};
		if (check_words(v, types, "key type"))
			return -1;
		snprintf(t->key_types, sizeof t->key_types, "%s", v);
	} else if (!strcmp(key, "subject")) {
		if (check_words(v, subjects, "subject rule"))
			return -1;
		t->subject_cn = !strcmp(v, "cn");
	} else if (!strcmp(key, "san")) {
		if (check_words(v, sans, "SAN kind"))
			return -1;
		snprintf(t->san, sizeof t->san, "%s", v);
	} else if (!strcmp(key, "approval")) {
		if (strcmp(v, "auto") && strcmp(v, "manual"))
			return ca_error("approval is auto or manual");
		t->manual = !strcmp(v, "manual");
	} else if (!strcmp(key, "ocsp_nocheck")) {
		return parse_bool(v, &t->ocsp_nocheck);
	} else if (!strcmp(key, "wildcard")) {
		return parse_bool(v, &t->wildcard);
	} else {
		return ca_error("unknown template key (known: validity_days, key_usage, extended_key_usage, ca, "
				"path_len, key_types, subject, san, approval, ocsp_nocheck, wildcard)");
	}
	return 0;
}

void ca_template_print(const struct ca_template *t, FILE *f)
{
	fprintf(f,
		"validity_days = %u\nkey_usage = %s\nextended_key_usage = %s\nca = %s\npath_len = %d\n"
		"key_types = %s\nsubject = %s\nsan = %s\napproval = %s\nocsp_nocheck = %s\nwildcard = %s\n",
		t->validity_days, t->key_usage, t->extended_key_usage, t->ca ? "true" : "false", t->path_len,
		t->key_types, t->subject_cn ? "cn" : "any", t->san, t->manual ? "manual" : "auto",
		t->ocsp_nocheck ? "true" : "false", t->wildcard ? "true" : "false");
}

/* The request key's type in the words of key_types ("RSA-3072", "EC-P256", "Ed25519"), and its size. */
static int key_kind(EVP_PKEY *k, char *out, size_t size, int *bits)
{
	char group[64] = "";

	*bits = EVP_PKEY_get_bits(k);
	if (EVP_PKEY_is_a(k, "RSA")) {
		snprintf(out, size, "RSA");
	} else if (EVP_PKEY_is_a(k, "EC")) {
		EVP_PKEY_get_group_name(k, group, sizeof group, NULL);
		snprintf(out, size, "%s",
			 !strcmp(group, "prime256v1")  ? "EC-P256"
			 : !strcmp(group, "secp384r1") ? "EC-P384"
			 : !strcmp(group, "secp521r1") ? "EC-P521"
						       : "EC-other");
	} else if (EVP_PKEY_is_a(k, "ED25519")) {
		snprintf(out, size, "Ed25519");
	} else {
		return -1;
	}
	return 0;
}

static bool allowed(const char *list, const char *word)
{
	char buf[128], *save = NULL, *w;

	snprintf(buf, sizeof buf, "%s", list);
	for (w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save))
		if (!strcmp(w, word))
			return true;
	return false;
}

static const char *san_kind(const GENERAL_NAME *g)
{
	return g->type == GEN_DNS     ? "dns"
	       : g->type == GEN_IPADD ? "ip"
	       : g->type == GEN_EMAIL ? "email"
	       : g->type == GEN_URI   ? "uri"
				      : "other";
}

/*
 * The request's SANs (the template allowed their kinds: ca_template_check)
 * onto x; critical when the subject is empty, as RFC 5280 4.2.1.6 requires
 * (certbot's requests have no subject: the names are all in the SAN).
 */
static int copy_sans(const struct ca_request *req, X509 *x)
{
	int critical = X509_NAME_entry_count(req->subject) == 0;
	int ok = sk_GENERAL_NAME_num(req->sans) <= 0 ||
		 X509_add1_ext_i2d(x, NID_subject_alt_name, req->sans, critical, 0);

	return ok ? 0 : ca_error("cannot add the subject alternative names");
}

int ca_template_check(const struct ca_template *t, const struct ca_request *req)
{
	EVP_PKEY *k = req->key;
	char kind[32], buf[128], *save = NULL, *w;
	int bits = 0, ok = 0;

	if (!k || key_kind(k, kind, sizeof kind, &bits))
		return ca_error("the request's key type is not one keyward-ca knows (RSA, EC, Ed25519)");
	snprintf(buf, sizeof buf, "%s", t->key_types);
	for (w = strtok_r(buf, ",", &save); w && !ok; w = strtok_r(NULL, ",", &save)) {
		if (!strncmp(w, "RSA-", 4) && !strcmp(kind, "RSA"))
			ok = bits >= atoi(w + 4);
		else
			ok = !strcmp(w, kind);
	}
	if (!ok)
		return ca_error("template %s does not accept a %s key of %d bits (it accepts %s)", t->name, kind, bits,
				t->key_types);
	if (t->subject_cn && X509_NAME_get_index_by_NID(req->subject, NID_commonName, -1) < 0)
		return ca_error("template %s needs a subject with a CN", t->name);
	for (int i = 0; i < sk_GENERAL_NAME_num(req->sans); i++)
		if (!allowed(t->san, san_kind(sk_GENERAL_NAME_value(req->sans, i))))
			return ca_error(
				"template %s does not allow subject alternative names of kind %s (it allows: %s)",
				t->name, san_kind(sk_GENERAL_NAME_value(req->sans, i)), t->san[0] ? t->san : "none");
	/* a certificate must name something: a CN, or a SAN the template took */
	if (sk_GENERAL_NAME_num(req->sans) <= 0 && X509_NAME_get_index_by_NID(req->subject, NID_commonName, -1) < 0)
		return ca_error(
			"the request names nothing: it has neither a subject CN nor a subject alternative name");
	return ca_names_check(t, req);
}

struct template_file {
	struct ca_template *t;
	char error[600];
};

static int template_line(void *user, const char *section, const char *key, const char *value)
{
	struct template_file *p = user;

	if (p->error[0])
		return 0;
	/* KEY = VALUE lines, as in ca.conf's [template NAME] sections; such a header may stay in the file */
	if (section[0] && strncmp(section, "template ", 9))
		snprintf(p->error, sizeof p->error, "[%.100s]: a template file holds KEY = VALUE lines only", section);
	else if (ca_template_set(p->t, key, value))
		snprintf(p->error, sizeof p->error, "%.60s: %.500s", key, ca_last_error());
	return !p->error[0];
}

#define CA_TEMPLATE_LINE_MAX 200 /* inih's INI_MAX_LINE, with the line end */

/* The file's KEY = VALUE lines through inih, as ca.conf's template sections are read (conf.c). */
int ca_template_parse(struct ca_template *t, const char *name, const char *text, size_t len)
{
	struct template_file p = {.t = t};
	char *copy;
	int line;

	if (memchr(text, '\0', len))
		return ca_error("%s: holds a NUL byte", name);
	/* inih reads a longer line as two (ca.conf's limit too): refused by its own number instead */
	line = 1;
	for (const char *p0 = text, *end = text + len; p0 < end; line++) {
		const char *nl = memchr(p0, '\n', (size_t)(end - p0));
		size_t l = (size_t)((nl ? nl : end) - p0);

		if (l >= CA_TEMPLATE_LINE_MAX)
			return ca_error("%s: line %d: longer than %d bytes", name, line, CA_TEMPLATE_LINE_MAX - 1);
		p0 = nl ? nl + 1 : end;
	}
	if (!(copy = strndup(text, len)))
		return ca_error("out of memory");
	line = ini_parse_string(copy, template_line, &p);
	free(copy);
	if (line < 0)
		return ca_error("out of memory");
	if (line > 0)
		return ca_error("%s: line %d: %s", name, line, p.error[0] ? p.error : "not KEY = VALUE");
	return 0;
}

int ca_request_check(const struct ca_template *t, const struct ca_request *req)
{
	return ca_request_verify(req) || ca_template_check(t, req) ? -1 : 0;
}

X509_EXTENSION *ca_make_ext(X509 *issuer, X509 *subject, X509_CRL *crl, int nid, const char *value)
{
	X509V3_CTX ctx;

	X509V3_set_ctx(&ctx, issuer, subject, NULL, crl, 0);
	return X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
}

int ca_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509_EXTENSION *e = ca_make_ext(issuer, x, NULL, nid, value);
	int ok = e && X509_add_ext(x, e, -1);

	X509_EXTENSION_free(e);
	return ok ? 0 : ca_error("cannot add extension %s = %s", OBJ_nid2sn(nid), value);
}

/*
 * The template's key usage for a key of the kind given: an EC or EdDSA key
 * cannot encipher (RFC 5480 3, RFC 8410 5), so keyEncipherment and
 * dataEncipherment are kept for RSA keys only.
 */
static const char *key_usage_for(const struct ca_template *t, bool rsa, char *out, size_t size)
{
	char buf[256], *save = NULL, *w;
	size_t n = 0;

	if (rsa)
		return t->key_usage;
	snprintf(buf, sizeof buf, "%s", t->key_usage);
	out[0] = '\0';
	for (w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save))
		if (strcmp(w, "keyEncipherment") && strcmp(w, "dataEncipherment"))
			n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s", n ? "," : "", w);
	return out;
}

/* Extension nid (OpenSSL config syntax) of a certificate issued by issuer, onto list. */
static int push_ext(STACK_OF(X509_EXTENSION) * list, X509 *issuer, int nid, const char *value)
{
	X509_EXTENSION *e = ca_make_ext(issuer, NULL, NULL, nid, value);

	if (e && sk_X509_EXTENSION_push(list, e))
		return 0;
	X509_EXTENSION_free(e);
	return ca_error("cannot make extension %s = %s", OBJ_nid2sn(nid), value);
}

/*
 * The extensions every certificate of t for a key of the kind given gets,
 * basic constraints first: all but the subject key identifier and the
 * subject alternative names.
 */
static STACK_OF(X509_EXTENSION) *
	template_exts(const struct ca_conf *c, const struct ca_template *t, X509 *ca, bool rsa)
{
	STACK_OF(X509_EXTENSION) *e = sk_X509_EXTENSION_new_null();
	char file[CA_NAME_MAX + 1], v[1024], base[300];
	int rc;

	if (!e) {
		ca_error("out of memory");
		return NULL;
	}
	ca_file_name(c->name, file, sizeof file);
	ca_url_base(c, base, sizeof base);
	if (!t->ca)
		snprintf(v, sizeof v, "critical,CA:FALSE");
	else if (t->path_len >= 0)
		snprintf(v, sizeof v, "critical,CA:TRUE,pathlen:%d", t->path_len);
	else
		snprintf(v, sizeof v, "critical,CA:TRUE");
	rc = push_ext(e, ca, NID_basic_constraints, v) || push_ext(e, ca, NID_authority_key_identifier, "keyid:always");
	if (!rc && t->key_usage[0])
		rc = push_ext(e, ca, NID_key_usage, key_usage_for(t, rsa, v, sizeof v));
	if (!rc && t->extended_key_usage[0])
		rc = push_ext(e, ca, NID_ext_key_usage, t->extended_key_usage);
	if (!rc) {
		snprintf(v, sizeof v, "URI:%s/crl/%s.crl", base, file);
		rc = push_ext(e, ca, NID_crl_distribution_points, v);
	}
	if (!rc) {
		snprintf(v, sizeof v, "caIssuers;URI:%s/ca/%s.crt,OCSP;URI:%s/ocsp", base, file, base);
		rc = push_ext(e, ca, NID_info_access, v);
	}
	if (!rc && t->ocsp_nocheck)
		rc = push_ext(e, ca, NID_id_pkix_OCSP_noCheck, "ignored");
	if (rc) {
		sk_X509_EXTENSION_pop_free(e, X509_EXTENSION_free);
		return NULL;
	}
	return e;
}

int ca_issuer_init(struct ca_issuer *is, const struct ca_conf *c, const struct ca_template *t, X509 *ca)
{
	memset(is, 0, sizeof *is);
	is->conf = c;
	is->t = t;
	is->ca = ca;
	if ((is->exts[0] = template_exts(c, t, ca, true)) && (is->exts[1] = template_exts(c, t, ca, false)))
		return 0;
	ca_issuer_clear(is);
	return -1;
}

void ca_issuer_clear(struct ca_issuer *is)
{
	sk_X509_EXTENSION_pop_free(is->exts[0], X509_EXTENSION_free);
	sk_X509_EXTENSION_pop_free(is->exts[1], X509_EXTENSION_free);
	memset(is, 0, sizeof *is);
}

int ca_template_apply(const struct ca_issuer *is, const struct ca_request *req, X509 *x)
{
	const STACK_OF(X509_EXTENSION) *e = is->exts[EVP_PKEY_is_a(req->key, "RSA") ? 0 : 1];

	/* basic constraints, the subject key identifier, the template's others, the SANs */
	for (int i = 0; i < sk_X509_EXTENSION_num(e); i++) {
		if (!X509_add_ext(x, sk_X509_EXTENSION_value(e, i), -1))
			return ca_error(
				"cannot add extension %s",
				OBJ_nid2sn(OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(e, i)))));
		if (i == 0 && ca_add_ext(x, is->ca, NID_subject_key_identifier, "hash"))
			return -1;
	}
	return copy_sans(req, x);
}

void ca_url_base(const struct ca_conf *c, char *out, size_t size)
{
	if (c->url_base[0])
		snprintf(out, size, "%s", c->url_base);
	else
		snprintf(out, size, "http://%s", c->server_name);
}
