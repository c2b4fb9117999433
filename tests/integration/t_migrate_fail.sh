#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Every way a precopy migration can fail leaves the source guest running
# with its memory intact, makes the destination vmm drop what it got, keeps
# migd serving, and says what happened; then the migration can simply be
# run again.  A destination vmm with another vCPU count (refused before
# any page), token mismatch, garbage on the port (and connections that
# say nothing, which must delay nobody), a second source while a job
# runs, cancel (on either host: the source says the destination
# cancelled), the destination worker killed, the source worker killed
# right after it stopped the VM
# (migd resumes it, unless its operator had paused it), and right before
# Go (migd must not), and the destination vmm failing to resume after
# Go (discarded there: the source resumes).  Also Settle
# answered before the pages arrived, as over a slow link, a postcopy
# switch that miscounts a channel's pages, and migd itself killed; and a
# source vmm that hands over memfds it could truncate under the worker.
. "$(dirname "$0")/lib.sh"
need_kvm
start_migd TERN_FAULT="${TERN_FAULT_OVERRIDE:-}"

start_vmm s --memory 128M --test-guest dirty --guest-rate 50000 --heartbeat 100
wait_pass s 0 2
start_vmm d --memory 128M --incoming

note "a destination vmm with another vCPU count: refused at connect, nothing sent"
# Once found only by LoadState, after the whole precopy and with the
# source guest paused.
start_vmm v2 --memory 128M --vcpus 2 --incoming
incoming v2
out=$(migctl migrate s "$ADDR" --token "$TOKEN" --wait 2>&1) &&
	fail "migrated a guest of 1 vCPU into a vmm of 2"
echo "$out"
want="the source's guest has 1 vCPU, vmm v2 here has 2 (start the destination vmm with --vcpus 1)"
case $out in *"the destination refused: $want"*) ;;
*) fail "the error does not name both counts and the fix: $out" ;; esac
[ "$(job_get s pages_sent)" = 0 ] || fail "pages were sent: $(migctl --json status s)"
[ "$(job_get s downtime_us)" = 0 ] || fail "the source paused: $(migctl --json status s)"
job_get s error | grep -q "the source VM kept running" || fail "source: $(job_get s error)"
source_fine s
wait_job_final v2
[ "$(job_get v2 state)" = failed ] || fail "the destination job is $(job_get v2 state)"
job_get v2 error | grep -qF "$want" || fail "destination: $(job_get v2 error)"
[ "$(job_get v2 pages_sent)" = 0 ] || fail "pages came: $(migctl --json status v2)"
dest_fresh v2
echo "ok: $want"
vmmctl quit v2 >/dev/null

note "a destination vmm with another RAM size: refused at connect, with the fix"
start_vmm m64 --memory 64M --incoming
incoming m64
out=$(migctl migrate s "$ADDR" --token "$TOKEN" --wait 2>&1) &&
	fail "migrated a guest of 128 MiB into a vmm of 64 MiB"
want="the source's guest has 128.0 MiB of RAM in 1 region, vmm m64 here has 64.0 MiB in 1 (start the destination vmm with --memory 128M)"
case $out in *"the destination refused: $want"*) ;;
*) fail "the error does not name both sizes and the fix: $out" ;; esac
[ "$(job_get s pages_sent)" = 0 ] || fail "pages were sent: $(migctl --json status s)"
source_fine s
wait_job_final m64
dest_fresh m64
echo "ok: $want"
vmmctl quit m64 >/dev/null

note "a source vmm that hands over unsealed memfds: the job fails, migd serves on"
# A fake source vmm (itest_pagepeer fakesrc) answers DirtyStart (dirty)
# or GetRam (ram) with a memfd not sealed against shrinking, and
# truncates it at the first DirtySync.  Before, the worker mapped it
# anyway and died of SIGBUS there ("worker died: killed by signal 7").
start_vmm fd --memory 4M --incoming
for mode in dirty ram; do
	v=fs$mode
	"$TESTS/itest_pagepeer" "$RUNDIR" fakesrc $v $mode >"$RUNDIR/$v.log" 2>&1 &
	fake=$!
	PIDS+=("$fake")
	wait_until 10 grep -q ready "$RUNDIR/$v.log" || fail "$v: $(cat "$RUNDIR/$v.log")"
	incoming fd
	out=$(migctl migrate $v "$ADDR" --token "$TOKEN" --wait 2>&1) &&
		fail "migrated from a vmm whose $mode memfd is unsealed"
	echo "$out"
	want="its dirty bitmap is not sealed against shrinking (F_SEAL_SHRINK)"
	[ $mode = ram ] && want="its memfd of region 0 is not sealed against shrinking (F_SEAL_SHRINK)"
	want="vmm $v: $want"
	[ $mode = ram ] && want="cannot map the guest RAM of $want"
	case $out in *"$want"*) ;; *) fail "$v: the error lacks '$want'" ;; esac
	kill -0 "$MIGD_PID" || fail "migd died"
	# The RAM is refused before the destination is dialled: that job waits.
	job_is fd waiting && migctl cancel fd --wait >/dev/null
	wait_job_final fd
	dest_fresh fd
	kill "$fake"
done
vmmctl quit fd >/dev/null

note "token mismatch"
incoming d
bad=$(printf '%s' "$TOKEN" | tr '0-9a-f' '1-9a-f0')
out=$(migctl migrate s "$ADDR" --token "$bad" 2>&1) && fail "migrated with a wrong token"
echo "$out"
echo "$out" | grep -q "token mismatch" || fail "the error does not name the token"
source_fine s
[ "$(job_get d state)" = waiting ] || fail "the destination job stopped waiting"
job_get d error | grep -q "token mismatch (still waiting)" || fail "dest status"

