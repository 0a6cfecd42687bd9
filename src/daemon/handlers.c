/*
 * Request handlers for the TLS side: Hello (authentication by client
 * certificate), Enroll (setup password -> credential), and the key
 * operations of the caller's partition. Every handler answers with a
 * status and, on failure, a message that says what, where and what to do.
 * A handler never returns private or secret key bytes in the clear: no
 * response has a body for them; WrapKey sends an extractable key only
 * encrypted under a wrapping key that never leaves the HSM.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"

#define LIST_PAGE_DEFAULT 500
#define LIST_PAGE_MAX 1000
#define RANDOM_MAX 65536
#define SIG_MAX 1024
/* a list page stops growing past this many bytes of values, well below KW_MAX_FRAME */
#define LIST_PAGE_BYTES (512u * 1024u)
#define WRAPPED_MAX (KW_WRAP_MAX + 16)

struct kw_scratch_item {
	struct kw_scratch_item *next;
	void *ptr;
	size_t n;
	void (*free_fn)(void *, size_t);
};

static void free_plain(void *ptr, size_t n)
{
	(void)n;
	free(ptr);
}

/* Keeps ptr until kw_scratch_free; false (and ptr already freed) when out of memory. */
static bool adopt(struct kw_scratch *s, void *ptr, size_t n, void (*free_fn)(void *, size_t))
{
	struct kw_scratch_item *item = malloc(sizeof *item);

	if (!item) {
		free_fn(ptr, n); /* cannot keep it: the response then lacks it */
		return false;
	}
	item->ptr = ptr;
	item->n = n;
	item->free_fn = free_fn;
	item->next = s->head;
	s->head = item;
	return true;
}

bool kw_scratch_adopt(struct kw_scratch *s, void *ptr, size_t n, void (*free_fn)(void *, size_t))
{
	return adopt(s, ptr, n, free_fn);
}

void *kw_scratch_alloc(struct kw_scratch *s, size_t size)
{
	void *p = calloc(1, size ? size : 1);

	return p && adopt(s, p, 0, free_plain) ? p : NULL;
}

void kw_scratch_free(struct kw_scratch *s)
{
	while (s->head) {
		struct kw_scratch_item *item = s->head;
		s->head = item->next;
		item->free_fn(item->ptr, item->n);
		free(item);
	}
}

static void free_rows(void *ptr, size_t n)
{
	kw_object_rows_free(ptr, n);
}

void kw_response_status(Keyward__Response *resp, kw_rv rv)
{
	resp->status = (Keyward__Status)rv;
	if (rv) {
		const char *msg = kw_last_error();
		resp->message = (char *)(msg[0] ? msg : kw_rv_text(rv));
	}
}

bool kw_request_is_slow(const Keyward__Request *req)
{
	switch (req->body_case) {
	case KEYWARD__REQUEST__BODY_GENERATE_KEY:
	case KEYWARD__REQUEST__BODY_ADMIN_INIT:
	case KEYWARD__REQUEST__BODY_ADMIN_UNLOCK:
	case KEYWARD__REQUEST__BODY_AUDIT_VERIFY:
	case KEYWARD__REQUEST__BODY_AUDIT_ARCHIVE:
	case KEYWARD__REQUEST__BODY_AUDIT_LIST: /* a page of the log, read from the store */
	case KEYWARD__REQUEST__BODY_BACKUP_BEGIN:
	case KEYWARD__REQUEST__BODY_RESTORE_COMMIT:
		return true;
	default:
		return false;
	}
}

static void fill_info(Keyward__ObjectInfo *info, const struct kw_object_row *row)
{
	keyward__object_info__init(info);
	info->id = row->id;
	info->owner = (char *)row->owner;
	info->name = (char *)row->name;
	info->cls = (Keyward__ObjectClass)row->cls;
	info->key_type = (Keyward__KeyType)row->key_type;
	info->bits = row->bits;
	info->curve = (char *)row->curve;
	/* a private or secret row holds no value; the sealed bytes never get here */
	if (row->cls == KW_CLASS_PUBLIC_KEY) {
		info->public_key.data = row->value;
		info->public_key.len = row->value_len;
	} else if (row->cls == KW_CLASS_CERTIFICATE || row->cls == KW_CLASS_DATA) {
		info->value.data = row->value;
		info->value.len = row->value_len;
		info->application = (char *)row->application;
	}
	info->ckaid.data = (uint8_t *)row->ckaid;
	info->ckaid.len = row->ckaid_len;
	info->sensitive = row->sensitive;
	info->extractable = row->extractable;
	info->modifiable = row->modifiable;
	info->never_extractable = row->never_extractable;
	info->always_sensitive = row->always_sensitive;
	info->usages = row->usages & ~KW_ROW_DERIVED;
	info->derived = (row->usages & KW_ROW_DERIVED) != 0;
	info->created = row->created;
	info->pair_id = row->pair_id;
	info->session = kw_session_id(row->id);
}

/* An array of ObjectInfo pointers over rows (rows adopted by the scratch). */
static Keyward__ObjectInfo **infos_of(struct kw_scratch *s, struct kw_object_row *rows, size_t n)
{
	Keyward__ObjectInfo *infos, **ptrs;

	if (!kw_scratch_adopt(s, rows, n, free_rows))
		return NULL;
	infos = kw_scratch_alloc(s, n * sizeof *infos);
	ptrs = kw_scratch_alloc(s, n * sizeof *ptrs);
	if (!infos || !ptrs)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		fill_info(&infos[i], &rows[i]);
		ptrs[i] = &infos[i];
	}
	return ptrs;
}

static Keyward__ObjectInfo *info_of(struct kw_scratch *s, struct kw_object_row *row)
{
	struct kw_object_row *copy = malloc(sizeof *copy);
	Keyward__ObjectInfo **ptrs;

	if (!copy) {
		kw_object_row_cleanup(row);
		return NULL;
	}
	*copy = *row; /* takes over row->value */
	memset(row, 0, sizeof *row);
	ptrs = infos_of(s, copy, 1);
	return ptrs ? ptrs[0] : NULL;
}

/* Answers with one object; the row's value is handed to the scratch. */
static kw_rv answer_object(Keyward__Response *resp, struct kw_scratch *s, struct kw_object_row *row)
{
	resp->object = info_of(s, row);
	if (!resp->object)
		return KW_ERR_NO_MEMORY;
	resp->body_case = KEYWARD__RESPONSE__BODY_OBJECT;
	return KW_OK;
}

static void hex_prefix(const unsigned char *fpr, char *out, size_t bytes)
{
	for (size_t i = 0; i < bytes; i++)
		sprintf(out + 2 * i, "%02x", fpr[i]);
}

