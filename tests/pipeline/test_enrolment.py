"""Enrolment over real TLS: tokens, CA pin, identity, and the errors a technician sees."""

import datetime as dt
import json

from sqlalchemy import create_engine, text

from protos.enrolment import EnrolmentString
from tests.harness import Agent, store_url


def _one_clear_line(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_enrolled_agent_sends_a_signed_alert_stored_once(collector, enrolled):
    out = enrolled.cli("send-test-alert", "--category", "self-harm", "--severity", "4", "--text", "hello").stdout
    assert "acknowledged" in out and "seq 1" in out
    [alert] = collector.alerts()
    assert alert["agent_id"] == enrolled.config()["agent_id"]
    assert (alert["category"], alert["severity"], alert["matched"], alert["seq"]) == ("self-harm", 4, "hello", 1)
    assert alert["signature_ok"] is True
    assert collector.cli("alerts", "verify").returncode == 0


def test_agent_id_is_sha256_of_the_identity_key(enrolled):
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((enrolled.state / "identity.key").read_bytes(), None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    agent_id = hashlib.sha256(spki).hexdigest()[:32]
    assert enrolled.config()["agent_id"] == agent_id
    cert = x509.load_pem_x509_certificate((enrolled.state / "client.crt").read_bytes())
    assert cert.subject.rfc4514_string().endswith(f"CN={agent_id}") or agent_id in cert.subject.rfc4514_string()


def test_garbage_enrolment_string_gets_one_clear_line(tmp_path):
    proc = Agent(tmp_path / "a").cli("enroll", "not-a-valid-enrolment-string", check=False)
    assert "not a WardWatch enrolment string" in _one_clear_line(proc)


def test_collector_whose_ca_does_not_match_the_pin_is_refused(tmp_path, collector):
    es = EnrolmentString.decode(collector.token())
    forged = EnrolmentString(es.address, es.enrol_address, es.token, "0" * 64, es.site).encode()
    proc = Agent(tmp_path / "a").cli("enroll", forged, check=False)
    assert "does not match the pin" in _one_clear_line(proc)
    assert not (tmp_path / "a" / "client.crt").exists()


def test_one_use_token_cannot_enrol_twice(tmp_path, collector):
    token = collector.token(uses=1)
    Agent(tmp_path / "a").enroll(token)
    proc = Agent(tmp_path / "b").cli("enroll", token, check=False)
    assert "used up" in _one_clear_line(proc)


def test_expired_and_revoked_tokens_are_refused(tmp_path, collector):
    expired, revoked = collector.token(), collector.token()
    engine = create_engine(store_url(collector))
    with engine.begin() as conn:
        conn.execute(text("UPDATE enrolment_tokens SET expires_at = :t WHERE id = :i"),
                     {"t": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
                      "i": EnrolmentString.decode(expired).token.split(".")[0]})
    engine.dispose()
    collector.cli("token", "revoke", EnrolmentString.decode(revoked).token.split(".")[0])
    assert "expired" in _one_clear_line(Agent(tmp_path / "a").cli("enroll", expired, check=False))
    assert "revoked" in _one_clear_line(Agent(tmp_path / "b").cli("enroll", revoked, check=False))
    tokens = [json.loads(line) for line in collector.cli("token", "list", "--json").stdout.splitlines()]
    assert sorted(t["state"] for t in tokens) == ["expired", "revoked"]


def test_wrong_secret_for_a_real_token_id_is_refused(tmp_path, collector):
    es = EnrolmentString.decode(collector.token())
    token_id = es.token.split(".")[0]
    bad = EnrolmentString(es.address, es.enrol_address, f"{token_id}.wrong", es.ca_pin, es.site).encode()
    assert "unknown enrolment token" in _one_clear_line(Agent(tmp_path / "a").cli("enroll", bad, check=False))


def test_revoked_agent_is_refused_and_its_alert_stays_spooled(collector, enrolled):
    collector.cli("agents", "revoke", enrolled.config()["agent_id"])
    proc = enrolled.cli("send-test-alert", "--timeout", "3", check=False)
    assert proc.returncode == 1 and "PERMISSION_DENIED" in proc.stdout and "revoked" in proc.stdout
    status = json.loads(enrolled.cli("status", "--json").stdout)
    assert status["spool_depth"] == 1
    assert collector.alerts() == []


def test_certificate_of_an_agent_unknown_to_the_collector_is_refused(collector, enrolled):
    engine = create_engine(store_url(collector))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM agents"))
    engine.dispose()
    proc = enrolled.cli("send-test-alert", "--timeout", "3", check=False)
    assert proc.returncode == 1 and "UNAUTHENTICATED" in proc.stdout and "unknown agent" in proc.stdout


def test_ttl_and_uses_are_validated_with_a_clear_error(collector):
    for args, needle in ((["--ttl", "forever"], "--ttl"), (["--ttl", "90d"], "at most 30d"),
                         (["--uses", "0"], "--uses")):
        proc = collector.cli("token", "create", *args, check=False)
        assert needle in _one_clear_line(proc)
