// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for common/bgwork.c: pieces run in threads of their own and
 * finish on the event loop's thread; a piece still blocked when the set
 * stops is left to its thread, and those that end in time are dropped.
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/bgwork.h"
#include "common/util.h"

struct piece {
	struct bgwork work;
	int gate;               /* run reads a byte from it first, if >= 0 */
	pthread_t ran_on;
	bool finished, dropped;
	pthread_t finished_on;
};

static unsigned int nfinished;

static void piece_run(struct bgwork *w)
{
	struct piece *p = container_of(w, struct piece, work);
	char c;

	if (p->gate >= 0)
		assert_int_equal(read(p->gate, &c, 1), 1);
	p->ran_on = pthread_self();
}

static void piece_finish(struct bgwork *w)
{
	struct piece *p = container_of(w, struct piece, work);

	p->finished = true;
	p->finished_on = pthread_self();
	nfinished++;
}

static void piece_drop(struct bgwork *w)
{
	container_of(w, struct piece, work)->dropped = true;
}

/* Three pieces: each runs off the loop's thread and finishes on it. */
static void test_finish_on_loop(void **state)
{
	struct event_base *base = event_base_new();
	struct piece p[3];
	struct bgwork_set s;
	int i;

	(void)state;
	assert_non_null(base);
	assert_int_equal(bgwork_init(&s, base), 0);
	nfinished = 0;
	for (i = 0; i < 3; i++) {
		p[i] = (struct piece){ .gate = -1 };
		assert_int_equal(bgwork_start(&s, &p[i].work, piece_run,
					      piece_finish), 0);
	}
	assert_int_equal(s.n, 3);
	for (i = 0; i < 5000 && nfinished < 3; i++)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(nfinished, 3);
	assert_int_equal(s.n, 0);
	for (i = 0; i < 3; i++) {
		assert_true(p[i].finished);
		assert_false(pthread_equal(p[i].ran_on, pthread_self()));
		assert_true(pthread_equal(p[i].finished_on, pthread_self()));
	}
	assert_int_equal(bgwork_stop(&s, 0, piece_drop), 0);
	event_base_free(base);
}

/* At the end: one piece ends within the wait and is dropped (not
 * finished); one still blocked is left, and ends later on its own. */
static void test_stop_leaves_blocked(void **state)
{
	static struct piece quick, stuck;       /* stuck outlives the set */
	struct event_base *base = event_base_new();
	struct bgwork_set s;
	int gate[2];

	(void)state;
	assert_non_null(base);
	assert_int_equal(pipe(gate), 0);
	assert_int_equal(bgwork_init(&s, base), 0);
	nfinished = 0;
	quick = (struct piece){ .gate = -1 };
	stuck = (struct piece){ .gate = gate[0] };
	assert_int_equal(bgwork_start(&s, &quick.work, piece_run, piece_finish), 0);
	assert_int_equal(bgwork_start(&s, &stuck.work, piece_run, piece_finish), 0);
	assert_int_equal(bgwork_stop(&s, 200, piece_drop), 1);
	assert_true(quick.dropped);
	assert_false(quick.finished || stuck.finished || stuck.dropped);
	assert_int_equal(nfinished, 0);
	event_base_free(base);
	/* Let it go: its done flag and eventfd write still land. */
	assert_int_equal(write(gate[1], "x", 1), 1);
	while (!__atomic_load_n(&stuck.work.done, __ATOMIC_ACQUIRE))
		usleep(1000);   /* bounded by main()'s alarm */
	close(gate[0]);
	close(gate[1]);
}

/* A set that is not watching takes no work. */
static void test_start_after_stop(void **state)
{
	struct event_base *base = event_base_new();
	struct bgwork_set s;
	struct piece p = { .gate = -1 };

	(void)state;
	assert_int_equal(bgwork_init(&s, base), 0);
	assert_int_equal(bgwork_stop(&s, 0, NULL), 0);
	assert_int_equal(bgwork_start(&s, &p.work, piece_run, piece_finish), -ENOSYS);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_finish_on_loop),
		cmocka_unit_test(test_stop_leaves_blocked),
		cmocka_unit_test(test_start_after_stop),
	};

	/* Bounds every wait below: a hang fails the test (SIGALRM). */
	alarm(60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
