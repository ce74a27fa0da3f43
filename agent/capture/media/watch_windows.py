"""Windows arrivals: WM_DEVICECHANGE on a hidden message-only window, with a 2 s poll of drive letters as fallback.

A drive letter counts when its bus is USB/SD/MMC or Windows calls the drive removable: USB hard disks report as
fixed drives, so the bus type from Storage WMI (probe_windows) decides, not only the drive type.

Why the window registers for the volume device interface as well as reading DBT_DEVTYP_VOLUME: Windows sends
DBT_DEVTYP_VOLUME (whose unit mask names the drive letters) as a broadcast to top-level windows, and a
message-only window receives no broadcasts; notifications asked for with RegisterDeviceNotification
(GUID_DEVINTERFACE_VOLUME) are sent to the window directly, including in the service's session 0. Those name a
volume interface, not a letter, and the letter is assigned a moment later, so every event starts a few seconds of
listing (EventPollingWatcher) rather than trusting the event alone.

The ctypes calls live in `DeviceChangeWindow` and run only on Windows; `hints_from_broadcast` and the watcher
around them are plain code, tested everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import uuid
from collections.abc import Callable, Hashable

import psutil

from agent.capture.media import probe_windows
from agent.capture.media.watch_base import Volume
from agent.capture.media.watch_poll import EventPollingWatcher

log = logging.getLogger(__name__)

WM_CLOSE = 0x0010
WM_DESTROY = 0x0002
WM_DEVICECHANGE = 0x0219
DBT_DEVICEARRIVAL = 0x8000
DBT_DEVICEREMOVECOMPLETE = 0x8004
DBT_DEVTYP_VOLUME = 0x0002
DBT_DEVTYP_DEVICEINTERFACE = 0x0005
DEVICE_NOTIFY_WINDOW_HANDLE = 0x0000
HWND_MESSAGE = -3
GUID_DEVINTERFACE_VOLUME = uuid.UUID("53f5630d-b6bf-11d0-94f2-00a0c91efb8b")
VOLUME_EVENTS = (DBT_DEVICEARRIVAL, DBT_DEVICEREMOVECOMPLETE)
BROADCAST_HEADER = struct.Struct("<III")  # DEV_BROADCAST_HDR: dbch_size, dbch_devicetype, dbch_reserved
WINDOW_START_TIMEOUT_S = 10.0


def letters_from_unitmask(mask: int) -> list[str]:
    """DEV_BROADCAST_VOLUME.dbcv_unitmask: bit 0 is A:, bit 1 is B:, ... bit 25 is Z:."""
    return [chr(ord("A") + bit) for bit in range(26) if mask >> bit & 1]


def hints_from_broadcast(event: int, broadcast: bytes) -> list[str] | None:
    """Drive letters named by a WM_DEVICECHANGE (wParam `event`, lParam's DEV_BROADCAST_* bytes).

    None when the message is not a volume arriving or leaving; an empty list when it is one but names no letter
    yet (a volume device interface).
    """
    if event not in VOLUME_EVENTS or len(broadcast) < BROADCAST_HEADER.size:
        return None
    _size, device_type, _reserved = BROADCAST_HEADER.unpack_from(broadcast)
    if device_type == DBT_DEVTYP_VOLUME and len(broadcast) >= 16:
        (unitmask,) = struct.unpack_from("<I", broadcast, 12)
        return letters_from_unitmask(unitmask)
    if device_type == DBT_DEVTYP_DEVICEINTERFACE and len(broadcast) >= 28:
        return [] if broadcast[12:28] == GUID_DEVINTERFACE_VOLUME.bytes_le else None
    return None


def _broadcast_bytes(lparam: int) -> bytes:
    """The DEV_BROADCAST_* structure at lParam, as far as `hints_from_broadcast` reads it."""
    import ctypes

    (size, _type, _reserved) = BROADCAST_HEADER.unpack(ctypes.string_at(lparam, BROADCAST_HEADER.size))
    return ctypes.string_at(lparam, min(size, 28))


class DeviceChangeWindow:
    """A message-only window on its own thread, pumping messages, calling `notify(letters)` for volume events."""

    def __init__(self, notify: Callable[[list[str]], None]) -> None:
        self.notify = notify
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: OSError | None = None
        self._hwnd = None
        self._api = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="media-devicechange", daemon=True)
        self._thread.start()
        if not self._ready.wait(WINDOW_START_TIMEOUT_S):
            raise OSError("the device notification window did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._hwnd and self._api is not None:
            self._api.user32.PostMessageW(self._hwnd, WM_CLOSE, 0, 0)
        if self._thread is not None:
            self._thread.join(5)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def on_message(self, hwnd: int, msg: int, wparam: int, lparam: int) -> int:
        """The window procedure: note volume events and return at once (anything slow here delays Windows)."""
        api = self._api
        try:
            if msg == WM_DEVICECHANGE:
                hints = hints_from_broadcast(wparam, _broadcast_bytes(lparam)) if lparam else None
                if hints is not None:
                    self.notify(hints)
                return 1
            if msg == WM_CLOSE:
                api.user32.DestroyWindow(hwnd)
                return 0
            if msg == WM_DESTROY:
                api.user32.PostQuitMessage(0)
                return 0
        except Exception:  # an exception cannot cross back into Windows; the poll-free watcher must keep running
            log.exception("device notification window: could not read a message")
        return api.user32.DefWindowProcW(hwnd, msg, wparam, lparam)

    def _run(self) -> None:
        try:
            self._api = _Win32(self.on_message)
            self._hwnd, registration = self._api.create_window()
        except Exception as exc:  # no such API on this system (or it refused): the watcher polls instead
            self._error = exc if isinstance(exc, OSError) else OSError(f"{type(exc).__name__}: {exc}")
            self._ready.set()
            return
        self._ready.set()
        try:
            self._api.pump_messages()
        finally:
            self._api.release(registration)
            self._hwnd = None


class _Win32:
    """The user32 calls, declared with their exact types (a 64-bit handle squeezed into an int would crash)."""

    CLASS_NAME = "WardWatchMediaWatch"

    def __init__(self, window_procedure: Callable[[int, int, int, int], int]) -> None:
        import ctypes
        from ctypes import wintypes

        self.ctypes = ctypes
        self.user32 = user32 = ctypes.WinDLL("user32", use_last_error=True)
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        lresult = wintypes.LPARAM
        self.WNDPROC = ctypes.WINFUNCTYPE(lresult, wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM)

        class WNDCLASSW(ctypes.Structure):
            _fields_ = [("style", wintypes.UINT), ("lpfnWndProc", self.WNDPROC), ("cbClsExtra", ctypes.c_int),
                        ("cbWndExtra", ctypes.c_int), ("hInstance", wintypes.HINSTANCE),
                        ("hIcon", wintypes.HICON), ("hCursor", wintypes.HANDLE), ("hbrBackground", wintypes.HBRUSH),
                        ("lpszMenuName", wintypes.LPCWSTR), ("lpszClassName", wintypes.LPCWSTR)]

        class DEV_BROADCAST_DEVICEINTERFACE_W(ctypes.Structure):
            _fields_ = [("dbcc_size", wintypes.DWORD), ("dbcc_devicetype", wintypes.DWORD),
                        ("dbcc_reserved", wintypes.DWORD), ("dbcc_classguid", ctypes.c_byte * 16),
                        ("dbcc_name", wintypes.WCHAR * 1)]

        self.WNDCLASSW = WNDCLASSW
        self.DEV_BROADCAST_DEVICEINTERFACE_W = DEV_BROADCAST_DEVICEINTERFACE_W
        user32.DefWindowProcW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM]
        user32.DefWindowProcW.restype = lresult
        user32.RegisterClassW.argtypes = [ctypes.POINTER(WNDCLASSW)]
        user32.RegisterClassW.restype = wintypes.ATOM
        user32.UnregisterClassW.argtypes = [wintypes.LPCWSTR, wintypes.HINSTANCE]
        user32.CreateWindowExW.argtypes = [wintypes.DWORD, wintypes.LPCWSTR, wintypes.LPCWSTR, wintypes.DWORD,
                                           ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, wintypes.HWND,
                                           wintypes.HMENU, wintypes.HINSTANCE, wintypes.LPVOID]
        user32.CreateWindowExW.restype = wintypes.HWND
        user32.DestroyWindow.argtypes = [wintypes.HWND]
        user32.PostMessageW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM]
        user32.PostQuitMessage.argtypes = [ctypes.c_int]
        user32.GetMessageW.argtypes = [ctypes.POINTER(wintypes.MSG), wintypes.HWND, wintypes.UINT, wintypes.UINT]
        user32.GetMessageW.restype = wintypes.BOOL
        user32.TranslateMessage.argtypes = [ctypes.POINTER(wintypes.MSG)]
        user32.DispatchMessageW.argtypes = [ctypes.POINTER(wintypes.MSG)]
        user32.DispatchMessageW.restype = lresult
        user32.RegisterDeviceNotificationW.argtypes = [wintypes.HANDLE, wintypes.LPVOID, wintypes.DWORD]
        user32.RegisterDeviceNotificationW.restype = wintypes.HANDLE
        user32.UnregisterDeviceNotification.argtypes = [wintypes.HANDLE]
        kernel32.GetModuleHandleW.argtypes = [wintypes.LPCWSTR]
        kernel32.GetModuleHandleW.restype = wintypes.HMODULE
        self.instance = kernel32.GetModuleHandleW(None)
        # Kept on self: if the callback object were collected, Windows would call freed memory.
        self.procedure = self.WNDPROC(window_procedure)

    def _fail(self, call: str) -> OSError:
        code = self.ctypes.get_last_error()
        return OSError(code, f"{call} failed: {self.ctypes.FormatError(code).strip()}")

    def create_window(self) -> tuple[int, int]:
        """Register the class, create the message-only window, ask for volume interface notifications."""
        ctypes = self.ctypes
        window_class = self.WNDCLASSW(lpfnWndProc=self.procedure, hInstance=self.instance,
                                      lpszClassName=self.CLASS_NAME)
        if not self.user32.RegisterClassW(ctypes.byref(window_class)):
            raise self._fail("RegisterClassW")
        hwnd = self.user32.CreateWindowExW(0, self.CLASS_NAME, "WardWatch media", 0, 0, 0, 0, 0, HWND_MESSAGE,
                                           None, self.instance, None)
        if not hwnd:
            error = self._fail("CreateWindowExW")
            self.user32.UnregisterClassW(self.CLASS_NAME, self.instance)
            raise error
        interface = self.DEV_BROADCAST_DEVICEINTERFACE_W()
        interface.dbcc_size = ctypes.sizeof(interface)
        interface.dbcc_devicetype = DBT_DEVTYP_DEVICEINTERFACE
        ctypes.memmove(interface.dbcc_classguid, GUID_DEVINTERFACE_VOLUME.bytes_le, 16)
        registration = self.user32.RegisterDeviceNotificationW(hwnd, ctypes.byref(interface),
                                                               DEVICE_NOTIFY_WINDOW_HANDLE)
        if not registration:
            error = self._fail("RegisterDeviceNotificationW")
            self.user32.DestroyWindow(hwnd)
            self.user32.UnregisterClassW(self.CLASS_NAME, self.instance)
            raise error
        return hwnd, registration

    def pump_messages(self) -> None:
        from ctypes import wintypes

        message = wintypes.MSG()
        # GetMessageW returns 0 on WM_QUIT and -1 on error; both end the loop.
        while self.user32.GetMessageW(self.ctypes.byref(message), None, 0, 0) > 0:
            self.user32.TranslateMessage(self.ctypes.byref(message))
            self.user32.DispatchMessageW(self.ctypes.byref(message))

    def release(self, registration: int) -> None:
        with contextlib.suppress(OSError):
            self.user32.UnregisterDeviceNotification(registration)
            self.user32.UnregisterClassW(self.CLASS_NAME, self.instance)


class WindowsWatcher(EventPollingWatcher):
    poll_backend = "windows-poll"
    event_backend = "windows-devicechange"
    event_source_class: type = DeviceChangeWindow

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Asking Storage WMI costs a PowerShell start; a fixed drive's bus does not change while it stays.
        self._bus_removable: dict[tuple[str, str], bool] = {}

    def _event_source(self, notify: Callable[[list[str]], None]) -> DeviceChangeWindow:
        return self.event_source_class(notify)

    def _is_removable(self, letter: str, fstype: str, opts: str) -> bool:
        if "removable" in opts.split(","):
            return True
        key = (letter, fstype)
        if key not in self._bus_removable:
            self._bus_removable[key] = bool(probe_windows.probe(f"{letter}:", None).removable)
        return self._bus_removable[key]

    def _mounted(self) -> dict[str, Hashable]:
        found: dict[str, Hashable] = {}
        present = set()
        for part in psutil.disk_partitions(all=False):
            letter = probe_windows.drive_letter(part.device)
            if letter is None:
                continue
            present.add((letter, part.fstype))
            if self._is_removable(letter, part.fstype, part.opts):
                found[letter] = (part.fstype, part.mountpoint)
        # A letter reused by another drive must be asked about again.
        self._bus_removable = {k: v for k, v in self._bus_removable.items() if k in present}
        return found

    def _volumes(self, disk: str) -> list[Volume]:
        identity = self._snapshot.get(disk)
        return [Volume(f"\\\\.\\{disk}:", (disk, identity))] if identity is not None else []
