"""The service signs alerts through libsodium with the key `cryptography` wrote; both must give one signature."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from agent.errors import AgentError
from agent.state import AgentState, ed25519_seed_from_pem


def test_the_service_key_signs_exactly_as_cryptography_does(tmp_path):
    state = AgentState(tmp_path)
    key = state.identity_key(create=True)
    light = state.alert_signing_key()
    for payload in (b"", b"an alert", bytes(range(256)) * 40):
        assert light.sign(payload) == key.sign(payload)
        key.public_key().verify(light.sign(payload), payload)  # raises if it does not verify


@pytest.mark.parametrize("pem, why", [
    (b"", "not a PEM private key"),
    (b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", "not base64"),
    (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "not a PEM private key"),
])
def test_anything_but_a_plain_ed25519_pkcs8_key_is_refused(pem, why):
    with pytest.raises(ValueError, match=why):
        ed25519_seed_from_pem(pem)


def test_a_key_of_another_type_is_refused_with_the_file_named(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    state = AgentState(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    state.identity_key_path.write_bytes(other)
    with pytest.raises(AgentError, match=r"identity\.key is not an Ed25519 key"):
        state.alert_signing_key()
    with pytest.raises(ValueError, match="not an unencrypted Ed25519 PKCS#8 key"):
        ed25519_seed_from_pem(other)


def test_a_missing_identity_says_to_enrol(tmp_path):
    with pytest.raises(AgentError, match="enrol first"):
        AgentState(tmp_path).alert_signing_key()
