#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Chaos soak: randomised migrations between two "hosts" (two run
# directories on loopback: the source's with its own migd, the
# destination's with its migd and faultd), each hit at a random moment by
# one random fault (a worker, migd or faultd killed or restarted, the
# connections cut with ss -K, cancel, pause, or nothing), then driven to
# an end the way an operator reading the error messages would.  A migd
# restarted past a postcopy switch adopts the job's worker (migd(8)): a
# paused job is then recovered, and the guest ends on the destination.  After
# each round it checks: exactly one vmm runs the guest, its memory check
# passes and its console has no FAIL line (unless the messages say the
# guest is lost, and why); migd and faultd did not die of it; no worker
# is left behind and no job stays non-final; every error message is
# collected for review.
#
# Not part of make check.  Run from the top of the tree, as root, with
# the binaries built (make):
#     nice -n 5 bash tests/soak/chaos.sh [SECONDS]      (default 600)
# Results go to $SOAK_OUT (default /tmp/tern-soak.PID): summary.log (a
# line per round), violations.log, messages.log (every error a command
# printed or a job reported), commands.log, and round-N/ with the logs
# and consoles of each round that broke an invariant.
# SOAK_SEED=N replays a run's random choices; SOAK_<KNOB>=VALUE fixes one
# knob (GUEST VCPUS MEM RANGE CHANNELS BW POSTCOPY VERIFY COMPRESS
# TIMEOUT FAULT WHEN DELAY WARM HUGE) to re-run a round's scenario, e.g.
#     SOAK_FAULT=kill_dst_worker SOAK_POSTCOPY=manual bash tests/soak/chaos.sh 120
set -u
cd "$(dirname "$0")/../.."
export TERN_BUILD=${TERN_BUILD:-$PWD/build}
. tests/integration/lib.sh
need_kvm
need_uffd
trap 'exit 143' TERM INT        # lib.sh's EXIT trap kills what this started

DURATION=${1:-600}
SEED=${SOAK_SEED:-$(( $$ ^ $(date +%s) ))}
RANDOM=$SEED
OUT=${SOAK_OUT:-/tmp/tern-soak.$$}
mkdir -p "$OUT"
echo "soak: seed $SEED, $DURATION s, results in $OUT"
echo "seed $SEED duration $DURATION start $(date -Is)" >>"$OUT/summary.log"
HAVE_SS=1
ss_kill_works || { HAVE_SS=0; echo "soak: no ss -K ($SS_KILL_WHY): no cut faults"; }

# HUGE: a guest in 2 MiB huge pages (vmm --hugepages) on the source, the
# destination or both, from a pool this soak adds to the host's and
# gives back at its end (two 64 MiB guests at most at once).  Such a job
# cannot postcopy: a request is refused and it goes on in precopy, and
# one that may switch by itself fails at once, its source running on.
HUGES=(none)
hp_take 72
if [ -z "$HP_WHY" ]; then
	HUGES=(none none none src dst both)
else
	echo "soak: no guests in huge pages: $HP_WHY"
fi

SRC_DIR=$TEST_DIR/src
mkdir -p "$SRC_DIR"
ROUND=0
VIOL=0

# Never let lib.sh's fail end the soak: a helper that gives up makes the
# round a violation instead (rounds run in a subshell-free function, so
# fail returns 1 through a flag).
fail() { violation "helper: $*"; return 1; }

# pick KNOB CHOICE...: a random choice, unless SOAK_KNOB fixes it.
pick() {
	local knob=$1 v
	shift
	v="SOAK_$knob"
	if [ -n "${!v:-}" ]; then echo "${!v}"; else
		local a=("$@"); echo "${a[RANDOM % ${#a[@]}]}"
	fi
}

violation() {
	VIOL=$((VIOL + 1))
	ROUND_VIOL=$((ROUND_VIOL + 1))
	echo "R$ROUND VIOLATION: $*" | tee -a "$OUT/violations.log"
}

