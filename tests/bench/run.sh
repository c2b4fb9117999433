#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# make bench: the speed scenarios of issues 5 and 6, each beside this
# machine's own limits measured in the same run (bench_limits: memcpy,
# zero-page scan, loopback TCP with the same number of streams, zstd,
# the userfaultfd round trip).  One migd
# serves both ends on 127.0.0.1; scenarios run one at a time.  Prints a
# table (figure, limit, ratio, target, PASS/MISS), writes
# $O/bench/results.json and one timeline chart per migration
# ($O/bench/RUN.png).  A MISS never fails the run; a migration that did
# not complete, or a memory check that did not pass, does.
#
# Knobs (environment): BENCH_SCENARIOS="a b c" (a subset), BENCH_KEEP=1
# (keep the programs' logs in $O/bench/logs), BENCH_PERF=1 (one more
# scenario b run under 'perf record -a', top symbols in
# $O/bench/perf-b.txt; BENCH_PERF_CHANNELS=N and BENCH_PERF_PREALLOC=1
# choose which of b's runs), BENCH_B_KINDS ("1 2 z1 1p 2p 1h 2h", the
# default with zstd: which of b's runs, for A/B comparisons; h: into RAM
# of huge pages, hp: preallocated too), BENCH_A_RATE, BENCH_A_DOWNTIME,
# BENCH_A_VERIFY_DOWNTIME, BENCH_C_CHANNELS, BENCH_NOAC_SECONDS,
# BENCH_AC_FLAGS, BENCH_EXTRA (1: also zstd and verify runs when migctl
# has them; the default), BENCH_LIMITS_JSON (a
# file of earlier limits instead of measuring them: for development).
set -u
cd "$(dirname "$0")/../.." || exit 1
O=${O:-build}
. tests/bench/lib.sh || { echo "bench: tests/bench/lib.sh is broken" >&2; exit 1; }

SCENARIOS=${BENCH_SCENARIOS-a b c p}
A_RATE=${BENCH_A_RATE:-65536}           # pages/s: QEMU's boot-block guest
A_DOWNTIME=${BENCH_A_DOWNTIME:-20}      # ms: scenario a's downtime target
# ms: the --verify run's limit.  Hashing a's 256 MiB on both hosts alone
# takes 50-90 ms of the pause here, and migd refuses a limit that cannot
# hold it; the row still compares the downtime with A_DOWNTIME.
A_VERIFY_DOWNTIME=${BENCH_A_VERIFY_DOWNTIME:-200}
C_CHANNELS=${BENCH_C_CHANNELS:-2}
C_LIMIT=300                             # ms: scenario c's downtime limit
C_BOUND=60                              # s: give up on auto-converge
NOAC_S=${BENCH_NOAC_SECONDS:-20}        # s: without auto-converge

# Targets (issue 5, "Speed targets") and QEMU 7.2's figures quoted there.
T_A_TOTAL=300 T_A_DOWNTIME=20 T_B_RATIO=0.75 T_C_TOTAL=8000 T_D_OVER=1.10
# Issue 6 (postcopy): total within 1.3x of sending the RAM once at the
# loopback rate, fault latency p50 within 2.5x of the bare uffd round
# trip and p99 under 1 ms, guest pause at the switch under 5 ms.
T_P_TOTAL=1.3 T_P_P50=2.5 T_P_P99_US=1000 T_P_PAUSE_US=5000

[ -c /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm is missing or not writable"
for p in vmm vmmctl migd migctl faultd; do
	[ -x "$BIN/$p" ] || die "$BIN/$p is missing: run make first"
done
[ -x "$O/tests/bench_limits" ] || die "$O/tests/bench_limits is missing: run make first"
# The guests' memfds are sparse, but up to two 4 GiB and three 2 GiB
# guests live at once, and the receiving ones fill their RAM.  (b's runs
# into huge pages take 4 GiB more, when the host has it: hp_pool.)
# MemAvailable in MiB.
avail_mib() { awk '/^MemAvailable:/ { printf "%d", $2 / 1024 }' /proc/meminfo; }
avail_gib=$(( $(avail_mib) / 1024 ))
[ "$avail_gib" -ge 8 ] || die "only $avail_gib GiB of memory available; the scenarios need 8"
# Nothing of an earlier run may sit beside this one's results (a subset
# run too): $OUT holds only what this script writes (charts, samples,
# statuses, perf-b.txt, logs/, limits.json, results.json), so all of it
# goes, except limits.json when BENCH_LIMITS_JSON names it.
mkdir -p "$OUT"
keep=""
[ -n "${BENCH_LIMITS_JSON:-}" ] && [ "$(realpath -m -- "$BENCH_LIMITS_JSON")" = "$(realpath -m -- "$OUT/limits.json")" ] &&
	keep=$OUT/limits.json
find "$OUT" -mindepth 1 -maxdepth 1 ! -path "$keep" -exec rm -rf -- {} + ||
	die "cannot clear $OUT"

# ---- what migctl can do today ----------------------------------------------
if [ -n "${BENCH_AC_FLAGS+x}" ]; then
	AC_FLAGS=$BENCH_AC_FLAGS
elif has_flag auto-converge; then
	AC_FLAGS="--auto-converge"
else
	AC_FLAGS=""
fi
TIMEOUT_FLAGS=""
has_flag timeout-action && TIMEOUT_FLAGS="--timeout $NOAC_S --timeout-action cancel"
COMPRESS_FLAGS=""
has_flag compress && COMPRESS_FLAGS="--compress zstd:1"
VERIFY_FLAGS=""
has_flag verify && VERIFY_FLAGS="--verify --downtime-limit $A_VERIFY_DOWNTIME"
[ "${BENCH_EXTRA:-1}" = 1 ] || COMPRESS_FLAGS="" VERIFY_FLAGS=""

# ---- is the machine quiet? ---------------------------------------------------
idle=$(cpu_idle_pct 1)
BUSY_NOTE=""
if [ "$idle" -lt 80 ]; then
	BUSY_NOTE="only ${idle}% of the CPU was idle before the run: figures are low"
	say "WARNING: $BUSY_NOTE; the busiest processes:"
	ps -eo pid,pcpu,comm --sort=-pcpu | sed -n '2,4p' | sed 's/^/bench:   /' >&2
fi

# ---- this machine's limits ---------------------------------------------------------
# LIMITS_FROM: where the limits came from, for the table and results.json.
if [ -n "${BENCH_LIMITS_JSON:-}" ]; then
	say "machine limits from $BENCH_LIMITS_JSON (not measured in this run)"
	LIMITS=$(cat "$BENCH_LIMITS_JSON") || die "cannot read $BENCH_LIMITS_JSON"
	LIMITS_FROM="file $BENCH_LIMITS_JSON"
else
	say "measuring this machine's limits (about 20 s)"
	# A pool of 2 MiB huge pages for bench_limits' page-size figures,
	# taken for its run only and given back (nr_hugepages as it was).
	hp_take 136
	LIMITS=$("$O/tests/bench_limits" -q) || LIMITS=
	hp_give_back
	[ -n "$LIMITS" ] || die "bench_limits failed"
	LIMITS_FROM="this run"
fi
printf '%s\n' "$LIMITS" >"$OUT/limits.json"
lim() { local v; jget v "$LIMITS" "$1"; echo "${v:-0}"; }
L_CP1=$(lim memcpy_gbps_1t) L_CP2=$(lim memcpy_gbps_2t)
L_Z64=$(lim zero_scan_gbps_or64) L_ZAVX=$(lim zero_scan_gbps_avx2)
L_T1=$(lim tcp_gbps_1s) L_T2=$(lim tcp_gbps_2s) L_T4=$(lim tcp_gbps_4s)
L_F1=$(lim tcp_fresh_gbps_1s) L_F2=$(lim tcp_fresh_gbps_2s) L_FT=$(lim fresh_touch_gbps)
L_ZR=$(lim zstd1_gbps_random) L_ZT=$(lim zstd1_gbps_text)
# The uffd round trip the fault latency is held to: a poll()ing handler
# on another CPU (the issue's "~60 us with a poll()ing handler"); the
# same CPU's, the scheduler's choice and a spinning handler's beside it.
L_UFFD=$(lim uffd_rtt_us) L_UFFD_SPIN=$(lim uffd_rtt_spin_us)
L_UFFD_SAME=$(lim uffd_rtt_same_cpu_us) L_UFFD_ANY=$(lim uffd_rtt_any_cpu_us)
L_RTT=$(lim tcp_rtt_page_us)
L_P4K=$(lim uffd_copy_4k_gbps) L_P2M=$(lim uffd_copy_2m_gbps) L_FT2M=$(lim fresh_touch_2m_gbps)
# The limit for N channels is the one measured with N streams, or with 4
# for 3 or more (3 channels are compared with 4 streams, and say so).
tcp_limit() { case $1 in 1) echo "$L_T1" ;; 2) echo "$L_T2" ;; *) echo "$L_T4" ;; esac; }
tcp_streams() { case $1 in 1|2) echo "$1" ;; *) echo 4 ;; esac; }

