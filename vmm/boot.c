// SPDX-License-Identifier: GPL-2.0-only
/*
 * First boot of each kind of guest: lay out guest memory and set every
 * vCPU's registers so that the guest starts where it should.  Called once
 * from main() when the vmm is not --incoming.
 *
 * The test guest starts directly in 64-bit mode: the vmm writes its page
 * tables, GDT and TSSs and loads the control registers, so that the guest
 * runs only a handful of ring-0 instructions (emulated, slow under PVM)
 * before it drops to ring 3.  A raw image starts in real mode, as a BIOS
 * would hand over a boot sector.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/testguest.h"
#include "common/util.h"
#include "vmm/vmm.h"

extern const uint8_t tg_code_start[], tg_code_end[];
extern const uint64_t tg_entry_offset;

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_US 0x4ULL
#define PTE_PS 0x80ULL
#define GIB (1ULL << 30)

#define CR0_PE 0x1ULL
#define CR0_MP 0x2ULL
#define CR0_ET 0x10ULL
#define CR0_NE 0x20ULL
#define CR0_WP 0x10000ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define CR4_OSFXSR 0x200ULL
#define CR4_OSXMMEXCPT 0x400ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

static const char *const tg_mode_names[TG_MODE_MAX] = { "idle", "dirty", "fill" };

int boot_test_guest_parse_mode(const char *s)
{
	int i;

	for (i = 0; i < TG_MODE_MAX; i++)
		if (!strcmp(s, tg_mode_names[i]))
			return i;
	return -EINVAL;
}

static int boot_write(struct vm *vm, uint64_t gpa, const void *p, uint64_t len)
{
	int ret = mem_write(vm, gpa, p, len);

	if (ret < 0)
		log_warnx("guest memory too small for the boot layout at 0x%llx",
			  (unsigned long long)gpa);
	return ret;
}

/*
 * Identity map [0, mem_end) with 2 MiB user-accessible pages, and at
 * least the first 4 GiB so that the test device in the PCI hole is there.
 */
static int boot_page_tables(struct vm *vm)
{
	uint64_t ngib = MAX((mem_end(vm) + GIB - 1) / GIB, 4);
	uint64_t pml4 = TG_PT_GPA, pdpt = TG_PT_GPA + 0x1000;
	uint64_t pd = TG_PT_GPA + 0x2000, i, j, e;
	const uint64_t flags = PTE_P | PTE_RW | PTE_US;
	int ret;

	if (pd + ngib * 0x1000 > TG_PT_END || ngib > 512)
		return -E2BIG;
	e = pdpt | flags;
	ret = boot_write(vm, pml4, &e, 8);
	for (i = 0; ret == 0 && i < ngib; i++) {
		e = (pd + i * 0x1000) | flags;
		ret = boot_write(vm, pdpt + i * 8, &e, 8);
		for (j = 0; ret == 0 && j < 512; j++) {
			e = (i * GIB + j * (2ULL << 20)) | flags | PTE_PS;
			ret = boot_write(vm, pd + i * 0x1000 + j * 8, &e, 8);
		}
	}
	return ret;
}

static int boot_gdt_tss(struct vm *vm)
{
	uint64_t gdt[TG_GDT_FIXED + 2 * TG_MAX_VCPUS] = {
		[TG_SEL_KCODE >> 3] = 0x00af9a000000ffffULL,   /* 64-bit */
		[TG_SEL_KDATA >> 3] = 0x00cf92000000ffffULL,
		[TG_SEL_UCODE32 >> 3] = 0x00cffa000000ffffULL,
		[TG_SEL_UDATA >> 3] = 0x00cff2000000ffffULL,
		[TG_SEL_UCODE >> 3] = 0x00affa000000ffffULL,   /* 64-bit */
	};
	uint8_t tss[TG_TSS_SIZE];
	int i, ret;

	for (i = 0; i < vm->nvcpus; i++) {
		uint64_t base = TG_TSS_GPA + (uint64_t)i * TG_TSS_SIZE;
		uint64_t rsp0 = TG_STACK_GPA + (uint64_t)(i + 1) * 2 * TG_STACK_SIZE;

		gdt[TG_GDT_FIXED + 2 * i] = 103 | ((base & 0xffffff) << 16) |
			(0x89ULL << 40) | ((base >> 24 & 0xff) << 56);
		gdt[TG_GDT_FIXED + 2 * i + 1] = base >> 32;
		memset(tss, 0, sizeof(tss));
		memcpy(tss + 4, &rsp0, 8);
		tss[102] = 104;         /* no I/O bitmap: IOPL 3 decides */
		ret = boot_write(vm, base, tss, sizeof(tss));
		if (ret < 0)
			return ret;
	}
	return boot_write(vm, TG_GDT_GPA, gdt, (TG_GDT_FIXED + 2 * vm->nvcpus) * 8);
}


/* The test range as linear page numbers -> gpa, skipping the PCI hole. */
static uint64_t boot_range_gpa(uint64_t lin)
{
	uint64_t gpa = TG_RANGE_GPA + lin * TG_PAGE;

	return gpa >= VMM_HOLE_START ? gpa + (VMM_HOLE_END - VMM_HOLE_START) : gpa;
}