note "garbage on the destination port"
port=${ADDR##*:}
head -c 4096 /dev/urandom >"$RUNDIR/junk"
exec 3<>"/dev/tcp/127.0.0.1/$port" && cat "$RUNDIR/junk" >&3; exec 3>&-
wait_until 20 sh -c "'$BIN/migctl' --rundir '$RUNDIR' --json status d | grep -q 'not a tern migration stream'" ||
	fail "garbage was not noted: $(migctl --json status d)"
[ "$(job_get d state)" = waiting ] || fail "garbage ended the destination job"
# Anyone who reaches the port can be turned away as often as they like:
# the log takes a few of each 10 s, then counts the rest (said at the end).
for i in $(seq 20); do
	exec 3<>"/dev/tcp/127.0.0.1/$port" && cat "$RUNDIR/junk" >&3; exec 3>&-
done
# Three connections that never say hello, open while the source comes:
# each may take 5 s to be turned away, but must delay nobody (read one
# after the other, they held the source's hello past its 10 s).
exec 4<>"/dev/tcp/127.0.0.1/$port" 5<>"/dev/tcp/127.0.0.1/$port" 6<>"/dev/tcp/127.0.0.1/$port"
migctl migrate s "$ADDR" --token "$TOKEN" --wait >/dev/null ||
	fail "migrate after garbage, with silent connections open"
exec 4>&- 5>&- 6>&-
vmmctl check d || fail "d after the migration"
echo "ok: the job went on waiting and then worked, silent connections beside it"
wait_until 20 grep -q 'migd\[d/in\]: refused [0-9]* more connection' "$RUNDIR/migd.log" ||
	fail "no count of the refusals not logged"
logged=$(grep -c 'migd\[d/in\]: refused a connection' "$RUNDIR/migd.log")
counted=$(awk '/migd\[d\/in\]: refused [0-9]+ more connection/ { n += $3 } END { print n + 0 }' \
	"$RUNDIR/migd.log")
[ "$counted" -gt 0 ] && [ "$logged" -lt 22 ] && [ $((logged + counted)) -ge 22 ] ||
	fail "22 refusals or more: $logged logged, $counted counted"
echo "ok: $((logged + counted)) refusals, $logged of them logged one by one"
# d now runs the guest; move it back to a fresh s2 for the next cases.
start_vmm s2 --memory 128M --incoming
incoming s2
migctl migrate d "$ADDR" --token "$TOKEN" --wait >/dev/null || fail "migrate back"
vmmctl quit d >/dev/null
start_vmm d2 --memory 128M --incoming

note "cancel while precopy runs"
incoming d2
migctl migrate s2 "$ADDR" --token "$TOKEN" --max-bandwidth 16M --detach >/dev/null ||
	fail "detached migrate"
wait_until 30 job_is s2 active || fail "the job never became active"
# Meanwhile another source comes to the same port: refused at once, by
# name (it used to wait unanswered until its own 10 s timeout).
start_vmm z --memory 16M --test-guest dirty --heartbeat 100
out=$(migctl migrate z "$ADDR" --token "$TOKEN" --wait 2>&1) && fail "z migrated into a busy job"
echo "$out" | grep -q "refused the main connection: it is busy with another migration" ||
	fail "a second source: $out"
vmm_is z running || fail "z is $(state_of z)"
job_is d2 active || fail "d2 is $(job_get d2 state) after a second source"
echo "ok: a second source: $(echo "$out" | grep refused)"
vmmctl quit z >/dev/null
rounds=$(job_get s2 rounds)
migctl cancel s2 >/dev/null || fail cancel
wait_job_final s2
[ "$(job_get s2 state)" = cancelled ] || fail "state $(job_get s2 state)"
job_get s2 error | grep -q "cancelled; the source VM kept running" ||
	fail "error: $(job_get s2 error)"
# Cut short in round 1 (16 MB/s, 128 MiB): what it had no time for is
# neither skipped as holes nor gone from what remains (before: all of it
# "skipped", and all of RAM "remaining").
js=$(migctl --json status s2)
sk=$(echo "$js" | jget skipped_pages) sent=$(echo "$js" | jget pages_sent)
rem=$(echo "$js" | jget remaining_bytes) total=$(echo "$js" | jget total_bytes)
if [ "$rounds" = 0 ]; then
	[ $((sk + sent)) -lt $((total / 4096)) ] && [ "$rem" -gt 0 ] &&
		[ "$rem" -lt "$total" ] && [ $(((sk + sent) * 4096 + rem)) -ge "$total" ] ||
		fail "s2, cancelled in round 1: $sent sent, $sk skipped, $rem bytes remaining of $total: $js"
	echo "ok: s2 cancelled in round 1: $sent sent, $sk holes, $rem bytes remaining"
else
	not_tried "the figures of a round 1 cut short: s2 was in round $((rounds + 1)) at the cancel"
fi
source_fine s2
wait_job_final d2
[ "$(job_get d2 state)" = failed ] || fail "the destination job is $(job_get d2 state)"
# The source says why before it closes the connections, and that is the
# cause, whatever failed here first as it closed them (it was "ram
# channel 3: the source closed the connection mid-stream; the source
# said: cancelled").
[ "$(job_get d2 error)" = "the source cancelled the migration; the destination vmm dropped what it received" ] ||
	fail "the destination does not say the source cancelled: $(job_get d2 error)"
echo "ok: destination: $(job_get d2 error)"
dest_fresh d2

note "cancel on the destination while precopy runs"
# The destination says so before it closes the connections: the source
# used to fail with only "ram channel 0: send: Broken pipe".
incoming d2
migctl migrate s2 "$ADDR" --token "$TOKEN" --max-bandwidth 16M --detach >/dev/null ||
	fail "detached migrate"
wait_until 30 job_is d2 active || fail "the destination job never became active"
migctl cancel d2 >/dev/null || fail "cancel d2"
wait_job_final s2
wait_job_final d2
[ "$(job_get d2 state)" = cancelled ] || fail "the destination job is $(job_get d2 state)"
[ "$(job_get s2 state)" = failed ] || fail "the source job is $(job_get s2 state)"
[ "$(job_get s2 error)" = "the destination cancelled the migration; the source VM kept running" ] ||
	fail "the source does not say the destination cancelled: $(job_get s2 error)"
echo "ok: source: $(job_get s2 error)"
source_fine s2
dest_fresh d2
good_migration s2 d2

note "the destination worker is killed during precopy (into vmm --prealloc)"
# Preallocated: emptied by the failure, then allocated whole again.
start_vmm e --memory 128M --incoming --prealloc
incoming e
migctl migrate d2 "$ADDR" --token "$TOKEN" --max-bandwidth 16M --detach >/dev/null
wait_until 30 job_is d2 active || fail "not active"
wait_until 30 job_is e active || fail "destination not active"
kill_worker KILL e
wait_job_final d2
[ "$(job_get d2 state)" = failed ] || fail "source job is $(job_get d2 state)"
echo "source said: $(job_get d2 error)"
# Not only "ram channel N: send: Broken pipe": what that means.
job_get d2 error | grep -Eq "the destination (closed the connection without a word: its worker died or was killed|reset the connection: its worker died)" ||
	fail "the source does not say the destination's worker died: $(job_get d2 error)"
job_get e error | grep -q "killed by signal 9" || fail "dest: $(job_get e error)"
source_fine d2
dest_fresh e
kib_is() { [ "$(memfd_kib "$1")" = "$2" ]; }
wait_until 30 kib_is "$(pid_of e)" 131072 ||
	fail "e: $(memfd_kib "$(pid_of e)") KiB of its 128 MiB allocated after the discard"
echo "ok: e: allocated whole again after the discard"
good_migration d2 e

note "the connection is cut (sockets destroyed) while another job goes on"
if ss_kill_works; then
	start_vmm other --memory 128M --test-guest dirty --guest-rate 2000 \
		--guest-fast-first-pass --guest-range 8M --heartbeat 100
	start_vmm other2 --memory 128M --incoming
	wait_pass other 0 2
	incoming other2
	migctl migrate other "$ADDR" --token "$TOKEN" --max-bandwidth 24M --detach >/dev/null
	start_vmm f --memory 128M --incoming
	incoming f
	port=${ADDR##*:}
	migctl migrate e "$ADDR" --token "$TOKEN" --max-bandwidth 16M --detach >/dev/null
	wait_until 30 job_is e active || fail "not active"
	ss_kill "( src 127.0.0.1:$port or dst 127.0.0.1:$port )" || fail "ss -K"
	wait_job_final e
	[ "$(job_get e state)" = failed ] || fail "source job is $(job_get e state)"
	echo "source said: $(job_get e error)"
	job_get e error | grep -q "the source VM kept running" || fail "$(job_get e error)"
	source_fine e
	wait_job_final f
	job_get f error | grep -q "dropped what it received" || fail "$(job_get f error)"
	dest_fresh f
	wait_job_final other
	[ "$(job_get other state)" = completed ] || fail "the other job: $(job_get other error)"
	vmmctl check other2 || fail "the other job's guest"
	echo "ok: the other job completed meanwhile"
	good_migration e f
else
	echo "$SS_KILL_WHY: skipped"
fi

note "the source worker dies right after it stopped the VM: migd resumes it"
start_vmm x --memory 128M --test-guest dirty --guest-rate 50000 --heartbeat 100
wait_pass x 0 2
start_vmm y --memory 128M --incoming
incoming y
stop_migd
start_migd TERN_FAULT=source-after-stop
incoming y
out=$(migctl migrate x "$ADDR" --token "$TOKEN" --wait 2>&1) && fail "survived the fault"
echo "$out"
job_get x error | grep -q "killed by signal 9" || fail "error: $(job_get x error)"
job_get x error | grep -q "the source VM was resumed" || fail "not resumed: $(job_get x error)"
source_fine x
wait_job_final y
dest_fresh y

note "... but a VM its operator had paused stays paused"
vmmctl stop x >/dev/null || fail "stop x"
incoming y
migctl migrate x "$ADDR" --token "$TOKEN" --wait >/dev/null 2>&1 && fail "survived the fault"
job_get x error | grep -q "killed by signal 9" || fail "error: $(job_get x error)"
job_get x error | grep -q "stays paused, as it was when the job stopped it" ||
	fail "error: $(job_get x error)"
[ "$(state_of x)" = paused ] || fail "migd resumed x, which its operator had paused"
echo "ok: $(job_get x error)"
# operator_resumes: x, left paused, is resumed by its operator and must be
# intact; y's job ends and y is emptied.
operator_resumes() {
	vmmctl cont x >/dev/null || fail "cont x"
	source_fine x
	wait_job_final y
	dest_fresh y
}
operator_resumes

note "... while one paused at the start and resumed during precopy is resumed"
# It ran when the job stopped it: the worker told migd so only when the
# Stop found it paused, and migd left it paused after the worker died.
vmmctl stop x >/dev/null || fail "stop x"
incoming y
migrate_active x 2M
vmmctl cont x >/dev/null || fail "cont x"
migctl tune x --max-bandwidth unlimited >/dev/null || fail "tune x"
wait_job_final x
job_get x error | grep -q "killed by signal 9; the source VM was resumed" ||
	fail "error: $(job_get x error)"
source_fine x
wait_job_final y
dest_fresh y
echo "ok: $(job_get x error)"

note "... and so does one its operator pauses during precopy, whether the job is cancelled or its worker dies"
# The job never paused it: migd must not resume it (it did, since it
# looked only at whether the VM ran when the job began).
for how in cancel kill; do
	incoming y
	migctl migrate x "$ADDR" --token "$TOKEN" --max-bandwidth 8M --detach >/dev/null ||
		fail "migrate x ($how)"
	wait_until 30 job_is x active || fail "x ($how): $(job_get x state)"
	vmmctl stop x >/dev/null || fail "stop x ($how)"
	if [ $how = cancel ]; then
		migctl cancel x >/dev/null || fail "cancel x"
	else
		kill_worker KILL x
	fi
	wait_job_final x
	[ "$(state_of x)" = paused ] || fail "migd resumed x, which its operator paused ($how)"
	echo "ok ($how): x stays paused: $(job_get x error)"
	operator_resumes
	case $how in
	cancel) words="the job did not pause the source VM, which stays paused" ;;
	kill) words="the source VM stays paused, as the job had not paused it" ;;
	esac
	job_get x error | grep -q "$words" || fail "x ($how): $(job_get x error)"
