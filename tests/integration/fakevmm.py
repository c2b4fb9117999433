# SPDX-License-Identifier: GPL-2.0-only
# A stand-in for a vmm, for tests of what migd does with a migration
# peer's bytes (a hostile source or destination), with its callers while
# pages move, and with RAM that must arrive bit for bit: it serves
# RUNDIR/vmm/NAME.sock, says it is incoming (or running: a source's),
# hands its RAM (GetRam: one region in a memfd; running, of random
# bytes) and, running, a dirty bitmap (DirtyStart, DirtySync).  It runs
# no guest (no KVM needed); a running one may have a writer thread
# instead, which rewrites DIRTY random pages a second while running,
# slowed by SetThrottle as vCPUs would be, and logs them as KVM would.
# SaveState gives a state that LoadState takes back; Discard zeroes the
# RAM.  Stop, Cont and Discard print "stop ram SHA256" (of the RAM then:
# what the source stopped with, what the destination starts with),
# SetThrottle "throttle P".  Other calls get an empty success.  A
# running one's RAM: its first half random, its third quarter text, its
# last quarter zero.  Until killed.
# Usage: fakevmm.py RUNDIR NAME MEMORY [incoming|running [DIRTY]]
# It prints "ready RAMFD" (/proc/PID/fd/RAMFD: its RAM, to corrupt).
import ctypes
import fcntl
import hashlib
import mmap
import os
import random
import socket
import struct
import sys
import threading
import time

from rpcwire import field, varint, ld, fields

