// SPDX-License-Identifier: GPL-2.0-only
/*
 * The vmm's side of postcopy: with a /dev/userfaultfd descriptor lent by
 * faultd, create a userfaultfd for our own memory (USERFAULTFD_IOC_NEW
 * needs no privilege once the device is open), register every guest RAM
 * mapping (the ones KVM uses) for missing-page faults and hand the uffd
 * back.  We keep a copy: while any descriptor of the uffd is open, a
 * missing page makes its toucher wait; were the last one to close (faultd
 * and migd dying), the kernel would fill missing pages with zeros under a
 * running guest.  Called from the control service (control.c) on the main
 * thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/vmm.h"

#define UFFD_NEED_IOCTLS ((1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE) | \
			  (1ULL << _UFFDIO_WAKE))

int uffd_create(struct vm *vm, int devfd, int *ret_uffd, char *err, size_t len)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MISSING_SHMEM };
	struct stat st;
	int fd, i, ret;

	if (vm->uffd >= 0) {
		snprintf(err, len, "a userfaultfd already exists (UffdRelease first)");
		return -EBUSY;
	}
	if (vm->hugepages) {
		snprintf(err, len, "postcopy needs guest RAM in 4 KiB pages; this "
			 "vmm's is in 2 MiB huge pages (--hugepages)");
		return -EOPNOTSUPP;
	}
	if (fstat(devfd, &st) < 0 || !S_ISCHR(st.st_mode)) {
		snprintf(err, len, "the descriptor lent is not a character device "
			 "(expected an open /dev/userfaultfd)");
		return -EINVAL;
	}
	fd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, len, ret == -ENOTTY || ret == -EINVAL ?
			 "the descriptor lent is not /dev/userfaultfd (%s)" :
			 "USERFAULTFD_IOC_NEW: %s", strerror(-ret));
		return ret;
	}
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		ret = -errno;
		snprintf(err, len, "UFFDIO_API (shmem missing faults): %s",
			 strerror(-ret));
		goto fail;
	}
	for (i = 0; i < vm->nregions; i++) {
		struct mem_region *r = &vm->regions[i];
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)r->host, .len = r->size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
			ret = -errno;
			snprintf(err, len, "UFFDIO_REGISTER of region %d (%llu bytes at "
				 "gpa 0x%llx): %s", i, (unsigned long long)r->size,
				 (unsigned long long)r->gpa, strerror(-ret));
			goto fail;
		}
		if ((reg.ioctls & UFFD_NEED_IOCTLS) != UFFD_NEED_IOCTLS) {
			ret = -EOPNOTSUPP;
			snprintf(err, len, "region %d: the kernel offers no UFFDIO_COPY/"
				 "ZEROPAGE/WAKE on it (ioctls 0x%llx)", i,
				 (unsigned long long)reg.ioctls);
			goto fail;
		}
	}
	vm->uffd = fd;
	*ret_uffd = fd;
	return 0;
fail:
	/* Closing the only descriptor unregisters whatever was registered. */
	close(fd);
	return ret;
}

/*
 * Unregister, then close.  Closing alone is not enough while faultd
 * (or anyone it lent the uffd to) still holds a copy: the RAM would stay
 * registered, and a fault on it would wait for a reader that may never
 * come (populating RAM after Discard, a vCPU at shutdown).  Unregistering
 * ends that for every copy and wakes whoever waits; a page then missing
 * reads as zeros.
 */
int uffd_release(struct vm *vm)
{
	int i;

	if (vm->uffd < 0)
		return 0;
	for (i = 0; i < vm->nregions; i++) {
		struct uffdio_range r = { .start = (uintptr_t)vm->regions[i].host,
					  .len = vm->regions[i].size };

		if (ioctl(vm->uffd, UFFDIO_UNREGISTER, &r) < 0)
			log_warn("UFFDIO_UNREGISTER of region %d", i);
	}
	close(vm->uffd);
	vm->uffd = -1;
	vm->uffd_token = 0;
	return 1;
}
