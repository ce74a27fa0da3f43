"""Keyword management pages (DSL and deputy DSL): a site's own rules and allow entries, device groups, time-boxed
exemptions, publishing a signed bundle, and which bundle the site's devices confirm running. Every view and action
is audited; a form with a mistake comes back with the message beside the field, never a 500."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit, keywords
from collector.keywords import ApprovalRefused, FormErrors
from collector.pki import CollectorPki, PkiPaths
from collector.store.models import KeywordExemption, Site, SiteAllow, SiteRule
from collector.store.models_review import User
from collector.web.app import Console, PageError, _form_int
from signatures.schema import BANDS, CATEGORIES, MODES, LibraryError

ROLES = keywords.APPROVER_ROLES
TEMPLATE = "keywords/site.html"


def add_routes(app: FastAPI, console: Console) -> None:
    pages = KeywordPages(console)
    app.add_api_route("/keywords/{site_id}", pages.page, methods=["GET"])
    for action in ("rules", "allows", "groups", "exemptions", "publish"):
        app.add_api_route(f"/keywords/{{site_id}}/{action}", pages.poster(action), methods=["POST"])
    app.add_api_route("/keywords/{site_id}/exemptions/{exemption_id}/approve", pages.approve, methods=["POST"])


class KeywordPages:
    def __init__(self, console: Console):
        self.console = console

    def _site(self, db: Session, user: User, site_id: str) -> Site:
        sid = _form_int(site_id)
        site = db.get(Site, sid) if sid is not None else None
        if site is None or site.id not in {s.id for s in user.sites}:
            raise PageError(404, "No such site", "There is no site with that reference among your sites.")
        if user.role not in ROLES:
            raise PageError(403, "Not available to your role",
                            "Only the DSL and deputy DSLs manage keywords and exemptions.")
        return site

    def _render(self, request: Request, db: Session, user: User, csrf: str, site: Site, status: int = 200,
                errors: dict[str, str] | None = None, form: dict[str, str] | None = None, done: str = "") -> Response:
        now = dt.datetime.now(dt.UTC)
        adoption, device_count = keywords.bundle_adoption(db, site.id)
        exemptions = list(db.scalars(select(KeywordExemption).where(KeywordExemption.site_id == site.id)
                                     .order_by(KeywordExemption.id.desc())))
        return self.console.render(
            request, TEMPLATE, status=status, user=user, csrf=csrf, site=site, errors=errors or {}, form=form or {},
            done=done, categories=CATEGORIES, bands=BANDS, modes=MODES,
            rules=list(db.scalars(select(SiteRule).where(SiteRule.site_id == site.id).order_by(SiteRule.rule_id))),
            allows=list(db.scalars(select(SiteAllow).where(SiteAllow.site_id == site.id).order_by(SiteAllow.id))),
            devices=keywords.site_devices(db, site.id), groups=keywords.site_groups(db, site.id),
            exemptions=[(e, keywords.exemption_status(e, now)) for e in exemptions],
            adoption=adoption, device_count=device_count)

    def page(self, request: Request, site_id: str) -> Response:
        def work(db: Session) -> Response:
            ws, user = self.console.signed_in(request, db)
            site = self._site(db, user, site_id)
            audit.append(db, user.username, "keywords.view", f"site:{site.id}")
            return self._render(request, db, user, ws.csrf_token, site, done=request.query_params.get("done", ""))

        return self.console.run(request, work)

    def poster(self, action: str) -> Callable:
        async def post(request: Request, site_id: str) -> Response:
            form = await self.console.form(request)
            return await asyncio.to_thread(self.console.run, request, lambda db: self._act(request, db, site_id,
                                                                                           action, form))

        return post

    def _act(self, request: Request, db: Session, site_id: str, action: str, form: dict[str, str]) -> Response:
        ws, user = self.console.signed_in(request, db)
        self.console.require_csrf(ws.csrf_token, form)
        site = self._site(db, user, site_id)
        try:
            # Every step validates before it writes, so a refused form leaves nothing behind.
            done = self._do(db, site, user, action, form)
        except FormErrors as exc:
            return self._render(request, db, user, ws.csrf_token, site, status=400, errors=exc.errors, form=form)
        except LibraryError as exc:
            return self._render(request, db, user, ws.csrf_token, site, status=400,
                                errors={"publish": f"Not published: {exc}"}, form=form)
        return RedirectResponse(f"/keywords/{site.id}?done={done}", status_code=303)

    def _do(self, db: Session, site: Site, user: User, action: str, form: dict[str, str]) -> str:
        if action == "rules":
            keywords.add_site_rule(db, site, form, user.username)
        elif action == "allows":
            keywords.add_site_allow(db, site, form, user.username)
        elif action == "groups":
            keywords.add_group(db, site, form, user.username)
        elif action == "exemptions":
            keywords.request_exemption(db, site, form, user.username)
        else:
            keywords.publish_site_bundle(db, self._pki(), site, user.username)
        return action

    def _pki(self) -> CollectorPki:
        return CollectorPki(PkiPaths(self.console.config.pki_dir))

    async def approve(self, request: Request, site_id: str, exemption_id: str) -> Response:
        form = await self.console.form(request)

        def work(db: Session) -> Response:
            ws, user = self.console.signed_in(request, db)
            self.console.require_csrf(ws.csrf_token, form)
            site = self._site(db, user, site_id)
            try:
                keywords.approve_exemption(db, site, _form_int(exemption_id) or 0, user.username, user.role)
            except ApprovalRefused as exc:
                raise PageError(409, "Not approved", str(exc), back=f"/keywords/{site.id}") from None
            # Approval takes effect by publishing: the agents enforce what their signed bundle says.
            keywords.publish_site_bundle(db, self._pki(), site, user.username)
            return RedirectResponse(f"/keywords/{site.id}?done=approve", status_code=303)

        try:
            return await asyncio.to_thread(self.console.run, request, work)
        except LibraryError as exc:  # the transaction rolled back: the approval stands only if it is published
            return self.console.message(request, 400, "Not approved", f"The bundle could not be built: {exc}",
                                        back=f"/keywords/{site_id}")
