"""`make demo`, review half: invented staff, an on-call list and a handful of invented alerts to review.

The alerts come from an invented demo agent whose Ed25519 key signs real serialized protos Alert messages, so
`alerts verify` still passes. Every name here is invented; no real person or pupil is described.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from collector import audit, notify
from collector.accounts import create_user, set_site_contacts
from collector.config import CollectorConfig
from collector.ingest import KIND_NAMES, VerifiedAlert, row_values
from collector.protect import keys as content_keys
from collector.store.alerts import insert_alerts
from collector.store.models import Agent, Alert, Site
from collector.store.models_review import User
from protos import wardwatch_pb2 as pb
from protos.identity import agent_id_of, spki_der

DEMO_HOST = "DEMO-LIB-PC07"
KIND_VALUES = {name: value for value, name in KIND_NAMES.items()}
SOURCE_VALUES = {"typed": pb.TEXT_SOURCE_TYPED, "deleted": pb.TEXT_SOURCE_DELETED, "title": pb.TEXT_SOURCE_TITLE}

# Invented staff of an invented school.
DEMO_STAFF = (
    ("demo.dsl", "dsl", "Ms Ada Fenwick (DSL)", "ada.fenwick@school.invalid"),
    ("demo.deputy", "deputy-dsl", "Mr Tobias Marsh (Deputy DSL)", "tobias.marsh@school.invalid"),
    ("demo.head", "headteacher", "Dr Priya Holloway (Headteacher)", "priya.holloway@school.invalid"),
)

# (user, age band, category, severity, rule, matched, context, window title, application, minutes ago)
DEMO_ALERTS = (
    ("y9.rowan", "secondary", "self-harm", 4, "self-harm/intent", "want to hurt myself",
     "i dont know why but i want to hurt myself again tonight", "Notes - Untitled", "notepad.exe", 180),
    ("y9.rowan", "secondary", "bullying", 3, "bullying/exclusion", "nobody likes you",
     "just leave the group chat nobody likes you anyway", "Class chat - Teams", "teams.exe", 2900),
    ("y11.ellis", "secondary", "suicide", 5, "suicide/plan", "end it all",
     "i have a plan to end it all this weekend", "Search - Edge", "msedge.exe", 45),
    ("y10.kai", "secondary", "filter-bypass", 2, "filter-bypass/proxy", "free vpn",
     "free vpn that works on school wifi", "New tab - Chrome", "chrome.exe", 600),
    ("y8.noor", "secondary", "child-sexual-abuse", 5, "csa/indicator", "[withheld]",
     "[withheld]", "[withheld]", "msedge.exe", 30),
)


def demo_agent_key(config: CollectorConfig) -> ed25519.Ed25519PrivateKey:
    """A fixed demo identity derived from the data directory, so re-running the demo reuses the same agent."""
    seed = hashlib.sha256(b"wardwatch-demo-agent:" + str(config.data_dir.resolve()).encode()).digest()
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def ensure_demo_agent(session: Session, site: Site, key: ed25519.Ed25519PrivateKey, hostname: str = DEMO_HOST,
                      age_band: str = "secondary") -> Agent:
    agent_id = agent_id_of(key.public_key())
    agent = session.get(Agent, agent_id)
    if agent is None:
        now = dt.datetime.now(dt.UTC)
        agent = Agent(id=agent_id, site_id=site.id, identity_public_key=spki_der(key.public_key()),
                      cert_serial="demo", cert_not_after=now + dt.timedelta(days=90), hostname=hostname,
                      os="windows", os_version="demo", agent_version="demo", age_band=age_band, status="active",
                      last_seen_at=now)
        session.add(agent)
        session.flush()
    return agent


def add_signed_alert(session: Session, agent: Agent, key: ed25519.Ed25519PrivateKey, *, user: str, category: str,
                     severity: int, matched: str = "", context: str = "", window_title: str = "",
                     application: str = "", rule: str = "", age_band: str = "secondary",
                     created_at: dt.datetime | None = None, kind: str = "keyword", source: str = "typed") -> Alert:
    """Store an alert exactly as the gateway would: a signed, serialized protos Alert and the row made from it."""
    seq = (session.scalar(select(func.max(Alert.seq)).where(Alert.agent_id == agent.id)) or 0) + 1
    created = created_at or dt.datetime.now(dt.UTC)
    stamp = Timestamp()
    stamp.FromDatetime(created.astimezone(dt.UTC).replace(tzinfo=None))
    message = pb.Alert(agent_id=agent.id, seq=seq, created_at=stamp, hostname=agent.hostname, user=user,
                       kind=KIND_VALUES[kind], category=category, severity=severity, rule=rule, confidence=1.0,
                       matched=matched, context=context, source=SOURCE_VALUES[source], window_title=window_title,
                       application=application, bundle_version="demo", age_band=age_band, agent_version="demo")
    payload = message.SerializeToString()
    verified = VerifiedAlert(alert=message, payload=payload, signature=key.sign(payload))
    row = row_values(verified, str(uuid.uuid4()), agent.site_id, dt.datetime.now(dt.UTC))
    stored = insert_alerts(session, [row])
    return session.get(Alert, stored[seq][0])


def seed_review_demo(config: CollectorConfig, engine: Engine, console_url: str) -> list[str]:
    """Create the demo staff, on-call list and alerts; return the lines to print. Safe to run twice."""
    audit.use_data_dir(config.data_dir)
    # The demo alerts' content is sealed at rest: under the data directory's key, so `serve` can read it back.
    content_keys.use_data_dir(config.data_dir, engine)
    base = console_url.rstrip("/")
    lines = [f"Review console: {base}/"]
    with audit.write_session(engine) as session:
        site = session.scalar(select(Site).order_by(Site.id))
        if site is None:
            site = Site(name="Main site")
            session.add(site)
            session.flush()
        if session.scalar(select(User).where(User.username == DEMO_STAFF[0][0])) is not None:
            return [*lines, "Demo review accounts exist already (use 'user reset USERNAME' for a new setup link)."]
        users = {}
        for username, role, name, email in DEMO_STAFF:
            link = create_user(session, username, role, [site.name], name, email)
            users[role] = link.user
            audit.append(session, "demo", "user.add", f"user:{username}", {"role": role})
            lines.append(f"  {name}: one-time setup link {link.url(base)}")
        set_site_contacts(session, site.id, allegations=users["dsl"], chair=None)
        notify.set_on_call(session, site.id, [(name, email, f"07700 900{i:03d}")
                                              for i, (_u, _r, name, email) in enumerate(DEMO_STAFF, start=1)])
        key = demo_agent_key(config)
        agent = ensure_demo_agent(session, site, key)
        now = dt.datetime.now(dt.UTC)
        for user, band, category, severity, rule, matched, context, title, app, minutes in DEMO_ALERTS:
            add_signed_alert(session, agent, key, user=user, category=category, severity=severity, matched=matched,
                             context=context, window_title=title, application=app, rule=rule, age_band=band,
                             created_at=now - dt.timedelta(minutes=minutes))
        audit.append(session, "demo", "demo.seeded", f"site:{site.id}", {"alerts": len(DEMO_ALERTS)})
    lines.append("Each account sets a password and an authenticator app (TOTP) on first use. Two different "
                 "reviewers are needed to close an alert.")
    return lines
