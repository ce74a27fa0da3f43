"""Exemptions on the device: the engine skips exempted categories and rules only between start and end."""

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.detect import Engine
from agent.detect.exemptions import ExemptionError, Exemptions
from signatures.bundle import build_bundle, sign_bundle, verify_bundle, verify_bundle_with_exemptions
from signatures.loader import default_signatures_dir, load_library
from signatures.schema import LibraryError

START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(days=14)
EXTREMIST = "they want to join isis"
HISTORY_ROOM = "a" * 32


class FakeClock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _entry(**overrides):
    entry = {"id": "ex-1", "categories": ["extremism", "terrorism"], "rules": [], "agents": [HISTORY_ROOM],
             "start": START.isoformat(), "end": END.isoformat()}
    return entry | overrides


@pytest.fixture(scope="module")
def library():
    return load_library(default_signatures_dir())


def _categories(engine: Engine, text: str) -> set[str]:
    return {m.category for m in engine.scan(text)}


def test_an_exemption_suppresses_its_category_only_between_start_and_end(library):
    clock = FakeClock(START - dt.timedelta(minutes=1))
    engine = Engine.from_library(library, exemptions=Exemptions.for_agent([_entry()], HISTORY_ROOM, clock))
    flagged = _categories(Engine.from_library(library), EXTREMIST)
    assert flagged & {"extremism", "terrorism"}, "the sample must hit the exempted category without an exemption"
    assert _categories(engine, EXTREMIST) == flagged  # before the start
    clock.now = START
    assert not _categories(engine, EXTREMIST) & {"extremism", "terrorism"}
    assert "suicide" in _categories(engine, "i want to kill myself")  # other categories still raise
    clock.now = END - dt.timedelta(seconds=1)
    assert not _categories(engine, EXTREMIST) & {"extremism", "terrorism"}
    clock.now = END  # expiry is the agent's own clock: nothing from the collector is needed
    assert _categories(engine, EXTREMIST) == flagged


def test_keystroke_matches_go_through_the_same_filter(library):
    clock = FakeClock(START + dt.timedelta(hours=1))
    engine = Engine.from_library(library, exemptions=Exemptions.for_agent([_entry()], HISTORY_ROOM, clock))
    kb = engine.keystroke_buffer()
    typed = [m for ch in EXTREMIST + " " for m in kb.feed(ch)] + kb.flush()
    assert typed, "typing the sample raises matches in the keystroke buffer"
    assert not {m.category for m in engine.without_exempt(typed)} & {"extremism", "terrorism"}
    clock.now = END + dt.timedelta(days=1)
    assert {m.category for m in engine.without_exempt(typed)} & {"extremism", "terrorism"}


def test_a_rule_exemption_spares_other_rules_and_other_devices_are_not_exempt(library):
    clock = FakeClock(START + dt.timedelta(days=1))
    hit = Engine.from_library(library).scan(EXTREMIST)[0]
    entry = _entry(categories=[], rules=[hit.rule])
    mine = Engine.from_library(library, exemptions=Exemptions.for_agent([entry], HISTORY_ROOM, clock))
    other = Engine.from_library(library, exemptions=Exemptions.for_agent([entry], "b" * 32, clock))
    assert hit.rule not in {m.rule for m in mine.scan(EXTREMIST)}
    assert hit.rule in {m.rule for m in other.scan(EXTREMIST)}


@pytest.mark.parametrize("bad", [{"start": "next monday"}, {"end": "2026-03-16T08:00:00"}, {"categories": "extremism"},
                                 {"categories": [], "rules": []}])
def test_malformed_exemptions_are_refused(bad):
    with pytest.raises(ExemptionError):
        Exemptions.for_agent([_entry(**bad)], HISTORY_ROOM)


def test_bundle_carries_site_rules_and_exemptions_and_old_readers_still_load_it(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    site_rule = {"library": {"category": "bullying", "schema": 1},
                 "rule": [{"id": "bullying.site.nickname", "phrases": ["crumble face"], "severity": 3,
                           "note": "a nickname used to taunt pupils at this school"}]}
    allow = {"library": {"category": "allow", "schema": 1}, "allow": [{"phrases": ["kill the lights"]}]}
    bundle = build_bundle(default_signatures_dir(), "site-1", [site_rule, allow], [_entry()])
    signature = sign_bundle(bundle, key)
    library, exemptions = verify_bundle_with_exemptions(bundle, signature, key.public_key())
    assert "bullying.site.nickname" in {r.id for r in library.rules} and "kill the lights" in library.allow
    assert exemptions == [_entry()]
    assert verify_bundle(bundle, signature, key.public_key()).version == "site-1"
    plain = build_bundle(default_signatures_dir(), "plain-1")
    assert verify_bundle_with_exemptions(plain, sign_bundle(plain, key), key.public_key())[1] == []


def test_a_site_rule_reusing_a_shipped_id_is_refused(library):
    taken = library.rules[0]
    doc = {"library": {"category": taken.category, "schema": 1},
           "rule": [{"id": taken.id, "phrases": ["x y"], "severity": 2, "note": "n"}]}
    with pytest.raises(LibraryError, match="duplicate rule id"):
        build_bundle(default_signatures_dir(), "dup-1", [doc])
