#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Postcopy recovery: a broken link costs time, not the VM.  During the
# postcopy of a test guest the TCP connections are destroyed (ss -K)
# five times at random points; both sides go postcopy-paused keeping
# everything, and 'migctl recover' brings them back, alternately on the
# same port and on a new one.  The migration completes, the memory check
# passes, the guest's heartbeats go on after each recovery.  Also: a
# recovery aimed at a wrong address fails and leaves the job paused, and
# 'migctl pause' forces the paused state.
. "$(dirname "$0")/lib.sh"
need_kvm
need_uffd
ss -K -tn "sport = :1" >/dev/null 2>&1 ||
	skip "ss -K cannot destroy sockets here (CONFIG_INET_DIAG_DESTROY)"
start_faultd
start_migd

both_paused() { job_is "$1" postcopy_paused && job_is "$2" postcopy_paused; }
both_active() { job_is "$1" postcopy_active && job_is "$2" postcopy_active; }
listen_is_not() { [ "$(job_get "$1" listen)" != "$2" ]; }

# recover SRC DST NEWPORT: bring both back (DST on a new port if asked).
recover() {
	local src=$1 dst=$2 new=$3 before c
	if [ "$new" = 1 ]; then
		migctl recover "$dst" --listen tcp:127.0.0.1:0 >/dev/null || fail "recover $dst"
		wait_until 10 listen_is_not "$dst" "$ADDR" || fail "$dst did not listen anew"
		ADDR=$(job_get "$dst" listen)
	fi
	before=$(pages_of "$dst" 0)
	migctl recover "$src" "$ADDR" >/dev/null || fail "recover $src"
	wait_until 30 both_active "$src" "$dst" ||
		fail "not active again: $src $(job_get "$src" state): $(job_get "$src" error);" \
		     "$dst $(job_get "$dst" state): $(job_get "$dst" error)"
	wait_until 60 pages_above "$dst" 0 "${before:-0}" ||
		fail "$dst: the guest made no progress after the recovery"
}

note "five cuts at random points, recovered on the same and on new ports"
start_vmm p --memory 128M --test-guest dirty --guest-rate 2000 --heartbeat 100
wait_pass p 0 2
start_vmm q --memory 128M --incoming
incoming q
migctl migrate p "$ADDR" --token "$TOKEN" --max-bandwidth 4M --channels 2 \
	--detach >/dev/null || fail "migrate p"
wait_until 30 job_is p active || fail "p: $(migctl status p)"
migctl postcopy p >/dev/null || fail "postcopy p"
wait_until 30 both_active p q || fail "no postcopy: $(migctl status p)"
for i in 1 2 3 4 5; do
	sleep "0.$((RANDOM % 7 + 2))"   # a random point in the postcopy
	job_is p postcopy_active || fail "p ended before cut $i: $(migctl status p)"
	port=${ADDR##*:}
	ss -K -tn "( sport = :$port or dport = :$port )" >/dev/null || fail "ss -K"
	wait_until 30 both_paused p q ||
		fail "cut $i: p $(job_get p state), q $(job_get q state)"
	echo "cut $i: p: $(job_get p error); q: $(job_get q error)"
	[ "$(state_of q)" = running ] || fail "q is not running while paused"
	recover p q $((i % 2 == 0))
	echo "ok: recovered $i on $ADDR"
done
out=$(migctl --json status p --watch) || fail "p: $out"
[ "$(echo "$out" | jget state)" = completed ] || fail "p: $out"
[ "$(echo "$out" | jget recoveries)" = 5 ] || fail "p: recoveries: $out"
wait_until 30 job_is q completed || fail "q: $(migctl status q)"
[ "$(job_get q recoveries)" = 5 ] || fail "q: $(migctl --json status q)"
wait_progress q 0
vmmctl check q || fail "q: memory check after 5 recoveries"
grep -q FAIL "$RUNDIR/q.serial" && fail "q: the guest reported a failure"
echo "ok: completed after 5 recoveries ($SECONDS s into the test)"
vmmctl quit p >/dev/null; vmmctl quit q >/dev/null

note "migctl pause, a recovery at a wrong address, then the right one"
start_vmm r --memory 64M --test-guest dirty --guest-rate 2000 --heartbeat 100
wait_pass r 0 2
start_vmm s --memory 64M --incoming
incoming s
migctl migrate r "$ADDR" --token "$TOKEN" --max-bandwidth 4M --detach >/dev/null ||
	fail "migrate r"
wait_until 30 job_is r active || fail "r: $(migctl status r)"
migctl postcopy r >/dev/null || fail "postcopy r"
wait_until 30 both_active r s || fail "no postcopy: $(migctl status r)"
err=$(migctl recover r "$ADDR" 2>&1) && fail "recover while active was accepted"
echo "ok: $err"
migctl pause r >/dev/null || fail "pause r"
wait_until 30 both_paused r s || fail "pause: r $(job_get r state), s $(job_get s state)"
case $(job_get r error) in *"paused on request"*) ;; *) fail "r: $(job_get r error)" ;; esac
migctl recover r tcp:127.0.0.1:1 >/dev/null || fail "recover r (wrong address)"
wait_until 30 job_is r postcopy_paused || fail "r: $(job_get r state)"
wait_until 30 bash -c "'$BIN/migctl' --rundir '$RUNDIR' --json status r | grep -q 'cannot connect'" ||
	fail "r: $(job_get r error)"
echo "ok: a wrong address: $(job_get r error)"
recover r s 0
out=$(migctl --json status r --watch) || fail "r: $out"
[ "$(echo "$out" | jget state)" = completed ] || fail "r: $out"
vmmctl check s || fail "s: memory check"
echo PASS