done

note "the source worker dies while its vmm does not answer: migd answers meanwhile"
# migd's clean-up at z's vmm (resume, logging off) runs in a thread: it
# waits on the stopped vmm while the control service goes on.  Until it
# ends, the job shows its worker's death but no final state, and z takes
# no new job.  (It once ran on the event loop, which held every caller
# until the vmm answered or 3 s passed.)
start_vmm z --memory 128M --test-guest dirty --guest-rate 50000 --heartbeat 100
wait_pass z 0 2
incoming y
migctl migrate z "$ADDR" --token "$TOKEN" --max-bandwidth 8M --detach >/dev/null ||
	fail "migrate z"
wait_until 30 job_is z active || fail "z: $(job_get z state)"
wpid=$(job_get z worker_pid)
kill -STOP "$PID_z"
kill -KILL "$wpid"
tidying() {
	local s
	s=$(migctl --json status z) || return 1
	case $(echo "$s" | jget state) in completed|failed|cancelled) return 1 ;; esac
	echo "$s" | jget error | grep -q "worker died: killed by signal 9"
}
if ! wait_until 10 tidying; then
	kill -CONT "$PID_z"
	fail "no answer from migd while it cleaned up: $(job_get z state): $(job_get z error)"
fi
err=$(migctl migrate z "$ADDR" --token "$TOKEN" 2>&1)
rc=$?
kill -CONT "$PID_z"
[ $rc = 0 ] && fail "a new job for z was taken during the clean-up"
case $err in *"cleaning up at its vmm"*) echo "ok: $err" ;; *) fail "second job: $err" ;; esac
wait_job_final z
echo "ok: $(job_get z error)"
[ "$(job_get z state)" = failed ] || fail "z: $(job_get z state)"
# Running (the job had not paused it), with logging and throttle off, if
# the vmm answered within the clean-up's 3 s; else the job says so.
if [ "$(state_of z)" = running ]; then
	job_get z error | grep -q "the source VM is running" || fail "z: $(job_get z error)"
	source_fine z
