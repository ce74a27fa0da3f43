"""The session helper on a real X desktop, talking to a real MatchServer over the Unix socket.

The in-process test uses the recording stand-in engine, so it can prove what the engine was and was not given;
the process test runs `wardwatch-agent session` itself with the real detection engine."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from agent.capture.keyboard import KeyboardCapture
from agent.capture.privacy import PrivacyPolicy
from agent.capture.window_x11 import X11WindowWatcher
from agent.ipc import MatchClient
from agent.session import SessionHelper
from tests.capture.conftest import ServiceThread, wait_for
from tests.capture.fake_engine import FakeEngine

PORN_TITLE = "Pornhub - Free Porn Videos - Mozilla Firefox"


@pytest.fixture
def state_dir(tmp_path):
    state = tmp_path / "state"
    (state / "ipc").mkdir(parents=True)
    os.chmod(state / "ipc", 0o755)
    return state


@pytest.mark.desktop
def test_helper_sends_only_matches_and_nothing_typed_in_a_sudo_prompt(desktop, state_dir):
    service = ServiceThread(state_dir / "ipc" / "session.sock").start()
    engine = FakeEngine()
    client = MatchClient(state_dir / "ipc" / "session.sock", state_dir, hello={"pid": os.getpid()})
    helper = SessionHelper(engine, client.send, PrivacyPolicy(), "secondary")
    watcher = X11WindowWatcher(helper.on_window)
    keyboard = KeyboardCapture(helper.on_key)
    worker = threading.Thread(target=helper.run, daemon=True)
    client.start()
    worker.start()
    watcher.start()
    keyboard.start()
    try:
        notes, notes_wid = desktop.xterm("Year 9 English - Notes")
        desktop.activate(notes_wid)
        wait_for(lambda: helper.window and helper.window.window_id == notes_wid, 10, "the helper to see the xterm")
        desktop.type("honestly i want to kill mysellf")
        desktop.key("BackSpace", "BackSpace")
        desktop.type("f")
        desktop.key("Return")
        wait_for(lambda: service.of_type("match"), 15, "the typed match at the service")

        sudo, sudo_wid = desktop.xterm("[sudo] password for ayesha.khan:")
        desktop.activate(sudo_wid)
        wait_for(lambda: helper.window and helper.window.window_id == sudo_wid, 10, "the helper to see the prompt")
        desktop.type("kill myself Hunter2pw")
        desktop.key("Return")
        desktop.activate(notes_wid)
        wait_for(lambda: helper.window and helper.window.window_id == notes_wid, 10, "focus back on the notes")
        desktop.type("done")
        desktop.key("Return")
        wait_for(lambda: "".join(k for k in engine.fed if len(k) == 1).endswith("done"), 15, "keys after the prompt")

        desktop.set_title(notes_wid, PORN_TITLE)
        wait_for(lambda: any(m["match"]["category"] == "pornography" for m in service.of_type("match")), 15,
                 "the title match")
        desktop.activate(sudo_wid)
        desktop.activate(notes_wid)  # refocusing the same title is not a new alert
        wait_for(lambda: helper.window and helper.window.window_id == notes_wid, 10, "focus back again")
        assert client.wait_delivered(10)

        matches = service.of_type("match")
        assert [(m["match"]["category"], m["match"]["source"], m["window_title"]) for m in matches] == [
            ("suicide", "typed", "Year 9 English - Notes"), ("pornography", "title", PORN_TITLE)]
        assert all(m["application"] == "xterm" for m in matches)
        assert {peer.uid for _m, peer in service.received} == {os.getuid()}
        typed = "".join(k for k in engine.fed if len(k) == 1)
        assert "Hunter2pw" not in typed and typed.count("kill") == 1
        assert helper.keys_dropped >= len("kill myself Hunter2pw")
        assert "Hunter2pw" not in repr(service.received)
        assert {m["type"] for m, _ in service.received} <= {"hello", "match"}
        desktop.close(sudo)
        desktop.close(notes)
    finally:
        keyboard.stop()
        watcher.stop()
        helper.stop()
        worker.join(10)
        client.close(timeout=0)
        service.stop()


def agent_command() -> list[str]:
    return [str(Path(sys.executable).with_name("wardwatch-agent"))]


@pytest.mark.desktop
def test_the_session_command_with_the_real_engine(desktop, state_dir, tmp_path):
    from agent.detect import Engine

    engine = Engine.from_signatures(profile="secondary")
    expected_title = sorted({m.category for m in engine.scan(PORN_TITLE, source="title")})  # one per category
    service = ServiceThread(state_dir / "ipc" / "session.sock").start()
    notes, notes_wid = desktop.xterm("Year 9 English - Notes")
    desktop.activate(notes_wid)
    log_path = tmp_path / "session.log"
    with open(log_path, "wb") as log_file:
        helper = subprocess.Popen([*agent_command(), "--state", str(state_dir), "session"], env=desktop.env,
                                  stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"capturing: X11WindowWatcher, KeyboardCapture" in log_path.read_bytes(), 60,
                 "the helper to start capturing")
        # The notice is on screen and the pupil's window still has the keyboard.
        notices = wait_for(lambda: service.of_type("notice"), 10, "the notice message")
        # The service, not the helper, puts the notice's version on the record (the helper loads no hashing code).
        assert notices[0]["shown_on_screen"] is True and "text_version" not in notices[0]
        assert desktop.active() == notes_wid
        hello = wait_for(lambda: service.of_type("hello"), 10, "hello")[0]
        assert hello["pid"] == helper.pid and hello["session_type"] == "x11"

        desktop.type("the homework is killing me and the essex trip was fun")
        desktop.key("Return")
        desktop.type("honestly i want to kill mysellf")
        desktop.key("BackSpace", "BackSpace")
        desktop.type("f")
        desktop.key("Return")
        wait_for(lambda: service.of_type("match"), 20, "the typed match")

        sudo, sudo_wid = desktop.xterm("[sudo] password for ayesha.khan:")
        desktop.activate(sudo_wid)
        desktop.type("i want to kill myself")
        desktop.key("Return")
        desktop.activate(notes_wid)
        desktop.set_title(notes_wid, PORN_TITLE)
        if expected_title:
            wait_for(lambda: any(m["match"]["source"] == "title" for m in service.of_type("match")), 20,
                     "the title match")
        desktop.activate(sudo_wid)
        desktop.activate(notes_wid)
        helper.send_signal(signal.SIGTERM)
        assert helper.wait(20) == 0

        typed = [m for m in service.of_type("match") if m["match"]["source"] in ("typed", "deleted")]
        titled = [m for m in service.of_type("match") if m["match"]["source"] == "title"]
        assert [m["match"]["category"] for m in typed if m["match"]["severity"] >= 2] in (["suicide"], ["self-harm"])
        hit = next(m for m in typed if m["match"]["severity"] >= 2)
        assert "mysel" in hit["match"]["matched"].lower() and hit["window_title"] == "Year 9 English - Notes"
        assert hit["application"] == "xterm" and hit["age_band"] == "secondary"
        assert sorted(m["match"]["category"] for m in titled) == expected_title
        assert all(m["window_title"] == PORN_TITLE for m in titled)
        assert {peer.pid for _m, peer in service.received} == {helper.pid}
        log_text = log_path.read_text()
        assert "Traceback" not in log_text
        assert "honestly" not in log_text and "mysel" not in log_text  # the log never holds what was typed
        desktop.close(sudo)
        desktop.close(notes)
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait(10)
        service.stop()


def test_the_session_command_explains_wayland_and_reports_the_gap(state_dir, tmp_path):
    service = ServiceThread(state_dir / "ipc" / "session.sock").start()
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env.update({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"})
    helper = subprocess.Popen([*agent_command(), "--state", str(state_dir), "session"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        gaps = wait_for(lambda: len(service.of_type("coverage")) >= 2 and service.of_type("coverage"), 30,
                        "coverage gaps")
        assert {g["gap"] for g in gaps} == {"keystrokes-unavailable", "window-titles-unavailable"}
        helper.send_signal(signal.SIGTERM)
        output = helper.communicate(timeout=20)[0].decode()
        assert helper.returncode == 0
        assert "Wayland" in output and "cannot capture typed text" in output and "Traceback" not in output
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait(10)
        service.stop()


def test_the_session_command_without_a_desktop_is_one_clear_line(state_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    done = subprocess.run([*agent_command(), "--state", str(state_dir), "session"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no desktop session" in done.stderr


@pytest.mark.desktop
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_pupils_helper_is_named_by_the_kernel_not_by_itself(desktop):
    """The helper runs as an ordinary user against a root-owned state directory, as in a school: it can reach the
    socket, and the service learns the user from SO_PEERCRED."""
    import pwd

    state = Path(tempfile.mkdtemp(prefix="ww-pupil-"))
    try:
        os.chmod(state, 0o755)
        (state / "ipc").mkdir(mode=0o755)
        service = ServiceThread(state / "ipc" / "session.sock").start()
        try:
            pupil = pwd.getpwnam("nobody")
            helper = subprocess.Popen(["setpriv", f"--reuid={pupil.pw_uid}", f"--regid={pupil.pw_gid}",
                                       "--clear-groups", *agent_command(), "--state", str(state), "session"],
                                      env={**desktop.env, "HOME": "/nonexistent"}, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)
            try:
                hello = wait_for(lambda: [(m, p) for m, p in service.received if m["type"] == "hello"], 60,
                                 "the pupil's helper to connect")
                _message, peer = hello[0]
                assert (peer.uid, peer.username, peer.pid) == (pupil.pw_uid, "nobody", helper.pid)
                helper.send_signal(signal.SIGTERM)
                output = helper.communicate(timeout=30)[0].decode()
                assert helper.returncode == 0, output
                assert "Traceback" not in output
            finally:
                if helper.poll() is None:
                    helper.kill()
                    helper.wait(10)
        finally:
            service.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)
