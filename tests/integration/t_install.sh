#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# What 'make install' puts on a host: every program with its man page,
# every daemon with its systemd unit (and the units valid, pointing at the
# installed programs), every option and command of a program's --help
# documented in its man page, the man pages free of formatting errors,
# and 'make uninstall' leaving nothing behind.
. "$(dirname "$0")/lib.sh"

SRC=$PWD                # tests/run.sh runs us from the checkout
PREFIX=$RUNDIR/usr
# man page and section of each program; the daemons' units
declare -A MAN=([vmm]=8 [vmmctl]=8 [migd]=8 [faultd]=8 [migctl]=1)
declare -A UNIT=([vmm]=vmm@.service [migd]=migd.service [faultd]=faultd.service)

# make ... install/uninstall, with the programs as built (-o: never
# remade here, whatever flags built them).
run_make() {
	local -a keep=()
	local p
	for p in "$BIN"/*; do keep+=(-o "$p"); done
	make --no-print-directory -s -C "$SRC" O="${BIN%/bin}" \
		PREFIX="$PREFIX" "${keep[@]}" "$@"
}

note "every program is installed with its man page, every daemon with its unit"
for p in "$BIN"/*; do
	p=${p##*/}
	[ -n "${MAN[$p]:-}" ] || fail "program $p: this test does not know its man page"
done
run_make install >"$RUNDIR/install.log" 2>&1 || { cat "$RUNDIR/install.log"; fail "make install"; }
for p in "${!MAN[@]}"; do
	dir=sbin
	[ "$p" = migctl ] && dir=bin
	[ -x "$PREFIX/$dir/$p" ] || fail "$p is not installed in $PREFIX/$dir"
	cmp -s "$BIN/$p" "$PREFIX/$dir/$p" || fail "$PREFIX/$dir/$p is not the built $p"
	[ -f "$PREFIX/share/man/man${MAN[$p]}/$p.${MAN[$p]}" ] ||
		fail "$p: no man page $p.${MAN[$p]}"
done
for m in tern-rpc.7 tern-migration.7; do
	[ -f "$PREFIX/share/man/man7/$m" ] || fail "no man page $m"
done
# The schemas an agent speaks the RPC with (tern-rpc(7) names where).
for f in proto/*.proto; do
	cmp -s "$f" "$PREFIX/share/tern/$f" || fail "$f is not installed in $PREFIX/share/tern/proto"
done
for p in "${!UNIT[@]}"; do
	u=$PREFIX/lib/systemd/system/${UNIT[$p]}
	[ -f "$u" ] || fail "daemon $p: no unit ${UNIT[$p]}"
	# The unit starts the program where it was installed.
	grep -q "^ExecStart=$PREFIX/sbin/$p " "$u" ||
		fail "${UNIT[$p]}: $(grep '^ExecStart=' "$u")"
done
echo "ok: $(find "$PREFIX" -type f | wc -l) files under $PREFIX"

note "each unit passes systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
	mkdir "$RUNDIR/units"
	for p in "${!UNIT[@]}"; do
		# A template is verified as an instance of it.
		cp "$PREFIX/lib/systemd/system/${UNIT[$p]}" \
		   "$RUNDIR/units/${UNIT[$p]/@/@t}"
	done
	(cd "$RUNDIR/units" &&
	 timeout 60 systemd-analyze verify --man=no ./*.service) >"$RUNDIR/verify.log" 2>&1 ||
		{ cat "$RUNDIR/verify.log"; fail "systemd-analyze verify"; }
	# Unknown keys are only warnings for it: any word from it fails.
	[ -s "$RUNDIR/verify.log" ] && { cat "$RUNDIR/verify.log"; fail "systemd-analyze verify warns"; }
	echo "ok: $(ls "$RUNDIR/units" | tr '\n' ' ')"
else
	not_tried "systemd-analyze (systemd) is not installed"
fi

note "every option and command in --help is in the man page"
# man_has PAGE WORD: WORD (a '-' is '\-' in roff) appears in PAGE.
man_has() { grep -qF -- "$(printf '%s' "$2" | sed 's/-/\\-/g')" "$1"; }
for p in "${!MAN[@]}"; do
	page=$SRC/man/$p.${MAN[$p]}
	help=$("$BIN/$p" --help 2>&1)
	n=0
	for o in $(printf '%s\n' "$help" | grep -o -- '--\[no-\][a-z-]*\|--[a-z][a-z-]*' | sort -u); do
		o=${o/\[no-\]/}
		man_has "$page" "$o" || fail "$p: $o is in --help, not in $p(${MAN[$p]})"
		n=$((n + 1))
	done
	# The CLIs' commands (the first word of each indented line: not an
	# option, not the tuning list), each a tag of its COMMANDS section.
	c=0
	cmds=$(sed -n '/^\.SH COMMANDS/,/^\.SH /p' "$page")
	for cmd in $(printf '%s\n' "$help" | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p'); do
		printf '%s\n' "$cmds" |
			grep -qE "^\.(B|BI|BR) \"?$(printf '%s' "$cmd" | sed 's/-/\\\\-/g')( |\"|$)" ||
			fail "$p: command $cmd is in --help, not in the COMMANDS of $p(${MAN[$p]})"
		c=$((c + 1))
	done
	[ "$n" -gt 0 ] || fail "$p --help names no option: $help"
	echo "ok: $p: $n options, $c commands"
done

note "the man pages format without a warning"
if command -v groff >/dev/null; then
	for f in "$PREFIX"/share/man/man*/*; do
		w=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$f" 2>&1)
		[ -z "$w" ] || fail "${f##*/}: $w"
	done
	echo "ok: $(ls "$PREFIX"/share/man/man*/* | wc -l) pages"
else
	not_tried "groff (groff-base) is not installed"
fi
# groff says nothing of prose left among a font-alternating macro's
# arguments, where it is run together: ".RI (\(lq "x" \(rq): once the job
# knows" printed "once thejobknows".  Three plain words in a row there
# are that.
bad=$(awk '/^\.(RI|IR|BI|IB|RB|BR)[ \t]/ {
	line = $0; sub(/^\.[A-Z][A-Z][ \t]+/, "", line); gsub(/"[^"]*"/, " Q ", line)
	n = split(line, a, /[ \t]+/); run = 0
	for (i = 1; i <= n; i++) {
		if (a[i] ~ /^[A-Za-z][A-Za-z'"'"'-]*[,.;:]?$/ && a[i] != "Q") { if (++run >= 3) { print FILENAME ":" FNR ": " $0; break } }
		else run = 0
	}
}' "$SRC"/man/*.[0-9])
[ -z "$bad" ] || fail "words run together by a font macro: $bad"
echo "ok: no prose among font macros' arguments"

note "make uninstall leaves nothing"
run_make uninstall >"$RUNDIR/uninstall.log" 2>&1 || { cat "$RUNDIR/uninstall.log"; fail "make uninstall"; }
left=$(find "$PREFIX" -type f)
[ -z "$left" ] || fail "left after uninstall: $left"
echo "ok: no file left under $PREFIX"
