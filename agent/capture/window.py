"""The active window, behind one small interface with one backend per platform."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.capture.session_type import SessionType


@dataclass(frozen=True)
class ActiveWindow:
    title: str
    application: str  # process name ("firefox", "xterm"); the window class when the process is unknown
    pid: int | None
    window_id: int | str | None


WindowCallback = Callable[[ActiveWindow], None]


class WindowWatcher:
    """Calls `callback` from its own thread when the focused window changes and when the focused window's title
    changes (a browser switching tabs keeps its window but changes its title). Backends call `_report`."""

    def __init__(self, callback: WindowCallback, on_lost: Callable[[], None] | None = None):
        self._callback = callback
        self.on_lost = on_lost  # the desktop went away (logout): the helper has nothing left to watch
        self._lock = threading.Lock()
        self._current: ActiveWindow | None = None

    @property
    def current(self) -> ActiveWindow | None:
        with self._lock:
            return self._current

    def _report(self, window: ActiveWindow | None) -> None:
        """Tell the callback about `window` if focus or title changed; repeated reports of the same state are quiet."""
        if window is None:
            return
        with self._lock:
            previous, self._current = self._current, window
        if previous is None or previous.window_id != window.window_id or previous.title != window.title:
            self._callback(window)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def process_name(pid: int | None) -> str:
    if not pid:
        return ""
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:  # gone, or not ours to look at
        return ""


def create_window_watcher(session: SessionType, callback: WindowCallback,
                          on_lost: Callable[[], None] | None = None) -> WindowWatcher:
    """The backend for `session`; raises OSError with a clear reason when the platform cannot give titles."""
    if session is SessionType.X11:
        from agent.capture.window_x11 import X11WindowWatcher

        return X11WindowWatcher(callback, on_lost=on_lost)
    if session is SessionType.WINDOWS:
        from agent.capture.window_windows import WindowsWindowWatcher

        return WindowsWindowWatcher(callback)
    if session is SessionType.MACOS:
        from agent.capture.window_macos import MacWindowWatcher

        return MacWindowWatcher(callback)
    raise OSError(f"window titles cannot be read in a {session.value} session")
