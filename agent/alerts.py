"""Building and signing alerts. The agent signs the exact bytes the collector will store."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from typing import Protocol

from agent import __version__
from protos import wardwatch_pb2 as pb


class SigningKey(Protocol):
    """An Ed25519 private key: `cryptography`'s, or the service's libsodium one (agent/state.py)."""

    def sign(self, data: bytes) -> bytes: ...

KINDS = {
    "keyword": pb.ALERT_KIND_KEYWORD, "usb": pb.ALERT_KIND_USB, "coverage": pb.ALERT_KIND_COVERAGE,
    "test": pb.ALERT_KIND_TEST, "dropped": pb.ALERT_KIND_DROPPED, "notice": pb.ALERT_KIND_NOTICE,
}
SOURCES = {"typed": pb.TEXT_SOURCE_TYPED, "deleted": pb.TEXT_SOURCE_DELETED, "title": pb.TEXT_SOURCE_TITLE}


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


@dataclass(frozen=True)
class Signer:
    key: SigningKey
    agent_id: str
    hostname: str = socket.gethostname()
    age_band: str = "secondary"
    bundle_version: str = ""

    def envelope(self, alert: pb.Alert, seq: int) -> bytes:
        """Stamp agent id, seq and time on a copy of `alert`, sign it and return the serialized envelope."""
        signed = pb.Alert()
        signed.CopyFrom(alert)
        signed.agent_id = self.agent_id
        signed.seq = seq
        if not signed.HasField("created_at"):
            signed.created_at.GetCurrentTime()
        signed.hostname = signed.hostname or self.hostname
        signed.age_band = signed.age_band or self.age_band
        signed.agent_version = __version__
        signed.bundle_version = signed.bundle_version or self.bundle_version
        payload = signed.SerializeToString(deterministic=True)
        return pb.SignedAlert(alert=payload, signature=self.key.sign(payload),
                              agent_id=self.agent_id).SerializeToString()


def make_test_alert(category: str, severity: int, text: str) -> pb.Alert:
    return pb.Alert(kind=pb.ALERT_KIND_TEST, category=category, severity=severity, rule="test.manual",
                    matched=text, context=text, confidence=1.0, user=current_user(),
                    window_title="WardWatch test alert", application="wardwatch-agent")


def dropped_alert(count: int, first_seq: int, last_seq: int, max_severity: int) -> pb.Alert:
    alert = pb.Alert(kind=pb.ALERT_KIND_DROPPED, severity=2, rule="agent.spool-dropped",
                     matched=f"dropped {count} alert(s)")
    alert.dropped.count = count
    alert.dropped.first_seq = first_seq
    alert.dropped.last_seq = last_seq
    alert.dropped.max_severity = max_severity
    return alert


def coverage_alert(gap: str, detail: str, severity: int = 2, user: str = "") -> pb.Alert:
    alert = pb.Alert(kind=pb.ALERT_KIND_COVERAGE, severity=severity, rule=f"coverage.{gap}", user=user)
    alert.coverage.gap = gap
    alert.coverage.detail = detail
    return alert
