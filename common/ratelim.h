/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What a peer can make a daemon say as often as it likes (a refused
 * connection, a failed accept) is said a few times per window, then
 * counted; the count is said with the first note of a later window.
 * The caller passes the time (now_ns()), so that a test can too.
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

/* The notes held back in the window under way, now forgotten (to say
 * at the end). */
unsigned int ratelim_flush(struct ratelim *r);

#endif
