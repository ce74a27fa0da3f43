"""Exactly-once alert storage: (agent_id, seq) is unique and a resend is answered with the stored id."""

from __future__ import annotations

from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from collector.protect.types import bind_rows
from collector.store.models import Alert


def insert_alerts(session: Session, rows: list[dict]) -> dict[int, tuple[str, bool]]:
    """Insert rows of one agent, skipping (agent_id, seq) pairs already stored.

    Returns seq -> (alert id, was it new). Call inside a transaction; the caller acks only after commit.
    """
    if not rows:
        return {}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # One statement for every batch size, so SQLAlchemy compiles it once and batches the rows itself; building a
    # multi-row VALUES per batch cost more than verifying the signatures. RETURNING names the rows this statement
    # inserted, so the usual all-new batch needs no second query.
    stmt = (insert(Alert).on_conflict_do_nothing(index_elements=["agent_id", "seq"])
            .returning(Alert.agent_id, Alert.seq))
    inserted = {(agent_id, seq) for agent_id, seq in session.execute(stmt, bind_rows(Alert.__table__, rows))}
    result = {r["seq"]: (r["id"], True) for r in rows if (r["agent_id"], r["seq"]) in inserted}
    resent = [(r["agent_id"], r["seq"]) for r in rows if (r["agent_id"], r["seq"]) not in inserted]
    if resent:
        stored = session.execute(
            select(Alert.agent_id, Alert.seq, Alert.id).where(tuple_(Alert.agent_id, Alert.seq).in_(resent)))
        result.update({seq: (alert_id, False) for _agent_id, seq, alert_id in stored})
    return result
