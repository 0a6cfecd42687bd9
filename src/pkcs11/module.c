/*
 * keyward-pkcs11.so: the PKCS#11 module of keyward (v2.40, and v3.0 through C_GetInterface), on libkeyward.
 *
 * This file: C_GetFunctionList and the function lists of the "PKCS 11"
 * interfaces (2.40 and 3.0; vendor.c offers them), C_Initialize and
 * C_Finalize, slots and tokens, sessions, login, C_GenerateRandom.
 *
 * Slots: one token per key space the caller may use, in this order, each
 * present when its owner can be derived (docs/key-spaces.md): the machine
 * ("keyward machine"), the calling user ("keyward user") and the shared
 * space S-1-5-11 ("keyward shared"). The token's serial number is derived
 * from the partition, the key space and its owner (slot_serial). The
 * configuration is libkeyward's: $KEYWARD_CONF, else
 * /etc/keyward/client.conf.
 *
 * Login: the user PIN decrypts the partition's client credential key
 * (enrolled with a PIN; keywardd --dev writes its PIN to DIR/pin). It is
 * checked here against the key file, then handed to kw_client_set_pin. A
 * wrong PIN answers CKR_PIN_INCORRECT; a key file stored unencrypted
 * accepts any PIN. One credential serves every token, so login is
 * module-wide. Before login the module reaches the HSM only if the
 * configuration's pin_file opens the key (a service's unattended PIN):
 * then public objects are listed, as PKCS#11 expects; else there are none.
 *
 * Session objects (CKA_TOKEN false): keywardd keeps them in memory per
 * connection. The module makes them, and every later request about them,
 * on one connection of its own (p11.sclient), so they are visible to every
 * session of this application and to no other process; C_CloseSession and
 * C_CloseAllSessions destroy those their sessions made, C_Logout the
 * private ones, and C_Finalize or the process's exit closes the connection,
 * whereupon keywardd destroys the rest.
 *
 * The module never aborts or exits the host process; every entry point
 * checks its arguments and that C_Initialize was called.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "p11.h"

struct p11_module p11 = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define P11_MANUFACTURER "keyward"
#define P11_SLOT_FLAGS (CKF_TOKEN_PRESENT | CKF_REMOVABLE_DEVICE | CKF_HW_SLOT)

/* Copies s into a blank-padded, not NUL-terminated PKCS#11 field. */
static void pad(CK_UTF8CHAR *dst, size_t size, const char *s)
{
	size_t n = strlen(s);

	memset(dst, ' ', size);
	memcpy(dst, s, n < size ? n : size);
}

/* ---- errors: a CK_RV for the caller, the cause in words for the person ---- */

#define P11_LOG_REPEAT 60 /* seconds before the same message is written again */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_logged[1024];
static time_t last_logged_at;

/* Writes line unless it was the last one written, less than P11_LOG_REPEAT seconds ago. */
static void log_once(const char *line)
{
	struct timespec ts;
	bool repeat;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	pthread_mutex_lock(&log_lock);
	repeat = strcmp(line, last_logged) == 0 && ts.tv_sec - last_logged_at < P11_LOG_REPEAT;
	if (!repeat || (kw_debug_categories & KW_DEBUG_PKCS11)) {
		snprintf(last_logged, sizeof last_logged, "%s", line);
		last_logged_at = ts.tv_sec;
		kw_log_write(KW_LOG_ERROR, "keyward-pkcs11: %s", line);
	}
	pthread_mutex_unlock(&log_lock);
}

/* The message of krv, under what, logged once. */
static void log_failure(kw_rv krv, const char *what)
{
	char line[1024];
	const char *msg = kw_last_error();

	snprintf(line, sizeof line, "%s: %s", what, msg && *msg ? msg : kw_rv_text(krv));
	log_once(line);
}

CK_RV p11_ckr(kw_rv krv, const char *what)
{
	if (!krv)
		return CKR_OK;
	log_failure(krv, what);
	switch (krv) {
	case KW_ERR_AUTH:
		/* the HSM refused the credential: revoked, partition deleted, or its PIN not given */
		return CKR_USER_NOT_LOGGED_IN;
	default:
		return kw_rv_to_ckr(krv);
	}
}

CK_RV p11_ckr_as(kw_rv krv, const char *what, CK_RV ckr)
{
	if (!krv)
		return CKR_OK;
	log_failure(krv, what);
	return ckr;
}

/* Entry points open with this: the lock taken, the module initialized. */
static CK_RV enter(void)
{
	pthread_mutex_lock(&p11.lock);
	if (!p11.initialized || p11.pid != getpid()) {
		pthread_mutex_unlock(&p11.lock);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return CKR_OK;
}

static CK_RV leave(CK_RV rv)
{
	pthread_mutex_unlock(&p11.lock);
	return rv;
}

kw_client *p11_client_for_locked(uint64_t id)
{
	return (id & KW_OBJECT_ID_SESSION) ? p11.sclient : p11.client;
}

CK_SESSION_HANDLE p11_session_handle_locked(const struct p11_session *s)
{
	for (size_t i = 0; i < p11.n_sessions; i++)
		if (p11.sessions[i] == s)
			return i + 1;
	return 0;
}

struct p11_session *p11_session_get_locked(CK_SESSION_HANDLE h)
{
	if (h == 0 || h > p11.n_sessions)
		return NULL;
	return p11.sessions[h - 1];
}

/*
 * Entry points on a session open with this: the lock taken, the module
 * initialized, the arguments checked (args_ok) before the session handle,
 * as PKCS#11 orders the errors; *out (may be NULL) gets the session. The
 * lock is held only on CKR_OK.
 */
static CK_RV enter_session(CK_SESSION_HANDLE h, bool args_ok, struct p11_session **out)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter()))
		return rv;
	if (!args_ok)
		return leave(CKR_ARGUMENTS_BAD);
	if (!(s = p11_session_get_locked(h)))
		return leave(CKR_SESSION_HANDLE_INVALID);
	if (out)
		*out = s;
	return CKR_OK;
}

/* The operations a session may have in progress, apart from a search. */
enum op_kind { OP_SIGN, OP_VERIFY, OP_DECRYPT, OP_ENCRYPT, OP_DIGEST };

/* Ends s's operation of kind k, if one is active. */
static void op_end(struct p11_session *s, enum op_kind k)
{
	switch (k) {
	case OP_SIGN:
		p11_op_cleanup(&s->sign);
		break;
	case OP_VERIFY:
		p11_op_cleanup(&s->verify);
		break;
	case OP_DECRYPT:
		p11_crypt_cleanup(&s->decrypt);
		break;
	case OP_ENCRYPT:
		p11_crypt_cleanup(&s->encrypt);
		break;
	case OP_DIGEST:
		p11_crypt_cleanup(&s->digest);
		break;
	}
}