# ---- results ---------------------------------------------------------------------
ROWS=()         # "scenario|figures|limit|ratio|target|result" per table row
NOTES=()        # a line under the row of the same index ("" for none)
RUNS_JSON=()    # one object per migration
DOWNTIMES=()    # "run downtime_us limit_ms" of completed migrations

row() { ROWS+=("$1|$2|$3|$4|$5|$6"); NOTES+=("${7:-}"); }

# derive RUN: figures of FINAL in D_* variables.
derive() {
	local v
	for v in total_ms setup_ms downtime_ms downtime_us pages_sent zero_pages rounds \
		 transferred_bytes downtime_limit_ms skipped_pages throttle \
		 compressed_pages raw_bytes error; do
		jget "D_$v" "$FINAL" "$v"
	done
	D_data_bytes=$(( (D_pages_sent - D_zero_pages) * 4096 ))
	# The downtime is compared in microseconds (downtime_ms is rounded
	# down: 22.99 ms would read as 22) and shown to 0.01 ms.
	D_dt=$(calc %.2f "${D_downtime_us:-0} / 1000")
	D_xfer_ms=$(( D_total_ms - D_setup_ms ))
	[ "$D_xfer_ms" -gt 0 ] || D_xfer_ms=1
	D_gbps=$(calc %.3f "$D_data_bytes / ($D_xfer_ms / 1000) / 1e9")
	D_mib=$(calc %.0f "$D_data_bytes / 1048576")
}

# record RUN SCENARIO CHANNELS LIMIT_GBPS RESULT GUEST: the run's JSON
# object, its chart, and its downtime for check d.
record() {
	local run=$1 sc=$2 ch=$3 lim=$4 res=$5 guest=$6 ratio
	ratio=$(calc %.3f "$D_gbps / $lim")
	timeline "$run"
	D_max_throttle=$(awk '!/^#/ && $7 > m { m = $7 } END { print m + 0 }' "$OUT/$run.dat")
	D_thr_note=""
	[ "$D_max_throttle" -gt 0 ] && D_thr_note=", throttle up to $D_max_throttle%"
	plot "$run" "$run: $guest, $ch channel(s)\\n$OUTCOME, total $D_total_ms ms, downtime $D_dt ms, $D_rounds rounds, $D_mib MiB of pages$D_thr_note"
	RUNS_JSON+=("{\"run\":\"$run\",\"scenario\":\"$sc\",\"guest\":\"$guest\",\"channels\":$ch,\"outcome\":\"$OUTCOME\",\"cancelled_by_bench\":$([ "$CANCELLED_BY_US" = 1 ] && echo true || echo false),\"page_bytes\":$D_data_bytes,\"transfer_ms\":$D_xfer_ms,\"throughput_gbps\":$D_gbps,\"tcp_limit_gbps\":$lim,\"ratio_to_tcp\":$ratio,\"max_throttle_pct\":$D_max_throttle,\"result\":\"$res\",\"chart\":\"$run.png\",\"samples\":$(grep -c . "$RUNDIR/$run.samples"),\"status\":$FINAL}")
	# Check d is about precopy: a postcopy pause has its own target.
	[ "$OUTCOME" = completed ] && [ "$sc" != p ] &&
		DOWNTIMES+=("$run $D_downtime_us $D_downtime_limit_ms")
	say "  $run: $OUTCOME in $D_total_ms ms, downtime $D_dt ms," \
	    "$D_rounds rounds, $D_mib MiB at $D_gbps GB/s (tcp limit $lim)$D_thr_note"
}

pass_miss() { if [ "$1" = 1 ]; then echo PASS; else echo MISS; fi; }

# run_result RUN RESULT: RUN's result in results.json, decided after it
# was recorded.
run_result() {
	local i rest
	for i in "${!RUNS_JSON[@]}"; do
		case ${RUNS_JSON[$i]} in
		"{\"run\":\"$1\","*)
			# The bench's "result" comes before the status.
			rest=${RUNS_JSON[$i]#*\"result\":\"}
			RUNS_JSON[$i]="${RUNS_JSON[$i]%%\"result\":*}\"result\":\"$2\"${rest#*\"}"
			;;
		esac
	done
}

start_faultd
start_migd

