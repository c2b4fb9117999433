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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_count),
		cmocka_unit_test(test_flush),
		cmocka_unit_test(test_burst_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
