"""The local channel between per-user session helpers and the agent service.

A Unix socket at `<state>/ipc/session.sock` carrying newline-delimited JSON, one message per line, each with a
`msg_id`. The service answers `{"ack": msg_id}` only after it has durably spooled what the message asked for, so the
helper keeps every message until it is acknowledged. Who sent a message is what the kernel says about the peer
(SO_PEERCRED), never what the message claims. Only matches cross this channel, never raw keystrokes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import select
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("wardwatch.ipc")

SOCKET_NAME = "session.sock"
MAX_LINE_BYTES = 64 * 1024  # a match with its context is well under 4 KiB; anything bigger is not from our helper
MESSAGE_TYPES = frozenset({"match", "coverage", "notice", "hello"})
OUTBOX_LIMIT = 1_000
PROTECTED_SEVERITY = 4  # alerts at 4-5 (high, imminent risk) are never dropped for lack of room
RESEND_AFTER_S = 30.0   # an unacknowledged message is sent again (the service may have failed to spool it)
MAX_CONNECTIONS = 64    # one helper per logged-in user; more is someone trying to exhaust the service's descriptors


def socket_path_for(state_dir: Path) -> Path:
    return Path(state_dir) / "ipc" / SOCKET_NAME


# ---------------------------------------------------------------------------------------------- service side


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int
    username: str


def username_for(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def peer_credentials(sock: socket.socket) -> PeerCred:
    """The kernel's account of who is at the other end of a connected Unix socket."""
    if sys.platform.startswith("linux"):
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            struct.calcsize("3i")))
        return PeerCred(pid=pid, uid=uid, gid=gid, username=username_for(uid))
    if sys.platform == "darwin":
        # struct xucred { u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]; } via LOCAL_PEERCRED
        sol_local, local_peercred, local_peerpid = 0, 0x001, 0x002
        raw = sock.getsockopt(sol_local, local_peercred, struct.calcsize("IIh2x16I"))
        _version, uid, ngroups, *groups = struct.unpack("IIh2x16I", raw)
        pid = struct.unpack("i", sock.getsockopt(sol_local, local_peerpid, 4))[0]
        return PeerCred(pid=pid, uid=uid, gid=groups[0] if ngroups else -1, username=username_for(uid))
    raise OSError(f"peer credentials are not supported on {sys.platform}")


