"""The weekly summary e-mail through a real SMTP server (aiosmtpd on 127.0.0.1), and the schedule that sends it."""

import asyncio
import datetime as dt
import re

import pytest
from sqlalchemy.orm import Session

from collector import audit
from collector.config import CollectorConfig
from collector.reports import schedule
from collector.reports.figures import days_period
from tests.harness import free_port, wait_for
from tests.reports.conftest import json_lines, sqlite_only
from tests.reports.recount import recompute

WEEK = days_period(dt.date(2026, 11, 16), dt.date(2026, 11, 22))
MONDAY_AFTER = dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC)
SUMMARY = re.compile(r"(\d+) alerts? \((\d+) high severity\); (\d+) still open")




def _config(seeded, port: int, **reports) -> CollectorConfig:
    return CollectorConfig(data_dir=seeded.data_dir, db_url=seeded.db_url,
                           public_web_url="https://console.school.invalid",
                           extra={"smtp": {"host": "127.0.0.1", "port": port, "sender": "wardwatch@school.invalid"},
                                  "reports": {"school_name": "Riverside Learning Trust", **reports}})


def _parts(msg) -> tuple[str, str]:
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def test_each_group_gets_its_own_sites_counts_only(seeded, cli, smtp):
    inbox, port = smtp
    cfg = _config(seeded, port)
    assert schedule.send_weekly_summary(cfg, seeded.world.engine, WEEK) == 3
    wait_for(lambda: len(inbox.messages) == 3, 10, "three weekly e-mails")
    by_recipients = {tuple(sorted(to)): msg for to, msg in inbox.messages}
    dsls = by_recipients[("dsl.amber@school.invalid", "dsl.basil@school.invalid", "dsl.cora@school.invalid")]
    head = by_recipients[("head.dara@school.invalid",)]
    south = by_recipients[("dsl.south@school.invalid",)]
    assert head["Subject"] == "WardWatch weekly summary: Riverside Learning Trust, 16 Nov 2026 to 22 Nov 2026"

    rows = [r for r in json_lines(cli("alerts", "list", "--json")[1]) if WEEK.holds(dt.datetime.fromisoformat(
        r["received_at"]))]
    not_staff = [r for r in rows if r["age_band"] != "staff"]
    assert len(not_staff) < len(rows)  # an alert about staff arrived this week: only the head's e-mail counts it
    for msg, seen, site_id, site_name, other in (
            (head, rows, seeded.world.north, "Northfield", "Southbank"),
            (dsls, not_staff, seeded.world.north, "Northfield", "Southbank"),
            (south, not_staff, seeded.world.south, "Southbank", "Northfield")):
        text, html = _parts(msg)
        expected = recompute([r for r in seen if r["site_id"] == site_id])
        high = sum(n for s, n in expected["by_severity"].items() if int(s) >= 4)
        assert SUMMARY.search(text).groups() == (str(expected["total"]), str(high), str(expected["open"]))
        assert f"{site_name}: {expected['total']} /" in text and other not in text and other not in html
        assert "https://console.school.invalid/reports" in text
        assert 'href="https://console.school.invalid/reports"' in html
        leaked = [x for x in (*seeded.pupils, *seeded.staff_users, *seeded.hostnames, "invented words", "homework")
                  if x in text + html]
        assert leaked == []

    with Session(seeded.world.engine) as session:
        entries = audit.entries_for(session, schedule.weekly_target(WEEK))
    assert [e.action for e in entries] == ["report.weekly.sent"]


def test_schedule_sends_once_a_week_and_retries_after_a_failure(seeded, smtp):
    inbox, port = smtp
    engine = seeded.world.engine
    dead = _config(seeded, free_port())
    assert schedule.run_weekly_once(dead, engine, MONDAY_AFTER - dt.timedelta(hours=2)) == 0  # before 07:00: not due
    assert schedule.run_weekly_once(dead, engine, MONDAY_AFTER) == 0  # nobody listening: recorded as failed
    live = _config(seeded, port)
    assert schedule.run_weekly_once(live, engine, MONDAY_AFTER) == 3
    assert schedule.run_weekly_once(live, engine, MONDAY_AFTER + dt.timedelta(hours=3)) == 0  # sent already
    wait_for(lambda: len(inbox.messages) == 3, 10, "the weekly e-mails")
    with Session(engine) as session:
        actions = [e.action for e in audit.entries_for(session, schedule.weekly_target(WEEK))]
    assert actions == ["report.weekly.claimed", "report.weekly.failed", "report.weekly.claimed", "report.weekly.sent"]
    # Another configured day: Thursday's summary is not due on Monday.
    thursday = _config(seeded, port, weekly_day="thursday")
    assert schedule.due_period(thursday, MONDAY_AFTER) is None
    assert schedule.due_period(thursday, MONDAY_AFTER + dt.timedelta(days=3)) == WEEK


@sqlite_only
def test_weekly_task_runs_from_an_event_loop(seeded, smtp):
    inbox, port = smtp
    cfg = _config(seeded, port, weekly_hour=0, check_seconds=0.05)  # due from Monday 00:00: always, this week

    async def run_until_sent():
        task = asyncio.create_task(schedule.weekly_task(cfg, seeded.world.engine))
        deadline = asyncio.get_running_loop().time() + 30
        while len(inbox.messages) < 3 and asyncio.get_running_loop().time() < deadline and not task.done():
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_until_sent())
    assert len(inbox.messages) == 3
    assert all(m["Subject"].startswith("WardWatch weekly summary: Riverside Learning Trust") for _, m in inbox.messages)
