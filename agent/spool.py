"""The durable agent spool: SQLite in WAL mode. lease -> send -> delete on ack.

Every alert gets its sequence number inside the same transaction that stores it, so a number is never reused
and never skipped silently; the collector's (agent_id, seq) uniqueness then makes delivery exactly-once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.spool_policy import Queued, make_room, plan_admission

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    severity INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    envelope BLOB NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rejected (seq INTEGER PRIMARY KEY, reason TEXT NOT NULL, at REAL NOT NULL,
                                     envelope BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dropped (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL,
                                    first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
                                    max_severity INTEGER NOT NULL);
"""


class SpoolFull(Exception):
    """The spool's disk is full and nothing may be dropped to make room."""


@dataclass(frozen=True)
class Leased:
    seq: int
    envelope: bytes


@dataclass(frozen=True)
class DroppedSummary:
    count: int
    first_seq: int
    last_seq: int
    max_severity: int


def _is_full(exc: sqlite3.OperationalError) -> bool:
    return "full" in str(exc).lower()


class Spool:
    """Thread-safe; every method is one short transaction."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, max_pages: int | None = None):
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an alert accepted is an alert kept, even on power loss
        self._db.execute("PRAGMA busy_timeout=30000")
        if max_pages is not None:  # lets tests and small devices cap the file as a full disk would
            self._db.execute(f"PRAGMA max_page_count={int(max_pages)}")
        self._db.executescript(SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('next_seq', 1)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -------------------------------------------------------------- writing

    def enqueue(self, severity: int, make_envelope: Callable[[int], bytes]) -> int:
        """Assign the next seq, build the signed envelope for it and store it, atomically. Returns the seq."""
        with self._lock:
            for attempt in range(2):
                try:
                    return self._enqueue(severity, make_envelope)
                except sqlite3.OperationalError as exc:
                    self._rollback()
                    if not _is_full(exc):
                        raise
                # The disk (or page cap) is full: drop what may be dropped, then try once more.
                if attempt == 0 and not self._free_space():
                    break
            raise SpoolFull(f"the spool at {self.path} is full")

    def _enqueue(self, severity: int, make_envelope: Callable[[int], bytes]) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        seq = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
        envelope = make_envelope(seq)
        queued = [Queued(*r) for r in db.execute("SELECT seq, severity, size FROM outbox")]
        plan = plan_admission(queued, severity, len(envelope), self.max_bytes)
        for victim in plan.victims:
            self._drop(victim)
        if plan.admit:
            db.execute("INSERT INTO outbox(seq, severity, size, created_at, envelope) VALUES (?, ?, ?, ?, ?)",
                       (seq, severity, len(envelope), time.time(), envelope))
        else:
            self._record_drop(seq, severity)
        db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
        db.execute("COMMIT")
        return seq

    def _drop(self, seq: int) -> None:
        sev = self._db.execute("SELECT severity FROM outbox WHERE seq = ?", (seq,)).fetchone()[0]
        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        self._record_drop(seq, sev)

    def _record_drop(self, seq: int, severity: int) -> None:
        self._db.execute(
            "INSERT INTO dropped(id, count, first_seq, last_seq, max_severity) VALUES (1, 1, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET count = count + 1, first_seq = min(first_seq, excluded.first_seq), "
            "last_seq = max(last_seq, excluded.last_seq), max_severity = max(max_severity, excluded.max_severity)",
            (seq, seq, severity))

    def _free_space(self) -> bool:
        queued = [Queued(*r) for r in self._db.execute("SELECT seq, severity, size FROM outbox")]
        victims = make_room(queued, need_bytes=64 * 1024)
        if not victims:
            return False
        self._db.execute("BEGIN IMMEDIATE")
        for victim in victims:
            self._drop(victim)
        self._db.execute("COMMIT")
        return True

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # -------------------------------------------------------------- delivering

    def lease(self, max_items: int = 200, max_bytes: int = 1024 * 1024, lease_s: float = 60.0) -> list[Leased]:
        """Take up to max_items unleased alerts (highest severity first, then oldest) for one upload."""
        now = time.time()
        with self._lock:
            db = self._db
            # A read first: an idle spool must not take the write lock (and an fsync) on every poll.
            if db.execute("SELECT 1 FROM outbox WHERE lease_until <= ? LIMIT 1", (now,)).fetchone() is None:
                return []
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT seq, envelope FROM outbox WHERE lease_until <= ? "
                              "ORDER BY severity DESC, seq LIMIT ?", (now, max_items)).fetchall()
            out: list[Leased] = []
            total = 0
            for seq, envelope in rows:
                if out and total + len(envelope) > max_bytes:
                    break
                out.append(Leased(seq, envelope))
                total += len(envelope)
            db.executemany("UPDATE outbox SET lease_until = ?, attempts = attempts + 1 WHERE seq = ?",
                           [(now + lease_s, item.seq) for item in out])
            db.execute("COMMIT")
            return out

    def ack(self, seqs: list[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self._db.execute("COMMIT")

    def release(self, seqs: list[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE outbox SET lease_until = 0 WHERE seq = ?", [(s,) for s in seqs])
            self._db.execute("COMMIT")

    def reject(self, seq: int, reason: str) -> None:
        """Set aside an alert the collector will never accept, so it is not resent forever but not lost."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT envelope FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if row is not None:
                db.execute("INSERT OR REPLACE INTO rejected(seq, reason, at, envelope) VALUES (?, ?, ?, ?)",
                           (seq, reason[:500], time.time(), row[0]))
                db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            db.execute("COMMIT")

    def take_dropped(self, make_envelope: Callable[[DroppedSummary, int], bytes]) -> int | None:
        """If alerts were dropped, queue one signed 'dropped N' alert and reset the count, atomically."""
        with self._lock:
            db = self._db
            if db.execute("SELECT 1 FROM dropped WHERE id = 1").fetchone() is None:
                return None
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT count, first_seq, last_seq, max_severity FROM dropped WHERE id = 1").fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            summary = DroppedSummary(*row)
            seq = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
            envelope = make_envelope(summary, seq)
            db.execute("INSERT INTO outbox(seq, severity, size, created_at, envelope) VALUES (?, ?, ?, ?, ?)",
                       (seq, 2, len(envelope), time.time(), envelope))
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
            db.execute("DELETE FROM dropped WHERE id = 1")
            db.execute("COMMIT")
            return seq

    # -------------------------------------------------------------- reading

    def depth(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def pending_seqs(self) -> list[int]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT seq FROM outbox ORDER BY seq")]

    def rejected(self) -> list[tuple[int, str]]:
        with self._lock:
            return list(self._db.execute("SELECT seq, reason FROM rejected ORDER BY seq"))

    def last_seq(self) -> int:
        with self._lock:
            return self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0] - 1
