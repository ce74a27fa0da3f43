"""Site policy for removable media: which reports become `usb` alerts and at what severity. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.capture.media.report import (
    ENCRYPTED_LOCKED,
    ENCRYPTED_UNLOCKED,
    NO_ACCESS,
    NOT_ENCRYPTED,
    STATES,
    UNKNOWN_HIGH_ENTROPY,
    MediaReport,
)
from agent.errors import AgentError

# A site may set a group name instead of each state; "unknown" covers what we could not decide either way.
STATE_GROUPS: dict[str, tuple[str, ...]] = {
    "encrypted": (ENCRYPTED_LOCKED, ENCRYPTED_UNLOCKED),
    "unknown": (UNKNOWN_HIGH_ENTROPY, NO_ACCESS),
    "not-encrypted": (NOT_ENCRYPTED,),
}
DEFAULT_SEVERITIES: dict[str, int | None] = {"not-encrypted": 3, "unknown": 2, "encrypted": None}


def _expand(severities: Mapping[str, int | None]) -> dict[str, int | None]:
    by_state: dict[str, int | None] = {}
    for key, severity in severities.items():
        states = STATE_GROUPS.get(key, (key,) if key in STATES else None)
        if states is None:
            known = ", ".join([*STATE_GROUPS, *STATES])
            raise AgentError(f"media policy: unknown state {key!r} (known: {known})")
        if severity is not None and (isinstance(severity, bool) or severity not in range(1, 6)):
            raise AgentError(f"media policy: severity for {key!r} must be 1-5 or none, not {severity!r}")
        by_state.update(dict.fromkeys(states, severity))
    return by_state


def _normal_serial(serial: str) -> str:
    return serial.strip().upper()


@dataclass
class MediaPolicy:
    """Severity per state (1-5, or None for an inventory event only) and the serials a site has approved.

    Approved serials cover school-issued sticks with hardware encryption, which look plain to the OS once the
    user has unlocked them with the keypad or vendor tool.
    """

    approved_serials: Iterable[str] = field(default_factory=set)
    severities: Mapping[str, int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._approved = {_normal_serial(s) for s in self.approved_serials if s and s.strip()}
        # Site values override the defaults state by state; group defaults first so single states can refine.
        self._by_state = {**_expand(DEFAULT_SEVERITIES), **_expand(self.severities)}

    def is_approved(self, report: MediaReport) -> bool:
        return bool(report.serial) and _normal_serial(report.serial or "") in self._approved

    def severity_for(self, report: MediaReport) -> int | None:
        """The alert severity for `report`, or None when it is an inventory event only."""
        if self.is_approved(report):
            return None
        return self._by_state.get(report.state, DEFAULT_SEVERITIES["unknown"])
