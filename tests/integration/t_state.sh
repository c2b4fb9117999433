#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Complete state save and load: the guest moves to a fresh vmm --incoming
# (handing over its RAM memfds, or a copy of RAM) and carries on with its
# memory intact and its counters continuing; bad state is refused with a
# clear error and costs nothing; a Discard forgets the guest, even when
# its preallocation fails, and leaves the TSC check this host's; a state
# loaded with no RAM brought (a state file's) is not started.
. "$(dirname "$0")/lib.sh"
need_kvm

vcpus_of() { vmmctl --json status "$1" | sed -n 's/.*"vcpus":\([0-9]*\).*/\1/p'; }

# hop FROM TO [--copy]: start TO, move the guest there (move).
hop() {
	start_vmm "$2" --memory 64M --vcpus "$(vcpus_of "$1")" --incoming
	move "$@"
}

# move FROM TO [--copy]: move the guest to the incoming TO, then check it
# continues there.
move() {
	local from=$1 to=$2 copy=${3:-} n c before
	n=$(vcpus_of "$from")
	[ "$(state_of "$to")" = incoming ] || fail "$to is not incoming"
	before=()
	for ((c = 0; c < n; c++)); do before+=("$(pages_of "$from" "$c")"); done
	vmmctl transfer "$from" "$to" $copy || fail "transfer $from -> $to $copy"
	wait_exit "$(pid_of "$from")" || fail "$from did not quit cleanly"
	[ "$(state_of "$to")" = running ] || fail "$to is not running"
	for ((c = 0; c < n; c++)); do
		# The counters continue from where they were on the source.
		wait_until 60 pages_above "$to" "$c" "${before[$c]}" ||
			fail "$to: vcpu $c did not continue past ${before[$c]} pages"
	done
	vmmctl check "$to" || fail "$to: memory check after the move"
	grep -a -m 8 FAIL "$RUNDIR/$to.serial" && fail "$to: the guest reported a failure"
	echo "ok: $from -> $to ${copy:-(memfds)}"
}

for n in 1 2; do
	note "$n vCPU(s): dirty guest through three fresh vmms"
	start_vmm "a$n" --memory 64M --vcpus "$n" --test-guest dirty \
		--guest-rate 100000 --heartbeat 100
	for ((c = 0; c < n; c++)); do wait_pass "a$n" "$c" 2; done
	hop "a$n" "b$n"
	hop "b$n" "c$n" --copy
	hop "c$n" "d$n"
	vmmctl quit "d$n"
done

note "fill guest, copied, throttled: the throttle goes with it"
start_vmm f --memory 64M --vcpus 2 --test-guest fill --guest-rate 50000 --heartbeat 100
wait_pass f 1 2
vmmctl throttle f 30 >/dev/null || fail "throttle f"
hop f g --copy
# An operator's throttle, on the vmm that replaces f (before: 0 on g).
[ "$(vmmctl --json status g | jget throttle)" = 30 ] ||
	fail "g: throttle $(vmmctl --json status g | jget throttle), f had 30"
echo "ok: g throttled 30% as f was"

note "a guest its operator paused stays paused on the new vmm"
# Before, the transfer ran it there: a VM paused for maintenance woke up.
vmmctl stop g >/dev/null || fail "stop g"
start_vmm h --memory 64M --vcpus 2 --incoming
out=$(vmmctl transfer g h) || fail "transfer g h: $out"
[ "$out" = "g now is on h (RAM handed over; vCPUs throttled 30%, as on g; paused, as it was on g: 'vmmctl cont h' runs it)" ] ||
	fail "transfer g h said: $out"
