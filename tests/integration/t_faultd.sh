#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# faultd, the postcopy fault daemon, with real incoming vmms (run without
# any capability) and itest_pagepeer playing the destination worker and
# the source: pages needed from the source come back with the source's
# data, the others as zeros, the stats add up, a dead page link pauses
# the session until Relink; garbage on a page link fails that session
# only, garbage on faultd.sock closes that peer only; Attach refusals say
# what was wrong (a vmm that answers UffdCreate with something other than
# a userfaultfd, or with one of more features than faultd serves,
# included); a minor fault fails its session only; a vmm slow to answer
# delays nobody else, and
# one too slow keeps no uffd; faultd holds no capability.
. "$(dirname "$0")/lib.sh"
[ -c /dev/userfaultfd ] || skip "/dev/userfaultfd is missing (Linux 6.1 or later)"
command -v setpriv >/dev/null || skip "setpriv (util-linux) is missing"
PEER=$TESTS/itest_pagepeer
peer() { "$PEER" "$RUNDIR" "$@"; }

# start_faultd_in DIR [PREFIX...]: faultd on DIR; sets FAULTD_PID.
start_faultd_in() {
	local dir=$1
	shift
	"$@" "$BIN/faultd" --rundir "$dir" >>"$dir/faultd.log" 2>&1 &
	FAULTD_PID=$!
	PIDS+=("$FAULTD_PID")
	wait_until 20 test -S "$dir/faultd.sock" ||
		{ cat "$dir/faultd.log"; fail "faultd did not come up"; }
}

# A vmm with no capability at all (none permitted, none in its bounding
# set, no new privileges).
NOCAPS=(setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs)
start_vmm_nocaps() {
	local name=$1
	shift
	"${NOCAPS[@]}" "$BIN/vmm" --name "$name" --rundir "$RUNDIR" \
		--serial "$RUNDIR/$name.serial" "$@" >"$RUNDIR/$name.log" 2>&1 &
	PIDS+=("$!")
	eval "PID_$name=$!"
	wait_until 20 vmmctl status "$name" ||
		{ cat "$RUNDIR/$name.log"; fail "vmm $name did not come up"; }
}

status_field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status"; }

note "faultd starts, keeps /dev/userfaultfd and no capability"
start_faultd_in "$RUNDIR"
for f in CapEff CapPrm CapInh CapBnd CapAmb; do
	v=$(status_field "$FAULTD_PID" $f)
	[ "$v" = 0000000000000000 ] || fail "faultd $f is $v, faultd(8) says none"
done
[ "$(status_field "$FAULTD_PID" NoNewPrivs)" = 1 ] || fail "faultd: NoNewPrivs is not set"
why=$(no_caps_anywhere "$FAULTD_PID") || fail "faultd: $why"
# SIGHUP is ignored (it ended faultd, and its sessions, before).
kill -HUP "$FAULTD_PID"
sleep 0.5
kill -0 "$FAULTD_PID" 2>/dev/null || fail "faultd died of SIGHUP"
# The thread that starts the fault threads took SCHED_FIFO while faultd
# had CAP_SYS_NICE (rtspawn.c), which root has unless a container took it.
RT=0
have_sys_nice && RT=1
[ "$(fifo_threads "$FAULTD_PID")" = $RT ] ||
	fail "faultd: $(fifo_threads "$FAULTD_PID") threads in SCHED_FIFO, expected $RT (its spawner)"
ls -l "/proc/$FAULTD_PID/fd" | grep -q ' -> /dev/userfaultfd$' ||
	fail "faultd holds no /dev/userfaultfd"
echo "ok: faultd $(status_field "$FAULTD_PID" CapEff), NoNewPrivs 1"
out=$(timeout 20 "$BIN/faultd" --rundir "$RUNDIR" 2>&1) && fail "a second faultd started"
echo "$out" | grep -q "already running" || fail "second faultd: $out"
# Root's faultd in a run directory another uid owns: it binds its socket
# with no capability left, and says so (before: "Permission denied").
mkdir "$RUNDIR/other" && chown 65534:65534 "$RUNDIR/other"
out=$(timeout 20 "$BIN/faultd" --rundir "$RUNDIR/other" 2>&1) && fail "faultd bound in another uid's directory"
echo "$out" | grep -q "faultd holds no capability by now: $RUNDIR/other must let its own uid write there" ||
	fail "faultd in another uid's directory: $out"

