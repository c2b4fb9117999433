#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Precopy between stand-in vmms (fakevmm.py), on any host, KVM or not:
# migd, its workers and migctl are the real programs; the vmm's part is
# played by a program that hands over its RAM in a memfd and logs, as
# KVM would, the pages that a writer thread rewrites in place of a
# guest.  Multifd channels, zstd, auto-converge (the writer slows as the
# throttle rises), a timeout that cancels, verify catching a page
# corrupted on the destination, an operator's pause that outlasts a
# failure; then postcopy through the real faultd (the destination's
# RAM registered with a userfaultfd, a reader thread faulting on it):
# on request with verify, by policy, and faultd killed mid-way, the
# reader waiting, then recovered.  What arrives is checked bit for bit:
# the SHA-256 of the RAM the source stopped with against that of the
# RAM the destination starts with (or ends with, in postcopy).  The
# same, with real guests and their own checks: t_migrate,
# t_precopy_features, t_postcopy and t_recovery (KVM).
. "$(dirname "$0")/lib.sh"
start_migd

MEM=$((64 << 20))

# fake_did NAME WHAT: stand-in NAME has printed its RAM at a WHAT.
fake_did() { [ -n "$(fake_ram "$1" "$2")" ]; }
# same_ram SRC DST: DST started with the RAM SRC stopped with.
same_ram() {
	local s d
	wait_until 20 fake_did "$2" cont || fail "$2 was never resumed"
	s=$(fake_ram "$1" stop) d=$(fake_ram "$2" cont)
	[ -n "$s" ] && [ "$s" = "$d" ] || fail "$2's RAM is not what $1 stopped with ($d, $s)"
	echo "ok: $2 started with the RAM $1 stopped with (sha256 ${s:0:16}...)"
}
# on_real_guests TESTS WHAT: with /dev/kvm, the real-guest TESTS check
# WHAT, with the guest's own checks; make check runs them, so this one
# leaves those cases to them (their time counts against make check's 15
# minutes).  TERN_STANDIN_ALL=1 runs every case anyway.
on_real_guests() {
	[ -z "${TERN_STANDIN_ALL:-}" ] && [ -c /dev/kvm ] && [ -r /dev/kvm ] &&
		[ -w /dev/kvm ] || return 1
	echo "left to the real-guest tests $1: $2"
}
# throttles NAME: the throttles stand-in NAME was given, in order.
throttles() { sed -n 's/^throttle //p' "$RUNDIR/$1.out" | tr '\n' ' '; }

note "a timeout in set-up says so"
# A listener that never answers the hello.  Before, the error said only
# "did not complete within the 2 s timeout".
fake_vmm gs "$MEM" running
python3 -c 'import socket, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
print(l.getsockname()[1], flush=True); time.sleep(30)' >"$RUNDIR/mute.port" &
PIDS+=("$!")
wait_until 10 test -s "$RUNDIR/mute.port" || fail "no silent listener"
out=$(migctl migrate gs "tcp:127.0.0.1:$(cat "$RUNDIR/mute.port")" \
	--token 0123456789abcdef0123456789abcdef --timeout 2 2>&1) && fail "migrate gs: $out"
echo "$out" | grep -q "migration failed: did not complete within the 2 s timeout (still setting up, before any page was sent: connecting to the destination, or waiting for its answer); the source VM kept running$" ||
	fail "$out"
echo "ok: $(echo "$out" | tail -n 1)"

# Precopy's features, with the same checks on real guests in t_migrate
# and t_precopy_features, which a host with KVM runs instead.
if ! on_real_guests "t_migrate, t_precopy_features" "channels, zstd, auto-converge, a timeout, verify"; then
	note "2 channels and verify, a writer rewriting 2000 pages a second"
	fake_vmm a "$MEM" running 2000
	fake_vmm b "$MEM"
	incoming b
	out=$(migctl --json migrate a "$ADDR" --token "$TOKEN" --channels 2 --verify --wait) ||
		fail "a -> b: $out"
	same_ram a b
	[ "$(echo "$out" | jget verified)" = ok ] || fail "a: verified: $out"
	# Zero pages are never sent: a quarter of a's RAM is zero.
	sent=$(echo "$out" | jget pages_sent)
	[ "$sent" -ge $((MEM / 4096 * 3 / 4)) ] || fail "a: $sent pages sent: $out"
	echo "ok: $sent pages sent, $(echo "$out" | jget rounds) rounds, downtime $(echo "$out" | jget downtime_ms) ms"

	note "4 channels and zstd:3: the text pages compress, the random ones go raw"
	fake_vmm c "$MEM" running 2000
	fake_vmm d "$MEM"
	incoming d
	out=$(migctl --json migrate c "$ADDR" --token "$TOKEN" --channels 4 --compress zstd:3 --wait) ||
		fail "c -> d: $out"
	same_ram c d
	zp=$(echo "$out" | jget compressed_pages)
	# The text quarter: 4096 pages; the writer's 64 random bytes leave a
	# rewritten text page compressible, and a random page stays random.
	[ "$zp" -ge $((MEM / 4096 / 4)) ] && [ "$zp" -lt $((MEM / 4096 / 2)) ] ||
		fail "c: $zp pages compressed: $out"
	echo "ok: $zp pages compressed of $(echo "$out" | jget pages_sent) sent"

	note "auto-converge: a writer outrunning the cap is throttled until it converges, then let go"
	# 20000 pages (80 MB) a second against 16 MB/s: without a throttle,
	# every round leaves more to send than the downtime limit allows.
	fake_vmm e "$MEM" running 20000
	fake_vmm f "$MEM"
	incoming f
	out=$(migctl --json migrate e "$ADDR" --token "$TOKEN" --max-bandwidth 16M \
		--auto-converge --throttle-initial 40 --throttle-increment 20 --timeout 120 \
		--wait) || fail "e -> f: $out"
	same_ram e f
	t=$(throttles e)
	echo "e's throttles: $t"
	case $t in 0\ *|"") fail "e was never throttled: $t" ;; esac
	case $t in *" 0 ") ;; *) fail "e's throttle was not lifted at the end: $t" ;; esac
	echo "ok: $(echo "$out" | jget rounds) rounds, downtime $(echo "$out" | jget downtime_ms) ms"

	note "a timeout cancels a migration that cannot converge; the source runs on, the destination is emptied"
	fake_vmm g "$MEM" running 20000
	fake_vmm h "$MEM"
	incoming h
	out=$(migctl migrate g "$ADDR" --token "$TOKEN" --max-bandwidth 4M --timeout 3 2>&1) &&
		fail "a migration that cannot converge completed: $out"
	echo "$out" | tail -n 1
	echo "$out" | grep -q "migration failed: did not complete within the 3 s timeout[^;]*; the source VM kept running$" ||
		fail "$out"
	[ -z "$(fake_ram g stop)" ] || fail "g was stopped"
	vmm_is g running || fail "g is $(state_of g)"
	zero=$(head -c "$MEM" /dev/zero | sha256sum | cut -d' ' -f1)
	wait_until 20 fake_did h discard || fail "h was not told to drop what it received"
	[ "$(fake_ram h discard)" = "$zero" ] || fail "h's RAM is not empty"
	echo "ok: h dropped what it received"

	note "verify: a page corrupted on the destination during the migration is caught; the source runs on"
	# No writer: the last quarter of i stays zero, so that its pages are
	# never sent and the corrupted one stays so.  At 16 MB/s the 48 MiB of
	# data take 3 s: the job is surely still running when the page is hit.
	fake_vmm i "$MEM" running
	fake_vmm j "$MEM"
	ram_j=$FAKE_RAM
	incoming j
	migctl migrate i "$ADDR" --token "$TOKEN" --verify --downtime-limit 2000 \
		--max-bandwidth 16M --detach >/dev/null || fail "migrate i"
	wait_until 30 job_is i active || fail "i: $(migctl status i)"
	printf '\377' | dd of="$ram_j" bs=1 seek=$((MEM - 4096)) conv=notrunc status=none ||
		fail "corrupting j"
	wait_job_final i
	[ "$(job_get i state)" = failed ] || fail "the corrupted migration was not failed: $(migctl status i)"
	gpa=$(printf '0x%x' $((MEM - (2 << 20))))
	case $(job_get i verified) in "verify failed: the destination's guest RAM differs from the RAM here: 1 of 32 2 MiB chunks, the first at gpa $gpa") ;;
	*) fail "i: verified: $(job_get i verified)" ;; esac
	# (the error says it from the source's side too: before, it quoted the
	# destination's "the guest RAM here differs")
	case $(job_get i error) in "the destination failed: $(job_get i verified); the source VM runs again, after a pause of "*" ms") ;;
	*) fail "i: $(job_get i error)" ;; esac
	echo "ok: $(job_get i error)"
	wait_until 20 vmm_is i running || fail "i is $(state_of i), not running again"
	[ "$(fake_ram i cont)" = "$(fake_ram i stop)" ] || fail "i's RAM changed while it was stopped"
	wait_until 20 fake_did j discard || fail "j was not told to drop what it received"
	echo "ok: i runs on, j dropped what it received"
