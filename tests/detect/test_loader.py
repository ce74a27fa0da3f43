"""The loader refuses a bad library set with `path:line: what is wrong`, and never half-loads."""

from pathlib import Path

import pytest

from signatures.loader import load_library
from signatures.schema import CATEGORIES, LibraryError
from tests.detect.conftest import FIXTURE_LIBRARY

GOOD_RULE = 'id = "bullying.ok"\nphrases = ["go away loser"]\nseverity = 2\nnote = "test"\n'


def write_bullying(directory: Path, rules_text: str, header: str | None = None) -> Path:
    path = directory / "bullying.toml"
    header = header or '[library]\ncategory = "bullying"\nschema = 1\ndescription = "test"\n'
    path.write_text(header + "\n[[rule]]\n" + GOOD_RULE + "\n" + rules_text, encoding="utf-8")
    return path


def load_error(directory: Path) -> str:
    with pytest.raises(LibraryError) as exc:
        load_library(directory)
    return str(exc.value)


def test_fixture_library_loads_completely():
    library = load_library(FIXTURE_LIBRARY)
    assert {r.category for r in library.rules} <= set(CATEGORIES)
    assert "scunthorpe" in library.allow
    assert library.version.startswith("dir-")
    rule = next(r for r in library.rules if r.id == "profanity.ass")
    assert rule.bands == ("primary",) and rule.mode == "word" and rule.lang == "en"


def test_version_changes_with_content(library_copy):
    before = load_library(library_copy).version
    write_bullying(library_copy, "")
    assert load_library(library_copy).version != before


def test_toml_syntax_error_reports_file_and_line(library_copy):
    path = write_bullying(library_copy, '[[rule]]\nid = "bullying.broken"\nphrases = ["a", \n')
    message = load_error(library_copy)
    assert message.startswith(f"{path}:")
    line = int(message.split(":")[1])
    assert 13 <= line <= 16


@pytest.mark.parametrize(("rule_text", "expected"), [
    ('id = "bullying.x"\nphrases = ["p"]\nseverity = 6\nnote = "n"\n', "severity must be a whole number from 1 to 5"),
    ('id = "bullying.x"\nphrases = ["p"]\nseverity = 2\nnote = "n"\ncolour = "red"\n', "unknown key 'colour'"),
    ('id = "drugs.x"\nphrases = ["p"]\nseverity = 2\nnote = "n"\n', "must start with 'bullying.'"),
    ('id = "bullying.x"\nphrases = ["p"]\nseverity = 2\nbands = ["nursery"]\nnote = "n"\n', "bands must be"),
    ('id = "bullying.x"\nphrases = ["p"]\nseverity = 2\nmode = "regex"\nnote = "n"\n', "mode must be one of"),
    ('id = "bullying.x"\nphrases = []\nseverity = 2\nnote = "n"\n', "phrases must not be empty"),
    ('id = "bullying.x"\nphrases = ["!!! ..."]\nseverity = 2\nnote = "n"\n', "has no letters or digits"),
    ('id = "bullying.x"\nphrases = ["p"]\nseverity = 2\n', "note is required"),
    ('id = "bullying.x"\nphrases = ["p"]\nseverity = 2\nnote = "n"\ncontext = { near = ["a"] }\n',
     "unknown context key 'near'"),
    ('id = "bullying.x"\nphrases = ["p"]\nseverity = 2\nnote = "n"\ncontext = { categories = ["memes"] }\n',
     "unknown category 'memes'"),
    ('id = "bullying.x"\nphrases = ["p"]\nseverity = 2\nnote = "n"\ncontext = { within = 0 }\n', "context.within"),
    ('id = "bullying.x"\nphrases = ["p"]\nseverity = 2\nnote = "n"\ncontext = "near"\n', "context must be a table"),
    ('id = "bullying.x"\nphrases = "p"\nseverity = 2\nnote = "n"\n', "phrases must be a list of strings"),
])
def test_semantic_error_points_at_the_rule_id_line(library_copy, rule_text, expected):
    path = write_bullying(library_copy, "[[rule]]\n" + rule_text)
    message = load_error(library_copy)
    id_line = path.read_text().splitlines().index('id = "' + rule_text.split('"')[1] + '"') + 1
    assert message.startswith(f"{path}:{id_line}: ")
    assert expected in message


def test_duplicate_ids_across_files_are_refused(library_copy):
    path = write_bullying(library_copy, "[[rule]]\n" + GOOD_RULE)
    message = load_error(library_copy)
    assert message.startswith(f"{path}:")
    assert "duplicate rule id 'bullying.ok'" in message


def test_category_must_match_file_name_and_be_known(library_copy):
    write_bullying(library_copy, "", header='[library]\ncategory = "violence"\nschema = 1\n')
    assert "must equal the file name 'bullying'" in load_error(library_copy)
    (library_copy / "bullying.toml").unlink()
    (library_copy / "memes.toml").write_text('[library]\ncategory = "memes"\nschema = 1\n')
    assert "unknown category 'memes'" in load_error(library_copy)


def test_wrong_schema_and_unknown_tables_are_refused(library_copy):
    write_bullying(library_copy, "", header='[library]\ncategory = "bullying"\nschema = 2\n')
    assert "schema must be 1" in load_error(library_copy)
    write_bullying(library_copy, "[extra]\nx = 1\n")
    assert "unknown table 'extra'" in load_error(library_copy)


def test_one_bad_file_means_nothing_loads(library_copy):
    good = load_library(library_copy)
    write_bullying(library_copy, '[[rule]]\nid = "bullying.bad"\nphrases = ["p"]\nseverity = 0\nnote = "n"\n')
    with pytest.raises(LibraryError):
        load_library(library_copy)
    assert good.rules  # the earlier, complete set is untouched and still usable


def test_empty_or_missing_directory(tmp_path):
    assert "no keyword library" in load_error(tmp_path)
    assert "not a directory" in load_error(tmp_path / "absent")


def test_non_utf8_file_is_refused(library_copy):
    (library_copy / "drugs.toml").write_bytes(b"[library]\ncategory = \"drugs\"\xff\n")
    assert "drugs.toml:1: not UTF-8 text" in load_error(library_copy)
