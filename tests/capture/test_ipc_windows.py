"""The Windows session channel, run here over real loopback TCP with only the three Windows calls replaced.

Faked: GetExtendedTcpTable (answered from psutil's view of the same real connections), the token lookup (psutil's
process owner, mapped to SIDs) and the ACL call (recorded). Real: the asyncio server, the helper's thread, the
endpoint file, the secret check, reconnection, and the parsing of the table bytes GetExtendedTcpTable returns.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from agent import ipc_windows
from agent.ipc import PeerCred
from agent.ipc_windows import Endpoint, WindowsMatchClient, WindowsMatchServer, owner_pid_from_table
from tests.capture.conftest import wait_for

PUPIL_SID = "S-1-5-21-1004336348-1177238915-682003330-1105"


class FakeWindows:
    """What Windows would answer about processes and connections, read from the real ones through psutil."""

    def __init__(self) -> None:
        self.accounts: dict[int, tuple[str, str]] = {}  # pid -> (SID, account) where a test says otherwise
        self.restricted: list[tuple[Path, str]] = []  # (file, its content when its ACL was set)

    def tcp_owner_pid(self, local_port: int, remote_port: int) -> int | None:
        for conn in psutil.net_connections("tcp4"):
            if (conn.status == psutil.CONN_ESTABLISHED and conn.raddr and conn.laddr.port == local_port
                    and conn.raddr.port == remote_port):
                return conn.pid
        return None

    def account_of_process(self, pid: int) -> tuple[str, str]:
        if pid in self.accounts:
            return self.accounts[pid]
        uid = psutil.Process(pid).uids().real
        return f"S-1-5-21-42-{uid}", f"SCHOOL\\{psutil.Process(pid).username()}"

    def restrict(self, path: Path) -> None:
        self.restricted.append((path, path.read_text()))


@pytest.fixture
def windows(monkeypatch) -> FakeWindows:
    fake = FakeWindows()
    monkeypatch.setattr(ipc_windows, "tcp_owner_pid", fake.tcp_owner_pid)
    monkeypatch.setattr(ipc_windows, "account_of_process", fake.account_of_process)
    monkeypatch.setattr(ipc_windows, "restrict_to_service_and_interactive_users", fake.restrict)
    return fake


def helper(socket_path: Path, **kwargs) -> WindowsMatchClient:
    """A helper that also trusts this test's own user: the test's service runs as that user, not as SYSTEM."""
    client = WindowsMatchClient(socket_path, socket_path.parent.parent, **kwargs)
    client.service_sids = frozenset({ipc_windows.LOCAL_SYSTEM_SID, FakeWindows().account_of_process(os.getpid())[0]})
    return client


@pytest.fixture
def socket_path(tmp_path) -> Path:
    return tmp_path / "state" / "ipc" / "session.sock"


class WindowsService:
    """A WindowsMatchServer in its own event loop, as the agent service runs it, recording what it is given."""

    def __init__(self, socket_path: Path) -> None:
        self.received: list[tuple[dict, PeerCred]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = WindowsMatchServer(socket_path, self.on_message)

    async def on_message(self, message: dict, peer: PeerCred) -> None:
        self.received.append((message, peer))

    def start(self) -> WindowsService:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def of_type(self, kind: str) -> list[dict]:
        return [m for m, _ in self.received if m["type"] == kind]


def match_message(severity: int, rule: str = "r0") -> dict:
    return {"type": "match", "match": {"category": "self-harm", "severity": severity, "rule": rule},
            "window_title": "Notes", "application": "notepad.exe"}


def test_matches_are_acked_and_the_sender_is_the_owner_of_the_client_port(windows, socket_path):
    service = WindowsService(socket_path).start()
    client = helper(socket_path, hello={"pid": os.getpid()})
    try:
        endpoint = Endpoint.from_json((socket_path.parent / "session.endpoint").read_text())
        assert endpoint.port == service.server.port
        # The ACL was set while the file was still empty: the secret never sat in a file open to others.
        assert [(p.name, text) for p, text in windows.restricted] == [("session.endpoint.new", "")]
        client.start()
        client.send(match_message(4))
        assert client.wait_delivered(10)
        wait_for(lambda: service.of_type("hello"))
        (match, peer), = [(m, p) for m, p in service.received if m["type"] == "match"]
        assert match["match"]["severity"] == 4
        assert peer.pid == os.getpid() and peer.username == f"SCHOOL\\{psutil.Process().username()}"
        assert "secret" not in json.dumps([m for m, _ in service.received])
    finally:
        client.close()
        service.stop()
    assert not (socket_path.parent / "session.endpoint").exists()


def test_a_connection_without_the_secret_is_closed_unread(windows, socket_path):
    service = WindowsService(socket_path).start()
    try:
        for first_line in (b'{"type": "auth", "secret": "guessed"}\n', b'{"type": "hello", "msg_id": "h"}\n',
                           b"x" * 100_000 + b"\n"):
            with socket.create_connection(("127.0.0.1", service.server.port), timeout=10) as intruder:
                try:
                    intruder.sendall(first_line + json.dumps({**match_message(5), "msg_id": "m1"}).encode() + b"\n")
                    reply = intruder.recv(1024)
                except (ConnectionResetError, BrokenPipeError):  # closed with our bytes still unread
                    reply = b""
                assert reply == b""  # closed without an ack
        assert service.received == []
    finally:
        service.stop()


def test_matches_wait_while_the_service_is_away_and_follow_its_new_port_and_secret(windows, socket_path):
    client = helper(socket_path, max_backoff=0.2)
    client.start()
    try:
        client.send(match_message(2, "r1"))
        service = WindowsService(socket_path).start()
        try:
            assert client.wait_delivered(10)
            first_secret = Endpoint.from_json((socket_path.parent / "session.endpoint").read_text()).secret
        finally:
            service.stop()
        client.send(match_message(3, "r2"))
        assert client.pending() == 1
        service = WindowsService(socket_path).start()  # a restart: new port, new secret
        try:
            assert Endpoint.from_json((socket_path.parent / "session.endpoint").read_text()).secret != first_secret
            assert client.wait_delivered(10)
            assert [m["match"]["rule"] for m in service.of_type("match")] == ["r2"]
        finally:
            service.stop()
    finally:
        client.close(timeout=0)


IMPOSTOR = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    received = 0
    while chunk := conn.recv(65536):
        received += len(chunk)
    print("received", received, flush=True)
"""


