"""Data-protection tests: a content key ring of their own, and helpers to read the database behind the ORM."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, text

from collector import audit
from collector.demo_review import add_signed_alert, ensure_demo_agent
from collector.protect import keys
from collector.store.models import Site


@pytest.fixture
def ring():
    """A fresh content key ring used by this process for the test, then the previous one again."""
    new = keys.KeyRing.of(secrets.token_bytes(keys.KEY_BYTES), source="the test ring")
    previous = keys.use_keyring(new)
    yield new
    keys.use_keyring(previous)


@pytest.fixture
def school(store_engine, ring, tmp_path):
    """A migrated store with one site and a signing demo agent; returns a function that stores one alert."""
    audit_key = audit.use_data_dir(tmp_path / "data")
    key = ed25519.Ed25519PrivateKey.generate()
    with audit.write_session(store_engine) as s:
        site = Site(name="Invented Academy")
        s.add(site)
        s.flush()
        site_id = site.id

    def store(user: str = "pupil.zed", matched: str = "", context: str = "", title: str = "", app: str = "",
              category: str = "self-harm", severity: int = 4, days_ago: float = 0) -> str:
        with audit.write_session(store_engine) as s:
            agent = ensure_demo_agent(s, s.get(Site, site_id), key, hostname="PC-LAB-07")
            a = add_signed_alert(s, agent, key, user=user, category=category, severity=severity, matched=matched,
                                 context=context, window_title=title, application=app, rule=f"{category}/t",
                                 created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago))
            return a.id

    store.key = key
    store.audit_key = audit_key
    store.site_id = site_id
    return store


def raw_database_bytes(engine: Engine, tmp_path: Path) -> bytes:
    """Everything the database holds, read around SQLAlchemy: the SQLite file and its WAL, or every PostgreSQL
    table row as psycopg returns it with no WardWatch code involved."""
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database)
        parts = [path.read_bytes()]
        for suffix in ("-wal", "-journal"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                parts.append(extra.read_bytes())
        return b"".join(parts)
    import psycopg

    schema = engine.url.query["options"].split("=")[-1]
    out = []
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))]
        for name in tables:
            for row in conn.execute(f'SELECT * FROM "{name}"'):
                for value in row:
                    out.append(bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode())
    return b"\n".join(out)


def tamper(engine: Engine, sql: str, **params) -> None:
    """Change the database directly, as someone with a copy of it could."""
    with engine.begin() as conn:
        conn.execute(text(sql), params)


@pytest.fixture
def reviewers(store_engine, school):
    """Two invented DSLs; returns a function that closes an alert with a confirmed outcome, decided days ago."""
    from collector.store.models import Alert
    from collector.store.models_review import Review, User

    with audit.write_session(store_engine) as s:
        first = User(username="dsl.ivy", display_name="Ivy Inventedname", role="dsl", school_login="ivy")
        second = User(username="dsl.oak", display_name="Oak Madeup", role="deputy-dsl", school_login="oak")
        s.add_all([first, second])
        s.flush()
        ids = (first.id, second.id)

    def close(alert_id: str, outcome: str, days_ago: float = 0, reason: str = "Reviewed with the pupil",
              involved: str = "child-victim", nature: str = "inappropriate") -> None:
        at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
        escalating = outcome.startswith(("refer-", "report-"))
        with audit.write_session(store_engine) as s:
            s.add(Review(alert_id=alert_id, step="assess", reviewer_id=ids[0], involved=involved, nature=nature,
                         outcome=outcome, reason=reason, created_at=at - dt.timedelta(hours=1)))
            s.add(Review(alert_id=alert_id, step="confirm", reviewer_id=ids[1], outcome=outcome, created_at=at))
            s.get(Alert, alert_id).state = "escalated" if escalating else "closed"
            audit.append(s, "dsl.oak", "review.confirm", f"alert:{alert_id}", {"outcome": outcome})

    close.ids = ids
    return close
