/*
 * The key operations: each API function checks its arguments, fills one
 * Request (proto/keyward.proto), runs it through kw_client_call (pool,
 * failover, retry), and copies the answer out. The C enums carry the same
 * numbers as the wire's, so they are passed through after a range check.
 */
#include "client/client.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "common/frame.h"

/* GenerateRandom asks in pieces well below the frame limit. */
#define RANDOM_CHUNK (64u * 1024u)

static kw_rv check_str(const char *fn, const char *what, const char *s, size_t max)
{
	size_t len;

	if (!s || !*s)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: %s is missing", fn, what);
	len = strlen(s);
	if (len > max)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: %s is %zu bytes long, at most %zu allowed", fn, what, len,
				    max);
	return KW_OK;
}

static kw_rv check_opt_str(const char *fn, const char *what, const char *s, size_t max)
{
	if (!s || !*s)
		return KW_OK;
	return check_str(fn, what, s, max);
}

/* By id when non-zero (owner and name ignored), else by owner + name + class. */
static kw_rv make_ref(const char *fn, uint64_t id, const char *owner, const char *name, enum kw_class cls,
		      Keyward__ObjectRef *ref)
{
	kw_rv rv;

	if ((unsigned)cls > KW_CLASS_SECRET_KEY)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: unknown object class %d", fn, (int)cls);
	ref->cls = (Keyward__ObjectClass)cls;
	if (id) {
		ref->id = id;
		return KW_OK;
	}
	rv = check_str(fn, "the owner (or a non-zero id)", owner, KW_OWNER_MAX);
	if (!rv)
		rv = check_str(fn, "the name (or a non-zero id)", name, KW_NAME_MAX);
	if (rv)
		return rv;
	ref->owner = (char *)owner;
	ref->name = (char *)name;
	return KW_OK;
}

static kw_rv check_hash(const char *fn, enum kw_hash h)
{
	if ((unsigned)h > KW_HASH_SHA512)
		return kw_error_set(KW_ERR_MECHANISM_PARAM, "%s: unknown hash %d", fn, (int)h);
	return KW_OK;
}

static kw_rv check_mech(const char *fn, const struct kw_mechanism *m)
{
	kw_rv rv;

	if (!m)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: no mechanism given", fn);
	if (m->mech == KW_MECH_NONE || ((unsigned)m->mech > KW_MECH_AES_KEY_WRAP_PAD && m->mech != KW_MECH_HMAC &&
					m->mech != KW_MECH_ECDH))
		return kw_error_set(KW_ERR_MECHANISM, "%s: unknown mechanism %d", fn, (int)m->mech);
	rv = check_hash(fn, m->hash);
	if (!rv)
		rv = check_hash(fn, m->mgf1_hash);
	if (!rv && m->label_len && !m->label)
		rv = kw_error_set(KW_ERR_ARGUMENTS, "%s: label_len is %zu but label is NULL", fn, m->label_len);
	return rv;
}

kw_rv kw_mechanism_check(const char *fn, const struct kw_mechanism *m)
{
	return check_mech(fn, m);
}

static kw_rv check_client(const char *fn, kw_client *c)
{
	if (!c)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: client is NULL", fn);
	return KW_OK;
}

static kw_rv check_ckaid(const char *fn, const unsigned char *ckaid, size_t len)
{
	if (len > KW_CKAID_MAX)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "%s: the CKA_ID is %zu bytes long, at most %d", fn, len,
				    KW_CKAID_MAX);
	if (len && !ckaid)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: ckaid_len is %zu but ckaid is NULL", fn, len);
	return KW_OK;
}

kw_rv kw_generate_key(kw_client *c, const char *owner, const char *name, enum kw_key_type type, unsigned bits,
		      const char *curve, unsigned flags, unsigned usages, kw_object **private_out,
		      kw_object **public_out)
{
	return kw_generate_key_ckaid(c, owner, name, type, bits, curve, flags, usages, NULL, 0, private_out,
				     public_out);
}

