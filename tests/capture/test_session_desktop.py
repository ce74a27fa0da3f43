"""The session helper on a real X desktop, talking to a real MatchServer over the Unix socket.

The in-process test uses the recording stand-in engine, so it can prove what the engine was and was not given;
the process test runs `wardwatch-agent session` itself with the real detection engine."""

from __future__ import annotations

import os
import threading

import pytest

from agent.capture.keyboard import KeyboardCapture
from agent.capture.privacy import PrivacyPolicy
from agent.capture.window_x11 import X11WindowWatcher
from agent.ipc import MatchClient
from agent.session import SessionHelper
from tests.capture.conftest import ServiceThread, wait_for
from tests.capture.fake_engine import FakeEngine

pytestmark = pytest.mark.desktop

PORN_TITLE = "Pornhub - Free Porn Videos - Mozilla Firefox"


@pytest.fixture
def state_dir(tmp_path):
    state = tmp_path / "state"
    (state / "ipc").mkdir(parents=True)
    os.chmod(state / "ipc", 0o755)
    return state


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
