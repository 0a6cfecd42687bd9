/* Admission control for keywardd's connections (gate.c). */
#ifndef KW_DAEMON_GATE_H
#define KW_DAEMON_GATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "keyward/keyward.h"

#define KW_GATE_KEY_LEN 9 /* family, then an IPv4 address or an IPv6 /64 prefix */

struct kw_gate_limits {
	unsigned max_connections;		  /* authenticated clients */
	unsigned max_unauthenticated;		  /* strangers, from everywhere */
	unsigned max_unauthenticated_per_address; /* strangers from one address or /64 */
	unsigned admin_max_connections;		  /* the local admin socket */
};

/* NONE is 0: a zeroed slot is admitted nowhere */
enum kw_gate_class { KW_GATE_NONE, KW_GATE_STRANGER, KW_GATE_CLIENT, KW_GATE_ADMIN };

/* A connection's place at the gate, embedded in the connection; the gate's lock guards it. */
struct kw_gate_slot {
	struct kw_gate_slot *prev, *next; /* strangers, oldest first */
	unsigned char key[KW_GATE_KEY_LEN];
	int cls;       /* enum kw_gate_class */
	bool reserved; /* holds a client's slot while its Hello runs */
};

struct kw_gate_counts {
	unsigned clients, strangers, admins;
	uint64_t refused, evicted;
};

struct kw_gate;
kw_rv kw_gate_new(const struct kw_gate_limits *limits, struct kw_gate **out);
void kw_gate_free(struct kw_gate *g);

/* The key a source address is counted under. */
void kw_gate_key(const struct sockaddr *sa, unsigned char key[KW_GATE_KEY_LEN]);

/*
 * Admits a new TCP connection as a stranger (KW_ERR_BUSY only when no
 * stranger is allowed at all). When the budget, or the address's share of
 * it, is full, the oldest stranger (of that address) makes room: *evicted is its slot (counted out already), which
 * the caller must close; hold(slot) runs under the gate's lock first, so
 * the caller can keep the victim's connection alive until then.
 */
kw_rv kw_gate_enter_stranger(struct kw_gate *g, struct kw_gate_slot *s, const unsigned char key[KW_GATE_KEY_LEN],
			     void (*hold)(struct kw_gate_slot *), struct kw_gate_slot **evicted);
/* Admits an admin-socket connection; KW_ERR_BUSY (with a message) when that budget is full. */
kw_rv kw_gate_enter_admin(struct kw_gate *g, struct kw_gate_slot *s);
/* Before a Hello: a client's slot for s, or KW_ERR_BUSY saying the server is full. */
kw_rv kw_gate_reserve_client(struct kw_gate *g, struct kw_gate_slot *s);
/*
 * After the Hello: s becomes a client if it authenticated, else gives the
 * reserved slot back. KW_ERR_BUSY when s was evicted while the Hello ran.
 */
kw_rv kw_gate_settle_client(struct kw_gate *g, struct kw_gate_slot *s, bool authenticated);
/* The connection closed; safe to call for an evicted or never-admitted slot. */
void kw_gate_leave(struct kw_gate *g, struct kw_gate_slot *s);
void kw_gate_counts(struct kw_gate *g, struct kw_gate_counts *out);

#endif
