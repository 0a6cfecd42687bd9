/*
 * keywardd's life from configuration to listening and back: the store,
 * TLS, lockout, key cache, pools and event loops made in order, and freed
 * in reverse. main.c and the fuzz harnesses share it, so what a harness
 * drives is the server keywardd runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "daemon/daemon.h"

kw_rv kw_dev_config(struct kw_server_config *cfg, const char *store)
{
	const char *dir = cfg->dev_dir;
	static const char *const old[] = {"keystore.db", "keystore.db-wal", "keystore.db-shm", "client.conf"};
	char path[600];
	const char *port;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return kw_error_set(KW_ERR_CONFIG, "--dev: cannot create %s: %s", dir, strerror(errno));
	snprintf(cfg->tls_dir, sizeof cfg->tls_dir, "%s/tls", dir);
	snprintf(cfg->admin_socket, sizeof cfg->admin_socket, "%s/admin.sock", dir);
	if (store && kw_keystore_url_is_postgres(store)) {
		/* the store outlives this node: nothing in DIR is removed, a node that finds DIR made joins */
		snprintf(cfg->store, sizeof cfg->store, "%s", store);
		snprintf(path, sizeof path, "%s/" KW_DEV_PASSPHRASE_FILE, dir);
		cfg->dev_join = access(path, F_OK) == 0;
		if (cfg->dev_join) {
			port = strrchr(cfg->listen, ':');
			if (port && atoi(port + 1) > 0)
				snprintf(cfg->admin_socket, sizeof cfg->admin_socket, "%s/admin-%d.sock", dir,
					 atoi(port + 1));
			else
				snprintf(cfg->admin_socket, sizeof cfg->admin_socket, "%s/admin-%ld.sock", dir,
					 (long)getpid());
		}
		return KW_OK;
	}
	if (store)
		return kw_error_set(
			KW_ERR_CONFIG,
			"--dev: --store takes a postgresql:// URL, not \"%s\" (without --store the store is "
			"SQLite in DIR)",
			store);
	for (unsigned i = 0; i < sizeof old / sizeof old[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, old[i]);
		unlink(path);
	}
	snprintf(path, sizeof path, "%s/" KW_DEV_PASSPHRASE_FILE, dir);
	unlink(path);
	snprintf(cfg->store, sizeof cfg->store, "sqlite:%s/keystore.db", dir);
	return KW_OK;
}

static unsigned cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

kw_rv kw_server_setup(struct kw_server *srv)
{
	struct kw_server_config *cfg = &srv->cfg;
	kw_rv rv;

	if ((rv = kw_keystore_open(cfg->store, cfg->store_max_bytes, &srv->ks)))
		return rv;
	if ((rv = kw_tls_load_or_create(&srv->tls, cfg->tls_dir, cfg->server_names)))
		return rv;
	if ((rv = kw_lockout_new(cfg->lockout_failures, cfg->lockout_address_failures, cfg->lockout_window,
				 cfg->lockout_duration, &srv->lockout)) ||
	    (rv = kw_keycache_new(&srv->keys)) || (rv = kw_usage_new(cfg, &srv->usage)))
		return rv;
	if ((rv = kw_pool_new("slow", cfg->slow_workers ? cfg->slow_workers : cores(), &srv->slow)))
		return rv;
	if (cfg->dev_dir[0] && (rv = kw_dev_prepare(srv)))
		return rv;
	if ((rv = kw_server_start(srv, cfg->workers ? cfg->workers : cores())))
		return rv;
	if (cfg->dev_dir[0] && (rv = kw_dev_write_client_conf(srv)))
		return rv;
	return KW_OK;
}

void kw_server_teardown(struct kw_server *srv)
{
	kw_server_stop(srv); /* also drains and stops the pool */
	kw_pool_free(srv->slow);
	if (srv->ks) {
		kw_usage_flush_all(srv->usage, srv->ks);
		kw_keystore_audit(srv->ks, "", "keywardd", "keywardd.stop", "clean shutdown");
	}
	kw_usage_free(srv->usage);
	kw_keycache_free(srv->keys);
	kw_lockout_free(srv->lockout);
	kw_tls_cleanup(&srv->tls);
	kw_keystore_free(srv->ks);
}
