"""Review steps against a real database (SQLite file and PostgreSQL): every transition, every refusal, races."""

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector import audit
from collector.review import rules
from collector.review.rules import Assessment, ReviewRefused
from collector.store.models_review import AuditEntry, Review
from collector.web import reviewing
from collector.web.reviewing import Forbidden, NotFound, QueueFilter

GOOD = Assessment("child-victim", "inappropriate", "speak-to-pupil", "talked it through with the form tutor")


def act(world, username, fn, *args):
    with audit.write_session(world.engine) as s:
        return fn(s, world.user(s, username), *args)


def review_rows(world, alert_id):
    with Session(world.engine) as s:
        return [(r.step, r.reviewer_id) for r in reviewing.steps_of(s, alert_id)]


def test_assess_confirm_closes(world):
    a = world.alert()
    assert act(world, "dsl.amber", reviewing.assess, a, 0, GOOD) == rules.AWAITING_SECOND
    assert act(world, "dsl.basil", reviewing.confirm, a, 1) == rules.CLOSED
    assert world.state(a) == (rules.CLOSED, 2)
    assert review_rows(world, a) == [("assess", world.users["dsl.amber"]), ("confirm", world.users["dsl.basil"])]


def test_the_assessor_cannot_confirm_and_nothing_is_written(world):
    a = world.alert()
    act(world, "dsl.amber", reviewing.assess, a, 0, GOOD)
    with pytest.raises(ReviewRefused, match="different senior reviewer"):
        act(world, "dsl.amber", reviewing.confirm, a, 1)
    assert world.state(a) == (rules.AWAITING_SECOND, 1)
    assert len(review_rows(world, a)) == 1


def test_dispute_then_headteacher_decides(world):
    a = world.alert()
    act(world, "dsl.amber", reviewing.assess, a, 0, GOOD)
    assert act(world, "dsl.basil", reviewing.dispute, a, 1, "this needs social care") == rules.DISPUTED
    with pytest.raises(ReviewRefused, match="headteacher"):
        act(world, "dsl.cora", reviewing.decide, a, 2, "refer-social-care", "agree")
    assert act(world, "head.dara", reviewing.decide, a, 2, "refer-social-care", "agree") == rules.ESCALATED
    with Session(world.engine) as s:
        assert reviewing.final_outcome(reviewing.steps_of(s, a)) == "refer-social-care"


def test_stale_form_and_double_submit_are_refused_cleanly(world):
    a = world.alert()
    act(world, "dsl.amber", reviewing.assess, a, 0, GOOD)
    with pytest.raises(ReviewRefused, match="changed while you were looking"):
        act(world, "dsl.cora", reviewing.assess, a, 0, GOOD)  # the form cora opened before amber saved
    act(world, "dsl.basil", reviewing.confirm, a, 1)
    with pytest.raises(ReviewRefused, match="changed while you were looking"):
        act(world, "dsl.basil", reviewing.confirm, a, 1)  # the same button pressed twice
    assert world.state(a) == (rules.CLOSED, 2)
    assert [step for step, _ in review_rows(world, a)] == ["assess", "confirm"]


def test_unknown_and_forbidden_alerts(world):
    a = world.alert()
    with pytest.raises(NotFound):
        act(world, "dsl.amber", reviewing.confirm, "no-such-alert", 0)
    with pytest.raises(Forbidden):
        act(world, "tech.evan", reviewing.assess, a, 0, GOOD)
    with pytest.raises(Forbidden):
        act(world, "dsl.south", reviewing.assess, a, 0, GOOD)  # another school of the trust
    assert world.state(a) == (rules.NEW, 0)


def test_concurrent_confirmations_make_exactly_one_decision(world):
    a = world.alert()
    act(world, "dsl.amber", reviewing.assess, a, 0, GOOD)
    barrier = threading.Barrier(2)
    results: dict[str, str] = {}

    def confirm(username):
        barrier.wait()
        try:
            results[username] = act(world, username, reviewing.confirm, a, 1)
        except ReviewRefused as exc:
            results[username] = f"refused: {exc}"

    threads = [threading.Thread(target=confirm, args=(u,)) for u in ("dsl.basil", "dsl.cora")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(v.split(":")[0] for v in results.values()) == [rules.CLOSED, "refused"]
    assert world.state(a) == (rules.CLOSED, 2)
    assert [step for step, _ in review_rows(world, a)] == ["assess", "confirm"]
    with Session(world.engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "review.confirm")) == 1
        assert audit.verify(s, audit.load_or_create_key(audit.audit_key_path(world.data_dir)).public_key()).ok