static void audit(struct kw_server *srv, const struct kw_peer *peer, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void audit(struct kw_server *srv, const struct kw_peer *peer, const char *event, const char *fmt, ...)
{
	char detail[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	if (kw_keystore_audit(srv->ks, peer->partition, peer->actor, event, detail))
		kw_log(KW_LOG_ERROR, "audit: cannot record %s (%s): %s", event, detail, kw_last_error());
}

/* A failed authentication by a peer not (yet) authenticated: aggregated per source (usage.c). */
static void audit_failure(struct kw_server *srv, const struct kw_peer *peer, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void audit_failure(struct kw_server *srv, const struct kw_peer *peer, const char *event, const char *fmt, ...)
{
	char detail[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	kw_usage_fail(srv->usage, srv->ks, peer->address, event, detail);
}

static kw_rv on_hello(struct kw_server *srv, struct kw_peer *peer, const Keyward__Hello *h,
		      Keyward__Response *resp, struct kw_scratch *s)
{
	Keyward__HelloResult *r = kw_scratch_alloc(s, sizeof *r);
	char who[80], name[KW_PARTITION_NAME_MAX + 1];
	uint64_t pid, generation, store_generation = 0;
	kw_rv rv;

	if (!r)
		return KW_ERR_NO_MEMORY;
	if (h->max_version < 1 || h->min_version > KW_PROTOCOL_VERSION || h->min_version > h->max_version)
		return kw_error_set(KW_ERR_VERSION, "client speaks protocol versions %u to %u, this HSM speaks %u",
				    h->min_version, h->max_version, KW_PROTOCOL_VERSION);
	keyward__hello_result__init(r);
	r->version = KW_PROTOCOL_VERSION;
	r->server = "keywardd " KEYWARD_VERSION;
	r->initialized = kw_keystore_initialized(srv->ks);
	r->locked = kw_keystore_locked(srv->ks);
	r->partition = "";
	resp->body_case = KEYWARD__RESPONSE__BODY_HELLO;
	resp->hello = r;
	if (!peer->has_cert)
		return KW_OK; /* may enroll, nothing else */

	snprintf(who, sizeof who, "credential ");
	hex_prefix(peer->fingerprint, who + strlen(who), 8);
	generation = atomic_load(&srv->revocations);
	if ((rv = kw_keystore_generation(srv->ks, &store_generation)))
		return kw_error_set(KW_ERR_STORE, "%s could not be checked: %s", who, kw_last_error());
	rv = kw_keystore_credential_find(srv->ks, peer->fingerprint, &pid);
	if (rv == KW_OK)
		rv = kw_keystore_partition_name(srv->ks, pid, name);
	if (rv == KW_ERR_STORE || rv == KW_ERR_NO_MEMORY)
		/* the store could not answer (a shared store unreachable): no verdict on the credential, no lockout */
		return kw_error_set(KW_ERR_STORE, "%s could not be checked: %s", who, kw_last_error());
	if (rv) {
		char why[200];
		snprintf(why, sizeof why, "%s", kw_last_error());
		/* unregistered: counted where made-up identities are, apart from real ones */
		if ((rv = kw_lockout_check(srv->lockout, KW_LOCKOUT_STRANGER, who)))
			return rv;
		kw_lockout_fail(srv->lockout, KW_LOCKOUT_STRANGER, who);
		audit_failure(srv, peer, "auth.fail", "%s from %s: not registered or revoked", who, peer->address);
		return kw_error_set(KW_ERR_AUTH,
				    "this client certificate (%s) is not accepted by this HSM (%s): it was revoked, "
				    "or its partition deleted; register again with a setup password",
				    who, why);
	}
	if ((rv = kw_lockout_check(srv->lockout, KW_LOCKOUT_KNOWN, who)))
		return rv;
	if (h->partition && h->partition[0] && strcmp(h->partition, name) != 0) {
		kw_lockout_fail(srv->lockout, KW_LOCKOUT_KNOWN, who);
		audit_failure(srv, peer, "auth.fail", "%s from %s asked for partition \"%s\"", who, peer->address, h->partition);
		return kw_error_set(KW_ERR_AUTH, "this credential belongs to partition \"%s\", not \"%s\"", name,
				    h->partition);
	}
	kw_lockout_success(srv->lockout, KW_LOCKOUT_KNOWN, who);
	peer->revocations_seen = generation;
	peer->store_generation_seen = store_generation;
	/* the table of this connection's session objects, before any request can use it */
	if (!peer->session_objects && (rv = kw_session_objects_new(&srv->session_objects, &peer->session_objects)))
		return rv;
	peer->authenticated = true;
	peer->partition_id = pid;
	memcpy(peer->partition, name, sizeof peer->partition);
	r->partition = kw_scratch_alloc(s, sizeof name);
	if (r->partition)
		memcpy(r->partition, name, sizeof name);
	kw_debug(KW_DEBUG_TLS, "connection %s: authenticated as %s of partition %s", peer->address, peer->actor, name);
	return KW_OK;
}

static void free_x509(void *ptr, size_t n)
{
	(void)n;
	OPENSSL_free(ptr);
}

/* "enrollments from HOST": the peer's address without its port. */
static void address_who(const struct kw_peer *peer, char *who, size_t size)
{
	const char *colon = strrchr(peer->address, ':');
	int host_len = colon ? (int)(colon - peer->address) : (int)strlen(peer->address);

	snprintf(who, size, "enrollments from %.*s", host_len, peer->address);
}

static kw_rv on_enroll(struct kw_server *srv, struct kw_peer *peer, const Keyward__Enroll *e,
		       Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_partition_info part;
	unsigned char hash[SHA256_DIGEST_LENGTH], fpr[KW_FINGERPRINT_LEN];
	char who[120] = "", from[120], subject[160];
	Keyward__EnrollResult *r;
	X509 *cert = NULL;
	unsigned char *der = NULL;
	int der_len;
	kw_rv rv;

	address_who(peer, from, sizeof from);
	if ((rv = kw_lockout_check(srv->lockout, KW_LOCKOUT_ADDRESS, from)))
		return rv;
	if (!e->setup_password || !e->setup_password[0] || !e->csr.len)
		return kw_error_set(KW_ERR_ARGUMENTS, "enroll: a partition, its setup password and a CSR are needed");
	/*
	 * Only a partition that exists has a lockout entry: a made-up name is
	 * counted against the source address alone, so names cannot fill the
	 * table; its answer is the same as a wrong password's.
	 */
	rv = kw_keystore_partition_get(srv->ks, e->partition, &part);
	if (rv == KW_OK) {
		snprintf(who, sizeof who, "setup password of partition \"%.64s\"", part.name);
		if ((rv = kw_lockout_check(srv->lockout, KW_LOCKOUT_KNOWN, who)))
			return rv;
		if (!part.setup_pending)
			rv = KW_ERR_AUTH;
	}
	if (rv == KW_OK) {
		rv = kw_tls_issue_client(&srv->tls, e->csr.data, e->csr.len, part.name, &cert);
		if (rv)
			return rv; /* a bad CSR says so; it is not a failed authentication */
		SHA256((const unsigned char *)e->setup_password, strlen(e->setup_password), hash);
		kw_tls_fingerprint(cert, fpr);
		X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
		rv = kw_keystore_enroll(srv->ks, part.id, hash, fpr, subject);
		OPENSSL_cleanse(hash, sizeof hash);
	}
	if (rv == KW_ERR_AUTH || rv == KW_ERR_NOT_FOUND) {
		kw_lockout_fail(srv->lockout, KW_LOCKOUT_ADDRESS, from);
		if (who[0]) {
			kw_lockout_fail(srv->lockout, KW_LOCKOUT_KNOWN, who);
			audit_failure(srv, peer, "enroll.fail", "%s from %s", who, peer->address);
		} else {
			audit_failure(srv, peer, "enroll.fail", "unknown partition from %s", peer->address);
		}
		rv = kw_error_set(KW_ERR_AUTH,
				  "enrollment refused for partition \"%.64s\": unknown partition, or the setup password "
				  "is wrong or was already used (ask the HSM administrator for a new one: keyward-admin "
				  "partition password NAME)",
				  e->partition ? e->partition : "");
		goto out;
	}
	if (rv)
		goto out;
	kw_lockout_success(srv->lockout, KW_LOCKOUT_KNOWN, who);
	snprintf(peer->partition, sizeof peer->partition, "%s", part.name);
	audit(srv, peer, "partition.enroll", "credential %s issued to %s", subject, peer->address);

	r = kw_scratch_alloc(s, sizeof *r);
	if (!r) {
		rv = KW_ERR_NO_MEMORY;
		goto out;
	}
	keyward__enroll_result__init(r);
	der_len = i2d_X509(cert, &der);
	if (der_len > 0 && kw_scratch_adopt(s, der, 0, free_x509)) {
		r->certificate.data = der;
		r->certificate.len = (size_t)der_len;
	}
	der = NULL;
	der_len = i2d_X509(srv->tls.ca, &der);
	if (der_len > 0 && kw_scratch_adopt(s, der, 0, free_x509)) {
		r->ca_certificate.data = der;
		r->ca_certificate.len = (size_t)der_len;
	}
	resp->body_case = KEYWARD__RESPONSE__BODY_ENROLL;
	resp->enroll = r;
out:
	X509_free(cert);
	return rv;
}

/* The object a KeyRef names: by id, or by owner + name + class. */
static kw_rv resolve(struct kw_server *srv, const struct kw_peer *peer, const Keyward__ObjectRef *ref,
		     enum kw_class want, uint64_t *id)
{
	struct kw_object_row row = {0};
	static const enum kw_class any[] = {KW_CLASS_PRIVATE_KEY, KW_CLASS_SECRET_KEY, KW_CLASS_PUBLIC_KEY,
					    KW_CLASS_CERTIFICATE, KW_CLASS_DATA};
	kw_rv rv = KW_ERR_NOT_FOUND;

	if (!ref)
		return kw_error_set(KW_ERR_ARGUMENTS, "no object named: give an id, or an owner and a name");
	if (ref->id) {
		*id = ref->id;
		return KW_OK;
	}
	if (!ref->owner || !ref->owner[0] || !ref->name || !ref->name[0])
		return kw_error_set(KW_ERR_ARGUMENTS, "no object named: give an id, or an owner and a name");
	if (ref->cls != KEYWARD__OBJECT_CLASS__CLASS_ANY)
		want = (enum kw_class)ref->cls;
	for (unsigned i = 0; i < sizeof any / sizeof any[0] && rv == KW_ERR_NOT_FOUND; i++) {
		enum kw_class cls = want != KW_CLASS_ANY ? want : any[i];
		/* the connection's own session object of that name comes first */
		if (kw_session_find(peer->session_objects, peer->partition_id, ref->owner, ref->name, cls, id) == KW_OK)
			return KW_OK;
		rv = kw_keystore_find(srv->ks, peer->partition_id, ref->owner, ref->name, cls, &row);
		if (want != KW_CLASS_ANY)
			break;
	}
	if (rv == KW_OK)
		*id = row.id;
	kw_object_row_cleanup(&row);
	return rv;
}

/* Session objects are made and destroyed, never changed, copied, moved or wrapped. */
static kw_rv not_session(uint64_t id, const char *what)
{
	if (!kw_session_id(id))
		return KW_OK;
	return kw_error_set(KW_ERR_ARGUMENTS,
			    "%s: 0x%" PRIx64 " is a session object, which cannot be changed, copied or wrapped (make a "
			    "token object for that)",
			    what, id);
}

/* GenerateKey of an AES key or a generic secret: random bytes sealed as one SECRET_KEY row. */
static kw_rv generate_secret(struct kw_server *srv, struct kw_peer *peer, const Keyward__GenerateKey *g,
			     Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row row = {0};
	struct kw_keygen spec;
	Keyward__KeyPair *pair;
	unsigned char key[KW_GENERIC_MAX];
	bool generic = g->key_type == KEYWARD__KEY_TYPE__GENERIC_SECRET;
	unsigned usages = g->usages ? g->usages : generic ? KW_USAGE_SIGN : KW_USAGE_WRAP;
	kw_rv rv;

	if (generic) {
		if (usages != KW_USAGE_SIGN)
			return kw_error_set(KW_ERR_KEY_FUNCTION, "generic secrets sign (HMAC, usage 0x%x), not usages 0x%x",
					    KW_USAGE_SIGN, usages);
		if (g->bits % 8 || !kw_secret_len_ok(KW_KEY_GENERIC, g->bits / 8))
			return kw_error_set(KW_ERR_KEY_SIZE, "generic secrets have %d to %d bytes, not %u bits",
					    KW_GENERIC_MIN, KW_GENERIC_MAX, g->bits);
	} else {
		if (usages & ~(KW_USAGE_WRAP | KW_USAGE_DECRYPT))
			return kw_error_set(KW_ERR_KEY_FUNCTION,
					    "AES keys wrap (usage 0x%x) and encrypt and decrypt (usage 0x%x), not usages "
					    "0x%x",
					    KW_USAGE_WRAP, KW_USAGE_DECRYPT, usages);
		if (g->bits != 128 && g->bits != 192 && g->bits != 256)
			return kw_error_set(KW_ERR_KEY_SIZE, "AES keys are 128, 192 or 256 bits, not %u", g->bits);
	}
	if (RAND_priv_bytes(key, (int)g->bits / 8) != 1)
		return kw_error_set(KW_ERR_CRYPTO, "generate: the random generator failed");
	spec = (struct kw_keygen){.owner = g->owner, .name = g->name, .extractable = g->extractable,
				  .modifiable = !g->not_modifiable, .usages = usages, .ckaid = g->ckaid.data,
				  .ckaid_len = g->ckaid.len, .secret_type = generic ? KW_KEY_GENERIC : KW_KEY_AES};
	rv = kw_keystore_put_secret(srv->ks, peer->partition_id, &spec, key, g->bits / 8, &row);
	OPENSSL_cleanse(key, sizeof key);
	if (rv)
		return rv;
	pair = kw_scratch_alloc(s, sizeof *pair);
	if (!pair)
		return KW_ERR_NO_MEMORY;
	keyward__key_pair__init(pair);
	pair->secret_key = info_of(s, &row);
	if (!pair->secret_key)
		return KW_ERR_NO_MEMORY;
	resp->body_case = KEYWARD__RESPONSE__BODY_KEY_PAIR;
	resp->key_pair = pair;
	return KW_OK;
}

static kw_rv on_generate(struct kw_server *srv, struct kw_peer *peer, const Keyward__GenerateKey *g,
			 Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row priv = {0}, pub = {0};
	struct kw_keygen spec = {0};
	Keyward__KeyPair *pair;
	EVP_PKEY *pkey = NULL;
	unsigned usages = g->usages;
	kw_rv rv;

	if (kw_keystore_locked(srv->ks))
		return kw_error_set(KW_ERR_STORE_LOCKED, "the HSM is locked: an administrator must unlock it "
							 "(keyward-admin unlock)");
	if (usages & ~(KW_USAGE_SIGN | KW_USAGE_DECRYPT | KW_USAGE_DERIVE | KW_USAGE_WRAP))
		return kw_error_set(KW_ERR_ARGUMENTS, "unknown usage bits 0x%x", usages);
	if (g->ckaid.len > KW_CKAID_MAX)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "generate: the CKA_ID is %zu bytes long, at most %d",
				    g->ckaid.len, KW_CKAID_MAX);
	if ((g->key_type == KEYWARD__KEY_TYPE__AES || g->key_type == KEYWARD__KEY_TYPE__GENERIC_SECRET) && g->session)
		return kw_error_set(KW_ERR_ARGUMENTS, "generate \"%s\": secret keys are token objects only, not session "
						      "objects",
				    g->name ? g->name : "");
	if (g->key_type == KEYWARD__KEY_TYPE__AES || g->key_type == KEYWARD__KEY_TYPE__GENERIC_SECRET)
		return generate_secret(srv, peer, g, resp, s);
	if (!usages)
		usages = g->key_type == KEYWARD__KEY_TYPE__RSA ? KW_USAGE_SIGN | KW_USAGE_DECRYPT : KW_USAGE_SIGN;
	if (g->key_type != KEYWARD__KEY_TYPE__RSA && (usages & (KW_USAGE_DECRYPT | KW_USAGE_WRAP)))
		return kw_error_set(KW_ERR_KEY_FUNCTION, "only RSA keys may decrypt or wrap");
	if (g->key_type == KEYWARD__KEY_TYPE__ED25519 && (usages & KW_USAGE_DERIVE))
		return kw_error_set(KW_ERR_KEY_FUNCTION, "Ed25519 keys only sign");
	if (g->key_type == KEYWARD__KEY_TYPE__RSA && (rv = kw_policy_rsa_bits(&srv->cfg, "generate", g->bits)))
		return rv;
	rv = kw_crypto_generate((enum kw_key_type)g->key_type, g->bits, g->curve ? g->curve : "", &pkey);
	if (rv)
		return rv;
	spec.owner = g->owner;
	spec.name = g->name;
	spec.extractable = g->extractable;
	spec.modifiable = !g->not_modifiable;
	spec.usages = usages;
	spec.ckaid = g->ckaid.data;
	spec.ckaid_len = g->ckaid.len;
	if (g->session)
		rv = kw_session_put_keypair(peer->session_objects, peer->partition_id, &spec, pkey, &priv, &pub);
	else
		rv = kw_keystore_put_keypair(srv->ks, peer->partition_id, &spec, pkey, &priv, &pub);
	EVP_PKEY_free(pkey);
	if (rv)
		return rv;
	pair = kw_scratch_alloc(s, sizeof *pair);
	if (!pair) {
		kw_object_row_cleanup(&priv);
		kw_object_row_cleanup(&pub);
		return KW_ERR_NO_MEMORY;
	}
	keyward__key_pair__init(pair);
	pair->private_key = info_of(s, &priv);
	pair->public_key = info_of(s, &pub);
	resp->body_case = KEYWARD__RESPONSE__BODY_KEY_PAIR;
	resp->key_pair = pair;
	return KW_OK;
}

/*
 * The unsealed private key a request names, if its usages allow `usage`.
 * Raw RSA (RSA_RAW, CKM_RSA_X_509) is the same private operation whether it
 * is called signing or decrypting: a key may use it only when it has both
 * usages, or a sign-only key would decrypt and a decrypt-only key would sign.
 */
static kw_rv usable_key(struct kw_server *srv, const struct kw_peer *peer, const Keyward__ObjectRef *ref,
			unsigned usage, Keyward__Mechanism mech, const char *verb, struct kw_cached_key *key,
			uint64_t *id)
{
	kw_rv rv;

	if ((rv = resolve(srv, peer, ref, KW_CLASS_PRIVATE_KEY, id)))
		return rv;
	if (kw_session_id(*id))
		rv = kw_session_key(peer->session_objects, peer->partition_id, *id, key);
	else
		/* on a shared store still_valid read the generation for this request: no second round trip */
		rv = kw_keycache_get(srv->keys, srv->ks,
				     kw_keystore_shared(srv->ks) ? &peer->store_generation_seen : NULL,
				     peer->partition_id, *id, key);
	if (rv)
		return rv;
	if (!(key->usages & usage)) {
		rv = kw_error_set(KW_ERR_KEY_FUNCTION, "key %s/%s may not %s (its usages do not include %s)",
				  key->owner, key->name, verb, verb);
		kw_cached_key_release(key);
	} else if (mech == KEYWARD__MECHANISM__RSA_RAW &&
		   (key->usages & (KW_USAGE_SIGN | KW_USAGE_DECRYPT)) != (KW_USAGE_SIGN | KW_USAGE_DECRYPT)) {
		rv = kw_error_set(KW_ERR_KEY_FUNCTION,
				  "key %s/%s may not %s with raw RSA (RSA_RAW, CKM_RSA_X_509): that needs both usages "
				  "sign and decrypt, and the key has only %s",
				  key->owner, key->name, verb, verb);
		kw_cached_key_release(key);
	}
	return rv;
}

static void free_secret(void *ptr, size_t n)
{
	OPENSSL_cleanse(ptr, n);
	free(ptr);
}

/*
 * The unsealed secret key a request names, if it is of type `type` and its
 * usages include `usage` (verb names the use in messages): *key (the
 * caller wipes and frees it), its row and id.
 */
static kw_rv usable_secret(struct kw_server *srv, const struct kw_peer *peer, const Keyward__ObjectRef *ref,
			   enum kw_key_type type, unsigned usage, const char *verb, unsigned char **key, size_t *key_len,
			   struct kw_object_row *row, uint64_t *id)
{
	kw_rv rv;

	if ((rv = resolve(srv, peer, ref, KW_CLASS_SECRET_KEY, id)))
		return rv;
	if (kw_session_id(*id))
		return kw_error_set(KW_ERR_KEY_TYPE, "%s: 0x%" PRIx64 " is a session object, not a secret key", verb, *id);
	/* unsealing authenticates the row's type and usages */
	if ((rv = kw_keystore_load_secret(srv->ks, peer->partition_id, *id, key, key_len, row)))
		return rv;
	if (row->key_type != type)
		rv = kw_error_set(KW_ERR_KEY_TYPE, "%s: %s/%s is not %s", verb, row->owner, row->name,
				  type == KW_KEY_AES ? "an AES key" : "a generic secret");
	else if (!(row->usages & usage))
		rv = kw_error_set(KW_ERR_KEY_FUNCTION, "%s: key %s/%s may not %s (its usages do not include %s)", verb,
				  row->owner, row->name, verb, usage == KW_USAGE_SIGN ? "sign" : "decrypt");
	if (rv) {
		free_secret(*key, *key_len);
		*key = NULL;
	}
	return rv;
}

/* Counts one use of secret key row in the key-use audit. */
static void count_secret_use(struct kw_server *srv, const struct kw_peer *peer, const char *event,
			     const struct kw_object_row *row, uint64_t id)
{
	struct kw_cached_key who = {0};

	who.key_type = row->key_type;
	snprintf(who.owner, sizeof who.owner, "%s", row->owner);
	snprintf(who.name, sizeof who.name, "%s", row->name);
	kw_usage_count(srv->usage, peer->partition, peer->actor, event, &who, id);
}

/*
 * Whether r may be signed with key: mechanism, parameters, data length,
 * and the [policy] on its hash. Sign checks here just before signing;
 * SignBatch checks every element here before it signs any, so a check
 * added here holds for both.
 */
static kw_rv sign_check(const struct kw_server *srv, const struct kw_cached_key *key, const Keyward__Sign *r)
{
	kw_rv rv = kw_crypto_sign_check(key->pkey, key->key_type, r);

	return rv ? rv : kw_policy_sign_hash(&srv->cfg, r->hash);
}

/*
 * One signature with a key that usable_key allowed to sign: the
 * per-signature work of Sign and of every SignBatch element, each counted
 * in the key-use audit. sig has *sig_len bytes.
 */
static kw_rv sign_one(struct kw_server *srv, const struct kw_peer *peer, const struct kw_cached_key *key, uint64_t id,
		      const Keyward__Sign *r, unsigned char *sig, size_t *sig_len)
{
	kw_rv rv;

	if ((rv = sign_check(srv, key, r)))
		return rv;
	rv = kw_crypto_sign(key->pkey, key->key_type, r, sig, sig_len);
	if (rv == KW_OK)
		kw_usage_count(srv->usage, peer->partition, peer->actor, "key.sign", key, id);
	return rv;
}

/* Sign with mechanism HMAC: a generic secret of usage SIGN, which never leaves keywardd. */
static kw_rv on_hmac(struct kw_server *srv, struct kw_peer *peer, const Keyward__Sign *r, Keyward__Response *resp,
		     struct kw_scratch *s)
{
	struct kw_object_row row = {0};
	Keyward__Signature *out = kw_scratch_alloc(s, sizeof *out);
	unsigned char *mac = kw_scratch_alloc(s, 64), *key = NULL;
	size_t mac_len = 64, key_len = 0;
	uint64_t id;
	kw_rv rv;

	if (!out || !mac)
		return KW_ERR_NO_MEMORY;
	rv = usable_secret(srv, peer, r->key, KW_KEY_GENERIC, KW_USAGE_SIGN, "sign", &key, &key_len, &row, &id);
	if (!rv)
		rv = kw_crypto_hmac(key, key_len, r, mac, &mac_len);
	if (!rv) {
		count_secret_use(srv, peer, "key.sign", &row, id);
		keyward__signature__init(out);
		out->signature.data = mac;
		out->signature.len = mac_len;
		resp->body_case = KEYWARD__RESPONSE__BODY_SIGNATURE;
		resp->signature = out;
	}
	if (key)
		free_secret(key, key_len);
	kw_object_row_cleanup(&row);
	return rv;
}

static kw_rv on_sign(struct kw_server *srv, struct kw_peer *peer, const Keyward__Sign *r, Keyward__Response *resp,
		     struct kw_scratch *s)
{
	Keyward__Signature *out = kw_scratch_alloc(s, sizeof *out);
	unsigned char *sig = kw_scratch_alloc(s, SIG_MAX);
	size_t sig_len = SIG_MAX;
	struct kw_cached_key key;
	uint64_t id;
	kw_rv rv;

	if (!out || !sig)
		return KW_ERR_NO_MEMORY;
	if (r->mechanism == KEYWARD__MECHANISM__HMAC)
		return on_hmac(srv, peer, r, resp, s);
	if ((rv = usable_key(srv, peer, r->key, KW_USAGE_SIGN, r->mechanism, "sign", &key, &id)))
		return rv;
	rv = sign_one(srv, peer, &key, id, r, sig, &sig_len);
	if (rv == KW_OK) {
		keyward__signature__init(out);
		out->signature.data = sig;
		out->signature.len = sig_len;
		resp->body_case = KEYWARD__RESPONSE__BODY_SIGNATURE;
		resp->signature = out;
	}
	kw_cached_key_release(&key);
	return rv;
}

/* Rewrites the pending error as "sign batch: element i: <it>", keeping its code. */
static kw_rv batch_error(kw_rv rv, size_t i)
{
	char why[512];

	snprintf(why, sizeof why, "%s", kw_last_error()); /* kw_error_set rewrites the buffer */
	return kw_error_set(rv, "sign batch: element %zu: %s", i, why);
}

/*
 * SignBatch: every element checked first (nothing signed if one is bad),
 * then signed in order; an error while signing fails the whole batch.
 */
static kw_rv on_sign_batch(struct kw_server *srv, struct kw_peer *peer, const Keyward__SignBatch *b,
			   Keyward__Response *resp, struct kw_scratch *s)
{
	Keyward__SignatureBatch *out = kw_scratch_alloc(s, sizeof *out);
	Keyward__Sign one;
	ProtobufCBinaryData *sigs = NULL;
	unsigned char *buf = NULL;
	struct kw_cached_key key;
	size_t n = b->n_data, per;
	uint64_t id;
	kw_rv rv;

	if (!out)
		return KW_ERR_NO_MEMORY;
	if (n == 0)
		return kw_error_set(KW_ERR_ARGUMENTS, "sign batch: no data to sign (1 to %d elements)", KW_SIGN_BATCH_MAX);
	if (n > KW_SIGN_BATCH_MAX)
		return kw_error_set(KW_ERR_ARGUMENTS, "sign batch: %zu elements, at most %d in one batch", n,
				    KW_SIGN_BATCH_MAX);
	if (!b->sign || b->sign->data.len)
		return kw_error_set(KW_ERR_ARGUMENTS, "sign batch: give the key and mechanism in `sign`, with no data "
						      "there (the data go in `data`)");
	if ((rv = usable_key(srv, peer, b->sign->key, KW_USAGE_SIGN, b->sign->mechanism, "sign", &key, &id)))
		return rv;
	one = *b->sign;
	for (size_t i = 0; i < n; i++) {
		one.data = b->data[i];
		if ((rv = sign_check(srv, &key, &one))) {
			rv = batch_error(rv, i);
			goto out;
		}
	}
	/* EVP_PKEY_get_size bounds every signature of the key (ECDSA's r||s is shorter than its DER) */
	per = (size_t)EVP_PKEY_get_size(key.pkey);
	if (per == 0 || per > SIG_MAX)
		per = SIG_MAX;
	sigs = kw_scratch_alloc(s, n * sizeof *sigs);
	buf = kw_scratch_alloc(s, n * per);
	if (!sigs || !buf) {
		rv = KW_ERR_NO_MEMORY;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len = per;
		one.data = b->data[i];
		if ((rv = sign_one(srv, peer, &key, id, &one, buf + i * per, &len))) {
			rv = batch_error(rv, i);
			goto out;
		}
		sigs[i].data = buf + i * per;
		sigs[i].len = len;
	}
	keyward__signature_batch__init(out);
	out->signatures = sigs;
	out->n_signatures = n;
	resp->body_case = KEYWARD__RESPONSE__BODY_SIGNATURE_BATCH;
	resp->signature_batch = out;
out:
	kw_cached_key_release(&key);
	return rv;
}

static kw_rv on_decrypt(struct kw_server *srv, struct kw_peer *peer, const Keyward__Decrypt *r,
			Keyward__Response *resp, struct kw_scratch *s)
{
	Keyward__Plaintext *out = kw_scratch_alloc(s, sizeof *out);
	unsigned char *plain = calloc(1, SIG_MAX);
	size_t len = SIG_MAX;
	struct kw_cached_key key;
	uint64_t id;
	kw_rv rv;

	/* the plaintext may be a session key: wiped when the answer is sent */
	if (plain && !kw_scratch_adopt(s, plain, SIG_MAX, free_secret))
		plain = NULL;
	if (!out || !plain)
		return KW_ERR_NO_MEMORY;
	if ((rv = usable_key(srv, peer, r->key, KW_USAGE_DECRYPT, r->mechanism, "decrypt", &key, &id)))
		return rv;
	rv = kw_crypto_decrypt(key.pkey, key.key_type, r, plain, &len);
	if (rv == KW_OK) {
		kw_usage_count(srv->usage, peer->partition, peer->actor, "key.decrypt", &key, id);
		keyward__plaintext__init(out);
		out->data.data = plain;
		out->data.len = len;
		resp->body_case = KEYWARD__RESPONSE__BODY_PLAINTEXT;
		resp->plaintext = out;
	}
	kw_cached_key_release(&key);
	return rv;
}

/* SecretCrypt: AES with a secret key of usage DECRYPT, which never leaves keywardd. */
static kw_rv on_secret_crypt(struct kw_server *srv, struct kw_peer *peer, const Keyward__SecretCrypt *r,
			     Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row row = {0};
	Keyward__Plaintext *out = kw_scratch_alloc(s, sizeof *out);
	size_t cap = r->data.len + 16, len = cap, key_len = 0;
	unsigned char *buf = calloc(1, cap), *key = NULL;
	uint64_t id;
	kw_rv rv;

	/* the output may be a plaintext: wiped when the answer is sent */
	if (buf && !kw_scratch_adopt(s, buf, cap, free_secret))
		buf = NULL;
	if (!out || !buf)
		return KW_ERR_NO_MEMORY;
	rv = usable_secret(srv, peer, r->key, KW_KEY_AES, KW_USAGE_DECRYPT, r->encrypt ? "encrypt" : "decrypt", &key,
			   &key_len, &row, &id);
	if (!rv)
		rv = kw_crypto_aes(key, key_len, r, buf, &len);
	if (!rv) {
		count_secret_use(srv, peer, r->encrypt ? "key.encrypt" : "key.decrypt", &row, id);
		keyward__plaintext__init(out);
		out->data.data = buf;
		out->data.len = len;
		resp->body_case = KEYWARD__RESPONSE__BODY_PLAINTEXT;
		resp->plaintext = out;
	}
	if (key)
		free_secret(key, key_len);
	kw_object_row_cleanup(&row);
	return rv;
}

static kw_rv on_get(struct kw_server *srv, struct kw_peer *peer, const Keyward__GetObject *g,
		    Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row row = {0};
	uint64_t id;
	kw_rv rv;

	if ((rv = resolve(srv, peer, g->ref, KW_CLASS_ANY, &id)))
		return rv;
	if (kw_session_id(id))
		rv = kw_session_get(peer->session_objects, peer->partition_id, id, &row);
	else
		rv = kw_keystore_get(srv->ks, peer->partition_id, id, &row);
	if (rv)
		return rv;
	return answer_object(resp, s, &row);
}

/* Appends the session objects a listing asks for to rows (n of them so far), up to limit in all. */
static kw_rv append_session_rows(const struct kw_peer *peer, const Keyward__ListObjects *l, unsigned limit,
				 struct kw_object_row **rows, size_t *n, bool *more)
{
	struct kw_object_row *srows = NULL, *all;
	size_t sn = 0;
	kw_rv rv;

	rv = kw_session_list(peer->session_objects, peer->partition_id, l->owner && l->owner[0] ? l->owner : NULL,
			     l->name && l->name[0] ? l->name : NULL, l->after_id, limit - *n, &srows, &sn, more);
	if (rv) {
		kw_object_rows_free(*rows, *n);
		*rows = NULL;
		*n = 0;
		return rv;
	}
	if (!sn)
		return KW_OK;
	all = realloc(*rows, (*n + sn) * sizeof *all);
	if (!all) {
		kw_object_rows_free(srows, sn);
		kw_object_rows_free(*rows, *n);
		*rows = NULL;
		*n = 0;
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory listing objects");
	}
	memcpy(all + *n, srows, sn * sizeof *srows);
	free(srows); /* the values are all's now */
	*rows = all;
	*n += sn;
	return KW_OK;
}

static kw_rv on_list(struct kw_server *srv, struct kw_peer *peer, const Keyward__ListObjects *l,
		     Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row *rows = NULL;
	Keyward__ObjectList *out = kw_scratch_alloc(s, sizeof *out);
	unsigned limit = l->limit ? l->limit : LIST_PAGE_DEFAULT;
	size_t n = 0;
	bool more = false;
	kw_rv rv;

	if (!out)
		return KW_ERR_NO_MEMORY;
	if (limit > LIST_PAGE_MAX)
		limit = LIST_PAGE_MAX;
	rv = kw_keystore_list(srv->ks, peer->partition_id, l->owner && l->owner[0] ? l->owner : NULL,
			      l->name && l->name[0] ? l->name : NULL, l->after_id, limit, &rows, &n, &more);
	if (rv)
		return rv;
	/* then this connection's session objects, whose ids are above every store id */
	if (!more && n < limit && (rv = append_session_rows(peer, l, limit, &rows, &n, &more)))
		return rv;
	/* certificates and data objects are up to 64 KiB each: stop the page before the frame limit */
	for (size_t i = 0, bytes = 0; i < n; i++) {
		bytes += rows[i].value_len + 1024;
		if (bytes > LIST_PAGE_BYTES && i > 0) {
			for (size_t j = i; j < n; j++)
				kw_object_row_cleanup(&rows[j]);
			n = i;
			more = true;
			break;
		}
	}
	keyward__object_list__init(out);
	out->objects = infos_of(s, rows, n);
	if (n && !out->objects)
		return KW_ERR_NO_MEMORY;
	out->n_objects = n;
	out->more = more;
	resp->body_case = KEYWARD__RESPONSE__BODY_OBJECT_LIST;
	resp->object_list = out;
	return KW_OK;
}

static kw_rv on_delete(struct kw_server *srv, struct kw_peer *peer, const Keyward__DeleteObjects *d,
		       Keyward__Response *resp, struct kw_scratch *s)
{
	const Keyward__ObjectRef *ref = d->ref;
	Keyward__Count *out = kw_scratch_alloc(s, sizeof *out);
	unsigned deleted = 0;
	kw_rv rv;

	if (!out)
		return KW_ERR_NO_MEMORY;
	if (!ref || (!ref->id && (!ref->owner || !ref->owner[0] || !ref->name || !ref->name[0])))
		return kw_error_set(KW_ERR_ARGUMENTS, "delete: give an id, or an owner and a name");
	/* this connection's session objects, then (unless a session id was named) the store's */
	kw_session_delete(peer->session_objects, peer->partition_id, ref->id, ref->owner, ref->name,
			  (enum kw_class)ref->cls, &deleted);
	if (kw_session_id(ref->id) && !deleted)
		return kw_error_set(KW_ERR_NOT_FOUND,
				    "delete: no session object 0x%" PRIx64 " on this connection (session objects "
				    "belong to the connection that made them and end with it)",
				    ref->id);
	if (!kw_session_id(ref->id)) {
		unsigned stored = 0;

		rv = kw_keystore_delete(srv->ks, peer->partition_id, ref->id, ref->owner, ref->name,
					(enum kw_class)ref->cls, &stored);
		if (rv && !(rv == KW_ERR_NOT_FOUND && deleted))
			return rv;
		deleted += stored;
	}
	keyward__count__init(out);
	out->count = deleted;
	resp->body_case = KEYWARD__RESPONSE__BODY_COUNT;
	resp->count = out;
	return KW_OK;
}

static int tristate(Keyward__Tristate t)
{
	return t == KEYWARD__TRISTATE__SET_TRUE ? 1 : t == KEYWARD__TRISTATE__SET_FALSE ? 0 : -1;
}

static kw_rv on_set_attributes(struct kw_server *srv, struct kw_peer *peer, const Keyward__SetAttributes *a,
			       Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row row = {0};
	struct kw_attr_change chg = {0};
	const char *new_name = a->new_name && a->new_name[0] ? a->new_name : NULL;
	char ckaid_hex[2 * KW_CKAID_MAX + 1] = "";
	uint64_t id;
	kw_rv rv;

	if ((rv = resolve(srv, peer, a->ref, KW_CLASS_ANY, &id)) || (rv = not_session(id, "set attributes")))
		return rv;
	if (a->set_ckaid && a->new_ckaid.len > KW_CKAID_MAX)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "set attributes: the CKA_ID is %zu bytes long, at most %d",
				    a->new_ckaid.len, KW_CKAID_MAX);
	chg.extractable = tristate(a->extractable);
	chg.modifiable = tristate(a->modifiable);
	chg.new_name = new_name;
	chg.set_ckaid = a->set_ckaid;
	chg.ckaid = a->new_ckaid.data;
	chg.ckaid_len = a->new_ckaid.len;
	rv = kw_keystore_modify(srv->ks, peer->partition_id, id, &chg);
	if (rv)
		return rv;
	if ((rv = kw_keystore_get(srv->ks, peer->partition_id, id, &row)))
		return rv;
	if (a->set_ckaid)
		hex_prefix(row.ckaid, ckaid_hex, row.ckaid_len);
	return answer_object(resp, s, &row);
}

static kw_rv on_change_owner(struct kw_server *srv, struct kw_peer *peer, const Keyward__ChangeOwner *c,
			     Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row *rows = NULL;
	Keyward__ObjectInfos *out = kw_scratch_alloc(s, sizeof *out);
	size_t n = 0;
	kw_rv rv;

	if (!out)
		return KW_ERR_NO_MEMORY;
	if (!c->name || !c->name[0] || !c->old_owner || !c->old_owner[0] || !c->new_owner || !c->new_owner[0])
		return kw_error_set(KW_ERR_ARGUMENTS, "change owner: a name, the old owner and the new owner are needed");
	rv = kw_keystore_change_owner(srv->ks, peer->partition_id, c->name, c->old_owner, c->new_owner, &rows, &n);
	if (rv)
		return rv;
	keyward__object_infos__init(out);
	out->objects = infos_of(s, rows, n);
	out->n_objects = out->objects ? n : 0;
	resp->body_case = KEYWARD__RESPONSE__BODY_OBJECTS;
	resp->objects = out;
	return KW_OK;
}

static kw_rv on_create_object(struct kw_server *srv, struct kw_peer *peer, const Keyward__CreateObject *c,
			      Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row row = {0};
	struct kw_objspec spec = {0};
	kw_rv rv;

	if (!c->owner || !c->owner[0] || !c->name || !c->name[0])
		return kw_error_set(KW_ERR_ARGUMENTS, "create object: an owner and a name are needed");
	if (c->cls != KEYWARD__OBJECT_CLASS__CERTIFICATE && c->cls != KEYWARD__OBJECT_CLASS__DATA &&
	    c->cls != KEYWARD__OBJECT_CLASS__PUBLIC_KEY)
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "create object \"%s\": only certificates, data objects and public keys are created "
				    "this way (class %d); private and secret keys are generated on the HSM or unwrapped",
				    c->name, (int)c->cls);
	if (c->ckaid.len > KW_CKAID_MAX)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "create object \"%s\": the CKA_ID is %zu bytes long, at most %d",
				    c->name, c->ckaid.len, KW_CKAID_MAX);
	spec.owner = c->owner;
	spec.name = c->name;
	spec.cls = (enum kw_class)c->cls;
	spec.value = c->value.data;
	spec.value_len = c->value.len;
	spec.ckaid = c->ckaid.data;
	spec.ckaid_len = c->ckaid.len;
	spec.application = c->application;
	spec.modifiable = !c->not_modifiable;
	spec.usages = c->usages;
	if (c->session)
		rv = kw_session_put_object(peer->session_objects, peer->partition_id, &spec, &row);
	else
		rv = kw_keystore_put_object(srv->ks, peer->partition_id, &spec, &row);
	if (rv)
		return rv;
	return answer_object(resp, s, &row);
}

