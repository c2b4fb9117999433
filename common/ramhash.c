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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ramhash.h"
#include "common/util.h"

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

static uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* Four lanes of multiply-xor over 32-byte blocks (about 8 bytes a cycle);
 * a short tail is padded with zeros, the length mixed in. */
uint64_t ramhash_buf(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t a = K1, b = K2, c = K3, d = ~K1;
	uint8_t tail[32] = { 0 };
	size_t i, n = len / 32 * 32;

	for (i = 0; i < n; i += 32) {
		a = (a ^ load64(p + i)) * K1;
		b = (b ^ load64(p + i + 8)) * K1;
		c = (c ^ load64(p + i + 16)) * K1;
		d = (d ^ load64(p + i + 24)) * K1;
	}
	if (len > n) {
		memcpy(tail, p + n, len - n);
		a = (a ^ load64(tail)) * K1;
		b = (b ^ load64(tail + 8)) * K1;
		c = (c ^ load64(tail + 16)) * K1;
		d = (d ^ load64(tail + 24)) * K1;
	}
	return mix(a ^ mix(b ^ mix(c ^ mix(d ^ len))));
}

uint64_t ramhash_page(const uint8_t *page)
{
	return ramhash_buf(page, RAMHASH_PAGE);
}

uint64_t ramhash_chunks(uint64_t size)
{
	return (size + RAMHASH_CHUNK - 1) / RAMHASH_CHUNK;
}

/* Fold hashes in order; the result depends on every one and their order. */
uint64_t ramhash_fold(uint64_t acc, uint64_t h)
{
	return mix(acc ^ h) + K1;
}

/* Hashed once (a zero page's hash is never 0: mix() of a nonzero value
 * would have to land there); any thread may be first. */
uint64_t ramhash_zero_page(void)
{
	static const uint8_t zero[RAMHASH_PAGE];
	static uint64_t h;
	uint64_t v = __atomic_load_n(&h, __ATOMIC_RELAXED);

	if (!v) {
		v = ramhash_page(zero);
		__atomic_store_n(&h, v, __ATOMIC_RELAXED);
	}
	return v;
}

uint64_t ramhash_entry(const uint8_t *page)
{
	return page ? ramhash_page(page) ^ ramhash_zero_page() : 0;
}

/* Data extents of a memfd, found once: [start, end) pairs in order. */
struct extents {
	uint64_t *v;                    /* 2 * n offsets */
	size_t n, cap;
};

static int extents_add(struct extents *e, uint64_t start, uint64_t end)
{
	if (e->n == e->cap) {
		size_t cap = e->cap ? 2 * e->cap : 64;
		uint64_t *v = realloc(e->v, cap * 2 * sizeof(*v));

		if (!v)
			return -ENOMEM;
		e->v = v;
		e->cap = cap;
	}
	e->v[2 * e->n] = start;
	e->v[2 * e->n + 1] = end;
	e->n++;
	return 0;
}

/* One pass of SEEK_DATA/SEEK_HOLE over the file (fd < 0: all data).
 * Seeking from inside every hole chunk would rescan the holes each time. */
static int extents_find(const struct ramhash_region *r, struct extents *e)
{
	uint64_t off = 0, start, end;
	int ret = 0;

	if (r->fd < 0 || fd_all_data(r->fd, r->size))
		return extents_add(e, 0, r->size);
	while (ret == 0 && off < r->size) {
		/* An error is the caller's, never "the rest is zeros":
		 * verify would call good RAM different. */
		ret = fd_next_data(r->fd, off, r->size, &start, &end);
		if (ret < 0 || start == end)
			break;
		ret = extents_add(e, start, end);
		off = end;
	}
	return ret;
}

/* One chunk: pages inside data extents are read, the rest are zero.
 * Each data page's table entry also goes to pages[offset / RAMHASH_PAGE]
 * if asked (a hole's stays 0, see ramhash.h). */
