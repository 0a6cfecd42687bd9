/*
 * Admission: strangers, clients and admins in budgets of their own; the
 * oldest stranger (of a crowded address first) makes room; a Hello holds a
 * client's slot and settles it; every slot leaves exactly once.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/gate.h"

static const struct kw_gate_limits limits = {.max_connections = 2,
					     .max_unauthenticated = 4,
					     .max_unauthenticated_per_address = 2,
					     .admin_max_connections = 1};

static unsigned held;

static void hold(struct kw_gate_slot *s)
{
	(void)s;
	held++;
}

static void key_of(const char *ip, unsigned char key[KW_GATE_KEY_LEN])
{
	struct sockaddr_storage ss = {0};

	if (strchr(ip, ':')) {
		struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&ss;
		sa->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &sa->sin6_addr), 1);
	} else {
		struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
		sa->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &sa->sin_addr), 1);
	}
	kw_gate_key((struct sockaddr *)&ss, key);
}

static struct kw_gate_slot *enter(struct kw_gate *g, struct kw_gate_slot *s, const char *ip)
{
	unsigned char key[KW_GATE_KEY_LEN];
	struct kw_gate_slot *evicted = NULL;

	key_of(ip, key);
	assert_int_equal(kw_gate_enter_stranger(g, s, key, hold, &evicted), KW_OK);
	return evicted;
}

static void counts(struct kw_gate *g, unsigned clients, unsigned strangers, unsigned admins)
{
	struct kw_gate_counts c;

	kw_gate_counts(g, &c);
	assert_int_equal(c.clients, clients);
	assert_int_equal(c.strangers, strangers);
	assert_int_equal(c.admins, admins);
}

static void test_oldest_stranger_makes_room(void **state)
{
	struct kw_gate *g;
	struct kw_gate_slot s[6];

	(void)state;
	held = 0;
	assert_int_equal(kw_gate_new(&limits, &g), KW_OK);
	assert_null(enter(g, &s[0], "192.0.2.1"));
	assert_null(enter(g, &s[1], "192.0.2.2"));
	assert_null(enter(g, &s[2], "192.0.2.3"));
	assert_null(enter(g, &s[3], "192.0.2.4"));
	counts(g, 0, 4, 0);
	/* full: the oldest of all goes, and is held for its closer */
	assert_ptr_equal(enter(g, &s[4], "192.0.2.5"), &s[0]);
	assert_int_equal(held, 1);
	assert_int_equal(s[0].cls, KW_GATE_NONE);
	counts(g, 0, 4, 0);
	/* its close counts nothing out twice */
	kw_gate_leave(g, &s[0]);
	counts(g, 0, 4, 0);
	for (int i = 1; i < 5; i++)
		kw_gate_leave(g, &s[i]);
	counts(g, 0, 0, 0);
	kw_gate_free(g);
}

static void test_crowded_address_evicts_its_own(void **state)
{
	struct kw_gate *g;
	struct kw_gate_slot s[4];

	(void)state;
	assert_int_equal(kw_gate_new(&limits, &g), KW_OK);
	assert_null(enter(g, &s[0], "198.51.100.1"));
	assert_null(enter(g, &s[1], "203.0.113.9"));
	assert_null(enter(g, &s[2], "203.0.113.9"));
	/* 203.0.113.9 holds its share: its own oldest goes, not the older stranger of another host */
	assert_ptr_equal(enter(g, &s[3], "203.0.113.9"), &s[1]);
	assert_int_equal(s[0].cls, KW_GATE_STRANGER);
	counts(g, 0, 3, 0);
	for (int i = 0; i < 4; i++)
		kw_gate_leave(g, &s[i]);
	counts(g, 0, 0, 0);
	kw_gate_free(g);
}

static void test_ipv6_counts_per_64(void **state)
{
	unsigned char a[KW_GATE_KEY_LEN], b[KW_GATE_KEY_LEN], c[KW_GATE_KEY_LEN], m[KW_GATE_KEY_LEN],
		v4[KW_GATE_KEY_LEN];

	(void)state;
	key_of("2001:db8:1:2::1", a);
	key_of("2001:db8:1:2:ffff::9", b);
	key_of("2001:db8:1:3::1", c);
	key_of("::ffff:192.0.2.7", m);
	key_of("192.0.2.7", v4);
	assert_memory_equal(a, b, KW_GATE_KEY_LEN);	/* one /64 */
	assert_memory_not_equal(a, c, KW_GATE_KEY_LEN); /* another */
	assert_memory_equal(m, v4, KW_GATE_KEY_LEN);	/* a mapped IPv4 address is that address */
}

