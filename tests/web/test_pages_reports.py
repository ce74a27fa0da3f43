"""The head's report pages on a seeded store (SQLite and PostgreSQL): figures recomputed from `alerts list --json`,
who may read which page, and a governors' report with no pupil identifiers in it."""

import contextlib
import html
import re
import threading

import pyotp
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.cli import main
from collector.config import CollectorConfig
from collector.pki import cert_pem, issue_server_certificate, key_pem, make_ca, write_private
from collector.reports.figures import CATEGORY_LABELS
from collector.store.models_review import AuditEntry
from collector.web.app import create_app
from collector.web.present import landing
from tests.harness import free_port, wait_for
from tests.reports.conftest import json_lines
from tests.reports.recount import parse_time, recompute
from tests.reports.seed import TERM_END, TERM_START, seed_store
from tests.review.world import PASSWORD, STAFF
from tests.web.conftest import Browserless
from tests.web.test_browser import CHROMIUM_ARGS

AUTUMN_2026 = "/reports?period=term&term=autumn&year=2026"
LEDE = re.compile(r"(\d+) alerts? \((\d+) high severity\) from (\d+) devices? ?; (\d+) still open")
DEVICE_LEDE = re.compile(r"(\d+) alerts? ?, (\d+) high severity, (\d+) open")


@pytest.fixture
def seeded(store_engine, db_url, tmp_path):
    return seed_store(store_engine, tmp_path / "data", db_url)


@pytest.fixture
def app(seeded):
    return create_app(CollectorConfig(data_dir=seeded.data_dir, db_url=seeded.db_url), seeded.world.engine)


@pytest.fixture
def as_user(app, seeded):
    return lambda username: Browserless(app, seeded.world).sign_in(username)


@pytest.fixture
def term_rows(seeded, capsys) -> list[dict]:
    """Counted Northfield alerts of the autumn term, as `alerts list --json` prints them."""
    capsys.readouterr()
    assert main(["--data", str(seeded.data_dir), "--db", seeded.db_url, "alerts", "list", "--json"]) == 0
    rows = json_lines(capsys.readouterr().out)
    return [r for r in rows if TERM_START <= parse_time(r["received_at"]) < TERM_END
            and r["site_id"] == seeded.world.north]


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_the_heads_summary_matches_alerts_list_json(as_user, term_rows, seeded):
    page = as_user("head.dara").get(AUTUMN_2026)
    assert page.status_code == 200
    expected = recompute(term_rows)
    total, high, _devices, still_open = map(int, LEDE.search(text_of(page.text)).groups())
    assert total == expected["total"] > 0
    assert high == sum(n for s, n in expected["by_severity"].items() if int(s) >= 4)
    assert still_open == expected["open"]
    # The charts are SVG, each with its table; the chooser keeps the term chosen.
    assert page.text.count("<svg") >= 3 and "the table behind the chart" in page.text
    assert 'value="term" checked' in page.text
    assert expected["by_category"]
    for category, n in expected["by_category"].items():
        assert f'<th scope="row">{CATEGORY_LABELS[category]}</th><td class="n">{n}</td>' in page.text, category
    # The headteacher sees alerts about staff counted (the staff device is listed); a DSL does not.
    assert "STAFFROOM-THORNCASTLE" in page.text
    dsl_page = as_user("dsl.amber").get(AUTUMN_2026)
    dsl_total = int(LEDE.search(text_of(dsl_page.text)).group(1))
    assert dsl_total == expected["total"] - sum(r["age_band"] == "staff" for r in term_rows)


def test_each_device_page_matches_its_alerts(as_user, term_rows, seeded):
    head = as_user("head.dara")
    summary = head.get(AUTUMN_2026).text
    north = [(aid, host) for aid, host in zip(seeded.agent_ids, seeded.hostnames, strict=True)
             if f"/reports/devices/{aid}?" in summary]
    assert len(north) == 4  # three pupils' laptops and the staff PC at Northfield; Southbank is not the head's
    for agent_id, hostname in north:
        page = head.get(f"/reports/devices/{agent_id}?period=term&term=autumn&year=2026")
        assert page.status_code == 200 and hostname in page.text
        expected = recompute([r for r in term_rows if r["agent_id"] == agent_id])
        total, high, still_open = map(int, DEVICE_LEDE.search(text_of(page.text)).groups())
        assert (total, still_open) == (expected["total"], expected["open"])
        assert high == sum(n for s, n in expected["by_severity"].items() if int(s) >= 4)
        assert page.text.count("<svg") == 3
    southbank = seeded.agent_ids[seeded.hostnames.index("BRAMWELLIX-CHROMEBOOK")]
    assert head.get(f"/reports/devices/{southbank}").status_code == 404


def test_bad_periods_are_explained_not_crashed(as_user):
    head = as_user("head.dara")
    for query in ("period=custom&from=2026-13-01&to=2026-12-01", "period=custom&from=2026-12-01&to=2026-11-01",
                  "period=term&term=winter", "period=term&term=autumn&year=abc"):
        r = head.get(f"/reports?{query}")
        assert r.status_code == 400 and "Traceback" not in r.text
    custom = head.get("/reports?period=custom&from=2026-10-01&to=2026-10-31")
    assert custom.status_code == 200 and "01 Oct 2026 to 31 Oct 2026" in custom.text
    assert head.get("/reports").status_code == 200  # the last 30 days by default


