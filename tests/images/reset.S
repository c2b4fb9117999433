/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A raw image that resets the PC the oldest way, with the keyboard
 * controller's pulse command (0xfe to port 0x64).  It prints "resetting"
 * first, and "reset ignored" if it still runs afterwards.
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
	lea (before - _start)(%bx), %si
	call puts
	mov $0xfe, %al
	out %al, $0x64
	lea (after - _start)(%bx), %si
	call puts
2:	hlt
	jmp 2b

puts:	mov $0x3f8, %dx
3:	lodsb
	test %al, %al
	jz 4f
	out %al, %dx
	jmp 3b
4:	ret

before:	.asciz "resetting\n"
after:	.asciz "reset ignored\n"
