"""One Aho-Corasick automaton per (library, profile) and the rule logic applied to its raw hits.

Every phrase is stored in the automaton in up to four forms (as folded, with spaces removed for joined single
letters, with repeats collapsed, and both); allow-list and context phrases sit in the same automaton, so a text is
walked once per variant. Word boundaries, allow-lists, elongation and context rules are checked on the hits after.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import ahocorasick

from agent.detect.normalise import Folded, Variants, collapse_repeats, is_word_char, phrase_key, variants
from signatures.schema import BANDS, Library, Rule

# Forms a key was stored in.
NORMAL, COMPACT, COLLAPSED, COMPACT_COLLAPSED = 1, 2, 4, 8
# What an automaton entry stands for.
RULE, ALLOW_GLOBAL, ALLOW_RULE, CONTEXT = 0, 1, 2, 3

# Confidence per variant: the more we had to undo, the less sure we are the writer meant it.
CONFIDENCE_PLAIN = 1.0
CONFIDENCE_LOOKALIKE = 0.9
CONFIDENCE_LEET = 0.85
CONFIDENCE_JOINED = 0.75
CONFIDENCE_COLLAPSED = 0.7


@dataclass(frozen=True)
class Hit:
    """A rule hit in original-text offsets."""

    rule: int
    start: int
    end: int
    confidence: float


@dataclass(frozen=True)
class _VariantHit:
    kind: int
    index: int
    start: int  # inclusive, in variant positions
    end: int  # inclusive


class CompiledLibrary:
    """A Library reduced to one age band and compiled into an automaton; immutable once built."""

    def __init__(self, library: Library, profile: str):
        if profile not in BANDS:
            raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(BANDS)}")
        self.library = library
        self.profile = profile
        self.version = library.version
        self.rules: tuple[Rule, ...] = library.rules_for(profile)
        self.has_substring_rules = any(r.mode == "substring" for r in self.rules)
        self.max_phrase_chars = 1
        self.automaton = self._build()

    def _build(self) -> ahocorasick.Automaton:
        table: dict[str, dict[tuple[int, int], int]] = defaultdict(dict)

        def add(phrase: str, kind: int, index: int) -> None:
            key = phrase_key(phrase)
            if not key:
                return
            self.max_phrase_chars = max(self.max_phrase_chars, len(key))
            compact = key.replace(" ", "")
            for form_key, form in ((key, NORMAL), (compact, COMPACT), (collapse_repeats(key), COLLAPSED),
                                   (collapse_repeats(compact), COMPACT_COLLAPSED)):
                entries = table[form_key]
                entries[(kind, index)] = entries.get((kind, index), 0) | form

        for index, rule in enumerate(self.rules):
            for phrase in rule.phrases:
                add(phrase, RULE, index)
            for phrase in rule.allow:
                add(phrase, ALLOW_RULE, index)
            if rule.context is not None:
                for phrase in rule.context.any:
                    add(phrase, CONTEXT, index)
        for index, phrase in enumerate(self.library.allow):
            add(phrase, ALLOW_GLOBAL, index)

        automaton = ahocorasick.Automaton()
        for key, entries in table.items():
            automaton.add_word(key, (len(key), tuple((k, i, f) for (k, i), f in entries.items())))
        automaton.make_automaton()
        return automaton

    # ------------------------------------------------------------------ matching

    def find(self, text: str, final: bool = True) -> list[Hit]:
        """Rule hits in text. With final=False the end of text may still grow, so a word-mode hit touching it waits."""
        if not text:
            return []
        v: Variants = variants(text)
        hits: list[Hit] = []
        hits += self._match(v.base, (NORMAL,), final, CONFIDENCE_PLAIN)
        if v.leet is not None:
            hits += self._match(v.leet, (NORMAL,), final, CONFIDENCE_LEET)
        if v.joined is not None:
            hits += self._match(v.joined, (NORMAL, COMPACT), final, CONFIDENCE_JOINED)
        if v.collapsed is not None:
            hits += self._match(v.collapsed, (COLLAPSED,), final, CONFIDENCE_COLLAPSED)
        return self._most_specific(_best_per_rule(hits))

    def _most_specific(self, hits: list[Hit]) -> list[Hit]:
        """Drop a hit lying inside a longer hit of another rule at least as severe: "kill myself" is not violence."""
        rules = self.rules
        return [h for h in hits if not any(
            o.rule != h.rule and o.start <= h.start and h.end <= o.end and o.end - o.start > h.end - h.start
            and rules[o.rule].severity >= rules[h.rule].severity for o in hits)]

    def _match(self, folded: Folded, forms: tuple[int, ...], final: bool, confidence: float) -> list[Hit]:
        text = folded.text
        if not text:
            return []
        last = len(text) - 1
        accepted = 0
        for form in forms:
            accepted |= form
        joined = COMPACT in forms
        collapsed = COLLAPSED in forms
        rules = self.rules
        raw: list[_VariantHit] = []
        for end, (length, entries) in self.automaton.iter(text):
            start = end - length + 1
            bounded = (start == 0 or not is_word_char(text[start - 1])) and (
                end == last or not is_word_char(text[end + 1]))
            open_end = end == last and not final
            for kind, index, key_forms in entries:
                if not key_forms & accepted:
                    continue
                if joined and not key_forms & NORMAL and not _inside_run(folded.runs, start, end):
                    continue  # "selfharm" stands for "self harm" only where single letters were joined
                if collapsed and kind == RULE and not any(p in folded.elongated for p in range(start, end + 1)):
                    continue  # without a real elongation, "shot" must not read as "shoot"
                word_mode = kind == CONTEXT or (kind == RULE and rules[index].mode == "word")
                if word_mode and (not bounded or open_end):
                    continue
                raw.append(_VariantHit(kind, index, start, end))
        if not raw:
            return []
        return self._apply_rules(folded, raw, confidence)

    def _apply_rules(self, folded: Folded, raw: list[_VariantHit], confidence: float) -> list[Hit]:
        rules = self.rules
        global_allow = [h for h in raw if h.kind == ALLOW_GLOBAL]
        rule_allow = [h for h in raw if h.kind == ALLOW_RULE]
        context = [h for h in raw if h.kind == CONTEXT]
        candidates = [
            h for h in raw if h.kind == RULE
            and not any(_overlap(h, a) for a in global_allow)
            and not any(a.index == h.index and _overlap(h, a) for a in rule_allow)
        ]
        text = folded.text
        out: list[Hit] = []
        for h in candidates:
            rule = rules[h.index]
            if rule.context is not None and not self._context_met(text, h, rule, candidates, context):
                continue
            conf = confidence
            if conf == CONFIDENCE_PLAIN and any(p in folded.disguised for p in range(h.start, h.end + 1)):
                conf = CONFIDENCE_LOOKALIKE
            out.append(Hit(h.index, folded.starts[h.start], folded.ends[h.end], conf))
        return out

    def _context_met(self, text: str, hit: _VariantHit, rule: Rule, candidates: list[_VariantHit],
                     context: list[_VariantHit]) -> bool:
        ctx = rule.context
        assert ctx is not None
        within = ctx.within
        for c in context:
            if c.index == hit.index and not _overlap(c, hit) and _word_distance(text, hit, c) <= within:
                return True
        if ctx.any and not ctx.categories:
            return False
        categories = ctx.categories or (rule.category,)
        for other in candidates:
            if other is hit or (other.index == hit.index and _overlap(other, hit)):
                continue
            if self.rules[other.index].category in categories and _word_distance(text, hit, other) <= within:
                return True
        return False


def _overlap(a: _VariantHit, b: _VariantHit) -> bool:
    return a.start <= b.end and b.start <= a.end


def _inside_run(runs: tuple[tuple[int, int], ...], start: int, end: int) -> bool:
    return any(rs <= start and end < re_ for rs, re_ in runs)


def _word_distance(text: str, a: _VariantHit, b: _VariantHit) -> int:
    """How many word gaps separate two hits (0 if they overlap, 1 if adjacent words)."""
    if _overlap(a, b):
        return 0
    first, second = (a, b) if a.end < b.start else (b, a)
    return text.count(" ", first.end, second.start)


def _best_per_rule(hits: list[Hit]) -> list[Hit]:
    """One hit per rule per stretch of text: the most confident, then the longest."""
    kept: list[Hit] = []
    for h in sorted(hits, key=lambda h: (-h.confidence, h.start - h.end, h.start)):
        if not any(k.rule == h.rule and k.start < h.end and h.start < k.end for k in kept):
            kept.append(h)
    kept.sort(key=lambda h: (h.start, h.end, h.rule))
    return kept
