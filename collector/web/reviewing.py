"""The review's database side: load the facts, ask collector.review.rules, write the decision exactly once.

Every decision is one transaction: a conditional UPDATE of the alert (WHERE state and version are what the
reviewer saw), the review step, and its audit entry. If the UPDATE matches no row, somebody else got there first
and nothing at all is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from collector import audit
from collector.accounts import aware, person_of, site_contacts
from collector.review import rules
from collector.review.rules import AlertFacts, ReviewRefused, SiteContacts, Step
from collector.store.models import Alert
from collector.store.models_review import CsamReferral, Review, User

# The queue is for alerts a person reviews; coverage, USB and dropped-alert notices are the technician's.
REVIEWED_KINDS = ("keyword", "test")
QUEUE_SCAN_LIMIT = 2000
QUEUE_SHOW_LIMIT = 200


class NotFound(Exception):
    """No such alert (or not one this person may know about)."""


class Forbidden(Exception):
    """The alert exists but this person may not see it."""


def pupil_ref(site_id: int, user_name: str) -> str:
    """How the audit log names a pupil: a hash of site and name, so someone reading the log (a technician running
    `audit list`) sees no names, while an investigator who knows the name can still find every view."""
    digest = hashlib.sha256(f"{site_id}:{user_name}".encode()).hexdigest()[:20]
    return f"pupil:{site_id}:{digest}"


def facts_of(alert: Alert) -> AlertFacts:
    return AlertFacts(site_id=alert.site_id, category=alert.category, age_band=alert.age_band,
                      user_name=alert.user_name, state=alert.state)


def steps_of(session: Session, alert_id: str) -> list[Review]:
    return list(session.scalars(select(Review).where(Review.alert_id == alert_id).order_by(Review.id)))


def _rule_steps(reviews: list[Review]) -> list[Step]:
    return [Step(r.step, r.reviewer_id, r.outcome) for r in reviews]


@dataclass
class AlertView:
    alert: Alert
    facts: AlertFacts
    contacts: SiteContacts
    reviews: list[Review]


def load_visible(session: Session, user: User, alert_id: str) -> AlertView:
    """The alert if this person may see it; NotFound or Forbidden otherwise."""
    if not alert_id or len(alert_id) > 36:
        raise NotFound(alert_id)
    alert = session.get(Alert, alert_id, populate_existing=True)
    if alert is None or alert.kind not in REVIEWED_KINDS:
        raise NotFound(alert_id)
    facts = facts_of(alert)
    contacts = site_contacts(session, alert.site_id)
    if not rules.can_see(person_of(user), facts, contacts):
        raise Forbidden(alert_id)
    return AlertView(alert, facts, contacts, steps_of(session, alert_id))


def final_outcome(reviews: list[Review]) -> str:
    for r in reversed(reviews):
        if r.step in ("confirm", "decide"):
            return r.outcome
    return ""


def proposed_outcome(reviews: list[Review]) -> str:
    for r in reversed(reviews):
        if r.step == "assess":
            return r.outcome
    return ""


# ---------------------------------------------------------------- writing a step

def _write(session: Session, user: User, view: AlertView, seen_version: int, decision: rules.Decision,
           review: Review) -> None:
    done = session.execute(
        update(Alert)
        .where(Alert.id == view.alert.id, Alert.version == seen_version, Alert.state == view.alert.state)
        .values(state=decision.new_state, version=Alert.version + 1)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        raise ReviewRefused("This alert changed while you were looking at it (someone else may have reviewed it, "
                            "or the form was sent twice). Nothing was saved; reload the page to see where it is now.")
    session.add(review)
    audit.append(session, user.username, f"review.{decision.step}", f"alert:{view.alert.id}",
                 {"from": view.alert.state, "to": decision.new_state, "outcome": decision.outcome,
                  "involved": review.involved, "nature": review.nature})


def _check_version(view: AlertView, seen_version: int) -> None:
    if view.alert.version != seen_version:
        raise ReviewRefused("This alert changed while you were looking at it (someone else may have reviewed it, "
                            "or the form was sent twice). Nothing was saved; reload the page to see where it is now.")


def assess(session: Session, user: User, alert_id: str, seen_version: int, assessment: rules.Assessment) -> str:
    view = load_visible(session, user, alert_id)
    _check_version(view, seen_version)
    decision = rules.assess(person_of(user), view.facts, view.contacts, assessment)
    a = rules.validate_assessment(assessment)
    _write(session, user, view, seen_version, decision,
           Review(alert_id=alert_id, step="assess", reviewer_id=user.id, involved=a.involved, nature=a.nature,
                  outcome=a.outcome, reason=a.reason))
    return decision.new_state


def confirm(session: Session, user: User, alert_id: str, seen_version: int) -> str:
    view = load_visible(session, user, alert_id)
    _check_version(view, seen_version)
    decision = rules.confirm(person_of(user), view.facts, view.contacts, _rule_steps(view.reviews))
    _write(session, user, view, seen_version, decision,
           Review(alert_id=alert_id, step="confirm", reviewer_id=user.id, outcome=decision.outcome))
    return decision.new_state


def dispute(session: Session, user: User, alert_id: str, seen_version: int, reason: str) -> str:
    view = load_visible(session, user, alert_id)
    _check_version(view, seen_version)
    decision = rules.dispute(person_of(user), view.facts, view.contacts, _rule_steps(view.reviews), reason)
    _write(session, user, view, seen_version, decision,
           Review(alert_id=alert_id, step="dispute", reviewer_id=user.id, reason=reason.strip()))
    return decision.new_state


def decide(session: Session, user: User, alert_id: str, seen_version: int, outcome: str, reason: str) -> str:
    view = load_visible(session, user, alert_id)
    _check_version(view, seen_version)
    decision = rules.decide(person_of(user), view.facts, view.contacts, _rule_steps(view.reviews), outcome, reason)
    _write(session, user, view, seen_version, decision,
           Review(alert_id=alert_id, step="decide", reviewer_id=user.id, outcome=outcome, reason=reason.strip()))
    return decision.new_state


def record_csam_referral(session: Session, user: User, alert_id: str, told: str, reference: str,
                         told_at: dt.datetime) -> CsamReferral:
    view = load_visible(session, user, alert_id)
    if not rules.is_csam(view.facts):
        raise ReviewRefused("Referrals are recorded here only for suspected child sexual abuse material.")
    if not rules.may_review(person_of(user), view.facts, view.contacts):
        raise ReviewRefused("You are not one of the people who may act on this alert.")
    if told not in rules.CSAM_TOLD:
        raise ReviewRefused("Choose who you told.")
    now = dt.datetime.now(dt.UTC)
    if told_at > now + dt.timedelta(minutes=5):
        raise ReviewRefused("The time you told them is in the future.")
    row = CsamReferral(alert_id=alert_id, told=told, reference=reference.strip()[:255], told_at=told_at,
                       recorded_by=user.id)
    session.add(row)
    audit.append(session, user.username, "csam.referral", f"alert:{alert_id}",
                 {"told": told, "told_at": told_at.isoformat()})
    return row


def referrals(session: Session, alert_id: str) -> list[CsamReferral]:
    return list(session.scalars(select(CsamReferral).where(CsamReferral.alert_id == alert_id)
                                .order_by(CsamReferral.told_at)))


# ---------------------------------------------------------------- lists

@dataclass(frozen=True)
class QueueFilter:
    state: str = "open"  # open | all | one of rules.STATES
    severity: int | None = None  # at least this severity
    category: str = ""
    site_id: int | None = None
    device: str = ""
    pupil: str = ""


def visible_alerts(session: Session, user: User, f: QueueFilter) -> list[Alert]:
    """Alerts this person may see, oldest high-severity first."""
    site_ids = [s.id for s in user.sites]
    if f.site_id is not None:
        site_ids = [i for i in site_ids if i == f.site_id]
    if not site_ids:
        return []
    q = select(Alert).where(Alert.site_id.in_(site_ids), Alert.kind.in_(REVIEWED_KINDS))
    if f.state == "open":
        q = q.where(Alert.state.in_(rules.OPEN_STATES))
    elif f.state in rules.STATES:
        q = q.where(Alert.state == f.state)
    if f.severity is not None:
        q = q.where(Alert.severity >= f.severity)
    if f.category:
        q = q.where(Alert.category == f.category)
    if f.device:
        q = q.where(Alert.hostname == f.device)
    if f.pupil:
        q = q.where(Alert.user_name == f.pupil)
    # When it happened (signed by the agent), not when it arrived: an alert spooled offline overnight is old.
    q = q.order_by(Alert.severity.desc(), Alert.created_at, Alert.received_at, Alert.id).limit(QUEUE_SCAN_LIMIT)
    person = person_of(user)
    contacts = {sid: site_contacts(session, sid) for sid in site_ids}
    shown = [a for a in session.scalars(q) if rules.can_see(person, facts_of(a), contacts[a.site_id])]
    return shown[:QUEUE_SHOW_LIMIT]


def chronology(session: Session, user: User, site_id: int, user_name: str) -> list[Alert]:
    """Every alert about one pupil (or member of staff) at one site that this person may see, oldest first."""
    rows = visible_alerts(session, user, QueueFilter(state="all", site_id=site_id, pupil=user_name))
    return sorted(rows, key=lambda a: (aware(a.created_at), a.id))


def earlier_alerts(session: Session, user: User, alert: Alert) -> list[Alert]:
    rows = chronology(session, user, alert.site_id, alert.user_name)
    return [a for a in rows if a.id != alert.id and aware(a.created_at) <= aware(alert.created_at)]


def outcomes_by_alert(session: Session, alert_ids: list[str]) -> dict[str, str]:
    if not alert_ids:
        return {}
    out: dict[str, str] = {}
    q = select(Review).where(Review.alert_id.in_(alert_ids), Review.step.in_(("confirm", "decide"))).order_by(
        Review.id)
    for r in session.scalars(q):
        out[r.alert_id] = r.outcome
    return out
