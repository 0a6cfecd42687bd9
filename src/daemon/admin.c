/*
 * Requests of the local admin socket (keyward-admin): initialise, unlock and
 * lock the HSM, create and delete partitions and their one-time setup passwords, list
 * and revoke client credentials, verify and read the audit log. The socket is mode 0600 and checked with SO_PEERCRED,
 * so whoever reaches it is root or keywardd's own user: the HSM's administrators. Passphrases, shares and setup
 * passwords pass through here and are wiped after use; none is logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <time.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/gate.h"

#define PASSPHRASE_MIN 8
#define SHARES_MAX 16
#define UNLOCK_WHO "security officer (unlock)"

static void admin_audit(struct kw_server *srv, const char *event, const char *detail)
{
	if (kw_keystore_audit(srv->ks, "", "admin", event, detail))
		kw_log(KW_LOG_ERROR, "audit: cannot record %s: %s", event, kw_last_error());
}

static void free_shares(void *ptr, size_t n)
{
	kw_keystore_shares_free(ptr, (unsigned)n);
}

static kw_rv on_init(struct kw_server *srv, const Keyward__AdminInit *a, Keyward__Response *resp,
		     struct kw_scratch *s)
{
	Keyward__AdminInitResult *r = kw_scratch_alloc(s, sizeof *r);
	char **shares = NULL;
	char detail[80];
	kw_rv rv;

	if (!r)
		return KW_ERR_NO_MEMORY;
	keyward__admin_init_result__init(r);
	if (kw_keystore_initialized(srv->ks))
		return kw_error_set(KW_ERR_ALREADY_INITIALIZED, "the HSM is already initialized (%s)",
				    kw_keystore_unlock_method(srv->ks));
	if (a->shares) {
		if (a->threshold < 2 || a->threshold > a->shares || a->shares > SHARES_MAX)
			return kw_error_set(KW_ERR_ARGUMENTS,
					    "shares: need 2 <= threshold <= shares <= %d, got %u of %u", SHARES_MAX,
					    a->threshold, a->shares);
		rv = kw_keystore_init_shamir(srv->ks, a->shares, a->threshold, &shares);
		if (rv)
			return rv;
		if (!kw_scratch_adopt(s, shares, a->shares, free_shares))
			return KW_ERR_NO_MEMORY; /* the shares are lost: init again cannot help, say so */
		r->shares = shares;
		r->n_shares = a->shares;
		snprintf(detail, sizeof detail, "master key split %u-of-%u", a->threshold, a->shares);
	} else {
		if (!a->passphrase || strlen(a->passphrase) < PASSPHRASE_MIN)
			return kw_error_set(KW_ERR_ARGUMENTS, "the passphrase must have at least %d characters",
					    PASSPHRASE_MIN);
		rv = kw_keystore_init_passphrase(srv->ks, a->passphrase);
		if (rv)
			return rv;
		snprintf(detail, sizeof detail, "master key under a passphrase");
	}
	admin_audit(srv, "hsm.init", detail);
	kw_log(KW_LOG_INFO, "HSM initialized: %s", detail);
	resp->body_case = KEYWARD__RESPONSE__BODY_ADMIN_INIT;
	resp->admin_init = r;
	return KW_OK;
}

static kw_rv on_unlock(struct kw_server *srv, const Keyward__AdminUnlock *a)
{
	kw_rv rv;

	if (!kw_keystore_initialized(srv->ks))
		return kw_error_set(KW_ERR_NOT_INITIALIZED, "the HSM is not initialized: keyward-admin init");
	if (!kw_keystore_locked(srv->ks))
		return KW_OK;
	if ((rv = kw_lockout_check(srv->lockout, KW_LOCKOUT_KNOWN, UNLOCK_WHO)))
		return rv;
	if (a->n_shares)
		rv = kw_keystore_unlock_shares(srv->ks, (const char *const *)a->shares, a->n_shares);
	else
		rv = kw_keystore_unlock_passphrase(srv->ks, a->passphrase ? a->passphrase : "");
	if (rv == KW_ERR_AUTH) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", kw_last_error());
		kw_lockout_fail(srv->lockout, KW_LOCKOUT_KNOWN, UNLOCK_WHO);
		admin_audit(srv, "hsm.unlock.fail", a->n_shares ? "shares rejected" : "passphrase rejected");
		return kw_error_set(rv, "%s", msg);
	}
	if (rv)
		return rv;
	kw_lockout_success(srv->lockout, KW_LOCKOUT_KNOWN, UNLOCK_WHO);
	admin_audit(srv, "hsm.unlock", kw_keystore_unlock_method(srv->ks));
	kw_log(KW_LOG_INFO, "HSM unlocked");
	return KW_OK;
}

