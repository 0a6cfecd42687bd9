/*
 * keyward-ca serve: the CA on the network (the library's ca_serve).
 */
#include "ca/cli/cli.h"

int cmd_serve(const struct opts *o)
{
	return ca_serve(o->dir, o->listen);
}
