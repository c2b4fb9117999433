#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# A migd or a worker that dies in the middle of a migration, with two
# "hosts" (two run directories, each with its own migd; the destination's
# runs faultd): what the other side and the operator are told, and what
# goes on without the dead process.
#  - The source's migd killed (kill -9) in postcopy-active: its worker
#    goes on pushing and serving pages, the next migd adopts it and
#    reports it completed.  Before, it cancelled itself, and the guest on
#    the destination waited for its pages for good; later, it completed,
#    but no migd knew of it.
#  - Both migds stopped in postcopy-active, and the postcopy completes
#    while neither runs: each worker lets go of the guest and waits for
#    the next migd, which shows the job completed, with its id.  Before,
#    the workers exited, and no migd ever knew how the job ended.  The
#    source's migd exits with the final report unread (migd-quit-deaf):
#    the worker, told nothing ("taken"), offers it to the next migd.
#    Before, it sat unread, and the job was lost.  The destination's
#    worker, with no migd for its whole wait (worker-end-wait-short: 3 s,
#    not 300), says so and exits.
#  - A migd restarted past a postcopy switch (stopped or killed, on
#    either host, postcopy-active or -paused): the next one adopts the
#    job, shows it with its id, recovers it, and reports its end.
#    Before, a paused worker ended with its migd, and the guest's
#    progress since the switch was lost.
#  - A migd killed in precopy: its worker still cancels (the source VM
#    runs on), and the peer hears that the migd stopped or died, not that
#    someone cancelled; its callers (status --watch, and a postcopy
#    waiting for the destination's answer) hear it too.
#  - The source's worker killed in postcopy-active: the job's error says
#    that the destination runs the guest, which pages only this vmm has,
#    and what to do.
#  - The source's migd and worker both killed in postcopy-active: the
#    next migd says the job is not back yet, then records it as of
#    unknown outcome, with what that means here.  Before, its record was
#    dropped, and status showed the VM's job before it.
#  - The destination's worker killed in postcopy-active: its job's error
#    says that the guest there can never get its missing pages, and what
#    to do (quit that vmm, cancel the source's job with --force, cont
#    --force the source's vmm), and that way out works.
#  - The destination's migd killed in precopy: the source hears why.
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
# src_migd [VAR=VALUE...]: (re)start the source host's migd, with
# those in its environment; SRC_MIGD is its pid.
src_migd() { src start_migd "$@"; SRC_MIGD=$MIGD_PID; }
src_migd

# pair SRC DST [ARGS...]: a 64 MiB dirty guest SRC (vmm ARGS) on the
# source host, an incoming DST on this one, TOKEN and ADDR for it.  Cases
# that need no long push give --guest-range 8M: a pass takes 1 s, not 8.
pair() {
	local s=$1 d=$2
	shift 2
	src start_vmm "$s" --memory 64M --test-guest dirty --guest-rate 2000 \
		--guest-fast-first-pass --heartbeat 100 "$@"
	src wait_pass "$s" 0 2
	start_vmm "$d" --memory 64M --incoming
	incoming "$d"
}

# postcopy_pair SRC DST CAP: SRC migrates to DST under CAP on one
# channel, switched to postcopy at once; returns once both are active.
both_active() { src_job_is "$1" postcopy_active && job_is "$2" postcopy_active; }
postcopy_pair() {
	src postcopy_on_request "$1" --max-bandwidth "$3" --channels 1
	wait_until 30 both_active "$1" "$2" ||
		fail "no postcopy: $1 $(src job_get "$1" state), $2 $(job_get "$2" state)"
}

# paused_pair SRC DST: a new pair in postcopy, then paused on both
# hosts (migctl pause).
both_paused_ab() { src_job_is "$1" postcopy_paused && job_is "$2" postcopy_paused; }
paused_pair() {
	pair "$1" "$2" --guest-range 8M
	postcopy_pair "$1" "$2" 1M
	src migctl pause "$1" >/dev/null || fail "pause $1"
	wait_until 30 both_paused_ab "$1" "$2" ||
		fail "pause: $1 $(src job_get "$1" state), $2 $(job_get "$2" state)"
}

