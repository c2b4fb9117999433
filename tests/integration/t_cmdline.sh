#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Bad command lines exit non-zero with one clear line; a second vmm with
# the same name is refused without harming the first.
. "$(dirname "$0")/lib.sh"

# expect_error WORDS ARGS...: vmm ARGS must exit non-zero with exactly one
# line on stderr that contains WORDS.  (Under the command VMM_WRAP, if set.)
VMM_WRAP=()
expect_error() {
	local words=$1 err rc lines
	shift
	err=$(timeout 20 "${VMM_WRAP[@]}" "$BIN/vmm" "$@" 2>&1 >/dev/null)
	rc=$?
	[ $rc -ne 0 ] || fail "vmm $* exited 0"
	[ $rc -ne 124 ] || fail "vmm $* did not exit"
	lines=$(printf '%s\n' "$err" | wc -l)
	[ "$lines" -eq 1 ] || fail "vmm $*: $lines lines: $err"
	case $err in *"$words"*) ;; *) fail "vmm $*: '$err' lacks '$words'" ;; esac
	echo "ok: $err"
}

R=(--rundir "$RUNDIR")
expect_error "--memory 0" --name a --memory 0 --test-guest idle "${R[@]}"
expect_error "--memory 3M" --name a --memory 3M --test-guest idle "${R[@]}"
expect_error "--memory lots" --name a --memory lots --test-guest idle "${R[@]}"
expect_error "--vcpus 1000" --name a --memory 64M --vcpus 1000 --test-guest dirty "${R[@]}"
expect_error "--vcpus 256: expected a number from 1 to 255" --name a --memory 64M \
	--vcpus 256 --incoming "${R[@]}"
expect_error "--vcpus 0" --name a --memory 64M --vcpus 0 --test-guest dirty "${R[@]}"
expect_error "unknown mode" --name a --memory 64M --test-guest bogus "${R[@]}"
expect_error "--guest-range 1024: at least one page (4096 bytes) for each of the 1 vCPU" \
	--name a --memory 64M --test-guest dirty --guest-range 1K "${R[@]}"
expect_error "--guest-range 4096: at least one page (4096 bytes) for each of the 2 vCPUs" \
	--name a --memory 64M --vcpus 2 --test-guest dirty --guest-range 4K "${R[@]}"
expect_error "--guest-range 107374182400: the test range of 1073741824 bytes of RAM is" \
	--name a --memory 1G --test-guest dirty --guest-range 100G "${R[@]}"
expect_error "--rundir: give a directory" --name a --memory 64M --test-guest idle --rundir ''
expect_error "--name is required" --memory 64M --test-guest idle "${R[@]}"
expect_error "--name ../x" --name ../x --memory 64M --test-guest idle "${R[@]}"
# What a usage error quotes cannot colour the terminal (before: raw).
expect_error 'vmm: --name x\x1b[31m: use 1-64 letters' --name $'x\e[31m' --memory 64M \
	--test-guest idle "${R[@]}"
expect_error "exactly one of" --name a --memory 64M "${R[@]}"
expect_error "exactly one of" --name a --memory 64M --incoming --test-guest idle "${R[@]}"
expect_error "unexpected argument" --name a --memory 64M --incoming extra "${R[@]}"
# Options nothing would read: said, not taken silently.
expect_error "--guest-rate is an option of --test-guest, not of --incoming (the guest that comes brings its own)" \
	--name a --memory 64M --incoming --guest-rate 100 "${R[@]}"
expect_error "--guest-fast-first-pass is an option of --test-guest, not of --image" \
	--name a --memory 64M --image /dev/null --guest-fast-first-pass "${R[@]}"
expect_error "--image-addr is an option of --image, not of --test-guest" \
	--name a --memory 64M --test-guest idle --image-addr 0x8000 "${R[@]}"