/*
 * Entry points that continue or end an operation of kind k open with
 * this: as enter_session, and bad arguments on a valid session also end
 * its operation (PKCS#11: any error but CKR_BUFFER_TOO_SMALL ends an
 * active operation). The lock is held only on CKR_OK.
 */
static CK_RV enter_op(CK_SESSION_HANDLE h, bool args_ok, enum op_kind k, struct p11_session **out)
{
	struct p11_session *s;
	CK_RV rv = enter_session(h, true, &s);

	if (rv)
		return rv == CKR_SESSION_HANDLE_INVALID && !args_ok ? CKR_ARGUMENTS_BAD : rv;
	if (!args_ok) {
		op_end(s, k);
		return leave(CKR_ARGUMENTS_BAD);
	}
	*out = s;
	return CKR_OK;
}

/* A call on an operation of kind k with a required pointer NULL: ends it, CKR_ARGUMENTS_BAD. */
static CK_RV bad_args(CK_SESSION_HANDLE h, enum op_kind k)
{
	struct p11_session *s;

	return enter_op(h, false, k, &s);
}

static void session_free(struct p11_session *s)
{
	if (!s)
		return;
	p11_session_find_cleanup(s);
	p11_op_cleanup(&s->sign);
	p11_op_cleanup(&s->verify);
	p11_crypt_cleanup(&s->decrypt);
	p11_crypt_cleanup(&s->encrypt);
	p11_crypt_cleanup(&s->digest);
	free(s);
}

/*
 * A token's serial number: the first 16 hex digits of SHA-256 over the
 * partition, the key space and its owner, each followed by a NUL. It is
 * the same in every process and after every restart, and different for
 * every token (another partition, key space, machine or user), so that an
 * RFC 7512 URI's serial= picks one token.
 */
static void slot_serial(struct p11_slot *sl, const char *partition)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned md_len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(ctx, partition, strlen(partition) + 1) == 1 &&
		 EVP_DigestUpdate(ctx, sl->space, strlen(sl->space) + 1) == 1 &&
		 EVP_DigestUpdate(ctx, sl->owner, strlen(sl->owner) + 1) == 1 &&
		 EVP_DigestFinal_ex(ctx, md, &md_len) == 1;

	EVP_MD_CTX_free(ctx);
	if (!ok) {
		/* out of memory in OpenSSL: a token is still listed, its serial not unique */
		snprintf(sl->serial, sizeof sl->serial, "%s", sl->space);
		return;
	}
	for (size_t i = 0; i < P11_SERIAL_LEN / 2; i++) {
		sl->serial[2 * i] = hex[md[i] >> 4];
		sl->serial[2 * i + 1] = hex[md[i] & 15];
	}
	sl->serial[P11_SERIAL_LEN] = '\0';
}

static void add_slot(const char *space, const char *owner)
{
	struct p11_slot *sl = &p11.slots[p11.n_slots++];
	const char *part = kw_client_partition(p11.client);

	snprintf(sl->owner, sizeof sl->owner, "%s", owner);
	sl->space = space;
	slot_serial(sl, part ? part : "");
}

/*
 * fork() while another thread holds p11.lock would leave the child's copy
 * locked forever, and its C_Initialize would hang. The lock is taken
 * around fork, so the child gets it in a known state. (glibc drops these
 * handlers when the module is unloaded.)
 */
static void fork_prepare(void)
{
	pthread_mutex_lock(&p11.lock);
}

static void fork_done(void)
{
	pthread_mutex_unlock(&p11.lock);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void register_atfork(void)
{
	pthread_atfork(fork_prepare, fork_done, fork_done);
}

static CK_RV p11_C_Initialize(CK_VOID_PTR init_args)
{
	CK_C_INITIALIZE_ARGS_PTR a = init_args;
	char owner[KW_OWNER_MAX + 1];
	kw_rv rv;

	if (a) {
		int some = a->CreateMutex || a->DestroyMutex || a->LockMutex || a->UnlockMutex;
		int all = a->CreateMutex && a->DestroyMutex && a->LockMutex && a->UnlockMutex;

		if (a->pReserved || (some && !all))
			return CKR_ARGUMENTS_BAD;
		/* Only the operating system's locks are used: they must be allowed. */
		if (all && !(a->flags & CKF_OS_LOCKING_OK))
			return CKR_CANT_LOCK;
	}
	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&p11.lock);
	if (p11.initialized && p11.pid == getpid())
		return leave(CKR_CRYPTOKI_ALREADY_INITIALIZED);
	if (p11.initialized) {
		/*
		 * A child after fork(): the parent's state is left alone (its
		 * connections belong to the parent) and started afresh.
		 */
		memset(p11.slots, 0, sizeof p11.slots);
		p11.client = NULL;
		p11.sclient = NULL;
		p11.sessions = NULL;
		p11.n_sessions = 0;
		p11.initialized = 0;
	}
	kw_log_init(NULL); /* KEYWARD_DEBUG */
	rv = kw_client_new(NULL, &p11.client);
	if (!rv)
		rv = kw_client_new(NULL, &p11.sclient);
	if (!rv)
		rv = kw_client_single_connection(p11.sclient);
	if (rv) {
		log_failure(rv, "reading the client configuration");
		kw_client_free(p11.client);
		kw_client_free(p11.sclient);
		p11.client = p11.sclient = NULL;
		return leave(CKR_GENERAL_ERROR);
	}
	p11.sclient_used = 0;
	p11.n_slots = 0;
	if (kw_owner_machine(p11.client, owner, sizeof owner) == KW_OK)
		add_slot("machine", owner);
	else
		kw_log_write(KW_LOG_WARN, "keyward-pkcs11: no machine key space: %s", kw_last_error());
	if (kw_owner_user(p11.client, (unsigned)getuid(), owner, sizeof owner) == KW_OK)
		add_slot("user", owner);
	add_slot("shared", KW_OWNER_SHARED);
	p11.logged_in = 0;
	p11.pin_failed = 0;
	p11.pin_locked = 0;
	p11.pid = getpid();
	p11.initialized = 1;
	return leave(CKR_OK);
}

static CK_RV p11_C_Finalize(CK_VOID_PTR reserved)
{
	CK_RV rv;

	if (reserved)
		return CKR_ARGUMENTS_BAD;
	if ((rv = enter()))
		return rv;
	for (size_t i = 0; i < p11.n_sessions; i++)
		session_free(p11.sessions[i]);
	free(p11.sessions);
	p11.sessions = NULL;
	p11.n_sessions = 0;
	p11_objects_free_locked();
	kw_client_free(p11.client);
	/* closes the session objects' connection: keywardd destroys them */
	kw_client_free(p11.sclient);
	p11.client = p11.sclient = NULL;
	p11.sclient_used = 0;
	p11.initialized = 0;
	return leave(CKR_OK);
}

