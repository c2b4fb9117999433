# SPDX-License-Identifier: GPL-2.0-only
# A stand-in for a vmm, for tests of what migd does with a migration
# peer's bytes (a hostile source or destination) and with its callers
# while pages move: it serves RUNDIR/vmm/NAME.sock, says it is incoming
# (or running: a source's), hands its RAM (GetRam: one region in a
# memfd; running, of random bytes) and, running, a dirty bitmap that
# stays clean (DirtyStart, DirtySync), and answers any other call with
# an empty success.  It runs no guest: no KVM needed.  Until killed.
# Usage: fakevmm.py RUNDIR NAME MEMORY [incoming|running]
import fcntl
import os
import socket
import struct
import sys
import threading

from rpcwire import field, varint, ld, fields

rundir, name, memory = sys.argv[1], sys.argv[2], int(sys.argv[3])
INCOMING, RUNNING = 1, 2
state = RUNNING if sys.argv[4:] == ["running"] else INCOMING
ram = os.memfd_create("guest-ram", os.MFD_ALLOW_SEALING)
os.ftruncate(ram, memory)
fcntl.fcntl(ram, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
if state == RUNNING:        # a source's: pages to send (zero ones are not)
    os.pwrite(ram, os.urandom(memory), 0)
pages = memory // 4096
bitmap_bytes = (pages + 63) // 64 * 8
bitmap = os.memfd_create("dirty", os.MFD_ALLOW_SEALING)
os.ftruncate(bitmap, bitmap_bytes)
fcntl.fcntl(bitmap, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)


def framed_reply(rid, result, nfds=0):
    r = field(1, 0, varint(rid)) + ld(4, result)
    f = (field(1, 0, varint(nfds)) if nfds else b"") + ld(3, r)
    return struct.pack("<I", len(f)) + f


def answer(c, rid, method):
    if method in ("Status", "Stop", "Cont"):
        # (Stop's reply says what it found: running, as a source's is)
        st = (ld(1, name.encode()) + field(2, 0, varint(state)) +
              field(3, 0, varint(1)) + field(4, 0, varint(memory)) +
              field(7, 0, varint(os.getpid())) +
              (field(18, 0, varint(RUNNING)) if method == "Stop" else b""))
        c.sendall(framed_reply(rid, st))
    elif method == "DirtyStart":
        info = field(1, 0, varint(pages)) + field(2, 0, varint(bitmap_bytes))
        socket.send_fds(c, [framed_reply(rid, info, 1)], [bitmap])
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
            answer(c, req.get(1, [0])[0], method)


os.makedirs(rundir + "/vmm", exist_ok=True)
path = "%s/vmm/%s.sock" % (rundir, name)
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(8)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
