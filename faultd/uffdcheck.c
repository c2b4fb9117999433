// SPDX-License-Identifier: GPL-2.0-only
/*
 * What faultd takes from a vmm's userfaultfd: the features it was made
 * with, checked once at Attach (control.c), and each message it delivers,
 * checked by the fault thread (session.c) before it is served.
 *
 * faultd serves missing-page faults on shared memory, which is all the
 * vmm asks of its uffd (vmm/uffd.c); the vmm is less privileged than
 * faultd, makes the uffd and keeps a copy.  A uffd that delivers anything
 * else hurts faultd, which serves every VM on the host from threads in
 * the real-time class: a minor or write-protect fault on a page that is
 * there gets UFFDIO_ZEROPAGE's EEXIST and a wake-up, and comes back at
 * once, for ever (an audit saw 2.9 M faults in 3 s on one page);
 * a fork event installs a new userfaultfd in faultd at each fork of the
 * vmm, which nobody would close.  So Attach refuses such a uffd, and the
 * fault thread fails its session (never faultd) on any such message.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "faultd/faultd.h"

/*
 * The kernel's own mark, in the features fdinfo shows, that UFFDIO_API
 * was done (UFFD_FEATURE_INITIALIZED in fs/userfaultfd.c; in every kernel
 * with /dev/userfaultfd, 6.1 and later).  Only then are the features
 * fixed: UFFDIO_API succeeds once per uffd, and the vmm, which shares
 * ours, could otherwise enable any feature after we looked.
 */
#define UFFD_FEATURES_INITIALIZED (1ULL << 31)

/*
 * What a vmm's uffd may have: MISSING_SHMEM, what the vmm asks for, and
 * two that only change what a page fault's message says, in fields
 * faultd reads safely or not at all: THREAD_ID (the faulting thread's
 * id, unread) and EXACT_ADDRESS (the address not rounded down to its
 * page: handle_fault rounds it down itself).  Any other changes what
 * faultd would have to serve: events (fork, remap, remove, unmap),
 * minor or write-protect faults, SIGBUS instead of faults (the guest
 * would die at its first missing page), or a feature newer than this
 * list (refused until someone looks at it).
 */
#define UFFD_FEATURES_SERVED ((1ULL << 5) | (1ULL << 8) | (1ULL << 11))

/* UFFD_FEATURE_* by bit, as of Linux 6.8; the kernel's headers of
 * Debian 12 (6.1) lack the last four. */
static const char *const feature_names[] = {
	"PAGEFAULT_FLAG_WP", "EVENT_FORK", "EVENT_REMAP", "EVENT_REMOVE",
	"MISSING_HUGETLBFS", "MISSING_SHMEM", "EVENT_UNMAP", "SIGBUS",
	"THREAD_ID", "MINOR_HUGETLBFS", "MINOR_SHMEM", "EXACT_ADDRESS",
	"WP_HUGETLBFS_SHMEM", "WP_UNPOPULATED", "POISON", "WP_ASYNC", "MOVE",
};

/* The names of the bits of f, ", "-separated, into buf. */
static void feature_list(uint64_t f, char *buf, size_t len)
{
	size_t n = 0;
	unsigned int b;

	buf[0] = 0;
	for (b = 0; b < 64 && n < len; b++) {
		if (!(f & (1ULL << b)))
			continue;
		if (b < ARRAY_SIZE(feature_names))
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "",
					      feature_names[b]);
		else
			n += (size_t)snprintf(buf + n, len - n, "%sbit %u",
					      n ? ", " : "", b);
	}
}

int uffd_parse_fdinfo(const char *text, uint64_t *ret_features)
{
	unsigned long long api, features, ioctls;
	const char *p = text;

	/* "API:\t%Lx:%x:%Lx": the API, the features, the ioctls
	 * (fs/userfaultfd.c, userfaultfd_show_fdinfo), after pos:, flags:,
	 * mnt_id:, ino:, pending: and total: lines. */
	while (strncmp(p, "API:\t", 5) != 0) {
		p = strchr(p, '\n');
		if (!p)
			return -EPROTO;
		p++;
	}
	if (sscanf(p + 5, "%llx:%llx:%llx", &api, &features, &ioctls) != 3 ||
	    api != UFFD_API)
		return -EPROTO;
	*ret_features = features;
	return 0;
}

