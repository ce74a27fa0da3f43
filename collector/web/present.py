"""Turning stored values into what a reviewer reads: labels, the highlighted match, times."""

from __future__ import annotations

import datetime as dt

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
