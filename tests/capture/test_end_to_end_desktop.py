"""End to end on a real X session: collector, agent service and session helper as real processes, keys typed into
a real xterm by xdotool, alerts checked at the collector (the same story as shared/checks/capture-xvfb)."""

from __future__ import annotations

import getpass
import signal
import subprocess

import pytest

from tests.capture.conftest import wait_for
from tests.harness import AGENT, Agent, Collector

pytestmark = pytest.mark.desktop

PORN_TITLE = "Pornhub - Free Porn Videos - Mozilla Firefox"


def test_typed_and_title_alerts_reach_the_collector_and_the_sudo_prompt_never_does(desktop, tmp_path):
    from agent.detect import Engine

    # The helper sends one alert per category for a title, however many rules it hits.
    expected_title = sorted({m.category for m in Engine.from_signatures().scan(PORN_TITLE, source="title")
                             if m.severity >= 2})
    collector = Collector(tmp_path / "collector").init().start()
    agent = Agent(tmp_path / "agent")
    helper = None
    try:
        # The service restarts a helper that stops while its session lives; this test stops it on purpose.
        agent.enroll(collector.token()).start(env={"WARDWATCH_NO_HELPER_RESTART": "1"})
        wait_for(lambda: (agent.state / "ipc" / "session.sock").exists(), 30, "the service's session socket")
        session_log = tmp_path / "session.log"
        with open(session_log, "wb") as log:
            helper = subprocess.Popen([AGENT, "--state", str(agent.state), "session"], env=desktop.env, stdout=log,
                                      stderr=subprocess.STDOUT)
        notes, notes_wid = desktop.xterm("Year 9 English - Notes")
        desktop.activate(notes_wid)
        wait_for(lambda: b"capturing: X11WindowWatcher, KeyboardCapture" in session_log.read_bytes(), 60,
                 "the helper to start capturing")

        desktop.type("the homework is killing me and the essex trip was fun")
        desktop.key("Return")
        desktop.type("honestly i want to kill mysellf")
        desktop.key("BackSpace", "BackSpace")
        desktop.type("f")
        desktop.key("Return")

        def stored(category_test):
            return [a for a in collector.alerts() if a.get("kind") == "keyword" and category_test(a)]

        wait_for(lambda: stored(lambda a: a["category"] in ("self-harm", "suicide")), 30, "the typed alert")
        sudo, sudo_wid = desktop.xterm("[sudo] password for ayesha.khan:")
        desktop.activate(sudo_wid)
        desktop.type("i want to kill myself")
        desktop.key("Return")
        desktop.activate(notes_wid)
        desktop.set_title(notes_wid, PORN_TITLE)
        if expected_title:
            wait_for(lambda: stored(lambda a: a["source"] == "title"), 30, "the title alert")
        desktop.activate(sudo_wid)
        desktop.activate(notes_wid)
        helper.send_signal(signal.SIGTERM)
        assert helper.wait(30) == 0  # the helper delivers what it holds before it leaves

        alerts = [a for a in collector.alerts() if a.get("kind") == "keyword" and int(a["severity"]) >= 2]
        typed = [a for a in alerts if a["source"] in ("typed", "deleted")]
        titled = [a for a in alerts if a["source"] == "title"]
        assert len(typed) == 1, [(a["category"], a["matched"]) for a in typed]
        assert typed[0]["category"] in ("self-harm", "suicide") and "mysel" in typed[0]["matched"].lower()
        assert typed[0]["window_title"] == "Year 9 English - Notes" and typed[0]["application"] == "xterm"
        assert typed[0]["user"] == getpass.getuser() and typed[0]["signature_ok"] is True
        assert sorted(a["category"] for a in titled) == expected_title
        assert all(a["window_title"] == PORN_TITLE for a in titled)
        notices = [a for a in collector.alerts() if a.get("kind") == "notice"]
        assert len(notices) == 1 and notices[0]["user"] == getpass.getuser()
        assert notices[0]["matched"].startswith("sha256:")  # the default notice's version, filled in by the service
        assert "Traceback" not in session_log.read_text()
        desktop.close(sudo)
        desktop.close(notes)
    finally:
        if helper is not None and helper.poll() is None:
            helper.kill()
            helper.wait(10)
        agent.stop()
        collector.stop()
