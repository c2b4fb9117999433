// SPDX-License-Identifier: GPL-2.0-only
/* Unit tests for common/log.c: line format, error texts, levels, fatal. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/log.h"

static int fmt(char *buf, size_t len, int err, const char *f, ...)
	__attribute__((format(printf, 4, 5)));

static int fmt(char *buf, size_t len, int err, const char *f, ...)
{
	va_list ap;
	int r;

	va_start(ap, f);
	r = log_format(buf, len, LOG_LEVEL_WARN, err, f, ap);
	va_end(ap);
	return r;
}

static void test_format_tagged(void **state)
{
	char buf[128];

	log_init("vmm", "vm1", LOG_LEVEL_INFO);
	assert_int_equal(fmt(buf, sizeof(buf), 0, "hello %d", 42), 18);
	assert_string_equal(buf, "vmm[vm1]: hello 42");
	log_set_tag(NULL);
	fmt(buf, sizeof(buf), 0, "x");
	assert_string_equal(buf, "vmm: x");
}

static void test_format_errors(void **state)
{
	char buf[128];

	log_init("migd", "vm1/out", LOG_LEVEL_INFO);
	fmt(buf, sizeof(buf), EINVAL, "open %s", "f");
	assert_string_equal(buf, "migd[vm1/out]: open f: Invalid argument");
	fmt(buf, sizeof(buf), -ENOENT, "stat");
	assert_string_equal(buf,
			    "migd[vm1/out]: stat: No such file or directory");
}

/* The longest VM name, and a worker's suffix after it: whole (63
 * characters of it were shown). */
static void test_format_long_tag(void **state)
{
	char name[65], want[128], buf[160];

	memset(name, 'n', 64);
	name[64] = '\0';
	snprintf(want, sizeof(want), "%s/out", name);
	log_init("migd", want, LOG_LEVEL_INFO);
	fmt(buf, sizeof(buf), 0, "x");
	snprintf(want, sizeof(want), "migd[%s/out]: x", name);
	assert_string_equal(buf, want);
}

/* A peer's text cannot forge a line or reach the terminal: a newline,
 * an escape, a C1 control and a byte that is not UTF-8 are shown as
 * \xNN; UTF-8 text stays as it is. */
static void test_format_escapes(void **state)
{
	char buf[160];

	log_init("migd", "vm1/in", LOG_LEVEL_INFO);
	fmt(buf, sizeof(buf), 0, "the source ended the migration: %s",
	    "bye\nmigd: forged\x1b[31m \xc2\x9b \xff caf\xc3\xa9");
	assert_string_equal(buf, "migd[vm1/in]: the source ended the migration: "
			    "bye\\x0amigd: forged\\x1b[31m \\xc2\\x9b \\xff "
			    "caf\xc3\xa9");
	/* cut at a whole escape, never inside one */
	assert_int_equal(fmt(buf, 20, 0, "ab\n"), 16);
	assert_string_equal(buf, "migd[vm1/in]: ab");
	assert_int_equal(fmt(buf, 21, 0, "ab\n"), 20);
	assert_string_equal(buf, "migd[vm1/in]: ab\\x0a");
}

static void test_format_truncates(void **state)
{
	char buf[8];
	int r;

	log_init("faultd", NULL, LOG_LEVEL_INFO);
	r = fmt(buf, sizeof(buf), EIO, "a long message");
	assert_int_equal(r, 7);
	assert_string_equal(buf, "faultd:");
	assert_int_equal(fmt(buf, 0, 0, "x"), -EINVAL);
}

/* Run fn with stderr redirected into a buffer. */
static void capture(void (*fn)(void), char *out, size_t len)
{
	int p[2], saved;
	ssize_t n;

	assert_int_equal(pipe(p), 0);
	fflush(stderr);
	saved = dup(2);
	dup2(p[1], 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(p[1]);
	n = read(p[0], out, len - 1);
	close(p[0]);
	out[n > 0 ? n : 0] = '\0';
}

static void emit_lines(void)
{
	errno = EACCES;
	log_warn("w1");
	log_warnc(-EEXIST, "w2");
	log_warnx("w3");
	log_info("i1");
	log_debug("d1");
}

static void test_levels(void **state)
{
	char out[512];

	log_init("vmm", "a", LOG_LEVEL_INFO);
	capture(emit_lines, out, sizeof(out));
	assert_string_equal(out, "vmm[a]: w1: Permission denied\n"
				 "vmm[a]: w2: File exists\n"
				 "vmm[a]: w3\n"
				 "vmm[a]: i1\n");
	log_set_level(LOG_LEVEL_WARN);
	assert_int_equal(log_get_level(), LOG_LEVEL_WARN);
	capture(emit_lines, out, sizeof(out));
	assert_null(strstr(out, "i1"));
	log_set_level(LOG_LEVEL_DEBUG);
	capture(emit_lines, out, sizeof(out));
	assert_non_null(strstr(out, "vmm[a]: d1\n"));
}

static void test_warn_keeps_errno(void **state)
{
	char out[128];

	log_init("vmm", NULL, LOG_LEVEL_INFO);
	capture(emit_lines, out, sizeof(out));
	errno = ENOSPC;
	log_set_level(LOG_LEVEL_WARN);
	log_info("suppressed");
	assert_int_equal(errno, ENOSPC);
}

static void test_fatal_exits_1(void **state)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		close(2);
		fatalx("broken invariant");
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_tagged),
		cmocka_unit_test(test_format_errors),
		cmocka_unit_test(test_format_long_tag),
		cmocka_unit_test(test_format_escapes),
		cmocka_unit_test(test_format_truncates),
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_warn_keeps_errno),
		cmocka_unit_test(test_fatal_exits_1),
	};

	/* Bounds every read, join and wait below: a hang fails the test
	 * (SIGALRM) instead of holding the run until TEST_TIMEOUT. */
	alarm(60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
