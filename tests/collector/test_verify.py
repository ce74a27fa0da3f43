"""Alert signatures are checked with libsodium; the verdict matches OpenSSL's on every honest or altered alert."""

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.alerts import Signer, make_test_alert
from collector.ingest import Rejected, identity_verifier, verify_envelope, verify_signature
from protos import wardwatch_pb2 as pb
from protos.identity import agent_id_of


def _openssl_says(public: ed25519.Ed25519PublicKey, payload: bytes, signature: bytes) -> bool:
    try:
        public.verify(signature, payload)
    except InvalidSignature:
        return False
    return True


@pytest.fixture
def signed():
    key = ed25519.Ed25519PrivateKey.generate()
    agent_id = agent_id_of(key.public_key())
    env = pb.SignedAlert()
    env.ParseFromString(Signer(key=key, agent_id=agent_id).envelope(make_test_alert("bullying", 3, "test text"), 7))
    return key.public_key(), agent_id, env


def test_libsodium_and_openssl_agree_on_honest_and_altered_alerts(signed):
    public, _agent_id, env = signed
    flipped_payload = bytes([env.alert[0] ^ 1]) + env.alert[1:]
    flipped_signature = env.signature[:-1] + bytes([env.signature[-1] ^ 1])
    cases = [(env.alert, env.signature, True), (flipped_payload, env.signature, False),
             (env.alert, flipped_signature, False), (env.alert, bytes(64), False)]
    verifier = identity_verifier(public)
    for payload, signature, honest in cases:
        assert _openssl_says(public, payload, signature) is honest
        assert verify_signature(verifier, payload, signature) is honest
        assert verify_signature(public, payload, signature) is honest  # the key as cryptography holds it


def test_a_short_signature_is_refused_not_raised(signed):
    public, _agent_id, env = signed
    assert verify_signature(identity_verifier(public), env.alert, env.signature[:40]) is False


def test_an_envelope_verifies_with_the_libsodium_key_and_an_altered_one_is_rejected(signed):
    public, agent_id, env = signed
    verified = verify_envelope(env, agent_id, identity_verifier(public))
    assert verified.alert.seq == 7 and verified.payload == env.alert
    env.alert = env.alert[:-1] + bytes([env.alert[-1] ^ 1])
    with pytest.raises(Rejected, match="signature does not verify"):
        verify_envelope(env, agent_id, identity_verifier(public))
