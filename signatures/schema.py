"""The keyword library schema: what a rule is, and the checks every library passes before anything uses it.

Pure data and validation, no I/O: the loader (TOML files) and the bundle reader (signed JSON) both build a
`Library` through `library_from_documents`, so a bundle can never hold a rule a file could not.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1

CATEGORIES: tuple[str, ...] = (
    "child-sexual-abuse", "terrorism", "bullying", "grooming", "discrimination", "drugs", "extremism",
    "gambling", "pornography", "self-harm", "suicide", "violence", "filter-bypass", "profanity",
)
BANDS: tuple[str, ...] = ("primary", "secondary", "staff")
MODES: tuple[str, ...] = ("word", "substring")
ALLOW_CATEGORY = "allow"
DEFAULT_CONTEXT_WITHIN = 8
MAX_CONTEXT_WITHIN = 50

_LIBRARY_KEYS = {"category", "schema", "description"}
_RULE_KEYS = {"id", "phrases", "severity", "bands", "lang", "mode", "context", "allow", "note"}
_CONTEXT_KEYS = {"any", "categories", "within"}
_ALLOW_KEYS = {"phrases", "note"}


class LibraryError(Exception):
    """A keyword library (file or bundle) is malformed; the message starts with `where:line:`."""


@dataclass(frozen=True)
class Context:
    """Raise the rule only if one of `any` phrases or a hit of `categories` occurs within `within` words."""

    any: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    within: int = DEFAULT_CONTEXT_WITHIN


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    phrases: tuple[str, ...]
    severity: int
    note: str
    bands: tuple[str, ...] = BANDS
    lang: str = "en"
    mode: str = "word"
    context: Context | None = None
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class Library:
    """Every rule of every category plus the global allow-list; immutable so engines can share it across threads."""

    rules: tuple[Rule, ...]
    allow: tuple[str, ...] = ()
    descriptions: Mapping[str, str] = field(default_factory=dict)
    version: str = "unversioned"

    def rules_for(self, band: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if band in r.bands)


def has_matchable_text(phrase: str) -> bool:
    """True if the phrase keeps something the engine matches on: a letter, a digit, or a non-ASCII currency sign or
    emoji (each a word of its own, see agent/detect/normalise.py). Other punctuation only separates words."""
    folded = unicodedata.normalize("NFKC", phrase).casefold()
    return any(c.isalnum() or (not c.isascii() and unicodedata.category(c) in ("Sc", "So")) for c in folded)


@dataclass
class _Checker:
    """Turns a problem into `where:line: message`; `locate` finds the line of a rule id in the raw source."""

    where: str
    locate: Callable[[str | None], int]

    def fail(self, message: str, rule_id: str | None = None) -> LibraryError:
        return LibraryError(f"{self.where}:{self.locate(rule_id)}: {message}")


def _string_list(value: Any, what: str, check: _Checker, rule_id: str | None, *, required: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise check.fail(f"{what} must be a list of strings", rule_id)
    if required and not value:
        raise check.fail(f"{what} must not be empty", rule_id)
    for v in value:
        if not has_matchable_text(v):
            raise check.fail(f"{what} entry {v!r} has no letters or digits to match", rule_id)
    return tuple(value)


def _context(value: Any, check: _Checker, rule_id: str) -> Context:
    if not isinstance(value, dict):
        raise check.fail("context must be a table like { any = [...], categories = [...], within = 8 }", rule_id)
    unknown = sorted(set(value) - _CONTEXT_KEYS)
    if unknown:
        raise check.fail(f"unknown context key {unknown[0]!r} (allowed: any, categories, within)", rule_id)
    any_phrases = _string_list(value.get("any", []), "context.any", check, rule_id, required=False)
    categories = value.get("categories", [])
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise check.fail("context.categories must be a list of category ids", rule_id)
    for c in categories:
        if c not in CATEGORIES:
            raise check.fail(f"context.categories: unknown category {c!r}", rule_id)
    within = value.get("within", DEFAULT_CONTEXT_WITHIN)
    if isinstance(within, bool) or not isinstance(within, int) or not 1 <= within <= MAX_CONTEXT_WITHIN:
        raise check.fail(f"context.within must be a whole number of words from 1 to {MAX_CONTEXT_WITHIN}", rule_id)
    return Context(any=any_phrases, categories=tuple(categories), within=within)


def _rule(raw: Any, category: str, check: _Checker) -> Rule:
    if not isinstance(raw, dict):
        raise check.fail("each [[rule]] must be a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise check.fail("rule has no id")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise check.fail(f"rule {rule_id}: unknown key {unknown[0]!r}", rule_id)
    if not rule_id.startswith(category + ".") or len(rule_id) == len(category) + 1:
        raise check.fail(f"rule id {rule_id!r} must start with {category + '.'!r}", rule_id)
    phrases = _string_list(raw.get("phrases"), f"rule {rule_id}: phrases", check, rule_id, required=True)
    severity = raw.get("severity")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise check.fail(f"rule {rule_id}: severity must be a whole number from 1 to 5", rule_id)
    bands = raw.get("bands", list(BANDS))
    if not isinstance(bands, list) or not bands or any(b not in BANDS for b in bands):
        raise check.fail(f"rule {rule_id}: bands must be a non-empty list of {', '.join(BANDS)}", rule_id)
    lang = raw.get("lang", "en")
    if not isinstance(lang, str) or len(lang) != 2 or not lang.isascii() or not lang.isalpha():
        raise check.fail(f"rule {rule_id}: lang must be a two-letter ISO 639-1 code", rule_id)
    mode = raw.get("mode", "word")
    if mode not in MODES:
        raise check.fail(f"rule {rule_id}: mode must be one of {', '.join(MODES)}", rule_id)
    note = raw.get("note")
    if not isinstance(note, str) or not note.strip():
        raise check.fail(f"rule {rule_id}: note is required (say why the rule exists)", rule_id)
    context = _context(raw["context"], check, rule_id) if "context" in raw else None
    allow = _string_list(raw.get("allow", []), f"rule {rule_id}: allow", check, rule_id, required=False)
    return Rule(id=rule_id, category=category, phrases=phrases, severity=severity, note=note,
                bands=tuple(b for b in BANDS if b in bands), lang=lang.lower(), mode=mode, context=context,
                allow=allow)


def _header(doc: Mapping[str, Any], check: _Checker, expected_category: str | None) -> tuple[str, str]:
    header = doc.get("library")
    if not isinstance(header, dict):
        raise check.fail("missing [library] table")
    unknown = sorted(set(header) - _LIBRARY_KEYS)
    if unknown:
        raise check.fail(f"[library]: unknown key {unknown[0]!r}")
    category = header.get("category")
    if category != ALLOW_CATEGORY and category not in CATEGORIES:
        raise check.fail(f"[library]: unknown category {category!r}")
    if expected_category is not None and category != expected_category:
        raise check.fail(f"[library]: category {category!r} must equal the file name {expected_category!r}")
    if header.get("schema") != SCHEMA_VERSION:
        raise check.fail(f"[library]: schema must be {SCHEMA_VERSION}")
    description = header.get("description", "")
    if not isinstance(description, str):
        raise check.fail("[library]: description must be a string")
    return category, description


def parse_document(doc: Mapping[str, Any], where: str, locate: Callable[[str | None], int],
                   expected_category: str | None = None) -> tuple[str, str, list[Rule], list[str]]:
    """Validate one library document; returns (category, description, rules, allow phrases)."""
    check = _Checker(where, locate)
    category, description = _header(doc, check, expected_category)
    allowed_tables = {"library", "allow"} if category == ALLOW_CATEGORY else {"library", "rule"}
    unknown = sorted(set(doc) - allowed_tables)
    if unknown:
        raise check.fail(f"unknown table {unknown[0]!r} (allowed here: {', '.join(sorted(allowed_tables))})")
    if category == ALLOW_CATEGORY:
        entries = doc.get("allow", [])
        if not isinstance(entries, list):
            raise check.fail("allow must be [[allow]] tables")
        phrases: list[str] = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise check.fail("each [[allow]] must be a table")
            extra = sorted(set(entry) - _ALLOW_KEYS)
            if extra:
                raise check.fail(f"[[allow]]: unknown key {extra[0]!r}")
            phrases.extend(_string_list(entry.get("phrases"), "[[allow]] phrases", check, None, required=True))
        return category, description, [], phrases
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list):
        raise check.fail("rules must be written as [[rule]] tables")
    return category, description, [_rule(r, category, check) for r in raw_rules], []


def assemble(parsed: Iterable[tuple[str, Callable[[str | None], int], tuple[str, str, list[Rule], list[str]]]],
             version: str) -> Library:
    """Join validated documents into one Library, rejecting ids used twice anywhere in the set."""
    seen: dict[str, str] = {}
    rules: list[Rule] = []
    allow: list[str] = []
    descriptions: dict[str, str] = {}
    for where, locate, (category, description, doc_rules, doc_allow) in parsed:
        if category != ALLOW_CATEGORY:
            if category in descriptions:
                raise LibraryError(f"{where}:1: category {category!r} is defined twice")
            descriptions[category] = description
        for rule in doc_rules:
            if rule.id in seen:
                raise LibraryError(f"{where}:{locate(rule.id)}: duplicate rule id {rule.id!r} "
                                   f"(first defined in {seen[rule.id]})")
            seen[rule.id] = where
            rules.append(rule)
        allow.extend(doc_allow)
    if not rules:
        raise LibraryError("library set has no rules")
    return Library(rules=tuple(rules), allow=tuple(allow), descriptions=descriptions, version=version)


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """The TOML-shaped dict of a rule (defaults included), used by the bundle so it round-trips through parsing."""
    out: dict[str, Any] = {"id": rule.id, "phrases": list(rule.phrases), "severity": rule.severity,
                           "bands": list(rule.bands), "lang": rule.lang, "mode": rule.mode, "note": rule.note}
    if rule.context is not None:
        out["context"] = {"any": list(rule.context.any), "categories": list(rule.context.categories),
                          "within": rule.context.within}
    if rule.allow:
        out["allow"] = list(rule.allow)
    return out