else
	job_get z error | grep -q "could not recover the source VM" ||
		fail "z is $(state_of z): $(job_get z error)"
fi
vmmctl quit z >/dev/null
wait_job_final y
dest_fresh y

note "the source worker dies after the switch was recorded: the VM stays paused"
stop_migd
start_migd TERN_FAULT=source-before-go
incoming y
migctl migrate x "$ADDR" --token "$TOKEN" --wait >/dev/null 2>&1 && fail "survived"
job_get x error | grep -q "outcome unknown" || fail "error: $(job_get x error)"
[ "$(state_of x)" = paused ] || fail "x must stay paused once the switch was recorded"
# The worker died before it marked x: migd's clean-up did.
vmmctl status x | grep -q "moved to tcp:.*not confirmed: its worker died) (this copy is stale)" ||
	fail "x is not marked as moved: $(vmmctl status x)"
echo "ok: $(job_get x error)"

# failed_move FAULT SRC DST: migd anew with TERN_FAULT=FAULT; SRC moves
# to a new incoming DST of 64 MiB over 2 channels and must fail; back once
# DST's job has ended.
failed_move() {
	stop_migd
	start_migd TERN_FAULT="$1"
	start_vmm "$3" --memory 64M --incoming
	incoming "$3"
	migctl migrate "$2" "$ADDR" --token "$TOKEN" --channels 2 --wait >/dev/null 2>&1 &&
		fail "$2: completed despite $1"
	wait_job_final "$3"
}

note "a source keeps a ram channel open after the device state: the destination gives up"
# Channel 0 gets no end, only NOPs, and the source waits for Ready a
# minute more than it would.  The destination must not wait for ever:
# 10 s without an end or a page, then it fails the job, says why, and
# the source, told, resumes its guest.
start_vmm ka --memory 64M --test-guest dirty --guest-rate 20000 --heartbeat 100
wait_pass ka 0 2
failed_move source-channel-no-end ka kb
want="ram channel 0: no end and no page for 10 s after the device state"
job_get kb error | grep -q "$want" || fail "kb: $(job_get kb error)"
job_get ka error | grep -q "the destination failed: $want" || fail "ka: $(job_get ka error)"
echo "ok: destination: $(job_get kb error)"
source_fine ka
dest_fresh kb
vmmctl quit kb >/dev/null

note "the destination vmm does not resume after Go: discarded there, the source resumes"
# Past Go the source never resumes on its own; only a destination that
# has discarded the guest (so it can never run there) may tell it to.
failed_move dest-cont-fails ka kc
job_get kc error | grep -q "the vmm did not resume the guest: Cont not sent" ||
	fail "kc: $(job_get kc error)"
job_get ka error | grep -q "it is discarded here; the guest resumes here" ||
	fail "ka: $(job_get ka error)"
[ "$(job_get ka switched)" != true ] || fail "ka's job still says switched"
echo "ok: source: $(job_get ka error)"
source_fine ka
dest_fresh kc
vmmctl quit ka >/dev/null; vmmctl quit kc >/dev/null

