#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# What a guest can do to its vmm through its exits: reset, triple-fault,
# run where KVM cannot, split one access across two devices.  The VM
# stops in state shutdown or error with the reason, the control socket
# goes on answering, and such a guest is neither continued nor saved;
# an access split in two survives the vCPU's pause.
. "$(dirname "$0")/lib.sh"
need_kvm

message_of() { vmmctl --json status "$1" | sed -n 's/.*"message":"\([^"]*\)".*/\1/p'; }

# stopped NAME STATE WORDS: the VM reached STATE, and its status says WORDS.
stopped() {
	wait_until 20 eval '[ "$(state_of '"$1"')" = '"$2"' ]' ||
		fail "$1 is $(state_of "$1"), not $2: $(vmmctl status "$1")"
	case $(message_of "$1") in *"$3"*) ;;
	*) fail "$1's status lacks '$3': $(message_of "$1")" ;; esac
	grep -q "$3" "$RUNDIR/$1.log" || fail "$1's log lacks '$3'"
	echo "ok: $(vmmctl status "$1")"
}

note "a guest that resets through the keyboard controller"
start_vmm rs --memory 4M --image "$TESTS/reset.img"
stopped rs shutdown "vcpu 0: guest reset (0xfe to port 0x64) at cs:rip"
grep -q "reset ignored" "$RUNDIR/rs.serial" && fail "the guest ran on after its reset"

note "a guest that triple-faults"
start_vmm tf --memory 4M --image "$TESTS/tripfault.img"
stopped tf shutdown "vcpu 0: guest shut down (triple fault) at cs:rip"

note "a guest that jumps past its RAM: an emulation failure"
start_vmm bf --memory 4M --image "$TESTS/badfetch.img"
stopped bf error "KVM internal error, suberror 1 (emulation failure)"
case $(message_of bf) in *"at cs:rip 8:10000000") ;;
*) fail "the error does not name where: $(message_of bf)" ;; esac

note "a stopped guest is not continued, stopped or saved"
for vm in rs bf; do
	st=$(state_of $vm)
	out=$(vmmctl cont $vm 2>&1) && fail "cont $vm: $out"
	case $out in *"cannot continue: the VM is in state $st"*) ;;
	*) fail "cont $vm: $out" ;; esac
	out=$(vmmctl stop $vm 2>&1) && fail "stop $vm: $out"
	case $out in *"cannot stop: the VM is in state $st"*) ;;
	*) fail "stop $vm: $out" ;; esac
	# Loaded elsewhere, the state would run again: refused, with why.
	out=$(vmmctl save $vm "$RUNDIR/$vm.state" 2>&1) && fail "save $vm: $out"
	case $out in *"cannot save state: the VM is in state $st: vcpu 0: "*) ;;
	*) fail "save $vm: $out" ;; esac
	[ -e "$RUNDIR/$vm.state" ] && fail "save $vm left a file"
	echo "ok: $out"
done

note "a transfer of a stopped guest is refused; the destination waits on"
start_vmm rsin --memory 4M --incoming
out=$(vmmctl transfer rs rsin 2>&1) && fail "transfer rs: $out"
case $out in *"cannot save state: the VM is in state shutdown"*) ;;
*) fail "transfer rs: $out" ;; esac
echo "ok: $out"
[ "$(state_of rsin)" = incoming ] || fail "the destination is gone or changed: $(vmmctl status rsin 2>&1)"
[ "$(state_of rs)" = shutdown ] || fail "rs is $(state_of rs) after the transfer"

note "an access split between two devices keeps both halves across pauses"
start_vmm ms --memory 4M --image "$TESTS/mmiosplit.img"
wait_until 20 grep -qx S "$RUNDIR/ms.serial" || fail "the image did not start"
e0=$(vmmctl --json status ms | sed -n 's/.*"exits":\([0-9]*\).*/\1/p')
for i in $(seq 100); do
	vmmctl stop ms >/dev/null || fail "stop $i"
	vmmctl cont ms >/dev/null || fail "cont $i"
done
e1=$(vmmctl --json status ms | sed -n 's/.*"exits":\([0-9]*\).*/\1/p')
[ "$e1" -gt $((e0 + 1000)) ] || fail "the image hardly ran: $e0 -> $e1 exits"
[ "$(state_of ms)" = running ] || fail "ms is $(state_of ms)"
bad=$(grep -cx X "$RUNDIR/ms.serial")
[ "$bad" -eq 0 ] || fail "$bad of 100 pauses gave the guest a stale half"
echo "ok: 100 pauses, $((e1 - e0)) exits, no stale half"

for vm in rs tf bf rsin ms; do
	vmmctl quit $vm >/dev/null || fail "quit $vm"
done
echo PASS