# recovered_intact SRC DST: recover SRC's paused job towards ADDR and
# watch it complete; DST's completes too, and its guest's memory check
# passes, its console has no FAIL and it runs on.
recovered_intact() {
	local out
	src migctl recover "$1" "$ADDR" >/dev/null || fail "recover $1"
	out=$(src migctl --json status "$1" --watch) || fail "$1: $out"
	[ "$(echo "$out" | jget state)" = completed ] || fail "$1: $out"
	wait_until 30 job_is "$2" completed || fail "$2: $(job_get "$2" state): $(job_get "$2" error)"
	vmmctl check "$2" || fail "$2: memory check after an adopted recovery"
	grep -a -m 8 FAIL "$RUNDIR/$2.serial" && fail "$2: the guest reported a failure"
	wait_progress "$2" 0
}

note "the source's migd dies in postcopy-active: the migration goes on without it, and the next migd adopts it and reports it completed"
pair a b
postcopy_pair a b 16M
id=$(src job_get a id)
worker=$(src job_get a worker_pid)
[ -n "$worker" ] && [ "$worker" -gt 0 ] || fail "a: no worker pid"
PIDS+=("$worker")               # killed at exit, should it stay
needed=$(src job_get a needed_pages)
kill -KILL "$SRC_MIGD"
wait_exit "$SRC_MIGD"
echo "killed the source's migd with $needed pages still to push"
gone_said() { grep -q "^migd\[a/out\]: .*migd is gone: past the switch, the migration goes on" "$TEST_DIR/src/migd.log"; }
wait_until 10 gone_said || fail "a: $(grep 'a/out' "$TEST_DIR/src/migd.log" | tail -n 5)"
# Before, a new migd knew no job of a: its end was in the worker's log only.
src_migd
src wait_until 10 src_job_is a postcopy_active ||
	fail "a not adopted: $(src migctl status a 2>&1)"
[ "$(src job_get a id)" = "$id" ] || fail "a: another job: $(src migctl status a)"
out=$(src migctl --json status a --watch) || fail "a: $out"
[ "$(echo "$out" | jget state)" = completed ] || fail "a: $out"
[ "$(echo "$out" | jget id)" = "$id" ] || fail "a: $out"
wait_until 60 job_final b || fail "b: $(job_get b state): $(job_get b error)"
[ "$(job_get b state)" = completed ] || fail "b: $(job_get b state): $(job_get b error)"
wait_until 30 gone "$worker" || fail "the source worker $worker did not exit"
[ "$(state_of b)" = running ] || fail "b is $(state_of b)"
vmmctl check b || fail "b: memory check after postcopy across the source's migd restart"
wait_progress b 0
grep -q "^migd\[a/out\]: .*postcopy completed" "$TEST_DIR/src/migd.log" ||
	fail "a: $(grep 'a/out' "$TEST_DIR/src/migd.log" | tail -n 5)"
[ "$(src state_of a)" = paused ] || fail "a is $(src state_of a)"
echo "ok: b completed and runs; the source worker pushed its $needed pages, adopted as $id by the new migd, which reports it completed"
src vmmctl quit a >/dev/null; vmmctl quit b >/dev/null

