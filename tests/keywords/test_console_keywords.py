"""Keyword management in the console, on SQLite and PostgreSQL: per-field errors, audited adds, two-DSL exemption
approval that publishes a signed bundle carrying the site's rules and exemption, and per-version device counts."""

import datetime as dt
import html
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.detect import Engine
from agent.detect.exemptions import Exemptions
from collector.config import CollectorConfig
from collector.demo_review import ensure_demo_agent
from collector.pki import CollectorPki, PkiPaths
from collector.store.models import Agent, AgentCommand, Bundle, KeywordExemption, Site, SiteRule
from collector.store.models_review import AuditEntry
from signatures.bundle import verify_bundle_with_exemptions

RULE = {"category": "bullying", "slug": "crumble-face", "phrases": "crumble face\ncrumbleface", "severity": "3",
        "band-primary": "1", "band-secondary": "1", "mode": "word", "lang": "en",
        "note": "a nickname used at this school to taunt pupils"}


def _field_error(page: str, field: str) -> str:
    found = re.search(rf'id="error-{re.escape(field)}">([^<]*)<', page)
    return html.unescape(found.group(1)) if found else ""


def _actions(world) -> list[str]:
    with Session(world.engine) as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def _device(world, hostname: str) -> str:
    with Session(world.engine) as s, s.begin():
        return ensure_demo_agent(s, s.get(Site, world.north), ed25519.Ed25519PrivateKey.generate(),
                                 hostname=hostname).id


@pytest.mark.parametrize("change, field, words", [
    ({"severity": "9"}, "severity", "severity"),
    ({"severity": "high"}, "severity", "severity"),
    ({"category": "not-a-category"}, "category", "unknown category"),
    ({"phrases": "  \n "}, "phrases", "must not be empty"),
    ({"phrases": "--"}, "phrases", "no letters or digits"),
    ({"band-primary": "", "band-secondary": ""}, "bands", "bands"),
    ({"note": ""}, "note", "note is required"),
    ({"context_categories": "nonsense"}, "context", "unknown category"),
])
def test_a_bad_rule_comes_back_with_the_schema_message_beside_its_field(as_user, world, change, field, words):
    amber = as_user("dsl.amber")
    r = amber.post(f"/keywords/{world.north}/rules", {**RULE, **change})
    assert r.status_code == 400, r.text
    assert words in _field_error(r.text, field)
    with Session(world.engine) as s:
        assert s.scalar(select(SiteRule.id)) is None
    assert "keywords.rule.add" not in _actions(world)


def test_rules_and_allows_are_added_audited_and_a_duplicate_id_is_refused(as_user, world):
    amber = as_user("dsl.amber")
    r = amber.post(f"/keywords/{world.north}/rules", RULE)
    assert r.status_code == 303, r.text
    page = amber.get(f"/keywords/{world.north}").text
    assert "bullying.site.crumble-face" in page
    r = amber.post(f"/keywords/{world.north}/rules", {**RULE, "phrases": "crumbly"})
    assert r.status_code == 400 and "duplicate rule id" in _field_error(r.text, "slug")
    r = amber.post(f"/keywords/{world.north}/rules", {**RULE, "slug": "Crumble Face"})
    assert r.status_code == 400 and "lower-case" in _field_error(r.text, "slug")
    r = amber.post(f"/keywords/{world.north}/allows", {"allow_phrases": "crumble face cake", "allow_note": ""})
    assert r.status_code == 400 and _field_error(r.text, "allow_note")
    r = amber.post(f"/keywords/{world.north}/allows", {"allow_phrases": "crumble face cake",
                                                       "allow_note": "the canteen's pudding"})
    assert r.status_code == 303
    actions = _actions(world)
    assert actions.count("keywords.rule.add") == 1 and actions.count("keywords.allow.add") == 1
    assert "keywords.view" in actions


