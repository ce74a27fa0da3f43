"""What the spool drops when it is full. Pure: no I/O, so every rule is easy to test.

Rules: alerts of severity 4-5 are never dropped; to make room, drop the lowest severity first and, within a
severity, the oldest first; a low-severity newcomer is refused rather than push out anything more severe.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTECTED_SEVERITY = 4


@dataclass(frozen=True)
class Queued:
    seq: int
    severity: int
    size: int


@dataclass(frozen=True)
class Admission:
    admit: bool
    victims: tuple[int, ...]  # seqs to drop so the newcomer fits


def plan_admission(queued: list[Queued], new_severity: int, new_size: int, max_bytes: int) -> Admission:
    used = sum(q.size for q in queued)
    need = used + new_size - max_bytes
    if need <= 0:
        return Admission(admit=True, victims=())
    candidates = sorted((q for q in queued if q.severity < PROTECTED_SEVERITY and q.severity <= new_severity),
                        key=lambda q: (q.severity, q.seq))
    victims: list[int] = []
    freed = 0
    for q in candidates:
        if freed >= need:
            break
        victims.append(q.seq)
        freed += q.size
    if freed >= need:
        return Admission(admit=True, victims=tuple(victims))
    if new_severity >= PROTECTED_SEVERITY:
        # Over the limit rather than lose a high-severity alert; drop what may be dropped.
        return Admission(admit=True, victims=tuple(victims))
    return Admission(admit=False, victims=())


def make_room(queued: list[Queued], need_bytes: int) -> tuple[int, ...]:
    """Victims that free at least need_bytes (used when the disk itself is full), never severity 4-5."""
    victims: list[int] = []
    freed = 0
    for q in sorted((q for q in queued if q.severity < PROTECTED_SEVERITY), key=lambda q: (q.severity, q.seq)):
        if freed >= need_bytes:
            break
        victims.append(q.seq)
        freed += q.size
    return tuple(victims)
