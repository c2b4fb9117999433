// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for a channel's pacing under max-bandwidth (migd/pace.c),
 * on a simulated clock: a steady sender goes exactly at the cap, and a
 * sender that was idle may then burst by at most PACE_CREDIT_NS of the
 * cap, however long it was idle, and a cap changed mid-stream holds
 * from then on, for what is still owed too.  And the wait itself: it
 * ends when the channel's socket is shut down (the job's abort) or its
 * eventfd is written (a tune), data does not end it.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "migd/migd.h"

#define SEC 1000000000ULL
#define RATE 1000000ULL                 /* 1 MB/s */
#define PKT (64 * 4096ULL + 64 * 8 + 64)        /* one batch on the wire */

static void no_cap_never_waits(void **state)
{
	struct pace p;
	int i;

	(void)state;
	pace_start(&p, 0, 5 * SEC);
	for (i = 0; i < 1000; i++)
		assert_int_equal(pace_sent(&p, 5 * SEC, 1ULL << 30), 0);
}

/* Back to back, n bytes take n / rate, to the nanosecond. */
static void steady_sender_goes_at_the_cap(void **state)
{
	uint64_t now = 7 * SEC, start = now, sent = 0;
	struct pace p;
	int i;

	(void)state;
	pace_start(&p, RATE, now);
	for (i = 0; i < 100; i++) {
		now += pace_sent(&p, now, PKT);
		sent += PKT;
	}
	assert_int_equal(now - start, sent * SEC / RATE);
}

/* Ten seconds idle, then one second's worth at the cap: it must wait at
 * least a second less the credit (the old pacing let it out at once). */
static void idle_time_is_not_banked(void **state)
{
	uint64_t now = 3 * SEC, wait;
	struct pace p;

	(void)state;
	pace_start(&p, RATE, now);
	assert_int_equal(pace_sent(&p, now, RATE), SEC);
	now += SEC + 10 * SEC;
	wait = pace_sent(&p, now, RATE);
	assert_int_equal(wait, SEC - PACE_CREDIT_NS);
}

/*
 * Sends with idle spells of every length between them: within any window,
 * what went out is at most the cap over the window, plus the credit, plus
 * the one packet that opens the window.
 */
static void any_window_holds_the_cap(void **state)
{
	enum { N = 2000 };
	static uint64_t at[N], bytes[N];
	uint64_t now = SEC, sum;
	struct pace p;
	unsigned int seed = 1;
	int i, j;

	(void)state;
	pace_start(&p, RATE, now);
	for (i = 0; i < N; i++) {
		bytes[i] = 1 + (uint64_t)rand_r(&seed) % (2 * PKT);
		at[i] = now;
		now += pace_sent(&p, now, bytes[i]);
		if (rand_r(&seed) % 8 == 0)     /* idle: up to 2 s */
			now += (uint64_t)rand_r(&seed) % (2 * SEC);
	}
	for (i = 0; i < N; i++) {
		sum = 0;
		for (j = i; j < N; j++) {
			sum += bytes[j];
			/* bytes j was sent at at[j]; the next send comes only
			 * when the window has paid for all but credit. */
			assert_true(sum <= (at[j] - at[i]) * RATE / SEC +
					   PACE_CREDIT_NS * RATE / SEC + bytes[j] + 1);
		}
	}
}

/* The largest counts do not overflow the arithmetic. */
static void large_counts(void **state)
{
	uint64_t now = 1000 * SEC;
	struct pace p;

	(void)state;
	pace_start(&p, 64 * 1024, now);
	assert_int_equal(pace_sent(&p, now, 1ULL << 40),
			 (1ULL << 40) / (64 * 1024) * SEC);
}

#define TICK (MIGD_STATUS_INTERVAL_MS * 1000000ULL)

/*
 * A channel paced to RATE sends a second's worth in one burst per second:
 * sampled every TICK, a window of one tick saw 5 x RATE, then 0 four
 * times.  Over the last second it is RATE at every sample.
 */
static void paced_bursts_average_out(void **state)
{
	struct rate_window rw;
	uint64_t bytes = 0;
	int k;

	(void)state;
	rate_start(&rw, 0, 0);
	for (k = 1; k <= 50; k++) {
		if (k % 5 == 1)
			bytes += RATE;
		if (k >= 5)
			assert_int_equal(rate_sample(&rw, k * TICK, bytes), RATE);
		else
			rate_sample(&rw, k * TICK, bytes);
	}
}

/* Younger than a second: what it sent since it started, over that time. */
static void young_channel(void **state)
{
	struct rate_window rw;

	(void)state;
	rate_start(&rw, 3 * SEC, 0);
	assert_int_equal(rate_sample(&rw, 3 * SEC + TICK, RATE / 5), RATE);
	assert_int_equal(rate_sample(&rw, 3 * SEC + 2 * TICK, RATE / 5), RATE / 2);
	/* A sample at the same instant divides by nothing. */
	rate_start(&rw, SEC, 0);
	assert_int_equal(rate_sample(&rw, SEC, 100), 0);
}

