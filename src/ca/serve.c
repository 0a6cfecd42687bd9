/*
 * keyward-ca serve (serve.h): libmicrohttpd with an epoll thread pool in
 * front of the OCSP responder (ocsp.c), publish/ and the apps of
 * serve_apps.c (CMP, ACME). The parts are listed in serve_internal.h.
 *
 * Threads: the HTTP pool answers requests; "presign" fills the RFC 5019
 * cache and follows the database's changes (serve_presign.c); "maint"
 * publishes CRLs on their periods and renews the delegated OCSP signer
 * (serve_maint.c; with read_only = true it publishes nothing and only
 * reloads a renewed signer certificate, and ACME and CMP are not mounted:
 * the database is never written, a hot standby's); with a batch-signing module, the signing queue signs
 * live answers in batches (serve_answer.c). The CA's own database handle
 * (struct ca) is shared by maint and the apps under ca_lock; the HTTP
 * pool and presign read states on connections of their own
 * (db_status.c).
 *
 * A request the cache cannot answer (a nonce, several ids, SHA-256 ids,
 * a serial not cached) is answered from the database and signed then; a
 * single-id answer signed so is put in the cache unless the cache was
 * invalidated while it was made.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include <openssl/x509.h>

#include "ca/publish.h"
#include "ca/serve_internal.h"
#include "common/log.h"

/* Opens every app of serve_apps.c: 0, or -1 with the first failure's reason. */
static int apps_open(struct server *sv)
{
	/* in the server, not on this stack: apps keep it until they close (serve_app.h) */
	sv->app_env = (struct serve_env){.dir = sv->dir, .sc = &sv->sc, .ca = sv->ca, .ca_lock = &sv->ca_lock};
	for (size_t i = 0; serve_apps[i]; i++) {
		if (i == SERVE_APPS_MAX)
			return ca_error("more than %d applications in serve_apps.c", SERVE_APPS_MAX);
		if (serve_apps[i]->open(&sv->app_env, &sv->app_state[i]))
			return ca_error("%s: %s", serve_apps[i]->name, ca_last_error());
		sv->n_apps = i + 1;
	}
	return 0;
}

static void server_free(struct server *sv)
{
	for (size_t i = sv->n_apps; i-- > 0;)
		serve_apps[i]->close(sv->app_state[i]);
	if (sv->q.started) {
		/* after the HTTP threads stopped (or never started): nothing is in the queue */
		pthread_mutex_lock(&sv->q.mu);
		sv->q.stop = true;
		pthread_cond_broadcast(&sv->q.work);
		pthread_mutex_unlock(&sv->q.mu);
		pthread_join(sv->q.tid, NULL);
		sv->q.started = false;
	}
	serve_cache_free(sv);
	serve_tls_free(&sv->tls);
	for (int i = 0; i < 3; i++) {
		free(sv->files[i].data);
		pthread_mutex_destroy(&sv->files[i].lock);
	}
	if (sv->signer_owned) {
		X509_free(sv->signer.cert);
		EVP_PKEY_free(sv->signer.key);
		EVP_PKEY_free(sv->signer_pub);
	}
	ca_status_close(sv->live);
	ca_status_close(sv->pre);
	ca_batch_signer_close(sv->batch);
	ca_der_free(&sv->sig_alg);
	ca_close(sv->ca);
	pthread_rwlock_destroy(&sv->signer_lock);
	pthread_rwlock_destroy(&sv->cache_lock);
	pthread_mutex_destroy(&sv->live_lock);
	pthread_mutex_destroy(&sv->ca_lock);
	pthread_mutex_destroy(&sv->stop_lock);
	pthread_mutex_destroy(&sv->health_lock);
	pthread_cond_destroy(&sv->stop_cond);
}

