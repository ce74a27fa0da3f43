"""Fleet operations: settings, the uninstall code, clone detection and re-keying, CA rotation.

Clone detection and the settings parser are pure; the rest takes an open SQLAlchemy session or a PKI directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import shutil
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.errors import CollectorError
from collector.pki import (
    PkiPaths,
    cert_pem,
    issue_server_certificate,
    key_pem,
    load_private_key,
    make_ca,
    write_private,
)
from collector.store.models import Agent, AgentCommand, EnrolmentToken, FleetSetting

UNINSTALL_CODE = "uninstall_code"
CLONED_IDENTITY = "cloned-identity"
REKEY_TOKEN_TTL = dt.timedelta(days=7)
_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, what: str) -> dt.timedelta:
    m = _DURATION.match(str(text).strip().lower())
    if not m or int(m.group(1)) == 0:
        raise CollectorError(f"{what} must look like 90s, 30m, 24h or 90d, got {text!r}")
    return dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


@dataclass(frozen=True)
class FleetPolicy:
    """`[fleet]` in config.toml. Short values exist for tests and labs; the defaults suit a school."""

    heartbeat_interval_s: int = 60
    agent_cert_lifetime: dt.timedelta = dt.timedelta(days=90)

    @property
    def clone_window(self) -> dt.timedelta:
        # Long enough that two clones heartbeating once a minute each are always both inside it.
        return dt.timedelta(seconds=5 * self.heartbeat_interval_s)


def load_fleet_policy(data_dir: Path) -> FleetPolicy:
    try:
        raw = tomllib.loads((data_dir / "config.toml").read_text(encoding="utf-8")).get("fleet", {})
    except (OSError, tomllib.TOMLDecodeError):
        raw = {}
    interval = int(raw.get("heartbeat_interval_s", FleetPolicy.heartbeat_interval_s))
    if not 1 <= interval <= 3600:
        raise CollectorError("[fleet] heartbeat_interval_s must be between 1 and 3600")
    lifetime = parse_duration(raw["agent_cert_lifetime"], "[fleet] agent_cert_lifetime") \
        if "agent_cert_lifetime" in raw else FleetPolicy.agent_cert_lifetime
    if lifetime < dt.timedelta(seconds=30):
        raise CollectorError("[fleet] agent_cert_lifetime must be at least 30s")
    return FleetPolicy(heartbeat_interval_s=interval, agent_cert_lifetime=lifetime)


# ---------------------------------------------------------------------- clone detection (pure)


def is_clone(recent: dict[str, str], last_instance: str, instance: str, now: dt.datetime,
             window: dt.timedelta) -> bool:
    """True when `instance` heartbeats again after a different instance did, both within `window`.

    A restarted agent shows a new instance id once and the old one never returns; two live processes sharing an
    identity (a golden image that was not generalised) alternate.
    """
    if not last_instance or last_instance == instance:
        return False
    seen = recent.get(instance)
    return seen is not None and now - dt.datetime.fromisoformat(seen) <= window


def remember_instance(recent: dict[str, str], instance: str, now: dt.datetime, window: dt.timedelta) -> dict:
    """The instances seen within `window`, with this one stamped now (old entries dropped to keep it small)."""
    kept = {i: t for i, t in recent.items() if now - dt.datetime.fromisoformat(t) <= window}
    kept[instance] = now.isoformat()
    return kept


# ---------------------------------------------------------------------- re-keying


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def flag_clone(session: Session, agent: Agent, instances: list[str], now: dt.datetime) -> int:
    """Mark `agent` as cloned and queue a re-key for every live instance. Returns how many commands were queued."""
    agent.clone_detected_at = now
    return queue_rekey(session, agent, instances, now, CLONED_IDENTITY)


def queue_rekey(session: Session, agent: Agent, instances: list[str], now: dt.datetime, reason: str) -> int:
    """Queue one `rekey` command per instance, each with its own one-time token.

    A token is bound to the identity (`rekey_of`): redeeming it needs a signature by that identity key, so it is
    useless to anyone who reads it off the wire or the command table. Returns how many commands were queued.
    """
    queued = 0
    for instance in instances:
        token_id, secret = secrets.token_hex(4), secrets.token_urlsafe(24)
        session.add(EnrolmentToken(id=token_id, secret_hash=_token_hash(secret), site_id=agent.site_id,
                                   age_band=agent.age_band, expires_at=now + REKEY_TOKEN_TTL, uses_allowed=1,
                                   rekey_of=agent.id))
        # The secret rides in the command until delivery, then is scrubbed (see scrub_delivered_secret).
        session.add(AgentCommand(id=str(uuid.uuid4()), agent_id=agent.id, kind="rekey",
                                 payload={"reason": reason, "instance_id": instance,
                                          "token": f"{token_id}.{secret}"}))
        queued += 1
    return queued


def scrub_delivered_secret(command: AgentCommand) -> None:
    if command.payload and "token" in command.payload:
        command.payload = {k: v for k, v in command.payload.items() if k != "token"}


def finish_rekey(session: Session, old: Agent, new_agent_id: str, now: dt.datetime) -> None:
    """After one clone re-keyed: retire the shared identity once no clone still holds an unused re-key token."""
    outstanding = session.scalars(select(EnrolmentToken).where(
        EnrolmentToken.rekey_of == old.id, EnrolmentToken.uses < EnrolmentToken.uses_allowed,
        EnrolmentToken.revoked_at.is_(None), EnrolmentToken.expires_at > now)).all()
    if not outstanding:
        old.status = "rekeyed"


# ---------------------------------------------------------------------- uninstall code


def hash_code(code: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(code.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def code_matches(code: str, stored: str) -> bool:
    try:
        _name, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(code.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def set_uninstall_code(session: Session, code: str) -> None:
    if len(code) < 8:
        raise CollectorError("the uninstall code must be at least 8 characters (pupils will try to guess it)")
    row = session.get(FleetSetting, UNINSTALL_CODE) or FleetSetting(name=UNINSTALL_CODE, value="")
    row.value = hash_code(code)
    row.updated_at = dt.datetime.now(dt.UTC)
    session.add(row)


class DeregisterRefused(Exception):
    """The uninstall is not allowed; the message is safe to send to the agent."""


def deregister(session: Session, agent: Agent, code: str, now: dt.datetime) -> None:
    """Check the uninstall code and mark the device removed (its certificate is refused from then on)."""
    row = session.get(FleetSetting, UNINSTALL_CODE)
    if row is None:
        raise DeregisterRefused("no uninstall code is set on the collector; the technician sets one with "
                                "'wardwatch-collector uninstall-code set'")
    if not code or not code_matches(code, row.value):
        raise DeregisterRefused("wrong uninstall code")
    decommission(agent, now)


def revoke(agent: Agent) -> None:
    """Refuse the device's certificate from now on (replicas within their peer cache time)."""
    agent.status = "revoked"


