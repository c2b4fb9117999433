#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The shipped units under a real systemd, as an operator runs them.  This
# host's own root boots as a throw-away container: systemd-nspawn on an
# overlay of / whose writes go to a tmpfs, in a mount namespace of this
# test, with a network of its own (lo only) and /dev/kvm and
# /dev/userfaultfd bound in.  Inside it: 'make install', then
# faultd.service, migd.service and vmm@ instances started with systemctl;
# each answers as soon as 'systemctl start' returns (Type=notify), and
# holds the capabilities its man page says and no more.  A precopy and a
# postcopy (through faultd.service) between vmm@ guests each end with
# the guest running on the destination and its memory check passing;
# then a postcopy between vmms of their own user, with the drop-ins
# vmm@.service's comments give (t_user.sh's layout, under systemd).  Both
# ways, root and user, a precopy in huge pages too (vmm --hugepages: the
# units' hardening lets the vmm take them), from a pool raised here on the
# host and lowered again at exit.
# Then the container powers off.  Skips when systemd-nspawn
# (systemd-container) is missing or the container cannot boot here.
. "$(dirname "$0")/lib.sh"
need_kvm
need_uffd
for c in systemd-nspawn nsenter unshare; do
	command -v $c >/dev/null ||
		skip "$c is missing (systemd-container, util-linux): the units cannot run here"
