/*
 * keyward-ca: what publish/ holds besides the CRLs: the CA certificate
 * (DER) at the name the AIA caIssuers URL of every issued certificate
 * names, http://SERVER/ca/FILE.crt, for keyward-ca serve or any web server.
 */
#ifndef KW_CA_PUBLISH_H
#define KW_CA_PUBLISH_H

#include "ca/ca.h"

/* Writes publish/FILE.crt (DER, 0644) atomically if it is not already ca. */
int ca_publish_aia(const struct ca_conf *c, X509 *ca);

#endif