/*
 * The wrapping key of a WrapKey, checked: a key with usage wrap, of the
 * class the mechanism wants (AES: a secret key; RSA_OAEP: an RSA public
 * key), and not one that also decrypts (for a public key: whose private
 * half does), which would decrypt the wrapped key back into the clear.
 */
static kw_rv wrapping_key_ok(const Keyward__WrapKey *w, const struct kw_object_row *wrow, uint64_t wid)
{
	bool oaep = w->mechanism == KEYWARD__MECHANISM__RSA_OAEP;

	if (!(wrow->usages & KW_USAGE_WRAP))
		return kw_error_set(KW_ERR_KEY_FUNCTION,
				    "wrap: key %s/%s may not wrap (its usages do not include wrap)", wrow->owner,
				    wrow->name);
	if (!oaep && wrow->cls != KW_CLASS_SECRET_KEY)
		return kw_error_set(KW_ERR_KEY_TYPE,
				    "wrap: %s/%s (0x%" PRIx64 ") is not a secret key: AES key wrap "
				    "wraps under AES keys",
				    wrow->owner, wrow->name, wid);
	if (oaep && (wrow->cls != KW_CLASS_PUBLIC_KEY || wrow->key_type != KW_KEY_RSA))
		return kw_error_set(KW_ERR_KEY_TYPE,
				    "wrap: %s/%s (0x%" PRIx64 ") is not an RSA public key: RSA_OAEP "
				    "wraps under one",
				    wrow->owner, wrow->name, wid);
	if ((wrow->usages & KW_USAGE_DECRYPT) && (wrow->cls == KW_CLASS_SECRET_KEY || wrow->pair_id))
		return kw_error_set(
			KW_ERR_KEY_FUNCTION,
			"wrap: key %s/%s also decrypts, so the wrapped key could be decrypted into the clear "
			"with it: wrap with a key whose only usage is wrap",
			wrow->owner, wrow->name);
	return KW_OK;
}

