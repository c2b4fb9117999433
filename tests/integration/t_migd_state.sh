#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# A restarted migd (an upgrade; a crash that systemd restarts) keeps the
# defaults set with `migctl set` and the history of finished jobs, from
# RUNDIR/migd.state.  Before, it came back with the built-in defaults (a
# bandwidth cap an operator set lapsed without a word) and no history (an
# agent asking for its job's outcome heard "no migration job").  A state
# file that is not migd's own, or does not check, is set aside with a
# warning and migd starts as a fresh one; a failed save is said once.
# A job is found by its id too (--id), not only as its VM's latest.
. "$(dirname "$0")/lib.sh"
need_kvm

STATE=$RUNDIR/migd.state
# The status without the worker's pid, which a restored job no longer
# names (its process is gone; the pid may be another's by now).
status_kept() { migctl --json status "$1" | sed 's/"worker_pid":[0-9]*,\{0,1\}//'; }
restart_migd() { stop_migd; start_migd; }
log_has() { grep -qF -- "$1" "$RUNDIR/migd.log" || fail "migd's log lacks '$1': $(tail -n 4 "$RUNDIR/migd.log")"; }
# saved_state PYTHON-EXPR: STATE from rpcwire fields (SavedState: version
# 1, defaults 3, history 4; JobStatus: id 1, vm 2, role 3, state 4,
# error 22).
saved_state() {
	wire python3 -c 'import sys
from rpcwire import field, varint, ld
def job(vm, state, error=b"", role=1, id=b""):
    return ld(1, id) + ld(2, vm) + field(3, 0, varint(role)) + field(4, 0, varint(state)) + ld(22, error)
open(sys.argv[1], "wb").write(eval(sys.argv[2]))' "$STATE" "$1"
	chmod 600 "$STATE"
}

start_migd
note "a migd's defaults and finished jobs"
migctl set --max-bandwidth 512M --downtime-limit 150 --verify --channels 3 >/dev/null ||
	fail "set"
start_vmm s --memory 64M --test-guest dirty --guest-rate 2000
start_vmm d --memory 64M --incoming
start_vmm w --memory 64M --incoming
wait_pass s 0 1
incoming d
migctl migrate s "$ADDR" --token "$TOKEN" --wait >/dev/null || fail "migrate s to d"
migctl incoming w --listen tcp:127.0.0.1:0 >/dev/null && migctl cancel w --wait >/dev/null ||
	fail "incoming and cancel of w"
[ "$(stat -c %a "$STATE")" = 600 ] || fail "$STATE: mode $(stat -c %a "$STATE")"
# The destination's job by the source's id (its worker learnt it from
# the source: before, --id found only a source's job until a restart).
sid=$(job_get s id)
[ "$(migctl --json status d --id "${sid^^}" | jget id)" = "$sid" ] ||
	fail "d --id ${sid^^}: $(migctl status d --id "${sid^^}" 2>&1)"
for vm in s d w; do status_kept "$vm" >"$RUNDIR/$vm.before" || fail "status $vm"; done
migctl --json get >"$RUNDIR/get.before" || fail "get"
migctl --json list | sed 's/"worker_pid":[0-9]*,\{0,1\}//g' >"$RUNDIR/list.before"

note "restarted: the same defaults, jobs and order"
restart_migd
log_has "restored from $STATE, saved at $(date -u +%Y-%m-)"
log_has ": the defaults and 3 finished jobs"
for vm in s d w; do
	status_kept "$vm" >"$RUNDIR/$vm.after" || fail "status $vm after the restart"
	cmp -s "$RUNDIR/$vm.before" "$RUNDIR/$vm.after" ||
		fail "$vm: before: $(cat "$RUNDIR/$vm.before") after: $(cat "$RUNDIR/$vm.after")"
done
[ "$(job_get s state)/$(job_get d state)/$(job_get w state)" = completed/completed/cancelled ] ||
	fail "states: $(migctl list)"
[ "$(job_get s worker_pid)" = 0 ] || fail "s names a worker pid: $(job_get s worker_pid)"
migctl --json get | cmp -s - "$RUNDIR/get.before" ||
	fail "defaults: before $(cat "$RUNDIR/get.before"), after $(migctl --json get)"
migctl --json list | sed 's/"worker_pid":[0-9]*,\{0,1\}//g' | cmp -s - "$RUNDIR/list.before" ||
	fail "list: before $(cat "$RUNDIR/list.before"), after $(migctl --json list)"
echo "ok: $(migctl status s | head -n 1)"
# A job of the new migd joins them, and is kept in turn.
migctl incoming w --listen tcp:127.0.0.1:0 >/dev/null && migctl cancel w --wait >/dev/null ||
	fail "incoming and cancel of w (2)"
restart_migd
n=$(migctl --json list | grep -o '"vm":"w"' | wc -l)
[ "$n" = 2 ] || fail "w: $n jobs after the second restart, expected 2"
echo "ok: a second restart keeps the new job too"

