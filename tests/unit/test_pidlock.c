// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for common/pidlock.c: the lock holds our pid, a second taker
 * learns whose it is, and what someone else placed under the lock's name
 * (a symbolic link, dangling or not, a hard link, a FIFO) is refused and
 * left as it was, its target unwritten.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/pidlock.h"

struct fx {
	char dir[64];
	char lock[PATH_MAX];
	char target[PATH_MAX];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_pidlock.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->lock, sizeof(f->lock), "%s/x.lock", f->dir);
	snprintf(f->target, sizeof(f->target), "%s/target", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	unlink(f->lock);
	unlink(f->target);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* path holds exactly text. */
static void assert_holds(const char *path, const char *text)
{
	char buf[128];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = 0;
	assert_string_equal(buf, text);
}

static void test_taken_then_busy(void **state)
{
	struct fx *f = *state;
	char holder[32], want[32];
	int fd, fd2;

	fd = pidlock_take(f->lock, holder, sizeof(holder));
	assert_true(fd >= 0);
	snprintf(want, sizeof(want), "%d\n", getpid());
	assert_holds(f->lock, want);
	/* A second open file description cannot take it (flock). */
	fd2 = pidlock_take(f->lock, holder, sizeof(holder));
	assert_int_equal(fd2, -EEXIST);
	snprintf(want, sizeof(want), "%d", getpid());
	assert_string_equal(holder, want);
	close(fd);
	/* Released: taken again, over the old pid. */
	fd = pidlock_take(f->lock, holder, sizeof(holder));
	assert_true(fd >= 0);
	close(fd);
}

static void test_symlink_refused(void **state)
{
	struct fx *f = *state;
	char holder[32];

	write_file(f->target, "precious\n");
	assert_int_equal(symlink(f->target, f->lock), 0);
	assert_int_equal(pidlock_take(f->lock, holder, sizeof(holder)), -ELOOP);
	assert_holds(f->target, "precious\n");
}

static void test_dangling_symlink_refused(void **state)
{
	struct fx *f = *state;
	char holder[32];

	assert_int_equal(symlink(f->target, f->lock), 0);
	assert_int_equal(pidlock_take(f->lock, holder, sizeof(holder)), -ELOOP);
	/* Not created through the link either. */
	assert_int_equal(access(f->target, F_OK), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_hard_link_refused(void **state)
{
	struct fx *f = *state;
	char holder[32];

	write_file(f->target, "precious\n");
	assert_int_equal(link(f->target, f->lock), 0);
	assert_int_equal(pidlock_take(f->lock, holder, sizeof(holder)), -EMLINK);
	assert_holds(f->target, "precious\n");
}

static void test_fifo_refused(void **state)
{
	struct fx *f = *state;
	char holder[32];

	assert_int_equal(mkfifo(f->lock, 0600), 0);
	assert_int_equal(pidlock_take(f->lock, holder, sizeof(holder)), -EMLINK);
}

/* A directory under the lock's name: said as any other that is no
 * regular file (before: "Is a directory"). */
static void test_directory_refused(void **state)
{
	struct fx *f = *state;
	char holder[32];

	assert_int_equal(mkdir(f->lock, 0700), 0);
	assert_int_equal(pidlock_take(f->lock, holder, sizeof(holder)), -EMLINK);
	assert_int_equal(rmdir(f->lock), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_taken_then_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dangling_symlink_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_hard_link_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fifo_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_directory_refused, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
