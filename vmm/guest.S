/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The built-in test guest.  The vmm copies the bytes between tg_code_start
 * and tg_code_end to TG_CODE_GPA and starts every vCPU at tg_entry (or,
 * in full mode, tg_full_entry) in 64-bit ring 0 with paging, the GDT and
 * its TSS already set up (vmm/boot.c), rdi = vCPU index, rsp = its kernel
 * stack.
 *
 * Under PVM guest kernel code is emulated one instruction at a time
 * (~1 us each), so ring 0 does as little as possible: build an iretq frame
 * and drop to ring 3, where the workload runs natively.  The idle, dirty
 * and fill modes never come back to ring 0: they print and halt through
 * the test device's MMIO doorbell (common/testguest.h), since under PVM
 * ring 3 has no I/O privilege.
 *
 * Full mode also keeps a small ring-0 core: interrupt handlers for the
 * LAPIC timer, IPIs and the PIT (count, EOI, iretq), a syscall entry and
 * exception gates that report and halt.  Interrupts do reach ring 3 on
 * this PVM as long as SFMASK leaves IF alone (TG_SFMASK): one syscall
 * that cleared IF would leave it clear for good.  See doc/pvm.md.
 *
 * Page format and layout: common/testguest.h.  The code is position
 * independent (rip-relative), so only the fixed layout addresses appear.
 *
 * Register use in ring 3:
 *   r15 params  r14 my status  r13 vCPU index  r12 generation being written
 *   rbx gpa of the current page  rbp pages left in this pass
 *   r10 TSC at start  r9 pages written since  r8 TSC of the last heartbeat
 *   (time_access adds each page's first load to an access-time histogram)
 *   full mode: ymm0-ymm13 the vector computation, ymm14-15 scratch
 */
#include "common/testguest.h"

	.section .rodata.testguest, "a"
	.code64
	.globl tg_code_start, tg_code_end, tg_entry_offset
	.p2align 4
tg_code_start:

tg_entry:
	pushq $TG_SEL_UDATA
	mov %rdi, %rax
	shl $13, %rax			/* 2 * TG_STACK_SIZE per vCPU */
	add $(TG_STACK_GPA + TG_STACK_SIZE), %rax
	push %rax			/* user stack top */
	pushq $0x2			/* rflags: IF 0 */
	pushq $TG_SEL_UCODE
	lea tg_user(%rip), %rax
	push %rax
	iretq

/* ------------------------------------------------------------------ */
tg_user:
	mov %rdi, %r13
	mov $TG_PARAMS_GPA, %r15
	mov %r13, %r14
	shl $6, %r14
	add $TG_STATUS_GPA, %r14
	movq $TG_VSTATE_RUN, TGS_STATE(%r14)
	cmpq $TG_MODE_IDLE, TGP_MODE(%r15)
	je .Lhalt
	mov TGS_PASS(%r14), %r12	/* 0 on a fresh boot */
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	mov %rax, %r10
	mov %rax, %r8
	xor %r9, %r9

.Lpass:
	inc %r12
	mov %r12, TGS_PASS(%r14)
	cmpq $0, TGP_FAST_FIRST(%r15)	/* pass 1 went uncapped: the rate */
	je 1f				/* counts from its end */
	cmp $2, %r12
	jne 1f
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	mov %rax, %r10
	xor %r9, %r9
1:
	mov %r13, %rax
	shl $4, %rax
	mov TGP_SLICES(%r15,%rax), %rbx
	mov TGP_SLICES+8(%r15,%rax), %rbp
	test %rbp, %rbp
	jz .Lhalt

.Lpage:
	mov %rbx, TGS_POS(%r14)
	call time_access
	lea -1(%r12), %rsi
	call check_page
	test %rax, %rax
	jz 1f
	call report_bad
1:	mov %r12, %rsi
	call write_page
	incq TGS_PAGES(%r14)
	inc %r9
	call pace
	add $TG_PAGE, %rbx
	cmp TGP_HOLE_START(%r15), %rbx
	jne 2f
	mov TGP_HOLE_END(%r15), %rbx
2:	dec %rbp
	jnz .Lpage

	mov TGP_PASSES(%r15), %rax
	test %rax, %rax
	jz .Lpass
	cmp %rax, %r12
	jb .Lpass
	call heartbeat_line
.Lhalt:
	movq $TG_VSTATE_DONE, TGS_STATE(%r14)
	movabs $(TG_DOORBELL_GPA + TG_DB_HALT), %rdx
1:	movq $1, (%rdx)
	jmp 1b

/*
 * time_access: load the first word of the page at rbx, and count the TSC
 * ticks it took in this vCPU's histogram (TG_LAT_GPA).  The lfences keep
 * the load between the two reads of the TSC.  Clobbers rax rcx rdx rsi.
 */
time_access:
	lfence
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	mov %rax, %rsi
	mov (%rbx), %rax
	lfence
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	sub %rsi, %rax			/* rax = ticks */
	cmp $24, %rax
	jb 2f				/* below 24: the bucket is the count */
	bsr %rax, %rcx			/* o >= 4 */
	cmp $31, %ecx
	ja 1f
	sub $3, %ecx
	shr %cl, %rax			/* 8..15 */
	and $7, %eax
	lea 3(%rcx), %ecx
	shl $3, %ecx
	add %ecx, %eax			/* o * 8 + eighth */
	jmp 2f
1:	mov $(TG_LAT_BUCKETS - 1), %eax
2:	mov %r13, %rdx
	shl $10, %rdx			/* * TG_LAT_SIZE */
	incl TG_LAT_GPA(%rdx,%rax,4)
	ret

/*
 * check_page: does the page at rbx hold generation rsi?  rax = 0 if so.
 * Clobbers rax rcx rdx rsi rdi r11.
 */
check_page:
	test %rsi, %rsi
	jnz 1f
	xor %ecx, %ecx			/* generation 0: all zero */
0:	cmpq $0, (%rbx,%rcx,8)
	jne .Lbad
	inc %ecx
	cmp $TG_WORDS, %ecx
	jb 0b
	xor %eax, %eax
	ret
1:	cmp 8(%rbx), %rsi
	jne .Lbad
	mov %rbx, %rax
	cmpq $TG_MODE_FILL, TGP_MODE(%r15)
	je 3f
	movabs $TG_MAGIC_DIRTY, %rdx
	xor %rdx, %rax
	cmp (%rbx), %rax
	jne .Lbad
	mov $2, %ecx
2:	cmpq $0, (%rbx,%rcx,8)
	jne .Lbad
	inc %ecx
	cmp $TG_WORDS, %ecx
	jb 2b
	xor %eax, %eax
	ret
3:	movabs $TG_MAGIC_FILL, %rdx
	xor %rdx, %rax
	cmp (%rbx), %rax
	jne .Lbad
	mov %rsi, %rdi
	movabs $TG_FILL_K1, %rax
	imul %rax, %rdi			/* rdi = g * K1 */
	mov $2, %ecx
4:	call fill_word
	cmp (%rbx,%rcx,8), %rax
	jne .Lbad
	inc %ecx
	cmp $TG_WORDS, %ecx
	jb 4b
	xor %eax, %eax
	ret
.Lbad:
	mov $1, %eax
	ret

/* fill_word: rax = tg_fill_word(rbx, g, rcx) with rdi = g * K1.  Clobbers rdx r11. */
fill_word:
	lea (%rbx,%rcx,8), %rax
	add %rdi, %rax
	mov %rax, %rdx
	shr $30, %rdx
	xor %rdx, %rax
	movabs $TG_FILL_K2, %r11
	imul %r11, %rax
	mov %rax, %rdx
	shr $27, %rdx
	xor %rdx, %rax
	movabs $TG_FILL_K3, %r11
	imul %r11, %rax
	mov %rax, %rdx
	shr $31, %rdx
	xor %rdx, %rax
	ret

/* write_page: write generation rsi into the page at rbx (order: see header). */
write_page:
	cmpq $TG_MODE_FILL, TGP_MODE(%r15)
	je 1f
	mov %rsi, 8(%rbx)
	movabs $TG_MAGIC_DIRTY, %rax
	xor %rbx, %rax
	mov %rax, (%rbx)
	ret
1:	mov %rsi, %rdi
	movabs $TG_FILL_K1, %rax
	imul %rax, %rdi
	mov $2, %ecx
2:	call fill_word
	mov %rax, (%rbx,%rcx,8)
	inc %ecx
	cmp $TG_WORDS, %ecx
	jb 2b
	mov %rsi, 8(%rbx)
	movabs $TG_MAGIC_FILL, %rax
	xor %rbx, %rax
	mov %rax, (%rbx)
	ret

/* report_bad: count the page at rbx as failed; print a FAIL line for the first. */
report_bad:
	incq TGS_ERRORS(%r14)
	cmpq $1, TGS_ERRORS(%r14)
	jne 1f
	mov %rbx, TGS_FIRST_BAD(%r14)
	call console_lock
	lea str_fail(%rip), %rsi
	call puts
	mov %r13, %rax
	call putdec
	lea str_page(%rip), %rsi
	call puts
	mov %rbx, %rax
	call puthex
	lea str_gen(%rip), %rsi
	call puts
	lea -1(%r12), %rax
	call putdec
	call endline
1:	ret

/*
 * pace: hold the write rate at TGP_RATE pages/s and print a heartbeat
 * every TGP_HEARTBEAT ticks.  Clobbers rax rcx rdx rsi rdi r11.
 */
pace:
	cmpq $TG_MODE_FULL, TGP_MODE(%r15)
	jne 0f
	call full_step
0:	mov TGP_HEARTBEAT(%r15), %rcx
	test %rcx, %rcx
	jz 1f
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	sub %r8, %rax
	cmp %rcx, %rax
	jb 1f
	add %rax, %r8
	call heartbeat_line
1:	cmpq $0, TGP_FAST_FIRST(%r15)	/* pass 1 uncapped (.Lpass) */
	je 5f
	cmp $1, %r12
	je 3f
5:	mov TGP_RATE(%r15), %rcx
	test %rcx, %rcx
	jz 3f
2:	cmpq $TG_MODE_FULL, TGP_MODE(%r15)
	jne 4f
	call full_step
	mov TGP_RATE(%r15), %rcx
4:	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	sub %r10, %rax
	mul %rcx			/* rdx:rax = ticks * rate */
	divq TGP_TSC_HZ(%r15)		/* rax = pages allowed by now */
	cmp %rax, %r9
	jbe 3f
	pause
	jmp 2b
3:	ret

/* "tg: vcpu N pass P pages T errors E", in full mode then its counters. */
heartbeat_line:
	cmpq $TG_MODE_FULL, TGP_MODE(%r15)
	jne 0f
	call full_window
0:	call console_lock
	lea str_hb(%rip), %rsi
	call puts
	mov %r13, %rax
	call putdec
	lea str_pass(%rip), %rsi
	call puts
	mov %r12, %rax
	call putdec
	lea str_pages(%rip), %rsi
	call puts
	mov TGS_PAGES(%r14), %rax
	call putdec
	lea str_errors(%rip), %rsi
	call puts
	mov TGS_ERRORS(%r14), %rax
	call putdec
	cmpq $TG_MODE_FULL, TGP_MODE(%r15)
	jne endline
	jmp full_counters

/* One console line at a time across vCPUs. */
console_lock:
1:	mov $1, %eax
	xchg %rax, TGP_UART_LOCK(%r15)
	test %rax, %rax
	jz 2f
	pause
	jmp 1b
2:	ret

/*
 * This vCPU's console line buffer is the bottom of its user stack: a
 * length word, then the bytes.  putc appends al.  Clobbers rcx rdx.
 */
putc:
	mov %r13, %rdx
	shl $13, %rdx
	add $TG_STACK_GPA, %rdx
	mov (%rdx), %rcx
	cmp $TG_LINE_MAX, %rcx
	jae 1f
	mov %al, 8(%rdx,%rcx)
	inc %rcx
	mov %rcx, (%rdx)
1:	ret

/* endline: finish the line, hand it to the vmm, drop the console lock. */
endline:
	mov $'\n', %al
	call putc
	mov %r13, %rcx
	shl $13, %rcx
	add $TG_STACK_GPA, %rcx
	movabs $(TG_DOORBELL_GPA + TG_DB_PRINT), %rdx
	mov %rcx, (%rdx)
	movq $0, (%rcx)
	movq $0, TGP_UART_LOCK(%r15)
	ret

/* puts: the NUL-terminated string at rsi.  Clobbers rax rcx rdx rsi. */
puts:
1:	lodsb
	test %al, %al
	jz 2f
	call putc
	jmp 1b
2:	ret

/* putdec: rax in decimal.  Clobbers rax rcx rdx rsi rdi. */
putdec:
	sub $32, %rsp
	lea 31(%rsp), %rsi
	movb $0, (%rsi)
	mov $10, %rdi
1:	xor %edx, %edx
	div %rdi
	add $'0', %dl
	dec %rsi
	mov %dl, (%rsi)
	test %rax, %rax
	jnz 1b
	call puts
	add $32, %rsp
	ret

/* puthex: rax as 0x%x.  Clobbers rax rcx rdx rsi rdi. */
puthex:
	sub $32, %rsp
	lea 31(%rsp), %rsi
	movb $0, (%rsi)
1:	mov %eax, %edx
	and $15, %edx
	lea hexdigits(%rip), %rdi
	movb (%rdi,%rdx), %dl
	dec %rsi
	mov %dl, (%rsi)
	shr $4, %rax
	jnz 1b
	dec %rsi
	movb $'x', (%rsi)
	dec %rsi
	movb $'0', (%rsi)
	call puts
	add $32, %rsp
	ret

#include "vmm/guest_full.inc"

hexdigits:	.ascii "0123456789abcdef"
str_hb:		.asciz "tg: vcpu "
str_pass:	.asciz " pass "
str_pages:	.asciz " pages "
str_errors:	.asciz " errors "
str_fail:	.asciz "tg: FAIL memory check: vcpu "
str_page:	.asciz " page "
str_gen:	.asciz " does not hold generation "

tg_code_end:

	.p2align 3
tg_entry_offset:	.quad tg_entry - tg_code_start
	.globl tg_full_table
tg_full_table:			/* offsets for vmm/boot.c: TG_FULL_T_* order */
	.quad tg_full_entry - tg_code_start
	.quad tg_full_timer - tg_code_start
	.quad tg_full_ipi - tg_code_start
	.quad tg_full_pit - tg_code_start
	.quad tg_full_spurious - tg_code_start
	.quad tg_full_stray - tg_code_start
	.quad tg_full_exc_stubs - tg_code_start
	.quad tg_full_nmi - tg_code_start
	.section .note.GNU-stack, "", @progbits
