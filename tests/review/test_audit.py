"""The audit log's hash chain and signatures catch edits and deletions; concurrent appenders form one chain."""

import threading

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from collector import audit
from collector.store.models_review import AuditEntry


def _key(world):
    return audit.load_or_create_key(audit.audit_key_path(world.data_dir)).public_key()


def _append(world, n, actor="tester"):
    for i in range(n):
        with audit.write_session(world.engine) as s:
            audit.append(s, actor, "test.action", f"thing:{i}", {"i": i})


def _verify(world):
    with Session(world.engine) as s:
        return audit.verify(s, _key(world))


def test_intact_chain_verifies(world):
    _append(world, 5)
    result = _verify(world)
    assert result.ok and result.checked >= 5


def test_an_edited_row_is_named(world):
    _append(world, 5)
    with Session(world.engine) as s:
        first = s.scalar(select(func.min(AuditEntry.id)).where(AuditEntry.target == "thing:2"))
    with world.engine.begin() as c:
        c.execute(update(AuditEntry).where(AuditEntry.id == first).values(actor="someone else"))
    result = _verify(world)
    assert (result.ok, result.first_bad_id) == (False, first)
    assert "edited" in result.reason


def test_a_deleted_row_is_named(world):
    _append(world, 5)
    with Session(world.engine) as s:
        victim = s.scalar(select(AuditEntry.id).where(AuditEntry.target == "thing:3"))
    with world.engine.begin() as c:
        c.execute(delete(AuditEntry).where(AuditEntry.id == victim))
    result = _verify(world)
    assert (result.ok, result.first_bad_id) == (False, victim)
    assert "missing" in result.reason


def test_deleting_the_newest_row_is_caught(world):
    _append(world, 3)
    with Session(world.engine) as s:
        last = s.scalar(select(func.max(AuditEntry.id)))
    with world.engine.begin() as c:
        c.execute(delete(AuditEntry).where(AuditEntry.id == last))
    result = _verify(world)
    assert (result.ok, result.first_bad_id) == (False, last)


def test_a_rehashed_forgery_fails_the_signature(world):
    _append(world, 3)
    with Session(world.engine) as s:
        e = s.scalar(select(AuditEntry).where(AuditEntry.target == "thing:2"))
        forged = audit.entry_hash(e.id, e.at, "forger", e.action, e.target, e.detail, e.prev_hash)
        entry_id = e.id
    with world.engine.begin() as c:
        c.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(actor="forger", hash=forged))
        c.execute(text("UPDATE audit_head SET last_hash = :h"), {"h": forged})
    result = _verify(world)
    assert (result.ok, result.first_bad_id) == (False, entry_id)
    assert "signature" in result.reason


def test_concurrent_appenders_form_one_contiguous_chain(world):
    before = _verify(world).checked
    threads = [threading.Thread(target=_append, args=(world, 10, f"writer{n}")) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    result = _verify(world)
    assert result.ok, result.reason
    assert result.checked == before + 40
