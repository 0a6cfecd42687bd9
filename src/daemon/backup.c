/*
 * Backup and restore over the admin socket (keyward-admin backup/restore).
 * A backup file is larger than one frame, so it travels in chunks:
 *
 *   BackupBegin   takes the snapshot (kw_keystore_backup: one transaction,
 *                 audited) into the connection's transfer buffer;
 *   BackupRead    hands out chunks of it; the last one frees it.
 *   RestoreBegin  announces the size (at most KW_BACKUP_MAX);
 *   RestoreChunk  appends, in order, at most KW_TRANSFER_CHUNK at a time,
 *                 never past the announced size;
 *   RestoreCommit checks and restores it (kw_keystore_restore: one
 *                 transaction, audited), then frees it.
 *
 * Each admin connection has one transfer (struct kw_transfer, made when
 * the connection is accepted, freed with it), and the server lets one
 * transfer at a time hold a buffer, so keywardd never holds more than one
 * KW_BACKUP_MAX buffer for this, whatever its peers send. Only the admin
 * socket reaches this file; the TLS port refuses these requests.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"
#include "keystore/backup.h"

enum transfer_kind { TRANSFER_NONE, TRANSFER_BACKUP, TRANSFER_RESTORE };

struct kw_transfer {
	pthread_mutex_t mu;
	struct kw_server *srv;
	enum transfer_kind kind;
	unsigned char *buf; /* backup: the file */
	size_t len;	    /* backup: the file's size */
	struct kw_buf in;   /* restore: what arrived, capped at the announced size */
};

struct kw_transfer *kw_transfer_new(struct kw_server *srv)
{
	struct kw_transfer *t = calloc(1, sizeof *t);

	if (!t)
		return NULL;
	if (pthread_mutex_init(&t->mu, NULL) != 0) {
		free(t);
		return NULL;
	}
	t->srv = srv;
	return t;
}

/* Drops the buffer and gives the server's slot back. */
static void reset_locked(struct kw_transfer *t)
{
	if (t->kind != TRANSFER_NONE)
		atomic_store(&t->srv->transfer_busy, false);
	free(t->buf);
	t->buf = NULL;
	t->len = 0;
	kw_buf_cleanup(&t->in);
	t->kind = TRANSFER_NONE;
}

