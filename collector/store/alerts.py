"""Exactly-once alert storage: (agent_id, seq) is unique and a resend is answered with the stored id."""

from __future__ import annotations

from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from collector.store.models import Alert


def insert_alerts(session: Session, rows: list[dict]) -> dict[int, tuple[str, bool]]:
    """Insert rows of one agent, skipping (agent_id, seq) pairs already stored.

    Returns seq -> (alert id, was it new). Call inside a transaction; the caller acks only after commit.
    """
    if not rows:
        return {}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Alert).values(rows).on_conflict_do_nothing(index_elements=["agent_id", "seq"])
    session.execute(stmt)
    wanted = {(r["agent_id"], r["seq"]): r["id"] for r in rows}
    stored = session.execute(
        select(Alert.agent_id, Alert.seq, Alert.id).where(tuple_(Alert.agent_id, Alert.seq).in_(list(wanted)))
    ).all()
    return {seq: (alert_id, wanted[(agent_id, seq)] == alert_id) for agent_id, seq, alert_id in stored}