note "garbage on faultd.sock closes that peer only (once more with sessions below)"
peer sockabuse || fail "faultd.sock abuse"
# And the log says who and what (before: nothing).
for said in "the length of a frame of 4.0 GiB, over the 1.0 MiB a frame may have" \
	"a frame of 40 B that is not a tern.rpc.Frame" \
	"a frame of 60 B that is not a tern.rpc.Frame"; do
	grep -qE "^faultd: control: dropped pid [0-9]+ \(itest_pagepeer, uid $(id -u)\): it sent $said\$" \
		"$RUNDIR/faultd.log" || fail "faultd's log lacks '$said': $(tail -n 3 "$RUNDIR/faultd.log")"
done

note "--no-realtime: every thread in the ordinary class"
R3=$RUNDIR/r3
mkdir -p "$R3"
"$BIN/faultd" --rundir "$R3" --no-realtime >"$R3/faultd.log" 2>&1 &
pid3=$!
PIDS+=("$pid3")
# Its socket comes before its start-up line: wait for the line.
wait_until 20 grep -q "fault threads in the ordinary class" "$R3/faultd.log" ||
	fail "faultd --no-realtime did not come up: $(cat "$R3/faultd.log")"
[ "$(fifo_threads "$pid3")" = 0 ] || fail "faultd --no-realtime has threads in SCHED_FIFO"
kill -TERM "$pid3"
wait_exit "$pid3" || fail "faultd --no-realtime exited with $?"

need_kvm "vmms without capabilities: Attach refusals, hostile page links, sessions served and failed, Discard"
note "vmms without capabilities"
start_vmm_nocaps in --memory 64M --incoming
for v in bad1 bad2 bad3 bad4; do start_vmm_nocaps $v --memory 64M --incoming; done
start_vmm run --memory 64M --test-guest idle --heartbeat 100
[ "$(status_field "$PID_in" CapEff)" = 0000000000000000 ] || fail "the vmm has capabilities"
[ "$(status_field "$PID_in" CapBnd)" = 0000000000000000 ] || fail "the vmm has a bounding set"

note "Attach refusals"
fd0=$(readlink "/proc/$FAULTD_PID/fd/0")
peer errors in run || fail "Attach refusals"
# A refusal after the session was half made closed faultd's fd 0 once.
[ "$(readlink "/proc/$FAULTD_PID/fd/0")" = "$fd0" ] ||
	fail "faultd's fd 0 was $fd0, is now $(readlink "/proc/$FAULTD_PID/fd/0")"

note "a vmm whose UffdCreate answers a pipe: refused"
"$PEER" "$RUNDIR" fakevmm fake1 >"$RUNDIR/fake1.log" 2>&1 &
fake=$!
PIDS+=("$fake")
wait_until 10 grep -q "ready" "$RUNDIR/fake1.log" || fail "fake vmm: $(cat "$RUNDIR/fake1.log")"
peer notuffd fake1 || fail "Attach to a vmm that lends a pipe"
# The fake vmm answers before it logs: wait for its line.
wait_until 10 grep -q "UffdRelease" "$RUNDIR/fake1.log" ||
	fail "faultd did not release the fake vmm's uffd"
kill "$fake"

note "a vmm whose uffd has features faultd does not serve: refused"
# fakeuffd makes a real uffd with faultd's /dev/userfaultfd, answers it,
# then reads a page that is in the page cache (or forks).  Before, faultd
# took both: the minor fault went round UFFDIO_ZEROPAGE (EEXIST) and a
# wake-up for ever, a CPU spinning, and each fork left a userfaultfd in
# faultd for good.
nuffd() { ls -l "/proc/$FAULTD_PID/fd" | grep -c userfaultfd; }
kinds=minor
# UFFD_FEATURE_EVENT_FORK needs CAP_SYS_PTRACE (bit 19).
if (( (0x$(status_field $$ CapEff) >> 19) & 1 )); then
	kinds="minor fork"
