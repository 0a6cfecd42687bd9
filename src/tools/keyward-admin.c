/*
 * keyward-admin: administration of a keywardd HSM over its local admin
 * socket. A thin front end: it parses arguments, reads secrets without
 * echo, sends one request and prints the answer. See keyward-admin(8).
 *
 * Exit codes: 0 done; 1 the HSM refused or failed (the message says why);
 * 2 bad usage; 3 keywardd not reachable.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "common/error.h"
#include "keystore/backup.h"
#include "keystore/keystore.h"
#include "tools/admin_client.h"

#define SECRET_MAX (KW_SECRET_MAX + 1)
#define INIT_TIMEOUT 120 /* scrypt and key splitting take a moment */

static const char *socket_path;
static const char *passphrase_file;
static const char *opt_partition;
static bool opt_json;
static bool opt_yes;
static bool opt_quiet;
static unsigned opt_shares, opt_threshold;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: keyward-admin [--socket PATH] [--quiet] COMMAND\n"
		"\n"
		"commands:\n"
		"  status [--json]                 state of the HSM\n"
		"  init [--passphrase-file F]      create the master key under a security officer passphrase\n"
		"  init --shares N --threshold M   ... or split it into N shares, any M of which unlock\n"
		"  unlock [--passphrase-file F]    unlock with the passphrase\n"
		"  unlock --shares                 unlock with shares (one per line on standard input)\n"
		"  lock                            wipe the master key and every unsealed key from memory\n"
		"  partition create NAME           create a partition; prints its one-time setup password\n"
		"  partition password NAME         a new one-time setup password (to register another client);\n"
		"                                  it cancels one given before and not used yet\n"
		"  partition list                  partitions, their objects and credentials\n"
		"  partition delete NAME [--yes]   delete a partition with its keys and client credentials, for\n"
		"                                  good: asks for the name on a terminal, else needs --yes\n"
		"  client list [--partition P] [--json]\n"
		"                                  registered client credentials: fingerprint, subject,\n"
		"                                  partition, when enrolled, whether revoked\n"
		"  client revoke FINGERPRINT|SUBJECT\n"
		"                                  refuse a client credential from now on, on live connections too\n"
		"  audit verify [--expect-head SEQ:HASH]\n"
		"                                  check the hash chain of the audit log and print its head;\n"
		"                                  with a head saved earlier, check it is still in the chain\n"
		"      [--archives DIR]            and the archives in DIR, up to the store's first record\n"
		"      [--file EXPORT]             or check a file of audit export offline, without keywardd\n"
		"  audit archive [--keep N]        move all but the newest N audit records to the archive\n"
		"  audit list [--since SEQ] [--limit N] [--json]\n"
		"                                  the audit records in the store after SEQ (at most N)\n"
		"  audit show SEQ [--json]         one audit record in full, with its hashes\n"
		"  audit export FILE               the records in the store, as JSON lines with their hashes\n"
		"                                  (mode 0600, written whole or not at all)\n"
		"  backup FILE [--partition P]     a sealed snapshot of the HSM (or of one partition) in FILE\n"
		"  restore FILE                    restore a backup into this HSM (same master key)\n"
		"\n"
		"The socket is --socket, else $KEYWARD_ADMIN_SOCKET, else /run/keyward/admin.sock.\n"
		"backup and restore show their progress on standard error when it is a terminal; --quiet\n"
		"(-q) silences it.\n"
		"Exit codes: 0 done, 1 refused or failed, 2 usage, 3 keywardd not reachable.\n");
}