wait_exit "$(pid_of g)" || fail "g did not quit cleanly"
[ "$(state_of h)" = paused ] || fail "h is $(state_of h), not paused"
pages_still h 1 || fail "h's vCPU 1 ran while paused"
before=$(pages_of h 1)
vmmctl check h || fail "h: memory check while paused"
vmmctl cont h >/dev/null || fail "cont h"
wait_until 60 pages_above h 1 "${before:-0}" || fail "h did not continue past ${before:-0} pages"
vmmctl check h || fail "h: memory check after cont"
echo "ok: $out"
vmmctl quit h >/dev/null

note "refusals"
start_vmm s --memory 64M --test-guest dirty --heartbeat 100 --guest-rate 50000
wait_pass s 0 2
out=$(vmmctl save s "$RUNDIR/x.state" 2>&1) && fail "saved a running VM"
echo "$out" | grep -q "stop it first" || fail "$out"
vmmctl stop s >/dev/null
# A link planted where a fixed temporary name would be is not written
# through (vmmctl runs as root; the directory may be anyone's).
echo "not vmmctl's" >"$RUNDIR/victim"
ln -s "$RUNDIR/victim" "$RUNDIR/good.state.tmp"
out=$(vmmctl save s "$RUNDIR/good.state") || fail "save: $out"
[ "$(cat "$RUNDIR/victim")" = "not vmmctl's" ] || fail "save wrote through a planted link"
[ -f "$RUNDIR/good.state" ] && [ ! -L "$RUNDIR/good.state" ] ||
	fail "the state file is not a regular file of its own"
rm "$RUNDIR/good.state.tmp"
# Not taken for a snapshot: it says that it holds no RAM.
case $out in "saved the CPU and device state of s (1 vCPU) to $RUNDIR/good.state; it holds no RAM, so it is no snapshot"*) ;;
*) fail "save: $out" ;; esac
ls "$RUNDIR"/good.state.?????? 2>/dev/null && fail "temporary file left behind"
# Only a regular file is replaced: a device, a FIFO or a link keeps its
# place (before, 'save s /dev/null' left a regular file at /dev/null).
mknod "$RUNDIR/null" c 1 3
mkfifo "$RUNDIR/fifo"
ln -s "$RUNDIR/good.state" "$RUNDIR/link.state"
echo "not a state" >"$RUNDIR/other"
for t in "null|a character device" "fifo|a FIFO" "link.state|a symbolic link" \
	 "other|a file that is no state file (it does not begin with TERNVMS)"; do
	out=$(vmmctl save s "$RUNDIR/${t%%|*}" 2>&1) && fail "save s ${t%%|*}: $out"
	case $out in "vmmctl: $RUNDIR/${t%%|*} is ${t#*|}"*) ;; *) fail "save s ${t%%|*}: $out" ;; esac
done
[ -c "$RUNDIR/null" ] && [ -p "$RUNDIR/fifo" ] && [ -L "$RUNDIR/link.state" ] &&
	[ "$(cat "$RUNDIR/other")" = "not a state" ] ||
	fail "save replaced what was no state file: $(ls -l "$RUNDIR")"
echo "ok: $out"
rm "$RUNDIR/null" "$RUNDIR/fifo" "$RUNDIR/link.state" "$RUNDIR/other"
: >"$RUNDIR/empty.state"
out=$(vmmctl save s "$RUNDIR/empty.state") || fail "save over an empty file: $out"
out=$(vmmctl save s "$RUNDIR/good.state") || fail "save over an older state file: $out"

start_vmm in --memory 64M --incoming
out=$(vmmctl cont in 2>&1) && fail "an incoming vmm started without state"
echo "$out" | grep -q "no state loaded yet" || fail "$out"

head -c 100 "$RUNDIR/good.state" >"$RUNDIR/trunc.state"
out=$(vmmctl load in "$RUNDIR/trunc.state" 2>&1) && fail "loaded a truncated file"
echo "$out" | grep -q "truncated or damaged" || fail "$out"
# Only the magic: truncated, not "not a tern VM state file"; a directory
# is named as one.
head -c 8 "$RUNDIR/good.state" >"$RUNDIR/magic.state"
out=$(vmmctl load in "$RUNDIR/magic.state" 2>&1) && fail "loaded 8 bytes"
[ "$out" = "vmmctl: $RUNDIR/magic.state: truncated: a state file's header is 24 bytes, this file has 8" ] ||
	fail "$out"