else
	not_tried "CAP_SYS_PTRACE is missing: a uffd with fork events"
fi
before=$(nuffd)
for kind in $kinds; do
	"$PEER" "$RUNDIR" fakeuffd u$kind $kind >"$RUNDIR/u$kind.log" 2>&1 &
	fake=$!
	PIDS+=("$fake")
	wait_until 10 grep -q "ready" "$RUNDIR/u$kind.log" || fail "fake vmm: $(cat "$RUNDIR/u$kind.log")"
	want=MINOR_SHMEM
	[ $kind = fork ] && want=EVENT_FORK
	peer notuffd u$kind "vmm u$kind: its userfaultfd has features faultd does not serve: $want (" ||
		fail "Attach to a vmm whose uffd has $want"
	# Released, the fake vmm's read (or its forks) went on.
	wait_until 10 grep -q "UffdRelease" "$RUNDIR/u$kind.log" ||
		fail "faultd did not release u$kind's uffd: $(cat "$RUNDIR/u$kind.log")"
	kill "$fake"
done
[ "$(nuffd)" = "$before" ] || fail "faultd holds $(nuffd) userfaultfds, $before before"
kill -0 "$FAULTD_PID" || fail "faultd died"

note "a vmm that registers its RAM for minor faults: its session fails, not faultd"
"$PEER" "$RUNDIR" fakeuffd ureg minorreg >"$RUNDIR/ureg.log" 2>&1 &
fake=$!
PIDS+=("$fake")
wait_until 10 grep -q "ready" "$RUNDIR/ureg.log" || fail "fake vmm: $(cat "$RUNDIR/ureg.log")"
peer abuse ureg minor || fail "a minor fault"
peer detach ureg force >/dev/null || fail "Detach ureg"
kill "$fake"

note "a vmm slow to answer delays its own Attach only"
# fake2 holds GetRam until told; meanwhile faultd answers the others
# (a second Attach of fake2 is refused as busy, List answers).  Before,
# faultd waited for the vmm on its event loop: both waited 5 s behind it,
# and the second Attach timed out at the held vmm.
"$PEER" "$RUNDIR" fakevmm fake2 "$RUNDIR/fake2.go" >"$RUNDIR/fake2.log" 2>&1 &
fake=$!
PIDS+=("$fake")
wait_until 10 grep -q "ready" "$RUNDIR/fake2.log" || fail "fake vmm: $(cat "$RUNDIR/fake2.log")"
peer notuffd fake2 >"$RUNDIR/attach2.log" 2>&1 &
attach=$!
PIDS+=("$attach")
wait_until 10 grep -q "holding GetRam" "$RUNDIR/fake2.log" || fail "faultd never asked fake2"
peer notuffd fake2 "is being attached" || fail "a second Attach while the first waits"
peer list >/dev/null || fail "List while an Attach waits for its vmm"
kill -0 "$attach" 2>/dev/null || fail "the Attach ended early: $(cat "$RUNDIR/attach2.log")"
touch "$RUNDIR/fake2.go"
wait_exit "$attach" || fail "the held Attach: $(cat "$RUNDIR/attach2.log")"
cat "$RUNDIR/attach2.log"
wait_until 10 grep -q "UffdRelease" "$RUNDIR/fake2.log" ||
	fail "faultd did not release fake2's uffd"
kill "$fake"

note "a vmm that takes UffdCreate after faultd gave up keeps no uffd"
# The vmm stalls 6 s before it handles UffdCreate; faultd gives up after
# 5 s.  Before, the vmm then made the uffd for nobody: a later read of a
# missing page waited for good, and the next Attach was refused.
TERN_FAULT=vmm-late-uffd-create start_vmm_nocaps late --memory 4M --incoming
peer notuffd late "UffdCreate: Connection timed out" 1024 ||
	fail "Attach to a vmm that stalls in UffdCreate"
