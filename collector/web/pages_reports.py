"""The headteacher's pages: the summary for a chosen period, one device's figures, and the governors' report.

Every figure comes from collector.reports.figures, whose definitions say how to recompute it from
`alerts list --json`; this module only picks the period, checks who may read what, and lays the figures out.
Who reads what is decided there too: `figures_for_user` answers None (403 here) for any role that may not.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from collector import audit
from collector.reports import figures as fig
from collector.reports import render, svg
from collector.reports.schedule import school_name
from collector.web.app import SECURITY_HEADERS, Console, PageError  # create_app imports this module after app.py

PERIOD_CHOICES = {"30d": "Last 30 days", "term": "A term", "custom": "Chosen dates"}
MAX_CUSTOM_DAYS = 3 * 366
TREND_WEEKS = 8
_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


@dataclass(frozen=True)
class PeriodChoice:
    kind: str
    period: fig.Period
    term: str
    year: int
    first: dt.date
    last: dt.date

    def query(self) -> str:
        """The query string that chooses this period again (for links to device pages and back)."""
        if self.kind == "term":
            return urlencode({"period": "term", "term": self.term, "year": self.year})
        if self.kind == "custom":
            return urlencode({"period": "custom", "from": self.first.isoformat(), "to": self.last.isoformat()})
        return urlencode({"period": "30d"})


def current_term(today: dt.date) -> tuple[str, int]:
    return ("spring" if today.month <= 3 else "summer" if today.month <= 8 else "autumn"), today.year


def _date(text: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise PageError(400, "Dates not understood", f"The {what} date must look like 2026-09-01.",
                        back="/reports") from None


def _year(text: str | None, default: int) -> int:
    if not text:
        return default
    if not text.strip().isdigit() or not 2000 <= int(text) <= 2100:
        raise PageError(400, "Year not understood", "Choose a year such as 2026.", back="/reports")
    return int(text)


def choose_period(params, today: dt.date) -> PeriodChoice:
    """The period a request asks for; a wrong choice is a 400 page in words, never a traceback."""
    kind = params.get("period", "30d")
    term, year = current_term(today)
    if kind == "term" or ("term" in params and kind != "custom"):
        term = params.get("term", term)
        if term not in fig.TERMS:
            raise PageError(400, "Term not understood", "Choose the autumn, spring or summer term.", back="/reports")
        year = _year(params.get("year"), year)
        period = fig.term_period(term, year)
        return PeriodChoice("term", period, term, year, period.start.date(), period.last_day)
    if kind == "custom":
        first, last = _date(params.get("from", ""), "first"), _date(params.get("to", ""), "last")
        if last < first or (last - first).days > MAX_CUSTOM_DAYS:
            raise PageError(400, "Dates not usable", "The last date must be on or after the first, and the period "
                            "at most three years long.", back="/reports")
        return PeriodChoice("custom", fig.days_period(first, last), term, year, first, last)
    first = today - dt.timedelta(days=29)
    return PeriodChoice("30d", fig.days_period(first, today), term, year, first, today)


def style_hash_csp(html: str) -> str:
    """The console's policy, letting through exactly the report's own <style> blocks (by hash) and nothing else."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"
                      for block in _STYLE.findall(html))
    return SECURITY_HEADERS["Content-Security-Policy"].replace("style-src 'self'", f"style-src 'self' {hashes}")


def device_charts(device: fig.DeviceSummary, weeks: list[fig.WeekPoint]) -> dict[str, Markup]:
    categories = [(fig.CATEGORY_LABELS.get(c, c), n) for c, n in device.tally.by_category.most_common()]
    return {
        "categories": svg.bar_chart("device-categories", "Keyword alerts by category", categories),
        "severity": svg.severity_stack("device-severity", "Alerts by severity",
                                       [(device.hostname or device.agent_id, dict(device.tally.by_severity))],
                                       fig.SEVERITY_LABELS),
        "trend": svg.trend_chart("device-trend", "Alerts per week",
                                 [(f"{w.week_start:%d %b}", w.total, w.high) for w in weeks]),
    }