/* One line of secret: from a file (kw_secret_read_file), the terminal (no echo), or standard input. */
static int read_secret(const char *prompt, char *buf, size_t size)
{
	struct termios old, quiet;
	bool tty = false;
	size_t len;

	if (passphrase_file) {
		if (kw_secret_read_file(passphrase_file, "passphrase file", buf, size) == KW_OK)
			return 0;
		fprintf(stderr, "keyward-admin: %s\n", kw_last_error());
		return -1;
	}
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0) {
		tty = true;
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		fprintf(stderr, "%s", prompt);
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (!fgets(buf, (int)size, stdin))
		buf[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	len = strcspn(buf, "\r\n");
	buf[len] = '\0';
	return 0;
}

static int fail(kw_rv rv)
{
	fprintf(stderr, "keyward-admin: %s\n", kw_last_error()[0] ? kw_last_error() : kw_rv_text(rv));
	return rv == KW_ERR_UNREACHABLE ? 3 : 1;
}

/*
 * A progress line on standard error, rewritten in place as work goes on:
 * only when standard error is a terminal, never with --quiet, so scripts
 * and logs see nothing of it. The line ends when done reaches total.
 */
static void progress(const char *what, uint64_t done, uint64_t total)
{
	if (opt_quiet || !isatty(STDERR_FILENO))
		return;
	fprintf(stderr, "\r%s: %llu of %llu bytes (%llu%%)", what, (unsigned long long)done, (unsigned long long)total,
		total ? (unsigned long long)(done * 100 / total) : 100ULL);
	if (done >= total)
		fputc('\n', stderr);
	fflush(stderr);
}

/* A line on standard error that says what is being waited for, under the same rule as progress(). */
static void waiting(const char *text)
{
	if (!opt_quiet && isatty(STDERR_FILENO))
		fprintf(stderr, "%s\n", text);
}

/* Connects, sends, and hands back the response (NULL on failure, after printing why). */
static Keyward__Response *call(Keyward__Request *req, int timeout_s, int *status)
{
	Keyward__Response *resp = NULL;
	int fd;
	kw_rv rv = kw_admin_connect(socket_path, &fd);

	if (rv == KW_OK) {
		rv = kw_admin_call(fd, req, timeout_s, &resp);
		close(fd);
	}
	if (rv) {
		if (resp)
			keyward__response__free_unpacked(resp, NULL);
		*status = fail(rv);
		return NULL;
	}
	*status = 0;
	return resp;
}

/* One JSON document on standard output (the only thing written there). */
static int print_json(json_t *root)
{
	char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
	int ok;

	json_decref(root);
	if (!text) {
		fprintf(stderr, "keyward-admin: out of memory building the JSON output\n");
		return 1;
	}
	ok = printf("%s\n", text) >= 0 && fflush(stdout) == 0;
	free(text);
	if (!ok) {
		fprintf(stderr, "keyward-admin: cannot write the JSON output: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

static int print_status_json(const Keyward__AdminStatusResult *r)
{
	const char *state = !r->initialized ? "not initialized" : r->locked ? "locked" : "unlocked";
	json_t *j = json_object();

	if (j) {
		json_object_set_new(j, "listen", json_string(r->listen ? r->listen : ""));
		json_object_set_new(j, "protocol", json_integer(r->version));
		json_object_set_new(j, "initialized", json_boolean(r->initialized));
		json_object_set_new(j, "unlock_method",
				    r->initialized && r->unlock_method && *r->unlock_method
					    ? json_string(r->unlock_method)
					    : json_null());
		json_object_set_new(j, "state", json_string(state));
		json_object_set_new(j, "partitions", json_integer(r->partitions));
		json_object_set_new(j, "connections", json_integer(r->connections));
		json_object_set_new(j, "unauthenticated", json_integer(r->unauthenticated));
		json_object_set_new(j, "evicted", json_integer((json_int_t)r->evicted));
		json_object_set_new(j, "refused", json_integer((json_int_t)r->refused));
		json_object_set_new(j, "admin_connections", json_integer(r->admin_connections));
		json_object_set_new(j, "core_dumps", json_boolean(r->core_dumps));
		json_object_set_new(j, "session_objects", json_integer(r->session_objects));
		json_object_set_new(j, "uptime", json_integer((json_int_t)r->uptime));
	}
	return print_json(j);
}

static int cmd_status(void)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__AdminStatus body = KEYWARD__ADMIN_STATUS__INIT;
	Keyward__Response *resp;
	Keyward__AdminStatusResult *r;
	int status;

	req.body_case = KEYWARD__REQUEST__BODY_ADMIN_STATUS;
	req.admin_status = &body;
	if (!(resp = call(&req, 10, &status)))
		return status;
	r = resp->admin_status;
	if (opt_json) {
		status = print_status_json(r);
		keyward__response__free_unpacked(resp, NULL);
		return status;
	}
	printf("listening:   %s\n", r->listen);
	printf("protocol:    %u\n", r->version);
	printf("initialized: %s%s%s%s\n", r->initialized ? "yes" : "no", r->initialized ? " (" : "",
	       r->initialized ? r->unlock_method : "", r->initialized ? ")" : "");
	printf("state:       %s\n", !r->initialized ? "not initialized: keyward-admin init"
				    : r->locked    ? "locked: keyward-admin unlock"
						   : "unlocked");
	printf("partitions:  %u\n", r->partitions);
	printf("connections: %u\n", r->connections);
	printf("unauthenticated: %u (%llu evicted, %llu refused since start)\n", r->unauthenticated,
	       (unsigned long long)r->evicted, (unsigned long long)r->refused);
	printf("admin connections: %u\n", r->admin_connections);
	printf("core dumps:  %s\n", r->core_dumps ? "ON (--allow-core-dumps: a core file holds unsealed keys)" : "off");
	printf("session objects: %u\n", r->session_objects);
	printf("uptime:      %llu s\n", (unsigned long long)r->uptime);
	keyward__response__free_unpacked(resp, NULL);
	return 0;
}

static int cmd_init(void)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__AdminInit body = KEYWARD__ADMIN_INIT__INIT;
	Keyward__Response *resp;
	char pass[SECRET_MAX] = "", again[SECRET_MAX] = "";
	int status;

	if (opt_shares || opt_threshold) {
		body.shares = opt_shares;
		body.threshold = opt_threshold;
	} else {
		if (read_secret("Security officer passphrase: ", pass, sizeof pass))
			return 2;
		if (!passphrase_file && isatty(STDIN_FILENO)) {
			read_secret("Repeat it: ", again, sizeof again);
			if (strcmp(pass, again) != 0) {
				OPENSSL_cleanse(pass, sizeof pass);
				OPENSSL_cleanse(again, sizeof again);
				fprintf(stderr, "keyward-admin: the passphrases differ; nothing was changed\n");
				return 2;
			}
		}
		body.passphrase = pass;
	}
	req.body_case = KEYWARD__REQUEST__BODY_ADMIN_INIT;
	req.admin_init = &body;
	resp = call(&req, INIT_TIMEOUT, &status);
	OPENSSL_cleanse(pass, sizeof pass);
	OPENSSL_cleanse(again, sizeof again);
	if (!resp)
		return status;
	if (resp->admin_init->n_shares) {
		printf("HSM initialized; the master key is split into %zu shares, any %u of which unlock it.\n"
		       "Give each share to a different custodian. They are shown once and stored nowhere.\n\n",
		       resp->admin_init->n_shares, opt_threshold);
		for (size_t i = 0; i < resp->admin_init->n_shares; i++) {
			printf("share %zu: %s\n", i + 1, resp->admin_init->shares[i]);
			OPENSSL_cleanse(resp->admin_init->shares[i], strlen(resp->admin_init->shares[i]));
		}
	} else {
		printf("HSM initialized and unlocked; after a restart, unlock it with keyward-admin unlock.\n");
	}
	keyward__response__free_unpacked(resp, NULL);
	return 0;
}

static int cmd_unlock(bool with_shares)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__AdminUnlock body = KEYWARD__ADMIN_UNLOCK__INIT;
	Keyward__Response *resp;
	char pass[SECRET_MAX] = "";
	char *shares[16];
	size_t n = 0;
	int status;

	if (with_shares) {
		char line[SECRET_MAX];
		if (isatty(STDIN_FILENO))
			fprintf(stderr, "Enter the shares, one per line; an empty line ends:\n");
		while (n < 16 && fgets(line, sizeof line, stdin)) {
			line[strcspn(line, "\r\n")] = '\0';
			if (!line[0])
				break;
			shares[n] = strdup(line);
			OPENSSL_cleanse(line, sizeof line);
			if (!shares[n])
				break;
			n++;
		}
		body.shares = shares;
		body.n_shares = n;
	} else {
		if (read_secret("Security officer passphrase: ", pass, sizeof pass))
			return 2;
		body.passphrase = pass;
	}
	req.body_case = KEYWARD__REQUEST__BODY_ADMIN_UNLOCK;
	req.admin_unlock = &body;
	resp = call(&req, INIT_TIMEOUT, &status);
	OPENSSL_cleanse(pass, sizeof pass);
	for (size_t i = 0; i < n; i++) {
		OPENSSL_cleanse(shares[i], strlen(shares[i]));
		free(shares[i]);
	}
	if (!resp)
		return status;
	printf("HSM unlocked.\n");
	keyward__response__free_unpacked(resp, NULL);
	return 0;
}

static int cmd_lock(void)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__AdminLock body = KEYWARD__ADMIN_LOCK__INIT;
	Keyward__Response *resp;
	int status;

	req.body_case = KEYWARD__REQUEST__BODY_ADMIN_LOCK;
	req.admin_lock = &body;
	if (!(resp = call(&req, 10, &status)))
		return status;
	printf("HSM locked.\n");
	keyward__response__free_unpacked(resp, NULL);
	return 0;
}

static int print_password(Keyward__Response *resp, const char *what)
{
	if (resp->setup_password->replaced)
		printf("The setup password given before for partition \"%s\" was not used yet: it is cancelled, "
		       "this one replaces it (one setup password registers one client; register clients one after "
		       "the other).\n",
		       resp->setup_password->partition);
	printf("%s \"%s\".\n"
	       "One-time setup password: %s\n"
	       "Register a client with it (it works once): KEYWARD_CONF=... ksputil register\n",
	       what, resp->setup_password->partition, resp->setup_password->setup_password);
	OPENSSL_cleanse(resp->setup_password->setup_password, strlen(resp->setup_password->setup_password));
	keyward__response__free_unpacked(resp, NULL);
	return 0;
}

/* The partition's listing entry, for the confirmation; false (after saying why) when there is none. */
static bool find_partition(const char *name, Keyward__PartitionInfo *out, int *status)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__PartitionList list = KEYWARD__PARTITION_LIST__INIT;
	Keyward__Response *resp;
	bool found = false;

	req.body_case = KEYWARD__REQUEST__BODY_PARTITION_LIST;
	req.partition_list = &list;
	if (!(resp = call(&req, 10, status)))
		return false;
	for (size_t i = 0; i < resp->partitions->n_partitions && !found; i++) {
		if (strcmp(resp->partitions->partitions[i]->name, name) == 0) {
			out->objects = resp->partitions->partitions[i]->objects;
			out->credentials = resp->partitions->partitions[i]->credentials;
			found = true;
		}
	}
	keyward__response__free_unpacked(resp, NULL);
	if (!found) {
		fprintf(stderr,
			"keyward-admin: partition delete: no partition \"%s\" (keyward-admin partition list); "
			"nothing was deleted\n",
			name);
		*status = 1;
	}
	return found;
}

