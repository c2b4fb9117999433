/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A raw image that jumps to 0x10000000, past its 4 MiB of RAM: KVM
 * cannot fetch an instruction from there (an emulation failure), and
 * the VM goes to state error.
 */
#include "pm32.inc"

main:	mov $ABS(msg), %esi
	call puts
	mov $0x10000000, %eax
	jmp *%eax

msg:	.asciz "jumping nowhere\n"
