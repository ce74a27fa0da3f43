"""Text normalisation that keeps every character's offset back to the original text.

The base fold (NFKC + casefold, invisible format characters removed, look-alikes folded to Latin, accents stripped
from Latin letters only, every other non-word character turned into a single space) is what phrases and text are
both matched in. On top of it, more aggressive variants undo deliberate disguise: leetspeak inside tokens that
contain a letter, spaced or dotted single letters joined, elongated letters collapsed. Each variant keeps, for every
character, the [start, end) span of the original text it came from, so a match is reported on what was typed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

# Kept in the base fold (as non-word characters) because the leet variant reads them as letters.
LEET_SYMBOLS = frozenset("@$!|")
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "9": "g",
         "@": "a", "$": "s", "!": "i", "|": "l"}
# Apostrophes vanish rather than split a word, so "i'm" and "im", "don't" and "dont" are the same to a phrase.
APOSTROPHES = frozenset("'’‘ʼ`´")
# Letters without a canonical decomposition that accent stripping cannot reach.
_EXTRA_LATIN = {"ß": "ss", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d"}

_WORD, _SPACE, _MARK, _SYMBOL = 0, 1, 2, 3


def _load_confusables() -> dict[str, str]:
    table: dict[str, str] = {}
    for line in (Path(__file__).with_name("confusables.txt")).read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        code, latin = line.split("\t")[:2]
        table[chr(int(code[2:], 16))] = latin
    return table


CONFUSABLES = _load_confusables()


@dataclass(frozen=True)
class Folded:
    """A normalised text: `starts[i]`/`ends[i]` give the original span of `text[i]`."""

    text: str
    starts: list[int]
    ends: list[int]
    # Positions whose character was a look-alike, or followed an invisible character: a deliberate disguise.
    disguised: frozenset[int] = frozenset()
    # Joined variant only: (start, end) spans, end exclusive, of single letters that were joined into a word.
    runs: tuple[tuple[int, int], ...] = ()
    # Collapsed variant only: positions that stood for three or more repeats of a letter.
    elongated: frozenset[int] = frozenset()


def is_standalone_symbol(c: str) -> bool:
    """Currency signs and emoji (💊, 🔪): matchable, each a word by itself. ASCII "$" stays a leet letter."""
    return not c.isascii() and unicodedata.category(c) in ("Sc", "So")


def is_word_char(c: str) -> bool:
    return c != " " and c not in LEET_SYMBOLS


def _fold_char_uncached(ch: str) -> tuple[tuple[tuple[str, int], ...], bool, bool]:
    """(pieces, disguised, invisible) for one original character."""
    if unicodedata.category(ch) == "Cf":
        return (), False, True
    if ch in APOSTROPHES:
        return (), False, False
    if ch in LEET_SYMBOLS:
        return ((ch, _SYMBOL),), False, False
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", ch).casefold())
    pieces: list[tuple[str, int]] = []
    disguised = False
    for c in folded:
        if is_standalone_symbol(c):
            # "£10" and "bet £5" carry meaning in the symbol: it becomes a word of its own, "£ 10"
            pieces.extend(((" ", _SPACE), (c, _WORD), (" ", _SPACE)))
        elif c in CONFUSABLES:
            pieces.extend((x, _WORD) for x in CONFUSABLES[c])
            disguised = True
        elif unicodedata.category(c).startswith("M"):
            pieces.append((c, _MARK))
        elif c in _EXTRA_LATIN:
            pieces.extend((x, _WORD) for x in _EXTRA_LATIN[c])
        elif c.isalnum():
            base = unicodedata.normalize("NFD", c)
            # Strip accents from Latin letters only: Arabic, Urdu and Gurmukhi marks carry meaning.
            pieces.append((base[0] if base[0].isascii() else c, _WORD))
        elif unicodedata.category(c) == "Cf":
            continue
        else:
            pieces.append((" ", _SPACE))
    return tuple(pieces), disguised, False


_FOLD_CACHE: dict[str, tuple[tuple[tuple[str, int], ...], bool, bool]] = {}


_DROPPED = "\x00"  # marks an apostrophe in the ASCII fast path, removed with its offset
_ASCII_FOLD = str.maketrans({
    chr(i): (chr(i).lower() if chr(i).isalnum() or chr(i) in LEET_SYMBOLS
             else _DROPPED if chr(i) in APOSTROPHES else " ") for i in range(128)})
_RUN_OF_SPACES = re.compile(r" {2,}")
_NON_SPACE = re.compile(r"[^ ]+")


def _fold_ascii(text: str) -> Folded:
    """The same fold for pure ASCII text (most typing), done with C-level string operations."""
    t = text.translate(_ASCII_FOLD)
    if _DROPPED not in t and not t.startswith(" ") and not _RUN_OF_SPACES.search(t):
        n = len(t)
        return Folded(t, range(n), range(1, n + 1))  # one character each, nothing dropped
    parts: list[str] = []
    starts: list[int] = []
    prev_end = 0
    for m in _NON_SPACE.finditer(t):
        token = m.group()
        if _DROPPED in token:
            kept = [i for i in range(m.start(), m.end()) if t[i] != _DROPPED]
            if not kept:
                continue
        else:
            kept = range(m.start(), m.end())
        if starts:
            parts.append(" ")
            starts.append(prev_end)
        parts.append(token.replace(_DROPPED, ""))
        starts.extend(kept)
        prev_end = m.end()
    if starts and prev_end < len(t):  # a gap follows the last kept token (t[prev_end] is a space)
        parts.append(" ")
        starts.append(prev_end)
    return Folded("".join(parts), starts, [s + 1 for s in starts])


def fold(text: str) -> Folded:
    """The base fold: what every phrase is compiled in and every text is first matched in."""
    return _fold_ascii(text) if text.isascii() else fold_unicode(text)


def fold_unicode(text: str) -> Folded:
    """The fold, one character at a time, for any text (fold() takes a faster path for pure ASCII)."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    disguised: set[int] = set()
    after_invisible = False
    cache = _FOLD_CACHE
    for i, ch in enumerate(text):
        entry = cache.get(ch)
        if entry is None:
            entry = cache[ch] = _fold_char_uncached(ch)
        pieces, is_disguised, invisible = entry
        if invisible:
            after_invisible = bool(out)
            continue
        for c, kind in pieces:
            if kind == _SPACE:
                if out and out[-1] != " ":
                    out.append(" ")
                    starts.append(i)
                    ends.append(i + 1)
                continue
            if kind == _MARK and out and out[-1].isascii():
                ends[-1] = i + 1  # a combining accent on a Latin letter: drop it, keep its offset
                continue
            if is_disguised or after_invisible:
                disguised.add(len(out))
            out.append(c)
            starts.append(i)
            ends.append(i + 1)
        after_invisible = False
    return Folded("".join(out), starts, ends, frozenset(disguised))


