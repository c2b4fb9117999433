// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guest RAM: one memfd per region, mapped MAP_SHARED so that migd can map
 * the same pages and send straight from them.  RAM below the 32-bit PCI
 * hole is region 0 at gpa 0; what does not fit below 3 GiB is region 1 at
 * 4 GiB.  Also the vmm's own accesses to guest memory, which mark pages
 * dirty for migration.
 *
 * --hugepages: the memfds are of hugetlbfs (MFD_HUGETLB), in 2 MiB pages
 * from the host's pool (/proc/sys/vm/nr_hugepages).  First-time pages
 * then cost one fault per 2 MiB instead of one per 4 KiB (6-12 times
 * faster to fill here: make bench's uffd_copy_2m_gbps), which is what
 * an incoming migration spends its time on.  The pool's pages are
 * reserved for the whole RAM when it is mapped, so a short pool fails
 * the start instead of killing the guest (SIGBUS) when it touches a
 * page; punching a hole gives its reservation back, so a Discard takes
 * the pages back at once.  Dirty logging stays at 4 KiB (KVM maps the
 * pages small while it logs).  Postcopy cannot use such RAM: its pages
 * would be placed 2 MiB at a time (uffd.c refuses).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/vmm.h"

static void mem_unregister(struct vm *vm);

/*
 * Guest RAM memfds go to other processes (GetRam, cpr-transfer): sealed so
 * that none of them can shrink one under our mapping, where our next
 * access would be a SIGBUS.
 */
#define MEM_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

#ifndef MFD_HUGE_2MB                    /* linux/memfd.h: log2(2 MiB) << 26 */
#define MFD_HUGE_2MB (21U << 26)
#endif

/* Huge pages are reserved here (no MAP_NORESERVE): see the head. */
static int mem_map_region(struct mem_region *r, int index, bool huge)
{
	void *p;

	p = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
		 MAP_SHARED | (huge ? 0 : MAP_NORESERVE), r->memfd, 0);
	if (p == MAP_FAILED)
		return -errno;
	r->host = p;
	r->slot = index;
	return 0;
}

static void mem_layout(const struct vm *vm, uint64_t *gpas, uint64_t *sizes, int *ret_n)
{
	int n = 0;

	gpas[n] = 0;
	sizes[n++] = (vm->memory < VMM_HOLE_START ? vm->memory : VMM_HOLE_START);
	if (vm->memory > VMM_HOLE_START) {
		gpas[n] = VMM_HOLE_END;
		sizes[n++] = vm->memory - VMM_HOLE_START;
	}
	*ret_n = n;
}

static void mem_index_pages(struct vm *vm)
{
	uint64_t pages = 0;
	int i;

	for (i = 0; i < vm->nregions; i++) {
		vm->regions[i].first_page = pages;
		pages += vm->regions[i].size / VMM_PAGE;
	}
	vm->npages = pages;
}

/*
 * --prealloc.  Every page of guest RAM is allocated before anything runs:
 * a host short of memory fails the vmm's start (or a Discard) with an
 * error, instead of killing the guest, or an incoming migration halfway
 * through, when it first touches a page.  An incoming migration then
 * writes into pages that are there (migd sees the memfds full).
 *
 * MADV_POPULATE_WRITE faults the pages in as writes would, in as many
 * slices as CPUs (POPULATE_THREADS at most) on as many threads at once:
 * first-touch allocation scales with threads, and one thread takes
 * seconds for a few GiB.  Kernels older than 5.14 refuse the advice;
 * fallocate() does it there.
 */
#define POPULATE_THREADS 4
#define POPULATE_SLICE_MIN (64ULL << 20)

struct populate_slice {
	struct mem_region *r;
	uint64_t off, len;
	int err;
	pthread_t thread;
	bool started;
};

