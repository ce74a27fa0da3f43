"""The composed-buffer keystroke model: what the pupil's text looks like now, and what they deleted.

Printable keys append; Backspace and Ctrl+Backspace edit the end of the buffer and keep what they removed; keys that
move the caret or replace text (cursor keys, clicks, Ctrl+A/X/V, Tab, Escape, Delete) and focus changes end the
segment, because after them the buffer no longer mirrors the field. Each letter key scans only the tail (for
substring rules); a word end scans a window of recent words; Enter and segment changes run a full pass. A hit is
reported once per segment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.detect.match import Match, make_match

if TYPE_CHECKING:
    from agent.detect.engine import Engine

SEGMENT_KEYS = frozenset({"left", "right", "up", "down", "home", "end", "ctrl+a", "ctrl+x", "ctrl+v", "tab",
                          "escape", "delete", "click"})
MAX_SEGMENT_CHARS = 4000
KEEP_ON_TRIM = 1000
_CONTEXT_REACH_CHARS = 120  # deleted text is scanned with room for a context rule's partner words


class KeystrokeBuffer:
    """Bound to one engine; not shared between threads (one per keyboard stream)."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._text = ""
        self._reported: set[tuple[str, str, int]] = set()
        self._before_deletion: str | None = None
        self.deleted: list[str] = []  # what Backspace removed in this segment, in typing order

    @property
    def text(self) -> str:
        return self._text

    def feed(self, key: str) -> list[Match]:
        if key == "backspace":
            self._delete(1)
            return []
        if key == "ctrl+backspace":
            self._delete(self._previous_word_length())
            return []
        found = self._close_deletion()
        if key == "enter":
            return found + self._end_segment()
        if key in SEGMENT_KEYS:
            return found + self._end_segment()
        if len(key) != 1:
            raise ValueError(f"unknown key {key!r}")
        if not key.isprintable() and not key.isspace():
            return found
        self._text += key
        if len(self._text) > MAX_SEGMENT_CHARS:
            self._trim()
        if not key.isalnum():
            return found + self._scan_recent(final=False)
        if self._engine.compiled.has_substring_rules:
            return found + self._scan_tail()
        return found

    def new_segment(self, reason: str = "focus") -> list[Match]:
        """Focus or title change: report what the segment still holds, then start empty."""
        return self._close_deletion() + self._end_segment()

    def flush(self) -> list[Match]:
        """Report everything the buffer holds now (idle, shutdown) without starting a new segment."""
        return self._close_deletion() + self._full_pass()

    # ------------------------------------------------------------------ editing

    def _previous_word_length(self) -> int:
        text = self._text
        i = len(text)
        while i > 0 and not text[i - 1].isalnum():
            i -= 1
        while i > 0 and text[i - 1].isalnum():
            i -= 1
        return len(text) - i

    def _delete(self, count: int) -> None:
        if count <= 0 or not self._text:
            return
        if self._before_deletion is None:
            self._before_deletion = self._text
        self._text = self._text[:-count]

    def _close_deletion(self) -> list[Match]:
        """Scan the text as it stood before a run of deletions and report hits that touch the deleted part."""
        before = self._before_deletion
        if before is None:
            return []
        self._before_deletion = None
        kept = len(self._text)
        self.deleted.append(before[kept:])
        compiled = self._engine.compiled
        lo = self._window_start(before, kept, self._phrase_reach() + _CONTEXT_REACH_CHARS)
        out: list[Match] = []
        for hit in compiled.find(before[lo:], final=True):
            if hit.end + lo <= kept:
                continue
            rule_id = compiled.rules[hit.rule].id
            start = hit.start + lo
            if (rule_id, "typed", start) in self._reported or (rule_id, "deleted", start) in self._reported:
                continue
            self._reported.add((rule_id, "deleted", start))
            out.append(make_match(compiled, hit, before[lo:], "deleted", lo))
        return out

    def _trim(self) -> None:
        cut = len(self._text) - KEEP_ON_TRIM
        self._text = self._text[cut:]
        self._reported = {(r, s, start - cut) for r, s, start in self._reported if start >= cut}

    # ------------------------------------------------------------------ scanning

    def _window_start(self, text: str, end: int, reach: int) -> int:
        """Start, at a word start, of a window reaching `reach` characters back from `end`."""
        lo = max(0, end - reach)
        if lo > 0:
            space = text.find(" ", lo, end)
            lo = space + 1 if space != -1 else lo
        return lo

    def _phrase_reach(self) -> int:
        # Twice the longest phrase: disguise ("s u i c i d e", zero-width characters) can double its length.
        return 2 * self._engine.compiled.max_phrase_chars + 8

    def _word_end_reach(self) -> int:
        # One phrase and a little: keeps the per-word cost low. A phrase stretched longer than this by disguise is
        # still found, by the full pass at Enter or at the end of the segment.
        return self._engine.compiled.max_phrase_chars + 16

    def _report(self, text: str, lo: int, final: bool, substring_only: bool = False) -> list[Match]:
        compiled = self._engine.compiled
        window = text[lo:]
        out: list[Match] = []
        for hit in compiled.find(window, final=final, substring_only=substring_only):
            key = (compiled.rules[hit.rule].id, "typed", hit.start + lo)
            if key in self._reported:
                continue
            self._reported.add(key)
            out.append(make_match(compiled, hit, window, "typed", lo))
        return out

    def _scan_tail(self) -> list[Match]:
        """After a letter: only substring rules can complete inside a word, so scan just enough for them."""
        text = self._text
        return self._report(text, max(0, len(text) - self._engine.compiled.max_tail_chars - 8), final=False,
                            substring_only=True)

    def _scan_recent(self, final: bool) -> list[Match]:
        """After a word end: phrases that end in the word just finished. A context partner further back than the
        window is found by the full pass at Enter or the end of the segment."""
        text = self._text
        return self._report(text, self._window_start(text, len(text), self._word_end_reach()), final)

    def _full_pass(self) -> list[Match]:
        return self._report(self._text, 0, final=True)

    def _end_segment(self) -> list[Match]:
        found = self._full_pass()
        self._text = ""
        self._reported = set()
        self.deleted = []
        return found
