#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The postcopy page link (faultd on the destination <-> the source
# worker's page server) when the network misbehaves, through our proxy:
#  - it stalls (open, silent) while the guest waits for pages: faultd
#    notices the unanswered request, both sides go postcopy-paused naming
#    the stall, and a recovery brings the migration back;
#  - the bytes the destination sends are damaged (a frame length turned
#    oversize): the source's page server refuses them, the source worker
#    pauses naming it (it neither dies nor trusts the frame), and a
#    recovery brings the migration back again.
# The migration then completes and the guest's memory check passes.
# The push is capped at 1 MB/s (64 MiB take 64 s) so that the guest keeps
# faulting on pages that only the page link brings: the push goes on
# while the page link stalls (20 s), and what it leaves must outlast the
# damage case after the first recovery (at 2 MB/s, under SANITIZE=1 the
# push once finished first and the destination completed unharmed).
. "$(dirname "$0")/lib.sh"
need_kvm
need_uffd
start_faultd
start_migd

# Active again, or already done: the push may finish right after a recovery.
both_back() { both_active "$1" "$2" || job_is "$1" completed; }
error_has() { [[ $(job_get "$1" error) == *"$2"* ]]; }

start_vmm p --memory 64M --test-guest dirty --guest-rate 2000 --guest-fast-first-pass \
	--heartbeat 100
wait_pass p 0 2
start_vmm q --memory 64M --incoming
incoming q
start_proxy px "${ADDR#tcp:}"
ADDR=tcp:127.0.0.1:$PROXY_PORT
# Connections through the proxy, in the order the source dials them:
# main, 2 ram channels, the page link.  PAGE is the page link's index.
postcopy_on_request p --max-bandwidth 1M --channels 2
PAGE=3
wait_until 30 both_active p q || fail "no postcopy: $(migctl status p)"
wait_until 30 proxy_bytes_above $PAGE down 0 ||
	fail "no page request on connection $PAGE: $(proxy_cmd list)"

# recover_through_proxy: bring both back through the proxy; the guest
# makes progress afterwards.
recover_through_proxy() {
	local before
	before=$(pages_of q 0)
	migctl recover p "$ADDR" >/dev/null || fail "recover p"
	wait_until 30 both_back p q ||
		fail "not active again: p $(job_get p state): $(job_get p error);" \
		     "q $(job_get q state): $(job_get q error)"
	wait_until 60 pages_above q 0 "${before:-0}" ||
		fail "q: the guest made no progress after the recovery"
	PAGE=$((PAGE + 4))
}

note "the page link stalls: faultd notices the unanswered request"
proxy_cmd stall $PAGE >/dev/null || fail "stall"
# faultd waits FAULTD_LINK_STALL_MS (20 s) for an answer.
wait_until 60 both_paused p q ||
	fail "stall: p $(job_get p state): $(job_get p error); q $(job_get q state): $(job_get q error)"
error_has q "page link stalled: a page request went unanswered" ||
	fail "q does not name the stall: $(job_get q error)"
echo "ok: q: $(job_get q error)"
echo "ok: p: $(job_get p error)"
[ "$(state_of q)" = running ] || fail "q is $(state_of q) while paused"
proxy_cmd cut $PAGE >/dev/null || fail "cut the stalled link"
recover_through_proxy
# The unanswered request went out again on the new link.
wait_until 10 grep -qE "new page link; [1-9][0-9]* requests? outstanding sent again" \
	"$RUNDIR/faultd.log" || fail "faultd did not send the stalled request again"
echo "ok: recovered after the stall ($(grep -oE "[0-9]+ requests? outstanding sent again" \
	"$RUNDIR/faultd.log" | head -n 1))"

note "damaged bytes from the destination reach the source's page server"
# Hold the link still, then flip the high byte of the length of the next
# frame faultd sends (frames are a 4-byte little-endian length, then the
# message): the source reads a length of about 4 GB.
wait_until 30 proxy_bytes_above $PAGE down 0 ||
	fail "no page request on connection $PAGE: $(proxy_cmd list)"
proxy_cmd stall $PAGE >/dev/null || fail "stall"
at=$(proxy_bytes $PAGE down)
proxy_cmd corrupt $PAGE down $((at + 3)) >/dev/null || fail "corrupt"
proxy_cmd resume $PAGE >/dev/null || fail "resume"
wait_until 60 both_paused p q ||
	fail "damage: p $(job_get p state): $(job_get p error); q $(job_get q state): $(job_get q error)"
error_has p "page link: an oversize message" ||
	fail "p does not name the damage: $(job_get p error)"
echo "ok: p: $(job_get p error)"
echo "ok: q: $(job_get q error)"
kill -0 "$(job_get p worker_pid)" || fail "the source worker died"
[ "$(state_of p)" = paused ] || fail "p is $(state_of p), expected paused"
recover_through_proxy
echo "ok: recovered after the damage"

note "the migration completes; the guest's memory is intact"
out=$(migctl --json status p --watch) || fail "p: $out"
[ "$(echo "$out" | jget state)" = completed ] || fail "p: $out"
[ "$(echo "$out" | jget recoveries)" = 2 ] || fail "p: recoveries: $out"
wait_until 30 job_is q completed || fail "q: $(migctl status q)"
wait_progress q 0
vmmctl check q || fail "q: memory check"
grep -a -m 8 FAIL "$RUNDIR/q.serial" && fail "q: the guest reported a failure"
kill -0 "$FAULTD_PID" || fail "faultd died"
echo PASS
