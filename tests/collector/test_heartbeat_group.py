"""Heartbeats recorded as a group, in one transaction, on SQLite and PostgreSQL: each agent's news lands on its
own row, an agent that may not connect is answered with its status and records nothing, and a cloned image
found in the middle of a group is flagged as it would be alone."""

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit, fleet
from collector.gateway import AgentGateway, PeerAgent, _distinct_agents
from collector.pki import CollectorPki, PkiPaths, create_pki
from collector.store.models import Agent, AgentCommand, Site
from protos import wardwatch_pb2 as pb
from protos.identity import agent_id_of, spki_der


@pytest.fixture
def gateway(tmp_path, store_engine) -> AgentGateway:
    paths = PkiPaths(tmp_path / "collector" / "pki")
    create_pki(paths, ["localhost"])
    audit.use_data_dir(tmp_path / "collector")  # a clone is audited
    return AgentGateway(store_engine, CollectorPki(paths))


def _enrolled(engine, status: str = "active", **columns) -> str:
    """An agent row with a real identity key (the gateway parses it), returning the agent id."""
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    agent_id = agent_id_of(public)
    with Session(engine) as s, s.begin():
        site = s.scalar(select(Site)) or Site(name="Test site")
        s.add(site)
        s.flush()
        s.add(Agent(id=agent_id, site_id=site.id, identity_public_key=spki_der(public), cert_serial="1",
                    cert_not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=30), status=status, **columns))
    return agent_id


def _beat(agent_id: str, instance: str, hostname: str, spool_depth: int,
          clock_ahead_s: float = 0.0) -> tuple[str, pb.HeartbeatRequest, dt.datetime]:
    """One heartbeat as the gateway hands it to the group: the agent, its request and when it arrived."""
    received = dt.datetime.now(dt.UTC)
    request = pb.HeartbeatRequest(instance_id=instance, bundle_version="bv-7", spool_depth=spool_depth)
    request.host.hostname = hostname
    request.clock.FromDatetime(received + dt.timedelta(seconds=clock_ahead_s))
    return agent_id, request, received


def test_a_group_records_each_agents_own_news_and_refuses_the_ones_that_may_not_connect(gateway, store_engine):
    active = [_enrolled(store_engine) for _ in range(3)]
    revoked = _enrolled(store_engine, status="revoked", hostname="before-revocation")
    unknown = "f" * 32
    items = [_beat(agent_id, f"inst-{n}", f"pc-{n}", n, clock_ahead_s=30 * n) for n, agent_id in enumerate(active)]
    items.insert(1, _beat(revoked, "inst-r", "after-revocation", 99))
    items.append(_beat(unknown, "inst-u", "nobody", 1))

    arrived = {agent_id: when for agent_id, _, when in items}

    answers = gateway._heartbeats(items)

    peers = [peer for peer, _ in answers]
    assert [p.agent_id for p in peers if isinstance(p, PeerAgent)] == active
    assert peers[1] == "revoked" and peers[-1] is None
    with Session(store_engine) as s:
        rows = {a.id: a for a in s.scalars(select(Agent))}
    for n, agent_id in enumerate(active):
        row = rows[agent_id]
        assert (row.hostname, row.spool_depth, row.last_instance_id) == (f"pc-{n}", n, f"inst-{n}")
        assert f"inst-{n}" in row.recent_instances
        # Seen, and the clock compared, when the heartbeat arrived, not when its group was committed.
        seen = row.last_seen_at
        assert (seen.astimezone(dt.UTC) if seen.tzinfo else seen.replace(tzinfo=dt.UTC)) == arrived[agent_id]
        assert row.clock_skew_s == pytest.approx(30 * n, abs=0.001)
    assert rows[revoked].hostname == "before-revocation" and rows[revoked].last_seen_at is None
    assert unknown not in rows


def test_a_clone_found_inside_a_group_is_flagged_and_the_rest_of_the_group_is_recorded(gateway, store_engine):
    now = dt.datetime.now(dt.UTC)
    window = fleet.load_fleet_policy(gateway.pki.paths.root.parent).clone_window
    # Two processes share this identity: "golden-a" beat a minute ago, then "golden-b"; now "golden-a" again.
    recent = fleet.remember_instance({}, "golden-a", now - dt.timedelta(minutes=1), window)
    recent = fleet.remember_instance(recent, "golden-b", now - dt.timedelta(seconds=30), window)
    cloned = _enrolled(store_engine, last_instance_id="golden-b", recent_instances=recent)
    honest = _enrolled(store_engine)

    answers = gateway._heartbeats([_beat(honest, "inst-h", "pc-h", 0), _beat(cloned, "golden-a", "pc-c", 0)])

    assert all(isinstance(peer, PeerAgent) for peer, _ in answers)
    with Session(store_engine) as s:
        flagged = s.get(Agent, cloned)
        assert flagged.clone_detected_at is not None
        assert fleet.CLONED_IDENTITY in {g["gap"] for g in flagged.coverage_gaps}
        assert set(flagged.recent_instances) == {"golden-a", "golden-b"}
        rekeys = s.scalars(select(AgentCommand).where(AgentCommand.agent_id == cloned)).all()
        assert sorted(c.payload["instance_id"] for c in rekeys) == ["golden-a", "golden-b"]
        assert s.get(Agent, honest).last_instance_id == "inst-h"
        assert s.get(Agent, honest).clone_detected_at is None


def test_a_group_stops_at_an_agents_second_heartbeat():
    """Two heartbeats of one identity are recorded one after the other, so that the second sees the first."""
    beats = {agent_id: _beat(agent_id, "i", "pc", 0) for agent_id in "abc"}
    assert _distinct_agents([beats["a"], beats["b"], beats["a"], beats["c"]]) == 2
    assert _distinct_agents([beats["a"], beats["b"]]) == 2
