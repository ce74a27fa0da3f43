"""The technician's pages: the fleet's health, enrolment tokens, and revoke / decommission / re-key of a device.

Nothing here reads alert content. The only alerts shown are coverage alerts (a device not capturing or not heard
from), listed by device, gap and time; they carry no user and no words. Counting any other alert by pupil or
category here would tell a technician what the safeguarding team is looking at.

Settings from `[fleet]` in config.toml: `clock_skew_warn_s` (default 120) flags a device's clock; the silent-device
threshold and school hours are collector.fleet_health's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit, fleet, fleet_health, tokens
from collector.accounts import aware
from collector.errors import CollectorError
from collector.store.models import Agent, Alert, EnrolmentToken, Site
from collector.store.models_review import User

# Imported by create_app once collector.web.app is complete, so importing from it here is not circular.
from collector.web.app import Console, PageError

DEVICE_ROLES = frozenset({"technician", "admin"})
AGE_BANDS = ("primary", "secondary", "staff")
DEFAULT_SKEW_LIMIT_S = 120  # beyond this, the agent's signed times disagree with the collector's noticeably
COVERAGE_SHOWN_DAYS = 30
GAP_LABELS = {
    "keystrokes-unavailable": "Keyboard capture unavailable",
    "window-titles-unavailable": "Window titles unavailable",
    "detection-unavailable": "Keyword detection unavailable",
    "bundle-refused": "Keyword bundle refused",
    fleet.CLONED_IDENTITY: "Cloned identity",
    fleet_health.SILENT_GAP: "Silent device",
    "clock-skew": "Clock skew",
}
ACTIONS = ("revoke", "decommission", "rekey")


@dataclass(frozen=True)
class Gap:
    code: str
    detail: str

    @property
    def label(self) -> str:
        return GAP_LABELS.get(self.code, self.code)


def device_gaps(agent: Agent, now: dt.datetime, silent_after: dt.timedelta, skew_limit_s: float) -> list[Gap]:
    """What this device is not covering: the gaps it reported, plus those the collector sees for itself."""
    gaps: dict[str, Gap] = {}
    for reported in agent.coverage_gaps or []:
        if isinstance(reported, dict) and reported.get("gap"):
            code = str(reported["gap"])[:64]
            gaps.setdefault(code, Gap(code, str(reported.get("detail", ""))[:200]))
    if agent.clone_detected_at is not None:
        gaps.setdefault(fleet.CLONED_IDENTITY, Gap(fleet.CLONED_IDENTITY, "two live devices presented this identity"))
    if agent.status == "active":
        since = fleet_health.silent_since(agent)
        if now - since > silent_after:
            gaps[fleet_health.SILENT_GAP] = Gap(fleet_health.SILENT_GAP, f"no heartbeat for {_ago(now - since)}")
    if agent.clock_skew_s is not None and abs(agent.clock_skew_s) > skew_limit_s:
        way = "ahead" if agent.clock_skew_s > 0 else "behind"
        gaps["clock-skew"] = Gap("clock-skew", f"clock {abs(agent.clock_skew_s):.0f} s {way}")
    return sorted(gaps.values(), key=lambda g: g.label)


def _ago(span: dt.timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


def token_state(token: EnrolmentToken, now: dt.datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if aware(token.expires_at) <= now:
        return "expired"
    return "used up" if token.uses >= token.uses_allowed else "active"


class _NotSaved(Exception):
    """Leaves the transaction rolled back, then shows its message."""


class DevicePages:
    def __init__(self, console: Console):
        self.console = console
        raw = console.config.extra.get("fleet")
        raw = raw if isinstance(raw, dict) else {}
        self.policy = fleet_health.load_silence_policy(console.config)
        try:
            self.skew_limit_s = float(raw.get("clock_skew_warn_s", DEFAULT_SKEW_LIMIT_S))
        except (TypeError, ValueError):
            raise CollectorError("[fleet] clock_skew_warn_s must be a number of seconds") from None

    def add_routes(self, app: FastAPI) -> None:
        app.add_api_route("/devices", self.devices, methods=["GET"])
        app.add_api_route("/devices/tokens", self.token_create, methods=["POST"])
        app.add_api_route("/devices/tokens/{token_id}/revoke", self.token_revoke, methods=["POST"])
        app.add_api_route("/devices/{agent_id}/{action}", self.device_action, methods=["POST"])

    # ---- access

    def _technician(self, request: Request, db: Session) -> tuple[str, User]:
        ws, user = self.console.signed_in(request, db)
        if user.role not in DEVICE_ROLES:
            audit.append(db, user.username, "devices.view_refused", "devices", {})
            raise PageError(403, "Not available to your role",
                            "The devices pages are for technicians and administrators.", back="/")
        return ws.csrf_token, user

    @staticmethod
    def _site_ids(user: User) -> set[int]:
        return {s.id for s in user.sites}

    # ---- the page

    def _page(self, request: Request, db: Session, user: User, csrf: str, status: int = 200,
              **extra) -> Response:
        now = dt.datetime.now(dt.UTC)
        site_ids = self._site_ids(user)
        agents = list(db.scalars(select(Agent).where(Agent.site_id.in_(site_ids), Agent.status != "removed")
                                 .order_by(Agent.hostname, Agent.id)))
        devices = [(a, device_gaps(a, now, self.policy.silent_after, self.skew_limit_s)) for a in agents]
        token_rows = db.scalars(select(EnrolmentToken).where(EnrolmentToken.site_id.in_(site_ids),
                                                             EnrolmentToken.rekey_of.is_(None))
                                .order_by(EnrolmentToken.created_at.desc())).all()
        coverage = db.scalars(select(Alert).where(
            Alert.site_id.in_(site_ids), Alert.kind == "coverage",
            Alert.received_at >= now - dt.timedelta(days=COVERAGE_SHOWN_DAYS)).order_by(Alert.received_at.desc())
            .limit(200)).all()
        return self.console.render(
            request, "devices/devices.html", status=status, user=user, csrf=csrf, devices=devices,
            tokens=[(t, token_state(t, now)) for t in token_rows],
            coverage=[(a, Gap(str((a.details or {}).get("coverage", {}).get("gap", "")), "")) for a in coverage],
            sites=sorted(user.sites, key=lambda s: s.name), age_bands=AGE_BANDS,
            silent_minutes=int(self.policy.silent_after.total_seconds() // 60), skew_limit=int(self.skew_limit_s),
            done=request.query_params.get("done", "")[:32], **extra)

    def devices(self, request: Request) -> Response:
        def work(db: Session) -> Response:
            csrf, user = self._technician(request, db)
            audit.append(db, user.username, "devices.view", "devices", {})
            return self._page(request, db, user, csrf)

        return self.console.run(request, work)

    # ---- enrolment tokens

    async def token_create(self, request: Request) -> Response:
        form = await self.console.form(request)
        return await asyncio.to_thread(self._token_create, request, form)

    def _token_create(self, request: Request, form: dict[str, str]) -> Response:
        def work(db: Session) -> Response:
            csrf, user = self._technician(request, db)
            self.console.require_csrf(csrf, form)
            site = db.get(Site, _int(form.get("site")))
            if site is None or site.id not in self._site_ids(user):
                raise _NotSaved("Choose one of your sites.")
            age_band = form.get("age_band", "")
            if age_band not in AGE_BANDS:
                raise _NotSaved("Choose the age band of the devices this token enrols.")
            uses = _int(form.get("uses"))
            if uses is None or not 1 <= uses <= 1000:
                raise _NotSaved("Uses must be a whole number from 1 to 1000.")
            ttl_text = form.get("ttl", "").strip()[:16]
            try:
                ttl = tokens.parse_ttl(ttl_text)
            except CollectorError:
                raise _NotSaved("'Valid for' must look like 30m, 24h or 7d, and be at most 30d.") from None
            try:
                token_id, token = tokens.create_token(db, site, ttl, uses, age_band)
                # Made before the commit: a collector that cannot say where agents dial keeps no orphan token.
                line = tokens.enrolment_string(self.console.config, token, site.name, None, None)
            except CollectorError as exc:
                raise _NotSaved(str(exc)) from None
            audit.append(db, user.username, "token.create", token_id,
                         {"site": site.name, "uses": uses, "ttl": ttl_text, "age_band": age_band})
            # Shown once, on this response only (no-store); only the secret's hash is kept.
            return self._page(request, db, user, csrf, new_token={"id": token_id, "line": line, "site": site.name})

        try:
            return self.console.run(request, work)
        except _NotSaved as exc:
            return self.console.message(request, 400, "Token not made", str(exc), back="/devices")

    async def token_revoke(self, request: Request, token_id: str) -> Response:
        form = await self.console.form(request)
        return await asyncio.to_thread(self._token_revoke, request, token_id, form)

    def _token_revoke(self, request: Request, token_id: str, form: dict[str, str]) -> Response:
        def work(db: Session) -> Response:
            csrf, user = self._technician(request, db)
            self.console.require_csrf(csrf, form)
            row = db.get(EnrolmentToken, token_id[:16])
            if row is None or row.site_id not in self._site_ids(user) or row.rekey_of is not None:
                raise PageError(404, "No such token", "There is no enrolment token with that id at your sites.",
                                back="/devices")
            if row.revoked_at is None:
                row.revoked_at = dt.datetime.now(dt.UTC)
                audit.append(db, user.username, "token.revoke", row.id, {})
            return RedirectResponse("/devices?done=token-revoked", status_code=303)

        return self.console.run(request, work)

    # ---- per-device actions

    async def device_action(self, request: Request, agent_id: str, action: str) -> Response:
        form = await self.console.form(request)
        return await asyncio.to_thread(self._device_action, request, agent_id, action, form)

    def _device_action(self, request: Request, agent_id: str, action: str, form: dict[str, str]) -> Response:
        if action not in ACTIONS:
            return self.console.message(request, 404, "Not found", "There is no such page.")

        def work(db: Session) -> Response:
            csrf, user = self._technician(request, db)
            self.console.require_csrf(csrf, form)
            agent = db.get(Agent, agent_id[:32])
            if agent is None or agent.site_id not in self._site_ids(user):
                raise PageError(404, "No such device", "There is no device with that id at your sites.",
                                back="/devices")
            if agent.status != "active":
                raise PageError(409, "Not done", f"This device is {agent.status}; only an active device can be "
                                "revoked, decommissioned or re-keyed.", back="/devices")
            now = dt.datetime.now(dt.UTC)
            detail: dict = {"hostname": agent.hostname}
            if action == "revoke":
                fleet.revoke(agent)
            elif action == "decommission":
                fleet.decommission(agent, now)
            else:
                detail["commands"] = fleet.queue_rekey(db, agent, [agent.last_instance_id or "current"], now,
                                                       reason=f"requested by technician {user.username}")
            audit.append(db, user.username, f"agent.{action}", agent.id, detail)
            return RedirectResponse(f"/devices?done={action}", status_code=303)

        return self.console.run(request, work)


def _int(value: str | None) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def add_routes(app: FastAPI, console: Console) -> None:
    DevicePages(console).add_routes(app)