def decommission(agent: Agent, now: dt.datetime) -> None:
    """The device is gone (uninstalled, broken, sold): refuse its certificate and keep when it left."""
    agent.status = "removed"
    agent.removed_at = now


# ---------------------------------------------------------------------- CA rotation


def rotate_ca_start(paths: PkiPaths) -> x509.Certificate:
    """Make the new CA. From the next `serve`, it signs agent certificates and both CAs are trusted.

    Agents see the trust bundle change in their heartbeat, renew, and store both CAs; the server certificate
    stays on the old CA until `finish`, so agents that have not yet heard of the new CA still connect.
    """
    if paths.ca_next_key.exists():
        raise CollectorError("a CA rotation is already under way; finish it first ('ca rotate --finish')")
    key, cert = make_ca(f"WardWatch collector CA {dt.datetime.now(dt.UTC):%Y-%m-%d %H%M%S}")
    write_private(paths.ca_next_key, key_pem(key))
    paths.ca_next_cert.write_bytes(cert_pem(cert))
    return cert


def rotate_ca_finish(paths: PkiPaths, sans: list[str]) -> x509.Certificate:
    """End the overlap: the new CA becomes the only CA and issues new server and web certificates."""
    if not paths.ca_next_key.exists():
        raise CollectorError("no CA rotation is under way; start one with 'ca rotate'")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    retired = paths.root / "retired"
    retired.mkdir(mode=0o700, exist_ok=True)
    shutil.copy2(paths.ca_key, retired / f"ca-{stamp}.key")
    shutil.copy2(paths.ca_cert, retired / f"ca-{stamp}.crt")
    new_key = load_private_key(paths.ca_next_key)
    new_cert = x509.load_pem_x509_certificate(paths.ca_next_cert.read_bytes())
    for key_path, cert_path in ((paths.server_key, paths.server_cert), (paths.web_key, paths.web_cert)):
        key, cert = issue_server_certificate(new_key, new_cert, sans)
        write_private(key_path, key_pem(key))
        cert_path.write_bytes(cert_pem(cert))
    write_private(paths.ca_key, key_pem(new_key))
    paths.ca_cert.write_bytes(cert_pem(new_cert))
    paths.ca_next_key.unlink()
    paths.ca_next_cert.unlink()
    return new_cert


def renew_server_certificates(paths: PkiPaths, sans: list[str]) -> x509.Certificate:
    """New server and web certificates from the current CA; agents trust the CA, so nothing changes for them."""
    ca_key = load_private_key(paths.ca_key)
    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server_cert = None
    for key_path, cert_path in ((paths.server_key, paths.server_cert), (paths.web_key, paths.web_cert)):
        key, cert = issue_server_certificate(ca_key, ca_cert, sans)
        write_private(key_path, key_pem(key))
        cert_path.write_bytes(cert_pem(cert))
        server_cert = server_cert or cert
    return server_cert


def server_sans(paths: PkiPaths) -> list[str]:
    """The names and addresses on the current server certificate, so a reissue keeps them."""
    cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.DNSName)] + \
        [str(v) for v in san.get_values_for_type(x509.IPAddress)]