static uint64_t hash_chunk(const struct ramhash_region *r, const struct extents *e,
			   uint64_t start, uint64_t end, uint64_t zero_hash,
			   uint64_t *pages)
{
	size_t lo = 0, hi = e->n, k;
	uint64_t h = K3, off = start;

	/* the first extent that ends after start */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (e->v[2 * mid + 1] <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (k = lo; off < end; k++) {
		uint64_t ds = k < e->n ? e->v[2 * k] : end;
		uint64_t de = k < e->n ? e->v[2 * k + 1] : end;

		ds = ds < off ? off : ds > end ? end : ds;
		de = de > end ? end : de;
		for (; off < ds; off += RAMHASH_PAGE)
			h = ramhash_fold(h, zero_hash);
		for (; off < de; off += RAMHASH_PAGE) {
			uint64_t ph = ramhash_page(r->host + off);

			h = ramhash_fold(h, ph);
			if (pages)
				pages[off / RAMHASH_PAGE] = ph ^ zero_hash;
		}
	}
	return h;
}

struct job {
	const struct ramhash_region *r;
	const struct extents *ext;      /* one per region */
	unsigned int nregions;
	uint64_t *out;
	uint64_t *pages;                /* page hashes too, or NULL */
	uint64_t total;                 /* chunks in all */
	uint64_t next;                  /* atomic: the next chunk to take */
	uint64_t zero_hash;
};

static void *worker(void *arg)
{
	struct job *j = arg;
	uint64_t c, i, base, first, start, end;
	unsigned int k;

	while ((c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < j->total) {
		base = first = 0;
		for (k = 0; k < j->nregions; k++) {
			uint64_t n = ramhash_chunks(j->r[k].size);

			if (c < base + n) {
				i = c - base;
				start = i * RAMHASH_CHUNK;
				end = start + RAMHASH_CHUNK < j->r[k].size ?
				      start + RAMHASH_CHUNK : j->r[k].size;
				j->out[c] = hash_chunk(&j->r[k], &j->ext[k], start,
						       end, j->zero_hash, j->pages ?
						       j->pages + first : NULL);
				break;
			}
			base += n;
			first += j->r[k].size / RAMHASH_PAGE;
		}
	}
	return NULL;
}

int ramhash_compute_pages(const struct ramhash_region *r, unsigned int nregions,
			  unsigned int nthreads, uint64_t *out, uint64_t *pages)
{
	struct extents ext[RAMHASH_MAX_REGIONS] = { { 0 } };
	struct job j = { r, ext, nregions, out, pages, 0, 0, ramhash_zero_page() };
	pthread_t t[16];
	unsigned int k, started = 0;
	int ret = 0;

	if (nregions > RAMHASH_MAX_REGIONS)
		return -EINVAL;
	for (k = 0; k < nregions && ret == 0; k++) {
		if (r[k].size % RAMHASH_PAGE)
			ret = -EINVAL;
		else
			ret = extents_find(&r[k], &ext[k]);
		j.total += ramhash_chunks(r[k].size);
	}
	if (ret == 0) {
		if (nthreads > 16)
			nthreads = 16;
		for (k = 1; k < nthreads; k++)
			if (pthread_create(&t[started], NULL, worker, &j) == 0)
				started++;
		worker(&j);
		for (k = 0; k < started; k++)
			pthread_join(t[k], NULL);
	}
	for (k = 0; k < nregions; k++)
		free(ext[k].v);
	return ret;
}

int ramhash_compute(const struct ramhash_region *r, unsigned int nregions,
		    unsigned int nthreads, uint64_t *out)
{
	return ramhash_compute_pages(r, nregions, nthreads, out, NULL);
}

void ramhash_fold_pages(const uint64_t *pages, const uint64_t *sizes,
			unsigned int nregions, uint64_t *out)
{
	uint64_t off, h, end, zero = ramhash_zero_page();
	unsigned int k;

	for (k = 0; k < nregions; k++) {
		for (off = 0; off < sizes[k]; off = end) {
			end = off + RAMHASH_CHUNK < sizes[k] ? off + RAMHASH_CHUNK :
			      sizes[k];
			for (h = K3; off < end; off += RAMHASH_PAGE)
				h = ramhash_fold(h, *pages++ ^ zero);
			*out++ = h;
		}
	}
}

uint64_t ramhash_data(const struct ramhash_region *r, unsigned int nregions)
{
	uint64_t data = 0;
	struct stat st;
	unsigned int k;

	for (k = 0; k < nregions; k++)
		data += r[k].fd >= 0 && fstat(r[k].fd, &st) == 0 ?
			(uint64_t)st.st_blocks * 512 : r[k].size;
	return data;
}

/*
 * Map the sample's pages before it is timed.  A mapping made for the job
 * has no page tables yet, and their faults (costly under a nested VM's
 * shadow paging) made the first hashing of 32 MiB 2x slower on a quiet
 * host, and 10x under load, than the pause's hashing of RAM that the
 * rounds had mapped: the estimate then refused, or never met, limits the
 * pause would have kept.  Without MADV_POPULATE_READ (Linux < 5.14), a
 * read of each page.
 */
static void sample_map(const struct ramhash_region *part, unsigned int n)
{
	const volatile uint8_t *p;
	unsigned int k;
	uint64_t off;

	for (k = 0; k < n; k++) {
		if (madvise((void *)part[k].host, part[k].size,
			    MADV_POPULATE_READ) == 0)
			continue;
		p = part[k].host;
		for (off = 0; off < part[k].size; off += RAMHASH_PAGE)
			(void)p[off];
	}
}

int ramhash_rate(const struct ramhash_region *r, unsigned int nregions,
		 unsigned int nthreads, uint64_t sample, uint64_t *rate)
{
	struct ramhash_region part[RAMHASH_MAX_REGIONS];
	unsigned int k, n = 0;
	uint64_t taken = 0, chunks = 0, *out, t0, ns;
	int ret = 0;

	*rate = 0;
	if (nregions > RAMHASH_MAX_REGIONS)
		return -EINVAL;
	for (k = 0; k < nregions; k++) {
		struct extents e = { 0 };
		size_t i;

		ret = extents_find(&r[k], &e);
		/* the sample: the first data of each region in turn */
		for (i = 0; ret == 0 && i < e.n && taken < sample &&
			    n < RAMHASH_MAX_REGIONS; i++) {
			uint64_t len = e.v[2 * i + 1] - e.v[2 * i];

			len = len < sample - taken ? len : sample - taken;
			len -= len % RAMHASH_PAGE;
			if (!len)
				continue;
			part[n++] = (struct ramhash_region){ r[k].host + e.v[2 * i],
							     len, -1 };
			taken += len;
			chunks += ramhash_chunks(len);
		}
		free(e.v);
		if (ret < 0)
			return ret;
	}
	if (!taken)
		return 0;
	out = calloc(chunks, sizeof(*out));
	if (!out)
		return -ENOMEM;
	sample_map(part, n);
	t0 = now_ns();
	ret = ramhash_compute(part, n, nthreads, out);
	ns = now_ns() - t0;
	free(out);
	if (ret == 0)
		*rate = taken * 1000000000ULL / (ns ? ns : 1);
	return ret;
}
