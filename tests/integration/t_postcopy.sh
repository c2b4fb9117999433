#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Postcopy through faultd: the destination runs the guest at once and its
# missing pages come on demand (faultd, the page link) and by the
# background push (the ram channels).  Each migration must end with the
# memory check passing on the destination, the guest's own checks
# silent, its heartbeats going on, and nothing left to send.  Then: the
# switch on request, by policy and as the timeout's action; the status
# figures during the push (the source's pages to push go down) and after
# it (the destination counts the page link's bytes too); verify
# through postcopy, and a page corrupted on the destination found by it
# (migctl fails, the guest runs on); the pages a guest dirties after
# the discard dropped in rounds before the pause (verify proves that
# none stayed); two guests in
# postcopy at once through one faultd and one migd; cancel refused
# once the guest runs on the destination; faultd's death pauses both
# sides with the guest blocked, not corrupted, and that vmm still quits;
# the threads a vCPU waits on run in the real-time class, with no
# capability.  A source that was paused switches too, and the
# destination keeps its guest paused while the push brings every page.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fullguest.sh"
need_kvm
need_uffd
start_faultd
start_migd

note "dirty guest, 2 vCPUs, --postcopy auto: the heavy dirtier will not converge"
start_vmm a --memory 256M --vcpus 2 --test-guest dirty --heartbeat 100
wait_pass a 1 2
start_vmm b --memory 256M --vcpus 2 --incoming
incoming b
# The bandwidth cap keeps it from converging even when the channels'
# threads leave the guest's vCPUs little CPU (it once dirtied only 11000
# pages/s here, and 1 ms of 1.3 GB/s held that); and keeps the push slow
# enough that the guest faults on pages still missing (at 128M, on a
# host loaded with other tests, a push of 253 pages left it 2 faults).
out=$(migctl --json migrate a "$ADDR" --token "$TOKEN" --postcopy auto \
	--downtime-limit 1 --max-bandwidth 64M --wait) || fail "migrate a: $out"
check_done a b "$out"
faults=$(job_get b faults)
[ "${faults:-0}" -gt 0 ] || fail "b: no faults served: $(migctl --json status b)"
vmmctl quit a >/dev/null; vmmctl quit b >/dev/null

note "fill guest, migctl postcopy during a slow precopy: pages come on demand"
# g is preallocated (vmm --prealloc): what it has not received by the
# switch must be dropped, or the guest would read zeros instead of faulting.
start_vmm f --memory 128M --test-guest fill --heartbeat 100
wait_pass f 0 2
start_vmm g --memory 128M --incoming --prealloc
incoming g
# With --verify: what g held at the switch, and each page placed since,
# must hash as f's stopped RAM does.
postcopy_on_request f --max-bandwidth 16M --channels 2 --verify
wait_until 30 both_active f g || fail "no postcopy: $(migctl status f)"
# While the push runs (seconds, at 16 MB/s) the source's pages still to
# push go down by at least the pages its channels sent (the page link
# takes some too), in any two reports, with remaining_bytes those pages'
# bytes; they once stayed at a figure of the switch or of a pass's
# start.  Three pairs of reports, each pair as soon as pages went.
pc_figures() {
	echo "$1" | jget state
	echo "$1" | jget needed_pages
	echo "$1" | jget remaining_bytes
	echo "$1" | jget pages_sent
}
sent_since() {		# sets S2: a report after pages went, or past the push
	S2=$(migctl --json status f)
	[ "$(echo "$S2" | jget state)" != postcopy_active ] ||
		[ "$(echo "$S2" | jget pages_sent)" -gt "$1" ]
}
S2=$(migctl --json status f)
for pair in 1 2 3; do
	s1=$S2
	read -r -d '' st1 n1 r1 p1 < <(pc_figures "$s1")
	[ "$st1" = postcopy_active ] && [ "${n1:-0}" -gt 0 ] && [ "$r1" = $((n1 * 4096)) ] ||
		fail "f: pages to push in postcopy: $s1"
	wait_until 30 sent_since "$p1" || fail "f: no page sent in postcopy: $S2"
	read -r -d '' st2 n2 r2 p2 < <(pc_figures "$S2")
	[ "$st2" = postcopy_active ] || fail "f: the push ended before pair $pair: $S2"
	[ $((n1 - n2)) -ge $((p2 - p1)) ] && [ "$r2" = $((n2 * 4096)) ] ||
		fail "f: $((p2 - p1)) pages sent, but the pages to push went from $n1 to $n2 ($r2 bytes): $S2"
	echo "ok: f: $((p2 - p1)) pages sent, pages to push $n1 -> $n2"
