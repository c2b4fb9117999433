# SPDX-License-Identifier: GPL-2.0-only
# shellcheck shell=bash
# The host's pool of 2 MiB huge pages, for tests, the soak and the bench
# that run guests with vmm --hugepages (sourced by tests/integration/lib.sh
# and tests/bench/lib.sh, whose cleanup calls hp_give_back).  The pool is
# the host's, not the test's (/proc/sys/vm/nr_hugepages: no namespace has
# one of its own), so what is added is taken back by as much, never set
# back to a value read before: another run may have raised it meanwhile
# and still need its pages.  Pages in use when it shrinks go back to the
# host as they are freed.
HP=/proc/sys/vm/nr_hugepages
HP_ADDED=0              # pages hp_take added, not given back yet
HP_WHY=                 # why the last hp_take could not, empty if it could

# The pool's pages neither in use nor reserved.
hp_free() {
	awk '/^HugePages_Free/ { f = $2 } /^HugePages_Rsvd/ { r = $2 } END { print f - r }' /proc/meminfo
}

# hp_take N: N more pages free in the pool, until hp_give_back; if the
# host cannot give them, nothing is kept and HP_WHY says why.
hp_take() {
	local before
	HP_WHY=
	[ -w "$HP" ] || { HP_WHY="$HP is not writable (not root?)"; return; }
	before=$(cat "$HP")
	echo $((before + $1)) 2>/dev/null >"$HP"
	# The kernel may find fewer than asked for.
	HP_ADDED=$(( HP_ADDED + $(cat "$HP") - before ))
	[ "$(hp_free)" -ge "$1" ] && return
	HP_WHY="the host's pool gave $(hp_free) of the $1 huge pages of 2 MiB asked for"
	hp_give_back
}

hp_give_back() {
	local now
	[ "$HP_ADDED" -gt 0 ] || return 0
	now=$(cat "$HP")
	echo $(( now > HP_ADDED ? now - HP_ADDED : 0 )) >"$HP" ||
		echo "could not give $HP_ADDED huge pages back to $HP"
	HP_ADDED=0
}