# ---- a: 4 GiB guest dirtying 256 MiB; 1 and 4 channels -------------------------
scenario_a() {	# CHANNELS [SUFFIX EXTRA_FLAGS...]
	local ch=$1 sfx=${2:-} run ok lim speed qemu flags
	shift 2 2>/dev/null || shift
	run="a-${ch}ch$sfx"
	say "scenario $run: 4 GiB guest dirtying 256 MiB at $A_RATE pages/s, $ch channel(s) $*"
	start_vmm as --memory 4G --vcpus 1 --test-guest dirty --guest-range 256M \
		--guest-rate "$A_RATE" --heartbeat 100
	wait_pass as 1 2
	start_vmm ad --memory 4G --vcpus 1 --incoming
	# A limit among the extra flags (verify's) replaces a's: migctl
	# refuses an option given twice.
	case " $* " in
	*" --downtime-limit "*) migrate_sampled "$run" as ad 60 --channels "$ch" "$@" ;;
	*) migrate_sampled "$run" as ad 60 --channels "$ch" --downtime-limit "$A_DOWNTIME" "$@" ;;
	esac
	[ "$OUTCOME" = completed ] || die "$run: migration $OUTCOME: $(jget e "$FINAL" error; echo "$e")"
	check_memory ad
	quit_vmm as ad
	derive
	ok=0
	[ "$D_total_ms" -lt "$T_A_TOTAL" ] && [ "$D_downtime_us" -lt $((T_A_DOWNTIME * 1000)) ] && ok=1
	lim=$(tcp_limit "$ch")
	if [ "$ch" = 1 ]; then qemu="1100-2000"; else qemu="670-1700"; fi
	speed=$(calc %.1f "${qemu%-*} / $D_total_ms")-$(calc %.1f "${qemu#*-} / $D_total_ms")x
	record "$run" a "$ch" "$lim" "$(pass_miss "$ok")" "4G dirty 256M@${A_RATE}p/s"
	flags="$*"                      # its limit shows among the figures
	flags=${flags/ --downtime-limit $A_VERIFY_DOWNTIME/}
	row "a 4G/256M dirty, ${ch}ch${sfx:+ $flags}" \
	    "total $D_total_ms ms, downtime $D_dt ms (limit $D_downtime_limit_ms), $D_rounds rounds, $D_mib MiB" \
	    "tcp $(tcp_streams "$ch")s $lim GB/s" \
	    "$(calc %.2f "$D_gbps / $lim")" \
	    "<${T_A_TOTAL} ms, <${T_A_DOWNTIME} ms" "$(pass_miss "$ok")" \
	    "QEMU 7.2: $qemu ms total, 55-99 ms downtime (it took $speed as long); pages at $D_gbps GB/s"
}

# ---- b: fill 2 GiB (incompressible), then migrate with 1 and 2 channels ------
scenario_b() {
	local total_pages=$(( (2048 - 2) * 256 )) src=bf dst ch lim ok i run fl kind flags pre alloc with res order
	local kinds=${BENCH_B_KINDS:-1 2 ${COMPRESS_FLAGS:+z1} 1p 2p 1h 2h} huge huge_runs=0 hp_why="" hp_warm_ms=""
	for kind in $kinds; do
		case $kind in
		1|2|1p|2p) ;;
		1h|2h|1hp|2hp) huge_runs=1 ;;
		z1) [ -n "$COMPRESS_FLAGS" ] || die "BENCH_B_KINDS: z1 needs migctl --compress" ;;
		*) die "BENCH_B_KINDS: no run '$kind' (1, 2, z1, 1p, 2p, 1h, 2h, 1hp or 2hp)" ;;
		esac
	done
	# h: into vmm --hugepages.  Two such 2 GiB guests live at once (a
	# run's source and destination): their pool is taken for b's run
	# and given back after it (cleanup too, should b die).
	if [ "$huge_runs" = 1 ]; then
		hp_pool 2048
		hp_why=$HP_WHY hp_warm_ms=$HP_WARM_MS
		[ -n "$hp_why" ] && say "scenario b: no runs into huge pages: $hp_why"
	fi
	say "scenario b: fill 2 GiB with incompressible pages (one pass), then migrate"
	start_vmm bf --memory 2G --vcpus 1 --test-guest fill --guest-passes 1 --heartbeat 200
	wait_until 120 pages_at_least bf 0 "$total_pages" ||
		die "bf: the fill did not finish in 120 s ($(tail -n 1 "$RUNDIR/bf.serial"))"
	i=0
	# 1, 2: into an ordinary incoming vmm (its RAM allocated page by page
	# as it arrives); z1: compressed; 1p, 2p: into one started with
	# --prealloc (its RAM allocated before the migration, the time shown).
	for kind in $kinds; do
		flags=() pre="" huge=""
		case $kind in
		*h*)
			if [ -n "$hp_why" ]; then
				row "b fill 2G, ${kind%%h*}ch, huge" "-" "-" "-" "-" "n/a" \
				    "not run: $hp_why"
				continue
			fi
			flags=(--hugepages) huge=", huge pages" ;;
		esac
		case $kind in
		*p) flags+=(--prealloc) pre=", preallocated destination" ;;
		esac
		i=$((i + 1))
		dst=bd$i
		ch=${kind%%[hp]*}
		start_vmm "$dst" --memory 2G --vcpus 1 --incoming "${flags[@]}"
		if [ "$kind" = z1 ]; then
			say "scenario b-1ch-zstd: $src -> $dst, 1 channel, $COMPRESS_FLAGS"
			# shellcheck disable=SC2086
			migrate_sampled b-1ch-zstd "$src" "$dst" 120 --channels 1 $COMPRESS_FLAGS
			run="b-1ch-zstd"
			ch=1
		else
			run=b-${ch}ch${huge:+-huge}${pre:+-prealloc}
			say "scenario $run: $src -> $dst, $ch channel(s)$huge$pre"
			migrate_sampled "$run" "$src" "$dst" 120 --channels "$ch"
		fi
		[ "$OUTCOME" = completed ] || die "$run: migration $OUTCOME"
		check_memory "$dst"
		quit_vmm "$src"
		src=$dst
		derive
		lim=$(tcp_limit "$ch")
		fl=$L_F1
		[ "$ch" = 2 ] && fl=$L_F2
		# Each run receives into a new vmm.  The first one's RAM comes
		# from memory that sat idle, which a host with free page
		# reporting must back first; later ones reuse RAM the run
		# before just freed, backed at once (README, make bench).
		if [ "$i" = 1 ]; then
			order="Run 1 of b's $kinds: into memory that sat idle (later runs: into RAM the run before just freed)"
		else
			order="Run $i of b's $kinds: into RAM the run before just freed (run 1: into memory that sat idle)"
		fi
		order+="; with free page reporting, order and memory history, not the channel count alone, move the figures without --prealloc"
		ok=$(awk "BEGIN { print ($D_gbps >= $T_B_RATIO * $lim) ? 1 : 0 }")
		res=$(pass_miss "$ok")
		[ "$run" = b-1ch-zstd ] && res=info     # as its row: no target
		record "$run" b "$ch" "$lim" "$res" "2G fill$huge$pre"
		if [ "$run" = b-1ch-zstd ]; then
			row "b fill 2G, 1ch zstd:1" \
			    "$D_gbps GB/s ($D_mib MiB in $D_xfer_ms ms), $D_compressed_pages pages compressed" \
			    "zstd1 rnd $L_ZR GB/s" "$(calc %.2f "$D_gbps / $L_ZR")" \
			    "info" "-" \
			    "incompressible pages should go raw: vs tcp 1s $lim GB/s: $(calc %.2f "$D_gbps / $lim"). $order"
		elif [ -n "$pre" ]; then
			# The allocation moved out of the migration, not away:
			# the rate with it counted in goes beside the figure.
			alloc=$(prealloc_ms "$dst")
			with=$(calc %.3f "$D_data_bytes / ((${alloc:-0} + $D_xfer_ms) / 1000) / 1e9")
			row "b fill 2G, ${ch}ch${huge:+, huge}, prealloc" \
			    "$D_gbps GB/s ($D_mib MiB in $D_xfer_ms ms), total $D_total_ms ms; $with GB/s with the allocation counted in" \
			    "tcp ${ch}s $lim GB/s" "$(calc %.2f "$D_gbps / $lim")" \
			    ">= $T_B_RATIO" "$(pass_miss "$ok")" \
			    "vmm --prealloc${huge:+ --hugepages} allocated the destination's 2 GiB before the migration, in ${alloc:-?} ms: not counted in the ratio and result; counted in (page bytes / (allocation + transfer)), the ratio is $(calc %.2f "$with / $lim")"
		elif [ -n "$huge" ]; then
			row "b fill 2G, ${ch}ch, huge" \
			    "$D_gbps GB/s ($D_mib MiB in $D_xfer_ms ms), total $D_total_ms ms" \
			    "tcp ${ch}s $lim GB/s" "$(calc %.2f "$D_gbps / $lim")" \
			    ">= $T_B_RATIO" "$(pass_miss "$ok")" \
			    "into vmm --hugepages: 2 MiB pages allocated as they arrive (one fault per 2 MiB, written in place), from a pool taken at b's start and touched once (4 GiB by a vmm --prealloc in ${hp_warm_ms:-?} ms, $(calc %.3f "4294967296 / (${hp_warm_ms:-0} + 0.001) / 1e6") GB/s: the cost of memory this host had not backed). For comparison, not a limit: first writes into fresh 2 MiB pages $L_FT2M GB/s, into 4 KiB pages $L_FT GB/s (bench_limits)"
		else
			row "b fill 2G, ${ch}ch" \
			    "$D_gbps GB/s ($D_mib MiB in $D_xfer_ms ms), total $D_total_ms ms" \
			    "tcp ${ch}s $lim GB/s" "$(calc %.2f "$D_gbps / $lim")" \
			    ">= $T_B_RATIO" "$(pass_miss "$ok")" \
			    "QEMU 7.2: 0.35-1.3 GB/s. $order. For comparison, not a limit: loopback readv() into a fresh memfd, one thread a stream, $fl GB/s ($(calc %.2f "$D_gbps / $fl")x; migd places first-time pages by UFFDIO_COPY with a helper thread)"
		fi
	done
	quit_vmm "$src"
	hp_give_back
}