def test_roles_other_than_dsl_are_refused(as_user, world):
    for username in ("head.dara", "tech.evan"):
        assert as_user(username).get(f"/keywords/{world.north}").status_code == 403
    assert as_user("dsl.south").get(f"/keywords/{world.north}").status_code == 404  # not their site
    basil = as_user("dsl.basil")  # deputy DSL
    assert basil.get(f"/keywords/{world.north}").status_code == 200


def test_exemption_needs_a_second_dsl_and_approval_publishes_a_signed_bundle(as_user, world, app):
    history = _device(world, "HIST-01")
    other = _device(world, "MATHS-01")
    amber, basil = as_user("dsl.amber"), as_user("dsl.basil")
    assert amber.post(f"/keywords/{world.north}/rules", RULE).status_code == 303
    r = amber.post(f"/keywords/{world.north}/groups", {"group_name": "History room", f"gdevice-{history}": "1"})
    assert r.status_code == 303
    page = amber.get(f"/keywords/{world.north}").text
    group_id = re.search(r'name="group-(\d+)"', page).group(1)
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=14)
    bad = amber.post(f"/keywords/{world.north}/exemptions",
                     {"category-extremism": "1", "start": f"{end:%Y-%m-%dT%H:%M}", "end": f"{start:%Y-%m-%dT%H:%M}",
                      "reason": ""})
    assert bad.status_code == 400
    assert _field_error(bad.text, "who") and _field_error(bad.text, "end") and _field_error(bad.text, "reason")
    r = amber.post(f"/keywords/{world.north}/exemptions",
                   {"category-extremism": "1", f"group-{group_id}": "1", "start": f"{start:%Y-%m-%dT%H:%M}",
                    "end": f"{end:%Y-%m-%dT%H:%M}", "reason": "Year 10 History studies extremism"})
    assert r.status_code == 303, r.text
    with Session(world.engine) as s:
        exemption = s.scalar(select(KeywordExemption))
        assert exemption.approved_by is None and s.scalar(select(Bundle.id)) is None  # nothing reaches devices yet
    r = amber.post(f"/keywords/{world.north}/exemptions/{exemption.id}/approve", {})
    assert r.status_code == 409 and "different DSL" in r.text
    r = basil.post(f"/keywords/{world.north}/exemptions/{exemption.id}/approve", {})
    assert r.status_code == 303, r.text

    with Session(world.engine) as s:
        bundle = s.scalar(select(Bundle))
        told = {c.agent_id for c in s.scalars(select(AgentCommand).where(AgentCommand.kind == "update_bundle"))}
        content, signature, version = bundle.content, bundle.signature, bundle.version
        site_agents = set(s.scalars(select(Agent.id).where(Agent.site_id == world.north)))
    assert told == site_agents and history in told
    public = CollectorPki(PkiPaths(CollectorConfig(world.data_dir, "").pki_dir)).bundle_private_key().public_key()
    library, raw = verify_bundle_with_exemptions(content, signature, public)
    assert "bullying.site.crumble-face" in {r.id for r in library.rules}
    assert [e["agents"] for e in raw] == [[history]] and raw[0]["categories"] == ["extremism"]
    text = "the great replacement is real"
    at_history = Engine.from_library(library, exemptions=Exemptions.for_agent(raw, history))
    at_maths = Engine.from_library(library, exemptions=Exemptions.for_agent(raw, other))
    assert "extremism" not in {m.category for m in at_history.scan(text)}
    assert "extremism" in {m.category for m in at_maths.scan(text)}
    assert {m.rule for m in at_maths.scan("you crumble face")} == {"bullying.site.crumble-face"}

    actions = _actions(world)
    for action in ("keywords.group.add", "keywords.exemption.request", "keywords.exemption.approve",
                   "bundle.publish"):
        assert action in actions, action

    with Session(world.engine) as s, s.begin():  # the history PC confirms the new version in a heartbeat
        s.get(Agent, history).bundle_version = version
    page = amber.get(f"/keywords/{world.north}").text
    row = re.search(rf"<td>{re.escape(version)}</td>.*?class=\"running\">(\d+) of (\d+)<", page, re.S)
    assert row and row.group(1) == "1" and int(row.group(2)) == len(site_agents)
    assert "active" in page
