"""A heartbeat records the agent's news in one transaction, and refuses a revoked agent at once."""

import asyncio
import json

import grpc
import pytest
from sqlalchemy import create_engine, text

from agent.channel import secure_channel
from agent.state import AgentState
from protos import wardwatch_pb2 as pb
from protos import wardwatch_pb2_grpc as pb_grpc
from tests.harness import store_url


def _heartbeat(collector, state: AgentState, instance: str) -> pb.HeartbeatResponse:
    async def beat():
        ca, key, cert = state.credentials()
        async with secure_channel(f"127.0.0.1:{collector.port}", ca, key, cert) as channel:
            req = pb.HeartbeatRequest(instance_id=instance, bundle_version="bv-test", spool_depth=7)
            req.host.hostname = "lab-pc-07"
            req.clock.GetCurrentTime()
            req.gaps.add(gap="keyboard", detail="no keyboard access in this session")
            return await pb_grpc.AgentGatewayStub(channel).Heartbeat(req, timeout=30)
    return asyncio.run(beat())


def _row(collector, agent_id: str):
    engine = create_engine(store_url(collector))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT last_seen_at, last_instance_id, spool_depth, bundle_version, hostname, "
                                     "coverage_gaps, recent_instances FROM agents WHERE id = :a"),
                                {"a": agent_id}).one()
    finally:
        engine.dispose()


def test_a_heartbeat_records_the_agents_news(collector, enrolled):
    state = AgentState(enrolled.state)
    resp = _heartbeat(collector, state, "inst-a")
    assert resp.heartbeat_interval_s == 60 and resp.trust_bundle_sha256
    row = _row(collector, state.agent_id)
    assert row.last_seen_at is not None and row.last_instance_id == "inst-a"
    assert (row.spool_depth, row.bundle_version, row.hostname) == (7, "bv-test", "lab-pc-07")
    gaps = row.coverage_gaps if isinstance(row.coverage_gaps, list) else json.loads(row.coverage_gaps)
    assert gaps == [{"gap": "keyboard", "detail": "no keyboard access in this session"}]
    assert "inst-a" in str(row.recent_instances)


def test_a_revoked_agent_is_refused_at_its_next_heartbeat(collector, enrolled):
    """The heartbeat reads the agent's status in its own transaction, so revocation does not wait for the
    replica's peer cache to expire, and nothing the refused agent says is recorded."""
    state = AgentState(enrolled.state)
    _heartbeat(collector, state, "inst-a")  # the replica now holds a fresh, active cache entry
    before = _row(collector, state.agent_id).last_seen_at
    collector.cli("agents", "revoke", state.agent_id)
    with pytest.raises(grpc.RpcError) as refused:
        _heartbeat(collector, state, "inst-b")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in refused.value.details()
    after = _row(collector, state.agent_id)
    assert after.last_seen_at == before and after.last_instance_id == "inst-a"