void kw_transfer_free(struct kw_transfer *t)
{
	if (!t)
		return;
	if (t->kind == TRANSFER_RESTORE)
		kw_log(KW_LOG_WARN, "restore abandoned: the admin connection closed after %zu of %zu bytes", t->in.len,
		       t->in.max);
	reset_locked(t);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* Takes the server's one transfer slot for t (which holds none). */
static kw_rv claim_locked(struct kw_transfer *t, enum transfer_kind kind)
{
	if (atomic_exchange(&t->srv->transfer_busy, true))
		return kw_error_set(KW_ERR_BUSY,
				    "another backup or restore is in progress on another admin connection; "
				    "try again when it is done");
	t->kind = kind;
	return KW_OK;
}

static kw_rv on_backup_begin(struct kw_transfer *t, const Keyward__BackupBegin *req, Keyward__Response *resp,
			     struct kw_scratch *s)
{
	Keyward__BackupInfo *r = kw_scratch_alloc(s, sizeof *r);
	unsigned char *hash = kw_scratch_alloc(s, SHA256_DIGEST_LENGTH);
	unsigned char *key_id = kw_scratch_alloc(s, KW_BACKUP_KEY_ID_LEN);
	struct kw_backup_summary sum;
	kw_rv rv;

	if (!r || !hash || !key_id)
		return KW_ERR_NO_MEMORY;
	reset_locked(t); /* a transfer left unfinished on this connection is given up */
	if ((rv = claim_locked(t, TRANSFER_BACKUP)))
		return rv;
	rv = kw_keystore_backup(t->srv->ks, req->partition, &t->buf, &t->len, &sum);
	if (rv) {
		reset_locked(t);
		return rv;
	}
	SHA256(t->buf, t->len, hash);
	memcpy(key_id, sum.key_id, KW_BACKUP_KEY_ID_LEN);
	keyward__backup_info__init(r);
	r->size = t->len;
	r->sha256.data = hash;
	r->sha256.len = SHA256_DIGEST_LENGTH;
	r->partitions = sum.partitions;
	r->credentials = sum.credentials;
	r->objects = sum.objects;
	r->keys = sum.keys;
	r->audit_seq = sum.audit_seq;
	r->key_id.data = key_id;
	r->key_id.len = KW_BACKUP_KEY_ID_LEN;
	kw_log(KW_LOG_INFO, "backup of %s taken: %u objects (%u sealed keys), %zu bytes",
	       req->partition && req->partition[0] ? req->partition : "every partition", sum.objects, sum.keys, t->len);
	resp->body_case = KEYWARD__RESPONSE__BODY_BACKUP_INFO;
	resp->backup_info = r;
	return KW_OK;
}

static kw_rv on_backup_read(struct kw_transfer *t, const Keyward__BackupRead *req, Keyward__Response *resp,
			    struct kw_scratch *s)
{
	Keyward__BackupChunk *r = kw_scratch_alloc(s, sizeof *r);
	size_t n = req->length && req->length < KW_TRANSFER_CHUNK ? req->length : KW_TRANSFER_CHUNK;
	unsigned char *data;

	if (!r)
		return KW_ERR_NO_MEMORY;
	if (t->kind != TRANSFER_BACKUP)
		return kw_error_set(KW_ERR_ARGUMENTS, "backup read: no backup is in progress on this connection "
						      "(BackupBegin first)");
	if (req->offset > t->len)
		return kw_error_set(KW_ERR_ARGUMENTS, "backup read: offset %" PRIu64 " is past the backup's %zu bytes",
				    req->offset, t->len);
	if (n > t->len - req->offset)
		n = t->len - req->offset;
	if (!(data = kw_scratch_alloc(s, n)))
		return KW_ERR_NO_MEMORY;
	memcpy(data, t->buf + req->offset, n);
	keyward__backup_chunk__init(r);
	r->offset = req->offset;
	r->data.data = data;
	r->data.len = n;
	r->last = req->offset + n == t->len;
	if (r->last)
		reset_locked(t);
	resp->body_case = KEYWARD__RESPONSE__BODY_BACKUP_CHUNK;
	resp->backup_chunk = r;
	return KW_OK;
}

static kw_rv on_restore_begin(struct kw_transfer *t, const Keyward__RestoreBegin *req)
{
	kw_rv rv;

	reset_locked(t);
	if (req->size == 0 || req->size > KW_BACKUP_MAX)
		return kw_error_set(KW_ERR_DATA_LEN, "restore: a backup has 1 byte to %u MiB, not %" PRIu64 " bytes",
				    KW_BACKUP_MAX >> 20, req->size);
	if ((rv = claim_locked(t, TRANSFER_RESTORE)))
		return rv;
	kw_buf_init(&t->in, (size_t)req->size);
	return KW_OK;
}

static kw_rv on_restore_chunk(struct kw_transfer *t, const Keyward__RestoreChunk *req)
{
	size_t n = req->data.len;

	if (t->kind != TRANSFER_RESTORE)
		return kw_error_set(KW_ERR_ARGUMENTS, "restore: no restore is in progress on this connection "
						      "(RestoreBegin first)");
	if (req->offset != t->in.len)
		return kw_error_set(KW_ERR_ARGUMENTS, "restore: a chunk at offset %" PRIu64 ", expected %zu",
				    req->offset, t->in.len);
	if (n > KW_TRANSFER_CHUNK || n > t->in.max - t->in.len)
		return kw_error_set(KW_ERR_DATA_LEN,
				    "restore: a chunk of %zu bytes at %zu goes past the announced %zu bytes (or the "
				    "%u KiB chunk limit)",
				    n, t->in.len, t->in.max, KW_TRANSFER_CHUNK >> 10);
	if (n && kw_buf_append(&t->in, req->data.data, n) != KW_OK)
		return kw_error_set(KW_ERR_NO_MEMORY, "restore: out of memory for the backup (%zu bytes)", t->in.max);
	return KW_OK;
}

static kw_rv on_restore_commit(struct kw_transfer *t, Keyward__Response *resp, struct kw_scratch *s)
{
	Keyward__RestoreResult *r = kw_scratch_alloc(s, sizeof *r);
	struct kw_restore_summary sum;
	kw_rv rv;

	if (!r)
		return KW_ERR_NO_MEMORY;
	if (t->kind != TRANSFER_RESTORE)
		return kw_error_set(KW_ERR_ARGUMENTS, "restore: no restore is in progress on this connection "
						      "(RestoreBegin first)");
	if (t->in.len != t->in.max) {
		rv = kw_error_set(KW_ERR_DATA_LEN,
				  "restore: %zu of the announced %zu bytes arrived; nothing was restored", t->in.len,
				  t->in.max);
		reset_locked(t);
		return rv;
	}
	rv = kw_keystore_restore(t->srv->ks, t->in.data, t->in.len, &sum);
	reset_locked(t);
	if (rv) {
		kw_log(KW_LOG_WARN, "restore refused: %s", kw_last_error());
		return rv;
	}
	kw_log(KW_LOG_INFO, "restore done: %u objects added, %u identical kept, %u partitions created",
	       sum.objects_added, sum.objects_kept, sum.partitions_created);
	keyward__restore_result__init(r);
	r->partitions_created = sum.partitions_created;
	r->partitions_kept = sum.partitions_kept;
	r->credentials_added = sum.credentials_added;
	r->credentials_kept = sum.credentials_kept;
	r->objects_added = sum.objects_added;
	r->objects_kept = sum.objects_kept;
	r->keys_resealed = sum.keys_resealed;
	r->created = sum.created;
	resp->body_case = KEYWARD__RESPONSE__BODY_RESTORE_RESULT;
	resp->restore_result = r;
	return KW_OK;
}

kw_rv kw_handle_transfer(struct kw_server *srv, struct kw_peer *peer, const Keyward__Request *req,
			 Keyward__Response *resp, struct kw_scratch *s)
{
	struct kw_transfer *t = peer->transfer;
	kw_rv rv;

	(void)srv;
	if (!t)
		return kw_error_set(KW_ERR_NO_MEMORY, "this admin connection has no room for a transfer");
	/* never wait here: this may be an event loop, and the other holder a long snapshot on the pool */
	if (pthread_mutex_trylock(&t->mu) != 0)
		return kw_error_set(KW_ERR_BUSY, "the previous backup or restore request of this connection is still "
						 "running: wait for its answer");
	switch (req->body_case) {
	case KEYWARD__REQUEST__BODY_BACKUP_BEGIN:
		rv = on_backup_begin(t, req->backup_begin, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_BACKUP_READ:
		rv = on_backup_read(t, req->backup_read, resp, s);
		break;
	case KEYWARD__REQUEST__BODY_RESTORE_BEGIN:
		rv = on_restore_begin(t, req->restore_begin);
		break;
	case KEYWARD__REQUEST__BODY_RESTORE_CHUNK:
		rv = on_restore_chunk(t, req->restore_chunk);
		break;
	case KEYWARD__REQUEST__BODY_RESTORE_COMMIT:
		rv = on_restore_commit(t, resp, s);
		break;
	default:
		rv = kw_error_set(KW_ERR_PROTOCOL, "not a backup or restore request");
		break;
	}
	pthread_mutex_unlock(&t->mu);
	return rv;
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
