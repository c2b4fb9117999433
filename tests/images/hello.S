/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A raw flat image for vmm --image tests: 16-bit real mode, position
 * independent (runs at 0:0x7c00 and at SEG:0 alike), prints a greeting
 * and the state of the A20 gate (port 0x92) on the UART, then halts.
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
	call puts
	lea (a20off - _start)(%bx), %si
	in $0x92, %al
	test $2, %al
	jz 2f
	lea (a20on - _start)(%bx), %si
2:	call puts
3:	hlt
	jmp 3b

puts:	mov $0x3f8, %dx
4:	lodsb
	test %al, %al
	jz 5f
	out %al, %dx
	jmp 4b
5:	ret

msg:	.asciz "hello from a raw image\n"
a20on:	.asciz "a20 on\n"
a20off:	.asciz "a20 off\n"
