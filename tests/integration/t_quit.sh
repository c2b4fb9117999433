#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# vmmctl quit returns only once the vmm is gone: its process has ended,
# its name lock is free and its control socket removed when quit returns,
# so a script may start a new vmm of the same name at once, without
# polling.  (quit used to return as soon as the vmm answered, before it
# had torn down its VM and let go of the lock: the new vmm was refused as
# "already running"; later, once the vmm closed the connection, a moment
# before its process ended.)
. "$(dirname "$0")/lib.sh"
need_kvm

# name_free NAME: nobody holds NAME's lock (flock(1) takes it and lets go).
name_free() { flock -n "$RUNDIR/vmm/$1.lock" true; }
# ended PID: process PID has exited (a zombie, or reaped already).
ended() {
	local st
	{ read -r _ _ st _ <"/proc/$1/stat"; } 2>/dev/null || return 0
	[ "$st" = Z ]
}

# Guest RAM allocated up front, and a guest that writes: the teardown
# after the answer has work to do (the VM, its vCPUs, the pages).
args=(--memory 256M --prealloc --vcpus 2 --test-guest dirty --heartbeat 100)
start_vmm q "${args[@]}"
for r in 1 2 3 4 5; do
	old=$(pid_of q)
	wait_pass q 0 1
	# Not in $( ): the process ended is looked at the moment quit returns.
	vmmctl quit q >"$RUNDIR/quit.out" 2>&1 ||
		fail "round $r: quit: $(cat "$RUNDIR/quit.out")"
	ended "$old" || fail "round $r: quit returned while vmm $old still runs"
	out=$(cat "$RUNDIR/quit.out")
	[ -z "$out" ] || fail "round $r: quit printed '$out'"
	name_free q || fail "round $r: quit returned while vmm $old still holds the lock of q"
	[ -e "$RUNDIR/vmm/q.sock" ] && fail "round $r: quit returned before the socket of q was removed"
	start_vmm q "${args[@]}"
	[ "$(pid_of q)" != "$old" ] || fail "round $r: the same vmm answers"
	wait_exit "$old" || fail "round $r: vmm $old exited with $?"
	echo "ok: round $r: vmm $old quit, $(pid_of q) took the name at once"
done

note "a quit while the vCPUs are paused, and of an incoming vmm"
vmmctl stop q >/dev/null || fail "stop q"
old=$(pid_of q)
vmmctl quit q || fail "quit of a paused vmm"
ended "$old" || fail "quit returned while the paused vmm $old still runs"
name_free q || fail "the paused vmm $old still holds the lock"
start_vmm q --memory 64M --incoming
wait_exit "$old" || fail "vmm $old exited with $?"
old=$(pid_of q)
vmmctl quit q || fail "quit of an incoming vmm"
ended "$old" || fail "quit returned while the incoming vmm $old still runs"
name_free q || fail "the incoming vmm $old still holds the lock"
wait_exit "$old" || fail "vmm $old exited with $?"

note "a quit that times out says the vmm may still act on it"
# A stopped vmm takes the connection (the socket's backlog) but answers
# nothing; the request is there when it runs again.  Before, the error
# was a bare "Connection timed out", as if nothing had happened.
start_vmm q --memory 64M --incoming
old=$(pid_of q)
kill -STOP "$old"
out=$("$BIN/vmmctl" --rundir "$RUNDIR" --timeout 1 quit q 2>&1) && {
	kill -CONT "$old"; fail "quit of a stopped vmm: $out"; }
kill -CONT "$old"
# The method once ("vmm q: Quit: tern.vmm.Vmm/Quit: ..." named it twice).
case $out in
*"vmmctl: vmm q: Quit: Connection timed out (the daemon, pid $old, is stopped by a signal or a debugger: 'kill -CONT $old' resumes it, and the request may take effect then)"*) ;;
*) fail "quit of a stopped vmm: $out" ;; esac
wait_exit "$old" || fail "vmm $old exited with $?"
echo "ok: $out; vmm $old quit once it ran again"

note "a second quit finds no vmm"
out=$(vmmctl quit q 2>&1) && fail "quit of a vmm that is gone: $out"
case $out in *"vmm q is not running"*) ;; *) fail "quit of a vmm that is gone: $out" ;; esac
echo "ok: $out"
echo PASS
