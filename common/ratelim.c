// SPDX-License-Identifier: GPL-2.0-only
/* A few notes per window, the rest counted (ratelim.h). */
#include "common/ratelim.h"

bool ratelim_take(struct ratelim *r, uint64_t now, uint64_t window_ns,
		  unsigned int burst, unsigned int *held_before)
{
	*held_before = 0;
	if (!r->open || now - r->since >= window_ns) {
		*held_before = r->held;
		r->open = true;
		r->since = now;
		r->said = 0;
		r->held = 0;
	}
	if (r->said < burst) {
		r->said++;
		return true;
	}
	r->held++;
	return false;
}

unsigned int ratelim_flush(struct ratelim *r)
{
	unsigned int n = r->held;

	r->held = 0;
	return n;
}