# hp_pool MIB: huge pages for two guests of MIB MiB (a run's source and
# destination) in the host's pool until hp_give_back; HP_WHY says why
# not.  The pool's pages come from memory this nested host may have to
# back first (as b's first run's RAM): a vmm that takes them all
# once, timed (HP_WARM_MS), backs them, so that the runs measure
# receiving into huge pages, as b's later runs do into RAM just freed.
# Its rate is the cold figure, shown beside theirs.
hp_pool() {
	local mib=$(( $1 * 2 ))
	HP_WARM_MS=
	local left
	hp_take $(( mib / 2 + 8 ))
	[ -n "$HP_WHY" ] && return
	# The pool's pages are no longer MemAvailable: b's runs in 4 KiB
	# pages (a source and a destination of MIB each) must still fit.
	left=$(avail_mib)
	if [ "$left" -lt "$mib" ]; then
		HP_WHY="with $mib MiB in huge pages, only $left MiB of memory would be left available, and b's runs in 4 KiB pages need $mib"
		hp_give_back
		return
	fi
	start_vmm hpw --memory "${mib}M" --vcpus 1 --incoming --hugepages --prealloc
	HP_WARM_MS=$(prealloc_ms hpw)
	quit_vmm hpw
	say "  the pool's $mib MiB of huge pages first touched in ${HP_WARM_MS:-?} ms"
}

