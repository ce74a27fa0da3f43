"""Enrolment tokens: short-lived, counted, revocable. Only a hash of the secret is stored."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import socket
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from collector import audit
from collector.config import CollectorConfig
from collector.context import open_store
from collector.errors import CollectorError
from collector.pki import CollectorPki, PkiPaths
from collector.store.models import EnrolmentToken, Site
from protos.enrolment import EnrolmentString

_TTL = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_TTL = dt.timedelta(days=30)


def parse_ttl(text: str) -> dt.timedelta:
    m = _TTL.match(text.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise CollectorError(f"--ttl must look like 30m, 24h or 7d, got {text!r}")
    ttl = dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    if ttl > MAX_TTL:
        raise CollectorError("--ttl may be at most 30d: enrolment tokens are meant to be short-lived")
    return ttl


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(session: Session, site: Site, ttl: dt.timedelta, uses: int, age_band: str) -> tuple[str, str]:
    """Store a new token; returns (token id, the full token 'id.secret' — shown once, never stored)."""
    if uses < 1:
        raise CollectorError("--uses must be at least 1")
    token_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(24)
    session.add(EnrolmentToken(id=token_id, secret_hash=_hash(secret), site_id=site.id, age_band=age_band,
                               expires_at=dt.datetime.now(dt.UTC) + ttl, uses_allowed=uses))
    return token_id, f"{token_id}.{secret}"


class TokenRefused(Exception):
    """The token cannot enrol a device; the message is safe to send to the agent."""


@dataclass(frozen=True)
class RedeemedToken:
    token_id: str
    site: Site
    age_band: str


def redeem_token(session: Session, token: str, now: dt.datetime | None = None) -> RedeemedToken:
    """Use up one enrolment of a token, atomically (two agents racing for the last use cannot both win)."""
    now = now or dt.datetime.now(dt.UTC)
    token_id, _, secret = token.partition(".")
    row = session.get(EnrolmentToken, token_id) if token_id else None
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        raise TokenRefused("unknown enrolment token")
    if row.revoked_at is not None:
        raise TokenRefused("this enrolment token has been revoked")
    if _aware(row.expires_at) <= now:
        raise TokenRefused("this enrolment token has expired; ask for a new one")
    used = session.execute(
        update(EnrolmentToken)
        .where(EnrolmentToken.id == token_id, EnrolmentToken.uses < EnrolmentToken.uses_allowed,
               EnrolmentToken.revoked_at.is_(None))
        .values(uses=EnrolmentToken.uses + 1)
    ).rowcount
    if used != 1:
        raise TokenRefused("this enrolment token has been used up")
    return RedeemedToken(token_id=row.id, site=row.site, age_band=row.age_band)


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes even for timezone-aware columns; they were stored as UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _advertised(explicit: str | None, configured: str, served: str | None, what: str) -> str:
    value = explicit or configured or served
    if not value:
        raise CollectorError(f"no {what} known: start 'serve' first, or pass --{what.replace(' ', '-')}")
    host, _, port = value.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = socket.getfqdn()
    return f"{host}:{port}"


def enrolment_string(cfg: CollectorConfig, token: str, site: str, address: str | None,
                     enrol_address: str | None) -> str:
    served = cfg.served_endpoints()
    pki = CollectorPki(PkiPaths(cfg.pki_dir))
    return EnrolmentString(
        address=_advertised(address, cfg.public_address, served.get("listen"), "address"),
        enrol_address=_advertised(enrol_address, cfg.public_enrol_address, served.get("enrol"), "enrol address"),
        token=token,
        ca_pin=pki.pin,
        site=site,
    ).encode()


def _find_site(session: Session, name: str | None) -> Site:
    if name is None:
        site = session.scalar(select(Site).order_by(Site.id))
        if site is None:
            raise CollectorError("no site exists; run 'init'")
        return site
    site = session.scalar(select(Site).where(Site.name == name))
    if site is None:
        site = Site(name=name)
        session.add(site)
        session.flush()
    return site


def cmd_token_create(args: argparse.Namespace) -> int:
    ttl = parse_ttl(args.ttl)
    with open_store(args) as (cfg, engine), audit.write_session(engine) as session:
        site = _find_site(session, args.site)
        token_id, token = create_token(session, site, ttl, args.uses, args.age_band)
        site_name = site.name
        line = enrolment_string(cfg, token, site_name, args.address, args.enrol_address)
        _audit(session, "token.create", token_id, {"site": site_name, "uses": args.uses, "ttl": args.ttl})
    expires = (dt.datetime.now(dt.UTC) + ttl).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# token {token_id}: site {site_name!r}, {args.uses} use(s), expires {expires}")
    print("# on each PC: wardwatch-agent enroll '<the line below>'")
    print(line)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    with open_store(args) as (_cfg, engine), audit.write_session(engine) as session:
        row = session.get(EnrolmentToken, args.token_id)
        if row is None:
            raise CollectorError(f"no token with id {args.token_id!r} (see 'token list')")
        if row.revoked_at is None:
            row.revoked_at = dt.datetime.now(dt.UTC)
            _audit(session, "token.revoke", row.id, {})
    print(f"token {args.token_id} revoked")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    with open_store(args) as (_cfg, engine), Session(engine) as session:
        rows = session.scalars(select(EnrolmentToken).order_by(EnrolmentToken.created_at)).all()
        for t in rows:
            state = ("revoked" if t.revoked_at else "expired" if _aware(t.expires_at) <= now
                     else "used-up" if t.uses >= t.uses_allowed else "active")
            item = {"id": t.id, "site": t.site.name, "age_band": t.age_band, "uses": t.uses,
                    "uses_allowed": t.uses_allowed, "expires_at": _aware(t.expires_at).isoformat(), "state": state}
            print(json.dumps(item) if args.json else
                  f"{t.id}  {state:8}  {t.uses}/{t.uses_allowed}  {item['expires_at']}  {t.site.name}")
    return 0


def _audit(session: Session, action: str, target: str, detail: dict) -> None:
    audit.append(session, actor="cli", action=action, target=target, detail=detail)
