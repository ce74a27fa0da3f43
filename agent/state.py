"""The agent's state directory: identity, certificates, settings, spool. Secrets are 0600 and never logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from agent.errors import AgentError
from protos.identity import agent_id_of


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
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class AgentState:
    root: Path

    identity_key_path = property(lambda self: self.root / "identity.key")   # Ed25519: signs alerts
    tls_key_path = property(lambda self: self.root / "tls.key")             # ECDSA P-256: mTLS
    cert_path = property(lambda self: self.root / "client.crt")
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
        if not self.identity_key_path.exists():
            if not create:
                raise AgentError(f"no agent identity in {self.root}: enrol first (wardwatch-agent enroll ...)")
            write_private(self.identity_key_path, _pem(ed25519.Ed25519PrivateKey.generate()))
        key = serialization.load_pem_private_key(self.identity_key_path.read_bytes(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise AgentError(f"{self.identity_key_path} is not an Ed25519 key")
        return key

    def tls_key(self, create: bool = False) -> ec.EllipticCurvePrivateKey:
        if not self.tls_key_path.exists():
            if not create:
                raise AgentError(f"no TLS key in {self.root}: enrol first")
            write_private(self.tls_key_path, _pem(ec.generate_private_key(ec.SECP256R1())))
        return serialization.load_pem_private_key(self.tls_key_path.read_bytes(), password=None)

    @property
    def agent_id(self) -> str:
        return agent_id_of(self.identity_key().public_key())

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
