"""The console over HTTP: sign-in, headers, CSRF, roles, the review through forms, clear errors, never a 500."""

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
