#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The vmm's control socket against a hostile local peer (itest_ctlabuse):
# garbage, absurd lengths, stray descriptors, half-sent frames, memory
# access at the edges of RAM and the PCI hole, unsealed or wrong-sized
# memfds for AdoptRam.  The vmm keeps running, its guest keeps running
# with memory intact, and it keeps answering.  Then a vmm out of
# descriptors still serves once the connections hogging them go away.
. "$(dirname "$0")/lib.sh"
need_kvm

start_vmm f --memory 64M --test-guest dirty --heartbeat 200
wait_pass f 0 1
"$TESTS/itest_ctlabuse" "$RUNDIR/vmm/f.sock" running || fail "running vmm"
kill -0 "$(pid_of f)" || fail "the vmm died"
[ "$(state_of f)" = running ] || fail "the guest is not running"
wait_progress f 0
vmmctl check f || fail "memory check after the abuse"

start_vmm in --memory 4100M --incoming
"$TESTS/itest_ctlabuse" "$RUNDIR/vmm/in.sock" incoming || fail "incoming vmm"
kill -0 "$(pid_of in)" || fail "the incoming vmm died"
[ "$(state_of in)" = incoming ] || fail "the incoming vmm left its state"

note "vmmctl write: the most bytes one argument carries"
# 65535 bytes, 131070 hex digits: all that one argument of at most 128
# KiB with its NUL holds, and write's limit in vmmctl(8).
hex=$(head -c 65535 /dev/urandom | od -An -v -tx1 | tr -d ' \n')
vmmctl write in 0x100000 "$hex" || fail "a write of 65535 bytes"
[ "$(vmmctl read in 0x100000 65535 | tr -d ' \n')" = "$hex" ] ||
	fail "the 65535 bytes written do not read back"
echo "ok: 65535 bytes written and read back"
# A length as vmm --memory takes a size (before: "'4K' is not a length
# from 1 to 4 GiB").
[ "$(vmmctl read in 0x100000 4K | tr -d ' \n')" = "${hex:0:8192}" ] ||
	fail "read of 4K"
err=$(vmmctl read in 0x100000 5G 2>&1) && fail "read of 5G: $err"
[ "$err" = "vmmctl: read: '5G' is not a length from 1 to 4 GiB (bytes, or with K, M or G)" ] ||
	fail "read of 5G: $err"

note "a vmm out of descriptors keeps serving once they are freed"
(ulimit -n 48; exec "$BIN/vmm" --name few --memory 64M --rundir "$RUNDIR" \
	--test-guest idle >"$RUNDIR/few.log" 2>&1) &
few=$!
PIDS+=("$few")
wait_until 20 vmmctl status few || fail "vmm few did not come up"
coproc HOLD { "$TESTS/itest_ctlabuse" "$RUNDIR/vmm/few.sock" hold; }
# bash unsets HOLD_PID and HOLD when the coprocess ends: keep copies.
hold_pid=$HOLD_PID hold_out=${HOLD[0]} hold_in=${HOLD[1]}
PIDS+=("$hold_pid")
read -r -t 30 line <&"$hold_out" || fail "the holder did not report"
echo "$line"
fds_full() { [ "$(ls /proc/$few/fd | wc -l)" -ge 48 ]; }
wait_until 10 fds_full || fail "the vmm has descriptors left"
kill -0 "$few" || fail "vmm few died out of descriptors"
exec {hold_in}>&-                       # the holder lets go
wait_exit "$hold_pid" || fail "the holder exited with $?"
wait_until 30 vmmctl status few || fail "vmm few does not answer after the connections went"
echo PASS