# run LABEL CMD...: run a client command (bounded), log it, keep its
# output in $R_OUT and its errors in messages.log; returns its status.
run() {
	local label=$1 rc err
	shift
	err=$(mktemp)
	R_OUT=$(timeout -k 5 100 "$@" 2>"$err")
	rc=$?
	printf 'R%s %s [%s] rc=%s: %s\n' "$ROUND" "$(date +%T)" "$label" "$rc" "$*" >>"$OUT/commands.log"
	if [ -s "$err" ]; then
		sed "s/^/R$ROUND [$label] /" "$err" >>"$OUT/messages.log"
		sed 's/^/    /' "$err" >>"$OUT/commands.log"
		R_ERR=$(cat "$err")
		ALL_MSGS+=$'\n'"$R_ERR"
	else
		R_ERR=
	fi
	[ $rc = 124 ] && violation "command hung (100 s): $label: $*"
	rm -f "$err"
	return $rc
}
smc() { run "src $1" "$BIN/migctl" --rundir "$SRC_DIR" --timeout 60 "$@"; }
dmc() { run "dst $1" "$BIN/migctl" --rundir "$RUNDIR" --timeout 60 "$@"; }
svc() { run "src vmmctl $1" "$BIN/vmmctl" --rundir "$SRC_DIR" --timeout 60 "$@"; }
dvc() { run "dst vmmctl $1" "$BIN/vmmctl" --rundir "$RUNDIR" --timeout 60 "$@"; }

# Quiet queries (not logged as commands).
sjob() { timeout 30 "$BIN/migctl" --rundir "$SRC_DIR" --timeout 20 --json status "$1" 2>/dev/null | jget "$2"; }
djob() { timeout 30 "$BIN/migctl" --rundir "$RUNDIR" --timeout 20 --json status "$1" 2>/dev/null | jget "$2"; }
svm() { timeout 30 "$BIN/vmmctl" --rundir "$SRC_DIR" --timeout 20 --json status "$1" 2>/dev/null |
	sed -n 's/.*"state":"\([a-z]*\)".*/\1/p'; }
dvm() { timeout 30 "$BIN/vmmctl" --rundir "$RUNDIR" --timeout 20 --json status "$1" 2>/dev/null |
	sed -n 's/.*"state":"\([a-z]*\)".*/\1/p'; }
is_final() { case $1 in completed|failed|cancelled|"") return 0 ;; esac; return 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# ---- the daemons ------------------------------------------------------

# (start_migd truncates migd.log: an earlier migd's goes to migd.old.log)
src_migd() {
	local RUNDIR=$SRC_DIR
	[ -f "$RUNDIR/migd.log" ] && cat "$RUNDIR/migd.log" >>"$RUNDIR/migd.old.log"
	start_migd; SRC_MIGD=$MIGD_PID
}
dst_migd() {
	[ -f "$RUNDIR/migd.log" ] && cat "$RUNDIR/migd.log" >>"$RUNDIR/migd.old.log"
	start_migd; DST_MIGD=$MIGD_PID
}
# stop_pid PID: SIGTERM, wait (20 s), then SIGKILL.
stop_pid() {
	local i
	kill -TERM "$1" 2>/dev/null
	for ((i = 0; i < 200; i++)); do alive "$1" || return 0; sleep 0.1; done
	violation "pid $1 ($2) did not end 20 s after SIGTERM"
	kill -KILL "$1" 2>/dev/null
	sleep 0.5
}
kill9() { kill -KILL "$1" 2>/dev/null; for _ in $(seq 50); do alive "$1" || break; sleep 0.1; done; }
# await_adoption sjob|djob NAME WORKER: after a migd restart, a job past
# its postcopy switch comes back once the new migd adopted its worker
# (about a second, migd(8)); a job before its switch was cancelled, and
# its worker ends.  An operator waits for one or the other (10 s).
await_adoption() {
	local i
	# (no worker: the job had ended; pid 0 would be ours to kill -0)
	[ "${3:-0}" -gt 0 ] 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		alive "$3" || return 0
		[ -n "$("$1" "$2" state)" ] && return 0
		sleep 0.1
	done
	violation "$2: worker $3 neither adopted nor ended 10 s after its migd restarted"
}

