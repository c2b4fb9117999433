#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Postcopy over a slow but working link.  At the switch the destination
# must first receive every page the source queued before its postcopy
# marker: the megabytes in the sockets' buffers, which a slow link takes
# well over 10 s to carry (8 MiB of a channel's send buffer at 512 KiB/s:
# 16 s).  As long as pages keep coming, the switch must wait for them and
# succeed, not give up after a fixed time; the migration then completes
# with the guest's memory intact.  Then the same link dead at the switch
# (open, silent): both sides must give up within bounded time, naming the
# channel, the source's guest running on (it is stopped only once the
# destination has every marker), the destination emptied.  Our
# proxy (itest_faultproxy) plays the link on the one ram channel.
. "$(dirname "$0")/lib.sh"
need_kvm
need_uffd
start_faultd
start_migd

RATE=524288     # bytes/s on the ram channel while the switch waits

# The guest rewrites 8 MiB of its 64 MiB over and over: round 1 is short,
# and at a 4 MB/s cap precopy never fits a 1 ms pause, so the channel
# keeps its socket full once the link slows down.
start_vmm p --memory 64M --test-guest dirty --guest-range 8M --heartbeat 100
wait_pass p 0 2
start_vmm q --memory 64M --incoming
incoming q
start_proxy px "${ADDR#tcp:}"
ADDR=tcp:127.0.0.1:$PROXY_PORT
# Connections through the proxy, in the order the source dials them:
# main (0), the ram channel (1), the page link (2).
migctl migrate p "$ADDR" --token "$TOKEN" --channels 1 --max-bandwidth 4M \
	--downtime-limit 1 --detach >/dev/null || fail "migrate p"
wait_until 30 job_is p active || fail "p: $(migctl status p)"
wait_until 30 proxy_bytes_above 1 up $((8 << 20)) ||
	fail "round 1 did not go through: $(proxy_cmd list)"

note "the link slows to $RATE bytes/s; the send buffer fills; then the switch"
proxy_cmd rate 1 up $RATE >/dev/null || fail "rate"
sleep 4
before=$(proxy_bytes 1 up)
migctl postcopy p >/dev/null || fail "postcopy p"
t0=$(date +%s)
wait_until 120 both_active p q ||
	fail "no switch over the slow link: p $(job_get p state): $(job_get p error);" \
	     "q $(job_get q state): $(job_get q error)"
took=$(( $(date +%s) - t0 ))
moved=$(( $(proxy_bytes 1 up) - before ))
echo "ok: switched after ${took} s; $moved bytes crossed the slow link meanwhile"
# The case must have been one a fixed 10 s limit would fail: more than
# 10 s of the capped link's bytes had to cross before the switch (bytes,
# not a clock, so a loaded host does not change the verdict).
[ "$moved" -gt $((10 * RATE)) ] ||
	fail "only $moved bytes crossed before the switch: the link was not slow enough to test"

note "the link is fast again: the migration completes, the memory intact"
proxy_cmd rate 1 up 0 >/dev/null || fail "rate 0"
out=$(migctl --json status p --watch) || fail "p: $out"
check_done p q "$out"
proxy_cmd quit >/dev/null

note "the ram connection goes silent before the switch: the source's guest runs on"
start_vmm r --memory 64M --test-guest dirty --guest-range 8M --heartbeat 100
wait_pass r 0 2
start_vmm s --memory 64M --incoming
incoming s
start_proxy px2 "${ADDR#tcp:}"
migctl migrate r "tcp:127.0.0.1:$PROXY_PORT" --token "$TOKEN" --channels 1 \
	--max-bandwidth 4M --downtime-limit 1 --detach >/dev/null || fail "migrate r"
wait_until 30 job_is r active || fail "r: $(migctl status r)"
wait_until 30 proxy_bytes_above 1 up $((8 << 20)) ||
	fail "round 1 did not go through: $(proxy_cmd list)"
proxy_cmd stall 1 >/dev/null || fail "stall"
migctl postcopy r >/dev/null || fail "postcopy r"
t0=$(date +%s)
# The destination's channel gives up after 20 s of silence (before the
# switch's own 25 s without a page, so it names itself), the source would
# 35 s after its socket stopped moving: all well inside 90 s.
wait_until 90 job_final r || fail "r still $(job_get r state) after the stall"
wait_until 30 job_final s || fail "s still $(job_get s state) after the stall"
echo "source, after $(( $(date +%s) - t0 )) s: $(job_get r state): $(job_get r error)"
echo "destination: $(job_get s state): $(job_get s error)"
job_is r failed || fail "r: $(job_get r state)"
job_is s failed || fail "s: $(job_get s state)"
job_get s error | grep -q "ram channel 0" || fail "the destination does not name the channel"
job_get r error | grep -q "kept running" || fail "the source does not say its guest runs on"
proxy_cmd quit >/dev/null
source_fine r
dest_fresh s
good_migration r s
echo PASS
