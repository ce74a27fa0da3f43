"""Turning one signed envelope into a storable row, or a precise reason to refuse it. No I/O.

Order matters: the signature is verified over the raw bytes BEFORE they are parsed, so a forged payload never
reaches the protobuf parser, and the bytes are kept verbatim so the evidence can be re-verified years later.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf.message import DecodeError
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from protos import wardwatch_pb2 as pb

MAX_ALERT_BYTES = 64 * 1024
MAX_BATCH_ITEMS = 500
CATEGORIES = frozenset({
    "child-sexual-abuse", "terrorism", "bullying", "grooming", "discrimination", "drugs", "extremism", "gambling",
    "pornography", "self-harm", "suicide", "violence", "filter-bypass", "profanity",
})
KIND_NAMES = {
    pb.ALERT_KIND_KEYWORD: "keyword", pb.ALERT_KIND_USB: "usb", pb.ALERT_KIND_COVERAGE: "coverage",
    pb.ALERT_KIND_TEST: "test", pb.ALERT_KIND_DROPPED: "dropped", pb.ALERT_KIND_NOTICE: "notice",
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SOURCE_NAMES = {pb.TEXT_SOURCE_TYPED: "typed", pb.TEXT_SOURCE_DELETED: "deleted", pb.TEXT_SOURCE_TITLE: "title"}


class Rejected(Exception):
    """The item can never be stored; str(exc) is the reason sent back in its ack."""


@dataclass(frozen=True)
class VerifiedAlert:
    alert: pb.Alert
    payload: bytes
    signature: bytes


def identity_verifier(public_key: ed25519.Ed25519PublicKey) -> VerifyKey:
    """libsodium's verifier for an agent's identity key. Verifying is most of the collector's work per alert,
    and libsodium verifies Ed25519 about twice as fast as OpenSSL 4 on the reference machine (bench/common.py
    measures both). It is also the stricter of the two: it refuses small-order keys and non-canonical points,
    which no honest agent produces."""
    return VerifyKey(public_key.public_bytes_raw())


def verify_signature(key: VerifyKey | ed25519.Ed25519PublicKey, payload: bytes, signature: bytes) -> bool:
    if isinstance(key, ed25519.Ed25519PublicKey):
        key = identity_verifier(key)
    try:
        key.verify(payload, signature)
    except (BadSignatureError, ValueError):  # ValueError: a signature that is not 64 bytes
        return False
    return True


def verify_envelope(envelope: pb.SignedAlert, peer_agent_id: str,
                    public_key: VerifyKey | ed25519.Ed25519PublicKey) -> VerifiedAlert:
    """Check one envelope from the agent whose certificate is `peer_agent_id`. Raises Rejected."""
    if envelope.agent_id != peer_agent_id:
        raise Rejected("envelope agent id does not match the client certificate")
    if len(envelope.alert) > MAX_ALERT_BYTES:
        raise Rejected(f"alert is larger than {MAX_ALERT_BYTES} bytes")
    if len(envelope.signature) != 64 or not verify_signature(public_key, envelope.alert, envelope.signature):
        raise Rejected("signature does not verify with the agent's identity key")
    alert = pb.Alert()
    try:
        alert.ParseFromString(envelope.alert)
    except DecodeError as exc:
        raise Rejected("alert bytes are not a valid Alert message") from exc
    if alert.agent_id != peer_agent_id:
        raise Rejected("signed agent id does not match the client certificate")
    if alert.seq == 0:
        raise Rejected("alert has no sequence number")
    if alert.kind not in KIND_NAMES:
        raise Rejected("alert kind is unknown")
    if alert.severity > 5:
        raise Rejected("severity must be 0-5")
    if alert.kind == pb.ALERT_KIND_KEYWORD and alert.category not in CATEGORIES:
        raise Rejected(f"unknown category {alert.category[:40]!r}")
    return VerifiedAlert(alert=alert, payload=bytes(envelope.alert), signature=bytes(envelope.signature))


def row_values(v: VerifiedAlert, alert_id: str, site_id: int, received_at: dt.datetime) -> dict:
    """Column values for the alerts table (the evidence bytes plus searchable copies of the fields)."""
    a = v.alert
    details: dict = {}
    if a.HasField("usb"):
        details["usb"] = {
            "state": a.usb.state, "scheme": a.usb.scheme, "filesystem": a.usb.filesystem,
            "size_bytes": a.usb.size_bytes, "vendor": a.usb.vendor, "model": a.usb.model, "serial": a.usb.serial,
            "device": a.usb.device, "evidence": list(a.usb.evidence), "approved": a.usb.approved,
            "os_write_policy": a.usb.os_write_policy,
        }
    if a.HasField("coverage"):
        details["coverage"] = {"gap": a.coverage.gap, "detail": a.coverage.detail}
    if a.HasField("dropped"):
        details["dropped"] = {"count": a.dropped.count, "first_seq": a.dropped.first_seq,
                              "last_seq": a.dropped.last_seq, "max_severity": a.dropped.max_severity}
    if a.injected:
        details["injected"] = True
    if a.HasField("created_at"):  # what Timestamp.ToDatetime(tzinfo=UTC) gives, at a fraction of its cost
        created = _EPOCH + dt.timedelta(seconds=a.created_at.seconds, microseconds=a.created_at.nanos // 1000)
    else:
        created = received_at
    return {
        "id": alert_id, "agent_id": a.agent_id, "seq": a.seq, "site_id": site_id,
        "kind": KIND_NAMES[a.kind], "category": a.category, "severity": a.severity, "rule": a.rule,
        "confidence": float(a.confidence), "source": SOURCE_NAMES.get(a.source, ""), "hostname": a.hostname,
        "user_name": a.user, "age_band": a.age_band, "matched": a.matched, "context": a.context,
        "window_title": a.window_title, "application": a.application, "details": details,
        "bundle_version": a.bundle_version, "created_at": created, "received_at": received_at, "state": "new",
        "payload": v.payload, "signature": v.signature, "signature_ok": True,
    }


def new_alert_ids(count: int) -> list[str]:
    """`count` random (version 4) UUID strings from one urandom call: uuid.uuid4() makes a system call and a UUID
    object for each, which showed up in the ingest profile."""
    raw = bytearray(os.urandom(16 * count))
    out = []
    for i in range(0, 16 * count, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
        h = raw[i:i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out
