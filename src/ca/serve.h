/*
 * keyward-ca serve: the CA's HTTP front (keyward-ca(8), SERVE): OCSP
 * (RFC 6960, RFC 5019 cache), the CRLs and the CA certificate at the
 * paths its certificates' CDP and AIA URLs name, /health and /metrics.
 * One process per CA directory; several may share one database.
 */
#ifndef KW_CA_SERVE_H
#define KW_CA_SERVE_H

#include <stdbool.h>

#include "ca/ca.h"

/* serve.conf in the CA directory ([serve] section; every key optional) */
struct serve_conf {
	char listen[300];		   /* HOST:PORT, [V6]:PORT */
	bool signer_ca;			   /* ocsp_signer = ca: the CA key signs; else a delegated certificate */
	char signer_key_type[16];	   /* ocsp_signer_key_type: of the delegated signer's key */
	unsigned validity_seconds;	   /* ocsp_validity_hours: nextUpdate - thisUpdate */
	unsigned max_age;		   /* ocsp_max_age: Cache-Control max-age ceiling, seconds */
	unsigned renew_percent;		   /* ocsp_signer_renew_percent: renew when less life is left */
	unsigned max_connections;	   /* max_connections */
	unsigned per_address;		   /* per_address_connections */
	unsigned timeout;		   /* connection_timeout (seconds of idleness) */
	unsigned threads;		   /* threads: HTTP worker threads */
	unsigned presign_batch;		   /* presign_batch: responses signed between cache publications */
	bool crl_schedule;		   /* crl_schedule = true|false: publish CRLs on their periods */
	unsigned crl_republish;		   /* crl_republish_seconds: the full CRL at least this often (0: no more) */
	unsigned delta_republish;	   /* delta_republish_seconds: the delta CRL likewise */
	unsigned signer_validity;	   /* ocsp_signer_validity_minutes, in seconds (0: the template's days) */
	char tls_certificate[CA_PATH_MAX]; /* tls_certificate: PEM, the chain to send (HTTPS with tls_key) */
	char tls_key[CA_PATH_MAX];	   /* tls_key: PEM, unencrypted, mode 0600 */
	bool read_only; /* read_only = true: answers from a database it never writes (a hot standby's) */
};
#define SERVE_BODY_MAX (64 * 1024) /* bytes of a request body */

/* Defaults, then dir/serve.conf if there. */
int serve_conf_load(struct serve_conf *sc, const char *dir);
int serve_conf_set(struct serve_conf *sc, const char *key, const char *value);

/*
 * The delegated signer's key "ocsp-FILE" on the CA's token, made there
 * (ocsp_signer_key_type, else the CA key's kind) if it is not; the module
 * is loaded and unloaded again. serve runs it in a child process.
 */
int serve_signer_key_prepare(const char *dir, const struct serve_conf *sc);

/*
 * The CA opened for serving: configuration, database, certificate chain and
 * key (the one place that opens it). With sc->read_only the database is only
 * read (every change refused); without, a database that takes no writes (a
 * hot standby) is refused, saying so.
 */
int serve_open_ca(const char *dir, const struct serve_conf *sc, struct ca **ca);

#endif