# --prealloc of more than the host has: refused before any page is taken.
avail_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
if [ -e /dev/kvm ] && [ "$avail_kib" -lt $((1 << 30)) ]; then
	expect_error "--prealloc: 1048576 MiB of guest RAM, but the host has only" \
		--name a --memory 1T --prealloc --incoming "${R[@]}"
fi
# ... or than its memory cgroup allows (a systemd unit's MemoryMax=).
cg=$(memory_cgroup $((64 << 20)))
[ -n "$cg" ] && CGROUPS+=("$cg")
if [ -e /dev/kvm ] && [ -n "$cg" ]; then
	VMM_WRAP=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg")
	expect_error "--prealloc: 128 MiB of guest RAM, but its memory cgroup allows only" \
		--name a --memory 128M --prealloc --incoming "${R[@]}"
	VMM_WRAP=()
else
	not_tried "no memory cgroup could be made here: the cgroup limit"
fi
# More RAM than the test guest's page tables map: said, not a silent exit.
[ -e /dev/kvm ] && expect_error "the test guest maps at most 238 GiB" \
	--name a --memory 240G --test-guest idle --serial none "${R[@]}"
touch "$RUNDIR/file"
expect_error "cannot create the run directory $RUNDIR/file/sub: Not a directory" --name a --memory 64M --test-guest idle \
	--rundir "$RUNDIR/file/sub"
expect_error "--image-addr" --name a --memory 64M --image x --image-addr 0x100000 "${R[@]}"

note "--serial: never through a symbolic link, never into a block device"
ln -s "$RUNDIR/made" "$RUNDIR/dangling"
echo kept >"$RUNDIR/kept"
ln -s kept "$RUNDIR/link"
for f in dangling link; do
	expect_error "--serial $RUNDIR/$f: a symbolic link, not followed (name the file itself" \
		--name a --memory 4M --test-guest idle --serial "$RUNDIR/$f" "${R[@]}"
done
# /dev/stdout is a link as well: the way there is stdio.  (The line said
# to name the file itself.)
[ ! -L /dev/stdout ] ||
	expect_error "--serial /dev/stdout: a symbolic link, not followed (name the file itself, or stdio for the vmm's standard output)" \
		--name a --memory 4M --test-guest idle --serial /dev/stdout "${R[@]}"
[ ! -e "$RUNDIR/made" ] || fail "--serial made the file a link names"
[ "$(cat "$RUNDIR/kept")" = kept ] || fail "--serial wrote through a link"
# A directory too (before: "Is a directory", not what vmm(8) says).
mkdir "$RUNDIR/dir"
expect_error "--serial $RUNDIR/dir: neither a regular file, a character device nor a FIFO" \
	--name a --memory 4M --test-guest idle --serial "$RUNDIR/dir" "${R[@]}"
loop=$(losetup -f 2>/dev/null)
if [ -b "$loop" ]; then
	expect_error "--serial $loop: neither a regular file, a character device nor a FIFO" \
		--name a --memory 4M --test-guest idle --serial "$loop" "${R[@]}"
else
	not_tried "no free loop device here: a block device as --serial"
fi