note "a file that does not decode: set aside, a fresh start"
stop_migd
printf 'not a saved state\n' >"$STATE"
start_migd
log_has "$STATE: it does not decode; kept as $STATE.bad, and this migd starts with the built-in defaults and no history"
[ "$(cat "$STATE.bad")" = "not a saved state" ] || fail "$STATE.bad: $(cat "$STATE.bad")"
migctl status s 2>&1 | grep -q "no migration job for s" || fail "s: $(migctl status s 2>&1)"
[ "$(migctl --json get | jget max_bandwidth)" = 0 ] || fail "defaults: $(migctl --json get)"
echo "ok: $(grep -F "$STATE:" "$RUNDIR/migd.log" | tail -n 1)"

note "jobs that do not check are left out, the others kept"
stop_migd
ID_NEW=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ID_OLD=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
saved_state 'field(1, 0, varint(1)) + ld(4, job(b"ok1", 5, b"boom")) + ld(4, job(b"bad name!", 5)) + ld(4, job(b"run1", 2)) + ld(4, job(b"ok2", 7, role=2)) + ld(4, job(b"h", 4, id=b"'$ID_NEW'")) + ld(4, job(b"h", 5, b"again", id=b"'$ID_OLD'")) + ld(4, job(b"h", 5, b"the old one", id=b"'$ID_OLD'")) + ld(5, job(b"t1", 4))'
start_migd
log_has "$STATE: 3 saved jobs left out, which did not check (the first: h: job $ID_OLD twice)"
log_has ": the defaults and 5 finished jobs"
# Running when saved, its end known (migd was cleaning up): that end.
job_is t1 completed && [ -z "$(job_get t1 error)" ] || fail "t1: $(migctl status t1)"
grep -q "jobs ran when migd" "$RUNDIR/migd.log" && fail "t1 taken for lost: $(tail -n 3 "$RUNDIR/migd.log")"
[ "$(migctl --json list | grep -o '"vm":"[a-z0-9]*"' | tr '\n' ' ')" = '"vm":"t1" "vm":"ok1" "vm":"ok2" "vm":"h" "vm":"h" ' ] ||
	fail "list: $(migctl --json list)"
migctl status ok1 | grep -q "boom" || fail "ok1: $(migctl status ok1)"
echo "ok: $(migctl status ok2 | head -n 1)"

note "a job by its id: status, cancel"
# Before, a VM's latest job only: a script could not ask for the outcome
# of the job it started once another had followed, and a cancel meant
# for a job that had ended took the VM's next one.
[ "$(job_get h id)" = $ID_NEW ] || fail "h: $(migctl --json status h)"
[ "$(migctl --json status h --id $ID_OLD | jget error)" = "the old one" ] ||
	fail "h --id $ID_OLD: $(migctl --json status h --id $ID_OLD 2>&1)"
ctl_fails() {
	local words=$1 err
	shift
	err=$(migctl "$@" 2>&1) && fail "migctl $*: taken ($err)"
	case $err in *"$words"*) echo "ok: $err" ;; *) fail "migctl $*: $err" ;; esac
}
ctl_fails "nothing to cancel: job $ID_OLD of h already ended (failed)" cancel h --id $ID_OLD
ctl_fails "no job 0123456789abcdef0123456789abcdef of h here (its running job, or one of the last 16 it finished)" \
	status h --id 0123456789abcdef0123456789abcdef
ctl_fails "no job $ID_OLD of ok1 here" status ok1 --id $ID_OLD
for bad in 12345:"expected the 32 hex digits of a job's id (as status and list show it)" \
	00000000000000000000000000000000:"an id of all zeros is no job's"; do
	err=$(migctl status h --id "${bad%%:*}" 2>&1); rc=$?
	[ $rc = 2 ] && [[ $err == *"--id ${bad%%:*}: ${bad#*:}"* ]] ||
		fail "status --id ${bad%%:*}: exit $rc: $err"