int ca_serve(const char *dir_in, const char *listen)
{
	struct server *sv = calloc(1, sizeof *sv);
	struct sockaddr_storage addr;
	struct MHD_Daemon *d = NULL;
	pthread_t presign, maint;
	bool presign_started = false, maint_started = false;
	sigset_t sigs;
	int sig = 0, rc = -1;
	char dir[CA_PATH_MAX + 16];
	struct MHD_OptionItem tls_opts[3];

	if (!sv)
		return ca_error("out of memory");
	pthread_rwlock_init(&sv->signer_lock, NULL);
	pthread_rwlock_init(&sv->cache_lock, NULL);
	pthread_mutex_init(&sv->live_lock, NULL);
	pthread_mutex_init(&sv->ca_lock, NULL);
	pthread_mutex_init(&sv->stop_lock, NULL);
	pthread_mutex_init(&sv->health_lock, NULL);
	pthread_cond_init(&sv->stop_cond, NULL);
	for (int i = 0; i < 3; i++)
		pthread_mutex_init(&sv->files[i].lock, NULL);
	kw_log_init("info");
	sv->dir = dir_in;
	if (serve_conf_load(&sv->sc, dir_in))
		goto out;
	if (listen && serve_conf_set(&sv->sc, "listen", listen))
		goto out;
	if (serve_listen_addr(sv->sc.listen, &addr) || serve_tls_load(&sv->sc, &sv->tls))
		goto out;
	/* read-only: the signer's key must be there already (the HSM is the issuer's too; nothing is made) */
	if ((!sv->sc.signer_ca && !sv->sc.read_only && serve_signer_key_prepare_apart(dir_in, &sv->sc)) ||
	    serve_open_ca(dir_in, &sv->sc, &sv->ca))
		goto out;
	ca_file_name(sv->ca->conf.name, sv->file, sizeof sv->file);
	serve_url_prefixes(sv);
	ca_path(&sv->ca->conf, "publish", dir, sizeof dir);
	snprintf(sv->files[0].path, sizeof sv->files[0].path, "%s/%s.crl", dir, sv->file);
	snprintf(sv->files[1].path, sizeof sv->files[1].path, "%s/%s+.crl", dir, sv->file);
	snprintf(sv->files[2].path, sizeof sv->files[2].path, "%s/%s.crt", dir, sv->file);
	sv->files[0].type = sv->files[1].type = "application/pkix-crl";
	sv->files[2].type = "application/pkix-cert";
	if (serve_cache_init(sv))
		goto out;
	if (ocsp_issuer_init(&sv->issuer, ca_certificate(sv->ca)) ||
	    ca_publish_aia(&sv->ca->conf, ca_certificate(sv->ca)))
		goto out;
	if (sv->sc.signer_ca)
		sv->signer = (struct ocsp_signer){
			.cert = ca_certificate(sv->ca), .key = sv->ca->priv, .md = ca_md(&sv->ca->conf)};
	else if (serve_signer_delegated(sv))
		goto out;
	if (ca_status_open(&sv->ca->conf, &sv->live) || ca_status_open(&sv->ca->conf, &sv->pre))
		goto out;
	{
		/* the cache pre-signed in batches where the module offers it (KEYWARD_CA_BATCH=0: one by one) */
		const char *want = getenv("KEYWARD_CA_BATCH");
		char label[CA_NAME_MAX + 8];
		unsigned hash_len = 0;

		snprintf(label, sizeof label, "ocsp-%s", sv->file);
		if ((!want || strcmp(want, "0")) &&
		    (sv->sc.signer_ca ? ca_batch_signer_open(&sv->ca->conf, sv->ca->pub, &sv->batch)
				      : ca_batch_signer_open_label(&sv->ca->conf, label, sv->signer_pub, &sv->batch)))
			goto out;
		if (sv->batch && ca_batch_algorithm(sv->batch, sv->signer.md, &sv->sig_alg))
			goto out;
		if (!X509_pubkey_digest(sv->signer.cert, EVP_sha1(), sv->signer_key_hash, &hash_len) ||
		    hash_len != sizeof sv->signer_key_hash) {
			ca_error("cannot hash the OCSP signer's key");
			goto out;
		}
		if (sv->batch)
			kw_log(KW_LOG_INFO, "keyward-ca serve: pre-signing %d answers per HSM round trip",
			       CA_SIGN_BATCH);
	}
	pthread_mutex_init(&sv->q.mu, NULL);
	pthread_cond_init(&sv->q.work, NULL);
	sv->q.tail = &sv->q.head;
	if (sv->batch && pthread_create(&sv->q.tid, NULL, serve_signq_main, sv) == 0)
		sv->q.started = true;

	/* ACME and CMP write (orders, nonces, requests): not on a read-only responder */
	if (!sv->sc.read_only && apps_open(sv))
		goto out;

	/*
	 * The CRLs that are due, published before the port opens: a client
	 * that follows a CDP URL the moment serve answers must not get a 404
	 * because the maint thread has not run yet.
	 */
	serve_maint_publish(sv);

	/* the signals are taken by sigwait below, in no other thread */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, sv->tls.key};
	tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, sv->tls.cert};
	tls_opts[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	d = MHD_start_daemon(
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) |
			(sv->tls.on ? MHD_USE_TLS : 0),
		0, NULL, NULL, serve_http_handle, sv, MHD_OPTION_EXTERNAL_LOGGER, serve_http_log, sv,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, sv->sc.threads,
		MHD_OPTION_CONNECTION_LIMIT, sv->sc.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		sv->sc.per_address, MHD_OPTION_CONNECTION_TIMEOUT, sv->sc.timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)(32 * 1024),
		/* no SO_REUSEPORT: a second responder on a busy port must fail, not share it with another CA's */
		MHD_OPTION_NOTIFY_COMPLETED, serve_http_completed, sv, MHD_OPTION_ARRAY,
		sv->tls.on ? tls_opts : tls_opts + 2, MHD_OPTION_END);
	if (!d) {
		ca_error("cannot listen on %s: %s", sv->sc.listen, strerror(errno));
		goto out;
	}
	if (pthread_create(&presign, NULL, serve_presign_main, sv) == 0)
		presign_started = true;
	if (pthread_create(&maint, NULL, serve_maint_main, sv) == 0)
		maint_started = true;
	if (!presign_started || !maint_started) {
		ca_error("cannot start threads");
		goto stop;
	}
	kw_log(KW_LOG_INFO, "keyward-ca serve: CA \"%s\" on %s://%s/ (OCSP signed by %s)%s", sv->ca->conf.name,
	       sv->tls.on ? "https" : "http", sv->sc.listen,
	       sv->sc.signer_ca ? "the CA key" : "a delegated certificate",
	       sv->sc.read_only ? "; read-only: no CRLs published, no signer issued, no ACME or CMP" : "");
	sd_notifyf(0, "READY=1\nSTATUS=serving CA \"%s\" on %s", sv->ca->conf.name, sv->sc.listen);
	while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
		;
	sd_notify(0, "STOPPING=1");
	kw_log(KW_LOG_INFO, "keyward-ca serve: stopping (signal %d)", sig);
	rc = 0;
stop:
	pthread_mutex_lock(&sv->stop_lock);
	sv->stopping = true;
	pthread_cond_broadcast(&sv->stop_cond);
	pthread_mutex_unlock(&sv->stop_lock);
	MHD_stop_daemon(d);
	if (presign_started)
		pthread_join(presign, NULL);
	if (maint_started)
		pthread_join(maint, NULL);
out:
	server_free(sv);
	free(sv);
	return rc;
}
