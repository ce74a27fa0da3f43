"""Console accounts: roles and sites, argon2id passwords, TOTP, one-time setup links and lockout."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.errors import CollectorError
from collector.review.rules import ROLES, Person, SiteContacts
from collector.store.models import Site
from collector.store.models_review import SiteSafeguarding, User

PASSWORD_MIN_LENGTH = 12
SETUP_LINK_LIFETIME = dt.timedelta(hours=72)
MAX_FAILED_LOGINS = 5
LOCKOUT = dt.timedelta(minutes=15)
TOTP_ISSUER = "WardWatch"

# argon2-cffi's defaults are argon2id with the RFC 9106 low-memory profile.
_hasher = PasswordHasher()
# Verified when the username is unknown, so a wrong name costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class LoginRefused(Exception):
    """Sign-in failed. The message never says whether the name or the password was wrong."""


@dataclass(frozen=True)
class SetupLink:
    user: User
    token: str

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/setup/{self.token}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; every time WardWatch stores is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def needs_totp(role: str) -> bool:
    """Every account gets a second factor: content roles must, and a governor or technician may be named for
    allegations (and then read alerts) after their account was made."""
    return bool(role)


# ---------------------------------------------------------------- creating and changing accounts

def _sites_by_name(session: Session, names: list[str]) -> list[Site]:
    sites = []
    for name in names:
        site = session.scalar(select(Site).where(Site.name == name))
        if site is None:
            known = ", ".join(session.scalars(select(Site.name).order_by(Site.name))) or "none"
            raise CollectorError(f"no site named {name!r} (sites: {known})")
        sites.append(site)
    return sites


def validate_username(username: str) -> str:
    name = username.strip()
    if not (2 <= len(name) <= 64) or not all(c.isalnum() or c in "._-" for c in name):
        raise CollectorError("a username is 2-64 letters, digits, '.', '_' or '-'")
    return name


def create_user(session: Session, username: str, role: str, site_names: list[str], display_name: str = "",
                email: str = "", school_login: str | None = None) -> SetupLink:
    """A new account with no password yet, and the one-time link that sets its password (and TOTP)."""
    username = validate_username(username)
    if role not in ROLES:
        raise CollectorError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    if not site_names:
        raise CollectorError("give at least one --site the account may see")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise CollectorError(f"an account named {username!r} exists already")
    user = User(username=username, role=role, display_name=display_name.strip() or username, email=email.strip(),
                school_login=username if school_login is None else school_login,
                sites=_sites_by_name(session, site_names))
    session.add(user)
    session.flush()
    return issue_setup_link(user)


def issue_setup_link(user: User, now: dt.datetime | None = None) -> SetupLink:
    """Clear the password and TOTP secret and make a new one-time link: used for new accounts and resets."""
    token = secrets.token_urlsafe(32)
    user.setup_token_hash = token_hash(token)
    user.setup_expires_at = (now or _now()) + SETUP_LINK_LIFETIME
    user.password_hash = None
    user.totp_secret = pyotp.random_base32() if needs_totp(user.role) else None
    user.totp_last_step = 0
    user.failed_logins = 0
    user.locked_until = None
    return SetupLink(user, token)


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise CollectorError(f"no account named {username!r} (see 'user list')")
    return user


def user_for_setup_token(session: Session, token: str, now: dt.datetime | None = None) -> User | None:
    if not token or len(token) > 128:
        return None
    user = session.scalar(select(User).where(User.setup_token_hash == token_hash(token)))
    if user is None or user.disabled or aware(user.setup_expires_at) < (now or _now()):
        return None
    return user


def check_new_password(password: str, confirm: str, username: str) -> str | None:
    """None if the password is acceptable, otherwise what is wrong with it."""
    if password != confirm:
        return "The two passwords are not the same."
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"Use at least {PASSWORD_MIN_LENGTH} characters (a few unrelated words work well)."
    if len(password) > 1024:
        return "That password is too long."
    if username.lower() in password.lower():
        return "Do not use your username in your password."
    return None


def complete_setup(user: User, password: str, totp_code: str, now: dt.datetime | None = None) -> None:
    """Set the password once the TOTP code proves the authenticator app holds the secret. Ends the link."""
    if user.totp_secret is not None and not check_totp(user, totp_code, now):
        raise LoginRefused("That code is not right. Check the time on your phone and try the newest code.")
    user.password_hash = _hasher.hash(password)
    user.setup_token_hash = None
    user.setup_expires_at = None


def totp_uri(user: User) -> str:
    return pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.username, issuer_name=TOTP_ISSUER)


# ---------------------------------------------------------------- signing in

def check_password(session: Session, username: str, password: str, now: dt.datetime | None = None) -> User:
    """The user if the password is right. Counts failures and locks the account after too many."""
    now = now or _now()
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None or user.password_hash is None:
        _verify_quietly(_DUMMY_HASH, password)
        raise LoginRefused("Wrong username or password.")
    if user.locked_until is not None and aware(user.locked_until) > now:
        raise LoginRefused("Too many failed attempts: this account is locked for a while. Try again later.")
    if user.disabled:
        _verify_quietly(_DUMMY_HASH, password)
        raise LoginRefused("Wrong username or password.")
    if not _verify_quietly(user.password_hash, password):
        record_failure(user, now)
        raise LoginRefused("Wrong username or password.")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def record_failure(user: User, now: dt.datetime) -> None:
    user.failed_logins += 1
    if user.failed_logins >= MAX_FAILED_LOGINS:
        user.locked_until = now + LOCKOUT
        user.failed_logins = 0


def record_success(user: User, now: dt.datetime | None = None) -> None:
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now or _now()


def _verify_quietly(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def check_totp(user: User, code: str, now: dt.datetime | None = None) -> bool:
    """Accept the code of this 30-second step or its neighbours, once: a code seen before is refused."""
    code = "".join(code.split())
    if user.totp_secret is None or len(code) != 6 or not code.isdigit():
        return False
    totp = pyotp.TOTP(user.totp_secret)
    moment = (now or _now()).timestamp()
    step_now = int(moment // totp.interval)
    for step in (step_now - 1, step_now, step_now + 1):
        if step > user.totp_last_step and secrets.compare_digest(totp.generate_otp(step), code):
            user.totp_last_step = step
            return True
    return False


# ---------------------------------------------------------------- for the review rules

def person_of(user: User) -> Person:
    return Person(id=user.id, role=user.role, site_ids=frozenset(s.id for s in user.sites),
                  school_login=user.school_login)


def site_contacts(session: Session, site_id: int) -> SiteContacts:
    named = session.get(SiteSafeguarding, site_id)
    heads = session.scalars(
        select(User.school_login).join(User.sites).where(Site.id == site_id, User.role == "headteacher")
    )
    return SiteContacts(
        allegations_user_id=named.allegations_user_id if named else None,
        chair_user_id=named.chair_user_id if named else None,
        head_logins=frozenset(x for x in heads if x),
    )


def set_site_contacts(session: Session, site_id: int, allegations: User | None, chair: User | None,
                      escalate_after_minutes: int | None = None) -> SiteSafeguarding:
    """Name the site's allegations person and its chair of governors (who must be assigned to the site)."""
    for who in (allegations, chair):
        if who is not None and site_id not in {s.id for s in who.sites}:
            raise CollectorError(f"{who.username} is not assigned to this site")
    row = session.get(SiteSafeguarding, site_id) or SiteSafeguarding(site_id=site_id)
    row.allegations_user_id = allegations.id if allegations else None
    row.chair_user_id = chair.id if chair else None
    if escalate_after_minutes is not None:
        row.escalate_after_minutes = escalate_after_minutes
    session.add(row)
    session.flush()
    return row
