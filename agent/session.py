"""`wardwatch-agent session`: the per-user session helper, started at logon.

It watches the keyboard and the active window, runs the detection engine on the device and sends only matches to the
agent service over the local channel (agent/ipc.py). Raw keystrokes never leave this process, and keys typed into a
password field, a credential prompt or an excluded application are dropped the moment they arrive.

One worker (the main thread) owns the engine: keys and window changes arrive on one queue, so a title change is
always seen in order with the keys typed before and after it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import __version__
from agent.capture.keyboard import RAW_QUEUE_LIMIT, KeyEvent
from agent.capture.privacy import PrivacyPolicy
from agent.capture.session_type import WAYLAND_NOTICE, SessionType, detect_session_type, keystrokes_supported
from agent.capture.window import ActiveWindow
from agent.errors import AgentError
from agent.memory import return_free_heap
from agent.notice import notice_text

log = logging.getLogger("wardwatch.session")

BUNDLE_CHECK_S = 30.0  # a new bundle is picked up within this long; a stat() every 30 s costs nothing
TITLES_REMEMBERED = 512  # a title hit is reported once per distinct title, not on every refocus
SYSTEM_STATE_DIR = Path("/var/lib/wardwatch/agent")



class SessionStop(BaseException):
    """SIGTERM/SIGINT: finish the current stretch of text, deliver what is queued and leave. A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way (a notice that fails, a bad event) swallows it."""


# ---------------------------------------------------------------------------------------------- configuration


def resolve_state_dir(requested: Path) -> Path:
    """The service's state directory: the one asked for if it is a service's, else the system default if a service
    runs there (a helper started as the pupil would otherwise look in the pupil's own home)."""
    if (requested / "agent.json").exists() or (requested / "ipc").exists():
        return requested
    if not os.environ.get("WARDWATCH_STATE") and (SYSTEM_STATE_DIR / "ipc").exists():
        return SYSTEM_STATE_DIR
    return requested


def read_agent_config(state_dir: Path) -> dict[str, Any]:
    """agent.json, readable by every user (it holds no secret); empty before enrolment."""
    path = state_dir / "agent.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s); using defaults", path, type(exc).__name__)
        return {}
    return config if isinstance(config, dict) else {}


# ---------------------------------------------------------------------------------------------- the engine


class FileWatch:
    """Notices that files were replaced or changed, with one stat() per file per check."""

    def __init__(self, *paths: Path):
        self.paths = paths
        self._seen = self.fingerprint()

    def fingerprint(self) -> tuple:
        marks = []
        for path in self.paths:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                marks.append(None)
                continue
            marks.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(marks)

    def changed(self) -> bool:
        now = self.fingerprint()
        if now == self._seen:
            return False
        self._seen = now
        return True


class BundleFiles(FileWatch):
    """The service's current bundle and its signature, watched for the service installing a new one."""

    def __init__(self, state_dir: Path):
        self.bundle = state_dir / "bundle" / "current.wwb"
        self.signature = state_dir / "bundle" / "current.sig"
        super().__init__(self.bundle, self.signature)


def packaged_signatures_dir() -> Path:
    import signatures

    return Path(signatures.__file__).resolve().parent


def load_bundle_engine(files: BundleFiles, state_dir: Path, profile: str, agent_id: str = ""):
    """The bundle the service verified and installed, with the exemptions in it that name this agent.

    The service checks the bundle's signature before it installs it, into a directory only the service can write;
    the helper reads it only if that still holds (`read_service_file`), so it does not repeat the check. The bundle
    key it would check with sits in the same directory (agent.json), so a second check here would add no trust, and
    it would cost the helper a crypto library (~12 MB resident) for as long as the pupil is logged on. A bundle packed
    with its signature (signatures/build's format) is accepted too."""
    from agent.detect import Engine
    from agent.detect.exemptions import Exemptions
    from agent.ipc import read_service_file
    from signatures.bundle import SIGNED_MAGIC, parse_verified_bundle, unpack_signed

    data = read_service_file(files.bundle, state_dir)
    bundle = unpack_signed(data)[0] if data.startswith(SIGNED_MAGIC) else data
    library, exemptions = parse_verified_bundle(bundle)
    del data, bundle
    return Engine.from_library(library, profile=profile, exemptions=Exemptions.for_agent(exemptions, agent_id))


