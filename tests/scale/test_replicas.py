"""Several collector processes on one PostgreSQL database: no state shared in memory, nothing lost or doubled."""

import asyncio
import signal

import psutil
import pytest

from agent.alerts import Signer, make_test_alert
from agent.channel import secure_channel
from agent.state import AgentState
from protos import wardwatch_pb2 as pb
from protos import wardwatch_pb2_grpc as pb_grpc
from tests.harness import Agent, Collector, queue_alerts, stored_seqs, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def replicas(tmp_path, pg_url):
    """Two independent collector processes: same CA and data, same database, different ports."""
    first = Collector(tmp_path / "collector", pg_url).init().start()
    second = Collector(tmp_path / "collector", pg_url)
    second.log = tmp_path / "replica2-serve.log"
    second.start()
    yield first, second
    second.stop()
    first.stop()


def _envelopes(state: AgentState, seqs: range) -> list[pb.SignedAlert]:
    signer = Signer(key=state.identity_key(), agent_id=state.agent_id)
    out = []
    for seq in seqs:
        env = pb.SignedAlert()
        env.ParseFromString(signer.envelope(make_test_alert("bullying", 3, f"alert {seq}"), seq))
        out.append(env)
    return out


def test_one_batch_delivered_to_two_replicas_at_once_is_stored_once(tmp_path, replicas):
    first, second = replicas
    agent = Agent(tmp_path / "agent").enroll(first.token())
    state = AgentState(agent.state)
    batch = _envelopes(state, range(1, 301))

    async def both():
        async def send(port):
            ca, key, cert = state.credentials()
            async with secure_channel(f"127.0.0.1:{port}", ca, key, cert) as channel:
                return await pb_grpc.AgentGatewayStub(channel).UploadBatch(
                    pb.UploadBatchRequest(alerts=batch), timeout=60)
        return await asyncio.gather(send(first.port), send(second.port))

    r1, r2 = asyncio.run(both())
    for a, b in zip(r1.acks, r2.acks, strict=True):
        assert {a.status, b.status} <= {pb.AlertAck.STATUS_STORED, pb.AlertAck.STATUS_DUPLICATE}
        assert a.alert_id == b.alert_id  # both replicas name the one stored row
    stored_now = sum(a.status == pb.AlertAck.STATUS_STORED for a in [*r1.acks, *r2.acks])
    assert stored_now == 300
    assert stored_seqs(first, state.agent_id) == list(range(1, 301))


def test_agent_whose_worker_is_killed_reconnects_and_loses_nothing(tmp_path, pg_url):
    collector = Collector(tmp_path / "collector", pg_url).init().start(workers=2)
    try:
        supervisor = psutil.Process(collector.proc.pid)
        def listens(proc: psutil.Process) -> bool:
            try:
                return any(c.status == psutil.CONN_LISTEN and c.laddr.port == collector.port
                           for c in proc.net_connections(kind="tcp"))
            except psutil.NoSuchProcess:
                return False

        def serving() -> list[psutil.Process]:  # the workers on the agents' port (a standby waits unbound)
            return [p for p in supervisor.children() if listens(p)]

        wait_for(lambda: len(serving()) == 2, 30, "two workers")
        agent = Agent(tmp_path / "agent").enroll(collector.token())
        agent_id = agent.config()["agent_id"]
        seqs = queue_alerts(agent.state, 1500)
        agent.start()
        wait_for(lambda: len(stored_seqs(collector, agent_id)) > 0, 60, "the first batch")
        # Kill the worker holding the agent's connection (whichever it is, kill both in turn is too much:
        # kill the one with an established connection to the agent's port).
        victim = next(p for p in serving()
                      if any(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == collector.port
                             for c in p.net_connections(kind="tcp")))
        victim.send_signal(signal.SIGKILL)
        assert len(stored_seqs(collector, agent_id)) < 1500, "backlog drained before the kill; make it larger"
        wait_for(lambda: len(stored_seqs(collector, agent_id)) == 1500, 180, "the whole backlog")
        assert stored_seqs(collector, agent_id) == seqs
        # The supervisor replaced the dead worker.
        wait_for(lambda: len(serving()) == 2 and victim.pid not in [c.pid for c in serving()],
                 30, "a replacement worker")
        agent.stop()
    finally:
        collector.stop()