def phrase_key(phrase: str) -> str:
    """A phrase as the automaton stores it: base fold, words separated by single spaces."""
    text = fold(phrase).text
    return " ".join("".join(c if is_word_char(c) else " " for c in text).split())


def collapse_repeats(key: str) -> str:
    """Runs of one letter become one letter; phrases and the collapsed variant both go through this."""
    out: list[str] = []
    for c in key:
        if out and c == out[-1] and c.isalpha():
            continue
        out.append(c)
    return "".join(out)


_LEET_NEAR_LETTER = re.compile(r"[^\W\d_][0134579@$!|]|[0134579@$!|][^\W\d_]")
_TOKEN = re.compile(r"[^ ]+")


def _leet_token(token: str) -> str:
    if not any(c.isalpha() for c in token):
        return token  # "2024" stays a number
    chars = list(token)
    for j, c in enumerate(token):
        if c not in _LEET:
            continue
        if c in LEET_SYMBOLS and not any(x.isalnum() for x in token[j + 1:]):
            continue  # "die!!" keeps its exclamation marks
        if c == "1" and ((j > 0 and token[j - 1] == "1") or (j + 1 < len(token) and token[j + 1] == "1")):
            chars[j] = "l"  # "ki11": a pair of ones reads as ll, a single one as i ("l1fe")
        else:
            chars[j] = _LEET[c]
    return "".join(chars)


