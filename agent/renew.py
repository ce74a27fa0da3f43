"""Certificate renewal over the authenticated channel: new TLS key, same identity."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.state import AgentState, write_private
from agent.uplink import Uplink
from protos import wardwatch_pb2 as pb


async def renew(state: AgentState, uplink: Uplink) -> dt.datetime:
    new_key = ec.generate_private_key(ec.SECP256R1())
    csr_pem = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, state.agent_id)]))
               .sign(new_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    resp = await uplink.stub.RenewCertificate(
        pb.RenewRequest(csr_pem=csr_pem, identity_proof=state.identity_key().sign(csr_pem)), timeout=30)
    # Key before certificate: a crash in between leaves a new key with the old cert, which fails the TLS
    # handshake loudly rather than silently; the next renewal repairs it.
    write_private(state.tls_key_path, new_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    _not_before, not_after = state.save_certificate(resp.certificate_pem)
    if resp.ca_chain_pem:
        # Every CA the collector trusts (two while a CA rotation overlaps): the next server certificate may come
        # from the new one. Received over the authenticated channel, so it extends the pinned trust.
        state.ca_path.write_bytes(resp.ca_chain_pem)
    return not_after