done
[ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd to boot in a container"

SRC=$PWD                # tests/run.sh runs us from the checkout
BUILD=${BIN%/bin}
CT=tern-units-$$
OVL=$TEST_DIR/overlay   # a tmpfs there, in our mount namespace only
CT_PID=                 # the container's systemd (PID 1 inside)
NSPAWN_PID=
# systemd-nspawn asks no systemd of this host for a scope (there may be
# none): it runs in cgroups of this test, under cgroup2 (and under the
# name=systemd hierarchy of a hybrid host), which the container's systemd
# manages as its own.
CG_DIRS=()
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
	CG_DIRS=("/sys/fs/cgroup/$CT")
elif [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
	CG_DIRS=("/sys/fs/cgroup/unified/$CT")
	[ -d /sys/fs/cgroup/systemd ] && CG_DIRS+=("/sys/fs/cgroup/systemd/$CT")
else
	skip "no cgroup2 hierarchy on this host: a container's systemd needs one"
fi

# units_down: power the container off (SIGTERM to systemd-nspawn, which
# it passes on as a poweroff), SIGKILL after 30 s, then remove the
# cgroups this test made, deepest first.
units_down() {
	local i d
	if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
		kill -TERM "$NSPAWN_PID"
		for ((i = 0; i < 300; i++)); do
			kill -0 "$NSPAWN_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$NSPAWN_PID" 2>/dev/null && echo "container $CT: killed"
		wait "$NSPAWN_PID" 2>/dev/null
	fi
	NSPAWN_PID=
	for d in "${CG_DIRS[@]}"; do
		[ -d "$d" ] || continue
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null ||
			echo "could not remove cgroup $d"
	done
}
# The huge page pool for the vmm@ guests with --hugepages: the host's
# (no namespace has a pool of its own, and the container's /proc/sys is
# read-only), taken here before the container needs it, for two guests of
# 64 MiB at once (32 pages each), and given back at exit (hugepool.sh).
HUGE=                   # 1: the pool holds our guests' pages
trap 'units_down; cleanup' EXIT
hp_take 64
if [ -z "$HP_WHY" ]; then
	HUGE=1
else
	not_tried "vmm --hugepages under the units: $HP_WHY"
fi

# save_journal: the units' journal as RUNDIR/UNIT.log (lib.sh shows
# migd.log and faultd.log on a FAIL, and checks every *.log for
# sanitizer reports at exit).
save_journal() {
	local u
	[ -n "$CT_PID" ] && kill -0 "$CT_PID" 2>/dev/null || return 0
	for u in migd faultd 'vmm@*'; do
		in_ct journalctl --no-pager -q -u "$u" >"$RUNDIR/${u%@*}.log" 2>&1
	done
}
eval "lib_$(declare -f fail)"
fail() {
	save_journal
	tail -n 8 "$RUNDIR/vmm.log" 2>/dev/null
	lib_fail "$@"
}

in_ct() { timeout 150 nsenter -t "$CT_PID" -a "$@"; }
# The clients as an operator on that host runs them: the default
# --rundir, /run/tern.
vmmctl() { in_ct /usr/local/sbin/vmmctl --timeout 60 "$@"; }
migctl() { in_ct /usr/local/bin/migctl --timeout 120 "$@"; }
ct_systemctl() { in_ct systemctl "$@"; }

note "boot this host's root in a container (systemd-nspawn, overlay on tmpfs)"
mkdir "$OVL"
(
	for d in "${CG_DIRS[@]}"; do
		mkdir "$d" && echo "$BASHPID" >"$d/cgroup.procs" || exit 1
	done
	export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 OVL CT SRC BUILD TEST_DIR
	# A tmpfs on /run too: nspawn keeps its scratch files there
	# (/run/systemd/nspawn), and the host's /run may be a disk.
	exec unshare --mount --propagation private -- bash -c '
		set -e
		mount -t tmpfs -o mode=0700 tern-units "$OVL"
		mkdir "$OVL/upper" "$OVL/work" "$OVL/root"
		mount -t overlay -o "lowerdir=/,upperdir=$OVL/upper,workdir=$OVL/work" \
			tern-units "$OVL/root"
		mount -t tmpfs -o mode=0755 tern-units-run /run
		exec systemd-nspawn --quiet --directory="$OVL/root" --machine="$CT" \
			--boot --register=no --keep-unit --private-network \
			--link-journal=no --console=read-only \
			--bind=/dev/kvm --bind=/dev/userfaultfd \
			--bind-ro="$SRC:/src" --bind-ro="$BUILD:/srcbuild" \
			--bind="$TEST_DIR" \
			-- systemd.unit=sysinit.target'
) >"$TEST_DIR/container.out" 2>&1 </dev/null &
NSPAWN_PID=$!
ct_up() {
	kill -0 "$NSPAWN_PID" 2>/dev/null || return 0
	CT_PID=$(pgrep -P "$NSPAWN_PID" -x systemd) || return 1
	case $(in_ct systemctl is-system-running 2>/dev/null) in
	running | degraded) return 0 ;;
	esac
	return 1
}
if ! wait_until 30 ct_up || ! kill -0 "$NSPAWN_PID" 2>/dev/null; then
	tail -n 5 "$TEST_DIR/container.out"
	why=$(grep -v '^$' "$TEST_DIR/container.out" | tail -n 1)
	skip "the container did not boot: ${why:-no word from systemd-nspawn}"
fi
echo "ok: $CT is up (systemd $(in_ct systemctl is-system-running)), its PID 1 is $CT_PID here"

note "make install inside it; the units load from /usr/local/lib/systemd/system"
keep=()
for p in "$BIN"/*; do keep+=(-o "/srcbuild/bin/${p##*/}"); done
in_ct make --no-print-directory -s -C /src O=/srcbuild "${keep[@]}" install \
	>"$RUNDIR/install.out" 2>&1 || { cat "$RUNDIR/install.out"; fail "make install"; }
ct_systemctl daemon-reload || fail "daemon-reload"
for u in faultd.service migd.service vmm@a.service; do
	f=$(ct_systemctl show -P FragmentPath "$u")
	[ "$f" = "/usr/local/lib/systemd/system/${u/@a/@}" ] || fail "$u: loaded from '$f'"
done
mkdir -p "/proc/$CT_PID/root/etc/tern/vmm"
# A sanitizer build (O=build-san): LeakSanitizer stops the world with
# ptrace, which the units' SystemCallFilter refuses ("LeakSanitizer has
# encountered a fatal error", exit 1), so it is off in the units (a
# drop-in); their other reports go to the journal, saved as
# RUNDIR/units.log for lib.sh's check.  (The clients here report to
# TEST_DIR, bound in at its own path.)
if grep -qa __asan_init "$BIN/vmm"; then
	for u in faultd.service migd.service vmm@.service; do
		mkdir -p "/proc/$CT_PID/root/etc/systemd/system/$u.d"
		printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' \
			>"/proc/$CT_PID/root/etc/systemd/system/$u.d/asan.conf"
	done
	ct_systemctl daemon-reload || fail "daemon-reload"
	not_tried "LeakSanitizer in the units (it needs ptrace, which they refuse)"