def reload_bundle_engine(state_dir: Path, profile: str):
    """The bundle the service just installed; raises if it cannot be used, so that the running one stays (a reload
    never falls back to the built-in libraries, which may be older than the bundle in use)."""
    config = read_agent_config(state_dir)
    return load_bundle_engine(BundleFiles(state_dir), state_dir, profile, str(config.get("agent_id") or ""))


def load_engine(state_dir: Path, profile: str, config: dict[str, Any]):
    """The service's verified bundle if there is one, else the libraries shipped in the package."""
    from agent.detect import Engine

    files = BundleFiles(state_dir)
    if files.bundle.exists():
        try:
            engine = load_bundle_engine(files, state_dir, profile, str(config.get("agent_id") or ""))
            log.info("keyword bundle %s loaded (%s)", engine.version, profile)
            return engine
        except Exception as exc:
            log.error("the service's keyword bundle could not be used (%s: %s); using the built-in libraries",
                      type(exc).__name__, str(exc)[:200])
    engine = Engine.from_signatures(packaged_signatures_dir(), profile=profile)
    log.info("built-in keyword libraries loaded (%s)", profile)
    return engine


# ---------------------------------------------------------------------------------------------- the helper


def strongest_per_category(matches) -> list:
    """One match per category from one stretch of text or one title: "Pornhub - Free Porn Videos" hits two rules
    but is one thing a reviewer must look at. Keeps the most severe, then the most confident, then the first."""
    best: dict[str, Any] = {}
    for match in matches:
        kept = best.get(match.category)
        if kept is None or (match.severity, match.confidence) > (kept.severity, kept.confidence):
            best[match.category] = match
    return list(best.values())