static kw_rv on_status(struct kw_server *srv, Keyward__Response *resp, struct kw_scratch *s)
{
	Keyward__AdminStatusResult *r = kw_scratch_alloc(s, sizeof *r);
	struct kw_gate_counts counts;
	struct kw_partition_info *parts = NULL;
	size_t n = 0;

	if (!r)
		return KW_ERR_NO_MEMORY;
	keyward__admin_status_result__init(r);
	r->initialized = kw_keystore_initialized(srv->ks);
	r->locked = kw_keystore_locked(srv->ks);
	r->unlock_method = (char *)kw_keystore_unlock_method(srv->ks);
	if (kw_keystore_partition_list(srv->ks, &parts, &n) == KW_OK)
		r->partitions = (uint32_t)n;
	free(parts);
	kw_gate_counts(srv->gate, &counts);
	r->connections = counts.clients;
	r->unauthenticated = counts.strangers;
	r->admin_connections = counts.admins;
	r->refused = counts.refused;
	r->evicted = counts.evicted;
	r->core_dumps = prctl(PR_GET_DUMPABLE) == 1;
	r->session_objects = atomic_load(&srv->session_objects);
	r->version = KW_PROTOCOL_VERSION;
	r->listen = srv->bound;
	r->uptime = (uint64_t)(time(NULL) - srv->started);
	resp->body_case = KEYWARD__RESPONSE__BODY_ADMIN_STATUS;
	resp->admin_status = r;
	return KW_OK;
}

static void free_secret_string(void *ptr, size_t n)
{
	(void)n;
	OPENSSL_cleanse(ptr, strlen(ptr));
	free(ptr);
}

/* 25 characters from an unambiguous alphabet, in groups: ~120 bits. */
static kw_rv new_setup_password(char *out, size_t size, unsigned char hash[KW_SETUP_HASH_LEN])
{
	static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"; /* 32 symbols */
	unsigned char raw[25];
	size_t j = 0;

	if (size < 30 || RAND_bytes(raw, sizeof raw) != 1)
		return kw_error_set(KW_ERR_CRYPTO, "setup password: the random generator failed");
	for (size_t i = 0; i < sizeof raw; i++) {
		if (i && i % 5 == 0)
			out[j++] = '-';
		out[j++] = alphabet[raw[i] & 31];
	}
	out[j] = '\0';
	OPENSSL_cleanse(raw, sizeof raw);
	SHA256((const unsigned char *)out, strlen(out), hash);
	return KW_OK;
}

static kw_rv answer_password(Keyward__Response *resp, struct kw_scratch *s, const char *partition, char *password,
			     bool replaced)
{
	Keyward__SetupPassword *r = kw_scratch_alloc(s, sizeof *r);
	char *name = kw_scratch_alloc(s, strlen(partition) + 1);

	if (!r || !name) {
		free_secret_string(password, 0);
		return KW_ERR_NO_MEMORY;
	}
	if (!kw_scratch_adopt(s, password, 0, free_secret_string))
		return KW_ERR_NO_MEMORY;
	memcpy(name, partition, strlen(partition) + 1);
	keyward__setup_password__init(r);
	r->partition = name;
	r->setup_password = password;
	r->replaced = replaced;
	resp->body_case = KEYWARD__RESPONSE__BODY_SETUP_PASSWORD;
	resp->setup_password = r;
	return KW_OK;
}

static kw_rv on_partition_create(struct kw_server *srv, const Keyward__PartitionCreate *p,
				 Keyward__Response *resp, struct kw_scratch *s)
{
	unsigned char hash[KW_SETUP_HASH_LEN];
	char *password = calloc(1, 32);
	char detail[200];
	uint64_t id;
	kw_rv rv;

	if (!password)
		return KW_ERR_NO_MEMORY;
	if (!kw_keystore_initialized(srv->ks)) {
		free(password);
		return kw_error_set(KW_ERR_NOT_INITIALIZED, "initialize the HSM first: keyward-admin init");
	}
	rv = new_setup_password(password, 32, hash);
	if (rv == KW_OK)
		rv = kw_keystore_partition_create(srv->ks, p->name ? p->name : "", hash, &id);
	OPENSSL_cleanse(hash, sizeof hash);
	if (rv) {
		free_secret_string(password, 0);
		return rv;
	}
	snprintf(detail, sizeof detail, "partition \"%s\" created", p->name);
	admin_audit(srv, "partition.create", detail);
	return answer_password(resp, s, p->name, password, false);
}