static CK_RV p11_C_GetInfo(CK_INFO_PTR info)
{
	CK_RV rv;

	if ((rv = enter()))
		return rv;
	if (!info)
		return leave(CKR_ARGUMENTS_BAD);
	memset(info, 0, sizeof *info);
	info->cryptokiVersion.major = 2;
	info->cryptokiVersion.minor = 40;
	pad(info->manufacturerID, sizeof info->manufacturerID, P11_MANUFACTURER);
	pad(info->libraryDescription, sizeof info->libraryDescription, "keyward network HSM");
	info->libraryVersion.major = 0;
	info->libraryVersion.minor = 1;
	return leave(CKR_OK);
}

static CK_RV p11_C_GetSlotList(CK_BBOOL token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
	CK_RV rv;

	(void)token_present; /* every slot holds its token */
	if ((rv = enter()))
		return rv;
	if (!count)
		return leave(CKR_ARGUMENTS_BAD);
	if (list && *count < p11.n_slots)
		rv = CKR_BUFFER_TOO_SMALL;
	else if (list)
		for (size_t i = 0; i < p11.n_slots; i++)
			list[i] = i;
	*count = p11.n_slots;
	return leave(rv);
}

static CK_RV p11_C_GetSlotInfo(CK_SLOT_ID id, CK_SLOT_INFO_PTR info)
{
	char desc[80];
	CK_RV rv;

	if ((rv = enter()))
		return rv;
	if (!info)
		return leave(CKR_ARGUMENTS_BAD);
	if (id >= p11.n_slots)
		return leave(CKR_SLOT_ID_INVALID);
	memset(info, 0, sizeof *info);
	/* "<space> <owner>": the longest user SID still fits the 64 characters */
	snprintf(desc, sizeof desc, "%s %s", p11.slots[id].space, p11.slots[id].owner);
	pad(info->slotDescription, sizeof info->slotDescription, desc);
	pad(info->manufacturerID, sizeof info->manufacturerID, P11_MANUFACTURER);
	info->flags = P11_SLOT_FLAGS;
	info->hardwareVersion.major = 0;
	info->firmwareVersion.major = 0;
	return leave(CKR_OK);
}

static CK_RV p11_C_GetTokenInfo(CK_SLOT_ID id, CK_TOKEN_INFO_PTR info)
{
	char label[40];
	CK_RV rv;

	if ((rv = enter()))
		return rv;
	if (!info)
		return leave(CKR_ARGUMENTS_BAD);
	if (id >= p11.n_slots)
		return leave(CKR_SLOT_ID_INVALID);
	memset(info, 0, sizeof *info);
	snprintf(label, sizeof label, "keyward %s", p11.slots[id].space);
	pad(info->label, sizeof info->label, label);
	pad(info->manufacturerID, sizeof info->manufacturerID, P11_MANUFACTURER);
	pad(info->model, sizeof info->model, "network HSM");
	pad(info->serialNumber, sizeof info->serialNumber, p11.slots[id].serial);
	info->flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED;
	/* the PIN's state as this process saw it (see C_Login) */
	if (p11.pin_failed)
		info->flags |= CKF_USER_PIN_COUNT_LOW;
	if (p11.pin_locked)
		info->flags |= CKF_USER_PIN_LOCKED;
	info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
	info->ulSessionCount = CK_UNAVAILABLE_INFORMATION;
	info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
	info->ulRwSessionCount = CK_UNAVAILABLE_INFORMATION;
	info->ulMaxPinLen = 256;
	info->ulMinPinLen = 0;
	info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
	pad(info->utcTime, sizeof info->utcTime, "");
	return leave(CKR_OK);
}

static CK_RV p11_C_GetMechanismList(CK_SLOT_ID id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
	CK_RV rv;

	if ((rv = enter()))
		return rv;
	if (!count)
		return leave(CKR_ARGUMENTS_BAD);
	if (id >= p11.n_slots)
		return leave(CKR_SLOT_ID_INVALID);
	return leave(p11_mechanism_list(list, count));
}

static CK_RV p11_C_GetMechanismInfo(CK_SLOT_ID id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
	CK_RV rv;

	if ((rv = enter()))
		return rv;
	if (!info)
		return leave(CKR_ARGUMENTS_BAD);
	if (id >= p11.n_slots)
		return leave(CKR_SLOT_ID_INVALID);
	return leave(p11_mechanism_info(type, info));
}

static CK_RV p11_C_OpenSession(CK_SLOT_ID id, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
			       CK_SESSION_HANDLE_PTR out)
{
	struct p11_session *s, **grown;
	size_t i;
	CK_RV rv;

	(void)app;
	(void)notify; /* no callbacks are ever made */
	if ((rv = enter()))
		return rv;
	if (!out)
		return leave(CKR_ARGUMENTS_BAD);
	if (id >= p11.n_slots)
		return leave(CKR_SLOT_ID_INVALID);
	if (!(flags & CKF_SERIAL_SESSION))
		return leave(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	if (!(s = calloc(1, sizeof *s)))
		return leave(CKR_HOST_MEMORY);
	s->slot = id;
	s->flags = flags;
	for (i = 0; i < p11.n_sessions && p11.sessions[i]; i++)
		;
	if (i == p11.n_sessions) {
		grown = realloc(p11.sessions, (p11.n_sessions + 16) * sizeof *grown);
		if (!grown) {
			free(s);
			return leave(CKR_HOST_MEMORY);
		}
		memset(grown + p11.n_sessions, 0, 16 * sizeof *grown);
		p11.sessions = grown;
		p11.n_sessions += 16;
	}
	p11.sessions[i] = s;
	*out = i + 1;
	return leave(CKR_OK);
}

static CK_RV p11_C_CloseSession(CK_SESSION_HANDLE h)
{
	struct p11_session *s;
	int open = 0;
	CK_RV rv;

	if ((rv = enter_session(h, true, &s)))
		return rv;
	p11_session_objects_destroy_locked(h, 0);
	session_free(s);
	p11.sessions[h - 1] = NULL;
	for (size_t i = 0; i < p11.n_sessions; i++)
		open |= p11.sessions[i] != NULL;
	if (!open)
		p11.logged_in = 0; /* the last session closed: logged out */
	return leave(CKR_OK);
}

static CK_RV p11_C_CloseAllSessions(CK_SLOT_ID id)
{
	int open = 0;
	CK_RV rv;

	if ((rv = enter()))
		return rv;
	if (id >= p11.n_slots)
		return leave(CKR_SLOT_ID_INVALID);
	for (size_t i = 0; i < p11.n_sessions; i++) {
		if (p11.sessions[i] && p11.sessions[i]->slot == id) {
			p11_session_objects_destroy_locked(i + 1, 0);
			session_free(p11.sessions[i]);
			p11.sessions[i] = NULL;
		}
		open |= p11.sessions[i] != NULL;
	}
	if (!open)
		p11.logged_in = 0;
	return leave(CKR_OK);
}

static CK_RV p11_C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
	struct p11_session *s;
	int rw;
	CK_RV rv;

	if ((rv = enter_session(h, !(!info), &s)))
		return rv;
	rw = (s->flags & CKF_RW_SESSION) != 0;
	memset(info, 0, sizeof *info);
	info->slotID = s->slot;
	info->flags = s->flags;
	if (p11.logged_in)
		info->state = rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
	else
		info->state = rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
	return leave(CKR_OK);
}