note "Settle answered at once, as over a slow link: what is on its way counts as still to send"
stop_migd
start_migd TERN_FAULT=dest-settle-at-once
start_vmm p --memory 128M --test-guest dirty --guest-rate 50000 --heartbeat 100
wait_pass p 0 2
start_vmm q --memory 128M --incoming
incoming q
migctl migrate p "$ADDR" --token "$TOKEN" --channels 2 --wait >/dev/null ||
	fail "the migration failed: $(job_get p error)"
vmmctl check q || fail "q after the migration"
grep "still on their way" "$RUNDIR/migd.log" || fail "no Settle answer was logged"
wait_progress q 0
echo "ok: completed, memory intact, the guest runs on"

note "migd held up while both workers finish: their final reports still count"
# More reports (one each 200 ms) than migd reads at a time pile up
# while it is stopped; the last of them says 'completed'.
# Paused, so that 64 MiB at 6 MB/s (11 s) is all there is to send.
start_vmm h --memory 64M --test-guest dirty --guest-rate 20000 --heartbeat 100
wait_pass h 0 2
vmmctl stop h >/dev/null || fail "stop h"
start_vmm h2 --memory 64M --incoming
incoming h2
# A source vmm stopped by a signal: said at once (before, 30 s of a
# Status call, then "Connection timed out"), the destination untouched.
kill -STOP "$(pid_of h)"
err=$(migctl migrate h "$ADDR" --token "$TOKEN" 2>&1) &&
	{ kill -CONT "$(pid_of h)"; fail "migrate of a stopped vmm: $err"; }
kill -CONT "$(pid_of h)"
case $err in *"vmm h, pid $(pid_of h), is stopped by a signal or a debugger: 'kill -CONT $(pid_of h)' resumes it; not migrated now (nothing was sent to $ADDR)"*) ;;
*) fail "migrate of a stopped vmm: $err" ;; esac
echo "ok: $err"
migctl migrate h "$ADDR" --token "$TOKEN" --max-bandwidth 6M --detach >/dev/null ||
	fail "migrate h"
wait_until 30 job_is h active || fail "h: $(job_get h state)"
spid=$(job_get h worker_pid) dpid=$(job_get h2 worker_pid)
# A wait for the job's end hears nothing while the job's worker is
# stopped: it says so, and gives up after --timeout of silence.
kill -STOP "$spid"
# A plain status says whose figures it shows (before, frozen ones, as if
# the job went on).
worker_said() { migctl status h | grep -q "^  worker        the worker, pid $spid, is stopped by a signal or a debugger: 'kill -CONT $spid' resumes it; the figures above are its last report's$"; }
wait_until 10 worker_said ||
	{ kill -CONT "$spid"; fail "status h, its worker stopped: $(migctl status h)"; }
# So do list and a tune (the tune waits for the worker; before, neither
# said a thing).
stopped="its worker, pid $spid, is stopped by a signal or a debugger: 'kill -CONT $spid' resumes it"
migctl list | grep -qxF "  $stopped" || { kill -CONT "$spid"; fail "list: $(migctl list)"; }
err=$(migctl tune h --max-bandwidth 6M 2>&1 >/dev/null) || { kill -CONT "$spid"; fail "tune h: $err"; }
[ "$err" = "migctl: h: $stopped; the job does nothing until then" ] ||
	{ kill -CONT "$spid"; fail "tune h, its worker stopped: $err"; }
"$BIN/migctl" --rundir "$RUNDIR" -t 2 status h --watch >/dev/null 2>"$RUNDIR/watchw.err" & watchw=$!
wait_exit "$watchw" && { kill -CONT "$spid"; fail "a watch of a stopped worker did not give up"; }
kill -CONT "$spid"
grep "nothing from migd for 2 s while this waited: the job's worker, pid $spid, is stopped" \
	"$RUNDIR/watchw.err" || fail "watchw: $(cat "$RUNDIR/watchw.err")"
grep -q "the job is left as it is" "$RUNDIR/watchw.err" || fail "watchw: $(cat "$RUNDIR/watchw.err")"
kill -STOP "$MIGD_PID"
# So does one when migd is stopped, which has not read its request: said
# at 5 s, given up at its --timeout of 6.  One with a longer --timeout
# hears migd speak again, and sees the job's end.
"$BIN/migctl" --rundir "$RUNDIR" -t 6 status h --watch >/dev/null 2>"$RUNDIR/watch6.err" & watch6=$!
"$BIN/migctl" --rundir "$RUNDIR" -t 600 status h --watch >/dev/null 2>"$RUNDIR/watch600.err" & watch600=$!
zombie() { [ "$(stat_field "/proc/$1/stat" 3)" = Z ]; }
wait_until 120 zombie "$spid" && wait_until 30 zombie "$dpid" ||
	{ kill -CONT "$MIGD_PID"; fail "the workers did not finish while migd was stopped"; }
wait_exit "$watch6" && { kill -CONT "$MIGD_PID"; fail "a watch of a stopped migd did not give up"; }
# A call that does not wait says so at its own timeout.
err=$("$BIN/migctl" --rundir "$RUNDIR" -t 1 status h 2>&1) && { kill -CONT "$MIGD_PID"; fail "status h: $err"; }
case $err in *"(the daemon, pid $MIGD_PID, is stopped by a signal or a debugger: 'kill -CONT $MIGD_PID' resumes it"*) ;;
*) kill -CONT "$MIGD_PID"; fail "status h of a stopped migd: $err" ;; esac
grep "nothing from migd for 5 s: migd, pid $MIGD_PID, is stopped" "$RUNDIR/watch6.err" &&
# (At 6 s, not at the next 5 s after the notice: 10.)
grep "nothing from migd for [6-9] s while this waited: migd, pid $MIGD_PID, is stopped.*migd has not answered the request, and may still carry it out" \
	"$RUNDIR/watch6.err" || { kill -CONT "$MIGD_PID"; fail "watch6: $(cat "$RUNDIR/watch6.err")"; }
