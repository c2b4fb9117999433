#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Guest RAM in 2 MiB huge pages (vmm --hugepages): a pool too small fails
# the start with what to raise; precopy between any mix of huge and
# ordinary RAM keeps the guest's memory intact and the guest running; a
# transfer hands the huge RAM over; postcopy, which cannot place huge
# pages, is refused with the reason before anything is lost: the request
# (the job goes on in precopy), and a job that may switch by itself
# (fails at once, the source runs on).  What the test adds to the
# host's pool (/proc/sys/vm/nr_hugepages) is given back at the end.
. "$(dirname "$0")/lib.sh"
need_kvm

# Three guests of 64 MiB at most at once (32 pages each), and 8 spare,
# given back at the end (hugepool.sh).
hp_take 104
[ -z "$HP_WHY" ] || skip "no huge pages for the test: $HP_WHY"

is_huge() { [ "$(vmmctl --json status "$1" | jget hugepages)" = true ]; }

start_migd

note "a pool too small: the start fails and says what to raise"
free=$(hp_free)
big=$(( (free + 1) * 2 ))       # MiB: one huge page more than the pool has
# (Bounded: should it start after all, it would run for good.)
out=$(timeout 20 "$BIN/vmm" --name big --rundir "$RUNDIR" --memory "${big}M" --hugepages \
	--test-guest idle --serial none 2>&1) && fail "a $big MiB guest started on $free free huge pages"
told="--hugepages: $big MiB of guest RAM need $((free + 1)) huge pages of 2 MiB, but the host's pool has $free free (raise /proc/sys/vm/nr_hugepages)"
echo "$out" | grep -q -F -- "$told" || fail "the shortage is not told: $out"
[ "$(hp_free)" = "$free" ] || fail "the failed start kept huge pages: $(hp_free) free, not $free"
echo "ok: $told"

note "precopy, huge -> huge: a dirtying guest over two channels, verified"
start_vmm a --memory 64M --vcpus 1 --hugepages --test-guest dirty --heartbeat 100
start_vmm b --memory 64M --vcpus 1 --hugepages --incoming
is_huge a && is_huge b || fail "$(vmmctl status a b)"
vmmctl status a | grep -q "64.0 MiB in 2 MiB huge pages" || fail "$(vmmctl status a)"
[ "$(hp_free)" = $((free - 64)) ] || fail "two guests of 32 huge pages left $(hp_free) free, not $((free - 64))"
wait_pass a 0 2
incoming b
out=$(migctl --json migrate a "$ADDR" --token "$TOKEN" --channels 2 --verify --wait) ||
	fail "a -> b: $out"
[ "$(echo "$out" | jget verified)" = ok ] || fail "a -> b not verified: $out"
[ "$(echo "$out" | jget no_postcopy)" = "vmm a's guest RAM is in 2 MiB huge pages (--hugepages)" ] ||
	fail "the job does not say why it cannot postcopy: $out"
[ "$(state_of b)" = running ] || fail "b is $(state_of b)"
wait_progress b 0
vmmctl check b || fail "b: memory check after huge -> huge"
grep -q "RAM in 2 MiB huge pages: received in place" "$RUNDIR/migd.log" ||
	fail "the destination did not take its RAM as huge pages"
echo "ok: a -> b in $(echo "$out" | jget total_ms) ms, $(echo "$out" | jget rounds) rounds"
vmmctl quit a >/dev/null; wait_exit "$(pid_of a)" || fail "a did not quit"

note "postcopy asked of a huge guest: refused, the job goes on in precopy"
start_vmm c --memory 64M --vcpus 1 --incoming
incoming c
migrate_active b 4M
wait_until 30 eval '[ -n "$(job_get b no_postcopy)" ]' || fail "b's job never said: $(migctl status b)"
out=$(migctl postcopy b 2>&1) && fail "postcopy of a huge guest was taken: $out"
echo "$out" | grep -q "b: postcopy cannot be: vmm b's guest RAM is in 2 MiB huge pages (--hugepages); the migration goes on in precopy" ||
	fail "postcopy b said: $out"
migctl status b | grep -q "postcopy      cannot be: vmm b's guest RAM is in 2 MiB huge pages" ||
	fail "status does not say it: $(migctl status b)"
job_is b active || fail "b's job is $(job_get b state) after the refusal"
migctl tune b --max-bandwidth unlimited >/dev/null || fail "tune b"
wait_job_final b
[ "$(job_get b state)" = completed ] || fail "b -> c: $(migctl status b)"
[ "$(job_get b postcopy_started)" = false ] || fail "b switched anyway"
is_huge c && fail "c took huge pages from nowhere"
vmmctl check c || fail "c: memory check after huge -> ordinary"
wait_progress c 0
echo "ok: $out"
vmmctl quit b >/dev/null; wait_exit "$(pid_of b)" || fail "b did not quit"

note "into huge RAM, a job that may switch by itself fails at once; without it, it works"
start_vmm d --memory 64M --vcpus 1 --hugepages --incoming
free=$(hp_free)
incoming d
out=$(migctl migrate c "$ADDR" --token "$TOKEN" --postcopy auto --wait 2>&1) &&
	fail "--postcopy auto into huge pages: $out"
echo "$out" | grep -q "postcopy cannot be: at the destination, its guest RAM is in 2 MiB huge pages (vmm --hugepages); start the migration without --postcopy auto" ||
	fail "c -> d said: $out"
source_fine c
wait_job_final d
out=$(job_get d error)
case $out in
"the source ended the migration: postcopy cannot be: at the destination"*) ;;
*) fail "d's job did not end on what the source said: $out" ;;
esac
wait_until 30 vmm_is d incoming || fail "d is $(state_of d)"
is_huge d || fail "d lost its huge pages: $(vmmctl status d)"

note "a migration into huge RAM cancelled halfway: d is emptied and keeps its pool's pages"
incoming d
migrate_active c 4M
wait_until 30 eval '[ "$(job_get d transferred_bytes)" -gt 4194304 ]' ||
	fail "nothing arrives at d: $(migctl status d)"
migctl cancel c >/dev/null || fail "cancel c"
wait_job_final d
dest_fresh d
# Punched, its RAM gave the pool's pages back, and took them again at
# once (mem_discard): the pool is as it was.
grep -q "discarded the incoming guest's RAM and state" "$RUNDIR/d.log" ||
	fail "d was not discarded: $(tail -n 3 "$RUNDIR/d.log")"
[ "$(hp_free)" = "$free" ] || fail "the discard of d changed the pool: $free then $(hp_free) free"
source_fine c
good_migration c d
is_huge d || fail "$(vmmctl status d)"
vmmctl quit c >/dev/null; wait_exit "$(pid_of c)" || fail "c did not quit"

note "a transfer hands the huge RAM to a new vmm"
start_vmm f --memory 64M --vcpus 1 --incoming
vmmctl transfer d f >/dev/null || fail "transfer d f"
wait_exit "$(pid_of d)" || fail "d did not quit cleanly"
is_huge f || fail "f did not take huge pages: $(vmmctl status f)"
wait_progress f 0
vmmctl check f || fail "f: memory check after the transfer"
echo "ok: $(vmmctl status f)"
echo "PASS"
