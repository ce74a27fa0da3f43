"""Pooled PostgreSQL connections: checked with a round trip only after they sat idle, replaced if found dead."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from collector.store import db
from tests.conftest import _fresh_pg_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_engine():
    for url in _fresh_pg_schema():
        engine = db.make_engine(url)
        yield engine
        engine.dispose()


def _pid(conn) -> int:
    return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _pool_a_connection_the_server_then_kills(engine) -> int:
    """Leave a connection idle in the pool, then have the server end it (as a database failover would)."""
    first = engine.connect()
    pid = _pid(first)
    with engine.connect() as other:  # a second connection, opened while the first is checked out
        first.close()  # back into the pool, ahead of `other`
        other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    return pid


def test_an_idle_connection_closed_by_the_server_is_replaced_before_use(pg_engine, monkeypatch):
    monkeypatch.setattr(db, "IDLE_BEFORE_PING_S", 0.0)  # every checkout counts as after an idle spell
    dead = _pool_a_connection_the_server_then_kills(pg_engine)
    with pg_engine.connect() as conn:  # the pool offers the dead one first; the ping finds it and takes another
        assert _pid(conn) != dead


def test_a_connection_returned_moments_ago_is_used_without_a_ping(pg_engine, monkeypatch):
    """The other side of the trade: within the idle threshold nothing checks, so a connection killed in that
    window fails its one call (which the agent retries), and the pool then drops it."""
    monkeypatch.setattr(db, "IDLE_BEFORE_PING_S", 3600.0)
    dead = _pool_a_connection_the_server_then_kills(pg_engine)
    with pytest.raises(DBAPIError), pg_engine.connect() as conn:
        _pid(conn)
    with pg_engine.connect() as conn:
        assert _pid(conn) != dead


def test_the_idle_ping_leaves_no_transaction_open(pg_engine, monkeypatch):
    """The ping runs outside any transaction, as pool_pre_ping's does: a connection handed out mid-transaction
    would run the caller's first statement on a snapshot the ping began."""
    from psycopg.pq import TransactionStatus

    monkeypatch.setattr(db, "IDLE_BEFORE_PING_S", 0.0)
    with pg_engine.connect() as conn:
        _pid(conn)
    with pg_engine.connect() as conn:  # pinged on this checkout
        assert conn.connection.driver_connection.info.transaction_status == TransactionStatus.IDLE
