"""Windows only: when did the OS last see keyboard or mouse input? (GetLastInputInfo, thin ctypes call.)

Windows removes a low-level keyboard hook without telling anyone when its callback is too slow; comparing this clock
with the last event our hook delivered is how the supervisor notices."""

from __future__ import annotations

import ctypes
import time
from ctypes import wintypes


class LASTINPUTINFO(ctypes.Structure):
    _fields_ = [("cbSize", wintypes.UINT), ("dwTime", wintypes.DWORD)]


def last_input_monotonic() -> float:
    """The time of the last input, on the time.monotonic() clock (both count from boot on Windows)."""
    info = LASTINPUTINFO(cbSize=ctypes.sizeof(LASTINPUTINFO))
    if not ctypes.windll.user32.GetLastInputInfo(ctypes.byref(info)):
        raise ctypes.WinError()
    now_ticks = ctypes.windll.kernel32.GetTickCount() & 0xFFFFFFFF
    idle_ms = (now_ticks - info.dwTime) & 0xFFFFFFFF  # both wrap after 49.7 days; the difference does not
    return time.monotonic() - idle_ms / 1000.0
