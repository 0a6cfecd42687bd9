/*
 * keyward-ca serve: how its threads (pre-signing, maint) learn that serve
 * is stopping: a flag under stop_lock, and a wait on stop_cond that the
 * main thread's stop broadcast ends early.
 */
#include <pthread.h>
#include <time.h>

#include "ca/serve_internal.h"

bool serve_stop_wait(struct server *sv, double seconds)
{
	struct timespec until;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)seconds;
	until.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&sv->stop_lock);
	while (!sv->stopping && pthread_cond_timedwait(&sv->stop_cond, &sv->stop_lock, &until) == 0)
		;
	stop = sv->stopping;
	pthread_mutex_unlock(&sv->stop_lock);
	return stop;
}

bool serve_stopping(struct server *sv)
{
	bool stop;

	pthread_mutex_lock(&sv->stop_lock);
	stop = sv->stopping;
	pthread_mutex_unlock(&sv->stop_lock);
	return stop;
}
