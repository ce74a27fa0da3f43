"""Exactly-once alert storage: (agent_id, seq) is unique and a resend is answered with the stored id.

This is the gateway's hot path, so it bypasses the ORM's per-value bind processing: the content columns are
sealed here, once per value, with the same format and binding (column + row id) that the column types in
collector/protect/types.py write and read, so every reader keeps decrypting through those types. On PostgreSQL a
batch is one prepared statement that takes every column as an array (`INSERT ... SELECT FROM unnest(...)`), sent
in binary; building a multi-row VALUES, or letting SQLAlchemy expand an executemany, cost more than verifying
the signatures.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

from sqlalchemy import Column, LargeBinary, MetaData, Table, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from collector.protect.crypto import seal_many
from collector.protect.keys import active_keyring
from collector.protect.types import encrypted_columns
from collector.store.group_commit import GroupCommitter
from collector.store.models import Alert

_TABLE = Alert.__table__
_SEALED = encrypted_columns(_TABLE)  # column name -> its _Encrypted type
_COLUMNS = [c.key for c in _TABLE.columns]


def _defaults() -> dict[str, Any]:
    """Per-column fallbacks for keys a caller leaves out: the model's scalar defaults (callable ones, such as
    received_at's clock, are called once per batch by `sealed_columns`)."""
    out: dict[str, Any] = {}
    for c in _TABLE.columns:
        if c.default is not None and c.default.is_scalar:
            out[c.key] = c.default.arg
        elif c.server_default is not None:
            out[c.key] = int(c.server_default.arg) if c.key == "version" else None
        elif c.nullable:
            out[c.key] = None
    return out


_DEFAULTS = _defaults()
_CALLABLE_DEFAULTS = {c.key: c.default.arg for c in _TABLE.columns if c.default is not None and c.default.is_callable}
# The same table with the content columns as plain bytes: the values reach it sealed already.
_RAW = Table(_TABLE.name, MetaData(), *[
    Column(c.name, LargeBinary if c.key in _SEALED else c.type, primary_key=c.primary_key) for c in _TABLE.columns])


def _pg_statement() -> str:
    dialect = postgresql.dialect()
    casts = []
    for c in _TABLE.columns:
        sql_type = "BYTEA" if c.key in _SEALED else c.type.compile(dialect=dialect)
        casts.append(f"%b::{sql_type}[]")
    names = ", ".join(c.name for c in _TABLE.columns)
    return (f"INSERT INTO {_TABLE.name} ({names}) SELECT * FROM unnest({', '.join(casts)}) "
            "ON CONFLICT (agent_id, seq) DO NOTHING RETURNING agent_id, seq")


_PG_INSERT = _pg_statement()


def sealed_columns(rows: list[dict]) -> dict[str, list]:
    """The rows as one list per column, every content value sealed for its row's id (as EncryptedText etc. would
    seal it: None stays NULL, an empty value is stored empty)."""
    ring = active_keyring()
    row_ids = [str(r["id"]) for r in rows]
    out: dict[str, list] = {}
    for name in _COLUMNS:
        if name in _DEFAULTS:
            default = _DEFAULTS[name]
            values = [r.get(name, default) for r in rows]
        elif all(name in r for r in rows):
            values = [r[name] for r in rows]
        elif name in _CALLABLE_DEFAULTS:
            default = _CALLABLE_DEFAULTS[name](None)  # SQLAlchemy's wrapper takes a context
            values = [r.get(name, default) for r in rows]
        else:
            raise KeyError(f"an alert row needs a value for {name}")
        col_type = _SEALED.get(name)
        if col_type is not None:
            encode = col_type._encode
            sealed = seal_many(ring, [b"" if v is None else encode(v) for v in values], col_type.column, row_ids)
            values = [None if v is None else s for v, s in zip(values, sealed, strict=True)]
        out[name] = values
    return out