kw_rv kw_generate_key_ckaid(kw_client *c, const char *owner, const char *name, enum kw_key_type type, unsigned bits,
			    const char *curve, unsigned flags, unsigned usages, const unsigned char *ckaid,
			    size_t ckaid_len, kw_object **private_out, kw_object **public_out)
{
	static const char fn[] = "generating a key";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__GenerateKey gk = KEYWARD__GENERATE_KEY__INIT;
	Keyward__Response *resp = NULL;
	kw_object *priv = NULL, *pub = NULL;
	kw_rv rv;

	if (private_out)
		*private_out = NULL;
	if (public_out)
		*public_out = NULL;
	if ((rv = check_client(fn, c)) || (rv = check_str(fn, "the owner", owner, KW_OWNER_MAX)) ||
	    (rv = check_str(fn, "the name", name, KW_NAME_MAX)) || (rv = check_opt_str(fn, "the curve", curve, 64)) ||
	    (rv = check_ckaid(fn, ckaid, ckaid_len)))
		return rv;
	if (type == KW_KEY_NONE || ((unsigned)type > KW_KEY_AES && type != KW_KEY_GENERIC))
		return kw_error_set(KW_ERR_KEY_TYPE, "%s: unknown key type %d (RSA, EC, Ed25519, AES or generic)", fn,
				    (int)type);
	if (flags & ~(KW_GEN_EXTRACTABLE | KW_GEN_NOT_MODIFIABLE | KW_GEN_SESSION))
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: unknown flags 0x%x", fn, flags);
	if (usages & ~(KW_USAGE_SIGN | KW_USAGE_DECRYPT | KW_USAGE_DERIVE | KW_USAGE_WRAP))
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: unknown usage bits 0x%x", fn, usages);
	gk.owner = (char *)owner;
	gk.name = (char *)name;
	gk.key_type = (Keyward__KeyType)type;
	gk.bits = bits;
	gk.curve = (char *)(curve ? curve : "");
	gk.extractable = (flags & KW_GEN_EXTRACTABLE) != 0;
	gk.not_modifiable = (flags & KW_GEN_NOT_MODIFIABLE) != 0;
	gk.session = (flags & KW_GEN_SESSION) != 0;
	gk.usages = usages;
	gk.ckaid.data = (uint8_t *)ckaid;
	gk.ckaid.len = ckaid_len;
	req.body_case = KEYWARD__REQUEST__BODY_GENERATE_KEY;
	req.generate_key = &gk;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_KEY_PAIR, &resp);
	if (rv)
		return rv;
	if (type == KW_KEY_AES || type == KW_KEY_GENERIC) {
		/* one secret key: into *private_out, no public half */
		if (private_out && (rv = kw_object_from_info(resp->key_pair->secret_key, &priv)))
			goto out;
	} else {
		if (private_out && (rv = kw_object_from_info(resp->key_pair->private_key, &priv)))
			goto out;
		if (public_out && (rv = kw_object_from_info(resp->key_pair->public_key, &pub)))
			goto out;
	}
	if (private_out)
		*private_out = priv;
	if (public_out)
		*public_out = pub;
	priv = pub = NULL;
out:
	kw_object_free(priv);
	kw_object_free(pub);
	keyward__response__free_unpacked(resp, NULL);
	return rv;
}

/* Copies a result into the caller's buffer, or says how large it must be. */
static kw_rv copy_out(const char *fn, const char *what, const ProtobufCBinaryData *d, unsigned char *buf, size_t *len)
{
	if (!buf || *len < d->len) {
		size_t had = buf ? *len : 0;
		*len = d->len;
		return kw_error_set(KW_ERR_DATA_LEN, "%s: the %s needs %zu bytes, the buffer has %zu", fn, what, d->len,
				    had);
	}
	if (d->len)
		memcpy(buf, d->data, d->len);
	*len = d->len;
	return KW_OK;
}

void kw_sign_request_init(Keyward__Sign *s, Keyward__ObjectRef *ref, uint64_t key_id, const struct kw_mechanism *m)
{
	ref->id = key_id;
	s->key = ref;
	s->mechanism = (Keyward__Mechanism)m->mech;
	s->hash = (Keyward__Hash)m->hash;
	s->mgf1_hash = (Keyward__Hash)m->mgf1_hash;
	s->salt_length = m->salt_length;
}

kw_rv kw_sign(kw_client *c, uint64_t key_id, const struct kw_mechanism *m, const unsigned char *data, size_t data_len,
	      unsigned char *sig, size_t *sig_len)
{
	static const char fn[] = "signing";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__Sign s = KEYWARD__SIGN__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	Keyward__Response *resp = NULL;
	kw_rv rv;

	if ((rv = check_client(fn, c)) || (rv = check_mech(fn, m)))
		return rv;
	if (!sig_len)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: sig_len is NULL", fn);
	if (!key_id)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: key id 0 names no key", fn);
	if (!data && data_len)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: data is NULL", fn);
	if (data_len > KW_MAX_FRAME - 1024)
		return kw_error_set(KW_ERR_DATA_LEN, "%s: %zu bytes to sign, at most %u in one request", fn, data_len,
				    KW_MAX_FRAME - 1024);
	kw_sign_request_init(&s, &ref, key_id, m);
	s.data.data = (uint8_t *)data;
	s.data.len = data_len;
	req.body_case = KEYWARD__REQUEST__BODY_SIGN;
	req.sign = &s;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_SIGNATURE, &resp);
	if (rv)
		return rv;
	rv = copy_out(fn, "signature", &resp->signature->signature, sig, sig_len);
	keyward__response__free_unpacked(resp, NULL);
	return rv;
}

