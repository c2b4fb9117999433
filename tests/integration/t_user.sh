#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# A vmm of its own user (DESIGN.md: "its own user, no capabilities,
# /dev/kvm by group").  Its socket (0660) and directory (0750) let in its
# group; migd's workers and faultd, root without capabilities, reach it
# through that group only, and a migration, precopy and postcopy, moves
# its guest to another vmm of that user.  /dev/kvm (root's alone on this
# host) is given to the user only inside a mount namespace of this test.
. "$(dirname "$0")/lib.sh"
need_kvm
for c in setpriv unshare mknod mount; do
	command -v $c >/dev/null || skip "$c (util-linux, coreutils) is missing"
done
unshare -m --propagation private true 2>/dev/null ||
	skip "no mount namespace can be made here (unshare -m)"

# A uid and gid that no one has.
U=4242
while getent passwd $U >/dev/null || getent group $U >/dev/null; do U=$((U + 1)); done
KVM_MAJ=$((0x$(stat -c %t /dev/kvm))) KVM_MIN=$((0x$(stat -c %T /dev/kvm)))

# The layout systemd makes for a vmm@ unit with User= (RuntimeDirectory=
# tern/vmm): the run directory searchable, the vmms' directory the user's.
chmod 0711 "$RUNDIR"
install -d -m 0750 -o $U -g $U "$RUNDIR/vmm"
install -d -m 0700 -o $U -g $U "$RUNDIR/u"      # the guests' consoles
mkdir "$RUNDIR/kvmdev"
cat >"$RUNDIR/asuser.sh" <<'SH'
# asuser.sh DIR UID MAJOR MINOR PROG ARGS...: in a mount namespace of its
# own (unshare -m): a /dev/kvm for group UID, then PROG as UID, no caps.
set -e
d=$1 u=$2 maj=$3 min=$4
shift 4
mount -t tmpfs -o size=64k,mode=0755 tern-kvm "$d"
mknod -m 0660 "$d/kvm" c "$maj" "$min"
chgrp "$u" "$d/kvm"
mount --bind "$d/kvm" /dev/kvm
exec setpriv --reuid "$u" --regid "$u" --clear-groups --no-new-privs --inh-caps=-all \
	--bounding-set=-all -- "$@"
SH

# user_vmm NAME ARGS...: a vmm as uid U (its console in RUNDIR/u, linked
# as RUNDIR/NAME.serial for the helpers).
user_vmm() {
	local name=$1 pid
	shift
	unshare -m --propagation private sh "$RUNDIR/asuser.sh" "$RUNDIR/kvmdev" \
		$U $KVM_MAJ $KVM_MIN "$BIN/vmm" --name "$name" --rundir "$RUNDIR" \
		--serial "$RUNDIR/u/$name.serial" "$@" >"$RUNDIR/$name.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	eval "PID_$name=$pid"
	ln -sf "u/$name.serial" "$RUNDIR/$name.serial"
	wait_until 20 vmmctl status "$name" ||
		{ cat "$RUNDIR/$name.log"; fail "vmm $name (uid $U) did not come up"; }
}

note "a vmm of a uid that may not use /dev/kvm says what it needs"
asuser=(setpriv --reuid $U --regid $U --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all --)
if "${asuser[@]}" test -w /dev/kvm; then
	not_tried "/dev/kvm is open to every user here: its refusal"
else
	out=$("${asuser[@]}" timeout 20 "$BIN/vmm" --name nokvm --rundir "$RUNDIR/u" \
		--memory 64M --incoming 2>&1) && fail "a vmm ran without /dev/kvm"
	echo "$out" | grep -q "/dev/kvm: Permission denied (a vmm needs read and write access: run it as root, or as a user in /dev/kvm's group" ||
		fail "no hint: $out"
	echo "ok: $out"
fi

note "a vmm of uid $U: no capabilities, a socket its group may use"
user_vmm s1 --memory 64M --vcpus 2 --test-guest dirty --heartbeat 100 --guest-rate 20000
wait_pass s1 0 2
[ "$(stat -c %u /proc/"$(pid_of s1)")" = $U ] || fail "s1 does not run as uid $U"
no_caps_anywhere "$(pid_of s1)" || fail "s1 has capabilities"
mode=$(stat -c '%a %u %g' "$RUNDIR/vmm/s1.sock")
[ "$mode" = "660 $U $U" ] || fail "s1's socket: mode, owner, group $mode"
echo "ok: s1 runs as uid $U without capabilities; its socket: $mode"
user_vmm d1 --memory 64M --vcpus 2 --incoming

note "migd without the vmm's group: its worker is refused, and Incoming says why"
start_migd
why="Permission denied (a vmm of another user lets in the members of its group: give migd that group"
err=$(migctl incoming d1 --listen tcp:127.0.0.1:0 2>&1 >/dev/null) && fail "incoming d1 was taken"
case $err in *"$why"*) ;; *) fail "incoming d1: $err" ;; esac
# Refused at its start, its caller told: no job is left of it.
out=$(migctl status d1 2>&1) && fail "a job of d1 is left: $out"
case $out in *"no migration job for d1"*) ;; *) fail "status d1: $out" ;; esac
echo "ok: $err"
stop_migd

note "migd and faultd with the group: a precopy migration"
HOST_EXEC=(setpriv --groups "$U")
start_migd
[ -c /dev/userfaultfd ] && start_faultd
HOST_EXEC=()
incoming d1
migctl migrate s1 "$ADDR" --token "$TOKEN" --channels 2 --wait >/dev/null ||
	fail "migrate s1: $(migctl status s1)"
vmmctl check d1 || fail "d1 after the migration"
wait_progress d1 0
echo "ok: s1 -> d1, both of uid $U"

if [ -c /dev/userfaultfd ]; then
	note "a postcopy migration between vmms of uid $U, through faultd"
	user_vmm s2 --memory 64M --vcpus 2 --test-guest dirty --heartbeat 100 --guest-rate 20000
	user_vmm d2 --memory 64M --vcpus 2 --incoming
	wait_pass s2 0 2
	incoming d2
	postcopy_on_request s2 --max-bandwidth 8M --channels 2 --verify
	wait_job_final s2
	check_done s2 d2 "$(migctl --json status s2)"
else
	echo "skipped: /dev/userfaultfd is missing (postcopy needs faultd)"
fi
stop_migd
echo PASS