fi

note "an operator's pause in the job's stop outlasts a failure"
# The job's pause is held (TERN_FAULT=source-slow-pause, while the file
# of that name is there) for the operator's 'vmmctl stop'; verify then
# fails.  Before, the worker left the VM paused, saying so, and migd's
# clean-up after it resumed the VM all the same ("the source VM was
# resumed").
stop_migd
start_migd TERN_FAULT=source-slow-pause
fake_vmm k "$MEM" running
fake_vmm l "$MEM"
printf '\377' | dd of="$FAKE_RAM" bs=1 seek=$((MEM - 4096)) conv=notrunc status=none ||
	fail "corrupting l"
incoming l
: >"$RUNDIR/source-slow-pause"
migctl migrate k "$ADDR" --token "$TOKEN" --verify --downtime-limit 2000 --detach >/dev/null ||
	fail "migrate k"
wait_until 30 fake_did k stop || fail "k was never stopped: $(migctl status k)"
vmmctl stop k >/dev/null || fail "vmmctl stop k"
rm "$RUNDIR/source-slow-pause"
wait_job_final k
err=$(job_get k error)
case $err in *"verify failed"*"; the source VM stays paused: its operator paused it during the job's stop") ;;
*) fail "k: $err" ;; esac
vmm_is k paused || fail "k is $(state_of k), not paused"
grep -q "^call Cont" "$RUNDIR/k.out" && fail "k was resumed"
echo "ok: $err"

note "a source its operator paused in precopy stays paused after a failure, and the job says so"
# Before, the job's error did not say where the guest was, and its
# status said "kept paused on the destination at the switch", though
# there was none.
stop_migd
start_migd
fake_vmm k2 "$MEM" running
fake_vmm l2 "$MEM"
printf '\377' | dd of="$FAKE_RAM" bs=1 seek=$((MEM - 4096)) conv=notrunc status=none ||
	fail "corrupting l2"
incoming l2
migctl migrate k2 "$ADDR" --token "$TOKEN" --verify --downtime-limit 2000 \
	--max-bandwidth 16M --detach >/dev/null || fail "migrate k2"
wait_until 30 job_is k2 active || fail "k2: $(migctl status k2)"
# (the round under way is not among those completed: before, "rounds 0"
# beside the bar's "round 1")
migctl status k2 | grep -Eqx "  rounds        [0-9]+ completed, round [1-9][0-9]* under way" ||
	fail "k2: $(migctl status k2)"
vmmctl stop k2 >/dev/null || fail "vmmctl stop k2"
wait_job_final k2
case $(job_get k2 error) in *"verify failed"*"; the source VM stays paused, as it was when the job stopped it") ;;
*) fail "k2: $(job_get k2 error)" ;; esac
migctl status k2 | grep -qx "  guest         paused here when the job stopped it, as it stays" ||
	fail "k2: $(migctl status k2)"
vmm_is k2 paused || fail "k2 is $(state_of k2), not paused"
grep -q "^call Cont" "$RUNDIR/k2.out" && fail "k2 was resumed"
echo "ok: $(job_get k2 error)"

note "a source paused before the job, cancelled in precopy: the job says the guest stays paused"
fake_vmm p2 $((16 << 20)) running
fake_vmm p3 $((16 << 20))
vmmctl stop p2 >/dev/null || fail "vmmctl stop p2"
incoming p3
migrate_active p2 4M
migctl cancel p2 --wait >/dev/null
[ "$(job_get p2 error)" = "cancelled; the job did not pause the source VM, which stays paused" ] ||
	fail "p2: $(job_get p2 error)"