static kw_rv on_wrap_key(struct kw_server *srv, struct kw_peer *peer, const Keyward__WrapKey *w,
			 Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row wrow = {0}, krow = {0};
	Keyward__WrappedKey *out = kw_scratch_alloc(s, sizeof *out);
	unsigned char *wrapped = kw_scratch_alloc(s, WRAPPED_MAX), *kek = NULL, *plain = NULL;
	size_t kek_len = 0, plain_len = 0, wrapped_len = WRAPPED_MAX;
	bool oaep = w->mechanism == KEYWARD__MECHANISM__RSA_OAEP;
	const char *mech_name = oaep						   ? "RSA_OAEP"
				: w->mechanism == KEYWARD__MECHANISM__AES_KEY_WRAP ? "AES_KEY_WRAP"
										   : "AES_KEY_WRAP_PAD";
	uint64_t wid, kid;
	kw_rv rv;

	if (!out || !wrapped)
		return KW_ERR_NO_MEMORY;
	if (w->mechanism != KEYWARD__MECHANISM__AES_KEY_WRAP && w->mechanism != KEYWARD__MECHANISM__AES_KEY_WRAP_PAD &&
	    !oaep)
		return kw_error_set(KW_ERR_MECHANISM,
				    "wrap: mechanism %d does not wrap keys (AES_KEY_WRAP, "
				    "AES_KEY_WRAP_PAD or RSA_OAEP)",
				    (int)w->mechanism);
	if ((rv = resolve(srv, peer, w->wrapping_key, oaep ? KW_CLASS_PUBLIC_KEY : KW_CLASS_SECRET_KEY, &wid)) ||
	    (rv = resolve(srv, peer, w->key, KW_CLASS_ANY, &kid)) || (rv = not_session(kid, "wrap")))
		return rv;
	rv = kw_keystore_get(srv->ks, peer->partition_id, wid, &wrow);
	/* a key leaves under an RSA key only as strong as the policy asks (a public key may be older, or imported) */
	if (rv || (rv = wrapping_key_ok(w, &wrow, wid)) ||
	    (oaep && (rv = kw_policy_rsa_bits(&srv->cfg, "wrap", wrow.bits))))
		goto out;
	rv = kw_keystore_get(srv->ks, peer->partition_id, kid, &krow);
	if (rv)
		goto out;
	if (w->mechanism != KEYWARD__MECHANISM__AES_KEY_WRAP_PAD && krow.cls != KW_CLASS_SECRET_KEY) {
		rv = kw_error_set(KW_ERR_MECHANISM, "wrap: %s wraps secret keys only; wrap %s/%s with AES_KEY_WRAP_PAD",
				  mech_name, krow.owner, krow.name);
		goto out;
	}
	kw_object_row_cleanup(&krow);
	/* refuses a key that is not extractable, whatever we checked here */
	rv = kw_keystore_export_key(srv->ks, peer->partition_id, kid, &plain, &plain_len, &krow);
	if (rv)
		goto out;
	if (oaep) {
		/* a public key is not sealed: its row is what there is */
		rv = kw_crypto_wrap_oaep(wrow.value, wrow.value_len, w, plain, plain_len, wrapped, &wrapped_len);
	} else {
		kw_object_row_cleanup(&wrow);
		rv = kw_keystore_load_secret(srv->ks, peer->partition_id, wid, &kek, &kek_len, &wrow);
		/* the usages again, now authenticated by unsealing */
		if (!rv && !(rv = wrapping_key_ok(w, &wrow, wid)))
			rv = kw_crypto_wrap(kek, kek_len, w->mechanism, plain, plain_len, wrapped, &wrapped_len);
	}
	if (rv)
		goto out;
	/* a key leaves the HSM: only once that is on record */
	{
		char detail[600];
		snprintf(detail, sizeof detail, "%s/%s (0x%" PRIx64 ") wrapped under %s/%s (0x%" PRIx64 ") with %s",
			 krow.owner, krow.name, kid, wrow.owner, wrow.name, wid, mech_name);
		rv = kw_keystore_audit(srv->ks, peer->partition, peer->actor, "key.wrap", detail);
		if (rv) {
			char why[512];
			snprintf(why, sizeof why, "%s", kw_last_error()); /* the message buffer is rewritten below */
			rv = kw_error_set(rv, "wrap refused: it could not be recorded in the audit log: %s", why);
			goto out;
		}
	}
	keyward__wrapped_key__init(out);
	out->data.data = wrapped;
	out->data.len = wrapped_len;
	resp->body_case = KEYWARD__RESPONSE__BODY_WRAPPED_KEY;
	resp->wrapped_key = out;
out:
	if (kek) {
		OPENSSL_cleanse(kek, kek_len);
		free(kek);
	}
	if (plain) {
		OPENSSL_cleanse(plain, plain_len);
		free(plain);
	}
	kw_object_row_cleanup(&wrow);
	kw_object_row_cleanup(&krow);
	return rv;
}

