/* keywardd.conf: the server's INI configuration, read over the defaults. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"

void kw_server_config_defaults(struct kw_server_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	snprintf(cfg->listen, sizeof cfg->listen, "127.0.0.1:%d", KW_DEFAULT_PORT);
	snprintf(cfg->admin_socket, sizeof cfg->admin_socket, "/run/keyward/admin.sock");
	snprintf(cfg->store, sizeof cfg->store, "sqlite:/var/lib/keyward/keystore.db");
	snprintf(cfg->tls_dir, sizeof cfg->tls_dir, "/var/lib/keyward/tls");
	snprintf(cfg->server_names, sizeof cfg->server_names, "localhost,127.0.0.1");
	cfg->max_connections = 256;
	cfg->max_unauthenticated = 256;
	cfg->max_unauthenticated_per_address = 64;
	cfg->admin_max_connections = 8;
	cfg->max_inflight = 32;
	cfg->idle_timeout = 300;
	cfg->read_timeout = 10;
	cfg->auth_timeout = 10;
	/* the seed's HSM: 100 failures in 300 s lock the credential for 300 s */
	cfg->lockout_failures = 100;
	cfg->lockout_window = 300;
	cfg->lockout_duration = 300;
	cfg->audit_failure_interval = 60;
	cfg->audit_max_records = 1000000;
	/* one host spraying setup passwords or partition names is slowed too */
	cfg->lockout_address_failures = 1000;
	snprintf(cfg->log_level, sizeof cfg->log_level, "info");
	cfg->rsa_min_bits = 2048;
	/* on by default: SSH's ssh-rsa and older peers still ask for SHA-1 signatures */
	cfg->sha1_signatures = true;
}

struct load_state {
	struct kw_server_config *cfg;
	const char *path;
	kw_rv rv;
};

static int parse_unsigned(const char *value, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(value, &end, 10);
	if (errno || end == value || *end || v > max || value[0] == '-')
		return 0;
	*out = (unsigned)v;
	return 1;
}

static int set_string(char *dst, size_t size, const char *value)
{
	if (strlen(value) >= size)
		return 0;
	memcpy(dst, value, strlen(value) + 1);
	return 1;
}

static int on_value(void *user, const char *section, const char *key, const char *value)
{
	struct load_state *st = user;
	struct kw_server_config *c = st->cfg;
	int ok = -1; /* -1: unknown key */
	unsigned long long big;
	char *end;

	if (st->rv)
		return 0;
#define STR(sec, k, field)                                                                         \
	if (strcmp(section, sec) == 0 && strcmp(key, k) == 0)                                      \
		ok = set_string(c->field, sizeof c->field, value);
#define NUM(sec, k, field, max)                                                                    \
	if (strcmp(section, sec) == 0 && strcmp(key, k) == 0)                                      \
		ok = parse_unsigned(value, max, &c->field);
	STR("server", "listen", listen)
	STR("server", "admin_socket", admin_socket)
	STR("server", "store", store)
	STR("server", "tls_dir", tls_dir)
	STR("server", "server_names", server_names)
	NUM("server", "workers", workers, 256)
	NUM("server", "slow_workers", slow_workers, 256)
	NUM("server", "max_connections", max_connections, 65536)
	NUM("server", "max_unauthenticated", max_unauthenticated, 65536)
	NUM("server", "max_unauthenticated_per_address", max_unauthenticated_per_address, 65536)
	NUM("server", "admin_max_connections", admin_max_connections, 1024)
	NUM("server", "auth_timeout", auth_timeout, 3600)
	NUM("server", "max_inflight", max_inflight, 1024)
	NUM("server", "idle_timeout", idle_timeout, 86400)
	NUM("server", "read_timeout", read_timeout, 3600)
	NUM("lockout", "max_failures", lockout_failures, 1000000)
	NUM("lockout", "max_failures_per_address", lockout_address_failures, 1000000)
	NUM("lockout", "window", lockout_window, 86400)
	NUM("lockout", "duration", lockout_duration, 86400 * 7)
	STR("log", "level", log_level)
	NUM("audit", "failure_interval", audit_failure_interval, 86400)
	STR("audit", "head_file", audit_head_file)
	STR("audit", "archive_dir", audit_archive_dir)
#undef STR
#undef NUM
	if ((strcmp(section, "server") == 0 && strcmp(key, "store_max_bytes") == 0) ||
	    (strcmp(section, "audit") == 0 && strcmp(key, "max_records") == 0)) {
		errno = 0;
		big = strtoull(value, &end, 10);
		ok = !(errno || end == value || *end || value[0] == '-');
		if (ok && strcmp(key, "max_records") == 0)
			c->audit_max_records = big;
		else if (ok)
			c->store_max_bytes = big;
	}
	if (strcmp(section, "policy") == 0 && strcmp(key, "rsa_min_bits") == 0)
		ok = parse_unsigned(value, 4096, &c->rsa_min_bits) &&
		     (c->rsa_min_bits == 2048 || c->rsa_min_bits == 3072 || c->rsa_min_bits == 4096);
	if (strcmp(section, "policy") == 0 && strcmp(key, "sha1_signatures") == 0) {
		ok = strcmp(value, "yes") == 0 || strcmp(value, "no") == 0;
		c->sha1_signatures = strcmp(value, "yes") == 0;
	}
	if (ok == -1) {
		st->rv = kw_error_set(KW_ERR_CONFIG, "%s: unknown setting [%s] %s", st->path, section, key);
		return 0;
	}
	if (ok == 0) {
		st->rv = kw_error_set(KW_ERR_CONFIG, "%s: bad value for [%s] %s: \"%s\"", st->path, section, key, value);
		return 0;
	}
	return 1;
}

