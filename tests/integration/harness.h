/*
 * Integration-test harness: starts the real keywardd on a free loopback
 * port in a fresh temporary directory, runs keyward-admin against it, and
 * stops it. keywardd gets PR_SET_PDEATHSIG, so it never outlives a test
 * that crashes; every wait is bounded.
 */
#ifndef KW_TEST_HARNESS_H
#define KW_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <keyward/keyward.h>

struct kwt_server {
	char dir[256];	/* the server's directory (store, tls, admin.sock) */
	char conf[300]; /* client.conf for partition "dev" (dev mode) */
	char admin_socket[300];
	char server_conf[300]; /* keywardd.conf (config mode) */
	char log[300];	       /* keywardd's stderr */
	unsigned short port;
	pid_t pid;
	bool dev;
};

/* keywardd --dev DIR --listen 127.0.0.1:0; waits for DIR/client.conf. */
void kwt_start_dev(struct kwt_server *s);
/*
 * A node of a development store on PostgreSQL: keywardd --dev DIR --store
 * STORE --listen 127.0.0.1:PORT on a port picked now. With first NULL, a
 * fresh DIR (the node that makes the store); else first's DIR, which this
 * node joins (admin socket DIR/admin-PORT.sock, log DIR/keywardd-PORT.log).
 * Waits until it serves; s->conf is DIR/node-PORT.conf, a client
 * configuration naming this node only. kwt_cleanup only the first node.
 */
void kwt_start_dev_node(struct kwt_server *s, const struct kwt_server *first, const char *store);
/*
 * Two such nodes on the database tests/pg/with-pg made ($KW_TEST_PG_DB):
 * n1 makes the store, n2 joins it. Fails the test when run without with-pg.
 */
void kwt_start_pg_pair(struct kwt_server *n1, struct kwt_server *n2);
/*
 * keywardd --config DIR/keywardd.conf with the given extra lines in its
 * [server] section (and any further sections after), on a port picked now.
 * The store is not initialized. Reuses dir and port when s->dir is set
 * (a restart).
 */
void kwt_start_config(struct kwt_server *s, const char *extra);
/*
 * kwt_start_config, then init under KWT_PASSPHRASE, then a partition "p" and
 * its enrolled client (s is cleared first).
 */
#define KWT_PASSPHRASE "correct horse battery staple"
kw_client *kwt_start_initialized(struct kwt_server *s, const char *extra);
/* Waits for the server's port and admin socket to accept. */
void kwt_wait_ready(struct kwt_server *s);
/* SIGTERM and wait; asserts a clean exit. */
void kwt_stop(struct kwt_server *s);
/* SIGKILL and wait. */
void kwt_kill9(struct kwt_server *s);
/* Removes the directory. */
void kwt_cleanup(struct kwt_server *s);

/*
 * Runs keyward-admin with KEYWARD_ADMIN_SOCKET set; stdin_text is fed to it
 * (may be NULL). Returns the exit code; *out (may be NULL) gets stdout+stderr
 * (caller frees).
 */
