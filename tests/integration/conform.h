/*
 * The conformance runner's checks (conform_checks.c), run by
 * conform_runner.c on any PKCS#11 module: keyward-pkcs11.so and, in the
 * same run, SoftHSM2 as the comparison.
 *
 * A check drives one token through one behaviour PKCS#11 (or, for the
 * extraction attacks, Tookan's and Clulow's papers) asks of an HSM, and
 * says pass, fail, or "policy": the module refused with a code that
 * keyward documents as a deliberate refusal (docs/pkcs11.md, "Refused by
 * policy"), such as a weak algorithm. The runner counts them per area.
 */
#ifndef KW_CONFORM_H
#define KW_CONFORM_H

#include <stddef.h>

#include <p11-kit/pkcs11.h>

enum cr_outcome { CR_PASS, CR_FAIL, CR_POLICY };

/* One token under test: a session on it, logged in (after the login area), and what the checks made. */
struct cr_ctx {
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
	const char *pin;
	CK_SESSION_HANDLE s;
	char why[300]; /* a failed or refused check's reason */
	/* made by earlier checks, used by later ones (0: not made) */
	CK_OBJECT_HANDLE rsa_pub, rsa_priv, ec_pub, ec_priv, ec2_pub, ec2_priv, wrap_rsa_pub, wrap_rsa_priv;
	CK_OBJECT_HANDLE kek, data_key, fixed_key;
	/* every token object made, destroyed at the end */
	CK_OBJECT_HANDLE made[64];
	size_t n_made;
};

struct cr_check {
	const char *area;
	const char *name;
	enum cr_outcome (*run)(struct cr_ctx *c);
};

/* The checks, in the order they run (areas together; later checks use earlier checks' keys). */
extern const struct cr_check cr_checks[];
extern const size_t cr_n_checks;
/* The areas, in the order the table shows them. */
extern const char *const cr_areas[];
extern const size_t cr_n_areas;

/* Destroys every object the checks made on the token. */
void cr_cleanup(struct cr_ctx *c);

#endif
