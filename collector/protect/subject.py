"""Subject access request: everything held about one person, as JSON and as a readable HTML page.

A person appears as the user named on alerts (their school login, however the device spelt it) and, if they
have one, as a console account. Secrets (password hash, TOTP secret, setup token) are reported as held, never
shown. Suspected child sexual abuse material is withheld: its category and the referrals made are listed, not the
words or window titles. The DSL reviews the export before it is disclosed (third parties, exemptions).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from collector import audit
from collector.review.rules import CSAM_CATEGORY, normalise_login
from collector.store.models import Alert, Site
from collector.store.models_review import AuditEntry, CsamReferral, Page, Review, User, WebSession

TEMPLATES = Path(__file__).with_name("templates")
WITHHELD = "withheld: suspected child sexual abuse material is never copied (referral route only)"


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


def _audit_json(e: AuditEntry) -> dict:
    return {"id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "target": e.target,
            "detail": json.loads(e.detail)}


def _alert_json(session: Session, a: Alert, sites: dict[int, str]) -> dict:
    csam = a.category == CSAM_CATEGORY
    reviews = session.scalars(select(Review).where(Review.alert_id == a.id).order_by(Review.id)).all()
    referrals = session.scalars(select(CsamReferral).where(CsamReferral.alert_id == a.id)
                                .order_by(CsamReferral.id)).all()
    pages = session.scalars(select(Page).where(Page.alert_id == a.id).order_by(Page.id)).all()
    return {
        "id": a.id, "site": sites.get(a.site_id, ""), "device": a.hostname, "user": a.user_name,
        "age_band": a.age_band, "kind": a.kind, "category": a.category, "severity": a.severity, "rule": a.rule,
        "source": a.source, "created_at": _iso(a.created_at), "received_at": _iso(a.received_at), "state": a.state,
        "matched": WITHHELD if csam else a.matched,
        "context": WITHHELD if csam else a.context,
        "window_title": WITHHELD if csam else a.window_title,
        "application": WITHHELD if csam else a.application,
        "details": a.details,
        "evidence": ({"withheld": WITHHELD} if csam else
                     {"signed_payload_base64": base64.b64encode(a.payload).decode(),
                      "signature_base64": base64.b64encode(a.signature).decode(), "signature_ok": a.signature_ok}),
        "reviews": [{"step": r.step, "reviewer": r.reviewer.username, "involved": r.involved, "nature": r.nature,
                     "outcome": r.outcome, "reason": WITHHELD if csam else r.reason, "at": _iso(r.created_at)}
                    for r in reviews],
        "referrals": [{"told": r.told, "reference": r.reference, "told_at": _iso(r.told_at),
                       "recorded_by": r.recorder.username} for r in referrals],
        "pages": [{"position": p.position, "sent_to": p.on_call.name, "sent_at": _iso(p.sent_at),
                   "acknowledged_at": _iso(p.acknowledged_at)} for p in pages],
        "access_log": [_audit_json(e) for e in audit.entries_for(session, f"alert:{a.id}")],
    }


def _account_json(session: Session, u: User) -> dict:
    reviews = session.scalars(select(Review).where(Review.reviewer_id == u.id).order_by(Review.id)).all()
    actions = session.scalars(select(AuditEntry).where(
        or_(AuditEntry.actor == u.username, AuditEntry.target == f"user:{u.username}")).order_by(AuditEntry.id))
    sessions = session.scalars(select(WebSession).where(WebSession.user_id == u.id)).all()
    return {
        "username": u.username, "display_name": u.display_name, "email": u.email, "role": u.role,
        "school_login": u.school_login, "sites": [s.name for s in u.sites], "disabled": u.disabled,
        "created_at": _iso(u.created_at), "last_login_at": _iso(u.last_login_at),
        "password": "held as an argon2id hash (not shown)" if u.password_hash else "none set",
        "second_factor": "TOTP secret held (not shown)" if u.totp_secret else "none set",
        "failed_logins": u.failed_logins, "locked_until": _iso(u.locked_until),
        "signed_in_sessions": [{"started": _iso(s.created_at), "last_seen": _iso(s.last_seen_at)} for s in sessions],
        # Their own reviewing: when and what they decided. The reasons they wrote are about pupils, who are third
        # parties here, so they are left to the DSL to disclose or not.
        "reviews_made": [{"alert_id": r.alert_id, "step": r.step, "outcome": r.outcome, "at": _iso(r.created_at)}
                         for r in reviews],
        "audit_entries": [_audit_json(e) for e in actions],
    }


def subject_record(session: Session, subject: str, now: dt.datetime | None = None) -> dict:
    """Everything held about `subject` as one JSON-ready document."""
    wanted = normalise_login(subject)
    if not wanted:
        raise ValueError("empty subject")
    names = [n for n in session.scalars(select(Alert.user_name).distinct()) if normalise_login(n) == wanted]
    sites = {s.id: s.name for s in session.scalars(select(Site))}
    alerts = session.scalars(select(Alert).where(Alert.user_name.in_(names))
                             .order_by(Alert.created_at, Alert.id)).all() if names else []
    accounts = [u for u in session.scalars(select(User).order_by(User.id))
                if u.username.lower() == subject.strip().lower()
                or (u.school_login and normalise_login(u.school_login) == wanted)]
    return {
        "subject": subject,
        "generated_at": _iso(now or dt.datetime.now(dt.UTC)),
        "notice": ("Everything WardWatch holds about this person. Review it before disclosure: it may name third "
                   "parties, and safeguarding exemptions may apply."),
        "names_on_alerts": sorted(names),
        "alerts": [_alert_json(session, a, sites) for a in alerts],
        "console_accounts": [_account_json(session, u) for u in accounts],
    }


@dataclass(frozen=True)
class SubjectExport:
    json_path: Path
    html_path: Path
    alerts: int
    accounts: int


def _safe_name(subject: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", subject).strip("._") or "subject"


def _write_private(path: Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data)


def render_html(record: dict) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    return env.get_template("subject.html").render(r=record)


def export_subject(engine: Engine, subject: str, out_dir: Path, actor: str = "cli") -> SubjectExport:
    """Write the JSON and HTML files (mode 0600) and audit the export (counts and ids only)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with audit.write_session(engine) as session:
        record = subject_record(session, subject)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        base = out_dir / f"subject-{_safe_name(subject)}-{stamp}"
        json_path, html_path = base.with_suffix(".json"), base.with_suffix(".html")
        _write_private(json_path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        _write_private(html_path, render_html(record))
        audit.append(session, actor, "export.subject", f"subject:{subject}"[:255],
                     {"alerts": len(record["alerts"]), "alert_ids": [a["id"] for a in record["alerts"]],
                      "accounts": [a["username"] for a in record["console_accounts"]]})
    return SubjectExport(json_path, html_path, len(record["alerts"]), len(record["console_accounts"]))
