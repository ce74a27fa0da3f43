"""`enroll` (token + CSR over a pinned TLS channel), `generalize` (wipe identity for a golden image), `rekey` and
`uninstall`. The long-running service imports none of this module's X.509 code (see agent/state.py)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import socket
import ssl

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from agent.channel import describe_rpc_error, secure_channel
from agent.errors import AgentError
from agent.host import host_info
from agent.state import AgentState, generalize, write_private
from protos import wardwatch_pb2 as pb
from protos import wardwatch_pb2_grpc as pb_grpc
from protos.enrolment import EnrolmentString, EnrolmentStringError
from protos.identity import agent_id_of, spki_der

ENROL_TIMEOUT_S = 20


def fetch_pinned_ca(enrol_address: str, pin: str, timeout: float = 10.0) -> bytes:
    """Read the certificate chain the collector presents and return the CA whose SHA-256 equals the pin.

    The chain is read without verification on purpose: nothing from it is trusted until the pin matches.
    """
    host, _, port = enrol_address.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=None) as tls:
            chain_fn = getattr(tls, "get_unverified_chain", None) or tls._sslobj.get_unverified_chain
            chain = [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain_fn()]
    except OSError as exc:
        raise AgentError(f"cannot reach the collector's enrolment port {enrol_address}: {exc}") from exc
    for der in chain:
        if hashlib.sha256(der).hexdigest() == pin:
            ca = x509.load_der_x509_certificate(der)
            leaf = x509.load_der_x509_certificate(chain[0])
            try:
                leaf.verify_directly_issued_by(ca)
            except (ValueError, TypeError, Exception) as exc:  # InvalidSignature has no common base
                raise AgentError("the collector's certificate is not issued by the pinned CA; refusing") from exc
            return ca.public_bytes(serialization.Encoding.PEM)
    raise AgentError(f"the collector at {enrol_address} presented a CA that does not match the pin in the "
                     "enrolment string; refusing to enrol (wrong server, or someone in between)")


def build_csr(state: AgentState) -> bytes:
    return _csr(state.tls_key(), state.agent_id)


def _csr(tls_key: ec.EllipticCurvePrivateKey, agent_id: str) -> bytes:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)]))
           .sign(tls_key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


async def _enroll_rpc(es: EnrolmentString, ca_pem: bytes, request: pb.EnrollRequest) -> pb.EnrollResponse:
    async with secure_channel(es.enrol_address, ca_pem) as channel:
        return await pb_grpc.AgentGatewayStub(channel).Enroll(request, timeout=ENROL_TIMEOUT_S)


def enroll(state: AgentState, text: str, age_band: str | None = None) -> dict:
    try:
        es = EnrolmentString.decode(text)
    except EnrolmentStringError as exc:
        raise AgentError(str(exc)) from exc
    ca_pem = fetch_pinned_ca(es.enrol_address, es.ca_pin)
    state.ensure_dir()
    identity = state.identity_key(create=True)  # kept across re-enrolment: the identity is the key
    state.tls_key(create=True)
    csr_pem = build_csr(state)
    request = pb.EnrollRequest(token=es.token, csr_pem=csr_pem, identity_public_key=spki_der(identity.public_key()),
                               identity_proof=identity.sign(csr_pem), host=host_info())
    try:
        resp = asyncio.run(_enroll_rpc(es, ca_pem, request))
    except grpc.RpcError as exc:
        raise AgentError(f"enrolment failed: {describe_rpc_error(exc, es.enrol_address)}") from exc
    if resp.agent_id != state.agent_id:
        raise AgentError("the collector answered for a different agent id; refusing the certificate")
    state.save_certificate(resp.certificate_pem)
    state.ca_path.write_bytes(ca_pem)
    config = {
        "agent_id": resp.agent_id, "address": es.address, "enrol_address": es.enrol_address, "site": resp.site,
        "age_band": age_band or resp.age_band or "secondary", "ca_pin": es.ca_pin,
        "bundle_public_key": base64.b64encode(resp.bundle_public_key).decode(),
        "enrolled_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    state.save_config(config)
    return config


def cmd_enroll(args: argparse.Namespace) -> int:
    state = AgentState(args.state)
    config = enroll(state, args.enrolment, args.age_band)
    print(f"Enrolled as agent {config['agent_id']} in site {config['site']!r} "
          f"(age band {config['age_band']}); collector {config['address']}")
    print("Start the service with: wardwatch-agent run")
    return 0


def cmd_generalize(args: argparse.Namespace) -> int:
    state = AgentState(args.state)
    if not args.yes:
        raise AgentError("generalize wipes this device's identity and unsent alerts; run again with --yes")
    removed = generalize(state)
    print(f"Generalised {state.root}: removed {len(removed)} file(s). Enrol again after the image is deployed.")
    return 0


def _private_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


async def rekey(state: AgentState, token: str) -> str:
    """Make a new identity and enrol it with a one-time re-key token; returns the new agent id.

    The collector issued the token to this identity after it saw two live devices presenting it. The request is
    signed by the new key (proof of possession) and by the old one (so only a holder of the old identity can
    redeem the token). Keys are written only after the collector answered, so a failure leaves the old identity.
    """
    config = state.config()
    ca_pem = state.ca_path.read_bytes()
    old_identity = state.identity_key()
    identity = ed25519.Ed25519PrivateKey.generate()
    tls_key = ec.generate_private_key(ec.SECP256R1())
    agent_id = agent_id_of(identity.public_key())
    csr_pem = _csr(tls_key, agent_id)
    request = pb.EnrollRequest(token=token, csr_pem=csr_pem, identity_public_key=spki_der(identity.public_key()),
                               identity_proof=identity.sign(csr_pem), host=host_info(),
                               previous_identity_proof=old_identity.sign(csr_pem))
    es = EnrolmentString(config["address"], config["enrol_address"], token, config.get("ca_pin", ""),
                         config.get("site", ""))
    resp = await _enroll_rpc(es, ca_pem, request)
    if resp.agent_id != agent_id:
        raise AgentError("the collector answered the re-key for a different agent id; keeping the old identity")
    write_private(state.identity_key_path, _private_pem(identity))
    write_private(state.tls_key_path, _private_pem(tls_key))
    state.save_certificate(resp.certificate_pem)
    state.save_config(config | {"agent_id": agent_id, "previous_agent_id": config["agent_id"],
                                "rekeyed_at": dt.datetime.now(dt.UTC).isoformat()})
    return agent_id


async def _deregister(state: AgentState, code: str) -> None:
    from agent.spool import Spool
    from agent.uplink import Uplink

    uplink = Uplink(state)
    spool = Spool(state.spool_path)
    try:
        # Alerts still waiting go first: after the collector marks the device removed it refuses them.
        while spool.depth() and (await uplink.send_batch(spool)).sent:
            pass
        await uplink.stub.Deregister(pb.DeregisterRequest(uninstall_code=code, reason="uninstall"), timeout=20)
    finally:
        spool.close()
        await uplink.close()


def cmd_uninstall(args: argparse.Namespace) -> int:
    """Tell the collector this device is being removed (it checks the uninstall code), then wipe the state."""
    state = AgentState(args.state)
    config = state.config()
    if not args.code:
        raise AgentError("uninstalling needs the uninstall code set on the collector: --code CODE")
    try:
        asyncio.run(_deregister(state, args.code))
    except grpc.RpcError as exc:
        raise AgentError(f"uninstall refused: {describe_rpc_error(exc, config['address'])}") from exc
    removed = generalize(state)
    print(f"Agent {config['agent_id']} is marked removed on the collector; wiped {len(removed)} file(s) in "
          f"{state.root}.")
    return 0