def parse_message(line: bytes) -> dict[str, Any]:
    """One line from a helper, checked for shape. Raises ValueError with a reason that holds no message content."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    msg_id = message.get("msg_id")
    if not isinstance(msg_id, str | int) or isinstance(msg_id, bool) or not str(msg_id) or len(str(msg_id)) > 64:
        raise ValueError("missing or bad msg_id")
    if message.get("type") not in MESSAGE_TYPES:
        raise ValueError("unknown message type")
    if message["type"] == "match" and not isinstance(message.get("match"), dict):
        raise ValueError("match message without a match object")
    return message


class MatchServer:
    """Accepts session helpers on a Unix socket; calls `on_message(message, peer)` and acks once it returns.

    asyncio is imported where it is used: the session helper imports this module too, and asyncio (with ssl) would
    add some 8 MB to every logged-in user's helper for a server it never runs."""

    def __init__(self, socket_path: Path, on_message: Callable[[dict, PeerCred], Awaitable[None]],
                 max_connections: int = MAX_CONNECTIONS, on_hang_up: Callable[[PeerCred], None] | None = None):
        self.socket_path = Path(socket_path)
        self.on_message = on_message
        self.on_hang_up = on_hang_up  # a helper's connection ended (it stopped, or it died)
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        import asyncio

        self.socket_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        # A socket left by a service that died would make bind fail; only a socket may be removed, never a file.
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path),
                                                       limit=MAX_LINE_BYTES)
        # Any logged-in user's helper may connect: who they are comes from SO_PEERCRED, not from this mode.
        os.chmod(self.socket_path, 0o666)

    async def close(self) -> None:
        import asyncio

        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        task = asyncio.current_task()
        if len(self._connections) >= self.max_connections:
            log.warning("refused a session channel connection: %d already open", len(self._connections))
            writer.close()
            return
        if task is not None:
            self._connections.add(task)
        peer = None
        try:
            try:
                peer = await self._identify(reader, writer)
            except OSError as exc:
                log.warning("refused a session helper whose identity the kernel could not give: %s", exc)
                return
            await self._serve_peer(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            if peer is not None and self.on_hang_up is not None:
                self.on_hang_up(peer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _identify(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> PeerCred:
        """Who the peer is, from the OS; OSError refuses the connection."""
        return peer_credentials(writer.get_extra_info("socket"))

    async def _serve_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: PeerCred) -> None:
        import asyncio

        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                log.warning("session helper pid %s sent an oversized line; closing its connection", peer.pid)
                return
            except asyncio.IncompleteReadError:
                return
            try:
                message = parse_message(line)
            except ValueError as exc:
                log.warning("ignored a message from session helper pid %s: %s", peer.pid, exc)
                continue
            try:
                await self.on_message(message, peer)
            except Exception as exc:  # not acked: the helper keeps it and sends it again later
                log.error("could not take a %s message from pid %s: %s", message["type"], peer.pid,
                          type(exc).__name__)
                continue
            writer.write(json.dumps({"ack": message["msg_id"]}).encode() + b"\n")
            await writer.drain()


# ---------------------------------------------------------------------------------------------- helper side


def message_severity(message: dict) -> int:
    """How much a message matters when memory is short: a match's own severity; notices and gaps rank as medium."""
    if message.get("type") == "match":
        try:
            return int(message["match"].get("severity", 1))
        except (TypeError, ValueError):
            return 1
    return 3


@dataclass
class _Pending:
    message: dict
    severity: int
    sent_at: float | None = None


@dataclass
class Outbox:
    """Messages waiting for an ack, bounded: when full the lowest-severity, oldest message goes, never one at 4-5."""

    limit: int = OUTBOX_LIMIT
    dropped: int = 0
    _items: dict[str, _Pending] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, message: dict) -> bool:
        """Keep `message`; False if it was dropped for lack of room."""
        severity = message_severity(message)
        if len(self._items) >= self.limit:
            victim = min(self._items, key=lambda k: self._items[k].severity)  # dicts keep order: oldest first
            victim_severity = self._items[victim].severity
            if severity >= PROTECTED_SEVERITY and victim_severity >= PROTECTED_SEVERITY:
                pass  # nothing may go: a high-severity alert is kept even beyond the bound
            elif victim_severity <= severity:
                del self._items[victim]
                self.dropped += 1
            else:
                self.dropped += 1
                return False
        self._items[str(message["msg_id"])] = _Pending(message, severity)
        return True

    def ack(self, msg_id: Any) -> bool:
        return self._items.pop(str(msg_id), None) is not None

    def due(self, now: float, resend_after: float = RESEND_AFTER_S) -> list[dict]:
        """Messages to send now: never sent on this connection, or sent long ago without an ack. Marks them sent."""
        out = []
        for item in self._items.values():
            if item.sent_at is None or now - item.sent_at >= resend_after:
                item.sent_at = now
                out.append(item.message)
        return out

    def unsend_all(self) -> None:
        """The connection was lost: everything not acknowledged goes again on the next one."""
        for item in self._items.values():
            item.sent_at = None

    def severities(self) -> list[int]:
        return [item.severity for item in self._items.values()]


class UntrustedSocket(Exception):
    """The socket is not the service's: someone else could be listening to pupils' matches."""


def check_socket_owner(socket_path: Path, state_dir: Path) -> None:
    """Trust the socket only if it, and the directory holding it, belong to whoever owns the state directory."""
    owner = os.stat(state_dir).st_uid
    ipc_dir = os.stat(socket_path.parent)
    sock = os.lstat(socket_path)
    if not stat.S_ISSOCK(sock.st_mode):
        raise UntrustedSocket(f"{socket_path} is not a socket")
    if sock.st_uid != owner:
        raise UntrustedSocket(f"{socket_path} belongs to uid {sock.st_uid}, the state directory to uid {owner}")
    if ipc_dir.st_uid != owner or ipc_dir.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedSocket(f"{socket_path.parent} could be replaced by another user")


class UntrustedFile(Exception):
    """A file the helper reads from the service's state directory could have been written by someone else."""


def read_service_file(path: Path, state_dir: Path) -> bytes:
    """A file the service wrote (the keyword bundle it verified), read only if it and its directory belong to the
    state directory's owner and nobody else can write either: then only the service can have put it there, and the
    helper need not repeat the service's signature check (nor load a crypto library to do it).

    On Windows, owners and mode bits are not what protects the folder: the installer's ACL on it (SYSTEM and
    Administrators write, Users read) is, and it is the same guarantee agent.json's bundle key always relied on."""
    if sys.platform == "win32":
        return path.read_bytes()
    owner = os.stat(state_dir).st_uid
    folder = os.stat(path.parent)
    if folder.st_uid != owner or folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedFile(f"{path.parent} could be written by a user other than the service's")
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())  # the file actually opened, not whatever the name points to a moment later
        if st.st_uid != owner:
            raise UntrustedFile(f"{path} belongs to uid {st.st_uid}, the state directory to uid {owner}")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UntrustedFile(f"{path} can be written by other users")
        return f.read()


