"""Signed keyword bundles: build, sign, verify, refuse; the build script; the agent keeps its library on refusal."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.detect import Engine
from signatures.bundle import (
    BundleError,
    build_bundle,
    load_signed_file,
    pack_signed,
    sign_bundle,
    unpack_signed,
    verify_bundle,
)
from signatures.loader import load_library
from tests.detect.conftest import FIXTURE_LIBRARY, rules

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def write_key(path: Path, key: ed25519.Ed25519PrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def test_build_is_deterministic_and_round_trips_every_rule(bundle_key):
    bundle = build_bundle(FIXTURE_LIBRARY, "2026.11.24-test")
    assert bundle == build_bundle(FIXTURE_LIBRARY, "2026.11.24-test")
    library = verify_bundle(bundle, sign_bundle(bundle, bundle_key), bundle_key.public_key())
    assert library.version == "2026.11.24-test"
    original = load_library(FIXTURE_LIBRARY)
    assert sorted(library.rules, key=lambda r: r.id) == sorted(original.rules, key=lambda r: r.id)
    assert sorted(library.allow) == sorted(original.allow)


def test_public_key_may_be_pem_der_or_raw(bundle_key):
    bundle = build_bundle(FIXTURE_LIBRARY, "v1")
    signature = sign_bundle(bundle, bundle_key)
    public = bundle_key.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert verify_bundle(bundle, signature, pem).version == verify_bundle(bundle, signature, raw).version == "v1"
    assert verify_bundle(bundle, signature, der).version == "v1"  # as enrolment hands it to the agent
    with pytest.raises(BundleError, match="not a valid"):
        verify_bundle(bundle, signature, b"garbage key bytes")


def test_wrong_key_tampered_bundle_and_missing_signature_are_refused(bundle_key):
    bundle = build_bundle(FIXTURE_LIBRARY, "v1")
    signature = sign_bundle(bundle, bundle_key)
    stranger = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(BundleError, match="does not verify"):
        verify_bundle(bundle, signature, stranger.public_key())
    tampered = bundle[:-5] + bytes(b ^ 1 for b in bundle[-5:])
    with pytest.raises(BundleError, match="does not verify"):
        verify_bundle(tampered, signature, bundle_key.public_key())
    with pytest.raises(BundleError, match="unsigned"):
        verify_bundle(bundle, b"", bundle_key.public_key())
    with pytest.raises(BundleError, match="unsigned"):
        unpack_signed(bundle)


def test_signed_but_invalid_content_is_still_refused(bundle_key):
    doc = json.loads(gzip.decompress(build_bundle(FIXTURE_LIBRARY, "v1")))
    doc["libraries"][0]["rule"][0]["severity"] = 9
    bad = gzip.compress(json.dumps(doc).encode())
    with pytest.raises(BundleError, match="severity"):
        verify_bundle(bad, sign_bundle(bad, bundle_key), bundle_key.public_key())
    junk = b"not gzip"
    with pytest.raises(BundleError, match="gzip"):
        verify_bundle(junk, sign_bundle(junk, bundle_key), bundle_key.public_key())


def test_build_script_writes_a_signed_bundle_the_engine_accepts(tmp_path, bundle_key):
    key = write_key(tmp_path / "bundle.key", bundle_key)
    out = tmp_path / "site.wwb"
    run = subprocess.run([sys.executable, str(REPO / "signatures" / "build"), "--signatures", str(FIXTURE_LIBRARY),
                          "--key", str(key), "--out", str(out), "--version", "7.1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "site.wwb.pub").exists()
    engine = Engine.from_bundle(out, (tmp_path / "site.wwb.pub").read_bytes(), profile="secondary")
    assert engine.version == "7.1"
    assert rules(engine.scan("i want to die")) == ["suicide.want-to-die"]


def test_build_script_reports_a_bad_library_in_one_line(tmp_path, bundle_key, library_copy):
    (library_copy / "drugs.toml").write_text('[library]\ncategory = "drugs"\nschema = 1\n[[rule]]\nid = "x"\n')
    key = write_key(tmp_path / "bundle.key", bundle_key)
    run = subprocess.run([sys.executable, str(REPO / "signatures" / "build"), "--signatures", str(library_copy),
                          "--key", str(key), "--out", str(tmp_path / "b.wwb")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "drugs.toml:5:" in run.stderr
    assert not (tmp_path / "b.wwb").exists()


def test_refused_bundle_leaves_the_running_library_in_place(tmp_path, bundle_key, library_copy):
    engine = Engine.from_signatures(FIXTURE_LIBRARY)
    good_version = engine.version
    (library_copy / "bullying.toml").write_text(
        (library_copy / "bullying.toml").read_text()
        + '\n[[rule]]\nid = "bullying.wibble"\nphrases = ["wibble"]\nseverity = 2\nnote = "test"\n')
    bundle = build_bundle(library_copy, "v2")
    forged = tmp_path / "forged.wwb"
    forged.write_bytes(pack_signed(bundle, sign_bundle(bundle, ed25519.Ed25519PrivateKey.generate())))
    with pytest.raises(BundleError):
        engine.swap_library(Engine.from_bundle(forged, bundle_key.public_key()))
    assert engine.version == good_version and engine.scan("wibble") == []
    genuine = tmp_path / "genuine.wwb"
    genuine.write_bytes(pack_signed(bundle, sign_bundle(bundle, bundle_key)))
    engine.swap_library(load_signed_file(genuine, bundle_key.public_key()))
    assert engine.version == "v2" and rules(engine.scan("wibble")) == ["bullying.wibble"]