/*
 * A failed login's CK_RV. local: the key file refused the PIN (wrong PIN),
 * or could not be read (this client is not registered); else the HSM
 * answered: KW_ERR_AUTH means it refuses the credential (revoked, its
 * partition deleted, never registered there).
 */
static CK_RV login_ckr(kw_rv krv, bool local)
{
	switch (krv) {
	case KW_ERR_AUTH:
		return local ? CKR_PIN_INCORRECT : CKR_USER_PIN_NOT_INITIALIZED;
	case KW_ERR_CONFIG:
		return local ? CKR_USER_PIN_NOT_INITIALIZED : CKR_GENERAL_ERROR;
	case KW_ERR_LOCKED_OUT:
		return CKR_PIN_LOCKED;
	default:
		return kw_rv_to_ckr(krv);
	}
}

/*
 * C_Login(CKU_SO). A keyward token has no security officer: administration
 * is keyward-admin's, on the HSM's own socket, so no SO PIN exists and none
 * is ever right. CKU_SO is a valid user type (CKR_USER_TYPE_INVALID would
 * say it is not), so the answer is PKCS#11's for an SO login in that state:
 * the user logged in, CKR_USER_ANOTHER_ALREADY_LOGGED_IN; a read-only
 * session open, CKR_SESSION_READ_ONLY_EXISTS; else CKR_PIN_INCORRECT.
 * Lock held.
 */
static CK_RV so_login_locked(void)
{
	if (p11.logged_in)
		return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
	for (size_t i = 0; i < p11.n_sessions; i++)
		if (p11.sessions[i] && !(p11.sessions[i]->flags & CKF_RW_SESSION))
			return CKR_SESSION_READ_ONLY_EXISTS;
	return CKR_PIN_INCORRECT;
}

/*
 * What a failed user login answers, and the token flags it leaves: a
 * wrong PIN (the credential's key file does not open) sets
 * CKF_USER_PIN_COUNT_LOW until a login succeeds; the HSM refusing the
 * credential after repeated failures (LOCKED_OUT) sets CKF_USER_PIN_LOCKED.
 * The PIN is checked here, not on the HSM, so nothing counts down to a
 * final try (CKF_USER_PIN_FINAL_TRY is never set). Lock held.
 */
static CK_RV login_failed_locked(kw_rv krv, bool local)
{
	if (krv == KW_ERR_AUTH && local)
		p11.pin_failed = 1;
	if (krv == KW_ERR_LOCKED_OUT)
		p11.pin_locked = 1;
	return login_ckr(krv, local);
}

static CK_RV p11_C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
	struct p11_session *s;
	unsigned char probe[1];
	char *copy = NULL;
	bool local;
	kw_rv krv;
	CK_RV rv;

	if ((rv = enter_session(h, !(!pin && pin_len), &s)))
		return rv;
	if (user == CKU_SO)
		return leave(so_login_locked());
	if (user != CKU_USER && user != CKU_CONTEXT_SPECIFIC)
		return leave(CKR_USER_TYPE_INVALID);
	if (user == CKU_USER && p11.logged_in)
		return leave(CKR_USER_ALREADY_LOGGED_IN);
	/* a context-specific login authorizes the session's operation in progress, for a logged-in user */
	if (user == CKU_CONTEXT_SPECIFIC && !s->sign.active && !s->decrypt.active)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	if (user == CKU_CONTEXT_SPECIFIC && !p11.logged_in)
		return leave(CKR_USER_NOT_LOGGED_IN);
	if (pin_len > 256)
		return leave(CKR_PIN_LEN_RANGE);
	if (!(copy = malloc(pin_len + 1)))
		return leave(CKR_HOST_MEMORY);
	if (pin_len)
		memcpy(copy, pin, pin_len);
	copy[pin_len] = '\0';
	/* the PIN is checked here, against the key file: a wrong one is told apart from what the HSM says */
	krv = kw_client_check_pin(p11.client, copy);
	local = krv != KW_OK;
	/* a context-specific login only proves the PIN again: the clients keep theirs */
	if (!krv && user == CKU_USER)
		krv = kw_client_set_pin(p11.client, copy);
	if (!krv && user == CKU_USER)
		krv = kw_client_set_pin(p11.sclient, copy);
	OPENSSL_cleanse(copy, pin_len);
	free(copy);
	/* one small request proves the HSM takes the credential */
	if (!krv && user == CKU_USER)
		krv = kw_generate_random(p11.client, probe, sizeof probe);
	OPENSSL_cleanse(probe, sizeof probe);
	if (krv) {
		log_failure(krv, "login");
		if (user == CKU_USER) {
			kw_client_set_pin(p11.client, NULL);
			kw_client_set_pin(p11.sclient, NULL);
		}
		return leave(login_failed_locked(krv, local));
	}
	p11.logged_in = 1;
	p11.pin_failed = 0;
	p11.pin_locked = 0;
	return leave(CKR_OK);
}

static CK_RV p11_C_Logout(CK_SESSION_HANDLE h)
{
	CK_RV rv;

	if ((rv = enter_session(h, true, NULL)))
		return rv;
	if (!p11.logged_in)
		return leave(CKR_USER_NOT_LOGGED_IN);
	/* PKCS#11: logging out destroys the application's private session objects */
	p11_session_objects_destroy_locked(0, 1);
	p11.logged_in = 0;
	kw_client_set_pin(p11.client, NULL);
	kw_client_set_pin(p11.sclient, NULL);
	return leave(CKR_OK);
}

static CK_RV p11_C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_session(h, !(!templ && count), &s)))
		return rv;
	if (s->finding)
		return leave(CKR_OPERATION_ACTIVE);
	return leave(p11_find_init_locked(s, templ, count));
}

static CK_RV p11_C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count)
{
	struct p11_session *s;
	CK_ULONG n = 0;
	CK_RV rv;

	if ((rv = enter_session(h, !(!out || !count), &s)))
		return rv;
	if (!s->finding)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	while (n < max && s->pos < s->n_found)
		out[n++] = s->found[s->pos++];
	*count = n;
	return leave(CKR_OK);
}

static CK_RV p11_C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_session(h, true, &s)))
		return rv;
	if (!s->finding)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	p11_session_find_cleanup(s);
	return leave(CKR_OK);
}