wait_until 10 grep -q "nothing from migd for 5 s: migd, pid $MIGD_PID, is stopped" \
	"$RUNDIR/watch600.err" || { kill -CONT "$MIGD_PID"; fail "watch600: $(cat "$RUNDIR/watch600.err")"; }
kill -CONT "$MIGD_PID"
wait_exit "$watch600" || fail "the watch after migd's return: $(cat "$RUNDIR/watch600.err")"
grep "migd speaks again" "$RUNDIR/watch600.err" || fail "watch600: $(cat "$RUNDIR/watch600.err")"
echo "ok: $(head -n 1 "$RUNDIR/watch600.err")"
wait_job_final h
[ "$(job_get h state)" = completed ] || fail "h: $(job_get h state): $(job_get h error)"
wait_job_final h2
[ "$(job_get h2 state)" = completed ] || fail "h2: $(job_get h2 state): $(job_get h2 error)"
[ "$(state_of h)" = paused ] || fail "the source guest is $(state_of h) after it moved, not paused"
vmmctl check h2 || fail "h2 after the migration"
echo "ok: both completed; the source guest stays paused"
vmmctl quit h >/dev/null; vmmctl quit h2 >/dev/null

note "a postcopy marker, then the device state: the destination refuses, the source runs on"
# And the worker does not resume its VM (as when Cont fails): migd does.
# The destination may read the marker before the device state or, with
# dest-marker-late, after it: the same refusal either way.
for late in "" ,dest-marker-late; do
	stop_migd
	start_migd TERN_FAULT=source-marker-then-device,source-no-cont$late
	start_vmm q2 --memory 128M --incoming
	incoming q2
	migctl migrate q "$ADDR" --token "$TOKEN" --channels 2 --wait >/dev/null 2>&1 &&
		fail "a marker before the device state was accepted"
	wait_job_final q2
	[ "$(job_get q2 state)" = failed ] || fail "the destination job is $(job_get q2 state)"
	job_get q2 error | grep -q "device state after a postcopy marker on 1 ram channel" ||
		fail "destination${late:+ (${late#,})}: $(job_get q2 error)"
	echo "ok${late:+ (${late#,})}: $(job_get q2 error)"
	job_get q error | grep -q "the source VM was resumed" || fail "source: $(job_get q error)"
	echo "ok: $(job_get q error)"
	source_fine q
	dest_fresh q2
	vmmctl quit q2 >/dev/null; wait_exit "$PID_q2" || fail "q2 exited with $?"
done

# refused_switch FAULTS: migd anew with TERN_FAULT=FAULTS; q migrates
# to a new incoming q2 and is told to switch to postcopy; back once q2's
# job ended, failed.  after_refusal: q's job failed too, q runs on
# intact, q2 is emptied, then quit.
refused_switch() {
	stop_migd
	start_migd TERN_FAULT="$1"
	start_vmm q2 --memory 128M --incoming
	incoming q2
	migctl migrate q "$ADDR" --token "$TOKEN" --channels 2 --max-bandwidth 64M \
		--detach >/dev/null || fail "migrate q"
	wait_until 30 job_is q active || fail "q: $(migctl status q)"
	migctl postcopy q >/dev/null || fail "postcopy q"
	wait_job_final q2
	[ "$(job_get q2 state)" = failed ] || fail "the destination job is $(job_get q2 state)"
}
after_refusal() {
	wait_job_final q
	[ "$(job_get q state)" = failed ] || fail "the source job is $(job_get q state)"
	source_fine q
	dest_fresh q2
	vmmctl quit q2 >/dev/null; wait_exit "$PID_q2" || fail "q2 exited with $?"
}

# A switch needs faultd on the destination host: without it, the
# destination says at the hello that postcopy cannot be, and no switch
# is ever tried.
if [ -c /dev/userfaultfd ] && [ -r /dev/userfaultfd ]; then
	start_faultd
	note "a postcopy switch that miscounts a channel's pages: refused, the source runs on"
	# With dest-marker-late the channel is still short of its marker when it
	# has carried more than the switch says: refused at once, by that name;
	# otherwise either check may see it first.
	for late in "" ,dest-marker-late; do
		refused_switch source-discard-undercount$late
		if [ -n "$late" ]; then
			words="ram channel 0 carried more pages before the switch than the"
		else
			words="ram channel 0 carried"
		fi
		job_get q2 error | grep -q "$words" ||
			fail "destination${late:+ (${late#,})}: $(job_get q2 error)"
		echo "ok${late:+ (${late#,})}: $(job_get q2 error)"
		after_refusal
	done

	note "a ram channel that keeps sending keepalives but never its marker: the switch gives up"
	# Channel 0 moves bytes (keepalives every 2 s), so its own 20 s stall
	# limit never fires; the switch's wait for pages does, after 25 s (3 s
	# with dest-short-switch-stall, to keep the test short).  The source
	# had not stopped its guest yet.
	refused_switch source-marker-withheld,dest-short-switch-stall
	echo "destination: $(job_get q2 error)"
	job_get q2 error | grep -q "only 1 of 2 ram channels reached the postcopy switch, and no page came for 3 s" ||
		fail "destination: $(job_get q2 error)"
	wait_job_final q
	echo "source: $(job_get q error)"
	job_get q error | grep -q "the source VM kept running" || fail "source: $(job_get q error)"
	after_refusal
	kill -TERM "$FAULTD_PID"; wait_exit "$FAULTD_PID" || fail "faultd exited with $?"
else
	not_tried "the postcopy switch's refusals: /dev/userfaultfd is missing, so no faultd"
fi