done
# 128 MiB at 16 MB/s: postcopy lasts seconds, the check comes at its end
case $(job_get g verified) in "not checked yet: "*) ;;
*) fail "g: verify during postcopy: $(job_get g verified)" ;; esac
out=$(migctl --json status f --watch) || fail "f: $out"
check_done f g "$out"
[ "$(job_get g pages_on_demand)" -gt 0 ] || fail "g: nothing on demand"
# The destination counts every byte it received: on the ram channels each
# page's 8-byte offset and, but for a zero page, its 4096 bytes (before
# and after the switch), and each page placed from the page link came in
# a PageData of its 4096 bytes at least; packet headers and framing come
# on top.  It cannot count more than the source sent.
d=$(migctl --json status g)
ds=$(echo "$d" | jget pages_sent)
least=$(( (ds - $(echo "$d" | jget zero_pages) + $(echo "$d" | jget pages_on_demand)) * 4096 + ds * 8 ))
dt=$(echo "$d" | jget transferred_bytes)
[ "$dt" -ge "$least" ] ||
	fail "g: $dt bytes transferred, but the pages it received are $least: $d"
[ "$dt" -le "$(echo "$out" | jget transferred_bytes)" ] ||
	fail "g: received $dt bytes, more than f sent: $(echo "$out" | jget transferred_bytes)"
echo "ok: g: $dt bytes received, at least the $least of its pages"
kib=$(memfd_kib "$(pid_of g)")
[ "$kib" = 131072 ] || fail "g: $kib KiB of its 128 MiB allocated after postcopy"
echo "ok: g: preallocated, all 131072 KiB allocated after postcopy"
[ "$(echo "$out" | jget verified)" = ok ] || fail "f: verify: $out"
[ "$(job_get g verified)" = ok ] || fail "g: verify: $(job_get g verified)"
echo "ok: verified after postcopy on both sides"
vmmctl quit f >/dev/null; vmmctl quit g >/dev/null

note "verify after postcopy: a page corrupted on the destination is caught"
# The corrupted page (0x9000) is one the source never sends: only the
# hashes can tell.  The guest already runs on the destination when that
# comes out, so the job completes; migctl must fail, naming the chunk.
start_vmm h --memory 64M --test-guest fill --heartbeat 100
wait_pass h 0 2
start_vmm i --memory 64M --incoming
incoming i
migctl migrate h "$ADDR" --token "$TOKEN" --max-bandwidth 16M --verify \
	--detach >/dev/null || fail "migrate h"
wait_until 30 job_is h active || fail "h: $(migctl status h)"
vmmctl write i 0x9000 ff --force || fail "corrupting i"
migctl postcopy h >/dev/null || fail "postcopy h"
out=$(migctl status h --watch 2>&1) && fail "migctl took a failed verify for success: $out"
echo "$out"
echo "$out" | grep -q "migration completed, but verify failed after the postcopy switch: 1 of 32 2 MiB chunks differ, the first at gpa 0x0" ||
	fail "migctl does not name the failure: $out"
wait_until 30 job_is i completed || fail "i: $(migctl status i)"
job_get i verified | grep -q "^failed after the postcopy switch: 1 of 32" ||
	fail "i: $(job_get i verified)"
[ "$(state_of i)" = running ] || fail "i is $(state_of i), not running"
wait_progress i 0
vmmctl check i || fail "i: memory check"
vmmctl quit h >/dev/null; vmmctl quit i >/dev/null