# A file longer than its header says is not called truncated.
cat "$RUNDIR/good.state" "$RUNDIR/good.state" >"$RUNDIR/double.state"
out=$(vmmctl load in "$RUNDIR/double.state" 2>&1) && fail "loaded a doubled file"
echo "$out" | grep -q "double.state: damaged: longer than its header says" || fail "$out"
mkdir "$RUNDIR/dir.state"
out=$(vmmctl load in "$RUNDIR/dir.state" 2>&1) && fail "loaded a directory"
[ "$out" = "vmmctl: $RUNDIR/dir.state: is a directory, not a state file" ] || fail "$out"

# Garbage in the message body, and one byte changed (before the
# checksum, such a byte often decoded, and was loaded).
cp "$RUNDIR/good.state" "$RUNDIR/bad.state"
dd if=/dev/urandom of="$RUNDIR/bad.state" bs=1 seek=40 count=64 conv=notrunc status=none
out=$(vmmctl load in "$RUNDIR/bad.state" 2>&1) && fail "loaded a corrupted state"
echo "corrupted: $out"
half=$(( $(stat -c %s "$RUNDIR/good.state") / 2 ))
cp "$RUNDIR/good.state" "$RUNDIR/byte.state"
python3 -c 'import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[int(sys.argv[2])] ^= 1
open(sys.argv[1], "wb").write(b)' "$RUNDIR/byte.state" "$half"
cmp -s "$RUNDIR/good.state" "$RUNDIR/byte.state" && fail "the byte at $half did not change"
out=$(vmmctl load in "$RUNDIR/byte.state" 2>&1) && fail "loaded a state with byte $half changed"
[ "$out" = "vmmctl: $RUNDIR/byte.state: damaged: its checksum does not match its contents (it changed after it was saved)" ] ||
	fail "byte $half changed: $out"
echo "ok: one byte changed: $out"

# A file of the first format (TERNVMS1: no checksum) is still read; the
# edits below are made in one (the message starts at byte 16).
as_v1() {	# SRC DST
	{ printf TERNVMS1; tail -c +9 "$1" | head -c 8; tail -c +25 "$1"; } >"$2"
}
as_v1 "$RUNDIR/good.state" "$RUNDIR/good1.state"

# Version is the first field of the message: bytes 08 01 after the header.
cp "$RUNDIR/good1.state" "$RUNDIR/v2.state"
printf '\x02' | dd of="$RUNDIR/v2.state" bs=1 seek=17 conv=notrunc status=none
out=$(vmmctl load in "$RUNDIR/v2.state" 2>&1) && fail "loaded version 2"
echo "$out" | grep -q "state version 2, this vmm loads version 1" || fail "$out"

