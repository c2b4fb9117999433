# SPDX-License-Identifier: GPL-2.0-only
# Helpers of `make bench` (sourced by tests/bench/run.sh): start the real
# programs in a private run directory under /tmp, wait on observable state
# with a bound, run one migration while sampling its status, and kill
# exactly the processes started here (by PID) on exit.  Unlike the
# integration tests' lib.sh, a slow figure is never an error here: only
# something that went wrong (a program that did not start, a migration
# that failed, a memory check that did not pass) stops the run.
set -u
BIN=$O/bin
OUT=$O/bench
RUNDIR=$(mktemp -d /tmp/tern-bench.XXXXXX)
PIDS=()
FAILED=0

cleanup() {
	local p i
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for ((i = 0; i < 50; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	hp_give_back
	# Keep the logs of a run that went wrong (or when asked to).
	if [ "$FAILED" = 1 ] || [ "${BENCH_KEEP:-0}" = 1 ]; then
		mkdir -p "$OUT/logs"
		cp "$RUNDIR"/*.log "$RUNDIR"/*.serial "$RUNDIR"/*.samples \
			"$OUT/logs/" 2>/dev/null
		echo "bench: logs in $OUT/logs"
	fi
	rm -rf "$RUNDIR"
}
. "$(dirname "${BASH_SOURCE[0]}")/../hugepool.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	FAILED=1
	echo "bench: ERROR: $*" >&2
	exit 1
}
say() { echo "bench: $*" >&2; }

# wait_until SECONDS CMD...: poll CMD every 0.1 s until it succeeds.
wait_until() {
	local limit=$(( $1 * 10 )) i
	shift
	for ((i = 0; i < limit; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

vmmctl() { "$BIN/vmmctl" --rundir "$RUNDIR" --timeout 120 "$@"; }
migctl() { "$BIN/migctl" --rundir "$RUNDIR" --timeout 30 "$@"; }

# jget VAR JSON KEY: VAR := the first "KEY": value in JSON (a string
# without its quotes, or a number); empty if absent.  No fork, so it can
# run between samples without disturbing what is measured.
jget() {
	local re="\"$3\":(\"([^\"]*)\"|([-0-9.eE+]+|null|true|false))"
	if [[ $2 =~ $re ]]; then
		printf -v "$1" '%s' "${BASH_REMATCH[2]}${BASH_REMATCH[3]}"
	else
		printf -v "$1" '%s' ""
	fi
}

# calc FORMAT EXPR: floating point arithmetic (awk), printed with FORMAT.
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# has_flag NAME: migctl's usage offers --NAME (or --[no-]NAME).
has_flag() { "$BIN/migctl" --help 2>&1 | grep -q -E -- "--(\[no-\])?$1( |\]|$)"; }

start_faultd() {
	"$BIN/faultd" --rundir "$RUNDIR" >"$RUNDIR/faultd.log" 2>&1 &
	PIDS+=($!)
	wait_until 20 test -S "$RUNDIR/faultd.sock" ||
		{ cat "$RUNDIR/faultd.log"; die "faultd did not start"; }
}
start_migd() {
	"$BIN/migd" --rundir "$RUNDIR" >"$RUNDIR/migd.log" 2>&1 &
	PIDS+=($!)
	wait_until 20 migctl list || { cat "$RUNDIR/migd.log"; die "migd did not start"; }
}

# start_vmm NAME ARGS...: console in RUNDIR/NAME.serial, log NAME.log.
start_vmm() {
	local name=$1
	shift
	rm -f "$RUNDIR/$name.serial"    # a console of an earlier vmm NAME
	"$BIN/vmm" --name "$name" --rundir "$RUNDIR" \
		--serial "$RUNDIR/$name.serial" "$@" >"$RUNDIR/$name.log" 2>&1 &
	PIDS+=($!)
	printf -v "VMM_PID_$name" '%s' $!
	wait_until 30 vmmctl status "$name" ||
		{ cat "$RUNDIR/$name.log"; die "vmm $name did not start"; }
}

# prealloc_ms NAME: how long vmm NAME's --prealloc took (its log).
prealloc_ms() {
	sed -n 's/.*preallocated [0-9]* MiB of guest RAM in \([0-9]*\) ms.*/\1/p' \
		"$RUNDIR/$1.log" | tail -n 1
}

# quit_vmm NAME...: end those vmms and wait (bounded) until they are gone.
quit_vmm() {
	local name v i
	for name in "$@"; do
		v="VMM_PID_$name"
		vmmctl quit "$name" >/dev/null 2>&1
		for ((i = 0; i < 100; i++)); do
			kill -0 "${!v}" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "${!v}" 2>/dev/null
		wait "${!v}" 2>/dev/null
	done
}

# The highest "pass" and "pages" of vCPU $2's heartbeats on $1's console.
pass_of() {
	sed -n "s/^tg: vcpu $2 pass \([0-9]*\) .*/\1/p" "$RUNDIR/$1.serial" \
		2>/dev/null | sort -n | tail -n 1
}
pages_of() {
	sed -n "s/^tg: vcpu $2 pass [0-9]* pages \([0-9]*\) .*/\1/p" \
		"$RUNDIR/$1.serial" 2>/dev/null | sort -n | tail -n 1
}
pass_at_least() { local p; p=$(pass_of "$1" "$2"); [ -n "$p" ] && [ "$p" -ge "$3" ]; }
pages_at_least() { local p; p=$(pages_of "$1" "$2"); [ -n "$p" ] && [ "$p" -ge "$3" ]; }

# wait_pass NAME VCPUS N: every vCPU has reached pass N (all its slice
# written N-1 times at least).
wait_pass() {
	local c
	for ((c = 0; c < $2; c++)); do
		wait_until 120 pass_at_least "$1" "$c" "$3" ||
			die "$1: vcpu $c did not reach pass $3 ($(tail -n 2 "$RUNDIR/$1.serial" 2>/dev/null))"
	done
}

# check_memory NAME: the test guest's memory checker on NAME must pass.
check_memory() {
	local out
	out=$(vmmctl check "$1" 2>&1) || die "$1: memory check failed: $out"
	grep -q FAIL "$RUNDIR/$1.serial" 2>/dev/null &&
		die "$1: the guest reported a failure: $(grep FAIL "$RUNDIR/$1.serial" | head -n 3)"
	say "  $out"
}

# migrate_sampled RUN SRC DST LIMIT_S MIGCTL_ARGS...: a live migration of
# SRC into the incoming vmm DST, started detached; its status is sampled
# every ~50 ms into RUNDIR/RUN.samples ("epoch_us json" lines) until it
# ends.  After LIMIT_S seconds it is cancelled (and waited for).  Sets
# FINAL (the last status, also in OUT/RUN.status.json), OUTCOME (its
# state), CANCELLED_BY_US (1 if the bound cancelled it), W_SRC and W_DST
# (the pids of the two migd workers) and W_TIDS_SRC, W_TIDS_DST (their
# threads once the job is active).
migrate_sampled() {
	local run=$1 src=$2 dst=$3 limit_us=$(( $4 * 1000000 )) out token addr
	local s state t0 now
	shift 4
	out=$(migctl --json incoming "$dst" --listen tcp:127.0.0.1:0) ||
		die "incoming $dst: $out"
	jget token "$out" token
	jget addr "$out" listen
	jget W_DST "$out" worker_pid
	W_SRC="" W_TIDS="" W_TIDS_SRC="" W_TIDS_DST=""
	[ -n "$token" ] && [ -n "$addr" ] || die "incoming $dst: $out"
	out=$(migctl --json migrate "$src" "$addr" --token "$token" --detach "$@") ||
		die "migrate $src $*: $out"
	CANCELLED_BY_US=0
	: >"$RUNDIR/$run.samples"
	t0=${EPOCHREALTIME/./}
	while :; do
		s=$(migctl --json status "$src") || die "status $src: $s"
		now=${EPOCHREALTIME/./}
		echo "$now $s" >>"$RUNDIR/$run.samples"
		jget state "$s" state
		[ -z "$W_SRC" ] && { jget W_SRC "$s" worker_pid; [ "$W_SRC" = 0 ] && W_SRC=""; }
		[ "$state" = active ] && [ -z "$W_TIDS" ] && worker_tids
		case $state in completed|failed|cancelled) break ;; esac
		if [ $((now - t0)) -gt "$limit_us" ] && [ "$CANCELLED_BY_US" = 0 ]; then
			say "  $run: not finished after $((limit_us / 1000000)) s: cancelling"
			CANCELLED_BY_US=1
			migctl cancel "$src" >/dev/null 2>&1
		fi
		[ $((now - t0)) -gt $((limit_us + 60000000)) ] &&
			die "$run: the job did not end 60 s after it was cancelled"
		sleep 0.05
	done
	FINAL=$s
	OUTCOME=$state
	mkdir -p "$OUT"
	printf '%s\n' "$FINAL" >"$OUT/$run.status.json"
	# Let the destination job settle too (it reports completion a moment
	# after the source).
	[ "$OUTCOME" = completed ] &&
		{ wait_until 30 dest_final "$dst" || die "$run: the destination job did not end"; }
	return 0
}
# worker_tids: the threads of both workers (comma-separated, for perf).
worker_tids() {
	local t
	t=$(cd "/proc/$W_SRC/task" 2>/dev/null && echo *) || return 0
	W_TIDS_SRC=${t// /,}
	t=$(cd "/proc/$W_DST/task" 2>/dev/null && echo *) || return 0
	W_TIDS_DST=${t// /,}
	W_TIDS="$W_TIDS_SRC,$W_TIDS_DST"
}
dest_final() {
	local s st
	s=$(migctl --json status "$1") || return 1
	jget st "$s" state
	case $st in completed|failed|cancelled) return 0 ;; esac
	return 1
}

# timeline RUN: RUNDIR/RUN.samples -> OUT/RUN.dat: seconds since the job
# started, bytes transferred, bytes remaining, throughput (sum of the
# channels' last second, bytes/s), round, state, vCPU throttle (%).
timeline() {
	awk '
	function num(key,   m) {
		if (match($0, "\"" key "\":[-0-9.]+")) {
			m = substr($0, RSTART, RLENGTH)
			sub(/^[^:]*:/, "", m)
			return m + 0
		}
		return 0
	}
	function str(key,   m) {
		if (match($0, "\"" key "\":\"[^\"]*\"")) {
			m = substr($0, RSTART, RLENGTH)
			sub(/^[^:]*:"/, "", m)
			sub(/"$/, "", m)
			return m
		}
		return ""
	}
	BEGIN { print "# t_s transferred_bytes remaining_bytes throughput_Bps round state throttle_pct" }
	{
		start = num("started_unix_ms")
		if (!start)
			next
		thr = 0
		rest = $0
		while (match(rest, "\"throughput\":[0-9]+")) {
			m = substr(rest, RSTART, RLENGTH)
			sub(/^[^:]*:/, "", m)
			thr += m
			rest = substr(rest, RSTART + RLENGTH)
		}
		tb = num("transferred_bytes")
		rb = num("remaining_bytes")
		st = str("state")
		# Before the first report of bytes from migd, neither is known.
		unknown = tb == 0 && rb == 0 && st != "completed"
		# %.0f: the %d of awk stops at 2^31 - 1.
		printf "%.3f %.0f %s %s %d %s %d\n", $1 / 1e6 - start / 1e3, tb,
			unknown ? "?" : rb, unknown ? "?" : thr, num("rounds"), st,
			num("throttle")
	}' "$RUNDIR/$1.samples" >"$OUT/$1.dat"
}

# plot RUN TITLE: OUT/RUN.dat -> OUT/RUN.png (remaining bytes and
# throughput over time; the switchover marked).  No gnuplot: no chart.
plot() {
	local run=$1 title=$2 sw mark=""
	command -v gnuplot >/dev/null 2>&1 || { say "  no gnuplot: no chart for $run"; return 0; }
	sw=$(awk '$6 == "device" { print $1; exit }' "$OUT/$run.dat")
	[ -n "$sw" ] && mark="set arrow from first $sw, graph 0 to first $sw, graph 1 nohead dt 2 lc rgb 'gray40'
set label 'switchover' at first $sw, graph 0.97 left offset 0.5,0"
	gnuplot >"$RUNDIR/$run.gnuplot.log" 2>&1 <<-EOF || say "  gnuplot failed for $run: $(head -c 300 "$RUNDIR/$run.gnuplot.log")"
		set terminal pngcairo size 960,540 noenhanced
		set output "$OUT/$run.png"
		set title "$title"
		set xlabel "seconds since the job started (status sampled every ~50 ms; migd updates it every 200 ms)"
		set ylabel "remaining (MiB)"
		set y2label "throughput (GB/s, migd's last second)"
		set ytics nomirror
		set y2tics
		set yrange [0:*]
		set y2range [0:*]
		set key below
		set grid
		set datafile missing "?"
		$mark
		plot "$OUT/$run.dat" using 1:(\$3/1048576) with steps lw 2 title "remaining", \
		     "" using 1:(\$4/1e9) axes x1y2 with steps lw 2 title "throughput"
	EOF
}

# cpu_idle_pct SECONDS: share of CPU time idle on this machine meanwhile.
cpu_idle_pct() {
	local a b
	a=$(awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
	sleep "$1"
	b=$(awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
	echo "$a $b" | awk '{ printf "%d", ($3 - $1) * 100 / ($4 - $2) }'
}
