// SPDX-License-Identifier: GPL-2.0-only
/*
 * First boot of each kind of guest: lay out guest memory and set every
 * vCPU's registers so that the guest starts where it should.  Called once
 * from main() when the vmm is not --incoming.
 *
 * The test guest starts directly in 64-bit mode: the vmm writes its page
 * tables, GDT and TSSs and loads the control registers, so that the guest
 * runs only a handful of ring-0 instructions (emulated, slow under PVM)
 * before it drops to ring 3.  In full mode the vmm also writes the IDT,
 * the IST stacks and the vCPU blocks, and enables XSAVE (CR4.OSXSAVE,
 * XCR0 = x87|SSE|AVX) and syscall (EFER.SCE); the guest's ring 0
 * programs its MSRs and devices itself.  A raw image starts in real mode,
 * as a BIOS would hand over a boot sector.
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
extern const uint64_t tg_full_table[TG_FULL_T_MAX];

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
#define CR4_OSXSAVE 0x40000ULL
#define EFER_SCE 0x1ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL
#define XCR0_AVX 0x7ULL                 /* x87, SSE, AVX */

/* Full mode's rates and bounds (see common/testguest.h, vmm/guest_full.inc). */
#define FULL_TIMER_HZ 250               /* per vCPU */
#define FULL_APIC_BUS_HZ 1000000000ULL  /* KVM's LAPIC timer clock */
#define FULL_PIT_HZ 100
#define FULL_PIT_CLOCK 1193182
#define FULL_IPI_HZ 1000                /* per vCPU, while it runs; NMIs 4x */
#define FULL_STALL_MS 1000
#define FULL_GAP_US 2000                /* under half a timer period */

int boot_test_guest_parse_mode(const char *s)
{
	int i;

	for (i = 0; i < TG_MODE_MAX; i++)
		if (!strcmp(s, tg_mode_name(i)))
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

	if (pd + ngib * 0x1000 > TG_PT_END || ngib > 512) {
		log_warnx("the test guest maps at most %llu GiB of guest physical "
			  "addresses; this guest's RAM ends at %llu GiB: use "
			  "less --memory",
			  (unsigned long long)MIN((TG_PT_END - pd) / 0x1000, 512),
			  (unsigned long long)ngib);
		return -E2BIG;
	}
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
		if (vm->guest.mode == TG_MODE_FULL) {
			uint64_t ist = TG_IST_GPA + (uint64_t)i * TG_IST_SIZE;
			uint64_t tops[3] = { ist + TG_IST1_TOP - 16,
					     ist + TG_IST2_TOP - 16,
					     ist + TG_IST3_TOP - 16 };

			memcpy(tss + 36, tops, sizeof(tops));      /* IST1-3 */
		}
		ret = boot_write(vm, base, tss, sizeof(tss));
		if (ret < 0)
			return ret;
	}
	return boot_write(vm, TG_GDT_GPA, gdt, (TG_GDT_FIXED + 2 * vm->nvcpus) * 8);
}

/* One 64-bit interrupt gate: kernel code, present, DPL 0. */
static void boot_gate(uint64_t *g, uint64_t off, unsigned int ist)
{
	uint64_t a = TG_CODE_GPA + off;

	g[0] = (a & 0xffff) | (uint64_t)TG_SEL_KCODE << 16 |
	       (uint64_t)ist << 32 | 0x8eULL << 40 | (a >> 16 & 0xffff) << 48;
	g[1] = a >> 32;
}

/*
 * Full mode: the IDT (interrupts on IST1, exceptions on IST2, NMIs on
 * IST3), each
 * vCPU's block (its index) and, on top of both its IST stacks, the
 * block's address for the handlers.
 */
