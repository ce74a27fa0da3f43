"""Who may see an alert, and which review step a person may take on it. Pure functions over plain values.

The web layer loads the facts, asks these functions, and writes the result in one conditional UPDATE; hiding a
button in the page is never the only guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# ---------------------------------------------------------------- vocabulary

ROLES = ("dsl", "deputy-dsl", "headteacher", "technician", "governor", "admin")
# Roles that read alert content (and so must use a second factor).
CONTENT_ROLES = frozenset({"dsl", "deputy-dsl", "headteacher", "admin"})
# Senior members of staff who may take part in a two-person review.
REVIEWER_ROLES = frozenset({"dsl", "deputy-dsl", "headteacher"})

NEW, AWAITING_SECOND, DISPUTED, CLOSED, ESCALATED = "new", "awaiting-second", "disputed", "closed", "escalated"
STATES = (NEW, AWAITING_SECOND, DISPUTED, CLOSED, ESCALATED)
OPEN_STATES = (NEW, AWAITING_SECOND, DISPUTED)

INVOLVED = {
    "child-victim": "Child victim",
    "child-instigator": "Child instigator",
    "staff-victim": "Staff victim",
    "staff-instigator": "Staff instigator",
    "none": "No one (no concern about a person)",
}
NATURES = {"illegal": "Illegal", "inappropriate": "Inappropriate", "not-a-concern": "Not a concern"}
OUTCOMES = {
    "false-positive": "False positive",
    "no-further-action": "No further action",
    "log-concern": "Log a concern",
    "speak-to-pupil": "Speak to the pupil",
    "contact-parents": "Contact parents or carers",
    "refer-social-care": "Refer to children's social care",
    "refer-police": "Refer to the police",
    "refer-lado": "Refer to the LADO",
    "report-iwf": "Report to the IWF",
}
# Outcomes that hand the matter to an outside agency: the alert is escalated rather than closed.
ESCALATING_OUTCOMES = frozenset({"refer-social-care", "refer-police", "refer-lado", "report-iwf"})

CSAM_CATEGORY = "child-sexual-abuse"
CSAM_STEPS = (
    "Do not investigate. Do not open, search for, copy, print, forward or screenshot the material, and do not ask "
    "anyone else to look at it.",
    "Preserve the device: leave it as it is, do not switch it off or log out, take it out of use and keep it secure.",
    "Refer at once: call the police (999 if a child is at immediate risk, otherwise 101), tell the LADO if a member "
    "of staff may be involved, and report online imagery to the Internet Watch Foundation (report.iwf.org.uk).",
    "Record below who you told and when, with any reference number they gave you.",
)
CSAM_TOLD = {"police": "Police", "lado": "LADO", "iwf": "Internet Watch Foundation",
             "social-care": "Children's social care", "other": "Other"}
MAX_REASON = 4000

# Audiences: whose alert it is decides who may see it.
PUPIL, STAFF, HEAD = "pupil", "staff", "head"


class ReviewRefused(Exception):
    """The step is not allowed; str(exc) says why, in words a reviewer understands."""


@dataclass(frozen=True)
class Person:
    id: int
    role: str
    site_ids: frozenset[int]
    school_login: str = ""


@dataclass(frozen=True)
class AlertFacts:
    site_id: int
    category: str
    age_band: str
    user_name: str
    state: str


@dataclass(frozen=True)
class SiteContacts:
    """What a site has named: its allegations person, its chair of governors, and its headteachers' logins."""

    allegations_user_id: int | None = None
    chair_user_id: int | None = None
    head_logins: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Step:
    step: str  # assess | confirm | dispute | decide
    reviewer_id: int
    outcome: str = ""


@dataclass(frozen=True)
class Assessment:
    involved: str
    nature: str
    outcome: str
    reason: str


@dataclass(frozen=True)
class Decision:
    """What a permitted step writes: the step itself and the alert's state afterwards."""

    step: str
    new_state: str
    outcome: str = ""


# ---------------------------------------------------------------- identity

def normalise_login(name: str) -> str:
    """`SCHOOL\\jbloggs`, `jbloggs@school.example` and `JBloggs` are one person."""
    name = name.strip().lower()
    name = name.rsplit("\\", 1)[-1]
    return name.split("@", 1)[0]


def is_about(person: Person, alert: AlertFacts) -> bool:
    return bool(person.school_login) and normalise_login(person.school_login) == normalise_login(alert.user_name)


def audience(alert: AlertFacts, contacts: SiteContacts) -> str:
    if alert.age_band != "staff":
        return PUPIL
    if normalise_login(alert.user_name) in {normalise_login(x) for x in contacts.head_logins}:
        return HEAD
    return STAFF


def is_csam(alert: AlertFacts) -> bool:
    return alert.category == CSAM_CATEGORY


# ---------------------------------------------------------------- seeing

def can_see(person: Person, alert: AlertFacts, contacts: SiteContacts) -> bool:
    """May this person open the alert at all (its page, its place in the queue, the pupil's chronology)?"""
    if alert.site_id not in person.site_ids or is_about(person, alert):
        return False
    who = audience(alert, contacts)
    if who == PUPIL:
        return person.role in CONTENT_ROLES
    if who == STAFF:
        # Allegations against staff go to the head and the one named person, never to the staff member's peers.
        return person.role == "headteacher" or person.id == contacts.allegations_user_id
    return person.id in (contacts.allegations_user_id, contacts.chair_user_id)