kw_rv kw_decrypt(kw_client *c, uint64_t key_id, const struct kw_mechanism *m, const unsigned char *in, size_t in_len,
		 unsigned char *out, size_t *out_len)
{
	static const char fn[] = "decrypting";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__Decrypt d = KEYWARD__DECRYPT__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	Keyward__Response *resp = NULL;
	kw_rv rv;

	if ((rv = check_client(fn, c)) || (rv = check_mech(fn, m)))
		return rv;
	if (!out_len)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: out_len is NULL", fn);
	if (!key_id)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: key id 0 names no key", fn);
	if (!in && in_len)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: input is NULL", fn);
	if (in_len + m->label_len > KW_MAX_FRAME - 1024)
		return kw_error_set(KW_ERR_DATA_LEN, "%s: %zu bytes to decrypt, at most %u in one request", fn, in_len,
				    KW_MAX_FRAME - 1024);
	ref.id = key_id;
	d.key = &ref;
	d.mechanism = (Keyward__Mechanism)m->mech;
	d.hash = (Keyward__Hash)m->hash;
	d.mgf1_hash = (Keyward__Hash)m->mgf1_hash;
	d.label.data = (uint8_t *)m->label;
	d.label.len = m->label_len;
	d.data.data = (uint8_t *)in;
	d.data.len = in_len;
	req.body_case = KEYWARD__REQUEST__BODY_DECRYPT;
	req.decrypt = &d;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_PLAINTEXT, &resp);
	if (rv)
		return rv;
	rv = copy_out(fn, "plaintext", &resp->plaintext->data, out, out_len);
	/* the plaintext may be a secret: wipe the response's copy */
	if (resp->plaintext->data.data)
		OPENSSL_cleanse(resp->plaintext->data.data, resp->plaintext->data.len);
	keyward__response__free_unpacked(resp, NULL);
	return rv;
}

kw_rv kw_unwrap_key(kw_client *c, uint64_t unwrapping_id, const struct kw_mechanism *m, const unsigned char *wrapped,
		    size_t wrapped_len, const struct kw_unwrap_spec *spec, kw_object **private_out,
		    kw_object **public_out)
{
	static const char fn[] = "unwrapping a key";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__UnwrapKey uk = KEYWARD__UNWRAP_KEY__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	Keyward__Response *resp = NULL;
	kw_object *priv = NULL, *pub = NULL;
	kw_rv rv;

	if (private_out)
		*private_out = NULL;
	if (public_out)
		*public_out = NULL;
	if ((rv = check_client(fn, c)) || (rv = check_mech(fn, m)))
		return rv;
	if (!spec || !wrapped || !wrapped_len)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: no spec or no wrapped key", fn);
	if ((rv = check_str(fn, "the owner", spec->owner, KW_OWNER_MAX)) ||
	    (rv = check_str(fn, "the name", spec->name, KW_NAME_MAX)) || (rv = check_ckaid(fn, spec->ckaid, spec->ckaid_len)))
		return rv;
	if (spec->flags & ~(KW_GEN_EXTRACTABLE | KW_GEN_NOT_MODIFIABLE))
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: flags 0x%x (an unwrapped key is a token object)", fn,
				    spec->flags);
	if (!unwrapping_id)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: key id 0 names no key", fn);
	if (wrapped_len > KW_MAX_FRAME - 1024)
		return kw_error_set(KW_ERR_DATA_LEN, "%s: %zu wrapped bytes", fn, wrapped_len);
	ref.id = unwrapping_id;
	uk.unwrapping_key = &ref;
	uk.mechanism = (Keyward__Mechanism)m->mech;
	uk.hash = (Keyward__Hash)m->hash;
	uk.mgf1_hash = (Keyward__Hash)m->mgf1_hash;
	uk.label.data = (uint8_t *)m->label;
	uk.label.len = m->label_len;
	uk.wrapped.data = (uint8_t *)wrapped;
	uk.wrapped.len = wrapped_len;
	uk.owner = (char *)spec->owner;
	uk.name = (char *)spec->name;
	uk.cls = (Keyward__ObjectClass)spec->cls;
	uk.key_type = (Keyward__KeyType)spec->type;
	uk.extractable = (spec->flags & KW_GEN_EXTRACTABLE) != 0;
	uk.not_modifiable = (spec->flags & KW_GEN_NOT_MODIFIABLE) != 0;
	uk.usages = spec->usages;
	uk.ckaid.data = (uint8_t *)spec->ckaid;
	uk.ckaid.len = spec->ckaid_len;
	req.body_case = KEYWARD__REQUEST__BODY_UNWRAP_KEY;
	req.unwrap_key = &uk;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_KEY_PAIR, &resp);
	if (rv)
		return rv;
	if (resp->key_pair->secret_key)
		rv = kw_object_from_info(resp->key_pair->secret_key, &priv);
	else if (!resp->key_pair->private_key || !resp->key_pair->public_key)
		rv = kw_error_set(KW_ERR_PROTOCOL, "%s: the HSM answered no key", fn);
	else if (!(rv = kw_object_from_info(resp->key_pair->private_key, &priv)))
		rv = kw_object_from_info(resp->key_pair->public_key, &pub);
	keyward__response__free_unpacked(resp, NULL);
	if (rv) {
		kw_object_free(priv);
		kw_object_free(pub);
		return rv;
	}
	if (private_out)
		*private_out = priv;
	else
		kw_object_free(priv);
	if (public_out)
		*public_out = pub;
	else
		kw_object_free(pub);
	return KW_OK;
}

