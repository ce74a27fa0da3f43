"""Imminent-risk paging: a severity 5 alert is e-mailed at once to the first person on the site's on-call list,
with an acknowledge link; while nobody acknowledges, the next person is e-mailed every N minutes.

The e-mail carries no alert content (no words, no pupil name): only the site, the severity and two links.
Settings come from `[smtp]` in config.toml: host, port, sender, starttls (bool), username, password_file, and
`[paging]`: escalate_after_minutes (default 10; a site can set its own), check_seconds (default 30).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from collector import audit
from collector.accounts import aware, token_hash
from collector.config import CollectorConfig
from collector.store.models import Alert, Site
from collector.store.models_review import OnCall, Page, SiteSafeguarding

log = logging.getLogger("wardwatch.notify")
IMMINENT = 5
# Alerts older than this when paging starts (say the SMTP settings were added later) are not paged.
PAGE_WINDOW = dt.timedelta(hours=24)
DEFAULT_ESCALATE_MINUTES = 10
SMTP_TIMEOUT = 20


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "wardwatch@localhost"
    starttls: bool = False
    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class Outgoing:
    """One e-mail to send: decided in one transaction, sent outside it, recorded in another."""

    alert_id: str
    on_call_id: int
    position: int
    email: str
    name: str
    site_name: str
    token: str
    others: tuple[tuple[str, str], ...]  # (name, out-of-hours number) of the rest of the list


def smtp_settings(config: CollectorConfig) -> SmtpSettings | None:
    raw = config.extra.get("smtp")
    if not isinstance(raw, dict) or not raw.get("host"):
        return None
    password = ""
    if raw.get("password_file"):
        password = Path(raw["password_file"]).read_text(encoding="utf-8").strip()
    return SmtpSettings(host=str(raw["host"]), port=int(raw.get("port", 25)),
                        sender=str(raw.get("sender", "wardwatch@localhost")), starttls=bool(raw.get("starttls")),
                        username=str(raw.get("username", "")), password=password)


def default_escalate_minutes(config: CollectorConfig) -> int:
    paging = config.extra.get("paging")
    if isinstance(paging, dict) and paging.get("escalate_after_minutes"):
        return int(paging["escalate_after_minutes"])
    return DEFAULT_ESCALATE_MINUTES


def console_url(config: CollectorConfig) -> str:
    return (config.public_web_url or config.served_endpoints().get("web") or f"https://{config.web_listen}/").rstrip(
        "/")


# ---------------------------------------------------------------- the on-call list

def set_on_call(session: Session, site_id: int, people: list[tuple[str, str, str]]) -> list[OnCall]:
    """Replace the site's ordered list with (name, e-mail, out-of-hours number) entries."""
    for name, email, _phone in people:
        if not name.strip() or "@" not in email:
            raise ValueError("each on-call entry needs a name and an e-mail address")
    session.execute(delete(OnCall).where(OnCall.site_id == site_id))
    session.flush()
    rows = [OnCall(site_id=site_id, position=i, name=name.strip(), email=email.strip(), out_of_hours_phone=phone)
            for i, (name, email, phone) in enumerate(people, start=1)]
    session.add_all(rows)
    session.flush()
    return rows


def on_call_list(session: Session, site_id: int) -> list[OnCall]:
    return list(session.scalars(select(OnCall).where(OnCall.site_id == site_id).order_by(OnCall.position)))


# ---------------------------------------------------------------- deciding who to e-mail

def _escalate_after(session: Session, site_id: int, default_minutes: int) -> dt.timedelta:
    named = session.get(SiteSafeguarding, site_id)
    return dt.timedelta(minutes=named.escalate_after_minutes if named else default_minutes)


