#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Postcopy recovery: a broken link costs time, not the VM.  During the
# postcopy of a test guest the TCP connections are destroyed (ss -K)
# five times at random points; both sides go postcopy-paused keeping
# everything, and 'migctl recover' brings them back, alternately on the
# same port and on a new one.  The migration completes, the memory check
# passes, verify finds the RAM as the source left it, the guest's
# heartbeats go on after each recovery.  Also: a
# recovery aimed at a wrong address fails and leaves the job paused, as
# does one whose Resume announces more ram channels than the job has;
# 'migctl pause' forces the paused state; and a cancel signal that
# crossed the switch is dropped, so the later pause and recovery work;
# migd quitting leaves paused workers to the next migd, which adopts
# them, and 'migctl cancel --force' ends one job, when the other side
# lost the guest (when it comes, not at a status tick); a faultd
# restarted in postcopy pauses the job, and the recovery attaches the
# new faultd, which serves again the faults the former one had read; a
# destination vmm that dies while the job is paused is heard of at the
# next recovery.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fullguest.sh"
need_kvm
need_uffd
ss_kill_works || skip "$SS_KILL_WHY"
start_faultd
start_migd

# recover SRC DST NEWPORT: bring both back (DST on a new port if asked).
recover() {
	local src=$1 dst=$2 new=$3 before c out
	if [ "$new" = 1 ]; then
		# recover prints the address bound, as incoming does: the
		# source is pointed at the port it prints.
		out=$(migctl recover "$dst" --listen tcp:127.0.0.1:0) ||
			fail "recover $dst: $out"
		ADDR=$(printf '%s\n' "$out" |
			sed -n 's/^listen \(tcp:127\.0\.0\.1:[1-9][0-9]*\)$/\1/p')
		[ -n "$ADDR" ] || fail "recover $dst printed no address bound: $out"
		[ "$(job_get "$dst" listen)" = "$ADDR" ] ||
			fail "$dst: status says $(job_get "$dst" listen), recover $ADDR"
	fi
	before=$(pages_of "$dst" 0)
	migctl recover "$src" "$ADDR" >/dev/null || fail "recover $src"
	wait_until 30 both_active "$src" "$dst" ||
		fail "not active again: $src $(job_get "$src" state): $(job_get "$src" error);" \
		     "$dst $(job_get "$dst" state): $(job_get "$dst" error)"
	# (It said the address of the job's start for good.)
	[ "$(job_get "$src" peer)" = "$ADDR" ] ||
		fail "$src: status says peer $(job_get "$src" peer), recovered to $ADDR"
	wait_until 60 pages_above "$dst" 0 "${before:-0}" ||
		fail "$dst: the guest made no progress after the recovery"
}

