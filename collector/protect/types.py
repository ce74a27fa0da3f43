"""Column types that keep alert content encrypted in the database and plain in Python.

`EncryptedText`, `EncryptedBytes` and `EncryptedJSON` seal on the way in and open on the way out, so every reader
(CLI, console, reports) keeps reading `alert.matched` as before.

A column type sees one value, never its row, so binding a ciphertext to its row takes two more steps:
- writing: values are wrapped with their row key (`bound`) before they reach the type. ORM flushes are wrapped by
  mapper events, and ORM-enabled INSERT statements (`insert(Alert).values(rows)`, as the gateway stores alerts)
  by a session event; every code path that stores content goes through one of the two.
- reading: a value comes back carrying the row key it was sealed for, and a load event checks it against the row
  it was loaded into. A ciphertext copied from another row decrypts, but is refused.
Empty values are stored empty: emptiness says nothing about a pupil, and defaults need no row.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import LargeBinary, Table, event
from sqlalchemy.orm import Mapper, Session, attributes
from sqlalchemy.sql import Insert
from sqlalchemy.types import TypeDecorator

from collector.protect.crypto import seal, unseal
from collector.protect.keys import ContentKeyError, active_keyring


class BoundText(str):
    row_key: str | None = None


class BoundBytes(bytes):
    row_key: str | None = None


class BoundDict(dict):
    row_key: str | None = None


class BoundList(list):
    row_key: str | None = None


_BOUND_TYPES = ((str, BoundText), (bytes, BoundBytes), (dict, BoundDict), (list, BoundList))


def bound(value: Any, row_key: str) -> Any:
    """`value` marked with the row it belongs to (unchanged if it cannot carry a mark, e.g. None)."""
    for plain, marked in _BOUND_TYPES:
        if isinstance(value, plain):
            out = marked(value)
            out.row_key = row_key
            return out
    return value


def row_key_of(value: Any) -> str | None:
    return getattr(value, "row_key", None)


class _Encrypted(TypeDecorator):
    impl = LargeBinary
    cache_ok = True

    def __init__(self, column: str, row_key: str = "id") -> None:
        """`column` is "table.column" (it is authenticated with each value); `row_key` names the attribute of the
        row that each value is bound to."""
        super().__init__()
        self.column = column
        self.row_key = row_key

    def _encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def _decode(self, plain: bytes) -> Any:
        raise NotImplementedError

    def _empty(self) -> Any:
        raise NotImplementedError

    def process_bind_param(self, value: Any, dialect) -> bytes | None:
        if value is None:
            return None
        plain = self._encode(value)
        if not plain:
            return b""
        return seal(active_keyring(), plain, self.column, row_key_of(value) or "")

    def process_result_value(self, value: bytes | None, dialect) -> Any:
        if value is None:
            return None
        if not value:
            return self._empty()
        plain, row_key = unseal(active_keyring(), bytes(value), self.column)
        return bound(self._decode(plain), row_key)


class EncryptedText(_Encrypted):
    cache_ok = True

    def _encode(self, value: Any) -> bytes:
        return str(value).encode("utf-8")

    def _decode(self, plain: bytes) -> str:
        return plain.decode("utf-8")

    def _empty(self) -> str:
        return ""


class EncryptedBytes(_Encrypted):
    cache_ok = True

    def _encode(self, value: Any) -> bytes:
        return bytes(value)

    def _decode(self, plain: bytes) -> bytes:
        return plain

    def _empty(self) -> bytes:
        return b""


class EncryptedJSON(_Encrypted):
    """JSON text, sealed. An empty dict or list is stored empty and read back as an empty dict."""

    cache_ok = True

    def _encode(self, value: Any) -> bytes:
        if value == {} or value == []:
            return b""
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")

    def _decode(self, plain: bytes) -> Any:
        return json.loads(plain)

    def _empty(self) -> dict:
        return {}


# ---------------------------------------------------------------- which columns, bound to what

def encrypted_columns(table: Table) -> dict[str, _Encrypted]:
    return {c.key: c.type for c in table.columns if isinstance(c.type, _Encrypted)}


def _row_key_value(obj_or_row: Any, name: str) -> str | None:
    value = obj_or_row.get(name) if isinstance(obj_or_row, dict) else getattr(obj_or_row, name, None)
    return None if value is None else str(value)


def bind_rows(table: Table, rows: list[dict]) -> list[dict]:
    """Rows for an executemany INSERT with each content value bound to its row (by the column's row key)."""
    columns = encrypted_columns(table)
    if not columns:
        return rows
    out = []
    for row in rows:
        row = dict(row)
        for name, col_type in columns.items():
            if name in row and row.get(col_type.row_key) is not None:
                row[name] = bound(row[name], str(row[col_type.row_key]))
        out.append(row)
    return out


# ---------------------------------------------------------------- writing through the ORM unit of work

def _bind_instance(target: Any, table: Table, only_changed: bool) -> None:
    state = attributes.instance_state(target)
    for key, col_type in encrypted_columns(table).items():
        if key not in state.dict:
            continue
        if only_changed and not state.attrs[key].history.has_changes():
            continue
        row_key = _row_key_value(target, col_type.row_key)
        value = state.dict[key]
        if row_key is not None and row_key_of(value) != row_key:
            setattr(target, key, bound(value, row_key))


@event.listens_for(Mapper, "before_insert")
def _before_insert(mapper: Mapper, _connection, target: Any) -> None:
    if isinstance(mapper.local_table, Table) and encrypted_columns(mapper.local_table):
        _bind_instance(target, mapper.local_table, only_changed=False)


@event.listens_for(Mapper, "before_update")
def _before_update(mapper: Mapper, _connection, target: Any) -> None:
    if isinstance(mapper.local_table, Table) and encrypted_columns(mapper.local_table):
        _bind_instance(target, mapper.local_table, only_changed=True)


# ---------------------------------------------------------------- writing through ORM-enabled INSERT statements

def _bind_insert(stmt: Insert) -> Insert | None:
    """A copy of an INSERT whose content values are bound to their rows, or None if it carries no content.

    Reaches into the statement's value lists (`_multi_values` / `_values`): SQLAlchemy offers no public way to
    rewrite the values of a built statement, and the gateway's INSERT ... ON CONFLICT must keep its clause."""
    if not isinstance(stmt.table, Table):
        return None
    columns = encrypted_columns(stmt.table)
    if not columns:
        return None

    def bind_row(row: dict) -> dict:
        by_key = {getattr(c, "key", c): v for c, v in row.items()}
        out = {}
        for col, value in row.items():
            name = getattr(col, "key", col)
            if name in columns:
                row_key = by_key.get(columns[name].row_key)
                row_key = getattr(row_key, "value", row_key)  # a single-row VALUES holds bind parameters
                if row_key is not None:
                    if hasattr(value, "_with_value"):
                        value = value._with_value(bound(value.value, str(row_key)))
                    else:
                        value = bound(value, str(row_key))
            out[col] = value
        return out

    new = stmt._generate()
    if stmt._multi_values:
        new._multi_values = tuple([bind_row(row) for row in batch] for batch in stmt._multi_values)
    elif stmt._values:
        new._values = type(stmt._values)(bind_row(dict(stmt._values)))
    else:
        return None
    return new


@event.listens_for(Session, "do_orm_execute")
def _bind_orm_insert(state) -> None:
    if state.is_insert and isinstance(state.statement, Insert):
        rewritten = _bind_insert(state.statement)
        if rewritten is not None:
            state.statement = rewritten


# ---------------------------------------------------------------- reading: the row must be the one sealed for

def check_row_binding(target: Any, table: Table, keys: list[str] | None = None) -> None:
    state = attributes.instance_state(target)
    for key, col_type in encrypted_columns(table).items():
        if (keys is not None and key not in keys) or key not in state.dict:
            continue
        sealed_for = row_key_of(state.dict[key])
        if sealed_for is None:
            continue  # empty, or NULL: nothing sealed
        expected = _row_key_value(target, col_type.row_key)
        if sealed_for != expected:
            raise ContentKeyError(f"{col_type.column} of row {expected} holds content sealed for another row: "
                                  "the database was altered")


@event.listens_for(Mapper, "load")
def _on_load(target: Any, _context) -> None:
    table = attributes.instance_state(target).mapper.local_table
    if isinstance(table, Table) and encrypted_columns(table):
        check_row_binding(target, table)


@event.listens_for(Mapper, "refresh")
def _on_refresh(target: Any, _context, attrs) -> None:
    table = attributes.instance_state(target).mapper.local_table
    if isinstance(table, Table) and encrypted_columns(table):
        check_row_binding(target, table, list(attrs) if attrs else None)
