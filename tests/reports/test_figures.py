"""The head's figures on a seeded store (SQLite and PostgreSQL), each one recomputed from `alerts list --json`."""

import datetime as dt
from collections import Counter

import pytest
from sqlalchemy.orm import Session

from collector.reports.figures import (
    build_figures,
    days_period,
    figures_for_user,
    last_full_week,
    milestones_of,
    term_period,
    visible_site_ids,
)
from tests.reports.conftest import json_lines
from tests.reports.recount import parse_time, recompute
from tests.reports.seed import TERM_END, TERM_START


def _in_term(rows: list[dict]) -> list[dict]:
    return [r for r in rows if TERM_START <= parse_time(r["received_at"]) < TERM_END]


def test_every_figure_matches_alerts_list_json(seeded, cli):
    code, out, _ = cli("alerts", "list", "--json")
    assert code == 0
    rows = json_lines(out)
    term = _in_term(rows)
    assert len(term) < len(rows)  # the seed holds alerts outside the term, so the period filter is exercised
    assert {"test", "notice"} <= {r["kind"] for r in term}  # and kinds that must not be counted
    assert any(r["outcome"] == "refer-social-care" for r in term) and any(r["second_review_at"] for r in term)

    period = term_period("autumn", 2026)
    with Session(seeded.world.engine) as session:
        figures = build_figures(session, period).as_json()

    assert figures["whole"] == recompute(term)
    sites = {s["site_id"]: s for s in figures["sites"]}
    assert set(sites) == {seeded.world.north, seeded.world.south}
    for site_id, site in sites.items():
        assert {k: site[k] for k in recompute([])} == recompute([r for r in term if r["site_id"] == site_id])

    # Per device, through the CLI a head would use, against the alert rows and `agents list --json`.
    code, out, _ = cli("report", "devices", "--json", "--from", "2026-09-01", "--until", "2026-12-31")
    assert code == 0
    devices = {d["agent_id"]: d for d in json_lines(out)}
    code, out, _ = cli("agents", "list", "--json")
    agents = {a["id"]: a for a in json_lines(out)}
    assert set(seeded.agent_ids) <= set(devices)
    assert "GONE-PC" not in {d["hostname"] for d in devices.values()}  # removed, no alerts: left the fleet
    for agent_id, device in devices.items():
        mine = [r for r in term if r["agent_id"] == agent_id]
        assert {k: device[k] for k in recompute([])} == recompute(mine)
        for field in ("hostname", "agent_version", "bundle_version", "last_seen_at"):
            assert device[field] == agents[agent_id][field]
    assert sum(d["total"] for d in devices.values()) == figures["whole"]["total"]

    # The weekly trend: Monday-started weeks, clipped to the term.
    weeks = Counter()
    for r in term:
        if r["kind"] in ("keyword", "usb", "coverage"):
            received = parse_time(r["received_at"])
            weeks[(received.date() - dt.timedelta(days=received.weekday())).isoformat()] += 1
    trend = {w["week_start"]: w["total"] for w in figures["weeks"]}
    assert trend == {week: weeks.get(week, 0) for week in trend}
    assert min(trend) == "2026-08-31" and max(trend) == "2026-12-28" and len(trend) == 18


def test_site_choice_and_trend_reach(seeded):
    with Session(seeded.world.engine) as session:
        everything = build_figures(session, term_period("autumn", 2026))
        south = build_figures(session, term_period("autumn", 2026), [seeded.world.south])
        week = build_figures(session, days_period(dt.date(2026, 11, 16), dt.date(2026, 11, 22)), trend_weeks=8)
    assert [s.name for s in south.sites] == ["Southbank"]
    assert {d.hostname for d in south.devices} == {"BRAMWELLIX-CHROMEBOOK"}
    assert south.whole.total == next(s.tally.total for s in everything.sites if s.name == "Southbank") > 0
    # The weekly e-mail's trend reaches eight weeks back; its last point is the reported week itself.
    assert week.weeks[0].week_start == dt.date(2026, 9, 28)
    assert len(week.weeks) == 8
    assert week.weeks[-1].total == week.whole.total


def test_periods():
    autumn = term_period("autumn", 2026)
    assert autumn.start == dt.datetime(2026, 9, 1, tzinfo=dt.UTC) and autumn.end == dt.datetime(2027, 1, 1,
                                                                                                tzinfo=dt.UTC)
    assert term_period("spring", 2027).end == term_period("summer", 2027).start
    assert term_period("summer", 2026).end == autumn.start
    week = last_full_week(dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC))  # a Tuesday
    assert (week.start.date(), week.last_day) == (dt.date(2026, 11, 16), dt.date(2026, 11, 22))
    with pytest.raises(ValueError):
        term_period("winter", 2026)
    with pytest.raises(ValueError):
        days_period(dt.date(2026, 2, 2), dt.date(2026, 2, 1))


def test_milestones_follow_the_two_person_review():
    t = [dt.datetime(2026, 10, 1, h, tzinfo=dt.UTC) for h in range(6)]
    disputed = milestones_of([("assess", t[1], "speak-to-pupil"), ("dispute", t[2], ""),
                              ("decide", t[4], "refer-police")])
    assert (disputed.first_review_at, disputed.second_review_at, disputed.outcome) == (t[1], t[2], "refer-police")
    confirmed = milestones_of([("assess", t[1], "false-positive"), ("confirm", t[3], "false-positive")])
    assert (confirmed.second_review_at, confirmed.outcome) == (t[3], "false-positive")
    waiting = milestones_of([("assess", t[5], "log-concern")])
    assert (waiting.first_review_at, waiting.second_review_at, waiting.outcome) == (t[5], None, "")


def test_who_may_read_which_figures(seeded):
    period = term_period("autumn", 2026)
    with Session(seeded.world.engine) as session:
        head, tech, governor = (seeded.world.user(session, u) for u in ("head.dara", "tech.evan", "gov.fern"))
        assert visible_site_ids(head) == {seeded.world.north}
        assert visible_site_ids(tech) == frozenset() == visible_site_ids(tech, governors_report=True)
        assert visible_site_ids(governor) == frozenset()
        assert visible_site_ids(governor, governors_report=True) == {seeded.world.north}
        south = figures_for_user(session, seeded.world.user(session, "dsl.south"), period)
        as_head = figures_for_user(session, head, period)
        as_dsl = figures_for_user(session, seeded.world.user(session, "dsl.amber"), period)
        assert figures_for_user(session, seeded.world.user(session, "tech.evan"), period) is None
        governors = figures_for_user(session, seeded.world.user(session, "gov.fern"), period, governors_report=True)
    assert [s.name for s in south.sites] == ["Southbank"] and south.whole.total > 0
    assert [s.name for s in governors.sites] == ["Northfield"]
    # Alerts about staff are counted for the head and the governors, never for other readers.
    staff_device = next(d for d in as_head.devices if d.hostname == "STAFFROOM-THORNCASTLE")
    assert staff_device.tally.total == 2
    assert as_dsl.whole.total == as_head.whole.total - 2 == governors.whole.total - 2
    assert next(d for d in as_dsl.devices if d.hostname == "STAFFROOM-THORNCASTLE").tally.total == 0
