/*
 * keyward-ca: the CA certificate in publish/ (publish.h), written with the
 * CRLs so that the AIA caIssuers URL names a file that is there.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/x509.h>

#include "ca/publish.h"

int ca_publish_aia(const struct ca_conf *c, X509 *ca)
{
	char file[CA_NAME_MAX + 1], dir[CA_PATH_MAX + 16], path[CA_PATH_MAX + 300], *old;
	unsigned char *der = NULL;
	size_t old_len = 0;
	int len, rc;

	ca_file_name(c->name, file, sizeof file);
	ca_path(c, "publish", dir, sizeof dir);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return ca_error("cannot create %s: %s", dir, strerror(errno));
	snprintf(path, sizeof path, "%s/%s.crt", dir, file);
	if ((len = i2d_X509(ca, &der)) <= 0)
		return ca_error("cannot encode the CA certificate");
	old = ca_read_file(path, 1 << 20, &old_len);
	if (old && old_len == (size_t)len && !memcmp(old, der, old_len))
		rc = 0;
	else
		rc = ca_write_atomic(path, der, (size_t)len, 0644); /* public, as the CRLs */
	free(old);
	OPENSSL_free(der);
	return rc;
}
