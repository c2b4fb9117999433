#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The full-state test guest (--test-guest full) survives save/load into a
# fresh vmm, five moves in a row with 1 and with 2 vCPUs: after each,
# every check it runs (XSAVE, LAPIC timer, PIT, TSC, IPIs, NMIs, pending
# interrupts, syscall) keeps passing (4 s between moves, 10 s after the
# last; each console is read to its end), its counters go on from where
# they were, no gap exceeds the pause, and vmmctl check passes.
# A vCPU the host holds still for 5 s while the other runs fails no
# check (nothing was lost: it takes its interrupts when it runs again).
# Then each piece of state the vmm can drop on purpose (TERN_STATE_DROP)
# makes the guest print the FAIL line that names it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fullguest.sh"
need_kvm

HB_MS=1000
RUN_BEATS=10            # heartbeats = seconds each check must keep passing
GUEST=(--memory 64M --test-guest full --guest-rate 100000 --heartbeat $HB_MS)

# hop FROM TO N: move the guest into a fresh vmm; check it goes on there.
hop() {
	local from=$1 to=$2 n=$3 c t0 t1 pause_ms gap=0 f
	local -a before
	start_vmm "$to" --memory 64M --vcpus "$n" --incoming
	for ((c = 0; c < n; c++)); do
		before[$c]="$(beat_field "$from" "$c" ticks) $(beat_field "$from" "$c" ipis) $(beat_field "$from" "$c" nmis) $(pages_of "$from" "$c")"
	done
	t0=$(date +%s%N)
	vmmctl transfer "$from" "$to" >/dev/null || fail "transfer $from -> $to"
	t1=$(date +%s%N)
	pause_ms=$(( (t1 - t0) / 1000000 ))
	wait_exit "$(pid_of "$from")" || fail "$from did not quit cleanly"
	# Everything the guest printed there, to its last instruction, and
	# here for RUN_BEATS heartbeats (the next hop reads the rest).
	no_fail "$from"
	watch_guest "$to" "$n"
	for ((c = 0; c < n; c++)); do
		set -- ${before[$c]}
		[ "$(beat_field "$to" "$c" ticks)" -gt "$1" ] &&
		[ "$(beat_field "$to" "$c" ipis)" -gt "$2" ] &&
		[ "$(beat_field "$to" "$c" nmis)" -gt "$3" ] &&
		[ "$(pages_of "$to" "$c")" -gt "$4" ] ||
			fail "$to: vcpu $c: counters did not go on from '${before[$c]}': $(last_beat "$to" "$c")"
	done
	# The first heartbeat of each vCPU on the destination reports the
	# longest stretch the vCPU did not run since the one before, on the
	# source: the pause.  It must not be longer (with 2 s of slack for
	# the host's scheduling; a lost clock would be off by far more).
	for ((c = 0; c < n; c++)); do
		f=$(grep -a -m 1 "^tg: vcpu $c pass " "$RUNDIR/$to.serial" |
			sed -n 's/.* gap \([0-9]*\) .*/\1/p')
		[ -n "$f" ] && [ "$f" -le $((pause_ms + 2000)) ] ||
			fail "$to: vcpu $c: a gap of ${f:-?} ms across a transfer of $pause_ms ms"
		[ "$f" -gt "${gap:-0}" ] && gap=$f
	done
	vmmctl check "$to" >/dev/null || fail "$to: memory check after the move"
	echo "ok: $from -> $to: transfer $pause_ms ms, the guest's gap across it $gap ms"
}

for n in 1 2; do
	note "$n vCPU(s): five moves into fresh vmms"
	start_vmm "m${n}_0" --vcpus "$n" "${GUEST[@]}"
	for ((c = 0; c < n; c++)); do
		wait_until 30 beats_at_least "m${n}_0" "$c" 2 ||
			fail "m${n}_0: vcpu $c printed no heartbeats"
	done
	all_ok "m${n}_0" "$n"
	# Four seconds on each vmm between moves (every check runs each
	# second; an interrupt counts as lost after one), the full
	# RUN_BEATS after the last.
	for i in 1 2 3 4; do
		RUN_BEATS=4 hop "m${n}_$((i - 1))" "m${n}_$i" "$n"
	done
	hop "m${n}_4" "m${n}_5" "$n"
	echo "last: $(last_beat "m${n}_5" 0)"
	vmmctl quit "m${n}_5" >/dev/null
	no_fail "m${n}_5"
done

