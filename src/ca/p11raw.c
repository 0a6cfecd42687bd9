/*
 * keyward-ca: a session on the CA's token through the module's own
 * function list, for what libp11 does not do: key generation (libp11 makes
 * no EC keys) and batch signing (a vendor interface). When libp11 has
 * loaded the module already (the same file, through the key filter), the
 * module is shared: its C_Initialize answers "already initialized", its
 * login is the application's, and it is finalized by whoever initialized it.
 */
#include <dlfcn.h>
#include <string.h>

#include "ca/p11raw.h"

int ca_p11_fail(const char *what, CK_RV rv)
{
	return ca_error("the PKCS#11 module: %s failed: CKR 0x%lx", what, (unsigned long)rv);
}

int ca_p11_open(const struct ca_conf *c, struct ca_p11 *g, const char *pin)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64;
	CK_RV rv;

	if (!(g->dl = dlopen(ca_host_module(c), RTLD_NOW | RTLD_LOCAL)))
		return ca_error("cannot load the PKCS#11 module %s: %s", ca_host_module(c), dlerror());
	*(void **)&get = dlsym(g->dl, "C_GetFunctionList");
	if (!get || get(&g->f) != CKR_OK)
		return ca_error("%s is not a PKCS#11 module", ca_host_module(c));
	rv = g->f->C_Initialize(NULL);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
		return ca_p11_fail("C_Initialize", rv);
	g->initialized = rv == CKR_OK;
	if ((rv = g->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
		return ca_p11_fail("C_GetSlotList", rv);
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO info;
		char label[33];
		size_t len = sizeof info.label;

		if (g->f->C_GetTokenInfo(slots[i], &info) != CKR_OK)
			continue;
		while (len && info.label[len - 1] == ' ')
			len--;
		memcpy(label, info.label, len);
		label[len] = '\0';
		if (strcmp(label, c->token))
			continue;
		if ((rv = g->f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &g->s)) !=
		    CKR_OK)
			return ca_p11_fail("C_OpenSession", rv);
		g->open = true;
		if (pin && *pin) {
			rv = g->f->C_Login(g->s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
			if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
				return ca_p11_fail("C_Login", rv);
		}
		return 0;
	}
	return ca_error("%s: no token \"%s\"", ca_host_module(c), c->token);
}

void ca_p11_close(struct ca_p11 *g)
{
	if (g->open)
		g->f->C_CloseSession(g->s);
	if (g->initialized)
		g->f->C_Finalize(NULL);
	if (g->dl)
		dlclose(g->dl);
	memset(g, 0, sizeof *g);
}
