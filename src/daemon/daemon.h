/*
 * keywardd internals shared between its files.
 *
 * Threads: one event loop per core (server.c) reads, runs and answers the
 * requests of its connections; the `slow` pool runs what takes long
 * (kw_request_is_slow: key generation, which can take a second for
 * RSA-4096, init and unlock with their KDF, audit verification, archiving
 * and reading, a backup's snapshot and a restore's commit; and the audit
 * flushes), so a burst of key generations never stalls signing. Pool
 * workers never touch a connection's SSL: they append the encoded response
 * to the connection's out-queue and wake its loop through an eventfd.
 */
#ifndef KW_DAEMON_H
#define KW_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "common/buf.h"
#include "common/frame.h"
#include "keystore/keystore.h"

struct kw_server_config {
	char listen[256];        /* host:port; port 0 picks a free one */
	char admin_socket[512];
	char store[600];
	uint64_t store_max_bytes;
	char tls_dir[512];
	char server_names[512];  /* SANs for a generated server certificate */
	unsigned workers;        /* event loops; 0: one per core */
	unsigned slow_workers;   /* 0: one per core */
	unsigned max_connections; /* authenticated clients */
	unsigned max_unauthenticated;
	unsigned max_unauthenticated_per_address;
	unsigned admin_max_connections;
	unsigned max_inflight;
	unsigned idle_timeout;   /* seconds */
	unsigned read_timeout;   /* seconds, for a frame once begun and for the handshake */
	unsigned auth_timeout;	 /* seconds from accept to a successful Hello; nothing resets it */
	bool allow_core_dumps;	 /* debugging only: a core dump holds unsealed keys */
	unsigned lockout_failures;
	unsigned lockout_address_failures; /* failed enrollments from one source address */
	unsigned lockout_window;
	unsigned lockout_duration;
	unsigned audit_failure_interval; /* seconds: [audit] failure_interval */
	char audit_head_file[512];       /* [audit] head_file, "" for none */
	uint64_t audit_max_records;      /* [audit] max_records, 0: no limit */
	char audit_archive_dir[512];     /* [audit] archive_dir, "": beside a SQLite store */
	char log_level[16];
	unsigned rsa_min_bits;	 /* [policy] rsa_min_bits: 2048, 3072 or 4096 */
	bool sha1_signatures;	 /* [policy] sha1_signatures: sign SHA-1 digests */
	char dev_dir[400];       /* set in development mode */
	bool dev_join;		 /* --dev on a shared store DIR's first node made: join it */
};

void kw_server_config_defaults(struct kw_server_config *cfg);
/* Reads an INI file over the defaults; KW_ERR_CONFIG names file, line, key. */
kw_rv kw_server_config_load(struct kw_server_config *cfg, const char *path);
/* The same from the file's text (NUL-terminated), path naming it in errors. */
kw_rv kw_server_config_parse(struct kw_server_config *cfg, const char *path, const char *text);
#define KW_SERVER_CONFIG_MAX (1 << 20) /* bytes of a keywardd.conf */

/* ---- the weak-algorithm policy, [policy] (policy.c) ---- */

/* KW_ERR_KEY_SIZE, naming the setting, for an RSA key of bits below [policy] rsa_min_bits (what: the request). */
kw_rv kw_policy_rsa_bits(const struct kw_server_config *cfg, const char *what, unsigned bits);
/* KW_ERR_MECHANISM, naming the setting, for a signature over a SHA-1 digest with [policy] sha1_signatures = no. */
kw_rv kw_policy_sign_hash(const struct kw_server_config *cfg, Keyward__Hash hash);

/* ---- TLS material (tls.c) ---- */

struct kw_tls {
	SSL_CTX *ctx;
	X509 *ca;
	EVP_PKEY *ca_key;
};

/*
 * Loads DIR/ca.crt, ca.key, server.crt, server.key, creating any that are
 * missing (an EC P-256 CA and a server certificate for `names`).
 */