static int boot_params(struct vm *vm)
{
	struct tg_params p = {
		.magic = TG_PARAMS_MAGIC,
		.mode = vm->guest.mode,
		.nvcpus = vm->nvcpus,
		.tsc_hz = vm->tsc_khz * 1000,
		.passes = vm->guest.passes,
		.heartbeat = vm->guest.heartbeat_ms * vm->tsc_khz,
	};
	uint64_t total = (vm->memory - TG_RANGE_GPA) / TG_PAGE, lin = 0;
	int i;

	if (vm->guest.range && vm->guest.range / TG_PAGE < total)
		total = vm->guest.range / TG_PAGE;
	if (vm->guest.rate)
		p.rate = (vm->guest.rate + vm->nvcpus - 1) / vm->nvcpus;
	if (mem_end(vm) > VMM_HOLE_START) {
		p.hole_start = VMM_HOLE_START;
		p.hole_end = VMM_HOLE_END;
	}
	for (i = 0; i < vm->nvcpus; i++) {
		uint64_t n = total / vm->nvcpus + ((uint64_t)i < total % vm->nvcpus);

		p.slices[i].start = boot_range_gpa(lin);
		p.slices[i].pages = n;
		lin += n;
	}
	return boot_write(vm, TG_PARAMS_GPA, &p, sizeof(p));
}

static void boot_seg(struct kvm_segment *s, uint16_t sel, uint8_t type,
		     uint8_t dpl, bool code64)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->dpl = dpl;
	s->s = 1;
	s->l = code64;
	s->db = !code64;
	s->g = 1;
}

static int boot_test_vcpu(struct vm *vm, struct vcpu *v)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = TG_CODE_GPA + tg_entry_offset,
		.rsp = TG_STACK_GPA + (uint64_t)(v->index + 1) * 2 * TG_STACK_SIZE,
		.rdi = v->index,
		.rflags = 0x2,
	};
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	boot_seg(&sregs.cs, TG_SEL_KCODE, 11, 0, true);
	boot_seg(&sregs.ds, TG_SEL_KDATA, 3, 0, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.base = TG_TSS_GPA + (uint64_t)v->index * TG_TSS_SIZE;
	sregs.tr.limit = 103;
	sregs.tr.selector = TG_SEL_TSS + 16 * v->index;
	sregs.tr.type = 11;
	sregs.tr.present = 1;
	sregs.gdt.base = TG_GDT_GPA;
	sregs.gdt.limit = (TG_GDT_FIXED + 2 * vm->nvcpus) * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.cr3 = TG_PT_GPA;
	sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	sregs.efer = EFER_LME | EFER_LMA;

	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0 ||
	    ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		return -errno;
	return 0;
}

int boot_test_guest(struct vm *vm)
{
	uint64_t code_len = tg_code_end - tg_code_start;
	int i, ret;

	if (vm->memory < TG_MIN_MEMORY || vm->nvcpus > TG_MAX_VCPUS ||
	    code_len > TG_CODE_MAX) {
		log_warnx("the test guest needs at least 4 MiB and at most %d vCPUs",
			  TG_MAX_VCPUS);
		return -EINVAL;
	}
	ret = boot_page_tables(vm);
	if (ret == 0)
		ret = boot_gdt_tss(vm);
	if (ret == 0)
		ret = boot_params(vm);
	if (ret == 0)
		ret = boot_write(vm, TG_CODE_GPA, tg_code_start, code_len);
	for (i = 0; ret == 0 && i < vm->nvcpus; i++) {
		ret = boot_test_vcpu(vm, &vm->vcpus[i]);
		if (ret < 0)
			log_warnc(ret, "vcpu %d: initial register state", i);
	}
	return ret;
}

/* Load a flat binary and start the boot vCPU in real mode at its address. */
int boot_image(struct vm *vm)
{
	uint64_t addr = vm->guest.image_addr;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct stat st;
	uint8_t *dst;
	int fd, ret = 0;

	fd = open(vm->guest.image, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		log_warn("%s", vm->guest.image);
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0) {
		log_warnx("%s: not a non-empty regular file", vm->guest.image);
		ret = -EINVAL;
		goto out;
	}
	dst = mem_gpa_to_host(vm, addr, st.st_size);
	if (addr >= (1ULL << 20) || !dst) {
		log_warnx("%s: %lld bytes at 0x%llx do not fit in guest RAM with "
			  "the start below 1 MiB", vm->guest.image,
			  (long long)st.st_size, (unsigned long long)addr);
		ret = -EINVAL;
		goto out;
	}
	for (off_t done = 0; done < st.st_size;) {
		ssize_t n = pread(fd, dst + done, st.st_size - done, done);

		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			log_warnc(ret, "%s: read", vm->guest.image);
			goto out;
		}
		done += n;
	}
	dirty_mark_vmm(vm, addr, st.st_size);

	if (ioctl(vm->vcpus[0].fd, KVM_GET_SREGS, &sregs) < 0 ||
	    ioctl(vm->vcpus[0].fd, KVM_GET_REGS, &regs) < 0) {
		ret = -errno;
		log_warn("vcpu 0: reading registers");
		goto out;
	}
	/* CS:IP = 0:addr when addr fits 16 bits (0:0x7c00), else seg:off. */
	sregs.cs.selector = addr > 0xffff ? addr >> 4 : 0;
	sregs.cs.base = (uint64_t)sregs.cs.selector << 4;
	memset(&regs, 0, sizeof(regs));
	regs.rip = addr - sregs.cs.base;
	regs.rsp = addr > 0xffff ? 0xfffe : addr;
	regs.rdx = 0x80;                /* boot drive, as a BIOS passes it */
	regs.rflags = 0x2;
	if (ioctl(vm->vcpus[0].fd, KVM_SET_SREGS, &sregs) < 0 ||
	    ioctl(vm->vcpus[0].fd, KVM_SET_REGS, &regs) < 0) {
		ret = -errno;
		log_warn("vcpu 0: setting real-mode registers");
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}