kw_rv kw_derive_key(kw_client *c, uint64_t base_id, const struct kw_ecdh_params *p, const struct kw_unwrap_spec *spec,
		    kw_object **out)
{
	static const char fn[] = "deriving a key";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__DeriveKey dk = KEYWARD__DERIVE_KEY__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	Keyward__Response *resp = NULL;
	kw_rv rv;

	if (out)
		*out = NULL;
	if ((rv = check_client(fn, c)))
		return rv;
	if (!p || !spec || !p->public_data || !p->public_len || (p->shared_len && !p->shared_data) ||
	    (rv = check_hash(fn, p->kdf)))
		return rv ? rv : kw_error_set(KW_ERR_ARGUMENTS, "%s: no parameters, spec or public data", fn);
	if ((rv = check_str(fn, "the owner", spec->owner, KW_OWNER_MAX)) ||
	    (rv = check_str(fn, "the name", spec->name, KW_NAME_MAX)) || (rv = check_ckaid(fn, spec->ckaid, spec->ckaid_len)))
		return rv;
	if (spec->flags & ~(KW_GEN_EXTRACTABLE | KW_GEN_NOT_MODIFIABLE))
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: flags 0x%x (a derived key is a token object)", fn, spec->flags);
	if (!base_id)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: key id 0 names no key", fn);
	if (p->public_len > 1024 || p->shared_len > 1024)
		return kw_error_set(KW_ERR_DATA_LEN, "%s: public or shared data longer than 1 KiB", fn);
	ref.id = base_id;
	dk.base_key = &ref;
	dk.mechanism = KEYWARD__MECHANISM__ECDH;
	dk.cofactor = p->cofactor != 0;
	dk.public_data.data = (uint8_t *)p->public_data;
	dk.public_data.len = p->public_len;
	dk.kdf = (Keyward__Hash)p->kdf;
	dk.shared_data.data = (uint8_t *)p->shared_data;
	dk.shared_data.len = p->shared_len;
	dk.owner = (char *)spec->owner;
	dk.name = (char *)spec->name;
	dk.key_type = (Keyward__KeyType)spec->type;
	dk.length = p->length;
	dk.extractable = (spec->flags & KW_GEN_EXTRACTABLE) != 0;
	dk.not_modifiable = (spec->flags & KW_GEN_NOT_MODIFIABLE) != 0;
	dk.usages = spec->usages;
	dk.ckaid.data = (uint8_t *)spec->ckaid;
	dk.ckaid.len = spec->ckaid_len;
	req.body_case = KEYWARD__REQUEST__BODY_DERIVE_KEY;
	req.derive_key = &dk;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_KEY_PAIR, &resp);
	if (rv)
		return rv;
	if (!resp->key_pair->secret_key)
		rv = kw_error_set(KW_ERR_PROTOCOL, "%s: the HSM answered no secret key", fn);
	else if (out)
		rv = kw_object_from_info(resp->key_pair->secret_key, out);
	keyward__response__free_unpacked(resp, NULL);
	return rv;
}

