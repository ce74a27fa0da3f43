"""The console in Debian's chromium, driven by Playwright, over HTTPS from a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import threading

import pyotp
import pytest
import uvicorn

from collector import accounts, audit
from collector.config import CollectorConfig
from collector.pki import cert_pem, issue_server_certificate, key_pem, make_ca, write_private
from collector.store.db import make_engine, migrate
from collector.web.app import create_app
from tests.harness import free_port, wait_for
from tests.review.world import build_world

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PASSWORD = "a long and memorable passphrase"


@pytest.fixture
def server(tmp_path):
    data = tmp_path / "data"
    engine = make_engine(f"sqlite:///{tmp_path / 'console.db'}")
    migrate(engine)
    world = build_world(engine, data)
    ca_key, ca_cert = make_ca()
    key, cert = issue_server_certificate(ca_key, ca_cert, ["127.0.0.1"])
    write_private(tmp_path / "web.key", key_pem(key))
    (tmp_path / "web.crt").write_bytes(cert_pem(cert))
    port = free_port()
    app = create_app(CollectorConfig(data_dir=data, db_url=str(engine.url)), engine)
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                       ssl_certfile=str(tmp_path / "web.crt"), ssl_keyfile=str(tmp_path / "web.key")))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    wait_for(lambda: uv.started, 20, "uvicorn to start")
    yield world, f"https://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(20)
    engine.dispose()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def new_account(world, username: str, role: str) -> str:
    with audit.write_session(world.engine) as s:
        return accounts.create_user(s, username, role, ["Northfield"], display_name=username.title()).token


def set_up_in_browser(browser, base: str, token: str, width: int = 1280, height: int = 800,
                      lands_on: str = "/queue"):
    """Open the one-time link, choose a password, read the setup key off the page and prove it with a code."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(f"{base}/setup/{token}")
    secret = page.inner_text("#totp-secret").strip()
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{lands_on}")
    return context, page, secret


def test_two_dsls_review_in_the_browser(server, browser):
    world, base = server
    alert_id = world.alert(context="i keep thinking i want to hurt myself after school", matched="hurt myself")
    world.alert(user="pupil.two", severity=5, category="suicide", matched="end it all",
                context="i have a plan to end it all", minutes_ago=90)
    world.alert(user="pupil.three", severity=2, category="filter-bypass", matched="free vpn",
                context="free vpn for school wifi", minutes_ago=400)

    first_ctx, first, _ = set_up_in_browser(browser, base, new_account(world, "dsl.ines", "dsl"))
    second_ctx, second, secret = set_up_in_browser(browser, base, new_account(world, "dsl.jude", "deputy-dsl"))

    # The second DSL signs out and back in through the password + TOTP form (the next code: codes are single-use).
    second.click("text=Sign out")
    second.wait_for_url(f"{base}/login")
    second.fill("#username", "dsl.jude")
    second.fill("#password", PASSWORD)
    second.click("button[type=submit]")
    second.wait_for_url(f"{base}/login/code")
    second.fill("#code", pyotp.TOTP(secret).at(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)))
    second.click("button[type=submit]")
    second.wait_for_url(f"{base}/queue")

    first.goto(f"{base}/queue")
    first.screenshot(path="/tmp/wardwatch-queue-laptop.png", full_page=True)
    first.goto(f"{base}/alerts/{alert_id}")
    assert first.inner_text("mark") == "hurt myself"
    first.check("input[name=involved][value=child-victim]")
    first.check("input[name=nature][value=inappropriate]")
    first.select_option("#outcome", "speak-to-pupil")
    first.fill("#reason", "Spoke to the form tutor; pupil is known to pastoral team.")
    first.click("#assess button[type=submit]")
    first.wait_for_url(f"{base}/alerts/{alert_id}?done=assess")
    assert world.state(alert_id)[0] == "awaiting-second"

    # The assessor has no confirm button, and the server refuses a confirmation made by hand.
    assert first.locator("form[action$='/confirm']").count() == 0
    csrf = first.locator("input[name=csrf]").first.get_attribute("value")
    refused = first_ctx.request.post(f"{base}/alerts/{alert_id}/confirm", form={"csrf": csrf, "version": "1"})
    assert refused.status == 409 and "different senior reviewer" in refused.text()
    assert world.state(alert_id)[0] == "awaiting-second"

    second.goto(f"{base}/alerts/{alert_id}")
    second.screenshot(path="/tmp/wardwatch-alert-laptop.png", full_page=True)
    second.click("form[action$='/confirm'] button")
    second.wait_for_url(f"{base}/alerts/{alert_id}?done=confirm")
    assert world.state(alert_id)[0] == "closed"
    assert "Speak to the pupil" in second.inner_text("#main")

    # CSRF-less posts are refused, even from a signed-in browser.
    other = world.alert(user="pupil.four")
    no_csrf = second_ctx.request.post(f"{base}/alerts/{other}/assess", form={
        "version": "0", "involved": "none", "nature": "not-a-concern", "outcome": "false-positive", "reason": "x"})
    assert no_csrf.status == 403
    assert world.state(other) == ("new", 0)

    # Phone width.
    phone = browser.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844},
                                storage_state=second_ctx.storage_state())
    phone_page = phone.new_page()
    phone_page.goto(f"{base}/queue?state=all")
    phone_page.screenshot(path="/tmp/wardwatch-queue-phone.png", full_page=True)
    phone_page.goto(f"{base}/alerts/{alert_id}")
    phone_page.screenshot(path="/tmp/wardwatch-alert-phone.png", full_page=True)
    for ctx in (first_ctx, second_ctx, phone):
        ctx.close()


def test_csam_page_source_has_no_content_and_technician_gets_403(server, browser):
    world, base = server
    csam = world.alert(category="child-sexual-abuse", severity=5, matched="SECRETMATCH", context="SECRETCONTEXT",
                       title="SECRETTITLE")
    ctx, page, _ = set_up_in_browser(browser, base, new_account(world, "dsl.kit", "dsl"))
    page.goto(f"{base}/alerts/{csam}")
    source = page.content()
    assert "Do not investigate" in source and "Preserve the device" in source
    assert not any(s in source for s in ("SECRETMATCH", "SECRETCONTEXT", "SECRETTITLE"))
    page.screenshot(path="/tmp/wardwatch-csam-laptop.png", full_page=True)
    ctx.close()

    tech_ctx, tech, _ = set_up_in_browser(browser, base, new_account(world, "tech.lee", "technician"),
                                          lands_on="/devices")
    response = tech.goto(f"{base}/alerts/{csam}")
    assert response.status == 403
    assert tech.goto(f"{base}/alerts/{world.alert()}").status == 403
    tech_ctx.close()