# five_cuts SRC DST [CAP]: the postcopy of SRC to DST (at CAP, default
# 4M) cut five times at random points and recovered, alternately on the
# same and on a new port; it completes with the memory check passing.
five_cuts() {
	local src=$1 dst=$2 cap=${3:-4M} i port out
	incoming "$dst"
	# (verify's hashing must fit the pause: on a loaded host 72 MiB took
	# 322 ms, past the default 300 ms limit, and the switch was refused)
	postcopy_on_request "$src" --max-bandwidth "$cap" --channels 2 --verify \
		--downtime-limit 5000
	wait_until 30 both_active "$src" "$dst" || fail "no postcopy: $(migctl status "$src")"
	for i in 1 2 3 4 5; do
		sleep "0.$((RANDOM % 7 + 2))"   # a random point in the postcopy
		job_is "$src" postcopy_active ||
			fail "$src ended before cut $i: $(migctl status "$src")"
		port=${ADDR##*:}
		ss_kill "( src 127.0.0.1:$port or dst 127.0.0.1:$port )" || fail "ss -K"
		wait_until 30 both_paused "$src" "$dst" ||
			fail "cut $i: $src $(job_get "$src" state), $dst $(job_get "$dst" state)"
		echo "cut $i: $src: $(job_get "$src" error); $dst: $(job_get "$dst" error)"
		[ "$(state_of "$dst")" = running ] || fail "$dst is not running while paused"
		recover "$src" "$dst" $((i % 2 == 0))
		echo "ok: recovered $i on $ADDR"
	done
	out=$(migctl --json status "$src" --watch) || fail "$src: $out"
	[ "$(echo "$out" | jget state)" = completed ] || fail "$src: $out"
	[ "$(echo "$out" | jget recoveries)" = 5 ] || fail "$src: recoveries: $out"
	wait_until 30 job_is "$dst" completed || fail "$dst: $(migctl status "$dst")"
	[ "$(job_get "$dst" recoveries)" = 5 ] || fail "$dst: $(migctl --json status "$dst")"
	# verify: the page hashes taken before and after each recovery
	[ "$(echo "$out" | jget verified)" = ok ] || fail "$src: verify: $out"
	[ "$(job_get "$dst" verified)" = ok ] || fail "$dst: verify: $(job_get "$dst" verified)"
	wait_progress "$dst" 0
	vmmctl check "$dst" || fail "$dst: memory check after 5 recoveries"
	grep -a -m 8 FAIL "$RUNDIR/$dst.serial" && fail "$dst: the guest reported a failure"
	echo "ok: $src -> $dst completed after 5 recoveries ($SECONDS s into the test)"
}

note "five cuts at random points, recovered on the same and on new ports"
start_vmm p --memory 128M --test-guest dirty --guest-rate 2000 --guest-fast-first-pass \
	--heartbeat 100
wait_pass p 0 2
start_vmm q --memory 128M --incoming
five_cuts p q
vmmctl quit p >/dev/null; vmmctl quit q >/dev/null

note "the full-state guest, 2 vCPUs: five cuts, every check passing after each"
RUN_BEATS=4
# Slow enough that its first pass is far from done: what it wrote by then
# (the needed pages) takes the 2M/s push about 30 s, well beyond five
# cuts and recoveries on a loaded host.
start_vmm fs --memory 256M --vcpus 2 --test-guest full --guest-rate 4000 --heartbeat 500
wait_until 30 beats_at_least fs 1 8 || fail "fs: no heartbeat"
start_vmm ft --memory 256M --vcpus 2 --incoming
five_cuts fs ft 2M
watch_guest ft 2
echo "ok: ft: $(last_beat ft 1)"
vmmctl quit fs >/dev/null; vmmctl quit ft >/dev/null

# small_postcopy SRC DST ARGS...: a 64 MiB dirty guest SRC moving to a
# new DST in postcopy (migrate ARGS), once both are postcopy-active.
small_postcopy() {	# SRC DST FLAGS...; DST_FAULT: the TERN_FAULT of DST's vmm
	local src=$1 dst=$2
	shift 2
	start_vmm "$src" --memory 64M --test-guest dirty --guest-rate 2000 \
		--guest-fast-first-pass --heartbeat 100
	wait_pass "$src" 0 2
	TERN_FAULT=${DST_FAULT:-} start_vmm "$dst" --memory 64M --incoming
	incoming "$dst"
	postcopy_on_request "$src" "$@"
	wait_until 30 both_active "$src" "$dst" || fail "no postcopy: $(migctl status "$src")"
}

note "faultd restarts in postcopy: both pause and say so; no faultd, no recovery; once one runs, the recovery attaches it again"
# Before, the job could never recover.  The first faultd here reads the
# faults and serves none (faults-unserved), as one that dies with faults
# read: the vCPU waits on a page the source never heard of, which the
# push at 256K/s would bring in minutes.  The new faultd wakes it: the
# fault comes again.
kill -TERM "$FAULTD_PID"
wait_exit "$FAULTD_PID" || fail "faultd exited with $? on SIGTERM"
TERN_FAULT=faults-unserved start_faultd
small_postcopy r7 s7 --max-bandwidth 256K --channels 1
wait_until 30 pages_still s7 0 || fail "s7: its vCPU does not wait on its fault"
faults=$(job_get s7 faults)
kill -TERM "$FAULTD_PID"
wait_exit "$FAULTD_PID" || fail "faultd exited with $? on SIGTERM"
wait_until 30 both_paused r7 s7 || fail "faultd gone: r7 $(job_get r7 state), s7 $(job_get s7 state)"
gone="faultd closed its connection: it stopped or restarted, and the page faults of vm s7 wait until one runs here again; then recover the job (migctl recover, on the source host)"
[ "$(job_get s7 error)" = "$gone" ] || fail "s7: $(job_get s7 error)"
# (said: after its page link closed; says: on the main connection first)
case $(job_get r7 error) in *"the destination said: $gone" | *"the destination says: $gone") ;;
*) fail "r7: $(job_get r7 error)" ;; esac
[ "$(job_get s7 unrecoverable)" != true ] || fail "s7: $(migctl --json status s7)"
echo "ok: r7: $(job_get r7 error)"
# With no faultd running, the recovery is refused and both stay paused.
migctl recover r7 "$ADDR" >/dev/null || fail "recover r7"
nofaultd="no faultd runs here to serve the guest's page faults again ($RUNDIR/faultd.sock: No such file or directory): start faultd(8), then recover again"
refused() { job_is r7 postcopy_paused && job_get r7 error | grep -qF "$nofaultd"; }
wait_until 30 refused || fail "r7: $(job_get r7 state): $(job_get r7 error)"
wait_until 30 both_paused r7 s7 || fail "r7 $(job_get r7 state), s7 $(job_get s7 state)"
echo "ok: r7: $(job_get r7 error)"
start_faultd
before=$(pages_of s7 0)
migctl recover r7 "$ADDR" >/dev/null || fail "recover r7"
wait_until 30 both_active r7 s7 ||
	fail "not active again: r7 $(job_get r7 state): $(job_get r7 error); s7 $(job_get s7 state): $(job_get s7 error)"
wait_until 20 pages_above s7 0 "${before:-0}" ||
	fail "s7: its vCPU still waits on the fault the former faultd read"
grep -q "^faultd: s7: attached again" "$RUNDIR/faultd.log" ||
	fail "faultd: $(tail -n 5 "$RUNDIR/faultd.log")"
# The job's figures go on from the former faultd's.
more_faults() { [ "$(job_get s7 faults)" -gt "$faults" ]; }
wait_until 10 more_faults || fail "s7: faults $faults, then $(job_get s7 faults)"
# Past the switch only the push's cap can be tuned.
out=$(migctl tune r7 --downtime-limit 500 2>&1) && fail "tune r7 --downtime-limit: $out"
case $out in *"--downtime-limit (downtime_limit_ms) means nothing past the postcopy switch: only --max-bandwidth (max_bandwidth, the push's cap) can change"*) ;;
*) fail "tune r7 --downtime-limit: $out" ;; esac
out=$(migctl tune r7 --max-bandwidth unlimited) || fail "tune r7: $out"
case $out in "r7: max-bandwidth unlimited for the postcopy push from now on (job "*")") ;;
*) fail "tune r7: $out" ;; esac
out=$(migctl --json status r7 --watch) || fail "r7: $out"
[ "$(echo "$out" | jget state)" = completed ] || fail "r7: $out"
wait_until 30 job_is s7 completed || fail "s7: $(migctl status s7)"
[ "$(job_get s7 recoveries)" = 1 ] || fail "s7: $(migctl --json status s7)"
wait_progress s7 0
vmmctl check s7 || fail "s7: memory check after faultd restarted"
grep -a -m 8 FAIL "$RUNDIR/s7.serial" && fail "s7: the guest reported a failure"
echo "ok: s7 completed after faultd restarted: $(job_get s7 faults) faults"
vmmctl quit r7 >/dev/null; vmmctl quit s7 >/dev/null

note "faultd stopped by a signal in postcopy: the job pauses, says so, and recovers once it runs again"
# Before, the destination said only "faultd: Stats: Connection timed out".
small_postcopy r10 s10 --max-bandwidth 1M --channels 1
kill -STOP "$FAULTD_PID"
wait_until 60 both_paused r10 s10 ||
	{ kill -CONT "$FAULTD_PID"; fail "faultd stopped: r10 $(job_get r10 state), s10 $(job_get s10 state)"; }
