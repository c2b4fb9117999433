// SPDX-License-Identifier: GPL-2.0-only
/*
 * migd/history.c: finished jobs newest end first; an end learnt late
 * goes behind a newer one of its VM; the bounds drop a VM's oldest,
 * never the job just added.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "migd/migd.h"

static struct job *job_new(const char *vm, uint64_t end_ms)
{
	struct job *j = calloc(1, sizeof(*j));

	assert_non_null(j);
	snprintf(j->spec.vm, sizeof(j->spec.vm), "%s", vm);
	j->finished_unix_ms = end_ms;
	return j;
}

static void free_all(struct migd *m)
{
	struct job *j;

	while ((j = m->history)) {
		m->history = j->next;
		free(j);
	}
}

static void a_late_end_goes_behind_a_newer_one(void **state)
{
	struct migd m = { 0 };
	struct job *old = job_new("vm1", 1000), *newer = job_new("vm1", 3000);
	struct job *late = job_new("vm1", 2000), *other = job_new("vm2", 4000);

	(void)state;
	assert_null(history_add(&m, old, false));
	assert_null(history_add(&m, newer, false));
	assert_null(history_add(&m, other, false));
	/* learnt after the others ended, it ended before newer */
	assert_null(history_add(&m, late, true));
	assert_ptr_equal(m.history, other);
	assert_ptr_equal(other->next, newer);
	assert_ptr_equal(newer->next, late);
	assert_ptr_equal(late->next, old);
	assert_int_equal(m.nhistory, 4);
	free_all(&m);
}

static void an_end_in_order_goes_first(void **state)
{
	struct migd m = { 0 };
	struct job *a = job_new("vm1", 5000), *b = job_new("vm1", 1000);

	(void)state;
	assert_null(history_add(&m, a, false));
	/* Not late: first, whatever its time says (a wall clock step). */
	assert_null(history_add(&m, b, false));
	assert_ptr_equal(m.history, b);
	free_all(&m);
}

static void the_bounds_keep_the_job_added(void **state)
{
	struct migd m = { 0 };
	struct job *late, *gone;
	unsigned int i;

	(void)state;
	for (i = 0; i < MIGD_HISTORY_PER_VM; i++)
		assert_null(history_add(&m, job_new("vm1", 100 + i), false));
	/* older than all of vm1's: the oldest other is dropped */
	late = job_new("vm1", 50);
	gone = history_add(&m, late, true);
	assert_non_null(gone);
	assert_ptr_not_equal(gone, late);
	assert_int_equal(gone->finished_unix_ms, 100);
	free(gone);
	/* a newer one drops the late one, now the oldest */
	gone = history_add(&m, job_new("vm1", 500), false);
	assert_ptr_equal(gone, late);
	free(gone);
	assert_int_equal(m.nhistory, MIGD_HISTORY_PER_VM);
	/* the global bound drops the last of all */
	for (i = 0; m.nhistory < MIGD_HISTORY; i++) {
		char vm[16];

		snprintf(vm, sizeof(vm), "v%u", i);
		assert_null(history_add(&m, job_new(vm, 1000 + i), false));
	}
	gone = history_add(&m, job_new("w", 9000), false);
	assert_non_null(gone);
	assert_int_equal(gone->finished_unix_ms, 101);
	free(gone);
	free_all(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_late_end_goes_behind_a_newer_one),
		cmocka_unit_test(an_end_in_order_goes_first),
		cmocka_unit_test(the_bounds_keep_the_job_added),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