note "a cancel on the destination between Go and its vmm's Cont is refused"
# Before, it was taken there: the source heard 'the destination
# cancelled the migration' and stayed paused, while the guest ran on
# the destination.
stop_migd
start_migd TERN_FAULT=dest-slow-cont
start_vmm gs --memory 64M --test-guest dirty --guest-rate 2000 --heartbeat 100
wait_pass gs 0 1
start_vmm gd --memory 64M --incoming
incoming gd
# gd's Cont waits until its worker has looked at the cancel (migd(8)):
# on a loaded host, 2 s can end before the cancel comes.
: >"$RUNDIR/dest-slow-cont"
migctl migrate gs "$ADDR" --token "$TOKEN" --detach >/dev/null || fail "migrate gs"
wait_until 30 grep -q "migd\[gd/in\]: TERN_FAULT: Go came" "$RUNDIR/migd.log" ||
	fail "gd: no Go: $(job_get gd state): $(job_get gd error)"
# (Go came: gd reported its switch, and migd refuses the cancel; before,
# it took it, and the worker dropped it)
err=$(migctl cancel gd 2>&1) && fail "a cancel after Go was taken: $err"
case $err in *"gd has switched: the destination was told to resume the guest"*) ;;
*) fail "cancel gd: $err" ;; esac
rm "$RUNDIR/dest-slow-cont"
wait_job_final gs
[ "$(job_get gs state)" = completed ] || fail "gs: $(job_get gs state): $(job_get gs error)"
wait_job_final gd
[ "$(job_get gd state)" = completed ] || fail "gd: $(job_get gd state): $(job_get gd error)"
[ "$(state_of gd)" = running ] && [ "$(state_of gs)" = paused ] ||
	fail "gd is $(state_of gd), gs is $(state_of gs)"
vmmctl check gd || fail "gd: memory"
echo "ok: the cancel was dropped; the guest runs on gd only"

note "the stale copy left behind is refused before anything reaches the destination"
# gs is marked as moved to gd.  Before, its worker connected first and
# only the vmm's DirtyStart refused: the destination's waiting job was
# used up ("the source ended the migration"), and --detach said
# "started", exit 0.
start_vmm ge --memory 64M --incoming
incoming ge
out=$(migctl migrate gs "$ADDR" --token "$TOKEN" --detach 2>&1) &&
	fail "migrate --detach of the stale gs succeeded: $out"
case $out in *"vmm gs: the guest moved to "*": this stale copy is not migrated"*) ;;
*) fail "migrate gs: $out" ;; esac
echo "ok: $out"
# No job is left of it: gs's last job is still the one that moved it.
[ "$(job_get gs state)" = completed ] || fail "gs: $(migctl status gs)"
[ "$(state_of gs)" = paused ] || fail "gs is $(state_of gs)"
job_is ge waiting || fail "ge's job did not wait on: $(migctl status ge)"
# The job that waited takes the guest from where it runs.
migctl migrate gd "$ADDR" --token "$TOKEN" --wait >/dev/null ||
	fail "gd -> ge into the job that waited: $(migctl status gd)"
vmmctl check ge || fail "ge after the migration"
echo "ok: ge's job waited, and took the guest from gd"

note "a learned pause part above the limit does not hold back later jobs"
# Two jobs here completed with a pause of over 2 s each (gs -> gd,
# gd -> ge: the destination waited 2 s between Go and Cont), so the
# part of the pause not for pages learned from them is above the
# default 300 ms limit.  Before, counted, it kept the next job from
# ever converging: a round every 5 ms until its timeout.
start_vmm gf --memory 64M --incoming
incoming gf
out=$(migctl migrate ge "$ADDR" --token "$TOKEN" --timeout 60 --wait 2>&1) ||
	fail "ge -> gf after two slow pauses did not complete: $out"
learned=$(job_get ge pause_fixed_learned_us)
migctl status ge | grep "learned .* from earlier jobs here: at or above the limit, not counted" ||
	fail "ge's status does not say the learned part was not counted: $(migctl status ge)"
grep -q "migd\[ge/out\]: the part of the pause not for pages learned from earlier jobs here ([0-9]* ms) is at or above the downtime limit of 300 ms: not counted" \
	"$RUNDIR/migd.log" || fail "ge's worker did not log it: $(grep 'ge/out' "$RUNDIR/migd.log" | tail -n 5)"
vmmctl check gf || fail "gf after the migration"
# (The downtime holds all of the destination's 2 s between Go and
# Cont: before, migd took it for the link's and halved it.)
echo "ok: ge -> gf completed, downtime $(job_get ge downtime_ms) ms (limit 300)"

note "set --reset forgets what earlier jobs taught about the pause"
migctl set --reset >/dev/null || fail "set --reset"
grep -q "reset: the part of the pause not for pages learned from earlier jobs is forgotten" \
	"$RUNDIR/migd.log" || fail "no word of the reset in the log"
start_vmm gh --memory 64M --incoming
incoming gh
migctl migrate gf "$ADDR" --token "$TOKEN" --detach >/dev/null || fail "migrate gf"
after=$(job_get gf pause_fixed_learned_us)
# Nothing learned since: nothing said of earlier jobs (before, the first
# guess, 5 ms, was shown as learned "from earlier jobs here").
migctl status gf | grep "learned" &&
	fail "gf still counts ${after:-nothing} us learned before the reset"
[ "${after:-0}" = 0 ] || fail "gf: $after us learned after the reset"
wait_job_final gf
[ "$(job_get gf state)" = completed ] || fail "gf: $(migctl status gf)"
echo "ok: after the reset gf counted $after us learned (before: $learned us)"
for vm in gs gd ge gf; do vmmctl quit "$vm" >/dev/null; done