/* The usages an unwrapped key of this class and type gets (0: the default), as GenerateKey's. */
static kw_rv unwrap_usages(const Keyward__UnwrapKey *u, unsigned *usages)
{
	unsigned want = u->usages;

	if (want & ~(KW_USAGE_SIGN | KW_USAGE_DECRYPT | KW_USAGE_DERIVE | KW_USAGE_WRAP))
		return kw_error_set(KW_ERR_ARGUMENTS, "unwrap: unknown usage bits 0x%x", want);
	switch (u->key_type) {
	case KEYWARD__KEY_TYPE__AES:
		*usages = want ? want : KW_USAGE_WRAP;
		if (*usages & ~(KW_USAGE_WRAP | KW_USAGE_DECRYPT))
			return kw_error_set(KW_ERR_KEY_FUNCTION, "unwrap: AES keys wrap and encrypt, not usages 0x%x", want);
		return KW_OK;
	case KEYWARD__KEY_TYPE__GENERIC_SECRET:
		*usages = want ? want : KW_USAGE_SIGN;
		if (*usages != KW_USAGE_SIGN)
			return kw_error_set(KW_ERR_KEY_FUNCTION, "unwrap: generic secrets sign (HMAC), not usages 0x%x", want);
		return KW_OK;
	case KEYWARD__KEY_TYPE__RSA:
		*usages = want ? want : KW_USAGE_SIGN | KW_USAGE_DECRYPT;
		return KW_OK;
	case KEYWARD__KEY_TYPE__EC:
	case KEYWARD__KEY_TYPE__ED25519:
		*usages = want ? want : KW_USAGE_SIGN;
		if (*usages & (KW_USAGE_DECRYPT | KW_USAGE_WRAP) ||
		    (u->key_type == KEYWARD__KEY_TYPE__ED25519 && (*usages & KW_USAGE_DERIVE)))
			return kw_error_set(KW_ERR_KEY_FUNCTION, "unwrap: only RSA keys decrypt or wrap, Ed25519 keys only sign");
		return KW_OK;
	default:
		return kw_error_set(KW_ERR_KEY_TYPE, "unwrap: key type %d (AES, GENERIC_SECRET, RSA, EC or ED25519)",
				    (int)u->key_type);
	}
}

