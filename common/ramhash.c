// SPDX-License-Identifier: GPL-2.0-only
/*
 * RAM hashes for migration verify (see common/ramhash.h).  The page hash
 * runs four independent multiply-xor lanes so it is limited by memory
 * bandwidth rather than by the multiplier's latency.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ramhash.h"

#define K1 0x9e3779b97f4a7c15ULL
#define K2 0xc2b2ae3d27d4eb4fULL
#define K3 0x165667b19e3779f9ULL

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= K2;
	h ^= h >> 29;
	h *= K3;
	return h ^ (h >> 32);
}

uint64_t ramhash_page(const uint8_t *page)
{
	const uint64_t *w = (const uint64_t *)page;
	uint64_t a = K1, b = K2, c = K3, d = ~K1;
	unsigned int i;

	for (i = 0; i < RAMHASH_PAGE / 8; i += 4) {
		a = (a ^ w[i]) * K1;
		b = (b ^ w[i + 1]) * K1;
		c = (c ^ w[i + 2]) * K1;
		d = (d ^ w[i + 3]) * K1;
	}
	return mix(a ^ mix(b ^ mix(c ^ mix(d))));
}

uint64_t ramhash_chunks(uint64_t size)
{
	return (size + RAMHASH_CHUNK - 1) / RAMHASH_CHUNK;
}

/* Fold page hashes in order; a chunk's hash depends on every page's. */
static uint64_t fold(uint64_t acc, uint64_t page_hash)
{
	return mix(acc ^ page_hash) + K1;
}

static uint64_t zero_page_hash(void)
{
	static const uint8_t zero[RAMHASH_PAGE];

	return ramhash_page(zero);
}

/* One chunk: data extents are read, holes count as zero pages. */
static uint64_t hash_chunk(const struct ramhash_region *r, uint64_t start,
			   uint64_t end, uint64_t zero_hash)
{
	uint64_t h = K3, off = start, data, hole;

	while (off < end) {
		data = off;
		hole = end;
		if (r->fd >= 0) {
			off_t d = lseek(r->fd, off, SEEK_DATA);

			data = d < 0 ? end : (uint64_t)d < end ? (uint64_t)d : end;
			if (data < end) {
				off_t e = lseek(r->fd, data, SEEK_HOLE);

				hole = e < 0 || (uint64_t)e > end ? end : (uint64_t)e;
			}
		}
		for (; off < data; off += RAMHASH_PAGE)
			h = fold(h, zero_hash);
		for (; off < hole; off += RAMHASH_PAGE)
			h = fold(h, ramhash_page(r->host + off));
	}
	return h;
}

struct job {
	const struct ramhash_region *r;
	unsigned int nregions;
	uint64_t *out;
	uint64_t total;                 /* chunks in all */
	uint64_t next;                  /* atomic: the next chunk to take */
	uint64_t zero_hash;
};

static void *worker(void *arg)
{
	struct job *j = arg;
	uint64_t c, i, base;
	unsigned int k;

	while ((c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < j->total) {
		base = 0;
		for (k = 0; k < j->nregions; k++) {
			uint64_t n = ramhash_chunks(j->r[k].size);

			if (c < base + n) {
				i = c - base;
				j->out[c] = hash_chunk(&j->r[k], i * RAMHASH_CHUNK,
						       i * RAMHASH_CHUNK + RAMHASH_CHUNK <
						       j->r[k].size ?
						       i * RAMHASH_CHUNK + RAMHASH_CHUNK :
						       j->r[k].size, j->zero_hash);
				break;
			}
			base += n;
		}
	}
	return NULL;
}

int ramhash_compute(const struct ramhash_region *r, unsigned int nregions,
		    unsigned int nthreads, uint64_t *out)
{
	struct job j = { r, nregions, out, 0, 0, zero_page_hash() };
	pthread_t t[16];
	unsigned int k, started = 0;

	for (k = 0; k < nregions; k++) {
		if (r[k].size % RAMHASH_PAGE)
			return -EINVAL;
		j.total += ramhash_chunks(r[k].size);
	}
	if (nthreads > 16)
		nthreads = 16;
	for (k = 1; k < nthreads; k++)
		if (pthread_create(&t[started], NULL, worker, &j) == 0)
			started++;
	worker(&j);
	for (k = 0; k < started; k++)
		pthread_join(t[k], NULL);
	return 0;
}