# ---- c: 2 GiB guest rewriting all of its memory, 2 vCPUs -------------------------
scenario_c() {	# ac|noac
	local mode=$1 run=c-$1 bound flags=() ok lim conv by r1 rate bw cmp res
	if [ "$mode" = ac ]; then
		if [ -z "$AC_FLAGS" ]; then
			say "scenario c-ac: skipped: migctl has no --auto-converge yet"
			row "c rewrite-all 2G, auto-converge" "not run: migctl has no --auto-converge" \
			    "-" "-" "<${T_C_TOTAL} ms, dt<=${C_LIMIT}" "SKIP"
			return 0
		fi
		bound=$C_BOUND
		read -r -a flags <<<"$AC_FLAGS"
	else
		bound=$NOAC_S
		[ -n "$TIMEOUT_FLAGS" ] && { read -r -a flags <<<"$TIMEOUT_FLAGS"; bound=$((NOAC_S + 15)); }
	fi
	say "scenario $run: 2 GiB guest, 2 vCPUs rewriting all memory, $C_CHANNELS channels, limit $C_LIMIT ms ${flags[*]}"
	start_vmm cs --memory 2G --vcpus 2 --test-guest dirty --heartbeat 500
	wait_pass cs 2 2
	start_vmm cd --memory 2G --vcpus 2 --incoming
	migrate_sampled "$run" cs cd "$bound" --channels "$C_CHANNELS" \
		--downtime-limit "$C_LIMIT" "${flags[@]}"
	derive
	lim=$(tcp_limit "$C_CHANNELS")
	case $OUTCOME in
	completed)
		check_memory cd
		conv="converged in $D_total_ms ms, downtime $D_dt ms (limit $D_downtime_limit_ms), $D_rounds rounds"
		;;
	cancelled|failed)
		# Ended without converging (the bench's bound or --timeout):
		# an outcome to report, unless auto-converge was on or it
		# failed for another reason.  The source must run on intact.
		if [ "$mode" = ac ] || { [ "$OUTCOME" = failed ] && [ -z "$TIMEOUT_FLAGS" ]; }; then
			die "$run: migration $OUTCOME: $D_error"
		fi
		check_memory cs
		by="ended by the bench"
		[ -n "$TIMEOUT_FLAGS" ] && by="--timeout: ${D_error:-$OUTCOME}"
		conv="no convergence in ${NOAC_S} s ($by), $D_rounds rounds, source intact"
		;;
	*) die "$run: unexpected outcome $OUTCOME" ;;
	esac
	quit_vmm cs cd
	ok=0
	[ "$OUTCOME" = completed ] && [ "$D_total_ms" -lt "$T_C_TOTAL" ] &&
		[ "$D_downtime_us" -le $((C_LIMIT * 1000)) ] && ok=1
	# c-noac is a report, never a verdict; c-ac's may become n/a once
	# c-noac has run (c_verdict).
	res=report
	[ "$mode" = ac ] && res=$(pass_miss "$ok")
	record "$run" c "$C_CHANNELS" "$lim" "$res" "2G dirty all, 2 vCPUs"
	r1=$(awk '!/^#/ && $5 >= 1 { printf "%.1f s", $1; exit }' "$OUT/$run.dat")
	# Why it converged or not: the guest's dirty rate in the last
	# precopy round against the bandwidth of the precopy rounds.
	jget rate "$FINAL" dirty_rate; jget bw "$FINAL" bandwidth
	cmp=">="
	[ "$(( ${rate:-0} * 4096 ))" -lt "${bw:-0}" ] && cmp="<"
	printf -v "C_RATES_$mode" '%s' "dirty rate $(calc %.3f "${rate:-0} * 4096 / 1e9") GB/s $cmp bandwidth $(calc %.3f "${bw:-0} / 1e9") GB/s"
	printf -v "C_OUTCOME_$mode" '%s' "$OUTCOME"
	if [ "$mode" = ac ]; then
		C_AC_ROW=${#ROWS[@]} C_AC_CONV=$conv C_AC_THR=$D_max_throttle
		row "c rewrite-all 2G, auto-converge" "$conv$D_thr_note" \
		    "tcp $(tcp_streams "$C_CHANNELS")s $lim GB/s" "$(calc %.2f "$D_gbps / $lim")" \
		    "<${T_C_TOTAL} ms, dt<=${C_LIMIT}" "$res" \
		    "QEMU 7.2 with auto-converge: 16.5-18 s, ~230 ms downtime. Round 1 (the first copy) ended at ${r1:-?}"
	else
		row "c rewrite-all 2G, no auto-conv." "$conv; $C_RATES_noac" \
		    "tcp $(tcp_streams "$C_CHANNELS")s $lim GB/s" "$(calc %.2f "$D_gbps / $lim")" \
		    "(report)" "$([ "$OUTCOME" = completed ] && echo "conv." || echo "no conv.")" \
		    "QEMU 7.2 without auto-converge: never converges in 120 s. Round 1 (the first copy) ended at ${r1:-?}"
	fi
}

# c_verdict: c-ac's verdict, once c-noac has run.  Issue 5's target is
# for a guest that never converges without auto-converge.  When c-noac
# converged too, or the throttle stayed 0 throughout, that guest was not
# there (under this machine's dirty logging the guest may dirty far less
# than the link carries): c-ac's time says nothing of auto-converge, so
# the row says why instead of PASS or MISS.
c_verdict() {
	local why a b c d e f
	[ -n "${C_AC_ROW:-}" ] || return 0     # c-ac did not run
	if [ "${C_OUTCOME_noac:-}" = completed ]; then
		why="no-auto-converge converged too: $C_RATES_noac"
		[ "$C_AC_THR" -gt 0 ] && why="throttle up to $C_AC_THR%, but $why"
	elif [ "$C_AC_THR" = 0 ]; then
		why="the throttle stayed 0 throughout: $C_RATES_ac"
	else
		return 0
	fi
	IFS='|' read -r a b c d e f <<<"${ROWS[$C_AC_ROW]}"
	ROWS[$C_AC_ROW]="$a|$C_AC_CONV; auto-converge not needed ($why)|$c|$d|$e|n/a"
	run_result c-ac n/a
}

# ---- p: postcopy ---------------------------------------------------------------
# p-rewrite: the 2 GiB guest of scenario c, postcopy after one pass (asked
# for as soon as round 1 has ended; the 1 ms limit keeps precopy from
# converging first: on this machine the guest dirties only ~28000 pages/s
# under dirty logging, and with a 300 ms limit some runs converged).
# p-faults: the same guest switched at once, for the fault latency.
# p-pause-1G, p-pause-8G: the guest pause at the switch whatever the size.

# Migrate SRC to DST, check DST's memory, keep the destination job's
# status in DEST_S (and RUN.dest.json), stop both vmms.
postcopy_migrate() {	# RUN SRC DST MIGRATE-ARGS...
	local run=$1 src=$2 dst=$3 e
	shift 3
	migrate_sampled "$run" "$src" "$dst" 120 "$@"
	[ "$OUTCOME" = completed ] || die "$run: migration $OUTCOME: $(jget e "$FINAL" error; echo "$e")"
	check_memory "$dst"
	DEST_S=$(migctl --json status "$dst")
	printf '%s\n' "$DEST_S" >"$OUT/$run.dest.json"
	guest_times "$run" "$src" "$dst"
	quit_vmm "$src" "$dst"
	derive
}

# guest_times RUN SRC DST: the test guest's access-time histograms
# (common/testguest.h, TG_LAT_GPA): the source's as it stopped at the
# switch, the destination's at the end, and the guest's parameters (its
# TSC rate), for guest_faults.
guest_times() {
	local run=$1 st n
	st=$(vmmctl --json status "$2") || die "$2: no status"
	n=$(printf '%s\n' "$st" | sed -n 's/.*"vcpus":\([0-9]*\).*/\1/p')
	printf '%s\n' "${n:-1}" >"$OUT/$run.lat-vcpus"
	vmmctl read "$2" 0x3000 32 >"$OUT/$run.lat-params.hex" &&
	vmmctl read "$2" 0x1d0000 $(( ${n:-1} * 1024 )) >"$OUT/$run.lat-src.hex" &&
	vmmctl read "$3" 0x1d0000 $(( ${n:-1} * 1024 )) >"$OUT/$run.lat-dst.hex" ||
		die "$run: cannot read the guest's access times"
}

# guest_faults RUN N: "p50 p99 max accesses" in microseconds, as the guest
# itself timed them (fault to resumed), of the N slowest accesses after
# the switch: N, the faults faultd counted.  Empty if there are none.
guest_faults() {
	[ "${2:-0}" -gt 0 ] || return 0
	python3 tests/bench/guestlat.py "$OUT/$1.lat-params.hex" \
		"$OUT/$1.lat-src.hex" "$OUT/$1.lat-dst.hex" "$2" \
		"$(cat "$OUT/$1.lat-vcpus")"
}

