/*
 * Owners: which key space (the seed's "key prefix") a key belongs to, so
 * every client of libkeyward (ksputil, the PKCS#11 module, the CA) files
 * and finds keys under the same owner. Pure string work and one small
 * file read; nothing here talks to the HSM.
 *
 *   machine owner  S-1-5-21-a-b-c. From the configuration's machine_owner
 *                  if set, else derived from the machine-id file
 *                  ($KEYWARD_MACHINE_ID_FILE, else /etc/machine-id):
 *                  a, b, c = the first three big-endian 32-bit words of
 *                  SHA-256("keyward machine owner\n" || 32 hex digits).
 *   user owner     machine owner + "-RID", RID = 1000 + 2 * uid (the
 *                  algorithmic mapping Samba uses).
 *   shared owner   S-1-5-11 for names ending in ".global".
 *
 * The derivation is written down in docs/key-spaces.md and pinned by
 * golden values in tests/unit/client/test_client_owner.c: changing it
 * would hide every existing key from its owner.
 */
#include "client/client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/error.h"

#define MACHINE_ID_FILE "/etc/machine-id"
#define MACHINE_ID_ENV "KEYWARD_MACHINE_ID_FILE"
#define MACHINE_ID_LEN 32
/* A machine-id file is 33 bytes; anything much longer is not one. */
#define MACHINE_ID_FILE_MAX 256
#define DERIVE_LABEL "keyward machine owner\n"
#define SHARED_SUFFIX ".global"
#define SID_MAX_SUBAUTH 15

/* Copies owner into out, or says how large out must be. */
static kw_rv put(const char *fn, const char *owner, char *out, size_t size)
{
	size_t len = strlen(owner);

	if (!out || size <= len)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: the owner needs %zu bytes, the buffer has %zu (use KW_OWNER_MAX + 1)",
				    fn, len + 1, out ? size : 0);
	memcpy(out, owner, len + 1);
	return KW_OK;
}

/* A decimal number without sign or leading zeros, at most max; advances *p. */
static int parse_number(const char **p, uint64_t max)
{
	const char *s = *p;
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return 0;
	if (*s == '0' && s[1] >= '0' && s[1] <= '9')
		return 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > max)
			return 0;
	}
	*p = s;
	return 1;
}

/* Whether owner is a SID; *n_sub gets the number of sub-authorities. */
static int sid_parse(const char *owner, unsigned *n_sub)
{
	const char *p = owner;
	unsigned n = 0;

	if (!owner || strlen(owner) > KW_OWNER_MAX || strncmp(p, "S-1-", 4) != 0)
		return 0;
	p += 4;
	/* the identifier authority is 48 bits */
	if (!parse_number(&p, (UINT64_C(1) << 48) - 1))
		return 0;
	while (*p == '-') {
		p++;
		if (++n > SID_MAX_SUBAUTH || !parse_number(&p, UINT32_MAX))
			return 0;
	}
	if (*p || n == 0)
		return 0;
	if (n_sub)
		*n_sub = n;
	return 1;
}

int kw_owner_is_valid(const char *owner)
{
	return sid_parse(owner, NULL);
}

/* S-1-5-21-a-b-c: what a machine (or domain) owner looks like. */
static int machine_sid_valid(const char *owner)
{
	unsigned n = 0;

	return sid_parse(owner, &n) && n == 4 && strncmp(owner, "S-1-5-21-", 9) == 0;
}

/*
 * The 32 lower-case hex digits of a machine id (whitespace around it
 * ignored, upper case taken as lower case). 0 and a reason if malformed.
 */
