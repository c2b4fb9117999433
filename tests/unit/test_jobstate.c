// SPDX-License-Identifier: GPL-2.0-only
/*
 * migd/jobstate.c: the changes a job's state may make.  The paths the
 * workers take (migd(8)) are allowed step by step; a final state never
 * changes; a switched job is not cancelled or sent back to precopy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "migd/migd.h"

/* Every step of path allowed. */
static void path_ok(const enum job_state *path, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i++) {
		if (!job_state_may_change(path[i], path[i + 1]))
			fail_msg("%s -> %s refused", job_state_name(path[i]),
				 job_state_name(path[i + 1]));
	}
}

#define PATH(...) do { \
	const enum job_state p_[] = { __VA_ARGS__ }; \
	path_ok(p_, sizeof(p_) / sizeof(p_[0])); \
} while (0)

static void the_workers_paths(void **state)
{
	(void)state;
	/* source, precopy; destination, precopy */
	PATH(JOB_STATE_NONE, JOB_STATE_ACTIVE, JOB_STATE_DEVICE, JOB_STATE_COMPLETED);
	PATH(JOB_STATE_NONE, JOB_STATE_SETUP, JOB_STATE_ACTIVE, JOB_STATE_DEVICE,
	     JOB_STATE_COMPLETED);
	/* postcopy, two pauses, a failed recovery, then done */
	PATH(JOB_STATE_ACTIVE, JOB_STATE_DEVICE, JOB_STATE_POSTCOPY_ACTIVE,
	     JOB_STATE_POSTCOPY_PAUSED, JOB_STATE_POSTCOPY_RECOVER,
	     JOB_STATE_POSTCOPY_PAUSED, JOB_STATE_POSTCOPY_PAUSED,
	     JOB_STATE_POSTCOPY_RECOVER, JOB_STATE_POSTCOPY_ACTIVE,
	     JOB_STATE_COMPLETED);
	/* a source whose link broke between Go and Resumed: paused, then
	 * recovered (operator round 23: it stayed in device for good) */
	PATH(JOB_STATE_ACTIVE, JOB_STATE_DEVICE, JOB_STATE_POSTCOPY_PAUSED,
	     JOB_STATE_POSTCOPY_RECOVER, JOB_STATE_POSTCOPY_ACTIVE,
	     JOB_STATE_COMPLETED);
	/* cancels and failures */
	PATH(JOB_STATE_SETUP, JOB_STATE_CANCELLING, JOB_STATE_CANCELLED);
	PATH(JOB_STATE_DEVICE, JOB_STATE_CANCELLING, JOB_STATE_COMPLETED);
	PATH(JOB_STATE_ACTIVE, JOB_STATE_FAILED);
	PATH(JOB_STATE_POSTCOPY_PAUSED, JOB_STATE_CANCELLED);   /* migd quits */
	PATH(JOB_STATE_POSTCOPY_ACTIVE, JOB_STATE_CANCELLED);   /* migd died */
	PATH(JOB_STATE_NONE, JOB_STATE_FAILED);
}

static void what_no_job_does(void **state)
{
	static const enum job_state bad[][2] = {
		{ JOB_STATE_ACTIVE, JOB_STATE_SETUP },
		{ JOB_STATE_DEVICE, JOB_STATE_ACTIVE },
		{ JOB_STATE_ACTIVE, JOB_STATE_POSTCOPY_ACTIVE },  /* not paused first */
		{ JOB_STATE_POSTCOPY_ACTIVE, JOB_STATE_CANCELLING },
		{ JOB_STATE_POSTCOPY_PAUSED, JOB_STATE_POSTCOPY_ACTIVE },
		{ JOB_STATE_POSTCOPY_PAUSED, JOB_STATE_COMPLETED },
		{ JOB_STATE_CANCELLING, JOB_STATE_ACTIVE },
		{ JOB_STATE_SETUP, JOB_STATE_COMPLETED },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (job_state_may_change(bad[i][0], bad[i][1]))
			fail_msg("%s -> %s allowed", job_state_name(bad[i][0]),
				 job_state_name(bad[i][1]));
}

static void final_states_stay(void **state)
{
	static const enum job_state fin[] = {
		JOB_STATE_COMPLETED, JOB_STATE_FAILED, JOB_STATE_CANCELLED,
	};
	unsigned int i, to;

	(void)state;
	for (i = 0; i < 3; i++)
		for (to = 0; to < JOB_STATE_MAX; to++)
			assert_false(job_state_may_change(fin[i], to));
	assert_false(job_state_may_change(JOB_STATE_MAX, JOB_STATE_FAILED));
	assert_false(job_state_may_change(JOB_STATE_ACTIVE, JOB_STATE_MAX));
	assert_string_equal(job_state_name(JOB_STATE_MAX), "unknown");
	assert_string_equal(job_state_name(JOB_STATE_POSTCOPY_PAUSED),
			    "postcopy-paused");
}

/* A log line names the state once, with what the error adds. */
static void error_beside_state(void **state)
{
	char b[128];

	(void)state;
	assert_string_equal(job_state_text(JOB_STATE_CANCELLED, "cancelled",
					   b, sizeof(b)), "cancelled");
	assert_string_equal(job_state_text(JOB_STATE_FAILED, "", b, sizeof(b)),
			    "failed");
	assert_string_equal(job_state_text(JOB_STATE_FAILED, NULL, b, sizeof(b)),
			    "failed");
	assert_string_equal(job_state_text(JOB_STATE_CANCELLED,
					   "cancelled (worker killed by signal 15); "
					   "the destination vmm dropped it", b, sizeof(b)),
			    "cancelled (worker killed by signal 15); the "
			    "destination vmm dropped it");
	assert_string_equal(job_state_text(JOB_STATE_CANCELLED,
					   "the source said: cancelled", b, sizeof(b)),
			    "cancelled: the source said: cancelled");
	assert_string_equal(job_state_text(JOB_STATE_CANCELLED,
					   "cancelled: migd is stopping", b, sizeof(b)),
			    "cancelled: migd is stopping");
	assert_string_equal(job_state_text(JOB_STATE_FAILED, "failedness", b,
					   sizeof(b)), "failed: failedness");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_workers_paths),
		cmocka_unit_test(what_no_job_does),
		cmocka_unit_test(final_states_stay),
		cmocka_unit_test(error_beside_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