def insert_alerts(session: Session, rows: list[dict]) -> dict[int, tuple[str, bool]]:
    """Insert rows of one agent, skipping (agent_id, seq) pairs already stored.

    Returns seq -> (alert id, was it new). Call inside a transaction; the caller acks only after commit.
    """
    return {seq: stored for (_agent_id, seq), stored in insert_alerts_keyed(session, rows).items()}


def insert_alerts_keyed(session: Session, rows: list[dict]) -> dict[tuple[str, int], tuple[str, bool]]:
    """Insert rows of any agents, skipping (agent_id, seq) pairs already stored (and repeats within `rows`:
    the first one is inserted). Returns (agent_id, seq) -> (alert id, was it new). Call inside a transaction."""
    if not rows:
        return {}
    unique: dict[tuple[str, int], dict] = {}
    for r in rows:
        unique.setdefault((r["agent_id"], r["seq"]), r)
    # Inserted in key order: two transactions storing overlapping resends (two workers or replicas, after a failover)
    # take the unique index's locks in one order, so neither waits for the other in a cycle.
    rows = [unique[key] for key in sorted(unique)]
    columns = sealed_columns(rows)
    session.flush()  # anything the caller added (the agent row, say) must be in the database before its alerts
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # The session's own connection and transaction: committed (or rolled back) by the caller with the rest.
        with connection.connection.driver_connection.cursor() as cur:
            cur.execute(_PG_INSERT, [columns[name] for name in _COLUMNS], prepare=True)
            inserted = set(cur.fetchall())
    else:
        stmt = (sqlite.insert(_RAW).on_conflict_do_nothing(index_elements=["agent_id", "seq"])
                .returning(_RAW.c.agent_id, _RAW.c.seq))
        params = [dict(zip(_COLUMNS, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        inserted = {(agent_id, seq) for agent_id, seq in connection.execute(stmt, params)}
    # RETURNING names the rows this statement inserted, so the usual all-new batch needs no second query.
    result = {key: (r["id"], True) for key, r in unique.items() if key in inserted}
    resent = [key for key in unique if key not in inserted]
    if resent:
        stored = session.execute(
            select(Alert.agent_id, Alert.seq, Alert.id).where(tuple_(Alert.agent_id, Alert.seq).in_(resent)))
        result.update({(agent_id, seq): (alert_id, False) for agent_id, seq, alert_id in stored})
    return result


class AlertWriter:
    """Group commit for uploads (collector/store/group_commit.py): the rows of every upload waiting at that moment
    go into one statement and one transaction, and each upload's future resolves only after the commit returned.
    There is no gathering delay: an upload's ack is on its alerts' latency path."""

    MAX_ROWS = 2000  # rows per transaction; an upload is never split

    def __init__(self, sessions) -> None:
        self._sessions = sessions
        self._committer: GroupCommitter[list[dict]] = GroupCommitter(self._store, "alert-writer",
                                                                     take=self._group_size)

    def submit(self, rows: list[dict]) -> concurrent.futures.Future:
        """Store `rows`; the future gives (agent_id, seq) -> (alert id, was it new) once they are committed."""
        return self._committer.submit(rows)

    def holding(self) -> threading.Condition:
        """Uploads submitted while this is held go into one group."""
        return self._committer.holding()

    def _group_size(self, uploads: list[list[dict]]) -> int:
        count = 0
        for n, rows in enumerate(uploads):
            count += len(rows)
            if n and count > self.MAX_ROWS:
                return n
        return len(uploads)

    def _store(self, uploads: list[list[dict]]) -> list[dict]:
        with self._sessions.begin() as s:
            stored = insert_alerts_keyed(s, [r for rows in uploads for r in rows])
        first: dict[tuple[str, int], int] = {}
        results = []
        for n, rows in enumerate(uploads):
            result = {}
            for r in rows:
                key = (r["agent_id"], r["seq"])
                alert_id, new = stored[key]
                # The same alert in two uploads of one group (an agent's resend): only the first stored it.
                result[key] = (alert_id, new and first.setdefault(key, n) == n)
            results.append(result)
        return results
