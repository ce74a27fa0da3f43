"""The technician's devices page (SQLite and PostgreSQL): fleet health without alert content, enrolment tokens,
and revoke / decommission / re-key as audited POST forms."""

import datetime as dt
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit
from collector.config import CollectorConfig
from collector.demo_review import ensure_demo_agent
from collector.fleet_health import load_silence_policy, raise_silent_alerts
from collector.pki import PkiPaths, create_pki
from collector.store.models import Agent, AgentCommand, Alert, EnrolmentToken, Site
from collector.store.models_review import AuditEntry
from collector.web.app import create_app
from protos.enrolment import EnrolmentString
from tests.web.conftest import Browserless, csrf_of
from tests.web.test_pages_reports import served_over_https, signed_in_page

# Invented content that must never reach a technician's page.
SECRET_WORDS = ("vexillumquartz", "a sentence about marrowdene lane", "Marrowdene chat - Browser")
PUPILS = ("y8.pellucidia", "y10.thessaly-orne")


@pytest.fixture
def app(world, db_url, tmp_path):
    data = tmp_path / "data"
    create_pki(PkiPaths(data / "pki"), ["127.0.0.1"])
    cfg = CollectorConfig(data_dir=data, db_url=db_url, public_address="collector.school.invalid:7443",
                          public_enrol_address="collector.school.invalid:7444")
    return create_app(cfg, world.engine)


@pytest.fixture
def as_user(app, world):
    return lambda username: Browserless(app, world).sign_in(username)


@pytest.fixture
def fleet(world):
    """Northfield devices, each with one kind of gap; one Southbank device; keyword alerts with invented content."""
    now = dt.datetime.now(dt.UTC)
    ids = {}
    with audit.write_session(world.engine) as s:
        north, south = s.get(Site, world.north), s.get(Site, world.south)
        for hostname, site, values in (
            ("IT-SUITE-01", north, {"coverage_gaps": [{"gap": "keystrokes-unavailable",
                                                       "detail": "wayland session: capture not possible"}],
                                    "os": "linux", "agent_version": "0.4.2", "bundle_version": "2026.11.20"}),
            ("IT-SUITE-02", north, {"last_seen_at": now - dt.timedelta(hours=5), "os": "windows"}),
            ("IT-SUITE-03", north, {"clock_skew_s": -900.0, "os": "windows"}),
            ("IT-SUITE-04", north, {"clone_detected_at": now, "os": "windows"}),
            ("IT-SUITE-05", north, {"coverage_gaps": [{"gap": "bundle-refused", "detail": "bad signature"}]}),
            ("SOUTH-PC-01", south, {}),
        ):
            agent = ensure_demo_agent(s, site, ed25519.Ed25519PrivateKey.generate(), hostname=hostname)
            for name, value in values.items():
                setattr(agent, name, value)
            ids[hostname] = agent.id
    for pupil in PUPILS:
        world.alert(user=pupil, matched=SECRET_WORDS[0], context=SECRET_WORDS[1], title=SECRET_WORDS[2])
    return ids


def page_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_technician_sees_fleet_health_and_no_alert_content(as_user, fleet, world):
    # A silent-device alert made by the collector, to be listed without content.
    policy = load_silence_policy(CollectorConfig(data_dir=world.data_dir, db_url="", extra={"fleet": {
        "school_hours": "00:00-23:59", "school_days": "mon-sun", "silent_after_minutes": 60}}))
    with audit.write_session(world.engine) as s:
        assert len(raise_silent_alerts(s, policy, dt.datetime.now(dt.UTC))) == 1  # IT-SUITE-02
    page = as_user("tech.evan").get("/devices")
    assert page.status_code == 200
    text = page_text(page.text)
    for hostname in ("IT-SUITE-01", "IT-SUITE-02", "IT-SUITE-03", "IT-SUITE-04", "IT-SUITE-05"):
        assert hostname in text
    assert "SOUTH-PC-01" not in text  # another site's device
    for gap in ("Keyboard capture unavailable", "Silent device", "Clock skew", "Cloned identity",
                "Keyword bundle refused"):
        assert gap in text, gap
    assert "clock 900 s behind" in text and "0.4.2" in text and "2026.11.20" in text and "linux" in text
    coverage_table = text.split("Coverage alerts, last 30 days")[1].split("Enrolment tokens")[0]
    assert re.search(r"UTC IT-SUITE-02 Silent device Collector", coverage_table)
    lowered = page.text.lower()
    for forbidden in (*SECRET_WORDS, *PUPILS, "self-harm", "Self-harm"):
        assert forbidden.lower() not in lowered, forbidden
    with Session(world.engine) as s:
        assert s.scalars(select(AuditEntry.actor).where(AuditEntry.action == "devices.view")).all() == ["tech.evan"]


def test_only_technicians_and_administrators_see_devices(as_user, fleet, world):
    assert as_user("admin.gale").get("/devices").status_code == 200
    for username in ("head.dara", "dsl.amber", "gov.fern"):
        assert as_user(username).get("/devices").status_code == 403, username
    tech = as_user("tech.evan")
    with Session(world.engine) as s:
        alert_id = s.scalars(select(Alert.id)).first()
    for path in (f"/alerts/{alert_id}", f"/alerts/{alert_id}/audit", f"/pupil?site={world.north}&user={PUPILS[0]}",
                 "/queue", "/reports"):
        r = tech.get(path)
        assert r.status_code == 403, path
        assert SECRET_WORDS[0] not in r.text and PUPILS[0] not in r.text