stopped="faultd: Stats: no answer in 10 s: faultd, pid $FAULTD_PID, is stopped by a signal or a debugger: 'kill -CONT $FAULTD_PID' resumes it, then recover the job (migctl recover, on the source host)"
case $(job_get s10 error) in *"$stopped"*) ;;
*) kill -CONT "$FAULTD_PID"; fail "s10: $(job_get s10 error)" ;; esac
echo "ok: s10: $(job_get s10 error)"
# The source hears it (before: only "waiting for the destination's
# PostcopyDone: Broken pipe").
case $(job_get r10 error) in *"the destination said: $stopped" | *"the destination says: $stopped") ;;
*) kill -CONT "$FAULTD_PID"; fail "r10: $(job_get r10 error)" ;; esac
# A recovery while faultd is still stopped fails, and both hosts name
# faultd (before, both blamed the network: the source gave up waiting
# for ResumeNeeded first, "Connection timed out").
migctl recover r10 "$ADDR" >/dev/null || { kill -CONT "$FAULTD_PID"; fail "recover r10"; }
relink="faultd: Relink: no answer in 10 s: faultd, pid $FAULTD_PID, is stopped by a signal or a debugger: 'kill -CONT $FAULTD_PID' resumes it, then recover again (migctl recover, on the source host)"
named() { job_is r10 postcopy_paused && job_get r10 error | grep -qF "the destination said: $relink"; }
wait_until 60 named ||
	{ kill -CONT "$FAULTD_PID"; fail "r10 $(job_get r10 state): $(job_get r10 error)"; }
wait_until 30 both_paused r10 s10 ||
	{ kill -CONT "$FAULTD_PID"; fail "r10 $(job_get r10 state), s10 $(job_get s10 state)"; }
case $(job_get s10 error) in *"$relink"*) ;;
*) kill -CONT "$FAULTD_PID"; fail "s10: $(job_get s10 error)" ;; esac
echo "ok: r10: $(job_get r10 error)"
kill -CONT "$FAULTD_PID"
recover r10 s10 0
migctl pause r10 >/dev/null || fail "pause r10"
wait_until 30 both_paused r10 s10 || fail "r10 $(job_get r10 state), s10 $(job_get s10 state)"
migctl cancel s10 --force --wait >/dev/null || fail "cancel s10"
migctl cancel r10 --force --wait >/dev/null || fail "cancel r10"
vmmctl quit s10 >/dev/null; vmmctl quit r10 --force >/dev/null || fail "quit r10 --force"

note "migctl pause, a recovery at a wrong address, one that announces a channel too many, then the right one; a new address asked for too late"
# The source's first Resume announces (and opens) one ram channel more
# than the job has: the destination must refuse it and stay paused.  At
# the end its PostcopyDone comes after the page link closed (dest-done-late).
stop_migd
start_migd TERN_FAULT=source-resume-extra-channel,dest-done-late,dest-slow-recover
small_postcopy r s --max-bandwidth 4M --channels 4
# A SIGTERM past the switch is dropped by both workers: the guest runs
# on s with pages only r has.  This one is no migd's: each says who sent
# it (it was logged as a cancel).
kill_worker TERM r s
me=$BASHPID
stray="SIGTERM from pid $me ($(cat "/proc/$me/comm")), not from migd [0-9]*, which started the job: ignored past the switch, the migration goes on"
dropped() { [ "$(grep -c "^migd\[[rs]/\(out\|in\)\]: $stray" "$RUNDIR/migd.log")" = 2 ]; }
wait_until 10 dropped || fail "the workers did not drop the stray SIGTERM: $(grep SIGTERM "$RUNDIR/migd.log")"
grep -q "a cancel came after the switch" "$RUNDIR/migd.log" && fail "a stray SIGTERM was logged as a cancel"
both_active r s || fail "stray SIGTERM: r $(job_get r state), s $(job_get s state)"
echo "ok: a stray SIGTERM after the switch was dropped on both sides, its sender named"
err=$(migctl recover r "$ADDR" 2>&1) && fail "recover while active was accepted"
echo "ok: $err"
migctl pause r >/dev/null || fail "pause r"
wait_until 30 both_paused r s || fail "pause: r $(job_get r state), s $(job_get s state)"
# (and not that the destination reset the connection, which this pause
# cut: before, "...; the destination reset the connection: its worker
# died, or the network between cut it")
case $(job_get r error) in *"paused on request"*) ;; *) fail "r: $(job_get r error)" ;; esac
case $(job_get r error) in *"reset the connection"* | *"without a word"*) fail "r: $(job_get r error)" ;; esac
# An address for the other side is refused, not dropped.
err=$(migctl recover s "$ADDR" 2>&1) && fail "a destination took the source's address"
case $err in *"s is a destination job: it takes a listen address"*) ;; *) fail "recover s: $err" ;; esac
err=$(migctl recover r "$ADDR" --listen tcp:127.0.0.1:0 2>&1) && fail "a source took --listen"
case $err in *"r is a source job: it takes the destination's address"*) ;; *) fail "recover r: $err" ;; esac
both_paused r s || fail "refused recoveries: r $(job_get r state), s $(job_get s state)"
echo "ok: addresses for the other side are refused"
# The address s listens on already is kept, not bound twice.
out=$(migctl recover s --listen "$ADDR" 2>&1) || fail "recover s --listen $ADDR: $out"
printf '%s\n' "$out" | grep -qx "listen $ADDR" || fail "recover s --listen $ADDR: $out"
echo "ok: recover --listen on its own address: $out"
# A new address that cannot be bound (a file that is no socket) is
# refused to recover, saying why; s waits on where it was.
: >"$RUNDIR/not-a-socket"
err=$(migctl recover s --listen "unix:$RUNDIR/not-a-socket" 2>&1) &&
	fail "s listened over a file: $err"