note "full-state guest, 2 vCPUs, postcopy on request: every check passes after"
RUN_BEATS=6
start_vmm fs --memory 128M --vcpus 2 --test-guest full --guest-rate 100000 --heartbeat 500
wait_until 30 beats_at_least fs 1 2 || fail "fs: no heartbeat"
start_vmm ft --memory 128M --vcpus 2 --incoming
incoming ft
postcopy_on_request fs --max-bandwidth 32M
out=$(migctl --json status fs --watch) || fail "fs: $out"
check_done fs ft "$out"
watch_guest ft 2
echo "ok: ft: $(last_beat ft 1)"
vmmctl quit fs >/dev/null; vmmctl quit ft >/dev/null

note "the timeout's action: postcopy"
start_vmm t --memory 128M --test-guest dirty --heartbeat 100
wait_pass t 0 2
start_vmm u --memory 128M --incoming
incoming u
out=$(migctl --json migrate t "$ADDR" --token "$TOKEN" --max-bandwidth 32M \
	--timeout 1 --timeout-action postcopy --wait) || fail "migrate t: $out"
check_done t u "$out"
# The text says the switch and its pause, not "0 rounds, downtime -".
line=$(migctl status t --watch </dev/null | tail -n 1)
echo "$line" | grep -Eq "^t: completed in .* transferred, postcopy (from round 1|after [0-9]+ precopy rounds?), pause [0-9.]+ (us|ms)$" ||
	fail "t's last line: $line"
migctl status t | grep -Eq "^  postcopy      pause ([0-9]+ us|[0-9]+\.[0-9]+ ms|[1-9][0-9]* ms|[0-9.]+ s);" ||
	fail "t's pause: $(migctl status t)"
echo "ok: $line"
vmmctl quit t >/dev/null; vmmctl quit u >/dev/null

note "a paused source switched to postcopy: the destination holds it paused while the push brings every page"
# Before, the destination resumed the guest at the switch.  Now it keeps
# it paused, as it was on the source: no vCPU runs, so none faults, and
# every page comes by the push; the guest is intact and runs on a cont.
start_vmm pp --memory 128M --test-guest fill --heartbeat 100
wait_pass pp 0 2
vmmctl stop pp >/dev/null || fail "stop pp"
before=$(pages_of pp 0)
start_vmm pq --memory 128M --incoming
incoming pq
postcopy_on_request pp --max-bandwidth 32M --channels 2
# While the push runs, pp's vmm holds pages pq lacks.  A quit is refused,
# saying why (before, it quit, and the guest was lost on pq); a SIGTERM
# (systemctl stop) is put off until the migration completes.
wait_until 30 both_active pp pq || fail "no postcopy: $(migctl status pp)"
# No vCPU runs, so none faults: what the push sent and what it still has
# to send add up to the same at any time (before, needed_pages ran
# hundreds of pages ahead of pages_pushed).
sums=()
for _ in 1 2 3 4 5; do
	js=$(migctl --json status pp)
	n=$(echo "$js" | jget needed_pages)
	[ "$(echo "$js" | jget state)" = postcopy_active ] && [ "${n:-0}" -gt 0 ] || break
	sums+=("$(($(echo "$js" | jget pages_pushed) + n))")
	sleep 0.2
done
[ ${#sums[@]} -ge 2 ] || fail "pp: too few samples of the push: ${sums[*]}"
for v in "${sums[@]}"; do [ "$v" = "${sums[0]}" ] || fail "pp: pushed + needed: ${sums[*]}"; done
echo "ok: pp: pages pushed + needed: ${sums[*]}"
# Asked again past its switch: said as it is (before: "switching").
out=$(migctl postcopy pp) || fail "postcopy pp again: $out"
case $out in "pp: already in postcopy (job "*) ;; *) fail "postcopy pp again: $out" ;; esac
err=$(vmmctl quit pp 2>&1) && fail "quit pp in postcopy: $err"
case $err in *"cannot quit: the guest moved to $ADDR (job "*") by a postcopy not known to have completed, and this copy holds the pages it may still lack: quitting would lose the guest there."*"'vmmctl quit pp --force'"*) ;;
*) fail "quit pp in postcopy: $err" ;; esac
echo "ok: $err"
pp_pid=$(pid_of pp)
kill -TERM "$pp_pid"
out=$(migctl --json status pp --watch) || fail "pp: $out"
wait_exit "$pp_pid" || fail "pp's vmm exited with $? after the postcopy its SIGTERM waited for"
grep -q "quitting once that migration completes" "$RUNDIR/pp.log" &&
	grep -q "the postcopy completed: quitting, as a signal asked" "$RUNDIR/pp.log" ||
	fail "pp's log: $(tail -n 5 "$RUNDIR/pp.log")"