kw_rv kw_secret_crypt(kw_client *c, uint64_t key_id, enum kw_mech mech, int encrypt, const struct kw_aes_params *p,
		      const unsigned char *in, size_t in_len, unsigned char *out, size_t *out_len)
{
	const char *fn = encrypt ? "encrypting" : "decrypting";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__SecretCrypt sc = KEYWARD__SECRET_CRYPT__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	Keyward__Response *resp = NULL;
	kw_rv rv;

	if ((rv = check_client(fn, c)))
		return rv;
	if (mech != KW_MECH_AES_ECB && mech != KW_MECH_AES_CBC && mech != KW_MECH_AES_CBC_PAD && mech != KW_MECH_AES_GCM)
		return kw_error_set(KW_ERR_MECHANISM, "%s: mechanism %d is no AES mode (KW_MECH_AES_ECB, _CBC, _CBC_PAD, _GCM)",
				    fn, (int)mech);
	if (!out_len || !p || (!in && in_len) || (!p->iv && p->iv_len) || (!p->aad && p->aad_len))
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: a NULL argument", fn);
	if (!key_id)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: key id 0 names no key", fn);
	if (in_len > KW_SECRET_CRYPT_MAX || p->iv_len > 128 || p->aad_len > 65536)
		return kw_error_set(KW_ERR_DATA_LEN, "%s: %zu bytes, at most %d in one request (IV at most 128, AAD 64 KiB)",
				    fn, in_len, KW_SECRET_CRYPT_MAX);
	ref.id = key_id;
	sc.key = &ref;
	sc.mechanism = (Keyward__Mechanism)mech;
	sc.encrypt = encrypt != 0;
	sc.iv.data = (uint8_t *)p->iv;
	sc.iv.len = p->iv_len;
	sc.aad.data = (uint8_t *)p->aad;
	sc.aad.len = p->aad_len;
	sc.tag_bits = p->tag_bits;
	sc.data.data = (uint8_t *)in;
	sc.data.len = in_len;
	req.body_case = KEYWARD__REQUEST__BODY_SECRET_CRYPT;
	req.secret_crypt = &sc;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_PLAINTEXT, &resp);
	if (rv)
		return rv;
	rv = copy_out(fn, encrypt ? "ciphertext" : "plaintext", &resp->plaintext->data, out, out_len);
	if (resp->plaintext->data.data)
		OPENSSL_cleanse(resp->plaintext->data.data, resp->plaintext->data.len);
	keyward__response__free_unpacked(resp, NULL);
	return rv;
}

kw_rv kw_get_object(kw_client *c, uint64_t id, const char *owner, const char *name, enum kw_class cls, kw_object **out)
{
	static const char fn[] = "looking up an object";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__GetObject g = KEYWARD__GET_OBJECT__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	Keyward__Response *resp = NULL;
	kw_rv rv;

	if (!out)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: out is NULL", fn);
	*out = NULL;
	if ((rv = check_client(fn, c)) || (rv = make_ref(fn, id, owner, name, cls, &ref)))
		return rv;
	g.ref = &ref;
	req.body_case = KEYWARD__REQUEST__BODY_GET_OBJECT;
	req.get_object = &g;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_OBJECT, &resp);
	if (rv)
		return rv;
	rv = kw_object_from_info(resp->object, out);
	keyward__response__free_unpacked(resp, NULL);
	return rv;
}

kw_rv kw_list_objects(kw_client *c, const char *owner, const char *name, kw_object_list **out)
{
	static const char fn[] = "listing objects";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__ListObjects lo = KEYWARD__LIST_OBJECTS__INIT;
	kw_object_list *l = NULL;
	kw_rv rv;

	if (!out)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: out is NULL", fn);
	*out = NULL;
	if ((rv = check_client(fn, c)) || (rv = check_opt_str(fn, "the owner", owner, KW_OWNER_MAX)) ||
	    (rv = check_opt_str(fn, "the name", name, KW_NAME_MAX)))
		return rv;
	rv = kw_object_list_new_empty(&l);
	if (rv)
		return rv;
	lo.owner = (char *)(owner ? owner : "");
	lo.name = (char *)(name ? name : "");
	req.body_case = KEYWARD__REQUEST__BODY_LIST_OBJECTS;
	req.list_objects = &lo;
	for (;;) {
		Keyward__Response *resp = NULL;
		Keyward__ObjectList *page;
		bool more;

		rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_OBJECT_LIST, &resp);
		if (rv)
			goto out;
		page = resp->object_list;
		more = page->more;
		/* the next page starts after the last id; ids must grow, or paging never ends */
		for (size_t i = 0; i < page->n_objects && !rv; i++) {
			if (!page->objects[i] || page->objects[i]->id <= lo.after_id)
				rv = kw_error_set(KW_ERR_PROTOCOL,
						  "%s: the HSM listed objects out of order (id %llu after %llu)", fn,
						  page->objects[i] ? (unsigned long long)page->objects[i]->id : 0ULL,
						  (unsigned long long)lo.after_id);
			else
				lo.after_id = page->objects[i]->id;
		}
		if (!rv && more && page->n_objects == 0)
			rv = kw_error_set(KW_ERR_PROTOCOL, "%s: the HSM sent an empty page that says more follow", fn);
		if (!rv)
			rv = kw_object_list_append(l, page->objects, page->n_objects);
		keyward__response__free_unpacked(resp, NULL);
		if (rv || !more)
			break;
	}
out:
	if (rv) {
		kw_object_list_free(l);
		return rv;
	}
	*out = l;
	return KW_OK;
}

