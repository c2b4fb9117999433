/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The built-in test guest's memory layout and page format, shared by the
 * vmm (which lays the guest out and embeds its code), the guest's own
 * assembly (vmm/guest.S, so only #defines here outside C) and the memory
 * checker (common/memcheck.c).
 *
 * Guest-physical layout (identity-mapped with 2 MiB pages, all user-
 * accessible so that the workload runs in ring 3, natively under PVM):
 *
 *   0x001000  GDT            0x005000  TSSs (128 bytes per vCPU)
 *   0x002000  IDT            (full mode only, 256 gates)
 *   0x003000  parameters     (struct tg_params, written by the vmm)
 *   0x004000  vCPU status    (struct tg_vcpu_status[TG_MAX_VCPUS])
 *   0x008000  full-mode blocks (TGF_SIZE per vCPU, see below)
 *   0x010000  page tables    (PML4, PDPT, one PD per GiB)
 *   0x100000  guest code     (vmm/guest.S, copied here)
 *   0x110000  stacks         (TG_STACK_SIZE user + kernel per vCPU)
 *   0x190000  IST stacks     (full mode: interrupts, exceptions; per vCPU)
 *   0x1d0000  access times   (per vCPU: a histogram, see TG_LAT_GPA)
 *   0x200000  test range     (to the end of RAM, skipping the PCI hole)
 *
 * Every page of the test range holds, once written at generation g >= 1:
 *   word 0  gpa ^ TG_MAGIC_DIRTY or gpa ^ TG_MAGIC_FILL (the mode; full
 *           mode writes dirty pages)
 *   word 1  g
 *   words 2..511: 0 in dirty mode; tg_fill_word(gpa, g, i) in fill mode.
 * A page never written is all zero (generation 0).  Each vCPU walks its
 * own slice in ascending address order; a pass writes generation g+1 over
 * g.  Fill mode writes words 2..511 in order, then word 1, then word 0,
 * so a page the vCPU was stopped inside shows a prefix of g+1 data.
 * Before rewriting a page the guest verifies that it holds generation g.
 */
#ifndef TERN_TESTGUEST_H
#define TERN_TESTGUEST_H

#define TG_GDT_GPA 0x1000
#define TG_TSS_GPA 0x5000
#define TG_TSS_SIZE 128

/*
 * The test device: an MMIO doorbell in the PCI hole through which ring 3
 * talks to the vmm without entering ring 0 (under PVM ring 3 has no I/O
 * privilege, and ring-0 code is emulated, slowly).  An 8-byte write of a
 * line buffer's gpa (a length word, then up to TG_LINE_MAX bytes) to
 * TG_DB_PRINT prints the line on the console; any write to TG_DB_HALT
 * parks the vCPU until the VM is next paused or resumed.
 */
#define TG_DOORBELL_GPA 0xd0000000
#define TG_DB_PRINT 0
#define TG_DB_HALT 8
#define TG_PARAMS_GPA 0x3000
#define TG_STATUS_GPA 0x4000
#define TG_PT_GPA 0x10000
#define TG_PT_END 0x100000
#define TG_CODE_GPA 0x100000
#define TG_CODE_MAX 0x10000
#define TG_STACK_GPA 0x110000
#define TG_STACK_SIZE 0x1000     /* each of user and kernel, per vCPU */
#define TG_LINE_MAX 248          /* console line buffer at the user stack's bottom */
#define TG_RANGE_GPA 0x200000

/*
 * Before it checks a page, the guest times its first load of it with the
 * TSC, and counts the time in its vCPU's histogram: TG_LAT_BUCKETS 32-bit
 * counters at TG_LAT_GPA + index * TG_LAT_SIZE.  A load of a page that is
 * missing on a postcopy destination is a fault: its time is what the
 * vCPU waited, fault to resumed.  Bucket i < 24 holds exactly i ticks;
 * from 24 on, octave o = floor(log2(t)) is cut in eighths: bucket
 * o * 8 + (t >> (o - 3) & 7) holds [(8 + e) << (o - 3), (9 + e) << (o - 3))
 * for e = t >> (o - 3) & 7; the last bucket also holds everything longer.
 */
#define TG_LAT_GPA 0x1d0000
#define TG_LAT_BUCKETS 256
#define TG_LAT_SIZE (TG_LAT_BUCKETS * 4)
#define TG_MAX_VCPUS 64
#define TG_MIN_MEMORY (4u << 20)

/* Linux's GDT layout: PVM requires ring 3 to use the host's selectors. */
#define TG_SEL_KCODE 0x10
#define TG_SEL_KDATA 0x18
#define TG_SEL_UCODE32 0x23
#define TG_SEL_UDATA 0x2b
#define TG_SEL_UCODE 0x33
#define TG_SEL_TSS 0x40         /* + 16 * vCPU index */
#define TG_GDT_FIXED 8          /* entries before the first TSS */

#define TG_PARAMS_MAGIC 0x74656e7274677031 /* "tenrtgp1" */
#define TG_MAGIC_DIRTY 0x5445524e44495254  /* "TERNDIRT" */
#define TG_MAGIC_FILL 0x5445524e46494c4c   /* "TERNFILL" */
#define TG_FILL_K1 0x9e3779b97f4a7c15
#define TG_FILL_K2 0xbf58476d1ce4e5b9
#define TG_FILL_K3 0x94d049bb133111eb

#define TG_MODE_IDLE 0
#define TG_MODE_DIRTY 1
#define TG_MODE_FILL 2
#define TG_MODE_FULL 3          /* dirty's pages + interrupts, FPU, clocks */
#define TG_MODE_MAX 4

#define TG_PAGE 4096
#define TG_WORDS (TG_PAGE / 8)

/* Offsets in struct tg_params, for the assembly. */
#define TGP_MAGIC 0
#define TGP_MODE 8
#define TGP_NVCPUS 16
#define TGP_TSC_HZ 24
#define TGP_RATE 32             /* pages per second per vCPU, 0 = no cap */
#define TGP_PASSES 40           /* 0 = forever */
#define TGP_HOLE_START 48       /* 0 when RAM does not reach the hole */
#define TGP_HOLE_END 56
#define TGP_HEARTBEAT 64        /* TSC ticks between heartbeat lines, 0 = none */
#define TGP_UART_LOCK 72
#define TGP_TIMER_HZ 80         /* full mode: LAPIC timer ticks per second */
#define TGP_TIMER_COUNT 88      /* its initial count (divide by 1) */
#define TGP_PIT_COUNT 96        /* PIT channel 0 divisor */
#define TGP_IPI_TSC 104         /* TSC ticks of running between IPIs sent */
#define TGP_STALL_TSC 112       /* running without a tick or an IPI ack: FAIL */
#define TGP_GAP_TSC 120         /* a longer step means the vCPU did not run */
#define TGP_SLICES 128          /* TG_MAX_VCPUS x { start gpa, pages } */
#define TGP_FAST_FIRST (TGP_SLICES + TG_MAX_VCPUS * 16) /* 1: pass 1 uncapped */

/* Offsets in struct tg_vcpu_status (64 bytes each). */
#define TGS_SIZE 64
#define TGS_PASS 0              /* generation being written (>= 1) */
#define TGS_POS 8               /* gpa of the page being written */
#define TGS_ERRORS 16           /* pages that failed the in-guest check */
#define TGS_FIRST_BAD 24        /* gpa of the first of them */
#define TGS_STATE 32            /* TG_VSTATE_* */
#define TGS_PAGES 40            /* pages written in all */

#define TG_VSTATE_BOOT 0
#define TG_VSTATE_RUN 1
#define TG_VSTATE_DONE 2        /* passes finished, halted */

/*
 * Full mode ("full"): the dirty mode's pages, plus what a kernel leans on.
 * Ring 0 is a few handlers (they run emulated under PVM, ~1 us per
 * instruction): an IDT whose interrupt gates use IST1, exception gates
 * IST2 and the NMI gate IST3, a syscall entry (LSTAR, SFMASK without IF: a syscall that cleared
 * IF would leave it clear for good on this PVM), a periodic LAPIC timer,
 * fixed IPIs and NMIs between vCPUs and the PIT routed through IOAPIC pin 0 to
 * vCPU 0, with the PICs masked.  Handlers count, EOI and iretq; the
 * block of the vCPU they run on is the word at the top of each IST stack.
 * Ring 3 checks, between pages, that the state the handlers and the CPU
 * keep is still there (see vmm/guest_full.inc).
 */
#define TG_IDT_GPA 0x2000
#define TG_FULL_GPA 0x8000
#define TGF_SIZE 512
#define TG_IST_GPA 0x190000
#define TG_IST_SIZE 0x1000      /* per vCPU: three stacks, tops below: */
#define TG_IST1_TOP 0x800       /*   IST1 interrupts */
#define TG_IST2_TOP 0xc00       /*   IST2 exceptions */
#define TG_IST3_TOP 0x1000      /*   IST3 NMIs */
#define TG_LAPIC_GPA 0xfee00000
#define TG_IOAPIC_GPA 0xfec00000
#define TG_VEC_TIMER 0x40
#define TG_VEC_IPI 0x48
#define TG_VEC_PIT 0x50
#define TG_VEC_SPURIOUS 0xff
#define TG_SFMASK 0x47500       /* Linux's 0x47700 without IF */

/* Offsets in a vCPU's full-mode block: h = written by its handlers. */
#define TGF_INDEX 0             /* the vCPU's index (vmm) */
#define TGF_TICKS 8             /* h: LAPIC timer interrupts */
#define TGF_PIT 16              /* h: PIT interrupts (vCPU 0) */
#define TGF_IPI_SEQ 24          /* the sender's number of its last IPI here */
#define TGF_IPI_ACK 32          /* h: TGF_IPI_SEQ as the IPI handler saw it */
#define TGF_IPI_RECV 40         /* h: IPIs received */
#define TGF_STRAY 48            /* h: interrupts on a vector nobody sends */
#define TGF_SYSCALLS 56         /* h: syscalls */
#define TGF_EXC_VEC 64          /* h: an exception: vector, error, rip */
#define TGF_EXC_ERR 72
#define TGF_EXC_RIP 80
#define TGF_TSC 88              /* ring 3's last TSC (other vCPUs read it) */
#define TGF_RUN 96              /* TSC ticks this vCPU ran, gaps left out */
#define TGF_GAP_MAX 104         /* longest gap since the last heartbeat */
#define TGF_GAPS 112            /* gaps in all */
#define TGF_TICK_SEEN 120       /* TGF_TICKS when ring 3 last saw it move */
#define TGF_TICK_RUN 128        /* TGF_RUN then */
#define TGF_PIT_SEEN 136
#define TGF_PIT_RUN 144
#define TGF_IPI_SENT 152        /* number of the last IPI this vCPU sent */
#define TGF_IPI_RUN 160         /* TGF_RUN when it sent it */
#define TGF_STEP 168            /* steps of the vector computation */
#define TGF_FAILED 176          /* TG_CHECK_* bits that failed */
#define TGF_WIN_RUN 184         /* TGF_RUN at the last heartbeat */
#define TGF_WIN_TICKS 192       /* TGF_TICKS at the last heartbeat */
#define TGF_SYS_SEEN 200        /* TGF_SYSCALLS ring 3 expects */
#define TGF_TSC_SAME 208        /* steps in a row that saw the same TSC */
#define TGF_WIN_GAPS 216        /* TGF_GAPS at the last heartbeat */
#define TGF_READY 224           /* 1: its LAPIC takes IPIs (ring 3 started) */
#define TGF_NMI_SEQ 232         /* as TGF_IPI_*, for NMIs */
#define TGF_NMI_ACK 240
#define TGF_NMI_RECV 248
#define TGF_NMI_SENT 256
#define TGF_NMI_RUN 264
#define TGF_IPI_RXRUN 272       /* the receiver's TGF_RUN at the last IPI sent */
#define TGF_NMI_RXRUN 280       /* ... at the last NMI sent */

/* tg_full_table (vmm/guest.S): code offsets vmm/boot.c needs. */
#define TG_FULL_T_ENTRY 0
#define TG_FULL_T_TIMER 1
#define TG_FULL_T_IPI 2
#define TG_FULL_T_PIT 3
#define TG_FULL_T_SPURIOUS 4
#define TG_FULL_T_STRAY 5
#define TG_FULL_T_EXC 6         /* 32 stubs, 16 bytes apart */
#define TG_FULL_T_NMI 7
#define TG_FULL_T_MAX 8

#define TG_CHECK_XSAVE 0x1
#define TG_CHECK_TICK 0x2
#define TG_CHECK_PIT 0x4
#define TG_CHECK_TSC 0x8
#define TG_CHECK_IPI 0x10
#define TG_CHECK_EVENTS 0x20
#define TG_CHECK_SYSCALL 0x40
#define TG_CHECK_STRAY 0x80
#define TG_CHECK_NMI 0x100

#ifndef __ASSEMBLER__
#include <stdint.h>

struct tg_slice {
	uint64_t start;         /* gpa of the first page */
	uint64_t pages;
};

struct tg_params {
	uint64_t magic;
	uint64_t mode;
	uint64_t nvcpus;
	uint64_t tsc_hz;
	uint64_t rate;
	uint64_t passes;
	uint64_t hole_start;
	uint64_t hole_end;
	uint64_t heartbeat;
	uint64_t uart_lock;
	uint64_t timer_hz;
	uint64_t timer_count;
	uint64_t pit_count;
	uint64_t ipi_tsc;
	uint64_t stall_tsc;
	uint64_t gap_tsc;
	struct tg_slice slices[TG_MAX_VCPUS];
	uint64_t fast_first;    /* the rate holds from pass 2 on (0 in older guests) */
};

struct tg_vcpu_status {
	uint64_t pass;
	uint64_t pos;
	uint64_t errors;
	uint64_t first_bad;
	uint64_t state;
	uint64_t pages;
	uint64_t reserved[2];
};

_Static_assert(__builtin_offsetof(struct tg_params, slices) == TGP_SLICES,
	       "tg_params layout");
_Static_assert(__builtin_offsetof(struct tg_params, uart_lock) == TGP_UART_LOCK,
	       "tg_params layout");
_Static_assert(__builtin_offsetof(struct tg_params, gap_tsc) == TGP_GAP_TSC,
	       "tg_params layout");
_Static_assert(__builtin_offsetof(struct tg_params, fast_first) == TGP_FAST_FIRST,
	       "tg_params layout");
_Static_assert(sizeof(struct tg_params) <= TG_PAGE, "tg_params size");
_Static_assert(TG_FULL_GPA + TG_MAX_VCPUS * TGF_SIZE <= TG_PT_GPA, "full blocks");
_Static_assert(TG_STACK_GPA + TG_MAX_VCPUS * 2 * TG_STACK_SIZE <= TG_IST_GPA &&
	       TG_IST_GPA + TG_MAX_VCPUS * TG_IST_SIZE <= TG_LAT_GPA, "stacks");
_Static_assert(TG_LAT_GPA + TG_MAX_VCPUS * TG_LAT_SIZE <= TG_RANGE_GPA,
	       "access-time histograms");
_Static_assert(TG_LAT_SIZE == 1 << 10, "vmm/guest.S shifts by 10");
_Static_assert(sizeof(struct tg_vcpu_status) == TGS_SIZE, "status size");
_Static_assert(__builtin_offsetof(struct tg_vcpu_status, pages) == TGS_PAGES,
	       "status layout");

/* The fill-mode content of word i (2..511) of the page at gpa, gen g. */
static inline uint64_t tg_fill_word(uint64_t gpa, uint64_t g, uint64_t i)
{
	uint64_t z = gpa + i * 8 + g * TG_FILL_K1;

	z = (z ^ (z >> 30)) * TG_FILL_K2;
	z = (z ^ (z >> 27)) * TG_FILL_K3;
	return z ^ (z >> 31);
}

static inline const char *tg_mode_name(uint64_t mode)
{
	static const char *const names[TG_MODE_MAX] = {
		"idle", "dirty", "fill", "full"
	};

	return mode < TG_MODE_MAX ? names[mode] : "unknown";
}
#endif

#endif