echo "ok: pp's vmm quit on SIGTERM once the postcopy completed"
[ "$(echo "$out" | jget state)" = completed ] &&
	[ "$(echo "$out" | jget postcopy_started)" = true ] || fail "pp: $out"
[ "$(echo "$out" | jget needed_pages)" = 0 ] || fail "pp: pages still needed: $out"
wait_until 30 job_is pq completed || fail "pq: $(migctl status pq)"
[ "$(state_of pq)" = paused ] || fail "pq is $(state_of pq), not paused"
[ -z "$(pages_of pq 0)" ] || fail "pq: the guest ran there before a cont"
js=$(migctl --json status pq)
for k in faults pages_on_demand needed_pages downtime_us; do
	[ "$(echo "$js" | jget $k)" = 0 ] || fail "pq: $k is not 0: $js"
done
[ "$(echo "$js" | jget guest_paused)" = true ] || fail "pq: $js"
[ "$(echo "$out" | jget guest_paused)" = true ] && [ "$(echo "$out" | jget pause_us)" = 0 ] &&
	[ "$(echo "$out" | jget downtime_us)" = 0 ] || fail "pp: $out"
line=$(migctl status pp --watch </dev/null | tail -n 1)
echo "$line" | grep -Eq "^pp: completed in .* transferred, postcopy (from round 1|after [0-9]+ precopy rounds?); the guest was kept paused on the destination, as it was on the source \(no downtime\)$" ||
	fail "pp's last line: $line"
vmmctl check pq || fail "pq: memory check of the paused guest"
vmmctl cont pq >/dev/null || fail "cont pq"
wait_until 60 pages_above pq 0 "${before:-0}" || fail "pq: the guest did not go on"
vmmctl check pq || fail "pq: memory check after the cont"
grep -a -m 8 FAIL "$RUNDIR/pq.serial" && fail "pq: the guest reported a failure"
echo "ok: $line; pq: $(echo "$js" | jget pages_pushed) pages pushed, none on demand"
vmmctl quit pq >/dev/null

note "two guests in postcopy at once, through one faultd and one migd"
start_vmm c1 --memory 128M --test-guest fill --heartbeat 100
start_vmm c2 --memory 128M --vcpus 2 --test-guest dirty --heartbeat 100
wait_pass c1 0 2
wait_pass c2 1 2
start_vmm e1 --memory 128M --incoming
start_vmm e2 --memory 128M --vcpus 2 --incoming
incoming e1
migctl migrate c1 "$ADDR" --token "$TOKEN" --max-bandwidth 8M --detach >/dev/null ||
	fail "migrate c1"
incoming e2
migctl migrate c2 "$ADDR" --token "$TOKEN" --max-bandwidth 8M --channels 2 \
	--detach >/dev/null || fail "migrate c2"
wait_until 30 job_is c1 active || fail "c1: $(migctl status c1)"
wait_until 30 job_is c2 active || fail "c2: $(migctl status c2)"
migctl postcopy c1 >/dev/null || fail "postcopy c1"
migctl postcopy c2 >/dev/null || fail "postcopy c2"
wait_until 30 both_active e1 e2 || fail "never both in postcopy: $(migctl list)"
echo "ok: e1 and e2 in postcopy at once"
out=$(migctl --json status c1 --watch) || fail "c1: $out"
check_done c1 e1 "$out"
out=$(migctl --json status c2 --watch) || fail "c2: $out"
check_done c2 e2 "$out"
for v in c1 c2 e1 e2; do vmmctl quit "$v" >/dev/null; done