static kw_rv on_partition_password(struct kw_server *srv, const Keyward__PartitionPassword *p,
				   Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_partition_info part;
	unsigned char hash[KW_SETUP_HASH_LEN];
	char *password;
	char detail[200];
	kw_rv rv;

	if ((rv = kw_keystore_partition_get(srv->ks, p->name ? p->name : "", &part)))
		return rv;
	password = calloc(1, 32);
	if (!password)
		return KW_ERR_NO_MEMORY;
	rv = new_setup_password(password, 32, hash);
	if (rv == KW_OK)
		rv = kw_keystore_partition_set_setup(srv->ks, part.id, hash);
	OPENSSL_cleanse(hash, sizeof hash);
	if (rv) {
		free_secret_string(password, 0);
		return rv;
	}
	/* a partition has one pending setup password: a new one cancels the one given before */
	snprintf(detail, sizeof detail, "new setup password for partition \"%s\"%s", part.name,
		 part.setup_pending ? " (the pending one cancelled)" : "");
	admin_audit(srv, "partition.password", detail);
	return answer_password(resp, s, part.name, password, part.setup_pending);
}

static kw_rv on_partition_delete(struct kw_server *srv, const Keyward__PartitionDelete *p, Keyward__Response *resp,
				 struct kw_scratch *s)
{
	Keyward__PartitionDeleted *r = kw_scratch_alloc(s, sizeof *r);
	struct kw_partition_info part;
	char detail[200], *name;
	kw_rv rv;

	if (!r || !(name = kw_scratch_alloc(s, KW_PARTITION_NAME_MAX + 1)))
		return KW_ERR_NO_MEMORY;
	if (!p->name || !p->name[0])
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "partition delete: name the partition (keyward-admin partition list)");
	if ((rv = kw_keystore_partition_delete(srv->ks, p->name, &part))) {
		if (rv == KW_ERR_NOT_FOUND)
			return kw_error_set(rv, "partition delete: no partition \"%s\" (keyward-admin partition list)",
					    p->name);
		return rv;
	}
	/* its keys leave the key cache at its next use (the store's generation moved); its credentials' open
	 * connections look again at their next request */
	atomic_fetch_add(&srv->revocations, 1);
	snprintf(detail, sizeof detail, "partition \"%s\" deleted with %u objects and %u client credentials", part.name,
		 part.objects, part.credentials);
	admin_audit(srv, "partition.delete", detail);
	kw_log(KW_LOG_INFO, "%s", detail);
	keyward__partition_deleted__init(r);
	memcpy(name, part.name, sizeof part.name);
	r->partition = name;
	r->objects = part.objects;
	r->credentials = part.credentials;
	resp->body_case = KEYWARD__RESPONSE__BODY_PARTITION_DELETED;
	resp->partition_deleted = r;
	return KW_OK;
}

static void free_list(void *ptr, size_t n)
{
	(void)n;
	free(ptr);
}

static kw_rv on_partition_list(struct kw_server *srv, Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_partition_info *parts = NULL;
	Keyward__Partitions *r = kw_scratch_alloc(s, sizeof *r);
	Keyward__PartitionInfo *infos, **ptrs;
	size_t n = 0;
	kw_rv rv;

	if (!r)
		return KW_ERR_NO_MEMORY;
	if ((rv = kw_keystore_partition_list(srv->ks, &parts, &n)))
		return rv;
	if (!kw_scratch_adopt(s, parts, n, free_list))
		return KW_ERR_NO_MEMORY;
	infos = kw_scratch_alloc(s, n * sizeof *infos);
	ptrs = kw_scratch_alloc(s, n * sizeof *ptrs);
	if (!infos || !ptrs)
		return KW_ERR_NO_MEMORY;
	keyward__partitions__init(r);
	for (size_t i = 0; i < n; i++) {
		keyward__partition_info__init(&infos[i]);
		infos[i].name = parts[i].name;
		infos[i].objects = parts[i].objects;
		infos[i].credentials = parts[i].credentials;
		infos[i].setup_pending = parts[i].setup_pending;
		ptrs[i] = &infos[i];
	}
	r->partitions = ptrs;
	r->n_partitions = n;
	resp->body_case = KEYWARD__RESPONSE__BODY_PARTITIONS;
	resp->partitions = r;
	return KW_OK;
}

