"""Active window on macOS: the frontmost application from NSWorkspace, its focused window's title through the
Accessibility API (the helper needs the Accessibility permission; without it titles are empty and we say so).

pyobjc is imported lazily so that other platforms never need it. macOS offers no cheap system-wide title-change
notification without an AXObserver per application, so this backend asks once a second: two cheap calls."""

from __future__ import annotations

import logging
import threading

from agent.capture.window import ActiveWindow, WindowCallback, WindowWatcher

log = logging.getLogger("wardwatch.capture.window")
POLL_S = 1.0


def focused_window_title(pid: int) -> str:
    from ApplicationServices import (
        AXUIElementCopyAttributeValue,
        AXUIElementCreateApplication,
        kAXFocusedWindowAttribute,
        kAXTitleAttribute,
    )

    app = AXUIElementCreateApplication(pid)
    err, window = AXUIElementCopyAttributeValue(app, kAXFocusedWindowAttribute, None)
    if err or window is None:
        return ""
    err, title = AXUIElementCopyAttributeValue(window, kAXTitleAttribute, None)
    return "" if err or title is None else str(title)


def frontmost_window() -> ActiveWindow | None:
    from AppKit import NSWorkspace

    app = NSWorkspace.sharedWorkspace().frontmostApplication()
    if app is None:
        return None
    pid = int(app.processIdentifier())
    name = str(app.localizedName() or app.bundleIdentifier() or "")
    return ActiveWindow(title=focused_window_title(pid), application=name, pid=pid, window_id=f"{pid}")


class MacWindowWatcher(WindowWatcher):
    def __init__(self, callback: WindowCallback):
        super().__init__(callback)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            import AppKit  # noqa: F401
            import ApplicationServices
        except ImportError as exc:
            raise OSError("window titles need pyobjc (AppKit, ApplicationServices) on macOS") from exc
        if not ApplicationServices.AXIsProcessTrusted():
            log.warning("WardWatch has no Accessibility permission: window titles will be empty")
        self._report(frontmost_window())
        self._thread = threading.Thread(target=self._run, name="wardwatch-window", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self._report(frontmost_window())
            except Exception as exc:
                log.warning("window poll: %s", type(exc).__name__)
