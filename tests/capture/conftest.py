"""A real X desktop for capture tests: Xvfb on a free display, openbox, xterm windows and xdotool typing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.ipc import MatchServer, PeerCred
from tests.harness import start_xvfb, wait_for

TOOLS = ("Xvfb", "openbox", "xdotool", "xterm")


class ServiceThread:
    """A MatchServer in its own event loop, as the agent service runs it, recording what it is given."""

    def __init__(self, socket_path: Path, fail_first: int = 0, max_connections: int = 64):
        self.socket_path = socket_path
        self.max_connections = max_connections
        self.received: list[tuple[dict, PeerCred]] = []
        self.fail_first = fail_first
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: MatchServer | None = None

    async def on_message(self, message: dict, peer: PeerCred) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("spool full")
        self.received.append((message, peer))

    def start(self) -> ServiceThread:
        self.thread.start()
        self.server = MatchServer(self.socket_path, self.on_message, max_connections=self.max_connections)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def of_type(self, kind: str) -> list[dict]:
        return [m for m, _ in self.received if m["type"] == kind]


@dataclass
class Desktop:
    display: str
    env: dict[str, str]
    procs: list[subprocess.Popen]

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(list(args), env={**self.env, **(env or {})}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def xterm(self, title: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
        """A real xterm titled `title`, reading and discarding what is typed; returns (process, window id)."""
        proc = self.spawn("xterm", "-T", title, "-e", "sh", "-c", "cat >/dev/null", env=env)

        def window() -> int | None:
            out = self.run("xdotool", "search", "--pid", str(proc.pid), check=False).split()
            return int(out[-1]) if out else None

        return proc, wait_for(window, 15, f"xterm {title!r} to map")

    def activate(self, wid: int) -> None:
        self.run("xdotool", "windowactivate", "--sync", str(wid))

    def active(self) -> int:
        return int(self.run("xdotool", "getactivewindow").strip() or 0)

    def type(self, text: str) -> None:
        self.run("xdotool", "type", "--delay", "20", text)

    def key(self, *keys: str) -> None:
        self.run("xdotool", "key", "--delay", "20", *keys)

    def set_title(self, wid: int, title: str) -> None:
        self.run("xdotool", "set_window", "--name", title, str(wid))

    def close(self, proc: subprocess.Popen) -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _release_stopped_listeners(desk: Desktop) -> None:
    """A stopped pynput listener keeps its thread until the next input event; give it one (Shift and a click,
    harmless on this private display) so that it ends cleanly, not with a closed-display error once Xvfb is gone."""
    def stale() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if type(t).__module__.startswith("pynput") and t.is_alive()]

    if stale():
        desk.run("xdotool", "key", "shift", "click", "1", check=False)
        # Daemon threads: if one still hangs on, it dies with the test run at the latest.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not stale(), 5, "stopped listeners to end")


@pytest.fixture(scope="module")
def desktop() -> Iterator[Desktop]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"desktop tests need {', '.join(missing)} (installed by .ci/run)")
        pytest.skip(f"missing {', '.join(missing)}")
    xvfb, display = start_xvfb()
    env = {**os.environ, "DISPLAY": display}
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("XDG_SESSION_TYPE", None)
    procs: list[subprocess.Popen] = []
    desk = Desktop(display, env, procs)
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    try:
        wait_for(lambda: desk.run("xdotool", "getmouselocation", check=False), 30, "Xvfb to accept clients")
        procs.append(subprocess.Popen(["openbox"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: "_NET_SUPPORTING_WM_CHECK" in desk.run("xprop", "-root", check=False)
                 if shutil.which("xprop") else True, 30, "openbox to manage the screen")
        # pynput and python-xlib read the display from the environment of this process.
        os.environ["DISPLAY"] = display
        os.environ.pop("WAYLAND_DISPLAY", None)
        os.environ.pop("XDG_SESSION_TYPE", None)
        yield desk
    finally:
        _release_stopped_listeners(desk)
        for proc in reversed(procs):
            if proc.poll() is None:
                desk.close(proc)
        desk.close(xvfb)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
