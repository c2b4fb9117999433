// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for what faultd takes from a vmm's userfaultfd
 * (faultd/uffdcheck.c): the features in its fdinfo, as the kernel writes
 * them, with real uffds where this process may have them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "faultd/faultd.h"

#define INIT 0x80000000ULL              /* the kernel's "UFFDIO_API done" */

static void test_parse_fdinfo(void **state)
{
	uint64_t f = 0;

	/* as Linux 6.1 and later write it */
	assert_int_equal(uffd_parse_fdinfo("pos:\t0\nflags:\t02004000\nmnt_id:\t17\n"
					   "ino:\t1234\npending:\t0\ntotal:\t0\n"
					   "API:\taa:80000020:80000000000001ff\n", &f), 0);
	assert_true(f == (INIT | 0x20));
	assert_int_equal(uffd_parse_fdinfo("API:\taa:80000022:1ff\n", &f), 0);
	assert_true(f == (INIT | 0x22));
	f = 7;
	assert_int_equal(uffd_parse_fdinfo("pos:\t0\nflags:\t02\n", &f), -EPROTO);
	assert_int_equal(uffd_parse_fdinfo("API:\tab:80000020:1ff\n", &f), -EPROTO);
	assert_int_equal(uffd_parse_fdinfo("API:\taa\n", &f), -EPROTO);
	assert_int_equal(uffd_parse_fdinfo("xAPI:\taa:80000020:1ff\n", &f), -EPROTO);
	assert_int_equal(uffd_parse_fdinfo("", &f), -EPROTO);
	assert_true(f == 7);
}

/* refused(features, words): refused, saying words. */
static void refused(uint64_t features, const char *words)
{
	char why[400] = "";

	assert_int_equal(uffd_check_features(features, why, sizeof(why)), -EPROTO);
	if (!strstr(why, words))
		fail_msg("features 0x%llx: '%s' lacks '%s'",
			 (unsigned long long)features, why, words);
}

static void test_features(void **state)
{
	char why[400];

	assert_int_equal(uffd_check_features(INIT | UFFD_FEATURE_MISSING_SHMEM,
					     why, sizeof(why)), 0);
	assert_int_equal(uffd_check_features(INIT | UFFD_FEATURE_MISSING_SHMEM |
					     UFFD_FEATURE_THREAD_ID |
					     UFFD_FEATURE_EXACT_ADDRESS,
					     why, sizeof(why)), 0);
	assert_int_equal(uffd_check_features(INIT, why, sizeof(why)), 0);
	refused(UFFD_FEATURE_MISSING_SHMEM, "no API yet");
	refused(0, "no API yet");
	refused(INIT | UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM,
		"features faultd does not serve: MINOR_SHMEM (0x400;");
	refused(INIT | UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_EVENT_FORK,
		"features faultd does not serve: EVENT_FORK (0x2;");
	refused(INIT | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_SIGBUS |
		UFFD_FEATURE_PAGEFAULT_FLAG_WP,
		"PAGEFAULT_FLAG_WP, EVENT_REMOVE, SIGBUS (0x89;");
	refused(INIT | (1ULL << 16) | (1ULL << 20), "MOVE, bit 20 (0x110000;");
	refused(INIT | UFFD_FEATURE_MISSING_HUGETLBFS,
		"faultd takes MISSING_SHMEM, THREAD_ID, EXACT_ADDRESS only");
}

/*
 * Real uffds, through /proc/self/fdinfo: the vmm's features pass, one
 * more is refused, and so is one with no UFFDIO_API yet.
 */
static int new_uffd(void)
{
	return (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK |
			    UFFD_USER_MODE_ONLY);
}

static void test_check_fd(void **state)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MISSING_SHMEM };
	char why[400];
	int fd = new_uffd();

	if (fd < 0) {
		print_message("no userfaultfd here (%s): skipped\n", strerror(errno));
		skip();
	}
	assert_int_equal(uffd_check_fd(fd, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "no API yet"));
	assert_int_equal(ioctl(fd, UFFDIO_API, &api), 0);
	assert_int_equal(uffd_check_fd(fd, why, sizeof(why)), 0);
	close(fd);
	fd = new_uffd();
	assert_true(fd >= 0);
	api = (struct uffdio_api){ .api = UFFD_API, .features =
				   UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM };
	if (ioctl(fd, UFFDIO_API, &api) == 0) {
		assert_int_equal(uffd_check_fd(fd, why, sizeof(why)), -EPROTO);
		assert_non_null(strstr(why, "MINOR_SHMEM"));
	} else {
		print_message("no UFFD_FEATURE_MINOR_SHMEM here: that part skipped\n");
	}
	close(fd);
	/* not a descriptor at all */
	assert_true(uffd_check_fd(-1, why, sizeof(why)) < 0);
	assert_non_null(strstr(why, "/proc/self/fdinfo/-1"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_fdinfo),
		cmocka_unit_test(test_features),
		cmocka_unit_test(test_check_fd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
