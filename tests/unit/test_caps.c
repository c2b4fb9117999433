// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for common/caps.c.  Each drop runs in a forked child (it is
 * irreversible) that reports through its exit code.  Needs root.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/caps.h"

#define NOBODY 65534

static int need_root(void **state)
{
	if (geteuid() != 0) {
		print_message("caps: not root, cannot test dropping\n");
		skip();
	}
	return 0;
}

/* Exit codes of the child: 0 ok, 10 + step that failed. */
static int child_check(const cap_value_t *keep, size_t nkeep, uid_t uid)
{
	uint64_t want = 0, mask;
	size_t i;

	if (caps_drop(keep, nkeep, uid, uid) < 0)
		return 10;
	if (caps_effective_mask(&mask) < 0)
		return 11;
	for (i = 0; i < nkeep; i++)
		want |= 1ull << keep[i];
	if (mask != want)
		return 12;
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		return 13;
	if (cap_get_bound(CAP_SYS_ADMIN) != 0)
		return 14;
	if (nkeep && cap_get_bound(keep[0]) != 1)
		return 15;
	if (uid != (uid_t)-1 && (getuid() != uid || geteuid() != uid ||
				 getgid() != uid))
		return 16;
	return 0;
}

static void run_child(const cap_value_t *keep, size_t nkeep, uid_t uid)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_check(keep, nkeep, uid));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_keep_one(void **state)
{
	static const cap_value_t keep[] = { CAP_NET_BIND_SERVICE };

	need_root(state);
	run_child(keep, 1, (uid_t)-1);
}

static void test_keep_one_as_nobody(void **state)
{
	static const cap_value_t keep[] = { CAP_NET_BIND_SERVICE };

	need_root(state);
	run_child(keep, 1, NOBODY);
}

static void test_keep_none(void **state)
{
	need_root(state);
	run_child(NULL, 0, NOBODY);
}

static void test_effective_mask_root(void **state)
{
	uint64_t mask = 0;

	assert_int_equal(caps_effective_mask(&mask), 0);
	if (geteuid() == 0)
		assert_true(mask & (1ull << CAP_NET_BIND_SERVICE));
}

static void test_invalid_cap(void **state)
{
	static const cap_value_t keep[] = { 4000 };

	assert_int_equal(caps_drop(keep, 1, (uid_t)-1, (gid_t)-1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keep_one),
		cmocka_unit_test(test_keep_one_as_nobody),
		cmocka_unit_test(test_keep_none),
		cmocka_unit_test(test_effective_mask_root),
		cmocka_unit_test(test_invalid_cap),
	};

	/* Bounds every read, join and wait below: a hang fails the test
	 * (SIGALRM) instead of holding the run until TEST_TIMEOUT. */
	alarm(60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
