/*
 * acme.conf in the CA directory ([acme] section; every key optional):
 * which templates ACME serves (none by default: enrollment over the
 * network is something an operator switches on per template), which need
 * external account binding, lifetimes and limits, and the settings that
 * only tests use (a resolver that maps every name to one address, targets
 * on loopback allowed). A file of its own beside serve.conf, so that
 * serve's parser and ACME's change apart.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "ca/acme.h"
#include "ca/ini.h"

bool acme_listed(const char *list, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = list; *p;) {
		size_t n;

		p += strspn(p, " ,\t");
		n = strcspn(p, " ,\t");
		if (n && n == len && !strncmp(p, name, n))
			return true;
		p += n;
	}
	return false;
}

int acme_conf_set(struct acme_conf *ac, const char *key, const char *v)
{
	if (!strcmp(key, "templates"))
		return ca_text_value(v, ac->templates, sizeof ac->templates);
	if (!strcmp(key, "eab_templates"))
		return ca_text_value(v, ac->eab_templates, sizeof ac->eab_templates);
	if (!strcmp(key, "order_lifetime"))
		return ca_uint_value(v, 1, 30 * 86400, &ac->order_lifetime);
	if (!strcmp(key, "nonce_lifetime"))
		return ca_uint_value(v, 10, 86400, &ac->nonce_lifetime);
	if (!strcmp(key, "http01_port"))
		return ca_uint_value(v, 1, 65535, &ac->http01_port);
	if (!strcmp(key, "fetch_timeout"))
		return ca_uint_value(v, 1, 60, &ac->fetch_timeout);
	if (!strcmp(key, "hook_timeout"))
		return ca_uint_value(v, 1, 600, &ac->hook_timeout);
	if (!strcmp(key, "accounts_per_hour"))
		return ca_uint_value(v, 1, 1000000, &ac->accounts_per_hour);
	if (!strcmp(key, "pending_orders"))
		return ca_uint_value(v, 1, 1000000, &ac->pending_orders);
	if (!strcmp(key, "validators"))
		return ca_uint_value(v, 1, 64, &ac->validators);
	if (!strcmp(key, "validation_queue"))
		return ca_uint_value(v, 1, 100000, &ac->queue);
	if (!strcmp(key, "dns01_hook")) {
		if (*v && *v != '/')
			return ca_error("an absolute path (the hook runs without a shell or PATH search)");
		return ca_text_value(v, ac->dns01_hook, sizeof ac->dns01_hook);
	}
	if (!strcmp(key, "resolve")) {
		unsigned char a[16];

		if (*v && inet_pton(AF_INET, v, a) != 1 && inet_pton(AF_INET6, v, a) != 1)
			return ca_error("an IPv4 or IPv6 address");
		return ca_text_value(v, ac->resolve, sizeof ac->resolve);
	}
	if (!strcmp(key, "allow_loopback"))
		return ca_bool_value(v, &ac->allow_loopback);
	return ca_error("unknown key (templates, eab_templates, order_lifetime, nonce_lifetime, http01_port, "
			"fetch_timeout, dns01_hook, hook_timeout, validators, validation_queue, accounts_per_hour, pending_orders, resolve, allow_loopback)");
}

static int conf_set(void *ac, const char *key, const char *value)
{
	return acme_conf_set(ac, key, value);
}

int acme_conf_load(struct acme_conf *ac, const char *dir)
{
	char path[CA_PATH_MAX + 16];

	memset(ac, 0, sizeof *ac);
	ac->order_lifetime = 7 * 86400;
	ac->nonce_lifetime = 3600;
	ac->http01_port = 80;
	ac->fetch_timeout = 10;
	ac->hook_timeout = 60;
	ac->validators = 2;
	ac->accounts_per_hour = 20;
	ac->pending_orders = 300;
	ac->queue = 256;
	snprintf(path, sizeof path, "%s/acme.conf", dir);
	return ca_ini_load(path, "acme", conf_set, ac);
}
