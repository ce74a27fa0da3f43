"""Two reviewers confirm one alert at the same moment through two different collector replicas."""

import datetime as dt
import re
import ssl
import threading

import httpx
import pyotp
import pytest

from collector.protect import keys
from collector.review import rules
from collector.store.db import make_engine
from tests.harness import Collector
from tests.review.world import PASSWORD, build_world

pytestmark = pytest.mark.postgres
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ASSESS = {"involved": "child-victim", "nature": "inappropriate", "outcome": "speak-to-pupil",
          "reason": "spoke with the form tutor"}


def sign_in(base: str, ca: str, username: str, secret: str, offset_s: int = 0) -> tuple[httpx.Client, str]:
    """A real HTTPS session with one replica's console, verified against the collector's own CA."""
    client = httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=ca), follow_redirects=False,
                          timeout=30)
    page = client.get("/login")
    r = client.post("/login", data={"username": username, "password": PASSWORD,
                                    "csrf": CSRF.search(page.text).group(1)})
    assert r.status_code == 303, r.text
    page = client.get("/login/code")
    code = pyotp.TOTP(secret).at(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s))
    r = client.post("/login/code", data={"code": code, "csrf": CSRF.search(page.text).group(1)})
    assert r.status_code == 303 and r.headers["location"] == "/queue", r.text
    return client, CSRF.search(client.get("/queue").text).group(1)


def test_concurrent_confirmations_through_two_replicas(tmp_path, pg_url):
    first = Collector(tmp_path / "collector", pg_url).init()
    engine = make_engine(pg_url)
    keys.use_data_dir(first.data)  # the alerts this test stores must be readable by the replicas
    world = build_world(engine, first.data)
    alert_id = world.alert()
    second = Collector(first.data, pg_url)
    second.log = tmp_path / "replica2-serve.log"
    first.start()
    second.start()
    ca = str(first.data / "pki" / "ca.crt")
    try:
        amber, amber_csrf = sign_in(f"https://127.0.0.1:{first.web_port}", ca, "dsl.amber",
                                    world.secrets["dsl.amber"])
        r = amber.post(f"/alerts/{alert_id}/assess", data={**ASSESS, "version": "0", "csrf": amber_csrf})
        assert r.status_code == 303, r.text
        reviewers = [sign_in(f"https://127.0.0.1:{first.web_port}", ca, "dsl.basil", world.secrets["dsl.basil"]),
                     sign_in(f"https://127.0.0.1:{second.web_port}", ca, "dsl.cora", world.secrets["dsl.cora"])]
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def confirm(client: httpx.Client, csrf: str) -> None:
            barrier.wait()
            statuses.append(client.post(f"/alerts/{alert_id}/confirm",
                                        data={"version": "1", "csrf": csrf}).status_code)

        threads = [threading.Thread(target=confirm, args=pair) for pair in reviewers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(statuses) == [303, 409]  # one decision; the other reviewer is told someone decided first
        assert world.state(alert_id) == (rules.CLOSED, 2)
        assert first.cli("audit", "verify").returncode == 0  # one chain across both replicas
    finally:
        second.stop()
        first.stop()
        engine.dispose()
