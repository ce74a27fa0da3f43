"""UploadBatch item by item: bad items are refused with a reason, good items in the same batch are stored."""

import asyncio

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.alerts import Signer, make_test_alert
from agent.channel import secure_channel
from agent.state import AgentState
from protos import wardwatch_pb2 as pb
from protos import wardwatch_pb2_grpc as pb_grpc

A = pb.AlertAck


def _signed(signer: Signer, seq: int, **fields) -> pb.SignedAlert:
    env = pb.SignedAlert()
    env.ParseFromString(signer.envelope(make_test_alert("bullying", 3, fields.pop("text", f"item {seq}")), seq))
    return env


async def _upload(state: AgentState, address: str, envelopes: list[pb.SignedAlert]) -> pb.UploadBatchResponse:
    ca, key, cert = state.credentials()
    async with secure_channel(address, ca, key, cert) as channel:
        return await pb_grpc.AgentGatewayStub(channel).UploadBatch(
            pb.UploadBatchRequest(alerts=envelopes), timeout=20)


def test_each_bad_item_is_rejected_with_a_reason_and_good_ones_are_stored(collector, enrolled):
    state = AgentState(enrolled.state)
    signer = Signer(key=state.identity_key(), agent_id=state.agent_id)
    good1, good2 = _signed(signer, 1), _signed(signer, 2)

    forged = _signed(signer, 3)
    forged.signature = ed25519.Ed25519PrivateKey.generate().sign(forged.alert)
    altered = _signed(signer, 4)
    altered.alert = altered.alert.replace(b"item 4", b"item X")
    wrong_id = _signed(signer, 5)
    wrong_id.agent_id = "0" * 32
    garbage = b"\xff\xff\xff not a protobuf"
    malformed = pb.SignedAlert(alert=garbage, signature=signer.key.sign(garbage), agent_id=signer.agent_id)
    huge = _signed(signer, 6, text="x" * 70_000)
    duplicate = _signed(signer, 1)

    batch = [good1, forged, altered, wrong_id, malformed, huge, good2, duplicate]
    resp = asyncio.run(_upload(state, f"127.0.0.1:{collector.port}", batch))
    by_index = {a.index: a for a in resp.acks}
    assert [by_index[i].status for i in range(len(batch))] == [
        A.STATUS_STORED, A.STATUS_REJECTED, A.STATUS_REJECTED, A.STATUS_REJECTED, A.STATUS_REJECTED,
        A.STATUS_REJECTED, A.STATUS_STORED, A.STATUS_DUPLICATE]
    assert "signature" in by_index[1].reason and "signature" in by_index[2].reason
    assert "agent id" in by_index[3].reason
    assert "not a valid Alert" in by_index[4].reason
    assert "larger than" in by_index[5].reason
    assert by_index[7].alert_id == by_index[0].alert_id
    stored = collector.alerts()
    assert sorted(a["seq"] for a in stored) == [1, 2]

    # The same batch again (a resend after a lost ack) stores nothing new and acks the good items as duplicates.
    again = asyncio.run(_upload(state, f"127.0.0.1:{collector.port}", [good1, good2]))
    assert [a.status for a in again.acks] == [A.STATUS_DUPLICATE, A.STATUS_DUPLICATE]
    assert len(collector.alerts()) == 2


def test_enrolment_port_serves_nothing_but_enrolment(collector, enrolled):
    state = AgentState(enrolled.state)

    async def call():
        async with secure_channel(f"127.0.0.1:{collector.enrol_port}", state.ca_path.read_bytes()) as channel:
            await pb_grpc.AgentGatewayStub(channel).UploadBatch(pb.UploadBatchRequest(), timeout=10)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(call())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_mtls_port_refuses_a_client_without_certificate(collector, enrolled):
    state = AgentState(enrolled.state)

    async def call():
        async with secure_channel(f"127.0.0.1:{collector.port}", state.ca_path.read_bytes()) as channel:
            await pb_grpc.AgentGatewayStub(channel).Heartbeat(pb.HeartbeatRequest(), timeout=5)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(call())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake itself fails


def test_injected_keys_are_marked_on_the_stored_alert(collector, enrolled):
    from agent.service import alert_from_match

    state = AgentState(enrolled.state)
    signer = Signer(key=state.identity_key(), agent_id=state.agent_id)
    message = {"type": "match", "injected": True, "window_title": "On-Screen Keyboard",
               "match": {"category": "bullying", "severity": 3, "rule": "bullying.x", "matched": "loser",
                         "source": "typed"}}
    env = pb.SignedAlert()
    env.ParseFromString(signer.envelope(alert_from_match(message, "pupil", "secondary"), 1))
    asyncio.run(_upload(state, f"127.0.0.1:{collector.port}", [env]))
    [stored] = collector.alerts()
    assert stored["details"] == {"injected": True}
