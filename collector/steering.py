"""Steer a port's new connections to the worker that just took a dead worker's place (Linux).

The workers of `serve --workers N` share the agents' port through SO_REUSEPORT, and the kernel hashes each new
connection to one of the port's listening sockets. When a worker dies, its agents reconnect, and hashing spreads
them over the survivors as much as over the worker that replaced it: with two workers the survivor kept three
quarters of the fleet or more until connections were recycled 30 minutes later, and its uploads waited
(bench/load.py at 10,000 agents: 8,766 / 1,174 agents per worker after a kill, 5,088 / 4,859 with steering).

The kernel's answer is a classic BPF program attached to the port's reuseport group (SO_ATTACH_REUSEPORT_CBPF):
it returns the index of the socket to use, and an index past the end falls back to hashing. A group's sockets
are indexed in the order they began to listen, and a closed socket's place is taken by the last one, so the
sockets a replacement worker has just opened are the last of the group. The replacement attaches a program that
picks one of them at random for a while, and detaches it afterwards. If the group changes meanwhile (another
worker dies or starts), the chosen index can only point past the end, which is ordinary hashing, or at a
socket of the group, which is some worker that serves the agents: no connection is refused either way.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
import stat
import struct
import sys
from collections.abc import Iterator

log = logging.getLogger("wardwatch.steering")

SO_ATTACH_REUSEPORT_CBPF = 51
SO_DETACH_REUSEPORT_BPF = 68

# Classic BPF opcodes and the ancillary load of a random number (linux/filter.h).
_BPF_LD_W_ABS = 0x20
_BPF_ALU_MOD_K = 0x94
_BPF_ALU_ADD_K = 0x04
_BPF_RET_A = 0x16
_SKF_AD_RANDOM = (-0x1000 + 56) & 0xFFFFFFFF


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def supported() -> bool:
    return sys.platform.startswith("linux")


def pick_program(first: int, count: int) -> list[tuple[int, int, int, int]]:
    """The program: a random index in [first, first + count). Instructions as (code, jt, jf, k)."""
    if first < 0 or count < 1:
        raise ValueError("the sockets to pick from must be a non-empty range of the group")
    return [(_BPF_LD_W_ABS, 0, 0, _SKF_AD_RANDOM), (_BPF_ALU_MOD_K, 0, 0, count), (_BPF_ALU_ADD_K, 0, 0, first),
            (_BPF_RET_A, 0, 0, 0)]


def attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """Attach `program` to the reuseport group `sock` listens in (it replaces any program already attached)."""
    instructions = (_SockFilter * len(program))(*(_SockFilter(*i) for i in program))
    fprog = _SockFprog(len(program), instructions)
    # setsockopt copies the program before it returns, while `instructions` is still alive.
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF,
                    ctypes.string_at(ctypes.addressof(fprog), ctypes.sizeof(fprog)))


def detach(sock: socket.socket) -> None:
    """Back to hashing for the whole group."""
    sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)


@contextlib.contextmanager
def own_listeners(port: int) -> Iterator[list[socket.socket]]:
    """This process's listening TCP sockets on `port` (gRPC opened them; we only borrow duplicates of its file
    descriptors, closed on exit, which leaves gRPC's own open), oldest descriptor first."""
    found: list[socket.socket] = []
    seen: set[int] = set()  # gRPC holds some sockets under two descriptors
    try:
        for name in sorted(os.listdir("/proc/self/fd"), key=int):
            fd = int(name)
            with contextlib.suppress(OSError):
                info = os.fstat(fd)
                if not stat.S_ISSOCK(info.st_mode) or info.st_ino in seen:
                    continue
                seen.add(info.st_ino)
                sock = socket.socket(fileno=os.dup(fd))
                try:
                    listening = (sock.type == socket.SOCK_STREAM
                                 and sock.family in (socket.AF_INET, socket.AF_INET6)
                                 and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                                 and sock.getsockname()[1] == port)
                except OSError:
                    sock.close()  # our duplicate, not gRPC's descriptor
                    raise
                if listening:
                    found.append(sock)
                else:
                    sock.close()
        yield found
    finally:
        for sock in found:
            sock.close()


