// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the test guest's memory checker on synthetic guest RAM:
 * memory written the way the guest writes it (including vCPUs stopped in
 * the middle of a page) must pass; anything else must fail and say where.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

#include "common/memcheck.h"
#include "common/testguest.h"

#define MEM (4u << 20)                  /* 4 MiB: 512 test pages */
#define RANGE_PAGES ((MEM - TG_RANGE_GPA) / TG_PAGE)

struct guest {
	uint8_t *ram;
	struct memcheck_view view;
	struct tg_params *p;
	struct tg_vcpu_status *st;
};

static int setup(void **state)
{
	struct guest *g = calloc(1, sizeof(*g));
	uint64_t per, i;

	assert_non_null(g);
	g->ram = calloc(1, MEM);
	assert_non_null(g->ram);
	g->view.nregions = 1;
	g->view.r[0].size = MEM;
	g->view.r[0].host = g->ram;
	g->p = (struct tg_params *)(g->ram + TG_PARAMS_GPA);
	g->st = (struct tg_vcpu_status *)(g->ram + TG_STATUS_GPA);
	g->p->magic = TG_PARAMS_MAGIC;
	g->p->mode = TG_MODE_FILL;
	g->p->nvcpus = 2;
	per = RANGE_PAGES / 2;
	for (i = 0; i < 2; i++) {
		g->p->slices[i].start = TG_RANGE_GPA + i * per * TG_PAGE;
		g->p->slices[i].pages = per;
	}
	*state = g;
	return 0;
}

static int teardown(void **state)
{
	struct guest *g = *state;

	free(g->ram);
	free(g);
	return 0;
}

static uint64_t *page(struct guest *g, unsigned int cpu, uint64_t i)
{
	return (uint64_t *)(g->ram + g->p->slices[cpu].start + i * TG_PAGE);
}

/* Write generation gen into page i of cpu's slice as the guest does;
 * stop after `words` data words (TG_WORDS = the whole page). */
static void write_gen(struct guest *g, unsigned int cpu, uint64_t i, uint64_t gen,
		      unsigned int words)
{
	uint64_t *w = page(g, cpu, i), gpa = g->p->slices[cpu].start + i * TG_PAGE;
	unsigned int k;
	bool fill = g->p->mode == TG_MODE_FILL;

	for (k = 2; k < words && k < TG_WORDS; k++)
		w[k] = fill ? tg_fill_word(gpa, gen, k) : 0;
	if (words < TG_WORDS)
		return;
	w[1] = gen;
	w[0] = gpa ^ (fill ? TG_MAGIC_FILL : TG_MAGIC_DIRTY);
}

/* cpu's slice: pages [0, upto) at gen, the rest at gen - 1. */
static void slice_at(struct guest *g, unsigned int cpu, uint64_t gen, uint64_t upto)
{
	uint64_t i;

	for (i = 0; i < g->p->slices[cpu].pages; i++) {
		if (gen > 1)
			write_gen(g, cpu, i, gen - 1, TG_WORDS);
		if (i < upto)
			write_gen(g, cpu, i, gen, TG_WORDS);
	}
	g->st[cpu].pass = gen;
	g->st[cpu].state = TG_VSTATE_RUN;
}

static void expect_result(struct guest *g, uint64_t bad)
{
	struct memcheck_result r;

	assert_int_equal(memcheck_run(&g->view, &r), 0);
	assert_int_equal(r.pages, RANGE_PAGES);
	assert_int_equal(r.bad, bad);
	assert_int_equal(r.nreports == 0, bad == 0);
}

static void test_fresh_guest_passes(void **state)
{
	expect_result(*state, 0);
}

static void test_boundary_passes(void **state)
{
	struct guest *g = *state;

	slice_at(g, 0, 5, 100);
	slice_at(g, 1, 3, 0);
	expect_result(g, 0);
}

static void test_half_written_fill_page_passes(void **state)
{
	struct guest *g = *state;

	slice_at(g, 0, 4, 10);
	write_gen(g, 0, 10, 4, 200);    /* stopped at word 200 of page 10 */
	expect_result(g, 0);
	write_gen(g, 0, 10, 4, TG_WORDS - 1); /* data done, header not yet */
	expect_result(g, 0);
}

