"""The SQLite spool on real files: seq numbering, leases, drops, a full database."""

import sqlite3

import pytest

from agent.spool import Spool, SpoolFull


def env(seq: int, size: int = 100) -> bytes:
    return seq.to_bytes(8, "big") + b"x" * size


def test_seq_is_monotonic_and_survives_reopening(tmp_path):
    spool = Spool(tmp_path / "s.db")
    assert [spool.enqueue(3, env) for _ in range(3)] == [1, 2, 3]
    spool.ack([1, 2, 3])
    spool.close()
    spool = Spool(tmp_path / "s.db")
    assert spool.enqueue(3, env) == 4  # never reused, even after everything was acked
    assert sqlite3.connect(tmp_path / "s.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_lease_hides_items_until_released_and_orders_by_severity(tmp_path):
    spool = Spool(tmp_path / "s.db")
    spool.enqueue(1, env)
    spool.enqueue(5, env)
    spool.enqueue(3, env)
    assert [item.seq for item in spool.lease()] == [2, 3, 1]
    assert spool.lease() == []
    spool.release([3])
    assert [item.seq for item in spool.lease()] == [3]


def test_rejected_items_are_set_aside_not_lost(tmp_path):
    spool = Spool(tmp_path / "s.db")
    seq = spool.enqueue(3, env)
    spool.reject(seq, "signature does not verify")
    assert spool.depth() == 0 and spool.rejected() == [(seq, "signature does not verify")]


def test_size_bound_drops_low_severity_and_reports_it(tmp_path):
    spool = Spool(tmp_path / "s.db", max_bytes=1000)
    low = [spool.enqueue(1, lambda s: env(s, 292)) for _ in range(3)]
    high = spool.enqueue(5, lambda s: env(s, 492))
    assert spool.pending_seqs() == [low[2], high]
    seq = spool.take_dropped(lambda summary, s: f"{summary.count}:{summary.first_seq}-{summary.last_seq}".encode())
    assert seq == high + 1
    leased = {item.seq: item.envelope for item in spool.lease()}
    assert leased[seq] == f"2:{low[0]}-{low[1]}".encode()
    assert spool.take_dropped(lambda summary, s: b"") is None  # the count was reset with the report


def test_full_database_keeps_what_it_accepted_and_frees_low_severity_first(tmp_path):
    spool = Spool(tmp_path / "s.db", max_pages=40)  # SQLite answers SQLITE_FULL as on a full disk
    accepted = []
    with pytest.raises(SpoolFull):
        for _ in range(1000):
            accepted.append(spool.enqueue(4, lambda s: env(s, 3000)))
    assert spool.pending_seqs() == accepted
    spool.ack(accepted[:2])
    low = spool.enqueue(1, lambda s: env(s, 2000))
    assert low == accepted[-1] + 1  # the failed attempt did not consume a seq
    spool.close()
    assert sqlite3.connect(tmp_path / "s.db").execute("PRAGMA integrity_check").fetchone()[0] == "ok"