/* The credentials in infos (handed to the scratch) as a Clients answer. */
static kw_rv answer_clients(Keyward__Response *resp, struct kw_scratch *s, struct kw_credential_info *infos, size_t n)
{
	Keyward__Clients *r = kw_scratch_alloc(s, sizeof *r);
	Keyward__ClientInfo *items, **ptrs;

	if (!kw_scratch_adopt(s, infos, n, free_list) || !r)
		return KW_ERR_NO_MEMORY;
	items = kw_scratch_alloc(s, (n ? n : 1) * sizeof *items);
	ptrs = kw_scratch_alloc(s, (n ? n : 1) * sizeof *ptrs);
	if (!items || !ptrs)
		return KW_ERR_NO_MEMORY;
	keyward__clients__init(r);
	for (size_t i = 0; i < n; i++) {
		keyward__client_info__init(&items[i]);
		items[i].fingerprint.data = infos[i].fingerprint;
		items[i].fingerprint.len = sizeof infos[i].fingerprint;
		items[i].subject = infos[i].subject;
		items[i].partition = infos[i].partition;
		items[i].enrolled = infos[i].created;
		items[i].revoked = infos[i].revoked;
		ptrs[i] = &items[i];
	}
	r->clients = ptrs;
	r->n_clients = n;
	resp->body_case = KEYWARD__RESPONSE__BODY_CLIENTS;
	resp->clients = r;
	return KW_OK;
}

static kw_rv on_client_list(struct kw_server *srv, const Keyward__ClientList *l, Keyward__Response *resp,
			    struct kw_scratch *s)
{
	struct kw_credential_info *infos = NULL;
	struct kw_partition_info part;
	size_t n = 0;
	kw_rv rv;

	if (l->partition && l->partition[0] && (rv = kw_keystore_partition_get(srv->ks, l->partition, &part)))
		return rv;
	if ((rv = kw_keystore_credential_list(srv->ks, l->partition, &infos, &n)))
		return rv;
	return answer_clients(resp, s, infos, n);
}