note "dirty guest, 2 vCPUs, --postcopy auto after whole passes, --verify: stale pages dropped before and in the pause"
# With no bandwidth cap the destination holds every page when the switch
# comes.  It answers the discard 300 ms late (dest-slow-discard, as a
# loaded host may), and the guest rewrites thousands of pages meanwhile
# (at a set rate, so that it goes on to pages the destination still
# holds): too many to drop inside the pause, so the destination drops
# them in a round before it, and the few hundred dirtied during that
# round (its answer 20 ms late) in the pause.  One it kept would fail verify (the guest's own check cannot
# tell an old version of a page from the current one).
stop_migd
start_migd TERN_FAULT=dest-slow-discard
start_vmm r --memory 128M --vcpus 2 --test-guest dirty --guest-rate 25000 --heartbeat 100
wait_pass r 1 2
start_vmm s --memory 128M --vcpus 2 --incoming
incoming s
out=$(migctl --json migrate r "$ADDR" --token "$TOKEN" --postcopy auto \
	--downtime-limit 1 --verify --wait) || fail "migrate r: $out"
check_done r s "$out"
[ "$(echo "$out" | jget verified)" = ok ] || fail "r: not verified: $out"
line=$(grep 'migd\[r/out\]: postcopy: the destination runs the guest' "$RUNDIR/migd.log")
case $line in
*"after the discard: "[1-9]*" before the pause ("[1-9]" round"*"), "[1-9]*" in it")
	echo "ok: r: ${line#*postcopy: }" ;;
*) fail "r: stale pages were not dropped both before and in the pause: $line" ;;
esac
vmmctl quit r >/dev/null; vmmctl quit s >/dev/null

note "the destination vmm does not resume at the postcopy switch: discarded there, the source resumes"
# Its pages are all still at the source, which never resumes past Go on
# its own: the destination, having discarded the guest, tells it to.
stop_migd
start_migd TERN_FAULT=dest-cont-fails
start_vmm pc --memory 128M --test-guest dirty --heartbeat 100
wait_pass pc 0 2
start_vmm pd --memory 128M --incoming
incoming pd
postcopy_on_request pc --max-bandwidth 16M --channels 1
wait_job_final pc
[ "$(job_get pc state)" = failed ] || fail "pc: $(job_get pc state): $(job_get pc error)"
job_get pc error | grep -q "it is discarded here; the guest resumes here" ||
	fail "pc: $(job_get pc error)"
echo "ok: pc: $(job_get pc error)"
source_fine pc
dest_fresh pd
vmmctl quit pc >/dev/null; vmmctl quit pd >/dev/null
stop_migd
start_migd TERN_FAULT=dest-attach-held,source-switch-held

note "faultd stops after the hello: a switch is refused and precopy goes on; with faultd back, it is taken"
# Before, the switch went ahead, its Attach failed, and the whole
# migration with it: precopy's progress lost.  A job whose timeout's
# action is the switch fails as a timeout would without one.
start_vmm m1 --memory 64M --test-guest dirty --guest-rate 2000 --heartbeat 100
start_vmm n1 --memory 64M --test-guest dirty --guest-rate 2000 --heartbeat 100
wait_pass m1 0 1
wait_pass n1 0 1
start_vmm m2 --memory 64M --incoming
start_vmm n2 --memory 64M --incoming
incoming m2
migctl migrate m1 "$ADDR" --token "$TOKEN" --max-bandwidth 1M --channels 1 \
	--detach >/dev/null || fail "migrate m1"
incoming n2
migctl migrate n1 "$ADDR" --token "$TOKEN" --max-bandwidth 1M --channels 1 \
	--timeout 4 --timeout-action postcopy --detach >/dev/null || fail "migrate n1"
wait_until 30 job_is m1 active || fail "m1: $(migctl status m1)"
kill -STOP "$FAULTD_PID"
# migctl postcopy answers once the destination did: here, no (exit 1),
# and the job's status says so while it goes on in precopy.
stopped="faultd, pid $FAULTD_PID, is stopped by a signal or a debugger: 'kill -CONT $FAULTD_PID' resumes it"
refusal="the destination refused the switch to postcopy: $stopped; the migration goes on in precopy ('migctl postcopy' asks again)"
out=$(migctl postcopy m1 2>&1) && { kill -CONT "$FAULTD_PID"; fail "a refused switch: $out"; }
[ "$out" = "migctl: m1: $refusal" ] || { kill -CONT "$FAULTD_PID"; fail "postcopy m1: $out"; }
echo "ok: $out"
refused_with() { job_is "$1" active && job_get "$1" error | grep -qF "$2"; }
refused_with m1 "$refusal" ||
	{ kill -CONT "$FAULTD_PID"; fail "m1: $(job_get m1 state): $(job_get m1 error)"; }