note "vmmctl: usage errors exit 2 with one line, before connecting"
ctl_usage() { usage_error vmmctl "$@"; }
ctl_usage "unknown command 'frobnicate'" frobnicate x
ctl_usage "usage: vmmctl save NAME FILE" save x
ctl_usage "write: give 1 to 65535 bytes as an even number of hex digits" write x 0x1000 abc
# The longest argument Linux passes with 4 KiB pages (131071 characters
# and the NUL): vmmctl, not the shell, refuses it, and says the limit.
ctl_usage "write: give 1 to 65535 bytes" write x 0x1000 "$(printf '%0131071d' 0)"
ctl_usage "not a guest physical address" read x nowhere 16
ctl_usage "transfer: unknown option '--cpy'" transfer a b --cpy
ctl_usage "seconds from 1 to 3600" dirty-rate x 0
ctl_usage "'.bad' is not a valid VM name (1-64 letters, digits, '.', '_' or '-', the first neither '.' nor '-')" status .bad
ctl_usage "'.b' is not a valid VM name" transfer a .b
ctl_usage "missing the value of option '--timeout'" --timeout
ctl_usage "option '--json' takes no value" --json=yes status x
ctl_usage "status: unknown option '--json': global options go before the command" status x --json
ctl_usage "dirty-rate: unknown option '--json': global options" dirty-rate x --json
ctl_usage "status: unknown option '--foo'" status --foo
# The short forms too (before, a plain "unknown option '-t'").
ctl_usage "status: unknown option '-t': global options go before the command" status x -t 1
usage_error migctl "status: unknown option '-j': global options go before the command" status x -j
ctl_usage "status: unknown option '-q' (see" status x -q
# --version, as the daemons have it.
for p in vmmctl migctl; do
	out=$("$BIN/$p" --version) && [ "$out" = "$p (tern) $("$BIN/vmm" --version | sed 's/.* //')" ] ||
		fail "$p --version: $out"
