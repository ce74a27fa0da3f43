"""Shared fixtures: every store test runs on a real SQLite file and on the local PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.harness import PG_ADMIN, scratch_pg_schema

# Under CI a skipped PostgreSQL run would hide half the store suite, so it is a failure there.
PG_REQUIRED = os.environ.get("CI", "").lower() in ("1", "true", "yes") or bool(os.environ.get("WARDWATCH_REQUIRE_PG"))


def _pg_unavailable_reason() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable: {str(exc).strip().splitlines()[0]}"


def _fresh_pg_schema() -> Iterator[str]:
    reason = _pg_unavailable_reason()
    if reason:
        if PG_REQUIRED:
            pytest.fail(f"PostgreSQL tests are required under CI but cannot run: {reason}")
        pytest.skip(reason)
    with scratch_pg_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> Iterator[str]:
    """A database URL with an empty, private database: a fresh SQLite file or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'collector.db'}"
    else:
        yield from _fresh_pg_schema()


@pytest.fixture
def store_engine(db_url):
    """A migrated SQLAlchemy Engine on db_url."""
    from collector.store.db import make_engine, migrate

    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def smtp():
    """A real SMTP server on 127.0.0.1 (aiosmtpd): yields (Inbox, port)."""
    from aiosmtpd.controller import Controller

    from tests.harness import Inbox, free_port

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()