vmm_is p2 paused || fail "p2 is $(state_of p2)"
echo "ok: p2: $(job_get p2 error)"
# Asked again (an agent's retry), by id too: so it is, exit 0.  Before,
# exit 1: "nothing to cancel: ... already ended (cancelled)".
id=$(job_get p2 id)
out=$(migctl cancel p2 --id "$id") && [ "$out" = "p2: cancelled (job $id)" ] ||
	fail "cancel p2 again: $out"
out=$(migctl --json cancel p2 --wait) && [ "$(echo "$out" | jget state)" = cancelled ] ||
	fail "cancel p2 --wait again: $out"

note "a cancel that comes once the destination was told to resume: refused on both hosts, said"
# The destination's worker holds between Go and the vmm's Cont
# (TERN_FAULT=dest-slow-cont, while the file is there).  Before, the
# cancel was taken ("cancelling", exit 0) and dropped by the worker: the
# job completed, and 'cancel --wait' ended "migration completed" as an
# error (operator round 18); and the bar stood at 76% with nothing
# left (the zero pages, never sent, counted against it).
stop_migd
start_migd TERN_FAULT=dest-slow-cont
# held_at_go SRC DST: stand-ins SRC (running) and DST, SRC's precopy to
# DST held there between Go and the Cont.
go_came() { grep -q "Go came; Cont in 2 s or more" "$RUNDIR/migd.log"; }
held_at_go() {
	fake_vmm "$1" $((16 << 20)) running 100
	fake_vmm "$2" $((16 << 20))
	incoming "$2"
	: >"$RUNDIR/dest-slow-cont"
	: >"$RUNDIR/migd.log"
	migctl migrate "$1" "$ADDR" --token "$TOKEN" --detach >/dev/null || fail "migrate $1"
	wait_until 30 go_came || fail "$2 was never told to resume: $(migctl status "$1")"
}
held_at_go c2 c3
for vm in c2 c3; do
	err=$(migctl cancel $vm --wait 2>&1) && fail "cancel $vm was taken: $err"
	[ "$err" = "migctl: $vm has switched: the destination was told to resume the guest, and the job ends as that goes; nothing to cancel" ] ||
		fail "cancel $vm: $err"
done
echo "ok: $err"
migctl list | grep -q "^c2  *source  *device  *99% " || fail "list: $(migctl list)"
rm "$RUNDIR/dest-slow-cont"
same_ram c2 c3
wait_until 20 job_is c2 completed || fail "c2: $(migctl status c2)"

note "migd killed once the destination was told to resume: the workers complete, and the next migd learns it from them"
# (operator round 19) Before, both records stayed as the next migd
# guessed them from migd.state: the destination's "cancelled ... waited
# for its source", while its guest ran.  A worker whose migd ended
# before the job did now offers its end to the next one, unless it is
# the cancel that migd's end makes before a switch.
held_at_go c4 c5
old=$MIGD_PID
kill -KILL "$old"
wait_exit "$old" || true
start_migd TERN_FAULT=dest-slow-cont
# (c5 reported its switch when Go came: "past its switch", not before)
case $(job_get c5 error) in "outcome unknown: migd (pid $old) ended while this job was past its switch: "*) ;;
*) fail "c5 as guessed: $(job_get c5 error)" ;; esac
rm "$RUNDIR/dest-slow-cont"
wait_until 30 job_is c5 completed || fail "c5: $(migctl status c5)"
wait_until 30 job_is c4 completed || fail "c4: $(migctl status c4)"
same_ram c4 c5
vmm_is c4 paused || fail "c4 is $(state_of c4)"
echo "ok: both jobs completed, as their workers told the next migd"

note "the destination's worker killed between Go and its Cont: the vmm keeps the guest, loaded, said"
# Before, migd's clean-up made the vmm drop what it received, the
# guest's state with it, while the source stayed paused, marked as moved.
held_at_go c6 c7
kill -KILL "$(job_get c7 worker_pid)"
rm "$RUNDIR/dest-slow-cont"
wait_job_final c7
[ "$(job_get c7 error)" = "worker died: killed by signal 9; the source had told it to resume the guest: vmm c7 holds the guest, loaded and not started ('vmmctl cont c7' starts it here, if 'vmmctl status' says it is not running yet); the source keeps its copy paused, marked as moved" ] ||
	fail "c7: $(job_get c7 error)"
grep -q "^call Discard" "$RUNDIR/c7.out" && fail "c7's vmm was told to discard"
wait_job_final c6
vmm_is c6 paused || fail "c6 is $(state_of c6)"
# (and the source's words send its operator there first: before, "check
# whether the guest runs on the destination; if not, 'vmmctl cont c6
# --force' ...", and it does not run there, it waits loaded)
case $(job_get c6 error) in *"check the destination, whose vmm may run the guest or hold it loaded and not started (its job then says how to start it there); only if it has no copy, 'vmmctl cont c6 --force' runs it here again, from where it stopped") ;;
*) fail "c6: $(job_get c6 error)" ;; esac
vmmctl cont c7 >/dev/null || fail "vmmctl cont c7"
same_ram c6 c7
echo "ok: c7: $(job_get c7 error)"

note "the destination's worker stopped in precopy: the source says that nothing goes, then goes on"
# (a leftover of operator round 16) Before, the source showed an active
# round at a standstill, without a word, as long as the stop lasted.
# One channel, its buffers filled within a second: the source stands
# still about 5 s after the destination's window closed, and a link
# closed that long fails at 20 s (migd(8)).  At 8 MiB/s over 4 channels
# one channel's window could close 10 s before the last byte went, and
# CI, slower, failed the job before the test saw the stall.
fake_vmm s5 $((64 << 20)) running 1000
fake_vmm s6 $((64 << 20))
incoming s6
migrate_active s5 32M --channels 1
w6=$(job_get s6 worker_pid)
kill -STOP "$w6"
stalled() { [ "$(job_get s5 stalled_ms)" -ge 5000 ] 2>/dev/null; }
wait_until 60 stalled || { kill -CONT "$w6"; fail "s5: $(migctl status s5)"; }
out=$(migctl status s5)
kill -CONT "$w6"
echo "$out" | grep -Eqx "  stalled       nothing sent for [0-9]+ s: the destination takes nothing \(its worker may be stopped, or the link blocked: 'migctl status' there says more\); a link that takes nothing for about 20 s fails the job" ||
	fail "s5: $out"