static CK_RV p11_C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	const kw_object *o;
	CK_RV rv;

	if ((rv = enter_session(h, !(!templ && count), NULL)))
		return rv;
	if (!(o = p11_object_get_locked(oh)))
		return leave(CKR_OBJECT_HANDLE_INVALID);
	return leave(p11_get_attributes_locked(o, templ, count));
}

static CK_RV p11_C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub_t, CK_ULONG pub_n,
				   CK_ATTRIBUTE_PTR priv_t, CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR pub_h,
				   CK_OBJECT_HANDLE_PTR priv_h)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_session(h, !(!m || !pub_h || !priv_h || (!pub_t && pub_n) || (!priv_t && priv_n)), &s)))
		return rv;
	if (!p11.logged_in)
		return leave(CKR_USER_NOT_LOGGED_IN);
	if (!(s->flags & CKF_RW_SESSION))
		return leave(CKR_SESSION_READ_ONLY);
	return leave(p11_generate_key_pair_locked(s, m, pub_t, pub_n, priv_t, priv_n, pub_h, priv_h));
}

static CK_RV op_init(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key, int verify)
{
	struct p11_session *s;
	struct p11_op *op;
	CK_RV rv;

	if ((rv = enter_session(h, !(!m), &s)))
		return rv;
	op = verify ? &s->verify : &s->sign;
	if (op->active)
		return leave(CKR_OPERATION_ACTIVE);
	if (!verify && !p11.logged_in)
		return leave(CKR_USER_NOT_LOGGED_IN);
	return leave(p11_op_init_locked(s, op, verify, m, key));
}

static CK_RV op_update(CK_SESSION_HANDLE h, const unsigned char *data, CK_ULONG len, int verify)
{
	struct p11_session *s;
	struct p11_op *op;
	CK_RV rv;

	if ((rv = enter_op(h, !(!data && len), verify ? OP_VERIFY : OP_SIGN, &s)))
		return rv;
	op = verify ? &s->verify : &s->sign;
	if (!op->active)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	rv = p11_op_update(op, data, len);
	if (rv)
		p11_op_cleanup(op);
	return leave(rv);
}

static CK_RV p11_C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	return op_init(h, m, key, 0);
}

static CK_RV p11_C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len)
{
	return op_update(h, data, len, 0);
}

static CK_RV p11_C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	if (!sig_len)
		return bad_args(h, OP_SIGN);
	return p11_sign_final(h, sig, sig_len);
}

static CK_RV p11_C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_op(h, !((!data && len) || !sig_len), OP_SIGN, &s)))
		return rv;
	if (!s->sign.active)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	/* The size query: the length follows from the key, no HSM request. */
	if (!sig || *sig_len < s->sign.sig_len) {
		rv = sig ? CKR_BUFFER_TOO_SMALL : CKR_OK;
		*sig_len = s->sign.sig_len;
		return leave(rv);
	}
	if ((rv = p11_op_update(&s->sign, data, len))) {
		p11_op_cleanup(&s->sign);
		return leave(rv);
	}
	leave(CKR_OK);
	return p11_sign_final(h, sig, sig_len);
}

static CK_RV p11_C_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	return op_init(h, m, key, 1);
}

static CK_RV p11_C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len)
{
	return op_update(h, data, len, 1);
}

static CK_RV verify_final(CK_SESSION_HANDLE h, const unsigned char *data, CK_ULONG len, int with_data, CK_BYTE_PTR sig,
			  CK_ULONG sig_len)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_op(h, !((!data && len) || !sig), OP_VERIFY, &s)))
		return rv;
	if (!s->verify.active)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	rv = with_data ? p11_op_update(&s->verify, data, len) : CKR_OK;
	if (!rv && s->verify.kwm.mech == KW_MECH_HMAC) {
		/* the HSM makes the MAC: unlocked, as signing */
		CK_ULONG n = sig_len;

		leave(CKR_OK);
		return p11_hmac_final(h, 1, sig, &n);
	}
	if (!rv)
		rv = p11_verify_final_locked(&s->verify, sig, sig_len);
	p11_op_cleanup(&s->verify);
	return leave(rv);
}

static CK_RV p11_C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
	return verify_final(h, data, len, 1, sig, sig_len);
}

static CK_RV p11_C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
	return verify_final(h, NULL, 0, 0, sig, sig_len);
}

static CK_RV p11_C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
	kw_client *c;
	kw_rv krv;
	CK_RV rv;

	if ((rv = enter_session(h, !(!out && len), NULL)))
		return rv;
	c = p11.client;
	leave(CKR_OK);
	if (!len)
		return CKR_OK;
	/* kw_client is thread-safe; C_Finalize during a call is the caller's error */
	krv = kw_generate_random(c, out, len);
	return p11_ckr(krv, "generating random bytes");
}

static CK_RV p11_C_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len)
{
	CK_RV rv;

	if ((rv = enter_session(h, !(!seed && len), NULL)))
		return rv;
	return leave(CKR_RANDOM_SEED_NOT_SUPPORTED);
}

/* ---- object management (manage.c) ---- */

/* Opens an entry point that changes the HSM: session h, logged in, R/W if rw. Lock held on CKR_OK. */
static CK_RV enter_write(CK_SESSION_HANDLE h, int rw, struct p11_session **out)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_session(h, true, &s)))
		return rv;
	if (!p11.logged_in)
		return leave(CKR_USER_NOT_LOGGED_IN);
	if (rw && !(s->flags & CKF_RW_SESSION))
		return leave(CKR_SESSION_READ_ONLY);
	if (out)
		*out = s;
	return CKR_OK;
}

static CK_RV p11_C_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_write(h, 1, &s)))
		return rv;
	if ((!t && n) || !out)
		return leave(CKR_ARGUMENTS_BAD);
	return leave(p11_create_object_locked(s, t, n, out));
}

static CK_RV p11_C_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n,
			      CK_OBJECT_HANDLE_PTR out)
{
	CK_RV rv;

	if ((rv = enter_write(h, 1, NULL)))
		return rv;
	if ((!t && n) || !out)
		return leave(CKR_ARGUMENTS_BAD);
	return leave(p11_copy_object_locked(o, t, n, out));
}

static CK_RV p11_C_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
	CK_RV rv;

	if ((rv = enter_write(h, 1, NULL)))
		return rv;
	return leave(p11_destroy_object_locked(o));
}

static CK_RV p11_C_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ULONG_PTR size)
{
	CK_RV rv;

	if ((rv = enter_session(h, !(!size), NULL)))
		return rv;
	return leave(p11_object_size_locked(o, size));
}

static CK_RV p11_C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	CK_RV rv;

	if ((rv = enter_write(h, 1, NULL)))
		return rv;
	if (!t && n)
		return leave(CKR_ARGUMENTS_BAD);
	return leave(p11_set_attributes_locked(o, t, n));
}

