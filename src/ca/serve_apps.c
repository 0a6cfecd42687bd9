/*
 * The applications keyward-ca serve mounts beside OCSP, CRL and AIA
 * (serve_app.h), in the order their prefixes are tried.
 */
#include <stddef.h>

#include "ca/acme.h"
#include "ca/cmp.h"
#include "ca/serve_app.h"

const struct serve_app *const serve_apps[] = {
	&acme_app,
	&cmp_app,
	NULL,
};