int uffd_check_features(uint64_t features, char *why, size_t len)
{
	char names[256], served[128];
	uint64_t extra = features & ~(UFFD_FEATURES_INITIALIZED |
				      UFFD_FEATURES_SERVED);

	if (!(features & UFFD_FEATURES_INITIALIZED)) {
		snprintf(why, len, "its userfaultfd has no API yet (no UFFDIO_API): "
			 "whatever it enables later would reach faultd unchecked");
		return -EPROTO;
	}
	if (!extra)
		return 0;
	feature_list(extra, names, sizeof(names));
	feature_list(UFFD_FEATURES_SERVED, served, sizeof(served));
	snprintf(why, len, "its userfaultfd has features faultd does not serve: "
		 "%s (0x%" PRIx64 "; faultd takes %s only)", names, extra, served);
	return -EPROTO;
}

int uffd_check_fd(int fd, char *why, size_t len)
{
	char path[64], text[1024];
	uint64_t features = 0;
	ssize_t n;
	int in, e;

	/*
	 * Unreadable, the uffd is refused: nothing else tells what it will
	 * deliver, and faultd already needs /proc/self (check_uffd's
	 * readlink), so only a broken host refuses every Attach here, each
	 * saying why, rather than serve unchecked uffds.
	 */
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		e = errno;
		snprintf(why, len, "cannot tell its userfaultfd's features (%s: %s)",
			 path, strerror(e));
		return -e;
	}
	n = read(in, text, sizeof(text) - 1);
	e = errno;
	close(in);
	if (n < 0) {
		snprintf(why, len, "cannot tell its userfaultfd's features (%s: %s)",
			 path, strerror(e));
		return -e;
	}
	text[n] = 0;
	if (uffd_parse_fdinfo(text, &features) < 0) {
		snprintf(why, len, "cannot tell its userfaultfd's features (%s "
			 "has no API line of API %#x)", path, (unsigned int)UFFD_API);
		return -EPROTO;
	}
	return uffd_check_features(features, why, len);
}

static const char *event_name(uint8_t event)
{
	switch (event) {
	case UFFD_EVENT_PAGEFAULT:
		return "UFFD_EVENT_PAGEFAULT";
	case UFFD_EVENT_FORK:
		return "UFFD_EVENT_FORK";
	case UFFD_EVENT_REMAP:
		return "UFFD_EVENT_REMAP";
	case UFFD_EVENT_REMOVE:
		return "UFFD_EVENT_REMOVE";
	case UFFD_EVENT_UNMAP:
		return "UFFD_EVENT_UNMAP";
	}
	return "an event unknown to faultd";
}

int uffd_check_msg(const struct uffd_msg *m, char *why, size_t len)
{
	/* The flags of a fault on a missing page: a write or a read.  Any
	 * other marks a fault on a page that is there, or one of a kind
	 * faultd does not know: served as missing, it would come back. */
	const uint64_t flags = m->arg.pagefault.flags & ~(uint64_t)UFFD_PAGEFAULT_FLAG_WRITE;

	if (m->event == UFFD_EVENT_FORK) {
		/* The kernel installed the child's uffd in faultd as it
		 * delivered this: ours to close. */
		close((int)m->arg.fork.ufd);
		snprintf(why, len, "its userfaultfd reported a fork (UFFD_EVENT_FORK; "
			 "the child's userfaultfd closed): faultd serves page "
			 "faults only");
		return -EPROTO;
	}
	if (m->event != UFFD_EVENT_PAGEFAULT) {
		snprintf(why, len, "its userfaultfd delivered %s (0x%x): faultd "
			 "serves page faults only", event_name(m->event), m->event);
		return -EPROTO;
	}
	if (!flags)
		return 0;
	snprintf(why, len, "its userfaultfd delivered a %s fault (flags 0x%llx) "
		 "at address 0x%llx: the vmm registered its RAM for more than "
		 "missing pages, which are all faultd serves",
		 flags & UFFD_PAGEFAULT_FLAG_MINOR ? "minor (UFFD_PAGEFAULT_FLAG_MINOR)" :
		 flags & UFFD_PAGEFAULT_FLAG_WP ? "write-protect (UFFD_PAGEFAULT_FLAG_WP)" :
		 "page", (unsigned long long)m->arg.pagefault.flags,
		 (unsigned long long)m->arg.pagefault.address);
	return -EPROTO;
}