note "one slow pause does not hold back the jobs after it"
# The first job's pause takes 400 ms more than its fixed part was
# guessed at; the next job, at the default 300 ms limit, still converges.
stop_migd
start_migd TERN_FAULT=source-slow-pause
for hop in "q q3" "q3 q4"; do
	set -- $hop
	start_vmm "$2" --memory 128M --incoming
	incoming "$2"
	# q's pause goes on until the cont below was tried (migd(8)): on a
	# loaded host, 400 ms can end before the cont comes.
	[ "$1" = q ] && : >"$RUNDIR/source-slow-pause"
	migctl migrate "$1" "$ADDR" --token "$TOKEN" --channels 2 --timeout 60 \
		--detach >/dev/null || fail "migrate $1"
	if [ "$1" = q ]; then
		# In the pause the job holds the VM: an operator's cont is
		# refused.  Before, it was taken, and the guest ran here and
		# there.
		wait_until 30 vmm_is q paused || fail "q never paused: $(job_get q state)"
		err=$(vmmctl cont q 2>&1) && fail "a cont in the migration's pause was taken"
		rm "$RUNDIR/source-slow-pause"
		case $err in *"a migration paused this VM for its switch"*) ;;
		*) fail "cont q: $err" ;; esac
		echo "ok: $err"
	fi
	wait_job_final "$1"
	[ "$(job_get "$1" state)" = completed ] ||
		fail "$1 -> $2 after a slow pause: $(migctl status "$1")"
	vmmctl check "$2" || fail "$2 after the migration"
	echo "ok: $1 -> $2 completed, downtime $(job_get "$1" downtime_ms) ms"
done
# Two slow pauses of two are the median, but above the 300 ms limit:
# not counted, or no job here would converge again (before, q4 -> q5
# went round until its timeout).
start_vmm q5 --memory 128M --incoming
incoming q5
out=$(migctl migrate q4 "$ADDR" --token "$TOKEN" --channels 2 --timeout 60 --wait 2>&1) ||
	fail "q4 -> q5 did not converge after two slow pauses: $out"
migctl status q4 | grep "learned .*: at or above the limit, not counted" ||
	fail "q4: $(migctl status q4)"
vmmctl check q5 || fail "q5 after the migration"
echo "ok: q4 -> q5 completed, the learned part not counted"

# slow_move SRC DST: a 128 MiB fill guest SRC moving to a new DST at
# 4 MiB/s (round 1 takes half a minute), once it is active.
slow_move() {
	start_vmm "$1" --memory 128M --test-guest fill --guest-rate 50000 --heartbeat 100
	wait_pass "$1" 0 2
	start_vmm "$2" --memory 128M --incoming
	incoming "$2"
	migctl migrate "$1" "$ADDR" --token "$TOKEN" --channels 1 --max-bandwidth 4M \
		--detach >/dev/null || fail "migrate $1"
	wait_until 30 job_is "$1" active || fail "$1: $(job_get "$1" state)"
}

note "the source vmm dies mid-round: the job stops sending and says the guest is gone"
# Before, its pages went on until the round's end (DirtySync found the
# vmm gone), and the error said the source VM kept running.
slow_move vd ve
kill -KILL "$(pid_of vd)"
wait_job_final vd
err=$(job_get vd error)
echo "$err" | grep -q "vmm vd closed its connection in round 1; the source vmm no longer answers: its guest may be gone" ||
	fail "vd: $err"
echo "$err" | grep -q "kept running" && fail "vd: $err"
wait_job_final ve
dest_fresh ve
echo "ok: $err"
vmmctl quit ve >/dev/null

note "the destination vmm quits while its job waits, or dies mid-round: the job ends then"
# Before, a waiting job went on waiting for a vmm that was gone, and a
# receiving one took all of RAM before LoadState found it gone.
start_vmm wa --memory 64M --incoming
incoming wa
vmmctl quit wa >/dev/null
wait_job_final wa
job_get wa error | grep -q "vmm wa closed its connection: it quit or died" ||
	fail "wa: $(job_get wa error)"
echo "ok: $(job_get wa error)"
slow_move vf vg
kill -KILL "$(pid_of vg)"
wait_job_final vf
err=$(job_get vf error)
echo "$err" | grep -qE "the destination (failed|said): vmm vg closed its connection: it quit or died" ||
	fail "vf: $err"
source_fine vf
echo "ok: $err"
vmmctl quit vf >/dev/null

note "migd itself is killed (SIGKILL) during precopy: its workers cancel"
# The kernel sends each worker SIGTERM when migd dies (PR_SET_PDEATHSIG);
# nobody is left to clean up after them, so they must do it themselves.
stop_migd
start_migd
vmmctl quit q4 >/dev/null
start_vmm q6 --memory 128M --incoming
incoming q6
migctl migrate q5 "$ADDR" --token "$TOKEN" --max-bandwidth 8M --detach >/dev/null ||
	fail "migrate q5"
wait_until 30 job_is q5 active || fail "q5: $(job_get q5 state)"
spid=$(job_get q5 worker_pid) dpid=$(job_get q6 worker_pid)
[ -n "$spid" ] && [ -n "$dpid" ] || fail "no worker pids: $spid, $dpid"
kill -KILL "$MIGD_PID"
gone() { ! kill -0 "$spid" 2>/dev/null && ! kill -0 "$dpid" 2>/dev/null; }
wait_until 30 gone || fail "workers $spid and $dpid outlived migd"
# The kernel's SIGTERM comes from the dead migd's pid: migd's end.
grep "not from migd" "$RUNDIR/migd.log" && fail "the kernel's SIGTERM was taken for a stray"
source_fine q5
dest_fresh q6
echo "ok: both workers ended with migd; q5 runs on, q6 was emptied"
start_migd
incoming q6
migctl migrate q5 "$ADDR" --token "$TOKEN" --wait >/dev/null || fail "q5 -> q6 after migd came back"
vmmctl check q6 || fail "q6 after the migration"
echo PASS