# Once it answers, it is past the stale call.
wait_until 15 vmmctl status late || fail "the late vmm does not answer"
n=$(ls -l "/proc/$PID_late/fd" | grep -c userfaultfd)
[ "$n" = 0 ] || fail "the late vmm holds $n userfaultfd(s)"
grep -q "after its caller's deadline" "$RUNDIR/late.log" ||
	fail "the late vmm did not refuse the stale UffdCreate: $(tail -n 3 "$RUNDIR/late.log")"
timeout 10 "$BIN/vmmctl" --rundir "$RUNDIR" read late 0x1000 16 >/dev/null ||
	fail "a read of the late vmm's empty RAM did not answer"
echo "ok: $(grep -h "after its caller's deadline" "$RUNDIR/late.log" | tail -n 1)"

note "garbage on faultd.sock, sessions open: it closes that peer only"
peer sockabuse || fail "faultd.sock abuse"

note "a hostile page link fails its own session only"
peer abuse bad1 garbage || fail "garbage on the page link"
peer abuse bad2 oversize || fail "an oversize frame on the page link"
peer abuse bad3 unexpected || fail "an unexpected PageData"
peer abuse bad4 blocking || fail "a uffd made blocking, then a Relink"
kill -0 "$FAULTD_PID" || fail "faultd died"

note "the failed sessions' fault threads: SCHED_FIFO, no capabilities"
n=$(ls "/proc/$FAULTD_PID/task" | wc -l)
# All but the main thread: the spawner and one fault thread per session
# (bad4's has ended).
[ "$(fifo_threads "$FAULTD_PID")" = $(( RT * (n - 1) )) ] ||
	fail "faultd: $(fifo_threads "$FAULTD_PID") of $n threads in SCHED_FIFO"
why=$(no_caps_anywhere "$FAULTD_PID") || fail "faultd: $why"
echo "ok: $(( RT * (n - 1) )) of $n threads in SCHED_FIFO, none with a capability"

note "meanwhile another session serves its VM"
peer serve in || fail "serving vmm in"

note "the failed sessions stay failed, with their errors, until detached"
out=$(peer list) || fail "List"
echo "$out"
[ "$(echo "$out" | grep -c ' failed ')" = 4 ] || fail "expected 4 failed sessions"
echo "$out" | grep -q "^bad2 failed .*longer than" || fail "bad2's error"
echo "$out" | grep -q "^in " && fail "vmm in still has a session after Detach"
peer detach bad1 | grep -q "still needs 64 pages" || fail "Detach bad1 without force"
for v in bad1 bad2 bad3 bad4; do peer detach $v force || fail "Detach $v"; done
[ -z "$(peer list)" ] || fail "sessions left after Detach"
out=$(peer detach nosuch 2>&1) && fail "Detach of nothing"
echo "$out" | grep -q "no session for VM nosuch" || fail "$out"

note "Discard of a preallocated vmm while faultd still holds its uffd"
# As migd does after a failed migration: the RAM, punched to holes, is
# allocated again, and must not wait on its own registration.
start_vmm_nocaps pre --memory 64M --incoming --prealloc
peer abuse pre garbage || fail "a failed session on pre"
peer discard pre || fail "Discard pre"
vmmctl status pre >/dev/null || fail "pre does not answer after Discard"
peer detach pre force || fail "Detach pre"

# A faultd whose /dev/userfaultfd is /dev/null (a bind mount) no longer
# starts (t_faultd_device); the vmm's own refusal of a lent descriptor
# that is not the device is tried directly (t_control, itest_ctlabuse).

note "faultd logs no line per page, and quits cleanly"
# (Peers dropped from faultd.sock are told, three per 10 s at most.)
n=$(grep -vc "^faultd: control: dropped pid " "$RUNDIR/faultd.log")
[ "$n" -lt 60 ] || { cat "$RUNDIR/faultd.log"; fail "faultd logged $n lines"; }
grep -q "protocol violation" "$RUNDIR/faultd.log" || fail "faultd did not log the violations"
kill -TERM "$FAULTD_PID"
wait_exit "$FAULTD_PID" || fail "faultd exited with $?"
echo PASS
