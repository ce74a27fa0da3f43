"""The console over HTTP: sign-in, headers, CSRF, roles, the review through forms, clear errors, never a 500."""

import pytest

from collector.review import rules
from tests.web.conftest import Browserless, csrf_of

ASSESS = {"involved": "child-victim", "nature": "inappropriate", "outcome": "speak-to-pupil",
          "reason": "spoke with the form tutor"}


def test_security_headers_and_cookie_flags(app, world):
    c = Browserless(app, world)
    r = c.get("/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    c.sign_in("dsl.amber")
    assert c.client.post("/login", data={}).status_code == 403  # a bare post is refused, not a crash
    r = c.client.get("/login")
    set_cookie = r.headers.get("set-cookie", "")
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie


def test_wrong_password_wrong_code_and_no_totp_means_no_entry(app, world):
    c = Browserless(app, world)
    page = c.get("/login")
    r = c.client.post("/login", data={"username": "dsl.amber", "password": "nope", "csrf": csrf_of(page.text)})
    assert r.status_code == 401 and "Wrong username or password" in r.text
    r = c.client.post("/login", data={"username": "dsl.amber", "password": "correct horse battery staple",
                                      "csrf": csrf_of(page.text)})
    assert r.headers["location"] == "/login/code"
    code_page = c.get("/login/code")
    r = c.client.post("/login/code", data={"code": "123456", "csrf": csrf_of(code_page.text)})
    assert r.status_code == 401 and "not right" in r.text
    assert c.get("/queue").headers["location"] == "/login"  # the password alone does not sign you in


def test_csrf_less_posts_are_refused_and_change_nothing(as_user, world):
    a = world.alert()
    c = as_user("dsl.amber")
    r = c.post(f"/alerts/{a}/assess", {**ASSESS, "version": "0"}, csrf=False)
    assert r.status_code == 403 and "Nothing was saved" in r.text
    r = c.client.post(f"/alerts/{a}/assess", data={**ASSESS, "version": "0", "csrf": "forged"})
    assert r.status_code == 403
    assert world.state(a) == (rules.NEW, 0)
    r = c.client.post("/login", data={"username": "dsl.amber", "password": "x"})
    assert r.status_code == 403


def test_two_person_review_through_the_forms(as_user, world):
    a = world.alert(context="i want to hurt myself tonight", matched="hurt myself")
    amber = as_user("dsl.amber")
    page = amber.get(f"/alerts/{a}")
    assert page.status_code == 200 and "<mark>hurt myself</mark>" in page.text and 'action="/alerts/' in page.text
    r = amber.post(f"/alerts/{a}/assess", {**ASSESS, "version": "0"})
    assert r.status_code == 303 and world.state(a) == (rules.AWAITING_SECOND, 1)
    assert "/confirm" not in amber.get(f"/alerts/{a}").text  # no confirm button for the assessor...
    r = amber.post(f"/alerts/{a}/confirm", {"version": "1"})  # ...and the server refuses it anyway
    assert r.status_code == 409 and "different senior reviewer" in r.text
    basil = as_user("dsl.basil")
    r = basil.post(f"/alerts/{a}/confirm", {"version": "1"})
    assert r.status_code == 303 and world.state(a) == (rules.CLOSED, 2)
    again = basil.post(f"/alerts/{a}/confirm", {"version": "1"})
    assert again.status_code == 409 and "changed while you were looking" in again.text
    trail = basil.get(f"/alerts/{a}/audit").text
    for action in ("alert.view", "review.assess", "review.confirm_refused", "review.confirm"):
        assert action in trail


def test_bad_input_gives_clear_pages_not_500(as_user, world):
    a = world.alert()
    c = as_user("dsl.amber")
    assert c.get("/alerts/does-not-exist").status_code == 404
    assert c.post("/alerts/does-not-exist/confirm", {"version": "0"}).status_code == 404
    r = c.post(f"/alerts/{a}/assess", {"version": "zero"})
    assert r.status_code == 409 and "incomplete" in r.text
    r = c.post(f"/alerts/{a}/assess", {"version": "0", "involved": "x"})
    assert r.status_code == 409 and "Choose who is involved" in r.text
    assert c.post(f"/alerts/{a}/explode", {}).status_code == 404
    assert c.get("/pupil?site=abc&user=").status_code == 400
    assert c.get("/queue?severity=high&site=x&state=weird").status_code == 200
    assert world.state(a) == (rules.NEW, 0)


def test_technician_and_governor_get_403_on_alert_pages(as_user, world):
    a = world.alert()
    for username in ("tech.evan", "gov.fern"):
        c = as_user(username)
        r = c.get(f"/alerts/{a}")
        assert r.status_code == 403 and "hurt myself" not in r.text
        assert c.get(f"/pupil?site={world.north}&user=pupil.one").status_code in (403, 404)
        if username == "tech.evan":
            assert c.get("/queue").status_code == 403
    from sqlalchemy.orm import Session

    from collector import audit
    with Session(world.engine) as s:
        refused = [e.actor for e in audit.entries_for(s, f"alert:{a}") if e.action == "alert.view_refused"]
    assert refused == ["tech.evan", "gov.fern"]


def test_csam_page_never_contains_content(as_user, world):
    a = world.alert(category="child-sexual-abuse", severity=5, matched="SECRETMATCH", context="SECRETCONTEXT",
                    title="SECRETTITLE")
    for username in ("dsl.amber", "admin.gale", "head.dara"):
        html = as_user(username).get(f"/alerts/{a}").text
        assert "Do not investigate" in html and "Preserve the device" in html
        assert not any(s in html for s in ("SECRETMATCH", "SECRETCONTEXT", "SECRETTITLE"))
    c = as_user("dsl.amber")
    r = c.post(f"/alerts/{a}/referral", {"told": "police", "reference": "crime ref 42", "told_at": "2026-01-05T10:15"})
    assert r.status_code == 303
    assert "crime ref 42" in c.get(f"/alerts/{a}").text


def test_staff_alert_hidden_from_peers_in_queue_and_page(as_user, world):
    a = world.alert(user="basil", age_band="staff", category="extremism")
    cora = as_user("dsl.cora")
    assert a not in cora.get("/queue").text
    assert cora.get(f"/alerts/{a}").status_code == 403
    assert a in as_user("head.dara").get("/queue").text


def test_idle_session_expires(as_user, world):
    import datetime as dt

    from sqlalchemy import update

    from collector.store.models_review import WebSession
    c = as_user("dsl.amber")
    assert c.get("/queue").status_code == 200
    with world.engine.begin() as conn:
        conn.execute(update(WebSession).values(last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    assert c.get("/queue").headers["location"] == "/login"


def test_site_settings_name_the_allegations_person_and_the_on_call_list(as_user, world):
    from sqlalchemy.orm import Session

    from collector import notify
    from collector.store.models_review import SiteSafeguarding
    assert as_user("dsl.cora").get(f"/admin/sites/{world.north}").status_code == 403
    admin = as_user("admin.gale")
    assert admin.get(f"/admin/sites/{world.south}").status_code == 404  # not one of the admin's sites
    page = admin.get(f"/admin/sites/{world.north}")
    assert page.status_code == 200
    form = {"allegations": str(world.users["dsl.cora"]), "chair": str(world.users["gov.fern"]), "minutes": "7",
            "oncall": "Cora, cora@school.invalid, 07700 900123\nDara, dara@school.invalid,"}
    bad = admin.post(f"/admin/sites/{world.north}", {**form, "allegations": str(world.users["tech.evan"])})
    assert bad.status_code == 400 and "from the list" in bad.text
    bad = admin.post(f"/admin/sites/{world.north}", {**form, "oncall": "just a name"})
    assert bad.status_code == 400 and "line 1" in bad.text
    assert admin.post(f"/admin/sites/{world.north}", form).status_code == 303
    with Session(world.engine) as s:
        named = s.get(SiteSafeguarding, world.north)
        assert (named.allegations_user_id, named.escalate_after_minutes) == (world.users["dsl.cora"], 7)
        assert [(p.position, p.name, p.out_of_hours_phone) for p in notify.on_call_list(s, world.north)] == [
            (1, "Cora", "07700 900123"), (2, "Dara", "")]
    # The newly named person now sees staff alerts; the previous one no longer does.
    staff_alert = world.alert(user="basil", age_band="staff")
    assert as_user("dsl.cora").get(f"/alerts/{staff_alert}").status_code == 200
    assert as_user("dsl.amber").get(f"/alerts/{staff_alert}").status_code == 403


def test_pupil_chronology_is_audited(as_user, world):
    from sqlalchemy.orm import Session

    from collector import audit
    from collector.web import reviewing
    first = world.alert(minutes_ago=300, category="bullying")
    second = world.alert(minutes_ago=10)
    c = as_user("dsl.amber")
    page = c.get(f"/pupil?site={world.north}&user=pupil.one")
    assert page.status_code == 200 and page.text.index(first) < page.text.index(second)
    assert first in c.get(f"/alerts/{second}").text  # earlier alerts on the alert page
    with Session(world.engine) as s:
        views = audit.entries_for(s, reviewing.pupil_ref(world.north, "pupil.one"))
        assert [e.actor for e in views] == ["dsl.amber"] and "pupil.one" not in views[0].target


def test_acknowledge_link_page(app, world):
    import secrets

    from collector import audit
    from collector.accounts import token_hash
    from collector.notify import set_on_call
    from collector.store.models_review import Page
    a = world.alert(severity=5)
    token = secrets.token_urlsafe(32)
    with audit.write_session(world.engine) as s:
        person = set_on_call(s, world.north, [("Amber", "amber@school.invalid", "")])[0]
        s.add(Page(alert_id=a, on_call_id=person.id, position=1, token_hash=token_hash(token)))
    c = Browserless(app, world)
    page = c.get(f"/ack/{token}")
    assert page.status_code == 200 and "hurt myself" not in page.text
    assert c.client.post(f"/ack/{token}", data={}).status_code == 403
    done = c.client.post(f"/ack/{token}", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "Acknowledged" in done.text
    assert c.get("/ack/wrong-token").status_code == 404


def test_throttle_counts_per_address_within_the_window():
    from collector.web.sessions import Throttle
    t = Throttle(limit=3, window=3600)
    assert [t.allow("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert t.allow("10.0.0.2")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the throttle lives in memory: one backend is enough
def test_login_throttle_per_address(app, world, db_url):
    c = Browserless(app, world)
    csrf = csrf_of(c.get("/login").text)
    codes = [c.client.post("/login", data={"username": f"nobody{n}", "password": "x", "csrf": csrf}).status_code
             for n in range(21)]
    assert codes[:20] == [401] * 20 and codes[20] == 429


def test_two_people_confirming_at_once_over_http(as_user, world):
    import threading
    a = world.alert()
    amber = as_user("dsl.amber")
    amber.post(f"/alerts/{a}/assess", {**ASSESS, "version": "0"})
    reviewers = [as_user("dsl.basil"), as_user("dsl.cora")]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def confirm(c):
        barrier.wait()
        statuses.append(c.post(f"/alerts/{a}/confirm", {"version": "1"}).status_code)

    threads = [threading.Thread(target=confirm, args=(c,)) for c in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [303, 409]
    assert world.state(a) == (rules.CLOSED, 2)


def test_an_internal_error_is_a_plain_page_without_details(as_user, world, monkeypatch, caplog):
    from collector.web import reviewing

    def broken(*_args, **_kwargs):
        raise RuntimeError("SECRET-DETAIL from the database")

    c = as_user("dsl.amber")
    monkeypatch.setattr(reviewing, "visible_alerts", broken)
    r = c.get("/queue")
    assert r.status_code == 500 and "Nothing was saved" in r.text and "SECRET-DETAIL" not in r.text
    assert "SECRET-DETAIL" not in caplog.text and "RuntimeError" in caplog.text


def test_each_role_lands_on_a_page_it_may_open(as_user, world):
    for username, where in (("dsl.amber", "/queue"), ("tech.evan", "/devices"), ("gov.fern", "/reports/governors")):
        client = as_user(username)
        home = client.get("/")
        assert home.status_code == 303 and home.headers["location"] == where
        assert client.get(where).status_code == 200
    assert 'href="/queue"' not in as_user("tech.evan").get("/devices").text