def unleet(base: Folded) -> Folded | None:
    """Leetspeak read as letters inside tokens that contain a letter; None if nothing changes."""
    text = base.text
    if not _LEET_NEAR_LETTER.search(text):
        return None
    parts: list[str] = []
    last = 0
    for m in _TOKEN.finditer(text):
        parts.append(text[last:m.start()])
        parts.append(_leet_token(m.group()))
        last = m.end()
    parts.append(text[last:])
    new = "".join(parts)
    if new == text:
        return None
    # One character in, one character out: the offsets are the base's.
    return Folded(new, base.starts, base.ends, base.disguised)


_SINGLE_RUN = re.compile(r"(?<![^ ])[^ ](?: [^ ]){2,}(?![^ ])")


def _split_on_gap_change(original: str, src: Folded, start: int, end: int) -> list[tuple[int, int]]:
    """Split a run of single letters where the original separator changes: 's.e.l.f h.a.r.m' is two words."""
    pieces: list[tuple[int, int]] = []
    piece_start = start
    previous_gap: str | None = None
    for i in range(start, end - 2, 2):
        gap = original[src.ends[i]:src.starts[i + 2]]
        if previous_gap is not None and gap != previous_gap:
            pieces.append((piece_start, i + 1))
            piece_start = i + 2
            previous_gap = None
            continue
        previous_gap = gap
    pieces.append((piece_start, end))
    return [p for p in pieces if p[1] - p[0] >= 3]  # two letters at least ("m.e")


def join_single_letters(src: Folded, original: str) -> Folded | None:
    """'s u i c i d e' and 'k.i.l.l' (dots became spaces in the fold) joined into words; None if no such run."""
    text = src.text
    spans: list[tuple[int, int]] = []
    for m in _SINGLE_RUN.finditer(text):
        if sum(c.isalpha() for c in m.group()) >= 2:
            spans.extend(_split_on_gap_change(original, src, m.start(), m.end()))
    if not spans:
        return None
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    new_runs: list[tuple[int, int]] = []
    pos = 0
    for run_start_in, run_end_in in spans:
        for i in range(pos, run_start_in):
            out.append(text[i])
            starts.append(src.starts[i])
            ends.append(src.ends[i])
        run_start = len(out)
        for i in range(run_start_in, run_end_in, 2):
            c = text[i]
            out.append(_LEET.get(c, c) if not c.isalpha() else c)
            starts.append(src.starts[i])
            ends.append(src.ends[i])
        new_runs.append((run_start, len(out)))
        pos = run_end_in
    for i in range(pos, len(text)):
        out.append(text[i])
        starts.append(src.starts[i])
        ends.append(src.ends[i])
    return Folded("".join(out), starts, ends, runs=tuple(new_runs))


_ELONGATED = re.compile(r"([^\W\d_])\1\1")


def collapse_elongation(src: Folded) -> Folded | None:
    """'kiiiill' read as 'kil' (phrases are collapsed the same way); None if no letter repeats three times."""
    text = src.text
    if not _ELONGATED.search(text):
        return None
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    elongated: set[int] = set()
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        j = i + 1
        if c.isalpha():
            while j < n and text[j] == c:
                j += 1
        if j - i >= 3:
            elongated.add(len(out))
        out.append(c)
        starts.append(src.starts[i])
        ends.append(src.ends[j - 1])
        i = j
    return Folded("".join(out), starts, ends, elongated=frozenset(elongated))


@dataclass(frozen=True)
class Variants:
    base: Folded
    leet: Folded | None = None
    joined: Folded | None = None
    collapsed: Folded | None = None


def variants(text: str) -> Variants:
    """The base fold and each disguise-undoing variant that differs from it."""
    base = fold(text)
    leet = unleet(base)
    src = leet or base
    return Variants(base, leet, join_single_letters(src, text), collapse_elongation(src))
