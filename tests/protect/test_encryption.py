"""Alert content is sealed at rest on SQLite and PostgreSQL: raw bytes show none of it, reads are unchanged."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from collector import audit
from collector.ingest import verify_signature
from collector.protect import keys
from collector.store.models import Agent, Alert
from collector.store.models_review import Review, User
from tests.protect.conftest import raw_database_bytes, tamper

MATCHED = "quokka-ladder-4471"
CONTEXT = "nobody would notice if the zephyr-lantern went out"
TITLE = "Diary of Wilhelmina Fictitious - Notes"
APP = "scribble-pad-9.exe"
REASON = "Spoke to the pupil about the marmalade-compass worries"


def _review(engine, alert_id: str) -> None:
    with audit.write_session(engine) as s:
        user = User(username="dsl.test", role="dsl")
        s.add(user)
        s.flush()
        s.add(Review(alert_id=alert_id, step="assess", reviewer_id=user.id, reason=REASON))


def test_raw_database_holds_no_alert_content(school, store_engine, tmp_path):
    alert_id = school(matched=MATCHED, context=CONTEXT, title=TITLE, app=APP)
    _review(store_engine, alert_id)

    raw = raw_database_bytes(store_engine, tmp_path)
    assert alert_id.encode() in raw  # the reader really sees the rows
    for secret in (MATCHED, CONTEXT, TITLE, APP, REASON, "zephyr", "Wilhelmina", "marmalade"):
        assert secret.encode() not in raw, f"{secret!r} is readable in the raw database"

    with Session(store_engine) as s:
        a = s.get(Alert, alert_id)
        assert (a.matched, a.context, a.window_title, a.application) == (MATCHED, CONTEXT, TITLE, APP)
        assert s.scalars(select(Review.reason)).one() == REASON
        # The evidence decrypts to the agent's exact bytes: its signature still verifies.
        key = load_der_public_key(s.get(Agent, a.agent_id).identity_public_key)
        assert verify_signature(key, a.payload, a.signature)


def test_usb_details_are_sealed_and_empty_values_stay_empty(school, store_engine, tmp_path):
    alert_id = school(matched=MATCHED)
    with audit.write_session(store_engine) as s:
        a = s.get(Alert, alert_id)
        a.details = {"usb": {"serial": "SERIAL-OTTERBURN-55", "model": "Invented Stick"}}
    assert b"OTTERBURN" not in raw_database_bytes(store_engine, tmp_path)
    with Session(store_engine) as s:
        a = s.get(Alert, alert_id)
        assert a.details == {"usb": {"serial": "SERIAL-OTTERBURN-55", "model": "Invented Stick"}}
        assert (a.context, a.window_title) == ("", "")


def test_a_different_key_is_a_clear_error_not_garbage(school, store_engine):
    alert_id = school(matched=MATCHED, context=CONTEXT)
    held = keys.use_keyring(keys.KeyRing.of(secrets.token_bytes(32), source="another key file"))
    try:
        with Session(store_engine) as s, pytest.raises(keys.ContentKeyError) as err:
            s.get(Alert, alert_id)
    finally:
        keys.use_keyring(held)
    assert held.current.hex() in str(err.value)
    assert "does not hold" in str(err.value)
    assert MATCHED not in str(err.value)


def test_content_moved_to_another_row_is_refused(school, store_engine):
    victim = school(user="pupil.amy", matched="harmless words", context="harmless words here")
    source = school(user="pupil.bob", matched=MATCHED, context=CONTEXT)
    tamper(store_engine, "UPDATE alerts SET context = (SELECT context FROM alerts WHERE id = :src) WHERE id = :dst",
           src=source, dst=victim)
    with Session(store_engine) as s, pytest.raises(keys.ContentKeyError, match="sealed for another row"):
        s.get(Alert, victim)
    with Session(store_engine) as s:  # the row it came from is untouched and still reads
        assert s.get(Alert, source).context == CONTEXT


def test_content_moved_to_another_column_does_not_decrypt(school, store_engine):
    alert_id = school(matched=MATCHED, context=CONTEXT, title=TITLE)
    tamper(store_engine, "UPDATE alerts SET window_title = context WHERE id = :id", id=alert_id)
    with Session(store_engine) as s, pytest.raises(keys.ContentKeyError, match="does not decrypt"):
        s.get(Alert, alert_id)


def test_queue_filter_by_pupil_still_works(school, store_engine):
    """user_name stays a clear pseudonymous key (see docs/dpia.md), so the console's pupil filter is SQL."""
    school(user="pupil.amy", matched="one")
    school(user="pupil.bob", matched="two")
    with Session(store_engine) as s:
        rows = s.scalars(select(Alert).where(Alert.user_name == "pupil.bob")).all()
    assert [a.matched for a in rows] == ["two"]


