/*
 * The two clocks the load generators time themselves with: monotonic wall
 * time, and the process's CPU (every thread, user and system), so that a
 * figure can be given as CPU per operation as well as operations a second;
 * and the timed part's wait.
 */
#ifndef KEYWARD_BENCH_CLOCK_H
#define KEYWARD_BENCH_CLOCK_H

#include <sys/resource.h>
#include <time.h>

static inline double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Returns once `seconds` have passed since start (a now() reading), looking every 50 ms. */
static inline void wait_until(double start, double seconds)
{
	while (now() - start < seconds) {
		struct timespec ts = {0, 50 * 1000000L};

		nanosleep(&ts, NULL);
	}
}

#endif