def due_pages(session: Session, now: dt.datetime, default_minutes: int) -> list[Outgoing]:
    """Who must be e-mailed now: the first person for a new imminent alert, the next one for an unanswered one."""
    alerts = session.scalars(
        select(Alert).where(Alert.severity >= IMMINENT, Alert.kind == "keyword",
                            Alert.received_at >= now - PAGE_WINDOW).order_by(Alert.received_at))
    out: list[Outgoing] = []
    for alert in alerts:
        pages = list(session.scalars(select(Page).where(Page.alert_id == alert.id).order_by(Page.position)))
        if any(p.acknowledged_at is not None for p in pages):
            continue
        people = on_call_list(session, alert.site_id)
        if not people:
            continue
        if pages:
            last = pages[-1]
            if now - aware(last.sent_at) < _escalate_after(session, alert.site_id, default_minutes):
                continue
            following = [p for p in people if p.position > last.position]
            if not following:
                continue  # the whole list was e-mailed; the console still shows the alert first in the queue
            target = following[0]
        else:
            target = people[0]
        site = session.get(Site, alert.site_id)
        out.append(Outgoing(alert_id=alert.id, on_call_id=target.id, position=target.position, email=target.email,
                            name=target.name, site_name=site.name if site else "", token=secrets.token_urlsafe(32),
                            others=tuple((p.name, p.out_of_hours_phone) for p in people if p.id != target.id)))
    return out


def compose(item: Outgoing, settings: SmtpSettings, base_url: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = item.email
    msg["Subject"] = f"WardWatch: imminent-risk alert at {item.site_name} - act now"
    others = "\n".join(f"  {name}: {phone or 'no number given'}" for name, phone in item.others)
    msg.set_content(
        f"{item.name},\n\n"
        f"WardWatch raised a severity 5 (imminent risk) alert at {item.site_name}. "
        f"A safeguarding lead must act now.\n\n"
        f"1. Acknowledge that you are dealing with it (otherwise the next person on the on-call list is e-mailed):\n"
        f"   {base_url}/ack/{item.token}\n\n"
        f"2. Sign in to the console to review it:\n"
        f"   {base_url}/alerts/{item.alert_id}\n\n"
        f"If a child is in immediate danger, call 999.\n\n"
        f"The rest of the on-call list (out-of-hours numbers):\n{others or '  nobody else'}\n\n"
        f"This e-mail deliberately contains no details of the alert.\n"
    )
    return msg


def send(settings: SmtpSettings, msg: EmailMessage) -> None:
    with smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT) as smtp:
        if settings.starttls:
            smtp.starttls()
        if settings.username:
            smtp.login(settings.username, settings.password)
        smtp.send_message(msg)


def run_once(config: CollectorConfig, engine: Engine, now: dt.datetime | None = None) -> int:
    """One paging round. Returns how many e-mails were sent. Safe to call as often as you like."""
    settings = smtp_settings(config)
    if settings is None:
        return 0
    now = now or dt.datetime.now(dt.UTC)
    with Session(engine) as session:
        todo = due_pages(session, now, default_escalate_minutes(config))
    sent = 0
    base = console_url(config)
    for item in todo:
        try:
            send(settings, compose(item, settings, base))
        except (OSError, smtplib.SMTPException) as exc:
            log.error("could not e-mail on-call person %d for alert %s: %s", item.position, item.alert_id,
                      type(exc).__name__)
            continue
        with audit.write_session(engine) as session:
            session.add(Page(alert_id=item.alert_id, on_call_id=item.on_call_id, position=item.position,
                             token_hash=token_hash(item.token), sent_at=now))
            audit.append(session, "pager", "page.sent", f"alert:{item.alert_id}", {"position": item.position})
        sent += 1
    return sent


# ---------------------------------------------------------------- acknowledging

def page_for_token(session: Session, token: str) -> Page | None:
    if not token or len(token) > 128:
        return None
    return session.scalar(select(Page).where(Page.token_hash == token_hash(token)))


def acknowledge(session: Session, token: str, now: dt.datetime | None = None) -> Page | None:
    page = page_for_token(session, token)
    if page is None:
        return None
    if page.acknowledged_at is None:
        page.acknowledged_at = now or dt.datetime.now(dt.UTC)
        audit.append(session, f"on-call:{page.on_call.name}", "page.acknowledged", f"alert:{page.alert_id}",
                     {"position": page.position})
    return page
