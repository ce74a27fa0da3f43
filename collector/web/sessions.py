"""Console sign-in sessions and CSRF tokens.

The cookie holds a random token; the database keeps only its SHA-256, so a copy of the database signs nobody in.
Cookies use the __Host- prefix (Secure, Path=/, no Domain), HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections import deque

from sqlalchemy import delete
from sqlalchemy.orm import Session

from collector.accounts import aware, token_hash
from collector.store.models_review import User, WebSession

SESSION_COOKIE = "__Host-wardwatch"
# Before sign-in there is no session to hold a CSRF token, so the login and setup forms use a double-submit cookie.
PRE_COOKIE = "__Host-wardwatch-pre"
IDLE_TIMEOUT = dt.timedelta(minutes=15)
ABSOLUTE_LIFETIME = dt.timedelta(hours=10)
SECOND_FACTOR_WINDOW = dt.timedelta(minutes=5)

FULL, PASSWORD_ONLY = "full", "password"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def start(session: Session, user: User, stage: str) -> str:
    """A new session for `user`; returns the cookie value (shown to nobody else, stored only as a hash)."""
    token = secrets.token_urlsafe(32)
    session.add(WebSession(id_hash=token_hash(token), user_id=user.id, stage=stage,
                           csrf_token=secrets.token_urlsafe(32)))
    return token


def find(session: Session, cookie: str | None, now: dt.datetime | None = None) -> WebSession | None:
    """The live session for this cookie, touched; expired sessions are deleted."""
    if not cookie or len(cookie) > 128:
        return None
    now = now or _now()
    ws = session.get(WebSession, token_hash(cookie))
    if ws is None:
        return None
    idle = now - aware(ws.last_seen_at)
    age = now - aware(ws.created_at)
    limit_idle = SECOND_FACTOR_WINDOW if ws.stage == PASSWORD_ONLY else IDLE_TIMEOUT
    user = session.get(User, ws.user_id)
    if idle > limit_idle or age > ABSOLUTE_LIFETIME or user is None or user.disabled:
        session.delete(ws)
        return None
    ws.last_seen_at = now
    return ws


def upgrade(session: Session, ws: WebSession, user: User) -> str:
    """After the second factor: a fresh session id (no fixation), signed in fully."""
    session.delete(ws)
    return start(session, user, FULL)


def end(session: Session, cookie: str | None) -> None:
    if cookie:
        session.execute(delete(WebSession).where(WebSession.id_hash == token_hash(cookie)))


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and secrets.compare_digest(expected.encode(), given.encode())


class Throttle:
    """At most `limit` sign-in attempts per client address per `window` seconds (in this process)."""

    def __init__(self, limit: int = 20, window: float = 300.0):
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and now - hits[0] > self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle addresses so the table cannot grow without bound
                self._hits = {k: v for k, v in self._hits.items() if v and now - v[-1] <= self.window}
            return True
