/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Threads born in the real-time class, without keeping the right to it.
 * A vCPU blocked on a missing page waits on a chain of threads (faultd's
 * fault and link threads, the source's page server); in the ordinary
 * class each woken thread of that chain may wait out another thread's
 * slice first.  See rtspawn.c.
 */
#ifndef TERN_RTSPAWN_H
#define TERN_RTSPAWN_H

#include <pthread.h>

#define RTSPAWN_PRIORITY 1      /* SCHED_FIFO's lowest: above every ordinary thread */

/*
 * Call while the process still holds CAP_SYS_NICE, before it drops its
 * capabilities, and before it starts any other thread: starts the
 * spawner thread in SCHED_FIFO at priority, with no capabilities of its
 * own.  Returns 0, or -errno when the class is refused (-EPERM without
 * CAP_SYS_NICE); then rtspawn_create() makes ordinary threads.
 */
int rtspawn_init(int priority);
/* pthread_create(), in the real-time class if rtspawn_init() succeeded.
 * Returns 0 or -errno. */
int rtspawn_create(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