kw_rv kw_tls_load_or_create(struct kw_tls *tls, const char *dir, const char *names);
void kw_tls_cleanup(struct kw_tls *tls);
/* Issues a client certificate for a CSR (whose signature is checked). */
kw_rv kw_tls_issue_client(struct kw_tls *tls, const unsigned char *csr_der, size_t csr_len, const char *partition,
			  X509 **out);
kw_rv kw_tls_write_pem_cert(const char *path, X509 *cert);
/* pin: the key is encrypted under it (PKCS#8, AES-256); NULL: stored in the clear, mode 0600. */
kw_rv kw_tls_write_pem_key(const char *path, EVP_PKEY *key, const char *pin);
void kw_tls_fingerprint(X509 *cert, unsigned char out[KW_FINGERPRINT_LEN]);

/* ---- worker pool (pool.c) ---- */

struct kw_pool;
typedef void (*kw_job_fn)(void *arg);
kw_rv kw_pool_new(const char *name, unsigned threads, struct kw_pool **out);
/* Never fails once the pool exists; jobs run in FIFO order. */
void kw_pool_submit(struct kw_pool *pool, kw_job_fn fn, void *arg);
/* Runs every queued job, then joins the threads. */
void kw_pool_free(struct kw_pool *pool);

/* ---- lockout (lockout.c) ---- */

struct kw_lockout;
/*
 * What is counted: KNOWN, an identity the server looked up and found (a
 * registered credential, a partition's setup password, the admin unlock);
 * STRANGER, one a peer may have made up (an unregistered certificate);
 * ADDRESS, a source address, locked after `address_failures` failures.
 * KNOWN entries live apart, where strangers cannot crowd them out.
 */
enum kw_lockout_kind { KW_LOCKOUT_KNOWN, KW_LOCKOUT_STRANGER, KW_LOCKOUT_ADDRESS };
kw_rv kw_lockout_new(unsigned failures, unsigned address_failures, unsigned window, unsigned duration,
		     struct kw_lockout **out);
void kw_lockout_free(struct kw_lockout *lo);
/*
 * KW_ERR_LOCKED_OUT (with the time left in the message) while `who` is
 * locked, or while its table is full of locked entries and who is not in it.
 */
kw_rv kw_lockout_check(struct kw_lockout *lo, enum kw_lockout_kind kind, const char *who);
void kw_lockout_fail(struct kw_lockout *lo, enum kw_lockout_kind kind, const char *who);
void kw_lockout_success(struct kw_lockout *lo, enum kw_lockout_kind kind, const char *who);

/* ---- unsealed key cache (keycache.c) ---- */

struct kw_keycache;
struct kw_cached_key {
	EVP_PKEY *pkey;
	uint64_t partition_id;
	enum kw_key_type key_type;
	unsigned usages;
	char owner[KW_OWNER_MAX + 1];
	char name[KW_NAME_MAX + 1];
};
kw_rv kw_keycache_new(struct kw_keycache **out);
void kw_keycache_free(struct kw_keycache *kc);
/*
 * The private key `id` of `partition_id`, unsealed once and then kept (its
 * EVP_PKEY up-referenced into *out; release with kw_cached_key_release).
 * request_generation: the store's generation (kw_keystore_generation) as
 * this request already read it, or NULL to read it here; on a store shared
 * with other nodes the credential check reads it first, and passing that
 * makes a signature one round trip to the store, not two.
 */
kw_rv kw_keycache_get(struct kw_keycache *kc, struct kw_keystore *ks, const uint64_t *request_generation,
		      uint64_t partition_id, uint64_t id, struct kw_cached_key *out);
void kw_cached_key_release(struct kw_cached_key *key);
void kw_keycache_clear(struct kw_keycache *kc);

/* ---- failures of unauthenticated peers (failagg.c): one audit record per source and interval ---- */

