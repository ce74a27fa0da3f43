"""Confirmed concerns as CSV for the school's safeguarding record system (CPOMS, MyConcern); layout in
docs/export-csv.md. Suspected child sexual abuse material is never exported: its category, the referral route and
the referrals made go out, never the words, titles or evidence.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from collector import audit
from collector.errors import CollectorError
from collector.protect.retention_policy import FALSE_POSITIVE, NO_FURTHER_ACTION
from collector.review.rules import CSAM_CATEGORY, INVOLVED, NATURES, OUTCOMES
from collector.store.models import Alert, Site
from collector.store.models_review import CsamReferral, Review
from collector.web.present import CATEGORIES, SEVERITIES, SOURCES

COLUMNS = (
    "wardwatch_id", "incident_date", "incident_time", "occurred_at_utc", "pupil_login", "site", "device",
    "category", "category_label", "severity", "source", "summary", "matched_text", "context", "window_title",
    "application", "involved", "nature", "outcome", "outcome_label", "action_taken", "assessed_by",
    "confirmed_by", "confirmed_at_utc", "referrals", "status",
)
NOT_CONCERNS = frozenset({FALSE_POSITIVE, NO_FURTHER_ACTION})
CSAM_ROUTE = ("Suspected child sexual abuse material. Content withheld by design and never exported. Referral "
              "route: police (999 / 101), Internet Watch Foundation, and the LADO if staff may be involved; "
              "preserve the device.")
# A cell a spreadsheet would run as a formula (CSV injection): prefixed with an apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ConcernExport:
    path: Path
    count: int


def parse_since(value: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise CollectorError(f"--since must be a date like 2026-09-01, got {value!r}") from None
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def school_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CollectorError(f"unknown time zone {name!r} (e.g. Europe/London)") from None


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def concern_rows(session: Session, since: dt.datetime, zone: ZoneInfo) -> list[dict[str, str]]:
    """One row per alert whose confirmed outcome is a concern, confirmed on or after `since`."""
    reviews: dict[str, list[Review]] = {}
    for r in session.scalars(select(Review).order_by(Review.id)):
        reviews.setdefault(r.alert_id, []).append(r)
    sites = {s.id: s.name for s in session.scalars(select(Site))}
    rows = []
    for alert_id, steps in reviews.items():
        final = next((s for s in reversed(steps) if s.step in ("confirm", "decide")), None)
        if final is None or final.outcome in NOT_CONCERNS or _aware(final.created_at) < since:
            continue
        a = session.get(Alert, alert_id)
        if a is None or a.state not in ("closed", "escalated"):
            continue
        assessed = next((s for s in reversed(steps) if s.step == "assess"), None)
        rows.append(_row(session, a, assessed, final, sites, zone))
    rows.sort(key=lambda r: (r["occurred_at_utc"], r["wardwatch_id"]))
    return rows


def _row(session: Session, a: Alert, assessed: Review | None, final: Review, sites: dict[int, str],
         zone: ZoneInfo) -> dict[str, str]:
    csam = a.category == CSAM_CATEGORY
    when = _aware(a.created_at)
    local = when.astimezone(zone)
    category = CATEGORIES.get(a.category, a.category or a.kind)
    referrals = session.scalars(select(CsamReferral).where(CsamReferral.alert_id == a.id)
                                .order_by(CsamReferral.id)).all()
    outcome_label = OUTCOMES.get(final.outcome, final.outcome)
    if csam:
        summary = CSAM_ROUTE
    else:
        summary = (f"WardWatch alert: {category}, severity {SEVERITIES.get(a.severity, a.severity)}, on "
                   f"{a.hostname or 'an unnamed device'} ({SOURCES.get(a.source, a.source or a.kind)}). "
                   f"Two-person review outcome: {outcome_label}.")
    return {
        "wardwatch_id": a.id,
        "incident_date": local.strftime("%d/%m/%Y"),
        "incident_time": local.strftime("%H:%M"),
        "occurred_at_utc": when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pupil_login": a.user_name,
        "site": sites.get(a.site_id, ""),
        "device": a.hostname,
        "category": a.category or a.kind,
        "category_label": category,
        "severity": str(a.severity),
        "source": "" if csam else a.source,
        "summary": summary,
        "matched_text": "" if csam else a.matched,
        "context": "" if csam else a.context,
        "window_title": "" if csam else a.window_title,
        "application": "" if csam else a.application,
        "involved": INVOLVED.get(assessed.involved, assessed.involved) if assessed else "",
        "nature": NATURES.get(assessed.nature, assessed.nature) if assessed else "",
        "outcome": final.outcome,
        "outcome_label": outcome_label,
        # The reasons reviewers wrote: what was decided and why. Withheld for suspected CSAM in case they quote it.
        "action_taken": "" if csam else " | ".join(r for r in ((assessed.reason if assessed else ""),
                                                                 final.reason) if r),
        "assessed_by": assessed.reviewer.display_name or assessed.reviewer.username if assessed else "",
        "confirmed_by": final.reviewer.display_name or final.reviewer.username,
        "confirmed_at_utc": _aware(final.created_at).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "referrals": "; ".join(f"{r.told} {_aware(r.told_at).astimezone(zone):%d/%m/%Y %H:%M}"
                               + (f" ref {r.reference}" if r.reference else "") for r in referrals),
        "status": a.state,
    }


def render_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row[k]) for k in COLUMNS})
    return out.getvalue()


def export_concerns(engine: Engine, since: dt.datetime, out: Path, zone: ZoneInfo, actor: str = "cli") \
        -> ConcernExport:
    """Write the CSV (UTF-8 with a byte-order mark, which Excel and both importers read; mode 0600) and audit it."""
    with audit.write_session(engine) as session:
        rows = concern_rows(session, since, zone)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as f:
            f.write(render_csv(rows))
        audit.append(session, actor, "export.concerns", "export:concerns",
                     {"since": since.date().isoformat(), "count": len(rows),
                      "alert_ids": [r["wardwatch_id"] for r in rows]})
    return ConcernExport(out, len(rows))
