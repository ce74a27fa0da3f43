"""`wardwatch-agent scan` as other tools call it: the installed entry point, JSON lines, exit codes."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from signatures.bundle import build_bundle, pack_signed, public_key_pem, sign_bundle
from tests.detect.conftest import FIXTURE_LIBRARY

AGENT = shutil.which("wardwatch-agent") or str(Path(__file__).resolve().parents[2] / ".venv/bin/wardwatch-agent")


def scan(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([AGENT, "scan", *args], input=stdin, capture_output=True, text=True, encoding="utf-8",
                          timeout=60)


def test_one_json_object_per_input_line():
    run = scan("--signatures", str(FIXTURE_LIBRARY), "-", stdin="hello\ni want to die\n\nsuicide squad\n")
    assert run.returncode == 0, run.stderr
    out = [json.loads(line) for line in run.stdout.splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4]
    assert out[0]["matches"] == [] and out[2]["matches"] == [] and out[3]["matches"] == []
    [m] = out[1]["matches"]
    assert set(m) == {"category", "severity", "rule", "confidence", "matched", "start", "end", "source"}
    assert (m["rule"], m["start"], m["end"], m["source"]) == ("suicide.want-to-die", 2, 13, "typed")


def test_file_input_profile_and_title_source(tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("you ass\n", encoding="utf-8")
    primary = scan("--signatures", str(FIXTURE_LIBRARY), "--profile", "primary", "--source", "title", str(text))
    secondary = scan("--signatures", str(FIXTURE_LIBRARY), "--profile", "secondary", str(text))
    [m] = json.loads(primary.stdout)["matches"]
    assert (m["rule"], m["source"]) == ("profanity.ass", "title")
    assert json.loads(secondary.stdout)["matches"] == []


def test_keys_mode_applies_backspace_and_reports_deleted_text():
    stream = "i want to dei\b\bie\n" + "suicide" + "\b" * 7 + "fine\n"
    run = scan("--signatures", str(FIXTURE_LIBRARY), "--keys", stdin=stream)
    assert run.returncode == 0, run.stderr
    first, second = (json.loads(line) for line in run.stdout.splitlines())
    assert [(m["rule"], m["source"]) for m in first["matches"]] == [("suicide.want-to-die", "typed")]
    assert [(m["rule"], m["source"]) for m in second["matches"]] == [("suicide.suicide", "deleted")]


def test_default_library_is_the_shipped_signatures_directory():
    from signatures.loader import default_signatures_dir

    text = "hello there\ni want to die\nunblocked games at school\n"
    default = scan(stdin=text)
    explicit = scan("--signatures", str(default_signatures_dir()), stdin=text)
    # compared whole, so the test holds whatever the shipped libraries contain (and if they fail, both fail alike)
    assert (default.returncode, default.stdout, default.stderr) == (explicit.returncode, explicit.stdout,
                                                                     explicit.stderr)
    assert default.returncode in (0, 2)


@pytest.mark.parametrize("bad", [["/no/such/file.txt"], ["--signatures", "/no/such/dir"], ["--profile", "toddler"]])
def test_bad_arguments_exit_2_with_one_line_and_no_traceback(bad):
    run = scan(*bad, stdin="x\n")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("wardwatch-agent")  # the reason is on one line (argparse adds its usage above it)


def test_bad_library_message_names_file_and_line(tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(FIXTURE_LIBRARY, lib)
    (lib / "gambling.toml").write_text('[library]\ncategory = "gambling"\nschema = 1\n\n[[rule]]\n'
                                       'id = "gambling.x"\nphrases = ["bet"]\nseverity = 7\nnote = "n"\n')
    run = scan("--signatures", str(lib), stdin="x\n")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"wardwatch-agent: bad keyword library: {lib / 'gambling.toml'}:6: rule gambling.x: severity must be a "
        "whole number from 1 to 5"]


def test_non_utf8_input_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9\n")
    run = scan("--signatures", str(FIXTURE_LIBRARY), str(path))
    assert run.returncode == 2 and "not UTF-8" in run.stderr and "Traceback" not in run.stderr


def test_bundle_signed_with_the_key_beside_it_is_used_and_a_forged_one_refused(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    bundle = build_bundle(FIXTURE_LIBRARY, "cli-1")
    good = tmp_path / "good.wwb"
    good.write_bytes(pack_signed(bundle, sign_bundle(bundle, key)))
    (tmp_path / "good.wwb.pub").write_bytes(public_key_pem(key))
    run = scan("--bundle", str(good), stdin="i want to die\n")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["matches"][0]["rule"] == "suicide.want-to-die"

    forged = tmp_path / "forged.wwb"
    forged.write_bytes(pack_signed(bundle, sign_bundle(bundle, ed25519.Ed25519PrivateKey.generate())))
    (tmp_path / "forged.wwb.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    run = scan("--bundle", str(forged), stdin="i want to die\n")
    assert run.returncode == 2 and "does not verify" in run.stderr and run.stdout == ""

    unsigned = tmp_path / "unsigned.wwb"
    unsigned.write_bytes(bundle)
    (tmp_path / "unsigned.wwb.pub").write_bytes(public_key_pem(key))
    run = scan("--bundle", str(unsigned), stdin="x\n")
    assert run.returncode == 2 and "unsigned" in run.stderr
    run = scan("--bundle", str(tmp_path / "nokey.wwb"), stdin="x\n")
    assert run.returncode == 2 and "public key" in run.stderr