static int machine_id_hex(const char *id, char hex[MACHINE_ID_LEN], char *why, size_t why_len)
{
	const char *s = id, *e = id + strlen(id);

	while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		e--;
	if (e - s != MACHINE_ID_LEN) {
		snprintf(why, why_len, "a machine id is 32 hexadecimal digits, not %zu characters", (size_t)(e - s));
		return 0;
	}
	for (int i = 0; i < MACHINE_ID_LEN; i++) {
		char ch = s[i];

		if (ch >= 'A' && ch <= 'F')
			ch = (char)(ch - 'A' + 'a');
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
			snprintf(why, why_len, "a machine id is 32 hexadecimal digits; character %d is '%c'", i + 1,
				 s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?');
			return 0;
		}
		hex[i] = ch;
	}
	return 1;
}

/* S-1-5-21-a-b-c from the hex digits: see the top of this file. */
static kw_rv derive(const char *fn, const char hex[MACHINE_ID_LEN], char owner[KW_OWNER_MAX + 1])
{
	unsigned char md[32];
	unsigned int md_len = 0;
	uint32_t w[3];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(ctx, DERIVE_LABEL, sizeof DERIVE_LABEL - 1) == 1 &&
		 EVP_DigestUpdate(ctx, hex, MACHINE_ID_LEN) == 1 && EVP_DigestFinal_ex(ctx, md, &md_len) == 1;

	EVP_MD_CTX_free(ctx);
	if (!ok || md_len != sizeof md)
		return kw_error_openssl(KW_ERR_CRYPTO, "%s: SHA-256 failed", fn);
	for (int i = 0; i < 3; i++)
		w[i] = (uint32_t)md[4 * i] << 24 | (uint32_t)md[4 * i + 1] << 16 | (uint32_t)md[4 * i + 2] << 8 |
		       (uint32_t)md[4 * i + 3];
	snprintf(owner, KW_OWNER_MAX + 1, "S-1-5-21-%" PRIu32 "-%" PRIu32 "-%" PRIu32, w[0], w[1], w[2]);
	return KW_OK;
}

kw_rv kw_owner_from_machine_id(const char *machine_id, char *out, size_t size)
{
	static const char fn[] = "the owner of a machine id";
	char hex[MACHINE_ID_LEN], owner[KW_OWNER_MAX + 1], why[128];
	kw_rv rv;

	if (!machine_id)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: machine_id is NULL", fn);
	if (!machine_id_hex(machine_id, hex, why, sizeof why))
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: %s", fn, why);
	rv = derive(fn, hex, owner);
	if (rv)
		return rv;
	return put(fn, owner, out, size);
}

/* The line of the configuration file that sets key, or 0 if not found. */
static unsigned config_line(const char *path, const char *key)
{
	char line[1024];
	unsigned n = 0, found = 0;
	size_t klen = strlen(key);
	FILE *f = path ? fopen(path, "re") : NULL;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof line, f)) {
		const char *p = line;

		n++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, key, klen) == 0) {
			p += klen;
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '=' || *p == ':')
				found = n;
		}
	}
	fclose(f);
	return found;
}

/* The machine id file's derived owner; errors name the file and the way out. */
static kw_rv owner_from_file(const char *fn, const char *path, bool from_env, const char *conf, char *out,
			     size_t size)
{
	char buf[MACHINE_ID_FILE_MAX + 1], hex[MACHINE_ID_LEN], owner[KW_OWNER_MAX + 1], why[128];
	const char *via = from_env ? " (named by $" MACHINE_ID_ENV ")" : "";
	ssize_t got;
	size_t len = 0;
	int fd;
	kw_rv rv;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		return kw_error_set(KW_ERR_CONFIG,
				    "%s: cannot read the machine id from %s%s: %s; create it (systemd-machine-id-setup) "
				    "or set machine_owner = S-1-5-21-... in [client] of %s",
				    fn, path, via, strerror(err), conf ? conf : "the client configuration");
	}
	while (len < sizeof buf && (got = read(fd, buf + len, sizeof buf - len)) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			int err = errno;
			close(fd);
			return kw_error_set(KW_ERR_CONFIG, "%s: cannot read the machine id from %s%s: %s", fn, path,
					    via, strerror(err));
		}
		len += (size_t)got;
	}
	close(fd);
	if (len > MACHINE_ID_FILE_MAX)
		return kw_error_set(KW_ERR_CONFIG,
				    "%s: %s%s is not a machine-id file (more than %d bytes; it holds 32 hexadecimal "
				    "digits and a newline)",
				    fn, path, via, MACHINE_ID_FILE_MAX);
	buf[len] = '\0';
	if (strlen(buf) != len)
		return kw_error_set(KW_ERR_CONFIG,
				    "%s: %s%s is not a machine-id file (it holds a NUL byte; it holds 32 hexadecimal "
				    "digits and a newline)",
				    fn, path, via);
	if (!machine_id_hex(buf, hex, why, sizeof why))
		return kw_error_set(KW_ERR_CONFIG,
				    "%s: %s%s is not a valid machine-id file: %s; regenerate it "
				    "(systemd-machine-id-setup) or set machine_owner = S-1-5-21-... in [client] of %s",
				    fn, path, via, why, conf ? conf : "the client configuration");
	rv = derive(fn, hex, owner);
	if (rv)
		return rv;
	return put(fn, owner, out, size);
}

