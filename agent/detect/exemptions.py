"""Time-boxed exemptions ("Year 10 History studies extremism for two weeks"), enforced on the device.

They arrive in the signed keyword bundle (signatures/bundle.py, section `exemptions`), already resolved by the
collector to agent ids. The agent keeps only the ones that name it and checks its own clock on every match, so an
exemption ends at its end time with no word from the collector, and exempted text never leaves the device.
Pure logic: no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ExemptionError(ValueError):
    """The exemptions section of a (verified) bundle is malformed."""


class _Matchlike(Protocol):
    category: str
    rule: str


@dataclass(frozen=True)
class Exemption:
    id: str
    categories: frozenset[str]
    rules: frozenset[str]
    start: dt.datetime
    end: dt.datetime

    def active_at(self, now: dt.datetime) -> bool:
        return self.start <= now < self.end

    def covers(self, match: _Matchlike) -> bool:
        return match.category in self.categories or match.rule in self.rules


def _instant(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ExemptionError(f"exemption {what} must be an ISO 8601 time")
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ExemptionError(f"exemption {what} {value!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise ExemptionError(f"exemption {what} {value!r} has no time zone")
    return when


def _strings(value: Any, what: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ExemptionError(f"exemption {what} must be a list of strings")
    return frozenset(value)


def parse_exemption(raw: Mapping[str, Any]) -> tuple[Exemption, frozenset[str]]:
    """One bundle entry as (exemption, the agent ids it applies to)."""
    exemption = Exemption(id=str(raw.get("id", "")), categories=_strings(raw.get("categories", []), "categories"),
                          rules=_strings(raw.get("rules", []), "rules"), start=_instant(raw.get("start"), "start"),
                          end=_instant(raw.get("end"), "end"))
    if not exemption.categories and not exemption.rules:
        raise ExemptionError(f"exemption {exemption.id!r} names no category or rule")
    return exemption, _strings(raw.get("agents", []), "agents")


class Exemptions:
    """The exemptions for one device; `clock` is injectable so that tests can stand before, inside and after."""

    def __init__(self, items: Iterable[Exemption] = (), clock: Clock = utc_now):
        self.items: tuple[Exemption, ...] = tuple(items)
        self.clock = clock

    @classmethod
    def for_agent(cls, raw: Iterable[Mapping[str, Any]], agent_id: str, clock: Clock = utc_now) -> Exemptions:
        """The entries of a bundle's section that name `agent_id`; raises ExemptionError if any is malformed."""
        mine = []
        for entry in raw:
            exemption, agents = parse_exemption(entry)
            if agent_id and agent_id in agents:
                mine.append(exemption)
        return cls(mine, clock)

    def __bool__(self) -> bool:
        return bool(self.items)

    def suppresses(self, match: _Matchlike, now: dt.datetime | None = None) -> bool:
        when = now or self.clock()
        return any(e.active_at(when) and e.covers(match) for e in self.items)

    def keep(self, matches: Iterable[Any], now: dt.datetime | None = None) -> list[Any]:
        """The matches no active exemption covers; one clock reading for the whole batch."""
        matches = list(matches)
        if not self.items or not matches:
            return matches
        when = now or self.clock()
        return [m for m in matches if not self.suppresses(m, when)]
