/*
 * keyward-ca serve: serve.conf ([serve] section, serve.h) and the listen
 * address, HOST:PORT or [V6]:PORT.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/ini.h"
#include "ca/serve_internal.h"

int serve_conf_set(struct serve_conf *sc, const char *key, const char *v)
{
	unsigned hours;

	if (!strcmp(key, "listen")) {
		if (strlen(v) >= sizeof sc->listen)
			return ca_error("too long");
		snprintf(sc->listen, sizeof sc->listen, "%s", v);
		return 0;
	}
	if (!strcmp(key, "tls_certificate") || !strcmp(key, "tls_key")) {
		char *to = key[4] == 'c' ? sc->tls_certificate : sc->tls_key;

		if (strlen(v) >= CA_PATH_MAX)
			return ca_error("too long");
		snprintf(to, CA_PATH_MAX, "%s", v);
		return 0;
	}
	if (!strcmp(key, "ocsp_signer")) {
		if (strcmp(v, "ca") && strcmp(v, "delegated"))
			return ca_error("ca or delegated");
		sc->signer_ca = !strcmp(v, "ca");
		return 0;
	}
	if (!strcmp(key, "ocsp_signer_key_type")) {
		if (!ca_key_type_known(v))
			return ca_error(CA_KEY_TYPES);
		snprintf(sc->signer_key_type, sizeof sc->signer_key_type, "%s", v);
		return 0;
	}
	if (!strcmp(key, "ocsp_validity_hours")) {
		if (ca_uint_value(v, 1, 24 * 31, &hours))
			return -1;
		sc->validity_seconds = hours * 3600;
		return 0;
	}
	if (!strcmp(key, "ocsp_max_age"))
		return ca_uint_value(v, 0, 31 * 86400, &sc->max_age);
	if (!strcmp(key, "ocsp_signer_renew_percent"))
		return ca_uint_value(v, 1, 90, &sc->renew_percent);
	if (!strcmp(key, "max_connections"))
		return ca_uint_value(v, 1, 100000, &sc->max_connections);
	if (!strcmp(key, "per_address_connections"))
		return ca_uint_value(v, 1, 100000, &sc->per_address);
	if (!strcmp(key, "connection_timeout"))
		return ca_uint_value(v, 1, 3600, &sc->timeout);
	if (!strcmp(key, "threads"))
		return ca_uint_value(v, 1, 256, &sc->threads);
	if (!strcmp(key, "presign_batch"))
		return ca_uint_value(v, 1, 100000, &sc->presign_batch);
	if (!strcmp(key, "crl_republish_seconds"))
		return ca_uint_value(v, 0, 366 * 86400, &sc->crl_republish);
	if (!strcmp(key, "delta_republish_seconds"))
		return ca_uint_value(v, 0, 366 * 86400, &sc->delta_republish);
	if (!strcmp(key, "ocsp_signer_validity_minutes")) {
		unsigned minutes;

		if (ca_uint_value(v, 0, 366 * 1440, &minutes))
			return -1;
		sc->signer_validity = minutes * 60;
		return 0;
	}
	if (!strcmp(key, "crl_schedule")) {
		return ca_bool_value(v, &sc->crl_schedule);
	}
	if (!strcmp(key, "read_only"))
		return ca_bool_value(v, &sc->read_only);
	return ca_error("unknown key (listen, ocsp_signer, ocsp_signer_key_type, ocsp_validity_hours, ocsp_max_age, "
			"ocsp_signer_renew_percent, max_connections, per_address_connections, connection_timeout, "
			"threads, presign_batch, crl_schedule, crl_republish_seconds, delta_republish_seconds, "
			"ocsp_signer_validity_minutes, tls_certificate, tls_key, read_only)");
}

static int conf_set(void *sc, const char *key, const char *value)
{
	return serve_conf_set(sc, key, value);
}

/* A relative file name in serve.conf is the CA directory's (serve may run from anywhere). */
static int absolute(char *path, const char *dir)
{
	char full[CA_PATH_MAX];

	if (!path[0] || path[0] == '/')
		return 0;
	if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, path) >= sizeof full)
		return ca_error("%s/%s: too long", dir, path);
	memcpy(path, full, sizeof full);
	return 0;
}

int serve_conf_load(struct serve_conf *sc, const char *dir)
{
	char path[CA_PATH_MAX + 16];

	memset(sc, 0, sizeof *sc);
	snprintf(sc->listen, sizeof sc->listen, "127.0.0.1:8080");
	sc->validity_seconds = 24 * 3600;
	sc->max_age = 3600;
	sc->renew_percent = 30;
	sc->max_connections = 1024;
	sc->per_address = 64;
	sc->timeout = 10;
	sc->threads = 4;
	sc->presign_batch = 256;
	sc->crl_schedule = true;
	snprintf(path, sizeof path, "%s/serve.conf", dir);
	if (ca_ini_load(path, "serve", conf_set, sc))
		return -1;
	return absolute(sc->tls_certificate, dir) || absolute(sc->tls_key, dir) ? -1 : 0;
}

int serve_open_ca(const char *dir, const struct serve_conf *sc, struct ca **ca)
{
	int w;

	/* the configuration, the database, the chain and the key; held open (and so locked shared) while serving */
	if (ca_open(dir, CA_OPEN_CERT | CA_OPEN_KEY | (sc->read_only ? CA_OPEN_READ_ONLY : 0), ca))
		return -1;
	if (sc->read_only)
		return 0;
	/* a writing serve publishes CRLs and issues its signer: on a database that takes no writes, it would fail later
	 */
	if ((w = ca_db_writable((*ca)->db)) != 0) {
		if (w > 0)
			ca_error("%s; serve publishes CRLs and renews its OCSP signer there: point ca.conf at the "
				 "primary, "
				 "or set read_only = true in serve.conf for a responder that only answers",
				 ca_last_error());
		ca_close(*ca);
		*ca = NULL;
		return -1;
	}
	return 0;
}

/* HOST:PORT or [V6]:PORT into addr. */
int serve_listen_addr(const char *text, struct sockaddr_storage *addr)
{
	char host[256];
	const char *colon = strrchr(text, ':');
	struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
	unsigned port;

	memset(addr, 0, sizeof *addr);
	if (!colon || colon == text || (size_t)(colon - text) >= sizeof host ||
	    ca_uint_value(colon + 1, 1, 65535, &port))
		return ca_usage_error("listen \"%s\": HOST:PORT or [IPV6]:PORT, HOST an address", text);
	snprintf(host, sizeof host, "%.*s", (int)(colon - text), text);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
		if (inet_pton(AF_INET6, host, &v6->sin6_addr) != 1)
			return ca_usage_error("listen \"%s\": not an IPv6 address", text);
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((unsigned short)port);
		return 0;
	}
	if (!strcmp(host, "localhost"))
		snprintf(host, sizeof host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &v4->sin_addr) != 1)
		return ca_usage_error("listen \"%s\": not an IPv4 address", text);
	v4->sin_family = AF_INET;
	v4->sin_port = htons((unsigned short)port);
	return 0;
}