static kw_rv machine_owner(const char *fn, const kw_client *c, char *out, size_t size)
{
	const char *conf = c ? c->cfg.path : NULL;
	const char *over = c ? c->cfg.machine_owner : NULL;
	const char *env;

	if (over && *over) {
		if (!machine_sid_valid(over)) {
			unsigned line = config_line(conf, "machine_owner");
			char where[32] = "";

			if (line)
				snprintf(where, sizeof where, ":%u", line);
			return kw_error_set(KW_ERR_CONFIG,
					    "%s%s: key \"machine_owner\" in [client]: \"%s\" is not a machine SID; write "
					    "S-1-5-21-a-b-c with three decimal numbers from 0 to 4294967295 (a domain's "
					    "SID, or a fixed one), or leave it out to derive it from the machine id",
					    conf ? conf : "client configuration", where, over);
		}
		return put(fn, over, out, size);
	}
	env = getenv(MACHINE_ID_ENV);
	if (env && *env)
		return owner_from_file(fn, env, true, conf, out, size);
	return owner_from_file(fn, MACHINE_ID_FILE, false, conf, out, size);
}

kw_rv kw_owner_machine(const kw_client *c, char *out, size_t size)
{
	return machine_owner("this machine's owner", c, out, size);
}

static kw_rv user_owner(const char *fn, const kw_client *c, unsigned uid, char *out, size_t size)
{
	char machine[KW_OWNER_MAX + 1], owner[KW_OWNER_MAX + 1];
	uint64_t rid = 1000 + 2 * (uint64_t)uid;
	kw_rv rv;

	if (rid > UINT32_MAX)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: uid %u gives RID %" PRIu64 ", beyond 32 bits", fn, uid,
				    rid);
	rv = machine_owner(fn, c, machine, sizeof machine);
	if (rv)
		return rv;
	if ((size_t)snprintf(owner, sizeof owner, "%s-%" PRIu64, machine, rid) >= sizeof owner)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: the user owner of uid %u would be longer than %d characters",
				    fn, uid, KW_OWNER_MAX);
	return put(fn, owner, out, size);
}

kw_rv kw_owner_user(const kw_client *c, unsigned uid, char *out, size_t size)
{
	return user_owner("the user's owner", c, uid, out, size);
}

kw_rv kw_owner_for_name(const kw_client *c, const char *name, int machine_scope, char *out, size_t size)
{
	static const char fn[] = "the owner of a key name";
	size_t len, slen = sizeof SHARED_SUFFIX - 1;

	if (!name || !*name)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: the key name is missing", fn);
	len = strlen(name);
	if (len >= slen && strcmp(name + len - slen, SHARED_SUFFIX) == 0)
		return put(fn, KW_OWNER_SHARED, out, size);
	if (machine_scope)
		return machine_owner(fn, c, out, size);
	return user_owner(fn, c, (unsigned)getuid(), out, size);
}
