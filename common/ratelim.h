/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What a peer can make a daemon say as often as it likes (a refused
 * connection, a failed accept) is said a few times per window, then
 * counted; the count is said with the first note of a later window,
 * or, if none comes, by the caller's timer once the window has ended
 * (ratelim_due_in, ratelim_due): a burst followed by silence is told
 * too.  The caller passes the time (now_ns()), so that a test can too.
 */
#ifndef TERN_RATELIM_H
#define TERN_RATELIM_H

#include <stdbool.h>
#include <stdint.h>

struct ratelim {
	uint64_t since;                 /* this window's start */
	bool open;                      /* false until the first note */
	unsigned int said;              /* notes let through in it */
	unsigned int held;              /* ... and held back */
};

/*
 * May a note be said at now?  At most burst per window_ns.  When a new
 * window starts, *held_before gets the number held back in the last one
 * (for the caller to say), else 0.
 */
bool ratelim_take(struct ratelim *r, uint64_t now, uint64_t window_ns,
		  unsigned int burst, unsigned int *held_before);

/*
 * For the caller's timer: how long from now until the notes held back
 * are due (their window ends), 0 if they are due now, UINT64_MAX if none
 * are held.
 */
uint64_t ratelim_due_in(const struct ratelim *r, uint64_t now,
			uint64_t window_ns);
/* The notes held back in a window that has ended by now, now forgotten
 * (for the caller to say); 0 if none, or while the window runs on. */
unsigned int ratelim_due(struct ratelim *r, uint64_t now, uint64_t window_ns);

/* The notes held back in the window under way, now forgotten (to say
 * at the end). */
unsigned int ratelim_flush(struct ratelim *r);

#endif