class SessionHelper:
    """Turns key and window events into match messages. Everything here runs on one thread (`run`)."""

    def __init__(self, engine, send: Callable[[dict], Any], policy: PrivacyPolicy, age_band: str,
                 password_field_focused: Callable[[], bool] | None = None,
                 reload_engine: Callable[[], Any] | None = None, bundle_files: BundleFiles | None = None,
                 reload_policy: Callable[[], PrivacyPolicy] | None = None, settings: FileWatch | None = None):
        self.engine = engine
        self.kb = engine.keystroke_buffer()
        self.send = send
        self.policy = policy
        self.age_band = age_band
        self.password_field_focused = password_field_focused
        self.reload_engine = reload_engine
        self.bundle_files = bundle_files
        self.reload_policy = reload_policy
        self.settings = settings
        # Keys, raw keys and window changes, in the order they happened; bounded so that a stalled engine cannot
        # grow memory without limit (a full queue drops keys at the listener, never blocks it).
        self.events: queue.Queue = queue.Queue(maxsize=RAW_QUEUE_LIMIT)
        self.translate_raw: Callable[[tuple], KeyEvent | None] | None = None
        self.window: ActiveWindow | None = None
        self.titles_seen: OrderedDict[str, None] = OrderedDict()
        self.dropping: str | None = None  # why keys are being dropped right now, for one log line per change
        self.keys_dropped = 0
        self.matches_sent = 0
        # Whether this stretch of text had synthesised keys (on-screen keyboard, automation): kept on its matches.
        self.injected_in_segment = False
        self._next_bundle_check = time.monotonic() + BUNDLE_CHECK_S

    # ------------------------------------------------------------------ producers (any thread)

    def on_key(self, event: KeyEvent) -> None:
        self.events.put(("key", event))

    def on_window(self, window: ActiveWindow) -> None:
        self.events.put(("window", window))

    def stop(self) -> None:
        self.events.put(("stop", None))

    # ------------------------------------------------------------------ the worker

    def run(self) -> None:
        """Process events until `stop()`; raises SessionStop if a signal handler does."""
        while True:
            try:
                kind, payload = self.events.get(timeout=max(0.1, self._next_bundle_check - time.monotonic()))
            except queue.Empty:
                self.check_updates()
                continue
            if kind == "stop":
                return
            if kind == "raw":
                event = self.translate_raw(payload) if self.translate_raw else None
                if event is None:
                    continue
                kind, payload = "key", event
            self.handle(kind, payload)

    def handle(self, kind: str, payload: Any) -> None:
        try:
            if kind == "key":
                self.handle_key(payload)
            elif kind == "window":
                self.handle_window(payload)
        except Exception as exc:  # one bad event must not end monitoring; its content is not logged
            log.error("could not process a %s event: %s", kind, type(exc).__name__)
        if time.monotonic() >= self._next_bundle_check:
            self.check_updates()

    def handle_key(self, event: KeyEvent) -> None:
        password_field = bool(self.password_field_focused and self.password_field_focused())
        exclusion = self.policy.exclusion_for(self.window, password_field=password_field)
        if exclusion is not None:
            self.keys_dropped += 1  # the key itself goes with `event`, now: nothing keeps it
            if self.dropping != exclusion.reason:
                log.info("privacy: keys are not captured here (%s)", exclusion.describe())
                self.dropping = exclusion.reason
                # What was typed before the secret is matched on its own, never joined to what follows it.
                self.end_segment("excluded", self.window)
            return
        if self.dropping is not None:
            log.info("privacy: key capture resumed")
            self.dropping = None
        self.injected_in_segment = self.injected_in_segment or event.injected
        self.report(self.kb.feed(event.key), self.window, injected=self.injected_in_segment)

    def end_segment(self, reason: str, window: ActiveWindow | None) -> None:
        self.report(self.kb.new_segment(reason), window, injected=self.injected_in_segment)
        self.injected_in_segment = False

    def handle_window(self, window: ActiveWindow) -> None:
        previous = self.window
        # The stretch of text typed so far belongs to the window it was typed in.
        focus_changed = previous is None or previous.window_id != window.window_id
        self.end_segment("focus" if focus_changed else "title", previous)
        self.window = window
        exclusion = self.policy.exclusion_for(window)
        if exclusion is not None and exclusion.drop_title:
            return
        if not window.title or window.title in self.titles_seen:
            return
        self.titles_seen[window.title] = None
        while len(self.titles_seen) > TITLES_REMEMBERED:
            self.titles_seen.popitem(last=False)
        self.report(self.engine.scan(window.title, source="title"), window)

    def report(self, matches, window: ActiveWindow | None, injected: bool = False) -> None:
        if hasattr(self.engine, "without_exempt"):  # exempted text never leaves this process
            matches = self.engine.without_exempt(matches or ())
        for match in strongest_per_category(matches or ()):
            data = dict(match.to_dict())
            data["context"] = getattr(match, "context", data.get("context", ""))
            message = {"type": "match", "match": data, "context": data["context"],
                       "window_title": window.title if window else "",
                       "application": window.application if window else "", "age_band": self.age_band}
            if injected and data.get("source") != "title":
                message["injected"] = True
            self.send(message)
            self.matches_sent += 1
            log.debug("match sent (severity %s)", data.get("severity"))

    def flush(self) -> None:
        self.report(self.kb.flush(), self.window, injected=self.injected_in_segment)

    def check_updates(self) -> None:
        """Pick up a new bundle or new privacy settings (both are written by the service)."""
        self._next_bundle_check = time.monotonic() + BUNDLE_CHECK_S
        self.check_settings()
        self.check_bundle()

    def check_settings(self) -> None:
        if self.settings is None or self.reload_policy is None or not self.settings.changed():
            return
        try:
            self.policy = self.reload_policy()
        except ValueError as exc:
            log.error("new privacy settings not used (%s); keeping the current ones", exc)
            return
        log.info("privacy settings reloaded")

    def check_bundle(self) -> None:
        if self.bundle_files is None or self.reload_engine is None or not self.bundle_files.changed():
            return
        try:
            new_engine = self.reload_engine()
        except Exception as exc:
            log.error("new keyword bundle not loaded (%s); keeping the current one", type(exc).__name__)
            return
        if hasattr(self.engine, "swap_library"):
            self.engine.swap_library(new_engine)
        else:
            self.flush()
            self.engine, self.kb = new_engine, new_engine.keystroke_buffer()
        del new_engine
        return_free_heap()  # the old library's automata and the new one's build
        log.info("keyword bundle reloaded")


# ---------------------------------------------------------------------------------------------- platform pieces


def password_check_for(session: SessionType) -> Callable[[], bool] | None:
    """The platform's focused-password-field check. X11 has no such signal: there, titles and processes decide."""
    if session is SessionType.WINDOWS:
        from agent.capture.privacy_windows import password_field_focused

        return password_field_focused
    if session is SessionType.MACOS:
        from agent.capture.privacy_macos import password_field_focused

        return password_field_focused
    return None