/* partition delete NAME [--yes]: confirmed by --yes, or by typing the name on a terminal. */
static int cmd_partition_delete(int argc, char **argv)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__PartitionDelete body = KEYWARD__PARTITION_DELETE__INIT;
	Keyward__PartitionInfo info = KEYWARD__PARTITION_INFO__INIT;
	Keyward__Response *resp;
	const char *name = NULL;
	char answer[KW_PARTITION_NAME_MAX + 8];
	int status;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--yes") == 0 || strcmp(argv[i], "-y") == 0)
			opt_yes = true;
		else if (!name && argv[i][0] != '-')
			name = argv[i];
		else {
			fprintf(stderr, "keyward-admin: partition delete NAME [--yes]: unexpected \"%s\"\n", argv[i]);
			return 2;
		}
	}
	if (!name) {
		fprintf(stderr, "keyward-admin: partition delete NAME [--yes]: name the partition\n");
		return 2;
	}
	if (!opt_yes) {
		if (!isatty(STDIN_FILENO)) {
			fprintf(stderr,
				"keyward-admin: partition delete: not deleting partition \"%s\" without confirmation: "
				"standard input is not a terminal; add --yes\n",
				name);
			return 2;
		}
		if (!find_partition(name, &info, &status))
			return status;
		fprintf(stderr,
			"Delete partition \"%s\" with its %u objects (keys: they cannot be recovered) and %u client "
			"credentials? Type its name to confirm: ",
			name, info.objects, info.credentials);
		if (!fgets(answer, sizeof answer, stdin))
			answer[0] = '\0';
		answer[strcspn(answer, "\r\n")] = '\0';
		if (strcmp(answer, name) != 0) {
			fprintf(stderr, "keyward-admin: partition delete: not confirmed; nothing was deleted\n");
			return 1;
		}
	}
	body.name = (char *)name;
	req.body_case = KEYWARD__REQUEST__BODY_PARTITION_DELETE;
	req.partition_delete = &body;
	if (!(resp = call(&req, 60, &status)))
		return status;
	printf("Deleted partition \"%s\" with %u objects and %u client credentials (refused from now on, on open "
	       "connections too).\n",
	       resp->partition_deleted->partition, resp->partition_deleted->objects,
	       resp->partition_deleted->credentials);
	keyward__response__free_unpacked(resp, NULL);
	return 0;
}

static int cmd_partition(int argc, char **argv)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__PartitionCreate create = KEYWARD__PARTITION_CREATE__INIT;
	Keyward__PartitionPassword password = KEYWARD__PARTITION_PASSWORD__INIT;
	Keyward__PartitionList list = KEYWARD__PARTITION_LIST__INIT;
	Keyward__Response *resp;
	int status;

	if (argc >= 1 && strcmp(argv[0], "list") == 0 && argc == 1) {
		req.body_case = KEYWARD__REQUEST__BODY_PARTITION_LIST;
		req.partition_list = &list;
		if (!(resp = call(&req, 10, &status)))
			return status;
		printf("%-24s %8s %12s  %s\n", "PARTITION", "OBJECTS", "CREDENTIALS", "SETUP PASSWORD");
		for (size_t i = 0; i < resp->partitions->n_partitions; i++) {
			Keyward__PartitionInfo *p = resp->partitions->partitions[i];
			printf("%-24s %8u %12u  %s\n", p->name, p->objects, p->credentials,
			       p->setup_pending ? "pending" : "-");
		}
		keyward__response__free_unpacked(resp, NULL);
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "create") == 0) {
		create.name = argv[1];
		req.body_case = KEYWARD__REQUEST__BODY_PARTITION_CREATE;
		req.partition_create = &create;
		if (!(resp = call(&req, 10, &status)))
			return status;
		return print_password(resp, "Created partition");
	}
	if (argc == 2 && strcmp(argv[0], "password") == 0) {
		password.name = argv[1];
		req.body_case = KEYWARD__REQUEST__BODY_PARTITION_PASSWORD;
		req.partition_password = &password;
		if (!(resp = call(&req, 10, &status)))
			return status;
		return print_password(resp, "New setup password for partition");
	}
	if (argc >= 2 && strcmp(argv[0], "delete") == 0)
		return cmd_partition_delete(argc - 1, argv + 1);
	fprintf(stderr, "keyward-admin: partition create NAME | partition password NAME | partition list | partition "
			"delete NAME [--yes]\n");
	return 2;
}

/* n bytes from 2n hex digits; false on anything else. */
static bool hex_decode(const char *hex, unsigned char *out, size_t n)
{
	if (strlen(hex) != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (!isxdigit((unsigned char)hex[2 * i]) || !isxdigit((unsigned char)hex[2 * i + 1]) ||
		    sscanf(hex + 2 * i, "%2x", &v) != 1)
			return false;
		out[i] = (unsigned char)v;
	}
	return true;
}

/* "SEQ:HEX" (as `audit verify` prints the head) into seq and hash; false when malformed. */
static bool parse_head(const char *text, uint64_t *seq, unsigned char hash[32])
{
	const char *colon = strchr(text, ':');
	char *end;

	errno = 0;
	*seq = strtoull(text, &end, 10);
	return colon && end == colon && !errno && *seq != 0 && text[0] != '-' && hex_decode(colon + 1, hash, 32);
}

static void print_hash(const char *label, uint64_t seq, const ProtobufCBinaryData *h)
{
	printf("%s%llu:", label, (unsigned long long)seq);
	for (size_t i = 0; i < h->len; i++)
		printf("%02x", h->data[i]);
	printf("\n");
}

/* The archives in dir must chain from record 1 up to the store's base. */
static int check_archives(const char *dir, const Keyward__AuditReport *rep)
{
	struct kw_audit_report ar;
	kw_rv rv = kw_audit_archives_verify(dir, &ar);

	if (rv) {
		fprintf(stderr, "keyward-admin: %s\n", kw_last_error());
		return 1;
	}
	if (!ar.ok) {
		printf("audit archives BROKEN at record %llu: %s\n", (unsigned long long)ar.first_bad, ar.problem);
		return 1;
	}
	if (ar.head_seq != rep->base_seq || rep->base_hash.len != sizeof ar.head_hash ||
	    (ar.head_seq && CRYPTO_memcmp(ar.head_hash, rep->base_hash.data, sizeof ar.head_hash) != 0)) {
		printf("audit archives in %s do not lead to the store: they end at record %llu, the store's log "
		       "starts after %llu (an archive is missing, or belongs to another store)\n",
		       dir, (unsigned long long)ar.head_seq, (unsigned long long)rep->base_seq);
		return 1;
	}
	printf("audit archives intact: %llu records, up to the store's first\n", (unsigned long long)ar.records);
	return 0;
}

static int cmd_audit_archive(int argc, char **argv)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__AuditArchive body = KEYWARD__AUDIT_ARCHIVE__INIT;
	Keyward__Response *resp;
	char *end = NULL;
	int status;

	if (argc == 2 && strcmp(argv[0], "--keep") == 0) {
		errno = 0;
		body.keep = strtoull(argv[1], &end, 10);
		if (errno || end == argv[1] || *end || argv[1][0] == '-') {
			fprintf(stderr, "keyward-admin: audit archive --keep: \"%s\" is not a number of records\n",
				argv[1]);
			return 2;
		}
	} else if (argc != 0) {
		fprintf(stderr, "keyward-admin: audit archive [--keep N]\n");
		return 2;
	}
	req.body_case = KEYWARD__REQUEST__BODY_AUDIT_ARCHIVE;
	req.audit_archive = &body;
	if (!(resp = call(&req, 600, &status)))
		return status;
	if (resp->audit_archived->records)
		printf("%llu audit records archived to %s\n", (unsigned long long)resp->audit_archived->records,
		       resp->audit_archived->file);
	else
		printf("nothing to archive: the store holds at most %llu records\n", (unsigned long long)body.keep);
	keyward__response__free_unpacked(resp, NULL);
	return 0;
}

static int cmd_audit_read(const char *sub, int argc, char **argv);
static int verify_export(const char *path, uint64_t expect_seq, const unsigned char expect[32]);