kw_rv kw_delete_objects(kw_client *c, uint64_t id, const char *owner, const char *name, enum kw_class cls,
			unsigned *deleted)
{
	static const char fn[] = "deleting objects";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__DeleteObjects d = KEYWARD__DELETE_OBJECTS__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	Keyward__Response *resp = NULL;
	kw_rv rv;

	if (deleted)
		*deleted = 0;
	if ((rv = check_client(fn, c)) || (rv = make_ref(fn, id, owner, name, cls, &ref)))
		return rv;
	d.ref = &ref;
	req.body_case = KEYWARD__REQUEST__BODY_DELETE_OBJECTS;
	req.delete_objects = &d;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_COUNT, &resp);
	if (rv)
		return rv;
	if (deleted)
		*deleted = resp->count->count;
	keyward__response__free_unpacked(resp, NULL);
	return KW_OK;
}

static kw_rv tristate(const char *fn, const char *what, int v, Keyward__Tristate *out)
{
	switch (v) {
	case -1:
		*out = KEYWARD__TRISTATE__UNCHANGED;
		return KW_OK;
	case 0:
		*out = KEYWARD__TRISTATE__SET_FALSE;
		return KW_OK;
	case 1:
		*out = KEYWARD__TRISTATE__SET_TRUE;
		return KW_OK;
	default:
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: %s is %d; use -1 (unchanged), 0 or 1", fn, what, v);
	}
}

/* One SetAttributes request: every change in chg (see kw_modify_object) at once, on the object ref names. */
static kw_rv set_attributes(const char *fn, kw_client *c, Keyward__ObjectRef *ref, const struct kw_object_change *chg)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__SetAttributes sa = KEYWARD__SET_ATTRIBUTES__INIT;
	Keyward__Response *resp = NULL;
	kw_rv rv;

	if ((rv = tristate(fn, "extractable", chg->extractable, &sa.extractable)) ||
	    (rv = tristate(fn, "modifiable", chg->modifiable, &sa.modifiable)))
		return rv;
	if (chg->new_name && (rv = check_str(fn, "the new name", chg->new_name, KW_NAME_MAX)))
		return rv;
	if (chg->set_ckaid && (rv = check_ckaid(fn, chg->ckaid, chg->ckaid_len)))
		return rv;
	sa.ref = ref;
	sa.new_name = (char *)(chg->new_name ? chg->new_name : "");
	sa.set_ckaid = chg->set_ckaid != 0;
	sa.new_ckaid.data = (uint8_t *)chg->ckaid;
	sa.new_ckaid.len = chg->set_ckaid ? chg->ckaid_len : 0;
	req.body_case = KEYWARD__REQUEST__BODY_SET_ATTRIBUTES;
	req.set_attributes = &sa;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY__NOT_SET, &resp);
	if (rv)
		return rv;
	keyward__response__free_unpacked(resp, NULL);
	return KW_OK;
}

kw_rv kw_set_attributes(kw_client *c, uint64_t id, const char *owner, const char *name, enum kw_class cls,
			int extractable, int modifiable, const char *new_name)
{
	static const char fn[] = "changing attributes";
	struct kw_object_change chg = {.extractable = extractable, .modifiable = modifiable, .new_name = new_name};
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	kw_rv rv;

	if ((rv = check_client(fn, c)) || (rv = make_ref(fn, id, owner, name, cls, &ref)))
		return rv;
	return set_attributes(fn, c, &ref, &chg);
}

kw_rv kw_modify_object(kw_client *c, uint64_t id, const struct kw_object_change *chg)
{
	static const char fn[] = "changing an object";
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	kw_rv rv;

	if ((rv = check_client(fn, c)) || (rv = make_ref(fn, id, NULL, NULL, KW_CLASS_ANY, &ref)))
		return rv;
	if (!chg)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: the change is NULL", fn);
	return set_attributes(fn, c, &ref, chg);
}

/* Sends req, whose answer is a list of objects, and copies them to *out (if out). */
static kw_rv call_for_objects(kw_client *c, Keyward__Request *req, kw_object_list **out)
{
	Keyward__Response *resp = NULL;
	kw_rv rv = kw_client_call(c, req, KEYWARD__RESPONSE__BODY_OBJECTS, &resp);

	if (rv)
		return rv;
	if (out)
		rv = kw_object_list_from_infos(resp->objects->objects, resp->objects->n_objects, out);
	keyward__response__free_unpacked(resp, NULL);
	return rv;
}

kw_rv kw_change_owner(kw_client *c, const char *name, const char *old_owner, const char *new_owner,
		      kw_object_list **moved)
{
	static const char fn[] = "changing the owner";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__ChangeOwner co = KEYWARD__CHANGE_OWNER__INIT;
	kw_rv rv;

	if (moved)
		*moved = NULL;
	if ((rv = check_client(fn, c)) || (rv = check_str(fn, "the name", name, KW_NAME_MAX)) ||
	    (rv = check_str(fn, "the old owner", old_owner, KW_OWNER_MAX)) ||
	    (rv = check_str(fn, "the new owner", new_owner, KW_OWNER_MAX)))
		return rv;
	co.name = (char *)name;
	co.old_owner = (char *)old_owner;
	co.new_owner = (char *)new_owner;
	req.body_case = KEYWARD__REQUEST__BODY_CHANGE_OWNER;
	req.change_owner = &co;
	return call_for_objects(c, &req, moved);
}