# Ask for postcopy once the job is active and has ended ROUNDS rounds.
postcopy_after() {	# VM ROUNDS
	local i s st n
	for ((i = 0; i < 2400; i++)); do
		s=$(migctl --json status "$1" 2>/dev/null)
		jget st "$s" state; jget n "$s" rounds
		if [ "$st" = active ] && [ "${n:-0}" -ge "$2" ]; then
			migctl postcopy "$1" >/dev/null 2>&1
			return
		fi
		sleep 0.02
	done
}

# The 2 GiB guest of scenario c, 2 vCPUs rewriting all memory, switched
# to postcopy after ROUNDS rounds (the 1 ms limit keeps precopy from
# converging first); the destination job's status in DEST_S.
rewrite_postcopy() {	# RUN ROUNDS [DEST-FLAGS...]
	start_vmm ps --memory 2G --vcpus 2 --test-guest dirty --heartbeat 500
	wait_pass ps 2 2
	start_vmm pd --memory 2G --vcpus 2 --incoming "${@:3}"
	postcopy_after ps "$2" &
	PIDS+=($!)
	postcopy_migrate "$1" ps pd --channels 2 --downtime-limit 1
}

scenario_p_rewrite() {	# [prealloc]
	local run=p-rewrite lim once_ms ok blocked faults pause started figs alloc
	local flags=() label="" note="QEMU 7.2: 10-12.4 s total, 2-4 ms pause, 93-173 ms vCPU block time"
	if [ "${1:-}" = prealloc ]; then
		run=p-rewrite-prealloc flags=(--prealloc) label=", prealloc"
	fi
	say "scenario $run: 2 GiB guest, 2 vCPUs rewriting all memory, postcopy after one pass$label"
	rewrite_postcopy "$run" 1 "${flags[@]}"
	jget blocked "$DEST_S" blocked_us
	jget faults "$DEST_S" remote_faults; jget pause "$FINAL" pause_us
	jget started "$FINAL" postcopy_started
	lim=$(tcp_limit 2)
	once_ms=$(calc %.0f "2 * 1073741824 / ($lim * 1e9) * 1000")
	alloc=$(prealloc_ms pd)
	[ -n "$label" ] &&
		note="vmm --prealloc allocated the destination's 2 GiB before the migration, in ${alloc:-?} ms: not counted in the ratio and result; counted in, the total is $((D_total_ms + ${alloc:-0})) ms, ratio $(calc %.2f "($D_total_ms + ${alloc:-0}) / $once_ms")"
	ok=0
	awk "BEGIN { exit !($D_total_ms <= $T_P_TOTAL * $once_ms) }" && ok=1
	record "$run" p 2 "$lim" "$(pass_miss "$ok")" "2G dirty all, 2 vCPUs, postcopy"
	figs="total $D_total_ms ms, pause ${pause:-?} us, vCPUs blocked $(calc %.0f "${blocked:-0} / 1000") ms, ${faults:-0} remote faults"
	# Should precopy still converge before the request is seen, say so.
	[ "$started" = true ] ||
		figs="total $D_total_ms ms: precopy converged after $D_rounds rounds (downtime $D_dt ms), no switch"
	row "p rewrite-all 2G, postcopy$label" "$figs" \
	    "RAM once at tcp 2s: $once_ms ms" "$(calc %.2f "$D_total_ms / $once_ms")" \
	    "<= ${T_P_TOTAL}x" "$(pass_miss "$ok")" "$note"
}

# p-faults: the guest of p-rewrite, switched to postcopy as soon as the
# job is active, so that nearly all of its 2 GiB come after the switch:
# thousands of remote faults while the push runs, enough for the
# latency percentiles (p-rewrite, switching after a whole pass, may
# leave only a handful).
scenario_p_faults() {
	local run=p-faults p50 p99 pmax faults ok g gp50 gp99 gmax gall
	say "scenario $run: 2 GiB guest, 2 vCPUs rewriting all memory, postcopy as soon as the job is active"
	rewrite_postcopy "$run" 0
	jget p50 "$DEST_S" latency_p50_us; jget p99 "$DEST_S" latency_p99_us
	jget pmax "$DEST_S" latency_max_us; jget faults "$DEST_S" remote_faults
	# The figure held to the target: the guest's own, fault to resumed
	# (faultd's starts at its read of the fault and ends at the page
	# placed: the fault's delivery and the vCPU's wake-up are outside).
	g=$(guest_faults "$run" "${faults:-0}") || die "$run: $g"
	read -r gp50 gp99 gmax gall <<<"$g"
	ok=0
	awk "BEGIN { exit !(${gp50:-0} > 0 && ${gp50:-0} <= $T_P_P50 * $L_UFFD) }" && ok=1
	record "$run" p 2 "$(tcp_limit 2)" "$(pass_miss "$ok")" "2G dirty all, 2 vCPUs, postcopy at once"
	row "p remote fault latency p50" "p50 ${gp50:-?} us as the guest waited (max ${gmax:-?} us), ${faults:-0} remote faults; faultd's own p50 ${p50:-?} us" \
	    "uffd rtt $L_UFFD us" "$(calc %.2f "${gp50:-0} / $L_UFFD")" \
	    "<= ${T_P_P50}x" "$(pass_miss "$ok")" \
	    "loopback, while the push runs. The guest times each page's first load (TSC) and counts it; the slowest accesses after the switch, as many as faultd's remote faults, are the faults. The bare round trip runs from the touch to the toucher resumed with a poll()ing handler on another CPU; on the same CPU it takes $L_UFFD_SAME us, wherever the scheduler puts it $L_UFFD_ANY us, spinning $L_UFFD_SPIN us. A page's loopback TCP round trip alone (idle machine) takes $L_RTT us here: p50 is $(calc %.1f "${gp50:-0} / ($L_RTT + $L_UFFD)")x of that plus the bare uffd rtt"
	ok=0
	[ "${gp99:-0}" -gt 0 ] && [ "${gp99:-0}" -lt "$T_P_P99_US" ] && ok=1
	row "p remote fault latency p99" "p99 ${gp99:-?} us as the guest waited; faultd's own p99 ${p99:-?} us" "-" "-" \
	    "< ${T_P_P99_US} us" "$(pass_miss "$ok")" \
	    "QEMU's published figure with its preempt channel: 570 us average on 10 GbE. faultd's fault and link threads and the page server run in SCHED_FIFO (see faultd(8); --no-realtime turns it off)"
}