done
echo "ok: vmmctl and migctl --version"
ctl_usage "--rundir: give a directory" --rundir '' status x
usage_error migctl "--rundir: give a directory" --rundir= list
err=$("$BIN/vmmctl" --rundir "$RUNDIR" status ghost 2>&1)
[ $? -eq 1 ] && [[ $err == *"vmm ghost is not running"* ]] || fail "status ghost: $err"
ctl_usage "unknown command 'nope'" help nope
# A command's own help: its usage on stdout, exit 0 (before: "unknown
# option '--help'", exit 2).
for args in "transfer --help" "transfer a b -h" "help transfer"; do
	out=$("$BIN/vmmctl" $args 2>&1) || fail "vmmctl $args: exit $?: $out"
	[ "$out" = "usage: vmmctl [--rundir DIR] [--json] [--timeout SEC] transfer SRC DST [--copy]
see vmmctl(8)" ] || fail "vmmctl $args: $out"
done
[ "$("$BIN/vmmctl" help)" = "$("$BIN/vmmctl" --help)" ] || fail "vmmctl help is not --help"
echo "ok: vmmctl help, COMMAND --help"

note "a rundir too long for a unix socket path: refused before anything is made"
# expect_usage WORDS ARGS...: as expect_error, and the exit status is 2.
expect_usage() {
	local rc
	expect_error "$@"
	timeout 20 "$BIN/vmm" "${@:2}" >/dev/null 2>&1
	rc=$?
	[ $rc -eq 2 ] || fail "vmm ${*:2}: exit $rc, expected 2"
}
long=$RUNDIR/long/$(printf 'd%.0s' $(seq 100))
expect_usage "--rundir $long: at most 80 characters" --name a --memory 4M \
	--test-guest idle --rundir "$long"
[ ! -e "$RUNDIR/long" ] || fail "vmm left $(find "$RUNDIR/long" | tail -n 1) behind"
# 80 characters are allowed, but not with a name too long for the socket.
d80=$RUNDIR/long/$(printf 'd%.0s' $(seq $((80 - ${#RUNDIR} - 6))))
name=$(printf 'n%.0s' $(seq 30))
[ ${#d80} -eq 80 ] || fail "test: $d80 is ${#d80} characters"
expect_usage "--name $name: its control socket $d80/vmm/$name.sock would be 120 characters, a unix socket address holds at most 107" \
	--name "$name" --memory 4M --test-guest idle --rundir "$d80"
[ ! -e "$RUNDIR/long" ] || fail "vmm left $(find "$RUNDIR/long" | tail -n 1) behind"

note "an option that takes one value, given twice: a usage error naming it"
# The daemons get --version last: a parser that took the repeat would
# exit 0 there, not start.
tok=$(printf '0%.0s' $(seq 32))
usage_error migctl "incoming: option '--listen' given twice: it takes one value (see migctl --help)" \
	incoming vm1 --listen tcp:127.0.0.1:0 --listen tcp:127.0.0.1:1
usage_error migctl "migrate: option '--channels' given twice" \
	migrate vm1 tcp:127.0.0.1:1 --token "$tok" --channels 2 --channels=4
usage_error migctl "option '--rundir' given twice" --rundir "$RUNDIR" -r "$RUNDIR/b" list
usage_error vmmctl "option '--timeout' given twice" -t 5 --timeout 6 status x
usage_error migd "option '--rundir' given twice" --rundir "$RUNDIR" -r "$RUNDIR/b" \
	--version
usage_error faultd "option '--log-level' given twice" --log-level info \
	--log-level=debug --version
expect_usage "vmm: option '--serial' given twice: it takes one value" --name a \
	--memory 4M --test-guest idle --serial none --serial none --version "${R[@]}"
# A flag given both ways, or under two names: the last one won.
usage_error migctl "set: --verify and --no-verify exclude each other" \
	set --verify --no-verify
usage_error migctl "migrate: --auto-converge and --no-auto-converge exclude each other" \
	migrate vm1 tcp:127.0.0.1:1 --token "$tok" --no-auto-converge --auto-converge
usage_error faultd "--debug and --log-level given together: --debug is --log-level debug" \
	--log-level warn --debug --version
# The daemons say an unknown option, or one without its value, in one
# line as the clients do (before: getopt's, with the program's path,
# then the whole usage).
for d in vmm migd faultd; do
	usage_error "$d" "$d: unknown option '--bogus' (see $d --help)" --bogus --version
	usage_error "$d" "$d: unknown option '-z' (see $d --help)" -z --version
done
usage_error migd "migd: missing the value of option '--worker-nice' (see migd --help)" \
	--worker-nice
# A relative run directory is refused by every program (before: each took
# it from its own working directory, and a client started elsewhere
# missed its daemon).
rel="--rundir rel: give an absolute path (a relative one names another directory from each program's working directory)"
for p in migd faultd migctl vmmctl; do
	case $p in migctl) args=(list) ;; vmmctl) args=(status a) ;; *) args=() ;; esac
	usage_error "$p" "$p: $rel" --rundir rel "${args[@]}"
done
expect_error "vmm: $rel" --name a --memory 64M --test-guest idle --rundir rel

# A host without KVM (here /dev hidden by a tmpfs in a mount namespace of
# its own): one line says so and why (before: "/dev/kvm: No such file or
# directory").
if unshare -m true 2>/dev/null; then
	VMM_WRAP=(unshare -m sh -c 'mount -t tmpfs -o size=1M tmpfs /dev && exec "$@"' sh)
	expect_error "vmm[a]: /dev/kvm: No such file or directory: this host offers no KVM, and a vmm cannot run here (no KVM module" \
		--name a --memory 16M --test-guest idle --serial none "${R[@]}"
	VMM_WRAP=()
else
	not_tried "unshare -m is not allowed here: a host without /dev/kvm"
fi

# A lock file someone else placed as a link in a run directory they can
# write (a vmm's own user owns RUNDIR/vmm): refused, its target not
# written (before: migd, faultd and the vmm, as root, truncated the
# target and wrote their pid into it).
mkdir -p "$RUNDIR/planted/vmm"
echo precious >"$RUNDIR/planted/target"
for d in migd faultd vmm; do
	lock=$RUNDIR/planted/$d.lock args=()
	[ $d = vmm ] && lock=$RUNDIR/planted/vmm/a.lock \
		args=(--name a --memory 16M --test-guest idle --serial none)
	ln -s "$RUNDIR/planted/target" "$lock"
	out=$(timeout 20 "$BIN/$d" "${args[@]}" --rundir "$RUNDIR/planted" 2>&1) &&
		fail "$d started with its lock a link: $out"
	case $out in *"$lock is a symbolic link: refused, as a lock file is written (remove it; whoever can write ${lock%/*} may have put it there)") ;;
	*) fail "$d, its lock a link: $out" ;; esac
	[ "$(cat "$RUNDIR/planted/target")" = precious ] || fail "$d wrote through the link"
	rm "$lock"
	echo "ok: $out"
done

need_kvm "the vmm's set-up errors past KVM, a second vmm of one name, sockets left behind"
expect_error "$RUNDIR/none.img" --name a --memory 4M --image "$RUNDIR/none.img" "${R[@]}"
truncate -s 5M "$RUNDIR/big.img"
expect_error "do not fit" --name a --memory 4M --image "$RUNDIR/big.img" "${R[@]}"

note "a second vmm with the same name"
start_vmm dup --memory 64M --test-guest dirty --heartbeat 100
wait_pass dup 0 2
expect_error "a vmm named dup is already running (pid $(pid_of dup))" \
	--name dup --memory 64M --test-guest idle "${R[@]}"
[ "$(state_of dup)" = running ] || fail "the first vmm was harmed"
wait_progress dup 0
vmmctl check dup || fail "the first vmm's guest was harmed"

note "a missing run directory: searchable by all, the vmms' own closed"
# (migd, faultd and vmm made it 0755, 0755 and 0750: made by a vmm run
# first, it shut out the vmms of other users.)
(umask 022; exec "$BIN/vmm" --name fresh --memory 4M --test-guest idle \
	--rundir "$RUNDIR/fresh/run" >"$RUNDIR/fresh.log" 2>&1) &
fpid=$!
PIDS+=("$fpid")
(umask 022; exec "$BIN/migd" --rundir "$RUNDIR/fresh2" >"$RUNDIR/fresh2.log" 2>&1) &
mpid=$!
PIDS+=("$mpid")
wait_until 20 test -S "$RUNDIR/fresh/run/vmm/fresh.sock" ||
	fail "vmm in a new rundir: $(cat "$RUNDIR/fresh.log")"
wait_until 20 test -S "$RUNDIR/fresh2/migd.sock" ||
	fail "migd in a new rundir: $(cat "$RUNDIR/fresh2.log")"
# vmmctl(8) shows every field of its --json status, in order.
keys() { grep -o '"[a-z_]*":' | tr -d '":' | tr '\n' ' '; }
have=$("$BIN/vmmctl" --rundir "$RUNDIR/fresh/run" --json status fresh | keys)
doc=$(sed -n '/^{"name":"t1","state"/,/}$/p' man/vmmctl.8 | keys)
[ -n "$have" ] && [ "$have" = "$doc" ] ||
	fail "vmmctl --json status has: $have; vmmctl(8) shows: $doc"
modes=$(stat -c %a "$RUNDIR/fresh" "$RUNDIR/fresh/run" "$RUNDIR/fresh/run/vmm" \
	"$RUNDIR/fresh2" | tr '\n' ' ')
kill "$fpid" "$mpid"
wait "$fpid" "$mpid"
[ "$modes" = "755 755 750 755 " ] || fail "run directories made with modes $modes"
echo "ok: modes $modes"

note "a socket left behind by a killed vmm or migd: not running"
mkdir -p "$RUNDIR/stale/vmm"
for s in "$RUNDIR/vmm/ghost.sock" "$RUNDIR/stale/migd.sock"; do
	python3 -c "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$s" ||
		fail "cannot leave a socket at $s"
done
out=$(vmmctl status ghost 2>&1) && fail "status of a dead vmm: $out"
[ "$out" = "vmmctl: vmm ghost is not running (nobody listens on $RUNDIR/vmm/ghost.sock)" ] ||
	fail "$out"
echo "ok: $out"
out=$("$BIN/migctl" --rundir "$RUNDIR/stale" list 2>&1) && fail "list of a dead migd: $out"
[ "$out" = "migctl: migd is not running (nobody listens on $RUNDIR/stale/migd.sock)" ] ||
	fail "$out"
echo "ok: $out"
echo PASS