wait_job_final n1
kill -CONT "$FAULTD_PID"
[ "$(job_get n1 state)" = failed ] || fail "n1: $(migctl status n1)"
case $(job_get n1 error) in
"did not complete within the 4 s timeout, and the destination refused the switch to postcopy, its action: $stopped"*) ;;
*) fail "n1: $(job_get n1 error)" ;; esac
echo "ok: n1: $(job_get n1 error)"
wait_until 30 vmm_is n1 running || fail "n1 is $(state_of n1)"
vmmctl quit n1 >/dev/null; vmmctl quit n2 >/dev/null
kill -TERM "$FAULTD_PID"
wait_exit "$FAULTD_PID" || fail "faultd exited with $? on SIGTERM"
# --wait does not wait for a switch that was refused (before, it
# showed precopy's progress for as long as the job lasted), nor ask
# again (a refusal once took migctl's retry of a job not back yet
# after a migd restart: it asked every 250 ms for 15 s).
asks=$(grep -c "^migd\[m2/in\]: postcopy refused" "$RUNDIR/migd.log")
out=$(migctl postcopy m1 --wait 2>&1) && fail "a refused switch: $out"
[ "$(grep -c "^migd\[m2/in\]: postcopy refused" "$RUNDIR/migd.log")" = $((asks + 1)) ] ||
	fail "postcopy m1 --wait asked more than once: $(grep -c "^migd\[m2/in\]: postcopy refused" "$RUNDIR/migd.log") refusals, $asks before"
case $out in *"migctl: m1: the destination refused the switch to postcopy: no faultd runs there ($RUNDIR/faultd.sock: No such file or directory; start faultd(8) there first); the migration goes on"*) ;;
*) fail "postcopy m1 --wait: $out" ;; esac
echo "ok: $(printf '%s\n' "$out" | tail -n 1)"
refused_with m1 "no faultd runs there" || fail "m1: $(job_get m1 state): $(job_get m1 error)"
job_is m2 active || fail "m2: $(migctl status m2)"
start_faultd
# And a faultd restarted after the destination said yes, before its
# Attach (held there): the switch waits for the new one (before, the
# migration failed, "cannot reach faultd").
touch "$RUNDIR/dest-attach-held"
# Two callers at once, the destination's answer held back (its worker
# stopped): both hear its yes (before, the second was refused, "a switch
# to postcopy already waits for the destination's answer", exit 1).
dw=$(job_get m2 worker_pid)
asked=$(grep -c "^migd: m1: switching to postcopy" "$RUNDIR/migd.log")
kill -STOP "$dw"
migctl postcopy m1 >"$RUNDIR/pc-first.out" 2>&1 &
first=$!
PIDS+=("$first")
asked_more() { [ "$(grep -c "^migd: m1: switching to postcopy" "$RUNDIR/migd.log")" -gt "$asked" ]; }
wait_until 10 asked_more ||
	{ kill -CONT "$dw"; fail "the first postcopy m1 did not reach migd"; }
( sleep 1; kill -CONT "$dw" ) &
out=$(migctl --json postcopy m1) || { kill -CONT "$dw"; fail "postcopy m1: $out"; }
wait_exit "$first" || fail "the first postcopy m1: $(cat "$RUNDIR/pc-first.out")"
grep -q "^m1: switching to postcopy (job " "$RUNDIR/pc-first.out" ||
	fail "the first postcopy m1: $(cat "$RUNDIR/pc-first.out")"
# The reply to the yes shows the switch begun (before, postcopy_started
# was false in it, and true in a status moments later).
[ "$(echo "$out" | jget postcopy_started)" = true ] || fail "postcopy m1: $out"
wait_until 30 grep -q "^migd\[m2/in\]: TERN_FAULT: holding before Attach" "$RUNDIR/migd.log" ||
	fail "m2 did not reach its Attach: $(tail -n 5 "$RUNDIR/migd.log")"
