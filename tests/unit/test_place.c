// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for placing first-time pages (migd/place.c): into a memfd
 * where some pages are already there and others are holes, through
 * UFFDIO_COPY and through the pwrite() fallback alike, every page ends up
 * holding exactly what was sent, and nothing else changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "migd/migd.h"

#define NPAGES 64

static struct ram_view view;

static void view_open(void)
{
	int fd = memfd_create("test-place", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, NPAGES * STREAM_PAGE), 0);
	memset(&view, 0, sizeof(view));
	view.n = 1;
	view.r[0].size = NPAGES * STREAM_PAGE;
	view.r[0].fd = fd;
	view.r[0].host = mmap(NULL, NPAGES * STREAM_PAGE, PROT_READ | PROT_WRITE,
			      MAP_SHARED, fd, 0);
	assert_true(view.r[0].host != MAP_FAILED);
	view.pages = NPAGES;
}

static void view_close(void)
{
	munmap(view.r[0].host, NPAGES * STREAM_PAGE);
	close(view.r[0].fd);
}

/* Pages 3 and 10 exist before; the runs 0-15, 20-21 and 40 arrive. */
static void place_and_check(struct ram_place *p)
{
	uint64_t off[19];
	uint8_t *src = malloc(19 * STREAM_PAGE), want;
	unsigned int i, k;

	assert_non_null(src);
	memset(view.r[0].host + 3 * STREAM_PAGE, 0xee, STREAM_PAGE);
	memset(view.r[0].host + 10 * STREAM_PAGE, 0xee, STREAM_PAGE);
	for (i = 0; i < 16; i++)
		off[i] = i * STREAM_PAGE;
	off[16] = 20 * STREAM_PAGE;
	off[17] = 21 * STREAM_PAGE;
	off[18] = 40 * STREAM_PAGE;
	for (i = 0; i < 19; i++)
		memset(src + i * STREAM_PAGE, (int)(i + 1), STREAM_PAGE);
	assert_int_equal(ram_place_pages(p, &view, 0, off, src, 19), 0);
	for (i = 0; i < NPAGES; i++) {
		want = 0;
		for (k = 0; k < 19; k++)
			if (off[k] == i * STREAM_PAGE)
				want = (uint8_t)(k + 1);
		for (k = 0; k < STREAM_PAGE; k++)
			if (view.r[0].host[i * STREAM_PAGE + k] != want)
				fail_msg("page %u byte %u: 0x%02x, want 0x%02x", i, k,
					 view.r[0].host[i * STREAM_PAGE + k], want);
	}
	free(src);
}

/*
 * Whether this process may have a userfaultfd at all (user mode only, as
 * ram_place_open asks).  Only then is a failure of ram_place_open a
 * skip: otherwise it is a defect, which migrations would hide (they fall
 * back to pwrite() and only slow down).
 */
static bool uffd_allowed(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);

	if (fd < 0) {
		print_message("no userfaultfd here (%s): skipped\n", strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

static void test_place_uffd(void **state)
{
	struct ram_place p;

	if (!uffd_allowed())
		skip();         /* the fallback test covers pwrite() */
	view_open();
	assert_int_equal(ram_place_open(&p, &view), 0);
	assert_true(p.uffd >= 0);
	place_and_check(&p);
	ram_place_close(&p, &view);
	assert_int_equal(p.uffd, -1);
	view_close();
}

static void test_place_pwrite(void **state)
{
	struct ram_place p = { .uffd = -1 };

	view_open();
	place_and_check(&p);
	ram_place_close(&p, &view);
	view_close();
}

/*
 * With a helper: packets of 48 pages (three pieces), their offsets out of
 * order, into a memfd punched empty before each but for a few pages.
 * Every page holds what was sent, in as many packets as it takes the
 * helper to have placed some of them itself (bounded).
 */
static void test_place_helper(void **state)
{
	enum { N = 48, MIN_ROUNDS = 1000, MAX_ROUNDS = 20000 };
	struct place_helper h;
	struct ram_place p;
	uint64_t off[N];
	uint8_t *src = malloc(N * STREAM_PAGE), want;
	unsigned int round, i, k, pg;

	assert_non_null(src);
	if (!uffd_allowed()) {
		free(src);
		skip();         /* pwrite() places alone */
	}
	view_open();
	assert_int_equal(ram_place_open(&p, &view), 0);
	assert_int_equal(place_helper_start(&h), 0);
	for (round = 0; round < MAX_ROUNDS; round++) {
		if (round >= MIN_ROUNDS && __atomic_load_n(&h.helped, __ATOMIC_RELAXED))
			break;
		assert_int_equal(fallocate(view.r[0].fd, FALLOC_FL_PUNCH_HOLE |
					   FALLOC_FL_KEEP_SIZE, 0,
					   NPAGES * STREAM_PAGE), 0);
		memset(view.r[0].host + (round % NPAGES) * STREAM_PAGE, 0xee,
		       STREAM_PAGE);
		for (i = 0; i < N; i++) {
			/* pages 0..63 in a stride that is not a run */
			off[i] = (uint64_t)((i * 5 + round) % NPAGES) * STREAM_PAGE;
			memset(src + i * STREAM_PAGE, (int)(round + i), STREAM_PAGE);
		}
		assert_int_equal(place_helper_pages(&h, &p, &view, 0, off, src, N), 0);
		for (pg = 0; pg < NPAGES; pg++) {
			want = pg == round % NPAGES ? 0xee : 0;
			for (i = 0; i < N; i++)
				if (off[i] == pg * STREAM_PAGE)
					want = (uint8_t)(round + i);
			for (k = 0; k < STREAM_PAGE; k++)
				if (view.r[0].host[pg * STREAM_PAGE + k] != want)
					fail_msg("round %u page %u byte %u: 0x%02x, "
						 "want 0x%02x", round, pg, k,
						 view.r[0].host[pg * STREAM_PAGE + k],
						 want);
		}
	}
	assert_true(__atomic_load_n(&h.helped, __ATOMIC_RELAXED) > 0);
	place_helper_stop(&h);
	ram_place_close(&p, &view);
	view_close();
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_place_uffd),
		cmocka_unit_test(test_place_pwrite),
		cmocka_unit_test(test_place_helper),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
