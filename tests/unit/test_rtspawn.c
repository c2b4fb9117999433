// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for common/rtspawn.c.  Its state is per process and its
 * spawner drops capabilities, so each case runs in a forked child that
 * reports through its exit code.  The real-time case needs root (for
 * CAP_SYS_NICE).
 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/caps.h"
#include "common/rtspawn.h"

/* What a spawned thread saw of itself. */
struct seen {
	int policy;
	int priority;
	uint64_t caps;          /* its effective set */
	int no_new_privs;
};

static void *look(void *arg)
{
	struct seen *s = arg;
	struct sched_param sp;

	s->policy = sched_getscheduler(0);
	s->priority = sched_getparam(0, &sp) == 0 ? sp.sched_priority : -1;
	if (caps_effective_mask(&s->caps) < 0)
		s->caps = UINT64_MAX;
	s->no_new_privs = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	return NULL;
}

static int spawn_and_look(struct seen *s)
{
	pthread_t t;

	if (rtspawn_create(&t, look, s) < 0 || pthread_join(t, NULL))
		return -1;
	return 0;
}

/* Run fn in a child; its exit code is the result. */
static int in_child(int (*fn)(void))
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(fn());
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* Exit codes: 0 ok, 10 + the check that failed. */
static int child_ordinary(void)
{
	struct seen s = { 0 };

	if (spawn_and_look(&s) < 0)
		return 10;
	return s.policy == SCHED_OTHER ? 0 : 11;
}

static int child_bad_priority(void)
{
	struct seen s = { 0 };

	if (rtspawn_init(0) != -EINVAL || rtspawn_init(100) != -EINVAL)
		return 10;
	/* Refused: nothing changed, threads stay ordinary. */
	if (spawn_and_look(&s) < 0 || s.policy != SCHED_OTHER)
		return 11;
	return 0;
}

static int child_realtime(void)
{
	struct seen s = { 0 };
	uint64_t mine;

	if (rtspawn_init(RTSPAWN_PRIORITY) < 0)
		return 10;
	if (rtspawn_init(RTSPAWN_PRIORITY) != -EALREADY)
		return 11;
	if (spawn_and_look(&s) < 0)
		return 12;
	if (s.policy != SCHED_FIFO || s.priority != RTSPAWN_PRIORITY)
		return 13;
	/* Born without a capability, though this thread still has them
	 * (capabilities are per thread: the spawner dropped its own). */
	if (s.caps != 0 || s.no_new_privs != 1)
		return 14;
	if (caps_effective_mask(&mine) < 0 || mine == 0)
		return 15;
	/* The caller's own class is untouched. */
	if (sched_getscheduler(0) != SCHED_OTHER)
		return 16;
	return 0;
}

static void test_ordinary_without_init(void **state)
{
	(void)state;
	assert_int_equal(in_child(child_ordinary), 0);
}

static void test_bad_priority(void **state)
{
	(void)state;
	assert_int_equal(in_child(child_bad_priority), 0);
}

static void test_realtime(void **state)
{
	uint64_t eff = 0;

	(void)state;
	/* What it needs is CAP_SYS_NICE, which root may lack (a container). */
	if (caps_effective_mask(&eff) < 0 || !(eff & (1ULL << CAP_SYS_NICE))) {
		print_message("rtspawn: no CAP_SYS_NICE to test with\n");
		skip();
	}
	assert_int_equal(in_child(child_realtime), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ordinary_without_init),
		cmocka_unit_test(test_bad_priority),
		cmocka_unit_test(test_realtime),
	};

	/* Bounds every read, join and wait below: a hang fails the test
	 * (SIGALRM) instead of holding the run until TEST_TIMEOUT. */
	alarm(60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
