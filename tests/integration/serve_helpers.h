/*
 * keyward-ca serve as a process, for the tests that talk to it (test_ca_serve,
 * the enrollment tests): started on a port with its log in a file, ready
 * when /health answers, stopped by its PID; and raw HTTP exchanges.
 */
#ifndef KW_TEST_SERVE_HELPERS_H
#define KW_TEST_SERVE_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h"

/*
 * A development keywardd (server) with a fixed machine id and $KEYWARD_CONF
 * set, and a CA called name (EC-P256, through the module pkcs11) set up on
 * it in server->dir/sub/ca; the test works in server->dir/sub (the current
 * directory after this), which holds ca.pem. work, ca_dir and pin (the
 * PIN file) are filled in.
 */
void serve_test_ca(struct kwt_server *server, const char *sub, const char *name, const char *pkcs11, char work[300],
		   char ca_dir[400], char pin[400]);
/*
 * serve_test_ca, but in the suite's pass on PostgreSQL (KW_TEST_STORE=postgres) the CA's database
 * is on the throwaway cluster (setup --database), in a database of its own: for the tests that run
 * on either (test_ca_acme and test_ca_cmp read keyward-ca.db with sqlite3, so they stay on SQLite;
 * ACME and CMP on PostgreSQL: test_ca_pg_enroll).
 */
void serve_test_ca_any_db(struct kwt_server *server, const char *sub, const char *name, const char *pkcs11,
			  char work[300], char ca_dir[400], char pin[400]);
/* serve_test_ca without the CA: keywardd, the environment, work (the current directory), ca_dir and pin named. */
void serve_test_dirs(struct kwt_server *server, const char *sub, char work[300], char ca_dir[400], char pin[400]);

/*
 * The fixture's serve, after serve_test_ca: serve.conf in ca_dir holding
 * conf, then serve_start on a free port (into *port) with its log in
 * serve.log of the current directory.
 */
pid_t serve_test_start(const char *ca_dir, const char *conf, unsigned short *port);

/* The end of serve_test_ca: kept outputs forgotten, out of the directory, keywardd stopped and removed. */
void serve_test_ca_end(struct kwt_server *server);
/* A fixture's teardown: its serves stopped (serve_stop: each must exit 0; pid <= 0 none), then serve_test_ca_end. */
void serve_test_end(struct kwt_server *server, pid_t serve_pid, pid_t serve2_pid);

/* tls.key (0600) and tls.crt in the current directory: a self-signed P-256 certificate for IP 127.0.0.1. */
void serve_tls_files(void);

/* Starts keyward-ca --dir dir serve --listen 127.0.0.1:on, its output in log; waits up to 30 s for /health. */
pid_t serve_start(const char *dir, unsigned short on, const char *log);
/* The same on listen ("127.0.0.1:PORT", "[::1]:PORT"). */
pid_t serve_start_at(const char *dir, const char *listen, const char *log);
/* The same over HTTPS (serve.conf's tls_certificate and tls_key): /health asked with curl. */
pid_t serve_start_https(const char *dir, unsigned short on, const char *log);
/*
 * openssl ocsp against serve on 127.0.0.1:on (issuer and trust: ca.pem in
 * the current directory) with args, whatever its exit code, asked again
 * every 100 ms until its output has needle, at most seconds: the output (kept).
 */
const char *serve_ocsp_until(unsigned short on, const char *args, const char *needle, int seconds);
/* SIGTERM, and it must exit 0 within 10 s. pid <= 0: nothing. */
void serve_stop(pid_t pid);

/*
 * One HTTP exchange on a fresh connection to addr ("127.0.0.1:PORT",
 * "[::1]:PORT") from the IPv4 address from (NULL: the system's choice):
 * the response (status line first, caller frees), or NULL if connecting or
 * sending failed. Waits at most 10 s for each read.
 */
char *http_raw_at(const char *addr, const char *from, const void *req, size_t len, size_t *resp_len);
/* http_raw_at 127.0.0.1:on. */
char *http_raw(unsigned short on, const void *req, size_t len, size_t *resp_len);
/* The status of METHOD path (no body), or -1. */
int http_status_at(const char *addr, const char *method, const char *path);
int http_status(unsigned short on, const char *method, const char *path);

#endif
