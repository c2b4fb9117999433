// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for common/ramhash.c: a hole hashes like a zero page, one
 * changed byte changes its chunk's hash only, ramhash_data counts the
 * data a memfd holds and ramhash_rate times only that, page-hash tables
 * (written one page at a time, as postcopy's placers do; holes left 0)
 * fold into the same chunk hashes across two regions, the last chunk
 * short.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/ramhash.h"

#define SIZE (8u << 20)                 /* four chunks */
#define NCHUNKS (SIZE / RAMHASH_CHUNK)

struct mem {
	int fd;
	uint8_t *host;
};

static struct mem mem_new(void)
{
	struct mem m;

	m.fd = memfd_create("test_ramhash", MFD_CLOEXEC);
	assert_true(m.fd >= 0);
	assert_int_equal(ftruncate(m.fd, SIZE), 0);
	m.host = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, 0);
	assert_true(m.host != MAP_FAILED);
	return m;
}

static void mem_free(struct mem *m)
{
	munmap(m->host, SIZE);
	close(m->fd);
}

static void hash(const struct mem *m, bool by_holes, uint64_t *out)
{
	struct ramhash_region r = { m->host, SIZE, by_holes ? m->fd : -1 };

	assert_int_equal(ramhash_compute(&r, 1, 2, out), 0);
}

static void test_hole_is_zero_page(void **state)
{
	struct mem a = mem_new(), b = mem_new();
	uint64_t ha[NCHUNKS], hb[NCHUNKS], hr[NCHUNKS];

	/* a: data pages that hold zeros; b: the same range left a hole */
	memset(a.host + RAMHASH_CHUNK, 0, 16 * RAMHASH_PAGE);
	a.host[3 * RAMHASH_CHUNK] = 7;
	b.host[3 * RAMHASH_CHUNK] = 7;
	hash(&a, true, ha);
	hash(&b, true, hb);
	hash(&b, false, hr);            /* everything read */
	assert_memory_equal(ha, hb, sizeof(ha));
	assert_memory_equal(hb, hr, sizeof(hb));
	mem_free(&a);
	mem_free(&b);
}

/* A region whose holes cannot be found is an error, never zeros (which
 * verify would call a mismatch with good RAM). */
static void test_seek_error(void **state)
{
	struct mem m = mem_new();
	uint64_t out[NCHUNKS];
	int p[2];

	assert_int_equal(pipe(p), 0);
	m.host[5] = 1;
	assert_int_equal(ramhash_compute(&(struct ramhash_region){ m.host, SIZE, p[0] },
					 1, 2, out), -ESPIPE);
	close(p[0]);
	close(p[1]);
	mem_free(&m);
}

static void test_one_byte(void **state)
{
	struct mem m = mem_new();
	uint64_t before[NCHUNKS], after[NCHUNKS];
	unsigned int i;

	memset(m.host, 0x5a, SIZE);
	hash(&m, true, before);
	m.host[2 * RAMHASH_CHUNK + 4095] ^= 1;
	hash(&m, true, after);
	for (i = 0; i < NCHUNKS; i++)
		if (i == 2)
			assert_true(before[i] != after[i]);
		else
			assert_true(before[i] == after[i]);
	mem_free(&m);
}

static void test_rate(void **state)
{
	struct mem m = mem_new();
	struct ramhash_region r = { m.host, SIZE, m.fd }, many[9];
	uint64_t rate = 1;
	unsigned int i;

	/* nothing there: nothing to hash, nothing to time */
	assert_int_equal(ramhash_data(&r, 1), 0);
	assert_int_equal(ramhash_rate(&r, 1, 2, 1u << 20, &rate), 0);
	assert_int_equal(rate, 0);

	memset(m.host + RAMHASH_CHUNK, 1, 3u << 20);    /* 3 MiB of data */
	assert_int_equal(ramhash_data(&r, 1), 3u << 20);
	assert_int_equal(ramhash_rate(&r, 1, 2, 1u << 20, &rate), 0);
	assert_true(rate > 0);
	r.fd = -1;                      /* no memfd: all of it counts */
	assert_int_equal(ramhash_data(&r, 1), SIZE);
	r.fd = m.fd;

	for (i = 0; i < 9; i++)
		many[i] = r;
	assert_int_equal(ramhash_rate(many, 9, 2, 1u << 20, &rate), -EINVAL);
	mem_free(&m);
}

static void test_pages_fold(void **state)
{
	const uint64_t sizes[2] = { SIZE, 3 * RAMHASH_CHUNK / 2 };
	uint64_t pages[(SIZE + 3 * RAMHASH_CHUNK / 2) / RAMHASH_PAGE];
	uint64_t direct[NCHUNKS + 2], folded[NCHUNKS + 2], with[NCHUNKS + 2];
	struct mem a = mem_new(), b = mem_new();
	struct ramhash_region r[2] = { { a.host, sizes[0], a.fd },
				       { b.host, sizes[1], b.fd } };
	uint64_t i, n = sizes[0] / RAMHASH_PAGE, zero = ramhash_zero_page();

	memset(a.host + RAMHASH_CHUNK / 2, 0x33, RAMHASH_CHUNK);
	b.host[RAMHASH_CHUNK + 5] = 1;          /* the short last chunk */
	memset(pages, 0, sizeof(pages));
	pages[1] = 0xee;        /* a hole's entry is left as it is */
	assert_int_equal(ramhash_compute(r, 2, 2, direct), 0);
	assert_int_equal(ramhash_compute_pages(r, 2, 2, with, pages), 0);
	assert_memory_equal(direct, with, sizeof(direct));
	assert_true(pages[1] == 0xee);
	pages[1] = 0;
	/* every data page's own hash XOR the zero page's; holes 0 */
	assert_true(ramhash_entry(NULL) == 0);
	assert_true(ramhash_entry(a.host + RAMHASH_CHUNK) ==
		    (ramhash_page(a.host + RAMHASH_CHUNK) ^ zero));
	for (i = 0; i < n; i++)
		assert_true(pages[i] == (ramhash_page(a.host + i * RAMHASH_PAGE) ^ zero));
	for (i = 0; i < sizes[1] / RAMHASH_PAGE; i++)
		assert_true(pages[n + i] == (ramhash_page(b.host + i * RAMHASH_PAGE) ^ zero));
	ramhash_fold_pages(pages, sizes, 2, folded);
	assert_memory_equal(direct, folded, sizeof(direct));
	/* a zeroed table is all-zero RAM */
	memset(pages, 0, sizeof(pages));
	memset(a.host, 0, SIZE);
	memset(b.host, 0, sizes[1]);
	assert_int_equal(ramhash_compute(r, 2, 2, direct), 0);
	ramhash_fold_pages(pages, sizes, 2, folded);
	assert_memory_equal(direct, folded, sizeof(direct));
	/* one page hashed from other data: its chunk only */
	pages[n + RAMHASH_CHUNK / RAMHASH_PAGE] ^= 1;
	ramhash_fold_pages(pages, sizes, 2, folded);
	for (i = 0; i < NCHUNKS + 2; i++)
		assert_true((direct[i] == folded[i]) == (i != NCHUNKS + 1));
	mem_free(&a);
	mem_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hole_is_zero_page),
		cmocka_unit_test(test_seek_error),
		cmocka_unit_test(test_one_byte),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_pages_fold),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