static int boot_full(struct vm *vm)
{
	uint64_t idt[256][2], blk, tops[2];
	int v, i, ret;

	for (v = 0; v < 256; v++) {
		uint64_t off = tg_full_table[TG_FULL_T_STRAY];

		if (v < 32)
			off = tg_full_table[TG_FULL_T_EXC] + 16 * v;
		else if (v == TG_VEC_TIMER)
			off = tg_full_table[TG_FULL_T_TIMER];
		else if (v == TG_VEC_IPI)
			off = tg_full_table[TG_FULL_T_IPI];
		else if (v == TG_VEC_PIT)
			off = tg_full_table[TG_FULL_T_PIT];
		else if (v == TG_VEC_SPURIOUS)
			off = tg_full_table[TG_FULL_T_SPURIOUS];
		if (v == 2)
			off = tg_full_table[TG_FULL_T_NMI];
		boot_gate(idt[v], off, v == 2 ? 3 : v < 32 ? 2 : 1);
	}
	ret = boot_write(vm, TG_IDT_GPA, idt, sizeof(idt));
	for (i = 0; ret == 0 && i < vm->nvcpus; i++) {
		uint64_t index = i, ist = TG_IST_GPA + (uint64_t)i * TG_IST_SIZE;

		blk = TG_FULL_GPA + (uint64_t)i * TGF_SIZE;
		tops[0] = blk;
		ret = boot_write(vm, blk + TGF_INDEX, &index, 8);
		if (ret == 0)
			ret = boot_write(vm, ist + TG_IST1_TOP - 16, tops, 8);
		if (ret == 0)
			ret = boot_write(vm, ist + TG_IST2_TOP - 16, tops, 8);
		if (ret == 0)
			ret = boot_write(vm, ist + TG_IST3_TOP - 16, tops, 8);
	}
	return ret;
}

/* The host must let the guest use AVX (XCR0 bits 0-2). */
static bool boot_has_avx(const struct vm *vm)
{
	uint32_t i;

	for (i = 0; i < vm->cpuid->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &vm->cpuid->entries[i];

		if (e->function == 0xd && e->index == 0)
			return (e->eax & XCR0_AVX) == XCR0_AVX;
	}
	return false;
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
		.fast_first = vm->guest.fast_first,
		.heartbeat = vm->guest.heartbeat_ms * vm->tsc_khz,
	};
	uint64_t total = (vm->memory - TG_RANGE_GPA) / TG_PAGE, lin = 0;
	int i;

	if (vm->guest.range && vm->guest.range / TG_PAGE < total)
		total = vm->guest.range / TG_PAGE;
	if (vm->guest.rate)
		p.rate = (vm->guest.rate + vm->nvcpus - 1) / vm->nvcpus;
	if (vm->guest.mode == TG_MODE_FULL) {
		p.timer_hz = FULL_TIMER_HZ;
		p.timer_count = FULL_APIC_BUS_HZ / FULL_TIMER_HZ;
		p.pit_count = FULL_PIT_CLOCK / FULL_PIT_HZ;
		p.ipi_tsc = p.tsc_hz / FULL_IPI_HZ;
		p.stall_tsc = p.tsc_hz / 1000 * FULL_STALL_MS;
		p.gap_tsc = p.tsc_hz / 1000000 * FULL_GAP_US;
	}
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
	bool full = vm->guest.mode == TG_MODE_FULL;
	struct kvm_xcrs xcrs = { .nr_xcrs = 1, .xcrs[0] = { .value = XCR0_AVX } };
	struct kvm_regs regs = {
		.rip = TG_CODE_GPA + (full ? tg_full_table[TG_FULL_T_ENTRY] :
				      tg_entry_offset),
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
	if (full) {
		sregs.idt.base = TG_IDT_GPA;
		sregs.idt.limit = 256 * 16 - 1;
		sregs.cr4 |= CR4_OSXSAVE;
		sregs.efer |= EFER_SCE;
	}

	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0 ||
	    ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	/* XCR0 after CR4.OSXSAVE, which it needs. */
	if (full && ioctl(v->fd, KVM_SET_XCRS, &xcrs) < 0)
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
	if (vm->guest.mode == TG_MODE_FULL && !boot_has_avx(vm)) {
		log_warnx("the full test guest needs AVX, which this host's KVM does not offer");
		return -ENOTSUP;
	}
	ret = boot_page_tables(vm);
	if (ret == 0)
		ret = boot_gdt_tss(vm);
	if (ret == 0)
		ret = boot_params(vm);
	if (ret == 0 && vm->guest.mode == TG_MODE_FULL)
		ret = boot_full(vm);
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

	/* O_NONBLOCK: a FIFO would block the open for a writer; it is
	 * refused below.  Reads of a regular file ignore the flag. */
	fd = open(vm->guest.image, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		log_warn("%s", vm->guest.image);
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0) {
		log_warnx("%s: %s", vm->guest.image, !S_ISREG(st.st_mode) ?
			  "not a regular file" : "empty: nothing to boot");
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
