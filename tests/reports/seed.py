"""A seeded store for report tests: the review world's two sites and staff, plus invented pupils' devices with a
term of signed alerts, some reviewed at known times. Every pupil username and hostname is invented and distinctive,
so a test can search a rendered report for them."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, update

from collector import audit
from collector.config import write_config
from collector.demo_review import add_signed_alert, ensure_demo_agent
from collector.store.models import Agent, Alert, Site
from collector.store.models_review import Review
from tests.review.world import World, build_world

# Invented pupils and their own laptops (device names that name a pupil: exactly what governors must never see).
PUPIL_DEVICES = (
    ("north", "QUILLONDRA-LAPTOP", "y9.quillondra"),
    ("north", "LIB-PC-ZEPHYRINE", "y10.zephyrine"),
    ("north", "ORLAWYNN-SURFACE", "y11.orlawynn"),
    ("south", "BRAMWELLIX-CHROMEBOOK", "y7.bramwellix"),
)
# An invented member of staff's classroom PC: alerts about staff are counted only for the headteacher.
STAFF_DEVICE = ("north", "STAFFROOM-THORNCASTLE", "staff.thorncastle")
# When the staff member's alerts arrive: one in the week the weekly e-mail tests report on.
STAFF_ALERT_TIMES = (dt.datetime(2026, 11, 18, 10, tzinfo=dt.UTC), dt.datetime(2026, 10, 6, 14, tzinfo=dt.UTC))
CATEGORIES = ("self-harm", "bullying", "profanity", "filter-bypass", "suicide", "grooming", "drugs")
TERM_START = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
TERM_END = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


@dataclass
class SeededStore:
    world: World
    data_dir: Path
    db_url: str
    pupils: list[str] = field(default_factory=list)
    staff_users: list[str] = field(default_factory=list)
    hostnames: list[str] = field(default_factory=list)
    agent_ids: list[str] = field(default_factory=list)


def _review(session, alert_id: str, reviewer_ids: dict[str, int], received: dt.datetime, rng: random.Random,
            finish: str) -> str:
    """Write the review steps of one alert at invented delays after it arrived; return its state."""
    first = received + dt.timedelta(minutes=rng.randint(5, 600))
    session.add(Review(alert_id=alert_id, step="assess", reviewer_id=reviewer_ids["dsl.amber"],
                       involved="child-victim", nature="inappropriate", outcome="speak-to-pupil",
                       reason="invented test assessment", created_at=first))
    if finish == "awaiting-second":
        return finish
    second = first + dt.timedelta(minutes=rng.randint(10, 3000))
    if finish == "disputed":
        session.add(Review(alert_id=alert_id, step="dispute", reviewer_id=reviewer_ids["dsl.basil"],
                           reason="invented test dispute", created_at=second))
        return finish
    if finish == "escalated":
        session.add(Review(alert_id=alert_id, step="dispute", reviewer_id=reviewer_ids["dsl.basil"],
                           reason="invented test dispute", created_at=second))
        session.add(Review(alert_id=alert_id, step="decide", reviewer_id=reviewer_ids["head.dara"],
                           outcome="refer-social-care", reason="invented decision",
                           created_at=second + dt.timedelta(hours=2)))
        return finish
    session.add(Review(alert_id=alert_id, step="confirm", reviewer_id=reviewer_ids["dsl.basil"],
                       outcome="speak-to-pupil", created_at=second))
    return "closed"


def _use_content_keys(data_dir: Path) -> None:
    """Seal seeded content under the data directory's key, which the CLI commands under test load too."""
    try:
        from collector.protect import keys
    except ImportError:  # a tree without encryption at rest stores content as it is
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    keys.use_data_dir(data_dir)


def seed_store(engine: Engine, data_dir: Path, db_url: str, alerts_per_device: int = 14, seed: int = 7) -> SeededStore:
    _use_content_keys(data_dir)
    world = build_world(engine, data_dir)
    write_config(data_dir, db_url)  # so that `alerts list --json` and `report` commands open this store
    rng = random.Random(seed)
    store = SeededStore(world, data_dir, db_url)
    span = (TERM_END - TERM_START).total_seconds()
    with audit.write_session(engine) as s:
        sites = {"north": s.get(Site, world.north), "south": s.get(Site, world.south)}
        for site_key, hostname, pupil in PUPIL_DEVICES:
            key = ed25519.Ed25519PrivateKey.generate()
            agent = ensure_demo_agent(s, sites[site_key], key, hostname=hostname)
            agent.agent_version, agent.bundle_version = "0.1.0", "2026.11.02"
            store.pupils.append(pupil)
            store.hostnames.append(hostname)
            store.agent_ids.append(agent.id)
            # Outside the term on both sides, and kinds that are never counted, so the filters are exercised.
            plan = [("keyword", TERM_START - dt.timedelta(days=3)), ("keyword", TERM_END + dt.timedelta(hours=1)),
                    ("test", TERM_START + dt.timedelta(days=10)), ("notice", TERM_START + dt.timedelta(days=11))]
            plan += [(rng.choice(("keyword", "keyword", "keyword", "usb", "coverage")),
                      TERM_START + dt.timedelta(seconds=rng.uniform(0, span - 1))) for _ in range(alerts_per_device)]
            for kind, received in plan:
                category = rng.choice(CATEGORIES) if kind in ("keyword", "test") else ""
                alert = add_signed_alert(s, agent, key, user=pupil, category=category,
                                         severity=rng.randint(1, 5), kind=kind, rule=f"{kind}/invented",
                                         matched="invented words", context="invented context",
                                         window_title=f"{pupil} homework", created_at=received)
                state = "new"
                if kind != "notice" and rng.random() < 0.7:
                    finish = rng.choice(("closed", "closed", "awaiting-second", "disputed", "escalated"))
                    state = _review(s, alert.id, world.users, received, rng, finish)
                s.execute(update(Alert).where(Alert.id == alert.id).values(received_at=received, state=state))
        site_key, hostname, staff_user = STAFF_DEVICE
        key = ed25519.Ed25519PrivateKey.generate()
        agent = ensure_demo_agent(s, sites[site_key], key, hostname=hostname, age_band="staff")
        store.staff_users.append(staff_user)
        store.hostnames.append(hostname)
        store.agent_ids.append(agent.id)
        for received in STAFF_ALERT_TIMES:
            alert = add_signed_alert(s, agent, key, user=staff_user, category="pornography", severity=4,
                                     age_band="staff", rule="keyword/invented", matched="invented words",
                                     context="invented context", created_at=received)
            s.execute(update(Alert).where(Alert.id == alert.id).values(received_at=received))
        # A device that was removed and never alerted: it has left the fleet and is not listed.
        gone = ensure_demo_agent(s, sites["north"], ed25519.Ed25519PrivateKey.generate(), hostname="GONE-PC")
        s.execute(update(Agent).where(Agent.id == gone.id).values(status="removed"))
    return store
