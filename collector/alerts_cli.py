"""`alerts list|verify` and `agents list|revoke`: the operator's view from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit, fleet
from collector.context import open_store
from collector.errors import CollectorError
from collector.fleet_health import is_collector_generated
from collector.ingest import identity_verifier, verify_signature
from collector.reports.figures import Milestones, review_milestones
from collector.store.models import Agent, Alert

BATCH = 1000


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


def alert_json(a: Alert, review: Milestones | None = None) -> dict:
    review = review or Milestones()
    return {
        "id": a.id, "agent_id": a.agent_id, "seq": a.seq, "hostname": a.hostname, "user": a.user_name,
        "kind": a.kind, "category": a.category, "severity": a.severity, "rule": a.rule,
        "confidence": round(a.confidence, 3), "source": a.source, "matched": a.matched,
        "window_title": a.window_title, "application": a.application, "details": a.details,
        "created_at": _iso(a.created_at), "received_at": _iso(a.received_at), "state": a.state,
        "signature_ok": a.signature_ok, "site_id": a.site_id, "age_band": a.age_band,
        # The review milestones the head's reports count by (collector.reports.figures defines them).
        "first_review_at": _iso(review.first_review_at), "second_review_at": _iso(review.second_review_at),
        "outcome": review.outcome,
    }


def cmd_alerts_list(args: argparse.Namespace) -> int:
    with open_store(args) as (_cfg, engine), Session(engine) as session:
        query = select(Alert).order_by(Alert.received_at, Alert.agent_id, Alert.seq)
        if args.limit:
            query = query.limit(args.limit)
        reviews = review_milestones(session) if args.json else {}
        for a in session.scalars(query).yield_per(BATCH):
            if args.json:
                print(json.dumps(alert_json(a, reviews.get(a.id)), ensure_ascii=False))
            else:
                print(f"{_iso(a.received_at)[:19]}  {a.state:15} sev {a.severity}  {a.kind:8} "
                      f"{a.category or '-':18} {a.hostname:20} {a.user_name or '-':12} {a.id}")
    return 0


def cmd_alerts_verify(args: argparse.Namespace) -> int:
    """Re-verify every stored alert against the identity key of the agent that sent it."""
    checked = bad = collector_made = 0
    with open_store(args) as (_cfg, engine), Session(engine) as session:
        keys = {a.id: identity_verifier(load_der_public_key(a.identity_public_key))
                for a in session.scalars(select(Agent))}
        for a in session.scalars(select(Alert).order_by(Alert.agent_id, Alert.seq)).yield_per(BATCH):
            if is_collector_generated(a.seq):  # e.g. 'device silent': the collector's word, no agent signature
                collector_made += 1
                continue
            checked += 1
            key = keys.get(a.agent_id)
            if key is None or not verify_signature(key, a.payload, a.signature):
                bad += 1
                print(f"BAD SIGNATURE: alert {a.id} (agent {a.agent_id}, seq {a.seq})")
    print(f"{checked} alert(s) checked, {bad} failed verification"
          + (f"; {collector_made} raised by the collector itself (not agent-signed)" if collector_made else ""))
    return 1 if bad else 0


def cmd_agents_list(args: argparse.Namespace) -> int:
    with open_store(args) as (_cfg, engine), Session(engine) as session:
        for a in session.scalars(select(Agent).order_by(Agent.hostname)):
            item = {"id": a.id, "hostname": a.hostname, "site": a.site.name, "os": a.os, "status": a.status,
                    "agent_version": a.agent_version, "bundle_version": a.bundle_version, "age_band": a.age_band,
                    "last_seen_at": _iso(a.last_seen_at), "cert_not_after": _iso(a.cert_not_after),
                    "coverage_gaps": a.coverage_gaps}
            print(json.dumps(item) if args.json else
                  f"{a.id}  {a.status:8} {a.hostname:24} {a.site.name:20} last seen {item['last_seen_at'] or 'never'}")
    return 0


def cmd_agents_revoke(args: argparse.Namespace) -> int:
    with open_store(args) as (_cfg, engine), audit.write_session(engine) as session:
        agent = session.get(Agent, args.agent_id)
        if agent is None:
            raise CollectorError(f"no agent with id {args.agent_id!r} (see 'agents list')")
        fleet.revoke(agent)
        audit.append(session, actor="cli", action="agent.revoke", target=agent.id, detail={})
    print(f"agent {args.agent_id} revoked: its certificate is refused from now on")
    return 0
