#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Out of descriptors: migd, run with few (prlimit), is flooded with
# connections that say nothing, on its control socket and on an incoming
# job's port.  Callers wait, migd says why in its log (and the job in its
# status), no process spins on the connection it cannot accept, and once
# the flood is gone everyone is served: a migration comes in whole.
# A vmm drops the control peers that stall (here after 2 s: TERN_FAULT
# control-stall-2s), says who in its log, and gives their memory back.
. "$(dirname "$0")/lib.sh"
command -v prlimit >/dev/null || skip "prlimit (util-linux) is missing"
command -v python3 >/dev/null || skip "python3 is missing"

# flood ADDR N: N connections to ADDR (a unix path or HOST:PORT) that
# send nothing, held until RUNDIR/flood.stop exists (20 s at most), in
# the background; FLOOD is its pid.
flood() {
	rm -f "$RUNDIR/flood.stop"
	python3 - "$1" "$2" "$RUNDIR/flood.stop" >"$RUNDIR/flood.out" 2>&1 <<'EOF' &
import os, socket, sys, time
addr, n, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
held = []
for _ in range(n):
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(addr)
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=5)
    held.append(s)
print("holding", len(held), flush=True)
end = time.time() + 20
while not os.path.exists(stop) and time.time() < end:
    time.sleep(0.05)
EOF
	FLOOD=$!
	PIDS+=("$FLOOD")
	wait_until 10 grep -q holding "$RUNDIR/flood.out" ||
		fail "the flood did not connect: $(cat "$RUNDIR/flood.out")"
}
unflood() { touch "$RUNDIR/flood.stop"; wait_exit "$FLOOD" || true; }
# cpu_ticks PID: user and system time of PID so far, in clock ticks.
cpu_ticks() { echo $(( $(stat_field "/proc/$1/stat" 14) + $(stat_field "/proc/$1/stat" 15) )); }
nfds() { ls "/proc/$1/fd" | wc -l; }

# 16 descriptors for migd and each worker (the limit is inherited).
HOST_EXEC=(prlimit --nofile=16)
start_migd
HOST_EXEC=()
# Its resting count: the connection of start_migd's last 'migctl list'
# may still be open for a moment (a fresh clone's run once read 13, then
# 12 after the flood, and failed).
fds0=$(nfds "$MIGD_PID")
for _ in 1 2 3 4 5; do
	sleep 0.2
	n=$(nfds "$MIGD_PID")
	[ "$n" -lt "$fds0" ] && fds0=$n
done

note "the control socket: callers wait; the log says why, once"
flood "$RUNDIR/migd.sock" 24
wait_until 5 grep -q "control: cannot accept new callers: Too many open files" \
	"$RUNDIR/migd.log" || fail "migd does not say why callers wait: $(tail -n 3 "$RUNDIR/migd.log")"
grep "cannot accept" "$RUNDIR/migd.log"
sleep 1         # accept is retried every 100 ms: none of it is logged
n=$(grep -c "cannot accept new callers" "$RUNDIR/migd.log")
[ "$n" -eq 1 ] || fail "said $n times, not once"
unflood
out=$(migctl list) || fail "migd does not answer once the flood is gone: $out"
wait_until 5 test "$(nfds "$MIGD_PID")" -eq "$fds0" ||
	fail "migd has $(nfds "$MIGD_PID") descriptors open, $fds0 before"

need_kvm "a vmm's stalled control peers, an incoming job's port, the migration after the flood"
HOST_EXEC=(env TERN_FAULT=control-stall-2s)
start_vmm s --memory 16M --test-guest dirty --heartbeat 100
HOST_EXEC=()

note "control peers that stall are dropped, and said; an idle one stays"
out=$("$TESTS/itest_ctlabuse" "$RUNDIR/vmm/s.sock" stall)
rc=$?
echo "$out"
[ $rc -eq 0 ] || fail "itest_ctlabuse stall exited with $rc"
pid=$(echo "$out" | sed -n 's/^pid \([0-9]*\): .*/\1/p')
said() {
	grep -F "control: dropped pid $pid (itest_ctlabuse, uid $(id -u)): $1" \
		"$RUNDIR/s.log"
}
said "it read nothing of the " || fail "the vmm does not say it dropped the "\
	"peer that read nothing: $(tail -n 3 "$RUNDIR/s.log")"
said "it sent 1.0 MiB of a 4.0 MiB frame, then nothing more for 2 s" ||
	fail "the vmm does not say it dropped the peer stopped in a frame: "\
	"$(tail -n 3 "$RUNDIR/s.log")"

note "an incoming job's port: the worker does not spin, its status says why"
start_vmm d --memory 16M --incoming
incoming d
wpid=$(job_get d worker_pid)
[ -n "$wpid" ] && [ "$wpid" -gt 0 ] || fail "no worker pid: $(migctl --json status d)"
# The worker holds 8 descriptors of its own; 8 connections waiting for
# their hello take the rest, the others stay queued (no hello before
# they time out, 5 s).
flood "${ADDR#tcp:}" 14
# A bound on resources, not a timing: a worker spinning on the
# readable listening socket takes a whole core (~100 ticks a second);
# one that waits, none.  (It is out of descriptors within milliseconds
# of the flood's connections.)
t0=$(cpu_ticks "$wpid")
sleep 1
t1=$(cpu_ticks "$wpid")
[ $((t1 - t0)) -lt 20 ] || fail "the worker spins: $((t1 - t0)) ticks of CPU in 1 s"
err_has() { job_get d error | grep -q "cannot accept connections: Too many open files"; }
wait_until 3 err_has || fail "the job does not say why: $(migctl --json status d)"
echo "ok: $(job_get d error); $((t1 - t0)) ticks of CPU in 1 s"
[ "$(job_get d state)" = waiting ] || fail "d: $(migctl --json status d)"
unflood

note "the flood gone, the migration comes in whole"
out=$(migctl migrate s "$ADDR" --token "$TOKEN" --channels 1 --wait 2>&1) ||
	fail "migrate after the flood: $out"
echo "$out" | tail -n 1
wait_until 10 job_is d completed || fail "d: $(migctl --json status d)"
[ "$(state_of d)" = running ] || fail "d is $(state_of d)"
wait_progress d 0
vmmctl check d || fail "d: memory check"
kill -0 "$MIGD_PID" || fail "migd died"
stop_migd
echo PASS