note "both migds stop in postcopy-active, and it completes while neither runs: the next source migd learns its end from the worker, which its deaf migd never told \"taken\"; the destination worker gives up"
# The source's worker, stopped, pushes nothing until both migds are
# gone (a peer is given 10 s of silence).  It stops itself as it enters
# postcopy-active (source-postcopy-stop, migd(8)).  Before, the test
# stopped it once it saw postcopy-active: on a loaded host the job had
# completed by then, its worker_pid read 0, and kill -STOP 0 stopped
# the test itself, and its timeout.
kill -TERM "$SRC_MIGD"
wait_exit "$SRC_MIGD" || fail "the source's migd exited with $? on SIGTERM"
kill -TERM "$DST_MIGD"
wait_exit "$DST_MIGD" || fail "migd exited with $? on SIGTERM"
start_migd TERN_FAULT=worker-end-wait-short
DST_MIGD=$MIGD_PID
src_migd TERN_FAULT=source-postcopy-stop,migd-quit-deaf
pair a6 b6 --guest-range 8M
: >"$TEST_DIR/src/source-postcopy-stop"
postcopy_pair a6 b6 16M
id=$(src job_get a6 id)
sw=$(src job_get a6 worker_pid)
dw=$(job_get b6 worker_pid)
[ "${sw:-0}" -gt 0 ] && [ "${dw:-0}" -gt 0 ] || fail "workers: a6 ${sw:-none}, b6 ${dw:-none}"
PIDS+=("$sw" "$dw")             # killed at exit, should they stay
rm "$TEST_DIR/src/source-postcopy-stop"
stopped() { [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" = T ]; }
wait_until 10 stopped "$sw" || fail "the source worker $sw did not stop"
# The source's migd quits deaf: it reads nothing more until it exits.
: >"$TEST_DIR/src/migd-quit-deaf"
kill -TERM "$SRC_MIGD"
deaf() { grep -q "TERN_FAULT: quitting, deaf to the workers" "$TEST_DIR/src/migd.log"; }
wait_until 10 deaf || fail "the source's migd: $(tail -n 3 "$TEST_DIR/src/migd.log")"
kill -KILL "$DST_MIGD"
wait_exit "$DST_MIGD"
kill -CONT "$sw"
# a6 ends with its final report on the link of a migd that never reads
# it: the report is sent (the worker's line comes after it).
ended() { grep -q "^migd\[a6/out\]: completed" "$TEST_DIR/src/migd.log"; }
wait_until 60 ended || fail "a6: $(grep 'a6/out' "$TEST_DIR/src/migd.log" | tail -n 5)"
rm "$TEST_DIR/src/migd-quit-deaf"
wait_exit "$SRC_MIGD" || fail "the source's migd exited with $? on SIGTERM"
grep -q "^migd\[a6/out\]: .*migd's status link ended before it took the final report: it goes to the next migd" \
	"$TEST_DIR/src/migd.log" || fail "a6: $(grep 'a6/out' "$TEST_DIR/src/migd.log" | tail -n 5)"
# Each worker ends its job alone, lets go of the guest and of its links
# (no RAM mapped, no memfd, no uffd, no socket), and keeps its final
# report for the next migd.
offers() { grep -q "^migd\[$1\]: .*the job ended while no migd ran: its final report waits" "$2"; }
wait_until 60 offers a6/out "$TEST_DIR/src/migd.log" ||
	fail "a6: $(grep 'a6/out' "$TEST_DIR/src/migd.log" | tail -n 5)"
wait_until 60 offers b6/in "$RUNDIR/migd.log" ||
	fail "b6: $(grep 'b6/in' "$RUNDIR/migd.log" | tail -n 5)"
held=$(grep -c 'memfd:' "/proc/$sw/maps"; ls -l "/proc/$sw/fd" | grep -c 'memfd:\|userfaultfd\|socket:')
[ "$held" = "0
0" ] || fail "worker $sw still holds the guest or a link: $(grep memfd: "/proc/$sw/maps"; ls -l "/proc/$sw/fd")"
src_migd
src wait_until 10 src_job_is a6 completed || fail "a6: $(src migctl status a6 2>&1)"
[ "$(src job_get a6 id)" = "$id" ] || fail "a6: another job: $(src migctl status a6)"
[ "$(src job_get a6 transferred_bytes)" -gt 0 ] || fail "a6: $(src migctl --json status a6)"
src migctl status a6 | grep -q "^a6: source, completed (job $id)" || fail "a6: $(src migctl status a6)"
grep -q "a6: learnt the outcome of source job $id from its worker $sw: it ended while no migd ran" \
	"$TEST_DIR/src/migd.log" || fail "a6: $(tail -n 5 "$TEST_DIR/src/migd.log")"
# Nothing runs there to cancel.
out=$(src migctl cancel a6 2>&1) && fail "cancel a6: $out"
case $out in *"nothing to cancel: the last migration job of a6 already ended (completed)"*) ;;
*) fail "cancel a6: $out" ;; esac
wait_until 10 gone "$sw" || fail "the source worker $sw did not exit"
# b6's worker waited its (shortened) while for a migd, then exited.
gave_up() { grep -q "^migd\[b6/in\]: .*no migd took the job's final report within 3 s (.*): its end is in this log only" "$RUNDIR/migd.log"; }
wait_until 30 gave_up || fail "b6: $(grep 'b6/in' "$RUNDIR/migd.log" | tail -n 5)"
wait_until 10 gone "$dw" || fail "the destination worker $dw did not exit"
# b6's record (it ran when its migd was killed) waits for a worker that
# will not come: "not back yet", then of unknown outcome, which its
# worker's log tells.  Before, "no migration job for b6".
: >"$RUNDIR/migd-orphans-hold"
start_migd TERN_FAULT=migd-orphans-hold
DST_MIGD=$MIGD_PID
out=$(migctl status b6 2>&1) && fail "b6: $out"
case $out in *"b6: its postcopy job "*", which ran when migd "*" ended, is not back yet"*) ;;
*) fail "b6: $out" ;; esac
rm "$RUNDIR/migd-orphans-hold"
wait_until 15 job_is b6 failed || fail "b6: $(migctl status b6 2>&1)"
case $(job_get b6 error) in
"outcome unknown: migd (pid "*") ended while this job was in postcopy, and its worker has not come back to this migd: it ended too (its log says how the job ended), or it asks another run directory's migd.  Should it have died before the job's end, the guest here waits for good on the pages it still lacks (vmmctl status on both hosts tells)") ;;
*) fail "b6: $(job_get b6 error)" ;; esac
vmmctl check b6 || fail "b6: memory check after a postcopy that completed while no migd ran"
wait_progress b6 0
echo "ok: $id completed while no migd ran; the next source migd shows it: $(src migctl status a6)"
src vmmctl quit a6 >/dev/null; vmmctl quit b6 >/dev/null

