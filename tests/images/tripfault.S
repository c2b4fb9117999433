/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A raw image that triple-faults: it loads an empty IDT, turns on
 * protected mode and raises #UD.  The #UD finds no gate (#GP), nor does
 * the #GP (#DF), nor the #DF: the CPU shuts down.  (In real mode the
 * exception would go through the interrupt vector table at 0 whatever
 * the IDT's limit, as it does here under PVM.)
 */
#include "rm16.inc"

main:	lea MSG(msg), %si
	call puts
	lidt MSG(idt0)
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ud2

msg:	.asciz "faulting\n"
idt0:	.word 0
	.long 0
