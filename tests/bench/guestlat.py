#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The test guest's own access times (common/testguest.h, TG_LAT_GPA).

Usage: guestlat.py PARAMS BEFORE AFTER N VCPUS
PARAMS: `vmmctl read VM 0x3000 32` of the guest (its TSC rate at +24);
BEFORE, AFTER: `vmmctl read VM 0x1d0000 VCPUS*1024` of the source at the
switch and of the destination at the end (hex, as vmmctl prints it).
Of the accesses made in between, takes the N slowest (N: the remote
faults faultd counted; a remote fault is by far the slowest access there
is) and prints "p50 p99 max total" in microseconds (bucket upper edges,
as faultd's percentiles are), then the number of accesses in all.
"""
import struct
import sys

BUCKETS = 256


def words(path, n, fmt):
    with open(path) as f:
        raw = bytes.fromhex("".join(f.read().split()))
    return struct.unpack("<%d%s" % (n, fmt), raw[:n * struct.calcsize(fmt)])


def upper_ticks(i):
    """The first tick count past bucket i."""
    if i < 24:
        return i + 1
    o, e = i // 8, i % 8
    return (9 + e) << (o - 3)


def main():
    params, before, after, n, vcpus = sys.argv[1:6]
    n, vcpus = int(n), int(vcpus)
    tsc_hz = words(params, 4, "Q")[3]
    if not tsc_hz:
        sys.exit("guestlat: no TSC rate in the guest's parameters")
    b = words(before, BUCKETS * vcpus, "I")
    a = words(after, BUCKETS * vcpus, "I")
    counts = [0] * BUCKETS
    for v in range(vcpus):
        for i in range(BUCKETS):
            # 32-bit counters: a wrap between the reads still subtracts.
            counts[i] += (a[v * BUCKETS + i] - b[v * BUCKETS + i]) & 0xffffffff
    total = sum(counts)
    if n <= 0 or total < n:
        sys.exit("guestlat: %d accesses, fewer than the %d faults" % (total, n))
    slow, left = [], n                  # the n slowest, slowest first
    for i in reversed(range(BUCKETS)):
        take = min(left, counts[i])
        if take:
            slow.append((i, take))
            left -= take
        if not left:
            break
    slow.reverse()                      # fastest first

    def pct(q):
        rank, seen = max(1, -(-n * q // 100)), 0
        for i, c in slow:
            seen += c
            if seen >= rank:
                return upper_ticks(i) * 1e6 / tsc_hz
        return upper_ticks(slow[-1][0]) * 1e6 / tsc_hz

    print("%.0f %.0f %.0f %d" % (pct(50), pct(99), pct(100), total))


if __name__ == "__main__":
    main()