# The guest fills its memory for the first time at 20000 pages/s, so
# that after the switch it also touches pages that are holes on both
# sides: local faults, which faultd serves alone (UFFDIO_ZEROPAGE).  It
# switches as soon as the job is active (in round 1).
# With "verify" as well: the pause must not grow (the destination hashes
# what it holds before the pause, the source its RAM after the push);
# the row gives both hashing times, from migd's log.
scenario_p_pause() {	# SIZE [verify]
	local size=$1 run=p-pause-$1${2:+-$2} ok pause zf z50 z99 nf g gp50 gp99 gmax gall
	local v held stopped
	say "scenario $run: $size guest filling fresh memory, postcopy on request after 2 s${2:+, with --verify}"
	start_vmm qs --memory "$size" --vcpus 1 --test-guest fill --guest-rate 20000 --heartbeat 200
	wait_until 60 pages_at_least qs 0 20000 || die "qs: the guest does not run"
	start_vmm qd --memory "$size" --vcpus 1 --incoming
	postcopy_after qs 0 &
	PIDS+=($!)
	# (verify under a 1 ms limit is taken only by a job that may switch
	# to postcopy by itself: migd(8), Verify)
	postcopy_migrate "$run" qs qd --channels 2 --max-bandwidth 200M --downtime-limit 1 \
		${2:+--verify --postcopy auto}
	jget pause "$FINAL" pause_us
	ok=0
	[ "${pause:-0}" -gt 0 ] && [ "$pause" -lt "$T_P_PAUSE_US" ] && ok=1
	record "$run" p 2 "$(tcp_limit 2)" "$(pass_miss "$ok")" "$size fill, postcopy${2:+, $2}"
	if [ -n "${2:-}" ]; then
		jget v "$FINAL" verified
		[ "$v" = ok ] || die "$run: verify: $v"
		held=$(sed -n 's/.*verify: the RAM held at the switch hashed in \([0-9]*\) ms.*/\1/p' \
			"$RUNDIR/migd.log" | tail -n 1)
		stopped=$(sed -n 's/.*verify: the stopped RAM hashed in \([0-9]*\) ms.*/\1/p' \
			"$RUNDIR/migd.log" | tail -n 1)
		row "p guest pause, $size, --verify" "pause $pause us, verified ok; hashing ${held:-?} ms before the switch (destination), ${stopped:-?} ms after the push (source)" \
		    "-" "-" "< $((T_P_PAUSE_US / 1000)) ms" "$(pass_miss "$ok")" \
		    "neither hashing is inside the pause: the destination's delays the switch, the source's the end"
		return
	fi
	jget zf "$DEST_S" zero_faults; jget z50 "$DEST_S" zero_latency_p50_us
	jget z99 "$DEST_S" zero_latency_p99_us; jget nf "$DEST_S" faults
	g=$(guest_faults "$run" "${nf:-0}") || die "$run: $g"
	read -r gp50 gp99 gmax gall <<<"$g"
	row "p guest pause, $size" "pause ${pause:-?} us (stop to resumed on the destination), total $D_total_ms ms" \
	    "-" "-" "< $((T_P_PAUSE_US / 1000)) ms" "$(pass_miss "$ok")"
	row "p local fault by faultd, $size" "${nf:-0} faults, ${zf:-0} of them on zero pages: p50 ${gp50:-?} us, p99 ${gp99:-?} us as the guest waited; faultd's own p50 ${z50:-?} us" \
	    "uffd rtt $L_UFFD us" "$(calc %.2f "${gp50:-0} / $L_UFFD")" "(report)" "-" \
	    "both from the touch to the toucher resumed: the guest's slowest accesses after the switch, as many as faultd's faults, against the bare round trip (poll()ing handler on another CPU; $L_UFFD_SAME us on the same CPU). faultd's own figure runs from its read of the fault to UFFDIO_ZEROPAGE done"
}

# ---- perf: where scenario b's time goes (optional) --------------------------
perf_b() {
	local ch=${BENCH_PERF_CHANNELS:-1} flags=() what
	command -v perf >/dev/null 2>&1 || { say "perf: not installed"; return 0; }
	case $ch in 1|2|3|4) ;; *) die "BENCH_PERF_CHANNELS=$ch: 1 to 4" ;; esac
	[ "${BENCH_PERF_PREALLOC:-0}" = 1 ] && flags=(--prealloc)
	what="$ch channel(s)${flags:+, preallocated destination}"
	if [ "${BENCH_PERF_HUGE:-0}" = 1 ]; then
		hp_pool 2048
		[ -n "$HP_WHY" ] && die "BENCH_PERF_HUGE: $HP_WHY"
		flags+=(--hugepages)
		what+=", huge pages"
	fi
	say "perf: scenario b ($what) once more under 'perf record -a -g'"
	start_vmm pf --memory 2G --vcpus 1 --test-guest fill --guest-passes 1 --heartbeat 200
	wait_until 120 pages_at_least pf 0 $(( (2048 - 2) * 256 )) || die "pf: fill did not finish"
	start_vmm pd --memory 2G --vcpus 1 --incoming "${flags[@]}"
	perf record -a -g -e cpu-clock -F 999 -o "$RUNDIR/perf.data" \
		>"$RUNDIR/perf.log" 2>&1 &
	local ppid=$! i
	PIDS+=("$ppid")
	sleep 0.5
	migrate_sampled b-perf pf pd 120 --channels "$ch"
	derive
	kill -INT "$ppid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do kill -0 "$ppid" 2>/dev/null || break; sleep 0.1; done
	quit_vmm pf pd
	{
		echo "# perf record -a -g -e cpu-clock during scenario b ($what, 2 GiB):" \
		     "$OUTCOME in $D_total_ms ms"
		echo "# the whole machine, by process (source worker $W_SRC, destination worker $W_DST)"
		perf report -i "$RUNDIR/perf.data" --stdio --no-children -g none \
			--sort comm,pid 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 10
		echo "# source worker $W_SRC, threads $W_TIDS_SRC (reads the guest's" \
		     "memfd, sends), by symbol (share of its own samples)"
		perf report -i "$RUNDIR/perf.data" --stdio --no-children -g none \
			--tid "$W_TIDS_SRC" --percentage relative --sort dso,sym \
			2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 15
		echo "# destination worker $W_DST, threads $W_TIDS_DST (receives into" \
		     "the incoming guest's memfd), by symbol (share of its own samples)"
		perf report -i "$RUNDIR/perf.data" --stdio --no-children -g none \
			--tid "$W_TIDS_DST" --percentage relative --sort dso,sym \
			2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 15
	} >"$OUT/perf-b.txt"
	hp_give_back
	say "perf: top symbols in $OUT/perf-b.txt"
}

for sc in $SCENARIOS; do
	case $sc in
	a)
		scenario_a 1
		scenario_a 4
		[ -n "$VERIFY_FLAGS" ] && scenario_a 4 -verify $VERIFY_FLAGS
		;;
	b) scenario_b ;;
	c)
		scenario_c ac
		scenario_c noac
		c_verdict
		;;
	p)
		scenario_p_rewrite
		scenario_p_rewrite prealloc
		scenario_p_faults
		scenario_p_pause 1G
		scenario_p_pause 8G
		scenario_p_pause 8G verify
		;;
	*) die "unknown scenario '$sc' (a, b, c or p)" ;;
	esac
done
[ "${BENCH_PERF:-0}" = 1 ] && perf_b

