// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for what faultd takes from a vmm's userfaultfd
 * (faultd/uffdcheck.c): the features in its fdinfo, as the kernel writes
 * them, with real uffds where this process may have them; and each kind
 * of message, a fork's new uffd closed (also a real one, where this
 * process may ask for fork events).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

static struct uffd_msg fault(uint64_t flags)
{
	struct uffd_msg m;

	memset(&m, 0, sizeof(m));
	m.event = UFFD_EVENT_PAGEFAULT;
	m.arg.pagefault.flags = flags;
	m.arg.pagefault.address = 0x7f0000001000ULL;
	return m;
}

/* msg_refused(m, words): refused, saying words. */
static void msg_refused(struct uffd_msg m, const char *words)
{
	char why[400] = "";

	assert_int_equal(uffd_check_msg(&m, why, sizeof(why)), -EPROTO);
	if (!strstr(why, words))
		fail_msg("event 0x%x: '%s' lacks '%s'", m.event, why, words);
}

static void test_messages(void **state)
{
	struct uffd_msg m;
	char why[400];
	int pfd[2];

	m = fault(0);
	assert_int_equal(uffd_check_msg(&m, why, sizeof(why)), 0);
	m = fault(UFFD_PAGEFAULT_FLAG_WRITE);
	assert_int_equal(uffd_check_msg(&m, NULL, 0), 0);
	msg_refused(fault(UFFD_PAGEFAULT_FLAG_MINOR),
		    "minor (UFFD_PAGEFAULT_FLAG_MINOR) fault (flags 0x4) at address 0x7f0000001000");
	msg_refused(fault(UFFD_PAGEFAULT_FLAG_MINOR | UFFD_PAGEFAULT_FLAG_WRITE),
		    "UFFD_PAGEFAULT_FLAG_MINOR");
	msg_refused(fault(UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE),
		    "write-protect (UFFD_PAGEFAULT_FLAG_WP) fault (flags 0x3)");
	msg_refused(fault(1ULL << 7), "page fault (flags 0x80)");
	m = fault(UFFD_PAGEFAULT_FLAG_MINOR);
	assert_int_equal(uffd_check_msg(&m, NULL, 0), -EPROTO);
	memset(&m, 0, sizeof(m));
	m.event = UFFD_EVENT_REMOVE;
	msg_refused(m, "delivered UFFD_EVENT_REMOVE (0x15)");
	m.event = UFFD_EVENT_UNMAP;
	msg_refused(m, "UFFD_EVENT_UNMAP");
	m.event = 0x42;
	msg_refused(m, "an event unknown to faultd (0x42)");
	/* A fork's new uffd is ours, and closed. */
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	memset(&m, 0, sizeof(m));
	m.event = UFFD_EVENT_FORK;
	m.arg.fork.ufd = (uint32_t)pfd[0];
	msg_refused(m, "UFFD_EVENT_FORK");
	assert_int_equal(fcntl(pfd[0], F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	close(pfd[1]);
}

/* The fork test's reader, as faultd's fault thread: one message. */
struct reader {
	int uffd;
	int ret;
	uint32_t ufd;
	char why[400];
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct pollfd p = { r->uffd, POLLIN, 0 };
	struct uffd_msg m;

	r->ret = -ETIMEDOUT;
	if (poll(&p, 1, 10000) == 1 && read(r->uffd, &m, sizeof(m)) == sizeof(m)) {
		r->ufd = m.event == UFFD_EVENT_FORK ? m.arg.fork.ufd : 0;
		r->ret = uffd_check_msg(&m, r->why, sizeof(r->why));
	}
	return NULL;
}

/*
 * A real fork event (it needs CAP_SYS_PTRACE, which root has): the
 * kernel puts the child's uffd in the reader's process; after the check
 * it is closed, and the process holds as many uffds as before.
 */
static void test_fork_event(void **state)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_FORK };
	struct reader r = { .ret = 1 };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	pthread_t th;
	void *mem;
	pid_t pid;
	int status;

	r.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (r.uffd < 0 || ioctl(r.uffd, UFFDIO_API, &api) < 0) {
		print_message("no userfaultfd with fork events here (%s): skipped\n",
			      strerror(errno));
		if (r.uffd >= 0)
			close(r.uffd);
		skip();
	}
	/* Only a registered range makes a fork an event. */
	mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	assert_true(mem != MAP_FAILED);
	reg.range.start = (uintptr_t)mem;
	reg.range.len = 4096;
	assert_int_equal(ioctl(r.uffd, UFFDIO_REGISTER, &reg), 0);
	assert_int_equal(pthread_create(&th, NULL, reader_main, &r), 0);
	/* The fork waits until the event is read. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	pthread_join(th, NULL);
	assert_int_equal(r.ret, -EPROTO);
	assert_non_null(strstr(r.why, "UFFD_EVENT_FORK"));
	assert_true(r.ufd > 0);
	assert_int_equal(fcntl((int)r.ufd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	close(r.uffd);
	munmap(mem, 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_fdinfo),
		cmocka_unit_test(test_features),
		cmocka_unit_test(test_check_fd),
		cmocka_unit_test(test_messages),
		cmocka_unit_test(test_fork_event),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
