// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for common/ramhash.c: a hole hashes like a zero page, one
 * changed byte changes its chunk's hash only, ramhash_data counts the
 * data a memfd holds and ramhash_rate times only that.
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hole_is_zero_page),
		cmocka_unit_test(test_one_byte),
		cmocka_unit_test(test_rate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
