"""On-device detection: normalise, match against the keyword library, apply rules, report matches."""

from agent.detect.engine import Engine
from agent.detect.keystrokes import KeystrokeBuffer
from agent.detect.match import Match

__all__ = ["Engine", "KeystrokeBuffer", "Match"]
