"""Engine.scan over the fixture library: boundaries, allow-lists, disguise, context rules, profiles, matches."""

import threading

import pytest

from agent.detect import Engine, Match
from signatures.loader import load_library
from signatures.schema import Library, Rule
from tests.detect.conftest import FIXTURE_LIBRARY, rules


def test_plain_phrase_reports_everything_the_contract_names(engine):
    [m] = engine.scan("honestly I want to die now", source="typed")
    assert isinstance(m, Match)
    assert (m.category, m.severity, m.rule, m.source) == ("suicide", 4, "suicide.want-to-die", "typed")
    assert m.confidence == 1.0
    assert (m.start, m.end, m.matched) == (11, 22, "want to die")
    assert m.to_dict() == {"category": "suicide", "severity": 4, "rule": "suicide.want-to-die", "confidence": 1.0,
                           "matched": "want to die", "start": 11, "end": 22, "source": "typed"}


def test_offsets_point_at_the_text_as_typed(engine):
    text = "ok… Ｉ ＷＡＮＮＡ ＤＩＥ"
    [m] = engine.scan(text)
    assert text[m.start:m.end] == m.matched == "ＷＡＮＮＡ ＤＩＥ"


def test_word_mode_needs_whole_words(engine):
    assert engine.scan("the skill tree") == []
    assert engine.scan("killer whales") == []
    assert rules(engine.scan("i will kill")) == ["violence.kill"]


def test_substring_mode_finds_compounds(engine):
    assert rules(engine.scan("sexting again")) == ["profanity.sex-substring"]


def test_global_allow_list_cancels_overlapping_substring_hits(engine):
    assert engine.scan("we drove through Essex and Middlesex to Scunthorpe") == []
    assert engine.scan("a cocktail party") == []
    # the allow entry only cancels what it overlaps: a separate hit in the same text still counts
    assert rules(engine.scan("essex is full of sex shops")) == ["profanity.sex-substring"]


def test_rule_allow_list_is_scoped_to_its_rule(engine):
    assert engine.scan("this homework is killing me") == []
    assert engine.scan("we played cards to kill time") == []
    assert engine.scan("I watched suicide squad") == []
    assert rules(engine.scan("suicide")) == ["suicide.suicide"]


def test_lookalikes_invisible_characters_and_accents_are_seen_through(engine):
    [m] = engine.scan("ѕuісіdе")
    assert m.rule == "suicide.suicide"
    assert m.confidence < 1.0
    [m] = engine.scan("su\u200bic\u00adide")
    assert m.matched == "su\u200bic\u00adide"
    assert rules(engine.scan("I want to díé")) == ["suicide.want-to-die"]


def test_disguise_lowers_confidence_in_order(engine):
    plain = engine.scan("suicide")[0].confidence
    leet = engine.scan("$u1c1d3")[0].confidence
    spaced = engine.scan("s u i c i d e")[0].confidence
    stretched = engine.scan("suiiiiicide")[0].confidence
    assert plain > leet > spaced > stretched > 0


def test_leetspeak_does_not_touch_numbers(engine):
    assert engine.scan("i scored 5 in 2024 and 3 in 1999") == []
    [m] = engine.scan("i want to k1ll mys3lf")
    assert m.rule == "suicide.suicide"
    assert m.matched == "k1ll mys3lf"


def test_spaced_and_dotted_letters(engine):
    assert rules(engine.scan("s.e.l.f h.a.r.m")) == ["self-harm.self-harm"]
    assert rules(engine.scan("k i l l m y s e l f")) == ["suicide.suicide"]
    [m] = engine.scan("i will s u i c i d e")
    assert m.matched == "s u i c i d e"


def test_elongation_matches_only_with_real_repeats(engine):
    assert rules(engine.scan("kiiiiill")) == ["violence.kill"]
    assert rules(engine.scan("shoooooot him")) == ["violence.kill"]
    # "shot" collapses like "shoot" but nothing was stretched, so it is not a disguised "shoot"
    assert engine.scan("a flu shot") == []


def test_other_languages_match_in_their_own_script(engine):
    assert rules(engine.scan("chcę umrzeć")) == ["suicide.wyslac-list"]
    assert rules(engine.scan("أريد أن أموت")) == ["suicide.wyslac-list"]


def test_context_any_phrase_within_n_words(engine):
    assert engine.scan("i wrote a goodbye note for the leavers card") == []
    assert rules(engine.scan("my goodbye note is ready for tonight")) == ["suicide.goodbye-note"]
    assert engine.scan("goodbye note, we leave in the morning after two more weeks tonight") == []


def test_context_same_category_when_none_named(engine):
    assert engine.scan("a razor blade for the craft knife") == []
    assert rules(engine.scan("blade for self harm")) == ["self-harm.blade", "self-harm.self-harm"]


def test_context_named_category(engine):
    assert engine.scan("bring a knife to cut the cake") == []
    assert "violence.bring-knife" in rules(engine.scan("bring a knife after school"))


def test_profiles_select_rules_by_band():
    primary = Engine.from_signatures(FIXTURE_LIBRARY, profile="primary")
    secondary = Engine.from_signatures(FIXTURE_LIBRARY, profile="secondary")
    assert rules(primary.scan("you ass")) == ["profanity.ass"]
    assert secondary.scan("you ass") == []
    assert primary.scan("i cut myself") == []
    assert rules(secondary.scan("i cut myself")) == ["self-harm.cut-myself"]
    with pytest.raises(ValueError):
        Engine.from_signatures(FIXTURE_LIBRARY, profile="nursery")


