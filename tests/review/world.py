"""A small invented school for review tests: two sites, staff in every role, a demo agent that signs alerts."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from collector import audit
from collector.accounts import create_user, set_site_contacts
from collector.demo_review import add_signed_alert, ensure_demo_agent
from collector.store.models import Alert, Site
from collector.store.models_review import User

PASSWORD = "correct horse battery staple"


@functools.cache
def _password_hash() -> str:
    return PasswordHasher().hash(PASSWORD)

# username -> (role, sites, school login)
STAFF = {
    "dsl.amber": ("dsl", ["Northfield"], "amber"),
    "dsl.basil": ("deputy-dsl", ["Northfield"], "basil"),
    "dsl.cora": ("dsl", ["Northfield"], "cora"),
    "head.dara": ("headteacher", ["Northfield"], "dara"),
    "tech.evan": ("technician", ["Northfield"], "evan"),
    "gov.fern": ("governor", ["Northfield"], "fern"),
    "admin.gale": ("admin", ["Northfield"], "gale"),
    "dsl.south": ("dsl", ["Southbank"], "southdsl"),
}


@dataclass
class World:
    engine: Engine
    data_dir: Path
    north: int
    south: int
    users: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)
    south_key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)

    def user(self, session: Session, username: str) -> User:
        return session.get(User, self.users[username])

    def alert(self, user: str = "pupil.one", category: str = "self-harm", severity: int = 4,
              age_band: str = "secondary", site: str = "north", matched: str = "hurt myself",
              context: str = "i want to hurt myself", title: str = "Notes", minutes_ago: int = 10) -> str:
        key = self.key if site == "north" else self.south_key
        with audit.write_session(self.engine) as s:
            site_row = s.get(Site, self.north if site == "north" else self.south)
            agent = ensure_demo_agent(s, site_row, key, hostname=f"PC-{site.upper()}")
            a = add_signed_alert(s, agent, key, user=user,
                                 category=category, severity=severity, matched=matched, context=context,
                                 window_title=title, application="notepad.exe", rule=f"{category}/test",
                                 age_band=age_band,
                                 created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago))
            return a.id

    def state(self, alert_id: str) -> tuple[str, int]:
        with Session(self.engine) as s:
            a = s.get(Alert, alert_id)
            return a.state, a.version


def build_world(engine: Engine, data_dir: Path) -> World:
    audit.use_data_dir(data_dir)
    with audit.write_session(engine) as s:
        north, south = Site(name="Northfield"), Site(name="Southbank")
        s.add_all([north, south])
        s.flush()
        w = World(engine=engine, data_dir=data_dir, north=north.id, south=south.id)
        for username, (role, sites, login) in STAFF.items():
            link = create_user(s, username, role, sites, display_name=username.title(),
                               email=f"{username}@school.invalid", school_login=login)
            w.secrets[username] = link.user.totp_secret
            # One real argon2id hash shared by every account: hashing is deliberately slow, and the setup path
            # itself is tested in test_accounts and the browser tests.
            link.user.password_hash = _password_hash()
            link.user.setup_token_hash = link.user.setup_expires_at = None
            w.users[username] = link.user.id
        set_site_contacts(s, north.id, allegations=s.get(User, w.users["dsl.amber"]),
                          chair=s.get(User, w.users["gov.fern"]))
    return w
