"""A site rule and an exemption published from the collector reach a real agent service, which verifies and installs
the bundle; the real session helper code then loads it and applies both, and the exemption ends by the agent's own
clock with the collector switched off."""

import datetime as dt
import json

import pytest
from sqlalchemy import select

from agent.capture.privacy import PrivacyPolicy
from agent.capture.window import ActiveWindow
from agent.session import SessionHelper, load_engine, read_agent_config
from collector import audit, keywords
from collector.pki import CollectorPki, PkiPaths
from collector.store.db import make_engine
from collector.store.models import Site
from tests.harness import Agent, store_url, wait_for
from tests.pipeline.conftest import collector  # noqa: F401  (a real collector serving on 127.0.0.1)

SITE_RULE = {"category": "bullying", "slug": "crumble-face", "phrases": "crumble face", "severity": "3",
             "band-primary": "1", "band-secondary": "1", "band-staff": "1", "note": "a taunt used at this school"}
EXTREMIST_TITLE = "the great replacement is real - Notes"


def _agent_row(collector, agent_id: str) -> dict:  # noqa: F811
    rows = [json.loads(line) for line in collector.cli("agents", "list", "--json").stdout.splitlines()]
    return next(r for r in rows if r["id"] == agent_id)


def _publish(collector, agent_id: str, now: dt.datetime) -> str:  # noqa: F811
    audit.use_data_dir(collector.data)
    engine = make_engine(store_url(collector))
    try:
        with audit.write_session(engine) as db:
            site = db.scalar(select(Site).where(Site.name == "Test site"))
            keywords.add_site_rule(db, site, SITE_RULE, "dsl.amber")
            exemption = keywords.request_exemption(db, site, {
                "category-extremism": "1", f"device-{agent_id}": "1",
                "start": (now - dt.timedelta(hours=1)).isoformat(), "end": (now + dt.timedelta(days=14)).isoformat(),
                "reason": "Year 10 History studies extremism"}, "dsl.amber", now=now)
            keywords.approve_exemption(db, site, exemption.id, "dsl.basil", "deputy-dsl", now=now)
            bundle, told = keywords.publish_site_bundle(db, CollectorPki(PkiPaths(collector.data / "pki")), site,
                                                        "dsl.basil", now=now)
            assert told == 1
            return bundle.version
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_site_rule_and_exemption_reach_the_agent_and_the_exemption_expires_offline(tmp_path, collector):  # noqa: F811
    agent = Agent(tmp_path / "agent").enroll(collector.token())
    agent_id = agent.config()["agent_id"]
    agent.start()
    try:
        _run_on_the_device(collector, agent, agent_id)
    finally:
        agent.stop()


def _run_on_the_device(collector, agent: Agent, agent_id: str) -> None:  # noqa: F811
    try:
        wait_for(lambda: (agent.state / "status.json").exists(), 30, "the agent service")
        now = dt.datetime.now(dt.UTC)
        version = _publish(collector, agent_id, now)
        current = agent.state / "bundle" / "current.json"
        wait_for(lambda: current.exists() and json.loads(current.read_text())["version"] == version, 60,
                 "the agent to install the site's bundle")
        wait_for(lambda: _agent_row(collector, agent_id)["bundle_version"] == version, 60,
                 "the agent to confirm the site's bundle to the collector")
    finally:
        collector.stop()  # from here on the device is on its own

    config = read_agent_config(agent.state)
    engine = load_engine(agent.state, "secondary", config)  # exactly what the session helper does at logon
    assert engine.version == version
    sent: list[dict] = []
    helper = SessionHelper(engine, sent.append, PrivacyPolicy.build(), "secondary")
    helper.handle_window(ActiveWindow("you crumble face - Chat", "chat", 10, 1))
    helper.handle_window(ActiveWindow(EXTREMIST_TITLE, "notes", 11, 2))
    assert [m["match"]["rule"] for m in sent] == ["bullying.site.crumble-face"]  # the exempted title sent nothing

    engine.exemptions.clock = lambda: now + dt.timedelta(days=14, seconds=1)  # the agent's clock passes the end
    helper.titles_seen.clear()
    helper.handle_window(ActiveWindow(EXTREMIST_TITLE, "notes", 11, 3))
    assert [m["match"]["category"] for m in sent[1:]] == ["extremism"]
