# SPDX-License-Identifier: GPL-2.0-only
# A stand-in for a vmm, for tests of what migd does with a migration
# peer's bytes (a hostile source or destination), with its callers while
# pages move, and with RAM that must arrive bit for bit: it serves
# RUNDIR/vmm/NAME.sock, says it is incoming (or running: a source's),
# hands its RAM (GetRam: one region in a memfd; running, of random
# bytes) and, running, a dirty bitmap (DirtyStart, DirtySync).  It runs
# no guest (no KVM needed); a running one may have a writer thread
# instead, which rewrites RATE random pages a second while running,
# slowed by SetThrottle as vCPUs would be, and logs them as KVM would;
# an incoming one, a reader of RATE random pages a second once it runs.
# Both touch the RAM through its mapping, as vCPUs do: for postcopy,
# UffdCreate registers it with a userfaultfd made with the lent
# /dev/userfaultfd (vmm/uffd.c), and a missing page holds its toucher
# until faultd places it.
# SaveState gives a state that LoadState takes back; Discard zeroes the
# RAM.  Stop, Cont and Discard print "stop ram SHA256" (of the RAM then:
# what the source stopped with, what the destination starts with),
# SetThrottle "throttle P", and UffdRelease "release ram SHA256" (what a
# postcopy's destination holds at its end).  Other calls get an empty
# success.  A running one's RAM: its first half random, its third
# quarter text, its last quarter zero.  Until killed.
# Usage: fakevmm.py RUNDIR NAME MEMORY [incoming|running [RATE]]
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
rate = int(sys.argv[5]) if sys.argv[5:] else 0
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
ram_map = mmap.mmap(ram, memory)
ram_addr = ctypes.addressof(ctypes.c_char.from_buffer(ram_map))
bitmap_map = mmap.mmap(bitmap, bitmap_bytes)
bitmap_addr = ctypes.addressof(ctypes.c_char.from_buffer(bitmap_map))
fetch_or = ctypes.CDLL("libatomic.so.1").__atomic_fetch_or_8
fetch_or.restype = ctypes.c_uint64
fetch_or.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int)
logging = False
pending = set()             # pages written since the last DirtySync
uffd, uffd_token = -1, 0
# <linux/userfaultfd.h>
USERFAULTFD_IOC_NEW, UFFDIO_API, UFFDIO_REGISTER, UFFDIO_UNREGISTER = \
    0xaa00, 0xc018aa3f, 0xc020aa00, 0x8010aa01
UFFD_API, UFFD_FEATURE_MISSING_SHMEM, UFFDIO_REGISTER_MODE_MISSING = 0xaa, 0x20, 1


out_lock = threading.Lock()


def say(*words):
    """A line of output, whole: the threads' lines never interleave."""
    with out_lock:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


def ram_sha():
    h = hashlib.sha256()
    for off in range(0, memory, 1 << 20):
        h.update(os.pread(ram, min(1 << 20, memory - off), off))
    return h.hexdigest()