# bounce_migd src|dst kill|restart: that host's migd killed (SIGKILL) or
# stopped (SIGTERM), then started again; its job, past a postcopy
# switch, is adopted, or before it, ends.
bounce_migd() {
	local job=${1:0:1}job vm=$D pid=$DST_MIGD w
	[ "$1" = src ] && { vm=$S; pid=$SRC_MIGD; }
	FAULT_NOTE="in $($job "$vm" state)"
	w=$($job "$vm" worker_pid)
	if [ "$2" = kill ]; then kill9 "$pid"; else stop_pid "$pid" "$1 migd"; fi
	"$1"_migd
	await_adoption "$job" "$vm" "$w"
}

faultd_up() { start_faultd; }
faultd_up
dst_migd
src_migd

# Daemons killed on purpose this round (not a violation (b)).
daemons_check() {
	alive "$SRC_MIGD" || { violation "the source's migd ($SRC_MIGD) died: $(tail -n 5 "$SRC_DIR/migd.log" | tr '\n' '|')"; src_migd; }
	alive "$DST_MIGD" || { violation "the destination's migd ($DST_MIGD) died: $(tail -n 5 "$RUNDIR/migd.log" | tr '\n' '|')"; dst_migd; }
	alive "$FAULTD_PID" || { violation "faultd ($FAULTD_PID) died: $(tail -n 5 "$RUNDIR/faultd.log" | tr '\n' '|')"; faultd_up; }
}

# ---- one round --------------------------------------------------------

keep_evidence() {
	local d=$OUT/round-$ROUND
	mkdir -p "$d"
	cp -a "$SRC_DIR/$S".* "$RUNDIR/$D".* "$d/" 2>/dev/null
	grep -a "\[$S/\|$S\b" "$SRC_DIR/migd.log" | tail -n 200 >"$d/src-migd.log"
	grep -a "\[$D/\|$D\b" "$RUNDIR/migd.log" | tail -n 200 >"$d/dst-migd.log"
	tail -n 200 "$SRC_DIR/migd.log" >"$d/src-migd.tail.log"
	tail -n 200 "$RUNDIR/migd.log" >"$d/dst-migd.tail.log"
	tail -n 200 "$RUNDIR/faultd.log" >"$d/faultd.tail.log"
	grep "^R$ROUND " "$OUT/commands.log" >"$d/commands.log" 2>/dev/null
	cat "$SRC_DIR"/migd.old.log "$SRC_DIR"/migd.log >"$d/src-migd.full.log" 2>/dev/null
	cat "$RUNDIR"/migd.old.log "$RUNDIR"/migd.log >"$d/dst-migd.full.log" 2>/dev/null
	printf '%s\n' "$SPEC" >"$d/spec"
	printf '%s\n' "$ALL_MSGS" >"$d/messages"
}

# The errors of both jobs, kept for the decisions and the review.
note_job_errors() {
	local e
	e=$(sjob "$S" error)
	[ -n "$e" ] && { ALL_MSGS+=$'\n'"src job: $e"; echo "R$ROUND [src job $(sjob "$S" state)] $e" >>"$OUT/messages.log"; }
	e=$(djob "$D" error)
	[ -n "$e" ] && { ALL_MSGS+=$'\n'"dst job: $e"; echo "R$ROUND [dst job $(djob "$D" state)] $e" >>"$OUT/messages.log"; }
}

