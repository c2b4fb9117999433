# SPDX-License-Identifier: GPL-2.0-only
# Shared helpers for integration tests: they start the real programs in a
# private run directory, wait on observable state with a bound, and kill
# exactly the processes they started (by PID) when they exit.
set -u
BIN=${TERN_BUILD:-$PWD/build}/bin
TESTS=${TERN_BUILD:-$PWD/build}/tests
ITEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)     # these scripts
RUNDIR=$(mktemp -d /tmp/tern-test.XXXXXX)
TEST_DIR=$RUNDIR        # RUNDIR may be another host's for a while (on_host)
PIDS=()
NETNS=()                # network namespaces this test made
CGROUPS=()              # cgroup directories this test made
# start_vmm, start_migd, start_faultd and start_proxy run their program
# under this prefix: empty here, "ip netns exec NS" on another host (on_host).
HOST_EXEC=()
# With SANITIZE=1 (or thread), every program's sanitizer reports go to
# files here too: a client (vmmctl, migctl) whose failure a test expects
# would otherwise hide an ASan abort behind the expected exit status.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$TEST_DIR/asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$TEST_DIR/ubsan"
export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}log_path=$TEST_DIR/tsan"

SAN_REPORT="ERROR: (Address|Leak)Sanitizer|runtime error:|WARNING: ThreadSanitizer"
cleanup() {
	local p ns kids=()
	# migd's workers: a job past its postcopy switch outlives its migd
	# (for the next to adopt), for minutes; a test that failed midway
	# leaves them.  Ours too, so they go last, by PID, if still ours.
	for p in "${PIDS[@]}"; do
		kids+=($(pgrep -P "$p" 2>/dev/null))
	done
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	# A second SIGTERM: a vmm that a postcopy still needs puts off the
	# first until the migration completes (vmm(8)).
	for p in "${PIDS[@]}"; do
		for _ in $(seq 10); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -TERM "$p" 2>/dev/null
		for _ in $(seq 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	for p in "${kids[@]}"; do
		tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q "^$BIN/migd " &&
			kill -KILL "$p" 2>/dev/null
	done
	# Workers of a migd the test killed (SIGKILL) are init's children
	# by now: found by their run directory, this test's own.
	for p in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" |
			grep -q "^$BIN/migd --rundir $TEST_DIR[/ ]" &&
			kill -KILL "${p#/proc/}" 2>/dev/null
	done
	hp_give_back            # huge pages a test took (hugepool.sh)
	# Only once nothing of ours runs in them.
	for ns in "${NETNS[@]}"; do
		ip netns del "$ns" 2>/dev/null || echo "could not delete netns $ns"
	done
	for ns in "${CGROUPS[@]}"; do
		rmdir "$ns" 2>/dev/null || echo "could not remove cgroup $ns"
	done
	# With SANITIZE=1 the programs report to their logs: any report fails
	# the test, however it ended.  (-q: a pattern that matched no file
	# is an error, and without -q any error made grep say 2, no match.)
	if grep -qs -E "$SAN_REPORT" \
		"$TEST_DIR"/*.log "$TEST_DIR"/*/*.log "$TEST_DIR"/[aut]*san.*; then
		grep -h -A 20 -E "$SAN_REPORT" \
			"$TEST_DIR"/*.log "$TEST_DIR"/*/*.log "$TEST_DIR"/[aut]*san.* \
			2>/dev/null | head -n 60
		echo "FAIL: a sanitizer reported an error"
		rm -rf "$TEST_DIR"
		exit 1
	fi
	rm -rf "$TEST_DIR"
}
. "$(dirname "${BASH_SOURCE[0]}")/../hugepool.sh"
trap cleanup EXIT
# tests/run.sh's timeout (SIGTERM to the test's process group): the
# daemons' last words, then the clean-up.  Killed by the signal, bash
# would skip the EXIT trap and leave the test's daemons running.
trap 'fail "stopped by SIGTERM: the test ran past its time (TEST_TIMEOUT), or was stopped"' TERM

# fail MESSAGE: the test fails; the daemons' last words go with it (CI
# shows only the end of a failed test's output).
fail() {
	local f
	echo "FAIL: $*"
	for f in "$RUNDIR"/migd.log "$RUNDIR"/faultd.log; do
		[ -s "$f" ] || continue
		echo "--- the last lines of $(basename "$f"):"
		tail -n 8 "$f"
	done
	# TEST_KEEP=DIR: a failed test's run directory (logs, consoles) is
	# copied there before it is removed.
	if [ -n "${TEST_KEEP:-}" ]; then
		mkdir -p "$TEST_KEEP" && cp -a "$TEST_DIR" "$TEST_KEEP/" &&
			echo "kept: $TEST_KEEP/$(basename "$TEST_DIR")"
	fi
	exit 1
}
note() { echo "--- $* (at ${SECONDS} s)"; }	# the time shows where a test spends it
skip() { echo "SKIP: $*"; exit 77; }
# not_tried WHY: a part of the test this host cannot run; the test may
# still pass, and tests/run.sh says that parts were not tried.
not_tried() { echo "NOT TRIED: $*"; }

# need_kvm [REST]: what follows needs /dev/kvm.  Without it the test
# skips; or, given REST (what it has yet to check), it passes on what it
# checked so far and says REST was not tried (before, such a test said
# SKIP, as if it had checked nothing).
need_kvm() {
	[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] && return 0
	[ $# -eq 0 ] && skip "/dev/kvm is missing or not accessible"
	not_tried "/dev/kvm is missing or not accessible: $*"
	echo PASS
	exit 0
}

vmmctl() { "$BIN/vmmctl" --rundir "$RUNDIR" --timeout 60 "$@"; }

# wait_until TIMEOUT_S CMD...: poll CMD every 0.1 s until it succeeds.
wait_until() {
	local limit=$(( $1 * 10 )) i
	shift
	for ((i = 0; i < limit; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# start_vmm NAME ARGS...: start a vmm with its console in RUNDIR/NAME.serial
# and its log in RUNDIR/NAME.log; wait until its control socket answers.
start_vmm() {
	local name=$1 pid n=1
	shift
	# A vmm of a name used before gets a console and a log of its own:
	# the earlier one's become NAME.oldN.serial and NAME.oldN.log (still
	# *.log for the sanitizers' check), so that a FAIL line found later
	# names the guest that printed it.
	if [ -e "$RUNDIR/$name.serial" ]; then
		while [ -e "$RUNDIR/$name.old$n.serial" ]; do n=$((n + 1)); done
		mv "$RUNDIR/$name.serial" "$RUNDIR/$name.old$n.serial"
		mv "$RUNDIR/$name.log" "$RUNDIR/$name.old$n.log" 2>/dev/null
	fi
	"${HOST_EXEC[@]}" "$BIN/vmm" --name "$name" --rundir "$RUNDIR" \
		--serial "$RUNDIR/$name.serial" "$@" >"$RUNDIR/$name.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	eval "PID_${name//[^A-Za-z0-9_]/_}=$pid"
	wait_until 20 vmmctl status "$name" ||
		{ cat "$RUNDIR/$name.log"; fail "vmm $name did not come up"; }
}

# memfd_kib PID: the KiB of data in vmm PID's guest RAM memfds.
memfd_kib() {
	local f n=0
	for f in /proc/"$1"/fd/*; do
		case $(readlink "$f") in
		*memfd:tern-ram*) n=$((n + $(stat -L -c %b "$f") / 2)) ;;
		esac
	done
	echo "$n"
}

# memory_cgroup BYTES: make a memory cgroup limited to BYTES (under this
# process's own with cgroup v1, at the root with v2) and print its
# directory, for the caller to add to CGROUPS (this runs in a subshell);
# nothing if this host does not let us.
memory_cgroup() {
	local v1 dir file
	v1=$(sed -n 's/^[0-9]*:\([^:]*,\)\{0,1\}memory\(,[^:]*\)\{0,1\}:\(.*\)$/\3/p' /proc/self/cgroup)
	if [ -n "$v1" ] && [ -d "/sys/fs/cgroup/memory$v1" ]; then
		dir=/sys/fs/cgroup/memory${v1%/}/tern-test-$$ file=memory.limit_in_bytes
	elif grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
		dir=/sys/fs/cgroup/tern-test-$$ file=memory.max
	else
		return 0
	fi
	mkdir "$dir" 2>/dev/null || return 0
	if echo "$1" >"$dir/$file" 2>/dev/null; then
		echo "$dir"
	else
		rmdir "$dir"
	fi
}

pid_of() { local v="PID_${1//[^A-Za-z0-9_]/_}"; echo "${!v}"; }

state_of() { vmmctl --json status "$1" | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p'; }

# Highest pass in the heartbeat lines of vCPU $2 on $1's console.
pass_of() {
	sed -n "s/^tg: vcpu $2 pass \([0-9]*\) .*/\1/p" "$RUNDIR/$1.serial" 2>/dev/null |
		sort -n | tail -n 1
}

# wait_pass NAME VCPU N: until that vCPU reports pass >= N.
pass_at_least() { local p; p=$(pass_of "$1" "$2"); [ -n "$p" ] && [ "$p" -ge "$3" ]; }
wait_pass() {
	wait_until 60 pass_at_least "$@" ||
		fail "$1: vcpu $2 did not reach pass $3 (console: $(tail -n 3 "$RUNDIR/$1.serial" 2>/dev/null))"
}

# Wait for a vmm process to exit; its status in $?.
wait_exit() {
	local pid=$1 i
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid"; return $?; }
		sleep 0.1
	done
	fail "pid $pid did not exit"
}

# Highest page count in vCPU $2's heartbeats: grows while the guest runs.
pages_of() {
	sed -n "s/^tg: vcpu $2 pass [0-9]* pages \([0-9]*\) .*/\1/p" \
		"$RUNDIR/$1.serial" 2>/dev/null | sort -n | tail -n 1
}
pages_above() { local p; p=$(pages_of "$1" "$2"); [ -n "$p" ] && [ "$p" -gt "$3" ]; }
# pages_still NAME VCPU: that vCPU reported no page for a second.
pages_still() {
	local a
	a=$(pages_of "$1" "$2")
	sleep 1
	[ "$(pages_of "$1" "$2")" = "$a" ]
}
# wait_progress NAME VCPU: until that vCPU reports more pages than now.
wait_progress() {
	local before
	before=$(pages_of "$1" "$2")
	wait_until 60 pages_above "$1" "$2" "${before:-0}" ||
		fail "$1: vcpu $2 made no progress past ${before:-0} pages"
}

# ---- migd ---------------------------------------------------------------

migctl() { "$BIN/migctl" --rundir "$RUNDIR" --timeout 120 "$@"; }

# The first "KEY": value of the JSON on stdin (a string whole, without
# its quotes; escaped quotes inside are not expected).
jget() {
	grep -o "\"$1\":\(\"[^\"]*\"\|[^,}\"]*\)" | head -n 1 |
		sed 's/^"[^"]*"://; s/^"//; s/"$//'
}

# start_migd [ENV=VALUE...]: one migd serving both ends in RUNDIR.  Its
# log starts empty, and is appended to: a worker an earlier migd left
# (past its postcopy switch, migd(8)) writes on into it, at its end.
start_migd() {
	: >"$RUNDIR/migd.log"
	"${HOST_EXEC[@]}" env "$@" "$BIN/migd" --rundir "$RUNDIR" >>"$RUNDIR/migd.log" 2>&1 &
	MIGD_PID=$!
	PIDS+=("$MIGD_PID")
	wait_until 20 migctl list || { cat "$RUNDIR/migd.log"; fail "migd did not come up"; }
}

# stop_migd: SIGTERM to migd, which must end (its jobs cancelled or
# ended, migd(8)) and exit 0.
stop_migd() {
	kill -TERM "$MIGD_PID"
	wait_exit "$MIGD_PID" || fail "migd exited with $? on SIGTERM"
}

# incoming VM [ADDR]: start a destination job; sets TOKEN and ADDR.
incoming() {
	local out
	out=$(migctl --json incoming "$1" --listen "${2:-tcp:127.0.0.1:0}") ||
		fail "incoming $1: $out"
	TOKEN=$(echo "$out" | jget token)
	ADDR=$(echo "$out" | jget listen)
	[ ${#TOKEN} -eq 32 ] && [ -n "$ADDR" ] || fail "incoming $1: $out"
}

job_get() { migctl --json status "$1" | jget "$2"; }

# kill_worker SIG VM...: send SIG to the worker of each VM's job.  A job
# that has ended reports worker pid 0, and "kill 0" would hit this test's
# own process group (its timeout too: STOP hangs the run, KILL ends it
# without a word): here that is a failure that says so.
kill_worker() {
	local sig=$1 vm pid pids=()
	shift
	for vm; do
		pid=$(job_get "$vm" worker_pid)
		[[ $pid =~ ^[0-9]+$ ]] && [ "$pid" -gt 0 ] ||
			fail "$vm has no worker to signal (its job is $(job_get "$vm" state))"
		pids+=("$pid")
	done
	kill -"$sig" "${pids[@]}"
}

# postcopy_on_request SRC ARGS...: migrate SRC to $ADDR with $TOKEN (from
# incoming) in the background with ARGS, then switch it to postcopy as
# soon as it is active.
postcopy_on_request() {
	local src=$1
	shift
	migctl migrate "$src" "$ADDR" --token "$TOKEN" "$@" --detach >/dev/null ||
		fail "migrate $src"
	wait_until 30 job_is "$src" active || fail "$src: $(migctl status "$src")"
	migctl postcopy "$src" >/dev/null || fail "postcopy $src"
}
job_is() { [ "$(job_get "$1" state)" = "$2" ]; }

# migrate_active VM CAP [ARGS...]: migrate VM to $ADDR with $TOKEN under a
# cap of CAP, detached, and wait until its job is active (in precopy).
migrate_active() {
	local vm=$1 cap=$2
	shift 2
	migctl migrate "$vm" "$ADDR" --token "$TOKEN" --max-bandwidth "$cap" "$@" \
		--detach >/dev/null || fail "migrate $vm at $cap"
	wait_until 30 job_is "$vm" active || fail "$vm: $(migctl --json status "$vm")"
}
both_paused() { job_is "$1" postcopy_paused && job_is "$2" postcopy_paused; }
both_active() { job_is "$1" postcopy_active && job_is "$2" postcopy_active; }
job_final() {
	case $(job_get "$1" state) in completed|failed|cancelled) return 0 ;; esac
	return 1
}
wait_job_final() { wait_until 120 job_final "$1" || fail "job of $1 did not end"; }

# check_done SRC DST OUT: a postcopy job's end (OUT: the source's status
# as JSON) on both sides and on the guest.
check_done() {
	local src=$1 dst=$2 out=$3 c n
	[ "$(echo "$out" | jget state)" = completed ] || fail "$src: $out"
	[ "$(echo "$out" | jget postcopy_started)" = true ] || fail "$src did not switch: $out"
	[ "$(echo "$out" | jget remaining_bytes)" = 0 ] ||
		fail "$src: bytes left to send: $out"
	[ "$(echo "$out" | jget needed_pages)" = 0 ] ||
		fail "$src: pages still needed: $out"
	# The wire carried at least the data of the pages sent, pushed and
	# fetched on demand (the page link counts too).
	[ "$(echo "$out" | jget transferred_bytes)" -ge $(( ($(echo "$out" | jget pages_sent) - \
		$(echo "$out" | jget zero_pages) + $(echo "$out" | jget pages_on_demand)) * 4096 )) ] ||
		fail "$src: transferred_bytes misses pages: $out"
	[ "$(state_of "$src")" = paused ] || fail "$src is not paused"
	# Completed, the copy left on the source is stale (until then it
	# held the pages the destination lacked, and said so).
	[ "$(vmmctl --json status "$src" | jget moved_postcopy)" = false ] &&
		vmmctl status "$src" | grep -q "(this copy is stale)" ||
		fail "$src: $(vmmctl status "$src")"
	[ "$(state_of "$dst")" = running ] || fail "$dst is not running"
	wait_until 30 job_is "$dst" completed || fail "$dst: $(migctl status "$dst")"
	n=$(vmmctl --json status "$dst" | jget vcpus)
	[ "${n:-0}" -ge 1 ] || fail "$dst: no vCPU count in its status"
	for ((c = 0; c < n; c++)); do wait_progress "$dst" "$c"; done
	vmmctl check "$dst" || fail "$dst: memory check after postcopy"
	grep -a -m 8 FAIL "$RUNDIR/$dst.serial" && fail "$dst: the guest reported a failure"
	migctl status "$dst" | sed -n "/^  postcopy/,/^  latency/p"
	echo "ok: $src -> $dst: pause $(echo "$out" | jget pause_us) us, pushed" \
	     "$(echo "$out" | jget pages_pushed), on demand $(echo "$out" | jget pages_on_demand)"
}

# usage_error PROG WORDS ARGS...: PROG (vmmctl, migctl) given ARGS exits 2
# with exactly one line on stderr containing WORDS.  It is given the test's
# --rundir first, unless ARGS begin with one of their own (an option given
# twice is an error of its own).
usage_error() {
	local prog=$1 words=$2 err rc
	local -a rundir=(--rundir "$RUNDIR")
	shift 2
	case ${1-} in --rundir | --rundir=* | -r) rundir=() ;; esac
	err=$("$BIN/$prog" "${rundir[@]}" "$@" 2>&1 >/dev/null)
	rc=$?
	[ $rc -eq 2 ] || fail "$prog $*: exit $rc, expected 2 ($err)"
	[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "$prog $*: $err"
	case $err in *"$words"*) ;; *) fail "$prog $*: '$err' lacks '$words'" ;; esac
	echo "ok: $err"
}

# ---- cutting connections (ss -K) ----------------------------------------------

# ss_kill_works: whether ss -K can destroy sockets here (it needs
# CONFIG_INET_DIAG_DESTROY, and ss exits 0 where the kernel cannot): a
# loopback connection of our own is cut, or stays (10 s).  If not,
# SS_KILL_WHY says why.
ss_kill_works() {
	command -v ss >/dev/null || { SS_KILL_WHY="ss (iproute2) is missing"; return 1; }
	command -v python3 >/dev/null ||
		{ SS_KILL_WHY="python3 is missing (it makes the probe's connection)"; return 1; }
	# A probe that failed on its own (not a connection that stayed) is
	# tried once more.
	ss_kill_probe && return 0
	case $SS_KILL_WHY in "the probe's"*) ss_kill_probe ;; *) return 1 ;; esac
}

ss_kill_probe() {
	local port out
	SS_KILL_WHY="ss -K cannot destroy sockets here (CONFIG_INET_DIAG_DESTROY)"
	coproc SSPROBE { exec python3 -c '
import socket
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.create_connection(l.getsockname()); a, _ = l.accept()
print(l.getsockname()[1], flush=True)
c.settimeout(10)
try:
    print("cut" if c.recv(1) == b"" else "data", flush=True)
except socket.timeout:
    print("stays", flush=True)
except OSError:
    print("cut", flush=True)
'; }
	# bash unsets SSPROBE as soon as the coprocess ends (python3 may
	# fail at once): keep a copy of its output first.
	local pid=${SSPROBE_PID:-} fd
	PIDS+=(${pid:+"$pid"})
	[ -n "${SSPROBE[0]:-}" ] && exec {fd}<&"${SSPROBE[0]}" || {
		SS_KILL_WHY="the probe's python3 ended at once"; return 1; }
	if ! read -r -t 10 port <&"$fd" || [ -z "$port" ]; then
		SS_KILL_WHY="the probe's python3 gave no port"
		exec {fd}<&-; return 1
	fi
	ss -K -tn "( src 127.0.0.1:$port or dst 127.0.0.1:$port )" >/dev/null 2>&1
	read -r -t 15 out <&"$fd"
	exec {fd}<&-
	[ "$out" = cut ] && return 0
	[ -n "$out" ] || SS_KILL_WHY="the probe's python3 said nothing after ss -K"
	return 1
}

# ss_kill FILTER: destroy the connections ss's FILTER selects (in the
# host on_host names); fails if any is still established after.  Callers
# name 127.0.0.1 (this host's other connections are not ours) or run it
# in a namespace of their own.
ss_kill() {
	"${HOST_EXEC[@]}" ss -K -tn "$1" >/dev/null || return 1
	[ -z "$("${HOST_EXEC[@]}" ss -tnH state established "$1")" ]
}

# ---- faultd -------------------------------------------------------------

need_uffd() {
	[ -c /dev/userfaultfd ] && [ -r /dev/userfaultfd ] ||
		skip "/dev/userfaultfd is missing or not accessible"
}

# start_faultd: faultd for RUNDIR, its log in RUNDIR/faultd.log.
start_faultd() {
	"${HOST_EXEC[@]}" "$BIN/faultd" --rundir "$RUNDIR" >"$RUNDIR/faultd.log" 2>&1 &
	FAULTD_PID=$!
	PIDS+=("$FAULTD_PID")
	wait_until 20 test -S "$RUNDIR/faultd.sock" ||
		{ cat "$RUNDIR/faultd.log"; fail "faultd did not come up"; }
}

# ---- stand-in vmms: migd's peers without KVM ---------------------------------

# wire CMD...: CMD with tests/integration/rpcwire.py importable.
wire() { PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$ITEST_DIR" "$@"; }

# fake_vmm NAME MEMORY [incoming|running [DIRTY]]: a stand-in vmm
# (fakevmm.py), ready; its output in RUNDIR/NAME.out, and its RAM, to
# corrupt, at FAKE_RAM (/proc/PID/fd/N).  (Not through wire: $! must be
# python's own pid, for the clean-up.)
fake_vmm() {
	local fd
	PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$ITEST_DIR" \
		python3 "$ITEST_DIR/fakevmm.py" "$RUNDIR" "$@" >"$RUNDIR/$1.out" 2>&1 &
	PIDS+=("$!")
	wait_until 10 grep -q "^ready" "$RUNDIR/$1.out" || fail "fakevmm $1: $(cat "$RUNDIR/$1.out")"
	fd=$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$RUNDIR/$1.out")
	FAKE_RAM=/proc/$!/fd/$fd
}

# fake_ram NAME WHAT: the SHA-256 of stand-in NAME's RAM at its last
# WHAT (stop, cont or discard), or nothing.
fake_ram() { sed -n "s/^$2 ram //p" "$RUNDIR/$1.out" | tail -n 1; }

# ---- threads: scheduling class, capabilities ----------------------------------

# stat_field FILE N: field N (from 3) of a /proc stat FILE; the command
# name, field 2, may hold spaces, hence counting from the ")".
stat_field() {
	local s f
	s=$(cat "$1" 2>/dev/null) || return 1
	read -ra f <<<"${s##*) }"          # f[0] is field 3
	echo "${f[$2 - 3]}"
}

# fifo_threads PID: how many of PID's threads are in SCHED_FIFO (policy 1,
# field 41).
fifo_threads() {
	local t n=0
	for t in /proc/"$1"/task/*; do
		[ "$(stat_field "$t/stat" 41)" = 1 ] && n=$((n + 1))
	done
	echo "$n"
}

# have_sys_nice: this shell holds CAP_SYS_NICE (bit 23), as root does
# unless a container took it away; the daemons it starts then put their
# latency-critical threads in SCHED_FIFO and their workers at nice -10.
have_sys_nice() {
	local eff
	eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/$$/status)
	[ $(( (0x$eff >> 23) & 1 )) = 1 ]
}

# nice_of PID: PID's nice value (field 19).
nice_of() { stat_field "/proc/$1/stat" 19; }

# no_caps_anywhere PID: every thread of PID has no capability in any set
# and no_new_privs (capabilities are per thread: /proc/PID/status shows
# only the main one).
no_caps_anywhere() {
	local t f v
	for t in /proc/"$1"/task/*; do
		for f in CapEff CapPrm CapInh CapBnd CapAmb; do
			v=$(sed -n "s/^$f:[[:space:]]*//p" "$t/status" 2>/dev/null)
			[ -z "$v" ] || [ "$v" = 0000000000000000 ] ||
				{ echo "thread ${t##*/}: $f $v"; return 1; }
		done
		v=$(sed -n "s/^NoNewPrivs:[[:space:]]*//p" "$t/status" 2>/dev/null)
		[ -z "$v" ] || [ "$v" = 1 ] || { echo "thread ${t##*/}: NoNewPrivs $v"; return 1; }
	done
}

# ---- fault injection: the proxy ---------------------------------------------

# start_proxy NAME TARGET [LISTEN]: an itest_faultproxy (faultproxy.c) that
# forwards LISTEN (default 127.0.0.1:0, any port) to TARGET ([tcp:]IP:PORT);
# sets PROXY_PORT and PROXY_CTL (its control socket) and PROXY_PID (killed
# at exit); its log is RUNDIR/NAME.log.
start_proxy() {
	local name=$1 target=$2 listen=${3:-127.0.0.1:0}
	rm -f "$RUNDIR/$name.port"
	"${HOST_EXEC[@]}" "$TESTS/itest_faultproxy" --listen "$listen" \
		--target "$target" --control "$RUNDIR/$name.ctl" \
		--port-file "$RUNDIR/$name.port" >/dev/null 2>"$RUNDIR/$name.log" &
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	wait_until 10 test -s "$RUNDIR/$name.port" ||
		{ cat "$RUNDIR/$name.log"; fail "proxy $name did not come up"; }
	PROXY_PORT=$(cat "$RUNDIR/$name.port")
	PROXY_CTL=$RUNDIR/$name.ctl
}

# proxy_cmd WORDS...: one command to the proxy at PROXY_CTL (list, stall,
# resume, cut, corrupt, cutafter, quit); prints its one-line answer and
# fails unless it begins with "ok".
proxy_cmd() { "$TESTS/itest_faultproxy" --send "$PROXY_CTL" "$@"; }

# proxy_bytes N DIR: bytes connection N forwarded up or down so far.
proxy_bytes() {
	proxy_cmd list | tr ' ' '\n' | sed -n "s/^$1:[a-z]*:up=\([0-9]*\):down=\([0-9]*\)$/\1 \2/p" |
		{ read -r up down; [ "$2" = up ] && echo "${up:-0}" || echo "${down:-0}"; }
}
proxy_bytes_above() { [ "$(proxy_bytes "$1" "$2")" -gt "$3" ]; }

# ---- network namespaces: two "hosts" on one machine -------------------------

# have_netns: can this test make network namespaces joined by veth?  If
# not, false with the reason in NETNS_WHY.
have_netns() {
	local probe=tern-probe-$$ err
	NETNS_WHY=
	command -v ip >/dev/null || { NETNS_WHY="ip (iproute2) is not installed"; return 1; }
	err=$(ip netns add "$probe" 2>&1) ||
		{ NETNS_WHY="cannot make a network namespace: $err"; return 1; }
	err=$(ip -n "$probe" link add tp0 type veth peer name tp1 2>&1) ||
		NETNS_WHY="cannot make a veth pair: $err"
	ip netns del "$probe" 2>/dev/null
	[ -z "$NETNS_WHY" ]
}
need_netns() { have_netns || skip "$NETNS_WHY"; }

# netns_hosts: two network namespaces ("hosts") joined by a veth pair
# (veth0 in each), lo up in both, addresses 10.250.X.Y/30 (X from the
# test's PID, Y from the pair's number); each gets its own run directory
# RUNDIR/NS (see on_host).  Sets HOST_A, HOST_B (the namespaces' names,
# unique to this run) and IP_A, IP_B.  Deleted at exit, after the PIDs
# are killed.
netns_hosts() {
	local n=$(( ${#NETNS[@]} / 2 )) err ns
	HOST_A=tern$$-$n-a
	HOST_B=tern$$-$n-b
	IP_A=10.250.$(( $$ % 256 )).$(( n % 64 * 4 + 1 ))
	IP_B=10.250.$(( $$ % 256 )).$(( n % 64 * 4 + 2 ))
	for ns in "$HOST_A" "$HOST_B"; do
		err=$(ip netns add "$ns" 2>&1) || fail "ip netns add $ns: $err"
		NETNS+=("$ns")
		ip -n "$ns" link set lo up || fail "$ns: lo"
		mkdir -p "$TEST_DIR/$ns"
	done
	err=$(ip link add veth0 netns "$HOST_A" type veth peer name veth0 \
		netns "$HOST_B" 2>&1) || fail "veth $HOST_A - $HOST_B: $err"
	ip -n "$HOST_A" addr add "$IP_A/30" dev veth0 &&
		ip -n "$HOST_B" addr add "$IP_B/30" dev veth0 &&
		ip -n "$HOST_A" link set veth0 up &&
		ip -n "$HOST_B" link set veth0 up || fail "veth addresses"
	if command -v ping >/dev/null; then
		wait_until 10 ip netns exec "$HOST_A" ping -c 1 -W 1 "$IP_B" ||
			fail "$HOST_A cannot reach $IP_B over the veth"
	fi
}

# in_netns NS CMD...: run a program inside network namespace NS.
in_netns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

vmm_is() { [ "$(state_of "$1")" = "$2" ]; }
# After a failed migration.  source_fine NAME [halted]: running, memory
# intact, and writing (unless a second word says its guest is done
# writing).  dest_fresh NAME: an incoming vmm again, what it received
# dropped (the guest's parameters page at 0x3000 reads zero).
source_fine() {
	vmm_is "$1" running || fail "$1 is $(state_of "$1"), not running"
	[ -n "${2:-}" ] || wait_progress "$1" 0
	vmmctl check "$1" || fail "$1: memory check after the failure"
}
dest_fresh() {
	local out
	wait_until 30 vmm_is "$1" incoming || fail "$1 is $(state_of "$1"), not incoming"
	out=$(vmmctl read "$1" 0x3000 8) || fail "read $1"
	[ "$out" = "00 00 00 00 00 00 00 00" ] || fail "$1 was not emptied: $out"
}
# good_migration SRC DST [ARGS...]: directly, 2 channels; the check
# passes there.
good_migration() {
	local src=$1 dst=$2
	shift 2
	incoming "$dst"
	migctl migrate "$src" "$ADDR" --token "$TOKEN" --channels 2 "$@" --wait >/dev/null ||
		fail "the migration $src -> $dst did not work after the failure"
	vmmctl check "$dst" || fail "$dst after the good migration"
	echo "ok: a good migration $src -> $dst afterwards works"
}

# on_host NS CMD...: CMD (a program or a helper of this file) as on host
# NS: RUNDIR is RUNDIR/NS, and the programs that start_* start run in
# NS's network namespace.  Control sockets are unix sockets in the run
# directory, so vmmctl and migctl reach them from anywhere.  Variables CMD
# sets (TOKEN, ADDR, MIGD_PID...) stay set.
on_host() {
	local ns=$1 rundir=$RUNDIR rc
	local -a pre=("${HOST_EXEC[@]}")
	shift
	RUNDIR=$TEST_DIR/$ns
	HOST_EXEC=(ip netns exec "$ns")
	"$@"
	rc=$?
	RUNDIR=$rundir
	HOST_EXEC=("${pre[@]}")
	return $rc
}

# veth_bytes NS: bytes NS sent on its veth0 so far.
veth_bytes() { ip -n "$1" -s -j link show veth0 | grep -o '"tx":{"bytes":[0-9]*' | grep -o '[0-9]*$'; }
