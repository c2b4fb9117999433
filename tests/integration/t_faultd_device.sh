#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# faultd without a usable /dev/userfaultfd does not start: in a mount
# namespace of its own where the node is /dev/null (bind-mounted over it,
# which opens fine) or missing, it exits 1 at once, before it serves, with
# one error naming the device and why.  (It used to serve with /dev/null
# as its device: every postcopy then failed, at its switch.)
. "$(dirname "$0")/lib.sh"
[ -c /dev/userfaultfd ] || skip "/dev/userfaultfd is missing (Linux 6.1 or later)"
command -v unshare >/dev/null || skip "unshare (util-linux) is missing"
unshare -m --propagation private true 2>/dev/null ||
	skip "cannot make a mount namespace here (unshare -m)"

# refused CASE SETUP WORDS: faultd, in a new mount namespace after SETUP
# (shell commands), must exit 1 without a socket, its log naming
# /dev/userfaultfd and saying WORDS.
refused() {
	local what=$1 setup=$2 words=$3 dir=$RUNDIR/$1 pid rc
	mkdir -p "$dir"
	# unshare runs sh in the process it made the namespace in, and sh
	# execs faultd: the PID is faultd's.
	unshare -m --propagation private sh -c "$setup && exec \"\$0\" --rundir \"\$1\"" \
		"$BIN/faultd" "$dir" >"$dir/faultd.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	faultd_settled() { ! kill -0 "$pid" 2>/dev/null || test -S "$dir/faultd.sock"; }
	wait_until 20 faultd_settled || fail "$what: faultd neither served nor exited"
	[ -S "$dir/faultd.sock" ] &&
		fail "$what: faultd serves without a usable /dev/userfaultfd: $(cat "$dir/faultd.log")"
	wait "$pid"
	rc=$?
	[ $rc = 1 ] || fail "$what: faultd exited $rc, faultd(8) says 1: $(cat "$dir/faultd.log")"
	grep -q "/dev/userfaultfd.*$words" "$dir/faultd.log" ||
		fail "$what: the log does not say '/dev/userfaultfd ... $words': $(cat "$dir/faultd.log")"
	[ "$(wc -l <"$dir/faultd.log")" = 1 ] || fail "$what: $(cat "$dir/faultd.log")"
	echo "ok: $what: exit 1: $(cat "$dir/faultd.log")"
}

note "/dev/null bind-mounted over /dev/userfaultfd"
refused null "mount --bind /dev/null /dev/userfaultfd" \
	"(character device 1:3) is not the userfaultfd device"

note "no /dev/userfaultfd at all (an empty /dev)"
refused none "mount -t tmpfs none /dev" "No such file or directory"

note "and the real device serves"
start_faultd
ls -l "/proc/$FAULTD_PID/fd" | grep -q ' -> /dev/userfaultfd$' ||
	fail "faultd holds no /dev/userfaultfd"
kill -TERM "$FAULTD_PID"
wait_exit "$FAULTD_PID" || fail "faultd exited with $? on SIGTERM"
echo PASS