#define KW_FAILAGG_OTHER "other sources"
struct kw_failagg;
/* interval: seconds; slots: sources tracked one by one before they share "other sources" */
kw_rv kw_failagg_new(unsigned interval, unsigned slots, struct kw_failagg **out);
void kw_failagg_free(struct kw_failagg *f);
/* Counts one failure; true when it is the first of its source's interval: record it now. */
bool kw_failagg_note(struct kw_failagg *f, const char *source, const char *event, time_t now);
/* count: failures after the first one, over `seconds` */
typedef void (*kw_failagg_emit_fn)(void *ctx, const char *source, const char *event, uint64_t count,
				   unsigned seconds);
/* Emits the counts of the intervals over by now (all: every count, at shutdown). */
void kw_failagg_flush(struct kw_failagg *f, time_t now, bool all, kw_failagg_emit_fn emit, void *ctx);
/* ---- session objects (session.c): a connection's own, in memory only ---- */

#define KW_SESSION_OBJECTS_MAX 256          /* objects per connection */
#define KW_SESSION_BYTES_MAX (1024u * 1024u) /* bytes per connection: values + 1 KiB per object */
#define KW_SESSION_ID_BIT KW_OBJECT_ID_SESSION /* set in every session object's id, in no store id */

struct kw_session_objects;
/* count: the server's total, kept up to date by the table. */
kw_rv kw_session_objects_new(atomic_uint *count, struct kw_session_objects **out);
/* Frees every object (keys wiped); at the connection's last reference. Accepts NULL. */
void kw_session_objects_free(struct kw_session_objects *so);
/* Whether id names a session object (of some connection). */
bool kw_session_id(uint64_t id);
/* As kw_keystore_put_keypair, into the table (pkey gains a reference); KW_ERR_STORE_FULL past a limit. */
kw_rv kw_session_put_keypair(struct kw_session_objects *so, uint64_t partition_id, const struct kw_keygen *spec,
			     EVP_PKEY *pkey, struct kw_object_row *priv, struct kw_object_row *pub);
/* As kw_keystore_put_object, into the table. */
kw_rv kw_session_put_object(struct kw_session_objects *so, uint64_t partition_id, const struct kw_objspec *spec,
			    struct kw_object_row *out);
/* so may be NULL in these (nothing there): KW_ERR_NOT_FOUND, or empty. */
kw_rv kw_session_get(struct kw_session_objects *so, uint64_t partition_id, uint64_t id, struct kw_object_row *out);
/* The id of owner/name of class cls (not KW_CLASS_ANY); KW_ERR_NOT_FOUND without a message. */
kw_rv kw_session_find(struct kw_session_objects *so, uint64_t partition_id, const char *owner, const char *name,
		      enum kw_class cls, uint64_t *id);
/* A session private key for use, as kw_keycache_get (release with kw_cached_key_release). */
kw_rv kw_session_key(struct kw_session_objects *so, uint64_t partition_id, uint64_t id, struct kw_cached_key *out);
/* Objects with id > after_id (owner/name NULL for any), ascending, at most limit; *rows freed by the caller. */
kw_rv kw_session_list(struct kw_session_objects *so, uint64_t partition_id, const char *owner, const char *name,
		      uint64_t after_id, size_t limit, struct kw_object_row **rows, size_t *n, bool *more);
/* By id, or owner + name (+ class, KW_CLASS_ANY for all). */
kw_rv kw_session_delete(struct kw_session_objects *so, uint64_t partition_id, uint64_t id, const char *owner,
			const char *name, enum kw_class cls, unsigned *deleted);

/* ---- key-use audit (usage.c): counts per key, written once a second ---- */

struct kw_usage;
/*
 * From cfg's [audit] section: failure_interval (seconds over which failures
 * of one unauthenticated source become one audit record), head_file (where
 * each flush appends the chain head when it moved), max_records and
 * archive_dir (the size policy: past max_records, a flush archives the
 * oldest records, keeping the newest half).
 */