static int cmd_audit(int argc, char **argv)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__AuditVerify body = KEYWARD__AUDIT_VERIFY__INIT;
	Keyward__AuditReport *rep;
	Keyward__Response *resp;
	unsigned char expect[32];
	uint64_t expect_seq = 0;
	const char *archives = NULL, *file = NULL;
	int status, rc;

	if (argc >= 1 && strcmp(argv[0], "archive") == 0)
		return cmd_audit_archive(argc - 1, argv + 1);
	if (argc >= 1 &&
	    (strcmp(argv[0], "list") == 0 || strcmp(argv[0], "show") == 0 || strcmp(argv[0], "export") == 0))
		return cmd_audit_read(argv[0], argc - 1, argv + 1);
	if (argc < 1 || strcmp(argv[0], "verify") != 0 || argc % 2 == 0)
		goto usage;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--archives") == 0) {
			archives = argv[i + 1];
		} else if (strcmp(argv[i], "--file") == 0) {
			file = argv[i + 1];
		} else if (strcmp(argv[i], "--expect-head") == 0) {
			if (!parse_head(argv[i + 1], &expect_seq, expect)) {
				fprintf(stderr,
					"keyward-admin: audit verify --expect-head: \"%s\" is not SEQ:HASH (a head as "
					"audit verify prints it: a record number, a colon, 64 hex digits)\n",
					argv[i + 1]);
				return 2;
			}
			body.expect_seq = expect_seq;
			body.expect_hash.data = expect;
			body.expect_hash.len = sizeof expect;
		} else {
			goto usage;
		}
	}
	if (file) {
		if (archives)
			goto usage;
		return verify_export(file, expect_seq, expect);
	}
	req.body_case = KEYWARD__REQUEST__BODY_AUDIT_VERIFY;
	req.audit_verify = &body;
	if (!(resp = call(&req, 120, &status)))
		return status;
	rep = resp->audit_report;
	if (rep->ok) {
		printf("audit log intact: %llu records\n", (unsigned long long)rep->records);
		if (expect_seq)
			printf("saved head %llu found in the chain\n", (unsigned long long)expect_seq);
		rc = 0;
	} else {
		printf("audit log BROKEN at record %llu: %s\n", (unsigned long long)rep->first_bad, rep->problem);
		rc = 1;
	}
	if (rep->base_seq)
		print_hash("archived up to: ", rep->base_seq, &rep->base_hash);
	/* the head to save outside the HSM, for a later --expect-head */
	print_hash("head: ", rep->head_seq, &rep->head_hash);
	if (archives && check_archives(archives, rep))
		rc = 1;
	keyward__response__free_unpacked(resp, NULL);
	return rc;
usage:
	fprintf(stderr,
		"keyward-admin: audit verify [--expect-head SEQ:HASH] [--archives DIR | --file EXPORT] | audit "
		"archive [--keep N] | audit list [--since SEQ] [--limit N] [--json] | audit show SEQ [--json] | "
		"audit export FILE\n");
	return 2;
}

#define TRANSFER_CHUNK (512u * 1024u) /* keywardd's KW_TRANSFER_CHUNK */
#define TRANSFER_TIMEOUT 600	      /* a big store takes a while to snapshot or restore */

/* One request on an open admin connection; NULL after printing why. */
static Keyward__Response *call_on(int fd, Keyward__Request *req, int *status)
{
	Keyward__Response *resp = NULL;
	kw_rv rv = kw_admin_call(fd, req, TRANSFER_TIMEOUT, &resp);

	if (rv) {
		if (resp)
			keyward__response__free_unpacked(resp, NULL);
		*status = fail(rv);
		return NULL;
	}
	*status = 0;
	return resp;
}

static bool write_all(int fd, const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/*
 * Files written whole or not at all, mode 0600: a temporary file beside
 * FILE (atomic_begin), written, then fsync, rename and fsync of the
 * directory (atomic_commit); atomic_abort removes it. `what` names the
 * command in messages.
 */
static int atomic_begin(const char *what, const char *path, char *tmp, size_t size)
{
	int fd;

	if ((size_t)snprintf(tmp, size, "%s.tmp-XXXXXX", path) >= size) {
		fprintf(stderr, "keyward-admin: %s: file name too long: %s\n", what, path);
		return -1;
	}
	fd = mkstemp(tmp); /* mode 0600 */
	if (fd < 0 || fchmod(fd, 0600) != 0) {
		fprintf(stderr, "keyward-admin: %s: cannot create a file beside %s: %s\n", what, path, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		return -1;
	}
	return fd;
}

static void atomic_abort(int fd, const char *tmp)
{
	close(fd);
	unlink(tmp);
}

static int atomic_commit(const char *what, const char *path, const char *tmp, int fd)
{
	char dir[4096];
	int dfd, saved;

	if (fsync(fd) != 0) {
		saved = errno;
		atomic_abort(fd, tmp);
		fprintf(stderr, "keyward-admin: %s: cannot write %s: %s (nothing was written to %s)\n", what, tmp,
			strerror(saved), path);
		return 1;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		saved = errno;
		unlink(tmp);
		fprintf(stderr, "keyward-admin: %s: cannot move %s to %s: %s\n", what, tmp, path, strerror(saved));
		return 1;
	}
	snprintf(dir, sizeof dir, "%s", path);
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

static int write_file_atomic(const char *path, const unsigned char *data, size_t len)
{
	char tmp[4096];
	int fd = atomic_begin("backup", path, tmp, sizeof tmp), saved;

	if (fd < 0)
		return 1;
	if (!write_all(fd, data, len)) {
		saved = errno;
		atomic_abort(fd, tmp);
		fprintf(stderr, "keyward-admin: backup: cannot write %s: %s (nothing was written to %s)\n", tmp,
			strerror(saved), path);
		return 1;
	}
	return atomic_commit("backup", path, tmp, fd);
}

/* ---- the audit log read back: audit list, show, export, verify --file ---- */

static void when_text(int64_t t, char *out, size_t size);

/* an exported line at most: four fields of 64 KiB, each byte escaped as \u00XX at worst */
#define AUDIT_LINE_MAX (4u * 6u * 65536u + 4096u)

static bool valid_utf8(const char *s)
{
	json_t *j = json_string(s); /* jansson checks UTF-8 */
	bool ok = j != NULL;

	json_decref(j);
	return ok;
}

/* A text field as JSON: "name": text, or "name_hex": its bytes in hex when they are not UTF-8. */
static void json_field(json_t *o, const char *name, const char *text)
{
	char key[32], *hex;
	size_t len = strlen(text);

	if (valid_utf8(text)) {
		json_object_set_new(o, name, json_string(text));
		return;
	}
	snprintf(key, sizeof key, "%s_hex", name);
	hex = malloc(2 * len + 1);
	if (!hex)
		return;
	kw_backup_hex((const unsigned char *)text, len, hex);
	json_object_set_new(o, key, json_string(hex));
	free(hex);
}

static json_t *record_json(const Keyward__AuditRecord *r)
{
	char when[32], hex[2 * 32 + 1];
	json_t *o = json_object();

	if (!o)
		return NULL;
	when_text(r->time, when, sizeof when);
	json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
	json_object_set_new(o, "time", json_integer((json_int_t)r->time));
	json_object_set_new(o, "when", json_string(when));
	json_field(o, "partition", r->partition);
	json_field(o, "actor", r->actor);
	json_field(o, "event", r->event);
	json_field(o, "detail", r->detail);
	kw_backup_hex(r->prev_hash.data, r->prev_hash.len > 32 ? 32 : r->prev_hash.len, hex);
	json_object_set_new(o, "prev_hash", json_string(hex));
	kw_backup_hex(r->hash.data, r->hash.len > 32 ? 32 : r->hash.len, hex);
	json_object_set_new(o, "hash", json_string(hex));
	return o;
}

/* Text for a terminal: control characters (an escape sequence in a detail) become '?'. */
static void print_clean(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
}

static void print_record_line(const Keyward__AuditRecord *r)
{
	char when[32];

	when_text(r->time, when, sizeof when);
	printf("%-8llu %-20s  ", (unsigned long long)r->seq, when);
	print_clean(r->partition[0] ? r->partition : "-");
	putchar(' ');
	print_clean(r->actor);
	putchar(' ');
	print_clean(r->event);
	putchar(' ');
	print_clean(r->detail);
	putchar('\n');
}

/* One page of records after `since` on the open connection fd; NULL after printing why. */
static Keyward__Response *audit_page(int fd, uint64_t since, uint32_t limit, int *status)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__AuditList body = KEYWARD__AUDIT_LIST__INIT;
	Keyward__Response *resp;

	body.since = since;
	body.limit = limit;
	req.body_case = KEYWARD__REQUEST__BODY_AUDIT_LIST;
	req.audit_list = &body;
	if (!(resp = call_on(fd, &req, status)))
		return NULL;
	for (size_t i = 0; i < resp->audit_records->n_records; i++) {
		const Keyward__AuditRecord *r = resp->audit_records->records[i];
		/* the pager counts on consecutive records: a gap means records were archived meanwhile */
		if (r->seq != (i ? resp->audit_records->records[i - 1]->seq + 1 : r->seq) || r->seq <= since ||
		    r->prev_hash.len != 32 || r->hash.len != 32) {
			fprintf(stderr, "keyward-admin: audit: keywardd sent record %llu out of order (after %llu)\n",
				(unsigned long long)r->seq, (unsigned long long)since);
			keyward__response__free_unpacked(resp, NULL);
			*status = 1;
			return NULL;
		}
	}
	return resp;
}

static bool parse_count(const char *text, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(text, &end, 10);
	return !errno && end != text && !*end && text[0] != '-';
}

/* audit list [--since SEQ] [--limit N] [--json]: pages of at most KW_AUDIT_PAGE_MAX records. */
static int cmd_audit_list(int argc, char **argv)
{
	Keyward__Response *resp;
	uint64_t since = 0, limit = 0, shown = 0;
	json_t *arr = NULL;
	bool more = true;
	int fd = -1, status = 0;
	kw_rv rv;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			opt_json = true;
		} else if ((strcmp(argv[i], "--since") == 0 || strcmp(argv[i], "--limit") == 0) && i + 1 < argc) {
			if (!parse_count(argv[i + 1], argv[i][2] == 's' ? &since : &limit)) {
				fprintf(stderr, "keyward-admin: audit list %s: \"%s\" is not a number\n", argv[i],
					argv[i + 1]);
				return 2;
			}
			i++;
		} else {
			fprintf(stderr,
				"keyward-admin: audit list [--since SEQ] [--limit N] [--json]: unexpected \"%s\"\n",
				argv[i]);
			return 2;
		}
	}
	if (opt_json && !(arr = json_array())) {
		fprintf(stderr, "keyward-admin: out of memory\n");
		return 1;
	}
	if ((rv = kw_admin_connect(socket_path, &fd))) {
		json_decref(arr);
		return fail(rv);
	}
	if (!opt_json)
		printf("%-8s %-20s  %s\n", "SEQ", "TIME", "PARTITION ACTOR EVENT DETAIL");
	while (more && (!limit || shown < limit)) {
		uint64_t want = limit ? limit - shown : KW_AUDIT_PAGE_MAX;
		Keyward__AuditRecords *page;

		if (!(resp = audit_page(fd, since, want < KW_AUDIT_PAGE_MAX ? (uint32_t)want : KW_AUDIT_PAGE_MAX,
					&status)))
			break;
		page = resp->audit_records;
		for (size_t i = 0; i < page->n_records && (!limit || shown < limit); i++, shown++) {
			if (arr)
				json_array_append_new(arr, record_json(page->records[i]));
			else
				print_record_line(page->records[i]);
			since = page->records[i]->seq;
		}
		more = page->more && page->n_records;
		keyward__response__free_unpacked(resp, NULL);
	}
	close(fd);
	if (status) {
		json_decref(arr);
		return status;
	}
	if (arr)
		return print_json(arr);
	return 0;
}