def test_a_pupil_listening_on_a_stopped_services_port_gets_nothing(windows, socket_path):
    service = WindowsService(socket_path).start()
    endpoint_text = (socket_path.parent / "session.endpoint").read_text()
    port = service.server.port
    service.stop()
    # The service died without cleaning up, and a pupil's program took its port; even that pupil's own helper
    # must not trust it, or a pupil could divert their own matches.
    (socket_path.parent / "session.endpoint").write_text(endpoint_text)
    impostor = subprocess.Popen([sys.executable, "-c", IMPOSTOR, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert impostor.stdout.readline().strip() == "listening"
        windows.accounts[impostor.pid] = (PUPIL_SID, "SCHOOL\\pupil")
        windows.accounts[os.getpid()] = (PUPIL_SID, "SCHOOL\\pupil")
        client = WindowsMatchClient(socket_path, socket_path.parent.parent, max_backoff=0.2)
        client.start()
        try:
            client.send(match_message(5))
            wait_for(lambda: "SCHOOL\\pupil" in client._last_problem, what="the impostor to be refused")
            assert client.pending() == 1 and not client.connected.is_set()
        finally:
            client.close(timeout=0)
        # The refused connection ended before the refusal was reported, so its line is there to read.
        assert impostor.stdout.readline().split() == ["received", "0"]  # not even the secret was sent
    finally:
        impostor.kill()
        impostor.wait(10)
    assert all(line.split() == ["received", "0"] for line in impostor.stdout.read().splitlines())


def test_a_service_running_as_local_system_is_trusted(windows, socket_path):
    service = WindowsService(socket_path).start()
    client = WindowsMatchClient(socket_path, socket_path.parent.parent)
    try:
        # This process plays the service; the OS says it runs as LocalSystem, which a helper trusts by default.
        windows.accounts[os.getpid()] = ("S-1-5-18", "NT AUTHORITY\\SYSTEM")
        client.start()
        client.send(match_message(3))
        assert client.wait_delivered(10)
    finally:
        client.close()
        service.stop()


@pytest.mark.parametrize("text", ["", "{}", '{"port": 0, "secret": "x"}', '{"port": 5000, "secret": ""}', "[1]"])
def test_a_malformed_endpoint_file_is_refused(text):
    with pytest.raises(OSError):
        Endpoint.from_json(text)


def _row(state: int, local: tuple[str, int], remote: tuple[str, int], pid: int) -> bytes:
    def addr(ip: str) -> int:
        return struct.unpack("<I", socket.inet_aton(ip))[0]

    def port(number: int) -> int:
        return struct.unpack("<H", struct.pack(">H", number))[0]  # network order in the low 16 bits

    return struct.pack("<6I", state, addr(local[0]), port(local[1]), addr(remote[0]), port(remote[1]), pid)


def test_tcp_table_rows_are_matched_by_both_ports_on_loopback_only():
    listen, established, time_wait = 2, 5, 11
    rows = [
        _row(listen, ("127.0.0.1", 50000), ("0.0.0.0", 0), 4),
        _row(established, ("127.0.0.1", 50000), ("127.0.0.1", 61000), 4),  # the service's end
        _row(established, ("127.0.0.1", 61000), ("127.0.0.1", 50000), 3120),  # the helper's end
        _row(established, ("10.0.0.5", 61001), ("127.0.0.1", 50000), 666),
        _row(time_wait, ("127.0.0.1", 61002), ("127.0.0.1", 50000), 777),
    ]
    table = struct.pack("<I", len(rows)) + b"".join(rows)
    assert owner_pid_from_table(table, 61000, 50000) == 3120
    assert owner_pid_from_table(table, 50000, 61000) == 4
    assert owner_pid_from_table(table, 61001, 50000) is None
    assert owner_pid_from_table(table, 61002, 50000) is None
    assert owner_pid_from_table(table[:-10], 61002, 50000) is None  # a count larger than the rows given


def test_ipc_selects_the_windows_channel_on_windows():
    """agent.ipc imported as Windows would import it (in a fresh interpreter, so this process is untouched)."""
    code = ("import sys; sys.platform = 'win32'\n"
            "import agent.ipc as ipc\n"
            "print(ipc.MatchClient.__name__, ipc.MatchServer.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.split() == ["WindowsMatchClient", "WindowsMatchServer"], done.stderr
