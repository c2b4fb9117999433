// SPDX-License-Identifier: GPL-2.0-only
/* Unit tests for common/ratelim.c: a few notes per window, the rest counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/ratelim.h"

#define S 1000000000ull

static void test_burst_then_count(void **state)
{
	struct ratelim r = { 0 };
	unsigned int held, i;

	(void)state;
	/* The first window opens with the first note, at any time (0 too). */
	for (i = 0; i < 3; i++) {
		assert_true(ratelim_take(&r, 0 + i, 10 * S, 3, &held));
		assert_int_equal(held, 0);
	}
	for (i = 0; i < 7; i++) {
		assert_false(ratelim_take(&r, 5 * S, 10 * S, 3, &held));
		assert_int_equal(held, 0);
	}
	/* Still in the window (it began at 0): held. */
	assert_false(ratelim_take(&r, 10 * S - 1, 10 * S, 3, &held));
	/* A new one: said again, and the 8 held back are told. */
	assert_true(ratelim_take(&r, 10 * S, 10 * S, 3, &held));
	assert_int_equal(held, 8);
	assert_true(ratelim_take(&r, 11 * S, 10 * S, 3, &held));
	assert_int_equal(held, 0);
}

static void test_flush(void **state)
{
	struct ratelim r = { 0 };
	unsigned int held;

	(void)state;
	assert_true(ratelim_take(&r, 100 * S, 10 * S, 1, &held));
	assert_false(ratelim_take(&r, 101 * S, 10 * S, 1, &held));
	assert_false(ratelim_take(&r, 102 * S, 10 * S, 1, &held));
	assert_int_equal(ratelim_flush(&r), 2);
	assert_int_equal(ratelim_flush(&r), 0);
	/* Flushed: the next window has nothing more to tell. */
	assert_true(ratelim_take(&r, 200 * S, 10 * S, 1, &held));
	assert_int_equal(held, 0);
}

static void test_burst_zero(void **state)
{
	struct ratelim r = { 0 };
	unsigned int held;

	(void)state;
	/* burst 0: nothing said, all counted. */
	assert_false(ratelim_take(&r, S, 10 * S, 0, &held));
	assert_false(ratelim_take(&r, 2 * S, 10 * S, 0, &held));
	assert_false(ratelim_take(&r, 20 * S, 10 * S, 0, &held));
	assert_int_equal(held, 2);
}

/* A burst, then silence: the count is due once the window ends, for the
 * caller's timer to say, though no note comes to carry it. */
static void test_due_after_silence(void **state)
{
	struct ratelim r = { 0 };
	unsigned int held;

	(void)state;
	assert_int_equal(ratelim_due_in(&r, 0, 10 * S), UINT64_MAX);
	assert_true(ratelim_take(&r, 100 * S, 10 * S, 1, &held));
	/* Nothing held: nothing due, however late. */
	assert_int_equal(ratelim_due_in(&r, 200 * S, 10 * S), UINT64_MAX);
	assert_int_equal(ratelim_due(&r, 200 * S, 10 * S), 0);
	assert_false(ratelim_take(&r, 101 * S, 10 * S, 1, &held));
	assert_false(ratelim_take(&r, 102 * S, 10 * S, 1, &held));
	/* Due when the window that began at 100 s ends. */
	assert_int_equal(ratelim_due_in(&r, 103 * S, 10 * S), 7 * S);
	assert_int_equal(ratelim_due(&r, 110 * S - 1, 10 * S), 0);
	assert_int_equal(ratelim_due_in(&r, 110 * S, 10 * S), 0);
	assert_int_equal(ratelim_due(&r, 110 * S, 10 * S), 2);
	/* Said once: not again, neither due nor with the next note. */
	assert_int_equal(ratelim_due(&r, 111 * S, 10 * S), 0);
	assert_int_equal(ratelim_due_in(&r, 111 * S, 10 * S), UINT64_MAX);
	assert_true(ratelim_take(&r, 300 * S, 10 * S, 1, &held));
	assert_int_equal(held, 0);
	/* The new window's own count is due at its own end. */
	assert_false(ratelim_take(&r, 305 * S, 10 * S, 1, &held));
	assert_int_equal(ratelim_due_in(&r, 305 * S, 10 * S), 5 * S);
	assert_int_equal(ratelim_due(&r, 320 * S, 10 * S), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_count),
		cmocka_unit_test(test_flush),
		cmocka_unit_test(test_burst_zero),
		cmocka_unit_test(test_due_after_silence),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
