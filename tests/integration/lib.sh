# SPDX-License-Identifier: GPL-2.0-only
# Shared helpers for integration tests: they start the real programs in a
# private run directory, wait on observable state with a bound, and kill
# exactly the processes they started (by PID) when they exit.
set -u
BIN=${TERN_BUILD:-$PWD/build}/bin
TESTS=${TERN_BUILD:-$PWD/build}/tests
RUNDIR=$(mktemp -d /tmp/tern-test.XXXXXX)
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	# With SANITIZE=1 the programs report to their logs: any report fails
	# the test, however it ended.
	if grep -l -E "ERROR: (Address|Leak)Sanitizer|runtime error:" \
		"$RUNDIR"/*.log >/dev/null 2>&1; then
		grep -h -A 20 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" \
			"$RUNDIR"/*.log | head -n 60
		echo "FAIL: a sanitizer reported an error"
		rm -rf "$RUNDIR"
		exit 1
	fi
	rm -rf "$RUNDIR"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; exit 1; }
note() { echo "--- $*"; }
skip() { echo "SKIP: $*"; exit 77; }

need_kvm() {
	[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] ||
		skip "/dev/kvm is missing or not accessible"
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
	local name=$1 pid
	shift
	"$BIN/vmm" --name "$name" --rundir "$RUNDIR" \
		--serial "$RUNDIR/$name.serial" "$@" >"$RUNDIR/$name.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	eval "PID_${name//[^A-Za-z0-9_]/_}=$pid"
	wait_until 20 vmmctl status "$name" ||
		{ cat "$RUNDIR/$name.log"; fail "vmm $name did not come up"; }
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

# start_migd [ENV=VALUE...]: one migd serving both ends in RUNDIR.
start_migd() {
	env "$@" "$BIN/migd" --rundir "$RUNDIR" >"$RUNDIR/migd.log" 2>&1 &
	MIGD_PID=$!
	PIDS+=("$MIGD_PID")
	wait_until 20 migctl list || { cat "$RUNDIR/migd.log"; fail "migd did not come up"; }
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
job_is() { [ "$(job_get "$1" state)" = "$2" ]; }
job_final() {
	case $(job_get "$1" state) in completed|failed|cancelled) return 0 ;; esac
	return 1
}
wait_job_final() { wait_until 120 job_final "$1" || fail "job of $1 did not end"; }

# usage_error PROG WORDS ARGS...: PROG (vmmctl, migctl) given ARGS exits 2
# with exactly one line on stderr containing WORDS.
usage_error() {
	local prog=$1 words=$2 err rc
	shift 2
	err=$("$BIN/$prog" --rundir "$RUNDIR" "$@" 2>&1 >/dev/null)
	rc=$?
	[ $rc -eq 2 ] || fail "$prog $*: exit $rc, expected 2 ($err)"
	[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "$prog $*: $err"
	case $err in *"$words"*) ;; *) fail "$prog $*: '$err' lacks '$words'" ;; esac
	echo "ok: $err"
}

# ---- faultd -------------------------------------------------------------

need_uffd() {
	[ -c /dev/userfaultfd ] && [ -r /dev/userfaultfd ] ||
		skip "/dev/userfaultfd is missing or not accessible"
}

# start_faultd: faultd for RUNDIR, its log in RUNDIR/faultd.log.
start_faultd() {
	"$BIN/faultd" --rundir "$RUNDIR" >"$RUNDIR/faultd.log" 2>&1 &
	FAULTD_PID=$!
	PIDS+=("$FAULTD_PID")
	wait_until 20 test -S "$RUNDIR/faultd.sock" ||
		{ cat "$RUNDIR/faultd.log"; fail "faultd did not come up"; }
}