kw_rv kw_generate_random(kw_client *c, unsigned char *buf, size_t len)
{
	static const char fn[] = "generating random bytes";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__GenerateRandom gr = KEYWARD__GENERATE_RANDOM__INIT;
	size_t done = 0;
	kw_rv rv;

	if ((rv = check_client(fn, c)))
		return rv;
	if (!buf && len)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: buf is NULL", fn);
	req.body_case = KEYWARD__REQUEST__BODY_GENERATE_RANDOM;
	req.generate_random = &gr;
	while (done < len) {
		Keyward__Response *resp = NULL;
		size_t want = len - done > RANDOM_CHUNK ? RANDOM_CHUNK : len - done;

		gr.length = (uint32_t)want;
		rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_RANDOM, &resp);
		if (rv)
			goto fail;
		if (resp->random->data.len != want) {
			size_t got = resp->random->data.len;
			keyward__response__free_unpacked(resp, NULL);
			rv = kw_error_set(KW_ERR_PROTOCOL, "%s: asked the HSM for %zu random bytes, got %zu", fn, want,
					  got);
			goto fail;
		}
		memcpy(buf + done, resp->random->data.data, want);
		OPENSSL_cleanse(resp->random->data.data, want);
		keyward__response__free_unpacked(resp, NULL);
		done += want;
	}
	return KW_OK;
fail:
	if (buf && len)
		OPENSSL_cleanse(buf, len);
	return rv;
}

kw_rv kw_set_ckaid(kw_client *c, uint64_t id, const char *owner, const char *name, enum kw_class cls,
		   const unsigned char *ckaid, size_t ckaid_len)
{
	static const char fn[] = "setting the CKA_ID";
	struct kw_object_change chg = {
		.extractable = -1, .modifiable = -1, .set_ckaid = 1, .ckaid = ckaid, .ckaid_len = ckaid_len};
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	kw_rv rv;

	if ((rv = check_client(fn, c)) || (rv = make_ref(fn, id, owner, name, cls, &ref)))
		return rv;
	return set_attributes(fn, c, &ref, &chg);
}

/* kw_create_object and kw_create_public_key; usages for a public key only. */
static kw_rv create_object(kw_client *c, const char *owner, const char *name, enum kw_class cls, const unsigned char *value,
			   size_t value_len, const unsigned char *ckaid, size_t ckaid_len, const char *application,
			   unsigned usages, unsigned flags, kw_object **out)
{
	static const char fn[] = "storing an object";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__CreateObject co = KEYWARD__CREATE_OBJECT__INIT;
	Keyward__Response *resp = NULL;
	kw_rv rv;

	if (out)
		*out = NULL;
	if ((rv = check_client(fn, c)) || (rv = check_str(fn, "the owner", owner, KW_OWNER_MAX)) ||
	    (rv = check_str(fn, "the name", name, KW_NAME_MAX)) || (rv = check_ckaid(fn, ckaid, ckaid_len)) ||
	    (rv = check_opt_str(fn, "the application", application, KW_APPLICATION_MAX)))
		return rv;
	if (cls != KW_CLASS_CERTIFICATE && cls != KW_CLASS_DATA && cls != KW_CLASS_PUBLIC_KEY)
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "%s: class %d: only certificates, data objects and public keys are created (private "
				    "and secret keys are generated or unwrapped)",
				    fn, (int)cls);
	if (value_len && !value)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: value_len is %zu but value is NULL", fn, value_len);
	if (value_len > KW_OBJECT_VALUE_MAX)
		return kw_error_set(KW_ERR_ATTRIBUTE_VALUE, "%s: the value is %zu bytes, at most %d", fn, value_len,
				    KW_OBJECT_VALUE_MAX);
	if (flags & ~(KW_GEN_NOT_MODIFIABLE | KW_GEN_SESSION))
		return kw_error_set(KW_ERR_ARGUMENTS,
				    "%s: unknown flags 0x%x (only KW_GEN_NOT_MODIFIABLE and KW_GEN_SESSION)", fn, flags);
	co.owner = (char *)owner;
	co.name = (char *)name;
	co.cls = (Keyward__ObjectClass)cls;
	co.value.data = (uint8_t *)value;
	co.value.len = value_len;
	co.ckaid.data = (uint8_t *)ckaid;
	co.ckaid.len = ckaid_len;
	co.application = (char *)(application ? application : "");
	co.not_modifiable = (flags & KW_GEN_NOT_MODIFIABLE) != 0;
	co.session = (flags & KW_GEN_SESSION) != 0;
	co.usages = usages;
	req.body_case = KEYWARD__REQUEST__BODY_CREATE_OBJECT;
	req.create_object = &co;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_OBJECT, &resp);
	if (rv)
		return rv;
	if (out)
		rv = kw_object_from_info(resp->object, out);
	keyward__response__free_unpacked(resp, NULL);
	return rv;
}