/* audit show SEQ [--json] */
static int cmd_audit_show(int argc, char **argv)
{
	Keyward__Response *resp;
	const Keyward__AuditRecord *r;
	uint64_t seq = 0;
	char when[32], hex[2 * 32 + 1];
	int fd, status = 0;
	kw_rv rv;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			opt_json = true;
		else if (!seq && parse_count(argv[i], &seq) && seq)
			;
		else {
			fprintf(stderr, "keyward-admin: audit show SEQ [--json]: \"%s\" is not a record number\n",
				argv[i]);
			return 2;
		}
	}
	if (!seq) {
		fprintf(stderr, "keyward-admin: audit show SEQ [--json]: which record? (keyward-admin audit list)\n");
		return 2;
	}
	if ((rv = kw_admin_connect(socket_path, &fd)))
		return fail(rv);
	resp = audit_page(fd, seq - 1, 1, &status);
	close(fd);
	if (!resp)
		return status;
	if (resp->audit_records->n_records != 1 || resp->audit_records->records[0]->seq != seq) {
		const Keyward__AuditRecords *p = resp->audit_records;
		if (seq <= p->base_seq)
			fprintf(stderr,
				"keyward-admin: audit show: record %llu is archived (the store holds %llu to %llu): "
				"see the archive files (keyward-admin audit verify --archives DIR)\n",
				(unsigned long long)seq, (unsigned long long)p->base_seq + 1,
				(unsigned long long)p->head_seq);
		else
			fprintf(stderr, "keyward-admin: audit show: no record %llu (the log holds %llu to %llu)\n",
				(unsigned long long)seq, (unsigned long long)p->base_seq + 1,
				(unsigned long long)p->head_seq);
		keyward__response__free_unpacked(resp, NULL);
		return 1;
	}
	r = resp->audit_records->records[0];
	if (opt_json) {
		status = print_json(record_json(r));
		keyward__response__free_unpacked(resp, NULL);
		return status;
	}
	when_text(r->time, when, sizeof when);
	printf("seq:       %llu\n", (unsigned long long)r->seq);
	printf("time:      %s (%lld)\n", when, (long long)r->time);
	printf("partition: ");
	print_clean(r->partition[0] ? r->partition : "- (the HSM)");
	printf("\nactor:     ");
	print_clean(r->actor);
	printf("\nevent:     ");
	print_clean(r->event);
	printf("\ndetail:    ");
	print_clean(r->detail);
	kw_backup_hex(r->prev_hash.data, 32, hex);
	printf("\nprev hash: %s\n", hex);
	kw_backup_hex(r->hash.data, 32, hex);
	printf("hash:      %s\n", hex);
	keyward__response__free_unpacked(resp, NULL);
	return 0;
}

/*
 * audit export FILE: the records in the store as JSON lines (docs/operations.md,
 * "Exporting the audit log"), one object a line in seq order, written
 * atomically with mode 0600.
 */
static int cmd_audit_export(int argc, char **argv)
{
	Keyward__Response *resp = NULL;
	uint64_t since = 0, first = 0, n = 0;
	unsigned char head[32] = {0};
	char tmp[4096], hex[2 * 32 + 1];
	bool more = true, started = false;
	FILE *f = NULL;
	int fd = -1, out = -1, status = 0;
	kw_rv rv;

	if (argc != 1 || argv[0][0] == '-') {
		fprintf(stderr, "keyward-admin: audit export FILE\n");
		return 2;
	}
	if ((rv = kw_admin_connect(socket_path, &fd)))
		return fail(rv);
	if ((out = atomic_begin("audit export", argv[0], tmp, sizeof tmp)) < 0) {
		close(fd);
		return 1;
	}
	if (!(f = fdopen(out, "w"))) {
		fprintf(stderr, "keyward-admin: audit export: %s\n", strerror(errno));
		atomic_abort(out, tmp);
		close(fd);
		return 1;
	}
	while (more && !status) {
		Keyward__AuditRecords *page;

		if (!(resp = audit_page(fd, since, KW_AUDIT_PAGE_MAX, &status)))
			break;
		page = resp->audit_records;
		if (!started) {
			since = page->base_seq; /* the store starts after its archived base */
			started = true;
		}
		for (size_t i = 0; i < page->n_records && !status; i++) {
			const Keyward__AuditRecord *r = page->records[i];
			json_t *o = record_json(r);
			char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;

			json_decref(o);
			if (r->seq != since + 1) {
				fprintf(stderr,
					"keyward-admin: audit export: records %llu to %llu were archived while "
					"exporting; %s was not written: run it again\n",
					(unsigned long long)since + 1, (unsigned long long)r->seq - 1, argv[0]);
				status = 1;
			} else if (!line || fprintf(f, "%s\n", line) < 0) {
				fprintf(stderr, "keyward-admin: audit export: cannot write %s: %s\n", tmp,
					line ? strerror(errno) : "out of memory");
				status = 1;
			} else {
				if (!n++)
					first = r->seq;
				since = r->seq;
				memcpy(head, r->hash.data, sizeof head);
			}
			free(line);
		}
		more = page->more && page->n_records;
		keyward__response__free_unpacked(resp, NULL);
	}
	close(fd);
	if (!status && fflush(f) != 0) {
		fprintf(stderr, "keyward-admin: audit export: cannot write %s: %s\n", tmp, strerror(errno));
		status = 1;
	}
	/* atomic_commit closes the descriptor under f; f itself is only freed */
	out = dup(fileno(f));
	fclose(f);
	if (out < 0) {
		unlink(tmp);
		fprintf(stderr, "keyward-admin: audit export: %s\n", strerror(errno));
		return 1;
	}
	if (status) {
		atomic_abort(out, tmp);
		return status;
	}
	if ((status = atomic_commit("audit export", argv[0], tmp, out)))
		return status;
	if (!n) {
		printf("Exported no audit records to %s: the store holds none (after archived record %llu).\n", argv[0],
		       (unsigned long long)since);
		return 0;
	}
	kw_backup_hex(head, sizeof head, hex);
	printf("Exported %llu audit records (%llu to %llu) to %s.\n", (unsigned long long)n, (unsigned long long)first,
	       (unsigned long long)since, argv[0]);
	printf("head: %llu:%s\n", (unsigned long long)since, hex);
	return 0;
}

