"""Normalisation keeps offsets back to the original text while undoing disguise."""

from agent.detect.normalise import collapse_repeats, fold, phrase_key, variants


def original_span(text: str, folded, start: int, end: int) -> str:
    return text[folded.starts[start]:folded.ends[end - 1]]


def test_fold_casefolds_strips_accents_and_maps_offsets_back():
    text = "Ｃafé ＫＩＬＬ"
    folded = fold(text)
    assert folded.text == "cafe kill"
    i = folded.text.index("kill")
    assert original_span(text, folded, i, i + 4) == "ＫＩＬＬ"


def test_combining_accent_is_dropped_but_covered_by_offsets():
    text = "cafe\u0301 now"
    folded = fold(text)
    assert folded.text == "cafe now"
    assert original_span(text, folded, 0, 4) == "cafe\u0301"


def test_invisible_format_characters_are_removed_and_marked_as_disguise():
    text = "sui\u200bci\u00adde\u202e"
    folded = fold(text)
    assert folded.text == "suicide"
    assert folded.disguised  # the character after an invisible one counts as disguised
    assert original_span(text, folded, 0, 7) == "sui\u200bci\u00adde"


def test_cyrillic_and_greek_lookalikes_fold_to_latin():
    assert fold("ѕuісіdе").text == "suicide"
    assert fold("κιll").text == "kill"
    assert fold("ѕuісіdе").disguised


def test_non_latin_scripts_keep_their_letters_and_marks():
    arabic = "أريد أن أموت"
    assert fold(arabic).text == arabic
    gurmukhi = "ਮਰਨਾ ਚਾਹੁੰਦਾ"
    assert fold(gurmukhi).text == gurmukhi


def test_polish_letters_lose_accents_consistently_with_phrases():
    assert fold("Chcę umrzeć").text == "chce umrzec"
    assert phrase_key("chcę umrzeć") == "chce umrzec"


def test_punctuation_becomes_single_spaces_and_phrase_keys_match_it():
    assert fold("kill--myself").text == "kill myself"
    assert phrase_key("self-harm") == "self harm"
    assert phrase_key("  I'm   DONE ") == "im done"


def test_leetspeak_only_inside_tokens_with_a_letter():
    v = variants("in 2024 I want to end my l1f3, $uicide 4 real")
    assert v.leet is not None
    assert v.leet.text == "in 2024 i want to end my life, suicide 4 real".replace(",", " ").replace("  ", " ")
    assert variants("call 0800 1111 at 5").leet is None


def test_double_one_reads_as_double_l_and_trailing_bangs_stay():
    v = variants("ki11 it!!")
    assert v.leet is not None
    assert v.leet.text == "kill it!!"


def test_spaced_and_dotted_single_letters_join_into_words():
    v = variants("I will s u i c i d e, k.i.l.l m.y.s.e.l.f")
    assert v.joined is not None
    assert "suicide" in v.joined.text.split()
    assert "kill myself" in v.joined.text  # a change of separator ("." then " ") keeps the words apart
    start = v.joined.text.index("suicide")
    assert original_span("I will s u i c i d e, k.i.l.l m.y.s.e.l.f", v.joined, start, start + 7) == "s u i c i d e"


def test_letters_spaced_evenly_across_words_join_into_one_run():
    v = variants("k i l l m y s e l f")
    assert v.joined is not None
    assert v.joined.text == "killmyself"
    assert v.joined.runs == ((0, 10),)


def test_two_single_letters_are_not_a_run():
    assert variants("i am a b").joined is None or "ab" not in variants("i am a b").joined.text


def test_elongation_collapses_and_marks_only_real_repeats():
    v = variants("kiiiill it")
    assert v.collapsed is not None
    assert v.collapsed.text == "kil it"
    assert 1 in v.collapsed.elongated  # the i that stood for four
    assert variants("kill the lights").collapsed is None
    assert collapse_repeats("kill") == "kil"


def test_ascii_fast_path_agrees_with_the_general_fold():
    import random

    from agent.detect.normalise import fold_unicode

    rng = random.Random(3)
    alphabet = "abcXYZ019 .,-!@$|'\t\n_*"
    samples = ["", " ", "  lead", "trail  ", "Kill--Myself!!", "i'm  OK\tnow\n", "$u1c1d3 @ 5"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    for text in samples:
        fast, general = fold(text), fold_unicode(text)
        assert (fast.text, list(fast.starts), list(fast.ends)) == (general.text, general.starts, general.ends), text


def test_apostrophes_join_rather_than_split_words():
    assert fold("I’m sure I'm fine, don't worry").text == "im sure im fine dont worry"
    assert phrase_key("why don't you") == phrase_key("why dont you") == "why dont you"


def test_confusables_table_maps_non_latin_lookalikes_to_ascii_letters():
    from agent.detect.normalise import CONFUSABLES

    assert len(CONFUSABLES) >= 80
    for source, latin in CONFUSABLES.items():
        assert not source.isascii() and latin.isascii() and latin.isalpha(), source
        assert fold(source).text == latin


def test_currency_signs_and_emoji_are_words_of_their_own():
    assert fold("bet £10 now").text == "bet £ 10 now"
    assert phrase_key("bet £10") == phrase_key("bet £ 10") == "bet £ 10"
    text = "got 💊️ for u"
    folded = fold(text)
    assert folded.text == "got 💊 for u"
    i = folded.text.index("💊")
    assert text[folded.starts[i]:folded.ends[i]] == "💊"
    assert fold("$uicide").text == "$uicide"  # ASCII $ stays a leet letter, not a currency word
