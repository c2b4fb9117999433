// SPDX-License-Identifier: GPL-2.0-only
/*
 * Threads born in the real-time class, without keeping the right to it.
 *
 * Linux lets a thread enter SCHED_FIFO only with CAP_SYS_NICE (or a
 * non-zero RLIMIT_RTPRIO), but a thread keeps its policy after dropping
 * the capability, and the threads it creates inherit the policy.
 * Capabilities are per thread too.  So, while the daemon still holds
 * its capabilities, rtspawn_init() starts one spawner thread, which
 * moves itself to SCHED_FIFO and then drops every capability and sets
 * no_new_privs for itself, exactly as the daemon's main thread does
 * afterwards.  From then on rtspawn_create() hands the spawner the
 * thread to create: that thread starts in the real-time class with no
 * capability, like the spawner.
 *
 * Why (measured with make bench's p-faults on this 2-CPU machine): with
 * faultd's fault and link threads and the source's page server in the
 * ordinary class, about 3% of remote faults waited 1-8 ms (p99 2.6-3 ms)
 * behind spinning vCPUs and the push; in SCHED_FIFO 1, p99 is 320-480 us.
 * Priority 1 is the lowest real-time one, and the kernel's real-time
 * throttling (sched_rt_runtime_us) still leaves ordinary threads their
 * share should one of these threads ever spin.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>

#include "common/caps.h"
#include "common/rtspawn.h"

enum rtspawn_state {
	RTSPAWN_OFF,            /* no spawner: ordinary threads */
	RTSPAWN_STARTING,       /* the spawner is taking its class */
	RTSPAWN_READY,          /* the spawner waits for requests */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_mutex_t call;   /* one request at a time */
	enum rtspawn_state state;
	int priority;
	int init_err;
	/* The request in flight. */
	bool pending;
	pthread_t *thread;
	void *(*fn)(void *);
	void *arg;
	int err;
} rts = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.call = PTHREAD_MUTEX_INITIALIZER,
};

static void *spawner_main(void *unused)
{
	struct sched_param sp = { .sched_priority = rts.priority };
	int r = 0;

	(void)unused;
	if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0)
		r = -errno;
	/* Never hand out threads that could hold capabilities. */
	if (r == 0)
		r = caps_drop(NULL, 0, (uid_t)-1, (gid_t)-1);
	pthread_mutex_lock(&rts.lock);
	rts.init_err = r;
	rts.state = r == 0 ? RTSPAWN_READY : RTSPAWN_OFF;
	pthread_cond_broadcast(&rts.cond);
	while (r == 0) {
		while (!rts.pending)
			pthread_cond_wait(&rts.cond, &rts.lock);
		rts.err = -pthread_create(rts.thread, NULL, rts.fn, rts.arg);
		rts.pending = false;
		pthread_cond_broadcast(&rts.cond);
	}
	pthread_mutex_unlock(&rts.lock);
	return NULL;
}

int rtspawn_init(int priority)
{
	pthread_t t;
	int r;

	if (priority < sched_get_priority_min(SCHED_FIFO) ||
	    priority > sched_get_priority_max(SCHED_FIFO))
		return -EINVAL;
	pthread_mutex_lock(&rts.lock);
	if (rts.state != RTSPAWN_OFF) {
		pthread_mutex_unlock(&rts.lock);
		return -EALREADY;
	}
	rts.priority = priority;
	rts.state = RTSPAWN_STARTING;
	r = -pthread_create(&t, NULL, spawner_main, NULL);
	if (r < 0) {
		rts.state = RTSPAWN_OFF;
		pthread_mutex_unlock(&rts.lock);
		return r;
	}
	pthread_detach(t);
	while (rts.state == RTSPAWN_STARTING)
		pthread_cond_wait(&rts.cond, &rts.lock);
	r = rts.init_err;
	pthread_mutex_unlock(&rts.lock);
	return r;
}

int rtspawn_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
	int r;

	pthread_mutex_lock(&rts.call);
	pthread_mutex_lock(&rts.lock);
	if (rts.state != RTSPAWN_READY) {
		pthread_mutex_unlock(&rts.lock);
		pthread_mutex_unlock(&rts.call);
		return -pthread_create(t, NULL, fn, arg);
	}
	rts.thread = t;
	rts.fn = fn;
	rts.arg = arg;
	rts.pending = true;
	pthread_cond_broadcast(&rts.cond);
	while (rts.pending)
		pthread_cond_wait(&rts.cond, &rts.lock);
	r = rts.err;
	pthread_mutex_unlock(&rts.lock);
	pthread_mutex_unlock(&rts.call);
	return r;
}
