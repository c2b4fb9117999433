# SPDX-License-Identifier: GPL-2.0-only
# Helpers for tests of the full-state test guest (--test-guest full),
# sourced after lib.sh: its heartbeat lines carry every check's result.
# RUN_BEATS (default 10) is how many heartbeats watch_guest waits for.
RUN_BEATS=${RUN_BEATS:-10}

# The last heartbeat line of vCPU $2 on $1's console; field $3 of it.
last_beat() { grep -a "^tg: vcpu $2 pass " "$RUNDIR/$1.serial" 2>/dev/null | tail -n 1; }
beat_field() { last_beat "$1" "$2" | sed -n "s/.* $3 \([0-9A-Za-z]*\).*/\1/p"; }
beats_of() { grep -ac "^tg: vcpu $2 pass " "$RUNDIR/$1.serial" 2>/dev/null; }
# The thread id of vCPU $2 of vmm $1 (the vmm names its vCPU threads).
vcpu_tid() {
	grep -lx "vcpu$2" /proc/"$(pid_of "$1")"/task/*/comm 2>/dev/null | cut -d/ -f5
}
beats_at_least() { [ "$(beats_of "$1" "$2")" -ge "$3" ]; }
no_fail() {
	! grep -a -m 8 "FAIL" "$RUNDIR/$1.serial" || fail "$1: the guest reported a failure"
}
# Every check of the last heartbeat of each vCPU says ok.
all_ok() {
	local c line
	for ((c = 0; c < $2; c++)); do
		line=$(last_beat "$1" "$c")
		[ -n "$line" ] || fail "$1: no heartbeat from vcpu $c"
		case $line in
		*FAIL*|*" ok"*" ok"*" ok"*" ok"*" ok"*" ok"*" ok"*" ok"*" ok"*) ;;
		*) fail "$1: vcpu $c: heartbeat without its checks: $line" ;;
		esac
		case $line in *FAIL*) fail "$1: vcpu $c: $line" ;; esac
	done
}
# The vmm of a name runs a guest checked for RUN_BEATS heartbeats
# (counted on its own console, so from its start or its arrival).
watch_guest() {
	local name=$1 n=$2 c
	for ((c = 0; c < n; c++)); do
		wait_until $((RUN_BEATS * 3 + 20)) beats_at_least "$name" "$c" "$RUN_BEATS" ||
			fail "$name: vcpu $c printed $(beats_of "$name" "$c") heartbeats, not $RUN_BEATS"
		no_fail "$name"
	done
	all_ok "$name" "$n"
}