int kwt_admin(struct kwt_server *s, const char *stdin_text, char **out, const char *args_fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * Writes DIR/<name>.conf for a client of `partition` with credential files
 * DIR/<name>.crt/.key, pointing at the server. Returns the path (static buffer per call site).
 */
void kwt_write_client_conf(struct kwt_server *s, const char *name, const char *partition, char *path_out, size_t size);
/* Creates a partition and enrolls a client for it; returns a connected kw_client. */
kw_client *kwt_new_partition_client(struct kwt_server *s, const char *partition);
/* A further client `name` (DIR/<name>.conf) of an existing partition, under a new setup password. */
kw_client *kwt_another_client(struct kwt_server *s, const char *partition, const char *name);

/* A dev-mode keywardd and a client of its partition "dev" (group fixtures). */
kw_client *kwt_start_dev_client(struct kwt_server *s);
/* Frees the client, stops the server (asserting a clean exit), removes its directory. */
void kwt_stop_client(struct kwt_server *s, kw_client *c);

/*
 * Group fixtures over kwt_start_dev_client / kwt_stop_client: *state gets
 * a struct kwt_dev (cmocka_run_group_tests(tests, kwt_dev_setup, kwt_dev_teardown)).
 */
struct kwt_dev {
	struct kwt_server server;
	kw_client *client;
};
int kwt_dev_setup(void **state);
int kwt_dev_teardown(void **state);

/*
 * For a test that loads keyward-pkcs11.so against s: a fixed machine id
 * (DIR/machine-id, $KEYWARD_MACHINE_ID_FILE), $KEYWARD_CONF, and the user PIN.
 */
void kwt_p11_env(const struct kwt_server *s, char *pin, size_t size);
/* SoftHSM2's module, the comparison (and second) PKCS#11 HSM of the tests. */
#define KWT_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
/*
 * A SoftHSM2 configuration keeping its tokens in DIR/tokens (made here),
 * in DIR/softhsm2.conf, named by SOFTHSM2_CONF; fails the test when
 * SoftHSM2 is not installed (softhsm2, scripts/packages).
 */
void kwt_softhsm_conf(const char *dir);

/* The owner the tests file their keys under. */
#define KWT_OWNER "S-1-5-21-1-2-3"
/* An EC P-256 key named name under KWT_OWNER: its id and public key (SPKI, at most 512 bytes; spki may be NULL). */
void kwt_gen_ec(kw_client *c, const char *name, uint64_t *id, unsigned char *spki, size_t *spki_len);
/* Whether a raw r||s ECDSA signature verifies against spki with OpenSSL. */
int kwt_ecdsa_verifies(const unsigned char *spki, size_t spki_len, const unsigned char *digest, size_t digest_len,
		       const unsigned char *sig, size_t sig_len);
void kwt_write_file(const char *path, const char *text);

/*
 * Stops (start false) or starts again, on the same directory and port, the
 * throwaway PostgreSQL cluster tests/pg/with-pg made for this test (its
 * KW_TEST_PG_* variables); returns when it is down or accepting.
 */
void kwt_pg_cluster(bool start);

/* A port on 127.0.0.1 that nothing listens on right now. */
unsigned short kwt_free_port(void);
/* The user PIN a dev-mode keywardd wrote to DIR/pin (it encrypts DIR/client/dev.key). */
void kwt_dev_pin(const struct kwt_server *s, char *out, size_t size);
/*
 * Runs a shell command line in sh, for at most KWT_RUN_TIMEOUT seconds (a
 * client that hangs fails with exit 124 and its output, not at ctest's
 * timeout); stdout+stderr go to DIR/out.txt and, if out, into *out (caller
 * frees). Returns the exit code.
 */
#define KWT_RUN_TIMEOUT "120"
int kwt_run(const char *dir, char **out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* kwt_run of a command that must exit 0 (else the test fails with its output); returns the output (caller frees). */
char *kwt_run_ok(const char *dir, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/*
 * A service manager's notification socket, as systemd gives a Type=notify
 * service: a datagram socket bound in a new temporary directory, its path
 * in n->path for NOTIFY_SOCKET; receives wait at most 30 s.
 */
struct kwt_notify {
	int fd;
	char dir[32];
	char path[108];
};
void kwt_notify_open(struct kwt_notify *n);
/* The next notification has want (and also, if not NULL), else the test fails naming who sent none or what. */
void kwt_expect_notification(struct kwt_notify *n, const char *who, const char *want, const char *also);
void kwt_notify_close(struct kwt_notify *n);
/* Reads a whole file (caller frees); NULL if missing. */
char *kwt_read_file(const char *path, size_t *len);
/* Fails the test with the client's last error if rv is not KW_OK. */
#define kwt_ok(expr)                                                                                                   \
	do {                                                                                                           \
		kw_rv kwt_rv_ = (expr);                                                                                \
		if (kwt_rv_ != KW_OK)                                                                                  \
			fail_msg("%s failed: %s: %s", #expr, kw_rv_name(kwt_rv_), kw_last_error());                    \
	} while (0)

#endif