def test_migration_0004_seals_rows_stored_before_it(db_url, ring, tmp_path):
    from alembic import command

    from collector.store.db import alembic_config, make_engine

    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(db_url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
            conn.execute(text("INSERT INTO sites (id, name, default_age_band, created_at) "
                              "VALUES (1, 'Old school', 'secondary', CURRENT_TIMESTAMP)"))
            conn.execute(text(
                "INSERT INTO agents (id, site_id, identity_public_key, cert_serial, cert_not_after, hostname, os, "
                "os_version, agent_version, bundle_version, age_band, status, enrolled_at, last_instance_id, "
                "coverage_gaps, spool_depth) VALUES ('a1', 1, :k, '1', CURRENT_TIMESTAMP, 'PC', '', '', '', '', "
                "'secondary', 'active', CURRENT_TIMESTAMP, '', '[]', 0)"), {"k": b"key"})
            for n, (alert_id, details) in enumerate([("old-1", '{"usb": {"serial": "OLDSERIAL-77"}}'),
                                                     ("old-2", "{}")], start=1):
                conn.execute(text(
                    "INSERT INTO alerts (id, agent_id, seq, site_id, kind, category, severity, rule, confidence, "
                    "source, hostname, user_name, age_band, matched, context, window_title, application, details, "
                    "bundle_version, created_at, received_at, state, version, payload, signature, signature_ok) "
                    "VALUES (:id, 'a1', :seq, 1, 'keyword', 'bullying', 3, 'r', 1.0, 'typed', 'PC', 'pupil.old', "
                    "'secondary', :m, :c, 'Old title', 'old.exe', :d, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
                    "'new', 0, :p, :s, true)"),
                    {"id": alert_id, "seq": n, "m": f"{MATCHED}-{n}", "c": CONTEXT, "d": details,
                     "p": f"payload {MATCHED}".encode(), "s": b"sig"})
        with engine.begin() as conn:
            cfg = alembic_config(db_url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        if engine.dialect.name == "sqlite":
            # The write-ahead log keeps the frames of the plain inserts made before the upgrade until a checkpoint.
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        raw = raw_database_bytes(engine, tmp_path)
        assert b"old-1" in raw
        for secret in (MATCHED, "zephyr", "OLDSERIAL", "Old title", "old.exe"):
            assert secret.encode() not in raw
        with Session(engine) as s:
            one, two = s.get(Alert, "old-1"), s.get(Alert, "old-2")
            assert (one.matched, one.context, one.window_title, one.application) == (
                f"{MATCHED}-1", CONTEXT, "Old title", "old.exe")
            assert one.details == {"usb": {"serial": "OLDSERIAL-77"}}
            assert two.details == {}
            assert one.payload == f"payload {MATCHED}".encode()
    finally:
        engine.dispose()


def test_migration_0004_downgrade_gives_the_plain_columns_back(school, store_engine):
    from alembic import command

    from collector.store.db import alembic_config

    alert_id = school(matched=MATCHED, context=CONTEXT, title=TITLE, app=APP)
    with store_engine.begin() as conn:
        cfg = alembic_config(store_engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    with store_engine.connect() as conn:
        row = conn.execute(text("SELECT matched, context, window_title, application, details FROM alerts "
                                "WHERE id = :id"), {"id": alert_id}).one()
    assert tuple(row[:4]) == (MATCHED, CONTEXT, TITLE, APP)
    assert row[4] in ({}, "{}")  # psycopg parses JSON; SQLite gives the text


def test_seal_many_writes_what_seal_writes():
    """The gateway seals a batch at once; each value must open like one from seal(), for its own row only."""
    import os as _os

    from collector.protect.crypto import seal_many, unseal
    from collector.protect.keys import ContentKeyError, KeyRing

    ring = KeyRing.of(_os.urandom(32))
    blobs = seal_many(ring, [b"first", b"", b"third"], "alerts.matched", ["r1", "r2", "r3"])
    assert blobs[1] == b""
    assert unseal(ring, blobs[0], "alerts.matched") == (b"first", "r1")
    assert unseal(ring, blobs[2], "alerts.matched") == (b"third", "r3")
    same = seal_many(ring, [b"same", b"same"], "alerts.matched", ["r1", "r1"])
    assert same[0] != same[1]  # every value its own nonce
    with pytest.raises(ContentKeyError):
        unseal(ring, blobs[0], "alerts.context")  # another column's AAD
