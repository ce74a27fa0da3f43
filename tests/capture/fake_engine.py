"""A tiny stand-in for agent.detect's Engine, with the same API, for tests of the helper's own logic.

It records every key it is fed, so a test can prove that keys typed in an excluded window never reached it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

PHRASES = {"kill myself": ("suicide", 5), "porn": ("pornography", 4), "homework": ("profanity", 1)}


@dataclass(frozen=True)
class FakeMatch:
    category: str
    severity: int
    rule: str
    confidence: float
    matched: str
    start: int
    end: int
    source: str
    context: str

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("context")
        return data


class FakeEngine:
    def __init__(self, version: str = "fake-1"):
        self.version = version
        self.fed: list[str] = []
        self.scanned: list[tuple[str, str]] = []

    def scan(self, text: str, source: str = "typed") -> list[FakeMatch]:
        self.scanned.append((text, source))
        lowered = text.lower()
        out = []
        for phrase, (category, severity) in PHRASES.items():
            at = lowered.find(phrase)
            if at >= 0:
                out.append(FakeMatch(category, severity, f"{category}.fake", 1.0, text[at:at + len(phrase)], at,
                                     at + len(phrase), source, text[max(0, at - 60):at + len(phrase) + 60]))
        return out

    def keystroke_buffer(self) -> FakeBuffer:
        return FakeBuffer(self)


class FakeBuffer:
    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.text: list[str] = []

    def feed(self, key: str) -> list[FakeMatch]:
        self.engine.fed.append(key)
        if len(key) == 1:
            self.text.append(key)
        elif key == "backspace" and self.text:
            self.text.pop()
        elif key == "enter":
            return self._end()
        return []

    def new_segment(self, reason: str = "focus") -> list[FakeMatch]:
        return self._end()

    def flush(self) -> list[FakeMatch]:
        return self._end()

    def _end(self) -> list[FakeMatch]:
        text, self.text = "".join(self.text), []
        return self.engine.scan(text, "typed") if text else []