migctl tune s5 --max-bandwidth unlimited >/dev/null || fail "tune s5"
wait_job_final s5
[ "$(job_get s5 state)" = completed ] || fail "s5: $(migctl status s5)"
same_ram s5 s6
echo "ok: $(echo "$out" | grep stalled)"

note "migd killed while an incoming job waits: the next one says it was cancelled waiting, then"
fake_vmm w2 "$MEM"
incoming w2
old=$MIGD_PID
t_kill=$(date +%s%3N)
kill -KILL "$old"
wait_exit "$old" || true
start_migd
[ "$(job_get w2 error)" = "cancelled: migd (pid $old) ended while this job waited for its source, so its worker cancelled it (migd(8), SIGNALS)" ] &&
	job_is w2 cancelled || fail "w2: $(migctl status w2)"
# Ended with the migd that saved the file (its last save), not when the
# next one started.
[ "$(job_get w2 finished_unix_ms)" -le "$t_kill" ] ||
	fail "w2 ended at $(job_get w2 finished_unix_ms), after migd $old was killed at $t_kill"
echo "ok: w2: $(job_get w2 error)"

note "a source vmm that stops answering in the job's pause, or throttled: the guest stays paused, said; the throttle is lifted once it runs"
# (vmm-call-short: a call's bound is 3 s, not 30.)  At first the worker
# asked the silent vmm twice more (its state, DirtyStop), a bound each,
# before it told the destination, and ended saying "its guest may be
# gone" right after "kill -CONT resumes it"; then it made no call once
# one timed out, and migd's clean-up (3 s) found the vmm still stopped:
# after 'kill -CONT' its guest stayed paused, or throttled, unsaid.
stop_migd
start_migd TERN_FAULT=vmm-call-short,source-slow-pause
fake_vmm k4 $((16 << 20)) running
k4_pid=${PIDS[-1]}
fake_vmm k5 $((16 << 20))
incoming k5
: >"$RUNDIR/source-slow-pause"
migctl migrate k4 "$ADDR" --token "$TOKEN" --detach >/dev/null || fail "migrate k4"
wait_until 30 fake_did k4 stop || fail "k4 was never stopped: $(migctl status k4)"
kill -STOP "$k4_pid"
rm "$RUNDIR/source-slow-pause"
wait_job_final k4
# Paused by the job, it stays so, said: a Cont queued for a vmm that
# cannot say whether its operator paused it meanwhile could override
# that (operator round 17); its operator resumes it.
case $(job_get k4 error) in *"; its vmm does not answer: the source VM, which the job paused, stays paused ('vmmctl cont k4' resumes it once its vmm runs again)") ;;
*) kill -CONT "$k4_pid"; fail "k4: $(job_get k4 error)" ;; esac
kill -CONT "$k4_pid"
wait_until 20 vmm_is k4 paused || fail "k4 is $(state_of k4) after its vmm runs again"
grep -q "^call Cont" "$RUNDIR/k4.out" && fail "k4 was sent a Cont"
vmmctl cont k4 >/dev/null || fail "vmmctl cont k4"
echo "ok: k4: $(job_get k4 error)"
fake_vmm k6 $((16 << 20)) running 20000
k6_pid=${PIDS[-1]}
fake_vmm k7 $((16 << 20))
incoming k7
migctl migrate k6 "$ADDR" --token "$TOKEN" --max-bandwidth 16M --auto-converge --detach >/dev/null ||
	fail "migrate k6"
throttled() { grep -q "^throttle [1-9]" "$RUNDIR/k6.out"; }
wait_until 30 throttled || fail "k6 was never throttled: $(migctl status k6)"
kill -STOP "$k6_pid"
wait_job_final k6
# The call that timed out, then what it means: no word of a guest gone.
case $(job_get k6 error) in "vmm k6: "*": no answer in time: vmm k6, pid $k6_pid, is stopped by a signal or a debugger: 'kill -CONT $k6_pid' resumes it; the job did not pause the source VM, whose vmm does not answer; the job asked its vmm to lift the vCPU throttle, which it does once it runs again") ;;
*) kill -CONT "$k6_pid"; fail "k6: $(job_get k6 error)" ;; esac
kill -CONT "$k6_pid"
lifted() { [ "$(sed -n 's/^throttle //p' "$RUNDIR/k6.out" | tail -n 1)" = 0 ]; }
wait_until 20 lifted || fail "k6's throttle: $(sed -n 's/^throttle //p' "$RUNDIR/k6.out" | tr '\n' ' ')"
echo "ok: k6: $(job_get k6 error)"

note "the source vmm dies in the stop-and-copy: the job says where, and what it means"
# Before: "vmm j2 closed its connection in round 2", in a job of one
# round, and nothing of the guest.  A long last round: the pages a
# writer dirtied during round 1, at 8 MB/s.
stop_migd
start_migd
fake_vmm j2 $((16 << 20)) running 3000
j2_pid=${PIDS[-1]}
fake_vmm j3 $((16 << 20))
incoming j3
migctl migrate j2 "$ADDR" --token "$TOKEN" --max-bandwidth 8M --downtime-limit 30000 \
	--detach >/dev/null || fail "migrate j2"
wait_until 60 fake_did j2 stop || fail "j2 was never stopped: $(migctl status j2)"
kill -KILL "$j2_pid"
wait_job_final j2
case $(job_get j2 error) in "vmm j2 closed its connection in the stop-and-copy, after round 1; the source vmm no longer answers: its guest may be gone"*) ;;
*) fail "j2: $(job_get j2 error)" ;; esac
wait_until 20 fake_did j3 discard || fail "j3 was not told to drop what it received"
echo "ok: $(job_get j2 error)"

# ---- postcopy: the destination's RAM registered with a userfaultfd --------
if ! [ -c /dev/userfaultfd ] || ! [ -r /dev/userfaultfd ]; then
	not_tried "/dev/userfaultfd is missing or not accessible: postcopy"
	exit 0
fi
stop_migd
start_migd
start_faultd

