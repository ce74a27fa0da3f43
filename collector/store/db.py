"""Engine creation and migrations. SQLite (WAL) for one school, PostgreSQL (psycopg 3) for many."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
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
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=10, hide_parameters=True)


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
