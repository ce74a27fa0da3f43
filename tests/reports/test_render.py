"""Rendered reports: the governors' report (HTML and PDF) holds no pupil identifiers, charts are accessible SVG with
their tables, the head's fragment lists devices but no content, and bad input is a one-line error."""

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy.orm import Session

from collector.reports import render, svg
from collector.reports.figures import SEVERITY_LABELS, build_figures, term_period
from tests.reports.conftest import sqlite_only
from tests.reports.seed import PUPIL_DEVICES

SVG_NS = "{http://www.w3.org/2000/svg}"
CONTENT = ("invented words", "invented context", "homework")  # what the seeded alerts hold as content


def _pdf_text(path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext (poppler-utils) is needed to read the PDF; .ci/run installs it")
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def test_governors_report_holds_no_pupil_identifiers(seeded, cli, tmp_path):
    code, out, _ = cli("report", "governors", "--term", "autumn", "--year", "2026", "--out", str(tmp_path / "gov"))
    assert code == 0
    html_path, pdf_path = (tmp_path / "gov" / f"governors-autumn-2026.{ext}" for ext in ("html", "pdf"))
    assert out.split() == [str(html_path), str(pdf_path)]
    html, text = html_path.read_text(), _pdf_text(pdf_path)
    with Session(seeded.world.engine) as session:
        figures = build_figures(session, term_period("autumn", 2026))
    forbidden = [*seeded.pupils, *seeded.staff_users, *seeded.hostnames, *seeded.agent_ids, *CONTENT, "GONE-PC"]
    for document in (html, text):
        lowered = document.lower()
        assert [f for f in forbidden if f.lower() in lowered] == []
        # ...while the aggregate figures are there, so the extraction itself is known to work.
        assert "Autumn term 2026" in document and "Northfield" in document and "Southbank" in document
        assert f"{figures.whole.total}" in document and "Grooming / exploitation" in document
    assert "<script" not in html.lower()
    assert html.count("<svg") == 3 and html.count("<table") >= 5


@sqlite_only
def test_head_summary_lists_devices_but_never_content(seeded):
    with Session(seeded.world.engine) as session:
        figures = build_figures(session, term_period("autumn", 2026))
    fragment = render.render_head_summary(figures)
    assert fragment.lstrip().startswith("<section") and "<script" not in fragment
    for _site, hostname, pupil in PUPIL_DEVICES:
        assert hostname in fragment  # the head may see which device, never who typed what
        assert pupil not in fragment
    assert not [u for u in seeded.staff_users if u in fragment]
    assert not [c for c in CONTENT if c in fragment]
    # Each chart is followed by the table behind it.
    for chart in ("head-categories", "head-severity", "head-trend"):
        start = fragment.index(f'id="{chart}-title"')
        next_chart = fragment.find("<svg", start)
        assert start < fragment.index("<table", start) < (next_chart if next_chart != -1 else len(fragment))


def _parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))


def test_charts_are_accessible_svg_with_text_labels():
    bars = _parse(svg.bar_chart("c1", "Alerts <by> category", [("Self-harm & suicide", 7), ("Drugs", 2)]))
    assert bars.get("role") == "img" and bars.get("aria-labelledby") == "c1-title c1-desc"
    assert bars.find(f"{SVG_NS}title").text == "Alerts <by> category"
    assert bars.find(f"{SVG_NS}desc").text == "Self-harm & suicide: 7; Drugs: 2"
    texts = [t.text for t in bars.iter(f"{SVG_NS}text")]
    assert texts == ["Self-harm & suicide", "7", "Drugs", "2"]
    widths = [float(r.get("width")) for r in bars.iter(f"{SVG_NS}rect")]
    assert widths[0] > widths[1] > 0

    trend = _parse(svg.trend_chart("c2", "Per week", [("07 Sep", 4, 1), ("14 Sep", 0, 0), ("21 Sep", 9, 3)]))
    assert "week of 21 Sep: 9 alerts, 3 high severity" in trend.find(f"{SVG_NS}desc").text
    assert len(list(trend.iter(f"{SVG_NS}polyline"))) == 2
    assert {"4", "0", "9", "07 Sep", "21 Sep"} <= {t.text for t in trend.iter(f"{SVG_NS}text")}

    stack = _parse(svg.severity_stack("c3", "Severity", [("North <site>", {1: 2, 5: 3})], SEVERITY_LABELS))
    assert stack.find(f"{SVG_NS}desc").text == "North <site>: Informational 2, Imminent risk / illegal 3"
    assert {"North <site>", "2", "3", "5"} <= {t.text for t in stack.iter(f"{SVG_NS}text")}

    empty = _parse(svg.bar_chart("c4", "Nothing", []))
    assert [t.text for t in empty.iter(f"{SVG_NS}text")] == ["No alerts in this period"]


def test_durations_read_at_a_glance():
    assert [render.duration(s) for s in (None, 20, 45 * 60, 3 * 3600, 3 * 3600 + 20 * 60, 50 * 3600, 48 * 3600)] == [
        "-", "0 min", "45 min", "3 h", "3 h 20 min", "2 d 2 h", "2 d"]


@sqlite_only
def test_bad_report_arguments_are_one_line_errors(seeded, cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (("report", "devices", "--from", "2026-13-01"), "--from must be a date like 2026-11-24"),
        (("report", "devices", "--from", "2026-10-02", "--until", "2026-10-01"), "the period ends before it starts"),
        (("report", "governors", "--term", "autumn", "--year", "2026", "--out", str(tmp_path), "--site", "Nowhere"),
         "no site named 'Nowhere'"),
        (("report", "governors", "--term", "spring", "--year", "2027", "--out", str(blocker / "x")), "cannot create"),
        (("report", "weekly", "--send"), "no [smtp] host in config.toml"),
        (("report", "weekly", "--to", "head@school.invalid"), "--to only makes sense with --send"),
    ]
    for args, message in cases:
        code, out, err = cli(*args)
        assert (code, out) == (2, ""), args
        assert len(err.strip().splitlines()) == 1 and message in err, (args, err)


@sqlite_only
def test_a_quiet_term_still_reads_well(store_engine, tmp_path):
    with Session(store_engine) as session:
        figures = build_figures(session, term_period("spring", 2025))
    html = render.render_governors_html(figures, "Riverside Learning Trust")
    pdf = tmp_path / "quiet.pdf"
    pdf.write_bytes(render.html_to_pdf(html))
    text = " ".join(_pdf_text(pdf).split())
    assert "No alert of this period has been reviewed yet." in text
    assert "No keyword alerts in this period." in text and "No alerts in this period" in text
    assert len(figures.weeks) == 14 and not any(w.total for w in figures.weeks)


@sqlite_only
def test_weekly_summary_prints_without_sending(seeded, cli):
    code, out, _ = cli("report", "weekly", "--week-of", "2026-11-18")
    assert code == 0
    assert out.startswith("WardWatch weekly summary: Northfield, Southbank, 16 Nov 2026 to 22 Nov 2026")
    assert not [x for x in (*seeded.pupils, *seeded.staff_users, *seeded.hostnames) if x in out]