# sock_diag (linux/sock_diag.h, linux/inet_diag.h): what `ss` asks the kernel. Reading /proc/net/tcp instead meant
# formatting and parsing a line for every connection on the host, 240 ms with 10,000 agents connected.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_LISTEN = 10
_NLMSG_HEADER = struct.Struct("=IHHII")
_DIAG_REQUEST = struct.Struct("=BBBBI")  # family, protocol, extensions, pad, states; then an empty socket id
_DIAG_MESSAGE = struct.Struct("=BBBB2s2s16s16sI8sIIIII")  # ... sport, dport, src, dst, if, cookie, ..., uid, inode


def listeners_like(sock: socket.socket) -> int:
    """Listening TCP sockets in this network namespace, every process's, on `sock`'s address and port: the size
    of its reuseport group (all our workers run as one user, the other condition of sharing a group). Only the
    kernel's table of listeners is read, however many connections the host holds."""
    address, port = sock.getsockname()[:2]
    wanted = (socket.inet_pton(sock.family, address).ljust(16, b"\0"), port.to_bytes(2, "big"))
    request = _DIAG_REQUEST.pack(sock.family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN) + bytes(48)
    header = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY,
                                _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
    count = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(5)
        diag.sendto(header + request, (0, 0))
        while True:
            data = diag.recv(65536)
            offset = 0
            while offset + _NLMSG_HEADER.size <= len(data):
                length, kind = _NLMSG_HEADER.unpack_from(data, offset)[:2]
                if length < _NLMSG_HEADER.size:
                    raise OSError("malformed sock_diag answer")
                if kind == _NLMSG_DONE:
                    return count
                if kind == _NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", data, offset + _NLMSG_HEADER.size)[0]
                    raise OSError(errno, os.strerror(errno))
                fields = _DIAG_MESSAGE.unpack_from(data, offset + _NLMSG_HEADER.size)
                if (fields[6], fields[4]) == wanted:  # (source address, source port)
                    count += 1
                offset += (length + 3) & ~3


def by_group(socks: list[socket.socket]) -> list[list[socket.socket]]:
    """`socks` split by the reuseport group each listens in: one group per family and address (a collector that
    listens on a name with two addresses, say, is in two groups on one port)."""
    groups: dict[tuple, list[socket.socket]] = {}
    for sock in socks:
        groups.setdefault((sock.family, *sock.getsockname()[:2]), []).append(sock)
    return list(groups.values())


def steer(mine: list[socket.socket]) -> bool:
    """Send new connections to `mine`, this process's newest listeners, in every group they listen in. False if
    none could be steered: no listeners, or the kernel refused."""
    steered = False
    for group in by_group(mine):
        try:
            size = listeners_like(group[0])
            if size < len(group):
                continue
            attach(group[0], pick_program(size - len(group), len(group)))
            steered = True
        except OSError as exc:
            log.warning("cannot steer new connections to the replacement worker: %s", exc.strerror)
    return steered


def unsteer(mine: list[socket.socket]) -> None:
    """Hash new connections over every worker again, in every group `mine` listen in."""
    for group in by_group(mine):
        with contextlib.suppress(OSError):  # already detached, or the kernel predates SO_DETACH (5.8)
            detach(group[0])


def steer_to_self(port: int) -> bool:
    """Send the port's new connections to this process's listeners (the newest of their groups). False, and
    nothing changed, if that cannot be done here: not Linux, no listener of ours found, or the kernel refused."""
    if not supported():
        return False
    with own_listeners(port) as mine:
        return steer(mine)


def stop_steering(port: int) -> None:
    """Hash new connections over every worker again."""
    if not supported():
        return
    with own_listeners(port) as mine:
        unsteer(mine)