case $err in *"cannot listen on unix:$RUNDIR/not-a-socket: Address already in use"*) ;;
*) fail "recover s --listen over a file: $err" ;; esac
[ "$(job_get s listen)" = "$ADDR" ] || fail "s listens on $(job_get s listen)"
echo "ok: $err"
# The source's copy is stale and its job still runs: neither a cont nor
# a cont --force may run it (the guest runs on s, waiting for pages).
err=$(vmmctl cont r 2>&1) && fail "a paused postcopy source continued"
case $err in *"a migration paused this VM for its switch, and its job still runs"*) ;;
*) fail "cont r: $err" ;; esac
err=$(vmmctl cont r --force 2>&1) && fail "a paused postcopy source continued with --force"
case $err in *"the mark stays: a migration paused this VM"*) ;; *) fail "cont r --force: $err" ;; esac
vmmctl status r | grep -q "paused, .*moved to tcp:" || fail "r: $(vmmctl status r)"
# Nor may the source look done: only s knows what it lacks.
migctl status r | grep -q "they are here only: keep this vmm" ||
	fail "r's status: $(migctl status r)"
echo "ok: $err"
# s still misses pages: its memory is neither checked (the pages would
# read as zeros) nor moved to another vmm.
err=$(vmmctl check s 2>&1) && fail "s checked while pages are missing: $err"
case $err in *"vmm s still waits for pages of a postcopy migration"*) ;; *) fail "check s: $err" ;; esac
start_vmm sx --memory 64M --incoming
err=$(vmmctl transfer s sx 2>&1) && fail "s moved while pages are missing: $err"
case $err in *"vmm s still waits for pages of a postcopy migration"*) ;; *) fail "transfer s: $err" ;; esac
vmmctl quit sx >/dev/null
echo "ok: $err"
# A recovery aimed at another migration's port says so (before: only
# "token mismatch"), and the job waits on.
start_vmm sy --memory 64M --incoming
addr_y=$(migctl --json incoming sy --listen tcp:127.0.0.1:0 | jget listen)
[ -n "$addr_y" ] || fail "incoming sy"
migctl recover r "$addr_y" >/dev/null || fail "recover r to sy's port"
not_this_job() { job_get r error | grep -q "the destination refused the main connection: token mismatch: the migration listening there is not this job (recover to where its destination job listens: its 'migctl status' says)"; }
wait_until 30 not_this_job || fail "r: $(job_get r state): $(job_get r error)"
wait_until 30 job_is r postcopy_paused || fail "r: $(job_get r state)"
echo "ok: r: $(job_get r error)"
migctl cancel sy --wait >/dev/null || fail "cancel sy"
vmmctl quit sy >/dev/null
# recover --wait waits on after a recovery that failed, and says why
# (it waited in silence).
migctl recover r tcp:127.0.0.1:1 --wait >/dev/null 2>"$RUNDIR/recover-wrong.err" &
wrong=$!
PIDS+=("$wrong")
wait_until 30 grep -q "^migctl: r: the recovery failed: cannot connect to tcp:127.0.0.1:1: .*; the job is postcopy-paused again ('migctl recover' tries again; this waits on)" \
	"$RUNDIR/recover-wrong.err" || fail "recover r --wait: $(cat "$RUNDIR/recover-wrong.err")"
kill -0 "$wrong" || fail "recover r --wait ended: $(cat "$RUNDIR/recover-wrong.err")"
kill "$wrong"
job_is r postcopy_paused || fail "r: $(job_get r state)"
echo "ok: a wrong address: $(cat "$RUNDIR/recover-wrong.err")"
migctl recover r "$ADDR" >/dev/null || fail "recover r (extra channel)"
wait_until 30 bash -c "'$BIN/migctl' --rundir '$RUNDIR' --json status s | grep -q 'Resume with 5 ram channels; the job has 4'" ||
	fail "s: $(job_get s state): $(job_get s error)"
wait_until 30 both_paused r s || fail "extra channel: r $(job_get r state), s $(job_get s state)"
[ "$(state_of s)" = running ] || fail "s is not running while paused"
echo "ok: refused: $(job_get s error)"
recover r s 0
# A new address that s looks at only after its source came back on the
# old one (dest-slow-recover) is answered then, and s stays where it was.
# s looks at it only once r is back, however slowly that comes (migd(8)).
: >"$RUNDIR/dest-slow-recover"
migctl pause r >/dev/null || fail "pause r (late recover)"
wait_until 30 both_paused r s || fail "pause: r $(job_get r state), s $(job_get s state)"
migctl recover s --listen tcp:127.0.0.1:0 >"$RUNDIR/late.out" 2>&1 &
late=$!
PIDS+=("$late")
wait_until 10 grep -q "s: recovering via tcp:127.0.0.1:0" "$RUNDIR/migd.log" ||
	fail "migd took no recover for s"
migctl recover r "$ADDR" >/dev/null || fail "recover r (before s's new address)"
wait_until 30 both_active r s || fail "not active again: r $(job_get r state), s $(job_get s state)"
rm "$RUNDIR/dest-slow-recover"
gone() { ! kill -0 "$1" 2>/dev/null; }
wait_until 30 gone "$late" || fail "recover s --listen got no answer: $(cat "$RUNDIR/late.out")"
wait "$late" && fail "s took a new address after its source came back: $(cat "$RUNDIR/late.out")"
case $(cat "$RUNDIR/late.out") in *"the source came back on $ADDR first: the job is postcopy-"*) ;;
*) fail "recover s --listen, late: $(cat "$RUNDIR/late.out")" ;; esac
[ "$(job_get s listen)" = "$ADDR" ] || fail "s listens on $(job_get s listen)"
echo "ok: $(cat "$RUNDIR/late.out")"
out=$(migctl --json status r --watch) || fail "r: $out"
[ "$(echo "$out" | jget state)" = completed ] || fail "r: $out"
vmmctl check s || fail "s: memory check"