/* A hash (64 hex digits) from a JSON object's member; false when absent or malformed. */
static bool json_hash(json_t *o, const char *name, unsigned char out[32])
{
	const char *text = json_string_value(json_object_get(o, name));

	return text && hex_decode(text, out, 32);
}

/* A text field from an exported record: "name", or "name_hex" (malloc'd, caller frees). */
static char *json_text_field(json_t *o, const char *name)
{
	char key[32];
	const char *text = json_string_value(json_object_get(o, name)), *hex;
	size_t len;
	char *out;

	if (text)
		return strdup(text);
	snprintf(key, sizeof key, "%s_hex", name);
	hex = json_string_value(json_object_get(o, key));
	if (!hex || (len = strlen(hex)) % 2 || !(out = malloc(len / 2 + 1)))
		return NULL;
	if (!hex_decode(hex, (unsigned char *)out, len / 2) || memchr(out, '\0', len / 2)) {
		free(out);
		return NULL;
	}
	out[len / 2] = '\0';
	return out;
}

/*
 * audit verify --file FILE [--expect-head SEQ:HASH]: an export re-checked
 * offline, without keywardd, as audit verify checks the store: each
 * record's hash, each link, no gap; record 1 links to zeros.
 */
static int verify_export(const char *path, uint64_t expect_seq, const unsigned char expect[32])
{
	unsigned char prev[32] = {0}, zeros[32] = {0};
	uint64_t next = 0, records = 0, first = 0;
	unsigned long lineno = 0;
	char problem[400] = "";
	bool expect_found = false;
	FILE *f = fopen(path, "re");
	/* one line at a time, in a buffer of the longest line an export can hold */
	char *line = malloc(AUDIT_LINE_MAX + 2);
	char hex[65];

	if (!f || !line) {
		fprintf(stderr, "keyward-admin: audit verify --file: cannot open %s: %s\n", path,
			f ? "out of memory" : strerror(errno));
		if (f)
			fclose(f);
		free(line);
		return 1;
	}
	while (!problem[0] && fgets(line, AUDIT_LINE_MAX + 2, f)) {
		struct kw_audit_entry e;
		unsigned char h[32];
		json_t *o = NULL, *seq, *t;
		size_t got = strlen(line);

		lineno++;
		memset(&e, 0, sizeof e);
		if (got > AUDIT_LINE_MAX || (line[got - 1] != '\n' && !feof(f))) {
			snprintf(problem, sizeof problem, "line %lu: longer than an exported record can be (%u bytes)",
				 lineno, AUDIT_LINE_MAX);
			break;
		}
		if (!(o = json_loads(line, 0, NULL)) || !json_is_object(o) ||
		    !json_is_integer(seq = json_object_get(o, "seq")) || json_integer_value(seq) < 1 ||
		    !json_is_integer(t = json_object_get(o, "time")) || !json_hash(o, "prev_hash", e.prev_hash) ||
		    !json_hash(o, "hash", e.hash) || !(e.partition = json_text_field(o, "partition")) ||
		    !(e.actor = json_text_field(o, "actor")) || !(e.event = json_text_field(o, "event")) ||
		    !(e.detail = json_text_field(o, "detail"))) {
			snprintf(problem, sizeof problem, "line %lu: not an exported audit record", lineno);
		} else {
			e.seq = (uint64_t)json_integer_value(seq);
			e.time = (int64_t)json_integer_value(t);
			if (!records) {
				first = e.seq;
				/* the first record links to what came before the export: zeros for record 1 */
				memcpy(prev, e.seq == 1 ? zeros : e.prev_hash, sizeof prev);
				next = e.seq;
			}
			if (e.seq != next)
				snprintf(problem, sizeof problem,
					 "line %lu: record %llu where %llu belongs (missing or reordered)", lineno,
					 (unsigned long long)e.seq, (unsigned long long)next);
			else if (CRYPTO_memcmp(e.prev_hash, prev, 32) != 0)
				snprintf(problem, sizeof problem,
					 "record %llu: chain broken (the record before it was altered, or records "
					 "were reordered)",
					 (unsigned long long)e.seq);
			else if (kw_audit_entry_hash(prev, &e, h) != KW_OK)
				snprintf(problem, sizeof problem, "record %llu: %s", (unsigned long long)e.seq,
					 kw_last_error());
			else if (CRYPTO_memcmp(h, e.hash, 32) != 0)
				snprintf(problem, sizeof problem, "record %llu: hash mismatch (altered)",
					 (unsigned long long)e.seq);
			else if (expect_seq == e.seq && CRYPTO_memcmp(h, expect, 32) != 0)
				snprintf(problem, sizeof problem,
					 "record %llu differs from the saved head: the log was rewritten from there on",
					 (unsigned long long)e.seq);
			if (!problem[0]) {
				expect_found |= expect_seq == e.seq;
				memcpy(prev, h, sizeof prev);
				next++;
				records++;
			}
		}
		free(e.partition);
		free(e.actor);
		free(e.event);
		free(e.detail);
		json_decref(o);
	}
	free(line);
	fclose(f);
	if (!problem[0] && expect_seq && !expect_found)
		snprintf(problem, sizeof problem, "the saved head, record %llu, is not in %s (it holds %llu to %llu)",
			 (unsigned long long)expect_seq, path, (unsigned long long)first,
			 (unsigned long long)(records ? next - 1 : 0));
	if (problem[0]) {
		printf("audit export %s BROKEN: %s\n", path, problem);
		return 1;
	}
	printf("audit export intact: %llu records", (unsigned long long)records);
	if (records)
		printf(", %llu to %llu", (unsigned long long)first, (unsigned long long)next - 1);
	printf("\n");
	if (expect_seq)
		printf("saved head %llu found in the chain\n", (unsigned long long)expect_seq);
	if (records) {
		kw_backup_hex(prev, sizeof prev, hex);
		printf("head: %llu:%s\n", (unsigned long long)next - 1, hex);
	}
	return 0;
}

static int cmd_audit_read(const char *sub, int argc, char **argv)
{
	if (strcmp(sub, "list") == 0)
		return cmd_audit_list(argc, argv);
	if (strcmp(sub, "show") == 0)
		return cmd_audit_show(argc, argv);
	return cmd_audit_export(argc, argv);
}

static void print_key_id(const char *label, const unsigned char *id, size_t n)
{
	char hex[2 * KW_BACKUP_KEY_ID_LEN + 1];

	if (n > KW_BACKUP_KEY_ID_LEN)
		n = KW_BACKUP_KEY_ID_LEN;
	kw_backup_hex(id, n, hex);
	printf("%s%s\n", label, hex);
}