# Status says so, and counts no round (before: "round 2 0%").
out=$(migctl status m1)
case $out in "m1: source, active, switching to postcopy (job "*) ;; *) fail "status m1: $out" ;; esac
echo "$out" | grep -q "^  progress      [0-9]*%: " || fail "status m1: $out"
# A tune there says when it can be (before: "m1 is active and switching
# to postcopy: only a migration in precopy (setup or active) ...").
err=$(migctl tune m1 --max-bandwidth 2M 2>&1) && fail "tune m1 in its switch: $err"
[ "$err" = "migctl: m1 is switching to postcopy: tune it once it is past the switch (postcopy-active), where the push's cap can change" ] ||
	fail "tune m1 in its switch: $err"
touch "$RUNDIR/source-switch-held"
kill -TERM "$FAULTD_PID"
wait_exit "$FAULTD_PID" || fail "faultd exited with $? on SIGTERM"
rm -f "$RUNDIR/dest-attach-held"
wait_until 10 grep -q "^migd\[m2/in\]: cannot reach faultd at .*; waiting up to 5 s for one (a restart)" \
	"$RUNDIR/migd.log" || fail "m2: $(tail -n 5 "$RUNDIR/migd.log")"
start_faultd
# Asked again in the switch's pause (held there): the same yes, at once
# (before, "m1 is device: only a migration in precopy can switch").
wait_until 30 job_is m1 device || { rm -f "$RUNDIR/source-switch-held"; fail "m1: $(job_get m1 state)"; }
out=$(timeout 20 "$BIN/migctl" --rundir "$RUNDIR" postcopy m1 2>&1) ||
	{ rm -f "$RUNDIR/source-switch-held"; fail "postcopy m1 in its switch: $out"; }
rm -f "$RUNDIR/source-switch-held"
case $out in "m1: switching to postcopy"*) ;; *) fail "postcopy m1 in its switch: $out" ;; esac
wait_until 30 both_active m1 m2 || fail "m1: $(job_get m1 state): $(job_get m1 error)"
[ -z "$(job_get m1 error)" ] || fail "m1 still says: $(job_get m1 error)"
migctl tune m1 --max-bandwidth unlimited >/dev/null || fail "tune m1"
out=$(migctl --json status m1 --watch) || fail "m1: $out"
check_done m1 m2 "$out"
vmmctl quit m1 >/dev/null; vmmctl quit m2 >/dev/null

note "faultd dies in the middle of the Attach: the switch waits for a new one, which takes the vmm's userfaultfd"
# Before, the migration failed ("faultd: Attach: connection closed"),
# its precopy progress lost, and the vmm kept a uffd no faultd had.
# attach_dies SRC DST: faultd (restarted with faultd-attach-exit) dies
# in the middle of the Attach of DST's switch, asked of SRC in precopy.
attach_dies() {
	local f
	kill -TERM "$FAULTD_PID"
	wait_exit "$FAULTD_PID" || fail "faultd exited with $? on SIGTERM"
	TERN_FAULT=faultd-attach-exit start_faultd
	f=$FAULTD_PID
	start_vmm "$1" --memory 64M --test-guest dirty --guest-rate 2000 --heartbeat 100
	wait_pass "$1" 0 1
	start_vmm "$2" --memory 64M --incoming
	incoming "$2"
	migrate_active "$1" 1M --channels 1
	migctl postcopy "$1" >/dev/null || fail "postcopy $1"
	wait_exit "$f"
	grep -q "TERN_FAULT: exiting in the middle of an Attach" "$RUNDIR/faultd.log" ||
		fail "faultd: $(tail -n 3 "$RUNDIR/faultd.log")"
}
attach_dies m3 m4
start_faultd
wait_until 30 both_active m3 m4 || fail "m3: $(job_get m3 state): $(job_get m3 error)"
grep -q "^migd\[m4/in\]: faultd closed its connection during Attach; waiting up to 5 s for one (a restart)" \
	"$RUNDIR/migd.log" || fail "m4: $(grep 'm4/in' "$RUNDIR/migd.log" | tail -n 3)"