note "the source's migd is killed while postcopy is paused: the next one adopts the job, and its recovery completes the migration"
# Before, the paused worker ended with its migd: every recover was
# refused ("Connection refused"), and the only way out was to cancel
# with --force and resume the source as it was at the switch.
paused_pair a4 b4
id=$(src job_get a4 id)
worker=$(src job_get a4 worker_pid)
PIDS+=("$worker")               # killed at exit, should it stay
# A watcher, suspended across the restart, hears that migd restarted
# (before: "it stopped or died", as if no migd ran).
# (exec: WATCH is migctl's own pid, not a subshell's)
(exec "$BIN/migctl" --rundir "$TEST_DIR/src" status a4 --watch \
	>"$RUNDIR/watch-a4.out" 2>&1) &
WATCH=$!
PIDS+=("$WATCH")
wait_until 10 test -s "$RUNDIR/watch-a4.out" || fail "status a4 --watch said nothing"
kill -STOP "$WATCH"
old_migd=$SRC_MIGD
kill -KILL "$SRC_MIGD"
wait_exit "$SRC_MIGD"
src_migd
kill -CONT "$WATCH"
wait_exit "$WATCH"
grep -q "migd restarted while this waited (pid $old_migd, now $SRC_MIGD): a job past its postcopy switch goes on, adopted by the new migd" \
	"$RUNDIR/watch-a4.out" || fail "status a4 --watch: $(cat "$RUNDIR/watch-a4.out")"
echo "ok: $(tail -n 1 "$RUNDIR/watch-a4.out")"
src wait_until 10 src_job_is a4 postcopy_paused ||
	fail "a4 not adopted: $(src migctl status a4 2>&1)"
[ "$(src job_get a4 id)" = "$id" ] || fail "a4: another job: $(src migctl status a4)"
[ "$(src job_get a4 worker_pid)" = "$worker" ] || fail "a4: $(src migctl status a4)"
grep -aq "a4: adopted postcopy job $id (worker $worker) left by an earlier migd" \
	"$TEST_DIR/src/migd.log" || fail "a4: no adoption logged"
recovered_intact a4 b4
echo "ok: a4 adopted as $id by the new migd, recovered, completed; b4 runs intact"
src vmmctl quit a4 >/dev/null; vmmctl quit b4 >/dev/null