static int cmd_backup(const char *path)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__BackupBegin begin = KEYWARD__BACKUP_BEGIN__INIT;
	Keyward__BackupRead rd = KEYWARD__BACKUP_READ__INIT;
	Keyward__Response *resp = NULL, *info = NULL;
	unsigned char *buf = NULL, hash[SHA256_DIGEST_LENGTH];
	struct kw_backup *check = NULL;
	size_t got = 0, size;
	int fd = -1, status = 1;
	kw_rv rv;

	if ((rv = kw_admin_connect(socket_path, &fd)))
		return fail(rv);
	begin.partition = (char *)(opt_partition ? opt_partition : "");
	req.body_case = KEYWARD__REQUEST__BODY_BACKUP_BEGIN;
	req.backup_begin = &begin;
	waiting("backup: keywardd is taking the snapshot...");
	if (!(info = call_on(fd, &req, &status)))
		goto out;
	size = (size_t)info->backup_info->size;
	if (size == 0 || size > KW_BACKUP_MAX || info->backup_info->sha256.len != sizeof hash) {
		fprintf(stderr, "keyward-admin: backup: keywardd announced a backup of %zu bytes (at most %u MiB)\n",
			size, KW_BACKUP_MAX >> 20);
		status = 1;
		goto out;
	}
	if (!(buf = malloc(size))) {
		fprintf(stderr, "keyward-admin: backup: out of memory for %zu bytes\n", size);
		status = 1;
		goto out;
	}
	while (got < size) {
		Keyward__BackupChunk *c;

		rd.offset = got;
		rd.length = TRANSFER_CHUNK;
		req.body_case = KEYWARD__REQUEST__BODY_BACKUP_READ;
		req.backup_read = &rd;
		if (!(resp = call_on(fd, &req, &status)))
			goto out;
		c = resp->backup_chunk;
		if (c->offset != got || c->data.len == 0 || c->data.len > size - got ||
		    c->last != (got + c->data.len == size)) {
			fprintf(stderr,
				"keyward-admin: backup: keywardd sent a chunk that does not fit (%zu bytes at "
				"%llu of %zu)\n",
				c->data.len, (unsigned long long)c->offset, size);
			status = 1;
			goto out;
		}
		memcpy(buf + got, c->data.data, c->data.len);
		got += c->data.len;
		progress("backup", got, size);
		keyward__response__free_unpacked(resp, NULL);
		resp = NULL;
	}
	SHA256(buf, size, hash);
	if (CRYPTO_memcmp(hash, info->backup_info->sha256.data, sizeof hash) != 0) {
		fprintf(stderr,
			"keyward-admin: backup: the backup changed on its way from keywardd (SHA-256 "
			"mismatch); %s was not written\n",
			path);
		status = 1;
		goto out;
	}
	/* check what we write, as restore will */
	if ((rv = kw_backup_decode(buf, size, &check))) {
		fprintf(stderr, "keyward-admin: backup: %s; %s was not written\n", kw_last_error(), path);
		status = 1;
		goto out;
	}
	if ((status = write_file_atomic(path, buf, size)))
		goto out;
	printf("Backup written to %s: %zu bytes, %u partition%s, %u credential%s, %u object%s (%u sealed key%s).\n",
	       path, size, info->backup_info->partitions, info->backup_info->partitions == 1 ? "" : "s",
	       info->backup_info->credentials, info->backup_info->credentials == 1 ? "" : "s",
	       info->backup_info->objects, info->backup_info->objects == 1 ? "" : "s", info->backup_info->keys,
	       info->backup_info->keys == 1 ? "" : "s");
	printf("audit head:    %llu\n", (unsigned long long)info->backup_info->audit_seq);
	print_key_id("master-key id: ", info->backup_info->key_id.data, info->backup_info->key_id.len);
	print_key_id("sha256:        ", hash, sizeof hash);
	printf("It stays sealed: restore it only into an HSM that holds the same master key.\n");
out:
	kw_backup_free(check);
	if (resp)
		keyward__response__free_unpacked(resp, NULL);
	if (info)
		keyward__response__free_unpacked(info, NULL);
	free(buf);
	if (fd >= 0)
		close(fd);
	return status;
}

/* The whole file (at most KW_BACKUP_MAX bytes) in *out; prints why not. */
static int read_backup_file(const char *path, unsigned char **out, size_t *len)
{
	struct stat st;
	unsigned char *buf;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*out = NULL;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "keyward-admin: restore: cannot read %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > KW_BACKUP_MAX) {
		fprintf(stderr, "keyward-admin: restore: %s is %s; a backup is a file of 1 byte to %u MiB\n", path,
			S_ISREG(st.st_mode) ? (st.st_size <= 0 ? "empty" : "too large") : "not a regular file",
			KW_BACKUP_MAX >> 20);
		close(fd);
		return 1;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		close(fd);
		fprintf(stderr, "keyward-admin: restore: out of memory\n");
		return 1;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got != (size_t)st.st_size) {
		fprintf(stderr, "keyward-admin: restore: %s changed while it was read\n", path);
		free(buf);
		return 1;
	}
	*out = buf;
	*len = got;
	return 0;
}

static int cmd_restore(const char *path)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__RestoreBegin begin = KEYWARD__RESTORE_BEGIN__INIT;
	Keyward__RestoreChunk chunk = KEYWARD__RESTORE_CHUNK__INIT;
	Keyward__RestoreCommit commit = KEYWARD__RESTORE_COMMIT__INIT;
	Keyward__Response *resp = NULL;
	Keyward__RestoreResult *r;
	struct kw_backup *check = NULL;
	unsigned char *buf = NULL;
	size_t len = 0, sent = 0;
	int fd = -1, status;
	kw_rv rv;

	if ((status = read_backup_file(path, &buf, &len)))
		return status;
	/* a damaged or truncated file is refused here already; keywardd checks it again */
	if ((rv = kw_backup_decode(buf, len, &check))) {
		fprintf(stderr, "keyward-admin: restore: %s: %s; nothing was restored\n", path, kw_last_error());
		free(buf);
		return 1;
	}
	kw_backup_free(check);
	if ((rv = kw_admin_connect(socket_path, &fd))) {
		free(buf);
		return fail(rv);
	}
	begin.size = len;
	req.body_case = KEYWARD__REQUEST__BODY_RESTORE_BEGIN;
	req.restore_begin = &begin;
	if (!(resp = call_on(fd, &req, &status)))
		goto out;
	while (sent < len) {
		size_t n = len - sent < TRANSFER_CHUNK ? len - sent : TRANSFER_CHUNK;

		keyward__response__free_unpacked(resp, NULL);
		chunk.offset = sent;
		chunk.data.data = buf + sent;
		chunk.data.len = n;
		req.body_case = KEYWARD__REQUEST__BODY_RESTORE_CHUNK;
		req.restore_chunk = &chunk;
		if (!(resp = call_on(fd, &req, &status)))
			goto out;
		sent += n;
		progress("restore", sent, len);
	}
	keyward__response__free_unpacked(resp, NULL);
	req.body_case = KEYWARD__REQUEST__BODY_RESTORE_COMMIT;
	req.restore_commit = &commit;
	waiting("restore: keywardd is checking and writing it...");
	if (!(resp = call_on(fd, &req, &status)))
		goto out;
	r = resp->restore_result;
	printf("Restored %s: %u object%s added, %u already here and identical; %u partition%s created, %u kept; "
	       "%u credential%s added, %u kept; %u key%s resealed for a new partition id.\n",
	       path, r->objects_added, r->objects_added == 1 ? "" : "s", r->objects_kept, r->partitions_created,
	       r->partitions_created == 1 ? "" : "s", r->partitions_kept, r->credentials_added,
	       r->credentials_added == 1 ? "" : "s", r->credentials_kept, r->keys_resealed,
	       r->keys_resealed == 1 ? "" : "s");
out:
	if (resp)
		keyward__response__free_unpacked(resp, NULL);
	free(buf);
	if (fd >= 0)
		close(fd);
	return status;
}

static int parse_options(int argc, char **argv, bool *with_shares);