kw_rv kw_create_object(kw_client *c, const char *owner, const char *name, enum kw_class cls, const unsigned char *value,
		       size_t value_len, const unsigned char *ckaid, size_t ckaid_len, const char *application,
		       unsigned flags, kw_object **out)
{
	if (cls == KW_CLASS_PUBLIC_KEY)
		return kw_error_set(KW_ERR_ARGUMENTS, "storing an object: a public key is stored by kw_create_public_key");
	return create_object(c, owner, name, cls, value, value_len, ckaid, ckaid_len, application, 0, flags, out);
}

kw_rv kw_create_public_key(kw_client *c, const char *owner, const char *name, const unsigned char *spki,
			   size_t spki_len, const unsigned char *ckaid, size_t ckaid_len, unsigned usages, unsigned flags,
			   kw_object **out)
{
	return create_object(c, owner, name, KW_CLASS_PUBLIC_KEY, spki, spki_len, ckaid, ckaid_len, NULL, usages, flags,
			     out);
}

kw_rv kw_wrap_key(kw_client *c, uint64_t wrapping_id, uint64_t key_id, const struct kw_mechanism *m, unsigned char *out,
		  size_t *out_len)
{
	static const char fn[] = "wrapping a key";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__WrapKey wk = KEYWARD__WRAP_KEY__INIT;
	Keyward__ObjectRef wref = KEYWARD__OBJECT_REF__INIT, kref = KEYWARD__OBJECT_REF__INIT;
	Keyward__Response *resp = NULL;
	kw_rv rv;

	if ((rv = check_client(fn, c)) || (rv = check_mech(fn, m)))
		return rv;
	if (m->mech != KW_MECH_AES_KEY_WRAP && m->mech != KW_MECH_AES_KEY_WRAP_PAD && m->mech != KW_MECH_RSA_OAEP)
		return kw_error_set(KW_ERR_MECHANISM,
				    "%s: mechanism %d does not wrap (KW_MECH_AES_KEY_WRAP, "
				    "KW_MECH_AES_KEY_WRAP_PAD or KW_MECH_RSA_OAEP)",
				    fn, (int)m->mech);
	if (m->label_len > 1024)
		return kw_error_set(KW_ERR_MECHANISM_PARAM, "%s: an OAEP label of %zu bytes (at most 1024)", fn,
				    m->label_len);
	if (!out_len)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: out_len is NULL", fn);
	if (!wrapping_id || !key_id)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: key id 0 names no key", fn);
	wref.id = wrapping_id;
	kref.id = key_id;
	wk.wrapping_key = &wref;
	wk.key = &kref;
	wk.mechanism = (Keyward__Mechanism)m->mech;
	if (m->mech == KW_MECH_RSA_OAEP) {
		wk.hash = (Keyward__Hash)m->hash;
		wk.mgf1_hash = (Keyward__Hash)m->mgf1_hash;
		wk.label.data = (uint8_t *)m->label;
		wk.label.len = m->label_len;
	}
	req.body_case = KEYWARD__REQUEST__BODY_WRAP_KEY;
	req.wrap_key = &wk;
	rv = kw_client_call(c, &req, KEYWARD__RESPONSE__BODY_WRAPPED_KEY, &resp);
	if (rv)
		return rv;
	rv = copy_out(fn, "wrapped key", &resp->wrapped_key->data, out, out_len);
	keyward__response__free_unpacked(resp, NULL);
	return rv;
}

kw_rv kw_copy_object(kw_client *c, uint64_t id, const char *new_name, int extractable, int modifiable,
		     kw_object_list **out)
{
	static const char fn[] = "copying an object";
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__CopyObject co = KEYWARD__COPY_OBJECT__INIT;
	Keyward__ObjectRef ref = KEYWARD__OBJECT_REF__INIT;
	kw_rv rv;

	if (out)
		*out = NULL;
	if ((rv = check_client(fn, c)) || (rv = check_str(fn, "the new name", new_name, KW_NAME_MAX)) ||
	    (rv = tristate(fn, "extractable", extractable, &co.extractable)) ||
	    (rv = tristate(fn, "modifiable", modifiable, &co.modifiable)))
		return rv;
	if (!id)
		return kw_error_set(KW_ERR_ARGUMENTS, "%s: object id 0 names no object", fn);
	ref.id = id;
	co.ref = &ref;
	co.new_name = (char *)new_name;
	req.body_case = KEYWARD__REQUEST__BODY_COPY_OBJECT;
	req.copy_object = &co;
	return call_for_objects(c, &req, out);
}