/* A private key from its PKCS#8 DER, of the type u names and a size the HSM makes too. */
static kw_rv unwrapped_private(const Keyward__UnwrapKey *u, const unsigned char *der, size_t len, EVP_PKEY **out)
{
	const unsigned char *p = der;
	PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
	EVP_PKEY *pkey = p8 && p == der + len ? EVP_PKCS82PKEY(p8) : NULL;
	int id = pkey ? EVP_PKEY_get_base_id(pkey) : 0, bits = pkey ? EVP_PKEY_get_bits(pkey) : 0;
	kw_rv rv = KW_OK;

	PKCS8_PRIV_KEY_INFO_free(p8);
	if (!pkey)
		rv = kw_error_set(KW_ERR_ENCRYPTED_DATA, "unwrap: the unwrapped bytes are no PKCS#8 private key");
	else if ((u->key_type == KEYWARD__KEY_TYPE__RSA) != (id == EVP_PKEY_RSA) ||
		 (u->key_type == KEYWARD__KEY_TYPE__EC) != (id == EVP_PKEY_EC) ||
		 (u->key_type == KEYWARD__KEY_TYPE__ED25519) != (id == EVP_PKEY_ED25519))
		rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "unwrap: the key is of another type than key type %d says",
				  (int)u->key_type);
	else if (id == EVP_PKEY_RSA && bits != 2048 && bits != 3072 && bits != 4096)
		rv = kw_error_set(KW_ERR_KEY_SIZE, "unwrap: RSA keys are 2048, 3072 or 4096 bits, not %d", bits);
	if (rv) {
		ERR_clear_error();
		EVP_PKEY_free(pkey);
		return rv;
	}
	*out = pkey;
	return KW_OK;
}

