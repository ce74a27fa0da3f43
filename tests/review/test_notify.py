"""Imminent-risk paging through a real SMTP server (aiosmtpd on 127.0.0.1): page, escalate, acknowledge."""

import datetime as dt
import re

from sqlalchemy.orm import Session

from collector import audit, notify
from collector.config import CollectorConfig
from tests.harness import free_port, wait_for


def test_page_escalate_and_acknowledge(world, smtp, db_url):
    inbox, port = smtp
    cfg = CollectorConfig(data_dir=world.data_dir, db_url=db_url, public_web_url="https://console.school.invalid",
                          extra={"smtp": {"host": "127.0.0.1", "port": port, "sender": "wardwatch@school.invalid"},
                                 "paging": {"escalate_after_minutes": 10}})
    with audit.write_session(world.engine) as s:
        notify.set_on_call(s, world.north, [("Amber", "amber@school.invalid", "07700 900001"),
                                            ("Basil", "basil@school.invalid", "07700 900002")])
        # The site's own setting wins over the config default.
        from collector.store.models_review import SiteSafeguarding
        s.get(SiteSafeguarding, world.north).escalate_after_minutes = 5
    world.alert(severity=4)  # not imminent: never paged
    alert_id = world.alert(severity=5, category="suicide", context="SECRET WORDS", matched="SECRET")
    now = dt.datetime.now(dt.UTC)

    assert notify.run_once(cfg, world.engine, now) == 1
    wait_for(lambda: len(inbox.messages) == 1, 10, "the first page")
    to, message = inbox.messages[0]
    body = message.get_content()
    assert to == ["amber@school.invalid"]
    assert "SECRET" not in body and "pupil.one" not in body and "07700 900002" in body
    assert f"https://console.school.invalid/alerts/{alert_id}" in body

    assert notify.run_once(cfg, world.engine, now + dt.timedelta(minutes=2)) == 0  # not yet due
    assert notify.run_once(cfg, world.engine, now + dt.timedelta(minutes=6)) == 1  # nobody acknowledged
    wait_for(lambda: len(inbox.messages) == 2, 10, "the escalation")
    to, message = inbox.messages[1]
    body = message.get_content()
    assert to == ["basil@school.invalid"]
    token = re.search(r"/ack/([A-Za-z0-9_-]+)", body).group(1)

    with audit.write_session(world.engine) as s:
        assert notify.acknowledge(s, token) is not None
        assert notify.acknowledge(s, "not-a-token") is None
    assert notify.run_once(cfg, world.engine, now + dt.timedelta(minutes=30)) == 0
    with Session(world.engine) as s:
        actions = [e.action for e in audit.entries_for(s, f"alert:{alert_id}")]
    assert actions == ["page.sent", "page.sent", "page.acknowledged"]


def test_no_smtp_settings_no_paging_and_a_dead_server_is_retried(world, db_url):
    world.alert(severity=5, category="suicide")
    with audit.write_session(world.engine) as s:
        notify.set_on_call(s, world.north, [("Amber", "amber@school.invalid", "")])
    assert notify.run_once(CollectorConfig(data_dir=world.data_dir, db_url=db_url), world.engine) == 0
    dead = CollectorConfig(data_dir=world.data_dir, db_url=db_url, extra={"smtp": {"host": "127.0.0.1",
                                                                                   "port": free_port()}})
    assert notify.run_once(dead, world.engine) == 0  # refused connection: nothing recorded, tried next round
    with Session(world.engine) as s:
        assert len(notify.due_pages(s, dt.datetime.now(dt.UTC), 10)) == 1