note "the destination's migd is stopped while postcopy is paused: it leaves the job, the next one adopts it, and recovery completes"
paused_pair a5 b5
id=$(job_get b5 id)
worker=$(job_get b5 worker_pid)
PIDS+=("$worker")
kill -TERM "$DST_MIGD"
wait_exit "$DST_MIGD" || fail "migd exited with $? on SIGTERM"
grep -q "b5: postcopy job $id (worker $worker, postcopy-paused) goes on without migd; the next migd on .* will adopt it" \
	"$RUNDIR/migd.log" || fail "b5: $(tail -n 5 "$RUNDIR/migd.log")"
grep "did not end; killing it" "$RUNDIR/migd.log" && fail "migd killed a paused worker"
kill -0 "$worker" || fail "b5's worker ended with its migd"
start_migd
DST_MIGD=$MIGD_PID
# At once: the worker saw migd.sock appear, or migd says it may be
# re-attaching.  Before, "no migration job for b5", for up to a second.
out=$(migctl status b5 2>&1)
case $out in "b5: destination, postcopy-paused"*) ;;
*"b5: its postcopy job $id, which ran when migd "*" ended, is not back yet (this migd started "*" ms ago, and waits 6 s for its worker); ask again in a few seconds"*) ;;
*) fail "status b5 right after the restart: $out" ;; esac
echo "ok: right after the restart: $(echo "$out" | head -n 1)"
wait_until 10 job_is b5 postcopy_paused || fail "b5 not adopted: $(migctl status b5 2>&1)"
[ "$(job_get b5 id)" = "$id" ] || fail "b5: another job: $(migctl status b5)"
# Adopted, the worker is no child of this migd (no PDEATHSIG): it sees
# the next stop by its status link, and is adopted again.
stop_migd
kill -0 "$worker" || fail "b5's worker ended with the migd that adopted it"
start_migd
DST_MIGD=$MIGD_PID
wait_until 10 job_is b5 postcopy_paused || fail "b5 not adopted again: $(migctl status b5 2>&1)"
[ "$(job_get b5 worker_pid)" = "$worker" ] || fail "b5: $(migctl status b5)"
recovered_intact a5 b5
echo "ok: b5 adopted as $id by a second, then a third migd, recovered, completed"
src vmmctl quit a5 >/dev/null; vmmctl quit b5 >/dev/null

note "the source's migd dies in precopy: its worker cancels, the destination hears why"
pair c d --guest-range 8M
src migrate_active c 1M --channels 1
# A caller waiting on the job hears that migd went, not a bare
# "connection closed".
src migctl status c --watch >"$RUNDIR/watch-c.out" 2>&1 &
WATCH=$!
PIDS+=("$WATCH")
src wait_until 10 grep -q "round" "$RUNDIR/watch-c.out"
# So does a plain postcopy whose answer is pending, the destination's
# worker stopped here (before: "Postcopy: connection closed").
wd=$(job_get d worker_pid)
kill -STOP "$wd"
src migctl postcopy c >"$RUNDIR/postcopy-c.out" 2>&1 &
PC=$!
PIDS+=("$PC")
src wait_until 10 grep -q "^migd: c: switching to postcopy" "$TEST_DIR/src/migd.log" ||
	{ kill -CONT "$wd"; fail "postcopy c: $(cat "$RUNDIR/postcopy-c.out")"; }
kill -KILL "$SRC_MIGD"
wait_exit "$SRC_MIGD"
wait_exit "$WATCH"
wait_exit "$PC"
kill -CONT "$wd"
grep -q "migd closed the connection while this waited (it stopped or died): the job's end is not known here; 'vmmctl status' of the VM says where its guest is" \
	"$RUNDIR/watch-c.out" || fail "status c --watch: $(cat "$RUNDIR/watch-c.out")"
grep -q "^migctl: postcopy [^ ]*: migd closed the connection while this waited (it stopped or died)" \
	"$RUNDIR/postcopy-c.out" || fail "postcopy c: $(cat "$RUNDIR/postcopy-c.out")"
wait_job_final d
[ "$(job_get d state)" = failed ] || fail "d: $(job_get d state): $(job_get d error)"
case $(job_get d error) in
"the source's migd stopped or died, cancelling the migration; the destination vmm dropped what it received") ;;
*) fail "d: $(job_get d error)" ;; esac
src wait_until 30 vmm_is c running || fail "c is $(src state_of c)"
src vmmctl check c || fail "c: memory check after its migd died"
grep -q "^migd\[c/out\]: .*cancelled: migd died" "$TEST_DIR/src/migd.log" ||
	fail "c: $(grep 'c/out' "$TEST_DIR/src/migd.log" | tail -n 3)"