# postcopy_done SRC DST OUT: a postcopy of stand-ins ended (OUT: the
# source's status as JSON): completed on both sides, nothing left, and
# DST's RAM at the end (faultd and migd let go of its userfaultfd) is
# the RAM SRC stopped with.
postcopy_done() {
	local src=$1 dst=$2 out=$3 s d
	[ "$(echo "$out" | jget state)" = completed ] || fail "$src: $out"
	[ "$(echo "$out" | jget postcopy_started)" = true ] || fail "$src did not switch: $out"
	[ "$(echo "$out" | jget remaining_bytes)" = 0 ] || fail "$src: bytes left: $out"
	wait_until 30 job_is "$dst" completed || fail "$dst: $(migctl status "$dst")"
	[ "$(job_get "$dst" needed_pages)" = 0 ] || fail "$dst: $(migctl --json status "$dst")"
	wait_until 20 fake_did "$dst" release || fail "$dst's userfaultfd was never released"
	s=$(fake_ram "$src" stop) d=$(fake_ram "$dst" release)
	[ -n "$s" ] && [ "$s" = "$d" ] || fail "$dst's RAM is not what $src stopped with ($d, $s)"
	echo "ok: $dst ended with the RAM $src stopped with: $(job_get "$dst" faults) faults, $(job_get "$dst" pages_on_demand) pages on demand, $(job_get "$dst" pages_pushed) pushed"
}

# pc_pair SRC DST SRC_RATE DST_RATE ARGS...: stand-ins SRC (running,
# its writer at SRC_RATE) and DST (incoming, its reader at DST_RATE),
# SRC's migration to DST switched to postcopy with ARGS and active on
# both sides; their pids in SRC_PID and DST_PID.
pc_pair() {
	local src=$1 dst=$2
	fake_vmm "$src" "$MEM" running "$3"
	SRC_PID=${PIDS[-1]}
	fake_vmm "$dst" "$MEM" incoming "$4"
	DST_PID=${PIDS[-1]}
	incoming "$dst"
	shift 4
	postcopy_on_request "$src" "$@"
	wait_until 30 both_active "$src" "$dst" || fail "no postcopy: $(migctl status "$src")"
}

