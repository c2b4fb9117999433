#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Dirty logging into the bitmap shared with migd: exact for pages the vmm
# writes (below and above the PCI hole), nothing for an idle guest, a
# measurable rate for a dirtying guest, and logging stops cleanly.
. "$(dirname "$0")/lib.sh"
need_kvm

start_vmm idle --memory 4200M --test-guest idle
"$TESTS/itest_dirtylog" "$RUNDIR/vmm/idle.sock" || fail "dirty log"
vmmctl status idle | grep -q "dirty logging" && fail "logging still on"

start_vmm busy --memory 64M --vcpus 2 --test-guest dirty --guest-rate 20000 \
	--heartbeat 100
wait_pass busy 0 2
out=$(vmmctl --json dirty-rate busy 1) || fail "dirty-rate: $out"
echo "$out"
pages=$(echo "$out" | sed -n 's/.*"dirty_pages":\([0-9]*\).*/\1/p')
[ "${pages:-0}" -gt 0 ] || fail "a dirtying guest showed no dirty pages"
vmmctl check busy || fail "memory check after dirty logging"
out=$(vmmctl --json dirty-rate idle 1) || fail "dirty-rate idle: $out"
echo "$out" | grep -q '"dirty_pages":0,' || fail "idle guest dirtied pages: $out"

note "an interrupted dirty-rate turns logging off"
"$BIN/vmmctl" --rundir "$RUNDIR" dirty-rate busy 60 >"$RUNDIR/dr.out" 2>&1 &
ctl=$!
PIDS+=("$ctl")
wait_until 20 sh -c "'$BIN/vmmctl' --rundir '$RUNDIR' status busy | grep -q 'dirty logging'" ||
	fail "dirty logging did not start"
kill -INT "$ctl"
wait "$ctl" && fail "an interrupted dirty-rate exited 0"
grep -q "dirty logging turned off" "$RUNDIR/dr.out" || fail "$(cat "$RUNDIR/dr.out")"
vmmctl status busy | grep -q "dirty logging" && fail "logging left on"
vmmctl check busy || fail "memory check after an interrupted dirty-rate"
echo PASS
