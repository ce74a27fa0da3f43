"""`wardwatch-agent run`: the system-level agent service.

It owns the identity, the spool and the uplink. Matches arrive from session helpers over the local channel, USB
reports from the media watcher; both are signed and spooled before they are acknowledged, then drained to the
collector in batches with jittered exponential backoff while it is away.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import signal
import time

import grpc

from agent import __version__
from agent.alerts import SOURCES, Signer, coverage_alert, dropped_alert
from agent.bundles import BundleStore
from agent.channel import describe_rpc_error
from agent.errors import AgentError
from agent.host import host_info
from agent.memory import return_free_heap
from agent.notice import notice_version
from agent.spool import Spool, SpoolFull
from agent.state import AgentState, generalize
from agent.supervise import HelperSupervisor
from agent.uplink import (
    RECONNECT_GRACE_S,
    Backoff,
    Uplink,
    cancelled_by_closed_channel,
    command_backoff,
    stream_reopen_delay,
    upload_backoff,
)
from protos import wardwatch_pb2 as pb

log = logging.getLogger("wardwatch.agent")
# New alerts wake the drain loop at once; the idle poll only catches alerts queued by another process
# (send-test-alert) and costs one read, so it can be slow.
# An idle classroom PC should cost nothing: everything below is woken by events (a new alert, a helper hanging up,
# a change worth writing to status.json), and these periods are only safety nets. Each wake-up costs ~1 ms of CPU;
# at the old 5 s periods the idle service used 0.13 % of a core, over the 0.1 % budget with nothing to do.
IDLE_POLL_S = 60.0
STATUS_EVERY_S = 60.0
HEARTBEAT_S = 60.0
RENEW_BEFORE = dt.timedelta(days=30)
HELPER_CHECK_S = 60.0
STOP_FLUSH_S = 5.0
# The installer writes this file before it stops the service for an upgrade or an authorised uninstall; a stop
# without it (or with a stale one) is reported to the technician as a coverage gap.
MAINTENANCE_FILE = "maintenance"
MAINTENANCE_VALID_S = 3600
DECOMMISSIONED_EXIT = 3


class AgentService:
    def __init__(self, state: AgentState):
        self.state = state
        self.config = state.config()
        self.spool = Spool(state.spool_path)
        self.bundles = BundleStore(state)
        self.signer = Signer(key=state.alert_signing_key(), agent_id=self.config["agent_id"],
                             age_band=self.config.get("age_band", "secondary"),
                             bundle_version=self.bundles.current_version())
        self.instance_id = secrets.token_hex(8)
        self.uplink: Uplink | None = None
        self.wake = asyncio.Event()
        self.heartbeat_now = asyncio.Event()  # set when the collector should hear news before the next beat
        self.status_changed = asyncio.Event()  # something status.json shows may have changed
        self.helper_left = asyncio.Event()  # a session helper hung up: see at once whether it died
        self._settled = False  # whether the first heartbeat (and the start-up work before it) is done
        self.refused_bundles: set[str] = set()  # not fetched again until an operator publishes another
        self.stopping = asyncio.Event()
        self.gaps: dict[str, str] = {}
        self.last_contact: float | None = None
        self.last_error = ""
        self.heartbeat_interval_s = HEARTBEAT_S  # the collector's, from its last heartbeat answer
        self._closing: set[asyncio.Task] = set()  # old connections finishing their calls after a reconnect
        self._command_stream = None  # the open Commands call, if any
        self.started_at = time.time()
        self.helpers = HelperSupervisor(restart=os.environ.get("WARDWATCH_NO_HELPER_RESTART") != "1")
        self.exit_code = 0
        self.decommissioned = False

    # -------------------------------------------------------------- spooling

    def spool_alert(self, alert: pb.Alert) -> int:
        """Sign and store one alert durably (thread-safe). Returns its seq."""
        return self.spool.enqueue(alert.severity, lambda seq: self.signer.envelope(alert, seq))

    async def spool_alert_async(self, alert: pb.Alert) -> int:
        seq = await asyncio.to_thread(self.spool_alert, alert)
        self.wake.set()
        self.status_changed.set()
        return seq

    async def on_session_message(self, message: dict, peer) -> None:
        """A message from a session helper. The user is who the OS says the peer is, never what it claims."""
        user = getattr(peer, "username", "") or ""
        kind = message.get("type")
        if kind == "match":
            await self.spool_alert_async(alert_from_match(message, user, self.signer.age_band))
        elif kind == "coverage":
            gap, detail = str(message.get("gap", "unknown"))[:64], str(message.get("detail", ""))[:500]
            self.gaps[gap] = detail
            await self.spool_alert_async(coverage_alert(gap, detail, user=user))
        elif kind == "notice":
            alert = pb.Alert(kind=pb.ALERT_KIND_NOTICE, severity=0, rule="notice.shown", user=user,
                             matched=str(message.get("text_version") or notice_version(self.state.config()))[:64])
            await self.spool_alert_async(alert)
        elif kind == "hello":
            log.info("session helper connected (pid %s, user %s)", getattr(peer, "pid", "?"), user)
            if getattr(peer, "pid", None):
                self.helpers.on_hello(peer.pid, user)
                self.gaps.pop("helper-stopped", None)

    def on_media_report(self, report) -> None:
        """Called from the media watcher's thread, once per arriving volume."""
        severity = self.media_policy.severity_for(report)
        alert = usb_alert(report, severity, approved=self.media_policy.is_approved(report))
        alert.usb.os_write_policy = self.os_write_policy
        try:
            self.spool_alert(alert)
        except SpoolFull:
            log.error("spool full: USB report for %s could not be stored", report.device or report.path)
        self._loop.call_soon_threadsafe(self.wake.set)

    # -------------------------------------------------------------- loops

    async def drain_loop(self) -> None:
        backoff = upload_backoff()
        while not self.stopping.is_set():
            try:
                await asyncio.to_thread(self.spool.take_dropped, self._dropped_envelope)
                result = await self._uplink().send_batch(self.spool)
                if result.sent:
                    self._contact()
                    backoff.reset()
                    continue  # more may be waiting
            except grpc.RpcError as exc:
                self._error(describe_rpc_error(exc, self.config["address"]))
                await self._sleep(backoff.next_delay())
                continue
            except asyncio.CancelledError:
                if not cancelled_by_closed_channel():
                    raise
                continue  # the batch went back to the spool; it goes again over the new connection
            self.wake.clear()
            await self._sleep(IDLE_POLL_S, self.wake)

    def _dropped_envelope(self, summary, seq: int) -> bytes:
        return self.signer.envelope(dropped_alert(summary.count, summary.first_seq, summary.last_seq,
                                                  summary.max_severity), seq)

    async def heartbeat_loop(self) -> None:
        backoff = Backoff(base=5)
        while not self.stopping.is_set():
            # Cleared before the beat, not after: news arriving during it (a bundle installed below, a command
            # handled meanwhile) must bring the next beat forward, not wait a whole interval.
            self.heartbeat_now.clear()
            try:
                resp = await self._uplink().heartbeat(self._heartbeat_request())
                self._contact()
                backoff.reset()
                latest = resp.latest_bundle_version
                if latest and latest != self.bundles.current_version() and latest not in self.refused_bundles:
                    await self.update_bundle()
                if resp.trust_bundle_sha256 and resp.trust_bundle_sha256 != self._trust_bundle_sha256():
                    # A CA rotation: renewing brings a certificate from the new CA and the new trust bundle.
                    await self.renew_certificate()
                else:
                    await self.renew_if_due()
                if not self._settled:
                    # Start-up (connecting, the first bundle) leaves free heap behind that glibc would keep.
                    self._settled = True
                    return_free_heap()
                self.heartbeat_interval_s = float(resp.heartbeat_interval_s or HEARTBEAT_S)
                await self._sleep(self.heartbeat_interval_s, self.heartbeat_now)
            except grpc.RpcError as exc:
                self._error(describe_rpc_error(exc, self.config["address"]))
                await self._sleep(backoff.next_delay())
            except asyncio.CancelledError:
                if not cancelled_by_closed_channel():
                    raise
                # The connection was replaced under the beat: beat again at once, over the new one.

    def _heartbeat_request(self) -> pb.HeartbeatRequest:
        req = pb.HeartbeatRequest(host=host_info(), bundle_version=self.bundles.current_version(),
                                  spool_depth=self.spool.depth(), last_seq=self.spool.last_seq(),
                                  instance_id=self.instance_id)
        req.clock.GetCurrentTime()
        for gap, detail in self.gaps.items():
            req.gaps.add(gap=gap, detail=detail)
        return req

    async def commands_loop(self) -> None:
        backoff = command_backoff()
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            opened = loop.time()
            uplink = self._uplink()
            try:
                stream = self._command_stream = uplink.stub.Commands(pb.CommandsRequest(instance_id=self.instance_id))
                async for command in stream:
                    await self.handle_command(command)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    self._error(describe_rpc_error(exc, self.config["address"]))
            except asyncio.CancelledError:
                if not cancelled_by_closed_channel():
                    raise
            # A new uplink means this agent closed the old connection itself (a new certificate, a re-key):
            # no storm to spread out, so the stream comes back at once.
            await self._sleep(stream_reopen_delay(loop.time() - opened, backoff, self.heartbeat_interval_s,
                                                  replaced=self.uplink is not uplink))

    async def handle_command(self, command: pb.Command) -> None:
        kind = command.WhichOneof("kind")
        ok, detail = True, ""
        if kind == "ping":
            detail = "pong"
        elif kind == "update_bundle":
            ok, detail = await self.update_bundle()
        elif kind == "renew_now":
            ok, detail = await self.renew_certificate()
        elif kind == "rekey":
            ok, detail = await self.rekey(command.rekey)
        elif kind == "uninstall":
            ok, detail = True, "removing this device's identity and stopping the service"
        else:
            ok, detail = False, f"command {kind!r} is not supported by agent {__version__}"
        with contextlib.suppress(grpc.RpcError):
            # Still the channel of the identity the command was sent to: a re-key switches only after this.
            await self._uplink().stub.AckCommand(pb.CommandResult(command_id=command.id, ok=ok, detail=detail),
                                                 timeout=15)
        if kind == "rekey" and ok:
            await self._adopt_new_identity(command.rekey.reason or "cloned-identity")
        elif kind == "uninstall":
            await self.uninstall()

    async def rekey(self, request: pb.Rekey) -> tuple[bool, str]:
        """Enrol a new identity (the collector saw this one on two live devices). The service keeps using the old
        one until the command is acknowledged over the old channel; then `_adopt_new_identity` switches."""
        from agent.enrol import rekey

        if not request.token:
            return False, "a re-key needs a one-time token from the collector"
        await self._flush_spool()  # alerts signed by the old identity must go while it is still accepted
        try:
            new_id = await rekey(self.state, request.token)
        except grpc.RpcError as exc:
            return False, describe_rpc_error(exc, self.config["address"])
        except AgentError as exc:
            return False, str(exc)
        return True, f"re-keyed as {new_id}"

    async def _adopt_new_identity(self, reason: str) -> None:
        from agent.alerts import Signer

        old_id = self.config["agent_id"]
        self.config = self.state.config()
        new_id = self.config["agent_id"]
        # Channel and signer change together, with no await between: nothing signed by one identity is sent
        # over the other's channel (the collector would reject it).
        old_uplink, self.uplink = self.uplink, Uplink(self.state)
        self.signer = Signer(key=self.state.alert_signing_key(), agent_id=new_id, age_band=self.signer.age_band,
                             bundle_version=self.signer.bundle_version)
        self.instance_id = secrets.token_hex(8)
        if old_uplink is not None:
            await old_uplink.close()
        detail = (f"this device presented identity {old_id} at the same time as another live device (a cloned "
                  f"image that was not generalised); it re-keyed as {new_id}")
        await self.spool_alert_async(coverage_alert(reason, detail, severity=3))
        log.warning("re-keyed: agent %s is now %s (%s)", old_id, new_id, reason)

    async def uninstall(self) -> None:
        """The collector decommissioned this device: stop for good; `run` then drops identity and spool."""
        self._enter_maintenance("decommissioned by the collector")
        self.decommissioned = True
        self.exit_code = DECOMMISSIONED_EXIT  # the systemd unit does not restart on this status
        self.stopping.set()

    async def _flush_spool(self, deadline_s: float = 20.0) -> None:
        end = time.monotonic() + deadline_s
        with contextlib.suppress(grpc.RpcError):
            while time.monotonic() < end and self.spool.depth():
                if not (await self._uplink().send_batch(self.spool)).sent:
                    break

    # -------------------------------------------------------------- bundles and certificates

    async def update_bundle(self) -> tuple[bool, str]:
        try:
            resp = await self._uplink().fetch_bundle(self.bundles.current_version())
        except grpc.RpcError as exc:
            return False, describe_rpc_error(exc, self.config["address"])
        if resp.not_modified:
            return True, f"already on {resp.version}"
        public_key = base64.b64decode(self.config.get("bundle_public_key", ""))
        ok, detail = await asyncio.to_thread(self.bundles.install, resp.version, resp.bundle, resp.signature,
                                             public_key)
        if ok:
            self.gaps.pop("bundle-refused", None)
            self.heartbeat_now.set()  # the collector learns the version this agent runs right away
            self.signer = Signer(key=self.signer.key, agent_id=self.signer.agent_id, age_band=self.signer.age_band,
                                 bundle_version=resp.version)
        else:
            log.error("refused keyword bundle %s: %s", resp.version, detail)
            self.refused_bundles.add(resp.version)
            self.gaps["bundle-refused"] = detail[:200]
            self.heartbeat_now.set()
        return ok, detail

    async def renew_if_due(self) -> None:
        not_before, not_after = self.state.certificate_validity()
        if renewal_due(not_before, not_after, dt.datetime.now(dt.UTC)):
            ok, detail = await self.renew_certificate()
            if ok:
                log.info("%s", detail)
            else:
                self._error(f"certificate renewal failed: {detail}")

    def _trust_bundle_sha256(self) -> str:
        try:
            return hashlib.sha256(self.state.ca_path.read_bytes()).hexdigest()
        except OSError:
            return ""

    async def renew_certificate(self) -> tuple[bool, str]:
        from agent.renew import renew

        try:
            not_after = await renew(self.state, self._uplink())
        except grpc.RpcError as exc:
            return False, describe_rpc_error(exc, self.config["address"])
        await self._reconnect()
        return True, f"certificate renewed until {not_after.isoformat()}"

    # -------------------------------------------------------------- plumbing

    def _uplink(self) -> Uplink:
        if self.uplink is None:
            self.uplink = Uplink(self.state)
        return self.uplink

    async def _reconnect(self) -> None:
        """A new connection, after a new certificate. Calls in flight on the old one get RECONNECT_GRACE_S to
        finish there (an upload's answer is its ack); new calls use the new one."""
        old, self.uplink = self.uplink, Uplink(self.state)
        if old is not None:
            self._close_later(old)
        if self._command_stream is not None:
            self._command_stream.cancel()  # it never finishes by itself: commands_loop reopens it on the new one

    def _close_later(self, uplink: Uplink) -> None:
        closing = asyncio.create_task(uplink.close(grace=RECONNECT_GRACE_S))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def _contact(self) -> None:
        self.last_contact = time.time()
        self.last_error = ""
        self.status_changed.set()

    def _error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
            self.status_changed.set()
        self.last_error = message

    async def _sleep(self, seconds: float, event: asyncio.Event | None = None) -> None:
        waiters = [asyncio.create_task(self.stopping.wait())]
        if event is not None:
            waiters.append(asyncio.create_task(event.wait()))
        _done, pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    async def status_loop(self) -> None:
        while not self.stopping.is_set():
            self.status_changed.clear()
            self.write_status()
            await self._sleep(STATUS_EVERY_S, self.status_changed)

    def write_status(self) -> None:
        """Write status.json for `status`, only when something in it changed (an idle PC should not write)."""
        status = {"pid": os.getpid(), "started_at": self.started_at, "last_contact": self.last_contact,
                  "last_error": self.last_error, "spool_depth": self.spool.depth(), "instance_id": self.instance_id,
                  "bundle_version": self.bundles.current_version(), "gaps": self.gaps}
        text = json.dumps(status)
        # last_contact moves with every heartbeat; a minute's precision is plenty for `status`.
        key = text if self.last_contact is None else text.replace(str(self.last_contact), str(
            int(self.last_contact // 60)))
        if key == getattr(self, "_status_written", None):
            return
        tmp = self.state.status_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.state.status_path)
        self._status_written = key

    async def helper_loop(self) -> None:
        while not self.stopping.is_set():
            self.helper_left.clear()
            for stop in self.helpers.check():
                self.gaps["helper-stopped"] = stop.detail
                await self.spool_alert_async(coverage_alert("helper-stopped", stop.detail, severity=3,
                                                            user=stop.record.username))
            # A helper that dies hangs up its channel, which wakes this loop; a restart waiting out its grace period
            # wakes it when due. The period is a safety net for a helper that never connected.
            await self._sleep(self.helpers.next_check_in(HELPER_CHECK_S), self.helper_left)

    def _helper_hung_up(self) -> None:
        self.helpers.hung_up()
        self.helper_left.set()

    def _maintenance_path(self):
        return self.state.root / MAINTENANCE_FILE

    def _enter_maintenance(self, reason: str) -> None:
        self._maintenance_path().write_text(reason)

    def _in_maintenance(self) -> bool:
        try:
            return time.time() - self._maintenance_path().stat().st_mtime < MAINTENANCE_VALID_S
        except OSError:
            return False

    async def _report_stop(self) -> None:
        """Stopped outside an upgrade or an authorised uninstall: tell the technician before going."""
        if self.decommissioned or self._in_maintenance():
            return
        await self.spool_alert_async(coverage_alert("service-stopped", "the agent service was stopped outside an "
                                                    "upgrade; nothing is monitored until it runs again", severity=3))
        await self._flush_spool(STOP_FLUSH_S)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        # The installer's marker covers one stop; the service it started clears it.
        with contextlib.suppress(OSError):
            self._maintenance_path().unlink()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Windows has no signal handlers on the loop: there the service host sets `stopping` itself.
            with contextlib.suppress(NotImplementedError):
                self._loop.add_signal_handler(sig, self.stopping.set)
        # Leases held by a process that died (SIGKILL mid-send) would delay those alerts; take them back.
        self.spool.release(self.spool.pending_seqs())
        tasks = [asyncio.create_task(c) for c in (self.drain_loop(), self.heartbeat_loop(), self.commands_loop(),
                                                   self.status_loop(), self.helper_loop())]
        closers = []
        ipc = await self._start_session_channel()
        if ipc is not None:
            closers.append(ipc.close)
        media = self._start_media_watcher()
        log.info("agent %s running (site %s, collector %s)", self.config["agent_id"], self.config.get("site"),
                 self.config["address"])
        await self.stopping.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._report_stop()
        for close in closers:
            await close()
        if media is not None:
            media.stop()
        if self.uplink is not None:
            await self.uplink.close()
        await asyncio.gather(*self._closing, return_exceptions=True)
        if self.decommissioned:
            self.spool.close()
            generalize(self.state)
            return
        self.write_status()
        self.spool.close()

    async def _start_session_channel(self):
        try:
            from agent.ipc import MatchServer
        except ImportError:
            log.warning("session channel unavailable in this build: no typed-text or title alerts")
            return None
        self.state.ipc_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        server = MatchServer(self.state.ipc_dir / "session.sock", self.on_session_message,
                             on_hang_up=lambda _peer: self._helper_hung_up())
        await server.start()
        return server

    def _start_media_watcher(self):
        """Watch removable media. Site policy comes from agent.json: `approved_usb_serials`, `usb_severities`
        (state -> severity or null) and `media_include_loop` (also watch loop devices: thin clients, tests)."""
        from agent.capture.media import MediaPolicy, os_write_policy, start_watcher

        self.media_policy = MediaPolicy(approved_serials=self.config.get("approved_usb_serials", []),
                                        severities=self.config.get("usb_severities", {}))
        self.os_write_policy = os_write_policy()
        try:
            return start_watcher(self.on_media_report, include_loop=bool(self.config.get("media_include_loop")))
        except Exception as exc:  # a platform without udev must not stop alerting on text
            log.warning("removable-media watcher could not start: %s", type(exc).__name__)
            self.gaps["usb-unavailable"] = str(exc)[:200]
            return None


def alert_from_match(message: dict, user: str, age_band: str) -> pb.Alert:
    m = message.get("match", {})
    return pb.Alert(
        kind=pb.ALERT_KIND_KEYWORD, category=str(m.get("category", ""))[:32], severity=int(m.get("severity", 1)),
        rule=str(m.get("rule", ""))[:128], confidence=float(m.get("confidence", 1.0)),
        matched=str(m.get("matched", ""))[:500], context=str(message.get("context", m.get("context", "")))[:1000],
        source=SOURCES.get(str(m.get("source", "typed")), pb.TEXT_SOURCE_TYPED),
        window_title=str(message.get("window_title", ""))[:500],
        application=str(message.get("application", ""))[:255], user=user,
        age_band=str(message.get("age_band") or age_band)[:16], injected=bool(message.get("injected")),
    )


def usb_alert(report, severity: int | None, approved: bool) -> pb.Alert:
    alert = pb.Alert(kind=pb.ALERT_KIND_USB, severity=severity or 0, rule=f"usb.{report.state}",
                     category="", matched=f"{report.state} ({report.scheme})")
    u = alert.usb
    u.state, u.scheme, u.filesystem = report.state, report.scheme or "", report.filesystem or ""
    u.size_bytes = int(report.size_bytes or 0)
    u.vendor, u.model, u.serial = report.vendor or "", report.model or "", report.serial or ""
    u.device = report.device or report.path
    u.evidence.extend(str(e)[:200] for e in report.evidence[:20])
    u.approved = approved
    return alert


def renewal_due(not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime) -> bool:
    """Renew with a third of the validity left (30 days at most): early enough to survive a long holiday
    switched off, and proportionate for short-lived certificates."""
    return not_after - now < min(RENEW_BEFORE, (not_after - not_before) / 3)


def cmd_run(args: argparse.Namespace) -> int:
    state = AgentState(args.state)
    service = AgentService(state)
    asyncio.run(service.run())
    return service.exit_code
