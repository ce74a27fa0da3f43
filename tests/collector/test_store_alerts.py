"""Exactly-once storage on SQLite and PostgreSQL."""

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collector.store.alerts import insert_alerts
from collector.store.models import Agent, Alert, Site


def _agent(session: Session) -> Agent:
    site = Site(name="Test site")
    session.add(site)
    session.flush()
    agent = Agent(id="a" * 32, site_id=site.id, identity_public_key=b"k", cert_serial="1",
                  cert_not_after=dt.datetime.now(dt.UTC))
    session.add(agent)
    session.flush()
    return agent


def _row(agent: Agent, seq: int, matched: str = "m") -> dict:
    now = dt.datetime.now(dt.UTC)
    return {"id": str(uuid.uuid4()), "agent_id": agent.id, "seq": seq, "site_id": agent.site_id, "kind": "keyword",
            "category": "bullying", "severity": 3, "matched": matched, "created_at": now, "received_at": now,
            "payload": b"p", "signature": b"s", "details": {}}


def test_resend_is_recognised_and_not_stored_twice(store_engine):
    with Session(store_engine) as s, s.begin():
        agent = _agent(s)
        first = insert_alerts(s, [_row(agent, 1), _row(agent, 2)])
    assert all(new for _id, new in first.values())
    with Session(store_engine) as s, s.begin():
        agent = s.get(Agent, "a" * 32)
        again = insert_alerts(s, [_row(agent, 2), _row(agent, 3)])
    assert again[2] == (first[2][0], False)  # same id as stored the first time, marked not new
    assert again[3][1] is True
    with Session(store_engine) as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 3


def test_database_errors_never_carry_alert_content(store_engine):
    with Session(store_engine, expire_on_commit=False) as s, s.begin():
        agent = _agent(s)
    row = _row(agent, 1, matched="SECRET-CHILD-TEXT")
    row["agent_id"] = "missing-agent"  # violates the foreign key
    with pytest.raises(IntegrityError) as err, Session(store_engine) as s, s.begin():
        if store_engine.dialect.name == "sqlite":
            s.execute(text("PRAGMA foreign_keys=ON"))
        s.execute(Alert.__table__.insert().values(row))
    assert "SECRET-CHILD-TEXT" not in str(err.value)


def test_stored_content_is_sealed_and_reads_back_through_the_model(store_engine):
    """The insert seals content itself (not through the column types): what it writes must be ciphertext bound
    to its row, read back in plain by the ORM, with the model's defaults for the columns a row leaves out."""
    with Session(store_engine) as s, s.begin():
        agent = _agent(s)
        row = _row(agent, 7, matched="SECRET-CHILD-TEXT")
        row["context"] = "was said in class"
        row["details"] = {"usb": {"serial": "X1"}}
        stored = insert_alerts(s, [row])
    alert_id = stored[7][0]
    with store_engine.connect() as conn:
        raw = conn.execute(text("SELECT matched, context, window_title, details, payload FROM alerts")).one()
    assert b"SECRET-CHILD-TEXT" not in bytes(raw.matched) and b"was said" not in bytes(raw.context)
    assert bytes(raw.window_title) == b""  # empty stays empty, as the column type stores it
    with Session(store_engine) as s:
        alert = s.get(Alert, alert_id)
        assert (alert.matched, alert.context, alert.window_title) == ("SECRET-CHILD-TEXT", "was said in class", "")
        assert alert.details == {"usb": {"serial": "X1"}} and alert.payload == b"p"
        assert (alert.state, alert.confidence, alert.version, alert.signature_ok) == ("new", 1.0, 0, True)
        assert alert.received_at is not None


def _grouped(writer, uploads: list[list[dict]]) -> list:
    """Submit uploads so that the writer takes them as one group: it waits on the lock held here until all are in."""
    with writer.holding():
        return [writer.submit(rows) for rows in uploads]


def test_group_commit_answers_every_upload_even_one_whose_agent_hung_up(store_engine):
    from sqlalchemy.orm import sessionmaker

    from collector.store.alerts import AlertWriter

    with Session(store_engine, expire_on_commit=False) as s, s.begin():
        agent = _agent(s)
    writer = AlertWriter(sessionmaker(store_engine, expire_on_commit=False))
    first, gone, resend = _grouped(writer, [[_row(agent, 1), _row(agent, 2)], [_row(agent, 3)],
                                            [_row(agent, 1), _row(agent, 4)]])
    assert gone.cancel()  # its agent hung up before the commit
    stored = first.result(timeout=30)
    again = resend.result(timeout=30)
    key = agent.id
    assert stored[(key, 1)][1] and stored[(key, 2)][1]
    assert again[(key, 1)] == (stored[(key, 1)][0], False)  # the resend in the same group is a duplicate
    assert again[(key, 4)][1]
    with Session(store_engine) as s:  # the hung-up upload's alert is stored all the same; its resend will say so
        assert sorted(s.scalars(select(Alert.seq))) == [1, 2, 3, 4]
    # The writer thread survived the cancelled future: a later upload is answered.
    assert writer.submit([_row(agent, 5)]).result(timeout=30)[(key, 5)][1]


def test_a_failed_group_fails_every_upload_in_it_and_stores_nothing(store_engine):
    from sqlalchemy.orm import sessionmaker

    from collector.store.alerts import AlertWriter

    with Session(store_engine, expire_on_commit=False) as s, s.begin():
        agent = _agent(s)
    writer = AlertWriter(sessionmaker(store_engine, expire_on_commit=False))
    broken = _row(agent, 2)
    del broken["payload"]  # no value and no default: the group's statement cannot be built
    good, bad = _grouped(writer, [[_row(agent, 1)], [broken]])
    for future in (good, bad):
        with pytest.raises(KeyError, match="payload"):
            future.result(timeout=30)
    with Session(store_engine) as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0