def writer():
    """A source guest's stand-in: RATE random pages rewritten a second."""
    while True:
        time.sleep(0.01)
        with lock:
            if state != RUNNING:
                continue
            for _ in range(rate * (100 - throttle) // 10000):
                p = random.randrange(pages)
                ctypes.memmove(ram_addr + p * 4096 + random.randrange(64) * 64,
                               os.urandom(64), 64)
                if logging:
                    pending.add(p)


def reader():
    """A destination guest's: RATE random pages read a second (not under
    the lock: in postcopy a read waits for its page)."""
    buf = ctypes.create_string_buffer(64)
    while True:
        time.sleep(0.01)
        if state != RUNNING:
            continue
        for _ in range(rate // 100):
            ctypes.memmove(buf, ram_addr + random.randrange(pages) * 4096, 64)


def uffd_create(dev):
    """A userfaultfd for the RAM's mapping, made with /dev/userfaultfd."""
    fd = fcntl.ioctl(dev, USERFAULTFD_IOC_NEW, os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, UFFDIO_API, bytearray(struct.pack(
            "<QQQ", UFFD_API, UFFD_FEATURE_MISSING_SHMEM, 0)))
        fcntl.ioctl(fd, UFFDIO_REGISTER, bytearray(struct.pack(
            "<QQQQ", ram_addr, memory, UFFDIO_REGISTER_MODE_MISSING, 0)))
    except OSError:
        os.close(fd)
        raise
    return fd


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


def framed_error(rid, status, message):
    r = field(1, 0, varint(rid)) + field(2, 0, varint(status)) + ld(3, message.encode())
    f = ld(3, r)
    return struct.pack("<I", len(f)) + f


saved = field(1, 0, varint(1)) + ld(2, b"fakevmm") + field(3, 0, varint(memory))


def answer(c, rid, method, arg, fds):
    global state, held, throttle, logging, saved, uffd, uffd_token
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
        st = (ld(1, name.encode()) + field(2, 0, varint(now)) +
              field(3, 0, varint(1)) + field(4, 0, varint(memory)) +
              field(7, 0, varint(os.getpid())) +
              field(11, 0, varint(throttle)) +
              (field(18, 0, varint(found)) if method == "Stop" else b""))
        c.sendall(framed_reply(rid, st))
        # after the reply: not in the pause; and not in a postcopy,
        # whose missing pages read as zeros here
        if method != "Status" and uffd < 0:
            say("%s ram %s" % (method.lower(), ram_sha()))
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
        say("throttle", throttle)
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
        say("discard ram", ram_sha())
    elif method in ("UffdCreate", "UffdShare"):
        if method == "UffdCreate":
            try:
                assert uffd < 0 and fds, "no /dev/userfaultfd lent, or a uffd kept"
                uffd, uffd_token = uffd_create(fds[0]), fields(arg).get(1, [0])[0]
            except (AssertionError, OSError) as e:
                c.sendall(framed_error(rid, 22, "UffdCreate: %s" % e))
                return
        elif uffd < 0:
            c.sendall(framed_error(rid, 2, "no userfaultfd kept"))
            return
        socket.send_fds(c, [framed_reply(rid, field(1, 0, varint(ram_addr)), 1)], [uffd])
    elif method == "UffdRelease":
        token = fields(arg).get(1, [0])[0]
        if uffd >= 0 and token in (0, uffd_token):
            fcntl.ioctl(uffd, UFFDIO_UNREGISTER, struct.pack("<QQ", ram_addr, memory))
            os.close(uffd)
            uffd = -1
            say("release ram", ram_sha())
        c.sendall(framed_reply(rid, b""))
    elif method == "GetRam":
        layout = field(1, 0, varint(4096)) + \
            ld(2, field(1, 0, varint(0)) + field(2, 0, varint(memory)))
        socket.send_fds(c, [framed_reply(rid, layout, 1)], [ram])
    else:
        c.sendall(framed_reply(rid, b""))


def serve(c):
    buf, lent = b"", []
    while True:
        data, fds, _, _ = socket.recv_fds(c, 65536, 16)
        lent += fds     # (a call's descriptors come with its frame's start)
        if not data:
            return
        buf += data
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack("<I", buf[:4])[0]:
            n = struct.unpack("<I", buf[:4])[0]
            body, buf = buf[4:4 + n], buf[4 + n:]
            req = fields(fields(body)[2][0])
            method = req[2][0].decode().rsplit("/", 1)[-1]
            say("call", method)
            # A caller gone does not undo its calls (as the vmm's
            # server, which takes the frames it read before the end).
            try:
                answer(c, req.get(1, [0])[0], method, req.get(3, [b""])[0], lent)
            except OSError:
                pass
            for fd in lent:
                os.close(fd)
            lent = []


os.makedirs(rundir + "/vmm", exist_ok=True)
path = "%s/vmm/%s.sock" % (rundir, name)
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(8)
if rate:
    threading.Thread(target=writer if state == RUNNING else reader,
                     daemon=True).start()
say("ready", ram)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
