#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Runs tern's tests: every cmocka unit binary in $O/tests, then every
# integration script in tests/integration (which start the real programs).
# An integration script exits 0 (pass), 77 (skip; its last line of
# output says why) or anything else (fail); a passed test whose host
# could not run a part of it is shown with that part.  Each test is bounded by
# TEST_TIMEOUT seconds.  Usage: tests/run.sh [all|unit|integration] [NAME...]
set -u
cd "$(dirname "$0")/.."
O=${O:-build}
export O TERN_BUILD=$PWD/$O
what=${1:-all}
[ $# -gt 0 ] && shift
only=("$@")
timeout_s=${TEST_TIMEOUT:-600}
logdir=$O/test-logs
mkdir -p "$logdir"
pass=0 fail=0 skip=0 failed=() partial=()

# A name selects a test as run.sh prints it (integration/migd_control,
# unit/test_uri) or by its last part (migd_control, t_migd_control,
# test_uri).
declare -A matched=()
selected() {
	[ ${#only[@]} -eq 0 ] && return 0
	local n base=${1#*/}
	for n in "${only[@]}"; do
		if [ "$n" = "$1" ] || [ "$n" = "$base" ] || [ "$n" = "t_$base" ]; then
			matched[$n]=1
			return 0
		fi
	done
	return 1
}

# The parts of a passed test this host could not run, a line each:
# lib.sh's not_tried, cmocka's skip() (which it lists twice).
not_tried() {
	sed -n 's/^NOT TRIED: //p; s/^\[  SKIPPED \] \(test_[A-Za-z0-9_]*\)$/\1 skipped/p' "$1" |
		sort -u
}

run_one() {	# name, command...
	local name=$1 rc start end nt
	shift
	selected "$name" || return 0
	mkdir -p "$(dirname "$logdir/$name.log")"
	start=$(date +%s)
	timeout -k 10 "$timeout_s" "$@" >"$logdir/$name.log" 2>&1
	rc=$?
	end=$(date +%s)
	case $rc in
	0)  pass=$((pass + 1))
	    printf 'PASS  %-34s %3ss' "$name" $((end - start))
	    nt=$(not_tried "$logdir/$name.log" | wc -l)
	    if [ "$nt" -gt 0 ]; then
		    partial+=("$name")
		    printf '  (%s part(s) not tried here: %s)' "$nt" \
			   "$(not_tried "$logdir/$name.log" | head -n 1)"
	    fi
	    echo ;;
	77) skip=$((skip + 1))
	    printf 'SKIP  %-34s %s\n' "$name" "$(tail -n 1 "$logdir/$name.log")" ;;
	*)  fail=$((fail + 1)); failed+=("$name")
	    [ $rc = 124 ] && echo "timed out after ${timeout_s}s" >>"$logdir/$name.log"
	    printf 'FAIL  %-34s (exit %s, log %s)\n' "$name" $rc "$logdir/$name.log"
	    sed 's/^/    | /' "$logdir/$name.log" | tail -n 40 ;;
	esac
}

if [ "$what" = all ] || [ "$what" = unit ]; then
	for t in "$O"/tests/test_*; do
		[ -x "$t" ] || continue
		run_one "unit/$(basename "$t")" "$t"
	done
fi
if [ "$what" = all ] || [ "$what" = integration ]; then
	for t in tests/integration/t_*.sh; do
		[ -f "$t" ] || continue
		n=$(basename "$t" .sh)
		run_one "integration/${n#t_}" bash "$t"
	done
fi

for n in "${only[@]}"; do
	[ -n "${matched[$n]:-}" ] && continue
	echo "no $what test named '$n' (see tests/unit, tests/integration)"
	fail=$((fail + 1))
done
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
[ ${#partial[@]} -gt 0 ] && echo "passed with parts not tried here: ${partial[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ $((pass + skip)) -gt 0 ]
