"""What the media check says about one volume: the shape every platform and the CLI share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ENCRYPTED_LOCKED = "encrypted-locked"
ENCRYPTED_UNLOCKED = "encrypted-unlocked"
NOT_ENCRYPTED = "not-encrypted"
UNKNOWN_HIGH_ENTROPY = "unknown-high-entropy"
NO_ACCESS = "no-access"
STATES = (ENCRYPTED_LOCKED, ENCRYPTED_UNLOCKED, NOT_ENCRYPTED, UNKNOWN_HIGH_ENTROPY, NO_ACCESS)

LUKS1 = "luks1"
LUKS2 = "luks2"
BITLOCKER = "bitlocker"
BITLOCKER_TO_GO = "bitlocker-to-go"
APFS_ENCRYPTED = "apfs-encrypted"
VERACRYPT_LIKE = "veracrypt-like"
NO_SCHEME = "none"
SCHEMES = (LUKS1, LUKS2, BITLOCKER, BITLOCKER_TO_GO, APFS_ENCRYPTED, VERACRYPT_LIKE, NO_SCHEME)


def is_encrypted(state: str) -> bool:
    return state in (ENCRYPTED_LOCKED, ENCRYPTED_UNLOCKED)


@dataclass
class MediaReport:
    """One volume (a partition, a whole unpartitioned stick, or an image file) and whether it is encrypted.

    `evidence` holds short technical reasons (magic found, entropy, what the OS said); it never holds file
    contents or key material, so a report can be logged and sent to the collector as it is.
    """

    path: str
    state: str
    scheme: str = NO_SCHEME
    filesystem: str | None = None
    size_bytes: int | None = None
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    device: str | None = None
    evidence: list[str] = field(default_factory=list)
    why: str | None = None  # set for no-access: why the path could not be read

    def to_dict(self) -> dict[str, Any]:
        """The CLI's JSON shape: contract keys always present; vendor, model, serial, device and why only when known."""
        out = asdict(self)
        for optional in ("vendor", "model", "serial", "device", "why"):
            if out[optional] is None:
                del out[optional]
        return out
