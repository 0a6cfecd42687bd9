/*
 * kw_object: a private copy of one wire ObjectInfo (strings and public key
 * bytes copied, so it outlives the response), and kw_object_list, an array
 * of them. Accessors are read-only and accept NULL.
 */
#include "client/client.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

struct kw_object {
	uint64_t id;
	uint64_t pair_id;
	char *owner;
	char *name;
	char *curve;
	enum kw_class cls;
	enum kw_key_type key_type;
	unsigned bits;
	unsigned char *public_key;
	size_t public_key_len;
	int sensitive, extractable, modifiable, never_extractable, always_sensitive, derived;
	unsigned usages;
	int64_t created;
	unsigned char *ckaid;
	size_t ckaid_len;
	unsigned char *value; /* certificate, data object */
	size_t value_len;
	char *application;
	int session;
};

static unsigned char *dup_bytes(const ProtobufCBinaryData *d)
{
	unsigned char *p;

	if (!d->len)
		return NULL;
	p = malloc(d->len);
	if (p)
		memcpy(p, d->data, d->len);
	return p;
}

struct kw_object_list {
	kw_object **items;
	size_t n;
};

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

kw_rv kw_object_from_info(const Keyward__ObjectInfo *info, kw_object **out)
{
	kw_object *o;

	*out = NULL;
	if (!info)
		return kw_error_set(KW_ERR_PROTOCOL, "the HSM sent a response without its object");
	o = calloc(1, sizeof *o);
	if (!o)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory copying an object");
	o->id = info->id;
	o->pair_id = info->pair_id;
	o->owner = dup_or_empty(info->owner);
	o->name = dup_or_empty(info->name);
	o->curve = dup_or_empty(info->curve);
	o->cls = (enum kw_class)info->cls;
	o->key_type = (enum kw_key_type)info->key_type;
	o->bits = info->bits;
	o->sensitive = info->sensitive;
	o->extractable = info->extractable;
	o->modifiable = info->modifiable;
	o->never_extractable = info->never_extractable;
	o->always_sensitive = info->always_sensitive;
	o->derived = info->derived;
	o->usages = info->usages;
	o->created = info->created;
	o->session = info->session;
	o->application = dup_or_empty(info->application);
	o->public_key = dup_bytes(&info->public_key);
	o->public_key_len = o->public_key ? info->public_key.len : 0;
	o->value = dup_bytes(&info->value);
	o->value_len = o->value ? info->value.len : 0;
	o->ckaid = dup_bytes(&info->ckaid);
	o->ckaid_len = o->ckaid ? info->ckaid.len : 0;
	if (!o->owner || !o->name || !o->curve || !o->application || (info->public_key.len && !o->public_key) ||
	    (info->value.len && !o->value) || (info->ckaid.len && !o->ckaid)) {
		kw_object_free(o);
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory copying an object");
	}
	*out = o;
	return KW_OK;
}

int kw_object_session(const kw_object *o)
{
	return o ? o->session : 0;
}

void kw_object_free(kw_object *o)
{
	if (!o)
		return;
	free(o->owner);
	free(o->name);
	free(o->curve);
	free(o->public_key);
	free(o->value);
	free(o->ckaid);
	free(o->application);
	free(o);
}

uint64_t kw_object_id(const kw_object *o)
{
	return o ? o->id : 0;
}

uint64_t kw_object_pair_id(const kw_object *o)
{
	return o ? o->pair_id : 0;
}

const char *kw_object_owner(const kw_object *o)
{
	return o ? o->owner : NULL;
}

const char *kw_object_name(const kw_object *o)
{
	return o ? o->name : NULL;
}

enum kw_class kw_object_class(const kw_object *o)
{
	return o ? o->cls : KW_CLASS_ANY;
}

enum kw_key_type kw_object_key_type(const kw_object *o)
{
	return o ? o->key_type : KW_KEY_NONE;
}

unsigned kw_object_bits(const kw_object *o)
{
	return o ? o->bits : 0;
}

const char *kw_object_curve(const kw_object *o)
{
	return o ? o->curve : NULL;
}

const unsigned char *kw_object_public_key(const kw_object *o, size_t *len)
{
	if (len)
		*len = o ? o->public_key_len : 0;
	return o ? o->public_key : NULL;
}

int kw_object_sensitive(const kw_object *o)
{
	return o ? o->sensitive : 0;
}

int kw_object_extractable(const kw_object *o)
{
	return o ? o->extractable : 0;
}

int kw_object_modifiable(const kw_object *o)
{
	return o ? o->modifiable : 0;
}

int kw_object_never_extractable(const kw_object *o)
{
	return o ? o->never_extractable : 0;
}

int kw_object_always_sensitive(const kw_object *o)
{
	return o ? o->always_sensitive : 0;
}

int kw_object_derived(const kw_object *o)
{
	return o ? o->derived : 0;
}

unsigned kw_object_usages(const kw_object *o)
{
	return o ? o->usages : 0;
}

int64_t kw_object_created(const kw_object *o)
{
	return o ? o->created : 0;
}

const unsigned char *kw_object_ckaid(const kw_object *o, size_t *len)
{
	if (len)
		*len = o ? o->ckaid_len : 0;
	return o ? o->ckaid : NULL;
}

const unsigned char *kw_object_value(const kw_object *o, size_t *len)
{
	if (o && o->cls == KW_CLASS_PUBLIC_KEY)
		return kw_object_public_key(o, len);
	if (len)
		*len = o ? o->value_len : 0;
	return o ? o->value : NULL;
}

const char *kw_object_application(const kw_object *o)
{
	return o ? o->application : NULL;
}

/* ---- lists ---- */

kw_rv kw_object_list_new_empty(kw_object_list **out)
{
	*out = calloc(1, sizeof **out);
	if (!*out)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory creating an object list");
	return KW_OK;
}

kw_rv kw_object_list_append(kw_object_list *l, Keyward__ObjectInfo *const *infos, size_t n)
{
	kw_object **items;
	kw_rv rv;

	if (n == 0)
		return KW_OK;
	if (n > SIZE_MAX / sizeof *items - l->n)
		return kw_error_set(KW_ERR_NO_MEMORY, "object list too long");
	items = realloc(l->items, (l->n + n) * sizeof *items);
	if (!items)
		return kw_error_set(KW_ERR_NO_MEMORY, "out of memory growing an object list");
	l->items = items;
	for (size_t i = 0; i < n; i++) {
		rv = kw_object_from_info(infos[i], &l->items[l->n]);
		if (rv)
			return rv;
		l->n++;
	}
	return KW_OK;
}

kw_rv kw_object_list_from_infos(Keyward__ObjectInfo *const *infos, size_t n, kw_object_list **out)
{
	kw_object_list *l;
	kw_rv rv;

	*out = NULL;
	rv = kw_object_list_new_empty(&l);
	if (rv)
		return rv;
	rv = kw_object_list_append(l, infos, n);
	if (rv) {
		kw_object_list_free(l);
		return rv;
	}
	*out = l;
	return KW_OK;
}

size_t kw_object_list_count(const kw_object_list *l)
{
	return l ? l->n : 0;
}

const kw_object *kw_object_list_get(const kw_object_list *l, size_t i)
{
	if (!l || i >= l->n)
		return NULL;
	return l->items[i];
}

void kw_object_list_free(kw_object_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		kw_object_free(l->items[i]);
	free(l->items);
	free(l);
}
