#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The memory checker passes on an untouched guest and fails, naming the
# page, when one byte is corrupted; the guest's own check notices too.
. "$(dirname "$0")/lib.sh"
need_kvm

start_vmm c --memory 64M --vcpus 2 --test-guest fill --heartbeat 100 \
	--guest-rate 100000
wait_pass c 0 2
wait_pass c 1 2
vmmctl check c || fail "untouched guest: check failed"

note "corrupt one byte of a page in vcpu 0's slice"
vmmctl stop c >/dev/null || fail stop
vmmctl write c 0x205064 5a || fail write
out=$(vmmctl check c) && fail "check passed on a corrupted page: $out"
echo "$out"
echo "$out" | grep -q "page 0x205000 (vcpu 0)" || fail "check did not name the page"
vmmctl --json check c | grep -q '"intact":false' || fail "json check"
[ "$(state_of c)" = paused ] || fail "a paused guest must stay paused after check"

note "the guest finds it on its next pass"
vmmctl cont c >/dev/null || fail cont
wait_until 60 grep -q "tg: FAIL memory check: vcpu 0 page 0x205000" \
	"$RUNDIR/c.serial" || fail "the guest did not report the page"
out=$(vmmctl check c) && fail "check passed after the guest found a bad page"
echo "$out" | grep -q "the guest found 1 bad pages itself, the first at 0x205000" ||
	fail "check did not report the guest's own finding: $out"

note "a page outside the test range must stay zero"
start_vmm r --memory 64M --test-guest dirty --guest-range 16M --heartbeat 100
wait_pass r 0 2
vmmctl stop r >/dev/null || fail stop
before=$(memfd_kib "$(pid_of r)")
vmmctl check r || fail "range: check failed"
# Reading the 48 MiB the guest never touched must not give them to it.
after=$(memfd_kib "$(pid_of r)")
[ "$after" = "$before" ] || fail "check grew r's RAM from $before to $after KiB"
echo "ok: r's RAM holds $after KiB of data before and after the check"
vmmctl cont r >/dev/null || fail cont
vmmctl write r 0x2000010 01 || fail write
out=$(vmmctl check r) && fail "check passed with a dirty page outside the range"
echo "$out" | grep -q "page 0x2000000: outside the test range" || fail "$out"

note "a vmm without a test guest is not checkable, and says so"
start_vmm i --memory 4M --image "$TESTS/hello.img"
out=$(vmmctl check i 2>&1) && fail "check passed without a test guest"
echo "$out" | grep -q "no test guest" || fail "$out"
echo PASS
