#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# A raw flat image starts in real mode at 0:0x7c00 (or at --image-addr),
# sees the UART and fast A20, and runs.
. "$(dirname "$0")/lib.sh"
need_kvm

start_vmm boot --memory 4M --image "$TESTS/hello.img"
wait_until 20 grep -q "a20 on" "$RUNDIR/boot.serial" ||
	fail "no output from the image: $(cat "$RUNDIR/boot.serial")"
grep -q "hello from a raw image" "$RUNDIR/boot.serial" || fail greeting
[ "$(state_of boot)" = running ] || fail "image guest not running"
vmmctl status boot | grep -q image || fail "status does not say image"

start_vmm high --memory 4M --image "$TESTS/hello.img" --image-addr 0x10000
wait_until 20 grep -q "a20 on" "$RUNDIR/high.serial" ||
	fail "no output at 0x10000: $(cat "$RUNDIR/high.serial")"

# ---- a console nobody reads -------------------------------------------------
# An image that prints "A" lines without pause to the vmm's standard
# output, a FIFO this shell holds open (fd 9) but never reads: once the
# FIFO is full the vmm drops the output and counts it, the guest keeps
# running, and the vmm still stops, saves, continues, answers and quits on
# SIGTERM (vmm(8)).
note "a console nobody reads"
# cli; mov dx, 0x3f8; l: mov al, 'A'; out dx, al; mov al, 10; out dx, al; jmp l
printf '\xfa\xba\xf8\x03\xb0\x41\xee\xb0\x0a\xee\xeb\xf8' >"$RUNDIR/flood.img"
mkfifo "$RUNDIR/flood.fifo"
exec 9<>"$RUNDIR/flood.fifo"
"$BIN/vmm" --name flood --rundir "$RUNDIR" --memory 4M --vcpus 2 \
	--image "$RUNDIR/flood.img" 9<&- >"$RUNDIR/flood.fifo" 2>"$RUNDIR/flood.log" &
PID_flood=$!
PIDS+=("$PID_flood")
# A vmm stuck on its console times out a call rather than answering.
ctl() { "$BIN/vmmctl" --rundir "$RUNDIR" --timeout 15 "$@"; }
wait_until 20 ctl status flood ||
	{ cat "$RUNDIR/flood.log"; fail "vmm flood did not come up"; }
# fifo_room: the bytes the FIFO on fd 9 can still take.
fifo_room() {
	python3 -c 'import fcntl, struct, termios
size = fcntl.fcntl(9, 1032)             # F_GETPIPE_SZ
used = fcntl.ioctl(9, termios.FIONREAD, struct.pack("i", 0))
print(size - struct.unpack("i", used)[0])'
}
# Full as poll(2) sees it: the kernel reports a pipe writable only while
# one of its pages is free, so the last page may stay almost empty.
fifo_full() { [ "$(fifo_room)" -lt $((4096 + 256)) ]; }
wait_until 20 fifo_full || fail "flood: the FIFO never filled ($(fifo_room) bytes free)"
ctl stop flood || fail "flood: no stop with its console full"
ctl save flood "$RUNDIR/flood.state" >/dev/null ||
	fail "flood: no save with its console full"
ctl cont flood || fail "flood: no cont with its console full"
flood_get() { ctl --json status flood | jget "$1"; }
flood_above() { local v; v=$(flood_get "$1"); [ -n "$v" ] && [ "$v" -gt "$2" ]; }
exits=$(flood_get exits) dropped=$(flood_get console_dropped)
wait_until 20 flood_above exits "${exits:-0}" ||
	fail "flood: the guest stalled on its console: $(ctl --json status flood)"
wait_until 20 flood_above console_dropped "${dropped:-0}" ||
	fail "flood: no output counted as dropped: $(ctl --json status flood)"
ctl status flood | grep -q "console dropped [0-9]* bytes" ||
	fail "flood: status does not show the dropped output: $(ctl status flood)"
# Read again, the console flows again: more than the FIFO held comes out.
n=$(timeout 20 head -c 200000 <&9 | wc -c)
[ "$n" = 200000 ] || fail "flood: the console did not resume: $n bytes read"
kill -TERM "$PID_flood"
wait_exit "$PID_flood" || fail "flood: vmm exited with $? on SIGTERM"
exec 9<&-

# ---- a console file stays bounded -------------------------------------------
# The same image into a file with --serial-max 64K: at 64 KiB the file
# becomes FILE.1 and a new FILE begins, again and again; the two never
# hold much more than twice the bound, and the newest lines are kept.
note "a console file stays bounded"
start_vmm fl --memory 4M --image "$RUNDIR/flood.img" --serial-max 64K
rotations() { grep -c "console: .*fl.serial reached" "$RUNDIR/fl.log"; }
wait_until 30 eval '[ "$(rotations)" -ge 3 ]' ||
	fail "fl: the console was not renamed 3 times: $(tail -n 3 "$RUNDIR/fl.log")"
for f in "$RUNDIR/fl.serial" "$RUNDIR/fl.serial.1"; do
	size=$(stat -c %s "$f") || fail "no $f"
	[ "$size" -le $((65536 + 256)) ] || fail "$f holds $size bytes, past the bound"
done
[ "$(tail -c 2 "$RUNDIR/fl.serial.1")" = "A" ] || fail "fl.serial.1 does not end in a whole line"
[ "$(state_of fl)" = running ] || fail "fl is $(state_of fl)"
echo "ok: $(rotations) renames; $(stat -c %s "$RUNDIR/fl.serial") + $(stat -c %s "$RUNDIR/fl.serial.1") bytes on disk"
out=$(timeout 20 "$BIN/vmm" --name bad --rundir "$RUNDIR" --memory 4M --image "$RUNDIR/flood.img" \
	--serial-max 100 2>&1) && fail "--serial-max 100 was taken"
case $out in *"--serial-max 100: 0 (no bound) or at least 4K"*) ;; *) fail "$out" ;; esac
# An image that is not a regular file is refused; a FIFO used to block
# the vmm's start in open() for a writer that never came.
mkfifo "$RUNDIR/img.fifo"
out=$(timeout 20 "$BIN/vmm" --name fifo --rundir "$RUNDIR" --memory 4M \
	--image "$RUNDIR/img.fifo" 2>&1) && fail "a FIFO image was taken"
case $out in *"img.fifo: not a regular file"*) ;; *) fail "FIFO image: $out" ;; esac
: >"$RUNDIR/empty.img"
out=$(timeout 20 "$BIN/vmm" --name empty --rundir "$RUNDIR" --memory 4M \
	--image "$RUNDIR/empty.img" 2>&1) && fail "an empty image was taken"
case $out in *"empty.img: empty: nothing to boot"*) ;; *) fail "empty image: $out" ;; esac
echo PASS