/* When a channel stops, its rate falls to 0 within a second and a tick,
 * and no sooner than the second has passed. */
static void idle_channel_reaches_zero(void **state)
{
	struct rate_window rw;
	uint64_t r, last = UINT64_MAX;
	int k;

	(void)state;
	rate_start(&rw, 0, 0);
	for (k = 1; k <= 10; k++)
		rate_sample(&rw, k * TICK, k * RATE / 5);
	for (k = 11; k <= 20; k++) {
		r = rate_sample(&rw, k * TICK, 10 * RATE / 5);
		assert_true(r <= last);
		last = r;
		if ((k - 10) * TICK < SEC)
			assert_true(r > 0);
		if ((k - 10) * TICK >= SEC + TICK)
			assert_int_equal(r, 0);
	}
}

/*
 * A steady sender (one byte a microsecond) sampled at uneven times: late
 * ticks, early ones, runs of samples a few microseconds apart that fill
 * the ring.  Whatever the window that leaves, always exactly its rate.
 */
static void uneven_samples(void **state)
{
	const uint64_t us = 1000;
	struct rate_window rw;
	unsigned int seed = 7;
	uint64_t now = 5 * SEC, start = now;
	int k;

	(void)state;
	rate_start(&rw, now, 0);
	for (k = 0; k < 2000; k++) {
		if (k % 100 < 20)
			now += us * (1 + (uint64_t)rand_r(&seed) % 1000);
		else
			now += us * (TICK / 2 / us + (uint64_t)rand_r(&seed) % (2 * TICK / us));
		assert_int_equal(rate_sample(&rw, now, (now - start) / us), RATE);
	}
}

/* Large counts (a 400 Gbit/s channel) do not overflow. */
static void large_rates(void **state)
{
	struct rate_window rw;

	(void)state;
	rate_start(&rw, SEC, 1ULL << 60);
	assert_int_equal(rate_sample(&rw, 2 * SEC, (1ULL << 60) + (50ULL << 30)),
			 50ULL << 30);
}

/* A cap changed between packets: what was sent is paid at the old rate,
 * the next bytes at the new one; a cap set after none gives no credit. */
static void cap_changes_between_packets(void **state)
{
	uint64_t now = 2 * SEC;
	struct pace p;

	(void)state;
	pace_start(&p, RATE, now);
	now += pace_sent(&p, now, RATE);                /* 1 s at 1 MB/s */
	pace_set_rate(&p, 64 * RATE, now);
	assert_int_equal(pace_sent(&p, now, 64 * RATE), SEC);
	pace_set_rate(&p, 0, now);
	assert_int_equal(pace_sent(&p, now, 1ULL << 30), 0);
	now += 30 * SEC;                                /* uncapped a while */
	pace_set_rate(&p, RATE, now);
	assert_int_equal(pace_sent(&p, now, RATE / 2), SEC / 2);
}

/*
 * A packet under a cap holds at most 100 ms of it: a low cap gives small
 * packets, not multi-second bursts (128 pages at 64 KiB/s were 8 s);
 * never fewer than 8 pages, never more than a packet may hold.
 */
static void packets_hold_a_tenth_of_a_second(void **state)
{
	const uint64_t kib = 1024;
	uint64_t rate;

	(void)state;
	assert_int_equal(pace_batch_pages(0), STREAM_MAX_BATCH);
	assert_int_equal(pace_batch_pages(1), PACE_BATCH_MIN);
	assert_int_equal(pace_batch_pages(64 * kib), PACE_BATCH_MIN);
	assert_int_equal(pace_batch_pages(1024 * kib), 25);
	assert_int_equal(pace_batch_pages(1ULL << 62), STREAM_MAX_BATCH);
	for (rate = 400 * kib; rate < 8192 * kib; rate += 100 * kib) {
		unsigned int n = pace_batch_pages(rate);

		assert_true(n >= PACE_BATCH_MIN && n <= STREAM_MAX_BATCH);
		assert_true(n == STREAM_MAX_BATCH ||
			    (uint64_t)n * STREAM_PAGE * SEC <= rate * PACE_BURST_NS);
	}
}

/*
 * A cap changed while a channel waits (a tune wakes it): what it still
 * owes is owed at the new cap, more or less of it; a cap lifted owes
 * nothing, and one set again counts from then, not from the debt.
 */