note "the destination vmm quits while postcopy is paused: its job ends, the name is free"
# Before, the job stayed postcopy-paused for good (cancel is refused in
# postcopy), and the VM's name took no new job until migd restarted.
# s3's main thread sleeps between releasing the uffd and joining its vCPUs
# as the quit below ends it, as under load: before, a vCPU waiting for a
# missing page ran on, read the hole as zeros and printed a FAIL.
DST_FAULT=vmm-slow-quit small_postcopy r3 s3 --max-bandwidth 1M --channels 1
migctl pause r3 >/dev/null || fail "pause r3"
wait_until 30 both_paused r3 s3 || fail "pause: r3 $(job_get r3 state), s3 $(job_get s3 state)"
vmmctl quit s3 >/dev/null
wait_job_final s3
# faultd drops the session of the vmm that exited, its fault thread and
# uffd with it (before, it kept them until a vmm of that name attached).
wait_until 10 grep -q "s3: dropped the session (paused): its vmm has exited" \
	"$RUNDIR/faultd.log" || fail "faultd: $(tail -n 5 "$RUNDIR/faultd.log")"
# (A FAIL here is this guest's, the next s3 gets a console of its own.)
grep -a -m 8 FAIL "$RUNDIR/s3.serial" && fail "the first s3's guest ran on as its vmm quit"
job_get s3 error | grep -q "vmm s3 closed its connection: it quit or died, and the guest with it: nothing to recover" ||
	fail "s3: $(job_get s3 state): $(job_get s3 error)"
echo "ok: $(job_get s3 error)"
# Its source cannot tell: r3 stays paused, holding the guest as it was at
# the switch.  A plain cancel is refused; --force ends the job, and the
# vmm stays paused, marked as moved, for the operator to run (or quit).
err=$(migctl cancel r3 2>&1) && fail "a paused postcopy source was cancelled without --force"
case $err in *"r3 is postcopy-paused: "*"cancel with --force"*) ;; *) fail "cancel r3: $err" ;; esac
out=$(migctl --json cancel r3 --force --wait) || fail "cancel --force: $out"
[ "$(echo "$out" | jget state)" = cancelled ] || fail "r3: $out"
case $(echo "$out" | jget error) in
*"the source VM stays paused, marked as moved"*"'vmmctl cont r3 --force' runs it again"*) ;;
*) fail "r3: $out" ;; esac
# Its postcopy never completed: the copy here is not stale but holds the
# pages s3 lacked, and says so (before: "this copy is stale", and cont
# told the operator to quit it).
vmmctl status r3 | grep -q "paused, .*moved to tcp:.* by a postcopy not known to have completed (this copy holds the pages the destination may still lack: do not quit it)" ||
	fail "r3: $(vmmctl status r3)"
err=$(vmmctl cont r3 2>&1) && fail "r3 continued without --force"
case $err in *"by a postcopy not known to have completed"*"do not quit this vmm"*"quit the destination's vmm first, then 'vmmctl cont r3 --force'"*) ;;
*) fail "cont r3: $err" ;; esac
# A SIGTERM is put off while the mark stands; cont --force, which makes
# this copy the guest, drops it rather than end the guest.
kill -TERM "$(pid_of r3)"
wait_until 10 grep -q "signal 15: the guest moved to .* quitting once that migration completes" \
	"$RUNDIR/r3.log" || fail "r3's log: $(tail -n 3 "$RUNDIR/r3.log")"
vmmctl cont r3 --force >/dev/null || fail "cont r3 --force"
grep -q "the quit a signal asked for is dropped: this copy is the guest now" "$RUNDIR/r3.log" ||
	fail "r3's log: $(tail -n 3 "$RUNDIR/r3.log")"
[ "$(state_of r3)" = running ] || fail "r3 is $(state_of r3)"
vmmctl quit r3 >/dev/null
echo "ok: cancel --force: $(echo "$out" | jget error)"

note "the destination vmm dies in postcopy-active: the source hears it, and that no recovery can come"
# Before, the source paused with only "ram channel 0: send: Broken pipe",
# as if a recovery could bring the guest back, and its vmm said "do not
# quit it" for good.
small_postcopy r11 s11 --max-bandwidth 1M --channels 1
kill -KILL "$(pid_of s11)"
wait_job_final s11
wait_until 30 job_is r11 postcopy_paused || fail "r11: $(job_get r11 state)"
wait_until 10 test "$(job_get r11 unrecoverable)" = true ||
	fail "r11 may recover, it says: $(migctl --json status r11)"
case $(job_get r11 error) in
*"the destination said: vmm s11 closed its connection: it quit or died, and the guest with it: this job can never recover.  On the source host, cancel the job with --force: its vmm keeps the guest as it was at the switch ('vmmctl cont --force' runs it from there)"*) ;;
*) fail "r11: $(job_get r11 error)" ;; esac
echo "ok: r11: $(job_get r11 error)"
# A recover is refused, saying why (before, it tried, and its failure hid
# the reason); status --watch ends (exit 1, the error said; before, it
# waited for ever: timeout's 124).
for t in "recover r11 $ADDR --wait|r11 cannot recover: " \
	 "status r11 --watch|r11: postcopy-paused: "; do
	# shellcheck disable=SC2086
	out=$(timeout 60 "$BIN/migctl" --rundir "$RUNDIR" ${t%%|*} 2>&1)
	rc=$?
	[ $rc = 1 ] || fail "${t%%|*}: exit $rc: $out"
	case $out in *"${t#*|}"*"this job can never recover."*) ;;
	*) fail "${t%%|*}: $out" ;; esac
	echo "ok: ${t%%|*} ended: $(printf '%s\n' "$out" | tail -n 1)"
done
# The way out it names works: the guest runs on here, intact.
migctl cancel r11 --force --wait >/dev/null || fail "cancel r11 --force"
# The cancel's note replaces the advice it followed (before, the advice
# came twice, then stayed in the error after the cancel).
case $(job_get r11 error) in
*"; the destination said: vmm s11 closed its connection: it quit or died, and the guest with it: this job can never recover; vmm r11 stays paused, marked as moved, with the guest as it was at the switch ('vmmctl cont r11 --force' runs it from there)") ;;
*) fail "r11 after cancel --force: $(job_get r11 error)" ;; esac
vmmctl cont r11 --force >/dev/null || fail "cont r11 --force"
vmmctl check r11 || fail "r11: memory check after cont --force"
wait_progress r11 0
vmmctl quit r11 >/dev/null || fail "quit r11"

