#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# A raw flat image starts in real mode at 0:0x7c00 (or at --image-addr),
# sees the UART and fast A20, and runs.
. "$(dirname "$0")/lib.sh"
need_kvm

start_vmm boot --memory 4M --image "$TESTS/hello.img"
wait_until 20 grep -q "a20 on" "$RUNDIR/boot.serial" ||
	fail "no output from the image: $(cat "$RUNDIR/boot.serial")"
grep -q "hello from a raw image" "$RUNDIR/boot.serial" || fail greeting
[ "$(state_of boot)" = running ] || fail "image guest not running"
vmmctl status boot | grep -q image || fail "status does not say image"

start_vmm high --memory 4M --image "$TESTS/hello.img" --image-addr 0x10000
wait_until 20 grep -q "a20 on" "$RUNDIR/high.serial" ||
	fail "no output at 0x10000: $(cat "$RUNDIR/high.serial")"
echo PASS