# The fault, at a random moment.
inject() {
	local w
	case $FAULT in
	none) ;;
	kill_src_worker|kill_dst_worker)
		if [ $FAULT = kill_src_worker ]; then w=$(sjob "$S" worker_pid); else w=$(djob "$D" worker_pid); fi
		if [ -n "$w" ] && [ "$w" -gt 0 ] 2>/dev/null; then
			FAULT_NOTE="worker $w in $(sjob "$S" state)/$(djob "$D" state)"
			kill -KILL "$w"
		else FAULT_NOTE="no worker (jobs $(sjob "$S" state)/$(djob "$D" state))"; fi ;;
	kill_faultd)
		FAULT_NOTE="in $(djob "$D" state)"
		kill9 "$FAULTD_PID"; sleep 1; faultd_up ;;
	restart_faultd)
		FAULT_NOTE="in $(djob "$D" state)"
		stop_pid "$FAULTD_PID" faultd; faultd_up ;;
	restart_src_migd) bounce_migd src restart ;;
	kill_src_migd) bounce_migd src kill ;;
	restart_dst_migd) bounce_migd dst restart ;;
	kill_dst_migd) bounce_migd dst kill ;;
	ss_cut)
		FAULT_NOTE="in $(sjob "$S" state)"
		ss -K -tn "( src 127.0.0.1:${ADDR##*:} or dst 127.0.0.1:${ADDR##*:} )" >/dev/null 2>&1 ;;
	cancel)
		FAULT_NOTE="in $(sjob "$S" state)"
		smc cancel "$S" ;;
	pause)
		FAULT_NOTE="in $(sjob "$S" state)"
		smc pause "$S" ;;
	cut_then_*)
		# Two faults: the connections cut (in postcopy both sides
		# pause), then a second one while paused.
		FAULT_NOTE="in $(sjob "$S" state)"
		ss -K -tn "( src 127.0.0.1:${ADDR##*:} or dst 127.0.0.1:${ADDR##*:} )" >/dev/null 2>&1
		local i
		for ((i = 0; i < 100; i++)); do
			case "$(sjob "$S" state)/$(djob "$D" state)" in
			postcopy_paused/postcopy_paused|completed/*|failed/*|cancelled/*) break ;;
			esac
			sleep 0.1
		done
		FAULT_NOTE+=",then_$(sjob "$S" state)/$(djob "$D" state)"
		# A restarted migd adopts a paused job: the operator
		# recovers it as if nothing had happened.
		case $FAULT in
		cut_then_restart_src_migd)
			w=$(sjob "$S" worker_pid)
			stop_pid "$SRC_MIGD" "src migd"; src_migd
			await_adoption sjob "$S" "$w" ;;
		cut_then_restart_dst_migd)
			w=$(djob "$D" worker_pid)
			stop_pid "$DST_MIGD" "dst migd"; dst_migd
			await_adoption djob "$D" "$w" ;;
		cut_then_kill_src_worker) w=$(sjob "$S" worker_pid); [ "${w:-0}" -gt 0 ] && kill -KILL "$w" ;;
		cut_then_kill_dst_worker) w=$(djob "$D" worker_pid); [ "${w:-0}" -gt 0 ] && kill -KILL "$w" ;;
		cut_then_kill_faultd) kill9 "$FAULTD_PID"; sleep 1; faultd_up ;;
		cut_then_recover_cut)
			# A recovery, and a cut in the middle of it.
			dmc recover "$D" --listen "$ADDR"
			smc recover "$S" "$ADDR"
			sleep "0.0$((RANDOM % 10))"
			ss -K -tn "( src 127.0.0.1:${ADDR##*:} or dst 127.0.0.1:${ADDR##*:} )" >/dev/null 2>&1 ;;
		esac ;;
	esac
}

# recover_once: the destination listens again (same address, else a new
# port), the source is pointed at it.
recover_once() {
	RECOVERIES=$((RECOVERIES + 1))
	if ! dmc recover "$D" --listen "$ADDR"; then
		dmc recover "$D" --listen tcp:127.0.0.1:0 || return 1
	fi
	local a
	a=$(printf '%s\n' "$R_OUT" | sed -n 's/^listen \(tcp:[0-9.]*:[0-9]*\)$/\1/p')
	[ -n "$a" ] && ADDR=$a
	smc recover "$S" "$ADDR" || return 1
	local i
	for ((i = 0; i < 300; i++)); do
		case "$(sjob "$S" state)/$(djob "$D" state)" in
		postcopy_active/postcopy_active|completed/*|*/completed) return 0 ;;
		esac
		sleep 0.1
	done
	return 1
}