fi

# ct_threads PID: a line per thread of the container's process PID:
# "TID CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs POLICY" (policy 1
# is SCHED_FIFO).
ct_threads() {
	in_ct sh -c 'cd /proc/'"$1"'/task || exit 1
		for t in *; do
			s=$(cat $t/stat 2>/dev/null) &&
				st=$(cat $t/status 2>/dev/null) || continue  # ended
			set -- ${s##*) }
			shift 38
			echo $t $(printf "%s\n" "$st" |
				sed -n "s/^\(Cap[A-Za-z]*\|NoNewPrivs\):[[:space:]]*//p") $1
		done'
}
# caps_are PID WHAT INH PRM EFF BND AMB: every thread of PID has these
# sets and no_new_privs.
caps_are() {
	local pid=$1 what=$2 want="$3 $4 $5 $6 $7 1" tid sets n=0
	while read -r tid sets; do
		[ "${sets% *}" = "$want" ] ||
			fail "$what: thread $tid: CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs: ${sets% *}, expected $want"
		n=$((n + 1))
	done < <(ct_threads "$pid")
	[ $n -gt 0 ] || fail "$what: no thread of pid $pid"
	echo "ok: $what: $n threads: $want"
}
fifo_count() { ct_threads "$1" | awk '$NF == 1' | wc -l; }
Z=0000000000000000
NICE=0000000000800000   # CAP_SYS_NICE alone

note "faultd.service and migd.service answer as soon as systemctl start returns"
ct_systemctl start faultd.service migd.service || fail "systemctl start faultd migd"
# No wait: Type=notify means the socket listens once start returns.
in_ct test -S /run/tern/faultd.sock || fail "no /run/tern/faultd.sock right after the start"
migctl list >/dev/null || fail "migctl list right after the start"
FAULTD=$(ct_systemctl show -P MainPID faultd.service)
MIGD=$(ct_systemctl show -P MainPID migd.service)
# faultd(8): every capability dropped in every thread; CAP_SYS_NICE stays
# in the bounding set (the unit's, which it may not shrink).
caps_are "$FAULTD" faultd $Z $Z $Z $NICE $Z
# migd(8): CAP_SYS_NICE kept for its workers (their nice value, the
# page server's class), nothing else.
caps_are "$MIGD" migd $Z $NICE $NICE $NICE $Z

# start_unit_vmm NAME ARGS...: /etc/tern/vmm/NAME.conf, then vmm@NAME;
# its console (/var/log/tern/NAME.console there) is RUNDIR/NAME.serial
# here, for lib.sh's helpers.
start_unit_vmm() {
	local name=$1
	shift
	echo "VMM_ARGS=\"$*\"" >"/proc/$CT_PID/root/etc/tern/vmm/$name.conf"
	ct_systemctl start "vmm@$name" || fail "systemctl start vmm@$name"
	vmmctl status "$name" || fail "vmm@$name does not answer right after its start"
	ln -sf "/proc/$CT_PID/root/var/log/tern/$name.console" "$RUNDIR/$name.serial"
}

note "vmm@a (dirty guest) and vmm@b (incoming); a precopy a -> b"
start_unit_vmm a --memory 128M --vcpus 2 --test-guest dirty --heartbeat 100
start_unit_vmm b --memory 128M --vcpus 2 --incoming
# With the pool: vmm@h1 and vmm@h2 in huge pages, for a precopy after
# this one (h1's guest boots meanwhile).
HUGE_VMS=()             # the vmms in huge pages, stopped with the others
if [ -n "$HUGE" ]; then
	HUGE_VMS=(h1 h2)
	start_unit_vmm h1 --memory 64M --hugepages --test-guest dirty --heartbeat 100
	start_unit_vmm h2 --memory 64M --hugepages --incoming
fi
# vmm(8): no capability at all, not even in the bounding set.
caps_are "$(ct_systemctl show -P MainPID vmm@a)" "vmm@a" $Z $Z $Z $Z $Z
wait_pass a 1 2
incoming b
migctl migrate a "$ADDR" --token "$TOKEN" --channels 2 --wait || fail "precopy a -> b"
[ "$(state_of b)" = running ] || fail "b is $(state_of b) after the precopy"
wait_progress b 0
wait_progress b 1
vmmctl check b || fail "b: memory check after the precopy"
grep -a -m 8 FAIL "$RUNDIR/b.serial" && fail "b: the guest reported a failure"
vmmctl status a | grep -q "(this copy is stale)" || fail "a: $(vmmctl status a)"
# systemctl stop runs ExecStop= (vmmctl quit): the unit ends cleanly.
ct_systemctl stop vmm@a || fail "systemctl stop vmm@a"
[ "$(ct_systemctl show -P Result vmm@a)" = success ] ||
	fail "vmm@a: $(ct_systemctl show -P Result vmm@a)"

# huge_precopy SRC DST: SRC and DST (vmm@ guests of 64 MiB with
# --hugepages) took their RAM from the host's pool under the units'
# hardening; a precopy SRC -> DST leaves the guest running there, in huge
# pages still, its memory check passing.
huge_precopy() {
	local src=$1 dst=$2 vm out
	for vm in "$src" "$dst"; do
		vmmctl status "$vm" | grep -q "64.0 MiB in 2 MiB huge pages" ||
			fail "vmm@$vm: $(vmmctl status "$vm")"
	done
	wait_pass "$src" 0 2
	incoming "$dst"
	out=$(migctl --json migrate "$src" "$ADDR" --token "$TOKEN" --channels 2 --wait) ||
		fail "precopy $src -> $dst: $out"
	[ "$(state_of "$dst")" = running ] || fail "$dst is $(state_of "$dst") after the precopy"
	wait_progress "$dst" 0
	vmmctl check "$dst" || fail "$dst: memory check after the precopy in huge pages"
	vmmctl status "$dst" | grep -q "in 2 MiB huge pages" ||
		fail "$dst is not in huge pages: $(vmmctl status "$dst")"
	grep -a -m 8 FAIL "$RUNDIR/$dst.serial" && fail "$dst: the guest reported a failure"
	echo "ok: $src -> $dst in huge pages in $(echo "$out" | jget total_ms) ms: $(vmmctl status "$dst")"
}

if [ -n "$HUGE" ]; then
	note "vmm@h1 -> vmm@h2, both with --hugepages (the host's pool): a precopy"
	huge_precopy h1 h2
fi

note "vmm@c (incoming); a postcopy b -> c through faultd.service"
start_unit_vmm c --memory 128M --vcpus 2 --incoming
incoming c
# Capped so that it does not converge, and the guest faults on pages the
# push has not brought yet (t_postcopy.sh).
migctl migrate b "$ADDR" --token "$TOKEN" --postcopy auto --downtime-limit 1 \
	--max-bandwidth 32M --channels 2 --detach >/dev/null || fail "migrate b"
wait_until 60 both_active b c || fail "no postcopy: $(migctl status b)"
# migd(8): the workers drop every capability; the source's page server
# and faultd's fault threads run in SCHED_FIFO (both units allow it).
for vm in b c; do
	caps_are "$(job_get $vm worker_pid)" "migd's worker for $vm" $Z $Z $Z $NICE $Z
done
[ "$(fifo_count "$(job_get b worker_pid)")" -ge 1 ] ||
	fail "no thread of b's worker in SCHED_FIFO: $(ct_threads "$(job_get b worker_pid)")"
[ "$(fifo_count "$FAULTD")" -ge 1 ] ||
	fail "no thread of faultd in SCHED_FIFO: $(ct_threads "$FAULTD")"
caps_are "$FAULTD" "faultd in postcopy" $Z $Z $Z $NICE $Z
wait_job_final b
check_done b c "$(migctl --json status b)"
[ "$(job_get c faults)" -gt 0 ] || fail "c: no faults served: $(migctl --json status c)"

note "the drop-ins of vmm@.service's comments: vmms of their own user"
# (h1's and h2's pages go back to the pool, for hu1 and hu2 below.)
ct_systemctl stop vmm@b vmm@c "${HUGE_VMS[@]/#/vmm@}" ||
	fail "systemctl stop vmm@b vmm@c ${HUGE_VMS[*]/#/vmm@}"
for u in vmm@a vmm@b vmm@c "${HUGE_VMS[@]/#/vmm@}"; do
	r=$(ct_systemctl show -P Result "$u")
	[ "$r" = success ] || fail "$u: $r"
done
# /dev/kvm for group kvm, on the container's /dev only (the host's node
# stays as it is: the bind mount goes, a node of the container's own
# comes).
in_ct sh -c 'set -e
	getent group kvm >/dev/null || groupadd --system kvm
	id tern >/dev/null 2>&1 ||
		useradd --system --user-group --groups kvm --no-create-home tern
	umount /dev/kvm
	rm -f /dev/kvm
	mknod -m 0660 /dev/kvm c '"$((0x$(stat -c %t /dev/kvm))) $((0x$(stat -c %T /dev/kvm)))"'
	chgrp kvm /dev/kvm
	d=/etc/systemd/system
	mkdir -p $d/vmm@.service.d $d/migd.service.d $d/faultd.service.d
	printf "[Service]\nUser=tern\nGroup=tern\nSupplementaryGroups=kvm\n" \
		>$d/vmm@.service.d/user.conf
	printf "[Service]\nSupplementaryGroups=tern\n" >$d/migd.service.d/tern.conf
	printf "[Service]\nSupplementaryGroups=tern\n" >$d/faultd.service.d/tern.conf
	systemctl daemon-reload
	systemctl restart faultd migd' || fail "the drop-ins"
start_unit_vmm u1 --memory 64M --vcpus 2 --test-guest fill --heartbeat 100
start_unit_vmm u2 --memory 64M --vcpus 2 --incoming
# An unprivileged vmm takes huge pages too (vmm(8), --hugepages): hu1
# and hu2, for a precopy after the postcopy u1 -> u2.
if [ -n "$HUGE" ]; then
	HUGE_VMS=(hu1 hu2)
	start_unit_vmm hu1 --memory 64M --hugepages --test-guest dirty --heartbeat 100
	start_unit_vmm hu2 --memory 64M --hugepages --incoming
fi
TERN_UID=$(in_ct id -u tern)
for vm in u1 u2 "${HUGE_VMS[@]}"; do
	pid=$(ct_systemctl show -P MainPID "vmm@$vm")
	uid=$(in_ct sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status")
	[ "$uid" = "$TERN_UID" ] || fail "vmm@$vm runs as uid $uid, not tern's ($TERN_UID)"
	caps_are "$pid" "vmm@$vm (user tern)" $Z $Z $Z $Z $Z
done
wait_pass u1 1 2
incoming u2
postcopy_on_request u1 --max-bandwidth 32M --channels 2
wait_job_final u1
check_done u1 u2 "$(migctl --json status u1)"
if [ -n "$HUGE" ]; then
	note "vmm@hu1 -> vmm@hu2 of user tern, both with --hugepages: a precopy"
	huge_precopy hu1 hu2
fi

note "power off; nothing of the container is left"
ct_systemctl stop vmm@u1 vmm@u2 "${HUGE_VMS[@]/#/vmm@}" ||
	fail "systemctl stop vmm@u1 vmm@u2 ${HUGE_VMS[*]/#/vmm@}"
for u in vmm@u1 vmm@u2 "${HUGE_VMS[@]/#/vmm@}" faultd migd; do
	r=$(ct_systemctl show -P Result "$u")
	[ "$r" = success ] || fail "$u: $r"
done
save_journal
units_down
grep -q " $OVL" /proc/self/mountinfo && fail "$OVL is still mounted here"
for d in "${CG_DIRS[@]}"; do
	[ -d "$d" ] && fail "cgroup $d is left"
done
echo "ok: $CT powered off, its cgroups removed"