static void *populate_slice(void *arg)
{
	struct populate_slice *s = arg;

	if (madvise(s->r->host + s->off, s->len, MADV_POPULATE_WRITE) == 0)
		return NULL;
	if (errno == EINVAL &&          /* before 5.14 */
	    fallocate(s->r->memfd, 0, (off_t)s->off, (off_t)s->len) == 0)
		return NULL;
	s->err = -errno;
	return NULL;
}

int mem_populate(struct vm *vm)
{
	struct populate_slice s[VMM_MAX_REGIONS * POPULATE_THREADS];
	unsigned int per = MAX(MIN(cpus_usable(), POPULATE_THREADS), 1), n = 0, i, k;
	uint64_t t0 = now_ns(), len;
	char why[PATH_MAX + 128];
	int r, ret;

	/* Huge pages: the pool's, reserved when the RAM was mapped. */
	ret = vm->hugepages ? 0 : mem_room(vm->memory, why, sizeof(why));
	if (ret < 0) {
		log_warnx("--prealloc: %llu MiB of guest RAM, but %s",
			  (unsigned long long)(vm->memory >> 20), why);
		return ret;
	}
	memset(s, 0, sizeof(s));
	/* per slices in all, shared by the regions as their sizes are */
	for (i = 0; i < (unsigned int)vm->nregions; i++) {
		struct mem_region *reg = &vm->regions[i];
		uint64_t share = MAX(per * reg->size / vm->memory, 1);

		len = ALIGN_UP(reg->size / share, 2ULL << 20);
		len = MAX(len, POPULATE_SLICE_MIN);
		for (k = 0; k < share && k * len < reg->size; k++, n++) {
			s[n].r = reg;
			s[n].off = k * len;
			s[n].len = MIN(len, reg->size - s[n].off);
		}
	}
	/* Slices run at once; the last one on this thread. */
	for (i = 0; i + 1 < n; i++) {
		r = pthread_create(&s[i].thread, NULL, populate_slice, &s[i]);
		if (r == 0)
			s[i].started = true;
		else
			populate_slice(&s[i]);
	}
	if (n)
		populate_slice(&s[n - 1]);
	for (i = 0; i < n; i++) {
		if (s[i].started)
			pthread_join(s[i].thread, NULL);
		if (s[i].err && !ret)
			ret = s[i].err;
	}
	if (ret < 0) {
		log_warnc(ret, "--prealloc: allocating %llu MiB of guest RAM",
			  (unsigned long long)(vm->memory >> 20));
		mem_discard(vm);
		return ret;
	}
	log_info("preallocated %llu MiB of guest RAM in %llu ms",
		 (unsigned long long)(vm->memory >> 20),
		 (unsigned long long)((now_ns() - t0) / 1000000));
	return 0;
}

int mem_create(struct vm *vm)
{
	uint64_t gpas[VMM_MAX_REGIONS], sizes[VMM_MAX_REGIONS];
	unsigned int flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	long long avail = -1;
	char name[32];
	int i, n, ret;

	if (vm->hugepages) {
		flags |= MFD_HUGETLB | MFD_HUGE_2MB;
		avail = mem_huge_room();
	}
	mem_layout(vm, gpas, sizes, &n);
	for (i = 0; i < n; i++) {
		struct mem_region *r = &vm->regions[i];

		r->gpa = gpas[i];
		r->size = sizes[i];
		snprintf(name, sizeof(name), "tern-ram%d", i);
		r->memfd = memfd_create(name, flags);
		if (r->memfd < 0) {
			ret = -errno;
			if (vm->hugepages)
				log_warnc(ret, "--hugepages: this kernel gives no "
					  "memfd of 2 MiB huge pages");
			return ret;
		}
		vm->nregions = i + 1;
		if (ftruncate(r->memfd, r->size) < 0 ||
		    fcntl(r->memfd, F_ADD_SEALS, MEM_SEALS) < 0)
			return -errno;
		ret = mem_map_region(r, i, vm->hugepages);
		if (ret == -ENOMEM && vm->hugepages) {
			log_warnx("--hugepages: %llu MiB of guest RAM need %llu "
				  "huge pages of 2 MiB, but the host's pool has "
				  "%lld free (raise /proc/sys/vm/nr_hugepages)",
				  (unsigned long long)(vm->memory >> 20),
				  (unsigned long long)(vm->memory >> 21), avail);
			return ret;
		}
		if (ret < 0)
			return ret;
	}
	mem_index_pages(vm);
	return 0;
}