class ReportPages:
    def __init__(self, console: Console):
        self.console = console

    def add_routes(self, app: FastAPI) -> None:
        app.add_api_route("/reports", self.summary, methods=["GET"])
        app.add_api_route("/reports/report.css", self.stylesheet, methods=["GET"])
        app.add_api_route("/reports/governors", self.governors, methods=["GET"])
        app.add_api_route("/reports/governors.pdf", self.governors_pdf, methods=["GET"])
        app.add_api_route("/reports/devices/{agent_id}", self.device, methods=["GET"])

    def stylesheet(self) -> Response:
        # The fragment's own stylesheet, kept with the report templates; it holds no data.
        return FileResponse(render.HEAD_SUMMARY_CSS, media_type="text/css")

    def _figures(self, db: Session, user, choice: PeriodChoice, governors: bool, target: str) -> fig.Figures:
        figures = fig.figures_for_user(db, user, choice.period, governors_report=governors,
                                       trend_weeks=None if governors else TREND_WEEKS)
        if figures is None:
            audit.append(db, user.username, "report.view_refused", target, {})
            raise PageError(403, "Not available to your role",
                            "Governors read the termly governors' report only; technicians see the devices pages."
                            if user.role in ("governor", "technician") else
                            "These figures are for the headteacher and the safeguarding team.",
                            back="/reports/governors" if user.role == "governor" else "/")
        return figures

    # ---- the head's summary

    def summary(self, request: Request) -> Response:
        def work(db: Session) -> Response:
            ws, user = self.console.signed_in(request, db)
            choice = choose_period(request.query_params, dt.date.today())
            figures = self._figures(db, user, choice, False, "reports")
            audit.append(db, user.username, "report.view", "reports", {"period": choice.period.label})
            return self.console.render(
                request, "reports/summary.html", user=user, csrf=ws.csrf_token, choice=choice,
                choices=PERIOD_CHOICES, terms=fig.TERMS, summary=Markup(render.render_head_summary(figures)),
                devices=figures.devices)

        return self.console.run(request, work)

    def device(self, request: Request, agent_id: str) -> Response:
        def work(db: Session) -> Response:
            ws, user = self.console.signed_in(request, db)
            choice = choose_period(request.query_params, dt.date.today())
            figures = self._figures(db, user, choice, False, f"report:device:{agent_id[:32]}")
            device = next((d for d in figures.devices if d.agent_id == agent_id), None)
            if device is None:
                raise PageError(404, "No such device", "There is no device with that id at your sites, or it had "
                                "left the fleet before this period.", back=f"/reports?{choice.query()}")
            facts = [f for f in fig.load_facts(db, choice.period.start, choice.period.end, {device.site_id},
                                               include_staff=fig.sees_staff_alert_counts(user.role))
                     if f.agent_id == agent_id]
            weeks = fig.weekly_trend(facts, choice.period.start, choice.period.end)
            audit.append(db, user.username, "report.device_view", f"agent:{agent_id}",
                         {"period": choice.period.label})
            return self.console.render(
                request, "reports/device.html", user=user, csrf=ws.csrf_token, choice=choice, d=device,
                weeks=weeks, charts=device_charts(device, weeks), category_labels=fig.CATEGORY_LABELS,
                severity_labels=fig.SEVERITY_LABELS, duration=render.duration, outcome_labels=render.OUTCOMES)

        return self.console.run(request, work)

    # ---- the governors' report

    def _governors_html(self, request: Request, db: Session, fmt: str) -> tuple[str, fig.Period]:
        _ws, user = self.console.signed_in(request, db)
        params = request.query_params
        term, year = current_term(dt.date.today())
        choice = choose_period({"period": "term", "term": params.get("term", term),
                                "year": params.get("year", str(year))}, dt.date.today())
        figures = self._figures(db, user, choice, True, "report:governors")
        audit.append(db, user.username, "report.governors", "report:governors",
                     {"period": choice.period.label, "format": fmt})
        return render.render_governors_html(figures, school_name(self.console.config, db)), choice.period

    def governors(self, request: Request) -> Response:
        def work(db: Session) -> Response:
            html, _period = self._governors_html(request, db, "html")
            response = HTMLResponse(html)
            response.headers["Content-Security-Policy"] = style_hash_csp(html)
            return response

        return self.console.run(request, work)

    async def governors_pdf(self, request: Request) -> Response:
        made: dict = {}

        def work(db: Session) -> Response:
            made["html"], made["period"] = self._governors_html(request, db, "pdf")
            return Response(status_code=204)

        answer = await asyncio.to_thread(self.console.run, request, work)
        if "html" not in made:  # refused, or not signed in: that page is the answer
            return answer
        # Drawn after the transaction has ended: a PDF takes seconds, and a write lock must not wait on it.
        pdf = await asyncio.to_thread(render.html_to_pdf, made["html"])
        name = re.sub(r"[^A-Za-z0-9]+", "-", made["period"].label).strip("-").lower()
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="governors-report-{name}.pdf"'})



def add_routes(app: FastAPI, console: Console) -> None:
    ReportPages(console).add_routes(app)
