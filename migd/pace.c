// SPDX-License-Identifier: GPL-2.0-only
/*
 * Pacing a channel to its share of max-bandwidth.
 *
 * A channel owes rate-time for what it sends: `due` is when the bytes
 * sent so far may have gone out at the cap.  A channel that was idle
 * (a round with nothing dirty, a Settle wait) must not bank that time
 * as credit and then send at line rate for as long as it was idle, so
 * `due` never lags the clock by more than PACE_CREDIT_NS: a burst after
 * a quiet spell is at most that much of the cap.  The cap may change
 * at any time (Tune): what was paid for stays paid, what is still owed
 * when it changes is owed at the new cap (nothing, with none), and a cap
 * set after none counts from then.
 *
 * The wait itself (pace_wait) watches the channel's socket: the abort
 * of a job (a cancel, its timeout, a failure) shuts its sockets down,
 * and the peer closes them when it fails or pauses (a postcopy whose
 * faultd stopped: the source must pause too, at once), and a paced
 * channel must go then, not when its packet is paid for: a packet of
 * 128 pages was 8 s of a 64 KiB/s cap (a capped packet is smaller now,
 * pace_batch_pages, but a cap lowered by a Tune still leaves one paid at
 * the new rate), and a sleep held a cancel or a timeout that long.  It
 * watches the channel's eventfd too, which a Tune writes (worker_tune):
 * a channel waiting at the old cap then owes the rest at the new one,
 * and a cap lifted no longer held it for the rest of its wait.
 *
 * And the rate a channel went at, as status reports it: over the last
 * second (RATE_WINDOW_NS), from the byte counts the worker's reporter
 * thread samples every MIGD_STATUS_INTERVAL_MS and once more at the
 * job's end (a job shorter than the window: over the time it ran).  A
 * shorter window than the pacing's bursts would show 0 and more than
 * the cap by turns.
 */
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>

#include "common/util.h"
#include "migd/migd.h"

void pace_start(struct pace *p, uint64_t rate, uint64_t now)
{
	p->rate = rate;
	p->due = now;
}

void pace_set_rate(struct pace *p, uint64_t rate, uint64_t now)
{
	uint64_t owed;

	if (rate == p->rate)
		return;
	if (!rate) {
		if (p->due > now)
			p->due = now;
	} else if (!p->rate) {
		if (p->due < now)
			p->due = now;
	} else if (p->due > now) {
		/* The bytes not yet paid for, in time at the new cap. */
		owed = mul_div(p->due - now, p->rate, rate);
		p->due = owed > UINT64_MAX - now ? UINT64_MAX : now + owed;
	}
	p->rate = rate;
}

/*
 * A packet goes out at line rate, then its channel waits until the cap
 * paid for it: 128 pages (512 KiB) are 8 s of a 64 KiB/s share, so a
 * low cap meant to spare a busy link sent 2 MiB bursts (4 channels) with
 * seconds of silence between.  A packet holds at most PACE_BURST_NS of
 * the cap, and no fewer than PACE_BATCH_MIN pages, so that zero pages
 * (8 bytes each on the wire) do not go one header apiece.
 */
unsigned int pace_batch_pages(uint64_t rate)
{
	uint64_t n;

	if (!rate)
		return STREAM_MAX_BATCH;
	n = mul_div(rate, PACE_BURST_NS, 1000000000ULL * STREAM_PAGE);
	return (unsigned int)MIN(MAX(n, PACE_BATCH_MIN), STREAM_MAX_BATCH);
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

int pace_wait(int fd, int wake_fd, uint64_t ns)
{
	/* Of the socket only its end: shut down both ways (or in error) it
	 * reports POLLHUP (POLLERR) all the same, and the peer's close
	 * POLLRDHUP (a ram channel's peer never shuts down one way only);
	 * nothing else of it wakes this, not even data from the peer.  (A
	 * wake_fd of -1 is not polled.) */
	struct pollfd pfd[2] = {
		{ .fd = fd, .events = POLLRDHUP },
		{ .fd = wake_fd, .events = POLLIN },
	};
	uint64_t until = now_ns() + ns, now;
	struct timespec ts;
	eventfd_t v;
	int n;

	for (;;) {
		ts.tv_sec = ns / 1000000000ULL;
		ts.tv_nsec = ns % 1000000000ULL;
		n = ppoll(pfd, 2, &ts, NULL);
		if (n > 0 && pfd[0].revents)
			return -EPIPE;
		if (n > 0) {
			/* Taken, so that it wakes the next wait only if
			 * written again (EAGAIN: nothing to take). */
			eventfd_read(wake_fd, &v);
			return 1;
		}
		if (n == 0 || errno != EINTR)
			return 0;
		now = now_ns();         /* a signal: the rest of the wait */
		if (now >= until)
			return 0;
		ns = until - now;
	}
}

void rate_start(struct rate_window *rw, uint64_t now, uint64_t bytes)
{
	rw->t[0] = now;
	rw->bytes[0] = bytes;
	rw->head = 1;
	rw->n = 1;
}

uint64_t rate_sample(struct rate_window *rw, uint64_t now, uint64_t bytes)
{
	unsigned int i, k, base;

	/* Full (samples closer than the interval): the oldest goes, and
	 * the window is that much shorter for a while. */
	rw->t[rw->head] = now;
	rw->bytes[rw->head] = bytes;
	rw->head = (rw->head + 1) % RATE_SAMPLES;
	if (rw->n < RATE_SAMPLES)
		rw->n++;
	/* From the newest back: the first at least a window old is the
	 * base, and nothing older is needed again. */
	base = (rw->head + RATE_SAMPLES - rw->n) % RATE_SAMPLES;
	for (k = 2; k <= rw->n; k++) {
		i = (rw->head + RATE_SAMPLES - k) % RATE_SAMPLES;
		if (now - rw->t[i] >= RATE_WINDOW_NS) {
			base = i;
			rw->n = k;
			break;
		}
	}
	if (now <= rw->t[base] || bytes <= rw->bytes[base])
		return 0;
	return mul_div(bytes - rw->bytes[base], 1000000000ULL,
		       now - rw->t[base]);
}
