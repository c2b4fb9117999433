#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# make demo: live-migrate a running test guest between two vmms on this
# machine through migd, with migctl's progress bar, then check every page
# of its memory on the destination.  Exits by itself.
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
vmmctl() { "$BIN/vmmctl" --rundir "$RUNDIR" "$@"; }
migctl() { "$BIN/migctl" --rundir "$RUNDIR" "$@"; }
up() {	# NAME CHECK-COMMAND...
	local name=$1 i
	shift
	for ((i = 0; i < 100; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "demo: $name did not start:"; cat "$RUNDIR/$name.log"; exit 1
}
start() {	# NAME ARGS...: a background program, logged
	local name=$1
	shift
	"$@" >"$RUNDIR/$name.log" 2>&1 &
	PIDS+=($!)
}
watch_console() {	# NAME SECONDS
	timeout "$2" tail -n 4 -f "$RUNDIR/$1.console" | sed 's/^/   | /'
}

if [ ! -e /dev/kvm ]; then
	echo "demo: /dev/kvm is missing: this host offers no KVM (no KVM module for its CPU is loaded, such as kvm_intel or kvm_amd, or it is a virtual machine without nested virtualization); the demo needs KVM" >&2
	exit 1
elif [ ! -w /dev/kvm ]; then
	echo "demo: /dev/kvm is not writable; the demo needs KVM (run it as root)" >&2
	exit 1
fi

say "Two vmms: 'src' runs the test guest (512 MiB, 2 vCPUs, rewriting its memory), 'dst' waits --incoming"
start src "$BIN/vmm" --name src --memory 512M --vcpus 2 --rundir "$RUNDIR" \
	--test-guest dirty --guest-rate 100000 --heartbeat 500 \
	--serial "$RUNDIR/src.console"
start dst "$BIN/vmm" --name dst --memory 512M --vcpus 2 --rundir "$RUNDIR" \
	--incoming --serial "$RUNDIR/dst.console"
start migd "$BIN/migd" --rundir "$RUNDIR"
up src vmmctl status src
up dst vmmctl status dst
up migd migctl list
vmmctl status src
vmmctl status dst

say "The guest's console on src: each vCPU's pass, pages written, pages that failed its own check"
watch_console src 2

say "migctl incoming dst --listen tcp:127.0.0.1:0   (the destination side; prints a token)"
out=$(migctl --json incoming dst --listen tcp:127.0.0.1:0) || { echo "$out"; exit 1; }
token=$(echo "$out" | grep -o '"token":"[0-9a-f]*' | cut -d'"' -f4)
addr=$(echo "$out" | grep -o '"listen":"[^"]*' | head -n 1 | cut -d'"' -f4)
echo "token $token, listening on $addr"

say "migctl migrate src $addr --token ... --channels 4"
migctl migrate src "$addr" --token "$token" --channels 4 || exit 1

say "Where the guest is now"
vmmctl status src
vmmctl status dst
say "The guest carries on in dst"
watch_console dst 2

say "Checking every page of the guest's memory on dst against its write order"
vmmctl check dst || exit 1

say "The job, as migd recorded it"
migctl status src

say "Done: the guest moved live, and its memory checked intact on the destination"
echo "Next: 'make check' runs every test; see README.md and the man pages in man/."