note "the destination vmm dies while the job is paused: the source's next recovery hears that none can come"
# Before, the destination's job ended and its address closed: each
# recovery failed with "Connection refused", and recover --wait waited
# for ever.  migd now answers on that address (tombstone.c).
small_postcopy r12 s12 --max-bandwidth 1M --channels 1
ADDR12=$ADDR
migctl pause r12 >/dev/null || fail "pause r12"
wait_until 30 both_paused r12 s12 || fail "pause: r12 $(job_get r12 state), s12 $(job_get s12 state)"
kill -KILL "$(pid_of s12)"
wait_exit "$(pid_of s12)"
wait_job_final s12
[ "$(job_get r12 unrecoverable)" != true ] || fail "r12 knew before it asked: $(job_get r12 error)"
# The destination's status says who answers there.
case $(job_get s12 error) in *"; migd answers its source on $ADDR12 that the job can never recover, for a day (across its restarts) or until the address is taken again") ;;
*) fail "s12: $(job_get s12 error)" ;; esac
# Strangers that connect and say nothing, more than it waits for, do
# not keep the source out (before, eight made it reset the source).
strangers=()
for _ in $(seq 20); do
	exec {g}<>"/dev/tcp/127.0.0.1/${ADDR12##*:}" && strangers+=("$g")
done
out=$(timeout 60 "$BIN/migctl" --rundir "$RUNDIR" recover r12 "$ADDR12" --wait 2>&1)
rc=$?
for g in "${strangers[@]}"; do exec {g}>&-; done
[ $rc = 1 ] || fail "recover r12 --wait: exit $rc: $out"
case $out in
*"r12: postcopy-paused: the destination's migd says its job ended: its vmm quit or died, and the guest with it: this job can never recover.  'migctl cancel r12 --force' ends it, and vmm r12 keeps the guest as it was at the switch ('vmmctl cont r12 --force' runs it from there)") ;;
*) fail "recover r12 --wait: $out" ;; esac
[ "$(job_get r12 unrecoverable)" = true ] || fail "r12: $(migctl --json status r12)"
grep -q "^migd: s12: told its source on $ADDR12 that the job can never recover" "$RUNDIR/migd.log" ||
	fail "migd: $(grep s12 "$RUNDIR/migd.log" | tail -n 3)"
echo "ok: r12: $(job_get r12 error)"
# Its vmm learns it too: its copy is the guest's only one (before, it
# said the destination "may still lack" pages, and "do not quit it").
out=$(vmmctl status r12)
case $out in *", moved to $ADDR12 (job "*") by a postcopy whose destination lost the guest (this copy, as it was at the switch, is its only one: 'vmmctl cont r12 --force' runs it once its job has ended, 'migctl cancel r12 --force')"*) ;;
*) fail "vmmctl status r12: $out" ;; esac
[ "$(vmmctl --json status r12 | jget moved_lost)" = true ] || fail "r12: $(vmmctl --json status r12)"
err=$(vmmctl quit r12 2>&1) && fail "quit r12 without --force: $err"
case $err in *"by a postcopy whose destination lost it: this copy, as it was at the switch, is the guest's only one, and quitting would lose it ('vmmctl cont r12 --force' runs it once its job has ended: 'migctl cancel r12 --force';"*) ;;
*) fail "quit r12: $err" ;; esac
# Its cont --force waits for the job's end, and says so (before, the
# status's advice to run it was refused: "the job decides").
err=$(vmmctl cont r12 --force 2>&1) && fail "cont --force of r12 under its job: $err"
case $err in *"its postcopy job, whose destination lost the guest, still holds it: end the job first ('migctl cancel r12 --force'), then 'vmmctl cont r12 --force' runs this copy, the guest's only one"*) ;;
*) fail "cont r12 --force under its job: $err" ;; esac
# Anything else on that address gets a worker's answer: not this
# protocol (EPROTO, 71), then the connection is closed.
exec {g}<>"/dev/tcp/127.0.0.1/${ADDR12##*:}"
printf 'GET / HTTP/1.0\r\n%56s\r\n' '' >&"$g"
ans=$(timeout 10 od -An -tx1 -N4 <&"$g" | tr -d ' \n')
exec {g}>&-
[ "$ans" = 47000000 ] || fail "a stranger on $ADDR12 was answered '$ans'"
# The address is not held against a new incoming job.
start_vmm s13 --memory 64M --incoming
incoming s13 "$ADDR12"
[ "$ADDR" = "$ADDR12" ] || fail "incoming s13 listens on $ADDR, not $ADDR12"
migctl cancel s13 --wait >/dev/null || fail "cancel s13"
vmmctl quit s13 >/dev/null
migctl cancel r12 --force --wait >/dev/null || fail "cancel r12 --force"
# Its error keeps why, and says what the cancel did (before, it still
# told the operator to cancel).
case $(job_get r12 error) in
"the destination's migd says its job ended: its vmm quit or died, and the guest with it: this job can never recover; vmm r12 stays paused, marked as moved, with the guest as it was at the switch ('vmmctl cont r12 --force' runs it from there)") ;;
*) fail "r12 after cancel --force: $(job_get r12 error)" ;; esac
vmmctl cont r12 --force >/dev/null || fail "cont r12 --force"
vmmctl check r12 || fail "r12: memory check after cont --force"
vmmctl quit r12 >/dev/null || fail "quit r12"
# A destination cancelled with --force while paused, as migd(8) has its
# operator do when the source cannot come back: so is its source told
# (before: "Connection refused" at each recovery, for ever).
small_postcopy r14 s14 --max-bandwidth 1M --channels 1
ADDR14=$ADDR
migctl pause r14 >/dev/null || fail "pause r14"
wait_until 30 both_paused r14 s14 || fail "pause: r14 $(job_get r14 state), s14 $(job_get s14 state)"
migctl cancel s14 --force --wait >/dev/null || fail "cancel s14 --force"
vmmctl quit s14 >/dev/null || fail "quit s14"
out=$(timeout 60 "$BIN/migctl" --rundir "$RUNDIR" recover r14 "$ADDR14" --wait 2>&1)
rc=$?
[ $rc = 1 ] || fail "recover r14 --wait: exit $rc: $out"
case $out in
*"r14: postcopy-paused: the destination's migd says its job ended: it was cancelled there with --force, and the guest given up: this job can never recover.  'migctl cancel r14 --force' ends it"*) ;;
*) fail "recover r14 --wait: $out" ;; esac
echo "ok: r14: $(job_get r14 error)"
migctl cancel r14 --force --wait >/dev/null || fail "cancel r14 --force"
vmmctl cont r14 --force >/dev/null || fail "cont r14 --force"
vmmctl check r14 || fail "r14: memory check after cont --force"
vmmctl quit r14 >/dev/null || fail "quit r14"

