"""The composed-buffer keystroke model: typo fixes, deleted text, segments, one report per hit."""

import pytest

from tests.detect.conftest import rules


def type_keys(kb, keys):
    found = []
    for key in keys:
        found += kb.feed(key)
    return found


def chars(text):
    return list(text)


def test_typo_fixed_with_backspace_reports_once(engine):
    kb = engine.keystroke_buffer()
    found = type_keys(kb, [*chars("i want to dei"), "backspace", "backspace", *chars("ie now"), "enter"])
    assert [(m.rule, m.source, m.matched) for m in found] == [("suicide.want-to-die", "typed", "want to die")]


def test_hit_is_reported_at_word_end_and_not_again_on_later_keys(engine):
    kb = engine.keystroke_buffer()
    assert type_keys(kb, chars("i want to die")) == []  # "die" might still become "diet"
    first = kb.feed(" ")
    assert rules(first) == ["suicide.want-to-die"]
    later = type_keys(kb, chars("so much, really")) + kb.flush() + kb.feed("enter")
    assert later == []


def test_word_that_grows_is_not_reported_early(engine):
    kb = engine.keystroke_buffer()
    assert type_keys(kb, chars("a skill")) + type_keys(kb, chars("ed job ")) + kb.feed("enter") == []


def test_substring_hit_is_reported_on_the_key_that_completes_it(engine):
    kb = engine.keystroke_buffer()
    assert type_keys(kb, chars("se")) == []
    [m] = kb.feed("x")
    assert (m.rule, m.start, m.end) == ("profanity.sex-substring", 0, 3)
    assert type_keys(kb, chars("ting ")) + kb.feed("enter") == []


def test_substring_hit_waits_while_the_word_could_still_become_an_allowed_one(engine):
    kb = engine.keystroke_buffer()
    assert type_keys(kb, [*chars("a cocktail party"), "enter"]) == []  # "cock" is never reported on the way
    kb = engine.keystroke_buffer()
    assert type_keys(kb, chars("cock")) == []  # could still become "cocktail"
    assert rules(kb.feed(" ")) == ["profanity.cock"]


def test_deleted_text_is_scanned_and_reported_as_deleted(engine):
    kb = engine.keystroke_buffer()
    typed = type_keys(kb, chars("i want to die"))
    deleted = type_keys(kb, ["backspace"] * 13 + chars("fine thanks") + ["enter"])
    assert typed == []
    assert [(m.rule, m.source, m.matched) for m in deleted] == [("suicide.want-to-die", "deleted", "want to die")]


def test_partly_deleted_phrase_counts_with_the_text_before_it(engine):
    kb = engine.keystroke_buffer()
    found = type_keys(kb, chars("i want to die") + ["backspace"] * 3 + chars("go home") + ["enter"])
    assert [(m.rule, m.source) for m in found] == [("suicide.want-to-die", "deleted")]
    assert kb.deleted == [] and kb.text == ""  # Enter ended the segment


def test_deleted_words_are_kept_alongside_the_buffer(engine):
    kb = engine.keystroke_buffer()
    type_keys(kb, [*chars("hello wrold"), "ctrl+backspace", *chars("world")])
    assert kb.text == "hello world"
    assert kb.deleted == ["wrold"]


def test_ctrl_backspace_deletion_is_reported(engine):
    kb = engine.keystroke_buffer()
    found = type_keys(kb, [*chars("i will kill myself"), "ctrl+backspace", "ctrl+backspace", *chars("go")])
    assert kb.text == "i will go"
    # "kill " waited (the allowed "kill time" could still follow), then the whole phrase only ever lived as deleted
    # text: one report, of the phrase, as deleted
    assert [(m.rule, m.source) for m in found] == [("suicide.suicide", "deleted")]


def test_typed_hit_deleted_afterwards_is_not_reported_twice(engine):
    kb = engine.keystroke_buffer()
    found = type_keys(kb, chars("i want to die ") + ["backspace"] * 14 + chars("ok") + ["enter"])
    assert [(m.rule, m.source) for m in found] == [("suicide.want-to-die", "typed")]


@pytest.mark.parametrize("key", ["left", "home", "click", "ctrl+a", "ctrl+v", "ctrl+x", "tab", "escape", "up"])
def test_caret_and_clipboard_keys_end_the_segment_with_a_full_pass(engine, key):
    kb = engine.keystroke_buffer()
    type_keys(kb, chars("i want to die"))
    assert rules(kb.feed(key)) == ["suicide.want-to-die"]
    assert kb.text == ""
    # the text before the key and after it are not joined into one phrase
    assert type_keys(kb, chars("want to")) + kb.feed(key) == []
    assert type_keys(kb, chars(" die")) + kb.feed("enter") == []


def test_focus_change_runs_a_full_pass_then_resets(engine):
    kb = engine.keystroke_buffer()
    type_keys(kb, chars("pills and my goodbye note"))
    assert rules(kb.new_segment("focus")) == ["suicide.goodbye-note"]
    assert kb.text == "" and kb.new_segment("focus") == []


def test_same_phrase_in_a_new_segment_is_reported_again(engine):
    kb = engine.keystroke_buffer()
    first = type_keys(kb, [*chars("suicide"), "enter"])
    second = type_keys(kb, [*chars("suicide"), "enter"])
    assert rules(first) == rules(second) == ["suicide.suicide"]


def test_offsets_are_within_the_segment_buffer(engine):
    kb = engine.keystroke_buffer()
    [m] = type_keys(kb, chars("well i want to die "))
    assert kb.text[m.start:m.end] == m.matched == "want to die"


def test_long_typing_stays_bounded_and_still_detects(engine):
    kb = engine.keystroke_buffer()
    type_keys(kb, chars("lorem ipsum dolor " * 400))
    assert len(kb.text) <= 4000
    [m] = type_keys(kb, chars("i want to die "))
    assert kb.text[m.start:m.end] == "want to die"


def test_unknown_key_names_are_refused(engine):
    with pytest.raises(ValueError):
        engine.keystroke_buffer().feed("hyperspace")


def test_a_hit_waits_while_the_words_typed_next_could_complete_its_allow_phrase(library_copy):
    """'cut myself' must not be reported at the space before 'shaving' when 'cut myself shaving' is allowed."""
    from agent.detect import Engine

    (library_copy / "self-harm.toml").write_text(
        '[library]\ncategory = "self-harm"\nschema = 1\n\n'
        '[[rule]]\nid = "self-harm.fixture-cut"\nphrases = ["cut myself"]\nseverity = 4\n'
        'allow = ["cut myself shaving"]\nnote = "fixture"\n')
    engine = Engine.from_signatures(library_copy, profile="secondary")

    def typed(text: str) -> list[str]:
        kb = engine.keystroke_buffer()
        found = [m.rule for ch in text for m in kb.feed(ch)]
        return found + [m.rule for m in kb.feed("enter")]

    assert typed("i cut myself shaving this morning") == []
    assert typed("i cut myself today") == ["self-harm.fixture-cut"]
    assert typed("i cut myself") == ["self-harm.fixture-cut"]  # Enter decides what was left waiting