static CK_RV p11_C_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
			       CK_OBJECT_HANDLE_PTR out)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_write(h, 1, &s)))
		return rv;
	if (!m || (!t && n) || !out)
		return leave(CKR_ARGUMENTS_BAD);
	return leave(p11_generate_key_locked(s, m, t, n, out));
}

static CK_RV p11_C_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE unwrapping,
			     CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR t, CK_ULONG n,
			     CK_OBJECT_HANDLE_PTR out)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_write(h, 1, &s)))
		return rv;
	if (!m || !wrapped || !wrapped_len || (!t && n) || !out)
		return leave(CKR_ARGUMENTS_BAD);
	return leave(p11_unwrap_key_locked(s, m, unwrapping, wrapped, wrapped_len, t, n, out));
}

static CK_RV p11_C_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR t,
			     CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_write(h, 1, &s)))
		return rv;
	if (!m || (!t && n) || !out)
		return leave(CKR_ARGUMENTS_BAD);
	return leave(p11_derive_key_locked(s, m, base, t, n, out));
}

static CK_RV p11_C_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
			   CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	CK_RV rv;

	if ((rv = enter()))
		return rv;
	if (!m || !out_len)
		return leave(CKR_ARGUMENTS_BAD);
	leave(CKR_OK);
	return p11_wrap_key(h, m, wrapping, key, out, out_len);
}

/* ---- decryption, encryption, digests (crypt.c) ---- */

enum crypt_kind { DECRYPT = OP_DECRYPT, ENCRYPT = OP_ENCRYPT, DIGEST = OP_DIGEST };

static struct p11_crypt *crypt_op(struct p11_session *s, enum crypt_kind kind)
{
	return kind == DECRYPT ? &s->decrypt : kind == ENCRYPT ? &s->encrypt : &s->digest;
}

static CK_RV crypt_init(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key, enum crypt_kind kind)
{
	struct p11_session *s;
	struct p11_crypt *op;
	CK_RV rv;

	if ((rv = enter_session(h, !(!m), &s)))
		return rv;
	op = crypt_op(s, kind);
	if (op->active)
		return leave(CKR_OPERATION_ACTIVE);
	if (kind == DECRYPT && !p11.logged_in)
		return leave(CKR_USER_NOT_LOGGED_IN);
	if (kind == DECRYPT)
		return leave(p11_decrypt_init_locked(op, m, key));
	if (kind == ENCRYPT)
		return leave(p11_encrypt_init_locked(op, m, key));
	return leave(p11_digest_init_locked(op, m));
}

/*
 * A part of the input. Single-part calls pass restart: the input is the
 * whole of it, also when the call repeats after a length query.
 */
static CK_RV crypt_update_locked(struct p11_crypt *op, enum crypt_kind kind, const unsigned char *in, size_t len,
				 int restart)
{
	if (restart)
		op->len = 0;
	return kind == DIGEST ? p11_digest_update(op, in, len) : p11_crypt_update(op, in, len);
}

static CK_RV crypt_update(CK_SESSION_HANDLE h, const unsigned char *in, CK_ULONG len, enum crypt_kind kind)
{
	struct p11_session *s;
	struct p11_crypt *op;
	CK_RV rv;

	if ((rv = enter_op(h, !(!in && len), (enum op_kind)kind, &s)))
		return rv;
	op = crypt_op(s, kind);
	if (!op->active)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	if ((rv = crypt_update_locked(op, kind, in, len, 0)))
		p11_crypt_cleanup(op);
	return leave(rv);
}

/* The end of an operation: with_input for the single-part calls (C_Decrypt, C_Encrypt, C_Digest). */
static CK_RV crypt_final(CK_SESSION_HANDLE h, const unsigned char *in, CK_ULONG in_len, int with_input, CK_BYTE_PTR out,
			 CK_ULONG_PTR out_len, enum crypt_kind kind)
{
	struct p11_session *s;
	struct p11_crypt *op;
	CK_RV rv;

	if ((rv = enter_op(h, !((!in && in_len) || !out_len), (enum op_kind)kind, &s)))
		return rv;
	op = crypt_op(s, kind);
	if (!op->active)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	if (kind == DIGEST && !out) {
		*out_len = op->out_max; /* a length query hashes nothing yet */
		return leave(CKR_OK);
	}
	if (with_input && (rv = crypt_update_locked(op, kind, in, in_len, kind != DIGEST))) {
		p11_crypt_cleanup(op);
		return leave(rv);
	}
	if (kind == DECRYPT) {
		leave(CKR_OK);
		return p11_decrypt_final(h, out, out_len);
	}
	if (kind == ENCRYPT && op->aes_mech) {
		leave(CKR_OK);
		return p11_aes_final(h, 1, out, out_len);
	}
	rv = kind == ENCRYPT ? p11_encrypt_final_locked(op, out, out_len) : p11_digest_final_locked(op, out, out_len);
	/* a length query or a short buffer keeps the operation; anything else ends it */
	if (!(rv == CKR_OK && !out) && rv != CKR_BUFFER_TOO_SMALL)
		p11_crypt_cleanup(op);
	return leave(rv);
}

static CK_RV p11_C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	return crypt_init(h, m, key, DECRYPT);
}

static CK_RV p11_C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return crypt_final(h, in, in_len, 1, out, out_len, DECRYPT);
}

/* A part of an RSA block: gathered, and nothing comes out until the end. */
static CK_RV block_update(CK_SESSION_HANDLE h, const unsigned char *in, CK_ULONG in_len, CK_ULONG_PTR out_len,
			  enum crypt_kind kind)
{
	CK_RV rv;

	if (!out_len)
		return bad_args(h, (enum op_kind)kind);
	rv = crypt_update(h, in, in_len, kind);
	if (!rv)
		*out_len = 0;
	return rv;
}

static CK_RV p11_C_DecryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
				 CK_ULONG_PTR out_len)
{
	(void)out;
	return block_update(h, in, in_len, out_len, DECRYPT);
}

static CK_RV p11_C_DecryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return crypt_final(h, NULL, 0, 0, out, out_len, DECRYPT);
}

static CK_RV p11_C_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	return crypt_init(h, m, key, ENCRYPT);
}

static CK_RV p11_C_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return crypt_final(h, in, in_len, 1, out, out_len, ENCRYPT);
}

static CK_RV p11_C_EncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
				 CK_ULONG_PTR out_len)
{
	(void)out;
	return block_update(h, in, in_len, out_len, ENCRYPT);
}

static CK_RV p11_C_EncryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return crypt_final(h, NULL, 0, 0, out, out_len, ENCRYPT);
}

static CK_RV p11_C_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m)
{
	return crypt_init(h, m, 0, DIGEST);
}

static CK_RV p11_C_Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return crypt_final(h, in, in_len, 1, out, out_len, DIGEST);
}