# A new vmm of that name takes a postcopy (before: "already has a
# session (paused); Detach it first", and no tool could).
start_vmm s3 --memory 64M --incoming
start_vmm r4 --memory 64M --test-guest dirty --guest-rate 2000 --guest-fast-first-pass \
	--heartbeat 100
wait_pass r4 0 2
incoming s3
postcopy_on_request r4 --max-bandwidth 16M --channels 2
wait_until 30 both_active r4 s3 || fail "no postcopy into the new s3: $(migctl status r4)"
out=$(migctl --json status r4 --watch) || fail "r4: $out"
check_done r4 s3 "$out"

note "cancel --force on a postcopy-paused destination: the guest's vCPUs keep waiting"
small_postcopy r5 s5 --max-bandwidth 1M --channels 1
migctl pause r5 >/dev/null || fail "pause r5"
wait_until 30 both_paused r5 s5 || fail "pause: r5 $(job_get r5 state), s5 $(job_get s5 state)"
err=$(migctl cancel s5 2>&1) && fail "a paused postcopy destination was cancelled without --force"
case $err in *"s5 is postcopy-paused: "*) ;; *) fail "cancel s5: $err" ;; esac
out=$(migctl --json cancel s5 --force --wait) || fail "cancel --force: $out"
[ "$(echo "$out" | jget state)" = cancelled ] || fail "s5: $out"
case $(echo "$out" | jget error) in
*"the guest here will never get its missing pages"*"quit this vmm"*) ;;
*) fail "s5: $out" ;; esac
# The missing pages do not turn into zeros: the uffd stays with faultd.
err=$(vmmctl check s5 2>&1) && fail "s5 checked after its job was cancelled: $err"
case $err in *"vmm s5 still waits for pages of a postcopy migration"*) ;; *) fail "check s5: $err" ;; esac
# Its status says so too, not only 'running'.
out=$(vmmctl status s5)
case $out in "s5: running, "*", postcopy pages still missing (a vCPU that needs one waits for it)"*) ;;
*) fail "status s5: $out" ;; esac
# Nor is it migrated on with its holes (before: 'completed', and the
# guest on the next host found 229 bad pages), and it is refused before
# anything reaches the destination, whose job waits on (before: used up
# by the connections, refused only at the vmm's DirtyStart).
start_vmm s5x --memory 64M --incoming
incoming s5x
err=$(migctl migrate s5 "$ADDR" --token "$TOKEN" --detach 2>&1) && fail "s5 migrated with missing pages: $err"
case $err in *"vmm s5 still waits for pages of a postcopy migration"*"(nothing was sent to tcp:"*) ;;
*) fail "migrate s5: $err" ;; esac
job_is s5x waiting || fail "s5x's job did not wait on: $(migctl status s5x)"
vmmctl quit s5x >/dev/null
wait_job_final s5x
# An active postcopy is refused even with --force.
small_postcopy r6 s6 --max-bandwidth 16M --channels 1
err=$(migctl cancel r6 --force 2>&1) && fail "an active postcopy was cancelled"
case $err in *"(--force takes only a postcopy-paused job)"*) ;; *) fail "cancel r6: $err" ;; esac
out=$(migctl --json status r6 --watch) || fail "r6: $out"
check_done r6 s6 "$out"
vmmctl quit s5 >/dev/null
# r5 waits paused for a recovery that cannot come, across migd's
# restarts too: only cancel --force ends it.
migctl cancel r5 --force --wait >/dev/null || fail "cancel r5 --force"
vmmctl quit r5 --force >/dev/null || fail "quit r5 --force"
echo "ok: $err"

note "a plain cancel on its way at the switch is dropped, though the job paused meanwhile"
# worker-slow-cancel: a worker looks at a plain cancel 10 s after it
# came.  This one comes in precopy, the timeout switches the job to
# postcopy at 3 s, and the job pauses before the worker looks.  Before,
# the worker took it as migd's end: the job ended, and the pages only
# r9 had were lost to the guest on s9.  The worker looks at the cancel
# only once the test saw the job paused, however slowly that comes
# (migd(8)).
stop_migd
start_migd TERN_FAULT=worker-slow-cancel
start_vmm r9 --memory 64M --test-guest dirty --guest-rate 2000 --guest-fast-first-pass \
	--heartbeat 100
wait_pass r9 0 2
start_vmm s9 --memory 64M --incoming
incoming s9
: >"$RUNDIR/worker-slow-cancel"
migctl migrate r9 "$ADDR" --token "$TOKEN" --max-bandwidth 4M --channels 1 \
	--timeout 3 --timeout-action postcopy --detach >/dev/null || fail "migrate r9"
migctl cancel r9 >/dev/null || fail "cancel r9 in precopy"
wait_until 30 both_active r9 s9 || fail "no switch on the timeout: r9 $(job_get r9 state), s9 $(job_get s9 state)"
migctl pause r9 >/dev/null || fail "pause r9"
wait_until 30 both_paused r9 s9 || fail "pause: r9 $(job_get r9 state), s9 $(job_get s9 state)"
rm "$RUNDIR/worker-slow-cancel"
paused_at=$(grep -n "^migd\[r9/out\]: .*postcopy paused" "$RUNDIR/migd.log" | head -n 1 | cut -d: -f1)
looked() { grep -q "^migd\[r9/out\]: .*a cancel came after the switch: ignored" "$RUNDIR/migd.log" || job_final r9; }
wait_until 30 looked || fail "r9's worker never looked at the cancel"
both_paused r9 s9 || fail "r9 took a cancel that crossed the switch: r9 $(job_get r9 state): $(job_get r9 error)"
dropped_at=$(grep -n "^migd\[r9/out\]: .*a cancel came after the switch: ignored" "$RUNDIR/migd.log" | cut -d: -f1)
[ -n "$paused_at" ] && [ "$dropped_at" -gt "$paused_at" ] ||
	fail "r9's worker looked at the cancel before it paused (line $dropped_at, paused at ${paused_at:-none})"