def may_review(person: Person, alert: AlertFacts, contacts: SiteContacts) -> bool:
    if not can_see(person, alert, contacts):
        return False
    if audience(alert, contacts) == PUPIL:
        return person.role in REVIEWER_ROLES
    return True  # only the named people see a staff alert, and each of them is a reviewer for it


def may_decide_dispute(person: Person, alert: AlertFacts, contacts: SiteContacts) -> bool:
    if not can_see(person, alert, contacts):
        return False
    if audience(alert, contacts) == HEAD:
        return person.id == contacts.chair_user_id
    return person.role == "headteacher"


# ---------------------------------------------------------------- steps

def validate_assessment(a: Assessment) -> Assessment:
    if a.involved not in INVOLVED:
        raise ReviewRefused("Choose who is involved.")
    if a.nature not in NATURES:
        raise ReviewRefused("Choose whether it is illegal, inappropriate or not a concern.")
    if a.outcome not in OUTCOMES:
        raise ReviewRefused("Choose a proposed outcome.")
    reason = a.reason.strip()
    if not reason:
        raise ReviewRefused("Write the reason for your assessment.")
    if len(reason) > MAX_REASON:
        raise ReviewRefused(f"The reason is longer than {MAX_REASON} characters.")
    return Assessment(a.involved, a.nature, a.outcome, reason)


def final_state(outcome: str) -> str:
    return ESCALATED if outcome in ESCALATING_OUTCOMES else CLOSED


def _reviewers_so_far(steps: Sequence[Step]) -> set[int]:
    return {s.reviewer_id for s in steps if s.step in ("assess", "confirm", "dispute")}


def _current_assessment(steps: Sequence[Step]) -> Step:
    assessments = [s for s in steps if s.step == "assess"]
    if not assessments:
        raise ReviewRefused("This alert has no assessment yet.")
    return assessments[-1]


def _require_state(alert: AlertFacts, wanted: str, doing: str) -> None:
    if alert.state != wanted:
        raise ReviewRefused(f"This alert is now '{alert.state}', so it cannot be {doing}. "
                            "Someone else may have acted on it; reload the page to see its current state.")


def assess(person: Person, alert: AlertFacts, contacts: SiteContacts, assessment: Assessment) -> Decision:
    """The first reviewer's assessment: new -> awaiting-second."""
    if not may_review(person, alert, contacts):
        raise ReviewRefused("You are not one of the people who may review this alert.")
    _require_state(alert, NEW, "assessed")
    a = validate_assessment(assessment)
    return Decision("assess", AWAITING_SECOND, a.outcome)


def confirm(person: Person, alert: AlertFacts, contacts: SiteContacts, steps: Sequence[Step]) -> Decision:
    """A different reviewer agrees: the proposed outcome closes or escalates the alert."""
    if not may_review(person, alert, contacts):
        raise ReviewRefused("You are not one of the people who may review this alert.")
    _require_state(alert, AWAITING_SECOND, "confirmed")
    first = _current_assessment(steps)
    if first.reviewer_id == person.id:
        raise ReviewRefused("You made the assessment, so a different senior reviewer must confirm or dispute it.")
    return Decision("confirm", final_state(first.outcome), first.outcome)


def dispute(person: Person, alert: AlertFacts, contacts: SiteContacts, steps: Sequence[Step],
            reason: str) -> Decision:
    """A different reviewer disagrees: the headteacher (or the chair, for the head) decides."""
    if not may_review(person, alert, contacts):
        raise ReviewRefused("You are not one of the people who may review this alert.")
    _require_state(alert, AWAITING_SECOND, "disputed")
    first = _current_assessment(steps)
    if first.reviewer_id == person.id:
        raise ReviewRefused("You made the assessment, so a different senior reviewer must confirm or dispute it.")
    if not reason.strip():
        raise ReviewRefused("Write why you disagree with the assessment.")
    if len(reason.strip()) > MAX_REASON:
        raise ReviewRefused(f"The reason is longer than {MAX_REASON} characters.")
    return Decision("dispute", DISPUTED)


def decide(person: Person, alert: AlertFacts, contacts: SiteContacts, steps: Sequence[Step], outcome: str,
           reason: str) -> Decision:
    """The decision on a dispute, by someone who was neither of the two reviewers."""
    _require_state(alert, DISPUTED, "decided")
    if not may_decide_dispute(person, alert, contacts):
        who = "the chair of governors" if audience(alert, contacts) == HEAD else "the headteacher"
        raise ReviewRefused(f"A disputed review is decided by {who}.")
    if person.id in _reviewers_so_far(steps):
        raise ReviewRefused("You took part in this review, so you cannot decide the dispute.")
    if outcome not in OUTCOMES:
        raise ReviewRefused("Choose the outcome.")
    if not reason.strip():
        raise ReviewRefused("Write the reason for your decision.")
    if len(reason.strip()) > MAX_REASON:
        raise ReviewRefused(f"The reason is longer than {MAX_REASON} characters.")
    return Decision("decide", final_state(outcome), outcome)


def who_can_decide(alert: AlertFacts, contacts: SiteContacts) -> str:
    return "the chair of governors" if audience(alert, contacts) == HEAD else "the headteacher"
