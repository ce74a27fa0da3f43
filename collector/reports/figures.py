"""The headteacher's figures: per device, per site and per week, for a period and the sites a person may see.

Definitions (each one can be recomputed from `wardwatch-collector alerts list --json`, which carries every field
used here; `tests/reports/test_figures.py` does exactly that):

- An alert is counted when its `kind` is keyword, usb or coverage (`COUNTED_KINDS`). Test alerts, privacy notices
  and spool-dropped reports are operational records, not incidents, and are never counted.
- An alert belongs to a period by `received_at` (the collector's clock, which an agent cannot skew), half-open:
  start <= received_at < end. Weeks start on Monday 00:00 UTC.
- "By category" counts keyword alerts by their category; USB events (kind usb) and coverage alerts (kind coverage)
  are counted in their own columns. "By severity" and the state counts cover all counted kinds.
- Open = state new, awaiting-second or disputed; closed and escalated are the two decided states.
- Time to first review = first `assess` step - received_at. Time to second review = the second reviewer's first
  step (confirm or dispute) - received_at. Medians are over the counted alerts of the period that have that step.
- Outcome = the outcome of the step that decided the alert (confirm or decide).
- Alerts about staff (`age_band` staff) are counted for the headteacher, the governors' report and the command line,
  but left out of the figures any other role reads: allegations about staff are seen only by the head and one named
  person, and a count on a device page would tell others that one exists.

Only counts leave this module: no matched words, context, window titles or user names are ever read.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.accounts import aware
from collector.review.rules import CLOSED, ESCALATED, OPEN_STATES
from collector.store.models import Agent, Alert, Site
from collector.store.models_review import Review, User

COUNTED_KINDS = ("keyword", "usb", "coverage")
STAFF_AGE_BAND = "staff"
HIGH_SEVERITY = 4  # severity 4 (high) and 5 (imminent risk or illegal) make the "high" line of the trend
SEVERITY_LABELS = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Imminent risk / illegal"}
CATEGORY_LABELS = {
    "child-sexual-abuse": "Child sexual abuse", "terrorism": "Terrorism", "bullying": "Bullying",
    "grooming": "Grooming / exploitation", "discrimination": "Discrimination", "drugs": "Drugs",
    "extremism": "Extremism", "gambling": "Gambling", "pornography": "Pornography", "self-harm": "Self-harm",
    "suicide": "Suicide", "violence": "Violence", "filter-bypass": "Filter bypass", "profanity": "Profanity",
}
TERMS = ("autumn", "spring", "summer")
# Who may read the per-device figures of their sites. Technicians never see alert figures (they see fleet health);
# governors read only the aggregate governors' report.
DEVICE_REPORT_ROLES = frozenset({"headteacher", "dsl", "deputy-dsl", "admin"})
GOVERNORS_REPORT_ROLES = DEVICE_REPORT_ROLES | {"governor"}


# ---------------------------------------------------------------- periods

@dataclass(frozen=True)
class Period:
    start: dt.datetime
    end: dt.datetime
    label: str

    def holds(self, when: dt.datetime) -> bool:
        return self.start <= when < self.end

    @property
    def last_day(self) -> dt.date:
        return (self.end - dt.timedelta(microseconds=1)).date()


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def monday_of(when: dt.datetime | dt.date) -> dt.date:
    day = when.date() if isinstance(when, dt.datetime) else when
    return day - dt.timedelta(days=day.weekday())


def days_period(first: dt.date, last: dt.date) -> Period:
    """From the start of `first` to the end of `last`, both inclusive."""
    if last < first:
        raise ValueError("the period ends before it starts")
    return Period(_midnight(first), _midnight(last + dt.timedelta(days=1)),
                  f"{first:%d %b %Y} to {last:%d %b %Y}")


def last_full_week(now: dt.datetime) -> Period:
    """Monday to Sunday of the week before the one `now` falls in."""
    monday = monday_of(now) - dt.timedelta(days=7)
    return days_period(monday, monday + dt.timedelta(days=6))


def term_period(term: str, year: int) -> Period:
    """English school terms by fixed dates, so that every day belongs to exactly one term (holidays included):
    autumn 1 Sep - 31 Dec, spring 1 Jan - 31 Mar, summer 1 Apr - 31 Aug. Easter moves; a school that wants its
    exact term dates can run `report devices --from --to` for the same figures."""
    bounds = {"autumn": ((9, 1), (12, 31)), "spring": ((1, 1), (3, 31)), "summer": ((4, 1), (8, 31))}
    if term not in bounds:
        raise ValueError(f"term must be one of {', '.join(TERMS)}")
    (m1, d1), (m2, d2) = bounds[term]
    period = days_period(dt.date(year, m1, d1), dt.date(year, m2, d2))
    return Period(period.start, period.end, f"{term.capitalize()} term {year}")


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class Milestones:
    first_review_at: dt.datetime | None = None
    second_review_at: dt.datetime | None = None
    outcome: str = ""


@dataclass(frozen=True)
class AlertFact:
    """The columns the figures count by. Deliberately no content and no user name."""

    id: str
    agent_id: str
    site_id: int
    kind: str
    category: str
    severity: int
    state: str
    received_at: dt.datetime
    milestones: Milestones = Milestones()


def milestones_of(steps: Iterable[tuple[str, dt.datetime, str]]) -> Milestones:
    """(step, created_at, outcome) of one alert's review, in order -> when each reviewer first acted, and the
    outcome that decided it."""
    first = second = None
    outcome = ""
    for step, when, step_outcome in steps:
        if step == "assess" and first is None:
            first = aware(when)
        elif step in ("confirm", "dispute") and first is not None and second is None:
            second = aware(when)
        if step in ("confirm", "decide"):
            outcome = step_outcome
    return Milestones(first, second, outcome)


def review_milestones(session: Session, alert_ids: Collection[str] | None = None) -> dict[str, Milestones]:
    """Milestones of every reviewed alert (or of the given ones), from the reviews table in step order."""
    query = select(Review.alert_id, Review.step, Review.created_at, Review.outcome).order_by(Review.alert_id,
                                                                                          Review.id)
    if alert_ids is not None:
        if not alert_ids:
            return {}
        query = query.where(Review.alert_id.in_(list(alert_ids)))
    steps: dict[str, list[tuple[str, dt.datetime, str]]] = {}
    for alert_id, step, created_at, outcome in session.execute(query):
        steps.setdefault(alert_id, []).append((step, created_at, outcome))
    return {alert_id: milestones_of(items) for alert_id, items in steps.items()}


def load_facts(session: Session, start: dt.datetime, end: dt.datetime, site_ids: Collection[int] | None,
               include_staff: bool = True) -> list[AlertFact]:
    query = select(Alert.id, Alert.agent_id, Alert.site_id, Alert.kind, Alert.category, Alert.severity, Alert.state,
                   Alert.received_at).where(Alert.kind.in_(COUNTED_KINDS), Alert.received_at >= start,
                                            Alert.received_at < end)
    if not include_staff:
        query = query.where(Alert.age_band != STAFF_AGE_BAND)
    if site_ids is not None:
        query = query.where(Alert.site_id.in_(list(site_ids)))
    rows = session.execute(query).all()
    reviewed = review_milestones(session, [r.id for r in rows]) if rows else {}
    return [AlertFact(r.id, r.agent_id, r.site_id, r.kind, r.category, r.severity, r.state, aware(r.received_at),
                      reviewed.get(r.id, Milestones())) for r in rows]


# ---------------------------------------------------------------- tallies

def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Tally:
    total: int = 0
    by_category: Counter = field(default_factory=Counter)
    by_severity: Counter = field(default_factory=Counter)
    by_outcome: Counter = field(default_factory=Counter)
    open: int = 0
    closed: int = 0
    escalated: int = 0
    usb_events: int = 0
    coverage_alerts: int = 0
    first_review_seconds: list[float] = field(default_factory=list)
    second_review_seconds: list[float] = field(default_factory=list)

    def add(self, fact: AlertFact) -> None:
        self.total += 1
        if fact.kind == "keyword":
            self.by_category[fact.category] += 1
        elif fact.kind == "usb":
            self.usb_events += 1
        else:
            self.coverage_alerts += 1
        self.by_severity[fact.severity] += 1
        if fact.state in OPEN_STATES:
            self.open += 1
        elif fact.state == CLOSED:
            self.closed += 1
        elif fact.state == ESCALATED:
            self.escalated += 1
        m = fact.milestones
        if m.outcome:
            self.by_outcome[m.outcome] += 1
        if m.first_review_at is not None:
            self.first_review_seconds.append((m.first_review_at - fact.received_at).total_seconds())
        if m.second_review_at is not None:
            self.second_review_seconds.append((m.second_review_at - fact.received_at).total_seconds())

    @property
    def keyword_alerts(self) -> int:
        return sum(self.by_category.values())

    @property
    def high(self) -> int:
        return sum(n for severity, n in self.by_severity.items() if severity >= HIGH_SEVERITY)

    @property
    def median_first_review_s(self) -> float | None:
        return _median(self.first_review_seconds)

    @property
    def median_second_review_s(self) -> float | None:
        return _median(self.second_review_seconds)

    def as_json(self) -> dict:
        return {
            "total": self.total, "keyword_alerts": self.keyword_alerts, "by_category": dict(self.by_category),
            "by_severity": {str(k): v for k, v in sorted(self.by_severity.items())},
            "by_outcome": dict(self.by_outcome), "open": self.open, "closed": self.closed,
            "escalated": self.escalated, "usb_events": self.usb_events, "coverage_alerts": self.coverage_alerts,
            "median_first_review_s": self.median_first_review_s,
            "median_second_review_s": self.median_second_review_s,
        }


@dataclass
class DeviceSummary:
    agent_id: str
    hostname: str
    site_id: int
    site_name: str
    status: str
    last_seen_at: dt.datetime | None
    agent_version: str
    bundle_version: str
    tally: Tally = field(default_factory=Tally)

    def as_json(self) -> dict:
        return {"agent_id": self.agent_id, "hostname": self.hostname, "site_id": self.site_id, "site": self.site_name,
                "status": self.status, "last_seen_at": self.last_seen_at.isoformat() if self.last_seen_at else None,
                "agent_version": self.agent_version, "bundle_version": self.bundle_version} | self.tally.as_json()


@dataclass
class SiteSummary:
    site_id: int
    name: str
    devices: int = 0
    tally: Tally = field(default_factory=Tally)


@dataclass(frozen=True)
class WeekPoint:
    week_start: dt.date
    total: int
    high: int


@dataclass
class Figures:
    period: Period
    generated_at: dt.datetime
    sites: list[SiteSummary]
    devices: list[DeviceSummary]
    whole: Tally
    weeks: list[WeekPoint]

    @property
    def device_count(self) -> int:
        return len(self.devices)

    def as_json(self) -> dict:
        return {"period": {"start": self.period.start.isoformat(), "end": self.period.end.isoformat(),
                           "label": self.period.label},
                "generated_at": self.generated_at.isoformat(), "whole": self.whole.as_json(),
                "sites": [{"site_id": s.site_id, "name": s.name, "devices": s.devices} | s.tally.as_json()
                          for s in self.sites],
                "weeks": [{"week_start": w.week_start.isoformat(), "total": w.total, "high": w.high}
                          for w in self.weeks],
                "devices": [d.as_json() for d in self.devices]}


# ---------------------------------------------------------------- putting it together

def weekly_trend(facts: Iterable[AlertFact], start: dt.datetime, end: dt.datetime) -> list[WeekPoint]:
    """Counted alerts per Monday-started week from the week holding `start` to the one holding the last instant
    before `end`; the first and last weeks count only what falls inside [start, end)."""
    first, last = monday_of(start), monday_of(end - dt.timedelta(microseconds=1))
    totals: Counter = Counter()
    highs: Counter = Counter()
    for f in facts:
        if start <= f.received_at < end:
            week = monday_of(f.received_at)
            totals[week] += 1
            highs[week] += f.severity >= HIGH_SEVERITY
    points = []
    week = first
    while week <= last:
        points.append(WeekPoint(week, totals[week], highs[week]))
        week += dt.timedelta(days=7)
    return points


def summarise(facts: list[AlertFact], agents: list[Agent], sites: list[Site], period: Period,
              trend_start: dt.datetime, now: dt.datetime) -> Figures:
    """Pure: tallies of the facts inside the period, per device, per site and overall, plus the weekly trend."""
    site_rows = {s.id: SiteSummary(s.id, s.name) for s in sorted(sites, key=lambda s: s.name)}
    devices: dict[str, DeviceSummary] = {}
    for a in agents:
        site_name = site_rows[a.site_id].name if a.site_id in site_rows else ""
        devices[a.id] = DeviceSummary(a.id, a.hostname, a.site_id, site_name, a.status, aware(a.last_seen_at),
                                      a.agent_version, a.bundle_version)
    whole = Tally()
    for f in facts:
        if not period.holds(f.received_at):
            continue
        whole.add(f)
        if f.site_id in site_rows:
            site_rows[f.site_id].tally.add(f)
        if f.agent_id in devices:
            devices[f.agent_id].tally.add(f)
    for d in devices.values():
        if d.site_id in site_rows:
            site_rows[d.site_id].devices += 1
    ordered = sorted(devices.values(), key=lambda d: (d.site_name, d.hostname.lower(), d.agent_id))
    return Figures(period, now, list(site_rows.values()), ordered, whole,
                   weekly_trend(facts, min(trend_start, period.start), period.end))


def build_figures(session: Session, period: Period, site_ids: Collection[int] | None = None,
                  trend_weeks: int | None = None, now: dt.datetime | None = None,
                  include_staff: bool = True) -> Figures:
    """The figures of `period` for the given sites (None: every site). The trend covers the period, or the
    `trend_weeks` weeks up to its end if that reaches further back. `include_staff=False` leaves out alerts about
    staff, for readers who may not know of them."""
    now = now or dt.datetime.now(dt.UTC)
    trend_start = period.start
    if trend_weeks:
        trend_start = min(trend_start, _midnight(monday_of(period.end - dt.timedelta(weeks=trend_weeks - 1,
                                                                                    microseconds=1))))
    site_query = select(Site)
    agent_query = select(Agent)
    if site_ids is not None:
        site_query = site_query.where(Site.id.in_(list(site_ids)))
        agent_query = agent_query.where(Agent.site_id.in_(list(site_ids)))
    sites = list(session.scalars(site_query))
    facts = load_facts(session, trend_start, period.end, site_ids, include_staff)
    with_alerts = {f.agent_id for f in facts if period.holds(f.received_at)}
    # A removed device still counts for the periods it sent alerts in; otherwise it has left the fleet.
    agents = [a for a in session.scalars(agent_query) if a.status != "removed" or a.id in with_alerts]
    return summarise(facts, agents, sites, period, trend_start, now)


def visible_site_ids(user: User, governors_report: bool = False) -> frozenset[int]:
    """The sites whose figures this account may read (per device, or only the governors' report): its own sites,
    and none for a role without access to that page."""
    roles = GOVERNORS_REPORT_ROLES if governors_report else DEVICE_REPORT_ROLES
    if user.disabled or user.role not in roles:
        return frozenset()
    return frozenset(s.id for s in user.sites)


def sees_staff_alert_counts(role: str) -> bool:
    return role == "headteacher"


def figures_for_user(session: Session, user: User, period: Period, governors_report: bool = False,
                     trend_weeks: int | None = None) -> Figures | None:
    """The figures this account may read for `period`, or None if its role may not read them (answer 403)."""
    site_ids = visible_site_ids(user, governors_report)
    if not site_ids:
        return None
    return build_figures(session, period, site_ids, trend_weeks=trend_weeks,
                         include_staff=governors_report or sees_staff_alert_counts(user.role))
