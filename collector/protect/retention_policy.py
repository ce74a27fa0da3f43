"""How long an alert is kept, decided from its review outcome. Pure: no I/O, no clock.

The school sets the periods in config.toml `[retention]`. An alert nobody has finished reviewing is never deleted:
deleting it would lose a concern before anyone had judged it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

from collector.errors import CollectorError

FALSE_POSITIVE = "false-positive"
NO_FURTHER_ACTION = "no-further-action"
DEVICE_EVENT_KINDS = frozenset({"usb", "coverage", "test", "dropped", "notice"})
FINISHED_STATES = frozenset({"closed", "escalated"})


@dataclass(frozen=True)
class RetentionPolicy:
    # A false positive is nobody's concern: deleted soon after the two reviewers agreed it was one.
    false_positive_days: int = 30
    no_further_action_days: int = 365
    # Any other confirmed outcome is a safeguarding concern. A child's record is commonly kept until they are 25;
    # a birthday is not knowable here, so: this many years after the last alert about the same person.
    concern_years: int = 25
    # Device events (USB media, coverage gaps, test alerts) that nobody reviewed.
    device_event_days: int = 365
    # How often `serve` runs retention, and whether it does at all.
    schedule_hours: int = 24
    scheduled: bool = True

    @classmethod
    def from_config(cls, section: dict) -> RetentionPolicy:
        """Read `[retention]`; unknown names and non-positive numbers are errors, so a typo cannot keep or delete
        data nobody meant to."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise CollectorError(f"[retention] has unknown setting(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(known)}")
        values = {}
        for name, value in section.items():
            if name == "scheduled":
                if not isinstance(value, bool):
                    raise CollectorError("[retention] scheduled must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CollectorError(f"[retention] {name} must be a whole number of at least 1, got {value!r}")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class RetentionFacts:
    """What retention needs to know about one alert (never its content)."""

    alert_id: str
    kind: str
    state: str
    received_at: dt.datetime
    outcome: str = ""  # the confirmed outcome, "" if none
    decided_at: dt.datetime | None = None
    last_alert_about_person: dt.datetime | None = None


def delete_after(facts: RetentionFacts, policy: RetentionPolicy) -> tuple[str, dt.datetime] | None:
    """(the rule, the time from which the alert may be deleted), or None if it is kept for now."""
    if facts.state in FINISHED_STATES and facts.outcome:
        decided = facts.decided_at or facts.received_at
        if facts.outcome == FALSE_POSITIVE:
            return FALSE_POSITIVE, decided + dt.timedelta(days=policy.false_positive_days)
        if facts.outcome == NO_FURTHER_ACTION:
            return NO_FURTHER_ACTION, decided + dt.timedelta(days=policy.no_further_action_days)
        last = max(facts.last_alert_about_person or decided, decided)
        return "concern", _add_years(last, policy.concern_years)
    if facts.state == "new" and facts.kind in DEVICE_EVENT_KINDS:
        return "device-event", facts.received_at + dt.timedelta(days=policy.device_event_days)
    return None


def due(facts: RetentionFacts, policy: RetentionPolicy, now: dt.datetime) -> str | None:
    """The rule under which the alert is due for deletion now, or None."""
    decision = delete_after(facts, policy)
    if decision is None:
        return None
    rule, when = decision
    return rule if when <= now else None


def _add_years(when: dt.datetime, years: int) -> dt.datetime:
    try:
        return when.replace(year=when.year + years)
    except ValueError:  # 29 February into a year without one
        return when.replace(year=when.year + years, day=28)
