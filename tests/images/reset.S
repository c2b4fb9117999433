/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A raw image that resets the PC the oldest way, with the keyboard
 * controller's pulse command (0xfe to port 0x64).  It prints "resetting"
 * first, and "reset ignored" if it still runs afterwards.
 */
#include "rm16.inc"

main:	lea MSG(before), %si
	call puts
	mov $0xfe, %al
	out %al, $0x64
	lea MSG(after), %si
	call puts
1:	hlt
	jmp 1b

before:	.asciz "resetting\n"
after:	.asciz "reset ignored\n"
