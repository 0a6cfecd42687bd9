/*
 * A fixed pool of worker threads around one FIFO queue. Jobs are small
 * (a request, an audit flush); the queue grows as needed, and admission is
 * bounded upstream by the per-connection in-flight limit.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"

struct job {
	kw_job_fn fn;
	void *arg;
	struct job *next;
};

struct kw_pool {
	char name[16];
	pthread_mutex_t lock;
	pthread_cond_t ready;
	struct job *head, *tail;
	struct job *spare; /* recycled job cells: no malloc per request */
	bool stopping;
	unsigned n;
	pthread_t threads[];
};

static void *worker(void *arg)
{
	struct kw_pool *pool = arg;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct job *job;
		kw_job_fn fn;
		void *job_arg;

		while (!pool->head && !pool->stopping)
			pthread_cond_wait(&pool->ready, &pool->lock);
		job = pool->head;
		if (!job)
			break; /* stopping and drained */
		pool->head = job->next;
		if (!pool->head)
			pool->tail = NULL;
		fn = job->fn;
		job_arg = job->arg;
		job->next = pool->spare;
		pool->spare = job;
		pthread_mutex_unlock(&pool->lock);
		fn(job_arg);
		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

kw_rv kw_pool_new(const char *name, unsigned threads, struct kw_pool **out)
{
	struct kw_pool *pool = calloc(1, sizeof *pool + threads * sizeof(pthread_t));

	*out = NULL;
	if (!pool)
		return KW_ERR_NO_MEMORY;
	snprintf(pool->name, sizeof pool->name, "%s", name);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->ready, NULL);
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, worker, pool) != 0) {
			kw_pool_free(pool);
			return kw_error_set(KW_ERR_GENERAL, "pool %s: cannot start thread %u", name, i);
		}
		pool->n++;
	}
	kw_debug(KW_DEBUG_POOL, "pool %s: %u threads", name, threads);
	*out = pool;
	return KW_OK;
}

void kw_pool_submit(struct kw_pool *pool, kw_job_fn fn, void *arg)
{
	struct job *job;

	pthread_mutex_lock(&pool->lock);
	job = pool->spare;
	if (job)
		pool->spare = job->next;
	else
		job = malloc(sizeof *job);
	if (!job) {
		/* out of memory: run it here rather than lose a request */
		pthread_mutex_unlock(&pool->lock);
		fn(arg);
		return;
	}
	job->fn = fn;
	job->arg = arg;
	job->next = NULL;
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pthread_cond_signal(&pool->ready);
	pthread_mutex_unlock(&pool->lock);
}

void kw_pool_free(struct kw_pool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->ready);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->n; i++)
		pthread_join(pool->threads[i], NULL);
	while (pool->spare) {
		struct job *next = pool->spare->next;
		free(pool->spare);
		pool->spare = next;
	}
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->ready);
	free(pool);
}