# drive: follow the messages until both jobs are final (bounded).
drive() {
	local t0=$SECONDS ss ds se de gave_up=0 forced=0 scanc=0 dcanc=0
	while ((SECONDS - t0 < 180)); do
		ss=$(sjob "$S" state); ds=$(djob "$D" state)
		if is_final "$ss" && is_final "$ds"; then return 0; fi
		if [ "$ss" = postcopy_paused ] || [ "$ds" = postcopy_paused ]; then
			sleep 1
			ss=$(sjob "$S" state); ds=$(djob "$D" state)
			se=$(sjob "$S" error); de=$(djob "$D" error)
			if [ $forced = 0 ] && { [ $RECOVERIES -ge 3 ] ||
				[ "$(sjob "$S" unrecoverable)" = true ] ||
				[ "$(djob "$D" unrecoverable)" = true ] ||
				is_final "$ss" || is_final "$ds" ||
				[[ "$se$de" == *"never recover"* ]] ||
				[[ "$se$de" == *"cancel"*"--force"* && "$se$de" != *"recover"* ]]; }; then
				# The messages say it cannot be recovered.
				forced=1
				ALL_MSGS+=$'\n'"src job: $se"$'\n'"dst job: $de"
			fi
			if [ $forced = 1 ]; then
				# Each side once it is paused (the source may
				# pause only after the destination ended).
				[ "$ds" = postcopy_paused ] && [ $dcanc = 0 ] &&
					{ dcanc=1; dmc cancel "$D" --force --wait; }
				[ "$ss" = postcopy_paused ] && [ $scanc = 0 ] &&
					{ scanc=1; smc cancel "$S" --force --wait; }
				sleep 0.5
				continue
			fi
			if [ "$ss" = postcopy_paused ] && [ "$ds" = postcopy_paused ]; then
				recover_once || sleep 1
				continue
			fi
		fi
		# Not converging (no timeout asked): the operator cancels.
		if ((SECONDS - t0 > 50)) && [ $gave_up = 0 ]; then
			gave_up=1
			ALL_MSGS+=$'\n'"(operator: cancel after 50 s in $ss/$ds)"
			case $ss in postcopy_*) ;; *) smc cancel "$S" ;; esac
		fi
		sleep 0.5
	done
	violation "jobs not final after 180 s: src $S $(sjob "$S" state) ($(sjob "$S" error)); dst $D $(djob "$D" state) ($(djob "$D" error))"
	return 1
}

# settle: who runs the guest; follow 'vmmctl cont ... --force' advice.
settle() {
	local sv dv runner=
	note_job_errors
	# The messages say to quit the destination's vmm (it will never get
	# its pages), and then how to run the guest on the source again.
	if [[ "$ALL_MSGS" == *[Qq]"uit vmm $D"* || "$(djob "$D" error)" == *"quit this vmm"* ]] &&
	   [ "$(djob "$D" state)" != completed ]; then
		dvc quit "$D"
		for _ in $(seq 100); do alive "$DPID" || break; sleep 0.1; done
		OUTCOME="dst-quit"
	fi
	sv=$(svm "$S"); dv=$(dvm "$D")
	if [ "$sv" != running ] && [ "$dv" != running ]; then
		if [[ "$ALL_MSGS" == *"vmmctl cont $S --force"* ]] ||
		   [[ "$ALL_MSGS" == *"vmmctl cont --force' runs it from there"* ]]; then
			svc cont "$S" --force
			OUTCOME="${OUTCOME:+$OUTCOME+}cont-force"
		elif [ "$sv" = paused ] && ! alive "$DPID" &&
		     svc cont "$S" && false; then
			:       # (a plain cont that worked: not expected)
		elif [ "$sv" = paused ] && ! alive "$DPID" &&
		     [[ "$R_ERR" == *"only if the guest was lost there"*"vmmctl cont $S --force"* ]] &&
		     [[ "$ALL_MSGS" == *"never get"* ]]; then
			# Plain cont says what to do once the guest was
			# lost on the destination, which the messages said.
			svc cont "$S" --force
			OUTCOME="${OUTCOME:+$OUTCOME+}cont-says-force"
		elif [ "$sv" = paused ] && ! alive "$DPID"; then
			violation "the destination vmm $D is gone; source $S paused, no message says what to do"
		fi
		sv=$(svm "$S"); dv=$(dvm "$D")
	fi
	if [ "$sv" = running ] && [ "$dv" = running ]; then
		violation "split brain: both $S and $D run the guest"
		runner=
	elif [ "$sv" = running ]; then runner=src
	elif [ "$dv" = running ]; then runner=dst
	fi
	if [ -z "$runner" ] && [ -z "$ROUND_VIOL_SPLIT" ]; then
		if [[ "$ALL_MSGS" == *"lost"* ]]; then
			echo "R$ROUND guest lost, as the messages say: $(printf '%s\n' "$ALL_MSGS" | grep -m1 lost)" >>"$OUT/lost.log"
			OUTCOME="lost(stated)"
			violation_if_unstated_lost
		else
			violation "no vmm runs the guest: $S is '$sv', $D is '$dv'; nothing said it was lost"
		fi
		return
	fi
	RUNNER=$runner
	local name=$S vc=svc dir=$SRC_DIR
	[ $runner = dst ] && { name=$D; vc=dvc; dir=$RUNDIR; }
	OUTCOME="${OUTCOME:+$OUTCOME+}on-$runner"
	# The guest must make progress and pass the memory check.
	local before i
	before=$(RUNDIR=$dir pages_of "$name" 0)
	for ((i = 0; i < 300; i++)); do
		RUNDIR=$dir pages_above "$name" 0 "${before:-0}" && break
		sleep 0.1
	done
	((i < 300)) || violation "$name (running) made no progress in 30 s past ${before:-0} pages"
	$vc check "$name" || violation "$name: vmmctl check failed: $R_ERR $R_OUT"
	if grep -a -m 5 FAIL "$dir/$name.serial" >/tmp/soak-fail.$$ 2>/dev/null; then
		violation "$name console: $(tr '\n' '|' </tmp/soak-fail.$$)"
	fi
	rm -f /tmp/soak-fail.$$
}
violation_if_unstated_lost() { :; }

