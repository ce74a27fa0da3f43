"""Engine creation and migrations. SQLite (WAL) for one school, PostgreSQL (psycopg 3) for many."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """An Engine with the per-backend settings WardWatch relies on (WAL and foreign keys on SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # hide_parameters: a failing statement must never put alert content into a log or an error message.
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # an ack promises durability; NORMAL could lose the last commit
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA secure_delete=ON")  # deleted alerts (retention) leave no bytes behind in free pages
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # pool_size covers the serve worker's database threads (16, see serve.py) plus the console and schedules:
    # connections beyond it are closed when returned, and reopening one per call cost more than the call.
    engine = create_engine(url, pool_size=20, max_overflow=10, hide_parameters=True)

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy) -> None:
        returned = record.info.get("checked_in_at")
        if returned is None or time.monotonic() - returned < IDLE_BEFORE_PING_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)  # pool_pre_ping's own round trip, outside any transaction
        except Exception as exc:  # any failure here means the connection is unusable, whatever the driver calls it
            # DisconnectionError makes the pool throw this connection away and check out another (three tries).
            raise DisconnectionError("a pooled connection was found closed") from exc

    event.listen(engine, "checkin", _note_checkin)
    return engine


# A pooled connection idle for longer than this is checked with a round trip before use. SQLAlchemy's
# pool_pre_ping checks every checkout, and on a busy gateway that round trip was a fifth of the database threads'
# time (profiled at 10,000 agents): a connection returned moments ago is as good as the call that used it. One that
# broke in between (a failover) fails its call, which the agent retries, and the pool drops every connection
# opened before the failure (SQLAlchemy invalidates the pool on a disconnect).
IDLE_BEFORE_PING_S = 5.0


def _note_checkin(_dbapi_conn, record) -> None:
    record.info["checked_in_at"] = time.monotonic()


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    import logging

    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)
    with engine.begin() as conn:
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def is_initialised(engine: Engine) -> bool:
    return inspect(engine).has_table("alembic_version")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
