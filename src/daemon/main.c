/*
 * keywardd: the keyward network HSM.
 *
 *   keywardd [--config FILE] [--listen HOST:PORT] [--log-level LEVEL]
 *   keywardd --dev DIR [--store postgresql://...] [--listen HOST:PORT]
 *
 * Runs in the foreground, logs to stderr, stops cleanly on SIGTERM/SIGINT.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <systemd/sd-daemon.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"

#define DEFAULT_CONFIG "/etc/keyward/keywardd.conf"
#define SECURE_HEAP (8u * 1024 * 1024)

static void usage(FILE *out)
{
	fprintf(out, "usage: keywardd [--config FILE] [--store URL] [--listen HOST:PORT] [--log-level "
		     "error|warn|info|debug]\n"
		     "       keywardd --dev DIR [--store postgresql://...] [--listen HOST:PORT]\n"
		     "       keywardd --version\n"
		     "\n"
		     "  --config FILE    server configuration (default " DEFAULT_CONFIG " if it exists)\n"
		     "  --dev DIR        development HSM: fresh store in DIR, unlocked, partition \"dev\",\n"
		     "                   client configuration in DIR/client.conf\n"
		     "  --store URL      the keystore (overrides store= of the configuration); with --dev a\n"
		     "                   postgresql:// URL: the dev store is there, and a second --dev on the\n"
		     "                   same DIR and URL joins it as another node\n"
		     "  --listen H:P     address to listen on (port 0: any free port)\n"
		     "  --log-level L    error, warn, info (default) or debug; KEYWARD_DEBUG=wire,tls,store,pool\n"
		     "  --allow-core-dumps  let a crash dump core (debugging only: the core holds unsealed keys)\n"
		     "See keywardd(8).\n");
}

static void print_banner(const struct kw_server *srv)
{
	const struct kw_server_config *cfg = &srv->cfg;

	if (!cfg->dev_dir[0]) {
		kw_log(KW_LOG_INFO, "keywardd %s listening on %s (admin socket %s, store %s, %s)", KEYWARD_VERSION,
		       srv->bound, cfg->admin_socket, cfg->store,
		       !kw_keystore_initialized(srv->ks) ? "not initialized: run keyward-admin init"
		       : kw_keystore_locked(srv->ks)     ? "locked: run keyward-admin unlock"
							 : "unlocked");
		return;
	}
	printf("keywardd %s: development HSM listening on %s (unlocked; store %s)\n"
	       "  %s In another shell:\n"
	       "    export KEYWARD_CONF=%s/client.conf KEYWARD_ADMIN_SOCKET=%s\n"
	       "    keyward-admin status\n",
	       KEYWARD_VERSION, srv->bound, cfg->store,
	       cfg->dev_join ? "A further node of the development store of that directory."
	       : kw_keystore_shared(srv->ks)
		       ? "A shared development store: another keywardd --dev on this directory and store joins it."
		       : "Its store is thrown away at the next start.",
	       cfg->dev_dir, cfg->admin_socket);
	fflush(stdout);
}

/*
 * A core dump of keywardd holds unsealed keys and the master key: none is
 * written (RLIMIT_CORE 0), and the process is not dumpable (no core, no
 * ptrace by other processes of the same user, /proc/PID/mem closed to
 * them). --allow-core-dumps is for debugging a development HSM only.
 */
static kw_rv forbid_core_dumps(bool allow)
{
	struct rlimit none = {0, 0};

	if (allow) {
		kw_log(KW_LOG_WARN,
		       "--allow-core-dumps: a crash writes unsealed keys to disk; never use this in production");
		return KW_OK;
	}
	if (setrlimit(RLIMIT_CORE, &none) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return kw_error_set(KW_ERR_GENERAL, "cannot turn core dumps off: %s", strerror(errno));
	return KW_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"dev", required_argument, NULL, 'd'},
					     {"listen", required_argument, NULL, 'l'},
					     {"store", required_argument, NULL, 's'},
					     {"log-level", required_argument, NULL, 'L'},
					     {"allow-core-dumps", no_argument, NULL, 'C'},
					     {"version", no_argument, NULL, 'V'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	struct kw_server srv;
	const char *config = NULL, *listen = NULL, *level = NULL, *dev = NULL, *store = NULL;
	bool allow_core_dumps = false;
	kw_rv rv;
	int c;

	memset(&srv, 0, sizeof srv);
	while ((c = getopt_long(argc, argv, "c:d:l:s:L:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'd': dev = optarg; break;
		case 'l': listen = optarg; break;
		case 's':
			store = optarg;
			break;
		case 'L': level = optarg; break;
		case 'C':
			allow_core_dumps = true;
			break;
		case 'V': printf("keywardd %s\n", KEYWARD_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "keywardd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	kw_server_config_defaults(&srv.cfg);
	if (!config && !dev && access(DEFAULT_CONFIG, F_OK) == 0)
		config = DEFAULT_CONFIG;
	if (config && (rv = kw_server_config_load(&srv.cfg, config))) {
		fprintf(stderr, "keywardd: %s\n", kw_last_error());
		return 2;
	}
	if (listen)
		snprintf(srv.cfg.listen, sizeof srv.cfg.listen, "%s", listen);
	if (dev) {
		snprintf(srv.cfg.dev_dir, sizeof srv.cfg.dev_dir, "%s", dev);
		if ((rv = kw_dev_config(&srv.cfg, store))) {
			fprintf(stderr, "keywardd: %s\n", kw_last_error());
			return 2;
		}
	} else if (store) {
		snprintf(srv.cfg.store, sizeof srv.cfg.store, "%s", store);
	}
	if (level && !kw_log_level_parse(level, &kw_log_threshold)) {
		fprintf(stderr, "keywardd: --log-level must be error, warn, info or debug\n");
		return 2;
	}
	kw_log_init(level ? level : srv.cfg.log_level);
	srv.cfg.allow_core_dumps = allow_core_dumps;
	if ((rv = forbid_core_dumps(allow_core_dumps))) {
		kw_log(KW_LOG_ERROR, "%s", kw_last_error());
		return 1;
	}
	/* unsealed keys and the master key live in the secure heap where the
	 * memory-lock limit allows one; without it they are still wiped on free */
	if (!CRYPTO_secure_malloc_init(SECURE_HEAP, 32))
		kw_log(KW_LOG_WARN, "no secure heap (locked-memory limit too low?): key material stays in ordinary "
				    "memory, still wiped after use");
	kw_server_block_signals();
	rv = kw_server_setup(&srv);
	if (rv) {
		kw_log(KW_LOG_ERROR, "%s", kw_last_error()[0] ? kw_last_error() : kw_rv_text(rv));
		kw_server_teardown(&srv);
		return 1;
	}
	kw_keystore_audit(srv.ks, "", "keywardd", "keywardd.start", srv.bound);
	print_banner(&srv);
	/* Type=notify: systemd starts what needs the HSM only now (a no-op outside systemd) */
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s, %s", srv.bound,
		   !kw_keystore_initialized(srv.ks) ? "not initialized: run keyward-admin init"
		   : kw_keystore_locked(srv.ks)     ? "locked: run keyward-admin unlock"
						    : "unlocked");
	rv = kw_server_run(&srv);
	sd_notify(0, "STOPPING=1");
	kw_server_teardown(&srv);
	kw_log(KW_LOG_INFO, "keywardd stopped");
	return rv ? 1 : 0;
}