static void fingerprint_hex(const ProtobufCBinaryData *fp, char *out, size_t size)
{
	out[0] = '\0';
	for (size_t i = 0; i < fp->len && 2 * i + 2 < size; i++)
		snprintf(out + 2 * i, 3, "%02x", fp->data[i]);
}

static void when_text(int64_t t, char *out, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!t || !gmtime_r(&tt, &tm) || !strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, size, "-");
}

static int print_clients(const Keyward__Clients *cl)
{
	char fp[2 * 64 + 1], enrolled[32], revoked[32];

	if (opt_json) {
		json_t *arr = json_array();
		char *text;
		for (size_t i = 0; i < cl->n_clients; i++) {
			const Keyward__ClientInfo *c = cl->clients[i];
			fingerprint_hex(&c->fingerprint, fp, sizeof fp);
			when_text(c->enrolled, enrolled, sizeof enrolled);
			when_text(c->revoked, revoked, sizeof revoked);
			json_array_append_new(arr,
					      json_pack("{s:s, s:s, s:s, s:s, s:o, s:b}", "fingerprint", fp, "subject",
							c->subject, "partition", c->partition, "enrolled", enrolled,
							"revoked_at", c->revoked ? json_string(revoked) : json_null(),
							"revoked", c->revoked != 0));
		}
		text = json_dumps(arr, JSON_INDENT(2));
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(arr);
		return text ? 0 : 1;
	}
	printf("%-16s  %-16s  %-20s  %-20s  %s\n", "FINGERPRINT", "PARTITION", "ENROLLED", "REVOKED", "SUBJECT");
	for (size_t i = 0; i < cl->n_clients; i++) {
		const Keyward__ClientInfo *c = cl->clients[i];
		fingerprint_hex(&c->fingerprint, fp, 17);
		when_text(c->enrolled, enrolled, sizeof enrolled);
		when_text(c->revoked, revoked, sizeof revoked);
		printf("%-16s  %-16s  %-20s  %-20s  %s\n", fp, c->partition, enrolled, revoked, c->subject);
	}
	return 0;
}

static int cmd_client(int argc, char **argv)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__ClientList list = KEYWARD__CLIENT_LIST__INIT;
	Keyward__ClientRevoke revoke = KEYWARD__CLIENT_REVOKE__INIT;
	Keyward__Response *resp;
	bool shares = false;
	int status;

	/* options may follow the subcommand: client list --partition P --json */
	if (argc >= 1) {
		optind = 0; /* glibc: start over, argv[0] (the subcommand) in the place of the program name */
		if (parse_options(argc, argv, &shares) != 0 || shares) {
			fprintf(stderr, "keyward-admin: client: unknown option\n");
			return 2;
		}
		memmove(argv + 1, argv + optind, (size_t)(argc - optind) * sizeof *argv);
		argc = 1 + argc - optind;
	}
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		list.partition = (char *)(opt_partition ? opt_partition : "");
		req.body_case = KEYWARD__REQUEST__BODY_CLIENT_LIST;
		req.client_list = &list;
	} else if (argc == 2 && strcmp(argv[0], "revoke") == 0 && !opt_partition && !opt_json) {
		revoke.client = argv[1];
		req.body_case = KEYWARD__REQUEST__BODY_CLIENT_REVOKE;
		req.client_revoke = &revoke;
	} else {
		fprintf(stderr,
			"keyward-admin: client list [--partition P] [--json] | client revoke FINGERPRINT|SUBJECT\n");
		return 2;
	}
	if (!(resp = call(&req, 10, &status)))
		return status;
	if (req.body_case == KEYWARD__REQUEST__BODY_CLIENT_REVOKE) {
		char fp[2 * 64 + 1];
		const Keyward__ClientInfo *c = resp->clients->n_clients ? resp->clients->clients[0] : NULL;
		if (c) {
			fingerprint_hex(&c->fingerprint, fp, sizeof fp);
			printf("Revoked client %s (%s) of partition \"%s\": refused from now on, on open connections "
			       "too.\n",
			       fp, c->subject, c->partition);
		}
	} else {
		status = print_clients(resp->clients);
	}
	keyward__response__free_unpacked(resp, NULL);
	return status;
}

static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
				     {"passphrase-file", required_argument, NULL, 'p'},
				     {"shares", optional_argument, NULL, 'n'},
				     {"threshold", required_argument, NULL, 't'},
				     {"partition", required_argument, NULL, 'P'},
				     {"json", no_argument, NULL, 'j'},
				     {"yes", no_argument, NULL, 'y'},
				     {"quiet", no_argument, NULL, 'q'},
				     {"help", no_argument, NULL, 'h'},
				     {"version", no_argument, NULL, 'V'},
				     {NULL, 0, NULL, 0}};

/* Options up to the next non-option; -1 on a bad one, 1 for --help, 2 for --version. */
static int parse_options(int argc, char **argv, bool *with_shares)
{
	int c;

	while ((c = getopt_long(argc, argv, "+s:p:hq", opts, NULL)) != -1) {
		switch (c) {
		case 's': socket_path = optarg; break;
		case 'p': passphrase_file = optarg; break;
		case 'n':
			*with_shares = true;
			/* `--shares 5` as users type it: the optional argument may be the next word */
			if (!optarg && optind < argc && argv[optind][0] >= '0' && argv[optind][0] <= '9')
				optarg = argv[optind++];
			if (optarg)
				opt_shares = (unsigned)atoi(optarg);
			break;
		case 't': opt_threshold = (unsigned)atoi(optarg); break;
		case 'P': opt_partition = optarg; break;
		case 'j': opt_json = true; break;
		case 'y': opt_yes = true; break;
		case 'q':
			opt_quiet = true;
			break;
		case 'h': return 1;
		case 'V':
			return 2;
		default: return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	bool with_shares = false;
	const char *cmd;
	int r;

	/* a peer that went away is an error to report, not a signal that kills us */
	signal(SIGPIPE, SIG_IGN);

	r = parse_options(argc, argv, &with_shares);
	if (r == 0 && optind < argc) {
		cmd = argv[optind++];
		r = parse_options(argc, argv, &with_shares); /* options may also follow the command */
	} else {
		cmd = NULL;
	}
	if (r == 1 || (cmd && strcmp(cmd, "help") == 0 && optind == argc)) {
		usage(stdout);
		return 0;
	}
	if (r == 2 || (cmd && strcmp(cmd, "version") == 0 && optind == argc)) {
		printf("keyward-admin %s\n", KEYWARD_VERSION);
		return 0;
	}
	if (r < 0 || !cmd) {
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "status") == 0 && optind == argc)
		return cmd_status();
	if (strcmp(cmd, "init") == 0 && optind == argc) {
		if (with_shares != (opt_threshold != 0) || (with_shares && !opt_shares)) {
			fprintf(stderr, "keyward-admin: init --shares N --threshold M (both, or neither)\n");
			return 2;
		}
		return cmd_init();
	}
	if (strcmp(cmd, "unlock") == 0 && optind == argc)
		return cmd_unlock(with_shares);
	if (strcmp(cmd, "lock") == 0 && optind == argc)
		return cmd_lock();
	if (strcmp(cmd, "partition") == 0)
		return cmd_partition(argc - optind, argv + optind);
	if (strcmp(cmd, "audit") == 0)
		return cmd_audit(argc - optind, argv + optind);
	if (strcmp(cmd, "client") == 0)
		return cmd_client(argc - optind, argv + optind);
	if (strcmp(cmd, "backup") == 0 || strcmp(cmd, "restore") == 0) {
		const char *file = optind < argc ? argv[optind++] : NULL;

		/* --partition may also follow FILE */
		if (file && optind < argc)
			r = parse_options(argc, argv, &with_shares);
		if (!file || r != 0 || optind != argc || with_shares || opt_json || (cmd[0] == 'r' && opt_partition)) {
			fprintf(stderr, "keyward-admin: backup FILE [--partition P] | restore FILE\n");
			return 2;
		}
		return cmd[0] == 'b' ? cmd_backup(file) : cmd_restore(file);
	}
	fprintf(stderr, "keyward-admin: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 2;
}
