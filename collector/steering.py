"""Steer a port's new connections to the worker that just took a dead worker's place (Linux).

The workers of `serve --workers N` share the agents' port through SO_REUSEPORT, and the kernel hashes each new
connection to one of the port's listening sockets. When a worker dies, its agents reconnect, and hashing spreads
them over the survivors as much as over the worker that replaced it: with two workers the survivor ends up with
three quarters of the fleet until connections are recycled 30 minutes later, and its uploads wait (measured with
bench/load.py: p99 1.3 s on a slow phase of the reference machine, against 0.6 s balanced).

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
                if (sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6)
                        and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                        and sock.getsockname()[1] == port):
                    found.append(sock)
                else:
                    sock.close()
        yield found
    finally:
        for sock in found:
            sock.close()


def _proc_net_address(family: int, address: str, port: int) -> str:
    """How /proc/net/tcp{,6} writes a local address: each 32-bit word in host (little-endian) order, then the port."""
    raw = socket.inet_pton(family, address)
    words = "".join(raw[i:i + 4][::-1].hex() for i in range(0, len(raw), 4))
    return f"{words}:{port:04x}".upper()


def listeners_like(sock: socket.socket) -> int:
    """Listening TCP sockets in this network namespace, every process's, on `sock`'s address and port: the size
    of its reuseport group (all our workers run as one user, the other condition of sharing a group)."""
    address, port = sock.getsockname()[:2]
    wanted = _proc_net_address(sock.family, address, port)
    table = "/proc/net/tcp6" if sock.family == socket.AF_INET6 else "/proc/net/tcp"
    count = 0
    with open(table, encoding="ascii") as f:
        next(f, None)
        for line in f:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                count += 1
    return count


def steer_to_self(port: int) -> bool:
    """Send the port's new connections to this process's listeners (the newest of the group). False, and nothing
    changed, if that cannot be done here: not Linux, no listener of ours found, or the kernel refused."""
    if not supported():
        return False
    with own_listeners(port) as mine:
        if not mine:
            return False
        try:
            group = listeners_like(mine[0])
            if group < len(mine):
                return False
            attach(mine[0], pick_program(group - len(mine), len(mine)))
        except OSError as exc:
            log.warning("cannot steer new connections to the replacement worker: %s", exc.strerror)
            return False
    return True


def stop_steering(port: int) -> None:
    """Hash new connections over every worker again."""
    if not supported():
        return
    with own_listeners(port) as mine:
        for sock in mine[:1]:
            with contextlib.suppress(OSError):  # already detached, or the kernel predates SO_DETACH (5.8)
                detach(sock)
