// SPDX-License-Identifier: GPL-2.0-only
/* Unit tests for common/bitmap.c, checked against a bit-by-bit model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/bitmap.h"

#define NBITS 1000      /* not a multiple of 64 on purpose */

static uint64_t map[BITMAP_WORDS(NBITS) + 1];
static bool model[NBITS];

static int setup(void **state)
{
	memset(map, 0, sizeof(map));
	memset(model, 0, sizeof(model));
	srandom(1);
	return 0;
}

static void check_model(void)
{
	uint64_t i, n = 0;

	for (i = 0; i < NBITS; i++) {
		if (bitmap_test(map, i) != model[i])
			fail_msg("bit %lu differs", (unsigned long)i);
		n += model[i];
	}
	assert_int_equal(bitmap_count(map, NBITS), n);
	assert_int_equal(map[BITMAP_WORDS(NBITS)], 0);  /* no overrun */
}

static void test_set_clear(void **state)
{
	assert_int_equal(BITMAP_WORDS(64), 1);
	assert_int_equal(BITMAP_WORDS(65), 2);
	assert_int_equal(BITMAP_BYTES(65), 16);
	bitmap_set(map, 0);
	bitmap_set(map, 63);
	bitmap_set(map, 64);
	bitmap_set(map, NBITS - 1);
	assert_int_equal(map[0], 0x8000000000000001ull);
	assert_int_equal(map[1], 1);
	model[0] = model[63] = model[64] = model[NBITS - 1] = true;
	check_model();
	bitmap_clear(map, 63);
	model[63] = false;
	check_model();
}

static void test_ranges(void **state)
{
	int round;
	uint64_t start, count, i;

	for (round = 0; round < 2000; round++) {
		start = (uint64_t)random() % NBITS;
		count = (uint64_t)random() % (NBITS - start + 1);
		if (round % 5 == 0)
			count %= 3;
		bool set = random() & 1;

		if (set)
			bitmap_set_range(map, start, count);
		else if (round & 1)
			bitmap_clear_range_atomic(map, start, count);
		else
			bitmap_clear_range(map, start, count);
		for (i = start; i < start + count; i++)
			model[i] = set;
		if (round % 50 == 0)
			check_model();
	}
	check_model();
	bitmap_set_range(map, 0, NBITS);
	assert_int_equal(bitmap_count(map, NBITS), NBITS);
	assert_int_equal(map[BITMAP_WORDS(NBITS)], 0);
	bitmap_clear_range(map, 0, NBITS);
	assert_int_equal(bitmap_count(map, NBITS), 0);
}

static void test_count_masks_tail(void **state)
{
	map[0] = ~0ull;
	map[1] = ~0ull;
	assert_int_equal(bitmap_count(map, 64), 64);
	assert_int_equal(bitmap_count(map, 70), 70);
	assert_int_equal(bitmap_count(map, 3), 3);
	assert_int_equal(bitmap_count(map, 0), 0);
}

static void test_next(void **state)
{
	uint64_t i, want;

	for (i = 0; i < NBITS; i++) {
		model[i] = random() % 17 == 0;
		if (model[i])
			bitmap_set(map, i);
	}
	for (i = 0; i <= NBITS; i++) {
		for (want = i; want < NBITS && !model[want]; want++)
			;
		assert_int_equal(bitmap_next_set(map, NBITS, i), want);
		for (want = i; want < NBITS && model[want]; want++)
			;
		assert_int_equal(bitmap_next_clear(map, NBITS, i), want);
	}
	assert_int_equal(bitmap_next_set(map, NBITS, NBITS + 5), NBITS);
}

static void test_next_stops_at_nbits(void **state)
{
	map[0] = 1ull << 40;
	assert_int_equal(bitmap_next_set(map, 40, 0), 40);
	assert_int_equal(bitmap_next_set(map, 41, 0), 40);
	map[0] = ~0ull;
	assert_int_equal(bitmap_next_clear(map, 64, 0), 64);
	assert_int_equal(bitmap_next_clear(map, 30, 0), 30);
	map[1] = ~0ull;
	map[2] = ~(1ull << 5);
	assert_int_equal(bitmap_next_clear(map, 192, 3), 133);
}

static void test_or(void **state)
{
	uint64_t src[BITMAP_WORDS(NBITS) + 1] = { 0 };

	map[0] = 0xf0;
	src[0] = 0xff;
	src[5] = 1ull << 63;
	src[15] = ~0ull;        /* bits 960..1023, only 960..999 count */
	assert_int_equal(bitmap_or(map, src, NBITS), 4 + 1 + 40);
	assert_int_equal(map[0], 0xff);
	assert_int_equal(map[15], (1ull << 40) - 1);
	assert_int_equal(bitmap_or(map, src, NBITS), 0);
}

static void test_atomic(void **state)
{
	bitmap_set_atomic(map, 77);
	assert_true(bitmap_test(map, 77));
	assert_true(bitmap_test_atomic(map, 77));
	assert_false(bitmap_test_atomic(map, 76));
	assert_false(bitmap_test_atomic(map, 78));
	assert_true(bitmap_test_and_clear_atomic(map, 77));
	assert_false(bitmap_test_atomic(map, 77));
	assert_false(bitmap_test(map, 77));
	assert_false(bitmap_test_and_clear_atomic(map, 77));
	assert_int_equal(bitmap_count(map, NBITS), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_set_clear, setup),
		cmocka_unit_test_setup(test_ranges, setup),
		cmocka_unit_test_setup(test_count_masks_tail, setup),
		cmocka_unit_test_setup(test_next, setup),
		cmocka_unit_test_setup(test_next_stops_at_nbits, setup),
		cmocka_unit_test_setup(test_or, setup),
		cmocka_unit_test_setup(test_atomic, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
