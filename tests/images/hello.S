/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A raw flat image for vmm --image tests: 16-bit real mode, position
 * independent (runs at 0:0x7c00 and at SEG:0 alike), prints a greeting
 * and the state of the A20 gate (port 0x92) on the UART, then halts.
 */
#include "rm16.inc"

main:	lea MSG(msg), %si
	call puts
	lea MSG(a20off), %si
	in $0x92, %al
	test $2, %al
	jz 1f
	lea MSG(a20on), %si
1:	call puts
2:	hlt
	jmp 2b

msg:	.asciz "hello from a raw image\n"
a20on:	.asciz "a20 on\n"
a20off:	.asciz "a20 off\n"