/* Unmap and close N regions. */
static void mem_release(struct mem_region *r, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		if (r[i].host)
			munmap(r[i].host, r[i].size);
		if (r[i].memfd >= 0)
			close(r[i].memfd);
		r[i].host = NULL;
		r[i].memfd = -1;
	}
}

/* The caller's regions must be laid out exactly as ours, each a memfd
 * (or file) of the region's size, sealed against shrinking, all of huge
 * pages (*huge then) or none. */
static int mem_adopt_check(const struct vm *vm, const int *fds,
			   const uint64_t *gpas, const uint64_t *sizes, int n,
			   bool *huge)
{
	uint64_t mygpas[VMM_MAX_REGIONS], mysizes[VMM_MAX_REGIONS], size;
	int i, myn, ret;

	mem_layout(vm, mygpas, mysizes, &myn);
	if (n != myn)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (gpas[i] != mygpas[i] || sizes[i] != mysizes[i])
			return -EINVAL;
		ret = fd_check_sealed(fds[i], false, &size);
		if (ret < 0)
			return ret;
		if (size != sizes[i])
			return -EINVAL;
		ret = fd_hugetlb(fds[i]);
		if (ret < 0)
			return ret;
		if (i && *huge != (ret == 1))
			return -EINVAL;
		*huge = ret == 1;
	}
	return 0;
}

/*
 * Replace our (untouched, incoming) RAM with a caller's memfds.  Takes
 * ownership of the fds.  On failure the vmm holds none of them and keeps
 * its own RAM, registered with KVM as before; only if KVM refuses that
 * back too is the VM left in VM_STATE_ERROR.  err says what went wrong.
 */
int mem_adopt(struct vm *vm, const int *fds, const uint64_t *gpas,
	      const uint64_t *sizes, int n, char *err, size_t errlen)
{
	struct mem_region fresh[VMM_MAX_REGIONS], old[VMM_MAX_REGIONS];
	bool huge = false;
	int i, oldn, ret, r;

	memset(fresh, 0, sizeof(fresh));
	for (i = 0; i < n; i++) {
		fresh[i].gpa = gpas[i];
		fresh[i].size = sizes[i];
		fresh[i].memfd = fds[i];
	}
	ret = mem_adopt_check(vm, fds, gpas, sizes, n, &huge);
	if (ret < 0) {
		snprintf(err, errlen, "RAM refused (%s): the layout must match this "
			 "vmm's %llu bytes, one memfd per region sealed against "
			 "shrinking, all of huge pages or none", strerror(-ret),
			 (unsigned long long)vm->memory);
		goto fail;
	}
	for (i = 0; i < n; i++) {
		ret = mem_map_region(&fresh[i], i, huge);
		if (ret < 0) {
			snprintf(err, errlen, "cannot map the RAM: %s", strerror(-ret));
			goto fail;
		}
	}
	/* KVM's slots move to the new RAM; ours stays until they have. */
	memcpy(old, vm->regions, sizeof(old));
	oldn = vm->nregions;
	mem_unregister(vm);
	memcpy(vm->regions, fresh, sizeof(fresh));
	vm->nregions = n;
	ret = mem_register(vm, vm->dirty_on);
	if (ret == 0 && fault_active("vmm-adopt-refused"))
		ret = -ENOMEM;  /* as if KVM had refused the last slot */
	if (ret == 0) {
		mem_release(old, oldn);
		mem_index_pages(vm);
		vm->hugepages = huge;
		return 0;
	}
	mem_unregister(vm);
	memcpy(vm->regions, old, sizeof(old));
	vm->nregions = oldn;
	r = mem_register(vm, vm->dirty_on);
	if (r == 0) {
		snprintf(err, errlen, "KVM refused the RAM (%s); this vmm keeps "
			 "its own", strerror(-ret));
	} else {
		snprintf(err, errlen, "KVM refused the RAM (%s), and then this "
			 "vmm's own (%s)", strerror(-ret), strerror(-r));
		vm_set_state(vm, VM_STATE_ERROR, err);
	}
fail:
	mem_release(fresh, n);
	return ret;
}

