/*
 * keyward-ca: the names a certificate will carry, checked before anything
 * is signed. A request's subject and subject alternative names are the
 * requester's words; the CA certifies them, so each must be a well-formed
 * name of its kind and of bounded size:
 *
 *   dNSName     RFC 5280 4.2.1.6, RFC 1035 2.3.1 (LDH labels of 1 to 63
 *               bytes, 253 in all), RFC 5890/5891 (A-labels only: "xn--"
 *               and valid Punycode, no other "--" in positions 3 and 4),
 *               RFC 6125 6.4.3 (a wildcard only as the whole leftmost
 *               label, only where the template allows it, and never over
 *               a public suffix-like single label: "*.test" is refused)
 *   rfc822Name  local@domain: a dot-atom local part of at most 64 bytes,
 *               a domain as above without a wildcard
 *   iPAddress   4 or 16 bytes
 *   URI         scheme ":" rest, printable ASCII; a "//" authority's host
 *               a DNS name or an IP literal
 *   subject     each attribute within RFC 5280's upper bound (CN 64, ...),
 *               PrintableString or UTF8String (IA5String for emailAddress
 *               and domainComponent), no NUL, valid UTF-8
 *
 * and no more than CA_SANS_MAX names, CA_NAME_BYTES_MAX bytes of names in
 * all. Each refusal says which name, which rule.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "ca/ca.h"

/* name as it may be shown in a message: printable ASCII, the rest \xNN, cut at 80 bytes */
static const char *shown(const unsigned char *name, size_t len, char *out, size_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n + 8 < size; i++) {
		if (n >= 80) {
			n += (size_t)snprintf(out + n, size - n, "...");
			break;
		}
		if (name[i] >= 0x20 && name[i] < 0x7f && name[i] != '"' && name[i] != '\\')
			out[n++] = (char)name[i];
		else
			n += (size_t)snprintf(out + n, size - n, "\\x%02x", name[i]);
	}
	out[n] = '\0';
	return out;
}

static bool is_ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/*
 * Whether the Punycode p (len bytes, after "xn--") decodes (RFC 3492 6.2)
 * to a label with at least one non-ASCII code point, each a Unicode scalar
 * value.
 */
static bool punycode_ok(const unsigned char *p, size_t len)
{
	enum { BASE = 36, TMIN = 1, TMAX = 26, SKEW = 38, DAMP = 700, INITIAL_BIAS = 72, INITIAL_N = 128 };
	uint32_t n = INITIAL_N, i = 0, bias = INITIAL_BIAS, out = 0;
	size_t b = 0, in;
	bool non_ascii = false;

	for (size_t j = 0; j < len; j++)
		if (p[j] == '-')
			b = j;
	out = (uint32_t)b;
	in = b > 0 ? b + 1 : 0;
	if (in >= len)
		return false; /* nothing encoded: not an A-label */
	while (in < len) {
		uint32_t oldi = i, w = 1, k, delta;

		for (k = BASE;; k += BASE) {
			int c = lower(p[in++]);
			uint32_t digit, t;

			if (c >= 'a' && c <= 'z')
				digit = (uint32_t)(c - 'a');
			else if (c >= '0' && c <= '9')
				digit = (uint32_t)(c - '0' + 26);
			else
				return false;
			if (digit > (UINT32_MAX - i) / w)
				return false;
			i += digit * w;
			t = k <= bias ? TMIN : k >= bias + TMAX ? TMAX : k - bias;
			if (digit < t)
				break;
			if (w > UINT32_MAX / (BASE - t) || in >= len)
				return false;
			w *= BASE - t;
		}
		out++;
		/* adapt */
		delta = oldi == 0 ? (i - oldi) / DAMP : (i - oldi) / 2;
		delta += delta / out;
		for (k = 0; delta > ((BASE - TMIN) * TMAX) / 2; k += BASE)
			delta /= BASE - TMIN;
		bias = k + (BASE - TMIN + 1) * delta / (delta + SKEW);
		if (i / out > 0x10FFFF - n)
			return false;
		n += i / out;
		i %= out;
		if (n < 0x80 || n > 0x10FFFF || (n >= 0xD800 && n <= 0xDFFF))
			return false;
		non_ascii = true;
		i++;
	}
	return non_ascii;
}

/* What every name must be: not empty, no NUL, at most max bytes (by rule). */
static int name_bytes_check(const unsigned char *name, size_t len, size_t max, const char *rule)
{
	if (len == 0)
		return ca_error("empty (RFC 5280 4.2.1.6)");
	if (memchr(name, '\0', len))
		return ca_error("holds a NUL byte");
	if (len > max)
		return ca_error("%zu bytes long; at most %zu (%s)", len, max, rule);
	return 0;
}

