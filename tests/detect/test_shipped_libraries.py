"""The libraries shipped in signatures/ load, compile for every age band and survive a signed bundle round trip."""

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.detect import Engine
from signatures.bundle import build_bundle, sign_bundle, verify_bundle
from signatures.loader import default_signatures_dir, load_library
from signatures.schema import BANDS


@pytest.fixture(scope="module")
def shipped():
    return load_library(default_signatures_dir())


@pytest.mark.parametrize("band", BANDS)
def test_every_band_compiles_and_scans(shipped, band):
    engine = Engine.from_library(shipped, profile=band)
    assert engine.compiled.rules
    assert engine.scan("we went to scunthorpe for the match") == []


def test_signed_bundle_of_the_shipped_libraries_round_trips(shipped):
    key = ed25519.Ed25519PrivateKey.generate()
    bundle = build_bundle(default_signatures_dir(), "shipped-test")
    library = verify_bundle(bundle, sign_bundle(bundle, key), key.public_key())
    assert len(library.rules) == len(shipped.rules)
    assert {r.id for r in library.rules} == {r.id for r in shipped.rules}