def test_staff_alert_is_hidden_from_peers_and_reviewed_by_head_and_allegations_person(world):
    a = world.alert(user="basil", age_band="staff", category="extremism")
    for peer in ("dsl.cora", "admin.gale", "tech.evan"):
        with pytest.raises(Forbidden):
            act(world, peer, reviewing.assess, a, 0, GOOD)
    with audit.write_session(world.engine) as s:
        assert a not in [x.id for x in reviewing.visible_alerts(s, world.user(s, "dsl.cora"), QueueFilter())]
        assert a in [x.id for x in reviewing.visible_alerts(s, world.user(s, "head.dara"), QueueFilter())]
    with pytest.raises(Forbidden):
        act(world, "dsl.basil", reviewing.assess, a, 0, GOOD)  # about himself
    act(world, "head.dara", reviewing.assess, a, 0, Assessment("staff-instigator", "inappropriate", "refer-lado", "x"))
    assert act(world, "dsl.amber", reviewing.confirm, a, 1) == rules.ESCALATED


def test_alert_about_the_head_goes_to_the_chair_not_the_head(world):
    a = world.alert(user="dara", age_band="staff", category="gambling")
    with pytest.raises(Forbidden):
        act(world, "head.dara", reviewing.assess, a, 0, GOOD)
    act(world, "gov.fern", reviewing.assess, a, 0, Assessment("staff-instigator", "inappropriate", "refer-lado", "x"))
    assert act(world, "dsl.amber", reviewing.confirm, a, 1) == rules.ESCALATED
    # The chair sees only alerts about the head.
    b = world.alert()
    with pytest.raises(Forbidden):
        act(world, "gov.fern", reviewing.assess, b, 0, GOOD)


def test_csam_referrals_are_recorded_and_audited_without_content(world):
    import datetime as dt
    a = world.alert(category="child-sexual-abuse", severity=5, matched="[withheld]", context="[withheld]")
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    act(world, "dsl.amber", reviewing.record_csam_referral, a, "police", "ref 123", when)
    with pytest.raises(ReviewRefused):
        act(world, "dsl.amber", reviewing.record_csam_referral, a, "the newspaper", "", when)
    with pytest.raises(ReviewRefused):
        act(world, "dsl.amber", reviewing.record_csam_referral, world.alert(), "police", "", when)
    with Session(world.engine) as s:
        rows = reviewing.referrals(s, a)
        assert [(r.told, r.reference) for r in rows] == [("police", "ref 123")]
        details = [e.detail for e in audit.entries_for(s, f"alert:{a}")]
        assert any('"told":"police"' in d for d in details)
        assert not any("withheld" in d or "ref 123" in d for d in details)


def test_queue_is_oldest_high_severity_first_and_filters(world):
    low_old = world.alert(severity=2, minutes_ago=500)
    high_new = world.alert(severity=5, minutes_ago=5, category="suicide")
    high_old = world.alert(severity=5, minutes_ago=50, category="suicide")
    other_pupil = world.alert(user="pupil.two", severity=3)
    with audit.write_session(world.engine) as s:
        amber = world.user(s, "dsl.amber")
        assert [a.id for a in reviewing.visible_alerts(s, amber, QueueFilter())] == [
            high_old, high_new, other_pupil, low_old]
        assert [a.id for a in reviewing.visible_alerts(s, amber, QueueFilter(severity=4))] == [high_old, high_new]
        assert [a.id for a in reviewing.visible_alerts(s, amber, QueueFilter(pupil="pupil.two"))] == [other_pupil]
        assert [a.id for a in reviewing.visible_alerts(s, amber, QueueFilter(category="self-harm"))] == [
            other_pupil, low_old]
        assert reviewing.visible_alerts(s, amber, QueueFilter(device="NO-SUCH-PC")) == []
        assert [a.id for a in reviewing.chronology(s, amber, world.north, "pupil.one")] == [low_old, high_old,
                                                                                            high_new]
    act(world, "dsl.amber", reviewing.assess, high_old, 0, GOOD)
    act(world, "dsl.basil", reviewing.confirm, high_old, 1)
    with audit.write_session(world.engine) as s:
        amber = world.user(s, "dsl.amber")
        assert high_old not in [a.id for a in reviewing.visible_alerts(s, amber, QueueFilter())]
        assert [a.id for a in reviewing.visible_alerts(s, amber, QueueFilter(state="closed"))] == [high_old]
        assert reviewing.outcomes_by_alert(s, [high_old]) == {high_old: "speak-to-pupil"}


def test_every_step_is_in_the_audit_log(world):
    a = world.alert()
    act(world, "dsl.amber", reviewing.assess, a, 0, GOOD)
    act(world, "dsl.basil", reviewing.dispute, a, 1, "disagree")
    act(world, "head.dara", reviewing.decide, a, 2, "log-concern", "decided")
    with Session(world.engine) as s:
        entries = audit.entries_for(s, f"alert:{a}")
        assert [(e.actor, e.action) for e in entries] == [
            ("dsl.amber", "review.assess"), ("dsl.basil", "review.dispute"), ("head.dara", "review.decide")]
        # Reasons are free text that may quote the alert: they live in the reviews table, not the audit log.
        assert not any("disagree" in e.detail or "talked it through" in e.detail for e in entries)
        assert s.scalar(select(func.count()).select_from(Review).where(Review.alert_id == a)) == 3
