"""The service installs a bundle only after a child process verified and parsed it."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.bundles import BundleStore
from agent.state import AgentState
from signatures.bundle import build_bundle, sign_bundle
from signatures.loader import default_signatures_dir


def _key_der(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_verified_bundle_is_installed_and_a_forged_one_refused_with_the_reason(tmp_path):
    store = BundleStore(AgentState(tmp_path))
    key, forger = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    bundle = build_bundle(default_signatures_dir(), "2026.11.1")
    assert store.install("2026.11.1", bundle, sign_bundle(bundle, key), _key_der(key)) == (
        True, "installed bundle 2026.11.1")
    assert store.current_version() == "2026.11.1" and store.bundle_path.read_bytes() == bundle

    other = build_bundle(default_signatures_dir(), "2026.11.2")
    ok, detail = store.install("2026.11.2", other, sign_bundle(other, forger), _key_der(key))
    assert not ok and "signature does not verify" in detail
    ok, detail = store.install("2026.11.3", b"not a bundle", sign_bundle(b"not a bundle", key), _key_der(key))
    assert not ok and "not gzip-compressed JSON" in detail
    # The installed bundle is untouched and nothing half-written is left beside it.
    assert store.current_version() == "2026.11.1" and store.bundle_path.read_bytes() == bundle
    assert sorted(p.name for p in store.dir.iterdir()) == ["current.json", "current.sig", "current.wwb"]
