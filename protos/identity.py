"""The identity rule both sides rely on: how an agent id is derived and where the certificate carries the key.

gRPC's TLS stack will not negotiate Ed25519, so the agent's TLS key is ECDSA P-256 and its Ed25519 identity key
travels inside the client certificate in a private extension that only the collector's CA writes.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ed25519

# Private-enterprise-style OID for "WardWatch agent identity key" (SubjectPublicKeyInfo DER, Ed25519).
IDENTITY_KEY_OID_DOTTED = "1.3.6.1.4.1.57264.7.1"
# The collector's server certificate always carries this DNS name; agents check it whatever address they dial,
# so a collector can move address or sit behind a load balancer without reissuing its certificate.
COLLECTOR_TLS_NAME = "collector.wardwatch.invalid"
AGENT_ID_HEX_CHARS = 32


def agent_id_from_spki(spki_der: bytes) -> str:
    """agent id = first 32 hex chars of SHA-256 over the identity key's SubjectPublicKeyInfo DER."""
    return hashlib.sha256(spki_der).hexdigest()[:AGENT_ID_HEX_CHARS]


def spki_der(public_key: ed25519.Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def agent_id_of(public_key: ed25519.Ed25519PublicKey) -> str:
    return agent_id_from_spki(spki_der(public_key))


def __getattr__(name: str) -> Any:
    # IDENTITY_KEY_OID is made on first use (PEP 562), like every other use of `cryptography` here: the agent
    # service imports this module but signs with libsodium and never handles a certificate's extensions, and
    # `cryptography` would cost it ~12 MB resident.
    if name == "IDENTITY_KEY_OID":
        from cryptography import x509

        return x509.ObjectIdentifier(IDENTITY_KEY_OID_DOTTED)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def identity_key_from_certificate(cert: x509.Certificate) -> ed25519.Ed25519PublicKey:
    """The Ed25519 identity key the CA bound into an agent certificate. Raises ValueError if absent or wrong."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(IDENTITY_KEY_OID_DOTTED))
    except x509.ExtensionNotFound as exc:
        raise ValueError("certificate carries no WardWatch identity key") from exc
    key = serialization.load_der_public_key(ext.value.value)
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError("identity key in certificate is not Ed25519")
    return key


def ca_pin(ca_cert_der: bytes) -> str:
    """The pin an enrolment string carries: SHA-256 of the CA certificate (DER), hex."""
    return hashlib.sha256(ca_cert_der).hexdigest()
