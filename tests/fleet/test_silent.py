"""Silent devices raise one coverage alert per silence episode, only in school hours (SQLite and PostgreSQL)."""

import asyncio
import datetime as dt
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from collector import audit
from collector.config import CollectorConfig
from collector.demo_review import ensure_demo_agent
from collector.errors import CollectorError
from collector.fleet_health import (
    SILENT_GAP,
    episode_seq,
    is_collector_generated,
    load_silence_policy,
    raise_silent_alerts,
    silent_task,
)
from collector.store.models import Agent, Alert, Site
from collector.store.models_review import AuditEntry

LONDON_TERM_TUESDAY = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)  # GMT in November: local time = UTC


def at(hour: int, minute: int = 0, day: dt.datetime = LONDON_TERM_TUESDAY) -> dt.datetime:
    return day.replace(hour=hour, minute=minute)


def config(tmp_path, **fleet) -> CollectorConfig:
    return CollectorConfig(data_dir=tmp_path / "data", db_url="", extra={"fleet": fleet})


@pytest.fixture
def fleet(store_engine, tmp_path):
    """Two active devices and one decommissioned one, all last heard from at 09:00 on a Tuesday."""
    audit.use_data_dir(tmp_path / "data")
    with audit.write_session(store_engine) as s:
        site = Site(name="Northfield")
        s.add(site)
        s.flush()
        ids = []
        for hostname, status in (("LIB-PC-01", "active"), ("LIB-PC-02", "active"), ("OLD-PC", "removed")):
            agent = ensure_demo_agent(s, site, ed25519.Ed25519PrivateKey.generate(), hostname=hostname)
            agent.status = status
            agent.last_seen_at = at(9)
            ids.append(agent.id)
    return ids


def silent_alerts(engine) -> list[Alert]:
    with Session(engine) as s:
        return list(s.scalars(select(Alert).where(Alert.kind == "coverage").order_by(Alert.hostname)))


def run_pass(engine, policy, now) -> list[str]:
    with audit.write_session(engine) as s:
        return raise_silent_alerts(s, policy, now)


def test_one_alert_per_episode_and_a_new_one_after_the_device_returns(store_engine, fleet, tmp_path):
    policy = load_silence_policy(config(tmp_path, silent_after_minutes=60))
    assert run_pass(store_engine, policy, at(9, 59)) == []
    made = run_pass(store_engine, policy, at(10, 1))
    assert len(made) == 2  # the removed device is nobody's coverage problem
    assert run_pass(store_engine, policy, at(11)) == []
    alerts = silent_alerts(store_engine)
    assert [a.hostname for a in alerts] == ["LIB-PC-01", "LIB-PC-02"]
    for a in alerts:
        assert a.details["coverage"]["gap"] == SILENT_GAP
        assert a.user_name == "" and a.matched == "" and a.context == "" and a.window_title == ""
        assert is_collector_generated(a.seq) and a.seq == episode_seq(at(9))
    # LIB-PC-01 heartbeats again, then falls silent: a second episode, a second alert; LIB-PC-02 stays at one.
    with audit.write_session(store_engine) as s:
        s.execute(update(Agent).where(Agent.id == fleet[0]).values(last_seen_at=at(12)))
    assert run_pass(store_engine, policy, at(12, 30)) == []
    assert len(run_pass(store_engine, policy, at(13, 5))) == 1
    hosts = [a.hostname for a in silent_alerts(store_engine)]
    assert hosts.count("LIB-PC-01") == 2 and hosts.count("LIB-PC-02") == 1
    with Session(store_engine) as s:
        logged = s.scalars(select(AuditEntry).where(AuditEntry.action == "agent.silent")).all()
        assert len(logged) == 3


def test_only_school_time_counts(store_engine, fleet, tmp_path):
    policy = load_silence_policy(config(tmp_path, silent_after_minutes=60, school_hours="08:00-16:30"))
    friday = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    monday = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    with audit.write_session(store_engine) as s:
        s.execute(update(Agent).values(last_seen_at=at(16, 0, friday)))
    assert run_pass(store_engine, policy, at(20, 0, friday)) == []  # evening: not school hours
    assert run_pass(store_engine, policy, at(11, 0, dt.datetime(2026, 11, 28, tzinfo=dt.UTC))) == []  # Saturday
    # Monday 08:45: 30 minutes on Friday + 45 this morning = 75 school minutes, past the hour.
    assert run_pass(store_engine, policy, at(8, 20, monday)) == []
    assert len(run_pass(store_engine, policy, at(8, 45, monday))) == 2


def test_replicas_racing_make_one_alert_per_episode(store_engine, fleet, tmp_path):
    policy = load_silence_policy(config(tmp_path, silent_after_minutes=30))
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def replica():
        try:
            start.wait()
            results.append(run_pass(store_engine, policy, at(14)))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # SQLite serialises writers (a replica may be refused as busy); PostgreSQL lets them race on the unique key.
    assert len(silent_alerts(store_engine)) == 2
    assert sum(len(r) for r in results) == 2
    assert all("locked" in str(e) or "busy" in str(e).lower() for e in errors), errors


def test_the_task_runs_until_cancelled(store_engine, fleet, tmp_path):
    cfg = config(tmp_path, silent_after_minutes=1, school_hours="00:00-23:59", school_days="mon-sun",
                 silent_check_seconds=0.05)
    with audit.write_session(store_engine) as s:
        s.execute(update(Agent).values(last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)))

    async def run_until_alerted():
        task = asyncio.create_task(silent_task(cfg, store_engine))
        deadline = asyncio.get_running_loop().time() + 30
        while len(silent_alerts(store_engine)) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_until_alerted())
    assert len(silent_alerts(store_engine)) == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("bad", [{"school_hours": "16:30-08:00"}, {"school_days": "fri-mon"},
                                 {"timezone": "Europe/Nowhere"}, {"silent_after_minutes": 0},
                                 {"school_hours": "8am"}])
def test_bad_settings_are_refused_in_words(tmp_path, bad, db_url):
    with pytest.raises(CollectorError, match=r"\[fleet\]"):
        load_silence_policy(config(tmp_path, **bad))


def test_alerts_verify_does_not_call_the_collectors_own_alerts_forged(tmp_path, fleet, store_engine, db_url):
    """`alerts verify` passes with silent-device alerts stored, and says how many the collector raised itself."""
    import subprocess
    import sys
    from pathlib import Path

    from collector.config import write_config
    from collector.pki import PkiPaths, create_pki
    from collector.protect import keys as content_keys

    data = tmp_path / "data"
    if not (data / "pki" / "ca.key").exists():
        create_pki(PkiPaths(data / "pki"), [])
    write_config(data, db_url)
    content_keys.use_data_dir(data, store_engine)  # seal what this test stores with the key the CLI will read
    policy = load_silence_policy(config(tmp_path, silent_after_minutes=30))
    run_pass(store_engine, policy, at(11))
    assert silent_alerts(store_engine)
    cli = Path(sys.executable).parent / "wardwatch-collector"
    proc = subprocess.run([str(cli), "--data", str(data), "alerts", "verify"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed verification" in proc.stdout and "raised by the collector itself" in proc.stdout