void mem_destroy(struct vm *vm)
{
	mem_release(vm->regions, vm->nregions);
	vm->nregions = 0;
}

/* Remove our slots from KVM (a slot's host address cannot change in place). */
static void mem_unregister(struct vm *vm)
{
	int i;

	for (i = 0; i < vm->nregions; i++) {
		struct kvm_userspace_memory_region kr = {
			.slot = vm->regions[i].slot,
		};

		ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr);
	}
}

/* (Re)register every region as a KVM slot, with or without dirty logging. */
int mem_register(struct vm *vm, bool log_dirty)
{
	int i;

	for (i = 0; i < vm->nregions; i++) {
		struct mem_region *r = &vm->regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = r->slot,
			.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uintptr_t)r->host,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
			return -errno;
	}
	return 0;
}

/* Every page dropped, the memfds holes again (an incoming vmm forgetting
 * a failed migration, or a failed allocation).  KVM's view follows the
 * memfds. */
int mem_discard(struct vm *vm)
{
	int i;

	for (i = 0; i < vm->nregions; i++) {
		if (fallocate(vm->regions[i].memfd,
			      FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			      vm->regions[i].size) < 0)
			return -errno;
		/* The hole gave back the pages' reservation: without them
		 * again now, a short pool would be a SIGBUS later. */
		if (vm->hugepages &&
		    fallocate(vm->regions[i].memfd, 0, 0, vm->regions[i].size) < 0)
			return -errno;
	}
	return 0;
}

uint64_t mem_end(const struct vm *vm)
{
	const struct mem_region *r = &vm->regions[vm->nregions - 1];

	return r->gpa + r->size;
}

/* The region that holds all of [gpa, gpa + len), or NULL. */
static struct mem_region *mem_region_of(struct vm *vm, uint64_t gpa, uint64_t len)
{
	int i;

	for (i = 0; i < vm->nregions; i++) {
		struct mem_region *r = &vm->regions[i];

		if (gpa >= r->gpa && len <= r->size && gpa - r->gpa <= r->size - len)
			return r;
	}
	return NULL;
}

/* Host address of [gpa, gpa + len) if it lies inside one region. */
void *mem_gpa_to_host(struct vm *vm, uint64_t gpa, uint64_t len)
{
	struct mem_region *r = mem_region_of(vm, gpa, len);

	return r ? r->host + (gpa - r->gpa) : NULL;
}

bool mem_arrived(struct vm *vm, uint64_t gpa, uint64_t len)
{
	struct mem_region *r = mem_region_of(vm, gpa, len);
	uint64_t off;
	off_t hole;

	if (!r || vm->uffd < 0 || !len)
		return true;
	off = gpa - r->gpa;
	hole = lseek(r->memfd, (off_t)ALIGN_DOWN(off, 4096), SEEK_HOLE);
	return hole >= 0 && (uint64_t)hole >= off + len;
}

int mem_write(struct vm *vm, uint64_t gpa, const void *buf, uint64_t len)
{
	void *p = mem_gpa_to_host(vm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	dirty_mark_vmm(vm, gpa, len);
	return 0;
}

int mem_read(struct vm *vm, uint64_t gpa, void *buf, uint64_t len)
{
	void *p = mem_gpa_to_host(vm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}
