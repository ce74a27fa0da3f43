"""Keyword bundles: published and signed by the collector, verified and swapped in by the agent, confirmed back."""

import json

import pytest
from sqlalchemy import create_engine, text

from tests.harness import Agent, agent_commands, store_url, wait_for


def _agent_row(collector, agent_id: str) -> dict:
    rows = [json.loads(line) for line in collector.cli("agents", "list", "--json").stdout.splitlines()]
    return next(r for r in rows if r["id"] == agent_id)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_published_bundle_reaches_the_agent_and_a_forged_one_is_refused(tmp_path, collector):
    agent = Agent(tmp_path / "agent").enroll(collector.token())
    agent_id = agent.config()["agent_id"]
    agent.start()
    wait_for(lambda: (agent.state / "status.json").exists(), 30, "the agent service")

    out = collector.cli("bundle", "publish", "--version", "test-1").stdout
    assert "published keyword bundle test-1" in out and "1 agent(s)" in out
    current = agent.state / "bundle" / "current.json"
    wait_for(lambda: current.exists() and json.loads(current.read_text())["version"] == "test-1", 60,
             "the agent to install bundle test-1")
    wait_for(lambda: _agent_row(collector, agent_id)["bundle_version"] == "test-1", 60,
             "the agent to confirm test-1 to the collector")
    bundle_list = [json.loads(line) for line in collector.cli("bundle", "list", "--json").stdout.splitlines()]
    assert bundle_list == [pytest.approx(bundle_list[0])] and bundle_list[0]["agents_running"] == 1

    # A bundle whose signature is not the collector's (a tampered database row) is refused; test-1 stays.
    engine = create_engine(store_url(collector))
    with engine.begin() as conn:
        content, signature = conn.execute(text("SELECT content, signature FROM bundles")).one()
        conn.execute(text("INSERT INTO bundles (version, site_id, content, signature, published_at, published_by) "
                          "VALUES ('forged-2', NULL, :c, :s, CURRENT_TIMESTAMP, 'attacker')"),
                     {"c": content.replace(b"test-1", b"forged-2") if b"test-1" in content else content + b"x",
                      "s": signature})
        conn.execute(text("INSERT INTO agent_commands (id, agent_id, kind, payload, created_at, detail) "
                          "VALUES ('cmd-forged', :a, 'update_bundle', '{\"version\": \"forged-2\"}', "
                          "CURRENT_TIMESTAMP, '')"), {"a": agent_id})
    engine.dispose()
    wait_for(lambda: any(c["ok"] is not None and "forged-2" in (c["detail"] or "") for c in agent_commands(
        collector, agent_id)), 60, "the agent to answer the forged bundle command")
    forged = [c for c in agent_commands(collector, agent_id) if "forged-2" in (c["detail"] or "")][-1]
    assert not forged["ok"] and "refused" in forged["detail"]
    assert json.loads(current.read_text())["version"] == "test-1"
    # The technician sees why: the refusal is reported as a coverage gap on the device.
    wait_for(lambda: any(g["gap"] == "bundle-refused" for g in _agent_row(collector, agent_id)["coverage_gaps"]),
             60, "the refusal to be reported")
    agent.stop()


def test_publishing_an_invalid_library_publishes_nothing(tmp_path, collector):
    bad = tmp_path / "libs"
    bad.mkdir()
    (bad / "bullying.toml").write_text('[library]\ncategory = "bullying"\nschema = 1\n\n[[rule]]\nid = "x"\n')
    proc = collector.cli("bundle", "publish", "--signatures", str(bad), check=False)
    assert proc.returncode == 2 and "not published" in proc.stderr and "Traceback" not in proc.stderr
    assert collector.cli("bundle", "list", "--json").stdout.strip() == ""