kw_rv kw_usage_new(const struct kw_server_config *cfg, struct kw_usage **out);
/* Archives every audit record but the newest keep (keyward-admin audit archive). */
kw_rv kw_usage_archive(struct kw_usage *u, struct kw_keystore *ks, uint64_t keep, uint64_t *archived, char *file,
		       size_t size);
void kw_usage_free(struct kw_usage *u);
void kw_usage_count(struct kw_usage *u, const char *partition, const char *actor, const char *event,
		    const struct kw_cached_key *key, uint64_t id);
/*
 * An audited failure of an unauthenticated peer (address "host:port"):
 * recorded at once when it is its source's first in the interval, else
 * counted for one summary record. Its log line is rate-limited the same way.
 */
void kw_usage_fail(struct kw_usage *u, struct kw_keystore *ks, const char *address, const char *event,
		   const char *detail);
/*
 * Writes the counts gathered so far as audit records, the failure summaries
 * of intervals that are over and the log limiter's summaries, and appends
 * the chain head to the head file.
 */
void kw_usage_flush(struct kw_usage *u, struct kw_keystore *ks);
/* At shutdown: kw_usage_flush, and every failure count whether its interval is over or not. */
void kw_usage_flush_all(struct kw_usage *u, struct kw_keystore *ks);

/* ---- crypto (crypto.c): the HSM's private-key operations ---- */

kw_rv kw_crypto_generate(enum kw_key_type type, unsigned bits, const char *curve, EVP_PKEY **out);
kw_rv kw_crypto_sign(EVP_PKEY *pkey, enum kw_key_type type, const Keyward__Sign *req, unsigned char *sig,
		     size_t *sig_len);
/*
 * The checks kw_crypto_sign makes of mechanism, parameters and data length,
 * without signing: a batch checks every element before it signs any.
 */
kw_rv kw_crypto_sign_check(EVP_PKEY *pkey, enum kw_key_type type, const Keyward__Sign *req);
kw_rv kw_crypto_decrypt(EVP_PKEY *pkey, enum kw_key_type type, const Keyward__Decrypt *req, unsigned char *out,
			size_t *out_len);
/*
 * AES key wrap of in under kek (16, 24 or 32 bytes): mech
 * KEYWARD__MECHANISM__AES_KEY_WRAP (RFC 3394; in a multiple of 8 bytes,
 * at least 16) or AES_KEY_WRAP_PAD (RFC 5649). out has *out_len bytes; on
 * return *out_len is the wrapped length.
 */
/*
 * AES encryption or decryption of r->data with key (16, 24 or 32 bytes), as
 * r->mechanism says (AES_ECB, AES_CBC, AES_CBC_PAD, AES_GCM; see
 * SecretCrypt in proto/keyward.proto). out has *out_len bytes, at least
 * r->data.len + 16; on return *out_len is the output's length. A padding or
 * GCM tag that does not check: KW_ERR_ENCRYPTED_DATA.
 */
kw_rv kw_crypto_aes(const unsigned char *key, size_t key_len, const Keyward__SecretCrypt *r, unsigned char *out,
		    size_t *out_len);

/*
 * HMAC of r->data (at most KW_HMAC_DATA_MAX bytes) with key, with r->hash
 * (SHA256, SHA384 or SHA512); r->mechanism must be HMAC. out has *out_len
 * bytes (64 suffice); on return the MAC's length.
 */
kw_rv kw_crypto_hmac(const unsigned char *key, size_t key_len, const Keyward__Sign *r, unsigned char *out,
		     size_t *out_len);

/*
 * AES key unwrap of in (AES_KEY_WRAP: RFC 3394, AES_KEY_WRAP_PAD: RFC 5649)
 * under kek: out has *out_len bytes, at least in_len; on return the key's
 * length. An integrity check that fails: KW_ERR_ENCRYPTED_DATA.
 */
