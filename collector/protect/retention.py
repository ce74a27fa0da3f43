"""Running retention: find the alerts that are due, delete them with everything that hangs off them, audit it.

Audit entries about a deleted alert stay: they hold ids, actions and outcomes, never content, and removing them
would break the hash chain that proves the log was not edited. The deletion itself is audited with counts and ids.
With several collector replicas only one runs at a time: a PostgreSQL advisory lock, or SQLite's write lock.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field

from sqlalchemy import Engine, Table, delete, func, select, text
from sqlalchemy.orm import Session

import collector.store.models_review  # noqa: F401  (its tables hang off alerts and must be deleted with them)
from collector import audit
from collector.protect.retention_policy import RetentionFacts, RetentionPolicy, due
from collector.store.models import Alert, Base, FleetSetting
from collector.store.models_review import Review

log = logging.getLogger("wardwatch.retention")

BATCH = 500
LAST_RUN_SETTING = "retention.last_run"
# Any 64-bit number, the same in every replica: the key of the PostgreSQL advisory lock retention holds.
ADVISORY_LOCK_KEY = 0x57415244_52455401


@dataclass
class RetentionReport:
    due: dict[str, list[str]] = field(default_factory=dict)  # rule -> alert ids
    deleted: int = 0
    skipped: str = ""  # why nothing was done: "locked" (another run holds the lock) or "recent" (ran lately)

    @property
    def counts(self) -> dict[str, int]:
        return {rule: len(ids) for rule, ids in sorted(self.due.items())}


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def gather_facts(session: Session) -> list[RetentionFacts]:
    """Retention facts for every alert, read without touching a single sealed column."""
    decided: dict[str, tuple[str, dt.datetime]] = {}
    for alert_id, outcome, at in session.execute(
            select(Review.alert_id, Review.outcome, Review.created_at)
            .where(Review.step.in_(("confirm", "decide"))).order_by(Review.id)):
        decided[alert_id] = (outcome, at)  # the last confirmed outcome wins
    last_about: dict[tuple[int, str], dt.datetime] = {
        (site_id, user): at for site_id, user, at in session.execute(
            select(Alert.site_id, Alert.user_name, func.max(Alert.received_at))
            .where(Alert.user_name != "").group_by(Alert.site_id, Alert.user_name))}
    facts = []
    for alert_id, kind, state, received_at, site_id, user in session.execute(
            select(Alert.id, Alert.kind, Alert.state, Alert.received_at, Alert.site_id, Alert.user_name)):
        outcome, at = decided.get(alert_id, ("", None))
        facts.append(RetentionFacts(alert_id=alert_id, kind=kind, state=state, received_at=_aware(received_at),
                                    outcome=outcome, decided_at=_aware(at),
                                    last_alert_about_person=_aware(last_about.get((site_id, user)))))
    return facts


def due_alerts(session: Session, policy: RetentionPolicy, now: dt.datetime) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for facts in gather_facts(session):
        rule = due(facts, policy, now)
        if rule:
            out.setdefault(rule, []).append(facts.alert_id)
    for ids in out.values():
        ids.sort()
    return out


def _dependent_tables() -> list[Table]:
    """Tables with a foreign key to alerts, children first: found from the models, so a table added later is
    deleted with its alert too instead of blocking the deletion."""
    alerts = Alert.__table__
    return [t for t in reversed(Base.metadata.sorted_tables)
            if t is not alerts and any(fk.column.table is alerts for fk in t.foreign_keys)]


def delete_alerts(session: Session, alert_ids: list[str]) -> int:
    """Delete the alerts and every row that refers to them, inside the caller's transaction."""
    for t in _dependent_tables():
        for fk in t.foreign_keys:
            if fk.column.table is Alert.__table__:
                session.execute(delete(t).where(fk.parent.in_(alert_ids)))
    return session.execute(delete(Alert).where(Alert.id.in_(alert_ids))).rowcount or 0


def _take_lock(session: Session) -> bool:
    """Serialise retention across replicas for this transaction. False if another replica holds it."""
    if session.get_bind().dialect.name == "postgresql":
        return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY}))
    return True  # SQLite: write_session began with BEGIN IMMEDIATE, which is the one write lock


def last_run(session: Session) -> dt.datetime | None:
    setting = session.get(FleetSetting, LAST_RUN_SETTING)
    return dt.datetime.fromisoformat(setting.value) if setting else None


def run_retention(engine: Engine, policy: RetentionPolicy, now: dt.datetime | None = None, dry_run: bool = False,
                  actor: str = "retention", only_if_older_than: dt.timedelta | None = None) -> RetentionReport:
    """Delete every alert that is due, in batches, auditing each batch. With `only_if_older_than`, do nothing if
    another run (here or on another replica) finished more recently than that."""
    now = now or dt.datetime.now(dt.UTC)
    report = RetentionReport()
    with audit.write_session(engine) as session:
        if not _take_lock(session):
            report.skipped = "locked"
            return report
        previous = last_run(session)
        if only_if_older_than is not None and previous is not None and now - previous < only_if_older_than:
            report.skipped = "recent"
            return report
        report.due = due_alerts(session, policy, now)
        if dry_run:
            return report
        # Ordered by rule, then id, so that the audit entries read as a plain list.
        for rule, ids in sorted(report.due.items()):
            for start in range(0, len(ids), BATCH):
                chunk = ids[start:start + BATCH]
                report.deleted += delete_alerts(session, chunk)
                audit.append(session, actor, "retention.delete", "retention",
                             {"rule": rule, "count": len(chunk), "alert_ids": chunk})
        counts = Counter({rule: len(ids) for rule, ids in report.due.items()})
        audit.append(session, actor, "retention.run", "retention",
                     {"deleted": report.deleted, "by_rule": dict(sorted(counts.items())),
                      "policy": asdict(policy)})
        setting = session.get(FleetSetting, LAST_RUN_SETTING)
        if setting is None:
            session.add(FleetSetting(name=LAST_RUN_SETTING, value=now.isoformat(), updated_at=now))
        else:
            setting.value, setting.updated_at = now.isoformat(), now
    if report.deleted:
        log.info("retention deleted %d alert(s): %s", report.deleted, report.counts)
    return report