# waits_on_uffd PID: a thread of PID waits on a userfaultfd's answer.
waits_on_uffd() { grep -qx handle_userfault /proc/"$1"/task/*/wchan 2>/dev/null; }

# Postcopy, its auto switch and a faultd restart, with the same checks
# on real guests in t_postcopy and t_recovery.
if ! on_real_guests "t_postcopy, t_recovery" "postcopy on request and auto, faultd killed"; then
	note "postcopy on request, with verify: a reader on the destination faults, the push brings the rest"
	# The source's writer goes on until the switch; the destination's reader
	# touches 2000 pages a second through the mapping from its start, and
	# waits in the kernel on each missing one until faultd places it.
	fake_vmm m "$MEM" running 5000
	fake_vmm n "$MEM" incoming 2000
	incoming n
	postcopy_on_request m --max-bandwidth 16M --channels 2 --verify --downtime-limit 2000
	out=$(migctl --json status m --watch) || fail "m: $out"
	postcopy_done m n "$out"
	[ "$(job_get n faults)" -gt 0 ] && [ "$(job_get n pages_on_demand)" -gt 0 ] ||
		fail "n: no page came on demand: $(migctl --json status n)"
	[ "$(echo "$out" | jget verified)" = ok ] || fail "m: verify: $out"

	note "--postcopy auto: a writer that outruns the cap switches after a round"
	fake_vmm o "$MEM" running 20000
	fake_vmm p "$MEM" incoming 2000
	incoming p
	out=$(migctl --json migrate o "$ADDR" --token "$TOKEN" --max-bandwidth 32M \
		--postcopy auto --downtime-limit 1 --wait) || fail "o: $out"
	postcopy_done o p "$out"

	note "faultd dies mid-postcopy: both sides pause, the reader waits; with faultd back, the recovery completes it"
	pc_pair q r 5000 2000 --max-bandwidth 4M --channels 1
	r_pid=$DST_PID
	kill -KILL "$FAULTD_PID"
	wait_until 30 both_paused q r || fail "faultd gone: q $(job_get q state), r $(job_get r state)"
	echo "ok: r: $(job_get r error)"
	# r's reader waits in the kernel on a missing page (its vCPU would):
	# not given zeros.
	wait_until 30 waits_on_uffd "$r_pid" || fail "r's reader does not wait on a missing page"
	[ -z "$(fake_ram r release)" ] || fail "r's userfaultfd was released while paused"
	echo "ok: r's reader waits on a missing page"
	start_faultd
	migctl tune q --max-bandwidth unlimited >/dev/null || fail "tune q"
	migctl recover q "$ADDR" >/dev/null || fail "recover q"
	out=$(migctl --json status q --watch) || fail "q: $out"
	postcopy_done q r "$out"
	[ "$(echo "$out" | jget recoveries)" = 1 ] || fail "q: recoveries: $out"
	grep -q "^faultd: r: attached again" "$RUNDIR/faultd.log" ||
		fail "faultd: $(tail -n 5 "$RUNDIR/faultd.log")"
fi

note "held in the switch's pause mid-round 1: what is left is what the push must bring"
# Before, the status (and migctl's bar) showed the whole RAM as left
# there, the figure of round 1's start, until the push began.  No
# writer: what is left is exactly the data pages not yet sent.
stop_migd
start_migd TERN_FAULT=source-switch-held
fake_vmm u "$MEM" running
fake_vmm v "$MEM" incoming
incoming v
: >"$RUNDIR/source-switch-held"
migrate_active u 8M --channels 1
sent_some() { [ "$(job_get u pages_sent)" -gt 2048 ]; }
wait_until 30 sent_some || fail "u: $(migctl status u)"
migctl postcopy u >/dev/null || fail "postcopy u"
wait_until 30 job_is u device || fail "u: $(migctl status u)"
js=$(migctl --json status u)
left=$(echo "$js" | jget remaining_bytes) sent=$(echo "$js" | jget pages_sent)
rm "$RUNDIR/source-switch-held"
[ "$left" -gt 0 ] && [ $((left + sent * 4096)) -le $((MEM * 3 / 4)) ] ||
	fail "u: $left bytes left after $sent pages sent, of $((MEM * 3 / 4)) bytes of data"
echo "ok: in the pause, $left bytes left after $sent pages sent"
wait_until 30 job_is u postcopy_active || fail "u: $(migctl status u)"
migctl tune u --max-bandwidth unlimited >/dev/null || fail "tune u"
out=$(migctl --json status u --watch) || fail "u: $out"
postcopy_done u v "$out"

note "migd killed in a postcopy switch's pause, before Go: the worker cancels, and tells the next migd"
# (operator round 19) Before, the next migd recorded "outcome unknown"
# once its wait for the job's return was over, though the worker had
# cancelled the switch and resumed the guest.
fake_vmm u2 $((32 << 20)) running 1000
fake_vmm v2 $((32 << 20)) incoming 100
incoming v2
: >"$RUNDIR/source-switch-held"
migrate_active u2 8M --channels 2
migctl postcopy u2 >/dev/null || fail "postcopy u2"
wait_until 30 job_is u2 device || fail "u2: $(migctl status u2)"
: >"$RUNDIR/migd.log"
old=$MIGD_PID
kill -KILL "$old"
wait_exit "$old" || true
# (held until the worker took migd's end: else the switch may cross Go)
u2_cancels() { grep -q "^migd\[u2/out\]: migd is gone: before the switch, this worker cancels the job" "$RUNDIR/migd.log"; }
wait_until 30 u2_cancels || fail "u2's worker went on: $(tail -n 3 "$RUNDIR/migd.log")"
rm "$RUNDIR/source-switch-held"
wait_until 30 fake_did u2 cont || fail "u2 was not resumed by its worker"
start_migd TERN_FAULT=source-switch-held
wait_until 30 job_is u2 cancelled || fail "u2: $(migctl status u2)"
case $(job_get u2 error) in "cancelled: migd died; the source VM runs again, after a pause of "*" ms") ;;
*) fail "u2: $(job_get u2 error)" ;; esac
wait_until 20 vmm_is u2 running || fail "u2 is $(state_of u2)"
echo "ok: u2: $(job_get u2 error)"

note "migctl pause on each side in turn: the other side says why; recovered each time"
# Before, the side that did not pause blamed a dead worker ("the
# destination closed the connection without a word: its worker died or
# was killed ..."), or said only that the source closed the connection.
pc_pair pa pb 5000 2000 --max-bandwidth 4M --channels 2
for side in pb pa; do
	migctl pause "$side" >/dev/null || fail "pause $side"
	wait_until 30 both_paused pa pb || fail "pause $side: pa $(job_get pa state), pb $(job_get pb state)"
	if [ "$side" = pb ]; then
		mine=$(job_get pb error) theirs=$(job_get pa error) who=destination
	else
		mine=$(job_get pa error) theirs=$(job_get pb error) who=source
	fi
	[ "$mine" = "paused on request (migctl pause)" ] &&
		[ "$theirs" = "the $who said: paused on request (migctl pause)" ] ||
		fail "pause $side: pa: $(job_get pa error); pb: $(job_get pb error)"
	migctl status pa | grep -q "^  next          when wanted, " || fail "pa: $(migctl status pa)"
	# Asked again (an agent's retry): so it is.  Before, exit 1: "pa is
	# postcopy-paused: only a job in postcopy-active can be paused".
	out=$(migctl pause "$side" 2>&1) && [[ $out == "$side: postcopy-paused (job "* ]] ||
		fail "pause $side again: $out"
	migctl recover pa "$ADDR" >/dev/null || fail "recover pa"
	wait_until 30 both_active pa pb || fail "pa $(job_get pa state), pb $(job_get pb state)"
	echo "ok: paused on $side; the other side: $theirs"
done
migctl tune pa --max-bandwidth unlimited >/dev/null || fail "tune pa"
out=$(migctl --json status pa --watch) || fail "pa: $out"
postcopy_done pa pb "$out"

note "a cancel --force that meets a recovery under way is taken when the recovery fails"
# (operator round 19) Before, migd refused it: "ra is in postcopy: ...
# wait for the job to complete (--force takes only a postcopy-paused
# job)", though a recovery to a peer that never answers cannot complete.
pc_pair ra rb 2000 500 --max-bandwidth 4M --channels 2
migctl pause ra >/dev/null || fail "pause ra"
wait_until 30 both_paused ra rb || fail "pause: ra $(job_get ra state), rb $(job_get rb state)"
# A peer that takes connections and says nothing: the recovery waits
# for its hello's answer until the listener goes.
python3 -c '
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
held, end = [], time.time() + 60
s.settimeout(1)
while time.time() < end:
    try: held.append(s.accept())
    except OSError: pass
' >"$RUNDIR/quiet.port" &
quiet=$!
PIDS+=("$quiet")
wait_until 10 test -s "$RUNDIR/quiet.port" || fail "no quiet listener"
migctl recover ra "tcp:127.0.0.1:$(cat "$RUNDIR/quiet.port")" >/dev/null || fail "recover ra"
wait_until 30 job_is ra postcopy_recover || fail "ra: $(job_get ra state)"
err=$(migctl cancel ra 2>&1) && fail "a plain cancel of a recovering job was taken: $err"
case $err in *"ra is recovering its postcopy: "*"cancel with --force, which is taken if the recovery fails") ;;
*) fail "cancel ra: $err" ;; esac
migctl cancel ra --force >/dev/null || fail "cancel ra --force"
kill "$quiet"
wait_job_final ra
[ "$(job_get ra state)" = cancelled ] || fail "ra: $(migctl status ra)"
case $(job_get ra error) in *"cancelled while postcopy was paused: the source VM stays paused, marked as moved"*) ;;
*) fail "ra: $(job_get ra error)" ;; esac
echo "ok: ra: $(job_get ra error)"

note "migd killed in postcopy with both workers stopped: until they are back, no new job for their VMs"
# (operator round 19) Before, in the next migd's wait for the workers
# to come back, a migrate of the source VM started a second worker on
# it, an incoming one was set up for the destination VM, and list left
# the two jobs out.
pc_pair oa ob 2000 500 --max-bandwidth 4M --channels 2
wa=$(job_get oa worker_pid) wb=$(job_get ob worker_pid) id=$(job_get oa id)
kill -STOP "$wa" "$wb"
old=$MIGD_PID
kill -KILL "$old"
wait_exit "$old" || true
: >"$RUNDIR/migd-orphans-hold"
start_migd TERN_FAULT=migd-orphans-hold
for cmd in "migrate oa $ADDR --token $TOKEN --detach" "incoming ob --listen tcp:127.0.0.1:0"; do
	vm=${cmd#* } vm=${vm%% *}
	err=$(migctl $cmd 2>&1) && { kill -CONT "$wa" "$wb"; fail "$cmd was taken: $err"; }
	case $err in *"$vm: its postcopy job $id, which ran when migd $old ended, is not back yet"*) ;;
	*) kill -CONT "$wa" "$wb"; fail "$cmd: $err" ;; esac
	echo "ok: $err"
done
n=$(migctl list | grep -c "^  not back yet: ")
[ "$n" = 2 ] || { kill -CONT "$wa" "$wb"; fail "list: $(migctl list)"; }
# (operator round 21) Past the wait, a worker that still runs is waited
# for.  Before, its job was said to have failed, a final state, then
# came back as postcopy-active once its worker ran again.
rm "$RUNDIR/migd-orphans-hold"
not_back() { grep -q "^migd: oa: source job $id is not back: its worker, pid $wa, is stopped" "$RUNDIR/migd.log"; }
wait_until 30 not_back || { kill -CONT "$wa" "$wb"; fail "$(tail -n 5 "$RUNDIR/migd.log")"; }
err=$(migctl status oa 2>&1) && { kill -CONT "$wa" "$wb"; fail "status oa: $err"; }
case $err in *"is not back yet (its worker, pid $wa, is stopped by a signal or a debugger: 'kill -CONT $wa' resumes it, and comes back once it runs; this migd waits for it); ask again in a few seconds") ;;
*) kill -CONT "$wa" "$wb"; fail "status oa: $err" ;; esac
echo "ok: $err"
n=$(migctl list | grep -c "^  not back yet: its worker, pid [0-9]*, is stopped")
[ "$n" = 2 ] || { kill -CONT "$wa" "$wb"; fail "list: $(migctl list)"; }
# (said once: migctl's own line for a stopped worker is not added)
out=$(migctl list)
! echo "$out" | grep -q "^  its worker, pid \($wa\|$wb\), is stopped" ||
	{ kill -CONT "$wa" "$wb"; fail "list: $out"; }
kill -CONT "$wa" "$wb"
wait_until 30 both_active oa ob || fail "not adopted: oa $(job_get oa state 2>&1), ob $(job_get ob state 2>&1)"
migctl tune oa --max-bandwidth unlimited >/dev/null || fail "tune oa"
out=$(migctl --json status oa --watch) || fail "oa: $out"
postcopy_done oa ob "$out"

note "the links cut twice in postcopy (ss -K): both pause; recovered on the same port, then on a new one"
if ss_kill_works; then
	pc_pair s t 5000 2000 --max-bandwidth 4M --channels 2 --verify --downtime-limit 5000
	t_pid=$DST_PID
	for i in 1 2; do
		ss_kill "( src 127.0.0.1:${ADDR##*:} or dst 127.0.0.1:${ADDR##*:} )" || fail "ss -K"
		wait_until 30 both_paused s t ||
			fail "cut $i: s $(job_get s state), t $(job_get t state)"
		wait_until 30 waits_on_uffd "$t_pid" || fail "t's reader does not wait on a missing page"
		echo "cut $i: s: $(job_get s error); t: $(job_get t error)"
		if [ $i = 2 ]; then
			out=$(migctl recover t --listen tcp:127.0.0.1:0) || fail "recover t: $out"
			ADDR=$(printf '%s\n' "$out" |
				sed -n 's/^listen \(tcp:127\.0\.0\.1:[1-9][0-9]*\)$/\1/p')
			[ -n "$ADDR" ] || fail "recover t printed no address bound: $out"
		fi
		migctl recover s "$ADDR" >/dev/null || fail "recover s"
		wait_until 30 both_active s t ||
			fail "not active again: s $(job_get s state): $(job_get s error); t $(job_get t state): $(job_get t error)"
		echo "ok: recovered on $ADDR"
	done
	migctl tune s --max-bandwidth unlimited >/dev/null || fail "tune s"
	out=$(migctl --json status s --watch) || fail "s: $out"
	postcopy_done s t "$out"
	[ "$(echo "$out" | jget recoveries)" = 2 ] || fail "s: recoveries: $out"
	[ "$(echo "$out" | jget verified)" = ok ] || fail "s: verify: $out"
else
	not_tried "$SS_KILL_WHY: links cut in postcopy"
fi

note "the links cut in the postcopy switch between Go and Resumed: the source pauses, not stuck; recovered"
# (operator round 23) The source's job stayed in 'device' for good: its
# worker paused, but the state machine refused device -> postcopy-paused,
# and recover, cancel and pause were all refused, with the guest running
# on the destination and pages only here.
if ss_kill_works; then
	stop_migd
	start_migd TERN_FAULT=dest-slow-cont
	fake_vmm g1 "$MEM" running 2000
	fake_vmm g2 "$MEM" incoming 500
	incoming g2
	: >"$RUNDIR/dest-slow-cont"
	: >"$RUNDIR/migd.log"
	postcopy_on_request g1 --max-bandwidth 4M --channels 2
	wait_until 30 go_came || fail "g2 was never told to resume: $(migctl status g1)"
	ss_kill "( src 127.0.0.1:${ADDR##*:} or dst 127.0.0.1:${ADDR##*:} )" || fail "ss -K"
	rm "$RUNDIR/dest-slow-cont"
	wait_until 40 both_paused g1 g2 ||
		fail "g1 $(job_get g1 state): $(job_get g1 error); g2 $(job_get g2 state): $(job_get g2 error)"
	echo "ok: g1: $(job_get g1 error)"
	migctl recover g1 "$ADDR" >/dev/null || fail "recover g1"
	migctl tune g1 --max-bandwidth unlimited >/dev/null || fail "tune g1"
	out=$(migctl --json status g1 --watch) || fail "g1: $out"
	postcopy_done g1 g2 "$out"
	stop_migd
	start_migd
else
	not_tried "$SS_KILL_WHY: links cut in the postcopy switch"
fi

note "the source vmm dies in postcopy: its worker's copy serves on; paused, the job waits for its recovery"
# Before, the job went on while active, but failed at its next pause
# ("the guest's remaining pages went with it"): the destination's
# guest, which runs on pages that this worker still had, was lost.
pc_pair w x 3000 1000 --max-bandwidth 4M --channels 2
w_pid=$SRC_PID
kill -KILL "$w_pid"
gone="vmm w closed its connection (it quit or died): this worker now holds the only copy of the pages the destination still lacks"
said() { [[ $(job_get "$1" error) == *"$2"* ]]; }
wait_until 20 said w "$gone; the push goes on" || fail "w: $(job_get w state): $(job_get w error)"
migctl pause w >/dev/null || fail "pause w"
wait_until 30 both_paused w x || fail "pause: w $(job_get w state), x $(job_get x state)"
wait_until 20 said w "$gone: recover the job ('migctl recover'); its cancel, or this worker's end, loses them" ||
	fail "w: $(job_get w state): $(job_get w error)"
echo "ok: w: $(job_get w error)"
# Its status says what brings it back; the destination's too (which
# heard that the pause was asked for).
migctl status w | grep -qx "  next          when wanted, 'migctl recover w ADDR' here, ADDR where the destination job listens" ||
	fail "w: $(migctl status w)"
migctl status x | grep -qx "  next          when wanted, 'migctl recover' of the source's job on its host, to this job's address (or to a new one that 'migctl recover x --listen' here prints)" ||
	fail "x: $(migctl status x)"
migctl recover w "$ADDR" >/dev/null || fail "recover w"
wait_until 30 both_active w x || fail "w $(job_get w state): $(job_get w error); x $(job_get x state)"
migctl tune w --max-bandwidth unlimited >/dev/null || fail "tune w"
out=$(migctl --json status w --watch) || fail "w: $out"
postcopy_done w x "$out"
said w "vmm w closed its connection (it quit or died) during the postcopy: the pages the destination lacked went from this worker's copy" ||
	fail "w: $(job_get w error)"

note "both vmms die while postcopy is paused: the destination ends, the source learns it at its recovery, across a migd restart"
pc_pair y z 0 1000 --max-bandwidth 1M --channels 1
y_pid=$SRC_PID z_pid=$DST_PID
migctl pause z >/dev/null || fail "pause z"
wait_until 30 both_paused y z || fail "pause: y $(job_get y state), z $(job_get z state)"
kill -KILL "$y_pid" "$z_pid"
wait_job_final z
said z "vmm z closed its connection: it quit or died, and the guest with it: nothing to recover" ||
	fail "z: $(job_get z state): $(job_get z error)"
wait_until 20 said y "vmm y closed its connection (it quit or died): this worker now holds the only copy" ||
	fail "y: $(job_get y state): $(job_get y error)"
job_is y postcopy_paused || fail "y: $(job_get y state): $(job_get y error)"
# z's migd answers y's hello on z's address: the job can never recover;
# a migd started again does too (before, a restart forgot it, and y's
# recoveries met "Connection refused" for good).  y's paused worker
# goes on without migd, and the next one adopts it.
stop_migd
start_migd
grep -q "^migd: z: answers its source on $ADDR again that the job can never recover (restored)$" \
	"$RUNDIR/migd.log" || fail "z's address not restored: $(cat "$RUNDIR/migd.log")"
wait_until 20 job_is y postcopy_paused || fail "y not adopted: $(migctl list)"
migctl recover y "$ADDR" >/dev/null || fail "recover y"
never() { [ "$(job_get y unrecoverable)" = true ]; }
wait_until 30 never || fail "y: $(migctl --json status y)"
migctl status y | grep -q "^  next  \|keep this vmm" && fail "y: $(migctl status y)"
# (not "vmm y keeps the guest as it was at the switch": it is gone)
said y "this job can never recover.  'migctl cancel y --force' ends it; vmm y had quit or died too: the guest is lost" ||
	fail "y: $(job_get y error)"
echo "ok: y: $(job_get y error)"
# A plain cancel names the way out (before: "recover the job").
out=$(migctl cancel y 2>&1) && fail "a plain cancel of y was taken: $out"
case $out in *"y can never recover (its error says why): cancel it with --force") ;;
*) fail "cancel y: $out" ;; esac
migctl cancel y --force --wait >/dev/null || fail "cancel y --force"
said y "vmm y had closed its connection (it quit or died), and the guest's remaining pages, which only this job held since, end with it: the destination can never get them" ||
	fail "y: $(job_get y state): $(job_get y error)"
echo "ok: y: $(job_get y state): $(job_get y error)"

note "a source vmm stopped in postcopy: the job completes, and says the vmm did not take the completed move's mark"
# (vmm-call-short: its SetMoved gives up after 3 s, not 30)  Before, only
# the log said so, and the vmm, still marked as holding pages the
# destination lacks, refused a plain quit for no reason anyone was told.
stop_migd
start_migd TERN_FAULT=vmm-call-short
pc_pair q2 q3 0 1000 --max-bandwidth 4M --channels 1
q2_pid=$SRC_PID
kill -STOP "$q2_pid"
migctl tune q2 --max-bandwidth unlimited >/dev/null || { kill -CONT "$q2_pid"; fail "tune q2"; }
out=$(migctl --json status q2 --watch)
kill -CONT "$q2_pid"
postcopy_done q2 q3 "$out"
said q2 "vmm q2 did not take the mark of a completed move: it still says that it holds pages the destination lacks, which it does not ('vmmctl quit q2 --force' quits it)" ||
	fail "q2: $(job_get q2 error)"
echo "ok: q2: $(job_get q2 error)"

note "an empty migd.state is said to be empty; only then does a status of no job hint that one may come back"
# (operator round 18) Before, an empty file was "version 0, where this
# migd reads 1", and every such status in a migd's first 6 s said "a
# job past its postcopy switch that an earlier migd left may not be back
# yet", though the file had named every such job.
stop_migd
start_migd
err=$(migctl status nosuch 2>&1) && fail "status of no job: $err"
[ "$err" = "migctl: no migration job for nosuch" ] || fail "status after a clean restart: $err"
stop_migd
: >"$RUNDIR/migd.state"
start_migd
grep -q "migd.state: it is empty; kept as $RUNDIR/migd.state.bad" "$RUNDIR/migd.log" ||
	fail "empty migd.state: $(tail -n 3 "$RUNDIR/migd.log")"
err=$(migctl status nosuch 2>&1) && fail "status of no job: $err"
case $err in "migctl: no migration job for nosuch (migd started "*" ms ago: a job past its postcopy switch that an earlier migd left may not be back yet; ask again in a few seconds)") ;;
*) fail "status with migd.state lost: $err" ;; esac
echo "ok: $err"
