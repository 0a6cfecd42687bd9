/* The worker pool runs every job; one thread runs them in order; free drains. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <cmocka.h>

#include "daemon/daemon.h"

static atomic_int ran;
static int order[1000];
static atomic_int next;

static void count_job(void *arg)
{
	order[atomic_fetch_add(&next, 1)] = (int)(intptr_t)arg;
	atomic_fetch_add(&ran, 1);
}

static void test_fifo_and_drain(void **state)
{
	struct kw_pool *pool;

	(void)state;
	assert_int_equal(kw_pool_new("t", 1, &pool), KW_OK);
	for (int i = 0; i < 1000; i++)
		kw_pool_submit(pool, count_job, (void *)(intptr_t)i);
	kw_pool_free(pool); /* returns after every queued job ran */
	assert_int_equal(atomic_load(&ran), 1000);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(order[i], i);
}

static void test_many_threads(void **state)
{
	struct kw_pool *pool;

	(void)state;
	atomic_store(&ran, 0);
	atomic_store(&next, 0);
	assert_int_equal(kw_pool_new("t", 4, &pool), KW_OK);
	for (int i = 0; i < 1000; i++)
		kw_pool_submit(pool, count_job, (void *)(intptr_t)i);
	kw_pool_free(pool);
	assert_int_equal(atomic_load(&ran), 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_and_drain),
		cmocka_unit_test(test_many_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
