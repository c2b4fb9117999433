/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Bitmaps of 64-bit words, bit i in word i/64 at position i%64 (the
 * layout KVM's dirty log uses on x86-64, so KVM's bitmaps can be ORed in
 * word by word).  The caller owns the memory; nbits bounds every access.
 */
#ifndef TERN_BITMAP_H
#define TERN_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BITMAP_WORDS(nbits) (((nbits) + 63) / 64)
#define BITMAP_BYTES(nbits) (BITMAP_WORDS(nbits) * 8)

void bitmap_set(uint64_t *map, uint64_t bit);
void bitmap_clear(uint64_t *map, uint64_t bit);
bool bitmap_test(const uint64_t *map, uint64_t bit);
/* Atomic (relaxed) set and test for maps shared between threads or
 * processes. */
void bitmap_set_atomic(uint64_t *map, uint64_t bit);
bool bitmap_test_atomic(const uint64_t *map, uint64_t bit);
/* Test and clear in one atomic step; returns the old value. */
bool bitmap_test_and_clear_atomic(uint64_t *map, uint64_t bit);

void bitmap_set_range(uint64_t *map, uint64_t start, uint64_t count);
void bitmap_clear_range(uint64_t *map, uint64_t start, uint64_t count);
/* A word at a time, atomically (relaxed): other threads may set bits of
 * the same words meanwhile. */
void bitmap_clear_range_atomic(uint64_t *map, uint64_t start, uint64_t count);
/* Relaxed atomic loads: other threads may set bits meanwhile. */
uint64_t bitmap_count(const uint64_t *map, uint64_t nbits);
/* First set bit >= start, or nbits when none. */
uint64_t bitmap_next_set(const uint64_t *map, uint64_t nbits, uint64_t start);
/* First clear bit >= start, or nbits when none. */
uint64_t bitmap_next_clear(const uint64_t *map, uint64_t nbits,
			   uint64_t start);
/* dst |= src over nbits; returns how many bits were newly set in dst. */
uint64_t bitmap_or(uint64_t *dst, const uint64_t *src, uint64_t nbits);

#endif
