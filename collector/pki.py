"""The collector's own certificate authority, made with `cryptography` at `init`.

TLS keys are ECDSA P-256 (gRPC's TLS will not negotiate Ed25519); signing keys for bundles and the audit log are
Ed25519. Private keys are written 0600 and never logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protos.identity import COLLECTOR_TLS_NAME, IDENTITY_KEY_OID, agent_id_of, ca_pin

CA_YEARS = 20
SERVER_DAYS = 825
AGENT_CERT_DAYS = 90  # short: renewal over the authenticated channel keeps a lost laptop's cert from living long


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by the owner only, created with that mode (no window where it is wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_private_key(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


@dataclass(frozen=True)
class PkiPaths:
    root: Path

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_next_key(self) -> Path:
        """The new CA during a rotation's overlap: it signs agent certificates while the old one is still trusted."""
        return self.root / "ca-next.key"

    @property
    def ca_next_cert(self) -> Path:
        return self.root / "ca-next.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def web_key(self) -> Path:
        return self.root / "web.key"

    @property
    def web_cert(self) -> Path:
        return self.root / "web.crt"

    @property
    def bundle_key(self) -> Path:
        return self.root / "bundle.key"

    @property
    def audit_key(self) -> Path:
        return self.root / "audit.key"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "WardWatch"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(common_name: str = "WardWatch collector CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _san_entries(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def issue_server_certificate(ca_key, ca_cert: x509.Certificate, sans: list[str],
                             days: int = SERVER_DAYS) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [COLLECTOR_TLS_NAME, "localhost", "127.0.0.1", "::1", socket.gethostname(), *sans]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("WardWatch collector")).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_san_entries(names)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


class CsrError(ValueError):
    """A certificate signing request the collector will not sign."""


def check_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CsrError("the certificate request is not valid PEM") from exc
    if not csr.is_signature_valid:
        raise CsrError("the certificate request's signature does not verify")
    pub = csr.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
        raise CsrError("the certificate request must be for an ECDSA P-256 key")
    return csr


def issue_agent_certificate(ca_key, ca_cert: x509.Certificate, csr: x509.CertificateSigningRequest,
                            identity_key: ed25519.Ed25519PublicKey, site: str,
                            days: int = AGENT_CERT_DAYS, lifetime: dt.timedelta | None = None) -> x509.Certificate:
    """Sign the agent's TLS key and bind its Ed25519 identity key into the certificate.

    `lifetime` overrides `days` (a collector setting; tests issue certificates that live for seconds)."""
    lifetime = lifetime or dt.timedelta(days=days)
    # Backdating absorbs clock skew between collector and PCs; a tenth of the lifetime at most, so a short-lived
    # certificate's renewal point (a third of its validity left) still lies in its future.
    backdate = min(dt.timedelta(minutes=5), lifetime / 10)
    agent_id = agent_id_of(identity_key)
    identity_der = identity_key.public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "WardWatch"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, site[:64] or "site"),
                         x509.NameAttribute(NameOID.COMMON_NAME, agent_id)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject).public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - backdate)
        .not_valid_after(_now() + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.UnrecognizedExtension(IDENTITY_KEY_OID, identity_der), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


class CollectorPki:
    """The loaded CA and server credentials of one collector.

    `ca_cert` is the CA the server certificate chains to (agents pin it at enrolment). `issuer_key`/`issuer_cert`
    sign agent certificates: the same CA, or the new one while a rotation overlaps. `ca_cert_pem` is every CA the
    collector trusts and presents (old + new during the overlap), which agents take as their trust bundle.
    """

    def __init__(self, paths: PkiPaths):
        self.paths = paths
        self.ca_key = load_private_key(paths.ca_key)
        self.ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        self.ca_cert_pem = paths.ca_cert.read_bytes()
        self.issuer_key, self.issuer_cert = self.ca_key, self.ca_cert
        if paths.ca_next_cert.exists():
            next_pem = paths.ca_next_cert.read_bytes()
            self.issuer_key = load_private_key(paths.ca_next_key)
            self.issuer_cert = x509.load_pem_x509_certificate(next_pem)
            self.ca_cert_pem += next_pem
        self.server_key_pem = paths.server_key.read_bytes()
        self.server_cert_pem = paths.server_cert.read_bytes()

    @property
    def issuer_id(self) -> str:
        """Short id of the CA that signs agent certificates now (stored per agent to follow a rotation)."""
        return ca_pin(self.issuer_cert.public_bytes(serialization.Encoding.DER))[:16]

    @property
    def trust_bundle_sha256(self) -> str:
        return hashlib.sha256(self.ca_cert_pem).hexdigest()

    @property
    def pin(self) -> str:
        return ca_pin(self.ca_cert.public_bytes(serialization.Encoding.DER))

    def bundle_private_key(self) -> ed25519.Ed25519PrivateKey:
        return load_private_key(self.paths.bundle_key)

    def bundle_public_key_der(self) -> bytes:
        return self.bundle_private_key().public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def create_pki(paths: PkiPaths, sans: list[str]) -> None:
    """Make the CA, the gRPC server and web certificates and the Ed25519 signing keys. Never overwrites."""
    if paths.ca_key.exists():
        raise FileExistsError(paths.ca_key)
    paths.root.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.root, 0o700)
    ca_key, ca_cert = make_ca()
    write_private(paths.ca_key, key_pem(ca_key))
    paths.ca_cert.write_bytes(cert_pem(ca_cert))
    for key_path, cert_path in ((paths.server_key, paths.server_cert), (paths.web_key, paths.web_cert)):
        key, cert = issue_server_certificate(ca_key, ca_cert, sans)
        write_private(key_path, key_pem(key))
        cert_path.write_bytes(cert_pem(cert))
    for key_path in (paths.bundle_key, paths.audit_key):
        write_private(key_path, key_pem(ed25519.Ed25519PrivateKey.generate()))