int ca_dns_name_check(const unsigned char *name, size_t len, bool wildcard_ok)
{
	size_t start = 0, labels = 0;
	bool all_digits = false;

	if (name_bytes_check(name, len, 253, "RFC 1035"))
		return -1;
	if (name[len - 1] == '.')
		return ca_error("ends with a dot (RFC 5280 4.2.1.6: no trailing dot)");
	for (size_t i = 0; i <= len; i++) {
		const unsigned char *label = name + start;
		size_t n = i - start;

		if (i < len && name[i] != '.')
			continue;
		start = i + 1;
		labels++;
		if (n == 0)
			return ca_error("has an empty label");
		if (n > 63)
			return ca_error("has a label of %zu bytes; at most 63 (RFC 1035)", n);
		if (n == 1 && label[0] == '*') {
			if (labels != 1)
				return ca_error("has a wildcard that is not the leftmost label (RFC 6125 6.4.3)");
			if (!wildcard_ok)
				return ca_error("is a wildcard, which this template does not allow (wildcard = false)");
			continue;
		}
		for (size_t j = 0; j < n; j++)
			if (!is_ldh(label[j]))
				return ca_error("has the character \\x%02x in a label: only letters, digits and '-' "
						"(RFC 1035 2.3.1; an internationalized name as its xn-- A-label)",
						label[j]);
		if (label[0] == '-' || label[n - 1] == '-')
			return ca_error("has a label that starts or ends with '-' (RFC 1035 2.3.1)");
		if (n >= 4 && label[2] == '-' && label[3] == '-') {
			if (lower(label[0]) != 'x' || lower(label[1]) != 'n')
				return ca_error("has a label with \"--\" in positions 3 and 4 that is not an xn-- "
						"A-label (RFC 5891 4.2.3.1)");
			if (!punycode_ok(label + 4, n - 4))
				return ca_error("has an xn-- label that is not a valid A-label (RFC 5890, RFC 3492)");
		}
		all_digits = true;
		for (size_t j = 0; j < n; j++)
			all_digits = all_digits && label[j] >= '0' && label[j] <= '9';
	}
	if (all_digits)
		return ca_error("ends in an all-numeric label: an IP address goes in an iPAddress name");
	if (name[0] == '*' && labels < 3)
		return ca_error("is a wildcard over fewer than two labels (RFC 6125 7.2)");
	return 0;
}

int ca_email_check(const unsigned char *name, size_t len)
{
	const unsigned char *at;
	size_t local;

	if (name_bytes_check(name, len, 254, "RFC 5321 4.5.3.1"))
		return -1;
	if (!(at = memchr(name, '@', len)) || memchr(at + 1, '@', len - (size_t)(at - name) - 1))
		return ca_error("is not local@domain with one '@' (RFC 5280 4.2.1.6)");
	local = (size_t)(at - name);
	if (local == 0 || local > 64)
		return ca_error("has a local part of %zu bytes; 1 to 64 (RFC 5321 4.5.3.1)", local);
	for (size_t i = 0; i < local; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || strchr("!#$%&'*+/=?^_`{|}~.-", name[i])))
			return ca_error("has the character \\x%02x in its local part (a dot-atom, RFC 5322 3.2.3)",
					name[i]);
	if (name[0] == '.' || name[local - 1] == '.' || memmem(name, local, "..", 2))
		return ca_error("has a local part with a leading, trailing or double dot (RFC 5322 3.2.3)");
	if (ca_dns_name_check(at + 1, len - local - 1, false))
		return ca_error("has a domain that %s", ca_last_error());
	return 0;
}

int ca_ip_check(const unsigned char *addr, size_t len)
{
	(void)addr;
	if (len != 4 && len != 16)
		return ca_error("is %zu bytes; an address is 4 (IPv4) or 16 (IPv6) (RFC 5280 4.2.1.6)", len);
	return 0;
}

/* Whether host (len bytes) is a dotted IPv4 address. */
static bool ipv4_literal(const unsigned char *host, size_t len)
{
	char buf[16];
	unsigned char a[4];

	if (len >= sizeof buf)
		return false;
	memcpy(buf, host, len);
	buf[len] = '\0';
	return inet_pton(AF_INET, buf, a) == 1;
}

