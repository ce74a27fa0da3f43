"""The collector's `uninstall` command and `agents decommission`: a device that is gone stops being trusted."""

import json
import uuid

from sqlalchemy import create_engine, text

from tests.harness import Agent, store_url


def _queue(collector, agent_id: str, kind: str) -> None:
    engine = create_engine(store_url(collector))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO agent_commands (id, agent_id, kind, payload, created_at, detail) "
                          "VALUES (:i, :a, :k, '{}', CURRENT_TIMESTAMP, '')"),
                     {"i": str(uuid.uuid4()), "a": agent_id, "k": kind})
    engine.dispose()


def test_uninstall_command_wipes_the_identity_and_the_service_stays_down(tmp_path, collector, agents):
    agent = Agent(tmp_path / "pc").enroll(collector.token())
    agents.append(agent)
    agent.start()
    _queue(collector, agent.config()["agent_id"], "uninstall")
    assert agent.proc.wait(timeout=60) == 3  # the unit's RestartPreventExitStatus
    assert not (agent.state / "identity.key").exists() and not (agent.state / "spool.db").exists()
    # Stopping because the collector said so is not a coverage gap.
    assert not [a for a in collector.alerts() if a["rule"] == "coverage.service-stopped"]


def test_decommission_refuses_the_device_from_then_on(tmp_path, collector):
    agent = Agent(tmp_path / "pc").enroll(collector.token())
    agent_id = agent.config()["agent_id"]
    assert "marked removed" in collector.cli("agents", "decommission", agent_id).stdout
    [row] = [json.loads(line) for line in collector.cli("agents", "list", "--json").stdout.splitlines()]
    assert row["status"] == "removed"
    proc = agent.cli("send-test-alert", "--timeout", "3", check=False)
    assert proc.returncode == 1 and "removed" in proc.stdout
    wrong = collector.cli("agents", "decommission", "f" * 32, check=False)
    assert wrong.returncode == 2 and "no agent with id" in wrong.stderr


def test_uninstall_code_is_required_and_checked(tmp_path, collector):
    agent = Agent(tmp_path / "pc").enroll(collector.token())
    unset = agent.cli("uninstall", "--code", "whatever-code", check=False)
    assert unset.returncode == 2 and "no uninstall code is set" in unset.stderr
    printed = collector.cli("uninstall-code", "set").stdout.strip().splitlines()[-1]
    assert agent.cli("uninstall", "--code", printed + "x", check=False).returncode == 2
    assert (agent.state / "identity.key").exists()
    short = collector.cli("uninstall-code", "set", "--code", "1234", check=False)
    assert short.returncode == 2 and "at least 8" in short.stderr
    assert "marked removed" in agent.cli("uninstall", "--code", printed).stdout
    assert not (agent.state / "identity.key").exists()
