// SPDX-License-Identifier: GPL-2.0-only
/* Unit tests for common/util.c: parsing, formatting, names, mkdir_p. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"

static const struct {
	const char *s;
	int r;
	uint64_t v;
} size_cases[] = {
	{ "4096", 0, 4096 },
	{ "0", 0, 0 },
	{ "512K", 0, 512ull << 10 },
	{ "512k", 0, 512ull << 10 },
	{ "64M", 0, 64ull << 20 },
	{ "64MiB", 0, 64ull << 20 },
	{ "64MB", 0, 64ull << 20 },
	{ "4G", 0, 4ull << 30 },
	{ "1T", 0, 1ull << 40 },
	{ "100B", 0, 100 },
	{ "16777215T", 0, 16777215ull << 40 },
	{ "16777216T", -ERANGE, 0 },
	{ "18446744073709551615", 0, UINT64_MAX },
	{ "18446744073709551616", -ERANGE, 0 },
	{ "", -EINVAL, 0 },
	{ "K", -EINVAL, 0 },
	{ "-1", -EINVAL, 0 },
	{ " 1", -EINVAL, 0 },
	{ "1 ", -EINVAL, 0 },
	{ "1.5G", -EINVAL, 0 },
	{ "1X", -EINVAL, 0 },
	{ "1iB", -EINVAL, 0 },
	{ "1GiBB", -EINVAL, 0 },
	{ "0x10", -EINVAL, 0 },
};

/* One case of parse(s): its return, and *ret only when it is 0. */
static void check_parse(int (*parse)(const char *, uint64_t *), const char *name,
			const char *s, int want, uint64_t want_v)
{
	uint64_t v = 12345;
	int r = parse(s, &v);

	if (r != want)
		fail_msg("%s(\"%s\") = %d, want %d", name, s, r, want);
	if (v != (r == 0 ? want_v : 12345))
		fail_msg("%s(\"%s\"): %llu, want %llu", name, s,
			 (unsigned long long)v, (unsigned long long)want_v);
}

static void test_parse_size(void **state)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(size_cases); i++)
		check_parse(parse_size, "parse_size", size_cases[i].s,
			    size_cases[i].r, size_cases[i].v);
}

/* parse_rate takes every size parse_size takes, the same, and what
 * fmt_rate prints. */
static const struct {
	const char *s;
	int r;
	uint64_t v;
} rate_cases[] = {
	{ "1.5G", 0, 3ull << 29 },
	{ "1.0 GiB/s", 0, 1ull << 30 },
	{ "851.6 MiB/s", 0, 892967322 },	/* 851.6 * 2^20, rounded */
	{ "500M/s", 0, 500ull << 20 },
	{ "64 KiB/s", 0, 64ull << 10 },
	{ "100 B/s", 0, 100 },
	{ "100/s", 0, 100 },
	{ "0.5K", 0, 512 },
	{ "0.0001K", 0, 0 },
	{ "1.999999999G", 0, (2ull << 30) - 1 },
	{ "1.9999999999G", -EINVAL, 0 },	/* past 9 decimals */
	{ "16777215.9T", 0, (16777215ull << 40) + (1ull << 40) * 9 / 10 },
	{ "16777215.99999999T", 0, (16777215ull << 40) + 1099511616781 },
	{ "1.5", -EINVAL, 0 },
	{ "1.5B", -EINVAL, 0 },
	{ "1.G", -EINVAL, 0 },
	{ ".5G", -EINVAL, 0 },
	{ "64 /s", -EINVAL, 0 },
	{ "64 ", -EINVAL, 0 },
	{ "64  M", -EINVAL, 0 },
	{ "1G/", -EINVAL, 0 },
	{ "1G/s ", -EINVAL, 0 },
	{ "1G/min", -EINVAL, 0 },
	{ "1GiB/s/s", -EINVAL, 0 },
};

static void test_parse_rate(void **state)
{
	char buf[32];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(size_cases); i++)
		if (strcmp(size_cases[i].s, "1.5G"))    /* a rate, not a size */
			check_parse(parse_rate, "parse_rate", size_cases[i].s,
				    size_cases[i].r, size_cases[i].v);
	for (i = 0; i < ARRAY_SIZE(rate_cases); i++)
		check_parse(parse_rate, "parse_rate", rate_cases[i].s,
			    rate_cases[i].r, rate_cases[i].v);
	/* What status prints reads back within its rounding (0.05 of a
	 * unit in at least 1 of it). */
	for (i = 1; i < 49; i++) {	/* up to TiB, the largest unit */
		uint64_t want = (1ull << i) + (1ull << i) / 3, v;

		fmt_rate(want, buf, sizeof(buf));
		assert_int_equal(parse_rate(buf, &v), 0);
		if ((v > want ? v - want : want - v) > want / 20)
			fail_msg("%llu shown as %s, read back as %llu",
				 (unsigned long long)want, buf, (unsigned long long)v);
	}
}

