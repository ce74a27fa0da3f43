"""Retention on SQLite and PostgreSQL: what is due goes, with everything hanging off it; the audit chain holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from collector import audit
from collector.errors import CollectorError
from collector.protect.retention import LAST_RUN_SETTING, run_retention
from collector.protect.retention_policy import RetentionFacts, RetentionPolicy, delete_after, due
from collector.protect.schedule import retention_loop
from collector.store.models import Alert, FleetSetting
from collector.store.models_review import AuditEntry, CsamReferral, Review

NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
POLICY = RetentionPolicy(false_positive_days=30, no_further_action_days=365, concern_years=25,
                         device_event_days=90)


# ---------------------------------------------------------------- the rules, without a database

def _facts(**kw) -> RetentionFacts:
    base = {"alert_id": "a", "kind": "keyword", "state": "closed", "received_at": NOW - dt.timedelta(days=400)}
    return RetentionFacts(**(base | kw))


def test_false_positive_goes_after_its_period_from_the_decision():
    decided = NOW - dt.timedelta(days=29)
    assert due(_facts(outcome="false-positive", decided_at=decided), POLICY, NOW) is None
    assert due(_facts(outcome="false-positive", decided_at=decided), POLICY,
               NOW + dt.timedelta(days=1, seconds=1)) == "false-positive"


def test_concern_is_kept_for_years_after_the_last_alert_about_the_person():
    facts = _facts(outcome="speak-to-pupil", decided_at=NOW - dt.timedelta(days=30 * 365),
                   last_alert_about_person=NOW - dt.timedelta(days=2 * 365))
    rule, when = delete_after(facts, POLICY)
    assert rule == "concern"
    assert when.year == (NOW - dt.timedelta(days=2 * 365)).year + 25
    assert due(facts, POLICY, NOW) is None


def test_unreviewed_keyword_alerts_are_never_due_but_device_events_are():
    old = NOW - dt.timedelta(days=3000)
    assert due(_facts(state="new", received_at=old), POLICY, NOW) is None
    assert due(_facts(state="awaiting-second", received_at=old, kind="usb"), POLICY, NOW) is None
    assert due(_facts(state="new", received_at=old, kind="usb"), POLICY, NOW) == "device-event"


def test_leap_day_concerns_land_on_28_february():
    facts = _facts(outcome="log-concern", decided_at=dt.datetime(2024, 2, 29, tzinfo=dt.UTC))
    assert delete_after(facts, RetentionPolicy(concern_years=1))[1] == dt.datetime(2025, 2, 28, tzinfo=dt.UTC)


@pytest.mark.parametrize("section, message", [
    ({"false_positive_days": 0}, "at least 1"),
    ({"false_positive_days": "30"}, "whole number"),
    ({"false_postive_days": 30}, "unknown setting"),
    ({"scheduled": "yes"}, "true or false"),
])
def test_bad_retention_settings_are_refused(section, message):
    with pytest.raises(CollectorError, match=message):
        RetentionPolicy.from_config(section)


# ---------------------------------------------------------------- against the store

def _count(engine, model) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def _ids(engine) -> set[str]:
    with Session(engine) as s:
        return set(s.scalars(select(Alert.id)))


def _age(engine, alert_id: str, days: float) -> None:
    with audit.write_session(engine) as s:
        s.get(Alert, alert_id).received_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)


def _usb(engine, school, days_ago: float) -> str:
    alert_id = school(user="", matched="", category="bullying")
    with audit.write_session(engine) as s:
        a = s.get(Alert, alert_id)
        a.kind, a.category = "usb", ""
    _age(engine, alert_id, days_ago)
    return alert_id


@pytest.fixture
def seeded(store_engine, school, reviewers):
    ids = {
        "old_fp": school(user="pupil.a", matched="fp words old"),
        "new_fp": school(user="pupil.a", matched="fp words new"),
        "old_nfa": school(user="pupil.b", matched="nfa words"),
        "old_concern": school(user="pupil.c", matched="concern words", days_ago=40 * 365),
        "kept_concern": school(user="pupil.d", matched="concern words", days_ago=30 * 365),
        "open": school(user="pupil.e", matched="open words", days_ago=3000),
        "old_usb": _usb(store_engine, school, 200),
        "new_usb": _usb(store_engine, school, 10),
    }
    reviewers(ids["old_fp"], "false-positive", days_ago=31)
    reviewers(ids["new_fp"], "false-positive", days_ago=5)
    reviewers(ids["old_nfa"], "no-further-action", days_ago=400)
    reviewers(ids["old_concern"], "refer-police", days_ago=40 * 365)
    reviewers(ids["kept_concern"], "speak-to-pupil", days_ago=30 * 365)
    _age(store_engine, ids["open"], 3000)
    _age(store_engine, ids["old_concern"], 40 * 365)
    _age(store_engine, ids["kept_concern"], 30 * 365)
    # A later alert about pupil.d keeps their old concern: 25 years run from the last alert about them.
    school(user="pupil.d", matched="another one")
    with audit.write_session(store_engine) as s:
        s.add(CsamReferral(alert_id=ids["old_concern"], told="police", reference="REF-1",
                           told_at=dt.datetime.now(dt.UTC), recorded_by=reviewers.ids[0]))
    return ids


def test_retention_deletes_what_is_due_and_audits_ids_not_content(store_engine, school, seeded):
    before = _ids(store_engine)
    report = run_retention(store_engine, POLICY)
    gone = {seeded[k] for k in ("old_fp", "old_nfa", "old_concern", "old_usb")}
    assert report.counts == {"concern": 1, "device-event": 1, "false-positive": 1, "no-further-action": 1}
    assert report.deleted == 4
    assert _ids(store_engine) == before - gone
    with Session(store_engine) as s:
        # Everything hanging off a deleted alert went with it; the rest stayed.
        assert not s.scalars(select(Review).where(Review.alert_id.in_(gone))).all()
        assert _count(store_engine, CsamReferral) == 0
        assert s.scalars(select(Review.alert_id).where(Review.alert_id == seeded["new_fp"])).first()
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action.like("retention.%"))
                            .order_by(AuditEntry.id)).all()
        deleted_ids = {i for e in entries if e.action == "retention.delete"
                       for i in json.loads(e.detail)["alert_ids"]}
        assert deleted_ids == gone
        assert all("words" not in e.detail for e in entries)
        # Entries about the deleted alerts stay, and the chain still verifies.
        assert s.scalars(select(AuditEntry).where(AuditEntry.target == f"alert:{seeded['old_fp']}")).first()
        assert audit.verify(s, school.audit_key.public_key()).ok
        assert s.get(FleetSetting, LAST_RUN_SETTING) is not None


def test_dry_run_counts_and_deletes_nothing(store_engine, seeded):
    before = _ids(store_engine)
    entries = _count(store_engine, AuditEntry)
    report = run_retention(store_engine, POLICY, dry_run=True)
    assert sum(report.counts.values()) == 4 and report.deleted == 0
    assert _ids(store_engine) == before
    assert _count(store_engine, AuditEntry) == entries


def test_a_recent_run_elsewhere_means_the_schedule_waits(store_engine, seeded):
    run_retention(store_engine, RetentionPolicy(false_positive_days=10_000, no_further_action_days=10_000,
                                                concern_years=100, device_event_days=10_000))
    later = run_retention(store_engine, POLICY, only_if_older_than=dt.timedelta(hours=24))
    assert later.skipped == "recent" and seeded["old_fp"] in _ids(store_engine)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # the advisory lock is PostgreSQL's
def test_only_one_replica_runs_at_a_time_on_postgresql(store_engine, seeded):
    from collector.protect.retention import ADVISORY_LOCK_KEY

    with store_engine.connect() as other:
        other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        try:
            assert run_retention(store_engine, POLICY).skipped == "locked"
            assert seeded["old_fp"] in _ids(store_engine)
        finally:
            other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
    assert run_retention(store_engine, POLICY).deleted == 4


def test_the_serve_schedule_runs_retention(store_engine, seeded):
    async def scenario() -> None:
        task = asyncio.create_task(retention_loop(store_engine, POLICY, check_every_s=3600))
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while seeded["old_fp"] in await asyncio.to_thread(_ids, store_engine):
                assert asyncio.get_running_loop().time() < deadline, "the scheduled run never deleted anything"
                await asyncio.sleep(0.05)
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert seeded["new_fp"] in _ids(store_engine)