def test_who_may_read_which_report(as_user, seeded):
    tech = as_user("tech.evan")
    for path in (AUTUMN_2026, "/reports/governors", "/reports/governors.pdf",
                 f"/reports/devices/{seeded.agent_ids[0]}", "/queue"):
        assert tech.get(path).status_code == 403, path
    assert as_user("admin.gale").get(AUTUMN_2026).status_code == 200
    assert as_user("dsl.basil").get("/reports/governors?term=autumn&year=2026").status_code == 200
    governor = as_user("gov.fern")
    assert governor.get(AUTUMN_2026).status_code == 403
    assert governor.get(f"/reports/devices/{seeded.agent_ids[0]}").status_code == 403
    assert governor.get("/reports/governors?term=autumn&year=2026").status_code == 200
    with Session(seeded.world.engine) as s:
        refused = s.scalars(select(AuditEntry.actor).where(AuditEntry.action == "report.view_refused")).all()
    assert refused.count("tech.evan") == 4 and refused.count("gov.fern") == 2
    signed_out = Browserless(create_app(CollectorConfig(data_dir=seeded.data_dir, db_url=seeded.db_url),
                                        seeded.world.engine), seeded.world)
    assert signed_out.get("/reports/governors").status_code == 303


def test_the_governors_report_holds_no_pupil_identifiers(as_user, seeded, term_rows):
    governor = as_user("gov.fern")
    page = governor.get("/reports/governors?term=autumn&year=2026")
    assert page.status_code == 200 and "Autumn term 2026" in page.text
    for identifier in (*seeded.pupils, *seeded.staff_users, *seeded.hostnames, *seeded.agent_ids):
        assert identifier.lower() not in page.text.lower(), identifier
    # Its own stylesheet is let through by hash, not by opening the policy to inline styles.
    policy = page.headers["content-security-policy"]
    assert "'sha256-" in policy and "unsafe-inline" not in policy
    with Session(seeded.world.engine) as s:
        logged = s.scalars(select(AuditEntry).where(AuditEntry.action == "report.governors")).all()
    assert [e.actor for e in logged] == ["gov.fern"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_governors_pdf_downloads(as_user):
    r = as_user("head.dara").get("/reports/governors.pdf?term=autumn&year=2026")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    assert "governors-report-autumn-term-2026.pdf" in r.headers["content-disposition"]


# ---------------------------------------------------------------- in the browser

@contextlib.contextmanager
def served_over_https(app, tmp_path):
    """The console app on a real uvicorn over HTTPS on 127.0.0.1; yields its base URL."""
    ca_key, ca_cert = make_ca()
    key, cert = issue_server_certificate(ca_key, ca_cert, ["127.0.0.1"])
    write_private(tmp_path / "web.key", key_pem(key))
    (tmp_path / "web.crt").write_bytes(cert_pem(cert))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           ssl_certfile=str(tmp_path / "web.crt"),
                                           ssl_keyfile=str(tmp_path / "web.key")))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "uvicorn to start")
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@contextlib.contextmanager
def signed_in_page(base: str, world, username: str, width: int = 1280, height: int = 900):
    """Chromium signed in as `username` through the password and authenticator-code forms."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(ignore_https_errors=True,
                                       viewport={"width": width, "height": height}).new_page()
            page.goto(f"{base}/login")
            page.fill("#username", username)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/login/code")
            page.fill("#code", pyotp.TOTP(world.secrets[username]).now())
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}{landing(STAFF[username][0])}")
            yield page
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_head_reads_reports_in_chromium(app, seeded, term_rows, tmp_path):
    expected = recompute(term_rows)
    with served_over_https(app, tmp_path) as base, signed_in_page(base, seeded.world, "head.dara") as page:
        page.click("nav >> text=Reports")
        page.wait_for_url(f"{base}/reports")
        # The chooser, as a head uses it: pick a term and show it.
        page.check("input[name=period][value=term]")
        page.select_option("#term", "autumn")
        page.fill("#year", "2026")
        page.click(".period-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/reports\?period=term.*"))
        lede = page.inner_text(".ww-lede")
        assert int(LEDE.search(re.sub(r"\s+", " ", lede)).group(1)) == expected["total"]
        assert page.locator(".ww-report svg").count() >= 3
        # The report stylesheet applied (the CSP lets it through): tables collapse their borders.
        assert page.eval_on_selector(".ww-report table.figures",
                                     "t => getComputedStyle(t).borderCollapse") == "collapse"
        page.screenshot(path="/tmp/wardwatch-reports-laptop.png", full_page=True)
        page.click(".device-links a:has-text(\"QUILLONDRA-LAPTOP\")")
        page.wait_for_url(re.compile(r".*/reports/devices/.*"))
        assert page.locator("svg").count() == 3
        page.screenshot(path="/tmp/wardwatch-report-device-laptop.png", full_page=True)
        page.goto(f"{base}/reports/governors?term=autumn&year=2026")
        body = page.inner_text("body")
        assert "Autumn term 2026" in body
        for identifier in (*seeded.pupils, *seeded.hostnames):
            assert identifier not in body
        # Its inline stylesheet is allowed by hash: the heading takes the report's colour.
        assert page.eval_on_selector("h1", "h => getComputedStyle(h).color") == "rgb(31, 63, 95)"
        page.screenshot(path="/tmp/wardwatch-governors.png", full_page=True)