kw_rv kw_crypto_unwrap(const unsigned char *kek, size_t kek_len, Keyward__Mechanism mech, const unsigned char *in,
		       size_t in_len, unsigned char *out, size_t *out_len);

/*
 * ECDH of the EC private key and the peer's point (on the key's curve;
 * cofactor: the cofactor variant), then the key of `length` bytes: with
 * kdf HASH_NONE the secret's rightmost bytes, else the X9.63 KDF with that
 * hash over the secret and shared data. out has at least `length` bytes.
 */
kw_rv kw_crypto_ecdh(EVP_PKEY *key, const unsigned char *point, size_t point_len, bool cofactor, Keyward__Hash kdf,
		     const unsigned char *shared, size_t shared_len, unsigned char *out, size_t length);

#define KW_WRAP_MAX 16384 /* bytes of a key to wrap: an RSA-4096 PKCS#8 is about 2.4 KiB */
kw_rv kw_crypto_wrap(const unsigned char *kek, size_t kek_len, Keyward__Mechanism mech, const unsigned char *in,
		     size_t in_len, unsigned char *out, size_t *out_len);
/*
 * RSA-OAEP encryption of in (a secret key's bytes) under spki (DER, an RSA
 * public key) with w's hash, MGF1 hash and label, into out (*out_len bytes,
 * the modulus at least; on return the wrapped length).
 */
kw_rv kw_crypto_wrap_oaep(const unsigned char *spki, size_t spki_len, const Keyward__WrapKey *w,
			  const unsigned char *in, size_t in_len, unsigned char *out, size_t *out_len);

/* ---- the server (server.c) and its request handlers (handlers.c, admin.c) ---- */

struct kw_server {
	struct kw_server_config cfg;
	struct kw_keystore *ks;
	struct kw_tls tls;
	struct kw_pool *slow;
	struct kw_lockout *lockout;
	struct kw_keycache *keys;
	struct kw_usage *usage;
	time_t started;
	/* bumped by every credential revocation: connections then re-check theirs */
	_Atomic uint64_t revocations;
	struct kw_gate *gate; /* admission (gate.c), made by kw_server_start */
	atomic_uint session_objects; /* held in memory for all connections (session.c) */
	atomic_bool transfer_busy;   /* a backup or restore transfer holds its buffer (backup.c) */
	char bound[300]; /* the address actually listened on */
	unsigned short port;
	/* event loops, in server.c */
	struct kw_loops *loops;
};

struct kw_conn;
/* What a handler knows of its connection. */
struct kw_peer {
	bool admin;                 /* the local admin socket */
	bool has_cert;              /* presented a client certificate */
	bool authenticated;         /* Hello accepted: partition_id is valid */
	uint64_t partition_id;
	char partition[KW_PARTITION_NAME_MAX + 1];
	char actor[160];            /* certificate subject, or "admin" */
	unsigned char fingerprint[KW_FINGERPRINT_LEN];
	char address[80];
	uint64_t revocations_seen; /* kw_server.revocations when the credential was last found valid */
	uint64_t store_generation_seen; /* a shared store's generation then (revocations on other nodes) */
	/*
	 * The connection's session objects (session.c): made at Hello, shared
	 * with the copies slow jobs take, freed at the connection's last
	 * reference (conn_unref).
	 */
	struct kw_session_objects *session_objects;
	/* admin connections: the backup or restore in progress (backup.c); shared like session_objects */
	struct kw_transfer *transfer;
};

/*
 * What a response points to until it is packed: freed by kw_scratch_free
 * after the I/O path has encoded the response.
 */
struct kw_scratch {
	struct kw_scratch_item *head;
};
void *kw_scratch_alloc(struct kw_scratch *s, size_t size);
/*
 * Hands ptr to the scratch; free_fn(ptr, n) runs at kw_scratch_free. When
 * out of memory it runs at once and the result is false: do not use ptr.
 */
bool kw_scratch_adopt(struct kw_scratch *s, void *ptr, size_t n, void (*free_fn)(void *, size_t));
void kw_scratch_free(struct kw_scratch *s);

