# SPDX-License-Identifier: GPL-2.0-only
# The tern RPC framing by hand, for tests that must send what no client
# would (tern-rpc(7)): protobuf fields, and frames of a 4-byte
# little-endian length and a tern.rpc.Frame.  Also a migration's main
# connection, by hand, from either end (tern-migration(7)).
import socket
import struct


def field(n, wt, payload):
    return varint(n << 3 | wt) + payload


def varint(v):
    out = b""
    while True:
        b = v & 0x7f
        v >>= 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out


def ld(n, b):
    """Field n, length-delimited."""
    return field(n, 2, varint(len(b)) + b)


def request(rid, method, arg):
    """A framed Request (Frame.request = 2: id, method, arg)."""
    f = ld(2, field(1, 0, varint(rid)) + ld(2, method.encode()) + ld(3, arg))
    return struct.pack("<I", len(f)) + f


def recv_frame(s, buf):
    """The next frame's body from socket s, and what is left of buf."""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack("<I", buf[:4])[0]:
        chunk = s.recv(65536)
        assert chunk, "the peer closed the connection"
        buf += chunk
    n = struct.unpack("<I", buf[:4])[0]
    return buf[4:4 + n], buf[4 + n:]


def call(path, method, arg, fds=()):
    """One request on a new connection to the unix socket path, with
    descriptors fds: the reply's status, message and result."""
    req = field(1, 0, varint(1)) + ld(2, method.encode()) + ld(3, arg)
    f = (field(1, 0, varint(len(fds))) if fds else b"") + ld(2, req)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    socket.send_fds(s, [struct.pack("<I", len(f)) + f], list(fds))
    body, _ = recv_frame(s, b"")
    s.close()
    rep = fields(fields(body)[3][0])
    return (rep.get(2, [0])[0], rep.get(3, [b""])[0].decode(),
            rep.get(4, [b""])[0])


def reply_id(body):
    """The id of a Reply frame's body (Frame.reply = 3), or None."""
    if body[:1] != bytes([3 << 3 | 2]):
        return None
    i = 1
    while body[i] & 0x80:       # the reply's length
        i += 1
    assert body[i + 1] == 1 << 3, body          # Reply.id comes first
    v, shift, i = 0, 0, i + 2
    while True:
        v |= (body[i] & 0x7f) << shift
        if not body[i] & 0x80:
            return v
        shift += 7
        i += 1


def fields(b):
    """A protobuf message's fields: {number: [value, ...]}, varints as
    ints, length-delimited ones as bytes (fixed-width ones are not used
    by tern's protocols)."""
    out, i = {}, 0

    def get_varint():
        nonlocal i
        v, shift = 0, 0
        while True:
            v |= (b[i] & 0x7f) << shift
            i += 1
            if not b[i - 1] & 0x80:
                return v
            shift += 7
    while i < len(b):
        key = get_varint()
        if key & 7 == 0:
            v = get_varint()
        elif key & 7 == 2:
            n = get_varint()
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % (key & 7))
        out.setdefault(key >> 3, []).append(v)
    return out


# JobStatus's fields read as text below (decode() is as strict as Go's
# and Python's protobuf runtimes: it refuses what is not UTF-8)
JOB_VM, JOB_ERROR, JOB_VERIFIED, JOB_NO_POSTCOPY = 2, 22, 32, 45


def job_texts(path, vm, numbers):
    """migd's List on the unix socket path: for each job of vm (newest
    first), the text of each JobStatus field in numbers.  Those fields
    are read as text in every job listed, as a strict decoder would."""
    status, message, result = call(path, "tern.migd.Migd/List", b"")
    assert status == 0, message
    jobs = [fields(j) for j in fields(result).get(1, [])]       # JobList.jobs
    texts = [[j.get(n, [b""])[0].decode() for n in numbers] for j in jobs]
    return [t for j, t in zip(jobs, texts) if j[JOB_VM][0] == vm.encode()]


def reply(rid, result=b"", status=0, message=""):
    """A framed Reply (Frame.reply = 3): id, status, message, result."""
    r = field(1, 0, varint(rid))
    if status:
        r += field(2, 0, varint(status)) + ld(3, message.encode())
    r += ld(4, result)
    f = ld(3, r)
    return struct.pack("<I", len(f)) + f


# ---- the migration stream's main connection --------------------------------

def send_msg(s, m):
    """A StreamMsg (encoded) with its 4-byte length."""
    s.sendall(struct.pack("<I", len(m)) + m)


def as_source(addr, token, mig_id=b"\x01" * 16):
    """A main connection to addr (tcp:HOST:PORT) with the job's token
    (hex), its hello answered with 0; the socket."""
    host, port = addr.split(":")[1:]
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"TERNMIG1" + struct.pack("<IIII", 3, 1, 0, 0) + mig_id +
              bytes.fromhex(token) + b"\0" * 16)
    status = s.recv(4)
    assert status == b"\0\0\0\0", status
    return s


def as_destination():
    """Listen on 127.0.0.1, print the port (a line the test reads), take
    the source's main connection, answer its hello with 0 and read its
    layout; the socket."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(8)
    lsn.settimeout(20)
    print(lsn.getsockname()[1], flush=True)
    c, _ = lsn.accept()
    c.settimeout(20)
    hello = b""
    while len(hello) < 72:
        chunk = c.recv(72 - len(hello))
        assert chunk, "the source closed in its hello"
        hello += chunk
    c.sendall(struct.pack("<I", 0))
    recv_frame(c, b"")
    return c