static void test_first_write_of_dirty_page_passes(void **state)
{
	struct guest *g = *state;

	g->p->mode = TG_MODE_DIRTY;
	slice_at(g, 0, 1, 7);
	page(g, 0, 7)[1] = 1;           /* word 1 written, word 0 not yet */
	expect_result(g, 0);
}

static void test_out_of_order_fails(void **state)
{
	struct guest *g = *state;
	struct memcheck_result r;

	slice_at(g, 0, 5, 100);
	write_gen(g, 0, 200, 5, TG_WORDS);  /* a newer page after older ones */
	assert_int_equal(memcheck_run(&g->view, &r), 0);
	assert_int_equal(r.bad, 1);
	assert_non_null(strstr(r.reports[0], "out of write order"));
}

static void test_corrupt_byte_fails_and_names_page(void **state)
{
	struct guest *g = *state;
	struct memcheck_result r;
	char want[64];

	slice_at(g, 1, 2, 50);
	((uint8_t *)page(g, 1, 60))[777] ^= 1;
	assert_int_equal(memcheck_run(&g->view, &r), 0);
	assert_int_equal(r.bad, 1);
	snprintf(want, sizeof(want), "page 0x%llx (vcpu 1)",
		 (unsigned long long)(g->p->slices[1].start + 60 * TG_PAGE));
	assert_non_null(strstr(r.reports[0], want));
}

static void test_two_half_written_pages_fail(void **state)
{
	struct guest *g = *state;

	slice_at(g, 0, 4, 10);
	write_gen(g, 0, 10, 4, 200);
	write_gen(g, 0, 11, 4, 100);
	expect_result(g, 1);
}

static void test_pass_counter_mismatch_fails(void **state)
{
	struct guest *g = *state;

	slice_at(g, 0, 5, 100);
	g->st[0].pass = 9;              /* the status page was not migrated */
	expect_result(g, 1);
}

static void test_guest_reported_errors_count(void **state)
{
	struct guest *g = *state;
	struct memcheck_result r;

	g->st[1].errors = 2;
	g->st[1].first_bad = 0x345000;
	assert_int_equal(memcheck_run(&g->view, &r), 0);
	assert_int_equal(r.bad, 0);
	assert_int_equal(r.guest_errors, 2);
	assert_non_null(strstr(r.reports[0], "0x345000"));
}

static void test_page_outside_range_must_be_zero(void **state)
{
	struct guest *g = *state;
	struct memcheck_result r;

	g->p->slices[1].pages -= 5;     /* the last 5 pages are outside */
	g->ram[MEM - TG_PAGE + 9] = 1;
	assert_int_equal(memcheck_run(&g->view, &r), 0);
	assert_int_equal(r.bad, 1);
	assert_non_null(strstr(r.reports[0], "outside the test range"));
}

static void test_not_a_test_guest(void **state)
{
	struct guest *g = *state;
	struct memcheck_result r;

	g->p->magic = 0;
	assert_int_equal(memcheck_run(&g->view, &r), -ENOENT);
}

static void test_params_beyond_ram_rejected(void **state)
{
	struct guest *g = *state;
	struct memcheck_result r;

	g->p->slices[1].pages += 1;
	assert_int_equal(memcheck_run(&g->view, &r), -EINVAL);
	g->p->slices[1].pages -= 1;
	g->p->nvcpus = TG_MAX_VCPUS + 1;
	assert_int_equal(memcheck_run(&g->view, &r), -EINVAL);
	g->p->nvcpus = 2;
	g->p->slices[1].start += TG_PAGE; /* a gap between slices */
	assert_int_equal(memcheck_run(&g->view, &r), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_fresh_guest_passes),
		T(test_boundary_passes),
		T(test_half_written_fill_page_passes),
		T(test_first_write_of_dirty_page_passes),
		T(test_out_of_order_fails),
		T(test_corrupt_byte_fails_and_names_page),
		T(test_two_half_written_pages_fail),
		T(test_pass_counter_mismatch_fails),
		T(test_guest_reported_errors_count),
		T(test_page_outside_range_must_be_zero),
		T(test_not_a_test_guest),
		T(test_params_beyond_ram_rejected),
#undef T
	};

	return cmocka_run_group_tests_name("memcheck", tests, NULL, NULL);
}
