// SPDX-License-Identifier: GPL-2.0-only
/*
 * migd/params.c: what a running job's Tune may change, and how a refusal
 * names a parameter (migctl's option, then the schema's field, for the
 * operator who typed one and the agent that sent the other).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "migd/migd.h"

static int live(const Tern__Migd__Params *p, char *const *clear, size_t n,
		bool postcopy, char *err, size_t len)
{
	err[0] = 0;
	return params_check_live(p, clear, n, postcopy, err, len);
}

static void said(const char *got, const char *want)
{
	if (strncmp(got, want, strlen(want)))
		fail_msg("said '%s', not '%s...'", got, want);
}

static void the_limits_change_in_precopy(void **state)
{
	Tern__Migd__Params p = TERN__MIGD__PARAMS__INIT;
	char err[512];

	(void)state;
	p.max_bandwidth = 1 << 20;
	p.avail_switchover_bandwidth = 1 << 30;
	p.downtime_limit_ms = 50;
	assert_int_equal(live(&p, NULL, 0, false, err, sizeof(err)), 0);
	/* past the switch, the push's cap alone */
	p.avail_switchover_bandwidth = 0;
	p.downtime_limit_ms = 0;
	assert_int_equal(live(&p, NULL, 0, true, err, sizeof(err)), 0);
}

static void a_refusal_names_option_and_field(void **state)
{
	static const struct {
		const char *field, *option;
	} names[] = {
		{ "channels", "--channels (channels)" },
		{ "timeout_s", "--timeout (timeout_s)" },
		{ "compress_level", "--compress (compress_level)" },
		{ "throttle_initial", "--throttle-initial (throttle_initial)" },
		{ "timeout_action", "--timeout-action (timeout_action)" },
	};
	Tern__Migd__Params p = TERN__MIGD__PARAMS__INIT;
	char err[512], want[200], *clear[1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		clear[0] = (char *)names[i].field;
		assert_int_equal(live(NULL, clear, 1, false, err, sizeof(err)),
				 -EINVAL);
		snprintf(want, sizeof(want), "%s cannot change during a job: only "
			 "--max-bandwidth, --avail-switchover-bandwidth and "
			 "--downtime-limit (max_bandwidth, ", names[i].option);
		said(err, want);
	}
	/* set, not cleared: the same words */
	p.channels = 2;
	assert_int_equal(live(&p, NULL, 0, false, err, sizeof(err)), -EINVAL);
	said(err, "--channels (channels) cannot change during a job");
}

static void past_the_switch_the_limits_mean_nothing(void **state)
{
	Tern__Migd__Params p = TERN__MIGD__PARAMS__INIT;
	char err[512];

	(void)state;
	p.downtime_limit_ms = 100;
	assert_int_equal(live(&p, NULL, 0, true, err, sizeof(err)), -EINVAL);
	said(err, "--downtime-limit (downtime_limit_ms) means nothing past the "
	     "postcopy switch: only --max-bandwidth (max_bandwidth, the push's "
	     "cap) can change");
	p.downtime_limit_ms = 0;
	p.avail_switchover_bandwidth = 1 << 30;
	assert_int_equal(live(&p, NULL, 0, true, err, sizeof(err)), -EINVAL);
	said(err, "--avail-switchover-bandwidth (avail_switchover_bandwidth) "
	     "means nothing");
}

static void nothing_is_no_tune(void **state)
{
	Tern__Migd__Params p = TERN__MIGD__PARAMS__INIT;
	char err[512];

	(void)state;
	assert_int_equal(live(&p, NULL, 0, false, err, sizeof(err)), -EINVAL);
	said(err, "nothing to change: give --max-bandwidth, "
	     "--avail-switchover-bandwidth or --downtime-limit");
}

/* A field name longer than any real one, as a peer may send in a clear:
 * cut to 64 characters each way, the field's kept as it came. */
static void a_long_name_is_cut(void **state)
{
	char name[300], err[512], small[40], *clear[1] = { name };

	(void)state;
	memset(name, 'x', sizeof(name) - 1);
	name[10] = '_';
	name[sizeof(name) - 1] = 0;
	assert_int_equal(live(NULL, clear, 1, false, err, sizeof(err)), -EINVAL);
	said(err, "--xxxxxxxxxx-xxx");
	assert_non_null(strstr(err, " (xxxxxxxxxx_xxx"));
	assert_int_equal(strlen(err) - strlen(strstr(err, " cannot change")),
			 2 + 64 + 2 + 64 + 1);
	assert_int_equal(live(NULL, clear, 1, false, small, sizeof(small)), -EINVAL);
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_limits_change_in_precopy),
		cmocka_unit_test(a_refusal_names_option_and_field),
		cmocka_unit_test(past_the_switch_the_limits_mean_nothing),
		cmocka_unit_test(nothing_is_no_tune),
		cmocka_unit_test(a_long_name_is_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