def test_an_enrolment_token_is_shown_once_and_can_be_revoked(as_user, fleet, world):
    tech = as_user("tech.evan")
    csrf = csrf_of(tech.get("/devices").text)
    refused = tech.client.post("/devices/tokens", data={"site": world.north, "age_band": "secondary", "uses": "5",
                                                        "ttl": "24h", "csrf": "forged"})
    assert refused.status_code == 403
    for bad in ({"ttl": "forever"}, {"uses": "0"}, {"site": str(world.south)}, {"age_band": "adult"}):
        form = {"site": str(world.north), "age_band": "secondary", "uses": "5", "ttl": "24h", "csrf": csrf} | bad
        assert tech.client.post("/devices/tokens", data=form).status_code == 400, bad
    with Session(world.engine) as s:
        assert s.scalars(select(EnrolmentToken)).all() == []
    made = tech.client.post("/devices/tokens", data={"site": str(world.north), "age_band": "primary", "uses": "5",
                                                     "ttl": "24h", "csrf": csrf})
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    line = re.search(r'id="enrolment-string">([^<]+)<', made.text).group(1).strip()
    enrolment = EnrolmentString.decode(line)
    assert enrolment.site == "Northfield" and enrolment.address == "collector.school.invalid:7443"
    token_id, secret = enrolment.token.split(".")
    again = tech.get("/devices").text
    assert token_id in again and secret not in again and "active" in again
    with Session(world.engine) as s:
        row = s.get(EnrolmentToken, token_id)
        assert (row.uses_allowed, row.age_band, row.site_id) == (5, "primary", world.north)
        assert secret not in row.secret_hash
    assert tech.client.post(f"/devices/tokens/{token_id}/revoke", data={"csrf": csrf}).status_code == 303
    with Session(world.engine) as s:
        assert s.get(EnrolmentToken, token_id).revoked_at is not None
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.actor == "tech.evan")).all()
    assert "token.create" in actions and "token.revoke" in actions


@pytest.mark.parametrize("action, status", [("revoke", "revoked"), ("decommission", "removed"),
                                            ("rekey", "active")])
def test_device_actions_are_audited_forms(as_user, fleet, world, action, status):
    tech = as_user("tech.evan")
    csrf = csrf_of(tech.get("/devices").text)
    target = fleet["IT-SUITE-01"]
    assert tech.client.post(f"/devices/{target}/{action}", data={"csrf": "forged"}).status_code == 403
    assert tech.client.post(f"/devices/{fleet['SOUTH-PC-01']}/{action}", data={"csrf": csrf}).status_code == 404
    r = tech.client.post(f"/devices/{target}/{action}", data={"csrf": csrf})
    assert r.status_code == 303
    with Session(world.engine) as s:
        agent = s.get(Agent, target)
        assert agent.status == status
        logged = s.scalars(select(AuditEntry).where(AuditEntry.action == f"agent.{action}")).all()
        assert [(e.actor, e.target) for e in logged] == [("tech.evan", target)]
        commands = s.scalars(select(AgentCommand).where(AgentCommand.agent_id == target)).all()
        if action == "rekey":
            # A one-time, identity-bound token rides in the command; the device is not marked as a clone.
            assert [c.kind for c in commands] == ["rekey"] and commands[0].payload["token"]
            assert agent.clone_detected_at is None
            assert s.scalars(select(EnrolmentToken).where(EnrolmentToken.rekey_of == target)).one()
        else:
            assert commands == []
            assert tech.client.post(f"/devices/{target}/{action}", data={"csrf": csrf}).status_code == 409
    assert "rekey" not in tech.get("/devices").text.split("Enrolment tokens")[1]  # re-key tokens are not listed


@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_technician_works_the_devices_page_in_chromium(app, fleet, world, tmp_path):
    with served_over_https(app, tmp_path) as base, signed_in_page(base, world, "tech.evan") as page:
        assert page.url == f"{base}/devices"  # a technician lands on the devices page
        assert page.locator("table.fleet tbody tr").count() == 6  # five IT-SUITE PCs and PC-NORTH
        page.fill("#uses", "12")
        page.fill("#ttl", "2d")
        page.click(".token-form button[type=submit]")
        page.wait_for_url(f"{base}/devices/tokens")
        line = page.inner_text("#enrolment-string").strip()
        assert EnrolmentString.decode(line).site == "Northfield"
        page.screenshot(path="/tmp/wardwatch-devices-token.png", full_page=True)
        row = page.locator("table.fleet tbody tr", has_text="IT-SUITE-05")
        row.locator("form[action$='/decommission'] button").click()
        page.wait_for_url(f"{base}/devices?done=decommission")
        assert "Device decommissioned" in page.inner_text("#main")
        assert page.locator("table.fleet tbody tr").count() == 5
        source = page.content().lower()
        for forbidden in (*SECRET_WORDS, *PUPILS):
            assert forbidden.lower() not in source, forbidden
        page.screenshot(path="/tmp/wardwatch-devices-laptop.png", full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path="/tmp/wardwatch-devices-phone.png", full_page=True)