class MatchClient:
    """The helper's end: a background thread that delivers messages, keeps them while the service is away and
    reconnects with backoff. `send` never blocks the caller (it runs on the keystroke worker)."""

    def __init__(self, socket_path: Path, state_dir: Path, hello: dict | None = None,
                 limit: int = OUTBOX_LIMIT, max_backoff: float = 30.0):
        self.socket_path = Path(socket_path)
        self.state_dir = Path(state_dir)
        self.hello = dict(hello or {})
        self.max_backoff = max_backoff
        self.connected = threading.Event()
        self._outbox = Outbox(limit=limit)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._prefix = os.urandom(4).hex()  # not `secrets`: it loads OpenSSL (~3 MB) into the helper
        self._stop = threading.Event()
        # A socket pair rather than a pipe: Windows can select() on sockets only.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="wardwatch-ipc", daemon=True)
        self._last_problem = ""

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        self._thread.start()

    def send(self, message: dict) -> str:
        """Queue `message` (a `msg_id` is added); returns the id."""
        message = dict(message)
        message["msg_id"] = f"{self._prefix}-{next(self._ids)}"
        with self._lock:
            kept = self._outbox.add(message)
        if not kept:
            log.warning("session channel backlog full: dropped a low-severity message")
        self._wake()
        return message["msg_id"]

    def pending(self) -> int:
        with self._lock:
            return len(self._outbox)

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._outbox.dropped

    def wait_delivered(self, timeout: float) -> bool:
        """True once every queued message has been acknowledged (polled; used at shutdown and by tests)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Give the service `timeout` seconds to take what is queued, then stop."""
        if self._thread.is_alive():
            self.wait_delivered(timeout)
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._wake_r.close()
        self._wake_w.close()

    # ------------------------------------------------------------------ thread

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_r.recv(4096)

    def _problem(self, text: str) -> None:
        if text != self._last_problem:  # a service that is away for an hour is reported once, not every retry
            log.warning("session channel: %s", text)
            self._last_problem = text

    def _run(self) -> None:
        delay = 0.25
        while not self._stop.is_set():
            try:
                sock = self._connect()
            except FileNotFoundError:
                self._problem("the agent service is not running; keeping matches in memory")
            except UntrustedSocket as exc:
                self._problem(f"refusing to use the socket: {exc}")
            except OSError as exc:
                self._problem(f"cannot reach the agent service ({exc.strerror or exc}); keeping matches in memory")
            else:
                if self._last_problem:
                    log.info("session channel: connected to the agent service")
                self._last_problem = ""
                delay = 0.25
                self.connected.set()
                try:
                    self._converse(sock)
                finally:
                    self.connected.clear()
                    sock.close()
                    with self._lock:
                        self._outbox.unsend_all()
                if self._stop.is_set():
                    return
                self._problem("the agent service went away; keeping matches in memory")
            self._sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def _connect(self) -> socket.socket:
        """A connection to the service. FileNotFoundError: no service; UntrustedSocket: not the service's."""
        check_socket_owner(self.socket_path, self.state_dir)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        return sock

    def _sleep(self, seconds: float) -> None:
        select.select([self._wake_r], [], [], seconds)
        self._drain_wake()

    def _converse(self, sock: socket.socket) -> None:
        buffer = b""
        try:
            if self.hello:
                sock.sendall(json.dumps({**self.hello, "type": "hello", "msg_id": "hello"}).encode() + b"\n")
            while not self._stop.is_set():
                with self._lock:
                    due = self._outbox.due(time.monotonic())
                for message in due:
                    sock.sendall(json.dumps(message, ensure_ascii=False).encode() + b"\n")
                with self._lock:
                    waiting = len(self._outbox)
                # With something unacknowledged, wake up to resend it; otherwise sleep until there is work.
                timeout = RESEND_AFTER_S if waiting else None
                readable, _, _ = select.select([sock, self._wake_r], [], [], timeout)
                if self._wake_r in readable:
                    self._drain_wake()
                if sock in readable:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    self._take_acks(lines)
        except OSError:
            return

    def _take_acks(self, lines: list[bytes]) -> None:
        for line in lines:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if isinstance(reply, dict) and "ack" in reply:
                with self._lock:
                    self._outbox.ack(reply["ack"])


if sys.platform == "win32":
    # No Unix sockets with peer credentials there: loopback TCP with a per-boot secret (agent/ipc_windows.py).
    from agent import ipc_windows

    MatchClient, MatchServer = ipc_windows.WindowsMatchClient, ipc_windows.WindowsMatchServer  # type: ignore[misc]