rundir, name, memory = sys.argv[1], sys.argv[2], int(sys.argv[3])
INCOMING, RUNNING, PAUSED = 1, 2, 3
state = RUNNING if sys.argv[4:5] == ["running"] else INCOMING
dirty_rate = int(sys.argv[5]) if sys.argv[5:] else 0
held = False            # paused by a Stop that was not transient
throttle = 0
lock = threading.Lock()         # state, throttle, RAM writes, pending
ram = os.memfd_create("guest-ram", os.MFD_ALLOW_SEALING)
os.ftruncate(ram, memory)
fcntl.fcntl(ram, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
if state == RUNNING:
    # a source's: its first half random, its third quarter text (which
    # zstd compresses), its last quarter zero (not sent)
    os.pwrite(ram, os.urandom(memory // 2), 0)
    for off in range(memory // 2, memory * 3 // 4, 4096):
        os.pwrite(ram, ((b"page %08x of a stand-in's RAM. " % off) * 128)[:4096], off)
pages = memory // 4096
bitmap_bytes = (pages + 63) // 64 * 8
bitmap = os.memfd_create("dirty", os.MFD_ALLOW_SEALING)
os.ftruncate(bitmap, bitmap_bytes)
fcntl.fcntl(bitmap, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
# migd clears the bits it takes while a sync sets others: an atomic OR,
# as the vmm's (vmm/dirty.c)
bitmap_map = mmap.mmap(bitmap, bitmap_bytes)
bitmap_addr = ctypes.addressof(ctypes.c_char.from_buffer(bitmap_map))
fetch_or = ctypes.CDLL("libatomic.so.1").__atomic_fetch_or_8
fetch_or.restype = ctypes.c_uint64
fetch_or.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int)
logging = False
pending = set()             # pages written since the last DirtySync


def ram_sha():
    h = hashlib.sha256()
    for off in range(0, memory, 1 << 20):
        h.update(os.pread(ram, min(1 << 20, memory - off), off))
    return h.hexdigest()


def writer():
    """The guest's stand-in: DIRTY random pages rewritten a second."""
    while True:
        time.sleep(0.01)
        with lock:
            if state != RUNNING:
                continue
            for _ in range(dirty_rate * (100 - throttle) // 10000):
                p = random.randrange(pages)
                os.pwrite(ram, os.urandom(64), p * 4096 + random.randrange(64) * 64)
                if logging:
                    pending.add(p)


def dirty_sync():
    """OR the pages written since the last sync into the bitmap."""
    new = 0
    with lock:
        for p in pending:
            bit = 1 << (p % 64)
            if not fetch_or(bitmap_addr + p // 64 * 8, bit, 0) & bit:
                new += 1
        pending.clear()
    return new


def framed_reply(rid, result, nfds=0):
    r = field(1, 0, varint(rid)) + ld(4, result)
    f = (field(1, 0, varint(nfds)) if nfds else b"") + ld(3, r)
    return struct.pack("<I", len(f)) + f


saved = field(1, 0, varint(1)) + ld(2, b"fakevmm") + field(3, 0, varint(memory))


def answer(c, rid, method, arg):
    global state, held, throttle, logging, saved
    if method in ("Status", "Stop", "Cont"):
        with lock:
            # Stop's found: RUNNING when the vCPUs ran, or were paused
            # by transient Stops only (vmm.proto)
            found = RUNNING if state == PAUSED and not held else state
            if method == "Stop":
                state = PAUSED if state == RUNNING else state
                held = held or not fields(arg).get(1, [0])[0]
            elif method == "Cont":
                state, held = RUNNING, False
            now = state
        # (Stop's reply says what it found)
        st = (ld(1, name.encode()) + field(2, 0, varint(now)) +
              field(3, 0, varint(1)) + field(4, 0, varint(memory)) +
              field(7, 0, varint(os.getpid())) +
              field(11, 0, varint(throttle)) +
              (field(18, 0, varint(found)) if method == "Stop" else b""))
        c.sendall(framed_reply(rid, st))
        if method != "Status":      # after the reply: not in the pause
            print("%s ram %s" % (method.lower(), ram_sha()), flush=True)
    elif method == "DirtyStart":
        with lock:
            logging = True
        info = field(1, 0, varint(pages)) + field(2, 0, varint(bitmap_bytes))
        socket.send_fds(c, [framed_reply(rid, info, 1)], [bitmap])
    elif method == "DirtySync":
        c.sendall(framed_reply(rid, field(1, 0, varint(dirty_sync()))))
    elif method == "DirtyStop":
        with lock:
            logging = False
            pending.clear()
        c.sendall(framed_reply(rid, b""))
    elif method == "SetThrottle":
        with lock:
            throttle = min(fields(arg).get(1, [0])[0], 99)
        print("throttle", throttle, flush=True)
        c.sendall(framed_reply(rid, field(1, 0, varint(throttle))))
    elif method == "SaveState":
        c.sendall(framed_reply(rid, saved))
    elif method == "LoadState":
        saved = arg
        c.sendall(framed_reply(rid, b""))
    elif method == "Discard":       # what was received is dropped
        with lock:
            state = INCOMING
            for off in range(0, memory, 1 << 20):
                os.pwrite(ram, bytes(min(1 << 20, memory - off)), off)
        c.sendall(framed_reply(rid, b""))
        print("discard ram", ram_sha(), flush=True)
    elif method == "GetRam":
        layout = field(1, 0, varint(4096)) + \
            ld(2, field(1, 0, varint(0)) + field(2, 0, varint(memory)))
        socket.send_fds(c, [framed_reply(rid, layout, 1)], [ram])
    else:
        c.sendall(framed_reply(rid, b""))


def serve(c):
    buf = b""
    while True:
        data, fds, _, _ = socket.recv_fds(c, 65536, 16)
        for fd in fds:
            os.close(fd)
        if not data:
            return
        buf += data
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack("<I", buf[:4])[0]:
            n = struct.unpack("<I", buf[:4])[0]
            body, buf = buf[4:4 + n], buf[4 + n:]
            req = fields(fields(body)[2][0])
            method = req[2][0].decode().rsplit("/", 1)[-1]
            print("call", method, flush=True)
            answer(c, req.get(1, [0])[0], method, req.get(3, [b""])[0])


os.makedirs(rundir + "/vmm", exist_ok=True)
path = "%s/vmm/%s.sock" % (rundir, name)
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(8)
if dirty_rate:
    threading.Thread(target=writer, daemon=True).start()
print("ready", ram, flush=True)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