echo "ok: dropped while paused"
recover r9 s9 0
out=$(migctl --json status r9 --watch) || fail "r9: $out"
check_done r9 s9 "$out"
vmmctl quit r9 >/dev/null; vmmctl quit s9 >/dev/null

note "migd quits while a postcopy is paused: it leaves the workers, and the next migd adopts them"
# Before, they ended at once: nobody could ever recover them, and the
# guest's progress since the switch was lost.
# (paused at once: a cap that ends its recovery soon)
small_postcopy r2 s2 --max-bandwidth 16M --channels 1
ADDR2=$ADDR
migctl pause r2 >/dev/null || fail "pause r2"
wait_until 30 both_paused r2 s2 || fail "pause: r2 $(job_get r2 state), s2 $(job_get s2 state)"
# And a pair whose vmms have both exited meanwhile: their workers must
# not say that the vmms keep anything (before, the source's said "the
# source VM keeps the guest's remaining pages (paused)").  The source's
# worker holds the pages its vmm had (it waits paused: with the
# destination alive, a recovery would complete the job); it learns at
# its recovery that the destination lost the guest, and its cancel
# --force ends it (t_standin runs the same with stand-in vmms).
small_postcopy r8 s8 --max-bandwidth 1M --channels 1
migctl pause r8 >/dev/null || fail "pause r8"
wait_until 30 both_paused r8 s8 || fail "pause: r8 $(job_get r8 state), s8 $(job_get s8 state)"
kill -KILL "$(pid_of r8)" "$(pid_of s8)"
wait_exit "$(pid_of r8)"; wait_exit "$(pid_of s8)"
wait_job_final s8
job_get s8 error | grep -q "vmm s8 closed its connection: it quit or died, and the guest with it: nothing to recover" ||
	fail "s8: $(job_get s8 state): $(job_get s8 error)"
r8_said() { job_get r8 error | grep -qF "vmm r8 closed its connection (it quit or died): this worker now holds the only copy of the pages the destination still lacks: recover the job"; }
wait_until 20 r8_said || fail "r8: $(job_get r8 state): $(job_get r8 error)"
job_is r8 postcopy_paused || fail "r8: $(job_get r8 state): $(job_get r8 error)"
migctl recover r8 "$ADDR" >/dev/null || fail "recover r8"
r8_never() { [ "$(job_get r8 unrecoverable)" = true ]; }
wait_until 30 r8_never || fail "r8: $(migctl --json status r8)"
job_get r8 error | grep -qF "this job can never recover.  'migctl cancel r8 --force' ends it; vmm r8 had quit or died too: the guest is lost" ||
	fail "r8: $(job_get r8 error)"
migctl cancel r8 --force --wait >/dev/null || fail "cancel r8 --force"
job_get r8 error | grep -qF "cancelled while postcopy was paused; vmm r8 had closed its connection (it quit or died), and the guest's remaining pages, which only this job held since, end with it" ||
	fail "r8: $(job_get r8 state): $(job_get r8 error)"
w_r2=$(job_get r2 worker_pid) w_s2=$(job_get s2 worker_pid)
PIDS+=("$w_r2" "$w_s2")
stop_migd
grep "did not end; killing it" "$RUNDIR/migd.log" &&
	fail "migd had to kill a paused worker"
for v in r2 s2; do
	grep -q "^migd: $v: postcopy job [0-9a-f]* (worker [0-9]*, postcopy-paused) goes on without migd; the next migd on $RUNDIR/migd.sock will adopt it" \
		"$RUNDIR/migd.log" || fail "$v: not left: $(grep "$v" "$RUNDIR/migd.log" | tail -n 3)"
done
kill -0 "$w_r2" && kill -0 "$w_s2" || fail "a paused worker ended with its migd"
grep -E "^migd(\[[rs]8/(in|out)\]|: [rs]8): .*(keeps|runs here)" "$RUNDIR/migd.log" &&
	fail "a worker whose vmm had exited said that it keeps the guest"
[ "$(state_of s2)" = running ] || fail "s2 is $(state_of s2)"
[ "$(state_of r2)" = paused ] || fail "r2 is $(state_of r2): it holds pages s2 lacks"
echo "ok: migd left the paused workers and quit"
start_migd
wait_until 10 both_paused r2 s2 || fail "not adopted: r2 $(job_get r2 state), s2 $(job_get s2 state)"
[ "$(job_get r2 worker_pid)" = "$w_r2" ] && [ "$(job_get s2 worker_pid)" = "$w_s2" ] ||
	fail "adopted: $(migctl list)"
ADDR=$ADDR2
recover r2 s2 0
out=$(migctl --json status r2 --watch) || fail "r2: $out"
check_done r2 s2 "$out"
echo "ok: the next migd adopted r2 and s2, and their recovery completed"
vmmctl quit r2 >/dev/null; vmmctl quit s2 >/dev/null
stop_migd

note "cancel --force of a paused postcopy is taken when it comes, not at the next status tick"
# worker-no-report-tick: the workers' reporter threads never tick.  An
# abandon (cancel --force) was taken only there: under this fault never,
# and both jobs stayed paused.  The worker's command thread takes it now.
start_migd TERN_FAULT=worker-no-report-tick
small_postcopy ra sa --max-bandwidth 1M --channels 1
migctl pause ra >/dev/null || fail "pause ra"
wait_until 30 both_paused ra sa || fail "pause: ra $(job_get ra state), sa $(job_get sa state)"
for v in ra sa; do
	migctl cancel "$v" --force >/dev/null || fail "cancel $v --force"
	wait_job_final "$v"
	[ "$(job_get "$v" state)" = cancelled ] || fail "$v: $(migctl --json status "$v")"
	echo "ok: $v: $(job_get "$v" error)"
done
echo PASS
