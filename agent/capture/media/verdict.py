"""Merge what the raw header says with what the operating system says into one report. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.capture.media.header import HeaderFinding
from agent.capture.media.report import (
    ENCRYPTED_LOCKED,
    ENCRYPTED_UNLOCKED,
    NO_SCHEME,
    NOT_ENCRYPTED,
    UNKNOWN_HIGH_ENTROPY,
    VERACRYPT_LIKE,
    MediaReport,
    is_encrypted,
)

# Filesystem type names (blkid, diskutil) that are containers of ciphertext, not plain filesystems.
ENCRYPTED_TYPES = {"crypto_LUKS", "BitLocker", "bitlocker", "TCRYPT"}


@dataclass
class OsFacts:
    """What one platform probe learnt about a path. Every field is optional: probes say only what they know.

    `encrypted` is the OS's own verdict (Windows BitLocker status, diskutil's FileVault flag) and is None when the
    OS has none; `unlocked` is True when a decrypted view of the volume is open (dm-crypt mapping, unlocked
    BitLocker or APFS volume).
    """

    device: str | None = None
    size_bytes: int | None = None
    filesystem: str | None = None
    scheme: str | None = None
    encrypted: bool | None = None
    unlocked: bool | None = None
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    bus: str | None = None
    removable: bool | None = None
    evidence: list[str] = field(default_factory=list)


def _state_and_scheme(found: HeaderFinding, facts: OsFacts) -> tuple[str, str]:
    state, scheme = found.state, found.scheme
    if facts.encrypted and not is_encrypted(state):
        # The OS knows better: Windows reads an unlocked BitLocker volume through its filter, so the raw header
        # looks plain; diskutil sees APFS encryption the container header does not show.
        state, scheme = ENCRYPTED_LOCKED, facts.scheme or scheme
    elif facts.encrypted is False and state == UNKNOWN_HIGH_ENTROPY and scheme != VERACRYPT_LIKE:
        state = NOT_ENCRYPTED
    elif (
        state == UNKNOWN_HIGH_ENTROPY
        and found.filesystem is None
        and facts.filesystem
        and facts.filesystem not in ENCRYPTED_TYPES
    ):
        # blkid knows more filesystems than our magic table; a filesystem it recognises is not ciphertext.
        state, scheme = NOT_ENCRYPTED, NO_SCHEME
    if is_encrypted(state) and facts.unlocked:
        state = ENCRYPTED_UNLOCKED
    return state, scheme


def combine(path: str, found: HeaderFinding, facts: OsFacts, measured_size: int | None) -> MediaReport:
    """One report for `path` from the header finding and the OS facts (the OS wins where it knows better)."""
    state, scheme = _state_and_scheme(found, facts)
    return MediaReport(
        path=path,
        state=state,
        scheme=scheme,
        filesystem=found.filesystem or facts.filesystem,
        size_bytes=measured_size if measured_size is not None else facts.size_bytes,
        vendor=facts.vendor,
        model=facts.model,
        serial=facts.serial,
        device=facts.device,
        evidence=[*found.evidence, *facts.evidence],
    )
