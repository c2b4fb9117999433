/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Hashes of guest RAM for end-to-end verification of a migration: one
 * 64-bit hash per RAMHASH_CHUNK of each region (in layout order), made of
 * the hashes of its pages, where a page the memfd holds as a hole hashes
 * like a zero page without being read (so hashing never allocates memory
 * of a sparse guest).  Both ends compute them the same way; pure
 * computation on mapped memfds, threads optional.
 */
#ifndef TERN_RAMHASH_H
#define TERN_RAMHASH_H

#include <stddef.h>
#include <stdint.h>

#define RAMHASH_PAGE 4096u
#define RAMHASH_CHUNK (2u << 20)
#define RAMHASH_MAX_REGIONS 8   /* regions a call takes (-EINVAL beyond) */

struct ramhash_region {
	const uint8_t *host;
	uint64_t size;                  /* a multiple of RAMHASH_PAGE */
	int fd;                         /* the memfd, to find holes; -1: read all */
};

uint64_t ramhash_page(const uint8_t *page);
uint64_t ramhash_zero_page(void);
/* A page-hash table's entry (below) for the page's data; NULL: a zero
 * page's, 0. */
uint64_t ramhash_entry(const uint8_t *page);
/* Any bytes (used for the migration stream's packet sums too). */
uint64_t ramhash_buf(const void *buf, size_t len);
/* Fold hashes in order: fold(fold(0, h1), h2) and so on. */
uint64_t ramhash_fold(uint64_t acc, uint64_t h);
/* Chunks in a region of size bytes (the last may be short). */
uint64_t ramhash_chunks(uint64_t size);
/*
 * Hash every chunk of the regions into out (room for the sum of
 * ramhash_chunks), using up to nthreads threads.  0 or -errno.
 */
int ramhash_compute(const struct ramhash_region *r, unsigned int nregions,
		    unsigned int nthreads, uint64_t *out);
/*
 * A page-hash table has one entry per page of the regions, in layout
 * order: the page's hash XOR the zero page's hash.  So a zero page's
 * entry is 0, and a zeroed table (a fresh memfd) describes all-zero RAM
 * with no entry written: holes cost nothing, as in hashing.
 *
 * ramhash_compute_pages: as ramhash_compute, and the entries of the pages
 * that hold data into pages (zeroed by the caller: a hole's entry is not
 * written).
 */
int ramhash_compute_pages(const struct ramhash_region *r, unsigned int nregions,
			  unsigned int nthreads, uint64_t *out, uint64_t *pages);
/*
 * The chunk hashes (as ramhash_compute gives them) of regions of sizes[k]
 * bytes whose page-hash table is pages: what a side that hashed each page
 * on its own, as it placed it, compares.
 */
void ramhash_fold_pages(const uint64_t *pages, const uint64_t *sizes,
			unsigned int nregions, uint64_t *out);
/*
 * Postcopy verify shares a page-hash table with faultd in the needed
 * bitmap's memfd (faultd.proto): it starts at this offset, and the memfd
 * is then ramhash_shared_size() bytes.
 */
static inline uint64_t ramhash_table_offset(uint64_t bitmap_bytes)
{
	return (bitmap_bytes + 4095) & ~4095ULL;
}

static inline uint64_t ramhash_shared_size(uint64_t bitmap_bytes, uint64_t pages)
{
	return ramhash_table_offset(bitmap_bytes) + pages * sizeof(uint64_t);
}
/* The bytes hashing would read: what the memfds hold (holes cost next to
 * nothing); a region without a memfd counts whole. */
uint64_t ramhash_data(const struct ramhash_region *r, unsigned int nregions);
/*
 * How fast hashing goes now, in bytes/s into *rate: up to `sample` bytes
 * of the regions' data hashed in nthreads threads and timed (0 when there
 * is no data).  0 or -errno.
 */
int ramhash_rate(const struct ramhash_region *r, unsigned int nregions,
		 unsigned int nthreads, uint64_t sample, uint64_t *rate);

#endif