# The host holds one vCPU still for seconds while the other runs on, as
# a loaded host does (its thread not scheduled) or a postcopy whose link
# is down (the vCPU blocked on a page still on the source).  Nothing is
# lost: the IPIs and NMIs sent to it wait in its LAPIC and vCPU events
# and it takes them when it runs again, so no check may fail, on either
# vCPU (an interrupt counts as lost after a second of the receiver's
# running, not of the sender's).
note "2 vCPUs: the host holds vCPU 1 still for 5 s while vCPU 0 runs"
start_vmm h --vcpus 2 "${GUEST[@]}"
wait_until 30 beats_at_least h 1 2 || fail "h: no heartbeat"
all_ok h 2
tid=$(vcpu_tid h 1)
[ -n "$tid" ] || fail "h: no thread named vcpu1: $(cat /proc/"$(pid_of h)"/task/*/comm)"
b0=$(beats_of h 0) b1=$(beats_of h 1)
"$TESTS/itest_threadstop" "$tid" 5000
case $? in
0)
	beats_during=$(( $(beats_of h 0) - b0 ))
	wait_until 20 beats_at_least h 1 $((b1 + 3)) ||
		fail "h: vcpu 1 did not go on after the hold"
	no_fail h
	all_ok h 2
	gap=$(grep -a "^tg: vcpu 1 pass " "$RUNDIR/h.serial" | tail -n +$((b1 + 1)) |
		sed -n 's/.* gap \([0-9]*\) .*/\1/p' | sort -n | tail -n 1)
	[ "${gap:-0}" -ge 1000 ] || fail "h: vcpu 1 was held 5 s but reported gaps of ${gap:-?} ms at most"
	if [ "$beats_during" -gt 0 ]; then
		echo "ok: vcpu 1 held (gap $gap ms), vcpu 0 ran on ($beats_during heartbeats): $(last_beat h 0)"
	else
		# (the hold came while vcpu 1 held the console: vcpu 0
		# waited for it and did not run either)
		not_tried "vcpu 0 did not run while vcpu 1 was held"
	fi ;;
77)	not_tried "ptrace is not allowed here: a vCPU held still by the host" ;;
*)	fail "could not hold vcpu 1 of h still" ;;
esac
vmmctl quit h >/dev/null

# drop_hop FROM TO N PIECE: move with PIECE dropped from the load.
drop_hop() {
	export TERN_STATE_DROP=$4
	start_vmm "$2" --memory 64M --vcpus "$3" --incoming
	unset TERN_STATE_DROP
	vmmctl transfer "$1" "$2" >/dev/null || fail "transfer $1 -> $2"
	wait_exit "$(pid_of "$1")" || fail "$1 did not quit cleanly"
	grep -q "TERN_STATE_DROP: not restoring $4" "$RUNDIR/$2.log" ||
		fail "$2 did not drop $4: $(cat "$RUNDIR/$2.log")"
}
fail_line() { grep -a -m 1 "^tg: vcpu [0-9]* FAIL $2:" "$RUNDIR/$1.serial"; }

# drop PIECE CHECK N: a guest moved without PIECE says "FAIL CHECK:".
drop() {
	local piece=$1 check=$2 n=$3 src=d_$1 line
	note "TERN_STATE_DROP=$piece: the guest must report $check"
	start_vmm "$src" --vcpus "$n" "${GUEST[@]}"
	wait_until 30 beats_at_least "$src" $((n - 1)) 1 || fail "$src: no heartbeat"
	all_ok "$src" "$n"
	drop_hop "$src" "${src}_1" "$n" "$piece"
	wait_until 20 fail_line "${src}_1" "$check" ||
		fail "no 'FAIL $check' after dropping $piece: $(tail -n 3 "$RUNDIR/${src}_1.serial")"
	echo "ok: $(fail_line "${src}_1" "$check")"
	vmmctl quit "${src}_1" >/dev/null
}

drop xsave xsave 1
drop lapic tick 1

# A pending NMI lives in the vCPU events, not in the LAPIC: only a move
# that stops a vCPU with an NMI on its way loses one when the events are
# dropped.  With 2 vCPUs exchanging NMIs, about half the moves do: try
# up to 12 (the chance that all 12 miss is below 1 in 4000).
note "TERN_STATE_DROP=events: the guest must report a lost NMI"
start_vmm e_0 --vcpus 2 "${GUEST[@]}"
wait_until 30 beats_at_least e_0 1 1 || fail "e_0: no heartbeat"
found=
for i in $(seq 1 12); do
	drop_hop "e_$((i - 1))" "e_$i" 2 events
	# An NMI not acknowledged in 1 s of the receiver's running is
	# reported; 3 s of heartbeats without a report mean that none was
	# lost this time.
	if wait_until 4 fail_line "e_$i" nmi; then
		found=$i
		break
	fi
	# A report that comes just after the wait still counts; any other
	# failure does not belong.
	if fail_line "e_$i" nmi >/dev/null; then
		found=$i
		break
	fi
	! grep -a "FAIL" "$RUNDIR/e_$i.serial" | grep -av " FAIL nmi:" ||
		fail "e_$i: the guest reported a failure"
done
[ -n "$found" ] || fail "12 moves without events and no lost NMI reported"
echo "ok after $found move(s): $(fail_line "e_$found" nmi)"
vmmctl quit "e_$found" >/dev/null

# The TSC: on a host whose guests read the host's TSC whatever the vmm
# sets (PVM: writes of MSR_IA32_TSC have no effect), dropping it loses
# nothing and the guest must keep passing; elsewhere a fresh vCPU's TSC
# starts near 0 and the guest must see it go back.
if [ -d /sys/module/kvm_pvm ]; then
	note "TERN_STATE_DROP=tsc on PVM: nothing is lost, the guest keeps passing"
	start_vmm t_0 --vcpus 2 "${GUEST[@]}"
	wait_until 30 beats_at_least t_0 1 1 || fail "t_0: no heartbeat"
	drop_hop t_0 t_1 2 tsc
	RUN_BEATS=3 watch_guest t_1 2
	echo "ok: tsc not restored, the guest's TSC is the host's: $(last_beat t_1 0)"
else
	drop tsc tsc 2
fi
echo PASS
