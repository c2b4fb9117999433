#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# Install the Debian packages tern needs to build and test, if any are
# missing (the tests speak the wire protocol with python3, and use ip
# and ss from iproute2; t_units boots a container with systemd-nspawn,
# from systemd-container, to run the shipped units under a real systemd).
# Called by 'make deps', 'make check' and 'make demo'.
set -eu
pkgs="build-essential pkg-config libevent-dev libprotobuf-c-dev
protobuf-c-compiler libcap-dev liburing-dev libcmocka-dev libzstd-dev
gnuplot-nox python3 iproute2 systemd-container"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages:$missing; run 'make deps' as root" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