int ca_uri_check(const unsigned char *uri, size_t len)
{
	size_t i = 0, host, end;

	if (name_bytes_check(uri, len, CA_URI_MAX, "keyward-ca's limit"))
		return -1;
	for (size_t j = 0; j < len; j++)
		if (uri[j] <= 0x20 || uri[j] >= 0x7f)
			return ca_error("has the character \\x%02x: printable ASCII without spaces (RFC 3986)", uri[j]);
	if (!((uri[0] >= 'a' && uri[0] <= 'z') || (uri[0] >= 'A' && uri[0] <= 'Z')))
		return ca_error("has no scheme (RFC 5280 4.2.1.6: a URI, not a relative reference)");
	while (i < len && (is_ldh(uri[i]) || uri[i] == '+' || uri[i] == '.'))
		i++;
	if (i == len || uri[i] != ':')
		return ca_error("has no scheme (RFC 5280 4.2.1.6: a URI, not a relative reference)");
	if (len - i < 3 || uri[i + 1] != '/' || uri[i + 2] != '/')
		return 0; /* no authority (urn:, mailto:, ...) */
	host = i + 3;
	end = host;
	while (end < len && !strchr("/?#", uri[end]))
		end++;
	if (memchr(uri + host, '@', end - host))
		return ca_error("has user information before its host (RFC 3986 7.5: not in a certificate)");
	if (host < end && uri[host] == '[') {
		const unsigned char *close = memchr(uri + host, ']', end - host);

		if (!close || (close + 1 != uri + end && close[1] != ':'))
			return ca_error("has a malformed IP literal host (RFC 3986 3.2.2)");
		return 0;
	}
	for (i = host; i < end && uri[i] != ':'; i++)
		;
	if (ipv4_literal(uri + host, i - host))
		return 0;
	if (ca_dns_name_check(uri + host, i - host, false))
		return ca_error("has a host that %s", ca_last_error());
	for (size_t j = i + 1; j < end; j++)
		if (uri[j] < '0' || uri[j] > '9')
			return ca_error("has a port that is not a number");
	return 0;
}

/* RFC 5280 Appendix A's upper bounds, in characters; the string types allowed besides UTF8 and Printable. */
static const struct attribute_rule {
	int nid;
	int max;
	bool ia5; /* IA5String allowed (and PrintableString and UTF8String not required) */
	bool printable_only;
} rules[] = {
	{NID_commonName, 64, false, false},
	{NID_organizationName, 64, false, false},
	{NID_organizationalUnitName, 64, false, false},
	{NID_localityName, 128, false, false},
	{NID_stateOrProvinceName, 128, false, false},
	{NID_countryName, 2, false, true},
	{NID_serialNumber, 64, false, true},
	{NID_title, 64, false, false},
	{NID_givenName, 32768, false, false}, /* ub-name: the total cap binds first */
	{NID_surname, 32768, false, false},
	{NID_initials, 32768, false, false},
	{NID_generationQualifier, 32768, false, false},
	{NID_pseudonym, 128, false, false},
	{NID_dnQualifier, 64, false, true},
	{NID_organizationIdentifier, 64, false, false},
	{NID_streetAddress, 128, false, false},
	{NID_postalCode, 40, false, false},
	{NID_pkcs9_emailAddress, 255, true, false},
	{NID_domainComponent, 63, true, false},
	{NID_userId, 64, false, false},
};

static bool printable_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr(" '()+,-./:=?", c);
}

/* The number of code points of UTF-8 s, or -1 if it is not valid UTF-8 (RFC 3629). */
static long utf8_length(const unsigned char *s, size_t len)
{
	long n = 0;

	for (size_t i = 0; i < len; n++) {
		uint32_t cp;
		size_t more;

		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xE0) == 0xC0)
			cp = s[i] & 0x1F, more = 1;
		else if ((s[i] & 0xF0) == 0xE0)
			cp = s[i] & 0x0F, more = 2;
		else if ((s[i] & 0xF8) == 0xF0)
			cp = s[i] & 0x07, more = 3;
		else
			return -1;
		if (len - i <= more)
			return -1;
		for (size_t j = 1; j <= more; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return -1;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return -1;
		i += more + 1;
	}
	return n;
}