# A guest TSC frequency far from this host's, which this KVM (no TSC
# scaling here) cannot give: tsc_khz is field 14, a varint, and protobuf
# takes a field's last occurrence, so one appended to the message
# overrides the saved value.  The gap 2^64/1e6 kHz and a bit wrapped the
# old check (gap * 1e6 in 64 bits) to "within 250 ppm".
byte() { printf "\\$(printf %03o "$1")"; }
le64() {	# the 8 bytes of $1, little-endian
	local i
	for ((i = 0; i < 8; i++)); do byte $(( ($1 >> (8 * i)) & 255 )); done
}
with_tsc() {	# SRC DST KHZ: SRC's state with the guest's TSC at KHZ
	local v=$3 b bytes=(112) len          # 112: field 14, varint
	while ((v > 127)); do
		bytes+=($(( (v & 127) | 128 )))
		v=$((v >> 7))
	done
	bytes+=("$v")
	len=$(( $(stat -c %s "$1") - 16 + ${#bytes[@]} ))
	{
		head -c 8 "$1"
		le64 "$len"
		tail -c +17 "$1"
		for b in "${bytes[@]}"; do byte "$b"; done
	} >"$2"
}
with_tsc "$RUNDIR/good1.state" "$RUNDIR/tsc1.state" 1
out=$(vmmctl load in "$RUNDIR/tsc1.state" 2>&1) && fail "loaded a 1 kHz TSC"
echo "$out"
host_khz=$(echo "$out" | sed -n 's/.*this host.s at \([0-9]*\) kHz, and this host.s KVM cannot scale it.*/\1/p')
if [ -n "$host_khz" ]; then
	khz=$(( host_khz + 18446744073710 ))
	with_tsc "$RUNDIR/good1.state" "$RUNDIR/tscwrap.state" "$khz"
	out=$(vmmctl load in "$RUNDIR/tscwrap.state" 2>&1) &&
		fail "loaded a guest TSC of $khz kHz on a $host_khz kHz host"
	echo "$out" | grep -q "runs at $khz kHz.*\(cannot scale it\|more than KVM can set\)" ||
		fail "$out"
else
	# Refused all the same, and for its TSC (not a crash, not another
	# reason that would skip the check above unseen).
	echo "$out" | grep -qi "tsc" ||
		fail "a 1 kHz TSC refused for another reason: $out"
	echo "this host's KVM scales the TSC: the unscaled check is not used here"
fi

start_vmm other --memory 128M --incoming
out=$(vmmctl load other "$RUNDIR/good.state" 2>&1) && fail "loaded into a different RAM size"
echo "$out" | grep -q "the state is of a guest with 64.0 MiB of RAM, this vmm has 128.0 MiB (start it with --memory 64M)" ||
	fail "$out"

out=$(vmmctl load s "$RUNDIR/good.state" 2>&1) && fail "loaded into a running vmm"
echo "$out" | grep -q "not waiting for an incoming guest" || fail "$out"

note "a transfer between different sizes is refused before the source stops"
start_vmm x --memory 64M --vcpus 1 --test-guest dirty --heartbeat 100 --guest-rate 50000
wait_pass x 0 2
start_vmm y --memory 64M --vcpus 2 --incoming
out=$(vmmctl transfer x y 2>&1) && fail "transfer between different vCPU counts"
echo "$out"
echo "$out" | grep -q "vmm y has 64.0 MiB and 2 vCPUs, x has 64.0 MiB and 1: start y with the same --memory and --vcpus" ||
	fail "$out"
[ "$(state_of y)" = incoming ] || fail "y did not stay incoming: $(vmmctl status y 2>&1)"
[ "$(state_of x)" = running ] || fail "x stopped by a refused transfer"

note "a transfer that fails after the RAM handover"
# A destination that takes the memfds, then refuses the state.
"$TESTS/itest_pagepeer" "$RUNDIR" fakedst fy $((64 << 20)) 1 >"$RUNDIR/fy.out" 2>&1 &
FY=$!
PIDS+=("$FY")
wait_until 20 grep -q "ready" "$RUNDIR/fy.out" || fail "no fake destination: $(cat "$RUNDIR/fy.out")"
out=$(vmmctl transfer x fy 2>&1) && fail "transfer to a destination that refuses the state"
echo "$out"
echo "$out" | grep -q "fy, which was sent x's RAM, was made to quit" || fail "$out"
echo "$out" | grep -q "x is running again" || fail "$out"
wait_exit "$FY" || fail "the fake destination was not told to quit: $(cat "$RUNDIR/fy.out")"
grep -q "AdoptRam (with descriptors)" "$RUNDIR/fy.out" || fail "no handover: $(cat "$RUNDIR/fy.out")"
[ "$(state_of x)" = running ] || fail "x did not resume"
wait_progress x 0
vmmctl check x || fail "x after the failed transfer"
out=$(vmmctl transfer x s 2>&1) && fail "transfer to a vmm that is not incoming"
echo "$out" | grep -q "not waiting for an incoming guest" || fail "$out"
[ "$(state_of x)" = running ] || fail "x stopped by a refused transfer"

note "a destination that dies mid-transfer before it starts the guest"
# It holds nothing once gone: the source, the guest's only copy, resumes.
# Before, it stayed paused, marked as moved to the dead vmm, and its cont
# advised to quit it.  The points: the destination took the RAM, loaded
# the state (RAM handed over, then copied), or was told to start.
pre=("${HOST_EXEC[@]}")
for f in adopt load:--copy load cont cont:--copy; do
	point=${f%%:*} copy=${f#"$point"}
	copy=${copy#:}
	k=k$point${copy:+c}
	HOST_EXEC=(env TERN_FAULT=vmm-die-$point "${pre[@]}")
	start_vmm "$k" --memory 64M --vcpus 1 --incoming
	HOST_EXEC=("${pre[@]}")
	out=$(vmmctl transfer x "$k" $copy 2>&1) && fail "transfer to $k, which dies on it: $out"
	echo "$out"
	wait_exit "$(pid_of "$k")"
	echo "$out" | grep -q "transfer failed; $k (pid $(pid_of "$k")) has exited without starting the guest: it holds nothing of it" ||
		fail "$k: $out"
	echo "$out" | grep -q "x is running again" || fail "$k: $out"
	[ "$(state_of x)" = running ] || fail "x did not resume after $k died: $(vmmctl status x 2>&1)"
	vmmctl status x | grep -q "moved to" && fail "x is still marked: $(vmmctl status x)"
	wait_progress x 0
	vmmctl check x || fail "x after $k died"
done

note "a destination that dies once it started the guest: the source waits"
# It may have run the guest: the source stays paused and marked, and the
# operator decides.  With a copy, the source is as it was before.
HOST_EXEC=(env TERN_FAULT=vmm-die-running "${pre[@]}")
start_vmm krun --memory 64M --vcpus 1 --incoming
HOST_EXEC=("${pre[@]}")
out=$(vmmctl transfer x krun --copy 2>&1) && fail "transfer to krun, which dies on it: $out"
echo "$out"
wait_exit "$(pid_of krun)"
echo "$out" | grep -q "krun (pid $(pid_of krun)) exited after it started the guest, which is lost there; x stays paused, marked as moved, as it was before the transfer: 'vmmctl cont x --force' runs it from there" ||
	fail "$out"
[ "$(state_of x)" = paused ] || fail "x is $(state_of x), not paused"
vmmctl status x | grep -q "moved to vmm krun.*, which has exited since (this copy may be the guest's only one)" ||
	fail "x is not marked, or not as moved to a vmm gone: $(vmmctl status x)"
[ "$(vmmctl --json status x | jget moved_gone)" = true ] || fail "$(vmmctl --json status x)"
# Its cont does not advise first to quit it, the guest's last copy.
err=$(vmmctl cont x 2>&1) && fail "x ran while marked"
case $err in *"cannot continue: the guest moved to vmm krun on this host"*", and that vmm has exited since: if it never ran the guest, this copy is the guest, and 'vmmctl cont x --force' runs it; if it did, this copy is from before the move") ;;
*) fail "cont x: $err" ;; esac
vmmctl cont x --force >/dev/null || fail "cont x --force"
wait_progress x 0
vmmctl check x || fail "x after krun died"

note "two transfers of one guest at once: one wins, the other is refused"
# Before, both could save the paused source and start it: the guest ran
# twice, on the same memfds.  Three rounds, as the race goes either way.
for r in 1 2 3; do
	start_vmm "w$r" --memory 64M --test-guest dirty --heartbeat 100 --guest-rate 50000
	wait_pass "w$r" 0 1
	start_vmm "w${r}a" --memory 64M --incoming
	start_vmm "w${r}b" --memory 64M --incoming
	vmmctl transfer "w$r" "w${r}a" >"$RUNDIR/w${r}a.out" 2>&1 & ta=$!
	vmmctl transfer "w$r" "w${r}b" >"$RUNDIR/w${r}b.out" 2>&1 & tb=$!
	wait "$ta"; ra=$?
	wait "$tb"; rb=$?
	[ $((ra == 0)) != $((rb == 0)) ] ||
		fail "round $r: exits $ra and $rb: $(cat "$RUNDIR/w${r}a.out" "$RUNDIR/w${r}b.out")"
	win=w${r}a lose=w${r}b
	[ $ra = 0 ] || { win=w${r}b; lose=w${r}a; }
	[ "$(state_of "$lose")" = incoming ] || fail "round $r: $lose is $(state_of "$lose")"
	[ "$(state_of "$win")" = running ] || fail "round $r: $win is $(state_of "$win")"
	vmmctl check "$win" || fail "round $r: $win's memory"
	echo "ok: round $r: $win ran it; $lose: $(tail -n 1 "$RUNDIR/$lose.out")"
	vmmctl quit "$win"
	vmmctl quit "$lose"
done

note "a destination whose KVM refuses the RAM keeps its own and waits on"
pre=("${HOST_EXEC[@]}")
HOST_EXEC=(env TERN_FAULT=vmm-adopt-refused "${pre[@]}")
start_vmm kz --memory 64M --vcpus 1 --incoming
HOST_EXEC=("${pre[@]}")
out=$(vmmctl transfer x kz 2>&1) && fail "transfer to a vmm whose KVM refuses the RAM"
echo "$out"
echo "$out" | grep -q "KVM refused the RAM (Cannot allocate memory); this vmm keeps its own" ||
	fail "$out"
echo "$out" | grep -q "x is running again" || fail "$out"
echo "$out" | grep -q "made to quit" && fail "kz was made to quit: $out"
[ "$(state_of kz)" = incoming ] || fail "kz did not stay incoming: $(vmmctl status kz 2>&1)"
[ "$(state_of x)" = running ] || fail "x did not resume"
# kz holds none of x's memfds, and its own RAM is the guest's memory
# again: a copy into it runs the guest.
[ "$(ls -l /proc/"$PID_kz"/fd | grep -c 'memfd:tern-ram')" = 1 ] ||
	fail "kz holds $(ls -l /proc/"$PID_kz"/fd | grep -c 'memfd:tern-ram') RAM memfds"
move x kz --copy
vmmctl quit kz

note "Discard: the guest is forgotten, and the TSC check stays this host's"
PEER=$TESTS/itest_pagepeer
start_vmm pre --memory 64M --incoming --prealloc
if [ -n "$host_khz" ]; then
	# Within 250 ppm of this host, 0.6 and then 1.2 times that away: the
	# second must be refused, however close it is to the first.
	near=$(( host_khz + host_khz * 150 / 1000000 ))
	far=$(( host_khz + host_khz * 300 / 1000000 ))
	with_tsc "$RUNDIR/good1.state" "$RUNDIR/tscnear.state" "$near"
	with_tsc "$RUNDIR/good1.state" "$RUNDIR/tscfar.state" "$far"
	vmmctl load pre "$RUNDIR/tscnear.state" || fail "a TSC 150 ppm off refused"
	"$PEER" "$RUNDIR" discard pre || fail "Discard pre"
	out=$(vmmctl load pre "$RUNDIR/tscfar.state" 2>&1) &&
		fail "a TSC 300 ppm off this host loaded after one 150 ppm off"
	echo "$out" | grep -q "this host's at $host_khz kHz" || fail "$out"
	echo "ok: $out"
fi
vmmctl load pre "$RUNDIR/good.state" || fail "load pre"
[ "$(vmmctl --json status pre | jget guest)" = test ] || fail "pre: $(vmmctl --json status pre)"
# A Discard whose new preallocation fails (a memory cgroup too small)
# still forgets the guest: its RAM is gone, so there is nothing to run.
cg=$(memory_cgroup $((32 << 20)))
if [ -n "$cg" ]; then
	CGROUPS+=("$cg")
	echo "$(pid_of pre)" >"$cg/cgroup.procs" || fail "move pre into $cg"
	out=$("$PEER" "$RUNDIR" discard pre 2>&1) && fail "64 MiB preallocated under 32 MiB"
	echo "$out" | grep -q "cannot be preallocated again" || fail "$out"
	echo "ok: refused: ${out#FAIL: }"
	echo "$(pid_of pre)" >"$(dirname "$cg")/cgroup.procs" || fail "move pre back"
	out=$(vmmctl cont pre 2>&1) && fail "pre ran the guest its Discard dropped"
	echo "$out" | grep -q "no state loaded yet" || fail "$out"
	[ "$(vmmctl --json status pre | jget guest)" = none ] ||
		fail "pre still shows the discarded guest: $(vmmctl --json status pre)"
	vmmctl load pre "$RUNDIR/good.state" || fail "pre refuses a state after the failed Discard"
else
	not_tried "no memory cgroup could be made here: the failed preallocation"
fi

note "after all that, the incoming vmm still takes a good state"
[ "$(state_of in)" = incoming ] || fail "refusals changed the incoming vmm"
# With --json: the status, which says that no RAM came (before: the text).
out=$(vmmctl --json load in "$RUNDIR/good.state" 2>"$RUNDIR/load.err") ||
	fail "good state refused after bad ones: $(cat "$RUNDIR/load.err")"
echo "$out"
again=$(vmmctl load in "$RUNDIR/good.state" 2>&1) && fail "loaded a second state"
echo "$again" | grep -q "cannot load state: a guest's state is loaded here already" ||
	fail "a second load: $again"

note "but a state file holds no RAM: load says so, and cont does not start zeros"
# Before, load said "'vmmctl cont in' starts it", and cont started the
# guest on zeroed RAM, which triple-faulted at once.
case $(cat "$RUNDIR/load.err") in "vmmctl: note: $RUNDIR/good.state holds no RAM, and nothing brought the guest's to in: 'vmmctl cont in' is refused"*) ;;
*) fail "load without RAM: $(cat "$RUNDIR/load.err")" ;; esac
[ "$(echo "$out" | jget ram_missing)" = true ] && [ "$(echo "$out" | jget name)" = in ] ||
	fail "load --json without RAM: $out"
[ "$(vmmctl --json status in | jget ram_missing)" = true ] ||
	fail "status: $(vmmctl --json status in)"
vmmctl status in | grep -q ", state loaded without RAM (cont refused)" ||
	fail "status: $(vmmctl status in)"
err=$(vmmctl cont in 2>&1) && fail "cont started a guest whose RAM nothing brought: $(vmmctl status in)"
case $err in *"cannot continue: the state loaded holds no RAM, and nothing brought the guest's"*"quit in") ;;
*) fail "cont without RAM: $err" ;; esac
echo "ok: $err"
# --force runs a copy marked as moved; it makes no RAM of zeros.
err=$(vmmctl cont in --force 2>&1) && fail "cont --force started a guest whose RAM nothing brought"
case $err in *"cannot continue: the state loaded holds no RAM"*) ;;
*) fail "cont --force without RAM: $err" ;; esac
[ "$(state_of in)" = incoming ] || fail "in is $(state_of in) after the refused cont"
note "and the source, never harmed, resumes"
vmmctl cont s >/dev/null && wait_progress s 0 && vmmctl check s || fail "source"
echo PASS
