/*
 * The weak-algorithm policy of keywardd.conf's [policy] section: which RSA
 * sizes the HSM makes, takes in and wraps keys under, and whether it signs
 * SHA-1 digests.
 * The HSM enforces it, whatever client asks (the PKCS#11 module, a program
 * on libkeyward, a raw peer): a refusal names the setting that made it.
 *
 * What no setting allows is not here: keyward deliberately has no DES, no
 * 3DES and no RSA below 2048 bits, so there is nothing to switch on
 * (docs/pkcs11.md, "Refused by policy").
 */
#include "common/error.h"
#include "daemon/daemon.h"

kw_rv kw_policy_rsa_bits(const struct kw_server_config *cfg, const char *what, unsigned bits)
{
	if (bits >= cfg->rsa_min_bits)
		return KW_OK;
	return kw_error_set(KW_ERR_KEY_SIZE,
			    "%s: an RSA key of %u bits is refused by policy: keywardd.conf [policy] rsa_min_bits = %u", what,
			    bits, cfg->rsa_min_bits);
}

kw_rv kw_policy_sign_hash(const struct kw_server_config *cfg, Keyward__Hash hash)
{
	if (hash != KEYWARD__HASH__SHA1 || cfg->sha1_signatures)
		return KW_OK;
	return kw_error_set(KW_ERR_MECHANISM, "sign: a signature over a SHA-1 digest is refused by policy: keywardd.conf "
					      "[policy] sha1_signatures = no (sign with SHA-256 or longer)");
}