static void cap_changes_mid_wait(void **state)
{
	uint64_t now = 4 * SEC;
	struct pace p;

	(void)state;
	pace_start(&p, RATE, now);
	assert_int_equal(pace_sent(&p, now, 8 * RATE), 8 * SEC);
	now += SEC;                                     /* 7 s of RATE owed */
	assert_int_equal(pace_sent(&p, now, 0), 7 * SEC);
	pace_set_rate(&p, 7 * RATE, now);
	assert_int_equal(pace_sent(&p, now, 0), SEC);
	pace_set_rate(&p, 7 * RATE / 2, now);           /* lowered: longer */
	assert_int_equal(pace_sent(&p, now, 0), 2 * SEC);
	now += SEC;                                     /* half paid */
	pace_set_rate(&p, 7 * RATE, now);
	assert_int_equal(pace_sent(&p, now, 0), SEC / 2);
	pace_set_rate(&p, 0, now);                      /* lifted */
	assert_int_equal(pace_sent(&p, now, 0), 0);
	pace_set_rate(&p, RATE, now);
	assert_int_equal(pace_sent(&p, now, 0), 0);
	assert_int_equal(pace_sent(&p, now, RATE / 2), SEC / 2);
	/* The largest debt at the lowest cap, repriced at the lowest rate
	 * there is: saturated, not wrapped. */
	pace_start(&p, 1ULL << 40, now);
	pace_sent(&p, now, 1ULL << 62);
	pace_set_rate(&p, 1, now);
	assert_true(pace_sent(&p, now, 0) >= (1ULL << 62) / 2);
}

/* A wait the job's abort must cut: far longer than any test runs. */
#define LONG_WAIT (600 * SEC)

/* A socket's end, soon: shut down both ways, or closed. */
struct end_soon {
	int fd;
	bool close;
};

static void *end_soon(void *arg)
{
	struct end_soon *e = arg;

	usleep(100000);         /* most likely while pace_wait waits */
	if (e->close)
		close(e->fd);
	else
		shutdown(e->fd, SHUT_RDWR);
	return NULL;
}

/* A live socket waits its time out, whatever the peer sends; a shut one
 * (before or during the wait) ends it at once. */
static void wait_ends_on_shutdown(void **state)
{
	struct end_soon e;
	pthread_t t;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pace_wait(sv[0], -1, 1000000), 0);
	assert_int_equal(write(sv[1], "x", 1), 1);
	assert_int_equal(pace_wait(sv[0], -1, 1000000), 0);
	e = (struct end_soon){ .fd = sv[0] };
	assert_int_equal(pthread_create(&t, NULL, end_soon, &e), 0);
	assert_int_equal(pace_wait(sv[0], -1, LONG_WAIT), -EPIPE);
	pthread_join(t, NULL);
	assert_int_equal(pace_wait(sv[0], -1, LONG_WAIT), -EPIPE);
	close(sv[0]);
	close(sv[1]);
}

/* The peer's close (a destination that fails or pauses) ends it too. */
static void wait_ends_on_peer_close(void **state)
{
	struct end_soon e;
	pthread_t t;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	e = (struct end_soon){ .fd = sv[1], .close = true };
	assert_int_equal(pthread_create(&t, NULL, end_soon, &e), 0);
	assert_int_equal(pace_wait(sv[0], -1, LONG_WAIT), -EPIPE);
	pthread_join(t, NULL);
	close(sv[0]);
}

static void *wake_soon(void *arg)
{
	usleep(100000);         /* most likely while pace_wait waits */
	eventfd_write(*(int *)arg, 1);
	return NULL;
}

/* A write of the eventfd (a tune), before or during the wait, ends it
 * at once, once: the wait takes it.  A shut socket wins over it. */
static void wait_ends_on_wake(void **state)
{
	pthread_t t;
	int sv[2], efd;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(efd >= 0);
	assert_int_equal(pace_wait(sv[0], efd, 1000000), 0);
	assert_int_equal(pthread_create(&t, NULL, wake_soon, &efd), 0);
	assert_int_equal(pace_wait(sv[0], efd, LONG_WAIT), 1);
	pthread_join(t, NULL);
	assert_int_equal(pace_wait(sv[0], efd, 1000000), 0);
	assert_int_equal(eventfd_write(efd, 1), 0);
	assert_int_equal(eventfd_write(efd, 1), 0);
	assert_int_equal(pace_wait(sv[0], efd, LONG_WAIT), 1);
	assert_int_equal(pace_wait(sv[0], efd, 1000000), 0);
	assert_int_equal(eventfd_write(efd, 1), 0);
	shutdown(sv[0], SHUT_RDWR);
	assert_int_equal(pace_wait(sv[0], efd, LONG_WAIT), -EPIPE);
	close(efd);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_cap_never_waits),
		cmocka_unit_test(steady_sender_goes_at_the_cap),
		cmocka_unit_test(idle_time_is_not_banked),
		cmocka_unit_test(cap_changes_between_packets),
		cmocka_unit_test(any_window_holds_the_cap),
		cmocka_unit_test(large_counts),
		cmocka_unit_test(paced_bursts_average_out),
		cmocka_unit_test(young_channel),
		cmocka_unit_test(idle_channel_reaches_zero),
		cmocka_unit_test(uneven_samples),
		cmocka_unit_test(large_rates),
		cmocka_unit_test(cap_changes_mid_wait),
		cmocka_unit_test(packets_hold_a_tenth_of_a_second),
		cmocka_unit_test(wait_ends_on_shutdown),
		cmocka_unit_test(wait_ends_on_peer_close),
		cmocka_unit_test(wait_ends_on_wake),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