echo "ok: d: $(job_get d error); c runs on"
src vmmctl quit c >/dev/null; vmmctl quit d >/dev/null

note "the source's migd dies while its switch to postcopy waits for the destination: the next one does not say the guest moved"
# The destination is held before its Attach: the switch has begun (the
# destination said yes), Go has not gone.  The worker cancels when its
# migd goes; the next migd, which cannot know that, said before "the
# destination runs the guest ... do not quit it", then "outcome
# unknown"; now the worker tells it its end.
MIGD_PID=$DST_MIGD
stop_migd
start_migd TERN_FAULT=dest-attach-held
DST_MIGD=$MIGD_PID
src_migd
pair e f --guest-range 8M
src migrate_active e 1M --channels 1
touch "$RUNDIR/dest-attach-held"
src migctl postcopy e >/dev/null || { rm -f "$RUNDIR/dest-attach-held"; fail "postcopy e"; }
wait_until 30 grep -q "^migd\[f/in\]: TERN_FAULT: holding before Attach" "$RUNDIR/migd.log" ||
	{ rm -f "$RUNDIR/dest-attach-held"; fail "f: $(tail -n 3 "$RUNDIR/migd.log")"; }
gone_migd=$SRC_MIGD
worker=$(src job_get e worker_pid)
kill -KILL "$SRC_MIGD"
wait_exit "$SRC_MIGD"
# It takes its migd's death as a cancel (the kernel's SIGTERM) when it
# looks, within a status tick: the destination is held until then, or
# the switch could cross Go first (then the next migd adopts the job).
# (It then waits, its job over, for a migd to take its end.)
e_over() { grep -q "^migd\[e/out\]: the job ended while no migd ran: its final report waits" "$TEST_DIR/src/migd.log"; }
wait_until 30 e_over ||
	{ rm -f "$RUNDIR/dest-attach-held"; fail "e's worker $worker went on: $(tail -n 3 "$TEST_DIR/src/migd.log")"; }
rm -f "$RUNDIR/dest-attach-held"
src_migd
ended() { src job_final e; }
wait_until 30 ended || fail "e: $(src job_get e state)"
case $(src job_get e state):$(src job_get e error) in "cancelled:cancelled: migd died"*) ;;
*) fail "e: $(src job_get e state): $(src job_get e error)" ;; esac
wait_until 30 gone "$worker" || fail "e's worker $worker is still there"
src vmmctl check e || fail "e: memory check after its migd died in the switch"
# (the worker did cancel: its destination heard it)
wait_job_final f
case $(job_get f error) in "the source's migd stopped or died, cancelling the migration"*) ;;
*) fail "f: $(job_get f error)" ;; esac
echo "ok: e: $(src job_get e error)"
src vmmctl quit e >/dev/null; vmmctl quit f >/dev/null

# way_out SRC DST: the way out a dead source worker's error gives, taken:
# the destination's paused job cancelled with --force and its vmm quit,
# the source's vmm continued from the switch, its memory intact, running.
way_out() {
	wait_until 30 job_is "$2" postcopy_paused || fail "$2: $(job_get "$2" state)"
	migctl cancel "$2" --force --wait >/dev/null || fail "cancel $2 --force"
	vmmctl quit "$2" >/dev/null
	[ "$(src state_of "$1")" = paused ] || fail "$1 is $(src state_of "$1")"
	src vmmctl cont "$1" --force >/dev/null || fail "cont $1 --force"
	src vmmctl check "$1" || fail "$1: memory check after cont --force"
	src wait_progress "$1" 0
	src vmmctl quit "$1" >/dev/null
}

