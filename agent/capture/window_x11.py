"""Active window on X11, event-driven: PropertyNotify on the root for _NET_ACTIVE_WINDOW and on the active window
for its title. No polling while the window manager speaks EWMH, so an idle desktop costs nothing."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable

from agent.capture.window import ActiveWindow, WindowCallback, WindowWatcher, process_name

log = logging.getLogger("wardwatch.capture.window")

# Without an EWMH window manager there is no _NET_ACTIVE_WINDOW to watch; fall back to asking for the input focus.
FOCUS_POLL_S = 0.5
# ISO 2022 final bytes for "ESC - F" (96-character sets into GR) that compound text uses for the ISO 8859 parts.
_GR_CHARSETS = {
    b"A": "latin-1", b"B": "iso8859-2", b"C": "iso8859-3", b"D": "iso8859-4", b"F": "iso8859-7",
    b"G": "iso8859-6", b"H": "iso8859-8", b"L": "iso8859-5", b"M": "iso8859-9", b"b": "iso8859-15",
}


def decode_compound_text(data: bytes) -> str:
    """Decode X11 COMPOUND_TEXT as xterm and other Xt clients write WM_NAME: ASCII on the left, Latin-1 (or another
    ISO 8859 part) on the right, and UTF-8 segments between `ESC % G` and `ESC % @`. Unknown sets decode as Latin-1
    rather than failing: a slightly wrong title is better than none."""
    out: list[str] = []
    gr = "latin-1"
    i, n = 0, len(data)
    while i < n:
        if data[i] != 0x1B:
            j = data.find(b"\x1b", i)
            j = n if j < 0 else j
            chunk = data[i:j]
            out.append("".join(chr(b) if b < 0x80 else bytes([b]).decode(gr, "replace") for b in chunk))
            i = j
            continue
        if data[i + 1:i + 3] == b"%G":  # UTF-8 segment, ends at ESC % @
            end = data.find(b"\x1b%@", i + 3)
            end = n if end < 0 else end
            out.append(data[i + 3:end].decode("utf-8", "replace"))
            i = end + 3
        elif data[i + 1:i + 2] == b"-" and i + 2 < n:
            gr = _GR_CHARSETS.get(data[i + 2:i + 3], "latin-1")
            i += 3
        elif data[i + 1:i + 2] in (b"(", b")") and i + 2 < n:
            i += 3  # 94-character set designations: the left half stays ASCII for titles we care about
        else:
            i += 1
    return "".join(out)


def decode_title(data: bytes | str, type_name: str) -> str:
    if isinstance(data, str):
        return data
    data = bytes(data)
    if type_name == "COMPOUND_TEXT":
        return decode_compound_text(data)
    if type_name == "STRING":
        # ICCCM says STRING is Latin-1, but many clients (xdotool among them) put UTF-8 there.
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    return data.decode("utf-8", "replace")


NO_WINDOW = ActiveWindow(title="", application="", pid=None, window_id=None)


class X11WindowWatcher(WindowWatcher):
    def __init__(self, callback: WindowCallback, display_name: str | None = None,
                 on_lost: Callable[[], None] | None = None):
        super().__init__(callback, on_lost)
        self.display_name = display_name
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._atom_names: dict[int, str] = {}

    def start(self) -> None:
        """Connect and read the current window before returning, so the first report is not lost."""
        self._thread = threading.Thread(target=self._run, name="wardwatch-window", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise OSError(f"cannot watch windows on X display {self.display_name or os.environ.get('DISPLAY')}: "
                          f"{self._error}")

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        try:
            from Xlib import X, display, error

            self._X, self._xerror = X, error
            self._d = display.Display(self.display_name)
            self._root = self._d.screen().root
            self._atoms = {name: self._d.intern_atom(name) for name in
                           ("_NET_ACTIVE_WINDOW", "_NET_WM_NAME", "WM_NAME", "_NET_WM_PID", "WM_CLASS",
                            "_NET_SUPPORTED")}
            self._root.change_attributes(event_mask=X.PropertyChangeMask)
            self._ewmh = self._supports_active_window()
            self._watched = None
            self._follow_active()
        except Exception as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            self._loop()
        except Exception as exc:  # the display went away (logout): nothing left to watch
            log.warning("the X display went away (%s): window watcher stopped", type(exc).__name__)
            if self.on_lost is not None and not self._stop.is_set():
                self.on_lost()
        finally:
            with contextlib.suppress(Exception):
                self._d.close()

    def _loop(self) -> None:
        X = self._X
        fd = self._d.fileno()
        timeout = None if self._ewmh else FOCUS_POLL_S
        while not self._stop.is_set():
            while self._d.pending_events():
                event = self._d.next_event()
                if event.type != X.PropertyNotify:
                    continue
                if event.window == self._root and event.atom == self._atoms["_NET_ACTIVE_WINDOW"]:
                    self._follow_active()
                elif (self._watched is not None and event.window.id == self._watched.id
                      and event.atom in (self._atoms["_NET_WM_NAME"], self._atoms["WM_NAME"])):
                    self._report(self._describe(self._watched))
            if not self._ewmh:
                self._follow_active()
            select.select([fd, self._wake_r], [], [], timeout)

    # ------------------------------------------------------------------ X details

    def _supports_active_window(self) -> bool:
        prop = self._root.get_full_property(self._atoms["_NET_SUPPORTED"], self._X.AnyPropertyType)
        return bool(prop is not None and self._atoms["_NET_ACTIVE_WINDOW"] in prop.value)

    def _active_window(self):
        if self._ewmh:
            prop = self._root.get_full_property(self._atoms["_NET_ACTIVE_WINDOW"], self._X.AnyPropertyType)
            if prop is None or not len(prop.value) or not prop.value[0]:
                return None
            return self._d.create_resource_object("window", int(prop.value[0]))
        focus = self._d.get_input_focus().focus
        if isinstance(focus, int) or focus is None:
            return None
        return self._client_window(focus)

    def _client_window(self, window):
        """Walk up from the focused (possibly inner) window to the one that carries a title."""
        for _ in range(16):
            try:
                if window.get_full_property(self._atoms["WM_NAME"], self._X.AnyPropertyType) is not None:
                    return window
                tree = window.query_tree()
            except self._xerror.XError:
                return None
            if not tree.parent or tree.parent == tree.root:
                return window
            window = tree.parent
        return window

    def _follow_active(self) -> None:
        window = self._active_window()
        if window is None:
            if self._ewmh:  # focus on the desktop itself: what is typed now belongs to no window
                self._report(NO_WINDOW)
            return
        if self._watched is None or window.id != self._watched.id:
            try:
                # Event masks are per client: this adds our interest without touching the owner's.
                window.change_attributes(event_mask=self._X.PropertyChangeMask)
            except self._xerror.XError:
                return
            if self._watched is not None:
                with contextlib.suppress(self._xerror.XError):
                    self._watched.change_attributes(event_mask=0)
            self._watched = window
        self._report(self._describe(window))

    def _describe(self, window) -> ActiveWindow | None:
        try:
            title = self._title(window)
            pid_prop = window.get_full_property(self._atoms["_NET_WM_PID"], self._X.AnyPropertyType)
            pid = int(pid_prop.value[0]) if pid_prop is not None and len(pid_prop.value) else None
            application = process_name(pid)
            if not application:
                wm_class = window.get_wm_class()
                application = wm_class[0] if wm_class else ""
        except self._xerror.XError:
            return None  # closed between the event and our question
        return ActiveWindow(title=title, application=application, pid=pid, window_id=window.id)

    def _atom_name(self, atom: int) -> str:
        if atom not in self._atom_names:  # property types repeat; ask the server once per type
            self._atom_names[atom] = self._d.get_atom_name(atom)
        return self._atom_names[atom]

    def _title(self, window) -> str:
        for atom_name in ("_NET_WM_NAME", "WM_NAME"):
            prop = window.get_full_property(self._atoms[atom_name], self._X.AnyPropertyType)
            if prop is not None and prop.value is not None and len(prop.value):
                return decode_title(prop.value, self._atom_name(prop.property_type))
        return ""
