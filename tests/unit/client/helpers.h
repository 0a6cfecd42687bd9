/*
 * Test helpers for libkeyward: temporary directories, files, a throwaway
 * PKI (CA, server and client certificates) made with OpenSSL, and a tiny
 * TLS 1.3 keyward server on 127.0.0.1 running in a thread.
 */
#ifndef KW_TEST_CLIENT_HELPERS_H
#define KW_TEST_CLIENT_HELPERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* A fresh directory under $TMPDIR (or /tmp); free the string. */
char *kwt_tmpdir(void);
/* Removes dir and everything in it. */
void kwt_rmtree(const char *dir);
/* Writes text to dir/name (creating no directories). Returns the full path (free it). */
char *kwt_write(const char *dir, const char *name, const char *text);
/* A TCP port on 127.0.0.1 with nothing listening (bound, then closed). */
int kwt_free_port(void);

/*
 * In dir: ca.crt ca.key server.crt server.key (SAN IP:127.0.0.1,
 * DNS:localhost), client.crt client.key, client-enc.key (the same key,
 * PKCS#8 encrypted under "1234"), other-ca.crt (an unrelated CA).
 */
struct kwt_pki {
	X509 *ca;
	EVP_PKEY *ca_key;
};
void kwt_make_pki(const char *dir, struct kwt_pki *pki);
void kwt_pki_cleanup(struct kwt_pki *pki);
/* Issues a certificate for pub signed by the CA (san may be NULL). */
X509 *kwt_issue(struct kwt_pki *pki, EVP_PKEY *pub, const X509_NAME *subject, const char *san);

/*
 * The test server. Requests it understands (see helpers.c): Hello (AUTH if
 * the partition is "wrongpart"), Enroll (password "setup-pw"), Sign,
 * GetObject, ListObjects (5 objects, 2 per page), GenerateRandom, where
 * the requested length selects a misbehaviour:
 *   7: answers with the wrong id      8: announces a 2 GiB response
 *   9: answers NOT_FOUND "no such thing"
 * Other requests than Hello and Enroll need a client certificate.
 */
struct kwt_server {
	SSL_CTX *ctx;
	struct kwt_pki *pki;
	int lfd;
	int port;
	pthread_t thread;
	atomic_bool stop;
	atomic_int accepted;    /* TLS connections accepted */
	atomic_int drop_next;   /* close the connection on the next non-Hello request */
	atomic_int requests;
};
void kwt_server_start(struct kwt_server *s, const char *pki_dir, struct kwt_pki *pki);
void kwt_server_stop(struct kwt_server *s);

#endif
