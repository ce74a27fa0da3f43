"""Silent devices: a device that has not been heard from for longer than a set time *of school hours* raises one
`coverage` alert (gap "silent") for the technician, per silence episode.

Settings, all optional, from `[fleet]` in config.toml:
  silent_after_minutes   school-hours minutes without a heartbeat before a device counts as silent (default 60)
  school_hours           "08:00-16:30", local time
  school_days            "mon-fri", or a list like "mon,tue,thu"
  timezone               "Europe/London"
  silent_check_seconds   how often serve looks (default 60)

Only school time counts towards the threshold: a laptop shut on Friday at 16:00 is not "silent" at 08:05 on Monday;
it becomes silent at 09:00 if it still has not heartbeated.

Collector-made alerts are not signed by any agent. They live in the alerts table (so the head's figures, which count
kind coverage, and `alerts list --json` agree) with a NEGATIVE seq: an agent's seqs start at 1, so the two schemes
can never meet on the (agent_id, seq) unique key. The seq is minus the episode's start (the last heartbeat, in
microseconds since the epoch), which makes the episode itself the key: when several replicas find the same silent
device at once, each inserts the same (agent_id, seq) and the database lets exactly one win. No extra column or
table is needed, and a device that heartbeats and falls silent again starts a new episode with a new seq.
`is_collector_generated` is how `alerts verify` tells these apart from forgeries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collector import audit
from collector.accounts import aware
from collector.config import CollectorConfig
from collector.errors import CollectorError
from collector.store.models import Agent, Alert

log = logging.getLogger("wardwatch.fleet")
SILENT_GAP = "silent"
SILENT_RULE = "collector/silent-device"
SILENT_SEVERITY = 2  # low: a coverage problem for the technician, not a safeguarding concern in itself
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_DAYS_COUNTED = 366  # a device silent for longer than a year is silent; no need to count further


@dataclass(frozen=True)
class SchoolHours:
    opens: dt.time
    closes: dt.time
    days: frozenset[int]  # Monday = 0
    tz: ZoneInfo

    def holds(self, when: dt.datetime) -> bool:
        local = when.astimezone(self.tz)
        return local.weekday() in self.days and self.opens <= local.time() < self.closes

    def school_time_between(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """How much of [start, end) falls inside school hours."""
        if end <= start:
            return dt.timedelta()
        total = dt.timedelta()
        day = start.astimezone(self.tz).date()
        last = min(end.astimezone(self.tz).date(), day + dt.timedelta(days=MAX_DAYS_COUNTED))
        while day <= last:
            if day.weekday() in self.days:
                # Built in local time, compared in absolute time: a clock change inside the day is handled.
                opens = dt.datetime.combine(day, self.opens, tzinfo=self.tz)
                closes = dt.datetime.combine(day, self.closes, tzinfo=self.tz)
                overlap = min(end, closes) - max(start, opens)
                if overlap > dt.timedelta():
                    total += overlap
            day += dt.timedelta(days=1)
        return total


@dataclass(frozen=True)
class SilencePolicy:
    silent_after: dt.timedelta
    hours: SchoolHours
    check_seconds: float = 60.0

    def is_silent(self, since: dt.datetime, now: dt.datetime) -> bool:
        """Only during school hours, and only once enough school time has passed since the last heartbeat."""
        return self.hours.holds(now) and self.hours.school_time_between(since, now) >= self.silent_after


def _parse_clock(text: str, what: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text.strip())
    except ValueError:
        raise CollectorError(f"[fleet] {what} must look like 08:00-16:30") from None


def parse_days(text: str) -> frozenset[int]:
    """"mon-fri", "mon,wed,fri" or "sat-sun" -> weekday numbers."""
    days: set[int] = set()
    for part in str(text).lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise CollectorError(f"[fleet] school_days must look like mon-fri or mon,tue,thu, got {text!r}")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        if b < a:
            raise CollectorError(f"[fleet] school_days range {part!r} runs backwards")
        days.update(range(a, b + 1))
    return frozenset(days)


def load_silence_policy(config: CollectorConfig) -> SilencePolicy:
    raw = config.extra.get("fleet")
    raw = raw if isinstance(raw, dict) else {}
    try:
        minutes = int(raw.get("silent_after_minutes", 60))
        check = float(raw.get("silent_check_seconds", 60))
    except (TypeError, ValueError):
        raise CollectorError("[fleet] silent_after_minutes and silent_check_seconds must be numbers") from None
    if minutes < 1 or check <= 0:
        raise CollectorError("[fleet] silent_after_minutes and silent_check_seconds must be positive")
    opens_text, sep, closes_text = str(raw.get("school_hours", "08:00-16:30")).partition("-")
    if not sep:
        raise CollectorError("[fleet] school_hours must look like 08:00-16:30")
    opens, closes = _parse_clock(opens_text, "school_hours"), _parse_clock(closes_text, "school_hours")
    if closes <= opens:
        raise CollectorError("[fleet] school_hours must end after they start")
    try:
        tz = ZoneInfo(str(raw.get("timezone", "Europe/London")))
    except (ZoneInfoNotFoundError, ValueError):
        raise CollectorError(f"[fleet] timezone {raw.get('timezone')!r} is not a known time zone") from None
    hours = SchoolHours(opens, closes, parse_days(raw.get("school_days", "mon-fri")), tz)
    return SilencePolicy(dt.timedelta(minutes=minutes), hours, check)


def silent_since(agent: Agent) -> dt.datetime:
    """When the current silence began: the last heartbeat, or enrolment for a device never heard from."""
    return aware(agent.last_seen_at) or aware(agent.enrolled_at)


def episode_seq(since: dt.datetime) -> int:
    """The collector-side seq of the silence episode that began at `since` (always negative)."""
    return -((since - EPOCH) // dt.timedelta(microseconds=1)) - 1


def is_collector_generated(seq: int) -> bool:
    """Alerts the collector made itself (negative seqs) carry no agent signature: they are not forgeries."""
    return seq < 0


def _silent_alert(agent: Agent, since: dt.datetime, now: dt.datetime) -> Alert:
    # No user, no content: the only details are the gap's name and when the silence began.
    return Alert(id=str(uuid.uuid4()), agent_id=agent.id, seq=episode_seq(since), site_id=agent.site_id,
                 kind="coverage", category="", severity=SILENT_SEVERITY, rule=SILENT_RULE, source="",
                 hostname=agent.hostname, user_name="", age_band=agent.age_band,
                 details={"coverage": {"gap": SILENT_GAP, "detail": f"no heartbeat since {since.isoformat()}"},
                          "collector_generated": True},
                 bundle_version=agent.bundle_version, created_at=now, received_at=now, state="new",
                 payload=b"", signature=b"", signature_ok=False)


def raise_silent_alerts(session: Session, policy: SilencePolicy, now: dt.datetime) -> list[str]:
    """One pass: make the alert of every silence episode that has crossed the threshold and has none yet.
    Returns the ids of the alerts this call made (another replica's are not counted)."""
    if not policy.hours.holds(now):
        return []
    made: list[str] = []
    # School time never exceeds wall time, so only devices unheard of for at least `silent_after` of wall time
    # can qualify: the database picks those. Loading every agent each minute, on every worker, held the GIL for
    # most of a second at 10,000 agents, and every call in flight waited.
    since_expr = func.coalesce(Agent.last_seen_at, Agent.enrolled_at)
    candidates = select(Agent).where(Agent.status == "active", since_expr <= now - policy.silent_after)
    for agent in session.scalars(candidates):
        since = silent_since(agent)
        if not policy.is_silent(since, now):
            continue
        seq = episode_seq(since)
        if session.scalar(select(Alert.id).where(Alert.agent_id == agent.id, Alert.seq == seq)) is not None:
            continue
        alert = _silent_alert(agent, since, now)
        try:
            # The savepoint is the claim: the unique (agent_id, seq) key lets one replica's insert through.
            with session.begin_nested():
                session.add(alert)
        except IntegrityError:
            continue
        audit.append(session, "collector", "agent.silent", agent.id,
                     {"alert": alert.id, "silent_since": since.isoformat()})
        made.append(alert.id)
    return made


def check_once(engine: Engine, policy: SilencePolicy, now: dt.datetime | None = None) -> list[str]:
    with audit.write_session(engine) as session:
        return raise_silent_alerts(session, policy, now or dt.datetime.now(dt.UTC))


async def silent_task(config: CollectorConfig, engine: Engine) -> None:
    """Runs forever from `serve`: looks for silent devices every `silent_check_seconds`."""
    policy = load_silence_policy(config)
    audit.use_data_dir(config.data_dir)
    while True:
        try:
            made = await asyncio.to_thread(check_once, engine, policy)
            if made:
                log.warning("%d device(s) fell silent during school hours; coverage alert(s) raised", len(made))
        except Exception as exc:  # a database blip must not end the task; the next round retries
            log.error("silent-device check failed: %s", type(exc).__name__)
        await asyncio.sleep(policy.check_seconds)
