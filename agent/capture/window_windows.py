"""Active window on Windows: SetWinEventHook for foreground changes and for title changes of the foreground window
(a browser switching tabs), GetWindowTextW through ctypes, the owning process through psutil.

The hooks are out-of-context, so Windows calls us on this thread's message loop; the callback only reads the title.
"""

from __future__ import annotations

import ctypes
import logging
import threading

from agent.capture.window import ActiveWindow, WindowCallback, WindowWatcher, process_name

log = logging.getLogger("wardwatch.capture.window")

EVENT_SYSTEM_FOREGROUND = 0x0003
EVENT_OBJECT_NAMECHANGE = 0x800C
WINEVENT_OUTOFCONTEXT = 0x0000
WINEVENT_SKIPOWNPROCESS = 0x0002
OBJID_WINDOW = 0
CHILDID_SELF = 0
WM_QUIT = 0x0012


def should_report(event: int, hwnd: int, id_object: int, id_child: int, foreground: int) -> bool:
    """Foreground changes always; name changes only of the foreground window itself, not of its controls or of
    background windows (a background tab's title ticking a clock must not look like activity)."""
    if event == EVENT_SYSTEM_FOREGROUND:
        return True
    return (event == EVENT_OBJECT_NAMECHANGE and id_object == OBJID_WINDOW and id_child == CHILDID_SELF
            and hwnd == foreground and hwnd != 0)


def describe_window(hwnd: int) -> ActiveWindow | None:
    from ctypes import wintypes

    user32 = ctypes.windll.user32
    if not hwnd:
        return None
    length = user32.GetWindowTextLengthW(hwnd)
    buffer = ctypes.create_unicode_buffer(length + 1)
    user32.GetWindowTextW(hwnd, buffer, length + 1)
    pid = wintypes.DWORD()
    user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
    return ActiveWindow(title=buffer.value, application=process_name(pid.value), pid=pid.value or None,
                        window_id=int(hwnd))


class WindowsWindowWatcher(WindowWatcher):
    def __init__(self, callback: WindowCallback):
        super().__init__(callback)
        self._thread: threading.Thread | None = None
        self._thread_id = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wardwatch-window", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise OSError(f"cannot watch the foreground window: {self._error}")

    def stop(self) -> None:
        if self._thread_id:
            ctypes.windll.user32.PostThreadMessageW(self._thread_id, WM_QUIT, 0, 0)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        from ctypes import wintypes

        user32 = ctypes.windll.user32
        proc_type = ctypes.WINFUNCTYPE(None, wintypes.HANDLE, wintypes.DWORD, wintypes.HWND, wintypes.LONG,
                                       wintypes.LONG, wintypes.DWORD, wintypes.DWORD)

        def on_event(_hook, event, hwnd, id_object, id_child, _thread, _time):
            try:
                foreground = user32.GetForegroundWindow()
                if should_report(event, hwnd or 0, id_object, id_child, foreground or 0):
                    self._report(describe_window(foreground))
            except Exception as exc:  # an exception escaping into user32 would end the message loop
                log.warning("window event: %s", type(exc).__name__)

        callback = proc_type(on_event)  # kept referenced for the life of the loop
        hooks = [user32.SetWinEventHook(event, event, 0, callback, 0, 0,
                                        WINEVENT_OUTOFCONTEXT | WINEVENT_SKIPOWNPROCESS)
                 for event in (EVENT_SYSTEM_FOREGROUND, EVENT_OBJECT_NAMECHANGE)]
        if not all(hooks):
            self._error = ctypes.WinError()
            self._ready.set()
            return
        self._thread_id = ctypes.windll.kernel32.GetCurrentThreadId()
        self._report(describe_window(user32.GetForegroundWindow()))
        self._ready.set()
        msg = wintypes.MSG()
        while user32.GetMessageW(ctypes.byref(msg), 0, 0, 0) > 0:
            user32.TranslateMessage(ctypes.byref(msg))
            user32.DispatchMessageW(ctypes.byref(msg))
        for hook in hooks:
            user32.UnhookWinEvent(hook)
