"""Certificates renew themselves before they expire, and the collector's CA rotates with an overlap, all without
re-enrolling a single agent."""

import datetime as dt
import json

from cryptography import x509
from sqlalchemy import create_engine, text

from tests.fleet.conftest import fleet_collector
from tests.harness import Agent, agent_commands, store_url, wait_for


def _cert(agent: Agent) -> x509.Certificate:
    return x509.load_pem_x509_certificate((agent.state / "client.crt").read_bytes())


def _trusted(agent: Agent) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((agent.state / "ca.crt").read_bytes())


def _collector_ca(collector, name: str = "ca.crt") -> x509.Certificate:
    return x509.load_pem_x509_certificate((collector.data / "pki" / name).read_bytes())


def _agents(collector) -> list[dict]:
    return [json.loads(line) for line in collector.cli("agents", "list", "--json").stdout.splitlines()]


def test_a_short_lived_certificate_is_renewed_before_it_expires(tmp_path, agents):
    collector = fleet_collector(tmp_path / "collector", heartbeat_interval_s=1, agent_cert_lifetime="30s")
    try:
        agent = Agent(tmp_path / "pc").enroll(collector.token())
        agents.append(agent)
        first = _cert(agent)
        assert first.not_valid_after_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=30)
        tls_key = (agent.state / "tls.key").read_bytes()
        agent.start()
        renewed = wait_for(lambda: _cert(agent) if _cert(agent).serial_number != first.serial_number else None,
                           60, "the running agent to renew its certificate")
        # Renewed while the first one was still valid, over the authenticated channel: same identity, new TLS key.
        assert renewed.not_valid_before_utc < first.not_valid_after_utc < renewed.not_valid_after_utc
        assert (agent.state / "tls.key").read_bytes() != tls_key
        assert agent.config()["agent_id"] in renewed.subject.rfc4514_string()
        # After the first certificate's expiry the device still delivers, with the same agent id.
        wait_for(lambda: dt.datetime.now(dt.UTC) > first.not_valid_after_utc, 60, "the first certificate to expire")
        assert "acknowledged" in agent.cli("send-test-alert", "--text", "after expiry").stdout
        [stored] = [a for a in collector.alerts() if a["matched"] == "after expiry"]
        assert stored["agent_id"] == agent.config()["agent_id"]
        [row] = _agents(collector)
        assert dt.datetime.fromisoformat(row["cert_not_after"]) > first.not_valid_after_utc
    finally:
        collector.stop()


def test_ca_rotation_with_overlap_moves_the_fleet_without_re_enrolment(tmp_path, collector, agents):
    agent = Agent(tmp_path / "pc").enroll(collector.token())
    agents.append(agent)
    agent_id = agent.config()["agent_id"]
    old_ca = _collector_ca(collector)
    agent.start()

    assert "New CA made" in collector.cli("ca", "rotate").stdout
    new_ca = _collector_ca(collector, "ca-next.crt")
    collector.stop()
    collector.start()
    # Overlap: the agent learns both CAs over its authenticated channel and renews under the new one.
    wait_for(lambda: _cert(agent).issuer == new_ca.subject, 60, "a certificate from the new CA")
    wait_for(lambda: {c.subject for c in _trusted(agent)} == {old_ca.subject, new_ca.subject}, 30,
             "the agent to trust both CAs")
    assert "1 of 1 active agent(s)" in collector.cli("ca", "status").stdout

    # A PC enrolled during the overlap still pins the CA the server certificate chains to.
    late = Agent(tmp_path / "late").enroll(collector.token())
    assert _cert(late).issuer == new_ca.subject

    assert "rotation finished" in collector.cli("ca", "rotate", "--finish").stdout
    collector.stop()
    collector.start()
    assert _collector_ca(collector).subject == new_ca.subject
    wait_for(lambda: [c.subject for c in _trusted(agent)] == [new_ca.subject], 60,
             "the agent to drop the retired CA")
    assert agent.config()["agent_id"] == agent_id
    assert "acknowledged" in agent.cli("send-test-alert", "--text", "after rotation").stdout
    assert {a["agent_id"] for a in collector.alerts() if a["matched"] == "after rotation"} == {agent_id}
    # New enrolment strings pin the new CA; nobody re-enrolled.
    assert Agent(tmp_path / "new").enroll(collector.token()).config()["ca_pin"] != late.config()["ca_pin"]
    assert len(_agents(collector)) == 3


def test_commands_still_reach_the_agent_after_it_renews_its_certificate(tmp_path, agents):
    """Renewing moves the agent to a new connection. Closing the old one ended the command stream in a way its
    loop did not expect, and the agent took no more commands until it was restarted."""
    collector = fleet_collector(tmp_path / "collector", heartbeat_interval_s=1, agent_cert_lifetime="30s")
    try:
        agent = Agent(tmp_path / "pc").enroll(collector.token())
        agents.append(agent)
        agent_id = agent.config()["agent_id"]
        first = _cert(agent)
        agent.start()
        wait_for(lambda: _cert(agent).serial_number != first.serial_number, 60, "the agent to renew its certificate")
        engine = create_engine(store_url(collector))
        with engine.begin() as conn:  # a command for a bundle that does not exist: the agent must answer it
            conn.execute(text("INSERT INTO agent_commands (id, agent_id, kind, payload, created_at, detail) "
                              "VALUES ('cmd-after-renewal', :a, 'update_bundle', '{\"version\": \"missing-9\"}', "
                              "CURRENT_TIMESTAMP, '')"), {"a": agent_id})
        engine.dispose()
        answered = wait_for(lambda: [c for c in agent_commands(collector, agent_id)
                                     if c["id"] == "cmd-after-renewal" and c["ok"] is not None], 60,
                            "the agent to answer the command")
        assert not answered[0]["ok"] and "bundle" in answered[0]["detail"]
        assert "Traceback" not in agent.log.read_text()
    finally:
        collector.stop()