static kw_rv on_unwrap_key(struct kw_server *srv, struct kw_peer *peer, const Keyward__UnwrapKey *u,
			   Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row row = {0}, priv = {0}, pub = {0};
	struct kw_cached_key rsa = {0};
	Keyward__KeyPair *pair = kw_scratch_alloc(s, sizeof *pair);
	bool secret = u->cls == KEYWARD__OBJECT_CLASS__SECRET_KEY, have_rsa = false;
	size_t cap = u->wrapped.len + 16, plain_len = cap, kek_len = 0;
	unsigned char *plain = calloc(1, cap), *kek = NULL;
	EVP_PKEY *pkey = NULL;
	struct kw_keygen spec;
	unsigned usages = 0;
	uint64_t uid;
	kw_rv rv;

	if (!pair || !plain) {
		free(plain);
		return KW_ERR_NO_MEMORY;
	}
	if (!secret && u->cls != KEYWARD__OBJECT_CLASS__PRIVATE_KEY)
		rv = kw_error_set(KW_ERR_ARGUMENTS, "unwrap: class %d (SECRET_KEY or PRIVATE_KEY)", (int)u->cls);
	else if (secret != (u->key_type == KEYWARD__KEY_TYPE__AES || u->key_type == KEYWARD__KEY_TYPE__GENERIC_SECRET))
		rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "unwrap: key type %d is not of class %d", (int)u->key_type,
				  (int)u->cls);
	else if (u->ckaid.len > KW_CKAID_MAX)
		rv = kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "unwrap: the CKA_ID is %zu bytes long, at most %d",
				  u->ckaid.len, KW_CKAID_MAX);
	else if (u->wrapped.len == 0 || u->wrapped.len > KW_WRAP_MAX + 16)
		rv = kw_error_set(KW_ERR_DATA_LEN, "unwrap: %zu wrapped bytes, 1 to %d can be", u->wrapped.len,
				  KW_WRAP_MAX + 16);
	else
		rv = unwrap_usages(u, &usages);
	if (rv)
		goto out;
	if (u->mechanism == KEYWARD__MECHANISM__RSA_OAEP) {
		Keyward__Decrypt d = KEYWARD__DECRYPT__INIT;

		if (!secret) {
			rv = kw_error_set(KW_ERR_MECHANISM, "unwrap: RSA_OAEP unwraps secret keys only (a private key "
							    "is unwrapped with AES_KEY_WRAP_PAD)");
			goto out;
		}
		if ((rv = usable_key(srv, peer, u->unwrapping_key, KW_USAGE_WRAP, u->mechanism, "unwrap", &rsa, &uid)))
			goto out;
		have_rsa = true;
		d.mechanism = u->mechanism;
		d.hash = u->hash;
		d.mgf1_hash = u->mgf1_hash;
		d.label = u->label;
		d.data = u->wrapped;
		if ((rv = kw_crypto_decrypt(rsa.pkey, rsa.key_type, &d, plain, &plain_len))) {
			if (rv == KW_ERR_ENCRYPTED_DATA)
				rv = kw_error_set(rv, "unwrap: the wrapped key does not decrypt with %s/%s", rsa.owner,
						  rsa.name);
			goto out;
		}
	} else {
		rv = usable_secret(srv, peer, u->unwrapping_key, KW_KEY_AES, KW_USAGE_WRAP, "unwrap", &kek, &kek_len,
				   &row, &uid);
		if (!rv)
			rv = kw_crypto_unwrap(kek, kek_len, u->mechanism, u->wrapped.data, u->wrapped.len, plain,
					      &plain_len);
		if (rv)
			goto out;
	}
	spec = (struct kw_keygen){.owner = u->owner, .name = u->name, .extractable = u->extractable,
				  .modifiable = !u->not_modifiable, .usages = usages, .ckaid = u->ckaid.data,
				  .ckaid_len = u->ckaid.len, .imported = true,
				  .secret_type = u->key_type == KEYWARD__KEY_TYPE__GENERIC_SECRET ? KW_KEY_GENERIC : KW_KEY_AES};
	if (secret) {
		if (!kw_secret_len_ok(spec.secret_type, plain_len)) {
			rv = kw_error_set(KW_ERR_KEY_SIZE, "unwrap: a %s cannot have %zu bytes",
					  spec.secret_type == KW_KEY_AES ? "AES key" : "generic secret", plain_len);
			goto out;
		}
		rv = kw_keystore_put_secret(srv->ks, peer->partition_id, &spec, plain, plain_len, &priv);
	} else {
		if ((rv = unwrapped_private(u, plain, plain_len, &pkey)))
			goto out;
		if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA &&
		    (rv = kw_policy_rsa_bits(&srv->cfg, "unwrap", (unsigned)EVP_PKEY_get_bits(pkey))))
			goto out;
		rv = kw_keystore_put_keypair(srv->ks, peer->partition_id, &spec, pkey, &priv, &pub);
	}
	if (rv)
		goto out;
	audit(srv, peer, "key.unwrap", "%s/%s (0x%" PRIx64 ") imported, unwrapped with 0x%" PRIx64, priv.owner,
	      priv.name, priv.id, uid);
	keyward__key_pair__init(pair);
	if (secret) {
		pair->secret_key = info_of(s, &priv);
	} else {
		pair->private_key = info_of(s, &priv);
		pair->public_key = info_of(s, &pub);
	}
	if (!(secret ? pair->secret_key != NULL : pair->private_key && pair->public_key)) {
		rv = KW_ERR_NO_MEMORY;
		goto out;
	}
	resp->body_case = KEYWARD__RESPONSE__BODY_KEY_PAIR;
	resp->key_pair = pair;
out:
	if (have_rsa)
		kw_cached_key_release(&rsa);
	if (kek)
		free_secret(kek, kek_len);
	free_secret(plain, cap);
	EVP_PKEY_free(pkey);
	kw_object_row_cleanup(&row);
	kw_object_row_cleanup(&priv); /* emptied when answered */
	kw_object_row_cleanup(&pub);
	return rv;
}

static kw_rv on_derive_key(struct kw_server *srv, struct kw_peer *peer, const Keyward__DeriveKey *d,
			   Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row base = {0}, row = {0};
	struct kw_cached_key key = {0};
	Keyward__KeyPair *pair = kw_scratch_alloc(s, sizeof *pair);
	Keyward__UnwrapKey as = KEYWARD__UNWRAP_KEY__INIT;
	unsigned char secret[KW_GENERIC_MAX];
	bool generic = d->key_type == KEYWARD__KEY_TYPE__GENERIC_SECRET, have_key = false;
	struct kw_keygen spec;
	unsigned usages = 0;
	uint64_t id;
	kw_rv rv;

	if (!pair)
		return KW_ERR_NO_MEMORY;
	as.key_type = d->key_type;
	as.usages = d->usages;
	if (d->mechanism != KEYWARD__MECHANISM__ECDH)
		rv = kw_error_set(KW_ERR_MECHANISM, "derive: mechanism %d (ECDH)", (int)d->mechanism);
	else if (!generic && d->key_type != KEYWARD__KEY_TYPE__AES)
		rv = kw_error_set(KW_ERR_KEY_TYPE, "derive: key type %d (AES or GENERIC_SECRET)", (int)d->key_type);
	else if (!kw_secret_len_ok(generic ? KW_KEY_GENERIC : KW_KEY_AES, d->length))
		rv = kw_error_set(KW_ERR_KEY_SIZE, "derive: a %s of %u bytes", generic ? "generic secret" : "AES key",
				  d->length);
	else if (d->ckaid.len > KW_CKAID_MAX || d->public_data.len > 1024 || d->shared_data.len > 1024)
		rv = kw_error_set(KW_ERR_ARGUMENTS, "derive: the CKA_ID, public or shared data is too long");
	else
		rv = unwrap_usages(&as, &usages);
	if (rv)
		return rv;
	if ((rv = usable_key(srv, peer, d->base_key, KW_USAGE_DERIVE, d->mechanism, "derive", &key, &id)))
		return rv;
	have_key = true;
	if (key.key_type != KW_KEY_EC) {
		rv = kw_error_set(KW_ERR_KEY_TYPE, "derive: %s/%s is not an EC key", key.owner, key.name);
		goto out;
	}
	/* the base key's history carries over: a derived key is never-extractable only if its base was */
	if (!kw_session_id(id) && (rv = kw_keystore_get(srv->ks, peer->partition_id, id, &base)))
		goto out;
	if ((rv = kw_crypto_ecdh(key.pkey, d->public_data.data, d->public_data.len, d->cofactor, d->kdf,
				 d->shared_data.data, d->shared_data.len, secret, d->length)))
		goto out;
	spec = (struct kw_keygen){
		.owner = d->owner,
		.name = d->name,
		.extractable = d->extractable,
		.modifiable = !d->not_modifiable,
		.usages = usages,
		.ckaid = d->ckaid.data,
		.ckaid_len = d->ckaid.len,
		.secret_type = generic ? KW_KEY_GENERIC : KW_KEY_AES,
		/* PKCS#11 C_DeriveKey: always sensitive if the base was, never extractable if it was too */
		.imported = kw_session_id(id) ? false : !base.always_sensitive,
		.derived = true,
		.base_never_extractable = kw_session_id(id) ? true : base.never_extractable};
	rv = kw_keystore_put_secret(srv->ks, peer->partition_id, &spec, secret, d->length, &row);
	if (rv)
		goto out;
	kw_usage_count(srv->usage, peer->partition, peer->actor, "key.derive", &key, id);
	audit(srv, peer, "key.derive", "%s/%s (0x%" PRIx64 ") derived by ECDH from 0x%" PRIx64, row.owner, row.name,
	      row.id, id);
	keyward__key_pair__init(pair);
	if (!(pair->secret_key = info_of(s, &row))) {
		rv = KW_ERR_NO_MEMORY;
		goto out;
	}
	resp->body_case = KEYWARD__RESPONSE__BODY_KEY_PAIR;
	resp->key_pair = pair;
out:
	OPENSSL_cleanse(secret, sizeof secret);
	if (have_key)
		kw_cached_key_release(&key);
	kw_object_row_cleanup(&base);
	kw_object_row_cleanup(&row);
	return rv;
}