done
# migd checks it too (an agent need not use migctl): JobQuery vm 1, id 4.
out=$(wire python3 -c 'import sys, rpcwire
print(*rpcwire.call(sys.argv[1], "tern.migd.Migd/Status", rpcwire.ld(1, b"h") + rpcwire.ld(4, b"zz"))[:2])' "$RUNDIR/migd.sock" 2>&1)
[ "$out" = "22 job id 'zz': 32 hex digits expected, not all zero" ] || fail "Status id zz: $out"
echo "ok: $out"

note "another version, a link, a file others may write: set aside"
stop_migd
saved_state 'field(1, 0, varint(2))'
start_migd
log_has "$STATE: version 2, where this migd reads 1; kept as $STATE.bad"
stop_migd
echo "victim" >"$RUNDIR/victim"
ln -s "$RUNDIR/victim" "$STATE"
start_migd
log_has "$STATE: a symbolic link; kept as $STATE.bad"
[ -L "$STATE.bad" ] || fail "the link was not set aside"
migctl set --channels 2 >/dev/null || fail "set after the link"
[ -f "$STATE" ] && [ ! -L "$STATE" ] && [ "$(cat "$RUNDIR/victim")" = victim ] ||
	fail "the save went through the link: $(ls -l "$RUNDIR")"
stop_migd
chmod 622 "$STATE"
start_migd
log_has "$STATE: owned by uid 0, mode 0622: only this migd's user may write it; kept as $STATE.bad"
echo "ok: three files set aside"

note "a save that fails is said once, and its end"
mkdir "$STATE.new"
migctl set --channels 3 >/dev/null && migctl set --channels 4 >/dev/null || fail "set while saves fail"
n=$(grep -c "cannot save $STATE (the defaults and the history, for a restarted migd)" "$RUNDIR/migd.log")
[ "$n" = 1 ] || fail "$n warnings of failed saves: $(tail -n 4 "$RUNDIR/migd.log")"
rmdir "$STATE.new"
migctl set --channels 5 >/dev/null || fail "set after the saves work again"
log_has "$STATE saved again"
restart_migd
[ "$(migctl --json get | jget channels)" = 5 ] || fail "channels after the restart: $(migctl --json get)"
echo "ok: one warning for two failed saves; then saved again"

note "jobs running when migd is killed: what became of them"
# Before, the next migd knew nothing of them, and status showed the VM's
# job before (restored), as if it were the latest.
start_vmm s2 --memory 64M --test-guest dirty --guest-rate 2000
start_vmm d2 --memory 64M --incoming
wait_pass s2 0 1
incoming d2
migctl migrate s2 "$ADDR" --token "$TOKEN" --max-bandwidth 1M --channels 1 --detach >/dev/null ||
	fail "migrate s2"
wait_until 20 job_is s2 active || fail "s2: $(migctl status s2)"
wait_until 20 test -n "$(job_get d2 id)" || fail "d2: no id"
sid=$(job_get s2 id)
# migd.state is saved every 2 s while jobs report: once it was, after
# bytes went, the next migd records them (before: "0% 0 B").
sent_some() { [ "$(job_get s2 transferred_bytes)" -gt 1048576 ]; }
wait_until 20 sent_some || fail "s2 sent nothing: $(migctl status s2)"
t0=$(date +%s%N)
saved_since() { local m; m=$(stat -c %.9Y "$RUNDIR/migd.state"); [ "${m/./}" -gt "$t0" ]; }
wait_until 20 saved_since || fail "migd.state not saved while s2 ran"
old=$MIGD_PID
kill -KILL "$old"
wait_exit "$old" || true
start_migd
log_has "2 jobs ran when migd $old ended, and no word of their end came: recorded as cancelled (before their switch) or of unknown outcome (past it)"
for vm in s2 d2; do
	[ "$(migctl --json status $vm --id $sid | jget error)" = "cancelled: migd (pid $old) ended while this job ran, before its switch when last reported, so its worker cancelled it (migd(8), SIGNALS); should the switch have come in between, the guest runs on the destination (vmmctl status on both hosts tells)" ] &&
		job_is $vm cancelled || fail "$vm: $(migctl status $vm --id $sid 2>&1)"
done
[ "$(migctl --json status s2 --id $sid | jget transferred_bytes)" -gt 1048576 ] ||
	fail "s2's record lost what it sent: $(migctl status s2 --id $sid)"
wait_pass s2 0 1
[ "$(state_of s2)" = running ] || fail "vmm s2 is $(state_of s2)"
echo "ok: $(migctl status s2 | head -n 1): $(job_get s2 error); $(job_get s2 transferred_bytes) bytes recorded"
vmmctl quit s2 >/dev/null && vmmctl quit d2 >/dev/null || fail "quit s2, d2"

note "SIGHUP ends neither migd, nor a worker, nor a vmm"
# Before, each died of it (a past-switch worker's guest with it): a
# "pkill -HUP migd" reaches the workers too.  Each answers after the
# signal, so each handled it first.
migctl incoming w --listen tcp:127.0.0.1:0 >/dev/null || fail "incoming w (3)"
wpid=$(job_get w worker_pid)
[ -n "$wpid" ] && [ "$wpid" -gt 0 ] || fail "w: no worker"
kill -HUP "$MIGD_PID" "$wpid" "$(pid_of w)"
migctl list >/dev/null || fail "migd did not answer after SIGHUP"
[ "$(state_of w)" = incoming ] || fail "vmm w after SIGHUP: $(state_of w)"
out=$(migctl --json cancel w --wait) || true
[ "$(echo "$out" | jget state)" = cancelled ] || fail "w's job after SIGHUP: $out"
echo "ok: migd, worker $wpid and vmm w took SIGHUP; w's job ended only by its cancel"

for vm in s d w; do vmmctl quit "$vm" >/dev/null || fail "quit $vm"; done
stop_migd
echo PASS
