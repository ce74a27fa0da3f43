"""The append-only audit log: every entry carries the hash of the one before and the collector's Ed25519 signature.

An appender locks the single `audit_head` row first (SELECT ... FOR UPDATE on PostgreSQL; on SQLite the UPDATE
takes the database write lock), so concurrent writers form one chain with contiguous ids. Editing a row breaks its
hash, deleting one leaves a gap in the ids or a head that points past the end, and re-signing needs the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from collector.store.models_review import AuditEntry, AuditHead

GENESIS = "0" * 64
HEAD_ID = 1
VERIFY_BATCH = 1000


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str = ""


# ---------------------------------------------------------------- keys

def audit_key_path(data_dir: Path) -> Path:
    return data_dir / "pki" / "audit.key"


def load_or_create_key(path: Path) -> ed25519.Ed25519PrivateKey:
    """The collector's audit signing key; created (PKCS#8 PEM, mode 0600) if `init` has not made it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


# The signing key of this process, set once by whoever opens the collector (web app, CLI, demo).
_signing_key: ed25519.Ed25519PrivateKey | None = None


def use_key(key: ed25519.Ed25519PrivateKey) -> None:
    global _signing_key
    _signing_key = key


def use_data_dir(data_dir: Path) -> ed25519.Ed25519PrivateKey:
    key = load_or_create_key(audit_key_path(data_dir))
    use_key(key)
    return key


# ---------------------------------------------------------------- hashing

def _utc_text(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_detail(detail: dict) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(entry_id: int, at: str, actor: str, action: str, target: str, detail: str, prev_hash: str) -> str:
    # Length-prefixed fields: no choice of values can make two different entries hash the same text.
    h = hashlib.sha256()
    for part in (str(entry_id), at, actor, action, target, detail, prev_hash):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


# ---------------------------------------------------------------- writing

def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer. On SQLite this is BEGIN IMMEDIATE, so that a transaction which
    reads first and writes later waits for the lock instead of failing on a stale snapshot. Call it first."""
    if session.get_bind().dialect.name == "sqlite" and not session.in_transaction():
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session in one writing transaction, committed on success and rolled back on error."""
    with Session(engine, expire_on_commit=False) as session:
        begin_write(session)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _lock_head(session: Session) -> AuditHead:
    if session.get_bind().dialect.name == "sqlite":
        # An UPDATE takes SQLite's single write lock for the rest of the transaction.
        session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(last_id=AuditHead.last_id))
        head = session.execute(
            select(AuditHead).where(AuditHead.id == HEAD_ID).execution_options(populate_existing=True)
        ).scalar_one_or_none()
    else:
        head = session.execute(
            select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update().execution_options(
                populate_existing=True)
        ).scalar_one_or_none()
    if head is None:
        raise RuntimeError("audit_head row is missing: the database was not migrated by WardWatch")
    return head


def append(session: Session, actor: str, action: str, target: str, detail: dict | None = None,
           when: dt.datetime | None = None) -> AuditEntry:
    """Add one entry inside the caller's transaction. It is durable when the caller commits.

    Never put alert content (matched words, context, titles) or secrets in `detail`.
    """
    if _signing_key is None:
        raise RuntimeError("no audit signing key: call collector.audit.use_data_dir() first")
    head = _lock_head(session)
    entry_id = head.last_id + 1
    prev = head.last_hash or GENESIS
    at = _utc_text(when or dt.datetime.now(dt.UTC))
    detail_text = canonical_detail(detail or {})
    digest = entry_hash(entry_id, at, actor, action, target, detail_text, prev)
    entry = AuditEntry(id=entry_id, at=at, actor=actor[:255], action=action[:64], target=target[:255],
                       detail=detail_text, prev_hash=prev, hash=digest,
                       signature=_signing_key.sign(bytes.fromhex(digest)))
    session.add(entry)
    head.last_id = entry_id
    head.last_hash = digest
    session.flush()
    return entry


# ---------------------------------------------------------------- checking

def verify(session: Session, public_key: ed25519.Ed25519PublicKey) -> VerifyResult:
    """Walk the whole chain. The first entry that does not fit is named; later ones are not trusted."""
    head = session.get(AuditHead, HEAD_ID)
    expected_id = 1
    prev = GENESIS
    checked = 0
    query = select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=VERIFY_BATCH)
    for e in session.scalars(query):
        checked += 1
        if e.id != expected_id:
            return VerifyResult(False, checked, expected_id,
                                f"entry {expected_id} is missing (the next entry found is {e.id})")
        if e.prev_hash != prev:
            return VerifyResult(False, checked, e.id, "its link to the previous entry is broken")
        if entry_hash(e.id, e.at, e.actor, e.action, e.target, e.detail, e.prev_hash) != e.hash:
            return VerifyResult(False, checked, e.id, "its content does not match its hash (the row was edited)")
        try:
            public_key.verify(bytes(e.signature), bytes.fromhex(e.hash))
        except (InvalidSignature, ValueError):
            return VerifyResult(False, checked, e.id, "its signature does not verify with the collector's key")
        prev = e.hash
        expected_id += 1
    last_id = head.last_id if head else 0
    if last_id != expected_id - 1:
        return VerifyResult(False, checked, expected_id,
                            f"entry {expected_id} is missing: the log should end at entry {last_id}")
    if head is not None and last_id and head.last_hash != prev:
        return VerifyResult(False, checked, last_id, "the newest entry does not match the recorded head")
    return VerifyResult(True, checked)


def entries_for(session: Session, target: str) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).where(AuditEntry.target == target).order_by(AuditEntry.id)))
