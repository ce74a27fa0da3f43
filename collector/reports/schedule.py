"""The weekly summary e-mail to the head and SLT: who gets it, sending it, and the schedule `serve` runs.

Settings, all optional, from `[reports]` in config.toml:
  school_name      name printed on reports (default: the site names)
  weekly_to        extra addresses that get the whole school's figures (list)
  weekly_roles     account roles that get their own sites' figures (default headteacher, dsl, deputy-dsl:
                   the DSL is a member of the senior leadership team under KCSIE)
  weekly_day       day the summary of the previous week is sent (default "monday")
  weekly_hour      hour, UTC, from which it is sent that day (default 7)
  check_seconds    how often the schedule looks (default 600)
Mail goes through `[smtp]`, as imminent-risk paging does (collector.notify).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import smtplib
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from collector import audit, notify
from collector.config import CollectorConfig
from collector.errors import CollectorError
from collector.reports.figures import (
    Period,
    build_figures,
    last_full_week,
    monday_of,
    sees_staff_alert_counts,
    visible_site_ids,
)
from collector.reports.render import weekly_email
from collector.store.models import Site
from collector.store.models_review import User

log = logging.getLogger("wardwatch.reports")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_ROLES = ("headteacher", "dsl", "deputy-dsl")
TREND_WEEKS = 8
# A claim whose sender died before recording the result is taken over after this long.
CLAIM_TTL = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Recipients:
    addresses: tuple[str, ...]
    site_ids: frozenset[int] | None  # None: every site
    include_staff: bool = True  # alerts about staff are counted only for those who may know of them


def _settings(config: CollectorConfig) -> dict:
    raw = config.extra.get("reports")
    return raw if isinstance(raw, dict) else {}


def school_name(config: CollectorConfig, session: Session) -> str:
    name = _settings(config).get("school_name")
    if name:
        return str(name)
    return ", ".join(session.scalars(select(Site.name).order_by(Site.name))) or "the school"


def recipients(config: CollectorConfig, session: Session, override: list[str] | None = None) -> list[Recipients]:
    """Who gets the weekly summary, grouped by the sites they may see (nobody is sent another site's figures) and by
    whether they may know of alerts about staff."""
    if override:
        return [Recipients(tuple(override), None)]
    settings = _settings(config)
    groups: dict[tuple[frozenset[int], bool], list[str]] = {}
    roles = tuple(settings.get("weekly_roles", DEFAULT_ROLES))
    for user in session.scalars(select(User).where(User.role.in_(roles), User.disabled.is_(False))
                                .order_by(User.username)):
        sites = visible_site_ids(user)
        if user.email and sites:
            groups.setdefault((sites, sees_staff_alert_counts(user.role)), []).append(user.email)
    out = [Recipients(tuple(addresses), sites, staff) for (sites, staff), addresses in groups.items()]
    extra = [str(a) for a in settings.get("weekly_to", [])]
    if extra:
        out.append(Recipients(tuple(extra), None))
    return out


def send_weekly_summary(config: CollectorConfig, engine: Engine, period: Period, override: list[str] | None = None,
                        now: dt.datetime | None = None) -> int:
    """E-mail the summary of `period` to every recipient group; returns how many e-mails went out."""
    settings = notify.smtp_settings(config)
    if settings is None:
        raise CollectorError("no [smtp] host in config.toml, so the weekly summary cannot be e-mailed")
    sent = 0
    with Session(engine) as session:
        school = school_name(config, session)
        messages = []
        for group in recipients(config, session, override):
            figures = build_figures(session, period, group.site_ids, trend_weeks=TREND_WEEKS, now=now,
                                    include_staff=group.include_staff)
            messages.append(weekly_email(figures, school, settings.sender, list(group.addresses),
                                         notify.console_url(config)))
    for msg in messages:
        notify.send(settings, msg)
        sent += 1
    with audit.write_session(engine) as session:
        audit.append(session, "reports", "report.weekly.sent", weekly_target(period),
                     {"emails": sent, "recipients": sum(len(m["To"].split(",")) for m in messages)})
    return sent


def weekly_target(period: Period) -> str:
    return f"report:weekly:{period.start.date().isoformat()}"


def due_period(config: CollectorConfig, now: dt.datetime) -> Period | None:
    """The week to report if this week's send time has passed, else None."""
    settings = _settings(config)
    day = DAYS.index(str(settings.get("weekly_day", "monday")).lower())
    hour = int(settings.get("weekly_hour", 7))
    send_at = dt.datetime.combine(monday_of(now) + dt.timedelta(days=day), dt.time(hour), tzinfo=dt.UTC)
    return last_full_week(now) if now >= send_at else None


class _AlreadyClaimed(Exception):
    pass


def _claim(engine: Engine, target: str) -> bool:
    """Record that this process sends the week's summary. The audit head lock orders claims from every replica
    and worker, so exactly one of them sees no earlier live claim."""
    try:
        with audit.write_session(engine) as session:
            mine = audit.append(session, "scheduler", "report.weekly.claimed", target, {})
            earlier = [e for e in audit.entries_for(session, target) if e.id < mine.id]
            if earlier:
                last = earlier[-1]
                age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(last.at)
                if last.action == "report.weekly.sent" or (last.action == "report.weekly.claimed" and age < CLAIM_TTL):
                    raise _AlreadyClaimed
    except _AlreadyClaimed:
        return False
    return True


def run_weekly_once(config: CollectorConfig, engine: Engine, now: dt.datetime | None = None) -> int:
    """Send last week's summary if it is due and nobody sent it yet. Returns the number of e-mails sent."""
    now = now or dt.datetime.now(dt.UTC)
    period = due_period(config, now)
    if period is None or notify.smtp_settings(config) is None:
        return 0
    target = weekly_target(period)
    if not _claim(engine, target):
        return 0
    try:
        return send_weekly_summary(config, engine, period, now=now)
    except (OSError, smtplib.SMTPException) as exc:
        log.error("could not e-mail the weekly summary: %s", type(exc).__name__)
        with audit.write_session(engine) as session:
            audit.append(session, "scheduler", "report.weekly.failed", target, {"error": type(exc).__name__})
        return 0


async def weekly_task(config: CollectorConfig, engine: Engine) -> None:
    """Run forever (until cancelled) from `serve`: send each week's summary once, at the configured time."""
    interval = float(_settings(config).get("check_seconds", 600))
    while True:
        try:
            await asyncio.to_thread(run_weekly_once, config, engine)
        except Exception:  # the schedule must outlive a database hiccup; the next round tries again
            log.exception("weekly summary round failed")
        await asyncio.sleep(interval)
