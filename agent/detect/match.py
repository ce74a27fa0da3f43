"""What the engine reports, and the masking of the context window that travels with it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.detect.matcher import CompiledLibrary, Hit

CONTEXT_CHARS = 60

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d ()-]{7,}\d(?!\w)")
_LONG_DIGITS = re.compile(r"\d{5,}")


def mask_personal(text: str) -> str:
    """Hide e-mail addresses, phone numbers and long digit runs (card, account, candidate numbers)."""
    text = _EMAIL.sub("[email]", text)
    text = _PHONE.sub("[phone]", text)
    return _LONG_DIGITS.sub("[number]", text)


def context_window(text: str, start: int, end: int, radius: int = CONTEXT_CHARS) -> str:
    """±radius characters around [start, end), cut at whole words so a masked item is never shown in part."""
    lo = max(0, start - radius)
    hi = min(len(text), end + radius)
    if lo > 0 and not text[lo - 1].isspace():
        space = text.find(" ", lo, start)
        lo = space + 1 if space != -1 else start
    if hi < len(text) and not text[hi].isspace():
        space = text.rfind(" ", end, hi)
        hi = space if space != -1 else end
    return mask_personal(text[lo:hi])


@dataclass(frozen=True)
class Match:
    category: str
    severity: int
    rule: str
    confidence: float
    matched: str  # as typed, from the original text
    start: int  # offsets in the original text (the segment buffer for keystrokes)
    end: int
    source: str  # "typed" | "deleted" | "title"
    context: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The fields `wardwatch-agent scan` prints; the context window is not among them."""
        return {"category": self.category, "severity": self.severity, "rule": self.rule,
                "confidence": round(self.confidence, 2), "matched": self.matched, "start": self.start,
                "end": self.end, "source": self.source}


def make_match(compiled: CompiledLibrary, hit: Hit, text: str, source: str, shift: int = 0) -> Match:
    """A Match for a hit found in `text`; `shift` moves its offsets into the caller's (larger) text."""
    rule = compiled.rules[hit.rule]
    return Match(category=rule.category, severity=rule.severity, rule=rule.id, confidence=hit.confidence,
                 matched=text[hit.start:hit.end], start=hit.start + shift, end=hit.end + shift, source=source,
                 context=context_window(text, hit.start, hit.end))