kw_rv kw_server_config_parse(struct kw_server_config *cfg, const char *path, const char *text)
{
	struct load_state st = {cfg, path, KW_OK};
	enum kw_log_level level;
	int r = ini_parse_string(text, on_value, &st);

	if (st.rv)
		return st.rv;
	if (r < 0)
		return kw_error_set(KW_ERR_NO_MEMORY, "%s: out of memory while parsing", path);
	if (r > 0)
		return kw_error_set(KW_ERR_CONFIG, "%s:%d: syntax error", path, r);
	if (!kw_log_level_parse(cfg->log_level, &level))
		return kw_error_set(KW_ERR_CONFIG, "%s: [log] level must be error, warn, info or debug", path);
	if (cfg->max_inflight == 0 || cfg->max_connections == 0 || cfg->admin_max_connections == 0 ||
	    cfg->auth_timeout == 0)
		return kw_error_set(
			KW_ERR_CONFIG,
			"%s: max_inflight, max_connections, admin_max_connections and auth_timeout must be at "
			"least 1",
			path);
	return KW_OK;
}

kw_rv kw_server_config_load(struct kw_server_config *cfg, const char *path)
{
	FILE *f = fopen(path, "re");
	char *text;
	size_t len;
	kw_rv rv;

	if (!f)
		return kw_error_set(KW_ERR_CONFIG, "%s: cannot read: %s", path, strerror(errno));
	/* a configuration, not a stream: at most KW_SERVER_CONFIG_MAX bytes, read whole */
	text = malloc(KW_SERVER_CONFIG_MAX + 1);
	len = text ? fread(text, 1, KW_SERVER_CONFIG_MAX + 1, f) : 0;
	if (!text || ferror(f) || len > KW_SERVER_CONFIG_MAX) {
		rv = !text	 ? kw_error_set(KW_ERR_NO_MEMORY, "%s: out of memory", path)
		     : ferror(f) ? kw_error_set(KW_ERR_CONFIG, "%s: cannot read: %s", path, strerror(errno))
				 : kw_error_set(KW_ERR_CONFIG, "%s: larger than %d bytes: not a configuration", path,
						KW_SERVER_CONFIG_MAX);
		fclose(f);
		free(text);
		return rv;
	}
	fclose(f);
	text[len] = '\0';
	rv = memchr(text, '\0', len) ? kw_error_set(KW_ERR_CONFIG, "%s: holds a NUL byte: not a configuration", path)
				     : kw_server_config_parse(cfg, path, text);
	free(text);
	return rv;
}
