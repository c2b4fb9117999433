#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# make demo: boot the built-in test guest, watch it run, check its memory,
# move it into a fresh vmm and check it again.  Exits by itself.
set -u
cd "$(dirname "$0")/.."
BIN=${O:-build}/bin
RUNDIR=$(mktemp -d /tmp/tern-demo.XXXXXX)
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$RUNDIR"
}
trap cleanup EXIT

say() {
	if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi
}
ctl() { "$BIN/vmmctl" --rundir "$RUNDIR" "$@"; }
up() {
	local i
	for ((i = 0; i < 100; i++)); do
		ctl status "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "demo: vmm $1 did not start:"; cat "$RUNDIR/$1.log"; exit 1
}
watch_console() {	# NAME SECONDS
	timeout "$2" tail -n +1 -f "$RUNDIR/$1.console" | sed 's/^/   | /'
}

if [ ! -w /dev/kvm ]; then
	echo "demo: /dev/kvm is missing or not writable; the demo needs KVM" >&2
	exit 1
fi

say "Starting vmm 'demo': 256 MiB, 2 vCPUs, the test guest rewriting all its memory"
"$BIN/vmm" --name demo --memory 256M --vcpus 2 --rundir "$RUNDIR" \
	--test-guest dirty --guest-rate 200000 --heartbeat 500 \
	--serial "$RUNDIR/demo.console" >"$RUNDIR/demo.log" 2>&1 &
PIDS+=($!)
up demo
ctl status demo

say "Guest console: each vCPU's pass, pages written, pages that failed the guest's own check"
watch_console demo 3

say "Checking every page of guest memory against the guest's write order"
ctl check demo || exit 1

say "Moving the running guest into a fresh vmm (its state, and its RAM memfds)"
"$BIN/vmm" --name demo2 --memory 256M --vcpus 2 --rundir "$RUNDIR" --incoming \
	--serial "$RUNDIR/demo2.console" >"$RUNDIR/demo2.log" 2>&1 &
PIDS+=($!)
up demo2
ctl transfer demo demo2 || exit 1
ctl status demo2
say "The guest carries on in demo2 where it left off"
watch_console demo2 2
ctl check demo2 || exit 1
ctl quit demo2

say "Done: the guest ran, its memory checked intact before and after the move"
echo "Next: 'make check' runs every test; see README.md and man/vmm.8, man/vmmctl.8."