def show_notice(session: SessionType, text: str) -> bool:
    """Show the notice where the platform lets a background process do so. The log always has it."""
    log.info("monitoring notice: %s", text)
    if session is not SessionType.X11:
        return False
    try:
        from agent.capture.notice_x11 import show_notice as show_x11

        show_x11(text)
        return True
    except Exception as exc:
        log.warning("the monitoring notice could not be shown on screen: %s", exc)
        return False


def _raise_stop(_signum, _frame) -> None:
    raise SessionStop()


def cmd_session(args: argparse.Namespace) -> int:
    from agent.ipc import MatchClient, socket_path_for

    state_dir = resolve_state_dir(Path(args.state))
    session = detect_session_type()
    if session is SessionType.NONE:
        raise AgentError("no desktop session here (neither DISPLAY nor WAYLAND_DISPLAY is set); "
                         "the session helper runs inside a user's graphical login")
    config = read_agent_config(state_dir)
    age_band = str(config.get("age_band") or "secondary")
    try:
        policy = PrivacyPolicy.from_config(config)
    except ValueError as exc:
        raise AgentError(f"{state_dir / 'agent.json'}: {exc}") from exc

    client = MatchClient(socket_path_for(state_dir), state_dir,
                         hello={"pid": os.getpid(), "session_type": session.value, "version": __version__})
    client.start()
    try:
        signal.signal(signal.SIGTERM, _raise_stop)
        signal.signal(signal.SIGINT, _raise_stop)
        shown = show_notice(session, notice_text(config))
        # The service puts the notice's version on the record (it has hashlib loaded anyway; the helper does not).
        client.send({"type": "notice", "shown_on_screen": shown})
        log.info("session helper started (%s session, state %s, age band %s)", session.value, state_dir, age_band)
        if not keystrokes_supported(session):
            return _idle_without_capture(client, session)
        return _capture(client, session, state_dir, config, policy, age_band)
    except SessionStop:
        return 0
    finally:
        client.close(timeout=3.0)


def _idle_without_capture(client, session: SessionType) -> int:
    """Wayland: say so loudly, report the gap, and stay (a helper that exits would only be restarted)."""
    log.warning("%s", WAYLAND_NOTICE)
    print(f"wardwatch-agent session: {WAYLAND_NOTICE}", file=sys.stderr)
    for gap in ("keystrokes-unavailable", "window-titles-unavailable"):
        client.send({"type": "coverage", "gap": gap, "detail": f"{session.value} session: capture not possible"})
    while True:
        signal.pause()


def _capture(client, session: SessionType, state_dir: Path, config: dict[str, Any], policy: PrivacyPolicy,
             age_band: str) -> int:
    from agent.capture.keyboard import KeyboardCapture
    from agent.capture.window import create_window_watcher

    try:
        engine = load_engine(state_dir, age_band, config)
    except Exception as exc:
        client.send({"type": "coverage", "gap": "detection-unavailable", "detail": type(exc).__name__})
        raise AgentError(f"the keyword libraries could not be loaded: {exc}") from exc
    return_free_heap()
    helper = SessionHelper(engine, client.send, policy, age_band, password_field_focused=password_check_for(session),
                           reload_engine=lambda: reload_bundle_engine(state_dir, age_band),
                           bundle_files=BundleFiles(state_dir),
                           reload_policy=lambda: PrivacyPolicy.from_config(read_agent_config(state_dir)),
                           settings=FileWatch(state_dir / "agent.json"))
    watcher = create_window_watcher(session, helper.on_window, on_lost=helper.stop)
    keyboard = KeyboardCapture(events=helper.events)  # keys go straight onto the helper's queue
    helper.translate_raw = keyboard.translate
    started = []
    for name, part, gap in (("window titles", watcher, "window-titles-unavailable"),
                            ("keystrokes", keyboard, "keystrokes-unavailable")):
        try:
            part.start()
            started.append(part)
        except OSError as exc:
            log.error("%s cannot be captured: %s", name, exc)
            client.send({"type": "coverage", "gap": gap, "detail": str(exc)[:300]})
    log.info("capturing: %s", ", ".join(type(part).__name__ for part in started) or "nothing")
    try:
        helper.run()
    finally:
        for part in reversed(started):
            part.stop()
        helper.flush()
        log.info("session helper stopping: %d matches sent, %d keys dropped for privacy",
                 helper.matches_sent, helper.keys_dropped)
    return 0