/* One subject attribute: its string type, characters and length. */
static int attribute_check(const X509_NAME_ENTRY *e)
{
	const ASN1_STRING *v = X509_NAME_ENTRY_get_data(e);
	const unsigned char *s = ASN1_STRING_get0_data(v);
	size_t len = (size_t)ASN1_STRING_length(v);
	int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)), type = ASN1_STRING_type(v);
	const struct attribute_rule *r = NULL;
	struct attribute_rule unknown = {nid, 64, false, false};
	long chars;

	for (size_t i = 0; i < sizeof rules / sizeof rules[0] && !r; i++)
		if (rules[i].nid == nid)
			r = &rules[i];
	if (!r)
		r = &unknown;
	if (type != V_ASN1_PRINTABLESTRING && !(type == V_ASN1_IA5STRING && r->ia5) &&
	    !(type == V_ASN1_UTF8STRING && !r->printable_only))
		return ca_error("is a %s: %s only (RFC 5280 4.1.2.4)", ASN1_tag2str(type),
				r->printable_only ? "PrintableString"
				: r->ia5	  ? "IA5String, PrintableString or UTF8String"
						  : "PrintableString or UTF8String");
	if (memchr(s, '\0', len))
		return ca_error("holds a NUL byte");
	if (type == V_ASN1_PRINTABLESTRING) {
		for (size_t i = 0; i < len; i++)
			if (!printable_char(s[i]))
				return ca_error("is a PrintableString with the character \\x%02x (X.680 41.4)", s[i]);
		chars = (long)len;
	} else if (type == V_ASN1_IA5STRING) {
		for (size_t i = 0; i < len; i++)
			if (s[i] >= 0x80)
				return ca_error("is an IA5String with the byte \\x%02x", s[i]);
		chars = (long)len;
	} else if ((chars = utf8_length(s, len)) < 0) {
		return ca_error("is a UTF8String that is not valid UTF-8 (RFC 3629)");
	}
	if (chars == 0)
		return ca_error("is empty");
	if (chars > r->max)
		return ca_error("is %ld characters long; at most %d (RFC 5280 Appendix A)", chars, r->max);
	if (nid == NID_countryName && chars != 2)
		return ca_error("is not a two-letter country code (ISO 3166)");
	return 0;
}

static const char *san_kind_name(int type)
{
	return type == GEN_DNS	   ? "DNS name"
	       : type == GEN_EMAIL ? "email address"
	       : type == GEN_IPADD ? "IP address"
	       : type == GEN_URI   ? "URI"
				   : "name";
}

int ca_names_check(const struct ca_template *t, const struct ca_request *req)
{
	const X509_NAME *subject = req->subject;
	int n_entries = X509_NAME_entry_count(subject), n_sans = sk_GENERAL_NAME_num(req->sans);
	size_t bytes = 0;
	char show[400], attr[80];

	if (n_entries > CA_SUBJECT_ATTRS_MAX)
		return ca_error("the subject has %d attributes; at most %d", n_entries, CA_SUBJECT_ATTRS_MAX);
	for (int i = 0; i < n_entries; i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(subject, i);
		const ASN1_STRING *v = X509_NAME_ENTRY_get_data(e);

		bytes += (size_t)ASN1_STRING_length(v);
		if (attribute_check(e)) {
			OBJ_obj2txt(attr, sizeof attr, X509_NAME_ENTRY_get_object(e), 0);
			return ca_error(
				"subject %s \"%s\" %s", attr,
				shown(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v), show, sizeof show),
				ca_last_error());
		}
	}
	/* a CN is no DNS name to check, but a wildcard in it is one the template must allow */
	for (int i = -1; (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0;) {
		const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));

		if (!t->wildcard && memchr(ASN1_STRING_get0_data(v), '*', (size_t)ASN1_STRING_length(v)))
			return ca_error(
				"subject CN \"%s\" is a wildcard, which template %s does not allow "
				"(wildcard = false)",
				shown(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v), show, sizeof show),
				t->name);
	}
	if (n_sans > CA_SANS_MAX)
		return ca_error("the request has %d subject alternative names; at most %d", n_sans, CA_SANS_MAX);
	for (int i = 0; i < n_sans; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(req->sans, i);
		const ASN1_STRING *v = NULL;
		int rc;

		switch (g->type) {
		case GEN_DNS:
		case GEN_EMAIL:
		case GEN_URI:
			v = g->d.ia5;
			break;
		case GEN_IPADD:
			v = g->d.iPAddress;
			break;
		default:
			return ca_error("subject alternative name %d is of a kind keyward-ca does not issue", i + 1);
		}
		bytes += (size_t)ASN1_STRING_length(v);
		if (g->type == GEN_DNS)
			rc = ca_dns_name_check(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v), t->wildcard);
		else if (g->type == GEN_EMAIL)
			rc = ca_email_check(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v));
		else if (g->type == GEN_URI)
			rc = ca_uri_check(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v));
		else
			rc = ca_ip_check(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v));
		if (rc)
			return ca_error(
				"subject alternative name %d, %s \"%s\": %s", i + 1, san_kind_name(g->type),
				shown(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v), show, sizeof show),
				ca_last_error());
	}
	if (bytes > CA_NAME_BYTES_MAX)
		return ca_error("the request's names are %zu bytes in all; at most %d", bytes, CA_NAME_BYTES_MAX);
	return 0;
}