note "the source's worker dies in postcopy-active: the error says what is where, and what to do"
pair a2 b2 --guest-range 8M
postcopy_pair a2 b2 2M
src kill_worker KILL a2
src wait_job_final a2
err=$(src job_get a2 error)
case $err in
"worker died: killed by signal 9; the job was in postcopy: the destination runs the guest, and the pages it still lacks are only in vmm a2 here.  Do not quit that vmm: it holds the guest's only full copy.  The destination can never get those pages (a recovery needs this job's worker): on the destination host cancel its job with --force and quit its vmm; then 'vmmctl cont a2 --force' runs the guest here again, as it was at the switch"*) ;;
*) fail "a2: $err" ;; esac
echo "ok: a2: $err"
# The way out it gives works.
way_out a2 b2
echo "ok: a2 runs again from the switch"

note "the source's migd and its worker both die in postcopy-active: the next migd says the job is not back yet, then records its outcome as unknown, not the VM's job before it"
# Before, the record was dropped: status showed a8's previous job (here
# none: "no migration job"), and after the grace the same.
pair a8 b8 --guest-range 8M
postcopy_pair a8 b8 2M
id=$(src job_get a8 id)
worker=$(src job_get a8 worker_pid)
[ "${worker:-0}" -gt 0 ] || fail "a8: no worker pid"
old_migd=$SRC_MIGD
kill -KILL "$SRC_MIGD" "$worker"
wait_exit "$SRC_MIGD"
wait_until 10 gone "$worker" || fail "the source worker $worker outlived SIGKILL"
# The hold keeps migd waiting for the worker whatever the load.
: >"$TEST_DIR/src/migd-orphans-hold"
src_migd TERN_FAULT=migd-orphans-hold
out=$(src migctl status a8 2>&1) && fail "status a8 while it is not back: $out"
case $out in
*"a8: its postcopy job $id, which ran when migd $old_migd ended, is not back yet (this migd started "*" ms ago, and waits 6 s for its worker); ask again in a few seconds"*) ;;
*) fail "a8 while it is not back: $out" ;; esac
echo "ok: $out"
out=$(src migctl status a8 --id "$id" 2>&1) && fail "status a8 --id while it is not back: $out"
case $out in *"is not back yet"*) ;; *) fail "a8 --id: $out" ;; esac
# A watch waits through it (an agent's, right after a restart): it says
# so, then follows the job.  Before, it failed at once.
src migctl status a8 --watch >"$TEST_DIR/a8.watch" 2>&1 &
watch=$!
PIDS+=("$watch")
waiting() { grep -q "^migctl: asking again for up to 15 s: a8: its postcopy job $id, which ran when migd $old_migd ended, is not back yet" "$TEST_DIR/a8.watch"; }
wait_until 10 waiting || fail "a8's watch: $(cat "$TEST_DIR/a8.watch")"
rm "$TEST_DIR/src/migd-orphans-hold"
wait_exit "$watch" && fail "a8's watch exited 0: $(cat "$TEST_DIR/a8.watch")"
grep -q "outcome unknown: migd (pid $old_migd)" "$TEST_DIR/a8.watch" ||
	fail "a8's watch: $(cat "$TEST_DIR/a8.watch")"
src wait_until 15 src_job_is a8 failed || fail "a8: $(src migctl status a8 2>&1)"
err=$(src job_get a8 error)
case $err in
"outcome unknown: migd (pid $old_migd) ended while this job was in postcopy, and its worker has not come back to this migd: it ended too (its log says how the job ended), or it asks another run directory's migd.  Should it have died before the job's end, the destination runs the guest, and the pages it still lacks are only in this vmm: do not quit it (vmmctl status on both hosts tells)") ;;
*) fail "a8: $err" ;; esac
[ "$(src job_get a8 id)" = "$id" ] || fail "a8: another job: $(src migctl status a8)"
grep -q "a8: source job outcome unknown: migd (pid $old_migd)" "$TEST_DIR/src/migd.log" ||
	fail "a8: $(tail -n 5 "$TEST_DIR/src/migd.log")"
echo "ok: a8: $err"
# A restart keeps the record as it is.
kill -TERM "$SRC_MIGD"
wait_exit "$SRC_MIGD" || fail "the source's migd exited with $? on SIGTERM"
src_migd
[ "$(src job_get a8 error)" = "$err" ] || fail "a8 after a restart: $(src migctl status a8 2>&1)"
# What it says holds: the destination waits, the source vmm keeps the
# guest, and the way out (a2's) works.
way_out a8 b8

