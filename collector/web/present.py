"""Turning stored values into what a reviewer reads: labels, the highlighted match, times."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from collector.review import rules

CATEGORIES = {
    "child-sexual-abuse": "Child sexual abuse (suspected)", "terrorism": "Terrorism", "bullying": "Bullying",
    "grooming": "Child sexual exploitation / grooming", "discrimination": "Discrimination", "drugs": "Drugs",
    "extremism": "Extremism", "gambling": "Gambling", "pornography": "Pornography", "self-harm": "Self-harm",
    "suicide": "Suicide", "violence": "Violence", "filter-bypass": "Filter bypass", "profanity": "Profanity",
}
SEVERITIES = {1: "1 informational", 2: "2 low", 3: "3 medium", 4: "4 high", 5: "5 imminent risk"}
STATES = {"new": "New", "awaiting-second": "Awaiting second reviewer", "disputed": "Disputed",
          "closed": "Closed", "escalated": "Escalated"}
ROLES = {"dsl": "DSL", "deputy-dsl": "Deputy DSL", "headteacher": "Headteacher", "technician": "Technician",
         "governor": "Governor", "admin": "Administrator"}
STEPS = {"assess": "Assessed", "confirm": "Confirmed", "dispute": "Disputed", "decide": "Decided the dispute"}
SOURCES = {"typed": "Typed", "deleted": "Typed, then deleted", "title": "Window title"}

LABELS = {
    "category": CATEGORIES, "severity": SEVERITIES, "state": STATES, "role": ROLES, "step": STEPS,
    "involved": rules.INVOLVED, "nature": rules.NATURES, "outcome": rules.OUTCOMES, "told": rules.CSAM_TOLD,
    "source": SOURCES,
}


def highlight(context: str, matched: str) -> list[tuple[str, bool]]:
    """The context split into (text, is_match) parts, so the template can mark the match without raw HTML."""
    if not context:
        return [(matched, True)] if matched else []
    if not matched:
        return [(context, False)]
    lowered, needle = context.casefold(), matched.casefold()
    # casefold can change lengths (ß -> ss); only trust positions when it did not.
    if len(lowered) != len(context) or len(needle) != len(matched):
        lowered, needle = context.lower(), matched.lower()
    parts: list[tuple[str, bool]] = []
    start = 0
    while needle:
        at = lowered.find(needle, start)
        if at < 0:
            break
        if at > start:
            parts.append((context[start:at], False))
        parts.append((context[at:at + len(needle)], True))
        start = at + len(needle)
    if start < len(context):
        parts.append((context[start:], False))
    return parts


def parse_local_time(value: str) -> dt.datetime | None:
    """A `datetime-local` form value, taken as UTC (the form says so)."""
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def when(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%d %b %Y %H:%M UTC")


@dataclass(frozen=True)
class SiteSettings:
    allegations: Any
    chair: Any
    minutes: int
    on_call: list[tuple[str, str, str]]


def parse_site_settings(form: dict[str, str], seniors: list, governors: list) -> SiteSettings:
    """The site settings form, checked: the named people must be among those offered. Raises ValueError."""
    def pick(field: str, offered: list, what: str):
        value = form.get(field, "").strip()
        if not value:
            return None
        chosen = [u for u in offered if str(u.id) == value]
        if not chosen:
            raise ValueError(f"Choose the {what} from the list.")
        return chosen[0]

    allegations = pick("allegations", seniors, "person named for allegations")
    chair = pick("chair", governors, "chair of governors")
    try:
        minutes = int(form.get("minutes", "10"))
    except ValueError:
        raise ValueError("The escalation delay is a whole number of minutes.") from None
    if not 1 <= minutes <= 240:
        raise ValueError("The escalation delay must be between 1 and 240 minutes.")
    on_call = []
    for n, line in enumerate(form.get("oncall", "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0] or "@" not in parts[1]:
            raise ValueError(f"On-call line {n}: write 'name, e-mail, out-of-hours number'.")
        on_call.append((parts[0][:200], parts[1][:255], ", ".join(parts[2:])[:64]))
    return SiteSettings(allegations, chair, minutes, on_call)


# Where each role starts: technicians and governors may not open the review queue.
LANDING = {"technician": "/devices", "governor": "/reports/governors"}


def landing(role: str) -> str:
    return LANDING.get(role, "/queue")
