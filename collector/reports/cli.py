"""`report weekly|governors|devices`: the head's and governors' reports from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit, notify
from collector.context import open_store
from collector.errors import CollectorError
from collector.reports import render, schedule
from collector.reports.figures import Period, build_figures, days_period, last_full_week, monday_of, term_period
from collector.store.models import Site

DEFAULT_DEVICE_DAYS = 30


def _date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise CollectorError(f"{option} must be a date like 2026-11-24, got {value!r}") from exc


def _site_ids(session: Session, names: list[str]) -> list[int] | None:
    if not names:
        return None
    found = {name: site_id for name, site_id in session.execute(select(Site.name, Site.id).where(Site.name.in_(names)))}
    missing = [n for n in names if n not in found]
    if missing:
        raise CollectorError(f"no site named {missing[0]!r}")
    return list(found.values())


def _weekly_period(args: argparse.Namespace) -> Period:
    if args.week_of:
        monday = monday_of(_date(args.week_of, "--week-of"))
        return days_period(monday, monday + dt.timedelta(days=6))
    return last_full_week(dt.datetime.now(dt.UTC))


def cmd_report_weekly(args: argparse.Namespace) -> int:
    period = _weekly_period(args)
    with open_store(args) as (cfg, engine):
        if args.send:
            sent = schedule.send_weekly_summary(cfg, engine, period, override=args.to or None)
            print(f"weekly summary for {period.label} e-mailed ({sent} message(s))")
            return 0
        if args.to:
            raise CollectorError("--to only makes sense with --send")
        with Session(engine) as session:
            figures = build_figures(session, period, trend_weeks=schedule.TREND_WEEKS)
            msg = render.weekly_email(figures, schedule.school_name(cfg, session), "wardwatch@localhost", [],
                                      notify.console_url(cfg))
    print(msg.get_body(("plain",)).get_content(), end="")
    return 0


def cmd_report_governors(args: argparse.Namespace) -> int:
    try:
        period = term_period(args.term, args.year)
    except ValueError as exc:
        raise CollectorError(str(exc)) from exc
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CollectorError(f"cannot create {args.out}: {exc.strerror}") from exc
    with open_store(args) as (cfg, engine):
        with Session(engine) as session:
            figures = build_figures(session, period, _site_ids(session, args.site))
            html = render.render_governors_html(figures, schedule.school_name(cfg, session))
        stem = args.out / f"governors-{args.term}-{args.year}"
        html_path, pdf_path = stem.with_suffix(".html"), stem.with_suffix(".pdf")
        try:
            html_path.write_text(html, encoding="utf-8")
            pdf_path.write_bytes(render.html_to_pdf(html))
        except OSError as exc:
            raise CollectorError(f"cannot write the report into {args.out}: {exc.strerror}") from exc
        with audit.write_session(engine) as session:
            audit.append(session, "cli", "report.governors", f"report:governors:{args.term}-{args.year}",
                         {"alerts": figures.whole.total})
    print(f"{html_path}\n{pdf_path}")
    return 0


def cmd_report_devices(args: argparse.Namespace) -> int:
    today = dt.datetime.now(dt.UTC).date()
    last = _date(args.until, "--until") if args.until else today
    first = _date(args.start, "--from") if args.start else last - dt.timedelta(days=DEFAULT_DEVICE_DAYS - 1)
    try:
        period = days_period(first, last)
    except ValueError as exc:
        raise CollectorError(str(exc)) from exc
    with open_store(args) as (_cfg, engine), Session(engine) as session:
        figures = build_figures(session, period, _site_ids(session, args.site))
    if args.json:
        for device in figures.devices:
            print(json.dumps(device.as_json(), ensure_ascii=False))
        return 0
    print(f"{period.label}: {figures.whole.total} alert(s), {figures.whole.open} open")
    for d in figures.devices:
        t = d.tally
        seen = f"{d.last_seen_at:%Y-%m-%d %H:%M}" if d.last_seen_at else "never"
        print(f"{d.hostname or d.agent_id:24} {d.site_name:16} alerts {t.total:4}  high {t.high:3}  open {t.open:3}  "
              f"usb {t.usb_events:3}  first review {render.duration(t.median_first_review_s):>10}  last seen {seen}")
    return 0
