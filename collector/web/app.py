"""The review console: a server-rendered FastAPI app. Forms work without JavaScript; no inline script anywhere.

Every request runs in one database transaction (collector.audit.write_session): the sign-in check, the view or
decision and its audit entry commit together or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from collector import accounts, audit, notify
from collector.config import CollectorConfig
from collector.review import rules
from collector.review.rules import ReviewRefused
from collector.store.models import Site
from collector.store.models_review import SiteSafeguarding, User, WebSession
from collector.web import present, reviewing, sessions
from collector.web.reviewing import Forbidden, NotFound, QueueFilter

log = logging.getLogger("wardwatch.web")
HERE = Path(__file__).parent

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Strict-Transport-Security": "max-age=31536000",
}


class LoginRequired(Exception):
    pass


class PageError(Exception):
    """Show a plain page with this status and message instead of the one asked for."""

    def __init__(self, status: int, title: str, message: str, back: str = "/queue"):
        super().__init__(message)
        self.status, self.title, self.message, self.back = status, title, message, back


def create_app(config: CollectorConfig, engine: Engine) -> FastAPI:
    """The console ASGI app. It also runs the imminent-risk pager in the background while it is served."""
    audit.use_data_dir(config.data_dir)
    pager_interval = float(config.extra.get("paging", {}).get("check_seconds", 30)) if isinstance(
        config.extra.get("paging"), dict) else 30.0

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        task = asyncio.create_task(_pager_loop(config, engine, pager_interval))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(labels=present.LABELS)
    templates.env.filters["when"] = present.when
    throttle = sessions.Throttle()
    console = Console(config, engine, templates, throttle)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        try:
            response = await call_next(request)
        except Exception as exc:
            # Caught here, not left to the server: its traceback would print the exception's message, and a
            # database error's message carries the statement's parameters (review reasons, pupil names).
            # The transaction was rolled back, so nothing is half-saved.
            log.error("console error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
            response = console.message(request, 500, "Something went wrong",
                                       "Nothing was saved. Try again; if it keeps happening, tell your administrator.")
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        title = {404: "Not found", 405: "Not allowed"}.get(exc.status_code, "Error")
        return console.message(request, exc.status_code, title, "There is no such page.")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, _exc: RequestValidationError):
        return console.message(request, 400, "Bad request", "The request was not understood.")

    console.add_routes(app)
    from collector.web import pages_devices, pages_reports  # here: they build on this module's Console
    pages_reports.add_routes(app, console)
    pages_devices.add_routes(app, console)
    from collector.web import pages_keywords  # here: it builds on this module's Console
    pages_keywords.add_routes(app, console)
    return app


async def _pager_loop(config: CollectorConfig, engine: Engine, interval: float) -> None:
    while True:
        try:
            await asyncio.to_thread(notify.run_once, config, engine)
        except Exception as exc:  # keep paging alive through a database blip; the next round retries
            log.error("imminent-risk paging round failed: %s", type(exc).__name__)
        await asyncio.sleep(interval)


def _form_int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


class Console:
    def __init__(self, config: CollectorConfig, engine: Engine, templates: Jinja2Templates,
                 throttle: sessions.Throttle):
        self.config = config
        self.engine = engine
        self.templates = templates
        self.throttle = throttle

    # ------------------------------------------------------------ plumbing

    def render(self, request: Request, template: str, status: int = 200, user: User | None = None,
               csrf: str = "", **ctx: Any) -> HTMLResponse:
        return self.templates.TemplateResponse(request, template, {"user": user, "csrf": csrf, **ctx},
                                               status_code=status)

    def message(self, request: Request, status: int, title: str, message: str, back: str = "/queue",
                user: User | None = None, csrf: str = "") -> HTMLResponse:
        return self.render(request, "message.html", status=status, user=user, csrf=csrf, title=title,
                           message=message, back=back)

    def run(self, request: Request, work: Callable[[Session], Response]) -> Response:
        """Run one request's work in one writing transaction, turning expected failures into clear pages."""
        try:
            with audit.write_session(self.engine) as db:
                try:
                    return work(db)
                except PageError as exc:
                    # A refusal page is an outcome, not a failure: its audit entry (say, a refused view) is kept.
                    # Review decisions never raise PageError after writing; they raise ReviewRefused and roll back.
                    refusal = exc
            return self.message(request, refusal.status, refusal.title, refusal.message, refusal.back)
        except LoginRequired:
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(sessions.SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
            return response
        except PageError as exc:
            return self.message(request, exc.status, exc.title, exc.message, exc.back)
        except OperationalError as exc:
            log.warning("database busy or unreachable: %s", type(exc.orig).__name__)
            return self.message(request, 503, "Busy", "The database is busy. Nothing was saved; try again.")

    def signed_in(self, request: Request, db: Session) -> tuple[WebSession, User]:
        ws = sessions.find(db, request.cookies.get(sessions.SESSION_COOKIE))
        if ws is None or ws.stage != sessions.FULL:
            raise LoginRequired
        return ws, db.get(User, ws.user_id)

    async def form(self, request: Request) -> dict[str, str]:
        try:
            data = await request.form(max_files=0, max_fields=50)
        except Exception:
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def require_csrf(self, expected: str | None, form: dict[str, str]) -> None:
        if not sessions.csrf_ok(expected, form.get("csrf")):
            raise PageError(403, "Form expired",
                            "This form is out of date or did not come from this console. Nothing was saved; "
                            "go back, reload the page and try again.")

    def set_cookie(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict")

    def pre_token(self, request: Request) -> str:
        return request.cookies.get(sessions.PRE_COOKIE) or secrets.token_urlsafe(32)

    def with_pre_cookie(self, response: Response, token: str) -> Response:
        self.set_cookie(response, sessions.PRE_COOKIE, token, max_age=3600)
        return response

    def client_key(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    # ------------------------------------------------------------ routes

    def add_routes(self, app: FastAPI) -> None:
        app.add_api_route("/", self.home, methods=["GET"])
        app.add_api_route("/login", self.login_page, methods=["GET"])
        app.add_api_route("/login", self.login_post, methods=["POST"])
        app.add_api_route("/login/code", self.code_page, methods=["GET"])
        app.add_api_route("/login/code", self.code_post, methods=["POST"])
        app.add_api_route("/logout", self.logout, methods=["POST"])
        app.add_api_route("/setup/{token}", self.setup_page, methods=["GET"])
        app.add_api_route("/setup/{token}", self.setup_post, methods=["POST"])
        app.add_api_route("/queue", self.queue, methods=["GET"])
        app.add_api_route("/alerts/{alert_id}", self.alert_page, methods=["GET"])
        app.add_api_route("/alerts/{alert_id}/audit", self.alert_audit, methods=["GET"])
        app.add_api_route("/alerts/{alert_id}/{action}", self.alert_action, methods=["POST"])
        app.add_api_route("/pupil", self.pupil_page, methods=["GET"])
        app.add_api_route("/admin/sites/{site_id}", self.site_page, methods=["GET"])
        app.add_api_route("/admin/sites/{site_id}", self.site_post, methods=["POST"])
        app.add_api_route("/ack/{token}", self.ack_page, methods=["GET"])
        app.add_api_route("/ack/{token}", self.ack_post, methods=["POST"])

    async def home(self, request: Request) -> Response:
        def work(db: Session) -> Response:
            _ws, user = self.signed_in(request, db)
            return RedirectResponse(present.landing(user.role), status_code=303)

        return await asyncio.to_thread(self.run, request, work)

    # ---- sign-in

    def login_page(self, request: Request) -> Response:
        token = self.pre_token(request)
        return self.with_pre_cookie(self.render(request, "login.html", csrf=token), token)

    async def login_post(self, request: Request) -> Response:
        form = await self.form(request)
        return await asyncio.to_thread(self._login_post, request, form)

    def _login_post(self, request: Request, form: dict[str, str]) -> Response:
        token = self.pre_token(request)
        if not sessions.csrf_ok(request.cookies.get(sessions.PRE_COOKIE), form.get("csrf")):
            return self.with_pre_cookie(self.render(request, "login.html", status=403, csrf=token,
                                                    error="The form expired. Please sign in again."), token)
        if not self.throttle.allow(self.client_key(request)):
            return self.with_pre_cookie(self.render(request, "login.html", status=429, csrf=token,
                                                    error="Too many attempts from here. Wait a few minutes."), token)

        def work(db: Session) -> Response:
            try:
                user = accounts.check_password(db, form.get("username", ""), form.get("password", ""))
            except accounts.LoginRefused as exc:
                # Only a real account name is recorded: people type passwords into the name box by mistake.
                typed = form.get("username", "").strip()[:64]
                known = db.scalar(select(User.id).where(User.username == typed)) is not None
                audit.append(db, typed if known else "unknown-account", "login.failed", "console", {})
                return self.render(request, "login.html", status=401, csrf=token, error=str(exc))
            cookie = sessions.start(db, user, sessions.PASSWORD_ONLY)
            response = RedirectResponse("/login/code", status_code=303)
            self.set_cookie(response, sessions.SESSION_COOKIE, cookie)
            return response

        return self.run(request, work)

    def code_page(self, request: Request) -> Response:
        def work(db: Session) -> Response:
            ws = sessions.find(db, request.cookies.get(sessions.SESSION_COOKIE))
            if ws is None or ws.stage != sessions.PASSWORD_ONLY:
                raise LoginRequired
            return self.render(request, "code.html", csrf=ws.csrf_token)

        return self.run(request, work)

    async def code_post(self, request: Request) -> Response:
        form = await self.form(request)

        def work(db: Session) -> Response:
            ws = sessions.find(db, request.cookies.get(sessions.SESSION_COOKIE))
            if ws is None or ws.stage != sessions.PASSWORD_ONLY:
                raise LoginRequired
            self.require_csrf(ws.csrf_token, form)
            user = db.get(User, ws.user_id)
            if not accounts.check_totp(user, form.get("code", "")):
                accounts.record_failure(user, dt.datetime.now(dt.UTC))
                audit.append(db, user.username, "login.code_failed", "console", {})
                if user.locked_until is not None:
                    db.delete(ws)
                    return self.render(request, "login.html", status=401, csrf=self.pre_token(request),
                                       error="Too many failed attempts: this account is locked for a while.")
                return self.render(request, "code.html", status=401, csrf=ws.csrf_token,
                                   error="That code is not right. Use the newest code from your authenticator app.")
            accounts.record_success(user)
            cookie = sessions.upgrade(db, ws, user)
            audit.append(db, user.username, "login", "console", {"role": user.role})
            response = RedirectResponse(present.landing(user.role), status_code=303)
            self.set_cookie(response, sessions.SESSION_COOKIE, cookie)
            return response

        return await asyncio.to_thread(self.run, request, work)

    async def logout(self, request: Request) -> Response:
        form = await self.form(request)

        def work(db: Session) -> Response:
            ws, user = self.signed_in(request, db)
            self.require_csrf(ws.csrf_token, form)
            sessions.end(db, request.cookies.get(sessions.SESSION_COOKIE))
            audit.append(db, user.username, "logout", "console", {})
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(sessions.SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
            return response

        return await asyncio.to_thread(self.run, request, work)

    # ---- one-time setup

    def setup_page(self, request: Request, token: str) -> Response:
        pre = self.pre_token(request)

        def work(db: Session) -> Response:
            user = accounts.user_for_setup_token(db, token)
            if user is None:
                raise PageError(404, "Link not valid", "This setup link has been used, has expired or is wrong. "
                                "Ask your administrator for a new one.", back="/login")
            return self.render(request, "setup.html", csrf=pre, account=user, secret=user.totp_secret,
                               totp_uri=accounts.totp_uri(user) if user.totp_secret else "")

        return self.with_pre_cookie(self.run(request, work), pre)

    async def setup_post(self, request: Request, token: str) -> Response:
        form = await self.form(request)
        pre = self.pre_token(request)

        def work(db: Session) -> Response:
            user = accounts.user_for_setup_token(db, token)
            if user is None:
                raise PageError(404, "Link not valid", "This setup link has been used, has expired or is wrong. "
                                "Ask your administrator for a new one.", back="/login")
            if not sessions.csrf_ok(request.cookies.get(sessions.PRE_COOKIE), form.get("csrf")):
                raise PageError(403, "Form expired", "The form expired. Open the setup link again.", back="/login")
            password = form.get("password", "")
            problem = accounts.check_new_password(password, form.get("confirm", ""), user.username)
            if problem is None:
                try:
                    accounts.complete_setup(user, password, form.get("code", ""))
                except accounts.LoginRefused as exc:
                    problem = str(exc)
            if problem:
                return self.render(request, "setup.html", status=400, csrf=pre, account=user,
                                   secret=user.totp_secret, totp_uri=accounts.totp_uri(user), error=problem)
            accounts.record_success(user)
            audit.append(db, user.username, "user.setup", f"user:{user.username}", {})
            cookie = sessions.start(db, user, sessions.FULL)
            response = RedirectResponse(present.landing(user.role), status_code=303)
            self.set_cookie(response, sessions.SESSION_COOKIE, cookie)
            return response

        return self.with_pre_cookie(await asyncio.to_thread(self.run, request, work), pre)

    # ---- the queue, an alert, a pupil

    def _may_use_queue(self, db: Session, user: User) -> bool:
        if user.role in rules.CONTENT_ROLES:
            return True
        named = db.query(SiteSafeguarding).filter(
            (SiteSafeguarding.allegations_user_id == user.id) | (SiteSafeguarding.chair_user_id == user.id)).first()
        return named is not None

    def _require_queue(self, db: Session, user: User) -> None:
        if not self._may_use_queue(db, user):
            raise PageError(403, "Not available to your role",
                            f"A {present.LABELS['role'].get(user.role, user.role)} account does not see alerts. "
                            "Alert content is for the safeguarding team only.", back="/login")

    def queue(self, request: Request) -> Response:
        q = request.query_params

        def work(db: Session) -> Response:
            ws, user = self.signed_in(request, db)
            self._require_queue(db, user)
            state = q.get("state", "open")
            f = QueueFilter(state=state if state in (*rules.STATES, "open", "all") else "open",
                            severity=_form_int(q.get("severity")) if q.get("severity") else None,
                            category=q.get("category", "")[:32], site_id=_form_int(q.get("site")),
                            device=q.get("device", "")[:255].strip(), pupil=q.get("pupil", "")[:255].strip())
            rows = reviewing.visible_alerts(db, user, f)
            # The queue shows pupils' names and categories: that is a view of alert content too.
            audit.append(db, user.username, "queue.view", "queue", {"shown": len(rows), "state": f.state})
            return self.render(request, "queue.html", user=user, csrf=ws.csrf_token, alerts=rows, f=f,
                               sites=sorted(user.sites, key=lambda s: s.name), categories=present.CATEGORIES,
                               outcomes=reviewing.outcomes_by_alert(db, [a.id for a in rows]))

        return self.run(request, work)

    def _load(self, db: Session, user: User, alert_id: str) -> reviewing.AlertView:
        try:
            return reviewing.load_visible(db, user, alert_id)
        except NotFound:
            raise PageError(404, "No such alert", "There is no alert with that reference. It may have been "
                            "mistyped; go back to the queue.") from None
        except Forbidden:
            audit.append(db, user.username, "alert.view_refused", f"alert:{alert_id}", {})
            raise PageError(403, "Not available to you",
                            "You may not see this alert. Alerts are shown only to the people the school's policy "
                            "names for them.") from None

    def alert_page(self, request: Request, alert_id: str) -> Response:
        def work(db: Session) -> Response:
            ws, user = self.signed_in(request, db)
            view = self._load(db, user, alert_id)
            csam = rules.is_csam(view.facts)
            audit.append(db, user.username, "alert.view", f"alert:{alert_id}", {"content_withheld": csam})
            person = accounts.person_of(user)
            contacts = view.contacts
            assessors = {r.reviewer_id for r in view.reviews if r.step == "assess"}
            reviewers = {r.reviewer_id for r in view.reviews if r.step in ("assess", "confirm", "dispute")}
            ctx = {
                "a": view.alert, "csam": csam, "reviews": view.reviews,
                "parts": [] if csam else present.highlight(view.alert.context, view.alert.matched),
                "earlier": reviewing.earlier_alerts(db, user, view.alert),
                "referrals": reviewing.referrals(db, alert_id) if csam else [],
                "site": db.get(Site, view.alert.site_id),
                "proposed": reviewing.proposed_outcome(view.reviews),
                "final": reviewing.final_outcome(view.reviews),
                "can_assess": view.alert.state == rules.NEW and rules.may_review(person, view.facts, contacts),
                "can_second": (view.alert.state == rules.AWAITING_SECOND and user.id not in assessors
                               and rules.may_review(person, view.facts, contacts)),
                "can_decide": (view.alert.state == rules.DISPUTED and user.id not in reviewers
                               and rules.may_decide_dispute(person, view.facts, contacts)),
                "decider": rules.who_can_decide(view.facts, contacts),
                "may_refer": csam and rules.may_review(person, view.facts, contacts),
                "about_staff": view.alert.age_band == "staff",
                "steps_csam": rules.CSAM_STEPS, "done": request.query_params.get("done", ""),
                "now_local": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M"),
            }
            return self.render(request, "alert.html", user=user, csrf=ws.csrf_token, **ctx)

        return self.run(request, work)

    async def alert_action(self, request: Request, alert_id: str, action: str) -> Response:
        form = await self.form(request)
        return await asyncio.to_thread(self._alert_action, request, alert_id, action, form)

    def _alert_action(self, request: Request, alert_id: str, action: str, form: dict[str, str]) -> Response:
        if action not in ("assess", "confirm", "dispute", "decide", "referral"):
            return self.message(request, 404, "Not found", "There is no such page.")
        back = f"/alerts/{alert_id}"

        def work(db: Session) -> Response:
            ws, user = self.signed_in(request, db)
            self.require_csrf(ws.csrf_token, form)
            self._load(db, user, alert_id)
            version = _form_int(form.get("version"))
            try:
                if action == "referral":
                    told_at = present.parse_local_time(form.get("told_at", ""))
                    if told_at is None:
                        raise ReviewRefused("Give the date and time you told them.")
                    reviewing.record_csam_referral(db, user, alert_id, form.get("told", ""),
                                                   form.get("reference", ""), told_at)
                elif version is None:
                    raise ReviewRefused("The form is incomplete. Reload the page and try again.")
                elif action == "assess":
                    reviewing.assess(db, user, alert_id, version, rules.Assessment(
                        form.get("involved", ""), form.get("nature", ""), form.get("outcome", ""),
                        form.get("reason", "")))
                elif action == "confirm":
                    reviewing.confirm(db, user, alert_id, version)
                elif action == "dispute":
                    reviewing.dispute(db, user, alert_id, version, form.get("reason", ""))
                else:
                    reviewing.decide(db, user, alert_id, version, form.get("outcome", ""), form.get("reason", ""))
            except ReviewRefused as exc:
                raise _Refused(str(exc)) from None
            return RedirectResponse(f"{back}?{urlencode({'done': action})}", status_code=303)

        try:
            return self.run(request, work)
        except _Refused as exc:
            # The refusal's audit entry was rolled back with the transaction; record it on its own.
            self._record_refusal(request, action, alert_id)
            return self.message(request, 409, "Not saved", str(exc), back=back)

    def _record_refusal(self, request: Request, action: str, alert_id: str) -> None:
        with contextlib.suppress(LoginRequired, OperationalError), audit.write_session(self.engine) as db:
            _ws, user = self.signed_in(request, db)
            audit.append(db, user.username, f"review.{action}_refused", f"alert:{alert_id}", {})

    def alert_audit(self, request: Request, alert_id: str) -> Response:
        def work(db: Session) -> Response:
            ws, user = self.signed_in(request, db)
            view = self._load(db, user, alert_id)
            audit.append(db, user.username, "alert.audit_view", f"alert:{alert_id}", {})
            entries = audit.entries_for(db, f"alert:{alert_id}")
            return self.render(request, "audit.html", user=user, csrf=ws.csrf_token, a=view.alert,
                               entries=entries, present=present)

        return self.run(request, work)

    def pupil_page(self, request: Request) -> Response:
        q = request.query_params

        def work(db: Session) -> Response:
            ws, user = self.signed_in(request, db)
            self._require_queue(db, user)
            site_id = _form_int(q.get("site"))
            name = q.get("user", "")[:255]
            if site_id is None or not name:
                raise PageError(400, "Bad request", "Open a pupil's chronology from one of their alerts.")
            rows = reviewing.chronology(db, user, site_id, name)
            if not rows:
                raise PageError(404, "Nothing to show", "You have no alerts to see for this person at this site.")
            audit.append(db, user.username, "pupil.view", reviewing.pupil_ref(site_id, name), {"alerts": len(rows)})
            return self.render(request, "pupil.html", user=user, csrf=ws.csrf_token, alerts=rows, pupil=name,
                               site=db.get(Site, site_id), outcomes=reviewing.outcomes_by_alert(
                                   db, [a.id for a in rows]))

        return self.run(request, work)

    # ---- site safeguarding settings (admin, or the site's headteacher)

    def _site_for_settings(self, db: Session, user: User, site_id: str) -> Site:
        sid = _form_int(site_id)
        site = db.get(Site, sid) if sid is not None else None
        if site is None or site.id not in {s.id for s in user.sites}:
            raise PageError(404, "No such site", "There is no site with that reference among your sites.")
        if user.role not in ("admin", "headteacher"):
            raise PageError(403, "Not available to your role",
                            "Only an administrator or the headteacher changes the safeguarding settings.")
        return site

    def _site_context(self, db: Session, site: Site) -> dict[str, Any]:
        members = [u for u in db.scalars(select(User).order_by(User.display_name))
                   if site.id in {s.id for s in u.sites} and not u.disabled]
        return {"site": site, "named": db.get(SiteSafeguarding, site.id),
                "seniors": [u for u in members if u.role in rules.REVIEWER_ROLES],
                "governors": [u for u in members if u.role == "governor"],
                "on_call": notify.on_call_list(db, site.id)}

    def site_page(self, request: Request, site_id: str) -> Response:
        def work(db: Session) -> Response:
            ws, user = self.signed_in(request, db)
            site = self._site_for_settings(db, user, site_id)
            return self.render(request, "site.html", user=user, csrf=ws.csrf_token,
                               done=request.query_params.get("done", ""), **self._site_context(db, site))

        return self.run(request, work)

    async def site_post(self, request: Request, site_id: str) -> Response:
        form = await self.form(request)

        def work(db: Session) -> Response:
            ws, user = self.signed_in(request, db)
            self.require_csrf(ws.csrf_token, form)
            site = self._site_for_settings(db, user, site_id)
            ctx = self._site_context(db, site)
            try:
                settings = present.parse_site_settings(form, ctx["seniors"], ctx["governors"])
            except ValueError as exc:
                return self.render(request, "site.html", status=400, user=user, csrf=ws.csrf_token,
                                   error=str(exc), **ctx)
            accounts.set_site_contacts(db, site.id, settings.allegations, settings.chair, settings.minutes)
            notify.set_on_call(db, site.id, settings.on_call)
            audit.append(db, user.username, "site.safeguarding", f"site:{site.id}", {
                "allegations": settings.allegations.username if settings.allegations else None,
                "chair": settings.chair.username if settings.chair else None,
                "on_call": len(settings.on_call), "escalate_after_minutes": settings.minutes})
            return RedirectResponse(f"/admin/sites/{site.id}?done=1", status_code=303)

        return await asyncio.to_thread(self.run, request, work)

    # ---- imminent-risk acknowledgement (from the e-mail, no sign-in needed: the token is the proof)

    def ack_page(self, request: Request, token: str) -> Response:
        pre = self.pre_token(request)

        def work(db: Session) -> Response:
            page = notify.page_for_token(db, token)
            if page is None:
                raise PageError(404, "Link not valid", "This acknowledge link is wrong or out of date.", back="/login")
            return self.render(request, "ack.html", csrf=pre, page=page)

        return self.with_pre_cookie(self.run(request, work), pre)

    async def ack_post(self, request: Request, token: str) -> Response:
        form = await self.form(request)
        pre = self.pre_token(request)

        def work(db: Session) -> Response:
            if not sessions.csrf_ok(request.cookies.get(sessions.PRE_COOKIE), form.get("csrf")):
                raise PageError(403, "Form expired", "Open the acknowledge link again.", back="/login")
            page = notify.acknowledge(db, token)
            if page is None:
                raise PageError(404, "Link not valid", "This acknowledge link is wrong or out of date.", back="/login")
            return self.render(request, "ack.html", csrf=pre, page=page, acknowledged=True)

        return self.with_pre_cookie(await asyncio.to_thread(self.run, request, work), pre)


class _Refused(Exception):
    pass
