/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A raw image whose one load spans two devices: 4 bytes at 0xcffffffe
 * are 2 bytes of nothing (reads 0xff) and the first 2 of the test
 * device's doorbell at 0xd0000000 (reads 0).  KVM splits such an
 * access into two MMIO exits within one instruction.  The image loads
 * it without end and prints "X" whenever it is not 0x0000ffff: a vmm
 * that dropped the second exit when it paused the vCPU gives the guest
 * stale bytes.  It prints "S" once when it starts.
 */
#include "pm32.inc"

main:	mov $ABS(started), %esi
	call puts
1:	mov 0xcffffffe, %eax
	cmp $0x0000ffff, %eax
	je 1b
	mov $ABS(bad), %esi
	call puts
	jmp 1b

started: .asciz "S\n"
bad:	.asciz "X\n"