static kw_rv on_copy_object(struct kw_server *srv, struct kw_peer *peer, const Keyward__CopyObject *c,
			    Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_object_row *rows = NULL;
	Keyward__ObjectInfos *out = kw_scratch_alloc(s, sizeof *out);
	size_t n = 0;
	uint64_t id;
	kw_rv rv;

	if (!out)
		return KW_ERR_NO_MEMORY;
	if (!c->new_name || !c->new_name[0])
		return kw_error_set(KW_ERR_ARGUMENTS, "copy: a new name is needed");
	if ((rv = resolve(srv, peer, c->ref, KW_CLASS_ANY, &id)) || (rv = not_session(id, "copy")))
		return rv;
	rv = kw_keystore_copy(srv->ks, peer->partition_id, id, c->new_name, tristate(c->extractable),
			      tristate(c->modifiable), &rows, &n);
	if (rv)
		return rv;
	keyward__object_infos__init(out);
	out->objects = infos_of(s, rows, n);
	if (!out->objects)
		return KW_ERR_NO_MEMORY;
	out->n_objects = n;
	resp->body_case = KEYWARD__RESPONSE__BODY_OBJECTS;
	resp->objects = out;
	return KW_OK;
}

static kw_rv on_random(const Keyward__GenerateRandom *g, Keyward__Response *resp, struct kw_scratch *s)
{
	Keyward__Random *out = kw_scratch_alloc(s, sizeof *out);
	unsigned char *data;

	if (g->length == 0 || g->length > RANDOM_MAX)
		return kw_error_set(KW_ERR_DATA_LEN, "random: ask for 1 to %u bytes, not %u", RANDOM_MAX, g->length);
	data = kw_scratch_alloc(s, g->length);
	if (!out || !data)
		return KW_ERR_NO_MEMORY;
	if (RAND_bytes(data, (int)g->length) != 1)
		return kw_error_set(KW_ERR_CRYPTO, "random: the generator failed");
	keyward__random__init(out);
	out->data.data = data;
	out->data.len = g->length;
	resp->body_case = KEYWARD__RESPONSE__BODY_RANDOM;
	resp->random = out;
	return KW_OK;
}

/*
 * An authenticated connection's credential may have been revoked since its
 * Hello: looked up again only when a revocation happened since it was last
 * found valid, so the common case costs one atomic load. On a store shared
 * with other nodes a revocation may happen on another node: there the
 * store's generation (which every revocation and partition removal bumps,
 * on any node) is read as well, and a change of it looks again too.
 */
static kw_rv still_valid(struct kw_server *srv, struct kw_peer *peer)
{
	uint64_t generation = atomic_load(&srv->revocations), store_generation = 0, pid;
	char who[80];
	kw_rv rv;

	if (kw_keystore_shared(srv->ks) && (rv = kw_keystore_generation(srv->ks, &store_generation)))
		return rv; /* the store failed: say so, and look again next time */
	if (generation == peer->revocations_seen && store_generation == peer->store_generation_seen)
		return KW_OK;
	rv = kw_keystore_credential_find(srv->ks, peer->fingerprint, &pid);
	if (rv == KW_OK && pid == peer->partition_id) {
		peer->revocations_seen = generation;
		peer->store_generation_seen = store_generation;
		return KW_OK;
	}
	if (rv != KW_OK && rv != KW_ERR_AUTH)
		return rv; /* the store failed: say so, and look again next time */
	snprintf(who, sizeof who, "credential ");
	hex_prefix(peer->fingerprint, who + strlen(who), 8);
	return kw_error_set(KW_ERR_AUTH,
			    "this client certificate (%s) was revoked, or its partition deleted, by the HSM "
			    "administrator: this connection serves nothing more; register again with a new setup "
			    "password",
			    who);
}

bool kw_request_is_transfer(const Keyward__Request *req)
{
	switch (req->body_case) {
	case KEYWARD__REQUEST__BODY_BACKUP_BEGIN:
	case KEYWARD__REQUEST__BODY_BACKUP_READ:
	case KEYWARD__REQUEST__BODY_RESTORE_BEGIN:
	case KEYWARD__REQUEST__BODY_RESTORE_CHUNK:
	case KEYWARD__REQUEST__BODY_RESTORE_COMMIT:
		return true;
	default:
		return false;
	}
}

void kw_handle_request(struct kw_server *srv, struct kw_peer *peer, const Keyward__Request *req,
		       Keyward__Response *resp, struct kw_scratch *s)
{
	kw_rv rv;

	if (req->body_case == KEYWARD__REQUEST__BODY_HELLO) {
		rv = on_hello(srv, peer, req->hello, resp, s);
		goto out;
	}
	if (req->body_case == KEYWARD__REQUEST__BODY_ENROLL) {
		rv = on_enroll(srv, peer, req->enroll, resp, s);
		goto out;
	}
	/* 40 to 59, partition_delete, the backup transfers (70 to 74) and the audit reader (100 to 109):
	 * the admin socket's */
	if ((req->body_case >= KEYWARD__REQUEST__BODY_ADMIN_INIT &&
	     req->body_case < KEYWARD__REQUEST__BODY_SIGN_BATCH) ||
	    req->body_case == KEYWARD__REQUEST__BODY_PARTITION_DELETE || kw_request_is_transfer(req) ||
	    (req->body_case >= 100 && req->body_case <= 109)) {
		rv = kw_error_set(KW_ERR_PERMISSION, "administrative requests are served on the local admin socket only");
		goto out;
	}
	if (!peer->authenticated) {
		rv = kw_error_set(KW_ERR_AUTH, peer->has_cert ? "send Hello first: it authenticates this connection"
							     : "this connection has no client certificate: only Enroll "
							       "is served (register with the partition's setup password)");
		goto out;
	}
	if ((rv = still_valid(srv, peer)))
		goto out;
	switch (req->body_case) {
	case KEYWARD__REQUEST__BODY_GENERATE_KEY:
		rv = on_generate(srv, peer, req->generate_key, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_SIGN:
		rv = on_sign(srv, peer, req->sign, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_DECRYPT:
		rv = on_decrypt(srv, peer, req->decrypt, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_GET_OBJECT:
		rv = on_get(srv, peer, req->get_object, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_LIST_OBJECTS:
		rv = on_list(srv, peer, req->list_objects, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_DELETE_OBJECTS:
		rv = on_delete(srv, peer, req->delete_objects, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_SET_ATTRIBUTES:
		rv = on_set_attributes(srv, peer, req->set_attributes, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_CHANGE_OWNER:
		rv = on_change_owner(srv, peer, req->change_owner, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_GENERATE_RANDOM:
		rv = on_random(req->generate_random, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_CREATE_OBJECT:
		rv = on_create_object(srv, peer, req->create_object, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_WRAP_KEY:
		rv = on_wrap_key(srv, peer, req->wrap_key, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_COPY_OBJECT:
		rv = on_copy_object(srv, peer, req->copy_object, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_DERIVE_KEY:
		rv = on_derive_key(srv, peer, req->derive_key, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_UNWRAP_KEY:
		rv = on_unwrap_key(srv, peer, req->unwrap_key, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_SECRET_CRYPT:
		rv = on_secret_crypt(srv, peer, req->secret_crypt, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_SIGN_BATCH:
		rv = on_sign_batch(srv, peer, req->sign_batch, resp, s);
		break;
	default:
		rv = kw_error_set(KW_ERR_PROTOCOL, "unknown request type %d", (int)req->body_case);
		break;
	}
out:
	if (rv)
		resp->body_case = KEYWARD__RESPONSE__BODY__NOT_SET;
	kw_response_status(resp, rv);
}