static void test_parse_u64(void **state)
{
	uint64_t v = 7;

	assert_int_equal(parse_u64("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(parse_u64("0x1F", 0, 100, &v), 0);
	assert_int_equal(v, 31);
	assert_int_equal(parse_u64("010", 0, 100, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(parse_u64("18446744073709551615", 0, UINT64_MAX, &v),
			 0);
	assert_int_equal(v, UINT64_MAX);
	v = 7;
	assert_int_equal(parse_u64("101", 0, 100, &v), -ERANGE);
	assert_int_equal(parse_u64("4", 5, 100, &v), -ERANGE);
	assert_int_equal(parse_u64("18446744073709551616", 0, UINT64_MAX, &v),
			 -ERANGE);
	assert_int_equal(parse_u64("0x", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_u64("", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_u64("-1", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_u64("+1", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_u64("1a", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_u64("0xg", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_u64(NULL, 0, 100, &v), -EINVAL);
	assert_int_equal(v, 7);
}

static void test_fmt_size(void **state)
{
	char buf[32];

	assert_string_equal(fmt_size(0, buf, sizeof(buf)), "0 B");
	assert_string_equal(fmt_size(1023, buf, sizeof(buf)), "1023 B");
	assert_string_equal(fmt_size(1024, buf, sizeof(buf)), "1.0 KiB");
	assert_string_equal(fmt_size(1536, buf, sizeof(buf)), "1.5 KiB");
	assert_string_equal(fmt_size(4ull << 30, buf, sizeof(buf)),
			    "4.0 GiB");
	assert_string_equal(fmt_size(3ull << 40, buf, sizeof(buf)),
			    "3.0 TiB");
	assert_string_equal(fmt_size(UINT64_MAX, buf, sizeof(buf)),
			    "16.0 EiB");
	assert_string_equal(fmt_size(4ull << 30, buf, 4), "4.0");
	assert_string_equal(fmt_rate(65536, buf, sizeof(buf)), "64.0 KiB/s");
	assert_string_equal(fmt_rate(0, buf, sizeof(buf)), "0 B/s");
}

/* What it writes, parse_size reads back exactly. */
static void test_fmt_size_arg(void **state)
{
	static const uint64_t sizes[] = { 0, 1000, 1024, 3 << 20, 258ull << 20,
					   1ull << 30, 5ull << 40, 1ull << 50,
					   UINT64_MAX };
	static const char *const want[] = { "0", "1000", "1K", "3M", "258M",
					    "1G", "5T", "1024T",
					    "18446744073709551615" };
	char buf[32];
	uint64_t v;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		assert_string_equal(fmt_size_arg(sizes[i], buf, sizeof(buf)),
				    want[i]);
		assert_int_equal(parse_size(buf, &v), 0);
		assert_true(v == sizes[i]);
	}
}

static void test_str_copy(void **state)
{
	char dst[4] = "xyz";

	assert_int_equal(str_copy(dst, "abcd", sizeof(dst)), -ENAMETOOLONG);
	assert_string_equal(dst, "xyz");
	assert_int_equal(str_copy(dst, "abc", sizeof(dst)), 0);
	assert_string_equal(dst, "abc");
	assert_int_equal(str_copy(dst, "", sizeof(dst)), 0);
	assert_string_equal(dst, "");
	assert_int_equal(str_copy(dst, "", 0), -ENAMETOOLONG);
}

/* Text: well-formed UTF-8 without C0 controls or DEL. */
static void test_str_is_text(void **state)
{
	assert_true(str_is_text(""));
	assert_true(str_is_text("/run/tern/vm 1.sock"));
	assert_true(str_is_text("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
	assert_false(str_is_text("a\nb"));
	assert_false(str_is_text("\x1b[2J"));
	assert_false(str_is_text("a\x7f"));
	assert_false(str_is_text("\xc2\x9b" "2J"));      /* C1: CSI */
	assert_true(str_is_text("\xc2\xa0"));            /* U+00A0 */
	assert_false(str_is_text("\xff"));
	assert_false(str_is_text("\xc3"));             /* cut short */
	assert_false(str_is_text("\xc0\xaf"));         /* overlong '/' */
	assert_false(str_is_text("\xed\xa0\x80"));     /* a surrogate */
	assert_false(str_is_text("\xf4\x90\x80\x80")); /* past U+10FFFF */
}

static void test_str_shown(void **state)
{
	char buf[16];

	assert_string_equal(str_shown("unix:/a\nb", buf, sizeof(buf)),
			    "unix:/a\\x0ab");
	assert_string_equal(str_shown("\xc3\xa9\xff", buf, sizeof(buf)),
			    "\xc3\xa9\\xff");
	/* cut to fit, never inside an escape or a character */
	assert_string_equal(str_shown("abcdefghijkl\x1b", buf, sizeof(buf)),
			    "abcdefghijkl");
	assert_string_equal(str_shown("abcdefghijklmn\xc3\xa9", buf, sizeof(buf)),
			    "abcdefghijklmn");
	assert_string_equal(str_shown("x", buf, 1), "");
	assert_string_equal(str_shown("a\xc2\x9b" "b", buf, sizeof(buf)),
			    "a\\xc2\\x9bb");
}

/* A process's name is its own to set: shown, never written raw. */
static void test_proc_comm_shown(void **state)
{
	char old[32] = "", buf[64];

	(void)state;
	assert_int_equal(prctl(PR_GET_NAME, old), 0);
	assert_int_equal(prctl(PR_SET_NAME, "a\x1b[2Jb"), 0);
	assert_string_equal(proc_comm_shown(getpid(), buf, sizeof(buf)),
			    "a\\x1b[2Jb");
	assert_int_equal(prctl(PR_SET_NAME, old), 0);
	assert_string_equal(proc_comm_shown(getpid(), buf, sizeof(buf)), old);
	/* Gone (or never there): nothing to show. */
	assert_string_equal(proc_comm_shown(INT_MAX, buf, sizeof(buf)), "");
}

/* The raw name, as a signal handler reads it: errno untouched, nothing
 * for a pid that is none (0: a sender outside our pid namespace). */
static void test_proc_comm(void **state)
{
	char old[32] = "", comm[PROC_COMM_LEN];

	(void)state;
	assert_int_equal(prctl(PR_GET_NAME, old), 0);
	/* (the kernel keeps the first 15 bytes, raw) */
	assert_int_equal(prctl(PR_SET_NAME, "x\x1b" "bcdefghijklmnopq"), 0);
	errno = EXDEV;
	proc_comm(getpid(), comm);
	assert_string_equal(comm, "x\x1b" "bcdefghijklmn");
	assert_int_equal(errno, EXDEV);
	assert_int_equal(prctl(PR_SET_NAME, old), 0);
	proc_comm(1000000000, comm);
	assert_string_equal(comm, "");
	assert_int_equal(errno, EXDEV);
	proc_comm(0, comm);
	assert_string_equal(comm, "");
	proc_comm(-7, comm);
	assert_string_equal(comm, "");
}

/* A stopped child reads 'T' (whatever its name: one with ") " in it),
 * a running one not; nothing for a pid that is none.  proc_stopped_say
 * speaks of the stopped one only. */
static void test_proc_state(void **state)
{
	char said[128], want[128];
	uint64_t forked, started;
	int status, i;
	pid_t pid;

	(void)state;
	assert_int_equal(proc_state(getpid()), 'R');
	forked = unix_ms();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_NAME, "a) T (b");
		for (;;)
			pause();
	}
	/* Named, then asleep in pause(): the name's "T" is not read. */
	for (i = 0; i < 2000 && (proc_state(pid) != 'S' ||
	     strcmp(proc_comm_shown(pid, (char[32]){ 0 }, 32), "a) T (b")); i++)
		usleep(1000);
	assert_int_equal(proc_state(pid), 'S');
	/* Its start, read past the name's ") ": the boot time is to a
	 * second, the clocks' ticks to a hundredth. */
	started = proc_start_unix_ms(pid);
	assert_true(started + 2000 >= forked);
	assert_true(started <= unix_ms() + 1000);
	strcpy(said, "untouched");
	assert_false(proc_stopped_say(pid, "x", said, sizeof(said)));
	assert_int_equal(kill(pid, SIGSTOP), 0);
	assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
	assert_int_equal(proc_state(pid), 'T');
	assert_true(proc_stopped_say(pid, "x", said, sizeof(said)));
	snprintf(want, sizeof(want), "x, pid %d, is stopped by a signal or a "
		 "debugger: 'kill -CONT %d' resumes it", pid, pid);
	assert_string_equal(said, want);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(proc_state(pid), 0);
	assert_false(proc_stopped_say(pid, "x", said, sizeof(said)));
	assert_string_equal(said, want);
	assert_int_equal(proc_state(0), 0);
	assert_int_equal(proc_state(-7), 0);
	assert_int_equal(proc_state(1000000000), 0);
	assert_int_equal(proc_start_unix_ms(pid), 0);
	assert_int_equal(proc_start_unix_ms(0), 0);
	assert_int_equal(proc_start_unix_ms(1000000000), 0);
}

static void test_name_valid(void **state)
{
	static const char *const good[] = { "vm1", "a", "A.b_c-9", "1",
					    "x-" };
	static const char *const bad[] = { "", ".vm", "-vm", "vm/1", "vm 1",
					   "vm\n", "vm:1", "vé" };
	char longname[66];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(good); i++)
		assert_int_equal(name_valid(good[i]), 0);
	for (i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(name_valid(bad[i]), -EINVAL);
	assert_int_equal(name_valid(NULL), -EINVAL);
	memset(longname, 'a', 64);
	longname[64] = '\0';
	assert_int_equal(name_valid(longname), 0);
	longname[64] = 'a';
	longname[65] = '\0';
	assert_int_equal(name_valid(longname), -EINVAL);
}

static void test_now_ns(void **state)
{
	uint64_t a = now_ns(), b = now_ns();

	assert_true(a > 0);
	assert_true(b >= a);
}

/* Rates from byte counts past 17 GiB, where bytes * 1e9 wraps 64 bits. */
static void test_mul_div(void **state)
{
	const uint64_t gib = 1ULL << 30;

	assert_int_equal(mul_div(6, 7, 3), 14);
	assert_int_equal(mul_div(7, 1, 2), 3);             /* rounds down */
	/* 20 GiB sent in 10 s is 2 GiB/s; 20 GiB * 1e9 alone wraps */
	assert_int_equal(mul_div(20 * gib, 1000000000ULL, 10000000000ULL), 2 * gib);
	/* 64 GiB at 1 GiB/s is due 64 s after the start */
	assert_int_equal(mul_div(64 * gib, 1000000000ULL, gib), 64000000000ULL);
	assert_int_equal(mul_div(UINT64_MAX, UINT64_MAX, UINT64_MAX), UINT64_MAX);
	assert_int_equal(mul_div(UINT64_MAX, 2, 1), UINT64_MAX);     /* saturates */
	assert_int_equal(mul_div(1, 1, 0), UINT64_MAX);
	assert_int_equal(mul_div(0, 5, 7), 0);
}

/* The lower median, as migd's estimate of a pause's fixed part uses it:
 * one outlier among the samples (and the 5 ms first guess) never wins. */
static void test_median_low(void **state)
{
	uint64_t none[1] = { 7 }, one[1] = { 9 }, two[2] = { 400000, 5000 };
	uint64_t eight[8] = { 6, 4, 900, 5, 3, 7, 5, 8 };
	uint64_t three[3] = { 3000, 5000, 400000 };

	(void)state;
	assert_int_equal(median_low(none, 0), 0);
	assert_int_equal(median_low(one, 1), 9);
	assert_int_equal(median_low(two, 2), 5000);
	assert_int_equal(two[0], 5000);         /* sorted in place */
	assert_int_equal(median_low(three, 3), 5000);
	assert_int_equal(median_low(eight, 8), 5);
	assert_int_equal(eight[7], 900);
}

static void test_mkdir_p(void **state)
{
	char base[] = "/tmp/tern-util-XXXXXX", path[PATH_MAX];
	struct stat st;
	int fd;

	assert_non_null(mkdtemp(base));
	snprintf(path, sizeof(path), "%s/a//b/c/", base);
	assert_int_equal(mkdir_p(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/a/b/c", base);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(mkdir_p(path, 0700), 0);       /* exists: fine */
	snprintf(path, sizeof(path), "%s/file", base);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(mkdir_p(path, 0700), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/file/sub", base);
	assert_int_equal(mkdir_p(path, 0700), -ENOTDIR);
	assert_int_equal(mkdir_p("", 0700), -EINVAL);
	snprintf(path, sizeof(path), "rm -rf '%s'", base);
	assert_int_equal(system(path), 0);
}

/* ms from now, carried into tv_sec, never short of the time asked. */
static void test_timespec_after_ms(void **state)
{
	unsigned int ms[] = { 0, 999, 1000, 1500, 61001 };
	struct timespec before, t;
	int64_t d;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(ms); i++) {
		clock_gettime(CLOCK_MONOTONIC, &before);
		t = timespec_after_ms(CLOCK_MONOTONIC, ms[i]);
		assert_true(t.tv_nsec >= 0 && t.tv_nsec < 1000000000);
		d = (int64_t)(t.tv_sec - before.tv_sec) * 1000000000 +
		    (t.tv_nsec - before.tv_nsec);
		assert_true(d >= (int64_t)ms[i] * 1000000);
	}
}

static void *read_one(void *arg)
{
	char c;

	return (void *)(intptr_t)read(*(int *)arg, &c, 1);
}

/* A join that times out leaves the thread running; a later one joins. */
static void test_thread_join_ms(void **state)
{
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t c = PTHREAD_COND_INITIALIZER;
	pthread_t t;
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pthread_create(&t, NULL, read_one, &p[0]), 0);
	assert_int_equal(thread_join_ms(t, 10), ETIMEDOUT);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(thread_join_ms(t, 60000), 0);
	close(p[0]);
	close(p[1]);
	pthread_mutex_lock(&m);
	assert_int_equal(cond_wait_ms(&c, &m, 10), ETIMEDOUT);
	pthread_mutex_unlock(&m);
}

/* Only a memfd of MFD_HUGETLB is hugetlbfs; it needs no pages of the
 * pool to be made (none may be reserved here). */
static void test_fd_hugetlb(void **state)
{
	int fd = memfd_create("t", MFD_CLOEXEC), huge;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(fd_hugetlb(fd), 0);
	close(fd);
	assert_int_equal(fd_hugetlb(-1), -EBADF);
	huge = memfd_create("t", MFD_CLOEXEC | MFD_HUGETLB);
	if (huge < 0) {
		print_message("no hugetlbfs memfd here (%s): only the rest checked\n",
			      strerror(errno));
		return;
	}
	assert_int_equal(fd_hugetlb(huge), 1);
	close(huge);
}

/* Only a memfd with every page allocated is all data without a walk. */
static void test_fd_all_data(void **state)
{
	const uint64_t pg = 4096, size = 4 * pg;
	char page[4096], path[] = "/var/tmp/tern-test-util.XXXXXX";
	struct statfs fs;
	uint64_t i;
	int fd = memfd_create("t", MFD_CLOEXEC), file;

	(void)state;
	memset(page, 1, sizeof(page));
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_false(fd_all_data(fd, size));            /* all holes */
	for (i = 0; i < size; i += pg)
		assert_int_equal(pwrite(fd, page, pg, (off_t)i), (ssize_t)pg);
	assert_true(fd_all_data(fd, size));
	assert_true(fd_all_data(fd, size - pg));        /* a region of the file */
	assert_false(fd_all_data(fd, size + pg));       /* past its end */
	assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)(2 * pg), (off_t)pg), 0);
	assert_false(fd_all_data(fd, size));            /* one hole */
	assert_false(fd_all_data(-1, size));
	close(fd);
	/* a file on another file system: its blocks may count metadata,
	 * so never (a tmpfs file is shmem, as a memfd) */
	file = mkstemp(path);
	assert_true(file >= 0);
	unlink(path);
	for (i = 0; i < size; i += pg)
		assert_int_equal(pwrite(file, page, pg, (off_t)i), (ssize_t)pg);
	assert_int_equal(fsync(file), 0);
	assert_int_equal(fstatfs(file, &fs), 0);
	if (fs.f_type != TMPFS_MAGIC)
		assert_false(fd_all_data(file, size));
	close(file);
}

/* A memfd of 5 pages with data in pages 1 and 3: two extents, holes skipped. */
static void test_fd_next_data(void **state)
{
	const uint64_t pg = 4096, size = 5 * pg;
	uint64_t start, end;
	char one = 1;
	int fd = memfd_create("t", MFD_CLOEXEC);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(pwrite(fd, &one, 1, (off_t)pg), 1);
	assert_int_equal(pwrite(fd, &one, 1, (off_t)(3 * pg)), 1);
	assert_int_equal(fd_next_data(fd, 0, size, &start, &end), 0);
	assert_true(start == pg && end == 2 * pg);
	assert_int_equal(fd_next_data(fd, 2 * pg, size, &start, &end), 0);
	assert_true(start == 3 * pg && end == 4 * pg);
	/* none left: start = end = size */
	assert_int_equal(fd_next_data(fd, 4 * pg, size, &start, &end), 0);
	assert_true(start == size && end == size);
	/* clipped to the size asked for */
	assert_int_equal(fd_next_data(fd, 3 * pg, 3 * pg + 100, &start, &end), 0);
	assert_true(start == 3 * pg && end == 3 * pg + 100);
	assert_int_equal(fd_next_data(-1, 0, size, &start, &end), -EBADF);
	close(fd);
}

/* Only a regular file sealed against shrinking passes; the seal is
 * added on request where the memfd allows it. */
static void test_fd_check_sealed(void **state)
{
	uint64_t size = 0;
	int fd, pfd[2];

	(void)state;
	fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 8192), 0);
	assert_int_equal(fd_check_sealed(fd, false, &size), -EPERM);
	assert_int_equal(size, 0);              /* untouched on failure */
	assert_int_equal(fd_check_sealed(fd, true, &size), 0);
	assert_int_equal(size, 8192);
	assert_true(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK);
	assert_int_equal(ftruncate(fd, 4096), -1);      /* the seal holds */
	size = 0;
	assert_int_equal(fd_check_sealed(fd, false, &size), 0);
	assert_int_equal(size, 8192);
	close(fd);
	/* without MFD_ALLOW_SEALING nobody can add the seal */
	fd = memfd_create("t", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fd_check_sealed(fd, true, &size), -EPERM);
	close(fd);
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(fd_check_sealed(pfd[0], true, &size), -EINVAL);
	close(pfd[0]);
	close(pfd[1]);
	assert_int_equal(fd_check_sealed(-1, true, &size), -EBADF);
}

/* The CPUs counted are the ones this thread may run on. */
static void test_cpus_usable(void **state)
{
	cpu_set_t all, one;
	int first = 0;

	assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
	assert_int_equal(cpus_usable(), CPU_COUNT(&all));
	while (!CPU_ISSET(first, &all))
		first++;
	CPU_ZERO(&one);
	CPU_SET(first, &one);
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	assert_int_equal(cpus_usable(), 1);
	assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
	assert_int_equal(cpus_usable(), CPU_COUNT(&all));
}

/* A peer's words cut short stay whole characters (before: "%.400s" cut
 * an é in two, a stray \xc3 at the end). */
static void test_str_cut(void **state)
{
	(void)state;
	assert_int_equal(str_cut("abcdef", 4), 4);
	assert_int_equal(str_cut("ab", 4), 2);
	assert_int_equal(str_cut("a\xc3\xa9\xc3\xa9", 4), 3);    /* a é|é */
	assert_int_equal(str_cut("a\xc3\xa9\xc3\xa9", 5), 5);
	assert_int_equal(str_cut("\xe2\x82\xac", 2), 0);          /* € */
	/* bytes that are not UTF-8 count alone (shown as \xNN later) */
	assert_int_equal(str_cut("\xff\xfe\xc3", 2), 2);
	assert_int_equal(str_cut("x\xc3", 4), 2);
	assert_int_equal(str_cut("abc", 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_rate),
		cmocka_unit_test(test_parse_u64),
		cmocka_unit_test(test_fmt_size),
		cmocka_unit_test(test_fmt_size_arg),
		cmocka_unit_test(test_str_copy),
		cmocka_unit_test(test_str_is_text),
		cmocka_unit_test(test_str_shown),
		cmocka_unit_test(test_proc_comm_shown),
		cmocka_unit_test(test_proc_comm),
		cmocka_unit_test(test_proc_state),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_now_ns),
		cmocka_unit_test(test_mul_div),
		cmocka_unit_test(test_median_low),
		cmocka_unit_test(test_mkdir_p),
		cmocka_unit_test(test_fd_next_data),
		cmocka_unit_test(test_fd_hugetlb),
		cmocka_unit_test(test_fd_all_data),
		cmocka_unit_test(test_fd_check_sealed),
		cmocka_unit_test(test_timespec_after_ms),
		cmocka_unit_test(test_thread_join_ms),
		cmocka_unit_test(test_cpus_usable),
		cmocka_unit_test(test_str_cut),
	};

	/* Bounds every read, join and wait below: a hang fails the test
	 * (SIGALRM) instead of holding the run until TEST_TIMEOUT. */
	alarm(60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