# ---- d: downtime never more than 10% over the limit --------------------------------
worst_run="" worst=0 over=""
for d in "${DOWNTIMES[@]}"; do
	read -r r dt dl <<<"$d"
	# Unrounded: microseconds against the limit in ms.
	x=$(calc %.6f "$dt / ($dl * 1000)")
	if awk "BEGIN { exit !($x > $worst) }"; then
		worst=$x worst_run="$r ($(calc %.3f "$dt / 1000") ms, limit $dl ms)"
	fi
	awk "BEGIN { exit !($dt > $T_D_OVER * $dl * 1000) }" && over+="${over:+, }$r $(calc %.4f "$x")"
done
if [ ${#DOWNTIMES[@]} -gt 0 ]; then
	ok=0
	[ -z "$over" ] && ok=1
	row "d downtime vs limit, all runs" "worst downtime/limit $(calc %.4f "$worst"): $worst_run" "-" \
	    "$(calc %.3f "$worst")" "<= $T_D_OVER" "$(pass_miss "$ok")" \
	    "${#DOWNTIMES[@]} completed migrations, downtimes in microseconds; over the limit by more than 10%: ${over:-none}"
fi

# ---- the table ---------------------------------------------------------------------
echo
echo "tern make bench, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
if [ "$LIMITS_FROM" = "this run" ]; then
	echo "machine limits, measured in this run (GB/s, median):"
else
	echo "machine limits, NOT measured in this run: from $BENCH_LIMITS_JSON (GB/s, median):"
fi
echo "  memcpy 1 thread $L_CP1, 2 threads $L_CP2; zero-page scan (or64) $L_Z64, avx2 $L_ZAVX;" \
     "first write to a fresh memfd $L_FT"
echo "  loopback TCP into RAM: 1 stream $L_T1, 2 streams $L_T2, 4 streams $L_T4"
echo "  for comparison, not a limit for migd (which places first-time pages by UFFDIO_COPY with a helper thread):" \
     "loopback readv() into a fresh memfd, one thread a stream: 1 stream $L_F1, 2 streams $L_F2"
echo "  zstd level 1 on 4 KiB pages: incompressible $L_ZR, text-like $L_ZT"
echo "  userfaultfd round trip (fault, UFFDIO_COPY, resume; microseconds): poll()ing handler on another CPU $L_UFFD, on the same CPU $L_UFFD_SAME, anywhere $L_UFFD_ANY; spinning $L_UFFD_SPIN"
echo "  loopback TCP round trip, a small request answered with one page (microseconds): $L_RTT"
echo "  placing pages by page size, for comparison (guest RAM is in 4 KiB pages but in b's huge rows, vmm --hugepages): UFFDIO_COPY into fresh memory, 4 KiB pages $L_P4K, 2 MiB huge pages $L_P2M; first write to fresh 2 MiB huge pages $L_FT2M (null: no huge page pool could be reserved)"
[ -n "$BUSY_NOTE" ] && echo "WARNING: $BUSY_NOTE"
[ -z "$AC_FLAGS$TIMEOUT_FLAGS$COMPRESS_FLAGS$VERIFY_FLAGS" ] &&
	echo "note: migctl has none of --auto-converge, --timeout-action, --compress, --verify yet"
fmt='%-32s %-84s %-20s %-6s %-19s %s\n'
echo
lhead="limit (same run)"
[ "$LIMITS_FROM" = "this run" ] || lhead="limit (from file)"
# shellcheck disable=SC2059
printf "$fmt" scenario figures "$lhead" ratio target result
for i in "${!ROWS[@]}"; do
	IFS='|' read -r a b c d e f <<<"${ROWS[$i]}"
	# shellcheck disable=SC2059
	printf "$fmt" "$a" "$b" "$c" "$d" "$e" "$f"
	[ -n "${NOTES[$i]}" ] && printf '%-32s   %s\n' "" "${NOTES[$i]}"
done
echo
echo "ratio: a, b, c: page bytes / (total - setup time) over the limit shown (for zstd: over zstd-1's own rate);" \
     "d: downtime / limit; p: as the limit column says (total time over sending the RAM once, a fault's latency over the bare uffd round trip)."
echo "targets: issue 5 (a-d), issue 6 (p); MISS is reported, never an error; n/a: the premise of the target was absent. Charts and results: $OUT/"

# ---- results.json --------------------------------------------------------------------
git_desc=$(git describe --always --tags 2>/dev/null || echo unknown)
git --no-optional-locks diff --quiet HEAD -- 2>/dev/null || git_desc="$git_desc-dirty"
rows_json=""
for i in "${!ROWS[@]}"; do
	IFS='|' read -r a b c d e f <<<"${ROWS[$i]}"
	rows_json+="${rows_json:+,}{\"scenario\":\"$a\",\"figures\":\"$b\",\"limit\":\"$c\",\"ratio\":\"$d\",\"target\":\"$e\",\"result\":\"$f\",\"note\":\"${NOTES[$i]}\"}"
done
runs_json=$(IFS=,; echo "${RUNS_JSON[*]}")
cat >"$OUT/results.json" <<EOF
{"date":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","git":"$git_desc","host":{"cpus":$(nproc),"mem_kib":$(awk '/MemTotal/ { print $2 }' /proc/meminfo),"kernel":"$(uname -r)","idle_pct_before":$idle},
"limits":$LIMITS,"limits_from":"$LIMITS_FROM",
"targets":{"a_total_ms":$T_A_TOTAL,"a_downtime_ms":$T_A_DOWNTIME,"b_ratio_to_tcp":$T_B_RATIO,"c_total_ms":$T_C_TOTAL,"c_downtime_limit_ms":$C_LIMIT,"d_downtime_over_limit":$T_D_OVER,"p_total_over_ram_once":$T_P_TOTAL,"p_fault_p50_over_uffd_rtt":$T_P_P50,"p_fault_p99_us":$T_P_P99_US,"p_pause_us":$T_P_PAUSE_US},
"qemu_7_2":{"a_total_ms_1ch":[1100,2000],"a_total_ms_4ch":[670,1700],"a_downtime_ms":[55,99],"b_gbps":[0.35,1.3],"c_ac_total_ms":[16500,18000],"c_ac_downtime_ms":230,"c_noac":"no convergence in 120 s","p_total_ms":[10000,12400],"p_pause_ms":[2,4],"p_blocked_ms":[93,173]},
"settings":{"a_guest_rate":$A_RATE,"a_downtime_limit_ms":$A_DOWNTIME,"c_channels":$C_CHANNELS,"noac_seconds":$NOAC_S,"auto_converge_flags":"$AC_FLAGS","timeout_flags":"$TIMEOUT_FLAGS","compress_flags":"$COMPRESS_FLAGS","verify_flags":"$VERIFY_FLAGS"},
"table":[$rows_json],
"runs":[$runs_json]}
EOF
exit 0
