// SPDX-License-Identifier: GPL-2.0-only
/*
 * Word-based bitmaps: the dirty bitmap shared between the vmm and migd,
 * the received-pages bitmap of postcopy, the present-pages bitmap of the
 * mapped-ram file.  Ranges and scans work a 64-bit word at a time.
 */
#include "common/bitmap.h"

#define WORD(bit) ((bit) / 64)
#define MASK(bit) (1ull << ((bit) % 64))

/* Bits [lo, 64) of a word, and bits [0, hi) (hi in 1..64). */
static inline uint64_t mask_from(uint64_t lo)
{
	return ~0ull << (lo % 64);
}

static inline uint64_t mask_below(uint64_t hi)
{
	return hi >= 64 ? ~0ull : (1ull << hi) - 1;
}

void bitmap_set(uint64_t *map, uint64_t bit)
{
	map[WORD(bit)] |= MASK(bit);
}

void bitmap_clear(uint64_t *map, uint64_t bit)
{
	map[WORD(bit)] &= ~MASK(bit);
}

bool bitmap_test(const uint64_t *map, uint64_t bit)
{
	return map[WORD(bit)] & MASK(bit);
}

void bitmap_set_atomic(uint64_t *map, uint64_t bit)
{
	__atomic_fetch_or(&map[WORD(bit)], MASK(bit), __ATOMIC_RELAXED);
}

bool bitmap_test_atomic(const uint64_t *map, uint64_t bit)
{
	return __atomic_load_n(&map[WORD(bit)], __ATOMIC_RELAXED) & MASK(bit);
}

bool bitmap_test_and_clear_atomic(uint64_t *map, uint64_t bit)
{
	uint64_t old = __atomic_fetch_and(&map[WORD(bit)], ~MASK(bit),
					  __ATOMIC_RELAXED);

	return old & MASK(bit);
}

enum range_op { RANGE_SET, RANGE_CLEAR, RANGE_CLEAR_ATOMIC };

/* Apply op to [start, start + count) word by word. */
static void bitmap_range(uint64_t *map, uint64_t start, uint64_t count,
			 enum range_op op)
{
	uint64_t end = start + count, w = WORD(start), last, m;

	if (count == 0)
		return;
	last = WORD(end - 1);
	for (; w <= last; w++) {
		m = ~0ull;
		if (w == WORD(start))
			m &= mask_from(start);
		if (w == last)
			m &= mask_below(end - last * 64);
		if (op == RANGE_SET)
			map[w] |= m;
		else if (op == RANGE_CLEAR)
			map[w] &= ~m;
		else
			__atomic_fetch_and(&map[w], ~m, __ATOMIC_RELAXED);
	}
}

void bitmap_set_range(uint64_t *map, uint64_t start, uint64_t count)
{
	bitmap_range(map, start, count, RANGE_SET);
}

void bitmap_clear_range(uint64_t *map, uint64_t start, uint64_t count)
{
	bitmap_range(map, start, count, RANGE_CLEAR);
}

void bitmap_clear_range_atomic(uint64_t *map, uint64_t start, uint64_t count)
{
	bitmap_range(map, start, count, RANGE_CLEAR_ATOMIC);
}

uint64_t bitmap_count(const uint64_t *map, uint64_t nbits)
{
	uint64_t n = 0, w, full = nbits / 64;

	for (w = 0; w < full; w++)
		n += (uint64_t)__builtin_popcountll(__atomic_load_n(&map[w],
								   __ATOMIC_RELAXED));
	if (nbits % 64)
		n += (uint64_t)__builtin_popcountll(__atomic_load_n(&map[full],
								   __ATOMIC_RELAXED) &
						    mask_below(nbits % 64));
	return n;
}

/* First bit >= start in (map ^ flip), or nbits. */
static uint64_t bitmap_scan(const uint64_t *map, uint64_t nbits,
			    uint64_t start, uint64_t flip)
{
	uint64_t w, words = BITMAP_WORDS(nbits), v, bit;

	if (start >= nbits)
		return nbits;
	w = WORD(start);
	v = (map[w] ^ flip) & mask_from(start);
	for (;;) {
		if (v) {
			bit = w * 64 + (uint64_t)__builtin_ctzll(v);
			return bit < nbits ? bit : nbits;
		}
		if (++w >= words)
			return nbits;
		v = map[w] ^ flip;
	}
}

uint64_t bitmap_next_set(const uint64_t *map, uint64_t nbits, uint64_t start)
{
	return bitmap_scan(map, nbits, start, 0);
}

uint64_t bitmap_next_clear(const uint64_t *map, uint64_t nbits,
			   uint64_t start)
{
	return bitmap_scan(map, nbits, start, ~0ull);
}

uint64_t bitmap_or(uint64_t *dst, const uint64_t *src, uint64_t nbits)
{
	uint64_t w, words = BITMAP_WORDS(nbits), n = 0, s;

	for (w = 0; w < words; w++) {
		s = src[w];
		if (w == words - 1 && nbits % 64)
			s &= mask_below(nbits % 64);
		n += (uint64_t)__builtin_popcountll(s & ~dst[w]);
		dst[w] |= s;
	}
	return n;
}
