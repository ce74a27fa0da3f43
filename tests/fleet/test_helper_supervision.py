"""The service notices a killed session helper, tells the technician, and starts it again while its session lives
unless the session's own supervisor (systemd --user, launchd, the logon task) did so first."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.harness import Agent, wait_for

STAND_IN = Path(__file__).with_name("helper_stand_in.py")


def _helpers(state: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if str(STAND_IN) in cmdline and str(state) in cmdline:
            found.append(proc)
    return found


@pytest.fixture
def helper_cleanup():
    started: list[Path] = []
    yield started
    for state in started:
        for proc in _helpers(state):
            proc.kill()


def test_a_killed_helper_raises_a_coverage_alert_and_is_started_again(tmp_path, collector, agents, helper_cleanup):
    agent = Agent(tmp_path / "pc").enroll(collector.token())
    agents.append(agent)
    agent_id = agent.config()["agent_id"]
    helper_cleanup.append(agent.state)
    agent.start()
    wait_for(lambda: (agent.state / "ipc").exists(), 30, "the service's local channel")
    # Started by this test, which plays the user's session: it stays alive, so the session is still open.
    helper = subprocess.Popen([sys.executable, str(STAND_IN), str(agent.state)], env={**os.environ})
    wait_for(lambda: "session helper connected" in agent.log.read_text(), 30, "the helper's hello")

    helper.send_signal(signal.SIGKILL)
    helper.wait(timeout=10)

    def stopped_alerts():
        return [a for a in collector.alerts()
                if a["agent_id"] == agent_id and a["rule"] == "coverage.helper-stopped"]
    [alert] = wait_for(stopped_alerts, 30, "the helper-stopped coverage alert")
    assert alert["kind"] == "coverage" and f"pid {helper.pid}" in alert["details"]["coverage"]["detail"]
    [restarted] = wait_for(lambda: [p for p in _helpers(agent.state) if p.pid != helper.pid], 30,
                           "the helper to be started again")
    assert restarted.ppid() == agent.proc.pid
    wait_for(lambda: agent.log.read_text().count("session helper connected") == 2, 30,
             "the restarted helper's hello")


def test_a_helper_whose_session_ended_is_not_restarted(tmp_path, collector, agents, helper_cleanup):
    agent = Agent(tmp_path / "pc").enroll(collector.token())
    agents.append(agent)
    helper_cleanup.append(agent.state)
    agent.start()
    wait_for(lambda: (agent.state / "ipc").exists(), 30, "the service's local channel")
    # A session of its own: when its leader (the login shell) goes, the helper goes with it, as at logout.
    session = subprocess.Popen(["sh", "-c", f'"{sys.executable}" "{STAND_IN}" "{agent.state}" & wait'],
                               start_new_session=True)
    wait_for(lambda: "session helper connected" in agent.log.read_text(), 30, "the helper's hello")
    [helper] = _helpers(agent.state)
    os.killpg(session.pid, signal.SIGKILL)
    session.wait(timeout=10)
    wait_for(lambda: not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE, 10, "the logout")
    wait_for(lambda: "ended with its session" in agent.log.read_text(), 30, "the service to notice the logout")
    assert _helpers(agent.state) == [] or all(p.status() == psutil.STATUS_ZOMBIE for p in _helpers(agent.state))
    assert not [a for a in collector.alerts() if a["rule"] == "coverage.helper-stopped"]


def test_a_helper_brought_back_by_the_session_is_not_started_twice(tmp_path, collector, agents, helper_cleanup):
    agent = Agent(tmp_path / "pc").enroll(collector.token())
    agents.append(agent)
    helper_cleanup.append(agent.state)
    agent.start()
    wait_for(lambda: (agent.state / "ipc").exists(), 30, "the service's local channel")
    first = subprocess.Popen([sys.executable, str(STAND_IN), str(agent.state)])
    wait_for(lambda: "session helper connected" in agent.log.read_text(), 30, "the helper's hello")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # As systemd --user (Restart=always) or launchd would, within the service's grace period.
    second = subprocess.Popen([sys.executable, str(STAND_IN), str(agent.state)])
    wait_for(lambda: agent.log.read_text().count("session helper connected") == 2, 30, "the second hello")
    wait_for(lambda: "is back already; not starting another" in agent.log.read_text(), 30,
             "the service to see the helper back")
    assert [p.pid for p in _helpers(agent.state)] == [second.pid]
    wait_for(lambda: [a for a in collector.alerts() if a["rule"] == "coverage.helper-stopped"], 30,
             "the helper-stopped coverage alert")