static void test_hello_reserves_and_settles(void **state)
{
	struct kw_gate *g;
	struct kw_gate_slot s[4];

	(void)state;
	assert_int_equal(kw_gate_new(&limits, &g), KW_OK);
	assert_null(enter(g, &s[0], "192.0.2.10"));
	assert_null(enter(g, &s[1], "192.0.2.10"));
	assert_ptr_equal(enter(g, &s[2], "192.0.2.10"), &s[0]); /* the address's share is 2 */
	counts(g, 0, 2, 0);
	assert_int_equal(kw_gate_reserve_client(g, &s[1]), KW_OK);
	counts(g, 1, 2, 0);
	assert_int_equal(kw_gate_settle_client(g, &s[1], true), KW_OK);
	counts(g, 1, 1, 0);
	/* a failed Hello gives the slot back and stays a stranger */
	assert_int_equal(kw_gate_reserve_client(g, &s[2]), KW_OK);
	assert_int_equal(kw_gate_settle_client(g, &s[2], false), KW_OK);
	counts(g, 1, 1, 0);
	assert_int_equal(s[2].cls, KW_GATE_STRANGER);
	/* a second Hello on a client needs no second slot */
	assert_int_equal(kw_gate_reserve_client(g, &s[1]), KW_OK);
	counts(g, 1, 1, 0);
	kw_gate_leave(g, &s[0]);
	kw_gate_leave(g, &s[1]);
	kw_gate_leave(g, &s[2]);
	counts(g, 0, 0, 0);
	kw_gate_free(g);
}

static void test_clients_full(void **state)
{
	struct kw_gate *g;
	struct kw_gate_slot s[3];

	(void)state;
	assert_int_equal(kw_gate_new(&limits, &g), KW_OK);
	for (int i = 0; i < 3; i++) {
		char ip[20];
		snprintf(ip, sizeof ip, "192.0.2.%d", 20 + i);
		assert_null(enter(g, &s[i], ip));
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(kw_gate_reserve_client(g, &s[i]), KW_OK);
		assert_int_equal(kw_gate_settle_client(g, &s[i], true), KW_OK);
	}
	assert_int_equal(kw_gate_reserve_client(g, &s[2]), KW_ERR_BUSY);
	assert_non_null(strstr(kw_last_error(), "2 of 2 client connections"));
	counts(g, 2, 1, 0);
	kw_gate_leave(g, &s[0]);
	assert_int_equal(kw_gate_reserve_client(g, &s[2]), KW_OK);
	kw_gate_leave(g, &s[1]);
	kw_gate_leave(g, &s[2]); /* leaving with a reservation gives it back */
	counts(g, 0, 0, 0);
	kw_gate_free(g);
}

static void test_evicted_while_hello_runs(void **state)
{
	struct kw_gate *g;
	struct kw_gate_slot s[5];

	(void)state;
	assert_int_equal(kw_gate_new(&limits, &g), KW_OK);
	assert_null(enter(g, &s[0], "192.0.2.30"));
	assert_int_equal(kw_gate_reserve_client(g, &s[0]), KW_OK);
	assert_null(enter(g, &s[1], "192.0.2.31"));
	assert_null(enter(g, &s[2], "192.0.2.32"));
	assert_null(enter(g, &s[3], "192.0.2.33"));
	assert_ptr_equal(enter(g, &s[4], "192.0.2.34"), &s[0]);
	/* its Hello succeeded, but it is on its way out: no client's slot is kept */
	assert_int_equal(kw_gate_settle_client(g, &s[0], true), KW_ERR_BUSY);
	counts(g, 0, 4, 0);
	for (int i = 0; i < 5; i++)
		kw_gate_leave(g, &s[i]);
	counts(g, 0, 0, 0);
	kw_gate_free(g);
}

static void test_admin_budget(void **state)
{
	struct kw_gate *g;
	struct kw_gate_slot a, b;

	(void)state;
	assert_int_equal(kw_gate_new(&limits, &g), KW_OK);
	assert_int_equal(kw_gate_enter_admin(g, &a), KW_OK);
	assert_int_equal(kw_gate_enter_admin(g, &b), KW_ERR_BUSY);
	assert_non_null(strstr(kw_last_error(), "admin socket is busy"));
	counts(g, 0, 0, 1);
	kw_gate_leave(g, &a);
	kw_gate_leave(g, &b);
	counts(g, 0, 0, 0);
	kw_gate_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oldest_stranger_makes_room),
		cmocka_unit_test(test_crowded_address_evicts_its_own),
		cmocka_unit_test(test_ipv6_counts_per_64),
		cmocka_unit_test(test_hello_reserves_and_settles),
		cmocka_unit_test(test_clients_full),
		cmocka_unit_test(test_evicted_while_hello_runs),
		cmocka_unit_test(test_admin_budget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