# A migd restarted (or killed) past a postcopy switch loses nothing: the
# next one adopts the job, which completes (after a recovery, if paused),
# and the guest runs on the destination.  Before, a paused job ended
# with its migd, and the guest went back to the switch.
adopted_check() {
	local ok=completed
	case $FAULT in
	restart_src_migd|kill_src_migd|restart_dst_migd|kill_dst_migd)
		[ "$FAULT_NOTE" = "in postcopy_active" ] || return 0
		# (one that completed as its migd ended, its final report
		# written to that migd but never read, is known to no migd:
		# its end is in the worker's log only; one that completed
		# later gives its end to the new migd)
		ok="completed|" ;;
	cut_then_restart_src_migd|cut_then_restart_dst_migd)
		[[ "$FAULT_NOTE" == *",then_postcopy_paused/postcopy_paused" ]] || return 0 ;;
	*) return 0 ;;
	esac
	in_ok "$(sjob "$S" state)" "$ok" && in_ok "$(djob "$D" state)" "$ok" &&
		[ "$RUNNER" = dst ] ||
		violation "$FAULT $FAULT_NOTE: not completed on the destination: src $(sjob "$S" state) ($(sjob "$S" error)), dst $(djob "$D" state) ($(djob "$D" error)), runner ${RUNNER:-none}"
}

# in_ok STATE A|B...: STATE is one of them ("" included, as "completed|").
in_ok() { local IFS='|' v; for v in $2; do [ "$1" = "$v" ] && return 0; done; [ -z "$1" ] && [[ "$2" == *"|" ]]; }

# Workers must end; jobs must be final.
leftovers() {
	local w i
	for w in "${WORKERS[@]}"; do
		for ((i = 0; i < 600; i++)); do alive "$w" || break; sleep 0.1; done
		if alive "$w"; then
			violation "worker $w ($(tr '\0' ' ' </proc/$w/cmdline 2>/dev/null)) still there 60 s after the round"
			kill -KILL "$w" 2>/dev/null
		fi
	done
	for w in $(pgrep -P "$SRC_MIGD") $(pgrep -P "$DST_MIGD"); do
		violation "migd child $w still there after the round: $(tr '\0' ' ' </proc/$w/cmdline 2>/dev/null)"
	done
	local ss ds
	ss=$(sjob "$S" state); ds=$(djob "$D" state)
	is_final "$ss" || violation "src job $S left $ss"
	is_final "$ds" || violation "dst job $D left $ds"
}