/* Whether `client` names this credential: a hex fingerprint prefix (8 to 64 digits), or the whole subject. */
static bool names_client(const struct kw_credential_info *c, const char *client)
{
	size_t len = strlen(client);
	char hex[2 * KW_FINGERPRINT_LEN + 1];

	if (strcmp(c->subject, client) == 0)
		return true;
	if (len < 8 || len > 2 * KW_FINGERPRINT_LEN || strspn(client, "0123456789abcdefABCDEF") != len)
		return false;
	for (size_t i = 0; i < KW_FINGERPRINT_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", c->fingerprint[i]);
	return strncasecmp(hex, client, len) == 0;
}

static kw_rv on_client_revoke(struct kw_server *srv, const Keyward__ClientRevoke *r, Keyward__Response *resp,
			      struct kw_scratch *s)
{
	struct kw_credential_info *infos = NULL;
	const char *client = r->client ? r->client : "";
	char detail[512], hex[17];
	size_t n = 0, found = 0, at = 0;
	kw_rv rv;

	if (!client[0])
		return kw_error_set(KW_ERR_ARGUMENTS, "client revoke: name the client by fingerprint or subject "
						      "(keyward-admin client list shows both)");
	if ((rv = kw_keystore_credential_list(srv->ks, NULL, &infos, &n)))
		return rv;
	for (size_t i = 0; i < n; i++)
		if (names_client(&infos[i], client)) {
			found++;
			at = i;
		}
	if (found != 1) {
		rv = found ? kw_error_set(KW_ERR_ARGUMENTS,
					  "client revoke: \"%s\" names %zu credentials: give a fingerprint (keyward-admin "
					  "client list)",
					  client, found)
			   : kw_error_set(KW_ERR_NOT_FOUND,
					  "client revoke: no credential has the fingerprint or subject \"%s\" "
					  "(keyward-admin client list)",
					  client);
		free(infos);
		return rv;
	}
	if ((rv = kw_keystore_credential_revoke(srv->ks, infos[at].fingerprint))) {
		free(infos);
		return rv;
	}
	/* live connections of this credential look again at their next request */
	atomic_fetch_add(&srv->revocations, 1);
	for (size_t i = 0; i < 8; i++)
		snprintf(hex + 2 * i, 3, "%02x", infos[at].fingerprint[i]);
	snprintf(detail, sizeof detail, "credential %s (%s) of partition \"%s\" revoked", hex, infos[at].subject,
		 infos[at].partition);
	admin_audit(srv, "client.revoke", detail);
	kw_log(KW_LOG_INFO, "%s", detail);
	if (!infos[at].revoked)
		infos[at].revoked = (int64_t)time(NULL);
	memmove(&infos[0], &infos[at], sizeof infos[0]);
	return answer_clients(resp, s, infos, 1);
}

static kw_rv on_audit_verify(struct kw_server *srv, const Keyward__AuditVerify *req, Keyward__Response *resp,
			     struct kw_scratch *s)
{
	struct kw_audit_report *report = kw_scratch_alloc(s, sizeof *report);
	Keyward__AuditReport *r = kw_scratch_alloc(s, sizeof *r);
	kw_rv rv;

	if (!r || !report)
		return KW_ERR_NO_MEMORY;
	/* what is counted but not yet written belongs in the check */
	kw_usage_flush(srv->usage, srv->ks);
	if (req->expect_seq && req->expect_hash.len != KW_AUDIT_HASH_LEN)
		return kw_error_set(KW_ERR_ARGUMENTS, "audit verify: a saved head's hash has %zu bytes, not %d",
				    req->expect_hash.len, KW_AUDIT_HASH_LEN);
	if ((rv = kw_keystore_audit_verify_head(srv->ks, req->expect_seq, req->expect_hash.data, report)))
		return rv;
	keyward__audit_report__init(r);
	r->ok = report->ok;
	r->records = report->records;
	r->first_bad = report->first_bad;
	r->problem = report->problem;
	r->head_seq = report->head_seq;
	r->head_hash.data = report->head_hash;
	r->head_hash.len = KW_AUDIT_HASH_LEN;
	r->base_seq = report->base_seq;
	r->base_hash.data = report->base_hash;
	r->base_hash.len = KW_AUDIT_HASH_LEN;
	resp->body_case = KEYWARD__RESPONSE__BODY_AUDIT_REPORT;
	resp->audit_report = r;
	return KW_OK;
}

static kw_rv on_audit_archive(struct kw_server *srv, const Keyward__AuditArchive *req, Keyward__Response *resp,
			      struct kw_scratch *s)
{
	Keyward__AuditArchived *r = kw_scratch_alloc(s, sizeof *r);
	char *file = kw_scratch_alloc(s, 600);
	uint64_t archived = 0;
	kw_rv rv;

	if (!r || !file)
		return KW_ERR_NO_MEMORY;
	kw_usage_flush(srv->usage, srv->ks);
	if ((rv = kw_usage_archive(srv->usage, srv->ks, req->keep, &archived, file, 600)))
		return rv;
	keyward__audit_archived__init(r);
	r->records = archived;
	r->file = file;
	resp->body_case = KEYWARD__RESPONSE__BODY_AUDIT_ARCHIVED;
	resp->audit_archived = r;
	return KW_OK;
}

static void free_audit_page(void *ptr, size_t n)
{
	(void)n;
	kw_audit_page_cleanup(ptr);
	free(ptr);
}

/* Text fields of a page of records, at most: the rest of a frame is left for hashes and encoding. */
#define AUDIT_PAGE_BYTES (KW_MAX_FRAME / 2)

static kw_rv on_audit_list(struct kw_server *srv, const Keyward__AuditList *req, Keyward__Response *resp,
			   struct kw_scratch *s)
{
	Keyward__AuditRecords *r = kw_scratch_alloc(s, sizeof *r);
	struct kw_audit_page *page = calloc(1, sizeof *page);
	kw_rv rv;

	/* adopt frees the page when it cannot keep it */
	if (!page || !kw_scratch_adopt(s, page, 0, free_audit_page) || !r)
		return KW_ERR_NO_MEMORY;
	/* what is counted but not yet written belongs in the log as read */
	kw_usage_flush(srv->usage, srv->ks);
	if ((rv = kw_keystore_audit_list(srv->ks, req->since, req->limit, AUDIT_PAGE_BYTES, page)))
		return rv;
	keyward__audit_records__init(r);
	r->more = page->more;
	r->head_seq = page->head_seq;
	r->base_seq = page->base_seq;
	r->base_hash.data = page->base_hash;
	r->base_hash.len = KW_AUDIT_HASH_LEN;
	if (page->n) {
		r->records = kw_scratch_alloc(s, page->n * sizeof *r->records);
		if (!r->records)
			return KW_ERR_NO_MEMORY;
	}
	for (size_t i = 0; i < page->n; i++) {
		struct kw_audit_entry *e = &page->entries[i];
		Keyward__AuditRecord *a = kw_scratch_alloc(s, sizeof *a);

		if (!a)
			return KW_ERR_NO_MEMORY;
		keyward__audit_record__init(a);
		a->seq = e->seq;
		a->time = e->time;
		a->partition = e->partition;
		a->actor = e->actor;
		a->event = e->event;
		a->detail = e->detail;
		a->prev_hash.data = e->prev_hash;
		a->prev_hash.len = KW_AUDIT_HASH_LEN;
		a->hash.data = e->hash;
		a->hash.len = KW_AUDIT_HASH_LEN;
		r->records[r->n_records++] = a;
	}
	resp->body_case = KEYWARD__RESPONSE__BODY_AUDIT_RECORDS;
	resp->audit_records = r;
	return KW_OK;
}

static kw_rv empty(Keyward__Response *resp, struct kw_scratch *s)
{
	Keyward__Empty *e = kw_scratch_alloc(s, sizeof *e);

	if (!e)
		return KW_ERR_NO_MEMORY;
	keyward__empty__init(e);
	resp->body_case = KEYWARD__RESPONSE__BODY_EMPTY;
	resp->empty = e;
	return KW_OK;
}

void kw_handle_admin(struct kw_server *srv, struct kw_peer *peer, const Keyward__Request *req,
		     Keyward__Response *resp, struct kw_scratch *s)
{
	kw_rv rv;

	switch (req->body_case) {
	case KEYWARD__REQUEST__BODY_ADMIN_INIT:
		rv = on_init(srv, req->admin_init, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_ADMIN_UNLOCK:
		rv = on_unlock(srv, req->admin_unlock);
		if (rv == KW_OK)
			rv = empty(resp, s);
		break;
	case KEYWARD__REQUEST__BODY_ADMIN_LOCK:
		kw_keystore_lock(srv->ks);
		/* not only stale: unsealed keys must leave memory now, not at the next use */
		kw_keycache_clear(srv->keys);
		admin_audit(srv, "hsm.lock", "master key wiped from memory");
		kw_log(KW_LOG_INFO, "HSM locked");
		rv = empty(resp, s);
		break;
	case KEYWARD__REQUEST__BODY_ADMIN_STATUS:
		rv = on_status(srv, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_PARTITION_CREATE:
		rv = on_partition_create(srv, req->partition_create, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_PARTITION_PASSWORD:
		rv = on_partition_password(srv, req->partition_password, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_PARTITION_LIST:
		rv = on_partition_list(srv, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_PARTITION_DELETE:
		rv = on_partition_delete(srv, req->partition_delete, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_AUDIT_VERIFY:
		rv = on_audit_verify(srv, req->audit_verify, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_AUDIT_ARCHIVE:
		rv = on_audit_archive(srv, req->audit_archive, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_AUDIT_LIST:
		rv = on_audit_list(srv, req->audit_list, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_CLIENT_LIST:
		rv = on_client_list(srv, req->client_list, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_CLIENT_REVOKE:
		rv = on_client_revoke(srv, req->client_revoke, resp, s);
		break;
	default:
		if (kw_request_is_transfer(req)) {
			rv = kw_handle_transfer(srv, peer, req, resp, s);
			break;
		}
		rv = kw_error_set(KW_ERR_PERMISSION,
				  "the admin socket serves administration only; key operations go over TLS");
		break;
	}
	if (rv)
		resp->body_case = KEYWARD__RESPONSE__BODY__NOT_SET;
	kw_response_status(resp, rv);
}