/*
 * Runs one request and fills resp (status, message, body). May update peer
 * (Hello authenticates). Runs on the connection's event loop, or on a slow
 * pool worker when kw_request_is_slow says so.
 */
void kw_handle_request(struct kw_server *srv, struct kw_peer *peer, const Keyward__Request *req,
		       Keyward__Response *resp, struct kw_scratch *scratch);
void kw_handle_admin(struct kw_server *srv, struct kw_peer *peer, const Keyward__Request *req,
		     Keyward__Response *resp, struct kw_scratch *scratch);
/*
 * BackupBegin/BackupRead/RestoreBegin/RestoreChunk/RestoreCommit: the
 * transfers kw_handle_admin hands to kw_handle_transfer (backup.c) and
 * kw_handle_request refuses.
 */
bool kw_request_is_transfer(const Keyward__Request *req);
/* ---- backup and restore over the admin socket (backup.c) ---- */
#define KW_TRANSFER_CHUNK (512u * 1024u) /* bytes of a backup in one frame */
struct kw_transfer;
/* One per admin connection; NULL when out of memory. */
struct kw_transfer *kw_transfer_new(struct kw_server *srv);
/* At the connection's last reference: frees a transfer left unfinished. Accepts NULL. */
void kw_transfer_free(struct kw_transfer *t);
kw_rv kw_handle_transfer(struct kw_server *srv, struct kw_peer *peer, const Keyward__Request *req,
			 Keyward__Response *resp, struct kw_scratch *scratch);
/* Sets resp's status and message from rv and the thread's error. */
void kw_response_status(Keyward__Response *resp, kw_rv rv);
/* Whether a request must run on the slow pool. */
bool kw_request_is_slow(const Keyward__Request *req);

/*
 * Blocks SIGTERM/SIGINT (they are read from a signalfd by the loop) and
 * ignores SIGPIPE. Call before any thread starts, so every thread inherits it.
 */
void kw_server_block_signals(void);
/* Listens, and prepares `loops` event loops. */
kw_rv kw_server_start(struct kw_server *srv, unsigned loops);
/* Runs the loops (this thread is loop 0) until SIGTERM/SIGINT. */
kw_rv kw_server_run(struct kw_server *srv);
/*
 * For a harness that drives a server started with one loop, instead of
 * kw_server_run: one turn of that loop (at most timeout_ms of waiting),
 * and a clock moved on by `seconds` to reach the deadlines at once.
 */
void kw_server_turn(struct kw_server *srv, int timeout_ms);
void kw_server_advance_clock(unsigned seconds);
void kw_server_stop(struct kw_server *srv);

/* ---- setup.c ---- */

/*
 * --dev DIR [--store URL]: the store, TLS directory and admin socket inside
 * DIR, the old store removed; with a PostgreSQL store URL the store is
 * there instead, and when DIR holds that store's dev passphrase (an
 * earlier node made it) this node joins it (dev_join) with an admin
 * socket of its own, DIR/admin-PORT.sock.
 */
kw_rv kw_dev_config(struct kw_server_config *cfg, const char *store);
/* DIR's file (mode 0600) with the passphrase of a shared dev store's master key: what a joining node needs */
#define KW_DEV_PASSPHRASE_FILE "dev-passphrase"
/* Opens the store, TLS, pools and (with dev_dir) the development store, then listens. */
kw_rv kw_server_setup(struct kw_server *srv);
/* Stops and frees everything kw_server_setup made (also after a partial setup). */
void kw_server_teardown(struct kw_server *srv);

/*
 * Development mode (dev.c): a fresh store, TLS, partition "dev",
 * client.conf; or, joining a shared dev store, its unlock and a further
 * [hsm] section in client.conf.
 */
kw_rv kw_dev_prepare(struct kw_server *srv);
kw_rv kw_dev_write_client_conf(struct kw_server *srv);

#endif
