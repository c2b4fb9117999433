/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Work that may block (a call to a vmm that does not answer, a read of a
 * page postcopy has still to bring), off a daemon's event loop: each
 * piece runs in a thread of its own, and once it is done its finish
 * callback runs on the loop, after the thread is joined.
 *
 * A piece is a struct bgwork embedded in the caller's own struct (see
 * container_of): the thread may touch that struct and nothing the event
 * loop changes.  The set's eventfd is never closed, so a thread left
 * behind at the daemon's end (bgwork_stop) may still finish writing it.
 */
#ifndef TERN_BGWORK_H
#define TERN_BGWORK_H

#include <pthread.h>
#include <stdbool.h>

struct event_base;
struct event;
struct bgwork;

typedef void (*bgwork_fn)(struct bgwork *w);

struct bgwork {
	struct bgwork *next;            /* the set's list (event loop) */
	struct bgwork_set *set;
	pthread_t thread;
	bgwork_fn run;                  /* in the thread */
	bgwork_fn finish;               /* on the event loop, once joined */
	bool done;                      /* atomic: run has returned */
};

struct bgwork_set {
	int efd;                        /* the threads' wake-up: never closed */
	struct event *ev;
	struct bgwork *list;
	unsigned int n;                 /* pieces started, not yet finished */
};

/* Watch for finished pieces on base.  0 or -errno. */
int bgwork_init(struct bgwork_set *s, struct event_base *base);
/* Run run(w) in a new thread, then finish(w) on the event loop.  0, or
 * -errno when no thread could be started (nothing is then called). */
int bgwork_start(struct bgwork_set *s, struct bgwork *w, bgwork_fn run,
		 bgwork_fn finish);
/*
 * At a daemon's end: stop watching; for up to wait_ms, join the pieces
 * that end and hand each to drop (not finish: nobody is answered any
 * more).  The rest are detached and left to their threads, which may
 * still be blocked.  Returns how many were left.
 */
unsigned int bgwork_stop(struct bgwork_set *s, int wait_ms, bgwork_fn drop);

#endif
