/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A raw image that triple-faults: it loads an empty IDT, turns on
 * protected mode and raises #UD.  The #UD finds no gate (#GP), nor does
 * the #GP (#DF), nor the #DF: the CPU shuts down.  (In real mode the
 * exception would go through the interrupt vector table at 0 whatever
 * the IDT's limit, as it does here under PVM.)
 */
	.code16
	.text
	.globl _start
_start:
	cli
	push %cs
	pop %ds
	call 1f
1:	pop %bx
	sub $(1b - _start), %bx		/* bx = our address within ds */
	lea (msg - _start)(%bx), %si
	mov $0x3f8, %dx
2:	lodsb
	test %al, %al
	jz 3f
	out %al, %dx
	jmp 2b
3:	lidt (idt0 - _start)(%bx)
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ud2

msg:	.asciz "faulting\n"
idt0:	.word 0
	.long 0