def test_one_match_per_rule_per_stretch_and_separate_occurrences_kept(engine):
    found = engine.scan("suicide suicide")
    assert [(m.start, m.end) for m in found] == [(0, 7), (8, 15)]


def test_context_window_masks_contact_details(engine):
    text = "mail pupil.one@example.org or ring 07700 900123, i want to die. card 4929123412341234 pin 83921"
    [m] = engine.scan(text)
    assert "want to die" in m.context
    for secret in ("pupil.one@example.org", "07700 900123", "4929123412341234", "83921"):
        assert secret not in m.context
    assert "[email]" in m.context and "[phone]" in m.context


def test_title_source_is_carried(engine):
    [m] = engine.scan("How to kill time - Google Chrome suicide", source="title")
    assert m.source == "title"
    with pytest.raises(ValueError):
        engine.scan("x", source="clipboard")


def test_swap_library_is_used_by_the_next_scan_and_by_live_buffers(library_copy):
    engine = Engine.from_signatures(library_copy)
    kb = engine.keystroke_buffer()
    assert engine.scan("wibble") == []
    (library_copy / "bullying.toml").write_text(
        (library_copy / "bullying.toml").read_text()
        + '\n[[rule]]\nid = "bullying.wibble"\nphrases = ["wibble"]\nseverity = 2\nnote = "test"\n')
    old_version = engine.version
    engine.swap_library(load_library(library_copy))
    assert engine.version != old_version
    assert rules(engine.scan("wibble")) == ["bullying.wibble"]
    # a keystroke buffer made before the swap uses the new library too: the agent never restarts it
    found = []
    for ch in "wibble ":
        found += kb.feed(ch)
    assert rules(found) == ["bullying.wibble"]


def test_swap_while_scanning_in_other_threads_never_breaks_a_scan(library_copy):
    engine = Engine.from_signatures(library_copy)
    other = Engine.from_signatures(FIXTURE_LIBRARY)
    errors: list[BaseException] = []
    stop = threading.Event()

    def scan_loop():
        try:
            while not stop.is_set():
                assert rules(engine.scan("i want to die")) == ["suicide.want-to-die"]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=scan_loop) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(40):
        engine.swap_library(other if i % 2 else load_library(library_copy))
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors


def test_a_band_without_rules_scans_to_nothing():
    library = Library(rules=(Rule(id="suicide.staff-only", category="suicide", phrases=("x y",), severity=2,
                                  note="n", bands=("staff",)),))
    engine = Engine.from_library(library, profile="primary")
    assert engine.scan("x y") == [] and engine.scan("") == []
    kb = engine.keystroke_buffer()
    assert [m for ch in "x y " for m in kb.feed(ch)] + kb.flush() == []
    assert rules(Engine.from_library(library, profile="staff").scan("x y")) == ["suicide.staff-only"]


def test_symbol_phrases_match_as_whole_words(library_copy):
    (library_copy / "gambling.toml").write_text(
        '[library]\ncategory = "gambling"\nschema = 1\n\n[[rule]]\nid = "gambling.wager"\nphrases = ["wager"]\n'
        'severity = 2\ncontext = { any = ["£", "odds"], within = 4 }\nnote = "test"\n\n'
        '[[rule]]\nid = "gambling.pills-emoji"\nphrases = ["💊 for sale"]\nseverity = 2\nnote = "test"\n')
    engine = Engine.from_signatures(library_copy)
    assert rules(engine.scan("wager £20 on it")) == ["gambling.wager"]
    assert engine.scan("a wager of honour") == []
    assert rules(engine.scan("💊💊 for sale")) == ["gambling.pills-emoji"]


def test_a_longer_hit_supersedes_a_contained_one_only_when_it_says_more(library_copy):
    (library_copy / "discrimination.toml").write_text(
        '[library]\ncategory = "discrimination"\nschema = 1\n\n[[rule]]\nid = "discrimination.slur"\n'
        'phrases = ["slurword"]\nseverity = 2\nnote = "test"\n')
    (library_copy / "bullying.toml").write_text(
        '[library]\ncategory = "bullying"\nschema = 1\n\n[[rule]]\nid = "bullying.directed"\n'
        'phrases = ["you are a slurword"]\nseverity = 2\nnote = "test"\n')
    engine = Engine.from_signatures(library_copy)
    # equally severe, different categories: both are reported
    assert rules(engine.scan("you are a slurword")) == ["bullying.directed", "discrimination.slur"]
    # more severe, other category: "kill" (violence, 3) inside "kill myself" (suicide, 4) is dropped
    assert rules(engine.scan("i will kill myself")) == ["suicide.suicide"]


def test_global_allow_cancels_only_hits_inside_it(library_copy):
    """A global allow protects a word that contains a concerning one; it must not swallow a longer phrase around it."""
    (library_copy / "allow.toml").write_text(
        '[library]\ncategory = "allow"\nschema = 1\n\n[[allow]]\nphrases = ["therapist"]\nnote = "fixture"\n')
    (library_copy / "self-harm.toml").write_text(
        '[library]\ncategory = "self-harm"\nschema = 1\n\n'
        '[[rule]]\nid = "self-harm.fixture-disclosure"\nphrases = ["my therapist about my cuts"]\nseverity = 3\n'
        'note = "fixture"\n\n'
        '[[rule]]\nid = "self-harm.fixture-word"\nphrases = ["rapist"]\nmode = "substring"\nseverity = 3\n'
        'note = "fixture"\n')
    engine = Engine.from_signatures(library_copy, profile="secondary")
    assert rules(engine.scan("i told my therapist about my cuts")) == ["self-harm.fixture-disclosure"]
    assert rules(engine.scan("how do you spell therapist")) == []
