// SPDX-License-Identifier: GPL-2.0-only
/*
 * Dirty logging for migration.  KVM VM ioctls only work in the process
 * that created the VM, so the vmm reads KVM's dirty log and ORs it into a
 * bitmap in a memfd that it shares with migd (one bit per guest page,
 * numbered across regions in layout order).  Pages the vmm writes itself
 * (image loading, WriteMem) are ORed in too.  migd clears the bits it has
 * consumed.  Manual protect mode: GET_DIRTY_LOG no longer re-protects, so
 * each sync clears exactly the bits it took with CLEAR_DIRTY_LOG.
 * Called from the control service on the main thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/vmm.h"

void dirty_mark_vmm(struct vm *vm, uint64_t gpa, uint64_t len)
{
	uint64_t end = gpa + len, page;
	int i;

	if (!vm->dirty_vmm || len == 0)
		return;
	for (i = 0; i < vm->nregions; i++) {
		struct mem_region *r = &vm->regions[i];

		if (end <= r->gpa || gpa >= r->gpa + r->size)
			continue;
		for (page = (MAX(gpa, r->gpa) - r->gpa) / VMM_PAGE;
		     page * VMM_PAGE < MIN(end, r->gpa + r->size) - r->gpa; page++)
			bitmap_set_atomic(vm->dirty_vmm, r->first_page + page);
	}
}

static void dirty_free(struct vm *vm)
{
	uint64_t bytes = BITMAP_BYTES(vm->npages);

	if (vm->dirty_shared)
		munmap(vm->dirty_shared, bytes);
	if (vm->dirty_memfd >= 0)
		close(vm->dirty_memfd);
	free(vm->dirty_scratch);
	free(vm->dirty_vmm);
	vm->dirty_shared = vm->dirty_scratch = vm->dirty_vmm = NULL;
	vm->dirty_memfd = -1;
}

/*
 * Start logging.  *ret_memfd is the shared bitmap (the caller passes it on
 * and closes nothing: the vmm keeps its own reference until dirty_stop).
 */
int dirty_start(struct vm *vm, int *ret_memfd)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
	};
	uint64_t bytes = BITMAP_BYTES(vm->npages);
	void *p;
	int ret;

	if (vm->dirty_on)
		return -EALREADY;
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
		  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) <= 0)
		return -ENOTSUP;
	vm->dirty_memfd = memfd_create("tern-dirty",
				       MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (vm->dirty_memfd < 0)
		return -errno;
	ret = -ENOMEM;
	vm->dirty_scratch = calloc(1, bytes);
	vm->dirty_vmm = calloc(1, bytes);
	if (!vm->dirty_scratch || !vm->dirty_vmm)
		goto fail;
	/* migd gets this memfd: it must not shrink it under our mapping. */
	if (ftruncate(vm->dirty_memfd, bytes) < 0 ||
	    fcntl(vm->dirty_memfd, F_ADD_SEALS,
		  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail_errno;
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
		 vm->dirty_memfd, 0);
	if (p == MAP_FAILED)
		goto fail_errno;
	vm->dirty_shared = p;
	/* Enabling the cap twice is harmless; it cannot be turned off. */
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		goto fail_errno;
	ret = mem_register(vm, true);
	if (ret < 0)
		goto fail;
	vm->dirty_on = true;
	*ret_memfd = vm->dirty_memfd;
	return 0;
fail_errno:
	ret = -errno;
fail:
	dirty_free(vm);
	return ret;
}

/*
 * OR src into the shared map atomically (migd clears bits concurrently);
 * take_src empties src as it goes.  Returns the bits newly set.
 */
static uint64_t dirty_or_shared(uint64_t *dst, uint64_t *src, uint64_t words,
				bool take_src)
{
	uint64_t i, w, old, newly = 0;

	for (i = 0; i < words; i++) {
		/* Most words are empty: a plain load first, for an exchange
		 * costs ~10 ns even then (0.3 ms a sync for 8 GiB). */
		w = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
		if (!w)
			continue;
		if (take_src)
			w = __atomic_exchange_n(&src[i], 0, __ATOMIC_RELAXED);
		old = __atomic_fetch_or(&dst[i], w, __ATOMIC_RELAXED);
		newly += __builtin_popcountll(w & ~old);
	}
	return newly;
}

int dirty_sync(struct vm *vm, uint64_t *ret_newly)
{
	uint64_t newly = 0;
	int i;

	if (!vm->dirty_on)
		return -EINVAL;
	for (i = 0; i < vm->nregions; i++) {
		struct mem_region *r = &vm->regions[i];
		uint64_t pages = r->size / VMM_PAGE;
		uint64_t *dst = vm->dirty_shared + r->first_page / 64;
		struct kvm_dirty_log log = {
			.slot = r->slot,
			.dirty_bitmap = vm->dirty_scratch,
		};
		struct kvm_clear_dirty_log clr = {
			.slot = r->slot,
			.first_page = 0,
			.num_pages = pages,
			.dirty_bitmap = vm->dirty_scratch,
		};

		memset(vm->dirty_scratch, 0, BITMAP_BYTES(pages));
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return -errno;
		if (bitmap_count(vm->dirty_scratch, pages) &&
		    ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
			return -errno;
		/* Regions are 2 MiB multiples, so first_page is word aligned. */
		newly += dirty_or_shared(dst, vm->dirty_scratch,
					 BITMAP_WORDS(pages), false);
	}
	newly += dirty_or_shared(vm->dirty_shared, vm->dirty_vmm,
				 BITMAP_WORDS(vm->npages), true);
	*ret_newly = newly;
	return 0;
}

int dirty_stop(struct vm *vm)
{
	int ret;

	if (!vm->dirty_on)
		return -EINVAL;
	ret = mem_register(vm, false);
	vm->dirty_on = false;
	dirty_free(vm);
	return ret;
}
