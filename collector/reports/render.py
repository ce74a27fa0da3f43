"""Rendering the figures: the head's page fragment, the weekly e-mail (text and HTML) and the governors' report
(HTML, and PDF through WeasyPrint from the same HTML)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from email.message import EmailMessage
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from collector.reports import svg
from collector.reports.figures import CATEGORY_LABELS, SEVERITY_LABELS, Figures
from collector.review.rules import OUTCOMES

TEMPLATES = Path(__file__).with_name("templates")
HEAD_SUMMARY = "head_summary.html"
HEAD_SUMMARY_CSS = TEMPLATES / "reports.css"  # the console serves or inlines it next to the fragment
GOVERNORS = "governors.html"
SEVERITIES = (1, 2, 3, 4, 5)


def duration(seconds: float | None) -> str:
    """A median time in words a head reads at a glance: '45 min', '3 h 20 min', '2 d 4 h'; '-' when none."""
    if seconds is None:
        return "-"
    minutes = max(0, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def spoken_duration(seconds: float | None) -> str:
    """The same, for a sentence: a dash reads badly in prose."""
    return "none yet" if seconds is None else duration(seconds)


def _day(value: dt.date | dt.datetime) -> str:
    return f"{value:%a %d %b %Y}"


def _when(value: dt.datetime | None) -> str:
    return "never" if value is None else f"{value.astimezone(dt.UTC):%d %b %Y %H:%M} UTC"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(duration=duration, spoken_duration=spoken_duration, day=_day, when=_when,
                       category_label=lambda c: CATEGORY_LABELS.get(c, c or "(none)"),
                       severity_label=lambda s: SEVERITY_LABELS.get(s, ""),
                       outcome_label=lambda o: OUTCOMES.get(o, o))
    env.globals["severities"] = SEVERITIES
    return env


def charts(figures: Figures, prefix: str) -> dict[str, Markup]:
    """The three charts of a report; `prefix` keeps SVG ids unique when two reports share a page."""
    categories = [(CATEGORY_LABELS.get(c, c), n) for c, n in figures.whole.by_category.most_common()]
    rows = [(s.name, dict(s.tally.by_severity)) for s in figures.sites]
    if len(rows) > 1:
        rows.append(("All sites", dict(figures.whole.by_severity)))
    weeks = [(f"{w.week_start:%d %b}", w.total, w.high) for w in figures.weeks]
    return {
        "categories": svg.bar_chart(f"{prefix}-categories", "Keyword alerts by category", categories),
        "severity": svg.severity_stack(f"{prefix}-severity", "Alerts by severity", rows, SEVERITY_LABELS),
        "trend": svg.trend_chart(f"{prefix}-trend", "Alerts per week", weeks),
    }


def render_head_summary(figures: Figures) -> str:
    """The head's summary as an HTML fragment (a <section>) for the console's own layout."""
    return environment().get_template(HEAD_SUMMARY).render(figures=figures, charts=charts(figures, "head"))


def aggregate_only(figures: Figures) -> Figures:
    """The figures without their device rows, so that nothing naming a device can reach the governors."""
    return dataclasses.replace(figures, devices=[])


def render_governors_html(figures: Figures, school: str) -> str:
    devices = figures.device_count
    aggregate = aggregate_only(figures)
    return environment().get_template(GOVERNORS).render(figures=aggregate, devices=devices, school=school,
                                                       charts=charts(aggregate, "gov"))


def html_to_pdf(html: str) -> bytes:
    # Imported here: WeasyPrint loads pango at import time, and only report commands need it.
    # WeasyPrint narrates every step at INFO (from its import on); the CLI's log is for WardWatch's own events.
    for noisy in ("weasyprint", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from weasyprint import HTML

    return HTML(string=html, base_url=str(TEMPLATES)).write_pdf()


def weekly_email(figures: Figures, school: str, sender: str, recipients: list[str], console_url: str) -> EmailMessage:
    """The weekly summary e-mail to the head and SLT: counts only, with a link to the console for the rest."""
    env = environment()
    context = {"figures": aggregate_only(figures), "school": school, "console_url": console_url.rstrip("/")}
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = f"WardWatch weekly summary: {school}, {figures.period.label}"
    msg.set_content(env.get_template("weekly_email.txt").render(context))
    msg.add_alternative(env.get_template("weekly_email.html").render(context), subtype="html")
    return msg