cleanup_round() {
	local p
	run "src quit" "$BIN/vmmctl" --rundir "$SRC_DIR" --timeout 20 quit "$S"
	run "dst quit" "$BIN/vmmctl" --rundir "$RUNDIR" --timeout 20 quit "$D"
	for p in "$SPID" "$DPID"; do
		for _ in $(seq 100); do alive "$p" || break; sleep 0.1; done
		alive "$p" && { echo "R$ROUND: vmm $p did not quit, killed" >>"$OUT/commands.log"; kill -KILL "$p"; }
	done
	# Their logs and consoles go (the evidence was kept if needed).
	rm -f "$SRC_DIR/$S".* "$RUNDIR/$D".* 2>/dev/null
	# Keep the daemons' logs bounded.
	for p in "$SRC_DIR/migd.log" "$RUNDIR/migd.log" "$RUNDIR/faultd.log" \
		"$SRC_DIR/migd.old.log" "$RUNDIR/migd.old.log"; do
		[ "$(stat -c %s "$p" 2>/dev/null || echo 0)" -gt 20000000 ] && : >"$p"
	done
}

one_round() {
	ROUND=$((ROUND + 1))
	S=s$ROUND D=d$ROUND
	ROUND_VIOL=0 ROUND_VIOL_SPLIT= RECOVERIES=0 ALL_MSGS= OUTCOME= FAULT_NOTE= RUNNER=
	WORKERS=()
	GUEST=$(pick GUEST dirty fill fill)
	VCPUS=$(pick VCPUS 1 2)
	MEM=$(pick MEM 32M 48M 64M)
	RANGE=$(pick RANGE all 8M)
	CHANNELS=$(pick CHANNELS 1 2 3 4)
	BW=$(pick BW unlimited 8M 4M 2M 2M 1M)
	POSTCOPY=$(pick POSTCOPY none auto manual manual)
	VERIFY=$(pick VERIFY no yes)
	COMPRESS=$(pick COMPRESS none none zstd)
	TMO=$(pick TIMEOUT none none cancel postcopy)
	HUGE=$(pick HUGE "${HUGES[@]}")
	local faults=(none kill_src_worker kill_dst_worker kill_faultd restart_faultd
		restart_src_migd kill_src_migd restart_dst_migd kill_dst_migd cancel pause)
	[ $HAVE_SS = 1 ] && faults+=(ss_cut ss_cut cut_then_restart_src_migd
		cut_then_restart_dst_migd cut_then_kill_src_worker
		cut_then_kill_dst_worker cut_then_kill_faultd cut_then_recover_cut)
	FAULT=$(pick FAULT "${faults[@]}")
	# When: early (in the first 0.3 s), a random moment of precopy, a
	# random moment after the switch to postcopy, or at a random time
	# within the transfer's rough length.
	WHEN=$(pick WHEN early active active postcopy postcopy time)
	case $FAULT in cut_then_*) WHEN=postcopy; [ "$POSTCOPY" = none ] && POSTCOPY=manual ;; esac
	[ "$WHEN" = postcopy ] && [ "$POSTCOPY" = none ] && [ "$TMO" != postcopy ] && WHEN=active
	# In huge pages postcopy never comes: a fault waits for precopy.
	[ "$HUGE" != none ] && [ "$WHEN" = postcopy ] && WHEN=active
	local est_ms=500
	[ "$BW" != unlimited ] && est_ms=$(( ${MEM%M} * 1000 / ${BW%M} ))
	case $WHEN in
	early) est_ms=300 ;;
	active|postcopy) est_ms=1500 ;;
	esac
	DELAY=$(pick DELAY "$(printf '%d.%03d' $(( (RANDOM * 32768 + RANDOM) % est_ms / 1000 )) $(( RANDOM % 1000 )))")
	[ "$WHEN" = early ] && DELAY=0.$(( RANDOM % 300 ))
	WARM=$(pick WARM 0 1 2 3)
	SPEC="SOAK_GUEST=$GUEST SOAK_VCPUS=$VCPUS SOAK_MEM=$MEM SOAK_RANGE=$RANGE SOAK_CHANNELS=$CHANNELS SOAK_BW=$BW SOAK_POSTCOPY=$POSTCOPY SOAK_VERIFY=$VERIFY SOAK_COMPRESS=$COMPRESS SOAK_TIMEOUT=$TMO SOAK_FAULT=$FAULT SOAK_WHEN=$WHEN SOAK_DELAY=$DELAY SOAK_WARM=$WARM SOAK_HUGE=$HUGE"
	echo "R$ROUND $(date +%T) $SPEC" | tee -a "$OUT/commands.log"

	local gargs=(--memory "$MEM" --vcpus "$VCPUS" --test-guest "$GUEST" --guest-rate 2000 --heartbeat 100)
	local dargs=(--memory "$MEM" --vcpus "$VCPUS" --incoming)
	[ "$RANGE" != all ] && gargs+=(--guest-range "$RANGE")
	case $HUGE in src|both) gargs+=(--hugepages) ;; esac
	case $HUGE in dst|both) dargs+=(--hugepages) ;; esac
	RUNDIR=$SRC_DIR start_vmm "$S" "${gargs[@]}" || { cleanup_round; return; }
	SPID=$(pid_of "$S")
	start_vmm "$D" "${dargs[@]}" || { cleanup_round; return; }
	DPID=$(pid_of "$D")
	local i
	for ((i = 0; i < 300; i++)); do RUNDIR=$SRC_DIR pass_at_least "$S" 0 1 && break; sleep 0.1; done
	sleep "$WARM"    # the guest touches more memory: a longer migration
	dmc --json incoming "$D" --listen tcp:127.0.0.1:0 || { violation "incoming: $R_ERR"; cleanup_round; return; }
	TOKEN=$(echo "$R_OUT" | jget token); ADDR=$(echo "$R_OUT" | jget listen)
	local margs=(--token "$TOKEN" --channels "$CHANNELS")
	[ "$BW" != unlimited ] && margs+=(--max-bandwidth "$BW")
	[ "$VERIFY" = yes ] && margs+=(--verify --downtime-limit 5000)
	[ "$COMPRESS" = zstd ] && margs+=(--compress zstd)
	[ "$POSTCOPY" = auto ] && margs+=(--postcopy auto)
	case $TMO in
	cancel) margs+=(--timeout 30 --timeout-action cancel) ;;
	postcopy) margs+=(--timeout 15 --timeout-action postcopy) ;;
	esac
	smc migrate "$S" "$ADDR" "${margs[@]}" --detach ||
		{ echo "R$ROUND migrate refused: $R_ERR" >>"$OUT/summary.log"; cleanup_round; return; }
	for ((i = 0; i < 100; i++)); do
		case $(sjob "$S" state) in setup|"") sleep 0.1 ;; *) break ;; esac
	done
	local w
	w=$(sjob "$S" worker_pid); [ -n "$w" ] && [ "$w" -gt 0 ] 2>/dev/null && WORKERS+=("$w")
	w=$(djob "$D" worker_pid); [ -n "$w" ] && [ "$w" -gt 0 ] 2>/dev/null && WORKERS+=("$w")
	if [ "$POSTCOPY" = manual ]; then
		sleep "0.$((RANDOM % 10))"
		[ "$(sjob "$S" state)" = active ] && smc postcopy "$S"
	fi
	local want=
	case $WHEN in active) want=active ;; postcopy) want=postcopy_active ;; esac
	if [ -n "$want" ]; then
		for ((i = 0; i < 400; i++)); do
			case $(sjob "$S" state) in "$want"|completed|failed|cancelled|"") break ;; esac
			sleep 0.1
		done
	fi
	sleep "$DELAY"
	inject
	echo "R$ROUND fault $FAULT: $FAULT_NOTE" >>"$OUT/commands.log"
	drive
	settle
	adopted_check
	leftovers
	daemons_check
	[ $ROUND_VIOL -gt 0 ] && keep_evidence
	printf 'R%s %s viol=%s outcome=%s recov=%s src=%s dst=%s fault_at=%s | %s\n' "$ROUND" "$(date +%T)" \
		"$ROUND_VIOL" "$OUTCOME" "$RECOVERIES" "$(sjob "$S" state)" "$(djob "$D" state)" \
		"${FAULT_NOTE// /_}" "$SPEC" | tee -a "$OUT/summary.log"
	cleanup_round
}

END=$((SECONDS + DURATION))
while ((SECONDS < END)); do
	one_round
done
echo "soak: $ROUND rounds, $VIOL violations (results in $OUT)" | tee -a "$OUT/summary.log"
# Sanitizer reports or not, the results stay; the run directory goes.
