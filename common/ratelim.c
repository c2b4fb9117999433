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

uint64_t ratelim_due_in(const struct ratelim *r, uint64_t now,
			uint64_t window_ns)
{
	uint64_t ran = now - r->since;

	if (!r->held)
		return UINT64_MAX;
	return ran >= window_ns ? 0 : window_ns - ran;
}

unsigned int ratelim_due(struct ratelim *r, uint64_t now, uint64_t window_ns)
{
	if (ratelim_due_in(r, now, window_ns))
		return 0;
	return ratelim_flush(r);
}

unsigned int ratelim_flush(struct ratelim *r)
{
	unsigned int n = r->held;

	r->held = 0;
	return n;
}