migctl tune m3 --max-bandwidth unlimited >/dev/null || fail "tune m3"
out=$(migctl --json status m3 --watch) || fail "m3: $out"
check_done m3 m4 "$out"
vmmctl quit m3 >/dev/null; vmmctl quit m4 >/dev/null
# With none coming back, the switch fails after the wait, saying so, and
# the source VM runs on.
attach_dies m5 m6
wait_job_final m5
case $(job_get m5 error) in *"cannot reach faultd at $RUNDIR/faultd.sock (is it running?): "*" (after faultd closed its connection during Attach; waited 5 s for a new one)"*) ;;
*) fail "m5: $(job_get m5 state): $(job_get m5 error)" ;; esac
wait_until 30 vmm_is m5 running || fail "m5 is $(state_of m5)"
wait_progress m5 0
echo "ok: m5: $(job_get m5 error)"
vmmctl quit m5 >/dev/null; vmmctl quit m6 >/dev/null
start_faultd

note "faultd dies mid-postcopy: both sides postcopy-paused, the guest waits"
start_vmm p --memory 256M --test-guest dirty --heartbeat 100
wait_pass p 0 2
start_vmm q --memory 256M --incoming
incoming q
postcopy_on_request p --max-bandwidth 8M --channels 1
wait_until 30 job_is q postcopy_active || fail "q: $(migctl status q)"
# A vCPU waits on these threads: they run in SCHED_FIFO (rtspawn.c), born
# of a thread that took the class before the capabilities went.  In the
# source worker: its spawner and the page server; in faultd: the spawner,
# q's fault thread and its link thread.
# (None without CAP_SYS_NICE.)
wp=$(job_get p worker_pid)
RT=0
have_sys_nice && RT=1
[ "$(fifo_threads "$wp")" = $((2 * RT)) ] ||
	fail "p's worker: $(fifo_threads "$wp") threads in SCHED_FIFO, expected $((2 * RT))"
why=$(no_caps_anywhere "$wp") || fail "p's worker: $why"
[ "$(fifo_threads "$FAULTD_PID")" = $((3 * RT)) ] ||
	fail "faultd: $(fifo_threads "$FAULTD_PID") threads in SCHED_FIFO, expected $((3 * RT))"
why=$(no_caps_anywhere "$FAULTD_PID") || fail "faultd: $why"
echo "ok: page server, q's fault and link threads: $((2 * RT)) + $((3 * RT)) threads in SCHED_FIFO"
err=$(migctl cancel p 2>&1) && fail "cancel in postcopy was accepted: $err"
case $err in *"postcopy"*) echo "ok: $err" ;; *) fail "cancel: $err" ;; esac
kill -KILL "$FAULTD_PID"
wait_until 30 job_is q postcopy_paused || fail "q: $(migctl status q)"
wait_until 30 job_is p postcopy_paused || fail "p: $(migctl status p)"
echo "ok: q: $(job_get q error)"
echo "ok: p: $(job_get p error)"
[ "$(state_of q)" = running ] || fail "q is not running"
[ "$(state_of p)" = paused ] || fail "p is not paused"
# Blocked: q's vmm says running, but its guest, which touches every page
# in each pass, soon waits on one that will not come and reports no more
# pages.  Its count must then stand still; a guest given zeros for the
# missing pages would go on (and report FAIL).
wait_until 30 pages_still q 0 || fail "q: the guest went on without its pages"
before=$(pages_of q 0)
wait_until 3 pages_above q 0 "${before:-0}" &&
	fail "q: the guest went on past $before pages without its pages"
grep -a -m 8 FAIL "$RUNDIR/q.serial" && fail "q: the guest reported a failure"
echo "ok: q's guest blocked at ${before:-0} pages"
# The paused workers wait for recovery; end them and the vmms here.
kill_worker KILL p q
# q's vCPU waits on a page that will not come: Quit must still end it.
vmmctl quit q >/dev/null || fail "quit q"
wait_exit "$PID_q" || fail "q exited with $?"
echo "ok: q quit while its guest waited for a page"
echo PASS
