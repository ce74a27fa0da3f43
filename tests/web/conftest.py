import datetime as dt
import re

import pyotp
import pytest
from fastapi.testclient import TestClient

from collector.config import CollectorConfig
from collector.web.app import create_app
from collector.web.present import landing
from tests.review.world import PASSWORD, STAFF, build_world

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    return CSRF.search(html).group(1)


class Browserless:
    """An HTTPS test client signed in as one account (cookies are Secure, so the base URL is https)."""

    def __init__(self, app, world, username: str | None = None):
        self.client = TestClient(app, base_url="https://testserver", follow_redirects=False)
        self.world = world
        self.csrf = ""
        if username:
            self.sign_in(username)

    def sign_in(self, username: str, code_offset: int = 0):
        page = self.client.get("/login")
        r = self.client.post("/login", data={"username": username, "password": PASSWORD,
                                             "csrf": csrf_of(page.text)})
        assert r.status_code == 303 and r.headers["location"] == "/login/code", r.text
        page = self.client.get("/login/code")
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=code_offset)
        r = self.client.post("/login/code", data={"code": pyotp.TOTP(self.world.secrets[username]).at(when),
                                                  "csrf": csrf_of(page.text)})
        role = STAFF[username][0]
        assert r.status_code == 303 and r.headers["location"] == landing(role), r.text
        self.csrf = csrf_of(self.client.get("/queue").text) if username not in ("tech.evan",) else ""
        return self

    def get(self, path):
        return self.client.get(path)

    def post(self, path, data, csrf=True):
        return self.client.post(path, data={**data, **({"csrf": self.csrf} if csrf else {})})


@pytest.fixture
def world(store_engine, tmp_path):
    return build_world(store_engine, tmp_path / "data")


@pytest.fixture
def app(world, db_url, tmp_path):
    cfg = CollectorConfig(data_dir=tmp_path / "data", db_url=db_url)
    return create_app(cfg, world.engine)


@pytest.fixture
def as_user(app, world):
    """Sign in; a second sign-in of the same account uses the next 30-second code (codes are single-use)."""
    signed_in: dict[str, int] = {}

    def sign_in(username: str) -> Browserless:
        offset = 30 * signed_in.get(username, 0)
        signed_in[username] = signed_in.get(username, 0) + 1
        return Browserless(app, world).sign_in(username, code_offset=offset)

    return sign_in
