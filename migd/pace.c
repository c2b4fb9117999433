// SPDX-License-Identifier: GPL-2.0-only
/*
 * Pacing a channel to its share of max-bandwidth.
 *
 * A channel owes rate-time for what it sends: `due` is when the bytes
 * sent so far may have gone out at the cap.  A channel that was idle
 * (a round with nothing dirty, a Settle wait) must not bank that time
 * as credit and then send at line rate for as long as it was idle, so
 * `due` never lags the clock by more than PACE_CREDIT_NS: a burst after
 * a quiet spell is at most that much of the cap.
 */
#include "common/util.h"
#include "migd/migd.h"

void pace_start(struct pace *p, uint64_t rate, uint64_t now)
{
	p->rate = rate;
	p->due = now;
}

uint64_t pace_sent(struct pace *p, uint64_t now, uint64_t bytes)
{
	uint64_t floor = now > PACE_CREDIT_NS ? now - PACE_CREDIT_NS : 0;

	if (!p->rate)
		return 0;
	if (p->due < floor)
		p->due = floor;
	p->due += mul_div(bytes, 1000000000ULL, p->rate);
	return p->due > now ? p->due - now : 0;
}
