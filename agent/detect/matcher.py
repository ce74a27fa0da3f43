"""Aho-Corasick automata per (library, profile) and the rule logic applied to their raw hits.

Every phrase is stored in up to four forms (as folded, with spaces removed for joined single letters, with repeats
collapsed, and both). Rule phrases, allow/context phrases and the per-letter tail set (substring rules and allows)
are separate automata over one shared table of keys, so ordinary text, which hits no rule, costs one walk per
variant. Word boundaries, allow-lists, elongation and context rules are checked on the hits after.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import chain

import ahocorasick_rs

from agent.detect.normalise import Folded, Variants, collapse_repeats, fold, is_word_char, phrase_key, variants
from signatures.schema import BANDS, Library, Rule

# Forms a key was stored in.
NORMAL, COMPACT, COLLAPSED, COMPACT_COLLAPSED = 1, 2, 4, 8
# Phrases are also stored with their spaces removed, for letters spaced out one by one ("k i l l m y s e l f"),
# only up to this length: nobody spaces out a long sentence, and every stored form costs memory.
MAX_COMPACT_CHARS = 16
# What an automaton entry stands for.
RULE, ALLOW_GLOBAL, ALLOW_RULE, CONTEXT = 0, 1, 2, 3
# An entry is one int: rule/allow index, then kind (2 bits), then forms (4 bits).
_FORM_BITS = 4
_FORM_MASK = 15
_KIND_SHIFT = 6
# Forms some variant of the text is matched in by `find`.
_WALKED_FORMS = NORMAL | COMPACT | COLLAPSED

# Confidence per variant: the more we had to undo, the less sure we are the writer meant it.
CONFIDENCE_PLAIN = 1.0
CONFIDENCE_LOOKALIKE = 0.9
CONFIDENCE_LEET = 0.85
CONFIDENCE_JOINED = 0.75
CONFIDENCE_COLLAPSED = 0.7


class _Walk:
    """One Aho-Corasick automaton over some of the library's keys, reporting (end, key id) like a trie walk.

    ahocorasick_rs (the Rust aho-corasick crate) in its contiguous-NFA form keeps the ~350,000 states of the shipped
    libraries in ~3 MB; a pointer-per-node trie (pyahocorasick) took ~16 MB, most of the session helper's memory.
    With `prefixes`, the keys are also kept sorted for "which keys could this typed text still become" questions.
    """

    def __init__(self, keys: list[str], key_ids: list[int], prefixes: bool = False):
        self._count = len(keys)
        self._ids = array("L", key_ids)
        self._automaton = ahocorasick_rs.AhoCorasick(
            keys, matchkind=ahocorasick_rs.MATCHKIND_STANDARD, store_patterns=False,
            implementation=ahocorasick_rs.Implementation.ContiguousNFA) if keys else None
        if prefixes:
            order = sorted(range(len(keys)), key=keys.__getitem__)
            self._sorted_keys = [keys[i] for i in order]
            self._sorted_ids = array("L", (key_ids[i] for i in order))
        else:
            self._sorted_keys, self._sorted_ids = [], array("L")

    def __len__(self) -> int:
        return self._count

    def iter(self, text: str) -> list[tuple[int, int]]:
        """(end, key id) of every occurrence of every key in text, overlapping ones included; end is inclusive."""
        if self._automaton is None:
            return []
        ids = self._ids
        return [(end - 1, ids[index]) for index, _start, end in
                self._automaton.find_matches_as_indexes(text, overlapping=True)]

    def keys_starting(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, key id) of every key that begins with prefix (the key itself included)."""
        keys = self._sorted_keys
        i = bisect_left(keys, prefix)
        while i < len(keys) and keys[i].startswith(prefix):
            yield keys[i], self._sorted_ids[i]
            i += 1


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
        self.profile = profile
        self.version = library.version
        self.rules: tuple[Rule, ...] = library.rules_for(profile)
        self.has_substring_rules = any(r.mode == "substring" for r in self.rules)
        self.max_phrase_chars = 1
        self.max_tail_chars = 1  # longest substring-mode or allow key: what a per-letter tail scan must cover
        self._build(library.allow)
        # Once compiled, a rule's phrases and allows live in the automata: keeping the texts too would cost the
        # session helper ~3 MB for as long as the pupil is logged on. Matches need only the rule's other fields.
        self.rules = tuple(replace(r, phrases=(), allow=()) for r in self.rules)
        self.empty = len(self.rule_automaton) == 0 and not self._joined_hashes  # no rule for this band

    def _build(self, global_allow: tuple[str, ...]) -> None:
        # key -> packed entry, or a list of them when phrases of several rules fold to the same key. Plain ints
        # rather than tuples keep a 20,000-rule library small while it compiles.
        table: dict[str, int | list[int]] = {}

        def put(key: str, packed: int) -> None:
            current = table.get(key)
            if current is None:
                table[key] = packed
            elif isinstance(current, int):
                table[key] = current | packed if current >> _FORM_BITS == packed >> _FORM_BITS else [current, packed]
            else:
                for j, entry in enumerate(current):
                    if entry >> _FORM_BITS == packed >> _FORM_BITS:
                        current[j] = entry | packed
                        return
                current.append(packed)

        def add(phrase: str, kind: int, index: int) -> None:
            key = phrase_key(phrase)
            if not key:
                return
            self.max_phrase_chars = max(self.max_phrase_chars, len(key))
            if (kind == RULE and self.rules[index].mode == "substring") or kind in (ALLOW_GLOBAL, ALLOW_RULE):
                self.max_tail_chars = max(self.max_tail_chars, len(key))
            head = (index << _KIND_SHIFT) | (kind << _FORM_BITS)
            put(key, head | NORMAL)
            put(collapse_repeats(key), head | COLLAPSED)
            compact = key.replace(" ", "")
            if compact == key or len(compact) <= MAX_COMPACT_CHARS:
                put(compact, head | COMPACT)
                put(collapse_repeats(compact), head | COMPACT_COLLAPSED)

        for index, rule in enumerate(self.rules):
            for phrase in rule.phrases:
                add(phrase, RULE, index)
            for phrase in rule.allow:
                add(phrase, ALLOW_RULE, index)
            if rule.context is not None:
                for phrase in rule.context.any:
                    add(phrase, CONTEXT, index)
        for index, phrase in enumerate(global_allow):
            add(phrase, ALLOW_GLOBAL, index)

        # Three walks over shared per-key arrays: rule phrases (every text), allow and context phrases (only once a
        # rule has hit, which most text never does) and, for letter-by-letter typing, substring rules with allows.
        walks: dict[str, tuple[list[str], list[int]]] = {"rule": ([], []), "aux": ([], []), "tail": ([], [])}
        key_len = array("H")
        entry_start = array("L")
        entries = array("Q")
        joined_only: list[tuple[int, int, str]] = []  # (hash, key id, key) of rule keys matched only where joined
        # Popped, not iterated: each key's table entry is freed as it is filed, so the table never exists twice.
        for key_id in range(len(table)):
            key, packed = table.popitem()
            group = [packed] if isinstance(packed, int) else packed
            # No text variant is walked with COMPACT_COLLAPSED accepted (see `find`), so a key stored only in that
            # form can never be matched by the rule or aux walks: leaving it out of them saves ~22,000 states.
            # The tail walk keeps every key, because `_may_still_change` looks keys up regardless of form.
            kinds = {(e >> _FORM_BITS) & 3 for e in group if e & _WALKED_FORMS}
            if any((e >> _FORM_BITS) & 3 == RULE and e & (NORMAL | COLLAPSED) for e in group):
                walks["rule"][0].append(key)
                walks["rule"][1].append(key_id)
            elif RULE in kinds:
                # Only ever accepted inside a run of joined single letters: looked up there (see _joined_in_runs)
                # rather than kept in the automaton every text walks, which saves ~80,000 states.
                joined_only.append((hash(key), key_id, key))
            if kinds - {RULE}:
                walks["aux"][0].append(key)
                walks["aux"][1].append(key_id)
            if any((e >> _FORM_BITS) & 3 in (ALLOW_GLOBAL, ALLOW_RULE) for e in group) or any(
                    (e >> _FORM_BITS) & 3 == RULE and self.rules[e >> _KIND_SHIFT].mode == "substring" for e in group):
                walks["tail"][0].append(key)
                walks["tail"][1].append(key_id)
            key_len.append(len(key))
            entry_start.append(len(entries))
            entries.extend(group)
        entry_start.append(len(entries))
        joined_only.sort()
        self._joined_hashes = array("q", (h for h, _, _ in joined_only))
        self._joined_ids = array("L", (key_id for _, key_id, _ in joined_only))
        self._joined_keys = "".join(key for _, _, key in joined_only)  # the keys themselves, to rule out collisions
        self._joined_offsets = array("L", [0])
        for _, _, key in joined_only:
            self._joined_offsets.append(self._joined_offsets[-1] + len(key))
        self._joined_max_chars = max((len(key) for _, _, key in joined_only), default=0)
        self.rule_automaton = _Walk(*walks.pop("rule"))
        self.aux_automaton = _Walk(*walks.pop("aux"))
        self.tail_automaton = _Walk(*walks.pop("tail"), prefixes=True)
        self._key_len, self._entry_start, self._entries = key_len, entry_start, entries

    # ------------------------------------------------------------------ matching

    def find(self, text: str, final: bool = True, substring_only: bool = False) -> list[Hit]:
        """Rule hits in text. With final=False the end of text may still grow, so a word-mode hit touching it waits.

        substring_only is the per-keystroke tail scan: the tail may start inside a word, so only substring-mode
        rules can be judged there, and only in the base fold (disguised forms wait for the word-end pass).
        """
        if not text or self.empty:
            return []
        if substring_only:
            return _best_per_rule(self._match(fold(text), (NORMAL,), final, CONFIDENCE_PLAIN, substring_only=True))
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
        """Drop a hit lying inside a longer hit that says more: of its own category and at least as severe ("self
        harm" inside "i have been self harming"), or of another category and more severe ("kill" inside "kill
        myself" is not violence). Equally severe hits of different categories both stay: "you're a retard" is
        bullying and discrimination."""
        if len(hits) < 2:
            return hits
        rules = self.rules

        def supersedes(outer: Hit, inner: Hit) -> bool:
            if outer.rule == inner.rule or not (outer.start <= inner.start and inner.end <= outer.end):
                return False
            if outer.end - outer.start <= inner.end - inner.start:
                return False
            o, i = rules[outer.rule], rules[inner.rule]
            return o.severity >= i.severity if o.category == i.category else o.severity > i.severity

        return [h for h in hits if not any(supersedes(o, h) for o in hits)]

    def _match(self, folded: Folded, forms: tuple[int, ...], final: bool, confidence: float,
               substring_only: bool = False) -> list[Hit]:
        if not folded.text:
            return []
        if substring_only:
            raw = self._walk(self.tail_automaton.iter(folded.text), folded, forms, final, rules=True, aux=True,
                             substring_only=True)
            raw = [h for h in raw if h.kind != RULE or not self._may_still_change(folded.text, h)]
        else:
            found: Iterable[tuple[int, int]] = self.rule_automaton.iter(folded.text)
            if COMPACT in forms and folded.runs and self._joined_hashes:
                found = chain(found, self._joined_in_runs(folded))
            raw = self._walk(found, folded, forms, final, rules=True, aux=False)
            if raw and len(self.aux_automaton):
                raw += self._walk(self.aux_automaton.iter(folded.text), folded, forms, final, rules=False, aux=True)
            if raw and not final:
                raw = [h for h in raw if h.kind != RULE or not self._allow_may_follow(folded.text, h)]
        if not any(h.kind == RULE for h in raw):
            return []
        return self._apply_rules(folded, raw, confidence)

    def _joined_in_runs(self, folded: Folded) -> Iterator[tuple[int, int]]:
        """(end, key id) of every joined-only rule key lying inside a run of joined single letters."""
        text = folded.text
        hashes, ids, keys, offsets = self._joined_hashes, self._joined_ids, self._joined_keys, self._joined_offsets
        count = len(hashes)
        for run_start, run_end in folded.runs:
            for end in range(run_start, run_end):
                for start in range(max(run_start, end + 1 - self._joined_max_chars), end + 1):
                    piece = text[start:end + 1]
                    digest = hash(piece)
                    i = bisect_left(hashes, digest)
                    while i < count and hashes[i] == digest:
                        if keys[offsets[i]:offsets[i + 1]] == piece:
                            yield end, ids[i]
                        i += 1

    def _walk(self, found: Iterable[tuple[int, int]], folded: Folded, forms: tuple[int, ...], final: bool, *,
              rules: bool, aux: bool, substring_only: bool = False) -> list[_VariantHit]:
        """Raw hits of the wanted kinds (rule entries, allow/context entries) with boundaries and forms checked;
        `found` gives (end, key id) pairs, from an automaton's walk of folded.text or from _joined_in_runs."""
        text = folded.text
        last = len(text) - 1
        accepted = 0
        for form in forms:
            accepted |= form
        joined = COMPACT in forms
        collapsed = COLLAPSED in forms
        rule_list = self.rules
        key_len, entry_start, all_entries = self._key_len, self._entry_start, self._entries
        raw: list[_VariantHit] = []
        for end, key_id in found:
            start = end - key_len[key_id] + 1
            bounded = (start == 0 or not is_word_char(text[start - 1])) and (
                end == last or not is_word_char(text[end + 1]))
            open_end = end == last and not final
            for packed in all_entries[entry_start[key_id]:entry_start[key_id + 1]]:
                key_forms = packed & _FORM_MASK
                if not key_forms & accepted:
                    continue
                kind = (packed >> _FORM_BITS) & 3
                if not (rules if kind == RULE else aux):
                    continue
                index = packed >> _KIND_SHIFT
                if substring_only and kind in (RULE, CONTEXT) and (kind == CONTEXT or
                                                                   rule_list[index].mode != "substring"):
                    continue
                if joined and not key_forms & NORMAL and not _inside_run(folded.runs, start, end):
                    continue  # "selfharm" stands for "self harm" only where single letters were joined
                if collapsed and kind == RULE and not any(p in folded.elongated for p in range(start, end + 1)):
                    continue  # without a real elongation, "shot" must not read as "shoot"
                word_mode = kind == CONTEXT or (kind == RULE and rule_list[index].mode == "word")
                if word_mode and (not bounded or open_end):
                    continue
                raw.append(_VariantHit(kind, index, start, end))
        return raw

    def _may_still_change(self, text: str, hit: _VariantHit) -> bool:
        """While a word is being typed, could the next letters turn this substring hit into part of an allow phrase
        ("cock" on the way to "cocktail") or a longer phrase? Then it waits for the word-end pass."""
        automaton = self.tail_automaton
        for p in range(max(0, len(text) - self.max_tail_chars), hit.end + 1):
            typed = text[p:]
            for key, _key_id in automaton.keys_starting(typed):
                if len(key) > len(typed):
                    return True
        return False

    def _allow_may_follow(self, text: str, hit: _VariantHit) -> bool:
        """While text is still being typed, could the next words complete an allow phrase that would cancel this
        hit ("cut myself" on the way to "cut myself shaving")? Then the hit waits for a later pass; Enter or a
        focus change (final) decides."""
        automaton = self.tail_automaton
        if not len(automaton):
            return False
        entry_start, entries = self._entry_start, self._entries
        for start in range(max(0, len(text) - self.max_tail_chars), hit.end + 1):
            if not is_word_char(text[start]) or (start and is_word_char(text[start - 1])):
                continue  # allow phrases begin at a word
            typed = text[start:]
            for key, key_id in automaton.keys_starting(typed):
                if len(key) <= len(typed):
                    continue
                for packed in entries[entry_start[key_id]:entry_start[key_id + 1]]:
                    kind = (packed >> _FORM_BITS) & 3
                    if (kind == ALLOW_RULE and packed >> _KIND_SHIFT == hit.index) or (
                            kind == ALLOW_GLOBAL and start <= hit.start):
                        return True
        return False

    def _apply_rules(self, folded: Folded, raw: list[_VariantHit], confidence: float) -> list[Hit]:
        rules = self.rules
        candidates = [h for h in raw if h.kind == RULE]
        if len(candidates) == len(raw):
            context: list[_VariantHit] = []
        else:
            global_allow = [h for h in raw if h.kind == ALLOW_GLOBAL]
            rule_allow = [h for h in raw if h.kind == ALLOW_RULE]
            context = [h for h in raw if h.kind == CONTEXT]
            # A global allow protects an innocent word that CONTAINS a concerning one (Scunthorpe, therapist), so it
            # cancels only hits inside it: "my therapist about my cuts" must still raise. A rule's own allow is
            # written against that rule ("cut my hair" for "want to cut") and cancels any hit it overlaps.
            candidates = [
                h for h in candidates
                if not any(_inside(h, a) for a in global_allow)
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


def _inside(hit: _VariantHit, allow: _VariantHit) -> bool:
    return allow.start <= hit.start and hit.end <= allow.end


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
    if len(hits) < 2:
        return hits
    kept: list[Hit] = []
    for h in sorted(hits, key=lambda h: (-h.confidence, h.start - h.end, h.start)):
        if not any(k.rule == h.rule and k.start < h.end and h.start < k.end for k in kept):
            kept.append(h)
    kept.sort(key=lambda h: (h.start, h.end, h.rule))
    return kept