static CK_RV p11_C_DigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len)
{
	return crypt_update(h, in, in_len, DIGEST);
}

static CK_RV p11_C_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
	struct p11_session *s;
	CK_RV rv;

	(void)key;
	if ((rv = enter_session(h, true, &s)))
		return rv;
	if (!s->digest.active)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	/* a key's value never leaves the HSM, not even into a hash; the error ends the digest */
	p11_crypt_cleanup(&s->digest);
	return leave(CKR_KEY_INDIGESTIBLE);
}

static CK_RV p11_C_DigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return crypt_final(h, NULL, 0, 0, out, out_len, DIGEST);
}

/*
 * Functions keyward does not offer: token and PIN administration (that is
 * keyward-admin's and enrollment's), operation state, recovery signatures,
 * dual-function updates, unwrapping and derivation (keys are born on the
 * HSM), waiting for slot events, and PKCS#11 3.0's message-based functions.
 * Each checks initialization and answers CKR_FUNCTION_NOT_SUPPORTED; the
 * bodies ignore their arguments.
 */
static CK_RV not_supported(void)
{
	CK_RV rv = enter();

	return rv ? rv : leave(CKR_FUNCTION_NOT_SUPPORTED);
}

#define P11_UNSUPPORTED(name, params)                                                                                  \
	static CK_RV p11_##name params                                                                                 \
	{                                                                                                              \
		return not_supported();                                                                                \
	}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