note "the destination's worker dies in postcopy-active: the error says the guest there waits for good, and what to do"
# Before, it said only "the guest runs here in postcopy: its vCPUs wait
# for the pages still on the source", as if they would come: an operator
# left the guest hung on the destination, its vmm saying running.
pair a3 b3 --guest-range 8M
postcopy_pair a3 b3 2M
kill_worker KILL b3
wait_job_final b3
err=$(job_get b3 error)
case $err in
"worker died: killed by signal 9; the job was in postcopy: the guest runs here, but the pages it still lacks can never come (they are only on the source, and a recovery needs this job's worker): a vCPU that touches one waits for good.  Quit vmm b3; then, on the source host, cancel the job with --force: its vmm keeps the guest as it was at the switch ('vmmctl cont --force' runs it from there)") ;;
*) fail "b3: $err" ;; esac
echo "ok: b3: $err"
# The way out it gives works.
vmmctl quit b3 >/dev/null || fail "quit b3"
src wait_until 30 src_job_is a3 postcopy_paused || fail "a3: $(src job_get a3 state)"
src migctl cancel a3 --force --wait >/dev/null || fail "cancel a3 --force"
[ "$(src state_of a3)" = paused ] || fail "a3 is $(src state_of a3)"
src vmmctl cont a3 --force >/dev/null || fail "cont a3 --force"
src vmmctl check a3 || fail "a3: memory check after cont --force"
src wait_progress a3 0
echo "ok: a3 runs again from the switch"
src vmmctl quit a3 >/dev/null

note "the destination's migd dies in precopy: the source hears why, and runs on"
pair e f --guest-range 8M
src migrate_active e 1M --channels 1
kill -KILL "$DST_MIGD"
wait_exit "$DST_MIGD"
src wait_job_final e
[ "$(src job_get e state)" = failed ] || fail "e: $(src job_get e state): $(src job_get e error)"
case $(src job_get e error) in
"the destination's migd stopped or died, cancelling the migration; the source VM kept running") ;;
*) fail "e: $(src job_get e error)" ;; esac
src vmm_is e running || fail "e is $(src state_of e)"
echo "ok: e: $(src job_get e error)"
src vmmctl quit e >/dev/null; vmmctl quit f >/dev/null

note "the destination's worker dies between Go and Resumed: the source says what to do"
# dest-slow-cont: the destination's worker waits between Go and its
# vmm's Cont, here until the kill, however slowly that comes (migd(8));
# it is killed there, and the guest never ran on h.
start_migd TERN_FAULT=dest-slow-cont
DST_MIGD=$MIGD_PID
pair g h --guest-range 8M
: >"$RUNDIR/dest-slow-cont"
src migctl migrate g "$ADDR" --token "$TOKEN" --detach >/dev/null || fail "migrate g"
wait_until 60 grep -q "migd\[h/in\]: TERN_FAULT: Go came" "$RUNDIR/migd.log" ||
	fail "h: no Go: $(job_get h state): $(job_get h error)"
kill_worker KILL h
rm "$RUNDIR/dest-slow-cont"
src wait_job_final g
err=$(src job_get g error)
case $err in
*"the guest may be running there, so the source VM stays paused, marked as moved (this copy is stale): check the destination, whose vmm may run the guest or hold it loaded and not started (its job then says how to start it there); only if it has no copy, 'vmmctl cont g --force' runs it here again, from where it stopped"*) ;;
*) fail "g: $err" ;; esac
echo "ok: g: $err"
[ "$(src state_of g)" = paused ] || fail "g is $(src state_of g)"
wait_job_final h
[ "$(state_of h)" != running ] || fail "h runs the guest"
# (h keeps the guest's state, loaded: its job says so; here the source
# is the copy run)
case $(job_get h error) in *"vmm h holds the guest, loaded and not started"*) ;;
*) fail "h: $(job_get h error)" ;; esac
src vmmctl cont g --force >/dev/null || fail "cont g --force"
src vmmctl check g || fail "g: memory check after cont --force"
src wait_progress g 0
echo "ok: g runs again"

echo PASS
