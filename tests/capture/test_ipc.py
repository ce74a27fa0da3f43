"""The local channel on a real Unix socket: acks, peer credentials, the service going away, untrusted sockets."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from agent.ipc import MatchClient, Outbox, UntrustedSocket, check_socket_owner
from tests.capture.conftest import ServiceThread, wait_for


@pytest.fixture
def state_dir(tmp_path) -> Path:
    state = tmp_path / "state"
    (state / "ipc").mkdir(parents=True, mode=0o755)
    os.chmod(state / "ipc", 0o755)
    return state


def match_message(severity: int, n: int = 0) -> dict:
    return {"type": "match", "match": {"category": "self-harm", "severity": severity, "rule": f"r{n}"},
            "window_title": "Notes", "application": "xterm"}


def test_matches_are_acked_and_the_sender_is_who_the_kernel_says(state_dir):
    sock = state_dir / "ipc" / "session.sock"
    service = ServiceThread(sock).start()
    client = MatchClient(sock, state_dir, hello={"pid": os.getpid(), "session_type": "x11"})
    try:
        assert oct(os.stat(sock).st_mode & 0o777) == "0o666"
        client.start()
        client.send(match_message(4))
        assert client.wait_delivered(10)
        wait_for(lambda: service.of_type("hello"))
        (match, peer), = [(m, p) for m, p in service.received if m["type"] == "match"]
        assert match["match"]["severity"] == 4 and match["window_title"] == "Notes"
        assert peer.uid == os.getuid() and peer.pid == os.getpid()
        import pwd
        assert peer.username == pwd.getpwuid(os.getuid()).pw_name
    finally:
        client.close()
        service.stop()
    assert not sock.exists()


def test_messages_wait_in_memory_while_the_service_is_away(state_dir):
    sock = state_dir / "ipc" / "session.sock"
    client = MatchClient(sock, state_dir, max_backoff=0.2)
    client.start()
    try:
        for n in range(5):
            client.send(match_message(2, n))
        assert client.pending() == 5
        service = ServiceThread(sock).start()
        try:
            assert client.wait_delivered(10)
            assert [m["match"]["rule"] for m in service.of_type("match")] == [f"r{n}" for n in range(5)]
            # The service restarts: the client reconnects and later messages still arrive.
            service.stop()
            client.send(match_message(3, 99))
            service = ServiceThread(sock).start()
            assert client.wait_delivered(10)
            assert [m["match"]["rule"] for m in service.of_type("match")] == ["r99"]
        finally:
            service.stop()
    finally:
        client.close(timeout=0)


def test_a_message_the_service_could_not_take_is_sent_again_on_the_next_connection(state_dir):
    sock = state_dir / "ipc" / "session.sock"
    service = ServiceThread(sock, fail_first=1).start()
    client = MatchClient(sock, state_dir, max_backoff=0.2)
    client.start()
    try:
        client.send(match_message(5))
        wait_for(lambda: service.fail_first == 0)
        assert client.pending() == 1  # not acknowledged, so still held
        service.stop()
        service = ServiceThread(sock).start()
        assert client.wait_delivered(10)
        assert len(service.of_type("match")) == 1
    finally:
        client.close(timeout=0)
        service.stop()


def test_the_server_survives_garbage_and_oversized_lines(state_dir):
    sock = state_dir / "ipc" / "session.sock"
    service = ServiceThread(sock).start()
    try:
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(sock))
            raw.sendall(b"not json\n[1,2]\n{\"type\": \"match\"}\n{\"type\": \"evil\", \"msg_id\": 1}\n")
            raw.sendall(json.dumps({"type": "coverage", "msg_id": "c1", "gap": "g", "detail": "d"}).encode() + b"\n")
            assert json.loads(raw.makefile().readline()) == {"ack": "c1"}
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(sock))
            raw.sendall(b"x" * (200 * 1024) + b"\n")
            raw.settimeout(10)
            assert raw.recv(10) == b""  # closed on us
        with socket.socket(socket.AF_UNIX) as raw:  # and it still serves others
            raw.connect(str(sock))
            raw.sendall(json.dumps({"type": "notice", "msg_id": 7, "text_version": "v1"}).encode() + b"\n")
            assert json.loads(raw.makefile().readline()) == {"ack": 7}
        assert [m["type"] for m, _ in service.received] == ["coverage", "notice"]
    finally:
        service.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the socket to another user")
def test_a_socket_owned_by_someone_else_is_not_trusted(state_dir):
    sock = state_dir / "ipc" / "session.sock"
    service = ServiceThread(sock).start()
    os.chown(sock, 65534, 65534)  # as if another user had put their own listener there
    client = MatchClient(sock, state_dir, max_backoff=0.1)
    client.start()
    try:
        with pytest.raises(UntrustedSocket):
            check_socket_owner(sock, state_dir)
        client.send(match_message(5))
        assert not client.wait_delivered(1.0)
        assert service.received == []
        os.chown(sock, 0, 0)
        assert client.wait_delivered(10)
    finally:
        client.close(timeout=0)
        service.stop()


def test_a_world_writable_ipc_directory_is_not_trusted(state_dir):
    sock = state_dir / "ipc" / "session.sock"
    service = ServiceThread(sock).start()
    try:
        check_socket_owner(sock, state_dir)
        os.chmod(state_dir / "ipc", 0o777)
        with pytest.raises(UntrustedSocket):
            check_socket_owner(sock, state_dir)
    finally:
        service.stop()


def test_outbox_drops_lowest_severity_first_and_never_high_severity():
    box = Outbox(limit=3)
    for n, severity in enumerate([2, 1, 4]):
        assert box.add({**match_message(severity, n), "msg_id": f"m{n}"})
    assert box.add({**match_message(3, 3), "msg_id": "m3"})  # room made by dropping the severity-1 message
    assert sorted(box.severities()) == [2, 3, 4] and box.dropped == 1
    assert not box.add({**match_message(1, 4), "msg_id": "m4"})  # lower than everything held: it is the one dropped
    assert box.add({**match_message(5, 5), "msg_id": "m5"})  # drops the 2
    assert box.add({**match_message(5, 6), "msg_id": "m6"})  # drops the 3
    assert sorted(box.severities()) == [4, 5, 5]
    assert box.add({**match_message(4, 7), "msg_id": "m7"})  # all protected: kept beyond the bound
    assert sorted(box.severities()) == [4, 4, 5, 5]
    assert not box.add({**match_message(3, 8), "msg_id": "m8"})
    assert box.dropped == 5


def test_outbox_resends_only_after_a_reconnect_or_a_long_silence():
    box = Outbox()
    box.add({**match_message(2), "msg_id": "a"})
    assert [m["msg_id"] for m in box.due(now=100.0)] == ["a"]
    assert box.due(now=101.0) == []
    assert [m["msg_id"] for m in box.due(now=131.0)] == ["a"]
    box.unsend_all()
    assert [m["msg_id"] for m in box.due(now=132.0)] == ["a"]
    assert box.ack("a") and len(box) == 0


def test_connections_beyond_the_limit_are_refused_and_the_others_keep_working(state_dir):
    sock = state_dir / "ipc" / "session.sock"
    service = ServiceThread(sock, max_connections=3).start()
    held = []
    try:
        for n in range(3):
            raw = socket.socket(socket.AF_UNIX)
            raw.connect(str(sock))
            raw.sendall(json.dumps({"type": "notice", "msg_id": n, "text_version": "v"}).encode() + b"\n")
            assert json.loads(raw.makefile().readline()) == {"ack": n}  # connected and served
            held.append(raw)
        with socket.socket(socket.AF_UNIX) as extra:
            extra.connect(str(sock))
            extra.settimeout(10)
            assert extra.recv(10) == b""  # closed at once
        held.pop().close()
        wait_for(lambda: len(service.server._connections) < 3, 10, "the closed connection to be noticed")
        with socket.socket(socket.AF_UNIX) as again:
            again.connect(str(sock))
            again.sendall(json.dumps({"type": "notice", "msg_id": "late", "text_version": "v"}).encode() + b"\n")
            assert json.loads(again.makefile().readline()) == {"ack": "late"}
    finally:
        for raw in held:
            raw.close()
        service.stop()
