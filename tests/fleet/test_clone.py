"""A golden image that was not generalised: two live agents present one identity, the collector flags it and
both re-key with one-time tokens that only the old identity's holder can redeem."""

import asyncio
import datetime as dt
import json
import shutil

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from agent.enrol import _csr, _enroll_rpc, host_info
from agent.state import AgentState
from collector import fleet
from collector.store.models import Agent as AgentRow
from collector.store.models import AgentCommand
from protos import wardwatch_pb2 as pb
from protos.enrolment import EnrolmentString
from protos.identity import agent_id_of, spki_der
from tests.harness import Agent, store_url, wait_for


def _agents(collector) -> dict[str, dict]:
    rows = [json.loads(line) for line in collector.cli("agents", "list", "--json").stdout.splitlines()]
    return {row["id"]: row for row in rows}


def _db(collector, sql: str, **params) -> list[tuple]:
    engine = create_engine(store_url(collector))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def test_two_live_clones_are_flagged_and_both_rekey(tmp_path, any_store_collector, agents):
    collector = any_store_collector
    original = Agent(tmp_path / "pc1").enroll(collector.token())
    old_id = original.config()["agent_id"]
    shutil.copytree(original.state, tmp_path / "pc2")  # the image was captured without 'generalize'
    clone = Agent(tmp_path / "pc2")
    agents += [original, clone]
    original.start()
    clone.start()

    wait_for(lambda: _agents(collector)[old_id]["status"] == "rekeyed", 90, "both clones to re-key")
    new_ids = {original.config()["agent_id"], clone.config()["agent_id"]}
    assert len(new_ids) == 2 and old_id not in new_ids
    listed = _agents(collector)
    assert {g["gap"] for g in listed[old_id]["coverage_gaps"]} == {"cloned-identity"}
    assert all(listed[i]["status"] == "active" for i in new_ids)
    assert _db(collector, "SELECT rekeyed_from FROM agents WHERE id IN (:a, :b)", a=min(new_ids),
               b=max(new_ids)) == [(old_id,), (old_id,)]

    # The technician hears about it from each new identity, in a signed coverage alert.
    def cloned_alerts():
        return [a for a in collector.alerts() if a["kind"] == "coverage" and a["rule"] == "coverage.cloned-identity"]
    wait_for(lambda: {a["agent_id"] for a in cloned_alerts()} == new_ids, 30, "a cloned-identity alert from each")
    assert all(old_id in a["details"]["coverage"]["detail"] for a in cloned_alerts())
    assert collector.cli("alerts", "verify").returncode == 0

    # Both keep working under their own identities; the shared one is refused from now on.
    for agent in (original, clone):
        assert "acknowledged" in agent.cli("send-test-alert", "--text", "after re-key").stdout
    stored = {a["agent_id"] for a in collector.alerts() if a["matched"] == "after re-key"}
    assert stored == new_ids
    # The re-key tokens are spent, and their secrets are gone from the command table once delivered.
    assert _db(collector, "SELECT uses, uses_allowed FROM enrolment_tokens WHERE rekey_of = :o", o=old_id) == \
        [(1, 1), (1, 1)]
    payloads = [p if isinstance(p, dict) else json.loads(p)  # PostgreSQL's driver decodes JSON itself
                for (p,) in _db(collector, "SELECT payload FROM agent_commands WHERE kind = 'rekey'")]
    assert len(payloads) == 2 and not any("token" in p for p in payloads)


def test_a_restarted_agent_is_not_a_clone(tmp_path, collector, agents):
    agent = Agent(tmp_path / "pc").enroll(collector.token())
    agent_id = agent.config()["agent_id"]
    agents.append(agent)
    for _ in range(3):  # three processes one after another: new instance ids, never alternating
        agent.start()
        before = _db(collector, "SELECT last_instance_id FROM agents WHERE id = :a", a=agent_id)
        wait_for(lambda b=before: _db(collector, "SELECT last_instance_id FROM agents WHERE id = :a", a=agent_id)
                 != b, 30, "a heartbeat from the new process")
        agent.stop()
    assert _db(collector, "SELECT clone_detected_at, status FROM agents WHERE id = :a", a=agent_id) == \
        [(None, "active")]
    assert _db(collector, "SELECT count(*) FROM agent_commands") == [(0,)]


def _queue_rekey(collector, agent_id: str) -> str:
    """The collector's own re-key path, as if it had seen a clone of this agent; returns the token it issued."""
    engine = create_engine(store_url(collector))
    try:
        with Session(engine) as s, s.begin():
            fleet.flag_clone(s, s.get(AgentRow, agent_id), ["some-instance"], dt.datetime.now(dt.UTC))
        with Session(engine) as s:
            return s.scalars(select(AgentCommand.payload)).one()["token"]
    finally:
        engine.dispose()


def test_a_rekey_token_is_useless_without_the_old_identity_key(tmp_path, collector):
    victim = Agent(tmp_path / "pc").enroll(collector.token())
    victim_id = victim.config()["agent_id"]
    token = _queue_rekey(collector, victim_id)

    # Someone who read the token but holds only their own key signs the "previous identity" proof with it.
    intruder = ed25519.Ed25519PrivateKey.generate()
    csr = _csr(ec.generate_private_key(ec.SECP256R1()), agent_id_of(intruder.public_key()))
    request = pb.EnrollRequest(token=token, csr_pem=csr, identity_public_key=spki_der(intruder.public_key()),
                               identity_proof=intruder.sign(csr), host=host_info(),
                               previous_identity_proof=intruder.sign(csr))
    config = victim.config()
    es = EnrolmentString(config["address"], config["enrol_address"], token, config["ca_pin"], "")
    with pytest.raises(grpc.RpcError) as refused:
        asyncio.run(_enroll_rpc(es, AgentState(victim.state).ca_path.read_bytes(), request))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "another device" in refused.value.details()
    assert _db(collector, "SELECT uses FROM enrolment_tokens WHERE rekey_of = :o", o=victim_id) == [(0,)]
