"""The agent's state directory: identity, certificates, settings, spool. Secrets are 0600 and never logged."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import AgentError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

# The long-running service signs alerts with PyNaCl (libsodium, ~3 MB resident) and imports `cryptography` (~12 MB
# resident) only for the rare jobs that need X.509 or ECDSA: enrolment, certificate renewal, re-keying. Both
# produce the same Ed25519 signatures (RFC 8032 is deterministic); tests check that they agree.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")  # RFC 8410: PKCS#8 v1, no attributes


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _grant_users_read(path: Path) -> None:
    """On Windows a replaced file takes the state folder's SYSTEM/Administrators-only ACL; give the local Users
    group (S-1-5-32-545) read access again so the session helper, running as the pupil, can read it."""
    subprocess.run(["icacls.exe", str(path), "/grant", "*S-1-5-32-545:R"], capture_output=True, check=False)


def _pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ed25519_seed_from_pem(pem: bytes) -> bytes:
    """The 32-byte private seed of an unencrypted Ed25519 PKCS#8 PEM key, as `cryptography` writes it (RFC 8410's
    fixed 48-byte encoding). Raises ValueError for anything else."""
    import base64
    import binascii

    lines = pem.strip().splitlines()
    if len(lines) < 3 or lines[0] != b"-----BEGIN PRIVATE KEY-----" or lines[-1] != b"-----END PRIVATE KEY-----":
        raise ValueError("not a PEM private key")
    try:
        der = base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except binascii.Error as exc:
        raise ValueError("the PEM body is not base64") from exc
    if len(der) != 48 or not der.startswith(_ED25519_PKCS8_PREFIX):
        raise ValueError("not an unencrypted Ed25519 PKCS#8 key")
    return der[len(_ED25519_PKCS8_PREFIX):]


class AlertSigningKey:
    """The identity key for signing alerts, through libsodium: `sign(data)` gives the 64-byte Ed25519 signature."""

    def __init__(self, seed: bytes):
        from nacl.signing import SigningKey

        self._key = SigningKey(seed)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data).signature


@dataclass(frozen=True)
class AgentState:
    root: Path

    identity_key_path = property(lambda self: self.root / "identity.key")   # Ed25519: signs alerts
    tls_key_path = property(lambda self: self.root / "tls.key")             # ECDSA P-256: mTLS
    cert_path = property(lambda self: self.root / "client.crt")
    cert_validity_path = property(lambda self: self.root / "client.crt.validity")  # not secret; see save_certificate
    ca_path = property(lambda self: self.root / "ca.crt")
    config_path = property(lambda self: self.root / "agent.json")
    spool_path = property(lambda self: self.root / "spool.db")
    status_path = property(lambda self: self.root / "status.json")
    bundle_dir = property(lambda self: self.root / "bundle")
    ipc_dir = property(lambda self: self.root / "ipc")

    def ensure_dir(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # The helper (another user) must reach ipc/ but not read keys; keys are 0600 regardless.
        os.chmod(self.root, 0o755)

    # -------------------------------------------------------------- keys

    def identity_key(self, create: bool = False) -> ed25519.Ed25519PrivateKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        if not self.identity_key_path.exists():
            if not create:
                raise AgentError(f"no agent identity in {self.root}: enrol first (wardwatch-agent enroll ...)")
            write_private(self.identity_key_path, _pem(ed25519.Ed25519PrivateKey.generate()))
        key = serialization.load_pem_private_key(self.identity_key_path.read_bytes(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise AgentError(f"{self.identity_key_path} is not an Ed25519 key")
        return key

    def alert_signing_key(self) -> AlertSigningKey:
        """The identity key as the service signs with it (see AlertSigningKey)."""
        try:
            pem = self.identity_key_path.read_bytes()
        except FileNotFoundError:
            raise AgentError(f"no agent identity in {self.root}: enrol first (wardwatch-agent enroll ...)") from None
        try:
            return AlertSigningKey(ed25519_seed_from_pem(pem))
        except ValueError as exc:
            raise AgentError(f"{self.identity_key_path} is not an Ed25519 key: {exc}") from None

    def tls_key(self, create: bool = False) -> ec.EllipticCurvePrivateKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        if not self.tls_key_path.exists():
            if not create:
                raise AgentError(f"no TLS key in {self.root}: enrol first")
            write_private(self.tls_key_path, _pem(ec.generate_private_key(ec.SECP256R1())))
        return serialization.load_pem_private_key(self.tls_key_path.read_bytes(), password=None)

    @property
    def agent_id(self) -> str:
        from protos.identity import agent_id_of

        return agent_id_of(self.identity_key().public_key())

    # -------------------------------------------------------------- certificate

    def save_certificate(self, pem: bytes) -> tuple[dt.datetime, dt.datetime]:
        """Write the client certificate, and beside it a note of its validity: the running service reads the note to
        know when to renew, instead of parsing X.509, which would keep cryptography's certificate code (~6 MB)
        resident for a check that changes its answer once a month. Returns (not before, not after)."""
        write_private(self.cert_path, pem)
        return self._note_validity(pem)

    def certificate_validity(self) -> tuple[dt.datetime, dt.datetime]:
        """(not before, not after) of the client certificate; parses it only if the note is missing or stale."""
        import hashlib

        pem = self.cert_path.read_bytes()
        try:
            note = json.loads(self.cert_validity_path.read_text())
            if note["sha256"] == hashlib.sha256(pem).hexdigest():
                return dt.datetime.fromisoformat(note["not_before"]), dt.datetime.fromisoformat(note["not_after"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return self._note_validity(pem)

    def _note_validity(self, pem: bytes) -> tuple[dt.datetime, dt.datetime]:
        import hashlib

        from cryptography import x509

        cert = x509.load_pem_x509_certificate(pem)
        validity = cert.not_valid_before_utc, cert.not_valid_after_utc
        note = {"sha256": hashlib.sha256(pem).hexdigest(), "not_before": validity[0].isoformat(),
                "not_after": validity[1].isoformat()}
        tmp = self.cert_validity_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(note))
        tmp.replace(self.cert_validity_path)
        return validity

    # -------------------------------------------------------------- settings

    def is_enrolled(self) -> bool:
        return self.config_path.exists() and self.cert_path.exists() and self.identity_key_path.exists()

    def config(self) -> dict[str, Any]:
        if not self.is_enrolled():
            raise AgentError(f"this device is not enrolled (state {self.root}); run: wardwatch-agent enroll STRING")
        try:
            return json.loads(self.config_path.read_text())
        except (OSError, ValueError) as exc:
            raise AgentError(f"{self.config_path} is unreadable: {exc}") from exc

    def save_config(self, values: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(values, indent=2, sort_keys=True))
        os.chmod(tmp, 0o644)  # the session helper reads the age band from here
        tmp.replace(self.config_path)
        if sys.platform == "win32":
            _grant_users_read(self.config_path)

    def credentials(self) -> tuple[bytes, bytes, bytes]:
        """(CA PEM, TLS key PEM, client certificate PEM) for the mTLS channel."""
        self.config()
        return self.ca_path.read_bytes(), self.tls_key_path.read_bytes(), self.cert_path.read_bytes()


def generalize(state: AgentState) -> list[Path]:
    """Remove identity, certificates and spool so a cloned image enrols as a new device."""
    removed = []
    for path in (state.identity_key_path, state.tls_key_path, state.cert_path, state.cert_validity_path, state.ca_path,
                 state.config_path, state.status_path, state.spool_path, state.spool_path.with_name("spool.db-wal"),
                 state.spool_path.with_name("spool.db-shm")):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed
