"""Rewriting the stored form of sealed columns in batches: encrypting old plain rows, and re-keying.

Works on table and column names with plain SQL, not on the models, so that migrations can use it whatever the
models look like later. Each batch is its own UPDATE round; the caller decides the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, column, select, table, update
from sqlalchemy.types import LargeBinary

from collector.protect.crypto import key_id_in, seal, unseal
from collector.protect.keys import ContentKeyError, KeyRing

BATCH = 500


@dataclass(frozen=True)
class SealedColumn:
    table: str
    column: str
    row_key: str = "id"  # the column each value is bound to
    kind: str = "text"  # text | bytes | json: how an old plain value is turned into bytes

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


# Every sealed column, in one place for the migration and for key rotation.
SEALED_COLUMNS = (
    SealedColumn("alerts", "matched"),
    SealedColumn("alerts", "context"),
    SealedColumn("alerts", "window_title"),
    SealedColumn("alerts", "application"),
    SealedColumn("alerts", "details", kind="json"),
    SealedColumn("alerts", "payload", kind="bytes"),
    SealedColumn("reviews", "reason", row_key="alert_id"),
)


def _as_bytes(value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _transform_batch(conn: Connection, sealed: SealedColumn, change: Callable[[bytes, str], bytes | None],
                     after, batch: int) -> tuple[int, object]:
    """One batch of rows after primary key `after`: (values changed, the last key seen, or None at the end)."""
    t = table(sealed.table, column("id"), column(sealed.column, LargeBinary), column(sealed.row_key))
    query = select(t.c.id, t.c[sealed.column], t.c[sealed.row_key]).order_by(t.c.id).limit(batch)
    if after is not None:
        query = query.where(t.c.id > after)
    rows = conn.execute(query).all()
    if not rows:
        return 0, None
    updates = []
    for pk, value, row_key in rows:
        if value is None or len(value) == 0:
            continue
        new = change(_as_bytes(value), str(row_key))
        if new is not None:
            updates.append({"pk": pk, "new": new})
    if updates:
        stmt = update(t).where(t.c.id == bindparam("pk")).values(
            {sealed.column: bindparam("new", type_=LargeBinary)})
        conn.execute(stmt, updates)
    return len(updates), rows[-1][0]


def transform_column(conn: Connection, sealed: SealedColumn, change: Callable[[bytes, str], bytes | None],
                     batch: int = BATCH) -> int:
    """Apply `change(stored bytes, row key) -> new bytes or None (leave it)` to every non-empty value of one
    column, walking the table by primary key `id`, all in the caller's transaction. Returns values changed."""
    changed, after = 0, None
    while True:
        done, after = _transform_batch(conn, sealed, change, after, batch)
        changed += done
        if after is None:
            return changed


def transform_column_in_batches(engine: Engine, sealed: SealedColumn,
                                change: Callable[[bytes, str], bytes | None], batch: int = BATCH) -> int:
    """As transform_column, each batch committed on its own: a long re-encryption never holds the database's
    write lock for long, and an interrupted one keeps the batches it finished."""
    changed, after = 0, None
    while True:
        with engine.begin() as conn:
            done, after = _transform_batch(conn, sealed, change, after, batch)
        changed += done
        if after is None:
            return changed


def plain_to_sealed(ring: KeyRing, sealed: SealedColumn) -> Callable[[bytes, str], bytes | None]:
    """For the migration: the value is plain (UTF-8 text, JSON text or raw bytes); seal it for its row."""
    def change(value: bytes, row_key: str) -> bytes | None:
        if sealed.kind == "json" and value.strip() in (b"{}", b"[]", b"null", b""):
            return b""  # stored empty, read back as {} (see EncryptedJSON)
        return seal(ring, value, sealed.name, row_key)
    return change


def sealed_to_plain(ring: KeyRing, sealed: SealedColumn) -> Callable[[bytes, str], bytes | None]:
    """For the migration's downgrade."""
    def change(value: bytes, _row_key: str) -> bytes | None:
        return unseal(ring, value, sealed.name)[0]
    return change


def reseal_under_current(ring: KeyRing, sealed: SealedColumn) -> Callable[[bytes, str], bytes | None]:
    """For key rotation: values under an older key are opened and sealed again under the current one."""
    current, _key = ring.current_key()

    def change(value: bytes, row_key: str) -> bytes | None:
        if key_id_in(value) == current:
            return None  # done already (a rotation that was interrupted and run again)
        plain, sealed_for = unseal(ring, value, sealed.name)
        if sealed_for != row_key:
            raise ContentKeyError(f"{sealed.name} of row {row_key} holds content sealed for another row: "
                                  "the database was altered; rotation stopped")
        return seal(ring, plain, sealed.name, row_key)
    return change


def count_under_other_keys(conn: Connection, ring: KeyRing) -> int:
    """How many stored values are sealed under a key other than the current one."""
    current, _key = ring.current_key()
    total = 0
    for sealed in SEALED_COLUMNS:
        t = table(sealed.table, column(sealed.column, LargeBinary))
        for (value,) in conn.execute(select(t.c[sealed.column])):
            if value is not None and len(value) and key_id_in(_as_bytes(value)) != current:
                total += 1
    return total