P11_UNSUPPORTED(C_InitToken, (CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d))
P11_UNSUPPORTED(C_InitPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c))
P11_UNSUPPORTED(C_SetPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d, CK_ULONG e))
P11_UNSUPPORTED(C_GetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
P11_UNSUPPORTED(C_SetOperationState,
		(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE d, CK_OBJECT_HANDLE e))
P11_UNSUPPORTED(C_SignRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
P11_UNSUPPORTED(C_SignRecover, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
P11_UNSUPPORTED(C_VerifyRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
P11_UNSUPPORTED(C_VerifyRecover, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
P11_UNSUPPORTED(C_DigestEncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
P11_UNSUPPORTED(C_DecryptDigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
P11_UNSUPPORTED(C_SignEncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
P11_UNSUPPORTED(C_DecryptVerifyUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
P11_UNSUPPORTED(C_WaitForSlotEvent, (CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c))
/* PKCS#11 3.0's message-based functions: keyward has no AEAD or per-message mechanism to offer. */
P11_UNSUPPORTED(C_MessageInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
P11_UNSUPPORTED(C_CryptMessage, (CK_SESSION_HANDLE a, CK_VOID_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e,
				 CK_BYTE_PTR f, CK_ULONG g, CK_BYTE_PTR i, CK_ULONG_PTR j))
P11_UNSUPPORTED(C_CryptMessageBegin, (CK_SESSION_HANDLE a, CK_VOID_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e))
P11_UNSUPPORTED(C_CryptMessageNext, (CK_SESSION_HANDLE a, CK_VOID_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e,
				     CK_BYTE_PTR f, CK_ULONG_PTR g, CK_FLAGS i))
P11_UNSUPPORTED(C_MessageFinal, (CK_SESSION_HANDLE a))
P11_UNSUPPORTED(C_SignMessage, (CK_SESSION_HANDLE a, CK_VOID_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e,
				CK_BYTE_PTR f, CK_ULONG_PTR g))
P11_UNSUPPORTED(C_MessageBegin, (CK_SESSION_HANDLE a, CK_VOID_PTR b, CK_ULONG c))
P11_UNSUPPORTED(C_VerifyMessage,
		(CK_SESSION_HANDLE a, CK_VOID_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e, CK_BYTE_PTR f, CK_ULONG g))
#pragma GCC diagnostic pop

/*
 * The legacy parallel functions: PKCS#11 (2.40 and 3.0) has every module
 * answer CKR_FUNCTION_NOT_PARALLEL for a valid session.
 */
static CK_RV p11_C_GetFunctionStatus(CK_SESSION_HANDLE h)
{
	CK_RV rv;

	if ((rv = enter_session(h, true, NULL)))
		return rv;
	return leave(CKR_FUNCTION_NOT_PARALLEL);
}

static CK_RV p11_C_CancelFunction(CK_SESSION_HANDLE h)
{
	return p11_C_GetFunctionStatus(h);
}

/*
 * PKCS#11 3.0's C_LoginUser. A keyward credential is one partition's: the
 * user name, if given, must be that partition's name (any other is
 * CKR_PIN_INCORRECT, as a wrong name and PIN pair would be). Otherwise as
 * C_Login.
 */
static CK_RV p11_C_LoginUser(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len,
			     CK_UTF8CHAR_PTR name, CK_ULONG name_len)
{
	const char *part;
	int match;
	CK_RV rv;

	if ((rv = enter_session(h, !(!name && name_len), NULL)))
		return rv;
	part = kw_client_partition(p11.client);
	match = !name_len || (part && strlen(part) == name_len && !memcmp(part, name, name_len));
	leave(CKR_OK);
	return match ? p11_C_Login(h, user, pin, pin_len) : CKR_PIN_INCORRECT;
}

/*
 * PKCS#11 3.0's C_SessionCancel: ends the session's operations that flags
 * name (CKF_SIGN, CKF_VERIFY, CKF_DECRYPT, CKF_ENCRYPT, CKF_DIGEST,
 * CKF_FIND_OBJECTS), active or not. Other flags name operations keyward
 * never has in progress and are accepted as done.
 */
static CK_RV p11_C_SessionCancel(CK_SESSION_HANDLE h, CK_FLAGS flags)
{
	static const struct {
		CK_FLAGS flag;
		enum op_kind kind;
	} ops[] = {{CKF_SIGN, OP_SIGN},
		   {CKF_VERIFY, OP_VERIFY},
		   {CKF_DECRYPT, OP_DECRYPT},
		   {CKF_ENCRYPT, OP_ENCRYPT},
		   {CKF_DIGEST, OP_DIGEST}};
	struct p11_session *s;
	CK_RV rv;

	if ((rv = enter_session(h, true, &s)))
		return rv;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (flags & ops[i].flag)
			op_end(s, ops[i].kind);
	if (flags & CKF_FIND_OBJECTS)
		p11_session_find_cleanup(s);
	return leave(CKR_OK);
}

/* C_GetInfo through the 3.0 interface: the same, in version 3.0. */
static CK_RV p11_C_GetInfo_3_0(CK_INFO_PTR info)
{
	CK_RV rv = p11_C_GetInfo(info);

	if (!rv) {
		info->cryptokiVersion.major = 3;
		info->cryptokiVersion.minor = 0;
	}
	return rv;
}

static CK_FUNCTION_LIST function_list = {
	.version = {2, 40},
	.C_GetFunctionList = C_GetFunctionList,
	.C_Initialize = p11_C_Initialize,
	.C_Finalize = p11_C_Finalize,
	.C_GetInfo = p11_C_GetInfo,
	.C_GetSlotList = p11_C_GetSlotList,
	.C_GetSlotInfo = p11_C_GetSlotInfo,
	.C_GetTokenInfo = p11_C_GetTokenInfo,
	.C_GetMechanismList = p11_C_GetMechanismList,
	.C_GetMechanismInfo = p11_C_GetMechanismInfo,
	.C_InitToken = p11_C_InitToken,
	.C_InitPIN = p11_C_InitPIN,
	.C_SetPIN = p11_C_SetPIN,
	.C_OpenSession = p11_C_OpenSession,
	.C_CloseSession = p11_C_CloseSession,
	.C_CloseAllSessions = p11_C_CloseAllSessions,
	.C_GetSessionInfo = p11_C_GetSessionInfo,
	.C_GetOperationState = p11_C_GetOperationState,
	.C_SetOperationState = p11_C_SetOperationState,
	.C_Login = p11_C_Login,
	.C_Logout = p11_C_Logout,
	.C_CreateObject = p11_C_CreateObject,
	.C_CopyObject = p11_C_CopyObject,
	.C_DestroyObject = p11_C_DestroyObject,
	.C_GetObjectSize = p11_C_GetObjectSize,
	.C_GetAttributeValue = p11_C_GetAttributeValue,
	.C_SetAttributeValue = p11_C_SetAttributeValue,
	.C_FindObjectsInit = p11_C_FindObjectsInit,
	.C_FindObjects = p11_C_FindObjects,
	.C_FindObjectsFinal = p11_C_FindObjectsFinal,
	.C_EncryptInit = p11_C_EncryptInit,
	.C_Encrypt = p11_C_Encrypt,
	.C_EncryptUpdate = p11_C_EncryptUpdate,
	.C_EncryptFinal = p11_C_EncryptFinal,
	.C_DecryptInit = p11_C_DecryptInit,
	.C_Decrypt = p11_C_Decrypt,
	.C_DecryptUpdate = p11_C_DecryptUpdate,
	.C_DecryptFinal = p11_C_DecryptFinal,
	.C_DigestInit = p11_C_DigestInit,
	.C_Digest = p11_C_Digest,
	.C_DigestUpdate = p11_C_DigestUpdate,
	.C_DigestKey = p11_C_DigestKey,
	.C_DigestFinal = p11_C_DigestFinal,
	.C_SignInit = p11_C_SignInit,
	.C_Sign = p11_C_Sign,
	.C_SignUpdate = p11_C_SignUpdate,
	.C_SignFinal = p11_C_SignFinal,
	.C_SignRecoverInit = p11_C_SignRecoverInit,
	.C_SignRecover = p11_C_SignRecover,
	.C_VerifyInit = p11_C_VerifyInit,
	.C_Verify = p11_C_Verify,
	.C_VerifyUpdate = p11_C_VerifyUpdate,
	.C_VerifyFinal = p11_C_VerifyFinal,
	.C_VerifyRecoverInit = p11_C_VerifyRecoverInit,
	.C_VerifyRecover = p11_C_VerifyRecover,
	.C_DigestEncryptUpdate = p11_C_DigestEncryptUpdate,
	.C_DecryptDigestUpdate = p11_C_DecryptDigestUpdate,
	.C_SignEncryptUpdate = p11_C_SignEncryptUpdate,
	.C_DecryptVerifyUpdate = p11_C_DecryptVerifyUpdate,
	.C_GenerateKey = p11_C_GenerateKey,
	.C_GenerateKeyPair = p11_C_GenerateKeyPair,
	.C_WrapKey = p11_C_WrapKey,
	.C_UnwrapKey = p11_C_UnwrapKey,
	.C_DeriveKey = p11_C_DeriveKey,
	.C_SeedRandom = p11_C_SeedRandom,
	.C_GenerateRandom = p11_C_GenerateRandom,
	.C_GetFunctionStatus = p11_C_GetFunctionStatus,
	.C_CancelFunction = p11_C_CancelFunction,
	.C_WaitForSlotEvent = p11_C_WaitForSlotEvent,
};

/*
 * The "PKCS 11" 3.0 interface: the 2.40 functions (C_GetInfo saying 3.0),
 * then every 3.0 function, each set: the message-based ones answer
 * CKR_FUNCTION_NOT_SUPPORTED.
 */
static CK_FUNCTION_LIST_3_0 function_list_3_0;
_Static_assert(offsetof(CK_FUNCTION_LIST_3_0, C_GetInterfaceList) == sizeof(CK_FUNCTION_LIST),
	       "the 3.0 list begins with the 2.40 list");

static pthread_once_t list_3_0_once = PTHREAD_ONCE_INIT;

static void list_3_0_init(void)
{
	CK_FUNCTION_LIST_3_0 *l = &function_list_3_0;

	/* the 2.40 list is the 3.0 list's beginning, member for member */
	memcpy(l, &function_list, sizeof function_list);
	l->version.major = 3;
	l->version.minor = 0;
	l->C_GetInfo = p11_C_GetInfo_3_0;
	l->C_GetInterfaceList = p11_get_interface_list;
	l->C_GetInterface = p11_get_interface;
	l->C_LoginUser = p11_C_LoginUser;
	l->C_SessionCancel = p11_C_SessionCancel;
	l->C_MessageEncryptInit = l->C_MessageDecryptInit = p11_C_MessageInit;
	l->C_MessageSignInit = l->C_MessageVerifyInit = p11_C_MessageInit;
	l->C_EncryptMessage = l->C_DecryptMessage = p11_C_CryptMessage;
	l->C_EncryptMessageBegin = l->C_DecryptMessageBegin = p11_C_CryptMessageBegin;
	l->C_EncryptMessageNext = l->C_DecryptMessageNext = p11_C_CryptMessageNext;
	l->C_MessageEncryptFinal = l->C_MessageDecryptFinal = p11_C_MessageFinal;
	l->C_MessageSignFinal = l->C_MessageVerifyFinal = p11_C_MessageFinal;
	l->C_SignMessage = l->C_SignMessageNext = p11_C_SignMessage;
	l->C_SignMessageBegin = l->C_VerifyMessageBegin = p11_C_MessageBegin;
	l->C_VerifyMessage = l->C_VerifyMessageNext = p11_C_VerifyMessage;
}

void *p11_function_list_3_0(void)
{
	pthread_once(&list_3_0_once, list_3_0_init);
	return &function_list_3_0;
}

CK_FUNCTION_LIST_PTR p11_function_list(void)
{
	return &function_list;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (!list)
		return CKR_ARGUMENTS_BAD;
	*list = &function_list;
	return CKR_OK;
}
